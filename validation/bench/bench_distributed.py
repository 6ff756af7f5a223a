"""Distributed-transport and checkpoint benchmark: decays/s, start-up cost, checkpoint cost, memory.

Case: Lu-177 decays spread uniformly in a 128^3 water cube of 4.8 mm voxels, full electron
transport (bench_cpu.py's case (a)), with a history count sized so that the in-process
1-thread run takes about --seconds (40 s by default; measured by a short probe). Measured:

  rates       decays/s of the same run (same histories, seed, batches) in-process with 1 and
              2 OpenMP threads, and with ``scheduler="local:1"`` (1 and 2 threads in the one
              worker) and ``"local:2"`` (two worker processes of one thread each). Wall time
              around ``rd.simulate``, so a local cluster's start and close are inside it.
              efficiency = rate / (in-process 1-thread rate x cores used); the brief's "per
              worker" form (rate / (1-thread rate x workers)) is in the JSON too.
  start-up    each configuration runs twice, at --small-fraction of the histories and at all
              of them: the fit t = fixed + histories / steady gives the fixed cost (cluster
              start and close, scatter of the inputs, building the run on each worker, the
              per-batch passes over the grid) apart from the steady-state rate; and the
              pieces of a local cluster's start-up timed one by one (LocalCluster + Client,
              Client.scatter(broadcast=True) of the inputs, import of rptdose and
              PreparedRun built on each worker, close).
  checkpoint  the in-process run with ``checkpoint=PATH``: seconds and bytes of each batch's
              write (rptdose.transport.checkpoint.save timed in place), per voxel and
              extrapolated to a 512 x 512 x 300 grid; the rerun from the finished file; the
              two voxel arrays written again with and without compression (where the time goes).
  memory      peak resident memory of a worker process (``"local:1"``-like cluster of one
              worker, 2 threads) and of the client, above their baselines, on two grid sizes
              (local deposition, --mem-decays-per-voxel decays per voxel so that every voxel
              is hit in every batch: the worst case of the sparse tallies), fitted to bytes per
              voxel; printed beside the analytic figure from the code (see ``memory_model``).
  identity    every run's dose and relative uncertainty compared with np.array_equal to the
              in-process 1-thread run of the same size; the script fails if any differs.

Other processes running at the same time lower the rates: before and after every timed run the
load average (os.getloadavg) is recorded, and the CPUs other processes used just before it and
on average during it (/proc/stat's busy time less this process's and its reaped children's CPU
time); --quiet-wait S waits up to S seconds before each run for them to fall below 0.3 CPUs, and
--repeat N runs every configuration N times round-robin and keeps each one's fastest round.
The run's own CPU seconds give a second efficiency, less sensitive to other processes. Usage:

    python validation/bench/bench_distributed.py [--quick] [--seconds 40] [--n 128] [--repeat 3]
        [--quiet-wait 300] [--json validation/bench/out/bench_distributed.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

import rptdose as rd

#: The grid the per-voxel checkpoint and memory figures are extrapolated to.
BIG_SHAPE = (300, 512, 512)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---------------------------------------------------------------- helpers


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def water_case(n: int, spacing: float):
    ph = rd.Phantom.water(shape=(n, n, n), spacing_mm=(spacing,) * 3)
    return ph, rd.Source("Lu-177", np.ones(ph.shape))


def cpu_ticks() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat; zeros elsewhere)."""
    try:
        with open("/proc/stat") as f:
            v = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    hz = os.sysconf("SC_CLK_TCK")
    idle = v[3] + (v[4] if len(v) > 4 else 0.0)  # idle + iowait
    return (sum(v[:8]) - idle) / hz, sum(v[:8]) / hz


def my_cpu() -> float:
    """CPU seconds of this process and of its reaped children (the workers of a local cluster
    once it is closed)."""
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def others_busy(seconds: float = 2.0) -> float:
    """CPUs other processes keep busy, sampled over `seconds` while this one sleeps."""
    b0, _ = cpu_ticks()
    m0 = my_cpu()
    time.sleep(seconds)
    b1, _ = cpu_ticks()
    return round(max(0.0, (b1 - b0) - (my_cpu() - m0)) / seconds, 2)


QUIET = {"wait_s": 0.0, "below": 0.3}


