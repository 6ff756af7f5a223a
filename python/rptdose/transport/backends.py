"""Transport backends: which exist here, why the others don't, and how to run one.

=========  =================================================  ==============================
name       needs                                              runner
=========  =================================================  ==============================
``cuda``   the compiled module ``rptdose._core_cuda`` and a   registered by the CUDA build
           visible NVIDIA device
``cupy``   cupy importable and a visible GPU (the CUDA        registered by the cupy backend
           source is compiled at run time with NVRTC)
``cpu``    the compiled module ``rptdose._core`` (OpenMP)     ``_core.simulate_cpu``
=========  =================================================  ==============================

``backend="auto"`` picks the first available in the order cuda, cupy, cpu. An explicitly
requested backend that is unavailable raises :class:`~rptdose.errors.BackendUnavailableError`
saying why; nothing ever falls back silently.

A *runner* takes the one request type of every backend and returns the one result dict
(:mod:`rptdose.transport.request`, docs/core_contract.md)::

    runner(request: RunRequest) -> dict

The request's ``precision`` ("double" or "single") is resolved from ``"auto"`` by ``simulate``
before the runner is called.

GPU backends plug in with :func:`register_runner`; a backend is reported available only when
its prerequisites are met *and* a runner is registered for it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

from rptdose.errors import BackendUnavailableError, InputError

#: Backend names in the order ``backend="auto"`` tries them.
BACKEND_NAMES: tuple[str, ...] = ("cuda", "cupy", "cpu")

Runner = Callable[..., dict]

_RUNNERS: dict[str, Runner] = {}


def register_runner(name: str, runner: Runner) -> None:
    """Register ``runner`` (``runner(request) -> dict``) as the runner of backend ``name``."""
    if name not in BACKEND_NAMES:
        raise InputError(f"backend name {name!r} (unknown): expected one of {', '.join(BACKEND_NAMES)}")
    if not callable(runner):
        raise InputError(f"runner for backend {name!r} ({runner!r} is not callable): expected a callable")
    _RUNNERS[name] = runner
    if "_probe" in globals():  # forget cached availability (not yet defined during import)
        _probe.cache_clear()


def _run_cpu(request: Any) -> dict:
    """The CPU runner: ``rptdose._core.simulate_cpu``, imported on first use."""
    from rptdose import _core

    return _core.simulate_cpu(request)


register_runner("cpu", _run_cpu)


def _register_gpu_runners() -> None:
    """Register the runners of the GPU backends whose software is installed here (the CUDA
    module, cupy with the kernel sources). Whether a GPU is usable is probed separately."""
    from rptdose.transport import gpu_runners

    for name, (runner, _why) in gpu_runners.runners().items():
        if runner is not None:
            register_runner(name, runner)


_register_gpu_runners()


def _import_error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text


@functools.lru_cache(maxsize=None)
def _probe(name: str) -> tuple[bool, str]:
    """(available, reason) for one backend; cached per process (probing cupy is slow)."""
    if name == "cpu":
        try:
            from rptdose import _core
        except ImportError as exc:
            return False, (f"rptdose._core is not importable ({_import_error_text(exc)}); "
                           "build it with `pip install .` from the source tree")
        try:
            threads = int(_core.openmp_max_threads())
            detail = f"rptdose._core {_core.version()}, OpenMP, {threads} threads"
        except Exception as exc:  # a broken build: report it, don't crash the listing
            return False, f"rptdose._core is importable but does not answer ({exc})"
        return _has_runner(name, detail)

    if name == "cuda":
        try:
            mod = importlib.import_module("rptdose._core_cuda")
        except ImportError as exc:
            return False, ("no CUDA build (rptdose._core_cuda is not importable: "
                           f"{_import_error_text(exc)}); rebuild with a CUDA compiler and RPTDOSE_CUDA=ON")
        count = getattr(mod, "device_count", None)
        if count is None:
            return False, "rptdose._core_cuda has no device_count(); the CUDA build is incomplete"
        try:
            n = int(count())
        except Exception as exc:
            return False, f"CUDA build present but the CUDA runtime failed ({exc})"
        if n < 1:
            return False, "CUDA build present but no NVIDIA GPU is visible"
        return _has_runner(name, f"rptdose._core_cuda, {n} GPU(s)")

    if name == "cupy":
        if importlib.util.find_spec("cupy") is None:
            return False, "cupy is not installed (pip install 'rptdose[gpu]')"
        try:
            import cupy

            n = int(cupy.cuda.runtime.getDeviceCount())
        except Exception as exc:  # cupy raises its own runtime errors without a GPU/driver
            return False, f"cupy is installed but no GPU is usable ({_import_error_text(exc)})"
        if n < 1:
            return False, "cupy is installed but no GPU is visible"
        return _has_runner(name, f"cupy {cupy.__version__}, {n} GPU(s)")

    raise InputError(f"backend {name!r} (unknown): expected one of {', '.join(BACKEND_NAMES)}")


def _has_runner(name: str, detail: str) -> tuple[bool, str]:
    if name not in _RUNNERS:
        return False, f"{detail}, but this rptdose has no {name} runner yet"
    return True, detail


def backends() -> dict[str, dict[str, Any]]:
    """Which backends can run here, and why the others can't.

    Returns ``{name: {"available": bool, "reason": str}}`` for ``"cuda"``, ``"cupy"`` and
    ``"cpu"``, in the order ``backend="auto"`` tries them. ``reason`` describes the backend
    when available, and what is missing when not.
    """
    out = {}
    for name in BACKEND_NAMES:
        ok, reason = _probe(name)
        out[name] = {"available": ok, "reason": reason}
    return out


def check_backend_name(backend: object) -> str:
    """Validate the ``backend`` argument's value (not its availability)."""
    if not isinstance(backend, str) or backend not in ("auto", *BACKEND_NAMES):
        raise InputError(f"backend {backend!r} (unknown): expected 'auto' or one of {', '.join(BACKEND_NAMES)}")
    return backend


