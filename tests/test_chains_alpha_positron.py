"""Decay chains, alphas and positrons (the issue "Alpha emitters with their decay chains, positron
emitters"). Fast checks; the published-reference comparisons are validation/alpha_positron.

References and tolerances (stated where used):
* ICRP Publication 107 (Ann ICRP 38(3), 2008): emissions of every member, read here directly from
  the icrp107-database JSON files (independently of rptdose.physics.nuclides) for the chain sums;
  branching fractions: ICRP-107's (Pb-212 -> Bi-212 -> Po-212 64.06 % / Tl-208 35.94 %, Bi-213 ->
  Po-213 97.91 % / Tl-209 2.09 %, At-211 -> Po-211 58.2 % / Bi-207 41.8 %).
* emitted energy per decay vs the ICRP-107 chain sums: <= 0.1 % (the issue's tolerance).
* ICRU Report 37 (1984), eq. 2.2 with the positron function F+(tau) of its eq. 2.5: the positron
  collision stopping power, to rounding (the restricted Bhabha form at cut = T is the same formula).
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

import rptdose as rd
from rptdose.errors import InputError
from rptdose.physics import chains as ch
from rptdose.physics import nuclides as nc
from rptdose.source import ANNIHILATION_MEV, mean_mev_per_decay

J_PER_MEV = 1.602176634e-13
MEC2 = 0.51099895


def _icrp_json(name: str) -> dict:
    import icrp107_database

    path = Path(icrp107_database.__file__).resolve().parent / "icrp107" / f"{name}.json"
    with open(path, "rb") as f:
        raw = json.load(f)
    return (json.loads(raw) if isinstance(raw, str) else raw)["emissions"]


def _icrp_total_mev(name: str) -> float:
    """Every emission ICRP-107 lists per decay of ``name`` (MeV): beta branches' mean x intensity,
    lines' energy x yield, alphas, recoils, annihilation photons."""
    e = _icrp_json(name)
    total = 0.0
    for key in ("beta-", "beta+", "IE", "auger", "gamma", "X", "alpha", "alpha recoil", "annihilation"):
        total += sum(float(x) * float(y) for x, y in e.get(key, []))
    return total


def _emitted_mev(em: dict) -> float:
    """What one decay emits on average with these arrays: the core's part plus the alphas."""
    return mean_mev_per_decay(em) + em["alpha_mev_per_decay"]


# ---------------------------------------------------------------------------------- chains

def test_ac225_chain_members_and_decays_per_parent_decay():
    c = ch.decay_chain("Ac-225")
    assert c.mode == "equilibrium" and c.requested is None
    k = {n.name: v for n, v in c.members}
    assert list(k) == ["Ac-225", "Fr-221", "At-217", "Bi-213", "Po-213", "Tl-209", "Pb-209"]
    assert k["Fr-221"] == 1.0 and k["At-217"] == 1.0
    assert k["Po-213"] == pytest.approx(k["Bi-213"] * 0.9791, rel=1e-3)
    assert k["Tl-209"] == pytest.approx(k["Bi-213"] * 0.0209, rel=1e-2)
    # Pb-209 is reached through both branches: it decays as often as Bi-213
    assert k["Pb-209"] == pytest.approx(k["Bi-213"], rel=1e-12)
    assert not c.excluded  # Bi-209 is stable
    assert "Pb-209" in c.note and "Ac-225 decay site" in c.note


def test_pb212_and_at211_branching_and_long_lived_daughter_left_out():
    k = {n.name: v for n, v in ch.decay_chain("Pb-212").members}
    assert k["Po-212"] == pytest.approx(0.6406, abs=1e-4) and k["Tl-208"] == pytest.approx(0.3594, abs=1e-4)
    at = ch.decay_chain("At-211")
    assert [n.name for n, _ in at.members] == ["At-211", "Po-211"]
    assert dict((n.name, v) for n, v in at.members)["Po-211"] == pytest.approx(0.582, abs=1e-3)
    # Bi-207 (31.6 y) cannot be in equilibrium with At-211 (7.2 h): named, not included
    assert [e[0] for e in at.excluded] == ["Bi-207"] and "Bi-207" in at.note


