"""`rptdose run` end to end on a small synthetic study (tests/_synthetic_dicom.py: 32^3 voxels of 4 mm,
four SPECT/CT time points in counts, an RTSTRUCT, mono-exponential organ kinetics with known TIA),
and the demo patient at a coarse voxel size.

Tolerances (stated where used):
* organ doses of the run against rd.simulate of the *true* TIA map: 3 combined statistical sigma
  (the two runs' batch uncertainties) plus the TIA recovery tolerance of the study loader for
  single-exponential organs, 1 % (tests/test_study.py: integer counts, no registration here);
* the RT Dose pixel values are uint32 with DoseGridScaling = max / (2**32 - 1): the stored dose
  differs from the float dose by at most half a step, 1.2e-10 of the maximum (we allow 1e-9).
"""

import json
import math

import h5py
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import _synthetic_dicom as S
import rptdose as rd
from rptdose.cli import main
from rptdose.errors import InputError
from rptdose.pipeline import REGION_COLUMNS, REGIONS_FORMAT, region_kind, run_study

HISTORIES = 200_000
ORGANS = ("liver", "kidney", "tumour")
TIA_TOL = 0.01


@pytest.fixture(scope="module")
def study_file(tmp_path_factory):
    return S.write_sensitivity_study(tmp_path_factory.mktemp("study"), shifts={})


@pytest.fixture(scope="module")
def study(study_file):
    return rd.load_study(study_file)


