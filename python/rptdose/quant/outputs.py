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

Each file is written under a hidden temporary name in its folder and moved into place with
:func:`os.replace`: a failure leaves no partial file under the final name.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rptdose.errors import InputError

TIA_FORMAT_VERSION = "1"
TIA_KIND = "rptdose.TIAMap"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path`` with the same suffixes (so that writers that go by the
    extension behave); flushed to disk and moved over ``path`` when the block succeeds, removed
    when it fails."""
    p = Path(path)
    suffix = "".join(p.suffixes)
    stem = p.name[: len(p.name) - len(suffix)] if suffix else p.name
    tmp = p.with_name(f".{stem}.tmp-{secrets.token_hex(4)}{suffix}")
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    p = Path(path)
    with atomic_path(p) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    return p


def write_csv(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str] | None = None) -> Path:
    if columns is not None:
        cols = list(columns)
    else:  # the union of the rows' keys, in order of appearance
        cols = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in cols})
    return write_text(path, buf.getvalue())


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if not np.isfinite(v) else f"{v:.8g}"
    if isinstance(v, (list, tuple)):
        return ";".join(str(x) for x in v)
    return v


def write_image(path: str | os.PathLike, array: np.ndarray, geometry: dict, description: str | None = None) -> Path:
    """A [z, y, x] array on ``geometry`` ({spacing_mm, origin_mm, direction}) as an image file
    (format from the extension, e.g. NIfTI .nii.gz), atomically. ``description``: a note kept in
    the file (NIfTI ``descrip``, at most 80 characters)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    if description:
        img.SetMetaData("ITK_FileNotes", description[:79])
    img.SetSpacing(tuple(geometry["spacing_mm"]))
    img.SetOrigin(tuple(geometry["origin_mm"]))
    img.SetDirection(tuple(geometry["direction"]))
    p = Path(path)
    with atomic_path(p) as tmp:
        sitk.WriteImage(img, str(tmp), useCompression=True)
    return p


def write_figure(path: str | os.PathLike, fig: Any) -> Path:
    p = Path(path)
    with atomic_path(p) as tmp:
        fig.savefig(str(tmp), format="png")
    return p


def safe_name(name: str) -> str:
    """A region name as a file-name part."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).strip("._")
    return s or "region"


def write_tia_h5(path: str | os.PathLike, study: Any) -> Path:
    from rptdose.io.hdf5 import atomic_h5, to_json

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
        h5.create_dataset("activity_bq", data=study.activity.astype(np.float32), **opts)
        g = h5.create_group("masks")
        for name, mask in study.masks.items():
            g.create_dataset(name, data=mask.astype(np.uint8), **opts)
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
    written["tia_h5"] = write_tia_h5(out / "tia.h5", study)
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
