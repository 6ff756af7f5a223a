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
500 keV (< 1 % at 1 MeV), so the effect on the total is < 0.05 %. Radiative yield of water
(radiative_yield) against the yield from ESTAR's stopping powers: +5 %, +4 %, +2 %, +5 % at 100,
200, 300, 500 keV (tests/test_physics_brems.py). No Seltzer-Berger tables are on PyPI; 3BN is
the published analytical cross section used instead (Seltzer & Berger, At Data Nucl Data Tables
35:345, 1986, use it too, matched to their partial-wave results below 2 MeV).

Bremsstrahlung photons: the same 3BN cross section is split at k_c = BREMS_KC_MEV (10 keV).
Photons below k_c stay in the continuous loss (radiative_stopping_power_restricted, in
el_dedx_cont / el_range_cont); photons above are hard events with the number cross section
el_sigma_brems (brems_cross_section) whose energy the core draws from dk/k on [k_c, T] accepted
with X(T, k) / max X (brems_rejection_table: X = k dsigma/dk / (alpha r_e^2 Z^2) of 3BN, the
same for every material under the Z(Z+1) scaling), and whose direction it draws from the
Lorentz-boosted dipole distribution (csrc/physics/electron.hpp brems_emission); the photons are
transported. The split is exact: restricted + the energy-weighted hard part = S_rad (test).
Positrons use the electron's bremsstrahlung (positron bremsstrahlung is a few % lower).
Validation: validation/bremsstrahlung (the energy beyond the beta range of Y-90 and P-32).

Ranges: the CSDA range is the integral of 1/S_tot from 0 to E, on a grid 8x finer than the table
grid, with a power-law extrapolation of S below 1 keV (R(E0) = E0 / (S(E0) (1 + a)),
a = -dlnS/dlnE at E0).

Hard collisions: Moller cross section per gram for energy transfers W in (W_cut, T/2]
(Moller, Ann Phys 14:531, 1932; integrated form as in G4MollerBhabhaModel).

Elastic scattering: first transport cross section sigma_tr1 = int (1 - cos theta) dsigma of
screened Rutherford scattering, dsigma/dmu = pi r_e^2 k^2 / (mu + eta)^2 per unit charge
product, mu = (1 - cos theta)/2, k = mc2 / (p c beta), with Moliere's screening parameter
(Moliere, Z Naturforsch 2a:133, 1947)
    eta = 1.7e-5 Z^(2/3) (1.13 + 3.76 (alpha Z / beta)^2) / (tau (tau + 2)),
summed over the elements per gram (independent atoms), in two parts:
- nuclear (Z^2): multiplied by the McKinley-Feshbach ratio of the Mott to the Rutherford cross
  section, R(mu) = 1 - beta^2 mu + pi alpha Z beta (sqrt(mu) - mu) (McKinley & Feshbach, Phys
  Rev 74:1759, 1948; the spin-relativistic correction, first order in alpha Z: good for the
  Z <= 20 of tissues; not applied above Z = MOTT_Z_MAX = 30, where the expansion fails and
  plain screened Rutherford is kept), integrated in closed form:
      sigma_n = 2 pi r_e^2 Z^2 k^2 [I0 - beta^2 I1 + pi alpha Z beta (Ih - I1)],
      I0 = ln(1 + 1/eta) - 1/(1 + eta),   I1 = 1 - 2 eta ln(1 + 1/eta) + eta/(1 + eta),
      Ih = 2 [1 - 1.5 sqrt(eta) atan(1/sqrt(eta)) + eta / (2 (1 + eta))];
  at 1 MeV in water this is 7 % below the plain screened Rutherford value, at 100 keV 3 %.
