"""Photon cross sections vs NIST XCOM, and the angular sampling tables."""

import numpy as np
import pytest
from _shared import reference_rows

from rptdose.physics import photon as ph
from rptdose.physics.materials import get_material

pytest.importorskip("xraylib")

# NIST X-ray mass attenuation coefficients (Hubbell & Seltzer, NISTIR 5632, Table 4; = XCOM
# totals with coherent scattering), cm2/g: data/reference/nist_xcom_mu_rho.csv.
XCOM_MU_RHO: dict[str, dict[int, float]] = {}
for _r in reference_rows("nist_xcom_mu_rho.csv"):
    XCOM_MU_RHO.setdefault(_r["material"], {})[int(_r["energy_kev"])] = float(_r["mu_rho"])


@pytest.mark.parametrize("material", sorted(XCOM_MU_RHO))
def test_total_vs_xcom(material):
    ref = XCOM_MU_RHO[material]
    e_kev = np.array(sorted(ref), dtype=float)
    mu = ph.mass_attenuation(material, e_kev * 1e-3)
    expected = np.array([ref[int(e)] for e in e_kev])
    dev = mu["total"] / expected - 1.0
    assert np.max(np.abs(dev)) < 0.02, dict(zip(e_kev, dev))  # actual worst: 0.08 %
    np.testing.assert_allclose(mu["photo"] + mu["incoh"] + mu["coh"], mu["total"], rtol=1e-14)


def test_partials_physics():
    """Partials cross-checked against physics limits (no tabulated XCOM partials are copied)."""
    water = get_material("water")
    e = np.array([0.3, 0.5, 0.8, 1.0, 2.0, 3.0])
    mu = ph.mass_attenuation(water, e)
    kn = ph.klein_nishina_cm2(e) * water.electrons_per_gram  # free-electron Compton per gram
    np.testing.assert_allclose(mu["incoh"], kn, rtol=5e-3)  # binding negligible above 300 keV
    # photoelectric dominates water below ~25 keV, incoherent above ~30 keV
    lo = ph.mass_attenuation(water, [0.015, 0.1])
    assert lo["photo"][0] > lo["incoh"][0] and lo["incoh"][1] > 10 * lo["photo"][1]
    # coherent is a few % of the total around 50-100 keV in water
    assert 0.02 < (lo["coh"][1] / lo["total"][1]) < 0.05


@pytest.mark.parametrize("z", [1, 8, 20, 50])
def test_continuity_at_800kev(z):
    e = np.array([0.7999, 0.8, 0.8001])
    p, i, c = ph.element_mass_coefficients(z, e)
    for a in (p, i, c):
        assert np.all(np.abs(a / a[1] - 1.0) < 2e-3)
    # and smooth beyond: monotonic decrease to 3 MeV
    e2 = np.geomspace(0.5, 3.0, 50)
    p, i, c = ph.element_mass_coefficients(z, e2)
    assert np.all(np.diff(p) < 0) and np.all(np.diff(i) < 0) and np.all(np.diff(c) < 0)


def test_klein_nishina_limits():
    thomson = 8.0 * np.pi / 3.0 * ph.R_E_CM**2
    assert ph.klein_nishina_cm2(1e-4) == pytest.approx(thomson, rel=1e-3)
    # 1 MeV: 0.2112 barn/electron (e.g. Attix 1986, Table of KN coefficients)
    assert ph.klein_nishina_cm2(1.0) / 1e-24 == pytest.approx(0.2112, rel=2e-3)


@pytest.fixture(scope="module")
def tables():
    mats = ["water", "cortical_bone", "lung", "air"]
    e = np.geomspace(1e-3, 3.0, 512)
    return mats, ph.photon_tables(mats, e)


def test_incoherent_scattering_function(tables):
    mats, t = tables
    sf = t["incoh_sf"]
    assert sf.shape == (len(mats), ph.NX_SF) and sf.dtype == np.float64 and sf.flags.c_contiguous
    x = np.exp(np.linspace(t["sf_lnx_min"], t["sf_lnx_max"], ph.NX_SF))
    assert np.all((sf >= 0.0) & (sf <= 1.0))
    assert np.all(sf[:, 0] < 1e-3)  # S(x)/Z -> 0 for x -> 0
    assert np.all(sf[:, -1] > 0.999)  # -> 1 for large x
    assert np.all(sf[:, x > 20.0] > 0.99)
    assert np.all(np.diff(sf, axis=1) >= 0.0)
    assert x[-1] >= 3000.0 / ph.HC_KEV_ANGSTROM  # covers backscatter at 3 MeV


def test_coherent_cumulative(tables):
    mats, t = tables
    g, cum = t["coh_x2_grid"], t["coh_cum"]
    assert g.shape == (ph.NX2_COH,) and g[0] == 0.0 and np.all(np.diff(g) > 0)
    assert g[-1] == pytest.approx((3000.0 / ph.HC_KEV_ANGSTROM) ** 2)
    assert cum.shape == (len(mats), ph.NX2_COH) and np.all(cum[:, 0] == 0.0)
    assert np.all(np.diff(cum, axis=1) >= 0.0)
    # F(0) = Z: the slope of the cumulative at x^2 -> 0 is sum_i n_i Z_i^2
    water = get_material("water")
    slope0 = sum(n * z * z for n, z in zip(water.atoms_per_gram, water.z))
    assert cum[0, 1] / g[1] == pytest.approx(slope0, rel=3e-3)


def test_table_shapes(tables):
    mats, t = tables
    for k in ("mu_photo", "mu_incoh", "mu_coh"):
        a = t[k]
        assert a.shape == (len(mats), 512) and a.dtype == np.float64 and a.flags.c_contiguous
        assert np.all(np.isfinite(a)) and np.all(a > 0)
    # per-gram coefficients of air and water differ by composition only (not density)
    assert t["mu_incoh"][3, 300] / t["mu_incoh"][0, 300] == pytest.approx(
        get_material("air").electrons_per_gram / get_material("water").electrons_per_gram, rel=0.01)
