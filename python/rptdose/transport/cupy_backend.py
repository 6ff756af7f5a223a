"""The cupy backend: the CUDA kernels of ``csrc/cuda/kernels.cu``, compiled at run time.

Used when the compiled CUDA module ``rptdose._core_cuda`` is absent but cupy and a GPU are
there. The kernel source and the physics headers travel inside the package
(``rptdose/csrc/``, installed by CMake), and NVRTC compiles them through
:class:`cupy.RawModule` with the options of the compiled build (``--fmad=false``). The host
side comes from the CPU core: ``_core.prepare_run`` validates the inputs and builds the derived
buffers (alias table, photon majorant, multiple-scattering table) exactly as for the CPU, and
gives the host layout of ``rpt::Params``; this module uploads every array, writes the device
pointers into that layout, and runs the same batch loop as ``csrc/cuda/gpu_driver.hpp``.

==================  =============================================================
name                what
==================  =============================================================
:func:`available`   ``(bool, reason)``: cupy importable, NVRTC loadable, a GPU visible,
                    kernel sources found
:func:`simulate_cupy`  the runner: arguments and result of ``_core.simulate_cpu``
==================  =============================================================

The batch loop is written against a small *launcher* interface so that it also runs on the
CPU: with numpy arrays and ``_core.emulate_kernel`` (the kernel bodies on the CPU) it must
give ``simulate_cpu``'s result bit for bit (tests/test_emulation.py).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: Kernels of csrc/cuda/kernels.cu (extern "C", looked up by name).
KERNEL_NAMES = ("rpt_histories_kernel", "rpt_histories_kernel_f32", "rpt_fold_kernel", "rpt_finalize_kernel")
#: Indices into the counters array (kernel_body.hpp: CounterIndex).
_EMITTED, _ESCAPED, _DEPOSITED = 0, 1, 2
#: Threads per block of the voxel kernels (fold, finalize), as in launch.cu.
_VOXEL_BLOCK = 256

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
        self._kernels = {name: self._module.get_function(name) for name in KERNEL_NAMES}
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


def _check_run_options(histories: int, batches: int, max_histories: int) -> None:
    """The CPU driver's checks, with its messages (ValueError, like the compiled backends)."""
    from rptdose import _core   # the compiled drivers' limit, so that every backend refuses alike

    if batches < _core.MIN_BATCHES:
        raise ValueError(f"batches: expected >= {_core.MIN_BATCHES}")
    if histories < batches:
        raise ValueError(f"histories: expected >= batches ({batches})")
    if histories > max_histories:
        raise ValueError(f"histories: {histories} exceeds the tally capacity of {max_histories} for this source")


def _regions_labels(regions: Any, shape: tuple[int, int, int]) -> tuple[np.ndarray | None, int]:
    """Region labels as simulate_cpu takes them: int32 [z, y, x], -1 = none; count = max + 1."""
    if regions is None:
        return None, 0
    r = np.ascontiguousarray(regions, dtype=np.int32)
    if r.ndim != 3:
        raise ValueError("regions: expected a 3-D array [z, y, x]")
    if r.shape != tuple(shape):
        raise ValueError("regions: shape differs from the density's")
    if r.size and int(r.min()) < -1:
        raise ValueError("regions: labels must be >= -1")
    n = int(r.max()) + 1 if r.size else 0
    return r, max(n, 0)


#: Most histories in one launch (gpu_driver.hpp: kMaxChunk).
MAX_CHUNK = 100_000_000


#: Wall time one launch aims at (s), as host/chunking.hpp's kChunkSeconds.
CHUNK_SECONDS = 0.2


def min_chunk(threads_per_launch: int) -> int:
    """Fewest histories per launch: as gpu_driver.hpp's min_chunk()."""
    return min(MAX_CHUNK, 16 * max(int(threads_per_launch), 1))