- atomic electrons (Z): screened Rutherford up to the deflection mu_c of the primary in a
  Moller collision that transfers the hard-collision cut W_c (or T/2 below 2 W_c),
      cos theta_c = sqrt((T - W_c)(T + 2 mc2) / (T (T - W_c + 2 mc2))),
      sigma_e = 2 pi r_e^2 Z k^2 [ln((mu_c + eta)/eta) - mu_c/(mu_c + eta)];
  harder electron-electron deflections come from the explicit Moller events (the primary is
  deflected by momentum conservation), so counting them here too would double them. This is
  the knock-on correction of the scattering power used with condensed history codes that
  simulate hard delta rays (Kawrakow, Med Phys 24:505, 1997; Geant4's Goudsmit-Saunderson
  model: Novak, Geant4 technical note, 2018).
Without a cut (transport_cross_section(m, E)) the electronic part runs to mu = 1, i.e. the
usual Z(Z+1) screened Rutherford form with the Mott factor on Z^2.

Mixed (class II) elastic scattering, as in PENELOPE (Baro et al., NIM B 100:31, 1995; Salvat,
PENELOPE-2018 manual, sect. 4.1): deflections with mu above a cut-off mu_c are simulated one by
one ("hard" elastic events, mean free path lambda_h = C1 lambda_1 with C1 = ELASTIC_C1), the
softer ones are lumped into one multiple-scattering deflection per step whose first moment is
the soft part of sigma_tr1. A single Wentzel distribution matched to the whole first moment of
a step has the right mean but far too many large-angle deflections and too few small ones (its
screening A is much larger than the atoms' eta), which broadens dose point kernels (energy
pulled towards the source, and the rest carried too far). The hard events are sampled from the
nuclear part of the cross section written with effective parameters per material,
    dsigma_h/dmu = pi r_e^2 k^2 N_A sum_i (w_i Z_i^2 / A_i) R(mu; Z_eff) / (mu + eta_eff)^2,
eta_eff and Z_eff the Z^2-weighted means of the elements' eta and Z; the soft first transport
cross section is the exact total (above) minus the first moment of this hard part, so the
first moment per path length is exact whatever the split.

Positrons (``particle="positron"``, the ``pos_*`` tables): what differs from electrons is
modelled where it matters for the dose: the collision stopping power uses the Bhabha cross
section (ICRU 37's positron function F+(tau); +10 % at 10 keV, +4 % at 100 keV, -1 % at 500 keV,
-2 % at 1 MeV against the electron's in water), restricted below the same cut in the form of
G4MollerBhabhaModel, and the hard collisions above it are Bhabha events in which the positron can
give the atomic electron all its energy (:func:`bhabha_cross_section`). Approximated: the
radiative stopping power is the electron's (positron bremsstrahlung is a few % lower, < 0.02 %
of the total loss in tissue below 1 MeV), elastic scattering uses the electron's cross sections
(the McKinley-Feshbach factor of a positron has the opposite sign of its pi alpha Z beta term:
at most ~5 % of the large-angle cross section in tissue), annihilation in flight is not
simulated (Heitler's cross section along the CSDA path in water: 0.8 % of 250 keV positrons,
F-18's mean, and 3 % at 830 keV, Ga-68's, annihilate before they stop, sending T + 1.022 MeV
as photons instead of depositing T and emitting 1.022 MeV at the end of the track), and
at rest a positron always annihilates into two back-to-back 511 keV photons (positronium's
three-photon decay and the 0.5 degree acollinearity neglected; csrc/physics/electron.hpp).

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
    "radiative_stopping_power", "radiative_stopping_power_restricted", "brems_cross_section",
    "brems_rejection_table", "radiative_yield", "BREMS_KC_MEV",
    "total_stopping_power",
    "csda_range",
    "moller_cross_section",
    "bhabha_cross_section",
    "transport_cross_section",
    "hard_elastic_parameters",
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


