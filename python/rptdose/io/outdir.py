"""An output folder updated as one unit: a lock, a staging folder swapped in whole, a manifest.

``rptdose run``, ``rptdose tia`` and ``rptdose demo`` write their results through
:class:`OutputFolder`::

    with OutputFolder(out, command="run") as tx:      # lock, clean leftovers, staging, checks
        ... the work ...
        write_outputs(tx.staging, ...)               # every file into the staging folder
        tx.commit()                                  # manifest.json last, then the swap

What happens, next to the output folder ``OUT`` (in its parent folder):

=================================  ============================================================
step                               detail
=================================  ============================================================
lock                               ``.OUT.lock``, held with ``fcntl.flock`` for the whole run (the
                                   kernel releases it when the process dies, even by SIGKILL); a
                                   second run into the same folder fails at once with InputError
                                   naming the folder and the other run's pid (exit code 2). The
                                   file holds the holder's pid, host, command and start time and
                                   is removed when the run ends.
leftovers                          with the lock held, no other run is writing: staging folders
                                   of killed runs (``.OUT.staging-*``) are removed, a folder a
                                   killed run had moved aside during its swap (``.OUT.previous-*``)
                                   is put back (or, if the swap had finished, removed), hidden
                                   temporary files in ``OUT`` (``.*.tmp-*``) are removed; each is
                                   reported in :attr:`OutputFolder.notes`
checks, before any work            the parent is a folder (``-o file/sub``: InputError), creatable
                                   and writable (read-only: InputError); ``OUT``, if it exists, is
                                   an rptdose output folder (a ``manifest.json``, or the files of
                                   an older rptdose) or empty, since it will be replaced whole; the
                                   staging folder ``.OUT.staging-<run id>`` is created and a probe
                                   file written in it; at least :data:`MIN_FREE_BYTES` free.
                                   The dose grid's memory and disk estimates are checked as soon
                                   as the grid is known (:mod:`rptdose.resources`).
commit                             a signal received meanwhile (even one swallowed by a library)
                                   aborts it; ``manifest.json`` is written last (run id, command,
                                   times, each file's size and SHA-256, read back from the disk);
                                   then, with SIGINT/SIGTERM held back: ``OUT`` -> ``.OUT.previous-
                                   <run id>``, staging -> ``OUT`` (on failure the old folder is
                                   put back); entries of the old folder that rptdose did not write
                                   (not in its manifest) are moved into the new one; the old one
                                   is removed.
failure or Ctrl-C before commit    the staging folder is removed; ``OUT`` is untouched.
=================================  ============================================================

:func:`verify_manifest` checks a folder against its manifest.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno as _errno
import json
import os
import re
import secrets
import shutil
import socket
import stat
from pathlib import Path
from typing import Any

from rptdose._provenance import now_utc, rptdose_version
from rptdose.errors import InputError, OutputWriteError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "rptdose-manifest"
MANIFEST_FORMAT_VERSION = 1
#: Free space the output folder's disk must have before any work (B); the grid's own estimate
#: (rptdose.resources) is checked when the grid is known.
MIN_FREE_BYTES = 1 << 20

#: Per command: (names in the top level of an output folder written before manifests existed
#: that mark it as rptdose's, regex of the top-level names such a folder's run wrote). Entries of
#: an old folder that are not rptdose's are kept: moved into the new folder.
LEGACY = {
    "run": (("dose.h5", "regions.json"),
            r"dose(_uncertainty)?\.dcm|dose(_rel_uncertainty)?\.nii\.gz|dose\.h5|regions\.(csv|json)|"
            r"dvh\.(csv|png)|dose_slices\.png|report\.html|tia"),
    "tia": (("tia.h5",), r"tia(_rel_uncertainty|_method)?\.nii\.gz|tia\.h5|regions\.csv|timepoints\.csv|plots|"
                         r"registration"),
    "demo": (("study.toml",), r"study\.toml|rtstruct\.dcm|tp\d+"),
}

#: The output folders being written by this process (rptdose.resources checks their disks).
_ACTIVE: list[OutputFolder] = []


def checks_disabled() -> bool:
    """Whether RPTDOSE_NO_RESOURCE_CHECK turns the resource checks (free disk here, memory and
    output size in rptdose.resources) off."""
    return os.environ.get("RPTDOSE_NO_RESOURCE_CHECK", "").strip() not in ("", "0")


def active() -> list[OutputFolder]:
    """The output folders open (not yet committed or closed) in this process."""
    return list(_ACTIVE)


def _is_temporary(name: str) -> bool:
    from rptdose.io.atomic import is_temporary_name

    return is_temporary_name(name)


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


class FolderLock:
    """An exclusive lock on the output path ``target``: the file ``.<name>.lock`` in its parent,
    held with ``fcntl.flock`` (module docstring). Where flock is unavailable (Windows, some
    network file systems) the run goes on unlocked."""

    def __init__(self, target: Path, *, command: str, option: str = "--output", run_id: str = "") -> None:
        self.target = target
        self.path = target.parent / f".{target.name}.lock"
        self.command = command
        self.option = option
        self.run_id = run_id or secrets.token_hex(6)
        self.fd: int | None = None
        self.locked = False

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            info = {}
        if not info.get("pid"):
            return "another rptdose run (pid unknown)"
        return (f"another rptdose {info.get('command', 'run')} (pid {info['pid']} on {info.get('host', '?')}, "
                f"started {info.get('started', '?')})")

    def acquire(self) -> FolderLock:
        try:
            import fcntl
        except ImportError:  # no flock here
            return self
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise InputError(f"{self.option} '{self.target}' (cannot create the lock file '{self.path}': "
                                 f"{_why(exc)}): expected a writable folder for the results") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise InputError(f"{self.option} '{self.target}' (in use: {self._holder()} is writing it; lock file "
                                 f"'{self.path}'): expected one run at a time per output folder; wait for that run "
                                 "to end or choose another folder") from None
            except OSError as exc:
                os.close(fd)
                if exc.errno in (_errno.ENOLCK, _errno.EOPNOTSUPP, _errno.ENOSYS):
                    return self  # the file system has no locks: go on unlocked
                raise
            # the holder before us may have removed the file between our open and our lock
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd, self.locked = fd, True
                break
            os.close(fd)
        else:
            raise InputError(f"{self.option} '{self.target}' (its lock file '{self.path}' keeps being replaced): "
                             "expected one run at a time per output folder")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command, "run_id": self.run_id,
                "started": now_utc()}
        with contextlib.suppress(OSError):  # the holder's details are a courtesy to the next run
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, (json.dumps(info) + "\n").encode(), 0)
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still held: the next run locks a fresh file
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd, self.locked = None, False

    def __enter__(self) -> FolderLock:
        return self if self.fd is not None else self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The manifest of an output folder, or None if it has none (or not a valid one)."""
    p = Path(folder) / MANIFEST_NAME
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT or not isinstance(doc.get("files"), list):
        return None
    return doc


def _sha256(path: Path) -> str:
    from rptdose._provenance import sha256_file

    return sha256_file(path)


def _files(folder: Path) -> list[str]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for f in sorted(files):
            out.append((Path(root) / f).relative_to(folder).as_posix())
    return sorted(out)


def verify_manifest(folder: str | os.PathLike) -> dict[str, list[str]]:
    """Check ``folder`` against its manifest: {"missing": [...], "changed": [...] (size or SHA-256
    differ), "unlisted": [...] (files not in the manifest, e.g. the user's own)}. InputError if
    the folder has no manifest."""
    f = Path(folder)
    doc = read_manifest(f)
    if doc is None:
        raise InputError(f"output folder '{f}' (no valid {MANIFEST_NAME}): expected a folder written by rptdose")
    listed = {e["path"]: e for e in doc["files"]}
    out: dict[str, list[str]] = {"missing": [], "changed": [], "unlisted": []}
    for rel, e in listed.items():
        p = f / rel
        if not p.is_file():
            out["missing"].append(rel)
        elif p.stat().st_size != e["bytes"] or _sha256(p) != e["sha256"]:
            out["changed"].append(rel)
    out["unlisted"] = [rel for rel in _files(f) if rel not in listed and rel != MANIFEST_NAME]
    return out


def _check_folder_path(target: Path, requested: Path, option: str) -> None:
    """The output path and its parents: folders (or missing); the parent created."""
    if target.exists() and not target.is_dir():
        raise InputError(f"{option} '{requested}' (is a file): expected a folder for the results")
    for a in target.parents:
        if a.exists():
            if not a.is_dir():
                raise InputError(f"{option} '{requested}' ('{a}' is a file, not a folder): expected a folder path "
                                 "for the results")
            break
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{option} '{requested}' (cannot create the folder '{target.parent}': {_why(exc)}): "
                         "expected a writable location for the results") from None


