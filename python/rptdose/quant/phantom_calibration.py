"""Camera calibration from a SPECT of a uniform phantom, and the calibration file that carries it.

A phantom of known activity (a cylinder of water with Lu-177, measured in the dose calibrator)
is scanned with the camera, collimator, energy window and reconstruction of the patient scans.
Its reconstructed image, in counts, gives the sensitivity S of the whole chain (counts per
second in the reconstructed image per MBq), which turns a patient SPECT in counts into
activity (``rptdose.quant.calibration``, modes ``phantom`` and ``file``).

Sensitivity
-----------
With A_cal the dose-calibrator reading (MBq) at ``phantom_time`` t_cal, the acquisition
starting at t_0 and lasting d seconds (both from the DICOM headers, as for a patient scan:
``rptdose.io.nm``), and lambda the decay constant of the nuclide:

    A_0 = A_cal exp(-lambda (t_0 - t_cal))             activity at the acquisition start
    N   = S A_0 (1 - exp(-lambda d)) / lambda          counts expected from the acquisition
    S   = N F(d) / (A_0 d),  F(d) = lambda d / (1 - exp(-lambda d))

(:func:`rptdose.quant.decay.acquisition_factor`), the exact inverse of the conversion applied
to patient scans, so that the calibration's conventions (duration from RotationInformation-
Sequence, decay during the acquisition) cancel. A series in cps gives S = C F(d) / A_0 with C the
total count rate (F = 1 when the duration is unknown). t_cal may be before or after the scan.

Counts N
--------
The phantom must lie entirely inside the reconstructed field of view. Without a CT, N is the
total of the whole reconstructed image: every count the reconstruction put anywhere, spill-out
included (the same quantity the patient's total field-of-view activity uses). With
``phantom_ct`` (the CT of the same SPECT/CT, same frame of reference), N is the total inside a
volume of interest: the phantom's outline on the CT (above -400 HU, the largest connected
component, holes filled: ``rptdose.quant.body``), carried to the SPECT grid and dilated by
``voi_margin_mm`` (default :data:`DEFAULT_VOI_MARGIN_MM` = 2 x :data:`DEFAULT_PSF_FWHM_MM`, two
widths of a Lu-177 medium-energy SPECT point-spread function) so that the spill-out of the
limited resolution is counted while the reconstruction's noise and scatter far from the
phantom (air, couch) is not. Both totals are recorded. A warning is given when more than 1 %
of the counts lie in the image's outermost voxel layer (the phantom may extend beyond the field
of view: counts lost), or when the CT volume holds less than 90 % of the image's counts
(another CT, or a misplaced phantom).

Uncertainty
-----------
The relative standard uncertainty of S combines, in quadrature, the dose calibrator's
(``phantom_activity_uncertainty_pct``, default 2 %: a calibrated, constancy-checked dose
calibrator for Lu-177) and the counting statistics of the acquisition, 1 / sqrt(N) (Poisson;
for cps, N = C d; unknown, and left out, when a cps series has no duration):

    u(S) / S = sqrt(u_dc^2 + 1 / N)

The reconstruction is taken to preserve the total counts of the projections (OSEM does, to
within its convergence); residual syringe activity is for the user to subtract from
``phantom_activity_mbq`` (the activity *in the phantom*). Half-life and clock uncertainties are
negligible for Lu-177 (a minute of clock error is 7e-5).

Camera identity
---------------
Read from the phantom SPECT's header (first file) and stored with the calibration, to be
compared with each patient SPECT (:func:`check_camera_match`, a
:class:`CameraMismatchWarning` naming what differs):

=========================  =====================================================================
entry                      DICOM
=========================  =====================================================================
``manufacturer``           Manufacturer (0008,0070)
``model``                  ManufacturerModelName (0008,1090)
``device_serial_number``   DeviceSerialNumber (0018,1000)
``station_name``           StationName (0008,1010) (recorded, not compared)
``software_versions``      SoftwareVersions (0018,1020) (recorded, not compared)
``collimator``             DetectorInformationSequence (0054,0022) > CollimatorGridName (0018,1180)
``collimator_type``        DetectorInformationSequence (0054,0022) > CollimatorType (0018,1181)
``energy_windows_kev``     EnergyWindowInformationSequence (0054,0012) > EnergyWindowRangeSequence
                           (0054,0013) > EnergyWindowLowerLimit / UpperLimit (0054,0014/0015)
``energy_window_names``    EnergyWindowInformationSequence > EnergyWindowName (0054,0018)
``reconstruction_method``  ReconstructionMethod (0054,1103)
``convolution_kernel``     ConvolutionKernel (0018,1210)
``corrected_image``        CorrectedImage (0028,0051) (e.g. ATTN\\SCAT: attenuation, scatter)
``series_description``     SeriesDescription (0008,103E) (recorded, not compared)
``pixel_spacing_mm``       the volume's voxel size (x, y, z) (recorded, not compared)
=========================  =====================================================================

Entries absent from a header are absent from the dict; only entries both sides have are compared.

Calibration file
----------------
:func:`write_calibration` writes JSON (atomically)::

    {"format": "rptdose-calibration", "format_version": 1,
     "sensitivity_cps_per_mbq": 9.01, "rel_uncertainty": 0.0201, "nuclide": "Lu-177",
     "calibration_date": "2026-03-01", "created": "2026-03-01T12:00:00+00:00",
     "camera": {...}, "phantom": {...measurement...}, "provenance": {...}}

and :func:`read_calibration` reads it back (checking the format and version). A study names it
with ``[calibration] mode = "file"``, ``file = "calibration.json"``.

Every bad input raises :class:`~rptdose.errors.InputError` naming the file, the key or tag
and what was expected.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rptdose.errors import InputError
from rptdose.quant.calibration import Calibration, QuantWarning, describe_camera

CALIBRATION_FORMAT = "rptdose-calibration"
CALIBRATION_FORMAT_VERSION = 1
#: Default relative standard uncertainty of the dose calibrator (%).
DEFAULT_ACTIVITY_UNCERTAINTY_PCT = 2.0
#: Largest dose-calibrator uncertainty accepted (%): beyond it the reading is not a calibration.
MAX_ACTIVITY_UNCERTAINTY_PCT = 50.0
#: A typical system resolution (FWHM, mm) of a Lu-177 SPECT with a medium-energy collimator.
DEFAULT_PSF_FWHM_MM = 12.0
#: The phantom's CT outline is dilated by this much (mm) to include spill-out: 2 PSF widths.
DEFAULT_VOI_MARGIN_MM = 2.0 * DEFAULT_PSF_FWHM_MM
#: Warn when the outermost voxel layer of the image holds more than this fraction of the counts.
EDGE_WARN_FRACTION = 0.01
#: Warn when the CT volume of interest holds less than this fraction of the image's counts.
VOI_WARN_FRACTION = 0.90
#: Latest / earliest dose-calibrator reading accepted, in half-lives from the acquisition start.
MAX_HALF_LIVES = 20.0
#: Energy window limits closer than this (keV) are the same window.
ENERGY_WINDOW_TOL_KEV = 0.5

#: Camera entries compared between a calibration and a patient SPECT: (key, what the DICOM calls it).
COMPARED = (("manufacturer", "Manufacturer (0008,0070)"),
            ("model", "ManufacturerModelName (0008,1090)"),
            ("device_serial_number", "DeviceSerialNumber (0018,1000)"),
            ("collimator", "CollimatorGridName (0018,1180)"),
            ("collimator_type", "CollimatorType (0018,1181)"),
            ("energy_windows_kev", "energy window (EnergyWindowRangeSequence (0054,0013) limits)"),
            ("reconstruction_method", "ReconstructionMethod (0054,1103)"),
            ("convolution_kernel", "ConvolutionKernel (0018,1210)"),
            ("corrected_image", "CorrectedImage (0028,0051)"))

#: How the inputs are named in messages: study-file keys (default) or command-line options.
STUDY_KEYS = {"spect": "calibration.phantom_spect", "activity": "calibration.phantom_activity_mbq",
              "time": "calibration.phantom_time", "ct": "calibration.phantom_ct",
              "uncertainty": "calibration.phantom_activity_uncertainty_pct", "nuclide": "study.nuclide",
              "acquisition_time": "calibration.phantom_acquisition_time",
              "duration": "calibration.phantom_duration_s", "margin": "calibration.phantom_voi_margin_mm"}


class CameraMismatchWarning(QuantWarning):
    """A patient SPECT from another camera, collimator, energy window or reconstruction than its
    calibration's."""


