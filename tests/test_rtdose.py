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
from rptdose.io.rtdose import DOSE_SUMMATION_TYPE, reference_identity, write_rtdose

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


# ---- conformance: Type 1 and Type 2 attributes of the IODs (DICOM PS3.3) ------------------------
#
# Type 1: present with a value; Type 2: present, possibly empty (PS3.5 section 7.4). The module
# lists of the IODs: RT Dose IOD, PS3.3 A.18.3 (Table A.18.3-1); RT Structure Set IOD, PS3.3
# A.19.3 (Table A.19.3-1). The attribute Types: the module tables named below (PS3.3; read from
# the 2016 edition's tables, and for the RT Dose and Structure Set modules also from the current
# edition). Conditional (1C/2C) attributes are checked where their condition holds for the files
# rptdose writes; Type 3 attributes are not checked.

PATIENT = ("Patient, C.7.1.1, Table C.7-1",
           {"PatientName": 2, "PatientID": 2, "PatientBirthDate": 2, "PatientSex": 2})
GENERAL_STUDY = ("General Study, C.7.2.1, Table C.7-3",
                 {"StudyInstanceUID": 1, "StudyDate": 2, "StudyTime": 2, "ReferringPhysicianName": 2,
                  "StudyID": 2, "AccessionNumber": 2})
RT_SERIES = ("RT Series, C.8.8.1, Table C.8-37",
             {"Modality": 1, "SeriesInstanceUID": 1, "SeriesNumber": 2, "OperatorsName": 2})
FRAME_OF_REFERENCE = ("Frame of Reference, C.7.4.1, Table C.7-6",
                      {"FrameOfReferenceUID": 1, "PositionReferenceIndicator": 2})
GENERAL_EQUIPMENT = ("General Equipment, C.7.5.1, Table C.7-8", {"Manufacturer": 2})
GENERAL_IMAGE = ("General Image, C.7.6.1, Table C.7-9", {"InstanceNumber": 2})
IMAGE_PLANE = ("Image Plane, C.7.6.2, Table C.7-10",
               {"PixelSpacing": 1, "ImageOrientationPatient": 1, "ImagePositionPatient": 1, "SliceThickness": 2})
IMAGE_PIXEL = ("Image Pixel, C.7.6.3, Table C.7-11a/b",
               {"SamplesPerPixel": 1, "PhotometricInterpretation": 1, "Rows": 1, "Columns": 1, "BitsAllocated": 1,
                "BitsStored": 1, "HighBit": 1, "PixelRepresentation": 1,
                "PixelData": 1})                      # 1C: required without a Pixel Data Provider URL
MULTI_FRAME = ("Multi-frame, C.7.6.6, Table C.7-14", {"NumberOfFrames": 1, "FrameIncrementPointer": 1})
RT_DOSE = ("RT Dose, C.8.8.3, Table C.8-39",
           {"DoseUnits": 1, "DoseType": 1, "DoseSummationType": 1,
            # 1C, required with Pixel Data: the pixel description and the scaling
            "SamplesPerPixel": 1, "PhotometricInterpretation": 1, "BitsAllocated": 1, "BitsStored": 1, "HighBit": 1,
            "PixelRepresentation": 1, "DoseGridScaling": 1,
            # 1C, required for multi-frame pixel data whose Frame Increment Pointer points to it
            "GridFrameOffsetVector": 1})
SOP_COMMON = ("SOP Common, C.12.1, Table C.12-1", {"SOPClassUID": 1, "SOPInstanceUID": 1})
STRUCTURE_SET = ("Structure Set, C.8.8.5, Table C.8-41",
                 {"StructureSetLabel": 1, "StructureSetDate": 2, "StructureSetTime": 2, "StructureSetROISequence": 1})
STRUCTURE_SET_ROI_ITEM = ("Structure Set ROI Sequence item, Table C.8-41",
                          {"ROINumber": 1, "ReferencedFrameOfReferenceUID": 1, "ROIName": 2,
                           "ROIGenerationAlgorithm": 2})
REFERENCED_FOR_ITEM = ("Referenced Frame of Reference Sequence item, Table C.8-41", {"FrameOfReferenceUID": 1})
ROI_CONTOUR = ("ROI Contour, C.8.8.6, Table C.8-42", {"ROIContourSequence": 1})
ROI_CONTOUR_ITEM = ("ROI Contour Sequence item, Table C.8-42", {"ReferencedROINumber": 1})
CONTOUR_ITEM = ("Contour Sequence item, Table C.8-42",
                {"ContourGeometricType": 1, "NumberOfContourPoints": 1, "ContourData": 1})
