"""Real patient, Y-90 liver radioembolisation: rptdose vs GATE.

Usage (from the repository root):  python validation/y90_gate_patient/run.py [--quick] [--histories N]

Data: shared/data/y90_liver_patient (a GATE example re-used by the PenRed project; see
shared/data/README.md). The archives are unpacked into validation/y90_gate_patient/out/data/
(git-ignored); nothing is written into tracked files. Without shared/ the case is skipped with
a message (exit code 0).

Inputs as GATE used them:
* CT ct1-4mm.mhd (HU, 124 x 72 x 190, 4 mm) -> rd.Phantom.from_ct with the default calibration,
  Schneider, Bortfeld & Schlegel, PMB 45:459 (2000) -- the conversion GATE's dose was made with
  (one material per density step in GATE; rptdose: Schneider's elemental bins with the density
  of each voxel).
* Activity: spect-jm.mhd (4.418 mm voxels) resampled onto the CT grid with SimpleITK (linear
  interpolation, 0 outside the SPECT, negative values clipped to 0) -> decays per voxel.
* Source: rd.Source("Y-90", decays): the ICRP-107 Y-90 emissions (beta spectrum, mean 0.9329 MeV,
  plus its tiny conversion-electron/X-ray lines). GATE emitted a Y-90 beta spectrum from the
  SPECT map (its exact spectrum is not part of the data).

GATE's normalisation (inferred, stated in the summary):
* GATE simulated 4.0e6 primaries: the SourceActivityDistribution.dat of the GATE output sums to
  exactly 4,000,000 emitted primaries (SourceActivity.mhd, the same histogram as an image on the
  SPECT grid, holds 3,998,405 of them).
* PatientDose.mhd has no unit in its header. The depth-dose files beside it (written by PenRed's
  scripts: plane sums of the image x 0.16 cm^2) are labelled "eV/g/cm^2 per history", i.e. the
  image is in eV/g per primary. Energy conservation confirms it: with our voxel masses the image
  holds sum(D m) = 0.93 MeV per primary, the Y-90 mean beta energy (0.93 MeV) less a little
  bremsstrahlung escape. We compare ours (Gy per decay x 6.2415e15 -> eV/g per decay) with GATE
  in eV/g per primary, and also after normalising both maps to the same total deposited energy
  ("shape"). Ours is scaled by the fraction of GATE's primaries emitted inside the CT box.
* Source resampling: GATE sampled positions uniformly inside the SPECT voxels. The prescribed
  linear resampling onto the CT grid smooths the activity (a hot SPECT voxel is spread over more
  CT voxels); a second run uses the exact volume-overlap (mass-conserving) resampling of the
  axis-aligned grids, which reproduces GATE's sampling, to show how much of any difference comes
  from the resampling alone.

Comparisons: total energy; region mean-dose ratios (mass-weighted) in the high-dose region
(GATE dose > 10 % of its max) and in wider regions (> 1 %, > 0.1 % of max); depth-dose curves
(plane integrals, as in GATE's PatientDepthDose-[xyz].dat, with GATE's error bars) and line
profiles through GATE's maximum along x, y, z; 3 %/3 mm global gamma (reference GATE, 10 %
threshold of GATE's maximum), computed by validation/common.gamma_index, which is first checked
on known answers (shifted Gaussians). Target (cross-code, not a published benchmark): high-dose
region mean ratio within 5 %, gamma pass rate >= 95 %.
"""
from __future__ import annotations

import argparse
import sys
import tarfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import common  # noqa: E402

GATE_PRIMARIES = 4_000_000
GATE_UNIT_TO_EV_PER_G = 1.0  # eV/g per primary: stated in GATE's depth-dose files, checked by energy
EV_PER_G_PER_GY = common.EV_PER_J * 1e-3  # 1 Gy = 1 J/kg = 6.2415e15 eV/g


def patient_data_or_skip(summary_path: Path, title: str) -> Path | None:
    """The shared patient folder, or None after writing a 'skipped' summary (no shared/)."""
    shared = common.shared_dir()
    data_dir = None if shared is None else shared / "data" / "y90_liver_patient"
    if data_dir is None or not (data_dir / "Mhd.tar.xz").is_file():
        msg = "SKIPPED: shared/data/y90_liver_patient not found (set RPTDOSE_SHARED to the shared/ folder)"
        print(msg)
        summary_path.write_text(title + "\n\n" + msg + "\n")
        return None
    return data_dir


