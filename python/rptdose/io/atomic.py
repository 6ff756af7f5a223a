"""Writing output files so that a failed write never damages a result: every output goes through here.

=================================  ===========================================================
function                           writes
=================================  ===========================================================
:func:`atomic_path`                a temporary path next to the file for any writer: on success
                                   the file is checked, flushed to disk and moved into place
:func:`write_bytes`                bytes (size checked after the write)
:func:`write_text`                 UTF-8 text
:func:`write_image`                a [z, y, x] array on a geometry as an image file (NIfTI ...)
:func:`write_sitk_image`           a SimpleITK image (read back and compared with what was meant)
:func:`write_figure`               a matplotlib figure (rendered in memory, then written)
:func:`h5_file`                    an h5py.File built in memory, written as one file
=================================  ===========================================================

The rules, for every file:

* it is written under a hidden temporary name in its destination folder
  (``.<stem>.tmp-<random><suffixes>``, so that writers that go by the extension behave);
* then checked: it exists and has the size written (bytes we write ourselves), or it reads
  back equal to what was meant (files written by a library that may not report its own errors:
  ITK's NIfTI writer prints ``** ERROR: NWAD: wrote only 0 of ... bytes`` on a full disk and
  returns normally);
* flushed to disk (``fsync``: on file systems that allocate late, a full disk shows here);
* moved over the final name (:func:`os.replace`, atomic) and the folder entry flushed.

If any step fails the temporary file is removed and the file under the final name, if there
was one, is untouched. Failures of the disk (full, read-only, quota, I/O) are raised as
:class:`~rptdose.errors.OutputWriteError` naming the file and the reason.

HDF5 files are built in memory (h5py on a :class:`io.BytesIO`) and written as bytes: the
HDF5 library, given a write error on a real file (ENOSPC), leaves its state broken and the
process dies with SIGSEGV at exit; in memory it cannot meet one.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rptdose.errors import InputError, OutputWriteError, RptdoseError


def temporary_name(path: Path) -> Path:
    """The hidden temporary path for ``path``, in its folder, with its suffixes."""
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f".{stem}.tmp-{secrets.token_hex(4)}{suffix}")


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is one of :func:`temporary_name`'s (or the older ``.<name>.<hex>.tmp``)."""
    return name.startswith(".") and (".tmp-" in name or name.endswith(".tmp"))


def _root_os_error(exc: BaseException) -> BaseException:
    """The OSError with an errno in the chain of ``exc`` (libraries re-raise it with their own
    message: pydicom's holds a whole traceback), else ``exc``."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno is not None:
            return e
        e = e.__cause__ or e.__context__
    return exc


def output_error(path: Path, exc: BaseException) -> OutputWriteError:
    """An OutputWriteError for a failed write of ``path`` caused by ``exc``."""
    root = _root_os_error(exc)
    if isinstance(root, OSError) and root.strerror:
        why = root.strerror
    else:
        why = (str(root).strip().splitlines() or [type(root).__name__])[0][:300]
    err = OutputWriteError(f"output file '{path}' (could not be written: {why}): expected a writable folder with "
                           "free space; the file under this name, if any, is unchanged")
    if isinstance(root, OSError):
        err.errno = root.errno
    return err


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries to disk (after a rename); a no-op where folders can't be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, size: int | None = None,
                verify: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """A temporary path next to ``path`` (same suffixes) for a writer to write; when the block
    succeeds the file is checked (it exists, is not empty, has ``size`` bytes if given, and
    ``verify(tmp)`` returns without raising), flushed to disk and moved over ``path``; when
    anything fails it is removed and ``path`` is left as it was (module docstring).

    OSErrors are raised as OutputWriteError (still an OSError) naming ``path``."""
    p = Path(path)
    tmp = temporary_name(p)
    try:
        yield tmp
        try:
            st = os.stat(tmp)
        except FileNotFoundError:
            raise OutputWriteError(f"output file '{p}' (the writer reported success but wrote no file): expected "
                                   "the file; the file under this name, if any, is unchanged") from None
        if size is not None and st.st_size != size:
            raise OutputWriteError(f"output file '{p}' (wrote {st.st_size} of {size} bytes): expected the whole "
                                   "file; is the disk full? The file under this name, if any, is unchanged")
        if size is None and st.st_size == 0:
            raise OutputWriteError(f"output file '{p}' (the writer left it empty): expected its content; is the "
                                   "disk full? The file under this name, if any, is unchanged")
        if verify is not None:
            verify(tmp)
        _fsync_file(tmp)
        os.replace(tmp, p)
        fsync_dir(p.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, RptdoseError):
            raise output_error(p, exc) from exc
        raise


def write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview) -> Path:
    """Write ``data`` to ``path`` atomically, checking the size written."""
    p = Path(path)
    view = memoryview(data).cast("B")
    with atomic_path(p, size=view.nbytes) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(view)
    return p


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def _same_array(written: np.ndarray, back: np.ndarray) -> bool:
    """Whether an image read back holds the voxels written. Where those were NaN or infinite a
    read-back 0 also counts: ITK's NIfTI reader turns them into 0 (the file keeps them)."""
    if written.shape != back.shape:
        return False
    if written.dtype.kind not in "fc":
        return bool(np.array_equal(written, back))
    finite = np.isfinite(written)
    if finite.all():
        return bool(np.array_equal(written, back))
    if not np.array_equal(written[finite], back[finite]):
        return False
    rest_w, rest_b = written[~finite], back[~finite]
    return bool(np.all((rest_b == 0) | (rest_b == rest_w) | (np.isnan(rest_w) & np.isnan(rest_b))))


