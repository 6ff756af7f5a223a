"""The result of a transport run: dose, its uncertainty, energy balance and provenance.

=====================  ======================  =====  =========================================
attribute              layout                  unit   meaning
=====================  ======================  =====  =========================================
``dose_gy``            float64 [z, y, x]       Gy     absorbed dose to medium from *all* the
                                                      source's decays (``total_decays``)
``rel_uncertainty``    float64 [z, y, x]       1      relative 1-sigma standard error of the
                                                      voxel's mean (batch method); 1.0 where
                                                      nothing was deposited
``energy_balance``     dict of float           MeV    ``emitted_mev``, ``deposited_mev``,
                                                      ``escaped_mev`` per simulated decay;
                                                      emitted = deposited + escaped
``alpha_dose_gy``      float64 [z, y, x]       Gy     the part of ``dose_gy`` from alpha particles
                                                      and recoil nuclei (deposited at the decay
                                                      site, exact); zeros without alphas
``region_means``       dict or None            Gy     per region: ``mean_dose_gy`` (energy /
                                                      mass), ``rel_uncertainty`` (from the
                                                      batch means), ``mass_kg``, ``voxels``
``spacing_mm``,        3, 3 and 9 floats       mm     the phantom's grid (x, y, z order)
``origin_mm``,
``direction``
``backend``,           str, int, int, int,     s      what ran, how many decays, the seed, the
``histories``,         float                          batches and the transport wall time
``seed``,
``batches``,
``elapsed_s``
``provenance``         dict (JSON-able)       --      versions, settings, data and input hashes
=====================  ======================  =====  =========================================
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from rptdose._validate import frozen
from rptdose.errors import InputError

_ARRAYS = ("dose_gy", "rel_uncertainty")


class DoseOnGrid:
    """Read-only views shared by the dose results (this one and the fast methods'
    :class:`rptdose.fast.DoseResult`), over ``_dose_gy``, ``_region_means``, ``_provenance`` and
    the grid attributes ``spacing_mm``, ``origin_mm``, ``direction``."""

    _dose_gy: np.ndarray
    _region_means: dict[str, dict[str, Any]] | None
    _provenance: dict[str, Any]
    spacing_mm: tuple[float, ...]
    origin_mm: tuple[float, ...]
    direction: tuple[float, ...]

    @property
    def region_means(self) -> dict[str, dict[str, Any]] | None:
        """Per-region mean dose and its uncertainty (a copy), or None when no regions were given."""
        return copy.deepcopy(self._region_means)

    @property
    def provenance(self) -> dict[str, Any]:
        """What produced this result: versions, settings, data and input hashes (a copy)."""
        return copy.deepcopy(self._provenance)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape (nz, ny, nx)."""
        return tuple(int(n) for n in self._dose_gy.shape)  # type: ignore[return-value]

    @property
    def geometry(self) -> dict[str, tuple]:
        """{"shape", "spacing_mm", "origin_mm", "direction"} of the dose grid."""
        return {"shape": self.shape, "spacing_mm": self.spacing_mm, "origin_mm": self.origin_mm,
                "direction": self.direction}


