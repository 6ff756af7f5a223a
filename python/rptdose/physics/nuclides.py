"""Radionuclide emission data from ICRP Publication 107 (via the PyPI package icrp107-database).

ICRP Publication 107, "Nuclear decay data for dosimetric calculations", Ann ICRP 38(3), 2008
(Eckerman & Endo). The package ships one JSON file per nuclide with the half-life, the discrete
emissions ([energy MeV, yield per decay] for 'gamma', 'X', 'IE' = internal-conversion electrons,
'auger', 'alpha', 'beta-'/'beta+' = branch mean energies and intensities, ...) and 'b-spectra',
the beta spectrum N(E) (particles per MeV per decay) on a nonuniform energy grid.

Only the emissions of the nuclide itself are used: radioactive progeny (e.g. the 0.4 % Xe-131m
branch of I-131) are not added. Nuclides emitting alphas, positrons, neutrons or fission
fragments are refused (rptdose does not transport them yet).

Units: MeV, s, yields per decay.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from ..errors import DataError, InputError

__all__ = [
    "Nuclide",
    "load_nuclide",
    "available_nuclides",
    "monoenergetic_emissions",
    "icrp107_version",
    "NB_BETA",
    "LINE_KINDS",
]

_trapz = getattr(np, "trapezoid", None) or np.trapz  # numpy >= 2 / numpy 1.x

NB_BETA = 1024  # points of the beta inverse CDF (docs/core_contract.md)
LINE_KINDS = ("IE", "auger", "gamma", "X")  # discrete lines that are transported / deposited
_PHOTON_KINDS = ("gamma", "X")
_UNSUPPORTED = {  # ICRP-107 emission key -> reason
    "alpha": "alpha particles",
    "alpha recoil": "alpha recoil nuclei",
    "beta+": "positrons (beta+)",
    "annihilation": "annihilation photons from positrons",
    "neutron": "neutrons",
    "fission": "fission fragments",
    "betaD": "delayed-neutron beta emission",
}

# ICRP-107 time units -> seconds. 'y' is taken as the Julian year of 365.25 d (the convention of
# ICRP 107 / MIRD decay data).
_TIME_UNIT_S = {
    "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0,
    "y": 365.25 * 86400.0,
}

# Supported energy range of transported particles (MeV): the transport tables' grid.
_E_MIN_MEV, _E_MAX_MEV = 1e-3, 3.0


def _data_dir() -> Path:
    try:
        import icrp107_database  # noqa: WPS433 (import inside: optional at import time)
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise DataError(
            "nuclide data (package icrp107-database not installed): install it with "
            "'pip install icrp107-database'"
        ) from exc
    return Path(icrp107_database.__file__).resolve().parent / "icrp107"


def icrp107_version() -> str:
    """Version of the installed icrp107-database package."""
    try:
        return metadata.version("icrp107-database")
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


@functools.lru_cache(maxsize=1)
def available_nuclides() -> tuple[str, ...]:
    """Names of all nuclides in the ICRP-107 data (e.g. 'Lu-177', 'Tc-99m')."""
    return tuple(sorted(p.stem for p in _data_dir().glob("*.json")))


_PAT_SYMBOL_FIRST = re.compile(r"^([a-z]{1,2})[\s_\-]*(\d{1,3})([mn]?)$")
_PAT_MASS_FIRST = re.compile(r"^(\d{1,3})([mn]?)[\s_\-]*([a-z]{1,2})$")


def _canonical_name(name: str) -> str:
    """'Lu-177', 'Lu177', 'lu-177', '177Lu', '177-Lu', 'Tc-99m', '99mTc' -> ICRP-107 file stem."""
    if not isinstance(name, str):
        raise InputError(
            f"nuclide {name!r} (not a string): expected a name such as 'Lu-177', 'Lu177' or '177Lu'"
        )
    s = name.strip().lower()
    candidates: list[tuple[str, str, str]] = []
    m = _PAT_SYMBOL_FIRST.match(s)
    if m:
        candidates.append((m.group(1), m.group(2), m.group(3)))
    m = _PAT_MASS_FIRST.match(s)
    if m:
        candidates.append((m.group(3), m.group(1), m.group(2)))
        # '54mn' is Mn-54, not N-54m: also try the isomer letter as part of the symbol
        if m.group(2):
            m2 = re.match(r"^(\d{1,3})[\s_\-]*([a-z]{1,2})$", s)
            if m2:
                candidates.append((m2.group(2), m2.group(1), ""))
    known = set(available_nuclides())
    for sym, mass, iso in candidates:
        stem = f"{sym.capitalize()}-{int(mass)}{iso}"
        if stem in known:
            return stem
    hint = ""
    if candidates:
        sym = candidates[0][0].capitalize()
        same = [n for n in available_nuclides() if n.split("-")[0] == sym]
        if same:
            hint = f"; ICRP-107 has for {sym}: {', '.join(same[:30])}"
    raise InputError(
        f"nuclide {name!r} (unknown): expected an ICRP-107 nuclide spelled like 'Lu-177', "
        f"'Lu177', 'lu-177' or '177Lu' (metastable: 'Tc-99m'){hint}"
    )


@dataclass(frozen=True)
class Nuclide:
    """Decay data of one radionuclide (ICRP-107).

    Arrays are exposed as read-only numpy views of tuples stored in the (hashable) dataclass.
    """

    name: str
    half_life_s: float
    beta_yield: float  # beta- particles per decay (sum of the 'beta-' branch intensities)
    beta_mean_mev: float  # mean beta- kinetic energy per beta particle (branch-weighted)
    beta_spectrum: tuple[tuple[float, float], ...]  # (E MeV, N(E) per MeV per decay), 'b-spectra'
    lines: tuple[tuple[float, float, str], ...]  # (E MeV, yield per decay, kind in LINE_KINDS)
    source: str

    # ---- beta spectrum ----
    @property
    def beta_spectrum_energy_mev(self) -> np.ndarray:
        return np.array([e for e, _ in self.beta_spectrum], dtype=np.float64)

    @property
    def beta_spectrum_per_mev(self) -> np.ndarray:
        """N(E): beta particles per MeV per decay (ICRP-107 'b-spectra')."""
        return np.array([n for _, n in self.beta_spectrum], dtype=np.float64)

    @property
    def beta_endpoint_mev(self) -> float:
        """Highest energy of the beta spectrum (0 without beta emission)."""
        return float(self.beta_spectrum[-1][0]) if self.beta_spectrum else 0.0

    @property
    def beta_spectrum_mean_mev(self) -> float:
        """Mean energy of the tabulated spectrum (trapezoid rule), MeV per beta particle."""
        if not self.beta_spectrum:
            return 0.0
        e, n = self.beta_spectrum_energy_mev, self.beta_spectrum_per_mev
        return float(_trapz(n * e, e) / _trapz(n, e))

    # ---- discrete lines ----
    @property
    def line_energy_mev(self) -> np.ndarray:
        return np.array([l[0] for l in self.lines], dtype=np.float64)

    @property
    def line_yield(self) -> np.ndarray:
        return np.array([l[1] for l in self.lines], dtype=np.float64)

    @property
    def line_kind(self) -> tuple[str, ...]:
        return tuple(l[2] for l in self.lines)

    def _line_sum(self, kinds: tuple[str, ...]) -> float:
        return float(sum(e * y for e, y, k in self.lines if k in kinds))

    # ---- mean energies per decay (MeV) ----
    @property
    def beta_mev_per_decay(self) -> float:
        return self.beta_mean_mev * self.beta_yield

    @property
    def ie_mev_per_decay(self) -> float:
        """Internal-conversion electrons."""
        return self._line_sum(("IE",))

    @property
    def auger_mev_per_decay(self) -> float:
        return self._line_sum(("auger",))

    @property
    def gamma_mev_per_decay(self) -> float:
        return self._line_sum(("gamma",))

    @property
    def xray_mev_per_decay(self) -> float:
        return self._line_sum(("X",))

    @property
    def electron_mev_per_decay(self) -> float:
        """beta mean x yield + conversion + Auger electrons."""
        return self.beta_mev_per_decay + self.ie_mev_per_decay + self.auger_mev_per_decay

    @property
    def photon_mev_per_decay(self) -> float:
        """gamma + X rays."""
        return self.gamma_mev_per_decay + self.xray_mev_per_decay

    @property
    def total_mev_per_decay(self) -> float:
        return self.electron_mev_per_decay + self.photon_mev_per_decay

    @property
    def decay_constant_per_s(self) -> float:
        return float(np.log(2.0) / self.half_life_s)

    def mean_energies_mev(self) -> dict[str, float]:
        """Mean energy per decay by emission type (MeV)."""
        return {
            "beta": self.beta_mev_per_decay,
            "IE": self.ie_mev_per_decay,
            "auger": self.auger_mev_per_decay,
            "gamma": self.gamma_mev_per_decay,
            "X": self.xray_mev_per_decay,
            "electrons": self.electron_mev_per_decay,
            "photons": self.photon_mev_per_decay,
            "total": self.total_mev_per_decay,
        }

    # ---- arrays for the transport core ----
    def beta_inv_cdf(self, nb: int = NB_BETA) -> np.ndarray:
        """Beta kinetic energy (MeV) at cumulative probabilities u = linspace(0, 1, nb).

        The tabulated N(E) is interpolated with a monotone (shape-preserving) cubic, PCHIP
        (Fritsch & Carlson, SIAM J Numer Anal 17:238, 1980), on a grid refined 64x inside each
        tabulated interval; the trapezoid rule on that grid gives the CDF, which is inverted by
        linear interpolation. Why not the trapezoid rule on the tabulated points alone: the
        ICRP-107 grid is coarse near the end point (e.g. Lu-177: 0.40, 0.45, 0.4978 MeV) where
        N(E) is convex, and a piecewise-linear N overestimates the tail: the mean energy comes
        out +0.56 % (Lu-177, Tb-161) above ICRP-107's 133.27 keV; with PCHIP it is within
        0.1 % for Lu-177, Y-90, I-131, Tb-161, Sm-153, Ho-166, Re-188, P-32, Sr-89, Cu-67.
        """
        if not self.beta_spectrum or self.beta_yield <= 0.0:
            return np.zeros(1, dtype=np.float64)
        e = self.beta_spectrum_energy_mev
        n = np.clip(self.beta_spectrum_per_mev, 0.0, None)
        sub = 64
        t = np.linspace(0.0, 1.0, sub + 1)[:-1]
        ef = np.concatenate([(e[:-1, None] + t[None, :] * np.diff(e)[:, None]).ravel(), e[-1:]])
        nf = np.clip(_pchip(e, n, ef), 0.0, None)
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (nf[1:] + nf[:-1]) * np.diff(ef))])
        if cdf[-1] <= 0.0:
            raise DataError(f"nuclide {self.name}: beta spectrum integrates to 0 (corrupt ICRP-107 data?)")
        cdf /= cdf[-1]
        # keep the last point of a leading zero plateau and the first point of a trailing
        # plateau at 1, so the inverse is well defined
        first = max(int(np.searchsorted(cdf, 0.0, side="right")) - 1, 0)
        keep = np.concatenate([[True], np.diff(cdf) > 0.0])
        keep[:first] = False
        keep[first] = True
        c, ee = cdf[keep], ef[keep]
        u = np.linspace(0.0, 1.0, nb)
        inv = np.interp(u, c, ee)
        inv[0], inv[-1] = ee[0], ee[-1]
        return np.ascontiguousarray(inv, dtype=np.float64)

    def emission_arrays(self, el_cut_mev: float = 0.01, ph_cut_mev: float = 0.001) -> dict:
        """The emission dict of the core contract (docs/core_contract.md).

        Lines below the tracking cuts (electrons < `el_cut_mev`, photons < `ph_cut_mev`) are
        summed into ``local_mev_per_decay`` (deposited at the decay site).
        """
        el_cut_mev, ph_cut_mev = _check_cuts(el_cut_mev, ph_cut_mev)
        energies, yields, is_photon = [], [], []
        local = 0.0
        for e, y, kind in self.lines:
            if y <= 0.0:
                continue
            photon = kind in _PHOTON_KINDS
            cut = ph_cut_mev if photon else el_cut_mev
            if e < cut:
                local += e * y
                continue
            energies.append(e)
            yields.append(y)
            is_photon.append(1 if photon else 0)
        emax = max(energies + [self.beta_endpoint_mev if self.beta_yield > 0 else 0.0])
        if emax > _E_MAX_MEV * (1 + 1e-9):
            raise InputError(
                f"nuclide {self.name} (emits {emax:.4g} MeV): expected emissions up to "
                f"{_E_MAX_MEV:g} MeV, the upper end of rptdose's physics tables"
            )
        has_beta = self.beta_yield > 0.0 and bool(self.beta_spectrum)
        return {
            "beta_yield": float(self.beta_yield) if has_beta else 0.0,
            "beta_inv_cdf": self.beta_inv_cdf() if has_beta else np.zeros(1, dtype=np.float64),
            "line_energy_mev": np.ascontiguousarray(energies, dtype=np.float64),
            "line_yield": np.ascontiguousarray(yields, dtype=np.float64),
            "line_is_photon": np.ascontiguousarray(is_photon, dtype=np.int32),
            "local_mev_per_decay": float(local),
            "el_cut_mev": float(el_cut_mev),
            "ph_cut_mev": float(ph_cut_mev),
        }

    def __str__(self) -> str:
        m = self.mean_energies_mev()
        return (f"{self.name}: T1/2 {self.half_life_s / 86400:.4g} d, electrons "
                f"{1000 * m['electrons']:.2f} keV/decay, photons {1000 * m['photons']:.2f} keV/decay")


def _pchip(x: np.ndarray, y: np.ndarray, xi: np.ndarray) -> np.ndarray:
    """Monotone piecewise-cubic Hermite interpolation (Fritsch & Carlson 1980; the derivative
    and end-point rules of scipy.interpolate.PchipInterpolator). x strictly increasing."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    h = np.diff(x)
    delta = np.diff(y) / h
    d = np.zeros_like(y)
    if len(x) == 2:
        d[:] = delta[0]
    else:
        w1 = 2.0 * h[1:] + h[:-1]
        w2 = h[1:] + 2.0 * h[:-1]
        same = (delta[:-1] * delta[1:]) > 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            hm = (w1 + w2) / (w1 / delta[:-1] + w2 / delta[1:])
        d[1:-1] = np.where(same, hm, 0.0)

        def edge(h0, h1, m0, m1):
            dd = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
            if np.sign(dd) != np.sign(m0):
                return 0.0
            if np.sign(m0) != np.sign(m1) and abs(dd) > abs(3.0 * m0):
                return 3.0 * m0
            return dd

        d[0] = edge(h[0], h[1], delta[0], delta[1])
        d[-1] = edge(h[-1], h[-2], delta[-1], delta[-2])
    xi = np.asarray(xi, float)
    k = np.clip(np.searchsorted(x, xi, side="right") - 1, 0, len(x) - 2)
    hk = h[k]
    s = (xi - x[k]) / hk
    h00 = (1 + 2 * s) * (1 - s) ** 2
    h10 = s * (1 - s) ** 2
    h01 = s * s * (3 - 2 * s)
    h11 = s * s * (s - 1)
    return h00 * y[k] + h10 * hk * d[k] + h01 * y[k + 1] + h11 * hk * d[k + 1]


