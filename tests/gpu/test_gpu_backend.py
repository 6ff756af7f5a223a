"""GPU backends (cuda, cupy) against the CPU backend, on a real GPU (skipped without one).

- agreement: per-voxel energies of GPU and CPU runs (different random streams in effect: the
  device's libm differs in the last bits, so histories diverge) agree within their batch
  uncertainties: chi-square over the voxels with < 5 % uncertainty in both;
- energy balance: emitted == deposited + escaped exactly, in integer units;
- determinism: the same seed gives the same bits, whatever the launch shape (histories draw
  from (seed, history index); tallies are integers, so the order of GPU atomics is irrelevant).
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
        assert rb[:, r].sum() == pytest.approx(g["edep_mev"][case["regions"] == r].sum(), rel=1e-12)
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
