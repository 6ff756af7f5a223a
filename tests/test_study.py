"""The clinical pipeline end to end (rptdose.load_study, `rptdose tia`) on synthetic 4-time-point
SPECT/CT studies with known kinetics (tests/_synthetic_dicom.py), and its bad-input errors.

Tolerances: the synthetic counts are integers (rounding < 0.5 count per voxel) and the Bq/ml
series are stored as 16-bit integers with a slope (< 2e-5 of the maximum), so activities and
TIAs are recovered to well under 1 %; the time point scanned with the patient moved by (8, -4,
0) mm goes through a registration and a linear resampling, which costs up to ~0.5 % in small
regions. Region fits of the organs (each a single exponential) within 1 %; the body's region
fit within 6 %: its time-activity curve is a sum of four exponentials and a mono-exponential
fit of it is biased (-4.4 % here), which is what the sum of the voxel TIAs (within 1 %) avoids.
"""

import csv
import datetime as dt
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

import _synthetic_dicom as S
import rptdose as rd
from rptdose.cli import main
from rptdose.errors import InputError

ORGANS = ("liver", "kidney", "tumour")


@pytest.fixture(scope="module")
def sens_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sens")
    S.write_sensitivity_study(root)
    return root


@pytest.fixture(scope="module")
def sens(sens_dir):
    return rd.load_study(sens_dir / "study.toml")


@pytest.fixture(scope="module")
def quant(tmp_path_factory):
    root = tmp_path_factory.mktemp("quant")
    return rd.load_study(S.write_quantitative_study(root))


def region_errors(study):
    truth = S.true_region_tia()
    rows = {r["region"]: r for r in study.region_table}
    fit = {k: rows[k]["tia_bq_s"] / v - 1 for k, v in truth.items()}
    voxel = {k: rows[k]["voxel_sum_tia_bq_s"] / v - 1 for k, v in truth.items()}
    return fit, voxel


def test_round_trip_counts_rtstruct_registration(sens):
    st = sens
    assert st.nuclide == "Lu-177" and st.administered_activity_bq == pytest.approx(7.4e9)
    assert [tp.label for tp in st.timepoints] == ["4h", "24h", "72h", "168h"]     # sorted by time
    np.testing.assert_allclose([tp.time_h for tp in st.timepoints], S.TIMES_H)
    # activity at each scan on the reference grid
    for tp in st.timepoints:
        true = S.activity_bq(tp.time_s).sum()
        assert tp.total_activity_fov_bq == pytest.approx(true, rel=2e-3), tp.label
        assert tp.total_activity_grid_bq == pytest.approx(true, rel=5e-3), tp.label
    # the moved time point was found where it was put
    moved = st.quant_report[2]
    assert moved["registration"] == "rigid"
    np.testing.assert_allclose(moved["translation_mm"], S.SHIFTS[3], atol=0.3)
    assert max(abs(v) for v in moved["rotation_deg"]) < 0.3
    # masks, TIA per region and per voxel
    truth_masks = S.region_masks()
    for name, m in truth_masks.items():
        np.testing.assert_array_equal(st.masks[name], m, err_msg=name)
    fit, voxel = region_errors(st)
    for organ in ORGANS:
        assert abs(fit[organ]) < 0.01, (organ, fit[organ])
        assert abs(voxel[organ]) < 0.01, (organ, voxel[organ])
    assert abs(voxel["body"]) < 0.01 and abs(fit["body"]) < 0.06
    true_tia = S.tia_bq_s()
    assert st.tia.sum() == pytest.approx(true_tia.sum(), rel=0.01)
    organ_voxels = np.zeros(S.SHAPE, bool)
    for organ in ORGANS:
        organ_voxels |= truth_masks[organ]
    assert np.median(np.abs(st.tia[organ_voxels] / true_tia[organ_voxels] - 1)) < 0.01
    rows = {r["region"]: r for r in st.region_table}
    for organ in ORGANS:
        assert rows[organ]["model"] == "mono" and rows[organ]["flags"] == []
        assert rows[organ]["t_eff_h"] == pytest.approx(S.REGIONS[organ][5], rel=0.01)
        assert 0 < rows[organ]["tia_rel_uncertainty"] < 0.01
    # phantom, source, uncertainty map
    assert st.phantom.shape == S.SHAPE
    np.testing.assert_allclose(st.phantom.spacing_mm, S.SPACING)
    np.testing.assert_allclose(st.phantom.origin_mm, S.ORIGIN)
    assert st.phantom.density[0, 0, 0] < 0.01 and st.phantom.density[16, 16, 16] == pytest.approx(1.03, abs=0.05)
    assert isinstance(st.source, rd.Source) and st.source.nuclide == "Lu-177"
    assert st.source.total_decays == pytest.approx(float(st.tia.sum()))
    assert st.tia_rel_uncertainty.shape == S.SHAPE
    assert np.nanmedian(st.tia_rel_uncertainty[organ_voxels]) < 0.01
    assert st.histories == 100000 and st.seed == 7
    assert "input_sha256" in st.provenance and len(st.provenance["input_sha256"]) > 100


