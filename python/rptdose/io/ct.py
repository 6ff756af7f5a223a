"""Reading a CT (in HU) from a SimpleITK image, an image file or a DICOM CT folder.

==========================  ================================================================
input                       how it is read
==========================  ================================================================
``SimpleITK.Image``         used as it is (3-D, one component)
a file                      ``SimpleITK.ReadImage``: MetaImage (.mha/.mhd), NIfTI (.nii,
                            .nii.gz), NRRD, or a single multi-frame (Enhanced) DICOM CT file;
                            a DICOM file must be a CT (below); a single-slice DICOM file is
                            refused (give the folder that holds the whole series)
a folder                    the DICOM CT series in it, with ``SimpleITK.ImageSeriesReader``
                            (GDCM sorts the slices and applies RescaleSlope/Intercept); only
                            CT image storage SOP classes with Modality CT
==========================  ================================================================

A DICOM CT is recognised by its SOP class (CT, Enhanced CT or Legacy Converted Enhanced CT
Image Storage) and Modality (0008,0060) CT: a file that states another SOP class or modality
(NM, PT, secondary capture, ...) or neither is refused. Whatever the input, the result must be
a volume: at least :data:`MIN_VOXELS_PER_AXIS` voxels along each axis (one slice is not a CT).

The result is a 3-D float32 image in HU whose geometry (spacing, origin, direction; x, y, z
order) is the CT's. For a DICOM series the slice geometry is checked first, from the headers
(pydicom, no pixel data): every slice must share ImageOrientationPatient, the gantry must not be
tilted, slice positions must be distinct and uniformly spaced, and the stack must not be sheared.
SimpleITK would otherwise read such a series onto a wrong, regular grid.
Every failure raises :class:`~rptdose.errors.InputError` naming the path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rptdose._validate import describe
from rptdose.errors import InputError

#: Relative tolerance on the spacing between consecutive slices, and the absolute floor (mm).
SLICE_SPACING_RTOL = 0.01
SLICE_SPACING_ATOL_MM = 0.01
#: Tolerance on direction cosines shared by all slices, and on the gantry tilt (degrees).
ORIENTATION_TOL = 1e-4
TILT_TOL_DEG = 0.01
#: Fewest voxels along each axis of a CT volume (a single slice is not a CT).
MIN_VOXELS_PER_AXIS = 2

#: DICOM SOP classes that hold CT images (CT, Enhanced CT, Legacy Converted Enhanced CT).
CT_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
                  "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
                  "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage"}

_HEADER_TAGS = ["SOPClassUID", "Modality", "ImageOrientationPatient", "ImagePositionPatient", "GantryDetectorTilt",
                "SeriesInstanceUID", "SeriesDescription", "NumberOfFrames"]


def read_ct(ct: Any, series_uid: str | None = None) -> Any:
    """Read a CT in HU as a 3-D float32 SimpleITK image.

    Parameters
    ----------
    ct : SimpleITK.Image, str or os.PathLike
        An image, an image file, or a folder holding a DICOM CT series.
    series_uid : str, optional
        The SeriesInstanceUID to read when the folder holds several CT series.
    """
    import SimpleITK as sitk

    if isinstance(ct, sitk.Image):
        return _as_hu_image(ct, "ct (SimpleITK image)")
    if not isinstance(ct, (str, os.PathLike)):
        raise InputError(f"ct {describe(ct)} (of type {type(ct).__name__}): expected a SimpleITK image, "
                         "an image file or a DICOM CT folder")
    path = Path(ct)
    if not path.exists():
        raise InputError(f"ct '{path}' (does not exist): expected a CT image file or a DICOM CT folder")
    if path.is_dir():
        image = _read_dicom_folder(path, series_uid)
    else:
        _check_dicom_file(path)
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            raise InputError(f"ct '{path}' (unreadable by SimpleITK: {_first_line(exc)}): expected a CT image "
                             "file (MetaImage, NIfTI, NRRD, DICOM) or a DICOM CT folder") from None
    return _as_hu_image(image, f"ct '{path}'")


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # SimpleITK errors start with a source location; the last line is the useful one
    return lines[-1] if lines else type(exc).__name__


def _as_hu_image(image: Any, what: str) -> Any:
    import SimpleITK as sitk

    if image.GetDimension() != 3:
        raise InputError(f"{what} ({image.GetDimension()}-D image, size {image.GetSize()}): expected a 3-D CT")
    if min(image.GetSize()) < MIN_VOXELS_PER_AXIS:
        raise InputError(f"{what} (size {image.GetSize()} voxels (x, y, z): a single slice or line): expected a "
                         f"CT volume of at least {MIN_VOXELS_PER_AXIS} voxels along each axis; for DICOM give the "
                         "folder of the whole series")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{what} ({image.GetNumberOfComponentsPerPixel()} components per pixel): "
                         "expected a scalar CT in HU")
    if image.GetPixelID() != sitk.sitkFloat32:
        try:
            image = sitk.Cast(image, sitk.sitkFloat32)
        except RuntimeError as exc:
            raise InputError(f"{what} (pixel type {image.GetPixelIDTypeAsString()} not convertible: "
                             f"{_first_line(exc)}): expected a real-valued CT in HU") from None
    hu = sitk.GetArrayViewFromImage(image)
    if not np.all(np.isfinite(hu)):
        raise InputError(f"{what} (contains NaN or infinite values): expected finite CT numbers (HU)")
    return image


def _check_dicom_file(path: Path) -> None:
    """A single file given as the CT: if it is DICOM, it must be a CT (SOP class, Modality) and
    hold a volume (a multi-frame object), not one slice. Non-DICOM files pass (SimpleITK reads them)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except InvalidDicomError:
        return  # not DICOM (NIfTI, MetaImage, NRRD, ...)
    except Exception as exc:  # pydicom raises several types for broken files
        raise InputError(f"ct '{path}' (unreadable DICOM file: {exc}): expected a CT image file or a DICOM CT "
                         "folder") from None
    check_dicom_slices([str(path)], where=f"ct '{path}'")
    frames = getattr(ds, "NumberOfFrames", None)
    try:
        n = int(frames) if frames not in (None, "") else 1
    except (TypeError, ValueError):
        n = 1
    if n < MIN_VOXELS_PER_AXIS:
        raise InputError(f"ct '{path}' (a single DICOM CT slice, NumberOfFrames (0028,0008) "
                         f"{'absent' if frames in (None, '') else n}): expected a CT volume: the folder that holds "
                         f"the whole series ('{path.parent}'), or a multi-frame (Enhanced) CT file")


