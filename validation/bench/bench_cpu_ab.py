"""Before/after throughput of two builds of the CPU backend, run alternately.

Case (a) of bench_cpu.py (Lu-177 uniform in a 128^3 water cube of 4.8 mm voxels), 1 thread,
full electron transport and local deposition, the core's own clock, after a warm-up run. It
uses only the public API, so the same script runs under any rptdose build: install the two
builds in two environments and alternate them (the machine's drift then falls on both):

    for i in 1 2 3; do /path/to/old/venv/bin/python validation/bench/bench_cpu_ab.py old
                       python validation/bench/bench_cpu_ab.py new; done

Prints: label, decays/s with full transport, decays/s with local deposition.
"""
import sys

import numpy as np

import rptdose as rd


def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else "this build"
    ph = rd.Phantom.water(shape=(128,) * 3, spacing_mm=(4.8,) * 3)
    src = rd.Source("Lu-177", np.ones(ph.shape))
    rates = []
    for et, n in ((True, 1_500_000), (False, 4_000_000)):
        rd.simulate(ph, src, histories=200_000, backend="cpu", threads=1, progress=False, electron_transport=et)
        r = rd.simulate(ph, src, histories=n, seed=5, backend="cpu", threads=1, progress=False,
                        electron_transport=et)
        rates.append(n / r.provenance["timing_s"]["transport"])
    print(label, " ".join(f"{x:.4g}" for x in rates))


if __name__ == "__main__":
    main()
