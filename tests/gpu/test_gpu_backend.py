"""GPU backends (cuda, cupy) against the CPU backend, on a real GPU (skipped without one).

- agreement: per-voxel energies of GPU and CPU runs (different random streams in effect: the
  device's libm differs in the last bits, so histories diverge) agree within their batch
  uncertainties: chi-square over the voxels with < 5 % uncertainty in both;
- energy balance: emitted == deposited + escaped exactly, in integer units;
- determinism: the same seed gives the same bits, whatever the launch shape (histories draw
  from (seed, history index); tallies are integers, so the order of GPU atomics is irrelevant);
- the cuda backend's two transports: the wavefront (its default: particle queues, a decay
  kernel and electron / photon step kernels, one step per launch) and the history kernel
  (``gpu_transport="history"``) give the same bits in double and single precision (every
  particle has its own random stream); so does the wavefront with a small queue capacity
  (decays deferred, particles held a round), whose step counts equal the default capacity's;
  its launch dict reports the transport, the queue capacity, rounds, decay launches, deferred
  decays, electron and photon steps and held particles, consistently.
"""
import numpy as np
import pytest

from rptdose import _core
from rptdose.physics.nuclides import load_nuclide
from rptdose.physics.tables import transport_tables
from rptdose.transport.request import RunRequest
from rptdose.transport import cupy_backend, gpu_runners

pytestmark = pytest.mark.gpu

N = 16
HISTORIES = 200_000
BATCHES = 20
SEED = 11


def _same_bits(a, b):
    np.testing.assert_array_equal(a["edep_mev"], b["edep_mev"])
    np.testing.assert_array_equal(a["rel_uncertainty"], b["rel_uncertainty"])
    np.testing.assert_array_equal(a["region_batch_edep_mev"], b["region_batch_edep_mev"])
    for k in ("emitted_units", "deposited_units", "escaped_units"):
        assert a[k] == b[k], k


def _runner(name):
    if name == "cuda":
        ok, why = gpu_runners.cuda_available()
        return (gpu_runners.run_cuda if ok else None), why
    ok, why = cupy_backend.available()
    return (gpu_runners.run_cupy if ok else None), why


@pytest.fixture(params=["cuda", "cupy"])
def gpu(request):
    runner, why = _runner(request.param)
    if runner is None:
        pytest.skip(f"{request.param}: {why}")
    return runner


@pytest.fixture
def cuda():
    runner, why = _runner("cuda")
    if runner is None:
        pytest.skip(f"cuda: {why}")
    return runner


@pytest.fixture(scope="module")
def case():
    tables = transport_tables(["water", "cortical_bone"])
    emissions = load_nuclide("Lu-177").emission_arrays()
    density = np.ones((N, N, N), np.float32)
    material = np.zeros((N, N, N), np.int32)
    material[:, :, 12:] = 1
    density[:, :, 12:] = 1.92
    decays = np.zeros((N, N, N))
    decays[6:10, 6:10, 6:10] = 1.0
    regions = np.full((N, N, N), -1, np.int32)
    regions[6:10, 6:10, 6:10] = 0
    regions[:, :, 12:] = 1
    return RunRequest(density=density, material=material, spacing_mm=(2.0, 2.0, 2.0), decays=decays, tables=tables,
                      emissions=emissions, histories=HISTORIES, seed=SEED, batches=BATCHES, regions=regions)


def _run(runner, case, electron_transport=True, seed=SEED, **kw):
    return runner(case.with_(electron_transport=electron_transport, seed=seed, **kw))


def _cpu(case, electron_transport=True):
    return _core.simulate_cpu(case.with_(electron_transport=electron_transport))


def _chi2_per_dof(a, b):
    ea, eb = a["edep_mev"], b["edep_mev"]
    sa, sb = a["rel_uncertainty"] * ea, b["rel_uncertainty"] * eb
    ok = (a["rel_uncertainty"] < 0.05) & (b["rel_uncertainty"] < 0.05)
    z2 = (ea[ok] - eb[ok]) ** 2 / (sa[ok] ** 2 + sb[ok] ** 2)
    return float(z2.sum()) / max(int(ok.sum()), 1), int(ok.sum())


