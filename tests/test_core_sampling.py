"""Sampling routines of the transport core against their analytic distributions.

The hooks `_core._sample_*` call the very functions that transport uses (csrc/physics).
Each test compares a sampled histogram with the analytic density by a chi-square test at a
fixed seed, so the outcome is reproducible; the thresholds are the 99.9 % quantiles.
"""
import numpy as np
import pytest
from scipy import stats

import rptdose._core as core
from rptdose.physics.materials import get_material
from rptdose.physics.tables import transport_tables

MC2 = 0.51099895  # MeV
HC_KEV_A = 12.398419843  # keV Angstrom


@pytest.fixture(scope="module")
def water_tables():
    return transport_tables([get_material("water")])


def chi2_pvalue(counts, expected):
    ok = expected > 5
    chi2 = float((((counts - expected) ** 2) / expected)[ok].sum())
    dof = int(ok.sum()) - 1
    return stats.chi2.sf(chi2, dof)


def test_philox_known_answers():
    """Philox4x32-10 known-answer vectors of Random123 (kat_vectors, Salmon et al. SC'11)."""
    kat = [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ]
    for ctr, key, expected in kat:
        assert tuple(core._philox4x32_10(ctr, key)) == expected


def test_uniforms_open_interval_and_moments():
    u = core._uniforms(7, 123, 400_000)
    assert u.min() > 0.0 and u.max() < 1.0
    # mean 1/2 and variance 1/12 within 5 sigma of their sampling errors
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / u.size)
    assert abs(u.var() - 1 / 12) < 5 * np.sqrt(1 / 180 / u.size)
    # different histories give different streams
    assert not np.array_equal(core._uniforms(7, 123, 8), core._uniforms(7, 124, 8))


def test_line_emissions_have_their_yields_independently():
    """Discrete lines: line l of yield n_l + f_l is emitted n_l times plus once with probability
    f_l, independently of the others (history.hpp sample_lines draws them as a Poisson process
    on the cumulative hazard). Checks per-line means (5 sigma), the whole parts, and the
    independence of two lines (chi-square of their 2x2 table)."""
    yields = np.array([0.3, 0.0, 0.05, 2.0, 1.25, 0.9999, 1e-3, 0.6])
    n = 200_000
    c = core._sample_lines(yields, n, 5)
    frac = yields - np.floor(yields)
    assert np.all(c >= np.floor(yields)) and np.all(c <= np.ceil(yields) + (frac == 0))
    assert np.all(c[:, 1] == 0) and np.all(c[:, 3] == 2)
    mean = c.mean(axis=0)
    sigma = np.sqrt(frac * (1 - frac) / n)
    assert np.all(np.abs(mean - yields) <= 5 * sigma + 1e-12), (mean, yields)
    # independence of lines 0 and 7 (f = 0.3 and 0.6): 2x2 chi-square, 1 dof, p > 1e-3
    a, b = c[:, 0] > 0, c[:, 7] > 0
    obs = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
    exp = np.outer(obs.sum(axis=1), obs.sum(axis=0)) / n
    chi2 = np.sum((obs - exp) ** 2 / exp)
    assert chi2 < 10.83, chi2
    # a line after a firing one is not suppressed: P(line 2 | line 0) == P(line 2)
    assert abs(c[a, 2].mean() - 0.05) < 5 * np.sqrt(0.05 * 0.95 / a.sum())
    with pytest.raises(ValueError, match="line_yield"):
        core._sample_lines(np.array([0.2, -0.1]), 10, 1)


def test_sincos_2pi_matches_extended_precision():
    """The azimuth's cos and sin (exact quarter-turn reduction + Taylor series) agree with
    long-double libm values to 2.5e-16, over the whole turn, at the octant seams and the ends."""
    seams = np.arange(1, 8) / 8.0
    u = np.concatenate([core._uniforms(3, 9, 200_000), np.linspace(0.0, 1.0, 4001), seams,
                        np.nextafter(seams, 0.0), np.nextafter(seams, 1.0)])
    c, s = core._sincos_2pi(u)
    two_pi = 2 * np.longdouble("3.14159265358979323846264338327950288")
    x = two_pi * u.astype(np.longdouble)
    assert np.max(np.abs(c - np.cos(x))) < 2.5e-16
    assert np.max(np.abs(s - np.sin(x))) < 2.5e-16
    assert np.max(np.abs(c * c + s * s - 1.0)) < 5e-16


