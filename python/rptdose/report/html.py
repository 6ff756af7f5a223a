"""The run report: one self-contained HTML page (images embedded as base64 PNG, no external
files, no scripts) that a physicist can read, check and sign.

Sections: summary (patient label, nuclide, administration, method and what applies to it:
histories, seed and backend for Monte Carlo, the kernel or absorbed-fraction table for vsv/sphere),
warnings, the region table, dose slices, DVH, time points (quantification report), the
time-activity fits, the outputs written (links relative to the page), and the provenance
(versions, input SHA-256s, the study file's text, settings, timings).
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

_CSS = """
body{font-family:sans-serif;max-width:1300px;margin:1em auto;color:#222}
table{border-collapse:collapse;font-size:13px;margin:0.5em 0}
td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}
th{background:#eee} td.l,th.l{text-align:left}
.warn{background:#fff3cd;border:1px solid #e0c060;padding:0.5em 1em}
.ok{background:#e8f5e9;border:1px solid #90c090;padding:0.5em 1em}
pre{background:#f6f6f6;padding:0.5em;font-size:12px;overflow-x:auto;white-space:pre-wrap}
img{max-width:100%;height:auto;display:block}
.gallery{display:flex;flex-wrap:wrap;gap:6px;align-items:flex-start}
.gallery img{width:calc(50% - 3px)}
figure{margin:0.5em 0} figcaption{font-size:13px;color:#444;max-width:70em}
"""


def _e(v: Any) -> str:
    return html.escape(str(v))


def _num(v: Any, fmt: str = ".4g", scale: float = 1.0) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "&ndash;"
    if isinstance(v, (int, float)):
        return format(v * scale, fmt)
    return _e(v)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _link(path: Path, outdir: Path) -> str:
    """One item of the outputs list: a link relative to the report's folder (outdir), or the
    path as text for a file outside it."""
    from urllib.parse import quote

    p = Path(path)
    if not p.is_relative_to(outdir):
        return f"<li>{_e(p)}</li>"
    rel = p.relative_to(outdir).as_posix()
    return f'<li><a href="{_e(quote(rel))}">{_e(rel)}</a></li>'


def _table(rows: list[dict], cols: list[tuple[str, str, str, float]]) -> str:
    """cols: (key, header, format, scale); format "" = text."""
    head = "".join(f'<th class="{"l" if not f else ""}">{_e(h)}</th>' for _, h, f, _s in cols)
    body = []
    for r in rows:
        cells = []
        for key, _h, fmt, scale in cols:
            v = r.get(key)
            if not fmt:
                text = ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else ("" if v is None else str(v))
                cells.append(f'<td class="l">{_e(text)}</td>')
            else:
                cells.append(f"<td>{_num(v, fmt, scale)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


REGION_TABLE = [("name", "region", "", 1), ("kind", "kind", "", 1), ("mean_dose_gy", "mean (Gy)", ".4g", 1),
                ("mean_dose_rel_uncertainty", "stat. +- (%)", ".2f", 100),
                ("tia_rel_uncertainty", "TIA fit +- (%)", ".2f", 100),
                ("d2_gy", "D2 (Gy)", ".4g", 1), ("d50_gy", "D50 (Gy)", ".4g", 1), ("d98_gy", "D98 (Gy)", ".4g", 1),
                ("max_gy", "max (Gy)", ".4g", 1), ("volume_ml", "volume (ml)", ".4g", 1),
                ("mass_g", "mass (g)", ".4g", 1), ("tia_bq_s", "TIA (MBq h)", ".4g", 1 / 3.6e9),
                ("t_eff_h", "T_eff (h)", ".3g", 1), ("tia_model", "TIA model", "", 1),
                ("tia_flags", "fit flags", "", 1)]
BUDGET_TABLE = [("name", "region", "", 1), ("mean_dose_gy", "mean (Gy)", ".4g", 1),
                ("u_calibration", "calibration (%)", ".2f", 100), ("u_recovery", "recovery (%)", ".2f", 100),
                ("u_volume", "segmentation (%)", ".2f", 100), ("u_tia_fit", "TIA fit (%)", ".2f", 100),
                ("u_statistical", "MC statistics (%)", ".2f", 100), ("u_total", "total (%)", ".2f", 100)]
TIMEPOINT_TABLE = [("label", "time point", "", 1), ("acquisition_start", "scan start", "", 1),
                   ("time_h", "time (h)", ".2f", 1), ("units", "units", "", 1),
                   ("activity_fov_mbq", "FOV (MBq)", ".5g", 1),
                   ("activity_fov_decay_corrected_mbq", "FOV decay-corr. (MBq)", ".5g", 1),
                   ("percent_of_administered_decay_corrected", "% of administered", ".1f", 1),
                   ("registration", "registration", "", 1),
                   ("registration_metric", "registration metric (Mattes MI, lower = better)", ".4g", 1)]


#: Folders with more input files than this are summarised on one line of the report.
GROUP_FILES = 3


def _grouped_hashes(inputs: dict[str, str]) -> list[dict[str, str]]:
    import hashlib

    folders: dict[str, list[tuple[str, str]]] = {}
    for f, h in inputs.items():
        folders.setdefault(str(Path(f).parent), []).append((Path(f).name, h))
    rows = []
    for folder, items in folders.items():
        if len(items) > GROUP_FILES:
            digest = hashlib.sha256("".join(f"{n}\0{h}\n" for n, h in sorted(items)).encode()).hexdigest()
            rows.append({"file": f"{folder}/ ({len(items)} files)", "sha256": digest})
        else:
            rows.extend({"file": str(Path(folder) / n), "sha256": h} for n, h in items)
    return rows


#: What each dose method's region uncertainty is (None: the method has none).
STATISTICAL_UNCERTAINTY = {"mc": "Monte Carlo statistical (batch method)",
                           "vsv": "the kernel's Monte Carlo noise only, propagated (upper bound)",
                           "sphere": "the absorbed fractions' Monte Carlo noise only",
                           "ldm": None}


def method_facts(dose: Any) -> list[tuple[str, str]]:
    """(label, text) of what applies to the dose method of a run (``rptdose run`` summary and
    report.html): histories, seed and backend for Monte Carlo; the kernel (vsv) or the sphere
    absorbed-fraction table (sphere) and how it was made; for each, what its statistical
    uncertainty is. Local deposition has no transport and no statistical uncertainty."""
    prov = dose.provenance or {}
    settings = prov.get("settings") or {}
    stat = STATISTICAL_UNCERTAINTY.get(dose.method)
    if dose.method == "mc":
        where = getattr(dose, "scheduler", None)
        return [("histories", str(dose.histories)), ("seed", str(dose.seed)), ("backend", str(dose.backend)),
                *([("scheduler", f"Dask, {where}")] if where else []), ("statistical uncertainty", stat)]
    if dose.method == "vsv":
        k = prov.get("kernel") or {}
        voxel = "x".join(f"{float(v):g}" for v in k.get("voxel_mm") or [])
        where = settings.get("kernel_file") or "computed in this run, not cached"
        return [("kernel", f"{k.get('nuclide', '?')} voxel S-values, {voxel} mm voxels in {k.get('medium', '?')}, "
                           f"rptdose Monte Carlo: {k.get('histories', '?')} histories, seed {k.get('seed', '?')}"),
                ("kernel file", str(where)), ("statistical uncertainty", stat)]
    if dose.method == "sphere":
        t = prov.get("absorbed_fractions") or {}
        where = settings.get("table_file") or "computed in this run, not cached"
        return [("absorbed fractions", f"{t.get('nuclide', '?')} spheres in {t.get('medium', '?')}, rptdose Monte "
                                       f"Carlo: {t.get('histories_per_sphere_and_component', '?')} histories per "
                                       f"sphere and component, seed {t.get('seed', '?')}"),
                ("absorbed-fraction file", str(where)), ("statistical uncertainty", stat)]
    if dose.method == "ldm":
        return [("transport", "none: each voxel keeps its decays' non-penetrating energy"),
                ("statistical uncertainty", "none (deterministic)")]
    return [("histories", str(dose.histories)), ("seed", str(dose.seed)), ("backend", str(dose.backend))]


def render_report(study: Any, dose: Any, rows: list[dict], notes: list[str], provenance: dict,
                  written: dict[str, Path], outdir: Path) -> str:
    """The HTML text of the report (see the module docstring)."""
    from rptdose.quant.outputs import safe_name
    from rptdose.report.figures import DVH_AXIS_FACTOR, SCALE_PERCENTILE

    prov = provenance
    dp = prov["dose"]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>rptdose report: {_e(study.name)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>Absorbed dose report: {_e(study.name)}</h1>"]
    chain_note = getattr(getattr(study, "source", None), "chain_note", None)
    summary = [("study file", study.path), ("nuclide", study.nuclide),
               *([("decay chain", chain_note)] if chain_note else []),
               ("administered activity", f"{study.administered_activity_bq / 1e6:.6g} MBq"),
               ("administration time", study.administration_time.isoformat()),
               ("time points", ", ".join(f"{tp.label} ({tp.time_h:.1f} h)" for tp in study.timepoints)),
               ("dose method", dose.method + (" (dose-rate integration per voxel)" if dp["dose_rate_integration"]
                                              else " (transport of the time-integrated activity)")),
               *method_facts(dose),
               ("electron transport", dp["electron_transport"]),
               ("dose grid", f"{study.phantom.shape} (z, y, x) voxels of "
                             f"{' x '.join(f'{v:.3g}' for v in study.phantom.spacing_mm)} mm (x, y, z)"),
               ("rptdose", prov["rptdose_version"]), ("created", prov["created"])]
    parts.append("<table>" + "".join(f'<tr><th class="l">{_e(k)}</th><td class="l">{_e(v)}</td></tr>'
                                     for k, v in summary) + "</table>")
    parts.append("<h2>Warnings</h2>")
    if notes:
        parts.append('<div class="warn"><ul>' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul></div>")
    else:
        parts.append('<div class="ok">none: activity in the field of view consistent with the administration, '
                     'fits without guards, statistical uncertainties below the thresholds</div>')
    parts.append("<h2>Regions</h2><p>Mean dose = energy / mass (MIRD). Uncertainties are relative 1-sigma: "
                 "statistical (Monte Carlo batch method, or the fast method's own) and of the region's TIA fit; "
                 "D<sub>x</sub> is the minimum dose to the hottest x % of the volume.</p>")
    parts.append(_table(rows, REGION_TABLE))
    if rows and "u_total" in rows[0]:
        parts.append("<h2>Uncertainty budget</h2><p>Relative standard uncertainties (k = 1) of each region's mean "
                     "dose, combined as independent terms by their root sum of squares (EANM practical guidance on "
                     "uncertainty analysis, Gear et al., EJNMMI 45:2456 (2018)); the calibration and recovery terms "
                     "are fully correlated between the scans, so they enter once, not once per scan. A dash is "
                     "a term unknown here (a sensitivity typed without its uncertainty, or no recovery correction), "
                     "left out of the total. Details: docs/study_file.md, <i>Uncertainty budget</i>.</p>" + _table(rows, BUDGET_TABLE))
        if "budget_png" in written:
            parts.append("<figure>" + _img(written["budget_png"], "uncertainty budget") + "</figure>")
    from rptdose.analysis.alpha import report_html as chain_alpha_html  # decay chain, Gy(RBE)

    parts.append(chain_alpha_html(study, dose, written))
    if "slices_png" in written:
        parts.append("<h2>Dose on CT</h2><figure>" + _img(written["slices_png"], "dose slices") +
                     f"<figcaption>The colour scale ends at the larger of the {SCALE_PERCENTILE:g}th percentile of "
                     "the dose inside the body and the highest D2 of the regions (the values and the maximum, with "
                     "where it lies, are written on the figure): "
                     "SPECT blur and noise give air voxels next to the patient doses far above any organ's."
                     "</figcaption>"
                     "</figure>")
    if "dvh_png" in written:
        parts.append("<h2>Dose-volume histograms</h2><figure>" + _img(written["dvh_png"], "DVH") +
                     f"<figcaption>The dose axis ends at {DVH_AXIS_FACTOR:g} times the highest D1 of the regions; "
                     "the values of every bin up to the highest region maximum are in dvh.csv.</figcaption></figure>")
    parts.append("<h2>Time points</h2>" + _table(study.quant_report, TIMEPOINT_TABLE))
    ob = getattr(study, "tia_outside_body", None) or {}
    if ob:
        by = ob.get("tia_fraction_by_method", {})
        n = ob.get("voxel_methods", {})
        what = {"drop": "set to 0", "keep": "kept", "reassign": "moved to the nearest body voxel"}[ob["mode"]]
        parts.append("<h2>Time integration</h2><p>Voxel TIA by method (docs/study_file.md, <i>Voxel TIA on noisy "
                     "SPECT</i>): " + ", ".join(f"{_e(k)} {100 * v:.2f} % of the TIA ({n.get(k, 0)} voxels)"
                                                for k, v in by.items() if k != "none")
                     + f". Activity imaged outside the CT's body outline: {100 * ob['outside_fraction']:.2f} % of "
                     f"the TIA, {what} (tia.outside_body = &quot;{_e(ob['mode'])}&quot;). "
                     "The map of methods is tia/tia_method.nii.gz.</p>")
    tacs = [(name, written.get(f"tia/tac_{name}")) for name in study.region_names]
    if any(p for _, p in tacs):
        parts.append("<h2>Time-activity fits</h2><div class=\"gallery\">"
                     + "".join(_img(p, f"TAC {name}") for name, p in tacs if p is not None) + "</div>")
    checks = [p for k, p in written.items() if k.startswith("tia/check_tp")]
    if checks:
        parts.append("<h2>Registration checks</h2><p>Each time point's CT registered to the first one's; the "
                     "metric is the final Mattes mutual information (dimensionless, negative: lower is better "
                     "aligned; compare time points of one study, not studies).</p>")
        parts.extend(_img(p, p.name) for p in checks)
    parts.append("<h2>Outputs</h2><p>Links relative to this page (they work while it stays in the results "
                 "folder).</p><ul>" + "".join(_link(p, outdir) for p in written.values())
                 + '<li><a href="report.html">report.html</a></li></ul>')
    parts.append("<h2>Provenance</h2>")
    inputs = prov["study"].get("input_sha256", {})
    parts.append("<h3>Inputs (SHA-256)</h3><p>Folders of many files (DICOM series) are shown as one line: the "
                 "SHA-256 of their files' names and SHA-256s in order; every file's is in dose.h5.</p>"
                 + _table(_grouped_hashes(inputs), [("file", "file or folder", "", 1), ("sha256", "SHA-256", "", 1)]))
    versions = dict(prov["study"].get("versions", {}))
    versions.update({f"dose: {k}": v for k, v in (dp["provenance"].get("versions") or {}).items()})
    physics = dp["provenance"].get("physics_data") or {}
    parts.append("<h3>Versions and physics data</h3><pre>" + _e(json.dumps(
        {"rptdose": prov["rptdose_version"], "core": dp["provenance"].get("core_version"), "libraries": versions,
         "physics_data": physics}, indent=1, default=str)) + "</pre>")
    parts.append("<h3>Study file</h3><pre>" + _e(prov["study_file_text"]) + "</pre>")
    parts.append("<h3>Settings and timings</h3><pre>" + _e(json.dumps(
        {"settings": prov["study"].get("settings"), "timings_s": prov["timings_s"],
         "transport_timings_s": dp["provenance"].get("timing_s"),
         "energy_balance_mev_per_decay": dose.energy_balance}, indent=1, default=str)) + "</pre>")
    parts.append(f"<p>The full provenance is in dose.h5 (attribute provenance) and regions.json. "
                 f"Time-activity plots: tia/plots/tac_&lt;region&gt;.png "
                 f"({', '.join(_e(safe_name(n)) for n in study.region_names)}).</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
