"""The project's shared/ folder (data gathered by others, not part of the repository).

Tests read the reference numbers they need from data/ (rptdose._data.data_path); only large
optional data (a real patient) come from shared/data/, and those tests skip without it.
Looked up as $RPTDOSE_SHARED, <repo>/../shared, <repo>/shared. RPTDOSE_SHARED, when set, is the
only place looked at: set it to a folder that does not exist to run the tests as from a clean
clone (``RPTDOSE_SHARED=/nonexistent pytest tests/...``).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    """The lookup of data/make_reference_tables.py (one rule for the tables' maker and the tests)."""
    return data_maker().shared_dir()


def shared_path(*parts: str) -> Path | None:
    """shared/<parts> when it exists, else None."""
    base = shared_dir()
    if base is None:
        return None
    p = base.joinpath(*parts)
    return p if p.exists() else None


def data_maker():
    """data/make_reference_tables.py as a module (it makes and checks the curated tables)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_reference_tables", ROOT / "data" / "make_reference_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def reference_rows(name: str) -> list[dict[str, str]]:
    """Rows of the shipped reference table data/reference/<name> ('#' lines are its header:
    source and units) as dicts of strings."""
    import csv

    from rptdose._data import data_path

    with open(data_path(f"reference/{name}"), newline="") as f:
        return list(csv.DictReader(ln for ln in f if not ln.startswith("#")))
