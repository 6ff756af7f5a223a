"""Memory and disk a dose grid needs, checked as soon as the grid is known.

The dose grid is known once the study's images are read (``dose.grid``: "spect", "ct" or a
spacing in mm), before the registration, the time integration and the transport, which is where
the memory goes. :func:`check_dose_grid` (called by ``rptdose.study._dose_grid`` before the grid
image is allocated) refuses a grid whose estimated peak memory exceeds the memory available, and,
for the output folders being written (:mod:`rptdose.io.outdir`), a disk without room for the
estimated results, with an InputError naming ``dose.grid`` and the estimates: a run that could
not finish fails in seconds instead of after hours (or, at 0.1 mm, with an ITK allocation error).

Estimates (per dose-grid voxel; measured with ``/usr/bin/time -v rptdose run|tia`` on the demo
patient, four time points, ``dose.grid`` 4.8, 3.2, 2.4 and 1.6 mm (0.28 to 7.47 M voxels), 1e5
histories: the peak resident set and the size of the output folder over the number of voxels at
the largest grid, with a margin; see the module's constants):

=====================================  ========================================================
what                                   bytes per voxel
=====================================  ========================================================
``rptdose run`` peak memory            :data:`RUN_BYTES_PER_VOXEL` (the study's arrays: activity
                                       per time point, voxel fits, TIA, masks, phantom; the
                                       transport's 36.5 B/voxel, validation/bench/README.md;
                                       the result maps and their copies for the outputs)
``rptdose tia`` / ``load_study``       :data:`STUDY_BYTES_PER_VOXEL`
``rptdose run`` outputs on disk        :data:`RUN_OUTPUT_BYTES_PER_VOXEL`
``rptdose tia`` outputs on disk        :data:`TIA_OUTPUT_BYTES_PER_VOXEL`
=====================================  ========================================================

Memory available: ``MemAvailable`` of /proc/meminfo, and the cgroup's limit less its usage where
a cgroup (v1 or v2) sets one. Where neither can be read (not Linux) the memory is not checked.
The environment variable ``RPTDOSE_NO_RESOURCE_CHECK=1`` turns both checks off.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rptdose.errors import InputError
from rptdose.io.outdir import active, checks_disabled

#: Peak memory per dose-grid voxel of ``rptdose run`` (B): 300 measured (peak resident set over
#: voxels at 1.6 mm, 7.47 M voxels, 2.09 GiB; slopes 150-266 B/voxel between the larger grids), with
#: a margin.
RUN_BYTES_PER_VOXEL = 320.0
#: Peak memory per dose-grid voxel of loading a study (``rptdose tia``) (B): 254 measured (1.6 mm:
#: 1.77 GiB), with a margin.
STUDY_BYTES_PER_VOXEL = 270.0
#: Memory that does not grow with the grid (interpreter, physics tables, the images as read) (B).
BASE_BYTES = 256 * 2**20
#: Size of ``rptdose run``'s outputs per dose-grid voxel (B): 45-50 measured (47 at 1.6 mm), with a
#: margin for doses that compress less (a noisier map, less air around the patient).
RUN_OUTPUT_BYTES_PER_VOXEL = 64.0
#: Size of ``rptdose tia``'s outputs per dose-grid voxel (B): 27-28 measured, with a margin.
TIA_OUTPUT_BYTES_PER_VOXEL = 36.0
#: Outputs that do not grow with the grid: figures, report, tables (B).
OUTPUT_BASE_BYTES = 2 * 2**20

_GIB = 2.0**30
_MIB = 2.0**20


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _cgroup_available() -> int | None:
    """The cgroup's memory limit less its usage, where a limit is set."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2**60:
            return max(0, limit - usage)
    return None


def available_memory_bytes() -> int | None:
    """Memory this process can still use (B), or None where it cannot be told (module docstring)."""
    values = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    return min(values) if values else None


def _coarser(spacing_mm: tuple[float, float, float], factor: float) -> str:
    """A spacing ``factor`` (> 1) times fewer voxels would fit, as a hint."""
    s = [v * factor ** (1.0 / 3.0) for v in spacing_mm]
    if max(s) - min(s) < 1e-6 * max(s):
        return f"{math.ceil(s[0] * 10) / 10:g} mm"
    return "[" + ", ".join(f"{math.ceil(v * 10) / 10:g}" for v in s) + "] mm"


def check_dose_grid(size_xyz: Any, spacing_mm: Any, setting: Any, *, memory: bool = True) -> None:
    """Refuse (InputError naming ``dose.grid``) a dose grid of ``size_xyz`` voxels (x, y, z) and
    ``spacing_mm`` whose memory or output size estimate exceeds what is available (module
    docstring). ``setting``: the study file's ``dose.grid`` value, for the message; ``memory``:
    False checks the disk only (a study already loaded)."""
    if checks_disabled():
        return


    nx, ny, nz = (int(v) for v in size_xyz)
    spacing = tuple(float(v) for v in spacing_mm)
    n = nx * ny * nz
    folders = active()
    transport = any(f.transport for f in folders)
    per_voxel = RUN_BYTES_PER_VOXEL if transport else STUDY_BYTES_PER_VOXEL
    need = BASE_BYTES + n * per_voxel
    grid = (f"a grid of {nx} x {ny} x {nz} = {n:,} voxels of {' x '.join(f'{v:g}' for v in spacing)} mm")
    shown = setting if isinstance(setting, str) else list(setting) if len(set(setting)) > 1 else setting[0]
    avail = available_memory_bytes() if memory else None
    if memory and avail is not None and need > avail:
        factor = (n * per_voxel) / max(avail - BASE_BYTES, 1.0)
        raise InputError(
            f"dose.grid {shown!r} ({grid} needs about {need / _GIB:.3g} GiB of memory at {per_voxel:g} B/voxel, "
            f"{avail / _GIB:.3g} GiB available): expected a coarser grid that fits, about {_coarser(spacing, factor)} "
            "or more (or \"spect\"); RPTDOSE_NO_RESOURCE_CHECK=1 skips this check")
    for f in folders:
        if f.output_bytes_per_voxel <= 0:
            continue
        out_need = OUTPUT_BASE_BYTES + n * f.output_bytes_per_voxel
        free = f.free_bytes()
        if out_need > free:
            raise InputError(
                f"dose.grid {shown!r} ({grid}: the results need about {out_need / _MIB:.4g} MiB at "
                f"{f.output_bytes_per_voxel:g} B/voxel, {free / _MIB:.4g} MiB free on the disk of {f.option} "
                f"'{f.requested}'): expected free space for the results, or a coarser grid; "
                "RPTDOSE_NO_RESOURCE_CHECK=1 skips this check")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else os.cpu_count())."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
