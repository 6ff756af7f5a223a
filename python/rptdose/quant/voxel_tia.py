"""Voxel time-integrated activity that survives real SPECT noise.

A reconstructed SPECT (OSEM) holds voxels with zeros, isolated spikes and tiny positive values,
above all where there is little activity. A free exponential fit through such a voxel's points
can extrapolate a late spike back to t = 0 and give it a TIA larger than a whole organ's. Each
voxel's TIA is therefore taken by the first method of this hierarchy that its data support, and
the method used is kept in a map (:attr:`VoxelTIA.method`):

==========  ====  ===========================================================================
method      code  when / what
==========  ====  ===========================================================================
``none``    0     no activity at any scan: TIA 0
``fit``     1     the voxel's own fit (``tia.voxel_model``, :func:`rptdose.quant.tia.integrate`)
                  is accepted: a fitted model (not a fallback), every scan > 0, the fitted
                  effective decay no slower than physical decay, the curve at each scan no
                  higher than that scan's activity + :data:`CURVE_EXCESS` x the voxel's largest
                  activity (a decay is never extrapolated back above what the early scans
                  allow), its value at t = 0 at most :data:`HEAD_FACTOR` x the voxel's largest
                  activity (the uptake phase before the first scan is bounded), and its relative
                  TIA uncertainty at most :data:`FIT_MAX_REL_UNCERTAINTY` where defined
``trapezoid`` 2   the fit is rejected but the voxel's points are all > 0 and none is a spike:
                  trapezoids between the scans (``tia.trapezoid_start`` before the first) and
                  physical decay after the last
``region``  3     the voxel is noisy (a scan <= 0 while others are > 0, or a spike): its
                  activity scaled to the kinetics of the region it lies in,
                  TIA_v = TIA_R * sum_i' A_v(t_i) / sum_i' A_R(t_i) over the scans i' that are
                  not spikes, TIA_R from the region's own fit (``tia.model``). Common practice
                  for noisy voxels (region time-activity shape x voxel activity)
==========  ====  ===========================================================================

A scan is a *spike* in a voxel when the voxel's share of its region's activity at that scan,
r_i = A_v(t_i) / A_R(t_i), exceeds :data:`SPIKE_FACTOR` times the mean share at the other
scans (and is > 0). Real kinetics change a voxel's share of its region slowly; a single-scan
jump by that factor is noise (or a reconstruction artefact), and it would otherwise be
extrapolated.

The region of a voxel is the smallest segmented region that contains it, else the body (the CT
outline, :mod:`rptdose.quant.body`) outside all regions, else the rest of the field of view:
the caller passes these as an integer label map and one time-activity curve per label.

``voxel_model = "region"`` applies the region method to every voxel with activity (no voxel
fits); ``trapezoid`` and the single-time-point models (``hanscheid``, ``madsen``) apply their
rule to every voxel as before (the hierarchy concerns fits).

Uncertainty: a fitted voxel keeps its fit's uncertainty; a trapezoid voxel has none (NaN); a
region voxel combines the region fit's relative uncertainty with the scatter of its shares
r_i' (standard error of their mean, relative), in quadrature.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rptdose.errors import InputError
from rptdose.quant import tia as _tia

NONE, FIT, TRAPEZOID, REGION = 0, 1, 2, 3
METHOD_NAMES = {NONE: "none", FIT: "fit", TRAPEZOID: "trapezoid", REGION: "region"}

#: The fitted curve at a scan may exceed that scan's activity by this fraction of the voxel's
#: largest activity (a decay is never extrapolated back above what the early scans allow).
CURVE_EXCESS = 0.5
#: The fitted curve at t = 0 may be at most this multiple of the voxel's largest activity.
HEAD_FACTOR = 3.0
#: A voxel fit whose TIA has a larger relative standard uncertainty is not used.
FIT_MAX_REL_UNCERTAINTY = 0.5
#: A scan is a spike in a voxel when its share of the region exceeds this multiple of the mean
#: share at the other scans.
SPIKE_FACTOR = 4.0
#: Fit models the hierarchy applies to.
FIT_MODELS = ("auto", "mono", "biexp", "biexp_uptake")
VOXEL_MODELS = _tia.MODELS + ("region",)


@dataclass
class VoxelTIA:
    """Voxel TIA and how each voxel got it; arrays [z, y, x] (the spatial shape of the input)."""

    tia: np.ndarray                    # Bq s
    rel_uncertainty: np.ndarray        # relative 1-sigma, NaN where undefined
    method: np.ndarray                 # uint8 METHOD_NAMES codes
    fit: _tia.TIAResult                # the voxel fits (all voxels, whether used or not)
    region_tia_per_activity_s: dict = field(default_factory=dict)   # label name -> TIA_R / sum_i A_R(t_i)
    spikes: np.ndarray | None = None   # (n, z, y, x) bool: scans treated as spikes

    def counts(self) -> dict[str, int]:
        """Voxels per method."""
        return {name: int(np.count_nonzero(self.method == code)) for code, name in METHOD_NAMES.items()}

    def tia_fractions(self) -> dict[str, float]:
        """Fraction of the total TIA from the voxels of each method."""
        total = float(self.tia.sum())
        return {name: (float(self.tia[self.method == code].sum()) / total if total > 0 else 0.0)
                for code, name in METHOD_NAMES.items()}


def voxel_tia(times_s, activity, half_life_s: float, model: str = "auto", *, labels=None,
              label_names: list[str] | None = None, region_model: str = "auto",
              trapezoid_start: str = "zero", effective_half_life_s=None, stp_index: int | None = None,
              what: str = "voxel activity") -> VoxelTIA:
    """TIA (Bq s) of every voxel of ``activity`` (n, z, y, x; Bq at each scan, not decay
    corrected) at ``times_s`` (n,) s after the administration (module docstring).

    ``labels`` (z, y, x) int: the kinetic region of each voxel, 0 .. len(label_names) - 1
    (default: one region, the whole array); ``region_model``: the fit model of the regions'
    curves.
    """
    if model not in VOXEL_MODELS:
        raise InputError(f"voxel model {model!r} (unknown): expected one of {', '.join(VOXEL_MODELS)}")
    t = np.asarray(times_s, dtype=np.float64).reshape(-1)
    a = np.asarray(activity, dtype=np.float64)
    if a.ndim != 4 or a.shape[0] != t.size:
        raise InputError(f"{what} (shape {a.shape}, {t.size} time points): expected (time points, z, y, x)")
    spatial = a.shape[1:]
    if labels is None:
        labels = np.zeros(spatial, dtype=np.int32)
        label_names = ["all"]
    labels = np.asarray(labels)
    if labels.shape != spatial:
        raise InputError(f"kinetic labels (shape {labels.shape}): expected the activity's grid {spatial}")
    names = list(label_names or [])
    if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
        raise InputError(f"kinetic labels (values {labels.min()}..{labels.max()}): expected 0..{len(names) - 1}, one "
                         "per label name")

    fit_model = "auto" if model == "region" else model
    fit = _tia.integrate(t, a, half_life_s, fit_model, effective_half_life_s=effective_half_life_s,
                         stp_index=stp_index, trapezoid_start=trapezoid_start, what=what)
    if model not in FIT_MODELS + ("region",):
        # trapezoid and the single-time-point rules: the same rule for every voxel
        method = np.where(fit.tia > 0, TRAPEZOID if model == "trapezoid" else FIT, NONE).astype(np.uint8)
        return VoxelTIA(fit.tia, fit.rel_uncertainty, method, fit)

    order = np.argsort(t, kind="stable")
    ts, acts = t[order], np.maximum(fit.activity, 0.0)    # fit.activity is time-sorted and clipped
    n = ts.size
    flat = acts.reshape(n, -1)
    lab = labels.reshape(-1)
    n_lab = len(names)

    # ---- the regions' curves and their TIA per unit summed activity --------------------------
    region_tac = np.zeros((n, n_lab))
    for i in range(n):
        region_tac[i] = np.bincount(lab, weights=flat[i], minlength=n_lab)
    # single-time-point region models: the regions' curves by trapezoid
    curve_model = region_model if region_model in FIT_MODELS + ("trapezoid",) else "trapezoid"
    with np.errstate(divide="ignore", invalid="ignore"):
        region_fit = _tia.integrate(ts, region_tac, half_life_s, curve_model, trapezoid_start=trapezoid_start,
                                    what="region activity")
    region_tia = np.asarray(region_fit.tia, dtype=np.float64).reshape(n_lab)
    region_rel = np.asarray(region_fit.rel_uncertainty, dtype=np.float64).reshape(n_lab)
    region_sum = region_tac.sum(axis=0)
    fallback_label = int(np.argmax(region_sum)) if n_lab else 0
    usable = (region_tia > 0) & (region_sum > 0)
    k_region = np.where(usable, region_tia / np.where(region_sum > 0, region_sum, 1.0), 0.0)

    codes = fit.model.reshape(-1)
    params = fit.params.reshape(-1, 4)
    fit_tia = fit.tia.reshape(-1)
    rel = fit.rel_uncertainty.reshape(-1)
    n_vox = flat.shape[1]
    out_tia = np.zeros(n_vox)
    out_rel = np.full(n_vox, np.nan)
    method = np.zeros(n_vox, dtype=np.uint8)
    spikes = np.zeros((n, n_vox), dtype=bool)
    lam_p = np.log(2.0) / half_life_s
    for s0 in range(0, n_vox, _tia.CHUNK):   # bounded memory on large grids
        sl = slice(s0, min(s0 + _tia.CHUNK, n_vox))
        out_tia[sl], out_rel[sl], method[sl], spikes[:, sl] = _classify(
            ts, flat[:, sl], lab[sl], fit_tia[sl], rel[sl], codes[sl], params[sl], region_tac, region_tia,
            region_rel, usable, fallback_label, lam_p, trapezoid_start, model == "region")
    return VoxelTIA(out_tia.reshape(spatial), out_rel.reshape(spatial), method.reshape(spatial), fit,
                    {names[i]: float(k_region[i]) for i in range(n_lab)},
                    spikes.reshape((n,) + spatial))


def _classify(ts, flat, lab, fit_tia, rel, codes, params, region_tac, region_tia, region_rel, usable,
              fallback_label, lam_p, trapezoid_start, region_only):
    """The hierarchy on a chunk of voxels (columns of ``flat``): (tia, rel, method, spikes)."""
    n = ts.size
    # ---- spikes: a scan whose share of the region jumps above the others' ----------------------
    curve = region_tac[:, lab]                                  # (n, voxels) the voxel's region curve
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(curve > 0, flat / np.where(curve > 0, curve, 1.0), 0.0)
    total_share = share.sum(axis=0)
    others_mean = (total_share[None, :] - share) / max(n - 1, 1)
    spikes = (share > 0) & (share > SPIKE_FACTOR * others_mean) if n > 1 else np.zeros_like(share, dtype=bool)
    has_activity = np.any(flat > 0, axis=0)
    has_zero = np.any(flat <= 0, axis=0) & has_activity
    noisy = has_zero | np.any(spikes, axis=0)

    # ---- is the voxel's own fit acceptable? ----------------------------------------------------
    fitted = np.isin(codes, (_tia.MONO, _tia.BIEXP_UPTAKE, _tia.BIEXP))
    peak = flat.max(axis=0)
    pred = np.zeros_like(flat)
    head = np.zeros(flat.shape[1])
    with np.errstate(over="ignore", invalid="ignore"):
        for code in (_tia.MONO, _tia.BIEXP_UPTAKE, _tia.BIEXP):
            sel = codes == code
            if np.any(sel):
                p = params[sel]
                pred[:, sel] = _tia._predict(code, p, ts)
                head[sel] = _tia._predict(code, p, np.zeros(1))[0]
        consistent = np.all(pred <= flat + CURVE_EXCESS * peak[None, :], axis=0)
        bounded_head = head <= HEAD_FACTOR * peak
        precise = ~(rel > FIT_MAX_REL_UNCERTAINTY)             # NaN (no residual dof) passes
    accept = fitted & consistent & bounded_head & precise & ~noisy & has_activity & (not region_only)

    # ---- the hierarchy ------------------------------------------------------------------------
    method = np.full(flat.shape[1], NONE, dtype=np.uint8)
    method[accept] = FIT
    use_trap = has_activity & ~accept & ~noisy & (not region_only)
    method[use_trap] = TRAPEZOID
    use_region = has_activity & ~accept & ~use_trap
    method[use_region] = REGION

    out_tia = np.zeros(flat.shape[1])
    out_rel = np.full(flat.shape[1], np.nan)
    out_tia[accept] = fit_tia[accept]
    out_rel[accept] = rel[accept]
    if np.any(use_trap):
        out_tia[use_trap] = _tia._trapezoid(ts, flat[:, use_trap], lam_p, trapezoid_start)
    if np.any(use_region):
        idx = np.flatnonzero(use_region)
        vl = lab[idx]
        vl = np.where(usable[vl], vl, fallback_label)
        keep = ~spikes[:, idx]
        num = np.where(keep, flat[:, idx], 0.0).sum(axis=0)
        den = np.where(keep, region_tac[:, vl], 0.0).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
            out_tia[idx] = scale * region_tia[vl]
            # scatter of the kept shares (standard error of their mean, relative) with the region fit's
            sh = np.where(keep, flat[:, idx] / np.where(region_tac[:, vl] > 0, region_tac[:, vl], 1.0), np.nan)
            m = keep.sum(axis=0)
            mean = np.nanmean(np.where(m[None, :] > 0, sh, 0.0), axis=0)
            sd = np.sqrt(np.nansum((sh - mean[None, :]) ** 2, axis=0) / np.maximum(m - 1, 1))
            scatter = np.where((m > 1) & (mean > 0), sd / np.sqrt(np.maximum(m, 1)) / np.where(mean > 0, mean, 1.0),
                               np.nan)
            rr = region_rel[vl]
            out_rel[idx] = np.sqrt(np.where(np.isfinite(scatter), scatter, 0.0) ** 2
                                   + np.where(np.isfinite(rr), rr, 0.0) ** 2)
            out_rel[idx] = np.where(np.isfinite(scatter) | np.isfinite(rr), out_rel[idx], np.nan)
    out_rel = np.where(out_tia > 0, out_rel, np.nan)
    return out_tia, out_rel, method, spikes
