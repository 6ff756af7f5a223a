"""Segmentations -> boolean masks [z, y, x] on a reference grid: DICOM RTSTRUCT, DICOM-SEG and
label-map images (NIfTI, MetaImage, NRRD).

===============  ===========================================================================
input            how it becomes a mask
===============  ===========================================================================
RTSTRUCT         each CLOSED_PLANAR contour of an ROI (ROIContourSequence (3006,0039)) is
                 mapped to the reference grid's continuous indices and filled slice by slice
                 (scan-line, even-odd rule: holes and islands on one plane come out right; a
                 voxel is inside when its centre is). Each contour plane stands for the grid
                 slices nearer to it than half the ROI's median plane spacing (at least half a
                 slice). POINT and OPEN contours are ignored. A contour off the grid's slice
                 planes (oblique to its z axis) is refused.
DICOM-SEG        BINARY or FRACTIONAL; frames placed by PlanePositionSequence on the SEG's own
                 grid, one volume per segment (SegmentSequence SegmentLabel), then resampled
                 onto the reference grid (linear interpolation of the fraction, >= 0.5 inside)
label map        an integer image (SimpleITK reads it); resampled onto the reference grid by
                 nearest neighbour; ``names`` maps region names to label values
===============  ===========================================================================

``names``: for RTSTRUCT and SEG an optional {region name: ROI name / segment label} that selects
and renames; without it every ROI/segment that has contours/frames is read under its own name.
For a label map it is required: {region name: label value}. The frame of reference of an
RTSTRUCT (ReferencedFrameOfReferenceUID) or a SEG (FrameOfReferenceUID) is checked against the
expected one when given. Every failure raises :class:`~rptdose.errors.InputError` naming the
file, the tag or the name, and what was expected.

Region names (:func:`check_region_names`) must be non-empty, without control characters, and
distinct once made into file names (:func:`rptdose.quant.outputs.safe_name`, ignoring case):
``liver part`` and ``liver/part``, or ``Liver`` and ``liver``, would write over each other's
files and are refused when the segmentation is read, before any transport. Any other character
is kept: the HDF5 outputs percent-encode the names (:func:`rptdose.io.hdf5.h5_name`) and the CSV
writers escape cells that a spreadsheet would run as formulas.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rptdose.errors import InputError
from rptdose.io.nm import first_item, get

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
#: A contour is planar on the grid when its points' slice indices differ by at most this (slices).
PLANE_TOL_SLICES = 0.05
#: A SEG frame must sit this close (in slices) to a slice of the SEG's grid.
SEG_SLICE_TOL = 0.05


def _read(path: Any, what: str) -> tuple[Path, Any]:
    import pydicom

    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"{what} {path!r} (of type {type(path).__name__}): expected a file path")
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} '{p}' ({'is a folder' if p.is_dir() else 'does not exist'}): expected a DICOM file")
    try:
        return p, pydicom.dcmread(str(p))
    except Exception as exc:
        raise InputError(f"{what} '{p}' (not a readable DICOM file: {exc}): expected a DICOM {what.upper()} "
                         "file") from None


def _grid(reference: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int, int]]:
    origin = np.array(reference.GetOrigin(), dtype=np.float64)
    direction = np.array(reference.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = np.array(reference.GetSpacing(), dtype=np.float64)
    nx, ny, nz = reference.GetSize()
    return origin, direction, spacing, (nz, ny, nx)


def physical_to_index(points: np.ndarray, reference: Any) -> np.ndarray:
    """Continuous (i, j, k) = (x, y, z) indices of physical points (N, 3) on the reference grid."""
    origin, direction, spacing, _ = _grid(reference)
    return ((points - origin) @ np.linalg.inv(direction).T) / spacing


def fill_polygon(u: np.ndarray, v: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Voxels [y, x] of a (ny, nx) slice whose centres (integer indices) are inside the polygon
    with vertices (u = x index, v = y index): even-odd rule, scan lines through the centres."""
    ny, nx = shape
    out = np.zeros((ny, nx), dtype=bool)
    if len(u) < 3:
        return out
    u0, v0 = u, v
    u1, v1 = np.roll(u, -1), np.roll(v, -1)
    j_lo, j_hi = max(int(np.ceil(v.min())), 0), min(int(np.floor(v.max())), ny - 1)
    if j_hi < j_lo:
        return out
    rows = np.arange(j_lo, j_hi + 1, dtype=np.float64)[:, None]
    crosses = ((v0 <= rows) & (rows < v1)) | ((v1 <= rows) & (rows < v0))
    dv = np.where(v1 != v0, v1 - v0, 1.0)
    x = u0 + (rows - v0) * (u1 - u0) / dv
    r_idx, e_idx = np.nonzero(crosses)
    cols = np.clip(np.ceil(x[r_idx, e_idx]), 0, nx).astype(np.int64)
    toggles = np.zeros((rows.shape[0], nx + 1), dtype=np.int32)
    np.add.at(toggles, (r_idx, cols), 1)
    out[j_lo:j_hi + 1] = (np.cumsum(toggles[:, :nx], axis=1) % 2).astype(bool)
    return out


