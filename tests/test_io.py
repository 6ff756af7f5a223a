"""Input/output: result files (HDF5 round trip, atomic save, format checks) and CT reading
(SimpleITK image, MetaImage/NIfTI files, DICOM CT folders with geometry checks)."""

import os

import h5py
import numpy as np
import pytest
import SimpleITK as sitk

import rptdose as rd
from rptdose.errors import InputError
from rptdose.io import read_ct
from rptdose.transport.result import SimulationResult

try:
    import rptdose._core  # noqa: F401

    HAVE_CORE = True
except ImportError:
    HAVE_CORE = False
needs_core = pytest.mark.skipif(not HAVE_CORE, reason="the C++ core rptdose._core is not built "
                                "(pip install --no-build-isolation -e .)")

SHAPE = (8, 9, 10)


@pytest.fixture(scope="module", autouse=True)
def table_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RPTDOSE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def result():
    if not HAVE_CORE:
        pytest.skip("the C++ core rptdose._core is not built")
    ph = rd.Phantom.from_arrays(np.ones(SHAPE), np.zeros(SHAPE, dtype=np.int32), ["water"], (2.0, 2.5, 3.0),
                                origin_mm=(-10.0, 20.0, 5.5), direction=(0, 1, 0, 1, 0, 0, 0, 0, 1))
    decays = np.zeros(SHAPE)
    decays[3:5, 3:5, 3:5] = 1e5
    src = rd.Source("Lu-177", decays)
    return rd.simulate(ph, src, histories=10_000, seed=2**64 - 5, progress=False,
                       regions={"hot": decays > 0, "all": np.ones(SHAPE, bool)})


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


# ---- result files --------------------------------------------------------------------------