def wait_quiet() -> float:
    """Wait (at most QUIET['wait_s'] seconds) until other processes use less than
    QUIET['below'] CPUs; returns their last measured use."""
    t0 = time.perf_counter()
    busy = others_busy()
    while busy >= QUIET["below"] and time.perf_counter() - t0 < QUIET["wait_s"]:
        busy = others_busy(5.0)
    return busy


def run(ph, src, histories: int, seed: int, batches: int, **kw):
    """rd.simulate timed by the wall clock: (result, wall seconds, contention), contention being
    the load average before and after, the CPUs other processes used just before the run and on
    average during it (machine busy time from /proc/stat less this process's and its reaped
    children's CPU time), and this run's own CPU seconds."""
    before_busy = wait_quiet()
    before = load1()
    b0, m0 = cpu_ticks()[0], my_cpu()
    t0 = time.perf_counter()
    res = rd.simulate(ph, src, histories=histories, seed=seed, batches=batches, progress=False, **kw)
    wall = time.perf_counter() - t0
    b1, m1 = cpu_ticks()[0], my_cpu()
    contention = {"load1_before": before, "load1_after": load1(), "others_cpus_before": before_busy,
                  "others_cpus_during": round(max(0.0, (b1 - b0) - (m1 - m0)) / wall, 2), "cpu_s": round(m1 - m0, 2)}
    return res, wall, contention


def same(a, b) -> bool:
    return bool(np.array_equal(a.dose_gy, b.dose_gy) and np.array_equal(a.rel_uncertainty, b.rel_uncertainty))


def proc_status() -> tuple[int, int]:
    """(current RSS, peak RSS since the last reset) of this process in bytes."""
    try:
        with open("/proc/self/status") as f:
            d = dict(line.split(":", 1) for line in f if ":" in line)
        return int(d["VmRSS"].split()[0]) * 1024, int(d["VmHWM"].split()[0]) * 1024
    except (OSError, KeyError):  # not Linux: the high-water mark cannot be reset
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return peak, peak


def reset_peak() -> bool:
    """Reset this process's peak RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _worker_baseline() -> dict:
    """On a worker: import what a unit imports, then its RSS, and reset its peak."""
    import importlib

    for name in ("rptdose._core", "rptdose.transport.distributed"):
        importlib.import_module(name)

    rss, _ = proc_status()
    return {"rss": rss, "reset": reset_peak()}


def _worker_peak() -> dict:
    rss, peak = proc_status()
    return {"rss": rss, "peak": peak}


def _build_here(key: str, payload: dict) -> dict:
    """On a worker: the import of rptdose and the PreparedRun built from the scattered inputs."""
    t0 = time.perf_counter()
    from rptdose.transport import distributed as dist

    t1 = time.perf_counter()
    dist.worker_run(key, payload, "cpu")
    return {"import_s": t1 - t0, "build_s": time.perf_counter() - t1}


def payload_of(ph, src, histories: int = 10, seed: int = 1, batches: int = 10, electron_transport: bool = True):
    """The inputs simulate scatters to the workers (rptdose.transport.batched): a RunRequest
    without progress and regions where the transport has that type, else the dict of before."""
    from rptdose.physics.tables import transport_tables

    fields = {"density": ph.density, "material": ph.material_index, "spacing_mm": tuple(ph.spacing_mm),
              "decays": src.decays, "tables": transport_tables(ph.materials), "emissions": src.emission_arrays(),
              "electron_transport": bool(electron_transport)}
    try:
        from rptdose.transport.request import RunRequest
    except ImportError:
        return fields
    return RunRequest(histories=int(histories), seed=int(seed), batches=int(batches), **fields)


def payload_bytes(payload) -> int:
    items = payload.values() if isinstance(payload, dict) else vars(payload).values()
    n = 0
    for v in items:
        if isinstance(v, np.ndarray):
            n += v.nbytes
        elif isinstance(v, dict):
            n += sum(a.nbytes for a in v.values() if isinstance(a, np.ndarray))
    return n


def batch_coverage(payload, histories: int, seed: int, batches: int) -> float:
    """The fraction of voxels one batch's tally hits (batch 0, run here on 2 threads)."""
    from rptdose.transport import distributed as dist

    run = dist.worker_run("coverage-probe", payload, "cpu")
    try:
        [(_, tally, _, _)] = run.run_batches(histories, seed, batches, 0, 1, threads=2)
        return float(np.count_nonzero(tally)) / tally.size
    finally:
        dist._cache.clear()