def check_region_names(names: Any, where: str) -> None:
    """Refuse region names that cannot be told apart in the outputs: empty, with control
    characters, or equal to another once made a file name (``safe_name``, case ignored)."""
    from rptdose.quant.outputs import safe_name

    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{where} (region name {name!r}): expected a non-empty region name")
        bad = [c for c in name if ord(c) < 0x20 or ord(c) == 0x7F]
        if bad:
            raise InputError(f"{where} (region name {name!r} holds control characters {''.join(bad)!r}): expected "
                             "printable region names; rename it through segmentation.names")
        key = safe_name(name).lower()
        if key in seen:
            raise InputError(f"{where} (region names {seen[key]!r} and {name!r} both become the file name "
                             f"'{safe_name(name)}' (punctuation and case aside they are the same)): expected region "
                             "names that differ in letters or digits; select or rename them through "
                             "segmentation.names")
        seen[key] = name


def _select(available: dict[str, Any], names: Mapping[str, str] | None, what: str, path: Path,
            label: str) -> dict[str, str]:
    """{region name: name in the file}."""
    if names is None:
        return {n: n for n in available}
    out = {}
    for region, name in names.items():
        if not isinstance(name, str):
            raise InputError(f"segmentation.names.{region} {name!r} (not a string): expected the {label} in '{path}'")
        if name not in available:
            raise InputError(f"segmentation.names.{region} {name!r} (no {label} of that name in {what} '{path}'): "
                             f"expected one of {sorted(available)}")
        out[region] = name
    return out


# ---- RTSTRUCT -------------------------------------------------------------------------------

