"""A clinical study: the study file (TOML), and :func:`load_study`, which turns it into a phantom
and a time-integrated activity source on the dose grid.

Pipeline: read each time point's SPECT (``io/nm.py``) and CT (``io/ct.py``) -> check patient,
frames of reference and timing -> activity per voxel at each scan (``quant/calibration.py``) ->
register each CT to the reference CT, the earliest time point's, and carry its SPECT along
(``quant/registration.py``) -> segmentation masks (``io/segmentation.py``) -> TIA per voxel and
per region (``quant/tia.py``) -> Phantom (reference CT resampled onto the dose grid, Schneider
2000 HU calibration) and Source (decays per voxel = TIA, Bq*s).

The study file (paths relative to the file; ``docs/study_file.md`` has the long version):

===============================  =========  ================================================
key                              default    meaning
===============================  =========  ================================================
``study.nuclide``                DICOM      ICRP-107 name ("Lu-177"); else from the SPECT's
                                            RadionuclideCodeSequence
``study.name``                   file stem  a label for the outputs
``administration.activity_mbq``  DICOM      administered activity (MBq); else
                                            RadionuclideTotalDose (0018,1074)
``administration.time``          DICOM      local date-time of the administration (TOML
                                            date-time or ISO string); else
                                            RadiopharmaceuticalStartDateTime (0018,1078)
``[[timepoint]] spect``          required   NM/SPECT file or folder
``[[timepoint]] ct``             required   CT folder (or image file) of that scan
``[[timepoint]] label``          "tp<k>"    a name for the time point
``[[timepoint]] acquisition_time``  DICOM   scan start when the SPECT lacks it
``[[timepoint]] duration_s``     DICOM      acquisition duration (s) for counts
``[[timepoint]] spect_series_uid``  --      series to read when the folder holds several
``[[timepoint]] ct_series_uid``  --         likewise for the CT folder
``calibration.mode``             required   "quantitative" (Bq/ml series) or "sensitivity"
``calibration.sensitivity_cps_per_mbq``  -- cps per MBq, required with "sensitivity"
``segmentation.rtstruct``        --         RTSTRUCT file; or ``seg`` (DICOM-SEG) or
``segmentation.seg``                        ``labels`` (label image + ``names``); at most
``segmentation.labels``                     one of the three; none: no regions
``segmentation.names``           --         {region: ROI name / segment label} (selects and
                                            renames) or, with labels, {region: label value}
``dose.grid``                    "spect"    "spect", "ct", or a spacing in mm (number or
                                            [sx, sy, sz]) over the reference CT's extent
``dose.method``                  "mc"       mc | ldm | vsv | sphere (for ``rptdose run``)
``dose.histories``               10000000   decays to simulate
``dose.seed``                    1          random seed
``dose.backend``                 "auto"     transport backend
``dose.threads`` / ``dose.batches`` / ``dose.electron_transport``  transport options
``tia.model``                    "auto"     auto | mono | biexp | biexp_uptake | trapezoid |
                                            hanscheid | madsen (regions)
``tia.voxel_model``              model      the same choices and "region", for the voxel map:
                                            fit models go through the noise-robust hierarchy
                                            (quant/voxel_tia.py)
``tia.outside_body``             "drop"     drop | keep | reassign: activity outside the CT's
                                            body outline (quant/body.py)
``dose.mask_to_body``            true       dose.dcm and dose.nii.gz 0 outside the body
``tia.effective_half_life_h``    --         madsen: a number, or {default = .., region = ..}
``tia.timepoint``                --         single-time-point methods with several scans: which
                                            (1-based, in time order)
``tia.trapezoid_start``          "zero"     zero | constant | physical (before the first scan)
``registration.method``          "rigid"    rigid | none
``registration.deformable``      false      add a BSpline step
``registration.iterations``      200        rigid optimizer iterations per level
``registration.sampling``        0.25       fraction of voxels sampled by the metric
``registration.bspline_mesh_mm`` 60         BSpline control-point spacing (mm)
``registration.bspline_iterations``  50     BSpline optimizer iterations
``registration.seed``            1          metric sampling seed
===============================  =========  ================================================

Every bad input raises :class:`~rptdose.errors.InputError` naming the file, the key or DICOM
tag, and what was expected. Unknown keys are refused (typos would otherwise be ignored).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rptdose.errors import InputError

HOUR = 3600.0
GRID_CHOICES = ("spect", "ct")
DOSE_METHODS = ("mc", "ldm", "vsv", "sphere")
FOV_REGION = "field_of_view"
#: Latest scan accepted, in physical half-lives after the administration: later, less than 1e-6
#: of the activity is left and decay correction multiplies noise by more than 1e6 (a wrong date).
MAX_SCAN_HALF_LIVES = 20.0

#: The keys each table may hold (declared once; docs/study_file.md documents them).
SCHEMA: dict[str, tuple[str, ...]] = {
    "study": ("nuclide", "name"),
    "administration": ("activity_mbq", "time"),
    "timepoint": ("spect", "ct", "label", "acquisition_time", "duration_s", "spect_series_uid", "ct_series_uid"),
    "calibration": ("mode", "sensitivity_cps_per_mbq", "sensitivity_uncertainty_pct", "phantom_spect",
                    "phantom_activity_mbq", "phantom_time", "phantom_ct", "phantom_activity_uncertainty_pct",
                    "phantom_acquisition_time", "phantom_duration_s", "phantom_voi_margin_mm", "file"),
    "segmentation": ("rtstruct", "seg", "labels", "names"),
    "dose": ("grid", "method", "histories", "seed", "backend", "threads", "batches", "electron_transport",
             "mask_to_body"),
    "tia": ("model", "voxel_model", "effective_half_life_h", "timepoint", "trapezoid_start", "outside_body"),
    "registration": ("method", "deformable", "iterations", "sampling", "bspline_mesh_mm", "bspline_iterations",
                     "seed"),
}


# ---- the study file -----------------------------------------------------------------------

@dataclass
class TimepointSpec:
    spect: Path
    ct: Path
    label: str | None = None
    acquisition_time: _dt.datetime | None = None
    duration_s: float | None = None
    spect_series_uid: str | None = None
    ct_series_uid: str | None = None
    position: int = 0          # its place in the file (1-based)


@dataclass
class StudySpec:
    """The validated content of a study file."""

    path: Path
    name: str
    nuclide: str | None
    activity_mbq: float | None
    administration_time: _dt.datetime | None
    timepoints: list[TimepointSpec]
    calibration: Any
    segmentation: dict[str, Any]
    dose: dict[str, Any]
    tia: dict[str, Any]
    registration: Any


class _Checker:
    def __init__(self, path: Path):
        self.path = path

    def error(self, key: str, value: Any, why: str, expected: str) -> InputError:
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return InputError(f"study '{self.path}' key {key} {shown} ({why}): expected {expected}")

    def table(self, data: dict, name: str, required: bool = False) -> dict:
        value = data.get(name, {})
        if name not in data and required:
            raise self.error(f"[{name}]", None, "missing", f"a [{name}] table")
        if not isinstance(value, dict):
            raise self.error(name, value, "not a table", f"a [{name}] table")
        self.known(value, name)
        return value

    def known(self, table: dict, name: str) -> None:
        allowed = SCHEMA[name]
        for key in table:
            if key not in allowed:
                where = "[[timepoint]]" if name == "timepoint" else f"[{name}]"
                raise self.error(f"{name}.{key}", table[key], "unknown key", f"one of {', '.join(allowed)} in {where}")

    def string(self, table: dict, key: str, full: str, required: bool = False, choices: tuple | None = None) -> Any:
        if key not in table:
            if required:
                raise self.error(full, None, "missing", "a string" if not choices else f"one of {', '.join(choices)}")
            return None
        v = table[key]
        if not isinstance(v, str) or not v.strip():
            raise self.error(full, v, "not a non-empty string", "a string" if not choices else
                             f"one of {', '.join(choices)}")
        if choices is not None and v not in choices:
            raise self.error(full, v, "unknown", f"one of {', '.join(choices)}")
        return v

    def number(self, table: dict, key: str, full: str, minimum: float | None = None, positive: bool = False,
               integer: bool = False, maximum: float | None = None, unit: str = "") -> Any:
        if key not in table:
            return None
        v = table[key]
        what = ("an integer" if integer else "a number") + (f" in {unit}" if unit else "")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.error(full, v, "not a number", what)
        if integer and not float(v).is_integer():
            raise self.error(full, v, "not an integer", what)
        if not math.isfinite(float(v)):
            raise self.error(full, v, "not finite", what)
        if positive and not v > 0:
            raise self.error(full, v, "not > 0", f"{what} > 0")
        if minimum is not None and v < minimum:
            raise self.error(full, v, "too small", f"{what} >= {minimum:g}")
        if maximum is not None and v > maximum:
            raise self.error(full, v, "too large", f"{what} <= {maximum:g}")
        return int(v) if integer else float(v)

    def boolean(self, table: dict, key: str, full: str) -> Any:
        if key not in table:
            return None
        v = table[key]
        if not isinstance(v, bool):
            raise self.error(full, v, "not a boolean", "true or false")
        return v

    def datetime(self, table: dict, key: str, full: str) -> Any:
        if key not in table:
            return None
        v = table[key]
        if isinstance(v, str):
            try:
                v = _dt.datetime.fromisoformat(v.strip())
            except ValueError:
                raise self.error(full, table[key], "not an ISO date-time",
                                 "a local date and time such as 2026-03-02T09:00:00") from None
        if not isinstance(v, _dt.datetime):
            raise self.error(full, v, "a date without a time" if isinstance(v, _dt.date) else "not a date-time",
                             "a local date and time such as 2026-03-02T09:00:00")
        if v.tzinfo is not None:
            raise self.error(full, table[key], "has a UTC offset",
                             "a local date and time without offset, as DICOM times are local")
        return v

    def path_(self, table: dict, key: str, full: str, required: bool = False) -> Any:
        v = self.string(table, key, full, required=required)
        if v is None:
            return None
        p = Path(v)
        if not p.is_absolute():
            p = self.path.parent / p
        if not p.exists():
            raise self.error(full, v, f"'{p}' does not exist", "a path relative to the study file")
        return p


def read_study_file(path: str | os.PathLike) -> StudySpec:
    """Parse and validate a study file (see the module docstring); no image is read."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    from rptdose.quant.calibration import Calibration
    from rptdose.quant.registration import RegistrationSettings
    from rptdose.quant.body import OUTSIDE_BODY
    from rptdose.quant.tia import MODELS, TRAPEZOID_STARTS
    from rptdose.quant.voxel_tia import VOXEL_MODELS

    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"study {path!r} (of type {type(path).__name__}): expected the path of a study file (TOML)")
    p = Path(path)
    if not p.is_file():
        raise InputError(f"study '{p}' ({'is a folder' if p.is_dir() else 'does not exist'}): expected a study file "
                         "(TOML)")
    try:
        with open(p, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"study '{p}' (not valid TOML: {exc}): expected a TOML study file") from None
    except UnicodeDecodeError:
        raise InputError(f"study '{p}' (not UTF-8 text): expected a TOML study file") from None
    c = _Checker(p)
    for key in data:
        if key not in SCHEMA:
            raise c.error(f"[{key}]", data[key], "unknown table", f"tables {', '.join(SCHEMA)}")

    study = c.table(data, "study")
    nuclide = c.string(study, "nuclide", "study.nuclide")
    if nuclide is not None:
        from rptdose.physics.nuclides import load_nuclide

        try:
            nuclide = load_nuclide(nuclide).name
        except InputError as exc:
            raise c.error("study.nuclide", study["nuclide"], f"unknown: {exc}", "an ICRP-107 nuclide name") from None
    name = c.string(study, "name", "study.name") or p.stem

    adm = c.table(data, "administration")
    activity_mbq = c.number(adm, "activity_mbq", "administration.activity_mbq", positive=True, unit="MBq")
    adm_time = c.datetime(adm, "time", "administration.time")

    tps_raw = data.get("timepoint")
    if tps_raw is None:
        raise c.error("[[timepoint]]", None, "missing", "one [[timepoint]] table per scan with spect and ct")
    if not isinstance(tps_raw, list) or not all(isinstance(t, dict) for t in tps_raw):
        raise c.error("timepoint", tps_raw, "not an array of tables", "[[timepoint]] tables")
    tps = []
    for i, t in enumerate(tps_raw, start=1):
        pre = f"timepoint[{i}]"
        c.known(t, "timepoint")
        tps.append(TimepointSpec(
            spect=c.path_(t, "spect", f"{pre}.spect", required=True),
            ct=c.path_(t, "ct", f"{pre}.ct", required=True),
            label=c.string(t, "label", f"{pre}.label"),
            acquisition_time=c.datetime(t, "acquisition_time", f"{pre}.acquisition_time"),
            duration_s=c.number(t, "duration_s", f"{pre}.duration_s", positive=True, unit="s"),
            spect_series_uid=c.string(t, "spect_series_uid", f"{pre}.spect_series_uid"),
            ct_series_uid=c.string(t, "ct_series_uid", f"{pre}.ct_series_uid"),
            position=i))
    labels = [t.label for t in tps if t.label]
    if len(set(labels)) != len(labels):
        raise c.error("timepoint[].label", labels, "repeated", "distinct labels")

    cal = c.table(data, "calibration", required=True)
    from rptdose.quant.calibration import CALIBRATION_MODES

    mode = c.string(cal, "mode", "calibration.mode", required=True, choices=CALIBRATION_MODES)
    sens = c.number(cal, "sensitivity_cps_per_mbq", "calibration.sensitivity_cps_per_mbq", positive=True,
                    unit="cps/MBq")
    if mode == "sensitivity" and sens is None:
        raise c.error("calibration.sensitivity_cps_per_mbq", None, "missing with mode = 'sensitivity'",
                      "the camera's sensitivity in cps/MBq")
    if mode == "quantitative" and sens is not None:
        raise c.error("calibration.sensitivity_cps_per_mbq", sens, "given with mode = 'quantitative'",
                      "no sensitivity for a series in Bq/ml (or mode = 'sensitivity')")
    # each mode's keys; any other key of [calibration] is refused (it would be silently ignored)
    mode_keys = {"quantitative": ((), "only mode for a series in Bq/ml"),
                 "sensitivity": (("sensitivity_cps_per_mbq", "sensitivity_uncertainty_pct"),
                                 "sensitivity_cps_per_mbq and optionally sensitivity_uncertainty_pct"),
                 "phantom": (tuple(k for k in SCHEMA["calibration"] if k.startswith("phantom_")),
                             "phantom_spect, phantom_activity_mbq, phantom_time and optionally phantom_ct, "
                             "phantom_activity_uncertainty_pct, phantom_acquisition_time, phantom_duration_s, "
                             "phantom_voi_margin_mm"),
                 "file": (("file",), "file (a calibration file written by `rptdose calibrate`)")}
    for key in cal:
        if key != "mode" and key not in mode_keys[mode][0]:
            raise c.error(f"calibration.{key}", cal[key], f"given with mode = {mode!r}",
                          f"{mode_keys[mode][1]} with mode = {mode!r}")
    if mode == "phantom":  # the sensitivity derived now from the phantom SPECT (quant/phantom_calibration.py)
        from rptdose.quant.phantom_calibration import calibrate_from_phantom

        phantom_spect = c.path_(cal, "phantom_spect", "calibration.phantom_spect", required=True)
        phantom_mbq = c.number(cal, "phantom_activity_mbq", "calibration.phantom_activity_mbq", positive=True,
                               unit="MBq")
        if phantom_mbq is None:
            raise c.error("calibration.phantom_activity_mbq", None, "missing with mode = 'phantom'",
                          "the phantom's activity in MBq, read in the dose calibrator at phantom_time")
        phantom_time = c.datetime(cal, "phantom_time", "calibration.phantom_time")
        if phantom_time is None:
            raise c.error("calibration.phantom_time", None, "missing with mode = 'phantom'",
                          "the local date and time of the dose-calibrator reading, e.g. 2026-03-01T10:00:00")
        try:
            camera_cal = calibrate_from_phantom(
                phantom_spect, phantom_mbq, phantom_time, nuclide=nuclide,
                phantom_ct=c.path_(cal, "phantom_ct", "calibration.phantom_ct"),
                activity_uncertainty_pct=c.number(cal, "phantom_activity_uncertainty_pct",
                                                  "calibration.phantom_activity_uncertainty_pct", minimum=0.0,
                                                  maximum=50.0, unit="%"),
                acquisition_time=c.datetime(cal, "phantom_acquisition_time", "calibration.phantom_acquisition_time"),
                duration_s=c.number(cal, "phantom_duration_s", "calibration.phantom_duration_s", positive=True,
                                    unit="s"),
                voi_margin_mm=c.number(cal, "phantom_voi_margin_mm", "calibration.phantom_voi_margin_mm",
                                       minimum=0.0, maximum=200.0, unit="mm"))
        except InputError as exc:
            if str(exc).startswith(f"study '{p}'"):
                raise
            raise InputError(f"study '{p}' [calibration] mode = 'phantom': {exc}") from None
        calibration = camera_cal.to_calibration("phantom")
    elif mode == "file":  # a calibration written by `rptdose calibrate`, reused
        from rptdose.quant.phantom_calibration import read_calibration

        cal_file = c.path_(cal, "file", "calibration.file", required=True)
        try:
            camera_cal = read_calibration(cal_file)
        except InputError as exc:
            raise InputError(f"study '{p}' key calibration.file: {exc}") from None
        if nuclide is not None and camera_cal.nuclide != nuclide:
            raise c.error("calibration.file", cal["file"], f"calibrated with {camera_cal.nuclide}, study.nuclide is "
                          f"{nuclide}", "a calibration made with the study's nuclide")
        calibration = camera_cal.to_calibration("file")
    else:
        u_pct = c.number(cal, "sensitivity_uncertainty_pct", "calibration.sensitivity_uncertainty_pct", minimum=0.0,
                         maximum=50.0, unit="%")
        calibration = Calibration(mode, sens, None if u_pct is None else u_pct / 100.0,
                                  source="study file" if mode == "sensitivity" else "")

    seg = c.table(data, "segmentation")
    kinds = [k for k in ("rtstruct", "seg", "labels") if k in seg]
    if len(kinds) > 1:
        raise c.error("segmentation", {k: seg[k] for k in kinds}, f"{' and '.join(kinds)} given",
                      "one of rtstruct, seg or labels")
    segmentation: dict[str, Any] = {"kind": kinds[0] if kinds else None, "path": None, "names": None}
    if kinds:
        segmentation["path"] = c.path_(seg, kinds[0], f"segmentation.{kinds[0]}")
        if segmentation["path"].is_dir():
            raise c.error(f"segmentation.{kinds[0]}", seg[kinds[0]], "is a folder", "a file")
    names = seg.get("names")
    if names is not None:
        if not isinstance(names, dict) or not names:
            raise c.error("segmentation.names", names, "not a non-empty table",
                          "a table such as [segmentation.names] liver = 1 (labels) or liver = \"Liver\"")
        for region, v in names.items():
            if kinds and kinds[0] == "labels":
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise c.error(f"segmentation.names.{region}", v, "not a positive integer",
                                  "the region's label value in the label image")
            elif not isinstance(v, str) or not v.strip():
                raise c.error(f"segmentation.names.{region}", v, "not a string",
                              "the ROI name (RTSTRUCT) or segment label (SEG) in the file")
            if region == FOV_REGION:
                raise c.error(f"segmentation.names.{region}", v, "reserved name", "another region name")
        if not kinds:
            raise c.error("segmentation.names", names, "without rtstruct, seg or labels",
                          "names together with a segmentation file")
        segmentation["names"] = dict(names)
    elif kinds and kinds[0] == "labels":
        raise c.error("segmentation.names", None, "missing with labels",
                      "a [segmentation.names] table of region = label value")

    dose_t = c.table(data, "dose")
    grid = dose_t.get("grid", "spect")
    if isinstance(grid, str):
        if grid not in GRID_CHOICES:
            raise c.error("dose.grid", grid, "unknown", '"spect", "ct" or a spacing in mm (a number or [sx, sy, sz])')
    elif isinstance(grid, (int, float)) and not isinstance(grid, bool):
        if not (math.isfinite(grid) and 0.1 <= grid <= 50):
            raise c.error("dose.grid", grid, "out of range", "a spacing in mm between 0.1 and 50")
        grid = (float(grid),) * 3
    elif isinstance(grid, list) and len(grid) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                          for v in grid):
        if not all(math.isfinite(v) and 0.1 <= v <= 50 for v in grid):
            raise c.error("dose.grid", grid, "out of range", "spacings in mm between 0.1 and 50")
        grid = tuple(float(v) for v in grid)
    else:
        raise c.error("dose.grid", grid, "not understood",
                      '"spect", "ct" or a spacing in mm (a number or [sx, sy, sz])')
    from rptdose.transport.simulate import MAX_BATCHES, MIN_BATCHES  # the transport's limits, declared there

    dose = {
        "grid": grid,
        "method": c.string(dose_t, "method", "dose.method", choices=DOSE_METHODS) or "mc",
        "histories": c.number(dose_t, "histories", "dose.histories", integer=True, minimum=1) or 10_000_000,
        "seed": c.number(dose_t, "seed", "dose.seed", integer=True, minimum=0, maximum=2**64 - 1),
        "backend": c.string(dose_t, "backend", "dose.backend", choices=("auto", "cuda", "cupy", "cpu")) or "auto",
        "threads": c.number(dose_t, "threads", "dose.threads", integer=True, minimum=1),
        "batches": c.number(dose_t, "batches", "dose.batches", integer=True, minimum=MIN_BATCHES,
                            maximum=MAX_BATCHES) or 10,
        "electron_transport": c.boolean(dose_t, "electron_transport", "dose.electron_transport"),
        "mask_to_body": c.boolean(dose_t, "mask_to_body", "dose.mask_to_body"),
    }
    if dose["mask_to_body"] is None:
        dose["mask_to_body"] = True
    if dose["seed"] is None:
        dose["seed"] = 1
    if dose["electron_transport"] is None:
        dose["electron_transport"] = True

    tia_t = c.table(data, "tia")
    model = c.string(tia_t, "model", "tia.model", choices=MODELS) or "auto"
    voxel_model = c.string(tia_t, "voxel_model", "tia.voxel_model", choices=VOXEL_MODELS) or model
    teff = tia_t.get("effective_half_life_h")
    if teff is not None:
        if isinstance(teff, dict):
            for k2 in teff:
                c.number(teff, k2, f"tia.effective_half_life_h.{k2}", positive=True, unit="h")
            teff = {k2: float(v) for k2, v in teff.items()}
        else:
            teff = c.number(tia_t, "effective_half_life_h", "tia.effective_half_life_h", positive=True, unit="h")
    if "madsen" in (model, voxel_model):
        if teff is None:
            raise c.error("tia.effective_half_life_h", None, "missing with model 'madsen'",
                          "a population effective half-life in h (a number, or {default = .., <region> = ..})")
        if isinstance(teff, dict) and voxel_model == "madsen" and "default" not in teff:
            raise c.error("tia.effective_half_life_h", teff, "no 'default' entry",
                          "default = <hours> for the voxels outside the named regions")
    stp = c.number(tia_t, "timepoint", "tia.timepoint", integer=True, minimum=1, maximum=len(tps))
    stp_models = {"hanscheid", "madsen"} & {model, voxel_model}
    if stp_models and len(tps) > 1 and stp is None:
        raise c.error("tia.timepoint", None, f"missing: {len(tps)} scans and a single-time-point model",
                      f"the scan (1..{len(tps)}, in time order) the single-time-point method uses")
    tia = {"model": model, "voxel_model": voxel_model, "effective_half_life_h": teff, "timepoint": stp,
           "trapezoid_start": c.string(tia_t, "trapezoid_start", "tia.trapezoid_start",
                                       choices=TRAPEZOID_STARTS) or "zero",
           "outside_body": c.string(tia_t, "outside_body", "tia.outside_body", choices=OUTSIDE_BODY) or "drop"}
    if model in ("auto", "mono", "biexp", "biexp_uptake") and len(tps) == 1:
        raise c.error("tia.model", model, "1 time point", "'hanscheid' or 'madsen' for a single scan")

    reg_t = c.table(data, "registration")
    defaults = RegistrationSettings()
    registration = RegistrationSettings(
        method=c.string(reg_t, "method", "registration.method", choices=("rigid", "none")) or defaults.method,
        deformable=bool(c.boolean(reg_t, "deformable", "registration.deformable") or False),
        iterations=c.number(reg_t, "iterations", "registration.iterations", integer=True, minimum=1, maximum=10000)
        or defaults.iterations,
        sampling=c.number(reg_t, "sampling", "registration.sampling", positive=True, maximum=1.0) or defaults.sampling,
        bspline_mesh_mm=c.number(reg_t, "bspline_mesh_mm", "registration.bspline_mesh_mm", positive=True, unit="mm")
        or defaults.bspline_mesh_mm,
        bspline_iterations=c.number(reg_t, "bspline_iterations", "registration.bspline_iterations", integer=True,
                                    minimum=1) or defaults.bspline_iterations,
        seed=c.number(reg_t, "seed", "registration.seed", integer=True, minimum=0, maximum=2**31 - 1)
        if "seed" in reg_t else defaults.seed)
    if registration.deformable and registration.method == "none":
        raise c.error("registration.deformable", True, "with method = 'none'", "method = 'rigid' for a BSpline step")
    return StudySpec(p, name, nuclide, activity_mbq, adm_time, tps, calibration, segmentation, dose, tia,
                     registration)


