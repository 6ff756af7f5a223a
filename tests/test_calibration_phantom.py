"""Camera calibration from a uniform phantom SPECT (rptdose.quant.phantom_calibration), the
calibration file, [calibration] mode = "phantom" / "file", and `rptdose calibrate`.

The phantom: a water cylinder (radius 35 mm, length 70 mm) with Lu-177 on the synthetic
patient's 32^3 grid of 4 mm voxels, blurred by a Gaussian of 12 mm FWHM (the camera's
resolution), Poisson counts with the expected total N = S A0 (1 - exp(-lambda d)) / lambda for a
known S = 9 cps/MBq (the synthetic patient's, tests/_synthetic_dicom.py), 200 MBq read in the
dose calibrator 2 h before a 30-minute acquisition (decay 0.87 %). The derived S must be within
3 counting standard deviations (3 / sqrt(N), N ~ 3.2e6: 0.17 %) of the truth; the dose
calibrator's 2 % is a systematic the simulation does not draw.
"""

import datetime as dt
import json
import re
import shutil
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

import _synthetic_dicom as S
import rptdose as rd
from rptdose.cli import main
from rptdose.errors import InputError
from rptdose.io.dicom_write import Identity, write_nm_counts
from rptdose.io.nm import read_nm
from rptdose.quant.calibration import Calibration, QuantWarning, activity_at_start
from rptdose.quant.phantom_calibration import (CALIBRATION_FORMAT, CameraMismatchWarning, calibrate_from_phantom,
                                               camera_from_nm, check_camera_match, read_calibration,
                                               write_calibration)

PHANTOM_MBQ = 200.0
PHANTOM_TIME = dt.datetime(2026, 3, 1, 10, 0, 0)           # the dose-calibrator reading
ACQ = PHANTOM_TIME + dt.timedelta(hours=2)                  # scan start
VIEWS, MS_PER_VIEW = 60, 30000                              # 30 min
D = VIEWS * MS_PER_VIEW / 1000.0
LAM = np.log(2.0) / S.LU177_HALF_LIFE_S
RADIUS_MM, HALF_LENGTH_MM = 35.0, 35.0
CAMERA = {"Manufacturer": "Acme Medical", "ManufacturerModelName": "Gamma 9000", "DeviceSerialNumber": "SN-42",
          "ReconstructionMethod": "OSEM 4i8s", "CorrectedImage": ["ATTN", "SCAT"]}
COLLIMATOR = ("MEGP", "PARA")
WINDOW_KEV = (187.2, 228.8)


def expected_counts(sens=S.SENSITIVITY, activity_mbq=PHANTOM_MBQ):
    a0 = activity_mbq * 1e6 * np.exp(-LAM * (ACQ - PHANTOM_TIME).total_seconds())
    return sens * 1e-6 * a0 * (-np.expm1(-LAM * D)) / LAM


def cylinder():
    z, y, x = S.voxel_centres()
    return np.broadcast_to((x ** 2 + y ** 2 < RADIUS_MM ** 2) & (np.abs(z) < HALF_LENGTH_MM), S.SHAPE)


def phantom_counts(seed=1, sens=S.SENSITIVITY):
    from scipy.ndimage import gaussian_filter

    shape = gaussian_filter(cylinder().astype(float), sigma=12.0 / 2.3548 / S.SPACING[0], mode="constant")
    mean = shape / shape.sum() * expected_counts(sens)
    return np.random.default_rng(seed).poisson(mean).astype(float)


def set_camera(path, camera=None, collimator=COLLIMATOR, window=WINDOW_KEV):
    """Add camera identity tags to an NM file."""
    ds = pydicom.dcmread(path)
    for k, v in (CAMERA if camera is None else camera).items():
        setattr(ds, k, v)
    if collimator is not None:
        ds.DetectorInformationSequence[0].CollimatorGridName = collimator[0]
        ds.DetectorInformationSequence[0].CollimatorType = collimator[1]
    if window is not None:
        r = Dataset()
        r.EnergyWindowLowerLimit, r.EnergyWindowUpperLimit = window
        w = Dataset()
        w.EnergyWindowRangeSequence = Sequence([r])
        w.EnergyWindowName = "Lu177 208 keV"
        ds.EnergyWindowInformationSequence = Sequence([w])
    ds.save_as(path)


def write_phantom(folder, *, counts=None, with_ct=True, for_uid="1.2.826.0.1.3680043.8.498.77"):
    folder.mkdir(parents=True, exist_ok=True)
    ident = Identity("PHANTOM", "Uniform^Phantom", S.uid("phantom study", folder))
    path = write_nm_counts(folder / "spect.dcm", phantom_counts() if counts is None else counts, S.SPACING, S.ORIGIN,
                           ident=ident, for_uid=for_uid, acquisition=ACQ, views=VIEWS, ms_per_view=MS_PER_VIEW,
                           nuclide_code_meaning="^177^Lutetium", total_dose_mbq=PHANTOM_MBQ,
                           radiopharm_start=PHANTOM_TIME, half_life_s=S.LU177_HALF_LIFE_S,
                           description="Uniform phantom Lu-177")
    set_camera(path)
    if with_ct:
        hu = np.where(cylinder(), 0.0, -1000.0)
        S.write_ct_series(folder / "ct", hu, S.SPACING, S.ORIGIN, patient_id="PHANTOM", for_uid=for_uid, when=ACQ)
    return path


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return write_phantom(tmp_path_factory.mktemp("phantom"))


@pytest.fixture(scope="module")
def cal(phantom):
    return calibrate_from_phantom(phantom, PHANTOM_MBQ, PHANTOM_TIME, nuclide="Lu-177")


def test_sensitivity_within_counting_uncertainty(cal, phantom):
    n = expected_counts()
    u_count = 1.0 / np.sqrt(n)
    assert cal.sensitivity_cps_per_mbq == pytest.approx(S.SENSITIVITY, rel=3 * u_count)
    # the whole image was counted: the sensitivity is exactly counts F(d) / (A0 d)
    ph = cal.phantom
    assert ph["counts_region"] == "field_of_view" and ph["counts"] == ph["image_sum"] == ph["image_sum_fov"]
    assert ph["activity_at_start_mbq"] == pytest.approx(PHANTOM_MBQ * np.exp(-LAM * 7200.0), rel=1e-12)
    assert ph["duration_s"] == D and "RotationInformationSequence" in ph["duration_source"]
    # uncertainty: dose calibrator 2 % and counting 1/sqrt(N), in quadrature
    assert ph["uncertainty_components"]["counting"] == pytest.approx(1 / np.sqrt(ph["counts"]))
    assert cal.rel_uncertainty == pytest.approx(np.sqrt(0.02 ** 2 + 1 / ph["counts"]))
    assert cal.nuclide == "Lu-177" and cal.calibration_date == "2026-03-01"
    # the camera from the header
    cam = cal.camera
    assert cam["manufacturer"] == "Acme Medical" and cam["model"] == "Gamma 9000"
    assert cam["device_serial_number"] == "SN-42"
    assert cam["collimator"] == "MEGP" and cam["collimator_type"] == "PARA"
    assert cam["energy_windows_kev"] == [[187.2, 228.8]]
    assert cam["reconstruction_method"] == "OSEM 4i8s" and cam["corrected_image"] == "ATTN\\SCAT"
    assert cam["pixel_spacing_mm"] == [4.0, 4.0, 4.0]
    assert str(phantom) in cal.provenance["input_sha256"] and cal.provenance["rptdose_version"] == rd.__version__
    assert cal.created.endswith("+00:00")
    # converting the phantom itself back gives its activity at the acquisition start
    nm = read_nm(phantom)
    act, _ = activity_at_start(nm.values(), nm.units, cal.to_calibration(), S.LU177_HALF_LIFE_S,
                               voxel_volume_ml=nm.voxel_volume_ml, duration_s=nm.duration_s)
    assert act.sum() / 1e6 == pytest.approx(ph["activity_at_start_mbq"], rel=1e-9)


