"""``rptdose tia STUDY.toml -o DIR``: quantify, register and integrate a study; write the TIA.

Writes into DIR (a staging folder that replaces DIR as a whole when every file is written, with
``manifest.json``: ``rptdose.io.outdir``; each file checked: ``rptdose.io.atomic``): ``tia.nii.gz``,
``tia_rel_uncertainty.nii.gz``, ``tia.h5``, ``regions.csv``, ``timepoints.csv``,
``plots/tac_<region>.png`` and ``registration/tp<k>_to_tp1.tfm`` + ``tp<k>_check.png``.
Exit codes as for every command (``rptdose.cli``): 0 ok, 2 bad input (also: DIR in use by another
run, not writable, not enough memory or disk for the grid), 1 internal error or a failed write,
130 interrupted.
"""

from __future__ import annotations

import argparse
import time


def add_commands(sub: argparse._SubParsersAction) -> None:
    from rptdose.cli import add_study_parser

    p = add_study_parser(sub, "tia", help="time-integrated activity from a study file (SPECT/CT time points)",
                         description="Read a study file (docs/study_file.md), quantify each SPECT, register the "
                                     "time points to the first one, fit the time-activity curves and write the "
                                     "time-integrated activity map, region table and plots.")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    reg = p.add_mutually_exclusive_group()
    reg.add_argument("--no-registration", action="store_true",
                     help="do not register the time points (registration.method = none)")
    reg.add_argument("--deformable", action="store_true", help="add a BSpline step after the rigid registration")
    p.set_defaults(func=cmd_tia)


def cmd_tia(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from rptdose.io.outdir import OutputFolder
    from rptdose.resources import TIA_OUTPUT_BYTES_PER_VOXEL
    from rptdose.study import load_study

    out = Path(args.output)
    t0 = time.perf_counter()
    # the folder is locked, checked and replaced as a whole (rptdose.io.outdir); the grid's memory
    # and disk are checked by load_study as soon as the grid is known
    with OutputFolder(out, command="tia", output_bytes_per_voxel=TIA_OUTPUT_BYTES_PER_VOXEL) as tx:
        study = load_study(args.study, register=False if args.no_registration else None,
                           deformable=True if args.deformable else None)
        written = study.write_tia(tx.staging, plots=not args.no_plots)
        tx.commit({"study_file": str(study.path)})
    for note in tx.notes:
        print(f"rptdose tia: note: {note}", file=sys.stderr)
    elapsed = time.perf_counter() - t0
    print(f"rptdose tia: {study.name}: {study.nuclide}, {study.administered_activity_bq / 1e6:.6g} MBq at "
          f"{study.administration_time.isoformat()}, {len(study.timepoints)} time points, dose grid "
          f"{study.phantom.shape} of {tuple(round(v, 3) for v in study.phantom.spacing_mm)} mm")
    print("  time point  time (h)  FOV (MBq)  decay-corr. (% admin.)  registration")
    for row in study.quant_report:
        print(f"  {row['label']:<10s}  {row['time_h']:8.2f}  {row['activity_fov_mbq']:9.4g}  "
              f"{row['percent_of_administered_decay_corrected']:22.2f}  {row['registration']}")
    print("  region              model          TIA (MBq h)   +- (%)  T_eff (h)  flags")
    for row in study.region_table:
        rel = row["tia_rel_uncertainty"]
        teff = row["t_eff_h"]
        print(f"  {row['region']:<18s}  {row['model']:<13s}  {row['tia_mbq_h']:11.5g}  "
              f"{100 * rel if rel == rel else float('nan'):7.2f}  {teff:9.3g}  {','.join(row['flags'])}")
    ob = study.tia_outside_body
    if ob:
        frac = ob.get("tia_fraction_by_method", {})
        print("  voxel TIA by method (% of the TIA): " + ", ".join(
            f"{k} {100 * v:.2f}" for k, v in frac.items() if k != "none") + " (tia_method.nii.gz)")
        print(f"  outside the body outline: {100 * ob['outside_fraction']:.2f} % of the TIA, "
              f"tia.outside_body = {ob['mode']!r}"
              + (f" ({100 * ob['moved_fraction']:.2f} % moved)" if ob["mode"] == "reassign" else ""))
    print(f"  wrote {len(written)} files to {out} in {elapsed:.1f} s")
    return 0
