"""``rptdose run-many STUDY.toml [STUDY.toml ...] -o OUTDIR``: many patients in one command.

Each study is run as ``rptdose run`` runs it (:func:`rptdose.pipeline.run_study`) into a folder of
its own, ``OUTDIR/<name>``, named after the study file's folder (``/data/p01/study.toml`` ->
``p01``; characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``, and a name
already taken, case aside, gets ``_2``, ``_3``, ...). A study that fails (bad input, broken data,
or an unexpected exception) does not stop the others: it is reported on its progress line, its
message and traceback are written to ``OUTDIR/<name>.error.txt`` (beside its folder, which keeps
an earlier run's results, if any), and the command goes on.

Then, in ``OUTDIR`` (each file written atomically, :mod:`rptdose.io.atomic`):

=====================  ==========================================================================
file                   content
=====================  ==========================================================================
``summary.csv``        one row per region and study (:data:`SUMMARY_COLUMNS`): the mean dose, its
                       statistical uncertainty (relative, as in regions.csv, and in Gy), the total
                       ``u_total`` of the region's budget (relative and in Gy), the mass; a failed
                       study has one row with its status and error
``summary.json``       the same per study (format :data:`SUMMARY_FORMAT`), with the settings
``summary.html``       one self-contained page: the regions x studies table of mean +- uncertainty,
                       the failures with their errors, links to each study's report.html, and a
                       figure of the region doses across the studies (:mod:`rptdose.report.many`)
=====================  ==========================================================================

The dose options are those of ``rptdose run`` (``--method``, ``--histories``, ``--seed``,
``--backend``, ``--dose-rate``, ``--scheduler``, ``--precision``, ``--no-plots``: cli_run.py) and
override every study file's ``[dose]`` values. Exit codes: 0 all studies done, 1 at least one failed, 2 bad command
line (a study file missing or given twice, a bad ``--scheduler``, ``--histories`` < 1), before
any study runs; 130 / 143 interrupted (no summary written).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


#: summary.json: the format name and version.
SUMMARY_FORMAT = "rptdose-run-many"
SUMMARY_FORMAT_VERSION = 1

#: Columns of summary.csv.
SUMMARY_COLUMNS = ("patient", "status", "region", "kind", "mean_dose_gy", "mean_dose_rel_uncertainty",
                   "mean_dose_uncertainty_gy", "u_total", "u_total_gy", "mass_g", "method", "study_file", "report",
                   "error")

#: Names in OUTDIR that are not study folders.
RESERVED_NAMES = ("summary.csv", "summary.json", "summary.html")
ERROR_SUFFIX = ".error.txt"


@dataclass
class StudyRun:
    """One study of a run-many: where it came from, where it went, how it ended."""

    name: str
    study_file: Path
    status: str = "pending"             # "ok" | "failed"
    outcome: Any = None                 # rptdose.pipeline.RunOutcome when ok
    error: str | None = None            # one line: the exception's type and message
    error_type: str | None = None
    error_file: Path | None = None
    elapsed_s: float = 0.0
    regions: list[dict[str, Any]] = field(default_factory=list)   # summary rows (ok)


def add_commands(sub: argparse._SubParsersAction) -> None:
    from rptdose.cli_run import _add_dose_options

    p = sub.add_parser("run-many", help="run several studies (patients) and summarise their region doses",
                       description="Run each study file as 'rptdose run' does, each into OUTDIR/<its folder's "
                                   "name>; a failed study is reported and the others go on. Writes "
                                   "OUTDIR/summary.csv, summary.json and summary.html (regions x patients). "
                                   "Exit code 0: all studies done; 1: some failed; 2: bad command line.")
    p.add_argument("studies", nargs="+", metavar="STUDY", help="study files (TOML)")
    p.add_argument("-o", "--output", required=True, help="output folder: one folder per study and the summary")
    _add_dose_options(p, "default: each study file's dose.histories")  # those of rptdose run, for every study
    p.set_defaults(func=cmd_run_many)


# ---- names -------------------------------------------------------------------------------------

def study_names(paths: list[Path]) -> list[str]:
    """One output folder name per study file: its folder's name made safe as a file name
    (:func:`rptdose.quant.outputs.safe_name`), unique in the list regardless of case (``_2``,
    ``_3``, ... appended), never one of :data:`RESERVED_NAMES` or an error file's name."""
    from rptdose.quant.outputs import safe_name

    taken: set[str] = {n.lower() for n in RESERVED_NAMES}
    out = []
    for p in paths:
        folder = Path(os.path.abspath(p)).parent.name
        base = safe_name(folder or "study")
        name, k = base, 1
        while name.lower() in taken or name.lower().endswith(ERROR_SUFFIX):
            k += 1
            name = f"{base}_{k}"
        taken.add(name.lower())
        out.append(name)
    return out