# ---------------------------------------------------------------- measurements


def histories_for(ph, src, seconds: float, seed: int, batches: int) -> int:
    """Histories for an in-process 1-thread run of about `seconds` (a probe of >= 2 s)."""
    n = 50_000
    while True:
        res = rd.simulate(ph, src, histories=n, seed=seed, batches=batches, threads=1, progress=False)
        if res.elapsed_s >= 2.0 or res.elapsed_s >= seconds:
            break
        n = int(n * min(20.0, 2.4 / max(res.elapsed_s, 1e-3)))
    return max(batches, int(round(n / res.elapsed_s * seconds, -4)))


CONFIGS = (  # name, scheduler, threads passed to simulate, workers, threads per worker
    ("in-process, 1 thread", None, 1, 0, 1),
    ("in-process, 2 threads", None, 2, 0, 2),
    ("local:1, 1 thread", "local:1", 1, 1, 1),
    ("local:1, 2 threads", "local:1", None, 1, 2),
    ("local:2, 1 thread each", "local:2", None, 2, 1),
)


def rates(ph, src, histories: int, small: int, seed: int, batches: int, repeat: int = 1) -> tuple[list[dict], bool]:
    """Every configuration at both sizes, `repeat` rounds (round-robin, so that a slow spell of
    the machine touches all configurations alike); each point is the round with the shortest
    wall time, all rounds kept in the JSON."""
    refs, ok = {}, True
    runs: dict[tuple[int, str], list[dict]] = {}
    for rnd in range(repeat):
        for ci, (name, scheduler, threads, workers, per_worker) in enumerate(CONFIGS):
            for label, h in (("small", small), ("full", histories)):
                kw = {"threads": threads} if scheduler is None else {"threads": threads, "scheduler": scheduler}
                res, wall, cont = run(ph, src, h, seed, batches, **kw)
                if label not in refs:
                    refs[label] = res
                    identical = True
                else:
                    identical = same(refs[label], res)
                ok &= identical
                point = {"round": rnd, "histories": h, "wall_s": round(wall, 3),
                         "core_or_batched_s": round(res.elapsed_s, 3), "decays_per_s": round(h / wall),
                         "decays_per_cpu_s": round(h / max(cont["cpu_s"], 1e-9)),
                         "identical_to_in_process_1_thread": identical, **cont, "backend": res.backend,
                         "threads_used": res.provenance.get("threads_used")}
                if "batched" in res.provenance:
                    info = res.provenance["batched"]
                    point["units"] = info.get("units")
                    point["threads_per_unit"] = info.get("threads_per_unit")
                runs.setdefault((ci, label), []).append(point)
                print(f"  [{rnd + 1}/{repeat}] {name:24s} {label:5s} {h:>11,d} histories {wall:8.2f} s  "
                      f"{h / wall:10.4g} decays/s  cpu {cont['cpu_s']:7.1f} s  identical={identical}  others "
                      f"{cont['others_cpus_before']:.2f} / {cont['others_cpus_during']:.2f} CPUs, load "
                      f"{cont['load1_before']}->{cont['load1_after']}", flush=True)
                del res
    rows = []
    for ci, (name, scheduler, threads, workers, per_worker) in enumerate(CONFIGS):
        row = {"config": name, "scheduler": scheduler, "threads": threads, "workers": workers,
               "threads_per_worker": per_worker, "cores": max(1, workers) * per_worker}
        for label in ("small", "full"):
            pts = runs[(ci, label)]
            row[label] = dict(min(pts, key=lambda p: p["wall_s"]),
                              identical_to_in_process_1_thread=all(p["identical_to_in_process_1_thread"] for p in pts),
                              all_wall_s=[p["wall_s"] for p in pts], rounds=pts)
        ts, tf = row["small"]["wall_s"], row["full"]["wall_s"]
        steady = (histories - small) / max(tf - ts, 1e-9)
        row["steady_decays_per_s"] = round(steady)
        row["fixed_s"] = round(tf - histories / steady, 2)
        rows.append(row)
    r1, s1 = rows[0]["full"]["decays_per_s"], rows[0]["steady_decays_per_s"]
    for row in rows:
        row["efficiency"] = round(row["full"]["decays_per_s"] / (r1 * row["cores"]), 3)
        row["efficiency_per_worker"] = (round(row["full"]["decays_per_s"] / (r1 * row["workers"]), 3)
                                        if row["workers"] else None)
        row["steady_efficiency"] = round(row["steady_decays_per_s"] / (s1 * row["cores"]), 3)
        # CPU-time form: the in-process 1-thread run's CPU seconds over this one's (overheads in CPU
        # terms, less sensitive to other processes than the wall clock)
        row["cpu_efficiency"] = round(rows[0]["full"]["cpu_s"] / max(row["full"]["cpu_s"], 1e-9), 3)
    return rows, ok


