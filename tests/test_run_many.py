"""`rptdose run-many` (rptdose.cli_many, rptdose.report.many) and the scheduler / checkpoint plumbing
of `rptdose run` (rptdose.pipeline.run_study -> rptdose.simulate).

The studies are the demo patient at 16 mm voxels (a test-sized grid, as in tests/test_run.py) with
the sensitivity typed in, no recovery correction and 2000 histories: about a second per run.
The plumbing tests replace simulate() by a spy that records the scheduler and checkpoint keywords
it is given and calls the real simulate without them (no cluster needed); the end-to-end tests at
the bottom run them for real: a checkpointed `rptdose run` resumed, and run-many on a local Dask
cluster, both equal to the plain runs bit for bit.
"""

import csv
import importlib
import json
import shutil
from pathlib import Path

import pytest

from rptdose.cli import main
from rptdose.cli_many import SUMMARY_COLUMNS, study_names
from rptdose.errors import InputError
from rptdose.pipeline import run_study, timepoint_checkpoint

HISTORIES = 2000
#: the module (rptdose.transport's `simulate` attribute is the function of the same name)
simulate_module = importlib.import_module("rptdose.transport.simulate")


@pytest.fixture(scope="module")
def demo_study(tmp_path_factory):
    from rptdose.demo import DemoPatient, write_demo_study

    root = tmp_path_factory.mktemp("demo")
    return write_demo_study(root / "Patient A", DemoPatient(voxel_mm=16.0), histories=HISTORIES,
                            calibration="sensitivity", recovery=False)


@pytest.fixture(scope="module")
def loaded(demo_study):
    import rptdose as rd

    return rd.load_study(demo_study)


def copy_demo(demo_study, folder: Path) -> Path:
    shutil.copytree(demo_study.parent, folder)
    return folder / "study.toml"


def broken_study(demo_study, folder: Path) -> Path:
    """A study file whose first time point names a folder that does not exist."""
    folder.mkdir(parents=True)
    text = demo_study.read_text()
    assert 'spect = "tp1/spect.dcm"' in text
    (folder / "study.toml").write_text(text.replace('spect = "tp1/spect.dcm"', 'spect = "missing/spect.dcm"'))
    return folder / "study.toml"


@pytest.fixture
def spy(monkeypatch):
    """simulate() replaced: each call's scheduler/checkpoint keywords recorded (only those given),
    then the real simulate run without them."""
    calls = []
    real = simulate_module.simulate

    def wrapper(*args, **kwargs):
        calls.append({k: kwargs.pop(k) for k in ("scheduler", "checkpoint") if k in kwargs})
        return real(*args, **kwargs)

    monkeypatch.setattr(simulate_module, "simulate", wrapper)
    return calls


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ---- run-many ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def many(demo_study, tmp_path_factory):
    """Two good studies and a broken one in one command."""
    import io
    from contextlib import redirect_stdout

    root = tmp_path_factory.mktemp("many")
    b = copy_demo(demo_study, root / "patient-b")
    bad = broken_study(demo_study, root / "broken")
    out = root / "out"
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(["run-many", str(demo_study), str(b), str(bad), "-o", str(out), "--no-plots"])
    return {"rc": rc, "out": out, "stdout": buf.getvalue(), "studies": [demo_study, b, bad]}


def test_run_many_one_broken_study(many):
    out = many["out"]
    assert many["rc"] == 1
    lines = many["stdout"].strip().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("rptdose run-many: [1/3] Patient_A: ok (mc, 2000 histories")
    assert lines[1].startswith("rptdose run-many: [2/3] patient-b: ok")
    assert lines[2].startswith("rptdose run-many: [3/3] broken: FAILED") and "missing" in lines[2]
    assert "2 of 3 studies done, 1 failed (broken); summary:" in lines[3]
    for name in ("Patient_A", "patient-b"):             # each good study: the outputs of rptdose run
        for f in ("report.html", "regions.json", "dose.h5", "manifest.json"):
            assert (out / name / f).is_file(), (name, f)
    assert not (out / "broken").exists()
    err = (out / "broken.error.txt").read_text()
    assert "InputError" in err and "missing" in err and "Traceback (most recent call last)" in err
    assert not [p for p in out.rglob(".*")], "temporary files left behind"