def write_sitk_image(path: str | os.PathLike, image: Any, compress: bool = True) -> Path:
    """Write a SimpleITK image (format from the extension) atomically; the file is read back and
    its voxels compared with the image's (ITK writers may not report a failed write)."""
    import SimpleITK as sitk

    p = Path(path)
    expected = sitk.GetArrayViewFromImage(image)

    def verify(tmp: Path) -> None:
        try:
            back_image = sitk.ReadImage(str(tmp))  # kept: the view below points into it
            back = sitk.GetArrayViewFromImage(back_image)
        except RuntimeError as exc:
            raise OutputWriteError(f"output file '{p}' (does not read back: {' '.join(str(exc).split())[:200]}): "
                                   "expected the image just written; is the disk full? The file under this name, "
                                   "if any, is unchanged") from None
        if not _same_array(np.asarray(expected), np.asarray(back)):
            raise OutputWriteError(f"output file '{p}' (reads back different from what was written): expected the "
                                   "image just written; is the disk full? The file under this name, if any, is "
                                   "unchanged")

    with atomic_path(p, verify=verify) as tmp:
        try:
            sitk.WriteImage(image, str(tmp), useCompression=compress)
        except RuntimeError as exc:  # ITK's exceptions (cannot open for writing, ...)
            raise OutputWriteError(f"output file '{p}' (could not be written: {' '.join(str(exc).split())[:300]}): "
                                   "expected a writable folder with free space; the file under this name, if any, "
                                   "is unchanged") from None
    return p


def write_image(path: str | os.PathLike, array: np.ndarray, geometry: dict, description: str | None = None) -> Path:
    """A [z, y, x] array on ``geometry`` ({spacing_mm, origin_mm, direction}) as an image file
    (format from the extension, e.g. NIfTI .nii.gz), atomically and read back.
    ``description``: a note kept in the file (NIfTI ``descrip``, at most 80 characters)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    if description:
        img.SetMetaData("ITK_FileNotes", description[:79])
    img.SetSpacing(tuple(geometry["spacing_mm"]))
    img.SetOrigin(tuple(geometry["origin_mm"]))
    img.SetDirection(tuple(geometry["direction"]))
    return write_sitk_image(path, img)


def write_figure(path: str | os.PathLike, fig: Any) -> Path:
    """A matplotlib figure as an image file (format from the extension; PNG by default),
    rendered in memory and written atomically."""
    p = Path(path)
    fmt = p.suffix[1:].lower() or "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    return write_bytes(p, buf.getbuffer())


@contextlib.contextmanager
def h5_file(path: str | os.PathLike, name: str = "path") -> Iterator[Any]:
    """An h5py.File, open for writing, that appears at ``path`` only when the block succeeds.

    The file is built in memory and written with :func:`write_bytes` (module docstring). A
    folder in which no file can be created raises InputError at once, before any work."""
    import h5py

    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    probe = temporary_name(p)
    try:  # fail early (and as bad input) where nothing can be created
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except OSError as exc:
        raise InputError(f"{name} '{p}' (cannot write in '{folder}': {exc.strerror or exc}): expected a "
                         "writable folder") from None
    os.close(fd)
    os.unlink(probe)
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        yield f
    write_bytes(p, buf.getbuffer())