def test_source_chain_options():
    d = np.zeros((3, 3, 3))
    d[1, 1, 1] = 1.0
    eq = rd.Source("Ac-225", d)
    assert eq.chain == "equilibrium" and len(eq.chain_members) == 7
    par = rd.Source("Ac-225", d, chain="parent")
    assert par.chain == "parent" and par.chain_members == [("Ac-225", 1.0)]
    assert "Fr-221" in par.chain_note  # says what is left out
    assert par.alpha_mev_per_decay == pytest.approx(nc.load_nuclide("Ac-225").alpha_recoil_mev_per_decay)
    assert eq.alpha_mev_per_decay > 4.5 * par.alpha_mev_per_decay  # four more alphas
    assert rd.Source("Ac-225", d, chain=" Equilibrium ").chain == "equilibrium"


def test_chain_option_without_daughters_is_accepted_and_said():
    d = np.ones((2, 2, 2))
    with pytest.warns(UserWarning, match="Lu-177 has no radioactive daughters"):
        s = rd.Source("Lu-177", d, chain="equilibrium")
    assert s.chain_members == [("Lu-177", 1.0)]
    # the emission arrays are the nuclide's own, bit for bit
    a, b = s.emission_arrays(), nc.load_nuclide("Lu-177").emission_arrays()
    assert all(np.array_equal(a[k], b[k]) for k in b)
    with pytest.warns(UserWarning, match="Xe-131m"):  # a daughter, but longer-lived than I-131
        rd.Source("I-131", d, chain="equilibrium")
    rd.Source("Lu-177", d, chain="parent")  # the parent alone: nothing to say (no warning: -W error)


def test_modified_nuclide_is_taken_as_given():
    import dataclasses

    betas_only = dataclasses.replace(nc.load_nuclide("Bi-213"), lines=())
    s = rd.Source(betas_only, np.ones((2, 2, 2)))
    assert s.chain == "parent" and s.alpha_mev_per_decay == pytest.approx(betas_only.alpha_recoil_mev_per_decay)
    assert rd.Source(nc.load_nuclide("Bi-213"), np.ones((2, 2, 2))).chain_members[1][0] == "Po-213"


@pytest.mark.parametrize("bad", ["secular", "", 1, "daughters"])
def test_unknown_chain_keyword(bad):
    with pytest.raises(InputError, match="chain") as err:
        rd.Source("Ac-225", np.ones((2, 2, 2)), chain=bad)
    assert "'equilibrium'" in str(err.value) and "'parent'" in str(err.value)


def test_study_file_chain_and_rbe_keys(tmp_path):
    from rptdose.study import SCHEMA, read_study_file

    assert "chain" in SCHEMA["study"] and "rbe_alpha" in SCHEMA["dose"]
    p = tmp_path / "study.toml"
    p.write_text('[study]\nnuclide = "Ac-225"\nchain = "secular"\n')
    with pytest.raises(InputError, match="study.chain") as err:
        read_study_file(p)
    assert "equilibrium" in str(err.value) and "parent" in str(err.value)


def test_nuclide_without_spectrum_is_refused(tmp_path, monkeypatch):
    """A beta+ emitter whose data lack 'b-spectra' (none in ICRP-107 does; a damaged or custom data
    file): InputError naming the nuclide and what is expected."""
    e = _icrp_json("F-18")
    e["b-spectra"] = []
    (tmp_path / "F-18.json").write_text(json.dumps({"name": "F-18", "half_life": 109.77, "time_unit": "m",
                                                    "emissions": e}))
    monkeypatch.setattr(nc, "_data_dir", lambda: tmp_path)
    with pytest.raises(InputError, match="F-18") as err:
        nc._load.__wrapped__("F-18")
    assert "b-spectra" in str(err.value) and "beta+" in str(err.value)


# ------------------------------------------------------------------------- emitted energy

@pytest.mark.parametrize("name", ["Ac-225", "Ra-223", "Pb-212"])
def test_emitted_energy_equals_icrp107_chain_sum(name):
    """Expected energy emitted per parent decay (what the engine samples: lines, beta inverse CDFs,
    local lines, alphas) vs the ICRP-107 sum over the members (decays per parent decay from the
    chain, emissions read directly from the ICRP-107 files): <= 0.1 %."""
    c = ch.decay_chain(name)
    reference = sum(k * _icrp_total_mev(n.name) for n, k in c.members)
    ours = _emitted_mev(c.emission_arrays())
    assert ours == pytest.approx(reference, rel=1e-3)
    assert c.total_mev_per_decay == pytest.approx(reference, rel=1e-9)  # the chain's own ICRP sums


