"""Dose maps from files and objects, on a common grid.

=====================================  =====================================================
input                                  read as
=====================================  =====================================================
``SimulationResult``, ``DoseResult``   dose, rel_uncertainty (None if absent / all NaN),
                                       region_means, grid
``*.h5`` / ``*.hdf5``                  an rptdose result file (``rd.load_result``); from the
                                       ``dose.h5`` of ``rptdose run`` also the region masks
                                       (group ``masks/``) and the body outline
                                       (``body_mask``), see :func:`read_h5_masks`
DICOM RT Dose file (or a folder        pixel data x ``DoseGridScaling`` (``DoseUnits`` GY, or
holding exactly one)                   CGY converted), grid from ``ImagePositionPatient``,
                                       ``ImageOrientationPatient``, ``PixelSpacing`` and
                                       ``GridFrameOffsetVector`` (read with pydicom)
NIfTI, MetaImage, NRRD                 SimpleITK ``ReadImage`` (the values are taken as Gy)
``SimpleITK.Image``                    its values (Gy) and grid
numpy array                            on the other input's grid (or ``spacing_mm``)
=====================================  =====================================================

DICOM RT Dose geometry (PS3.3 C.8.8.3, C.7.6.2)::

    row cosines  r = ImageOrientationPatient[0:3]   direction of increasing column (x index)
    col cosines  c = ImageOrientationPatient[3:6]   direction of increasing row (y index)
    normal       n = r x c                          direction of the frames (z index)
    spacing      (PixelSpacing[1], PixelSpacing[0], uniform step of GridFrameOffsetVector)
    frame k at   ImagePositionPatient + GridFrameOffsetVector'[k] * n, where the offsets are
                 relative when the first one is 0, else absolute (then the first is subtracted)

Grids are patient (LPS) coordinates as in SimpleITK. Resampling onto another grid: linear for
doses and uncertainties, nearest neighbour for masks / label maps; outside the source grid 0.

Masks in an rptdose ``.h5`` (both optional; a file without them is read as a plain result):

=================  =========  ===============  ==================================================
name               kind       type             content
=================  =========  ===============  ==================================================
``masks/<link>``   dataset    uint8 [z, y, x]  1 inside the region, 0 outside (any integer or
                                               bool type holding only 0 / 1); the region name
                                               is the attribute ``name``, else the link name
                                               percent-decoded (``rptdose.io.hdf5.write_masks``)
``body_mask``      dataset    uint8 [z, y, x]  1 inside the patient's body outline (from the CT)
=================  =========  ===============  ==================================================

The masks are listed in the order of the file's region table (attribute ``regions``) when it
has one, else by name.
"""

from __future__ import annotations

import os
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rptdose.errors import InputError

#: Largest spread of the frame spacing of an RT Dose accepted as uniform (mm).
FRAME_SPACING_TOL_MM = 1e-3
#: Group of the region masks and dataset of the body outline in an rptdose ``.h5``.
MASKS_GROUP = "masks"
BODY_MASK = "body_mask"