@contextlib.contextmanager
def _quiet_itk() -> Iterator[None]:
    """Silence ITK's warnings on stderr (e.g. "No Series were found"); our errors say it better."""
    import SimpleITK as sitk

    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def _read_dicom_folder(folder: Path, series_uid: str | None) -> Any:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    try:
        with _quiet_itk():
            uids = list(reader.GetGDCMSeriesIDs(str(folder)))
    except RuntimeError as exc:
        raise InputError(f"ct '{folder}' (DICOM folder unreadable: {_first_line(exc)}): expected a folder "
                         "with a DICOM CT series") from None
    if not uids:
        raise InputError(f"ct '{folder}' (no DICOM image series found): expected a folder with a DICOM CT series")

    with _quiet_itk():
        files_by_uid = {uid: list(reader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in uids}
    if series_uid is not None:
        if series_uid not in files_by_uid:
            raise InputError(f"series_uid {series_uid!r} (not in '{folder}'): expected one of {', '.join(uids)}")
        uid = series_uid
    else:
        modality = {u: _header(f[0]).get("Modality", "") for u, f in files_by_uid.items() if f}
        ct_uids = [u for u in uids if modality.get(u, "") == "CT"]
        if len(uids) == 1:
            uid = uids[0]
        elif len(ct_uids) == 1:
            uid = ct_uids[0]
        else:
            listing = "; ".join(f"{u} ({modality.get(u) or '?'}, {len(files_by_uid[u])} files)" for u in uids)
            raise InputError(f"ct '{folder}' ({len(uids)} DICOM series, {len(ct_uids)} of them CT): expected one "
                             f"CT series, or pass series_uid= one of: {listing}")
    files = files_by_uid[uid]
    if not files:
        raise InputError(f"ct '{folder}' (series {uid} has no files): expected a DICOM CT series")
    check_dicom_slices(files, where=f"ct '{folder}'")
    if len(files) == 1:  # one file: a multi-frame (Enhanced) CT, or a lone slice
        _check_dicom_file(Path(files[0]))
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"ct '{folder}' (DICOM series {uid} unreadable: {_first_line(exc)}): expected a "
                         "readable DICOM CT series") from None


def _header(file: str) -> dict:
    """The few header fields the checks need (pydicom, no pixel data)."""
    import pydicom

    try:
        ds = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except Exception as exc:  # pydicom raises several types for broken files
        raise InputError(f"DICOM file '{file}' (unreadable: {exc}): expected a DICOM CT slice") from None
    out: dict[str, Any] = {}
    for tag in _HEADER_TAGS:
        value = getattr(ds, tag, None)
        if value is not None and value != "":
            out[tag] = value
    return out


