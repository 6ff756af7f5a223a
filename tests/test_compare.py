"""The comparison toolkit (rd.compare, rptdose compare): difference maps, gamma, DVH metrics,
region means with uncertainties, Bland-Altman plot, HTML/CSV, and the readers (rptdose .h5,
NIfTI, DICOM RT Dose with DoseGridScaling / ImagePositionPatient / GridFrameOffsetVector)."""

import csv
import datetime as dt

import numpy as np
import pytest
import rptdose as rd
import SimpleITK as sitk
from rptdose.analysis.compare import CompareWarning, reference_dose
from rptdose.analysis.doseio import load_dose
from rptdose.analysis.dvh import cumulative_dvh, dose_at_volume, dvh_metrics
from rptdose.cli import main
from rptdose.errors import InputError

try:
    import rptdose._core  # noqa: F401

    HAVE_CORE = True
except ImportError:
    HAVE_CORE = False
needs_core = pytest.mark.skipif(not HAVE_CORE, reason="the C++ core rptdose._core is not built")
SPACING = (2.0, 2.5, 3.0)
SHAPE = (12, 14, 16)


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RPTDOSE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


def world(spacing=SPACING, shape=SHAPE, origin=(0.0, 0.0, 0.0)):
    """Voxel-centre coordinates (mm) z, y, x of a grid with identity direction."""
    nz, ny, nx = shape
    z = origin[2] + np.arange(nz) * spacing[2]
    y = origin[1] + np.arange(ny) * spacing[1]
    x = origin[0] + np.arange(nx) * spacing[0]
    return np.meshgrid(z, y, x, indexing="ij")


def dose_fn(Z, Y, X):
    return 5.0 * np.exp(-((Z - 16.0) ** 2 + (Y - 17.0) ** 2 + (X - 15.0) ** 2) / (2 * 7.0**2)) + 0.2


def masks():
    Z, Y, X = world()
    r2 = (Z - 16.0) ** 2 + (Y - 17.0) ** 2 + (X - 15.0) ** 2
    return {"core": r2 < 36.0, "shell": (r2 >= 36.0) & (r2 < 144.0), "far": r2 >= 400.0}


def test_dvh_metrics_uniform_and_ramp():
    d = np.zeros((1, 1, 100))
    d[0, 0, :] = np.arange(100) + 0.5                  # 0.5 .. 99.5 Gy, one voxel per Gy
    m = np.ones(d.shape, bool)
    met = dvh_metrics(d, m)
    assert met["mean_gy"] == pytest.approx(50.0) and met["max_gy"] == 99.5
    assert met["D50_gy"] == pytest.approx(50.0, abs=0.51)
    assert met["D2_gy"] == pytest.approx(98.0, abs=0.51) and met["D98_gy"] == pytest.approx(2.0, abs=0.51)
    assert dose_at_volume(np.full((2, 2, 2), 3.0), np.ones((2, 2, 2), bool), 98) == 3.0
    bins, v = cumulative_dvh(d, m, [0.0, 50.0, 100.0])
    np.testing.assert_allclose(v, [1.0, 0.5, 0.0])