def test_run_many_summary_files(many):
    out = many["out"]
    rows = read_csv(out / "summary.csv")
    assert tuple(rows[0]) == SUMMARY_COLUMNS
    for name in ("Patient_A", "patient-b"):       # one row per region, the run's own numbers
        regions = json.loads((out / name / "regions.json").read_text())["regions"]
        mine = [r for r in rows if r["patient"] == name]
        assert [r["region"] for r in mine] == [r["name"] for r in regions]
        for r, ref in zip(mine, regions):
            assert r["status"] == "ok" and r["report"] == f"{name}/report.html"
            assert float(r["mean_dose_gy"]) == pytest.approx(ref["mean_dose_gy"], rel=1e-7)
            assert float(r["mean_dose_rel_uncertainty"]) == pytest.approx(ref["mean_dose_rel_uncertainty"], rel=1e-7)
            assert float(r["mean_dose_uncertainty_gy"]) == pytest.approx(
                ref["mean_dose_gy"] * ref["mean_dose_rel_uncertainty"], rel=1e-6)
            assert float(r["u_total_gy"]) == pytest.approx(ref["mean_dose_gy"] * ref["u_total"], rel=1e-6)
            assert float(r["mass_g"]) == pytest.approx(ref["mass_g"], rel=1e-7)
    failed = [r for r in rows if r["patient"] == "broken"]
    assert len(failed) == 1 and failed[0]["status"] == "failed" and failed[0]["region"] == ""
    assert "InputError" in failed[0]["error"] and "missing" in failed[0]["error"]

    doc = json.loads((out / "summary.json").read_text())
    assert doc["format"] == "rptdose-run-many" and doc["format_version"] == 1
    assert (doc["studies_total"], doc["studies_failed"]) == (3, 1)
    st = {s["patient"]: s for s in doc["studies"]}
    assert st["Patient_A"]["status"] == "ok" and st["Patient_A"]["histories"] == HISTORIES
    assert st["broken"]["error_type"] == "InputError" and st["broken"]["error_file"] == "broken.error.txt"

    html = (out / "summary.html").read_text()
    assert 'href="Patient_A/report.html"' in html and 'href="patient-b/report.html"' in html
    assert 'href="broken.error.txt"' in html and "does not exist" in html
    assert "&plusmn;" in html and "<img" not in html          # --no-plots: no figure
    assert "http://" not in html and "https://" not in html and "<script" not in html   # self-contained


def test_run_many_unexpected_error_then_rerun(demo_study, tmp_path, monkeypatch, capsys):
    """An unexpected exception in one study is reported with its traceback and the others go on;
    run again once it is gone, every study passes (exit 0) and the old error file is removed."""
    import rptdose.pipeline as pipeline

    a = copy_demo(demo_study, tmp_path / "a")
    b = copy_demo(demo_study, tmp_path / "b")
    real = pipeline.run_study

    def flaky(study, outdir, **kw):
        if Path(study).parent.name == "a":
            raise RuntimeError("something unforeseen")
        return real(study, outdir, **kw)

    monkeypatch.setattr(pipeline, "run_study", flaky)
    out = tmp_path / "out"
    assert main(["run-many", str(a), str(b), "-o", str(out), "--no-plots", "--method", "ldm"]) == 1
    text = capsys.readouterr().out
    assert "a: FAILED" in text and "RuntimeError: something unforeseen" in text and "b: ok (ldm" in text
    err = (out / "a.error.txt").read_text()
    assert "unexpected error" in err and "RuntimeError" in err and "flaky" in err
    monkeypatch.setattr(pipeline, "run_study", real)
    assert main(["run-many", str(a), str(b), "-o", str(out), "--no-plots", "--method", "ldm"]) == 0
    assert not (out / "a.error.txt").exists()
    assert (out / "a" / "report.html").is_file() and (out / "b" / "report.html").is_file()
    doc = json.loads((out / "summary.json").read_text())
    assert doc["studies_failed"] == 0 and {s["method"] for s in doc["studies"]} == {"ldm"}
    assert "2 of 2 studies done; summary:" in capsys.readouterr().out


def test_run_many_forwards_scheduler_and_overrides(demo_study, tmp_path, spy):
    out = tmp_path / "out"
    assert main(["run-many", str(demo_study), "-o", str(out), "--no-plots", "--scheduler", "local:2",
                 "--histories", "1000", "--seed", "9"]) == 0
    # one local cluster started for all the studies: each run is given its client
    assert len(spy) == 1 and type(spy[0]["scheduler"]).__name__ == "Client"
    doc = json.loads((out / "summary.json").read_text())
    s = doc["studies"][0]
    assert (s["histories"], s["seed"]) == (1000, 9)
    assert s["scheduler"].startswith("tcp://127.0.0.1:")  # the local cluster's scheduler
    assert doc["settings"]["scheduler"] == "local:2"


