"""Reading reconstructed SPECT (and PET-style) volumes from DICOM, with their units and timing.

Two layouts are read, from a file or a folder:

=============================  ================================================================
layout                         geometry
=============================  ================================================================
one multi-frame NM object      NM Image Storage, Image Type value 3 ``RECON TOMO``: frames are
(``NM Image IOD``)             slices; ImageOrientationPatient / ImagePositionPatient from the
                               DetectorInformationSequence (0054,0022) (or the top level);
                               PixelSpacing (0028,0030); slice step SpacingBetweenSlices
                               (0018,0088) (signed, along row x column; C.8.4.15), else
                               SliceThickness (0018,0050); frames ordered by SliceVector
                               (0054,0080) when present. Enhanced multi-frame objects with
                               per-frame PlanePositionSequence are stacked by position.
one slice per file             PET-style series (Modality PT or NM): slices sorted along the
                               normal of ImageOrientationPatient; one orientation, distinct and
                               uniformly spaced positions, no shear (as for CT, io/ct.py); each
                               file's own rescale is applied
=============================  ================================================================

Every file read must be an NM or PET image (SOPClassUID (0008,0016) in :data:`NM_SOP_CLASSES`
when stated, Modality (0008,0060) NM or PT): a CT, a secondary capture or an RT object given as
the SPECT is refused, and so is a single frame (a volume has at least two slices).

Pixel values -> physical units (the first rule that applies):

=====================================  ========================================================
source                                 value
=====================================  ========================================================
RealWorldValueMappingSequence          stored * RealWorldValueSlope + Intercept, when its
(0040,9096) (top level, shared or      MeasurementUnitsCodeSequence (UCUM) is Bq/ml, kBq/ml,
per-frame functional groups)           MBq/ml, counts ({counts}, {cnts}) or cps ({cps}, /s)
Units (0054,1001)                      ``BQML``, ``CNTS`` or ``CPS``; stored * RescaleSlope
                                       (0028,1053) + RescaleIntercept (0028,1052) (1, 0 if absent)
neither, Modality NM                   counts (the NM Image IOD's pixel values), rescaled
neither, Modality PT                   refused: a PET-style series must state its units
=====================================  ========================================================

Any other unit (SUV, PROPCNTS, ...) is refused naming the tag. Timing:

=======================  ===========================================================================
quantity                 tags (first present)
=======================  ===========================================================================
acquisition start        AcquisitionDateTime (0008,002A); AcquisitionDate/Time (0008,0022/0032);
                         SeriesDate/Time (0008,0021/0031). Earliest over the slices of a series.
acquisition duration     NM with RotationInformationSequence (0054,0052): sum over rotations of
                         NumberOfFramesInRotation (0054,0053) x ActualFrameDuration (0018,1242);
                         otherwise the top-level ActualFrameDuration (ms). For cameras whose
                         views of all heads are counted in NumberOfFramesInRotation this is the
                         summed detector time: define the sensitivity with the same convention
                         (or give the study file's ``timepoint.duration_s``).
decay correction         DecayCorrection (0054,1102): START, ADMIN or NONE; absent: START
administration           RadiopharmaceuticalInformationSequence (0054,0016), first item:
                         RadionuclideTotalDose (0018,1074) (MBq in NM objects, C.8.4.10.1.7; Bq in
                         PET objects), RadiopharmaceuticalStartDateTime (0018,1078), the nuclide
                         from RadionuclideCodeSequence (0054,0300) CodeMeaning (e.g. ^177^Lutetium),
                         RadionuclideHalfLife (0018,1075)
=======================  ===========================================================================

Missing timing is not guessed: the fields are ``None`` and the study (``rptdose.study``) reports
them naming the file and tags. Dates and times are local (a DICOM DT's UTC offset is dropped).
Every failure raises :class:`~rptdose.errors.InputError` naming the path and the tag.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rptdose._validate import describe
from rptdose.errors import InputError
from rptdose.io.ct import ORIENTATION_TOL, check_slice_stack  # geometry tolerances and checks as for CT

#: SOP classes read as NM/PET volumes.
NM_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.20": "NM Image Storage",
    "1.2.840.10008.5.1.4.1.1.128": "Positron Emission Tomography Image Storage",
    "1.2.840.10008.5.1.4.1.1.130": "Enhanced PET Image Storage",
    "1.2.840.10008.5.1.4.1.1.128.1": "Legacy Converted Enhanced PET Image Storage",
}
NM_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.20"

#: Recognised units: UCUM code (lower case) or Units (0054,1001) -> (unit, factor to that unit).
UNIT_CODES: dict[str, tuple[str, float]] = {
    "bq/ml": ("bq_per_ml", 1.0), "bq/cm3": ("bq_per_ml", 1.0), "bqml": ("bq_per_ml", 1.0),
    "kbq/ml": ("bq_per_ml", 1e3), "kbq/cm3": ("bq_per_ml", 1e3),
    "mbq/ml": ("bq_per_ml", 1e6), "mbq/cm3": ("bq_per_ml", 1e6),
    "cnts": ("counts", 1.0), "{counts}": ("counts", 1.0), "{cnts}": ("counts", 1.0),
    "{count}": ("counts", 1.0), "counts": ("counts", 1.0),
    "cps": ("cps", 1.0), "{cps}": ("cps", 1.0), "{counts}/s": ("cps", 1.0), "{cnts}/s": ("cps", 1.0),
    "{count}/s": ("cps", 1.0), "/s": ("cps", 1.0), "1/s": ("cps", 1.0),
}
UNITS = ("counts", "cps", "bq_per_ml")

#: Largest plausible RadionuclideTotalDose in an NM object (MBq): 1 TBq; more means Bq were written.
MAX_TOTAL_DOSE_MBQ = 1e6

#: Element names as written in RadionuclideCodeSequence CodeMeaning (e.g. "^177^Lutetium").
_ELEMENTS = {
    "actinium": "Ac", "astatine": "At", "bismuth": "Bi", "carbon": "C", "copper": "Cu", "erbium": "Er",
    "fluorine": "F", "gallium": "Ga", "holmium": "Ho", "indium": "In", "iodine": "I", "lead": "Pb",
    "lutetium": "Lu", "nitrogen": "N", "oxygen": "O", "phosphorus": "P", "radium": "Ra", "rhenium": "Re",
    "rubidium": "Rb", "samarium": "Sm", "scandium": "Sc", "strontium": "Sr", "technetium": "Tc",
    "terbium": "Tb", "thallium": "Tl", "thorium": "Th", "xenon": "Xe", "yttrium": "Y", "zirconium": "Zr",
    "cobalt": "Co", "chromium": "Cr", "selenium": "Se", "krypton": "Kr",
}


@dataclass(frozen=True)
class Radiopharmaceutical:
    """What the RadiopharmaceuticalInformationSequence (0054,0016) says (``None`` where absent)."""

    nuclide: str | None = None                   # e.g. "Lu-177" (from the CodeMeaning)
    nuclide_source: str = ""
    total_dose_bq: float | None = None           # administered activity (Bq)
    start: _dt.datetime | None = None            # administration date and time (local)
    start_time_only: _dt.time | None = None      # RadiopharmaceuticalStartTime without a date
    half_life_s: float | None = None             # RadionuclideHalfLife (0018,1075)


@dataclass(frozen=True)
class NMVolume:
    """A reconstructed NM/PET volume with its units and timing.

    ``image`` is a 3-D float64 SimpleITK image whose values are in ``units`` ("counts", "cps" or
    "bq_per_ml"), on the series' own geometry. The ``*_source`` strings say which tag gave what.
    """

    path: Path
    image: Any
    units: str
    units_source: str
    acquisition_start: _dt.datetime | None
    acquisition_start_source: str
    duration_s: float | None
    duration_source: str
    decay_correction: str
    decay_correction_source: str
    modality: str
    sop_class_uid: str
    series_uid: str
    frame_of_reference_uid: str | None
    patient_id: str | None
    patient_name: str | None
    study_uid: str | None
    radiopharmaceutical: Radiopharmaceutical = field(default_factory=Radiopharmaceutical)
    files: tuple[str, ...] = ()

    @property
    def voxel_volume_ml(self) -> float:
        sx, sy, sz = self.image.GetSpacing()
        return sx * sy * sz * 1e-3

    def values(self) -> np.ndarray:
        """The voxel values [z, y, x] (float64 copy) in :attr:`units`."""
        import SimpleITK as sitk

        return sitk.GetArrayFromImage(self.image)


# ---- small DICOM helpers (also used by io/segmentation.py and rptdose.study) ------------------

def get(ds: Any, keyword: str) -> Any:
    """A data element's value, or None when absent or empty."""
    value = getattr(ds, keyword, None)
    if value is None:
        return None
    if isinstance(value, (str, bytes)) and str(value).strip() == "":
        return None
    try:
        if len(value) == 0 and not isinstance(value, (str, bytes)):
            return None
    except TypeError:
        pass
    return value


