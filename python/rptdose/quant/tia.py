"""Time-integrated activity (TIA, Bq*s = number of decays) from activities at a few time points,
vectorised over voxels (or regions).

:func:`integrate` takes ``times_s`` (n,) since administration and ``activity`` (n, ...) in Bq
(the physical activity at each scan, *not* decay-corrected) and integrates every column from
the administration (t = 0) to infinity:

================  ====  =====================================================================
model             k     curve and integral
================  ====  =====================================================================
``mono``          2     A0 exp(-l t); TIA = A0 / l. Weighted log-linear least squares (closed
                        form; weights = A_i, i.e. variance proportional to A as for counts).
``biexp_uptake``  3     A (exp(-lw t) - exp(-lu t)), lu > lw: uptake then washout;
                        TIA = A (1/lw - 1/lu). Levenberg-Marquardt, vectorised.
``biexp``         4     A1 exp(-l1 t) + A2 exp(-l2 t), l2 > l1, A1 > 0, A1 + A2 >= 0 (A2 < 0 is
                        an uptake phase); TIA = A1/l1 + A2/l2. Levenberg-Marquardt.
``trapezoid``     --    trapezoids between the points; before the first point per
                        ``trapezoid_start`` ("zero": from A(0) = 0, "constant": A(t1) back to
                        0, "physical": A(t1) decay-corrected back with the physical half-life);
                        after the last point physical decay only: A_n / l_phys
``hanscheid``     --    one scan at t: TIA = A(t) 2 t / ln 2 (Hanscheid et al., J Nucl Med
                        59:75 (2018)); the mono-exponential whose effective half-life is t
``madsen``        --    one scan at t: TIA = A(t) exp(l_eff t) / l_eff with a population
                        effective half-life given by the user (Madsen et al., Med Phys 45:2318
                        (2018))
``auto``          --    per column, the rule below
================  ====  =====================================================================

Non-linear fits minimise sum_i w_i (A_i - f(t_i))^2 with w_i = 1 / max(A_i, 1e-3 max A): the
variance of a point is taken proportional to its value (Poisson-like); the scale comes from the
residuals. Parameters are fitted in log form (rates and their differences stay positive).

Guards (each sets a bit in ``flags``):

=====================  =====  ==============================================================
flag                   bit    when / what happens
=====================  =====  ==============================================================
``FALLBACK``           1      the fit failed or is not physical (an increasing curve, an
                              effective decay slower than physical decay, no convergence):
                              trapezoid + physical tail instead
``TOO_FEW_POINTS``     2      fewer points (> 0) than the model's parameters: trapezoid +
                              physical tail instead (and a :class:`FitWarning`)
``CLIPPED``            4      negative activities were set to 0 (and a :class:`FitWarning`)
``NO_DOF``             8      as many points as parameters: an exact fit, no uncertainty
=====================  =====  ==============================================================

Uncertainty: the relative standard uncertainty of the TIA from the fit covariance (s^2 (J^T W
J)^-1, s^2 = weighted residual sum of squares / (n - k)) by first-order propagation; NaN where
it is not defined (no fit: trapezoid, single-time-point methods; no residual degrees of freedom;
TIA 0).

``auto`` rule (model selection with the corrected Akaike information criterion, AICc, as
recommended for dosimetry fits by Glatting et al., Med Phys 34:4285 (2007)): for n points the
candidates are mono (n >= 2), biexp_uptake (n >= 5) and biexp (n >= 6), i.e. those whose AICc
is defined (n >= k + 2), and mono alone when n < 4; fits that are not physical drop out; the
lowest AICc = n ln(RSS/n) + 2k + 2k(k+1)/(n-k-1) wins (RSS weighted as above, the same for all
models); if none remains: trapezoid + physical tail with the FALLBACK flag. One point: an error
(use ``hanscheid`` or ``madsen``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rptdose.errors import InputError

MODELS = ("auto", "mono", "biexp", "biexp_uptake", "trapezoid", "hanscheid", "madsen")
#: Model codes stored per column in :attr:`TIAResult.model`.
NONE, MONO, BIEXP_UPTAKE, BIEXP, TRAPEZOID, HANSCHEID, MADSEN = range(7)
MODEL_NAMES = {NONE: "none", MONO: "mono", BIEXP_UPTAKE: "biexp_uptake", BIEXP: "biexp", TRAPEZOID: "trapezoid",
               HANSCHEID: "hanscheid", MADSEN: "madsen"}
N_PARAMS = {MONO: 2, BIEXP_UPTAKE: 3, BIEXP: 4}
FALLBACK, TOO_FEW_POINTS, CLIPPED, NO_DOF = 1, 2, 4, 8
FLAG_NAMES = {FALLBACK: "fallback_trapezoid", TOO_FEW_POINTS: "too_few_points", CLIPPED: "negative_clipped",
              NO_DOF: "exact_fit_no_uncertainty"}
TRAPEZOID_STARTS = ("zero", "constant", "physical")

#: A fitted effective decay constant may be this much (relative) below the physical one.
PHYSICAL_RATE_TOL = 1e-3
#: Levenberg-Marquardt settings.
LM_MAX_ITER = 100
LM_RTOL = 1e-10
#: Columns fitted at once (bounds the memory of the vectorised fits).
CHUNK = 1 << 18


class FitWarning(UserWarning):
    """A time-activity fit needed a guard (clipped negatives, too few points for the model)."""


@dataclass
class TIAResult:
    """TIA per column and how it was obtained. Arrays have the shape of ``activity[0]``."""

    tia: np.ndarray                  # Bq*s
    rel_uncertainty: np.ndarray      # relative 1-sigma (NaN where undefined)
    model: np.ndarray                # uint8 model codes (MODEL_NAMES)
    flags: np.ndarray                # uint8 bit flags (FLAG_NAMES)
    params: np.ndarray               # (..., 4) fitted parameters (see curve()), NaN-padded
    times_s: np.ndarray              # (n,) the time points
    activity: np.ndarray             # (n, ...) the activities used (after clipping)
    half_life_s: float
    trapezoid_start: str = "zero"
    settings: dict = field(default_factory=dict)

    def curve(self, t_s: Any, index: Any = ()) -> np.ndarray:
        """The fitted curve A(t) (Bq) of one column (``index`` into the spatial shape) at ``t_s``."""
        t = np.asarray(t_s, dtype=np.float64)
        code = int(self.model[index])
        p = self.params[index]
        if code in (MONO, HANSCHEID, MADSEN):
            return p[0] * np.exp(-p[1] * t)
        if code == BIEXP_UPTAKE:
            return p[0] * (np.exp(-p[1] * t) - np.exp(-p[2] * t))
        if code == BIEXP:
            return p[0] * np.exp(-p[1] * t) + p[2] * np.exp(-p[3] * t)
        if code == TRAPEZOID:
            idx = index if isinstance(index, tuple) else (index,)
            a = np.asarray(self.activity[(slice(None),) + idx], dtype=np.float64).reshape(-1)
            ts = self.times_s
            lam = np.log(2.0) / self.half_life_s
            a0 = {"zero": 0.0, "constant": a[0], "physical": a[0] * np.exp(lam * ts[0])}[self.trapezoid_start]
            out = np.interp(t, np.concatenate([[0.0], ts]), np.concatenate([[a0], a]))
            return np.where(t > ts[-1], a[-1] * np.exp(-lam * (t - ts[-1])), out)
        return np.zeros_like(t)

    def model_name(self, index: Any = ()) -> str:
        return MODEL_NAMES[int(self.model[index])]

    def flag_names(self, index: Any = ()) -> list[str]:
        f = int(self.flags[index])
        return [name for bit, name in FLAG_NAMES.items() if f & bit]


def _check_model(model: object, name: str = "model") -> str:
    if not isinstance(model, str) or model not in MODELS:
        raise InputError(f"{name} {model!r} (unknown): expected one of {', '.join(MODELS)}")
    return model


def integrate(times_s: Any, activity: Any, half_life_s: float, model: str = "auto", *,
              effective_half_life_s: Any = None, stp_index: int | None = None,
              trapezoid_start: str = "zero", what: str = "activity") -> TIAResult:
    """TIA (Bq*s) of each column of ``activity`` (n, ...) sampled at ``times_s`` (n,) seconds after
    administration (see the module docstring for the models, guards and uncertainty).

    Parameters
    ----------
    effective_half_life_s : float or array like ``activity[0]``
        Population effective half-life (s) for ``model="madsen"``.
    stp_index : int, optional
        Which time point (0-based, in the order given) the single-time-point methods use when
        there are several; required then.
    """
    from rptdose.quant.decay import decay_constant

    model = _check_model(model)
    if trapezoid_start not in TRAPEZOID_STARTS:
        raise InputError(f"trapezoid_start {trapezoid_start!r} (unknown): expected one of "
                         f"{', '.join(TRAPEZOID_STARTS)}")
    t = np.asarray(times_s, dtype=np.float64).reshape(-1)
    a = np.array(activity, dtype=np.float64, copy=True)
    one_curve = a.ndim == 1 and a.size == t.size   # a single curve: scalar results
    if a.ndim == 1:
        a = a[:, None] if one_curve else a[None, :]
    if a.shape[0] != t.size:
        raise InputError(f"{what} (first axis {a.shape[0]}, {t.size} time points): expected one value per time point")
    if t.size < 1:
        raise InputError("times_s (empty): expected at least one time point")
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise InputError(f"times_s {t.tolist()} (not all > 0): expected times after the administration (s)")
    if np.any(np.diff(np.sort(t)) <= 0):
        raise InputError(f"times_s {t.tolist()} (repeated time): expected distinct time points")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{what} (NaN or infinite values): expected finite activities (Bq)")
    order = np.argsort(t, kind="stable")
    t, a = t[order], a[order]
    if stp_index is not None:
        stp_index = int(np.flatnonzero(order == stp_index)[0])
    spatial = () if one_curve else a.shape[1:]
    a = a.reshape(t.size, -1)
    lam_p = decay_constant(half_life_s)
    n_cols = a.shape[1]
    tia = np.zeros(n_cols)
    rel = np.full(n_cols, np.nan)
    codes = np.zeros(n_cols, dtype=np.uint8)
    flags = np.zeros(n_cols, dtype=np.uint8)
    params = np.full((n_cols, 4), np.nan)
    neg = a < 0
    if np.any(neg):
        n_neg = int(np.count_nonzero(np.any(neg, axis=0)))
        warnings.warn(f"{what}: {int(np.count_nonzero(neg))} negative values in {n_neg} columns clipped to 0 "
                      f"(minimum {float(a.min()):.4g})", FitWarning, stacklevel=2)
        flags[np.any(neg, axis=0)] |= CLIPPED
        a = np.maximum(a, 0.0)
    n = t.size
    if model in ("hanscheid", "madsen"):
        if n > 1 and stp_index is None:
            raise InputError(f"model {model!r} ({n} time points): a single-time-point method uses one scan; give "
                             "its index (tia.timepoint in the study file)")
        k = 0 if n == 1 else stp_index
        tk, ak = t[k], a[k]
        if model == "hanscheid":
            lam = np.full(n_cols, np.log(2.0) / tk)
            codes[:] = HANSCHEID
        else:
            if effective_half_life_s is None:
                raise InputError("effective_half_life_s (missing): model 'madsen' needs a population effective "
                                 "half-life (tia.effective_half_life_h in the study file)")
            teff = np.asarray(effective_half_life_s, dtype=np.float64)
            teff = np.full(n_cols, float(teff)) if teff.ndim == 0 else teff.reshape(-1)
            if teff.size != n_cols:
                raise InputError(f"effective_half_life_s ({teff.size} values for {n_cols} columns): expected one "
                                 "value, or one per column")
            if not np.all(np.isfinite(teff)) or np.any(teff <= 0):
                raise InputError("effective_half_life_s (not all finite and > 0): expected positive half-lives")
            lam = np.log(2.0) / teff
            codes[:] = MADSEN
        tia = ak * np.exp(lam * tk) / lam
        params[:, 0], params[:, 1] = ak * np.exp(lam * tk), lam
        return _result(tia, rel, codes, flags, params, t, a, spatial, half_life_s, trapezoid_start, model)
    if model == "trapezoid":
        tia = _trapezoid(t, a, lam_p, trapezoid_start)
        codes[:] = TRAPEZOID
        return _result(tia, rel, codes, flags, params, t, a, spatial, half_life_s, trapezoid_start, model)
    if n == 1:
        raise InputError(f"model {model!r} (1 time point): a fit needs at least 2; use model 'hanscheid' or "
                         "'madsen' (with tia.effective_half_life_h) for a single scan")
    for s in range(0, n_cols, CHUNK):
        sl = slice(s, min(s + CHUNK, n_cols))
        # noisy columns (zeros, spikes, values near the floating-point limits) overflow and
        # underflow inside the fits; every result is checked for finiteness and physics after, so
        # numpy's floating-point warnings are noise to the user
        with np.errstate(all="ignore"):
            out = _fit_chunk(t, a[:, sl], lam_p, model, trapezoid_start)
        tia[sl], rel[sl], codes[sl], params[sl] = out[0], out[1], out[2], out[4]
        flags[sl] |= out[3]
    if np.any(flags & TOO_FEW_POINTS):
        warnings.warn(f"{what}: model {model!r} has more parameters than the {n} time points in "
                      f"{int(np.count_nonzero(flags & TOO_FEW_POINTS))} columns: trapezoid + physical tail used there",
                      FitWarning, stacklevel=2)
    return _result(tia, rel, codes, flags, params, t, a, spatial, half_life_s, trapezoid_start, model)


def _result(tia, rel, codes, flags, params, t, a, spatial, half_life_s, start, model) -> TIAResult:
    zero = ~(tia > 0)
    rel = np.where(zero, np.nan, rel)
    return TIAResult(tia.reshape(spatial), rel.reshape(spatial), codes.reshape(spatial), flags.reshape(spatial),
                     params.reshape(spatial + (4,)), t, a.reshape((t.size,) + spatial), float(half_life_s), start,
                     {"model": model, "trapezoid_start": start})


def _trapezoid(t: np.ndarray, a: np.ndarray, lam_p: float, start: str) -> np.ndarray:
    if start == "zero":
        head = 0.5 * a[0] * t[0]
    elif start == "constant":
        head = a[0] * t[0]
    else:
        head = a[0] * np.expm1(lam_p * t[0]) / lam_p
    body = np.sum(0.5 * (a[1:] + a[:-1]) * np.diff(t)[:, None], axis=0) if t.size > 1 else 0.0
    return head + body + a[-1] / lam_p


def _weights(a: np.ndarray) -> np.ndarray:
    floor = 1e-3 * np.max(a, axis=0, keepdims=True)
    w = 1.0 / np.maximum(a, np.where(floor > 0, floor, 1.0))
    return w / np.max(w, axis=0, keepdims=True)


def _fit_chunk(t, a, lam_p, model, start):
    n, m = a.shape
    tia = _trapezoid(t, a, lam_p, start)
    rel = np.full(m, np.nan)
    codes = np.full(m, TRAPEZOID, dtype=np.uint8)
    flags = np.zeros(m, dtype=np.uint8)
    params = np.full((m, 4), np.nan)
    nonzero = np.any(a > 0, axis=0)
    codes[~nonzero] = NONE
    tia[~nonzero] = 0.0
    w = _weights(a)
    if model == "auto":
        candidates = [MONO] + ([BIEXP_UPTAKE] if n >= 5 else []) + ([BIEXP] if n >= 6 else [])
    else:
        candidates = [{"mono": MONO, "biexp_uptake": BIEXP_UPTAKE, "biexp": BIEXP}[model]]
        k = N_PARAMS[candidates[0]]
        if n < k:
            flags[nonzero] |= TOO_FEW_POINTS
            return tia, rel, codes, flags, params
    best_score = np.full(m, np.inf)
    fits = {}
    for code in candidates:
        k = N_PARAMS[code]
        if code == MONO:
            fit = _fit_mono(t, a, lam_p)
        else:
            fit = _fit_lm(t, a, w, lam_p, code)
        f_tia, f_rel, f_params, valid = fit
        valid &= nonzero & np.isfinite(f_tia) & (f_tia > 0)
        pred = _predict(code, f_params, t)
        rss = np.sum(w * (a - pred) ** 2, axis=0)
        scale = np.sum(w * a ** 2, axis=0)
        rss = np.maximum(rss, 1e-14 * np.maximum(scale, 1e-300))
        if model == "auto" and n >= k + 2:
            score = n * np.log(rss / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)
        elif model == "auto" and len(candidates) > 1:
            continue  # AICc undefined: not a candidate when others are
        else:
            score = np.zeros(m)
        better = valid & (score < best_score - 1e-9)
        best_score = np.where(better, score, best_score)
        tia = np.where(better, f_tia, tia)
        rel = np.where(better, f_rel, rel)
        codes = np.where(better, code, codes).astype(np.uint8)
        params = np.where(better[:, None], f_params, params)
        fits[code] = better
        flags[better & ~np.isfinite(f_rel)] |= NO_DOF
    fell_back = nonzero & (codes == TRAPEZOID)
    flags[fell_back] |= FALLBACK
    return tia, rel, codes, flags, params


def _predict(code: int, p: np.ndarray, t: np.ndarray) -> np.ndarray:
    tt = t[:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        if code == MONO:
            out = p[:, 0] * np.exp(-p[:, 1] * tt)
        elif code == BIEXP_UPTAKE:
            out = p[:, 0] * (np.exp(-p[:, 1] * tt) - np.exp(-p[:, 2] * tt))
        else:
            out = p[:, 0] * np.exp(-p[:, 1] * tt) + p[:, 2] * np.exp(-p[:, 3] * tt)
    return np.nan_to_num(out, nan=np.inf)


def _fit_mono(t: np.ndarray, a: np.ndarray, lam_p: float):
    """Weighted log-linear least squares, closed form: ln A = alpha - l t, weights A."""
    n, m = a.shape
    pos = a > 0
    scale = np.max(a, axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    w = np.where(pos, a / scale, 0.0)
    y = np.where(pos, np.log(np.where(pos, a / scale, 1.0)), 0.0)
    tt = t[:, None]
    s0, s1, s2 = w.sum(0), (w * tt).sum(0), (w * tt * tt).sum(0)
    sy, sty = (w * y).sum(0), (w * tt * y).sum(0)
    det = s0 * s2 - s1 * s1
    n_used = pos.sum(0)
    ok = (n_used >= 2) & (det > 1e-300 * np.maximum(s2 * s0, 1e-300))
    det = np.where(ok, det, 1.0)
    b = (s0 * sty - s1 * sy) / det              # slope = -lambda
    alpha = (sy - b * s1) / np.where(s0 > 0, s0, 1.0)
    lam = -b
    with np.errstate(over="ignore"):
        a0 = np.exp(alpha) * scale
    resid = y - (alpha - lam * tt)
    dof = n_used - 2
    s2_res = np.where(dof > 0, (w * resid ** 2 * pos).sum(0) / np.maximum(dof, 1), np.nan)
    var_a, var_b, cov_ab = s2_res * s2 / det, s2_res * s0 / det, -s2_res * s1 / det
    with np.errstate(divide="ignore", invalid="ignore"):
        tia = a0 / lam
        rel_var = var_a + var_b / lam ** 2 + 2 * cov_ab / lam
        rel = np.sqrt(np.maximum(rel_var, 0.0))
    valid = ok & np.isfinite(a0) & (lam >= lam_p * (1 - PHYSICAL_RATE_TOL))
    params = np.full((m, 4), np.nan)
    params[:, 0], params[:, 1] = a0, lam
    return np.where(valid, tia, np.nan), np.where(valid, rel, np.nan), params, valid


# ---- Levenberg-Marquardt for the bi-exponentials (vectorised over columns) --------------------

def _model_jac(code: int, theta: np.ndarray, t: np.ndarray):
    """f (n, m) and J (m, n, k) for the log-parameterised models."""
    tt = t[:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        if code == BIEXP_UPTAKE:        # theta = (ln A, ln lw, ln(lu - lw))
            A, lw = np.exp(theta[:, 0]), np.exp(theta[:, 1])
            lu = lw + np.exp(theta[:, 2])
            ew, eu = np.exp(-lw * tt), np.exp(-lu * tt)
            f = A * (ew - eu)
            d0 = f
            d1 = A * lw * tt * (eu - ew)          # d/d ln lw (lu moves with lw)
            d2 = A * (lu - lw) * tt * eu          # d/d ln(lu - lw)
            jac = np.stack([d0, d1, d2], axis=-1)
        else:                            # theta = (A1, ln l1, A2, ln(l2 - l1))
            A1, l1, A2 = theta[:, 0], np.exp(theta[:, 1]), theta[:, 2]
            l2 = l1 + np.exp(theta[:, 3])
            e1, e2 = np.exp(-l1 * tt), np.exp(-l2 * tt)
            f = A1 * e1 + A2 * e2
            d0 = e1
            d1 = -(A1 * e1 + A2 * e2) * l1 * tt
            d2 = e2
            d3 = -A2 * e2 * (l2 - l1) * tt
            jac = np.stack([d0, d1, d2, d3], axis=-1)
    return f, np.transpose(jac, (1, 0, 2))


def _theta_to_params(code: int, theta: np.ndarray) -> np.ndarray:
    m = theta.shape[0]
    p = np.full((m, 4), np.nan)
    with np.errstate(over="ignore", invalid="ignore"):
        if code == BIEXP_UPTAKE:
            p[:, 0], p[:, 1] = np.exp(theta[:, 0]), np.exp(theta[:, 1])
            p[:, 2] = p[:, 1] + np.exp(theta[:, 2])
        else:
            p[:, 0], p[:, 1], p[:, 2] = theta[:, 0], np.exp(theta[:, 1]), theta[:, 2]
            p[:, 3] = p[:, 1] + np.exp(theta[:, 3])
    return p


def _tia_grad(code: int, theta: np.ndarray):
    p = _theta_to_params(code, theta)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if code == BIEXP_UPTAKE:
            A, lw, lu = p[:, 0], p[:, 1], p[:, 2]
            tia = A * (1 / lw - 1 / lu)
            g0 = tia
            g1 = A * (-1 / lw + lw / lu ** 2)            # d/d ln lw: lw * (-1/lw^2 + 1/lu^2)
            g2 = A * (lu - lw) / lu ** 2                 # d/d ln(lu - lw)
            grad = np.stack([g0, g1, g2], axis=-1)
        else:
            A1, l1, A2, l2 = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
            tia = A1 / l1 + A2 / l2
            g0 = 1 / l1
            g1 = -A1 / l1 - A2 * l1 / l2 ** 2
            g2 = 1 / l2
            g3 = -A2 * (l2 - l1) / l2 ** 2
            grad = np.stack([g0, g1, g2, g3], axis=-1)
    return tia, grad, p


def _starts(code: int, t: np.ndarray, a: np.ndarray, lam_p: float) -> list[np.ndarray]:
    n, m = a.shape
    peak = np.argmax(a, axis=0)
    # slow component: log-linear fit of the points from the peak on (or the last two)
    tail_mask = np.arange(n)[:, None] >= np.minimum(peak, n - 2)[None, :]
    mono_tia, _, mono_p, _ = _fit_mono(t, np.where(tail_mask, a, 0.0), 0.0)
    lam_slow = np.where(np.isfinite(mono_p[:, 1]) & (mono_p[:, 1] > lam_p), mono_p[:, 1], lam_p * 1.01)
    a_slow = np.where(np.isfinite(mono_p[:, 0]) & (mono_p[:, 0] > 0), mono_p[:, 0], np.max(a, axis=0))
    starts = []
    for factor in (3.0, 10.0, 30.0):
        lam_fast = lam_slow * factor
        if code == BIEXP_UPTAKE:
            tp = t[peak]
            denom = np.exp(-lam_slow * tp) - np.exp(-lam_fast * tp)
            amp = np.maximum(a[peak, np.arange(m)] / np.maximum(denom, 1e-12), 1e-30)
            starts.append(np.stack([np.log(amp), np.log(lam_slow), np.log(lam_fast - lam_slow)], axis=-1))
        else:
            r0 = a[0] - a_slow * np.exp(-lam_slow * t[0])
            a_fast = r0 * np.exp(lam_fast * t[0])
            a_fast = np.maximum(a_fast, -a_slow)
            starts.append(np.stack([a_slow, np.log(lam_slow), a_fast, np.log(lam_fast - lam_slow)], axis=-1))
    return starts


def _lm(code: int, t: np.ndarray, a: np.ndarray, w: np.ndarray, theta: np.ndarray):
    m, k = theta.shape
    sw = np.sqrt(w)
    log_params = [0, 1, 2] if code == BIEXP_UPTAKE else [1, 3]
    mu = np.full(m, 1e-3)

    def cost_of(th, idx):
        f, _ = _model_jac(code, th, t)
        r = sw[:, idx] * (a[:, idx] - f)
        c = np.sum(r * r, axis=0)
        return np.where(np.isfinite(c), c, np.inf)

    cost = cost_of(theta, np.arange(m))
    active = np.isfinite(cost)
    eye = np.eye(k)
    for _ in range(LM_MAX_ITER):
        if not np.any(active):
            break
        idx = np.flatnonzero(active)
        th = theta[idx]
        f, jac = _model_jac(code, th, t)
        r = (sw[:, idx] * (a[:, idx] - f)).T                      # (m', n)
        jw = jac * sw[:, idx].T[:, :, None]                         # (m', n, k)
        jwt = np.transpose(jw, (0, 2, 1))
        jtj = jwt @ jw
        jtr = (jwt @ r[..., None])[..., 0]
        diag = np.diagonal(jtj, axis1=1, axis2=2)
        lhs = jtj + (mu[idx][:, None, None] * (diag[:, :, None] * eye + 1e-12 * eye))
        try:
            step = np.linalg.solve(lhs, jtr[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.zeros_like(th)
            for i in range(len(idx)):
                try:
                    step[i] = np.linalg.solve(lhs[i], jtr[i])
                except np.linalg.LinAlgError:
                    step[i] = 0.0
        step = np.where(np.isfinite(step), step, 0.0)
        step[:, log_params] = np.clip(step[:, log_params], -5.0, 5.0)  # rates change by at most e^5 a step
        trial = th + step
        new_cost = cost_of(trial, idx)
        old = cost[idx]
        better = new_cost < old
        theta[idx[better]] = trial[better]
        cost[idx[better]] = new_cost[better]
        mu[idx[better]] = np.maximum(mu[idx[better]] / 3.0, 1e-12)
        mu[idx[~better]] = mu[idx[~better]] * 4.0
        rel_change = np.abs(old - np.where(better, new_cost, old)) / np.maximum(old, 1e-300)
        small_step = np.max(np.abs(step), axis=1) < 1e-9
        done = (better & ((rel_change < LM_RTOL) | small_step)) | (mu[idx] > 1e8) | (old <= 1e-300)
        active[idx[done]] = False
    return theta, cost


def _valid_params(code: int, params: np.ndarray, cost: np.ndarray, lam_p: float) -> np.ndarray:
    k = N_PARAMS[code]
    with np.errstate(invalid="ignore"):
        valid = (params[:, 1] >= lam_p * (1 - PHYSICAL_RATE_TOL)) & (params[:, 0] > 0)
        if code == BIEXP:
            valid &= params[:, 0] + params[:, 2] >= -1e-9 * np.abs(params[:, 0])
    return valid & np.isfinite(cost) & np.all(np.isfinite(params[:, :k]), axis=1)


def _fit_lm(t: np.ndarray, a: np.ndarray, w: np.ndarray, lam_p: float, code: int):
    """Levenberg-Marquardt from the first start; the other starts only where that fit is not
    physical (keeps the cost of the vectorised fit near one run)."""
    n, m = a.shape
    k = N_PARAMS[code]
    starts = _starts(code, t, a, lam_p)
    theta, cost = _lm(code, t, a, w, np.array(starts[0], dtype=np.float64))
    valid = _valid_params(code, _theta_to_params(code, theta), cost, lam_p)
    for theta0 in starts[1:]:
        redo = np.flatnonzero(~valid)
        if redo.size == 0:
            break
        th2, c2 = _lm(code, t, a[:, redo], w[:, redo], np.array(theta0[redo], dtype=np.float64))
        ok2 = _valid_params(code, _theta_to_params(code, th2), c2, lam_p)
        take = ok2 | (c2 < cost[redo])
        theta[redo[take]] = th2[take]
        cost[redo[take]] = c2[take]
        valid[redo[take]] = ok2[take]
    tia, grad, params = _tia_grad(code, theta)
    _, jac = _model_jac(code, theta, t)
    jw = jac * np.sqrt(w).T[:, :, None]
    jtj = np.transpose(jw, (0, 2, 1)) @ jw
    dof = n - k
    rel = np.full(m, np.nan)
    if dof > 0:
        s2 = cost / dof
        ok = np.isfinite(jtj).all(axis=(1, 2)) & valid
        cov = np.full_like(jtj, np.nan)
        if np.any(ok):
            try:
                cov[ok] = np.linalg.pinv(jtj[ok]) * s2[ok][:, None, None]
            except np.linalg.LinAlgError:
                pass
        var = np.einsum("mk,mkl,ml->m", grad, cov, grad)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.sqrt(np.maximum(var, 0.0)) / np.abs(tia)
    valid = _valid_params(code, params, cost, lam_p)
    return np.where(valid, tia, np.nan), np.where(valid, rel, np.nan), params, valid


def effective_half_life_s(result: TIAResult, index: Any = ()) -> float:
    """Effective half-life (s) of a mono-exponential (or single-time-point) column; NaN otherwise."""
    code = int(result.model[index])
    if code in (MONO, HANSCHEID, MADSEN):
        return float(np.log(2.0) / result.params[index][1])
    if code == BIEXP_UPTAKE:
        return float(np.log(2.0) / result.params[index][1])
    return float("nan")
