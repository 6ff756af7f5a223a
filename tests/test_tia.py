"""Time integration (rptdose.quant.tia): the models against closed forms, the guards, the
auto rule, the uncertainty, and the quantification conversions (rptdose.quant.calibration)."""

import numpy as np
import pytest

from rptdose.errors import InputError
from rptdose.quant import Calibration, FitWarning, activity_at_start, integrate
from rptdose.quant import tia as T
from rptdose.quant.decay import acquisition_factor, decay_correct, decay_factor

HALF_LIFE_S = 574300.8          # Lu-177
LAM_P = np.log(2.0) / HALF_LIFE_S
H = 3600.0
T4 = np.array([4.0, 24.0, 72.0, 168.0]) * H
T6 = np.array([1.0, 4.0, 24.0, 48.0, 72.0, 168.0]) * H


def mono(a0, teff_h, t):
    return a0 * np.exp(-np.log(2.0) * t / (teff_h * H))


def test_mono_recovers_closed_form():
    teff_h = np.array([20.0, 50.0, 80.0, 150.0])
    a0 = np.array([1e6, 2e6, 3e6, 4e6])
    a = mono(a0, teff_h, T4[:, None])
    res = integrate(T4, a, HALF_LIFE_S, "mono")
    np.testing.assert_allclose(res.tia, a0 * teff_h * H / np.log(2.0), rtol=1e-10)
    assert np.all(res.model == T.MONO) and np.all(res.flags == 0)
    assert np.all(res.rel_uncertainty < 1e-8)          # noise-free: no scatter
    for i in range(4):
        assert T.effective_half_life_s(res, i) == pytest.approx(teff_h[i] * H, rel=1e-10)
        np.testing.assert_allclose(res.curve(T4, i), a[:, i], rtol=1e-10)


def test_time_order_does_not_matter():
    a = mono(1e6, 40.0, T4)
    order = [2, 0, 3, 1]
    r1 = integrate(T4, a, HALF_LIFE_S, "mono")
    r2 = integrate(T4[order], a[order], HALF_LIFE_S, "mono")
    assert float(r1.tia) == pytest.approx(float(r2.tia), rel=1e-12)


def test_biexponential_models_recover_closed_forms():
    lw, lu = np.log(2) / (60 * H), np.log(2) / (3 * H)
    uptake = 1e6 * (np.exp(-lw * T6) - np.exp(-lu * T6))
    true_uptake = 1e6 * (1 / lw - 1 / lu)
    l1, l2 = np.log(2) / (100 * H), np.log(2) / (8 * H)
    washout = 5e5 * np.exp(-l1 * T6) + 1e6 * np.exp(-l2 * T6)
    true_washout = 5e5 / l1 + 1e6 / l2
    for model in ("biexp_uptake", "biexp"):
        r = integrate(T6, uptake, HALF_LIFE_S, model)
        assert float(r.tia) == pytest.approx(true_uptake, rel=1e-6), model
    r = integrate(T6, washout, HALF_LIFE_S, "biexp")
    assert float(r.tia) == pytest.approx(true_washout, rel=1e-6)
    np.testing.assert_allclose(r.curve(T6), washout, rtol=1e-6)
    # mono on these curves is biased: what the bi-exponentials are for
    assert abs(float(integrate(T6, uptake, HALF_LIFE_S, "mono").tia) / true_uptake - 1) > 0.1


def test_auto_rule():
    """AICc among the models whose AICc is defined (n >= k + 2): mono only for 4 points;
    with 6 points the bi-exponentials compete and win on bi-exponential data."""
    lw, lu = np.log(2) / (60 * H), np.log(2) / (3 * H)
    t4 = np.array([1.0, 4.0, 24.0, 72.0]) * H
    uptake4 = 1e6 * (np.exp(-lw * t4) - np.exp(-lu * t4))
    assert integrate(t4, uptake4, HALF_LIFE_S, "auto").model_name() in ("mono", "trapezoid")
    uptake6 = 1e6 * (np.exp(-lw * T6) - np.exp(-lu * T6))
    r = integrate(T6, uptake6, HALF_LIFE_S, "auto")
    assert r.model_name() in ("biexp_uptake", "biexp")
    assert float(r.tia) == pytest.approx(1e6 * (1 / lw - 1 / lu), rel=1e-5)
    rng = np.random.default_rng(3)
    mono6 = mono(1e6, 50.0, T6) * (1 + 0.02 * rng.standard_normal(6))
    assert integrate(T6, mono6, HALF_LIFE_S, "auto").model_name() == "mono"
    with pytest.raises(InputError, match="1 time point.*hanscheid.*madsen"):
        integrate(T4[:1], mono(1e6, 50.0, T4[:1]), HALF_LIFE_S, "auto")


