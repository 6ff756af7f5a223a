"""A study end to end: load (quantify, register, integrate), transport, analyse, write, report.

:func:`run_study` is what ``rptdose run STUDY.toml -o DIR`` does. Dose methods:

==============  =====================================================================================
``method``      the dose
==============  =====================================================================================
``mc``          :func:`rptdose.simulate` of the TIA map (decays per voxel); region uncertainties from
                the batch method
``ldm``         :func:`rptdose.local_deposition`; ``vsv``: :func:`rptdose.vsv_dose`; ``sphere``:
                :func:`rptdose.sphere_dose` (the fast methods, on the same phantom, source and regions)
==============  =====================================================================================

``scheduler`` (``"local:N"``, a Dask scheduler address, or a ``dask.distributed.Client``;
else the study file's ``dose.scheduler``) and ``checkpoint`` (an HDF5 file) go to
:func:`rptdose.simulate` for the Monte Carlo transport (method ``mc`` only): the transport is
spread over the Dask workers (the same result as in-process), and each completed batch's tallies
are written to the checkpoint, so that rerunning the same run resumes there. With
``dose_rate=True`` each time point's transport gets a checkpoint of its own beside the given
path (:func:`timepoint_checkpoint`: ``ckpt.h5`` -> ``ckpt_tp1.h5``, ``ckpt_tp2.h5``, ...). The
fast methods run in-process: a scheduler is not used for them (the provenance records
``scheduler: null``) and a checkpoint is refused.

``dose_rate=True`` transports each time point's activity map instead (activity in Bq = decays
per second, so the dose is a dose rate in Gy/s), and integrates the voxel dose-rate curves from
the administration to infinity with the study's voxel TIA model (``rptdose.quant.tia.integrate``,
the same fits and guards as for activity). The histories are split over the time points
(time point k gets ``histories / n`` and the seed ``seed + k``, independent random streams).
A region's mean dose is then the integral of its mean dose-rate curve fitted with the region
model (whose effective half-life the region table gives as ``dose_rate_t_eff_h``); its statistical uncertainty propagates each time point's batch uncertainty through
the integral (first order, the sensitivities by finite differences). The voxel uncertainty map
propagates the voxels' relative uncertainties through trapezoid weights (from 0 at the
administration, physical decay after the last scan), taking the time points as independent.

Outputs in DIR (written into a staging folder that replaces DIR as a whole when all are written,
with ``manifest.json`` (sizes and SHA-256 of the files); each file checked as it is written:
:mod:`rptdose.io.outdir`, :mod:`rptdose.io.atomic`):

=============================  ============================================================
file                           content
=============================  ============================================================
``dose.dcm``                   DICOM RT Dose (Gy) on the reference CT's frame of reference,
                               0 outside the body outline (``dose.mask_to_body``, default)
``dose_uncertainty.dcm``       the absolute 1-sigma statistical uncertainty (Gy) as a second
                               RT Dose series (DoseType ERROR), when the method has one
``dose.nii.gz``                dose (Gy), float64, masked as dose.dcm; the full map and the
                               ``body_mask`` are in dose.h5
``dose_rel_uncertainty.nii.gz``  relative 1-sigma statistical uncertainty (NaN: none)
``dose.h5``                    an rptdose result file (``rd.load_result`` reads it) plus the
                               TIA, its uncertainty, the masks, the region table, the study
                               file's text and the full provenance (versions, input SHA-256s,
                               seed, histories, backend, physics switches, timings)
``regions.csv``, ``regions.json``  the region table (:data:`REGION_COLUMNS`); the JSON is the
                               ``rptdose-regions`` format (:data:`REGIONS_FORMAT`)
``dvh.csv``, ``dvh.png``       cumulative DVHs (volume fraction receiving at least D) of the
                               delineated regions
``dose_slices.png``            dose on the CT density, axial / coronal / sagittal through the
                               hottest voxel of the region with the highest mean dose
``dose_rbe_GyRBE.nii.gz``,     alpha emitters only: the RBE-weighted dose Gy(RBE) (``dose.rbe_alpha``,
``alpha_dose_gy.nii.gz``,      default 5), the alphas' and recoils' absorbed dose, and the regions'
``regions_rbe_GyRBE.csv``      means of both (:mod:`rptdose.analysis.alpha`); dose.dcm stays Gy
``tia/``                       the outputs of ``rptdose tia`` (TIA maps, fits, TAC plots)
``report.html``                one self-contained page with all of the above
=============================  ============================================================
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rptdose.analysis.regions import anatomical, region_kind
from rptdose.errors import InputError

HOUR = 3600.0

#: regions.json: the format name and version (readers check both).
REGIONS_FORMAT = "rptdose-regions"
REGIONS_FORMAT_VERSION = 1

#: Columns of regions.csv (and keys of each region in regions.json).
REGION_COLUMNS = ("name", "kind", "mean_dose_gy", "mean_dose_rel_uncertainty", "tia_rel_uncertainty",
                  "mean_dose_rel_uncertainty_with_tia", "d2_gy", "d50_gy", "d98_gy", "min_gy", "max_gy",
                  "voxels", "volume_ml", "mass_g", "mean_tia_bq_s", "tia_bq_s", "t_eff_h", "t_uptake_h", "tia_model",
                  "tia_flags", "u_calibration", "u_recovery", "u_volume", "u_tia_fit", "u_statistical", "u_total")

#: Warning thresholds of the report.
FOV_FIRST_SCAN_PERCENT = (30.0, 110.0)   # decay-corrected FOV activity of the first scan, % of administered
TIA_REL_UNCERTAINTY_WARN = 0.20          # region TIA fit uncertainty
DOSE_REL_UNCERTAINTY_WARN = 0.05         # region mean dose statistical uncertainty
AIR_DENSITY_G_CM3 = 0.05                 # voxels below this density are air (outside the patient)
AIR_TIA_FRACTION_WARN = 0.01             # share of the TIA in air voxels (SPECT blur, misregistration)
OUTSIDE_BODY_TIA_FRACTION_WARN = 0.02     # share of the TIA imaged outside the CT's body outline
VOXEL_FALLBACK_TIA_FRACTION_WARN = 0.05   # share of the TIA from voxels without a usable own fit


@dataclass
class DoseEstimate:
    """A dose map from any method, in one shape for the outputs."""

    method: str
    dose_gy: np.ndarray
    rel_uncertainty: np.ndarray | None          # relative 1-sigma per voxel, or None
    region_means: dict[str, dict[str, Any]]     # name -> mean_dose_gy, rel_uncertainty, mass_kg, voxels
    backend: str
    histories: int
    seed: int
    batches: int
    elapsed_s: float
    energy_balance: dict[str, float]
    provenance: dict[str, Any]
    #: where the transport ran: the Dask scheduler (:func:`scheduler_label`), None in-process
    scheduler: str | None = None


@dataclass
class RunOutcome:
    """What :func:`run_study` made: the study, the dose, the region table, files and warnings."""

    study: Any
    dose: DoseEstimate
    regions: list[dict[str, Any]]
    outputs: dict[str, Path]
    warnings: list[str]
    timings_s: dict[str, float]
    provenance: dict[str, Any] = field(default_factory=dict)
    #: what the output folder's update did besides writing (leftovers of interrupted runs
    #: removed, the user's own files kept: rptdose.io.outdir.OutputFolder.notes)
    output_notes: list[str] = field(default_factory=list)

    @property
    def report(self) -> Path:
        return self.outputs["report"]


# ---- transport -------------------------------------------------------------------------------

def _regions_for_transport(study: Any) -> dict[str, np.ndarray]:
    from rptdose.analysis.regions import FOV_REGION

    out = dict(study.masks)
    out[FOV_REGION] = np.ones(study.phantom.shape, dtype=bool)
    return out


def scheduler_label(scheduler: Any) -> str | None:
    """The scheduler of a run as text for the provenance: the setting itself (``"local:4"``,
    ``"tcp://host:8786"``), a Client's scheduler address, or None (in-process)."""
    if scheduler is None or isinstance(scheduler, str):
        return scheduler
    address = getattr(getattr(scheduler, "scheduler", None), "address", None)
    return str(address) if address else f"{type(scheduler).__name__} object"