def test_simulated_emitted_energy_ac225():
    """The energy a simulation emits per decay (energy balance) is the expected value within its
    sampling noise: 0.1 % with 1e5 decays (the non-alpha part, ~1 MeV spread per decay, gives a
    standard error of ~3e-5 of the 28.9 MeV)."""
    ph = rd.Phantom.water(shape=(3, 3, 3), spacing_mm=(5.0, 5.0, 5.0))
    d = np.zeros(ph.shape)
    d[1, 1, 1] = 1.0
    src = rd.Source("Ac-225", d)
    res = rd.simulate(ph, src, histories=100_000, seed=5, threads=2, electron_transport=False, progress=False)
    eb = res.energy_balance
    expected = _emitted_mev(src.emission_arrays())
    assert eb["emitted_mev"] == pytest.approx(expected, rel=1e-3)
    assert eb["emitted_mev"] == pytest.approx(eb["deposited_mev"] + eb["escaped_mev"], rel=1e-14)


# ------------------------------------------------------------------------------------ alphas

def test_alpha_dose_is_exact_and_part_of_dose():
    ph = rd.Phantom.water(shape=(6, 5, 4), spacing_mm=(2.0, 2.5, 3.0))
    rng = np.random.default_rng(1)
    d = rng.uniform(0.0, 1e6, ph.shape)
    d[0] = 0.0
    src = rd.Source("Ra-223", d)
    regions = {"top": np.zeros(ph.shape, bool)}
    regions["top"][3:] = True
    res = rd.simulate(ph, src, histories=20_000, seed=2, threads=2, progress=False, regions=regions)
    e_alpha = src.alpha_mev_per_decay
    assert e_alpha == pytest.approx(sum(k * n.alpha_recoil_mev_per_decay for n, k in src.decay_chain.members))
    mass_kg = ph.density.astype(np.float64) * (2.0 * 2.5 * 3.0) * 1e-6
    np.testing.assert_allclose(res.alpha_dose_gy, d * e_alpha * J_PER_MEV / mass_kg, rtol=1e-13, atol=0)
    assert np.all(res.dose_gy >= res.alpha_dose_gy)
    assert np.all(res.alpha_dose_gy[0] == 0.0)
    # the region mean holds the alphas too: at least their exact part
    m = regions["top"]
    alpha_mean = float(np.sum(res.alpha_dose_gy[m] * mass_kg[m]) / np.sum(mass_kg[m]))
    assert res.region_means["top"]["mean_dose_gy"] > alpha_mean
    # no alphas: zeros, and nothing stored
    lu = rd.simulate(ph, rd.Source("Lu-177", d), histories=2_000, seed=2, threads=1, progress=False)
    assert not np.any(lu.alpha_dose_gy) and lu.alpha_dose_gy.shape == ph.shape


def test_alpha_dose_saved_and_loaded(tmp_path):
    ph = rd.Phantom.water(shape=(3, 3, 3), spacing_mm=(4.0, 4.0, 4.0))
    res = rd.simulate(ph, rd.Source("Ac-225", np.ones(ph.shape)), histories=2_000, seed=1, threads=1,
                      progress=False)
    back = rd.load_result(res.save(tmp_path / "r.h5"))
    np.testing.assert_array_equal(back.alpha_dose_gy, res.alpha_dose_gy)
    chain = back.provenance["nuclide"]["chain"]
    assert chain["chain"] == "equilibrium" and chain["members"][3]["nuclide"] == "Bi-213"
    assert chain["members"][3]["decays_per_parent_decay"] == pytest.approx(0.99988, abs=1e-5)


def test_ldm_includes_alphas_and_rbe_weighting():
    from rptdose.analysis.alpha import rbe_region_rows, rbe_weighted_dose

    ph = rd.Phantom.water(shape=(4, 4, 4), spacing_mm=(3.0, 3.0, 3.0))
    d = np.zeros(ph.shape)
    d[2, 2, 2] = 1e9
    src = rd.Source("Ac-225", d)
    ldm = rd.local_deposition(ph, src)
    c = src.decay_chain
    e_local = c.electron_mev_per_decay + c.alpha_recoil_mev_per_decay
    assert ldm.dose_gy[2, 2, 2] == pytest.approx(1e9 * e_local * J_PER_MEV / (27e-6), rel=1e-12)
    alpha = src.alpha_dose_gy(ph)
    w = rbe_weighted_dose(ldm.dose_gy, alpha, 5.0)
    assert w[2, 2, 2] == pytest.approx(ldm.dose_gy[2, 2, 2] + 4.0 * alpha[2, 2, 2], rel=1e-14)
    rows = rbe_region_rows({"hot": d > 0}, ldm.dose_gy, alpha, ph.voxel_mass_kg, 5.0)
    assert rows[0]["mean_dose_GyRBE"] == pytest.approx(w[2, 2, 2], rel=1e-12)
    assert 0.9 < rows[0]["alpha_fraction"] < 1.0


