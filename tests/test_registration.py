"""CT-to-CT registration (rptdose.quant.registration) on the 32^3 synthetic patient: a known
rigid motion is recovered, the SPECT follows, transforms and check images are written."""

import numpy as np
import pytest
import SimpleITK as sitk

import _synthetic_dicom as S
from rptdose.quant.plots import registration_figure
from rptdose.quant.outputs import write_figure
from rptdose.quant.registration import (METRIC_WORK_UNITS, RegistrationSettings, check_slices,
                                        read_transform_provenance, register_ct, resample, write_transform)

FAST = RegistrationSettings(iterations=80, sampling=0.3, seed=3)


def image(array, default_origin=S.ORIGIN):
    img = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
    img.SetSpacing(S.SPACING)
    img.SetOrigin(default_origin)
    return img


@pytest.fixture(scope="module")
def motion():
    """Fixed CT and SPECT, and the same moved by a known rigid transform A: moving(q) = fixed(A(q)).
    The registration should find R = A^-1 (it maps fixed points to moving points)."""
    fixed = image(S.hu_volume())
    spect = image(S.bq_per_ml(24 * S.HOUR))
    a = sitk.Euler3DTransform()
    a.SetCenter((0.0, 0.0, 0.0))
    a.SetRotation(0.0, 0.0, np.radians(4.0))
    a.SetTranslation((6.0, -4.0, 3.0))
    moving = sitk.Resample(fixed, fixed, a, sitk.sitkLinear, -1000.0)
    moving_spect = sitk.Resample(spect, spect, a, sitk.sitkLinear, 0.0)
    return fixed, spect, moving, moving_spect, a


def mapping_error_mm(t1, t2, points):
    return max(np.linalg.norm(np.subtract(t1.TransformPoint(p), t2.TransformPoint(p))) for p in points)


BODY_POINTS = [(x, y, z) for x in (-40.0, 0.0, 40.0) for y in (-30.0, 0.0, 30.0) for z in (-40.0, 0.0, 40.0)]


def test_rigid_registration_recovers_the_motion(motion):
    fixed, spect, moving, moving_spect, a = motion
    res = register_ct(fixed, moving, FAST)
    assert res.kind == "rigid" and np.isfinite(res.metric)
    err = mapping_error_mm(res.transform, a.GetInverse(), BODY_POINTS)
    assert err < 1.0, err                                 # a quarter voxel
    # the SPECT follows: back on the fixed grid it matches the original (activity kept to 2 %),
    # and what the true inverse gives (both carry two linear interpolations' blur)
    back = sitk.GetArrayFromImage(resample(moving_spect, fixed, res.transform))
    ideal = sitk.GetArrayFromImage(resample(moving_spect, fixed, a.GetInverse()))
    assert back.sum() == pytest.approx(sitk.GetArrayFromImage(spect).sum(), rel=0.02)
    assert np.corrcoef(back.ravel(), ideal.ravel())[0, 1] > 0.99


def test_deformable_step_and_identity(motion):
    fixed, spect, moving, moving_spect, a = motion
    s = RegistrationSettings(iterations=60, sampling=0.3, deformable=True, bspline_mesh_mm=64.0,
                             bspline_iterations=5)
    res = register_ct(fixed, moving, s)
    assert res.kind == "rigid+bspline"
    assert mapping_error_mm(res.transform, a.GetInverse(), BODY_POINTS) < 1.5
    none = register_ct(fixed, moving, RegistrationSettings(method="none"))
    assert none.kind == "identity"
    assert mapping_error_mm(none.transform, sitk.Transform(), BODY_POINTS) == 0.0


def transform_parameters(t):
    """All parameters (and fixed parameters) of a transform, composite ones flattened."""
    if t.GetName() == "CompositeTransform":
        c = sitk.CompositeTransform(t)
        return [v for i in range(c.GetNumberOfTransforms()) for v in transform_parameters(c.GetNthTransform(i))]
    return list(t.GetParameters()) + list(t.GetFixedParameters())


@pytest.mark.parametrize("settings", [FAST, RegistrationSettings(iterations=60, sampling=0.3, seed=3, deformable=True,
                                                                 bspline_mesh_mm=64.0, bspline_iterations=5)],
                         ids=["rigid", "rigid+bspline"])
def test_registration_is_bit_reproducible(motion, settings):
    """The same inputs and seed give the same bits, in one process and with another thread count
    (the metric is evaluated as one work unit; with more its partial sums are added in the order
    the units finish, and the parameters differed by up to ~1e-7 from run to run)."""
    fixed, spect, moving, moving_spect, a = motion
    runs = [register_ct(fixed, moving, settings) for _ in range(3)]
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    try:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1 if threads > 1 else 2)
        runs.append(register_ct(fixed, moving, settings))
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    first = runs[0]
    for r in runs[1:]:
        assert transform_parameters(r.transform) == transform_parameters(first.transform)
        assert (r.metric, r.iterations, r.stop) == (first.metric, first.iterations, first.stop)
        for img, default in ((moving, -1000.0), (moving_spect, 0.0)):
            np.testing.assert_array_equal(sitk.GetArrayFromImage(resample(img, fixed, r.transform, default)),
                                          sitk.GetArrayFromImage(resample(img, fixed, first.transform, default)))
    assert first.provenance["seed"] == settings.seed and first.provenance["metric_work_units"] == METRIC_WORK_UNITS
    assert first.provenance["threads"] >= 1


def test_transform_file_and_check_image(motion, tmp_path):
    fixed, spect, moving, moving_spect, a = motion
    res = register_ct(fixed, moving, FAST)
    path = write_transform(res.transform, tmp_path / "tp2_to_tp1.tfm", res.provenance)
    back = sitk.ReadTransform(str(path))
    assert transform_parameters(back) == pytest.approx(transform_parameters(res.transform), rel=1e-12, abs=1e-12)
    assert mapping_error_mm(back, res.transform, BODY_POINTS) < 1e-4
    prov = read_transform_provenance(path)
    assert prov["seed"] == "3" and prov["metric_work_units"] == str(METRIC_WORK_UNITS) and int(prov["threads"]) >= 1
    assert prov["simpleitk"] == sitk.Version.VersionString()
    assert path.read_text().startswith("#Insight Transform File")
    slices = check_slices(fixed, resample(moving, fixed, res.transform, -1000.0),
                          resample(moving_spect, fixed, res.transform))
    assert slices["ct_ref_axial"].shape == (32, 32) and slices["spect_coronal"].shape == (32, 32)
    png = write_figure(tmp_path / "check.png", registration_figure(slices, "test"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["check.png", "tp2_to_tp1.tfm"]   # no temporaries
