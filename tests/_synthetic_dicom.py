"""Small synthetic DICOM data for the clinical-pipeline tests, written with pydicom.

A synthetic patient on a 32^3 grid of 4 mm voxels: an elliptic-cylinder body with a spine, a
'liver' (ellipsoid), a 'kidney' and a 'tumour' (spheres), each with its own mono-exponential
kinetics A_r(t) = C_r V exp(-ln2 t / T_eff,r) from the administration (t = 0). The known truth:
activity per voxel at any time, and the TIA per voxel C_r V T_eff,r / ln 2.

Writers: CT series (one file per slice), NM multi-frame (NM Image IOD: DetectorInformationSequence
geometry, SliceVector, RotationInformationSequence or ActualFrameDuration, counts or Bq/ml via
Units or a RealWorldValueMappingSequence), PET-style series (one slice per file, per-slice
RescaleSlope), RTSTRUCT (polygon contours on the CT slice planes) and DICOM-SEG (binary, only
non-empty frames), plus a whole study folder with its TOML.

Counts are generated with physical decay during the acquisition, counts = S * A(t) * (1 -
exp(-lambda_p d)) / lambda_p, so that the pipeline's conversion recovers A(t) exactly (up to the
integer rounding of counts).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from rptdose.io.dicom_write import dicom_date as _da
from rptdose.io.dicom_write import dicom_time as _tm
from rptdose.io.dicom_write import save_dataset as _save
from rptdose.io.dicom_write import Identity, new_dataset
from rptdose.io.dicom_write import set_pixels as _image_pixel
from rptdose.io.dicom_write import write_ct_series as _write_ct

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
NM_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
PET_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"

LU177_HALF_LIFE_S = 574300.8          # ICRP-107 (as rptdose.physics.nuclides reports it)
HOUR = 3600.0
ADMIN_TIME = dt.datetime(2026, 3, 2, 9, 0, 0)
TIMES_H = (4.0, 24.0, 72.0, 168.0)


def uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _ds(sop_class: str, sop_uid: str, modality: str, *, patient_id: str, study_uid: str, series_uid: str,
        for_uid: str | None, when: dt.datetime | None) -> Dataset:
    return new_dataset(sop_class, modality, Identity(patient_id, "Synthetic^Patient", study_uid), series_uid,
                       for_uid, when, sop_uid=sop_uid)


# ---- writers ---------------------------------------------------------------------------------

def write_ct_series(folder: Path, hu: np.ndarray, spacing: tuple[float, float, float], origin: tuple[float, ...], *,
                    patient_id: str = "SYN001", study_uid: str | None = None, series_uid: str | None = None,
                    for_uid: str | None = None, when: dt.datetime | None = None) -> Path:
    """A CT series, one file per axial slice, identity orientation."""
    study_uid = study_uid or uid("study", patient_id)
    series_uid = series_uid or uid("ct", folder)
    for_uid = for_uid or uid("for", folder)
    return _write_ct(folder, hu, spacing, origin, ident=Identity(patient_id, "Synthetic^Patient", study_uid),
                     for_uid=for_uid, when=when, description=None, series_uid=series_uid, clip_hu=False)


def _radiopharm_item(nuclide_meaning: str | None, total_dose: float | None, start: dt.datetime | None,
                     start_time_only: dt.datetime | None = None, half_life_s: float | None = None) -> Dataset:
    item = Dataset()
    if nuclide_meaning is not None:
        code = Dataset()
        code.CodeValue = "C-145A4"
        code.CodingSchemeDesignator = "SRT"
        code.CodeMeaning = nuclide_meaning
        item.RadionuclideCodeSequence = Sequence([code])
    if total_dose is not None:
        item.RadionuclideTotalDose = f"{total_dose:.6g}"
    if start is not None:
        item.RadiopharmaceuticalStartDateTime = start.strftime("%Y%m%d%H%M%S")
    if start_time_only is not None:
        item.RadiopharmaceuticalStartTime = _tm(start_time_only)
    if half_life_s is not None:
        item.RadionuclideHalfLife = f"{half_life_s:.6g}"
    return item


@dataclass
class NMOptions:
    """What an NM multi-frame file says (defaults: a Lu-177 RECON TOMO in counts)."""

    units: str | None = "CNTS"                   # Units (0054,1001); None: absent
    rwvm_unit: str | None = None                 # RealWorldValueMappingSequence unit (UCUM), e.g. "Bq/ml"
    acquisition: dt.datetime | None = None
    series_time: dt.datetime | None = None
    rotation: tuple[int, float] | None = (60, 30000.0)   # (views, ms per view); None: absent
    frame_duration_ms: float | None = None       # top-level ActualFrameDuration
    nuclide_meaning: str | None = "^177^Lutetium"
    total_dose_mbq: float | None = 7400.0
    radiopharm_start: dt.datetime | None = ADMIN_TIME
    radiopharm_start_time_only: dt.datetime | None = None
    half_life_s: float | None = LU177_HALF_LIFE_S
    spacing_sign: float = 1.0                    # sign of SpacingBetweenSlices
    slice_vector_reversed: bool = False          # store frames in reverse order with a SliceVector saying so
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION")
    sop_class: str = NM_STORAGE
    modality: str = "NM"
    patient_id: str = "SYN001"
    for_uid: str | None = None
    study_uid: str | None = None
    drop: tuple[str, ...] = ()                   # keywords to delete at the end (bad-input tests)
    extra: dict = field(default_factory=dict)    # keyword -> value set at the end


def write_nm_multiframe(path: Path, values: np.ndarray, spacing: tuple[float, float, float],
                        origin: tuple[float, ...], opts: NMOptions | None = None) -> Path:
    """A multi-frame NM object of `values` [z, y, x] (counts: rounded to integers; Bq/ml: scaled
    into uint16 with a slope)."""
    o = opts or NMOptions()
    series_uid = uid("nm", path)
    ds = _ds(o.sop_class, uid(series_uid, 1), o.modality, patient_id=o.patient_id,
             study_uid=o.study_uid or uid("study", o.patient_id), series_uid=series_uid,
             for_uid=o.for_uid, when=o.series_time or o.acquisition)
    ds.ImageType = list(o.image_type)
    nz = values.shape[0]
    ds.NumberOfFrames = nz
    ds.FrameIncrementPointer = pydicom.tag.Tag("SliceVector")
    sx, sy, sz = spacing
    frames = values
    origin = np.asarray(origin, dtype=float)
    if o.spacing_sign < 0:  # stack in front of the first slice: first frame is the highest z
        frames = values[::-1]
        origin = origin + np.array([0.0, 0.0, (nz - 1) * sz])
    slice_numbers = np.arange(1, nz + 1)
    if o.slice_vector_reversed:
        frames = frames[::-1]
        slice_numbers = slice_numbers[::-1]
    ds.SliceVector = [int(v) for v in slice_numbers]
    ds.NumberOfSlices = nz
    det = Dataset()
    det.ImagePositionPatient = [float(v) for v in origin]
    det.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.DetectorInformationSequence = Sequence([det])
    ds.NumberOfDetectors = 1
    ds.PixelSpacing = [float(sy), float(sx)]
    ds.SpacingBetweenSlices = float(o.spacing_sign * sz)
    ds.SliceThickness = float(sz)
    if o.acquisition is not None:
        ds.AcquisitionDate = _da(o.acquisition)
        ds.AcquisitionTime = _tm(o.acquisition)
    if o.rotation is not None:
        rot = Dataset()
        rot.NumberOfFramesInRotation = int(o.rotation[0])
        rot.ActualFrameDuration = int(o.rotation[1])
        rot.ScanArc = 360
        rot.AngularStep = 360.0 / o.rotation[0]
        ds.RotationInformationSequence = Sequence([rot])
        ds.NumberOfRotations = 1
    if o.frame_duration_ms is not None:
        ds.ActualFrameDuration = int(o.frame_duration_ms)
    if o.nuclide_meaning or o.total_dose_mbq or o.radiopharm_start or o.radiopharm_start_time_only:
        ds.RadiopharmaceuticalInformationSequence = Sequence([_radiopharm_item(
            o.nuclide_meaning, o.total_dose_mbq, o.radiopharm_start, o.radiopharm_start_time_only, o.half_life_s)])
    if o.units is not None:
        ds.Units = o.units
    quantitative = (o.rwvm_unit or "").lower().startswith(("bq", "kbq", "mbq")) or o.units == "BQML"
    if quantitative:
        slope = float(np.max(frames)) / 60000.0 if np.max(frames) > 0 else 1.0
        stored = np.round(frames / slope)
    else:
        slope = 1.0
        stored = np.round(frames)
    if np.max(stored) > 65535 or np.min(stored) < 0:
        raise ValueError(f"NM values out of uint16 range ({np.min(stored)}..{np.max(stored)})")
    if o.rwvm_unit is not None:
        item = Dataset()
        code = Dataset()
        code.CodeValue = o.rwvm_unit
        code.CodingSchemeDesignator = "UCUM"
        code.CodeMeaning = o.rwvm_unit
        item.MeasurementUnitsCodeSequence = Sequence([code])
        item.RealWorldValueSlope = slope
        item.RealWorldValueIntercept = 0.0
        item.LUTLabel = "activity"
        item.RealWorldValueFirstValueMapped = 0
        item.RealWorldValueLastValueMapped = 65535
        ds.RealWorldValueMappingSequence = Sequence([item])
    elif quantitative:
        ds.RescaleSlope = f"{slope:.10g}"
        ds.RescaleIntercept = 0
    _image_pixel(ds, stored.astype(np.uint16), signed=False)
    for k, v in o.extra.items():
        setattr(ds, k, v)
    for k in o.drop:
        if k in ds:
            delattr(ds, k)
    return _save(ds, path)


def write_pet_series(folder: Path, values: np.ndarray, spacing: tuple[float, float, float], origin: tuple[float, ...],
                     *, acquisition: dt.datetime, frame_duration_ms: float = 1_200_000, units: str = "BQML",
                     decay_correction: str | None = "START", total_dose_bq: float | None = 7.4e9,
                     radiopharm_start: dt.datetime | None = ADMIN_TIME, patient_id: str = "SYN001",
                     for_uid: str | None = None, modality: str = "PT") -> Path:
    """A PET-style series: one slice per file, each with its own RescaleSlope."""
    series_uid = uid("pt", folder)
    sx, sy, sz = spacing
    for k in range(values.shape[0]):
        ds = _ds(PET_STORAGE if modality == "PT" else NM_STORAGE, uid(series_uid, k), modality, patient_id=patient_id,
                 study_uid=uid("study", patient_id), series_uid=series_uid, for_uid=for_uid, when=acquisition)
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.InstanceNumber = k + 1
        ds.AcquisitionDate, ds.AcquisitionTime = _da(acquisition), _tm(acquisition)
        ds.ActualFrameDuration = int(frame_duration_ms)
        ds.ImagePositionPatient = [float(origin[0]), float(origin[1]), float(origin[2] + k * sz)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [float(sy), float(sx)]
        ds.SliceThickness = float(sz)
        ds.Units = units
        if decay_correction is not None:
            ds.DecayCorrection = decay_correction
        if total_dose_bq is not None or radiopharm_start is not None:
            ds.RadiopharmaceuticalInformationSequence = Sequence([_radiopharm_item(
                "^177^Lutetium", total_dose_bq, radiopharm_start)])
        vmax = float(np.max(values[k]))
        slope = vmax / 30000.0 if vmax > 0 else 1.0
        ds.RescaleSlope = f"{slope:.10g}"
        ds.RescaleIntercept = 0
        _image_pixel(ds, np.round(values[k] / float(ds.RescaleSlope)).astype(np.int16), signed=True)
        _save(ds, folder / f"pt{k:03d}.dcm")
    return folder


def write_rtstruct(path: Path, rois: dict[str, list[np.ndarray]], *, for_uid: str, patient_id: str = "SYN001",
                   extra_point_roi: bool = True) -> Path:
    """An RTSTRUCT with one ROI per entry: a list of closed planar contours, (N, 3) arrays in mm."""
    series_uid = uid("rs", path)
    ds = _ds(RTSTRUCT_STORAGE, uid(series_uid, 1), "RTSTRUCT", patient_id=patient_id,
             study_uid=uid("study", patient_id), series_uid=series_uid, for_uid=None, when=ADMIN_TIME)
    ds.StructureSetLabel = "synthetic"
    ref = Dataset()
    ref.FrameOfReferenceUID = for_uid
    ds.ReferencedFrameOfReferenceSequence = Sequence([ref])
    ssroi, roic, obs = [], [], []
    entries = list(rois.items()) + ([("marker", None)] if extra_point_roi else [])
    for number, (name, contours) in enumerate(entries, start=1):
        s = Dataset()
        s.ROINumber = number
        s.ReferencedFrameOfReferenceUID = for_uid
        s.ROIName = name
        s.ROIGenerationAlgorithm = "MANUAL"
        ssroi.append(s)
        c = Dataset()
        c.ReferencedROINumber = number
        c.ROIDisplayColor = [255, 0, 0]
        items = []
        if contours is None:  # a POINT ROI: ignored by the reader
            it = Dataset()
            it.ContourGeometricType = "POINT"
            it.NumberOfContourPoints = 1
            it.ContourData = [0.0, 0.0, 0.0]
            items.append(it)
        else:
            for pts in contours:
                it = Dataset()
                it.ContourGeometricType = "CLOSED_PLANAR"
                it.NumberOfContourPoints = len(pts)
                it.ContourData = [f"{v:.4f}" for v in np.asarray(pts).ravel()]
                items.append(it)
        c.ContourSequence = Sequence(items)
        roic.append(c)
        o = Dataset()
        o.ObservationNumber = number
        o.ReferencedROINumber = number
        o.RTROIInterpretedType = "ORGAN"
        obs.append(o)
    ds.StructureSetROISequence = Sequence(ssroi)
    ds.ROIContourSequence = Sequence(roic)
    ds.RTROIObservationsSequence = Sequence(obs)
    return _save(ds, path)


def write_seg(path: Path, masks: dict[str, np.ndarray], spacing: tuple[float, float, float],
              origin: tuple[float, ...], *, for_uid: str, patient_id: str = "SYN001") -> Path:
    """A binary DICOM-SEG: one frame per non-empty slice of each segment."""
    from pydicom.pixels import pack_bits

    series_uid = uid("seg", path)
    ds = _ds(SEG_STORAGE, uid(series_uid, 1), "SEG", patient_id=patient_id, study_uid=uid("study", patient_id),
             series_uid=series_uid, for_uid=for_uid, when=ADMIN_TIME)
    ds.SegmentationType = "BINARY"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    sx, sy, sz = spacing
    segs, frames, per_frame = [], [], []
    for number, (name, mask) in enumerate(masks.items(), start=1):
        s = Dataset()
        s.SegmentNumber = number
        s.SegmentLabel = name
        s.SegmentAlgorithmType = "MANUAL"
        segs.append(s)
        for k in range(mask.shape[0]):
            if not mask[k].any():
                continue
            frames.append(mask[k].astype(np.uint8))
            f = Dataset()
            sid = Dataset()
            sid.ReferencedSegmentNumber = number
            f.SegmentIdentificationSequence = Sequence([sid])
            pp = Dataset()
            pp.ImagePositionPatient = [float(origin[0]), float(origin[1]), float(origin[2] + k * sz)]
            f.PlanePositionSequence = Sequence([pp])
            per_frame.append(f)
    ds.SegmentSequence = Sequence(segs)
    shared = Dataset()
    po = Dataset()
    po.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    shared.PlaneOrientationSequence = Sequence([po])
    pm = Dataset()
    pm.PixelSpacing = [float(sy), float(sx)]
    pm.SliceThickness = float(sz)
    pm.SpacingBetweenSlices = float(sz)
    shared.PixelMeasuresSequence = Sequence([pm])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    arr = np.stack(frames)
    ds.NumberOfFrames = arr.shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = arr.shape[1], arr.shape[2]
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = 0
    ds.PixelRepresentation = 0
    ds.PixelData = pack_bits(arr)
    return _save(ds, path)


# ---- the synthetic patient ---------------------------------------------------------------------

SHAPE = (32, 32, 32)
SPACING = (4.0, 4.0, 4.0)
ORIGIN = (-62.0, -62.0, -62.0)     # voxel centres at -62 .. 62 mm: the grid is centred on 0

#: region: (shape, centre (x, y, z) mm, radii (x, y, z) mm, HU, C0 in MBq/ml at t = 0, T_eff in h)
REGIONS = {
    "body":   ("cylinder", (0.0, 0.0, 0.0), (50.0, 40.0, 54.0), 20.0, 0.6, 30.0),
    "liver":  ("ellipsoid", (-20.0, -5.0, 0.0), (22.0, 18.0, 24.0), 60.0, 4.5, 70.0),
    "kidney": ("ellipsoid", (25.0, 15.0, -10.0), (10.3, 10.3, 10.3), 30.0, 12.0, 45.0),
    "tumour": ("ellipsoid", (20.0, -15.0, 20.0), (9.3, 9.3, 9.3), 45.0, 30.0, 100.0),
}
ORGANS = ("liver", "kidney", "tumour")
SPINE = ((0.0, 28.0), 7.0, 700.0)   # (x, y) centre, radius mm, HU


def _inside(kind: str, centre, radii, x, y, z) -> np.ndarray:
    cx, cy, cz = centre
    rx, ry, rz = radii
    if kind == "cylinder":
        return (((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1.0) & (np.abs(z - cz) < rz)
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 < 1.0


def voxel_centres(shift_mm=(0.0, 0.0, 0.0)):
    """Coordinates (z, y, x arrays broadcastable to SHAPE) of the voxel centres, minus a shift."""
    nz, ny, nx = SHAPE
    x = ORIGIN[0] + SPACING[0] * np.arange(nx) - shift_mm[0]
    y = ORIGIN[1] + SPACING[1] * np.arange(ny) - shift_mm[1]
    z = ORIGIN[2] + SPACING[2] * np.arange(nz) - shift_mm[2]
    return z[:, None, None], y[None, :, None], x[None, None, :]


def region_masks(shift_mm=(0.0, 0.0, 0.0)) -> dict[str, np.ndarray]:
    """Voxels whose centres lie inside each region (the anatomy moved by `shift_mm`)."""
    z, y, x = voxel_centres(shift_mm)
    return {name: np.broadcast_to(_inside(kind, c, r, x, y, z), SHAPE).copy()
            for name, (kind, c, r, *_rest) in REGIONS.items()}


def hu_volume(shift_mm=(0.0, 0.0, 0.0)) -> np.ndarray:
    masks = region_masks(shift_mm)
    z, y, x = voxel_centres(shift_mm)
    hu = np.full(SHAPE, -1000.0)
    hu[masks["body"]] = REGIONS["body"][3]
    (sx, sy), sr, shu = SPINE
    spine = np.broadcast_to(((x - sx) ** 2 + (y - sy) ** 2 < sr ** 2), SHAPE) & masks["body"]
    hu[spine] = shu
    for organ in ORGANS:
        hu[masks[organ]] = REGIONS[organ][3]
    return hu


def label_volume(shift_mm=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Which kinetics each voxel follows: 0 outside, 1 body background, 2.. the organs."""
    masks = region_masks(shift_mm)
    lab = np.zeros(SHAPE, dtype=np.int16)
    lab[masks["body"]] = 1
    for i, organ in enumerate(ORGANS, start=2):
        lab[masks[organ]] = i
    return lab


