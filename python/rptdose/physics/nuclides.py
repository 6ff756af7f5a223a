"""Radionuclide emission data from ICRP Publication 107 (via the PyPI package icrp107-database).

ICRP Publication 107, "Nuclear decay data for dosimetric calculations", Ann ICRP 38(3), 2008
(Eckerman & Endo). The package ships one JSON file per nuclide with the half-life, the discrete
emissions ([energy MeV, yield per decay] for 'gamma', 'X', 'IE' = internal-conversion electrons,
'auger', 'alpha', 'beta-'/'beta+' = branch mean energies and intensities, ...) and 'b-spectra',
the beta spectrum N(E) (particles per MeV per decay) on a nonuniform energy grid.

A :class:`Nuclide` holds the emissions of the nuclide itself; its radioactive progeny are added
by :mod:`rptdose.physics.chains` (``rd.Source(..., chain="equilibrium")``).

What each emission becomes in rptdose:

=======================  =================================================================
ICRP-107 key             use
=======================  =================================================================
``beta-``, ``beta+``     branch mean energies and intensities: the yields (``beta_yield``,
                         ``positron_yield``) and reference means
``b-spectra``            the spectrum N(E) sampled for beta- and beta+ particles. ICRP-107
                         tabulates one spectrum per nuclide, beta- and beta+ together where a
                         nuclide has both (e.g. Cu-64: integral 0.565 = 0.390 beta- + 0.174
                         beta+); it is then shared between the two by the ratio of their
                         allowed shapes (:func:`allowed_beta_shape`, endpoints solved from
                         ICRP-107's branch mean energies): Cu-64's split reproduces ICRP-107's
                         yields within 0.2 % and mean energies within 0.6 % (tests)
``IE``, ``auger``,       discrete lines, transported (or deposited at the decay site below
``gamma``, ``X``         the tracking cuts)
``annihilation``         not used for transport: each positron annihilates where it stops
                         (the core makes the two 511 keV photons); kept as the reference
``alpha``,               deposited at the decay site (ranges 40-100 um in tissue, far below a
``alpha recoil``         voxel): ``alpha_mev_per_decay`` of the emission arrays, added to the
                         dose as an exact expected value (transport/simulate.py)
``neutron``, ``fission``, refused (InputError naming the nuclide)
``betaD``
=======================  =================================================================

Particles above the transport tables' upper end (3 MeV; a few weak lines of Y-86, Tb-149,
Tb-152, Sc-44, As-72, Br-76, Ga-66 and the end of a few beta+ spectra) are transported with the
tables' values at 3 MeV (the core clamps its look-ups): photons see mu(3 MeV), which overstates
their attenuation by up to 17 % at 4 MeV (NIST XCOM water, pair production included), and
electrons lose the energy above 3 MeV in their first step. The energy per decay they carry is
``above_table_mev_per_decay`` (provenance); a UserWarning says so when it exceeds 1 % of the
transported energy. Emissions above 6 MeV are refused.

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
    "neutron": "neutrons",
    "fission": "fission fragments",
    "betaD": "delayed-neutron beta emission",
}
MEC2_MEV = 0.51099895000  # electron rest energy (CODATA 2018): each annihilation photon
_ALPHA_FS = 7.2973525693e-3  # fine-structure constant (CODATA 2018)
#: Share of the transported energy above the tables' top (3 MeV) beyond which a warning is given.
ABOVE_TABLE_WARN_FRACTION = 0.01

# ICRP-107 time units -> seconds. 'y' is taken as the Julian year of 365.25 d (the convention of
# ICRP 107 / MIRD decay data).
_TIME_UNIT_S = {
    "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0,
    "y": 365.25 * 86400.0,
}

# Supported energy range of transported particles (MeV): the transport tables' grid; particles
# up to _E_CEIL_MEV are accepted and transported with the values at _E_MAX_MEV (module docstring).
_E_MIN_MEV, _E_MAX_MEV = 1e-3, 3.0
_E_CEIL_MEV = 6.0


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
    positron_yield: float = 0.0  # beta+ particles per decay (sum of the 'beta+' intensities)
    positron_mean_mev: float = 0.0  # mean beta+ kinetic energy (branch-weighted, ICRP-107)
    alphas: tuple[tuple[float, float], ...] = ()  # (E MeV, yield per decay), 'alpha'
    recoils: tuple[tuple[float, float], ...] = ()  # (E MeV, yield per decay), 'alpha recoil'
    annihilation_yield: float = 0.0  # 511 keV photons per decay listed by ICRP-107 (2 x beta+)
    beta_branches: tuple[tuple[float, float], ...] = ()  # beta- (mean MeV, intensity)
    positron_branches: tuple[tuple[float, float], ...] = ()  # beta+ (mean MeV, intensity)
    atomic_number: int = 0  # Z of the nuclide (0: unknown; needed only to split a shared spectrum)

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
    def positron_mev_per_decay(self) -> float:
        """Kinetic energy of the positrons (ICRP-107 branch means x intensities)."""
        return self.positron_mean_mev * self.positron_yield

    @property
    def annihilation_mev_per_decay(self) -> float:
        """Annihilation photons as listed by ICRP-107 (0.511 MeV x 2 per positron)."""
        return MEC2_MEV * self.annihilation_yield

    @property
    def alpha_mev_per_decay(self) -> float:
        """Alpha particles."""
        return float(sum(e * y for e, y in self.alphas))

    @property
    def recoil_mev_per_decay(self) -> float:
        """Alpha recoil nuclei."""
        return float(sum(e * y for e, y in self.recoils))

    @property
    def alpha_recoil_mev_per_decay(self) -> float:
        """Alphas and their recoil nuclei: the energy deposited at the decay site."""
        return self.alpha_mev_per_decay + self.recoil_mev_per_decay

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
        """beta- mean x yield + beta+ kinetic energy + conversion + Auger electrons."""
        return (self.beta_mev_per_decay + self.positron_mev_per_decay + self.ie_mev_per_decay
                + self.auger_mev_per_decay)

    @property
    def photon_mev_per_decay(self) -> float:
        """gamma + X rays + annihilation photons."""
        return self.gamma_mev_per_decay + self.xray_mev_per_decay + self.annihilation_mev_per_decay

    @property
    def total_mev_per_decay(self) -> float:
        """Everything ICRP-107 lists per decay: electrons, photons, alphas and recoils."""
        return self.electron_mev_per_decay + self.photon_mev_per_decay + self.alpha_recoil_mev_per_decay

    @property
    def decay_constant_per_s(self) -> float:
        return float(np.log(2.0) / self.half_life_s)

    def mean_energies_mev(self) -> dict[str, float]:
        """Mean energy per decay by emission type (MeV)."""
        return {
            "beta": self.beta_mev_per_decay,
            "positron": self.positron_mev_per_decay,
            "IE": self.ie_mev_per_decay,
            "auger": self.auger_mev_per_decay,
            "gamma": self.gamma_mev_per_decay,
            "X": self.xray_mev_per_decay,
            "annihilation": self.annihilation_mev_per_decay,
            "alpha": self.alpha_mev_per_decay,
            "recoil": self.recoil_mev_per_decay,
            "electrons": self.electron_mev_per_decay,
            "photons": self.photon_mev_per_decay,
            "total": self.total_mev_per_decay,
        }

    # ---- arrays for the transport core ----
    def beta_inv_cdf(self, nb: int = NB_BETA) -> np.ndarray:
        """Beta- kinetic energy (MeV) at cumulative probabilities u = linspace(0, 1, nb).

        The tabulated N(E) is interpolated with a monotone (shape-preserving) cubic, PCHIP
        (Fritsch & Carlson, SIAM J Numer Anal 17:238, 1980), on a grid refined 64x inside each
        tabulated interval; the trapezoid rule on that grid gives the CDF, which is inverted by
        linear interpolation. Why not the trapezoid rule on the tabulated points alone: the
        ICRP-107 grid is coarse near the end point (e.g. Lu-177: 0.40, 0.45, 0.4978 MeV) where
        N(E) is convex, and a piecewise-linear N overestimates the tail: the mean energy comes
        out +0.56 % (Lu-177, Tb-161) above ICRP-107's 133.27 keV; with PCHIP it is within
        0.1 % for Lu-177, Y-90, I-131, Tb-161, Sm-153, Ho-166, Re-188, P-32, Sr-89, Cu-67.
        Where ICRP-107's spectrum holds beta- and beta+ together, the beta- share of it
        (module docstring).
        """
        if not self.beta_spectrum or self.beta_yield <= 0.0:
            return np.zeros(1, dtype=np.float64)
        ef, cdf = self.spectrum_cdf("beta-")
        return _invert_cdf(ef, cdf, nb)

    def positron_inv_cdf(self, nb: int = NB_BETA) -> np.ndarray:
        """Positron (beta+) kinetic energy (MeV) at u = linspace(0, 1, nb): as
        :meth:`beta_inv_cdf`, from the beta+ share of the spectrum."""
        if not self.beta_spectrum or self.positron_yield <= 0.0:
            return np.zeros(1, dtype=np.float64)
        ef, cdf = self.spectrum_cdf("beta+")
        return _invert_cdf(ef, cdf, nb)

    def spectrum_cdf(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(E MeV on the refined grid, CDF normalised to 1) of the beta- (``kind="beta-"``) or
        beta+ (``"beta+"``) spectrum; the pieces :meth:`beta_inv_cdf` inverts and from which
        decay chains mix their members' spectra (rptdose.physics.chains)."""
        ef, nm, npl = _spectrum_shares(self)
        nf = nm if kind == "beta-" else npl
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (nf[1:] + nf[:-1]) * np.diff(ef))])
        if cdf[-1] <= 0.0:
            raise DataError(f"nuclide {self.name}: {kind} spectrum integrates to 0 (corrupt ICRP-107 data?)")
        return ef, cdf / cdf[-1]

    def spectrum_mean_mev(self, kind: str) -> float:
        """Mean kinetic energy (MeV) of the beta- or beta+ spectrum as sampled (the mean of its
        inverse CDF, trapezoid rule: what the core draws)."""
        inv = self.beta_inv_cdf() if kind == "beta-" else self.positron_inv_cdf()
        return float(np.mean(0.5 * (inv[1:] + inv[:-1]))) if inv.size > 1 else 0.0

    def emission_arrays(self, el_cut_mev: float = 0.01, ph_cut_mev: float = 0.001) -> dict:
        """The emission dict of the core contract (docs/core_contract.md).

        Lines below the tracking cuts (electrons < `el_cut_mev`, photons < `ph_cut_mev`) are
        summed into ``local_mev_per_decay`` (deposited at the decay site). Alphas and recoils
        are ``alpha_mev_per_decay`` (read by the Python layer, not the core); the energy above
        the tables' top is ``above_table_mev_per_decay`` (module docstring).
        """
        return check_emission_energies(self.name, self.raw_emission_arrays(el_cut_mev, ph_cut_mev))

    def raw_emission_arrays(self, el_cut_mev: float = 0.01, ph_cut_mev: float = 0.001) -> dict:
        """:meth:`emission_arrays` without the check of the energies above the tables' top (for
        decay chains, which check their sum once)."""
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
        has_beta = self.beta_yield > 0.0 and bool(self.beta_spectrum)
        has_pos = self.positron_yield > 0.0 and bool(self.beta_spectrum)
        beta_inv = self.beta_inv_cdf() if has_beta else np.zeros(1, dtype=np.float64)
        pos_inv = self.positron_inv_cdf() if has_pos else np.zeros(1, dtype=np.float64)
        out = {
            "beta_yield": float(self.beta_yield) if has_beta else 0.0,
            "beta_inv_cdf": beta_inv,
            "line_energy_mev": np.ascontiguousarray(energies, dtype=np.float64),
            "line_yield": np.ascontiguousarray(yields, dtype=np.float64),
            "line_is_photon": np.ascontiguousarray(is_photon, dtype=np.int32),
            "local_mev_per_decay": float(local),
            "el_cut_mev": float(el_cut_mev),
            "ph_cut_mev": float(ph_cut_mev),
        }
        if has_pos:
            out["positron_yield"] = float(self.positron_yield)
            out["positron_inv_cdf"] = pos_inv
        out["alpha_mev_per_decay"] = float(self.alpha_recoil_mev_per_decay)
        return out

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


