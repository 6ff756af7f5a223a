"""The gamma index (Low, Harms, Mutic & Purdy, Med Phys 25:656, 1998), global or local, in 3-D.

For each reference point r (reference dose above the lower threshold)::

    gamma(r) = min over e of sqrt( |e - r|^2 / DTA^2 + (D_eval(e) - D_ref(r))^2 / dD^2 )

with dD = ``dose_percent`` % of the global normalisation (``global``: the reference maximum unless
given) or of D_ref(r) (``local``). The evaluated dose is interpolated trilinearly at the points
e = r + n * step of a cubic lattice of ``step = DTA / interp_fraction`` (default 10, as
recommended by Low & Dempsey, Med Phys 30:2455, 2003, and used by pymedphys), searched shell by
shell of increasing |e - r|; a point stops being searched as soon as |e - r| / DTA exceeds the
best gamma found, and the search ends at ``max_gamma`` * DTA (values above are reported as
``max_gamma``: "at least"). Evaluated points outside the grid are not candidates.

Voxel positions are their centres; spacing (x, y, z) in mm; arrays [z, y, x] on one grid.
A point passes if gamma <= 1. Validated against synthetic cases with known answers and against
pymedphys.gamma (tests/test_gamma.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rptdose._validate import as_grid_array, as_vec3
from rptdose.errors import InputError


@dataclass
class GammaResult:
    """``gamma`` [z, y, x] (NaN where not evaluated), ``pass_rate`` (fraction with gamma <= 1),
    ``evaluated_points``, ``mean_gamma``, ``p95_gamma`` and the ``settings``."""

    gamma: np.ndarray
    pass_rate: float
    evaluated_points: int
    mean_gamma: float
    p95_gamma: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        s = self.settings
        return f"{s['dose_percent']:g}%/{s['distance_mm']:g}mm {'local' if s['local'] else 'global'}"


def _interp(flat: np.ndarray, strides: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of the padded grid (flat) at voxel positions pos [P, 3] (z, y, x)."""
    fl = np.floor(pos)
    fr = pos - fl
    fl = fl.astype(np.int64)
    base = fl @ strides
    out = np.zeros(pos.shape[0])
    for cz in (0, 1):
        wz = fr[:, 0] if cz else 1.0 - fr[:, 0]
        for cy in (0, 1):
            wy = fr[:, 1] if cy else 1.0 - fr[:, 1]
            for cx in (0, 1):
                wx = fr[:, 2] if cx else 1.0 - fr[:, 2]
                out += wz * wy * wx * flat[base + cz * strides[0] + cy * strides[1] + cx * strides[2]]
    return out