def read_rtstruct(path: str | os.PathLike, reference: Any, names: Mapping[str, str] | None = None,
                  frame_of_reference_uid: str | None = None) -> dict[str, np.ndarray]:
    """Rasterise an RTSTRUCT's ROIs onto ``reference`` (a SimpleITK image: its grid only).

    Returns {region name: bool [z, y, x]}. ROIs without closed planar contours are left out
    (unless asked for in ``names``: an error).
    """
    p, ds = _read(path, "rtstruct")
    where = f"rtstruct '{p}'"
    sop = str(get(ds, "SOPClassUID") or "")
    if sop != RTSTRUCT_SOP_CLASS or str(get(ds, "Modality") or "") != "RTSTRUCT":
        raise InputError(f"{where} (SOPClassUID (0008,0016) {sop or 'absent'}, Modality (0008,0060) "
                         f"{get(ds, 'Modality') or 'absent'}): expected an RT Structure Set (RTSTRUCT)")
    rois = {}
    for item in get(ds, "StructureSetROISequence") or []:
        number, name = get(item, "ROINumber"), get(item, "ROIName")
        if number is None or name is None:
            raise InputError(f"{where} (StructureSetROISequence (3006,0020) item without ROINumber or ROIName): "
                             "expected both")
        rois[int(number)] = (str(name).strip(), get(item, "ReferencedFrameOfReferenceUID"))
    contours: dict[str, list[np.ndarray]] = {}
    for item in get(ds, "ROIContourSequence") or []:
        ref = get(item, "ReferencedROINumber")
        if ref is None or int(ref) not in rois:
            raise InputError(f"{where} (ROIContourSequence (3006,0039) item with ReferencedROINumber {ref}: no such "
                             "ROI in StructureSetROISequence (3006,0020)): expected a consistent structure set")
        name = rois[int(ref)][0]
        for c in get(item, "ContourSequence") or []:
            if str(get(c, "ContourGeometricType") or "").upper() != "CLOSED_PLANAR":
                continue
            data = get(c, "ContourData")
            if data is None:
                continue
            pts = np.array([float(v) for v in data], dtype=np.float64)
            if pts.size % 3 or pts.size < 9:
                raise InputError(f"{where} (ROI {name!r}: ContourData (3006,0050) with {pts.size} values): expected "
                                 "x, y, z triplets of at least 3 points")
            contours.setdefault(name, []).append(pts.reshape(-1, 3))
    counts: dict[str, int] = {}
    for name, _ in rois.values():
        counts[name] = counts.get(name, 0) + 1
    available = {n: c for n, c in contours.items()}
    selected = _select(available, names, "rtstruct", p, "ROIName (3006,0026)")
    for name in selected.values():
        if counts.get(name, 0) > 1:
            raise InputError(f"{where} (ROIName (3006,0026) {name!r} used by {counts[name]} ROIs): expected "
                             "unique ROI names (or select one through segmentation.names)")
    check_region_names(selected, where)
    if frame_of_reference_uid is not None:
        for name, for_uid in rois.values():
            if name in selected.values() and for_uid is not None and str(for_uid) != frame_of_reference_uid:
                raise InputError(f"{where} (ROI {name!r}: ReferencedFrameOfReferenceUID (3006,0024) {for_uid}): "
                                 f"expected the reference CT's FrameOfReferenceUID {frame_of_reference_uid}")
    masks = {}
    for region, name in selected.items():
        masks[region] = _rasterise(contours[name], reference, f"{where} ROI {name!r}")
    return masks


def _rasterise(contours: list[np.ndarray], reference: Any, where: str) -> np.ndarray:
    _, _, _, shape = _grid(reference)
    nz, ny, nx = shape
    planes: dict[float, list[np.ndarray]] = {}
    for pts in contours:
        idx = physical_to_index(pts, reference)
        k = idx[:, 2]
        if float(k.max() - k.min()) > PLANE_TOL_SLICES:
            raise InputError(f"{where} (a contour spans {float(k.max() - k.min()):.2f} slices of the reference grid): "
                             "expected contours in the reference CT's axial slice planes (an oblique structure set "
                             "or another frame of reference?)")
        planes.setdefault(round(float(k.mean()), 3), []).append(idx)
    mask = np.zeros(shape, dtype=bool)
    if not planes:
        return mask
    positions = np.array(sorted(planes))
    half = 0.5 * float(np.median(np.diff(positions))) if len(positions) > 1 else 0.5
    half = max(half, 0.5)
    for kk in range(nz):
        d = np.abs(positions - kk)
        i = int(np.argmin(d))
        inside_range = positions[0] - 1e-6 <= kk <= positions[-1] + 1e-6
        if d[i] > half + 1e-6 or (not inside_range and d[i] >= half - 1e-6):
            continue  # in a gap between contoured planes, or beyond the end planes' slabs
        plane = np.zeros((ny, nx), dtype=bool)
        for idx in planes[float(positions[i])]:
            plane ^= fill_polygon(idx[:, 0], idx[:, 1], (ny, nx))
        mask[kk] = plane
    return mask


# ---- DICOM-SEG ------------------------------------------------------------------------------

