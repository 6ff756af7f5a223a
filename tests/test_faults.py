"""Outputs that survive faults and hostile conditions (rptdose.io.atomic, rptdose.io.outdir,
rptdose.resources, rptdose._interrupt, the time-sized chunks of the transport drivers).

* a failed write (a full disk: ENOSPC from the OS, or a library that reports success after
  writing a truncated file) raises, and leaves the earlier file and the earlier output folder
  as they were; on a real full tmpfs (when the test may mount one) no crash either;
* an output folder is replaced as a whole: a second run into it fails at once (exit 2, naming the
  other run's pid), leftovers of killed runs are cleaned at the next run, the user's own files in
  it are kept, a manifest lists every file with its SHA-256;
* foreseeable conditions (read-only folder, a file as parent, a grid too large for the memory)
  end with exit code 2 and one line before any work;
* Ctrl-C ends a long simulation within seconds (the process is given 20 s where the run would
  take hours: a functional bound, not a benchmark) with exit code 130, also when a library
  swallowed the KeyboardInterrupt during the writing of the outputs.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import _synthetic_dicom as S
from rptdose.cli import main
from rptdose.errors import InputError, OutputWriteError
from rptdose.io import atomic
from rptdose.io.outdir import MANIFEST_NAME, OutputFolder, verify_manifest

GEO = {"spacing_mm": (2.0, 2.0, 2.0), "origin_mm": (0.0, 0.0, 0.0), "direction": (1, 0, 0, 0, 1, 0, 0, 0, 1)}


@pytest.fixture(scope="module")
def study_file(tmp_path_factory):
    return S.write_sensitivity_study(tmp_path_factory.mktemp("study"), shifts={})


@pytest.fixture(scope="module")
def tia_out(study_file, tmp_path_factory):
    """A good `rptdose tia` result; tests copy it before changing anything."""
    out = tmp_path_factory.mktemp("tia") / "out"
    assert main(["tia", str(study_file), "-o", str(out), "--no-plots"]) == 0
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---- the one checked writer -------------------------------------------------------------------

def test_image_writer_that_truncates_silently_is_caught(tmp_path, monkeypatch):
    """ITK's NIfTI writer on a full disk prints 'NWAD: wrote only 0 of ... bytes' and returns: the
    read-back finds it, the earlier file stays."""
    path = tmp_path / "tia.nii.gz"
    good = np.random.default_rng(1).random((6, 5, 4))
    good[0, 0, 0] = np.nan                     # NaN survives the read-back check (ITK reads it as 0)
    atomic.write_image(path, good, GEO)
    before = path.read_bytes()
    real = sitk.WriteImage

    def truncating(image, name, *args, **kwargs):
        real(image, name, *args, **kwargs)
        data = Path(name).read_bytes()
        Path(name).write_bytes(data[: len(data) // 2])

    monkeypatch.setattr(sitk, "WriteImage", truncating)
    with pytest.raises(OutputWriteError, match="tia.nii.gz"):
        atomic.write_image(path, good * 2, GEO)
    assert path.read_bytes() == before and hidden(tmp_path) == []


def test_enospc_from_the_disk_keeps_the_earlier_file(tmp_path, monkeypatch):
    import h5py

    from rptdose.io.hdf5 import atomic_h5

    text, h5 = tmp_path / "regions.csv", tmp_path / "tia.h5"
    atomic.write_text(text, "a,b\n1,2\n")
    with atomic_h5(h5) as f:
        f.create_dataset("x", data=np.arange(10))
    before = snapshot(tmp_path)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputWriteError) as info:
        atomic.write_text(text, "a,b\n3,4\n")
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert "regions.csv" in str(info.value) and "No space left" in str(info.value)
    with pytest.raises(OutputWriteError, match="tia.h5"):
        with atomic_h5(h5) as f:
            f.create_dataset("x", data=np.arange(1000))
    monkeypatch.undo()
    assert snapshot(tmp_path) == before and hidden(tmp_path) == []
    with h5py.File(h5) as f:
        assert f["x"].shape == (10,)


def test_failed_write_in_tia_keeps_the_earlier_output_folder(tia_out, study_file, tmp_path, monkeypatch, capsys):
    out = copy_tree(tia_out, tmp_path / "out")
    before = snapshot(out)
    real = sitk.WriteImage

    def full_disk(image, name, *args, **kwargs):
        if "uncertainty" in str(name):
            Path(name).write_bytes(b"")     # 'wrote only 0 of ... bytes', and no error
            return None
        return real(image, name, *args, **kwargs)

    monkeypatch.setattr(sitk, "WriteImage", full_disk)
    assert main(["tia", str(study_file), "-o", str(out), "--no-plots"]) == 1
    err = capsys.readouterr().err
    assert "tia_rel_uncertainty.nii.gz" in err and "as it was before this run" in err and "Traceback" not in err
    assert snapshot(out) == before
    assert verify_manifest(out) == {"missing": [], "changed": [], "unlisted": []}
    assert hidden(tmp_path) == []                      # no staging folder, no lock file


def _mount_tmpfs(where: Path, size: str, ro: bool = False) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    opts = f"{'ro,' if ro else ''}size={size}"
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def _umount(where: Path) -> None:
    subprocess.run(["umount", str(where)], capture_output=True, timeout=20)


def test_full_tmpfs_no_crash_earlier_result_untouched(study_file, tmp_path):
    """The issue's reproduction on a real file system: rptdose tia into a small tmpfs, fill it,
    run again: exit 2 before any work (the grid's output estimate); with the checks off the
    writes meet ENOSPC: exit 1, no SIGSEGV, the earlier result as it was."""
    mnt = tmp_path / "mnt"
    if not _mount_tmpfs(mnt, "8m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        out = mnt / "out"
        cmd = [sys.executable, "-m", "rptdose.cli", "tia", str(study_file), "-o", str(out), "--no-plots"]
        assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0
        before = snapshot(out)
        import shutil

        with open(mnt / "fill", "wb") as fh:
            fh.write(b"\0" * (shutil.disk_usage(mnt).free - 60 * 1024))
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, r.stderr
        assert "free" in r.stderr and "Traceback" not in r.stderr
        env = dict(os.environ, RPTDOSE_NO_RESOURCE_CHECK="1")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 1, (r.returncode, r.stderr)       # not -11 (SIGSEGV)
        assert "No space left on device" in r.stderr or "reads back" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        assert snapshot(out) == before
        assert sorted(p.name for p in mnt.iterdir()) == ["fill", "out"]
    finally:
        _umount(mnt)


# ---- the output folder as one unit ---------------------------------------------------------------

def test_leftovers_of_killed_runs_are_cleaned(tia_out, study_file, tmp_path, capsys):
    out = copy_tree(tia_out, tmp_path / "out")
    stale = tmp_path / ".out.staging-20260101T000000-dead"
    stale.mkdir()
    (stale / "tia.nii.gz").write_bytes(b"half")
    (out / ".tia.tmp-0badf00d.nii.gz").write_bytes(b"half")
    (out / "my_notes.txt").write_text("mine")          # the user's own file: kept
    assert main(["tia", str(study_file), "-o", str(out), "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert "interrupted run" in err and "my_notes.txt" in err
    assert hidden(tmp_path) == [] and hidden(out) == []
    assert (out / "my_notes.txt").read_text() == "mine"
    assert verify_manifest(out) == {"missing": [], "changed": [], "unlisted": ["my_notes.txt"]}
    doc = json.loads((out / MANIFEST_NAME).read_text())
    assert doc["command"] == "tia" and {f["path"] for f in doc["files"]} >= {"tia.nii.gz", "tia.h5", "regions.csv"}


def test_folder_moved_aside_by_a_killed_swap_is_restored(tia_out, tmp_path):
    out = tmp_path / "out"
    aside = copy_tree(tia_out, tmp_path / ".out.previous-20260101T000000-dead")
    before = snapshot(aside)
    with OutputFolder(out, command="tia") as tx:
        assert any("restored" in n for n in tx.notes)
    assert snapshot(out) == before and hidden(tmp_path) == []


def test_existing_folder_that_is_not_an_output_is_refused(study_file, tmp_path, capsys):
    theirs = tmp_path / "documents"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("x")
    assert main(["tia", str(study_file), "-o", str(theirs)]) == 2
    assert "rptdose did not write" in capsys.readouterr().err
    assert sorted(p.name for p in theirs.iterdir()) == ["thesis.tex"]


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, f"{path} did not appear"
        time.sleep(0.05)


def test_second_run_is_refused_and_ctrl_c_ends_the_first(study_file, tmp_path, capsys):
    """Run A (hours of histories) holds the folder: run B fails at once naming it and A's pid;
    SIGINT ends A within seconds with 130; the earlier result is kept, nothing left behind."""
    out = tmp_path / "out"
    assert main(["run", str(study_file), "-o", str(out), "--histories", "2000", "--no-plots"]) == 0
    before = snapshot(out)
    a = subprocess.Popen([sys.executable, "-m", "rptdose.cli", "run", str(study_file), "-o", str(out),
                          "--histories", str(2 * 10**11), "--no-plots"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(tmp_path / ".out.lock", a)
        capsys.readouterr()
        assert main(["run", str(study_file), "-o", str(out), "--histories", "2000", "--no-plots"]) == 2
        err = capsys.readouterr().err
        assert str(out) in err and f"pid {a.pid}" in err and "Traceback" not in err
        time.sleep(3.0)                                   # into the transport (the study loads in ~2 s)
        a.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        _, a_err = a.communicate(timeout=20)
        took = time.monotonic() - t0
    finally:
        if a.poll() is None:
            a.kill()
            a.communicate()
    assert a.returncode == 130, a_err
    assert "interrupted" in a_err and "Traceback" not in a_err
    assert took < 20
    assert snapshot(out) == before and hidden(tmp_path) == []


def test_ctrl_c_ends_a_long_simulation(tmp_path):
    """2e11 histories (days on 2 cores): SIGINT once the transport runs ends it with exit code 130,
    well within 20 s (the core looks for signals between chunks of ~0.2 s)."""
    p = subprocess.Popen([sys.executable, "-m", "rptdose.cli", "example", "-o", str(tmp_path / "ex"),
                          "--histories", str(2 * 10**11)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4.0)                                   # imports, tables, then the transport
        assert p.poll() is None, p.communicate()
        p.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        _, err = p.communicate(timeout=20)
        took = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, err
    assert took < 20
    assert not (tmp_path / "ex" / "example_lu177.h5").exists()


def test_swallowed_ctrl_c_while_writing_exits_130_and_keeps_the_old_output(tia_out, study_file, tmp_path,
                                                                        monkeypatch):
    """A SIGINT whose KeyboardInterrupt a library swallows (as h5py's destructors do) still ends
    the command with 130, and the outputs being written are discarded."""
    import rptdose.quant.outputs as outputs

    out = copy_tree(tia_out, tmp_path / "out")
    before = snapshot(out)
    real = outputs.write_tia_h5

    def swallowing(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)                     # the handler raises KeyboardInterrupt in here ...
        except KeyboardInterrupt:
            pass                                # ... and the 'library' swallows it
        return real(*args, **kwargs)

    monkeypatch.setattr(outputs, "write_tia_h5", swallowing)
    assert main(["tia", str(study_file), "-o", str(out), "--no-plots"]) == 130
    assert snapshot(out) == before and hidden(tmp_path) == []


# ---- foreseeable conditions: exit 2 before any work ------------------------------------------

@pytest.fixture
def no_work(monkeypatch):
    """Loading a study, or transporting, fails the test: the checks must come first."""
    import rptdose.pipeline
    import rptdose.study

    def work(*args, **kwargs):
        raise AssertionError("the work started")

    monkeypatch.setattr(rptdose.study, "load_study", work)
    monkeypatch.setattr(rptdose.pipeline, "_dose_of", work)


def test_file_as_parent_and_read_only_folder(study_file, tmp_path, capsys, no_work):
    f = tmp_path / "file"
    f.write_text("x")
    for cmd in ("run", "tia"):
        assert main([cmd, str(study_file), "-o", str(f / "sub")]) == 2
        err = capsys.readouterr().err
        assert f"'{f}' is a file" in err and "Traceback" not in err
    ro = tmp_path / "ro"
    if os.geteuid() == 0:
        if not _mount_tmpfs(ro, "1m", ro=True):
            pytest.skip("cannot make a read-only folder as root without mounting one")
    else:
        ro.mkdir()
        ro.chmod(0o555)
    try:
        for cmd in ("run", "tia"):
            assert main([cmd, str(study_file), "-o", str(ro / "out")]) == 2
            err = capsys.readouterr().err
            assert str(ro / "out") in err and "expected a writable" in err and "Traceback" not in err
    finally:
        if os.geteuid() == 0:
            _umount(ro)
        else:
            ro.chmod(0o755)


def test_grid_too_large_for_the_memory(study_file, tmp_path, capsys, monkeypatch):
    """dose.grid = 0.1 mm (in the documented range) on the 128 mm synthetic CT: 2.1e9 voxels.
    Refused when the grid is known, before the grid image, the registration or the transport."""
    import rptdose.pipeline
    import rptdose.quant.registration

    def work(*args, **kwargs):
        raise AssertionError("the work started")

    monkeypatch.setattr(rptdose.pipeline, "_dose_of", work)
    monkeypatch.setattr(rptdose.quant.registration, "register_ct", work)
    fine = study_file.parent / "fine.toml"
    fine.write_text(study_file.read_text().replace('grid = "spect"', "grid = 0.1"))
    try:
        out = tmp_path / "out"
        assert main(["run", str(fine), "-o", str(out)]) == 2
    finally:
        fine.unlink()
    err = capsys.readouterr().err
    assert "dose.grid 0.1" in err and "1280 x 1280 x 1280" in err and "GiB of memory" in err
    assert "Traceback" not in err and not out.exists() and hidden(tmp_path) == []


def test_results_larger_than_the_free_disk(study_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(OutputFolder, "free_bytes", lambda self: 2 * 2**20)
    assert main(["tia", str(study_file), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "dose.grid 'spect'" in err and "MiB free" in err and not (tmp_path / "out").exists()


def test_output_folder_api_checks(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="current folder"):
        monkeypatch.chdir(tmp_path)
        OutputFolder(".", command="run")
    with OutputFolder(tmp_path / "a" / "b", command="run") as tx:
        assert tx.staging.is_dir() and tx.staging.parent == tmp_path / "a"
        (tx.staging / "x.txt").write_text("x")
        tx.commit()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b"]
    assert verify_manifest(tmp_path / "a" / "b")["missing"] == []


def test_folder_of_an_older_rptdose_is_replaced_keeping_the_users_files(tmp_path):
    """A folder an older rptdose wrote (no manifest): its outputs go, the user's own files stay."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("dose.h5", "regions.json", "report.html", ".dose.tmp-0badf00d.nii.gz", "my_notes.txt"):
        (out / name).write_text("old")
    with OutputFolder(out, command="run") as tx:
        (tx.staging / "dose.h5").write_text("new")
        tx.commit()
    assert sorted(p.name for p in out.iterdir()) == ["dose.h5", MANIFEST_NAME, "my_notes.txt"]
    assert (out / "dose.h5").read_text() == "new" and (out / "my_notes.txt").read_text() == "old"
    assert hidden(tmp_path) == []