def first_item(ds: Any, keyword: str) -> Any:
    seq = get(ds, keyword)
    return seq[0] if seq is not None and len(seq) > 0 else None


def parse_date_time(date: Any, time: Any) -> _dt.datetime | None:
    """DA + TM -> naive datetime; None if either is missing. Raises ValueError if malformed."""
    from pydicom.valuerep import DA, TM

    if date is None or time is None:
        return None
    d = DA(str(date).strip().replace(".", "").replace("-", ""))
    t = TM(str(time).strip().replace(":", ""))
    if d is None or t is None:
        return None
    return _dt.datetime.combine(_dt.date(d.year, d.month, d.day),
                                _dt.time(t.hour, t.minute, t.second, t.microsecond))


def parse_datetime(value: Any) -> _dt.datetime | None:
    """DT -> naive local datetime (a UTC offset is dropped); None if missing."""
    from pydicom.valuerep import DT

    if value is None:
        return None
    v = DT(str(value).strip())
    if v is None:
        return None
    return _dt.datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond)


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def read_header(path: Path | str, specific_tags: list[str] | None = None) -> Any:
    """A DICOM header (no pixel data); None if the file is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=specific_tags)
    except InvalidDicomError:
        return None
    except Exception as exc:  # truncated or corrupt files
        raise InputError(f"DICOM file '{path}' (unreadable: {exc}): expected a readable DICOM file") from None


_IDENTITY_TAGS = ["PatientID", "PatientName", "FrameOfReferenceUID", "StudyInstanceUID", "SeriesInstanceUID",
                  "Modality", "SOPClassUID"]


def dicom_identity(path: Path | str, modality: str | None = None) -> dict[str, set[str]]:
    """{tag keyword: set of values} over the DICOM files at ``path`` (a file or a folder's files).

    Only files of ``modality`` count when given. Non-DICOM paths (NIfTI, MetaImage) give empty sets.
    """
    p = Path(path)
    files = _dicom_files(p) if p.is_dir() else [p]
    out: dict[str, set[str]] = {k: set() for k in _IDENTITY_TAGS}
    for f in files:
        if f.suffix.lower() in (".nii", ".gz", ".mha", ".mhd", ".nrrd", ".raw"):
            continue
        ds = read_header(f, specific_tags=_IDENTITY_TAGS)
        if ds is None or (modality is not None and str(get(ds, "Modality") or "") != modality):
            continue
        for k in _IDENTITY_TAGS:
            v = get(ds, k)
            if v is not None:
                out[k].add(str(v).strip())
    return out


def nuclide_from_code_meaning(meaning: str) -> str | None:
    """'^177^Lutetium', 'Lutetium-177', '177Lu', 'Lu-177' -> 'Lu-177' (None if not understood)."""
    s = str(meaning).strip()
    m = re.fullmatch(r"\^?(\d{1,3})(m?)\^?[\s\-]*([A-Za-z]+)", s)
    if m:
        mass, meta, name = m.group(1), m.group(2), m.group(3)
    else:
        m = re.fullmatch(r"([A-Za-z]+)[\s\-^]*(\d{1,3})(m?)", s)
        if not m:
            return None
        name, mass, meta = m.group(1), m.group(2), m.group(3)
    symbol = _ELEMENTS.get(name.lower())
    if symbol is None and len(name) <= 2:
        symbol = name.capitalize()
    if symbol is None:
        return None
    return f"{symbol}-{int(mass)}{meta}"


# ---- reading ----------------------------------------------------------------------------

def read_nm(path: str | os.PathLike, series_uid: str | None = None) -> NMVolume:
    """Read a reconstructed SPECT/PET volume from a DICOM file or a folder (module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        A multi-frame NM file, or a folder holding one multi-frame object or a one-slice-per-file
        series.
    series_uid : str, optional
        The SeriesInstanceUID to read when the folder holds several series.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"spect {describe(path)} (of type {type(path).__name__}): expected a DICOM file or folder")
    p = Path(path)
    where = f"spect '{p}'"
    if not p.exists():
        raise InputError(f"{where} (does not exist): expected an NM/SPECT DICOM file or folder")
    if p.is_dir():
        files = []
        for f in _dicom_files(p):
            ds = read_header(f)
            if ds is None:
                continue
            files.append((f, ds))
        images = [(f, ds) for f, ds in files if "PixelData" in ds or "FloatPixelData" in ds
                  or "DoubleFloatPixelData" in ds or get(ds, "Rows") is not None]
        if not images:
            raise InputError(f"{where} (no DICOM images found): expected a folder with an NM/SPECT series")
        by_series: dict[str, list] = {}
        for f, ds in images:
            by_series.setdefault(str(get(ds, "SeriesInstanceUID") or ""), []).append((f, ds))
        if series_uid is not None:
            if series_uid not in by_series:
                raise InputError(f"spect_series_uid {series_uid!r} (not in '{p}'): expected one of "
                                 f"{', '.join(sorted(by_series))}")
            chosen = by_series[series_uid]
        else:
            nm_series = {u: v for u, v in by_series.items()
                         if str(get(v[0][1], "Modality") or "") in ("NM", "PT")}
            if len(by_series) == 1:
                chosen = next(iter(by_series.values()))
            elif len(nm_series) == 1:
                chosen = next(iter(nm_series.values()))
            else:
                listing = "; ".join(f"{u} ({get(v[0][1], 'Modality') or '?'}, {len(v)} files)"
                                    for u, v in by_series.items())
                raise InputError(f"{where} ({len(by_series)} DICOM series, {len(nm_series)} of them NM/PT): "
                                 f"expected one, or give spect_series_uid, one of: {listing}")
        headers = [ds for _, ds in chosen]
        names = [f for f, _ in chosen]
    else:
        ds = read_header(p)
        if ds is None:
            raise InputError(f"{where} (not a DICOM file): expected an NM/SPECT DICOM file or folder")
        headers, names = [ds], [p]
    for ds, name in zip(headers, names):  # every file of the series, not only the first
        _check_kind(ds, name)
    if len(headers) == 1:
        return _read_multiframe(p, names[0])
    return _read_slices(p, names)


def _check_kind(ds: Any, file: Path) -> None:
    where = f"spect '{file}'"
    sop = str(get(ds, "SOPClassUID") or "")
    modality = str(get(ds, "Modality") or "")
    if sop and sop not in NM_SOP_CLASSES:
        import pydicom

        raise InputError(f"{where} (SOPClassUID (0008,0016) {pydicom.uid.UID(sop).name}): expected NM Image Storage "
                         "or a PET image storage class; secondary captures and other images carry no NM units or "
                         "timing one can trust")
    if modality not in ("NM", "PT"):
        raise InputError(f"{where} (Modality (0008,0060) {modality or 'absent'}): expected NM or PT")
    image_type = [str(v).upper().strip() for v in (get(ds, "ImageType") or [])]
    shown = "\\".join(image_type)
    if modality == "NM" and len(image_type) >= 3:
        rest = " ".join(image_type[2:])
        if "GATED" in rest:
            raise InputError(f"{where} (ImageType (0008,0008) {shown}: gated): expected an ungated reconstructed "
                             "SPECT (RECON TOMO)")
        if "TRANSMISSION" in rest:
            raise InputError(f"{where} (ImageType (0008,0008) {shown}: a transmission image): expected the "
                             "emission reconstruction (RECON TOMO ... EMISSION)")
        if "RECON" not in rest and image_type[2].split()[0] in ("TOMO", "STATIC", "WHOLE", "DYNAMIC", "WHOLE BODY"):
            raise InputError(f"{where} (ImageType (0008,0008) {shown}: projections or planar frames): expected a "
                             "reconstructed SPECT (ImageType value 3 RECON TOMO)")


def _frame_count(ds: Any) -> int:
    n = get(ds, "NumberOfFrames")
    return int(n) if n is not None else 1


def _pixels(ds: Any, file: Path) -> np.ndarray:
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise InputError(f"spect '{file}' (PixelData (7FE0,0010) unreadable: {exc}): expected uncompressed or "
                         "supported compressed pixel data") from None
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise InputError(f"spect '{file}' (pixel data of shape {arr.shape}): expected grey-level frames "
                         "(SamplesPerPixel 1)")
    return arr.astype(np.float64)


def _units_code(item: Any) -> str | None:
    code = first_item(item, "MeasurementUnitsCodeSequence")
    if code is None:
        return None
    return str(get(code, "CodeValue") or "").strip()


def _rwvm(item: Any) -> tuple[str, float, float, str] | None:
    """(unit, slope, intercept, description) from the first usable RWVM item of ``item``."""
    seq = get(item, "RealWorldValueMappingSequence")
    if seq is None:
        return None
    for entry in seq:
        code = _units_code(entry)
        if code is None or code.lower() not in UNIT_CODES:
            continue
        slope = get(entry, "RealWorldValueSlope")
        if slope is None:
            continue
        unit, factor = UNIT_CODES[code.lower()]
        intercept = float(get(entry, "RealWorldValueIntercept") or 0.0)
        return unit, float(slope) * factor, intercept * factor, f"RealWorldValueMappingSequence (0040,9096) '{code}'"
    return None


def _rwvm_codes(item: Any) -> list[str]:
    seq = get(item, "RealWorldValueMappingSequence") or []
    return [c for c in (_units_code(e) for e in seq) if c]


def _scaling(ds: Any, file: Path, nframes: int) -> tuple[str, np.ndarray, np.ndarray, str]:
    """(unit, slope per frame, intercept per frame, source) for the stored values of ``ds``."""
    where = f"spect '{file}'"
    # 1. real-world value mapping: per frame, shared, or top level
    per_frame = get(ds, "PerFrameFunctionalGroupsSequence")
    shared = first_item(ds, "SharedFunctionalGroupsSequence")
    found = None
    if per_frame is not None and len(per_frame) == nframes and all(_rwvm(f) for f in per_frame):
        maps = [_rwvm(f) for f in per_frame]
        units = {m[0] for m in maps}
        if len(units) == 1:
            found = (maps[0][0], np.array([m[1] for m in maps]), np.array([m[2] for m in maps]),
                     maps[0][3] + " per frame")
    if found is None:
        for item in (shared, ds):
            m = _rwvm(item) if item is not None else None
            if m is not None:
                found = (m[0], np.full(nframes, m[1]), np.full(nframes, m[2]), m[3])
                break
    if found is not None:
        return found
    # 2. Units (0054,1001) with the modality rescale
    units_tag = get(ds, "Units")
    slope, intercept = get(ds, "RescaleSlope"), get(ds, "RescaleIntercept")
    if slope is None and shared is not None:
        pvt = first_item(shared, "PixelValueTransformationSequence")
        if pvt is not None:
            slope, intercept = get(pvt, "RescaleSlope"), get(pvt, "RescaleIntercept")
    slope = 1.0 if slope is None else float(slope)
    intercept = 0.0 if intercept is None else float(intercept)
    if units_tag is not None:
        key = str(units_tag).strip().lower()
        if key not in ("bqml", "cnts", "cps"):
            codes = _rwvm_codes(ds) + (_rwvm_codes(shared) if shared is not None else [])
            extra = f"; RealWorldValueMappingSequence units {codes}" if codes else ""
            raise InputError(f"{where} (Units (0054,1001) {str(units_tag)!r}{extra}): expected BQML, CNTS or CPS "
                             "(activity concentration or counts; SUV and relative units cannot be quantified)")
        unit, factor = UNIT_CODES[key]
        return unit, np.full(nframes, slope * factor), np.full(nframes, intercept * factor), \
            f"Units (0054,1001) '{units_tag}'"
    codes = _rwvm_codes(ds) + (_rwvm_codes(shared) if shared is not None else [])
    if codes:
        raise InputError(f"{where} (RealWorldValueMappingSequence (0040,9096) units {codes}, no Units (0054,1001)): "
                         "expected Bq/ml, counts or cps")
    modality = str(get(ds, "Modality") or "")
    if modality == "NM":
        return "counts", np.full(nframes, slope), np.full(nframes, intercept), \
            "NM Image IOD default: counts (no Units (0054,1001), no RealWorldValueMappingSequence (0040,9096))"
    raise InputError(f"{where} (no Units (0054,1001) and no RealWorldValueMappingSequence (0040,9096)): expected the "
                     "units of a PET-style series (BQML, CNTS or CPS)")


def _acquisition_start(headers: list[Any], files: list[Path]) -> tuple[_dt.datetime | None, str]:
    options = (("AcquisitionDateTime (0008,002A)", lambda d: parse_datetime(get(d, "AcquisitionDateTime"))),
               ("AcquisitionDate/AcquisitionTime (0008,0022/0032)",
                lambda d: parse_date_time(get(d, "AcquisitionDate"), get(d, "AcquisitionTime"))),
               ("SeriesDate/SeriesTime (0008,0021/0031)",
                lambda d: parse_date_time(get(d, "SeriesDate"), get(d, "SeriesTime"))))
    for name, fn in options:
        values = []
        for d, f in zip(headers, files):
            try:
                v = fn(d)
            except ValueError as exc:
                raise InputError(f"spect '{f}' ({name} malformed: {exc}): expected DICOM DA/TM/DT values") from None
            if v is not None:
                values.append(v)
        if values:
            return min(values), name
    return None, ("absent: none of AcquisitionDateTime (0008,002A), AcquisitionDate/AcquisitionTime "
                  "(0008,0022/0032), SeriesDate/SeriesTime (0008,0021/0031)")


def _duration(ds: Any, file: Path) -> tuple[float | None, str]:
    where = f"spect '{file}'"
    rot = get(ds, "RotationInformationSequence")
    if rot is not None and str(get(ds, "Modality") or "") == "NM":
        total, ok = 0.0, True
        for item in rot:
            n, ms = get(item, "NumberOfFramesInRotation"), get(item, "ActualFrameDuration")
            if n is None or ms is None:
                ok = False
                break
            total += int(n) * float(ms) * 1e-3
        if ok and len(rot) > 0:
            if not total > 0:
                raise InputError(f"{where} (RotationInformationSequence (0054,0052) gives a duration of {total:g} s): "
                                 "expected NumberOfFramesInRotation x ActualFrameDuration > 0")
            return total, ("RotationInformationSequence (0054,0052): sum of NumberOfFramesInRotation (0054,0053) x "
                           "ActualFrameDuration (0018,1242)")
    ms = get(ds, "ActualFrameDuration")
    if ms is not None:
        if not float(ms) > 0:
            raise InputError(f"{where} (ActualFrameDuration (0018,1242) {ms}): expected a duration > 0 ms")
        return float(ms) * 1e-3, "ActualFrameDuration (0018,1242)"
    return None, ("absent: neither RotationInformationSequence (0054,0052) with NumberOfFramesInRotation and "
                  "ActualFrameDuration, nor ActualFrameDuration (0018,1242)")


def _decay_correction(ds: Any, file: Path) -> tuple[str, str]:
    v = get(ds, "DecayCorrection")
    if v is None:
        return "START", "assumed START (DecayCorrection (0054,1102) absent)"
    s = str(v).strip().upper()
    if s not in ("START", "ADMIN", "NONE"):
        raise InputError(f"spect '{file}' (DecayCorrection (0054,1102) {s!r}): expected START, ADMIN or NONE")
    source = "DecayCorrection (0054,1102)"
    # DecayFactor (0054,1321): the factor the pixel values were scaled by to correct for decay to
    # the DecayCorrection reference time (informational: the reference time is what matters);
    # a factor other than 1 beside NONE contradicts it, and one <= 0 is no factor
    df = get(ds, "DecayFactor")
    if df is not None and str(df).strip() != "":
        try:
            f = float(df)
        except (TypeError, ValueError):
            raise InputError(f"spect '{file}' (DecayFactor (0054,1321) {df!r}): expected a number > 0") from None
        if not (np.isfinite(f) and f > 0.0):
            raise InputError(f"spect '{file}' (DecayFactor (0054,1321) {df!r}): expected a number > 0")
        if s == "NONE" and abs(f - 1.0) > 1e-4:
            raise InputError(f"spect '{file}' (DecayFactor (0054,1321) {f:g} with DecayCorrection NONE): the pixel "
                             "values were scaled for decay although the header says they were not; expected a "
                             "factor of 1, or DecayCorrection START/ADMIN")
        source += f", DecayFactor (0054,1321) {f:g}"
    return s, source


def _radiopharmaceutical(ds: Any, file: Path) -> Radiopharmaceutical:
    where = f"spect '{file}'"
    item = first_item(ds, "RadiopharmaceuticalInformationSequence")
    if item is None:
        return Radiopharmaceutical()
    nuclide, nuclide_source = None, ""
    code = first_item(item, "RadionuclideCodeSequence")
    if code is not None and get(code, "CodeMeaning") is not None:
        nuclide = nuclide_from_code_meaning(str(get(code, "CodeMeaning")))
        nuclide_source = f"RadionuclideCodeSequence (0054,0300) CodeMeaning {str(get(code, 'CodeMeaning'))!r}"
    dose = get(item, "RadionuclideTotalDose")
    total_bq = None
    if dose is not None:
        value = float(dose)
        if str(get(ds, "SOPClassUID") or "") == NM_IMAGE_STORAGE or str(get(ds, "Modality") or "") == "NM":
            if value > MAX_TOTAL_DOSE_MBQ:
                raise InputError(f"{where} (RadionuclideTotalDose (0018,1074) {value:g}: in an NM object the unit is "
                                 f"MBq (PS3.3 C.8.4.10.1.7), so this is over {MAX_TOTAL_DOSE_MBQ:g} MBq and was "
                                 "probably written in Bq): expected MBq; give administration.activity_mbq in the "
                                 "study file")
            total_bq = value * 1e6
        else:
            total_bq = value  # PET Isotope module: Bq
        if not total_bq > 0:
            raise InputError(f"{where} (RadionuclideTotalDose (0018,1074) {value:g}): expected an activity > 0")
    try:
        start = parse_datetime(get(item, "RadiopharmaceuticalStartDateTime"))
    except ValueError as exc:
        raise InputError(f"{where} (RadiopharmaceuticalStartDateTime (0018,1078) malformed: {exc}): expected a "
                         "DICOM DT value") from None
    time_only = None
    if start is None and get(item, "RadiopharmaceuticalStartTime") is not None:
        from pydicom.valuerep import TM

        try:
            t = TM(str(get(item, "RadiopharmaceuticalStartTime")).strip().replace(":", ""))
            time_only = _dt.time(t.hour, t.minute, t.second, t.microsecond)
        except ValueError as exc:
            raise InputError(f"{where} (RadiopharmaceuticalStartTime (0018,1072) malformed: {exc}): expected a "
                             "DICOM TM value") from None
    hl = get(item, "RadionuclideHalfLife")
    return Radiopharmaceutical(nuclide, nuclide_source, total_bq, start, time_only,
                               float(hl) if hl is not None else None)


def _identity(ds: Any) -> dict[str, str | None]:
    def s(k: str) -> str | None:
        v = get(ds, k)
        return None if v is None else str(v).strip()

    return {"modality": s("Modality") or "", "sop_class_uid": s("SOPClassUID") or "",
            "series_uid": s("SeriesInstanceUID") or "", "frame_of_reference_uid": s("FrameOfReferenceUID"),
            "patient_id": s("PatientID"), "patient_name": s("PatientName"), "study_uid": s("StudyInstanceUID")}


def _vec(value: Any, n: int, where: str, tag: str) -> np.ndarray:
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where} ({tag} {value!r} not numbers): expected {n} numbers") from None
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise InputError(f"{where} ({tag} {value!r}): expected {n} finite numbers")
    return arr


