"""Figures of a dose run (matplotlib's object API on the Agg canvas: no pyplot, no global state).

Slices: ``dose_slices_figure`` shows the dose (colour, above 2 % of the slice's maximum) on the
CT density (grey), axial / coronal / sagittal through the hottest voxel of the region with the
highest mean dose (the field-of-view region excluded), with the region outlines; the colour
scale ends at the highest dose inside the delineated regions. Axial views are
drawn with row 0 at the top (anterior up for a patient in LPS with identity direction), coronal
and sagittal with the head (+z) up.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rptdose.quant.plots import _figure

#: Fraction of the displayed slice's maximum dose below which the colour overlay is transparent.
OVERLAY_THRESHOLD = 0.02


def dvh_figure(bins_gy: np.ndarray, curves: dict[str, np.ndarray]) -> Any:
    """Cumulative DVHs: volume (%) receiving at least D, one line per region."""
    fig = _figure(7.0, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    styles = ("-", "--", ":", "-.")
    for i, (name, c) in enumerate(curves.items()):
        ax.plot(bins_gy, 100 * c, styles[(i // 10) % len(styles)], color=f"C{i % 10}", label=name)
    ax.set_xlabel("absorbed dose D (Gy)")
    ax.set_ylabel("volume receiving >= D (%)")
    ax.set_xlim(0, float(bins_gy[-1]))
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def hottest_point(dose_gy: np.ndarray, regions: dict[str, np.ndarray], rows: list[dict]) -> tuple[str, tuple]:
    """(region, (z, y, x)): the hottest voxel of the delineated region with the highest mean dose."""
    from rptdose.pipeline import anatomical

    names = anatomical(regions)
    cand = [r for r in rows if r["name"] in names]
    best = max(cand, key=lambda r: r["mean_dose_gy"])["name"]
    m = regions[best]
    flat = np.where(m, dose_gy, -np.inf)
    return best, tuple(int(i) for i in np.unravel_index(int(np.argmax(flat)), dose_gy.shape))


def dose_slices_figure(density: np.ndarray, dose_gy: np.ndarray, regions: dict[str, np.ndarray], rows: list[dict],
                       spacing_mm: tuple[float, float, float]) -> Any:
    """Dose on the CT (density) in three planes through :func:`hottest_point`."""
    from rptdose.study import FOV_REGION

    name, (kz, ky, kx) = hottest_point(dose_gy, regions, rows)
    sx, sy, sz = spacing_mm
    views = {"axial": (np.s_[kz, :, :], sy / sx, "upper"), "coronal": (np.s_[:, ky, :], sz / sx, "lower"),
             "sagittal": (np.s_[:, :, kx], sz / sy, "lower")}
    # colour scale: the maximum inside the delineated regions (not the air around the patient, where
    # SPECT blur puts activity on voxels of almost no mass)
    from rptdose.pipeline import anatomical

    vmax = float(np.max(dose_gy[np.logical_or.reduce(list(anatomical(regions).values()))]))
    vmax = vmax if vmax > 0 else 1.0
    fig = _figure(13.0, 4.8)
    im = None
    for i, (view, (sl, aspect, origin)) in enumerate(views.items()):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.imshow(density[sl], cmap="gray", vmin=0.0, vmax=2.0, origin=origin, aspect=aspect, interpolation="nearest")
        d = dose_gy[sl]
        im = ax.imshow(np.ma.masked_less_equal(d, OVERLAY_THRESHOLD * vmax), cmap="jet", alpha=0.55, vmin=0,
                       vmax=vmax, origin=origin, aspect=aspect, interpolation="nearest")
        for j, (rname, m) in enumerate(regions.items()):
            if rname == FOV_REGION or not m[sl].any():
                continue
            ax.contour(m[sl].astype(float), levels=[0.5], colors=[f"C{j % 10}"], linewidths=0.8, origin=origin)
        ax.set_title(f"{view} (through the hottest voxel of {name})", fontsize=8)
        ax.set_axis_off()
    cbar = fig.colorbar(im, ax=fig.axes, shrink=0.8)
    cbar.set_label("absorbed dose (Gy)")
    return fig