def activity_bq(t_s: float, shift_mm=(0.0, 0.0, 0.0)) -> np.ndarray:
    """True activity per voxel (Bq) at t_s after the administration."""
    lab = label_volume(shift_mm)
    v_ml = float(np.prod(SPACING)) * 1e-3
    out = np.zeros(SHAPE)
    for i, name in enumerate(("body",) + ORGANS, start=1):
        c0, teff_h = REGIONS[name][4], REGIONS[name][5]
        out[lab == i] = c0 * 1e6 * v_ml * np.exp(-np.log(2.0) * t_s / (teff_h * HOUR))
    return out


def tia_bq_s() -> np.ndarray:
    """True TIA per voxel (Bq s), from t = 0 to infinity."""
    lab = label_volume()
    v_ml = float(np.prod(SPACING)) * 1e-3
    out = np.zeros(SHAPE)
    for i, name in enumerate(("body",) + ORGANS, start=1):
        c0, teff_h = REGIONS[name][4], REGIONS[name][5]
        out[lab == i] = c0 * 1e6 * v_ml * teff_h * HOUR / np.log(2.0)
    return out


def contours(n_vertices: int = 120) -> dict[str, list[np.ndarray]]:
    """Polygon contours of each region on every CT slice plane it crosses (reference position)."""
    out: dict[str, list[np.ndarray]] = {}
    nz = SHAPE[0]
    phi = np.linspace(0.0, 2 * np.pi, n_vertices, endpoint=False)
    for name, (kind, (cx, cy, cz), (rx, ry, rz), *_rest) in REGIONS.items():
        items = []
        for k in range(nz):
            zk = ORIGIN[2] + SPACING[2] * k
            if kind == "cylinder":
                if abs(zk - cz) >= rz:
                    continue
                f = 1.0
            else:
                u = 1.0 - ((zk - cz) / rz) ** 2
                if u <= 0:
                    continue
                f = np.sqrt(u)
            # vertices slightly outside the curve so that the polygon contains every voxel centre
            # the analytic shape does (the chords of an inscribed polygon would cut some off)
            grow = 1.0 / np.cos(np.pi / n_vertices)
            pts = np.stack([cx + grow * f * rx * np.cos(phi), cy + grow * f * ry * np.sin(phi),
                            np.full_like(phi, zk)], axis=1)
            items.append(pts)
        out[name] = items
    return out