# --------------------------------------------------------------------------------- positrons

def test_positron_stopping_power_is_icru37():
    from rptdose.physics import electron as el
    from rptdose.physics.materials import get_material

    m = get_material("water")
    e = np.geomspace(0.01, 3.0, 25)
    tau = e / MEC2
    b2 = tau * (tau + 2.0) / (tau + 1.0) ** 2
    fp = 2 * math.log(2) - b2 / 12 * (23 + 14 / (tau + 2) + 10 / (tau + 2) ** 2 + 4 / (tau + 2) ** 3)
    br = np.log(tau**2 * (tau + 2) / (2 * (m.i_ev * 1e-6 / MEC2) ** 2)) + fp - el.density_effect(m, e)
    icru37 = el.TWOPI_RE2_MC2 * m.electrons_per_gram / b2 * br
    np.testing.assert_allclose(el.collision_stopping_power(m, e, particle="positron"), icru37, rtol=1e-12)
    # restricted (transfers below the cut) + the hard Bhabha collisions' mean loss above it
    # (integral of W dsigma, from the integrated cross sections) = unrestricted: the two formulas
    # the core uses for positrons are consistent (0.2 %: the numerical integral)
    cut = 0.002
    for energy in (0.05, 0.3, 1.5):
        w = np.geomspace(cut, energy, 3001)
        sig = np.array([el.bhabha_cross_section(m, energy, x)[0] for x in w[:-1]] + [0.0])
        hard = float(np.sum(0.5 * (w[1:] + w[:-1]) * -np.diff(sig)))  # MeV cm2/g
        restricted = el.collision_stopping_power(m, energy, cut_mev=cut, particle="positron")[0]
        total = el.collision_stopping_power(m, energy, particle="positron")[0]
        assert restricted + hard == pytest.approx(total, rel=2e-3), energy


def test_bhabha_sampling_matches_cross_section():
    """Fraction of hard Bhabha collisions transferring more than W, sampled by the core, vs the
    ratio of the integrated cross sections above W and above the cut (G4MollerBhabhaModel form)."""
    from rptdose import _core
    from rptdose.physics import electron as el
    from rptdose.physics.tables import transport_tables

    t = transport_tables(["water"])
    e = 0.5
    w, cos_p = _core._sample_bhabha(t, e, 200_000, 11)
    cut = t["el_wcc_mev"]
    assert np.all((w > cut * (1 - 1e-9)) & (w <= e))
    for x in (0.005, 0.02, 0.1, 0.3):
        expected = el.bhabha_cross_section("water", e, x)[0] / el.bhabha_cross_section("water", e, cut)[0]
        got = float(np.mean(w > x))
        sigma = math.sqrt(expected * (1 - expected) / w.size)
        assert abs(got - expected) < 4 * sigma + 1e-4, (x, got, expected)


@pytest.mark.parametrize("name", ["F-18", "Ga-68"])
def test_positron_emitters_energy(name):
    """beta+ yield and mean energy as ICRP-107, the annihilation photons made by the core count as
    emitted (2 m_e c^2 per positron) and the total matches ICRP-107's (which lists them) <= 0.1 %."""
    nuc = nc.load_nuclide(name)
    em = nuc.emission_arrays()
    assert em["positron_yield"] == pytest.approx(sum(y for _, y in _icrp_json(name)["beta+"]))
    assert nuc.spectrum_mean_mev("beta+") == pytest.approx(nuc.positron_mean_mev, rel=1e-3)
    assert _emitted_mev(em) == pytest.approx(_icrp_total_mev(name), rel=1e-3)


