"""The GPU code compiles, and the GPU entry points behave without a GPU.

No test here needs a GPU. With nvcc on PATH, the kernels are compiled to sm_90 machine code
and the launch code to an object, as the CMake build does; the kernel source the cupy backend
ships is compiled to PTX with the options it hands NVRTC; with libnvrtc loadable (CUDA toolkit,
or the nvidia-cuda-nvrtc wheel; RPTDOSE_NVRTC=/path/libnvrtc.so.N to point at one) NVRTC itself
compiles it. Where the CUDA module was built, it must import and report no device cleanly.
"""
import ctypes
import ctypes.util
import glob
import importlib.util
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from rptdose import _core
from rptdose.transport import cupy_backend, gpu_runners

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")
KERNELS = ("rpt_histories_kernel", "rpt_histories_kernel_f32", "rpt_fold_kernel", "rpt_finalize_kernel")
NVCC_TIMEOUT_S = 300


def _request(tables, emissions, histories, batches):
    """A 2x2x2 run as the one request type of every backend."""
    from rptdose.transport.request import RunRequest

    return RunRequest(density=np.ones((2, 2, 2), np.float32), material=np.zeros((2, 2, 2), np.int32),
                      spacing_mm=(1.0, 1.0, 1.0), decays=np.ones((2, 2, 2)), tables=tables, emissions=emissions,
                      histories=histories, seed=1, batches=batches)


def _params_sizes():
    """sizeof(rpt::Params) and sizeof(rpt::ParamsT<float>) as the host compiler laid them out
    (from any valid run)."""
    from rptdose.physics.nuclides import load_nuclide
    from rptdose.physics.tables import transport_tables

    tables = transport_tables(["water"])
    em = load_nuclide("Lu-177").emission_arrays()
    prep = _core.prepare_run(_request(tables, em, 10, 10))
    return prep["params_sizes"]["double"], prep["params_sizes"]["single"]


@needs_nvcc
def test_cuda_sources_compile_with_nvcc(tmp_path):
    """kernels.cu to sm_90 machine code (front end + ptxas) and launch.cu to an object, in
    parallel; the flags are those of cmake/cuda.cmake."""
    common = [NVCC, "-std=c++17", "-O3", "--fmad=false", f"-I{CSRC}"]
    jobs = [
        common + ["-arch=sm_90", "-cubin", str(CSRC / "cuda" / "kernels.cu"), "-o", str(tmp_path / "k.cubin")],
        common + ["-arch=sm_90", "-Xcompiler=-ffp-contract=off", "-c", str(CSRC / "cuda" / "launch.cu"),
                  "-o", str(tmp_path / "launch.o")],
    ]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for cmd in jobs]
    for cmd, p in zip(jobs, procs):
        out, _ = p.communicate(timeout=NVCC_TIMEOUT_S)
        assert p.returncode == 0, f"{' '.join(cmd)}\n{out}"
    cubin = (tmp_path / "k.cubin").read_bytes()
    for name in KERNELS:
        assert name.encode() in cubin
    assert (tmp_path / "launch.o").stat().st_size > 0


@needs_nvcc
def test_shipped_kernel_source_compiles_to_ptx(tmp_path):
    """The sources the cupy backend compiles at run time (installed under rptdose/csrc), with
    the options it passes to NVRTC, the Params layout check included."""
    src = cupy_backend.kernel_source_dir()
    assert src is not None, "kernel sources are not installed with the package"
    opts = list(cupy_backend.nvrtc_options(src, *_params_sizes()))
    cmd = [NVCC, "-std=c++17", "-arch=compute_90", "--ptx", *opts, str(src / "cuda" / "kernels.cu"),
           "-o", str(tmp_path / "k.ptx")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=NVCC_TIMEOUT_S)
    assert p.returncode == 0, p.stdout + p.stderr
    ptx = (tmp_path / "k.ptx").read_text()
    for name in KERNELS:
        assert f".entry {name}" in ptx
    # a wrong host layout must fail to compile
    bad = [o if not o.startswith("-DRPT_EXPECTED_PARAMS_SIZE=") else "-DRPT_EXPECTED_PARAMS_SIZE=1" for o in opts]
    p = subprocess.run([NVCC, "-std=c++17", "-arch=compute_90", "--ptx", *bad, str(src / "cuda" / "kernels.cu"),
                        "-o", str(tmp_path / "bad.ptx")], capture_output=True, text=True, timeout=NVCC_TIMEOUT_S)
    assert p.returncode != 0 and "different layout" in (p.stdout + p.stderr)


def _find_nvrtc():
    env = os.environ.get("RPTDOSE_NVRTC")
    if env:
        return env
    roots = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    patterns = ["nvidia/cu*/lib/libnvrtc.so*", "nvidia/cuda_nvrtc/lib/libnvrtc.so*"]
    for root in roots:
        for pat in patterns:
            hits = sorted(p for p in glob.glob(os.path.join(root, pat)) if "builtins" not in p and ".alt." not in p)
            if hits:
                return hits[0]
    for d in (os.environ.get("CUDA_HOME", ""), "/usr/local/cuda"):
        hits = sorted(glob.glob(os.path.join(d, "lib64", "libnvrtc.so*"))) if d else []
        hits = [h for h in hits if "builtins" not in h and ".alt." not in h]
        if hits:
            return hits[0]
    return ctypes.util.find_library("nvrtc")


