"""Batch-wise runs: checkpointed (``checkpoint=PATH``) and distributed (``scheduler=...``).

Both take the batch loop's export mode (csrc/host/driver.hpp): batches are run by a
``PreparedRun`` (here, or on Dask workers: :mod:`rptdose.transport.distributed`), their
integer tallies folded here, in batch order, by ``_core.TallyState`` (csrc/host/tally_state.hpp,
the CPU backend's own fold). So the result is the in-process run's bit for bit, whichever way
the batches were run, and the state after each batch is all a checkpoint needs
(:mod:`rptdose.transport.checkpoint`).

:func:`run_batched` returns the dict of the backends' runners (docs/core_contract.md) plus
``batched``: how the batches were run (for provenance).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rptdose.errors import BackendUnavailableError, RptdoseError
from rptdose.transport import checkpoint as ckpt
from rptdose.transport.backends import prepared_class

def _batch_histories(histories: int, batches: int, first: int, end: int) -> int:
    """Histories in batches [first, end) (the core's split, physics/batch.hpp batch_range)."""
    from rptdose import _core

    return int(_core.batch_sizes(int(histories), int(batches))[first:end].sum())


def run_batched(*, backend: str, density: np.ndarray, material: np.ndarray, spacing_mm: tuple, decays: np.ndarray,
                tables: dict, emissions: dict, histories: int, seed: int, batches: int, threads: int,
                electron_transport: bool, regions: np.ndarray | None, progress: Callable[[int], Any] | None,
                scheduler: Any, checkpoint: Path | None, identity: dict) -> dict:
    """Run (or resume) ``histories`` in ``batches`` batches here or on ``scheduler``; fold in order."""
    from rptdose import _core

    t0 = time.perf_counter()
    shape = tuple(int(s) for s in density.shape)
    state = _core.TallyState(shape, int(batches), regions)
    start = ckpt.load(checkpoint, identity, state) if checkpoint is not None else 0
    done0 = _batch_histories(histories, batches, 0, start)
    if progress is not None and start > 0:
        progress(done0)

    def fold(b: int, tally: np.ndarray, emitted: int, escaped: int) -> None:
        state.fold(int(b), tally, int(histories), int(emitted), int(escaped), threads=threads)
        if checkpoint is not None:
            ckpt.save(checkpoint, identity, state, histories)

    info: dict[str, Any] = {"checkpoint": None if checkpoint is None else str(checkpoint),
                            "resumed_from_batch": start}
    if start < batches:
        if scheduler is None:
            run = prepared_class(backend)(density, material, spacing_mm, decays, tables, emissions,
                                           bool(electron_transport))
            cb = None if progress is None else (lambda done: progress(done0 + done))
            run.run_batches(int(histories), int(seed), int(batches), start, int(batches), threads=threads,
                            progress=cb, on_batch=fold)
        else:
            info.update(_run_distributed(scheduler, backend, density, material, spacing_mm, decays, tables, emissions,
                                         histories, seed, batches, threads, electron_transport, start, fold,
                                         progress, done0, identity, state))
    out = state.finish(int(histories), threads=threads)
    out["elapsed_s"] = time.perf_counter() - t0
    out["batched"] = info
    return out


def _run_distributed(scheduler: Any, backend: str, density: np.ndarray, material: np.ndarray, spacing_mm: tuple,
                     decays: np.ndarray, tables: dict, emissions: dict, histories: int, seed: int, batches: int,
                     threads: int, electron_transport: bool, start: int, fold: Callable, progress: Any,
                     done0: int, identity: dict, state: Any) -> dict:
    from rptdose.transport import distributed as dist

    cluster = dist.Cluster(scheduler, threads or None)
    futures: list = []
    try:
        from distributed import as_completed

        workers = cluster.workers()
        if not workers:
            raise BackendUnavailableError(f"scheduler {cluster.address!r} (no workers connected): expected at "
                                          "least one Dask worker")
        key = ckpt.run_key(identity)
        payload = {"density": density, "material": material, "spacing_mm": tuple(spacing_mm), "decays": decays,
                   "tables": tables, "emissions": emissions, "electron_transport": bool(electron_transport)}
        # sent once to every worker; each unit then refers to the copy already there
        [payload_ref] = cluster.client.scatter([payload], broadcast=True, hash=False)
        units = dist.unit_ranges(batches, sum(workers.values()), start)
        versions = dist.client_versions()
        host_slots = cluster.host_slots()
        futures = [cluster.client.submit(dist.run_unit, key, payload_ref, versions, int(histories), int(seed),
                                         int(batches), b0, b1, cluster.omp_threads, backend, host_slots, pure=False)
                   for b0, b1 in units]
        pending: dict[int, dict] = {}
        next_unit = start
        folded_units = 0
        n_voxels = int(np.prod(density.shape))
        ran_on: dict[str, int] = {}
        for fut in as_completed(futures):
            try:
                res = fut.result()
            except dist.WorkerMismatch as exc:
                raise BackendUnavailableError(f"Dask worker cannot run this transport: {exc}") from None
            except RptdoseError:
                raise
            except Exception as exc:  # a worker lost too often, a worker without rptdose, ...
                raise BackendUnavailableError(f"distributed transport failed on a worker ({type(exc).__name__}: "
                                              f"{exc}); the batches folded so far are kept in the checkpoint if "
                                              "one was given") from None
            pending[res["first"]] = res
            where = f"{_who_ran(cluster.client, fut)} ({res['backend']})"
            ran_on[where] = ran_on.get(where, 0) + 1
            while next_unit in pending:
                unit = pending.pop(next_unit)
                for b, idx, values, emitted, escaped in unit["batches"]:
                    fold(b, dist.dense(n_voxels, idx, values), emitted, escaped)
                folded_units += 1
                next_unit = unit["end"]
                if progress is not None:
                    progress(done0 + _batch_histories(histories, batches, start, next_unit))
        if state.next_batch != batches:  # cannot happen unless a unit went missing
            raise BackendUnavailableError(f"distributed transport ended with {state.next_batch} of {batches} "
                                          "batches folded")
        return {"scheduler": cluster.address, "workers": sorted(workers), "worker_threads": workers,
                "units": len(units), "unit_batches": [list(u) for u in units],
                "threads_per_unit": cluster.omp_threads, "units_per_worker": ran_on,
                "worker_backends": sorted({w.rsplit("(", 1)[-1].rstrip(")") for w in ran_on})}
    finally:
        for f in futures:
            if not f.done():
                f.cancel()
        cluster.close()


def _who_ran(client: Any, fut: Any) -> str:
    """The worker that holds a finished unit's result (where it ran), or '?'."""
    try:
        who = client.who_has([fut]).get(fut.key, ())
        return str(next(iter(who))) if who else "?"
    except Exception:  # provenance only: never fail a finished run for it
        return "?"
