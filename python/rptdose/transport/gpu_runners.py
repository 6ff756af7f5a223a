"""Runners of the GPU backends, for :mod:`rptdose.transport.backends` to register.

:func:`runners` returns ``{"cuda": (runner or None, reason), "cupy": (runner or None, reason)}``.
A runner is present when the backend's software is installed here (the compiled module
``rptdose._core_cuda``; cupy with the shipped kernel sources); ``reason`` then describes it,
and otherwise says what is missing. Finding a runner does not probe for a GPU (that is
:func:`cuda_available` / :func:`rptdose.transport.cupy_backend.available`); a runner called
without a usable GPU raises :class:`~rptdose.errors.BackendUnavailableError` saying why.

Both runners take a :class:`rptdose.transport.request.RunRequest` and return the result dict
(docs/core_contract.md), plus ``launch`` (grid_dim, block_dim, chunk, launches) and
``device``; ``threads`` is accepted and ignored. Keyword-only extras: ``grid_dim``,
``block_dim`` (0 = chosen from the kernel's occupancy), ``precision`` ("double" or "single").

:func:`auto_precision` is ``precision="auto"`` on a GPU: double where the device's FP64
throughput is at least half its FP32 throughput (compute capability 6.0, 7.0, 8.0 and 9.0:
:data:`FULL_FP64_COMPUTE_CAPABILITIES`, the data-centre parts), single elsewhere (1/32 to 1/64
on workstation and consumer GPUs); docs/gpu_backends.md gives the table and its source.

=========  ==========================  ======================================================
backend    runner                      implementation
=========  ==========================  ======================================================
``cuda``   :func:`run_cuda`            ``rptdose._core_cuda.simulate_cuda`` (nvcc-compiled)
``cupy``   :func:`run_cupy`            :func:`rptdose.transport.cupy_backend.simulate_cupy`
                                       (kernels.cu compiled at run time by NVRTC)
=========  ==========================  ======================================================
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

from rptdose.errors import BackendUnavailableError

Runner = Callable[..., dict]

#: Compute capabilities whose 64-bit floating-point add/multiply/fma throughput is half the
#: 32-bit one (CUDA C++ Programming Guide, "Arithmetic Instructions", table "Throughput of
#: Native Arithmetic Instructions"): P100 (6.0), V100 (7.0), A100/A30 (8.0), H100/H200 (9.0).
#: Every other device runs FP64 at 1/32 or 1/64 of FP32 (or is not in that table).
FULL_FP64_COMPUTE_CAPABILITIES = frozenset({(6, 0), (7, 0), (8, 0), (9, 0)})


def precision_for_compute_capability(major: int, minor: int) -> tuple[str, str]:
    """``(precision, why)`` that ``precision="auto"`` chooses on a device of compute
    capability ``major.minor``: "double" on :data:`FULL_FP64_COMPUTE_CAPABILITIES`, else
    "single"."""
    cc = (int(major), int(minor))
    if cc in FULL_FP64_COMPUTE_CAPABILITIES:
        return "double", f"auto: compute capability {cc[0]}.{cc[1]} runs FP64 at 1/2 of FP32"
    return "single", (f"auto: compute capability {cc[0]}.{cc[1]} is not one with FP64 at >= 1/2 of FP32 "
                      "(6.0, 7.0, 8.0, 9.0); pass precision='double' to override")


def _cupy_compute_capability() -> tuple[int, int]:
    import cupy

    cc = str(cupy.cuda.Device().compute_capability)  # e.g. "86"
    return int(cc[:-1]), int(cc[-1])


def auto_precision(backend: str) -> tuple[str, str]:
    """``(precision, why)`` for ``precision="auto"`` on the current device of GPU backend
    ``backend`` ("cuda" or "cupy"); "double" with the reason when the device cannot be asked."""
    try:
        if backend == "cuda":
            major, minor = _import_core_cuda().device_info()["compute_capability"]
        else:
            major, minor = _cupy_compute_capability()
    except Exception as exc:  # no device to ask: the run itself will say why
        return "double", f"auto: compute capability unknown ({_first_line(exc)}), double"
    return precision_for_compute_capability(major, minor)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _import_core_cuda() -> Any:
    return importlib.import_module("rptdose._core_cuda")


def cuda_available() -> tuple[bool, str]:
    """``(True, description)`` when the CUDA module is built and sees a GPU, else why not."""
    try:
        mod = _import_core_cuda()
    except ImportError as exc:
        return False, ("no CUDA build (rptdose._core_cuda is not importable: "
                       f"{_first_line(exc)}); rebuild with nvcc on PATH and RPTDOSE_CUDA=ON")
    status = mod.device_status()
    if int(status["count"]) < 1:
        return False, f"CUDA build present but no GPU is usable ({status['reason']})"
    return True, f"rptdose._core_cuda, {status['reason']}"


def run_cuda(request: Any) -> dict:
    """The ``cuda`` backend's runner: a RunRequest to ``_core_cuda.simulate_cuda``."""
    ok, why = cuda_available()
    if not ok:
        raise BackendUnavailableError(f"backend 'cuda' unavailable ({why}): install what is missing, "
                                      "or use backend='auto'")
    return _import_core_cuda().simulate_cuda(request)


def run_cupy(request: Any) -> dict:
    """The ``cupy`` backend's runner: a RunRequest to :func:`cupy_backend.simulate_cupy`."""
    from rptdose.transport import cupy_backend

    return cupy_backend.simulate_cupy(request)


def runners() -> dict[str, tuple[Runner | None, str]]:
    """``{"cuda": (runner | None, reason), "cupy": (runner | None, reason)}``; cheap: imports
    neither cupy nor touches a GPU (only ``rptdose._core_cuda`` is imported when built)."""
    out: dict[str, tuple[Runner | None, str]] = {}
    try:
        _import_core_cuda()
        out["cuda"] = (run_cuda, "rptdose._core_cuda is built (GPU checked when run)")
    except ImportError as exc:
        out["cuda"] = (None, f"no CUDA build (rptdose._core_cuda is not importable: {_first_line(exc)})")
    if importlib.util.find_spec("cupy") is None:
        out["cupy"] = (None, "cupy is not installed (pip install 'rptdose[gpu]')")
    else:
        from rptdose.transport.cupy_backend import kernel_source_dir

        if kernel_source_dir() is None:
            out["cupy"] = (None, "the CUDA kernel sources are not installed with this rptdose")
        else:
            out["cupy"] = (run_cupy, "cupy is installed (GPU and NVRTC checked when run)")
    return out
