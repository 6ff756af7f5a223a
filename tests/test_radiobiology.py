"""BED and EQD2 (rptdose.analysis.radiobiology): limits, closed forms against numerical integration
of the Lea-Catcheside G factor, broadcasting, the tissue table and bad inputs.

Reference formula: Dale RG, Br J Radiol 1985;58:515-528 (BED with incomplete repair for an
exponentially decaying dose rate), BED = D [1 + D lambda / ((mu + lambda) (alpha/beta))].
"""

import math

import numpy as np
import pytest

import rptdose as rd
from rptdose.analysis import radiobiology as rb
from rptdose.errors import InputError

LN2 = math.log(2.0)


def numerical_g(rate, mu, t_max):
    """G = (2/D^2) int_0^T R(t) y(t) dt with y(t) = int_0^t R(w) exp(-mu (t - w)) dw, integrated as
    the ODE system y' = R - mu y, I' = R y, D' = R (scipy's DOP853, tight tolerances): an
    independent numerical route to the closed form."""
    integrate = pytest.importorskip("scipy.integrate")

    def rhs(t, s):
        r = rate(t)
        return [r - mu * s[0], r * s[0], r]

    sol = integrate.solve_ivp(rhs, (0.0, t_max), [0.0, 0.0, 0.0], method="DOP853", rtol=1e-12, atol=1e-14)
    assert sol.success
    _, outer, dose = sol.y[:, -1]
    return 2.0 * outer / dose ** 2


def test_public_names():
    assert rd.bed is rb.bed and rd.eqd2 is rb.eqd2
    assert "bed" in rd.__all__ and "eqd2" in rd.__all__


def test_instantaneous_limit():
    # t_eff -> 0 (all the dose at once) or no repair (t_rep -> inf): BED = D (1 + D/(alpha/beta))
    d, ab = 20.0, 2.6
    acute = d * (1.0 + d / ab)
    assert rd.bed(d, 0.0, ab, 2.8) == pytest.approx(acute, rel=1e-15)
    assert rd.bed(d, 50.0, ab, math.inf) == pytest.approx(acute, rel=1e-15)
    assert rd.bed(d, 1e-9, ab, 2.8) == pytest.approx(acute, rel=1e-9)


def test_full_repair_limit():
    # instantaneous repair (t_rep -> 0, mu -> inf) or infinitely slow delivery: BED = D
    assert rd.bed(20.0, 50.0, 2.6, 0.0) == 20.0
    assert rd.bed(20.0, math.inf, 2.6, 2.8) == 20.0
    assert rd.bed(20.0, 50.0, 2.6, 1e-9) == pytest.approx(20.0, rel=1e-9)


def test_mono_exponential_hand_example():
    """Kidney after Lu-177: D = 20 Gy, T_eff = 50 h, alpha/beta = 2.6 Gy, T_rep = 2.8 h.
    Dale 1985: G = lambda/(lambda + mu) = T_rep/(T_rep + T_eff) = 2.8/52.8;
    BED = 20 (1 + 20 * 0.0530303 / 2.6) = 28.1585 Gy (computed by hand from the formula)."""
    assert rb.g_factor(50.0, 2.8) == pytest.approx(2.8 / 52.8, rel=1e-14)
    assert rd.bed(20.0, 50.0, 2.6, 2.8) == pytest.approx(28.158508, rel=1e-7)
    lam, mu = LN2 / 50.0, LN2 / 2.8
    assert rd.bed(20.0, 50.0, 2.6, 2.8) == pytest.approx(20.0 * (1 + 20.0 * lam / ((mu + lam) * 2.6)), rel=1e-14)


@pytest.mark.parametrize("t_eff_h,t_rep_h", [(50.0, 2.8), (3.0, 0.5), (160.0, 1.5)])
def test_mono_g_against_numerical_integration(t_eff_h, t_rep_h):
    lam, mu = LN2 / t_eff_h, LN2 / t_rep_h
    g = numerical_g(lambda t: math.exp(-lam * t), mu, 60.0 * t_eff_h)
    assert rb.g_factor(t_eff_h, t_rep_h) == pytest.approx(g, rel=1e-7)


@pytest.mark.parametrize("t_eff_h,t_up_h,t_rep_h", [(50.0, 5.0, 2.8), (50.0, 1.0, 0.5), (80.0, 40.0, 1.5),
                                                    (20.0, 19.9, 2.8)])
def test_biexponential_g_against_numerical_integration(t_eff_h, t_up_h, t_rep_h):
    lc, lu, mu = LN2 / t_eff_h, LN2 / t_up_h, LN2 / t_rep_h
    g = numerical_g(lambda t: math.exp(-lc * t) - math.exp(-lu * t), mu, 60.0 * t_eff_h)
    assert rb.g_factor(t_eff_h, t_rep_h, t_up_h) == pytest.approx(g, rel=1e-6)


