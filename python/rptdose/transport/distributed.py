"""Transport on a Dask cluster: ``rd.simulate(..., scheduler=...)`` (needs ``rptdose[distributed]``).

=========================  ================================================================
``scheduler``              what runs the batches
=========================  ================================================================
``None``                   this process (no Dask)
``"local:N"``              a ``distributed.LocalCluster`` of N worker processes on this
                           machine, started for the run and closed after it
``"tcp://host:port"``      the Dask scheduler at that address (also ``tls://``, ``ws://``,
                           ``wss://``, ``inproc://``): a cluster started by hand, by
                           dask-jobqueue on SLURM/PBS, or by dask-cuda (one worker per GPU)
a ``distributed.Client``   that client's cluster (left open)
=========================  ================================================================

A *work unit* is a contiguous range of batches (seed and history ranges follow from the batch
numbers, physics/batch.hpp). The run's inputs (phantom, source, physics tables, emissions) are
sent to every worker once (``Client.scatter(..., broadcast=True)``); each worker builds the
run (``_core.PreparedRun``: checks, alias table of the source, photon majorant) once and keeps
it for the following units, keyed by the run key (:func:`worker_run`). A unit returns each
batch's integer tally (sparse: the voxels hit); the client folds them in batch order
(``_core.TallyState``, the CPU backend's own fold), so the dose is the in-process run's bit for
bit and the uncertainty equal. A unit lost with its worker is recomputed by Dask elsewhere; a
batch is folded once only (the fold refuses any batch but the next one).

Each worker checks that it runs the client's rptdose and core versions and has the compiled
core; a mismatch stops the run with an error naming the worker.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from rptdose.errors import BackendUnavailableError, InputError

#: Seconds to wait for a scheduler before saying it is unreachable.
CONNECT_TIMEOUT_S = 10
#: Runs a worker keeps built (each holds the phantom, tables and the source's alias table).
WORKER_CACHE_RUNS = 2

#: The address schemes of a Dask scheduler that ``scheduler=``, ``dose.scheduler`` and
#: ``--scheduler`` accept.
SCHEDULER_SCHEMES = ("tcp://", "tls://", "ws://", "wss://", "inproc://")
SCHEDULER_EXPECTED = ('"local:N" (a Dask cluster of N >= 1 workers on this machine) or the address of a Dask '
                      f"scheduler starting with {', '.join(SCHEDULER_SCHEMES[:-1])} or {SCHEDULER_SCHEMES[-1]} "
                      '(e.g. "tcp://10.0.0.5:8786")')


def scheduler_problem(value: Any) -> str | None:
    """What is wrong with a scheduler setting (``dose.scheduler``, ``--scheduler``), or None when
    it is a valid ``"local:N"`` or scheduler address (:data:`SCHEDULER_EXPECTED`). Only the form
    is checked here; whether the scheduler answers is the transport's business."""
    if not isinstance(value, str):
        return f"of type {type(value).__name__}, not a string"
    if not value.strip():
        return "empty"
    if value != value.strip() or any(ch.isspace() for ch in value):
        return "contains white space"
    if value.startswith("local:"):
        n = value[len("local:"):]
        if not n.isdigit() or not n.isascii():
            return f"'{n}' after 'local:' is not a whole number"
        if int(n) < 1:
            return "no workers"
        return None
    scheme = next((s for s in SCHEDULER_SCHEMES if value.startswith(s)), None)
    if scheme is None:
        return "neither 'local:N' nor an address with a known scheme"
    if len(value) == len(scheme):
        return "no host after the scheme"
    return None


def check_scheduler(value: Any, what: str = "scheduler") -> Any:
    """``value`` if it is a valid scheduler setting (:func:`scheduler_problem`; also None and a
    ``distributed.Client``), else InputError naming ``what`` (e.g. "--scheduler"), the value and
    what was expected."""
    if value is None or (type(value).__name__ == "Client" and hasattr(value, "submit")):
        return value
    why = scheduler_problem(value)
    if why is not None:
        raise InputError(f"{what} {value!r} ({why}): expected {SCHEDULER_EXPECTED}")
    return value


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise BackendUnavailableError(f"scheduler needs Dask distributed, which is not installed ({exc}): "
                                      "pip install 'rptdose[distributed]'") from None
    return distributed