def load_case(work: Path):
    """The case's inputs from the unpacked folder: the CT image, GATE's dose (eV/g per primary),
    GATE's emitted primaries per CT voxel (SourceActivity.mhd, counts on the SPECT grid, shared
    by volume overlap), the fraction of them inside the CT box, the phantom (rd.Phantom.from_ct,
    default calibration) and its voxel masses (g)."""
    import SimpleITK as sitk

    import rptdose as rd

    ct = sitk.ReadImage(str(work / "ct1-4mm.mhd"))
    gate = sitk_array(sitk.ReadImage(str(work / "PatientDose.mhd"))) * GATE_UNIT_TO_EV_PER_G
    src_act = sitk.ReadImage(str(work / "SourceActivity.mhd"), sitk.sitkFloat64)
    primaries = resample_overlap(src_act, ct)
    f_in = float(primaries.sum() / sitk_array(src_act).sum())
    ph = rd.Phantom.from_ct(ct)
    return ct, gate, primaries, f_in, ph, np.asarray(ph.voxel_mass_kg) * 1e3


def unpack(data_dir: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Mhd.tar.xz", "gate.tar.xz"):
        marker = dest / (name + ".done")
        if marker.exists():
            continue
        with tarfile.open(data_dir / name, "r:xz") as tf:
            try:
                tf.extractall(dest, filter="data")
            except TypeError:  # Python without extraction filters
                tf.extractall(dest)
        marker.write_text("ok\n")


def overlap_matrix(n_out, o_out, s_out, n_in, o_in, s_in):
    """[n_out, n_in] fraction of each input bin's length inside each output bin (1-D, voxel
    centres at o + i*s)."""
    a_lo = o_out + (np.arange(n_out) - 0.5) * s_out
    b_lo = o_in + (np.arange(n_in) - 0.5) * s_in
    lo = np.maximum(a_lo[:, None], b_lo[None, :])
    hi = np.minimum(a_lo[:, None] + s_out, b_lo[None, :] + s_in)
    return np.clip(hi - lo, 0.0, None) / s_in


def resample_overlap(img, ref):
    """Mass-conserving resampling of counts per voxel between axis-aligned grids: each input
    voxel's content is shared among the output voxels in proportion to the overlapping volume
    (= uniform sampling inside the input voxels, as GATE's voxelised source does)."""
    a = np.clip(sitk_array(img), 0.0, None)  # [z, y, x]
    mats = [overlap_matrix(ref.GetSize()[d], ref.GetOrigin()[d], ref.GetSpacing()[d],
                           img.GetSize()[d], img.GetOrigin()[d], img.GetSpacing()[d]) for d in range(3)]
    a = np.einsum("zk,kyx->zyx", mats[2], a)
    a = np.einsum("yk,zkx->zyx", mats[1], a)
    return np.einsum("xk,zyk->zyx", mats[0], a)


def sitk_array(img):
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(img).astype(np.float64)


def read_depth(path: Path):
    rows = [l.split() for l in path.read_text().splitlines() if l.strip() and l.strip()[0].isdigit()]
    a = np.array(rows, float)
    return a[:, 0].astype(int), a[:, 1], a[:, 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--histories", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    out = common.out_dir(HERE)
    summ = common.Summary("y90_gate_patient: rptdose vs GATE on a real Y-90 liver patient")
    data_dir = patient_data_or_skip(out / "summary.txt", summ.title)
    if data_dir is None:
        return 0
    plt = common.setup_matplotlib()
    import SimpleITK as sitk

    import rptdose as rd

    hist = args.histories or (1_000_000 if args.quick else 20_000_000)

    # ---- gamma implementation check -------------------------------------------------------
    summ.add("Gamma index implementation, known-answer tests (3 %/3 mm global, 10 % threshold):")
    for name, ok, detail in common.gamma_selftest():
        summ.check(f"gamma self-test: {name}", ok, detail)
    summ.add("")

    # ---- data -----------------------------------------------------------------------------
    work = out / "data"
    unpack(data_dir, work)
    ct, gate, gsa, f_in, ph, mass_g = load_case(work)
    spect = sitk.ReadImage(str(work / "spect-jm.mhd"), sitk.sitkFloat64)
    # sources: (a) the prescribed linear resampling, (b) exact volume overlap
    act = sitk.Resample(spect, ct, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat64)
    dec_lin = np.clip(sitk.GetArrayFromImage(act), 0.0, None)
    dec_ovl = resample_overlap(spect, ct)
    sp_arr = np.clip(sitk.GetArrayFromImage(spect), 0.0, None)
    vol_ratio = np.prod(ct.GetSpacing()) / np.prod(spect.GetSpacing())
    sa_tot = float(gsa.sum() / f_in)
    summ.add(f"CT {ct.GetSize()} x {ct.GetSpacing()[0]:g} mm; SPECT {spect.GetSize()} x {spect.GetSpacing()[0]:.4g} mm. "
             f"Fraction of the SPECT counts inside the CT box: linear resampling {dec_lin.sum() * vol_ratio / sp_arr.sum():.4f}"
             f" (values rescaled by the voxel-volume ratio), overlap {dec_ovl.sum() / sp_arr.sum():.4f}; GATE emitted "
             f"{sa_tot:.0f} primaries on the SPECT grid ({GATE_PRIMARIES} per SourceActivityDistribution.dat), "
             f"{100 * f_in:.3f} % of them inside the CT box")
    for nm, dd in (("linear", dec_lin), ("overlap", dec_ovl)):
        summ.add(f"Source check ({nm}): correlation with GATE's emitted primaries per CT voxel {np.corrcoef(dd.ravel(), gsa.ravel())[0, 1]:.4f}; "
                 f"activity fraction in GATE's hottest 28 dose voxels: ours {dd[gate > 0.1 * gate.max()].sum() / dd.sum():.4f}, "
                 f"GATE {gsa[gate > 0.1 * gate.max()].sum() / gsa.sum():.4f}")
    summ.add(f"Phantom: rd.Phantom.from_ct default calibration (Schneider 2000): {len(ph.materials)} materials, "
             f"density {ph.density.min():.4g}-{ph.density.max():.4g} g/cm3")
    e_gate = float((gate * mass_g).sum())
    summ.add(f"GATE total energy in the CT box: {e_gate / 1e6:.4f} MeV per primary (image read as eV/g per primary)")
    gmax = float(gate.max())
    regions = {"gate>10%max": gate > 0.10 * gmax, "gate>1%max": gate > 0.01 * gmax,
               "gate>0.1%max": gate > 0.001 * gmax}
    summ.add("Target (cross-code): high-dose-region mean ratio within 5 %, gamma 3 %/3 mm pass rate >= 95 % "
             "(checked for the prescribed linear resampling; the overlap variant is reported beside it)")

    results = {}
    reg_rows = {k: [] for k in ("source_resampling", "region", "voxels", "mass_kg", "ours_ev_per_g", "ours_rel_unc",
                                "gate_ev_per_g", "ratio_absolute", "ratio_shape")}
    for variant, decays in (("linear", dec_lin), ("overlap", dec_ovl)):
        summ.add("")
        summ.add(f"=== source resampling: {variant} ===")
        src = rd.Source("Y-90", decays)
        res = common.run_simulation(ph, src, hist, seed=args.seed, regions=regions)
        eb = res.energy_balance
        summ.add(f"rptdose: {hist} Y-90 decays in {res.elapsed_s:.1f} s ({res.backend}, "
                 f"{res.provenance.get('threads_used')} threads); per decay emitted {eb['emitted_mev']:.4f} MeV, "
                 f"deposited {eb['deposited_mev']:.4f}, escaped {eb['escaped_mev']:.4f}")
        ours = res.dose_gy / src.total_decays * EV_PER_G_PER_GY * f_in  # eV/g per GATE primary
        e_ours = float((ours * mass_g).sum())
        summ.add(f"Total energy in the CT box per GATE primary: ours {e_ours / 1e6:.4f} MeV, GATE {e_gate / 1e6:.4f} MeV, "
                 f"ratio {e_ours / e_gate:.4f}")
        shape_scale = e_gate / e_ours
        summ.add("Region mean dose (mass-weighted), eV/g per primary:")
        ratio_hi = None
        for name, m in regions.items():
            om = float((ours[m] * mass_g[m]).sum() / mass_g[m].sum())
            gm = float((gate[m] * mass_g[m]).sum() / mass_g[m].sum())
            rel_u = res.region_means[name]["rel_uncertainty"]
            for k, v in (("source_resampling", variant), ("region", name), ("voxels", int(m.sum())),
                         ("mass_kg", float(mass_g[m].sum() / 1e3)), ("ours_ev_per_g", om), ("ours_rel_unc", rel_u),
                         ("gate_ev_per_g", gm), ("ratio_absolute", om / gm), ("ratio_shape", om * shape_scale / gm)):
                reg_rows[k].append(v)
            summ.add(f"   {name:13s} {int(m.sum()):6d} voxels {mass_g[m].sum() / 1e3:7.3f} kg: ours {om:9.4g} "
                     f"(+-{100 * rel_u:.2f} %), GATE {gm:9.4g}; ratio {om / gm:.4f} (shape-normalised "
                     f"{om * shape_scale / gm:.4f})")
            if name == "gate>10%max":
                ratio_hi = om / gm
        gam, info = common.gamma_index(gate, ours, ct.GetSpacing(), 3.0, 3.0, 10.0, True, search_step_mm=0.5)
        summ.add(f"Gamma 3 %/3 mm global (reference GATE, normalised to GATE's max {gmax:.4g} eV/g), threshold 10 %: "
                 f"{info['n_evaluated']} voxels, pass rate {100 * info['pass_rate']:.1f} %, mean gamma "
                 f"{info['mean_gamma']:.3f}")
        p999 = float(np.percentile(gate[gate > 0], 99.9))
        gam2, info2 = common.gamma_index(np.minimum(gate, p999), np.minimum(ours, 10 * p999), ct.GetSpacing(),
                                         3.0, 3.0, 10.0, True, search_step_mm=0.5)
        summ.add(f"   supplementary (not a target): GATE clipped at its 99.9th percentile ({p999:.4g} eV/g), 3 %/3 mm "
                 f"of that, 10 % threshold: {info2['n_evaluated']} voxels, pass rate {100 * info2['pass_rate']:.1f} %")
        results[variant] = dict(res=res, ours=ours, ratio_hi=ratio_hi, info=info, info2=info2, gam2=gam2)
        if variant == "linear":
            summ.check("high-dose region (GATE > 10 % max) mean-dose ratio within 5 % (linear resampling)",
                       abs(ratio_hi - 1) <= 0.05, f"ratio {ratio_hi:.4f}")
            summ.check("gamma 3 %/3 mm (global, 10 % threshold) pass rate >= 95 % (linear resampling)",
                       info["pass_rate"] >= 0.95, f"{100 * info['pass_rate']:.1f} % of {info['n_evaluated']} voxels")
        else:
            summ.add(f"[info] overlap resampling: high-dose ratio {ratio_hi:.4f}, gamma pass rate "
                     f"{100 * info['pass_rate']:.1f} %")
    common.write_csv(out / "regions.csv", [
        "Mass-weighted mean dose per GATE primary (eV/g) in regions defined on GATE's dose map",
        "GATE: PatientDose.mhd (eV/g per primary, 4e6 primaries); ours: rptdose Gy/decay x 6.2415e15 x fraction of "
        "GATE primaries inside the CT box; ours_rel_unc: batch-method 1-sigma of the region mean",
        "ratio_shape: both maps scaled to the same total deposited energy",
        "source_resampling: linear = SimpleITK linear (prescribed); overlap = exact volume overlap (GATE's sampling)"],
        reg_rows)

    # ---- profiles (both variants) ---------------------------------------------------------
    zi, yi, xi = np.unravel_index(int(np.argmax(gate)), gate.shape)
    sx, sy, sz = ct.GetSpacing()
    area = {"x": sy * sz / 100.0, "y": sx * sz / 100.0, "z": sx * sy / 100.0}  # cm2, as PenRed's script
    axes_sum = {"x": (0, 1), "y": (0, 2), "z": (1, 2)}

    def line(a, arr):
        return {"x": arr[zi, yi, :], "y": arr[zi, :, xi], "z": arr[:, yi, xi]}[a]

    prof_rows = {k: [] for k in ("axis", "index", "gate_plane_integral", "gate_plane_sigma", "ours_linear_plane_integral",
                                 "ours_overlap_plane_integral", "gate_line_through_max", "ours_linear_line",
                                 "ours_overlap_line")}
    fig, axs = plt.subplots(2, 3, figsize=(16, 8))
    summ.add("")
    for col, a in enumerate(("x", "y", "z")):
        g_pl = gate.sum(axis=axes_sum[a]) * area[a]
        o_pl = {v: results[v]["ours"].sum(axis=axes_sum[a]) * area[a] for v in results}
        i_dat, g_dat, g_err = read_depth(work / f"PatientDepthDose-{a}.dat")
        g_dat, g_err = g_dat * GATE_UNIT_TO_EV_PER_G, g_err * GATE_UNIT_TO_EV_PER_G
        if not np.allclose(g_dat, g_pl[i_dat], rtol=1e-4):
            summ.add(f"   note: PatientDepthDose-{a}.dat differs from GATE's image plane sums")
        for k in range(g_pl.size):
            for key, v in (("axis", a), ("index", k), ("gate_plane_integral", g_pl[k]),
                           ("gate_plane_sigma", float(g_err[i_dat == k][0]) if np.any(i_dat == k) else np.nan),
                           ("ours_linear_plane_integral", o_pl["linear"][k]),
                           ("ours_overlap_plane_integral", o_pl["overlap"][k]),
                           ("gate_line_through_max", line(a, gate)[k]),
                           ("ours_linear_line", line(a, results["linear"]["ours"])[k]),
                           ("ours_overlap_line", line(a, results["overlap"]["ours"])[k])):
                prof_rows[key].append(v)
        sig = g_pl > 0.1 * g_pl.max()
        for v in results:
            rr = o_pl[v][sig] / g_pl[sig]
            zz = (o_pl[v][i_dat] - g_dat) / np.where(g_err > 0, g_err, np.inf)
            summ.add(f"Depth dose along {a} ({v}; plane integrals, planes above 10 % of the peak): ours/GATE mean "
                     f"{rr.mean():.4f}, range {rr.min():.3f}-{rr.max():.3f}; chi2/n vs GATE's errors "
                     f"{np.mean(zz[sig[i_dat]] ** 2):.2f}")
        lg, lo_, lov = line(a, gate), line(a, results["linear"]["ours"]), line(a, results["overlap"]["ours"])
        summ.add(f"   line through the max along {a}: at the max ours/GATE = {lo_[{'x': xi, 'y': yi, 'z': zi}[a]] / lg[{'x': xi, 'y': yi, 'z': zi}[a]]:.3f} "
                 f"(linear), {lov[{'x': xi, 'y': yi, 'z': zi}[a]] / lg[{'x': xi, 'y': yi, 'z': zi}[a]]:.3f} (overlap)")
        ax = axs[0, col]
        ax.errorbar(i_dat, g_dat, yerr=g_err, fmt="r.", ms=3, label="GATE (PatientDepthDose)")
        ax.plot(np.arange(g_pl.size), o_pl["linear"], "k-", lw=1, label="rptdose (linear resampling)")
        ax.plot(np.arange(g_pl.size), o_pl["overlap"], "b--", lw=0.8, label="rptdose (overlap resampling)")
        ax.set_title(f"depth dose along {a} (plane integral)")
        ax.set_xlabel(f"{a} index (4 mm)")
        ax.set_ylabel("eV/g cm^2 per primary")
        ax.legend(fontsize=7)
        ax = axs[1, col]
        ax.semilogy(np.where(lg > 0, lg, np.nan), "r.-", ms=3, lw=0.6, label="GATE")
        ax.semilogy(np.where(lo_ > 0, lo_, np.nan), "k-", lw=1, label="rptdose (linear)")
        ax.semilogy(np.where(lov > 0, lov, np.nan), "b--", lw=0.8, label="rptdose (overlap)")
        ax.set_title(f"line along {a} through GATE's max (x,y,z = {xi},{yi},{zi})")
        ax.set_xlabel(f"{a} index")
        ax.set_ylabel("eV/g per primary")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "profiles.png", dpi=110)
    common.write_csv(out / "profiles.csv", [
        "Depth dose (plane integrals x voxel area, eV/g cm^2 per GATE primary; GATE sigma from PatientDepthDose-*.dat) "
        "and line profiles through GATE's maximum (eV/g per primary), for both source resamplings"], prof_rows)

    fig, axs = plt.subplots(1, 4, figsize=(19, 4.6))
    vmin = np.log10(1e-3 * gmax)
    for ax, arr, t in ((axs[0], gate, "GATE"), (axs[1], results["linear"]["ours"], "rptdose (linear)"),
                       (axs[2], results["overlap"]["ours"], "rptdose (overlap)")):
        ax.imshow(np.log10(np.maximum(arr[zi], 1e-3 * gmax)), cmap="magma", vmin=vmin, vmax=np.log10(gmax))
        ax.set_title(f"{t}, slice z={zi} (log10 eV/g)")
    im = axs[3].imshow(results["linear"]["gam2"][zi], cmap="coolwarm", vmin=0, vmax=2)
    axs[3].set_title("gamma 3%/3mm, GATE clipped at p99.9 (linear)")
    fig.colorbar(im, ax=axs[3])
    fig.tight_layout()
    fig.savefig(out / "slices_gamma.png", dpi=110)
    summ.add("")
    summ.add("Files: out/regions.csv, out/profiles.csv, out/profiles.png, out/slices_gamma.png")
    summ.write(out / "summary.txt", extra_header=[
        "HU calibration: rd.Phantom.from_ct default (Schneider 2000, as GATE); spectrum: ICRP-107 Y-90 "
        "(rd.Source('Y-90')); GATE normalisation: 4.0e6 primaries, image in eV/g per primary (label of GATE's "
        "depth-dose files, confirmed by its total energy of 0.93 MeV per primary)"])
    return 0 if summ.passed else 1


if __name__ == "__main__":
    sys.exit(main())