def nm_counts(t_s: float, sensitivity_cps_per_mbq: float, duration_s: float, shift_mm=(0.0, 0.0, 0.0)) -> np.ndarray:
    lam = np.log(2.0) / LU177_HALF_LIFE_S
    s_per_bq = sensitivity_cps_per_mbq * 1e-6
    return activity_bq(t_s, shift_mm) * s_per_bq * (-np.expm1(-lam * duration_s)) / lam


def bq_per_ml(t_s: float, shift_mm=(0.0, 0.0, 0.0)) -> np.ndarray:
    return activity_bq(t_s, shift_mm) / (float(np.prod(SPACING)) * 1e-3)


# ---- whole studies --------------------------------------------------------------------------------

SENSITIVITY = 9.0               # cps/MBq
VIEWS, MS_PER_VIEW = 60, 30000  # 30 min
SHIFTS = {3: (8.0, -4.0, 0.0)}  # time point -> patient displacement (mm) at that scan


def write_sensitivity_study(root: Path, shifts: dict[int, tuple] | None = None, segmentation: str = "rtstruct",
                            extra_toml: str = "", times_h=TIMES_H, study_table: str | None = None) -> Path:
    """Four SPECT/CT time points in counts (NM multi-frame), one CT each, an RTSTRUCT (or SEG or
    NIfTI labels), and study.toml with calibration mode 'sensitivity'."""
    shifts = SHIFTS if shifts is None else shifts
    root.mkdir(parents=True, exist_ok=True)
    tables = []
    ref_for = None
    for i, t_h in enumerate(times_h, start=1):
        shift = shifts.get(i, (0.0, 0.0, 0.0))
        for_uid = uid("for", root, i)
        ref_for = ref_for or for_uid
        when = ADMIN_TIME + dt.timedelta(hours=t_h)
        write_ct_series(root / f"tp{i}" / "ct", hu_volume(shift), SPACING, ORIGIN, for_uid=for_uid, when=when)
        counts = nm_counts(t_h * HOUR, SENSITIVITY, VIEWS * MS_PER_VIEW / 1000.0, shift)
        write_nm_multiframe(root / f"tp{i}" / "spect.dcm", counts, SPACING, ORIGIN,
                            NMOptions(acquisition=when, for_uid=for_uid, rotation=(VIEWS, MS_PER_VIEW)))
        tables.append(f'[[timepoint]]\nlabel = "{int(t_h)}h"\nspect = "tp{i}/spect.dcm"\nct = "tp{i}/ct"\n')
    seg_toml = _write_segmentation(root, segmentation, ref_for)
    study = study_table if study_table is not None else '[study]\nnuclide = "Lu-177"\nname = "synthetic"\n'
    text = (study + '\n[administration]\nactivity_mbq = 7400\ntime = 2026-03-02T09:00:00\n\n'
            + "\n".join(reversed(tables))   # any order: the loader sorts by time
            + f'\n[calibration]\nmode = "sensitivity"\nsensitivity_cps_per_mbq = {SENSITIVITY}\n\n'
            + seg_toml + '\n[dose]\ngrid = "spect"\nhistories = 100000\nseed = 7\n\n[tia]\nmodel = "auto"\n\n'
            + '[registration]\niterations = 60\n' + extra_toml)
    (root / "study.toml").write_text(text)
    return root / "study.toml"


