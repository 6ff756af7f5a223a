"""Organ-level sphere model: mean self-dose of each region from uniform-sphere absorbed fractions.

For a region of mass m (kg, from the phantom's densities) holding N decays (time-integrated
activity, Bq s)::

    D = N * (sum_c E_c * phi_c(m) + E_alpha) * 1.602176634e-13 J/MeV / m,   c in {electrons, photons}

E_c is the mean energy per decay of the nuclide's electrons (beta + conversion + Auger) and
photons (gamma + X) from ICRP Publication 107 (summed over a decay chain's members per parent
decay), E_alpha that of its alphas and recoil nuclei, absorbed where they are emitted (phi = 1:
ranges 40-100 um), phi_c(m) the self-absorbed fraction of that
component in a sphere of mass m, interpolated linearly in ln(m) between tabulated masses (and
held constant beyond the table's ends, which the result flags as ``extrapolated``).

The absorbed fractions are rptdose's own Monte Carlo: for each tabulated mass, an isolated
sphere of the medium (ICRP soft tissue by default, at unit density, as in the spheres of Stabin
& Konijnenberg, J Nucl Med 41:149, 2000, used by OLINDA/EXM) voxelised with ``voxels_across``
voxels over its diameter, surrounded by one voxel of air, the decays uniform in the sphere.
The electron and the photon emissions of the nuclide are simulated apart (two Nuclide objects
holding the one or the other; for a chain, two chains of such members). Positron emitters are
refused (their annihilation photons belong to neither component): use ``mc`` or ``vsv``. phi = energy deposited in the (voxelised) sphere / energy
emitted, per decay, against the voxelised sphere's mass; uncertainty from the batch method.
Tables are cached like the kernels: ``<cache root>/spheres/<nuclide>_<key>.h5``.

The model gives self-dose only: no cross-dose from other regions, no backscatter from the
surroundings, and the region's shape and density (e.g. lung) are replaced by a unit-density
sphere of the same mass.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rptdose._validate import as_int, describe
from rptdose.errors import InputError
from rptdose.fast.kernels import (
    DEFAULT_SEED,
    Emitter,
    cache_root,
    check_medium,
    emitter_of,
)
from rptdose.fast.result import (
    J_PER_MEV,
    DoseResult,
    base_provenance,
    check_phantom_source,
)

log = logging.getLogger(__name__)

SPHERE_FORMAT_VERSION = "1"
SPHERE_KIND = "rptdose.SphereAbsorbedFractions"
#: Default sphere masses (g): 0.1 g .. 10 kg, 3 per decade.
DEFAULT_MASSES_G = tuple(float(f"{v:.3g}") for v in np.logspace(-1, 4, 16))
DEFAULT_VOXELS_ACROSS = 24
DEFAULT_HISTORIES = 1_000_000      # per sphere and component
DEFAULT_DENSITY_G_CM3 = 1.0        # unit-density spheres
COMPONENTS = ("electrons", "photons")


class SphereAbsorbedFractions:
    """Self-absorbed fractions of a nuclide's electrons and photons in spheres.

    Attributes: ``masses_kg`` (voxelised sphere masses, increasing), ``phi`` and ``rel_uncertainty``
    ({component: array}), ``energy_mev`` ({component: ICRP-107 mean energy per decay}),
    ``nuclide``, ``medium``, ``density_g_cm3``, ``cache_key``, ``provenance``, ``path``.
    """

    def __init__(self, *, masses_kg, phi: dict[str, np.ndarray], rel_uncertainty: dict[str, np.ndarray],
                 energy_mev: dict[str, float], nuclide: str, medium: str, density_g_cm3: float, cache_key: str,
                 provenance: dict[str, Any], path: Path | None = None):
        self.masses_kg = np.asarray(masses_kg, dtype=np.float64)
        self.phi = {c: np.asarray(phi[c], dtype=np.float64) for c in COMPONENTS}
        self.rel_uncertainty = {c: np.asarray(rel_uncertainty[c], dtype=np.float64) for c in COMPONENTS}
        self.energy_mev = {c: float(energy_mev[c]) for c in COMPONENTS}
        self.nuclide, self.medium = str(nuclide), str(medium)
        self.density_g_cm3 = float(density_g_cm3)
        self.cache_key = str(cache_key)
        self.provenance = provenance
        self.path = path

    def interpolate(self, mass_kg: float) -> dict[str, Any]:
        """phi and its 1-sigma (absolute) per component at ``mass_kg`` (linear in ln m), and
        whether the mass lies outside the table (held at the end value)."""
        lm = np.log(self.masses_kg)
        x = math.log(mass_kg)
        out: dict[str, Any] = {"extrapolated": bool(x < lm[0] - 1e-12 or x > lm[-1] + 1e-12)}
        j = int(np.clip(np.searchsorted(lm, x) - 1, 0, len(lm) - 2)) if len(lm) > 1 else 0
        if len(lm) == 1:
            w = (1.0, 0.0)
        else:
            t = float(np.clip((x - lm[j]) / (lm[j + 1] - lm[j]), 0.0, 1.0))
            w = (1.0 - t, t)
        for c in COMPONENTS:
            p, r = self.phi[c], self.rel_uncertainty[c]
            k2 = min(j + 1, len(p) - 1)
            out[c] = float(w[0] * p[j] + w[1] * p[k2])
            out[c + "_sigma"] = float(math.sqrt((w[0] * p[j] * r[j]) ** 2 + (w[1] * p[k2] * r[k2]) ** 2))
        return out

    def save(self, path: Any) -> Path:
        from rptdose.io.hdf5 import atomic_h5, check_output_path, to_json, write_table_header

        target = check_output_path(path)
        with atomic_h5(target) as f:
            write_table_header(f, kind=SPHERE_KIND, format_version=SPHERE_FORMAT_VERSION, provenance=self.provenance,
                               nuclide=self.nuclide, medium=self.medium, density_g_cm3=self.density_g_cm3,
                               cache_key=self.cache_key)
            f.attrs["energy_mev"] = to_json(self.energy_mev)
            f.create_dataset("masses_kg", data=self.masses_kg)
            for c in COMPONENTS:
                f.create_dataset(f"phi_{c}", data=self.phi[c])
                f.create_dataset(f"rel_uncertainty_{c}", data=self.rel_uncertainty[c])
        return target

    @classmethod
    def load(cls, path: Any) -> SphereAbsorbedFractions:
        import h5py

        from rptdose.io.hdf5 import _attr_str, read_table_header

        p = Path(path)
        try:
            with h5py.File(p, "r") as f:
                head = read_table_header(f, p, kind=SPHERE_KIND, format_version=SPHERE_FORMAT_VERSION,
                                         what="absorbed-fraction table")
                return cls(masses_kg=f["masses_kg"][()],
                           phi={c: f[f"phi_{c}"][()] for c in COMPONENTS},
                           rel_uncertainty={c: f[f"rel_uncertainty_{c}"][()] for c in COMPONENTS},
                           energy_mev=json.loads(_attr_str(f.attrs["energy_mev"])), path=p, **head)
        except (OSError, KeyError) as exc:
            raise InputError(f"absorbed-fraction file '{p}' (unreadable: {exc}): expected an rptdose sphere "
                             "absorbed-fraction table") from None


def _component_nuclides(emitter: Emitter) -> dict[str, Any]:
    """{component: Nuclide or mono spec} with only that component's emissions (None if none)."""
    if emitter.mono is not None:
        kind = emitter.mono[0]
        return {"electrons": emitter.mono if kind == "electron" else None,
                "photons": emitter.mono if kind == "photon" else None}
    from rptdose.physics.chains import DecayChain

    nuc = emitter.nuclide
    if nuc.positron_yield > 0:
        raise InputError(f"nuclide {emitter.label} (a positron emitter, {nuc.positron_yield:.4g} beta+ per decay): the "
                         "sphere model's electron/photon absorbed fractions do not hold its annihilation photons; "
                         "expected a beta-/alpha emitter, or use method 'mc' or 'vsv'")
    if isinstance(nuc, DecayChain):
        parts = [_split_components(n) for n, _ in nuc.members]
        out = {}
        for i, c in enumerate(COMPONENTS):
            members = tuple((p[i], k) for p, (_, k) in zip(parts, nuc.members) if p[i] is not None)
            out[c] = dataclasses.replace(nuc, members=members) if members else None
        return out
    electrons, photons = _split_components(nuc)
    return {"electrons": electrons, "photons": photons}


