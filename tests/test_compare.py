"""The comparison toolkit (rd.compare, rptdose compare): difference maps, gamma, DVH metrics,
region means with uncertainties, Bland-Altman plot, HTML/CSV, and the readers (rptdose .h5,
NIfTI, DICOM RT Dose with DoseGridScaling / ImagePositionPatient / GridFrameOffsetVector)."""

import csv
import datetime as dt

import numpy as np
import pytest
import rptdose as rd
import SimpleITK as sitk
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
    assert "hot" in out and "gamma 3%/3mm global" in out
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
