"""Materials: elemental compositions, mean excitation energies, and the CT number calibration.

A :class:`Material` is an elemental composition by mass fraction with a nominal density and a
mean excitation energy I. The transport tables (:mod:`rptdose.physics.tables`) are mass
coefficients, so they depend on the composition (and, weakly, through the density effect of the
electron stopping power, on the nominal density); the density of each voxel comes from the
phantom.

The built-in library (:func:`get_material`, :data:`MATERIAL_NAMES`) holds ICRU/ICRP body
tissues with their sources cited next to the numbers. Compositions without a tabulated I get it
from Bragg additivity with the ICRU Report 37 values for bound atoms (:func:`bragg_mean_excitation_ev`).

:class:`HUCalibration` converts CT numbers (HU) into densities and materials in the style of
Schneider, Bortfeld and Schlegel, Phys Med Biol 45:459-478 (2000); the default is that paper's
published table (shipped in ``data/schneider2000_*.txt``) and a user can supply their own.

Units: density g/cm3, I in eV, mass fractions dimensionless (sum to 1).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence, Union

import numpy as np

from .._data import data_dir, data_path
from ..errors import InputError

__all__ = [
    "Material",
    "HUCalibration",
    "get_material",
    "MATERIAL_NAMES",
    "ELEMENT_SYMBOLS",
    "atomic_weight",
    "element_symbol",
    "atomic_number",
    "bragg_mean_excitation_ev",
    "DATA_DIR",
]

AVOGADRO = 6.02214076e23  # 1/mol (SI 2019, exact)

DATA_DIR = data_dir()  # the shipped data (data/ of the repository, installed as rptdose/data)

# --------------------------------------------------------------------------------------------
# Elements
# --------------------------------------------------------------------------------------------

# Element symbols Z = 1..98 (index = Z - 1).
ELEMENT_SYMBOLS: tuple[str, ...] = (
    "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne",
    "Na", "Mg", "Al", "Si", "P", "S", "Cl", "Ar", "K", "Ca",
    "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn",
    "Ga", "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr",
    "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn",
    "Sb", "Te", "I", "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd",
    "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb",
    "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg",
    "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Th",
    "Pa", "U", "Np", "Pu", "Am", "Cm", "Bk", "Cf",
)
Z_MAX = len(ELEMENT_SYMBOLS)  # 98: the range covered by the photon (xraylib) and I-value data

# Standard atomic weights (g/mol), IUPAC/CIAAW conventional values (Prohaska et al., Pure Appl
# Chem 94:573, 2022); for elements without a stable isotope the mass number of the longest-lived
# isotope. (xraylib's AtomicWeight is rounded and partly outdated, e.g. Tm, so it is not used.)
_ATOMIC_WEIGHTS: tuple[float, ...] = (
    1.008, 4.002602, 6.94, 9.0121831, 10.81, 12.011, 14.007, 15.999, 18.998403163, 20.1797,
    22.98976928, 24.305, 26.9815384, 28.085, 30.973761998, 32.06, 35.45, 39.95, 39.0983, 40.078,
    44.955907, 47.867, 50.9415, 51.9961, 54.938043, 55.845, 58.933194, 58.6934, 63.546, 65.38,
    69.723, 72.630, 74.921595, 78.971, 79.904, 83.798, 85.4678, 87.62, 88.905838, 91.222,
    92.90637, 95.95, 98.0, 101.07, 102.90549, 106.42, 107.8682, 112.414, 114.818, 118.710,
    121.760, 127.60, 126.90447, 131.293, 132.90545196, 137.327, 138.90547, 140.116, 140.90766,
    144.242, 145.0, 150.36, 151.964, 157.249, 158.925354, 162.500, 164.930329, 167.259,
    168.934219, 173.045, 174.9668, 178.486, 180.94788, 183.84, 186.207, 190.23, 192.217,
    195.084, 196.966570, 200.592, 204.38, 207.2, 208.98040, 209.0, 210.0, 222.0, 223.0, 226.0,
    227.0, 232.0377, 231.03588, 238.02891, 237.0, 244.0, 243.0, 247.0, 247.0, 251.0,
)

# Mean excitation energies of the elements (eV), ICRU Report 37 (1984) as tabulated by NIST
# ESTAR (the same list Geant4's G4NistMaterialBuilder carries; C = 81 eV is graphite).
_ELEMENT_I_EV: tuple[float, ...] = (
    19.2, 41.8, 40.0, 63.7, 76.0, 81.0, 82.0, 95.0, 115.0, 137.0,
    149.0, 156.0, 166.0, 173.0, 173.0, 180.0, 174.0, 188.0, 190.0, 191.0,
    216.0, 233.0, 245.0, 257.0, 272.0, 286.0, 297.0, 311.0, 322.0, 330.0,
    334.0, 350.0, 347.0, 348.0, 343.0, 352.0, 363.0, 366.0, 379.0, 393.0,
    417.0, 424.0, 428.0, 441.0, 449.0, 470.0, 470.0, 469.0, 488.0, 488.0,
    487.0, 485.0, 491.0, 482.0, 488.0, 491.0, 501.0, 523.0, 535.0, 546.0,
    560.0, 574.0, 580.0, 591.0, 614.0, 628.0, 650.0, 658.0, 674.0, 684.0,
    694.0, 705.0, 718.0, 727.0, 736.0, 746.0, 757.0, 790.0, 790.0, 800.0,
    810.0, 823.0, 823.0, 830.0, 825.0, 794.0, 827.0, 826.0, 841.0, 847.0,
    878.0, 890.0, 902.0, 921.0, 934.0, 939.0, 952.0, 966.0,
)

# I values of atoms bound in condensed compounds, ICRU Report 37 (1984), Sect. 2.4 (from
# Seltzer & Berger, Int J Appl Radiat Isot 33:1189, 1982): H 19.2, C 81, N 82, O 106, F 112,
# Cl 180 eV; every other element 1.13 times its elemental value.
_BOUND_I_EV: dict[int, float] = {1: 19.2, 6: 81.0, 7: 82.0, 8: 106.0, 9: 112.0, 17: 180.0}
_BOUND_I_FACTOR = 1.13

_ELEMENT_NAMES = {  # English names (and GATE's spelling "Phosphor") -> Z, for reading tables
    "hydrogen": 1, "helium": 2, "lithium": 3, "beryllium": 4, "boron": 5, "carbon": 6,
    "nitrogen": 7, "oxygen": 8, "fluorine": 9, "neon": 10, "sodium": 11, "magnesium": 12,
    "aluminium": 13, "aluminum": 13, "silicon": 14, "phosphorus": 15, "phosphor": 15,
    "sulfur": 16, "sulphur": 16, "chlorine": 17, "argon": 18, "potassium": 19, "calcium": 20,
    "scandium": 21, "titanium": 22, "vanadium": 23, "chromium": 24, "manganese": 25, "iron": 26,
    "cobalt": 27, "nickel": 28, "copper": 29, "zinc": 30, "selenium": 34, "bromine": 35,
    "strontium": 38, "yttrium": 39, "zirconium": 40, "molybdenum": 42, "silver": 47,
    "cadmium": 48, "tin": 50, "iodine": 53, "barium": 56, "gadolinium": 64, "tantalum": 73,
    "tungsten": 74, "platinum": 78, "gold": 79, "mercury": 80, "lead": 82, "bismuth": 83,
}


def atomic_number(element: Union[int, str]) -> int:
    """Atomic number of `element` (an int Z, a symbol such as 'Ca', or an English name)."""
    if isinstance(element, (int, np.integer)) and not isinstance(element, bool):
        z = int(element)
        if 1 <= z <= Z_MAX:
            return z
        raise InputError(f"element Z={z} (out of range): expected an atomic number 1..{Z_MAX}")
    if isinstance(element, str):
        s = element.strip()
        if s.isdigit():
            return atomic_number(int(s))
        for i, sym in enumerate(ELEMENT_SYMBOLS):
            if sym == s or sym.lower() == s.lower():
                return i + 1
        z = _ELEMENT_NAMES.get(s.lower())
        if z is not None:
            return z
    raise InputError(
        f"element {element!r} (unknown): expected an atomic number 1..{Z_MAX} or a symbol "
        f"such as 'H', 'O', 'Ca'"
    )


def element_symbol(z: int) -> str:
    """Chemical symbol of element `z`."""
    return ELEMENT_SYMBOLS[atomic_number(z) - 1]


def atomic_weight(z: int) -> float:
    """Standard atomic weight of element `z` in g/mol."""
    return _ATOMIC_WEIGHTS[atomic_number(z) - 1]


def bragg_mean_excitation_ev(composition: Mapping[int, float] | Iterable[tuple[int, float]],
                             gas: bool = False) -> float:
    """Mean excitation energy (eV) of a compound by Bragg additivity (ICRU Report 37, eq. 2.9).

    ln I = sum_i (w_i Z_i/A_i) ln I_i / sum_i (w_i Z_i/A_i), with the ICRU 37 values for atoms
    bound in condensed compounds (H 19.2, C 81, N 82, O 106, F 112, Cl 180 eV; others 1.13 x the
    elemental I). Liquid water gives 75.3 eV this way (tabulated: 75.0 eV). For a gas
    (`gas=True`) and for a single element the elemental values are used (dry air: 85.7 eV).
    """
    items = list(composition.items() if isinstance(composition, Mapping) else composition)
    single = len([1 for _, w in items if w > 0]) == 1
    num = den = 0.0
    for z, w in items:
        z = atomic_number(z)
        if gas or single:
            i_ev = _ELEMENT_I_EV[z - 1]
        else:
            i_ev = _BOUND_I_EV.get(z, _BOUND_I_FACTOR * _ELEMENT_I_EV[z - 1])
        ne = w * z / atomic_weight(z)
        num += ne * math.log(i_ev)
        den += ne
    if den <= 0.0:
        raise InputError("composition (empty): expected at least one element with a mass fraction > 0")
    return math.exp(num / den)


# --------------------------------------------------------------------------------------------
# Material
# --------------------------------------------------------------------------------------------

CompositionLike = Union[Mapping[Union[int, str], float], Iterable[tuple[Union[int, str], float]]]


@dataclass(frozen=True)
class Material:
    """An elemental composition with a nominal density and a mean excitation energy.

    Parameters
    ----------
    name : str
        A label (used in messages, provenance and cache keys).
    composition : mapping or pairs
        Mass fractions by element, e.g. ``{"H": 0.111894, "O": 0.888106}`` or ``{1: ..., 8: ...}``
        or ``[(1, 0.11), (8, 0.89)]``. Stored as a tuple of ``(Z, mass fraction)`` sorted by Z;
        fractions are normalised to sum to 1 (a sum off by more than 2 % is an error).
    density_g_cm3 : float
        Nominal density (g/cm3). Voxel densities come from the phantom; this one enters only the
        density-effect correction of the electron stopping power.
    i_ev : float, optional
        Mean excitation energy (eV). If omitted, Bragg additivity with ICRU 37 bound-atom values.
    source : str
        Where the numbers come from.
    """

    name: str
    composition: tuple[tuple[int, float], ...]
    density_g_cm3: float
    i_ev: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InputError(f"Material name {self.name!r} (empty): expected a non-empty string")
        comp = self.composition
        items = comp.items() if isinstance(comp, Mapping) else comp
        acc: dict[int, float] = {}
        try:
            for el, w in items:
                z = atomic_number(el)
                w = float(w)
                if not math.isfinite(w) or w < 0.0:
                    raise InputError(
                        f"Material {self.name!r}: mass fraction of {element_symbol(z)} = {w!r} "
                        f"(invalid): expected a finite number >= 0"
                    )
                acc[z] = acc.get(z, 0.0) + w
        except (TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(
                f"Material {self.name!r}: composition {comp!r} (unreadable): expected a mapping "
                f"element -> mass fraction, e.g. {{'H': 0.112, 'O': 0.888}}"
            ) from exc
        total = sum(acc.values())
        if not acc or total <= 0.0:
            raise InputError(f"Material {self.name!r}: composition is empty: expected mass fractions > 0")
        if abs(total - 1.0) > 0.02:
            raise InputError(
                f"Material {self.name!r}: mass fractions sum to {total:.4f} (not 1): expected "
                f"fractions that sum to 1 (or percentages divided by 100)"
            )
        norm = tuple((z, acc[z] / total) for z in sorted(acc) if acc[z] > 0.0)
        object.__setattr__(self, "composition", norm)
        rho = float(self.density_g_cm3)
        if not math.isfinite(rho) or rho <= 0.0 or rho > 30.0:
            raise InputError(
                f"Material {self.name!r}: density_g_cm3 = {self.density_g_cm3!r} (invalid): "
                f"expected a density in (0, 30] g/cm3"
            )
        object.__setattr__(self, "density_g_cm3", rho)
        if self.i_ev is None:
            object.__setattr__(self, "i_ev", round(bragg_mean_excitation_ev(norm, gas=rho < 0.01), 4))
        else:
            i_ev = float(self.i_ev)
            if not math.isfinite(i_ev) or not 5.0 <= i_ev <= 2000.0:
                raise InputError(
                    f"Material {self.name!r}: i_ev = {self.i_ev!r} (invalid): expected a mean "
                    f"excitation energy in 5..2000 eV"
                )
            object.__setattr__(self, "i_ev", i_ev)
        object.__setattr__(self, "source", str(self.source))

    # ---- derived quantities ----
    @property
    def mass_fractions(self) -> dict[int, float]:
        """{Z: mass fraction}."""
        return dict(self.composition)

    @property
    def z(self) -> np.ndarray:
        """Atomic numbers (int array)."""
        return np.array([z for z, _ in self.composition], dtype=np.int64)

    @property
    def w(self) -> np.ndarray:
        """Mass fractions (float array, same order as :attr:`z`)."""
        return np.array([w for _, w in self.composition], dtype=np.float64)

    @property
    def atoms_per_gram(self) -> np.ndarray:
        """Atoms of each element per gram of material (1/g), same order as :attr:`z`."""
        return AVOGADRO * self.w / np.array([atomic_weight(z) for z in self.z])

    @property
    def z_over_a(self) -> float:
        """<Z/A> = sum_i w_i Z_i / A_i (mol/g)."""
        return float(sum(w * z / atomic_weight(z) for z, w in self.composition))

    @property
    def electrons_per_gram(self) -> float:
        """Electrons per gram (1/g)."""
        return AVOGADRO * self.z_over_a

    @property
    def is_gas(self) -> bool:
        """True for a nominal density below 0.01 g/cm3 (selects the gas branch of the
        Sternheimer-Peierls density-effect parameters)."""
        return self.density_g_cm3 < 0.01

    def key(self) -> str:
        """A canonical text form of the definition (for hashing / cache keys)."""
        comp = ",".join(f"{z}:{w:.10g}" for z, w in self.composition)
        return f"{self.name}|{comp}|{self.density_g_cm3:.10g}|{self.i_ev:.10g}"

    def with_density(self, density_g_cm3: float, name: str | None = None) -> "Material":
        """The same composition and I at another nominal density."""
        return Material(name or self.name, self.composition, density_g_cm3, self.i_ev, self.source)

    def __str__(self) -> str:  # compact, readable
        comp = " ".join(f"{element_symbol(z)} {100 * w:.2f}%" for z, w in self.composition)
        return f"{self.name} (rho {self.density_g_cm3:g} g/cm3, I {self.i_ev:g} eV: {comp})"


# --------------------------------------------------------------------------------------------
# Built-in library
# --------------------------------------------------------------------------------------------
# NIST compositions are those of the NIST material composition database used by ESTAR and XCOM
# (physics.nist.gov/cgi-bin/Star/compos.pl; same values in Hubbell & Seltzer, NISTIR 5632,
# Table 2, and PNNL-15870 Rev. 1). "ICRP" tissues there are the ICRP Publication 23 (1975)
# reference-man compositions.

_NIST = "NIST ESTAR/XCOM material composition data (physics.nist.gov/cgi-bin/Star/compos.pl)"

_LIBRARY: dict[str, Material] = {}


def _add(m: Material) -> None:
    _LIBRARY[m.name] = m


# Liquid water: NIST (matno 276); I = 75.0 eV (ICRU Report 37 / ICRU 49, ESTAR).
_add(Material("water", {1: 0.111894, 8: 0.888106}, 1.0, 75.0,
              f"Water, liquid; {_NIST} matno 276; I 75.0 eV (ICRU 37)"))

# Dry air near sea level: NIST (matno 104), rho 1.20479e-3 g/cm3, I = 85.7 eV.
_add(Material("air", {6: 0.000124, 7: 0.755268, 8: 0.231781, 18: 0.012827}, 1.20479e-3, 85.7,
              f"Air, dry (near sea level); {_NIST} matno 104; I 85.7 eV"))

# Lung: NIST "Lung (ICRP)" composition (matno 190, tabulated I 75.3 eV) at the density of
# healthy inflated adult lung, 0.26 g/cm3 (ICRU Report 46, 1992). NIST lists it at 1.05 g/cm3
# (blood-filled lung tissue); the composition and I do not depend on the inflation.
_add(Material("lung",
              {1: 0.101278, 6: 0.102310, 7: 0.028650, 8: 0.757072, 11: 0.001840, 12: 0.000730,
               15: 0.000800, 16: 0.002250, 17: 0.002660, 19: 0.001940, 20: 0.000090,
               26: 0.000370, 30: 0.000010},
              0.26, 75.3,
              f"Lung (ICRP), {_NIST} matno 190, I 75.3 eV; density 0.26 g/cm3 = inflated lung (ICRU 46)"))

# Adipose tissue: NIST "Adipose tissue (ICRP)" (matno 103), rho 0.92, I 63.2 eV.
_add(Material("adipose",
              {1: 0.119477, 6: 0.637240, 7: 0.007970, 8: 0.232333, 11: 0.000500, 12: 0.000020,
               15: 0.000160, 16: 0.000730, 17: 0.001190, 19: 0.000320, 20: 0.000020,
               26: 0.000020, 30: 0.000020},
              0.92, 63.2, f"Adipose tissue (ICRP), {_NIST} matno 103, I 63.2 eV"))

# Soft tissue: NIST "Tissue, soft (ICRP)" (matno 261), I 72.3 eV, as used by ESTAR. NIST's
# composition table gives 1.00 g/cm3; rptdose uses 1.03 g/cm3, the ICRU 46 / ICRP 89 adult
# soft-tissue density (only the density-effect term of the stopping power sees it: < 0.1 %).
_add(Material("soft_tissue",
              {1: 0.104472, 6: 0.232190, 7: 0.024880, 8: 0.630238, 11: 0.001130, 12: 0.000130,
               15: 0.001330, 16: 0.001990, 17: 0.001340, 19: 0.001990, 20: 0.000230,
               26: 0.000050, 30: 0.000030},
              1.03, 72.3, f"Tissue, soft (ICRP), {_NIST} matno 261, I 72.3 eV; rho 1.03 (ICRU 46)"))

# Skeletal muscle: NIST "Muscle, skeletal (ICRP)" (matno 201), rho 1.04, I 75.3 eV.
_add(Material("muscle",
              {1: 0.100637, 6: 0.107830, 7: 0.027680, 8: 0.754773, 11: 0.000750, 12: 0.000190,
               15: 0.001800, 16: 0.002410, 17: 0.000790, 19: 0.003020, 20: 0.000030,
               26: 0.000040, 30: 0.000050},
              1.04, 75.3, f"Muscle, skeletal (ICRP), {_NIST} matno 201, I 75.3 eV"))

# Red (haematopoietic) marrow, adult: ICRU Report 46 (1992) / ICRP Publication 89 (2002):
# H 10.5, C 41.4, N 3.4, O 43.9, P 0.1, S 0.2, Cl 0.2, K 0.2, Fe 0.1 % by mass; 1.03 g/cm3.
# I from Bragg additivity (ICRU 37 bound-atom values).
_add(Material("red_marrow",
              {1: 0.105, 6: 0.414, 7: 0.034, 8: 0.439, 15: 0.001, 16: 0.002, 17: 0.002,
               19: 0.002, 26: 0.001},
              1.03, None, "Red marrow, adult (ICRU 46 / ICRP 89); I by Bragg additivity (ICRU 37)"))

# Spongiosa (trabecular bone + marrow), adult: ICRU Report 46 (1992): H 8.5, C 40.4, N 2.8,
# O 36.7, Na 0.1, Mg 0.1, P 3.4, S 0.2, Cl 0.2, K 0.1, Ca 7.4, Fe 0.1 %; 1.18 g/cm3.
# (Not cross-checked against a second source in this project.) I by Bragg additivity.
_add(Material("spongiosa",
              {1: 0.085, 6: 0.404, 7: 0.028, 8: 0.367, 11: 0.001, 12: 0.001, 15: 0.034,
               16: 0.002, 17: 0.002, 19: 0.001, 20: 0.074, 26: 0.001},
              1.18, None, "Spongiosa, adult (ICRU 46); I by Bragg additivity (ICRU 37)"))

# Cortical bone: NIST "Bone, cortical (ICRP)" (matno 120), rho 1.85, I 106.4 eV, as in ESTAR.
_add(Material("cortical_bone",
              {1: 0.047234, 6: 0.144330, 7: 0.041990, 8: 0.446096, 12: 0.002200, 15: 0.104970,
               16: 0.003150, 20: 0.209930, 30: 0.000100},
              1.85, 106.4, f"Bone, cortical (ICRP), {_NIST} matno 120, I 106.4 eV"))

# ICRU Report 44 (1989) soft tissue and cortical bone, as in the NIST XCOM / X-ray mass
# attenuation tables (Hubbell & Seltzer, NISTIR 5632, Table 2); I by Bragg additivity.
_add(Material("soft_tissue_icru44",
              {1: 0.102, 6: 0.143, 7: 0.034, 8: 0.708, 11: 0.002, 15: 0.003, 16: 0.003,
               17: 0.002, 19: 0.003},
              1.06, None, "Tissue, soft (ICRU-44), NISTIR 5632 Table 2; I by Bragg additivity"))
_add(Material("bone_cortical_icru44",
              {1: 0.034, 6: 0.155, 7: 0.042, 8: 0.435, 11: 0.001, 12: 0.002, 15: 0.103,
               16: 0.003, 20: 0.225},
              1.92, None, "Bone, cortical (ICRU-44), NISTIR 5632 Table 2; I by Bragg additivity"))
# ICRU-44 lung (blood-filled, 1.05 g/cm3), NISTIR 5632 Table 2 (the composition Schneider 2000
# uses for lung); I by Bragg additivity.
_add(Material("lung_icru44",
              {1: 0.103, 6: 0.105, 7: 0.031, 8: 0.749, 11: 0.002, 15: 0.002, 16: 0.003,
               17: 0.003, 19: 0.002},
              1.05, None, "Lung (ICRU-44), NISTIR 5632 Table 2; I by Bragg additivity"))

MATERIAL_NAMES: tuple[str, ...] = tuple(_LIBRARY)


def _normalise_name(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def get_material(name: Union[str, Material]) -> Material:
    """The built-in material called `name` (case-insensitive; '-' and ' ' read as '_').

    A :class:`Material` passed in is returned unchanged.
    """
    if isinstance(name, Material):
        return name
    if not isinstance(name, str):
        raise InputError(
            f"material {name!r} (not a name): expected a Material or one of {', '.join(MATERIAL_NAMES)}"
        )
    m = _LIBRARY.get(_normalise_name(name))
    if m is None:
        raise InputError(
            f"material {name!r} (unknown): expected one of {', '.join(MATERIAL_NAMES)} "
            f"or a rptdose.physics.materials.Material"
        )
    return m


# --------------------------------------------------------------------------------------------
# HU calibration
# --------------------------------------------------------------------------------------------


def _read_table_rows(path: Path) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"calibration file {str(path)!r} (unreadable: {exc}): expected a text file") from exc
    return text.splitlines()


def _parse_density_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    hu, rho = [], []
    for ln, line in enumerate(_read_table_rows(path), 1):
        s = line.split("#", 1)[0].strip()
        if not s or s.startswith("["):
            continue
        parts = s.replace(",", " ").split()
        try:
            h, r = float(parts[0]), float(parts[1])
        except (IndexError, ValueError):
            # a header row of words is fine
            if all(not re.match(r"^[-+]?\d", p) for p in parts):
                continue
            raise InputError(
                f"density calibration {str(path)!r} line {ln} ({line.strip()!r}): expected two "
                f"numbers 'HU density_g_cm3'"
            ) from None
        hu.append(h)
        rho.append(r)
    return np.asarray(hu, float), np.asarray(rho, float)


def _parse_materials_file(path: Path) -> tuple[np.ndarray, list[dict[int, float]], list[str]]:
    """Read a HU -> composition table. Two layouts are understood:

    * rptdose's: a header row ``hu_lower H C N O ... name`` (element symbols), then rows
      ``HU w_H w_C ... label`` (mass percent or fractions);
    * GATE's (Schneider2000MaterialsTable.txt): an ``[Elements] ... [/Elements]`` block naming
      the elements in English, then rows ``HU w1 w2 ... label``.
    """
    lines = _read_table_rows(path)
    elements: list[int] | None = None
    in_block = False
    block: list[str] = []
    rows: list[tuple[float, list[float], str]] = []
    for ln, line in enumerate(lines, 1):
        s = line.split("#", 1)[0].strip()
        if not s:
            continue
        low = s.lower()
        if low.startswith("[elements]"):
            in_block = True
            continue
        if low.startswith("[/elements]"):
            in_block = False
            elements = [atomic_number(n) for n in block]
            continue
        if in_block:
            block.extend(s.split())
            continue
        parts = s.split()
        if elements is None:
            # header row: first token a word (e.g. hu_lower), then element symbols, then a label column
            if not re.match(r"^[-+]?\d", parts[0]):
                syms = [p for p in parts[1:] if p.lower() not in ("name", "label", "material")]
                elements = [atomic_number(p) for p in syms]
                continue
            raise InputError(
                f"materials calibration {str(path)!r} line {ln}: data before the element list; "
                f"expected a header row 'hu_lower H C N O ... name' or a GATE [Elements] block"
            )
        n = len(elements)
        try:
            hu = float(parts[0])
            w = [float(p) for p in parts[1:1 + n]]
        except ValueError:
            raise InputError(
                f"materials calibration {str(path)!r} line {ln} ({line.strip()!r}): expected "
                f"'HU' then {n} mass fractions then a label"
            ) from None
        if len(w) != n:
            raise InputError(
                f"materials calibration {str(path)!r} line {ln}: {len(w)} fractions for {n} "
                f"elements: expected one per element"
            )
        label = " ".join(parts[1 + n:]) or f"bin{len(rows)}"
        rows.append((hu, w, label))
    if elements is None or len(rows) < 2:
        raise InputError(
            f"materials calibration {str(path)!r} (incomplete): expected an element list and at "
            f"least two rows (bin lower edges; the last row closes the last bin)"
        )
    edges = np.array([r[0] for r in rows], float)
    comps = []
    for _, w, _ in rows:
        tot = sum(w)
        scale = 100.0 if tot > 2.0 else 1.0  # percent or fractions
        comps.append({z: wi / scale for z, wi in zip(elements, w) if wi > 0})
    labels = [r[2] for r in rows]
    return edges, comps, labels


class HUCalibration:
    """CT number (HU) -> mass density and material, in the style of Schneider et al. (2000).

    * density: piecewise-linear interpolation of the (HU, density) points; below the first
      point and above the last the end values are used (clamped);
    * material: HU bins ``[edge_k, edge_k+1)``, each bin a :class:`Material`. HU below the first
      edge fall into the first bin and HU at or above the last edge into the last bin (clamped):
      for Schneider 2000, HU < -1050 is air and HU >= 3000 is the metal-implant bin with the
      density of the last point (2.8 g/cm3).

    Build one with :meth:`schneider2000` (the default), :meth:`from_points`, or
    :meth:`from_files`.
    """

    def __init__(self, density_hu: Sequence[float], density_g_cm3: Sequence[float],
                 bin_edges_hu: Sequence[float], bin_materials: Sequence[Union[Material, str]],
                 name: str = "custom", source: str = ""):
        hu = np.asarray(density_hu, dtype=np.float64).ravel()
        rho = np.asarray(density_g_cm3, dtype=np.float64).ravel()
        if hu.size < 2 or hu.size != rho.size:
            raise InputError(
                f"density_hu/density_g_cm3 ({hu.size} and {rho.size} values): expected two "
                f"equally long sequences with at least 2 points"
            )
        if not (np.all(np.isfinite(hu)) and np.all(np.isfinite(rho))):
            raise InputError("density calibration points (not finite): expected finite numbers")
        if np.any(np.diff(hu) < 0):
            raise InputError(f"density_hu {hu.tolist()} (not sorted): expected non-decreasing HU values")
        if np.any(rho <= 0):
            raise InputError(f"density_g_cm3 {rho.tolist()} (non-positive): expected densities > 0 g/cm3")
        edges = np.asarray(bin_edges_hu, dtype=np.float64).ravel()
        mats = [get_material(m) for m in bin_materials]
        if edges.size != len(mats) + 1 or len(mats) < 1:
            raise InputError(
                f"bin_edges_hu ({edges.size} values) and bin_materials ({len(mats)}): expected "
                f"one more edge than materials (lower edges, then the upper edge of the last bin)"
            )
        if not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
            raise InputError(f"bin_edges_hu {edges.tolist()} (not increasing): expected strictly increasing HU edges")
        self.density_hu = hu
        self.density_g_cm3 = rho
        self.bin_edges_hu = edges
        self.bin_materials: tuple[Material, ...] = tuple(mats)
        self.name = name
        self.source = source

    # ---- constructors ----
    @classmethod
    def from_points(cls, density_hu: Sequence[float], density_g_cm3: Sequence[float],
                    bin_edges_hu: Sequence[float], bin_materials: Sequence[Union[Material, str]],
                    name: str = "custom", source: str = "user calibration") -> "HUCalibration":
        """A calibration from (HU, density) points and HU bins of materials.

        `bin_materials` are :class:`Material` objects or built-in names; `bin_edges_hu` has one
        more value than `bin_materials`. Example::

            HUCalibration.from_points([-1000, 0, 1000, 3000], [0.0012, 1.0, 1.6, 2.8],
                                      [-1050, -950, -200, 200, 3000],
                                      ["air", "lung", "soft_tissue", "cortical_bone"])
        """
        return cls(density_hu, density_g_cm3, bin_edges_hu, bin_materials, name, source)

    @classmethod
    def from_files(cls, density_file: Union[str, Path], materials_file: Union[str, Path],
                   name: str | None = None, source: str | None = None) -> "HUCalibration":
        """Read a calibration from a density table and a materials table.

        density file: rows ``HU density_g_cm3`` ('#' comments). Materials file: rows
        ``HU_lower_edge w_1 ... w_n label`` with the elements named in a header row of symbols
        (rptdose layout) or in a GATE ``[Elements]`` block (GATE's Schneider2000 files work as
        they are). Each row opens a bin that ends at the next row's HU; the last row only closes
        the last bin (GATE convention), its composition is not used. The nominal density of each
        bin's material is the density curve at the bin's middle HU.
        """
        hu, rho = _parse_density_file(Path(density_file))
        edges, comps, labels = _parse_materials_file(Path(materials_file))
        src = source or f"HU calibration from {density_file} and {materials_file}"
        mats = []
        for k in range(len(edges) - 1):
            lo, hi = edges[k], edges[k + 1]
            mid_rho = float(np.interp(0.5 * (lo + hi), hu, rho))
            mats.append(Material(f"{labels[k]}[{lo:g},{hi:g})", comps[k], mid_rho, None,
                                 f"{src}; HU bin [{lo:g}, {hi:g}); I by Bragg additivity (ICRU 37)"))
        return cls(hu, rho, edges, mats, name or Path(materials_file).stem, src)

    @classmethod
    def schneider2000(cls) -> "HUCalibration":
        """The published calibration of Schneider, Bortfeld, Schlegel, Phys Med Biol 45:459 (2000)
        (HU -> density points and 24 HU bins with elemental compositions), from the data files
        shipped in ``data/`` (installed as ``rptdose/data``; numbers as distributed by the GATE project)."""
        cal = cls.from_files(
            data_path("schneider2000_density.txt"),
            data_path("schneider2000_materials.txt"),
            name="schneider2000",
            source=("Schneider W, Bortfeld T, Schlegel W, Phys Med Biol 45:459-478 (2000), "
                    "doi:10.1088/0031-9155/45/2/314"),
        )
        return cal

    # ---- use ----
    def density(self, hu: np.ndarray) -> np.ndarray:
        """Density (g/cm3, float32) for CT numbers `hu` (clamped at the ends of the curve)."""
        h = np.asarray(hu, dtype=np.float64)
        return np.interp(h, self.density_hu, self.density_g_cm3).astype(np.float32)

    def bin_index(self, hu: np.ndarray) -> np.ndarray:
        """Index into :attr:`bin_materials` for each HU (clamped to the first/last bin)."""
        h = np.asarray(hu)
        return np.searchsorted(self.bin_edges_hu[1:-1], h, side="right").astype(np.int32)

    def apply(self, hu: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[Material]]:
        """Convert a CT image (any shape, HU) into ``(density, material_index, materials)``.

        density: float32 g/cm3; material_index: int32 indices into `materials`, which lists only
        the bins that occur in the image, in bin order (compact indices; identical materials of
        different bins are merged).
        """
        h = np.asarray(hu)
        if h.dtype.kind not in "iuf":
            raise InputError(f"hu (dtype {h.dtype}): expected a numeric array of CT numbers")
        if h.dtype.kind == "f" and not np.all(np.isfinite(h)):
            raise InputError("hu (contains NaN or inf): expected finite CT numbers")
        nb = len(self.bin_materials)
        flat = h.reshape(-1)
        density = np.empty(flat.shape, dtype=np.float32)
        bins = np.empty(flat.shape, dtype=np.int32)
        chunk = 1 << 22  # bound the float64 temporaries on large CTs
        for s in range(0, flat.size, chunk):
            part = flat[s:s + chunk].astype(np.float64, copy=False)
            density[s:s + chunk] = np.interp(part, self.density_hu, self.density_g_cm3)
            bins[s:s + chunk] = np.searchsorted(self.bin_edges_hu[1:-1], part, side="right")
        used = np.flatnonzero(np.bincount(bins, minlength=nb) > 0)
        materials: list[Material] = []
        lut = np.full(nb, -1, dtype=np.int32)
        for b in used:
            m = self.bin_materials[b]
            try:
                k = materials.index(m)
            except ValueError:
                k = len(materials)
                materials.append(m)
            lut[b] = k
        material_index = lut[bins]
        return density.reshape(h.shape), material_index.reshape(h.shape), materials

    def __repr__(self) -> str:
        return (f"HUCalibration({self.name!r}, {len(self.density_hu)} density points, "
                f"{len(self.bin_materials)} bins from {self.bin_edges_hu[0]:g} to {self.bin_edges_hu[-1]:g} HU)")