def _bethe_bracket_positron(material: Material, e: np.ndarray, cut_mev) -> tuple[np.ndarray, np.ndarray]:
    """(bracket, beta2) of the restricted Bethe formula for positrons: the Bhabha cross section
    integrated up to the cut (the positron can lose all its energy, so the cut is min(W_cut, T));
    the form of Geant4's G4MollerBhabhaModel::ComputeDEDXPerVolume. Unrestricted (cut = T) it is
    the ICRU 37 positron formula with F+(tau) = 2 ln 2 - (beta^2/12) [23 + 14/(tau+2) +
    10/(tau+2)^2 + 4/(tau+2)^3] (ICRU Report 37, eq. 2.2 with 2.5), checked in the tests."""
    tau = e / MEC2_MEV
    gam = tau + 1.0
    beta2 = tau * (tau + 2.0) / (gam * gam)
    eexc2 = (material.i_ev * 1e-6 / MEC2_MEV) ** 2
    d = tau if cut_mev is None else np.minimum(float(cut_mev), e) / MEC2_MEV
    d2 = 0.5 * d * d
    d3 = d2 * d / 1.5
    d4 = d3 * d * 0.75
    y = 1.0 / (1.0 + gam)
    br = (np.log(2.0 * (tau + 2.0) / eexc2) + np.log(tau * d)
          - beta2 * (tau + 2.0 * d - y * (3.0 * d2 + y * (d - d3 + y * (d2 - tau * d3 + d4)))) / tau)
    br = br - density_effect(material, e)
    return br, beta2


_BRACKET_MIN = 2.0  # below this the Bethe formula is outside its validity (low E, high I)


def collision_stopping_power(material: Union[Material, str], energy_mev, cut_mev: float | None = None,
                             particle: str = "electron") -> np.ndarray:
    """Mass collision stopping power (MeV cm2/g) for electrons (or ``particle="positron"``);
    restricted to energy transfers below `cut_mev` if given. Where the Bethe bracket falls below 2
    (only at the lowest energies in high-I materials, never for tissues above 1 keV) S is
    continued as S(E*) sqrt(E*/E)."""
    m = get_material(material)
    e = _energies(energy_mev)
    if cut_mev is not None and not float(cut_mev) > 0.0:
        raise InputError(f"cut_mev={cut_mev!r} (invalid): expected a Moller cut > 0 MeV")
    if particle not in ("electron", "positron"):
        raise InputError(f"particle={particle!r} (unknown): expected 'electron' or 'positron'")
    bracket = _bethe_bracket if particle == "electron" else _bethe_bracket_positron
    br, beta2 = bracket(m, e, cut_mev)
    s = TWOPI_RE2_MC2 * m.electrons_per_gram / beta2 * br
    bad = br < _BRACKET_MIN
    if np.any(bad):
        # lowest energy above which the bracket is healthy, computed on a fixed fine grid
        eg = np.geomspace(1e-4, 0.1, 400)
        bg, b2g = bracket(m, eg, cut_mev)
        ok = np.flatnonzero(bg >= _BRACKET_MIN)
        estar = eg[ok[0]] if ok.size else 0.1
        br_s, b2_s = bracket(m, np.array([estar]), cut_mev)
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


def _x_3bn(t, k):
    """Scaled bremsstrahlung cross section of formula 3BN (Koch & Motz, Rev Mod Phys 31:920, 1959;
    unscreened, Born approximation): X = k dsigma/dk / (alpha r_e^2 Z^2), dimensionless, for an
    electron of kinetic energy t emitting a photon of energy k (both in mc2 units, 0 < k < t)."""
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
    return (p / p0) * br


def _phi_rad_born(energy_mev) -> np.ndarray:
    """Scaled radiative energy-loss cross section phi_rad(T) of the unscreened Born
    approximation (Koch & Motz 1959, 3BN), dimensionless: (1 / (alpha r_e^2 Z^2 E0)) * integral
    of k dsigma/dk over k from 0 to T (E0 total energy)."""
    t = _energies(energy_mev)[:, None] / MEC2_MEV  # kinetic energy, mc2 units
    s, w = _gl_nodes(_N_GL_BREMS)
    k = t * (3.0 * s * s - 2.0 * s**3)  # smooth at both ends
    dk = 6.0 * t * s * (1.0 - s)
    e0 = 1.0 + t
    integrand = _x_3bn(t, k) * dk
    return np.sum(w * integrand, axis=1) / e0[:, 0]


