"""Regenerate data/icrp107_progeny.csv: every nuclide of the ICRP-107 data set of the PyPI package
``radioactivedecay`` (Malins & Lemoine, Comput Phys Commun 2022), with its half-life (s, "inf"
for stable) and its progeny with branching fractions, one row per (nuclide, daughter); a nuclide
without progeny has one row with the daughter empty. Numbers are written with repr(), so they
read back bit for bit.

    pip install radioactivedecay && python data/make_progeny_table.py            # write
    python data/make_progeny_table.py --check                                     # compare only

rptdose reads the table (rptdose.physics.chains); radioactivedecay is needed only here.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "icrp107_progeny.csv"


def rows() -> tuple[str, list[list[str]]]:
    import radioactivedecay as rd

    data = rd.DEFAULTDATA
    out = []
    for name in data.nuclides:
        nuc = rd.Nuclide(name)
        hl = float(nuc.half_life("s"))
        pairs = [] if not math.isfinite(hl) else [(str(d), float(b)) for d, b in
                                                  zip(nuc.progeny(), nuc.branching_fractions()) if float(b) > 0.0]
        if not pairs:
            out.append([name, repr(hl), "", ""])
        out += [[name, repr(hl), d, repr(b)] for d, b in pairs]
    return f"radioactivedecay {rd.__version__} data set {data.dataset_name}", out


def text() -> str:
    source, body = rows()
    buf = io.StringIO()
    buf.write(f"# ICRP-107 progeny and half-lives, from {source}; made by data/make_progeny_table.py\n")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["nuclide", "half_life_s", "daughter", "branching_fraction"])
    w.writerows(body)
    return buf.getvalue()


if __name__ == "__main__":
    new = text()
    if "--check" in sys.argv[1:]:
        ok = OUT.read_text(encoding="utf-8") == new
        print("OK" if ok else f"{OUT} differs from radioactivedecay's data: rerun without --check")
        sys.exit(0 if ok else 1)
    OUT.write_text(new, encoding="utf-8")
    print(f"wrote {OUT} ({new.count(chr(10)) - 2} rows)")