def _split_components(nuc: Any) -> tuple[Any, Any]:
    """(electron-only, photon-only) variants of a Nuclide (None where it has none); alphas in
    neither (absorbed where emitted)."""
    el_lines = tuple(line for line in nuc.lines if line[2] in ("IE", "auger"))
    ph_lines = tuple(line for line in nuc.lines if line[2] in ("gamma", "X"))
    electrons = (dataclasses.replace(nuc, lines=el_lines, alphas=(), recoils=())
                 if (nuc.beta_yield > 0 or el_lines) else None)
    photons = (dataclasses.replace(nuc, beta_yield=0.0, beta_mean_mev=0.0, beta_spectrum=(), lines=ph_lines,
                                   alphas=(), recoils=(), beta_branches=())
               if ph_lines else None)
    return electrons, photons


def _check_masses(masses_g: Any) -> tuple[float, ...]:
    try:
        m = np.asarray(masses_g, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise InputError(f"masses_g {describe(masses_g)} (not numbers): expected sphere masses in g") from None
    if m.size < 1 or not np.all(np.isfinite(m)) or np.any(m <= 0) or np.any(m > 1e6):
        raise InputError(f"masses_g {describe(masses_g)} (empty, non-positive or above 1000 kg): expected "
                         "sphere masses in g")
    return tuple(float(v) for v in np.unique(m))


def _sphere_phantom(mass_g: float, medium: str, density: float, voxels_across: int):
    from rptdose.phantom import Phantom
    from rptdose.physics.materials import get_material

    radius_mm = (3.0 * mass_g / (4.0 * math.pi * density)) ** (1.0 / 3.0) * 10.0
    a = 2.0 * radius_mm / voxels_across
    n = voxels_across + 2
    c = (np.arange(n) - (n - 1) / 2.0) * a
    inside = c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2 <= radius_mm ** 2
    air = get_material("air")
    dens = np.where(inside, density, air.density_g_cm3).astype(np.float32)
    index = np.where(inside, 0, 1).astype(np.int32)
    ph = Phantom.from_arrays(dens, index, [get_material(medium), air], (a, a, a))
    return ph, inside, radius_mm


def _cache_key(emitter: Emitter, masses, medium, density, voxels_across, histories, seed) -> str:
    from rptdose._provenance import rptdose_version
    from rptdose.physics.tables import TABLE_VERSION

    payload = json.dumps({"format": SPHERE_FORMAT_VERSION, "emitter": emitter.key,
                          "masses_g": [repr(v) for v in masses], "medium": medium, "density": repr(density),
                          "voxels_across": voxels_across, "histories": histories, "seed": seed,
                          "rptdose_version": rptdose_version(), "table_version": TABLE_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def sphere_absorbed_fractions(nuclide: Any, *, masses_g: Sequence[float] = DEFAULT_MASSES_G,
                              medium: str = "soft_tissue", density_g_cm3: float = DEFAULT_DENSITY_G_CM3,
                              voxels_across: int = DEFAULT_VOXELS_ACROSS, histories: int = DEFAULT_HISTORIES,
                              seed: int = DEFAULT_SEED, threads: int | None = None, backend: str = "auto",
                              use_cache: bool = True) -> SphereAbsorbedFractions:
    """Self-absorbed fractions of ``nuclide``'s electrons and photons in spheres of ``masses_g``
    (cached; see the module docstring)."""
    from rptdose._provenance import rptdose_version
    from rptdose.transport.simulate import simulate

    emitter = emitter_of(nuclide)
    masses = _check_masses(masses_g)
    med = check_medium(medium)
    try:
        density = float(density_g_cm3)
    except (TypeError, ValueError):
        raise InputError(f"density_g_cm3 {density_g_cm3!r} (not a number): expected g/cm3") from None
    if not 0.1 <= density <= 5.0:
        raise InputError(f"density_g_cm3 {density!r} (out of range): expected 0.1..5 g/cm3")
    voxels_across = as_int("voxels_across", voxels_across, minimum=4, maximum=200)
    histories = as_int("histories", histories, minimum=10)
    seed = as_int("seed", seed, minimum=0, maximum=2**64 - 1)
    key = _cache_key(emitter, masses, med, density, voxels_across, histories, seed)
    path = None
    if use_cache:
        try:
            safe = re.sub(r"[^A-Za-z0-9.\-]+", "_", emitter.label)
            path = cache_root() / "spheres" / f"{safe}_{med}_{key[:16]}.h5"
        except Exception as exc:
            log.info("rptdose sphere cache disabled: %s", exc)
    if path is not None and path.is_file():
        try:
            table = SphereAbsorbedFractions.load(path)
            if table.cache_key == key:
                return table
        except Exception as exc:
            log.warning("rptdose: recomputing unreadable sphere table %s (%s)", path, exc)

    t0 = time.perf_counter()
    parts = _component_nuclides(emitter)
    actual = np.zeros(len(masses))
    phi = {c: np.zeros(len(masses)) for c in COMPONENTS}
    rel = {c: np.zeros(len(masses)) for c in COMPONENTS}
    emitted = {c: np.zeros(len(masses)) for c in COMPONENTS}
    radii = []
    for i, mass_g in enumerate(masses):
        ph, inside, radius = _sphere_phantom(mass_g, med, density, voxels_across)
        radii.append(radius)
        decays = np.where(inside, 1.0 / np.count_nonzero(inside), 0.0)
        for c in COMPONENTS:
            part = parts[c]
            if part is None:
                continue
            src = emitter_of(part).source(decays)
            res = simulate(ph, src, histories=histories, seed=seed + i, backend=backend, threads=threads,
                           regions={"sphere": inside}, progress=False, precision="double")  # cached reference
            r = res.region_means["sphere"]
            actual[i] = r["mass_kg"]
            e_dep = r["mean_dose_gy"] * r["mass_kg"] / J_PER_MEV      # MeV per decay (1 decay in the map)
            e_emit = res.energy_balance["emitted_mev"]
            emitted[c][i] = e_emit
            phi[c][i] = e_dep / e_emit if e_emit > 0 else 0.0
            rel[c][i] = r["rel_uncertainty"] if e_dep > 0 else 0.0
        if actual[i] == 0.0:
            actual[i] = float(np.sum(ph.voxel_mass_kg[inside]))
    order = np.argsort(actual)
    prov = {
        "what": "self-absorbed fractions of uniform isolated spheres (Monte Carlo, rptdose.simulate)",
        "nuclide": emitter.label, "emitter": emitter.key, "medium": med, "density_g_cm3": density,
        "nominal_masses_g": list(masses), "radii_mm": radii, "voxels_across": voxels_across,
        "surroundings": "one voxel of air", "histories_per_sphere_and_component": histories,
        "seed": seed, "seeds": f"seed + sphere index ({seed}..{seed + len(masses) - 1})",
        "emitted_mev_per_decay_mc": {c: emitted[c][order].tolist() for c in COMPONENTS},
        "energy_data": "ICRP Publication 107 mean energies per decay",
        "rptdose_version": rptdose_version(), "cache_key": key, "elapsed_s": time.perf_counter() - t0,
    }
    table = SphereAbsorbedFractions(masses_kg=actual[order], phi={c: phi[c][order] for c in COMPONENTS},
                                    rel_uncertainty={c: rel[c][order] for c in COMPONENTS},
                                    energy_mev=emitter.energy_split(), nuclide=emitter.label, medium=med,
                                    density_g_cm3=density, cache_key=key, provenance=prov)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            table.save(path)
            table.path = path
        except (OSError, InputError) as exc:
            log.info("rptdose: could not write sphere table %s (%s)", path, exc)
    return table


def sphere_dose(phantom: Any, source: Any, *, regions: Any, label_names: dict[int, str] | None = None,
                table: SphereAbsorbedFractions | None = None, masses_g: Sequence[float] = DEFAULT_MASSES_G,
                medium: str = "soft_tissue", density_g_cm3: float = DEFAULT_DENSITY_G_CM3,
                voxels_across: int = DEFAULT_VOXELS_ACROSS, histories: int = DEFAULT_HISTORIES,
                seed: int = DEFAULT_SEED, threads: int | None = None, backend: str = "auto",
                use_cache: bool = True) -> DoseResult:
    """Mean self-dose (Gy) of each region by the sphere model; see the module docstring.

    Parameters
    ----------
    phantom, source : rptdose.Phantom, rptdose.Source
        Region masses from the phantom's densities; region decays from the source.
    regions : {name: bool mask} or integer label map
        The regions (required). ``dose_gy`` holds each region's mean dose in its voxels
        (where regions overlap, the smallest region's: an organ inside the body outline keeps
        its own value) and 0 elsewhere.
    table : SphereAbsorbedFractions, optional
        Absorbed fractions; by default from the cache or computed with ``masses_g``, ``medium``,
        ``density_g_cm3``, ``voxels_across``, ``histories``, ``seed`` (and ``threads``,
        ``backend``, ``use_cache``), see :func:`sphere_absorbed_fractions`.

    Returns
    -------
    DoseResult
        ``region_means`` per region: ``mean_dose_gy``, ``rel_uncertainty`` (from the absorbed
        fractions' Monte Carlo noise), ``mass_kg``, ``voxels``, ``decays``, ``phi_electrons``,
        ``phi_photons``, ``extrapolated``. ``rel_uncertainty`` (map) is None.
    """
    from rptdose.analysis.regions import normalize_regions

    t0 = time.perf_counter()
    check_phantom_source(phantom, source)
    if regions is None:
        raise InputError("regions None (missing): expected {name: bool mask} or an integer label map; the sphere "
                         "model gives a dose per region")
    masks = normalize_regions(regions, phantom.shape, label_names=label_names)
    if table is None:
        table = sphere_absorbed_fractions(source, masses_g=masses_g, medium=medium, density_g_cm3=density_g_cm3,
                                          voxels_across=voxels_across, histories=histories, seed=seed,
                                          threads=threads, backend=backend, use_cache=use_cache)
    elif not isinstance(table, SphereAbsorbedFractions):
        raise InputError(f"table {describe(table)}: expected a SphereAbsorbedFractions "
                         "(rptdose.fast.sphere.sphere_absorbed_fractions)")
    label = emitter_of(source).label
    if table.nuclide != label:
        raise InputError(f"table nuclide {table.nuclide!r} (differs from the source's {label!r}): expected "
                         "absorbed fractions of the source's nuclide")
    energy = emitter_of(source).energy_split()
    dose = np.zeros(phantom.shape)
    mass_map = phantom.voxel_mass_kg
    region_means = {}
    for name, m in masks.items():
        mass = float(np.sum(mass_map[m]))
        n = float(np.sum(source.decays[m]))
        ip = table.interpolate(mass)
        e_abs = sum(energy[c] * ip[c] for c in COMPONENTS) + energy.get("alpha", 0.0)  # MeV per decay
        sigma = math.sqrt(sum((energy[c] * ip[c + "_sigma"]) ** 2 for c in COMPONENTS))
        d = n * e_abs * J_PER_MEV / mass
        region_means[name] = {"mean_dose_gy": d, "rel_uncertainty": sigma / e_abs if e_abs > 0 else None,
                              "mass_kg": mass, "voxels": int(np.count_nonzero(m)), "decays": n,
                              "phi_electrons": ip["electrons"], "phi_photons": ip["photons"],
                              "extrapolated": ip["extrapolated"]}
    # paint the map from the largest region to the smallest, so nested regions stay visible
    for name in sorted(masks, key=lambda k: -region_means[k]["voxels"]):
        dose[masks[name]] = region_means[name]["mean_dose_gy"]
    settings = {"table_cache_key": table.cache_key, "table_file": None if table.path is None else str(table.path),
                "table_masses_kg": table.masses_kg.tolist(), "energy_mev_per_decay": energy,
                "model": "self-dose only: N * (sum_c E_c phi_c(m) + E_alpha) / m, phi linear in ln m, alphas "
                         "absorbed where emitted"}
    prov = base_provenance("sphere", phantom, source, settings)
    prov["absorbed_fractions"] = table.provenance
    prov["seed"] = table.provenance.get("seed")
    return DoseResult(method="sphere", dose_gy=dose, rel_uncertainty=None, provenance=prov,
                      spacing_mm=phantom.spacing_mm, origin_mm=phantom.origin_mm, direction=phantom.direction,
                      elapsed_s=time.perf_counter() - t0, region_means=region_means)
