"""Writers of the DICOM objects a SPECT/CT study is made of (pydicom), for synthetic studies.

=========================  ====================================================================
function                   writes
=========================  ====================================================================
``write_ct_series``        a CT series, one file per axial slice (identity orientation), HU
                           as int16 with RescaleSlope 1, RescaleIntercept 0
``write_nm_counts``        a reconstructed SPECT as one multi-frame NM object (NM Image IOD):
                           counts (Units CNTS) as uint16 (with a RescaleSlope above 65535), geometry in DetectorInformation-
                           Sequence, acquisition duration in RotationInformationSequence,
                           the radiopharmaceutical (nuclide code, total dose in MBq, start
                           date-time, half-life)
``write_rtstruct``         an RTSTRUCT of bool masks on the CT grid: per slice, closed planar
                           contours at the 0.5 level of the mask (contourpy), i.e. midway
                           between the voxel centres inside and outside, so that rasterising
                           the voxel centres gives the mask back
=========================  ====================================================================

Geometry: arrays [z, y, x], spacing and origin (x, y, z) in mm, origin = centre of voxel
[0, 0, 0], patient coordinates (LPS).

Conformance: :func:`new_dataset` writes every Type 1 and Type 2 attribute of the Patient (PS3.3
C.7.1.1), General Study (C.7.2.1), General / RT Series (C.7.3.1, C.8.8.1), General Equipment
(C.7.5.1) and SOP Common (C.12.1) modules, the Type 2 ones empty unless known; the RTSTRUCT has
those of the Structure Set (C.8.8.5), ROI Contour (C.8.8.6) and RT ROI Observations (C.8.8.8)
modules (tests/test_rtdose.py checks the written files against these lists).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
NM_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"


@dataclass
class Identity:
    """Who and which study the objects belong to."""

    patient_id: str
    patient_name: str
    study_uid: str


def dicom_date(t: _dt.datetime) -> str:
    """DICOM DA (YYYYMMDD)."""
    return t.strftime("%Y%m%d")


def dicom_time(t: _dt.datetime) -> str:
    """DICOM TM (HHMMSS, with .ffffff when the time has microseconds)."""
    return t.strftime("%H%M%S") + (f".{t.microsecond:06d}" if t.microsecond else "")


def new_dataset(sop_class: str, modality: str, ident: Identity, series_uid: str, for_uid: str | None,
                when: _dt.datetime | None = None, description: str | None = None, sop_uid: str | None = None):
    """A dataset with its file meta (explicit VR little endian), SOP, patient, study and series;
    study/series date and time when ``when`` is given; a new SOP instance UID unless given."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop_uid = sop_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.Modality = modality
    ds.PatientID = ident.patient_id
    ds.PatientName = ident.patient_name
    ds.StudyInstanceUID = ident.study_uid
    ds.SeriesInstanceUID = series_uid
    if description is not None:
        ds.SeriesDescription = description
    ds.Manufacturer = "rptdose"
    if for_uid is not None:
        ds.FrameOfReferenceUID = for_uid
    # Type 2 (present, empty when unknown): Patient's Birth Date and Sex (Patient module);
    # Study Date and Time, Referring Physician's Name, Study ID, Accession Number (General
    # Study); Series Number, Operators' Name (RT Series; Type 3 in General Series). A writer sets
    # what it knows after this.
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyDate = ds.StudyTime = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.SeriesNumber = None
    ds.OperatorsName = ""
    if when is not None:
        ds.StudyDate = ds.SeriesDate = dicom_date(when)
        ds.StudyTime = ds.SeriesTime = dicom_time(when)
    if not all(str(v).isascii() for v in (ident.patient_id, ident.patient_name, description or "")):
        ds.SpecificCharacterSet = "ISO_IR 192"        # Type 1C: UTF-8 for names beyond ASCII
    return ds


