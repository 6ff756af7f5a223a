"""Transport: backend selection, :func:`simulate` and its :class:`SimulationResult`."""

from rptdose.transport.backends import BACKEND_NAMES, backends, register_runner, select_backend
from rptdose.transport.result import SimulationResult, load_result
from rptdose.transport.simulate import simulate

__all__ = ["BACKEND_NAMES", "SimulationResult", "backends", "load_result", "register_runner", "select_backend",
           "simulate"]