def check_dicom_slices(files: list[str], where: str = "DICOM series") -> None:
    """Refuse a series that SimpleITK would put on a wrong regular grid.

    Checks (from the headers): SOP class is a CT image storage and Modality is CT (at least one of
    them stated); one ImageOrientationPatient for all slices; no gantry tilt (GantryDetectorTilt, and no shear of the slice positions within the slice plane);
    distinct, uniformly spaced slice positions.
    """
    headers = [_header(f) for f in files]
    classes = {str(h.get("SOPClassUID", "")) for h in headers} - {""}
    other = sorted(classes - set(CT_SOP_CLASSES))
    if other:
        import pydicom

        names = ", ".join(f"{pydicom.uid.UID(u).name}" for u in other)
        mods = sorted({str(h.get("Modality", "")) for h in headers} - {""})
        said = f", Modality (0008,0060) {', '.join(mods)}" if mods else ""
        raise InputError(f"{where} (SOPClassUID (0008,0016) {names}{said}): expected CT Image Storage; "
                         "NM/SPECT, PET, secondary captures and other image types carry no CT geometry and HU "
                         "calibration one can trust")
    modalities = {str(h.get("Modality", "")) for h in headers} - {""}
    if modalities and modalities != {"CT"}:
        raise InputError(f"{where} (modality {', '.join(sorted(modalities))}): expected a CT series "
                         "(Modality CT); SPECT/PET/MR images are not CT")
    for f, h in zip(files, headers):
        if not h.get("SOPClassUID") and not h.get("Modality"):
            raise InputError(f"{where} ('{Path(f).name}' has neither SOPClassUID (0008,0016) nor Modality "
                             "(0008,0060)): expected a DICOM CT (CT Image Storage, Modality CT)")
    for f, h in zip(files, headers):
        tilt = h.get("GantryDetectorTilt")
        if tilt is not None and abs(float(tilt)) > TILT_TOL_DEG:
            raise InputError(f"{where} (gantry tilt {float(tilt):g} degrees in '{Path(f).name}'): expected an "
                             "untilted CT; resample the series onto a regular grid first")
    if len(files) < 2 or any("ImagePositionPatient" not in h or "ImageOrientationPatient" not in h
                             for h in headers):
        return  # a single slice or a multi-frame file: SimpleITK handles the geometry
    iop = np.array([[float(v) for v in h["ImageOrientationPatient"]] for h in headers])
    if iop.shape[1] != 6:
        raise InputError(f"{where} (ImageOrientationPatient with {iop.shape[1]} values): expected 6")
    if np.max(np.abs(iop - iop[0])) > ORIENTATION_TOL:
        raise InputError(f"{where} (slices with different ImageOrientationPatient): expected one orientation "
                         "for the whole series")
    row, col = iop[0, :3], iop[0, 3:]
    ipp = np.array([[float(v) for v in h["ImagePositionPatient"]] for h in headers])
    check_slice_stack(ipp, np.cross(row, col), where)


def check_slice_stack(positions: np.ndarray, normal: np.ndarray, where: str) -> tuple[np.ndarray, float]:
    """The order of slices at ``positions`` (ImagePositionPatient, [n, 3] mm) along the slice
    ``normal`` and their spacing (mm), after checking that they lie on a regular grid: distinct
    positions, uniform spacing, and no shear within the slice plane (a gantry tilt). InputError
    naming ``where`` otherwise. Shared by the CT and the NM/PET readers; one slice: spacing 1."""
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    if len(order) < 2:
        return order, 1.0
    positions, along = positions[order], along[order]
    steps = np.diff(along)
    tol = SLICE_SPACING_ATOL_MM
    if np.any(steps <= tol):
        i = int(np.argmin(steps))
        raise InputError(f"{where} (two slices at the same ImagePositionPatient (0020,0032), {along[i]:.3f} mm "
                         "along the slice normal): expected one slice per position (duplicated or mixed series?)")
    spacing = float(np.median(steps))
    if np.max(np.abs(steps - spacing)) > tol + SLICE_SPACING_RTOL * spacing:
        raise InputError(f"{where} (non-uniform slice spacing {steps.min():.3f} to {steps.max():.3f} mm from "
                         "ImagePositionPatient (0020,0032); missing slices?): expected uniformly spaced slices; "
                         "resample the series first")
    offsets = np.diff(positions, axis=0) - steps[:, None] * normal[None, :]
    shear = float(np.max(np.linalg.norm(offsets, axis=1)))
    if shear > tol + SLICE_SPACING_RTOL * spacing:
        angle = float(np.degrees(np.arctan2(shear, spacing)))
        raise InputError(f"{where} (slice positions (0020,0032) sheared by {angle:.2f} degrees, not along the "
                         "slice normal: a gantry tilt): expected slices on a regular grid; resample the series "
                         "onto a regular grid first")
    return order, spacing
