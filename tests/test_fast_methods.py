"""Fast dose methods (issue 6): local deposition, voxel S-value convolution, sphere model.

Physics checks against a hand calculation (LDM), against direct Monte Carlo in homogeneous water
(VSV: per-voxel z-scores / chi-square over voxels with enough dose) and against direct
transport in spheres (sphere model). Small grids and 5e4..2e5 histories keep them fast.
"""

import math

import h5py
import numpy as np
import pytest
import rptdose as rd
from rptdose.errors import InputError
from rptdose.fast import METHODS, DoseResult, load_kernel
from rptdose.fast.kernels import VoxelSKernel, symmetrize, voxel_s_kernel
from rptdose.fast.sphere import _sphere_phantom, sphere_absorbed_fractions
from rptdose.fast.vsv import fft_convolve
from rptdose.physics.nuclides import load_nuclide

try:
    import rptdose._core  # noqa: F401

    HAVE_CORE = True
except ImportError:
    HAVE_CORE = False
needs_core = pytest.mark.skipif(not HAVE_CORE, reason="the C++ core rptdose._core is not built")

J_PER_MEV = 1.602176634e-13
LU177 = load_nuclide("Lu-177")


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """Kernels, sphere tables and physics tables of these tests go to a temporary cache."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RPTDOSE_CACHE_DIR", str(path))
        yield path


# ---- local deposition ----------------------------------------------------------------------
def test_ldm_hand_calculation():
    """D = N * E_electrons / m per voxel, with the voxel mass from the density."""
    shape, spacing = (4, 5, 6), (2.0, 3.0, 4.0)
    density = np.full(shape, 1.0)
    density[1] = 0.26                                  # a lung slice: same energy, 1/0.26 the mass
    ph = rd.Phantom.from_arrays(density, np.zeros(shape, dtype=np.int32), ["water"], spacing)
    decays = np.zeros(shape)
    decays[:, 2, 3] = 1e9
    decays[0, 0, 0] = 5e8
    res = rd.local_deposition(ph, rd.Source("Lu-177", decays), regions={"col": decays > 0})
    e_el = LU177.beta_mev_per_decay + LU177.ie_mev_per_decay + LU177.auger_mev_per_decay
    assert e_el == pytest.approx(0.14792, rel=1e-3)           # ICRP-107 Lu-177 electrons, 147.9 keV
    mass = ph.density.astype(np.float64) * (2 * 3 * 4) * 1e-6   # kg (the phantom keeps float32 densities)
    np.testing.assert_allclose(res.dose_gy, decays * e_el * J_PER_MEV / mass, rtol=1e-12)
    assert res.dose_gy[1, 2, 3] == pytest.approx(res.dose_gy[0, 2, 3] / 0.26, rel=1e-6)
    assert res.rel_uncertainty is None and res.method == "ldm"
    # region mean = energy / mass
    m = decays > 0
    expect = np.sum(decays[m]) * e_el * J_PER_MEV / np.sum(mass[m])
    assert res.region_means["col"]["mean_dose_gy"] == pytest.approx(expect, rel=1e-12)
    # photons deposited locally add the gamma + X energy
    loc = rd.local_deposition(ph, rd.Source("Lu-177", decays), photons="local")
    ratio = (e_el + LU177.photon_mev_per_decay) / e_el
    np.testing.assert_allclose(loc.dose_gy[m], res.dose_gy[m] * ratio, rtol=1e-12)
    assert res.provenance["settings"]["photons"] == "ignore"


def test_ldm_monoenergetic_and_bad_input():
    ph = rd.Phantom.water((3, 3, 3), (2.0, 2.0, 2.0))
    d = np.zeros((3, 3, 3))
    d[1, 1, 1] = 1e6
    e = rd.local_deposition(ph, rd.Source.monoenergetic("electron", 0.5, d))
    assert e.dose_gy[1, 1, 1] == pytest.approx(1e6 * 0.5 * J_PER_MEV / 8e-6, rel=1e-6)
    p = rd.local_deposition(ph, rd.Source.monoenergetic("photon", 0.5, d))
    assert p.dose_gy.max() == 0.0
    assert rd.local_deposition(ph, rd.Source.monoenergetic("photon", 0.5, d), photons="local").dose_gy.max() > 0
    with pytest.raises(InputError, match="photons"):
        rd.local_deposition(ph, rd.Source("Lu-177", d), photons="kerma")
    with pytest.raises(InputError, match="shape"):
        rd.local_deposition(rd.Phantom.water((3, 3, 4), (2.0, 2.0, 2.0)), rd.Source("Lu-177", d))
    with pytest.raises(InputError, match="phantom"):
        rd.local_deposition("water", rd.Source("Lu-177", d))


@needs_core
def test_ldm_brackets_monte_carlo_in_equilibrium():
    """Centre of a uniformly active water cube: electrons in equilibrium, so
    LDM(photons ignored) <= MC <= LDM(photons local)."""
    n = 11
    ph = rd.Phantom.water((n, n, n), (4.8, 4.8, 4.8))
    src = rd.Source("Lu-177", np.full((n, n, n), 1e6))
    core = np.zeros((n, n, n), bool)
    core[4:7, 4:7, 4:7] = True
    mc = rd.simulate(ph, src, histories=100_000, seed=2, threads=2, regions={"core": core}, progress=False)
    r = mc.region_means["core"]
    lo = rd.local_deposition(ph, src, regions={"core": core}).region_means["core"]["mean_dose_gy"]
    hi = rd.local_deposition(ph, src, photons="local", regions={"core": core}).region_means["core"]["mean_dose_gy"]
    tol = 3 * r["rel_uncertainty"] * r["mean_dose_gy"]
    assert lo - tol <= r["mean_dose_gy"] <= hi + tol
    assert r["mean_dose_gy"] / lo - 1 < 0.05     # the photon share absorbed in a 5 cm cube is small


# ---- convolution and kernels ---------------------------------------------------------------
def test_fft_convolve_matches_direct_sum():
    rng = np.random.default_rng(1)
    a = rng.random((5, 6, 7)) * (rng.random((5, 6, 7)) > 0.6)
    k = rng.random((3, 5, 3))
    out = fft_convolve(a, k)
    ref = np.zeros_like(a)
    c = np.array(k.shape) // 2
    for j in zip(*np.nonzero(a)):
        for d in np.ndindex(*k.shape):
            i = np.array(j) + np.array(d) - c
            if np.all(i >= 0) and np.all(i < a.shape):
                ref[tuple(i)] += a[j] * k[d]
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)


def _synthetic_kernel(voxel=(4.0, 4.0, 4.0), k=2):
    n = 2 * k + 1
    z, y, x = np.meshgrid(*(np.arange(n) - k,) * 3, indexing="ij")
    s = 1e-10 * np.exp(-(x * x + y * y + z * z))
    return VoxelSKernel(s_gy_per_decay=s, rel_uncertainty=np.full(s.shape, 0.01),
                        orbit_size=np.ones(s.shape, dtype=np.int32), voxel_mm=voxel, nuclide="Lu-177",
                        medium="water", density_g_cm3=1.0, cache_key="synthetic", provenance={"seed": 0})


def test_vsv_places_kernel_and_corrects_density():
    shape = (7, 7, 7)
    density = np.ones(shape)
    density[:, :, 5:] = 0.26
    ph = rd.Phantom.from_arrays(density, np.zeros(shape, dtype=np.int32), ["water"], (4.0, 4.0, 4.0))
    d = np.zeros(shape)
    d[3, 1, 4] = 2e6                                   # near an edge: the kernel is cut there
    kern = _synthetic_kernel()
    res = rd.vsv_dose(ph, rd.Source("Lu-177", d), kernel=kern, regions={"all": np.ones(shape, bool)})
    expect = np.zeros(shape)
    expect[1:6, 0:4, 2:7] = 2e6 * kern.s_gy_per_decay[:, 1:, :]
    expect[:, :, 5:] /= 0.26
    np.testing.assert_allclose(res.dose_gy, expect, rtol=1e-6, atol=1e-30)  # float32 densities
    off = rd.vsv_dose(ph, rd.Source("Lu-177", d), kernel=kern, density_correction=False)
    assert off.dose_gy[3, 1, 5] == pytest.approx(res.dose_gy[3, 1, 5] * 0.26, rel=1e-6)
    # one source voxel: the dose carries the kernel's 1 % uncertainty
    assert res.rel_uncertainty[3, 1, 4] == pytest.approx(0.01, rel=1e-6)
    assert res.region_means["all"]["rel_uncertainty"] > 0
    # checks: voxel size and nuclide of the kernel
    with pytest.raises(InputError, match="voxel"):
        rd.vsv_dose(rd.Phantom.water(shape, (4.8, 4.8, 4.8)), rd.Source("Lu-177", d), kernel=kern)
    with pytest.raises(InputError, match="nuclide"):
        rd.vsv_dose(ph, rd.Source("Y-90", d), kernel=kern)


def test_symmetrize_reduces_variance_without_bias():
    rng = np.random.default_rng(3)
    truth = np.fromfunction(lambda z, y, x: 1.0 / (1 + (z - 2) ** 2 + (y - 2) ** 2 + (x - 2) ** 2), (5, 5, 5))
    noisy = truth * (1 + 0.05 * rng.standard_normal(truth.shape))
    s, var, orbit = symmetrize(noisy, (0.05 * truth) ** 2, (2.0, 2.0, 2.0))
    assert orbit[2, 2, 2] == 1 and orbit[2, 2, 3] == 6 and orbit[3, 3, 3] == 8 and orbit[0, 1, 2] == 24
    np.testing.assert_allclose(s, s.transpose(2, 1, 0))
    np.testing.assert_allclose(s, s[::-1])
    np.testing.assert_allclose(var, (0.05 * truth) ** 2 / orbit)
    # anisotropic voxels: no permutation of x with z
    s2, _, orbit2 = symmetrize(noisy, np.zeros_like(noisy), (2.0, 2.0, 3.0))
    assert orbit2[2, 2, 3] == 4 and orbit2[3, 2, 2] == 2


@needs_core
def test_kernel_cache_provenance_and_anisotropic_voxels(cache):
    kw = dict(half_width=3, histories=50_000, seed=5, margin_mm=15.0, threads=2)
    k1 = voxel_s_kernel("Lu-177", 4.8, **kw)
    assert k1.s_gy_per_decay.shape == (7, 7, 7)
    assert k1.path is not None and k1.path.is_file() and str(cache) in str(k1.path)
    prov = k1.provenance
    for key in ("nuclide", "voxel_mm", "histories", "seed", "rptdose_version", "statistical_uncertainty"):
        assert key in prov
    assert prov["nuclide"] == "Lu-177" and prov["histories"] == 50_000
    # the centre voxel keeps most of the electron energy of a 4.8 mm voxel
    mass = 4.8**3 * 1e-6
    frac = k1.s_gy_per_decay[3, 3, 3] * mass / (LU177.electron_mev_per_decay * J_PER_MEV)
    assert 0.85 < frac < 1.05
    np.testing.assert_allclose(k1.s_gy_per_decay, k1.s_gy_per_decay.transpose(2, 0, 1), rtol=1e-12)
    # second call: from the cache, identical
    k2 = voxel_s_kernel("Lu-177", 4.8, **kw)
    np.testing.assert_array_equal(k1.s_gy_per_decay, k2.s_gy_per_decay)
    assert load_kernel(k1.path).cache_key == k1.cache_key
    # a damaged cache file is recomputed
    k1.path.write_bytes(b"not hdf5")
    k3 = voxel_s_kernel("Lu-177", 4.8, **kw)
    np.testing.assert_array_equal(k1.s_gy_per_decay, k3.s_gy_per_decay)
    with h5py.File(k3.path, "r") as f:
        assert f.attrs["kind"] == "rptdose.VoxelSKernel"
    # anisotropic voxels and half-widths
    ka = voxel_s_kernel("Lu-177", (4.8, 4.8, 2.4), half_width=(2, 2, 3), histories=20_000, margin_mm=10.0,
                        threads=2)
    assert ka.s_gy_per_decay.shape == (7, 5, 5) and ka.voxel_mm == (4.8, 4.8, 2.4)
    assert ka.s_gy_per_decay[3, 2, 2] > ka.s_gy_per_decay[3, 2, 3] > 0
    with pytest.raises(InputError, match="voxel"):
        voxel_s_kernel("Lu-177", (4.8, 4.8), histories=100)


@needs_core
def test_vsv_agrees_with_direct_monte_carlo_in_water():
    """Homogeneous water, an irregular Lu-177 source: VSV (kernel by MC, k = 4) against direct MC.
    Over voxels with MC uncertainty < 10 % (the source and its neighbours) the per-voxel z-scores
    are N(0, 1)-like: chi-square / n < 2 (10-20 batch variance estimates inflate it to ~1.1-1.3)."""
    n = 15
    ph = rd.Phantom.water((n, n, n), (4.8, 4.8, 4.8))
    d = np.zeros((n, n, n))
    d[6:9, 7, 6:8] = 1e6
    d[7, 8, 7] = 3e6
    src = rd.Source("Lu-177", d)
    hot = {"hot": d > 0}
    vsv = rd.vsv_dose(ph, src, half_width=4, histories=200_000, seed=11, margin_mm=30.0, threads=2, regions=hot)
    mc = rd.simulate(ph, src, histories=200_000, seed=3, threads=2, batches=20, regions=hot, progress=False)
    sel = (mc.rel_uncertainty < 0.10) & (vsv.dose_gy > 0)
    assert sel.sum() >= 15
    sigma = np.hypot(mc.dose_gy * mc.rel_uncertainty, vsv.dose_gy * vsv.rel_uncertainty)
    z = (vsv.dose_gy - mc.dose_gy)[sel] / sigma[sel]
    assert np.mean(z**2) < 2.0, z
    assert np.max(np.abs(z)) < 4.5
    a, b = mc.region_means["hot"], vsv.region_means["hot"]
    s = math.hypot(a["rel_uncertainty"] * a["mean_dose_gy"], b["rel_uncertainty"] * b["mean_dose_gy"])
    assert abs(b["mean_dose_gy"] - a["mean_dose_gy"]) < 3.5 * s
    assert vsv.provenance["kernel"]["histories"] == 200_000


# ---- sphere model --------------------------------------------------------------------------
@needs_core
def test_sphere_model_against_direct_transport():
    """Absorbed fractions tabulated at 5, 20, 80 g (16 voxels across); direct MC in spheres of
    10 g and 40 g voxelised differently (22 voxels across): mean doses within 1 %."""
    table = sphere_absorbed_fractions("Lu-177", masses_g=(5, 20, 80), voxels_across=16, histories=50_000,
                                      threads=2)
    assert np.all(np.diff(table.masses_kg) > 0)
    assert np.all(table.phi["electrons"] > 0.95) and np.all(np.diff(table.phi["photons"]) > 0)
    again = sphere_absorbed_fractions("Lu-177", masses_g=(5, 20, 80), voxels_across=16, histories=50_000)
    assert again.path == table.path and again.cache_key == table.cache_key
    for mass_g, seed in ((10.0, 7), (40.0, 8)):
        ph, inside, _ = _sphere_phantom(mass_g, "soft_tissue", 1.0, 22)
        src = rd.Source("Lu-177", np.where(inside, 1e6, 0.0))
        mc = rd.simulate(ph, src, histories=100_000, seed=seed, threads=2, regions={"s": inside}, progress=False)
        sd = rd.sphere_dose(ph, src, regions={"s": inside}, table=table)
        a, b = mc.region_means["s"], sd.region_means["s"]
        assert b["mass_kg"] == pytest.approx(a["mass_kg"], rel=1e-9)
        assert not b["extrapolated"]
        assert b["mean_dose_gy"] == pytest.approx(a["mean_dose_gy"], rel=0.01)
    # outside the table: held at the end value and flagged
    ph, inside, _ = _sphere_phantom(200.0, "soft_tissue", 1.0, 8)
    sd = rd.sphere_dose(ph, rd.Source("Lu-177", np.where(inside, 1.0, 0.0)), regions={"s": inside}, table=table)
    assert sd.region_means["s"]["extrapolated"]
    with pytest.raises(InputError, match="regions"):
        rd.sphere_dose(ph, rd.Source("Lu-177", np.where(inside, 1.0, 0.0)), regions=None, table=table)
    # nested regions (an organ inside the whole field of view): the map keeps each organ's value
    whole = np.ones(ph.shape, dtype=bool)
    sd = rd.sphere_dose(ph, rd.Source("Lu-177", np.where(inside, 1.0, 0.0)),
                        regions={"field_of_view": whole, "s": inside}, table=table)
    np.testing.assert_array_equal(sd.dose_gy[inside], sd.region_means["s"]["mean_dose_gy"])
    np.testing.assert_array_equal(sd.dose_gy[~inside], sd.region_means["field_of_view"]["mean_dose_gy"])


# ---- results -------------------------------------------------------------------------------
def test_dose_result_saves_in_result_format(tmp_path):
    ph = rd.Phantom.water((4, 4, 4), (3.0, 3.0, 3.0))
    d = np.zeros((4, 4, 4))
    d[1:3, 1:3, 1:3] = 1e5
    res = METHODS["ldm"](ph, rd.Source("Lu-177", d), regions={"hot": d > 0})
    assert isinstance(res, DoseResult)
    path = res.save(tmp_path / "ldm.h5")
    back = rd.load_result(path)
    np.testing.assert_array_equal(back.dose_gy, res.dose_gy)
    assert back.backend == "method:ldm" and np.all(np.isnan(back.rel_uncertainty))
    assert back.provenance["method"] == "ldm"
    assert back.region_means["hot"]["mean_dose_gy"] == pytest.approx(res.region_means["hot"]["mean_dose_gy"])
    assert res.to_sitk().GetSpacing() == (3.0, 3.0, 3.0)