@pytest.fixture(scope="module")
def run_dir(study_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    rc = main(["run", str(study_file), "-o", str(out), "--histories", str(HISTORIES), "--seed", "3"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def regions_doc(run_dir):
    return json.loads((run_dir / "regions.json").read_text())


def test_outputs_written(run_dir):
    for name in ("dose.dcm", "dose_uncertainty.dcm", "dose.nii.gz", "dose_rel_uncertainty.nii.gz", "dose.h5",
                 "regions.csv", "regions.json", "dvh.csv", "dvh.png", "dose_slices.png", "report.html",
                 "tia/tia.nii.gz", "tia/plots/tac_kidney.png"):
        assert (run_dir / name).is_file(), name
    assert not [p for p in run_dir.rglob(".*")], "temporary files left behind"


def test_regions_json_contract(regions_doc, study):
    doc = regions_doc
    assert doc["format"] == REGIONS_FORMAT and doc["format_version"] == 1
    assert doc["nuclide"] == "Lu-177" and doc["method"] == "mc"
    assert doc["administered_activity_mbq"] == pytest.approx(7400.0)
    assert doc["administration_time"] == "2026-03-02T09:00:00"
    assert doc["study_file"] == str(study.path)
    regions = {r["name"]: r for r in doc["regions"]}
    assert set(regions) == set(study.masks) | {"field_of_view"}
    assert regions["kidney"]["kind"] == "kidney" and regions["tumour"]["kind"] == "tumour"
    assert regions["liver"]["kind"] == "organ"
    for r in doc["regions"]:
        for key in ("mean_dose_gy", "mean_dose_rel_uncertainty", "d2_gy", "d50_gy", "d98_gy", "max_gy", "volume_ml",
                    "mass_g", "mean_tia_bq_s"):
            assert isinstance(r[key], float) and math.isfinite(r[key]), (r["name"], key)
        assert r["d2_gy"] >= r["d50_gy"] >= r["d98_gy"] and r["max_gy"] >= r["d2_gy"]
        assert isinstance(r["tia_model"], str)
    # organs are mono-exponential by construction: the fitted effective half-life is the true one
    for organ in ORGANS:
        assert regions[organ]["t_eff_h"] == pytest.approx(S.REGIONS[organ][5], rel=0.01)
        m = study.masks[organ]
        assert regions[organ]["mean_tia_bq_s"] == pytest.approx(float(study.tia[m].mean()), rel=1e-12)
        assert regions[organ]["volume_ml"] == pytest.approx(m.sum() * 0.064)


def test_organ_doses_agree_with_simulate_on_true_tia(regions_doc, study):
    true = rd.simulate(study.phantom, rd.Source("Lu-177", S.tia_bq_s()), histories=HISTORIES, seed=11,
                       regions={k: study.masks[k] for k in ORGANS}, progress=False)
    regions = {r["name"]: r for r in regions_doc["regions"]}
    for organ in ORGANS:
        ours, ref = regions[organ], true.region_means[organ]
        sigma = math.hypot(ours["mean_dose_rel_uncertainty"], ref["rel_uncertainty"])
        tol = 3 * sigma + TIA_TOL
        assert ours["mean_dose_gy"] / ref["mean_dose_gy"] - 1 == pytest.approx(0.0, abs=tol), organ


def test_rtdose_reads_back_on_the_ct_frame(run_dir, study):
    from rptdose.io.nm import dicom_identity

    ds = pydicom.dcmread(str(run_dir / "dose.dcm"))
    ct = dicom_identity(study.timepoints[0].ct_path, modality="CT")
    assert ds.Modality == "RTDOSE" and ds.FrameOfReferenceUID == next(iter(ct["FrameOfReferenceUID"]))
    assert ds.StudyInstanceUID == next(iter(ct["StudyInstanceUID"]))
    assert (ds.DoseUnits, ds.DoseType, ds.DoseSummationType) == ("GY", "PHYSICAL", "ADMINISTRATION")
    assert ds.BitsAllocated == 32 and ds.pixel_array.dtype == np.uint32
    nifti = sitk.ReadImage(str(run_dir / "dose.nii.gz"))
    dose = sitk.GetArrayFromImage(nifti)
    scale = float(ds.DoseGridScaling)
    np.testing.assert_allclose(ds.pixel_array * scale, dose, rtol=0, atol=1e-9 * dose.max())
    geo = study.geometry
    np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], geo["origin_mm"], atol=1e-6)
    np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], [geo["spacing_mm"][1], geo["spacing_mm"][0]])
    np.testing.assert_allclose(np.diff([float(v) for v in ds.GridFrameOffsetVector]), geo["spacing_mm"][2])
    img = sitk.ReadImage(str(run_dir / "dose.dcm"))
    np.testing.assert_allclose(img.GetOrigin(), geo["origin_mm"], atol=1e-4)
    np.testing.assert_allclose(img.GetSpacing(), geo["spacing_mm"], atol=1e-6)
    np.testing.assert_allclose(img.GetDirection(), geo["direction"], atol=1e-6)
    np.testing.assert_allclose(sitk.GetArrayFromImage(img) * scale, dose, rtol=0, atol=1e-9 * dose.max())
    unc = pydicom.dcmread(str(run_dir / "dose_uncertainty.dcm"))
    assert unc.DoseType == "ERROR" and unc.FrameOfReferenceUID == ds.FrameOfReferenceUID
    rel = sitk.GetArrayFromImage(sitk.ReadImage(str(run_dir / "dose_rel_uncertainty.nii.gz")))
    sigma = unc.pixel_array * float(unc.DoseGridScaling)
    hot = dose > 0.5 * dose.max()
    np.testing.assert_allclose(sigma[hot], (dose * rel)[hot], rtol=1e-6)


def test_hdf5_has_maps_masks_and_provenance(run_dir, study, study_file):
    res = rd.load_result(run_dir / "dose.h5")     # a readable rptdose result
    assert res.seed == 3 and res.histories == HISTORIES
    nifti = sitk.GetArrayFromImage(sitk.ReadImage(str(run_dir / "dose.nii.gz")))
    with h5py.File(run_dir / "dose.h5", "r") as f:
        # dose.nii.gz is the full map masked to the body outline (dose.mask_to_body); dose.h5 has both
        body = f["body_mask"][()].astype(bool)
        assert body.any() and not body.all()
        np.testing.assert_array_equal(np.where(body, res.dose_gy, 0.0), nifti)
        assert res.dose_gy[~body].max() > 0            # the full map keeps the dose outside
        # the CLI loaded the study again (registration included): the same bits
        np.testing.assert_array_equal(f["tia_bq_s"][()], study.tia)
        assert set(f["masks"]) == set(study.masks) | {"field_of_view"}
        np.testing.assert_array_equal(f["masks/kidney"][()].astype(bool), study.masks["kidney"])
        prov = json.loads(f.attrs["provenance"])
    assert prov["study_file_text"] == study_file.read_text()
    assert str(study_file) in prov["study"]["input_sha256"]
    dose = prov["dose"]
    assert dose["seed"] == 3 and dose["histories"] == HISTORIES and dose["backend"] == "cpu"
    assert dose["electron_transport"] is True
    assert "physics_data" in dose["provenance"] and "icrp107-database" in prov["study"]["versions"]
    assert set(prov["timings_s"]) >= {"load_study", "dose"}