def startup_pieces(ph, src, n_workers: int) -> dict:
    """A local cluster's start-up, piece by piece, as simulate(scheduler='local:N') does it."""
    import distributed

    out: dict = {"workers": n_workers, "load1_before": load1()}
    t0 = time.perf_counter()
    cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", silence_logs=40)
    client = distributed.Client(cluster)
    out["cluster_start_s"] = round(time.perf_counter() - t0, 3)
    try:
        payload = payload_of(ph, src)
        out["payload_mb"] = round(payload_bytes(payload) / 1e6, 1)
        t0 = time.perf_counter()
        [ref] = client.scatter([payload], broadcast=True, hash=False)
        distributed.wait(ref)
        out["scatter_s"] = round(time.perf_counter() - t0, 3)
        workers = sorted(client.scheduler_info()["workers"])
        t0 = time.perf_counter()
        futs = [client.submit(_build_here, "bench", ref, workers=[w], pure=False, allow_other_workers=False)
                for w in workers]
        got = client.gather(futs)
        out["import_and_build_wall_s"] = round(time.perf_counter() - t0, 3)
        out["import_s"] = [round(g["import_s"], 3) for g in got]
        out["build_s"] = [round(g["build_s"], 3) for g in got]
    finally:
        t0 = time.perf_counter()
        client.close()
        cluster.close()
        out["close_s"] = round(time.perf_counter() - t0, 3)
    out["total_s"] = round(out["cluster_start_s"] + out["scatter_s"] + out["import_and_build_wall_s"]
                           + out["close_s"], 3)
    out["load1_after"] = load1()
    return out


def checkpoint_cost(ph, src, histories: int, seed: int, batches: int, threads: int, workdir: str,
                    plain_wall: float, reference) -> dict:
    """Each batch's checkpoint write timed inside the run; the rerun from the finished file."""
    from rptdose.transport import checkpoint as ckpt

    path = os.path.join(workdir, "bench.ckpt.h5")
    writes: list[tuple[float, int]] = []
    real_save = ckpt.save

    def timed_save(p, identity, state, h):
        t0 = time.perf_counter()
        real_save(p, identity, state, h)
        writes.append((time.perf_counter() - t0, os.path.getsize(p)))

    ckpt.save = timed_save  # batched.py calls ckpt.save through the module
    try:
        res, wall, cont = run(ph, src, histories, seed, batches, threads=threads, checkpoint=path)
    finally:
        ckpt.save = real_save
    identical = same(reference, res)
    del res
    t0 = time.perf_counter()
    again = rd.simulate(ph, src, histories=histories, seed=seed, batches=batches, threads=threads, checkpoint=path,
                        progress=False)
    rerun = time.perf_counter() - t0
    identical &= same(reference, again)
    del again
    alternatives = write_alternatives(path, workdir)
    nv = int(np.prod(ph.shape))
    secs = np.array([w[0] for w in writes])
    sizes = np.array([w[1] for w in writes])
    big = int(np.prod(BIG_SHAPE))
    os.remove(path)
    return {"threads": threads, "histories": histories, "wall_s": round(wall, 3), "plain_wall_s": round(plain_wall, 3),
            "overhead_s": round(wall - plain_wall, 3), "overhead_fraction": round(wall / plain_wall - 1.0, 4),
            "writes": len(writes), "write_s": [round(s, 4) for s in secs], "file_bytes": [int(b) for b in sizes],
            "write_s_mean": round(float(secs.mean()), 4), "write_s_max": round(float(secs.max()), 4),
            "file_mb_last": round(float(sizes[-1]) / 1e6, 2),
            "write_ns_per_voxel": round(float(secs.mean()) / nv * 1e9, 2),
            "file_bytes_per_voxel": round(float(sizes[-1]) / nv, 2),
            "uncompressed_bytes_per_voxel": 12,
            "extrapolated_shape_zyx": list(BIG_SHAPE),
            "extrapolated_write_s": round(float(secs.mean()) / nv * big, 2),
            "extrapolated_file_mb": round(float(sizes[-1]) / nv * big / 1e6, 1),
            "rerun_from_finished_checkpoint_s": round(rerun, 3), "identical_to_in_process": identical,
            "write_alternatives": alternatives,
            "filesystem_dir": workdir, **cont}