def timepoint_checkpoint(checkpoint: str | os.PathLike, k: int) -> Path:
    """The checkpoint of time point ``k`` (0-based) of a dose-rate run: the stem of ``checkpoint``
    with ``_tp<k+1>`` appended (``run/ckpt.h5`` -> ``run/ckpt_tp1.h5``)."""
    p = Path(checkpoint)
    return p.with_name(f"{p.stem}_tp{k + 1}{p.suffix}")


def _dose_of(method: str, phantom: Any, source: Any, regions: dict, opts: dict, progress: Any) -> DoseEstimate:
    """One dose computation of ``source`` by ``method``."""
    from rptdose.transport.simulate import simulate

    if method == "mc":
        # scheduler and checkpoint only when set: simulate() without them runs in-process as always
        extra = {k: opts[k] for k in ("scheduler", "checkpoint") if opts.get(k) is not None}
        res = simulate(phantom, source, histories=opts["histories"], seed=opts["seed"], backend=opts["backend"],
                       threads=opts["threads"], batches=opts["batches"], precision=opts["precision"],
                       electron_transport=opts["electron_transport"], regions=regions, progress=progress, **extra)
        return DoseEstimate("mc", np.asarray(res.dose_gy), np.asarray(res.rel_uncertainty), res.region_means,
                            res.backend, res.histories, res.seed, res.batches, res.elapsed_s, res.energy_balance,
                            res.provenance, scheduler=scheduler_label(opts.get("scheduler")))
    from rptdose.fast import METHODS

    kwargs: dict[str, Any] = {"regions": regions}
    if method in ("vsv", "sphere"):
        kwargs.update(seed=opts["seed"], threads=opts["threads"], backend=opts["backend"])
    res = METHODS[method](phantom, source, **kwargs)
    rel = None if res.rel_uncertainty is None else np.asarray(res.rel_uncertainty)
    seed = int(res.provenance.get("seed") or 0)
    return DoseEstimate(method, np.asarray(res.dose_gy), rel, res.region_means, f"method:{method}", 0, seed, 0,
                        res.elapsed_s, {}, res.provenance)


