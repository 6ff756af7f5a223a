"""Figures of a dose run (matplotlib's object API on the Agg canvas: no pyplot, no global state).

Both figures are scaled to the organs, not to the largest voxel dose: SPECT blur and noise put
activity on air voxels around the patient, where a few counts on almost no mass give doses up to
10^5 Gy, which would leave every organ in the bottom colour of the scale and the first pixel of
the DVH axis.

=========================  ===================================================================
figure                     scale
=========================  ===================================================================
:func:`dose_slices_figure` dose (colour) on the CT density (grey), axial / coronal / sagittal
                           through the hottest voxel inside the body of the delineated region
                           with the highest mean dose (:func:`hottest_point`); the colour scale
                           runs from 0 to the larger of the :data:`SCALE_PERCENTILE` th
                           percentile of the dose inside the body and the highest D2 of the
                           delineated regions inside the body (:func:`colour_scale`: a tumour's
                           hot part stays on the scale, a single voxel does not), stated on the
                           figure with the maximum and where it lies; region contours with a legend (the DVH's
                           colours), a mm scale bar, no axis ticks
:func:`dvh_figure`         cumulative DVHs of the delineated regions; the dose axis ends at
                           :data:`DVH_AXIS_FACTOR` times the highest D1 of the regions
                           (:func:`dvh_axis_top`), stated in the axis label
=========================  ===================================================================

Axial views are drawn with row 0 at the top (anterior up for a patient in LPS with identity
direction), coronal and sagittal with the head (+z) up. The dose overlay is transparent in air
(density below ``AIR_DENSITY_G_CM3``) and below :data:`OVERLAY_THRESHOLD` of the colour scale.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rptdose.analysis.regions import FOV_REGION, anatomical
from rptdose.quant.plots import _figure

#: Fraction of the colour scale's upper value below which the colour overlay is transparent.
OVERLAY_THRESHOLD = 0.02
#: Percentile of the dose inside the body at which the colour scale of the slices ends.
SCALE_PERCENTILE = 99.5
#: The DVH axis ends at this factor times the highest D1 (99th percentile of the voxel doses) of
#: the delineated regions.
DVH_AXIS_FACTOR = 1.1
#: Voxels below this density (g/cm3) are air: no dose colour is drawn on them (same threshold as
#: the run's warning about activity in air, ``rptdose.pipeline.AIR_DENSITY_G_CM3``).
AIR_DENSITY_G_CM3 = 0.05
#: Fallback body: density above this (g/cm3) when the study has no body outline.
BODY_DENSITY_G_CM3 = 0.5


def region_styles(regions: dict[str, np.ndarray]) -> dict[str, tuple[str, str]]:
    """{region: (colour, line style)} of the delineated regions (the field of view left out),
    shared by the DVH curves and the slice contours."""
    styles = ("-", "--", ":", "-.")
    return {name: (f"C{i % 10}", styles[(i // 10) % len(styles)]) for i, name in enumerate(anatomical(regions))}


def body_mask(study: Any) -> np.ndarray:
    """The body of ``study`` on the dose grid: ``study.body`` (the body outline from the CT) where
    the study has it, else the voxels denser than :data:`BODY_DENSITY_G_CM3` (a fallback for
    studies loaded without the outline; it leaves the lungs out)."""
    body = getattr(study, "body", None)
    if body is None:
        # no body outline on this study: density > 0.5 g/cm3 as the body
        body = study.phantom.density > BODY_DENSITY_G_CM3
    return np.asarray(body, dtype=bool)


def _scale_domain(dose_gy: np.ndarray, regions: dict[str, np.ndarray], body: np.ndarray | None
                  ) -> tuple[np.ndarray, str]:
    """(mask, words): the body when given and not empty, else the union of the delineated regions."""
    if body is not None:
        b = np.asarray(body, dtype=bool)
        if b.shape == dose_gy.shape and b.any():
            return b, "inside the body"
    union = np.logical_or.reduce([np.asarray(m, dtype=bool) for m in anatomical(regions).values()])
    return union, "inside the delineated regions"


def colour_scale(dose_gy: np.ndarray, regions: dict[str, np.ndarray], body: np.ndarray | None = None,
                 percentile: float = SCALE_PERCENTILE) -> dict[str, Any]:
    """The colour scale of the dose slices and the words that document it:
    ``vmax_gy`` (the ``percentile`` th percentile of the dose in the domain: the body, or the union
    of the delineated regions without a body mask; 1 Gy if that is 0), ``domain`` (words),
    ``max_gy`` and ``max_index`` ((z, y, x) of the largest dose on the grid), ``max_in_domain``,
    ``domain_max_gy`` (the largest dose in the domain), ``clipped`` (voxels above the scale exist)."""
    dose = np.asarray(dose_gy, dtype=np.float64)
    domain, words = _scale_domain(dose, regions, body)
    vals = dose[domain]
    pct = float(np.percentile(vals, percentile)) if vals.size else 0.0
    # a small hot region (a tumour) is a few per mille of the body: the percentile alone would
    # clip it to one colour; its D2 (the dose to its hottest 2 %) is a property of the region,
    # not of one voxel, so it may raise the scale
    d2, d2_name = 0.0, None
    for name, m in anatomical(regions).items():
        if name == FOV_REGION:
            continue
        v = dose[np.asarray(m, dtype=bool) & domain]
        if v.size and float(np.percentile(v, 98.0)) > d2:
            d2, d2_name = float(np.percentile(v, 98.0)), name
    vmax = max(pct, d2)
    scale_set = vmax > 0 and np.isfinite(vmax)
    idx = tuple(int(i) for i in np.unravel_index(int(np.nanargmax(dose)), dose.shape))
    return {"vmax_gy": vmax if scale_set else 1.0, "percentile": percentile, "domain": words,
            "percentile_gy": pct, "region_d2_gy": d2, "region_d2_name": d2_name,
            "max_gy": float(dose[idx]), "max_index": idx,
            "max_in_domain": bool(domain[idx]), "domain_max_gy": float(vals.max()) if vals.size else 0.0,
            "clipped": bool(np.nanmax(dose) > (vmax if scale_set else 1.0))}


def _scale_caption(cs: dict[str, Any], density: np.ndarray | None) -> str:
    z, y, x = cs["max_index"]
    where = "inside" if cs["max_in_domain"] else "outside"
    place = cs["domain"].replace("inside ", "")
    rho = f", density {float(density[z, y, x]):.3g} g/cm3" if density is not None else ""
    text = (f"colour scale up to {cs['vmax_gy']:.3g} Gy: {_scale_rule(cs)}; "
            f"max {cs['max_gy']:.3g} Gy at voxel (x, y, z) = ({x}, {y}, {z}), {where} {place}{rho}")
    if not cs["max_in_domain"]:
        text += f"; max {cs['domain']} {cs['domain_max_gy']:.3g} Gy"
    return text


def _scale_rule(cs: dict[str, Any]) -> str:
    """How the scale's top was chosen, in words."""
    pct = f"the {cs['percentile']:g}th percentile {cs['domain']} ({cs['percentile_gy']:.3g} Gy)"
    if cs.get("region_d2_name") is None:
        return pct
    return (f"the larger of {pct} and the highest region D2 ({cs['region_d2_gy']:.3g} Gy, "
            f"{cs['region_d2_name']})")


