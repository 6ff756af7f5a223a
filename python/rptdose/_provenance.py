"""What every provenance record is made of, written once: the package versions, the time stamp
convention and rptdose's own version.

=========================  =====================================================================
function                   returns
=========================  =====================================================================
:func:`rptdose_version`    the installed rptdose's version ("0.0.0+unknown" from a source tree
                           that is not installed)
:func:`package_version`    an installed distribution's version, or "not installed"
:func:`package_versions`   {distribution: version} for several (default :data:`DEPENDENCIES`)
:func:`sha256_file`        a file's SHA-256 (inputs and outputs are recorded by it)
:func:`now_utc`            the time now in UTC, ISO 8601 with its offset
                           ("2026-03-02T09:00:00+00:00"): every record uses this one convention
=========================  =====================================================================

Modules import this module (never the package face ``rptdose``) for their provenance.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata as _md
import os
from collections.abc import Iterable

#: The distributions whose versions a result's provenance records.
DEPENDENCIES = ("numpy", "SimpleITK", "pydicom", "h5py", "matplotlib", "icrp107-database", "xraylib")


def package_version(dist: str) -> str:
    """The installed version of distribution ``dist``, or "not installed"."""
    try:
        return _md.version(dist)
    except _md.PackageNotFoundError:
        return "not installed"


def package_versions(dists: Iterable[str] = DEPENDENCIES) -> dict[str, str]:
    """{distribution: version or "not installed"}."""
    return {d: package_version(d) for d in dists}


def rptdose_version() -> str:
    """rptdose's own version (the installed distribution's)."""
    v = package_version("rptdose")
    return "0.0.0+unknown" if v == "not installed" else v


def now_utc() -> str:
    """The time now, UTC, ISO 8601 to the second with the offset."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