def test_trapezoid_by_hand():
    t = np.array([1.0, 2.0, 4.0]) * H
    a = np.array([10.0, 8.0, 4.0])
    middle = (10 + 8) / 2 * H + (8 + 4) / 2 * 2 * H
    tail = 4.0 / LAM_P
    expect = {"zero": 10 * H / 2, "constant": 10 * H, "physical": 10 * np.expm1(LAM_P * H) / LAM_P}
    for start, head in expect.items():
        r = integrate(t, a, HALF_LIFE_S, "trapezoid", trapezoid_start=start)
        assert float(r.tia) == pytest.approx(head + middle + tail, rel=1e-12), start
        assert np.isnan(r.rel_uncertainty)
    r = integrate(t, a, HALF_LIFE_S, "trapezoid")
    np.testing.assert_allclose(r.curve(t), a)
    assert float(r.curve(10 * H)) == pytest.approx(4.0 * np.exp(-LAM_P * 6 * H))


def test_single_time_point_methods():
    """Hanscheid (J Nucl Med 59:75, 2018): TIA = A(t) 2t/ln2, exact for a mono-exponential when
    the scan is at t = T_eff. Madsen (Med Phys 45:2318, 2018): exact with the true T_eff."""
    teff_h = 96.0
    a = mono(2e6, teff_h, np.array([96.0 * H]))
    true = 2e6 * teff_h * H / np.log(2.0)
    r = integrate([96.0 * H], a, HALF_LIFE_S, "hanscheid")
    assert float(r.tia) == pytest.approx(float(a[0]) * 2 * 96 * H / np.log(2), rel=1e-12)
    assert float(r.tia) == pytest.approx(true, rel=1e-12)
    a48 = mono(2e6, teff_h, np.array([48.0 * H]))
    r = integrate([48.0 * H], a48, HALF_LIFE_S, "madsen", effective_half_life_s=teff_h * H)
    assert float(r.tia) == pytest.approx(true, rel=1e-12)
    # per-column effective half-lives, and a multi-scan series with the scan chosen
    cols = mono(np.array([1e6, 1e6]), np.array([40.0, 80.0]), T4[:, None])
    r = integrate(T4, cols, HALF_LIFE_S, "madsen", effective_half_life_s=np.array([40.0, 80.0]) * H, stp_index=2)
    np.testing.assert_allclose(r.tia, 1e6 * np.array([40.0, 80.0]) * H / np.log(2.0), rtol=1e-12)
    with pytest.raises(InputError, match="single-time-point.*tia.timepoint"):
        integrate(T4, cols, HALF_LIFE_S, "hanscheid")
    with pytest.raises(InputError, match="effective_half_life_s.*madsen"):
        integrate([48.0 * H], a48, HALF_LIFE_S, "madsen")


def test_increasing_and_slower_than_physical_curves_fall_back():
    rising = np.array([1.0, 2.0, 3.0, 4.0]) * 1e6
    r = integrate(T4, rising, HALF_LIFE_S, "mono")
    assert r.model_name() == "trapezoid" and "fallback_trapezoid" in r.flag_names()
    assert float(r.tia) == pytest.approx(float(integrate(T4, rising, HALF_LIFE_S, "trapezoid").tia))
    slow = 1e6 * np.exp(-0.5 * LAM_P * T4)     # clears slower than physical decay: impossible
    r = integrate(T4, slow, HALF_LIFE_S, "auto")
    assert r.model_name() == "trapezoid" and r.flags & T.FALLBACK
    zero = integrate(T4, np.zeros(4), HALF_LIFE_S, "auto")
    assert float(zero.tia) == 0.0 and zero.model_name() == "none"


