"""What `rptdose run` says about its dose method (rptdose.cli_run._summary and the summary of
report.html, rptdose.report.html.method_facts): Monte Carlo shows histories, seed, backend and a
statistical column; the fast methods show what applies to them (vsv: the kernel and where it came
from; sphere: the absorbed-fraction table; ldm: no transport) and no "0 histories, seed 0,
backend method:ldm" or a column of 0.00 where the method has no Monte Carlo uncertainty.

The vsv and sphere provenance comes from real calls on a tiny water phantom with small kernels
(fractions of a second); the end-to-end case runs `rptdose run --method ldm` on the synthetic
study of tests/_synthetic_dicom.py."""

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import rptdose as rd
from rptdose.cli_run import _summary
from rptdose.pipeline import DoseEstimate
from rptdose.report.html import method_facts


def _estimate(method, res=None, histories=0, seed=0, backend=None):
    """A DoseEstimate as rptdose.pipeline._dose_of makes it for a fast method result ``res``."""
    if method == "mc":
        return DoseEstimate("mc", np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), {}, backend or "cpu", histories, seed, 10,
                            1.0, {}, {"method": "mc"})
    seed = int(res.provenance.get("seed") or 0)
    return DoseEstimate(method, np.asarray(res.dose_gy), res.rel_uncertainty, res.region_means, f"method:{method}", 0,
                        seed, 0, res.elapsed_s, {}, res.provenance)


@pytest.fixture(scope="module")
def fast_results():
    from rptdose.fast import local_deposition, sphere_dose, vsv_dose

    ph = rd.Phantom.water(shape=(8, 8, 8), spacing_mm=(4.0, 4.0, 4.0))
    d = np.zeros(ph.shape)
    d[3:5, 3:5, 3:5] = 1e9
    src = rd.Source("Lu-177", d)
    regions = {"hot": d > 0}
    vsv = vsv_dose(ph, src, histories=2000, half_width=2, seed=7, use_cache=False, regions=regions, threads=1)
    return {"ldm": local_deposition(ph, src, regions=regions), "vsv": vsv,
            "sphere": sphere_dose(ph, src, regions=regions, masses_g=(1.0, 10.0), histories=500, seed=5,
                                  use_cache=False, threads=1)}


def _outcome(dose, rel):
    study = SimpleNamespace(name="s", nuclide="Lu-177", administered_activity_bq=7.4e9, timepoints=[1, 2, 3])
    rows = [{"name": "kidney", "kind": "kidney", "mean_dose_gy": 3.0, "mean_dose_rel_uncertainty": rel,
             "d2_gy": 4.0, "d98_gy": 2.0, "t_eff_h": 50.0},
            {"name": "empty", "kind": "organ", "mean_dose_gy": 0.0, "mean_dose_rel_uncertainty": float("nan"),
             "d2_gy": 0.0, "d98_gy": 0.0, "t_eff_h": None}]
    return SimpleNamespace(study=study, dose=dose, regions=rows, warnings=[], outputs={"report": Path("r.html")},
                           timings_s={"load_study": 1.0, "dose": 1.0, "outputs": 1.0}, report=Path("r.html"))


def _lines(capsys, dose, rel):
    _summary(_outcome(dose, rel), Path("out"))
    return capsys.readouterr().out.splitlines()


def test_mc_summary_keeps_histories_seed_backend(capsys):
    lines = _lines(capsys, _estimate("mc", histories=200000, seed=3, backend="cpu"), 0.0123)
    assert lines[0].endswith("method mc, 200000 histories, seed 3, backend cpu")
    assert "Monte Carlo statistical" in lines[1]
    assert "+- stat (%)" in lines[2]
    assert "1.23" in lines[3]
    assert lines[4].split()[3] == "-"                  # a region without an uncertainty: '-', not nan


def test_ldm_summary_has_no_histories_seed_backend_or_stat_column(capsys, fast_results):
    dose = _estimate("ldm", fast_results["ldm"])
    lines = _lines(capsys, dose, 0.0)
    text = "\n".join(lines)
    assert "histories" not in text and "seed" not in text and "method:ldm" not in text and "backend" not in text
    assert "method ldm; transport: none" in lines[0]
    assert lines[1] == "  statistical uncertainty: none (deterministic)"
    assert "+-" not in lines[2] and "stat" not in lines[2]
    assert "0.00" not in lines[3]
    assert lines[2].split() == ["region", "kind", "mean", "(Gy)", "D2", "(Gy)", "D98", "(Gy)", "T_eff", "(h)"]


def test_vsv_summary_names_the_kernel(capsys, fast_results):
    res = fast_results["vsv"]
    dose = _estimate("vsv", res)
    facts = dict(method_facts(dose))
    assert facts["kernel"] == ("Lu-177 voxel S-values, 4x4x4 mm voxels in water, rptdose Monte Carlo: 2000 histories, "
                               "seed 7")
    assert facts["kernel file"] == "computed in this run, not cached"
    rel = res.region_means["hot"]["rel_uncertainty"]
    lines = _lines(capsys, dose, rel)
    assert "method vsv; kernel: Lu-177 voxel S-values" in lines[0] and "method:vsv" not in lines[0]
    assert not re.search(r"\b0 histories|seed 0\b", lines[0])
    assert "kernel's Monte Carlo noise" in lines[1] and "+- kernel (%)" in lines[2]
    assert f"{100 * rel:.2f}" in lines[3]


def test_vsv_kernel_file_is_named(fast_results):
    res = fast_results["vsv"]
    prov = dict(res.provenance, settings=dict(res.provenance["settings"], kernel_file="/cache/k.h5"))
    dose = _estimate("vsv", SimpleNamespace(provenance=prov, dose_gy=res.dose_gy, rel_uncertainty=None,
                                            region_means={}, elapsed_s=0.0))
    assert dict(method_facts(dose))["kernel file"] == "/cache/k.h5"


def test_sphere_summary_names_the_table(capsys, fast_results):
    res = fast_results["sphere"]
    dose = _estimate("sphere", res)
    facts = dict(method_facts(dose))
    assert "500 histories per sphere and component, seed 5" in facts["absorbed fractions"]
    lines = _lines(capsys, dose, res.region_means["hot"]["rel_uncertainty"])
    assert "method sphere; absorbed fractions: Lu-177 spheres" in lines[0]
    assert "+- AF (%)" in lines[2]


def test_run_ldm_end_to_end(tmp_path, capsys):
    """`rptdose run --method ldm` on the synthetic study: the printed summary and report.html say
    what applies to local deposition."""
    import _synthetic_dicom as S
    from rptdose.cli import main

    study_file = S.write_sensitivity_study(tmp_path / "study", shifts={})
    out = tmp_path / "out"
    assert main(["run", str(study_file), "-o", str(out), "--method", "ldm", "--no-plots"]) == 0
    text = capsys.readouterr().out
    first = text.splitlines()[0]
    assert "method ldm" in first and not re.search(r"\b0 histories|seed 0\b", first)
    assert "method:ldm" not in text and "+- stat" not in text
    assert "statistical uncertainty: none (deterministic)" in text
    page = (out / "report.html").read_text()
    summary = page[:page.index("<h2>Warnings</h2>")]
    assert ">histories<" not in summary and ">seed<" not in summary and "method:ldm" not in summary
    assert "none (deterministic)" in summary and ">transport<" in summary
