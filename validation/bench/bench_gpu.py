"""GPU throughput benchmark of the transport core (backends cuda and cupy).

Measures Lu-177 decays per second spread uniformly in a 128^3 water cube of 4.8 mm voxels,
with full electron transport and with local electron deposition, on every GPU backend that
can run here; with --cpu also the CPU backend on all cores, for the speed-up. Without a GPU it
reports why and writes that into the JSON.

Timings are the core's own clock (the result's elapsed_s: upload, kernels, download; table
building and Python overhead excluded), after a warm-up run that pays for the CUDA context
and, for cupy, the NVRTC compile. Each point runs long enough (>= ~3 s) to be stable. Usage:

    python validation/bench/bench_gpu.py [--quick] [--cpu] [--precision double single] [--out validation/bench/out]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from rptdose.physics.nuclides import load_nuclide
from rptdose.physics.tables import transport_tables
from rptdose.transport import cupy_backend, gpu_runners
from rptdose.transport.request import RunRequest


def gpu_backends():
    """[(name, runner)] of the GPU backends that can run here, and {name: reason} of the rest."""
    found, missing = [], {}
    for name, probe, runner in (("cuda", gpu_runners.cuda_available, gpu_runners.run_cuda),
                                ("cupy", cupy_backend.available, gpu_runners.run_cupy)):
        ok, why = probe()
        if ok:
            found.append((name, runner))
        else:
            missing[name] = why
    return found, missing


def water_cube(n=128, spacing=4.8):
    density = np.ones((n, n, n), np.float32)
    material = np.zeros((n, n, n), np.int32)
    decays = np.ones((n, n, n))
    tables = transport_tables(["water"])
    emissions = load_nuclide("Lu-177").emission_arrays()
    return RunRequest(density=density, material=material, spacing_mm=(spacing,) * 3, decays=decays, tables=tables,
                      emissions=emissions, histories=200_000, seed=1, batches=10)


def rate(runner, case, electron_transport, seconds, precision="double"):
    case = case.with_(electron_transport=electron_transport, precision=precision)
    probe = runner(case)  # also the warm-up
    probe = runner(case)
    est = 200_000 / max(probe["elapsed_s"], 1e-3)
    n = int(max(1_000_000, est * seconds))
    res = runner(case.with_(histories=n, seed=2))
    assert res["emitted_units"] == res["deposited_units"] + res["escaped_units"]
    return n, res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs")
    ap.add_argument("--cpu", action="store_true", help="also time the CPU backend on all cores")
    ap.add_argument("--precision", nargs="+", choices=("double", "single"), default=["double", "single"],
                    help="precisions to time (default: both)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out"))
    args = ap.parse_args()
    seconds = 1.0 if args.quick else 4.0
    os.makedirs(args.out, exist_ok=True)
    found, missing = gpu_backends()
    for name, why in missing.items():
        print(f"{name}: not run ({why})")
    rows = []
    if not found and not args.cpu:
        print("no GPU: nothing to measure")
    else:
        case = water_cube()
        runners = list(found)
        if args.cpu:
            from rptdose import _core

            runners.append(("cpu", _core.simulate_cpu))
        for name, runner in runners:
            for et, prec in ((et, prec) for prec in args.precision for et in (True, False)):
                n, res = rate(runner, case, et, seconds, prec)
                r = n / res["elapsed_s"]
                row = dict(backend=name, case="water_128_4.8mm", precision=res.get("precision", prec),
                           electron_transport=et, histories=n,
                           elapsed_s=round(res["elapsed_s"], 3), decays_per_s=round(r),
                           device=res.get("device", platform.processor()),
                           launch=res.get("launch"), threads_used=res.get("threads_used"))
                rows.append(row)
                print(f"{name:5s} water_128_4.8mm {row['precision']:6s} e-transport={str(et):5s}: {r:12.4g} decays/s "
                      f"({row['device']}, {row['launch'] or row['threads_used']})", flush=True)
    report = dict(rows=rows, not_run=missing, date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  machine=platform.machine(), cores=os.cpu_count(),
                  command=" ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]))
    try:
        from rptdose import _core_cuda

        st = _core_cuda.device_status()
        report["cuda_device_status"] = st
        if st["count"] > 0:
            report["cuda_device"] = _core_cuda.device_info()
    except ImportError as exc:
        report["cuda_device_status"] = f"rptdose._core_cuda not built ({exc})"
    path = os.path.join(args.out, "bench_gpu.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1, default=str)
    os.replace(tmp, path)
    print("wrote", path)


if __name__ == "__main__":
    main()