# ---- the command -------------------------------------------------------------------------------

def _check_arguments(args: argparse.Namespace) -> tuple[list[Path], Path]:
    """Everything about the command line that can be checked before any study runs (InputError:
    exit code 2)."""
    from rptdose.errors import InputError

    paths = [Path(s) for s in args.studies]
    seen: dict[str, Path] = {}
    for p in paths:
        if not p.is_file():
            raise InputError(f"study '{p}' ({'is a folder' if p.is_dir() else 'does not exist'}): expected a study "
                             "file (TOML)")
        key = os.path.realpath(p)
        if key in seen:
            raise InputError(f"study '{p}' (given twice: also as '{seen[key]}'): expected each study once")
        seen[key] = p
    if args.histories is not None and args.histories < 1:
        raise InputError(f"--histories {args.histories}: expected an integer >= 1")
    if args.seed is not None and args.seed < 0:
        raise InputError(f"--seed {args.seed}: expected an integer >= 0")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"--output '{out}' (is a file): expected a folder for the studies' results")
    return paths, out


def cmd_run_many(args: argparse.Namespace) -> int:
    from rptdose import _interrupt
    from rptdose.io.outdir import lock_folder

    paths, out = _check_arguments(args)
    names = study_names(paths)
    runs = [StudyRun(name, path) for name, path in zip(names, paths)]
    from rptdose.cli_run import _run_kwargs

    settings = _run_kwargs(args)  # the keyword arguments of run_study, as for rptdose run
    with lock_folder(out, command="run-many"):
        cluster = None
        run_settings = settings
        if args.scheduler is not None and args.scheduler.startswith("local:"):
            from rptdose.transport.distributed import Cluster

            cluster = Cluster(args.scheduler, None)  # one local cluster for all the studies
            run_settings = dict(settings, scheduler=cluster.client)
        try:
            for i, run in enumerate(runs, start=1):
                _run_one(run, out, run_settings)
                print(f"rptdose run-many: [{i}/{len(runs)}] {_progress_line(run)}", flush=True)
                _interrupt.check()   # a Ctrl-C swallowed on the way: stop here
        finally:
            if cluster is not None:
                cluster.close()
        written = write_summary(out, runs, settings)
    failed = [r for r in runs if r.status != "ok"]
    done = len(runs) - len(failed)
    tail = f", {len(failed)} failed ({', '.join(r.name for r in failed)})" if failed else ""
    print(f"rptdose run-many: {done} of {len(runs)} studies done{tail}; summary: {written['html']}")
    return 1 if failed else 0