def radiative_stopping_power(material: Union[Material, str], energy_mev) -> np.ndarray:
    """Mass radiative stopping power (MeV cm2/g); see the module notes for the approximation."""
    m = get_material(material)
    e = _energies(energy_mev)
    return AVOGADRO * ALPHA * R_E_CM**2 * _zz_per_gram(m) * (e + MEC2_MEV) * phi_rad_born(e)


#: Bremsstrahlung photon cut k_c (MeV): photons above it are produced one by one (hard events
#: of cross section el_sigma_brems) and transported; the radiative loss below it stays in the
#: continuous stopping power. 10 keV: the lowest photon tracking cut allowed by default in
#: rptdose (a softer photon would be absorbed within ~0.2 mm of water anyway).
BREMS_KC_MEV = 0.010
#: points of the photon-energy rejection table per energy, uniform in u = ln(k/k_c)/ln(T/k_c)
BREMS_NU = 64


def _zz_per_gram(m: Material) -> float:
    return sum(w * z * (z + 1.0) / atomic_weight(z) for z, w in m.composition)  # mol/g


def _brems_integrals(energy_mev, kc_mev: float):
    """Per Z(Z+1) N_A alpha r_e^2 (cm2 units): (soft, hard_number, hard_energy) =
    (mc2 int_0^min(kc,T) X dk, int_kc^T X dk/k, mc2 int_kc^T X dk) with k in mc2 units, X = _x_3bn."""
    t = _energies(energy_mev)[:, None] / MEC2_MEV
    kc = kc_mev / MEC2_MEV
    s, w = _gl_nodes(_N_GL_BREMS)
    a = np.minimum(kc, t)
    k = a * (3.0 * s * s - 2.0 * s**3)
    dk = 6.0 * a * s * (1.0 - s)
    soft = np.sum(w * _x_3bn(t, k) * dk, axis=1) * MEC2_MEV
    hard_n = np.zeros(t.shape[0])
    hard_e = np.zeros(t.shape[0])
    above = t[:, 0] > kc
    if np.any(above):
        th = t[above]
        # ln k from ln kc to ln T, smooth at the tip (X ~ p there)
        lk0, lk1 = np.log(kc), np.log(th)
        u = 1.0 - (1.0 - s) ** 2
        du = 2.0 * (1.0 - s)
        lk = lk0 + (lk1 - lk0) * u
        kk = np.exp(lk)
        x = _x_3bn(th, kk)
        hard_n[above] = np.sum(w * x * du * (lk1 - lk0), axis=1)
        hard_e[above] = np.sum(w * x * kk * du * (lk1 - lk0), axis=1) * MEC2_MEV
    return soft, hard_n, hard_e


def radiative_stopping_power_restricted(material: Union[Material, str], energy_mev,
                                        kc_mev: float = BREMS_KC_MEV) -> np.ndarray:
    """Mass radiative stopping power for photons below k_c (MeV cm2/g), the continuous part when
    harder photons are produced explicitly (same 3BN cross section as radiative_stopping_power)."""
    m = get_material(material)
    soft, _, _ = _brems_integrals(energy_mev, kc_mev)
    return AVOGADRO * ALPHA * R_E_CM**2 * _zz_per_gram(m) * soft


def brems_cross_section(material: Union[Material, str], energy_mev, kc_mev: float = BREMS_KC_MEV) -> np.ndarray:
    """Cross section per gram (cm2/g) for emitting a bremsstrahlung photon above k_c (3BN, Z(Z+1))."""
    m = get_material(material)
    _, hard_n, _ = _brems_integrals(energy_mev, kc_mev)
    return AVOGADRO * ALPHA * R_E_CM**2 * _zz_per_gram(m) * hard_n


