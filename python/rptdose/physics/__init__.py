"""Physics data for rptdose: nuclides (ICRP-107), materials and the HU calibration, photon and
electron interaction tables for the transport core (see docs/core_contract.md).

Heavy libraries (xraylib, icrp107-database) are imported only when data are requested.
"""

from .materials import (
    MATERIAL_NAMES,
    HUCalibration,
    Material,
    bragg_mean_excitation_ev,
    get_material,
)
from .nuclides import Nuclide, available_nuclides, load_nuclide, monoenergetic_emissions
from .tables import energy_grid, transport_tables

__all__ = [
    "MATERIAL_NAMES",
    "HUCalibration",
    "Material",
    "Nuclide",
    "available_nuclides",
    "bragg_mean_excitation_ev",
    "energy_grid",
    "get_material",
    "load_nuclide",
    "monoenergetic_emissions",
    "transport_tables",
]
