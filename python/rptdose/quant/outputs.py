"""Writing the results of the quantification step, every file atomically.

``write_tia_outputs(study, outdir)`` writes (names in ``outdir``):

===================================  ==========================================================
file                                 content
===================================  ==========================================================
``tia.nii.gz``                       TIA (decays per voxel, Bq*s) on the dose grid, float64
``tia_rel_uncertainty.nii.gz``       relative 1-sigma uncertainty of the TIA (NaN: undefined)
``tia.h5``                           the same maps plus the fit model and flags per voxel, the
                                     activity per time point (Bq, float32), the region masks,
                                     geometry and provenance (format_version "1", kind
                                     "rptdose.TIAMap")
``regions.csv``                      one row per region: volume, mass, activity per time point,
                                     model, TIA, uncertainty, effective half-life, flags
``timepoints.csv``                   the quantification report: per time point the time after
                                     administration, the activity in the field of view at scan
                                     time and decay-corrected to the administration, and that
                                     as a percentage of the administered activity
``plots/tac_<region>.png``           time-activity curve and fit of each region
``registration/tp<k>_to_tp1.tfm``    the transform of time point k (reference -> its frame);
                                     ``#rptdose`` comment lines: seed, sampling, metric work
                                     units, threads, SimpleITK version
``registration/tp<k>_check.png``     fused check image of time point k (k >= 2)
===================================  ==========================================================

Each file is written by :mod:`rptdose.io.atomic` (whose ``atomic_path``, ``write_text``,
``write_image`` and ``write_figure`` this module re-exports): under a hidden temporary name in
its folder, checked (size, or read back), flushed to disk and moved into place with
:func:`os.replace`: a failure leaves no partial file under the final name and the earlier file
untouched. ``rptdose tia`` writes the whole set into a staging folder that replaces the output
folder as one unit (:class:`rptdose.io.outdir.OutputFolder`).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rptdose.errors import InputError
# the one atomic, checked writer of every output (rptdose.io.atomic), re-exported here
from rptdose.io.atomic import atomic_path, write_figure, write_image, write_text  # noqa: F401

TIA_FORMAT_VERSION = "1"
TIA_KIND = "rptdose.TIAMap"


def write_csv(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str] | None = None) -> Path:
    if columns is not None:
        cols = list(columns)
    else:  # the union of the rows' keys, in order of appearance
        cols = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([csv_text(str(c)) for c in cols])  # column names may hold region names (dvh.csv)
    for row in rows:
        writer.writerow([_fmt(row.get(k)) for k in cols])
    return write_text(path, buf.getvalue())


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if not np.isfinite(v) else f"{v:.8g}"
    if isinstance(v, (list, tuple)):
        return csv_text(";".join(str(x) for x in v))
    if isinstance(v, (str, bytes)):
        return csv_text(v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v)
    return "" if v is None else v


#: First characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection).
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CSV_NUMBERS = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
                          r"(?:\s*;\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)*\s*")


def csv_text(text: str) -> str:
    """A text cell made safe for spreadsheets: one that starts with ``= + - @``, a tab or a
    carriage return gets a leading single quote (OWASP's advice against CSV injection), so that
    ``=HYPERLINK(...)`` stays text. Numbers written as text (``-1.5``, ``-8;4;0``) are left as they
    are: they stay numbers. Only text is escaped; the writers pass numbers through untouched.
    A carriage return inside becomes a line feed: the writers end rows with ``\\n``, so the csv
    module quotes cells holding ``\\n`` but not a lone ``\\r``, which readers take as a row end."""
    if text.startswith(CSV_FORMULA_START) and not _CSV_NUMBERS.fullmatch(text):
        text = "'" + text
    return text.replace("\r\n", "\n").replace("\r", "\n")


#: Longest file-name part made from a region name (characters).
SAFE_NAME_MAX = 64
_WINDOWS_DEVICES = {"con", "prn", "aux", "nul"} | {f"{d}{i}" for d in ("com", "lpt") for i in range(1, 10)}


def safe_name(name: str) -> str:
    """A region name as a file-name part: runs of characters other than ASCII letters, digits,
    ``.``, ``_`` and ``-`` become ``_`` (no ``/``, ``..``, spaces or control characters), no
    leading or trailing ``.`` or ``_``. A name that keeps nothing (e.g. all non-ASCII), a Windows
    device name (``CON``, ``NUL``, ...) or one longer than :data:`SAFE_NAME_MAX` characters gets
    the first 8 hex digits of its SHA-256 appended, so that distinct names keep distinct files.
    Names that still coincide (``liver part`` and ``liver/part``, or ``Liver`` and ``liver`` on a
    case-insensitive disk) are refused when the segmentation is read
    (:func:`rptdose.io.segmentation.check_region_names`)."""
    import hashlib

    text = str(name)
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip()).strip("._")
    if not s or s.split(".")[0].lower() in _WINDOWS_DEVICES or len(s) > SAFE_NAME_MAX:
        digest = hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()[:8]
        stem = s[:SAFE_NAME_MAX - 9].strip("._") or "region"
        head, dot, tail = stem.partition(".")   # NUL.txt is a device too: the digest goes before the dot
        s = f"{head}_{digest}{dot}{tail}"
    return s


def write_tia_h5(path: str | os.PathLike, study: Any) -> Path:
    from rptdose.io.hdf5 import atomic_h5, to_json, write_masks

    geo = study.geometry
    with atomic_h5(path, name="tia.h5") as h5:
        h5.attrs["format_version"] = TIA_FORMAT_VERSION
        h5.attrs["kind"] = TIA_KIND
        h5.attrs["provenance"] = to_json(study.provenance)
        h5.attrs["nuclide"] = study.nuclide
        h5.attrs["half_life_s"] = float(study.half_life_s)
        h5.attrs["administered_activity_bq"] = float(study.administered_activity_bq)
        h5.attrs["spacing_mm"] = np.asarray(geo["spacing_mm"], dtype=np.float64)
        h5.attrs["origin_mm"] = np.asarray(geo["origin_mm"], dtype=np.float64)
        h5.attrs["direction"] = np.asarray(geo["direction"], dtype=np.float64)
        h5.attrs["times_s"] = np.asarray([tp.time_s for tp in study.timepoints], dtype=np.float64)
        h5.attrs["regions"] = to_json(study.region_table)
        h5.attrs["timepoints"] = to_json(study.quant_report)
        opts = {"compression": "gzip", "compression_opts": 4}
        h5.create_dataset("tia_bq_s", data=study.tia, **opts)
        h5.create_dataset("tia_rel_uncertainty", data=study.tia_rel_uncertainty, **opts)
        h5.create_dataset("fit_model", data=study.voxel_fit.model, **opts)
        h5.create_dataset("fit_flags", data=study.voxel_fit.flags, **opts)
        if getattr(study, "voxel_method", None) is not None:
            from rptdose.quant.voxel_tia import METHOD_NAMES

            d = h5.create_dataset("voxel_method", data=study.voxel_method, **opts)
            d.attrs["codes"] = to_json(METHOD_NAMES)
        if getattr(study, "body", None) is not None:
            h5.create_dataset("body_mask", data=study.body.astype(np.uint8), **opts)
        h5.attrs["outside_body"] = to_json(getattr(study, "tia_outside_body", {}))
        h5.create_dataset("activity_bq", data=study.activity.astype(np.float32), **opts)
        write_masks(h5, study.masks, **opts)  # safe link names, verbatim names in attribute 'name'
    return Path(path)


def write_tia_outputs(study: Any, outdir: str | os.PathLike, plots: bool = True) -> dict[str, Path]:
    """Write the TIA maps, tables, plots and registration results of ``study`` into ``outdir``
    (created if missing). Returns {label: path}."""
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--output '{out}' (is a file): expected a folder for the results")
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    geo = study.geometry
    written["tia_nifti"] = write_image(out / "tia.nii.gz", study.tia, geo)
    written["uncertainty_nifti"] = write_image(out / "tia_rel_uncertainty.nii.gz", study.tia_rel_uncertainty, geo)
    if getattr(study, "voxel_method", None) is not None:
        written["method_nifti"] = write_image(out / "tia_method.nii.gz", study.voxel_method, geo,
                                              description="voxel TIA method: 0 none 1 fit 2 trapezoid 3 region")
    written["tia_h5"] = write_tia_h5(out / "tia.h5", study)
    rec = getattr(study, "recovery", None)
    if rec is not None:   # [recovery]: per region and scan, observed / corrected activity and RC
        rows = []
        res = rec.result
        for k, tp in enumerate(study.timepoints):
            for i, name in enumerate(res.names):
                rows.append({"timepoint": tp.label, "region": name, "observed_bq": float(res.observed[k, i]),
                             "corrected_bq": float(res.corrected[k, i]), "recovery_coefficient": float(res.rc[k, i]),
                             "psf_fwhm_mm": " ".join(f"{v:g}" for v in rec.psf_fwhm_mm)})
        written["recovery_csv"] = write_csv(out / "recovery.csv", rows)
        if rec.sphere_fit is not None:
            written["recovery_curve_csv"] = write_csv(out / "recovery_curve.csv", list(rec.sphere_fit.table))
    written["regions_csv"] = write_csv(out / "regions.csv", study.region_table, study.region_columns)
    written["timepoints_csv"] = write_csv(out / "timepoints.csv", study.quant_report)
    reg_dir = out / "registration"
    for tp in study.timepoints[1:]:
        if tp.registration is None:
            continue
        reg_dir.mkdir(exist_ok=True)
        from rptdose.quant.registration import write_transform

        written[f"transform_tp{tp.index}"] = write_transform(tp.registration.transform,
                                                             reg_dir / f"tp{tp.index}_to_tp1.tfm",
                                                             tp.registration.provenance)
        if plots and tp.check_slices is not None:
            from rptdose.quant.plots import registration_figure

            fig = registration_figure(tp.check_slices, f"time point {tp.index} ({tp.label}) registered to time point 1 "
                                      f"({tp.registration.kind}; metric {tp.registration.metric:.4g})")
            written[f"check_tp{tp.index}"] = write_figure(reg_dir / f"tp{tp.index}_check.png", fig)
    if plots and study.region_fit is not None:
        from rptdose.quant.plots import tac_figure

        plot_dir = out / "plots"
        plot_dir.mkdir(exist_ok=True)
        for i, name in enumerate(study.region_names):
            fig = tac_figure(name, study.region_fit, i, study.administered_activity_bq)
            written[f"tac_{name}"] = write_figure(plot_dir / f"tac_{safe_name(name)}.png", fig)
    return written
