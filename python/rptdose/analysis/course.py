"""A course of therapy cycles: cumulative absorbed dose and BED per region against organ limits,
and the activity of the remaining cycles (decision support only).

Input: one ``regions.json`` per cycle (written by ``rptdose run``), format ``rptdose-regions``
version 1::

    {"format": "rptdose-regions", "format_version": 1, "nuclide": "Lu-177",
     "administered_activity_mbq": float, "administration_time": ISO-8601, "method": str,
     "study_file": str,
     "regions": [{"name", "kind": "kidney"|"marrow"|"tumour"|"organ", "mean_dose_gy",
                  "mean_dose_rel_uncertainty", "d2_gy", "d50_gy", "d98_gy", "max_gy", "volume_ml",
                  "mass_g", "mean_tia_bq_s", "t_eff_h": float|null, "tia_model": str}]}

Keys may be added; an optional ``t_uptake_h`` per region selects a bi-exponential dose rate.

Per region and cycle (``rptdose.analysis.radiobiology``): BED = D (1 + G D / (alpha/beta)) with
the G factor of a mono-exponential dose rate of effective half-life ``t_eff_h`` (the dose rate
follows the region's activity: self-irradiation dominates for Lu-177). Over well-separated
cycles (the previous cycle's dose delivered and its sublethal damage repaired) doses and BEDs
add. Uncertainties: the per-cycle statistical ``mean_dose_rel_uncertainty`` (independent between
cycles) propagated in quadrature (and, where the input has ``mean_dose_rel_uncertainty_with_tia``,
the same with the TIA fit uncertainty, for the absorbed dose), to the BED through dBED/dD = 1 + 2 G D / (alpha/beta); the
uncertainty of ``t_eff_h`` and of the radiobiological parameters is not in the inputs and is not
included (the plan's sensitivity table shows the effect of the kinetics).

Planning: with the kinetics of one cycle (dose per MBq ``d`` and ``t_eff``; the last cycle by
default) each of the ``N`` remaining cycles of activity ``A`` adds ``D = d A`` and
``BED = d A + G (d A)^2 / (alpha/beta)``; the largest ``A`` that keeps a limit ``L`` solves::

    N G d^2 / (alpha/beta) A^2 + N d A - (L - delivered) = 0
    A = 2 (L - delivered) / (N d + sqrt((N d)^2 + 4 N G d^2 (L - delivered) / (alpha/beta)))

(the root written without cancellation); an absorbed-dose limit gives ``A = (L - delivered)/(N d)``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from rptdose.analysis import radiobiology as rb
from rptdose.errors import InputError

REGIONS_FORMAT = "rptdose-regions"
REGIONS_FORMAT_VERSION = 1
REGIONS_FILE = "regions.json"
REGION_KINDS = ("kidney", "marrow", "tumour", "organ")
LIMITS_FORMAT = "rptdose-limits"
LIMITS_FORMAT_VERSION = 1
DEFAULT_LIMITS = Path(__file__).resolve().parent.parent / "data" / "organ_limits.toml"
LIMIT_QUANTITIES = ("absorbed", "bed")
#: cycles closer than this many effective half-lives (or repair half-times) are flagged: BED additivity
#: assumes the previous cycle's dose is delivered and its sublethal damage repaired
SEPARATION_HALF_LIVES = 10.0
#: kinetics scale factors of the plan's sensitivity table
SENSITIVITY_FACTORS = (0.8, 1.2)

DECISION_SUPPORT = ("DECISION SUPPORT ONLY: these activities follow from a model (linear-quadratic BED, "
                    "the kinetics of one measured cycle assumed for the remaining ones, literature limits and "
                    "tissue parameters). They are not a prescription; the treating physician and medical "
                    "physicist decide the activity.")


# --------------------------------------------------------------------------------------------
# reading regions.json
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RegionDose:
    """One region of one cycle (units: Gy, ml, g, Bq*s, h)."""

    name: str
    kind: str
    mean_dose_gy: float
    rel_uncertainty: float           # NaN: not given
    rel_uncertainty_with_tia: float  # statistical and TIA fit (optional key); NaN: not given
    d2_gy: float | None
    d50_gy: float | None
    d98_gy: float | None
    max_gy: float | None
    volume_ml: float
    mass_g: float
    mean_tia_bq_s: float
    t_eff_h: float | None
    t_uptake_h: float | None
    tia_model: str


@dataclass
class Cycle:
    """The regions.json of one cycle."""

    path: Path
    sha256: str
    nuclide: str
    activity_mbq: float
    time: datetime
    method: str
    study_file: str
    regions: dict[str, RegionDose]
    label: str = ""                  # the cycle's name in tables and plots (its folder name)


def _regions_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / REGIONS_FILE
    if not p.is_file():
        raise InputError(f"cycle '{path}' (no {REGIONS_FILE} there): expected the output folder of "
                         f"`rptdose run` or its {REGIONS_FILE}")
    return p


def _num(entry: dict, key: str, where: str, *, nullable: bool = False, positive: bool = False) -> float | None:
    if key not in entry:
        raise InputError(f"{where}: key '{key}' (missing): expected a number")
    v = entry[key]
    if nullable and (v is None or (isinstance(v, float) and math.isnan(v))):  # null, or NaN from json.dumps
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise InputError(f"{where}: key '{key}' ({v!r}): expected a finite number{' or null' if nullable else ''}")
    v = float(v)
    if v < 0 or (positive and v == 0):
        raise InputError(f"{where}: key '{key}' ({v!r}): expected a {'positive' if positive else 'non-negative'} number")
    return v


def _optional(entry: dict, key: str, where: str) -> float:
    """An optional non-negative number; NaN when absent or null."""
    if key not in entry:
        return float("nan")
    v = _num(entry, key, where, nullable=True)
    return float("nan") if v is None else v


def _str(entry: dict, key: str, where: str) -> str:
    v = entry.get(key)
    if not isinstance(v, str):
        raise InputError(f"{where}: key '{key}' ({v!r}): expected a string")
    return v


def read_regions(path: str | os.PathLike) -> Cycle:
    """Read and validate the ``regions.json`` of one cycle (a folder or the file itself)."""
    p = _regions_path(path)
    try:
        with open(p, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise InputError(f"{p} (not valid JSON: {exc}): expected a {REGIONS_FORMAT} file") from exc
    if not isinstance(data, dict):
        raise InputError(f"{p} (a JSON {type(data).__name__}): expected an object with format \"{REGIONS_FORMAT}\"")
    rb.check_format(data, p, REGIONS_FORMAT, REGIONS_FORMAT_VERSION)
    where = str(p)
    nuclide = _str(data, "nuclide", where)
    activity = _num(data, "administered_activity_mbq", where, positive=True)
    time_text = _str(data, "administration_time", where)
    try:
        when = datetime.fromisoformat(time_text)
    except ValueError:
        raise InputError(f"{where}: key 'administration_time' ({time_text!r}): expected an ISO-8601 date and time "
                         "such as 2026-03-02T09:00:00") from None
    raw = data.get("regions")
    if not isinstance(raw, list) or not raw:
        raise InputError(f"{where}: key 'regions' ({type(raw).__name__ if raw is not None else 'missing'}): "
                         "expected a non-empty list of region objects")
    regions: dict[str, RegionDose] = {}
    for i, entry in enumerate(raw):
        rw = f"{where}: regions[{i}]"
        if not isinstance(entry, dict):
            raise InputError(f"{rw} ({entry!r}): expected an object")
        name = _str(entry, "name", rw)
        rw = f"{where}: region '{name}'"
        if name in regions:
            raise InputError(f"{rw} (appears twice): expected unique region names")
        kind = _str(entry, "kind", rw)
        if kind not in REGION_KINDS:
            raise InputError(f"{rw}: key 'kind' ({kind!r}): expected one of {', '.join(REGION_KINDS)}")
        rel = _num(entry, "mean_dose_rel_uncertainty", rw, nullable=True)
        t_eff = _num(entry, "t_eff_h", rw, nullable=True, positive=True)
        t_up = _num(entry, "t_uptake_h", rw, nullable=True) if "t_uptake_h" in entry else None
        regions[name] = RegionDose(
            name=name, kind=kind,
            mean_dose_gy=_num(entry, "mean_dose_gy", rw),
            rel_uncertainty=float("nan") if rel is None else rel,
            rel_uncertainty_with_tia=_optional(entry, "mean_dose_rel_uncertainty_with_tia", rw),
            d2_gy=_num(entry, "d2_gy", rw, nullable=True), d50_gy=_num(entry, "d50_gy", rw, nullable=True),
            d98_gy=_num(entry, "d98_gy", rw, nullable=True), max_gy=_num(entry, "max_gy", rw, nullable=True),
            volume_ml=_num(entry, "volume_ml", rw), mass_g=_num(entry, "mass_g", rw),
            mean_tia_bq_s=_num(entry, "mean_tia_bq_s", rw),
            t_eff_h=t_eff, t_uptake_h=t_up, tia_model=_str(entry, "tia_model", rw))
    return Cycle(path=p, sha256=rb.file_sha256(p), nuclide=nuclide, activity_mbq=activity, time=when,
                 method=_str(data, "method", where), study_file=_str(data, "study_file", where), regions=regions,
                 label=p.parent.name or str(p.parent))


def load_cycles(paths: list[str | os.PathLike]) -> list[Cycle]:
    """Read the cycles in the given order and check them: same nuclide, administration times
    strictly increasing, same kind for a region name in every cycle."""
    if not paths:
        raise InputError("cycles (none given): expected one or more cycle folders")
    cycles = [read_regions(p) for p in paths]
    labels = [c.label for c in cycles]
    if len(set(labels)) < len(labels):  # e.g. a/out and b/out: number them
        for i, c in enumerate(cycles, start=1):
            c.label = f"{i}:{c.label}"
    first = cycles[0]
    for c in cycles[1:]:
        if c.nuclide != first.nuclide:
            raise InputError(f"{c.path}: key 'nuclide' ({c.nuclide!r}, but {first.path} has {first.nuclide!r}): "
                             "expected the same nuclide in every cycle")
    for a, b in zip(cycles, cycles[1:]):
        if (a.time.tzinfo is None) != (b.time.tzinfo is None):
            raise InputError(f"{b.path}: key 'administration_time' ({b.time.isoformat()} vs {a.time.isoformat()} in "
                             f"{a.path}): expected all times with a UTC offset or all without")
        if b.time <= a.time:
            raise InputError(f"cycles out of order ({b.path} administered {b.time.isoformat()}, not after "
                             f"{a.path} at {a.time.isoformat()}): expected the cycles in the order they were given")
    kinds: dict[str, tuple[str, Path]] = {}
    for c in cycles:
        for r in c.regions.values():
            if r.name in kinds and kinds[r.name][0] != r.kind:
                raise InputError(f"{c.path}: region '{r.name}' kind '{r.kind}' ('{kinds[r.name][0]}' in "
                                 f"{kinds[r.name][1]}): expected the same kind in every cycle")
            kinds.setdefault(r.name, (r.kind, c.path))
    return cycles


# --------------------------------------------------------------------------------------------
# limits
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limit:
    tissue: str
    quantity: str          # "absorbed" | "bed"
    value_gy: float
    source: str

    @property
    def label(self) -> str:
        return f"{self.tissue} {'BED' if self.quantity == 'bed' else 'absorbed dose'} {self.value_gy:g} Gy"


@dataclass
class LimitTable:
    limits: list[Limit]
    path: str
    sha256: str
    title: str = ""

    def provenance(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "title": self.title,
                "limits": [vars(x) for x in self.limits]}


def load_limits(path: str | os.PathLike | None, tissues: rb.TissueTable) -> LimitTable:
    """Read an organ-limit table (TOML, ``format = "rptdose-limits"``, version 1; None: the shipped
    one). Every limit names a tissue of ``tissues``: an unknown one is an error."""
    p = Path(path) if path is not None else DEFAULT_LIMITS
    data = rb.read_toml(p, "limits file")
    rb.check_format(data, p, LIMITS_FORMAT, LIMITS_FORMAT_VERSION)
    raw = data.get("limit", [])
    if not isinstance(raw, list):
        raise InputError(f"{p}: key 'limit' (not an array of tables): expected [[limit]] entries")
    limits = []
    for i, entry in enumerate(raw):
        where = f"{p}: limit[{i}]"
        if not isinstance(entry, dict):
            raise InputError(f"{where} (not a table): expected tissue, quantity, value_gy, source")
        tissue = entry.get("tissue")
        if not isinstance(tissue, str):
            raise InputError(f"{where}: key 'tissue' ({tissue!r}): expected the name of a tissue of {tissues.path}")
        if tissue not in tissues:
            raise InputError(f"{where}: key 'tissue' ('{tissue}' is not in the tissue table {tissues.path}): "
                             f"expected one of {', '.join(sorted(tissues.tissues))}")
        quantity = entry.get("quantity")
        if quantity not in LIMIT_QUANTITIES:
            raise InputError(f"{where}: key 'quantity' ({quantity!r}): expected \"absorbed\" or \"bed\"")
        source = entry.get("source")
        if not isinstance(source, str) or not source.strip():
            raise InputError(f"{where}: key 'source' ({source!r}): expected the reference of the limit")
        value = rb.positive_number(entry.get("value_gy"), f"{where}: key 'value_gy'")
        limits.append(Limit(tissue=tissue, quantity=quantity, value_gy=value, source=" ".join(source.split())))
    return LimitTable(limits=limits, path=str(p), sha256=rb.file_sha256(p), title=str(data.get("title", "")))


# --------------------------------------------------------------------------------------------
# cumulative totals
# --------------------------------------------------------------------------------------------

@dataclass
class RegionCourse:
    """A region over the course: per-cycle values (NaN where the region is absent) and totals."""

    name: str
    kind: str
    tissue: rb.Tissue | None
    dose_gy: list[float]
    dose_sigma_gy: list[float]
    dose_sigma_tia_gy: list[float]           # 1 sigma including the TIA fit, where the input gives it
    g: list[float]
    bed_gy: list[float]
    bed_sigma_gy: list[float]
    present: list[bool]
    limits: list[Limit] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return all(self.present)

    @property
    def total_dose_gy(self) -> float:
        return float(np.nansum(self.dose_gy))

    @property
    def total_dose_sigma_gy(self) -> float:
        return _quadrature(self.dose_sigma_gy, self.present)

    @property
    def total_dose_sigma_tia_gy(self) -> float:
        return _quadrature(self.dose_sigma_tia_gy, self.present)

    @property
    def total_bed_gy(self) -> float:
        vals = [b for b, p in zip(self.bed_gy, self.present) if p]
        return float(sum(vals)) if vals and all(math.isfinite(v) for v in vals) else float("nan")

    @property
    def total_bed_sigma_gy(self) -> float:
        return _quadrature(self.bed_sigma_gy, self.present)

    @property
    def total_eqd2_gy(self) -> float:
        if self.tissue is None:
            return float("nan")
        return float(rb.eqd2(self.total_bed_gy, self.tissue.alpha_beta_gy))

    def total(self, quantity: str) -> float:
        return self.total_bed_gy if quantity == "bed" else self.total_dose_gy


def _quadrature(sigmas: list[float], present: list[bool]) -> float:
    vals = [s for s, p in zip(sigmas, present) if p]
    return float(math.sqrt(sum(s * s for s in vals))) if vals else float("nan")


@dataclass
class LimitCheck:
    region: str
    limit: Limit
    total_gy: float
    sigma_gy: float
    complete: bool

    @property
    def fraction(self) -> float:
        return self.total_gy / self.limit.value_gy

    @property
    def status(self) -> str:
        if not math.isfinite(self.total_gy):
            return "unknown"
        s = "exceeded" if self.total_gy > self.limit.value_gy else "within"
        if s == "within" and self.total_gy + 2.0 * self.sigma_gy > self.limit.value_gy:
            s = "within (the limit is inside 2 sigma)"
        return s if self.complete else f"{s} (incomplete: region missing in a cycle)"


@dataclass
class Course:
    cycles: list[Cycle]
    tissues: rb.TissueTable
    limits: LimitTable
    regions: dict[str, RegionCourse]
    checks: list[LimitCheck]
    warnings: list[str]

    @property
    def nuclide(self) -> str:
        return self.cycles[0].nuclide


def _cycle_bed(r: RegionDose, tissue: rb.Tissue) -> tuple[float, float]:
    """(G, BED) of one region in one cycle; NaN when the kinetics are missing."""
    if r.t_eff_h is None:
        return float("nan"), float("nan")
    g = rb.g_factor(r.t_eff_h, tissue.t_rep_h, r.t_uptake_h)
    return g, rb.bed_from_g(r.mean_dose_gy, g, tissue.alpha_beta_gy)


def build_course(cycles: list[Cycle], tissues: rb.TissueTable, limits: LimitTable) -> Course:
    """Per-region cumulative absorbed dose and BED over ``cycles`` and the limit checks."""
    names = list(dict.fromkeys(n for c in cycles for n in c.regions))
    regions: dict[str, RegionCourse] = {}
    warnings: list[str] = []
    by_tissue: dict[str, list[Limit]] = {}
    for lim in limits.limits:
        by_tissue.setdefault(lim.tissue, []).append(lim)
    for name in names:
        kind = next(c.regions[name].kind for c in cycles if name in c.regions)
        tissue = tissues.for_region(name, kind)
        rc = RegionCourse(name=name, kind=kind, tissue=tissue, dose_gy=[], dose_sigma_gy=[], dose_sigma_tia_gy=[], g=[],
                          bed_gy=[],
                          bed_sigma_gy=[], present=[],
                          limits=list(by_tissue.get(tissue.name, [])) if tissue is not None else [])
        for c in cycles:
            r = c.regions.get(name)
            if r is None:
                for lst in (rc.dose_gy, rc.dose_sigma_gy, rc.dose_sigma_tia_gy, rc.g, rc.bed_gy, rc.bed_sigma_gy):
                    lst.append(float("nan"))
                rc.present.append(False)
                continue
            rc.present.append(True)
            rc.dose_gy.append(r.mean_dose_gy)
            sigma = r.mean_dose_gy * r.rel_uncertainty
            rc.dose_sigma_gy.append(sigma)
            rc.dose_sigma_tia_gy.append(r.mean_dose_gy * r.rel_uncertainty_with_tia)
            if tissue is None:
                rc.g.append(float("nan"))
                rc.bed_gy.append(float("nan"))
                rc.bed_sigma_gy.append(float("nan"))
                continue
            if r.t_eff_h is None and any(lim.quantity == "bed" for lim in rc.limits):
                raise InputError(f"{c.path}: region '{name}' key 't_eff_h' (null): expected the effective half-life "
                                 f"(h), needed for the BED limit of {tissue.name}")
            g, b = _cycle_bed(r, tissue)
            rc.g.append(g)
            rc.bed_gy.append(b)
            rc.bed_sigma_gy.append(abs(rb.bed_derivative(r.mean_dose_gy, g, tissue.alpha_beta_gy)) * sigma)
        if not rc.complete:
            missing = [c.label for c, p in zip(cycles, rc.present) if not p]
            warnings.append(f"region '{name}' is missing in cycle(s) {', '.join(missing)}: its totals cover the other "
                            "cycles only")
        if tissue is not None and any(not math.isfinite(b) for b, p in zip(rc.bed_gy, rc.present) if p):
            warnings.append(f"region '{name}': t_eff_h missing in a cycle: no BED")
        regions[name] = rc
    no_tissue = [rc.name for rc in regions.values() if rc.tissue is None]
    if no_tissue:
        warnings.append(f"regions that map to no tissue of {tissues.path} (absorbed dose only, no BED): "
                        f"{', '.join(no_tissue)}")
    for a, b in zip(cycles, cycles[1:]):
        gap_h = (b.time - a.time).total_seconds() / 3600.0
        longest = max([r.t_eff_h or 0.0 for r in a.regions.values()]
                      + [(regions[n].tissue.t_rep_h if regions[n].tissue else 0.0) for n in a.regions])
        if gap_h < SEPARATION_HALF_LIVES * longest:
            warnings.append(f"cycles {a.label} and {b.label} are {gap_h:.1f} h apart, less than {SEPARATION_HALF_LIVES:g} "
                            f"times the longest effective half-life or repair half-time ({longest:.3g} h): adding "
                            "BEDs assumes well-separated cycles")
    checks = [LimitCheck(region=rc.name, limit=lim, total_gy=rc.total(lim.quantity),
                         sigma_gy=rc.total_bed_sigma_gy if lim.quantity == "bed" else rc.total_dose_sigma_gy,
                         complete=rc.complete)
              for rc in regions.values() for lim in rc.limits]
    mapped = {rc.tissue.name for rc in regions.values() if rc.tissue is not None}
    for lim in limits.limits:
        if lim.tissue not in mapped:
            warnings.append(f"limit '{lim.label}' applies to no region of the course (no region maps to tissue "
                            f"'{lim.tissue}')")
    return Course(cycles=cycles, tissues=tissues, limits=limits, regions=regions, checks=checks, warnings=warnings)


def course_from_paths(paths: list[str | os.PathLike], tissues_path: str | os.PathLike | None = None,
                      limits_path: str | os.PathLike | None = None) -> Course:
    tissues = rb.load_tissues(tissues_path)
    limits = load_limits(limits_path, tissues)
    return build_course(load_cycles(paths), tissues, limits)


# --------------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------------

def activity_for_limit(delivered_gy: float, limit_gy: float, dose_per_mbq: float, cycles_left: int,
                       g: float = 0.0, alpha_beta_gy: float = float("inf"), quantity: str = "bed") -> float:
    """The activity per remaining cycle (MBq) that brings a cumulative absorbed dose or BED from
    ``delivered_gy`` exactly to ``limit_gy``; 0 when the limit is already reached."""
    if cycles_left < 1:
        raise InputError(f"cycles_left ({cycles_left}): expected 1 or more")
    if not (dose_per_mbq >= 0):
        raise InputError(f"dose per MBq ({dose_per_mbq!r} Gy/MBq): expected >= 0 to plan with it")
    room = limit_gy - delivered_gy
    if room <= 0:
        return 0.0
    if dose_per_mbq == 0:
        return math.inf             # the organ receives no dose: no constraint
    n, d = float(cycles_left), float(dose_per_mbq)
    if quantity == "absorbed":
        return room / (n * d)
    a = n * g * d * d / alpha_beta_gy       # quadratic coefficient
    b = n * d
    return 2.0 * room / (b + math.sqrt(b * b + 4.0 * a * room))


def per_cycle_bed(dose_gy: float, g: float, alpha_beta_gy: float) -> float:
    return dose_gy + g * dose_gy * dose_gy / alpha_beta_gy


@dataclass
class Kinetics:
    """Dose per MBq and G of one region, from the kinetics cycle."""

    region: str
    dose_per_mbq: float
    t_eff_h: float | None
    t_uptake_h: float | None
    g: float
    rel_uncertainty: float


@dataclass
class PlanRow:
    region: str
    limit: Limit
    delivered_gy: float
    activity_mbq: float


@dataclass
class Projection:
    region: str
    quantity: str
    delivered_gy: float
    projected_gy: float
    limit_gy: float | None

    @property
    def margin_gy(self) -> float | None:
        return None if self.limit_gy is None else self.limit_gy - self.projected_gy


@dataclass
class Plan:
    course: Course
    cycles_left: int
    kinetics_cycle: int                      # 0-based index into course.cycles
    kinetics: dict[str, Kinetics]
    rows: list[PlanRow]                      # one per (organ at risk, limit)
    safe_activity_mbq: float
    limiting: PlanRow | None
    target_gy: float | None
    target_quantity: str
    target_rows: list[tuple[str, float, float]]   # (tumour, delivered, activity for target)
    target_activity_mbq: float | None
    proposed_activity_mbq: float
    projections: list[Projection]
    sensitivity: list[dict[str, Any]]
    warnings: list[str]


def _kinetics(course: Course, index: int, name: str, t_eff_scale: float = 1.0, dose_scale: float = 1.0) -> Kinetics:
    c = course.cycles[index]
    r = c.regions.get(name)
    if r is None:
        raise InputError(f"{c.path}: region '{name}' (missing): expected it in the kinetics cycle {c.label}, "
                         "which gives the dose per MBq of the remaining cycles")
    rc = course.regions[name]
    t_eff = None if r.t_eff_h is None else r.t_eff_h * t_eff_scale
    t_up = None if r.t_uptake_h is None else r.t_uptake_h * t_eff_scale
    g = float("nan")
    if rc.tissue is not None and t_eff is not None:
        g = rb.g_factor(t_eff, rc.tissue.t_rep_h, t_up)
    return Kinetics(region=name, dose_per_mbq=dose_scale * r.mean_dose_gy / c.activity_mbq, t_eff_h=t_eff,
                    t_uptake_h=t_up, g=g, rel_uncertainty=r.rel_uncertainty)


def _safe_activity(course: Course, kin: dict[str, Kinetics], cycles_left: int) -> tuple[list[PlanRow], PlanRow | None]:
    rows = []
    for rc in course.regions.values():
        for lim in rc.limits:
            k = kin[rc.name]
            delivered = rc.total(lim.quantity)
            if lim.quantity == "bed":
                act = activity_for_limit(delivered, lim.value_gy, k.dose_per_mbq, cycles_left, k.g,
                                         rc.tissue.alpha_beta_gy, "bed")
            else:
                act = activity_for_limit(delivered, lim.value_gy, k.dose_per_mbq, cycles_left, quantity="absorbed")
            rows.append(PlanRow(region=rc.name, limit=lim, delivered_gy=delivered, activity_mbq=act))
    limiting = min(rows, key=lambda r: r.activity_mbq) if rows else None
    return rows, limiting


def _project(rc: RegionCourse, k: Kinetics, activity: float, cycles_left: int, quantity: str) -> float:
    d = k.dose_per_mbq * activity
    if quantity == "absorbed":
        return rc.total_dose_gy + cycles_left * d
    return rc.total_bed_gy + cycles_left * per_cycle_bed(d, k.g, rc.tissue.alpha_beta_gy)


def plan_course(course: Course, cycles_left: int, kinetics_from: int | None = None, target_gy: float | None = None,
                target_quantity: str = "absorbed") -> Plan:
    """The activity per remaining cycle that keeps every organ at risk within its limits, with the
    kinetics of cycle ``kinetics_from`` (1-based; default the last); with ``target_gy`` also the
    activity that brings every tumour to that cumulative absorbed dose (or BED)."""
    if isinstance(cycles_left, bool) or not isinstance(cycles_left, int) or cycles_left < 1:
        raise InputError(f"--cycles-left ({cycles_left!r}): expected a whole number >= 1")
    n = len(course.cycles)
    k_index = n - 1 if kinetics_from is None else kinetics_from - 1
    if not 0 <= k_index < n:
        raise InputError(f"--kinetics-from ({kinetics_from}): expected a cycle number from 1 to {n}")
    if target_quantity not in LIMIT_QUANTITIES:
        raise InputError(f"--target-quantity ({target_quantity!r}): expected absorbed or bed")
    if target_gy is not None and not (math.isfinite(target_gy) and target_gy > 0):
        raise InputError(f"--target-tumour-gy ({target_gy!r}): expected a positive number of Gy")
    oars = [rc for rc in course.regions.values() if rc.limits]
    if not oars:
        raise InputError(f"organs at risk (no region of the course has a limit in {course.limits.path}): expected "
                         "regions that map to the tissues of the limits table")
    for rc in oars:
        if not rc.complete:
            missing = [c.label for c, p in zip(course.cycles, rc.present) if not p]
            raise InputError(f"region '{rc.name}' (has a limit but is missing in cycle(s) {', '.join(missing)}): "
                             "expected every organ with a limit in every cycle, so that its cumulative dose is known")
        for lim in rc.limits:
            if lim.quantity == "bed" and _kinetics(course, k_index, rc.name).t_eff_h is None:
                raise InputError(f"{course.cycles[k_index].path}: region '{rc.name}' key 't_eff_h' (null): expected "
                                 f"the effective half-life (h) to plan with the BED limit of {lim.tissue}")
    tumours = [rc for rc in course.regions.values() if rc.kind == "tumour"]
    kin = {rc.name: _kinetics(course, k_index, rc.name) for rc in course.regions.values()
           if rc.name in course.cycles[k_index].regions}
    rows, limiting = _safe_activity(course, kin, cycles_left)
    safe = limiting.activity_mbq
    if math.isinf(safe):
        raise InputError(f"organs at risk (none receives a dose in cycle {course.cycles[k_index].label}): expected a "
                         "dose per MBq > 0 in at least one organ with a limit")
    warnings = list(course.warnings)
    target_rows: list[tuple[str, float, float]] = []
    target_activity = None
    if target_gy is not None:
        if not tumours:
            raise InputError("--target-tumour-gy (the course has no region of kind 'tumour'): expected a tumour region")
        for rc in tumours:
            if rc.name not in kin:
                warnings.append(f"tumour '{rc.name}' is not in the kinetics cycle: no target activity for it")
                continue
            k = kin[rc.name]
            if target_quantity == "bed":
                if rc.tissue is None or k.t_eff_h is None:
                    raise InputError(f"tumour '{rc.name}' (no tissue parameters or no t_eff_h): expected both for a "
                                     "BED target")
                act = activity_for_limit(rc.total_bed_gy, target_gy, k.dose_per_mbq, cycles_left, k.g,
                                         rc.tissue.alpha_beta_gy, "bed")
            else:
                act = activity_for_limit(rc.total_dose_gy, target_gy, k.dose_per_mbq, cycles_left, quantity="absorbed")
            target_rows.append((rc.name, rc.total(target_quantity), act))
        if target_rows:
            target_activity = max(a for _, _, a in target_rows)
    proposed = safe if target_activity is None else min(safe, target_activity)
    if target_activity is not None and target_activity > safe:
        warnings.append(f"the tumour target needs {target_activity:.6g} MBq per cycle, more than the organ limits allow "
                        f"({safe:.6g} MBq, limited by {limiting.region}: {limiting.limit.label})")
    if safe == 0.0:
        warnings.append(f"{limiting.region} has reached its limit ({limiting.limit.label}): no further activity "
                        "within the limits")
    projections = []
    for rc in course.regions.values():
        if rc.name not in kin:
            continue
        k = kin[rc.name]
        for q in LIMIT_QUANTITIES:
            if q == "bed" and (rc.tissue is None or k.t_eff_h is None or not math.isfinite(rc.total_bed_gy)):
                continue
            lims = [lim.value_gy for lim in rc.limits if lim.quantity == q]
            projections.append(Projection(region=rc.name, quantity=q, delivered_gy=rc.total(q),
                                          projected_gy=_project(rc, k, proposed, cycles_left, q),
                                          limit_gy=min(lims) if lims else None))
    sensitivity = []
    scenarios = [("measured kinetics", 1.0, 1.0)]
    for f in SENSITIVITY_FACTORS:
        scenarios.append((f"dose per MBq x{f:g}", f, 1.0))
    for f in SENSITIVITY_FACTORS:
        scenarios.append((f"t_eff x{f:g} (dose per MBq fixed)", 1.0, f))
    for f in SENSITIVITY_FACTORS:
        scenarios.append((f"t_eff and dose per MBq x{f:g}", f, f))
    for label, fd, ft in scenarios:
        kin_s = {name: _kinetics(course, k_index, name, t_eff_scale=ft, dose_scale=fd) for name in kin}
        rows_s, lim_s = _safe_activity(course, kin_s, cycles_left)
        worst = max(((_project(course.regions[r.region], kin_s[r.region], proposed, cycles_left, r.limit.quantity)
                      / r.limit.value_gy, r) for r in rows_s), key=lambda t: t[0])
        sensitivity.append({"scenario": label, "dose_per_mbq_factor": fd, "t_eff_factor": ft,
                            "safe_activity_mbq": lim_s.activity_mbq, "limited_by": f"{lim_s.region}: {lim_s.limit.label}",
                            "proposed_fraction_of_limit": worst[0],
                            "proposed_worst": f"{worst[1].region}: {worst[1].limit.label}"})
    return Plan(course=course, cycles_left=cycles_left, kinetics_cycle=k_index, kinetics=kin, rows=rows,
                safe_activity_mbq=safe, limiting=limiting, target_gy=target_gy, target_quantity=target_quantity,
                target_rows=target_rows, target_activity_mbq=target_activity, proposed_activity_mbq=proposed,
                projections=projections, sensitivity=sensitivity, warnings=warnings)