def set_pixels(ds, stored: np.ndarray, signed: bool) -> None:
    """Monochrome 16-bit pixel data (signed or unsigned) of ``stored`` [..., rows, columns]."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(stored.shape[-2]), int(stored.shape[-1])
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = np.ascontiguousarray(stored.astype("<i2" if signed else "<u2")).tobytes()


def save_dataset(ds, path: Path) -> Path:
    """Write ``ds`` as a DICOM file (creating the folder), returning the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def write_ct_series(folder: Path, hu: np.ndarray, spacing: tuple, origin: tuple, *, ident: Identity, for_uid: str,
                    when: _dt.datetime | None, description: str | None = "CT", series_uid: str | None = None,
                    clip_hu: bool = True) -> Path:
    """A CT series of ``hu`` [z, y, x] in ``folder`` (one file per slice, identity orientation).
    With ``series_uid`` given, the slices' SOP instance UIDs derive from it (reproducible files);
    ``clip_hu`` clips to the usual 12-bit CT range -1024..3071 (else only to int16)."""
    from pydicom.uid import generate_uid

    fixed = series_uid is not None
    series_uid = series_uid or generate_uid()
    sx, sy, sz = spacing
    lo, hi = (-1024, 3071) if clip_hu else (-32768, 32767)
    stored = np.clip(np.round(hu), lo, hi).astype(np.int16)
    for k in range(hu.shape[0]):
        sop = generate_uid(entropy_srcs=[str(series_uid), str(k)]) if fixed else None
        ds = new_dataset(CT_STORAGE, "CT", ident, series_uid, for_uid, when, description, sop_uid=sop)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(origin[0]), float(origin[1]), float(origin[2] + k * sz)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [float(sy), float(sx)]
        ds.SliceThickness = float(sz)
        ds.RescaleIntercept = 0.0
        ds.RescaleSlope = 1.0
        set_pixels(ds, stored[k], signed=True)
        save_dataset(ds, folder / f"ct{k:04d}.dcm")
    return folder


