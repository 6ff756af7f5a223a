"""Electron stopping powers, ranges and cross sections per material (docs/core_contract.md).

Collision stopping power: the Bethe formula for electrons with the density-effect correction,
as in ICRU Report 37 (1984), eq. 2.2 (Rohrlich-Carlson form), no shell correction (ICRU 37 and
NIST ESTAR use none for electrons). The restricted form (energy transfers W < W_cut) is the one
of Geant4's G4MollerBhabhaModel::ComputeDEDXPerVolume (Moller cross section integrated up to
W_cut); with W_cut = T/2 it reduces to the unrestricted ICRU 37 formula.

Density effect delta(X), X = log10(beta gamma): Sternheimer's parametrisation
    delta = 0                                        X < X0   (insulators; delta0 = 0 here)
    delta = 4.6052 X - Cbar + a (X1 - X)^m           X0 <= X < X1
    delta = 4.6052 X - Cbar                          X >= X1
with the parameters of Sternheimer, Berger & Seltzer, At Data Nucl Data Tables 30:261 (1984)
for the built-in NIST materials they tabulate (values as carried by Geant4's
G4DensityEffectData), scaled to the material's density by delta_rho(X) =
delta_rho0(X + 0.5 log10(rho/rho0)) (Sternheimer & Peierls, Phys Rev B 3:3681, 1971); and
otherwise the general Sternheimer-Peierls (1971) rules (as given in ICRU 37, Sect. 2.3):
Cbar = 2 ln(I/hbar omega_p) + 1, hbar omega_p = 28.816 sqrt(rho <Z/A>) eV, m = 3,
solids/liquids: I < 100 eV: X1 = 2, X0 = 0.2 (Cbar <= 3.681) else 0.326 Cbar - 1.0;
                I >= 100 eV: X1 = 3, X0 = 0.2 (Cbar <= 5.215) else 0.326 Cbar - 1.5;
gases: the Cbar-binned X0/X1 table of Sternheimer & Peierls; a = (Cbar - 4.6052 X0)/(X1 - X0)^m.

Radiative stopping power: unscreened Bethe-Heitler cross section in the Born approximation,
formula 3BN of Koch & Motz, Rev Mod Phys 31:920 (1959), integrated numerically over the photon
energy to the scaled radiative energy-loss cross section phi_rad(T) (16/3 in the
non-relativistic limit, 4 ln(2E/mc2) - 4/3 in the extreme-relativistic one: both reproduced), with
electron-electron bremsstrahlung approximated by Z^2 -> Z(Z+1):
    S_rad/rho = N_A alpha r_e^2 (T + mc2) phi_rad(T) sum_i w_i Z_i (Z_i + 1) / A_i.
Against NIST ESTAR water (3.898e-3, 4.228e-3, 7.257e-3 MeV cm2/g at 10, 100, 500 keV) this is
+4 %, +9 %, +13 % high: radiative loss is < 0.4 % of the total stopping power in tissue below
500 keV (< 1 % at 1 MeV), so the effect on the total is < 0.05 %. Bremsstrahlung photons are not
produced (the energy is deposited along the track, docs/core_contract.md).

Ranges: the CSDA range is the integral of 1/S_tot from 0 to E, on a grid 8x finer than the table
grid, with a power-law extrapolation of S below 1 keV (R(E0) = E0 / (S(E0) (1 + a)),
a = -dlnS/dlnE at E0).

Hard collisions: Moller cross section per gram for energy transfers W in (W_cut, T/2]
(Moller, Ann Phys 14:531, 1932; integrated form as in G4MollerBhabhaModel).

Elastic scattering: first transport cross section of screened Rutherford scattering,
    sigma_tr1 = 2 pi r_e^2 Z(Z+1) (mc2 / (p c beta))^2 [ln(1 + 1/eta) - 1/(1 + eta)],
with Moliere's screening parameter (Moliere, Z Naturforsch 2a:133, 1947)
    eta = 1.7e-5 Z^(2/3) (1.13 + 3.76 (alpha Z / beta)^2) / (tau (tau + 2)),
summed over the elements per gram (independent atoms; Z(Z+1) accounts for atomic electrons).

Units: MeV, cm2/g, MeV cm2/g, g/cm2.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence, Union

import numpy as np

from ..errors import InputError
from .materials import AVOGADRO, Material, atomic_weight, get_material

__all__ = [
    "MEC2_MEV",
    "collision_stopping_power",
    "radiative_stopping_power",
    "total_stopping_power",
    "csda_range",
    "moller_cross_section",
    "transport_cross_section",
    "density_effect",
    "density_effect_parameters",
    "phi_rad_born",
    "electron_tables",
]

MEC2_MEV = 0.51099895000  # electron rest energy (CODATA 2018)
R_E_CM = 2.8179403262e-13  # classical electron radius (CODATA 2018)
ALPHA = 7.2973525693e-3  # fine-structure constant (CODATA 2018)
TWOPI_RE2_MC2 = 2.0 * math.pi * R_E_CM**2 * MEC2_MEV  # MeV cm2 (per electron)
TWO_LN10 = 2.0 * math.log(10.0)  # 4.6052
_E_MIN_MEV, _E_MAX_MEV = 1e-3, 3.0

# Sternheimer, Berger & Seltzer, ADNDT 30:261 (1984): (Cbar = -C, X0, X1, a, m, delta0) and the
# density rho0 (g/cm3) they refer to, for the NIST compositions of the built-in library (values
# as in Geant4 G4DensityEffectData: G4_WATER, G4_AIR, G4_TISSUE_SOFT_ICRP, G4_ADIPOSE_TISSUE_ICRP,
# G4_MUSCLE_SCELETAL_ICRP, G4_LUNG_ICRP, G4_BONE_CORTICAL_ICRP). Applied only to a material with
# exactly the built-in composition and I value.
_STERNHEIMER_1984 = {
    "water": ((3.5017, 0.2400, 2.8004, 0.09116, 3.4773, 0.0), 1.0),
    "air": ((10.5961, 1.7418, 4.2759, 0.10914, 3.3994, 0.0), 1.20479e-3),
    "soft_tissue": ((3.4354, 0.2211, 2.7799, 0.08926, 3.5110, 0.0), 1.0),
    "adipose": ((3.2367, 0.1827, 2.6530, 0.10278, 3.4817, 0.0), 0.92),
    "muscle": ((3.4809, 0.2282, 2.7999, 0.08636, 3.5330, 0.0), 1.04),
    "lung": ((3.4708, 0.2261, 2.8001, 0.08588, 3.5353, 0.0), 1.05),
    "cortical_bone": ((3.6488, 0.1161, 3.0919, 0.06198, 3.5919, 0.0), 1.85),
}


def _energies(energy_mev) -> np.ndarray:
    e = np.atleast_1d(np.asarray(energy_mev, dtype=np.float64))
    if np.any(~np.isfinite(e)) or np.any(e <= 0.0):
        raise InputError("energy_mev (non-positive or not finite): expected kinetic energies > 0 MeV")
    return e


# ---------------------------------------------------------------- density effect

def density_effect_parameters(material: Union[Material, str]) -> dict:
    """Sternheimer density-effect parameters used for `material`.

    Returns {'cbar', 'x0', 'x1', 'a', 'm', 'delta0', 'x_shift', 'source'}; delta is evaluated at
    X + x_shift (the density scaling of tabulated parameters; 0 for the general rules).
    """
    from .materials import _LIBRARY  # the built-in definitions

    m = get_material(material)
    for name, (par, rho0) in _STERNHEIMER_1984.items():
        ref = _LIBRARY[name]
        if m.composition == ref.composition and m.i_ev == ref.i_ev:
            cbar, x0, x1, a, mm, d0 = par
            return {"cbar": cbar, "x0": x0, "x1": x1, "a": a, "m": mm, "delta0": d0,
                    "x_shift": 0.5 * math.log10(m.density_g_cm3 / rho0),
                    "source": f"Sternheimer, Berger & Seltzer 1984 ({name}, rho0 {rho0:g} g/cm3)"}
    hw_ev = 28.816 * math.sqrt(m.density_g_cm3 * m.z_over_a)  # plasma energy, eV
    cbar = 2.0 * math.log(m.i_ev / hw_ev) + 1.0
    if m.is_gas:
        if cbar < 10.0:
            x0, x1 = 1.6, 4.0
        elif cbar < 10.5:
            x0, x1 = 1.7, 4.0
        elif cbar < 11.0:
            x0, x1 = 1.8, 4.0
        elif cbar < 11.5:
            x0, x1 = 1.9, 4.0
        elif cbar < 12.25:
            x0, x1 = 2.0, 4.0
        elif cbar < 13.804:
            x0, x1 = 2.0, 5.0
        else:
            x0, x1 = 0.326 * cbar - 2.5, 5.0
    elif m.i_ev < 100.0:
        x1 = 2.0
        x0 = 0.2 if cbar <= 3.681 else 0.326 * cbar - 1.0
    else:
        x1 = 3.0
        x0 = 0.2 if cbar <= 5.215 else 0.326 * cbar - 1.5
    mm = 3.0
    a = (cbar - TWO_LN10 * x0) / (x1 - x0) ** mm
    return {"cbar": cbar, "x0": x0, "x1": x1, "a": a, "m": mm, "delta0": 0.0, "x_shift": 0.0,
            "source": "Sternheimer & Peierls 1971 general rules (ICRU 37)"}


def density_effect(material: Union[Material, str], energy_mev) -> np.ndarray:
    """Density-effect correction delta for electrons of kinetic energy `energy_mev`."""
    p = density_effect_parameters(material)
    t = _energies(energy_mev) / MEC2_MEV
    x = 0.5 * np.log10(t * (t + 2.0)) + p["x_shift"]  # log10(beta gamma)
    d = np.where(x >= p["x1"], TWO_LN10 * x - p["cbar"],
                 TWO_LN10 * x - p["cbar"] + p["a"] * np.clip(p["x1"] - x, 0.0, None) ** p["m"])
    below = x < p["x0"]
    if p["delta0"] > 0.0:
        d = np.where(below, p["delta0"] * 10.0 ** (2.0 * (x - p["x0"])), d)
    else:
        d = np.where(below, 0.0, d)
    return np.maximum(d, 0.0)


# ---------------------------------------------------------------- stopping powers

def _bethe_bracket(material: Material, e: np.ndarray, cut_mev) -> tuple[np.ndarray, np.ndarray]:
    """(bracket, beta2) of the restricted Bethe formula; S = 2 pi r_e^2 mc2 n_e / beta2 * bracket."""
    tau = e / MEC2_MEV
    gam = tau + 1.0
    g2 = gam * gam
    beta2 = tau * (tau + 2.0) / g2
    eexc2 = (material.i_ev * 1e-6 / MEC2_MEV) ** 2
    if cut_mev is None:
        d = 0.5 * tau
    else:
        d = np.minimum(float(cut_mev), 0.5 * e) / MEC2_MEV
    br = (np.log(2.0 * (tau + 2.0) / eexc2) - 1.0 - beta2 + np.log((tau - d) * d) + tau / (tau - d)
          + (0.5 * d * d + (2.0 * tau + 1.0) * np.log1p(-d / tau)) / g2)
    br = br - density_effect(material, e)
    return br, beta2


_BRACKET_MIN = 2.0  # below this the Bethe formula is outside its validity (low E, high I)


def collision_stopping_power(material: Union[Material, str], energy_mev, cut_mev: float | None = None) -> np.ndarray:
    """Mass collision stopping power (MeV cm2/g) for electrons; restricted to energy transfers
    below `cut_mev` if given. Where the Bethe bracket falls below 2 (only at the lowest energies
    in high-I materials, never for tissues above 1 keV) S is continued as S(E*) sqrt(E*/E)."""
    m = get_material(material)
    e = _energies(energy_mev)
    if cut_mev is not None and not float(cut_mev) > 0.0:
        raise InputError(f"cut_mev={cut_mev!r} (invalid): expected a Moller cut > 0 MeV")
    br, beta2 = _bethe_bracket(m, e, cut_mev)
    s = TWOPI_RE2_MC2 * m.electrons_per_gram / beta2 * br
    bad = br < _BRACKET_MIN
    if np.any(bad):
        # lowest energy above which the bracket is healthy, computed on a fixed fine grid
        eg = np.geomspace(1e-4, 0.1, 400)
        bg, b2g = _bethe_bracket(m, eg, cut_mev)
        ok = np.flatnonzero(bg >= _BRACKET_MIN)
        estar = eg[ok[0]] if ok.size else 0.1
        br_s, b2_s = _bethe_bracket(m, np.array([estar]), cut_mev)
        sstar = TWOPI_RE2_MC2 * m.electrons_per_gram / b2_s[0] * br_s[0]
        low = e < estar
        s = np.where(low, sstar * np.sqrt(estar / e), s)
    return s


_N_GL_BREMS = 256


@functools.lru_cache(maxsize=8)
def _gl_nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (x + 1.0), 0.5 * w


def phi_rad_born(energy_mev) -> np.ndarray:
    """Scaled radiative energy-loss cross section phi_rad(T) (unscreened Born, 3BN); cached."""
    e = np.ascontiguousarray(_energies(energy_mev))
    return _phi_rad_cached(e.tobytes()).copy()


@functools.lru_cache(maxsize=32)
def _phi_rad_cached(key: bytes) -> np.ndarray:
    return _phi_rad_born(np.frombuffer(key, dtype=np.float64))


def _phi_rad_born(energy_mev) -> np.ndarray:
    """Scaled radiative energy-loss cross section phi_rad(T) of the unscreened Born
    approximation (Koch & Motz 1959, 3BN), dimensionless: (1 / (alpha r_e^2 Z^2 E0)) * integral
    of k dsigma/dk over k from 0 to T (E0 total energy)."""
    t = _energies(energy_mev)[:, None] / MEC2_MEV  # kinetic energy, mc2 units
    s, w = _gl_nodes(_N_GL_BREMS)
    k = t * (3.0 * s * s - 2.0 * s**3)  # smooth at both ends
    dk = 6.0 * t * s * (1.0 - s)
    e0 = 1.0 + t
    e = e0 - k
    p0 = np.sqrt(e0 * e0 - 1.0)
    p = np.sqrt(np.maximum(e * e - 1.0, 1e-300))
    lg = 2.0 * np.log((e0 * e + p0 * p - 1.0) / k)
    eps0 = np.log((e0 + p0) / (e0 - p0))
    eps = np.log((e + p) / (e - p))
    pp0 = p * p * p0 * p0
    br = (4.0 / 3.0 - 2.0 * e0 * e * (p * p + p0 * p0) / pp0 + eps0 * e / p0**3 + eps * e0 / p**3
          - eps * eps0 / (p0 * p)
          + lg * (8.0 * e0 * e / (3.0 * p0 * p) + k * k * (e0 * e0 * e * e + pp0) / (p0**3 * p**3)
                  + k / (2.0 * p0 * p) * (eps0 * (e0 * e + p0 * p0) / p0**3
                                          - eps * (e0 * e + p * p) / p**3 + 2.0 * k * e0 * e / pp0)))
    integrand = (p / p0) * br * dk
    return np.sum(w * integrand, axis=1) / e0[:, 0]


def radiative_stopping_power(material: Union[Material, str], energy_mev) -> np.ndarray:
    """Mass radiative stopping power (MeV cm2/g); see the module notes for the approximation."""
    m = get_material(material)
    e = _energies(energy_mev)
    zz = sum(w * z * (z + 1.0) / atomic_weight(z) for z, w in m.composition)  # mol/g
    return AVOGADRO * ALPHA * R_E_CM**2 * zz * (e + MEC2_MEV) * phi_rad_born(e)


def total_stopping_power(material: Union[Material, str], energy_mev) -> np.ndarray:
    """Collision + radiative mass stopping power (MeV cm2/g)."""
    return collision_stopping_power(material, energy_mev) + radiative_stopping_power(material, energy_mev)


def _range_integral(e: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Integral of dE/S from 0 to each e (e increasing, log-spaced), power-law start."""
    a = -np.log(s[1] / s[0]) / np.log(e[1] / e[0])
    a = min(max(a, 0.0), 0.99)
    r0 = e[0] / (s[0] * (1.0 + a))
    f = e / s  # dE/S = (E/S) d lnE
    seg = 0.5 * (f[1:] + f[:-1]) * np.diff(np.log(e))
    return r0 + np.concatenate([[0.0], np.cumsum(seg)])


