"""Nuclide data (ICRP-107), the material library and the HU calibration."""

import numpy as np
import pytest
from _shared import data_maker, reference_rows, shared_path

from rptdose._data import data_path
from rptdose.errors import InputError
from rptdose.physics import materials as mt
from rptdose.physics import nuclides as nc

trapz = getattr(np, "trapezoid", None) or np.trapz  # numpy >= 2 / 1.x

KEV = 1e-3


# --------------------------------------------------------------------------- nuclides
# ICRP Publication 107 (Ann ICRP 38(3), 2008) Lu-177 values: data/reference/icrp107_lu177.csv
# (per decay electrons 147.92 keV: beta mean 133.27, conversion 13.52, Auger 1.13; photons
# 35.10 keV: gamma 31.56, X 3.54; half-life 6.647 d; 208.37 keV at 11.0 %, 112.95 keV at
# 6.40 %; beta end point 497.8 keV).
ICRP = {r["quantity"]: float(r["value"]) for r in reference_rows("icrp107_lu177.csv")}
LU177 = {k[len("mean_energy_"):]: v for k, v in ICRP.items() if k.startswith("mean_energy_")}


@pytest.fixture(scope="module")
def lu177():
    return nc.load_nuclide("Lu-177")


@pytest.mark.parametrize("key", sorted(LU177))
def test_lu177_mean_energies(lu177, key):
    got = lu177.mean_energies_mev()[key] / KEV
    assert got == pytest.approx(LU177[key], rel=5e-3)


def test_lu177_half_life_lines_endpoint(lu177):
    assert lu177.half_life_s / 86400.0 == pytest.approx(ICRP["half_life"], rel=5e-3)
    assert lu177.beta_yield == pytest.approx(1.0, rel=1e-4)
    assert lu177.beta_endpoint_mev / KEV == pytest.approx(ICRP["beta_endpoint"], rel=5e-3)
    gam = [(e, y) for e, y, k in lu177.lines if k == "gamma"]
    for line in ("208", "113"):
        e_kev, y_pct = ICRP[f"gamma_{line}_energy"], ICRP[f"gamma_{line}_yield"]
        e, y = min(gam, key=lambda ey: abs(ey[0] - e_kev * KEV))
        assert e / KEV == pytest.approx(e_kev, rel=5e-3) and y == pytest.approx(y_pct / 100.0, rel=5e-3)
    assert set(lu177.line_kind) <= set(nc.LINE_KINDS)


def test_beta_inv_cdf_reproduces_mean(lu177):
    inv = lu177.beta_inv_cdf()
    assert inv.shape == (nc.NB_BETA,) and inv.dtype == np.float64 and inv.flags.c_contiguous
    assert np.all(np.diff(inv) >= 0.0)
    assert inv[0] == pytest.approx(0.0, abs=1e-12) and inv[-1] == pytest.approx(0.4978)
    u = np.linspace(0.0, 1.0, nc.NB_BETA)
    mean_linear_interp = trapz(inv, u)  # mean of E(u) sampled with linear interpolation
    assert mean_linear_interp / KEV == pytest.approx(LU177["beta"], rel=1.5e-3)  # actual: +0.05 %


def test_pchip_matches_scipy(lu177):
    interpolate = pytest.importorskip("scipy.interpolate")
    e, n = lu177.beta_spectrum_energy_mev, lu177.beta_spectrum_per_mev
    x = np.linspace(0.0, e[-1], 3001)
    np.testing.assert_allclose(nc._pchip(e, n, x), interpolate.PchipInterpolator(e, n)(x),
                               rtol=1e-10, atol=1e-12)


