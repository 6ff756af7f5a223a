"""validation/bench/gpu_static.py: the ptxas -v parser on real captured output, the occupancy
rule, the reading of the CMake build, and (with nvcc on PATH) one run of the script for sm_90
that must report every kernel of csrc/cuda/kernels.cu. No GPU needed; the nvcc run compiles
kernels.cu once (~20-25 s on two cores)."""
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "validation" / "bench" / "gpu_static.py"
_spec = importlib.util.spec_from_file_location("gpu_static", SCRIPT)
gs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gs)

# nvcc 13.0.88, csrc/cuda/kernels.cu, -arch=sm_80 -cubin -Xptxas -v with the build's flags
# (ptxas still prints cmem for sm_80)
NVCC_SM80 = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'rpt_finalize_kernel' for 'sm_80'
ptxas info    : Function properties for rpt_finalize_kernel
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 62 registers, used 0 barriers, 408 bytes cmem[0], 8 bytes cmem[2]
ptxas info    : Compile time = 46.385 ms
ptxas info    : Compiling entry function 'rpt_fold_kernel' for 'sm_80'
ptxas info    : Function properties for rpt_fold_kernel
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 46 registers, used 0 barriers, 424 bytes cmem[0]
ptxas info    : Compile time = 13.136 ms
ptxas info    : Compiling entry function 'rpt_histories_kernel' for 'sm_80'
ptxas info    : Function properties for rpt_histories_kernel
    3792 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 128 registers, used 0 barriers, 3792 bytes cumulative stack size, 400 bytes cmem[0], 392 bytes cmem[2]
ptxas info    : Compile time = 10170.654 ms
ptxas info    : Function properties for _ZN3rpt12emit_primaryINS_10Philox4x32ENS_3gpu11AtomicTallyEEEvRKNS_4Vec3EdiRNS_5TrackIT_T0_EE
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Function properties for _ZN3rpt26transport_with_secondariesINS_10Philox4x32ENS_3gpu11AtomicTallyEEEvNS_8ParticleERNS_5TrackIT_T0_EE
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
"""

# NVRTC 13.5 program log, kernels.cu with --fmad=false -ftz=true -arch=sm_90 -Xptxas -v (the
# cupy backend's compile); its continuation lines carry a "ptxas         ." prefix
NVRTC_SM90 = """\
ptxas info    : 76 bytes gmem
ptxas info    : Compiling entry function 'rpt_finalize_kernel' for 'sm_90'
ptxas info    : Function properties for rpt_finalize_kernel
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 62 registers, used 0 barriers
ptxas info    : Compile time = 103.461 ms
ptxas info    : Compiling entry function 'rpt_histories_kernel' for 'sm_90'
ptxas info    : Function properties for rpt_histories_kernel
ptxas         .     3792 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 128 registers, used 0 barriers, 3792 bytes cumulative stack size
ptxas info    : Compile time = 15635.523 ms
ptxas info    : Function properties for _ZN3rpt12emit_primaryINS_10Philox4x32ENS_3gpu11AtomicTallyEEEvRKNS_4Vec3EdiRNS_5TrackIT_T0_EE
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
"""

# nvcc 13.0.88, kernels.cu -arch=sm_90 -maxrregcount=64 (spills; lines of the other kernels cut)
NVCC_SM90_CAP64 = """\
ptxas info    : Overriding maximum register limit 256 for 'rpt_histories_kernel' with  64 of maxrregcount option
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'rpt_histories_kernel' for 'sm_90'
ptxas info    : Function properties for rpt_histories_kernel
    4016 bytes stack frame, 664 bytes spill stores, 1280 bytes spill loads
ptxas info    : Used 64 registers, used 0 barriers, 4016 bytes cumulative stack size
ptxas info    : Compile time = 12674.687 ms
ptxas info    : Function properties for _ZN3rpt12emit_primaryINS_10Philox4x32ENS_3gpu11AtomicTallyEEEvRKNS_4Vec3EdiRNS_5TrackIT_T0_EE
    0 bytes stack frame, 188 bytes spill stores, 492 bytes spill loads
ptxas info    : Function properties for _ZN3rpt26transport_with_secondariesINS_10Philox4x32ENS_3gpu11AtomicTallyEEEvNS_8ParticleERNS_5TrackIT_T0_EE
    0 bytes stack frame, 172 bytes spill stores, 460 bytes spill loads
