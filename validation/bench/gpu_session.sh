#!/usr/bin/env bash
# One session on a GPU machine, run from the repository root:
#
#   bash validation/bench/gpu_session.sh
#
#   1. install:  pip install -q .[test]          (the CUDA backend built for this GPU only)
#   2. tests:    python -m pytest tests/gpu -q   (GPU against CPU, determinism, the wavefront
#                                                 against the history kernel, small queues)
#   3. bench:    validation/bench/bench_gpu.py --cpu   (the water cube and the demo patient;
#                given what the budget leaves less ~2 minutes for the profiles, --quick when
#                that is under 4 minutes)
#   4. profile:  Nsight Compute, where ncu is found, on a 64^3 water cube: the first launch of
#                rpt_wave_decay_kernel, rpt_wave_electron_kernel and rpt_wave_photon_kernel
#                (a default-capacity wavefront run), and of rpt_histories_kernel
#                (gpu_transport="history"): achieved and theoretical occupancy, threads active
#                per instruction (smsp__thread_inst_executed_per_inst_executed.ratio, of 32),
#                SM and memory throughput, duration, registers
#   then a summary (also written to summary.txt).
#
# Output folder: $OUT if set, else validation/bench/out. It receives session.log (everything
# printed), bench_gpu.json, ncu_wave.ncu-rep / .csv, ncu_history.ncu-rep / .csv and summary.txt:
# seven files; the demo patient's cache goes to a temporary folder.
#
# Time: every step runs under `timeout`, within a budget for the whole script
# (SESSION_BUDGET_S, default 480 s: ~8 minutes on an H200); a step that would not fit is skipped
# and the summary says so. A failing step does not stop the later ones; the exit status is 1
# when any step failed, timed out or was skipped. Expected on an H200: install 1-3 min (CUDA for
# the one architecture), tests < 1 min, bench 2-4 min, profiles ~1 min.
#
# Settings (environment): PYTHON (default python3), SESSION_BUDGET_S, PRECISION of the profiled
# runs (double), BENCH_ARGS (default "--cpu"), CUDAARCHS (default: the GPU's own, from
# nvidia-smi), NCU (the ncu binary), WHEELS (a folder of wheels, default .whl).
#
# Without network (a machine that reaches no package index): pip then installs with
# --no-index --no-build-isolation from what the machine has plus the wheels in $WHEELS, which
# must hold rptdose's dependencies missing there (e.g. SimpleITK, pydicom, xraylib,
# icrp107-database, platformdirs, and for [test] pymedphys, radioactivedecay, dask and theirs).
# If that install fails, rptdose alone is installed (--no-deps), and the steps after it report
# what is missing.
set -euo pipefail

ROOT=$(pwd)
if [[ ! -f pyproject.toml || ! -d tests/gpu ]]; then
  echo "gpu_session.sh: run it from the repository root (no pyproject.toml / tests/gpu in $ROOT)" >&2
  exit 2
fi
OUTDIR=${OUT:-$ROOT/validation/bench/out}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
PY=${PYTHON:-python3}
BUDGET=${SESSION_BUDGET_S:-480}
PRECISION=${PRECISION:-double}
BENCH_ARGS=${BENCH_ARGS:---cpu}
WHEELS=${WHEELS:-$ROOT/.whl}
CACHE=$(mktemp -d "${TMPDIR:-/tmp}/rptdose-session.XXXXXX")
trap 'rm -rf "$CACHE"' EXIT
LOG=$OUTDIR/session.log
SUMMARY=$OUTDIR/summary.txt
export PYTHONUNBUFFERED=1
: >"$LOG"
declare -a STEPS=()
FAILED=0

log() { echo "[$(date +%H:%M:%S) +${SECONDS}s] $*" | tee -a "$LOG"; }

# step NAME MAX_SECONDS CMD...: CMD under timeout (at most MAX_SECONDS, at most what the budget
# leaves less a reserve for the summary), its output into the log; records its status.
step() {
  local name=$1 max=$2 left limit rc t0
  shift 2
  left=$((BUDGET - SECONDS - 15))
  limit=$((max < left ? max : left))
  if ((limit < 20)); then
    log "== $name: skipped (${left}s of the ${BUDGET}s budget left)"
    STEPS+=("$name: skipped (budget)")
    FAILED=1
    return 0
  fi
  local cmd="$*"
  cmd=${cmd//$'\n'/ }
  log "== $name (timeout ${limit}s): ${cmd:0:200}"
  t0=$SECONDS
  set +e
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  set -e
  if ((rc == 0)); then
    STEPS+=("$name: ok ($((SECONDS - t0)) s)")
  elif ((rc == 124 || rc == 137)); then
    STEPS+=("$name: TIMED OUT after $((SECONDS - t0)) s")
    FAILED=1
  else
    STEPS+=("$name: FAILED (exit $rc, $((SECONDS - t0)) s)")
    FAILED=1
  fi
  log "== $name: ${STEPS[-1]#*: }"
  return 0
}

log "rptdose GPU session in $ROOT, output $OUTDIR, budget ${BUDGET}s"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 || true; } | tee -a "$LOG"
{ "$PY" --version; command -v nvcc && nvcc --version | tail -n 2; } 2>&1 | tee -a "$LOG" || true

