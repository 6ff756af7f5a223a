"""The GPU backends' launch logic, checked on the CPU.

`_core.simulate_emulated` runs the batch loop of every backend (csrc/host/driver.hpp) over the
very kernel bodies that the __global__ kernels call (csrc/cuda/kernel_body.hpp for the history
kernel, csrc/cuda/wavefront_body.hpp and the wavefront's rounds, wavefront_loop.hpp), looping
over block and thread indices concurrently (OpenMP), so the queues' atomics race as on a device; `cupy_backend.simulate_cupy_emulated` runs the cupy backend's host
code (Params image with pointers, uploads, batch loop) with numpy arrays, each kernel emulated
by `_core.emulate_kernel`. Histories draw their random numbers from (seed, history index) and
tallies are integers, so both must equal `simulate_cpu` bit for bit whatever the launch shape
and whatever order the wavefront's queues end up in (each particle has its own random stream):
grid-stride indexing, batch ranges, chunking, fold and counter reductions are all exercised
(region sums are integer units on every backend, so they are compared exactly too).
"""
import numpy as np
import pytest

from rptdose import _core
from rptdose.physics.nuclides import load_nuclide
from rptdose.physics.tables import transport_tables
from rptdose.transport import cupy_backend
from rptdose.transport.request import RunRequest

N = 8
HISTORIES = 2003  # not a multiple of the batches nor of any grid below
SEED = 7
BATCHES = 10
SPACING = (2.0, 2.0, 2.0)