# ---- the loaded study -----------------------------------------------------------------------

@dataclass
class TimePoint:
    """One scan, after quantification and registration (``index``: 1-based, in time order)."""

    index: int
    label: str
    spect_path: Path
    ct_path: Path
    acquisition_start: _dt.datetime
    acquisition_start_source: str
    time_s: float                         # since the administration
    duration_s: float | None
    duration_source: str
    units: str
    units_source: str
    calibration_info: dict
    total_activity_fov_bq: float          # at scan time, in the SPECT's field of view
    total_activity_grid_bq: float = float("nan")   # at scan time, on the dose grid
    registration: Any = None              # RegistrationResult (None for the reference)
    check_slices: dict | None = None
    activity_bq: np.ndarray | None = None  # [z, y, x] at scan time on the dose grid

    @property
    def time_h(self) -> float:
        return self.time_s / HOUR


@dataclass
class Study:
    """A loaded study (see :func:`load_study`)."""

    path: Path
    name: str
    nuclide: str
    half_life_s: float
    administered_activity_bq: float
    administration_time: _dt.datetime
    timepoints: list[TimePoint]
    geometry: dict
    phantom: Any
    source: Any
    tia: np.ndarray
    tia_rel_uncertainty: np.ndarray
    voxel_fit: Any
    region_fit: Any
    region_names: list[str]
    masks: dict[str, np.ndarray]
    activity: np.ndarray
    quant_report: list[dict]
    region_table: list[dict]
    settings: dict
    provenance: dict = field(default_factory=dict)
    body: np.ndarray | None = None            # bool [z, y, x]: inside the CT's body outline
    voxel_method: np.ndarray | None = None    # uint8 [z, y, x]: quant/voxel_tia.py METHOD_NAMES
    tia_outside_body: dict = field(default_factory=dict)   # quant/body.py apply_outside_body summary

    @property
    def histories(self) -> int:
        return int(self.settings["dose"]["histories"])

    @property
    def seed(self) -> int:
        return int(self.settings["dose"]["seed"])

    @property
    def region_columns(self) -> list[str]:
        cols = ["region", "voxels", "volume_ml", "mass_g"]
        cols += [f"activity_{tp.label}_mbq" for tp in self.timepoints]
        cols += ["model", "tia_mbq_h", "tia_bq_s", "tia_rel_uncertainty", "t_eff_h", "residence_time_h",
                 "voxel_sum_tia_bq_s", "voxel_sum_to_region_fit", "flags"]
        return cols

    def write_tia(self, outdir: str | os.PathLike, plots: bool = True) -> dict[str, Path]:
        """Write the TIA maps, tables and plots (``rptdose.quant.outputs.write_tia_outputs``)."""
        from rptdose.quant.outputs import write_tia_outputs

        return write_tia_outputs(self, outdir, plots=plots)

    def __repr__(self) -> str:
        return (f"Study({self.name!r}, {self.nuclide}, {len(self.timepoints)} time points, grid {self.phantom.shape}, "
                f"regions {list(self.masks)}, total TIA {float(self.tia.sum()):.4g} Bq s)")