# ---- 1. install -----------------------------------------------------------------------------
if [[ -z ${CUDAARCHS:-} ]]; then
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .' || true)
  if [[ $cap =~ ^[0-9]+$ ]]; then
    export CUDAARCHS="${cap}-real"
  fi
fi
export RPTDOSE_CUDA=${RPTDOSE_CUDA:-ON}   # a missing nvcc is an error, not a CPU-only build
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
log "build: RPTDOSE_CUDA=$RPTDOSE_CUDA CUDAARCHS=${CUDAARCHS:-default} jobs=$CMAKE_BUILD_PARALLEL_LEVEL"
PIP=("$PY" -m pip install -q --disable-pip-version-check)
if ! timeout 8 "$PY" -c "import urllib.request; urllib.request.urlopen('https://pypi.org/simple/pip/', timeout=5)" \
    >/dev/null 2>&1; then
  log "no package index reachable: installing offline (--no-index --no-build-isolation${WHEELS:+, wheels from $WHEELS})"
  PIP+=(--no-index --no-build-isolation)
  if [[ -d $WHEELS ]]; then
    PIP+=(--find-links "$WHEELS")
  fi
fi
step "install" 300 "${PIP[@]}" ".[test]"
if [[ ${STEPS[-1]} != "install: ok"* ]]; then
  step "install (rptdose alone, --no-deps)" 300 "${PIP[@]}" --no-deps .
fi
"$PY" -c "import rptdose, rptdose._core_cuda as c; print('rptdose', rptdose.__version__, 'cuda', c.device_status())" \
  2>&1 | tee -a "$LOG" || true

# ---- 2. tests -------------------------------------------------------------------------------
# (the installed package is the one imported: the sources lie under python/, not on sys.path)
step "pytest tests/gpu" 180 "$PY" -m pytest tests/gpu -q -p no:cacheprovider

# ---- 3. benchmark ---------------------------------------------------------------------------
NCU=${NCU:-$(command -v ncu || true)}
if [[ -z $NCU ]]; then
  for c in /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu; do
    if [[ -x $c ]]; then NCU=$c; break; fi
  done
fi
# what is left for the benchmark, keeping ~2 minutes for the profiles; --quick below 4 minutes
# (bench_gpu.py writes its JSON after every point, so a run cut short keeps what it measured)
reserve=0
if [[ -n $NCU ]]; then reserve=120; fi
left=$((BUDGET - SECONDS - 15 - reserve))
read -r -a bench_args <<<"$BENCH_ARGS"
if ((left < 240)) && [[ " $BENCH_ARGS " != *" --quick "* ]]; then
  bench_args+=(--quick)
  log "bench: ${left}s left for it, adding --quick"
fi
step "bench_gpu.py ${bench_args[*]}" $((left < 300 ? left : 300)) "$PY" "$ROOT/validation/bench/bench_gpu.py" \
  "${bench_args[@]}" --out "$OUTDIR" --cache "$CACHE"

# ---- 4. Nsight Compute ----------------------------------------------------------------------
PROFILE_PY=$(cat <<'EOF'
import sys
import numpy as np
from rptdose.physics.nuclides import load_nuclide
from rptdose.physics.tables import transport_tables
from rptdose.transport import gpu_runners
from rptdose.transport.request import RunRequest

transport, precision = sys.argv[1], sys.argv[2]
n = 64
req = RunRequest(density=np.ones((n, n, n), np.float32), material=np.zeros((n, n, n), np.int32),
                 spacing_mm=(4.8, 4.8, 4.8), decays=np.ones((n, n, n)), tables=transport_tables(["water"]),
                 emissions=load_nuclide("Lu-177").emission_arrays(), histories=4_000_000, seed=1, batches=10,
                 precision=precision, gpu_transport=transport)
res = gpu_runners.run_cuda(req)
print(transport, precision, res["elapsed_s"], "s", res["launch"])
EOF
)
METRICS=sm__warps_active.avg.pct_of_peak_sustained_active,sm__maximum_warps_per_active_cycle_pct,\
smsp__thread_inst_executed_per_inst_executed.ratio,sm__throughput.avg.pct_of_peak_sustained_elapsed,\
gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed,dram__throughput.avg.pct_of_peak_sustained_elapsed,\
gpu__time_duration.sum,launch__registers_per_thread,launch__grid_size,launch__block_size,\
launch__occupancy_limit_registers
suffix=""
if [[ $PRECISION == single ]]; then suffix="_f32"; fi

