"""The summary page of ``rptdose run-many`` (``OUTDIR/summary.html``): one self-contained page
(the figure embedded as base64 PNG, no scripts, links relative to the page) from summary.json's
content (:func:`rptdose.cli_many.summary_document`).

Sections: the studies (status, method, histories, time, a link to each report.html), the failures
with their errors, the regions x studies table of the mean dose +- its uncertainty (Gy, k = 1:
the region budget's ``u_total`` where known, else the statistical uncertainty, marked), and a
figure of each region's mean dose across the studies with those uncertainties as error bars.
"""

from __future__ import annotations

import base64
import io
from typing import Any
from urllib.parse import quote

from rptdose.report.html import _CSS, _e, _num

#: Regions left out of the figure (they are in the table): the whole field of view.
FIGURE_EXCLUDE = ("field_of_view",)
#: The figure's width (inches at 100 dpi) at most: it fits the page (1300 px).
FIGURE_MAX_WIDTH_IN = 13.0


def _uncertainty_gy(r: dict[str, Any]) -> tuple[float | None, str]:
    """A region row's absolute uncertainty (Gy) for the page and the figure, and which it is:
    ``u_total`` (the budget's root sum of squares) where known, else the statistical one."""
    if r.get("u_total_gy") is not None:
        return r["u_total_gy"], "total"
    if r.get("mean_dose_uncertainty_gy") is not None:
        return r["mean_dose_uncertainty_gy"], "statistical"
    return None, ""


