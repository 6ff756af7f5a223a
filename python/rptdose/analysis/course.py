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

Keys may be added; an optional ``t_uptake_h`` per region selects a bi-exponential dose rate, an
optional ``u_total`` (relative standard uncertainty of the mean dose, all components) is preferred
to ``mean_dose_rel_uncertainty_with_tia`` (statistical and TIA fit, as ``rptdose run`` writes it),
itself preferred to ``mean_dose_rel_uncertainty`` (statistical only) as the uncertainty that the
limit checks and the plan use (:func:`planning_uncertainty`).

Per region and cycle (``rptdose.analysis.radiobiology``): BED = D (1 + G D / (alpha/beta)) with
the G factor of a mono-exponential dose rate of effective half-life ``t_eff_h`` (the dose rate
follows the region's activity: self-irradiation dominates for Lu-177). Over well-separated
cycles (the previous cycle's dose delivered and its sublethal damage repaired) doses and BEDs
add. Uncertainties (1 sigma, independent between cycles, in quadrature, to the BED through
dBED/dD = 1 + 2 G D / (alpha/beta)): the statistical ``mean_dose_rel_uncertainty``; the same with
the TIA fit (``mean_dose_rel_uncertainty_with_tia``) where the input gives it; and ``u``, the most
complete one a cycle gives (``u_total``, else with the TIA fit, else statistical), which the limit
checks and the plan use. The uncertainty of ``t_eff_h`` and of the radiobiological parameters is
not in the inputs and is not included (the plan's sensitivity table shows the effect of the
kinetics).

Planning: with the kinetics of one cycle (dose per MBq ``d`` and ``t_eff``; the last cycle by
default) each of the ``N`` remaining cycles of activity ``A`` adds ``D = d A`` and
``BED = d A + G (d A)^2 / (alpha/beta)``; the largest ``A`` that keeps a limit ``L`` solves::

    N G d^2 / (alpha/beta) A^2 + N d A - (L - delivered) = 0
    A = 2 (L - delivered) / (N d + sqrt((N d)^2 + 4 N G d^2 (L - delivered) / (alpha/beta)))

(the root written without cancellation); an absorbed-dose limit gives ``A = (L - delivered)/(N d)``.
That activity reaches the limit itself. The plan keeps a margin of ``k`` standard uncertainties
(``k`` = :data:`DEFAULT_K` = 1.645, one-sided 95 % for a normal distribution; ``--k``): the activity
of a limit is the largest ``A`` with::

    T(A) + k u(A) <= L,    T(A) = delivered + N x (dose or BED of one cycle of activity A)
    u(A)^2 = sum over cycles i != K of s_i^2 + (s_K + N x dT_1/dd x d u_K)^2

where ``s_i`` is the standard uncertainty of cycle ``i``'s dose (or BED), ``K`` the kinetics cycle
and ``u_K`` its relative uncertainty: the dose per MBq of the remaining cycles is that cycle's
measurement, so its error moves the kinetics cycle's dose and every planned cycle together
(added linearly), while the other measured cycles are independent (in quadrature).
``T + k u`` grows with ``A``: the activity is found by bisection (the closed form above when
``k u`` = 0). Every activity the plan reports (per limit, the proposal, the tumour target, the
sensitivity scenarios) is labelled by one check, :func:`check_activity`: ``within`` when
``T + k u <= L`` for every limit (to :data:`CHECK_RTOL` relative), ``within the limit, not the
margin`` when ``T <= L < T + k u``, ``exceeds the limit`` when ``T > L``.
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

from rptdose._data import data_dir, data_path
from rptdose.analysis import radiobiology as rb
from rptdose.errors import InputError

REGIONS_FORMAT = "rptdose-regions"
REGIONS_FORMAT_VERSION = 1
REGIONS_FILE = "regions.json"
REGION_KINDS = ("kidney", "marrow", "tumour", "organ")
LIMITS_FORMAT = "rptdose-limits"
LIMITS_FORMAT_VERSION = 1
DEFAULT_LIMITS = data_dir() / "organ_limits.toml"  # data/organ_limits.toml, installed as rptdose/data
LIMIT_QUANTITIES = ("absorbed", "bed")
#: cycles closer than this many effective half-lives (or repair half-times) are flagged: BED additivity
#: assumes the previous cycle's dose is delivered and its sublethal damage repaired
SEPARATION_HALF_LIVES = 10.0
#: kinetics scale factors of the plan's sensitivity table
SENSITIVITY_FACTORS = (0.8, 1.2)
#: default coverage factor of the planning margin: k standard uncertainties below each limit
#: (1.645: one-sided 95 % for a normally distributed dose estimate)
DEFAULT_K = 1.645
#: relative tolerance of the limit check (rounding of the activity that reaches a limit)
CHECK_RTOL = 1e-9
#: the statuses of :class:`LimitStatus`, best first
WITHIN, NO_MARGIN, EXCEEDS = "within", "within the limit, not the margin", "exceeds the limit"

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
    u_total: float                   # all components (optional key ``u_total``); NaN: not given
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
            u_total=_optional(entry, "u_total", rw),
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
    p = Path(path) if path is not None else data_path("organ_limits.toml")
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

#: what the uncertainty ``u`` of a cycle's region dose is made of (:func:`planning_uncertainty`)
U_BASES = ("u_total", "statistical + TIA fit", "statistical only", "not given")


def planning_uncertainty(r: RegionDose) -> tuple[float, str]:
    """(relative standard uncertainty, basis) of a region's mean dose in one cycle for the limit
    checks and the plan: the most complete one the input gives (``u_total``, else statistical and
    TIA fit, else statistical); (NaN, "not given") when it has none."""
    for value, basis in zip((r.u_total, r.rel_uncertainty_with_tia, r.rel_uncertainty), U_BASES):
        if math.isfinite(value):
            return value, basis
    return float("nan"), U_BASES[-1]


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
    dose_u_gy: list[float] = field(default_factory=list)   # u of the dose (planning_uncertainty)
    bed_u_gy: list[float] = field(default_factory=list)    # the same through dBED/dD
    u_basis: list[str] = field(default_factory=list)       # per cycle, one of U_BASES ("" where absent)

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
    def total_dose_u_gy(self) -> float:
        return _quadrature(self.dose_u_gy, self.present)

    @property
    def total_bed_u_gy(self) -> float:
        return _quadrature(self.bed_u_gy, self.present)

    @property
    def total_eqd2_gy(self) -> float:
        if self.tissue is None:
            return float("nan")
        return float(rb.eqd2(self.total_bed_gy, self.tissue.alpha_beta_gy))

    @property
    def basis(self) -> str:
        """The uncertainty basis over the cycles: one of U_BASES, or "mixed: ..." when they differ."""
        bases = list(dict.fromkeys(b for b, p in zip(self.u_basis, self.present) if p))
        return bases[0] if len(bases) == 1 else "mixed: " + " / ".join(bases)

    def total(self, quantity: str) -> float:
        return self.total_bed_gy if quantity == "bed" else self.total_dose_gy

    def total_u(self, quantity: str) -> float:
        return self.total_bed_u_gy if quantity == "bed" else self.total_dose_u_gy

    def cycle_u(self, quantity: str) -> list[float]:
        return self.bed_u_gy if quantity == "bed" else self.dose_u_gy


def _quadrature(sigmas: list[float], present: list[bool]) -> float:
    vals = [s for s, p in zip(sigmas, present) if p]
    return float(math.sqrt(sum(s * s for s in vals))) if vals else float("nan")


@dataclass
class LimitCheck:
    """A cumulative total so far against a limit; ``sigma_gy`` is the standard uncertainty ``u``
    (:func:`planning_uncertainty`), ``k`` the coverage factor of the margin."""

    region: str
    limit: Limit
    total_gy: float
    sigma_gy: float
    complete: bool
    k: float = DEFAULT_K

    @property
    def fraction(self) -> float:
        return self.total_gy / self.limit.value_gy

    @property
    def status(self) -> str:
        if not math.isfinite(self.total_gy):
            return "unknown"
        s = "exceeded" if self.total_gy > self.limit.value_gy else "within"
        if s == "within" and self.total_gy + self.k * _zero_if_nan(self.sigma_gy) > self.limit.value_gy:
            s = f"within (the limit is inside k u, k = {self.k:g})"
        return s if self.complete else f"{s} (incomplete: region missing in a cycle)"


def _zero_if_nan(v: float) -> float:
    return v if math.isfinite(v) else 0.0


@dataclass
class Course:
    cycles: list[Cycle]
    tissues: rb.TissueTable
    limits: LimitTable
    regions: dict[str, RegionCourse]
    checks: list[LimitCheck]
    warnings: list[str]
    k: float = DEFAULT_K
    no_tissue: list[str] = field(default_factory=list)    # regions without tissue parameters (no BED)

    @property
    def nuclide(self) -> str:
        return self.cycles[0].nuclide

    @property
    def no_tissue_line(self) -> str:
        """One line naming every region without tissue parameters ("" when there is none)."""
        if not self.no_tissue:
            return ""
        return (f"no tissue parameters (absorbed dose only, no BED or EQD2) for {len(self.no_tissue)} region(s): "
                f"{', '.join(self.no_tissue)} (tissue table {Path(self.tissues.path).name}; map them with "
                "--tissues)")


def _cycle_bed(r: RegionDose, tissue: rb.Tissue) -> tuple[float, float]:
    """(G, BED) of one region in one cycle; NaN when the kinetics are missing."""
    if r.t_eff_h is None:
        return float("nan"), float("nan")
    g = rb.g_factor(r.t_eff_h, tissue.t_rep_h, r.t_uptake_h)
    return g, rb.bed_from_g(r.mean_dose_gy, g, tissue.alpha_beta_gy)


def check_k(k: Any) -> float:
    """The coverage factor of the planning margin: a finite number >= 0."""
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or k < 0:
        raise InputError(f"--k ({k!r}): expected a finite number >= 0 of standard uncertainties (default "
                         f"{DEFAULT_K:g}: one-sided 95 %)")
    return float(k)


def build_course(cycles: list[Cycle], tissues: rb.TissueTable, limits: LimitTable, k: float = DEFAULT_K) -> Course:
    """Per-region cumulative absorbed dose and BED over ``cycles`` and the limit checks (margin:
    ``k`` standard uncertainties)."""
    k = check_k(k)
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
                for lst in (rc.dose_gy, rc.dose_sigma_gy, rc.dose_sigma_tia_gy, rc.g, rc.bed_gy, rc.bed_sigma_gy,
                            rc.dose_u_gy, rc.bed_u_gy):
                    lst.append(float("nan"))
                rc.u_basis.append("")
                rc.present.append(False)
                continue
            rc.present.append(True)
            rc.dose_gy.append(r.mean_dose_gy)
            sigma = r.mean_dose_gy * r.rel_uncertainty
            rc.dose_sigma_gy.append(sigma)
            rc.dose_sigma_tia_gy.append(r.mean_dose_gy * r.rel_uncertainty_with_tia)
            u_rel, basis = planning_uncertainty(r)
            rc.dose_u_gy.append(r.mean_dose_gy * u_rel)
            rc.u_basis.append(basis)
            if tissue is None:
                rc.g.append(float("nan"))
                rc.bed_gy.append(float("nan"))
                rc.bed_sigma_gy.append(float("nan"))
                rc.bed_u_gy.append(float("nan"))
                continue
            if r.t_eff_h is None and any(lim.quantity == "bed" for lim in rc.limits):
                raise InputError(f"{c.path}: region '{name}' key 't_eff_h' (null): expected the effective half-life "
                                 f"(h), needed for the BED limit of {tissue.name}")
            g, b = _cycle_bed(r, tissue)
            rc.g.append(g)
            rc.bed_gy.append(b)
            slope = abs(rb.bed_derivative(r.mean_dose_gy, g, tissue.alpha_beta_gy))
            rc.bed_sigma_gy.append(slope * sigma)
            rc.bed_u_gy.append(slope * r.mean_dose_gy * u_rel)
        if not rc.complete:
            missing = [c.label for c, p in zip(cycles, rc.present) if not p]
            warnings.append(f"region '{name}' is missing in cycle(s) {', '.join(missing)}: its totals cover the other "
                            "cycles only")
        if tissue is not None and any(not math.isfinite(b) for b, p in zip(rc.bed_gy, rc.present) if p):
            warnings.append(f"region '{name}': t_eff_h missing in a cycle: no BED")
        if rc.limits:
            unknown = [c.label for c, b in zip(cycles, rc.u_basis) if b == U_BASES[-1]]
            if unknown:
                warnings.append(f"region '{name}' (has a limit): no dose uncertainty in cycle(s) {', '.join(unknown)}: "
                                "counted as 0, so the margin k u below its limit is too small")
        regions[name] = rc
    no_tissue = [rc.name for rc in regions.values() if rc.tissue is None]
    for a, b in zip(cycles, cycles[1:]):
        gap_h = (b.time - a.time).total_seconds() / 3600.0
        longest = max([r.t_eff_h or 0.0 for r in a.regions.values()]
                      + [(regions[n].tissue.t_rep_h if regions[n].tissue else 0.0) for n in a.regions])
        if gap_h < SEPARATION_HALF_LIVES * longest:
            warnings.append(f"cycles {a.label} and {b.label} are {gap_h:.1f} h apart, less than {SEPARATION_HALF_LIVES:g} "
                            f"times the longest effective half-life or repair half-time ({longest:.3g} h): adding "
                            "BEDs assumes well-separated cycles")
    checks = [LimitCheck(region=rc.name, limit=lim, total_gy=rc.total(lim.quantity),
                         sigma_gy=rc.total_u(lim.quantity), complete=rc.complete, k=k)
              for rc in regions.values() for lim in rc.limits]
    mapped = {rc.tissue.name for rc in regions.values() if rc.tissue is not None}
    for lim in limits.limits:
        if lim.tissue not in mapped:
            warnings.append(f"limit '{lim.label}' applies to no region of the course (no region maps to tissue "
                            f"'{lim.tissue}')")
    return Course(cycles=cycles, tissues=tissues, limits=limits, regions=regions, checks=checks, warnings=warnings,
                  k=k, no_tissue=no_tissue)


def course_from_paths(paths: list[str | os.PathLike], tissues_path: str | os.PathLike | None = None,
                      limits_path: str | os.PathLike | None = None, k: float = DEFAULT_K) -> Course:
    tissues = rb.load_tissues(tissues_path)
    limits = load_limits(limits_path, tissues)
    return build_course(load_cycles(paths), tissues, limits, k=k)


# --------------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------------

def activity_for_limit(delivered_gy: float, limit_gy: float, dose_per_mbq: float, cycles_left: int,
                       g: float = 0.0, alpha_beta_gy: float = float("inf"), quantity: str = "bed") -> float:
    """The activity per remaining cycle (MBq) that brings a cumulative absorbed dose or BED from
    ``delivered_gy`` exactly to ``limit_gy`` (no margin); 0 when the limit is already reached."""
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
    """Dose per MBq and G of one region, from the kinetics cycle, and the relative uncertainty of
    that dose (``u_rel``, :func:`planning_uncertainty`; ``rel_uncertainty``: statistical only)."""

    region: str
    dose_per_mbq: float
    t_eff_h: float | None
    t_uptake_h: float | None
    g: float
    rel_uncertainty: float
    u_rel: float = float("nan")
    u_basis: str = U_BASES[-1]


@dataclass
class LimitStatus:
    """One limit at one activity per remaining cycle: the projected total ``T``, its standard
    uncertainty ``u`` and the check ``T + k u <= L`` (module docstring)."""

    region: str
    limit: Limit
    activity_mbq: float
    delivered_gy: float
    projected_gy: float
    u_gy: float
    k: float

    @property
    def margin_gy(self) -> float:
        """The margin kept below the limit: k u."""
        return self.k * _zero_if_nan(self.u_gy)

    @property
    def upper_gy(self) -> float:
        return self.projected_gy + self.margin_gy

    @property
    def fraction_of_limit(self) -> float:
        return self.projected_gy / self.limit.value_gy

    @property
    def upper_fraction_of_limit(self) -> float:
        return self.upper_gy / self.limit.value_gy

    @property
    def status(self) -> str:
        lim = self.limit.value_gy * (1.0 + CHECK_RTOL)
        if not self.projected_gy <= lim:
            return EXCEEDS
        if not self.upper_gy <= lim:
            return NO_MARGIN
        return WITHIN

    def describe(self) -> str:
        return (f"{self.region}: {self.limit.label}: projected {self.projected_gy:.3f} Gy "
                f"({100 * self.fraction_of_limit:.1f} % of the limit), + k u = {self.upper_gy:.3f} Gy "
                f"({100 * self.upper_fraction_of_limit:.1f} %)")


_RANK = {WITHIN: 0, NO_MARGIN: 1, EXCEEDS: 2}


@dataclass
class ActivityCheck:
    """Every organ-at-risk limit at one activity per remaining cycle (:func:`check_activity`)."""

    activity_mbq: float
    k: float
    limits: list[LimitStatus]

    @property
    def worst(self) -> LimitStatus:
        """The limit in the worst status, the closest to its limit (projected + k u) among those."""
        return max(self.limits, key=lambda s: (_RANK[s.status], s.upper_fraction_of_limit))

    @property
    def status(self) -> str:
        return self.worst.status

    @property
    def label(self) -> str:
        """The one label of an activity in every output."""
        w = self.worst
        if w.status == WITHIN:
            return f"within every limit with the margin k u (k = {self.k:g}); closest: {w.describe()}"
        if w.status == NO_MARGIN:
            return f"WITHIN THE LIMITS BUT NOT THE MARGIN k u (k = {self.k:g}): {w.describe()}"
        return f"EXCEEDS A LIMIT: {w.describe()}"

    @property
    def short_label(self) -> str:
        """The same verdict in a few words, for tables."""
        w = self.worst
        where = f"{w.region} {w.limit.label}"
        if w.status == WITHIN:
            return f"within, margin kept (closest: {where}, + k u = {100 * w.upper_fraction_of_limit:.1f} % of it)"
        if w.status == NO_MARGIN:
            return (f"within the limits, NOT the margin: {where} at {100 * w.fraction_of_limit:.1f} %, "
                    f"+ k u = {100 * w.upper_fraction_of_limit:.1f} %")
        return f"EXCEEDS {where}: {100 * w.fraction_of_limit:.1f} % of the limit"


@dataclass
class PlanRow:
    """One organ-at-risk limit: the largest activity per remaining cycle that keeps it with the
    margin (``activity_mbq``), the one that reaches the limit itself (``activity_no_margin_mbq``),
    that limit at ``activity_mbq`` (``at``) and every limit at it (``check``)."""

    region: str
    limit: Limit
    delivered_gy: float
    delivered_u_gy: float
    u_basis: str
    activity_mbq: float
    activity_no_margin_mbq: float
    at: LimitStatus
    check: ActivityCheck


@dataclass
class Projection:
    region: str
    quantity: str
    delivered_gy: float
    projected_gy: float
    limit_gy: float | None
    u_gy: float = float("nan")
    k: float = DEFAULT_K

    @property
    def margin_gy(self) -> float:
        """The margin k u of the projected total."""
        return self.k * _zero_if_nan(self.u_gy)

    @property
    def room_gy(self) -> float | None:
        """limit - projected - k u (None without a limit): >= 0 when the limit is kept with the margin."""
        return None if self.limit_gy is None else self.limit_gy - self.projected_gy - self.margin_gy


@dataclass
class Plan:
    course: Course
    cycles_left: int
    kinetics_cycle: int                      # 0-based index into course.cycles
    kinetics: dict[str, Kinetics]
    k: float                                 # coverage factor of the margin k u
    rows: list[PlanRow]                      # one per (organ at risk, limit)
    max_activity_mbq: float                  # largest activity per cycle within every limit with the margin
    limiting: PlanRow | None
    target_gy: float | None
    target_quantity: str
    target_rows: list[tuple[str, float, float]]   # (tumour, delivered, activity for target)
    target_activity_mbq: float | None
    target_check: ActivityCheck | None
    proposed_activity_mbq: float
    proposed_check: ActivityCheck
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
    u_rel, basis = planning_uncertainty(r)
    return Kinetics(region=name, dose_per_mbq=dose_scale * r.mean_dose_gy / c.activity_mbq, t_eff_h=t_eff,
                    t_uptake_h=t_up, g=g, rel_uncertainty=r.rel_uncertainty, u_rel=u_rel, u_basis=basis)


def _project(rc: RegionCourse, k: Kinetics, activity: float, cycles_left: int, quantity: str,
             k_index: int | None = None) -> tuple[float, float]:
    """(projected cumulative total, its standard uncertainty) after ``cycles_left`` cycles of
    ``activity`` with the kinetics ``k`` of cycle ``k_index`` (module docstring); the uncertainty
    is NaN without ``k_index``."""
    d = k.dose_per_mbq * activity
    if quantity == "absorbed":
        total = rc.total_dose_gy + cycles_left * d
        slope = cycles_left * d                       # d(total)/d(ln dose per MBq), planned cycles
    else:
        ab = rc.tissue.alpha_beta_gy
        total = rc.total_bed_gy + cycles_left * per_cycle_bed(d, k.g, ab)
        slope = cycles_left * d * rb.bed_derivative(d, k.g, ab)
    if k_index is None:
        return total, float("nan")
    s = rc.cycle_u(quantity)
    independent = sum(_zero_if_nan(s[i]) ** 2 for i, p in enumerate(rc.present) if p and i != k_index)
    correlated = _zero_if_nan(s[k_index]) + slope * _zero_if_nan(k.u_rel)
    return total, math.sqrt(independent + correlated * correlated)


def _status(rc: RegionCourse, lim: Limit, kin: Kinetics, activity: float, cycles_left: int, k_index: int,
            k: float) -> LimitStatus:
    t, u = _project(rc, kin, activity, cycles_left, lim.quantity, k_index)
    return LimitStatus(region=rc.name, limit=lim, activity_mbq=activity, delivered_gy=rc.total(lim.quantity),
                       projected_gy=t, u_gy=u, k=k)


def check_activity(course: Course, kin: dict[str, Kinetics], activity: float, cycles_left: int, k_index: int,
                   k: float) -> ActivityCheck:
    """Every organ-at-risk limit at ``activity`` MBq per remaining cycle: the one check that labels
    every activity of a plan (module docstring)."""
    return ActivityCheck(activity_mbq=activity, k=k, limits=[
        _status(rc, lim, kin[rc.name], activity, cycles_left, k_index, k)
        for rc in course.regions.values() for lim in rc.limits])


def _activity_with_margin(rc: RegionCourse, lim: Limit, kin: Kinetics, cycles_left: int, k_index: int,
                          k: float) -> tuple[float, float]:
    """(largest activity with T + k u <= L, activity with T = L) for one limit."""
    delivered = rc.total(lim.quantity)
    if lim.quantity == "bed":
        a0 = activity_for_limit(delivered, lim.value_gy, kin.dose_per_mbq, cycles_left, kin.g,
                                rc.tissue.alpha_beta_gy, "bed")
    else:
        a0 = activity_for_limit(delivered, lim.value_gy, kin.dose_per_mbq, cycles_left, quantity="absorbed")
    if a0 == 0.0 or math.isinf(a0):
        return a0, a0

    def excess(a: float) -> float:
        t, u = _project(rc, kin, a, cycles_left, lim.quantity, k_index)
        return t + k * u - lim.value_gy

    if k * _project(rc, kin, a0, cycles_left, lim.quantity, k_index)[1] == 0.0:
        return a0, a0                                # no margin: the closed form
    if excess(0.0) >= 0.0:
        return 0.0, a0                               # the delivered total is within k u of the limit
    lo, hi = 0.0, a0                                 # excess(lo) < 0 <= excess(hi); excess grows with a
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if excess(mid) <= 0.0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-14 * hi:
            break
    return lo, a0


def _max_activity(course: Course, kin: dict[str, Kinetics], cycles_left: int, k_index: int,
                  k: float) -> tuple[list[PlanRow], PlanRow | None]:
    rows = []
    for rc in course.regions.values():
        for lim in rc.limits:
            act, act0 = _activity_with_margin(rc, lim, kin[rc.name], cycles_left, k_index, k)
            chk = check_activity(course, kin, act, cycles_left, k_index, k)
            at = next(s for s in chk.limits if s.region == rc.name and s.limit is lim)
            rows.append(PlanRow(region=rc.name, limit=lim, delivered_gy=rc.total(lim.quantity),
                                delivered_u_gy=rc.total_u(lim.quantity), u_basis=rc.basis, activity_mbq=act,
                                activity_no_margin_mbq=act0, at=at, check=chk))
    limiting = min(rows, key=lambda r: r.activity_mbq) if rows else None
    return rows, limiting


def plan_course(course: Course, cycles_left: int, kinetics_from: int | None = None, target_gy: float | None = None,
                target_quantity: str = "absorbed", k: float | None = None) -> Plan:
    """The largest activity per remaining cycle that keeps every organ at risk within its limits
    with a margin of ``k`` standard uncertainties (default: the course's, :data:`DEFAULT_K`), with
    the kinetics of cycle ``kinetics_from`` (1-based; default the last); with ``target_gy`` also
    the activity that brings every tumour to that cumulative absorbed dose (or BED)."""
    k = course.k if k is None else check_k(k)
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
    rows, limiting = _max_activity(course, kin, cycles_left, k_index, k)
    best = limiting.activity_mbq
    if math.isinf(best):
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
            kt = kin[rc.name]
            if target_quantity == "bed":
                if rc.tissue is None or kt.t_eff_h is None:
                    raise InputError(f"tumour '{rc.name}' (no tissue parameters or no t_eff_h): expected both for a "
                                     "BED target")
                act = activity_for_limit(rc.total_bed_gy, target_gy, kt.dose_per_mbq, cycles_left, kt.g,
                                         rc.tissue.alpha_beta_gy, "bed")
            else:
                act = activity_for_limit(rc.total_dose_gy, target_gy, kt.dose_per_mbq, cycles_left, quantity="absorbed")
            target_rows.append((rc.name, rc.total(target_quantity), act))
        if target_rows:
            target_activity = max(a for _, _, a in target_rows)
    target_check = None
    if target_activity is not None and math.isfinite(target_activity):
        target_check = check_activity(course, kin, target_activity, cycles_left, k_index, k)
    proposed = best if target_activity is None else min(best, target_activity)
    if target_activity is not None and target_activity > best:
        warnings.append(f"the tumour target needs {target_activity:.6g} MBq per cycle, more than the organ limits allow "
                        f"with the margin ({best:.6g} MBq, set by {limiting.region}: {limiting.limit.label})")
    if best == 0.0:
        if limiting.activity_no_margin_mbq == 0.0:
            warnings.append(f"{limiting.region} has reached its limit ({limiting.limit.label}): no further activity "
                            "within the limits")
        else:
            warnings.append(f"{limiting.region}: the delivered total plus the margin k u already reaches its limit "
                            f"({limiting.limit.label}; k = {k:g}): no further activity within the limit with the "
                            "margin")
    proposed_check = check_activity(course, kin, proposed, cycles_left, k_index, k)
    projections = []
    for rc in course.regions.values():
        if rc.name not in kin:
            continue
        kr = kin[rc.name]
        for q in LIMIT_QUANTITIES:
            if q == "bed" and (rc.tissue is None or kr.t_eff_h is None or not math.isfinite(rc.total_bed_gy)):
                continue
            lims = [lim.value_gy for lim in rc.limits if lim.quantity == q]
            t, u = _project(rc, kr, proposed, cycles_left, q, k_index)
            projections.append(Projection(region=rc.name, quantity=q, delivered_gy=rc.total(q), projected_gy=t,
                                          limit_gy=min(lims) if lims else None, u_gy=u, k=k))
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
        _, lim_s = _max_activity(course, kin_s, cycles_left, k_index, k)
        chk = check_activity(course, kin_s, proposed, cycles_left, k_index, k)
        w = chk.worst
        sensitivity.append({"scenario": label, "dose_per_mbq_factor": fd, "t_eff_factor": ft,
                            "max_activity_mbq": lim_s.activity_mbq,
                            "max_activity_status": lim_s.check.status,
                            "limited_by": f"{lim_s.region}: {lim_s.limit.label}",
                            "proposed_activity_mbq": proposed, "proposed_status": chk.status,
                            "proposed_label": chk.label,
                            "proposed_short_label": chk.short_label,
                            "proposed_fraction_of_limit": w.fraction_of_limit,
                            "proposed_upper_fraction_of_limit": w.upper_fraction_of_limit,
                            "proposed_worst": f"{w.region}: {w.limit.label}"})
    return Plan(course=course, cycles_left=cycles_left, kinetics_cycle=k_index, kinetics=kin, k=k, rows=rows,
                max_activity_mbq=best, limiting=limiting, target_gy=target_gy, target_quantity=target_quantity,
                target_rows=target_rows, target_activity_mbq=target_activity, target_check=target_check,
                proposed_activity_mbq=proposed, proposed_check=proposed_check, projections=projections,
                sensitivity=sensitivity, warnings=warnings)