def dvh_axis_top(dose_gy: np.ndarray, regions: dict[str, np.ndarray], factor: float = DVH_AXIS_FACTOR
                 ) -> float:
    """The end of the DVH dose axis: ``factor`` x the highest D1 (99th percentile of the voxel
    doses) of the delineated regions (the field of view left out); their highest maximum if every
    D1 is 0; 1 Gy if that is 0 too."""
    d1, top = 0.0, 0.0  # highest D1, highest maximum
    for m in anatomical(regions).values():
        v = np.asarray(dose_gy)[np.asarray(m, dtype=bool)]
        if v.size:
            d1 = max(d1, float(np.percentile(v, 99.0)))
            top = max(top, float(v.max()))
    out = factor * d1 if d1 > 0 else top
    return out if out > 0 else 1.0


def _axis_top_from_curves(bins_gy: np.ndarray, curves: dict[str, np.ndarray], factor: float) -> float:
    """The DVH axis end from the curves alone: ``factor`` x the highest dose at which a curve
    still has 1 % of its region's volume."""
    bins = np.asarray(bins_gy, dtype=np.float64)
    d1 = 0.0
    for c in curves.values():
        above = np.nonzero(np.asarray(c) >= 0.01)[0]
        if above.size:
            d1 = max(d1, float(bins[above[-1]]))
    top = min(factor * d1, float(bins[-1])) if d1 > 0 else float(bins[-1])
    return top if top > 0 else 1.0


