"""Electron transport against published dose point kernels in water (fast version of
validation/dpk_water, which runs finer grids and more histories and shows the whole curve).

Reference: EGSnrc scaled kernels j(x) = d(E/E0)/d(r/r0), r0 = CSDA range, of
E. Mainegra-Hing, D.W.O. Rogers, I. Kawrakow, Med. Phys. 32, 685-699 (2005), as distributed
with Geant4's TestEm12 example (berger/EGSnrc/{100keV,1MeV}-DPK.ascii), bins of 0.05 in r/r0
(data/reference/ref_egsnrc_mainegra_hing_2005.csv). r0 from NIST ESTAR (water,
data/reference/nist_estar_electrons.csv): 0.01431 g/cm2 at 100 keV, 0.4367 g/cm2 at 1 MeV.

Tolerance: 5 % per 0.1-wide bin of r/r0 over 0.2-0.8, the target of the issue and of
validation/dpk_water (our kernels lie within -2 % ... +3 % of these there); the statistical
1-sigma of a bin with 1e5 histories is below 1 %.
"""
import numpy as np
import pytest
from _shared import reference_rows

import rptdose as rd

J_PER_MEV = 1.602176634e-13


def _egsnrc(e_kev):
    """(ESTAR CSDA range of water in g/cm2, EGSnrc j on the bins [0.20, 0.25), [0.25, 0.30),
    ..., [0.75, 0.80) of r/r0) at e_kev."""
    r0 = [float(r["csda_range"]) for r in reference_rows("nist_estar_electrons.csv")
          if r["material"] == "water" and int(r["energy_kev"]) == e_kev]
    j = [float(r["j"]) for r in reference_rows("ref_egsnrc_mainegra_hing_2005.csv")
         if int(r["energy_kev"]) == e_kev and 0.195 < float(r["x_lo"]) < 0.8]
    assert len(r0) == 1 and len(j) == 12
    return r0[0], j


EGSNRC = {0.1: _egsnrc(100), 1.0: _egsnrc(1000)}


def scaled_kernel(e0_mev, r0_mm, histories, seed=1, per_r0=20):
    """Our j on the 0.1-wide bins of r/r0 from 0.2 to 0.8, from a centre-voxel source: the
    per-voxel value 4 pi r^2 r0 (dE/dV) / E0 at the voxel centre, averaged over each bin's voxels
    (the 1/r^2 fall inside a shell and the lattice's voxel counting drop out)."""
    vox = r0_mm / per_r0
    half = int(np.ceil(1.1 * per_r0)) + 1
    n = 2 * half + 1
    ph = rd.Phantom.water(shape=(n, n, n), spacing_mm=(vox,) * 3)
    decays = np.zeros(ph.shape)
    decays[half, half, half] = 1.0
    res = rd.simulate(ph, rd.Source.monoenergetic("electron", e0_mev, decays), histories=histories,
                      seed=seed, progress=False)
    # the grid holds the whole track: only bremsstrahlung photons leave (radiative yield)
    from rptdose.physics.electron import radiative_yield
    assert res.energy_balance["escaped_mev"] <= float(radiative_yield("water", e0_mev)[0]) * e0_mev
    e_vox = np.asarray(res.dose_gy) * np.asarray(ph.voxel_mass_kg) / J_PER_MEV  # MeV per decay
    i = np.arange(n) - half
    r = vox * np.sqrt(i[:, None, None] ** 2 + i[None, :, None] ** 2 + i[None, None, :] ** 2)
    jv = 4.0 * np.pi * r ** 2 * r0_mm * (e_vox / vox ** 3) / e0_mev
    edges = np.linspace(0.2, 0.8, 7) * r0_mm
    k = np.digitize(r, edges)  # 1..6 inside [0.2, 0.8) r0
    return np.array([jv[k == b].mean() for b in range(1, 7)])


@pytest.mark.parametrize("e0_mev", [0.1, 1.0])
def test_electron_kernel_in_water_matches_egsnrc(e0_mev):
    r0_g, j_ref_005 = EGSNRC[e0_mev]
    r0_mm = r0_g * 10.0  # water, 1 g/cm3
    ours = scaled_kernel(e0_mev, r0_mm, histories=100_000)
    ref = np.asarray(j_ref_005).reshape(6, 2).mean(axis=1)  # 0.05 bins -> 0.1 bins
    rel = ours / ref - 1.0
    assert np.all(np.abs(rel) <= 0.05), f"ours/EGSnrc - 1 on r/r0 0.2-0.8: {np.round(rel, 3)}"

