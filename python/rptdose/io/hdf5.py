"""HDF5 files: atomic writing, and the layout of a saved :class:`~rptdose.SimulationResult`.

Result file layout (``format_version`` "1"):

=====================  =========  ==================  ========================================
name                   kind       type                content
=====================  =========  ==================  ========================================
``format_version``     attr       str                 ``"1"``; checked at load
``kind``               attr       str                 ``"rptdose.SimulationResult"``
``provenance``         attr       str (JSON)          versions, settings, seed, input hashes
``energy_balance``     attr       str (JSON)          emitted/deposited/escaped MeV per decay
``region_means``       attr       str (JSON)          per-region mean dose (``null`` if none)
``backend``            attr       str                 backend that ran
``histories``          attr       int64               simulated decays
``seed``               attr       uint64              the run's seed
``batches``            attr       int64               batches of the uncertainty estimate
``elapsed_s``          attr       float64             transport wall time (s)
``spacing_mm``         attr       float64 (3,)        (x, y, z) mm
``origin_mm``          attr       float64 (3,)        (x, y, z) mm, centre of voxel [0, 0, 0]
``direction``          attr       float64 (9,)        direction cosines, row-major
``dose_gy``            dataset    float64 [z, y, x]   absorbed dose to medium (Gy), gzip
``rel_uncertainty``    dataset    float64 [z, y, x]   relative 1-sigma standard error, gzip
``alpha_dose_gy``      dataset    float64 [z, y, x]   optional: the part of dose_gy from alphas
                                                      and recoil nuclei (Gy), gzip; absent for
                                                      sources without alphas
=====================  =========  ==================  ========================================

Writes are atomic (:func:`atomic_h5`, built on :mod:`rptdose.io.atomic`): the file is built in
memory, written under a temporary name in the destination folder, checked and moved into place
with :func:`os.replace`, so a failed save leaves nothing behind and never a half-written file
under the final name.

Region masks (the ``masks`` group of ``rptdose run``'s dose.h5 and of tia.h5) are written with
:func:`write_masks`: one uint8 dataset per region whose HDF5 name is the region name made safe
by :func:`h5_name` (``%``, ``/``, ``.`` and control characters percent-encoded, so that ``a/b``
is not a nested group and ``liver`` and ``liver/part`` do not collide) and whose attribute
``name`` holds the region name verbatim. :func:`read_masks` reads them back by that attribute.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rptdose.errors import InputError

FORMAT_VERSION = "1"
RESULT_KIND = "rptdose.SimulationResult"
_DATASETS = ("dose_gy", "rel_uncertainty")
_REQUIRED_ATTRS = ("provenance", "energy_balance", "backend", "histories", "seed", "batches", "elapsed_s",
                   "spacing_mm", "origin_mm", "direction")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (Path, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(value: Any) -> str:
    """JSON text of a provenance-like structure (numpy scalars/arrays converted); floats exact."""
    return json.dumps(value, default=_json_default, sort_keys=True)


def check_output_path(path: Any, name: str = "path") -> Path:
    """Validate an output file path: a str/PathLike whose folder exists and that is not a folder."""
    if not isinstance(path, (str, os.PathLike)) or os.fspath(path) == "":
        raise InputError(f"{name} {path!r} (not a file path): expected a str or pathlib.Path such as 'result.h5'")
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{name} '{p}' (is a folder): expected a file name such as '{p / 'result.h5'}'")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{name} '{p}' (folder '{parent}' does not exist): expected a file in an existing folder")
    return p


@contextlib.contextmanager
def atomic_h5(path: Any, name: str = "path") -> Iterator[Any]:
    """Open ``path`` for writing as an h5py.File that appears under its name only on success.

    The file is built in memory and written by :func:`rptdose.io.atomic.h5_file`: a hidden
    temporary file in the same folder, its size checked, flushed to disk, then moved over
    ``path`` with :func:`os.replace` (atomic on POSIX and Windows). On any exception the
    temporary file is removed and ``path`` is left as it was; a full disk raises
    OutputWriteError (the HDF5 library itself never meets a write error, which left it
    broken and crashed the process at exit). A folder where no file can be created raises
    InputError before the block runs.
    """
    from rptdose.io.atomic import h5_file

    target = check_output_path(path, name)
    with h5_file(target, name=name) as f:
        yield f


def write_result(path: Any, fields: dict[str, Any], extra: Any = None) -> Path:
    """Write the fields of a SimulationResult (see the module docstring) atomically to ``path``.

    ``extra``, if given, is called with the open h5py.File before it is closed, to add datasets
    and attributes of a larger file that stays a readable result (``rptdose run``'s dose.h5).
    """
    # serialise first, so that a failure cannot happen half-way through the file
    provenance = to_json(fields["provenance"])
    energy_balance = to_json(fields["energy_balance"])
    region_means = to_json(fields.get("region_means"))
    target = check_output_path(path)
    with atomic_h5(target) as f:
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["kind"] = RESULT_KIND
        f.attrs["provenance"] = provenance
        f.attrs["energy_balance"] = energy_balance
        f.attrs["region_means"] = region_means
        f.attrs["backend"] = str(fields["backend"])
        f.attrs["histories"] = np.int64(fields["histories"])
        f.attrs["seed"] = np.uint64(fields["seed"])
        f.attrs["batches"] = np.int64(fields["batches"])
        f.attrs["elapsed_s"] = np.float64(fields["elapsed_s"])
        f.attrs["spacing_mm"] = np.asarray(fields["spacing_mm"], dtype=np.float64)
        f.attrs["origin_mm"] = np.asarray(fields["origin_mm"], dtype=np.float64)
        f.attrs["direction"] = np.asarray(fields["direction"], dtype=np.float64)
        units = {"dose_gy": "Gy", "rel_uncertainty": "1 (relative 1-sigma standard error of the mean)"}
        for key in _DATASETS:
            data = np.ascontiguousarray(fields[key], dtype=np.float64)
            ds = f.create_dataset(key, data=data, compression="gzip", compression_opts=4, shuffle=True,
                                  chunks=True)
            ds.attrs["units"] = units[key]
            ds.attrs["axes"] = "z, y, x"
        if fields.get("alpha_dose_gy") is not None:
            ds = f.create_dataset("alpha_dose_gy", data=np.ascontiguousarray(fields["alpha_dose_gy"], dtype=np.float64),
                                  compression="gzip", compression_opts=4, shuffle=True, chunks=True)
            ds.attrs["units"] = "Gy (alpha particles and recoil nuclei, deposited at the decay site)"
            ds.attrs["axes"] = "z, y, x"
        if extra is not None:
            extra(f)
    return target


def h5_name(name: str) -> str:
    """A region name as an HDF5 link name: ``%``, ``/``, ``.`` and control characters (below
    U+0020, and U+007F) percent-encoded as UTF-8 bytes (``http://evil`` -> ``http:%2F%2Fevil``).
    Reversible (:func:`h5_unname`) and injective, so distinct names stay distinct."""
    if not isinstance(name, str) or name == "":
        raise InputError(f"region name {name!r} (empty or not a string): expected a non-empty region name")
    out = []
    for ch in name:
        if ch in "%/." or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


def h5_unname(link: str) -> str:
    """The region name of an HDF5 link name made by :func:`h5_name`."""
    from urllib.parse import unquote

    return unquote(link, encoding="utf-8", errors="strict")


def write_masks(parent: Any, masks: dict[str, Any], group: str = "masks", **opts: Any) -> Any:
    """Write {region name: bool mask} as the group ``group`` of the open h5py file/group ``parent``:
    one uint8 dataset per region named :func:`h5_name` (name), with attribute ``name`` = the
    verbatim region name. ``opts`` go to ``create_dataset`` (e.g. compression)."""
    g = parent.create_group(group)
    for name, mask in masks.items():
        ds = g.create_dataset(h5_name(name), data=np.asarray(mask).astype(np.uint8), **opts)
        ds.attrs["name"] = str(name)
    return g


def open_h5(path: Path, what: str, expected: str) -> Any:
    """``path`` opened read-only with h5py; InputError "{what} '{path}' (not a readable HDF5 file:
    ...): expected {expected}" when it is not one."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{what} '{path}' (not a readable HDF5 file: {exc}): expected {expected}") from None


def mask_name(link: str, ds: Any) -> str:
    """The region name of a mask dataset written by :func:`write_masks`: its ``name`` attribute,
    else (files written before the attribute) the link name with its percent-encoding undone."""
    return _attr_str(ds.attrs["name"]) if "name" in ds.attrs else h5_unname(link)


def read_masks(source: Any, group: str = "masks") -> dict[str, np.ndarray]:
    """{region name: bool mask} from the ``group`` written by :func:`write_masks`, in an open
    h5py file or a path. The name is the dataset's ``name`` attribute (or, for files written
    before it existed, the link name decoded). Empty dict if there is no such group."""
    import h5py

    if isinstance(source, (str, os.PathLike)):
        with open_h5(Path(source), "mask file", "an rptdose dose.h5 or tia.h5") as f:
            return read_masks(f, group)
    if group not in source:
        return {}
    out: dict[str, np.ndarray] = {}
    for link, ds in source[group].items():
        if not isinstance(ds, h5py.Dataset):
            raise InputError(f"HDF5 group '{group}' in '{source.file.filename}' (member {link!r} is a group): "
                             "expected one dataset per region")
        name = mask_name(link, ds)
        if name in out:
            raise InputError(f"HDF5 group '{group}' in '{source.file.filename}' (region {name!r} twice): expected "
                             "one dataset per region")
        out[name] = np.asarray(ds[()]).astype(bool)
    return out


def _attr_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _attr_str(value.item())
    return str(value)


def write_table_header(f: Any, *, kind: str, format_version: str, provenance: Any, nuclide: str, medium: str,
                       density_g_cm3: float, cache_key: str) -> None:
    """Attributes shared by the cached tables of the fast methods (voxel S-value kernels, sphere
    absorbed fractions): what the file is, for which emitter and medium, and its provenance."""
    f.attrs["format_version"] = format_version
    f.attrs["kind"] = kind
    f.attrs["provenance"] = to_json(provenance)
    f.attrs["nuclide"] = nuclide
    f.attrs["medium"] = medium
    f.attrs["density_g_cm3"] = np.float64(density_g_cm3)
    f.attrs["cache_key"] = cache_key


def read_table_header(f: Any, path: Path, *, kind: str, format_version: str, what: str) -> dict[str, Any]:
    """The attributes of write_table_header, after checking the kind and format version
    (InputError naming the file and what was expected)."""
    got_kind = _attr_str(f.attrs.get("kind", ""))
    version = _attr_str(f.attrs.get("format_version", ""))
    if got_kind != kind:
        raise InputError(f"{what} file '{path}' (kind {got_kind!r}): expected an rptdose {what} ({kind})")
    if version != format_version:
        raise InputError(f"{what} file '{path}' (format_version {version!r}): expected '{format_version}'; "
                         "recompute it with this rptdose version")
    return {"nuclide": _attr_str(f.attrs["nuclide"]), "medium": _attr_str(f.attrs["medium"]),
            "density_g_cm3": float(f.attrs["density_g_cm3"]), "cache_key": _attr_str(f.attrs["cache_key"]),
            "provenance": json.loads(_attr_str(f.attrs["provenance"]))}


def read_result(path: Any) -> dict[str, Any]:
    """Read a result file written by :func:`write_result`; returns its fields as a dict.

    Raises InputError naming the file when it is missing, not HDF5, not a result, of another
    ``format_version``, or incomplete.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"path {path!r} (not a file path): expected the path of an rptdose result (.h5)")
    p = Path(path)
    if not p.is_file():
        raise InputError(f"result file '{p}' (does not exist): expected an rptdose result (.h5)")
    with open_h5(p, "result file", "an rptdose result (.h5)") as f:
        if "format_version" not in f.attrs:
            raise InputError(f"result file '{p}' (no format_version attribute; not an rptdose result?): expected "
                             f"format_version '{FORMAT_VERSION}'")
        version = _attr_str(f.attrs["format_version"])
        if version != FORMAT_VERSION:
            raise InputError(f"result file '{p}' (format_version {version!r}): expected '{FORMAT_VERSION}'; "
                             "it was written by another rptdose version")
        missing = [a for a in _REQUIRED_ATTRS if a not in f.attrs] + [d for d in _DATASETS if d not in f]
        if missing:
            raise InputError(f"result file '{p}' (missing {', '.join(missing)}): expected a complete rptdose "
                             "result; the file is damaged")
        try:
            out: dict[str, Any] = {
                "provenance": json.loads(_attr_str(f.attrs["provenance"])),
                "energy_balance": json.loads(_attr_str(f.attrs["energy_balance"])),
                "region_means": json.loads(_attr_str(f.attrs["region_means"])) if "region_means" in f.attrs else None,
                "backend": _attr_str(f.attrs["backend"]),
                "histories": int(f.attrs["histories"]),
                "seed": int(f.attrs["seed"]),
                "batches": int(f.attrs["batches"]),
                "elapsed_s": float(f.attrs["elapsed_s"]),
                "spacing_mm": tuple(float(v) for v in f.attrs["spacing_mm"]),
                "origin_mm": tuple(float(v) for v in f.attrs["origin_mm"]),
                "direction": tuple(float(v) for v in f.attrs["direction"]),
            }
            for key in _DATASETS:
                out[key] = np.asarray(f[key][()], dtype=np.float64)
            if "alpha_dose_gy" in f:
                out["alpha_dose_gy"] = np.asarray(f["alpha_dose_gy"][()], dtype=np.float64)
        except (ValueError, TypeError, KeyError, OSError) as exc:
            raise InputError(f"result file '{p}' (unreadable content: {exc}): expected an rptdose result; "
                             "the file is damaged") from None
    if out["dose_gy"].ndim != 3 or out["dose_gy"].shape != out["rel_uncertainty"].shape:
        raise InputError(f"result file '{p}' (datasets of shapes {out['dose_gy'].shape} and "
                         f"{out['rel_uncertainty'].shape}): expected two 3-D arrays of the same shape")
    return out