def dvh_figure(bins_gy: np.ndarray, curves: dict[str, np.ndarray], dose_gy: np.ndarray | None = None,
               regions: dict[str, np.ndarray] | None = None) -> Any:
    """Cumulative DVHs: volume (%) receiving at least D, one line per region. The dose axis ends
    at :func:`dvh_axis_top`; with ``dose_gy`` and ``regions`` the curves are recomputed on 400
    bins up to there (so that a few hot air voxels, which stretch ``bins_gy``, do not coarsen
    them), else the given curves are drawn and the axis end is estimated from them."""
    from rptdose.analysis.dvh import cumulative_dvh
    if dose_gy is not None and regions is not None:
        top = dvh_axis_top(dose_gy, regions)
        bins_gy = np.linspace(0.0, top, 400)
        masks = anatomical(regions)
        curves = {name: cumulative_dvh(dose_gy, m, bins_gy)[1] for name, m in masks.items()}
        maxima = max(float(np.asarray(dose_gy)[m].max()) for m in masks.values())
        styles = region_styles(regions)
    else:
        top = _axis_top_from_curves(bins_gy, curves, DVH_AXIS_FACTOR)
        maxima = float(np.asarray(bins_gy)[-1])
        styles = {name: (f"C{i % 10}", ("-", "--", ":", "-.")[(i // 10) % 4]) for i, name in enumerate(curves)}
    fig = _figure(7.0, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    for name, c in curves.items():
        colour, ls = styles.get(name, ("k", "-"))
        ax.plot(bins_gy, 100 * np.asarray(c), ls, color=colour, label=name)
    ax.set_xlabel("absorbed dose D (Gy)")
    ax.set_ylabel("volume receiving >= D (%)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    note = f"axis ends at {DVH_AXIS_FACTOR:g} x the highest region D1 ({top:.3g} Gy)"
    if maxima > top * 1.0001:
        note += f"; region maxima up to {maxima:.3g} Gy"
    ax.set_title(note, fontsize=8)
    fig.tight_layout()
    return fig


def hottest_point(dose_gy: np.ndarray, regions: dict[str, np.ndarray], rows: list[dict],
                  body: np.ndarray | None = None) -> tuple[str, tuple]:
    """(region, (z, y, x)): the hottest voxel of the delineated region with the highest mean dose,
    among the region's voxels inside ``body`` (when given and they exist), so that a hot air voxel
    at a contour's edge is not chosen."""
    names = anatomical(regions)
    cand = [r for r in rows if r["name"] in names]
    best = max(cand, key=lambda r: r["mean_dose_gy"])["name"]
    m = np.asarray(regions[best], dtype=bool)
    if body is not None:
        inside = m & np.asarray(body, dtype=bool)
        m = inside if inside.any() else m
    flat = np.where(m, dose_gy, -np.inf)
    return best, tuple(int(i) for i in np.unravel_index(int(np.argmax(flat)), dose_gy.shape))


def _nice_length_mm(extent_mm: float) -> float:
    """A round scale-bar length near a fifth of ``extent_mm``."""
    target = extent_mm / 5.0
    for v in (5, 10, 20, 25, 50, 100, 200, 250, 500):
        if v >= target:
            return float(v)
    return 1000.0


def _scale_bar(ax: Any, length_px: float, label: str, height_px: float) -> None:
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    bar = AnchoredSizeBar(ax.transData, length_px, label, "lower left", pad=0.4, borderpad=0.3, sep=3,
                          color="white", frameon=False, size_vertical=height_px, fontproperties={"size": 8})
    ax.add_artist(bar)


def dose_slices_figure(density: np.ndarray, dose_gy: np.ndarray, regions: dict[str, np.ndarray], rows: list[dict],
                       spacing_mm: tuple[float, float, float], body: np.ndarray | None = None) -> Any:
    """Dose on the CT (density) in three planes through :func:`hottest_point` (module notes).
    ``body``: bool [z, y, x], True inside the patient (see :func:`body_mask`); without it the
    colour scale is taken inside the union of the delineated regions. The figure's
    ``rptdose_colour_scale`` attribute holds :func:`colour_scale`'s dict."""
    from matplotlib import patheffects
    from matplotlib.lines import Line2D

    density = np.asarray(density)
    dose_gy = np.asarray(dose_gy)
    cs = colour_scale(dose_gy, regions, body)
    vmax = cs["vmax_gy"]
    name, (kz, ky, kx) = hottest_point(dose_gy, regions, rows, body)
    sx, sy, sz = (float(v) for v in spacing_mm)
    nz, ny, nx = dose_gy.shape
    # view: (slice, pixel aspect (vertical / horizontal), origin, horizontal mm, vertical mm, horizontal spacing)
    views = {"axial": (np.s_[kz, :, :], sy / sx, "upper", nx * sx, ny * sy, sx, sy, f"z = {kz}"),
             "coronal": (np.s_[:, ky, :], sz / sx, "lower", nx * sx, nz * sz, sx, sz, f"y = {ky}"),
             "sagittal": (np.s_[:, :, kx], sz / sy, "lower", ny * sy, nz * sz, sy, sz, f"x = {kx}")}
    widths = [v[3] for v in views.values()]
    heights = [v[4] for v in views.values()]
    # inches per mm: the three panels side by side in at most 11.5 in, at most 5.5 in high
    k = min(11.5 / sum(widths), 5.5 / max(heights))
    styles = region_styles(regions)
    n_legend_rows = -(-len(styles) // 6)
    fig = _figure(k * sum(widths) + 1.6, k * max(heights) + 1.0 + 0.22 * n_legend_rows)
    fig.set_layout_engine("constrained", w_pad=0.02, h_pad=0.02, wspace=0.01)
    grid = fig.add_gridspec(1, 3, width_ratios=widths)
    bar_mm = _nice_length_mm(min(widths))
    shown = density >= AIR_DENSITY_G_CM3
    halo = [patheffects.Stroke(linewidth=2.6, foreground="black", alpha=0.6), patheffects.Normal()]
    im = None
    axes = []
    for i, (view, (sl, aspect, origin, _w, _h, sh, sv, where)) in enumerate(views.items()):
        ax = fig.add_subplot(grid[0, i])
        axes.append(ax)
        ax.imshow(density[sl], cmap="gray", vmin=0.0, vmax=2.0, origin=origin, aspect=aspect, interpolation="nearest")
        d = np.where(shown[sl], dose_gy[sl], 0.0)
        im = ax.imshow(np.ma.masked_less_equal(d, OVERLAY_THRESHOLD * vmax), cmap="jet", alpha=0.55, vmin=0,
                       vmax=vmax, origin=origin, aspect=aspect, interpolation="nearest")
        for rname, m in regions.items():
            if rname == FOV_REGION or rname not in styles or not m[sl].any():
                continue
            colour, ls = styles[rname]
            cs_ = ax.contour(m[sl].astype(float), levels=[0.5], colors=[colour], linewidths=1.3, linestyles=ls,
                             origin=origin)
            cs_.set_path_effects(halo)  # a dark edge: visible on every colour of the dose scale
        _scale_bar(ax, bar_mm / sh, f"{bar_mm:g} mm", 0.012 * _h / sv)
        ax.set_title(f"{view} ({where})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    cbar = fig.colorbar(im, ax=axes, shrink=0.9, extend="max" if cs["clipped"] else "neither", pad=0.01)
    cbar.set_label(f"absorbed dose (Gy); scale up to {cs['vmax_gy']:.3g} Gy (max {cs['max_gy']:.3g} Gy):\n"
                   f"{cs['percentile']:g}th percentile {cs['domain']} or highest region D2", fontsize=8)
    handles = [Line2D([], [], color=c, linestyle=ls, linewidth=1.5, label=n) for n, (c, ls) in styles.items()]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8,
                   frameon=False, title="region contours", title_fontsize=8)
    fig.suptitle(f"Absorbed dose on the CT through the hottest voxel of {name} (the region with the highest mean "
                 f"dose)\n{_scale_caption(cs, density)}\nno colour on air (density < {AIR_DENSITY_G_CM3:g} g/cm3) "
                 f"and below {100 * OVERLAY_THRESHOLD:g} % of the scale", fontsize=8)
    fig.rptdose_colour_scale = cs
    return fig


#: The uncertainty budget's terms in the order the figure and the report show them.
BUDGET_TERMS = (("u_calibration", "calibration"), ("u_recovery", "recovery (PSF)"),
                ("u_volume", "segmentation (contour)"), ("u_tia_fit", "time-activity fit"),
                ("u_statistical", "Monte Carlo statistics"))


def budget_figure(rows: list[dict]) -> Any:
    """The regions' uncertainty budgets: per region a horizontal bar of each term's relative
    standard uncertainty (%) and the combined ``u_total`` (root sum of squares) as a black tick;
    terms that are unknown for a region (NaN) are left out."""
    from matplotlib.lines import Line2D

    shown = [r for r in rows if r.get("name") != FOV_REGION and np.isfinite(r.get("u_total", np.nan))]
    n = max(len(shown), 1)
    fig = _figure(8.5, 1.9 + 0.42 * n)
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot(1, 1, 1)
    k = len(BUDGET_TERMS)
    height = 0.8 / k
    for j, (key, label) in enumerate(BUDGET_TERMS):
        vals = [100 * float(r.get(key, np.nan)) for r in shown]
        y = [i - 0.4 + (j + 0.5) * height for i in range(len(shown))]
        ax.barh(y, [v if np.isfinite(v) else 0.0 for v in vals], height=height, color=f"C{j}", label=label)
    totals = [100 * float(r["u_total"]) for r in shown]
    ax.scatter(totals, range(len(shown)), marker="|", s=300, color="black", zorder=3)
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels([str(r["name"]) for r in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("relative standard uncertainty of the mean dose (%)")
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="black", marker="|", linestyle="", markersize=14))
    labels.append("total (root sum of squares)")
    fig.legend(handles, labels, fontsize=7, loc="outside lower center", ncol=3, frameon=False)
    ax.set_title("Uncertainty budget per region (k = 1)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig
