"""The gamma index (rptdose.analysis.gamma) on synthetic cases with known answers, and against
pymedphys.gamma (skipped when pymedphys is absent).

Known answers: identical maps give gamma 0; a shift s of a linear dose ramp D = g x gives, for
a global criterion dD and DTA, gamma = s / sqrt(DTA^2 + (dD / g)^2) (minimising the gamma
ellipsoid along the ramp); a flat region scaled by (1 + e) gives gamma = e / dD.
"""

import numpy as np
import pytest
from rptdose.analysis.gamma import gamma_index
from rptdose.errors import InputError

SPACING = (2.0, 2.0, 2.0)


def grid(shape=(16, 20, 24), spacing=SPACING):
    nz, ny, nx = shape
    z, y, x = (np.arange(n) * s for n, s in zip((nz, ny, nx), spacing[::-1]))
    return np.meshgrid(z, y, x, indexing="ij"), (z, y, x)


def blob(shift_x=0.0, scale=1.0, shape=(16, 20, 24), spacing=SPACING, sigma=8.0):
    (Z, Y, X), _ = grid(shape, spacing)
    c = [0.5 * (n - 1) * s for n, s in zip(shape, spacing[::-1])]
    return scale * 10.0 * np.exp(-((Z - c[0]) ** 2 + (Y - c[1]) ** 2 + (X - c[2] - shift_x) ** 2) / (2 * sigma**2))


def test_identical_maps_pass_everywhere():
    d = blob()
    for local in (False, True):
        g = gamma_index(d, d, SPACING, 3, 3, local=local)
        assert g.pass_rate == 1.0 and g.evaluated_points > 0
        assert np.nanmax(g.gamma) == 0.0
        assert np.all(np.isnan(g.gamma[d < 0.1 * d.max()]))     # below the 10 % threshold: not evaluated


def test_two_mm_shift_passes_3mm_fails_1mm():
    ref, ev = blob(), blob(shift_x=2.0)
    g3 = gamma_index(ref, ev, SPACING, 3, 3)
    assert g3.pass_rate == 1.0
    g1 = gamma_index(ref, ev, SPACING, 1, 1)
    assert g1.pass_rate < 0.8           # the gradient region fails


def test_linear_ramp_shift_matches_analytic_gamma():
    shape = (6, 6, 40)
    (_, _, X), _ = grid(shape)
    g_per_mm = 0.1                                     # Gy/mm
    ref = 10.0 + g_per_mm * X
    s = 1.5                                            # evaluated = reference shifted by +1.5 mm
    ev = 10.0 + g_per_mm * (X - s)
    dd_pct, dta = 2.0, 2.0
    res = gamma_index(ref, ev, SPACING, dd_pct, dta, threshold_percent=0)
    dD = dd_pct / 100 * ref.max()
    expect = s / np.sqrt(dta**2 + (dD / g_per_mm) ** 2)
    inner = res.gamma[:, :, 4:-4]                      # away from the ends of the ramp
    np.testing.assert_allclose(inner, expect, atol=2e-3)


def test_scaling_fails_in_the_high_dose_plateau():
    shape = (9, 9, 9)
    ref = np.full(shape, 1.0)
    ref[0], ref[-1] = 0.05, 0.05
    ev = 1.05 * ref
    g = gamma_index(ref, ev, SPACING, 3, 3)
    plateau = g.gamma[3:-3, 3:-3, 3:-3]
    np.testing.assert_allclose(plateau, 5.0 / 3.0, rtol=1e-6)   # a plateau cannot be compensated by a shift
    assert g.pass_rate < 0.5     # only the plateau edge passes (the dose falls through 1.0 there)
    assert gamma_index(ref, ev, SPACING, 5.5, 3).pass_rate == 1.0
    gl = gamma_index(ref, ev, SPACING, 3, 3, local=True, threshold_percent=0)
    assert np.nanmax(gl.gamma) == pytest.approx(5.0 / 3.0, rel=1e-6)
    # the search stops at max_gamma: larger values are reported as max_gamma
    assert np.nanmax(gamma_index(ref, 1.5 * ref, SPACING, 3, 3, interp_fraction=3).gamma) == 2.0


def test_local_is_stricter_than_global_in_low_dose():
    ref, ev = blob(), blob(shift_x=1.0, scale=1.02)
    gg = gamma_index(ref, ev, SPACING, 2, 1)
    gl = gamma_index(ref, ev, SPACING, 2, 1, local=True)
    assert gl.pass_rate < gg.pass_rate


def test_bad_input():
    d = blob()
    with pytest.raises(InputError, match="evaluated"):
        gamma_index(d, d[:-1], SPACING)
    with pytest.raises(InputError, match="distance_mm"):
        gamma_index(d, d, SPACING, 3, 0)
    with pytest.raises(InputError, match="normalisation"):
        gamma_index(np.zeros_like(d), d, SPACING)
    with pytest.raises(InputError, match="finite"):
        gamma_index(d, np.where(d > 5, np.nan, d), SPACING)


def test_against_pymedphys():
    pymedphys = pytest.importorskip("pymedphys")
    shape, spacing = (14, 18, 20), (2.0, 2.0, 2.5)
    _, axes = grid(shape, spacing)
    ref = blob(shape=shape, spacing=spacing) + blob(shift_x=12.0, scale=0.3, shape=shape, spacing=spacing, sigma=4)
    ev = blob(shift_x=1.3, scale=1.02, shape=shape, spacing=spacing) + \
        blob(shift_x=12.5, scale=0.3, shape=shape, spacing=spacing, sigma=4)
    for dd, dta, local in ((3, 3, False), (1, 1, False), (2, 2, True)):
        ours = gamma_index(ref, ev, spacing, dd, dta, local=local, threshold_percent=10, max_gamma=2)
        theirs = pymedphys.gamma(axes, ref, axes, ev, dd, dta, lower_percent_dose_cutoff=10, interp_fraction=10,
                                 max_gamma=2, local_gamma=local, interp_algo="scipy")
        both = ~np.isnan(ours.gamma)
        np.testing.assert_array_equal(both, ~np.isnan(theirs))
        diff = ours.gamma[both] - np.minimum(theirs[both], 2.0)
        # both search a discrete set of positions (upper bounds of the true minimum); ours refines
        # its best position, so it is lower or equal up to pymedphys's shell sampling. On the
        # grid's outer layer pymedphys extrapolates beyond the grid and we do not: compare inside.
        inner = np.zeros(shape, bool)
        inner[1:-1, 1:-1, 1:-1] = True
        assert np.median(np.abs(diff)) < 0.05
        assert np.max(diff[inner[both]]) < (0.03 if not local else 0.1)
        p_theirs = np.mean(theirs[both] <= 1)
        # pymedphys's gammas sit a little higher (coarser sampling: e.g. 0.966 here where a brute-force
        # minimisation finds 0.966 and pymedphys 1.000 at 1 %/1 mm), so our pass rate may be higher
        assert -0.01 < ours.pass_rate - p_theirs < 0.05
