"""DICOM RT Dose writer (pydicom): a dose grid on the CT's frame of reference.

What is written (PS3.3 A.18 RT Dose IOD; C.8.8.3 RT Dose module; C.7.6.2 Image Plane):

===============================  ============================================================
attribute                        value
===============================  ============================================================
``FrameOfReferenceUID``          the reference CT's (so that viewers overlay dose on the CT)
``StudyInstanceUID``,            the reference CT's when known (the dose belongs to its study),
``PatientID``, ``PatientName``   and with it the CT's study date and time, study ID, accession
                                 number, referring physician, patient's birth date and sex
                                 (empty, as Type 2 allows, where the CT has none)
``ImagePositionPatient``         centre of voxel [0, 0, 0] (mm, LPS) = the grid origin
``ImageOrientationPatient``      the grid's x and y direction cosines (direction columns 0, 1)
``PixelSpacing``                 [row spacing, column spacing] = [spacing_y, spacing_x]
``GridFrameOffsetVector``        k * spacing_z, signed: negative when the grid's z direction
                                 is -(row x column) (a left-handed grid), so that frame k sits
                                 at ImagePositionPatient + offset_k * (row x column)
``DoseUnits`` / ``DoseType``     ``GY`` / ``PHYSICAL`` (dose), ``GY`` / ``ERROR`` (the
                                 absolute 1-sigma statistical uncertainty series)
``DoseSummationType``            ``ADMINISTRATION``: an implementation-defined term, the dose
                                 of one radiopharmaceutical administration (all the decays of
                                 its time-integrated activity); see :data:`DOSE_SUMMATION_TYPE`
pixels                           uint32 (BitsAllocated 32), dose = pixel * DoseGridScaling,
                                 DoseGridScaling = max dose / (2**32 - 1); for DoseType ERROR
                                 int32 (PixelRepresentation 1, as C.8.8.3.4.6 requires for
                                 ERROR) and max / (2**31 - 1)
===============================  ============================================================

The file is written under a temporary name, read back, flushed and moved into place
(:func:`rptdose.io.atomic.atomic_path`).
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

import numpy as np

from rptdose.errors import InputError

RTDOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
#: The largest stored pixel value (uint32).
PIXEL_MAX = 2**32 - 1
#: The largest stored pixel value of an ERROR series: PS3.3 C.8.8.3.4.6 makes Pixel Representation
#: 1 (two's complement, int32) when Dose Type is ERROR and 0 (unsigned) otherwise.
PIXEL_MAX_SIGNED = 2**31 - 1
#: Dose Summation Type (3004,000A), Type 1, Defined Terms (PS3.3 C.8.8.3, Table C.8-39 "RT Dose
#: Module Attributes"). Every standard term is a part of an RT Plan or of a treatment record:
#: PLAN, MULTI_PLAN, FRACTION, BEAM, BRACHY, FRACTION_SESSION, BEAM_SESSION, BRACHY_SESSION and
#: CONTROL_POINT make the Referenced RT Plan Sequence (300C,0002) required (Type 1C), RECORD the
#: Referenced Treatment Record Sequence (3008,0030) (an RT Beams Treatment Record). A dose from a
#: radiopharmaceutical administration has neither an RT Plan nor a beams treatment record, so
#: none of them fits: "PLAN" without the plan it names (what rptdose wrote before) is not
#: conformant, and inventing an RT Plan to reference would be false. Defined Terms "may be
#: extended by implementers to include additional new Values", specified in the conformance
#: statement, not meaning what a defined value means and not "unknown"; such a value "shall not be
#: considered to have an invalid Value" (PS3.5 section 6.3). rptdose's term, within CS (16
#: characters, upper case): ADMINISTRATION = the absorbed dose from one complete
#: radiopharmaceutical administration (every decay of its time-integrated activity). With it
#: neither reference sequence is required: the object is conformant.
DOSE_SUMMATION_TYPE = "ADMINISTRATION"
#: Study- and patient-level attributes copied from the reference CT (one file of its series), so
#: that the dose's General Study and Patient modules agree with the study it joins.
_STUDY_KEYWORDS = ("StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
                   "PatientBirthDate", "PatientSex")
DOSE_TYPES = ("PHYSICAL", "ERROR")


def reference_identity(ct_path: str | os.PathLike | None) -> dict[str, str]:
    """``{FrameOfReferenceUID, StudyInstanceUID, PatientID, PatientName}`` of a DICOM CT folder or
    file (each present only when the CT has exactly one value), and the study-level attributes of
    :data:`_STUDY_KEYWORDS` of one of its CT files of that study (where present); {} for non-DICOM
    images."""
    if ct_path is None:
        return {}
    from rptdose.io.nm import dicom_identity

    ident = dicom_identity(Path(ct_path), modality="CT")
    out = {k: next(iter(ident[k])) for k in ("FrameOfReferenceUID", "StudyInstanceUID", "PatientID", "PatientName")
           if len(ident.get(k, ())) == 1}
    if "StudyInstanceUID" in out:
        out.update(_study_attributes(Path(ct_path), out["StudyInstanceUID"]))
    return out


def _study_attributes(ct_path: Path, study_uid: str) -> dict[str, str]:
    """:data:`_STUDY_KEYWORDS` of the first CT file of ``study_uid`` at ``ct_path`` ({} if none)."""
    import pydicom

    files = sorted(f for f in ct_path.iterdir() if f.is_file()) if ct_path.is_dir() else [ct_path]
    for f in files:
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True,
                                 specific_tags=["Modality", "StudyInstanceUID", *_STUDY_KEYWORDS])
        except Exception:  # not DICOM, unreadable: the identity above came from the readable files
            continue
        if str(ds.get("Modality", "")) == "CT" and str(ds.get("StudyInstanceUID", "")) == study_uid:
            return {k: str(ds.get(k)) for k in _STUDY_KEYWORDS if ds.get(k) not in (None, "")}
    return {}


def _check_geometry(array: np.ndarray, geometry: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if array.ndim != 3:
        raise InputError(f"dose array of shape {array.shape}: expected a 3-D [z, y, x] grid")
    spacing = np.asarray(geometry["spacing_mm"], dtype=np.float64)
    origin = np.asarray(geometry["origin_mm"], dtype=np.float64)
    d = np.asarray(geometry["direction"], dtype=np.float64).reshape(3, 3)
    if spacing.shape != (3,) or not np.all(spacing > 0) or origin.shape != (3,):
        raise InputError(f"dose grid spacing {spacing.tolist()} / origin {origin.tolist()}: expected 3 positive "
                         "spacings and 3 coordinates (x, y, z; mm)")
    row, col, axis = d[:, 0], d[:, 1], d[:, 2]
    normal = np.cross(row, col)
    sign = float(np.dot(normal, axis))
    if abs(abs(sign) - 1.0) > 1e-4:
        raise InputError(f"dose grid direction {d.ravel().round(6).tolist()} (z axis not perpendicular to the "
                         "x and y axes): expected an orthonormal direction as DICOM grids have")
    return spacing, origin, d, np.sign(sign)


def write_rtdose(path: str | os.PathLike, values_gy: np.ndarray, geometry: dict, *, reference: dict | None = None,
                 dose_type: str = "PHYSICAL", series_description: str = "rptdose absorbed dose",
                 series_uid: str | None = None, comment: str = "") -> Path:
    """Write ``values_gy`` [z, y, x] (Gy) on ``geometry`` ({spacing_mm, origin_mm, direction}) as a
    DICOM RT Dose file at ``path``; ``reference`` is :func:`reference_identity` of the CT."""
    import pydicom
    from pydicom.uid import generate_uid
    from pydicom.valuerep import DSfloat

    from rptdose._provenance import rptdose_version
    from rptdose.io.dicom_write import Identity, new_dataset
    from rptdose.io.atomic import atomic_path

    if dose_type not in DOSE_TYPES:
        raise InputError(f"dose_type {dose_type!r}: expected one of {', '.join(DOSE_TYPES)}")
    dose = np.asarray(values_gy, dtype=np.float64)
    spacing, origin, d, sign = _check_geometry(dose, geometry)
    if not np.all(np.isfinite(dose)) or float(dose.min()) < 0:
        raise InputError(f"dose values (min {np.nanmin(dose):.4g}, NaN or infinite present: "
                         f"{not np.all(np.isfinite(dose))}): expected finite doses >= 0 Gy for an RT Dose")
    ref = dict(reference or {})
    nz, ny, nx = dose.shape
    vmax = float(dose.max())
    signed = dose_type == "ERROR"
    top = PIXEL_MAX_SIGNED if signed else PIXEL_MAX
    scaling = vmax / top if vmax > 0 else 1.0

    now = _dt.datetime.now()
    ident = Identity(ref.get("PatientID", ""), ref.get("PatientName", ""), ref.get("StudyInstanceUID") or generate_uid())
    ds = new_dataset(RTDOSE_STORAGE, "RTDOSE", ident, series_uid or generate_uid(),
                     ref.get("FrameOfReferenceUID") or generate_uid(), now, series_description)
    for k in _STUDY_KEYWORDS:                    # the reference CT's study and patient, where known
        if ref.get(k):
            setattr(ds, k, ref[k])
    ds.Manufacturer = "rptdose"
    ds.SoftwareVersions = rptdose_version()
    ds.PositionReferenceIndicator = ""
    ds.InstanceCreationDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.SeriesNumber = 1 if dose_type == "PHYSICAL" else 2
    ds.InstanceNumber = 1
    if comment:
        ds.ImageComments = comment[:10240]
    ds.ImagePositionPatient = [float(v) for v in origin]
    ds.ImageOrientationPatient = [float(v) for v in np.concatenate([d[:, 0], d[:, 1]])]
    ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
    ds.SliceThickness = float(spacing[2])
    ds.GridFrameOffsetVector = [float(sign * k * spacing[2]) for k in range(nz)]
    ds.FrameIncrementPointer = pydicom.tag.Tag("GridFrameOffsetVector")
    ds.NumberOfFrames = nz
    ds.Rows, ds.Columns = ny, nx
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 32
    ds.HighBit = 31
    ds.PixelRepresentation = 1 if signed else 0
    ds.DoseUnits = "GY"
    ds.DoseType = dose_type
    ds.DoseSummationType = DOSE_SUMMATION_TYPE
    # DS holds at most 16 characters: scale with exactly the value stored
    ds.DoseGridScaling = DSfloat(scaling, auto_format=True)
    pixels = np.minimum(np.rint(dose / float(ds.DoseGridScaling)), top).astype("<i4" if signed else "<u4")
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    p = Path(path)
    with atomic_path(p, verify=lambda tmp: _check_written(tmp, p, ds)) as tmp:
        ds.save_as(str(tmp), enforce_file_format=True)
    return p


def _check_written(tmp: Path, path: Path, ds: Any) -> None:
    """The RT Dose file just written reads back with this instance's UID and all its pixels."""
    import warnings

    import pydicom

    from rptdose.errors import OutputWriteError

    try:
        with warnings.catch_warnings():  # a damaged file is an error here, not a warning
            warnings.simplefilter("ignore")
            back = pydicom.dcmread(str(tmp))
            ok = back.SOPInstanceUID == ds.SOPInstanceUID and bytes(back.PixelData) == bytes(ds.PixelData)
    except Exception as exc:  # a truncated file: pydicom raises many kinds
        why = f"does not read back: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    else:
        if ok:
            return
        why = "reads back different from what was written"
    raise OutputWriteError(f"output file '{path}' ({why}): expected the RT Dose just written; is the disk full? "
                           "The file under this name, if any, is unchanged")