class Cluster:
    """A connected client, and the cluster this run started (closed by :meth:`close`)."""

    def __init__(self, scheduler: Any, threads: int | None):
        distributed = _import_distributed()
        self._own_cluster = None
        self._own_client = False
        # OpenMP threads per unit; None: decided on the worker (run_unit: its host's CPUs over the
        # task slots on that host)
        self.omp_threads = threads
        if isinstance(scheduler, str) and scheduler.startswith("local:"):
            n = int(scheduler.split(":")[1])
            # one task at a time per worker process; its OpenMP threads share the CPUs (run_unit)
            self._own_cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                         dashboard_address=":0", silence_logs=40)
            self.client = distributed.Client(self._own_cluster)
            self._own_client = True
            self.address = scheduler
        elif isinstance(scheduler, str):
            try:
                self.client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                raise BackendUnavailableError(f"scheduler {scheduler!r} (unreachable within {CONNECT_TIMEOUT_S} s: "
                                              f"{type(exc).__name__}: {exc}): expected a running Dask scheduler at "
                                              "that address (dask scheduler, dask-jobqueue, dask-cuda)") from None
            self._own_client = True
            self.address = scheduler
        else:
            self.client = scheduler
            self.address = str(getattr(scheduler, "scheduler", None) and scheduler.scheduler.address)

    def workers(self) -> dict[str, int]:
        """{worker address: task threads} of the cluster now."""
        info = self.client.scheduler_info()
        return {addr: int(w.get("nthreads", 1)) for addr, w in info.get("workers", {}).items()}

    def host_slots(self) -> dict[str, int]:
        """{worker address: tasks that can run at once on that worker's host}: a unit's OpenMP
        threads are the host's CPUs over this, so workers sharing a machine do not oversubscribe it."""
        workers = self.client.scheduler_info().get("workers", {})
        per_host: dict[str, int] = {}
        for w in workers.values():
            per_host[str(w.get("host"))] = per_host.get(str(w.get("host")), 0) + int(w.get("nthreads", 1))
        return {addr: per_host[str(w.get("host"))] for addr, w in workers.items()}

    def resolve_backend(self, requested: str) -> str:
        """The one backend every worker runs: "cpu"; "cuda" (every worker must have a GPU); "auto":
        cuda when every worker has a usable GPU, else cpu. One backend for all units keeps the
        tallies those of an in-process run on it (GPU and CPU math libraries differ in the last bits)."""
        if not self.workers():
            raise BackendUnavailableError(f"scheduler {self.address!r} (no workers connected): expected at "
                                          "least one Dask worker")
        if requested == "cpu":
            return "cpu"
        if requested not in ("auto", "cuda"):
            raise InputError(f"backend {requested!r} with a scheduler: the Dask workers run the cpu or cuda "
                             "backend; pass 'cpu', 'cuda' or 'auto'")
        try:
            has = self.client.run(worker_has_cuda)
        except Exception as exc:  # a worker that cannot import rptdose at all
            raise BackendUnavailableError(f"scheduler {self.address!r}: a worker could not report its backends "
                                          f"({type(exc).__name__}: {exc}); install rptdose on every worker") from None
        without = {addr: why for addr, (ok, why) in has.items() if not ok}
        if requested == "cuda" and without:
            addr, why = next(iter(sorted(without.items())))
            raise BackendUnavailableError(f"backend 'cuda' with scheduler {self.address!r}: worker {addr} has no "
                                          f"usable GPU ({why}); expected a GPU on every worker (dask-cuda), or "
                                          "backend='cpu'")
        return "cuda" if not without else "cpu"

    def close(self) -> None:
        if self._own_client:
            self.client.close()
        if self._own_cluster is not None:
            self._own_cluster.close()