def brems_rejection_table(energy_mev, kc_mev: float = BREMS_KC_MEV, nu: int = BREMS_NU) -> np.ndarray:
    """[NE, nu] X(T, k) / max_k X(T, k) at k = k_c (T/k_c)^u, u = linspace(0, 1, nu): the photon
    energy is drawn from dk/k on [k_c, T] (u uniform) and accepted with this ratio (interpolated
    linearly in u and ln T). The 3BN shape with the Z(Z+1) scaling does not depend on the
    material. Rows with T <= k_c are 0 (no hard photons)."""
    e = _energies(energy_mev)
    out = np.zeros((e.size, nu))
    u = np.linspace(0.0, 1.0, nu)
    for i, ei in enumerate(e):
        if ei <= kc_mev:
            continue
        t = ei / MEC2_MEV
        k = (kc_mev / MEC2_MEV) * (t / (kc_mev / MEC2_MEV)) ** u
        k[-1] = t * (1.0 - 1e-12)
        x = np.maximum(_x_3bn(np.full(nu, t), k), 0.0)
        out[i] = x / x.max()
    return out


def radiative_yield(material: Union[Material, str], energy_mev) -> np.ndarray:
    """Radiative yield Y(T): fraction of an electron's kinetic energy T emitted as bremsstrahlung
    while it slows down to rest in CSDA, (1/T) int_0^T S_rad/S_tot dE (ICRU 37 eq. 2.24; ESTAR's
    'radiation yield')."""
    m = get_material(material)
    e = _energies(energy_mev)
    fine = np.exp(np.linspace(np.log(1e-4), np.log(max(e.max(), 1e-3)), 4000))
    srad = radiative_stopping_power(m, fine)
    f = srad / (collision_stopping_power(m, fine) + srad)
    cum = np.concatenate([[f[0] * fine[0]], f[0] * fine[0]
                          + np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(fine))])
    return np.interp(e, fine, cum) / e


def total_stopping_power(material: Union[Material, str], energy_mev, particle: str = "electron") -> np.ndarray:
    """Collision + radiative mass stopping power (MeV cm2/g); the radiative part is the
    electron's for positrons too (module docstring: positrons)."""
    return (collision_stopping_power(material, energy_mev, particle=particle)
            + radiative_stopping_power(material, energy_mev))