def _integrate_dose_rate(study: Any, method: str, regions: dict, opts: dict, progress: Any) -> DoseEstimate:
    """Dose = integral of the per-voxel dose-rate curves (module docstring)."""
    from rptdose.quant.tia import integrate
    from rptdose.source import Source

    tia_settings = study.settings["tia"]
    if tia_settings["voxel_model"] == "madsen" or tia_settings["model"] == "madsen":
        raise InputError(f"study '{study.path}' key tia.model 'madsen' (a population effective half-life of "
                         "activity): expected a fitted or trapezoid model with --dose-rate")
    n = len(study.timepoints)
    times = np.array([tp.time_s for tp in study.timepoints])
    per_tp = max(opts["batches"], int(math.ceil(opts["histories"] / n)))
    rates, parts = [], []
    for k, tp in enumerate(study.timepoints):
        if not float(tp.activity_bq.sum()) > 0:
            raise InputError(f"spect '{tp.spect_path}' (no activity on the dose grid at time point {tp.label}): "
                             "expected activity for --dose-rate")
        src = Source(study.source.decay_chain, np.maximum(tp.activity_bq, 0.0))   # Bq x 1 s: the dose is Gy/s
        ckpt = None if opts.get("checkpoint") is None else timepoint_checkpoint(opts["checkpoint"], k)
        part = _dose_of(method, study.phantom, src, regions,
                        dict(opts, histories=per_tp, seed=opts["seed"] + k, checkpoint=ckpt), progress)
        rates.append(part.dose_gy)
        parts.append(part)
    stack = np.stack(rates)                                            # [n, z, y, x] Gy/s
    stp = tia_settings["timepoint"] - 1 if tia_settings.get("timepoint") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = integrate(times, stack, study.half_life_s, tia_settings["voxel_model"], stp_index=stp,
                        trapezoid_start=tia_settings["trapezoid_start"], what="voxel dose rate")
    dose = np.ascontiguousarray(fit.tia, dtype=np.float64)
    rel = None
    if all(p.rel_uncertainty is not None for p in parts):
        # statistical: each rate's relative error carried through a trapezoid-like weighting
        var = np.zeros_like(dose)
        num = np.zeros_like(dose)
        for p, w in zip(parts, _integral_weights(times, study.half_life_s)):
            var += (w * p.dose_gy * p.rel_uncertainty) ** 2
            num += w * p.dose_gy
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(num > 0, np.sqrt(var) / num, 1.0)
    region_means = {}
    for name in regions:
        rate = np.array([p.region_means[name]["mean_dose_gy"] for p in parts])
        sig = np.array([(p.region_means[name]["rel_uncertainty"] or 0.0) for p in parts]) * rate
        d0, rel_r, teff_s = _curve_integral_uncertainty(times, rate, sig, study.half_life_s, tia_settings["model"],
                                                        stp, tia_settings["trapezoid_start"])
        first = parts[0].region_means[name]
        region_means[name] = {"mean_dose_gy": d0, "rel_uncertainty": rel_r, "mass_kg": first["mass_kg"],
                              "voxels": first["voxels"], "dose_rate_t_eff_h": teff_s / HOUR}
    prov = dict(parts[0].provenance)
    prov["dose_rate"] = {"times_s": times.tolist(), "histories_per_timepoint": per_tp,
                         "seeds": [opts["seed"] + k for k in range(n)], "voxel_model": tia_settings["voxel_model"],
                         "region_model": tia_settings["model"],
                         "per_timepoint": [{"histories": p.histories, "seed": p.seed, "elapsed_s": p.elapsed_s,
                                            "backend": p.backend} for p in parts]}
    eb = {}
    if parts[0].energy_balance:
        eb = {k: float(np.mean([p.energy_balance[k] for p in parts])) for k in parts[0].energy_balance}
    return DoseEstimate(method, dose, rel, region_means, parts[0].backend, sum(p.histories for p in parts),
                        opts["seed"], parts[0].batches, sum(p.elapsed_s for p in parts), eb, prov,
                        scheduler=parts[0].scheduler)


def _integral_weights(times: np.ndarray, half_life_s: float) -> np.ndarray:
    """Weights w_k with integral ~ sum_k w_k f(t_k): trapezoids from f(0) = 0, physical tail."""
    t = np.concatenate([[0.0], times])
    w = np.zeros(times.size)
    for k in range(times.size):
        w[k] += 0.5 * (t[k + 1] - t[k])
        if k + 1 < times.size:
            w[k] += 0.5 * (t[k + 2] - t[k + 1])
    w[-1] += half_life_s / math.log(2.0)
    return w


