"""NM/SPECT import (rptdose.io.nm) and segmentations (rptdose.io.segmentation) on small
synthetic DICOM files written with pydicom (tests/_synthetic_dicom.py)."""

import datetime as dt
import os

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import _synthetic_dicom as S
from rptdose.errors import InputError
from rptdose.io.nm import nuclide_from_code_meaning, read_nm
from rptdose.io.segmentation import fill_polygon, read_label_map, read_rtstruct, read_seg

WHEN = S.ADMIN_TIME + dt.timedelta(hours=24)
SMALL = np.arange(4 * 5 * 6, dtype=float).reshape(4, 5, 6) * 10.0   # [z, y, x], distinct values
SP, ORG = (2.0, 3.0, 4.0), (-10.0, 20.0, 30.0)


def nm(tmp_path, name="nm.dcm", values=SMALL, **kw):
    kw.setdefault("acquisition", WHEN)
    return S.write_nm_multiframe(tmp_path / name, values, SP, ORG, S.NMOptions(**kw))


def test_multiframe_counts_geometry_units_timing(tmp_path):
    v = read_nm(nm(tmp_path))
    np.testing.assert_array_equal(v.values(), SMALL)
    assert v.image.GetSize() == (6, 5, 4)
    np.testing.assert_allclose(v.image.GetSpacing(), SP)
    np.testing.assert_allclose(v.image.GetOrigin(), ORG)
    np.testing.assert_allclose(v.image.GetDirection(), np.eye(3).ravel())
    assert v.units == "counts" and "Units (0054,1001)" in v.units_source
    assert v.acquisition_start == WHEN and "AcquisitionDate" in v.acquisition_start_source
    assert v.duration_s == pytest.approx(60 * 30.0) and "RotationInformationSequence" in v.duration_source
    assert v.voxel_volume_ml == pytest.approx(2 * 3 * 4e-3)
    rp = v.radiopharmaceutical
    assert rp.nuclide == "Lu-177" and rp.total_dose_bq == pytest.approx(7.4e9)   # NM: MBq in the file
    assert rp.start == S.ADMIN_TIME and rp.half_life_s == pytest.approx(S.LU177_HALF_LIFE_S, rel=1e-5)
    assert v.modality == "NM" and v.patient_id == "SYN001"


def test_multiframe_slice_order_and_negative_spacing(tmp_path):
    """SpacingBetweenSlices < 0 stacks the frames in front of the first (PS3.3 C.8.4.15); a
    SliceVector reorders frames: the volume and its geometry come out the same."""
    ref = read_nm(nm(tmp_path))
    for i, kw in enumerate([dict(spacing_sign=-1.0), dict(slice_vector_reversed=True),
                            dict(spacing_sign=-1.0, slice_vector_reversed=True)]):
        v = read_nm(nm(tmp_path, f"nm{i}.dcm", **kw))
        np.testing.assert_array_equal(v.values(), ref.values())
        np.testing.assert_allclose(v.image.GetOrigin(), ref.image.GetOrigin())
        np.testing.assert_allclose(v.image.GetDirection(), ref.image.GetDirection())


def test_timing_fallbacks(tmp_path):
    v = read_nm(nm(tmp_path, rotation=None, frame_duration_ms=900_000))
    assert v.duration_s == 900.0 and v.duration_source == "ActualFrameDuration (0018,1242)"
    v = read_nm(nm(tmp_path, "b.dcm", acquisition=None, series_time=WHEN))
    assert v.acquisition_start == WHEN and "SeriesDate" in v.acquisition_start_source
    v = read_nm(nm(tmp_path, "c.dcm", rotation=None, drop=("AcquisitionDate", "AcquisitionTime", "SeriesDate",
                                                           "SeriesTime", "StudyDate", "StudyTime")))
    assert v.acquisition_start is None and "absent" in v.acquisition_start_source
    assert v.duration_s is None and "absent" in v.duration_source
    v = read_nm(nm(tmp_path, "d.dcm", radiopharm_start=None, radiopharm_start_time_only=S.ADMIN_TIME))
    assert v.radiopharmaceutical.start is None and v.radiopharmaceutical.start_time_only == S.ADMIN_TIME.time()