def _hash_inputs(paths: list[Path]) -> dict[str, str]:
    out = {}
    for p in paths:
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for f in files:
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            out[str(f)] = h.hexdigest()
    return out


def _empty_image(template: Any) -> Any:
    import SimpleITK as sitk

    img = sitk.Image(template.GetSize(), sitk.sitkFloat64)
    img.CopyInformation(template)
    return img


def _dose_grid(grid: Any, ref_spect: Any, ref_ct: Any) -> Any:
    import SimpleITK as sitk

    from rptdose.resources import check_dose_grid  # memory and disk for this grid, before any work on it

    if grid in ("spect", "ct"):
        ref = ref_spect if grid == "spect" else ref_ct
        check_dose_grid(ref.GetSize(), ref.GetSpacing(), grid)
        return _empty_image(ref)
    spacing = np.array(grid, dtype=np.float64)
    ct_size = np.array(ref_ct.GetSize(), dtype=np.float64)
    ct_spacing = np.array(ref_ct.GetSpacing())
    extent = ct_size * ct_spacing
    size = np.maximum(1, np.ceil(extent / spacing - 1e-6)).astype(int)
    check_dose_grid(size, spacing, grid)
    direction = np.array(ref_ct.GetDirection()).reshape(3, 3)
    corner = np.array(ref_ct.GetOrigin()) - direction @ (0.5 * ct_spacing)
    origin = corner + direction @ (0.5 * spacing)
    img = sitk.Image([int(v) for v in size], sitk.sitkFloat64)
    img.SetSpacing(tuple(float(v) for v in spacing))
    img.SetOrigin(tuple(float(v) for v in origin))
    img.SetDirection(ref_ct.GetDirection())
    return img


