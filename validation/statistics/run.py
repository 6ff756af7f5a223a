"""Energy balance, statistical behaviour and reproducibility of the transport.

Usage (from the repository root):  python validation/statistics/run.py [--quick]

Checks (each its own pass/fail line in out/summary.txt):
1. Energy balance per run: |emitted - (deposited + escaped)| / emitted <= 1e-6 for sources that
   exercise every path (Lu-177 in water, Y-90 across air/lung/soft tissue/bone interfaces,
   208 keV photons and 1 MeV electrons that leave the grid, local electron deposition).
2. 1/sqrt(N): the relative uncertainty falls as N^-1/2. Lu-177 uniform in a 2 cm cube in water,
   N = 1e4 .. 3e6 (--quick: 1e4 .. 3e5), 100 batches; the median per-voxel batch uncertainty in
   the source cube and the source cube's mean-dose uncertainty, slope of log(sigma) vs log(N) fitted by least
   squares. Target: slope = -0.50 +- 0.05.
3. Two seeds agree within their errors: the same problem with seeds 1 and 2 (or --seeds A B; 100 batches, so the
   batch variance estimates have ~99 degrees of freedom), z = (D1 - D2)/sqrt(s1^2 + s2^2) over
   the voxels with rel. uncertainty < 5 % in both runs; chi2 = sum z^2 with n degrees of freedom,
   p-value from the chi-square distribution. Caveat: neighbouring voxels are correlated (one
   electron deposits in several), which widens the chi2 distribution; the mean and spread of z
   are printed as well. Target: p > 0.01, |mean z| < 0.1, 0.9 < sd z < 1.1.
4. Same seed, 1 thread and 2 threads: dose and uncertainty arrays bit-identical.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import common  # noqa: E402


def water_with_cube(n=40, spacing=2.0, cube=10):
    import rptdose as rd

    ph = rd.Phantom.water(shape=(n, n, n), spacing_mm=(spacing,) * 3)
    decays = np.zeros(ph.shape)
    lo, hi = n // 2 - cube // 2, n // 2 + cube // 2
    decays[lo:hi, lo:hi, lo:hi] = 1.0
    return ph, decays, (slice(lo, hi),) * 3


def heterogeneous(n=48, spacing=2.0):
    """Slabs along z: air | lung | soft tissue | cortical bone | soft tissue, activity in the
    soft tissue next to lung and bone."""
    import rptdose as rd

    mats = ["air", "lung", "soft_tissue", "cortical_bone"]
    rho = {0: 0.0012, 1: 0.26, 2: 1.03, 3: 1.85}
    m = np.full((n, n, n), 2, np.int32)
    m[: n // 6] = 0
    m[n // 6: n // 3] = 1
    m[2 * n // 3: 5 * n // 6] = 3
    d = np.vectorize(rho.get)(m).astype(np.float32)
    ph = rd.Phantom.from_arrays(d, m, mats, spacing_mm=(spacing,) * 3)
    decays = np.zeros(ph.shape)
    decays[n // 3: 2 * n // 3, n // 4: 3 * n // 4, n // 4: 3 * n // 4] = 1.0
    return ph, decays


def digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, nargs=2, default=(1, 2), metavar=("A", "B"),
                    help="the two seeds of check 3 (default 1 2)")
    args = ap.parse_args()
    plt = common.setup_matplotlib()
    import rptdose as rd
    from scipy import stats

    out = common.out_dir(HERE)
    summ = common.Summary("statistics: energy balance, 1/sqrt(N), seeds, threads")
    rows_eb = {k: [] for k in ("run", "histories", "emitted_mev_per_decay", "deposited_mev_per_decay",
                               "escaped_mev_per_decay", "rel_imbalance")}

    # ---- 1. energy balance ----------------------------------------------------------------
    summ.add("1. Energy balance per run (MeV per decay; target |imbalance| <= 1e-6 of emitted)")
    ph_w, dec_w, cube = water_with_cube()
    ph_h, dec_h = heterogeneous()
    edge = np.zeros(ph_w.shape)
    edge[20, 20, 1] = 1.0  # 2 mm from the x = 0 face: 1 MeV electrons (range 4.4 mm) escape
    n_eb = 20_000 if args.quick else 200_000
    runs = [
        ("Lu-177 in water, 2 cm source cube", ph_w, rd.Source("Lu-177", dec_w), True),
        ("Y-90 in air/lung/soft tissue/bone slabs", ph_h, rd.Source("Y-90", dec_h), True),
        ("Lu-177 in slabs, local electron deposition", ph_h, rd.Source("Lu-177", dec_h), False),
        ("208.37 keV photons in an 8 cm water cube", ph_w, rd.Source.monoenergetic("photon", 0.20837, dec_w), True),
        ("1 MeV electrons 2 mm from the grid face", ph_w, rd.Source.monoenergetic("electron", 1.0, edge), True),
    ]
    worst = 0.0
    for name, ph, src, et in runs:
        res = common.run_simulation(ph, src, n_eb, seed=7, electron_transport=et)
        eb = res.energy_balance
        imb = (eb["emitted_mev"] - eb["deposited_mev"] - eb["escaped_mev"]) / eb["emitted_mev"]
        worst = max(worst, abs(imb))
        for k, v in (("run", name), ("histories", n_eb), ("emitted_mev_per_decay", eb["emitted_mev"]),
                     ("deposited_mev_per_decay", eb["deposited_mev"]), ("escaped_mev_per_decay", eb["escaped_mev"]),
                     ("rel_imbalance", imb)):
            rows_eb[k].append(v)
        summ.add(f"   {name}: emitted {eb['emitted_mev']:.6f}, deposited {eb['deposited_mev']:.6f}, escaped "
                 f"{eb['escaped_mev']:.6f}, imbalance {imb:.2e}")
        # the dose map must hold the deposited energy too
        e_map = common.energy_per_decay_mev(res, ph, src.total_decays).sum()
        summ.add(f"      energy in the dose map {e_map:.6f} MeV/decay ({(e_map / eb['deposited_mev'] - 1):.1e} rel. to "
                 "'deposited')")
    summ.check("energy balance", worst <= 1e-6, f"worst |imbalance| {worst:.2e} over {len(runs)} runs")
    common.write_csv(out / "energy_balance.csv", ["Energy balance per run (MeV per decay), rptdose energy_balance"],
                     rows_eb, fmt="{:.10g}")

    # ---- 2. 1/sqrt(N) ---------------------------------------------------------------------
    summ.add("")
    summ.add("2. Relative uncertainty vs histories (Lu-177, 2 cm cube in water, 2 mm voxels, 100 batches)")
    ns = [10_000, 30_000, 100_000, 300_000] if args.quick else [10_000, 30_000, 100_000, 300_000, 1_000_000,
                                                                3_000_000]
    src = rd.Source("Lu-177", dec_w)
    med, reg = [], []
    for n in ns:
        res = common.run_simulation(ph_w, src, n, seed=11, batches=100, regions={"source": dec_w > 0})
        med.append(float(np.median(res.rel_uncertainty[cube])))
        reg.append(float(res.region_means["source"]["rel_uncertainty"]))
        summ.add(f"   N = {n:>8d}: median voxel rel. uncertainty {100 * med[-1]:.3f} %, source-cube mean "
                 f"{100 * reg[-1]:.4f} %  ({res.elapsed_s:.1f} s)")
    lx = np.log(ns)
    slope_v, icpt_v = np.polyfit(lx, np.log(med), 1)
    slope_r, icpt_r = np.polyfit(lx, np.log(reg), 1)
    summ.check("1/sqrt(N), median voxel uncertainty", abs(slope_v + 0.5) <= 0.05, f"slope {slope_v:.3f}")
    summ.check("1/sqrt(N), region-mean uncertainty", abs(slope_r + 0.5) <= 0.05,
               f"slope {slope_r:.3f} (one batch estimate per N: ~7 % scatter per point from 99 d.o.f.)")
    common.write_csv(out / "uncertainty_vs_n.csv", ["Lu-177 2 cm cube in water; relative 1-sigma (batch method)",
                                                     f"fitted slopes: voxel median {slope_v:.4f}, region {slope_r:.4f}"],
                     {"histories": ns, "median_voxel_rel_unc": med, "region_mean_rel_unc": reg})

    # ---- 3. two seeds ---------------------------------------------------------------------
    summ.add("")
    n2 = 1_000_000 if args.quick else 10_000_000
    sa, sb = args.seeds
    summ.add(f"3. Two seeds, {sa} and {sb} (Lu-177, same phantom, {n2} histories each, 100 batches)")
    r1 = common.run_simulation(ph_w, src, n2, seed=sa, batches=100)
    r2 = common.run_simulation(ph_w, src, n2, seed=sb, batches=100)
    d1, d2 = r1.dose_gy, r2.dose_gy
    s1, s2 = d1 * r1.rel_uncertainty, d2 * r2.rel_uncertainty
    use = (r1.rel_uncertainty < 0.05) & (r2.rel_uncertainty < 0.05) & (d1 > 0) & (d2 > 0)
    z = (d1[use] - d2[use]) / np.sqrt(s1[use] ** 2 + s2[use] ** 2)
    chi2 = float(np.sum(z ** 2))
    dof = int(z.size)
    p = float(stats.chi2.sf(chi2, dof))
    ks = stats.kstest(z, "norm")
    summ.add(f"   {dof} voxels with rel. uncertainty < 5 % in both: chi2/dof = {chi2 / dof:.4f}, p = {p:.3g}; "
             f"z mean {z.mean():+.4f}, sd {z.std(ddof=1):.4f}; KS vs N(0,1): D = {ks.statistic:.4f}, p = {ks.pvalue:.3g}")
    ok = p > 0.01 and abs(z.mean()) < 0.1 and 0.9 < z.std(ddof=1) < 1.1
    summ.check("two seeds agree within their errors", ok, f"chi2 p-value {p:.3g}")

    # ---- 4. threads -----------------------------------------------------------------------
    summ.add("")
    summ.add("4. Same seed, 1 and 2 threads (bit-identical arrays expected)")
    n4 = 50_000 if args.quick else 300_000
    ident = True
    for name, ph, s_, et in runs[:2]:
        a = common.run_simulation(ph, s_, n4, seed=3, threads=1, electron_transport=et)
        b = common.run_simulation(ph, s_, n4, seed=3, threads=2, electron_transport=et)
        same = (np.array_equal(a.dose_gy, b.dose_gy) and np.array_equal(a.rel_uncertainty, b.rel_uncertainty)
                and a.energy_balance == b.energy_balance)
        ident &= same
        summ.add(f"   {name}: dose sha256 {digest(a.dose_gy)} (1 thread) vs {digest(b.dose_gy)} (2 threads), "
                 f"threads used {a.provenance.get('threads_used')} / {b.provenance.get('threads_used')}; "
                 f"{'identical' if same else 'DIFFERENT'} ({a.elapsed_s:.1f} s vs {b.elapsed_s:.1f} s)")
    summ.check("1 vs 2 threads bit-identical", ident)

    # ---- plot -----------------------------------------------------------------------------
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    ax[0].loglog(ns, med, "ko", label="median voxel")
    ax[0].loglog(ns, reg, "bs", label="source-cube mean")
    nn = np.array([ns[0], ns[-1]], float)
    ax[0].loglog(nn, np.exp(icpt_v) * nn ** slope_v, "k-", lw=0.8, label=f"fit slope {slope_v:.3f}")
    ax[0].loglog(nn, np.exp(icpt_r) * nn ** slope_r, "b-", lw=0.8, label=f"fit slope {slope_r:.3f}")
    ax[0].set_xlabel("histories N")
    ax[0].set_ylabel("relative 1-sigma uncertainty")
    ax[0].legend(fontsize=8)
    ax[0].set_title("uncertainty vs N (Lu-177 in water)")
    xs = np.linspace(-5, 5, 200)
    ax[1].hist(z, bins=60, range=(-5, 5), density=True, color="0.7", label=f"z, {dof} voxels")
    ax[1].plot(xs, stats.norm.pdf(xs), "r-", label="N(0, 1)")
    ax[1].set_xlabel("z = (D1 - D2) / sqrt(s1^2 + s2^2)")
    ax[1].set_title(f"seed 1 vs seed 2: chi2/dof {chi2 / dof:.3f}, p {p:.2g}")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "statistics.png", dpi=110)
    summ.add("")
    summ.add("Files: out/energy_balance.csv, out/uncertainty_vs_n.csv, out/statistics.png")
    summ.write(out / "summary.txt")
    return 0 if summ.passed else 1


if __name__ == "__main__":
    sys.exit(main())
