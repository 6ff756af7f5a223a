"""Hostile and mistaken inputs (issue "Outputs that survive faults and hostile input"): each is
refused with an InputError that names the file / key / tag and what was expected, or is made
safe in the outputs.

1. Wrong images: an NM/PET/secondary-capture file or folder given as the CT (its counts would be
   read as HU), a lone CT slice, a DICOM object without Modality or SOP class, a CT given as the
   SPECT, a SPECT series with a foreign file in it.
2. Hostile region names: '/' (nested HDF5 groups), names that clash ('liver' and 'liver/part'
   in HDF5; 'liver part' and 'liver/part' as file names; 'Liver' and 'liver'), spreadsheet
   formulas ('=HYPERLINK(...)', '+', '-', '@', tab, CR) in every CSV writer, control characters.
3. Smaller: scans a year after the administration, dose.batches below the transport's minimum,
   threads far beyond the CPUs, a density below the stated minimum, a nuclide one key away from
   the one in the DICOM header (Lu-178 for Lu-177).

Every bad input tried is listed in BAD_INPUTS (at the end) with the test that shows its clear
refusal or its safe handling.
"""

import csv
import datetime as dt
import io
import re
import shutil
import warnings

import h5py
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import _synthetic_dicom as S
import rptdose as rd
from rptdose.errors import InputError
from rptdose.io.ct import read_ct
from rptdose.io.hdf5 import h5_name, h5_unname, read_masks, write_masks
from rptdose.io.nm import read_nm
from rptdose.io.segmentation import check_region_names, read_label_map, read_rtstruct, read_seg
from rptdose.quant.outputs import csv_text, safe_name, write_csv

try:
    import rptdose._core  # noqa: F401

    HAVE_CORE = True
except ImportError:
    HAVE_CORE = False
needs_core = pytest.mark.skipif(not HAVE_CORE, reason="the C++ core rptdose._core is not built")

SMALL = (4, 6, 5)            # [z, y, x] of the small reader test images
SP = (4.0, 4.0, 4.0)
ORIGIN = (-10.0, -12.0, -8.0)
WHEN = S.ADMIN_TIME + dt.timedelta(hours=24)

# ---- fixtures: small DICOM objects -----------------------------------------------------------