def _geometry(image: Any) -> dict:
    nx, ny, nz = image.GetSize()
    return {"shape": (nz, ny, nx), "spacing_mm": tuple(image.GetSpacing()), "origin_mm": tuple(image.GetOrigin()),
            "direction": tuple(image.GetDirection())}


def _check_identity(spec: StudySpec, nms: list, ct_ids: list[dict], seg_id: dict | None) -> None:
    """Same patient everywhere (where stated); each SPECT in its CT's frame of reference."""
    patients: dict[str, list[str]] = {}
    for tp, nm, ct_id in zip(spec.timepoints, nms, ct_ids):
        if nm.patient_id:
            patients.setdefault(nm.patient_id, []).append(f"spect '{tp.spect}'")
        for pid in ct_id["PatientID"]:
            patients.setdefault(pid, []).append(f"ct '{tp.ct}'")
        if len(ct_id["FrameOfReferenceUID"]) > 1:
            raise InputError(f"ct '{tp.ct}' (several FrameOfReferenceUID (0020,0052): "
                             f"{sorted(ct_id['FrameOfReferenceUID'])}): expected one CT series")
        ct_for = next(iter(ct_id["FrameOfReferenceUID"]), None)
        if nm.frame_of_reference_uid and ct_for and nm.frame_of_reference_uid != ct_for:
            raise InputError(f"spect '{tp.spect}' (FrameOfReferenceUID (0020,0052) {nm.frame_of_reference_uid} differs "
                             f"from its ct '{tp.ct}' {ct_for}): expected the SPECT and CT of one SPECT/CT acquisition "
                             "(same frame of reference); register them first")
    if seg_id is not None:
        for pid in seg_id["PatientID"]:
            patients.setdefault(pid, []).append(f"segmentation '{spec.segmentation['path']}'")
    if len(patients) > 1:
        listing = "; ".join(f"{pid!r}: {', '.join(w[:3])}{' ...' if len(w) > 3 else ''}" for pid, w in patients.items())
        raise InputError(f"study '{spec.path}' (PatientID (0010,0020) differs between inputs: {listing}): expected "
                         "the images of one patient")


