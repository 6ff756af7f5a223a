"""Synthetic ``regions.json`` files (format rptdose-regions, version 1) for the course and plan tests.

The numbers are made up but of the size seen after 7.4 GBq of Lu-177-DOTATATE (kidney about
0.4-0.9 Gy/GBq, red marrow a few hundredths of a Gy/GBq): they test the arithmetic, not physiology.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def region(name: str, kind: str, dose_gy: float, t_eff_h: float | None, rel: float = 0.01,
           **extra: Any) -> dict[str, Any]:
    r = {"name": name, "kind": kind, "mean_dose_gy": dose_gy, "mean_dose_rel_uncertainty": rel,
         "d2_gy": 1.3 * dose_gy, "d50_gy": dose_gy, "d98_gy": 0.7 * dose_gy, "max_gy": 1.6 * dose_gy,
         "volume_ml": 150.0, "mass_g": 157.5, "mean_tia_bq_s": 1.0e12, "t_eff_h": t_eff_h, "tia_model": "mono"}
    r.update(extra)
    return r


def cycle_doc(time: str, activity_mbq: float = 7400.0, regions: list[dict] | None = None,
              **extra: Any) -> dict[str, Any]:
    doc = {"format": "rptdose-regions", "format_version": 1, "nuclide": "Lu-177",
           "administered_activity_mbq": activity_mbq, "administration_time": time, "method": "mc",
           "study_file": "study.toml", "regions": regions if regions is not None else default_regions()}
    doc.update(extra)
    return doc


def default_regions(scale: float = 1.0) -> list[dict[str, Any]]:
    return [region("kidney_left", "kidney", 4.0 * scale, 50.0, 0.01),
            region("kidney_right", "kidney", 3.6 * scale, 45.0, 0.012),
            region("red_marrow", "marrow", 0.25 * scale, 30.0, 0.05),
            region("tumour_1", "tumour", 25.0 * scale, 90.0, 0.005),
            region("spleen", "organ", 5.0 * scale, 60.0, 0.01)]


def write_cycle(folder: Path, doc: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "regions.json").write_text(json.dumps(doc), encoding="utf-8")
    return folder


def two_cycles(tmp: Path) -> list[Path]:
    """Two cycles 8 weeks apart; the second with 10 % higher kidney and marrow doses."""
    c1 = write_cycle(tmp / "cycle1", cycle_doc("2026-03-02T09:00:00"))
    regs = default_regions()
    regs[0]["mean_dose_gy"] *= 1.1
    regs[1]["mean_dose_gy"] *= 1.1
    regs[2]["mean_dose_gy"] *= 1.1
    c2 = write_cycle(tmp / "cycle2", cycle_doc("2026-04-27T09:00:00", 7000.0, regs))
    return [c1, c2]