def test_phantom_in_cps(cal, tmp_path):
    """The same phantom stored as count rates (Units CPS, counts / d): the same sensitivity and
    counting statistics (N = cps x d); without a duration no decay-during-acquisition factor and no
    counting term (only the dose calibrator's)."""
    counts = phantom_counts()
    opts = dict(units="CPS", acquisition=ACQ, radiopharm_start=PHANTOM_TIME, extra={"RescaleSlope": 1.0 / D})
    path = S.write_nm_multiframe(tmp_path / "cps.dcm", counts, S.SPACING, S.ORIGIN, S.NMOptions(**opts))
    c = calibrate_from_phantom(path, PHANTOM_MBQ, PHANTOM_TIME)       # nuclide from the DICOM
    assert c.phantom["units"] == "cps" and c.phantom["counts"] == pytest.approx(counts.sum())
    assert c.sensitivity_cps_per_mbq == pytest.approx(cal.sensitivity_cps_per_mbq, rel=1e-9)
    assert c.rel_uncertainty == pytest.approx(cal.rel_uncertainty, rel=1e-9)
    path = S.write_nm_multiframe(tmp_path / "cps_nod.dcm", counts, S.SPACING, S.ORIGIN,
                                 S.NMOptions(**opts, rotation=None))
    c = calibrate_from_phantom(path, PHANTOM_MBQ, PHANTOM_TIME)
    assert c.phantom["duration_s"] is None and c.phantom["uncertainty_components"]["counting"] is None
    assert c.rel_uncertainty == 0.02
    assert c.sensitivity_cps_per_mbq == pytest.approx(cal.sensitivity_cps_per_mbq / c_factor(), rel=1e-9)
    assert "counting unknown (cps without a duration)" in c.summary()


def c_factor():
    return LAM * D / -np.expm1(-LAM * D)


def test_ct_volume_of_interest(cal, phantom):
    with_ct = calibrate_from_phantom(phantom, PHANTOM_MBQ, PHANTOM_TIME, phantom_ct=phantom.parent / "ct",
                                     activity_uncertainty_pct=1.0)
    ph = with_ct.phantom
    assert ph["counts_region"] == "ct_voi" and ph["voi_margin_mm"] == 24.0
    # the blurred phantom is inside its outline + 2 PSF widths: nearly all counts
    assert 0.999 < ph["voi_fraction_of_fov"] <= 1.0
    assert with_ct.sensitivity_cps_per_mbq == pytest.approx(S.SENSITIVITY, rel=3 / np.sqrt(expected_counts()))
    assert with_ct.rel_uncertainty == pytest.approx(np.sqrt(0.01 ** 2 + 1 / ph["counts"]))
    # no margin: the spill-out is lost, and the warning says so
    with pytest.warns(QuantWarning, match=r"outline \+ 0 mm holds .* % of the image's counts"):
        tight = calibrate_from_phantom(phantom, PHANTOM_MBQ, PHANTOM_TIME, phantom_ct=phantom.parent / "ct",
                                       voi_margin_mm=0.0)
    assert tight.phantom["voi_fraction_of_fov"] < 0.9


def test_calibration_file_round_trip(cal, tmp_path):
    path = write_calibration(tmp_path / "calibration.json", cal)
    data = json.loads(path.read_text())
    assert data["format"] == CALIBRATION_FORMAT == "rptdose-calibration" and data["format_version"] == 1
    back = read_calibration(path)
    assert back == cal and back.path == path
    assert back.to_calibration("file").source == f"calibration file '{path}'"
    c = back.to_calibration("file")
    assert c.mode == "file" and c.sensitivity_cps_per_mbq == cal.sensitivity_cps_per_mbq
    assert c.u_calibration == c.u_rel == pytest.approx(cal.rel_uncertainty)
    info = c.info()
    assert info["calibration.u_rel"] == pytest.approx(cal.rel_uncertainty)
    assert "Acme Medical Gamma 9000" in info["calibration.camera"] and info["calibration.created"] == cal.created
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]      # no temporary left


