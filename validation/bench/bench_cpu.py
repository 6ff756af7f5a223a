"""CPU throughput and memory benchmark of the transport core.

Measures Lu-177 decays per second per core, spread uniformly in
  (a) a 128^3 water cube of 4.8 mm voxels,
  (b) a heterogeneous 128^3 phantom of 2.4 mm voxels (soft-tissue body, two lungs, a spine of
      cortical bone; activity uniform in the soft tissue),
with full electron transport and with local electron deposition, on 1 and 2 threads; and the
peak resident memory of a run on a 512 x 512 x 300 grid (bytes per voxel: the inputs, and what
simulate adds at its peak).

Timings come from the core's own clock (table building and Python overhead excluded); each
point runs at least 3.2 s (--quick: 0.8 s), the history count raised until it does. Usage:

    python validation/bench/bench_cpu.py [--quick] [--out validation/bench/out]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

import rptdose as rd


def water_cube(n=128, spacing=4.8):
    ph = rd.Phantom.water(shape=(n, n, n), spacing_mm=(spacing,) * 3)
    return ph, np.ones(ph.shape)


def heterogeneous(n=128, spacing=2.4):
    z, y, x = np.meshgrid(*(np.arange(n) + 0.5 - n / 2 for _ in range(3)), indexing="ij")
    mat = np.zeros((n, n, n), np.int32)  # 0 air
    dens = np.full((n, n, n), 0.0012, np.float32)
    body = (x / (0.45 * n)) ** 2 + (y / (0.32 * n)) ** 2 < 1
    mat[body], dens[body] = 1, 1.03  # soft tissue
    for cx in (-0.2 * n, 0.2 * n):
        lung = ((x - cx) / (0.14 * n)) ** 2 + (y / (0.2 * n)) ** 2 < 1
        mat[lung], dens[lung] = 2, 0.26
    spine = ((x) ** 2 + (y + 0.2 * n) ** 2) < (0.06 * n) ** 2
    mat[spine], dens[spine] = 3, 1.85
    ph = rd.Phantom.from_arrays(dens, mat, ["air", "soft_tissue", "lung", "cortical_bone"],
                                spacing_mm=(spacing,) * 3)
    return ph, (mat == 1).astype(float)


def rate(ph, decays, electron_transport, threads, seconds):
    """Decays per second of a run that lasts at least 0.8 x `seconds`: the run is repeated with
    more histories until it does (a short run's rate is lowered by the per-run and per-batch
    passes over the grid, so a rate extrapolated from a short probe would be too low)."""
    src = rd.Source("Lu-177", decays)
    n = 20_000
    while True:
        res = rd.simulate(ph, src, histories=n, seed=2, threads=threads, progress=False,
                          electron_transport=electron_transport)
        if res.elapsed_s >= 0.8 * seconds:
            return n, res.elapsed_s, n / res.elapsed_s
        n = int(n * min(20.0, 1.2 * seconds / max(res.elapsed_s, 1e-3)))


def memory_probe(shape):
    """Run in a child process: resident memory of a small run on a large grid, in stages.

    The baseline is the interpreter with rptdose and its tables loaded (current RSS, not the
    high-water mark, which table building raises). The inputs are the phantom (density
    float32 + material int32) and the source (its own float64 copy of the decay map; the
    caller's array is a temporary). The peak of ``simulate`` is the high-water mark after a
    reset (/proc/self/clear_refs), so the earlier peaks of table and phantom building do not
    hide it; it holds the inputs, the core's buffers (alias table, batch tally, run total, sum
    of squares) and the returned arrays."""
    code = f"""
import numpy as np, rptdose as rd
from rptdose.physics import materials, tables
def status():
    with open('/proc/self/status') as f:
        d = dict(line.split(':', 1) for line in f)
    return int(d['VmRSS'].split()[0]) * 1024, int(d['VmHWM'].split()[0]) * 1024
shape = {shape!r}
tables.transport_tables([materials.get_material('water')])
base = status()[0]
ph = rd.Phantom.water(shape=shape, spacing_mm=(1.0, 1.0, 1.0))
src = rd.Source('Lu-177', np.ones(shape))
inputs = status()[0]
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')  # reset the high-water mark (Linux >= 4.0)
res = rd.simulate(ph, src, histories=20000, seed=1, progress=False)
after, peak = status()
print(base, inputs, peak, after)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    base, inputs, peak, after = (int(v) for v in out.stdout.split()[-4:])
    return dict(baseline_rss_bytes=base, inputs_rss_bytes=inputs, peak_rss_bytes=peak,
                after_rss_bytes=after)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs, smaller memory grid")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out"))
    args = ap.parse_args()
    seconds = 1.0 if args.quick else 4.0
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for name, (ph, dec) in (("water_128_4.8mm", water_cube()), ("hetero_128_2.4mm", heterogeneous())):
        for et in (True, False):
            for th in (1, 2):
                n, el, r = rate(ph, dec, et, th, seconds)
                rows.append(dict(case=name, electron_transport=et, threads=th, histories=n,
                                 elapsed_s=round(el, 3), decays_per_s=round(r),
                                 decays_per_s_per_core=round(r / th)))
                print(f"{name:18s} e-transport={str(et):5s} threads={th}: "
                      f"{r:12.4g} decays/s ({r / th:10.4g} per core)", flush=True)
    shape = (60, 256, 256) if args.quick else (300, 512, 512)
    m = memory_probe(shape)
    nvox = int(np.prod(shape))
    per = lambda x: round(x / nvox, 1)  # noqa: E731
    base = m["baseline_rss_bytes"]
    mem = dict(shape_zyx=shape, voxels=nvox, **m,
               inputs_bytes_per_voxel=per(m["inputs_rss_bytes"] - base),
               peak_bytes_per_voxel=per(m["peak_rss_bytes"] - base),
               simulate_bytes_per_voxel=per(m["peak_rss_bytes"] - m["inputs_rss_bytes"]),
               result_bytes_per_voxel=per(m["after_rss_bytes"] - m["inputs_rss_bytes"]))
    print(f"memory {shape}: peak RSS {m['peak_rss_bytes'] / 2**30:.2f} GiB, {mem['peak_bytes_per_voxel']} bytes/voxel "
          f"above the interpreter baseline: inputs (phantom + source map) {mem['inputs_bytes_per_voxel']}, "
          f"simulate {mem['simulate_bytes_per_voxel']} at its peak, of which the returned dose and uncertainty "
          f"{mem['result_bytes_per_voxel']}")
    report = dict(rows=rows, memory=mem, rptdose=rd.__version__, cpu=platform.processor(),
                  machine=platform.machine(), cores=os.cpu_count(),
                  date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  command=" ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]))
    path = os.path.join(args.out, "bench_cpu.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, path)
    print("wrote", path)


if __name__ == "__main__":
    main()
