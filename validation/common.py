"""Shared helpers of the validation cases (validation/<case>/run.py).

Each case is one command that writes, into ``validation/<case>/out/``, a CSV table of ours vs.
reference with the relative difference, a PNG plot and a ``summary.txt`` (pass/fail against the
case's stated target, the exact command, run time). Reference tables live in the case folder as
CSV files whose ``#`` header names the paper, the table or figure and the units.

Conventions (as in rptdose): arrays [z, y, x]; spacing (x, y, z) in mm; energies in MeV.
"""
from __future__ import annotations

import csv
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

#: The repository root (validation/..).
ROOT = Path(__file__).resolve().parents[1]


def _ensure_rptdose() -> None:
    """Work around a stale editable install.

    An editable install made before python/rptdose/__init__.py existed maps ``rptdose`` as a
    namespace package (its hook only knows the files present at install time), so
    ``import rptdose`` then yields a module without the public names. Re-running
    ``pip install -e .`` fixes it for good; until then, execute the package's __init__ in that
    namespace module (whose __path__ already spans the source tree and the compiled module).
    """
    import importlib

    import rptdose

    if hasattr(rptdose, "simulate") or not (ROOT / "python" / "rptdose" / "__init__.py").is_file():
        return
    extra = [p for p in getattr(rptdose, "__path__", []) if Path(p).resolve() != (ROOT / "python" / "rptdose")]
    for name in [m for m in sys.modules if m == "rptdose" or m.startswith("rptdose.")]:
        del sys.modules[name]
    # plain path-based import of the source tree, the compiled _core found via __path__
    sys.meta_path[:] = [f for f in sys.meta_path if "ScikitBuildRedirectingFinder" not in type(f).__name__]
    sys.path.insert(0, str(ROOT / "python"))
    rd = importlib.import_module("rptdose")
    rd.__path__.extend(extra)


_ensure_rptdose()
#: eV per J and J per MeV (SI 2019, exact).
EV_PER_J = 1.0 / 1.602176634e-19
J_PER_MEV = 1.602176634e-13


# ---------------------------------------------------------------------------------------------
# files and folders
# ---------------------------------------------------------------------------------------------
def out_dir(case_dir: str | os.PathLike) -> Path:
    """``<case_dir>/out`` (created)."""
    p = Path(case_dir) / "out"
    p.mkdir(parents=True, exist_ok=True)
    return p


def shared_dir() -> Path | None:
    """The project's ``shared/`` folder (reference data, real patient data) or None when absent.

    Looked up as $RPTDOSE_SHARED, <repo>/shared, <repo>/../shared (the layout of the project's
    machines), in that order.
    """
    cands = []
    if os.environ.get("RPTDOSE_SHARED"):
        cands.append(Path(os.environ["RPTDOSE_SHARED"]))
    cands += [ROOT / "shared", ROOT.parent / "shared"]
    for c in cands:
        if c.is_dir():
            return c
    return None


def command_line() -> str:
    """The command that is running, relative to the repository root when possible."""
    argv = list(sys.argv)
    try:
        argv[0] = str(Path(argv[0]).resolve().relative_to(ROOT))
    except ValueError:
        pass
    return "python " + " ".join(shlex.quote(a) for a in argv)


