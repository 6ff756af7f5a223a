"""Radiobiology of protracted irradiation: BED and EQD2 in the linear-quadratic model with
incomplete repair during delivery (Dale's formulation with the Lea-Catcheside G factor).

Model
=====

For an absorbed dose ``D`` delivered at the rate ``R(t)`` (``D = int_0^inf R dt``), with
mono-exponential repair of sublethal damage at the rate ``mu = ln 2 / T_rep``::

    BED = D * (1 + G * D / (alpha/beta))
    G   = (2 / D^2) * int_0^inf R(t) int_0^t R(w) exp(-mu (t - w)) dw dt     (0 <= G <= 1)

(Lea & Catcheside 1942, J Genet 44:216; Dale 1985, Br J Radiol 58:515-528; Dale 1996,
Br J Radiol 69:1-16 for radionuclide therapy.) ``G = 1`` is an acute (instantaneous) dose:
``BED = D (1 + D / (alpha/beta))``; ``G = 0`` is full repair during delivery: ``BED = D``.

Dose rate as a sum of exponentials ``R(t) = sum_i c_i exp(-lambda_i t)`` gives the closed form
(derived by integrating the double integral term by term; the ``mu = lambda_j`` terms cancel)::

    D = sum_i c_i / lambda_i
    G = (1 / D^2) * sum_ij c_i c_j (lambda_i + lambda_j + 2 mu)
                        / ((lambda_i + lambda_j) (lambda_i + mu) (lambda_j + mu))

* mono-exponential (instantaneous uptake, effective decay ``lambda = ln 2 / T_eff``)::

      G = lambda / (lambda + mu) = T_rep / (T_rep + T_eff)
      BED = D * (1 + D * lambda / ((mu + lambda) * (alpha/beta)))

  ``T_eff -> 0`` (or ``T_rep -> inf``, no repair) gives the acute limit ``G = 1``;
  ``T_rep -> 0`` (``mu -> inf``, instantaneous repair) or ``T_eff -> inf`` gives ``BED = D``.
* bi-exponential uptake and clearance, ``R(t) ~ exp(-lambda_c t) - exp(-lambda_u t)`` with
  ``lambda_c = ln 2 / T_eff`` (clearance) and ``lambda_u = ln 2 / T_uptake > lambda_c``:
  the formula above with ``c = (1, -1)``, ``lambda = (lambda_c, lambda_u)``; it reduces to the
  mono-exponential one as ``T_uptake -> 0`` (tested against numerical integration).

``EQD2 = BED / (1 + 2 Gy / (alpha/beta))``: the dose in 2 Gy fractions with the same BED.

Every function broadcasts its array arguments (per region: scalars; per voxel: maps ``[z, y, x]``);
NaN inputs give NaN (voxels outside a region). Times are in hours here because the tissue tables
and the literature give them so; doses in Gy.

Tissue parameters (``alpha/beta``, ``T_rep``) are never written into the formulas: they come from
a table (:func:`load_tissues`; the shipped one is ``data/radiobiology_tissues.toml`` with
its sources), which a user can replace with their own file.
"""

from __future__ import annotations

import fnmatch
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rptdose._data import data_dir, data_path
from rptdose.errors import InputError

LN2 = math.log(2.0)
EQD2_FRACTION_GY = 2.0  # reference dose per fraction of EQD2 (Gy)

TISSUES_FORMAT = "rptdose-tissues"
TISSUES_FORMAT_VERSION = 1
DEFAULT_TISSUES = data_dir() / "radiobiology_tissues.toml"  # data/, installed as rptdose/data


# --------------------------------------------------------------------------------------------
# formulas
# --------------------------------------------------------------------------------------------

def _as_array(value: Any, name: str, allow_inf: bool = True) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} {value!r} (not a number or array of numbers): expected values in its unit") from exc
    bad = a < 0  # NaN compares False: allowed (undefined voxels)
    if np.any(bad):
        raise InputError(f"{name} (has negative values, e.g. {a[bad].flat[0]:g}): expected values >= 0")
    if not allow_inf and np.any(np.isinf(a)):
        raise InputError(f"{name} (is infinite): expected finite values")
    return a


def g_factor(t_eff_h: Any, t_rep_h: Any, t_uptake_h: Any = None) -> np.ndarray | float:
    """The Lea-Catcheside G factor of a dose delivered with effective (clearance) half-life
    ``t_eff_h`` (h) and optional uptake half-life ``t_uptake_h`` (h; None or 0: instantaneous
    uptake) for a tissue with repair half-time ``t_rep_h`` (h). Arrays broadcast."""
    teff = _as_array(t_eff_h, "t_eff_h")
    trep = _as_array(t_rep_h, "t_rep_h")
    if t_uptake_h is None:
        g = _g_mono(teff, trep)
    else:
        tup = _as_array(t_uptake_h, "t_uptake_h", allow_inf=False)
        g = _g_biexp(teff, trep, tup)
    return float(g) if np.ndim(g) == 0 else g


