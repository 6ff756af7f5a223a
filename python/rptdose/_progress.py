"""Progress reporting for long transport runs (private helper of :func:`rptdose.simulate`).

The transport core calls ``progress(histories_done: int)`` from the main thread between chunks
of histories. This module turns the user's ``progress`` argument into such a callable:

=================  ==================================================================
``progress``       behaviour
=================  ==================================================================
``None`` (auto)    a tqdm bar on stderr when stderr is a terminal *and* the run has
                   more than :data:`AUTO_MIN_HISTORIES` histories; otherwise nothing
``True``           a tqdm bar on stderr whatever the terminal or the run's size
``False``          nothing
a callable         called as ``progress(histories_done)``; raising in it (e.g.
                   KeyboardInterrupt) aborts the run
=================  ==================================================================
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rptdose.errors import InputError

#: Runs with more histories than this get an automatic bar (they last more than a few seconds).
AUTO_MIN_HISTORIES = 200_000

ProgressCallback = Callable[[int], object]


def check_progress(progress: object) -> None:
    """Raise InputError unless ``progress`` is None, a bool or a callable."""
    if progress is None or isinstance(progress, bool) or callable(progress):
        return
    raise InputError(
        f"progress {progress!r} (of type {type(progress).__name__}): "
        "expected None (automatic), True, False or a callable(histories_done)"
    )


def _stderr_is_terminal() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


@contextlib.contextmanager
def progress_callback(progress: object, histories: int, desc: str = "rptdose") -> Iterator[ProgressCallback | None]:
    """Yield the callable to hand to the core (or None), closing any bar on exit.

    ``progress`` must have passed :func:`check_progress`.
    """
    if progress is False:
        yield None
        return
    if callable(progress) and not isinstance(progress, bool):
        yield progress
        return
    wanted = progress is True or (_stderr_is_terminal() and histories > AUTO_MIN_HISTORIES)
    if not wanted:
        yield None
        return

    from tqdm import tqdm

    bar = tqdm(total=histories, desc=desc, unit="hist", unit_scale=True, file=sys.stderr,
               dynamic_ncols=True, leave=False)

    def update(histories_done: int) -> None:
        bar.update(int(histories_done) - bar.n)

    try:
        yield update
    finally:
        bar.close()