RT_ROI_OBSERVATIONS = ("RT ROI Observations, C.8.8.8, Table C.8-44", {"RTROIObservationsSequence": 1})
RT_ROI_OBSERVATIONS_ITEM = ("RT ROI Observations Sequence item, Table C.8-44",
                            {"ObservationNumber": 1, "ReferencedROINumber": 1, "RTROIInterpretedType": 2,
                             "ROIInterpreter": 2})

RT_DOSE_IOD = (PATIENT, GENERAL_STUDY, RT_SERIES, FRAME_OF_REFERENCE, GENERAL_EQUIPMENT, GENERAL_IMAGE, IMAGE_PLANE,
               IMAGE_PIXEL, MULTI_FRAME, RT_DOSE, SOP_COMMON)
RT_STRUCTURE_SET_IOD = (PATIENT, GENERAL_STUDY, RT_SERIES, GENERAL_EQUIPMENT, STRUCTURE_SET, ROI_CONTOUR,
                        RT_ROI_OBSERVATIONS, SOP_COMMON)

#: Dose Summation Types that make the Referenced RT Plan Sequence (300C,0002) required (Table
#: C.8-39, Type 1C), and the one that makes the Referenced Treatment Record Sequence required.
NEEDS_RT_PLAN = ("PLAN", "MULTI_PLAN", "FRACTION", "BEAM", "BRACHY", "FRACTION_SESSION", "BEAM_SESSION",
                 "BRACHY_SESSION", "CONTROL_POINT")
NEEDS_RECORD = ("RECORD",)


def missing(ds, modules) -> list[str]:
    """'module: keyword (Type n)' for each attribute of ``modules`` that ``ds`` lacks (Type 1:
    absent or empty; Type 2: absent)."""
    out = []
    for name, attrs in modules:
        for kw, typ in attrs.items():
            if kw not in ds:
                out.append(f"{name}: {kw} (Type {typ}) absent")
            elif typ == 1 and (ds[kw].value is None or ds[kw].value == "" or ds[kw].VM == 0):
                out.append(f"{name}: {kw} (Type 1) empty")
    return out


def _ct(tmp_path, patient_name="Test^Patient"):
    import datetime as dt

    from rptdose.io.dicom_write import Identity, write_ct_series

    ident = Identity("P001", patient_name, "1.2.826.0.1.3680043.8.498.1")
    folder = write_ct_series(tmp_path / "ct", np.zeros((3, 4, 5)), (2.0, 2.0, 3.0), (0.0, 0.0, 0.0), ident=ident,
                             for_uid="1.2.826.0.1.3680043.8.498.2", when=dt.datetime(2026, 3, 2, 9, 30))
    return folder


@pytest.mark.parametrize("dose_type", ["PHYSICAL", "ERROR"])
def test_rtdose_has_the_type_1_and_2_attributes_of_the_iod(tmp_path, dose_type):
    ref = reference_identity(_ct(tmp_path))
    geo = {"spacing_mm": (2.0, 2.0, 3.0), "origin_mm": (0.0, 0.0, 0.0), "direction": (1, 0, 0, 0, 1, 0, 0, 0, 1)}
    dose = np.random.default_rng(2).random((3, 4, 5)) * 5.0
    path = write_rtdose(tmp_path / "dose.dcm", dose, geo, reference=ref, dose_type=dose_type)
    ds = pydicom.dcmread(str(path))
    assert missing(ds, RT_DOSE_IOD) == []
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.2" == ds.file_meta.MediaStorageSOPClassUID
    assert ds.Modality == "RTDOSE"
    # the Type 1C references: none needed with rptdose's Dose Summation Type, and none written
    assert ds.DoseSummationType == DOSE_SUMMATION_TYPE == "ADMINISTRATION"
    assert DOSE_SUMMATION_TYPE not in NEEDS_RT_PLAN + NEEDS_RECORD
    if ds.DoseSummationType in NEEDS_RT_PLAN:
        assert "ReferencedRTPlanSequence" in ds and len(ds.ReferencedRTPlanSequence) >= 1
    if ds.DoseSummationType in NEEDS_RECORD:
        assert "ReferencedTreatmentRecordSequence" in ds and len(ds.ReferencedTreatmentRecordSequence) >= 1
    assert len(ds.DoseSummationType) <= 16 and ds.DoseSummationType.replace("_", "").isalnum()   # a CS value
    # Frame Increment Pointer -> Grid Frame Offset Vector (C.8.8.3.2), one offset per frame
    assert ds.FrameIncrementPointer == pydicom.tag.Tag("GridFrameOffsetVector")
    assert len(ds.GridFrameOffsetVector) == ds.NumberOfFrames == 3
    # RT Dose specialisations of the Image Pixel attributes (C.8.8.3.4)
    assert ds.SamplesPerPixel == 1 and ds.PhotometricInterpretation == "MONOCHROME2"
    assert ds.BitsAllocated in (16, 32) and ds.BitsStored == ds.BitsAllocated and ds.HighBit == ds.BitsStored - 1
    assert ds.PixelRepresentation == (1 if dose_type == "ERROR" else 0)
    np.testing.assert_allclose(ds.pixel_array * float(ds.DoseGridScaling), dose, rtol=0, atol=1e-8 * dose.max())
    # the study and patient of the reference CT
    ct = pydicom.dcmread(str(sorted((tmp_path / "ct").iterdir())[0]))
    for kw in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID", "PatientName", "StudyDate", "StudyTime"):
        assert str(ds[kw].value) == str(ct[kw].value), kw


