"""Checkpointed and distributed transport (rptdose.transport.batched, checkpoint, distributed).

The claim tested: however the batches are run (in one call, resumed after a kill from a
checkpoint, on Dask workers, with a worker lost on the way) the dose, its uncertainty, the
region means and the energy balance are the in-process run's bit for bit, because batches are
exact integer tallies folded in batch order. And bad input (a checkpoint of other inputs, a
damaged file, an unreachable scheduler, a worker of another version) is a clear error.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

import rptdose as rd
from rptdose.errors import BackendUnavailableError, InputError

distributed = pytest.importorskip("distributed")

HISTORIES = 20_000
BATCHES = 10


def _case():
    ph = rd.Phantom.water((20, 18, 16), (4.0, 4.0, 4.0))
    dec = np.zeros(ph.shape)
    dec[8:12, 8:10, 6:9] = 1e6
    dec[3, 3, 3] = 5e5  # an isolated hot voxel, as in noisy SPECT
    regions = {"hot": dec > 0, "corner": np.zeros(ph.shape, bool)}
    regions["corner"][0:5, 0:5, 0:5] = True
    return ph, rd.Source("Lu-177", dec), regions


@pytest.fixture(scope="module")
def case():
    return _case()


@pytest.fixture(scope="module")
def reference(case):
    ph, src, regions = case
    return rd.simulate(ph, src, histories=HISTORIES, seed=11, batches=BATCHES, regions=regions, backend="cpu",
                       progress=False)


def _assert_same(a, b):
    assert np.array_equal(a.dose_gy, b.dose_gy)
    assert np.array_equal(a.rel_uncertainty, b.rel_uncertainty)
    assert a.region_means == b.region_means
    assert a.energy_balance == b.energy_balance


def _run(case, **kw):
    ph, src, regions = case
    return rd.simulate(ph, src, histories=HISTORIES, seed=11, batches=BATCHES, regions=regions, progress=False, **kw)


# ---------------------------------------------------------------- checkpoint


def test_checkpoint_run_equals_plain_run_and_reruns_from_the_file(case, reference, tmp_path):
    path = tmp_path / "run.ckpt.h5"
    res = _run(case, backend="cpu", checkpoint=path)
    _assert_same(reference, res)
    with h5py.File(path, "r") as f:
        assert f.attrs["kind"] == "rptdose-checkpoint"
        assert int(f.attrs["next_batch"]) == BATCHES
        assert f["total"].dtype == np.int64 and f["total"].shape == (20 * 18 * 16,)
    assert res.provenance["batched"]["resumed_from_batch"] == 0
    again = _run(case, backend="cpu", checkpoint=path)  # all batches in the file: nothing to run
    _assert_same(reference, again)
    assert again.provenance["batched"]["resumed_from_batch"] == BATCHES


_KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import rptdose as rd
    from test_distributed import _case, HISTORIES, BATCHES

    ph, src, regions = _case()

    def progress(done):
        if done >= HISTORIES // 2:  # half the histories run: batches 0-3 are in the checkpoint
            os.kill(os.getpid(), signal.SIGKILL)

    rd.simulate(ph, src, histories=HISTORIES, seed=11, batches=BATCHES, regions=regions, backend="cpu",
                checkpoint={path!r}, progress=progress, threads=1)
""")


def test_killed_run_resumes_from_its_checkpoint_bit_identical(case, reference, tmp_path):
    path = tmp_path / "killed.h5"
    script = _KILLED_RUN.format(tests=os.path.dirname(__file__), path=str(path))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with h5py.File(path, "r") as f:
        saved = int(f.attrs["next_batch"])
    assert 0 < saved < BATCHES  # killed part-way, the checkpoint whole
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary left visible as a checkpoint
    resumed = _run(case, backend="cpu", checkpoint=path)
    assert resumed.provenance["batched"]["resumed_from_batch"] == saved
    _assert_same(reference, resumed)


def test_checkpoint_of_other_inputs_is_refused_and_left_alone(case, tmp_path):
    path = tmp_path / "c.h5"
    _run(case, backend="cpu", checkpoint=path)
    before = path.read_bytes()
    ph, src, regions = case
    with pytest.raises(InputError, match=r"written for other inputs: seed \(11 in the file, 12 now\)"):
        rd.simulate(ph, src, histories=HISTORIES, seed=12, batches=BATCHES, regions=regions, backend="cpu",
                    checkpoint=path, progress=False)
    other = rd.Source("Lu-177", src.decays * 2.0)
    with pytest.raises(InputError, match=r"inputs_sha256\.decays"):
        rd.simulate(ph, other, histories=HISTORIES, seed=11, batches=BATCHES, regions=regions, backend="cpu",
                    checkpoint=path, progress=False)
    assert path.read_bytes() == before


