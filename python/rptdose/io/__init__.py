"""Readers and writers at the edges of rptdose: CT images (SimpleITK / DICOM) and HDF5 results.

========================  ==============================================================
function                  does
========================  ==============================================================
``read_ct``               a CT in HU from a SimpleITK image, an image file or a DICOM folder
``atomic_h5``             an h5py.File that appears under its final name only on success
``write_result``          the HDF5 layout of a SimulationResult (format_version "1")
``read_result``           read it back, checking format_version
========================  ==============================================================
"""

from rptdose.io.ct import read_ct
from rptdose.io.hdf5 import FORMAT_VERSION, atomic_h5, read_result, write_result

__all__ = ["FORMAT_VERSION", "atomic_h5", "read_ct", "read_result", "write_result"]