def test_compare_arrays_scaled_dose(tmp_path):
    a = dose_fn(*world())
    b = 1.05 * a
    rel = np.full(SHAPE, 0.01)
    comp = rd.compare(a, b, masks(), SPACING, names=("mc", "scaled"), rel_uncertainty_a=rel, threshold_percent=2,
                      output_dir=tmp_path / "out")
    rows = {r["region"]: r for r in comp.regions}
    for r in rows.values():
        assert r["diff_percent"] == pytest.approx(5.0, rel=1e-9)
        assert r["D50_diff_percent"] == pytest.approx(5.0, rel=1e-6)
        assert r["unc_method_a"] == "voxels" and r["unc_method_b"] == "none"
        assert r["unc_a_gy"] > 0 and np.isfinite(r["z"])
    np.testing.assert_allclose(comp.difference_gy, 0.05 * a)
    assert np.nanmax(np.abs(comp.relative_difference - 0.05)) < 1e-12
    # 5 % scaling: the flat low-dose background (0.2 Gy) fails 2 %/2 mm local (gamma 2.5, capped at
    # 2); the peak compensates by a shift under 3 mm; 5.5 %/3 mm global passes everywhere
    gl = comp.gamma["2%/2mm local"]
    flat = (a < 0.2 + 0.002) & ~np.isnan(gl.gamma)
    assert flat.any() and np.all(gl.gamma[flat] > 1.5)
    assert gl.pass_rate < comp.gamma["3%/3mm global"].pass_rate
    assert rd.compare(a, b, None, SPACING, gamma=((5.5, 3.0),), gamma_modes=("global",)).summary[
        "gamma_pass_percent 5.5%/3mm global"] == 100.0
    out = tmp_path / "out"
    for name in ("regions.csv", "gamma.csv", "summary.csv", "summary.html", "bland_altman.png", "dvh.png",
                 "difference_gy.nii.gz", "gamma_3pct3mm_global.nii.gz"):
        assert (out / name).is_file(), name
    assert (out / "bland_altman.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]      # no temporary files left
    with open(out / "regions.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["region"] for r in table] == ["core", "shell", "far"]
    assert float(table[0]["diff_percent"]) == pytest.approx(5.0)
    html = (out / "summary.html").read_text()
    assert "bland_altman.png" in html and "3%/3mm global" in html
    diff_img = sitk.ReadImage(str(out / "difference_gy.nii.gz"))
    assert diff_img.GetSpacing() == pytest.approx(SPACING)


def test_compare_identical_and_errors():
    a = dose_fn(*world())
    comp = rd.compare(a, a, masks(), SPACING)
    assert all(g.pass_rate == 1.0 for g in comp.gamma.values())
    assert all(r["diff_gy"] == 0.0 for r in comp.regions)
    with pytest.raises(InputError, match="spacing_mm"):
        rd.compare(a, a, None)
    with pytest.raises(InputError, match="shape"):
        rd.compare(a, a[:-1], None, SPACING)
    with pytest.raises(InputError, match="masks"):
        rd.compare(a, a, {"bad": np.ones((2, 2, 2), bool)}, SPACING)


def write_rtdose(path, dose_gy, spacing, origin, absolute_offsets=False, reverse=False):
    """A minimal DICOM RT Dose (uint32 pixels x DoseGridScaling)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    frames = dose_gy[::-1] if reverse else dose_gy
    scaling = float(frames.max()) / 4e9
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTDOSE"
    ds.PatientID = "SYN"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.ContentDate = dt.date.today().strftime("%Y%m%d")
    nz, ny, nx = frames.shape
    ds.NumberOfFrames = nz
    ds.Rows, ds.Columns = ny, nx
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 32, 32, 31, 0
    ds.PixelSpacing = [f"{spacing[1]:g}", f"{spacing[0]:g}"]       # row spacing (y), column spacing (x)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    z0 = origin[2] + (nz - 1) * spacing[2] if reverse else origin[2]
    ds.ImagePositionPatient = [origin[0], origin[1], z0]
    step = -spacing[2] if reverse else spacing[2]
    offsets = [k * step for k in range(nz)]
    ds.GridFrameOffsetVector = [z0 + o for o in offsets] if absolute_offsets else offsets
    ds.FrameIncrementPointer = 0x3004000C
    ds.DoseUnits, ds.DoseType, ds.DoseSummationType = "GY", "PHYSICAL", "PLAN"
    ds.DoseGridScaling = f"{scaling:.10e}"[:16]
    stored = np.rint(frames / float(ds.DoseGridScaling)).astype(np.uint32)
    ds.PixelData = stored.tobytes()
    ds.save_as(str(path), enforce_file_format=True)


@pytest.mark.parametrize("absolute,reverse", [(False, False), (True, False), (False, True)])
def test_rtdose_reader(tmp_path, absolute, reverse):
    dose = dose_fn(*world())
    p = tmp_path / "dose.dcm"
    write_rtdose(p, dose, SPACING, (-10.0, 4.0, 7.5), absolute_offsets=absolute, reverse=reverse)
    dm = load_dose(p)
    assert dm.spacing_mm == pytest.approx(SPACING)
    assert dm.origin_mm == pytest.approx((-10.0, 4.0, 7.5))
    assert dm.direction == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    np.testing.assert_allclose(dm.dose_gy, dose, rtol=1e-6, atol=1e-8)


def test_compare_rtdose_against_nifti_on_other_grid(tmp_path):
    """a: NIfTI on one grid; b: RT Dose of the same function on a grid shifted by half voxels and
    with other voxels: after resampling the maps agree to interpolation error; masks as a
    NIfTI label map with names."""
    a = dose_fn(*world())
    img = sitk.GetImageFromArray(a)
    img.SetSpacing(SPACING)
    sitk.WriteImage(img, str(tmp_path / "a.nii.gz"))
    sp_b, org_b, shape_b = (1.5, 2.0, 2.0), (-3.25, -2.0, -1.0), (22, 22, 26)
    write_rtdose(tmp_path / "b.dcm", dose_fn(*world(sp_b, shape_b, org_b)), sp_b, org_b)
    labels = np.zeros(SHAPE, np.uint8)
    for k, m in enumerate(masks().values(), start=1):
        labels[m] = k
    lab = sitk.GetImageFromArray(labels)
    lab.SetSpacing(SPACING)
    sitk.WriteImage(lab, str(tmp_path / "labels.nii.gz"))
    comp = rd.compare(tmp_path / "a.nii.gz", tmp_path / "b.dcm", tmp_path / "labels.nii.gz",
                      label_names={1: "core", 2: "shell", 3: "far"})
    assert comp.summary["b_resampled"] is True
    rows = {r["region"]: r for r in comp.regions}
    assert set(rows) == {"core", "shell", "far"}
    assert abs(rows["core"]["diff_percent"]) < 1.5 and abs(rows["shell"]["diff_percent"]) < 1.5
    assert comp.gamma["2%/2mm global"].pass_rate > 0.99


@needs_core
def test_compare_results_and_cli(tmp_path, capsys):
    """MC result vs LDM and VSV results saved as .h5: batch uncertainties carried over, the
    Bland-Altman plot drawn; `rptdose compare` and `rptdose kernel` on the command line."""
    n = 12
    ph = rd.Phantom.water((n, n, n), (4.8, 4.8, 4.8))
    d = np.zeros((n, n, n))
    d[4:8, 4:8, 4:8] = 1e6
    d[5, 5, 5] = 4e6
    src = rd.Source("Lu-177", d)
    regions = {"hot": d > 0, "peak": d > 2e6, "rim": (d == 0) & (np.roll(d, 1, 2) > 0)}
    mc = rd.simulate(ph, src, histories=100_000, seed=4, threads=2, regions=regions, progress=False)
    ldm = rd.local_deposition(ph, src, regions=regions)
    with pytest.warns(CompareWarning, match="reach the threshold"):   # 64 source voxels: a small case
        comp = rd.compare(mc, ldm, regions)
    rows = {r["region"]: r for r in comp.regions}
    assert rows["hot"]["unc_method_a"] == "batch"
    assert rows["hot"]["unc_a_gy"] == pytest.approx(mc.region_means["hot"]["rel_uncertainty"]
                                                    * rows["hot"]["mean_a_gy"])
    assert rows["rim"]["diff_percent"] == pytest.approx(-100.0)  # LDM puts nothing outside the source
    mc.save(tmp_path / "mc.h5")
    ldm.save(tmp_path / "ldm.h5")
    labels = np.zeros((n, n, n), np.int16)
    labels[regions["hot"]] = 1
    labels[regions["rim"]] = 2
    img = ph.to_sitk(labels)
    sitk.WriteImage(img, str(tmp_path / "labels.nii.gz"))
    rc = main(["compare", str(tmp_path / "mc.h5"), str(tmp_path / "ldm.h5"), "--masks",
               str(tmp_path / "labels.nii.gz"), "--labels", "1=hot,2=rim", "-o", str(tmp_path / "cmp"),
               "--names", "mc", "ldm", "--gamma", "3/3"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "hot" in out and "gamma 3%/3mm global" in out and "warning: only" in out
    assert (tmp_path / "cmp" / "summary.html").is_file() and (tmp_path / "cmp" / "bland_altman.png").is_file()
    assert main(["compare", str(tmp_path / "mc.h5"), str(tmp_path / "nothere.h5"), "-o", str(tmp_path / "x")]) == 2
    # rptdose kernel
    rc = main(["kernel", "Lu-177", "--voxel", "4.8", "--half-width", "2", "--histories", "2e4", "--margin", "10",
               "--threads", "2", "-o", str(tmp_path / "k.h5")])
    assert rc == 0
    kern = rd.fast.load_kernel(tmp_path / "k.h5")
    assert kern.s_gy_per_decay.shape == (5, 5, 5) and kern.provenance["histories"] == 20_000
    assert "S(centre)" in capsys.readouterr().out
    assert main(["kernel", "Lu-177", "--voxel", "4.8", "4.8"]) == 2



# ---- masks and body outline from dose.h5, robust normalisation, few-voxel warning -----------------
def body_cylinder(spacing=SPACING, shape=SHAPE, origin=(0.0, 0.0, 0.0)):
    """A body outline: an elliptic cylinder along z that leaves the grid's x / y edges outside."""
    _, Y, X = world(spacing, shape, origin)
    return ((X - 15.0) / 14.0) ** 2 + ((Y - 17.0) / 15.0) ** 2 <= 1.0


def write_dose_h5(path, dose, masks=None, body=None, spacing=SPACING, origin=(0.0, 0.0, 0.0), rel=None,
                  region_order=None, extra_fn=None):
    """A dose.h5 as `rptdose run` writes it (result fields + masks/ + body_mask), without the core."""
    import json

    from rptdose.io.hdf5 import write_masks, write_result

    def extra(h5):
        if region_order is not None:
            h5.attrs["regions"] = json.dumps([{"name": n} for n in region_order])
        if masks is not None:
            write_masks(h5, masks)
        if body is not None:
            h5.create_dataset("body_mask", data=np.asarray(body).astype(np.uint8))
        if extra_fn is not None:
            extra_fn(h5)

    fields = {"dose_gy": dose, "rel_uncertainty": np.full(dose.shape, np.nan) if rel is None else rel,
              "energy_balance": {}, "region_means": None, "backend": "test", "histories": 0, "seed": 0,
              "batches": 0, "elapsed_s": 0.0, "provenance": {}, "spacing_mm": spacing, "origin_mm": origin,
              "direction": (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)}
    return write_result(path, fields, extra=extra)


def test_reference_dose_is_robust_to_a_hot_voxel():
    a = dose_fn(*world())
    body = body_cylinder()
    v0, how0 = reference_dose(a, body)
    assert v0 == pytest.approx(np.percentile(a[body], 99.5)) and "inside the body outline" in how0
    hot = a.copy()
    hot[0, 0, 0] = 1e5                                   # one voxel of air, outside the body
    assert reference_dose(hot, body)[0] == v0
    inner = {k: v for k, v in masks().items() if k != "far"}          # "far" holds the hot corner voxel
    assert reference_dose(hot, None, inner)[0] == pytest.approx(np.percentile(a[inner["core"] | inner["shell"]], 99.5))
    v, how = reference_dose(hot, None, masks())
    assert v < 10.0 and "union of the 3 region masks" in how      # the percentile ignores the one hot voxel
    v, how = reference_dose(hot)
    assert v < 10.0 and "other than 0" in how            # the 99.5th percentile ignores the single hot voxel
    v, how = reference_dose(np.where(body, 0.0, a), body)          # no dose in the body: the next candidate
    assert v > 0 and "other than 0" in how and "not inside the body outline" in how
    assert np.isnan(reference_dose(np.zeros(SHAPE))[0])


def test_compare_dose_h5_masks_body_and_hot_voxel(tmp_path):
    """Without masks, those of a's dose.h5 are used (said in the notes and summary); the threshold
    and the global gamma are relative to the 99.5th percentile inside body_mask, so a 1e5 Gy air
    voxel changes nothing; the normalisation is recorded in gamma.csv, summary.csv, summary.html."""
    a = dose_fn(*world())
    a_hot = a.copy()
    a_hot[0, 0, 0] = 1e5
    body = body_cylinder()
    assert not body[0, 0, 0]
    m = masks()
    write_dose_h5(tmp_path / "a.h5", a_hot, masks={"shell": m["shell"], "core": m["core"]}, body=body,
                  region_order=["core", "shell"])
    # region names that are no HDF5 link names come back verbatim
    write_dose_h5(tmp_path / "odd.h5", a, masks={"kidney/left": m["core"], "a.b%": m["shell"]})
    assert list(load_dose(tmp_path / "odd.h5").masks) == ["a.b%", "kidney/left"]
    write_dose_h5(tmp_path / "b.h5", 1.03 * a)
    comp = rd.compare(tmp_path / "a.h5", tmp_path / "b.h5", gamma=((3, 3),), gamma_modes=("global",),
                      output_dir=tmp_path / "out")
    assert [r["region"] for r in comp.regions] == ["core", "shell"]          # the file's region order
    assert comp.regions[0]["voxels"] == m["core"].sum()
    assert any("region masks read from" in n and "a.h5" in n for n in comp.notes)
    sm = comp.summary
    norm = np.percentile(a[body], 99.5)
    assert sm["normalisation_gy"] == pytest.approx(norm)
    assert "inside the body outline" in sm["normalisation"]
    assert "a.h5" in sm["masks"] and "a.h5" in sm["body_mask"]
    assert sm["threshold_gy"] == pytest.approx(0.1 * norm)
    assert sm["threshold_voxels"] == np.count_nonzero(a_hot >= 0.1 * norm) > 1000
    g = comp.gamma["3%/3mm global"]
    assert g.settings["normalisation_gy"] == pytest.approx(norm)
    assert g.evaluated_points == sm["threshold_voxels"]
    assert not comp.warnings and sm["warnings"] == ""
    # the same comparison without the hot voxel gives the same normalisation and points
    write_dose_h5(tmp_path / "a_cold.h5", a, masks={"core": m["core"]}, body=body)
    cold = rd.compare(tmp_path / "a_cold.h5", tmp_path / "b.h5", gamma=((3, 3),), gamma_modes=("global",))
    assert cold.summary["normalisation_gy"] == sm["normalisation_gy"]
    assert cold.gamma["3%/3mm global"].evaluated_points == g.evaluated_points - 1
    out = tmp_path / "out"
    with open(out / "gamma.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert float(row["normalisation_gy"]) == pytest.approx(norm, rel=1e-5)
    assert "99.5th percentile" in row["normalisation"] and row["warning"] == ""
    with open(out / "summary.csv", newline="") as f:
        summ = {r["quantity"]: r["value"] for r in csv.DictReader(f)}
    assert "inside the body outline" in summ["normalisation"] and "a.h5" in summ["masks"]
    html = (out / "summary.html").read_text()
    assert "Normalisation" in html and "99.5th percentile" in html and "Warning" not in html
    # given masks win; file masks can be refused; b's masks are used when a has none
    assert rd.compare(tmp_path / "a.h5", tmp_path / "b.h5", {"x": m["far"]}, gamma=()).summary["masks"] == "given"
    none = rd.compare(tmp_path / "a.h5", tmp_path / "b.h5", gamma=(), file_masks=False)
    assert none.regions == [] and none.summary["masks"] == "none"
    assert "body outline" in none.summary["normalisation"]
    swapped = rd.compare(tmp_path / "b.h5", tmp_path / "a.h5", gamma=())
    assert [r["region"] for r in swapped.regions] == ["core", "shell"] and "a.h5" in swapped.summary["body_mask"]
    # a normalisation given
    given = rd.compare(tmp_path / "a.h5", tmp_path / "b.h5", gamma=((3, 3),), gamma_modes=("global",),
                       normalisation_gy=4.0)
    assert given.summary["normalisation"] == "given" and given.gamma["3%/3mm global"].settings["threshold_gy"] == 0.4


def test_compare_without_body_mask_uses_masks_then_dose(tmp_path):
    """Files of before body_mask: the union of the region masks; no masks either: the voxels with dose."""
    a = dose_fn(*world())
    m = masks()
    write_dose_h5(tmp_path / "a.h5", a, masks={"core": m["core"]})
    write_dose_h5(tmp_path / "b.h5", a)
    comp = rd.compare(tmp_path / "a.h5", tmp_path / "b.h5", gamma=((3, 3),), gamma_modes=("global",))
    assert comp.summary["body_mask"] == "none"
    assert "union of the 1 region masks" in comp.summary["normalisation"]
    assert comp.summary["normalisation_gy"] == pytest.approx(np.percentile(a[m["core"]], 99.5))
    arrays = rd.compare(a, a, None, SPACING, gamma=((3, 3),), gamma_modes=("global",))
    assert "other than 0" in arrays.summary["normalisation"] and arrays.summary["masks"] == "none"
    assert arrays.summary["normalisation_gy"] == pytest.approx(np.percentile(a, 99.5))
    # a body outline given as an array or an image file
    body = body_cylinder()
    arr = rd.compare(a, a, None, SPACING, gamma=(), body_mask=body)
    assert arr.summary["body_mask"] == "given"
    assert arr.summary["normalisation_gy"] == pytest.approx(np.percentile(a[body], 99.5))
    img = sitk.GetImageFromArray(body.astype(np.uint8))
    img.SetSpacing(SPACING)
    sitk.WriteImage(img, str(tmp_path / "body.nii.gz"))
    f = rd.compare(tmp_path / "a.h5", tmp_path / "b.h5", gamma=(), body_mask=tmp_path / "body.nii.gz")
    assert f.summary["normalisation_gy"] == arr.summary["normalisation_gy"]


def test_compare_masks_of_b_resampled(tmp_path):
    """b's dose.h5 on another grid: its masks come to a's grid by nearest neighbour."""
    a = dose_fn(*world())
    img = sitk.GetImageFromArray(a)
    img.SetSpacing(SPACING)
    sitk.WriteImage(img, str(tmp_path / "a.nii.gz"))
    sp_b, org_b, shape_b = (1.0, 1.25, 1.5), (0.0, 0.0, 0.0), (24, 28, 32)
    Zb, Yb, Xb = world(sp_b, shape_b, org_b)
    core_b = (Zb - 16.0) ** 2 + (Yb - 17.0) ** 2 + (Xb - 15.0) ** 2 < 36.0
    write_dose_h5(tmp_path / "b.h5", dose_fn(Zb, Yb, Xb), masks={"core": core_b},
                  body=body_cylinder(sp_b, shape_b, org_b), spacing=sp_b, origin=org_b)
    comp = rd.compare(tmp_path / "a.nii.gz", tmp_path / "b.h5", gamma=())
    assert comp.summary["b_resampled"] is True and "b.h5" in comp.summary["masks"]
    core_a = masks()["core"]
    got = comp.regions[0]
    assert got["region"] == "core" and abs(got["voxels"] - core_a.sum()) <= 0.2 * core_a.sum()
    assert "body outline" in comp.summary["normalisation"]


def test_compare_warns_when_few_voxels_pass(tmp_path):
    """A dose in 20 voxels: the gamma and relative differences rest on 20 points; warned (a
    CompareWarning) and written in summary.csv, gamma.csv and summary.html."""
    a = np.zeros(SHAPE)
    a[5:7, 6:8, 6:11] = 2.0
    b = 1.01 * a
    with pytest.warns(CompareWarning, match="only 20 voxels") as rec:
        comp = rd.compare(a, b, None, SPACING, gamma=((3, 3),), gamma_modes=("global", "local"),
                          output_dir=tmp_path / "out")
    assert len(rec) == 1                                  # one warning, not one per criterion
    assert comp.summary["threshold_voxels"] == 20 and "only 20 voxels" in comp.summary["warnings"]
    assert all(g.evaluated_points == 20 for g in comp.gamma.values())
    out = tmp_path / "out"
    with open(out / "gamma.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all("20 points evaluated" in r["warning"] for r in rows)
    with open(out / "summary.csv", newline="") as f:
        summ = {r["quantity"]: r["value"] for r in csv.DictReader(f)}
    assert "only 20 voxels" in summ["warnings"]
    html = (out / "summary.html").read_text()
    assert "class='warning'" in html and "only 20 voxels" in html
    # threshold 0: every voxel reaches it, but a local gamma evaluates only the 20 with dose: warned
    with pytest.warns(CompareWarning, match="gamma 3%/3mm local: 20 points evaluated"):
        rd.compare(a, b, None, SPACING, gamma=((3, 3),), gamma_modes=("local",), threshold_percent=0)


@pytest.mark.parametrize("case,match", [
    ("masks_dataset", r"'masks' is a dataset, not a group"),
    ("mask_shape", r"'masks/core' of shape \(2, 2, 2\)\): expected a uint8 mask"),
    ("mask_float", r"'masks/core' of type float64"),
    ("mask_values", r"'masks/core' holds values other than 0 and 1"),
    ("mask_group", r"'masks/core' is a group, not a dataset"),
    ("mask_twice", r"region 'core' twice"),
    ("body_empty", r"'body_mask' has no voxel set"),
    ("body_shape", r"'body_mask' of shape \(12, 14\)"),
])
def test_bad_masks_in_dose_h5(tmp_path, case, match):
    a = dose_fn(*world())
    m = masks()["core"]

    def extra(h5):
        if case == "masks_dataset":
            h5.create_dataset("masks", data=np.zeros(3))
        elif case == "mask_group":
            h5.create_group("masks").create_group("core")
        elif case == "mask_twice":
            g = h5.create_group("masks")
            g.create_dataset("core", data=m.astype(np.uint8))
            g.create_dataset("core2", data=m.astype(np.uint8)).attrs["name"] = "core"
        else:
            g = h5.create_group("masks")
            data = {"mask_shape": np.zeros((2, 2, 2), np.uint8), "mask_float": m.astype(np.float64),
                    "mask_values": 2 * m.astype(np.uint8)}.get(case, m.astype(np.uint8))
            g.create_dataset("core", data=data)
        if case == "body_empty":
            h5.create_dataset("body_mask", data=np.zeros(SHAPE, np.uint8))
        if case == "body_shape":
            h5.create_dataset("body_mask", data=np.ones(SHAPE[:2], np.uint8))

    write_dose_h5(tmp_path / "bad.h5", a, extra_fn=extra)
    with pytest.raises(InputError, match=match) as exc:
        rd.compare(tmp_path / "bad.h5", a, gamma=())
    assert "bad.h5" in str(exc.value)


def test_compare_bad_options(tmp_path):
    a = dose_fn(*world())
    for bad in (0.0, -1.0, float("nan"), "5", True):
        with pytest.raises(InputError, match="normalisation_gy"):
            rd.compare(a, a, None, SPACING, normalisation_gy=bad)
    with pytest.raises(InputError, match="threshold_percent"):
        rd.compare(a, a, None, SPACING, threshold_percent=100)
    with pytest.raises(InputError, match="body_mask"):
        rd.compare(a, a, None, SPACING, body_mask=np.zeros(SHAPE, bool))
    with pytest.raises(InputError, match="body_mask"):
        rd.compare(a, a, None, SPACING, body_mask=np.ones((2, 2, 2), bool))
    with pytest.raises(InputError, match="no positive dose"):
        rd.compare(np.zeros(SHAPE), a, None, SPACING)
    img = sitk.GetImageFromArray(np.zeros(SHAPE, np.uint8))
    img.SetSpacing(SPACING)
    sitk.WriteImage(img, str(tmp_path / "body.nii.gz"))
    with pytest.raises(InputError, match=r"body mask file .*body.nii.gz.* \(no voxel inside\)"):
        rd.compare(a, a, None, SPACING, body_mask=tmp_path / "body.nii.gz")


def test_cli_compare_dose_h5(tmp_path, capsys):
    """`rptdose compare a.h5 b.h5 -o DIR`: masks from the file, the normalisation printed; a
    warning line when few voxels pass; --normalisation and --no-file-masks."""
    a = dose_fn(*world())
    m = masks()
    write_dose_h5(tmp_path / "a.h5", a, masks={"core": m["core"], "shell": m["shell"]}, body=body_cylinder())
    write_dose_h5(tmp_path / "b.h5", 0.98 * a)
    assert main(["compare", str(tmp_path / "a.h5"), str(tmp_path / "b.h5"), "-o", str(tmp_path / "c1"),
                 "--gamma", "3/3", "--modes", "global"]) == 0
    out = capsys.readouterr().out
    assert "masks                from" in out and "a.h5" in out and "core" in out and "shell" in out
    assert "normalisation" in out and "inside the body outline" in out and "warning" not in out
    assert main(["compare", str(tmp_path / "a.h5"), str(tmp_path / "b.h5"), "-o", str(tmp_path / "c2"),
                 "--gamma", "3/3", "--modes", "global", "--no-file-masks", "--normalisation", "1000"]) == 0
    out = capsys.readouterr().out
    assert "1000 Gy (given)" in out and "masks                none" in out and "warning: only 0 voxels" in out
    assert "core" not in out
    assert main(["compare", str(tmp_path / "a.h5"), str(tmp_path / "b.h5"), "-o", str(tmp_path / "c3"),
                 "--normalisation", "-1"]) == 2
    assert "normalisation_gy -1.0" in capsys.readouterr().err


def test_region_means_mass_weighted_from_the_reference_h5(tmp_path):
    """A dose.h5 with the run's densities (density_g_cm3): region means are energy / mass, as the
    run's regions.csv gives them, not volume means; without densities, volume means."""
    a = dose_fn(*world())
    m = masks()
    rng = np.random.default_rng(7)
    density = rng.uniform(0.3, 1.9, a.shape)

    def with_density(h5):
        h5.create_dataset("density_g_cm3", data=density)

    write_dose_h5(tmp_path / "a.h5", a, masks={"core": m["core"]}, extra_fn=with_density)
    write_dose_h5(tmp_path / "a_nodens.h5", a, masks={"core": m["core"]})
    write_dose_h5(tmp_path / "b.h5", 1.02 * a)
    core = m["core"]
    mass_mean = float((a[core] * density[core]).sum() / density[core].sum())
    vol_mean = float(a[core].mean())
    assert abs(mass_mean / vol_mean - 1) > 1e-3              # the two differ on this dose
    comp = rd.compare(tmp_path / "a.h5", tmp_path / "b.h5", gamma=())
    assert comp.regions[0]["mean_a_gy"] == pytest.approx(mass_mean, rel=1e-12)
    assert any("mass-weighted" in n for n in comp.notes)
    plain = rd.compare(tmp_path / "a_nodens.h5", tmp_path / "b.h5", gamma=())
    assert plain.regions[0]["mean_a_gy"] == pytest.approx(vol_mean, rel=1e-12)