def reference_csv(name: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """A shipped reference table, data/reference/<name> (source and units in its header; see
    data/README.md), read with :func:`read_csv`."""
    from rptdose._data import data_path

    return read_csv(data_path(f"reference/{name}"))


def read_csv(path: str | os.PathLike) -> tuple[list[str], dict[str, np.ndarray]]:
    """Read a CSV with ``#`` comment lines (returned) then a header row; numeric columns as
    float arrays, the others as arrays of str."""
    comments, rows = [], []
    with open(path, newline="") as f:
        for line in f:
            if line.startswith("#"):
                comments.append(line[1:].strip())
            elif line.strip():
                rows.append(line)
    reader = csv.reader(rows)
    header = next(reader)
    data = list(reader)
    cols: dict[str, np.ndarray] = {}
    for i, name in enumerate(header):
        vals = [r[i] for r in data]
        try:
            cols[name] = np.array([float(v) for v in vals])
        except ValueError:
            cols[name] = np.array(vals)
    return comments, cols


def write_csv(path: str | os.PathLike, comments: Iterable[str], columns: dict[str, Sequence[Any]],
              fmt: str = "{:.6g}") -> None:
    """Write ``# comment`` lines, a header and the columns (equal lengths)."""
    names = list(columns)
    n = len(next(iter(columns.values()))) if columns else 0
    with open(path, "w", newline="") as f:
        for c in comments:
            f.write(f"# {c}\n")
        w = csv.writer(f)
        w.writerow(names)
        for i in range(n):
            row = []
            for k in names:
                v = columns[k][i]
                if isinstance(v, (float, np.floating)):
                    row.append("" if not np.isfinite(v) else fmt.format(float(v)))
                else:
                    row.append(str(v))
            w.writerow(row)


class Summary:
    """Collects the lines of ``summary.txt`` and the overall verdict."""

    def __init__(self, title: str):
        self.title = title
        self.lines: list[str] = []
        self.checks: list[tuple[str, bool]] = []
        self.t0 = time.perf_counter()

    def add(self, line: str = "") -> None:
        self.lines.append(line)
        print(line, flush=True)

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        self.checks.append((name, bool(passed)))
        self.add(f"[{'PASS' if passed else 'FAIL'}] {name}" + (f": {detail}" if detail else ""))
        return bool(passed)

    @property
    def passed(self) -> bool:
        return all(p for _, p in self.checks) and bool(self.checks)

    def write(self, path: str | os.PathLike, extra_header: Iterable[str] = ()) -> None:
        import rptdose as rd

        elapsed = time.perf_counter() - self.t0
        head = [self.title, "=" * len(self.title), "",
                f"Verdict: {'PASS' if self.passed else 'FAIL'} "
                f"({sum(p for _, p in self.checks)}/{len(self.checks)} checks passed)",
                f"Command: {command_line()}  (from the repository root)",
                f"Run time: {elapsed:.0f} s on {os.cpu_count()} CPU(s), {platform.platform()}",
                f"rptdose {rd.__version__}, backends: {available_backends()}", *extra_header, ""]
        with open(path, "w") as f:
            f.write("\n".join(head + self.lines) + "\n")


def available_backends() -> str:
    import rptdose as rd

    try:
        b = rd.backends()
    except Exception as exc:  # pragma: no cover - informative only
        return f"unknown ({exc})"
    if isinstance(b, dict):
        return ", ".join(f"{k}={'yes' if (v.get('available') if isinstance(v, dict) else v) else 'no'}"
                         for k, v in b.items())
    return str(b)


def setup_matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------------------------------------
# physics helpers
# ---------------------------------------------------------------------------------------------
def estar_water_csda_range_cm(energy_mev) -> np.ndarray:
    """NIST ESTAR CSDA range of electrons in liquid water (cm), log-log interpolated in the
    table data/reference/nist_estar_electrons.csv (NIST ESTAR, Berger et al., NISTIR 4999; CSDA
    range in g/cm2, rho = 1). Below 10 keV: power law of the 10-20 keV segment."""
    _, t = reference_csv("nist_estar_electrons.csv")
    water = t["material"] == "water"
    e_kev, r = t["energy_kev"][water], t["csda_range"][water]
    le, lr = np.log(e_kev), np.log(r)
    x = np.log(np.asarray(energy_mev, float) * 1e3)
    y = np.interp(x, le, lr)
    lo = x < le[0]
    slope = (lr[1] - lr[0]) / (le[1] - le[0])
    y = np.where(lo, lr[0] + slope * (x - le[0]), y)
    hi = x > le[-1]
    slope_hi = (lr[-1] - lr[-2]) / (le[-1] - le[-2])
    y = np.where(hi, lr[-1] + slope_hi * (x - le[-1]), y)
    return np.exp(y)


def centred_grid(half_voxels: int) -> tuple[int, int]:
    """Grid size n = 2*half+1 and the index of the central voxel."""
    return 2 * half_voxels + 1, half_voxels


def voxel_radius_mm(shape: Sequence[int], spacing_mm: Sequence[float],
                    centre_index: Sequence[int]) -> np.ndarray:
    """Distance (mm) of each voxel centre [z, y, x] from the centre of voxel ``centre_index``
    ([z, y, x])."""
    sx, sy, sz = spacing_mm
    iz, iy, ix = centre_index
    z = (np.arange(shape[0]) - iz) * sz
    y = (np.arange(shape[1]) - iy) * sy
    x = (np.arange(shape[2]) - ix) * sx
    return np.sqrt(z[:, None, None] ** 2 + y[None, :, None] ** 2 + x[None, None, :] ** 2)


def shell_labels(r_mm: np.ndarray, edges_mm: np.ndarray) -> np.ndarray:
    """Integer label map: k+1 for voxel centres in [edges[k], edges[k+1]), 0 elsewhere."""
    k = np.searchsorted(edges_mm, r_mm, side="right")  # 1..len(edges)-1 inside
    lab = np.where((r_mm >= edges_mm[0]) & (r_mm < edges_mm[-1]), k, 0)
    return lab.astype(np.int32)


def run_simulation(phantom, source, histories: int, seed: int = 1, threads: int | None = None,
                   batches: int = 10, electron_transport: bool = True, regions=None,
                   precision: str = "auto"):
    """rd.simulate with the options the cases use (no progress bar)."""
    import rptdose as rd

    return rd.simulate(phantom, source, histories=int(histories), seed=seed, threads=threads,
                       batches=batches, electron_transport=electron_transport, regions=regions,
                       progress=False, precision=precision)


def energy_per_decay_mev(res, phantom, total_decays: float) -> np.ndarray:
    """Energy deposited per voxel per decay (MeV) from a result's dose (Gy for all decays)."""
    return np.asarray(res.dose_gy) / float(total_decays) * np.asarray(phantom.voxel_mass_kg) / J_PER_MEV


def shell_fit_stats(res, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean dose Gy, relative 1-sigma uncertainty) of regions '1'..'n_bins' (missing: nan)."""
    dose = np.full(n_bins, np.nan)
    rel = np.full(n_bins, np.nan)
    rm = res.region_means or {}
    for k in range(n_bins):
        d = rm.get(str(k + 1))
        if d is not None:
            dose[k] = d["mean_dose_gy"]
            rel[k] = d["rel_uncertainty"]
    return dose, rel


# ---------------------------------------------------------------------------------------------
# gamma index (Low et al., Med Phys 25:656, 1998), brute force with sub-voxel interpolation
# ---------------------------------------------------------------------------------------------
def gamma_index(reference: np.ndarray, evaluated: np.ndarray, spacing_mm: Sequence[float],
                dose_percent: float = 3.0, dta_mm: float = 3.0, threshold_percent: float = 10.0,
                global_norm: bool = True, search_step_mm: float | None = None,
                max_search_mm: float | None = None) -> tuple[np.ndarray, dict]:
    """3D gamma index of ``evaluated`` against ``reference`` (same grid, [z, y, x]).

    For every reference voxel with dose >= threshold_percent % of the reference maximum,
    Gamma = min over displacements d of sqrt(|d|^2/DTA^2 + (De(x+d) - Dr(x))^2 / dD^2), with
    dD = dose_percent % of the reference maximum (global) or of Dr(x) (local). De between voxel
    centres is trilinear; displacements are on a cubic grid of step ``search_step_mm`` (default
    DTA/10) within a sphere of radius ``max_search_mm`` (default 2 DTA: a point farther than
    that has Gamma > 2 from distance alone, and only pass/fail at 1 matters here; Gamma above
    the search radius is reported as > max_search/DTA).

    Returns (gamma array [z, y, x], nan outside the evaluated set; info dict with pass_rate,
    n_evaluated, mean/max gamma).
    """
    from scipy.ndimage import map_coordinates

    ref = np.asarray(reference, float)
    ev = np.asarray(evaluated, float)
    if ref.shape != ev.shape:
        raise ValueError(f"gamma_index: shapes differ {ref.shape} vs {ev.shape}")
    sx, sy, sz = (float(s) for s in spacing_mm)
    step = dta_mm / 10.0 if search_step_mm is None else float(search_step_mm)
    rmax = 2.0 * dta_mm if max_search_mm is None else float(max_search_mm)
    dmax = float(ref.max())
    mask = ref >= threshold_percent / 100.0 * dmax
    idx = np.nonzero(mask)
    dr = ref[idx]
    norm = dose_percent / 100.0 * (dmax if global_norm else np.maximum(dr, 1e-30))
    best = np.full(dr.shape, np.inf)
    # no displacement first (cheap, and bounds the search)
    best = np.minimum(best, ((ev[idx] - dr) / norm) ** 2)
    n = int(np.floor(rmax / step))
    offs = np.arange(-n, n + 1) * step
    dz, dy, dx = np.meshgrid(offs, offs, offs, indexing="ij")
    d2 = dz ** 2 + dy ** 2 + dx ** 2
    sel = (d2 <= rmax ** 2 + 1e-9) & (d2 > 0)
    order = np.argsort(d2[sel])
    dzs, dys, dxs, d2s = dz[sel][order], dy[sel][order], dx[sel][order], d2[sel][order]
    cz, cy, cx = (i.astype(float) for i in idx)
    for ddz, ddy, ddx, dd2 in zip(dzs, dys, dxs, d2s):
        dist_term = dd2 / dta_mm ** 2
        need = best > dist_term
        if not need.any():
            break  # displacements are sorted by length: none can improve any more
        coords = np.vstack([cz[need] + ddz / sz, cy[need] + ddy / sy, cx[need] + ddx / sx])
        val = map_coordinates(ev, coords, order=1, mode="nearest")
        g2 = dist_term + ((val - dr[need]) / (norm if np.isscalar(norm) else norm[need])) ** 2
        sub = best[need]
        best[need] = np.minimum(sub, g2)
    gam = np.sqrt(best)
    out = np.full(ref.shape, np.nan)
    out[idx] = gam
    info = {"pass_rate": float(np.mean(gam <= 1.0)) if gam.size else float("nan"),
            "n_evaluated": int(gam.size), "mean_gamma": float(np.mean(np.minimum(gam, rmax / dta_mm))),
            "max_gamma_capped": float(np.max(np.minimum(gam, rmax / dta_mm))) if gam.size else float("nan"),
            "dose_percent": dose_percent, "dta_mm": dta_mm, "threshold_percent": threshold_percent,
            "global": global_norm, "search_step_mm": step, "max_search_mm": rmax}
    return out, info


def gamma_selftest() -> list[tuple[str, bool, str]]:
    """Known-answer tests of :func:`gamma_index` on an isotropic 3-D Gaussian (sigma 15 mm,
    2 mm grid, 10 % threshold, 3 %/3 mm global):

    1. identical distributions: Gamma = 0 everywhere;
    2. evaluated = reference shifted by 2 mm along x: displacing by the shift gives zero dose
       difference, so Gamma <= 2/3 everywhere (pass rate 100 %), and Gamma > 0 off the peak;
    3. evaluated = reference shifted by 6 mm (2 DTA): for an isotropic profile the best
       displacement is radial, so the exact Gamma of each voxel is a 1-D minimisation along the
       gradient direction; the pass rate is compared with that exact value (within 2 %);
    4. evaluated = 1.10 x reference: exact Gamma by the same 1-D minimisation (the dose
       difference can be traded against a radial displacement), pass rate within 2 %.
    Returns (name, passed, detail) tuples.
    """
    sig, h = 15.0, 2.0
    n = 41
    ax = (np.arange(n) - n // 2) * h
    zz, yy, xx = np.meshgrid(ax, ax, ax, indexing="ij")

    def g3(dx=0.0, scale=1.0):
        return scale * np.exp(-((xx - dx) ** 2 + yy ** 2 + zz ** 2) / (2 * sig ** 2))

    ref = g3()
    res = []
    gam, info = gamma_index(ref, ref, (h, h, h))
    res.append(("identical", bool(np.nanmax(gam) == 0.0), f"max gamma {np.nanmax(gam):.3g}"))
    gam, info = gamma_index(ref, g3(2.0), (h, h, h))
    ok = info["pass_rate"] == 1.0 and np.nanmax(gam) <= 2.0 / 3.0 + 1e-6
    res.append(("2 mm shift", bool(ok), f"pass rate {100 * info['pass_rate']:.2f} %, max gamma "
                f"{np.nanmax(gam):.3f} (bound 0.667)"))

    def exact_pass(evalf):
        """Exact pass fraction for an evaluated distribution that is a function of the position
        vector; minimise over a dense 3-D displacement set restricted to the plane containing
        the shift axis and the voxel (2-D search is exact for the symmetric cases used)."""
        m = ref >= 0.1 * ref.max()
        pts = np.stack([zz[m], yy[m], xx[m]], 1)
        d1 = np.linspace(-6.0, 6.0, 121)
        best = np.full(len(pts), np.inf)
        ryz = np.sqrt(pts[:, 0] ** 2 + pts[:, 1] ** 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            uz = np.where(ryz > 0, pts[:, 0] / ryz, 0.0)
            uy = np.where(ryz > 0, pts[:, 1] / ryz, 1.0)
        dref = np.exp(-(pts ** 2).sum(1) / (2 * sig ** 2))
        for dx in d1:
            for dr in d1:
                if dx * dx + dr * dr > 36.0 + 1e-9:
                    continue
                # displacement in the (x, radial-in-yz) plane of each point
                q = pts + np.stack([dr * uz, dr * uy, np.full(len(pts), dx)], 1)
                val = evalf(q)
                g2 = (dx * dx + dr * dr) / 9.0 + ((val - dref) / 0.03) ** 2
                best = np.minimum(best, g2)
        return float(np.mean(best <= 1.0))

    for name, shift, scale in (("6 mm shift", 6.0, 1.0), ("dose x 1.10", 0.0, 1.10)):
        ev = g3(shift, scale)
        gam, info = gamma_index(ref, ev, (h, h, h), search_step_mm=0.25, max_search_mm=6.0)
        f = lambda q, s=shift, c=scale: c * np.exp(-((q[:, 2] - s) ** 2 + q[:, 1] ** 2 + q[:, 0] ** 2)  # noqa: E731
                                                   / (2 * sig ** 2))
        ex = exact_pass(f)
        ok = abs(info["pass_rate"] - ex) <= 0.02
        res.append((name, bool(ok), f"pass rate {100 * info['pass_rate']:.2f} % vs exact {100 * ex:.2f} %"))
    return res
