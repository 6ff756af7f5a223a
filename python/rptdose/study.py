"""A clinical study: the study file (TOML), and :func:`load_study`, which turns it into a phantom
and a time-integrated activity source on the dose grid.

Loading runs the stages of ``rptdose/loading.py`` in order: read each time point's SPECT and
CT and the administration (``read_scans``) -> activity per voxel at each scan
(``quantify``: ``quant/calibration.py``) -> the dose grid, each CT registered to the reference
CT (the earliest time point's) and its SPECT carried along (``register_activity``:
``quant/registration.py``) -> segmentation masks (``segment``: ``io/segmentation.py``) ->
phantom and body outline (``build_anatomy``: Schneider 2000 HU calibration, ``quant/body.py``)
-> TIA per voxel and per region (``integrate_activity``: ``quant/tia.py``,
``quant/voxel_tia.py``) -> the :class:`Study` (``assemble``: source = TIA in Bq*s, tables,
provenance).

The study file (paths relative to the file; ``docs/study_file.md`` has the long version):

===============================  =========  ================================================
key                              default    meaning
===============================  =========  ================================================
``study.nuclide``                DICOM      ICRP-107 name ("Lu-177"); else from the SPECT's
                                            RadionuclideCodeSequence
``study.name``                   file stem  a label for the outputs
``study.chain``                  equil.     "equilibrium" (default): the nuclide's daughters
                                            shorter-lived than it decay at its site (e.g.
                                            Ac-225's six), or "parent": the nuclide alone
                                            (rptdose.physics.chains)
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
``calibration.mode``             required   "quantitative" (Bq/ml series), "sensitivity",
                                            "phantom" (derived from a phantom scan) or "file"
``calibration.sensitivity_cps_per_mbq``  -- cps per MBq, required with "sensitivity"
``calibration.phantom_*``, ``.file``  --    see docs/study_file.md (quant/phantom_calibration.py)
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
``dose.precision``               "auto"     floating point of the transport: auto | single |
                                            double (auto: double on the CPU, from the
                                            device on a GPU: docs/gpu_backends.md)
``dose.scheduler``               --         Monte Carlo transport on a Dask cluster: "local:N"
                                            (N workers here) or a scheduler address
                                            ("tcp://host:8786"; tls, ws, wss, inproc)
``tia.model``                    "auto"     auto | mono | biexp | biexp_uptake | trapezoid |
                                            hanscheid | madsen (regions)
``tia.voxel_model``              model      the same choices and "region", for the voxel map:
                                            fit models go through the noise-robust hierarchy
                                            (quant/voxel_tia.py)
``tia.outside_body``             "drop"     drop | keep | reassign: activity outside the CT's
                                            body outline (quant/body.py)
``dose.mask_to_body``            true       dose.dcm and dose.nii.gz 0 outside the body
``dose.rbe_alpha``               5          RBE of alphas for the RBE-weighted dose Gy(RBE) that
                                            ``rptdose run`` writes for alpha emitters (MIRD
                                            Pamphlet 22); dose.dcm stays absorbed dose
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
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rptdose import loading as stages
from rptdose.errors import InputError
from rptdose.loading import FOV_REGION, HOUR, MAX_SCAN_HALF_LIVES, Study, TimePoint
from rptdose.transport.distributed import SCHEDULER_EXPECTED, check_scheduler, scheduler_problem  # the one rule

if TYPE_CHECKING:
    from rptdose.quant.registration import RegistrationSettings

__all__ = ["DOSE_METHODS", "FOV_REGION", "GRID_CHOICES", "HOUR", "MAX_SCAN_HALF_LIVES", "SCHEDULER_EXPECTED",
           "SCHEMA", "Study", "StudySpec", "TimePoint", "TimepointSpec", "check_scheduler", "load_study",
           "read_study_file", "scheduler_problem"]

GRID_CHOICES = ("spect", "ct")
DOSE_METHODS = ("mc", "ldm", "vsv", "sphere")

#: The keys each table may hold (declared once; docs/study_file.md documents them).
SCHEMA: dict[str, tuple[str, ...]] = {
    "study": ("nuclide", "name", "chain"),
    "administration": ("activity_mbq", "time"),
    "timepoint": ("spect", "ct", "label", "acquisition_time", "duration_s", "spect_series_uid", "ct_series_uid"),
    "calibration": ("mode", "sensitivity_cps_per_mbq", "sensitivity_uncertainty_pct", "phantom_spect",
                    "phantom_activity_mbq", "phantom_time", "phantom_ct", "phantom_activity_uncertainty_pct",
                    "phantom_acquisition_time", "phantom_duration_s", "phantom_voi_margin_mm", "file"),
    "segmentation": ("rtstruct", "seg", "labels", "names"),
    "dose": ("grid", "method", "histories", "seed", "backend", "threads", "batches", "electron_transport",
             "mask_to_body", "rbe_alpha", "scheduler", "precision"),
    "tia": ("model", "voxel_model", "effective_half_life_h", "timepoint", "trapezoid_start", "outside_body"),
    "recovery": ("psf_fwhm_mm", "psf_fwhm_uncertainty_pct", "contour_uncertainty_mm", "split_background", "exclude",
                 "sphere_phantom"),
    "recovery.sphere_phantom": ("spect", "sphere_concentration_bq_ml", "spheres", "centres_mm", "volumes_ml",
                                "background", "background_concentration_bq_ml"),
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
    chain: str | None = None   # study.chain; None: the default ("equilibrium")
    recovery: dict | None = None   # [recovery] (quant/recovery.py); None: no recovery correction


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
    """Parse and validate a study file (see the module docstring). No image is read, except a
    calibration phantom's SPECT with ``calibration.mode = "phantom"`` (the sensitivity is derived
    here, quant/phantom_calibration.py)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    from rptdose.quant.calibration import Calibration
    from rptdose.quant.registration import RegistrationSettings
    from rptdose.quant.body import OUTSIDE_BODY
    from rptdose.transport.backends import BACKEND_NAMES
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
    from rptdose.physics.chains import CHAIN_OPTIONS

    chain = c.string(study, "chain", "study.chain", choices=CHAIN_OPTIONS)

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
    from rptdose.transport.simulate import (  # the transport's limits and choices, declared there
        MAX_BATCHES, MIN_BATCHES, PRECISIONS)

    dose = {
        "grid": grid,
        "method": c.string(dose_t, "method", "dose.method", choices=DOSE_METHODS) or "mc",
        "histories": c.number(dose_t, "histories", "dose.histories", integer=True, minimum=1) or 10_000_000,
        "seed": c.number(dose_t, "seed", "dose.seed", integer=True, minimum=0, maximum=2**64 - 1),
        "backend": c.string(dose_t, "backend", "dose.backend", choices=("auto",) + BACKEND_NAMES) or "auto",
        "threads": c.number(dose_t, "threads", "dose.threads", integer=True, minimum=1),
        "batches": c.number(dose_t, "batches", "dose.batches", integer=True, minimum=MIN_BATCHES,
                            maximum=MAX_BATCHES) or 10,
        "electron_transport": c.boolean(dose_t, "electron_transport", "dose.electron_transport"),
        "mask_to_body": c.boolean(dose_t, "mask_to_body", "dose.mask_to_body"),
        "rbe_alpha": c.number(dose_t, "rbe_alpha", "dose.rbe_alpha", positive=True, maximum=100.0),
        "scheduler": dose_t.get("scheduler"),
        "precision": c.string(dose_t, "precision", "dose.precision", choices=PRECISIONS) or "auto",
    }
    if "scheduler" in dose_t and (why := scheduler_problem(dose_t["scheduler"])) is not None:
        raise c.error("dose.scheduler", dose_t["scheduler"], why, SCHEDULER_EXPECTED)
    if dose["rbe_alpha"] is None:
        dose["rbe_alpha"] = 5.0  # MIRD Pamphlet 22 (Sgouros et al., J Nucl Med 51:311, 2010)
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
    recovery = _read_recovery(c, data)
    return StudySpec(p, name, nuclide, activity_mbq, adm_time, tps, calibration, segmentation, dose, tia,
                     registration, chain=chain, recovery=recovery)