def write_alternatives(path: str, workdir: str) -> dict:
    """The finished checkpoint's two voxel arrays written again as the checkpoint writes them
    (gzip level 1 + shuffle) and without compression: where the time of a write goes."""
    import h5py

    with h5py.File(path, "r") as f:
        total, m2 = f["total"][...], f["m2"][...]
    out = {}
    for name, opts in (("gzip1_shuffle", {"compression": "gzip", "compression_opts": 1, "shuffle": True}),
                       ("uncompressed", {})):
        p = os.path.join(workdir, f"alt_{name}.h5")
        t0 = time.perf_counter()
        with h5py.File(p, "w") as f:
            f.create_dataset("total", data=total, **opts)
            f.create_dataset("m2", data=m2, **opts)
            f.flush()
            os.fsync(f.id.get_vfd_handle())
        out[name] = {"s": round(time.perf_counter() - t0, 4), "bytes": os.path.getsize(p)}
        os.remove(p)
    return out


def memory_model(voxels: int, batches: int, workers: int, coverage: float, source_voxels: int | None = None) -> dict:
    """Bytes per voxel a worker and the client need, from the code (csrc/bindings/prepared_run.hpp,
    csrc/host/params.cpp, csrc/cpu/driver.cpp, csrc/host/tally_state.hpp,
    python/rptdose/transport/batched.py and distributed.py); `coverage`: the fraction of voxels a
    batch's tally hits (1 for a long run on a uniform source)."""
    from rptdose.transport.distributed import unit_ranges

    src_vox = voxels if source_voxels is None else source_voxels
    dense = 3 * src_vox > 2 * voxels
    voxel_table = 8.0 * voxels if dense else 12.0 * src_vox
    alias = voxel_table / voxels if voxel_table <= 256 * 2**20 else (8.0 + 8.0) / 32  # blocks of 32 voxels
    units = unit_ranges(batches, workers)
    k = max(e - b for b, e in units)                       # batches in the largest unit
    sparse = 16.0 * coverage                               # int64 index + int64 value per voxel hit
    # a worker keeps its run and one unit at a time: the unit's batches made sparse one by one as
    # they come (one dense copy at a time), and their copy while serialised for the client; the
    # client fetches and folds the units in batch order and releases each, so neither side holds
    # earlier units (python/rptdose/transport/batched.py, distributed.py run_unit)
    worker = {"inputs: density float32 + material int32 + decays float64": 16.0,
              "alias table of the source (voxel table, else blocks of 32)": alias,
              "batch tally int64 (CpuExec) and one batch copied out (int64)": 16.0,
              f"the unit being run: {k} batches sparse, and their copy while sent": k * 2 * sparse}
    # the client receives one unit (and unpacks a copy of it), then makes one batch dense at a time
    client = {"TallyState: total int64 + m2 float32": 12.0,
              "one batch made dense for the fold (int64)": 8.0,
              f"the unit being folded, sparse ({k} batches), and its copy while received": 2 * k * sparse}
    # at the end TallyState.finish holds total (as float64 energy) + m2 + the uncertainty: 20 B/voxel
    return {"worker": worker, "worker_bytes_per_voxel": round(sum(worker.values()), 1),
            "client": client, "client_bytes_per_voxel": round(sum(client.values()), 1),
            "client_inputs_bytes_per_voxel": 16.0, "unit_batches": k, "coverage": coverage}