def test_y90_i131_tb161():
    # Y-90 mean beta energy 932.9 keV per decay (ICRP-107 via icrp107-database 0.0.3:
    # 'beta-' branches sum E*y = 0.93290 MeV; spectrum mean 931.3 keV), T1/2 64.1 h.
    y90 = nc.load_nuclide("Y90")
    assert y90.beta_mev_per_decay / KEV == pytest.approx(932.9, rel=5e-3)
    assert y90.half_life_s / 3600.0 == pytest.approx(64.1, rel=1e-3)
    u = np.linspace(0.0, 1.0, nc.NB_BETA)
    assert trapz(y90.beta_inv_cdf(), u) / KEV == pytest.approx(932.9, rel=5e-3)
    assert y90.beta_endpoint_mev == pytest.approx(2.2801, rel=1e-3)
    # I-131 (T1/2 8.0207 d, 364.5 keV gamma at ~81 %) and Tb-161 (T1/2 6.906 d) load
    i131 = nc.load_nuclide("131I")
    assert i131.half_life_s / 86400.0 == pytest.approx(8.0207, rel=1e-3)
    g = [(e, y) for e, y, k in i131.lines if k == "gamma"]
    e364, y364 = min(g, key=lambda ey: abs(ey[0] - 0.3645))
    assert e364 == pytest.approx(0.3645, rel=2e-3) and 0.80 < y364 < 0.83
    tb = nc.load_nuclide("tb-161")
    assert tb.half_life_s / 86400.0 == pytest.approx(6.906, rel=1e-3)
    assert tb.auger_mev_per_decay > lu177_auger()  # Tb-161's large Auger/IE yield
    for nu in (y90, i131, tb):
        ea = nu.emission_arrays()
        assert ea["beta_inv_cdf"].shape == (nc.NB_BETA,)


def lu177_auger():
    return nc.load_nuclide("Lu-177").auger_mev_per_decay


@pytest.mark.parametrize("name", ["Lu-177", "Lu177", "lu-177", "177Lu", "177-Lu", " LU-177 "])
def test_name_spellings(name):
    assert nc.load_nuclide(name).name == "Lu-177"


def test_metastable_names():
    assert nc.load_nuclide("Tc99m").name == "Tc-99m"
    assert nc.load_nuclide("99mTc").name == "Tc-99m"


@pytest.mark.parametrize("name,word", [("Cf-252", "neutrons"), ("Cf-252", "fission")])
def test_unsupported_emitters(name, word):
    """Neutron and fission emitters are refused, naming the nuclide and what is transported
    (alphas and positrons are supported: tests/test_chains_alpha_positron.py)."""
    with pytest.raises(InputError, match=word) as err:
        nc.load_nuclide(name)
    assert name in str(err.value)


@pytest.mark.parametrize("name", ["Lu-999", "Xx-12", "lutetium", "", 177])
def test_unknown_nuclide(name):
    with pytest.raises(InputError, match="Lu-177"):
        nc.load_nuclide(name)


def test_emission_arrays_contract(lu177):
    ea = lu177.emission_arrays(el_cut_mev=0.01, ph_cut_mev=0.001)
    assert set(ea) == {"beta_yield", "beta_inv_cdf", "line_energy_mev", "line_yield",
                       "line_is_photon", "local_mev_per_decay", "el_cut_mev", "ph_cut_mev",
                       "alpha_mev_per_decay", "above_table_mev_per_decay"}
    assert ea["alpha_mev_per_decay"] == 0.0 and ea["above_table_mev_per_decay"] == 0.0
    e, y, ph = ea["line_energy_mev"], ea["line_yield"], ea["line_is_photon"]
    assert e.dtype == np.float64 and y.dtype == np.float64 and ph.dtype == np.int32
    assert e.shape == y.shape == ph.shape and e.flags.c_contiguous
    assert np.all(e[ph == 1] >= 0.001) and np.all(e[ph == 0] >= 0.01)
    # energy balance: local + lines + beta (mean of the sampled spectrum) = ICRP-107 total
    u = np.linspace(0.0, 1.0, ea["beta_inv_cdf"].size)
    total = (ea["local_mev_per_decay"] + np.sum(e * y)
             + ea["beta_yield"] * trapz(ea["beta_inv_cdf"], u))
    assert total == pytest.approx(lu177.total_mev_per_decay, rel=1e-3)
    # lines below the cuts go to local_mev_per_decay
    ea2 = lu177.emission_arrays(el_cut_mev=0.1, ph_cut_mev=0.05)
    assert ea2["local_mev_per_decay"] > ea["local_mev_per_decay"]
    assert np.all(ea2["line_energy_mev"][ea2["line_is_photon"] == 1] >= 0.05)
    with pytest.raises(InputError, match="el_cut_mev"):
        lu177.emission_arrays(el_cut_mev=0.0)


