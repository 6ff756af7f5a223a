"""Photon interaction data per material (docs/core_contract.md, "Photon tables").

Source: xraylib (Schoonjans et al., Spectrochim Acta B 66:776, 2011; 63:1, 2021), whose
photoelectric (CS_Photo), incoherent (CS_Compt, Klein-Nishina with the incoherent scattering
function) and coherent (CS_Rayl, form factor) cross sections are splines of the EPDL97 /
Hubbell-type data up to 800 keV. Per element they are converted to cross sections per atom with
xraylib's own atomic weight and back to per gram with the standard atomic weight
(:func:`rptdose.physics.materials.atomic_weight`), then mixed by mass fraction.

Above 800 keV, where xraylib refuses to extrapolate:
* incoherent: Z x Klein-Nishina per electron (Klein & Nishina, Z Phys 52:853, 1929; e.g. Attix,
  "Introduction to Radiological Physics and Radiation Dosimetry", 1986, eq. 7.9) times a binding
  factor 1 - (1 - r) * 0.8 MeV / E, r = xraylib / (Z x KN) at 800 keV (0.994..1.000 for Z <= 50),
  which makes the table continuous at 800 keV and tends to pure Klein-Nishina;
* photoelectric and coherent: log-log extrapolation from 700 and 800 keV.
Pair production (threshold 1.022 MeV) is not modelled: < 1 % of mu in tissue below 1.5 MeV.
xraylib's CS_Energy (mu_en) is deliberately not used (wrong at low energy).

Angular sampling data:
* incoherent scattering function S(x, Z) from xraylib SF_Compt, x = sin(theta/2)/lambda (1/A);
  per material S_mat/Z_mat with atoms-per-gram weighting;
* atomic form factor F(x, Z) from xraylib FF_Rayl; per material F_mat^2 = sum_i n_i F_i^2
  (n_i atoms per gram, independent-atom approximation) and its cumulative integral over x^2.

Units: MeV, cm2/g, x in 1/Angstrom.
"""

from __future__ import annotations

import functools
from typing import Sequence, Union

import numpy as np

from ..errors import DataError, InputError
from .materials import AVOGADRO, Material, atomic_weight, get_material

__all__ = [
    "XRAYLIB_E_MAX_MEV",
    "HC_KEV_ANGSTROM",
    "NX_SF",
    "NX2_COH",
    "SF_X_MIN",
    "SF_X_MAX",
    "klein_nishina_cm2",
    "element_mass_coefficients",
    "mass_attenuation",
    "photon_tables",
    "coh_x2_grid",
    "xraylib_version",
]

XRAYLIB_E_MAX_MEV = 0.8  # xraylib's splines end at 800 keV
_E_EXTRAP_LO_MEV = 0.7  # second point of the log-log extrapolation above 800 keV
MEC2_MEV = 0.51099895000  # electron rest energy (CODATA 2018)
R_E_CM = 2.8179403262e-13  # classical electron radius (CODATA 2018)
HC_KEV_ANGSTROM = 12.398419843320026  # h c in keV Angstrom (CODATA 2018, exact)
NX_SF = 256  # points of the incoherent scattering function table (contract)
NX2_COH = 256  # points of the coherent cumulative table (contract)
SF_X_MIN = 1e-3  # 1/A; S/Z < 1e-4 below (the core uses 0 there)
SF_X_MAX = 300.0  # 1/A; above x = 1/lambda(3 MeV) = 242 1/A; S/Z = 1 to 1e-5 there
_E_TABLE_MAX_MEV = 3.0


def _xraylib():
    try:
        import xraylib  # noqa: WPS433
    except ImportError as exc:  # pragma: no cover
        raise DataError("photon data (package xraylib not installed): install it with 'pip install xraylib'") from exc
    return xraylib


def xraylib_version() -> str:
    return str(getattr(_xraylib(), "__version__", "unknown"))


def klein_nishina_cm2(energy_mev) -> np.ndarray:
    """Klein-Nishina total cross section per free electron (cm2) at photon energy (MeV)."""
    k = np.asarray(energy_mev, dtype=np.float64) / MEC2_MEV
    l2k = np.log1p(2.0 * k)
    return 2.0 * np.pi * R_E_CM**2 * (
        (1.0 + k) / k**2 * (2.0 * (1.0 + k) / (1.0 + 2.0 * k) - l2k / k)
        + l2k / (2.0 * k)
        - (1.0 + 3.0 * k) / (1.0 + 2.0 * k) ** 2
    )


