"""The result of a fast dose method (local deposition, voxel S-value convolution, sphere model).

=====================  ======================  =====  =========================================
attribute              layout                  unit   meaning
=====================  ======================  =====  =========================================
``method``             str                     --     ``"ldm"``, ``"vsv"`` or ``"sphere"``
``dose_gy``            float64 [z, y, x]       Gy     absorbed dose from *all* the source's
                                                      decays
``rel_uncertainty``    float64 [z, y, x]       1      relative 1-sigma statistical uncertainty
                       or None                        that the method carries (the kernel's
                                                      Monte Carlo noise for ``vsv``); None when
                                                      the method has none (``ldm``). Not the
                                                      method's systematic error.
``region_means``       dict or None            Gy     per region: ``mean_dose_gy`` (energy /
                                                      mass), ``rel_uncertainty`` (float or
                                                      None), ``mass_kg``, ``voxels``, and
                                                      method-specific entries
``spacing_mm``,        3, 3 and 9 floats       mm     the phantom's grid (x, y, z order)
``origin_mm``,
``direction``
``elapsed_s``          float                   s      wall time of the method
``provenance``         dict (JSON-able)        --     method, settings, versions, input hashes
=====================  ======================  =====  =========================================

The attributes mirror :class:`rptdose.SimulationResult`, so that code which reads one reads the
other (a future ``rptdose run --method`` dispatches to these functions). :meth:`DoseResult.save`
writes the rptdose result file format (``rd.load_result`` reads it back as a SimulationResult,
``backend`` = ``"method:<name>"``, ``histories`` 0, and ``rel_uncertainty`` NaN where the method
has none).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rptdose._validate import frozen
from rptdose.errors import InputError
from rptdose.transport.result import DoseOnGrid
from rptdose.transport.simulate import J_PER_MEV, check_phantom_source, input_hashes

__all__ = ["DoseResult", "J_PER_MEV", "base_provenance", "check_phantom_source", "region_table"]



class DoseResult(DoseOnGrid):
    """Dose of a fast method on the phantom's grid; see the module docstring (region_means,
    provenance, shape, geometry: :class:`rptdose.transport.result.DoseOnGrid`)."""

    def __init__(self, *, method: str, dose_gy: np.ndarray, rel_uncertainty: np.ndarray | None,
                 provenance: dict[str, Any], spacing_mm, origin_mm, direction, elapsed_s: float,
                 region_means: dict[str, dict[str, Any]] | None = None):
        self.method = str(method)
        self._dose_gy = frozen(np.ascontiguousarray(dose_gy, dtype=np.float64))
        self._rel_uncertainty = (None if rel_uncertainty is None
                                 else frozen(np.ascontiguousarray(rel_uncertainty, dtype=np.float64)))
        self._provenance = provenance
        self.spacing_mm = tuple(float(v) for v in spacing_mm)
        self.origin_mm = tuple(float(v) for v in origin_mm)
        self.direction = tuple(float(v) for v in direction)
        self.elapsed_s = float(elapsed_s)
        self._region_means = region_means

    @property
    def dose_gy(self) -> np.ndarray:
        """Absorbed dose (Gy), float64 [z, y, x], read-only."""
        return self._dose_gy

    @property
    def rel_uncertainty(self) -> np.ndarray | None:
        """Relative 1-sigma statistical uncertainty per voxel, or None (read-only)."""
        return self._rel_uncertainty

    def to_sitk(self, name: str = "dose_gy") -> Any:
        """``"dose_gy"`` or ``"rel_uncertainty"`` as a SimpleITK image on the phantom's grid."""
        from rptdose.phantom import grid_to_sitk

        if name not in ("dose_gy", "rel_uncertainty"):
            raise InputError(f"name {name!r} (unknown array): expected 'dose_gy' or 'rel_uncertainty'")
        arr = getattr(self, name)
        if arr is None:
            raise InputError(f"name {name!r} (the {self.method} method has no uncertainty map): expected "
                             "'dose_gy'")
        return grid_to_sitk(arr, self.shape, self.spacing_mm, self.origin_mm, self.direction, name=name)

    def save(self, path: Any) -> Any:
        """Write the result in rptdose's HDF5 result format (atomically); returns the path."""
        from rptdose.io.hdf5 import write_result

        rel = self._rel_uncertainty
        if rel is None:
            rel = np.full(self.shape, np.nan)
        fields = {"dose_gy": self._dose_gy, "rel_uncertainty": rel, "energy_balance": {},
                  "region_means": self._region_means, "backend": f"method:{self.method}", "histories": 0,
                  "seed": int(self._provenance.get("seed", 0) or 0), "batches": 0, "elapsed_s": self.elapsed_s,
                  "provenance": self._provenance, "spacing_mm": self.spacing_mm, "origin_mm": self.origin_mm,
                  "direction": self.direction}
        return write_result(path, fields)

    def __repr__(self) -> str:
        return (f"DoseResult(method={self.method!r}, shape={self.shape}, max dose "
                f"{float(self._dose_gy.max()):.4g} Gy)")


# ---- helpers shared by the methods ---------------------------------------------------------
# (the input check, check_phantom_source, and the input hashes are rd.simulate's)
def base_provenance(method: str, phantom: Any, source: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """Provenance common to the methods: versions, the nuclide, the input hashes, the settings."""
    import platform
    from datetime import datetime, timezone

    from rptdose._provenance import rptdose_version

    return {
        "rptdose_version": rptdose_version(),
        "method": method,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "nuclide": {"name": source.nuclide, "half_life_s": source.half_life_s,
                    "monoenergetic": source.is_monoenergetic},
        "total_decays": source.total_decays,
        "geometry": {"shape": list(phantom.shape), "spacing_mm": list(phantom.spacing_mm),
                     "origin_mm": list(phantom.origin_mm), "direction": list(phantom.direction)},
        "inputs_sha256": input_hashes(phantom, source),
        "settings": settings,
        "python": platform.python_version(),
        "numpy_version": np.__version__,
    }


def region_table(masks: dict[str, np.ndarray] | None, dose_gy: np.ndarray, mass_kg: np.ndarray,
                 rel_uncertainty: dict[str, float | None] | None = None) -> dict[str, dict[str, Any]] | None:
    """Mass-weighted mean dose per region (energy / mass) with the given relative uncertainties."""
    if masks is None:
        return None
    out = {}
    for name, m in masks.items():
        mass = float(np.sum(mass_kg[m]))
        energy = float(np.sum(mass_kg[m] * dose_gy[m]))
        out[name] = {"mean_dose_gy": energy / mass if mass > 0 else float("nan"),
                     "rel_uncertainty": None if rel_uncertainty is None else rel_uncertainty.get(name),
                     "mass_kg": mass, "voxels": int(np.count_nonzero(m))}
    return out
