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
