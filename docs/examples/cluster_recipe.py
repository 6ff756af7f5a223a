"""One rptdose transport on a SLURM cluster, on the GPUs of a node, or on this machine.

The same ``rd.simulate(..., scheduler=client)`` call for every kind of cluster; only the Dask
cluster behind the client differs (docs/distributed.md):

  --cluster local   a ``distributed.LocalCluster`` here: --workers worker processes, one task
                    at a time each, whose OpenMP threads share this machine's CPUs
  --cluster slurm   ``dask_jobqueue.SLURMCluster``: --jobs SLURM jobs, each one worker on one
                    node with --cores CPUs (booked with ``job_cpu``; the worker runs one work
                    unit at a time with all of them as OpenMP threads), --memory per job
  --cluster cuda    ``dask_cuda.LocalCUDACluster``: one worker per GPU of this node (each sees
                    its own GPU as device 0), with --backend auto or cuda: every worker runs
                    the cuda backend on its GPU
  --cluster tcp://HOST:PORT   a scheduler already running (``dask scheduler`` with ``dask
                    worker`` / ``dask cuda worker`` started by hand or by a batch script)

The dose is the in-process run's on the same backend bit for bit whichever cluster ran it
(counter-based random numbers per history, integer tallies folded in batch order): --out of a
``--cluster local`` or ``--cluster slurm`` run (cpu workers) equals ``rd.simulate(...,
backend="cpu")`` in one process (tests/test_cluster_recipe.py checks that); a ``--cluster
cuda`` run equals an in-process cuda run on that GPU model at the same --precision, which
agrees with the CPU's only statistically. Every worker runs the same backend: --backend auto is cuda only when every
worker has a usable GPU, else cpu; --backend cuda fails naming a worker without one.

    python docs/examples/cluster_recipe.py --cluster local --workers 2 --out dose.npy
    python docs/examples/cluster_recipe.py --cluster slurm --jobs 4 --cores 32 --memory 64GB \\
        --walltime 02:00:00 --queue compute --account myproject \\
        --prologue "source ~/venvs/rptdose/bin/activate" --histories 100000000 --batches 32 \\
        --checkpoint /scratch/$USER/run.ckpt.h5 --out dose.h5
    python docs/examples/cluster_recipe.py --cluster slurm --jobs 4 --cores 32 --print-job-script
    python docs/examples/cluster_recipe.py --cluster cuda --backend cuda --histories 100000000

The case is a water cube with a hot sphere (--n, --spacing) unless --ct (a CT folder or image:
Phantom.from_ct) and --decays (a .npy of decays per voxel [z, y, x] on that CT's grid) are given.
--out PATH.npy saves the dose (Gy, float64 [z, y, x]); any other PATH the whole result (HDF5,
rd.load_result). --checkpoint makes the run resumable: rerun the same command after a lost job.

The ``if __name__ == "__main__":`` guard below is required: Dask starts local worker processes
with "spawn", which imports this file again in each of them.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import sys
import time

import numpy as np

import rptdose as rd


def make_case(args: argparse.Namespace) -> tuple[rd.Phantom, rd.Source]:
    """The phantom and source of the run: your CT and decay map, or a water cube with a hot sphere."""
    if args.ct is not None:
        phantom = rd.Phantom.from_ct(args.ct)
        if args.decays is None:
            sys.exit("cluster_recipe: --ct needs --decays (a .npy of decays per voxel on the CT's grid)")
        decays = np.load(args.decays)
    else:
        n = args.n
        phantom = rd.Phantom.water(shape=(n, n, n), spacing_mm=(args.spacing,) * 3)
        z, y, x = np.ogrid[:n, :n, :n]
        c = (n - 1) / 2
        decays = np.where((z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2 <= (n / 6) ** 2, 1e9, 1e7)
    return phantom, rd.Source(args.nuclide, decays)


def local_cluster(args: argparse.Namespace, stack: contextlib.ExitStack):
    from distributed import LocalCluster

    # one task at a time per worker process; simulate gives each task the machine's CPUs over
    # the workers as OpenMP threads (or --threads)
    return stack.enter_context(LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                            dashboard_address=":0", silence_logs=40))


def slurm_cluster(args: argparse.Namespace, stack: contextlib.ExitStack):
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        sys.exit("cluster_recipe: --cluster slurm needs dask-jobqueue, which is not installed here: "
                 "pip install dask-jobqueue (on the login node that runs this script)")
    directives = list(args.sbatch)
    if args.exclusive:
        directives.append("--exclusive")
    # One worker per job (processes=1) with one task thread (cores=1), the job booking --cores
    # CPUs (job_cpu): each work unit then runs on all of the node's CPUs as OpenMP threads, and the
    # run needs only about 4 batches per node to keep every node busy (with cores=C and a thread
    # per core, C units would run side by side, each with its own tallies in memory, and the run
    # would need 4 x C batches per node).
    cluster = SLURMCluster(cores=1, processes=1, job_cpu=args.cores, memory=args.memory, walltime=args.walltime,
                           queue=args.queue, account=args.account, job_extra_directives=directives,
                           job_script_prologue=list(args.prologue), interface=args.interface,
                           local_directory=args.local_directory, log_directory=args.log_directory)
    stack.callback(cluster.close)
    if args.print_job_script:
        print(cluster.job_script())
        raise SystemExit(0)
    cluster.scale(jobs=args.jobs)
    return cluster


def cuda_cluster(args: argparse.Namespace, stack: contextlib.ExitStack):
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        sys.exit("cluster_recipe: --cluster cuda needs dask-cuda, which is not installed here: "
                 "pip install dask-cuda (and rptdose built with its CUDA backend: rptdose info)")
    # one worker process per GPU (CUDA_VISIBLE_DEVICES rotated: each worker's GPU is its device 0)
    return stack.enter_context(LocalCUDACluster(CUDA_VISIBLE_DEVICES=args.gpus, threads_per_worker=1,
                                                dashboard_address=":0"))


def connect(args: argparse.Namespace, stack: contextlib.ExitStack):
    """A connected distributed.Client for --cluster (closed by ``stack``)."""
    from distributed import Client

    if args.cluster == "local":
        target, expected = local_cluster(args, stack), args.workers
    elif args.cluster == "slurm":
        target, expected = slurm_cluster(args, stack), args.jobs
    elif args.cluster == "cuda":
        target, expected = cuda_cluster(args, stack), None
    else:  # the address of a running scheduler
        target, expected = args.cluster, None
    client = stack.enter_context(Client(target))
    if expected:
        # queued SLURM jobs may start late: run with the workers there after --wait seconds;
        # workers that join later still get work units
        try:
            client.wait_for_workers(expected, timeout=args.wait)
        except TimeoutError:
            print(f"cluster_recipe: {len(client.scheduler_info()['workers'])} of {expected} workers after "
                  f"{args.wait:g} s; running with those, later ones join as they start", flush=True)
            client.wait_for_workers(1, timeout=None)
    return client


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cluster", default="local", metavar="local|slurm|cuda|ADDRESS",
                    help="where the batches run (default local)")
    run = ap.add_argument_group("the run")
    run.add_argument("--histories", type=int, default=1_000_000)
    run.add_argument("--seed", type=int, default=1)
    run.add_argument("--batches", type=int, default=10,
                     help="batches (>= 10); at least ~4 per worker keeps every worker busy (default 10)")
    run.add_argument("--backend", default="auto", choices=["auto", "cpu", "cuda"],
                     help="the workers' backend: auto = cuda when every worker has a GPU, else cpu")
    run.add_argument("--precision", default="auto", choices=["auto", "single", "double"],
                     help="transport precision (auto: double on Dask workers; single pays on GPUs with slow FP64)")
    run.add_argument("--threads", type=int, default=None,
                     help="OpenMP threads per work unit (default: the worker host's CPUs over its task slots)")
    run.add_argument("--checkpoint", default=None, metavar="PATH", help="HDF5 checkpoint: resumable run")
    run.add_argument("--out", default=None, metavar="PATH", help="PATH.npy: the dose (Gy); else the result (HDF5)")
    case = ap.add_argument_group("the case (default: a water cube with a hot sphere)")
    case.add_argument("--nuclide", default="Lu-177")
    case.add_argument("--n", type=int, default=48, help="cube size in voxels (default 48)")
    case.add_argument("--spacing", type=float, default=4.0, help="voxel size, mm (default 4)")
    case.add_argument("--ct", default=None, help="a CT (DICOM folder or image file) instead of the cube")
    case.add_argument("--decays", default=None, help=".npy of decays per voxel [z, y, x] on the CT's grid")
    loc = ap.add_argument_group("--cluster local")
    loc.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    slurm = ap.add_argument_group("--cluster slurm (dask-jobqueue)")
    slurm.add_argument("--jobs", type=int, default=2, help="SLURM jobs = nodes = workers (default 2)")
    slurm.add_argument("--cores", type=int, default=32, help="CPUs booked per job (default 32)")
    slurm.add_argument("--memory", default="32GB", help="memory per job (default 32GB; docs/distributed.md)")
    slurm.add_argument("--walltime", default="01:00:00")
    slurm.add_argument("--queue", default=None, help="partition (#SBATCH -p)")
    slurm.add_argument("--account", default=None, help="account (#SBATCH -A)")
    slurm.add_argument("--exclusive", action="store_true", help="add #SBATCH --exclusive (whole nodes)")
    slurm.add_argument("--sbatch", action="append", default=[], metavar="DIRECTIVE",
                       help="an extra #SBATCH directive, e.g. --sbatch=--constraint=skylake (repeatable)")
    slurm.add_argument("--prologue", action="append", default=[], metavar="LINE",
                       help="a shell line run before the worker, e.g. 'module load python' (repeatable)")
    slurm.add_argument("--interface", default=None, help="network interface of the workers, e.g. ib0")
    slurm.add_argument("--local-directory", default=None, help="worker scratch folder, e.g. $TMPDIR")
    slurm.add_argument("--log-directory", default=None, help="folder for the jobs' stdout/stderr")
    slurm.add_argument("--wait", type=float, default=600.0,
                       help="seconds to wait for all jobs to start before running with those there")
    slurm.add_argument("--print-job-script", action="store_true", help="print the job script and exit")
    cuda = ap.add_argument_group("--cluster cuda (dask-cuda)")
    cuda.add_argument("--gpus", default=None, help='GPUs to use, e.g. "0,1" (default: all)')
    args = ap.parse_args(argv)
    known = ("local", "slurm", "cuda", "tcp://", "tls://", "ws://", "wss://", "inproc://")
    if not args.cluster.startswith(known):
        ap.error(f"--cluster {args.cluster!r}: expected local, slurm, cuda or a scheduler address (tcp://HOST:PORT)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    phantom, source = make_case(args)
    with contextlib.ExitStack() as stack:
        client = connect(args, stack)
        workers = client.scheduler_info()["workers"]
        print(f"cluster {args.cluster}: {len(workers)} workers, {sum(w['nthreads'] for w in workers.values())} "
              "task slots", flush=True)
        t0 = time.perf_counter()
        # the one call, whatever the cluster
        result = rd.simulate(phantom, source, histories=args.histories, seed=args.seed, batches=args.batches,
                             backend=args.backend, threads=args.threads, scheduler=client,
                             checkpoint=args.checkpoint, precision=args.precision, progress=False)
        wall = time.perf_counter() - t0
    info = result.provenance.get("batched", {})
    digest = hashlib.sha256(np.ascontiguousarray(result.dose_gy).tobytes()).hexdigest()
    print(f"backend {result.backend} ({result.provenance.get('precision', 'double')} precision), "
          f"{info.get('units')} units on {len(info.get('workers', []))} workers "
          f"({info.get('units_per_worker')}), resumed from batch {info.get('resumed_from_batch')}")
    print(f"{args.histories:,d} histories in {wall:.2f} s ({args.histories / wall:.4g} decays/s); "
          f"max dose {float(result.dose_gy.max()):.6g} Gy")
    print(f"dose sha256: {digest}")
    if args.out:
        if str(args.out).endswith(".npy"):
            np.save(args.out, result.dose_gy)
        else:
            result.save(args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