@pytest.mark.parametrize("content,message", [
    ("not json", r"calibration file '.*bad.json' \(not JSON"),
    ("[1, 2]", r"\(a JSON list, not an object\)"),
    ('{"format": "rptdose-regions", "format_version": 1}', r"key format 'rptdose-regions' \(not a calibration file\)"
                                                           r": expected \"format\": \"rptdose-calibration\""),
    ('{"format": "rptdose-calibration", "format_version": 2}', r"format_version 2 \(written by a newer rptdose\)"),
    ('{"format": "rptdose-calibration", "format_version": 1, "sensitivity_cps_per_mbq": -1, "rel_uncertainty": 0.02,'
     ' "nuclide": "Lu-177"}', r"key sensitivity_cps_per_mbq -1 \(not valid\): expected the sensitivity in cps/MBq"),
    ('{"format": "rptdose-calibration", "format_version": 1, "sensitivity_cps_per_mbq": 9, "nuclide": "Lu-177"}',
     r"key rel_uncertainty \(missing\)"),
])
def test_calibration_file_of_wrong_format(tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(InputError, match=message):
        read_calibration(bad)


# ---- studies ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, phantom):
    root = tmp_path_factory.mktemp("study")
    S.write_sensitivity_study(root, shifts={})
    shutil.copytree(phantom.parent, root / "phantom")
    return root


def with_calibration(root, table, name):
    text = (root / "study.toml").read_text()
    old = f'[calibration]\nmode = "sensitivity"\nsensitivity_cps_per_mbq = {S.SENSITIVITY}\n'
    assert old in text
    path = root / name
    path.write_text(text.replace(old, "[calibration]\n" + table))
    return path


PHANTOM_TABLE = ('mode = "phantom"\nphantom_spect = "phantom/spect.dcm"\nphantom_activity_mbq = 200.0\n'
                 'phantom_time = 2026-03-01T10:00:00\n')


def test_phantom_mode_gives_the_activities_of_the_true_sensitivity(study_dir, cal, tmp_path):
    ref = rd.load_study(study_dir / "study.toml", register=False)
    # the synthetic patient's SPECTs name another manufacturer than the phantom's: the loader says so
    with pytest.warns(CameraMismatchWarning, match=r"Manufacturer \(0008,0070\): calibration 'Acme Medical'"):
        st = rd.load_study(with_calibration(study_dir, PHANTOM_TABLE, "phantom.toml"), register=False)
    spec = rd.study.read_study_file(study_dir / "phantom.toml")
    assert spec.calibration.mode == "phantom"
    assert spec.calibration.sensitivity_cps_per_mbq == pytest.approx(cal.sensitivity_cps_per_mbq, rel=1e-12)
    assert spec.calibration.u_calibration == pytest.approx(cal.rel_uncertainty)
    ratio = S.SENSITIVITY / cal.sensitivity_cps_per_mbq          # = 1 within the counting uncertainty
    assert abs(ratio - 1) < 3 / np.sqrt(expected_counts())
    for a, b in zip(st.timepoints, ref.timepoints):
        assert a.total_activity_fov_bq == pytest.approx(b.total_activity_fov_bq * ratio, rel=1e-9)
    rows = {r["region"]: r for r in st.region_table}
    for r in ref.region_table:
        assert rows[r["region"]]["tia_bq_s"] == pytest.approx(r["tia_bq_s"] * ratio, rel=1e-6), r["region"]
    # the same calibration written once and named by a study: the same activities
    write_calibration(study_dir / "calibration.json", cal)
    with pytest.warns(CameraMismatchWarning):
        st_file = rd.load_study(with_calibration(study_dir, 'mode = "file"\nfile = "calibration.json"\n',
                                                 "file.toml"), register=False)
    spec = rd.study.read_study_file(study_dir / "file.toml")
    assert spec.calibration.mode == "file" and spec.calibration.camera["model"] == "Gamma 9000"
    for a, b in zip(st_file.timepoints, st.timepoints):
        assert a.total_activity_fov_bq == pytest.approx(b.total_activity_fov_bq, rel=1e-12)
    # a sensitivity typed by hand: its uncertainty only when given
    spec = rd.study.read_study_file(study_dir / "study.toml")
    assert np.isnan(spec.calibration.u_calibration)
    spec = rd.study.read_study_file(with_calibration(
        study_dir, 'mode = "sensitivity"\nsensitivity_cps_per_mbq = 9.0\nsensitivity_uncertainty_pct = 3\n',
        "typed.toml"))
    assert spec.calibration.u_calibration == pytest.approx(0.03)


BAD_TABLES = [
    ('mode = "phantom"\nphantom_spect = "phantom/spect.dcm"\nphantom_time = 2026-03-01T10:00:00\n',
     r"key calibration.phantom_activity_mbq None \(missing with mode = 'phantom'\): expected the phantom's activity"),
    ('mode = "phantom"\nphantom_spect = "phantom/spect.dcm"\nphantom_activity_mbq = 200.0\n',
     r"key calibration.phantom_time None \(missing with mode = 'phantom'\): expected the local date and time"),
    ('mode = "phantom"\nphantom_activity_mbq = 200.0\nphantom_time = 2026-03-01T10:00:00\n',
     r"key calibration.phantom_spect None \(missing\)"),
    (PHANTOM_TABLE.replace("phantom/spect.dcm", "phantom/none.dcm"),
     r"key calibration.phantom_spect 'phantom/none.dcm' \('.*none.dcm' does not exist\)"),
    (PHANTOM_TABLE + "phantom_activity_uncertainty_pct = -1\n",
     r"key calibration.phantom_activity_uncertainty_pct -1 \(too small\)"),
    (PHANTOM_TABLE + "sensitivity_cps_per_mbq = 9.0\n",
     r"key calibration.sensitivity_cps_per_mbq 9.0 \(given with mode = 'phantom'\): expected phantom_spect"),
    (PHANTOM_TABLE.replace("2026-03-01T10:00:00", "2025-03-01T10:00:00"),
     r"calibration.phantom_time 2025-03-01T10:00:00 \(365.1 days, 54.9 half-lives of Lu-177, from the acquisition "
     r"start 2026-03-01T12:00:00"),
    ('mode = "file"\n', r"key calibration.file None \(missing\)"),
    ('mode = "file"\nfile = "phantom/spect.dcm"\n', r"key calibration.file: calibration file '.*spect.dcm' \(not JSON"),
    ('mode = "sensitivity"\nsensitivity_cps_per_mbq = 9.0\nfile = "x.json"\n',
     r"key calibration.file 'x.json' \(given with mode = 'sensitivity'\)"),
    ('mode = "calibrated"\n', r"key calibration.mode 'calibrated' \(unknown\): expected one of quantitative, "
                              r"sensitivity, phantom, file"),
]


@pytest.mark.parametrize("table,message", BAD_TABLES, ids=[m[:40] for _, m in BAD_TABLES])
def test_bad_calibration_tables(study_dir, table, message):
    path = with_calibration(study_dir, table, "bad.toml")
    with pytest.raises(InputError, match=message) as info:
        rd.load_study(path)
    assert "bad.toml" in str(info.value)


def test_bad_phantom_scans(study_dir, tmp_path):
    # a phantom SPECT in Bq/ml where counts are needed
    root = tmp_path / "s"
    shutil.copytree(study_dir, root)
    S.write_nm_multiframe(root / "phantom" / "spect.dcm", np.full(S.SHAPE, 1000.0), S.SPACING, S.ORIGIN,
                          S.NMOptions(units=None, rwvm_unit="Bq/ml", acquisition=ACQ))
    with pytest.raises(InputError, match=r"study '.*phantom.toml' \[calibration\] mode = 'phantom': phantom spect "
                                         r"'.*spect.dcm' \(in Bq/ml per RealWorldValueMappingSequence.*\): expected a "
                                         r"phantom SPECT in counts"):
        rd.load_study(with_calibration(root, PHANTOM_TABLE, "phantom.toml"))
    # a phantom without an acquisition duration, then without an acquisition time
    counts = phantom_counts()
    S.write_nm_multiframe(root / "phantom" / "spect.dcm", counts, S.SPACING, S.ORIGIN,
                          S.NMOptions(acquisition=ACQ, rotation=None))
    with pytest.raises(InputError, match=r"phantom spect '.*spect.dcm' \(counts, but the acquisition duration is "
                                         r"absent: neither RotationInformationSequence.*\): expected these tags, or "
                                         r"calibration.phantom_duration_s"):
        rd.load_study(root / "phantom.toml")
    filled = with_calibration(root, PHANTOM_TABLE + "phantom_duration_s = 1800\n", "filled.toml")
    assert rd.study.read_study_file(filled).calibration.sensitivity_cps_per_mbq == pytest.approx(9.0, rel=0.01)
    S.write_nm_multiframe(root / "phantom" / "spect.dcm", counts, S.SPACING, S.ORIGIN,
                          S.NMOptions(acquisition=None, drop=("SeriesDate", "SeriesTime", "StudyDate", "StudyTime")))
    with pytest.raises(InputError, match=r"\(acquisition start absent: none of AcquisitionDateTime .*\): expected "
                                         r"these tags, or calibration.phantom_acquisition_time"):
        rd.load_study(root / "phantom.toml")
    # a phantom CT of another frame of reference
    S.write_nm_multiframe(root / "phantom" / "spect.dcm", counts, S.SPACING, S.ORIGIN,
                          S.NMOptions(acquisition=ACQ, for_uid="1.2.3.4"))
    with pytest.raises(InputError, match=r"FrameOfReferenceUID \(0020,0052\) 1.2.3.4 differs from its CT"):
        rd.load_study(with_calibration(root, PHANTOM_TABLE + 'phantom_ct = "phantom/ct"\n', "ct.toml"))
    # a phantom of another nuclide than the study's
    S.write_nm_multiframe(root / "phantom" / "spect.dcm", counts, S.SPACING, S.ORIGIN,
                          S.NMOptions(acquisition=ACQ, nuclide_meaning="^90^Yttrium", half_life_s=None))
    with pytest.raises(InputError, match=r"RadionuclideCodeSequence .* says Y-90, study.nuclide is Lu-177"):
        rd.load_study(root / "phantom.toml")
    # a phantom that is cut by the field of view: a warning
    cut = counts.copy()
    cut[0] += counts[16]
    S.write_nm_multiframe(root / "phantom" / "spect.dcm", cut, S.SPACING, S.ORIGIN, S.NMOptions(acquisition=ACQ))
    with pytest.warns(QuantWarning, match=r"of the counts are in the outermost voxels.*beyond the reconstructed field"):
        rd.study.read_study_file(root / "phantom.toml")


def test_calibration_file_of_another_nuclide_is_refused(study_dir, cal, tmp_path):
    import dataclasses

    root = tmp_path / "s"
    shutil.copytree(study_dir, root, ignore=shutil.ignore_patterns("phantom"))
    write_calibration(root / "y90.json", dataclasses.replace(cal, nuclide="Y-90"))
    with pytest.raises(InputError, match=r"key calibration.file 'y90.json' \(calibrated with Y-90, study.nuclide is "
                                         r"Lu-177\): expected a calibration made with the study's nuclide"):
        rd.load_study(with_calibration(root, 'mode = "file"\nfile = "y90.json"\n', "y.toml"))


def test_camera_mismatch_warns(cal, study_dir, tmp_path):
    patient = tmp_path / "patient.dcm"
    shutil.copy(study_dir / "tp1" / "spect.dcm", patient)
    set_camera(patient)
    calibration = cal.to_calibration("file")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_camera_match(calibration, read_nm(patient), "spect 'patient.dcm'", nuclide="Lu-177") == []
    other = dict(CAMERA, ManufacturerModelName="Gamma 7000")
    set_camera(patient, camera=other, collimator=("LEHR", "PARA"), window=(100.0, 120.0))
    with pytest.warns(CameraMismatchWarning, match=r"spect 'patient.dcm': acquired or reconstructed otherwise than its "
                                                   r"calibration .*ManufacturerModelName \(0008,1090\): calibration "
                                                   r"'Gamma 9000', patient 'Gamma 7000'.*CollimatorGridName.*'MEGP'.*"
                                                   r"'LEHR'.*energy window"):
        diffs = check_camera_match(calibration, read_nm(patient), "spect 'patient.dcm'")
    assert len(diffs) == 3
    assert issubclass(CameraMismatchWarning, QuantWarning)
    # a patient SPECT without camera tags: nothing to compare, nothing said
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bare = read_nm(study_dir / "tp1" / "spect.dcm")
        assert camera_from_nm(bare)["manufacturer"] == "rptdose"
        assert check_camera_match(Calibration("sensitivity", 9.0), bare, "x") == []
    with pytest.raises(InputError, match=r"made with Lu-177, the study's nuclide is Y-90"):
        check_camera_match(calibration, bare, "x", nuclide="Y-90")


def test_calibration_modes_in_activity_at_start():
    for mode in ("phantom", "file"):
        c = Calibration(mode, 9.0, 0.02)
        act, info = activity_at_start(np.array([9.0]), "cps", c, S.LU177_HALF_LIFE_S, voxel_volume_ml=0.064,
                                      duration_s=None)
        assert float(act[0]) == pytest.approx(1e6) and info["u_calibration"] == 0.02
        with pytest.raises(InputError, match=rf"calibration.mode '{mode}' \(x is in Bq/ml per y\): expected mode = "
                                             r"'quantitative'"):
            activity_at_start(np.array([9.0]), "bq_per_ml", c, S.LU177_HALF_LIFE_S, voxel_volume_ml=0.064,
                              duration_s=None, where="x", units_source="y")
        with pytest.raises(InputError, match=r"sensitivity_cps_per_mbq None \(missing or not > 0\)"):
            Calibration(mode)
    with pytest.raises(InputError, match="rel_uncertainty -0.1"):
        Calibration("sensitivity", 9.0, -0.1)
    assert np.isnan(Calibration("quantitative").u_calibration)


# ---- the command line ----------------------------------------------------------------------------

def test_cli_calibrate(phantom, cal, tmp_path, capsys):
    out = tmp_path / "calibration.json"
    args = ["calibrate", str(phantom), "--activity-mbq", "200", "--time", "2026-03-01T10:00:00", "-o", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert re.search(r"sensitivity (8\.99|9\.00)\d* cps/MBq \+- 2\.00 % \(1 sigma; dose calibrator 2\.00 %, counting "
                     r"0\.056 %\)", printed), printed
    assert "Acme Medical Gamma 9000 (serial SN-42), collimator MEGP PARA, energy window 187.2-228.8 keV" in printed
    back = read_calibration(out)
    assert back.sensitivity_cps_per_mbq == pytest.approx(cal.sensitivity_cps_per_mbq, rel=1e-12)
    assert main(args[:-2] + ["--ct", str(phantom.parent / "ct"), "--uncertainty-pct", "3", "--nuclide", "Lu-177",
                             "-o", str(tmp_path / "ct.json")]) == 0
    assert read_calibration(tmp_path / "ct.json").phantom["counts_region"] == "ct_voi"
    capsys.readouterr()


@pytest.mark.parametrize("change,message", [
    ({"--time": "yesterday"}, r"--time 'yesterday' \(not an ISO date-time\)"),
    ({"--time": "2026-03-01T10:00:00+01:00"}, r"--time .* \(has a UTC offset\)"),
    ({"--activity-mbq": "-5"}, r"--activity-mbq -5.0 \(not a finite number > 0\)"),
    ({"--uncertainty-pct": "80"}, r"--uncertainty-pct 80.0 \(not a number in 0-50\)"),
    ({"--nuclide": "Lu-999"}, r"--nuclide 'Lu-999' \(unknown"),
    ({"--ct": "nowhere"}, r"--ct 'nowhere' \(does not exist\)"),
    ({"PHANTOM_SPECT": "nowhere.dcm"}, r"PHANTOM_SPECT 'nowhere.dcm' \(does not exist\)"),
    ({"-o": "missing/cal.json"}, r"folder 'missing' does not exist"),
    ({"BQML": True}, r"in Bq/ml per Units \(0054,1001\) 'BQML'.*expected a phantom SPECT in counts"),
])
def test_cli_calibrate_bad_input_exits_2_and_writes_nothing(phantom, tmp_path, capsys, monkeypatch, change, message):
    monkeypatch.chdir(tmp_path)
    spect = str(phantom)
    if change.pop("BQML", False):
        spect = str(S.write_nm_multiframe(tmp_path / "bqml.dcm", np.full(S.SHAPE, 1000.0), S.SPACING, S.ORIGIN,
                                          S.NMOptions(units="BQML", acquisition=ACQ)))
    opts = {"--activity-mbq": "200", "--time": "2026-03-01T10:00:00", "-o": "cal.json"}
    opts.update({k: v for k, v in change.items() if k != "PHANTOM_SPECT"})
    argv = ["calibrate", change.get("PHANTOM_SPECT", spect)] + [x for kv in opts.items() for x in kv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rptdose calibrate: error: ") and "Traceback" not in err
    assert re.search(message, err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == (["bqml.dcm"] if "BQML" in message or "Bq/ml" in message
                                                          else [])