@pytest.mark.parametrize("args, words", [
    (["{missing}"], ["nope.toml", "does not exist"]),
    (["{study}", "{study}"], ["given twice"]),
    (["{study}", "--scheduler", "local:0"], ["--scheduler 'local:0'", "expected \"local:N\""]),
    (["{study}", "--scheduler", "http://h:1"], ["--scheduler", "tcp://"]),
    (["{study}", "--histories", "0"], ["--histories 0"]),
])
def test_run_many_bad_command_line_exit_2(demo_study, tmp_path, capsys, spy, args, words):
    """Bad input found before any study runs: exit 2, one line on stderr, nothing run or written."""
    argv = [a.format(missing=tmp_path / "nope.toml", study=demo_study) for a in args]
    rc = main(["run-many", *argv, "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for w in words:
        assert w in err
    assert spy == [] and not (tmp_path / "out").exists()


def test_study_names():
    names = study_names([Path("/d/p01/study.toml"), Path("/e/p01/study.toml"), Path("/f/P01/x.toml"),
                         Path("/g/pat ient#3/study.toml"), Path("/h/summary.csv/study.toml"),
                         Path("/i/../j/k/study.toml"), Path("/k/a.error.txt/s.toml")])
    assert names == ["p01", "p01_2", "P01_3", "pat_ient_3", "summary.csv_2", "k", "a.error.txt_2"]
    assert len({n.lower() for n in names}) == len(names)


def test_summary_page_and_figure():
    """The page from a made-up summary: the regions x studies table (u_total, else the statistical
    uncertainty, marked), failures, escaped names, links; the figure (log axis over 3 decades)."""
    from rptdose.report.many import summary_figure_png, summary_html

    def row(region, mean, rel, tot):
        return {"region": region, "kind": "organ", "mean_dose_gy": mean, "mean_dose_rel_uncertainty": rel,
                "mean_dose_uncertainty_gy": mean * rel, "u_total": tot,
                "u_total_gy": None if tot is None else mean * tot, "mass_g": 100.0}

    ok = {"status": "ok", "method": "mc", "histories": 10, "seed": 1, "backend": "cpu", "scheduler": "tcp://h:1",
          "warnings": [], "elapsed_s": 1.0}
    doc = {"rptdose_version": "x", "created": "now", "settings": {"scheduler": "tcp://h:1", "plots": True},
           "studies": [
               {**ok, "patient": "p<1>", "study_file": "a/study.toml", "report": "p<1>/report.html",
                "regions": [row("liver", 3.0, 0.01, 0.1), row("tumour", 300.0, 0.02, None)]},
               {**ok, "patient": "p2", "study_file": "b/study.toml", "report": "p2/report.html",
                "regions": [row("liver", 2.0, 0.01, 0.2), row("field_of_view", 0.5, 0.01, 0.1)]},
               {"status": "failed", "patient": "p3", "study_file": "c/study.toml", "elapsed_s": 0.1,
                "error": "InputError: study 'c' <bad>", "error_file": "p3.error.txt"}]}
    png = summary_figure_png(doc)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    html = summary_html(doc, png)
    assert "p&lt;1&gt;" in html and "<1>" not in html and 'href="p%3C1%3E/report.html"' in html
    assert "3 &plusmn; 0.3</td>" in html and "300 &plusmn; 6*</td>" in html and "the statistical uncertainty alone" in html
    assert "InputError: study &#x27;c&#x27; &lt;bad&gt;" in html and 'href="p3.error.txt"' in html
    assert "data:image/png;base64," in html and "scheduler tcp://h:1" in html
    assert summary_figure_png({"studies": [doc["studies"][2]]}) is None   # nothing to plot


# ---- rptdose run: scheduler and checkpoint ------------------------------------------------------

def test_run_study_passes_scheduler_and_checkpoint(loaded, tmp_path, spy):
    ckpt = tmp_path / "ck" / "run.h5"
    out = run_study(loaded, tmp_path / "o", scheduler="local:2", checkpoint=ckpt, plots=False, progress=False)
    assert spy == [{"scheduler": "local:2", "checkpoint": ckpt}]
    dp = out.provenance["dose"]
    assert dp["scheduler"] == "local:2" and dp["checkpoint"] == str(ckpt)
    assert "Dask, local:2" in (tmp_path / "o" / "report.html").read_text()
    # neither given: simulate() is called without them (it works before it has them)
    spy.clear()
    out = run_study(loaded, tmp_path / "o2", plots=False, progress=False)
    assert spy == [{}]
    assert out.provenance["dose"]["scheduler"] is None and out.provenance["dose"]["checkpoint"] is None


def test_dose_rate_checkpoint_per_timepoint(loaded, tmp_path, spy):
    ckpt = tmp_path / "run.h5"
    out = run_study(loaded, tmp_path / "o", dose_rate=True, scheduler="tcp://127.0.0.1:8786", checkpoint=ckpt,
                    plots=False, progress=False)
    expected = [tmp_path / f"run_tp{k}.h5" for k in range(1, 5)]
    assert spy == [{"scheduler": "tcp://127.0.0.1:8786", "checkpoint": p} for p in expected]
    assert out.provenance["dose"]["checkpoint"] == [str(p) for p in expected]
    assert timepoint_checkpoint("a/ckpt", 0) == Path("a/ckpt_tp1")


def test_scheduler_from_study_file_and_cli_override(demo_study, tmp_path, spy, capsys):
    f = copy_demo(demo_study, tmp_path / "s")
    f.write_text(f.read_text().replace("[dose]\n", '[dose]\nscheduler = "tcp://127.0.0.1:8786"\n'))
    out = run_study(f, tmp_path / "o1", plots=False, progress=False)
    assert spy == [{"scheduler": "tcp://127.0.0.1:8786"}]
    assert out.provenance["dose"]["scheduler"] == "tcp://127.0.0.1:8786"
    spy.clear()
    capsys.readouterr()
    ckpt = tmp_path / "c.h5"
    assert main(["run", str(f), "-o", str(tmp_path / "o2"), "--no-plots", "--scheduler", "local:3",
                 "--checkpoint", str(ckpt)]) == 0
    assert spy == [{"scheduler": "local:3", "checkpoint": ckpt}]
    assert "scheduler local:3" in capsys.readouterr().out.splitlines()[0]
    # a bad --scheduler: exit 2 before any work
    spy.clear()
    assert main(["run", str(f), "-o", str(tmp_path / "o3"), "--scheduler", "local"]) == 2
    assert "--scheduler 'local'" in capsys.readouterr().err and spy == []


def test_fast_methods_and_checkpoint(loaded, tmp_path, spy):
    """The fast methods run in-process: a scheduler is not used (recorded as none), a checkpoint
    is refused; a checkpoint that is a folder is refused before any work."""
    out = run_study(loaded, tmp_path / "o", method="ldm", scheduler="local:2", plots=False, progress=False)
    assert spy == [] and out.provenance["dose"]["scheduler"] is None
    with pytest.raises(InputError, match=r"checkpoint .*method 'ldm'.*expected a checkpoint only with method mc"):
        run_study(loaded, tmp_path / "o2", method="ldm", checkpoint=tmp_path / "c.h5", plots=False)
    with pytest.raises(InputError, match=r"checkpoint .*is a folder"):
        run_study(loaded, tmp_path / "o3", checkpoint=tmp_path, plots=False)
    with pytest.raises(InputError, match=r"scheduler 'udp://h:1'.*expected \"local:N\""):
        run_study(loaded, tmp_path / "o4", scheduler="udp://h:1", plots=False)
    assert spy == []


# ---- end to end, no spy ----------------------------------------------------------------------------

def _dose(folder: Path):
    import h5py

    with h5py.File(folder / "dose.h5", "r") as f:
        return f["dose_gy"][...], f["rel_uncertainty"][...]


def test_run_with_checkpoint_equals_plain_run_and_resumes(demo_study, tmp_path, capsys):
    """`rptdose run --checkpoint`: the same dose as without; run again, every batch comes from the file."""
    import numpy as np

    pytest.importorskip("h5py")
    assert main(["run", str(demo_study), "-o", str(tmp_path / "plain"), "--no-plots"]) == 0
    ckpt = tmp_path / "ck.h5"
    assert main(["run", str(demo_study), "-o", str(tmp_path / "a"), "--no-plots", "--checkpoint", str(ckpt)]) == 0
    assert main(["run", str(demo_study), "-o", str(tmp_path / "b"), "--no-plots", "--checkpoint", str(ckpt)]) == 0
    plain, a, b = _dose(tmp_path / "plain"), _dose(tmp_path / "a"), _dose(tmp_path / "b")
    for x, y in ((plain, a), (plain, b)):
        assert np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1])
    import h5py

    with h5py.File(tmp_path / "b" / "dose.h5", "r") as f:
        batched = json.loads(f.attrs["provenance"])["dose"]["provenance"]["batched"]
    assert batched["checkpoint"] == str(ckpt) and batched["resumed_from_batch"] == 10


def test_run_many_on_a_local_dask_cluster_equals_in_process(demo_study, tmp_path, many):
    """run-many --scheduler local:2: one cluster for all the studies; the same region doses bit for bit."""
    pytest.importorskip("distributed")
    b = copy_demo(demo_study, tmp_path / "patient-b")
    out = tmp_path / "out"
    assert main(["run-many", str(demo_study), str(b), "-o", str(out), "--no-plots", "--scheduler", "local:2"]) == 0
    for name in ("Patient_A", "patient-b"):
        ours = json.loads((out / name / "regions.json").read_text())["regions"]
        ref = json.loads((many["out"] / name / "regions.json").read_text())["regions"]
        assert [r["mean_dose_gy"] for r in ours] == [r["mean_dose_gy"] for r in ref]
        assert [r["name"] for r in ours] == [r["name"] for r in ref]