def _administration(spec: StudySpec, nms: list, nuclide_name: str | None) -> tuple[str, float, _dt.datetime, dict]:
    """Nuclide, activity (Bq) and time from the study file, else from the DICOM (consistent)."""
    info: dict[str, Any] = {}
    found: dict[str, dict[str, str]] = {"nuclide": {}, "activity": {}, "time": {}}
    time_only = []
    for tp, nm in zip(spec.timepoints, nms):
        rp = nm.radiopharmaceutical
        w = f"spect '{tp.spect}'"
        if rp.nuclide:
            found["nuclide"][w] = rp.nuclide
        if rp.total_dose_bq is not None:
            found["activity"][w] = rp.total_dose_bq
        if rp.start is not None:
            found["time"][w] = rp.start
        elif rp.start_time_only is not None:
            time_only.append(w)
    nuclide = spec.nuclide
    if nuclide is None:
        values = set(found["nuclide"].values())
        if not values:
            raise InputError(f"study '{spec.path}' key study.nuclide (missing, and no SPECT has a "
                             "RadionuclideCodeSequence (0054,0300)): expected a nuclide such as 'Lu-177'")
        if len(values) > 1:
            raise InputError(f"study '{spec.path}' (the SPECTs name different nuclides in RadionuclideCodeSequence "
                             f"(0054,0300): {found['nuclide']}): expected one; give study.nuclide")
        from rptdose.physics.nuclides import load_nuclide

        raw = values.pop()
        try:
            nuclide = load_nuclide(raw).name
        except InputError:
            w = next(iter(found["nuclide"]))
            raise InputError(f"{w} (RadionuclideCodeSequence (0054,0300) gives {raw!r}, not an ICRP-107 nuclide): "
                             "expected a known nuclide; give study.nuclide") from None
        info["nuclide_source"] = "RadionuclideCodeSequence (0054,0300)"
    else:
        from rptdose.physics.nuclides import load_nuclide

        for w, v in found["nuclide"].items():
            try:
                other = load_nuclide(v).name
            except InputError:
                continue
            if other != nuclide:
                raise InputError(f"{w} (RadionuclideCodeSequence (0054,0300) says {other}): expected {nuclide} as in "
                                 f"the study file's study.nuclide")
        info["nuclide_source"] = "study.nuclide"
    if spec.activity_mbq is not None:
        activity_bq = spec.activity_mbq * 1e6
        info["activity_source"] = "administration.activity_mbq"
    else:
        values = set(found["activity"].values())
        if not values:
            raise InputError(f"study '{spec.path}' key administration.activity_mbq (missing, and no SPECT has "
                             "RadionuclideTotalDose (0018,1074)): expected the administered activity in MBq")
        if max(values) > min(values) * (1 + 1e-6):
            raise InputError(f"study '{spec.path}' (RadionuclideTotalDose (0018,1074) differs between SPECTs: "
                             f"{ {w: v / 1e6 for w, v in found['activity'].items()} } MBq): expected one; give "
                             "administration.activity_mbq")
        activity_bq = float(values.pop())
        info["activity_source"] = "RadionuclideTotalDose (0018,1074)"
    if spec.administration_time is not None:
        adm_time = spec.administration_time
        info["time_source"] = "administration.time"
    else:
        values = set(found["time"].values())
        if not values:
            extra = (f" ({', '.join(time_only)} give only RadiopharmaceuticalStartTime (0018,1072), without a date)"
                     if time_only else "")
            raise InputError(f"study '{spec.path}' key administration.time (missing, and no SPECT has "
                             f"RadiopharmaceuticalStartDateTime (0018,1078){extra}): expected the administration's "
                             "local date and time, e.g. 2026-03-02T09:00:00")
        if len(values) > 1:
            raise InputError(f"study '{spec.path}' (RadiopharmaceuticalStartDateTime (0018,1078) differs between "
                             f"SPECTs: { {w: v.isoformat() for w, v in found['time'].items()} }): expected one; give "
                             "administration.time")
        adm_time = values.pop()
        info["time_source"] = "RadiopharmaceuticalStartDateTime (0018,1078)"
    info["dicom_activity_bq"] = {w: v for w, v in found["activity"].items()}
    return nuclide, activity_bq, adm_time, info