@pytest.mark.parametrize("electron_transport", [True, False])
def test_gpu_agrees_with_cpu(gpu, case, electron_transport):
    g = _run(gpu, case, electron_transport)
    c = _cpu(case, electron_transport)
    chi2, dof = _chi2_per_dof(g, c)
    assert dof >= 50
    # batch-estimated variances (19 dof each) make E[chi2/dof] ~ 1.1; 1.5 is > 5 sigma for dof >= 50
    assert chi2 < 1.5, f"chi2/dof = {chi2:.3f} over {dof} voxels"
    # totals per decay within 1 % (~5 sigma of a 2e5-decay mean)
    assert g["deposited_mev"] == pytest.approx(c["deposited_mev"], rel=0.01)
    assert g["emitted_mev"] == pytest.approx(c["emitted_mev"], rel=0.01)
    assert set(c) - {"threads_used"} <= set(g)


def test_gpu_energy_balance_and_regions(gpu, case):
    g = _run(gpu, case)
    assert g["emitted_units"] == g["deposited_units"] + g["escaped_units"]
    assert g["deposited_units"] > 0 and g["escaped_units"] > 0
    assert g["edep_mev"].sum() == pytest.approx(g["deposited_mev"], rel=1e-12)
    rb = g["region_batch_edep_mev"]
    assert rb.shape == (BATCHES, 2)
    for r in (0, 1):
        assert rb[:, r].sum() == pytest.approx(g["edep_mev"][case.regions == r].sum(), rel=1e-12)
    assert np.all(g["rel_uncertainty"][g["edep_mev"] == 0] == 1.0)


def test_gpu_deterministic(gpu, case):
    a = _run(gpu, case)
    b = _run(gpu, case)
    c = _run(gpu, case, grid_dim=7, block_dim=96)  # another launch shape: same histories
    for other in (b, c):
        np.testing.assert_array_equal(a["edep_mev"], other["edep_mev"])
        np.testing.assert_array_equal(a["rel_uncertainty"], other["rel_uncertainty"])
        np.testing.assert_array_equal(a["region_batch_edep_mev"], other["region_batch_edep_mev"])
        assert a["emitted_units"] == other["emitted_units"]
        assert a["escaped_units"] == other["escaped_units"]
    assert (c["launch"]["grid_dim"], c["launch"]["block_dim"]) == (7, 96)
    d = _run(gpu, case, seed=SEED + 1)
    assert not np.array_equal(a["edep_mev"], d["edep_mev"])


def test_cuda_and_cupy_agree_bitwise(case):
    """Both GPU backends run the same kernel source with the same options: same device, same
    bits."""
    cu, why_cu = _runner("cuda")
    cp, why_cp = _runner("cupy")
    if cu is None or cp is None:
        pytest.skip(f"needs both GPU backends (cuda: {why_cu}; cupy: {why_cp})")
    a, b = _run(cu, case), _run(cp, case)
    np.testing.assert_array_equal(a["edep_mev"], b["edep_mev"])
    assert a["emitted_units"] == b["emitted_units"]


def test_gpu_single_precision(gpu, case):
    """rpt_histories_kernel_f32: reproducible for any launch shape, exact energy balance, and
    within statistics of the CPU's double precision."""
    a = _run(gpu, case, precision="single")
    b = _run(gpu, case, precision="single", grid_dim=7, block_dim=96)
    assert a["precision"] == b["precision"] == "single"
    np.testing.assert_array_equal(a["edep_mev"], b["edep_mev"])
    assert a["emitted_units"] == a["deposited_units"] + a["escaped_units"]
    c = _cpu(case)
    chi2, dof = _chi2_per_dof(a, c)
    assert dof >= 50
    assert chi2 < 1.5, f"chi2/dof = {chi2:.3f} over {dof} voxels"
    assert a["deposited_mev"] == pytest.approx(c["deposited_mev"], rel=0.01)
    d = _run(gpu, case, precision="double")
    assert not np.array_equal(a["edep_mev"], d["edep_mev"])