def test_round_trip_quantitative_seg_dicom_administration(quant):
    st = quant
    assert st.provenance["administration"]["activity_source"] == "RadionuclideTotalDose (0018,1074)"
    assert st.provenance["administration"]["time_source"] == "RadiopharmaceuticalStartDateTime (0018,1078)"
    assert st.administration_time == S.ADMIN_TIME and st.administered_activity_bq == pytest.approx(7.4e9)
    assert [tp.units for tp in st.timepoints] == ["bq_per_ml"] * 4
    assert [r["registration"] for r in st.quant_report] == ["reference"] + ["identity"] * 3   # one CT
    fit, voxel = region_errors(st)
    for organ in ORGANS:
        assert abs(fit[organ]) < 0.002 and abs(voxel[organ]) < 0.002, organ
    assert abs(voxel["body"]) < 0.002
    # the report: % of the administered activity, decay-corrected, per time point
    for row, tp in zip(st.quant_report, st.timepoints):
        true = S.activity_bq(tp.time_s).sum() * np.exp(np.log(2) * tp.time_s / S.LU177_HALF_LIFE_S)
        assert row["percent_of_administered_decay_corrected"] == pytest.approx(100 * true / 7.4e9, rel=1e-3)


def test_single_scan_madsen_with_labels(tmp_path):
    """One scan at 96 h, NIfTI labels, Madsen's method with the true effective half-lives per
    region: the TIA is exact (up to the count rounding)."""
    extra = ('\n[tia]\nmodel = "madsen"\neffective_half_life_h = { default = 30, liver = 70, kidney = 45, '
             'tumour = 100 }\n')
    path = S.write_sensitivity_study(tmp_path, shifts={}, segmentation="labels", times_h=(96.0,))
    text = path.read_text().replace('[tia]\nmodel = "auto"\n', extra.lstrip("\n"))
    path.write_text(text)
    st = rd.load_study(path)
    assert list(st.masks) == list(ORGANS)
    truth = S.true_region_tia()
    rows = {r["region"]: r for r in st.region_table}
    for organ in ORGANS:
        assert rows[organ]["model"] == "madsen"
        assert rows[organ]["tia_bq_s"] == pytest.approx(truth[organ], rel=2e-3)
        assert rows[organ]["voxel_sum_tia_bq_s"] == pytest.approx(truth[organ], rel=2e-3)
    assert st.tia.sum() == pytest.approx(S.tia_bq_s().sum(), rel=5e-3)