@dataclass(frozen=True)
class CameraCalibration:
    """A camera's sensitivity from a phantom scan (module docstring).

    ``sensitivity_cps_per_mbq``: counts per second in the reconstructed image per MBq;
    ``rel_uncertainty``: its relative standard uncertainty; ``nuclide``; ``camera``: the identity
    read from the DICOM; ``phantom``: the measurement (activity, times, counts, duration, how
    counted); ``created``: UTC ISO date-time; ``provenance``: rptdose version and input SHA-256;
    ``path``: the file it was read from, if any."""

    sensitivity_cps_per_mbq: float
    rel_uncertainty: float
    nuclide: str
    camera: dict[str, Any]
    phantom: dict[str, Any]
    created: str
    provenance: dict[str, Any]
    calibration_date: str = ""
    path: Path | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The calibration file's content (JSON-ready)."""
        return {"format": CALIBRATION_FORMAT, "format_version": CALIBRATION_FORMAT_VERSION,
                "sensitivity_cps_per_mbq": float(self.sensitivity_cps_per_mbq),
                "rel_uncertainty": float(self.rel_uncertainty), "nuclide": self.nuclide,
                "calibration_date": self.calibration_date, "created": self.created,
                "camera": dict(self.camera), "phantom": dict(self.phantom), "provenance": dict(self.provenance)}

    def to_calibration(self, mode: str = "phantom", source: str | None = None) -> Calibration:
        """A :class:`~rptdose.quant.calibration.Calibration` (mode "phantom" or "file") that
        converts patient counts with this sensitivity."""
        if source is None:
            source = (f"calibration file '{self.path}'" if self.path is not None
                      else f"phantom '{self.phantom.get('spect', '')}'")
        return Calibration(mode, float(self.sensitivity_cps_per_mbq), float(self.rel_uncertainty),
                           camera=dict(self.camera), nuclide=self.nuclide, source=source, record=self.to_dict())

    def summary(self) -> str:
        """Sensitivity, uncertainty and camera in a few lines (what ``rptdose calibrate`` prints)."""
        ph = self.phantom
        u = ph.get("uncertainty_components", {})
        counting = u.get("counting")
        lines = [f"sensitivity {self.sensitivity_cps_per_mbq:.5g} cps/MBq +- {100 * self.rel_uncertainty:.2f} % "
                 f"(1 sigma; dose calibrator {100 * u.get('dose_calibrator', float('nan')):.2f} %, counting "
                 + (f"{100 * counting:.3f} %" if counting is not None else "unknown (cps without a duration)") + ")",
                 f"nuclide     {self.nuclide}",
                 f"phantom     {ph.get('activity_mbq', float('nan')):.5g} MBq at {ph.get('activity_time', '')} -> "
                 f"{ph.get('activity_at_start_mbq', float('nan')):.5g} MBq at the acquisition start "
                 f"{ph.get('acquisition_start', '')}",
                 f"            {ph.get('duration_s') if ph.get('duration_s') is not None else '?'} s, "
                 f"{ph.get('image_sum', float('nan')):.6g} {ph.get('units', 'counts')} in the "
                 + ("whole field of view" if ph.get("counts_region") == "field_of_view" else
                    f"CT outline + {ph.get('voi_margin_mm', 0):g} mm ({100 * ph.get('voi_fraction_of_fov', 0):.1f} % "
                    "of the field of view's counts)"),
                 f"camera      {describe_camera(self.camera) or 'unknown (no camera tags in the DICOM)'}"]
        return "\n".join(lines)