def test_quantitative_units(tmp_path):
    conc = SMALL * 1234.5
    v = read_nm(nm(tmp_path, values=conc, units=None, rwvm_unit="Bq/ml"))
    assert v.units == "bq_per_ml" and "RealWorldValueMappingSequence" in v.units_source
    np.testing.assert_allclose(v.values(), conc, atol=conc.max() / 60000)
    v = read_nm(nm(tmp_path, "k.dcm", values=conc / 1000, units=None, rwvm_unit="kBq/ml"))
    np.testing.assert_allclose(v.values(), conc, atol=conc.max() / 60000)
    v = read_nm(nm(tmp_path, "r.dcm", values=conc, units="BQML"))          # Units + RescaleSlope
    assert v.units == "bq_per_ml"
    np.testing.assert_allclose(v.values(), conc, atol=conc.max() / 60000)
    v = read_nm(nm(tmp_path, "n.dcm", units=None))                         # NM without units: counts
    assert v.units == "counts" and "default" in v.units_source
    v = read_nm(nm(tmp_path, "c.dcm", units="CPS"))
    assert v.units == "cps"


def test_pet_style_series(tmp_path):
    conc = np.stack([SMALL[k] * (k + 1) * 100.0 for k in range(4)])  # different scale per slice
    folder = S.write_pet_series(tmp_path / "pt", conc, SP, ORG, acquisition=WHEN, frame_duration_ms=600_000)
    v = read_nm(folder)
    assert v.units == "bq_per_ml" and v.modality == "PT" and v.decay_correction == "START"
    for k in range(4):  # each slice's own RescaleSlope
        np.testing.assert_allclose(v.values()[k], conc[k], atol=conc[k].max() / 30000)
    np.testing.assert_allclose(v.image.GetOrigin(), ORG)
    np.testing.assert_allclose(v.image.GetSpacing(), SP)
    assert v.duration_s == 600.0 and v.acquisition_start == WHEN
    assert v.radiopharmaceutical.total_dose_bq == pytest.approx(7.4e9)   # PET: Bq in the file
    os.remove(folder / "pt002.dcm")
    with pytest.raises(InputError, match="pt'.*non-uniform slice spacing.*ImagePositionPatient"):
        read_nm(folder)
    S.write_pet_series(tmp_path / "pt_nounits", conc, SP, ORG, acquisition=WHEN, units="PROPCNTS")
    with pytest.raises(InputError, match=r"Units \(0054,1001\) 'PROPCNTS'.*expected BQML, CNTS or CPS"):
        read_nm(tmp_path / "pt_nounits")