def test_damaged_or_foreign_checkpoint_is_a_clear_error(case, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(InputError, match=r"checkpoint '.*bad\.h5' \(not a readable HDF5 file"):
        _run(case, backend="cpu", checkpoint=bad)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f.attrs["kind"] = "something else"
    with pytest.raises(InputError, match=r"kind 'something else'"):
        _run(case, backend="cpu", checkpoint=foreign)
    truncated = tmp_path / "truncated.h5"
    _run(case, backend="cpu", checkpoint=truncated)
    with h5py.File(truncated, "a") as f:
        del f["m2"]
    with pytest.raises(InputError, match=r"damaged or incomplete"):
        _run(case, backend="cpu", checkpoint=truncated)
    with pytest.raises(InputError, match=r"folder .* does not exist"):
        _run(case, backend="cpu", checkpoint=tmp_path / "missing" / "c.h5")


def test_fold_refuses_a_batch_out_of_order():
    from rptdose import _core

    st = _core.TallyState((2, 2, 2), 10)
    with pytest.raises(ValueError, match="batch 1 folded out of order: the next batch is 0"):
        st.fold(1, np.zeros(8, np.int64), 100, 0, 0)
    st.fold(0, np.ones(8, np.int64), 100, 8, 0)
    with pytest.raises(ValueError, match="the next batch is 1"):
        st.fold(0, np.ones(8, np.int64), 100, 8, 0)  # a batch is never counted twice


# ---------------------------------------------------------------- Dask


@pytest.fixture(scope="module")
def thread_client():
    """An in-process LocalCluster (threads): two workers, quick to start."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_distributed_run_equals_in_process_run(case, reference, thread_client):
    res = _run(case, scheduler=thread_client, threads=1)
    _assert_same(reference, res)
    info = res.provenance["batched"]
    assert len(info["workers"]) == 2
    assert sum(info["units_per_worker"].values()) == info["units"] >= 2
    assert [b for u in info["unit_batches"] for b in range(*u)] == list(range(BATCHES))
    assert res.backend == "dask/cpu"


def test_distributed_run_with_checkpoint_resumes(case, reference, thread_client, tmp_path):
    path = tmp_path / "d.h5"
    ph, src, regions = case
    calls = []

    def stop_after_first_unit(done):
        calls.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rd.simulate(ph, src, histories=HISTORIES, seed=11, batches=BATCHES, regions=regions, threads=1,
                    scheduler=thread_client, checkpoint=path, progress=stop_after_first_unit)
    with h5py.File(path, "r") as f:
        saved = int(f.attrs["next_batch"])
    assert 0 < saved < BATCHES
    res = _run(case, scheduler=thread_client, checkpoint=path, threads=1)
    assert res.provenance["batched"]["resumed_from_batch"] == saved
    _assert_same(reference, res)


def test_single_precision_is_kept_by_checkpoints_and_workers(case, reference, thread_client, tmp_path):
    """A batch-wise run transports in the precision asked for, as the in-process run does."""
    single = _run(case, backend="cpu", precision="single")
    assert single.provenance["precision"] == "single"
    assert not np.array_equal(single.dose_gy, reference.dose_gy)
    for kw in (dict(backend="cpu", checkpoint=tmp_path / "single.h5"), dict(scheduler=thread_client)):
        res = _run(case, precision="single", **kw)
        _assert_same(single, res)
        assert res.provenance["precision"] == "single"


def test_local_worker_processes_and_a_lost_worker(case, reference):
    """'local:N' starts worker processes; one of them killed mid-run: its units are recomputed
    on the other and every batch is folded once."""
    res = _run(case, scheduler="local:2")
    _assert_same(reference, res)
    assert res.provenance["batched"]["scheduler"] == "local:2"

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = distributed.Client(cluster)
    try:
        ph, src, regions = case
        pids = client.run(os.getpid)
        killed = []

        def kill_one_worker(done):
            if not killed and done < 100 * HISTORIES:
                addr, pid = sorted(pids.items())[0]
                os.kill(pid, signal.SIGKILL)
                killed.append(addr)

        more = rd.simulate(ph, src, histories=100 * HISTORIES, seed=5, batches=BATCHES, threads=1,
                           scheduler=client, progress=kill_one_worker)
        assert killed
        plain = rd.simulate(ph, src, histories=100 * HISTORIES, seed=5, batches=BATCHES, backend="cpu",
                            progress=False)
        assert np.array_equal(more.dose_gy, plain.dose_gy)
        assert np.array_equal(more.rel_uncertainty, plain.rel_uncertainty)
    finally:
        client.close()
        cluster.close()


def test_bad_scheduler_arguments_are_clear_errors(case, monkeypatch):
    with pytest.raises(InputError, match=r"scheduler 'local:0' \(no workers\)"):
        _run(case, scheduler="local:0")
    with pytest.raises(InputError, match=r"scheduler 'my-cluster' \(neither 'local:N' nor an address"):
        _run(case, scheduler="my-cluster")
    with pytest.raises(InputError, match=r"of type int"):
        _run(case, scheduler=8786)
    from rptdose.transport import distributed as dist

    monkeypatch.setattr(dist, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(BackendUnavailableError, match=r"scheduler 'tcp://127\.0\.0\.1:9' \(unreachable within 1 s"):
        _run(case, scheduler="tcp://127.0.0.1:9")


def test_worker_of_another_version_is_named(case, thread_client, monkeypatch):
    from rptdose.transport import distributed as dist

    payload = {}
    with pytest.raises(dist.WorkerMismatch, match=r"rptdose .* on this worker, the client has 0\.0\.0-other"):
        dist.run_unit("k", payload, {"rptdose": "0.0.0-other", "core": "x"}, 0, 1, 1)
    real_versions = dist.client_versions

    def client_of_other_version():
        v = real_versions()
        v["rptdose"] = "9.9.9"
        return v

    # the client's versions differ from the (in-process) workers': the run stops, naming why
    monkeypatch.setattr(dist, "client_versions", client_of_other_version)
    with pytest.raises(BackendUnavailableError, match=r"Dask worker cannot run this transport: .*9\.9\.9"):
        _run(case, scheduler=thread_client, threads=1)


def test_units_cover_the_batches_once():
    from rptdose.transport.distributed import unit_ranges

    for batches, workers, first in [(10, 1, 0), (10, 2, 0), (10, 2, 7), (100, 3, 0), (13, 16, 0), (10, 2, 10)]:
        units = unit_ranges(batches, workers, first)
        assert [b for u in units for b in range(*u)] == list(range(first, batches))


def test_one_backend_for_every_worker(case, thread_client):
    """backend='cuda' needs a GPU on every worker (none here: a clear error before any unit);
    'auto' runs the cpu backend on all of them when any lacks a GPU."""
    with pytest.raises(BackendUnavailableError, match=r"backend 'cuda' with scheduler .* has no usable GPU"):
        _run(case, scheduler=thread_client, backend="cuda", threads=1)
    res = _run(case, scheduler=thread_client, backend="auto", threads=1)
    assert res.backend == "dask/cpu" and res.provenance["batched"]["tally_backend"] == "cpu"


def test_worker_without_the_compiled_core_is_named(case, thread_client, monkeypatch):
    from rptdose.transport import distributed as dist

    real = dist.worker_versions

    def no_core():
        v = real()
        v.update(core=None, core_error="No module named 'rptdose._core'")
        return v

    monkeypatch.setattr(dist, "worker_versions", no_core)  # the in-process workers run this module
    with pytest.raises(BackendUnavailableError, match=r"no compiled rptdose core on this worker \(No module named"):
        _run(case, scheduler=thread_client, threads=1)


def test_cli_unreachable_scheduler_exits_2(tmp_path, monkeypatch, capsys):
    """`rptdose run --scheduler` at an address where nothing listens: exit 2, one clear line, and
    the output folder is not created."""
    from rptdose.cli import main
    from rptdose.demo import DemoPatient, write_demo_study
    from rptdose.transport import distributed as dist

    study = write_demo_study(tmp_path / "p", DemoPatient(voxel_mm=16.0), histories=2000, calibration="sensitivity",
                             recovery=False)
    monkeypatch.setattr(dist, "CONNECT_TIMEOUT_S", 1)
    out = tmp_path / "out"
    assert main(["run", str(study), "-o", str(out), "--no-plots", "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "scheduler 'tcp://127.0.0.1:9' (unreachable within 1 s" in err and "Traceback" not in err
    assert not (out / "dose.h5").exists()


def test_threads_with_a_scheduler_are_the_workers(case, thread_client):
    """threads=N with a scheduler sets each unit's OpenMP threads on its worker, recorded in the
    provenance; it is not capped to this process's CPUs (no warning: warnings are errors here)."""
    import os

    many = 4 * (os.cpu_count() or 1)
    res = _run(case, scheduler=thread_client, threads=many)
    assert res.provenance["batched"]["threads_per_unit"] == [many]
    auto = _run(case, scheduler=thread_client)
    assert len(auto.provenance["batched"]["threads_per_unit"]) == 1 and auto.provenance["batched"]["threads_per_unit"][0] >= 1
