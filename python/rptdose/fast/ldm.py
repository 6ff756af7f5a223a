"""Local deposition method (LDM): every non-penetrating emission deposits its energy in the voxel
where the decay happens.

For each voxel i with N_i decays (time-integrated activity, Bq s) and mass m_i (kg, from the
phantom's density, i.e. the CT)::

    D_i = N_i * E_local * 1.602176634e-13 J/MeV / m_i

    E_local = E_beta + E_IE + E_Auger + E_alpha                 (photons="ignore", the default)
            = E_beta + E_IE + E_Auger + E_alpha + E_gamma + E_X  (photons="local")

with the mean energies per decay of ICRP Publication 107 (beta: branch mean energy x intensity,
beta+ kinetic energy included; conversion and Auger electrons: sum of yield x energy; alphas
with their recoil nuclei; see :class:`rptdose.physics.nuclides.Nuclide`), summed over the decay
chain's members (decays per parent decay) for a source with daughters. Annihilation photons
count as photons. A monoenergetic source contributes its energy to the electron or the photon
part according to its kind (a positron's kinetic energy to the electrons).

The method is exact where charged-particle equilibrium holds and photons escape (or deposit
locally); it ignores electron transport across voxel boundaries (blurring at the edges of hot
regions, a few mm for Lu-177 betas) and, with ``photons="ignore"``, all photon dose.
Reference for the use in RPT dosimetry: Pasciak, Bourgeois & Bradley, Front Oncol 4:121
(2014); Hou et al., J Nucl Med 62:1597 (2021).
"""

from __future__ import annotations

import time
from typing import Any

from rptdose.errors import InputError
from rptdose.fast.result import (
    J_PER_MEV,
    DoseResult,
    base_provenance,
    check_phantom_source,
    region_table,
)

#: Choices of ``photons``.
PHOTON_MODES = ("ignore", "local")


def emitted_energy_split(source: Any) -> dict[str, float]:
    """Mean energy per decay (MeV) of the source's electrons and photons.

    Nuclides: ICRP-107 means (``electrons`` = beta + conversion + Auger; ``photons`` = gamma +
    X). Monoenergetic sources: their one particle.
    """
    nuclide = getattr(source, "_nuclide", None)  # Nuclide or DecayChain (None if mono)
    if nuclide is not None:
        return {"electrons": float(nuclide.electron_mev_per_decay),
                "photons": float(nuclide.photon_mev_per_decay),
                "alpha": float(nuclide.alpha_recoil_mev_per_decay),
                "beta": float(nuclide.beta_mev_per_decay), "IE": float(nuclide.ie_mev_per_decay),
                "auger": float(nuclide.auger_mev_per_decay)}
    kind, energy = source._mono
    return {"electrons": energy if kind in ("electron", "positron") else 0.0,
            "photons": energy if kind == "photon" else 0.0, "alpha": 0.0}


def local_deposition(phantom: Any, source: Any, *, photons: str = "ignore", regions: Any = None,
                     label_names: dict[int, str] | None = None) -> DoseResult:
    """Absorbed dose (Gy) by local deposition of the non-penetrating emissions.

    Parameters
    ----------
    phantom : rptdose.Phantom
        Voxel masses come from its density (the CT).
    source : rptdose.Source
        Decays per voxel (Bq s) and the nuclide.
    photons : "ignore" or "local"
        Photon (gamma + X) energy ignored (default; the usual LDM for beta emitters) or
        deposited locally too (an upper bound on the absorbed energy).
    regions : {name: bool mask} or integer label map, optional
        Regions whose mean dose (energy / mass) is reported in ``region_means``.

    Returns
    -------
    DoseResult
        ``dose_gy``; ``rel_uncertainty`` is None (the method is deterministic).
    """
    from rptdose.analysis.regions import normalize_regions

    t0 = time.perf_counter()
    check_phantom_source(phantom, source)
    if not isinstance(photons, str) or photons not in PHOTON_MODES:
        raise InputError(f"photons {photons!r} (unknown): expected one of {', '.join(PHOTON_MODES)}")
    masks = normalize_regions(regions, phantom.shape, label_names=label_names)
    split = emitted_energy_split(source)
    e_local = split["electrons"] + split["alpha"] + (split["photons"] if photons == "local" else 0.0)

    # Gy = decays * MeV * J/MeV / (density [g/cm3] * volume [mm3] * 1e-6 kg/(g/cm3 mm3))
    sx, sy, sz = phantom.spacing_mm
    dose = source.decays * (e_local * J_PER_MEV / (sx * sy * sz * 1e-6))
    dose /= phantom.density
    settings = {"photons": photons, "local_mev_per_decay": e_local, "energy_split_mev": split,
                "energy_data": "ICRP Publication 107 mean energies per decay"}
    prov = base_provenance("ldm", phantom, source, settings)
    prov["description"] = ("local deposition: decays x mean non-penetrating energy per decay / voxel mass"
                           + ("; photons deposited locally" if photons == "local" else "; photons ignored"))
    reg = region_table(masks, dose, phantom.voxel_mass_kg,
                       None if masks is None else {k: 0.0 for k in masks})
    return DoseResult(method="ldm", dose_gy=dose, rel_uncertainty=None, provenance=prov,
                      spacing_mm=phantom.spacing_mm, origin_mm=phantom.origin_mm, direction=phantom.direction,
                      elapsed_s=time.perf_counter() - t0, region_means=reg)
