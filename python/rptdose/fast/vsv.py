"""Voxel S-value (VSV) convolution: dose = (decays per voxel) * S, by FFT.

For decays N_j per voxel and a kernel S(d) (Gy per decay at offset d voxels, computed in a
homogeneous medium of density rho_k; :mod:`rptdose.fast.kernels`)::

    D_i = f_i * sum_j N_j S(i - j),      f_i = rho_k / rho_i   (density_correction=True)
                                          f_i = 1              (density_correction=False)

The density correction is the common first-order one (e.g. Dieudonne et al., J Nucl Med
54:236, 2013; Lee et al., EJNMMI Phys 5:29, 2018): the energy deposited per unit volume is taken
to be the medium's, so the dose scales with the inverse voxel density. It ignores the change of
the electrons' range and of photon attenuation with density, and the kernel's truncation at its
half-width k (energy carried further, mostly by photons, is lost).

The convolution is a linear ("same"-size, zero-padded) FFT convolution with numpy.fft (one
code path wherever rptdose runs, so results do not depend on optional packages); values below
0 from round-off are set to 0.

Statistical uncertainty. The kernel's Monte Carlo noise is propagated to every voxel and region:
with the kernel voxels taken as independent and the per-voxel variance
:meth:`VoxelSKernel.variance_upper_bound` (which accounts for the voxels that symmetrisation
averaged together), var(D_i) = f_i^2 sum_j N_j^2 var(S(i - j)) — an upper bound of the true
kernel variance. A region's mean sum_i m_i D_i / M is sum_d S(d) C(d) / M with
C(d) = sum_{i in region} m_i f_i N_{i-d}, so var = sum_d var(S(d)) C(d)^2 / M^2 (one FFT
cross-correlation per region). This is the statistical uncertainty of the kernel only, not the
method's systematic error.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from rptdose.errors import InputError
from rptdose.fast.kernels import (
    DEFAULT_HALF_WIDTH,
    DEFAULT_HISTORIES,
    DEFAULT_MARGIN_MM,
    DEFAULT_SEED,
    VoxelSKernel,
    emitter_of,
    voxel_s_kernel,
)
from rptdose.fast.result import DoseResult, base_provenance, check_phantom_source

#: Largest relative difference accepted between the kernel's voxel size and the phantom's.
VOXEL_TOLERANCE = 1e-3


def _next_fast_len(n: int) -> int:
    """The smallest 5-smooth integer >= n (a fast FFT length)."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def fft_convolve(a: np.ndarray, k: np.ndarray, mode: str = "same") -> np.ndarray:
    """Linear convolution of 3-D ``a`` with ``k`` by FFT.

    ``mode="same"``: ``k`` has odd sizes and its centre is offset 0; the result has ``a``'s
    shape (out[i] = sum_j a[j] k[i - j + c]). ``mode="full"``: the full linear convolution.
    """
    full = [na + nk - 1 for na, nk in zip(a.shape, k.shape)]
    fshape = [_next_fast_len(n) for n in full]
    axes = tuple(range(len(fshape)))
    spec = np.fft.rfftn(np.asarray(a, dtype=np.float64), fshape, axes=axes)
    spec *= np.fft.rfftn(np.asarray(k, dtype=np.float64), fshape, axes=axes)
    out = np.fft.irfftn(spec, fshape, axes=axes)
    if mode == "full":
        return np.ascontiguousarray(out[tuple(slice(0, n) for n in full)])
    c = [n // 2 for n in k.shape]
    return np.ascontiguousarray(out[tuple(slice(ci, ci + n) for ci, n in zip(c, a.shape))])


def _check_kernel(kernel: Any, phantom: Any, source: Any) -> VoxelSKernel:
    if not isinstance(kernel, VoxelSKernel):
        kernel = VoxelSKernel.load(kernel)  # a path; InputError naming the file if not a kernel
    rel = np.abs(np.asarray(kernel.voxel_mm) / np.asarray(phantom.spacing_mm) - 1.0)
    if np.any(rel > VOXEL_TOLERANCE):
        raise InputError(f"kernel voxel {kernel.voxel_mm} mm (differs from the phantom's spacing "
                         f"{phantom.spacing_mm} mm): expected a kernel for the phantom's voxel size "
                         "(compute one with rptdose kernel, or let vsv_dose compute it: kernel=None)")
    label = emitter_of(source).label
    if kernel.nuclide != label:
        raise InputError(f"kernel nuclide {kernel.nuclide!r} (differs from the source's {label!r}): expected a "
                         "kernel of the source's nuclide")
    return kernel


def vsv_dose(phantom: Any, source: Any, *, kernel: Any = None, half_width: Any = DEFAULT_HALF_WIDTH,
             medium: str = "water", density_correction: bool = True, histories: int = DEFAULT_HISTORIES,
             seed: int = DEFAULT_SEED, margin_mm: float = DEFAULT_MARGIN_MM, threads: int | None = None,
             backend: str = "auto", use_cache: bool = True, regions: Any = None,
             label_names: dict[int, str] | None = None, progress: Any = None) -> DoseResult:
    """Absorbed dose (Gy) by voxel S-value convolution.

    Parameters
    ----------
    phantom, source : rptdose.Phantom, rptdose.Source
        Densities (for the density correction and the region masses) and decays per voxel.
    kernel : VoxelSKernel or path, optional
        The kernel; by default it is read from the cache or computed by Monte Carlo for the
        source's nuclide and the phantom's voxel size with ``half_width``, ``medium``,
        ``histories``, ``seed``, ``margin_mm`` (see :func:`rptdose.fast.kernels.voxel_s_kernel`;
        ``threads``, ``backend``, ``use_cache``, ``progress`` go there too).
    density_correction : bool
        Scale by rho_kernel / rho_voxel (default True).
    regions : {name: bool mask} or integer label map, optional
        Regions whose mean dose (energy / mass) and its kernel uncertainty are reported.

    Returns
    -------
    DoseResult
        ``dose_gy``, ``rel_uncertainty`` (the kernel's statistical uncertainty propagated;
        1.0 where the dose is 0), ``region_means``, ``provenance`` (with the kernel's).
    """
    from rptdose.analysis.regions import normalize_regions

    t0 = time.perf_counter()
    check_phantom_source(phantom, source)
    if not isinstance(density_correction, (bool, np.bool_)):
        raise InputError(f"density_correction {density_correction!r}: expected True or False")
    masks = normalize_regions(regions, phantom.shape, label_names=label_names)
    if kernel is None:
        kernel = voxel_s_kernel(source, phantom.spacing_mm, half_width=half_width, histories=histories, seed=seed,
                                medium=medium, margin_mm=margin_mm, threads=threads, backend=backend,
                                use_cache=use_cache, progress=progress)
    kernel = _check_kernel(kernel, phantom, source)
    t1 = time.perf_counter()

    decays = source.decays
    dose = fft_convolve(decays, kernel.s_gy_per_decay)
    var = fft_convolve(decays * decays, kernel.variance_upper_bound())
    np.maximum(dose, 0.0, out=dose)
    np.maximum(var, 0.0, out=var)
    # exact zeros where no source voxel is within the kernel's reach (FFT round-off elsewhere)
    reach = fft_convolve((decays > 0).astype(np.float64), np.ones(kernel.s_gy_per_decay.shape)) > 0.5
    dose[~reach] = 0.0
    var[~reach] = 0.0
    if density_correction:
        f = kernel.density_g_cm3 / phantom.density.astype(np.float64)
    else:
        f = np.ones(phantom.shape)
    dose *= f
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(dose > 0, np.sqrt(var) * f / dose, 1.0)

    region_means = None
    if masks is not None:
        region_means = {}
        mass = phantom.voxel_mass_kg
        kvar = kernel.variance_upper_bound()
        flipped = decays[::-1, ::-1, ::-1]
        n = decays.shape
        kz, ky, kx = kernel.centre
        for name, m in masks.items():
            mk = float(np.sum(mass[m]))
            mean = float(np.sum(mass[m] * dose[m]) / mk)
            w = np.where(m, mass * f, 0.0)
            # C(d) = sum_i w_i N_{i-d} = conv_full(w, flip(N))[n - 1 + d]
            full = fft_convolve(w, flipped, mode="full")
            c = np.zeros(kernel.s_gy_per_decay.shape)
            zs = [(d, n[0] - 1 + d) for d in range(-kz, kz + 1)]
            ys = [(d, n[1] - 1 + d) for d in range(-ky, ky + 1)]
            xs = [(d, n[2] - 1 + d) for d in range(-kx, kx + 1)]
            iz = np.array([j for _, j in zs])
            iy = np.array([j for _, j in ys])
            ix = np.array([j for _, j in xs])
            okz, oky, okx = ((iz >= 0) & (iz < full.shape[0]), (iy >= 0) & (iy < full.shape[1]),
                             (ix >= 0) & (ix < full.shape[2]))
            sub = full[np.ix_(iz[okz], iy[oky], ix[okx])]
            c[np.ix_(np.nonzero(okz)[0], np.nonzero(oky)[0], np.nonzero(okx)[0])] = sub
            sigma = float(np.sqrt(np.sum(kvar * c * c))) / mk
            region_means[name] = {"mean_dose_gy": mean, "rel_uncertainty": sigma / mean if mean > 0 else None,
                                  "mass_kg": mk, "voxels": int(np.count_nonzero(m))}

    settings = {"density_correction": bool(density_correction), "kernel_file": None if kernel.path is None
                else str(kernel.path), "kernel_cache_key": kernel.cache_key,
                "kernel_half_width": list(kernel.half_width), "kernel_medium": kernel.medium,
                "kernel_density_g_cm3": kernel.density_g_cm3,
                "fft": "numpy.fft",
                "uncertainty": "kernel statistical uncertainty only (upper bound, independent kernel voxels)"}
    prov = base_provenance("vsv", phantom, source, settings)
    prov["kernel"] = kernel.provenance
    prov["seed"] = kernel.provenance.get("seed")
    prov["timing_s"] = {"kernel": t1 - t0, "convolution": time.perf_counter() - t1}
    return DoseResult(method="vsv", dose_gy=dose, rel_uncertainty=rel, provenance=prov,
                      spacing_mm=phantom.spacing_mm, origin_mm=phantom.origin_mm, direction=phantom.direction,
                      elapsed_s=time.perf_counter() - t0, region_means=region_means)
