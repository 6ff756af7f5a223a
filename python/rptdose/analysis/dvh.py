"""Dose-volume histograms and dose metrics of a region.

=================  =========================================================================
quantity           definition
=================  =========================================================================
cumulative DVH     V(D) = fraction of the region's volume (or mass, with voxel masses) that
                   receives at least D
``D<x>``           minimum dose to the hottest x % of the region: the dose where V(D) = x %
                   (``D2``, ``D50``, ``D98``), from the voxel doses sorted, with linear
                   interpolation between voxels
``mean_gy``        volume- (or mass-) weighted mean dose; with masses: energy / mass (MIRD)
``min_gy``,        extremes over the region's voxels
``max_gy``
=================  =========================================================================

Volumes are voxel counts (all voxels of a regular grid have one volume) unless ``weights``
(voxel masses, kg) are given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rptdose.errors import InputError

#: The D<x> metrics reported by default (% of the region's volume).
DEFAULT_DX = (2.0, 50.0, 98.0)


def _values(dose: Any, mask: Any, weights: Any = None) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(dose, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if m.shape != d.shape:
        raise InputError(f"mask shape {m.shape} (differs from the dose's {d.shape}): expected one grid")
    if not m.any():
        raise InputError("mask (empty): expected at least one voxel in the region")
    v = d[m]
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64)[m]
    return v, w


def cumulative_dvh(dose: Any, mask: Any, bins_gy: Any = None, weights: Any = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(dose_gy, volume_fraction): V(D) at each dose of ``bins_gy`` (default 1000 points from 0
    to the region's maximum)."""
    v, w = _values(dose, mask, weights)
    if bins_gy is None:
        bins_gy = np.linspace(0.0, float(v.max()) if v.max() > 0 else 1.0, 1000)
    bins = np.asarray(bins_gy, dtype=np.float64)
    order = np.argsort(v)
    vs, ws = v[order], w[order]
    above = np.concatenate([np.cumsum(ws[::-1])[::-1], [0.0]])  # weight with dose >= vs[i]
    idx = np.searchsorted(vs, bins, side="left")
    return bins, above[idx] / float(np.sum(ws))


def dose_at_volume(dose: Any, mask: Any, percent: float, weights: Any = None) -> float:
    """D<percent>: the minimum dose to the hottest ``percent`` % of the region."""
    v, w = _values(dose, mask, weights)
    order = np.argsort(v)[::-1]                     # hottest first
    vs, ws = v[order], w[order]
    cum = np.cumsum(ws) / np.sum(ws)                # volume fraction at or above each voxel's dose
    # centre of each voxel's share, so that a uniform region gives its dose for every x
    mid = cum - 0.5 * ws / np.sum(ws)
    return float(np.interp(percent / 100.0, mid, vs))


def dvh_metrics(dose: Any, mask: Any, weights: Any = None, dx: tuple[float, ...] = DEFAULT_DX) -> dict[str, float]:
    """``{"mean_gy", "min_gy", "max_gy", "D2_gy", "D50_gy", "D98_gy", "voxels"}`` of a region."""
    v, w = _values(dose, mask, weights)
    out = {"mean_gy": float(np.sum(v * w) / np.sum(w)), "min_gy": float(v.min()), "max_gy": float(v.max())}
    for x in dx:
        out[f"D{x:g}_gy"] = dose_at_volume(dose, mask, x, weights)
    out["voxels"] = int(v.size)
    return out


def dvh_difference(dose_a: Any, dose_b: Any, mask: Any, weights: Any = None, points: int = 1000) -> dict[str, float]:
    """Largest vertical gap between the cumulative DVHs of two doses in a region
    (``max_abs_volume_diff``, as a fraction of the region) and the dose where it is."""
    va, _ = _values(dose_a, mask, weights)
    vb, _ = _values(dose_b, mask, weights)
    top = max(float(va.max()), float(vb.max()), 1e-300)
    bins = np.linspace(0.0, top, points)
    _, ca = cumulative_dvh(dose_a, mask, bins, weights)
    _, cb = cumulative_dvh(dose_b, mask, bins, weights)
    k = int(np.argmax(np.abs(cb - ca)))
    return {"max_abs_volume_diff": float(abs(cb[k] - ca[k])), "at_dose_gy": float(bins[k])}