def memory_child(n: int, decays_per_voxel: float, batches: int, seed: int) -> dict:
    """In a fresh process: one worker process (2 threads) and this client; peaks above baselines."""
    import distributed

    ph = rd.Phantom.water(shape=(n, n, n), spacing_mm=(4.8,) * 3)
    src = rd.Source("Lu-177", np.ones(ph.shape))
    nv = int(np.prod(ph.shape))
    histories = int(decays_per_voxel * nv)
    coverage = batch_coverage(payload_of(ph, src, histories, seed, batches, electron_transport=False), histories,
                              seed, batches)
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       silence_logs=40)
    client = distributed.Client(cluster)
    try:
        [wb] = client.run(_worker_baseline).values()
        base_rss, _ = proc_status()
        client_reset = reset_peak()
        t0 = time.perf_counter()
        res = rd.simulate(ph, src, histories=histories, seed=seed, batches=batches, threads=2, scheduler=client,
                          electron_transport=False, progress=False)
        wall = time.perf_counter() - t0
        _, client_peak = proc_status()
        [wp] = client.run(_worker_peak).values()
        units = res.provenance["batched"]["units"]
        del res
    finally:
        client.close()
        cluster.close()
    return {"n": n, "voxels": nv, "histories": histories, "batches": batches, "units": units,
            "coverage_per_batch": round(coverage, 4), "wall_s": round(wall, 2),
            "worker_baseline_rss": wb["rss"], "worker_peak_rss": wp["peak"], "worker_rss_after": wp["rss"],
            "worker_peak_reset": wb["reset"], "client_baseline_rss": base_rss, "client_peak_rss": client_peak,
            "client_peak_reset": client_reset,
            "worker_bytes_per_voxel": round((wp["peak"] - wb["rss"]) / nv, 1),
            "client_bytes_per_voxel": round((client_peak - base_rss) / nv, 1)}


def memory(sizes: list[int], decays_per_voxel: float, batches: int, seed: int) -> dict:
    points = []
    for n in sizes:
        before = load1()
        cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", str(n),
               "--mem-decays-per-voxel", str(decays_per_voxel), "--batches", str(batches), "--seed", str(seed)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"memory probe {n}^3 failed:\n{proc.stderr[-3000:]}")
        p = json.loads(proc.stdout.strip().splitlines()[-1])
        p["load1_before"], p["load1_after"] = before, load1()
        points.append(p)
        print(f"  memory {n}^3 ({p['voxels']:,d} voxels, coverage {p['coverage_per_batch']:.3f}, {p['units']} units): "
              f"worker peak {(p['worker_peak_rss'] - p['worker_baseline_rss']) / 2**20:.1f} MiB above baseline "
              f"({p['worker_bytes_per_voxel']} B/voxel), client {(p['client_peak_rss'] - p['client_baseline_rss']) / 2**20:.1f}"
              f" MiB ({p['client_bytes_per_voxel']} B/voxel)", flush=True)
    a, b = points[0], points[-1]
    dv = b["voxels"] - a["voxels"]
    fit = {"worker_bytes_per_voxel": round(((b["worker_peak_rss"] - b["worker_baseline_rss"])
                                            - (a["worker_peak_rss"] - a["worker_baseline_rss"])) / dv, 1),
           "client_bytes_per_voxel": round(((b["client_peak_rss"] - b["client_baseline_rss"])
                                            - (a["client_peak_rss"] - a["client_baseline_rss"])) / dv, 1)}
    coverage = b["coverage_per_batch"]
    model = memory_model(b["voxels"], batches, 1, coverage)
    model_full = memory_model(int(np.prod(BIG_SHAPE)), batches, 1, 1.0)
    return {"points": points, "fit": fit, "model_one_worker": model, "model_one_worker_512x512x300_full_coverage":
            model_full, "electron_transport": False, "threads": 2}


# ---------------------------------------------------------------- provenance, report