def _orientation(iop: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    row, col = iop[:3], iop[3:]
    if (abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3
            or abs(float(row @ col)) > 1e-3):
        raise InputError(f"{where} (ImageOrientationPatient (0020,0037) {iop.tolist()} not orthonormal): expected "
                         "two orthogonal unit vectors")
    row = row / np.linalg.norm(row)
    col = col / np.linalg.norm(col)
    return row, col, np.cross(row, col)


def _make_image(volume: np.ndarray, origin: np.ndarray, row: np.ndarray, col: np.ndarray, normal: np.ndarray,
                spacing: tuple[float, float, float]) -> Any:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(volume, dtype=np.float64))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(v) for v in origin))
    image.SetDirection(tuple(float(v) for v in np.column_stack([row, col, normal]).ravel()))
    return image


def _pixel_spacing(ds: Any, where: str) -> np.ndarray:
    ps = get(ds, "PixelSpacing")
    if ps is None:
        shared = first_item(ds, "SharedFunctionalGroupsSequence")
        pm = first_item(shared, "PixelMeasuresSequence") if shared is not None else None
        ps = get(pm, "PixelSpacing") if pm is not None else None
    if ps is None:
        raise InputError(f"{where} (PixelSpacing (0028,0030) absent): expected the pixel size in mm")
    out = _vec(ps, 2, where, "PixelSpacing (0028,0030)")
    if np.any(out <= 0):
        raise InputError(f"{where} (PixelSpacing (0028,0030) {out.tolist()}): expected positive sizes in mm")
    return out


