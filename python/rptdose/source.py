"""The source: what decays (a nuclide, or a monoenergetic emitter) and where.

==================  ===================  ======  ==============================================
quantity            layout               unit    notes
==================  ===================  ======  ==============================================
``decays``          float64 [z, y, x]    --      decays per voxel = time-integrated activity
                                                 (Bq*s); finite, >= 0, total > 0
``total_decays``    float                --      sum of ``decays``: the dose is for all of them
``nuclide``         str                  --      e.g. ``"Lu-177"``, or
                                                 ``"mono-photon-0.20837MeV"``
``chain``           str                  --      "equilibrium" (the default: the daughters
                                                 decay at the parent's site) or "parent"
                                                 (rptdose.physics.chains); decays are the
                                                 parent's
``alpha_mev_per_decay``  float           MeV     alphas + recoil nuclei of all members per
                                                 parent decay: deposited at the decay site
==================  ===================  ======  ==============================================

The transport samples ``histories`` decays from the map (its proportions only) and scales the
tallies to ``total_decays``. Alpha particles and recoil nuclei travel 40-100 um in tissue (a
5-9 MeV alpha: CSDA range 37-90 um in water, ICRU Report 49), far below a voxel: their energy
is deposited in the decay voxel, as an exact expected value (:func:`alpha_dose_gy`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rptdose._validate import as_float, as_grid_array, describe, frozen
from rptdose.errors import InputError

#: Default tracking cuts (MeV) for emission lines: electrons below 10 keV and photons below 1 keV
#: are deposited at the decay site (the physics layer's defaults; recorded in the provenance).
EL_CUT_MEV = 0.01
PH_CUT_MEV = 0.001


def check_decays(decays: Any, name: str = "decays") -> np.ndarray:
    """Validated decays-per-voxel map as a read-only float64 C-contiguous copy."""
    arr = as_grid_array(name, decays)
    values = np.array(arr, dtype=np.float64, order="C", copy=True)
    finite = np.isfinite(values)
    if not np.all(finite):
        n_bad = int(values.size - np.count_nonzero(finite))
        raise InputError(f"{name} ({n_bad} voxels NaN or infinite): expected finite decays per voxel (Bq*s)")
    lo = float(values.min())
    if lo < 0.0:
        n_neg = int(np.count_nonzero(values < 0.0))
        raise InputError(f"{name} ({n_neg} voxels negative, minimum {lo:g}): expected decays per voxel >= 0 "
                         "(clip negative reconstruction noise before building the source)")
    total = float(values.sum(dtype=np.float64))
    if not total > 0.0:
        raise InputError(f"{name} (total 0): expected a map with some activity (total decays > 0)")
    if not np.isfinite(total):
        raise InputError(f"{name} (total overflows float64): expected a finite total number of decays")
    return frozen(values)


class Source:
    """What decays, and how many decays in each voxel.

    Parameters
    ----------
    nuclide : str, Nuclide or DecayChain
        An ICRP-107 nuclide name (``"Lu-177"``, ``"lu177"``, ``"177Lu"``, ...), a
        :class:`rptdose.physics.nuclides.Nuclide` or a
        :class:`rptdose.physics.chains.DecayChain`.
    decays : array [z, y, x]
        Decays per voxel of the nuclide (the chain's parent; time-integrated activity, Bq*s),
        finite and >= 0 with a positive total, on the phantom's grid.
    chain : None, "equilibrium" or "parent"
        None (the default) is "equilibrium": every daughter shorter-lived than the parent decays
        at the parent's decay site, each with its number of decays per parent decay; "parent":
        the parent alone (:mod:`rptdose.physics.chains`). Given for a nuclide without such
        daughters it is accepted, and :attr:`chain_note` (and a UserWarning) says so.
    """

    def __init__(self, nuclide: Any, decays: Any, chain: Any = None):
        from rptdose.physics.chains import DecayChain, check_chain_option, decay_chain
        from rptdose.physics.nuclides import Nuclide

        mode = check_chain_option(chain)  # InputError for an unknown keyword, before any data is read
        if isinstance(nuclide, DecayChain):
            if mode is not None and mode != nuclide.mode:
                raise InputError(f"chain {chain!r} (the DecayChain given is '{nuclide.mode}'): expected the same chain "
                                 "or None")
            dc = nuclide
        elif isinstance(nuclide, (Nuclide, str)):
            dc = decay_chain(nuclide, mode)  # InputError naming the nuclide if unknown
        else:
            raise InputError(f"nuclide {describe(nuclide)} (of type {type(nuclide).__name__}): expected a "
                             "nuclide name such as 'Lu-177' or a rptdose.physics.nuclides.Nuclide")
        self._chain = dc
        # the emitter whose energies and emission arrays the dose methods use: the chain when
        # daughters decay with the parent, else the nuclide itself
        self._nuclide = dc if dc.has_daughters else dc.parent
        self._name = str(dc.parent.name)
        self._mono: tuple[str, float] | None = None
        self._decays = check_decays(decays)
        self._total = float(self._decays.sum(dtype=np.float64))
        if mode == "equilibrium" and not dc.has_daughters:
            import warnings

            warnings.warn(f"Source {self._name}: {dc.note}", UserWarning, stacklevel=2)

    @classmethod
    def monoenergetic(cls, kind: str, energy_mev: float, decays: Any) -> Source:
        """One particle of ``kind`` (``"photon"``, ``"electron"`` or ``"positron"``) of
        ``energy_mev`` per decay.

        For validation (dose point kernels, S-values) and kernels. ``energy_mev`` within the
        physics tables' range (0.001..3 MeV; a positron 0..3 MeV: it annihilates at rest where it
        stops, 0 being a positron at rest).
        """
        from rptdose.physics.nuclides import monoenergetic_emissions

        if not isinstance(kind, str) or kind.strip().lower() not in ("photon", "electron", "positron"):
            raise InputError(f"kind {kind!r} (unknown): expected 'photon', 'electron' or 'positron'")
        kind = kind.strip().lower()
        energy = as_float("energy_mev", energy_mev)
        monoenergetic_emissions(kind, energy, EL_CUT_MEV, PH_CUT_MEV)  # InputError naming energy_mev
        self = cls.__new__(cls)
        self._nuclide = None
        self._chain = None
        self._mono = (kind, energy)
        self._name = f"mono-{kind}-{energy:g}MeV"
        self._decays = check_decays(decays)
        self._total = float(self._decays.sum(dtype=np.float64))
        return self

    # ---- properties ------------------------------------------------------------------------
    @property
    def nuclide(self) -> str:
        """The nuclide's name (``"Lu-177"``) or ``"mono-<kind>-<energy>MeV"``."""
        return self._name

    @property
    def is_monoenergetic(self) -> bool:
        return self._mono is not None

    @property
    def half_life_s(self) -> float | None:
        """Physical half-life (s) of the nuclide; None for a monoenergetic source."""
        return None if self._nuclide is None else float(self._nuclide.half_life_s)

    @property
    def chain(self) -> str | None:
        """"equilibrium" or "parent" (what the source holds); None for a monoenergetic source."""
        return None if self._chain is None else self._chain.mode

    @property
    def decay_chain(self) -> Any:
        """The :class:`rptdose.physics.chains.DecayChain` (None for a monoenergetic source)."""
        return self._chain

    @property
    def chain_members(self) -> list[tuple[str, float]]:
        """[(nuclide, decays per parent decay)], the parent first with 1.0 ([] if monoenergetic)."""
        return [] if self._chain is None else [(n.name, float(k)) for n, k in self._chain.members]

    @property
    def chain_note(self) -> str | None:
        """One sentence on the chain (members, or why there are none); None if monoenergetic."""
        return None if self._chain is None else self._chain.note

    @property
    def alpha_mev_per_decay(self) -> float:
        """Energy of alpha particles and recoil nuclei per (parent) decay, all members (MeV)."""
        return 0.0 if self._nuclide is None else float(self._nuclide.alpha_recoil_mev_per_decay)

    @property
    def decays(self) -> np.ndarray:
        """Decays per voxel, float64 [z, y, x], read-only."""
        return self._decays

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape (nz, ny, nx)."""
        return tuple(int(n) for n in self._decays.shape)  # type: ignore[return-value]

    @property
    def total_decays(self) -> float:
        """Sum of the decays over all voxels."""
        return self._total

    def emission_arrays(self, el_cut_mev: float = EL_CUT_MEV, ph_cut_mev: float = PH_CUT_MEV) -> dict:
        """The emission dict of the core contract (docs/core_contract.md) for these cuts (MeV).

        Lines below the cuts (electrons < ``el_cut_mev``, photons < ``ph_cut_mev``) are deposited
        at the decay site (``local_mev_per_decay``).
        """
        if self._mono is not None:
            from rptdose.physics.nuclides import monoenergetic_emissions

            return monoenergetic_emissions(self._mono[0], self._mono[1], el_cut_mev, ph_cut_mev)
        return self._nuclide.emission_arrays(el_cut_mev, ph_cut_mev)

    def alpha_dose_gy(self, phantom: Any) -> np.ndarray:
        """Absorbed dose (Gy) of the alphas and recoil nuclei: every one deposits its energy in its
        decay voxel (module docstring), so exactly decays x alpha_mev_per_decay x J/MeV / voxel
        mass. The same arrays and operations as :func:`rptdose.simulate` uses."""
        return alpha_dose_gy(self._decays, self.alpha_mev_per_decay, phantom.density, phantom.spacing_mm)

    def __repr__(self) -> str:
        extra = ""
        if self._chain is not None and self._chain.has_daughters:
            extra = f", chain={self._chain.mode!r} ({len(self._chain.members)} members)"
        return f"Source({self._name!r}, shape={self.shape}, total_decays={self._total:.6g}{extra})"


#: J per MeV (exact, SI 2019).
_J_PER_MEV = 1.602176634e-13


def alpha_dose_gy(decays: np.ndarray, alpha_mev_per_decay: float, density_g_cm3: np.ndarray,
                  spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """Dose (Gy) of energy ``alpha_mev_per_decay`` deposited in each decay's voxel:
    decays x MeV x J/MeV / (density [g/cm3] x voxel volume [mm3] x 1e-6 kg/(g/cm3 mm3))."""
    sx, sy, sz = spacing_mm
    dose = np.asarray(decays, dtype=np.float64) * (float(alpha_mev_per_decay) * _J_PER_MEV / (sx * sy * sz * 1e-6))
    dose /= density_g_cm3
    return dose


#: Energy the core adds when a positron annihilates at rest: two photons of m_e c^2 (MeV).
ANNIHILATION_MEV = 2 * 0.51099895000


def mean_mev_per_decay(emissions: dict) -> float:
    """Expected energy (MeV) the core emits per decay with these emission arrays (its formula:
    local + beta_yield * mean of the inverse CDF + positron_yield * (mean of theirs + 2 m_e c^2)
    + sum of y * E over the lines). The alphas (``alpha_mev_per_decay``), which the Python layer
    adds at the decay site, are not included."""
    total = float(emissions["local_mev_per_decay"])
    beta_yield = float(emissions["beta_yield"])
    if beta_yield > 0:
        inv = np.asarray(emissions["beta_inv_cdf"], dtype=np.float64)
        total += beta_yield * float(np.mean(0.5 * (inv[1:] + inv[:-1])))
    pos_yield = float(emissions.get("positron_yield", 0.0))
    if pos_yield > 0:
        inv = np.asarray(emissions["positron_inv_cdf"], dtype=np.float64)
        total += pos_yield * (float(np.mean(0.5 * (inv[1:] + inv[:-1]))) + ANNIHILATION_MEV)
    e = np.asarray(emissions["line_energy_mev"], dtype=np.float64)
    y = np.asarray(emissions["line_yield"], dtype=np.float64)
    return total + float(np.sum(y * e))


def max_mev_per_decay(emissions: dict) -> float:
    """Upper bound of the energy (MeV) the core can emit in one decay with these emission arrays.

    A yield y is emitted floor(y) or ceil(y) times, so the bound is local + ceil(beta_yield) *
    max beta energy + ceil(positron_yield) * (max positron energy + 2 m_e c^2) + sum of ceil(y) *
    E over the lines (the core's own bound; alphas not included, as in :func:`mean_mev_per_decay`).
    """
    total = float(emissions["local_mev_per_decay"])
    beta_yield = float(emissions["beta_yield"])
    if beta_yield > 0:
        total += np.ceil(beta_yield) * float(np.max(emissions["beta_inv_cdf"]))
    pos_yield = float(emissions.get("positron_yield", 0.0))
    if pos_yield > 0:
        total += np.ceil(pos_yield) * (float(np.max(emissions["positron_inv_cdf"])) + ANNIHILATION_MEV)
    e = np.asarray(emissions["line_energy_mev"], dtype=np.float64)
    y = np.asarray(emissions["line_yield"], dtype=np.float64)
    total += float(np.sum(np.ceil(y) * e))
    return total
