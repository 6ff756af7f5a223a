"""Compare two dose maps: difference maps, gamma index, DVHs, region means, Bland-Altman.

``dose_a`` is the reference (e.g. Monte Carlo), ``dose_b`` the evaluated dose (e.g. a fast
method). Differences are b - a; relative differences (b - a) / a; the gamma index evaluates b
against the reference a. Both doses are put on a's grid: b is resampled (linear) when its grid
differs, masks given as images are resampled (nearest neighbour).

Masks: those given (``masks``); when none are given and a dose is the ``dose.h5`` of ``rptdose
run`` holding region masks (group ``masks/``), those of a, else those of b (``file_masks=False``
ignores them); the summary says where they came from. The body outline (``body_mask``): the one
given, else the dataset ``body_mask`` of a's, else b's ``.h5``, else none.

Normalisation (the reference dose of the threshold and of a global gamma), unless
``normalisation_gy`` is given: the ``ROBUST_PERCENTILE`` (99.5th) percentile of a

1. inside the body outline, when there is one;
2. else inside the union of the region masks, when there are any;
3. else over the voxels where a is not zero.

A percentile, not the maximum, so that a few hot voxels (e.g. Monte Carlo noise in air, 1e5 Gy
in one low-density voxel) cannot lift the threshold over the whole patient. The value and how
it was derived are in ``summary`` (``normalisation_gy``, ``normalisation``), ``gamma.csv`` and
``summary.html``. Reference points below ``threshold_percent`` % of it are not evaluated by the
gamma index (the low-dose cut-off) and get no relative difference. When fewer than
``MIN_THRESHOLD_VOXELS`` (100) voxels reach the threshold, or a gamma criterion evaluates fewer
points, a :class:`CompareWarning` is issued and the warning is written into ``summary.csv``,
``gamma.csv`` and ``summary.html``: pass rates on a handful of points say little.

=========================  =================================================================
output                     content
=========================  =================================================================
``difference_gy``          b - a (Gy), [z, y, x]
``relative_difference``    (b - a) / a where a >= ``threshold_percent`` % of the
                           normalisation, else NaN
``gamma``                  {label: GammaResult}, e.g. "3%/3mm global", for every criterion
                           of ``gamma`` and mode of ``gamma_modes``
``regions``                per region: mean dose of a and b (mass-weighted with
                           ``voxel_mass_kg``, else volume-weighted) with 1-sigma
                           uncertainties, difference in Gy and %, with its uncertainty and
                           z-score, D2 / D50 / D98 of both, largest DVH gap
``summary``                global figures (max |diff|, mean relative difference in the
                           threshold region, pass rates, normalisation, mask sources,
                           warnings)
``warnings``               the warnings issued (also as :class:`CompareWarning`)
=========================  =================================================================

Region uncertainties, in order of preference: the batch-method region uncertainty an rptdose
result carries for a region of that name on an unresampled grid (``"batch"``); else the voxel
uncertainties combined as independent (``"voxels"``, an approximation: Monte Carlo voxels are
correlated); else none. The uncertainty of the % difference is
|b / a| sqrt(r_a^2 + r_b^2) * 100 with r the relative uncertainties; z = (b - a) / sqrt(s_a^2 +
s_b^2).

:meth:`Comparison.write` writes ``regions.csv``, ``gamma.csv``, ``summary.csv``,
``summary.html``, ``bland_altman.png`` and ``dvh.png`` (matplotlib, Agg; skipped with a note
when matplotlib is missing), ``difference_gy.nii.gz`` and one ``gamma_*.nii.gz`` per criterion,
each atomically (temporary file + rename).

Bland-Altman (Bland & Altman, Lancet 327:307, 1986) across regions: x = (a + b) / 2, y =
100 (b - a) / ((a + b) / 2), with the mean (bias) and the 95 % limits of agreement
(bias +- 1.96 SD) when there are at least 3 regions.
"""

from __future__ import annotations