def test_nvrtc_compiles_shipped_kernel_source():
    """NVRTC itself (what cupy.RawModule calls) compiles kernels.cu with the backend's options,
    plus those cupy adds (-arch, -ftz=true). Needs no GPU, only libnvrtc."""
    lib_path = _find_nvrtc()
    if not lib_path:
        pytest.skip("libnvrtc not found (set RPTDOSE_NVRTC=/path/to/libnvrtc.so.N)")
    lib_dir = os.path.dirname(lib_path)
    if lib_dir and not glob.glob(os.path.join(lib_dir, "libnvrtc-builtins*")):
        pytest.skip(f"libnvrtc-builtins not beside {lib_path}")
    # libnvrtc loads its builtins library by name: preload it from the same folder
    for b in sorted(glob.glob(os.path.join(lib_dir, "libnvrtc-builtins.so*"))):
        if ".alt." not in b:
            ctypes.CDLL(b, mode=ctypes.RTLD_GLOBAL)
            break
    lib = ctypes.CDLL(lib_path)
    src_dir = cupy_backend.kernel_source_dir()
    code = (src_dir / "cuda" / "kernels.cu").read_bytes()
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), code, b"kernels.cu", 0, None, None) == 0
    opts = [o.encode() for o in cupy_backend.nvrtc_options(src_dir, *_params_sizes())]
    opts += [b"-arch=compute_90", b"-ftz=true"]
    rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
    n = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
    log = ctypes.create_string_buffer(n.value)
    lib.nvrtcGetProgramLog(prog, log)
    assert rc == 0, log.value.decode(errors="replace")
    lib.nvrtcGetPTXSize(prog, ctypes.byref(n))
    ptx = ctypes.create_string_buffer(n.value)
    assert lib.nvrtcGetPTX(prog, ptx) == 0
    for name in KERNELS:
        assert f".entry {name}".encode() in ptx.value
    lib.nvrtcDestroyProgram(ctypes.byref(prog))


def test_kernel_sources_ship_with_package():
    src = cupy_backend.kernel_source_dir()
    assert src is not None
    for rel in ("cuda/kernels.cu", "cuda/kernels.cuh", "cuda/kernel_body.hpp"):
        assert (src / rel).read_bytes() == (CSRC / rel).read_bytes(), f"installed {rel} is stale: reinstall"
    for h in (CSRC / "physics").glob("*.hpp"):
        assert (src / "physics" / h.name).is_file(), f"{h.name} not installed: reinstall"


def test_gpu_runners_without_gpu():
    r = gpu_runners.runners()
    assert set(r) == {"cuda", "cupy"}
    for name, (runner, reason) in r.items():
        assert isinstance(reason, str) and reason
        assert runner is None or callable(runner)
    ok, why = cupy_backend.available()
    assert isinstance(ok, bool) and why
    if importlib.util.find_spec("cupy") is None:
        assert not ok and "cupy is not installed" in why
        assert r["cupy"][0] is None


@pytest.mark.skipif(importlib.util.find_spec("rptdose._core_cuda") is None,
                    reason="rptdose._core_cuda not built (no CUDA compiler at build time)")
def test_core_cuda_module_reports_devices():
    from rptdose import _core_cuda

    st = _core_cuda.device_status()
    assert set(st) >= {"count", "reason", "driver_version", "runtime_version"}
    assert _core_cuda.device_count() == st["count"] >= 0
    assert st["reason"]
    assert st["runtime_version"] >= 11000
    ok, why = gpu_runners.cuda_available()
    assert ok == (st["count"] > 0) and why
    if st["count"] == 0:
        with pytest.raises(RuntimeError, match="CUDA call"):
            _core_cuda.device_info()
        from rptdose.errors import BackendUnavailableError

        with pytest.raises(BackendUnavailableError, match="no GPU"):
            gpu_runners.run_cuda(_request({}, {}, 10, 2))
    else:
        info = _core_cuda.device_info()
        assert info["name"] and info["total_memory_bytes"] > 0 and len(info["compute_capability"]) == 2


@pytest.mark.skipif(importlib.util.find_spec("rptdose._core_cuda") is None,
                    reason="rptdose._core_cuda not built (no CUDA compiler at build time)")
def test_core_cuda_without_device_names_the_reason():
    """With valid inputs and no device, simulate_cuda fails with the device status' reason."""
    from rptdose import _core_cuda

    if _core_cuda.device_count() > 0:
        pytest.skip("a GPU is present (tests/gpu covers the run)")
    from rptdose.physics.nuclides import load_nuclide
    from rptdose.physics.tables import transport_tables

    tables = transport_tables(["water"])
    em = load_nuclide("Lu-177").emission_arrays()
    with pytest.raises(RuntimeError, match="no CUDA device to run on"):
        _core_cuda.simulate_cuda(_request(tables, em, 10, 10))
    # bad options are reported before any device is needed
    with pytest.raises(ValueError, match="batches: expected >= 10"):
        _core_cuda.simulate_cuda(_request(tables, em, 10, 1))


def test_backend_selection_uses_the_installed_gpu_runners():
    """Every GPU runner installed here is the one backend selection calls, and a GPU backend
    that can't run is refused with its reason (never a silent fallback to the CPU)."""
    import sys

    import rptdose as rd
    from rptdose.errors import BackendUnavailableError

    registry = sys.modules["rptdose.transport.backends"]._RUNNERS
    for name, (runner, _why) in gpu_runners.runners().items():
        if runner is None:
            assert name not in registry
            continue
        assert registry[name] is runner
        status = rd.backends()[name]
        if not status["available"]:
            assert "runner yet" not in status["reason"]
            with pytest.raises(BackendUnavailableError, match=name):
                rd.simulate(rd.Phantom.water((4, 4, 4), (2.0, 2.0, 2.0)),
                            rd.Source("Lu-177", np.ones((4, 4, 4))), histories=100, backend=name)