def default_chunk(histories: int, threads_per_launch: int) -> int:
    """Most histories per launch: as gpu_driver.hpp's default_chunk()."""
    return min(MAX_CHUNK, max(min_chunk(threads_per_launch), (int(histories) + 99) // 100))


class ChunkSizer:
    """Launches sized by time, as host/chunking.hpp's ChunkSizer: the first has ``lower``
    histories, each next one the measured rate times :data:`CHUNK_SECONDS` (at most 4x the last),
    within [lower, upper]; so Ctrl-C and progress are seen a few times per second."""

    def __init__(self, lower: int, upper: int) -> None:
        self.upper = max(1, int(upper))
        self.lower = max(1, min(int(lower), self.upper))
        self.next = self.lower
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def done(self, n: int) -> None:
        dt = time.perf_counter() - self._t0
        want = n * (CHUNK_SECONDS / dt) if dt > 1e-6 else 4.0 * self.next
        want = min(want, 4.0 * self.next, float(self.upper))
        self.next = max(self.lower, min(self.upper, int(want)))


def batch_range(n: int, nb: int, b: int) -> tuple[int, int]:
    """First and one-past-last history of batch b (as physics/batch.hpp's batch_range)."""
    q, r = divmod(int(n), int(nb))
    h0 = q * b + min(b, r)
    return h0, h0 + q + (1 if b < r else 0)


def _run(launcher: Any, prep: dict, histories: int, seed: int, batches: int,
         regions: np.ndarray | None, n_regions: int, progress: Callable[[int], Any] | None,
         grid_dim: int = 0, block_dim: int = 0, chunk: int = 0,
         voxel_shape: tuple[int, int] | None = None) -> dict:
    """The batch loop of gpu_driver.hpp's drive(), on any launcher (cupy or emulation)."""
    xp = launcher.xp
    t0 = time.perf_counter()
    _check_run_options(histories, batches, int(prep["max_histories"]))
    nv = int(prep["n_voxels"])

    # every array of the Params, on the device; their addresses into the Params image
    dev_arrays = {name: xp.asarray(a) for name, a in prep["arrays"].items()}
    image = bytearray(prep["params_bytes"])
    for name, offset in prep["pointer_offsets"].items():
        struct.pack_into("<Q", image, int(offset), launcher.pointer(dev_arrays[name]))
    params = xp.asarray(np.frombuffer(bytes(image), dtype=np.uint8))

    batch = xp.zeros(nv, dtype=np.uint64)
    total = xp.zeros(nv, dtype=np.uint64)
    m2 = xp.zeros(nv, dtype=np.float32)  # spread of the batch means (physics/batch.hpp)
    counters = xp.zeros(3, dtype=np.uint64)
    if n_regions > 0:
        regions_dev = xp.asarray(regions.reshape(-1))
        region_units = xp.zeros((batches, n_regions), dtype=np.uint64)
    else:
        regions_dev = xp.zeros(0, dtype=np.int32)
        region_units = xp.zeros((batches, 0), dtype=np.uint64)
    empty_row = xp.zeros(0, dtype=np.uint64)

    kernel = str(prep.get("kernel", "rpt_histories_kernel"))  # of the run's precision
    grid, block = launcher.history_shape(grid_dim, block_dim, kernel)
    if voxel_shape is None:
        vgrid = max(1, min(-(-nv // _VOXEL_BLOCK), launcher.multiprocessors * 32))
        voxel_shape = (vgrid, _VOXEL_BLOCK)
    per_launch = int(chunk) if chunk else default_chunk(histories, grid * block)
    if not 1 <= per_launch <= MAX_CHUNK:
        raise ValueError(f"chunk: expected 0 (auto) or 1..{MAX_CHUNK}")
    guard = int(prep["tally_guard_units"])
    # launches sized by time within [16 histories per thread, per_launch]; a given chunk: fixed
    chunks = ChunkSizer(int(chunk) if chunk else min_chunk(grid * block), per_launch)

    def host(a: Any) -> np.ndarray:
        return a.get() if hasattr(a, "get") else np.array(a, copy=True)

    done = 0
    launches = 0
    for b in range(batches):
        h0, h1 = batch_range(histories, batches, b)
        c0 = h0
        while c0 < h1:
            c1 = min(h1, c0 + chunks.next)
            chunks.start()
            launcher.launch(kernel, grid, block,
                            (params, np.uint64(seed), np.int64(c0), np.int64(c1), batch, counters))
            launcher.synchronize()
            chunks.done(c1 - c0)
            launches += 1
            done += c1 - c0
            if int(host(counters[_EMITTED:_EMITTED + 1]).view(np.int64)[0]) > guard:
                raise OverflowError("histories: the emitted energy reached the 64-bit tally capacity "
                                    f"after {done} histories; split the run")
            if progress is not None:
                progress(done)
            c0 = c1
        row = region_units[b] if n_regions > 0 else empty_row
        launcher.launch("rpt_fold_kernel", voxel_shape[0], voxel_shape[1],
                        (np.int64(nv), batch, total, m2, np.int64(h0), np.int64(h1 - h0),
                         regions_dev, np.int32(n_regions), row))
    edep_dev = batch.view(np.float64)  # the batch tally is zero after the last fold
    launcher.launch("rpt_finalize_kernel", voxel_shape[0], voxel_shape[1],
                    (np.int64(nv), total, m2, edep_dev, np.int64(histories), np.int32(batches), counters))
    launcher.synchronize()

    shape = tuple(int(s) for s in prep["shape"])
    cnt = host(counters).view(np.int64)
    emitted, escaped, deposited = int(cnt[_EMITTED]), int(cnt[_ESCAPED]), int(cnt[_DEPOSITED])
    unit = float(prep["energy_unit_mev"])
    res: dict[str, Any] = {
        "edep_mev": host(edep_dev).reshape(shape),
        "rel_uncertainty": host(total).view(np.float64).reshape(shape),  # written over the totals
        "emitted_mev": float(emitted) * unit,
        "deposited_mev": float(deposited) * unit,
        "escaped_mev": float(escaped) * unit,
        "emitted_units": emitted,
        "deposited_units": deposited,
        "escaped_units": escaped,
        "energy_unit_mev": unit,
        "max_mev_per_decay": float(prep["max_mev_per_decay"]),
        "mean_mev_per_decay": float(prep["mean_mev_per_decay"]),
    }
    if n_regions > 0:
        res["region_batch_edep_mev"] = host(region_units).view(np.int64).astype(np.float64) * unit
    res["threads_used"] = grid * block
    res["elapsed_s"] = time.perf_counter() - t0
    res["launch"] = {"grid_dim": grid, "block_dim": block, "chunk": per_launch, "launches": launches}
    res["device"] = launcher.device_name
    res["precision"] = str(prep.get("precision", "double"))
    return res


def _prepare(density: Any, material: Any, spacing_mm: Any, decays: Any, tables: dict,
             emissions: dict, electron_transport: bool, precision: str = "double") -> dict:
    from rptdose import _core

    return _core.prepare_run(density, material, spacing_mm, decays, tables, emissions,
                             bool(electron_transport), precision=str(precision))


def simulate_cupy(density: Any, material: Any, spacing_mm: Any, decays: Any, tables: dict,
                  emissions: dict, histories: int, seed: int, batches: int, threads: int,
                  electron_transport: bool, regions: Any = None,
                  progress: Callable[[int], Any] | None = None, *, grid_dim: int = 0,
                  block_dim: int = 0, precision: str = "double") -> dict:
    """Run ``histories`` decays on the current GPU through cupy.

    Arguments and result as ``rptdose._core.simulate_cpu`` (docs/core_contract.md); ``threads``
    is ignored (the launch shape comes from the kernel's occupancy unless ``grid_dim`` /
    ``block_dim`` are given); ``precision`` "double" or "single" (rpt_histories_kernel_f32).
    The result also has ``launch``, ``device`` and ``precision``.
    Raises BackendUnavailableError when cupy or a GPU is missing, ValueError for bad inputs.
    """
    from rptdose.errors import BackendUnavailableError

    ok, why = available()
    if not ok:
        raise BackendUnavailableError(f"backend 'cupy' unavailable ({why}): install what is missing, "
                                      "or use backend='auto'")
    prep = _prepare(density, material, spacing_mm, decays, tables, emissions, electron_transport, precision)
    labels, n_regions = _regions_labels(regions, tuple(prep["shape"]))
    sizes = prep["params_sizes"]
    launcher = _CupyLauncher((int(sizes["double"]), int(sizes["single"])))
    return _run(launcher, prep, int(histories), int(seed), int(batches), labels, n_regions,
                progress, grid_dim=grid_dim, block_dim=block_dim)


def simulate_cupy_emulated(density: Any, material: Any, spacing_mm: Any, decays: Any,
                           tables: dict, emissions: dict, histories: int, seed: int, batches: int,
                           threads: int, electron_transport: bool, regions: Any = None,
                           progress: Callable[[int], Any] | None = None, *, grid_dim: int = 0,
                           block_dim: int = 0, chunk: int = 0,
                           voxel_shape: tuple[int, int] | None = None, precision: str = "double") -> dict:
    """This backend's host code (Params image, uploads, batch loop) with numpy arrays and the
    kernels emulated on the CPU: a test hook, equal to simulate_cpu bit for bit (in either
    precision)."""
    prep = _prepare(density, material, spacing_mm, decays, tables, emissions, electron_transport, precision)
    labels, n_regions = _regions_labels(regions, tuple(prep["shape"]))
    launcher = _EmulatedLauncher(threads)
    return _run(launcher, prep, int(histories), int(seed), int(batches), labels, n_regions,
                progress, grid_dim=grid_dim, block_dim=block_dim, chunk=chunk,
                voxel_shape=voxel_shape)
