"""Regions of interest: every accepted form -> an ordered ``{name: bool mask [z, y, x]}``.

==========================================  ===================================================
form                                        meaning
==========================================  ===================================================
``{name: mask}``                            bool (or 0/1 integer) masks [z, y, x]; may overlap
integer label map [z, y, x]                 0 = background, each label > 0 one region, named
                                            ``label_names[label]`` or ``str(label)``
``None``                                    no regions
==========================================  ===================================================

Region statistics use the voxel masses when given (the MIRD mean absorbed dose = energy / mass),
else the voxel volumes (all equal on a regular grid).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from rptdose._validate import as_grid_array, describe
from rptdose.errors import InputError


def normalize_regions(regions: Any, shape: tuple[int, int, int], name: str = "regions",
                      label_names: Mapping[int, str] | None = None,
                      allow_empty: bool = False) -> dict[str, np.ndarray] | None:
    """``regions`` (see the module docstring) as ``{name: bool mask}`` of ``shape``, or None."""
    if regions is None:
        return None
    shape = tuple(int(n) for n in shape)
    out: dict[str, np.ndarray] = {}
    if isinstance(regions, Mapping):
        if not regions:
            raise InputError(f"{name} {{}} (empty): expected {{name: bool mask}} with at least one region, or None")
        for key, mask in regions.items():
            if not isinstance(key, str) or not key:
                raise InputError(f"{name} key {key!r} (not a name): expected non-empty str region names")
            m = as_grid_array(f"{name}[{key!r}]", mask, shape=shape, what="a boolean mask [z, y, x]")
            if m.dtype != bool:
                if not np.issubdtype(m.dtype, np.integer) or not np.all((m == 0) | (m == 1)):
                    raise InputError(f"{name}[{key!r}] {describe(m)} (not a mask): expected a boolean mask "
                                     "[z, y, x] (or 0/1 integers)")
                m = m.astype(bool)
            if not m.any() and not allow_empty:
                raise InputError(f"{name}[{key!r}] (empty mask): expected at least one voxel in the region")
            out[key] = np.ascontiguousarray(m)
        return out
    arr = as_grid_array(name, regions, shape=shape, what="a {name: mask} dict or an integer label map [z, y, x]")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.rint(arr)):
            arr = np.rint(arr).astype(np.int64)  # label images stored as float (some NIfTI writers)
        else:
            raise InputError(f"{name} {describe(arr)} (dtype {arr.dtype}): expected an integer label map "
                             "(0 = background) or a {name: bool mask} dict")
    if arr.size and int(arr.min()) < 0:
        raise InputError(f"{name} (minimum label {int(arr.min())}): expected labels >= 0 (0 = background)")
    values = np.unique(arr[arr > 0])
    if values.size == 0:
        raise InputError(f"{name} (only background, label 0): expected at least one label > 0")
    names = dict(label_names or {})
    for v in values:
        key = str(names.get(int(v), int(v)))
        if key in out:
            raise InputError(f"{name} (two labels named {key!r}): expected distinct region names")
        out[key] = arr == v
    return out


def region_mean(dose: np.ndarray, mask: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Weighted mean of ``dose`` over ``mask`` (weights: voxel masses; None: voxel volumes)."""
    d = np.asarray(dose, dtype=np.float64)[mask]
    if weights is None:
        return float(np.mean(d)) if d.size else float("nan")
    w = np.asarray(weights, dtype=np.float64)[mask]
    total = float(np.sum(w))
    return float(np.sum(w * d) / total) if total > 0 else float("nan")


def region_mean_uncertainty(dose: np.ndarray, rel_uncertainty: np.ndarray, mask: np.ndarray,
                            weights: np.ndarray | None = None) -> float:
    """Relative 1-sigma uncertainty of a region's mean dose from per-voxel relative uncertainties,
    taking the voxels as independent: sqrt(sum (w_i D_i r_i)^2) / sum(w_i D_i).

    Monte Carlo voxels of one run are positively correlated (a history deposits in several
    voxels), so this is an approximation (a lower estimate); prefer the batch-method region
    uncertainty that :func:`rptdose.simulate` returns for its ``regions``.
    """
    d = np.asarray(dose, dtype=np.float64)[mask]
    r = np.asarray(rel_uncertainty, dtype=np.float64)[mask]
    w = np.ones_like(d) if weights is None else np.asarray(weights, dtype=np.float64)[mask]
    num = float(np.sqrt(np.sum((w * d * r) ** 2)))
    den = float(np.sum(w * d))
    return num / den if den > 0 else float("nan")


