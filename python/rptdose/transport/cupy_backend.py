"""The cupy backend: the CUDA kernels of ``csrc/cuda/kernels.cu``, compiled at run time.

Used when the compiled CUDA module ``rptdose._core_cuda`` is absent but cupy and a GPU are
there. The kernel source and the physics headers travel inside the package
(``rptdose/csrc/``, installed by CMake), and NVRTC compiles them through
:class:`cupy.RawModule` with the options of the compiled build (``--fmad=false``). The host
side comes from the CPU core: ``_core.prepare_run`` validates the inputs and builds the derived
buffers (alias table, photon majorant, multiple-scattering table) exactly as for the CPU, and
gives the host layout of ``rpt::Params``; this module uploads every array, writes the device
pointers into that layout, and is an executor of the one batch loop of every backend
(``csrc/host/driver.hpp``, run by ``_core.drive_executor``): it only launches kernels.

==================  =============================================================
name                what
==================  =============================================================
:func:`available`   ``(bool, reason)``: cupy importable, NVRTC loadable, a GPU visible,
                    kernel sources found
:func:`simulate_cupy`  the runner: arguments and result of ``_core.simulate_cpu``
==================  =============================================================

The executor is written against a small *launcher* interface so that it also runs on the
CPU: with numpy arrays and ``_core.emulate_kernel`` (the kernel bodies on the CPU) it must
give ``simulate_cpu``'s result bit for bit (tests/test_emulation.py).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import struct
from pathlib import Path
from typing import Any

import numpy as np


_SOURCE_FILES = ("cuda/kernels.cu", "cuda/kernels.cuh", "cuda/kernel_body.hpp", "physics/batch.hpp",
                 "physics/history.hpp", "physics/macros.hpp")


def kernel_source_dir() -> Path | None:
    """The folder holding ``cuda/kernels.cu`` and ``physics/*.hpp``, or None.

    Looked for beside the compiled ``_core`` (where CMake installs them, also for editable
    installs), in the package folder, then in a source checkout (``<repo>/csrc``).
    """
    candidates: list[Path] = []
    spec = importlib.util.find_spec("rptdose._core")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "csrc")
    here = Path(__file__).resolve().parent.parent  # python/rptdose or site-packages/rptdose
    candidates.append(here / "csrc")
    candidates.append(here.parent.parent / "csrc")  # source tree: <repo>/python/rptdose -> <repo>/csrc
    for c in candidates:
        if all((c / f).is_file() for f in _SOURCE_FILES):
            return c
    return None


def _source_digest(src_dir: Path) -> str:
    """Hash of every kernel source and header: part of the compile options, so cupy's kernel
    cache (keyed by the top-level source and options only) never serves a binary built from
    older headers."""
    h = hashlib.sha256()
    for p in sorted(list((src_dir / "physics").glob("*.hpp")) + list((src_dir / "cuda").glob("*"))):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def nvrtc_options(src_dir: Path, params_size: int, params_f32_size: int | None = None) -> tuple[str, ...]:
    """NVRTC options for kernels.cu (also used by the tests' compile checks).

    ``--fmad=false`` as in the nvcc build; ``-DRPT_EXPECTED_PARAMS_SIZE`` (and, given
    ``params_f32_size``, ``-DRPT_EXPECTED_PARAMS_F32_SIZE``) makes the compile fail if the
    device layout of ``rpt::Params`` (``rpt::ParamsT<float>``) differed from the host's.
    NVRTC's default dialect (C++17 since CUDA 11) is the one the sources need.
    """
    sizes = (f"-DRPT_EXPECTED_PARAMS_SIZE={int(params_size)}",)
    if params_f32_size is not None:
        sizes += (f"-DRPT_EXPECTED_PARAMS_F32_SIZE={int(params_f32_size)}",)
    return ("--fmad=false", f"-I{src_dir}", *sizes, f"-DRPT_SOURCE_DIGEST=0x{_source_digest(src_dir)}ull")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def available() -> tuple[bool, str]:
    """``(True, description)`` when this backend can run here, else ``(False, why not)``."""
    if importlib.util.find_spec("cupy") is None:
        return False, "cupy is not installed (pip install 'rptdose[gpu]')"
    try:
        import cupy
    except Exception as exc:  # a broken cupy install raises many kinds of errors
        return False, f"cupy is installed but does not import ({_first_line(exc)})"
    try:
        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:
        return False, f"cupy is installed but no GPU is usable ({_first_line(exc)})"
    if n < 1:
        return False, "cupy is installed but no GPU is visible"
    try:
        major, minor = cupy.cuda.nvrtc.getVersion()
    except Exception as exc:
        return False, (f"cupy sees {n} GPU(s) but NVRTC is not loadable ({_first_line(exc)}); "
                       "install the CUDA toolkit's NVRTC (e.g. pip install 'cupy-cuda13x[ctk]')")
    try:
        importlib.import_module("rptdose._core")
    except ImportError as exc:
        return False, f"rptdose._core is not importable ({_first_line(exc)}); it prepares the GPU's tables"
    src = kernel_source_dir()
    if src is None:
        return False, ("the CUDA kernel sources (rptdose/csrc/cuda/kernels.cu and the physics "
                       "headers) are not installed with this rptdose; reinstall it with pip")
    return True, f"cupy {cupy.__version__}, NVRTC {major}.{minor}, {n} GPU(s)"


# ---------------------------------------------------------------- launchers


class _CupyLauncher:
    """Kernels compiled by NVRTC, launched with cupy on the current device."""

    def __init__(self, params_sizes: tuple[int, int]) -> None:
        import cupy

        self.xp = cupy
        self._module = _compiled_module(tuple(params_sizes), cupy.cuda.runtime.getDevice())
        from rptdose import _core  # the kernels' names, from the core that declares them

        self._kernels = {name: self._module.get_function(name) for name in _core.KERNEL_NAMES}
        dev = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        self.multiprocessors = int(props.get("multiProcessorCount", 0)) or 1
        self._max_threads_sm = int(props.get("maxThreadsPerMultiProcessor", 0)) or 2048
        self._regs_sm = int(props.get("regsPerMultiprocessor", 0)) or 65536
        name = props.get("name", b"")
        self.device_name = name.decode() if isinstance(name, bytes) else str(name)

    def history_shape(self, grid_dim: int, block_dim: int,
                      kernel: str = "rpt_histories_kernel") -> tuple[int, int]:
        """Launch shape of a history kernel: given, or a full device by occupancy."""
        k = self._kernels[kernel]
        block = int(block_dim) or min(128, int(k.max_threads_per_block))
        if grid_dim:
            return int(grid_dim), block
        regs = max(int(k.num_regs), 1)
        regs_per_warp = -(-regs * 32 // 256) * 256  # allocated per warp in units of 256
        warps_by_regs = self._regs_sm // regs_per_warp
        warps_per_block = -(-block // 32)
        per_sm = max(1, min(self._max_threads_sm // block, warps_by_regs // warps_per_block))
        return per_sm * self.multiprocessors, block

    def launch(self, name: str, grid: int, block: int, args: tuple) -> None:
        self._kernels[name]((int(grid),), (int(block),), args)

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()

    @staticmethod
    def pointer(a: Any) -> int:
        return int(a.data.ptr) if a.size else 0


class _EmulatedLauncher:
    """The same kernels' bodies on the CPU (``_core.emulate_kernel``), numpy arrays as memory."""

    xp = np
    device_name = "CPU emulation"

    def __init__(self, threads: int = 0, multiprocessors: int = 4) -> None:
        from rptdose import _core

        self._core = _core
        self.threads = int(threads)
        self.multiprocessors = int(multiprocessors)

    def history_shape(self, grid_dim: int, block_dim: int,
                      kernel: str = "rpt_histories_kernel") -> tuple[int, int]:
        return int(grid_dim) or 2 * self.multiprocessors, int(block_dim) or 64

    def launch(self, name: str, grid: int, block: int, args: tuple) -> None:
        self._core.emulate_kernel(name, int(grid), int(block), tuple(args), self.threads)

    def synchronize(self) -> None:
        pass

    @staticmethod
    def pointer(a: np.ndarray) -> int:
        return int(a.ctypes.data) if a.size else 0


@functools.lru_cache(maxsize=8)
def _compiled_module(params_sizes: tuple[int, int], device_id: int) -> Any:
    """kernels.cu compiled by NVRTC for the current device (cached per process; cupy also
    caches the binary on disk)."""
    import cupy

    src_dir = kernel_source_dir()
    if src_dir is None:
        from rptdose.errors import BackendUnavailableError

        raise BackendUnavailableError("cupy backend unavailable (kernel sources not installed): "
                                      "reinstall rptdose with pip")
    code = (src_dir / "cuda" / "kernels.cu").read_text()
    module = cupy.RawModule(code=code, options=nvrtc_options(src_dir, *params_sizes), backend="nvrtc")
    module.compile()
    return module


# ---------------------------------------------------------------- the run


class _KernelExec:
    """The executor of csrc/host/driver.hpp (the one batch loop, run by ``_core.drive_executor``)
    over a launcher: the kernels of kernels.cu on the device memory this object holds. Its
    methods are the executor interface of csrc/bindings/py_exec.cpp."""

    def __init__(self, launcher: Any, prep: dict, request: Any, voxel_shape: tuple[int, int] | None) -> None:
        from rptdose import _core

        self._core = _core
        self.launcher = launcher
        xp = self.xp = launcher.xp
        nv = self.n_voxels = int(prep["n_voxels"])
        # every array of the Params, on the device; their addresses into the Params image
        self._arrays = {name: xp.asarray(a) for name, a in prep["arrays"].items()}
        image = bytearray(prep["params_bytes"])
        for name, offset in prep["pointer_offsets"].items():
            struct.pack_into("<Q", image, int(offset), launcher.pointer(self._arrays[name]))
        self.params = xp.asarray(np.frombuffer(bytes(image), dtype=np.uint8))
        self.batch = xp.zeros(nv, dtype=np.uint64)
        self.total = xp.zeros(nv, dtype=np.uint64)
        self.m2 = xp.zeros(nv, dtype=np.float32)  # spread of the batch means (physics/batch.hpp)
        self.counters = xp.zeros(_core.NUM_COUNTERS, dtype=np.uint64)
        # the request's region labels, checked by prepare_run (int32, -1 none, 0..n_regions-1)
        n_regions = self.n_regions = int(prep["n_regions"])
        batches = int(request.batches)
        if n_regions > 0:
            self.regions = xp.asarray(np.ascontiguousarray(request.regions, dtype=np.int32).reshape(-1))
        else:
            self.regions = xp.zeros(0, dtype=np.int32)
        self.region_units = xp.zeros((batches, n_regions), dtype=np.uint64)
        self._empty_row = xp.zeros(0, dtype=np.uint64)
        self.kernel = str(prep["kernel"])  # the history kernel of the run's precision
        self.grid_dim, self.block_dim = launcher.history_shape(int(request.grid_dim), int(request.block_dim),
                                                               self.kernel)
        self.threads_used = self.grid_dim * self.block_dim
        self.voxel_shape = voxel_shape or (_core.voxel_grid(nv, launcher.multiprocessors), _core.VOXEL_BLOCK)

    def _host(self, a: Any) -> np.ndarray:
        return a.get() if hasattr(a, "get") else np.array(a, copy=True)

    def _counter(self, name: str) -> int:
        i = self._core.COUNTER_INDEX[name]
        return int(self._host(self.counters[i:i + 1]).view(np.int64)[0])

    def chunk_bounds(self, histories: int) -> tuple[int, int]:
        return self._core.gpu_chunk_bounds(histories, self.threads_used)

    def histories(self, seed: int, h0: int, h1: int) -> None:
        self.launcher.launch(self.kernel, self.grid_dim, self.block_dim,
                             (self.params, np.uint64(seed), np.int64(h0), np.int64(h1), self.batch, self.counters))
        self.launcher.synchronize()

    def emitted_units(self) -> int:
        return self._counter("emitted")

    def fold(self, b: int, h_before: int, n_batch: int) -> None:
        row = self.region_units[b] if self.n_regions > 0 else self._empty_row
        self.launcher.launch("rpt_fold_kernel", *self.voxel_shape,
                             (np.int64(self.n_voxels), self.batch, self.total, self.m2, np.int64(h_before),
                              np.int64(n_batch), self.regions, np.int32(self.n_regions), row))

    def finalize(self, histories: int, batches: int) -> None:
        edep = self.batch.view(np.float64)  # the batch tally is zero after the last fold
        self.launcher.launch("rpt_finalize_kernel", *self.voxel_shape,
                             (np.int64(self.n_voxels), self.total, self.m2, edep, np.int64(histories),
                              np.int32(batches), self.counters))
        self.launcher.synchronize()

    def download(self) -> dict:
        cnt = self._host(self.counters).view(np.int64)
        idx = self._core.COUNTER_INDEX
        return {"edep_mev": self._host(self.batch).view(np.float64),
                "rel_uncertainty": self._host(self.total).view(np.float64),  # written over the totals
                "emitted": int(cnt[idx["emitted"]]), "escaped": int(cnt[idx["escaped"]]),
                "deposited": int(cnt[idx["deposited"]]),
                "region_units": self._host(self.region_units).view(np.int64).reshape(-1)}


def _run(launcher: Any, prep: dict, request: Any, voxel_shape: tuple[int, int] | None = None) -> dict:
    """A run on any launcher (cupy or emulation): this executor under the one batch loop."""
    from rptdose import _core

    ex = _KernelExec(launcher, prep, request, voxel_shape)
    res = _core.drive_executor(ex, tuple(int(s) for s in prep["shape"]), int(request.histories), int(request.seed),
                               int(request.batches), ex.n_regions, int(prep["max_histories"]), int(request.chunk),
                               request.progress)
    res["max_mev_per_decay"] = float(prep["max_mev_per_decay"])
    res["mean_mev_per_decay"] = float(prep["mean_mev_per_decay"])
    res["device"] = launcher.device_name
    res["precision"] = str(prep.get("precision", "double"))
    return res


def _prepare(request: Any) -> dict:
    from rptdose import _core

    return _core.prepare_run(request)


def simulate_cupy(request: Any) -> dict:
    """Run a :class:`~rptdose.transport.request.RunRequest` on the current GPU through cupy.

    Result as ``rptdose._core.simulate_cpu`` (docs/core_contract.md); the request's ``threads``
    are ignored (the launch shape comes from the kernel's occupancy unless ``grid_dim`` /
    ``block_dim`` are given). The result also has ``launch`` and ``device``.
    Raises BackendUnavailableError when cupy or a GPU is missing, ValueError for bad inputs.
    """
    from rptdose.errors import BackendUnavailableError

    ok, why = available()
    if not ok:
        raise BackendUnavailableError(f"backend 'cupy' unavailable ({why}): install what is missing, "
                                      "or use backend='auto'")
    prep = _prepare(request)
    sizes = prep["params_sizes"]
    launcher = _CupyLauncher((int(sizes["double"]), int(sizes["single"])))
    return _run(launcher, prep, request)


def simulate_cupy_emulated(request: Any, voxel_shape: tuple[int, int] | None = None) -> dict:
    """This backend's host code (Params image, uploads, executor) with numpy arrays and the
    kernels emulated on the CPU (the request's ``threads`` OpenMP threads): a test hook, equal to
    simulate_cpu bit for bit. ``voxel_shape``: the voxel kernels' launch (default as on a GPU)."""
    prep = _prepare(request)
    launcher = _EmulatedLauncher(request.threads)
    return _run(launcher, prep, request, voxel_shape=voxel_shape)
