"""Fast dose methods, to benchmark against Monte Carlo.

==================  ===========================================  ==================================
method              function                                     module
==================  ===========================================  ==================================
``"ldm"``           :func:`local_deposition` (``rd.local_deposition``)  :mod:`rptdose.fast.ldm`
``"vsv"``           :func:`vsv_dose` (``rd.vsv_dose``)           :mod:`rptdose.fast.vsv`,
                                                                 kernels: :mod:`rptdose.fast.kernels`
``"sphere"``        :func:`sphere_dose` (``rd.sphere_dose``)     :mod:`rptdose.fast.sphere`
==================  ===========================================  ==================================

Every method is ``method(phantom, source, **options) -> DoseResult`` (``dose_gy``,
``rel_uncertainty`` or None, ``region_means``, ``provenance``, ``save``), so a driver can
dispatch on :data:`METHODS`.
"""

from rptdose.fast.kernels import VoxelSKernel, load_kernel, voxel_s_kernel
from rptdose.fast.ldm import local_deposition
from rptdose.fast.result import DoseResult
from rptdose.fast.sphere import (
           SphereAbsorbedFractions,
           sphere_absorbed_fractions,
           sphere_dose,
)
from rptdose.fast.vsv import vsv_dose

#: name -> method(phantom, source, **options) -> DoseResult
METHODS = {"ldm": local_deposition, "vsv": vsv_dose, "sphere": sphere_dose}

__all__ = ["METHODS", "DoseResult", "SphereAbsorbedFractions", "VoxelSKernel", "load_kernel", "local_deposition",
           "sphere_absorbed_fractions", "sphere_dose", "voxel_s_kernel", "vsv_dose"]
