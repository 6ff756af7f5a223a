"""docs/examples/cluster_recipe.py: the cluster recipe of docs/distributed.md.

The recipe is run as a user runs it (a subprocess, so Dask's spawned workers import it as a
script) with ``--cluster local`` on a small case; the dose it writes and the digest it prints
must equal an in-process ``rd.simulate`` of the same case bit for bit. The SLURM and GPU
branches need dask-jobqueue / dask-cuda: without them the recipe says so and exits; with
dask-jobqueue, the SLURM branch runs end to end through a stand-in ``sbatch`` that starts the
job script on this machine.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rptdose as rd

pytest.importorskip("distributed")

RECIPE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "cluster_recipe.py"
CASE = ["--histories", "20000", "--n", "24", "--seed", "3", "--batches", "10"]


def _recipe():
    spec = importlib.util.spec_from_file_location("cluster_recipe", RECIPE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def in_process():
    recipe = _recipe()
    args = recipe.parse_args(CASE)
    ph, src = recipe.make_case(args)
    return rd.simulate(ph, src, histories=args.histories, seed=args.seed, batches=args.batches, backend="cpu",
                       progress=False)


def _digest(dose: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(dose).tobytes()).hexdigest()


def _run(args: list[str], tmp_path: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RECIPE), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=tmp_path, env=env)


def test_local_cluster_recipe_equals_in_process_run(in_process, tmp_path):
    out = tmp_path / "dose.npy"
    proc = _run(["--cluster", "local", "--workers", "2", *CASE, "--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cluster local: 2 workers" in proc.stdout
    assert "backend dask/cpu" in proc.stdout
    dose = np.load(out)
    assert np.array_equal(dose, in_process.dose_gy)
    [printed] = re.findall(r"dose sha256: ([0-9a-f]{64})", proc.stdout)
    assert printed == _digest(in_process.dose_gy)


def test_missing_cluster_packages_are_named():
    recipe = _recipe()
    for kind, package in (("slurm", "dask_jobqueue"), ("cuda", "dask_cuda")):
        if importlib.util.find_spec(package) is not None:
            continue
        with pytest.raises(SystemExit, match=f"--cluster {kind} needs {package.replace('_', '-')}"):
            recipe.main(["--cluster", kind, *CASE])
    with pytest.raises(SystemExit) as exc:
        recipe.parse_args(["--cluster", "my-cluster"])
    assert exc.value.code == 2


_SBATCH = """#!/bin/bash
# stand-in for SLURM's sbatch: a copy of the job script run here, in its own session
cp "$1" "{folder}/script_$$.sh"
setsid bash "{folder}/script_$$.sh" > "{folder}/job_$$.log" 2>&1 < /dev/null &
echo "Submitted batch job $!"
"""
_SCANCEL = """#!/bin/bash
for j in "$@"; do kill -- -"$j" 2>/dev/null || kill "$j" 2>/dev/null; done
exit 0
"""


def test_slurm_recipe_through_a_stand_in_sbatch(in_process, tmp_path):
    pytest.importorskip("dask_jobqueue")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", _SBATCH.format(folder=bin_dir)), ("scancel", _SCANCEL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    script = _run(["--cluster", "slurm", "--jobs", "2", "--cores", "8", "--memory", "4GB", "--print-job-script"],
                  tmp_path, env)
    assert script.returncode == 0, script.stderr[-3000:]
    assert "#SBATCH --cpus-per-task=8" in script.stdout and "--nthreads 1" in script.stdout
    out = tmp_path / "dose.npy"
    proc = _run(["--cluster", "slurm", "--jobs", "2", "--cores", "1", "--memory", "2GB", "--wait", "60", *CASE,
                 "--out", str(out)], tmp_path, env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert np.array_equal(np.load(out), in_process.dose_gy)
