"""DICOM RT Dose writer (pydicom): a dose grid on the CT's frame of reference.

What is written (PS3.3 A.18 RT Dose IOD; C.8.8.3 RT Dose module; C.7.6.2 Image Plane):

===============================  ============================================================
attribute                        value
===============================  ============================================================
``FrameOfReferenceUID``          the reference CT's (so that viewers overlay dose on the CT)
``StudyInstanceUID``,            the reference CT's when known (the dose belongs to its study)
``PatientID``, ``PatientName``
``ImagePositionPatient``         centre of voxel [0, 0, 0] (mm, LPS) = the grid origin
``ImageOrientationPatient``      the grid's x and y direction cosines (direction columns 0, 1)
``PixelSpacing``                 [row spacing, column spacing] = [spacing_y, spacing_x]
``GridFrameOffsetVector``        k * spacing_z, signed: negative when the grid's z direction
                                 is -(row x column) (a left-handed grid), so that frame k sits
                                 at ImagePositionPatient + offset_k * (row x column)
``DoseUnits`` / ``DoseType``     ``GY`` / ``PHYSICAL`` (dose), ``GY`` / ``ERROR`` (the
                                 absolute 1-sigma statistical uncertainty series)
``DoseSummationType``            ``PLAN`` (the dose of one administration)
pixels                           uint32 (BitsAllocated 32), dose = pixel * DoseGridScaling,
                                 DoseGridScaling = max dose / (2**32 - 1)
===============================  ============================================================

The file is written under a temporary name and moved into place (``atomic_path``).
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
DOSE_SUMMATION_TYPE = "PLAN"
DOSE_TYPES = ("PHYSICAL", "ERROR")


def reference_identity(ct_path: str | os.PathLike | None) -> dict[str, str]:
    """``{FrameOfReferenceUID, StudyInstanceUID, PatientID, PatientName}`` of a DICOM CT folder or
    file (each present only when the CT has exactly one value); {} for non-DICOM images."""
    if ct_path is None:
        return {}
    from rptdose.io.nm import dicom_identity

    ident = dicom_identity(Path(ct_path), modality="CT")
    return {k: next(iter(ident[k])) for k in ("FrameOfReferenceUID", "StudyInstanceUID", "PatientID", "PatientName")
            if len(ident.get(k, ())) == 1}


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

    import rptdose
    from rptdose.io.dicom_write import Identity, new_dataset
    from rptdose.quant.outputs import atomic_path

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
    scaling = vmax / PIXEL_MAX if vmax > 0 else 1.0

    now = _dt.datetime.now()
    ident = Identity(ref.get("PatientID", ""), ref.get("PatientName", ""), ref.get("StudyInstanceUID") or generate_uid())
    ds = new_dataset(RTDOSE_STORAGE, "RTDOSE", ident, series_uid or generate_uid(),
                     ref.get("FrameOfReferenceUID") or generate_uid(), now, series_description)
    ds.Manufacturer = "rptdose"
    ds.SoftwareVersions = str(rptdose.__version__)
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
    ds.PixelRepresentation = 0
    ds.DoseUnits = "GY"
    ds.DoseType = dose_type
    ds.DoseSummationType = DOSE_SUMMATION_TYPE
    # DS holds at most 16 characters: scale with exactly the value stored
    ds.DoseGridScaling = DSfloat(scaling, auto_format=True)
    pixels = np.minimum(np.rint(dose / float(ds.DoseGridScaling)), PIXEL_MAX).astype("<u4")
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    p = Path(path)
    with atomic_path(p) as tmp:
        ds.save_as(str(tmp), enforce_file_format=True)
    return p