def test_biexponential_limits():
    # no uptake phase -> mono-exponential; an uptake phase spreads the dose: lower G
    assert rb.g_factor(50.0, 2.8, 0.0) == rb.g_factor(50.0, 2.8)
    assert rb.g_factor(50.0, 2.8, 1e-6) == pytest.approx(rb.g_factor(50.0, 2.8), rel=1e-6)
    assert rb.g_factor(50.0, 2.8, 5.0) < rb.g_factor(50.0, 2.8)
    assert rb.g_factor(50.0, 0.0, 5.0) == 0.0
    assert rb.g_factor(50.0, math.inf, 5.0) == 1.0
    assert rd.bed(10.0, 50.0, 2.6, 2.8, t_uptake_h=5.0) == pytest.approx(
        10.0 * (1 + rb.g_factor(50.0, 2.8, 5.0) * 10.0 / 2.6), rel=1e-14)


def test_eqd2():
    # EQD2 of n fractions of 2 Gy is their total dose; BED of 23 Gy in 2 Gy fractions (kidney)
    ab = 2.6
    bed_ebrt = 23.0 * (1.0 + 2.0 / ab)
    assert rd.eqd2(bed_ebrt, ab) == pytest.approx(23.0, rel=1e-14)
    assert rd.eqd2(28.0, 2.6) == pytest.approx(28.0 / (1 + 2 / 2.6), rel=1e-14)


def test_broadcasting_voxels_and_nan():
    dose = np.array([[[0.0, 1.0], [5.0, np.nan]]])           # [z, y, x]
    t_eff = np.array([[[50.0, 40.0], [30.0, 20.0]]])
    out = rd.bed(dose, t_eff, 2.6, 2.8)
    assert out.shape == dose.shape
    assert np.isnan(out[0, 1, 1])
    for idx in [(0, 0, 0), (0, 0, 1), (0, 1, 0)]:
        assert out[idx] == pytest.approx(rd.bed(float(dose[idx]), float(t_eff[idx]), 2.6, 2.8), rel=1e-15)
    per_tissue = rd.bed(10.0, 50.0, np.array([2.6, 10.0]), np.array([2.8, 0.5]))
    assert per_tissue.shape == (2,) and per_tissue[0] > per_tissue[1] > 10.0
    assert isinstance(rd.bed(1.0, 50.0, 2.6, 2.8), float)


@pytest.mark.parametrize("kwargs,match", [
    (dict(dose_gy=-1.0, t_eff_h=50.0, alpha_beta_gy=2.6, t_rep_h=2.8), "dose_gy"),
    (dict(dose_gy=1.0, t_eff_h=-5.0, alpha_beta_gy=2.6, t_rep_h=2.8), "t_eff_h"),
    (dict(dose_gy=1.0, t_eff_h=50.0, alpha_beta_gy=0.0, t_rep_h=2.8), "alpha_beta_gy"),
    (dict(dose_gy=1.0, t_eff_h=0.0, alpha_beta_gy=2.6, t_rep_h=0.0), "undefined"),
    (dict(dose_gy=1.0, t_eff_h=50.0, alpha_beta_gy=2.6, t_rep_h=2.8, t_uptake_h=60.0), "t_uptake_h"),
    (dict(dose_gy="a lot", t_eff_h=50.0, alpha_beta_gy=2.6, t_rep_h=2.8), "dose_gy"),
])
def test_bad_inputs(kwargs, match):
    with pytest.raises(InputError, match=match):
        rd.bed(**kwargs)


def test_shipped_tissue_table_has_sources():
    table = rb.load_tissues()
    assert {"kidney", "red_marrow", "tumour"} <= set(table.tissues)
    assert table["kidney"].alpha_beta_gy == 2.6 and table["kidney"].t_rep_h == 2.8
    for t in table.tissues.values():
        assert len(t.source) > 20
    assert table.for_region("kidney_left", "kidney").name == "kidney"
    assert table.for_region("Left Kidney", "organ").name == "kidney"        # name pattern
    assert table.for_region("L2-L4", "marrow").name == "red_marrow"        # kind
    assert table.for_region("spleen", "organ") is None
    assert len(table.sha256) == 64


def test_user_tissue_table(tmp_path):
    p = tmp_path / "t.toml"
    p.write_text('format = "rptdose-tissues"\nformat_version = 1\n[tissue.liver]\nalpha_beta_gy = 2.5\n'
                 't_rep_h = 2.5\nnames = ["*liver*"]\nsource = "my department"\n')
    table = rb.load_tissues(p)
    assert table.for_region("liver", "organ").alpha_beta_gy == 2.5
    p.write_text('format = "rptdose-tissues"\nformat_version = 2\n[tissue.liver]\nalpha_beta_gy = 2.5\n'
                 't_rep_h = 2.5\nsource = "x"\n')
    with pytest.raises(InputError, match="format_version"):
        rb.load_tissues(p)
    p.write_text('format = "rptdose-tissues"\nformat_version = 1\n[tissue.liver]\nalpha_beta_gy = 2.5\n'
                 'source = "x"\n')
    with pytest.raises(InputError, match="t_rep_h"):
        rb.load_tissues(p)
    with pytest.raises(InputError, match="not found"):
        rb.load_tissues(tmp_path / "missing.toml")
