"""From reconstructed SPECT values to activity (Bq per voxel) at the start of the acquisition.

=============  ===================  ==========================================================
series unit    calibration mode     activity per voxel at the acquisition start (Bq)
=============  ===================  ==========================================================
counts         ``sensitivity``,     counts / (S * d) * F(d);  S = sensitivity_cps_per_mbq *
               ``phantom``, ``file``  1e-6 (cps per Bq), d = acquisition duration (s)
cps            the same             cps / S * F(d)  (F = 1 when d is unknown)
Bq/ml          ``quantitative``     C * V, V = voxel volume (ml); then by DecayCorrection
                                    (0054,1102): START as it is; ADMIN (values decay-corrected
                                    to the administration) * exp(-lambda t); NONE (mean over
                                    the acquisition) * F(d)
=============  ===================  ==========================================================

F(d) = lambda d / (1 - exp(-lambda d)) turns the mean activity during an acquisition of d
seconds into the activity at its start (:func:`rptdose.quant.decay.acquisition_factor`).
A series in counts with ``quantitative``, or in Bq/ml with ``sensitivity`` (``phantom``,
``file``), is refused: the calibration must match what the series holds.

Where the sensitivity S comes from (:class:`Calibration` ``mode``):

=================  ==========================================================================
``sensitivity``    typed by hand (``calibration.sensitivity_cps_per_mbq``); its relative
                   standard uncertainty only when given (``sensitivity_uncertainty_pct``),
                   else unknown (NaN)
``phantom``        derived now from a SPECT of a uniform phantom of known activity
                   (:func:`rptdose.quant.phantom_calibration.calibrate_from_phantom`), with
                   its uncertainty (dose calibrator and counting statistics)
``file``           read from a calibration file written by ``rptdose calibrate``
                   (:func:`rptdose.quant.phantom_calibration.read_calibration`): one
                   phantom calibration of a camera reused for many patients
=================  ==========================================================================

``Calibration.u_calibration`` (alias ``u_rel``) is the relative standard uncertainty of S, the
``u_calibration`` of the region table's uncertainty budget (NaN where unknown, and for
``quantitative``: the series' own calibration is not known to rptdose);
:meth:`Calibration.info` gives the flat ``calibration.*`` entries for tables and provenance.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rptdose.errors import InputError
from rptdose.quant.decay import acquisition_factor, decay_factor

CALIBRATION_MODES = ("quantitative", "sensitivity", "phantom", "file")
#: The modes whose series are in counts or cps, converted with a sensitivity S.
SENSITIVITY_MODES = ("sensitivity", "phantom", "file")
#: Warn when the activity found in the field of view, decay-corrected to the administration,
#: exceeds the administered activity by more than this fraction (calibration or duration error).
FOV_EXCESS_WARN = 0.10


class QuantWarning(UserWarning):
    """A quantification result that deserves a look (more activity found than administered)."""


@dataclass(frozen=True)
class Calibration:
    """``mode`` "quantitative" (the series is in Bq/ml) or "sensitivity" (counts or cps, with
    ``sensitivity_cps_per_mbq``: counts per second in the reconstructed image per MBq), or
    "phantom" / "file": like "sensitivity", with the sensitivity derived from a phantom SPECT or
    read from a calibration file (``rptdose.quant.phantom_calibration``).

    ``rel_uncertainty``: the relative standard uncertainty of the sensitivity (None: unknown);
    ``camera``: the calibration's camera identity (manufacturer, model, collimator, energy
    windows, reconstruction) when known; ``nuclide``: what it was measured with; ``source``: a
    description of where it came from (file or phantom); ``record``: the whole calibration
    record (phantom measurement, created, provenance) for provenance."""

    mode: str
    sensitivity_cps_per_mbq: float | None = None
    rel_uncertainty: float | None = None
    camera: Mapping[str, Any] | None = field(default=None, compare=False)
    nuclide: str | None = None
    source: str = ""
    record: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in CALIBRATION_MODES:
            raise InputError(f"calibration.mode {self.mode!r} (unknown): expected one of "
                             f"{', '.join(repr(m) for m in CALIBRATION_MODES)}")
        if self.mode in SENSITIVITY_MODES:
            s = self.sensitivity_cps_per_mbq
            ok = isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s > 0
            if not ok:
                origin = {"sensitivity": "the camera's sensitivity in counts per second per MBq with mode = "
                                         "'sensitivity'",
                          "phantom": "the sensitivity (cps/MBq) derived from the phantom SPECT with mode = 'phantom'",
                          "file": "the sensitivity (cps/MBq) of the calibration file with mode = 'file'"}[self.mode]
                raise InputError(f"calibration.sensitivity_cps_per_mbq {s!r} (missing or not > 0): expected {origin}")
        u = self.rel_uncertainty
        if u is not None and (isinstance(u, bool) or not isinstance(u, (int, float)) or not math.isfinite(u)
                              or u < 0):
            raise InputError(f"calibration rel_uncertainty {u!r} (not a finite number >= 0): expected the relative "
                             "standard uncertainty of the sensitivity (e.g. 0.02 for 2 %), or None when unknown")

    @property
    def u_calibration(self) -> float:
        """Relative standard uncertainty of the calibration (NaN when unknown)."""
        return float(self.rel_uncertainty) if self.rel_uncertainty is not None else float("nan")

    @property
    def u_rel(self) -> float:
        """The same as :attr:`u_calibration`."""
        return self.u_calibration

    def info(self) -> dict[str, Any]:
        """Flat ``calibration.*`` entries for a region table, a report or provenance:
        ``calibration.mode``, ``calibration.sensitivity_cps_per_mbq`` (None for quantitative),
        ``calibration.u_rel`` (NaN when unknown), ``calibration.nuclide``, ``calibration.source``,
        ``calibration.camera`` (a one-line description, "" when unknown) and
        ``calibration.created`` (when the phantom calibration was made, "" otherwise)."""

        created = str((self.record or {}).get("created", "") or "")
        return {"calibration.mode": self.mode, "calibration.sensitivity_cps_per_mbq": self.sensitivity_cps_per_mbq,
                "calibration.u_rel": self.u_calibration, "calibration.nuclide": self.nuclide,
                "calibration.source": self.source,
                "calibration.camera": describe_camera(self.camera) if self.camera else "",
                "calibration.created": created}


def activity_at_start(values: np.ndarray, units: str, calibration: Calibration, half_life_s: float, *,
                      voxel_volume_ml: float, duration_s: float | None, decay_correction: str = "START",
                      time_since_administration_s: float | None = None, where: str = "spect",
                      units_source: str = "") -> tuple[np.ndarray, dict]:
    """Activity per voxel (Bq) at the acquisition start, and a dict saying what was applied."""
    v = np.asarray(values, dtype=np.float64)
    info: dict[str, Any] = {"units": units, "calibration": calibration.mode}
    if units == "bq_per_ml":
        if calibration.mode != "quantitative":
            raise InputError(f"calibration.mode {calibration.mode!r} ({where} is in Bq/ml per {units_source}): "
                             "expected mode = 'quantitative' for a quantitative series")
        activity = v * voxel_volume_ml
        if decay_correction == "ADMIN":
            if time_since_administration_s is None:
                raise InputError(f"{where} (DecayCorrection ADMIN but no administration time): expected "
                                 "administration.time")
            factor = float(decay_factor(time_since_administration_s, half_life_s))
        elif decay_correction == "NONE":
            if duration_s is None:
                raise InputError(f"{where} (DecayCorrection (0054,1102) NONE and no acquisition duration: "
                                 "ActualFrameDuration (0018,1242) absent): expected the frame duration, or "
                                 "timepoint.duration_s in the study file")
            factor = acquisition_factor(duration_s, half_life_s)
        else:
            factor = 1.0
        info.update(decay_correction=decay_correction, factor=factor)
        return activity * factor, info
    if calibration.mode not in SENSITIVITY_MODES:
        raise InputError(f"calibration.mode 'quantitative' ({where} is in {units} per {units_source}): expected a "
                         "series in Bq/ml, or mode = 'sensitivity' with sensitivity_cps_per_mbq")
    s_cps_per_bq = float(calibration.sensitivity_cps_per_mbq) * 1e-6
    if units == "counts":
        if duration_s is None:
            raise InputError(f"{where} (counts, but the acquisition duration is unknown: no "
                             "RotationInformationSequence (0054,0052) with NumberOfFramesInRotation and "
                             "ActualFrameDuration, no ActualFrameDuration (0018,1242)): expected these tags, or "
                             "timepoint.duration_s in the study file")
        f = acquisition_factor(duration_s, half_life_s)
        info.update(duration_s=duration_s, factor=f, sensitivity_cps_per_mbq=calibration.sensitivity_cps_per_mbq,
                    u_calibration=calibration.u_calibration)
        return v / (s_cps_per_bq * duration_s) * f, info
    if units == "cps":
        f = acquisition_factor(duration_s, half_life_s) if duration_s is not None else 1.0
        info.update(duration_s=duration_s, factor=f, sensitivity_cps_per_mbq=calibration.sensitivity_cps_per_mbq,
                    u_calibration=calibration.u_calibration)
        return v / s_cps_per_bq * f, info
    raise InputError(f"{where} (units {units!r}): expected counts, cps or bq_per_ml")


def check_fov_total(decay_corrected_bq: float, administered_bq: float, where: str) -> None:
    """Warn when the field of view holds more activity than was given (after decay correction)."""
    if administered_bq > 0 and decay_corrected_bq > (1 + FOV_EXCESS_WARN) * administered_bq:
        warnings.warn(f"{where}: the field of view holds {decay_corrected_bq / 1e6:.4g} MBq decay-corrected to the "
                      f"administration, {100 * decay_corrected_bq / administered_bq:.1f} % of the administered "
                      f"{administered_bq / 1e6:.4g} MBq: check the calibration factor and the acquisition duration",
                      QuantWarning, stacklevel=3)


def describe_camera(camera: Mapping[str, Any] | None) -> str:
    """One line: manufacturer model (serial), collimator, energy windows, reconstruction."""
    if not camera:
        return ""
    c = camera
    parts = []
    name = " ".join(str(c[k]) for k in ("manufacturer", "model") if c.get(k))
    if c.get("device_serial_number"):
        name += f" (serial {c['device_serial_number']})"
    if name:
        parts.append(name.strip())
    coll = " ".join(str(c[k]) for k in ("collimator", "collimator_type") if c.get(k))
    if coll:
        parts.append(f"collimator {coll}")
    if c.get("energy_windows_kev"):
        parts.append("energy window " + ", ".join(f"{lo:g}-{hi:g} keV" for lo, hi in c["energy_windows_kev"]))
    recon = "; ".join(str(c[k]) for k in ("reconstruction_method", "convolution_kernel") if c.get(k))
    if c.get("corrected_image"):
        recon = (recon + "; " if recon else "") + f"corrections {c['corrected_image']}"
    if recon:
        parts.append(f"reconstruction {recon}")
    return ", ".join(parts)