def load_study(path: str | os.PathLike, *, register: bool | None = None, deformable: bool | None = None) -> Study:
    """Load a study file: quantify, register and integrate; return a :class:`Study`.

    Parameters
    ----------
    path : str or os.PathLike
        The study file (TOML; see the module docstring and docs/study_file.md).
    register : bool, optional
        Override ``registration.method`` (True: rigid, False: none).
    deformable : bool, optional
        Override ``registration.deformable``.

    Returns a Study with ``.phantom`` (the reference CT on the dose grid), ``.source`` (decays per
    voxel = TIA), ``.tia_rel_uncertainty``, ``.masks``, ``.timepoints`` and the reports.
    """
    import SimpleITK as sitk

    import rptdose
    from rptdose.io.ct import read_ct
    from rptdose.io.nm import dicom_identity, read_nm
    from rptdose.io.segmentation import segmentation_identity
    from rptdose.phantom import Phantom
    from rptdose.physics.materials import HUCalibration
    from rptdose.physics.nuclides import load_nuclide
    from rptdose.quant.calibration import activity_at_start, check_fov_total
    from rptdose.quant.decay import decay_correct
    from rptdose.quant.registration import METRIC_WORK_UNITS, check_slices, register_ct, resample
    from rptdose.source import Source

    spec = read_study_file(path)
    reg_settings = spec.registration
    if register is not None:
        reg_settings.method = "rigid" if register else "none"
    if deformable is not None:
        reg_settings.deformable = bool(deformable)
        if deformable and reg_settings.method == "none":
            reg_settings.method = "rigid"
    if reg_settings.method == "none":
        reg_settings.deformable = False

    # ---- read --------------------------------------------------------------------------
    nms, cts, ct_ids = [], [], []
    for tp in spec.timepoints:
        try:
            nms.append(read_nm(tp.spect, series_uid=tp.spect_series_uid))
        except InputError as exc:
            raise InputError(f"study '{spec.path}' timepoint[{tp.position}].spect: {exc}") from None
        try:
            cts.append(read_ct(tp.ct, series_uid=tp.ct_series_uid))
        except InputError as exc:
            raise InputError(f"study '{spec.path}' timepoint[{tp.position}].ct: {exc}") from None
        ct_ids.append(dicom_identity(tp.ct, modality="CT"))
    seg_id = segmentation_identity(spec.segmentation["path"]) if spec.segmentation["path"] is not None else None
    _check_identity(spec, nms, ct_ids, seg_id)
    nuclide, activity_bq, adm_time, adm_info = _administration(spec, nms, spec.nuclide)
    half_life_s = float(load_nuclide(nuclide).half_life_s)
    for tp, nm in zip(spec.timepoints, nms):
        hl = nm.radiopharmaceutical.half_life_s
        if hl is not None and abs(hl - half_life_s) > 0.02 * half_life_s:
            raise InputError(f"spect '{tp.spect}' (RadionuclideHalfLife (0018,1075) {hl:g} s, the half-life of "
                             f"{nuclide} is {half_life_s:g} s): expected the study's nuclide; check study.nuclide")

    # ---- timing and activity at each scan ------------------------------------------------
    entries = []
    for tp, nm, ct in zip(spec.timepoints, nms, cts):
        where = f"spect '{tp.spect}'"
        if tp.acquisition_time is not None:
            start, start_source = tp.acquisition_time, f"timepoint[{tp.position}].acquisition_time"
        elif nm.acquisition_start is not None:
            start, start_source = nm.acquisition_start, nm.acquisition_start_source
        else:
            raise InputError(f"{where} (acquisition start {nm.acquisition_start_source}): expected these tags, or "
                             f"timepoint[{tp.position}].acquisition_time in the study file '{spec.path}'")
        dt = (start - adm_time).total_seconds()
        if not dt > 0:
            raise InputError(f"{where} (acquisition start {start.isoformat()} from {start_source} is not after the "
                             f"administration {adm_time.isoformat()} ({adm_info['time_source']})): expected scans "
                             "after the administration; check the dates")
        if dt > MAX_SCAN_HALF_LIVES * half_life_s:
            raise InputError(f"{where} (acquisition start {start.isoformat()} from {start_source} is "
                             f"{dt / 86400.0:.4g} days, {dt / half_life_s:.3g} half-lives of {nuclide}, after the "
                             f"administration {adm_time.isoformat()} ({adm_info['time_source']})): expected scans "
                             f"within {MAX_SCAN_HALF_LIVES:g} half-lives "
                             f"({MAX_SCAN_HALF_LIVES * half_life_s / 86400.0:.4g} days) of the administration; check "
                             "the dates (administration.time, "
                             f"timepoint[{tp.position}].acquisition_time)")
        duration, duration_source = ((tp.duration_s, f"timepoint[{tp.position}].duration_s") if tp.duration_s
                                     else (nm.duration_s, nm.duration_source))
        values = nm.values()
        activity, cal_info = activity_at_start(
            values, nm.units, spec.calibration, half_life_s, voxel_volume_ml=nm.voxel_volume_ml, duration_s=duration,
            decay_correction=nm.decay_correction, time_since_administration_s=dt, where=where,
            units_source=nm.units_source)
        entries.append((dt, tp, nm, ct, start, start_source, duration, duration_source, activity, cal_info))
    entries.sort(key=lambda e: e[0])
    times = [e[0] for e in entries]
    if np.any(np.diff(times) <= 0):
        i = int(np.argmin(np.diff(times)))
        raise InputError(f"study '{spec.path}' (timepoint[{entries[i][1].position}] and timepoint"
                         f"[{entries[i + 1][1].position}] start at the same time): expected distinct scans")

    # ---- grid, registration, activity on the grid -----------------------------------------
    ref_ct = entries[0][3]
    ref_spect = entries[0][2].image
    grid = _dose_grid(spec.dose["grid"], ref_spect, ref_ct)
    geometry = _geometry(grid)
    grid_voxel_ml = float(np.prod(grid.GetSpacing())) * 1e-3
    timepoints: list[TimePoint] = []
    activity_stack = np.zeros((len(entries),) + geometry["shape"], dtype=np.float64)
    ref_ct_path = entries[0][1].ct.resolve()
    for i, (dt, tp, nm, ct, start, start_source, duration, duration_source, activity, cal_info) in enumerate(entries):
        label = tp.label or f"tp{i + 1}"
        conc = sitk.GetImageFromArray(activity / nm.voxel_volume_ml)
        conc.CopyInformation(nm.image)
        registration = None
        transform = None
        slices = None
        if i > 0:
            if tp.ct.resolve() == ref_ct_path:
                from rptdose.quant.registration import RegistrationResult

                registration = RegistrationResult(sitk.Euler3DTransform(), float("nan"), "same CT as the reference",
                                                  0, "identity")
            else:
                registration = register_ct(ref_ct, ct, reg_settings)
            transform = registration.transform
            reg_ct = resample(ct, ref_ct, transform, default=-1000.0)
            reg_spect = resample(conc, ref_ct, transform, default=0.0)
            slices = check_slices(ref_ct, reg_ct, reg_spect)
        on_grid = resample(conc, grid, transform, default=0.0)
        activity_stack[i] = sitk.GetArrayFromImage(on_grid) * grid_voxel_ml
        total_fov = float(activity.sum())
        timepoints.append(TimePoint(
            index=i + 1, label=label, spect_path=tp.spect, ct_path=tp.ct, acquisition_start=start,
            acquisition_start_source=start_source, time_s=dt, duration_s=duration, duration_source=duration_source,
            units=nm.units, units_source=nm.units_source, calibration_info=cal_info,
            total_activity_fov_bq=total_fov, total_activity_grid_bq=float(activity_stack[i].sum()),
            registration=registration, check_slices=slices, activity_bq=activity_stack[i]))
        check_fov_total(float(decay_correct(total_fov, dt, half_life_s)), activity_bq, f"spect '{tp.spect}'")

    # ---- segmentation ---------------------------------------------------------------------
    masks = _masks(spec, ref_ct, grid, ct_ids[entries[0][1].position - 1])

    # ---- time integration -------------------------------------------------------------------
    from rptdose.quant.tia import integrate

    t_arr = np.array(times)
    stp = spec.tia["timepoint"] - 1 if spec.tia["timepoint"] else None
    teff_h = spec.tia["effective_half_life_h"]
    region_names = list(masks) + ([FOV_REGION] if FOV_REGION not in masks else [])
    voxel_teff = _voxel_teff(teff_h, masks, geometry["shape"], spec) if spec.tia["voxel_model"] == "madsen" else None
    region_tac = np.stack([activity_stack[:, m].sum(axis=1) for m in masks.values()]
                          + [activity_stack.reshape(len(entries), -1).sum(axis=1)], axis=1)
    region_teff = None
    if spec.tia["model"] == "madsen":
        region_teff = np.array([_region_teff(teff_h, r, spec) for r in region_names]) * HOUR
    region_fit = integrate(t_arr, region_tac, half_life_s, spec.tia["model"], effective_half_life_s=region_teff,
                           stp_index=stp, trapezoid_start=spec.tia["trapezoid_start"], what="region activity")

    # ---- body outline, the voxels' kinetic regions, voxel TIA ------------------------------------
    from rptdose.quant.body import apply_outside_body, body_mask_on_grid
    from rptdose.quant.voxel_tia import FIT_MODELS, voxel_tia

    hu_arr = sitk.GetArrayFromImage(resample(ref_ct, grid, None, default=-1000.0))
    body = body_mask_on_grid(ref_ct, grid)
    if not body.any():
        warnings.warn(f"study '{spec.path}': no body outline found in the reference CT (no voxel above -400 HU on the "
                      "dose grid); tia.outside_body and dose.mask_to_body are not applied", UserWarning, stacklevel=2)
        body = np.ones(geometry["shape"], dtype=bool)
    labels, label_names = _kinetic_labels(masks, body)
    vt = voxel_tia(t_arr, activity_stack, half_life_s, spec.tia["voxel_model"], labels=labels,
                   label_names=label_names,
                   region_model=spec.tia["model"] if spec.tia["model"] in FIT_MODELS else "trapezoid",
                   effective_half_life_s=voxel_teff, stp_index=stp, trapezoid_start=spec.tia["trapezoid_start"])
    voxel_fit = vt.fit
    tia, outside_info = apply_outside_body(vt.tia, body, spec.tia["outside_body"], grid.GetSpacing())
    tia = np.ascontiguousarray(tia, dtype=np.float64)
    outside_info["voxel_methods"] = vt.counts()
    outside_info["tia_fraction_by_method"] = vt.tia_fractions()

    # ---- phantom and source ------------------------------------------------------------------
    density, index, materials = HUCalibration.schneider2000().apply(hu_arr)
    phantom = Phantom.from_arrays(density, index, materials, grid.GetSpacing(), grid.GetOrigin(), grid.GetDirection())
    if not float(tia.sum()) > 0:
        raise InputError(f"study '{spec.path}' (the TIA map is zero everywhere on the dose grid): expected activity "
                         "in the SPECT field of view that overlaps the dose grid")
    source = Source(nuclide, tia)

    # ---- reports ----------------------------------------------------------------------------
    quant_report = []
    for tp in timepoints:
        corrected = float(decay_correct(tp.total_activity_fov_bq, tp.time_s, half_life_s))
        row = {"timepoint": tp.index, "label": tp.label, "spect": str(tp.spect_path),
               "acquisition_start": tp.acquisition_start.isoformat(), "time_h": tp.time_h,
               "duration_s": tp.duration_s if tp.duration_s is not None else float("nan"),
               "units": tp.units, "calibration": spec.calibration.mode,
               "activity_fov_mbq": tp.total_activity_fov_bq / 1e6,
               "activity_fov_decay_corrected_mbq": corrected / 1e6,
               "percent_of_administered_decay_corrected": 100 * corrected / activity_bq,
               "activity_dose_grid_mbq": tp.total_activity_grid_bq / 1e6,
               "registration": tp.registration.kind if tp.registration is not None else "reference",
               "registration_metric": tp.registration.metric if tp.registration is not None else float("nan"),
               "units_source": tp.units_source, "acquisition_start_source": tp.acquisition_start_source,
               "duration_source": tp.duration_source}
        if tp.registration is not None and tp.registration.parameters:
            row["rotation_deg"] = tuple(round(v, 4) for v in tp.registration.parameters["rotation_deg"])
            row["translation_mm"] = tuple(round(v, 3) for v in tp.registration.parameters["translation_mm"])
        quant_report.append(row)
    mass_kg = phantom.voxel_mass_kg
    region_table = []
    from rptdose.quant.tia import effective_half_life_s

    for r, name in enumerate(region_names):
        m = masks.get(name, np.ones(geometry["shape"], dtype=bool))
        n_vox = int(m.sum())
        voxel_sum = float(tia[m].sum())
        tia_r = float(region_fit.tia[r])
        row = {"region": name, "voxels": n_vox, "volume_ml": n_vox * grid_voxel_ml,
               "mass_g": float(mass_kg[m].sum()) * 1e3}
        for i, tp in enumerate(timepoints):
            row[f"activity_{tp.label}_mbq"] = float(region_tac[i, r]) / 1e6
        row.update({"model": region_fit.model_name(r), "tia_mbq_h": tia_r / 1e6 / HOUR, "tia_bq_s": tia_r,
                    "tia_rel_uncertainty": float(region_fit.rel_uncertainty[r]),
                    "t_eff_h": effective_half_life_s(region_fit, r) / HOUR,
                    "residence_time_h": tia_r / activity_bq / HOUR, "voxel_sum_tia_bq_s": voxel_sum,
                    "voxel_sum_to_region_fit": voxel_sum / tia_r if tia_r > 0 else float("nan"),
                    "flags": region_fit.flag_names(r)})
        region_table.append(row)

    settings = {"dose": dict(spec.dose), "tia": dict(spec.tia), "calibration": {
        "mode": spec.calibration.mode, "sensitivity_cps_per_mbq": spec.calibration.sensitivity_cps_per_mbq},
        "segmentation": {k: (str(v) if isinstance(v, Path) else v) for k, v in spec.segmentation.items()},
        "registration": {**vars(reg_settings), "metric_work_units": METRIC_WORK_UNITS},
        "hu_calibration": "schneider2000"}
    inputs = [spec.path] + [e[1].spect for e in entries] + [e[1].ct for e in entries]
    if spec.segmentation["path"] is not None:
        inputs.append(spec.segmentation["path"])
    provenance = {"rptdose_version": rptdose.__version__, "created": _dt.datetime.now().isoformat(timespec="seconds"),
                  "study_file": str(spec.path), "input_sha256": _hash_inputs(inputs), "settings": settings,
                  "administration": {"nuclide": nuclide, "half_life_s": half_life_s, "activity_bq": activity_bq,
                                     "time": adm_time.isoformat(), **{k: v for k, v in adm_info.items()}},
                  "versions": _versions()}
    return Study(path=spec.path, name=spec.name, nuclide=nuclide, half_life_s=half_life_s,
                 administered_activity_bq=activity_bq, administration_time=adm_time, timepoints=timepoints,
                 geometry=geometry, phantom=phantom, source=source, tia=tia,
                 tia_rel_uncertainty=np.ascontiguousarray(np.where(body, vt.rel_uncertainty, np.nan)
                                                          if spec.tia["outside_body"] == "drop" else vt.rel_uncertainty,
                                                          dtype=np.float64),
                 voxel_fit=voxel_fit, region_fit=region_fit, region_names=region_names, masks=masks,
                 activity=activity_stack, quant_report=quant_report, region_table=region_table, settings=settings,
                 provenance=provenance, body=body, voxel_method=vt.method, tia_outside_body=outside_info)