# ---- camera identity ------------------------------------------------------------------------

def _clean(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        parts = [str(v).strip() for v in value if str(v).strip()]
        return "\\".join(parts) if parts else None
    s = str(value).strip()
    return s or None


def camera_from_header(ds: Any) -> dict[str, Any]:
    """The camera identity (module docstring) from a pydicom dataset; absent entries left out."""
    from rptdose.io.nm import get

    cam: dict[str, Any] = {}
    for key, tag in (("manufacturer", "Manufacturer"), ("model", "ManufacturerModelName"),
                     ("device_serial_number", "DeviceSerialNumber"), ("station_name", "StationName"),
                     ("software_versions", "SoftwareVersions"), ("reconstruction_method", "ReconstructionMethod"),
                     ("convolution_kernel", "ConvolutionKernel"), ("corrected_image", "CorrectedImage"),
                     ("series_description", "SeriesDescription")):
        v = _clean(get(ds, tag))
        if v is not None:
            cam[key] = v
    detectors = get(ds, "DetectorInformationSequence") or []
    for key, tag in (("collimator", "CollimatorGridName"), ("collimator_type", "CollimatorType")):
        values = sorted({v for d in detectors if (v := _clean(get(d, tag))) is not None})
        if values:
            cam[key] = "\\".join(values)
    windows, names = [], []
    for w in get(ds, "EnergyWindowInformationSequence") or []:
        name = _clean(get(w, "EnergyWindowName"))
        if name is not None:
            names.append(name)
        for r in get(w, "EnergyWindowRangeSequence") or []:
            lo, hi = get(r, "EnergyWindowLowerLimit"), get(r, "EnergyWindowUpperLimit")
            try:
                if lo is not None and hi is not None:
                    windows.append([round(float(lo), 4), round(float(hi), 4)])
            except (TypeError, ValueError):
                continue
    if windows:
        cam["energy_windows_kev"] = sorted(windows)
    if names:
        cam["energy_window_names"] = names
    return cam


def camera_from_nm(nm: Any) -> dict[str, Any]:
    """The camera identity of a SPECT read by :func:`rptdose.io.nm.read_nm` (its first file's
    header), with the voxel size."""
    from rptdose.io.nm import read_header

    cam: dict[str, Any] = {}
    if getattr(nm, "files", None):
        ds = read_header(nm.files[0])
        if ds is not None:
            cam = camera_from_header(ds)
    image = getattr(nm, "image", None)
    if image is not None:
        cam["pixel_spacing_mm"] = [round(float(s), 6) for s in image.GetSpacing()]
    return cam


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(value.lower().split())
    return value


def _windows_equal(a: Any, b: Any) -> bool:
    try:
        a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    except (TypeError, ValueError):
        return a == b
    return a_arr.shape == b_arr.shape and bool(np.all(np.abs(a_arr - b_arr) <= ENERGY_WINDOW_TOL_KEV))


def camera_differences(calibration_camera: Mapping[str, Any] | None, patient_camera: Mapping[str, Any] | None
                       ) -> list[str]:
    """What differs between two camera identities (only entries both have): one phrase each."""
    a, b = calibration_camera or {}, patient_camera or {}
    out = []
    for key, what in COMPARED:
        if key not in a or key not in b:
            continue
        same = _windows_equal(a[key], b[key]) if key == "energy_windows_kev" else _norm(a[key]) == _norm(b[key])
        if not same:
            out.append(f"{what}: calibration {a[key]!r}, patient {b[key]!r}")
    return out


def check_camera_match(calibration: Any, patient_nm: Any, where: str, nuclide: str | None = None) -> list[str]:
    """Compare a calibration's camera with a patient SPECT's; warn (:class:`CameraMismatchWarning`)
    naming each difference (manufacturer, model, serial number, collimator, energy window,
    reconstruction). Returns the differences (empty: nothing to say).

    ``calibration``: a :class:`~rptdose.quant.calibration.Calibration` or a
    :class:`CameraCalibration` (without a camera, e.g. mode "sensitivity": nothing is checked);
    ``patient_nm``: an :class:`~rptdose.io.nm.NMVolume`; ``where``: how to name the patient SPECT.
    ``nuclide``: the study's nuclide; a calibration made with another nuclide raises InputError
    (its sensitivity is for another energy window and emission yield), as does a patient SPECT
    whose RadionuclideCodeSequence names another nuclide than the calibration's."""
    cal_nuclide = getattr(calibration, "nuclide", None)
    source = getattr(calibration, "source", "") or (f"calibration file '{calibration.path}'"
                                                   if getattr(calibration, "path", None) else "the calibration")
    if cal_nuclide:
        rp = getattr(patient_nm, "radiopharmaceutical", None)
        for other, origin in ((nuclide, "the study's nuclide"),
                              (getattr(rp, "nuclide", None), f"{where}'s RadionuclideCodeSequence (0054,0300)")):
            if other and other != cal_nuclide:
                raise InputError(f"{source} (made with {cal_nuclide}, {origin} is {other}): expected a calibration "
                                 f"with the study's nuclide; calibrate the camera with {other}")
    cal_camera = getattr(calibration, "camera", None)
    if not cal_camera:
        return []
    diffs = camera_differences(cal_camera, camera_from_nm(patient_nm))
    if diffs:
        warnings.warn(f"{where}: acquired or reconstructed otherwise than its calibration ({source}): "
                      + "; ".join(diffs) + ". The sensitivity holds only for the same camera, collimator, energy "
                      "window and reconstruction: calibrate with a phantom scanned like the patient",
                      CameraMismatchWarning, stacklevel=2)
    return diffs


# ---- calibration from a phantom -------------------------------------------------------------

def _sha256(path: Path) -> str:
    from rptdose._provenance import sha256_file

    return sha256_file(path)


def _input_hashes(paths: list[Path]) -> dict[str, str]:
    out = {}
    for p in paths:
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for f in files:
            out[str(f)] = _sha256(f)
    return out


def _positive(value: Any, name: str, expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InputError(f"{name} {value!r} (not a number): expected {expected}")
    v = float(value)
    if not math.isfinite(v) or not v > 0:
        raise InputError(f"{name} {v!r} (not a finite number > 0): expected {expected}")
    return v


def _local_datetime(value: Any, name: str) -> _dt.datetime:
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise InputError(f"{name} {value!r} (not an ISO date-time): expected a local date and time such as "
                             "2026-03-01T10:00:00") from None
    if not isinstance(value, _dt.datetime):
        raise InputError(f"{name} {value!r} (not a date-time): expected a local date and time such as "
                         "2026-03-01T10:00:00")
    if value.tzinfo is not None:
        raise InputError(f"{name} {value.isoformat()!r} (has a UTC offset): expected a local date and time without "
                         "offset, as DICOM times are local")
    return value


def _resolve_nuclide(nuclide: str | None, nm: Any, where: str, names: Mapping[str, str]) -> tuple[str, float]:
    from rptdose.physics.nuclides import load_nuclide

    rp = nm.radiopharmaceutical
    if nuclide is not None:
        try:
            name = load_nuclide(nuclide).name
        except InputError as exc:
            raise InputError(f"{names['nuclide']} {nuclide!r} (unknown: {exc}): expected an ICRP-107 nuclide name "
                             "such as 'Lu-177'") from None
        if rp.nuclide is not None and rp.nuclide != name:
            raise InputError(f"{where} ({rp.nuclide_source} says {rp.nuclide}, {names['nuclide']} is {name}): "
                             "expected the phantom to hold the nuclide it calibrates for")
    elif rp.nuclide is not None:
        try:
            name = load_nuclide(rp.nuclide).name
        except InputError as exc:
            raise InputError(f"{where} ({rp.nuclide_source}: {exc}): expected a known nuclide, or give "
                             f"{names['nuclide']}") from None
    else:
        raise InputError(f"{where} (no nuclide: RadionuclideCodeSequence (0054,0300) absent): expected "
                         f"{names['nuclide']}, e.g. 'Lu-177'")
    half_life_s = float(load_nuclide(name).half_life_s)
    if rp.half_life_s is not None and abs(rp.half_life_s - half_life_s) > 0.02 * half_life_s:
        raise InputError(f"{where} (RadionuclideHalfLife (0018,1075) {rp.half_life_s:g} s, the half-life of {name} "
                         f"is {half_life_s:g} s): expected the phantom's nuclide; check {names['nuclide']}")
    return name, half_life_s


def _voi(ct_path: Path, nm: Any, margin_mm: float, where: str, names: Mapping[str, str]) -> np.ndarray:
    """Bool [z, y, x] on the SPECT grid: the phantom's CT outline dilated by ``margin_mm``."""
    import SimpleITK as sitk

    from rptdose.io.ct import read_ct
    from rptdose.io.nm import dicom_identity
    from rptdose.quant.body import BODY_HU_THRESHOLD, body_mask_on_grid

    try:
        ct = read_ct(ct_path)
    except InputError as exc:
        raise InputError(f"{names['ct']}: {exc}") from None
    ct_for = dicom_identity(ct_path, modality="CT")["FrameOfReferenceUID"] if ct_path.exists() else set()
    if nm.frame_of_reference_uid is not None and ct_for and nm.frame_of_reference_uid not in ct_for:
        raise InputError(f"{where} (FrameOfReferenceUID (0020,0052) {nm.frame_of_reference_uid} differs from its CT "
                         f"'{ct_path}' ({', '.join(sorted(ct_for))})): expected {names['ct']} to be the CT of the "
                         "same SPECT/CT acquisition")
    mask = body_mask_on_grid(ct, nm.image)
    if not mask.any():
        raise InputError(f"{names['ct']} '{ct_path}' (no phantom on the SPECT grid: no CT voxel above "
                         f"{BODY_HU_THRESHOLD:g} HU inside the SPECT field of view): expected the CT of the phantom's "
                         "SPECT/CT, overlapping the SPECT")
    if margin_mm > 0:  # every voxel whose centre is within margin_mm (in mm, any voxel shape) of the outline
        img = sitk.GetImageFromArray(mask.astype(np.uint8))
        img.SetSpacing(nm.image.GetSpacing())
        dist = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False,
                                                                   useImageSpacing=True, backgroundValue=0))
        mask = mask | (dist <= margin_mm + 1e-6)
    return mask


