"""rptdose's exceptions: one root class, typed children, so callers can catch selectively.

Messages follow the form "<what> (<why>): <what was expected / what to do>".
"""


class RptdoseError(Exception):
    """Root of every error rptdose raises on purpose."""


class InputError(RptdoseError, ValueError):
    """A user input (argument, file, field) is invalid; raised before any transport starts."""


class DataError(RptdoseError):
    """Physics data could not be loaded or is inconsistent (missing library, corrupt cache)."""


class BackendUnavailableError(RptdoseError, RuntimeError):
    """An explicitly requested backend cannot run here (no CUDA build, no GPU, cupy missing)."""


class OutputWriteError(RptdoseError, OSError):
    """An output could not be written (disk full, read-only, quota, I/O error, or a file that does
    not read back as written); the earlier file or output folder under that name is unchanged."""