def test_bad_nm_inputs(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_nm(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty.*no DICOM images"):
        read_nm(tmp_path / "empty")
    (tmp_path / "junk.dcm").write_text("not dicom")
    with pytest.raises(InputError, match="junk.dcm.*not a DICOM file"):
        read_nm(tmp_path / "junk.dcm")
    with pytest.raises(InputError, match=r"Units \(0054,1001\) 'SUV'"):
        read_nm(nm(tmp_path, "suv.dcm", units="SUV"))
    with pytest.raises(InputError, match=r"SOPClassUID \(0008,0016\) Secondary Capture"):
        read_nm(nm(tmp_path, "sc.dcm", sop_class=S.SC_STORAGE))
    with pytest.raises(InputError, match=r"Modality \(0008,0060\) CT.*expected NM or PT"):
        read_nm(nm(tmp_path, "ct.dcm", modality="CT"))
    with pytest.raises(InputError, match=r"ImageType \(0008,0008\).*TOMO.*projections.*RECON TOMO"):
        read_nm(nm(tmp_path, "proj.dcm", image_type=("ORIGINAL", "PRIMARY", "TOMO", "EMISSION")))
    with pytest.raises(InputError, match="gated"):
        read_nm(nm(tmp_path, "gated.dcm", image_type=("ORIGINAL", "PRIMARY", "RECON GATED TOMO", "EMISSION")))
    with pytest.raises(InputError, match=r"PixelSpacing \(0028,0030\) absent"):
        read_nm(nm(tmp_path, "nops.dcm", drop=("PixelSpacing",)))
    with pytest.raises(InputError, match=r"ImageOrientationPatient.*ImagePositionPatient.*DetectorInformationSequence"):
        read_nm(nm(tmp_path, "nogeo.dcm", drop=("DetectorInformationSequence",)))
    with pytest.raises(InputError, match=r"SpacingBetweenSlices \(0018,0088\) and SliceThickness"):
        read_nm(nm(tmp_path, "nosp.dcm", drop=("SpacingBetweenSlices", "SliceThickness")))
    with pytest.raises(InputError, match=r"RadionuclideTotalDose \(0018,1074\) 7.4e\+09.*MBq"):
        read_nm(nm(tmp_path, "bq.dcm", total_dose_mbq=7.4e9))
    with pytest.raises(InputError, match=r"single frame.*NumberOfFrames"):
        read_nm(nm(tmp_path, "one.dcm", values=SMALL[:1]))
    # two NM series in one folder: refused, unless one is chosen
    both = tmp_path / "both"
    nm(both, "a.dcm")
    nm(both, "b.dcm", values=SMALL * 2)
    with pytest.raises(InputError, match="2 DICOM series.*spect_series_uid"):
        read_nm(both)
    uid = pydicom.dcmread(both / "b.dcm", stop_before_pixels=True).SeriesInstanceUID
    np.testing.assert_array_equal(read_nm(both, series_uid=uid).values(), SMALL * 2)
    with pytest.raises(InputError, match="spect_series_uid '1.2.3'.*not in"):
        read_nm(both, series_uid="1.2.3")


def test_nuclide_names_from_dicom():
    assert nuclide_from_code_meaning("^177^Lutetium") == "Lu-177"
    assert nuclide_from_code_meaning("Lutetium-177") == "Lu-177"
    assert nuclide_from_code_meaning("^99m^Technetium") == "Tc-99m"
    assert nuclide_from_code_meaning("^131^Iodine") == "I-131"
    assert nuclide_from_code_meaning("177Lu") == "Lu-177"
    assert nuclide_from_code_meaning("something else") is None


# ---- segmentations ----------------------------------------------------------------------------

def reference_image():
    img = sitk.Image(S.SHAPE[::-1], sitk.sitkFloat32)
    img.SetSpacing(S.SPACING)
    img.SetOrigin(S.ORIGIN)
    return img


def test_polygon_fill_even_odd():
    square = np.array([1.0, 5.0, 5.0, 1.0]), np.array([1.0, 1.0, 5.0, 5.0])
    m = fill_polygon(*square, (8, 8))
    expect = np.zeros((8, 8), bool)
    expect[1:5, 1:5] = True      # centres on the lower/left edges are in, on the upper/right out
    np.testing.assert_array_equal(m, expect)
    hole = fill_polygon(np.array([2.5, 3.5, 3.5, 2.5]), np.array([2.5, 2.5, 3.5, 3.5]), (8, 8))
    assert (m ^ hole).sum() == 15 and not (m ^ hole)[3, 3]
    assert not fill_polygon(np.array([-5.0, -1, -1]), np.array([0.0, 0, 5]), (8, 8)).any()


def test_rtstruct_rasterised_exactly(tmp_path):
    path = S.write_rtstruct(tmp_path / "rs.dcm", S.contours(), for_uid="1.2.3.4")
    masks = read_rtstruct(path, reference_image(), frame_of_reference_uid="1.2.3.4")
    truth = S.region_masks()
    assert set(masks) == set(truth)            # the POINT ROI 'marker' is left out
    for name in truth:
        np.testing.assert_array_equal(masks[name], truth[name], err_msg=name)
    renamed = read_rtstruct(path, reference_image(), names={"organ": "liver"})
    assert list(renamed) == ["organ"] and np.array_equal(renamed["organ"], truth["liver"])
    with pytest.raises(InputError, match=r"segmentation.names.organ 'Liver'.*no ROIName.*\['body'"):
        read_rtstruct(path, reference_image(), names={"organ": "Liver"})
    with pytest.raises(InputError, match=r"ReferencedFrameOfReferenceUID \(3006,0024\) 1.2.3.4.*9.9"):
        read_rtstruct(path, reference_image(), frame_of_reference_uid="9.9")
    # contours drawn every second slice: each plane stands for its neighbours
    sparse = {"liver": S.contours()["liver"][::2]}
    p2 = S.write_rtstruct(tmp_path / "sparse.dcm", sparse, for_uid="1.2.3.4", extra_point_roi=False)
    m2 = read_rtstruct(p2, reference_image())["liver"]
    assert abs(int(m2.sum()) - int(truth["liver"].sum())) < 0.15 * truth["liver"].sum()
    # an oblique contour
    tilted = [np.array([[0, 0, 0], [10, 0, 4], [10, 10, 8], [0, 10, 4]], dtype=float)]
    p3 = S.write_rtstruct(tmp_path / "tilt.dcm", {"x": tilted}, for_uid="1.2.3.4", extra_point_roi=False)
    with pytest.raises(InputError, match="tilt.dcm.*ROI 'x'.*spans.*slices.*axial slice planes"):
        read_rtstruct(p3, reference_image())
    with pytest.raises(InputError, match="expected an RT Structure Set"):
        read_rtstruct(S.write_seg(tmp_path / "seg.dcm", {"a": truth["liver"]}, S.SPACING, S.ORIGIN,
                                  for_uid="1.2.3.4"), reference_image())


def test_seg_and_label_map(tmp_path):
    truth = S.region_masks()
    path = S.write_seg(tmp_path / "seg.dcm", truth, S.SPACING, S.ORIGIN, for_uid="1.2.3.4")
    masks = read_seg(path, reference_image(), frame_of_reference_uid="1.2.3.4")
    for name in truth:
        np.testing.assert_array_equal(masks[name], truth[name], err_msg=name)
    # onto a coarser grid: the fraction >= 0.5 rule keeps the volume
    coarse = sitk.Image((16, 16, 16), sitk.sitkFloat32)
    coarse.SetSpacing((8.0, 8.0, 8.0))
    coarse.SetOrigin((-60.0, -60.0, -60.0))
    m = read_seg(path, coarse, names={"liver": "liver"})["liver"]
    assert abs(m.sum() * 8 - truth["liver"].sum()) < 0.2 * truth["liver"].sum()
    with pytest.raises(InputError, match=r"FrameOfReferenceUID \(0020,0052\) 1.2.3.4.*expected the reference CT"):
        read_seg(path, reference_image(), frame_of_reference_uid="5.6")
    lab = np.zeros(S.SHAPE, np.uint8)
    lab[truth["liver"]], lab[truth["tumour"]] = 3, 7
    img = sitk.GetImageFromArray(lab)
    img.SetSpacing(S.SPACING)
    img.SetOrigin(S.ORIGIN)
    sitk.WriteImage(img, str(tmp_path / "lab.nii.gz"))
    masks = read_label_map(tmp_path / "lab.nii.gz", reference_image(), {"liver": 3, "tumour": 7})
    assert np.array_equal(masks["liver"], truth["liver"]) and np.array_equal(masks["tumour"], truth["tumour"])
    with pytest.raises(InputError, match=r"segmentation.names.kidney 5.*no voxel has this label.*\[3, 7\]"):
        read_label_map(tmp_path / "lab.nii.gz", reference_image(), {"kidney": 5})
    far = sitk.GetImageFromArray(lab)
    far.SetOrigin((5000.0, 0.0, 0.0))
    sitk.WriteImage(far, str(tmp_path / "far.nii.gz"))
    with pytest.raises(InputError, match="far.nii.gz.*does not overlap the reference CT"):
        read_label_map(tmp_path / "far.nii.gz", reference_image(), {"liver": 3})


def test_nuclide_codes_alpha_emitters():
    # RadionuclideCodeSequence CodeMeanings as written for the alpha therapies (SNOMED/DICOM CID 4020 style)
    assert nuclide_from_code_meaning("^225^Actinium") == "Ac-225"
    assert nuclide_from_code_meaning("Actinium-225") == "Ac-225"
    assert nuclide_from_code_meaning("225Ac") == "Ac-225"
    assert nuclide_from_code_meaning("^212^Lead") == "Pb-212"
    assert nuclide_from_code_meaning("Lead-212") == "Pb-212"
    assert nuclide_from_code_meaning("^68^Gallium") == "Ga-68"
    assert nuclide_from_code_meaning("^18^Fluorine") == "F-18"


@pytest.mark.parametrize("correction", ["ADMIN", "NONE", None])
def test_pet_decay_correction_recorded(tmp_path, correction):
    conc = SMALL[:3] + 5.0
    folder = S.write_pet_series(tmp_path / "pt", conc, SP, ORG, acquisition=WHEN, decay_correction=correction)
    v = read_nm(folder)
    assert v.units == "bq_per_ml" and v.modality == "PT"
    assert v.decay_correction == (correction or "START")   # absent: START (DICOM PET default)


def test_pet_decay_factor(tmp_path):
    import pydicom
    conc = SMALL[:3] + 5.0

    def with_factor(name, correction, factor):
        folder = S.write_pet_series(tmp_path / name, conc, SP, ORG, acquisition=WHEN, decay_correction=correction)
        for f in sorted(folder.iterdir()):
            ds = pydicom.dcmread(f)
            ds.DecayFactor = factor
            ds.save_as(f)
        return folder

    v = read_nm(with_factor("start", "START", "1.0821"))
    assert v.decay_correction == "START" and "DecayFactor (0054,1321) 1.0821" in v.decay_correction_source
    assert read_nm(with_factor("none1", "NONE", "1")).decay_correction == "NONE"
    with pytest.raises(InputError, match=r"DecayFactor \(0054,1321\) 1.2 with DecayCorrection NONE"):
        read_nm(with_factor("none", "NONE", "1.2"))
    with pytest.raises(InputError, match=r"DecayFactor \(0054,1321\) '-1'.*expected a number > 0"):
        read_nm(with_factor("neg", "ADMIN", "-1"))
