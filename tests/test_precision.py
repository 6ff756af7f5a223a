"""The precision switch: ``rd.simulate(..., precision="single" | "double" | "auto")``.

Both precisions run the same transport source (csrc/physics, templates over the floating type)
with 64-bit integer tallies, so each is bit-reproducible for a seed, keeps the energy balance
exact, and gives the same bits on every backend that runs its kernel bodies on the CPU (the
CUDA emulation, the cupy host code); single and double agree within statistics (their
histories diverge after the first rounding difference, so they are not bit-equal).
"""
import numpy as np
import pytest

import rptdose as rd
from rptdose import _core
from rptdose.errors import InputError
from rptdose.physics.nuclides import load_nuclide
from rptdose.physics.tables import transport_tables
from rptdose.source import mean_mev_per_decay
from rptdose.transport import cupy_backend
from rptdose.transport.request import RunRequest
from rptdose.transport.gpu_runners import precision_for_compute_capability

SEED = 11


def _water(n=21, spacing=1.0):
    return rd.Phantom.water(shape=(n, n, n), spacing_mm=(spacing,) * 3)


def _point_source(ph):
    dec = np.zeros(ph.shape)
    c = ph.shape[0] // 2
    dec[c, c, c] = 1.0
    return rd.Source("Lu-177", dec)