def _range_integral(e: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Integral of dE/S from 0 to each e (e increasing, log-spaced), power-law start."""
    a = -np.log(s[1] / s[0]) / np.log(e[1] / e[0])
    a = min(max(a, 0.0), 0.99)
    r0 = e[0] / (s[0] * (1.0 + a))
    f = e / s  # dE/S = (E/S) d lnE
    seg = 0.5 * (f[1:] + f[:-1]) * np.diff(np.log(e))
    return r0 + np.concatenate([[0.0], np.cumsum(seg)])


def csda_range(material: Union[Material, str], energy_mev, particle: str = "electron") -> np.ndarray:
    """CSDA range (g/cm2): integral of 1/S_tot from 0 to E (E >= 1 keV) of electrons or positrons."""
    e = _energies(energy_mev)
    if np.any(e < _E_MIN_MEV * (1 - 1e-12)):
        raise InputError(f"energy_mev (min {e.min():g}): expected energies >= {_E_MIN_MEV:g} MeV")
    fine = np.geomspace(_E_MIN_MEV, max(float(e.max()), _E_MIN_MEV * 1.01), 4096)
    r = _range_integral(fine, total_stopping_power(material, fine, particle=particle))
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


def bhabha_cross_section(material: Union[Material, str], energy_mev, cut_mev: float) -> np.ndarray:
    """Bhabha cross section per gram (cm2/g) of a positron for energy transfers W to an atomic
    electron in (cut_mev, T] (Bhabha, Proc R Soc A 154:195, 1936; integrated form as in
    G4MollerBhabhaModel::ComputeCrossSectionPerElectron); 0 where T <= cut_mev."""
    m = get_material(material)
    e = _energies(energy_mev)
    cut = float(cut_mev)
    if not cut > 0.0:
        raise InputError(f"cut_mev={cut_mev!r} (invalid): expected a Bhabha cut > 0 MeV")
    out = np.zeros_like(e)
    ok = e > cut
    t = e[ok]
    xmin = cut / t
    xmax = 1.0
    tau = t / MEC2_MEV
    gam = tau + 1.0
    beta2 = tau * (tau + 2.0) / (gam * gam)
    y = 1.0 / (1.0 + gam)
    y2 = y * y
    y12 = 1.0 - 2.0 * y
    b1 = 2.0 - y2
    b2 = y12 * (3.0 + y2)
    y122 = y12 * y12
    b4 = y122 * y12
    b3 = b4 + y122
    cross = ((xmax - xmin) * (1.0 / (beta2 * xmin * xmax) + b2 - 0.5 * b3 * (xmin + xmax)
                              + b4 * (xmin * xmin + xmin * xmax + xmax * xmax) / 3.0)
             - b1 * np.log(xmax / xmin))
    out[ok] = cross * TWOPI_RE2_MC2 / t * m.electrons_per_gram
    return out


def _elastic_kinematics(e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(beta gamma)^2, beta^2, beta and k^2 = (mc2 / (p c beta))^2 of electrons of energy e (MeV)."""
    tau = e / MEC2_MEV
    bg2 = tau * (tau + 2.0)  # (beta gamma)^2 = (p/mc)^2
    beta2 = bg2 / (tau + 1.0) ** 2
    return bg2, beta2, np.sqrt(beta2), ((tau + 1.0) / bg2) ** 2


def _moliere_eta(z: float, bg2: np.ndarray, beta2: np.ndarray) -> np.ndarray:
    """Moliere's screening parameter of element z (module docstring)."""
    return 1.7e-5 * z ** (2.0 / 3.0) * (1.13 + 3.76 * (ALPHA * z) ** 2 / beta2) / bg2


def transport_cross_section(material: Union[Material, str], energy_mev, cut_mev: float | None = None) -> np.ndarray:
    """First transport cross section per gram (cm2/g) of elastic scattering: screened
    Rutherford with Moliere's screening, the McKinley-Feshbach Mott factor on the nuclear part;
    with ``cut_mev`` (the hard Moller cut) the electronic part is limited to the deflections of
    energy transfers below the cut (module docstring)."""
    m = get_material(material)
    e = _energies(energy_mev)
    bg2, beta2, beta, k2 = _elastic_kinematics(e)
    if cut_mev is None:
        mu_c = np.ones_like(e)
    else:
        w = np.minimum(float(cut_mev), 0.5 * e)
        cos_c = np.sqrt((e - w) * (e + 2.0 * MEC2_MEV) / (e * (e - w + 2.0 * MEC2_MEV)))
        mu_c = np.clip(0.5 * (1.0 - cos_c), 0.0, 1.0)
    out = np.zeros_like(e)
    for z, wz in m.composition:
        eta = _moliere_eta(z, bg2, beta2)
        mf = 1.0 if z <= MOTT_Z_MAX else 0.0  # the McKinley-Feshbach factor only where it holds
        l1 = np.log1p(1.0 / eta)
        i0 = l1 - 1.0 / (1.0 + eta)
        i1 = 1.0 - 2.0 * eta * l1 + eta / (1.0 + eta)
        se = np.sqrt(eta)
        ih = 2.0 * (1.0 - 1.5 * se * np.arctan(1.0 / se) + eta / (2.0 * (1.0 + eta)))
        nuclear = z * z * (i0 - mf * (beta2 * i1 - math.pi * ALPHA * z * beta * (ih - i1)))
        electronic = z * (np.log((mu_c + eta) / eta) - mu_c / (mu_c + eta))
        sig = 2.0 * math.pi * R_E_CM**2 * k2 * (nuclear + electronic)
        out += AVOGADRO * wz / atomic_weight(z) * sig
    return out


#: Highest atomic number to which the McKinley-Feshbach Mott factor (first order in alpha Z)
#: is applied; heavier elements (metal bins of a CT calibration) keep screened Rutherford.
MOTT_Z_MAX = 30

#: PENELOPE's C1: hard elastic mean free path = C1 x first transport mean free path. 0.2 is the
#: largest value PENELOPE accepts (PEINIT: C1 = min(0.2, C1)). The core integrates the energy
#: dependence of the cross sections along each step (csrc/physics/electron.hpp), and with it
#: the water kernels of validation/dpk_water agree between C1 = 0.05 and 0.2 within their
#: statistics (100 keV, 500 keV, 1 MeV), at 1.5 times the speed.
ELASTIC_C1 = 0.2

_MU_GRID = np.concatenate([[0.0], np.geomspace(1e-12, 1.0, 4001)])


def hard_elastic_parameters(material: Union[Material, str], energy_mev, cut_mev: float | None = None,
                            c1: float = ELASTIC_C1) -> dict:
    """Tables of the hard elastic events (module docstring), per gram, on ``energy_mev``:
    ``sigma`` (cm2/g, the hard-event cross section), ``inv_lo`` = 1/(mu_c + eta_eff),
    ``inv_hi`` = 1/(1 + eta_eff), ``eta`` = eta_eff, ``mott_b`` (beta^2 times the Z^2-weight of the
    elements with Z <= MOTT_Z_MAX) and ``mott_c`` (pi alpha beta times their Z^3-weight over the
    Z^2-weight) (the sampling density is (1 - mott_b mu + mott_c (sqrt(mu) - mu)) / (mu + eta)^2
    on [mu_c, 1]),
    ``tr1_soft`` (cm2/g, the first transport cross section left to the soft deflections) and
    ``mu_c``."""
    m = get_material(material)
    e = _energies(energy_mev)
    if not (0.0 < c1 < 1.0):
        raise InputError(f"c1={c1!r} (out of range): expected 0 < C1 < 1")
    bg2, beta2, beta, k2 = _elastic_kinematics(e)
    wz2 = np.array([w / atomic_weight(z) * z * z for z, w in m.composition])
    zs = np.array([float(z) for z, _ in m.composition])
    eta_z = np.array([_moliere_eta(z, bg2, beta2) for z in zs])  # [n_el, n_e]
    eta = (wz2[:, None] * eta_z).sum(axis=0) / wz2.sum()
    # Mott factor of the mixture, Z^2-weighted over its elements (R = 1 for Z > MOTT_Z_MAX):
    # R(mu) = 1 - mott_b mu + mott_c (sqrt(mu) - mu)
    light = zs <= MOTT_Z_MAX
    f_light = float(wz2[light].sum() / wz2.sum())
    mott_b = f_light * beta2
    mott_c = math.pi * ALPHA * beta * float((wz2 * zs * light).sum() / wz2.sum())
    amp = math.pi * R_E_CM**2 * AVOGADRO * wz2.sum() * k2  # cm2/g per unit of the shape below
    tr1_total = transport_cross_section(m, e, cut_mev=cut_mev)
    mu = _MU_GRID
    out = {k: np.zeros_like(e) for k in ("sigma", "inv_lo", "inv_hi", "eta", "mott_b", "mott_c", "tr1_soft",
                                         "mu_c")}
    for j in range(e.size):
        f = amp[j] * (1.0 - mott_b[j] * mu + mott_c[j] * (np.sqrt(mu) - mu)) / (mu + eta[j]) ** 2
        # tails from mu to 1: cross section and first moment (2 mu) of the hard part
        seg = 0.5 * (f[1:] + f[:-1]) * np.diff(mu)
        seg1 = 0.5 * (2 * mu[1:] * f[1:] + 2 * mu[:-1] * f[:-1]) * np.diff(mu)
        tail = np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]])
        tail1 = np.concatenate([np.cumsum(seg1[::-1])[::-1], [0.0]])
        target = tr1_total[j] / c1  # 1 / lambda_h per gram
        if target >= tail[0]:
            mu_c = 0.0  # every nuclear deflection is a hard event
            hard1 = tail1[0]
        else:
            # tail is decreasing in mu: interpolate in ln(tail) for the mu where tail = target
            i = int(np.searchsorted(-tail, -target))  # first index with tail <= target
            i = min(max(i, 1), mu.size - 1)
            t0, t1 = tail[i - 1], tail[i]
            frac = (math.log(t0) - math.log(target)) / (math.log(t0) - math.log(t1)) if t1 > 0 else 0.0
            mu_c = float(mu[i - 1] + frac * (mu[i] - mu[i - 1]))
            hard1 = float(tail1[i - 1] + frac * (tail1[i] - tail1[i - 1]))
        # exact cross section of the sampled density on [mu_c, 1] (the sampler's normalisation)
        sig = float(np.interp(mu_c, mu, tail)) if mu_c > 0.0 else float(tail[0])
        out["sigma"][j] = sig
        out["mu_c"][j] = mu_c
        out["inv_lo"][j] = 1.0 / (mu_c + eta[j])
        out["inv_hi"][j] = 1.0 / (1.0 + eta[j])
        out["eta"][j] = eta[j]
        out["mott_b"][j] = mott_b[j]
        out["mott_c"][j] = mott_c[j]
        out["tr1_soft"][j] = max(tr1_total[j] - hard1, 0.0)
    return out