def _regions_in_order(studies: list[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for s in studies:
        for r in s.get("regions", []):
            names.setdefault(r["region"], None)
    return list(names)


def summary_figure_png(doc: dict[str, Any]) -> bytes | None:
    """PNG bytes of the figure: per region (x), each study's mean dose (a dot, offset per study)
    with its uncertainty (error bar); a logarithmic dose axis when the doses span more than two
    decades. None when no study has a region to show."""
    from rptdose.quant.plots import _figure

    ok = [s for s in doc["studies"] if s["status"] == "ok"]
    regions = [n for n in _regions_in_order(ok) if n not in FIGURE_EXCLUDE]
    if not regions:
        return None
    width = min(max(6.0, 0.6 * len(regions) + 3.0), FIGURE_MAX_WIDTH_IN)
    fig = _figure(width, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    n = len(ok)
    spread = min(0.7, 0.2 * (n - 1))     # the studies' dots side by side within a region's slot
    values = []
    for j, s in enumerate(ok):
        rows = {r["region"]: r for r in s["regions"]}
        xs, ys, es = [], [], []
        for i, name in enumerate(regions):
            r = rows.get(name)
            if r is None or r.get("mean_dose_gy") is None:
                continue
            off = 0.0 if n == 1 else (j / (n - 1) - 0.5) * spread
            u, _which = _uncertainty_gy(r)
            xs.append(i + off)
            ys.append(r["mean_dose_gy"])
            es.append(u or 0.0)
        values.extend(y for y in ys if y > 0)
        ax.errorbar(xs, ys, yerr=es, fmt="o", ms=4, capsize=2, elinewidth=1, color=f"C{j % 10}",
                    label=s["patient"])
    if values and max(values) / min(values) > 100.0:
        ax.set_yscale("log")
    ax.set_xticks(range(len(regions)))
    ax.set_xticklabels(regions, rotation=30, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(regions) - 0.4)
    for i in range(1, len(regions)):
        ax.axvline(i - 0.5, color="0.85", linewidth=0.6)
    ax.set_ylabel("mean absorbed dose (Gy)")
    ax.set_title("region mean dose per study (error bars: 1 sigma, u_total where known)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    if n <= 20:
        ax.legend(fontsize=7, loc="best", ncol=1 + n // 8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _href(path: str) -> str:
    return _e(quote(path))


def summary_html(doc: dict[str, Any], figure_png: bytes | None = None) -> str:
    """The HTML text of summary.html (module docstring)."""
    studies = doc["studies"]
    ok = [s for s in studies if s["status"] == "ok"]
    failed = [s for s in studies if s["status"] != "ok"]
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>rptdose run-many: "
             f"{len(studies)} studies</title><style>{_CSS}</style></head><body>",
             f"<h1>Region doses of {len(studies)} studies</h1>",
             f"<p>{len(ok)} done, {len(failed)} failed. rptdose {_e(doc.get('rptdose_version', ''))}, "
             f"{_e(doc.get('created', ''))}. Each study's own report.html has its inputs, warnings, uncertainty "
             "budget and provenance.</p>"]
    # the studies
    rows = []
    for s in studies:
        if s["status"] == "ok":
            link = f'<a href="{_href(s["report"])}">{_e(s["report"])}</a>'
            what = (f"{_e(s['method'])}" + (f", {s['histories']} histories, seed {s['seed']}, {_e(s['backend'])}"
                                            if s["method"] == "mc" else "")
                    + (f", scheduler {_e(s['scheduler'])}" if s.get("scheduler") else ""))
            warn = len(s.get("warnings") or [])
            status = "ok" + (f" ({warn} warning{'s' if warn != 1 else ''})" if warn else "")
        else:
            link = (f'<a href="{_href(s["error_file"])}">{_e(s["error_file"])}</a>' if s.get("error_file") else "")
            what, status = "", "<b>failed</b>"
        rows.append(f'<tr><td class="l">{_e(s["patient"])}</td><td class="l">{status}</td>'
                    f'<td class="l">{what}</td><td>{_num(s.get("elapsed_s"), ".1f")}</td>'
                    f'<td class="l">{link}</td><td class="l">{_e(s["study_file"])}</td></tr>')
    parts.append("<h2>Studies</h2><table><tr><th class='l'>patient</th><th class='l'>status</th>"
                 "<th class='l'>dose</th><th>time (s)</th><th class='l'>report</th><th class='l'>study file</th>"
                 "</tr>" + "".join(rows) + "</table>")
    if failed:
        parts.append('<h2>Failures</h2><div class="warn"><ul>'
                     + "".join(f"<li><b>{_e(s['patient'])}</b> ({_e(s['study_file'])}): {_e(s['error'])}"
                               + (f' &mdash; traceback: <a href="{_href(s["error_file"])}">{_e(s["error_file"])}</a>'
                                  if s.get("error_file") else "") + "</li>" for s in failed)
                     + "</ul></div>")
    # regions x studies
    if ok:
        regions = _regions_in_order(ok)
        head = "".join(f"<th>{_e(s['patient'])}</th>" for s in ok)
        body = []
        marked = False
        for name in regions:
            cells = []
            for s in ok:
                r = next((x for x in s["regions"] if x["region"] == name), None)
                if r is None or r.get("mean_dose_gy") is None:
                    cells.append("<td>&ndash;</td>")
                    continue
                u, which = _uncertainty_gy(r)
                star = "*" if which == "statistical" else ""
                marked = marked or bool(star)
                text = _num(r["mean_dose_gy"], ".4g") + ("" if u is None else f" &plusmn; {_num(u, '.2g')}{star}")
                cells.append(f"<td>{text}</td>")
            body.append(f'<tr><td class="l">{_e(name)}</td>' + "".join(cells) + "</tr>")
        parts.append("<h2>Mean dose per region (Gy)</h2><p>Mean absorbed dose (energy / mass) &plusmn; its standard "
                     "uncertainty (k = 1) in Gy: the region's total <code>u_total</code> (calibration, recovery, "
                     "segmentation, time-activity fit and Monte Carlo statistics, the known terms in quadrature)"
                     + ("; * the statistical uncertainty alone, where the total is not known" if marked else "")
                     + ". summary.csv has both, relative and in Gy.</p>"
                     f"<table><tr><th class='l'>region</th>{head}</tr>{''.join(body)}</table>")
    if figure_png:
        data = base64.b64encode(figure_png).decode("ascii")
        parts.append("<h2>Figure</h2><figure><img alt='region mean doses across studies' "
                     f"src='data:image/png;base64,{data}'><figcaption>Each study's region mean doses (the field of "
                     "view left out), with the uncertainties of the table as error bars.</figcaption></figure>")
    settings = doc.get("settings") or {}
    # what was set on the command line (unset options are None; --dose-rate off is False)
    shown = {k: v for k, v in settings.items() if v is not None and v is not False and k != "plots"}
    parts.append("<h2>Settings</h2><p>Overrides of every study file's [dose] values: "
                 + (", ".join(f"{_e(k)} = {_e(v)}" for k, v in shown.items()) if shown else "none")
                 + ".</p></body></html>")
    return "\n".join(parts)