def hu_small():
    hu = np.zeros(SMALL)
    hu[:, :2] = -800.0
    return hu


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Small objects of each kind, written once."""
    root = tmp_path_factory.mktemp("hostile")
    out = {}
    out["ct_dir"] = S.write_ct_series(root / "ct", hu_small(), SP, ORIGIN, for_uid="1.2.3.4")
    out["ct_slice"] = sorted(out["ct_dir"].iterdir())[0]
    one = S.write_ct_series(root / "ct_one", hu_small()[:1], SP, ORIGIN, for_uid="1.2.3.4")
    out["ct_one_dir"] = one
    out["nm"] = S.write_nm_multiframe(root / "spect.dcm", np.full(SMALL, 7.0), SP, ORIGIN,
                                      S.NMOptions(acquisition=WHEN, for_uid="1.2.3.4"))
    out["pet_dir"] = S.write_pet_series(root / "pet", np.full(SMALL, 100.0), SP, ORIGIN, acquisition=WHEN,
                                        for_uid="1.2.3.4")
    # a secondary capture (SC) claiming Modality CT, as in the shared Y-90 case's SPECT folder
    sc = pydicom.dcmread(out["ct_slice"])
    sc.SOPClassUID = S.SC_STORAGE
    sc.file_meta.MediaStorageSOPClassUID = S.SC_STORAGE
    (root / "sc").mkdir()
    sc.save_as(root / "sc" / "sc.dcm")
    out["sc"] = root / "sc" / "sc.dcm"
    # a DICOM file stating neither Modality nor SOPClassUID
    anon = pydicom.dcmread(out["ct_slice"])
    del anon.Modality
    del anon.SOPClassUID
    anon.save_as(root / "anon.dcm")
    out["anon"] = root / "anon.dcm"
    # NIfTI volumes: a normal one and a single slice
    img = sitk.GetImageFromArray(hu_small().astype(np.int16))
    img.SetSpacing(SP)
    sitk.WriteImage(img, str(root / "ct.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(hu_small()[:1].astype(np.int16)), str(root / "slice.nii.gz"))
    out["nifti"], out["nifti_slice"] = root / "ct.nii.gz", root / "slice.nii.gz"
    return out


# ---- 1. wrong images given as CT / SPECT ---------------------------------------------------------

CT_CASES = [
    # (id, files key, words the message must hold)
    ("nm file as ct", "nm", ["ct '", "spect.dcm", "SOPClassUID (0008,0016) Nuclear Medicine Image Storage, "
                             "Modality (0008,0060) NM", "expected CT Image Storage"]),
    ("pet series as ct", "pet_dir", ["ct '", "Positron Emission Tomography", "expected CT Image Storage"]),
    ("secondary capture as ct", "sc", ["ct '", "Secondary Capture", "expected CT Image Storage"]),
    ("folder of a secondary capture as ct", "sc_dir", ["ct '", "Secondary Capture"]),
    ("dicom without modality and sop class as ct", "anon",
     ["anon.dcm", "neither SOPClassUID (0008,0016) nor Modality (0008,0060)", "expected a DICOM CT"]),
    ("single ct slice file as ct", "ct_slice", ["ct '", "a single DICOM CT slice", "NumberOfFrames (0028,0008)",
                                                "expected a CT volume", "folder that holds the whole series"]),
    ("folder with one ct slice as ct", "ct_one_dir", ["ct_one", "a single DICOM CT slice", "expected a CT volume"]),
    ("single-slice nifti as ct", "nifti_slice", ["slice.nii.gz", "a single slice", "at least 2 voxels"]),
]

@pytest.mark.parametrize("case", CT_CASES, ids=[c[0] for c in CT_CASES])
def test_wrong_image_as_ct(files, case):
    _, key, words = case
    path = files[key] if key != "sc_dir" else files["sc"].parent
    for reader in (read_ct, rd.Phantom.from_ct):
        with pytest.raises(InputError) as info:
            reader(path)
        for w in words:
            assert w in str(info.value), (w, str(info.value))


def test_single_slice_image_object_refused_and_volumes_accepted(files):
    one = sitk.GetImageFromArray(np.zeros((1, 6, 5), dtype=np.float32))
    with pytest.raises(InputError, match=r"ct \(SimpleITK image\) \(size \(5, 6, 1\) voxels.*expected a CT volume "
                                         r"of at least 2 voxels along each axis"):
        read_ct(one)
    # what must still pass: a DICOM CT folder, a 3-D NIfTI, a two-slice series
    assert read_ct(files["ct_dir"]).GetSize() == (5, 6, 4)
    assert read_ct(files["nifti"]).GetSize() == (5, 6, 4)
    assert rd.Phantom.from_ct(files["ct_dir"]).shape == SMALL


def test_two_slices_are_a_volume(tmp_path):
    folder = S.write_ct_series(tmp_path / "ct2", hu_small()[:2], SP, ORIGIN, for_uid="1.2.3.4")
    assert read_ct(folder).GetSize() == (5, 6, 2)


SPECT_CASES = [
    ("ct folder as spect", "ct_dir", ["spect '", "SOPClassUID (0008,0016) CT Image Storage",
                                      "expected NM Image Storage"]),
    ("ct slice file as spect", "ct_slice", ["spect '", "CT Image Storage", "expected NM Image Storage"]),
    ("secondary capture as spect", "sc", ["spect '", "Secondary Capture", "expected NM Image Storage"]),
    ("nifti as spect", "nifti", ["spect '", "not a DICOM file", "expected an NM/SPECT DICOM file"]),
    ("dicom without modality as spect", "anon", ["spect '", "Modality (0008,0060) absent", "expected NM or PT"]),
]

@pytest.mark.parametrize("case", SPECT_CASES, ids=[c[0] for c in SPECT_CASES])
def test_wrong_image_as_spect(files, case):
    _, key, words = case
    with pytest.raises(InputError) as info:
        read_nm(files[key])
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_spect_series_with_a_foreign_file(files, tmp_path):
    """Every file of a slice series is checked, not only the first."""
    folder = tmp_path / "pet"
    shutil.copytree(files["pet_dir"], folder)
    last = sorted(folder.iterdir())[-1]
    ds = pydicom.dcmread(last)
    ds.Modality = "CT"
    ds.SOPClassUID = S.CT_STORAGE
    ds.file_meta.MediaStorageSOPClassUID = S.CT_STORAGE
    ds.save_as(last)
    with pytest.raises(InputError, match=rf"spect '.*{last.name}' \(SOPClassUID \(0008,0016\) CT Image Storage\)"):
        read_nm(folder)
    assert read_nm(files["pet_dir"]).image.GetSize() == (5, 6, 4)   # the clean series still reads


def test_single_frame_nm_refused(tmp_path):
    path = S.write_nm_multiframe(tmp_path / "one.dcm", np.full((1, 6, 5), 3.0), SP, ORIGIN,
                                 S.NMOptions(acquisition=WHEN))
    with pytest.raises(InputError, match=r"one.dcm' \(a single frame, NumberOfFrames \(0028,0008\) 1\): expected a "
                                         r"reconstructed volume"):
        read_nm(path)


# ---- the study path: the same refusals, naming the study key --------------------------------------

@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    path = S.write_sensitivity_study(root, shifts={})
    path.write_text(path.read_text().replace("iterations = 60", 'method = "none"'))
    return root


def copy_study(study_dir, tmp_path, old=None, new=None):
    root = tmp_path / "study"
    shutil.copytree(study_dir, root)
    path = root / "study.toml"
    if old is not None:
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new))
    return path


STUDY_CASES = [
    ("study: spect file as ct", 'ct = "tp2/ct"', 'ct = "tp2/spect.dcm"',
     [r"timepoint\[3\].ct", "spect.dcm", r"SOPClassUID \(0008,0016\) Nuclear Medicine Image Storage",
      "expected CT Image Storage"]),
    ("study: one ct slice as ct", 'ct = "tp2/ct"', 'ct = "tp2/ct/ct0000.dcm"',
     [r"timepoint\[3\].ct", "ct0000.dcm", "a single DICOM CT slice", "expected a CT volume"]),
    ("study: ct folder as spect", 'spect = "tp2/spect.dcm"', 'spect = "tp2/ct"',
     [r"timepoint\[3\].spect", "SOPClassUID \\(0008,0016\\) CT Image Storage", "expected NM Image Storage"]),
    ("study: administration a year before the scans", "time = 2026-03-02T09:00:00", "time = 2025-03-02T09:00:00",
     ["acquisition start 2026-03-0", "days, 5[0-9.]+ half-lives of Lu-177, after the administration "
      "2025-03-02T09:00:00 \\(administration.time\\)", "expected scans within 20 half-lives",
      "administration.time", "acquisition_time"]),
    ("study: dose.batches 5", "seed = 7", "seed = 7\nbatches = 5",
     ["key dose.batches 5 \\(too small\\)", "expected an integer >= 10"]),
    ("study: dose.batches 10**6", "seed = 7", "seed = 7\nbatches = 1000000",
     ["key dose.batches 1000000 \\(too large\\)", "expected an integer <= 100000"]),
    ("study: nuclide Lu-178 against a Lu-177 header", 'nuclide = "Lu-177"', 'nuclide = "Lu-178"',
     ["RadionuclideCodeSequence \\(0054,0300\\) says Lu-177", "expected Lu-178 as in the study file's study.nuclide"]),
]

@pytest.mark.parametrize("case", STUDY_CASES, ids=[c[0] for c in STUDY_CASES])
def test_study_refuses(study_dir, tmp_path, case):
    _, old, new, patterns = case
    path = copy_study(study_dir, tmp_path, old, new)
    with pytest.raises(InputError) as info:
        rd.load_study(path)
    msg = str(info.value)
    assert "study.toml" in msg or "study '" in msg or str(path.parent) in msg
    for pat in patterns:
        assert re.search(pat, msg), (pat, msg)


def test_lu178_also_caught_without_nuclide_code(study_dir, tmp_path):
    """Without RadionuclideCodeSequence the half-life tag catches Lu-178; without both, the scan
    times (tens of Lu-178 half-lives after the administration) do."""
    path = copy_study(study_dir, tmp_path, 'nuclide = "Lu-177"', 'nuclide = "Lu-178"')
    root = path.parent
    for tp, t_h in enumerate(S.TIMES_H, start=1):
        for_uid = pydicom.dcmread(root / f"tp{tp}" / "ct" / "ct0000.dcm", stop_before_pixels=True).FrameOfReferenceUID
        counts = S.nm_counts(t_h * S.HOUR, S.SENSITIVITY, S.VIEWS * S.MS_PER_VIEW / 1000.0)
        S.write_nm_multiframe(root / f"tp{tp}" / "spect.dcm", counts, S.SPACING, S.ORIGIN,
                              S.NMOptions(acquisition=S.ADMIN_TIME + dt.timedelta(hours=t_h), for_uid=for_uid,
                                          rotation=(S.VIEWS, S.MS_PER_VIEW), nuclide_meaning=None))
    with pytest.raises(InputError, match=r"RadionuclideHalfLife \(0018,1075\) 574301 s, the half-life of Lu-178 is "
                                         r"1704 s\): expected the study's nuclide; check study.nuclide"):
        rd.load_study(path)
    for tp, t_h in enumerate(S.TIMES_H, start=1):
        for_uid = pydicom.dcmread(root / f"tp{tp}" / "ct" / "ct0000.dcm", stop_before_pixels=True).FrameOfReferenceUID
        counts = S.nm_counts(t_h * S.HOUR, S.SENSITIVITY, S.VIEWS * S.MS_PER_VIEW / 1000.0)
        S.write_nm_multiframe(root / f"tp{tp}" / "spect.dcm", counts, S.SPACING, S.ORIGIN,
                              S.NMOptions(acquisition=S.ADMIN_TIME + dt.timedelta(hours=t_h), for_uid=for_uid,
                                          rotation=(S.VIEWS, S.MS_PER_VIEW), nuclide_meaning=None,
                                          half_life_s=None))
    with pytest.raises(InputError, match=r"half-lives of Lu-178, after the administration.*expected scans within 20 "
                                         r"half-lives"):
        rd.load_study(path)


def test_docs_state_the_batches_the_code_wants():
    """docs/study_file.md's dose.batches row says what read_study_file and simulate enforce."""
    from pathlib import Path

    from rptdose.transport.simulate import MAX_BATCHES, MIN_BATCHES

    doc = (Path(__file__).resolve().parent.parent / "docs" / "study_file.md").read_text(encoding="utf-8")
    row = next(line for line in doc.splitlines() if "`dose.batches`" in line)
    assert f"int {MIN_BATCHES}–{MAX_BATCHES}" in row and "≥ 2" not in row
    assert "20 physical half-lives" in doc


