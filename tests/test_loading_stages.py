"""The study loader's stages (rptdose/loading.py) run one by one on the synthetic 4-time-point
SPECT/CT study of tests/_synthetic_dicom.py: each stage's result alone, and the stages in order
give what load_study gives."""

import numpy as np
import pytest

import _synthetic_dicom as S
from rptdose import loading
from rptdose.study import load_study, read_study_file


@pytest.fixture(scope="module")
def study_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    S.write_sensitivity_study(root)
    return root / "study.toml"


@pytest.fixture(scope="module")
def staged(study_file):
    spec = read_study_file(study_file)
    scans = loading.read_scans(spec)
    acts = loading.quantify(spec, scans)
    registered = loading.register_activity(spec, scans, acts, spec.registration)
    masks = loading.segment(spec, registered)
    anatomy = loading.build_anatomy(spec, registered)
    integrated = loading.integrate_activity(spec, registered, masks, anatomy.body, scans.half_life_s)
    study = loading.assemble(spec, scans, acts, registered, masks, anatomy, integrated, spec.registration)
    return spec, scans, acts, registered, masks, anatomy, integrated, study


def test_read_and_quantify(staged):
    spec, scans, acts, *_ = staged
    assert scans.nuclide == "Lu-177" and len(scans.nms) == len(scans.cts) == len(S.TIMES_H)
    assert [round(a.time_s / 3600.0, 6) for a in acts] == list(S.TIMES_H)     # in time order
    # the synthetic counts are rounded to integers: each scan's activity within 0.5 % of the truth
    for a in acts:
        assert float(a.activity_bq.sum()) == pytest.approx(float(S.activity_bq(a.time_s).sum()), rel=0.005)


def test_register_segment_anatomy(staged):
    _, _, acts, registered, masks, anatomy, *_ = staged
    assert registered.activity.shape == (len(acts),) + registered.geometry["shape"]
    assert registered.timepoints[0].registration is None
    assert all(tp.registration is not None for tp in registered.timepoints[1:])
    assert set(masks) == {"body", "liver", "kidney", "tumour"}
    # the CT's body outline is the synthetic body (elliptic cylinder, HU 20 in air at -1000)
    assert np.array_equal(anatomy.body, S.region_masks()["body"])
    assert anatomy.phantom.shape == registered.geometry["shape"]


def test_integrate_and_assemble_equal_load_study(staged, study_file):
    *_, integrated, study = staged
    assert integrated.region_names[-1] == "field_of_view"
    assert float(integrated.tia.sum()) == pytest.approx(float(S.tia_bq_s().sum()), rel=0.01)
    loaded = load_study(study_file)
    assert np.array_equal(loaded.tia, study.tia)
    assert np.array_equal(loaded.voxel_method, study.voxel_method)
    assert [r["tia_bq_s"] for r in loaded.region_table] == [r["tia_bq_s"] for r in study.region_table]


@pytest.fixture(scope="module")
def demo_study(tmp_path_factory):
    """The demo patient at 8 mm voxels: its SPECTs are the truth blurred by a Gaussian of
    demo.SPECT_FWHM_MM (10 mm) and Poisson-sampled, the contours follow the voxels."""
    from rptdose.demo import DemoPatient, write_demo_study

    p = DemoPatient(voxel_mm=8.0)
    root = tmp_path_factory.mktemp("demo8")
    study_file = write_demo_study(root, p, histories=1000, recovery=False)
    return p, study_file


def _with_recovery(study_file, table, name):
    path = study_file.parent / name
    path.write_text(study_file.read_text() + "\n" + table)
    return path