def select_backend(backend: str = "auto") -> tuple[str, Runner]:
    """Resolve ``backend`` to ``(name, runner)``.

    ``"auto"`` picks cuda, else cupy, else cpu. Raises BackendUnavailableError, naming why, when
    the requested backend (or, for ``"auto"``, every backend) cannot run here.
    """
    check_backend_name(backend)
    if backend == "auto":
        reasons = []
        for name in BACKEND_NAMES:
            ok, reason = _probe(name)
            if ok:
                return name, _RUNNERS[name]
            reasons.append(f"{name}: {reason}")
        raise BackendUnavailableError("no backend available (" + "; ".join(reasons) + ")")
    ok, reason = _probe(backend)
    if not ok:
        raise BackendUnavailableError(
            f"backend {backend!r} unavailable ({reason}): install what is missing, or pass "
            "backend='auto' to use what rptdose.backends() lists as available")
    return backend, _RUNNERS[backend]


def max_histories(mean_mev_per_decay: float) -> int:
    """Tally capacity: the most histories whose expected emitted energy fills at most half of
    the 64-bit tallies (no voxel or total can hold more than all the emitted energy; the core
    also stops a run whose actual emitted energy nears the limit).

    Uses ``rptdose._core.max_histories`` when the core is built (it is the authority); otherwise
    the same formula: floor(0.5 * (2**63 - 1) units of 1e-8 MeV / mean_mev_per_decay).
    """
    try:
        from rptdose import _core

        return int(_core.max_histories(float(mean_mev_per_decay)))
    except ImportError:
        if not mean_mev_per_decay > 0:
            return 2**63 - 1
        return int(0.5 * float(2**63 - 1) * 1e-8 / float(mean_mev_per_decay))


#: Backends whose batches can be handed out one range at a time (a PreparedRun: checkpointed
#: and distributed runs, rptdose.transport.batched).
BATCH_BACKENDS = ("cpu", "cuda")


def prepared_class(backend: str) -> Any:
    """The PreparedRun of ``backend`` ("cpu" or "cuda")."""
    if backend == "cpu":
        from rptdose import _core

        return _core.PreparedRun
    if backend == "cuda":
        return importlib.import_module("rptdose._core_cuda").PreparedRun
    raise InputError(f"backend {backend!r} (no batch-wise runs): checkpoint and scheduler runs use the "
                     f"{' or '.join(BATCH_BACKENDS)} backend; pass backend='cpu' or 'cuda'")