@dataclass
class DoseMap:
    """A dose on a grid: ``dose_gy`` [z, y, x], ``rel_uncertainty`` or None, ``region_means`` or
    None, ``spacing_mm``, ``origin_mm``, ``direction`` (SimpleITK conventions), ``label``; and
    from an rptdose ``.h5`` that holds them, ``masks`` ({name: bool [z, y, x]}) and
    ``body_mask`` (bool [z, y, x]), with ``source`` the file they were read from."""

    dose_gy: np.ndarray
    rel_uncertainty: np.ndarray | None
    region_means: dict | None
    spacing_mm: tuple[float, float, float] | None
    origin_mm: tuple[float, float, float] | None
    direction: tuple[float, ...] | None
    label: str
    masks: dict[str, np.ndarray] | None = None
    body_mask: np.ndarray | None = None
    source: str | None = None

    @property
    def has_geometry(self) -> bool:
        return self.spacing_mm is not None

    def to_sitk(self, array: np.ndarray | None = None) -> Any:
        from rptdose.phantom import grid_to_sitk

        arr = self.dose_gy if array is None else array
        return grid_to_sitk(arr, arr.shape, self.spacing_mm, self.origin_mm or (0.0, 0.0, 0.0),
                            self.direction or (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
        return len(head) == 132 and head[128:132] == b"DICM"
    except OSError:
        return False


def read_rtdose(path: Any) -> DoseMap:
    """A DICOM RT Dose file (see the module docstring) as a :class:`DoseMap`."""
    import pydicom

    p = Path(path)
    try:
        ds = pydicom.dcmread(str(p))
    except Exception as exc:
        raise InputError(f"RT Dose '{p}' (not readable DICOM: {exc}): expected a DICOM RT Dose file") from None
    modality = str(getattr(ds, "Modality", ""))
    if modality != "RTDOSE":
        raise InputError(f"DICOM file '{p}' (Modality {modality!r}): expected an RT Dose (Modality RTDOSE)")
    for tag in ("DoseGridScaling", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if tag not in ds:
            raise InputError(f"RT Dose '{p}' (no {tag}): expected a complete RT Dose grid")
    units = str(getattr(ds, "DoseUnits", "GY")).upper()
    if units not in ("GY", "CGY"):
        raise InputError(f"RT Dose '{p}' (DoseUnits {units!r}): expected absolute dose, DoseUnits GY")
    try:
        pix = np.asarray(ds.pixel_array, dtype=np.float64)
    except Exception as exc:
        raise InputError(f"RT Dose '{p}' (pixel data unreadable: {exc}): expected uncompressed or "
                         "pydicom-decodable pixel data") from None
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if pix.ndim == 2:
        pix = pix[None]
    if pix.ndim != 3 or pix.shape[0] != frames:
        raise InputError(f"RT Dose '{p}' (pixel data of shape {pix.shape} for {frames} frames): expected "
                         "(frames, rows, columns)")
    dose = pix * float(ds.DoseGridScaling) * (0.01 if units == "CGY" else 1.0)
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    r, c = iop[:3], iop[3:]
    n = np.cross(r, c)
    ps = [float(v) for v in ds.PixelSpacing]
    if frames > 1:
        if "GridFrameOffsetVector" not in ds:
            raise InputError(f"RT Dose '{p}' (multi-frame without GridFrameOffsetVector): expected the "
                             "frame offsets")
        off = np.array([float(v) for v in ds.GridFrameOffsetVector])
        if off.size != frames:
            raise InputError(f"RT Dose '{p}' (GridFrameOffsetVector has {off.size} values for {frames} frames): "
                             "expected one offset per frame")
        off = off - off[0]   # relative (first 0) or absolute (first = the first frame's position)
        steps = np.diff(off)
        if np.any(np.abs(steps - steps[0]) > FRAME_SPACING_TOL_MM) or abs(steps[0]) < 1e-6:
            raise InputError(f"RT Dose '{p}' (GridFrameOffsetVector not uniformly spaced: steps "
                             f"{np.unique(np.round(steps, 4))[:5].tolist()} mm): expected equally spaced frames")
        dz = float(np.mean(steps))
        if dz < 0:  # frames run against the normal: reverse them
            dose = dose[::-1]
            ipp = ipp + off[-1] * n
            dz = -dz
    else:
        dz = float(getattr(ds, "SliceThickness", 0) or 1.0)
    direction = (r[0], c[0], n[0], r[1], c[1], n[1], r[2], c[2], n[2])
    return DoseMap(dose_gy=np.ascontiguousarray(dose), rel_uncertainty=None, region_means=None,
                   spacing_mm=(ps[1], ps[0], dz), origin_mm=tuple(float(v) for v in ipp),
                   direction=tuple(float(v) for v in direction), label=p.name)


def _from_result(res: Any, label: str) -> DoseMap:
    rel = getattr(res, "rel_uncertainty", None)
    if rel is not None:
        rel = np.asarray(rel, dtype=np.float64)
        if np.all(np.isnan(rel)):
            rel = None
    return DoseMap(dose_gy=np.asarray(res.dose_gy, dtype=np.float64), rel_uncertainty=rel,
                   region_means=res.region_means, spacing_mm=tuple(res.spacing_mm), origin_mm=tuple(res.origin_mm),
                   direction=tuple(res.direction), label=label)


def _mask_dataset(path: Path, name: str, obj: Any, shape: tuple[int, ...]) -> np.ndarray:
    import h5py

    expected = f"expected a uint8 mask (1 inside, 0 outside) of the dose grid's shape {shape} [z, y, x]"
    if not isinstance(obj, h5py.Dataset):
        raise InputError(f"dose file '{path}' (field '{name}' is a group, not a dataset): {expected}")
    if obj.shape != tuple(shape):
        raise InputError(f"dose file '{path}' (field '{name}' of shape {obj.shape}): {expected}")
    if obj.dtype != bool and not np.issubdtype(obj.dtype, np.integer):
        raise InputError(f"dose file '{path}' (field '{name}' of type {obj.dtype}): {expected}")
    try:
        arr = np.asarray(obj[()])
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"dose file '{path}' (field '{name}' unreadable: {exc}): {expected}") from None
    if arr.dtype != bool:
        bad = (arr != 0) & (arr != 1)
        if bad.any():
            raise InputError(f"dose file '{path}' (field '{name}' holds values other than 0 and 1, e.g. "
                             f"{arr[bad].flat[0]}): {expected}")
    return np.ascontiguousarray(arr.astype(bool))


def read_h5_masks(path: Any, shape: tuple[int, ...]) -> tuple[dict[str, np.ndarray] | None, np.ndarray | None]:
    """The region masks (``masks/``) and the body outline (``body_mask``) of an rptdose ``.h5``,
    each None where the file has none (module docstring). InputError naming the file and the
    field when one is not a 0/1 mask of ``shape``."""
    import h5py

    from rptdose.io.hdf5 import open_h5

    p = Path(path)
    with open_h5(p, "dose file", "an rptdose result (.h5)") as f:
        masks = None
        if MASKS_GROUP in f:
            group = f[MASKS_GROUP]
            if not isinstance(group, h5py.Group):
                raise InputError(f"dose file '{p}' (field '{MASKS_GROUP}' is a dataset, not a group): expected a "
                                 f"group '{MASKS_GROUP}/' with one uint8 mask [z, y, x] per region")
            read = {}
            for link, obj in group.items():
                name = _region_name(p, link, obj)
                if name in read:
                    raise InputError(f"dose file '{p}' (field '{MASKS_GROUP}/{link}': region {name!r} twice): "
                                     "expected one mask per region")
                read[name] = _mask_dataset(p, f"{MASKS_GROUP}/{link}", obj, shape)
            order = _region_order(f)
            names = sorted(read, key=lambda n: (order.index(n) if n in order else len(order), n))
            masks = {n: read[n] for n in names} or None
        body = None
        if BODY_MASK in f:
            body = _mask_dataset(p, BODY_MASK, f[BODY_MASK], shape)
            if not body.any():
                raise InputError(f"dose file '{p}' (field '{BODY_MASK}' has no voxel set): expected 1 inside the "
                                 "patient's body outline")
    return masks, body


def _region_name(path: Path, link: str, obj: Any) -> str:
    """The region name of a mask dataset: its attribute ``name`` (``rptdose.io.hdf5.write_masks``),
    else the link name with its percent-encoding undone (files written before the attribute)."""
    from rptdose.io.hdf5 import h5_unname

    try:   # strict UTF-8 here (io.hdf5.mask_name replaces bad bytes): a clear error for a damaged name
        if "name" in obj.attrs:
            value = obj.attrs["name"]
            return value.decode("utf-8") if isinstance(value, bytes) else str(value)
        return h5_unname(link)
    except (UnicodeDecodeError, ValueError, TypeError, OSError) as exc:
        raise InputError(f"dose file '{path}' (field '{MASKS_GROUP}/{link}': region name unreadable: {exc}): "
                         "expected a UTF-8 region name") from None


def _region_order(f: Any) -> list[str]:
    """Region names in the order of a dose.h5's region table (attribute ``regions``), if any."""
    try:
        rows = json.loads(f.attrs["regions"]) if "regions" in f.attrs else []
        return [str(r["name"]) for r in rows if isinstance(r, dict) and "name" in r]
    except (ValueError, TypeError):
        return []


def load_dose(obj: Any, label: str | None = None) -> DoseMap:
    """A :class:`DoseMap` from any accepted input (module docstring); arrays keep no geometry."""
    if hasattr(obj, "dose_gy") and hasattr(obj, "spacing_mm"):
        return _from_result(obj, label or getattr(obj, "method", None) or getattr(obj, "backend", "result"))
    if isinstance(obj, np.ndarray) or (isinstance(obj, (list, tuple)) and obj and not isinstance(obj[0], str)):
        arr = np.asarray(obj, dtype=np.float64)
        if arr.ndim != 3:
            raise InputError(f"dose array of shape {arr.shape}: expected a 3-D array [z, y, x]")
        return DoseMap(arr, None, None, None, None, None, label or "array")
    try:
        import SimpleITK as sitk

        if isinstance(obj, sitk.Image):
            return DoseMap(sitk.GetArrayFromImage(obj).astype(np.float64), None, None, obj.GetSpacing(),
                           obj.GetOrigin(), obj.GetDirection(), label or "image")
    except ImportError:  # pragma: no cover
        pass
    if not isinstance(obj, (str, os.PathLike)):
        raise InputError(f"dose {type(obj).__name__} (unknown kind): expected an rptdose result, a path (.h5, "
                         "NIfTI, DICOM RT Dose), a SimpleITK image or a 3-D array")
    p = Path(obj)
    label = label or p.name
    if p.is_dir():
        cands = [f for f in sorted(p.iterdir()) if f.is_file() and _is_dicom(f)]
        rt = []
        for f in cands:
            import pydicom

            try:
                if str(pydicom.dcmread(str(f), stop_before_pixels=True).get("Modality", "")) == "RTDOSE":
                    rt.append(f)
            except Exception:
                continue
        if len(rt) != 1:
            raise InputError(f"dose folder '{p}' ({len(rt)} RT Dose files): expected exactly one DICOM RT Dose, "
                             "or give the file")
        return read_rtdose(rt[0])
    if not p.is_file():
        raise InputError(f"dose file '{p}' (does not exist): expected an rptdose result (.h5), NIfTI or DICOM "
                         "RT Dose")
    name = p.name.lower()
    if name.endswith((".h5", ".hdf5")):
        from rptdose.transport import load_result

        dm = _from_result(load_result(p), label)
        dm.masks, dm.body_mask = read_h5_masks(p, dm.dose_gy.shape)
        dm.source = str(p)
        return dm
    if _is_dicom(p) or name.endswith(".dcm"):
        return read_rtdose(p)
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise InputError(f"dose file '{p}' (not readable: {' '.join(str(exc).split())[:200]}): expected an "
                         "rptdose result (.h5), NIfTI, MetaImage or DICOM RT Dose") from None
    if img.GetDimension() != 3:
        raise InputError(f"dose file '{p}' ({img.GetDimension()}-D image): expected a 3-D dose")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"dose file '{p}' (vector image): expected one dose value per voxel")
    return DoseMap(sitk.GetArrayFromImage(img).astype(np.float64), None, None, img.GetSpacing(), img.GetOrigin(),
                   img.GetDirection(), label)


def same_grid(a: DoseMap, b: DoseMap, tol_mm: float = 1e-3) -> bool:
    if a.dose_gy.shape != b.dose_gy.shape:
        return False
    if not (a.has_geometry and b.has_geometry):
        return True
    return (np.allclose(a.spacing_mm, b.spacing_mm, atol=tol_mm) and np.allclose(a.origin_mm, b.origin_mm, atol=tol_mm)
            and np.allclose(a.direction, b.direction, atol=1e-6))


def resample_array(array: np.ndarray, source: DoseMap, target: DoseMap, nearest: bool = False) -> np.ndarray:
    """``array`` on ``source``'s grid resampled onto ``target``'s grid (0 outside)."""
    import SimpleITK as sitk

    img = source.to_sitk(np.ascontiguousarray(array, dtype=np.float64 if not nearest else array.dtype))
    ref = target.to_sitk(np.zeros(target.dose_gy.shape, dtype=np.float32))
    interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    out = sitk.Resample(img, ref, sitk.Transform(), interp, 0.0, img.GetPixelID())
    return sitk.GetArrayFromImage(out)


def on_grid(dm: DoseMap, target: DoseMap) -> DoseMap:
    """``dm`` on ``target``'s grid (resampled if its grid differs; region_means dropped then)."""
    if not dm.has_geometry:
        if dm.dose_gy.shape != target.dose_gy.shape:
            raise InputError(f"dose '{dm.label}' (array of shape {dm.dose_gy.shape}, no grid): expected the shape "
                             f"of '{target.label}', {target.dose_gy.shape}, or an input with a grid")
        return DoseMap(dm.dose_gy, dm.rel_uncertainty, dm.region_means, target.spacing_mm, target.origin_mm,
                       target.direction, dm.label, dm.masks, dm.body_mask, dm.source)
    if same_grid(dm, target):
        return dm
    dose = resample_array(dm.dose_gy, dm, target)
    rel = None if dm.rel_uncertainty is None else resample_array(dm.rel_uncertainty, dm, target)

    def mask(m: np.ndarray) -> np.ndarray:
        return resample_array(m.astype(np.uint8), dm, target, nearest=True) != 0

    masks = None if dm.masks is None else {k: mask(v) for k, v in dm.masks.items()}
    body = None if dm.body_mask is None else mask(dm.body_mask)
    return DoseMap(dose, rel, None, target.spacing_mm, target.origin_mm, target.direction, dm.label + " (resampled)",
                   masks, body, dm.source)


def load_mask_image(path: Any) -> DoseMap:
    """A label map / mask file (NIfTI, MetaImage, NRRD) read with SimpleITK, as a DoseMap of labels."""
    import SimpleITK as sitk

    p = Path(path)
    if not p.is_file():
        raise InputError(f"mask file '{p}' (does not exist): expected a label map or mask image (NIfTI, MetaImage)")
    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise InputError(f"mask file '{p}' (not readable: {' '.join(str(exc).split())[:200]}): expected a label "
                         "map or mask image") from None
    arr = sitk.GetArrayFromImage(img)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(arr == np.rint(arr)):
            raise InputError(f"mask file '{p}' (non-integer values): expected integer labels (0 = background)")
        arr = np.rint(arr).astype(np.int32)
    return DoseMap(arr, None, None, img.GetSpacing(), img.GetOrigin(), img.GetDirection(), p.name)