def _check_cuts(el_cut_mev: float, ph_cut_mev: float) -> tuple[float, float]:
    try:
        el, ph = float(el_cut_mev), float(ph_cut_mev)
    except (TypeError, ValueError):
        raise InputError(
            f"el_cut_mev={el_cut_mev!r}, ph_cut_mev={ph_cut_mev!r} (not numbers): expected "
            f"tracking cuts in MeV"
        ) from None
    if not _E_MIN_MEV <= el <= 1.0:
        raise InputError(f"el_cut_mev={el_cut_mev!r} (out of range): expected 0.001..1 MeV")
    if not _E_MIN_MEV <= ph <= 1.0:
        raise InputError(f"ph_cut_mev={ph_cut_mev!r} (out of range): expected 0.001..1 MeV")
    return el, ph


@functools.lru_cache(maxsize=64)
def _load(stem: str) -> Nuclide:
    path = _data_dir() / f"{stem}.json"
    try:
        with open(path, "rb") as f:
            raw = json.load(f)
        data = json.loads(raw) if isinstance(raw, str) else raw  # the package double-encodes
        emissions = data["emissions"]
        half_life = float(data["half_life"])
        unit = str(data["time_unit"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"ICRP-107 file {path} (unreadable: {exc}): reinstall icrp107-database") from exc
    if unit not in _TIME_UNIT_S:
        raise DataError(f"ICRP-107 file {path}: unknown time unit {unit!r}")
    present = [k for k in _UNSUPPORTED if emissions.get(k)]
    if present:
        what = ", ".join(_UNSUPPORTED[k] for k in present)
        raise InputError(
            f"nuclide {stem} (emits {what}): not supported yet, rptdose transports beta-, "
            f"conversion/Auger electrons, gamma and X rays only (e.g. Lu-177, Y-90, I-131, Tb-161)"
        )
    betas = [(float(e), float(y)) for e, y in emissions.get("beta-", [])]
    beta_yield = sum(y for _, y in betas)
    beta_mean = sum(e * y for e, y in betas) / beta_yield if beta_yield > 0 else 0.0
    spectrum = tuple((float(e), float(n)) for e, n in emissions.get("b-spectra", []))
    if beta_yield > 0 and len(spectrum) < 2:
        raise DataError(f"ICRP-107 file {path}: beta- emitter without a beta spectrum")
    if not beta_yield:
        spectrum = ()
    lines = []
    for kind in LINE_KINDS:
        for e, y in emissions.get(kind, []):
            lines.append((float(e), float(y), kind))
    return Nuclide(
        name=stem,
        half_life_s=half_life * _TIME_UNIT_S[unit],
        beta_yield=beta_yield,
        beta_mean_mev=beta_mean,
        beta_spectrum=spectrum,
        lines=tuple(lines),
        source=f"ICRP Publication 107 (Ann ICRP 38(3), 2008) via icrp107-database {icrp107_version()}",
    )


def load_nuclide(name: str) -> Nuclide:
    """Load a nuclide's ICRP-107 decay data. Accepts 'Lu-177', 'Lu177', 'lu-177', '177Lu'."""
    return _load(_canonical_name(name))


def monoenergetic_emissions(kind: str, energy_mev: float, el_cut_mev: float = 0.01,
                            ph_cut_mev: float = 0.001) -> dict:
    """Emission dict (core contract) for one particle per decay of fixed energy.

    kind: 'electron' or 'photon'; energy_mev in 0.001..3 MeV. A particle below its tracking cut
    is deposited locally (``local_mev_per_decay``).
    """
    k = str(kind).strip().lower() if isinstance(kind, str) else kind
    aliases = {"electron": 0, "e-": 0, "e": 0, "beta": 0, "photon": 1, "gamma": 1, "x": 1}
    if k not in aliases:
        raise InputError(f"kind={kind!r} (unknown): expected 'electron' or 'photon'")
    try:
        e = float(energy_mev)
    except (TypeError, ValueError):
        raise InputError(f"energy_mev={energy_mev!r} (not a number): expected an energy in MeV") from None
    if not (_E_MIN_MEV <= e <= _E_MAX_MEV):
        raise InputError(
            f"energy_mev={energy_mev!r} (out of range): expected {_E_MIN_MEV:g}..{_E_MAX_MEV:g} MeV"
        )
    el_cut_mev, ph_cut_mev = _check_cuts(el_cut_mev, ph_cut_mev)
    photon = aliases[k]
    cut = ph_cut_mev if photon else el_cut_mev
    transported = e >= cut
    return {
        "beta_yield": 0.0,
        "beta_inv_cdf": np.zeros(1, dtype=np.float64),
        "line_energy_mev": np.array([e] if transported else [], dtype=np.float64),
        "line_yield": np.array([1.0] if transported else [], dtype=np.float64),
        "line_is_photon": np.array([photon] if transported else [], dtype=np.int32),
        "local_mev_per_decay": 0.0 if transported else e,
        "el_cut_mev": float(el_cut_mev),
        "ph_cut_mev": float(ph_cut_mev),
    }