def unit_ranges(batches: int, workers: int, first: int = 0) -> list[tuple[int, int]]:
    """Batches [first, batches) cut into contiguous units of near-equal size (differing by at
    most one batch): about four per task slot (a lost or slow worker then costs a quarter of its
    share, and the slots finish close together), at least one batch each."""
    left = batches - first
    if left <= 0:
        return []
    n_units = min(left, max(1, 4 * max(1, workers)))
    bounds = [first + (left * i) // n_units for i in range(n_units + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(n_units)]


# ---------------------------------------------------------------- on the workers

_cache: OrderedDict[str, Any] = OrderedDict()
_cache_lock = threading.Lock()


def worker_has_cuda() -> tuple[bool, str]:
    """Whether this worker's CUDA backend can run (and why not)."""
    from rptdose.transport.backends import backends

    info = backends()["cuda"]
    return bool(info["available"]), str(info["reason"])


def check_worker_backend(backend: str) -> None:
    """WorkerMismatch unless this worker can run ``backend`` ("cpu" or "cuda")."""
    if backend == "cuda":
        ok, why = worker_has_cuda()
        if not ok:
            raise WorkerMismatch(f"backend 'cuda' unavailable on this worker ({why})")
    elif backend != "cpu":
        raise WorkerMismatch(f"backend {backend!r}: Dask workers run the cpu or cuda backend")


def worker_run(key: str, payload: Any, backend: str) -> Any:
    """The PreparedRun of run ``key`` on this worker's ``backend``: built from ``payload`` once,
    then kept for the following units (at most :data:`WORKER_CACHE_RUNS` runs)."""
    cache_key = f"{key}/{backend}"
    with _cache_lock:
        if cache_key in _cache:
            _cache.move_to_end(cache_key)
            return _cache[cache_key]
    from rptdose.transport.backends import prepared_class

    run = prepared_class(backend)(payload)
    with _cache_lock:
        _cache[cache_key] = run
        while len(_cache) > WORKER_CACHE_RUNS:
            _cache.popitem(last=False)
    return run


def worker_versions() -> dict[str, str | None]:
    """rptdose and core versions of this process (core None with the reason when it is missing)."""
    from rptdose._provenance import rptdose_version

    out: dict[str, str | None] = {"rptdose": rptdose_version(), "core": None, "core_error": None}
    try:
        from rptdose import _core

        out["core"] = str(_core.version())
    except ImportError as exc:
        out["core_error"] = str(exc)
    return out


def client_versions() -> dict[str, str | None]:
    """The versions every worker must run: this process's (:func:`worker_versions`)."""
    return worker_versions()


class WorkerMismatch(RuntimeError):
    """A worker that cannot run this client's units (raised on the worker, reported by the client)."""


def run_unit(key: str, payload: Any, versions: dict, first: int, end: int, threads: int | None,
             backend: str = "cpu", host_slots: dict | None = None) -> dict:
    """One work unit on a worker: batches [first, end) of the run ``payload`` (a RunRequest) as
    sparse integer tallies."""
    mine = worker_versions()
    if mine["core"] is None:
        raise WorkerMismatch(f"no compiled rptdose core on this worker ({mine['core_error']}); install rptdose "
                             "with its core here (pip install .)")
    if mine["rptdose"] != versions["rptdose"] or mine["core"] != versions["core"]:
        raise WorkerMismatch(f"rptdose {mine['rptdose']} (core {mine['core']}) on this worker, the client has "
                             f"{versions['rptdose']} (core {versions['core']}); install the same version everywhere")
    if threads is None:  # this host's CPUs shared by the tasks that can run on it at once
        from rptdose.resources import available_cpus

        slots = 1
        try:
            from distributed import get_worker

            me = get_worker()
            slots = int((host_slots or {}).get(me.address, me.state.nthreads))
        except (ImportError, ValueError, AttributeError):
            pass
        threads = max(1, available_cpus() // max(1, slots))
    check_worker_backend(backend)
    run = worker_run(key, payload, backend)
    out = []

    def keep_sparse(b: int, tally: np.ndarray, emitted: int, escaped: int) -> None:
        # each batch made sparse as it comes (the voxels hit): one dense copy at a time
        idx = np.flatnonzero(tally)
        out.append((int(b), idx.astype(np.int64), tally[idx], int(emitted), int(escaped)))

    run.run_batches(int(payload.histories), int(payload.seed), int(payload.batches), first, end, threads=threads,
                    on_batch=keep_sparse)
    return {"first": first, "end": end, "batches": out, "threads": threads}


def dense(n_voxels: int, idx: np.ndarray, values: np.ndarray) -> np.ndarray:
    t = np.zeros(n_voxels, dtype=np.int64)
    t[idx] = values
    return t
