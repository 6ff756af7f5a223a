"""``rptdose run STUDY.toml -o DIR`` and ``rptdose demo [-o DIR]``.

=============================================  ==================================================
command                                        does
=============================================  ==================================================
``rptdose run STUDY.toml -o DIR``              load the study (quantify, register, integrate),
                                               compute the dose (``--method mc|ldm|vsv|sphere``;
                                               ``--dose-rate``: per time point, then integrate),
                                               write RT Dose, NIfTI, HDF5, region table (CSV,
                                               JSON), DVH, slices and report.html
                                               (``rptdose.pipeline``)
``rptdose demo [-o DIR]``                      write a synthetic Lu-177-DOTATATE patient (CT,
                                               four SPECTs, RTSTRUCT, study.toml) and run it
                                               (``rptdose.demo``)
=============================================  ==================================================

``--histories``, ``--seed``, ``--backend``, ``--method`` and ``--scheduler`` override the study
file's ``[dose]``. ``--scheduler local:N|tcp://HOST:PORT`` runs the Monte Carlo transport on a Dask
cluster; ``run --checkpoint FILE`` writes each completed batch to FILE (HDF5) and resumes from it
when the same command is run again (with ``--dose-rate``: one file per time point,
``FILE_tp1.h5``, ...; ``rptdose.pipeline``). ``rptdose run-many`` (``rptdose.cli_many``) runs
several studies in one command.
Exit codes as for every command (``rptdose.cli``): 0 ok, 2 bad input, 1 internal error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rptdose.transport.backends import BACKEND_NAMES


def _add_dose_options(p: argparse.ArgumentParser, histories_default: str) -> None:
    from rptdose.study import DOSE_METHODS

    p.add_argument("--method", choices=DOSE_METHODS, default=None,
                   help="dose method (default: the study file's dose.method, else mc)")
    p.add_argument("--histories", type=int, default=None, help=f"decays to simulate ({histories_default})")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the study file's dose.seed)")
    p.add_argument("--backend", choices=("auto",) + BACKEND_NAMES, default=None,
                   help="transport backend (default: the study file's dose.backend, else auto)")
    p.add_argument("--dose-rate", action="store_true",
                   help="transport each time point's activity and integrate the voxel dose-rate curves")
    p.add_argument("--scheduler", default=None, metavar="ADDR",
                   help="Monte Carlo transport on a Dask cluster: local:N (N workers here) or a scheduler address "
                        "tcp://HOST:PORT (default: the study file's dose.scheduler, else in this process)")
    p.add_argument("--precision", choices=("auto", "single", "double"), default=None,
                   help="floating point of the Monte Carlo transport (default: the study file's dose.precision, "
                        "else auto: double on the CPU, from the device on a GPU)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")


def add_commands(sub: argparse._SubParsersAction) -> None:
    from rptdose.cli import add_study_parser

    p = add_study_parser(sub, "run", help="absorbed dose of a study end to end (dose, tables, DVH, report)",
                         description="Read a study file (docs/study_file.md), compute the time-integrated activity, "
                                     "the absorbed dose and its uncertainty, and write DICOM RT Dose, NIfTI, HDF5, "
                                     "the region table (regions.csv, regions.json), DVHs, slices and report.html.")
    _add_dose_options(p, "default: the study file's dose.histories")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="HDF5 checkpoint of the Monte Carlo transport: each completed batch written; the same "
                        "command run again resumes from it (--dose-rate: PATH_tp1.h5, PATH_tp2.h5, ... per time point)")
    p.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="generate a synthetic Lu-177-DOTATATE patient and run it",
                       description="Write a synthetic Lu-177-DOTATATE SPECT/CT study (DICOM CT, four NM time points "
                                   "at 4, 24, 96 and 168 h, RTSTRUCT, study.toml) and run the whole pipeline on it.")
    d.add_argument("-o", "--output", default=None, help="output folder (default: a new temporary folder)")
    d.add_argument("--nuclide", default=None,
                   help="the demo's nuclide (default Lu-177), e.g. Ac-225: same biology, its own half-life, "
                        "daughters and administered activity (rptdose.demo)")
    from rptdose.demo import DEMO_HISTORIES

    _add_dose_options(d, f"default {DEMO_HISTORIES:.0e}")
    d.set_defaults(func=cmd_demo)


#: The statistical column of the summary per method (header, what it is); no column for a method
#: without a statistical uncertainty (ldm).
STAT_COLUMN = {"mc": "+- stat (%)", "vsv": "+- kernel (%)", "sphere": "+- AF (%)"}


def _summary(outcome, out: Path) -> None:
    """The run's summary on stdout: what applies to the dose method (histories, seed and backend
    for Monte Carlo; the kernel or absorbed-fraction table for vsv/sphere; nothing of the kind for
    ldm) and the region table, whose statistical column is the method's own (none for ldm)."""
    from rptdose.report.html import method_facts

    st, dose = outcome.study, outcome.dose
    facts = dict(method_facts(dose))
    head = (f"rptdose run: {st.name}: {st.nuclide}, {st.administered_activity_bq / 1e6:.6g} MBq, "
            f"{len(st.timepoints)} time points; method {dose.method}")
    if dose.method == "mc":
        where = f", scheduler {dose.scheduler}" if getattr(dose, "scheduler", None) else ""
        print(f"{head}, {dose.histories} histories, seed {dose.seed}, backend {dose.backend}{where}")
    else:
        print(f"{head}; " + "; ".join(f"{k}: {v}" for k, v in facts.items() if k != "statistical uncertainty"))
    stat_header = STAT_COLUMN.get(dose.method)
    print(f"  statistical uncertainty: {facts.get('statistical uncertainty') or 'none'}"
          + ("" if stat_header is None else f" (column '{stat_header}'; '-' where a region has none)"))
    cols = [("name", "region", 18, "s", 1), ("kind", "kind", 7, "s", 1), ("mean_dose_gy", "mean (Gy)", 10, ".4g", 1)]
    if stat_header is not None:
        cols.append(("mean_dose_rel_uncertainty", stat_header, max(11, len(stat_header)), ".2f", 100))
    cols += [("d2_gy", "D2 (Gy)", 9, ".4g", 1), ("d98_gy", "D98 (Gy)", 9, ".4g", 1), ("t_eff_h", "T_eff (h)", 9, ".3g", 1)]

    def cell(value, width, fmt, scale):
        if fmt == "s":
            return f"{value:<{width}s}"
        if value is None or value != value:
            return f"{'-':>{width}s}"
        return f"{value * scale:>{width}{fmt}}"

    print("  " + "  ".join(f"{h:<{w}s}" if f == "s" else f"{h:>{w}s}" for _, h, w, f, _s in cols))
    for r in outcome.regions:
        print("  " + "  ".join(cell(r.get(k), w, f, sc) for k, _h, w, f, sc in cols))
    src = getattr(st, "source", None)
    if getattr(src, "decay_chain", None) is not None and (src.decay_chain.has_daughters or src.alpha_mev_per_decay > 0):
        print(f"  {src.chain_note}")
        if src.alpha_mev_per_decay > 0 and "rbe_csv" in outcome.outputs:
            print(f"  alphas + recoils {src.alpha_mev_per_decay:.4g} MeV per decay at the decay site; RBE-weighted dose "
                  f"in Gy(RBE): {Path(outcome.outputs['rbe_nifti']).name}, {Path(outcome.outputs['rbe_csv']).name}")
    for w in outcome.warnings:
        print(f"  warning: {w}")
    t = outcome.timings_s
    print(f"  timings: study {t['load_study']:.1f} s, dose {t['dose']:.1f} s, outputs {t['outputs']:.1f} s")
    print(f"  wrote {len(outcome.outputs)} files to {out}; report: {outcome.report}")


