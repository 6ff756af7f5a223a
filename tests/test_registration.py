"""CT-to-CT registration (rptdose.quant.registration) on the 32^3 synthetic patient: a known
rigid motion is recovered, the SPECT follows, transforms and check images are written."""

import numpy as np
import pytest
import SimpleITK as sitk

import _synthetic_dicom as S
from rptdose.quant.plots import registration_figure
from rptdose.quant.outputs import write_figure
from rptdose.quant.registration import (RegistrationSettings, check_slices, register_ct, resample,
                                        write_transform)

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
    # deterministic for a given seed
    again = register_ct(fixed, moving, FAST)
    assert mapping_error_mm(again.transform, res.transform, BODY_POINTS) < 1e-6


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


def test_transform_file_and_check_image(motion, tmp_path):
    fixed, spect, moving, moving_spect, a = motion
    res = register_ct(fixed, moving, FAST)
    path = write_transform(res.transform, tmp_path / "tp2_to_tp1.tfm")
    back = sitk.ReadTransform(str(path))
    assert mapping_error_mm(back, res.transform, BODY_POINTS) < 1e-4
    slices = check_slices(fixed, resample(moving, fixed, res.transform, -1000.0),
                          resample(moving_spect, fixed, res.transform))
    assert slices["ct_ref_axial"].shape == (32, 32) and slices["spect_coronal"].shape == (32, 32)
    png = write_figure(tmp_path / "check.png", registration_figure(slices, "test"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["check.png", "tp2_to_tp1.tfm"]   # no temporaries