def read_seg(path: str | os.PathLike, reference: Any, names: Mapping[str, str] | None = None,
             frame_of_reference_uid: str | None = None) -> dict[str, np.ndarray]:
    """The segments of a DICOM-SEG as masks on ``reference``'s grid: {region name: bool [z, y, x]}."""
    import SimpleITK as sitk

    from rptdose.io.nm import _orientation, _pixel_spacing, _vec

    p, ds = _read(path, "seg")
    where = f"seg '{p}'"
    sop = str(get(ds, "SOPClassUID") or "")
    if sop != SEG_SOP_CLASS or str(get(ds, "Modality") or "") != "SEG":
        raise InputError(f"{where} (SOPClassUID (0008,0016) {sop or 'absent'}, Modality (0008,0060) "
                         f"{get(ds, 'Modality') or 'absent'}): expected a DICOM Segmentation (SEG)")
    for_uid = get(ds, "FrameOfReferenceUID")
    if frame_of_reference_uid is not None and for_uid is not None and str(for_uid) != frame_of_reference_uid:
        raise InputError(f"{where} (FrameOfReferenceUID (0020,0052) {for_uid}): expected the reference CT's "
                         f"FrameOfReferenceUID {frame_of_reference_uid}")
    seg_type = str(get(ds, "SegmentationType") or "").upper()
    if seg_type not in ("BINARY", "FRACTIONAL"):
        raise InputError(f"{where} (SegmentationType (0062,0001) {seg_type or 'absent'}): expected BINARY or "
                         "FRACTIONAL")
    labels = {}
    for item in get(ds, "SegmentSequence") or []:
        number = get(item, "SegmentNumber")
        if number is None:
            raise InputError(f"{where} (SegmentSequence (0062,0002) item without SegmentNumber (0062,0004)): "
                             "expected one")
        labels[int(number)] = str(get(item, "SegmentLabel") or f"segment_{int(number)}").strip()
    if not labels:
        raise InputError(f"{where} (SegmentSequence (0062,0002) empty): expected at least one segment")
    per_frame = get(ds, "PerFrameFunctionalGroupsSequence")
    n = int(get(ds, "NumberOfFrames") or 1)
    if per_frame is None or len(per_frame) != n:
        raise InputError(f"{where} (PerFrameFunctionalGroupsSequence (5200,9230) with "
                         f"{0 if per_frame is None else len(per_frame)} items for {n} frames): expected one per frame")
    shared = first_item(ds, "SharedFunctionalGroupsSequence")
    po = first_item(shared, "PlaneOrientationSequence") if shared is not None else None
    if po is None:
        po = first_item(per_frame[0], "PlaneOrientationSequence")
    if po is None or get(po, "ImageOrientationPatient") is None:
        raise InputError(f"{where} (PlaneOrientationSequence (0020,9116) ImageOrientationPatient absent): expected the "
                         "frames' orientation")
    row, col, normal = _orientation(_vec(po.ImageOrientationPatient, 6, where, "ImageOrientationPatient (0020,0037)"),
                                    where)
    pixel_spacing = _pixel_spacing(ds, where)
    seg_numbers, positions = [], []
    for i, f in enumerate(per_frame):
        sid = first_item(f, "SegmentIdentificationSequence")
        pp = first_item(f, "PlanePositionSequence")
        if sid is None or get(sid, "ReferencedSegmentNumber") is None:
            raise InputError(f"{where} (frame {i + 1}: SegmentIdentificationSequence (0062,000A) "
                             "ReferencedSegmentNumber absent): expected the frame's segment")
        if pp is None or get(pp, "ImagePositionPatient") is None:
            raise InputError(f"{where} (frame {i + 1}: PlanePositionSequence (0020,9113) ImagePositionPatient "
                             "absent): expected the frame's position")
        number = int(sid.ReferencedSegmentNumber)
        if number not in labels:
            raise InputError(f"{where} (frame {i + 1}: ReferencedSegmentNumber {number} not in SegmentSequence): "
                             f"expected one of {sorted(labels)}")
        seg_numbers.append(number)
        positions.append(_vec(pp.ImagePositionPatient, 3, where, "ImagePositionPatient (0020,0032)"))
    try:
        frames = np.asarray(ds.pixel_array, dtype=np.float64)
    except Exception as exc:
        raise InputError(f"{where} (PixelData (7FE0,0010) unreadable: {exc}): expected segmentation frames") from None
    if frames.ndim == 2:
        frames = frames[None]
    if seg_type == "FRACTIONAL":
        frames = frames / float(get(ds, "MaximumFractionalValue") or 255)
    positions_arr = np.array(positions)
    along = positions_arr @ normal
    in_plane = positions_arr - along[:, None] * normal[None, :]
    if np.max(np.linalg.norm(in_plane - in_plane[0], axis=1)) > 0.01 + 0.01 * float(pixel_spacing.min()):
        raise InputError(f"{where} (frames with different in-plane ImagePositionPatient): expected all frames on "
                         "one grid")
    unique = np.unique(np.round(along, 3))
    pm = first_item(shared, "PixelMeasuresSequence") if shared is not None else None
    step = get(pm, "SpacingBetweenSlices") if pm is not None else None
    if step is None and pm is not None:
        step = get(pm, "SliceThickness")
    if len(unique) > 1:
        step = float(step) if step is not None else float(np.min(np.diff(unique)))
    else:
        step = float(step) if step is not None else 1.0
    step = abs(step)
    k = (along - along.min()) / step
    if np.max(np.abs(k - np.round(k))) > SEG_SLICE_TOL:
        raise InputError(f"{where} (frame positions not on a regular grid of {step:g} mm slices): expected frames "
                         "spaced by SpacingBetweenSlices (0018,0088)")
    k = np.round(k).astype(int)
    nz = int(k.max()) + 1
    origin = in_plane[0] + along.min() * normal
    available = {labels[s]: s for s in sorted(set(seg_numbers))}
    for s in labels:
        available.setdefault(labels[s], s)
    selected = _select(available, names, "seg", p, "SegmentLabel (0062,0005)")
    for label in selected.values():
        numbers = sorted(s for s, lab in labels.items() if lab == label)
        if len(numbers) > 1:
            raise InputError(f"{where} (SegmentLabel (0062,0005) {label!r} used by segments {numbers}): expected "
                             "unique segment labels (or select one through segmentation.names)")
    check_region_names(selected, where)
    masks = {}
    for region, label in selected.items():
        number = available[label]
        vol = np.zeros((nz, frames.shape[1], frames.shape[2]), dtype=np.float32)
        for i in np.flatnonzero(np.array(seg_numbers) == number):
            vol[k[i]] = np.maximum(vol[k[i]], frames[i])
        image = sitk.GetImageFromArray(vol)
        image.SetSpacing((float(pixel_spacing[1]), float(pixel_spacing[0]), step))
        image.SetOrigin(tuple(float(v) for v in origin))
        image.SetDirection(tuple(float(v) for v in np.column_stack([row, col, normal]).ravel()))
        _check_overlap(image, reference, where)
        masks[region] = resample_fraction(image, reference) >= 0.5
    return masks