def _run_one(run: StudyRun, out: Path, settings: dict) -> None:
    """Run one study into ``out/<name>``; any failure recorded on ``run`` (never raised, except
    KeyboardInterrupt and SystemExit)."""
    from rptdose.errors import RptdoseError
    from rptdose.pipeline import run_study

    run.error_file = out / f"{run.name}{ERROR_SUFFIX}"
    try:
        run.error_file.unlink()          # an earlier run-many's error of this study
    except FileNotFoundError:
        pass
    t0 = time.perf_counter()
    try:
        outcome = run_study(run.study_file, out / run.name, progress=None, **settings)
    except Exception as exc:             # noqa: BLE001 - one study's failure must not stop the others
        run.elapsed_s = time.perf_counter() - t0
        run.status = "failed"
        run.error_type = type(exc).__name__
        message = " ".join(str(exc).split()) or "(no message)"
        run.error = f"{run.error_type}: {message}"
        kind = "input or data error" if isinstance(exc, RptdoseError) else "unexpected error (please report it)"
        text = (f"rptdose run-many: study '{run.study_file}' failed: {kind}\n{run.error}\n\n"
                + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        try:
            from rptdose.quant.outputs import write_text

            write_text(run.error_file, text)
        except Exception as werr:        # noqa: BLE001 - the error itself is still reported
            print(f"rptdose run-many: note: could not write '{run.error_file}': {werr}", file=sys.stderr)
            run.error_file = None
        return
    run.elapsed_s = time.perf_counter() - t0
    run.status = "ok"
    run.outcome = outcome
    run.error_file = None
    run.regions = [_summary_row(r) for r in outcome.regions]
    for note in getattr(outcome, "output_notes", ()):
        print(f"rptdose run-many: note: {run.name}: {note}", file=sys.stderr)


def _progress_line(run: StudyRun) -> str:
    if run.status == "ok":
        d = run.outcome.dose
        what = f"{d.histories} histories" if d.method == "mc" else "no transport" if d.method == "ldm" else ""
        return (f"{run.name}: ok ({d.method}{', ' + what if what else ''}, {len(run.regions)} regions, "
                f"{run.elapsed_s:.1f} s): {run.outcome.report}")
    where = f"; details: {run.error_file}" if run.error_file is not None else ""
    return f"{run.name}: FAILED ({run.study_file}): {run.error}{where}"


# ---- the summary -------------------------------------------------------------------------------

def _finite(v: Any) -> float | None:
    import math

    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _summary_row(r: dict[str, Any]) -> dict[str, Any]:
    """A region row of the run's table reduced to the summary's quantities (:data:`SUMMARY_COLUMNS`)."""
    mean = _finite(r.get("mean_dose_gy"))
    rel = _finite(r.get("mean_dose_rel_uncertainty"))
    tot = _finite(r.get("u_total"))
    return {"region": r["name"], "kind": r.get("kind"), "mean_dose_gy": mean, "mean_dose_rel_uncertainty": rel,
            "mean_dose_uncertainty_gy": None if mean is None or rel is None else mean * rel,
            "u_total": tot, "u_total_gy": None if mean is None or tot is None else mean * tot,
            "mass_g": _finite(r.get("mass_g"))}


def summary_document(out: Path, runs: list[StudyRun], settings: dict) -> dict[str, Any]:
    """summary.json's content (format :data:`SUMMARY_FORMAT`, version :data:`SUMMARY_FORMAT_VERSION`)."""
    from rptdose._provenance import now_utc, rptdose_version
    from rptdose.pipeline import json_clean

    studies = []
    for r in runs:
        s: dict[str, Any] = {"patient": r.name, "study_file": str(r.study_file), "status": r.status,
                             "elapsed_s": round(r.elapsed_s, 3)}
        if r.status == "ok":
            d = r.outcome.dose
            prov = r.outcome.provenance.get("dose", {})
            s.update({"study_name": r.outcome.study.name, "output": r.name, "report": f"{r.name}/report.html",
                      "method": d.method, "histories": d.histories, "seed": d.seed, "backend": d.backend,
                      "scheduler": prov.get("scheduler"), "warnings": list(r.outcome.warnings),
                      "regions": r.regions})
        else:
            s.update({"error": r.error, "error_type": r.error_type,
                      "error_file": None if r.error_file is None else r.error_file.name})
        studies.append(s)
    return json_clean({"format": SUMMARY_FORMAT, "format_version": SUMMARY_FORMAT_VERSION,
                       "rptdose_version": rptdose_version(), "created": now_utc(), "output": str(out),
                       "settings": dict(settings), "studies_total": len(runs),
                       "studies_failed": sum(r.status != "ok" for r in runs), "studies": studies})


def summary_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """summary.csv's rows: one per region and study, one per failed study."""
    rows = []
    for s in doc["studies"]:
        common = {"patient": s["patient"], "status": s["status"], "study_file": s["study_file"]}
        if s["status"] == "ok":
            for r in s["regions"]:
                rows.append({**common, **r, "method": s["method"], "report": s["report"]})
        else:
            rows.append({**common, "error": s["error"]})
    return rows


def write_summary(out: Path, runs: list[StudyRun], settings: dict) -> dict[str, Path]:
    """Write summary.csv, summary.json and summary.html into ``out`` (atomically each)."""
    import json

    from rptdose.quant.outputs import write_csv, write_text
    from rptdose.report.many import summary_figure_png, summary_html

    doc = summary_document(out, runs, settings)
    written = {"csv": write_csv(out / "summary.csv", summary_rows(doc), SUMMARY_COLUMNS),
               "json": write_text(out / "summary.json", json.dumps(doc, indent=1, allow_nan=False) + "\n")}
    png = summary_figure_png(doc) if settings.get("plots", True) else None
    written["html"] = write_text(out / "summary.html", summary_html(doc, png))
    return written
