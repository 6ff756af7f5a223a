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
from rptdose.transport.request import RunRequest

def _batch_histories(histories: int, batches: int, first: int, end: int) -> int:
    """Histories in batches [first, end) (the core's split, physics/batch.hpp batch_range)."""
    from rptdose import _core

    return int(_core.batch_sizes(int(histories), int(batches))[first:end].sum())


def run_batched(request: RunRequest, *, backend: str, scheduler: Any, checkpoint: Path | None,
                identity: dict) -> dict:
    """Run (or resume) ``request`` batch by batch here or on ``scheduler``; fold in batch order.

    ``backend``: "cpu" or "cuda" here; with a scheduler the backend every worker runs
    ("auto": cuda when every worker has a usable GPU, else cpu; one backend for all units, so the
    tallies are those of an in-process run on it). The backend that made the tallies is part of
    the checkpoint's identity (``tally_backend``): a checkpoint is resumed only on the same one.
    """
    from rptdose import _core

    t0 = time.perf_counter()
    histories, batches, threads, progress = int(request.histories), int(request.batches), int(request.threads), \
        request.progress
    cluster = None
    if scheduler is not None:
        from rptdose.transport import distributed as dist

        cluster = dist.Cluster(scheduler, threads or None)
    try:
        if cluster is not None:
            backend = cluster.resolve_backend(backend)
        identity = dict(identity, tally_backend=backend)
        state = _core.TallyState(request.shape, batches, request.regions)
        start = ckpt.load(checkpoint, identity, state) if checkpoint is not None else 0
        done0 = _batch_histories(histories, batches, 0, start)
        if progress is not None and start > 0:
            progress(done0)

        def fold(b: int, tally: np.ndarray, emitted: int, escaped: int) -> None:
            state.fold(int(b), tally, histories, int(emitted), int(escaped), threads=threads)
            if checkpoint is not None:
                ckpt.save(checkpoint, identity, state, histories)

        info: dict[str, Any] = {"checkpoint": None if checkpoint is None else str(checkpoint),
                                "resumed_from_batch": start, "tally_backend": backend}
        if start < batches:
            if cluster is None:
                run = prepared_class(backend)(request)
                cb = None if progress is None else (lambda done: progress(done0 + done))
                run.run_batches(histories, int(request.seed), batches, start, batches, threads=threads, progress=cb,
                                on_batch=fold)
            else:
                info.update(_run_distributed(request, cluster, backend, start, fold, done0, identity, state))
        elif cluster is not None:
            info.update(scheduler=cluster.address, workers=sorted(cluster.workers()), units=0)
    finally:
        if cluster is not None:
            cluster.close()
    out = state.finish(histories, threads=threads)
    out["precision"] = request.precision  # PreparedRun runs the request's precision
    out["elapsed_s"] = time.perf_counter() - t0
    out["batched"] = info
    return out


def _run_distributed(request: RunRequest, cluster: Any, backend: str, start: int, fold: Callable, done0: int,
                     identity: dict, state: Any) -> dict:
    from rptdose.transport import distributed as dist

    histories, batches, progress = int(request.histories), int(request.batches), request.progress
    futures: list = []
    try:
        workers = cluster.workers()
        key = ckpt.run_key(identity)
        # what the workers need (no progress callable, no region labels: those stay here), sent once
        # to every worker; each unit then refers to the copy already there
        payload = request.with_(progress=None, regions=None)
        [payload_ref] = cluster.client.scatter([payload], broadcast=True, hash=False)
        units = dist.unit_ranges(batches, sum(workers.values()), start)
        versions = dist.client_versions()
        host_slots = cluster.host_slots()
        futures = [cluster.client.submit(dist.run_unit, key, payload_ref, versions, b0, b1, cluster.omp_threads,
                                         backend, host_slots, pure=False)
                   for b0, b1 in units]
        n_voxels = int(np.prod(request.shape))
        ran_on: dict[str, int] = {}
        unit_threads: set[int] = set()
        # fetched and folded in batch order (the order of the fold): a finished unit's result waits
        # on its worker until its turn, the client holds one unit at a time, and each unit is
        # released once folded (the worker frees it, and a worker lost later does not have it
        # recomputed)
        for i, fut in enumerate(futures):
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
            where = _who_ran(cluster.client, fut)
            ran_on[where] = ran_on.get(where, 0) + 1
            unit_threads.add(int(res["threads"]))
            for b, idx, values, emitted, escaped in res["batches"]:
                fold(b, dist.dense(n_voxels, idx, values), emitted, escaped)
            del res
            fut.release()
            futures[i] = None
            if progress is not None:
                progress(done0 + _batch_histories(histories, batches, start, units[i][1]))
        if state.next_batch != batches:  # cannot happen unless a unit went missing
            raise BackendUnavailableError(f"distributed transport ended with {state.next_batch} of {batches} "
                                          "batches folded")
        return {"scheduler": cluster.address, "workers": sorted(workers), "worker_threads": workers,
                "units": len(units), "unit_batches": [list(u) for u in units],
                "threads_per_unit": sorted(unit_threads), "units_per_worker": ran_on}
    finally:
        for f in futures:
            if f is not None and not f.done():
                f.cancel()


def _who_ran(client: Any, fut: Any) -> str:
    """The worker that holds a finished unit's result (where it ran), or '?'."""
    try:
        who = client.who_has([fut]).get(fut.key, ())
        return str(next(iter(who))) if who else "?"
    except Exception:  # provenance only: never fail a finished run for it
        return "?"