def _radius_mm(ph):
    n = ph.shape[0]
    z, y, x = np.meshgrid(*(np.arange(n) - n // 2 for _ in range(3)), indexing="ij")
    return np.sqrt(x * x + y * y + z * z) * ph.spacing_mm[0]


@pytest.mark.parametrize("bad", ["half", "Double", "", None, 32, "float"])
def test_invalid_precision_is_an_input_error(bad):
    ph = _water(5)
    with pytest.raises(InputError, match="precision"):
        rd.simulate(ph, _point_source(ph), histories=100, progress=False, precision=bad)


def test_core_rejects_an_unknown_precision():
    ph = _water(3)
    src = _point_source(ph)
    with pytest.raises(ValueError, match="precision"):
        _core.simulate_cpu(RunRequest(density=ph.density, material=ph.material_index, spacing_mm=ph.spacing_mm,
                                      decays=src.decays, tables=transport_tables(ph.materials),
                                      emissions=src.emission_arrays(), histories=100, threads=1, precision="half"))


@pytest.mark.parametrize("precision", ["single", "double"])
def test_each_precision_is_reproducible_with_an_exact_energy_balance(precision):
    ph = _water(9, 2.0)
    src = _point_source(ph)
    runs = [rd.simulate(ph, src, histories=4000, seed=SEED, backend="cpu", threads=t, progress=False,
                        precision=precision) for t in (1, 2)]
    a, b = runs
    assert a.provenance["precision"] == precision
    assert a.provenance["precision_requested"] == precision
    assert np.array_equal(a.dose_gy, b.dose_gy)  # same bits for any thread count
    assert np.array_equal(a.rel_uncertainty, b.rel_uncertainty)
    # the core's integer units: emitted == deposited + escaped exactly
    out = _core.simulate_cpu(RunRequest(density=ph.density, material=ph.material_index, spacing_mm=ph.spacing_mm,
                                        decays=src.decays, tables=transport_tables(ph.materials),
                                        emissions=src.emission_arrays(), histories=4000, seed=SEED, threads=2,
                                        precision=precision))
    assert out["precision"] == precision
    assert out["emitted_units"] == out["deposited_units"] + out["escaped_units"]
    assert out["escaped_units"] > 0


def test_auto_is_double_on_the_cpu():
    ph = _water(5)
    res = rd.simulate(ph, _point_source(ph), histories=200, backend="cpu", progress=False)
    assert res.provenance["precision"] == "double"
    assert res.provenance["precision_requested"] == "auto"
    ref = rd.simulate(ph, _point_source(ph), histories=200, backend="cpu", progress=False, precision="double")
    assert np.array_equal(res.dose_gy, ref.dose_gy)


def test_single_differs_from_double_in_the_bits():
    ph = _water(9, 2.0)
    src = _point_source(ph)
    s, d = (rd.simulate(ph, src, histories=2000, seed=SEED, backend="cpu", progress=False, precision=p)
            for p in ("single", "double"))
    assert not np.array_equal(s.dose_gy, d.dose_gy)  # the float path really ran


def _z_scores(a, b):
    """(a - b) / combined 1-sigma of each region of two results' region means."""
    z = []
    for name in a.region_means:
        ra, rb = a.region_means[name], b.region_means[name]
        da, db = ra["mean_dose_gy"], rb["mean_dose_gy"]
        sigma = np.hypot(da * ra["rel_uncertainty"], db * rb["rel_uncertainty"])
        z.append((da - db) / sigma)
    return np.array(z)


@pytest.mark.parametrize("geometry", ["point", "uniform_sphere"])
def test_single_and_double_agree_within_statistics(geometry):
    """Lu-177 in water: the mean dose of kernel shells around a point source, or of a uniformly
    active sphere and the shells around it, in single and in double precision, with different
    seeds (independent runs, so the z-scores of the regions' differences with the reported
    uncertainties are standard normal: with one seed the two precisions share their first
    random numbers and would agree far better than their uncertainties say). The chi-square
    of the z-scores stays below its 99.9 % quantile and no region is 4 sigma off."""
    chi2 = pytest.importorskip("scipy.stats").chi2
    ph = _water(21, 1.0)
    r = _radius_mm(ph)
    if geometry == "point":
        src = _point_source(ph)
        edges = [0.0, 0.5, 1.5, 2.5, 3.5, 4.5, 6.0]
    else:
        src = rd.Source("Lu-177", (r <= 4.0).astype(float))
        edges = [0.0, 2.0, 4.0, 5.0, 6.0, 8.0, 10.0]
    regions = {f"r{lo:g}-{hi:g}": (r >= lo) & (r < hi) for lo, hi in zip(edges[:-1], edges[1:])}
    runs = {p: rd.simulate(ph, src, histories=60000, seed=SEED + k, backend="cpu", batches=20, progress=False,
                           regions=regions, precision=p) for k, p in enumerate(("single", "double"))}
    z = _z_scores(runs["single"], runs["double"])
    assert np.all(np.isfinite(z))
    assert np.sum(z * z) < chi2.ppf(0.999, len(z)), z
    assert np.max(np.abs(z)) < 4.0, z
    # energy emitted per decay: the nuclide's mean in both (the seed-to-seed spread of 60000
    # Lu-177 decays is ~0.4 %)
    expected = mean_mev_per_decay(src.emission_arrays())
    for res in runs.values():
        assert res.energy_balance["emitted_mev"] == pytest.approx(expected, rel=0.02)


@pytest.fixture(scope="module")
def small_case():
    n = 8
    density = np.ones((n, n, n), np.float32)
    material = np.zeros((n, n, n), np.int32)
    material[:, :, n // 2:] = 1
    density[:, :, n // 2:] = 1.92
    decays = np.zeros((n, n, n))
    decays[3:5, 3:5, 3:5] = 1.0
    decays[0, 0, 0] = 2.0
    return dict(density=density, material=material, spacing_mm=(2.0, 2.0, 2.0), decays=decays,
                tables=transport_tables(["water", "cortical_bone"]),
                emissions=load_nuclide("Lu-177").emission_arrays())


def _request(c, **kw):
    return RunRequest(**c, histories=1503, seed=SEED, batches=10, threads=2, **kw)


def test_single_precision_gpu_paths_equal_the_cpu_bit_for_bit(small_case):
    """The CUDA batch loop and kernel bodies (emulated) and the cupy host code (Params image
    of ParamsT<float>, rpt_histories_kernel_f32 emulated) give simulate_cpu's single-precision
    result bit for bit; the double path likewise stays equal."""
    for precision in ("single", "double"):
        ref = _core.simulate_cpu(_request(small_case, precision=precision))
        emu = _core.simulate_emulated(_request(small_case, grid_dim=3, block_dim=32, precision=precision))
        cup = cupy_backend.simulate_cupy_emulated(_request(small_case, grid_dim=2, block_dim=16, precision=precision))
        for got in (emu, cup):
            assert got["precision"] == precision
            assert np.array_equal(ref["edep_mev"], got["edep_mev"])
            assert np.array_equal(ref["rel_uncertainty"], got["rel_uncertainty"])
            assert got["emitted_units"] == ref["emitted_units"]
            assert got["escaped_units"] == ref["escaped_units"]


def test_prepare_run_single_precision_image(small_case):
    c = small_case
    d = _core.prepare_run(_request(c))
    s = _core.prepare_run(_request(c, precision="single"))
    assert (d["precision"], d["kernel"]) == ("double", "rpt_histories_kernel")
    assert (s["precision"], s["kernel"]) == ("single", "rpt_histories_kernel_f32")
    assert d["params_size"] == d["params_sizes"]["double"] and s["params_size"] == s["params_sizes"]["single"]
    assert s["params_size"] < d["params_size"]
    assert len(s["params_bytes"]) == s["params_size"]
    # tables in float32, the shared source and phantom arrays as in double
    assert s["arrays"]["mu_photo"].dtype == np.float32 and d["arrays"]["mu_photo"].dtype == np.float64
    np.testing.assert_array_equal(s["arrays"]["mu_photo"], d["arrays"]["mu_photo"].astype(np.float32))
    assert s["arrays"]["majorant"].dtype == np.float32
    assert np.all(s["arrays"]["majorant"].astype(np.float64) >= d["arrays"]["majorant"])
    for name in ("alias", "beta_inv_cdf", "line_e", "frac_hcum", "density", "material"):
        assert s["arrays"][name].dtype == d["arrays"][name].dtype
        np.testing.assert_array_equal(s["arrays"][name], d["arrays"][name])


def test_single_precision_uniforms_are_in_the_open_interval():
    u = _core._uniforms_single(3, 5, 200000)
    assert u.dtype == np.float32
    assert u.min() > 0.0 and u.max() < 1.0 and np.all(1.0 - u > 0.0)
    assert abs(float(u.mean()) - 0.5) < 0.005
    # the same 32-bit words as double's uniforms: the top 24 bits of each
    ud = _core._uniforms(3, 5, 2000)
    np.testing.assert_allclose(u[:2000], ud, atol=2.0 ** -23)


def test_single_precision_sincos_accuracy():
    u = np.concatenate([np.linspace(0.0, 1.0, 100001), np.random.default_rng(1).random(100000)]).astype(np.float32)
    c, s = _core._sincos_2pi_single(u)
    x = 2.0 * np.pi * u.astype(np.float64)
    assert np.max(np.abs(c - np.cos(x))) < 3e-7
    assert np.max(np.abs(s - np.sin(x))) < 3e-7


@pytest.mark.parametrize("cc, expected", [((6, 0), "double"), ((7, 0), "double"), ((8, 0), "double"),
                                          ((9, 0), "double"), ((6, 1), "single"), ((7, 5), "single"),
                                          ((8, 6), "single"), ((8, 9), "single"), ((12, 0), "single")])
def test_auto_precision_rule_of_the_gpu(cc, expected):
    precision, why = precision_for_compute_capability(*cc)
    assert precision == expected
    assert f"{cc[0]}.{cc[1]}" in why


def test_study_file_key_and_command_line(tmp_path, capsys):
    """[dose] precision in the study file and `rptdose run --precision`: checked, passed to the
    transport, recorded in dose.h5's provenance."""
    import json

    import h5py

    from rptdose.cli import main
    from rptdose.demo import DemoPatient, write_demo_study

    study = write_demo_study(tmp_path / "p", DemoPatient(voxel_mm=16.0), histories=2000, calibration="sensitivity",
                             recovery=False)
    text = study.read_text()
    study.write_text(text.replace("[dose]\n", '[dose]\nprecision = "half"\n'))
    assert main(["run", str(study), "-o", str(tmp_path / "bad"), "--no-plots"]) == 2
    assert "dose.precision" in capsys.readouterr().err
    study.write_text(text.replace("[dose]\n", '[dose]\nprecision = "single"\n'))
    for args, expected in (([], "single"), (["--precision", "double"], "double")):
        out = tmp_path / f"o-{expected}"
        assert main(["run", str(study), "-o", str(out), "--no-plots", *args]) == 0
        with h5py.File(out / "dose.h5", "r") as f:
            prov = json.loads(f.attrs["provenance"])["dose"]["provenance"]
        assert prov["precision"] == expected
