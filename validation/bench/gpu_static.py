"""Static GPU kernel figures, no GPU needed: registers, stack, spills, shared and constant memory,
code size and the theoretical occupancy of every CUDA kernel of the project, from the compiler.

What is compiled, and how. The CUDA sources, include paths, definitions, C++ standard, build
type and architectures are read from the CMake build itself (CMakeLists.txt and the files it
include()s, here cmake/cuda.cmake; the build type from pyproject.toml's scikit-build
`cmake.build-type` when set), not from a list kept here: every .cu source of the target that has
CUDA sources (rptdose._core_cuda: csrc/cuda/kernels.cu, csrc/cuda/launch.cu) is compiled with

    nvcc <the target's CUDA flags> -arch=sm_XX -cubin -Xptxas -v SOURCE -o TMP.cubin

for each real architecture, and the kernels are found by parsing ptxas' verbose output (every
"Compiling entry function" it reports), so a kernel added to kernels.cu shows up by itself.
`--resource-usage` adds nothing here (without -rdc it is `-Xptxas -v`). Constant memory, static
shared memory and code size come from the cubin's ELF sections (.nv.constantN.<kernel>,
.nv.shared.<kernel>, .text.<kernel>), because ptxas 13 no longer prints cmem for sm_90 (it
still does for sm_80; where it does, the two must agree). Default architectures: those the
build compiles machine code for (CMAKE_CUDA_ARCHITECTURES in cmake/cuda.cmake,
"80-real;90-real;90-virtual": sm_80 and sm_90; the CUDAARCHS environment variable overrides it
as it does for CMake); the compute_90 PTX is JIT-compiled by the driver for newer GPUs, with the
driver's own ptxas, so those figures may differ. --arch picks others (e.g. 86 89 for RTX 30xx
and RTX 40xx / L40; note that a build without them runs its sm_80 code there).

The cupy backend (NVRTC) compiles the very same csrc/cuda/kernels.cu with the same headers, so
one compile covers both backends. Its options differ from nvcc's only by -ftz=true (cupy
appends it to every NVRTC compile), by the defines RPT_EXPECTED_PARAMS_SIZE (a static_assert
on the Params layout) and RPT_SOURCE_DIGEST (a cache key the code does not read), and by the
compiler's version. Checked on 2026-12-04: NVRTC 13.5 with cupy's options and -Xptxas -v gave,
for sm_90, the same registers, stack frames and spills per kernel as nvcc 13.0 here; and nvcc
with --extra=-ftz=true gives the same figures as without. To see cupy's math mode, add
--extra=-ftz=true; to try a register cap, --extra=-maxrregcount=96.

Occupancy (theoretical, per SM, from registers, warps, blocks and static shared memory; no
dynamic shared memory; the kernels use none). The rule is that of the CUDA Occupancy
Calculator as NVIDIA ships it in code, cuda_occupancy.h (cudaOccMaxBlocksPerSMRegsLimit,
cudaOccMaxBlocksPerSMWarpsLimit, cudaOccMaxBlocksPerSMSmemLimit), with the per-architecture
limits of the CUDA C++ Programming Guide's table "Technical Specifications per Compute
Capability" (65536 32-bit registers per SM, at most 255 per thread; resident warps per SM: 64
on 8.0, 9.0 and 10.0, 48 on 8.6, 8.7, 8.9 and 12.0) and of cuda_occupancy.h (resident blocks
per SM, shared memory per SM):

    warps_per_block   = ceil(block / 32)
    regs_per_warp     = ceil(regs * 32 / 256) * 256        (allocation unit: 256 per warp)
    warps_by_regs     = floor(65536 / 4 / regs_per_warp) * 4
                        (registers are allocated in each of the SM's 4 sub-partitions)
    blocks_by_regs    = floor(warps_by_regs / warps_per_block)
                        (0 when regs > 255 or regs_per_warp * roundup(warps_per_block, 4) > 65536)
    blocks_by_warps   = floor(max_warps_per_SM / warps_per_block)
    blocks_by_smem    = floor(max_smem_per_SM / roundup(static_smem + 1024, 128))
    blocks            = min(blocks_by_regs, blocks_by_warps, blocks_by_smem, max_blocks_per_SM)
    occupancy         = blocks * warps_per_block / max_warps_per_SM

"auto block" is the block size cudaOccupancyMaxPotentialBlockSize would choose (what the cuda
backend launches rpt_histories_kernel with unless told): the largest block, from 1024 down in
steps of 32, of the highest resident threads per SM. The cupy backend uses 128 threads for the
history kernel, both backends 256 for the voxel kernels (fold, finalize).

The stack frame is per-thread local memory the code uses by design (arrays on the stack), not
register spills; spill stores/loads are ptxas' own figures.

Usage:

    python validation/bench/gpu_static.py [--arch 80 90 ...] [--block-size 128 256]
        [--goal-registers 128] [--strict] [--json PATH] [--extra=-FLAG ...] [--nvcc PATH] [--jobs N]

Flags: "regs > N" (with --goal-registers N), "spills" (ptxas' spill stores/loads), "does not
fit" (no block size fits an SM); device functions ptxas compiled apart (not inlined) report their
own spills, counted in the summary line. Exit status: 0 (also when something is flagged, unless
--strict: then 1), 2 when nvcc is missing or the build cannot be read, 3 when a compile fails.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------- architecture limits

# Per compute capability: resident warps and blocks per SM, shared memory per SM (the largest
# carve-out) in bytes. Registers: 65536 per SM on all of these. Sources: the CUDA C++ Programming
# Guide, "Technical Specifications per Compute Capability" (warps), and cuda_occupancy.h of CUDA
# 13.0 (cudaOccMaxBlocksPerMultiprocessor, cudaOccAlignUpShmemSizeVoltaPlus).
ARCH_LIMITS = {
    80: dict(max_warps=64, max_blocks=32, smem_per_sm=164 * 1024),   # A100
    86: dict(max_warps=48, max_blocks=16, smem_per_sm=100 * 1024),   # RTX 30xx, A40, A10
    87: dict(max_warps=48, max_blocks=16, smem_per_sm=164 * 1024),   # Jetson Orin
    89: dict(max_warps=48, max_blocks=24, smem_per_sm=100 * 1024),   # RTX 40xx, L40, L4
    90: dict(max_warps=64, max_blocks=32, smem_per_sm=228 * 1024),   # H100, H200
    100: dict(max_warps=64, max_blocks=32, smem_per_sm=228 * 1024),  # B200
    120: dict(max_warps=48, max_blocks=24, smem_per_sm=100 * 1024),  # RTX 50xx
}
REGS_PER_SM = 65536
MAX_REGS_PER_THREAD = 255
REG_ALLOC_UNIT = 256        # registers, per warp
SUB_PARTITIONS = 4
WARP = 32
SMEM_RESERVED_PER_BLOCK = 1024
SMEM_ALLOC_UNIT = 128
MAX_THREADS_PER_BLOCK = 1024


def _round_up(x: int, unit: int) -> int:
    return -(-x // unit) * unit


def occupancy(regs: int, block: int, arch: int, smem: int = 0) -> dict | None:
    """Theoretical occupancy of a kernel with `regs` registers per thread and `smem` bytes of
    static shared memory, launched with `block` threads, on compute capability `arch` (80, 90,
    ...); None for an architecture without known limits. See the module docstring."""
    lim = ARCH_LIMITS.get(int(arch))
    if lim is None:
        return None
    warps_per_block = -(-block // WARP)
    regs_per_warp = _round_up(max(regs, 1) * WARP, REG_ALLOC_UNIT)
    if (regs > MAX_REGS_PER_THREAD or block > MAX_THREADS_PER_BLOCK
            or regs_per_warp * _round_up(warps_per_block, SUB_PARTITIONS) > REGS_PER_SM):
        by_regs = 0
    else:
        warps_by_regs = (REGS_PER_SM // SUB_PARTITIONS // regs_per_warp) * SUB_PARTITIONS
        by_regs = warps_by_regs // warps_per_block
    limits = {
        "registers": by_regs,
        "warps": lim["max_warps"] // warps_per_block,
        "blocks": lim["max_blocks"],
        "shared memory": lim["smem_per_sm"] // _round_up(smem + SMEM_RESERVED_PER_BLOCK, SMEM_ALLOC_UNIT),
    }
    blocks = min(limits.values())
    limiter = [k for k, v in limits.items() if v == blocks]
    warps = blocks * warps_per_block
    return dict(block=block, blocks_per_sm=blocks, warps_per_sm=warps,
                occupancy=warps / lim["max_warps"], limited_by=limiter)


def auto_block(regs: int, arch: int, smem: int = 0) -> dict | None:
    """The block size cudaOccupancyMaxPotentialBlockSize picks (cuda_occupancy.h): from 1024 down
    in steps of 32, the first of the most resident threads per SM."""
    if int(arch) not in ARCH_LIMITS:
        return None
    best, best_threads = occupancy(regs, WARP, arch, smem), 0
    full = ARCH_LIMITS[int(arch)]["max_warps"] * WARP
    for block in range(MAX_THREADS_PER_BLOCK, 0, -WARP):
        occ = occupancy(regs, block, arch, smem)
        threads = occ["blocks_per_sm"] * block
        if threads > best_threads:
            best, best_threads = occ, threads
        if best_threads == full:
            break
    return best


# --------------------------------------------------------------------------- ptxas output

_FIELD_PATTERNS = (
    (re.compile(r"^(\d+) registers$"), "registers"),
    (re.compile(r"^used (\d+) barriers$"), "barriers"),
    (re.compile(r"^(\d+) bytes smem$"), "smem"),
    (re.compile(r"^(\d+) bytes lmem$"), "lmem"),
    (re.compile(r"^(\d+) bytes cumulative stack size$"), "cumulative_stack"),
    (re.compile(r"^(\d+) textures$"), "textures"),
    (re.compile(r"^(\d+) samplers$"), "samplers"),
    (re.compile(r"^(\d+) surfaces$"), "surfaces"),
)
_CMEM = re.compile(r"^(\d+) bytes cmem\[(\d+)\]$")
_PREFIX = re.compile(r"^ptxas\s*(info|warning|error|fatal)?\s*[:.]\s?")


def _used_fields(text: str, into: dict) -> None:
    """'Used 128 registers, used 0 barriers, 3792 bytes cumulative stack size, 400 bytes
    cmem[0]' (the parts vary by ptxas version and architecture) into `into`."""
    for part in (p.strip() for p in text.split(",")):
        if part.startswith("Used "):
            part = part[5:]
        m = _CMEM.match(part)
        if m:
            into.setdefault("cmem", {})[int(m.group(2))] = int(m.group(1))
            continue
        for pat, key in _FIELD_PATTERNS:
            m = pat.match(part)
            if m:
                into[key] = int(m.group(1))
                break
        else:
            if part:
                into.setdefault("other", []).append(part)


