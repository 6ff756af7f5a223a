"""Transport tables: the array contract (docs/core_contract.md) and the on-disk cache."""

import json

import numpy as np
import pytest

from rptdose.errors import InputError
from rptdose.physics import tables as tb
from rptdose.physics.materials import HUCalibration, Material, get_material

pytest.importorskip("xraylib")

MATS = ["water", "lung", "cortical_bone", "air"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RPTDOSE_CACHE_DIR", str(tmp_path))
    return tmp_path / "tables"


def test_energy_grid():
    g = tb.energy_grid()
    assert g.shape == (512,) and g[0] == 1e-3 and g[-1] == 3.0
    np.testing.assert_allclose(np.diff(np.log(g)), np.log(3000.0) / 511, rtol=1e-9)


def test_contract(cache):
    t = tb.transport_tables(MATS)
    nm, ne = len(MATS), tb.NE
    shapes = {"mu_photo": (nm, ne), "mu_incoh": (nm, ne), "mu_coh": (nm, ne),
              "incoh_sf": (nm, 256), "coh_cum": (nm, 256), "coh_x2_grid": (256,),
              "el_dedx_cont": (nm, ne), "el_range_cont": (nm, ne), "el_sigma_hard": (nm, ne),
              "el_tr1": (nm, ne), "el_csda_range": (nm, ne), "energy_grid_mev": (ne,),
              "el_sigma_el": (nm, ne), "el_el_inv_lo": (nm, ne), "el_el_inv_hi": (nm, ne),
              "el_el_eta": (nm, ne), "el_mott_b": (nm, ne), "el_mott_c": (nm, ne)}
    for k, shape in shapes.items():
        a = t[k]
        assert a.shape == shape and a.dtype == np.float64 and a.flags.c_contiguous, k
        assert np.all(np.isfinite(a)), k
    for k in ("sf_lnx_min", "sf_lnx_max", "el_wcc_mev"):
        assert isinstance(t[k], float)
    assert t["sf_lnx_min"] < t["sf_lnx_max"] and t["el_wcc_mev"] == tb.DEFAULT_EL_WCC_MEV
    e = t["energy_grid_mev"]
    assert np.all(np.diff(t["el_range_cont"], axis=1) > 0)
    assert np.all(np.diff(t["el_csda_range"], axis=1) > 0)
    assert np.all(t["el_range_cont"] >= t["el_csda_range"] * (1 - 1e-12))  # less loss when restricted
    w2 = 2.0 * t["el_wcc_mev"]
    assert np.all(t["el_sigma_hard"][:, e <= w2] == 0.0) and np.all(t["el_sigma_hard"][:, e > 1.05 * w2] > 0)
    # restricted = unrestricted collision + radiative below 2 W_cut: ranges agree there
    low = e <= w2
    np.testing.assert_allclose(t["el_range_cont"][:, low], t["el_csda_range"][:, low], rtol=1e-12)
    # water CSDA range at 100 keV: ESTAR 1.431e-2 g/cm2
    i = np.argmin(np.abs(e - 0.1))
    r = np.exp(np.interp(np.log(0.1), np.log(e), np.log(t["el_csda_range"][0])))
    assert r == pytest.approx(1.431e-2, rel=0.01) and i > 0
    p = t["provenance"]
    assert all(isinstance(v, str) for v in p.values())
    for k in ("xraylib_version", "icrp107_database_version", "tables_sha256", "cache_key",
              "photon_method", "electron_method"):
        assert p[k]
    assert json.loads(p["materials"]) == MATS


def test_cache_roundtrip_and_corruption(cache):
    t1 = tb.transport_tables(MATS)
    files = list(cache.glob("*.npz"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))
    assert files[0].stem == t1["provenance"]["cache_key"]
    def no_build(*args, **kwargs):
        raise AssertionError("tables rebuilt although cached")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tb, "_build", no_build)
        t2 = tb.transport_tables(MATS)  # from the cache
    assert t2["provenance"] == t1["provenance"]
    for k in tb.ARRAY_KEYS:
        np.testing.assert_array_equal(t1[k], t2[k])
    # a corrupt file is rebuilt (and replaced)
    files[0].write_bytes(b"not a zip file")
    t3 = tb.transport_tables(MATS)
    assert t3["provenance"]["tables_sha256"] == t1["provenance"]["tables_sha256"]
    t4 = tb.transport_tables(MATS)
    assert t4["provenance"]["tables_sha256"] == t1["provenance"]["tables_sha256"]
    # a truncated file too
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 2])
    t5 = tb.transport_tables(MATS)
    np.testing.assert_array_equal(t5["mu_photo"], t1["mu_photo"])


def test_cache_key_depends_on_definitions(cache):
    a = tb.transport_tables(["water"])
    b = tb.transport_tables(["water"], el_wcc_mev=0.02)
    water2 = Material("water", get_material("water").composition, 1.0, 78.0)  # other I
    c = tb.transport_tables([water2])
    keys = {x["provenance"]["cache_key"] for x in (a, b, c)}
    assert len(keys) == 3
    assert not np.array_equal(a["el_dedx_cont"], c["el_dedx_cont"])
    np.testing.assert_array_equal(a["mu_photo"], c["mu_photo"])  # photons do not see I


def test_no_cache(cache):
    t = tb.transport_tables(["air"], use_cache=False)
    assert t["mu_incoh"].shape == (1, tb.NE) and not cache.exists()


def test_schneider_materials(cache):
    cal = HUCalibration.schneider2000()
    _, _, mats = cal.apply(np.arange(-1100, 3200, 1))
    t = tb.transport_tables(mats)
    assert t["mu_photo"].shape[0] == len(mats) == 26
    assert np.all(np.isfinite(t["el_dedx_cont"])) and np.all(t["el_dedx_cont"] > 0)
    assert np.all(np.diff(t["el_range_cont"], axis=1) > 0)
    assert np.all(np.diff(t["coh_cum"], axis=1) >= 0) and np.all(t["incoh_sf"] <= 1.0)


def test_bad_input(cache):
    with pytest.raises(InputError, match="empty"):
        tb.transport_tables([])
    with pytest.raises(InputError, match="unknown"):
        tb.transport_tables(["unobtainium"])
    with pytest.raises(InputError, match="el_wcc_mev"):
        tb.transport_tables(["water"], el_wcc_mev=5.0)


def test_ct_metal_bin_runs():
    """The default CT calibration's heaviest bin (dental amalgam: Ag, Sn; Z > 30, no Mott
    factor) gives tables the core accepts: a run in it is energy-conserving."""
    import rptdose as rd
    from rptdose.physics.materials import HUCalibration

    amalgam = [m for m in HUCalibration.schneider2000().bin_materials
               if any(z > 30 and w > 0 for z, w in m.composition)]
    assert amalgam
    ph = rd.Phantom.from_arrays(np.full((3, 3, 3), 2.5, np.float32), np.zeros((3, 3, 3), np.int32),
                                [amalgam[-1]], (1.0, 1.0, 1.0))
    res = rd.simulate(ph, rd.Source("Lu-177", np.ones((3, 3, 3))), histories=2000, seed=1, threads=1,
                      progress=False)
    eb = res.energy_balance
    assert eb["emitted_mev"] == pytest.approx(eb["deposited_mev"] + eb["escaped_mev"], rel=1e-12)
    assert np.all(np.isfinite(res.dose_gy))