@pytest.mark.parametrize("e_mev", [0.02, 0.11295, 0.20837, 1.0])
def test_incoherent_angle_matches_klein_nishina_times_sf(water_tables, e_mev):
    """cos(theta) of incoherent scattering ~ KN(theta) * S(x)/Z (Klein & Nishina 1929;
    S from the material table, the same function the sampler rejects with)."""
    n = 200_000
    eps, cost = core._sample_incoherent(water_tables, 0, e_mev, n, 11)
    k = e_mev / MC2
    # kinematics: E'/E = 1 / (1 + k (1 - cos))
    np.testing.assert_allclose(eps, 1.0 / (1.0 + k * (1.0 - cost)), rtol=1e-9)
    edges = np.linspace(-1, 1, 41)
    c = np.linspace(-1, 1, 40001)
    e_ratio = 1.0 / (1.0 + k * (1.0 - c))
    kn = e_ratio**2 * (e_ratio + 1.0 / e_ratio - (1.0 - c**2))
    x = e_mev * 1e3 / HC_KEV_A * np.sqrt((1.0 - c) / 2.0)
    t = water_tables
    lnx = np.log(np.maximum(x, 1e-300))
    grid = np.linspace(t["sf_lnx_min"], t["sf_lnx_max"], t["incoh_sf"].shape[1])
    sf = np.interp(lnx, grid, t["incoh_sf"][0], left=0.0, right=1.0)
    pdf = kn * sf
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(c))])
    cdf /= cdf[-1]
    expected = np.diff(np.interp(edges, c, cdf)) * n
    counts, _ = np.histogram(cost, edges)
    assert chi2_pvalue(counts, expected) > 1e-3


@pytest.mark.parametrize("e_mev", [0.02, 0.06, 0.20837])
def test_coherent_angle_matches_form_factor(water_tables, e_mev):
    """cos(theta) of coherent scattering ~ (1 + cos^2)/2 * F^2(x) (PENELOPE-2018 eq. 2.7),
    F^2 taken from the table's cumulative."""
    n = 200_000
    cost = core._sample_coherent(water_tables, 0, e_mev, n, 5)
    t = water_tables
    kx = e_mev * 1e3 / HC_KEV_A
    c = np.linspace(-1, 1, 40001)
    x2 = kx**2 * (1.0 - c) / 2.0
    # F^2(x2) = d(cum)/d(x2)
    cum_grid = t["coh_cum"][0]
    x2_grid = t["coh_x2_grid"]
    f2_grid = np.gradient(cum_grid, x2_grid)
    f2 = np.interp(x2, x2_grid, f2_grid)
    pdf = 0.5 * (1 + c**2) * f2
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(c))])
    cdf /= cdf[-1]
    edges = np.linspace(-1, 1, 41)
    expected = np.diff(np.interp(edges, c, cdf)) * n
    counts, _ = np.histogram(cost, edges)
    # the sampler interpolates the cumulative linearly: allow its small discretisation by
    # comparing with a 2 % floor on the expected counts as well as the statistical test
    rel = np.abs(counts - expected) / np.maximum(expected, 1)
    big = expected > 200
    assert np.all(rel[big] < 0.02 + 5 / np.sqrt(expected[big]))


@pytest.mark.parametrize("mean_mu", [1e-4, 1e-2, 0.1, 0.3, 0.45])
def test_multiple_scattering_first_moment(water_tables, mean_mu):
    """The soft deflection reproduces the Goudsmit-Saunderson first moment <(1-cos)/2>."""
    n = 400_000
    cost = core._sample_multiple_scattering(water_tables, mean_mu, n, 3)
    mu = 0.5 * (1.0 - cost)
    assert mu.min() >= 0.0 and mu.max() <= 1.0
    se = mu.std() / np.sqrt(n)
    assert abs(mu.mean() - mean_mu) < 5 * se + 1e-3 * mean_mu


