"""Figures of the quantification step (matplotlib's object API with the Agg canvas: no pyplot,
no global backend change): time-activity curves with their fits, registration check images (with
what their metric is)."""

from __future__ import annotations

from typing import Any

import numpy as np

HOUR = 3600.0


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def tac_figure(name: str, result: Any, index: int, administered_bq: float | None = None) -> Any:
    """The time-activity curve of one region (column ``index`` of a TIAResult) with its fit."""
    from rptdose.quant.tia import effective_half_life_s

    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    t_h = result.times_s / HOUR
    a_mbq = result.activity[:, index] / 1e6
    t_end = max(t_h[-1] * 1.6, t_h[-1] + 24.0)
    tt = np.linspace(0.0, t_end, 400)
    curve = result.curve(tt * HOUR, index) / 1e6
    model = result.model_name(index)
    tia = float(result.tia[index])
    rel = float(result.rel_uncertainty[index])
    label = f"{model}: TIA {tia / 1e6 / HOUR:.4g} MBq h"
    if np.isfinite(rel):
        label += f" (+- {100 * rel:.1f} %)"
    teff = effective_half_life_s(result, index)
    if np.isfinite(teff):
        label += f", T_eff {teff / HOUR:.3g} h"
    ax.plot(tt, curve, "-", color="C0", label=label)
    ax.plot(t_h, a_mbq, "o", color="C3", label="measured (at scan time)")
    flags = result.flag_names(index)
    title = f"{name}" + (f"  [{', '.join(flags)}]" if flags else "")
    ax.set_title(title)
    ax.set_xlabel("time after administration (h)")
    ax.set_ylabel("activity (MBq)")
    ax.set_xlim(0, t_end)
    ax.set_ylim(bottom=0)
    if administered_bq:
        sec = ax.secondary_yaxis("right", functions=(lambda y: 100 * y * 1e6 / administered_bq,
                                                     lambda p: p * administered_bq / 100 / 1e6))
        sec.set_ylabel("% of administered activity")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


#: What the registration metric is, written under the registration check figures.
REGISTRATION_METRIC_NOTE = ("the final Mattes mutual information between the reference CT and the registered "
                            "CT\n(dimensionless, negative; lower = better aligned, 0 = no shared information; "
                            "compare time points of one study, not studies)")


def registration_figure(slices: dict, title: str, metric: float | None = None) -> Any:
    """Reference CT (magenta) and registered CT (green) fused, and the registered SPECT over the
    reference CT, in three orthogonal planes; under them, what the registration metric is
    (:data:`REGISTRATION_METRIC_NOTE`, with its value when ``metric`` is given)."""
    fig = _figure(11.0, 7.2)
    views = ("axial", "coronal", "sagittal")
    for col, view in enumerate(views):
        ref = np.clip((slices[f"ct_ref_{view}"] + 1000.0) / 1500.0, 0, 1)
        reg = np.clip((slices[f"ct_reg_{view}"] + 1000.0) / 1500.0, 0, 1)
        origin = "upper" if view == "axial" else "lower"
        aspect = slices[f"aspect_{view}"]
        ax = fig.add_subplot(2, 3, col + 1)
        rgb = np.stack([ref, reg, ref], axis=-1)
        ax.imshow(rgb, origin=origin, aspect=aspect, interpolation="nearest")
        ax.set_title(f"{view}: reference CT (magenta) / registered CT (green)", fontsize=7)
        ax.set_axis_off()
        ax = fig.add_subplot(2, 3, col + 4)
        ax.imshow(ref, cmap="gray", vmin=0.0, vmax=1.0, origin=origin, aspect=aspect, interpolation="nearest")
        key = f"spect_{view}"
        if key in slices:
            s = slices[key]
            vmax = float(np.max(s)) if np.max(s) > 0 else 1.0
            ax.imshow(np.ma.masked_less_equal(s, 0.02 * vmax), cmap="hot", alpha=0.7, origin=origin, aspect=aspect,
                      vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{view}: registered SPECT on reference CT", fontsize=7)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    note = "metric" + (f" {metric:.4g}" if metric is not None else "") + ": " + REGISTRATION_METRIC_NOTE
    fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=8, wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig
