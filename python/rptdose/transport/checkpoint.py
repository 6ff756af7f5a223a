"""Checkpoint files of a transport run: ``rd.simulate(..., checkpoint=PATH)``.

A run's sums after each completed batch (``_core.TallyState``: the exact integer energy per
voxel, the spread of the batch means, the integer region sums of each batch, the energy
counters and the next batch) are written to one HDF5 file, atomically (the previous checkpoint
stays whole until the new one has replaced it, :mod:`rptdose.io.atomic`), with the *run key*:
a SHA-256 of everything that decides the tallies (the phantom's and the source's arrays, the
voxel size, the physics tables, the emission data, the region labels, histories, seed,
batches, electron transport, the precision, the backend that makes the tallies, and the core's
version). The same call after a crash, a kill or
Ctrl-C reads it back and continues with the next batch; because batches are exact and folded in
batch order, the dose then equals an uninterrupted run's to the last bit.

A checkpoint of other inputs, or a damaged file, is refused with an InputError that names the
file and what differs; it is never mixed into a run. A finished run's checkpoint (every batch
folded) is kept: calling again returns the same result at once; delete the file to rerun.

==================  ============================================================
HDF5 item           content
==================  ============================================================
attr ``kind``       ``"rptdose-checkpoint"``; ``format_version``
attr ``run_key``    SHA-256 hex of the run's identity (above)
attr ``identity``   the identity itself as JSON (what is compared to say what differs)
attr ``next_batch``, ``batches``, ``histories``, ``emitted_units``, ``escaped_units``
``total``           int64 [voxels] energy units of the folded batches
``m2``              float32 [voxels] spread of the batch means (physics/batch.hpp)
``region_units``    int64 [batches, regions] region sums per batch (energy units)
attr ``provenance`` JSON: rptdose version, time written, batches done
==================  ============================================================
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from rptdose.errors import InputError

KIND = "rptdose-checkpoint"
FORMAT_VERSION = "1"


def _digest_mapping(d: dict) -> str:
    """SHA-256 of a dict of arrays and scalars (sorted keys; arrays by dtype, shape and bytes)."""
    h = hashlib.sha256()
    for k in sorted(d):
        v = d[k]
        h.update(str(k).encode())
        if isinstance(v, np.ndarray):
            h.update(f"{v.dtype.str}{v.shape}".encode())
            h.update(memoryview(np.ascontiguousarray(v)).cast("B"))
        elif isinstance(v, (str, int, float, bool, np.integer, np.floating)) or v is None:
            h.update(repr(v).encode())
        # other entries (provenance dicts) do not decide the tallies
    return h.hexdigest()


def run_identity(inputs_sha256: dict[str, str], spacing_mm: Any, tables: dict, emissions: dict,
                 histories: int, seed: int, batches: int, electron_transport: bool, core_version: str,
                 precision: str = "double") -> dict:
    """What decides a run's tallies, as a JSON-able dict (compared field by field on resume)."""
    return {"inputs_sha256": dict(sorted(inputs_sha256.items())),
            "spacing_mm": [float(s) for s in spacing_mm],
            "tables_sha256": _digest_mapping(tables),
            "emissions_sha256": _digest_mapping(emissions),
            "histories": int(histories), "seed": int(seed), "batches": int(batches),
            "electron_transport": bool(electron_transport), "core_version": str(core_version),
            "precision": str(precision)}


def run_key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _differences(saved: dict, now: dict) -> list[str]:
    out = []
    for k in sorted(set(saved) | set(now)):
        a, b = saved.get(k), now.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k}.{s}" for s in sorted(set(a) | set(b)) if a.get(s) != b.get(s)]
        elif k in ("histories", "seed", "batches", "electron_transport", "core_version", "spacing_mm", "precision",
                   "tally_backend"):
            out.append(f"{k} ({a} in the file, {b} now)")
        else:
            out.append(k)
    return out


def check_path(path: Any) -> Path:
    """The checkpoint argument as a Path in an existing folder, else InputError."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise InputError(f"checkpoint {path!r}: expected a file path (str or os.PathLike)")
    p = Path(path)
    if p.exists() and not p.is_file():
        raise InputError(f"checkpoint '{p}' (is not a file): expected an HDF5 checkpoint file path")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"checkpoint '{p}' (folder '{folder}' does not exist): expected a file in an existing folder")
    return p


def load(path: Path, identity: dict, state: Any) -> int:
    """Restore ``state`` (a fresh ``_core.TallyState``) from the checkpoint at ``path`` if there
    is one; returns the batches it holds (0 when there is no file). InputError for a file of other
    inputs or one that is not a readable checkpoint."""
    if not path.exists():
        return 0
    import h5py

    expected = f"an rptdose checkpoint (kind '{KIND}', format {FORMAT_VERSION}) of this run, or no file"
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"checkpoint '{path}' (not a readable HDF5 file: {exc}): expected {expected}; "
                         "delete it to start the run afresh") from None
    with f:
        try:
            kind = str(f.attrs.get("kind", ""))
            version = str(f.attrs.get("format_version", ""))
            if kind != KIND or version != FORMAT_VERSION:
                raise InputError(f"checkpoint '{path}' (kind {kind!r}, format {version!r}): expected {expected}")
            saved_identity = json.loads(str(f.attrs["identity"]))
            if str(f.attrs["run_key"]) != run_key(identity):
                diff = ", ".join(_differences(saved_identity, identity)) or "the run key"
                raise InputError(f"checkpoint '{path}' (written for other inputs: {diff} differ): expected a "
                                 "checkpoint of this run; use another checkpoint path, or delete the file to "
                                 "start this run afresh")
            next_batch = int(f.attrs["next_batch"])
            total = np.asarray(f["total"][...], dtype=np.int64)
            m2 = np.asarray(f["m2"][...], dtype=np.float32)
            region_units = np.asarray(f["region_units"][...], dtype=np.int64)
            emitted = int(f.attrs["emitted_units"])
            escaped = int(f.attrs["escaped_units"])
        except InputError:
            raise
        except (KeyError, ValueError, TypeError, OSError) as exc:
            raise InputError(f"checkpoint '{path}' (damaged or incomplete: {type(exc).__name__}: {exc}): expected "
                             f"{expected}; delete it to start the run afresh") from None
    try:
        state.restore(total, m2, region_units, emitted, escaped, next_batch)
    except ValueError as exc:
        raise InputError(f"checkpoint '{path}' (arrays do not fit this run: {exc}): expected {expected}") from None
    return next_batch


def save(path: Path, identity: dict, state: Any, histories: int) -> None:
    """Write ``state`` to ``path`` atomically (the previous file stays whole until replaced)."""
    from rptdose._provenance import now_utc, rptdose_version
    from rptdose.io.hdf5 import atomic_h5

    a = state.arrays()
    with atomic_h5(path, name="checkpoint") as f:
        f.attrs["kind"] = KIND
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["run_key"] = run_key(identity)
        f.attrs["identity"] = json.dumps(identity, sort_keys=True)
        f.attrs["next_batch"] = np.int64(a["next_batch"])
        f.attrs["batches"] = np.int64(state.batches)
        f.attrs["histories"] = np.int64(histories)
        f.attrs["emitted_units"] = np.int64(a["emitted"])
        f.attrs["escaped_units"] = np.int64(a["escaped"])
        f.attrs["provenance"] = json.dumps({"rptdose_version": rptdose_version(), "written_utc": now_utc(),
                                            "batches_done": int(a["next_batch"])})
        # uncompressed: a checkpoint is written after every batch, and compression (gzip level 1
        # + shuffle) made each write ~6x slower for a file ~40 % smaller (validation/bench/README.md)
        f.create_dataset("total", data=a["total"])
        f.create_dataset("m2", data=a["m2"])
        f.create_dataset("region_units", data=a["region_units"])