def calibrate_from_phantom(phantom_spect: str | os.PathLike, activity_mbq: float, activity_time: Any, *,
                           nuclide: str | None = None, phantom_ct: str | os.PathLike | None = None,
                           activity_uncertainty_pct: float | None = None, acquisition_time: Any = None,
                           duration_s: float | None = None, voi_margin_mm: float | None = None,
                           series_uid: str | None = None, names: Mapping[str, str] | None = None
                           ) -> CameraCalibration:
    """The camera's sensitivity from a SPECT of a uniform phantom (module docstring).

    Parameters
    ----------
    phantom_spect : path
        The phantom SPECT (NM file or folder, read by :func:`rptdose.io.nm.read_nm`) in counts
        or cps, reconstructed as the patient scans are.
    activity_mbq : float
        The phantom's activity (MBq), measured in the dose calibrator at ``activity_time``.
    activity_time : datetime or ISO string
        The local date and time of that reading (before or after the scan).
    nuclide : str, optional
        The nuclide (default: from the phantom's RadionuclideCodeSequence).
    phantom_ct : path, optional
        The CT of the phantom's SPECT/CT: count inside its outline + ``voi_margin_mm`` instead
        of the whole image.
    activity_uncertainty_pct : float, optional
        Relative standard uncertainty of the dose calibrator (%), default 2.
    acquisition_time, duration_s : optional
        The acquisition start (local) and duration (s) when the DICOM lacks them (or to
        override them).
    voi_margin_mm : float, optional
        Dilation of the CT outline (mm), default :data:`DEFAULT_VOI_MARGIN_MM`.
    series_uid : str, optional
        The series to read when the folder holds several.
    names : mapping, optional
        How to name the inputs in messages (default: the study-file keys, :data:`STUDY_KEYS`).
    """
    from rptdose._provenance import rptdose_version
    from rptdose.io.nm import read_nm
    from rptdose.quant.decay import acquisition_factor, decay_factor

    n = {**STUDY_KEYS, **(names or {})}
    if not isinstance(phantom_spect, (str, os.PathLike)):
        raise InputError(f"{n['spect']} {phantom_spect!r} (of type {type(phantom_spect).__name__}): expected the "
                         "phantom SPECT's DICOM file or folder")
    activity = _positive(activity_mbq, n["activity"], "the phantom's activity in MBq from the dose calibrator")
    t_cal = _local_datetime(activity_time, n["time"])
    u_dc_pct = DEFAULT_ACTIVITY_UNCERTAINTY_PCT if activity_uncertainty_pct is None else activity_uncertainty_pct
    if isinstance(u_dc_pct, bool) or not isinstance(u_dc_pct, (int, float)) or not math.isfinite(u_dc_pct) \
            or not 0 <= u_dc_pct <= MAX_ACTIVITY_UNCERTAINTY_PCT:
        raise InputError(f"{n['uncertainty']} {u_dc_pct!r} (not a number in 0-{MAX_ACTIVITY_UNCERTAINTY_PCT:g}): "
                         "expected the dose calibrator's relative standard uncertainty in %, e.g. 2")
    margin = DEFAULT_VOI_MARGIN_MM if voi_margin_mm is None else voi_margin_mm
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin < 0:
        raise InputError(f"{n['margin']} {margin!r} (not a number >= 0): expected the margin (mm) around the "
                         "phantom's CT outline, e.g. 24")
    if duration_s is not None:
        duration_s = _positive(duration_s, n["duration"], "the acquisition duration in s")
    if acquisition_time is not None:
        acquisition_time = _local_datetime(acquisition_time, n["acquisition_time"])

    spect_path = Path(phantom_spect)
    try:
        nm = read_nm(spect_path, series_uid=series_uid)
    except InputError as exc:
        raise InputError(f"{n['spect']}: phantom {exc}") from None
    where = f"phantom spect '{nm.files[0] if len(nm.files) == 1 else spect_path}'"
    if nm.units == "bq_per_ml":
        raise InputError(f"{where} (in Bq/ml per {nm.units_source}): expected a phantom SPECT in counts (Units "
                         "(0054,1001) CNTS, or cps), reconstructed as the patient scans; a series already in Bq/ml is "
                         "calibrated by its own reconstruction (calibration.mode = 'quantitative')")
    if nm.units not in ("counts", "cps"):
        raise InputError(f"{where} (units {nm.units!r}): expected counts or cps")
    nuclide_name, half_life_s = _resolve_nuclide(nuclide, nm, where, n)

    if acquisition_time is not None:
        t0, t0_source = acquisition_time, n["acquisition_time"]
    elif nm.acquisition_start is not None:
        t0, t0_source = nm.acquisition_start, nm.acquisition_start_source
    else:
        raise InputError(f"{where} (acquisition start {nm.acquisition_start_source}): expected these tags, or "
                         f"{n['acquisition_time']}")
    if duration_s is not None:
        d, d_source = duration_s, n["duration"]
    else:
        d, d_source = nm.duration_s, nm.duration_source
    if d is None and nm.units == "counts":
        raise InputError(f"{where} (counts, but the acquisition duration is {nm.duration_source}): expected these "
                         f"tags, or {n['duration']}")
    dt = (t0 - t_cal).total_seconds()
    if abs(dt) > MAX_HALF_LIVES * half_life_s:
        raise InputError(f"{n['time']} {t_cal.isoformat()} ({abs(dt) / 86400.0:.4g} days, "
                         f"{abs(dt) / half_life_s:.3g} half-lives of {nuclide_name}, from the acquisition start "
                         f"{t0.isoformat()} ({t0_source})): expected the dose-calibrator reading within "
                         f"{MAX_HALF_LIVES:g} half-lives of the scan; check the dates")

    values = nm.values()
    total_fov = float(values.sum())
    region = "field_of_view"
    counted = total_fov
    voi_fraction = None
    ct_path = Path(phantom_ct) if phantom_ct is not None else None
    if ct_path is not None:
        mask = _voi(ct_path, nm, float(margin), where, n)
        counted = float(values[mask].sum())
        region = "ct_voi"
        voi_fraction = counted / total_fov if total_fov > 0 else float("nan")
    unit_word = "counts" if nm.units == "counts" else "cps"
    if not counted > 0:
        raise InputError(f"{where} (total {counted:g} {unit_word} in the "
                         f"{'field of view' if region == 'field_of_view' else 'phantom volume of interest'}): "
                         "expected a phantom SPECT with counts")
    edge = np.zeros(values.shape, dtype=bool)
    edge[[0, -1], :, :] = True
    edge[:, [0, -1], :] = True
    edge[:, :, [0, -1]] = True
    edge_fraction = float(np.abs(values[edge]).sum() / np.abs(values).sum())
    if edge_fraction > EDGE_WARN_FRACTION:
        warnings.warn(f"{where}: {100 * edge_fraction:.2g} % of the counts are in the outermost voxels of the image: "
                      "the phantom may extend beyond the reconstructed field of view (counts lost, sensitivity too "
                      "low); expected a phantom entirely inside the field of view", QuantWarning, stacklevel=2)
    if voi_fraction is not None and voi_fraction < VOI_WARN_FRACTION:
        warnings.warn(f"{where}: the phantom's CT outline + {margin:g} mm holds {100 * voi_fraction:.1f} % of the "
                      f"image's counts: expected nearly all of them; is {n['ct']} the CT of this SPECT/CT, and the "
                      "phantom uniform and filled?", QuantWarning, stacklevel=2)

    a0_bq = activity * 1e6 * float(decay_factor(dt, half_life_s))
    if nm.units == "counts":
        f = acquisition_factor(d, half_life_s)
        s_cps_per_bq = counted * f / (a0_bq * d)
        n_counts = counted
    else:
        f = acquisition_factor(d, half_life_s) if d is not None else 1.0
        s_cps_per_bq = counted * f / a0_bq
        n_counts = counted * d if d is not None else None
    u_dc = u_dc_pct / 100.0
    u_count = 1.0 / math.sqrt(n_counts) if n_counts is not None else None
    u = math.sqrt(u_dc ** 2 + (u_count ** 2 if u_count is not None else 0.0))

    camera = camera_from_nm(nm)
    inputs = [spect_path] + ([ct_path] if ct_path is not None else [])
    phantom = {"spect": str(spect_path), "ct": str(ct_path) if ct_path is not None else None,
               "series_uid": nm.series_uid, "activity_mbq": activity, "activity_time": t_cal.isoformat(),
               "activity_uncertainty_pct": float(u_dc_pct), "acquisition_start": t0.isoformat(),
               "acquisition_start_source": t0_source, "duration_s": d, "duration_source": d_source,
               "units": nm.units, "units_source": nm.units_source, "half_life_s": half_life_s,
               "time_from_activity_reading_s": dt, "activity_at_start_mbq": a0_bq / 1e6,
               "acquisition_factor": f, "counts": n_counts, "image_sum": counted, "image_sum_fov": total_fov,
               "counts_region": region, "voi_margin_mm": float(margin) if region == "ct_voi" else None,
               "voi_fraction_of_fov": voi_fraction, "edge_fraction": edge_fraction,
               "uncertainty_components": {"dose_calibrator": u_dc, "counting": u_count}}
    provenance = {"rptdose_version": rptdose_version(), "method": "rptdose.quant.phantom_calibration",
                  "input_sha256": _input_hashes(inputs)}
    return CameraCalibration(sensitivity_cps_per_mbq=s_cps_per_bq * 1e6, rel_uncertainty=u, nuclide=nuclide_name,
                             camera=camera, phantom=phantom,
                             created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                             provenance=provenance, calibration_date=t0.date().isoformat())


