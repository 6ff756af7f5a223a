"""The one accessor for rptdose's shipped data.

The tables live in the repository's top-level ``data/`` folder (see ``data/README.md``: what
each file holds, its units and its source); the build installs that folder as the package
resource ``rptdose/data`` (pyproject.toml ``[tool.scikit-build] wheel.packages``). Every reader
of a shipped table asks here for its path::

    data_path("organ_limits.toml")
    data_path("reference/nist_xcom_mu_rho.csv")

Looked up, in order: the package resource ``rptdose.data`` (a wheel's ``rptdose/data/``; in an
editable install the source tree's ``data/``), ``rptdose/data`` beside the package, and a
source checkout's ``<repo>/data`` (running from ``python/`` on ``sys.path`` without installing).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from rptdose.errors import DataError

__all__ = ["data_dir", "data_path"]

_HERE = Path(__file__).resolve().parent


def _candidates() -> list[Path]:
    out: list[Path] = []
    try:
        res = resources.files("rptdose.data")
    except (ImportError, TypeError, ValueError):  # not importable as a (namespace) package here
        res = None
    if isinstance(res, Path):
        out.append(res)
    elif res is not None:  # a namespace package over several folders (MultiplexedPath)
        out.extend(Path(str(p)) for p in getattr(res, "_paths", ()))
    out.append(_HERE / "data")
    if _HERE.parent.name == "python":  # <repo>/python/rptdose: a source checkout
        out.append(_HERE.parent.parent / "data")
    return out


def data_dir() -> Path:
    """The folder holding the shipped data (the first candidate that exists; never raises:
    :func:`data_path` names what is missing)."""
    cands = _candidates()
    for c in cands:
        if c.is_dir():
            return c
    return cands[-1]


def data_path(name: str) -> Path:
    """Path of the shipped data file ``name`` (relative to ``data/``, '/'-separated, e.g.
    ``"schneider2000_density.txt"`` or ``"reference/nist_estar_electrons.csv"``).

    Raises DataError when no candidate folder holds it (a broken installation)."""
    parts = [p for p in str(name).split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise DataError(f"shipped data name {name!r} (invalid): expected a path inside data/")
    cands = _candidates()
    for c in cands:
        p = c.joinpath(*parts)
        if p.is_file():
            return p
    raise DataError(f"shipped data file {name!r} not found in {', '.join(str(c) for c in cands)}: "
                    "the installation is incomplete (reinstall rptdose; from a checkout: pip install .)")
