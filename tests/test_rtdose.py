"""The DICOM RT Dose writer on grids of several orientations: read back with pydicom
(rptdose.analysis.doseio.read_rtdose) and SimpleITK, compared in patient space.

Tolerance: uint32 pixels with DoseGridScaling = max / (2**32 - 1), so the stored dose differs
from the written one by at most half a step (1.2e-10 of the maximum; we allow 1e-9)."""

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from rptdose.analysis.doseio import read_rtdose
from rptdose.errors import InputError
from rptdose.io.rtdose import write_rtdose

DIRECTIONS = {"identity": (1, 0, 0, 0, 1, 0, 0, 0, 1), "frames_against_normal": (1, 0, 0, 0, 1, 0, 0, 0, -1),
              "rotated_90": (0, -1, 0, 1, 0, 0, 0, 0, 1), "prone": (-1, 0, 0, 0, -1, 0, 0, 0, 1)}


def _image(array, geometry):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(geometry["spacing_mm"])
    img.SetOrigin(geometry["origin_mm"])
    img.SetDirection(geometry["direction"])
    return img


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_geometry_round_trip(tmp_path, name):
    dose = np.random.default_rng(1).random((5, 6, 7)) * 30.0
    geo = {"spacing_mm": (2.0, 3.0, 4.0), "origin_mm": (-10.0, 5.0, 7.0), "direction": DIRECTIONS[name]}
    path = write_rtdose(tmp_path / "dose.dcm", dose, geo, reference={"FrameOfReferenceUID": "1.2.3.4"})
    ds = pydicom.dcmread(str(path))
    assert ds.FrameOfReferenceUID == "1.2.3.4" and ds.BitsAllocated == 32
    ref = _image(dose, geo)
    back = read_rtdose(path)
    on_ref = sitk.Resample(back.to_sitk(), ref, sitk.Transform(), sitk.sitkNearestNeighbor, -1.0)
    np.testing.assert_allclose(sitk.GetArrayFromImage(on_ref), dose, rtol=0, atol=1e-9 * dose.max())
    img = sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat64) * float(ds.DoseGridScaling)
    on_ref = sitk.Resample(img, ref, sitk.Transform(), sitk.sitkNearestNeighbor, -1.0)
    np.testing.assert_allclose(sitk.GetArrayFromImage(on_ref), dose, rtol=0, atol=1e-9 * dose.max())


def test_refuses_bad_values_and_leaves_nothing(tmp_path):
    geo = {"spacing_mm": (2.0, 2.0, 2.0), "origin_mm": (0.0, 0.0, 0.0), "direction": (1, 0, 0, 0, 1, 0, 0, 0, 1)}
    with pytest.raises(InputError, match="expected finite doses >= 0"):
        write_rtdose(tmp_path / "d.dcm", -np.ones((2, 2, 2)), geo)
    with pytest.raises(InputError, match="orthonormal"):
        write_rtdose(tmp_path / "d.dcm", np.ones((2, 2, 2)), dict(geo, direction=(1, 0, 0, 0, 1, 0, 0, 1, 0)))
    with pytest.raises(InputError, match="dose_type"):
        write_rtdose(tmp_path / "d.dcm", np.ones((2, 2, 2)), geo, dose_type="EFFECTIVE_BED")
    assert list(tmp_path.iterdir()) == []
    zero = write_rtdose(tmp_path / "z.dcm", np.zeros((2, 2, 2)), geo)
    assert float(pydicom.dcmread(str(zero)).DoseGridScaling) == 1.0 and read_rtdose(zero).dose_gy.max() == 0.0