def test_monoenergetic():
    ea = nc.monoenergetic_emissions("photon", 0.20837)
    assert ea["beta_yield"] == 0.0 and ea["beta_inv_cdf"].shape == (1,)
    assert ea["line_energy_mev"].tolist() == [0.20837] and ea["line_is_photon"].tolist() == [1]
    ea = nc.monoenergetic_emissions("electron", 1.0)
    assert ea["line_is_photon"].dtype == np.int32 and ea["line_is_photon"].tolist() == [0]
    ea = nc.monoenergetic_emissions("electron", 0.005)  # below the 10 keV electron cut
    assert ea["line_energy_mev"].size == 0 and ea["local_mev_per_decay"] == 0.005
    for bad in (0.0005, 3.5, float("nan")):
        with pytest.raises(InputError, match="energy_mev"):
            nc.monoenergetic_emissions("photon", bad)
    with pytest.raises(InputError, match="kind"):
        nc.monoenergetic_emissions("proton", 0.5)
    ea = nc.monoenergetic_emissions("positron", 0.0)  # a positron at rest: annihilation only
    assert ea["positron_yield"] == 1.0 and ea["positron_inv_cdf"].tolist() == [0.0, 0.0]


# --------------------------------------------------------------------------- materials

REQUIRED = ["water", "air", "lung", "adipose", "soft_tissue", "muscle", "red_marrow",
            "spongiosa", "cortical_bone", "soft_tissue_icru44", "bone_cortical_icru44"]


@pytest.mark.parametrize("name", REQUIRED)
def test_library(name):
    m = mt.get_material(name)
    assert sum(w for _, w in m.composition) == pytest.approx(1.0, abs=1e-12)
    assert 0.0 < m.density_g_cm3 < 3.0 and 50.0 < m.i_ev < 130.0 and m.source
    assert hash(m) == hash(mt.get_material(name.upper()))


def test_tabulated_i_values():
    # ICRU 37 / NIST ESTAR mean excitation energies
    assert mt.get_material("water").i_ev == 75.0
    assert mt.get_material("air").i_ev == 85.7
    assert mt.get_material("cortical_bone").i_ev == 106.4
    assert mt.get_material("cortical_bone").density_g_cm3 == 1.85
    assert mt.get_material("soft_tissue").density_g_cm3 == 1.03


def test_bragg_additivity():
    # ICRU 37 bound-atom values reproduce the tabulated I of water (75.0 eV) and, with the
    # gas-phase elemental values, of dry air (85.7 eV) within 0.5 %
    assert mt.bragg_mean_excitation_ev({1: 0.111894, 8: 0.888106}) == pytest.approx(75.0, rel=5e-3)
    air = mt.get_material("air")
    assert mt.bragg_mean_excitation_ev(air.composition, gas=True) == pytest.approx(85.7, rel=5e-3)
    for name in ("soft_tissue", "cortical_bone", "adipose", "muscle"):
        m = mt.get_material(name)
        assert mt.bragg_mean_excitation_ev(m.composition) == pytest.approx(m.i_ev, rel=5e-3)


def test_material_validation_and_symbols():
    m = mt.Material("pmma-ish", {"H": 0.0805, "C": 0.5998, "O": 0.3196}, 1.19)
    assert m.mass_fractions[6] == pytest.approx(0.5998, rel=1e-3) and m.i_ev > 60
    with pytest.raises(InputError, match="sum"):
        mt.Material("bad", {"H": 0.5, "O": 0.2}, 1.0)
    with pytest.raises(InputError, match="density"):
        mt.Material("bad", {"H": 1.0}, -1.0)
    with pytest.raises(InputError, match="Qq"):
        mt.Material("bad", {"Qq": 1.0}, 1.0)
    with pytest.raises(InputError) as ei:
        mt.get_material("bone")
    assert "cortical_bone" in str(ei.value) and "water" in str(ei.value)


def test_atomic_weights_vs_xraylib():
    xrl = pytest.importorskip("xraylib")
    for z in range(1, 93):  # above U the "weight" is a chosen isotope's mass number
        # xraylib rounds to 0.01 and has some outdated values (e.g. Tm): 1.5 % catches typos
        assert mt.atomic_weight(z) == pytest.approx(xrl.AtomicWeight(z), rel=1.5e-2), z
        assert mt.element_symbol(z) == xrl.AtomicNumberToSymbol(z)