def _g_mono(teff: np.ndarray, trep: np.ndarray) -> np.ndarray:
    # G = lambda / (lambda + mu) = 1 / (1 + T_eff / T_rep): finite for every limit but 0/0, inf/inf
    ambiguous = ((teff == 0) & (trep == 0)) | (np.isinf(teff) & np.isinf(trep))
    if np.any(ambiguous):
        raise InputError("t_eff_h and t_rep_h (both 0 or both infinite: the G factor is undefined): "
                         "expected at least one finite, non-zero half-life")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = teff / trep
    return 1.0 / (1.0 + ratio)


def _g_biexp(teff: np.ndarray, trep: np.ndarray, tup: np.ndarray) -> np.ndarray:
    teff, trep, tup = np.broadcast_arrays(teff, trep, tup)
    if np.any(np.isinf(teff) | (teff == 0)):
        raise InputError("t_eff_h (0 or infinite with an uptake phase): expected a finite clearance half-life > 0")
    if np.any(tup >= teff):
        raise InputError("t_uptake_h (not shorter than t_eff_h): expected an uptake half-life shorter than the "
                         "clearance half-life, R(t) ~ exp(-ln2 t/T_eff) - exp(-ln2 t/T_uptake)")
    mono = _g_mono(teff, trep)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        lc = LN2 / teff
        lu = LN2 / tup
        mu = LN2 / trep
        # sum over (c, lambda) = ((1, lc), (-1, lu)) of the closed form, divided by D^2
        s_cc = 1.0 / (lc * (lc + mu))
        s_uu = 1.0 / (lu * (lu + mu))
        s_cu = (lc + lu + 2.0 * mu) / ((lc + lu) * (lc + mu) * (lu + mu))
        dose = 1.0 / lc - 1.0 / lu
        g = (s_cc + s_uu - 2.0 * s_cu) / dose ** 2   # the two cross terms (c_c c_u = -1)
    g = np.where(tup == 0, mono, g)          # no uptake phase: mono-exponential
    g = np.where(trep == 0, 0.0, g)          # instantaneous repair
    g = np.where(np.isinf(trep), 1.0, g)     # no repair
    return g


def bed_from_g(dose_gy: Any, g: Any, alpha_beta_gy: Any) -> np.ndarray | float:
    """BED = D (1 + G D / (alpha/beta)) in Gy. Arrays broadcast."""
    d = _as_array(dose_gy, "dose_gy", allow_inf=False)
    ab = _as_array(alpha_beta_gy, "alpha_beta_gy", allow_inf=False)
    if np.any(ab == 0):
        raise InputError("alpha_beta_gy (0): expected alpha/beta > 0 Gy")
    b = d * (1.0 + np.asarray(g, dtype=np.float64) * d / ab)
    return float(b) if np.ndim(b) == 0 else b


def bed(dose_gy: Any, t_eff_h: Any, alpha_beta_gy: Any, t_rep_h: Any, *, t_uptake_h: Any = None):
    """Biologically effective dose (Gy) of ``dose_gy`` delivered mono-exponentially with the
    effective half-life ``t_eff_h`` (h) to a tissue with ``alpha_beta_gy`` (Gy) and repair
    half-time ``t_rep_h`` (h); with ``t_uptake_h`` (h) a bi-exponential uptake and clearance.
    Arrays broadcast (region values or voxel maps)::

        BED = D [1 + D lambda / ((mu + lambda) (alpha/beta))],  lambda = ln2/T_eff, mu = ln2/T_rep
    """
    return bed_from_g(dose_gy, g_factor(t_eff_h, t_rep_h, t_uptake_h), alpha_beta_gy)


def eqd2(bed_gy: Any, alpha_beta_gy: Any):
    """Equivalent dose in 2 Gy fractions (Gy): EQD2 = BED / (1 + 2 Gy / (alpha/beta))."""
    b = np.asarray(bed_gy, dtype=np.float64)
    ab = _as_array(alpha_beta_gy, "alpha_beta_gy", allow_inf=False)
    if np.any(ab == 0):
        raise InputError("alpha_beta_gy (0): expected alpha/beta > 0 Gy")
    e = b / (1.0 + EQD2_FRACTION_GY / ab)
    return float(e) if np.ndim(e) == 0 else e


def bed_derivative(dose_gy: float, g: float, alpha_beta_gy: float) -> float:
    """d(BED)/dD = 1 + 2 G D / (alpha/beta): propagates an absorbed-dose uncertainty to the BED."""
    return 1.0 + 2.0 * g * dose_gy / alpha_beta_gy


# --------------------------------------------------------------------------------------------
# tissue parameter table
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tissue:
    """Linear-quadratic parameters of one tissue, with where they come from."""

    name: str
    alpha_beta_gy: float
    t_rep_h: float
    source: str
    kinds: tuple[str, ...] = ()      # region kinds mapped to this tissue ("kidney", "marrow", "tumour")
    names: tuple[str, ...] = ()      # region-name patterns (case-insensitive globs, e.g. "*parotid*")
    note: str = ""
    checked: str = ""                # how the values were checked against the source

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "alpha_beta_gy": self.alpha_beta_gy, "t_rep_h": self.t_rep_h,
                "source": self.source, "checked": self.checked, "kinds": list(self.kinds), "names": list(self.names),
                "note": self.note}


