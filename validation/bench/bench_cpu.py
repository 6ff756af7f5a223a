"""CPU throughput and memory benchmark of the transport core.

Measures Lu-177 decays per second per core, spread uniformly in
  (a) a 128^3 water cube of 4.8 mm voxels,
  (b) a heterogeneous 128^3 phantom of 2.4 mm voxels (soft-tissue body, two lungs, a spine of
      cortical bone; activity uniform in the soft tissue),
with full electron transport and with local electron deposition, on 1 and 2 threads; and the
peak resident memory of a run on a 512 x 512 x 300 grid (bytes per voxel).

Timings come from the core's own clock (table building and Python overhead excluded); each
point runs long enough (>= ~3 s) to be stable. Usage:

    python validation/bench/bench_cpu.py [--quick] [--out validation/bench/out]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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
    src = rd.Source("Lu-177", decays)
    probe = rd.simulate(ph, src, histories=20_000, seed=1, threads=threads, progress=False,
                        electron_transport=electron_transport)
    est = 20_000 / max(probe.elapsed_s, 1e-3)
    n = int(max(10 * 1000, est * seconds))
    res = rd.simulate(ph, src, histories=n, seed=2, threads=threads, progress=False,
                      electron_transport=electron_transport)
    return n, res.elapsed_s, n / res.elapsed_s


def memory_probe(shape):
    """Run in a child process: peak RSS of a small run on a large grid. The baseline is the
    interpreter with rptdose and its tables loaded; the difference covers the phantom, the
    decay map (float64, 8 B/voxel), the core's buffers and the returned dose arrays."""
    code = f"""
import resource, numpy as np, rptdose as rd
from rptdose.physics import materials, tables
shape = {shape!r}
tables.transport_tables([materials.get_material('water')])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ph = rd.Phantom.water(shape=shape, spacing_mm=(1.0, 1.0, 1.0))
dec = np.ones(shape)
src = rd.Source('Lu-177', dec)
res = rd.simulate(ph, src, histories=20000, seed=1, progress=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(base * 1024, peak * 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    base, peak = (int(v) for v in out.stdout.split()[-2:])
    return base, peak


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
    base, peak = memory_probe(shape)
    nvox = int(np.prod(shape))
    mem = dict(shape_zyx=shape, voxels=nvox, baseline_rss_bytes=base, peak_rss_bytes=peak,
               bytes_per_voxel=round((peak - base) / nvox, 1))
    print(f"memory {shape}: peak RSS {peak / 2**30:.2f} GiB, "
          f"{mem['bytes_per_voxel']} bytes/voxel above the interpreter baseline")
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