def test_save_load_round_trip_is_exact(result, tmp_path):
    path = tmp_path / "res.h5"
    assert result.save(path) == path
    assert leftovers(tmp_path) == ["res.h5"]  # no temporary file left
    back = rd.load_result(str(path))
    assert isinstance(back, SimulationResult)
    assert back.dose_gy.tobytes() == result.dose_gy.tobytes()
    assert back.rel_uncertainty.tobytes() == result.rel_uncertainty.tobytes()
    assert back.energy_balance == result.energy_balance
    assert back.region_means == result.region_means
    assert back.provenance == result.provenance
    assert back.seed == result.seed == 2**64 - 5  # uint64 survives
    for attr in ("backend", "histories", "batches", "elapsed_s", "spacing_mm", "origin_mm", "direction"):
        assert getattr(back, attr) == getattr(result, attr), attr
    img = back.to_sitk("rel_uncertainty")
    assert img.GetSize() == SHAPE[::-1] and img.GetOrigin() == (-10.0, 20.0, 5.5)
    assert img.GetDirection() == (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def test_file_layout(result, tmp_path):
    path = result.save(tmp_path / "res.h5")
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == "1"
        assert '"rptdose_version"' in f.attrs["provenance"]  # a JSON string
        assert f["dose_gy"].compression == "gzip" and f["dose_gy"].shape == SHAPE
        assert f["dose_gy"].attrs["units"] == "Gy"


def test_save_overwrites_atomically(result, tmp_path):
    path = tmp_path / "res.h5"
    path.write_bytes(b"old")
    result.save(path)
    assert rd.load_result(path).histories == result.histories


def test_failed_save_writes_nothing(result, tmp_path, monkeypatch):
    path = tmp_path / "res.h5"
    path.write_bytes(b"previous content")

    def broken(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(h5py.Group, "create_dataset", broken)
    with pytest.raises(OSError, match="disk full"):
        result.save(path)
    assert path.read_bytes() == b"previous content"
    with pytest.raises(OSError):
        result.save(tmp_path / "new.h5")
    assert leftovers(tmp_path) == ["res.h5"]


def test_save_bad_paths(result, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        result.save(tmp_path / "missing_folder" / "res.h5")
    assert leftovers(tmp_path) == []
    with pytest.raises(InputError, match="is a folder"):
        result.save(tmp_path)
    with pytest.raises(InputError, match="path"):
        result.save(42)


def test_load_result_errors(tmp_path):
    with pytest.raises(InputError, match="nothing.h5.*does not exist"):
        rd.load_result(tmp_path / "nothing.h5")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(InputError, match="text.h5.*not a readable HDF5"):
        rd.load_result(text)
    bare = tmp_path / "bare.h5"
    with h5py.File(bare, "w") as f:
        f["dose_gy"] = np.zeros((2, 2, 2))
    with pytest.raises(InputError, match="bare.h5.*no format_version"):
        rd.load_result(bare)
    future = tmp_path / "future.h5"
    with h5py.File(future, "w") as f:
        f.attrs["format_version"] = "2"
    with pytest.raises(InputError, match="future.h5.*format_version '2'.*expected '1'"):
        rd.load_result(future)
    partial = tmp_path / "partial.h5"
    with h5py.File(partial, "w") as f:
        f.attrs["format_version"] = "1"
    with pytest.raises(InputError, match="partial.h5.*missing .*dose_gy"):
        rd.load_result(partial)


# ---- CT ------------------------------------------------------------------------------------

def ct_image(shape=(6, 7, 8), spacing=(0.9, 0.8, 2.5), origin=(-3.0, 4.0, 10.0)):
    """A CT in HU [z, y, x]: water (0 HU) with a lung (-800) slab and a bone (1200) block."""
    hu = np.zeros(shape, dtype=np.int16)
    hu[:, :2, :] = -800
    hu[:2, -2:, -2:] = 1200
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def write_dicom_series(img, folder, positions=None, tilt=None, modality="CT"):
    """Write `img` as one DICOM file per slice (the SimpleITK 'DicomSeriesFromArray' recipe).
    `positions` overrides ImagePositionPatient per slice (to make bad series)."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.2.1125.1.42"
    sx, sy, sz = img.GetSpacing()
    for k in range(img.GetDepth()):
        sl = img[:, :, k]
        pos = positions[k] if positions is not None else img.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": modality,
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
            "0008|0018": f"{series_uid}.{k + 1}",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1.41",
            "0020|000e": series_uid,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in pos),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0018|0050": f"{sz:.6f}",
            "0028|1052": "0",  # RescaleIntercept
            "0028|1053": "1",  # RescaleSlope
        }
        if tilt is not None:
            tags["0018|1120"] = str(tilt)
        for key, value in tags.items():
            sl.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(sl)
    return folder


def test_read_ct_from_image_and_files(tmp_path):
    img = ct_image()
    hu = sitk.GetArrayFromImage(img)
    for source in (img, tmp_path / "ct.mha", tmp_path / "ct.nii.gz"):
        if not isinstance(source, sitk.Image):
            sitk.WriteImage(img, str(source))
        out = read_ct(source)
        assert out.GetPixelID() == sitk.sitkFloat32
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(out), hu)
        np.testing.assert_allclose(out.GetSpacing(), img.GetSpacing(), rtol=1e-6)
        np.testing.assert_allclose(out.GetOrigin(), img.GetOrigin(), atol=1e-5)


def test_phantom_from_ct_dicom_folder(tmp_path):
    img = ct_image()
    folder = write_dicom_series(img, tmp_path / "dicom")
    ph = rd.Phantom.from_ct(folder)
    assert ph.shape == (6, 7, 8)
    np.testing.assert_allclose(ph.spacing_mm, (0.9, 0.8, 2.5), rtol=1e-5)
    np.testing.assert_allclose(ph.origin_mm, (-3.0, 4.0, 10.0), atol=1e-4)
    # Schneider 2000: 0 HU about 1.0 g/cm3, lung below, bone above
    assert ph.density[3, 4, 3] == pytest.approx(1.0, abs=0.05)
    assert ph.density[3, 0, 3] < 0.4 and ph.density[0, -1, -1] > 1.5
    assert len(ph.materials) >= 3
    same = rd.Phantom.from_ct(img)
    np.testing.assert_array_equal(same.density, ph.density)
    np.testing.assert_array_equal(same.material_index, ph.material_index)


def test_dicom_missing_slice_refused(tmp_path):
    img = ct_image()
    folder = write_dicom_series(img, tmp_path / "gap")
    os.remove(folder / "slice003.dcm")
    with pytest.raises(InputError, match="gap.*non-uniform slice spacing"):
        read_ct(folder)


def test_dicom_gantry_tilt_refused(tmp_path):
    img = ct_image()
    with pytest.raises(InputError, match="tilt.*15 degrees"):
        read_ct(write_dicom_series(img, tmp_path / "tilt_tag", tilt=15))
    # tilt without the tag: slice positions shifted along y from slice to slice
    positions = [(-3.0, 4.0 + 0.7 * k, 10.0 + 2.5 * k) for k in range(img.GetDepth())]
    with pytest.raises(InputError, match="sheared.*gantry tilt"):
        read_ct(write_dicom_series(img, tmp_path / "tilt_shear", positions=positions))


def test_dicom_not_ct_refused(tmp_path):
    folder = write_dicom_series(ct_image(), tmp_path / "nm", modality="NM")
    with pytest.raises(InputError, match="modality NM"):
        read_ct(folder)


def test_read_ct_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="nowhere.*does not exist"):
        read_ct(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty.*no DICOM image series"):
        read_ct(empty)
    junk = tmp_path / "junk.mha"
    junk.write_text("this is not an image")
    with pytest.raises(InputError, match="junk.mha.*unreadable"):
        read_ct(junk)
    flat = sitk.GetImageFromArray(np.zeros((5, 5), dtype=np.int16))
    with pytest.raises(InputError, match="2-D image.*3-D"):
        read_ct(flat)
    rgb = sitk.GetImageFromArray(np.zeros((3, 4, 5, 3), dtype=np.uint8), isVector=True)
    with pytest.raises(InputError, match="3 components"):
        read_ct(rgb)
    nan = sitk.GetImageFromArray(np.full((3, 4, 5), np.nan, dtype=np.float32))
    with pytest.raises(InputError, match="NaN"):
        read_ct(nan)


# ---- a real patient CT (shared data; skipped where absent) ---------------------------------

@pytest.fixture(scope="module")
def y90_patient(tmp_path_factory):
    """The GATE Y-90 liver case (shared/data/README.md): its DICOM CT and SPECT folders and the
    same CT as MetaImage. Large optional data, not shipped (data/README.md)."""
    import tarfile

    from _shared import shared_path

    y90 = shared_path("data", "y90_liver_patient")
    if y90 is None or not os.path.isfile(os.path.join(y90, "dicoms.tar.xz")):
        pytest.skip("large optional data not present: the Y-90 liver patient (GATE example re-used by PenRed, "
                    "~6.7 MB, not shipped) is read from the project's shared/data/y90_liver_patient "
                    "(../shared beside the repository, or RPTDOSE_SHARED=<shared folder>); see data/README.md")
    out = tmp_path_factory.mktemp("y90")
    with tarfile.open(os.path.join(y90, "dicoms.tar.xz")) as t:
        t.extractall(out, filter="data")
    with tarfile.open(os.path.join(y90, "Mhd.tar.xz")) as t:
        t.extractall(out, members=[m for m in t.getmembers() if m.name.startswith("ct1-4mm")], filter="data")
    return out


def test_real_patient_ct(y90_patient):
    dicom = rd.Phantom.from_ct(y90_patient / "CT")
    mhd = rd.Phantom.from_ct(y90_patient / "ct1-4mm.mhd")
    assert dicom.shape == mhd.shape == (190, 72, 124)
    np.testing.assert_allclose(dicom.spacing_mm, (4.0, 4.0, 4.0))
    np.testing.assert_allclose(dicom.origin_mm, (-248.488, -104.933, -378.625), atol=1e-3)
    np.testing.assert_array_equal(dicom.density, mhd.density)
    assert 0.0 < float(dicom.density.min()) < 0.01 and float(dicom.density.max()) > 1.3  # air ... bone
    # the SPECT is stored as Secondary Capture with Modality "CT": not a CT
    with pytest.raises(InputError, match="SPECT.*Secondary Capture"):
        rd.Phantom.from_ct(y90_patient / "SPECT")