def test_too_few_points_and_negative_values_warn():
    a = mono(1e6, 50.0, T4[:3])
    with pytest.warns(FitWarning, match="more parameters than the 3 time points"):
        r = integrate(T4[:3], a, HALF_LIFE_S, "biexp")
    assert r.model_name() == "trapezoid" and r.flags & T.TOO_FEW_POINTS
    noisy = np.stack([mono(1e6, 50.0, T4), [5e5, 2e5, -1e3, -2e2]], axis=1)
    with pytest.warns(FitWarning, match="2 negative values in 1 columns clipped"):
        r = integrate(T4, noisy, HALF_LIFE_S, "mono")
    assert r.flags[1] & T.CLIPPED and not r.flags[0] & T.CLIPPED
    assert np.all(r.activity >= 0)
    # two points: an exact fit, no uncertainty
    r = integrate(T4[:2], mono(1e6, 50.0, T4[:2]), HALF_LIFE_S, "mono")
    assert r.flags & T.NO_DOF and np.isnan(r.rel_uncertainty)


def test_uncertainty_matches_the_scatter_of_repeated_fits():
    """The predicted relative uncertainty (fit covariance) against the spread of the TIA over
    3000 noise realisations with variance proportional to the activity (the fits' weighting):
    the root-mean-square prediction within 30 % of the observed spread (only 2 residual degrees
    of freedom per fit make each prediction noisy, not biased)."""
    rng = np.random.default_rng(42)
    n = 3000
    a = mono(1e6, 60.0, T4)
    noisy = a[:, None] + np.sqrt(a[:, None] * 2e3) * rng.standard_normal((4, n))
    r = integrate(T4, noisy, HALF_LIFE_S, "mono")
    true = 1e6 * 60 * H / np.log(2.0)
    observed = np.std(r.tia / true)
    predicted = np.sqrt(np.mean(r.rel_uncertainty ** 2))
    assert abs(np.mean(r.tia) / true - 1) < 0.005
    assert 0.7 < predicted / observed < 1.3, (predicted, observed)
    # Levenberg-Marquardt covariance: same check for the uptake model at 6 points
    lw, lu = np.log(2) / (60 * H), np.log(2) / (3 * H)
    b = 1e6 * (np.exp(-lw * T6) - np.exp(-lu * T6))
    noisy = b[:, None] + np.sqrt(b[:, None] * 2e3) * rng.standard_normal((6, 1000))
    r = integrate(T6, noisy, HALF_LIFE_S, "biexp_uptake")
    ok = r.model == T.BIEXP_UPTAKE
    assert ok.mean() > 0.95
    rel = r.tia[ok] / (1e6 * (1 / lw - 1 / lu))
    assert 0.6 < np.sqrt(np.mean(r.rel_uncertainty[ok] ** 2)) / np.std(rel) < 1.4


def test_voxel_maps_keep_their_shape():
    rng = np.random.default_rng(0)
    a = mono(1e5, 50.0, T4)[:, None, None, None] * rng.uniform(0.5, 1.5, (1, 6, 7, 8))
    r = integrate(T4, a, HALF_LIFE_S, "auto")
    assert r.tia.shape == r.rel_uncertainty.shape == r.model.shape == r.flags.shape == (6, 7, 8)
    assert r.params.shape == (6, 7, 8, 4)
    np.testing.assert_allclose(r.tia, 1e5 * 50 * H / np.log(2.0) * a[0] / mono(1e5, 50.0, T4[0]), rtol=1e-9)
    assert r.curve(T4, (1, 2, 3)).shape == (4,)