def parse_ptxas(text: str) -> dict:
    """ptxas -v output (from nvcc, or an NVRTC log with -Xptxas -v) into
    {"functions": {name: figures}, "module": {...}, "warnings": [...]}.

    A function's figures: arch, entry (True for a kernel, False for a device function ptxas
    compiled separately, e.g. one called through the ABI), stack_frame, spill_stores,
    spill_loads (bytes), registers, barriers, cumulative_stack, smem, cmem {bank: bytes} when
    printed, compile_ms. Module figures: gmem and module-level cmem banks."""
    functions: dict[str, dict] = {}
    module: dict = {}
    warnings: list[str] = []
    entry_arch: dict[str, str] = {}
    current_entry = None
    current = None
    for raw in text.splitlines():
        line = raw.rstrip()
        m = _PREFIX.match(line)
        kind = m.group(1) if m else None
        body = line[m.end():].strip() if m else line.strip()
        if kind in ("warning", "error", "fatal"):
            warnings.append(body)
            continue
        m = re.match(r"Compiling entry function '([^']+)' for '([^']+)'", body)
        if m:
            current_entry = m.group(1)
            entry_arch[current_entry] = m.group(2)
            current = functions.setdefault(current_entry, {"entry": True, "arch": m.group(2)})
            continue
        m = re.match(r"Function properties for (\S+)", body)
        if m:
            name = m.group(1)
            if name not in functions:
                functions[name] = {"entry": name in entry_arch, "arch": entry_arch.get(name)}
            current = functions[name]
            continue
        m = re.match(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", body)
        if m and current is not None:
            current["stack_frame"], current["spill_stores"], current["spill_loads"] = map(int, m.groups())
            continue
        if body.startswith("Used ") and current is not None:
            _used_fields(body, current)
            continue
        m = re.match(r"Compile time = ([\d.]+) ms", body)
        if m and current is not None:
            current["compile_ms"] = float(m.group(1))
            continue
        m = re.match(r"(\d+) bytes gmem(.*)", body)
        if m:
            module["gmem"] = int(m.group(1))
            for part in m.group(2).split(","):
                cm = _CMEM.match(part.strip())
                if cm:
                    module.setdefault("cmem", {})[int(cm.group(2))] = int(cm.group(1))
            continue
    # a device function's arch: that of the module (one ptxas run compiles one architecture)
    archs = {f["arch"] for f in functions.values() if f.get("arch")}
    for f in functions.values():
        if not f.get("arch") and len(archs) == 1:
            f["arch"] = next(iter(archs))
    return {"functions": functions, "module": module, "warnings": warnings}


# --------------------------------------------------------------------------- cubin (ELF) sections


def elf_sections(data: bytes) -> dict[str, int]:
    """{section name: size in bytes} of a 64-bit little-endian ELF file (a cubin)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = []
    for i in range(shnum):
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        headers.append((name, offset, size))
    _, str_off, str_size = headers[shstrndx]
    strtab = data[str_off:str_off + str_size]
    out = {}
    for name, _off, size in headers:
        end = strtab.find(b"\0", name)
        out[strtab[name:end].decode()] = size
    return out


def cubin_figures(sections: dict[str, int], kernels) -> tuple[dict, dict]:
    """Per kernel: cmem {bank: bytes} (.nv.constantN.<kernel>), static smem (.nv.shared.<kernel>)
    and code bytes (.text.<kernel>); and the module's own constant banks (.nv.constantN)."""
    per = {}
    for k in kernels:
        cmem = {}
        for name, size in sections.items():
            m = re.fullmatch(r"\.nv\.constant(\d+)\.(.+)", name)
            if m and m.group(2) == k:
                cmem[int(m.group(1))] = size
        per[k] = dict(cmem=cmem, smem=sections.get(f".nv.shared.{k}", 0),
                      code_bytes=sections.get(f".text.{k}", 0))
    module = {int(m.group(1)): size for name, size in sections.items()
              if (m := re.fullmatch(r"\.nv\.constant(\d+)", name))}
    return per, module


# --------------------------------------------------------------------------- the CMake build

_CONFIG_FLAGS = {  # CMake's defaults for CMAKE_CUDA_FLAGS_<CONFIG> (Modules/Compiler/NVIDIA-CUDA.cmake)
    "RELEASE": ["-O3", "-DNDEBUG"], "RELWITHDEBINFO": ["-O2", "-g", "-DNDEBUG"],
    "MINSIZEREL": ["-O1", "-DNDEBUG"], "DEBUG": ["-g"],
}
_TARGET_KINDS = {"MODULE", "SHARED", "STATIC", "OBJECT", "WITH_SOABI", "EXCLUDE_FROM_ALL", "INTERFACE",
                 "NO_EXTRAS", "THIN_LTO", "OPT_SIZE", "SYSTEM"}
_SCOPES = {"PRIVATE", "PUBLIC", "INTERFACE", "BEFORE", "AFTER", "SYSTEM"}


class BuildReadError(RuntimeError):
    pass


def _strip_comments(text: str) -> str:
    out, i, n, in_quote = [], 0, len(text), False
    while i < n:
        c = text[i]
        if in_quote:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
            out.append(c)
        elif c == "#":
            m = re.match(r"#\[(=*)\[", text[i:])
            if m:
                close = "]" + m.group(1) + "]"
                j = text.find(close, i)
                i = n if j < 0 else j + len(close)
                continue
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _split_args(s: str) -> list[str]:
    """CMake command arguments: "quoted" (quotes removed), or unquoted runs (quotes inside kept,
    as CMake keeps them in legacy unquoted arguments such as NAME="${VAR}")."""
    args, i, n = [], 0, len(s)
    while i < n:
        if s[i].isspace() or s[i] in "()":
            i += 1
            continue
        if s[i] == '"':
            j, buf = i + 1, []
            while j < n and s[j] != '"':
                if s[j] == "\\" and j + 1 < n:
                    buf.append(s[j + 1])
                    j += 2
                    continue
                buf.append(s[j])
                j += 1
            args.append("".join(buf))
            i = j + 1
            continue
        j = i
        while j < n and not s[j].isspace() and s[j] not in "()":
            if s[j] == '"':
                k = s.find('"', j + 1)
                j = n if k < 0 else k + 1
                continue
            j += 1
        args.append(s[i:j])
        i = j
    return args


def _commands(text: str):
    """(command name in lower case, [arguments]) of a CMake file, in order."""
    text = _strip_comments(text)
    pos = 0
    for m in re.finditer(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(", text):
        if m.start() < pos:
            continue
        depth, j, in_quote = 1, m.end(), False
        while j < len(text) and depth:
            c = text[j]
            if in_quote:
                if c == "\\":
                    j += 1
                elif c == '"':
                    in_quote = False
            elif c == '"':
                in_quote = True
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            j += 1
        pos = j
        yield m.group(1).lower(), _split_args(text[m.end():j - 1])


def _expand_vars(s: str, variables: dict) -> str:
    prev = None
    while prev != s:
        prev = s
        s = re.sub(r"\$\{([A-Za-z0-9_]+)\}", lambda m: variables.get(m.group(1), ""), s)
    return s


def _eval_genex(s: str, language: str, config: str) -> str:
    """Generator expressions of the kinds the build uses, for one language and configuration:
    $<COMPILE_LANGUAGE:L>, $<CONFIG:C>, $<BOOL:...>, $<NOT:...>, $<AND/OR:...> (to 0/1) and
    $<cond:value>. Anything else is an error rather than a silent guess."""
    def find_close(t, i):  # t[i:i+2] == "$<"
        depth, j = 0, i
        while j < len(t):
            if t.startswith("$<", j):
                depth += 1
                j += 2
                continue
            if t[j] == ">":
                depth -= 1
                if depth == 0:
                    return j
            j += 1
        raise BuildReadError(f"unbalanced generator expression in {t!r}")

    def evaluate(inner):
        inner = _eval_genex(inner, language, config)  # innermost first
        name, _, arg = inner.partition(":")
        if name in ("0", "1"):
            return arg if name == "1" else ""
        if name == "COMPILE_LANGUAGE":
            return "1" if language in arg.split(",") else "0"
        if name == "CONFIG":
            return "1" if config.upper() in (a.upper() for a in arg.split(",")) else "0"
        if name == "BOOL":
            return "0" if arg.upper() in ("", "0", "OFF", "NO", "FALSE", "N", "IGNORE", "NOTFOUND") else "1"
        if name == "NOT":
            return "1" if arg == "0" else "0"
        if name in ("AND", "OR"):
            vals = arg.split(",")
            return "1" if (all if name == "AND" else any)(v == "1" for v in vals) else "0"
        raise BuildReadError(f"generator expression $<{inner}> is not understood here")

    out, i = [], 0
    while i < len(s):
        if s.startswith("$<", i):
            j = find_close(s, i)
            out.append(evaluate(s[i + 2:j]))
            i = j + 1
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _read_cmake(path: Path, root: Path, seen=None) -> list[tuple[str, list[str], Path]]:
    """The commands of a CMake file, include()d files (relative to the top source folder, as
    CMake resolves them) inlined in place. Conditions are not evaluated: every command counts."""
    seen = seen if seen is not None else set()
    path = path.resolve()
    if path in seen:
        return []
    seen.add(path)
    out = []
    for name, args in _commands(path.read_text()):
        if name == "include" and args:
            inc = root / args[0] if not os.path.isabs(args[0]) else Path(args[0])
            if inc.suffix == ".cmake" and inc.is_file():
                out.extend(_read_cmake(inc, root, seen))
                continue
        out.append((name, args, path))
    return out


def _pyproject_build_type(root: Path) -> str | None:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        return None
    p = root / "pyproject.toml"
    if not p.is_file():
        return None
    sk = tomllib.loads(p.read_text()).get("tool", {}).get("scikit-build", {})
    return sk.get("cmake.build-type") or sk.get("cmake", {}).get("build-type")


def read_cmake_build(root: Path = ROOT) -> dict:
    """The CUDA target of the CMake build: {target, sources, flags, architectures, build_type,
    arch_source}. Flags are those nvcc gets for the target's .cu files (in CMake's order:
    CMAKE_CUDA_FLAGS_<CONFIG>, definitions, include directories, -std, compile options)."""
    cmds = _read_cmake(root / "CMakeLists.txt", root)
    variables: dict[str, str] = {}
    targets: dict[str, list[str]] = {}
    defs: dict[str, list[str]] = {}
    incs: dict[str, list[str]] = {}
    opts: dict[str, list[str]] = {}
    dir_defs, dir_incs, dir_opts = [], [], []
    for name, args, _src in cmds:
        if name == "set" and args:
            vals = args[1:]
            if "CACHE" in vals:
                vals = vals[:vals.index("CACHE")]
            if "PARENT_SCOPE" in vals:
                vals = vals[:vals.index("PARENT_SCOPE")]
            variables[args[0]] = ";".join(_expand_vars(v, variables) for v in vals)
        elif name in ("add_library", "python_add_library", "pybind11_add_module", "add_executable",
                      "cuda_add_library") and args:
            targets[args[0]] = [a for a in args[1:] if a not in _TARGET_KINDS]
        elif name == "target_sources" and args:
            targets.setdefault(args[0], []).extend(a for a in args[1:] if a not in _SCOPES)
        elif name in ("target_compile_definitions", "target_include_directories", "target_compile_options") and args:
            store = {"target_compile_definitions": defs, "target_include_directories": incs,
                     "target_compile_options": opts}[name]
            # one call's arguments form one list entry, its generator expressions spanning them
            store.setdefault(args[0], []).append(";".join(a for a in args[1:] if a not in _SCOPES))
        elif name in ("add_compile_definitions", "add_definitions"):
            dir_defs.append(";".join(args))
        elif name == "include_directories":
            dir_incs.append(";".join(a for a in args if a not in _SCOPES))
        elif name == "add_compile_options":
            dir_opts.append(";".join(args))

    cuda_targets = {t: [s for s in srcs if s.endswith(".cu")] for t, srcs in targets.items()}
    cuda_targets = {t: s for t, s in cuda_targets.items() if s}
    if not cuda_targets:
        raise BuildReadError("no CMake target with .cu sources in CMakeLists.txt and its includes")
    if len(cuda_targets) > 1:
        raise BuildReadError(f"several CUDA targets ({', '.join(cuda_targets)}): not handled here")
    target, sources = next(iter(cuda_targets.items()))

    build_type = _pyproject_build_type(root) or variables.get("CMAKE_BUILD_TYPE") or ""

    def entries(lst):
        out = []
        for e in lst:
            e = _eval_genex(_expand_vars(e, variables), "CUDA", build_type)
            out.extend(x for x in e.split(";") if x)
        return out

    flags = list(variables.get("CMAKE_CUDA_FLAGS", "").split())
    flags += _CONFIG_FLAGS.get(build_type.upper(), [])
    for d in entries(dir_defs) + entries(defs.get(target, [])):
        flags.append(d if d.startswith("-D") else "-D" + d)
    for inc in entries(dir_incs) + entries(incs.get(target, [])):
        flags.append("-I" + str(inc if os.path.isabs(inc) else (root / inc)))
    std = variables.get("CMAKE_CUDA_STANDARD")
    if std:
        flags.append(f"-std=c++{std}")
    flags += entries(dir_opts) + entries(opts.get(target, []))

    env_archs = os.environ.get("CUDAARCHS")
    if "CMAKE_CUDA_ARCHITECTURES" not in variables and not env_archs:
        raise BuildReadError("CMAKE_CUDA_ARCHITECTURES is not set in the build: give --arch")
    if env_archs:
        arch_spec, arch_source = env_archs, "the CUDAARCHS environment variable"
    else:
        arch_spec, arch_source = variables["CMAKE_CUDA_ARCHITECTURES"], "CMAKE_CUDA_ARCHITECTURES (cmake/cuda.cmake)"
    real, virtual = [], []
    for a in (x.strip() for x in arch_spec.replace(" ", ";").split(";")):
        if not a:
            continue
        m = re.fullmatch(r"(\d+)(a|f)?(-real|-virtual)?", a)
        if not m:
            raise BuildReadError(f"architecture {a!r} ({arch_source}) cannot be compiled statically: give --arch")
        if m.group(3) != "-virtual":
            real.append(m.group(1) + (m.group(2) or ""))
        if m.group(3) != "-real":
            virtual.append(m.group(1) + (m.group(2) or ""))
    return dict(target=target, sources=[str(root / s) for s in sources], flags=flags,
                architectures=real, ptx=virtual,
                arch_spec=arch_spec, arch_source=arch_source, build_type=build_type)


# --------------------------------------------------------------------------- compiling


def nvcc_version(nvcc: str) -> str:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    rel = next((ln for ln in lines if "release" in ln), "")
    build = next((ln for ln in lines if ln.startswith("Build ")), "")
    return "; ".join(x for x in (rel, build) if x) or out.strip()


def compile_one(nvcc: str, source: str, arch: str, flags: list[str], tmp: str) -> dict:
    """nvcc -cubin -Xptxas -v of one source for one architecture: the ptxas figures merged with
    the cubin's sections, per kernel."""
    out = os.path.join(tmp, f"{Path(source).stem}.sm_{arch}.cubin")
    cmd = [nvcc, *flags, f"-arch=sm_{arch}", "-cubin", "-Xptxas", "-v", source, "-o", out]
    p = subprocess.run(cmd, capture_output=True, text=True)
    log = p.stdout + p.stderr
    if p.returncode != 0:
        return dict(source=source, arch=arch, command=cmd, ok=False, log=log)
    parsed = parse_ptxas(log)
    sections = elf_sections(Path(out).read_bytes())
    kernels = [n for n, f in parsed["functions"].items() if f["entry"]]
    per, module_cmem = cubin_figures(sections, kernels)
    mismatches = []
    for k in kernels:
        f = parsed["functions"][k]
        printed = f.pop("cmem", None)
        if printed is not None and printed != per[k]["cmem"]:
            mismatches.append(f"{k}: ptxas cmem {printed} != cubin {per[k]['cmem']}")
        if "smem" in f and f["smem"] != per[k]["smem"]:
            mismatches.append(f"{k}: ptxas smem {f['smem']} != cubin {per[k]['smem']}")
        f.update(per[k])
    return dict(source=source, arch=arch, command=cmd, ok=True, parsed=parsed,
                module_cmem=module_cmem, mismatches=mismatches)


def demangle(names: list[str]) -> dict[str, str]:
    """{mangled: readable} through c++filt when it is there (else the names as they are)."""
    tool = shutil.which("c++filt")
    if not tool or not names:
        return {n: n for n in names}
    p = subprocess.run([tool], input="\n".join(names) + "\n", capture_output=True, text=True, timeout=60)
    out = p.stdout.splitlines()
    return dict(zip(names, out)) if p.returncode == 0 and len(out) == len(names) else {n: n for n in names}


def _git(*args) -> str | None:
    try:
        p = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return p.stdout.strip() if p.returncode == 0 else None


# --------------------------------------------------------------------------- report


def _fmt_cmem(cmem: dict) -> str:
    return " + ".join(f"{v} (c{k})" for k, v in sorted(cmem.items())) or "0"


def _fmt_occ(occ: dict | None, with_block=False) -> str:
    if occ is None:
        return "n/a"
    if occ["blocks_per_sm"] == 0:
        return "does not fit"
    lead = f"{occ['block']}: " if with_block else ""
    return (f"{lead}{occ['warps_per_sm']} warps, {100 * occ['occupancy']:.1f} % "
            f"({', '.join(occ['limited_by'])})")


def table(rows: list[dict], block_sizes: list[int]) -> str:
    head = (["kernel", "arch", "regs", "stack frame B", "spill st/ld B", "smem B", "cmem B", "code KiB"]
            + [f"occupancy @{b} thr" for b in block_sizes] + ["auto block", "flags"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"`{r['kernel']}`", f"sm_{r['arch']}", str(r["registers"]), str(r["stack_frame"]),
                 f"{r['spill_stores']} / {r['spill_loads']}", str(r["smem"]), _fmt_cmem(r["cmem"]),
                 f"{r['code_bytes'] / 1024:.1f}"]
        cells += [_fmt_occ(r["occupancy"].get(str(b))) for b in block_sizes]
        cells += [_fmt_occ(r["auto_block"], with_block=True), ", ".join(r["flags"]) or "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", nargs="+", help="architectures (90, sm_90, 86,89 ...); default: the "
                    "machine-code architectures of the CMake build")
    ap.add_argument("--block-size", nargs="+", type=int, default=[128],
                    help="block sizes for the occupancy columns (default 128)")
    ap.add_argument("--goal-registers", type=int, help="flag kernels with more registers per thread")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 when a kernel is flagged or a device function compiled apart spills")
    ap.add_argument("--json", help="write the figures and their provenance to this file")
    ap.add_argument("--extra", action="append", default=[], metavar="FLAG",
                    help="an extra nvcc flag (repeatable), e.g. --extra=-ftz=true or --extra=-maxrregcount=96")
    ap.add_argument("--nvcc", help="the nvcc to use (default: $CUDACXX, else nvcc on PATH)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel compiles")
    args = ap.parse_args(argv)

    nvcc = args.nvcc or os.environ.get("CUDACXX") or shutil.which("nvcc")
    if not nvcc or not (shutil.which(nvcc) or os.path.isfile(nvcc)):
        print("gpu_static: nvcc not found (put the CUDA toolkit's nvcc on PATH, or give --nvcc "
              "PATH / set CUDACXX); nothing was compiled", file=sys.stderr)
        return 2
    for b in args.block_size:
        if not 1 <= b <= MAX_THREADS_PER_BLOCK:
            ap.error(f"--block-size {b}: expected 1..{MAX_THREADS_PER_BLOCK}")
    try:
        build = read_cmake_build(ROOT)
    except (BuildReadError, OSError) as exc:
        print(f"gpu_static: cannot read the CMake build: {exc}", file=sys.stderr)
        return 2
    if args.arch:
        archs = []
        for a in args.arch:
            for x in a.split(","):
                m = re.fullmatch(r"(?:sm_|compute_)?(\d+[af]?)", x.strip())
                if not m:
                    ap.error(f"--arch {x!r}: expected e.g. 90 or sm_90")
                archs.append(m.group(1))
        arch_source = "--arch"
    else:
        archs, arch_source = build["architectures"], f"{build['arch_source']} = \"{build['arch_spec']}\""
    if not archs:
        print("gpu_static: no machine-code architecture to compile for: give --arch", file=sys.stderr)
        return 2
    flags = build["flags"] + list(args.extra)
    version = nvcc_version(nvcc)
    print(f"nvcc: {version}")
    print(f"target {build['target']} ({build['build_type'] or 'no build type'}), architectures "
          f"{', '.join('sm_' + a for a in archs)} from {arch_source}")
    print("flags: " + " ".join(shlex.quote(f) for f in flags))

    jobs = [(s, a) for a in archs for s in build["sources"]]
    with tempfile.TemporaryDirectory(prefix="gpu_static_") as tmp:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(lambda j: compile_one(nvcc, j[0], j[1], flags, tmp), jobs))
    failed = [r for r in results if not r["ok"]]
    for r in failed:
        print(f"\ncompile failed: {' '.join(shlex.quote(c) for c in r['command'])}\n{r['log']}", file=sys.stderr)
    if failed:
        return 3

    rows, device_functions = [], []
    arch_notes: dict[str, list[str]] = {}  # note -> the architectures it holds for

    def note(text, arch):
        arch_notes.setdefault(text, []).append(f"sm_{arch}")

    for r in results:
        rel = os.path.relpath(r["source"], ROOT)
        funcs = r["parsed"]["functions"]
        num_arch = int(re.match(r"\d+", r["arch"]).group(0))
        if not funcs:
            note(f"{rel}: no device code", r["arch"])
        for name, f in funcs.items():
            if not f["entry"]:
                device_functions.append(dict(source=rel, arch=r["arch"], function=name,
                                             stack_frame=f.get("stack_frame"),
                                             spill_stores=f.get("spill_stores"), spill_loads=f.get("spill_loads")))
                continue
            row = dict(kernel=name, source=rel, arch=r["arch"], registers=f.get("registers", 0),
                       barriers=f.get("barriers", 0), stack_frame=f.get("stack_frame", 0),
                       cumulative_stack=f.get("cumulative_stack", 0),
                       spill_stores=f.get("spill_stores", 0), spill_loads=f.get("spill_loads", 0),
                       smem=f["smem"], cmem={str(k): v for k, v in sorted(f["cmem"].items())},
                       code_bytes=f["code_bytes"], ptxas_compile_ms=f.get("compile_ms"))
            row["occupancy"] = {str(b): occupancy(row["registers"], b, num_arch, row["smem"])
                                for b in args.block_size}
            row["auto_block"] = auto_block(row["registers"], num_arch, row["smem"])
            flags_ = []
            if args.goal_registers is not None and row["registers"] > args.goal_registers:
                flags_.append(f"regs > {args.goal_registers}")
            if row["spill_stores"] or row["spill_loads"]:
                flags_.append("spills")
            if row["auto_block"] is not None and row["auto_block"]["blocks_per_sm"] == 0:
                flags_.append("does not fit")
            row["flags"] = flags_
            rows.append(row)
        for w in r["parsed"]["warnings"]:
            note(f"{rel}: ptxas: {w}", r["arch"])
        for mm in r["mismatches"]:
            note(f"{rel}: {mm}", r["arch"])
        if r["module_cmem"]:
            note(f"{rel}: module constant banks {_fmt_cmem(r['module_cmem'])} B", r["arch"])
        if r["parsed"]["module"].get("gmem"):
            note(f"{rel}: {r['parsed']['module']['gmem']} B of global (__device__) data", r["arch"])
        if num_arch not in ARCH_LIMITS:
            note("no per-SM limits known here: occupancy n/a", r["arch"])
    rows.sort(key=lambda x: (x["kernel"], x["arch"]))
    readable = demangle(sorted({d["function"] for d in device_functions}))
    for d in device_functions:
        d["demangled"] = readable[d["function"]]
        note(f"{d['source']}: device function `{d['demangled']}` compiled apart (called, not inlined): "
             f"{d['stack_frame']} B stack frame, spills {d['spill_stores']} / {d['spill_loads']} B", d["arch"])
    notes = [f"{text} ({', '.join(dict.fromkeys(archs))})" for text, archs in arch_notes.items()]
    if build["ptx"] and not args.arch:
        notes.append("the build also ships PTX for " + ", ".join("compute_" + a for a in build["ptx"])
                     + ": the driver JIT-compiles it for newer GPUs with its own ptxas (figures not here)")

    print()
    print(table(rows, args.block_size))
    if notes:
        print()
        for n in notes:
            print("- " + n)
    flagged = [r for r in rows if r["flags"]]
    # device functions compiled apart spill on their own account (not in their callers' figures)
    spilling = [d for d in device_functions if d["spill_stores"] or d["spill_loads"]]
    if args.goal_registers is not None or flagged or spilling:
        print()
        goal = f"goal <= {args.goal_registers} registers, no spills" if args.goal_registers is not None else "no spills"
        print(f"{len(flagged)} of {len(rows)} kernel builds flagged ({goal}); "
              f"{len(spilling)} device function builds compiled apart spill")

    if args.json:
        dirty = _git("status", "--porcelain", "--", "csrc", "CMakeLists.txt", "cmake", "pyproject.toml")
        report = dict(
            rows=rows, device_functions=device_functions, notes=notes,
            provenance=dict(
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                command=" ".join([os.path.relpath(sys.argv[0])] + (argv if argv is not None else sys.argv[1:])),
                nvcc=nvcc, nvcc_version=version, target=build["target"], build_type=build["build_type"],
                sources=[os.path.relpath(s, ROOT) for s in build["sources"]],
                flags=flags, nvcc_commands=[" ".join(shlex.quote(c) for c in r["command"]) for r in results],
                architectures=archs, architectures_from=arch_source,
                git_commit=_git("rev-parse", "HEAD"),
                git_dirty=None if dirty is None else bool(dirty),
                git_dirty_files=None if not dirty else dirty.splitlines()),
            occupancy_model=dict(
                formula="cuda_occupancy.h (CUDA Occupancy Calculator): registers per warp rounded up to "
                        f"{REG_ALLOC_UNIT}, allocated per sub-partition ({SUB_PARTITIONS} per SM, "
                        f"{REGS_PER_SM} registers per SM), min over registers, warps, blocks and static "
                        "shared memory limits",
                sources=["CUDA C++ Programming Guide, Technical Specifications per Compute Capability",
                         "cuda_occupancy.h (CUDA 13.0)"],
                limits={str(k): v for k, v in ARCH_LIMITS.items()}, block_sizes=args.block_size,
                goal_registers=args.goal_registers))
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmpf = path.with_name(path.name + ".tmp")
        tmpf.write_text(json.dumps(report, indent=1) + "\n")
        os.replace(tmpf, path)
        print(f"\nwrote {path}")
    return 1 if (args.strict and (flagged or spilling)) else 0


if __name__ == "__main__":
    sys.exit(main())