class OutputFolder:
    """The output folder ``path`` of one command, replaced as a whole on :meth:`commit` (module
    docstring). Use as a context manager; :attr:`staging` is where the outputs go.

    ``command``: "run", "tia" or "demo" (the lock file's record, the manifest, the names an
    older rptdose wrote there). ``output_bytes_per_voxel``: the expected size of the outputs per
    dose-grid voxel (disk check, :mod:`rptdose.resources`); ``transport``: whether the command
    transports (memory check)."""

    def __init__(self, path: str | os.PathLike, *, command: str, option: str = "--output",
                 output_bytes_per_voxel: float = 0.0, transport: bool = False) -> None:
        self.option = option
        self.command = command
        self.requested = Path(path)
        self.output_bytes_per_voxel = float(output_bytes_per_voxel)
        self.transport = bool(transport)
        self.run_id = _dt.datetime.now().strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)
        self.target = self._resolve(self.requested)
        self.parent = self.target.parent
        self.staging = self.parent / f".{self.target.name}.staging-{self.run_id}"
        self.lock = FolderLock(self.target, command=command, option=option, run_id=self.run_id)
        self.notes: list[str] = []
        self.carried: list[str] = []
        self.committed = False
        self._open = False

    # ---- opening ---------------------------------------------------------------------------

    def _resolve(self, p: Path) -> Path:
        if os.fspath(p) == "":
            raise InputError(f"{self.option} '' (empty): expected a folder for the results")
        target = Path(os.path.abspath(p))
        with contextlib.suppress(OSError, RuntimeError):
            target = target.resolve()  # a symbolic link: the folder it points to is replaced
        if target.parent == target or not target.name:
            raise InputError(f"{self.option} '{p}' (the root of a file system): expected a folder for the results; "
                             "it is replaced as a whole")
        try:
            cwd = Path.cwd().resolve()
        except OSError:
            cwd = None
        if cwd is not None and (cwd == target or target in cwd.parents):
            raise InputError(f"{self.option} '{p}' (the current folder or one of its parents): expected another "
                             "folder for the results; the output folder is replaced as a whole")
        return target

    def _check_path(self) -> None:
        _check_folder_path(self.target, self.requested, self.option)

    def _recover(self) -> None:
        """Leftovers of killed runs (we hold the lock: nobody else is writing here)."""
        name = self.target.name
        try:
            siblings = sorted(os.listdir(self.parent))
        except OSError:
            siblings = []
        for s in siblings:
            p = self.parent / s
            if s.startswith(f".{name}.staging-"):
                shutil.rmtree(p, ignore_errors=True)
                self.notes.append(f"removed '{p}', the unfinished output of an interrupted run")
            elif s.startswith(f".{name}.previous-") and p.is_dir():
                if not self.target.exists():
                    os.rename(p, self.target)
                    self.notes.append(f"restored '{self.target}' from '{p}', where a run killed while replacing it "
                                      "had moved it")
                else:
                    self._carry_over(p)
                    shutil.rmtree(p, ignore_errors=True)
                    self.notes.append(f"removed '{p}', the previous output a killed run had replaced")
        if self.target.is_dir():
            for root, dirs, files in os.walk(self.target):
                for f in files:
                    if _is_temporary(f):
                        with contextlib.suppress(OSError):
                            (Path(root) / f).unlink()
                            self.notes.append(f"removed '{Path(root) / f}', a temporary file of an interrupted run")

    def _ours(self, folder: Path) -> set[str] | None:
        """Top-level entries of ``folder`` written by rptdose (None: not an rptdose folder)."""
        entries = set(os.listdir(folder))
        doc = read_manifest(folder)
        if doc is not None:
            return {e["path"].split("/", 1)[0] for e in doc["files"]} | {MANIFEST_NAME}
        markers = {m for _c, (ms, _r) in LEGACY.items() for m in ms}
        if not entries & markers:
            return None
        pattern = re.compile("|".join(f"(?:{r})" for _ms, r in LEGACY.values()))
        return {e for e in entries if pattern.fullmatch(e) or _is_temporary(e)}

    def _check_existing(self) -> None:
        t = self.target
        if not t.is_dir():
            return
        try:
            entries = sorted(os.listdir(t))
        except OSError as exc:
            raise InputError(f"{self.option} '{self.requested}' (cannot list it: {_why(exc)}): expected a readable "
                             "folder") from None
        if entries and self._ours(t) is None:
            shown = ", ".join(repr(e) for e in entries[:3]) + (", ..." if len(entries) > 3 else "")
            count = f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'}"
            raise InputError(f"{self.option} '{self.requested}' (an existing folder that rptdose did not write: no "
                             f"{MANIFEST_NAME}; it holds {count}: {shown}): expected a new or empty folder, or one "
                             f"written by rptdose {self.command}; it is replaced as a whole")

    def _make_staging(self) -> None:
        try:
            os.mkdir(self.staging)
        except OSError as exc:
            raise InputError(f"{self.option} '{self.requested}' (cannot create a folder in '{self.parent}': "
                             f"{_why(exc)}): expected a writable folder with free space") from None
        probe = self.staging / ".probe.tmp"
        try:
            with open(probe, "wb") as fh:
                fh.write(b"\0" * 4096)
                fh.flush()
                os.fsync(fh.fileno())
            probe.unlink()
        except OSError as exc:
            raise InputError(f"{self.option} '{self.requested}' (cannot write in '{self.parent}': {_why(exc)}): "
                             "expected a writable folder with free space") from None
        free = shutil.disk_usage(self.staging).free
        if free < MIN_FREE_BYTES and not checks_disabled():
            raise InputError(f"{self.option} '{self.requested}' ({free / 2**20:.2f} MiB free on its disk): expected at "
                             f"least {MIN_FREE_BYTES / 2**20:g} MiB free, and room for the results")

    def open(self) -> OutputFolder:
        self._check_path()
        self.lock.acquire()
        try:
            self._recover()
            self._check_existing()
            self._make_staging()
        except BaseException:
            self.close()
            raise
        self._open = True
        _ACTIVE.append(self)
        return self

    def __enter__(self) -> OutputFolder:
        return self.open()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.close()
        if isinstance(exc, OutputWriteError) and not self.committed and str(self.staging) in str(exc):
            # name the file by its place in the output folder; say what happened to that folder
            err = OutputWriteError(str(exc).replace(str(self.staging), str(self.target))
                                   + f"; the output folder '{self.requested}' is as it was before this run")
            err.errno = exc.errno
            raise err from exc

    # ---- while writing ---------------------------------------------------------------------

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.staging if self.staging.exists() else self.parent).free

    def final(self, path: str | os.PathLike) -> Path:
        """Where a path in the staging folder will be after the commit."""
        p = Path(path)
        try:
            return self.target / p.relative_to(self.staging)
        except ValueError:
            return p

    # ---- commit ------------------------------------------------------------------------------

    def _manifest(self, extra: dict | None) -> dict:
        files = []
        for rel in _files(self.staging):
            if rel == MANIFEST_NAME:
                continue
            p = self.staging / rel
            files.append({"path": rel, "bytes": p.stat().st_size, "sha256": _sha256(p)})
        doc = {"format": MANIFEST_FORMAT, "format_version": MANIFEST_FORMAT_VERSION, "run_id": self.run_id,
               "command": self.command, "rptdose_version": rptdose_version(),
               "created": now_utc(),
               "host": socket.gethostname(), "pid": os.getpid(), "files": files}
        if extra:
            doc.update(extra)
        return doc

    def _carry_over(self, old: Path) -> None:
        """Entries of the old folder ``old`` that rptdose did not write, moved into the output."""
        ours = self._ours(old) or set()
        for e in sorted(set(os.listdir(old)) - ours):
            dest = self.target / e
            if dest.exists():
                dest = self.target / f"{e}.previous-{self.run_id}"
            try:
                os.rename(old / e, dest)
                self.carried.append(e)
            except OSError as exc:
                self.notes.append(f"could not keep '{old / e}' (not an rptdose output) in the new folder: {_why(exc)}")
        if self.carried:
            self.notes.append(f"kept {len(self.carried)} entries of the old folder that rptdose did not write: "
                              + ", ".join(self.carried[:5]) + (", ..." if len(self.carried) > 5 else ""))

    def commit(self, extra: dict | None = None) -> Path:
        """Write the manifest and put the staging folder in place of the output folder (module
        docstring). ``extra``: more manifest keys. Returns the output folder."""
        from rptdose import _interrupt
        from rptdose.io.atomic import fsync_dir, write_text

        if not self._open or self.committed:
            raise RuntimeError("OutputFolder.commit: not open, or already committed")
        _interrupt.check()  # a Ctrl-C swallowed on the way: keep the old output
        for root, _dirs, files in os.walk(self.staging):
            for f in files:
                if _is_temporary(f):
                    (Path(root) / f).unlink()
        doc = self._manifest(extra)
        write_text(self.staging / MANIFEST_NAME, json.dumps(doc, indent=1) + "\n")
        for root, _dirs, _files_ in os.walk(self.staging, topdown=False):
            fsync_dir(root)
        backup = None
        with contextlib.suppress(OSError):
            if self.target.is_dir():
                os.chmod(self.staging, stat.S_IMODE(os.stat(self.target).st_mode))
        with _interrupt.deferred():
            _interrupt.check()
            if os.path.lexists(self.target):
                backup = self.parent / f".{self.target.name}.previous-{self.run_id}"
                os.rename(self.target, backup)
            try:
                os.rename(self.staging, self.target)
            except BaseException:
                if backup is not None:
                    os.rename(backup, self.target)
                raise
            fsync_dir(self.parent)
            self.committed = True
        if backup is not None:
            self._carry_over(backup)
            shutil.rmtree(backup, ignore_errors=True)
        return self.target

    def close(self) -> None:
        """Discard the staging folder unless committed; release the lock."""
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        if not self.committed and self.staging.exists():
            shutil.rmtree(self.staging, ignore_errors=True)
        self._open = False
        self.lock.release()


def lock_folder(path: str | os.PathLike, *, command: str, option: str = "--output") -> FolderLock:
    """Lock the folder ``path`` (created with its parents if missing) for the duration of a command
    that writes several output folders inside it (``rptdose demo``): the same checks and the same
    lock as :class:`OutputFolder`, without the staging. Use as a context manager."""
    target = Path(os.path.abspath(path))
    with contextlib.suppress(OSError, RuntimeError):
        target = target.resolve()
    if target.parent == target or not target.name:
        raise InputError(f"{option} '{path}' (the root of a file system): expected a folder for the results")
    _check_folder_path(target, Path(path), option)
    lock = FolderLock(target, command=command, option=option).acquire()
    try:
        target.mkdir(exist_ok=True)
    except OSError as exc:
        lock.release()
        raise InputError(f"{option} '{path}' (cannot create it: {_why(exc)}): expected a writable folder") from None
    return lock