def _run_kwargs(args: argparse.Namespace) -> dict:
    from rptdose.study import check_scheduler

    if args.scheduler is not None:
        check_scheduler(args.scheduler, "--scheduler")
    return {"method": args.method, "histories": args.histories, "seed": args.seed, "backend": args.backend,
            "dose_rate": args.dose_rate, "plots": not args.no_plots, "scheduler": args.scheduler,
            "checkpoint": getattr(args, "checkpoint", None), "precision": args.precision}


def cmd_run(args: argparse.Namespace) -> int:
    from rptdose.pipeline import run_study

    out = Path(args.output)
    outcome = run_study(args.study, out, progress=None, **_run_kwargs(args))
    _print_notes("run", outcome)
    _summary(outcome, out)
    return 0


def _print_notes(command: str, outcome) -> None:
    """What the output folder's update did besides writing (leftovers removed, files kept)."""
    import sys

    for note in getattr(outcome, "output_notes", ()):
        print(f"rptdose {command}: note: {note}", file=sys.stderr)


def cmd_demo(args: argparse.Namespace) -> int:
    import sys
    import tempfile

    from rptdose.demo import DEMO_HISTORIES, demo_label, write_demo_study
    from rptdose.errors import InputError
    from rptdose.io.outdir import OutputFolder, lock_folder
    from rptdose.pipeline import run_study

    root = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="rptdose-demo-"))
    if root.exists() and not root.is_dir():
        raise InputError(f"--output '{root}' (is a file): expected a folder for the demo")
    # one demo at a time in ROOT; ROOT/patient and ROOT/results are each replaced as a whole
    # (rptdose.io.outdir), so an interrupted demo leaves the earlier ones
    with lock_folder(root, command="demo"):
        with OutputFolder(root / "patient", command="demo") as tx:
            write_demo_study(tx.staging, nuclide=args.nuclide)
            tx.commit()
        for note in tx.notes:
            print(f"rptdose demo: note: {note}", file=sys.stderr)
        study_file = root / "patient" / "study.toml"
        print(f"rptdose demo: synthetic {demo_label(args.nuclide)} patient written to {study_file.parent}")
        kwargs = _run_kwargs(args)
        if kwargs["histories"] is None:
            kwargs["histories"] = DEMO_HISTORIES
        outcome = run_study(study_file, root / "results", progress=None, **kwargs)
    _print_notes("demo", outcome)
    _summary(outcome, root / "results")
    print(f"report: {outcome.report}")
    return 0