def _refine(g2, best_off, offsets, zyx, ref_pts, inv_crit2, flat, strides, spacing_zyx, dta, step,
            iterations: int = 3) -> None:
    """Newton steps from each point's best position on the linearised dose, within one lattice
    step; g2 is lowered where the exactly evaluated gamma^2 at the new position is lower."""
    idx = np.nonzero((best_off >= 0) & (g2 > 0) & np.isfinite(g2))[0]
    if idx.size == 0:
        return
    centre = zyx[idx].astype(np.float64) * spacing_zyx              # mm, padded frame
    pos = centre + offsets[best_off[idx]]                           # current best position (mm)
    r0 = ref_pts[idx]
    ic = inv_crit2[idx]
    cur = g2[idx].copy()
    h = 0.25 * step
    lo = spacing_zyx * 0.0
    hi = (np.array([flat.size // strides[0], strides[0] // strides[1], strides[1]]) - 1) * spacing_zyx
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(iterations):
            val = _interp(flat, strides, np.clip(pos, lo, hi) / spacing_zyx)
            grad = np.empty_like(pos)
            for a in range(3):
                e = np.zeros(3)
                e[a] = h
                grad[:, a] = (_interp(flat, strides, np.clip(pos + e, lo, hi) / spacing_zyx)
                              - _interp(flat, strides, np.clip(pos - e, lo, hi) / spacing_zyx)) / (2 * h)
            p = pos - centre
            delta = val - r0
            # minimise |p+u|^2/dta^2 + (delta + g.u)^2 ic: (I/dta^2 + ic g g^T) u = -p/dta^2 - ic delta g
            rhs = -p / dta**2 - (ic * delta)[:, None] * grad
            gg = np.sum(grad * grad, axis=1)
            # Sherman-Morrison: A^-1 = dta^2 (I - ic dta^2 g g^T / (1 + ic dta^2 |g|^2))
            coef = ic * dta**2 / (1.0 + ic * dta**2 * gg)
            u = dta**2 * (rhs - (coef * np.sum(grad * rhs, axis=1))[:, None] * grad)
            norm = np.sqrt(np.sum(u * u, axis=1))
            scale = np.where(norm > step, step / np.maximum(norm, 1e-300), 1.0)
            u *= scale[:, None]
            u[~np.isfinite(u)] = 0.0
            new = pos + u
            v = _interp(flat, strides, np.clip(new, lo, hi) / spacing_zyx)
            dn = v - r0
            g2n = np.sum((new - centre) ** 2, axis=1) / dta**2 + dn * dn * ic
            ok = np.isfinite(g2n) & (g2n < cur) & np.all((new >= lo) & (new <= hi), axis=1)
            pos[ok] = new[ok]
            cur[ok] = g2n[ok]
    g2[idx] = cur


#: Dose given to positions outside the evaluated grid (never a match; finite so 0 x it is 0).
_OUTSIDE = 1e200
#: Offsets x points evaluated at once (memory: ~10 arrays of this many float64).
_BLOCK_ELEMENTS = 1 << 20


def _lattice(step_mm: float, radius_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Lattice offsets (mm, [n, 3] as (z, y, x)) within radius, sorted by distance, and distances."""
    n = int(math.floor(radius_mm / step_mm + 1e-9))
    g = np.arange(-n, n + 1, dtype=np.float64) * step_mm
    zz, yy, xx = np.meshgrid(g, g, g, indexing="ij")
    off = np.stack([zz.ravel(), yy.ravel(), xx.ravel()], axis=1)
    r = np.sqrt(np.sum(off * off, axis=1))
    keep = r <= radius_mm * (1 + 1e-12)
    off, r = off[keep], r[keep]
    order = np.argsort(r, kind="stable")
    return off[order], r[order]


def gamma_index(reference: Any, evaluated: Any, spacing_mm: Any, dose_percent: float = 3.0,
                distance_mm: float = 3.0, *, local: bool = False, threshold_percent: float = 10.0,
                normalisation_gy: float | None = None, interp_fraction: int = 10, max_gamma: float = 2.0,
                mask: Any = None, refine: bool = True) -> GammaResult:
    """Gamma index of ``evaluated`` against ``reference`` (both [z, y, x] on one grid).

    Parameters
    ----------
    reference, evaluated : arrays [z, y, x]
        Doses (Gy) on the same grid.
    spacing_mm : (sx, sy, sz)
        Voxel size (mm).
    dose_percent, distance_mm : float
        Dose-difference criterion (% of the normalisation, or of the local reference dose) and
        distance to agreement (mm).
    local : bool
        Local gamma (dD relative to each reference point's dose) instead of global.
    threshold_percent : float
        Reference points below this % of the normalisation are not evaluated (default 10).
    normalisation_gy : float, optional
        Global normalisation dose; default the reference maximum.
    interp_fraction : int
        Lattice steps per DTA (default 10).
    max_gamma : float
        Search radius in units of DTA (default 2); larger gammas are reported as max_gamma.
    mask : bool array, optional
        Evaluate only reference points inside it.
    refine : bool
        Refine each point's best lattice position by a few Newton steps on the locally
        linearised dose (default True); a refined position is kept only where its gamma,
        evaluated exactly, is lower. Every reported gamma is attained at a real position, so
        it never falls below the true minimum.
    """
    ref = np.asarray(as_grid_array("reference", reference), dtype=np.float64)
    ev = np.asarray(as_grid_array("evaluated", evaluated, shape=ref.shape,
                                  what="a 3-D dose array [z, y, x] on the reference grid"), dtype=np.float64)
    sx, sy, sz = as_vec3("spacing_mm", spacing_mm)
    if min(sx, sy, sz) <= 0:
        raise InputError(f"spacing_mm {(sx, sy, sz)} (not positive): expected voxel sizes in mm")
    for name, v, lo in (("dose_percent", dose_percent, 0.0), ("distance_mm", distance_mm, 0.0),
                        ("max_gamma", max_gamma, 0.0)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not (v > lo) \
                or not math.isfinite(v):
            raise InputError(f"{name} {v!r} (not a positive number): expected a positive number")
    if isinstance(threshold_percent, bool) or not (0 <= float(threshold_percent) < 100):
        raise InputError(f"threshold_percent {threshold_percent!r} (out of range): expected 0 <= % < 100")
    if isinstance(interp_fraction, bool) or not isinstance(interp_fraction, (int, np.integer)) \
            or not 1 <= interp_fraction <= 100:
        raise InputError(f"interp_fraction {interp_fraction!r}: expected an integer 1..100")
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(ev))):
        raise InputError("reference / evaluated (NaN or infinite values): expected finite doses")
    norm = float(np.max(ref)) if normalisation_gy is None else float(normalisation_gy)
    if not norm > 0:
        raise InputError(f"normalisation {norm!r} (not positive): expected a reference dose with a positive "
                         "maximum, or normalisation_gy > 0")
    sel = ref >= float(threshold_percent) / 100.0 * norm
    if local:
        sel &= ref > 0
    if mask is not None:
        m = as_grid_array("mask", mask, shape=ref.shape, what="a boolean mask [z, y, x]")
        sel &= m.astype(bool)
    points = np.flatnonzero(sel)
    settings = {"dose_percent": float(dose_percent), "distance_mm": float(distance_mm), "local": bool(local),
                "threshold_percent": float(threshold_percent), "normalisation_gy": norm,
                "interp_fraction": int(interp_fraction), "max_gamma": float(max_gamma),
                "implementation": "rptdose lattice search (trilinear interpolation)"}
    gamma = np.full(ref.shape, np.nan)
    if points.size == 0:
        return GammaResult(gamma, float("nan"), 0, float("nan"), float("nan"), settings)

    dta = float(distance_mm)
    step = dta / interp_fraction
    radius = float(max_gamma) * dta
    offsets, dist = _lattice(step, radius)
    spacing_zyx = np.array([sz, sy, sx])
    pad = [int(math.ceil(radius / s)) + 2 for s in spacing_zyx]
    # outside the grid: a huge finite dose (a zero interpolation weight must still give 0)
    padded = np.pad(ev, [(p, p) for p in pad], mode="constant", constant_values=_OUTSIDE)
    flat = padded.ravel()
    strides = np.array([padded.shape[1] * padded.shape[2], padded.shape[2], 1], dtype=np.int64)
    zyx = np.stack(np.unravel_index(points, ref.shape), axis=1) + np.array(pad)
    base = zyx @ strides                                  # flat index of each point in the padded grid
    ref_pts = ref.ravel()[points]
    crit = (float(dose_percent) / 100.0) * (ref_pts if local else np.full(points.size, norm))
    inv_crit2 = 1.0 / (crit * crit)
    g2 = np.full(points.size, np.inf)
    best_off = np.full(points.size, -1, dtype=np.int64)
    active = np.arange(points.size)

    # trilinear interpolation of each lattice offset: 8 corner shifts (flat) and weights
    q = offsets / spacing_zyx                              # offsets in voxel units
    fl = np.floor(q + 1e-9)
    fr = q - fl
    fr[np.abs(fr) < 1e-9] = 0.0
    fl = fl.astype(np.int64)
    shifts, weights = [], []
    for cz in (0, 1):
        for cy in (0, 1):
            for cx in (0, 1):
                c = np.array([cz, cy, cx])
                shifts.append((fl + c) @ strides)
                weights.append(np.prod(np.where(c == 1, fr, 1.0 - fr), axis=1))
    shifts_a = np.stack(shifts, axis=1)                    # [n_offsets, 8]
    weights_a = np.stack(weights, axis=1)
    used = weights_a > 0.0
    d2_all = (dist / dta) ** 2
    n_off = len(dist)
    i = 0
    grow = 1   # offsets per block: start small (most points settle in the first shells), then double
    with np.errstate(over="ignore", invalid="ignore"):
        while i < n_off and active.size:
            active = active[g2[active] > d2_all[i]]         # no offset from here on can lower these
            if active.size == 0:
                break
            block = max(1, min(n_off - i, _BLOCK_ELEMENTS // active.size, grow))
            grow *= 2
            j = i + block
            b = base[active]
            val = np.zeros((j - i, active.size))
            for c in range(8):
                rows = np.nonzero(used[i:j, c])[0]
                if rows.size == 0:
                    continue
                k = i + rows
                val[rows] += weights_a[k, c][:, None] * flat[b[None, :] + shifts_a[k, c][:, None]]
            diff = val - ref_pts[active][None, :]
            cand = d2_all[i:j, None] + diff * diff * inv_crit2[active][None, :]
            kmin = np.argmin(cand, axis=0)
            cmin = cand[kmin, np.arange(active.size)]
            better = cmin < g2[active]
            g2[active[better]] = cmin[better]
            best_off[active[better]] = i + kmin[better]
            i = j
    if refine:
        _refine(g2, best_off, offsets, zyx, ref_pts, inv_crit2, flat, strides, spacing_zyx, dta, step)
    gvals = np.minimum(np.sqrt(g2), float(max_gamma))
    gamma.ravel()[points] = gvals
    return GammaResult(gamma=gamma, pass_rate=float(np.mean(gvals <= 1.0)), evaluated_points=int(points.size),
                       mean_gamma=float(np.mean(gvals)), p95_gamma=float(np.percentile(gvals, 95)),
                       settings=settings)
