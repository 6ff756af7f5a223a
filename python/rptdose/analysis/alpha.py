"""Alpha emitters in the outputs of ``rptdose run``: the RBE-weighted dose and the decay chain.

RBE-weighted dose (MIRD Pamphlet 22: Sgouros et al., J Nucl Med 51:311-328, 2010), in Gy(RBE)::

    D_RBE = RBE_alpha * D_alpha + 1 * (D - D_alpha) = D + (RBE_alpha - 1) * D_alpha

``D`` the absorbed dose of the run (every emission), ``D_alpha`` its part from alpha particles and
recoil nuclei, ``RBE_alpha`` the study's ``[dose] rbe_alpha`` (default 5, the value MIRD Pamphlet
22 proposes for deterministic effects of alphas; electrons and photons are weighted 1).
``D_alpha`` is exact: the alphas and recoils deposit their energy in the decay voxel (ranges
40-100 um), so it is the TIA map times their energy per decay over the voxel mass
(:func:`rptdose.source.alpha_dose_gy`, the very part every dose method adds). With
``--dose-rate`` the absorbed dose is the integral of dose-rate curves while ``D_alpha`` comes from
the TIA map (the same voxel model integrates both).

Files (only for sources with alphas; ``dose.dcm`` and ``dose.nii.gz`` stay absorbed dose in Gy):

==========================  ==================================================================
``dose_rbe_GyRBE.nii.gz``   RBE-weighted dose, Gy(RBE), float64, masked as dose.nii.gz
``alpha_dose_gy.nii.gz``    the alphas' and recoils' absorbed dose D_alpha (Gy), masked likewise
``regions_rbe_GyRBE.csv``   per region: mean absorbed dose (Gy), its alpha part (Gy) and share,
                            rbe_alpha, mean RBE-weighted dose (Gy(RBE))
==========================  ==================================================================
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

#: [dose] rbe_alpha when the study does not give it (MIRD Pamphlet 22).
DEFAULT_RBE_ALPHA = 5.0
RBE_NIFTI = "dose_rbe_GyRBE.nii.gz"
ALPHA_NIFTI = "alpha_dose_gy.nii.gz"
RBE_CSV = "regions_rbe_GyRBE.csv"
RBE_COLUMNS = ("name", "mean_dose_gy", "alpha_mean_dose_gy", "alpha_fraction", "rbe_alpha", "mean_dose_GyRBE")


def alpha_dose_for(study: Any) -> np.ndarray | None:
    """D_alpha (Gy) of the study's source on its phantom, or None when it has no alphas."""
    source = getattr(study, "source", None)
    if source is None or not getattr(source, "alpha_mev_per_decay", 0.0) > 0.0:
        return None
    return source.alpha_dose_gy(study.phantom)


def rbe_alpha_of(study: Any) -> float:
    """The study's [dose] rbe_alpha (default :data:`DEFAULT_RBE_ALPHA`)."""
    value = (getattr(study, "settings", None) or {}).get("dose", {}).get("rbe_alpha")
    return DEFAULT_RBE_ALPHA if value is None else float(value)


def rbe_weighted_dose(dose_gy: np.ndarray, alpha_gy: np.ndarray, rbe_alpha: float) -> np.ndarray:
    """D + (RBE_alpha - 1) D_alpha, Gy(RBE) (module docstring)."""
    return np.asarray(dose_gy, dtype=np.float64) + (float(rbe_alpha) - 1.0) * np.asarray(alpha_gy, dtype=np.float64)