import csv
import html
import io
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rptdose.analysis.doseio import (
    DoseMap,
    load_dose,
    load_mask_image,
    on_grid,
    resample_array,
    same_grid,
)
from rptdose.analysis.dvh import cumulative_dvh, dvh_difference, dvh_metrics
from rptdose.analysis.gamma import GammaResult, gamma_index
from rptdose.analysis.regions import (
    normalize_regions,
    region_mean,
    region_mean_uncertainty,
)
from rptdose.errors import InputError
from rptdose.quant.outputs import atomic_path, write_text

DEFAULT_GAMMA = ((3.0, 3.0), (2.0, 2.0))
DEFAULT_GAMMA_MODES = ("global", "local")
DEFAULT_THRESHOLD_PERCENT = 10.0
#: Percentile of the reference dose (in the body) used as the normalisation (module docstring).
ROBUST_PERCENTILE = 99.5
#: Fewer voxels than this above the threshold draw a :class:`CompareWarning`.
MIN_THRESHOLD_VOXELS = 100


class CompareWarning(UserWarning):
    """A comparison ran but its figures deserve caution (e.g. few voxels above the threshold)."""


@dataclass
class Comparison:
    """The result of :func:`compare`; see the module docstring."""

    names: tuple[str, str]
    dose_a: np.ndarray
    dose_b: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: tuple[float, ...]
    difference_gy: np.ndarray
    relative_difference: np.ndarray
    gamma: dict[str, GammaResult]
    regions: list[dict[str, Any]]
    dvh: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    # ---- tables ----------------------------------------------------------------------------
    def gamma_rows(self) -> list[dict[str, Any]]:
        rows = []
        for label, g in self.gamma.items():
            s = g.settings
            rows.append({"criterion": label, "dose_percent": s["dose_percent"], "distance_mm": s["distance_mm"],
                         "mode": "local" if s["local"] else "global", "threshold_percent": s["threshold_percent"],
                         "threshold_gy": s.get("threshold_gy"), "normalisation_gy": s["normalisation_gy"],
                         "normalisation": s.get("normalisation"), "evaluated_points": g.evaluated_points,
                         "pass_rate_percent": 100.0 * g.pass_rate, "mean_gamma": g.mean_gamma,
                         "p95_gamma": g.p95_gamma, "warning": s.get("warning", "")})
        return rows

    # ---- files -----------------------------------------------------------------------------
    def write(self, output_dir: Any, images: bool = True) -> dict[str, Path]:
        """Write the tables, plots, HTML summary and maps into ``output_dir`` (created)."""
        out = Path(output_dir)
        if out.exists() and not out.is_dir():
            raise InputError(f"output '{out}' (is a file): expected a folder for the comparison")
        out.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        paths["regions_csv"] = _write_csv(out / "regions.csv", self.regions)
        paths["gamma_csv"] = _write_csv(out / "gamma.csv", self.gamma_rows())
        paths["summary_csv"] = _write_csv(out / "summary.csv", [{"quantity": k, "value": v}
                                                                 for k, v in self.summary.items()])
        plots = {}
        try:
            import matplotlib  # noqa: F401

            if self.regions:
                plots["bland_altman_png"] = self.bland_altman_plot(out / "bland_altman.png")
                plots["dvh_png"] = self.dvh_plot(out / "dvh.png")
        except ImportError:
            self.notes.append("matplotlib is not installed: no plots (pip install matplotlib)")
        paths.update(plots)
        if images:
            paths["difference_nii"] = _write_image(self._image(self.difference_gy), out / "difference_gy.nii.gz")
            for label, g in self.gamma.items():
                fname = "gamma_" + label.replace("%/", "pct").replace("mm ", "mm_").replace(" ", "_") + ".nii.gz"
                paths[f"gamma_{label}"] = _write_image(self._image(np.nan_to_num(g.gamma, nan=-1.0)), out / fname)
        paths["summary_html"] = write_text(out / "summary.html", self.html(plots))
        return paths

    def _image(self, arr: np.ndarray) -> Any:
        from rptdose.phantom import grid_to_sitk

        return grid_to_sitk(arr.astype(np.float32), arr.shape, self.spacing_mm, self.origin_mm, self.direction)

    def bland_altman_plot(self, path: Any) -> Path:
        """Bland-Altman plot across regions (PNG)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        rows = [r for r in self.regions if r["mean_a_gy"] > 0 or r["mean_b_gy"] > 0]
        x = np.array([0.5 * (r["mean_a_gy"] + r["mean_b_gy"]) for r in rows])
        y = np.array([100.0 * (r["mean_b_gy"] - r["mean_a_gy"]) / m if m > 0 else 0.0 for r, m in zip(rows, x)])
        err = []
        for r, m in zip(rows, x):
            sa, sb = r["unc_a_gy"], r["unc_b_gy"]
            s = math.sqrt(_nz(sa) ** 2 + _nz(sb) ** 2)
            err.append(100.0 * s / m if m > 0 else 0.0)
        fig = Figure(figsize=(6.4, 4.4), dpi=120)
        ax = fig.add_subplot(111)
        ax.errorbar(x, y, yerr=err, fmt="o", capsize=3, color="C0")
        for xi, yi, r in zip(x, y, rows):
            ax.annotate(r["region"], (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
        if len(rows) >= 1:
            bias = float(np.mean(y))
            ax.axhline(bias, color="C1", label=f"bias {bias:+.2f} %")
        if len(rows) >= 3:
            sd = float(np.std(y, ddof=1))
            for s in (-1.96, 1.96):
                ax.axhline(bias + s * sd, color="C1", ls="--")
            ax.plot([], [], color="C1", ls="--", label=f"95 % limits {bias - 1.96 * sd:+.2f} / {bias + 1.96 * sd:+.2f} %")
        ax.axhline(0.0, color="0.6", lw=0.8)
        if np.all(x > 0) and x.size and x.max() / max(x.min(), 1e-300) > 20:
            ax.set_xscale("log")
        ax.set_xlabel(f"mean of {self.names[0]} and {self.names[1]} region dose (Gy)")
        ax.set_ylabel(f"({self.names[1]} - {self.names[0]}) / mean (%)")
        ax.set_title("Bland-Altman across regions")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return _write_figure(fig, Path(path))

    def dvh_plot(self, path: Any) -> Path:
        """Cumulative DVHs of a (solid) and b (dashed) per region (PNG)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 4.4), dpi=120)
        ax = fig.add_subplot(111)
        for i, (name, curves) in enumerate(self.dvh.items()):
            da, va = curves["a"]
            db, vb = curves["b"]
            ax.plot(da, 100 * va, color=f"C{i % 10}", label=name)
            ax.plot(db, 100 * vb, color=f"C{i % 10}", ls="--")
        ax.set_xlabel("dose (Gy)")
        ax.set_ylabel("volume (%)")
        ax.set_title(f"DVH: {self.names[0]} (solid) vs {self.names[1]} (dashed)")
        if self.dvh:
            ax.legend(fontsize=8)
        fig.tight_layout()
        return _write_figure(fig, Path(path))

    def html(self, plots: Mapping[str, Path] | None = None) -> str:
        """A compact HTML summary (plots linked by file name)."""
        e = html.escape
        a, b = self.names

        def table(rows: list[dict[str, Any]], cols: Sequence[str]) -> str:
            head = "".join(f"<th>{e(c)}</th>" for c in cols)
            body = "".join("<tr>" + "".join(f"<td>{e(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
            return f"<table><tr>{head}</tr>{body}</table>"

        parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>rptdose compare: {e(a)} vs {e(b)}</title>",
                 "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
                 "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}"
                 "td:first-child{text-align:left}.warning{background:#fde2c8;border:1px solid #d08030;padding:6px}"
                 "</style></head><body>",
                 f"<h1>{e(b)} vs {e(a)} (reference)</h1>"]
        for w in self.warnings:
            parts.append(f"<p class='warning'><b>Warning:</b> {e(w)}</p>")
        if "normalisation_gy" in self.summary:
            parts.append(f"<p>Normalisation (reference dose of the threshold and of the global gamma): "
                         f"{e(_fmt(self.summary['normalisation_gy']))} Gy, {e(str(self.summary['normalisation']))}; "
                         f"threshold {e(_fmt(self.summary['threshold_percent']))} % = "
                         f"{e(_fmt(self.summary['threshold_gy']))} Gy, reached by "
                         f"{e(str(self.summary['threshold_voxels']))} voxels.</p>")
        if "masks" in self.summary:
            parts.append(f"<p>Region masks: {e(str(self.summary['masks']))}. Body outline: "
                         f"{e(str(self.summary['body_mask']))}.</p>")
        parts += ["<h2>Summary</h2>", table([{"quantity": k, "value": v} for k, v in self.summary.items()],
                                           ["quantity", "value"]),
                 "<h2>Gamma index</h2>", table(self.gamma_rows(), ["criterion", "evaluated_points",
                                                                  "pass_rate_percent", "mean_gamma", "p95_gamma",
                                                                  "warning"])]
        if self.regions:
            cols = ["region", "voxels", "mean_a_gy", "unc_a_gy", "mean_b_gy", "unc_b_gy", "diff_gy", "diff_percent",
                    "diff_percent_unc", "z", "D2_a_gy", "D2_b_gy", "D50_a_gy", "D50_b_gy", "D98_a_gy", "D98_b_gy",
                    "dvh_max_volume_diff_percent", "unc_method_a", "unc_method_b"]
            parts += ["<h2>Regions</h2>", f"<p>a = {e(a)}, b = {e(b)}; uncertainties 1 sigma.</p>",
                      table(self.regions, cols)]
        for key in ("bland_altman_png", "dvh_png"):
            if plots and key in plots:
                parts.append(f"<p><img src='{e(Path(plots[key]).name)}' alt='{e(key)}'></p>")
        for n in self.notes:
            parts.append(f"<p><i>{e(n)}</i></p>")
        parts.append("</body></html>")
        return "\n".join(parts)


# ---- the comparison ------------------------------------------------------------------------
def _masks_on_grid(masks: Any, ref: DoseMap, label_names: Mapping[int, str] | None) -> dict[str, np.ndarray] | None:
    if masks is None:
        return None
    shape = ref.dose_gy.shape

    def image_on_grid(p: Any) -> np.ndarray:
        img = load_mask_image(p)
        if same_grid(img, ref) or not ref.has_geometry:
            if img.dose_gy.shape != shape:
                raise InputError(f"mask file '{p}' (shape {img.dose_gy.shape}): expected the dose grid {shape}")
            return img.dose_gy
        return resample_array(img.dose_gy, img, ref, nearest=True)

    if isinstance(masks, (str, os.PathLike)):
        return normalize_regions(image_on_grid(masks), shape, name="masks", label_names=label_names)
    if isinstance(masks, Mapping):
        conv = {}
        for k, v in masks.items():
            conv[k] = image_on_grid(v) != 0 if isinstance(v, (str, os.PathLike)) else v
        return normalize_regions(conv, shape, name="masks", allow_empty=True)
    return normalize_regions(masks, shape, name="masks", label_names=label_names)


def _body_on_grid(body: Any, ref: DoseMap) -> np.ndarray:
    """A body outline given as a bool / 0-1 array on the dose grid or as a mask image path."""
    shape = ref.dose_gy.shape
    if isinstance(body, (str, os.PathLike)):
        img = load_mask_image(body)
        if same_grid(img, ref) or not ref.has_geometry:
            if img.dose_gy.shape != shape:
                raise InputError(f"body mask file '{body}' (shape {img.dose_gy.shape}): expected the dose grid "
                                 f"{shape}")
            arr = img.dose_gy
        else:
            arr = resample_array(img.dose_gy, img, ref, nearest=True)
        m = np.asarray(arr) != 0
        what = f"body mask file '{body}'"
    else:
        m = normalize_regions({"body": body}, shape, name="body_mask", allow_empty=True)["body"]
        what = "body_mask"
    if not m.any():
        raise InputError(f"{what} (no voxel inside): expected a mask that is 1 inside the patient's body outline")
    return m


def reference_dose(dose: np.ndarray, body: np.ndarray | None = None,
                   regions: Mapping[str, np.ndarray] | None = None,
                   percentile: float = ROBUST_PERCENTILE) -> tuple[float, str]:
    """The robust reference dose of ``dose`` and how it was derived (module docstring):
    the ``percentile`` inside ``body``, else inside the union of ``regions``, else over the
    voxels that are not zero. (nan, reason) when none of them has a positive dose."""
    cands: list[tuple[str, np.ndarray]] = []
    if body is not None and body.any():
        cands.append(("inside the body outline", body))
    if regions:
        union = np.zeros(dose.shape, bool)
        for m in regions.values():
            union |= m
        if union.any():
            cands.append((f"inside the union of the {len(regions)} region masks", union))
    cands.append(("over the voxels with a dose other than 0", dose != 0))
    skipped = []
    for where, m in cands:
        vals = dose[m]
        if vals.size == 0:
            continue
        v = float(np.percentile(vals, percentile))
        if v > 0:
            how = f"{percentile:g}th percentile of the reference dose {where} ({vals.size} voxels)"
            if skipped:
                how += f"; {'; '.join(skipped)}"
            return v, how
        skipped.append(f"not {where}: its {percentile:g}th percentile is {v:g} Gy")
    return float("nan"), "; ".join(skipped) or "no voxel with a dose"


def _h5_voxel_mass_kg(dm: DoseMap, shape: tuple) -> np.ndarray | None:
    """Voxel masses (kg) from the ``density_g_cm3`` of the rptdose .h5 a dose map was read from
    (None when it is not such a file, has no densities, or they are not on ``shape``)."""
    if not dm.source or not str(dm.source).lower().endswith((".h5", ".hdf5")) or dm.spacing_mm is None:
        return None
    import h5py

    try:
        with h5py.File(dm.source, "r") as f:
            if "density_g_cm3" not in f or f["density_g_cm3"].shape != tuple(shape):
                return None
            density = np.asarray(f["density_g_cm3"][()], dtype=np.float64)
    except OSError:
        return None
    return density * float(np.prod(dm.spacing_mm)) * 1e-6   # g/cm3 x mm3 -> kg


def _region_unc(dm: DoseMap, name: str, mask: np.ndarray, weights: Any, resampled: bool) -> tuple[float, str]:
    """Relative 1-sigma uncertainty of a region mean and how it was obtained."""
    rm = dm.region_means or {}
    if not resampled and name in rm and rm[name].get("rel_uncertainty") is not None \
            and int(rm[name].get("voxels", -1)) == int(np.count_nonzero(mask)):
        return float(rm[name]["rel_uncertainty"]), "batch" if dm.rel_uncertainty is not None else "method"
    if dm.rel_uncertainty is not None:
        return region_mean_uncertainty(dm.dose_gy, dm.rel_uncertainty, mask, weights), "voxels"
    return float("nan"), "none"


def compare(dose_a: Any, dose_b: Any, masks: Any = None, spacing_mm: Any = None, *,
            names: tuple[str, str] | None = None, label_names: Mapping[int, str] | None = None,
            rel_uncertainty_a: Any = None, rel_uncertainty_b: Any = None, voxel_mass_kg: Any = None,
            gamma: Sequence[tuple[float, float]] = DEFAULT_GAMMA, gamma_modes: Sequence[str] = DEFAULT_GAMMA_MODES,
            threshold_percent: float = DEFAULT_THRESHOLD_PERCENT, max_gamma: float = 2.0,
            interp_fraction: int = 10, output_dir: Any = None, body_mask: Any = None,
            normalisation_gy: float | None = None, file_masks: bool = True) -> Comparison:
    """Compare ``dose_b`` (evaluated) with ``dose_a`` (reference); see the module docstring.

    Parameters
    ----------
    dose_a, dose_b
        rptdose results (``SimulationResult`` / ``DoseResult``), paths (.h5 result, NIfTI /
        MetaImage, DICOM RT Dose file or folder), SimpleITK images or 3-D arrays. b is
        resampled onto a's grid when they differ; an array is taken to be on the other's grid.
    masks
        ``{name: bool mask or image path}``, an integer label map (array or image path, named by
        ``label_names`` or the label), or None: then the masks of a's ``.h5`` (``rptdose run``'s
        dose.h5), else of b's, when ``file_masks``.
    spacing_mm : (sx, sy, sz)
        Voxel size when both doses are plain arrays.
    names : (str, str)
        Labels of a and b in tables and plots (default from the inputs).
    rel_uncertainty_a, rel_uncertainty_b : arrays, optional
        Relative 1-sigma voxel uncertainties (override those of the inputs).
    voxel_mass_kg : array, optional
        Voxel masses for mass-weighted region means (energy / mass); default volume-weighted.
    gamma : [(dose %, DTA mm), ...]
        Gamma criteria (default 3 %/3 mm and 2 %/2 mm), each in every mode of ``gamma_modes``
        ("global", "local").
    threshold_percent : float
        Lower dose threshold (low-dose cut-off) of the gamma index and of the relative
        differences, % of the normalisation.
    max_gamma, interp_fraction
        Passed to :func:`rptdose.analysis.gamma.gamma_index`.
    output_dir : path, optional
        Write the outputs there (:meth:`Comparison.write`).
    body_mask : bool array [z, y, x] or mask image path, optional
        The patient's body outline on a's grid; default the ``body_mask`` of a's (else b's)
        ``.h5``, if any.
    normalisation_gy : float, optional
        Reference dose of the threshold and of the global gamma (Gy); default the robust value
        of the module docstring (:func:`reference_dose`).
    file_masks : bool
        Use the region masks of an ``.h5`` input when ``masks`` is None (default True).
    """
    a = load_dose(dose_a, None if names is None else names[0])
    b = load_dose(dose_b, None if names is None else names[1])
    if not a.has_geometry and b.has_geometry:
        a = on_grid(a, b)
    if not a.has_geometry:
        if spacing_mm is None:
            raise InputError("spacing_mm None (both doses are arrays without a grid): expected the voxel size "
                             "(sx, sy, sz) in mm")
        from rptdose.phantom import check_spacing_mm

        sp = check_spacing_mm(spacing_mm)
        a = DoseMap(a.dose_gy, a.rel_uncertainty, a.region_means, sp, (0.0, 0.0, 0.0),
                    (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), a.label)
    resampled_b = b.has_geometry and not same_grid(b, a)
    b = on_grid(b, a)
    shape = a.dose_gy.shape
    for name, rel, dm in (("rel_uncertainty_a", rel_uncertainty_a, a), ("rel_uncertainty_b", rel_uncertainty_b, b)):
        if rel is not None:
            arr = np.asarray(rel, dtype=np.float64)
            if arr.shape != shape:
                raise InputError(f"{name} (shape {arr.shape}): expected the dose grid {shape}")
            dm.rel_uncertainty = arr
    weights = None
    if voxel_mass_kg is not None:
        weights = np.asarray(voxel_mass_kg, dtype=np.float64)
        if weights.shape != shape:
            raise InputError(f"voxel_mass_kg (shape {weights.shape}): expected the dose grid {shape}")
    for label, dm in (("dose_a", a), ("dose_b", b)):
        if not np.all(np.isfinite(dm.dose_gy)):
            raise InputError(f"{label} '{dm.label}' (NaN or infinite doses): expected finite doses in Gy")
    name_a, name_b = names if names is not None else (a.label, b.label)
    notes: list[str] = []
    if weights is None:   # the reference's voxel masses from its rptdose result: region means = energy / mass
        weights = _h5_voxel_mass_kg(a, shape)
        if weights is not None:
            notes.append(f"region means mass-weighted with the densities of '{a.source}' (density_g_cm3), as "
                         "rptdose run reports them")
    mask_dict = _masks_on_grid(masks, a, label_names)
    if mask_dict is not None:
        masks_source = "given"
    else:
        masks_source = "none"
        for dm in (a, b):
            if file_masks and dm.masks:
                mask_dict = normalize_regions(dm.masks, shape, name=f"masks of '{dm.source}'", allow_empty=True)
                masks_source = f"from '{dm.source}' (masks/: {', '.join(mask_dict)})"
                notes.append(f"region masks read from '{dm.source}' ({', '.join(mask_dict)}); give masks "
                             "(--masks) to use others")
                break
    if body_mask is not None:
        body = _body_on_grid(body_mask, a)
        body_source = "given"
    else:
        body, body_source = None, "none"
        for dm in (a, b):
            if dm.body_mask is not None:
                body = dm.body_mask
                body_source = f"from '{dm.source}' (body_mask)"
                break

    if isinstance(threshold_percent, bool) or not isinstance(threshold_percent, (int, float, np.integer,
                                                                                 np.floating)) \
            or not 0 <= float(threshold_percent) < 100:
        raise InputError(f"threshold_percent {threshold_percent!r} (out of range): expected 0 <= % < 100")
    da, db = a.dose_gy, b.dose_gy
    diff = db - da
    amax = float(da.max())
    if normalisation_gy is not None:
        if isinstance(normalisation_gy, bool) or not isinstance(normalisation_gy, (int, float, np.integer,
                                                                                   np.floating)) \
                or not (math.isfinite(normalisation_gy) and normalisation_gy > 0):
            raise InputError(f"normalisation_gy {normalisation_gy!r} (not a positive dose): expected the "
                             "reference dose in Gy (> 0), or None for the robust default")
        norm, norm_how = float(normalisation_gy), "given"
    else:
        norm, norm_how = reference_dose(da, body, mask_dict)
        if not norm > 0 and gamma:
            raise InputError(f"dose_a '{name_a}' (no positive dose: {norm_how}): expected a reference dose > 0, "
                             "or normalisation_gy")
    thr = threshold_percent / 100.0 * norm
    sel = da >= thr if norm > 0 else np.zeros(shape, bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        reldiff = np.where(sel & (da > 0), diff / da, np.nan)
    n_sel = int(np.count_nonzero(sel))
    warns: list[str] = []
    if n_sel < MIN_THRESHOLD_VOXELS:
        warns.append(f"only {n_sel} voxels of '{name_a}' reach the threshold, {threshold_percent:g} % of "
                     f"{norm:.4g} Gy ({norm_how}): the relative differences and gamma pass rates rest on so few "
                     f"points that they say little (expected at least {MIN_THRESHOLD_VOXELS}); check the "
                     "normalisation (normalisation_gy, --normalisation) and the threshold")

    gam: dict[str, GammaResult] = {}
    for crit in gamma:
        dp, dd = float(crit[0]), float(crit[1])
        for mode in gamma_modes:
            if mode not in ("global", "local"):
                raise InputError(f"gamma mode {mode!r} (unknown): expected 'global' or 'local'")
            g = gamma_index(da, db, a.spacing_mm, dp, dd, local=(mode == "local"), normalisation_gy=norm,
                            threshold_percent=threshold_percent, max_gamma=max_gamma, interp_fraction=interp_fraction)
            g.settings["normalisation"] = norm_how
            if g.evaluated_points < MIN_THRESHOLD_VOXELS:
                g.settings["warning"] = (f"{g.evaluated_points} points evaluated (fewer than "
                                         f"{MIN_THRESHOLD_VOXELS}): the pass rate says little")
                if n_sel >= MIN_THRESHOLD_VOXELS:
                    warns.append(f"gamma {g.label}: {g.settings['warning']}")
            gam[g.label] = g

    regions: list[dict[str, Any]] = []
    dvhs: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for rname, m in (mask_dict or {}).items():
        if not m.any():
            regions.append({"region": rname, "voxels": 0})
            continue
        ma, mb = region_mean(da, m, weights), region_mean(db, m, weights)
        ra, how_a = _region_unc(a, rname, m, weights, False)
        rb, how_b = _region_unc(b, rname, m, weights, resampled_b)
        sa, sb = abs(ma) * ra, abs(mb) * rb
        d = mb - ma
        s = math.sqrt(_nz(sa) ** 2 + _nz(sb) ** 2)
        ma_ = dvh_metrics(da, m, weights)
        mb_ = dvh_metrics(db, m, weights)
        gap = dvh_difference(da, db, m, weights)
        row = {"region": rname, "voxels": int(np.count_nonzero(m)),
               "volume_ml": float(np.count_nonzero(m) * np.prod(a.spacing_mm) * 1e-3),
               "mean_a_gy": ma, "unc_a_gy": sa, "mean_b_gy": mb, "unc_b_gy": sb, "diff_gy": d,
               "diff_percent": 100.0 * d / ma if ma > 0 else float("nan"),
               "diff_percent_unc": (100.0 * abs(mb / ma) * math.sqrt(_nz(ra) ** 2
                                                                    + _nz(rb) ** 2)
                                    if ma > 0 else float("nan")),
               "z": d / s if s > 0 else float("nan"),
               "unc_method_a": how_a, "unc_method_b": how_b}
        for key in ("D2", "D50", "D98", "max"):
            ka = f"{key}_gy"
            row[f"{key}_a_gy"] = ma_[ka]
            row[f"{key}_b_gy"] = mb_[ka]
            row[f"{key}_diff_percent"] = 100.0 * (mb_[ka] / ma_[ka] - 1.0) if ma_[ka] > 0 else float("nan")
        row["dvh_max_volume_diff_percent"] = 100.0 * gap["max_abs_volume_diff"]
        regions.append(row)
        top = max(float(da[m].max()), float(db[m].max()), 1e-300)
        bins = np.linspace(0.0, top * 1.02, 400)
        dvhs[rname] = {"a": cumulative_dvh(da, m, bins, weights), "b": cumulative_dvh(db, m, bins, weights)}

    summary: dict[str, Any] = {
        "reference_a": name_a, "evaluated_b": name_b, "grid_shape_zyx": "x".join(str(n) for n in shape),
        "spacing_mm": "x".join(f"{v:g}" for v in a.spacing_mm), "b_resampled": bool(resampled_b),
        "max_dose_a_gy": amax, "max_dose_b_gy": float(db.max()),
        "max_abs_diff_gy": float(np.max(np.abs(diff))),
        "normalisation_gy": norm, "normalisation": norm_how,
        "threshold_percent": float(threshold_percent), "threshold_gy": thr,
        "threshold_voxels": n_sel,
        "masks": masks_source, "body_mask": body_source,
        "mean_rel_diff_percent_above_threshold": float(100.0 * np.nanmean(reldiff)) if np.any(sel) else float("nan"),
        "median_abs_rel_diff_percent_above_threshold": (float(100.0 * np.nanmedian(np.abs(reldiff)))
                                                         if np.any(sel) else float("nan")),
        "sum_dose_ratio_b_over_a": float(db.sum() / da.sum()) if da.sum() > 0 else float("nan"),
    }
    for label, g in gam.items():
        summary[f"gamma_pass_percent {label}"] = 100.0 * g.pass_rate
    summary["warnings"] = " | ".join(warns)
    for w in warns:
        warnings.warn(w, CompareWarning, stacklevel=2)
    comp = Comparison(names=(name_a, name_b), dose_a=da, dose_b=db, spacing_mm=tuple(a.spacing_mm),
                      origin_mm=tuple(a.origin_mm), direction=tuple(a.direction), difference_gy=diff,
                      relative_difference=reldiff, gamma=gam, regions=regions, dvh=dvhs, summary=summary,
                      notes=notes, warnings=warns)
    if output_dir is not None:
        comp.write(output_dir)
    return comp


# ---- atomic file helpers -------------------------------------------------------------------
def _nz(v: float) -> float:
    """NaN (unknown) as 0 in a sum of squares."""
    return 0.0 if math.isnan(v) else v


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{v:.6g}"
    return "" if v is None else str(v)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    from rptdose.quant.outputs import csv_text  # text cells starting with = + - @ escaped (CSV injection)

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([csv_text(str(c)) for c in cols])
    for r in rows:
        w.writerow([csv_text(_fmt(v)) if isinstance(v := r.get(c), str) else _fmt(v) for c in cols])
    return write_text(path, buf.getvalue())


def _write_figure(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(buf.getvalue())
    return path


def _write_image(image: Any, path: Path) -> Path:
    from rptdose.io.atomic import write_sitk_image  # read back: ITK may not report a failed write

    return write_sitk_image(path, image)