# ---- label maps -----------------------------------------------------------------------------

def read_label_map(path: str | os.PathLike, reference: Any, names: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Masks from a label image (NIfTI, ...) on ``reference``'s grid: {region: label == value}."""
    import SimpleITK as sitk

    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"labels {path!r} (of type {type(path).__name__}): expected a label image file")
    p = Path(path)
    where = f"labels '{p}'"
    if not p.is_file():
        raise InputError(f"{where} ({'is a folder' if p.is_dir() else 'does not exist'}): expected a label image "
                         "file (NIfTI .nii/.nii.gz, MetaImage, NRRD)")
    if not names:
        raise InputError(f"segmentation.names (missing or empty for {where}): expected a table of region name = "
                         "label value, e.g. liver = 1")
    try:
        image = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise InputError(f"{where} (unreadable by SimpleITK: {str(exc).strip().splitlines()[-1]}): expected a label "
                         "image file") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{where} ({image.GetDimension()}-D, {image.GetNumberOfComponentsPerPixel()} components): "
                         "expected a 3-D scalar label image")
    values = sitk.GetArrayViewFromImage(image)
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise InputError(f"{where} (non-integer values): expected integer labels")
    present = set(np.unique(values).astype(np.int64).tolist())
    for region, label in names.items():
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or int(label) < 1:
            raise InputError(f"segmentation.names.{region} {label!r} (not a positive integer): expected the label "
                             f"value of {region!r} in {where}")
        if int(label) not in present:
            shown = sorted(present - {0})
            raise InputError(f"segmentation.names.{region} {int(label)} (no voxel has this label in {where}): "
                             f"expected one of the labels present, {shown[:20]}")
    check_region_names(names, where)
    _check_overlap(image, reference, where)
    resampled = sitk.Resample(sitk.Cast(image, sitk.sitkInt32) if values.dtype.kind == "f" else image, reference,
                              sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkInt32)
    lab = sitk.GetArrayFromImage(resampled)
    return {region: lab == int(label) for region, label in names.items()}