def _read_recovery(c: _Checker, data: dict) -> dict | None:
    """The [recovery] table (docs/study_file.md, "Recovery (partial-volume) correction"), checked;
    None when absent."""
    from rptdose.quant.recovery import DEFAULT_FWHM_UNCERTAINTY_PCT, check_fwhm_uncertainty_pct, check_psf_fwhm

    if "recovery" not in data:
        return None
    t = c.table(data, "recovery")
    out: dict[str, Any] = {"psf_fwhm_mm": None, "sphere_phantom": None}
    if "psf_fwhm_mm" in t:
        out["psf_fwhm_mm"] = check_psf_fwhm(t["psf_fwhm_mm"], key=f"study '{c.path}' key recovery.psf_fwhm_mm")
    if "psf_fwhm_uncertainty_pct" in t:
        try:
            out["psf_fwhm_uncertainty_pct"] = check_fwhm_uncertainty_pct(t["psf_fwhm_uncertainty_pct"])
        except InputError as exc:
            raise InputError(f"study '{c.path}': {exc}") from None
    else:
        out["psf_fwhm_uncertainty_pct"] = DEFAULT_FWHM_UNCERTAINTY_PCT
    out["contour_uncertainty_mm"] = c.number(t, "contour_uncertainty_mm", "recovery.contour_uncertainty_mm",
                                             minimum=0.0, maximum=50.0, unit="mm")
    split = c.boolean(t, "split_background", "recovery.split_background")
    out["split_background"] = True if split is None else split
    exclude = t.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(v, str) and v.strip() for v in exclude):
        raise c.error("recovery.exclude", exclude, "not a list of names", 'a list of region names, e.g. ["node_3"]')
    out["exclude"] = list(exclude)
    if "sphere_phantom" in t:
        sp = t["sphere_phantom"]
        if not isinstance(sp, dict):
            raise c.error("recovery.sphere_phantom", sp, "not a table", "a [recovery.sphere_phantom] table")
        c.known(sp, "recovery.sphere_phantom")
        phantom = {
            "spect": c.path_(sp, "spect", "recovery.sphere_phantom.spect", required=True),
            "sphere_concentration_bq_ml": c.number(sp, "sphere_concentration_bq_ml",
                                                   "recovery.sphere_phantom.sphere_concentration_bq_ml",
                                                   positive=True, unit="Bq/ml (the image's unit)"),
            "spheres": c.path_(sp, "spheres", "recovery.sphere_phantom.spheres"),
            "background": c.path_(sp, "background", "recovery.sphere_phantom.background"),
            "background_concentration_bq_ml": c.number(sp, "background_concentration_bq_ml",
                                                       "recovery.sphere_phantom.background_concentration_bq_ml",
                                                       minimum=0.0, unit="Bq/ml (the image's unit)"),
            "centres_mm": None, "volumes_ml": None}
        if phantom["sphere_concentration_bq_ml"] is None:
            raise c.error("recovery.sphere_phantom.sphere_concentration_bq_ml", None, "missing",
                          "the spheres' activity concentration at the scan, in the image's unit")
        centres = sp.get("centres_mm")
        if centres is not None:
            if (not isinstance(centres, list) or not centres or not all(
                    isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                                for x in v) for v in centres)):
                raise c.error("recovery.sphere_phantom.centres_mm", centres, "not a list of [x, y, z]",
                              "the spheres' centres in mm, e.g. [[0, 57, 0], ...]")
            phantom["centres_mm"] = [tuple(float(x) for x in v) for v in centres]
            vols = sp.get("volumes_ml")
            if vols is None:
                from rptdose.quant.recovery import NEMA_IEC_SPHERES

                vols = [v for _, v in NEMA_IEC_SPHERES]
            if (not isinstance(vols, list) or len(vols) != len(centres)
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in vols)):
                raise c.error("recovery.sphere_phantom.volumes_ml", vols, f"not {len(centres)} volumes > 0",
                              "one volume (ml) per centre (default: the six NEMA IEC spheres)")
            phantom["volumes_ml"] = [float(v) for v in vols]
        if (phantom["spheres"] is None) == (phantom["centres_mm"] is None):
            raise c.error("recovery.sphere_phantom", None, "spheres and centres_mm both given or both missing",
                          "spheres = a label image (one label per sphere), or centres_mm (+ volumes_ml)")
        out["sphere_phantom"] = phantom
    if (out["psf_fwhm_mm"] is None) == (out["sphere_phantom"] is None):
        raise c.error("recovery.psf_fwhm_mm", t.get("psf_fwhm_mm"), "psf_fwhm_mm and sphere_phantom both given or "
                      "both missing", "one of them: the reconstructed resolution (FWHM, mm), or a "
                      "[recovery.sphere_phantom] to fit it from")
    return out


