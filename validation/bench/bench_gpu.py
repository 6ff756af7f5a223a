"""GPU throughput benchmark of the transport core: the wavefront, the history kernel, cupy.

Configurations, each timed where it can run here:

* ``cuda``          the CUDA backend's default transport, the wavefront (particle queues; a
                    decay kernel, then electron and photon step kernels: one step per launch);
* ``cuda-history``  the CUDA backend with ``gpu_transport="history"`` (one thread per history);
* ``cupy``          the cupy backend (NVRTC; always the history kernel);
* ``cpu``           with ``--cpu``: the CPU backend on all cores, for the speed-up.

Cases:

* ``water_128_4.8mm``: Lu-177 decays spread uniformly in a 128^3 water cube of 4.8 mm voxels,
  with full electron transport and with local electron deposition, on every configuration;
* ``demo_4.8mm``: the patient of ``rptdose demo`` (rptdose.demo: its study written and loaded
  as ``rptdose run`` loads it, so the phantom from its CT, the time-integrated activity from
  its four SPECTs and its RTSTRUCT's regions), full electron transport, on ``cuda`` and
  ``cuda-history`` (and on ``cpu`` with ``--cpu``). Besides decays/s it reports the time the
  run needs for the kidneys (the regions whose name contains "kidney") to reach 1 % relative
  statistical uncertainty: from the run's per-batch region sums (``region_batch_edep_mev``,
  the regions' atoms combined as rptdose.simulate combines them; B = 40 batches), u = std of
  the batch means / (mean * sqrt(B)) and t(1 %) = elapsed_s * (u / 0.01)^2 (time taken as
  proportional to the decays), for the slower kidney, and the decays that takes. The study is built once and cached in ``--cache`` (default ``--out``:
  ``demo_case.pkl`` and the study's files in ``demo_study/``; rebuilt when rptdose's version
  or rptdose/demo.py changes).

Every point in each precision of ``--precision``; the GPU points first, the CPU's last.
Timings are the core's own clock (the result's elapsed_s: upload, kernels, download; table
building and Python overhead excluded), after a warm-up run that pays for the CUDA context and,
for cupy, the NVRTC compile. Each point's decays are raised until its run lasts >= 3 s
(``--quick``: >= 1 s), the run then timed. The rows keep each GPU run's launch
dict (for the wavefront also its queue capacity, rounds, decay launches, deferred decays,
electron and photon steps, held particles); electron and photon steps per decay are printed
for the wavefront. Without a GPU it says why and writes that into the JSON (and, with
``--cpu``, still times the CPU). Writes ``OUT/bench_gpu.json`` after every point ("complete"
once all ran); a point that fails is recorded there with its traceback, the others still run,
and the exit status is then 1. Usage::

    pip install . && python validation/bench/bench_gpu.py --cpu

    python validation/bench/bench_gpu.py [--quick] [--cpu] [--no-demo] [--precision double single]
                                         [--out validation/bench/out] [--cache DIR]

(validation/bench/gpu_session.sh runs it, with the GPU tests and Nsight Compute, on a GPU machine.)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pickle
import platform
import sys
import time
import traceback

import numpy as np

from rptdose.physics.nuclides import load_nuclide
from rptdose.physics.tables import transport_tables
from rptdose.transport import cupy_backend, gpu_runners
from rptdose.transport.request import RunRequest

WATER = "water_128_4.8mm"
DEMO = "demo_4.8mm"
#: Batches of the demo runs: the uncertainty of u from B batches is ~1/sqrt(2(B-1)) of u (11 %
#: here, 23 % on the time to 1 %), the throughput about that of the demo's 10.
DEMO_BATCHES = 40
TARGET = 0.01


def gpu_configs():
    """[(name, runner, request changes)] of the GPU configurations that can run here, and
    {name: reason} of the rest."""
    found, missing = [], {}
    ok, why = gpu_runners.cuda_available()
    for name, changes in (("cuda", {"gpu_transport": "wavefront"}), ("cuda-history", {"gpu_transport": "history"})):
        if ok:
            found.append((name, gpu_runners.run_cuda, changes))
        else:
            missing[name] = why
    ok, why = cupy_backend.available()
    if ok:
        found.append(("cupy", gpu_runners.run_cupy, {}))
    else:
        missing["cupy"] = why
    return found, missing


def water_cube(n=128, spacing=4.8):
    density = np.ones((n, n, n), np.float32)
    material = np.zeros((n, n, n), np.int32)
    decays = np.ones((n, n, n))
    tables = transport_tables(["water"])
    emissions = load_nuclide("Lu-177").emission_arrays()
    return RunRequest(density=density, material=material, spacing_mm=(spacing,) * 3, decays=decays, tables=tables,
                      emissions=emissions, histories=200_000, seed=1, batches=10)


# ---- the demo patient --------------------------------------------------------------------------

def _demo_key():
    import rptdose
    from rptdose import demo

    with open(demo.__file__, "rb") as f:
        return f"{rptdose.__version__}:{hashlib.sha256(f.read()).hexdigest()}"


def demo_case(cache):
    """The demo patient's run: (RunRequest with its atom labels as regions, region names,
    membership [atoms, regions], description). Built as ``rptdose demo`` builds it (the study
    written by rptdose.demo.write_demo_study, loaded by rptdose.study.load_study, the regions
    of rptdose.pipeline), cached in the folder ``cache``."""
    from rptdose.transport.simulate import _prepare_regions

    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, "demo_case.pkl")
    key = _demo_key()
    cached = None
    if os.path.exists(path):
        try:
            with open(path, "rb") as f:
                cached = pickle.load(f)
            if cached.get("key") != key:
                cached = None
        except Exception:  # an older or broken cache: rebuilt
            cached = None
    t0 = time.perf_counter()
    if cached is None:
        import shutil

        from rptdose.demo import write_demo_study
        from rptdose.pipeline import _regions_for_transport
        from rptdose.study import load_study

        folder = os.path.join(cache, "demo_study")
        shutil.rmtree(folder, ignore_errors=True)
        study = load_study(write_demo_study(folder))
        cached = dict(key=key, phantom=study.phantom, source=study.source, regions=_regions_for_transport(study))
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            pickle.dump(cached, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        how = f"built from the demo study in {time.perf_counter() - t0:.1f} s (cached in {path})"
    else:
        how = f"loaded from {path}"
    phantom, source = cached["phantom"], cached["source"]
    reg = _prepare_regions(cached["regions"], phantom)
    request = RunRequest(density=phantom.density, material=phantom.material_index, spacing_mm=phantom.spacing_mm,
                         decays=source.decays, tables=transport_tables(phantom.materials),
                         emissions=source.emission_arrays(), histories=200_000, seed=1, batches=DEMO_BATCHES,
                         regions=reg.labels)
    info = dict(shape_zyx=list(phantom.shape), spacing_mm=list(phantom.spacing_mm), nuclide=source.nuclide,
                total_decays=float(source.total_decays), materials=len(phantom.materials),
                regions=list(reg.names), atoms=int(reg.membership.shape[0]), batches=DEMO_BATCHES,
                kidneys=[n for n in reg.names if "kidney" in n], source_of_case=how)
    return request, list(reg.names), reg.membership, info


def kidney_time(res, histories, names, membership):
    """{"u": {kidney: relative standard error}, "t_1pct_s": {kidney: s}, "histories_1pct":
    {kidney: decays}, "t_1pct_s_max": s} from the run's per-batch region sums (module docstring)."""
    from rptdose import _core

    rb = np.asarray(res["region_batch_edep_mev"], dtype=np.float64) @ membership  # [B, regions]
    n_b = np.asarray(_core.batch_sizes(histories, rb.shape[0]), dtype=np.float64)
    x = rb / n_b[:, None]  # mean energy per decay in each batch
    out = {"u": {}, "t_1pct_s": {}, "histories_1pct": {}}
    for r, name in enumerate(names):
        if "kidney" not in name:
            continue
        mean = float(x[:, r].mean())
        u = float(x[:, r].std(ddof=1) / (mean * math.sqrt(x.shape[0]))) if mean > 0 else float("inf")
        out["u"][name] = u
        out["t_1pct_s"][name] = float(res["elapsed_s"]) * (u / TARGET) ** 2
        out["histories_1pct"][name] = int(round(histories * (u / TARGET) ** 2))
    out["t_1pct_s_max"] = max(out["t_1pct_s"].values()) if out["t_1pct_s"] else None
    return out