@pytest.fixture(scope="module")
def case():
    tables = transport_tables(["water", "cortical_bone"])
    emissions = load_nuclide("Lu-177").emission_arrays()
    density = np.ones((N, N, N), np.float32)
    material = np.zeros((N, N, N), np.int32)
    material[:, :, N // 2:] = 1
    density[:, :, N // 2:] = 1.92
    decays = np.zeros((N, N, N))
    decays[3:5, 3:5, 3:5] = 1.0
    decays[0, 0, 0] = 2.0  # a corner source: many escapes
    return dict(density=density, material=material, spacing_mm=SPACING, decays=decays,
                tables=tables, emissions=emissions)


def _req(case, **kw):
    """The run of `case` as the one request type of every backend."""
    fields = dict(density=case["density"], material=case["material"], spacing_mm=case["spacing_mm"],
                  decays=case["decays"], tables=case["tables"], emissions=case["emissions"], histories=HISTORIES,
                  seed=SEED, batches=BATCHES, threads=2, electron_transport=True)
    fields.update(kw)
    return RunRequest(**fields)


def _cpu(case, electron_transport=True, regions=None):
    return _core.simulate_cpu(_req(case, electron_transport=electron_transport, regions=regions))


@pytest.fixture(scope="module")
def regions():
    r = np.full((N, N, N), -1, np.int32)
    r[: N // 2] = 0
    r[N // 2:, : N // 2] = 1
    return r


@pytest.fixture(scope="module")
def cpu_ref(case, regions):
    return _cpu(case, True, regions)


def assert_same(ref, got, regions=True):
    np.testing.assert_array_equal(got["edep_mev"], ref["edep_mev"])
    np.testing.assert_array_equal(got["rel_uncertainty"], ref["rel_uncertainty"])
    for k in ("emitted_units", "deposited_units", "escaped_units", "emitted_mev", "deposited_mev",
              "escaped_mev", "max_mev_per_decay", "mean_mev_per_decay"):
        assert got[k] == ref[k], k
    assert got["emitted_units"] == got["deposited_units"] + got["escaped_units"]
    assert got["edep_mev"].shape == ref["edep_mev"].shape and got["edep_mev"].dtype == np.float64
    if regions:
        np.testing.assert_array_equal(got["region_batch_edep_mev"], ref["region_batch_edep_mev"])


# (grid_dim, block_dim, chunk): one thread; odd shapes; more threads than histories; histories
# per launch not a multiple of the grid; several launches per batch
SHAPES = [(1, 1, 0), (3, 7, 0), (64, 64, 0), (5, 32, 37), (2, 128, 1000), (13, 1, 64)]


@pytest.mark.parametrize("grid_dim,block_dim,chunk", SHAPES)
def test_emulated_history_kernel_equals_cpu(case, regions, cpu_ref, grid_dim, block_dim, chunk):
    res = _core.simulate_emulated(_req(case, grid_dim=grid_dim, block_dim=block_dim, regions=regions, chunk=chunk,
                                       gpu_transport="history"))
    assert_same(cpu_ref, res)
    launch = res["launch"]
    assert launch["transport"] == "history"
    assert (launch["grid_dim"], launch["block_dim"]) == (grid_dim, block_dim)
    per_batch = -(-HISTORIES // BATCHES)  # the largest batch
    expected_chunk = chunk or max(16 * grid_dim * block_dim, -(-HISTORIES // 100))
    assert launch["chunk"] == expected_chunk
    assert launch["launches"] >= BATCHES
    if chunk:
        assert launch["launches"] >= BATCHES * (per_batch // chunk)
    assert res["threads_used"] == grid_dim * block_dim


# (grid_dim, block_dim, chunk, queue_capacity): as above, with queues from the smallest (16
# particles: decays deferred, particles held over rounds) to more than a batch needs
WAVE_SHAPES = [(1, 1, 0, 16), (3, 7, 0, 64), (64, 64, 0, 0), (5, 32, 37, 100), (2, 128, 1000, 4096),
               (13, 1, 64, 40)]


@pytest.mark.parametrize("grid_dim,block_dim,chunk,capacity", WAVE_SHAPES)
def test_emulated_wavefront_equals_cpu(case, regions, cpu_ref, grid_dim, block_dim, chunk, capacity):
    res = _core.simulate_emulated(_req(case, grid_dim=grid_dim, block_dim=block_dim, regions=regions, chunk=chunk,
                                       queue_capacity=capacity))
    assert_same(cpu_ref, res)
    launch = res["launch"]
    assert launch["transport"] == "wavefront"
    assert launch["queue_capacity"] == (capacity or 65536)
    fill = launch["queue_capacity"] // 4  # decays per decay launch at most
    assert launch["chunk"] == (chunk or max(4 * fill, -(-HISTORIES // 100)))
    assert launch["electron_steps"] > 0 and launch["photon_steps"] > 0
    assert launch["rounds"] >= BATCHES and launch["decay_launches"] >= BATCHES
    if capacity and capacity <= 40:
        assert launch["deferred_decays"] > 0  # small queues: decays wait for room


@pytest.mark.parametrize("precision", ["single", "double"])
def test_emulated_wavefront_single_and_double(case, regions, precision):
    """Both precisions of the wavefront equal the CPU backend's run in that precision."""
    ref = _core.simulate_cpu(_req(case, regions=regions, precision=precision))
    res = _core.simulate_emulated(_req(case, grid_dim=7, block_dim=32, regions=regions, precision=precision,
                                       queue_capacity=48))
    assert_same(ref, res)
    assert res["precision"] == precision


def test_emulated_wavefront_positron_emitter():
    """F-18: positrons in the electron queue, their annihilation photons made in the decay
    kernel (a positron that stops at once) and in the electron kernel; equal to the CPU. The
    smallest queues: decays wait for room and particles wait a round for room for what their
    step may make (held), and neither changes a bit."""
    tables = transport_tables(["water", "lung"])
    n = 6
    density = np.ones((n, n, n), np.float32)
    material = np.zeros((n, n, n), np.int32)
    material[:, :3] = 1
    density[:, :3] = 0.26
    decays = np.zeros((n, n, n))
    decays[2:4, 2:4, 2:4] = 1.0
    req = RunRequest(density=density, material=material, spacing_mm=(1.5, 1.5, 1.5), decays=decays, tables=tables,
                     emissions=load_nuclide("F-18").emission_arrays(), histories=1500, seed=3, batches=10,
                     threads=2)
    ref = _core.simulate_cpu(req)
    res = _core.simulate_emulated(req.with_(grid_dim=4, block_dim=16, queue_capacity=64))
    assert_same(ref, res, regions=False)
    assert res["emitted_units"] > 0 and res["escaped_units"] > 0
    res = _core.simulate_emulated(req.with_(threads=1, grid_dim=3, block_dim=8, queue_capacity=16))
    assert_same(ref, res, regions=False)
    assert res["launch"]["deferred_decays"] > 0 and res["launch"]["held_particles"] > 0


@pytest.mark.parametrize("transport", ["history", "wavefront"])
def test_emulated_local_deposition_equals_cpu(case, transport):
    ref = _cpu(case, electron_transport=False)
    res = _core.simulate_emulated(_req(case, threads=1, electron_transport=False, grid_dim=6, block_dim=33,
                                       gpu_transport=transport))
    assert_same(ref, res, regions=False)
    assert "region_batch_edep_mev" not in res


@pytest.mark.parametrize("grid_dim,block_dim,chunk,voxel_shape",
                         [(0, 0, 0, None), (3, 7, 0, (2, 5)), (5, 32, 37, (1, 1)), (40, 64, 0, (1000, 1))])
def test_cupy_host_code_emulated_equals_cpu(case, regions, cpu_ref, grid_dim, block_dim, chunk, voxel_shape):
    res = cupy_backend.simulate_cupy_emulated(
        _req(case, regions=regions, grid_dim=grid_dim, block_dim=block_dim, chunk=chunk), voxel_shape=voxel_shape)
    assert_same(cpu_ref, res)
    assert set(cpu_ref) - {"threads_used"} <= set(res)


def test_block_source_draw_emulated_equals_cpu(case, regions, source_layout):
    """Both layouts of the source draw give the same histories on the CPU, the emulated CUDA
    kernels and the cupy host code; the two layouts draw different (equally distributed)
    decay sites, so their results differ."""
    ref = _cpu(case, True, regions)
    res = _core.simulate_emulated(_req(case, grid_dim=5, block_dim=32, regions=regions, chunk=37))
    assert_same(ref, res)
    res = cupy_backend.simulate_cupy_emulated(_req(case, regions=regions, grid_dim=3, block_dim=7))
    assert_same(ref, res)
    other = _core._set_voxel_alias_max_bytes(256.0 * 2**20 if source_layout == "blocks" else 0.0)
    try:
        alt = _cpu(case, True, regions)
    finally:
        _core._set_voxel_alias_max_bytes(other)
    assert not np.array_equal(alt["edep_mev"], ref["edep_mev"])


def test_progress_and_abort(case):
    seen = []
    res = _core.simulate_emulated(_req(case, threads=1, grid_dim=4, block_dim=32, progress=seen.append, chunk=100))
    assert seen == sorted(seen) and seen[-1] == HISTORIES
    assert len(seen) == res["launch"]["launches"]

    class Stop(Exception):
        pass

    def stop(done):
        if done > 500:
            raise Stop

    with pytest.raises(Stop):
        _core.simulate_emulated(_req(case, threads=1, grid_dim=4, block_dim=32, progress=stop, chunk=100))


def test_emulated_rejects_bad_options(case):
    def req(**kw):
        return _req(case, **{"histories": 100, "seed": 1, "batches": 10, "threads": 1, "grid_dim": 2,
                             "block_dim": 2, **kw})

    with pytest.raises(ValueError, match="batches: expected >= 10"):
        _core.simulate_emulated(req(batches=1))
    with pytest.raises(ValueError, match="histories: expected >= batches"):
        _core.simulate_emulated(req(histories=5))
    with pytest.raises(ValueError, match="grid_dim"):
        _core.simulate_emulated(req(grid_dim=0))
    with pytest.raises(ValueError, match="block_dim"):
        _core.simulate_emulated(req(block_dim=1025))
    with pytest.raises(ValueError, match="gpu_transport: expected 'wavefront' or 'history', got 'event'"):
        _core.simulate_emulated(req(gpu_transport="event"))
    with pytest.raises(ValueError, match="block_dim: expected at most 512 for the wavefront kernels, got 1024"):
        _core.simulate_emulated(req(block_dim=1024))
    with pytest.raises(ValueError, match="block_dim: expected at most 512 for the single-precision history"):
        _core.simulate_emulated(req(block_dim=1024, gpu_transport="history", precision="single"))
    _core.simulate_emulated(req(block_dim=1024, gpu_transport="history"))  # the double history kernel takes 1024
    with pytest.raises(ValueError, match="queue_capacity"):
        _core.simulate_emulated(req(queue_capacity=-1))
    with pytest.raises(ValueError, match="batches: expected >= 10"):
        cupy_backend.simulate_cupy_emulated(req(batches=1, grid_dim=0, block_dim=0))
    with pytest.raises(ValueError, match="exceeds the tally capacity"):
        cupy_backend.simulate_cupy_emulated(req(histories=2**62, grid_dim=0, block_dim=0))
    with pytest.raises(ValueError, match=r"request: no field '\w+' \(expected an rptdose\.transport\.request\.RunRequest\)"):
        _core.simulate_cpu(object())
    with pytest.raises(ValueError, match=r"request\.seed: str does not convert"):
        _core.simulate_cpu(req(seed="one"))


def test_prepare_run_layout(case, source_layout):
    prep = _core.prepare_run(_req(case))
    size = prep["params_size"]
    assert len(prep["params_bytes"]) == size
    arrays, offsets = prep["arrays"], prep["pointer_offsets"]
    assert set(arrays) == set(offsets)
    for name, off in offsets.items():
        assert off % 8 == 0 and 0 <= off <= size - 8, name
        # the image carries no host pointers
        assert prep["params_bytes"][off:off + 8] == bytes(8), name
    assert len(set(offsets.values())) == len(offsets)
    nv = N ** 3
    assert prep["n_voxels"] == nv and tuple(prep["shape"]) == (N, N, N)
    assert arrays["density"].dtype == np.float32 and arrays["density"].size == nv
    assert arrays["material"].dtype == np.int32
    dec = np.ascontiguousarray(case["decays"], dtype=np.float64).ravel()
    assert prep["n_source_voxels"] == int(np.count_nonzero(dec))
    # the source draw (csrc/physics/params.hpp SourceView): an alias table over items, the
    # voxels, or blocks of 32 voxels whose voxel is then found from the decay map itself
    block = prep["source_block"]
    assert block == (32 if source_layout == "blocks" else 1)
    if block == 1:
        weights = dec
        assert arrays["decays"].size == 0 and arrays["block_weight"].size == 0
    else:
        np.testing.assert_array_equal(arrays["decays"], dec)
        nb = -(-nv // block)
        padded = np.concatenate([dec, np.zeros(nb * block - nv)]).reshape(nb, block)
        # each block's sum in voxel order (numpy's cumsum adds sequentially, as the core does)
        weights = np.cumsum(padded, axis=1)[:, -1]
        np.testing.assert_array_equal(arrays["block_weight"], weights)
    n_items, with_weight = weights.size, set(np.flatnonzero(weights > 0))
    # the smaller alias layout: per item with weight {threshold, item, alias} (12 B), or per
    # item {threshold, alias} (8 B); every column draws an item with weight
    dense = 3 * len(with_weight) > 2 * n_items
    assert prep["alias_dense"] == dense
    alias = arrays["alias"]
    assert alias.dtype == np.uint32 and alias.size == (2 * n_items if dense else 3 * len(with_weight))
    if dense:
        cols = alias.reshape(-1, 2)
        kept = np.flatnonzero(cols[:, 0] > 0)  # columns that can keep their own item
        assert set(kept) <= with_weight and set(cols[:, 1]) <= with_weight
    else:
        assert set(alias.reshape(-1, 3)[:, 1:].ravel()) <= with_weight
    assert arrays["majorant"].size == case["tables"]["energy_grid_mev"].size
    assert np.all(arrays["majorant"] > 0)
    assert arrays["ms_ln_lambda"].size > 0
    np.testing.assert_array_equal(arrays["mu_photo"], case["tables"]["mu_photo"].ravel())
    assert prep["max_histories"] == _core.max_histories(prep["mean_mev_per_decay"])
    with pytest.raises(ValueError, match="decays"):
        _core.prepare_run(_req(case, decays=np.zeros_like(case["decays"])))


def test_emulate_kernel_checks_arguments():
    z = np.zeros(4, np.uint64)
    with pytest.raises(ValueError, match="unknown kernel"):
        _core.emulate_kernel("nope", 1, 1, ())
    with pytest.raises(ValueError, match="expected 9 arguments"):
        _core.emulate_kernel("rpt_fold_kernel", 1, 1, (4, z))
    with pytest.raises(ValueError, match="dtype"):
        _core.emulate_kernel("rpt_fold_kernel", 1, 1, (4, z, z, z, 0, 1, np.zeros(0, np.int32), 0, z))
    # a correct fold on 4 voxels (2 histories before, 2 in the batch): batch -> total, M2
    # (Welford: M2 += n_b (y - m_before)(y - m_after)); batch zeroed; untouched voxels skipped
    batch = np.array([0, 3, 0, 5], np.uint64)
    total = np.array([1, 1, 0, 0], np.uint64)
    m2 = np.array([0.5, 0.25, 0, 0], np.float32)
    _core.emulate_kernel("rpt_fold_kernel", 3, 1, (4, batch, total, m2, 2, 2, np.zeros(0, np.int32),
                                                   0, np.zeros(0, np.uint64)))
    np.testing.assert_array_equal(batch, 0)
    np.testing.assert_array_equal(total, [1, 4, 0, 5])
    np.testing.assert_array_equal(m2, [0.75, 1.25, 0, 6.25])


@pytest.mark.parametrize("histories, batches", [(1000, 10), (1003, 7), (20, 3)])
def test_fold_and_finalize_give_the_batch_standard_error(histories, batches):
    """Fold over batches of unequal size, then finalize: the relative uncertainty equals the
    weighted batch-means standard error computed directly, sqrt(sum n_b (y_b - ybar)^2 /
    ((B - 1) H)) / ybar with y_b = x_b / n_b (the textbook s/sqrt(B) for equal batches); the
    energies and the deposited counter are exact."""
    rng = np.random.default_rng(histories)
    nv = 64
    sizes = _core.batch_sizes(histories, batches)
    x = rng.poisson(lam=rng.uniform(0, 50, nv)[None, :] * sizes[:, None]).astype(np.int64)  # [B, V]
    x[:, :4] = 0  # voxels never hit
    x[: batches // 2, 4:8] = 0  # voxels first hit late
    batch = np.zeros(nv, np.uint64)
    total = np.zeros(nv, np.uint64)
    m2 = np.zeros(nv, np.float32)
    h = 0
    for b in range(batches):
        batch[:] = x[b].astype(np.uint64)
        _core.emulate_kernel("rpt_fold_kernel", 2, 8, (nv, batch, total, m2, h, int(sizes[b]),
                                                       np.zeros(0, np.int32), 0, np.zeros(0, np.uint64)))
        h += int(sizes[b])
    counters = np.zeros(3, np.uint64)
    edep = np.zeros(nv)
    _core.emulate_kernel("rpt_finalize_kernel", 2, 8, (nv, total, m2, edep, histories, batches, counters))
    rel = total.view(np.float64)
    np.testing.assert_array_equal(edep, x.sum(axis=0) * 1e-8)
    assert int(counters[2]) == int(x.sum())
    y = x / sizes[:, None]
    ybar = x.sum(axis=0) / histories
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = np.sqrt((sizes[:, None] * (y - ybar) ** 2).sum(axis=0) / ((batches - 1) * histories)) / ybar
    ref[x.sum(axis=0) == 0] = 1.0
    np.testing.assert_allclose(rel, ref, rtol=2e-6)
    if histories % batches == 0:  # equal batches: s(batch means) / sqrt(B)
        hit = x.sum(axis=0) > 0
        textbook = y[:, hit].std(axis=0, ddof=1) / np.sqrt(batches) / y[:, hit].mean(axis=0)
        np.testing.assert_allclose(rel[hit], textbook, rtol=2e-6)


def test_batch_range_split():
    # physics/batch.hpp's batch_range, as every backend splits the histories
    for n, nb in ((2003, 10), (10, 10), (99, 7)):
        ranges = [_core.batch_range(n, nb, b) for b in range(nb)]
        assert list(_core.batch_sizes(n, nb)) == [h1 - h0 for h0, h1 in ranges]
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        sizes = [h1 - h0 for h0, h1 in ranges]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