@dataclass
class TissueTable:
    """The tissues of a parameter file, how regions map to them, and the file's identity."""

    tissues: dict[str, Tissue]
    path: str
    sha256: str
    title: str = ""
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> Tissue:
        try:
            return self.tissues[name]
        except KeyError:
            raise InputError(f"tissue '{name}' (not in {self.path}): expected one of "
                             f"{', '.join(sorted(self.tissues))}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.tissues

    def for_region(self, name: str, kind: str) -> Tissue | None:
        """The tissue of a region: a name pattern match first, then the region kind; None if neither."""
        low = name.lower()
        for t in self.tissues.values():
            if any(fnmatch.fnmatchcase(low, pat.lower()) for pat in t.names):
                return t
        for t in self.tissues.values():
            if kind in t.kinds:
                return t
        return None

    def provenance(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "title": self.title,
                "tissues": {k: v.as_dict() for k, v in self.tissues.items()}}


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file (``rptdose._provenance.sha256_file``, which every record uses)."""
    from rptdose._provenance import sha256_file

    return sha256_file(path)


def read_toml(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A TOML file as a dict; InputError naming the file when it is missing or malformed."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} '{p}' (not found): expected a TOML file")
    try:
        with open(p, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{what} '{p}' (not valid TOML: {exc}): expected a TOML file") from exc


def check_format(data: dict[str, Any], path: Any, fmt: str, version: int) -> None:
    """The ``format`` / ``format_version`` keys of a versioned rptdose input file."""
    if data.get("format") != fmt:
        raise InputError(f"{path}: key 'format' ({data.get('format')!r}): expected \"{fmt}\"")
    v = data.get("format_version")
    if not isinstance(v, int) or isinstance(v, bool) or v != version:
        raise InputError(f"{path}: key 'format_version' ({v!r}): expected {version} (the version this rptdose reads)")


def positive_number(value: Any, where: str, allow_zero: bool = False, allow_inf: bool = False) -> float:
    """A float from a parsed file; InputError saying where and what was expected."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{where} ({value!r}): expected a number")
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf) or v < 0 or (v == 0 and not allow_zero):
        raise InputError(f"{where} ({value!r}): expected a {'non-negative' if allow_zero else 'positive'} "
                         f"{'' if allow_inf else 'finite '}number")
    return v


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise InputError(f"{where} ({value!r}): expected a list of strings")
    return tuple(value)


def load_tissues(path: str | os.PathLike | None = None) -> TissueTable:
    """Read a tissue parameter table (TOML, ``format = "rptdose-tissues"``, ``format_version = 1``);
    None: the shipped one (``data/radiobiology_tissues.toml``). Each ``[tissue.<name>]``
    needs ``alpha_beta_gy`` (> 0), ``t_rep_h`` (>= 0) and ``source``; ``kinds`` and ``names``
    say which regions it applies to."""
    p = Path(path) if path is not None else data_path("radiobiology_tissues.toml")
    data = read_toml(p, "tissue parameter file")
    check_format(data, p, TISSUES_FORMAT, TISSUES_FORMAT_VERSION)
    raw = data.get("tissue")
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{p}: key 'tissue' (missing or empty): expected [tissue.<name>] tables")
    tissues: dict[str, Tissue] = {}
    for name, entry in raw.items():
        where = f"{p}: [tissue.{name}]"
        if not isinstance(entry, dict):
            raise InputError(f"{where} (not a table): expected alpha_beta_gy, t_rep_h, source")
        for key in ("alpha_beta_gy", "t_rep_h", "source"):
            if key not in entry:
                raise InputError(f"{where} key '{key}' (missing): expected alpha_beta_gy (Gy), t_rep_h (h) and source")
        source = entry["source"]
        if not isinstance(source, str) or not source.strip():
            raise InputError(f"{where} key 'source' ({source!r}): expected the reference of the values")
        tissues[name] = Tissue(
            name=name,
            alpha_beta_gy=positive_number(entry["alpha_beta_gy"], f"{where} key 'alpha_beta_gy'"),
            t_rep_h=positive_number(entry["t_rep_h"], f"{where} key 't_rep_h'", allow_zero=True, allow_inf=True),
            source=source.strip(),
            kinds=_str_list(entry.get("kinds"), f"{where} key 'kinds'"),
            names=_str_list(entry.get("names"), f"{where} key 'names'"),
            note=str(entry.get("note", "")).strip(),
            checked=" ".join(str(entry.get("checked", "")).split()),
        )
    return TissueTable(tissues=tissues, path=str(p), sha256=file_sha256(p), title=str(data.get("title", "")))