# profile NAME TRANSPORT REGEX COUNT: the first COUNT launches of the kernels matching REGEX
profile() {
  local name=$1 transport=$2 regex=$3 count=$4
  rm -f "$OUTDIR/$name.ncu-rep" "$OUTDIR/$name.csv"
  step "ncu $name" 150 "$NCU" --target-processes all --clock-control none -k "regex:$regex" -c "$count" \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    --metrics "$METRICS" -f -o "$OUTDIR/$name" "$PY" -c "$PROFILE_PY" "$transport" "$PRECISION"
  if [[ ! -s $OUTDIR/$name.ncu-rep && ${STEPS[-1]} != *skipped* && ${STEPS[-1]} != *"TIMED OUT"* ]]; then
    log "ncu $name: no report; again with the sections alone"
    step "ncu $name (sections only)" 150 "$NCU" --target-processes all --clock-control none -k "regex:$regex" \
      -c "$count" --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      -f -o "$OUTDIR/$name" "$PY" -c "$PROFILE_PY" "$transport" "$PRECISION"
  fi
  if [[ -s $OUTDIR/$name.ncu-rep ]]; then
    "$NCU" --import "$OUTDIR/$name.ncu-rep" --csv --page raw >"$OUTDIR/$name.csv" 2>>"$LOG" || true
  fi
}

if [[ -n $NCU ]]; then
  log "ncu: $NCU ($("$NCU" --version 2>/dev/null | tail -n 1))"
  # the first round of the first chunk: one decay, electron and photon launch, in that order
  profile ncu_wave wavefront "^rpt_wave_(decay|electron|photon)_kernel${suffix}\$" 3
  profile ncu_history history "^rpt_histories_kernel${suffix}\$" 1
else
  log "ncu: not found (PATH, /usr/local/cuda/bin, /opt/nvidia/nsight-compute): no profile"
  STEPS+=("ncu: not found, skipped")
fi

# ---- summary --------------------------------------------------------------------------------
{
  echo "rptdose GPU session, $(date -u +%Y-%m-%dT%H:%M:%SZ), ${SECONDS}s of ${BUDGET}s, output $OUTDIR"
  { nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"; } | head -n 1
  echo "steps:"
  for s in "${STEPS[@]}"; do echo "  $s"; done
  echo "tests:"
  { grep -E "^[0-9]+ (passed|failed|skipped)|^(FAILED|ERROR) |(passed|failed|error|skipped).* in [0-9.]+s" "$LOG" || echo "  (no pytest summary)"; } | sed 's/^/  /' | tail -n 20
  echo "bench (bench_gpu.json):"
  { grep -E "decays/s|^wavefront |not run|FAILED" "$LOG" | grep -v "^\[" || echo "  (no bench rows)"; } | sed 's/^/  /' | cut -c1-220
  echo "ncu (first launch of each kernel, $PRECISION):"
  "$PY" - "$OUTDIR" <<'EOF' || echo "  (no ncu figures)"
import csv, os, sys

out = sys.argv[1]
cols = [("gpu__time_duration.sum", "time"), ("sm__warps_active.avg.pct_of_peak_sustained_active", "occ %"),
        ("sm__maximum_warps_per_active_cycle_pct", "theor. occ %"),
        ("smsp__thread_inst_executed_per_inst_executed.ratio", "threads/inst"),
        ("sm__throughput.avg.pct_of_peak_sustained_elapsed", "SM %"),
        ("gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed", "mem %"),
        ("launch__registers_per_thread", "regs"), ("launch__grid_size", "grid"), ("launch__block_size", "block")]
found = False
print(f"  {'kernel':>24s}  " + "  ".join(f"{label:>12s}" for _, label in cols))
for name in ("ncu_wave", "ncu_history"):
    path = os.path.join(out, name + ".csv")
    if not os.path.exists(path):
        continue
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    head = next((i for i, r in enumerate(rows) if "Kernel Name" in r), None)
    if head is None:
        continue
    h = rows[head]
    units = rows[head + 1] if head + 1 < len(rows) else []
    for r in rows[head + 1:]:
        rec = dict(zip(h, r))
        if not rec.get("Kernel Name"):
            continue
        found = True
        vals = []
        for key, _ in cols:
            v = rec.get(key, "-")
            if key == "gpu__time_duration.sum" and key in h and units:
                v = f"{v} {units[h.index(key)]}"
            vals.append(v)
        kname = rec["Kernel Name"].replace("rpt_", "")[:24]
        print(f"  {kname:>24s}  " + "  ".join(f"{v:>12s}" for v in vals))
if not found:
    print("  (no ncu figures)")
EOF
} 2>&1 | tee "$SUMMARY" | tee -a "$LOG"
exit "$FAILED"
