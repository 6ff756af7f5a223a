"""The source: what decays (a nuclide, or a monoenergetic emitter) and where.

==================  ===================  ======  ==============================================
quantity            layout               unit    notes
==================  ===================  ======  ==============================================
``decays``          float64 [z, y, x]    --      decays per voxel = time-integrated activity
                                                 (Bq*s); finite, >= 0, total > 0
``total_decays``    float                --      sum of ``decays``: the dose is for all of them
``nuclide``         str                  --      e.g. ``"Lu-177"``, or
                                                 ``"mono-photon-0.20837MeV"``
==================  ===================  ======  ==============================================

The transport samples ``histories`` decays from the map (its proportions only) and scales the
tallies to ``total_decays``.
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
    nuclide : str or Nuclide
        An ICRP-107 nuclide name (``"Lu-177"``, ``"lu177"``, ``"177Lu"``, ...) or a
        :class:`rptdose.physics.nuclides.Nuclide`.
    decays : array [z, y, x]
        Decays per voxel (time-integrated activity, Bq*s), finite and >= 0 with a positive total,
        on the phantom's grid.
    """

    def __init__(self, nuclide: Any, decays: Any):
        from rptdose.physics.nuclides import Nuclide, load_nuclide

        if isinstance(nuclide, Nuclide):
            self._nuclide = nuclide
        elif isinstance(nuclide, str):
            self._nuclide = load_nuclide(nuclide)  # InputError naming the nuclide if unknown
        else:
            raise InputError(f"nuclide {describe(nuclide)} (of type {type(nuclide).__name__}): expected a "
                             "nuclide name such as 'Lu-177' or a rptdose.physics.nuclides.Nuclide")
        self._name = str(self._nuclide.name)
        self._mono: tuple[str, float] | None = None
        self._decays = check_decays(decays)
        self._total = float(self._decays.sum(dtype=np.float64))

    @classmethod
    def monoenergetic(cls, kind: str, energy_mev: float, decays: Any) -> Source:
        """One particle of ``kind`` (``"photon"`` or ``"electron"``) of ``energy_mev`` per decay.

        For validation (dose point kernels, S-values) and kernels. ``energy_mev`` within the
        physics tables' range (0.001..3 MeV).
        """
        from rptdose.physics.nuclides import monoenergetic_emissions

        if not isinstance(kind, str) or kind.strip().lower() not in ("photon", "electron"):
            raise InputError(f"kind {kind!r} (unknown): expected 'photon' or 'electron'")
        kind = kind.strip().lower()
        energy = as_float("energy_mev", energy_mev)
        monoenergetic_emissions(kind, energy, EL_CUT_MEV, PH_CUT_MEV)  # InputError naming energy_mev
        self = cls.__new__(cls)
        self._nuclide = None
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

    def __repr__(self) -> str:
        return f"Source({self._name!r}, shape={self.shape}, total_decays={self._total:.6g})"


def mean_mev_per_decay(emissions: dict) -> float:
    """Expected energy (MeV) one decay emits with these emission arrays (the core's formula:
    local + beta_yield * mean of the inverse CDF + sum of y * E over the lines)."""
    total = float(emissions["local_mev_per_decay"])
    beta_yield = float(emissions["beta_yield"])
    if beta_yield > 0:
        inv = np.asarray(emissions["beta_inv_cdf"], dtype=np.float64)
        total += beta_yield * float(np.mean(0.5 * (inv[1:] + inv[:-1])))
    e = np.asarray(emissions["line_energy_mev"], dtype=np.float64)
    y = np.asarray(emissions["line_yield"], dtype=np.float64)
    return total + float(np.sum(y * e))


def max_mev_per_decay(emissions: dict) -> float:
    """Upper bound of the energy (MeV) one decay can emit with these emission arrays.

    A yield y is emitted floor(y) or ceil(y) times, so the bound is local + ceil(beta_yield) *
    max beta energy + sum of ceil(y) * E over the lines (the core's own bound).
    """
    total = float(emissions["local_mev_per_decay"])
    beta_yield = float(emissions["beta_yield"])
    if beta_yield > 0:
        total += np.ceil(beta_yield) * float(np.max(emissions["beta_inv_cdf"]))
    e = np.asarray(emissions["line_energy_mev"], dtype=np.float64)
    y = np.asarray(emissions["line_yield"], dtype=np.float64)
    total += float(np.sum(np.ceil(y) * e))
    return total
