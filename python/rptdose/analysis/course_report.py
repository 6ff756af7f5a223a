"""Outputs of ``rptdose course`` and ``rptdose plan``, every file written atomically
(``rptdose.quant.outputs``):

==========================  ==================================================================
file                        content
==========================  ==================================================================
``course.json``             per cycle and region: absorbed dose, BED, G, uncertainties; totals,
                            EQD2, limit checks, warnings, the plan (``plan``) when planned, and
                            the provenance (inputs' SHA-256, versions, parameter tables used)
``course_regions.csv``      one row per region and cycle, and a ``total`` row per region
``course_limits.csv``       one row per (region, limit): cumulative value, 1 sigma, fraction
``plan.csv``                (plan) per (organ, limit): delivered and its uncertainty u, the
                            activity that keeps the limit with the margin k u and the one that
                            reaches it, the margin, and that activity checked against every limit
``plan_sensitivity.csv``    (plan) the largest activity and the proposed one checked under
                            +-20 % kinetics
``course.html``             self-contained page: tables, bar charts (per cycle, cumulative,
                            limits, the proposal), the decision-support caveat, provenance
==========================  ==================================================================
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import platform
import sys
from pathlib import Path
from typing import Any

from rptdose.analysis.course import DECISION_SUPPORT, Course, Plan
from rptdose.errors import InputError


def _f(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def provenance(course: Course, argv: list[str] | None = None) -> dict[str, Any]:
    import numpy as np

    from rptdose._provenance import now_utc, package_version, rptdose_version

    return {
        "rptdose_version": rptdose_version(),
        "python": platform.python_version(), "numpy": np.__version__, "matplotlib": package_version("matplotlib"),
        "created_utc": now_utc(),
        "command": argv if argv is not None else sys.argv,
        "inputs": [{"cycle": c.label, "path": str(c.path), "sha256": c.sha256, "study_file": c.study_file,
                    "method": c.method} for c in course.cycles],
        "tissue_table": course.tissues.provenance(),
        "limits_table": course.limits.provenance(),
    }


def region_rows(course: Course) -> list[dict[str, Any]]:
    rows = []
    for rc in course.regions.values():
        ab = rc.tissue.alpha_beta_gy if rc.tissue else None
        for i, c in enumerate(course.cycles):
            if not rc.present[i]:
                continue
            r = c.regions[rc.name]
            rows.append({"region": rc.name, "kind": rc.kind, "tissue": rc.tissue.name if rc.tissue else "",
                         "cycle": c.label, "administration_time": c.time.isoformat(),
                         "activity_mbq": c.activity_mbq, "dose_gy": rc.dose_gy[i], "dose_sigma_gy": rc.dose_sigma_gy[i],
                         "dose_sigma_with_tia_gy": rc.dose_sigma_tia_gy[i],
                         "dose_per_mbq_gy": rc.dose_gy[i] / c.activity_mbq, "t_eff_h": r.t_eff_h,
                         "t_uptake_h": r.t_uptake_h, "tia_model": r.tia_model, "alpha_beta_gy": ab,
                         "t_rep_h": rc.tissue.t_rep_h if rc.tissue else None, "g_factor": rc.g[i],
                         "bed_gy": rc.bed_gy[i], "bed_sigma_gy": rc.bed_sigma_gy[i]})
        rows.append({"region": rc.name, "kind": rc.kind, "tissue": rc.tissue.name if rc.tissue else "",
                     "cycle": "total" + ("" if rc.complete else " (incomplete)"),
                     "activity_mbq": sum(c.activity_mbq for c, p in zip(course.cycles, rc.present) if p),
                     "dose_gy": rc.total_dose_gy, "dose_sigma_gy": rc.total_dose_sigma_gy,
                     "dose_sigma_with_tia_gy": rc.total_dose_sigma_tia_gy,
                     "alpha_beta_gy": ab, "bed_gy": rc.total_bed_gy, "bed_sigma_gy": rc.total_bed_sigma_gy,
                     "eqd2_gy": rc.total_eqd2_gy})
    return rows


def limit_rows(course: Course) -> list[dict[str, Any]]:
    return [{"region": ch.region, "tissue": ch.limit.tissue, "quantity": ch.limit.quantity,
             "limit_gy": ch.limit.value_gy, "cumulative_gy": ch.total_gy, "sigma_gy": ch.sigma_gy, "k": ch.k,
             "fraction_of_limit": ch.fraction, "status": ch.status, "source": ch.limit.source}
            for ch in course.checks]


def plan_rows(plan: Plan) -> list[dict[str, Any]]:
    return [{"region": r.region, "limit": r.limit.label, "quantity": r.limit.quantity, "limit_gy": r.limit.value_gy,
             "delivered_gy": r.delivered_gy, "delivered_u_gy": r.delivered_u_gy, "u_basis": r.u_basis,
             "k": plan.k, "activity_per_cycle_mbq": r.activity_mbq,
             "activity_to_the_limit_mbq": r.activity_no_margin_mbq, "projected_gy": r.at.projected_gy,
             "projected_u_gy": r.at.u_gy, "margin_gy": r.at.margin_gy,
             "dose_per_mbq_gy": plan.kinetics[r.region].dose_per_mbq,
             "dose_per_mbq_rel_u": plan.kinetics[r.region].u_rel, "t_eff_h": plan.kinetics[r.region].t_eff_h,
             "g_factor": plan.kinetics[r.region].g, "sets_the_maximum": r is plan.limiting,
             "check_of_this_activity": r.check.short_label} for r in plan.rows]


def check_rows(check: Any) -> list[dict[str, Any]]:
    """Every limit at one activity (an ActivityCheck): projected, u, margin k u, status."""
    return [{"region": s.region, "limit": s.limit.label, "quantity": s.limit.quantity, "limit_gy": s.limit.value_gy,
             "activity_per_cycle_mbq": s.activity_mbq, "delivered_gy": s.delivered_gy, "projected_gy": s.projected_gy,
             "u_gy": s.u_gy, "k": s.k, "margin_gy": s.margin_gy, "projected_plus_margin_gy": s.upper_gy,
             "fraction_of_limit": s.fraction_of_limit, "fraction_of_limit_with_margin": s.upper_fraction_of_limit,
             "status": s.status} for s in check.limits]


def plan_dict(plan: Plan) -> dict[str, Any]:
    lim = plan.limiting
    return {
        "caveat": DECISION_SUPPORT,
        "cycles_left": plan.cycles_left,
        "kinetics_from_cycle": plan.course.cycles[plan.kinetics_cycle].label,
        "k": plan.k,
        "margin_rule": "projected cumulative total + k u <= limit for every organ at risk (u: standard uncertainty "
                       "of the projected total; k standard uncertainties, default 1.645 = one-sided 95 %)",
        "max_activity_per_cycle_mbq": plan.max_activity_mbq,
        "limited_by": {"region": lim.region, "limit": lim.limit.label, "source": lim.limit.source} if lim else None,
        "target_gy": plan.target_gy, "target_quantity": plan.target_quantity,
        "target": [{"tumour": n, "delivered_gy": d, "activity_per_cycle_mbq": a} for n, d, a in plan.target_rows],
        "target_activity_per_cycle_mbq": plan.target_activity_mbq,
        "target_check": None if plan.target_check is None else plan.target_check.label,
        "proposed_activity_per_cycle_mbq": plan.proposed_activity_mbq,
        "proposed_status": plan.proposed_check.status,
        "proposed_check": plan.proposed_check.label,
        "proposed_limits": check_rows(plan.proposed_check),
        "limits": plan_rows(plan),
        "projection": [{"region": p.region, "quantity": p.quantity, "delivered_gy": p.delivered_gy,
                        "projected_gy": p.projected_gy, "u_gy": p.u_gy, "limit_gy": p.limit_gy,
                        "margin_gy": p.margin_gy if p.limit_gy is not None else None,
                        "limit_minus_projected_minus_margin_gy": p.room_gy}
                       for p in plan.projections],
        "sensitivity": plan.sensitivity,
        "warnings": plan.warnings,
    }


def course_dict(course: Course, plan: Plan | None, prov: dict[str, Any]) -> dict[str, Any]:
    out = {
        "format": "rptdose-course", "format_version": 1, "nuclide": course.nuclide,
        "cycles": [{"cycle": c.label, "administration_time": c.time.isoformat(), "activity_mbq": c.activity_mbq,
                    "method": c.method, "path": str(c.path)} for c in course.cycles],
        "regions": region_rows(course), "limits": limit_rows(course), "k": course.k,
        "regions_without_tissue": course.no_tissue, "warnings": course.warnings,
        "provenance": prov,
    }
    if plan is not None:
        out["plan"] = plan_dict(plan)
    return out


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return _f(obj)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------------
# figures and HTML
# --------------------------------------------------------------------------------------------

#: Width (inches, 100 dpi) at most of the course figure: it fits a page 13 in (1300 px) wide.
FIGURE_MAX_WIDTH_IN = 13.0


def course_figure(course: Course, plan: Plan | None = None) -> Any:
    """Stacked bars per region: one segment per cycle (cumulative total = bar height), the planned
    cycles hatched on top, limits as red lines. Columns: absorbed dose, BED; rows: organs, tumours
    (apart, so that the organs' scale is not set by the tumours)."""
    from rptdose.quant.plots import _figure

    groups = [[rc for rc in course.regions.values() if rc.kind != "tumour"],
              [rc for rc in course.regions.values() if rc.kind == "tumour"]]
    groups = [g for g in groups if g]
    # two panels side by side in at most FIGURE_MAX_WIDTH_IN (the page scales it to its width too)
    width = min(max(5.5, 0.55 * max(len(g) for g in groups) + 2.5), FIGURE_MAX_WIDTH_IN / 2)
    fig = _figure(2 * width, 4.2 * len(groups))
    for row, regions in enumerate(groups):
        names = [rc.name for rc in regions]
        for col, quantity in enumerate(("absorbed", "bed")):
            ax = fig.add_subplot(len(groups), 2, 2 * row + col + 1)
            _bars(ax, course, plan, regions, quantity)
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
            what = "BED" if quantity == "bed" else "absorbed dose"
            ax.set_ylabel(f"cumulative {what} (Gy)")
            tumours = regions[0].kind == "tumour"
            ax.set_title(f"{'tumours' if tumours else 'organs'}: {what} "
                         f"({'green: target' if tumours else 'red: limits'})", fontsize=10)
            ax.set_xlim(-0.6, max(len(names), 4) - 0.4)
            ax.grid(axis="y", alpha=0.3)
            if col == 0 and row == 0:
                ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def _bars(ax: Any, course: Course, plan: Plan | None, regions: list, quantity: str) -> None:
    n = len(regions)
    bottoms = [0.0] * n
    for i, c in enumerate(course.cycles):
        vals = []
        for rc in regions:
            v = (rc.bed_gy if quantity == "bed" else rc.dose_gy)[i]
            vals.append(v if math.isfinite(v) else 0.0)
        ax.bar(range(n), vals, bottom=bottoms, color=f"C{i % 10}", label=c.label,
               edgecolor="black", linewidth=0.4)
        bottoms = [b + v for b, v in zip(bottoms, vals)]
    if plan is not None:
        names = [rc.name for rc in regions]
        add = [0.0] * n
        for p in plan.projections:
            if p.quantity == quantity and p.region in names:
                add[names.index(p.region)] = p.projected_gy - p.delivered_gy
        ax.bar(range(n), add, bottom=bottoms, color="white", hatch="//", edgecolor="gray",
               label=f"planned: {plan.cycles_left} x {plan.proposed_activity_mbq:.0f} MBq")
    for j, rc in enumerate(regions):
        for lim in rc.limits:
            if lim.quantity == quantity:
                ax.hlines(lim.value_gy, j - 0.45, j + 0.45, colors="red", linewidth=2)
                ax.annotate(f"{lim.value_gy:g}", (j + 0.45, lim.value_gy), fontsize=7, color="red",
                            va="bottom", ha="right")
        if plan is not None and plan.target_gy is not None and rc.kind == "tumour" \
                and quantity == plan.target_quantity:
            ax.hlines(plan.target_gy, j - 0.45, j + 0.45, colors="green", linewidth=2, linestyles="dashed")


def _png_base64(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return "" if not math.isfinite(v) else f"{v:.4g}"
        return html.escape(str(v))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def course_html(course: Course, plan: Plan | None, prov: dict[str, Any], figure_png_b64: str) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>rptdose course</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:75em} table{border-collapse:collapse;margin:0.5em 0}"
        "td,th{border:1px solid #aaa;padding:2px 6px;font-size:85%} th{background:#eee}"
        "img{max-width:100%;height:auto;display:block} pre{white-space:pre-wrap;overflow-wrap:anywhere}"
        "table{display:block;max-width:100%;overflow-x:auto}"
        ".warn{background:#fff3cd;border:1px solid #e0b000;padding:0.6em} .over{color:#b00;font-weight:bold}"
        "</style></head><body>",
        f"<h1>Course: {esc(course.nuclide)}, {len(course.cycles)} cycle(s)</h1>",
        f"<p class='warn'><b>{esc(DECISION_SUPPORT)}</b></p>",
        "<h2>Cycles</h2>",
        _table([{"cycle": c.label, "administration time": c.time.isoformat(), "activity (MBq)": c.activity_mbq,
                 "method": c.method, "study file": c.study_file} for c in course.cycles],
               ["cycle", "administration time", "activity (MBq)", "method", "study file"]),
        f"<img alt='cumulative dose and BED per region' src='data:image/png;base64,{figure_png_b64}'>",
        "<h2>Limits</h2>",
        _table(limit_rows(course), ["region", "quantity", "limit_gy", "cumulative_gy", "sigma_gy", "k",
                                    "fraction_of_limit", "status", "source"]),
        "<p>sigma_gy: the standard uncertainty u of the cumulative total that the limits use (the most complete "
        "one each cycle's regions.json gives: u_total, else statistical and TIA fit, else statistical); "
        "\"inside k u\": the total is below the limit but less than k u below it.</p>",
        "<h2>Per region and cycle</h2>",
        _table(region_rows(course), ["region", "kind", "tissue", "cycle", "activity_mbq", "dose_gy", "dose_sigma_gy",
                                     "dose_sigma_with_tia_gy",
                                     "dose_per_mbq_gy", "t_eff_h", "alpha_beta_gy", "t_rep_h", "g_factor", "bed_gy",
                                     "bed_sigma_gy", "eqd2_gy"]),
        "<p>BED = D (1 + G D / (&alpha;/&beta;)), G the Lea&ndash;Catcheside factor of a mono-exponential dose rate "
        "(effective half-life t_eff) with mono-exponential repair (half-time t_rep) (Dale 1985, Br J Radiol "
        "58:515). EQD2 = BED / (1 + 2 Gy/(&alpha;/&beta;)). Totals add over cycles; 1 sigma: the per-cycle "
        "statistical uncertainty of the mean dose in quadrature; dose_sigma_with_tia_gy adds the TIA fit "
        "uncertainty where the cycle's regions.json gives it (the uncertainty of the radiobiological parameters "
        "is not included). BED of the region mean dose (dose non-uniformity inside a region is not included).</p>",
    ]
    if course.no_tissue:
        parts.append(f"<p><b>{esc(course.no_tissue_line)}</b></p>")
    if plan is not None:
        pd = plan_dict(plan)
        lim = plan.limiting
        parts += [
            "<h2>Proposal for the remaining cycles</h2>",
            f"<p class='warn'><b>{esc(DECISION_SUPPORT)}</b></p>",
            f"<p>{plan.cycles_left} remaining cycle(s), kinetics of cycle "
            f"{esc(plan.course.cycles[plan.kinetics_cycle].label)}. Margin: every organ at risk keeps "
            f"projected + k&nbsp;u &le; limit with <b>k = {plan.k:g}</b> (u: the standard uncertainty of its projected "
            "cumulative total; the planned cycles share the kinetics cycle's dose-per-MBq error). Largest activity "
            f"per cycle within every limit with the margin: <b>{plan.max_activity_mbq:.1f} MBq</b>, set by "
            f"<b>{esc(lim.region)}</b> ({esc(lim.limit.label)}; {lim.activity_no_margin_mbq:.1f} MBq would reach "
            "that limit itself).",
        ]
        if plan.target_gy is not None and plan.target_activity_mbq is not None:
            parts.append(f" Activity per cycle for a tumour {esc(plan.target_quantity)} of {plan.target_gy:g} Gy: "
                         f"<b>{plan.target_activity_mbq:.1f} MBq</b>"
                         + (f": {esc(plan.target_check.label)}." if plan.target_check is not None else "."))
        parts.append(f" Proposed: <b>{plan.proposed_activity_mbq:.1f} MBq</b> per cycle: "
                     f"<b>{esc(plan.proposed_check.label)}</b>.</p>")
        parts.append(_table(pd["limits"], ["region", "limit", "delivered_gy", "delivered_u_gy", "u_basis",
                                           "activity_per_cycle_mbq", "activity_to_the_limit_mbq", "margin_gy",
                                           "dose_per_mbq_gy", "t_eff_h", "g_factor", "sets_the_maximum",
                                           "check_of_this_activity"]))
        if pd["target"]:
            parts.append(_table(pd["target"], ["tumour", "delivered_gy", "activity_per_cycle_mbq"]))
        parts += ["<h3>Every limit at the proposed activity</h3>",
                  _table(pd["proposed_limits"], ["region", "limit", "projected_gy", "u_gy", "k", "margin_gy",
                                                 "projected_plus_margin_gy", "limit_gy",
                                                 "fraction_of_limit_with_margin", "status"]),
                  "<h3>Projected totals at the proposed activity</h3>",
                  _table(pd["projection"], ["region", "quantity", "delivered_gy", "projected_gy", "u_gy", "limit_gy",
                                            "margin_gy", "limit_minus_projected_minus_margin_gy"]),
                  "<h3>Sensitivity to the kinetics (&plusmn;20 %)</h3>",
                  _table(plan.sensitivity, ["scenario", "max_activity_mbq", "limited_by", "proposed_activity_mbq",
                                            "proposed_short_label"])]
    warnings = plan.warnings if plan is not None else course.warnings
    if warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{esc(w)}</li>" for w in warnings) + "</ul>")
    parts += ["<h2>Parameters</h2>",
              _table([t.as_dict() for t in course.tissues.tissues.values()],
                     ["name", "alpha_beta_gy", "t_rep_h", "source", "checked", "note"]),
              f"<p>tissue table {esc(course.tissues.path)} (SHA-256 {course.tissues.sha256}); limits table "
              f"{esc(course.limits.path)} (SHA-256 {course.limits.sha256})</p>",
              "<h2>Provenance</h2>", f"<pre>{esc(json.dumps(_clean(prov), indent=1, default=str))}</pre>",
              "</body></html>"]
    return "\n".join(parts)


def write_course_outputs(outdir: str | Path, course: Course, plan: Plan | None = None,
                         argv: list[str] | None = None) -> dict[str, Path]:
    """Write the course (and plan) files into ``outdir`` (created if missing); {label: path}."""
    from rptdose.quant.outputs import write_csv, write_text

    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--output '{out}' (is a file): expected a folder for the results")
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance(course, argv)
    written = {
        "course_json": write_text(out / "course.json",
                                  json.dumps(_clean(course_dict(course, plan, prov)), indent=1, default=str) + "\n"),
        "course_regions_csv": write_csv(out / "course_regions.csv", region_rows(course)),
        "course_limits_csv": write_csv(out / "course_limits.csv", limit_rows(course)),
    }
    if plan is not None:
        written["plan_csv"] = write_csv(out / "plan.csv", plan_rows(plan))
        written["plan_sensitivity_csv"] = write_csv(out / "plan_sensitivity.csv", plan.sensitivity)
    png = _png_base64(course_figure(course, plan))
    written["course_html"] = write_text(out / "course.html", course_html(course, plan, prov, png))
    return written