def provenance(args_line: str) -> dict:
    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    def version(name):
        try:
            from importlib.metadata import version as v

            return v(name)
        except Exception:  # noqa: BLE001 - provenance only
            return None

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    from rptdose import _core
    from rptdose.resources import available_cpus

    return {"git_commit": git("rev-parse", "HEAD"), "git_dirty_tracked": bool(git("status", "--porcelain", "-uno")),
            "git_changed_files": git("status", "--porcelain").splitlines(), "rptdose_path": os.path.dirname(rd.__file__),
            "rptdose": rd.__version__, "core": str(_core.version()), "python": platform.python_version(),
            "numpy": np.__version__, "dask": version("dask"), "distributed": version("distributed"),
            "h5py": version("h5py"), "cpu": cpu, "machine": platform.machine(), "cores": os.cpu_count(),
            "available_cpus": available_cpus(), "platform": platform.platform(),
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": args_line}


def print_table(rows: list[dict]) -> None:
    head = (f"{'configuration':24s} {'cores':>5s} {'decays/s':>10s} {'effic.':>7s} {'fixed s':>8s} "
            f"{'steady/s':>10s} {'st.eff.':>7s} {'cpu eff.':>8s} {'identical':>9s} {'others':>6s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        f = r["full"]
        print(f"{r['config']:24s} {r['cores']:5d} {f['decays_per_s']:10.4g} {r['efficiency']:7.2f} {r['fixed_s']:8.2f} "
              f"{r['steady_decays_per_s']:10.4g} {r['steady_efficiency']:7.2f} {r['cpu_efficiency']:8.2f} "
              f"{str(f['identical_to_in_process_1_thread'] and r['small']['identical_to_in_process_1_thread']):>9s} "
              f"{max(f['others_cpus_during'], r['small']['others_cpus_during']):6.2f}")
    print("others: the most CPUs other processes used during the configuration's two runs (of "
          f"{os.cpu_count()}); rates are only comparable when it is near 0")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a 48^3 grid, ~4 s runs, small memory grids (a smoke run)")
    ap.add_argument("--n", type=int, default=None, help="grid size n (n^3 voxels of 4.8 mm; default 128, quick 48)")
    ap.add_argument("--spacing", type=float, default=4.8, help="voxel size, mm (default 4.8)")
    ap.add_argument("--seconds", type=float, default=None,
                    help="length of the in-process 1-thread run the history count is sized for (default 40, quick 4)")
    ap.add_argument("--histories", type=int, default=None, help="histories of every full-size run (overrides --seconds)")
    ap.add_argument("--small-fraction", type=float, default=0.25,
                    help="the second, smaller run of each configuration, as a fraction of the histories (default 0.25)")
    ap.add_argument("--batches", type=int, default=10, help="batches (default 10, simulate's default)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds over all configurations; each point is its fastest round (default 1)")
    ap.add_argument("--mem-sizes", type=int, nargs=2, default=None, metavar=("N1", "N2"),
                    help="the two grids n^3 of the memory probe (default 48 88, quick 24 40)")
    ap.add_argument("--mem-decays-per-voxel", type=float, default=None,
                    help="memory probe histories per voxel (default 50: every voxel hit in every batch; quick 20)")
    ap.add_argument("--workdir", default=None, help="folder for the checkpoint file (default: a temporary folder)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["rates", "startup", "checkpoint", "memory"])
    ap.add_argument("--quiet-wait", type=float, default=0.0, metavar="S",
                    help="before each timed run wait up to S seconds for other processes to use < 0.3 CPUs "
                         "(default 0: measure at once; the CPUs others used are recorded either way)")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out",
                                                   "bench_distributed.json"))
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    mem_dpv = args.mem_decays_per_voxel or (20.0 if args.quick else 50.0)
    if args.memory_child is not None:
        print(json.dumps(memory_child(args.memory_child, mem_dpv, args.batches, args.seed)))
        return 0
    QUIET["wait_s"] = args.quiet_wait
    n = args.n or (48 if args.quick else 128)
    seconds = args.seconds or (4.0 if args.quick else 40.0)
    mem_sizes = args.mem_sizes or ([24, 40] if args.quick else [48, 88])
    line = " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    report: dict = {"provenance": provenance(line), "case": {"nuclide": "Lu-177", "phantom": "water",
                    "shape_zyx": [n, n, n], "spacing_mm": args.spacing, "source": "uniform",
                    "electron_transport": True, "batches": args.batches, "seed": args.seed},
                    "load1_start": load1()}
    p = report["provenance"]
    print(f"rptdose {p['rptdose']} (core {p['core']}), commit {p['git_commit'][:10]}"
          f"{' + local changes' if p['git_dirty_tracked'] else ''}, dask {p['dask']}, {p['cpu']}, "
          f"{p['available_cpus']} CPUs, load average {os.getloadavg()}", flush=True)
    ph, src = water_case(n, args.spacing)
    rd.simulate(ph, src, histories=args.batches, batches=args.batches, threads=1, progress=False)  # tables built
    histories = args.histories or histories_for(ph, src, seconds, args.seed, args.batches)
    small = max(args.batches, int(round(histories * args.small_fraction)))
    report["case"].update(histories=histories, small_histories=small)
    ok = True
    print(f"case: Lu-177 uniform in water {n}^3 x {args.spacing} mm, {histories:,d} histories "
          f"(and {small:,d}), {args.batches} batches", flush=True)
    reference = None
    if "rates" not in args.skip:
        rows, ok_rates = rates(ph, src, histories, small, args.seed, args.batches, args.repeat)
        ok &= ok_rates
        report["rates"] = rows
        print()
        print_table(rows)
        print()
    if "startup" not in args.skip:
        report["startup"] = []
        for w in (1, 2):
            s = startup_pieces(ph, src, w)
            report["startup"].append(s)
            print(f"  start-up local:{w}: cluster {s['cluster_start_s']:.2f} s, scatter of {s['payload_mb']} MB "
                  f"{s['scatter_s']:.2f} s, import + build on the workers {s['import_and_build_wall_s']:.2f} s "
                  f"(import {s['import_s']}, build {s['build_s']}), close {s['close_s']:.2f} s: "
                  f"{s['total_s']:.2f} s", flush=True)
    if "checkpoint" not in args.skip:
        threads = 2
        reference, plain_wall, plain_cont = run(ph, src, histories, args.seed, args.batches, threads=threads)
        workdir = args.workdir or tempfile.mkdtemp(prefix="rptdose_bench_ckpt_")
        try:
            c = checkpoint_cost(ph, src, histories, args.seed, args.batches, threads, workdir, plain_wall, reference)
        finally:
            if args.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
        ok &= c["identical_to_in_process"]
        c["plain_contention"] = plain_cont
        report["checkpoint"] = c
        print(f"  checkpoint ({threads} threads): run {c['wall_s']:.2f} s vs {c['plain_wall_s']:.2f} s without "
              f"({100 * c['overhead_fraction']:+.1f} %); per batch write {c['write_s_mean'] * 1e3:.0f} ms "
              f"(max {c['write_s_max'] * 1e3:.0f} ms), file {c['file_mb_last']} MB = {c['file_bytes_per_voxel']} B/voxel, "
              f"{c['write_ns_per_voxel']} ns/voxel -> {BIG_SHAPE}: {c['extrapolated_write_s']} s and "
              f"{c['extrapolated_file_mb']} MB per batch; rerun from the finished file "
              f"{c['rerun_from_finished_checkpoint_s']:.2f} s; identical={c['identical_to_in_process']}", flush=True)
        alt = c["write_alternatives"]
        print(f"  the two voxel arrays written again: gzip 1 + shuffle {alt['gzip1_shuffle']['s']:.3f} s "
              f"({alt['gzip1_shuffle']['bytes'] / 1e6:.1f} MB), uncompressed {alt['uncompressed']['s']:.3f} s "
              f"({alt['uncompressed']['bytes'] / 1e6:.1f} MB), each with fsync", flush=True)
    del reference
    if "memory" not in args.skip:
        m = memory(mem_sizes, mem_dpv, args.batches, args.seed)
        report["memory"] = m
        mo = m["model_one_worker"]
        print(f"  memory fit ({mem_sizes[0]}^3 -> {mem_sizes[1]}^3): worker {m['fit']['worker_bytes_per_voxel']} B/voxel "
              f"(analytic {mo['worker_bytes_per_voxel']}), client {m['fit']['client_bytes_per_voxel']} B/voxel "
              f"above its inputs (analytic peak {mo['client_bytes_per_voxel']})", flush=True)
        for part, v in mo["worker"].items():
            print(f"    worker  {v:6.1f}  {part}")
        for part, v in mo["client"].items():
            print(f"    client  {v:6.1f}  {part}")
    report["load1_end"] = load1()
    report["bit_identical"] = bool(ok)
    print(f"bit-identical doses and uncertainties across all configurations: {'yes' if ok else 'NO'}; "
          f"load average {os.getloadavg()}")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    tmp = args.json + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, args.json)
    print("wrote", args.json)
    assert ok, "a configuration's dose differs from the in-process run's"
    return 0


if __name__ == "__main__":
    sys.exit(main())