def csda_range(material: Union[Material, str], energy_mev) -> np.ndarray:
    """CSDA range (g/cm2): integral of 1/S_tot from 0 to E (E >= 1 keV)."""
    e = _energies(energy_mev)
    if np.any(e < _E_MIN_MEV * (1 - 1e-12)):
        raise InputError(f"energy_mev (min {e.min():g}): expected energies >= {_E_MIN_MEV:g} MeV")
    fine = np.geomspace(_E_MIN_MEV, max(float(e.max()), _E_MIN_MEV * 1.01), 4096)
    r = _range_integral(fine, total_stopping_power(material, fine))
    return np.exp(np.interp(np.log(e), np.log(fine), np.log(r)))


# ---------------------------------------------------------------- cross sections

def moller_cross_section(material: Union[Material, str], energy_mev, cut_mev: float) -> np.ndarray:
    """Moller cross section per gram (cm2/g) for energy transfers W in (cut_mev, T/2]; 0 where
    T <= 2 cut_mev."""
    m = get_material(material)
    e = _energies(energy_mev)
    cut = float(cut_mev)
    if not cut > 0.0:
        raise InputError(f"cut_mev={cut_mev!r} (invalid): expected a Moller cut > 0 MeV")
    out = np.zeros_like(e)
    ok = e > 2.0 * cut
    t = e[ok]
    xmin = cut / t
    xmax = 0.5
    tau = t / MEC2_MEV
    gam = tau + 1.0
    g2 = gam * gam
    beta2 = tau * (tau + 2.0) / g2
    gg = (2.0 * gam - 1.0) / g2
    cross = ((xmax - xmin) * (1.0 - gg + 1.0 / (xmin * xmax) + 1.0 / ((1.0 - xmin) * (1.0 - xmax)))
             - gg * np.log(xmax * (1.0 - xmin) / (xmin * (1.0 - xmax)))) / beta2
    out[ok] = cross * TWOPI_RE2_MC2 / t * m.electrons_per_gram
    return out