def _refine(e: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A tabulated spectrum on a grid 64x finer inside each interval, by PCHIP (>= 0)."""
    n = np.clip(n, 0.0, None)
    sub = 64
    t = np.linspace(0.0, 1.0, sub + 1)[:-1]
    ef = np.concatenate([(e[:-1, None] + t[None, :] * np.diff(e)[:, None]).ravel(), e[-1:]])
    nf = np.clip(_pchip(e, n, ef), 0.0, None)
    return ef, nf


def _invert_cdf(ef: np.ndarray, cdf: np.ndarray, nb: int) -> np.ndarray:
    """Energies at u = linspace(0, 1, nb) of a normalised CDF on the grid ef (linear inverse).

    The last point of a leading zero plateau and the first point of a trailing plateau at 1 are
    kept, so that the inverse is well defined.
    """
    first = max(int(np.searchsorted(cdf, 0.0, side="right")) - 1, 0)
    keep = np.concatenate([[True], np.diff(cdf) > 0.0])
    keep[:first] = False
    keep[first] = True
    c, ee = cdf[keep], ef[keep]
    u = np.linspace(0.0, 1.0, nb)
    inv = np.interp(u, c, ee)
    inv[0], inv[-1] = ee[0], ee[-1]
    return np.ascontiguousarray(inv, dtype=np.float64)


def allowed_beta_shape(energy_mev: np.ndarray, endpoint_mev: float, z_daughter: int, positron: bool) -> np.ndarray:
    """Allowed beta spectrum shape F(Z, W) p W (W0 - W)^2 (unnormalised) at kinetic energies
    ``energy_mev``, with the non-relativistic Fermi function F = 2 pi eta / (1 - exp(-2 pi eta)),
    eta = +-alpha Z W / p (+ for beta-, - for beta+; W total energy in m_e c^2, p momentum in
    m_e c), Z the daughter's atomic number (Evans, The Atomic Nucleus, 1955, ch. 17). Used only
    to share ICRP-107's joint beta-/beta+ spectrum between the two (module docstring)."""
    e = np.asarray(energy_mev, dtype=np.float64)
    w = e / MEC2_MEV + 1.0
    p = np.sqrt(np.maximum(w * w - 1.0, 1e-300))
    x = (-1.0 if positron else 1.0) * 2.0 * np.pi * _ALPHA_FS * z_daughter * w / p
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        f = np.where(x >= 0.0, x / -np.expm1(-np.abs(x)), -x * np.exp(x) / -np.expm1(x))
    f = np.where(np.abs(x) < 1e-12, 1.0, f)
    return np.where(e < endpoint_mev, f * p * w * (endpoint_mev - e) ** 2, 0.0)


def _allowed_endpoint(mean_mev: float, z_daughter: int, positron: bool) -> float:
    """End point (MeV) of the allowed shape whose mean kinetic energy is ``mean_mev`` (bisection)."""
    def mean_of(e0: float) -> float:
        e = np.linspace(0.0, e0, 2001)[1:]
        f = allowed_beta_shape(e, e0, z_daughter, positron)
        return float(_trapz(f * e, e) / _trapz(f, e))

    lo, hi = mean_mev, 4.0 * mean_mev + 0.1  # the mean lies between E0/4 and E0 for these shapes
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if mean_of(mid) < mean_mev:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@functools.lru_cache(maxsize=128)
def _spectrum_shares(nuc: Nuclide) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(E, N_minus(E), N_plus(E)) on the refined grid: ICRP-107's spectrum, all beta- or all
    beta+ for a pure emitter, else shared by the ratio of the allowed shapes of the two kinds'
    branches (module docstring)."""
    e = np.array([x for x, _ in nuc.beta_spectrum], dtype=np.float64)
    n = np.array([y for _, y in nuc.beta_spectrum], dtype=np.float64)
    ef, nf = _refine(e, n)
    zero = np.zeros_like(nf)
    if nuc.positron_yield <= 0.0:
        return ef, nf, zero
    if nuc.beta_yield <= 0.0:
        return ef, zero, nf
    if nuc.atomic_number <= 0:
        raise DataError(f"nuclide {nuc.name} (beta- and beta+ in one ICRP-107 spectrum, atomic number unknown): "
                        "expected the nuclide's Z to share the spectrum")
    shapes = []
    for branches, positron, zd in ((nuc.beta_branches, False, nuc.atomic_number + 1),
                                   (nuc.positron_branches, True, nuc.atomic_number - 1)):
        tot = np.zeros_like(ef)
        for mean, inten in branches:
            if mean <= 0.0 or inten <= 0.0:
                continue
            e0 = _allowed_endpoint(mean, zd, positron)
            grid = np.linspace(0.0, e0, 2001)[1:]
            norm = _trapz(allowed_beta_shape(grid, e0, zd, positron), grid)
            tot += inten * allowed_beta_shape(ef, e0, zd, positron) / norm
        shapes.append(tot)
    both = shapes[0] + shapes[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(both > 0.0, shapes[1] / both, 0.0)
    return ef, nf * (1.0 - r), nf * r


def check_emission_energies(name: str, emissions: dict) -> dict:
    """Refuse transported particles above _E_CEIL_MEV (InputError naming the nuclide); record
    the energy per decay above the tables' top (``above_table_mev_per_decay``) and warn when it
    exceeds ABOVE_TABLE_WARN_FRACTION of the transported energy (module docstring). Returns the
    dict."""
    e = np.asarray(emissions["line_energy_mev"], dtype=np.float64)
    y = np.asarray(emissions["line_yield"], dtype=np.float64)
    tops = [float(e.max()) if e.size else 0.0]
    above = float(np.sum(y[e > _E_MAX_MEV] * e[e > _E_MAX_MEV]))
    total = float(np.sum(y * e))
    for yk, ik in (("beta_yield", "beta_inv_cdf"), ("positron_yield", "positron_inv_cdf")):
        yld = float(emissions.get(yk, 0.0))
        if yld > 0.0:
            inv = np.asarray(emissions[ik], dtype=np.float64)
            mid = 0.5 * (inv[1:] + inv[:-1])
            tops.append(float(inv[-1]))
            above += yld * float(np.mean(np.where(mid > _E_MAX_MEV, mid, 0.0)))
            total += yld * float(np.mean(mid))
    emax = max(tops)
    if emax > _E_CEIL_MEV * (1 + 1e-9):
        raise InputError(
            f"nuclide {name} (emits {emax:.4g} MeV): expected emissions up to {_E_CEIL_MEV:g} MeV (rptdose's "
            f"physics tables end at {_E_MAX_MEV:g} MeV; particles up to {_E_CEIL_MEV:g} MeV are transported with "
            f"the {_E_MAX_MEV:g} MeV values)"
        )
    emissions["above_table_mev_per_decay"] = above
    if total > 0.0 and above > ABOVE_TABLE_WARN_FRACTION * total:
        import warnings

        warnings.warn(
            f"nuclide {name}: {1000 * above:.3g} keV per decay ({100 * above / total:.2g} % of the transported "
            f"energy) is emitted above {_E_MAX_MEV:g} MeV, where rptdose's physics tables end; those particles are "
            f"transported with the {_E_MAX_MEV:g} MeV cross sections (photon attenuation overstated by up to 17 % "
            "at 4 MeV, no pair production)", UserWarning, stacklevel=3)
    return emissions


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
            f"nuclide {stem} (emits {what}): not supported, rptdose transports electrons (beta-, beta+, "
            f"conversion, Auger), gamma and X rays and deposits alphas at the decay site "
            f"(e.g. Lu-177, Y-90, Ac-225, Ra-223, Ga-68)"
        )
    try:
        betas = tuple((float(e), float(y)) for e, y in emissions.get("beta-", []))
        positrons = tuple((float(e), float(y)) for e, y in emissions.get("beta+", []))
        spectrum = tuple((float(e), float(n)) for e, n in emissions.get("b-spectra", []))
        alphas = tuple((float(e), float(y)) for e, y in emissions.get("alpha", []))
        recoils = tuple((float(e), float(y)) for e, y in emissions.get("alpha recoil", []))
        annihilation = sum(float(y) for _, y in emissions.get("annihilation", []))
        lines = []
        for kind in LINE_KINDS:
            for e, y in emissions.get(kind, []):
                lines.append((float(e), float(y), kind))
    except (TypeError, ValueError) as exc:
        raise DataError(f"ICRP-107 file {path} (unreadable emissions: {exc}): reinstall icrp107-database") from exc
    beta_yield = sum(y for _, y in betas)
    beta_mean = sum(e * y for e, y in betas) / beta_yield if beta_yield > 0 else 0.0
    pos_yield = sum(y for _, y in positrons)
    pos_mean = sum(e * y for e, y in positrons) / pos_yield if pos_yield > 0 else 0.0
    if (beta_yield > 0 or pos_yield > 0) and len(spectrum) < 2:
        kinds = " and ".join(k for k, y in (("beta-", beta_yield), ("beta+", pos_yield)) if y > 0)
        raise InputError(
            f"nuclide {stem} (its ICRP-107 data list {kinds} emission, {beta_yield + pos_yield:.4g} per decay, "
            f"but no spectrum 'b-spectra'): expected a tabulated beta spectrum for the {kinds} particles; "
            "rptdose samples their energies from it"
        )
    if not (beta_yield or pos_yield):
        spectrum = ()
    return Nuclide(
        name=stem,
        half_life_s=half_life * _TIME_UNIT_S[unit],
        beta_yield=beta_yield,
        beta_mean_mev=beta_mean,
        beta_spectrum=spectrum,
        lines=tuple(lines),
        source=f"ICRP Publication 107 (Ann ICRP 38(3), 2008) via icrp107-database {icrp107_version()}",
        positron_yield=pos_yield,
        positron_mean_mev=pos_mean,
        alphas=alphas,
        recoils=recoils,
        annihilation_yield=annihilation,
        beta_branches=betas,
        positron_branches=positrons,
        atomic_number=_atomic_number(stem) if (beta_yield > 0 and pos_yield > 0) else 0,
    )


def _atomic_number(stem: str) -> int:
    """Z of a nuclide from its symbol ('Cu-64' -> 29), via xraylib."""
    import xraylib  # a dependency (photon cross sections)

    try:
        return int(xraylib.SymbolToAtomicNumber(stem.split("-")[0]))
    except (ValueError, RuntimeError) as exc:  # pragma: no cover - every ICRP-107 symbol is known
        raise DataError(f"nuclide {stem} (element symbol unknown to xraylib: {exc})") from None


def load_nuclide(name: str) -> Nuclide:
    """Load a nuclide's ICRP-107 decay data. Accepts 'Lu-177', 'Lu177', 'lu-177', '177Lu'."""
    return _load(_canonical_name(name))


def monoenergetic_emissions(kind: str, energy_mev: float, el_cut_mev: float = 0.01,
                            ph_cut_mev: float = 0.001) -> dict:
    """Emission dict (core contract) for one particle per decay of fixed energy.

    kind: 'electron', 'photon' or 'positron'; energy_mev in 0.001..3 MeV (a positron: 0..3 MeV,
    0 being a positron at rest). An electron or photon below its tracking cut is deposited
    locally (``local_mev_per_decay``); a positron is always handed to the core, which deposits
    its kinetic energy and makes the two annihilation photons where it stops.
    """
    k = str(kind).strip().lower() if isinstance(kind, str) else kind
    aliases = {"electron": 0, "e-": 0, "e": 0, "beta": 0, "photon": 1, "gamma": 1, "x": 1,
               "positron": 2, "e+": 2, "beta+": 2}
    if k not in aliases:
        raise InputError(f"kind={kind!r} (unknown): expected 'electron', 'photon' or 'positron'")
    try:
        e = float(energy_mev)
    except (TypeError, ValueError):
        raise InputError(f"energy_mev={energy_mev!r} (not a number): expected an energy in MeV") from None
    lowest = 0.0 if aliases[k] == 2 else _E_MIN_MEV
    if not (lowest <= e <= _E_MAX_MEV):
        raise InputError(
            f"energy_mev={energy_mev!r} (out of range): expected {lowest:g}..{_E_MAX_MEV:g} MeV"
        )
    el_cut_mev, ph_cut_mev = _check_cuts(el_cut_mev, ph_cut_mev)
    out = {
        "beta_yield": 0.0,
        "beta_inv_cdf": np.zeros(1, dtype=np.float64),
        "line_energy_mev": np.zeros(0, dtype=np.float64),
        "line_yield": np.zeros(0, dtype=np.float64),
        "line_is_photon": np.zeros(0, dtype=np.int32),
        "local_mev_per_decay": 0.0,
        "el_cut_mev": float(el_cut_mev),
        "ph_cut_mev": float(ph_cut_mev),
        "alpha_mev_per_decay": 0.0,
        "above_table_mev_per_decay": 0.0,
    }
    if aliases[k] == 2:
        out["positron_yield"] = 1.0
        out["positron_inv_cdf"] = np.array([e, e], dtype=np.float64)
        return out
    photon = aliases[k]
    cut = ph_cut_mev if photon else el_cut_mev
    if e >= cut:
        out["line_energy_mev"] = np.array([e], dtype=np.float64)
        out["line_yield"] = np.array([1.0], dtype=np.float64)
        out["line_is_photon"] = np.array([photon], dtype=np.int32)
    else:
        out["local_mev_per_decay"] = e
    return out
