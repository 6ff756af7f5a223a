"""Fast methods vs Monte Carlo on the bundled demo patient (Lu-177-DOTATATE, rptdose.demo).

Usage (from the repository root):  python validation/methods/demo_patient.py [--quick] [--histories N]

Patient: the synthetic patient of ``rptdose demo`` (python/rptdose/demo.py: CT with lungs, spine
with red marrow, ribs, liver with two tumours, spleen, kidneys with cortex and medulla, bladder;
four SPECT time points at 4, 24, 96 and 168 h), written by ``rptdose.demo.write_demo_study`` on
the default 4.8 mm grid (--quick: 9.6 mm, 8 times fewer voxels) into
validation/methods/out/demo_patient/patient/.

The study is loaded once (quantification, registration, TIA) and the same study is run with each
method through the public pipeline, ``rptdose.pipeline.run_study`` (= ``rptdose run --method``),
seed 1:
  MC      rd.simulate of the TIA map (reference; 1e7 decays as ``rptdose demo``, --quick 1e6)
  LDM     rd.local_deposition (electrons local, photons ignored)
  VSV     rd.vsv_dose (pipeline defaults: water kernel by rptdose's MC for the voxel size, k = 10,
          1e7 decays, density correction)
  sphere  rd.sphere_dose (pipeline defaults: unit-density soft-tissue sphere absorbed fractions;
          self-dose only)

Writes into validation/methods/out/demo_patient/: organ_means_demo.csv (mean dose per region and
method, % vs MC, MC statistical uncertainty), summary.txt, the pipeline outputs of each method
(results_<method>/: RT Dose, NIfTI, HDF5, region table, report.html; no PNG figures) and the
rd.compare outputs for LDM and VSV vs MC inside the body outline (compare_ldm/, compare_vsv/:
gamma, DVH, Bland-Altman, HTML; outside the outline the SPECT blur leaves ~1 % of the TIA in air
voxels, whose dose, energy / air mass, would otherwise set the gamma threshold; its share is
reported).

Targets as in validation/methods/run.py (kidneys and tumours, the regions these methods are used
for): |VSV - MC| <= 5 % (Lanconelli et al., Phys Med Biol 57:517, 2012 and Dieudonne et al.,
J Nucl Med 54:236, 2013 report a few % in soft tissue), |LDM - MC| <= 10 % and |sphere - MC|
<= 10 % (Hou et al., J Nucl Med 62:1597, 2021: LDM within ~5-10 % of MC for Lu-177 organ means).
The other regions (liver, spleen, red marrow, bladder, lungs, body, field of view) are reported
without a target.
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

SEED = 1
QUICK_VOXEL_MM = 9.6
METHODS = ("mc", "ldm", "vsv", "sphere")
#: regions with a target (kind kidney or tumour in rptdose.pipeline.region_kind)
TARGET_KINDS = ("kidney", "tumour")
#: report order (any other region of the study follows)
ORDER = ("kidney_left", "kidney_right", "tumour_1", "tumour_2", "liver", "spleen", "red_marrow", "bladder",
         "lungs", "body", "field_of_view")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help=f"{QUICK_VOXEL_MM} mm grid instead of 4.8 mm and 1e6 MC decays (a few minutes)")
    ap.add_argument("--histories", type=int, default=None,
                    help="MC decays (default 1e7 as rptdose demo; --quick 1e6)")
    ap.add_argument("--out", default=None, help="output folder (default validation/methods/out/demo_patient)")
    args = ap.parse_args()
    import rptdose as rd
    from rptdose.demo import DEMO_HISTORIES, DEMO_VOXEL_MM, DemoPatient, write_demo_study
    from rptdose.pipeline import region_kind, run_study
    from rptdose.study import load_study

    voxel = QUICK_VOXEL_MM if args.quick else DEMO_VOXEL_MM
    n_mc = args.histories if args.histories is not None else (10**6 if args.quick else DEMO_HISTORIES)
    out = Path(args.out) if args.out else common.out_dir(HERE) / "demo_patient"
    out.mkdir(parents=True, exist_ok=True)
    summary = common.Summary("Fast methods vs Monte Carlo: organ mean doses on the demo patient (Lu-177-DOTATATE)")

    times: dict[str, float] = {}
    t = time.perf_counter()
    patient = DemoPatient(voxel_mm=voxel)
    study_file = write_demo_study(out / "patient", patient, histories=n_mc)
    times["write patient"] = time.perf_counter() - t
    t = time.perf_counter()
    study = load_study(study_file)
    times["load study (quantify, register, TIA)"] = time.perf_counter() - t

    outcomes = {}
    for m in METHODS:
        t = time.perf_counter()
        outcomes[m] = run_study(study, out / f"results_{m}", method=m, histories=n_mc, seed=SEED, plots=False)
        times[m.upper() if m != "sphere" else m] = time.perf_counter() - t
        print(f"{m}: {times[m.upper() if m != 'sphere' else m]:.1f} s", flush=True)

    rows = {m: {r["name"]: r for r in o.regions} for m, o in outcomes.items()}
    names = [n for n in ORDER if n in rows["mc"]] + [n for n in rows["mc"] if n not in ORDER]
    cols: dict[str, list] = {k: [] for k in (
        "region", "kind", "mass_g", "tia_bq_s", "mc_gy", "mc_unc_percent", "ldm_gy", "ldm_diff_percent",
        "vsv_gy", "vsv_unc_percent", "vsv_diff_percent", "vsv_diff_unc_percent", "sphere_gy",
        "sphere_diff_percent", "sphere_extrapolated")}
    for name in names:
        mc = rows["mc"][name]
        a = mc["mean_dose_gy"]
        mc_rel = mc["mean_dose_rel_uncertainty"]
        cols["region"].append(name)
        cols["kind"].append(region_kind(name))
        cols["mass_g"].append(mc["mass_g"])
        cols["tia_bq_s"].append(mc["tia_bq_s"])
        cols["mc_gy"].append(a)
        cols["mc_unc_percent"].append(100 * mc_rel)
        lv = rows["ldm"][name]["mean_dose_gy"]
        cols["ldm_gy"].append(lv)
        cols["ldm_diff_percent"].append(100 * (lv / a - 1))
        v = rows["vsv"][name]
        v_rel = v["mean_dose_rel_uncertainty"]
        v_rel = 0.0 if not np.isfinite(v_rel) else v_rel
        cols["vsv_gy"].append(v["mean_dose_gy"])
        cols["vsv_unc_percent"].append(100 * v_rel)
        cols["vsv_diff_percent"].append(100 * (v["mean_dose_gy"] / a - 1))
        cols["vsv_diff_unc_percent"].append(100 * v["mean_dose_gy"] / a * np.hypot(v_rel, mc_rel))
        s = outcomes["sphere"].dose.region_means[name]
        cols["sphere_gy"].append(s["mean_dose_gy"])
        cols["sphere_diff_percent"].append(100 * (s["mean_dose_gy"] / a - 1))
        cols["sphere_extrapolated"].append(str(s.get("extrapolated", "")))
    total_tia = float(study.tia.sum())
    common.write_csv(out / "organ_means_demo.csv", [
        "Organ mean absorbed dose (Gy, energy / mass) on the rptdose demo patient by method; differences vs "
        "Monte Carlo in %",
        f"Lu-177-DOTATATE {study.administered_activity_bq / 1e6:g} MBq; TIA {total_tia:.4g} Bq s on the dose grid "
        f"{study.phantom.shape} (z, y, x) of {voxel} mm; MC {n_mc:.0e} decays, seed {SEED}",
        "each method through rptdose.pipeline.run_study on the same loaded study; regions overlap as in "
        "the RTSTRUCT (liver includes the tumours, kidneys their medulla); field_of_view: the whole grid (air "
        "voxels included)",
        "uncertainties: 1 sigma statistical (MC batch method; VSV: kernel noise propagated); TIA uncertainty not "
        "included"], cols)

    # Air voxels: the SPECT blur puts part of the TIA outside the body outline, where a voxel's
    # mass is ~1000 times smaller; the dose there (energy / air mass) reaches 1e2..1e3 Gy and
    # would set the gamma threshold (10 % of the MC maximum). The comparisons are therefore made
    # inside the body outline (dose set to 0 outside it); the air share is reported.
    body = np.asarray(study.masks["body"], dtype=bool)
    mass = np.asarray(study.phantom.voxel_mass_kg, dtype=np.float64)
    tia_outside = float(study.tia[~body].sum()) / total_tia
    energy_outside = {}
    max_outside = {}
    for m, o in outcomes.items():
        d = np.asarray(o.dose.dose_gy, dtype=np.float64)
        energy_outside[m] = float((d * mass)[~body].sum() / (d * mass).sum())
        max_outside[m] = float(d[~body].max()) if (~body).any() else 0.0

    # comparisons with the toolkit (gamma, DVH, Bland-Altman, HTML)
    masks = dict(study.masks)
    gamma_rates = {}
    ref = np.where(body, np.asarray(outcomes["mc"].dose.dose_gy, dtype=np.float64), 0.0)
    for label in ("ldm", "vsv"):
        ev = outcomes[label].dose
        comp = rd.compare(ref, np.where(body, np.asarray(ev.dose_gy, dtype=np.float64), 0.0), masks,
                          spacing_mm=tuple(study.phantom.spacing_mm), names=("mc", label),
                          rel_uncertainty_a=outcomes["mc"].dose.rel_uncertainty,
                          rel_uncertainty_b=ev.rel_uncertainty, gamma=((3.0, 3.0),), voxel_mass_kg=mass,
                          output_dir=out / f"compare_{label}")
        gamma_rates[label] = {k: 100 * g.pass_rate for k, g in comp.gamma.items()}

    summary.add(f"Demo patient (rptdose.demo) on {study.phantom.shape} (z, y, x) voxels of {voxel} mm"
                f"{' (--quick grid)' if args.quick else ' (the default demo grid)'}; Lu-177-DOTATATE "
                f"{study.administered_activity_bq / 1e6:g} MBq, TIA {total_tia:.4g} Bq s on the grid")
    summary.add(f"MC {n_mc:.0e} decays, seed {SEED}; VSV and sphere with the pipeline's defaults "
                "(kernel 1e7 decays, k = 10; spheres 1e6 decays per sphere and component)")
    summary.add("Each method through rptdose.pipeline.run_study (= rptdose run --method) on the same loaded study")
    summary.add("")
    summary.add(f"{'region':<14s} {'mass g':>9s} {'MC Gy':>9s} {'+-%':>5s} {'LDM %':>8s} {'VSV %':>8s} "
                f"{'+-%':>5s} {'sphere %':>9s}")
    for i, name in enumerate(names):
        summary.add(f"{name:<14s} {cols['mass_g'][i]:9.1f} {cols['mc_gy'][i]:9.4g} {cols['mc_unc_percent'][i]:5.2f} "
                    f"{cols['ldm_diff_percent'][i]:+8.2f} {cols['vsv_diff_percent'][i]:+8.2f} "
                    f"{cols['vsv_diff_unc_percent'][i]:5.2f} {cols['sphere_diff_percent'][i]:+9.2f}"
                    + ("  (sphere extrapolated)" if cols["sphere_extrapolated"][i] == "True" else ""))
    summary.add("")
    for label, rates in gamma_rates.items():
        summary.add(f"gamma vs MC inside the body outline, {label}: "
                    + ", ".join(f"{k} {v:.1f} %" for k, v in rates.items()))
    summary.add(f"outside the body outline (air): {100 * tia_outside:.2f} % of the TIA (SPECT blur); share of the "
                "deposited energy there: " + ", ".join(f"{m} {100 * v:.2f} %" for m, v in energy_outside.items())
                + "; maximum dose there: " + ", ".join(f"{m} {v:.3g} Gy" for m, v in max_outside.items()))
    summary.add("sphere: a region-level method; its voxel map (dose.h5 of results_sphere) holds region means only, "
                "so it is compared by region means, not by gamma")
    summary.add("timing: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
                + " (VSV kernel and sphere absorbed fractions cached after their first run)")
    summary.add("")
    summary.add("Targets (kidneys and tumours; as validation/methods/run.py): |VSV - MC| <= 5 % (Lanconelli et al. "
                "2012, Dieudonne et al. 2013), |LDM - MC| <= 10 % and |sphere - MC| <= 10 % (Hou et al. 2021)")
    for i, name in enumerate(names):
        if cols["kind"][i] not in TARGET_KINDS:
            continue
        summary.check(f"{name}: |VSV - MC| <= 5 %", abs(cols["vsv_diff_percent"][i]) <= 5.0,
                      f"{cols['vsv_diff_percent'][i]:+.2f} %")
        summary.check(f"{name}: |LDM - MC| <= 10 %", abs(cols["ldm_diff_percent"][i]) <= 10.0,
                      f"{cols['ldm_diff_percent'][i]:+.2f} %")
        summary.check(f"{name}: |sphere - MC| <= 10 %", abs(cols["sphere_diff_percent"][i]) <= 10.0,
                      f"{cols['sphere_diff_percent'][i]:+.2f} %")
    summary.write(out / "summary.txt")
    return 0 if summary.passed else 1


if __name__ == "__main__":
    sys.exit(main())