"""


def _kernels_of_kernels_cu():
    """The kernels defined in csrc/cuda/kernels.cu and wavefront_kernels.cu (the latter through a
    macro instantiated once per precision suffix)."""
    bounds = r"(?:__launch_bounds__\([^)]*\)\s+)?"
    text = (ROOT / "csrc" / "cuda" / "kernels.cu").read_text()
    names = re.findall(r"__global__\s+void\s+" + bounds + r"(\w+)\s*\(", text)
    wave = (ROOT / "csrc" / "cuda" / "wavefront_kernels.cu").read_text()
    stems = re.findall(r"\b(rpt_\w+_kernel)##SUFFIX", wave)
    suffixes = re.findall(r"^RPT_WAVE_KERNELS\(\w+,\s*(\w*)\)", wave, re.M)
    assert names and stems and suffixes == ["", "_f32"]
    return names + [stem + sfx for stem in stems for sfx in suffixes]


def test_parse_nvcc_output():
    p = gs.parse_ptxas(NVCC_SM80)
    f = p["functions"]
    entries = {n: v for n, v in f.items() if v["entry"]}
    # the kernels of kernels.cu when the sample was captured (the live nvcc test below checks the
    # current kernels.cu, which has gained rpt_histories_kernel_f32 since)
    assert set(entries) == {"rpt_finalize_kernel", "rpt_fold_kernel", "rpt_histories_kernel"}
    assert set(entries) <= set(_kernels_of_kernels_cu())
    h = entries["rpt_histories_kernel"]
    assert (h["arch"], h["registers"], h["barriers"], h["stack_frame"], h["spill_stores"], h["spill_loads"],
            h["cumulative_stack"], h["cmem"]) == ("sm_80", 128, 0, 3792, 0, 0, 3792, {0: 400, 2: 392})
    assert h["compile_ms"] == pytest.approx(10170.654)
    assert entries["rpt_finalize_kernel"]["registers"] == 62
    assert entries["rpt_finalize_kernel"]["cmem"] == {0: 408, 2: 8}
    assert entries["rpt_fold_kernel"]["cmem"] == {0: 424}
    apart = {n: v for n, v in f.items() if not v["entry"]}
    assert len(apart) == 2 and all(v["arch"] == "sm_80" and v["stack_frame"] == 0 for v in apart.values())
    assert all("registers" not in v for v in apart.values())
    assert p["module"] == {"gmem": 0} and p["warnings"] == []


def test_parse_nvrtc_log():
    p = gs.parse_ptxas(NVRTC_SM90)
    f = p["functions"]
    assert p["module"]["gmem"] == 76
    assert f["rpt_histories_kernel"]["registers"] == 128
    assert f["rpt_histories_kernel"]["stack_frame"] == 3792
    assert f["rpt_finalize_kernel"]["spill_stores"] == 0 and f["rpt_finalize_kernel"]["registers"] == 62
    assert "cmem" not in f["rpt_histories_kernel"]  # not printed for sm_90: the script reads the cubin
    (apart,) = [v for v in f.values() if not v["entry"]]
    assert apart["stack_frame"] == 0 and apart["arch"] == "sm_90"


def test_parse_spills_of_kernels_and_device_functions():
    f = gs.parse_ptxas(NVCC_SM90_CAP64)["functions"]
    h = f["rpt_histories_kernel"]
    assert (h["registers"], h["stack_frame"], h["spill_stores"], h["spill_loads"]) == (64, 4016, 664, 1280)
    apart = sorted((v["spill_stores"], v["spill_loads"]) for v in f.values() if not v["entry"])
    assert apart == [(172, 460), (188, 492)]


def test_parse_warnings_and_older_fields():
    text = ("ptxas info    : 8 bytes gmem, 16 bytes cmem[3]\n"
            "ptxas info    : Compiling entry function 'k' for 'sm_86'\n"
            "ptxas info    : Function properties for k\n"
            "    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n"
            "ptxas info    : Used 40 registers, 384 bytes smem, 360 bytes cmem[0]\n"
            "ptxas warning : Registers are spilled to local memory in function 'k', 4 bytes spill stores, "
            "4 bytes spill loads\n")
    p = gs.parse_ptxas(text)
    k = p["functions"]["k"]
    assert (k["registers"], k["smem"], k["cmem"], k["spill_stores"]) == (40, 384, {0: 360}, 4)
    assert p["module"] == {"gmem": 8, "cmem": {3: 16}}
    assert len(p["warnings"]) == 1 and "spilled" in p["warnings"][0]


def test_occupancy_rule():
    occ = gs.occupancy
    # 128 registers: 4096 per warp, 4 warps per sub-partition, 16 per SM
    o = occ(128, 128, 90)
    assert (o["warps_per_sm"], o["blocks_per_sm"], o["occupancy"], o["limited_by"]) == (16, 4, 0.25, ["registers"])
    assert occ(128, 128, 86)["occupancy"] == pytest.approx(16 / 48)
    # 96 registers: 3072 per warp -> 5 warps per sub-partition = 20 per SM (not 65536 // 3072 = 21)
    assert occ(96, 32, 90)["warps_per_sm"] == 20
    # 62 registers round up to 2048 per warp: 32 warps; a 1024-thread block just fits
    assert occ(62, 1024, 90)["warps_per_sm"] == 32
    assert occ(64, 1024, 90)["warps_per_sm"] == 32
    assert occ(65, 1024, 90)["blocks_per_sm"] == 0
    assert occ(256, 32, 90)["blocks_per_sm"] == 0
    # few registers: warps or blocks per SM limit
    o = occ(16, 32, 86)
    assert (o["blocks_per_sm"], o["limited_by"]) == (16, ["blocks"])
    assert occ(16, 256, 90)["limited_by"] == ["warps"] and occ(16, 256, 90)["occupancy"] == 1.0
    # static shared memory: 48 KiB + 1 KiB reserved per block, 100 KiB per SM on 8.6
    assert occ(32, 128, 86, smem=48 * 1024)["blocks_per_sm"] == 2
    assert occ(32, 128, 75) is None
    # cudaOccupancyMaxPotentialBlockSize: the largest block of the highest occupancy
    assert gs.auto_block(128, 90)["block"] == 512
    assert gs.auto_block(46, 90)["block"] == 640
    assert gs.auto_block(32, 90)["block"] == 1024


def test_build_flags_from_cmake(monkeypatch):
    monkeypatch.delenv("CUDAARCHS", raising=False)
    b = gs.read_cmake_build(ROOT)
    assert b["target"] == "_core_cuda"
    assert str(ROOT / "csrc" / "cuda" / "kernels.cu") in b["sources"]
    assert all(s.endswith(".cu") for s in b["sources"])
    for flag in ("--fmad=false", "-std=c++17", f"-I{ROOT / 'csrc'}", "-O3"):
        assert flag in b["flags"]
    assert "-ffp-contract=off" not in b["flags"]  # the CXX-only option stays out
    cmake = (ROOT / "cmake" / "cuda.cmake").read_text()
    spec = re.search(r'set\(CMAKE_CUDA_ARCHITECTURES "([^"]+)"\)', cmake).group(1)
    assert b["arch_spec"] == spec
    assert b["architectures"] == [a.split("-")[0] for a in spec.split(";") if not a.endswith("-virtual")]
    monkeypatch.setenv("CUDAARCHS", "86-real;89")
    b = gs.read_cmake_build(ROOT)
    assert b["architectures"] == ["86", "89"] and b["ptx"] == ["89"]


def test_generator_expressions():
    s = "$<$<COMPILE_LANGUAGE:CUDA>:-O3;--fmad=false>;$<$<COMPILE_LANGUAGE:CXX>:-O3;-x>;$<$<CONFIG:Release>:-y>"
    assert gs._eval_genex(s, "CUDA", "Release") == "-O3;--fmad=false;;-y"
    assert gs._eval_genex(s, "CXX", "Debug") == ";-O3;-x;"
    with pytest.raises(gs.BuildReadError):
        gs._eval_genex("$<TARGET_FILE:x>", "CUDA", "Release")


def test_missing_nvcc_exits_2(capsys):
    assert gs.main(["--nvcc", str(ROOT / "no" / "such" / "nvcc")]) == 2
    assert "nvcc not found" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
def test_script_reports_every_kernel(tmp_path):
    out = tmp_path / "static.json"
    p = subprocess.run([sys.executable, str(SCRIPT), "--arch", "90", "--goal-registers", "255", "--json", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stdout + p.stderr
    report = json.loads(out.read_text())
    rows = {r["kernel"]: r for r in report["rows"]}
    for name in _kernels_of_kernels_cu():
        r = rows[name]
        assert r["arch"] == "90" and r["registers"] > 0, r
        assert r["cmem"]["0"] > 0 and r["code_bytes"] > 0
        assert 0 < r["occupancy"]["128"]["occupancy"] <= 1
        assert f"`{name}`" in p.stdout
    prov = report["provenance"]
    assert "release" in prov["nvcc_version"] and "--fmad=false" in prov["flags"]
    assert prov["architectures"] == ["90"] and prov["date"]