# ---- the calibration file -------------------------------------------------------------------

def write_calibration(path: str | os.PathLike, calibration: CameraCalibration) -> Path:
    """Write ``calibration`` as a calibration file (JSON, module docstring), atomically."""
    from rptdose.quant.outputs import write_text

    if not isinstance(calibration, CameraCalibration):
        raise InputError(f"calibration {type(calibration).__name__} (not a CameraCalibration): expected the result "
                         "of calibrate_from_phantom or read_calibration")
    p = Path(path)
    if p.is_dir():
        raise InputError(f"calibration file '{p}' (is a folder): expected a file name such as calibration.json")
    if not p.parent.is_dir():
        raise InputError(f"calibration file '{p}' (folder '{p.parent}' does not exist): expected an existing folder")
    text = json.dumps(calibration.to_dict(), indent=2, allow_nan=False) + "\n"
    return write_text(p, text)


def _field(data: dict, key: str, p: Path, check: Any, expected: str, required: bool = True) -> Any:
    if key not in data:
        if required:
            raise InputError(f"calibration file '{p}' key {key} (missing): expected {expected}")
        return None
    v = data[key]
    if not check(v):
        shown = repr(v) if len(repr(v)) <= 80 else repr(v)[:77] + "..."
        raise InputError(f"calibration file '{p}' key {key} {shown} (not valid): expected {expected}")
    return v


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_calibration(path: str | os.PathLike) -> CameraCalibration:
    """Read a calibration file written by :func:`write_calibration` (``rptdose calibrate``),
    checking its format and version; InputError naming the file and key otherwise."""
    from rptdose.physics.nuclides import load_nuclide

    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"calibration file {path!r} (of type {type(path).__name__}): expected a path")
    p = Path(path)
    if not p.is_file():
        raise InputError(f"calibration file '{p}' ({'is a folder' if p.is_dir() else 'does not exist'}): expected a "
                         "calibration file written by `rptdose calibrate`")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"calibration file '{p}' (not JSON: {exc}): expected a calibration file written by "
                         "`rptdose calibrate`") from None
    if not isinstance(data, dict):
        raise InputError(f"calibration file '{p}' (a JSON {type(data).__name__}, not an object): expected a "
                         "calibration file written by `rptdose calibrate`")
    fmt = data.get("format")
    if fmt != CALIBRATION_FORMAT:
        raise InputError(f"calibration file '{p}' key format {fmt!r} (not a calibration file): expected "
                         f"\"format\": \"{CALIBRATION_FORMAT}\" (a file written by `rptdose calibrate`)")
    version = data.get("format_version")
    if not (isinstance(version, int) and not isinstance(version, bool)) or version < 1:
        raise InputError(f"calibration file '{p}' key format_version {version!r} (not a version number): expected "
                         f"{CALIBRATION_FORMAT_VERSION}")
    if version > CALIBRATION_FORMAT_VERSION:
        raise InputError(f"calibration file '{p}' key format_version {version} (written by a newer rptdose): "
                         f"expected version {CALIBRATION_FORMAT_VERSION} or older; update rptdose")
    s = _field(data, "sensitivity_cps_per_mbq", p, lambda v: _is_number(v) and v > 0,
               "the sensitivity in cps/MBq, a number > 0")
    u = _field(data, "rel_uncertainty", p, lambda v: _is_number(v) and v >= 0,
               "the relative standard uncertainty of the sensitivity, a number >= 0")
    nuclide = _field(data, "nuclide", p, lambda v: isinstance(v, str) and v.strip() != "",
                     "the nuclide the camera was calibrated with, e.g. 'Lu-177'")
    try:
        nuclide = load_nuclide(nuclide).name
    except InputError as exc:
        raise InputError(f"calibration file '{p}' key nuclide {nuclide!r} (unknown: {exc}): expected an ICRP-107 "
                         "nuclide name") from None
    camera = _field(data, "camera", p, lambda v: isinstance(v, dict), "an object (the camera identity)",
                    required=False) or {}
    phantom = _field(data, "phantom", p, lambda v: isinstance(v, dict), "an object (the phantom measurement)",
                     required=False) or {}
    provenance = _field(data, "provenance", p, lambda v: isinstance(v, dict), "an object", required=False) or {}
    created = _field(data, "created", p, lambda v: isinstance(v, str), "an ISO date-time string",
                     required=False) or ""
    cal_date = _field(data, "calibration_date", p, lambda v: isinstance(v, str), "an ISO date string",
                      required=False) or ""
    return CameraCalibration(sensitivity_cps_per_mbq=float(s), rel_uncertainty=float(u), nuclide=nuclide,
                             camera=dict(camera), phantom=dict(phantom), created=created, provenance=dict(provenance),
                             calibration_date=cal_date, path=p)
