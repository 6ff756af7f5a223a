"""rptdose: Monte Carlo absorbed dose for radiopharmaceutical therapy.

>>> import rptdose as rd
>>> ph = rd.Phantom.water(shape=(16, 16, 16), spacing_mm=(2.0, 2.0, 2.0))
>>> src = rd.Source("Lu-177", decays)                 # decays per voxel [z, y, x] (Bq*s)
>>> res = rd.simulate(ph, src, histories=10**6, seed=1)
>>> res.dose_gy, res.rel_uncertainty, res.energy_balance
>>> res.save("out.h5"); rd.load_result("out.h5")
>>> rd.backends()

Units: mm, MeV, g/cm3, s, Bq, Gy. Arrays [z, y, x] (C order); spacing, origin, direction in
(x, y, z) order as in SimpleITK/DICOM.
"""

from rptdose._provenance import rptdose_version as _rptdose_version

__version__: str = _rptdose_version()   # "0.0.0+unknown" from a source tree that is not installed

from rptdose import errors
from rptdose.analysis.compare import compare
from rptdose.analysis.radiobiology import bed, eqd2
from rptdose.fast import local_deposition, sphere_dose, voxel_s_kernel, vsv_dose
from rptdose.phantom import Phantom
from rptdose.source import Source
from rptdose.study import load_study
from rptdose.transport import SimulationResult, backends, load_result, simulate

__all__ = ["Phantom", "SimulationResult", "Source", "__version__", "backends", "bed", "compare", "eqd2", "errors",
           "load_result", "load_study", "local_deposition", "simulate", "sphere_dose", "voxel_s_kernel",
           "vsv_dose"]
