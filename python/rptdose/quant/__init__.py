"""Quantification: SPECT values to activity, decay correction, registration of time points, and
time-integrated activity.

=====================  ===================================================================
module                 holds
=====================  ===================================================================
``decay``              decay constants, decay correction, decay during an acquisition
``calibration``        counts / cps / Bq/ml -> Bq per voxel at the acquisition start
``registration``       CT-to-CT rigid (and optional BSpline) registration, resampling,
                       transform files, check-image slices
``tia``                vectorised mono/bi-exponential fits, trapezoid + physical tail,
                       single-time-point methods, model selection, uncertainty
``plots``              time-activity curves, registration check images (matplotlib, Agg)
``outputs``            atomic writers of the ``rptdose tia`` outputs
=====================  ===================================================================

The study file that drives them is read by :func:`rptdose.load_study` (``rptdose/study.py``).
"""

from rptdose.quant.calibration import Calibration, QuantWarning, activity_at_start
from rptdose.quant.decay import acquisition_factor, decay_constant, decay_correct, decay_factor
from rptdose.quant.tia import MODELS, FitWarning, TIAResult, integrate

__all__ = ["MODELS", "Calibration", "FitWarning", "QuantWarning", "TIAResult", "acquisition_factor",
           "activity_at_start", "decay_constant", "decay_correct", "decay_factor", "integrate"]