# --------------------------------------------------------------------------- HU calibration

def test_schneider2000_table():
    cal = mt.HUCalibration.schneider2000()
    assert len(cal.bin_materials) == 26 and cal.bin_edges_hu[0] == -1050 and cal.bin_edges_hu[-1] == 3000
    # density points of Schneider et al. 2000 (GATE distribution)
    assert cal.density(np.array([-1000, 0, 1600, 3000])).tolist() == pytest.approx(
        [1.21e-3, 1.03 - (14 / 111) * (1.03 - 0.930486), 1.9642, 2.8], rel=1e-6)
    lung = cal.bin_materials[1]
    assert lung.mass_fractions[8] == pytest.approx(0.749) and lung.name.startswith("Lung")


def test_schneider2000_matches_gate_files():
    """The shipped tables hold GATE's numbers (opengate/data Schneider2000*Table.txt). Where the
    project's shared/reference/schneider2000 has GATE's files, both are read with our reader and
    compared; always, the shipped files must be the ones data/make_reference_tables.py compared
    with GATE's number by number (their SHA-256 in data/provenance.csv)."""
    mrt = data_maker()
    rec = mrt.read_provenance()
    for name in ("schneider2000_density.txt", "schneider2000_materials.txt"):
        assert rec[name][1].startswith("shared/reference/schneider2000/")
        assert mrt.sha256(data_path(name)) == rec[name][0], f"data/{name} changed since it was checked"
    ref = shared_path("reference", "schneider2000")
    if ref is None:
        return  # GATE's files are not here: the recorded check above is what stands
    ours = mt.HUCalibration.schneider2000()
    gate = mt.HUCalibration.from_files(ref / "Schneider2000DensitiesTable.txt",
                                       ref / "Schneider2000MaterialsTable.txt")
    np.testing.assert_array_equal(ours.density_hu, gate.density_hu)
    np.testing.assert_array_equal(ours.density_g_cm3, gate.density_g_cm3)
    np.testing.assert_array_equal(ours.bin_edges_hu, gate.bin_edges_hu)
    for a, b in zip(ours.bin_materials, gate.bin_materials):
        assert a.composition == b.composition


def test_hu_apply_clamps_and_compacts():
    cal = mt.HUCalibration.schneider2000()
    hu = np.array([[-3000, -1000, 0], [40, 1000, 9000]], dtype=np.int16)
    rho, idx, mats = cal.apply(hu)
    assert rho.dtype == np.float32 and idx.dtype == np.int32 and rho.shape == idx.shape == hu.shape
    assert rho[0, 0] == pytest.approx(1.21e-3) and rho[1, 2] == pytest.approx(2.8)
    names = [m.name.split("[")[0] for m in mats]
    assert names == ["Air", "AT_AG_SI4", "SoftTissue", "Marrow_Bone10", "MetallImplants"]
    assert idx.tolist() == [[0, 0, 1], [2, 3, 4]]
    with pytest.raises(InputError, match="NaN"):
        cal.apply(np.array([0.0, np.nan]))


def test_hu_from_points():
    cal = mt.HUCalibration.from_points([-1000, 0, 1000, 3000], [0.0012, 1.0, 1.6, 2.8],
                                       [-1050, -950, -200, 200, 3000],
                                       ["air", "lung", "soft_tissue", "soft_tissue"])
    rho, idx, mats = cal.apply(np.array([-2000.0, -500.0, 0.0, 500.0, 2500.0]))
    assert [m.name for m in mats] == ["air", "lung", "soft_tissue"]  # identical bins merged
    assert idx.tolist() == [0, 1, 2, 2, 2]
    assert rho.tolist() == pytest.approx([0.0012, 0.5006, 1.0, 1.3, 2.5], rel=1e-6)
    with pytest.raises(InputError, match="bin_edges_hu"):
        mt.HUCalibration.from_points([0, 1], [1, 2], [0, 1], ["water", "air"])
    with pytest.raises(InputError, match="unknown"):
        mt.HUCalibration.from_points([0, 1], [1, 2], [0, 1], ["granite"])
