"""Physical decay: decay constants, decay correction, and the correction for decay during an
acquisition.

==============================  ===========================================================
function                        gives
==============================  ===========================================================
``decay_constant(T)``           lambda = ln 2 / T (1/s) for a half-life T (s)
``decay_factor(dt, T)``         exp(-lambda dt): activity remaining after dt seconds
``decay_correct(a, dt, T)``     a * exp(lambda dt): activity ``a`` measured dt seconds
                                after a reference time, brought back to that time
``acquisition_factor(d, T)``    lambda d / (1 - exp(-lambda d)): counts collected during an
                                acquisition of d seconds, divided by d, underestimate the
                                activity at the acquisition's start by this factor (1 for d = 0)
==============================  ===========================================================

Times are in seconds. For Lu-177 (T = 6.647 d) and a 20-minute SPECT the acquisition factor is
1.0007; it matters for short-lived nuclides (Tc-99m, Ga-68) and long acquisitions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rptdose._validate import as_float
from rptdose.errors import InputError

LN2 = float(np.log(2.0))


def _half_life(half_life_s: object) -> float:
    t = as_float("half_life_s", half_life_s)
    if not t > 0.0:
        raise InputError(f"half_life_s {t:g} (not positive): expected a half-life > 0 s")
    return t


def decay_constant(half_life_s: float) -> float:
    """Decay constant lambda = ln 2 / T (1/s)."""
    return LN2 / _half_life(half_life_s)


def decay_factor(dt_s: Any, half_life_s: float) -> Any:
    """exp(-lambda * dt): the fraction of activity left after ``dt_s`` seconds (arrays broadcast)."""
    return np.exp(-decay_constant(half_life_s) * np.asarray(dt_s, dtype=np.float64))


def decay_correct(activity: Any, dt_s: Any, half_life_s: float) -> Any:
    """Activity measured ``dt_s`` seconds after a reference time, decay-corrected to that time."""
    return np.asarray(activity, dtype=np.float64) * np.exp(decay_constant(half_life_s) *
                                                           np.asarray(dt_s, dtype=np.float64))


def acquisition_factor(duration_s: float, half_life_s: float) -> float:
    """lambda d / (1 - exp(-lambda d)): activity at the start of an acquisition of ``duration_s``
    seconds = (counts / duration) / sensitivity * this factor. Exactly 1 for ``duration_s`` 0."""
    d = as_float("duration_s", duration_s)
    if d < 0.0:
        raise InputError(f"duration_s {d:g} (negative): expected an acquisition duration >= 0 s")
    x = decay_constant(half_life_s) * d
    if x < 1e-8:
        return 1.0 + 0.5 * x
    return float(x / -np.expm1(-x))