def test_bad_inputs():
    a = mono(1e6, 50.0, T4)
    with pytest.raises(InputError, match="times_s.*after the administration"):
        integrate(T4 - 5 * H, a, HALF_LIFE_S)
    with pytest.raises(InputError, match="repeated time"):
        integrate(np.array([4.0, 4.0, 24.0, 72.0]) * H, a, HALF_LIFE_S)
    with pytest.raises(InputError, match="NaN"):
        integrate(T4, np.array([1.0, np.nan, 1.0, 1.0]), HALF_LIFE_S)
    with pytest.raises(InputError, match="one value per time point"):
        integrate(T4, np.ones((3, 2)), HALF_LIFE_S)
    with pytest.raises(InputError, match="model 'cubic'.*auto, mono"):
        integrate(T4, a, HALF_LIFE_S, "cubic")
    with pytest.raises(InputError, match="trapezoid_start"):
        integrate(T4, a, HALF_LIFE_S, "trapezoid", trapezoid_start="linear")


# ---- decay and calibration ------------------------------------------------------------------

def test_decay_helpers():
    assert float(decay_factor(HALF_LIFE_S, HALF_LIFE_S)) == pytest.approx(0.5)
    assert float(decay_correct(1.0, 2 * HALF_LIFE_S, HALF_LIFE_S)) == pytest.approx(4.0)
    # mean over an acquisition of one half-life = A0 (1 - 1/2) / ln 2
    assert acquisition_factor(HALF_LIFE_S, HALF_LIFE_S) == pytest.approx(np.log(2) / 0.5)
    assert acquisition_factor(0.0, HALF_LIFE_S) == 1.0
    with pytest.raises(InputError, match="half_life_s"):
        decay_factor(1.0, -1.0)


def test_counts_cps_and_concentration_to_activity():
    d = 1800.0
    cal = Calibration("sensitivity", 9.0)
    f = acquisition_factor(d, HALF_LIFE_S)
    counts = np.array([9.0 * 1800.0])            # 1 MBq for 30 min, ignoring decay
    act, info = activity_at_start(counts, "counts", cal, HALF_LIFE_S, voxel_volume_ml=0.064, duration_s=d)
    assert float(act[0]) == pytest.approx(1e6 * f) and info["factor"] == pytest.approx(f)
    act, _ = activity_at_start(np.array([9.0]), "cps", cal, HALF_LIFE_S, voxel_volume_ml=0.064, duration_s=d)
    assert float(act[0]) == pytest.approx(1e6 * f)
    q = Calibration("quantitative")
    act, _ = activity_at_start(np.array([1000.0]), "bq_per_ml", q, HALF_LIFE_S, voxel_volume_ml=0.064, duration_s=d)
    assert float(act[0]) == pytest.approx(64.0)
    act, _ = activity_at_start(np.array([1000.0]), "bq_per_ml", q, HALF_LIFE_S, voxel_volume_ml=0.064, duration_s=d,
                               decay_correction="ADMIN", time_since_administration_s=HALF_LIFE_S)
    assert float(act[0]) == pytest.approx(32.0)
    act, _ = activity_at_start(np.array([1000.0]), "bq_per_ml", q, HALF_LIFE_S, voxel_volume_ml=0.064, duration_s=d,
                               decay_correction="NONE")
    assert float(act[0]) == pytest.approx(64.0 * f)
    with pytest.raises(InputError, match="mode 'quantitative'.*counts.*sensitivity_cps_per_mbq"):
        activity_at_start(counts, "counts", q, HALF_LIFE_S, voxel_volume_ml=0.064, duration_s=d)
    with pytest.raises(InputError, match="mode 'sensitivity'.*Bq/ml.*quantitative"):
        activity_at_start(counts, "bq_per_ml", cal, HALF_LIFE_S, voxel_volume_ml=0.064, duration_s=d)
    with pytest.raises(InputError, match="duration is unknown.*ActualFrameDuration.*duration_s"):
        activity_at_start(counts, "counts", cal, HALF_LIFE_S, voxel_volume_ml=0.064, duration_s=None)
    with pytest.raises(InputError, match="sensitivity_cps_per_mbq"):
        Calibration("sensitivity")
    # more activity in the field of view than was given: a warning naming the likely causes
    from rptdose.quant.calibration import QuantWarning, check_fov_total

    with pytest.warns(QuantWarning, match="121.6 % of the administered.*calibration factor.*duration"):
        check_fov_total(9e9, 7.4e9, "spect 'x'")
    check_fov_total(7.9e9, 7.4e9, "spect 'x'")      # within 10 %: quiet