def _curve_integral_uncertainty(times, values, sigma, half_life_s, model, stp, start
                                ) -> tuple[float, float, float]:
    """Integral of one curve (the region model), its relative 1-sigma uncertainty from the points'
    sigma (first-order, finite-difference sensitivities) and the fit's effective half-life (s; NaN
    when the model has none)."""
    from rptdose.quant.tia import effective_half_life_s, integrate

    def fit(v):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return integrate(times, v, half_life_s, model, stp_index=stp, trapezoid_start=start)

    def integral(v):
        return float(fit(v).tia)

    base_fit = fit(values)
    base = float(base_fit.tia)
    var = 0.0
    for k in range(values.size):
        h = 1e-3 * values[k] if values[k] > 0 else 1e-12
        v = values.copy()
        v[k] += h
        var += ((integral(v) - base) / h * sigma[k]) ** 2
    return base, (math.sqrt(var) / base if base > 0 else float("nan")), effective_half_life_s(base_fit)


# ---- analysis ----------------------------------------------------------------------------------

def region_rows(study: Any, dose: DoseEstimate, regions: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The region table (:data:`REGION_COLUMNS`)."""
    from rptdose.analysis.dvh import dvh_metrics

    voxel_ml = float(np.prod(study.phantom.spacing_mm)) * 1e-3
    from rptdose.analysis.regions import contour_voxels

    mass_kg = study.phantom.voxel_mass_kg
    tia_rows = {r["region"]: r for r in study.region_table}
    index = {name: i for i, name in enumerate(study.region_names)}
    # for the segmentation term of the budget (_budget): energy per voxel, and the contour's
    # uncertainty in voxels, once for all regions
    energy = dose.dose_gy * mass_kg
    voxels = contour_voxels((study.settings.get("recovery") or {}).get("contour_uncertainty_mm"),
                            study.phantom.spacing_mm)
    rows = []
    for name, m in regions.items():
        rm = dose.region_means[name]
        met = dvh_metrics(dose.dose_gy, m)
        tr = tia_rows.get(name, {})
        stat = rm.get("rel_uncertainty")
        stat = float("nan") if stat is None else float(stat)
        tia_rel = float(tr.get("tia_rel_uncertainty", float("nan")))
        total = math.sqrt(stat ** 2 + tia_rel ** 2) if math.isfinite(stat) and math.isfinite(tia_rel) else stat
        teff = tr.get("t_eff_h", float("nan"))
        budget = _budget(study, tr, stat, energy, mass_kg, m, voxels)
        rows.append({
            "name": name, "kind": region_kind(name), "mean_dose_gy": float(rm["mean_dose_gy"]),
            "mean_dose_rel_uncertainty": stat, "tia_rel_uncertainty": tia_rel,
            "mean_dose_rel_uncertainty_with_tia": total,
            "d2_gy": met["D2_gy"], "d50_gy": met["D50_gy"], "d98_gy": met["D98_gy"], "min_gy": met["min_gy"],
            "max_gy": met["max_gy"], "voxels": int(m.sum()), "volume_ml": int(m.sum()) * voxel_ml,
            "mass_g": float(mass_kg[m].sum()) * 1e3, "mean_tia_bq_s": float(study.tia[m].mean()),
            "tia_bq_s": float(study.tia[m].sum()), "t_eff_h": float(teff) if teff == teff else None,
            "t_uptake_h": _uptake_half_life_h(study.region_fit, index.get(name)),
            **({"dose_rate_t_eff_h": _finite_or_none(rm["dose_rate_t_eff_h"])} if "dose_rate_t_eff_h" in rm else {}),
            "tia_model": str(tr.get("model", study.settings["tia"]["voxel_model"])),
            "tia_flags": list(tr.get("flags", [])), **budget,
            **({k: tr[k] for k in ("tia_uncorrected_bq_s", "recovery_coefficient") if k in tr})})
    return rows


def _budget(study: Any, tia_row: dict, u_statistical: float, energy: np.ndarray, mass_kg: np.ndarray,
            mask: np.ndarray, contour_voxels: float) -> dict[str, float]:
    """A region's uncertainty budget of the mean dose (relative standard uncertainties; docs/
    study_file.md "Uncertainty budget"): calibration, recovery and TIA fit from the TIA's budget
    (loading.region_table), the segmentation from the recovery correction when there is one
    (the recovered concentration's change with the contour) else from the dose map (the mean
    dose's change with the contour eroded / dilated), the Monte Carlo statistics, and their root
    sum of squares (terms unknown here left out)."""
    from rptdose.analysis.regions import FOV_REGION, combine_relative, contour_uncertainty

    u_cal = float(tia_row.get("u_calibration", float("nan")))
    u_rec = float(tia_row.get("u_recovery", float("nan")))
    u_fit = float(tia_row.get("u_tia_fit", tia_row.get("tia_rel_uncertainty", float("nan"))))
    u_vol = float("nan")
    if getattr(study, "recovery", None) is not None:
        u_vol = float(tia_row.get("u_volume", float("nan")))
    if not math.isfinite(u_vol) and tia_row.get("region") != FOV_REGION:
        u_vol = contour_uncertainty(energy, mass_kg, mask, contour_voxels)
    return {"u_calibration": u_cal, "u_recovery": u_rec, "u_volume": u_vol, "u_tia_fit": u_fit,
            "u_statistical": u_statistical,
            "u_total": combine_relative(u_cal, u_rec, u_vol, u_fit, u_statistical)}


def _finite_or_none(v: Any) -> float | None:
    return float(v) if v is not None and math.isfinite(float(v)) else None


def _uptake_half_life_h(fit: Any, i: int | None) -> float | None:
    """The uptake half-life (h) of a region fitted with biexp_uptake, else None."""
    from rptdose.quant.tia import BIEXP_UPTAKE

    if fit is None or i is None or int(fit.model[i]) != BIEXP_UPTAKE:
        return None
    return float(math.log(2.0) / fit.params[i][2] / HOUR)


def run_warnings(study: Any, rows: list[dict[str, Any]]) -> list[str]:
    """Warnings for the report: activity far from administered, activity in air, poor fits, high
    uncertainty (thresholds: the constants above)."""
    out = []
    lo, hi = FOV_FIRST_SCAN_PERCENT
    for i, q in enumerate(study.quant_report):
        pct = q["percent_of_administered_decay_corrected"]
        if (i == 0 and not lo <= pct <= hi) or pct > hi:
            out.append(f"time point {q['label']}: activity in the field of view, decay-corrected to the "
                       f"administration, is {pct:.1f} % of the administered activity (expected {lo:g}-{hi:g} % "
                       f"at the first scan, at most {hi:g} % later): check the calibration and the durations")
    ob = getattr(study, "tia_outside_body", None) or {}
    if ob.get("outside_fraction", 0.0) > OUTSIDE_BODY_TIA_FRACTION_WARN:
        done = {"drop": "set to 0 (tia.outside_body = \"drop\")", "keep": "kept (tia.outside_body = \"keep\")",
                "reassign": f"moved to the nearest body voxel ({100 * ob.get('moved_fraction', 0.0):.1f} %; "
                            "tia.outside_body = \"reassign\")"}[ob.get("mode", "keep")]
        out.append(f"{100 * ob['outside_fraction']:.1f} % of the time-integrated activity was imaged outside the "
                   f"body outline (SPECT resolution, noise or misregistration): {done}")
    methods = ob.get("tia_fraction_by_method") or {}
    if methods.get("region", 0.0) + methods.get("trapezoid", 0.0) > VOXEL_FALLBACK_TIA_FRACTION_WARN:
        out.append(f"{100 * (methods.get('region', 0.0) + methods.get('trapezoid', 0.0)):.1f} % of the "
                   "time-integrated activity comes from voxels whose own fit was not usable (noise): region "
                   f"kinetics {100 * methods.get('region', 0.0):.1f} %, trapezoid {100 * methods.get('trapezoid', 0.0):.1f} "
                   "% (tia/tia_method.nii.gz shows where)")
    air = study.phantom.density < AIR_DENSITY_G_CM3
    total = float(study.tia.sum())
    share = float(study.tia[air].sum()) / total if total > 0 else 0.0
    if share > AIR_TIA_FRACTION_WARN:
        out.append(f"{100 * share:.1f} % of the time-integrated activity lies in air (density < "
                   f"{AIR_DENSITY_G_CM3:g} g/cm3: SPECT resolution or misregistration); those voxels get very high "
                   "doses (little mass there): maxima over regions that include air are not meaningful")
    for r in rows:
        if r["tia_flags"]:
            out.append(f"region {r['name']}: time-activity fit needed {', '.join(r['tia_flags'])} "
                       f"(model {r['tia_model']})")
        if math.isfinite(r["tia_rel_uncertainty"]) and r["tia_rel_uncertainty"] > TIA_REL_UNCERTAINTY_WARN:
            out.append(f"region {r['name']}: TIA fit uncertainty {100 * r['tia_rel_uncertainty']:.1f} % "
                       f"(> {100 * TIA_REL_UNCERTAINTY_WARN:g} %)")
        u = r["mean_dose_rel_uncertainty"]
        if math.isfinite(u) and u > DOSE_REL_UNCERTAINTY_WARN:
            out.append(f"region {r['name']}: statistical uncertainty of the mean dose {100 * u:.1f} % "
                       f"(> {100 * DOSE_REL_UNCERTAINTY_WARN:g} %): run more histories")
    return out


# ---- outputs ----------------------------------------------------------------------------------

def regions_document(study: Any, dose: DoseEstimate, rows: list[dict[str, Any]], provenance: dict) -> dict:
    """The regions.json content (format :data:`REGIONS_FORMAT`, version :data:`REGIONS_FORMAT_VERSION`).

    Per region: ``mean_dose_gy`` (energy / mass), ``mean_dose_rel_uncertainty`` (statistical,
    relative 1-sigma), ``d2_gy``/``d50_gy``/``d98_gy``/``max_gy``, ``volume_ml``, ``mass_g``,
    ``mean_tia_bq_s`` (the mean over the region's voxels of the TIA map, Bq s per voxel; the
    region's total is ``tia_bq_s``), ``t_eff_h`` (effective half-life of the region's fit, null
    when the model has none), ``t_uptake_h`` (the uptake half-life of a ``biexp_uptake`` fit, else
    null), ``tia_model``; plus the other :data:`REGION_COLUMNS`.
    """
    return {
        "format": REGIONS_FORMAT, "format_version": REGIONS_FORMAT_VERSION, "nuclide": study.nuclide,
        "administered_activity_mbq": float(study.administered_activity_bq) / 1e6,
        "administration_time": study.administration_time.isoformat(), "method": dose.method,
        "dose_rate_integration": "dose_rate" in dose.provenance, "study_file": str(study.path),
        "study_name": study.name, "histories": dose.histories, "seed": dose.seed, "backend": dose.backend,
        "regions": rows,
        "provenance": provenance,
    }


def _dvh_table(dose_gy: np.ndarray, regions: dict[str, np.ndarray], points: int = 200):
    """Cumulative DVHs of the delineated regions (:func:`anatomical`) on common dose bins."""
    from rptdose.analysis.dvh import cumulative_dvh

    regions = anatomical(regions)
    top = max(float(dose_gy[m].max()) for m in regions.values())
    bins = np.linspace(0.0, top if top > 0 else 1.0, points)
    curves = {name: cumulative_dvh(dose_gy, m, bins)[1] for name, m in regions.items()}
    rows = [{"dose_gy": float(b), **{f"{k}_volume_fraction": float(c[i]) for k, c in curves.items()}}
            for i, b in enumerate(bins)]
    return bins, curves, rows


def _provenance(study: Any, dose: DoseEstimate, opts: dict, timings: dict) -> dict:
    from rptdose._provenance import rptdose_version

    text = Path(study.path).read_text(encoding="utf-8", errors="replace")
    return {"rptdose_version": rptdose_version(),
            "created": _dt.datetime.now().isoformat(timespec="seconds"),
            "study_file": str(study.path), "study_file_text": text, "study": study.provenance,
            "dose": {"method": dose.method, "dose_rate_integration": "dose_rate" in dose.provenance,
                     "histories": dose.histories, "seed": dose.seed, "backend": dose.backend,
                     "batches": dose.batches, "electron_transport": opts["electron_transport"],
                     "threads": opts["threads"], "scheduler": dose.scheduler,
                     "checkpoint": _checkpoints(dose, opts), "provenance": dose.provenance},
            "timings_s": dict(timings)}


def _checkpoints(dose: DoseEstimate, opts: dict) -> str | list[str] | None:
    """The checkpoint file(s) of the run: the one given, or one per time point (dose rate)."""
    if opts.get("checkpoint") is None:
        return None
    if "dose_rate" in dose.provenance:
        n = len(dose.provenance["dose_rate"]["times_s"])
        return [str(timepoint_checkpoint(opts["checkpoint"], k)) for k in range(n)]
    return str(opts["checkpoint"])


def write_outputs(outdir: Path, study: Any, dose: DoseEstimate, regions: dict[str, np.ndarray],
                  rows: list[dict[str, Any]], notes: list[str], provenance: dict, plots: bool = True
                  ) -> dict[str, Path]:
    """Write every output of a run into ``outdir`` (module docstring); returns {label: path}."""
    import json

    from rptdose.io.hdf5 import to_json, write_masks, write_result
    from rptdose.io.rtdose import reference_identity, write_rtdose
    from rptdose.quant.outputs import write_csv, write_figure, write_image, write_text

    outdir.mkdir(parents=True, exist_ok=True)
    geo = study.geometry
    written: dict[str, Path] = {}
    rel = dose.rel_uncertainty
    rel_map = np.full(dose.dose_gy.shape, np.nan) if rel is None else rel
    ref = reference_identity(study.timepoints[0].ct_path)
    comment = f"rptdose {provenance['rptdose_version']} {dose.method}; study {study.name}"
    # what a viewer shows: the dose inside the body outline (dose.mask_to_body); air voxels next
    # to spill-out activity get 10^3-10^5 Gy from their tiny mass. dose.h5 keeps the full map.
    body = getattr(study, "body", None)
    masked = body is not None and bool(study.settings["dose"].get("mask_to_body", True))
    shown = np.where(body, dose.dose_gy, 0.0) if masked else dose.dose_gy
    where = "inside the body outline; full map in dose.h5" if masked else "whole grid"
    written["rtdose"] = write_rtdose(outdir / "dose.dcm", shown, geo, reference=ref, comment=f"{comment}; {where}",
                                     series_description=f"rptdose {dose.method} absorbed dose")
    if rel is not None:
        sigma = np.where(shown > 0, shown * rel, 0.0)
        written["rtdose_uncertainty"] = write_rtdose(
            outdir / "dose_uncertainty.dcm", sigma, geo, reference=ref, dose_type="ERROR", comment=comment,
            series_description=f"rptdose {dose.method} dose uncertainty (1 sigma, statistical)")
    note = f"rptdose {provenance['rptdose_version']} {dose.method} seed {dose.seed}; provenance: dose.h5"
    written["dose_nifti"] = write_image(outdir / "dose.nii.gz", shown, geo,
                                        description=f"dose Gy {'in body' if masked else ''}; {note}")
    written["uncertainty_nifti"] = write_image(outdir / "dose_rel_uncertainty.nii.gz", rel_map, geo,
                                               description=f"rel. 1-sigma; {note}")
    # alpha emitters: the RBE-weighted dose Gy(RBE) and the alpha part (analysis/alpha.py)
    from rptdose.analysis.alpha import alpha_dose_for, write_rbe_outputs

    alpha_gy = alpha_dose_for(study)
    if alpha_gy is not None:
        written.update(write_rbe_outputs(outdir, study, dose, regions, alpha_gy, body if masked else None, note))

    table_json = to_json(rows)

    def extra(h5: Any) -> None:
        opts = {"compression": "gzip", "compression_opts": 4}
        h5.attrs["run_kind"] = "rptdose.StudyRun"
        h5.attrs["regions"] = table_json
        h5.attrs["study_file_text"] = provenance["study_file_text"]
        h5.create_dataset("tia_bq_s", data=study.tia, **opts)
        h5.create_dataset("tia_rel_uncertainty", data=study.tia_rel_uncertainty, **opts)
        h5.create_dataset("density_g_cm3", data=study.phantom.density, **opts)
        if body is not None:
            d = h5.create_dataset("body_mask", data=body.astype(np.uint8), **opts)
            d.attrs["description"] = "1 inside the body outline found on the reference CT (rptdose.quant.body)"
        write_masks(h5, regions, **opts)  # safe link names, verbatim names in attribute 'name'

    fields = {"dose_gy": dose.dose_gy, "rel_uncertainty": rel_map, "energy_balance": dose.energy_balance,
              "region_means": dose.region_means, "backend": dose.backend, "histories": dose.histories,
              "seed": dose.seed, "batches": dose.batches, "elapsed_s": dose.elapsed_s, "provenance": provenance,
              "spacing_mm": geo["spacing_mm"], "origin_mm": geo["origin_mm"], "direction": geo["direction"],
              "alpha_dose_gy": alpha_gy}
    written["h5"] = write_result(outdir / "dose.h5", fields, extra=extra)
    extra_cols = tuple(k for k in ("dose_rate_t_eff_h", "tia_uncorrected_bq_s", "recovery_coefficient")
                       if rows and k in rows[0])
    written["regions_csv"] = write_csv(outdir / "regions.csv", rows, REGION_COLUMNS + extra_cols)
    doc = regions_document(study, dose, rows, provenance)
    written["regions_json"] = write_text(outdir / "regions.json",
                                         json.dumps(json_clean(doc), indent=1, allow_nan=False) + "\n")
    bins, curves, dvh_rows = _dvh_table(dose.dose_gy, regions)
    written["dvh_csv"] = write_csv(outdir / "dvh.csv", dvh_rows)
    written.update({f"tia/{k}": v for k, v in study.write_tia(outdir / "tia", plots=plots).items()})
    figures: dict[str, Any] = {}
    if plots:
        from rptdose.report.figures import body_mask, dose_slices_figure, dvh_figure

        # figures scaled to the organs (report/figures.py): DVH axis from the regions' D1, colour
        # scale from the 99.5th percentile of the dose inside the body
        figures["dvh"] = dvh_figure(bins, curves, dose_gy=dose.dose_gy, regions=regions)
        written["dvh_png"] = write_figure(outdir / "dvh.png", figures["dvh"])
        figures["slices"] = dose_slices_figure(study.phantom.density, dose.dose_gy, regions, rows,
                                               study.phantom.spacing_mm, body=body_mask(study))
        written["slices_png"] = write_figure(outdir / "dose_slices.png", figures["slices"])
        from rptdose.report.figures import budget_figure

        written["budget_png"] = write_figure(outdir / "uncertainty_budget.png", budget_figure(rows))
    from rptdose.report.html import render_report

    html = render_report(study, dose, rows, notes, provenance, written, outdir)
    written["report"] = write_text(outdir / "report.html", html)
    return written


def json_clean(value: Any) -> Any:
    """``value`` as plain JSON types (numpy converted), non-finite floats as None."""
    import json

    from rptdose.io.hdf5 import to_json

    def clean(v: Any) -> Any:
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return clean(json.loads(to_json(value)))


# ---- the driver ---------------------------------------------------------------------------------

def run_study(study: Any, outdir: str | os.PathLike, *, method: str | None = None, histories: int | None = None,
              seed: int | None = None, backend: str | None = None, dose_rate: bool = False,
              progress: Any = None, plots: bool = True, scheduler: Any = None,
              checkpoint: str | os.PathLike | None = None, precision: str | None = None) -> RunOutcome:
    """Run a study end to end and write its outputs into ``outdir`` (module docstring).

    ``study`` is a study file path or a loaded :class:`rptdose.study.Study`; ``method``,
    ``histories``, ``seed``, ``backend``, ``scheduler`` and ``precision`` override the study
    file's ``[dose]`` values. ``scheduler`` and ``checkpoint``: Monte Carlo on a Dask cluster, and resumable from a
    checkpoint file (module docstring); passed to :func:`rptdose.simulate` only when set.

    ``outdir`` is updated as one unit (:class:`rptdose.io.outdir.OutputFolder`): locked against
    a second run, checked (writable, free space, and the grid's memory and disk estimates) before
    any work, the outputs written into a staging folder that replaces it, with ``manifest.json``,
    only when everything is written; a failure or Ctrl-C leaves the earlier ``outdir`` as it was.
    """
    from rptdose.io.outdir import OutputFolder
    from rptdose.resources import RUN_OUTPUT_BYTES_PER_VOXEL
    from rptdose.study import check_scheduler

    if isinstance(scheduler, str):
        check_scheduler(scheduler, "scheduler")
    if precision is not None:
        from rptdose.transport.simulate import check_precision

        check_precision(precision)
    if checkpoint is not None:
        if not isinstance(checkpoint, (str, os.PathLike)) or not os.fspath(checkpoint):
            raise InputError(f"checkpoint {checkpoint!r}: expected the path of a checkpoint file (HDF5)")
        if Path(checkpoint).is_dir():
            raise InputError(f"checkpoint '{checkpoint}' (is a folder): expected the path of a checkpoint file (HDF5)")
    with OutputFolder(outdir, command="run", output_bytes_per_voxel=RUN_OUTPUT_BYTES_PER_VOXEL,
                      transport=True) as tx:
        outcome = _run_study(study, tx, method=method, histories=histories, seed=seed, backend=backend,
                             dose_rate=dose_rate, progress=progress, plots=plots, scheduler=scheduler,
                             checkpoint=checkpoint, precision=precision)
    outcome.outputs = {k: tx.final(v) for k, v in outcome.outputs.items()}
    outcome.output_notes = list(tx.notes)
    return outcome


def _run_study(study: Any, tx: Any, *, method: str | None, histories: int | None, seed: int | None,
               backend: str | None, dose_rate: bool, progress: Any, plots: bool, scheduler: Any = None,
               checkpoint: str | os.PathLike | None = None, precision: str | None = None) -> RunOutcome:
    """:func:`run_study` inside its open output folder ``tx``: the work, the outputs into
    ``tx.staging``, the commit."""
    from rptdose.resources import check_dose_grid
    from rptdose.study import DOSE_METHODS, Study, load_study

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if not isinstance(study, Study):
        study = load_study(study)   # checks the grid's memory and the results' disk space first
    else:
        nz, ny, nx = study.geometry["shape"]
        check_dose_grid((nx, ny, nz), study.geometry["spacing_mm"], study.settings["dose"]["grid"],
                        memory=False)
    timings["load_study"] = time.perf_counter() - t0
    d = study.settings["dose"]
    method = method or d.get("method") or "mc"
    if method not in DOSE_METHODS:
        raise InputError(f"method {method!r} (unknown): expected one of {', '.join(DOSE_METHODS)}")
    opts = {"histories": int(histories if histories is not None else d["histories"]),
            "seed": int(seed if seed is not None else d["seed"]),
            "backend": backend or d.get("backend") or "auto", "threads": d.get("threads"),
            "precision": precision or d.get("precision") or "auto",
            "batches": int(d.get("batches") or 10),
            "electron_transport": True if d.get("electron_transport") is None else bool(d["electron_transport"])}
    if method == "mc":   # the fast methods run in-process: no scheduler, nothing to checkpoint
        opts["scheduler"] = scheduler if scheduler is not None else d.get("scheduler")
        opts["checkpoint"] = None if checkpoint is None else Path(checkpoint)
    elif checkpoint is not None:
        raise InputError(f"checkpoint '{checkpoint}' (method {method!r} has no Monte Carlo transport to resume): "
                         "expected a checkpoint only with method mc")
    if opts["histories"] < 1:
        raise InputError(f"histories {opts['histories']} (--histories, or dose.histories in study '{study.path}'): "
                         "expected an integer >= 1")
    regions = _regions_for_transport(study)
    t0 = time.perf_counter()
    if dose_rate:
        dose = _integrate_dose_rate(study, method, regions, opts, progress)
    else:
        dose = _dose_of(method, study.phantom, study.source, regions, opts, progress)
    timings["dose"] = time.perf_counter() - t0
    rows = region_rows(study, dose, regions)
    notes = run_warnings(study, rows)
    t0 = time.perf_counter()
    provenance = _provenance(study, dose, opts, timings)
    written = write_outputs(tx.staging, study, dose, regions, rows, notes, provenance, plots=plots)
    tx.commit({"study_file": str(study.path), "method": dose.method})
    timings["outputs"] = time.perf_counter() - t0
    return RunOutcome(study=study, dose=dose, regions=rows, outputs=written, warnings=notes, timings_s=timings,
                      provenance=provenance)