# ---- 2. hostile region names ------------------------------------------------------------------

HOSTILE = ["http://evil", "=HYPERLINK(\"http://evil\",\"x\")", "+SUM(1)", "-2+3", "@cmd", "\tTab", "liver",
           "liver/part", ".", "..", "a.b", "100%", "%2F", "Leber (Tumor)", "肝臓"]


def test_h5_names_are_safe_and_reversible(tmp_path):
    links = [h5_name(n) for n in HOSTILE]
    assert len(set(links)) == len(HOSTILE)                        # injective
    assert all("/" not in k and k not in (".", "..") for k in links)
    assert h5_name("http://evil") == "http:%2F%2Fevil" and h5_name("liver") == "liver"
    assert [h5_unname(k) for k in links] == HOSTILE
    masks = {n: np.arange(8).reshape(2, 2, 2) % (i + 2) == 0 for i, n in enumerate(HOSTILE)}
    with h5py.File(tmp_path / "m.h5", "w") as f:
        write_masks(f, masks, compression="gzip")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        g = f["masks"]
        assert all(isinstance(g[k], h5py.Dataset) for k in g)       # flat: no nested groups
        assert {g[k].attrs["name"] for k in g} == set(HOSTILE)
    back = read_masks(tmp_path / "m.h5")
    assert set(back) == set(HOSTILE)
    for n in HOSTILE:
        np.testing.assert_array_equal(back[n], masks[n])
    with pytest.raises(InputError, match="region name '' .*expected a non-empty region name"):
        h5_name("")