def test_positron_at_rest_annihilates_into_two_511_kev_photons():
    ph = rd.Phantom.water(shape=(5, 5, 5), spacing_mm=(1.0, 1.0, 1.0))
    d = np.zeros(ph.shape)
    d[2, 2, 2] = 1.0
    res = rd.simulate(ph, rd.Source.monoenergetic("positron", 0.0, d), histories=4_000, seed=1, threads=1,
                      progress=False)
    eb = res.energy_balance
    assert eb["emitted_mev"] == pytest.approx(ANNIHILATION_MEV, rel=1e-8)  # 1.02199790 MeV
    assert eb["emitted_mev"] == pytest.approx(eb["deposited_mev"] + eb["escaped_mev"], rel=1e-14)
    assert eb["escaped_mev"] > 0.9 * ANNIHILATION_MEV  # 5 mm of water: most 511 keV photons leave


def test_cu64_shared_spectrum_split():
    """ICRP-107 gives Cu-64's beta- and beta+ particles one spectrum; the allowed-shape split
    reproduces ICRP-107's branch yields (0.390, 0.174) within 0.5 % and mean energies (190.3,
    278.2 keV) within 1 %."""
    cu = nc.load_nuclide("Cu-64")
    ef, nm, npl = nc._spectrum_shares(cu)
    trapz = getattr(np, "trapezoid", None) or np.trapz
    assert trapz(npl, ef) == pytest.approx(cu.positron_yield, rel=5e-3)
    assert trapz(nm, ef) == pytest.approx(cu.beta_yield, rel=5e-3)
    assert cu.spectrum_mean_mev("beta+") == pytest.approx(cu.positron_mean_mev, rel=1e-2)
    assert cu.spectrum_mean_mev("beta-") == pytest.approx(cu.beta_mean_mev, rel=1e-2)