# ---- timing ------------------------------------------------------------------------------------

def timed_run(runner, case, seconds, probe_histories):
    """A warm-up run, then runs of growing history counts (from ``probe_histories``) until one
    lasts at least ``seconds`` (a short probe's rate is lowered by the per-run and per-batch
    passes over the grid, so it is not extrapolated): (histories, result) of that one."""
    runner(case.with_(histories=max(case.batches, probe_histories // 10), seed=3))  # warm-up
    n = probe_histories
    while True:
        res = runner(case.with_(histories=n, seed=2))
        elapsed = max(float(res["elapsed_s"]), 1e-4)
        if elapsed >= seconds:
            break
        n = int(n * min(10.0, max(1.5, 1.15 * seconds / elapsed)))
    assert res["emitted_units"] == res["deposited_units"] + res["escaped_units"]
    return n, res


def wave_figures(launch, n):
    """Steps per decay of a wavefront run's launch dict, else {}."""
    if not launch or launch.get("transport") != "wavefront":
        return {}
    return dict(electron_steps_per_decay=launch["electron_steps"] / n, photon_steps_per_decay=launch["photon_steps"] / n)


def describe_launch(row):
    launch = row.get("launch")
    if not launch:
        return f"{row.get('threads_used')} threads"
    text = f"{launch.get('transport', '?')} {launch.get('grid_dim')}x{launch.get('block_dim')}"
    if launch.get("transport") == "wavefront":
        text += (f", e-steps/decay {row['electron_steps_per_decay']:.3g}, photon steps/decay "
                 f"{row['photon_steps_per_decay']:.3g}, queue {launch['queue_capacity']}, rounds {launch['rounds']}, "
                 f"deferred {launch['deferred_decays']}, held {launch['held_particles']}")
    return text


def measure(name, runner, case, case_name, electron_transport, precision, seconds, probe, kidneys=None):
    req = case.with_(electron_transport=electron_transport, precision=precision)
    try:
        n, res = timed_run(runner, req, seconds, probe)
    except Exception as exc:  # one failing point does not stop the others
        print(f"{name:12s} {case_name} {precision:6s} e-transport={str(electron_transport):5s}: FAILED: {exc!r}",
              flush=True)
        return dict(backend=name, case=case_name, precision=precision, electron_transport=electron_transport,
                    error=repr(exc), traceback=traceback.format_exc())
    launch = res.get("launch")
    row = dict(backend=name, case=case_name, precision=res.get("precision", precision),
               electron_transport=electron_transport, histories=n, elapsed_s=round(res["elapsed_s"], 4),
               decays_per_s=round(n / res["elapsed_s"]), device=res.get("device", f"{os.cpu_count()} CPUs ({platform.machine()})"),
               launch=launch, threads_used=res.get("threads_used"), **wave_figures(launch, n))
    extra = ""
    if kidneys is not None:
        names, membership = kidneys
        row["kidneys"] = kidney_time(res, n, names, membership)
        k = row["kidneys"]
        extra = (f", kidneys to 1 %: {k['t_1pct_s_max']:.3g} s, {max(k['histories_1pct'].values()):.3g} decays ("
                 + ", ".join(f"{kn} u={k['u'][kn]:.2%}" for kn in k["u"]) + ")")
    print(f"{name:12s} {case_name} {row['precision']:6s} e-transport={str(electron_transport):5s}: "
          f"{row['decays_per_s']:12.4g} decays/s{extra} [{row['device']}; {describe_launch(row)}]", flush=True)
    return row


def speedups(rows):
    """Lines comparing the wavefront with the history kernel (and the CPU) per case and precision."""
    ok = {(r["backend"], r["case"], r["precision"], r["electron_transport"]): r for r in rows if "error" not in r}
    lines = []
    for (backend, case, prec, et), r in ok.items():
        if backend != "cuda":
            continue
        parts = []
        for other in ("cuda-history", "cupy", "cpu"):
            o = ok.get((other, case, prec, et))
            if o:
                parts.append(f"x{r['decays_per_s'] / o['decays_per_s']:.2f} vs {other}")
        if parts:
            lines.append(f"wavefront {case} {prec} e-transport={et}: " + ", ".join(parts))
    return lines


def device_report():
    """The CUDA module's device status (and the device, where there is one)."""
    try:
        from rptdose import _core_cuda

        st = _core_cuda.device_status()
        out = {"cuda_device_status": st}
        if st["count"] > 0:
            out["cuda_device"] = _core_cuda.device_info()
        return out
    except ImportError as exc:
        return {"cuda_device_status": f"rptdose._core_cuda not built ({exc})"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs (>= 1 s a point instead of 3 s)")
    ap.add_argument("--cpu", action="store_true", help="also time the CPU backend on all cores (both cases)")
    ap.add_argument("--precision", nargs="+", choices=("double", "single"), default=["double", "single"],
                    help="precisions to time (default: both)")
    ap.add_argument("--no-demo", action="store_true", help="time the water cube only")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"),
                    help="folder of bench_gpu.json (default validation/bench/out)")
    ap.add_argument("--cache", default=None, help="folder of the demo patient's cache (default: --out)")
    args = ap.parse_args()
    seconds = 1.0 if args.quick else 3.0
    os.makedirs(args.out, exist_ok=True)
    found, missing = gpu_configs()
    for name, why in missing.items():
        print(f"{name}: not run ({why})")
    configs = [(name, runner, changes, True) for name, runner, changes in found]
    if args.cpu:
        from rptdose import _core

        configs.append(("cpu", _core.simulate_cpu, {}, False))
    rows = []
    report = dict(rows=rows, not_run=missing, demo=None, failed=0,
                  nothing_measured=None if configs else "no GPU backend usable here and --cpu not given",
                  speedups=[], date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  machine=platform.machine(), cores=os.cpu_count(),
                  command=" ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]), complete=False)
    report.update(device_report())
    path = os.path.join(args.out, "bench_gpu.json")

    def write():  # after every point: a run cut short keeps what it measured
        report["failed"] = sum("error" in r for r in rows)
        report["speedups"] = speedups(rows)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1, default=str)
        os.replace(tmp, path)

    # the GPU first (water, then the demo), the CPU last
    plan = [(c, WATER) for c in configs if c[3]]
    if not args.no_demo:
        plan += [(c, DEMO) for c in configs if c[3] and c[0] in ("cuda", "cuda-history")]
    plan += [(c, WATER) for c in configs if not c[3]]
    if not args.no_demo:
        plan += [(c, DEMO) for c in configs if not c[3]]
    if not configs:
        print("no GPU: nothing measured (--cpu times the CPU backend)")
    water, demo = None, None
    for (name, runner, changes, gpu), case_name in plan:
        if case_name == WATER:
            water = water or water_cube()
            for prec in args.precision:
                for et in (True, False):
                    rows.append(measure(name, runner, water.with_(**changes), WATER, et, prec, seconds,
                                        200_000 if gpu else (50_000 if args.quick else 200_000)))
                    write()
        else:
            if demo is None:
                demo, names, membership, report["demo"] = demo_case(args.cache or args.out)
                info = report["demo"]
                print(f"{DEMO}: {info['shape_zyx']} voxels of {info['spacing_mm'][0]} mm, {info['atoms']} region "
                      f"atoms, kidneys {info['kidneys']}, {DEMO_BATCHES} batches; {info['source_of_case']}",
                      flush=True)
            for prec in args.precision:
                rows.append(measure(name, runner, demo.with_(**changes), DEMO, True, prec, seconds,
                                    200_000 if gpu else (20_000 if args.quick else 100_000),
                                    kidneys=(names, membership)))
                write()
    for line in speedups(rows):
        print(line)
    report["complete"] = True
    write()
    print("wrote", path)
    if report["failed"]:
        print(f"{report['failed']} point(s) failed (tracebacks in the JSON)")
        sys.exit(1)


if __name__ == "__main__":
    main()