# ---- helpers ----------------------------------------------------------------------------------

def _corners(image: Any) -> np.ndarray:
    nx, ny, nz = image.GetSize()
    pts = []
    for i in (-0.5, nx - 0.5):
        for j in (-0.5, ny - 0.5):
            for k in (-0.5, nz - 0.5):
                pts.append(image.TransformContinuousIndexToPhysicalPoint((i, j, k)))
    return np.array(pts)


def _check_overlap(image: Any, reference: Any, where: str) -> None:
    a, b = _corners(image), _corners(reference)
    lo, hi = np.maximum(a.min(0), b.min(0)), np.minimum(a.max(0), b.max(0))
    if np.any(hi <= lo):
        raise InputError(f"{where} (its volume does not overlap the reference CT: bounds {a.min(0).round(1).tolist()} "
                         f"to {a.max(0).round(1).tolist()} mm vs {b.min(0).round(1).tolist()} to "
                         f"{b.max(0).round(1).tolist()} mm): expected a segmentation in the reference CT's frame")


def resample_fraction(image: Any, reference: Any) -> np.ndarray:
    """An image of fractions (0..1) resampled onto ``reference``'s grid (linear), [z, y, x] float32."""
    import SimpleITK as sitk

    out = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), reference, sitk.Transform(), sitk.sitkLinear, 0.0,
                        sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def resample_mask(mask: np.ndarray, from_image: Any, to_image: Any) -> np.ndarray:
    """A boolean mask on ``from_image``'s grid -> ``to_image``'s grid (linear fraction >= 0.5)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(mask, dtype=np.float32))
    img.CopyInformation(from_image)
    return resample_fraction(img, to_image) >= 0.5


def segmentation_identity(path: str | os.PathLike) -> dict[str, set[str]]:
    """{"PatientID", "FrameOfReferenceUID"}: value sets of a DICOM RTSTRUCT/SEG (empty otherwise)."""
    from rptdose.io.nm import read_header

    out: dict[str, set[str]] = {"PatientID": set(), "FrameOfReferenceUID": set()}
    p = Path(path)
    if not p.is_file():
        return out
    ds = read_header(p)
    if ds is None:
        return out
    if get(ds, "PatientID") is not None:
        out["PatientID"].add(str(ds.PatientID).strip())
    if get(ds, "FrameOfReferenceUID") is not None:
        out["FrameOfReferenceUID"].add(str(ds.FrameOfReferenceUID).strip())
    for item in get(ds, "ReferencedFrameOfReferenceSequence") or []:
        if get(item, "FrameOfReferenceUID") is not None:
            out["FrameOfReferenceUID"].add(str(item.FrameOfReferenceUID).strip())
    return out
