"""Argument checks shared by the public API (private).

Every check raises :class:`rptdose.errors.InputError` with a message of the form
``"<argument> <value or summary> (<why>): expected <what>"``, so the argument is always named.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from rptdose.errors import InputError

#: Largest number of voxels a grid may have (the core indexes voxels with 32-bit integers).
MAX_VOXELS = 2**31 - 1


def describe(value: object) -> str:
    """Short description of a value for an error message (arrays by shape and dtype)."""
    if isinstance(value, np.ndarray):
        return f"<array shape {value.shape} dtype {value.dtype}>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def as_int(name: str, value: object, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer argument; integral floats (``1e6``) are accepted, bools are not."""
    if isinstance(value, bool) or value is None:
        raise InputError(f"{name} {value!r} (not an integer): expected an integer")
    if isinstance(value, numbers.Integral):
        out = int(value)
    elif isinstance(value, numbers.Real) and float(value).is_integer():
        out = int(value)
    else:
        raise InputError(f"{name} {describe(value)} (not an integer): expected an integer")
    if minimum is not None and out < minimum:
        raise InputError(f"{name} {out} (too small): expected an integer >= {minimum}")
    if maximum is not None and out > maximum:
        raise InputError(f"{name} {out} (too large): expected an integer <= {maximum}")
    return out


def as_float(name: str, value: object) -> float:
    """A finite real scalar."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} {describe(value)} (not a number): expected a finite real number")
    out = float(value)
    if not np.isfinite(out):
        raise InputError(f"{name} {out} (not finite): expected a finite real number")
    return out


def as_vec3(name: str, value: object, unit: str = "mm") -> tuple[float, float, float]:
    """Three finite reals in (x, y, z) order."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise InputError(f"{name} {describe(value)} (not a sequence): expected 3 numbers (x, y, z) in {unit}")
    arr = np.asarray(value)
    if arr.shape != (3,):
        raise InputError(f"{name} {describe(value)} (shape {arr.shape}): expected 3 numbers (x, y, z) in {unit}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(f"{name} {describe(value)} (dtype {arr.dtype}): expected 3 real numbers (x, y, z) in {unit}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} {tuple(arr.tolist())} (not finite): expected 3 finite numbers (x, y, z) in {unit}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def as_grid_array(name: str, value: object, shape: tuple[int, ...] | None = None,
                  what: str = "a 3-D array [z, y, x]") -> np.ndarray:
    """A real 3-D numpy array (not copied here), optionally of a required ``shape``."""
    if value is None:
        raise InputError(f"{name} None (missing): expected {what}")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise InputError(f"{name} {describe(value)} (not convertible to an array: {exc}): expected {what}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{name} {describe(arr)} (dtype {arr.dtype} is not numeric): expected {what}")
    if np.iscomplexobj(arr):
        raise InputError(f"{name} {describe(arr)} (complex values): expected {what} of real numbers")
    if arr.ndim != 3:
        raise InputError(f"{name} {describe(arr)} ({arr.ndim}-D): expected {what}")
    if min(arr.shape) < 1:
        raise InputError(f"{name} {describe(arr)} (empty): expected {what} with at least one voxel")
    if arr.size > MAX_VOXELS:
        raise InputError(f"{name} {describe(arr)} ({arr.size} voxels): expected at most {MAX_VOXELS} voxels")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise InputError(f"{name} {describe(arr)} (shape differs from the phantom's): expected shape "
                         f"{tuple(shape)} [z, y, x]")
    return arr


def frozen(arr: np.ndarray) -> np.ndarray:
    """Mark an array that an object owns read-only, so validated data cannot change later."""
    arr.flags.writeable = False
    return arr