def rbe_region_rows(regions: dict[str, np.ndarray], dose_gy: np.ndarray, alpha_gy: np.ndarray,
                    mass_kg: np.ndarray, rbe_alpha: float,
                    region_means: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Per region (:data:`RBE_COLUMNS`): mean absorbed dose (the run's region mean when given,
    else mass-weighted over the voxels), mean alpha dose (mass-weighted), its share, rbe_alpha
    and the mean RBE-weighted dose."""
    rows = []
    for name, m in regions.items():
        mass = float(np.sum(mass_kg[m]))
        if region_means and name in region_means:
            mean = float(region_means[name]["mean_dose_gy"])
        else:
            mean = float(np.sum(dose_gy[m] * mass_kg[m]) / mass) if mass > 0 else float("nan")
        alpha = float(np.sum(alpha_gy[m] * mass_kg[m]) / mass) if mass > 0 else float("nan")
        rows.append({"name": name, "mean_dose_gy": mean, "alpha_mean_dose_gy": alpha,
                     "alpha_fraction": alpha / mean if mean > 0 else float("nan"), "rbe_alpha": float(rbe_alpha),
                     "mean_dose_GyRBE": mean + (float(rbe_alpha) - 1.0) * alpha})
    return rows


def write_rbe_outputs(outdir: Path, study: Any, dose: Any, regions: dict[str, np.ndarray], alpha_gy: np.ndarray,
                      body: np.ndarray | None, note: str) -> dict[str, Path]:
    """The files of the module docstring; returns {label: path}. ``body``: mask applied to the
    images (as to dose.nii.gz), or None."""
    from rptdose.analysis.regions import FOV_REGION
    from rptdose.quant.outputs import write_csv, write_image

    rbe = rbe_alpha_of(study)
    geo = study.geometry
    weighted = rbe_weighted_dose(dose.dose_gy, alpha_gy, rbe)
    shown_rbe = np.where(body, weighted, 0.0) if body is not None else weighted
    shown_alpha = np.where(body, alpha_gy, 0.0) if body is not None else alpha_gy
    where = "in body" if body is not None else "whole grid"
    out = {
        "rbe_nifti": write_image(outdir / RBE_NIFTI, shown_rbe, geo,
                                 description=f"RBE-weighted dose Gy(RBE), rbe_alpha {rbe:g} {where}; {note}"),
        "alpha_nifti": write_image(outdir / ALPHA_NIFTI, shown_alpha, geo,
                                   description=f"alpha+recoil absorbed dose Gy {where}; {note}"),
    }
    named = {k: v for k, v in regions.items() if k != FOV_REGION} or dict(regions)
    rows = rbe_region_rows(named, dose.dose_gy, alpha_gy, study.phantom.voxel_mass_kg, rbe, dose.region_means)
    out["rbe_csv"] = write_csv(outdir / RBE_CSV, rows, RBE_COLUMNS)
    return out


def report_html(study: Any, dose: Any, written: dict[str, Path]) -> str:
    """The report's "Decay chain and alpha emission" section (HTML): the chain's members with
    their decays per parent decay, the alpha energy and the regions' RBE-weighted doses; "" for
    a source without daughters and alphas whose chain was not asked for."""
    import html as _html

    source = getattr(study, "source", None)
    rows_rbe = None
    alpha_gy = alpha_dose_for(study)
    masks = getattr(study, "masks", None)
    if alpha_gy is not None and masks:
        rows_rbe = rbe_region_rows(dict(masks), dose.dose_gy, alpha_gy, study.phantom.voxel_mass_kg,
                                   rbe_alpha_of(study), getattr(dose, "region_means", None))
    chain = getattr(source, "decay_chain", None)
    if chain is None:
        return ""
    has_alpha = source.alpha_mev_per_decay > 0.0
    if not chain.has_daughters and not has_alpha and chain.requested is None:
        return ""
    e = _html.escape
    parts = ["<h2>Decay chain and alpha emission</h2>", f"<p>{e(chain.note)}.</p>"]
    if chain.has_daughters:
        parts.append("<p>Assumption: " + e(chain.summary()["assumption"]) + ".</p>")
        cells = "".join(
            f'<tr><td class="l">{e(n.name)}</td><td>{k:.5g}</td><td>{e(_fmt_t(n.half_life_s))}</td>'
            f"<td>{n.alpha_recoil_mev_per_decay:.4g}</td><td>{n.total_mev_per_decay:.4g}</td></tr>"
            for n, k in chain.members)
        parts.append('<table><tr><th class="l">member</th><th>decays per parent decay</th><th>half-life</th>'
                     "<th>alpha + recoil (MeV/decay)</th><th>all emissions (MeV/decay)</th></tr>" + cells + "</table>")
    if has_alpha:
        parts.append(f"<p>Alphas and recoil nuclei: {source.alpha_mev_per_decay:.5g} MeV per {e(source.nuclide)} "
                     "decay, deposited in the decay voxel (ranges 40-100 &micro;m in tissue, far below a voxel) as "
                     "an exact expected value. RBE-weighted dose D<sub>RBE</sub> = D + (RBE<sub>&alpha;</sub> - 1) "
                     f"D<sub>&alpha;</sub> with RBE<sub>&alpha;</sub> = {rbe_alpha_of(study):g} (study key "
                     "dose.rbe_alpha; MIRD Pamphlet 22), in Gy(RBE); dose.dcm and the tables above are absorbed "
                     "dose in Gy.</p>")
        if rows_rbe:
            head = ("<tr><th class='l'>region</th><th>mean absorbed dose (Gy)</th><th>alpha part (Gy)</th>"
                    "<th>alpha share (%)</th><th>mean RBE-weighted dose (Gy(RBE))</th></tr>")
            body = "".join(f"<tr><td class='l'>{e(r['name'])}</td><td>{_g(r['mean_dose_gy'])}</td>"
                           f"<td>{_g(r['alpha_mean_dose_gy'])}</td><td>{_g(100 * r['alpha_fraction'], '.3g')}</td>"
                           f"<td>{_g(r['mean_dose_GyRBE'])}</td></tr>" for r in rows_rbe)
            parts.append("<table>" + head + body + "</table>")
        files = [str(Path(p).name) for k, p in written.items() if k in ("rbe_nifti", "alpha_nifti", "rbe_csv")]
        if files:
            parts.append("<p>Files: " + ", ".join(e(f) for f in files) + ".</p>")
    return "".join(parts)


def _g(v: Any, fmt: str = ".4g") -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "-"
    return format(x, fmt) if math.isfinite(x) else "-"


def _fmt_t(seconds: float) -> str:
    from rptdose.physics.chains import _fmt_t as fmt

    return fmt(seconds)
