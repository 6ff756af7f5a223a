"""The patient's body outline from the CT, and what to do with activity imaged outside it.

:func:`body_mask` (SimpleITK morphology on the CT's HU; :func:`body_mask_on_grid` finds it on
the CT at its own resolution and carries it to the dose grid):

1. voxels above :data:`BODY_HU_THRESHOLD` (-400 HU: soft tissue, fat, bone; air and lung are
   below, the lungs are filled in step 3);
2. the largest 26-connected component (drops the couch, blankets and stray noise when they do
   not touch the patient);
3. holes filled slice by slice in the axial plane (lungs, bowel gas, airways: open at the grid's
   top and bottom in 3-D, closed in each axial slice).

Activity outside the outline is spill-out of the SPECT's limited resolution (partial-volume
effect) and noise, not a source: the study key ``tia.outside_body`` says what happens to it
(:func:`apply_outside_body`):

============  ================================================================================
``drop``      (default) set to 0; the dose inside the body from spill-out just outside the
              skin is lost (small: it is a few % of the activity at most, near the skin), organ
              TIAs from the region fits are unchanged. The fraction dropped is reported.
``keep``      left as imaged (the air voxels then get doses of 10^3-10^5 Gy: their mass is
              a thousandth of tissue's)
``reassign``  moved to the nearest body voxel (6-connected propagation, ties broken in a fixed
              axis order) within :data:`REASSIGN_MAX_MM`; activity further out is dropped.
              Keeps the total where spill-out is all near the skin
============  ================================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rptdose.errors import InputError

BODY_HU_THRESHOLD = -400.0
OUTSIDE_BODY = ("drop", "keep", "reassign")
REASSIGN_MAX_MM = 50.0


def body_mask(hu: np.ndarray, spacing_mm: Any = (1.0, 1.0, 1.0), threshold_hu: float = BODY_HU_THRESHOLD
              ) -> np.ndarray:
    """Bool [z, y, x]: inside the patient's outline on the grid of ``hu`` (module docstring).

    All False when no voxel is above the threshold."""
    import SimpleITK as sitk

    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise InputError(f"CT (shape {hu.shape}): expected a 3-D HU array [z, y, x] for the body outline")
    above = (hu > threshold_hu).astype(np.uint8)
    if not above.any():
        return np.zeros(hu.shape, dtype=bool)
    img = sitk.GetImageFromArray(above)
    img.SetSpacing(tuple(float(s) for s in spacing_mm))
    cc = sitk.ConnectedComponent(img, True)
    largest = sitk.RelabelComponent(cc, sortByObjectSize=True) == 1
    arr = sitk.GetArrayFromImage(largest).astype(np.uint8)
    out = np.zeros(hu.shape, dtype=bool)
    for z in range(arr.shape[0]):
        if arr[z].any():
            out[z] = sitk.GetArrayFromImage(sitk.BinaryFillhole(sitk.GetImageFromArray(arr[z]), fullyConnected=False,
                                                                 foregroundValue=1)) > 0
    return out


def body_mask_on_grid(ct: Any, grid: Any) -> np.ndarray:
    """Bool [z, y, x] on ``grid`` (a SimpleITK image): the body outline found on the CT image
    ``ct`` (HU) at its own resolution, then carried to the grid so that a grid voxel is inside
    when its centre lies within half a grid voxel of the outline (a coarse dose voxel that holds
    some body is inside: the activity of the skin layer is not dropped)."""
    import SimpleITK as sitk

    mask = body_mask(sitk.GetArrayViewFromImage(ct), ct.GetSpacing())
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    img.CopyInformation(ct)
    radius = [int(np.floor(0.5 * g / c + 1e-6)) for g, c in zip(grid.GetSpacing(), ct.GetSpacing())]
    if any(radius):
        img = sitk.BinaryDilate(img, radius, sitk.sitkBox, 0, 1)
    on_grid = sitk.Resample(img, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(on_grid) > 0


def apply_outside_body(tia: np.ndarray, body: np.ndarray, mode: str, spacing_mm: Any) -> tuple[np.ndarray, dict]:
    """The TIA map after ``mode`` (module docstring) and a summary {outside_fraction, mode,
    moved_fraction, dropped_fraction} (fractions of the total TIA before)."""
    if mode not in OUTSIDE_BODY:
        raise InputError(f"tia.outside_body {mode!r} (unknown): expected one of {', '.join(OUTSIDE_BODY)}")
    tia = np.asarray(tia, dtype=np.float64)
    total = float(tia.sum())
    outside = ~body
    out_sum = float(tia[outside].sum())
    info = {"mode": mode, "outside_fraction": out_sum / total if total > 0 else 0.0, "moved_fraction": 0.0,
            "dropped_fraction": 0.0, "body_voxels": int(body.sum())}
    if mode == "keep" or out_sum == 0.0 or not body.any():
        return tia, info
    new = np.where(body, tia, 0.0)
    if mode == "reassign":
        target = _nearest_inside(body, spacing_mm, REASSIGN_MAX_MM)
        src = outside & (tia > 0) & (target >= 0)
        np.add.at(new.reshape(-1), target[src], tia[src])
        moved = float(tia[src].sum())
        info["moved_fraction"] = moved / total
        info["dropped_fraction"] = (out_sum - moved) / total
    else:
        info["dropped_fraction"] = out_sum / total
    return new, info


def _nearest_inside(body: np.ndarray, spacing_mm: Any, max_mm: float) -> np.ndarray:
    """Per voxel, the flat index of a nearest body voxel by 6-connected propagation (body voxels:
    their own index), -1 beyond ``max_mm`` (steps of the smallest spacing)."""
    from rptdose.analysis.regions import DIRECTIONS6, neighbour

    target = np.where(body, np.arange(body.size).reshape(body.shape), -1)
    steps = int(np.ceil(max_mm / float(min(spacing_mm))))
    for _ in range(steps):
        free = target < 0
        if not free.any():
            break
        changed = False
        for axis, shift in DIRECTIONS6:   # each direction sees the targets the earlier ones just set
            nb = neighbour(target, axis, shift, -1)
            take = free & (nb >= 0)
            if take.any():
                target = np.where(take, nb, target)
                free &= ~take
                changed = True
        if not changed:
            break
    return target
