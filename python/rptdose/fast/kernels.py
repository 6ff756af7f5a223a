"""Voxel S-value kernels computed by rptdose's own Monte Carlo, with an on-disk cache.

A voxel S-value kernel S(d) is the mean absorbed dose (Gy) in the voxel at offset
d = (dz, dy, dx) voxels from a source voxel, per decay in the source voxel, the decay position
uniform in the source voxel, in a homogeneous infinite medium (MIRD Pamphlet 17, Bolch et al.,
J Nucl Med 40:11S, 1999). Here:

* the medium is water (1.0 g/cm3, default) or ICRP soft tissue (1.03 g/cm3), a cuboid of
  (2k+1) + 2 * ceil(margin_mm / voxel) voxels per axis (``margin_mm`` default 50 mm around
  the kernel, standing in for the infinite medium: it returns the photons' backscatter);
* :func:`rptdose.simulate` transports ``histories`` decays from the centre voxel with full
  electron and photon transport; the kernel is the centre (2k+1)^3 block of dose per decay;
* the kernel is averaged over the symmetries of the geometry (the 8 reflections, and the
  permutations of axes with equal voxel size and half-width: 48 operations for cubic voxels),
  which cuts its noise without bias. ``rel_uncertainty`` is the batch-method 1-sigma relative
  uncertainty of each stored (averaged) value; ``orbit_size`` is the number of distinct voxels
  averaged into it.

Voxels are (x, y, z) sizes in mm (one value: cubic). The half-width k is the number of voxels on
each side of the centre (one value or (kx, ky, kz)). Arrays are [z, y, x].

Cache: ``<cache root>/kernels/<nuclide>_<voxel>_k<k>_<key>.h5``, the cache root being
``$RPTDOSE_CACHE_DIR`` if set, else ``platformdirs.user_cache_dir('rptdose')`` (as for the
physics tables, :mod:`rptdose.physics.tables`). The key is a sha256 of everything the kernel
depends on (emitter, voxel, k, medium, margin, histories, seed, symmetrisation, the rptdose
version, the kernel format and the transport-table version). Files are written atomically; an
unreadable or mismatching file is recomputed; an unwritable cache only disables caching.

Kernel file layout (HDF5, ``format_version`` "1", ``kind`` "rptdose.VoxelSKernel"):

=====================  =========  ===================  =======================================
name                   kind       type                 content
=====================  =========  ===================  =======================================
``s_gy_per_decay``     dataset    float64 [z, y, x]    S-values, Gy per decay
``rel_uncertainty``    dataset    float64 [z, y, x]    relative 1-sigma of each S-value
``orbit_size``         dataset    int32 [z, y, x]      voxels averaged into each value
``voxel_mm``           attr       float64 (3,)         (x, y, z) mm
``half_width``         attr       int64 (3,)           (kx, ky, kz)
``nuclide``            attr       str                  e.g. "Lu-177"
``medium``             attr       str                  "water" or "soft_tissue"
``density_g_cm3``      attr       float64              density of the medium
``cache_key``          attr       str                  sha256 of the inputs
``provenance``         attr       str (JSON)           nuclide, voxel, histories, seed, rptdose
                                                       version, uncertainty, timing, ...
=====================  =========  ===================  =======================================
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rptdose._validate import as_int, describe
from rptdose.errors import InputError
from rptdose.transport.simulate import J_PER_MEV

log = logging.getLogger(__name__)

KERNEL_FORMAT_VERSION = "1"
KERNEL_KIND = "rptdose.VoxelSKernel"
#: Defaults (each declared once; the CLI and vsv_dose use them).
DEFAULT_HALF_WIDTH = 10          # voxels each side: 21^3 kernel
DEFAULT_HISTORIES = 10_000_000   # decays simulated for a kernel
DEFAULT_SEED = 1
DEFAULT_MARGIN_MM = 50.0         # medium around the kernel block (backscatter)
MEDIA = ("water", "soft_tissue")


# ---- cache folder --------------------------------------------------------------------------
def cache_root() -> Path:
    """$RPTDOSE_CACHE_DIR, else platformdirs.user_cache_dir('rptdose') (as physics/tables.py)."""
    env = os.environ.get("RPTDOSE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("rptdose"))


def kernel_cache_dir() -> Path:
    """Folder of the kernel cache."""
    return cache_root() / "kernels"


# ---- argument checks -----------------------------------------------------------------------
def check_voxel_mm(voxel_mm: Any, name: str = "voxel_mm") -> tuple[float, float, float]:
    """Voxel size: one value (cubic) or (x, y, z), mm, each in [0.01, 100]."""
    vals = np.atleast_1d(np.asarray(voxel_mm, dtype=object))
    try:
        arr = np.array([float(v) for v in vals.ravel()], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} {describe(voxel_mm)} (not numbers): expected 1 or 3 voxel sizes (x, y, z) "
                         "in mm") from None
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    if arr.size != 3 or not np.all(np.isfinite(arr)):
        raise InputError(f"{name} {describe(voxel_mm)} ({arr.size} values): expected 1 or 3 finite voxel sizes "
                         "(x, y, z) in mm")
    if np.any(arr < 0.01) or np.any(arr > 100.0):
        raise InputError(f"{name} {tuple(arr.tolist())} (out of range): expected voxel sizes in [0.01, 100] mm")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def check_half_width(half_width: Any, name: str = "half_width") -> tuple[int, int, int]:
    """Kernel half-width in voxels: one integer or (kx, ky, kz), each 0..100."""
    if isinstance(half_width, (Sequence, np.ndarray)) and not isinstance(half_width, (str, bytes)):
        vals = list(half_width)
        if len(vals) == 1:
            vals = vals * 3
        if len(vals) != 3:
            raise InputError(f"{name} {describe(half_width)} ({len(vals)} values): expected 1 or 3 integers "
                             "(kx, ky, kz)")
    else:
        vals = [half_width] * 3
    out = tuple(as_int(f"{name}", v, minimum=0, maximum=100) for v in vals)
    return out  # type: ignore[return-value]


def check_margin_mm(margin_mm: Any) -> float:
    """Medium around the kernel block (mm), 0..1000."""
    if isinstance(margin_mm, bool):
        margin_mm = None
    try:
        margin = float(margin_mm)
    except (TypeError, ValueError):
        raise InputError(f"margin_mm {margin_mm!r} (not a number): expected mm of medium around the kernel") from None
    if not (0.0 <= margin <= 1000.0):
        raise InputError(f"margin_mm {margin!r} (out of range): expected 0..1000 mm of medium around the kernel")
    return margin


def check_medium(medium: Any) -> str:
    if not isinstance(medium, str) or medium.strip().lower().replace("-", "_").replace(" ", "_") not in MEDIA:
        raise InputError(f"medium {medium!r} (unknown): expected one of {', '.join(MEDIA)}")
    return medium.strip().lower().replace("-", "_").replace(" ", "_")


# ---- what decays ---------------------------------------------------------------------------
class Emitter:
    """What a kernel or an absorbed-fraction table is computed for: a nuclide or a
    monoenergetic particle. ``label`` names it, ``key`` identifies it for the cache."""

    def __init__(self, label: str, key: dict[str, Any], nuclide: Any = None, mono: tuple[str, float] | None = None):
        self.label = label
        self.key = key
        self.nuclide = nuclide    # Nuclide, DecayChain (a nuclide with its daughters) or None
        self.mono = mono          # ("electron" | "photon" | "positron", MeV) or None

    def source(self, decays: np.ndarray) -> Any:
        from rptdose.physics.nuclides import Nuclide
        from rptdose.source import Source

        if self.mono is not None:
            return Source.monoenergetic(self.mono[0], self.mono[1], decays)
        # a Nuclide is exactly what decays (its chain, if any, is a DecayChain emitter)
        return Source(self.nuclide, decays, chain="parent" if isinstance(self.nuclide, Nuclide) else None)

    def energy_split(self) -> dict[str, float]:
        """Mean electron, photon and alpha (+ recoil) energy per decay (MeV; ICRP-107 for
        nuclides, summed over a chain's members per parent decay)."""
        if self.mono is not None:
            kind, e = self.mono
            return {"electrons": e if kind in ("electron", "positron") else 0.0,
                    "photons": e if kind == "photon" else 0.0, "alpha": 0.0}
        return {"electrons": float(self.nuclide.electron_mev_per_decay),
                "photons": float(self.nuclide.photon_mev_per_decay),
                "alpha": float(self.nuclide.alpha_recoil_mev_per_decay)}


def emitter_of(spec: Any) -> Emitter:
    """An :class:`Emitter` from a nuclide name (with its default decay chain), a Nuclide (alone),
    a DecayChain, ``("electron"|"photon"|"positron", MeV)`` or a :class:`rptdose.Source` (its
    nuclide and chain, or monoenergetic particle). A chain with daughters is labelled
    ``"<parent>+chain"`` (so a kernel of the parent alone is never taken for it)."""
    from rptdose.physics.chains import DecayChain, decay_chain
    from rptdose.physics.nuclides import Nuclide, load_nuclide
    from rptdose.source import Source

    if isinstance(spec, Source):
        if spec.is_monoenergetic:
            spec = tuple(spec._mono)  # Source keeps (kind, MeV) of a monoenergetic source
        else:
            spec = spec._nuclide
    if isinstance(spec, str):
        chain = decay_chain(spec)  # InputError naming the nuclide when unknown
        spec = chain if chain.has_daughters else chain.parent
    if isinstance(spec, DecayChain):
        if not spec.has_daughters:
            spec = spec.parent
        else:
            key = {"nuclide": spec.name, "chain": spec.mode, "data": spec.source,
                   "members": [[n.name, repr(float(k))] for n, k in spec.members]}
            standard = all(load_nuclide(n.name) == n for n, _ in spec.members)
            if not standard:
                key["custom_sha256"] = hashlib.sha256(repr(spec.members).encode()).hexdigest()
            return Emitter(f"{spec.name}+chain" + ("" if standard else f"-custom-{key['custom_sha256'][:8]}"), key,
                           nuclide=spec)
    if isinstance(spec, Nuclide):
        try:
            standard = load_nuclide(spec.name) == spec
        except InputError:
            standard = False
        if standard:
            return Emitter(spec.name, {"nuclide": spec.name, "data": spec.source}, nuclide=spec)
        digest = hashlib.sha256(repr(spec).encode()).hexdigest()
        return Emitter(f"{spec.name}-custom-{digest[:8]}", {"nuclide": spec.name, "custom_sha256": digest},
                       nuclide=spec)
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
        kind = spec[0].strip().lower()
        if kind not in ("electron", "photon", "positron"):
            raise InputError(f"emitter {spec!r} (unknown particle {spec[0]!r}): expected ('electron', 'photon' "
                             "or 'positron', energy in MeV)")
        try:
            energy = float(spec[1])
        except (TypeError, ValueError):
            raise InputError(f"emitter {spec!r} (energy not a number): expected ('electron' or 'photon', "
                             "energy in MeV)") from None
        return Emitter(f"mono-{kind}-{energy:.6g}MeV", {"mono": [kind, repr(energy)]}, mono=(kind, energy))
    raise InputError(f"nuclide {describe(spec)} (of type {type(spec).__name__}): expected a nuclide name such "
                     "as 'Lu-177', a rptdose.physics.nuclides.Nuclide, ('electron'|'photon', MeV) or a Source")


# ---- the kernel object ---------------------------------------------------------------------
class VoxelSKernel:
    """A voxel S-value kernel; see the module docstring.

    Attributes: ``s_gy_per_decay``, ``rel_uncertainty``, ``orbit_size`` (arrays [z, y, x],
    read-only), ``voxel_mm`` (x, y, z), ``half_width`` (kx, ky, kz), ``nuclide``, ``medium``,
    ``density_g_cm3``, ``cache_key``, ``provenance`` (dict), ``path`` (file it came from, or None).
    """

    def __init__(self, *, s_gy_per_decay: np.ndarray, rel_uncertainty: np.ndarray, orbit_size: np.ndarray,
                 voxel_mm: Sequence[float], nuclide: str, medium: str, density_g_cm3: float, cache_key: str,
                 provenance: dict[str, Any], path: Path | None = None):
        s = np.ascontiguousarray(s_gy_per_decay, dtype=np.float64)
        if s.ndim != 3 or any(n % 2 == 0 for n in s.shape):
            raise InputError(f"s_gy_per_decay {describe(s)} (not 3-D with odd sizes): expected a centred "
                             "(2kz+1, 2ky+1, 2kx+1) kernel")
        rel = np.ascontiguousarray(rel_uncertainty, dtype=np.float64)
        orb = np.ascontiguousarray(orbit_size, dtype=np.int32)
        if rel.shape != s.shape or orb.shape != s.shape:
            raise InputError("kernel arrays (shapes differ): expected s_gy_per_decay, rel_uncertainty and "
                             "orbit_size of one shape")
        for a in (s, rel, orb):
            a.flags.writeable = False
        self.s_gy_per_decay, self.rel_uncertainty, self.orbit_size = s, rel, orb
        self.voxel_mm = check_voxel_mm(voxel_mm)
        self.nuclide = str(nuclide)
        self.medium = str(medium)
        self.density_g_cm3 = float(density_g_cm3)
        self.cache_key = str(cache_key)
        self.provenance = provenance
        self.path = path

    @property
    def half_width(self) -> tuple[int, int, int]:
        """(kx, ky, kz) voxels on each side of the centre."""
        nz, ny, nx = self.s_gy_per_decay.shape
        return (nx // 2, ny // 2, nz // 2)

    @property
    def centre(self) -> tuple[int, int, int]:
        """Index [z, y, x] of the source voxel."""
        kx, ky, kz = self.half_width
        return (kz, ky, kx)

    def variance_upper_bound(self) -> np.ndarray:
        """Per-voxel variance (Gy^2 per decay^2) to propagate as if the kernel voxels were
        independent: sigma^2 * orbit_size. Voxels of one orbit share one averaged value (fully
        correlated); by Cauchy-Schwarz, (sum_o a)^2 <= n_o sum_o a^2, so propagating with this
        variance and independence bounds the true variance of any linear combination from above.
        """
        return (self.s_gy_per_decay * self.rel_uncertainty) ** 2 * self.orbit_size

    def save(self, path: Any) -> Path:
        """Write the kernel to an HDF5 file, atomically; returns the path."""
        from rptdose.io.hdf5 import atomic_h5, check_output_path, write_table_header

        target = check_output_path(path)
        with atomic_h5(target) as f:
            write_table_header(f, kind=KERNEL_KIND, format_version=KERNEL_FORMAT_VERSION, provenance=self.provenance,
                               nuclide=self.nuclide, medium=self.medium, density_g_cm3=self.density_g_cm3,
                               cache_key=self.cache_key)
            f.attrs["voxel_mm"] = np.asarray(self.voxel_mm, dtype=np.float64)
            f.attrs["half_width"] = np.asarray(self.half_width, dtype=np.int64)
            for name, arr, unit in (("s_gy_per_decay", self.s_gy_per_decay, "Gy per decay"),
                                    ("rel_uncertainty", self.rel_uncertainty, "1 (relative 1-sigma)"),
                                    ("orbit_size", self.orbit_size, "voxels")):
                ds = f.create_dataset(name, data=arr)
                ds.attrs["units"] = unit
                ds.attrs["axes"] = "z, y, x"
        return target

    @classmethod
    def load(cls, path: Any) -> VoxelSKernel:
        """Read a kernel file; InputError naming the file if it is not one (or of another format)."""
        import h5py

        from rptdose.io.hdf5 import read_table_header

        p = Path(path)
        if not p.is_file():
            raise InputError(f"kernel file '{p}' (does not exist): expected an rptdose voxel S-value kernel (.h5)")
        try:
            with h5py.File(p, "r") as f:
                head = read_table_header(f, p, kind=KERNEL_KIND, format_version=KERNEL_FORMAT_VERSION,
                                         what="kernel")
                return cls(s_gy_per_decay=f["s_gy_per_decay"][()], rel_uncertainty=f["rel_uncertainty"][()],
                           orbit_size=f["orbit_size"][()], voxel_mm=tuple(f.attrs["voxel_mm"]), path=p, **head)
        except OSError as exc:
            raise InputError(f"kernel file '{p}' (not readable HDF5: {exc}): expected an rptdose voxel S-value "
                             "kernel (.h5)") from None
        except KeyError as exc:
            raise InputError(f"kernel file '{p}' (missing {exc}): expected a complete kernel; the file is "
                             "damaged") from None

    def __repr__(self) -> str:
        kx, ky, kz = self.half_width
        return (f"VoxelSKernel({self.nuclide!r}, voxel_mm={self.voxel_mm}, half_width=({kx}, {ky}, {kz}), "
                f"medium={self.medium!r}, S(0)={self.s_gy_per_decay[self.centre]:.4g} Gy/decay)")


def load_kernel(path: Any) -> VoxelSKernel:
    """Read a kernel written by :meth:`VoxelSKernel.save` or ``rptdose kernel``."""
    return VoxelSKernel.load(path)


# ---- symmetrisation ------------------------------------------------------------------------
def symmetry_ops(shape: tuple[int, int, int], voxel_mm: tuple[float, float, float]) -> list[tuple[tuple, tuple]]:
    """The (axis permutation, flips) of a centred [z, y, x] block that map the geometry onto
    itself: all 8 reflections, and the permutations of axes of equal size and voxel size."""
    sp = tuple(voxel_mm[::-1])  # per array axis (z, y, x)
    perms = [p for p in itertools.permutations(range(3))
             if all(shape[p[i]] == shape[i] and math.isclose(sp[p[i]], sp[i], rel_tol=1e-9) for i in range(3))]
    return [(p, f) for p in perms for f in itertools.product((False, True), repeat=3)]


def _apply(a: np.ndarray, op: tuple[tuple, tuple]) -> np.ndarray:
    p, flips = op
    b = np.transpose(a, p)
    axes = tuple(ax for ax in range(3) if flips[ax])
    return np.flip(b, axes) if axes else b


def symmetrize(s: np.ndarray, var: np.ndarray, voxel_mm: tuple[float, float, float]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average ``s`` over the geometry's symmetries: (mean, variance of the mean, orbit size).

    Each value becomes the mean of the n distinct voxels of its orbit; taking those voxels as
    independent, its variance is the orbit's mean variance / n.
    """
    ops = symmetry_ops(s.shape, voxel_mm)
    idx = np.arange(s.size).reshape(s.shape)
    images = np.stack([_apply(idx, op).ravel() for op in ops])        # [G, N]
    images.sort(axis=0)
    orbit = (1 + np.count_nonzero(np.diff(images, axis=0), axis=0)).reshape(s.shape).astype(np.int32)
    mean = sum(_apply(s, op) for op in ops) / len(ops)
    mean_var = sum(_apply(var, op) for op in ops) / len(ops)
    return np.ascontiguousarray(mean), np.ascontiguousarray(mean_var / orbit), orbit


# ---- computing and caching -----------------------------------------------------------------
def _cache_key(emitter: Emitter, voxel_mm, half_width, medium, margin_mm, histories, seed, symmetrized) -> str:
    from rptdose._provenance import rptdose_version
    from rptdose.physics.tables import TABLE_VERSION

    payload = json.dumps({"format": KERNEL_FORMAT_VERSION, "emitter": emitter.key,
                          "voxel_mm": [repr(float(v)) for v in voxel_mm], "half_width": list(half_width),
                          "medium": medium, "margin_mm": repr(float(margin_mm)), "histories": int(histories),
                          "seed": int(seed), "symmetrized": bool(symmetrized), "rptdose_version": rptdose_version(),
                          "table_version": TABLE_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _file_name(label: str, voxel_mm, half_width, key: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9.\-]+", "_", label)
    vox = "x".join(f"{v:g}" for v in voxel_mm)
    k = half_width[0] if len(set(half_width)) == 1 else "x".join(str(v) for v in half_width)
    return f"{safe}_{vox}mm_k{k}_{key[:16]}.h5"


def compute_kernel(nuclide: Any, voxel_mm: Any, *, half_width: Any = DEFAULT_HALF_WIDTH,
                   histories: int = DEFAULT_HISTORIES, seed: int = DEFAULT_SEED, medium: str = "water",
                   margin_mm: float = DEFAULT_MARGIN_MM, symmetrized: bool = True, threads: int | None = None,
                   backend: str = "auto", progress: Any = None) -> VoxelSKernel:
    """Compute a kernel by Monte Carlo (no cache); see the module docstring and
    :func:`voxel_s_kernel` for the arguments."""
    from rptdose._provenance import rptdose_version
    from rptdose.phantom import Phantom
    from rptdose.physics.materials import get_material
    from rptdose.transport.simulate import simulate

    emitter = emitter_of(nuclide)
    voxel = check_voxel_mm(voxel_mm)
    k = check_half_width(half_width)
    med = check_medium(medium)
    histories = as_int("histories", histories, minimum=10)
    seed = as_int("seed", seed, minimum=0, maximum=2**64 - 1)
    margin = check_margin_mm(margin_mm)
    key = _cache_key(emitter, voxel, k, med, margin, histories, seed, symmetrized)

    mat = get_material(med)
    m = tuple(int(math.ceil(margin / v - 1e-9)) for v in voxel)                 # (x, y, z) margin voxels
    shape = tuple(2 * k[a] + 1 + 2 * m[a] for a in (2, 1, 0))                    # (nz, ny, nx)
    if np.prod(shape, dtype=np.float64) > 2e8:
        raise InputError(f"kernel phantom {shape} voxels (too large): expected a smaller half_width or "
                         "margin_mm for voxel {voxel} mm")
    centre = tuple(n // 2 for n in shape)
    density = np.full(shape, mat.density_g_cm3, dtype=np.float32)
    phantom = Phantom.from_arrays(density, np.zeros(shape, dtype=np.int32), [mat], voxel)
    decays = np.zeros(shape)
    decays[centre] = 1.0
    t0 = time.perf_counter()
    # double precision on every device: a cached kernel is a reference, whatever computed it
    res = simulate(phantom, emitter.source(decays), histories=histories, seed=seed, backend=backend,
                   threads=threads, progress=progress, precision="double")
    sl = tuple(slice(c - kk, c + kk + 1) for c, kk in zip(centre, (k[2], k[1], k[0])))
    s = np.array(res.dose_gy[sl], dtype=np.float64)       # Gy per decay (one decay in the map)
    rel = np.array(res.rel_uncertainty[sl], dtype=np.float64)
    var = (s * rel) ** 2
    if symmetrized:
        s, var, orbit = symmetrize(s, var, voxel)
    else:
        orbit = np.ones(s.shape, dtype=np.int32)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(s > 0, np.sqrt(var) / s, 1.0)
    elapsed = time.perf_counter() - t0

    voxel_mass_kg = mat.density_g_cm3 * voxel[0] * voxel[1] * voxel[2] * 1e-6
    emitted = res.energy_balance["emitted_mev"]
    kc = (k[2], k[1], k[0])
    neighbours = [rel[kc[0], kc[1], kc[2] + 1] if k[0] > 0 else None,
                  rel[kc[0] + 1, kc[1], kc[2]] if k[2] > 0 else None]
    sim_prov = res.provenance
    prov = {
        "what": "voxel S-value kernel: mean dose (Gy) per decay uniform in the centre voxel, homogeneous medium",
        "nuclide": emitter.label, "emitter": emitter.key, "voxel_mm": list(voxel), "half_width": list(k),
        "kernel_shape_zyx": list(s.shape), "medium": med, "density_g_cm3": mat.density_g_cm3,
        "margin_mm": margin, "phantom_shape_zyx": list(shape), "histories": histories, "seed": seed,
        "batches": res.batches, "backend": res.backend, "electron_transport": True,
        "symmetrized": bool(symmetrized),
        "symmetry_operations": len(symmetry_ops(s.shape, voxel)) if symmetrized else 1,
        "rptdose_version": rptdose_version(), "cache_key": key,
        "statistical_uncertainty": {
            "centre_voxel_rel": float(rel[kc]),
            "first_neighbour_rel_x": None if neighbours[0] is None else float(neighbours[0]),
            "first_neighbour_rel_z": None if neighbours[1] is None else float(neighbours[1]),
            "max_rel_where_s_above_1pct_of_centre": float(np.max(rel[s >= 0.01 * s[kc]])),
        },
        "emitted_mev_per_decay": emitted,
        "fraction_of_emitted_energy_in_kernel": float(np.sum(s) * voxel_mass_kg / J_PER_MEV / emitted)
        if emitted > 0 else None,
        "elapsed_s": elapsed,
        "transport_provenance": {k2: sim_prov.get(k2) for k2 in (
            "rptdose_version", "core_version", "tracking_cuts_mev", "physics_data", "materials", "versions",
            "platform", "threads_used") if k2 in sim_prov},
        "created_utc": sim_prov.get("timestamp_utc"),
    }
    return VoxelSKernel(s_gy_per_decay=s, rel_uncertainty=rel, orbit_size=orbit, voxel_mm=voxel,
                        nuclide=emitter.label, medium=med, density_g_cm3=mat.density_g_cm3, cache_key=key,
                        provenance=prov)


def voxel_s_kernel(nuclide: Any, voxel_mm: Any, *, half_width: Any = DEFAULT_HALF_WIDTH,
                   histories: int = DEFAULT_HISTORIES, seed: int = DEFAULT_SEED, medium: str = "water",
                   margin_mm: float = DEFAULT_MARGIN_MM, symmetrized: bool = True, threads: int | None = None,
                   backend: str = "auto", use_cache: bool = True, progress: Any = None) -> VoxelSKernel:
    """The voxel S-value kernel of ``nuclide`` for ``voxel_mm``, from the cache or computed.

    Parameters
    ----------
    nuclide : str, Nuclide, ("electron"|"photon", MeV) or Source
        What decays.
    voxel_mm : float or (x, y, z)
        Voxel size in mm (anisotropic voxels allowed).
    half_width : int or (kx, ky, kz)
        Voxels on each side of the centre (default 10: a 21^3 kernel).
    histories, seed : int
        Decays simulated (default 1e7) and the random seed: part of the cache key.
    medium : "water" or "soft_tissue"
        Homogeneous medium of the kernel.
    margin_mm : float
        Medium around the kernel block (default 50 mm).
    symmetrized : bool
        Average over the geometry's symmetries (default True).
    threads, backend, progress
        As for :func:`rptdose.simulate` (not part of the key: results are backend-reproducible
        to statistics, and bit-identical for any thread count).
    use_cache : bool
        Read / write the cache (default True).
    """
    emitter = emitter_of(nuclide)
    voxel = check_voxel_mm(voxel_mm)
    k = check_half_width(half_width)
    med = check_medium(medium)
    histories = as_int("histories", histories, minimum=10)
    seed = as_int("seed", seed, minimum=0, maximum=2**64 - 1)
    key = _cache_key(emitter, voxel, k, med, check_margin_mm(margin_mm), histories, seed, symmetrized)
    path = None
    if use_cache:
        try:
            path = kernel_cache_dir() / _file_name(emitter.label, voxel, k, key)
        except Exception as exc:  # platformdirs missing or unusable: no cache
            log.info("rptdose kernel cache disabled: %s", exc)
    if path is not None and path.is_file():
        try:
            kern = VoxelSKernel.load(path)
            if kern.cache_key == key:
                return kern
            log.warning("rptdose: kernel cache file %s has another key; recomputing", path)
        except Exception as exc:  # corrupt, truncated, stale: recompute
            log.warning("rptdose: recomputing unreadable kernel cache file %s (%s)", path, exc)
    kern = compute_kernel(emitter.nuclide if emitter.mono is None else emitter.mono, voxel, half_width=k,
                          histories=histories, seed=seed, medium=med, margin_mm=margin_mm,
                          symmetrized=symmetrized, threads=threads, backend=backend, progress=progress)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            kern.save(path)
            kern.path = path
        except (OSError, InputError) as exc:
            log.info("rptdose: could not write kernel cache %s (%s)", path, exc)
    return kern