def test_region_csv_and_report(run_dir, regions_doc):
    import csv

    with open(run_dir / "regions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == REGION_COLUMNS
    by_name = {r["name"]: r for r in regions_doc["regions"]}
    for row in rows:
        assert float(row["mean_dose_gy"]) == pytest.approx(by_name[row["name"]]["mean_dose_gy"], rel=1e-7)
    with open(run_dir / "dvh.csv") as fh:
        dvh = list(csv.DictReader(fh))
    v = np.array([float(r["kidney_volume_fraction"]) for r in dvh])
    assert v[0] == 1.0 and np.all(np.diff(v) <= 0)
    html = (run_dir / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') >= 3
    assert "src=\"http" not in html and "<script" not in html
    for r in regions_doc["regions"]:
        assert r["name"] in html
    assert "Warnings" in html and "SHA-256" in html and "sensitivity_cps_per_mbq" in html


def test_dose_rate_integration_agrees(study, regions_doc, tmp_path):
    """Integrating the voxel dose-rate curves gives the organ doses of the TIA transport: each
    organ's activity is mono-exponential, so only the cross-dose from compartments with other
    half-lives (a few % of an organ's dose) bends its dose-rate curve; tolerance 3 sigma + 2 x
    the TIA tolerance (the dose-rate fit and the activity fit each recover a curve to 1 %)."""
    out = run_study(study, tmp_path / "rate", dose_rate=True, histories=HISTORIES, seed=5, plots=False,
                    progress=False)
    assert out.dose.provenance["dose_rate"]["histories_per_timepoint"] == HISTORIES // 4
    # the dose rate of an organ decays with about its activity's effective half-life (cross-dose aside)
    rows = {r["name"]: r for r in out.regions}
    for organ in ORGANS:
        assert rows[organ]["dose_rate_t_eff_h"] == pytest.approx(rows[organ]["t_eff_h"], rel=0.05)
    ref = {r["name"]: r for r in regions_doc["regions"]}
    for r in out.regions:
        if r["name"] in ORGANS:
            sigma = math.hypot(r["mean_dose_rel_uncertainty"], ref[r["name"]]["mean_dose_rel_uncertainty"])
            assert r["mean_dose_gy"] / ref[r["name"]]["mean_dose_gy"] - 1 == pytest.approx(
                0.0, abs=3 * sigma + 2 * TIA_TOL), r["name"]


def test_fast_method_on_same_inputs(study, regions_doc, tmp_path):
    """Local deposition (photons ignored) against Monte Carlo: in these organs (>= 3 ml) the
    electrons' energy stays almost entirely inside, photons add a few %; LDM lower than MC by
    less than the photon share of the emitted energy plus 3 sigma, and never higher by more than
    the electron escape (a few %)."""
    from rptdose.fast.ldm import emitted_energy_split

    out = run_study(study, tmp_path / "ldm", method="ldm", plots=False)
    assert json.loads((tmp_path / "ldm" / "regions.json").read_text())["method"] == "ldm"
    split = emitted_energy_split(study.source)
    photon_share = split["photons"] / (split["photons"] + split["electrons"])
    mc = {r["name"]: r for r in regions_doc["regions"]}
    for r in out.regions:
        if r["name"] in ORGANS:
            ratio = r["mean_dose_gy"] / mc[r["name"]]["mean_dose_gy"]
            s = 3 * mc[r["name"]]["mean_dose_rel_uncertainty"]
            assert 1 - photon_share - s - 0.1 < ratio < 1 + 0.1 + s, r["name"]
    assert not (tmp_path / "ldm" / "dose_uncertainty.dcm").exists()   # no statistical uncertainty map


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.replace('histories = 100000', 'histories = "many"'), ["dose.histories", "integer"]),
    (lambda t: t.replace('[dose]\n', '[dose]\nmethode = "mc"\n'), ["dose.methode", "unknown key"]),
    (lambda t: t.replace('[dose]\n', '[dose]\nmethod = "montecarlo"\n'), ["dose.method", "mc"]),
    (lambda t: t.replace('spect = "tp1/spect.dcm"', 'spect = "tp1/missing.dcm"'), ["missing.dcm"]),
])
def test_bad_study_file_exit_2(study_file, tmp_path, capsys, edit, words):
    bad = study_file.parent / f"bad_{abs(hash(words[0]))}.toml"
    bad.write_text(edit(study_file.read_text()))
    capsys.readouterr()
    rc = main(["run", str(bad), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(bad) in err
    for w in words:
        assert w in err
    assert not (tmp_path / "out" / "dose.dcm").exists()


def test_missing_study_and_output_is_a_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml"), "-o", str(tmp_path / "o")]) == 2
    assert "nope.toml" in capsys.readouterr().err
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="expected a folder"):
        run_study(tmp_path / "nope.toml", f)


def test_failed_write_leaves_no_partial_file(study, tmp_path, monkeypatch):
    """A writer that dies half-way leaves neither the file nor its temporary; the output folder
    is written as a whole or not at all (rptdose.io.outdir): nothing of the failed run remains."""
    out = tmp_path / "out"

    def broken_save_as(self, filename, *args, **kwargs):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", broken_save_as)
    with pytest.raises(OSError, match="disk full"):
        run_study(study, out, histories=2000, plots=False, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_failed_report_leaves_no_report(study, tmp_path, monkeypatch):
    import rptdose.report.html as report_html

    def broken(*args, **kwargs):
        raise RuntimeError("renderer failed")

    monkeypatch.setattr(report_html, "render_report", broken)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="renderer failed"):
        run_study(study, out, histories=2000, plots=False, progress=False)
    assert list(tmp_path.iterdir()) == []      # no half output folder (no dose.dcm without its report)


def test_same_seed_same_dose(study, tmp_path):
    """Reproducible with the seed: the same study and seed give the same bits, another seed not."""
    runs = [run_study(study, tmp_path / f"r{k}", histories=5000, seed=seed, plots=False, progress=False)
            for k, seed in enumerate((4, 4, 5))]
    a, b, c = (rd.load_result(tmp_path / f"r{k}" / "dose.h5").dose_gy for k in range(3))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    from rptdose.pipeline import json_clean   # NaN (unknown budget terms) as None, so that equal rows compare equal

    assert json_clean(runs[0].regions) == json_clean(runs[1].regions)


def test_histories_below_one(study, tmp_path, capsys):
    with pytest.raises(InputError, match="dose.histories"):
        run_study(study, tmp_path / "o", histories=0)


def test_region_kind():
    assert [region_kind(n) for n in ("Kidney L", "kidney_right", "renal cortex", "Red_Marrow L2-L4", "tumour_1",
                                     "Liver tumor", "lesion 3", "GTV", "liver", "spleen", "body")] == \
        ["kidney", "kidney", "kidney", "marrow", "tumour", "tumour", "tumour", "tumour", "organ", "organ", "organ"]


def test_demo_patient_small(tmp_path):
    """The demo generator at 16 mm voxels (a test-sized grid): it writes a study the pipeline runs,
    with kidneys, marrow and tumours recognised; the quantified field-of-view activity at each scan
    is the true activity within 0.5 % (the SPECT blur conserves activity except what it carries out
    through the cut ends of the body, Poisson noise of the total < 0.1 %)."""
    from rptdose.demo import KINETICS, DemoPatient, write_demo_study

    p = DemoPatient(voxel_mm=16.0)
    assert p.shape == (19, 17, 23)
    study_file = write_demo_study(tmp_path / "patient", p, histories=20_000)
    assert (tmp_path / "patient" / "rtstruct.dcm").is_file()
    outcome = run_study(study_file, tmp_path / "out", plots=False, progress=False)
    doc = json.loads((tmp_path / "out" / "regions.json").read_text())
    assert {r["kind"] for r in doc["regions"]} == {"kidney", "marrow", "tumour", "organ"}
    assert doc["histories"] == 20_000
    # the whole quantitative chain: the sensitivity from the calibration phantom written beside the
    # patient (counting statistics of ~4e6 counts: 0.05 %) and the recovery correction
    from rptdose.demo import SENSITIVITY_CPS_PER_MBQ, SPECT_FWHM_MM

    cal = outcome.study.settings["calibration"]
    assert cal["mode"] == "phantom" and cal["sensitivity_cps_per_mbq"] == pytest.approx(SENSITIVITY_CPS_PER_MBQ,
                                                                                         rel=0.003)
    assert outcome.study.recovery is not None and outcome.study.recovery.psf_fwhm_mm == (SPECT_FWHM_MM,) * 3
    for r in doc["regions"]:   # the budget: the dose calibrator's 2 % and counting statistics in u_calibration
        assert r["u_calibration"] == pytest.approx(0.02, rel=0.01)
        assert r["u_total"] >= max(r[k] for k in ("u_calibration", "u_tia_fit", "u_statistical") if r[k] is not None)
    for tp in outcome.study.timepoints:
        assert tp.total_activity_fov_bq == pytest.approx(float(p.activity_bq(tp.time_s).sum()), rel=0.005)
    # the true TIA is the sum over the compartments of A0 f T_eff / ln 2
    total = sum(7.4e9 * f * t * 3600 / math.log(2.0) for f, t in KINETICS.values())
    assert float(p.tia_bq_s().sum()) == pytest.approx(total, rel=1e-9)


def test_demo_does_not_depend_on_scipy(tmp_path):
    """The demo's images and results are the same whether scipy is importable or not (one numpy
    code path for the SPECT blur and the convolutions): the study written and run in a process
    where ``import scipy`` fails gives the same SPECT pixels and the same region doses, bit for
    bit, as in this one."""
    import subprocess
    import sys

    from rptdose.demo import DemoPatient, write_demo_study

    script = ("import sys; sys.modules['scipy'] = None\n"
              "from rptdose.demo import DemoPatient, write_demo_study\n"
              "from rptdose.pipeline import run_study\n"
              "s = write_demo_study(sys.argv[1], DemoPatient(voxel_mm=16.0), histories=20_000)\n"
              "run_study(s, sys.argv[2], plots=False, progress=False)\n")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "a"), str(tmp_path / "a_out")], check=True,
                   timeout=600)
    study_file = write_demo_study(tmp_path / "b", DemoPatient(voxel_mm=16.0), histories=20_000)
    run_study(study_file, tmp_path / "b_out", plots=False, progress=False)
    for k in range(1, 5):
        a = pydicom.dcmread(tmp_path / "a" / f"tp{k}" / "spect.dcm").pixel_array
        b = pydicom.dcmread(tmp_path / "b" / f"tp{k}" / "spect.dcm").pixel_array
        assert np.array_equal(a, b), f"SPECT of time point {k}"
    doc_a = json.loads((tmp_path / "a_out" / "regions.json").read_text())
    doc_b = json.loads((tmp_path / "b_out" / "regions.json").read_text())
    means_a = {r["name"]: r["mean_dose_gy"] for r in doc_a["regions"]}
    means_b = {r["name"]: r["mean_dose_gy"] for r in doc_b["regions"]}
    assert means_a == means_b and len(means_a) >= 9
