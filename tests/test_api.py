"""The public API (DESIGN.md): Phantom, Source, simulate, SimulationResult, backends.

Transport tests run the real core and physics on a small water phantom (16^3 voxels of 2 mm,
2e4 Lu-177 decays, well under a second) and check conservation, the ICRP-107 emitted energy,
the energy -> dose conversion, region means and bit-reproducibility.
"""

import json
import math

import numpy as np
import pytest

import rptdose as rd
from rptdose.errors import BackendUnavailableError, InputError

try:
    import rptdose._core  # noqa: F401

    HAVE_CORE = True
except ImportError:
    HAVE_CORE = False
needs_core = pytest.mark.skipif(not HAVE_CORE, reason="the C++ core rptdose._core is not built "
                                "(pip install --no-build-isolation -e .)")

J_PER_MEV = 1.602176634e-13
# ICRP-107 Lu-177 energy per decay (MeV): electrons 147.92 keV + photons 35.10 keV
# (PHYSICS_NOTES.md, from the icrp107-database package).
LU177_ELECTRON_MEV = 0.14792
LU177_PHOTON_MEV = 0.03510
LU177_TOTAL_MEV = LU177_ELECTRON_MEV + LU177_PHOTON_MEV

SHAPE = (16, 16, 16)
SPACING_MM = (2.0, 2.0, 2.0)
HISTORIES = 20_000


