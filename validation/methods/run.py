"""Fast methods vs Monte Carlo: organ mean doses in a small heterogeneous Lu-177 phantom.

Usage (from the repository root):  python validation/methods/run.py [--quick] [--threads N]

Phantom (4.8 mm voxels, 40 x 48 x 48): an elliptic water body (semi-axes 100 x 80 mm, 192 mm
long) in air, with a lung insert (ICRP lung, 0.26 g/cm3), a cortical-bone rod (1.85 g/cm3), a
hot soft-tissue 'kidney' (ellipsoid 35 x 25 x 30 mm) and a hotter 'tumour' (sphere, r = 15 mm).
Activity concentration (relative): kidney 1, tumour 4, body, lung and bone 0.02; 1 GBq h in
total.

Methods, each through its public function:
  MC      rd.simulate (reference; 1e7 decays, --quick 1e6)
  LDM     rd.local_deposition (electrons local, photons ignored)
  VSV     rd.vsv_dose (water kernel by rptdose's MC for 4.8 mm, k = 10, 1e7 decays (--quick 2e6),
          density correction)
  sphere  rd.sphere_dose (unit-density soft-tissue sphere absorbed fractions, 1e6 decays per
          sphere and component (--quick 2e5); self-dose only)

Writes into validation/methods/out/: organ_means.csv (mean dose per region and method, % vs MC,
with uncertainties), organ_differences.png, summary.txt, and rd.compare outputs for LDM and VSV
(compare_ldm/, compare_vsv/: gamma, DVH, Bland-Altman, HTML).

Targets (kidney and tumour, the regions these methods are used for): |VSV - MC| <= 5 %
(Lanconelli et al., Phys Med Biol 57:517, 2012 and Dieudonne et al., J Nucl Med 54:236, 2013
report a few % in soft tissue), |LDM - MC| <= 10 % and |sphere - MC| <= 10 % (Hou et al.,
J Nucl Med 62:1597, 2021: LDM within ~5-10 % of MC for Lu-177 organ means). Lung, bone and the
body are reported without a target: their dose is mostly cross-dose, which LDM and the sphere
model ignore by construction.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import common  # noqa: E402

SHAPE = (40, 48, 48)
VOXEL_MM = 4.8
TOTAL_TIA_BQ_S = 1e9 * 3600.0


def phantom_and_source():
    import rptdose as rd

    nz, ny, nx = SHAPE
    z = (np.arange(nz) - (nz - 1) / 2) * VOXEL_MM
    y = (np.arange(ny) - (ny - 1) / 2) * VOXEL_MM
    x = (np.arange(nx) - (nx - 1) / 2) * VOXEL_MM
    Z, Y, X = np.meshgrid(z, y, x, indexing="ij")
    body = (X / 100.0) ** 2 + (Y / 80.0) ** 2 <= 1.0
    lung = body & (((X - 45.0) / 35.0) ** 2 + ((Y + 10.0) / 40.0) ** 2 + (Z / 70.0) ** 2 <= 1.0)
    bone = body & ((X + 5.0) ** 2 + (Y - 50.0) ** 2 <= 12.0**2)
    kidney = body & (((X + 50.0) / 35.0) ** 2 + ((Y + 15.0) / 25.0) ** 2 + ((Z - 20.0) / 30.0) ** 2 <= 1.0)
    tumour = body & ((X - 5.0) ** 2 + (Y + 30.0) ** 2 + (Z + 45.0) ** 2 <= 15.0**2)
    mats = ["air", "water", "lung", "cortical_bone", "soft_tissue"]
    idx = np.zeros(SHAPE, np.int32)
    idx[body] = 1
    idx[lung] = 2
    idx[bone] = 3
    idx[kidney | tumour] = 4
    rho = np.array([0.0012, 1.0, 0.26, 1.85, 1.03], np.float32)[idx]
    ph = rd.Phantom.from_arrays(rho, idx, mats, (VOXEL_MM,) * 3)
    rest = body & ~(lung | bone | kidney | tumour)
    regions = {"kidney": kidney, "tumour": tumour, "lung": lung, "bone": bone, "body_rest": rest}
    conc = np.zeros(SHAPE)
    conc[body] = 0.02
    conc[kidney] = 1.0
    conc[tumour] = 4.0
    decays = conc * ph.voxel_mass_kg / ph.density.astype(np.float64)   # per unit volume
    decays *= TOTAL_TIA_BQ_S / decays.sum()
    return ph, rd.Source("Lu-177", decays), regions


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer histories (a few minutes less)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    import rptdose as rd

    out = common.out_dir(HERE)
    summary = common.Summary("Fast methods vs Monte Carlo: organ mean doses (Lu-177, heterogeneous phantom)")
    n_mc = 10**6 if args.quick else 10**7
    n_kernel = 2 * 10**6 if args.quick else 10**7
    n_sphere = 2 * 10**5 if args.quick else 10**6
    ph, src, regions = phantom_and_source()

    times = {}
    t = time.perf_counter()
    mc = rd.simulate(ph, src, histories=n_mc, seed=1, threads=args.threads, regions=regions, progress=False)
    times["MC"] = time.perf_counter() - t
    t = time.perf_counter()
    ldm = rd.local_deposition(ph, src, regions=regions)
    times["LDM"] = time.perf_counter() - t
    t = time.perf_counter()
    vsv = rd.vsv_dose(ph, src, half_width=10, histories=n_kernel, seed=1, threads=args.threads, regions=regions)
    times["VSV (incl. kernel, cached after the first run)"] = time.perf_counter() - t
    t = time.perf_counter()
    sph = rd.sphere_dose(ph, src, regions=regions, histories=n_sphere, threads=args.threads)
    times["sphere (incl. absorbed fractions, cached after the first run)"] = time.perf_counter() - t

    names = list(regions)
    cols: dict[str, list] = {k: [] for k in (
        "region", "mass_g", "decays", "mc_gy", "mc_unc_percent", "ldm_gy", "ldm_diff_percent", "vsv_gy",
        "vsv_unc_percent", "vsv_diff_percent", "vsv_diff_unc_percent", "sphere_gy", "sphere_diff_percent",
        "sphere_extrapolated")}
    for name in names:
        m = mc.region_means[name]
        a = m["mean_dose_gy"]
        cols["region"].append(name)
        cols["mass_g"].append(1e3 * m["mass_kg"])
        cols["decays"].append(float(src.decays[regions[name]].sum()))
        cols["mc_gy"].append(a)
        cols["mc_unc_percent"].append(100 * m["rel_uncertainty"])
        lv = ldm.region_means[name]["mean_dose_gy"]
        cols["ldm_gy"].append(lv)
        cols["ldm_diff_percent"].append(100 * (lv / a - 1))
        v = vsv.region_means[name]
        cols["vsv_gy"].append(v["mean_dose_gy"])
        cols["vsv_unc_percent"].append(100 * v["rel_uncertainty"])
        cols["vsv_diff_percent"].append(100 * (v["mean_dose_gy"] / a - 1))
        cols["vsv_diff_unc_percent"].append(100 * v["mean_dose_gy"] / a * np.hypot(v["rel_uncertainty"],
                                                                                    m["rel_uncertainty"]))
        s = sph.region_means[name]
        cols["sphere_gy"].append(s["mean_dose_gy"])
        cols["sphere_diff_percent"].append(100 * (s["mean_dose_gy"] / a - 1))
        cols["sphere_extrapolated"].append(str(s["extrapolated"]))
    common.write_csv(out / "organ_means.csv", [
        "Organ mean absorbed dose (Gy, energy / mass) by method; differences vs Monte Carlo in %",
        f"Lu-177, {TOTAL_TIA_BQ_S:.3g} decays, phantom {SHAPE} voxels of {VOXEL_MM} mm; MC {n_mc:.0e} decays",
        "uncertainties: 1 sigma statistical (MC batch method; VSV: kernel noise propagated)"], cols)

    # comparisons with the toolkit (gamma, DVH, Bland-Altman)
    gamma_rates = {}
    for label, res in (("ldm", ldm), ("vsv", vsv)):
        comp = rd.compare(mc, res, regions, names=("mc", label), gamma=((3.0, 3.0),), output_dir=out / f"compare_{label}")
        gamma_rates[label] = {k: 100 * g.pass_rate for k, g in comp.gamma.items()}

    plt = common.setup_matplotlib()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    w = 0.26
    xs = np.arange(len(names))
    for k, (key, lab) in enumerate((("ldm_diff_percent", "LDM"), ("vsv_diff_percent", "VSV"),
                                    ("sphere_diff_percent", "sphere"))):
        vals = np.clip(np.array(cols[key]), -100, 100)
        ax.bar(xs + (k - 1) * w, vals, w, label=lab)
    ax.errorbar(xs, np.zeros(len(names)), yerr=2 * np.array(cols["mc_unc_percent"]), fmt="none", ecolor="k",
                capsize=3, label="MC 2 sigma")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(xs, names)
    ax.set_ylabel("organ mean dose vs MC (%)")
    ax.set_title("Lu-177 fast methods vs Monte Carlo (clipped at +-100 %)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "organ_differences.png", dpi=120)

    summary.add(f"Phantom {SHAPE} x {VOXEL_MM} mm; Lu-177, {TOTAL_TIA_BQ_S:.3g} decays; MC {n_mc:.0e} decays, "
                f"kernel {n_kernel:.0e}, spheres {n_sphere:.0e} per sphere and component")
    summary.add("")
    summary.add(f"{'region':<10s} {'mass g':>8s} {'MC Gy':>10s} {'+-%':>5s} {'LDM %':>8s} {'VSV %':>8s} "
                f"{'+-%':>5s} {'sphere %':>9s}")
    for i, name in enumerate(names):
        summary.add(f"{name:<10s} {cols['mass_g'][i]:8.1f} {cols['mc_gy'][i]:10.4g} {cols['mc_unc_percent'][i]:5.2f} "
                    f"{cols['ldm_diff_percent'][i]:+8.2f} {cols['vsv_diff_percent'][i]:+8.2f} "
                    f"{cols['vsv_diff_unc_percent'][i]:5.2f} {cols['sphere_diff_percent'][i]:+9.2f}")
    summary.add("")
    for label, rates in gamma_rates.items():
        summary.add(f"gamma vs MC, {label}: " + ", ".join(f"{k} {v:.1f} %" for k, v in rates.items()))
    summary.add("timing: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
    summary.add("")
    for organ in ("kidney", "tumour"):
        i = names.index(organ)
        summary.check(f"{organ}: |VSV - MC| <= 5 %", abs(cols["vsv_diff_percent"][i]) <= 5.0,
                      f"{cols['vsv_diff_percent'][i]:+.2f} %")
        summary.check(f"{organ}: |LDM - MC| <= 10 %", abs(cols["ldm_diff_percent"][i]) <= 10.0,
                      f"{cols['ldm_diff_percent'][i]:+.2f} %")
        summary.check(f"{organ}: |sphere - MC| <= 10 %", abs(cols["sphere_diff_percent"][i]) <= 10.0,
                      f"{cols['sphere_diff_percent'][i]:+.2f} %")
    summary.write(out / "summary.txt")
    return 0 if summary.passed else 1


if __name__ == "__main__":
    sys.exit(main())
