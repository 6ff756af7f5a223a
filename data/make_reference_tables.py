#!/usr/bin/env python3
"""Make and check the curated reference tables of data/ (see data/README.md).

    python data/make_reference_tables.py            # write the tables, check, write provenance.csv
    python data/make_reference_tables.py --check    # check only (exit status 1 on a mismatch)

Made from the project's shared/reference/ folder (published reference numbers gathered by
others; looked up as --shared, $RPTDOSE_SHARED, <repo>/../shared, <repo>/shared):

  reference/nist_xcom_mu_rho.csv      the rows of shared/reference/nist_xcom_mu_rho.csv, verbatim
  reference/nist_estar_electrons.csv  the rows of shared/reference/nist_estar_electrons.csv,
                                      verbatim, plus s_rad (water) from that file's header line
  reference/icrp107_lu177.csv         the Lu-177 numbers listed in shared/reference/README.md

Checked number by number against shared/reference/ (not rewritten: their layout is rptdose's):

  schneider2000_density.txt           vs schneider2000/Schneider2000DensitiesTable.txt (GATE)
  schneider2000_materials.txt         vs schneider2000/Schneider2000MaterialsTable.txt (GATE)
  reference/ref_nist_water_mu_en.csv  vs nist_xcom_mu_rho.csv (water, mu_en_rho)

Recorded only (transcribed from sources outside shared/, named in each file's header):
reference/ref_ans643_water_gp_buildup.csv, ref_egsnrc_mainegra_hing_2005.csv,
ref_etran_seltzer_1991.csv.

provenance.csv records every file's SHA-256 and the SHA-256 of the shared/ file it was made
from or compared with. ``--check`` (and tests/test_data.py) verify those SHA-256 always, and
the numbers against shared/reference/ where it is present. Standard library only.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import re
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent
ROOT = DATA.parent
PROVENANCE = "provenance.csv"

#: curated file -> its source in shared/reference ("" = outside shared/, see its header)
SOURCES = {
    "reference/nist_xcom_mu_rho.csv": "nist_xcom_mu_rho.csv",
    "reference/nist_estar_electrons.csv": "nist_estar_electrons.csv",
    "reference/icrp107_lu177.csv": "README.md",
    "schneider2000_density.txt": "schneider2000/Schneider2000DensitiesTable.txt",
    "schneider2000_materials.txt": "schneider2000/Schneider2000MaterialsTable.txt",
    "reference/ref_nist_water_mu_en.csv": "nist_xcom_mu_rho.csv",
    "reference/ref_ans643_water_gp_buildup.csv": "",
    "reference/ref_egsnrc_mainegra_hing_2005.csv": "",
    "reference/ref_etran_seltzer_1991.csv": "",
}

XCOM_HEADER = """\
# NIST X-ray mass attenuation coefficients: J.H. Hubbell and S.M. Seltzer, "Tables of X-Ray Mass
#   Attenuation Coefficients and Mass Energy-Absorption Coefficients", NISTIR 5632 (1995),
#   NIST Standard Reference Database 126, https://physics.nist.gov/PhysRefData/XrayMassCoef/ (Table 4).
# Quantities: mu_rho = total mass attenuation coefficient (with coherent scattering; = XCOM total);
#   mu_en_rho = mass energy-absorption coefficient (empty where the source lists none).
# Units: energy_kev keV; mu_rho, mu_en_rho cm2/g.
# Materials: water (liquid); ICRU-44 cortical bone (rho 1.92 g/cm3), soft tissue (1.06), lung.
# Made by data/make_reference_tables.py: the rows of the project's shared/reference/nist_xcom_mu_rho.csv,
#   copied verbatim (SHA-256 of both in data/provenance.csv).
"""

ESTAR_HEADER = """\
# NIST ESTAR electron stopping powers and ranges: M.J. Berger, J.S. Coursey, M.A. Zucker, J. Chang,
#   NIST Standard Reference Database 124, https://physics.nist.gov/PhysRefData/Star/Text/ESTAR.html
#   (method: Berger and Seltzer, NISTIR 4999 / ICRU Report 37). Database version: not recorded in the source file.
# Quantities: s_col = collision stopping power; csda_range = CSDA range; s_rad = radiative stopping
#   power (water at 10, 100, 500 keV only; empty elsewhere).
# Units: energy_kev keV (kinetic); s_col, s_rad MeV cm2/g; csda_range g/cm2 (divide by density for cm).
# Materials: water (liquid, rho 1.00), ICRP soft tissue (rho 1.03), ICRP cortical bone (rho 1.85).
# Made by data/make_reference_tables.py: the rows of the project's shared/reference/nist_estar_electrons.csv
#   verbatim; s_rad from that file's header line "Water radiative stopping power".
"""

ICRP_HEADER = """\
# Lu-177 decay data of ICRP Publication 107: ICRP, "Nuclear Decay Data for Dosimetric Calculations",
#   Ann. ICRP 38(3) (2008), https://www.icrp.org/publication.asp?id=ICRP%20Publication%20107
#   (data files as distributed by the Python package icrp107-database, version not recorded in the source).
# Quantities: mean_energy_<kind> = energy emitted per decay by that radiation kind (electrons =
#   beta + IE (internal conversion) + auger; photons = gamma + X); half_life; beta_endpoint =
#   beta end-point energy; gamma_<E>_energy / _yield = a gamma line's energy and emission probability.
# Units: as in column unit (keV per decay, keV, d, % per decay).
# Made by data/make_reference_tables.py from the numbers listed in the project's shared/reference/README.md.
"""


# ------------------------------------------------------------------------------------- helpers
def shared_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """shared/ (data gathered by others, not part of the project) or None. $RPTDOSE_SHARED, when
    set, is the only place looked at (a folder that does not exist: no shared data)."""
    if explicit is not None:
        return Path(explicit) if Path(explicit).is_dir() else None
    env = os.environ.get("RPTDOSE_SHARED")
    if env:
        return Path(env) if Path(env).is_dir() else None
    for c in (ROOT.parent / "shared", ROOT / "shared"):
        if c.is_dir():
            return c
    return None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def csv_rows(text: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV whose '#' lines are comments."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    rows = list(csv.reader(lines))
    return rows[0], rows[1:]


def write_csv(header_comment: str, columns: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    buf.write(header_comment)
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows(rows)
    return buf.getvalue()


# ------------------------------------------------------------------------------------- makers
def make_xcom(ref: Path) -> str:
    cols, rows = csv_rows((ref / "nist_xcom_mu_rho.csv").read_text())
    if cols != ["material", "energy_kev", "mu_rho", "mu_en_rho"]:
        raise ValueError(f"shared/reference/nist_xcom_mu_rho.csv columns {cols} (changed)")
    return write_csv(XCOM_HEADER, cols, rows)


def make_estar(ref: Path) -> str:
    text = (ref / "nist_estar_electrons.csv").read_text()
    cols, rows = csv_rows(text)
    if cols != ["material", "energy_kev", "s_col", "csda_range"]:
        raise ValueError(f"shared/reference/nist_estar_electrons.csv columns {cols} (changed)")
    line = next((ln for ln in text.splitlines() if "radiative stopping power" in ln.lower()), "")
    rad = {e: v for v, e in re.findall(r"([0-9.]+e[-+]?[0-9]+) at ([0-9]+) keV", line)}
    if not line.lower().lstrip("# ").startswith("water") or len(rad) != 3:
        raise ValueError("shared/reference/nist_estar_electrons.csv: the water radiative stopping power "
                         f"header line (changed): {line!r}")
    out = [r + [rad.pop(r[1], "") if r[0] == "water" else ""] for r in rows]
    if rad:
        raise ValueError(f"radiative stopping powers at energies without a row: {rad}")
    return write_csv(ESTAR_HEADER, cols + ["s_rad"], out)


ICRP_PATTERNS = [  # (regex on the README with whitespace collapsed, [(quantity, unit)] per group)
    (r"electrons ([0-9.]+) keV per decay \(beta mean ([0-9.]+), conversion ([0-9.]+), Auger ([0-9.]+)\)",
     [("mean_energy_electrons", "keV"), ("mean_energy_beta", "keV"), ("mean_energy_IE", "keV"),
      ("mean_energy_auger", "keV")]),
    (r"photons ([0-9.]+) keV per decay \(gamma ([0-9.]+), X-rays ([0-9.]+)\)",
     [("mean_energy_photons", "keV"), ("mean_energy_gamma", "keV"), ("mean_energy_X", "keV")]),
    (r"gamma lines ([0-9.]+) keV \(([0-9.]+) %\), ([0-9.]+) keV \(([0-9.]+) %\)",
     [("gamma_208_energy", "keV"), ("gamma_208_yield", "%"), ("gamma_113_energy", "keV"),
      ("gamma_113_yield", "%")]),
    (r"half-life ([0-9.]+) d", [("half_life", "d")]),
    (r"beta end point ([0-9.]+) keV", [("beta_endpoint", "keV")]),
]


def make_icrp(ref: Path) -> str:
    text = " ".join((ref / "README.md").read_text().split())
    rows = []
    for pattern, names in ICRP_PATTERNS:
        m = re.search(pattern, text)
        if m is None:
            raise ValueError(f"shared/reference/README.md no longer reads /{pattern}/")
        rows += [[q, v, u] for (q, u), v in zip(names, m.groups())]
    return write_csv(ICRP_HEADER, ["quantity", "value", "unit"], rows)


MAKERS = {
    "reference/nist_xcom_mu_rho.csv": make_xcom,
    "reference/nist_estar_electrons.csv": make_estar,
    "reference/icrp107_lu177.csv": make_icrp,
}


# ------------------------------------------------------------------------------------- comparers
def _numbers(text: str) -> list[list[str]]:
    return [ln.split() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(("#", "["))]


def compare_density(ref: Path) -> list[str]:
    ours = [[float(x) for x in r] for r in _numbers((DATA / "schneider2000_density.txt").read_text())]
    gate = [[float(x) for x in r] for r in
            _numbers((ref / SOURCES["schneider2000_density.txt"]).read_text())]
    return [] if ours == gate else [f"schneider2000_density.txt: {ours} != GATE's {gate}"]


GATE_ELEMENTS = {"Hydrogen": "H", "Carbon": "C", "Nitrogen": "N", "Oxygen": "O", "Sodium": "Na",
                 "Magnesium": "Mg", "Phosphor": "P", "Sulfur": "S", "Chlorine": "Cl", "Argon": "Ar",
                 "Potassium": "K", "Calcium": "Ca", "Titanium": "Ti", "Copper": "Cu", "Zinc": "Zn",
                 "Silver": "Ag", "Tin": "Sn"}
#: material names corrected in rptdose's copy (GATE's spelling -> ours)
GATE_RENAMED = {"SoftTissus": "SoftTissue"}


def compare_materials(ref: Path) -> list[str]:
    ours = _numbers((DATA / "schneider2000_materials.txt").read_text())
    head, ours = ours[0], ours[1:]
    gate_text = (ref / SOURCES["schneider2000_materials.txt"]).read_text()
    m = re.search(r"\[Elements\](.*?)\[/Elements\]", gate_text, re.S)
    if m is None:
        return ["GATE materials table: no [Elements] block"]
    gate_el = [GATE_ELEMENTS.get(n, n) for n in m.group(1).split()]
    gate = _numbers(gate_text[m.end():])
    bad = []
    if head[1:-1] != gate_el:
        bad.append(f"schneider2000_materials.txt: elements {head[1:-1]} != GATE's {gate_el}")
    if len(ours) != len(gate):
        bad.append(f"schneider2000_materials.txt: {len(ours)} rows, GATE's {len(gate)}")
    for a, b in zip(ours, gate):
        if [float(x) for x in a[:-1]] != [float(x) for x in b[:-1]]:
            bad.append(f"schneider2000_materials.txt: row {a} != GATE's {b}")
        if a[-1] != GATE_RENAMED.get(b[-1], b[-1]):
            bad.append(f"schneider2000_materials.txt: name {a[-1]!r} != GATE's {b[-1]!r}")
    return bad


def compare_water_mu_en(ref: Path) -> list[str]:
    _, src = csv_rows((ref / "nist_xcom_mu_rho.csv").read_text())
    water = {r[1]: r[3] for r in src if r[0] == "water"}
    cols, rows = csv_rows((DATA / "reference/ref_nist_water_mu_en.csv").read_text())
    bad = [f"ref_nist_water_mu_en.csv: {e} keV {v} != {water.get(e)} (nist_xcom_mu_rho.csv)"
           for e, v in rows if water.get(e) != v]
    return bad if cols == ["energy_kev", "mu_en_rho"] else bad + [f"ref_nist_water_mu_en.csv columns {cols}"]


COMPARERS = {
    "schneider2000_density.txt": compare_density,
    "schneider2000_materials.txt": compare_materials,
    "reference/ref_nist_water_mu_en.csv": compare_water_mu_en,
}


# ------------------------------------------------------------------------------------- record
def read_provenance() -> dict[str, tuple[str, str, str]]:
    _, rows = csv_rows((DATA / PROVENANCE).read_text())
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def write_provenance(ref: Path) -> None:
    rows = []
    for name, src in SOURCES.items():
        rows.append([name, sha256(DATA / name), f"shared/reference/{src}" if src else "",
                     sha256(ref / src) if src else ""])
    text = write_csv(
        "# Written by data/make_reference_tables.py: each curated file of data/ with its SHA-256, the file of\n"
        "# the project's shared/reference/ it was made from or compared with number by number (empty: a\n"
        "# transcription from a source outside shared/, named in the file's header) and that file's SHA-256.\n",
        ["file", "sha256", "source", "source_sha256"], rows)
    (DATA / PROVENANCE).write_text(text)


def check(ref: Path | None) -> list[str]:
    """Problems found (empty: all good). Always: every curated file has the SHA-256 recorded in
    provenance.csv. With ``ref`` (shared/reference): the made tables equal what the makers write
    now, the compared ones match their source number by number, and the sources' SHA-256 match."""
    bad = []
    rec = read_provenance()
    if sorted(rec) != sorted(SOURCES):
        bad.append(f"{PROVENANCE} lists {sorted(rec)}, expected {sorted(SOURCES)}")
    for name in SOURCES:
        if name in rec and (DATA / name).is_file() and sha256(DATA / name) != rec[name][0]:
            bad.append(f"data/{name} changed since it was checked (SHA-256 differs from {PROVENANCE}): "
                       "rerun python data/make_reference_tables.py with shared/ present")
        elif not (DATA / name).is_file():
            bad.append(f"data/{name} missing")
    if ref is None:
        return bad
    for name, make in MAKERS.items():
        if make(ref) != (DATA / name).read_text():
            bad.append(f"data/{name} differs from what shared/reference/{SOURCES[name]} makes now")
    for name, compare in COMPARERS.items():
        bad += compare(ref)
    for name, src in SOURCES.items():
        if src and name in rec and sha256(ref / src) != rec[name][2]:
            bad.append(f"shared/reference/{src} changed since data/{name} was checked against it")
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="check only; write nothing")
    ap.add_argument("--shared", default=None, help="the shared/ folder (default: $RPTDOSE_SHARED, ../shared)")
    args = ap.parse_args(argv)
    shared = shared_dir(args.shared)
    ref = None if shared is None else shared / "reference"
    if ref is not None and not ref.is_dir():
        ref = None
    if not args.check:
        if ref is None:
            print("shared/reference not found (--shared, $RPTDOSE_SHARED, ../shared): nothing made", file=sys.stderr)
            return 2
        for name, make in MAKERS.items():
            (DATA / name).write_text(make(ref))
            print(f"wrote data/{name}")
        bad = [b for c in COMPARERS.values() for b in c(ref)]
        if bad:
            print("\n".join(bad), file=sys.stderr)
            return 1
        write_provenance(ref)
        print(f"checked {', '.join(COMPARERS)} against shared/reference; wrote data/{PROVENANCE}")
    bad = check(ref)
    print("\n".join(bad) if bad else
          f"OK: {len(SOURCES)} files as recorded"
          + ("" if ref is None else f"; numbers match {ref}"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