def _stack_positions(frames: np.ndarray, positions: np.ndarray, row: np.ndarray, col: np.ndarray,
                     normal: np.ndarray, pixel_spacing: np.ndarray, where: str) -> Any:
    """A volume from frames at the given ImagePositionPatient values (checked as for CT)."""
    order, spacing = check_slice_stack(positions, normal, where)
    frames, positions = frames[order], positions[order]
    return _make_image(frames, positions[0], row, col, normal, (pixel_spacing[1], pixel_spacing[0], spacing)), spacing


def _read_multiframe(path: Path, file: Path) -> NMVolume:
    import pydicom

    where = f"spect '{file}'"
    try:
        ds = pydicom.dcmread(str(file))
    except Exception as exc:
        raise InputError(f"{where} (unreadable: {exc}): expected a DICOM file") from None
    n = _frame_count(ds)
    if n < 2:
        raise InputError(f"{where} (a single frame, NumberOfFrames (0028,0008) {n}): expected a reconstructed "
                         "volume (a multi-frame NM object, or a folder of slices)")
    frames = _pixels(ds, file)
    if frames.shape[0] != n:
        raise InputError(f"{where} ({frames.shape[0]} frames in PixelData, NumberOfFrames (0028,0008) {n}): "
                         "expected as many frames as NumberOfFrames")
    unit, slope, intercept, unit_source = _scaling(ds, file, n)
    values = frames * slope[:, None, None] + intercept[:, None, None]
    pixel_spacing = _pixel_spacing(ds, where)

    per_frame = get(ds, "PerFrameFunctionalGroupsSequence")
    plane_positions = None
    if per_frame is not None and len(per_frame) == n:
        pos = [first_item(f, "PlanePositionSequence") for f in per_frame]
        if all(p is not None and get(p, "ImagePositionPatient") is not None for p in pos):
            plane_positions = np.array([_vec(get(p, "ImagePositionPatient"), 3, where,
                                             "PlanePositionSequence ImagePositionPatient") for p in pos])
    if plane_positions is not None:  # enhanced multi-frame: stack by position
        shared = first_item(ds, "SharedFunctionalGroupsSequence")
        po = first_item(shared, "PlaneOrientationSequence") if shared is not None else None
        if po is None:
            po = first_item(per_frame[0], "PlaneOrientationSequence")
        iop_value = get(po, "ImageOrientationPatient") if po is not None else None
        if iop_value is None:
            raise InputError(f"{where} (PlaneOrientationSequence ImageOrientationPatient (0020,0037) absent): "
                             "expected the slice orientation")
        row, col, normal = _orientation(_vec(iop_value, 6, where, "ImageOrientationPatient (0020,0037)"), where)
        image, _ = _stack_positions(values, plane_positions, row, col, normal, pixel_spacing, where)
    else:
        det = first_item(ds, "DetectorInformationSequence")
        def tag(name: str) -> Any:
            return (get(det, name) if det is not None else None) or get(ds, name)

        iop_value, ipp_value = tag("ImageOrientationPatient"), tag("ImagePositionPatient")
        if iop_value is None or ipp_value is None:
            missing = [t for t, v in (("ImageOrientationPatient (0020,0037)", iop_value),
                                      ("ImagePositionPatient (0020,0032)", ipp_value)) if v is None]
            raise InputError(f"{where} ({' and '.join(missing)} absent from DetectorInformationSequence (0054,0022) "
                             "and the top level): expected the geometry of a reconstructed NM volume")
        row, col, normal = _orientation(_vec(iop_value, 6, where, "ImageOrientationPatient (0020,0037)"), where)
        origin = _vec(ipp_value, 3, where, "ImagePositionPatient (0020,0032)")
        step = get(ds, "SpacingBetweenSlices")
        step_tag = "SpacingBetweenSlices (0018,0088)"
        if step is None:
            step, step_tag = get(ds, "SliceThickness"), "SliceThickness (0018,0050)"
        if step is None:
            raise InputError(f"{where} (SpacingBetweenSlices (0018,0088) and SliceThickness (0018,0050) absent): "
                             "expected the slice spacing in mm")
        step = float(step)
        if not np.isfinite(step) or abs(step) < 1e-3:
            raise InputError(f"{where} ({step_tag} {step:g}): expected a non-zero slice spacing in mm")
        slice_vector = get(ds, "SliceVector")
        if slice_vector is not None:
            sv = np.array([int(v) for v in slice_vector])
            if sv.shape != (n,) or sorted(sv.tolist()) != list(range(1, n + 1)):
                raise InputError(f"{where} (SliceVector (0054,0080) is not a permutation of 1..{n}): expected one "
                                 "slice number per frame (more than one energy window or gate?)")
            values = values[np.argsort(sv, kind="stable")]
        ew = get(ds, "EnergyWindowVector")
        if ew is not None and len({int(v) for v in ew}) > 1:
            raise InputError(f"{where} (EnergyWindowVector (0054,0010) with several windows): expected one "
                             "reconstructed energy window")
        if step < 0:  # stacked in front of the first slice: keep a right-handed grid
            values = values[::-1]
            origin = origin + (n - 1) * step * normal
        image = _make_image(values, origin, row, col, normal, (pixel_spacing[1], pixel_spacing[0], abs(step)))
    start, start_source = _acquisition_start([ds], [file])
    duration, duration_source = _duration(ds, file)
    dc, dc_source = _decay_correction(ds, file)
    return NMVolume(path=path, image=image, units=unit, units_source=unit_source, acquisition_start=start,
                    acquisition_start_source=start_source, duration_s=duration, duration_source=duration_source,
                    decay_correction=dc, decay_correction_source=dc_source,
                    radiopharmaceutical=_radiopharmaceutical(ds, file), files=(str(file),), **_identity(ds))


