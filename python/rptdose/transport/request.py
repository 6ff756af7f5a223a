"""The one request type of every transport backend (docs/core_contract.md).

:func:`rptdose.simulate` builds one :class:`RunRequest` from its checked arguments and hands it
to the chosen backend's runner (``runner(request) -> dict``): ``_core.simulate_cpu``,
``_core_cuda.simulate_cuda``, the cupy backend's ``simulate_cupy`` and their CPU emulations
take it whole, and the C++ side reads its fields in one place
(``csrc/bindings/run_args.hpp`` ``parse_request``). The result is the one dict that
``run_args.hpp`` ``result_dict`` builds for every backend (:data:`RESULT_KEYS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

#: Keys of every runner's result dict (GPU runners add ``launch`` and ``device``; checkpointed or
#: distributed runs add ``batched``; ``region_batch_edep_mev`` only with regions).
RESULT_KEYS = ("edep_mev", "rel_uncertainty", "emitted_mev", "deposited_mev", "escaped_mev", "emitted_units",
               "deposited_units", "escaped_units", "energy_unit_mev", "region_batch_edep_mev", "threads_used",
               "elapsed_s", "max_mev_per_decay", "mean_mev_per_decay", "precision")


@dataclass(frozen=True)
class RunRequest:
    """Everything a backend needs for one run (units and layouts: docs/core_contract.md).

    ``density`` float32 [z, y, x] g/cm3; ``material`` int32 [z, y, x] indices into the tables;
    ``spacing_mm`` (sx, sy, sz); ``decays`` float64 [z, y, x] relative source weights;
    ``tables`` / ``emissions`` the dicts of ``transport_tables`` / ``emission_arrays``;
    ``histories`` >= ``batches`` >= 10; ``seed`` uint64; ``threads`` CPU threads (0 = all);
    ``electron_transport``; ``regions`` int32 labels 0..R-1, -1 none, or None; ``progress``
    callable(histories_done) or None; GPU launch shape ``grid_dim`` x ``block_dim`` (0 = from the
    kernel's occupancy) and ``chunk`` histories per launch (0 = sized by time); ``precision``
    "double" or "single" of the transport (tables and arithmetic; the tallies stay integer);
    ``gpu_transport`` "wavefront" (particle queues, one step per launch: docs/gpu_backends.md)
    or "history" (one thread per history), for the cuda backend and its emulation (the cupy
    backend runs "history"); ``queue_capacity`` particles per wavefront queue (0 = from the
    device's free memory).
    """

    density: np.ndarray
    material: np.ndarray
    spacing_mm: tuple[float, float, float]
    decays: np.ndarray
    tables: dict
    emissions: dict
    histories: int
    seed: int = 1
    batches: int = 10
    threads: int = 0
    electron_transport: bool = True
    regions: np.ndarray | None = None
    progress: Callable[[int], Any] | None = None
    grid_dim: int = 0
    block_dim: int = 0
    chunk: int = 0
    precision: str = "double"
    gpu_transport: str = "wavefront"
    queue_capacity: int = 0

    def with_(self, **changes: Any) -> RunRequest:
        """A copy with some fields changed (e.g. ``request.with_(seed=2)``)."""
        return replace(self, **changes)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in np.shape(self.density))  # type: ignore[return-value]