@pytest.fixture(scope="module", autouse=True)
def table_cache(tmp_path_factory):
    """Keep the physics-table cache of these tests out of the user's cache folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RPTDOSE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


def hot_cube():
    """Decays (Bq*s) in the central 4^3 voxels (8 mm cube), 1e6 per voxel."""
    decays = np.zeros(SHAPE)
    decays[6:10, 6:10, 6:10] = 1e6
    return decays


@pytest.fixture(scope="module")
def phantom():
    return rd.Phantom.water(shape=SHAPE, spacing_mm=SPACING_MM)


@pytest.fixture(scope="module")
def source():
    return rd.Source("Lu-177", hot_cube())


@pytest.fixture(scope="module")
def regions():
    hot = hot_cube() > 0
    half = np.zeros(SHAPE, dtype=bool)
    half[:, :, 8:] = True  # overlaps "hot" and "all"
    return {"hot": hot, "all": np.ones(SHAPE, dtype=bool), "half": half}


@pytest.fixture(scope="module")
def run(phantom, source, regions):
    if not HAVE_CORE:
        pytest.skip("the C++ core rptdose._core is not built")
    return rd.simulate(phantom, source, histories=HISTORIES, seed=1, regions=regions, progress=False)


def emitted_energy_stats(emissions):
    """Mean and standard deviation (MeV) of the energy one decay emits, from the emission arrays:
    beta energy sampled by linear interpolation of the inverse CDF; a line of yield y emitted
    floor(y) times plus once with probability y - floor(y); the local part a constant."""
    b = emissions["beta_inv_cdf"]
    lo, hi = b[:-1], b[1:]
    beta_m1 = np.mean((lo + hi) / 2)
    beta_m2 = np.mean((lo * lo + lo * hi + hi * hi) / 3)
    y, e = emissions["line_yield"], emissions["line_energy_mev"]
    frac = y - np.floor(y)
    mean = emissions["beta_yield"] * beta_m1 + np.sum(y * e) + emissions["local_mev_per_decay"]
    var = emissions["beta_yield"] * (beta_m2 - beta_m1 ** 2) + np.sum(e * e * frac * (1 - frac))
    return float(mean), float(math.sqrt(var))


# ---- names and objects ---------------------------------------------------------------------

def test_public_names():
    for name in ("Phantom", "Source", "simulate", "SimulationResult", "load_result", "backends", "errors",
                 "__version__"):
        assert hasattr(rd, name), name
    assert isinstance(rd.__version__, str) and rd.__version__
    assert issubclass(rd.errors.InputError, rd.errors.RptdoseError)


def test_phantom_water(phantom):
    assert phantom.shape == SHAPE
    assert phantom.spacing_mm == SPACING_MM and phantom.origin_mm == (0.0, 0.0, 0.0)
    assert phantom.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert phantom.density.dtype == np.float32 and np.all(phantom.density == 1.0)
    assert phantom.material_index.dtype == np.int32 and np.all(phantom.material_index == 0)
    assert [m.name for m in phantom.materials] == ["water"]
    # 2 mm voxel = 8 mm3 = 0.008 cm3 of water = 8 mg
    np.testing.assert_allclose(phantom.voxel_mass_kg, 8e-6, rtol=1e-6)
    assert phantom.voxel_mass_kg.dtype == np.float64
    with pytest.raises(ValueError):
        phantom.density[0, 0, 0] = 2.0  # read-only


def test_phantom_from_arrays_copies_and_resolves():
    from rptdose.physics.materials import get_material

    density = np.full((2, 3, 4), 1.05)
    density[0] = 0.3
    index = np.ones((2, 3, 4), dtype=np.int64)
    index[0] = 0
    ph = rd.Phantom.from_arrays(density, index, ["lung", get_material("soft_tissue")], (1.0, 2.0, 3.0),
                                origin_mm=(-10.0, 5.0, 2.5))
    density[:] = 7.0  # the phantom holds its own copy
    assert ph.shape == (2, 3, 4)
    assert ph.density.dtype == np.float32 and ph.density[0, 0, 0] == np.float32(0.3)
    assert ph.material_index.dtype == np.int32
    assert [m.name for m in ph.materials] == [get_material("lung").name, get_material("soft_tissue").name]
    np.testing.assert_allclose(ph.voxel_mass_kg[1], 1.05 * 6.0 * 1e-6)
    img = ph.to_sitk(ph.density)
    assert img.GetSize() == (4, 3, 2)  # SimpleITK sizes are (x, y, z)
    assert img.GetSpacing() == (1.0, 2.0, 3.0) and img.GetOrigin() == (-10.0, 5.0, 2.5)


def test_source_properties():
    decays = hot_cube()
    src = rd.Source("lu177", decays)
    decays[:] = 0.0  # the source holds its own copy
    assert src.nuclide == "Lu-177"
    assert src.total_decays == pytest.approx(64e6, rel=1e-15)
    assert src.half_life_s == pytest.approx(6.647 * 86400, rel=1e-3)
    em = src.emission_arrays()
    assert {"beta_yield", "beta_inv_cdf", "line_energy_mev", "line_yield", "line_is_photon",
            "local_mev_per_decay", "el_cut_mev", "ph_cut_mev"} <= set(em)
    mono = rd.Source.monoenergetic("photon", 0.20837, decays=hot_cube())
    em = mono.emission_arrays()
    assert em["line_energy_mev"].tolist() == [0.20837] and em["line_is_photon"].tolist() == [1]
    assert mono.half_life_s is None and "photon" in mono.nuclide


def test_backends_listing():
    info = rd.backends()
    assert list(info) == ["cuda", "cupy", "cpu"]
    for name, entry in info.items():
        assert isinstance(entry["available"], bool), name
        assert isinstance(entry["reason"], str) and entry["reason"], name
    assert info["cpu"]["available"] == HAVE_CORE


def test_unavailable_backend_is_refused_not_replaced(phantom, source):
    for name, entry in rd.backends().items():
        if not entry["available"]:
            with pytest.raises(BackendUnavailableError, match=name):
                rd.simulate(phantom, source, histories=100, backend=name)


# ---- transport -----------------------------------------------------------------------------

@needs_core
def test_energy_balance_is_exact(run):
    eb = run.energy_balance
    assert set(eb) == {"emitted_mev", "deposited_mev", "escaped_mev"}
    assert abs(eb["emitted_mev"] - eb["deposited_mev"] - eb["escaped_mev"]) <= 1e-9 * eb["emitted_mev"]


@needs_core
def test_emitted_energy_matches_icrp107(run, source):
    """Emitted energy per decay = ICRP-107 total for Lu-177 (183.02 keV), within 4 standard errors
    of this run (sigma from the emission data: beta spectrum and line-count variances) plus 0.2 %
    for the tabulation of the spectrum."""
    mean, sd = emitted_energy_stats(source.emission_arrays())
    sem = sd / math.sqrt(run.histories)
    emitted = run.energy_balance["emitted_mev"]
    assert abs(mean - LU177_TOTAL_MEV) <= 0.002 * LU177_TOTAL_MEV
    assert abs(emitted - LU177_TOTAL_MEV) <= 4 * sem + 0.002 * LU177_TOTAL_MEV
    # electrons (range < 2 mm) stop inside the 32 mm cube; only photons escape
    assert run.energy_balance["escaped_mev"] < LU177_PHOTON_MEV + 4 * sem
    assert run.energy_balance["deposited_mev"] > LU177_ELECTRON_MEV - 4 * sem


@needs_core
def test_energy_to_dose(run, phantom, source):
    """sum(dose * mass) = deposited energy of all decays in J."""
    assert run.dose_gy.shape == SHAPE and run.dose_gy.dtype == np.float64
    total_j = float(np.sum(run.dose_gy * phantom.voxel_mass_kg))
    expected_j = run.energy_balance["deposited_mev"] * source.total_decays * J_PER_MEV
    assert total_j == pytest.approx(expected_j, rel=1e-12)
    hot = hot_cube() > 0
    assert run.dose_gy[hot].min() > 10 * run.dose_gy[~hot].mean()


@needs_core
def test_rel_uncertainty(run):
    u = run.rel_uncertainty
    # <= 1 (a voxel hit in one batch of equal batches has exactly 1), to the float32 precision
    # of the batch-mean spread the core keeps per voxel
    assert u.shape == SHAPE and np.all(u >= 0) and np.all(u <= 1.0 + 1e-6)
    assert np.all(u[run.dose_gy == 0] == 1.0)
    hot = hot_cube() > 0
    assert np.median(u[hot]) < 0.15  # about 300 decays per voxel: ~6 %


@needs_core
def test_region_means(run, phantom, regions):
    means = run.region_means
    assert list(means) == ["hot", "all", "half"]
    for name, mask in regions.items():
        m = means[name]
        mass = float(phantom.voxel_mass_kg[mask].sum())
        energy_j = float(np.sum(run.dose_gy[mask] * phantom.voxel_mass_kg[mask]))
        assert m["mass_kg"] == pytest.approx(mass, rel=1e-12)
        assert m["voxels"] == int(mask.sum())
        assert m["mean_dose_gy"] == pytest.approx(energy_j / mass, rel=1e-9), name
        assert 0 < m["rel_uncertainty"] < 0.05, name


@needs_core
def test_region_label_map_equals_masks(phantom, source, run):
    labels = np.zeros(SHAPE, dtype=np.int16)
    labels[hot_cube() > 0] = 3
    kw = dict(histories=HISTORIES, seed=1, progress=False)
    by_label = rd.simulate(phantom, source, regions=labels, **kw).region_means
    by_mask = rd.simulate(phantom, source, regions={"hot": labels == 3}, **kw).region_means
    assert list(by_label) == ["3"]
    assert by_label["3"] == by_mask["hot"]
    # the overlapping masks of `run` are split into disjoint parts and summed back
    for key in ("mean_dose_gy", "mass_kg", "rel_uncertainty"):
        assert by_mask["hot"][key] == pytest.approx(run.region_means["hot"][key], rel=1e-12), key


@needs_core
def test_same_seed_is_bit_identical_whatever_the_threads(phantom, source):
    kw = dict(histories=HISTORIES, seed=12345, progress=False, regions={"hot": hot_cube() > 0})
    one = rd.simulate(phantom, source, threads=1, **kw)
    two = rd.simulate(phantom, source, threads=2, **kw)
    again = rd.simulate(phantom, source, threads=2, **kw)
    assert one.dose_gy.tobytes() == two.dose_gy.tobytes() == again.dose_gy.tobytes()
    assert one.rel_uncertainty.tobytes() == two.rel_uncertainty.tobytes()
    assert one.energy_balance == two.energy_balance
    assert one.region_means["hot"] == two.region_means["hot"]  # incl. the batch uncertainty
    other = rd.simulate(phantom, source, seed=12346, histories=HISTORIES, threads=2, progress=False)
    assert not np.array_equal(one.dose_gy, other.dose_gy)


@needs_core
def test_monoenergetic_photon_emits_its_energy(phantom):
    src = rd.Source.monoenergetic("photon", 0.20837, hot_cube())
    res = rd.simulate(phantom, src, histories=5000, seed=3, progress=False)
    assert res.energy_balance["emitted_mev"] == pytest.approx(0.20837, rel=1e-9)
    eb = res.energy_balance
    assert abs(eb["emitted_mev"] - eb["deposited_mev"] - eb["escaped_mev"]) <= 1e-9 * eb["emitted_mev"]


@needs_core
def test_local_electron_deposition_switch(phantom):
    """electron_transport=False: a 0.5 MeV electron source in one voxel deposits only there."""
    decays = np.zeros(SHAPE)
    decays[8, 8, 8] = 1.0
    src = rd.Source.monoenergetic("electron", 0.5, decays)
    local = rd.simulate(phantom, src, histories=1000, electron_transport=False, progress=False)
    assert np.count_nonzero(local.dose_gy) == 1 and local.dose_gy[8, 8, 8] > 0
    assert local.energy_balance["deposited_mev"] == pytest.approx(0.5, rel=1e-9)
    transported = rd.simulate(phantom, src, histories=1000, electron_transport=True, progress=False)
    assert np.count_nonzero(transported.dose_gy) > 1  # range 1.8 mm: neighbours get some


@needs_core
def test_decay_sites_follow_the_source_map(phantom, source_layout):
    """The source draw (alias table over voxels, or over blocks of voxels then the voxel in the
    block) gives each voxel in proportion to its decays: with local electron
    deposition a monoenergetic electron source puts E0 where each decay happened, so the
    per-voxel counts must follow the map (chi-square, p > 1e-3) and no voxel without decays
    may receive energy."""
    decays = np.zeros(SHAPE)
    weights = {(2, 3, 4): 1.0, (8, 8, 8): 2.5, (8, 8, 9): 0.25, (15, 0, 15): 6.0, (0, 15, 7): 0.01}
    for k, w in weights.items():
        decays[k] = w
    src = rd.Source.monoenergetic("electron", 0.1, decays)
    n = 200_000
    res = rd.simulate(phantom, src, histories=n, seed=11, electron_transport=False, progress=False)
    e_mev = res.dose_gy * np.asarray(phantom.voxel_mass_kg) / (src.total_decays / n * 1.602176634e-13)
    assert np.all(e_mev[decays == 0] == 0)
    counts = np.array([e_mev[k] / 0.1 for k in weights])
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)  # whole decays
    expected = n * np.array(list(weights.values())) / sum(weights.values())
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert chi2 < 18.47, (counts, expected)  # chi-square 4 d.o.f., p = 1e-3


@needs_core
def test_decay_sites_follow_a_map_that_fills_the_grid(phantom, source_layout):
    """The same with decays in 90 % of the voxels (the alias table's dense layout, one column
    per voxel or block): per-voxel counts against the map, chi-square over all voxels with decays
    (normal approximation, z < 3.1, p ~ 1e-3); empty voxels receive nothing."""
    rng = np.random.default_rng(4)
    decays = rng.random(SHAPE) ** 2
    decays[rng.random(SHAPE) < 0.1] = 0.0
    src = rd.Source.monoenergetic("electron", 0.1, decays)
    n = 400_000
    res = rd.simulate(phantom, src, histories=n, seed=12, electron_transport=False, progress=False)
    counts = res.dose_gy * np.asarray(phantom.voxel_mass_kg) / (src.total_decays / n * 1.602176634e-13) / 0.1
    assert np.all(counts[decays == 0] == 0)
    m = decays > 0
    expected = n * decays[m] / decays.sum()
    chi2 = float(np.sum((counts[m] - expected) ** 2 / expected))
    dof = int(m.sum()) - 1
    assert abs(chi2 - dof) / np.sqrt(2 * dof) < 3.1, (chi2, dof)


@needs_core
def test_progress_callable_and_abort(phantom, source):
    seen = []
    rd.simulate(phantom, source, histories=HISTORIES, progress=seen.append)
    assert seen and seen[-1] == HISTORIES and seen == sorted(seen)

    def stop(done):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rd.simulate(phantom, source, histories=HISTORIES, progress=stop)


@needs_core
def test_result_metadata_and_provenance(run):
    assert run.backend == "cpu" or rd.backends()[run.backend]["available"]
    assert (run.histories, run.seed, run.batches) == (HISTORIES, 1, 10)
    assert run.elapsed_s > 0
    assert run.spacing_mm == SPACING_MM and run.geometry["shape"] == SHAPE
    prov = run.provenance
    for key in ("rptdose_version", "backend", "seed", "histories", "batches", "electron_transport",
                "threads_used", "nuclide", "physics_data", "versions", "platform", "timestamp_utc",
                "inputs_sha256"):
        assert key in prov, key
    assert prov["nuclide"]["name"] == "Lu-177" and prov["seed"] == 1
    assert prov["physics_data"]["table_version"]
    assert prov["timestamp_utc"].endswith("+00:00")
    json.dumps(prov)  # plain JSON types only
    img = run.to_sitk("dose_gy")
    assert img.GetSize() == SHAPE[::-1] and img.GetSpacing() == SPACING_MM


def test_bad_backend_name_is_input_error(phantom, source):
    with pytest.raises(InputError, match="backend"):
        rd.simulate(phantom, source, histories=100, backend="gpu")


# ---- CLI -----------------------------------------------------------------------------------

@needs_core
def test_cli_example(tmp_path, capsys):
    from rptdose.cli import main

    out = tmp_path / "new" / "folder"
    assert main(["example", "-o", str(out), "--histories", "20000", "--threads", "2"]) == 0
    text = capsys.readouterr().out
    assert "emitted" in text and "deposited" in text and "escaped" in text
    assert "mean dose in sphere" in text and "Gy" in text
    res = rd.load_result(out / "example_lu177.h5")
    assert res.histories == 20000 and res.region_means["sphere"]["mean_dose_gy"] > 0


def test_cli_info(capsys):
    from rptdose.cli import main

    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert rd.__version__ in text
    for name in ("cuda", "cupy", "cpu", "icrp107-database", "xraylib"):
        assert name in text