def _write_segmentation(root: Path, kind: str, for_uid: str) -> str:
    if kind == "rtstruct":
        write_rtstruct(root / "rtstruct.dcm", contours(), for_uid=for_uid)
        return '[segmentation]\nrtstruct = "rtstruct.dcm"\n'
    if kind == "seg":
        write_seg(root / "seg.dcm", region_masks(), SPACING, ORIGIN, for_uid=for_uid)
        return '[segmentation]\nseg = "seg.dcm"\n'
    if kind == "labels":
        import SimpleITK as sitk

        lab = np.zeros(SHAPE, dtype=np.uint8)
        masks = region_masks()
        for i, organ in enumerate(ORGANS, start=1):
            lab[masks[organ]] = i
        img = sitk.GetImageFromArray(lab)
        img.SetSpacing(SPACING)
        img.SetOrigin(ORIGIN)
        sitk.WriteImage(img, str(root / "labels.nii.gz"))
        return ('[segmentation]\nlabels = "labels.nii.gz"\n[segmentation.names]\n'
                + "".join(f"{o} = {i}\n" for i, o in enumerate(ORGANS, start=1)))
    return ""


def write_quantitative_study(root: Path, times_h=TIMES_H) -> Path:
    """Four time points in Bq/ml: NM multi-frame with a RealWorldValueMappingSequence (tp 1, 3)
    and PET-style slice series with Units BQML (tp 2, 4); one CT folder shared by all (so no
    registration); a DICOM-SEG; administration and nuclide from the DICOM."""
    root.mkdir(parents=True, exist_ok=True)
    for_uid = uid("for", root)
    write_ct_series(root / "ct", hu_volume(), SPACING, ORIGIN, for_uid=for_uid, when=ADMIN_TIME)
    tables = []
    for i, t_h in enumerate(times_h, start=1):
        when = ADMIN_TIME + dt.timedelta(hours=t_h)
        conc = bq_per_ml(t_h * HOUR)
        if i % 2:
            write_nm_multiframe(root / f"spect{i}.dcm", conc, SPACING, ORIGIN,
                                NMOptions(units=None, rwvm_unit="Bq/ml", acquisition=when, for_uid=for_uid))
            tables.append(f'[[timepoint]]\nspect = "spect{i}.dcm"\nct = "ct"\n')
        else:
            write_pet_series(root / f"spect{i}", conc, SPACING, ORIGIN, acquisition=when, for_uid=for_uid)
            tables.append(f'[[timepoint]]\nspect = "spect{i}"\nct = "ct"\n')
    write_seg(root / "seg.dcm", region_masks(), SPACING, ORIGIN, for_uid=for_uid)
    text = ("\n".join(tables) + '\n[calibration]\nmode = "quantitative"\n\n[segmentation]\nseg = "seg.dcm"\n'
            + '\n[dose]\ngrid = "spect"\n\n[tia]\nmodel = "mono"\n')
    (root / "study.toml").write_text(text)
    return root / "study.toml"


def true_region_tia(masks: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """True TIA (Bq s) summed over each region's voxels."""
    masks = masks or region_masks()
    tia = tia_bq_s()
    return {name: float(tia[m].sum()) for name, m in masks.items()}