def test_rtdose_without_reference_and_non_ascii_name(tmp_path):
    """No reference CT: new UIDs, empty Type 2 values; a name beyond ASCII: Specific Character Set
    (Type 1C) says UTF-8 and the name reads back."""
    geo = {"spacing_mm": (2.0, 2.0, 2.0), "origin_mm": (0.0, 0.0, 0.0), "direction": (1, 0, 0, 0, 1, 0, 0, 0, 1)}
    ds = pydicom.dcmread(str(write_rtdose(tmp_path / "d.dcm", np.ones((2, 2, 2)), geo)))
    assert missing(ds, RT_DOSE_IOD) == [] and "SpecificCharacterSet" not in ds
    ref = reference_identity(_ct(tmp_path, "Müller^Jürgen"))
    ds = pydicom.dcmread(str(write_rtdose(tmp_path / "u.dcm", np.ones((3, 4, 5)), dict(geo, spacing_mm=(2, 2, 3)),
                                          reference=ref)))
    assert missing(ds, RT_DOSE_IOD) == []
    assert ds.SpecificCharacterSet == "ISO_IR 192" and str(ds.PatientName) == "Müller^Jürgen"


def test_rtstruct_has_the_type_1_and_2_attributes_of_the_iod(tmp_path):
    import datetime as dt

    from rptdose.io.dicom_write import Identity, write_rtstruct

    masks = {"kidney": np.zeros((3, 8, 8), bool), "empty": np.zeros((3, 8, 8), bool)}
    masks["kidney"][1, 2:5, 3:6] = True
    path = write_rtstruct(tmp_path / "rs.dcm", masks, (2.0, 2.0, 3.0), (0.0, 0.0, 0.0),
                          ident=Identity("P001", "Test^Patient", "1.2.3.4"), for_uid="1.2.3.5",
                          when=dt.datetime(2026, 3, 2, 9, 30), kinds={"kidney": "ORGAN"})
    ds = pydicom.dcmread(str(path))
    assert missing(ds, RT_STRUCTURE_SET_IOD) == []
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.481.3" and ds.Modality == "RTSTRUCT"
    problems = []
    for item in ds.ReferencedFrameOfReferenceSequence:
        problems += missing(item, [REFERENCED_FOR_ITEM])
    for item in ds.StructureSetROISequence:
        problems += missing(item, [STRUCTURE_SET_ROI_ITEM])
    for item in ds.ROIContourSequence:
        problems += missing(item, [ROI_CONTOUR_ITEM])
        for contour in item.get("ContourSequence", []):
            problems += missing(contour, [CONTOUR_ITEM])
            assert len(contour.ContourData) == 3 * contour.NumberOfContourPoints
    for item in ds.RTROIObservationsSequence:
        problems += missing(item, [RT_ROI_OBSERVATIONS_ITEM])
    assert problems == []
    assert [len(i.get("ContourSequence", [])) > 0 for i in ds.ROIContourSequence] == [True, False]
    numbers = {i.ROINumber for i in ds.StructureSetROISequence}
    assert {i.ReferencedROINumber for i in ds.ROIContourSequence} == numbers
    assert {i.ReferencedROINumber for i in ds.RTROIObservationsSequence} == numbers


def test_the_check_finds_what_is_missing(tmp_path):
    """The checker itself: a Type 1 attribute emptied and a Type 2 attribute removed are reported."""
    geo = {"spacing_mm": (2.0, 2.0, 2.0), "origin_mm": (0.0, 0.0, 0.0), "direction": (1, 0, 0, 0, 1, 0, 0, 0, 1)}
    ds = pydicom.dcmread(str(write_rtdose(tmp_path / "d.dcm", np.ones((2, 2, 2)), geo)))
    ds.DoseUnits = ""
    del ds.PatientSex
    assert missing(ds, RT_DOSE_IOD) == ["Patient, C.7.1.1, Table C.7-1: PatientSex (Type 2) absent",
                                        "RT Dose, C.8.8.3, Table C.8-39: DoseUnits (Type 1) empty"]