def test_csv_cells_escaped_numbers_kept(tmp_path):
    rows = [{"region": "=HYPERLINK(\"http://evil\",\"x\")", "mean_dose_gy": -1.5, "n": -3, "note": "-2+3"},
            {"region": "+SUM(1)", "mean_dose_gy": 2.0, "n": 4, "note": "@cmd"},
            {"region": "\tTab", "mean_dose_gy": float("nan"), "n": 0, "note": "\rCR"},
            {"region": "liver", "mean_dose_gy": -0.0, "n": 1, "note": ["-8.0", 4.0, 0.0]},
            {"region": "-1.25", "mean_dose_gy": 1e-300, "n": 2, "note": None}]
    cols = ["region", "mean_dose_gy", "n", "note", "=cmd|' /C calc'!A0"]
    path = write_csv(tmp_path / "r.csv", rows, cols)
    with open(path, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert table[0][-1] == "'=cmd|' /C calc'!A0"                     # header cells too
    got = [dict(zip(table[0], r)) for r in table[1:]]
    assert [r["region"] for r in got] == ["'=HYPERLINK(\"http://evil\",\"x\")", "'+SUM(1)", "'\tTab", "liver",
                                          "-1.25"]
    assert [r["mean_dose_gy"] for r in got] == ["-1.5", "2", "", "-0", "1e-300"]      # numbers stay numbers
    assert [r["n"] for r in got] == ["-3", "4", "0", "1", "2"]
    assert [r["note"] for r in got] == ["'-2+3", "'@cmd", "'\nCR", "-8.0;4.0;0.0", ""]   # CR: no row break
    for cell in (c for r in table for c in r):
        assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell
        assert not cell.startswith("-") or re.fullmatch(r"-[0-9.;e+-]+", cell), cell


def test_compare_csv_escaped(tmp_path):
    from rptdose.analysis.compare import _write_csv

    path = _write_csv(tmp_path / "c.csv", [{"region": "=1+1", "mean_a_gy": -2.5, "voxels": -1},
                                           {"region": "@x", "mean_a_gy": 3.0, "voxels": 7}])
    table = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert table[1] == ["'=1+1", "-2.5", "-1"] and table[2] == ["'@x", "3", "7"]
    assert csv_text("-1e-05") == "-1e-05" and csv_text("-x") == "'-x"


def test_safe_name_file_parts():
    names = ["http://evil", "..", ".", "../../etc/passwd", "CON", "nul.txt", "a" * 300, "肝臓", "腎臓", "liver"]
    parts = [safe_name(n) for n in names]
    assert parts[names.index("liver")] == "liver" and parts[0] == "http_evil"
    assert parts[3] == "etc_passwd"
    for p in parts:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", p), p
        assert len(p) <= 64 and ".." not in p and p.split(".")[0].lower() not in ("con", "nul")
    assert len({safe_name(n) for n in ("..", ".", "肝臓", "腎臓")}) == 4     # hashed apart, not all "region"


# region names that clash after being made file names, or are not printable; {kind: pattern}
# overrides where a reader refuses earlier (an RTSTRUCT ROI without a name) or names it itself
# (a SEG segment without a label is "segment_<n>")
CLASH_CASES = [
    ("names 'liver part' and 'liver/part'", {"liver part": "body", "liver/part": "liver"},
     r"region names 'liver part' and 'liver/part' both become the file name 'liver_part'", {}),
    ("names 'Liver' and 'liver'", {"Liver": "body", "liver": "liver"},
     r"region names 'Liver' and 'liver' both become the file name 'liver'", {}),
    ("name with a newline", {"liver\nkidney": "liver"}, r"region name 'liver\\nkidney' holds control characters", {}),
    ("blank name", {"  ": "liver"}, r"region name '  '\): expected a non-empty region name",
     {"rtstruct": r"StructureSetROISequence \(3006,0020\) item without ROINumber or ROIName\): expected both",
      "seg": None}),
]


@pytest.mark.parametrize("kind", ["rtstruct", "seg", "labels"])
@pytest.mark.parametrize("case", CLASH_CASES, ids=[c[0] for c in CLASH_CASES])
def test_region_names_that_clash_are_refused_at_load(tmp_path, kind, case):
    _, rename, pattern, override = case
    pattern = override.get(kind, pattern)
    if pattern is None:
        pytest.skip("a SEG segment without a label is read as 'segment_<n>'")
    ref = sitk.Image(32, 32, 32, sitk.sitkUInt8)
    ref.SetSpacing(S.SPACING)
    ref.SetOrigin(S.ORIGIN)
    if kind == "rtstruct":
        cont = S.contours()
        path = S.write_rtstruct(tmp_path / "rs.dcm", {new: cont[old] for new, old in rename.items()}, for_uid="1.2")
        call = lambda: read_rtstruct(path, ref)  # noqa: E731
    elif kind == "seg":
        m = S.region_masks()
        path = S.write_seg(tmp_path / "seg.dcm", {new: m[old] for new, old in rename.items()}, S.SPACING, S.ORIGIN,
                           for_uid="1.2")
        call = lambda: read_seg(path, ref)  # noqa: E731
    else:
        lab = np.zeros(S.SHAPE, dtype=np.uint8)
        m = S.region_masks()
        values = {}
        for i, (new, old) in enumerate(rename.items(), start=1):
            lab[m[old]] = i      # later (inner) regions over earlier ones
            values[new] = i
        img = sitk.GetImageFromArray(lab)
        img.SetSpacing(S.SPACING)
        img.SetOrigin(S.ORIGIN)
        path = tmp_path / "lab.nii.gz"
        sitk.WriteImage(img, str(path))
        call = lambda: read_label_map(path, ref, values)  # noqa: E731
    with pytest.raises(InputError, match=pattern) as info:
        call()
    assert str(path.name) in str(info.value) and "expected" in str(info.value)


def test_seg_duplicate_segment_labels_refused(tmp_path):
    ref = sitk.Image(32, 32, 32, sitk.sitkUInt8)
    ref.SetSpacing(S.SPACING)
    ref.SetOrigin(S.ORIGIN)
    m = S.region_masks()
    path = S.write_seg(tmp_path / "seg.dcm", {"liver": m["liver"], "kidney": m["kidney"]}, S.SPACING, S.ORIGIN,
                       for_uid="1.2")
    ds = pydicom.dcmread(path)
    for item in ds.SegmentSequence:
        item.SegmentLabel = "liver"
    ds.save_as(path)
    with pytest.raises(InputError, match=r"seg.dcm' \(SegmentLabel \(0062,0005\) 'liver' used by segments \[1, 2\]\): "
                                         r"expected unique segment labels"):
        read_seg(path, ref)


def test_liver_and_liver_part_are_distinct_regions():
    """'liver' and 'liver/part' do not clash (their files are 'liver' and 'liver_part')."""
    check_region_names(["liver", "liver/part", "http://evil", "=cmd", "肝臓", "腎臓"], "test")


@pytest.fixture(scope="module")
def hostile_run(study_dir, tmp_path_factory):
    """`rptdose run --method ldm` on the synthetic study with hostile ROI names (no transport
    needed: local deposition)."""
    from rptdose.cli import main

    root = tmp_path_factory.mktemp("hostile_run") / "study"
    shutil.copytree(study_dir, root)
    cont = S.contours()
    names = {"body": "http://evil", "liver": "liver", "kidney": "liver/part",
             "tumour": "=HYPERLINK(\"http://evil\",\"x\")"}
    for_uid = pydicom.dcmread(root / "rtstruct.dcm", stop_before_pixels=True)
    for_uid = for_uid.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID
    S.write_rtstruct(root / "rtstruct.dcm", {names[k]: v for k, v in cont.items()}, for_uid=for_uid)
    out = root.parent / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fit warnings of the tiny synthetic study are not the point
        rc = main(["run", str(root / "study.toml"), "-o", str(out), "--method", "ldm"])
    return rc, out, names


def test_run_with_hostile_roi_names_writes_everything(hostile_run):
    rc, out, names = hostile_run
    assert rc == 0
    for f in ("dose.dcm", "dose.h5", "regions.csv", "regions.json", "dvh.csv", "report.html", "tia/tia.h5"):
        assert (out / f).is_file(), f
    expected = set(names.values())
    for h5file in ("dose.h5", "tia/tia.h5"):
        with h5py.File(out / h5file, "r") as f:
            g = f["masks"]
            assert all(isinstance(g[k], h5py.Dataset) for k in g), h5file   # no nested groups
            assert {g[k].attrs["name"] for k in g} >= expected
            assert "http:%2F%2Fevil" in g and "liver%2Fpart" in g and "liver" in g
        assert set(read_masks(out / h5file)) >= expected
    # the results file still loads as a result
    assert rd.load_result(out / "dose.h5").dose_gy.ndim == 3
    for name in ("regions.csv", "dvh.csv", "tia/regions.csv"):
        with open(out / name, newline="", encoding="utf-8") as fh:
            cells = [c for row in csv.reader(fh) for c in row]
        assert not any(c.startswith(("=", "+", "@", "\t", "\r")) for c in cells), name
        assert not any(c.startswith("-") and not re.fullmatch(r"-[0-9.;eE+-]+", c) for c in cells), name
    regions_csv = (out / "regions.csv").read_text(encoding="utf-8")
    assert "'=HYPERLINK" in regions_csv and "http://evil" in regions_csv
    assert "'=HYPERLINK" in (out / "dvh.csv").read_text(encoding="utf-8").splitlines()[0]
    plots = {p.name for p in (out / "tia" / "plots").iterdir()}
    assert {"tac_http_evil.png", "tac_liver.png", "tac_liver_part.png"} <= plots
    assert all(re.fullmatch(r"tac_[A-Za-z0-9][A-Za-z0-9._-]*\.png", p) for p in plots), plots


# ---- 3. smaller ones ----------------------------------------------------------------------------

def test_density_check_agrees_with_its_message():
    shape = (2, 2, 2)
    for v in (1e-40, 1e-46, 1e-31, 0.0):
        with pytest.raises(InputError, match=r"density_g_cm3 \(minimum .*\): expected densities > 0 g/cm3, at least "
                                             r"1e-30, in every voxel"):
            rd.Phantom.from_arrays(np.full(shape, v), np.zeros(shape, np.int32), ["water"], (1, 1, 1))
    ph = rd.Phantom.from_arrays(np.full(shape, 1e-30), np.zeros(shape, np.int32), ["water"], (1, 1, 1))
    assert float(ph.density.min()) > 0


@needs_core
def test_threads_beyond_the_cpus_are_capped_with_a_warning(tmp_path, monkeypatch):
    from rptdose.transport.simulate import available_cpus

    monkeypatch.setenv("RPTDOSE_CACHE_DIR", str(tmp_path))
    ph = rd.Phantom.water((3, 3, 3), (2.0, 2.0, 2.0))
    src = rd.Source("Lu-177", np.ones((3, 3, 3)))
    cpus = available_cpus()
    with pytest.warns(UserWarning, match=rf"threads 10000 \(more than the {cpus} CPUs available to this process\): "
                                         rf"using {cpus}"):
        res = rd.simulate(ph, src, histories=200, seed=1, threads=10_000, backend="cpu", progress=False)
    assert res.provenance["threads_requested"] == 10_000
    assert 1 <= res.provenance["threads_used"] <= cpus
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = rd.simulate(ph, src, histories=200, seed=1, threads=cpus, backend="cpu", progress=False)
    np.testing.assert_array_equal(same.dose_gy, res.dose_gy)   # capping changes nothing but the speed


# ---- the inventory ------------------------------------------------------------------------------

#: Every bad input tried here -> (the test that shows its handling, "refused" (InputError naming
#: the file / key / tag and what was expected) or "made safe" (accepted, written safely) or
#: "capped" (run with a warning)). Benign control names ('liver', 'a.b', ...) are not counted.
_BENIGN = {"liver", "a.b", "Leber (Tumor)", "肝臓"}
BAD_INPUTS: dict[str, tuple[str, str]] = {
    **{c[0]: ("test_wrong_image_as_ct", "refused") for c in CT_CASES},
    "single-slice SimpleITK image as ct": ("test_single_slice_image_object_refused_and_volumes_accepted", "refused"),
    **{c[0]: ("test_wrong_image_as_spect", "refused") for c in SPECT_CASES},
    "pet series with one ct file inside, as spect": ("test_spect_series_with_a_foreign_file", "refused"),
    "single-frame nm file as spect": ("test_single_frame_nm_refused", "refused"),
    **{c[0]: ("test_study_refuses", "refused") for c in STUDY_CASES},
    "study: Lu-178, no nuclide code in the header": ("test_lu178_also_caught_without_nuclide_code", "refused"),
    "study: Lu-178, neither nuclide code nor half-life": ("test_lu178_also_caught_without_nuclide_code", "refused"),
    **{f"region name {n!r} in HDF5": ("test_h5_names_are_safe_and_reversible", "made safe")
       for n in HOSTILE if n not in _BENIGN},
    "empty region name in HDF5": ("test_h5_names_are_safe_and_reversible", "refused"),
    **{f"CSV cell starting with {c}": ("test_csv_cells_escaped_numbers_kept", "made safe")
       for c in ("=", "+", "-", "@", "tab", "CR", "= (header)")},
    "compare CSV cells starting with = and @": ("test_compare_csv_escaped", "made safe"),
    **{f"region name {n!r} as a file name": ("test_safe_name_file_parts", "made safe")
       for n in ("..", ".", "../../etc/passwd", "CON", "nul.txt", "a * 300", "肝臓 and 腎臓")},
    **{f"{k}: {c[0]}": ("test_region_names_that_clash_are_refused_at_load", "refused")
       for c in CLASH_CASES for k in ("rtstruct", "seg", "labels") if c[3].get(k, c[2]) is not None},
    "seg: two segments labelled 'liver'": ("test_seg_duplicate_segment_labels_refused", "refused"),
    "rptdose run: ROI 'http://evil'": ("test_run_with_hostile_roi_names_writes_everything", "made safe"),
    "rptdose run: ROIs 'liver' and 'liver/part'": ("test_run_with_hostile_roi_names_writes_everything", "made safe"),
    "rptdose run: ROI '=HYPERLINK(...)'": ("test_run_with_hostile_roi_names_writes_everything", "made safe"),
    **{f"density {v}": ("test_density_check_agrees_with_its_message", "refused") for v in ("1e-40", "1e-46", "1e-31",
                                                                                         "0")},
    "threads=10000": ("test_threads_beyond_the_cpus_are_capped_with_a_warning", "capped"),
}


def test_inventory_names_existing_tests():
    """Each entry of BAD_INPUTS points at a test of this module (the figures of the report)."""
    assert all(callable(globals().get(t)) for t, _ in BAD_INPUTS.values())
    outcomes = [o for _, o in BAD_INPUTS.values()]
    assert set(outcomes) <= {"refused", "made safe", "capped"}
    print(f"{len(BAD_INPUTS)} bad inputs tried: " + ", ".join(f"{outcomes.count(o)} {o}"
                                                            for o in ("refused", "made safe", "capped")))