def test_cli_writes_outputs_atomically(sens_dir, sens, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["tia", str(sens_dir / "study.toml"), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "liver" in printed and "wrote" in printed
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert names == sorted(
        ["tia.nii.gz", "tia_rel_uncertainty.nii.gz", "tia_method.nii.gz", "tia.h5", "regions.csv", "timepoints.csv",
         "manifest.json"]
        + [f"plots/tac_{r}.png" for r in ("body", "liver", "kidney", "tumour", "field_of_view")]
        + [f"registration/tp{k}_to_tp1.tfm" for k in (2, 3, 4)]
        + [f"registration/tp{k}_check.png" for k in (2, 3, 4)])
    img = sitk.ReadImage(str(out / "tia.nii.gz"))
    assert sitk.GetArrayFromImage(img).sum() == pytest.approx(float(sens.tia.sum()), rel=1e-9)
    np.testing.assert_allclose(img.GetOrigin(), S.ORIGIN, atol=1e-4)
    with open(out / "regions.csv") as fh:
        rows = {r["region"]: r for r in csv.DictReader(fh)}
    assert float(rows["liver"]["tia_bq_s"]) == pytest.approx(S.true_region_tia()["liver"], rel=0.01)
    import h5py

    with h5py.File(out / "tia.h5") as h5:
        assert h5.attrs["kind"] == "rptdose.TIAMap" and h5["activity_bq"].shape == (4,) + S.SHAPE
        assert set(h5["masks"]) == {"body", "liver", "kidney", "tumour"}
    # a failure half-way leaves nothing: the output folder is replaced as a whole or not at all
    out2 = tmp_path / "out2"
    real = sitk.WriteImage

    def failing(image, name, *args, **kwargs):
        if "uncertainty" in str(name):
            raise RuntimeError("disk full")
        return real(image, name, *args, **kwargs)

    sitk.WriteImage = failing
    try:
        assert main(["tia", str(sens_dir / "study.toml"), "-o", str(out2), "--no-plots"]) == 1
    finally:
        sitk.WriteImage = real
    assert "disk full" in capsys.readouterr().err
    assert not out2.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # bad input: exit code 2 and one line naming the key
    bad = sens_dir / "bad_grid.toml"     # next to the images its paths point to
    bad.write_text((sens_dir / "study.toml").read_text().replace('grid = "spect"', 'grid = "dose"'))
    try:
        assert main(["tia", str(bad), "-o", str(tmp_path / "out3")]) == 2
    finally:
        bad.unlink()
    err = capsys.readouterr().err
    assert "key dose.grid 'dose' (unknown)" in err and "Traceback" not in err
    assert not (tmp_path / "out3").exists()


# ---- bad inputs ---------------------------------------------------------------------------------

def copy_study(sens_dir, tmp_path, old=None, new=None):
    root = tmp_path / "study"
    shutil.copytree(sens_dir, root, ignore=shutil.ignore_patterns("out*"))
    if old is not None:
        text = (root / "study.toml").read_text()
        assert old in text, old
        (root / "study.toml").write_text(text.replace(old, new))
    return root / "study.toml"


def rewrite_spect(path, tp=2, **kw):
    """Rewrite time point `tp`'s NM file of a copied sensitivity study with other options."""
    t_h = S.TIMES_H[tp - 1]
    root = path.parent
    import pydicom

    for_uid = pydicom.dcmread(root / f"tp{tp}" / "ct" / "ct0000.dcm", stop_before_pixels=True).FrameOfReferenceUID
    kw.setdefault("acquisition", S.ADMIN_TIME + dt.timedelta(hours=t_h))
    kw.setdefault("for_uid", for_uid)
    counts = S.nm_counts(t_h * S.HOUR, S.SENSITIVITY, S.VIEWS * S.MS_PER_VIEW / 1000.0)
    S.write_nm_multiframe(root / f"tp{tp}" / "spect.dcm", counts, S.SPACING, S.ORIGIN, S.NMOptions(**kw))


TOML_CASES = [
    ('[dose]\n', '[dose]\ngrdi = 4\n', r"key dose.grdi 4 \(unknown key\): expected one of grid, method"),
    ('[dose]\n', '[doses]\nx = 1\n[dose]\n', r"key \[doses\].*unknown table"),
    ('grid = "spect"', 'grid = 0.01', r"key dose.grid 0.01 \(out of range\)"),
    ('grid = "spect"', 'grid = [4, 4]', r"key dose.grid \[4, 4\] \(not understood\).*spacing in mm"),
    ('model = "auto"', 'model = "cubic"', r"key tia.model 'cubic' \(unknown\): expected one of auto, mono"),
    ('model = "auto"', 'model = "madsen"', r"key tia.effective_half_life_h None \(missing with model 'madsen'\)"),
    ('model = "auto"', 'model = "hanscheid"', r"key tia.timepoint None \(missing: 4 scans"),
    ('mode = "sensitivity"', 'mode = "quantitative"',
     r"key calibration.sensitivity_cps_per_mbq 9.0 \(given with mode = 'quantitative'\)"),
    ('sensitivity_cps_per_mbq = 9.0', 'sensitivity_cps_per_mbq = -9.0',
     r"key calibration.sensitivity_cps_per_mbq -9.0 \(not > 0\)"),
    ('sensitivity_cps_per_mbq = 9.0', '', r"sensitivity_cps_per_mbq None \(missing with mode = 'sensitivity'\)"),
    ('activity_mbq = 7400', 'activity_mbq = "7400"', r"key administration.activity_mbq '7400' \(not a number\)"),
    ('time = 2026-03-02T09:00:00', 'time = 2026-03-02T09:00:00+01:00',
     r"key administration.time .* \(has a UTC offset\)"),
    ('time = 2026-03-02T09:00:00', 'time = 2026-03-02', r"key administration.time .*a date without a time"),
    ('time = 2026-03-02T09:00:00', 'time = "yesterday"', r"key administration.time 'yesterday' \(not an ISO"),
    ('spect = "tp1/spect.dcm"', 'spect = "tp1/nope.dcm"',
     r"key timepoint\[4\].spect 'tp1/nope.dcm' \('.*nope.dcm' does not exist\)"),
    ('rtstruct = "rtstruct.dcm"', 'rtstruct = "rtstruct.dcm"\nlabels = "rtstruct.dcm"',
     r"key segmentation .*rtstruct and labels given.*one of rtstruct, seg or labels"),
    ('nuclide = "Lu-177"', 'nuclide = "Lu-999"', r"key study.nuclide 'Lu-999' \(unknown"),
    ('iterations = 60', 'iterations = 0', r"key registration.iterations 0 \(too small\)"),
    ('nuclide = "Lu-177"', 'nuclide = "Lu-177"\n[study.extra]', r"not valid TOML|unknown key"),
    ('[dose]', '[dose', r"not valid TOML"),
]


@pytest.mark.parametrize("old,new,message", TOML_CASES, ids=[c[2][:30] for c in TOML_CASES])
def test_study_file_errors_name_file_key_and_expectation(sens_dir, tmp_path, old, new, message):
    path = copy_study(sens_dir, tmp_path, old, new)
    with pytest.raises(InputError, match=message) as info:
        rd.load_study(path)
    assert "study.toml" in str(info.value)


def test_missing_files_and_tables(tmp_path):
    with pytest.raises(InputError, match="does not exist.*study file"):
        rd.load_study(tmp_path / "none.toml")
    p = tmp_path / "s.toml"
    p.write_text('[calibration]\nmode = "quantitative"\n')
    with pytest.raises(InputError, match=r"s.toml' key \[\[timepoint\]\] None \(missing\)"):
        rd.load_study(p)
    (tmp_path / "a").mkdir()
    p.write_text('[[timepoint]]\nspect = "a"\nct = "a"\n')
    with pytest.raises(InputError, match=r"key \[calibration\] None \(missing\)"):
        rd.load_study(p)


def test_dicom_inconsistencies_are_reported(sens_dir, tmp_path):
    path = copy_study(sens_dir, tmp_path)
    rewrite_spect(path, 2, patient_id="OTHER")
    with pytest.raises(InputError, match=r"PatientID \(0010,0020\) differs between inputs: 'SYN001'.*'OTHER'"):
        rd.load_study(path)
    rewrite_spect(path, 2, for_uid="1.2.3.999")
    with pytest.raises(InputError, match=r"tp2/spect.dcm' \(FrameOfReferenceUID \(0020,0052\) 1.2.3.999 differs from "
                                         r"its ct"):
        rd.load_study(path)
    rewrite_spect(path, 2, nuclide_meaning="^90^Yttrium", half_life_s=None)
    with pytest.raises(InputError, match=r"RadionuclideCodeSequence \(0054,0300\) says Y-90.*expected Lu-177"):
        rd.load_study(path)
    rewrite_spect(path, 2, half_life_s=21600.0)
    with pytest.raises(InputError, match=r"RadionuclideHalfLife \(0018,1075\) 21600 s"):
        rd.load_study(path)
    rewrite_spect(path, 2)  # back to a good file
    # the RTSTRUCT drawn on another frame of reference
    S.write_rtstruct(path.parent / "rtstruct.dcm", S.contours(), for_uid="7.7.7")
    with pytest.raises(InputError, match=r"ReferencedFrameOfReferenceUID \(3006,0024\) 7.7.7"):
        rd.load_study(path)


def test_timing_problems_are_reported_not_guessed(sens_dir, tmp_path):
    path = copy_study(sens_dir, tmp_path)
    no_time = ("AcquisitionDate", "AcquisitionTime", "SeriesDate", "SeriesTime", "StudyDate", "StudyTime")
    rewrite_spect(path, 2, drop=no_time)
    with pytest.raises(InputError, match=r"tp2/spect.dcm' \(acquisition start absent: none of AcquisitionDateTime.*"
                                         r"timepoint\[3\].acquisition_time"):
        rd.load_study(path)
    text = path.read_text().replace('spect = "tp2/spect.dcm"', 'spect = "tp2/spect.dcm"\n'
                                    'acquisition_time = 2026-03-03T09:00:00')
    path.write_text(text)
    rewrite_spect(path, 2, drop=no_time, rotation=None)
    with pytest.raises(InputError, match=r"duration is unknown.*RotationInformationSequence \(0054,0052\).*"
                                         r"timepoint.duration_s"):
        rd.load_study(path)
    path.write_text(text.replace("acquisition_time = 2026-03-03T09:00:00",
                                 "acquisition_time = 2026-03-03T09:00:00\nduration_s = 1800"))
    st = rd.load_study(path, register=False)       # the overrides fill the gaps
    assert st.timepoints[1].acquisition_start_source == "timepoint[3].acquisition_time"
    assert st.timepoints[1].duration_source == "timepoint[3].duration_s"
    # a scan before the administration (a wrong date)
    path.write_text(text.replace("time = 2026-03-02T09:00:00", "time = 2026-03-04T09:00:00"))
    with pytest.raises(InputError, match=r"acquisition start 2026-03-0.T..:00:00 from .* is not after the "
                                         r"administration 2026-03-04T09:00:00"):
        rd.load_study(path)


def test_administration_from_dicom_must_exist(sens_dir, tmp_path):
    path = copy_study(sens_dir, tmp_path, "[administration]\nactivity_mbq = 7400\ntime = 2026-03-02T09:00:00\n", "")
    st_ok = rd.load_study(path, register=False)      # all four SPECTs carry it
    assert st_ok.provenance["administration"]["activity_source"] == "RadionuclideTotalDose (0018,1074)"
    for tp in (1, 2, 3, 4):
        rewrite_spect(path, tp, total_dose_mbq=None, radiopharm_start=None, radiopharm_start_time_only=S.ADMIN_TIME)
    with pytest.raises(InputError, match=r"key administration.activity_mbq \(missing, and no SPECT has "
                                         r"RadionuclideTotalDose"):
        rd.load_study(path)
    path.write_text("[administration]\nactivity_mbq = 7400\n" + path.read_text())
    with pytest.raises(InputError, match=r"key administration.time \(missing.*RadiopharmaceuticalStartTime "
                                         r"\(0018,1072\), without a date"):
        rd.load_study(path)


def test_calibration_must_match_the_series(quant, tmp_path):
    root = tmp_path / "q"
    path = S.write_quantitative_study(root)
    path.write_text(path.read_text().replace('mode = "quantitative"',
                                             'mode = "sensitivity"\nsensitivity_cps_per_mbq = 9.0'))
    with pytest.raises(InputError, match=r"calibration.mode 'sensitivity' \(spect '.*spect1.dcm' is in Bq/ml per "
                                         r"RealWorldValueMappingSequence"):
        rd.load_study(path)
    # a segmentation region that is not in the file
    path.write_text(path.read_text().replace('mode = "sensitivity"\nsensitivity_cps_per_mbq = 9.0',
                                             'mode = "quantitative"')
                    + '\n[segmentation.names]\nliver = "Liver"\n')
    with pytest.raises(InputError, match=r"segmentation.names.liver 'Liver' \(no SegmentLabel"):
        rd.load_study(path)


@pytest.mark.parametrize("grid,shape", [("8", (16, 16, 16)), ('"ct"', S.SHAPE), ("[4, 4, 8]", (16, 32, 32))])
def test_dose_grid_choices(sens_dir, tmp_path, grid, shape):
    """Coarser grids keep the activity: 8 mm voxels hold 2 x 2 x 2 SPECT voxels and linear
    interpolation at their centres averages those exactly."""
    path = copy_study(sens_dir, tmp_path, 'grid = "spect"', f"grid = {grid}")
    st = rd.load_study(path)
    assert st.phantom.shape == st.source.shape == st.tia.shape == shape
    assert st.tia.sum() == pytest.approx(S.tia_bq_s().sum(), rel=0.01)
    assert all(m.shape == shape and m.any() for m in st.masks.values())
    rows = {r["region"]: r for r in st.region_table}
    assert rows["liver"]["tia_bq_s"] == pytest.approx(S.true_region_tia()["liver"], rel=0.1)


SCHEDULER_OK = ['"local:1"', '"local:16"', '"tcp://10.0.0.5:8786"', '"tls://scheduler.example.org:8786"',
                '"ws://h:8787"', '"wss://h:8787"', '"inproc://192.168.1.2/1234/1"']
SCHEDULER_BAD = [('"local:0"', "no workers"), ('"local:x"', "not a whole number"), ('"local"', "known scheme"),
                 ('"local:-2"', "not a whole number"), ('"http://h:8786"', "known scheme"),
                 ('"tcp://"', "no host"), ('"tcp://h :1"', "white space"), ('""', "empty"),
                 ("4", "of type int"), ('["local:2"]', "of type list")]


@pytest.mark.parametrize("value", SCHEDULER_OK)
def test_dose_scheduler_accepted(sens_dir, tmp_path, value):
    from rptdose.study import read_study_file

    path = copy_study(sens_dir, tmp_path, "[dose]\n", f"[dose]\nscheduler = {value}\n")
    assert read_study_file(path).dose["scheduler"] == value.strip('"')


@pytest.mark.parametrize("value,why", SCHEDULER_BAD, ids=[v for v, _ in SCHEDULER_BAD])
def test_dose_scheduler_refused_naming_key_value_and_expectation(sens_dir, tmp_path, value, why):
    """dose.scheduler: "local:N" (N >= 1) or a Dask scheduler address (tcp, tls, ws, wss, inproc);
    anything else refused with the file, the key, the value, why and what was expected."""
    from rptdose.study import read_study_file

    path = copy_study(sens_dir, tmp_path, "[dose]\n", f"[dose]\nscheduler = {value}\n")
    with pytest.raises(InputError, match=r"key dose\.scheduler .*\(.*" + why + r".*\): expected \"local:N\".*"
                                         r"tcp://, tls://, ws://, wss:// or inproc://") as info:
        read_study_file(path)
    assert "study.toml" in str(info.value)


def test_dose_scheduler_absent_is_none(sens_dir):
    from rptdose.study import read_study_file

    assert read_study_file(sens_dir / "study.toml").dose["scheduler"] is None