class SimulationResult(DoseOnGrid):
    """Dose and uncertainty on the phantom's grid, with the run's energy balance and provenance.

    Made by :func:`rptdose.simulate` or :func:`rptdose.load_result`; see the module docstring for
    the attributes. Arrays are read-only.
    """

    def __init__(self, *, dose_gy: np.ndarray, rel_uncertainty: np.ndarray, energy_balance: dict[str, float],
                 backend: str, histories: int, seed: int, batches: int, elapsed_s: float,
                 provenance: dict[str, Any], spacing_mm: tuple[float, float, float],
                 origin_mm: tuple[float, float, float], direction: tuple[float, ...],
                 region_means: dict[str, dict[str, float]] | None = None, alpha_dose_gy: np.ndarray | None = None):
        self._dose_gy = frozen(np.ascontiguousarray(dose_gy, dtype=np.float64))
        self._alpha_dose_gy = None
        if alpha_dose_gy is not None:
            a = np.ascontiguousarray(alpha_dose_gy, dtype=np.float64)
            if a.shape != self._dose_gy.shape:
                raise InputError(f"alpha_dose_gy (shape {a.shape}): expected the dose's shape {self._dose_gy.shape}")
            self._alpha_dose_gy = frozen(a)
        self._rel_uncertainty = frozen(np.ascontiguousarray(rel_uncertainty, dtype=np.float64))
        self._energy_balance = {k: float(v) for k, v in energy_balance.items()}
        self.backend = str(backend)
        self.histories = int(histories)
        self.seed = int(seed)
        self.batches = int(batches)
        self.elapsed_s = float(elapsed_s)
        self._provenance = provenance
        self.spacing_mm = tuple(float(v) for v in spacing_mm)
        self.origin_mm = tuple(float(v) for v in origin_mm)
        self.direction = tuple(float(v) for v in direction)
        self._region_means = region_means

    # ---- data ------------------------------------------------------------------------------
    @property
    def dose_gy(self) -> np.ndarray:
        """Absorbed dose to medium (Gy), float64 [z, y, x], read-only."""
        return self._dose_gy

    @property
    def alpha_dose_gy(self) -> np.ndarray:
        """The part of :attr:`dose_gy` from alpha particles and recoil nuclei (Gy), float64
        [z, y, x], read-only: deposited in the decay voxels, computed exactly (not sampled); all
        zeros for a source without alphas."""
        if self._alpha_dose_gy is None:
            return np.broadcast_to(np.float64(0.0), self._dose_gy.shape)
        return self._alpha_dose_gy

    @property
    def rel_uncertainty(self) -> np.ndarray:
        """Relative 1-sigma standard error of each voxel's dose, float64 [z, y, x], read-only."""
        return self._rel_uncertainty

    @property
    def energy_balance(self) -> dict[str, float]:
        """``{"emitted_mev", "deposited_mev", "escaped_mev"}`` per simulated decay (a copy)."""
        return dict(self._energy_balance)

    # ---- helpers ---------------------------------------------------------------------------
    def to_sitk(self, name: str = "dose_gy") -> Any:
        """``"dose_gy"`` or ``"rel_uncertainty"`` as a SimpleITK image on the phantom's grid."""
        from rptdose.phantom import grid_to_sitk

        if name == "alpha_dose_gy":
            from rptdose.phantom import grid_to_sitk

            return grid_to_sitk(np.ascontiguousarray(self.alpha_dose_gy), self.shape, self.spacing_mm, self.origin_mm,
                                self.direction, name=name)
        if name not in _ARRAYS:
            raise InputError(f"name {name!r} (unknown array): expected one of {', '.join(_ARRAYS)}")
        return grid_to_sitk(getattr(self, name), self.shape, self.spacing_mm, self.origin_mm, self.direction,
                            name=name)

    def save(self, path: Any) -> Any:
        """Write this result to an HDF5 file (atomically; see :mod:`rptdose.io.hdf5`).

        Returns the path written (a pathlib.Path). Nothing is written if saving fails.
        """
        from rptdose.io.hdf5 import write_result

        return write_result(path, self._fields())

    def _fields(self) -> dict[str, Any]:
        return {"dose_gy": self._dose_gy, "rel_uncertainty": self._rel_uncertainty,
                "alpha_dose_gy": self._alpha_dose_gy, "energy_balance": self._energy_balance, "region_means": self._region_means,
                "backend": self.backend, "histories": self.histories, "seed": self.seed,
                "batches": self.batches, "elapsed_s": self.elapsed_s, "provenance": self._provenance,
                "spacing_mm": self.spacing_mm, "origin_mm": self.origin_mm, "direction": self.direction}

    def __repr__(self) -> str:
        eb = self._energy_balance
        return (f"SimulationResult(shape={self.shape}, backend={self.backend!r}, histories={self.histories}, "
                f"seed={self.seed}, max dose {float(self._dose_gy.max()):.4g} Gy, "
                f"emitted {eb.get('emitted_mev', float('nan')):.6g} MeV/decay)")


def load_result(path: Any) -> SimulationResult:
    """Read a result saved with :meth:`SimulationResult.save`.

    Raises InputError naming the file if it is missing, not an rptdose result, or of another
    ``format_version``.
    """
    from rptdose.io.hdf5 import read_result

    return SimulationResult(**read_result(path))