def write_nm_counts(path: Path, counts: np.ndarray, spacing: tuple, origin: tuple, *, ident: Identity, for_uid: str,
                    acquisition: _dt.datetime, views: int, ms_per_view: int, nuclide_code_meaning: str,
                    total_dose_mbq: float, radiopharm_start: _dt.datetime, half_life_s: float,
                    description: str = "SPECT") -> Path:
    """A reconstructed SPECT in counts (rounded to integers, uint16) as a multi-frame NM object."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    if float(np.min(counts)) < 0:
        raise ValueError(f"NM counts (minimum {np.min(counts):g}): expected counts >= 0")
    # integers as they are; above the uint16 range with a RescaleSlope (counts = stored x slope)
    slope = 1.0 if float(np.max(counts)) <= 65535 else float(np.max(counts)) / 65535.0
    stored = np.round(counts / slope)
    ds = new_dataset(NM_STORAGE, "NM", ident, generate_uid(), for_uid, acquisition, description)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    nz = counts.shape[0]
    sx, sy, sz = spacing
    ds.NumberOfFrames = nz
    ds.FrameIncrementPointer = pydicom.tag.Tag("SliceVector")
    ds.SliceVector = list(range(1, nz + 1))
    ds.NumberOfSlices = nz
    det = Dataset()
    det.ImagePositionPatient = [float(v) for v in origin]
    det.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.DetectorInformationSequence = Sequence([det])
    ds.NumberOfDetectors = 1
    ds.PixelSpacing = [float(sy), float(sx)]
    ds.SpacingBetweenSlices = float(sz)
    ds.SliceThickness = float(sz)
    ds.AcquisitionDate = dicom_date(acquisition)
    ds.AcquisitionTime = dicom_time(acquisition)
    rot = Dataset()
    rot.NumberOfFramesInRotation = int(views)
    rot.ActualFrameDuration = int(ms_per_view)
    rot.ScanArc = 360
    rot.AngularStep = 360.0 / views
    ds.RotationInformationSequence = Sequence([rot])
    ds.NumberOfRotations = 1
    item = Dataset()
    code = Dataset()
    code.CodeValue = "C-145A4"
    code.CodingSchemeDesignator = "SRT"
    code.CodeMeaning = nuclide_code_meaning
    item.RadionuclideCodeSequence = Sequence([code])
    item.RadionuclideTotalDose = f"{total_dose_mbq:.6g}"
    item.RadiopharmaceuticalStartDateTime = radiopharm_start.strftime("%Y%m%d%H%M%S")
    item.RadionuclideHalfLife = f"{half_life_s:.6g}"
    ds.RadiopharmaceuticalInformationSequence = Sequence([item])
    ds.Units = "CNTS"
    if slope != 1.0:
        ds.RescaleSlope = f"{slope:.10g}"
        ds.RescaleIntercept = 0
    set_pixels(ds, stored.astype(np.uint16), signed=False)
    return save_dataset(ds, path)


def mask_contours(mask: np.ndarray, spacing: tuple, origin: tuple) -> list[np.ndarray]:
    """Closed planar contours (N, 3) in mm of a bool mask [z, y, x], slice by slice."""
    import contourpy

    sx, sy, sz = spacing
    out = []
    for k in range(mask.shape[0]):
        sl = mask[k]
        if not sl.any():
            continue
        padded = np.pad(sl.astype(np.float64), 1)   # closed lines also at the grid's edge
        gen = contourpy.contour_generator(z=padded, line_type=contourpy.LineType.Separate)
        for line in gen.lines(0.5):
            pts = np.asarray(line, dtype=np.float64)
            if len(pts) > 1 and np.allclose(pts[0], pts[-1]):
                pts = pts[:-1]
            if len(pts) < 3:
                continue
            x = origin[0] + (pts[:, 0] - 1.0) * sx
            y = origin[1] + (pts[:, 1] - 1.0) * sy
            out.append(np.stack([x, y, np.full(len(pts), origin[2] + k * sz)], axis=1))
    return out


def write_rtstruct(path: Path, masks: dict[str, np.ndarray], spacing: tuple, origin: tuple, *, ident: Identity,
                   for_uid: str, when: _dt.datetime, kinds: dict[str, str] | None = None) -> Path:
    """An RTSTRUCT with one ROI per mask (contours from :func:`mask_contours`)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    ds = new_dataset(RTSTRUCT_STORAGE, "RTSTRUCT", ident, generate_uid(), None, when, "structures")
    ds.SeriesNumber = 1
    ds.StructureSetLabel = "organs"
    ds.StructureSetDate = dicom_date(when)
    ds.StructureSetTime = dicom_time(when)
    ref = Dataset()
    ref.FrameOfReferenceUID = for_uid
    ds.ReferencedFrameOfReferenceSequence = Sequence([ref])
    ssroi, roic, obs = [], [], []
    for number, (name, mask) in enumerate(masks.items(), start=1):
        s = Dataset()
        s.ROINumber = number
        s.ReferencedFrameOfReferenceUID = for_uid
        s.ROIName = name
        s.ROIGenerationAlgorithm = "AUTOMATIC"
        ssroi.append(s)
        c = Dataset()
        c.ReferencedROINumber = number
        c.ROIDisplayColor = [int(v) for v in (np.array([(number * 73) % 256, (number * 151) % 256,
                                                         (number * 211) % 256]))]
        items = []
        for pts in mask_contours(mask, spacing, origin):
            it = Dataset()
            it.ContourGeometricType = "CLOSED_PLANAR"
            it.NumberOfContourPoints = len(pts)
            it.ContourData = [f"{v:.3f}" for v in pts.ravel()]
            items.append(it)
        if items:                                   # Type 3: left out when the mask has no contour
            c.ContourSequence = Sequence(items)
        roic.append(c)
        o = Dataset()
        o.ObservationNumber = number
        o.ReferencedROINumber = number
        o.RTROIInterpretedType = (kinds or {}).get(name, "ORGAN")
        o.ROIInterpreter = ""
        obs.append(o)
    ds.StructureSetROISequence = Sequence(ssroi)
    ds.ROIContourSequence = Sequence(roic)
    ds.RTROIObservationsSequence = Sequence(obs)
    return save_dataset(ds, path)