def test_simulate_auto_precision_on_the_gpu(case):
    """precision='auto' on a GPU follows the device's compute capability; provenance says so."""
    import rptdose as rd

    runner, why = _runner("cuda")
    name = "cuda"
    if runner is None:
        runner, why = _runner("cupy")
        name = "cupy"
    if runner is None:
        pytest.skip(f"no GPU backend ({why})")
    expected, _ = gpu_runners.auto_precision(name)
    ph = rd.Phantom.water(shape=(8, 8, 8), spacing_mm=(2.0, 2.0, 2.0))
    dec = np.zeros(ph.shape)
    dec[4, 4, 4] = 1.0
    res = rd.simulate(ph, rd.Source("Lu-177", dec), histories=2000, backend=name, progress=False)
    assert res.provenance["precision"] == expected
    assert res.provenance["precision_requested"] == "auto"


WAVE_KEYS = ("queue_capacity", "rounds", "decay_launches", "deferred_decays", "electron_steps", "photon_steps",
             "held_particles")


@pytest.mark.parametrize("precision", ["double", "single"])
def test_cuda_wavefront_equals_history_kernel(cuda, case, precision):
    """Every particle draws from its own stream and the tallies are integers: the wavefront and
    the history kernel give the same bits on one device (the history kernel's fixed stack of
    24 particles never fills for Lu-177)."""
    w = _run(cuda, case, precision=precision)
    h = _run(cuda, case, precision=precision, gpu_transport="history")
    assert w["launch"]["transport"] == "wavefront" and h["launch"]["transport"] == "history"
    assert w["precision"] == h["precision"] == precision
    _same_bits(w, h)
    assert w["emitted_units"] == w["deposited_units"] + w["escaped_units"]
    assert not set(WAVE_KEYS) & set(h["launch"])


@pytest.mark.parametrize("precision", ["double", "single"])
def test_cuda_wavefront_small_queues(cuda, case, precision):
    """A queue capacity of 32 (a decay launch fills at most 8 per queue) defers decays (and
    holds particles whose outputs might not fit, a few in the CPU emulation of this case): the
    same bits, and the same steps, as the default capacity and the history kernel."""
    n = 20_000
    a = _run(cuda, case, precision=precision, histories=n)
    b = _run(cuda, case, precision=precision, histories=n, queue_capacity=32)
    _same_bits(a, b)
    la, lb = a["launch"], b["launch"]
    assert la["transport"] == lb["transport"] == "wavefront"
    assert lb["queue_capacity"] == 32 and la["queue_capacity"] > 32
    assert lb["deferred_decays"] > 0
    assert lb["decay_launches"] > la["decay_launches"] and lb["rounds"] > la["rounds"]
    assert (lb["electron_steps"], lb["photon_steps"]) == (la["electron_steps"], la["photon_steps"])
    assert lb["held_particles"] >= 0
    h = _run(cuda, case, precision=precision, histories=n, gpu_transport="history")
    _same_bits(b, h)


def test_cuda_wavefront_launch_dict(cuda, case):
    """The wavefront's launch figures: steps and rounds counted, at least one decay launch per
    launch (chunk), no deferred decay or held particle where the queues hold a batch many times
    over (the default capacity on a large GPU)."""
    res = _run(cuda, case)
    launch = res["launch"]
    assert launch["transport"] == "wavefront"
    assert set(WAVE_KEYS) | {"grid_dim", "block_dim", "chunk", "launches"} <= set(launch)
    assert all(isinstance(launch[k], int) and launch[k] >= 0 for k in WAVE_KEYS)
    assert launch["electron_steps"] > 0 and launch["photon_steps"] > 0
    assert launch["rounds"] > 0 and launch["launches"] > 0
    assert launch["decay_launches"] >= launch["launches"]
    assert launch["rounds"] >= launch["decay_launches"]
    assert launch["queue_capacity"] >= 16
    if launch["queue_capacity"] >= 64 * (HISTORIES // BATCHES):  # room for a whole batch many times over
        assert launch["deferred_decays"] == 0 and launch["held_particles"] == 0
    # a Lu-177 decay emits at least one electron (its beta), most of them transported
    assert launch["electron_steps"] >= HISTORIES
    local = _run(cuda, case, electron_transport=False)["launch"]
    assert local["electron_steps"] == 0 and local["photon_steps"] > 0