def _xraylib_per_gram(fn, z: int, e_kev: np.ndarray) -> np.ndarray:
    """xraylib cm2/g of element -> cm2/g with the standard atomic weight."""
    xrl = _xraylib()
    scale = xrl.AtomicWeight(int(z)) / atomic_weight(int(z))
    try:
        return np.array([fn(int(z), float(e)) for e in e_kev], dtype=np.float64) * scale
    except ValueError as exc:
        raise DataError(f"xraylib has no photon data for Z={z} ({exc})") from exc


def element_mass_coefficients(z: int, energy_mev) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(photoelectric, incoherent, coherent) mass attenuation coefficients (cm2/g) of element z.

    Energies 1 keV .. 3 MeV (see module notes for > 800 keV).
    """
    xrl = _xraylib()
    e = np.atleast_1d(np.asarray(energy_mev, dtype=np.float64))
    if np.any(~np.isfinite(e)) or np.any(e < 1e-3 * (1 - 1e-12)) or np.any(e > _E_TABLE_MAX_MEV * (1 + 1e-12)):
        raise InputError(f"energy_mev (range {e.min():g}..{e.max():g}): expected 0.001..3 MeV")
    z = int(z)
    lo = e <= XRAYLIB_E_MAX_MEV
    photo = np.empty_like(e)
    incoh = np.empty_like(e)
    coh = np.empty_like(e)
    ekev = np.minimum(e[lo], XRAYLIB_E_MAX_MEV) * 1e3
    photo[lo] = _xraylib_per_gram(xrl.CS_Photo, z, ekev)
    incoh[lo] = _xraylib_per_gram(xrl.CS_Compt, z, ekev)
    coh[lo] = _xraylib_per_gram(xrl.CS_Rayl, z, ekev)
    hi = ~lo
    if np.any(hi):
        ref = np.array([_E_EXTRAP_LO_MEV, XRAYLIB_E_MAX_MEV]) * 1e3
        p2 = _xraylib_per_gram(xrl.CS_Photo, z, ref)
        c2 = _xraylib_per_gram(xrl.CS_Rayl, z, ref)
        i8 = _xraylib_per_gram(xrl.CS_Compt, z, ref[1:])[0]
        lr = np.log(XRAYLIB_E_MAX_MEV / _E_EXTRAP_LO_MEV)
        eh = e[hi]
        for arr, v in ((photo, p2), (coh, c2)):
            slope = np.log(v[1] / v[0]) / lr
            arr[hi] = v[1] * (eh / XRAYLIB_E_MAX_MEV) ** slope
        per_gram = z * AVOGADRO / atomic_weight(z)
        r = i8 / (per_gram * klein_nishina_cm2(XRAYLIB_E_MAX_MEV))
        incoh[hi] = per_gram * klein_nishina_cm2(eh) * (1.0 - (1.0 - r) * XRAYLIB_E_MAX_MEV / eh)
    return photo, incoh, coh


@functools.lru_cache(maxsize=256)
def _element_on_grid(z: int, grid_key: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    e = np.frombuffer(grid_key, dtype=np.float64)
    out = element_mass_coefficients(z, e)
    for a in out:
        a.setflags(write=False)
    return out


def mass_attenuation(material: Union[Material, str], energy_mev) -> dict[str, np.ndarray]:
    """Mass attenuation coefficients (cm2/g) of a material: 'photo', 'incoh', 'coh', 'total'."""
    m = get_material(material)
    e = np.ascontiguousarray(np.atleast_1d(np.asarray(energy_mev, dtype=np.float64)))
    key = e.tobytes()
    photo = np.zeros_like(e)
    incoh = np.zeros_like(e)
    coh = np.zeros_like(e)
    for z, w in m.composition:
        p, i, c = _element_on_grid(z, key)
        photo += w * p
        incoh += w * i
        coh += w * c
    return {"photo": photo, "incoh": incoh, "coh": coh, "total": photo + incoh + coh}


# ---- angular data ----

def sf_x_grid() -> np.ndarray:
    """x values (1/A) of the incoherent scattering function table: NX_SF points uniform in ln x."""
    return np.exp(np.linspace(np.log(SF_X_MIN), np.log(SF_X_MAX), NX_SF))


@functools.lru_cache(maxsize=256)
def _element_sf(z: int) -> np.ndarray:
    xrl = _xraylib()
    a = np.array([xrl.SF_Compt(int(z), float(x)) for x in sf_x_grid()], dtype=np.float64)
    a.setflags(write=False)
    return a


def coh_x2_grid() -> np.ndarray:
    """x^2 values (1/A^2) of the coherent table: 0, then NX2_COH-1 points log-uniform in x from
    0.01 1/A to x_max = (3 MeV)/hc = 242 1/A (about 4 % steps in x: dense where F(x) varies)."""
    x2max = (_E_TABLE_MAX_MEV * 1e3 / HC_KEV_ANGSTROM) ** 2
    g = np.empty(NX2_COH, dtype=np.float64)
    g[0] = 0.0
    g[1:] = np.geomspace(1e-4, x2max, NX2_COH - 1)
    return g


_COH_SUB = 16  # trapezoid sub-intervals per grid interval of coh_x2_grid


@functools.lru_cache(maxsize=256)
def _element_ff2_cum(z: int) -> np.ndarray:
    """Cumulative integral of F_z(x)^2 d(x^2) at the coh_x2_grid values (1/A^2)."""
    xrl = _xraylib()
    g = coh_x2_grid()
    t = np.linspace(0.0, 1.0, _COH_SUB + 1)
    fine = (g[:-1, None] + t[None, :] * np.diff(g)[:, None])  # [NX2-1, SUB+1]
    x = np.sqrt(fine.ravel())
    f = np.array([xrl.FF_Rayl(int(z), float(v)) for v in x], dtype=np.float64).reshape(fine.shape)
    f2 = np.clip(f, 0.0, None) ** 2
    seg = np.sum(0.5 * (f2[:, 1:] + f2[:, :-1]) * np.diff(fine, axis=1), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    cum.setflags(write=False)
    return cum


def photon_tables(materials: Sequence[Union[Material, str]], energy_mev: np.ndarray) -> dict:
    """Photon entries of the transport tables for `materials` on the energy grid (MeV)."""
    mats = [get_material(m) for m in materials]
    e = np.ascontiguousarray(energy_mev, dtype=np.float64)
    nm, ne = len(mats), e.size
    mu_photo = np.zeros((nm, ne))
    mu_incoh = np.zeros((nm, ne))
    mu_coh = np.zeros((nm, ne))
    incoh_sf = np.zeros((nm, NX_SF))
    coh_cum = np.zeros((nm, NX2_COH))
    for k, m in enumerate(mats):
        mu = mass_attenuation(m, e)
        mu_photo[k], mu_incoh[k], mu_coh[k] = mu["photo"], mu["incoh"], mu["coh"]
        n = m.atoms_per_gram
        zsum = 0.0
        for (z, _), ni in zip(m.composition, n):
            incoh_sf[k] += ni * _element_sf(z)
            zsum += ni * z
            coh_cum[k] += ni * _element_ff2_cum(z)
        # S(x) is non-decreasing; remove xraylib spline wiggles (< 1e-6) and clip to [0, 1]
        incoh_sf[k] = np.clip(np.maximum.accumulate(incoh_sf[k] / zsum), 0.0, 1.0)
        coh_cum[k] = np.maximum.accumulate(coh_cum[k])  # guard against round-off
    return {
        "mu_photo": np.ascontiguousarray(mu_photo),
        "mu_incoh": np.ascontiguousarray(mu_incoh),
        "mu_coh": np.ascontiguousarray(mu_coh),
        "sf_lnx_min": float(np.log(SF_X_MIN)),
        "sf_lnx_max": float(np.log(SF_X_MAX)),
        "incoh_sf": np.ascontiguousarray(incoh_sf),
        "coh_x2_grid": np.ascontiguousarray(coh_x2_grid()),
        "coh_cum": np.ascontiguousarray(coh_cum),
    }