def _read_slices(path: Path, files: list[Path]) -> NMVolume:
    import pydicom

    where = f"spect '{path}'"
    datasets = []
    for f in files:
        try:
            datasets.append(pydicom.dcmread(str(f)))
        except Exception as exc:
            raise InputError(f"spect '{f}' (unreadable: {exc}): expected a DICOM slice") from None
    for f, ds in zip(files, datasets):
        if _frame_count(ds) != 1:
            raise InputError(f"spect '{f}' (NumberOfFrames (0028,0008) {_frame_count(ds)} in a series of "
                             f"{len(files)} files): expected one slice per file")
    first = datasets[0]
    scalings = [_scaling(ds, f, 1) for f, ds in zip(files, datasets)]
    units = {s[0] for s in scalings}
    if len(units) > 1:
        raise InputError(f"{where} (slices in different units {sorted(units)}): expected one unit for the series")
    shapes = {(int(ds.Rows), int(ds.Columns)) for ds in datasets}
    if len(shapes) > 1:
        raise InputError(f"{where} (slices of different sizes {sorted(shapes)} (Rows/Columns)): expected one size")
    iops = []
    positions = []
    for f, ds in zip(files, datasets):
        w = f"spect '{f}'"
        if get(ds, "ImageOrientationPatient") is None or get(ds, "ImagePositionPatient") is None:
            raise InputError(f"{w} (ImageOrientationPatient (0020,0037) or ImagePositionPatient (0020,0032) absent): "
                             "expected the slice geometry")
        iops.append(_vec(ds.ImageOrientationPatient, 6, w, "ImageOrientationPatient (0020,0037)"))
        positions.append(_vec(ds.ImagePositionPatient, 3, w, "ImagePositionPatient (0020,0032)"))
    iop = np.array(iops)
    if np.max(np.abs(iop - iop[0])) > ORIENTATION_TOL:
        raise InputError(f"{where} (slices with different ImageOrientationPatient (0020,0037)): expected one "
                         "orientation for the series")
    spacings = {tuple(np.round(_pixel_spacing(ds, where), 6)) for ds in datasets}
    if len(spacings) > 1:
        raise InputError(f"{where} (slices with different PixelSpacing (0028,0030) {sorted(spacings)}): expected one")
    row, col, normal = _orientation(iop[0], where)
    frames = np.concatenate([_pixels(ds, f) * s[1][0] + s[2][0] for f, ds, s in zip(files, datasets, scalings)])
    image, _ = _stack_positions(frames, np.array(positions), row, col, normal, _pixel_spacing(first, where), where)
    start, start_source = _acquisition_start(datasets, files)
    durations = {_duration(ds, f) for f, ds in zip(files, datasets)}
    if len(durations) > 1:
        raise InputError(f"{where} (slices with different ActualFrameDuration (0018,1242) "
                         f"{sorted(d[0] for d in durations if d[0] is not None)}): expected one frame duration")
    duration, duration_source = durations.pop()
    dcs = {_decay_correction(ds, f)[0] for f, ds in zip(files, datasets)}
    if len(dcs) > 1:
        raise InputError(f"{where} (slices with different DecayCorrection (0054,1102) {sorted(dcs)}): expected one")
    dc, dc_source = _decay_correction(first, files[0])
    idents = [_identity(ds) for ds in datasets]
    for key, tag in (("frame_of_reference_uid", "FrameOfReferenceUID (0020,0052)"),
                     ("patient_id", "PatientID (0010,0020)")):
        values = {i[key] for i in idents} - {None}
        if len(values) > 1:
            raise InputError(f"{where} (slices with different {tag}: {sorted(values)}): expected one series of one "
                             "patient in one frame of reference")
    return NMVolume(path=path, image=image, units=scalings[0][0], units_source=scalings[0][3],
                    acquisition_start=start, acquisition_start_source=start_source, duration_s=duration,
                    duration_source=duration_source, decay_correction=dc, decay_correction_source=dc_source,
                    radiopharmaceutical=_radiopharmaceutical(first, files[0]), files=tuple(str(f) for f in files),
                    **idents[0])