# ---------------------------------------------------------------- tables

_RANGE_REFINE = 8


def electron_tables(materials: Sequence[Union[Material, str]], energy_mev: np.ndarray,
                    el_wcc_mev: float = 0.002, brems_kc_mev: float = BREMS_KC_MEV) -> dict:
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
    out = {k: np.zeros((nm, ne)) for k in ("el_dedx_cont", "el_range_cont", "el_sigma_hard", "el_tr1",
                                            "el_csda_range", "el_sigma_el", "el_el_inv_lo", "el_el_inv_hi",
                                            "el_el_eta", "el_mott_b", "el_mott_c", "pos_dedx_cont",
                                            "pos_range_cont", "pos_sigma_hard", "pos_csda_range",
                                            "el_sigma_brems")}
    for k, m in enumerate(mats):
        srad = radiative_stopping_power(m, fine)
        srad_soft = radiative_stopping_power_restricted(m, fine, brems_kc_mev)  # harder: photons
        s_cont = collision_stopping_power(m, fine, cut_mev=wcc) + srad_soft
        s_tot = collision_stopping_power(m, fine) + srad
        out["el_dedx_cont"][k] = s_cont[idx]
        out["el_range_cont"][k] = _range_integral(fine, s_cont)[idx]
        out["el_csda_range"][k] = _range_integral(fine, s_tot)[idx]
        out["el_sigma_hard"][k] = moller_cross_section(m, e, wcc)
        # positrons: Bhabha instead of Moller (restricted stopping power and hard collisions);
        # radiative loss and elastic scattering are the electron's (module docstring)
        p_cont = collision_stopping_power(m, fine, cut_mev=wcc, particle="positron") + srad_soft
        p_tot = collision_stopping_power(m, fine, particle="positron") + srad
        out["pos_dedx_cont"][k] = p_cont[idx]
        out["pos_range_cont"][k] = _range_integral(fine, p_cont)[idx]
        out["pos_csda_range"][k] = _range_integral(fine, p_tot)[idx]
        out["pos_sigma_hard"][k] = bhabha_cross_section(m, e, wcc)
        out["el_sigma_brems"][k] = brems_cross_section(m, e, brems_kc_mev)
        hel = hard_elastic_parameters(m, e, cut_mev=wcc)
        out["el_tr1"][k] = hel["tr1_soft"]
        out["el_sigma_el"][k] = hel["sigma"]
        out["el_el_inv_lo"][k] = hel["inv_lo"]
        out["el_el_inv_hi"][k] = hel["inv_hi"]
        out["el_el_eta"][k] = hel["eta"]
        out["el_mott_b"][k] = hel["mott_b"]
        out["el_mott_c"][k] = hel["mott_c"]
    res = {"el_wcc_mev": wcc, "el_brems_kc_mev": float(brems_kc_mev),
           "el_brems_rej": np.ascontiguousarray(brems_rejection_table(e, brems_kc_mev))}
    res.update({k: np.ascontiguousarray(v) for k, v in out.items()})
    return res