def transport_cross_section(material: Union[Material, str], energy_mev) -> np.ndarray:
    """First transport cross section per gram (cm2/g) of elastic scattering (screened
    Rutherford with Moliere's screening parameter)."""
    m = get_material(material)
    e = _energies(energy_mev)
    tau = e / MEC2_MEV
    bg2 = tau * (tau + 2.0)  # (beta gamma)^2 = (p/mc)^2
    beta2 = bg2 / (tau + 1.0) ** 2
    k2 = ((tau + 1.0) / bg2) ** 2  # (mc2 / (p c beta))^2
    out = np.zeros_like(e)
    for z, w in m.composition:
        eta = 1.7e-5 * z ** (2.0 / 3.0) * (1.13 + 3.76 * (ALPHA * z) ** 2 / beta2) / bg2
        sig = 2.0 * math.pi * R_E_CM**2 * z * (z + 1.0) * k2 * (np.log1p(1.0 / eta) - 1.0 / (1.0 + eta))
        out += AVOGADRO * w / atomic_weight(z) * sig
    return out


# ---------------------------------------------------------------- tables

_RANGE_REFINE = 8


def electron_tables(materials: Sequence[Union[Material, str]], energy_mev: np.ndarray,
                    el_wcc_mev: float = 0.01) -> dict:
    """Electron entries of the transport tables (docs/core_contract.md) on the energy grid."""
    mats = [get_material(m) for m in materials]
    e = np.ascontiguousarray(energy_mev, dtype=np.float64)
    try:
        wcc = float(el_wcc_mev)
    except (TypeError, ValueError):
        raise InputError(f"el_wcc_mev={el_wcc_mev!r} (not a number): expected a Moller cut in MeV") from None
    if not (1e-3 <= wcc <= 1.0):
        raise InputError(f"el_wcc_mev={el_wcc_mev!r} (out of range): expected 0.001..1 MeV")
    nm, ne = len(mats), e.size
    # fine grid for the range integrals: the table grid refined _RANGE_REFINE x in ln E
    le = np.log(e)
    t = np.linspace(0.0, 1.0, _RANGE_REFINE + 1)[:-1]
    fine = np.exp(np.concatenate([(le[:-1, None] + t[None, :] * np.diff(le)[:, None]).ravel(), le[-1:]]))
    idx = np.arange(ne) * _RANGE_REFINE
    out = {k: np.zeros((nm, ne)) for k in ("el_dedx_cont", "el_range_cont", "el_sigma_hard", "el_tr1", "el_csda_range")}
    for k, m in enumerate(mats):
        srad = radiative_stopping_power(m, fine)
        s_cont = collision_stopping_power(m, fine, cut_mev=wcc) + srad
        s_tot = collision_stopping_power(m, fine) + srad
        out["el_dedx_cont"][k] = s_cont[idx]
        out["el_range_cont"][k] = _range_integral(fine, s_cont)[idx]
        out["el_csda_range"][k] = _range_integral(fine, s_tot)[idx]
        out["el_sigma_hard"][k] = moller_cross_section(m, e, wcc)
        out["el_tr1"][k] = transport_cross_section(m, e)
    res = {"el_wcc_mev": wcc}
    res.update({k: np.ascontiguousarray(v) for k, v in out.items()})
    return res