def _kinetic_labels(masks: dict[str, np.ndarray], body: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Each voxel's kinetic region for the voxel TIA (quant/voxel_tia.py): the smallest region
    that contains it, else the body outside the regions, else outside the body."""
    names = sorted(masks, key=lambda k: int(masks[k].sum()))
    rest, outside = len(names), len(names) + 1
    labels = np.where(body, rest, outside).astype(np.int32)
    for i in reversed(range(len(names))):   # smallest last: it wins
        labels[masks[names[i]]] = i
    return labels, names + ["body (outside the regions)", "outside the body"]


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for dist in ("numpy", "SimpleITK", "pydicom", "matplotlib", "icrp107-database"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _region_teff(teff_h: Any, region: str, spec: StudySpec) -> float:
    if isinstance(teff_h, dict):
        if region in teff_h:
            return teff_h[region]
        if "default" in teff_h:
            return teff_h["default"]
        raise InputError(f"study '{spec.path}' key tia.effective_half_life_h (no entry for region {region!r} and no "
                         "'default'): expected a value per region or a default")
    return float(teff_h)


def _voxel_teff(teff_h: Any, masks: dict, shape: tuple, spec: StudySpec) -> np.ndarray:
    if not isinstance(teff_h, dict):
        return np.full(shape, float(teff_h) * HOUR)
    for key in teff_h:
        if key != "default" and key not in masks:
            raise InputError(f"study '{spec.path}' key tia.effective_half_life_h.{key} (no region of that name): "
                             f"expected 'default' or one of the regions {sorted(masks)}")
    out = np.full(shape, teff_h["default"] * HOUR)
    for name, m in masks.items():  # later regions win where they overlap
        if name in teff_h:
            out[m] = teff_h[name] * HOUR
    return out


def _masks(spec: StudySpec, ref_ct: Any, grid: Any, ref_ct_id: dict) -> dict[str, np.ndarray]:
    from rptdose.io.segmentation import read_label_map, read_rtstruct, read_seg, resample_mask

    kind, path, names = spec.segmentation["kind"], spec.segmentation["path"], spec.segmentation["names"]
    if kind is None:
        return {}
    for_uids = ref_ct_id["FrameOfReferenceUID"]
    ref_for = next(iter(for_uids)) if len(for_uids) == 1 else None
    if kind == "rtstruct":
        on_ct = read_rtstruct(path, ref_ct, names, frame_of_reference_uid=ref_for)
        masks = {k: resample_mask(v, ref_ct, grid) for k, v in on_ct.items()}
    elif kind == "seg":
        masks = read_seg(path, grid, names, frame_of_reference_uid=ref_for)
    else:
        masks = read_label_map(path, grid, names)
    out = {}
    for name, m in masks.items():
        if name == FOV_REGION:
            raise InputError(f"segmentation '{path}' (a region named {FOV_REGION!r}): expected another name; "
                             f"{FOV_REGION!r} is the whole dose grid in the region table")
        if not m.any():
            if names is not None:
                raise InputError(f"segmentation '{path}' (region {name!r} covers no voxel of the dose grid): expected "
                                 "a region inside the dose grid (the reference CT / SPECT field of view)")
            warnings.warn(f"segmentation '{path}': region {name!r} covers no voxel of the dose grid; left out",
                          UserWarning, stacklevel=3)
            continue
        out[name] = np.ascontiguousarray(m, dtype=bool)
    return out