def test_f18_positrons_stop_within_their_range():
    """F-18 positrons (end point 0.634 MeV, CSDA range 2.4 mm in water for positrons) in 0.5 mm
    voxels: the kinetic energy deposited beyond 3 mm of the source is below 1 % of it, and the
    annihilation photons carry 1.022 MeV per positron away from a 15 mm cube."""
    from rptdose.physics import electron as el

    r_csda = el.csda_range("water", 0.6335, particle="positron")[0] * 10.0  # mm
    assert 2.0 < r_csda < 2.8
    n = 31
    ph = rd.Phantom.water(shape=(n, n, n), spacing_mm=(0.5, 0.5, 0.5))
    d = np.zeros(ph.shape)
    d[n // 2, n // 2, n // 2] = 1.0
    src = rd.Source("F-18", d)
    res = rd.simulate(ph, src, histories=20_000, seed=4, threads=2, progress=False)
    edep = res.dose_gy * ph.voxel_mass_kg / J_PER_MEV  # MeV per decay (one decay in the map)
    idx = (np.indices(ph.shape) - n // 2) * 0.5
    r = np.sqrt((idx**2).sum(axis=0))
    nuc = nc.load_nuclide("F-18")
    kinetic = nuc.positron_yield * nuc.spectrum_mean_mev("beta+")
    # beyond 3 mm only photon deposits remain: a 511 keV photon deposits ~ mu_en r ~ 0.33/cm x 0.5 cm
    beyond = float(edep[r > 3.0].sum())
    assert beyond < 0.1 * nuc.positron_yield * ANNIHILATION_MEV
    assert float(edep[r <= 3.0].sum()) > 0.97 * kinetic


# ------------------------------------------------------------------ demo and `rptdose run`

def test_demo_switched_to_ac225_runs_end_to_end(tmp_path):
    """``rptdose demo --nuclide Ac-225`` in small: the study file names the nuclide and its chain,
    the administered activity is the clinical 8 MBq, and `rptdose run` writes the RBE-weighted
    dose (Gy(RBE) in the file names, the NIfTI header and the report) next to the absorbed dose."""
    import SimpleITK as sitk

    from rptdose.demo import DemoPatient, effective_half_life_h, write_demo_study
    from rptdose.pipeline import run_study

    p = DemoPatient(voxel_mm=16.0, nuclide="Ac-225")
    assert p.administered_mbq == 8.0
    # same biology: T_bio from Lu-177's T_eff, then Ac-225's physical half-life (240 h)
    t_bio = 1.0 / (1.0 / 50.0 - 1.0 / (6.647 * 24))
    assert effective_half_life_h("kidney_left", "Ac-225") == pytest.approx(1.0 / (1.0 / t_bio + 1.0 / 240.0),
                                                                          rel=2e-3)
    study_file = write_demo_study(tmp_path / "patient", p, histories=20_000)
    text = study_file.read_text()
    assert 'nuclide = "Ac-225"' in text and 'chain = "equilibrium"' in text and "activity_mbq = 8\n" in text
    out = tmp_path / "out"
    outcome = run_study(study_file, out, plots=False, progress=False)
    assert outcome.study.source.chain == "equilibrium"
    for name in ("dose_rbe_GyRBE.nii.gz", "alpha_dose_gy.nii.gz", "regions_rbe_GyRBE.csv"):
        assert (out / name).is_file(), name
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(out / "dose_rbe_GyRBE.nii.gz"))
    reader.ReadImageInformation()
    assert "Gy(RBE)" in reader.GetMetaData("descrip") and "rbe_alpha 5" in reader.GetMetaData("descrip")
    rows = (out / "regions_rbe_GyRBE.csv").read_text().splitlines()
    assert rows[0] == "name,mean_dose_gy,alpha_mean_dose_gy,alpha_fraction,rbe_alpha,mean_dose_GyRBE"
    kidney = next(r.split(",") for r in rows if r.startswith("kidney_left"))
    d, a, w = float(kidney[1]), float(kidney[2]), float(kidney[5])
    assert w == pytest.approx(d + 4.0 * a, rel=1e-6) and 0.9 < a / d < 1.0
    html = (out / "report.html").read_text()
    assert "Gy(RBE)" in html and "Pb-209" in html and "decays per parent decay" in html
    back = rd.load_result(out / "dose.h5")
    assert back.alpha_dose_gy.max() > 0 and back.provenance["dose"]["provenance"]["nuclide"]["chain"]["members"]


def test_demo_nuclide_checks():
    from rptdose.demo import DemoPatient, demo_activity_mbq

    with pytest.raises(InputError, match="half-life"):
        DemoPatient(voxel_mm=16.0, nuclide="F-18")
    with pytest.raises(InputError, match="Xx-1"):
        DemoPatient(voxel_mm=16.0, nuclide="Xx-1")
    # a nuclide without a listed activity: as much energy emitted in the patient as the Lu-177 demo
    assert 1.0 < demo_activity_mbq("Y-90") < 7400.0


# ------------------------------------------------------------------------ other dose methods

def test_fast_method_emitters_tell_chains_apart():
    from rptdose.fast.kernels import emitter_of

    d = np.ones((2, 2, 2))
    assert emitter_of(rd.Source("Ac-225", d)).label == "Ac-225+chain"
    assert emitter_of(rd.Source("Ac-225", d, chain="parent")).label == "Ac-225"
    assert emitter_of("Lu-177").label == "Lu-177"
    split = emitter_of("Ac-225").energy_split()
    assert split["alpha"] == pytest.approx(ch.decay_chain("Ac-225").alpha_recoil_mev_per_decay)


def test_sphere_model_refuses_positron_emitters():
    from rptdose.fast.sphere import sphere_absorbed_fractions

    with pytest.raises(InputError, match="positron"):
        sphere_absorbed_fractions("Ga-68", masses_g=(10.0,), histories=100, use_cache=False)


def test_energy_above_the_tables_is_reported():
    """Tb-149 emits 24 keV per decay above the tables' 3 MeV (1.7 % of its transported energy): a
    warning says so, and the arrays carry the amount (provenance)."""
    with pytest.warns(UserWarning, match="Tb-149.*above 3 MeV"):
        em = nc.load_nuclide("Tb-149").emission_arrays()
    assert em["above_table_mev_per_decay"] == pytest.approx(0.02396, rel=1e-3)
    assert nc.load_nuclide("Y-86").emission_arrays()["above_table_mev_per_decay"] > 0  # 0.3 %: no warning


# ------------------------------------------------------------------------------ GPU backends

@pytest.mark.parametrize("name", ["Cu-64", "Ac-225"])
def test_gpu_launch_logic_with_positrons_and_chains_equals_cpu(name):
    """The CUDA kernels (emulated on the CPU) and the cupy backend's host code run the positron
    emission, the annihilation photons and a chain's mixed spectra as the CPU does, bit for bit
    (the device's own check runs only where a GPU is: tests/gpu)."""
    from rptdose import _core
    from rptdose.physics.tables import transport_tables
    from rptdose.transport import cupy_backend
    from rptdose.transport.request import RunRequest

    n = 6
    tables = transport_tables(["water", "lung"])
    em = ch.decay_chain(name).emission_arrays()
    density = np.ones((n, n, n), np.float32)
    material = np.zeros((n, n, n), np.int32)
    material[:, :, n // 2:], density[:, :, n // 2:] = 1, 0.3
    decays = np.zeros((n, n, n))
    decays[2:4, 2:4, 2:4] = 1.0
    req = RunRequest(density=density, material=material, spacing_mm=(1.5, 1.5, 1.5), decays=decays, tables=tables,
                     emissions=em, histories=1001, seed=9, batches=10, threads=2)
    ref = _core.simulate_cpu(req)
    emu = _core.simulate_emulated(req.with_(grid_dim=3, block_dim=7, chunk=37))
    cup = cupy_backend.simulate_cupy_emulated(req.with_(grid_dim=3, block_dim=7))
    for got in (emu, cup):
        np.testing.assert_array_equal(got["edep_mev"], ref["edep_mev"])
        for k in ("emitted_units", "deposited_units", "escaped_units"):
            assert got[k] == ref[k], k
    assert ref["emitted_units"] == ref["deposited_units"] + ref["escaped_units"]


THERANOSTIC = ["Lu-177", "Y-90", "I-131", "Tb-161", "Ho-166", "Sm-153", "Re-188", "Re-186", "P-32", "Sr-89",
               "Cu-67", "Cu-64", "Ga-68", "F-18", "Zr-89", "I-124", "I-123", "In-111", "Tc-99m", "Sc-44", "Sc-47",
               "Y-86", "Tb-149", "Tb-152", "Tb-155", "Ac-225", "Ra-223", "Pb-212", "Bi-213", "Bi-212", "At-211",
               "Th-227", "Ra-224", "Er-169", "Sn-117m", "Ag-111", "Pb-203", "Cu-61", "Ga-67", "Rb-82", "Ge-68",
               "Sr-90", "Mo-99", "Br-76", "As-72", "Ga-66", "U-230", "Th-226", "Ra-225"]


@pytest.mark.parametrize("name", THERANOSTIC)
def test_therapy_and_theranostic_nuclides_run(name):
    """Every ICRP-107 nuclide of therapy or theranostics runs through the transport with its
    chain; the energy balance is exact. (Energy above the tables' 3 MeV is reported with a
    warning for a few: Tb-149, Tb-152, Rb-82, Br-76, As-72, Ga-66.)"""
    import warnings

    ph = rd.Phantom.water(shape=(3, 3, 3), spacing_mm=(2.0, 2.0, 2.0))
    d = np.zeros(ph.shape)
    d[1, 1, 1] = 1.0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*above 3 MeV", category=UserWarning)
        src = rd.Source(name, d)
        res = rd.simulate(ph, src, histories=300, seed=1, threads=1, progress=False)
    eb = res.energy_balance
    assert eb["emitted_mev"] == pytest.approx(eb["deposited_mev"] + eb["escaped_mev"], rel=1e-13)
    assert eb["emitted_mev"] > 0 and np.all(res.dose_gy >= res.alpha_dose_gy)
    assert (src.alpha_mev_per_decay > 0) == any(n.alphas for n, _ in src.decay_chain.members)


def test_progeny_table_is_radioactivedecays_icrp107_data():
    """The shipped progeny table (data/icrp107_progeny.csv) holds exactly what radioactivedecay's
    ICRP-107 data set says: half-lives, daughters and branching fractions of every nuclide, bit for
    bit (data/make_progeny_table.py wrote it; the package is a test dependency only)."""
    import math

    rdp = pytest.importorskip("radioactivedecay")
    from rptdose.physics import chains

    source, half, progeny = chains._table()
    assert source.startswith(f"ICRP-107 progeny and half-lives, from radioactivedecay {rdp.__version__} ")
    assert set(half) == set(rdp.DEFAULTDATA.nuclides)
    for name in rdp.DEFAULTDATA.nuclides:
        nuc = rdp.Nuclide(name)
        hl = float(nuc.half_life("s"))
        assert half[name] == hl, name
        expected = () if not math.isfinite(hl) else tuple(
            (str(d), float(b)) for d, b in zip(nuc.progeny(), nuc.branching_fractions()) if float(b) > 0.0)
        assert progeny.get(name, ()) == expected, name