def test_recovery_correction_brings_region_tia_to_the_truth(demo_study):
    """[recovery] psf_fwhm_mm = the blur the demo's SPECTs were made with: the organs' TIAs, low
    by 8-20 % from spill-out before, come within 5 % of the truth (the demo kinetics are one
    exponential per compartment, so the fits are exact up to the Poisson noise; the kidneys keep
    a few % because their medulla takes up less than the cortex, which the uniform-part model
    ignores: validation/recovery). The voxel TIA map carries the correction (its region sums
    follow), the table gives the uncorrected TIA, the recovery coefficient and the budget."""
    from rptdose.demo import SPECT_FWHM_MM

    p, study_file = demo_study
    truth = p.tia_bq_s()
    masks = p.regions()
    plain = load_study(study_file)
    path = _with_recovery(study_file, f"[recovery]\npsf_fwhm_mm = {SPECT_FWHM_MM}\n", "recovery.toml")
    st = load_study(path)
    assert st.recovery is not None and st.recovery.psf_fwhm_mm == (SPECT_FWHM_MM,) * 3
    before = {r["region"]: r for r in plain.region_table}
    after = {r["region"]: r for r in st.region_table}
    for name, tol in (("liver", 0.05), ("spleen", 0.05), ("kidney_left", 0.05), ("kidney_right", 0.05),
                      ("tumour_1", 0.10), ("tumour_2", 0.10)):
        true_tia = float(truth[masks[name]].sum())
        assert before[name]["tia_bq_s"] < 0.95 * true_tia, name          # what the correction is for
        # organs (100-1500 ml) within 5 %; the tumours (17 and 6 ml, 33 and 11 voxels of 8 mm) within
        # 10 %: the registered third scan is resampled by linear interpolation, a blur beyond the PSF
        # that the correction does not model, and the tumours' late scans weigh most in their fits
        assert after[name]["tia_bq_s"] == pytest.approx(true_tia, rel=tol), name
        assert abs(after[name]["tia_bq_s"] / true_tia - 1) < 0.5 * abs(before[name]["tia_bq_s"] / true_tia - 1)
        assert after[name]["tia_uncorrected_bq_s"] == pytest.approx(before[name]["tia_bq_s"], rel=1e-9)
        assert after[name]["recovery_coefficient"] == pytest.approx(
            after[name]["tia_uncorrected_bq_s"] / after[name]["tia_bq_s"], rel=1e-12)
        # the voxel map follows the corrected region (the voxel TIAs are fitted on scaled maps)
        assert float(st.tia[st.masks[name]].sum()) == pytest.approx(after[name]["tia_bq_s"], rel=0.03)
        for u in ("u_recovery", "u_volume", "u_tia_fit"):
            assert np.isfinite(after[name][u]) and after[name][u] >= 0, (name, u)
        assert after[name]["u_total"] >= max(after[name]["u_recovery"], after[name]["u_volume"])
    # the total activity is conserved by the correction (what a region gains, its neighbours lose)
    for k in range(len(st.timepoints)):
        assert float(st.activity[k].sum()) == pytest.approx(float(plain.activity[k].sum()), rel=1e-9)
    assert "tia_uncorrected_bq_s" in st.region_columns and "u_total" in st.region_columns


@pytest.mark.parametrize("table,words", [
    ("[recovery]\npsf_fwhm_mm = 0\n", "recovery.psf_fwhm_mm"),
    ("[recovery]\npsf_fwhm_mm = 500\n", "recovery.psf_fwhm_mm"),
    ("[recovery]\npsf_fwhm_mm = \"ten\"\n", "recovery.psf_fwhm_mm"),
    ("[recovery]\n", "psf_fwhm_mm and sphere_phantom both given or both missing"),
    ("[recovery]\npsf_fwhm_mm = 10\nexclude = \"liver\"\n", "recovery.exclude"),
    ("[recovery]\npsf_fwhm_mm = 10\npsf_fwhm_uncertainty_pct = 80\n", "psf_fwhm_uncertainty_pct"),
    ("[recovery]\npsf_fwhm_mm = 10\nwidth = 3\n", "recovery.width"),
])
def test_recovery_bad_keys(demo_study, table, words):
    from rptdose.errors import InputError

    path = _with_recovery(demo_study[1], table, "bad.toml")
    with pytest.raises(InputError, match=words) as err:
        read_study_file(path)
    assert str(path) in str(err.value)


def test_study_chain_reaches_the_source(study_file, tmp_path):
    """study.chain is passed to the Source the loader builds (Lu-177 has no daughters: 'parent'
    and 'equilibrium' hold the same emissions; what matters here is that the choice arrives)."""
    text = study_file.read_text().replace("[study]\n", '[study]\nchain = "parent"\n', 1)
    assert 'chain = "parent"' in text
    path = study_file.parent / "parent.toml"
    path.write_text(text)
    st = load_study(path)
    assert st.source.decay_chain.mode == "parent"