def test_soft_ms_mean_formula():
    """<mu> of p(mu) ~ exp(-lambda mu) on [0,1], by quadrature, vs the closed form (and its
    small- and large-lambda branches)."""
    for lam in [1e-5, 1e-3, 2e-3, 0.1, 1.0, 50.0, 699.0, 701.0, 1e6]:
        mu = np.concatenate([[0.0], np.geomspace(1e-6 / lam, 1.0, 2_000_001)])
        p = np.exp(-lam * mu)
        num = np.sum(0.5 * ((mu * p)[1:] + (mu * p)[:-1]) * np.diff(mu))
        den = np.sum(0.5 * (p[1:] + p[:-1]) * np.diff(mu))
        assert core._soft_ms_mean(lam) == pytest.approx(num / den, rel=1e-4)


def test_soft_ms_shape_is_gaussian_in_angle(water_tables):
    """The soft deflection has no single-scattering tail: for a small mean, mu is exponential
    (theta Gaussian), so P(mu > 5 <mu>) = exp(-5) (a Wentzel law with the same mean puts
    several times more there)."""
    mean_mu, n = 1e-3, 400_000
    mu = 0.5 * (1.0 - core._sample_multiple_scattering(water_tables, mean_mu, n, 5))
    frac = np.mean(mu > 5 * mean_mu)
    assert frac == pytest.approx(np.exp(-5.0), abs=5 * np.sqrt(np.exp(-5.0) / n))


@pytest.mark.parametrize("e_mev", [0.1, 0.5])
def test_moller_delta_energy_spectrum(water_tables, e_mev):
    """Delta-ray energies above the cut follow the Moller cross section
    (Moller 1932; e.g. ICRU 37 eq. 5.1), sampled between W_cc and E/2."""
    n = 200_000
    w, _ = core._sample_moller(water_tables, e_mev, n, 9)
    wcc = water_tables["el_wcc_mev"]
    assert w.min() >= wcc * (1 - 1e-12) and w.max() <= e_mev / 2 * (1 + 1e-12)
    gam = e_mev / MC2 + 1
    x = np.linspace(wcc / e_mev, 0.5, 200001)
    pdf = (1 / x**2 + 1 / (1 - x) ** 2 + ((gam - 1) / gam) ** 2 - (2 * gam - 1) / gam**2 / (x * (1 - x)))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(x))])
    cdf /= cdf[-1]
    edges = np.geomspace(wcc / e_mev, 0.5, 31)
    expected = np.diff(np.interp(edges, x, cdf)) * n
    counts, _ = np.histogram(w / e_mev, edges)
    assert chi2_pvalue(counts, expected) > 1e-3


@pytest.mark.parametrize("e_mev", [0.05, 1.0])
def test_hard_elastic_angular_distribution(water_tables, e_mev):
    """Hard elastic deflections follow the tabulated density (screened Rutherford with the
    McKinley-Feshbach Mott factor) on [mu_c, 1]: chi-square over bins uniform in 1/(mu+eta)."""
    from rptdose.physics import electron as el

    n = 300_000
    mu = 0.5 * (1.0 - core._sample_hard_elastic(water_tables, 0, e_mev, n, 11))
    h = el.hard_elastic_parameters("water", np.array([e_mev]), cut_mev=water_tables["el_wcc_mev"])
    mu_c, eta, b2, c = h["mu_c"][0], h["eta"][0], h["mott_b"][0], h["mott_c"][0]
    # the kernel interpolates the parameters between grid energies: allow that in the edges
    assert mu.min() >= mu_c * 0.98 and mu.max() <= 1.0
    edges = 1.0 / np.linspace(1.0 / (mu_c + eta), 1.0 / (1.0 + eta), 41) - eta
    edges[0], edges[-1] = mu.min(), 1.0
    grid = np.geomspace(edges[0], 1.0, 200_001)
    pdf = (1 - b2 * grid + c * (np.sqrt(grid) - grid)) / (grid + eta) ** 2
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    expected = np.diff(np.interp(edges, grid, cdf / cdf[-1])) * n
    counts = np.histogram(mu, bins=edges)[0]
    assert chi2_pvalue(counts, expected) > 1e-3
    # the Mott factor matters at 1 MeV: fewer large-angle events than plain Rutherford
    if e_mev == 1.0:
        ruth = np.diff(1.0 / (edges + eta))  # plain 1/(mu+eta)^2 probabilities (unnormalised)
        ruth = ruth / ruth.sum() * n
        assert counts[-1] < ruth[-1] - 10 * np.sqrt(ruth[-1])  # ~17 % fewer in mu > 0.09
