"""Ctrl-C (SIGINT) and SIGTERM for the command line: never lost, always exit code 128 + signal.

Python's own SIGINT handler raises KeyboardInterrupt wherever the main thread is; where that
is inside a destructor or a callback of a C library (h5py's ``__dealloc__``, a matplotlib
callback) Python prints "Exception ignored in ..." and carries on, and a run interrupted while
writing its outputs used to end with exit code 0. :func:`installed` replaces the handlers for
the duration of a command with ones that *record* the signal before raising KeyboardInterrupt,
so that

* :func:`check` raises KeyboardInterrupt again if a signal was received and swallowed
  (:meth:`rptdose.io.outdir.OutputFolder.commit` calls it before replacing the output folder,
  which keeps the old one);
* :func:`received` tells the CLI to exit with 130 (SIGINT) or 143 (SIGTERM) whatever happened.

The transport core checks for signals (PyErr_CheckSignals) between chunks of a few tenths of a
second (csrc/host/chunking.hpp), so the handler runs, and the run stops, within about a second.
:func:`deferred` holds the signals back during the few renames that swap an output folder in.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []


def _handler(signum: int, frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def received() -> int | None:
    """The first signal recorded since :func:`installed` began, or None."""
    return _received[0] if _received else None


def check() -> None:
    """Raise KeyboardInterrupt if a signal was recorded (even if its exception was swallowed)."""
    if _received:
        raise KeyboardInterrupt


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """Record SIGINT and SIGTERM (and raise KeyboardInterrupt on them) inside the block; the
    previous handlers come back after it. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous = {s: signal.signal(s, _handler) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """SIGINT and SIGTERM held back inside the block: a signal that arrives is recorded and raised
    again (to the handler in place before) when the block ends. A no-op outside the main thread.

    Done with a handler rather than a signal mask: a process-directed signal goes to any thread
    that does not block it (ITK's and OpenMP's pools are there), and Python runs its handler in
    the main thread whichever thread received it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: object) -> None:
        held.append(signum)

    previous = {s: signal.signal(s, hold) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if held:
            signal.raise_signal(held[0])