# ---- loading: the stages of rptdose/loading.py in order -------------------------------------------

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
    voxel = TIA), ``.tia_rel_uncertainty``, ``.masks``, ``.timepoints`` and the reports. The
    stages (rptdose/loading.py) can also be run one by one.
    """
    spec = read_study_file(path)
    reg_settings = _registration_overrides(spec.registration, register, deformable)
    scans = stages.read_scans(spec)
    acts = stages.quantify(spec, scans)
    registered = stages.register_activity(spec, scans, acts, reg_settings)
    masks = stages.segment(spec, registered)
    anatomy = stages.build_anatomy(spec, registered)
    registered, recovered = stages.correct_recovery(spec, registered, masks, anatomy)
    integrated = stages.integrate_activity(spec, registered, masks, anatomy.body, scans.half_life_s, recovered)
    return stages.assemble(spec, scans, acts, registered, masks, anatomy, integrated, reg_settings, recovered)


def _registration_overrides(settings: RegistrationSettings, register: bool | None, deformable: bool | None
                            ) -> RegistrationSettings:
    """The study file's registration settings with the caller's overrides."""
    if register is not None:
        settings.method = "rigid" if register else "none"
    if deformable is not None:
        settings.deformable = bool(deformable)
        if deformable and settings.method == "none":
            settings.method = "rigid"
    if settings.method == "none":
        settings.deformable = False
    return settings