# ---- region naming -------------------------------------------------------------------------------

#: The region that the study loader adds for the whole dose grid (the field of view).
FOV_REGION = "field_of_view"

#: Region kinds, from the region's name (first match wins; case-insensitive).
KIND_PATTERNS: tuple[tuple[str, str], ...] = (
    ("kidney", r"kidney|renal|cortex"),
    ("marrow", r"marrow"),
    ("tumour", r"tumou?r|lesion|metasta|gtv|\bmet\d*\b|\bles\d*\b|\btum\d*\b"),
)


def region_kind(name: str) -> str:
    """"kidney", "marrow", "tumour" or "organ" from a region name (:data:`KIND_PATTERNS`)."""
    low = name.lower()
    for kind, pattern in KIND_PATTERNS:
        if re.search(pattern, low):
            return kind
    return "organ"


def anatomical(regions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The delineated regions, without the whole-grid field of view (which holds the air around the
    patient) unless it is the only one."""
    out = {k: m for k, m in regions.items() if k != FOV_REGION}
    return out or dict(regions)


# ---- segmentation (contour) uncertainty --------------------------------------------------------

#: The 6 face-neighbour directions (axis of [z, y, x], shift), in the order used everywhere.
DIRECTIONS6 = ((0, 1), (0, -1), (1, 1), (1, -1), (2, 1), (2, -1))


def neighbour(a: np.ndarray, axis: int, shift: int, fill: Any) -> np.ndarray:
    """Every voxel's neighbour value along ``axis`` at ``shift`` (+1: the voxel before it, -1: the
    one after) in the 3-D array ``a``; ``fill`` where the neighbour is off the grid."""
    nb = np.full_like(a, fill)
    src = [slice(None)] * 3
    dst = [slice(None)] * 3
    src[axis], dst[axis] = (slice(None, -1), slice(1, None)) if shift == 1 else (slice(1, None), slice(None, -1))
    nb[tuple(dst)] = a[tuple(src)]
    return nb


def _grow(mask: np.ndarray, erode: bool) -> np.ndarray:
    """``mask`` eroded or dilated by one voxel (6-connected; the grid's edge counts as outside)."""
    m = np.asarray(mask, dtype=bool)
    out = m.copy()
    for axis, shift in DIRECTIONS6:
        nb = neighbour(m, axis, shift, False)
        out = (out & nb) if erode else (out | nb)
    return out


def contour_voxels(contour_uncertainty_mm: float | None, spacing_mm: Any) -> float:
    """The contours' standard uncertainty in voxels of ``spacing_mm``: ``contour_uncertainty_mm``
    (recovery.contour_uncertainty_mm) over the mean voxel size, one voxel when None."""
    if contour_uncertainty_mm is None:
        return 1.0
    return float(contour_uncertainty_mm) / float(np.mean(spacing_mm))


def contour_uncertainty(numerator: np.ndarray, denominator: np.ndarray, mask: np.ndarray,
                        voxels: float = 1.0) -> float:
    """Relative standard uncertainty of a region's ratio of sums (e.g. mass-weighted mean dose:
    sum(dose x mass) / sum(mass)) from its contour: half the spread between the region eroded
    and dilated by one voxel (6-connected), relative to the region's own value, times ``voxels``
    (the contour's standard uncertainty in voxels). Where the erosion leaves nothing, the dilated
    region's difference alone. NaN for an empty region or a zero value."""
    m = np.asarray(mask, dtype=bool)
    num, den = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)

    def ratio(k: np.ndarray) -> float:
        d = float(den[k].sum())
        return float(num[k].sum()) / d if d > 0 else float("nan")

    base = ratio(m)
    if not m.any() or not base or not np.isfinite(base):
        return float("nan")
    ero, dil = _grow(m, True), _grow(m, False)
    hi = ratio(dil)
    spread = abs(hi - ratio(ero)) / 2.0 if ero.any() else abs(hi - base)
    return float(voxels) * spread / abs(base)


def combine_relative(*terms: float) -> float:
    """The root sum of squares of the finite terms (relative standard uncertainties taken as
    independent); NaN when none is finite."""
    vals = [float(t) for t in terms if t is not None and np.isfinite(t)]
    return float(np.sqrt(sum(v * v for v in vals))) if vals else float("nan")
