"""Course of cycles and next-cycle planning (rptdose.analysis.course, `rptdose course` / `plan`),
on synthetic regions.json files (tests/_course_fixtures.py)."""

import json
import math

import pytest

import rptdose as rd
from rptdose.analysis import course as co
from rptdose.analysis import radiobiology as rb
from rptdose.errors import InputError

from _course_fixtures import cycle_doc, default_regions, region, two_cycles, write_cycle


@pytest.fixture
def cycles(tmp_path):
    return two_cycles(tmp_path)


def limits_file(tmp_path, body, name="limits.toml"):
    p = tmp_path / name
    p.write_text('format = "rptdose-limits"\nformat_version = 1\n' + body)
    return p


def run_cli(argv, monkeypatch):
    """The real `rptdose` entry point with only this module's subcommands registered, so that the
    test does not depend on the other command modules."""
    import rptdose.cli as cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ("rptdose.cli_course",))
    return cli.main(argv)


def test_totals_and_uncertainty(cycles):
    course = co.course_from_paths(cycles)
    k = course.regions["kidney_left"]
    assert k.tissue.name == "kidney" and k.complete
    assert k.total_dose_gy == pytest.approx(4.0 + 4.4, rel=1e-14)
    # 1 sigma: independent cycles in quadrature
    assert k.total_dose_sigma_gy == pytest.approx(math.hypot(0.04, 0.044), rel=1e-12)
    bed1 = rd.bed(4.0, 50.0, 2.6, 2.8)
    bed2 = rd.bed(4.4, 50.0, 2.6, 2.8)
    assert k.total_bed_gy == pytest.approx(bed1 + bed2, rel=1e-14)
    g = rb.g_factor(50.0, 2.8)
    s1, s2 = (1 + 2 * g * 4.0 / 2.6) * 0.04, (1 + 2 * g * 4.4 / 2.6) * 0.044
    assert k.total_bed_sigma_gy == pytest.approx(math.hypot(s1, s2), rel=1e-12)
    assert k.total_eqd2_gy == pytest.approx(rd.eqd2(bed1 + bed2, 2.6), rel=1e-14)
    assert course.regions["spleen"].tissue is None and math.isnan(course.regions["spleen"].total_bed_gy)
    checks = {(c.region, c.limit.quantity): c for c in course.checks}
    assert checks[("kidney_left", "bed")].status == "within"
    assert checks[("red_marrow", "absorbed")].total_gy == pytest.approx(0.25 + 0.275, rel=1e-14)


def test_bed_additivity_vs_single_administration(cycles):
    """Two cycles give the sum of their BEDs, less than one administration of the summed dose."""
    course = co.course_from_paths(cycles)
    k = course.regions["tumour_1"]
    one_shot = rd.bed(50.0, 90.0, 10.0, 1.5)
    assert k.total_bed_gy == pytest.approx(2 * rd.bed(25.0, 90.0, 10.0, 1.5), rel=1e-14)
    assert k.total_bed_gy < one_shot


def test_missing_region_is_flagged(tmp_path):
    c1 = write_cycle(tmp_path / "c1", cycle_doc("2026-03-02T09:00:00"))
    c2 = write_cycle(tmp_path / "c2", cycle_doc("2026-04-27T09:00:00", regions=default_regions()[:3]))
    course = co.course_from_paths([c1, c2])
    assert not course.regions["tumour_1"].complete
    assert any("tumour_1" in w and "missing" in w for w in course.warnings)
    # an organ with a limit missing from a cycle: planning refuses
    c3 = write_cycle(tmp_path / "c3", cycle_doc("2026-06-22T09:00:00", regions=default_regions()[1:]))
    course = co.course_from_paths([c1, c2, c3])
    with pytest.raises(InputError, match="kidney_left.*missing"):
        co.plan_course(course, 1)


def test_plan_reaches_the_limit_exactly(cycles, tmp_path):
    """With only a kidney BED limit and k = 0 the proposed activity gives exactly that BED."""
    lim = limits_file(tmp_path, '[[limit]]\ntissue = "kidney"\nquantity = "bed"\nvalue_gy = 28.0\nsource = "test"\n')
    course = co.course_from_paths(cycles, limits_path=lim, k=0.0)
    for n in (1, 2, 3):
        plan = co.plan_course(course, n)
        assert plan.limiting.region == "kidney_left" and plan.k == 0.0
        a = plan.proposed_activity_mbq
        assert a == plan.limiting.activity_no_margin_mbq          # the closed form
        rc = course.regions["kidney_left"]
        d = 4.4 / 7000.0 * a                     # dose per MBq of the last cycle
        total = rc.total_bed_gy + n * rd.bed(d, 50.0, 2.6, 2.8)
        assert total == pytest.approx(28.0, rel=1e-9)
        # the other kidney stays below
        proj = {(p.region, p.quantity): p for p in plan.projections}
        assert proj[("kidney_right", "bed")].projected_gy < 28.0
        assert proj[("kidney_left", "bed")].room_gy == pytest.approx(0.0, abs=1e-9)
        assert plan.proposed_check.status == co.WITHIN       # at the limit, to rounding: not "exceeds"


def _u_bed_kidney_left(course, a, n):
    """u of kidney_left's projected BED by hand (module docstring of rptdose.analysis.course): cycle 1
    independent, cycle 2 (the kinetics cycle) and the planned cycles correlated."""
    g = rb.g_factor(50.0, 2.8)
    d1, d2 = 4.0, 4.4
    s1 = (1 + 2 * g * d1 / 2.6) * d1 * 0.01
    s2 = (1 + 2 * g * d2 / 2.6) * d2 * 0.01
    dp = 4.4 / 7000.0 * a
    planned = n * (1 + 2 * g * dp / 2.6) * dp * 0.01
    return math.sqrt(s1 ** 2 + (s2 + planned) ** 2)


def test_plan_keeps_k_standard_uncertainties_below_the_limit(cycles, tmp_path):
    """Default k = 1.645: projected BED + k u = limit exactly at the proposed activity, with u from
    the per-cycle uncertainties (the planned cycles correlated with the kinetics cycle)."""
    lim = limits_file(tmp_path, '[[limit]]\ntissue = "kidney"\nquantity = "bed"\nvalue_gy = 28.0\nsource = "test"\n')
    course = co.course_from_paths(cycles, limits_path=lim)
    assert course.k == co.DEFAULT_K == 1.645
    for n in (1, 2, 3):
        plan = co.plan_course(course, n)
        a = plan.proposed_activity_mbq
        assert 0 < a < plan.limiting.activity_no_margin_mbq
        rc = course.regions["kidney_left"]
        d = 4.4 / 7000.0 * a
        total = rc.total_bed_gy + n * rd.bed(d, 50.0, 2.6, 2.8)
        u = _u_bed_kidney_left(course, a, n)
        assert total < 28.0
        assert total + 1.645 * u == pytest.approx(28.0, rel=1e-9)
        at = plan.limiting.at
        assert at.projected_gy == pytest.approx(total, rel=1e-12) and at.u_gy == pytest.approx(u, rel=1e-12)
        assert at.margin_gy == pytest.approx(1.645 * u, rel=1e-12)
        assert plan.proposed_check.status == co.WITHIN
    # a larger k: a smaller activity; k = 0: the activity that reaches the limit
    acts = [co.plan_course(course, 2, k=k).proposed_activity_mbq for k in (0.0, 1.0, 1.645, 3.0)]
    assert acts == sorted(acts, reverse=True)
    assert acts[0] == co.plan_course(course, 2, k=0).limiting.activity_no_margin_mbq


def test_margin_grows_with_the_uncertainty(tmp_path):
    """The same doses with a 10 % uncertainty: a larger margin, a smaller activity."""
    lim = limits_file(tmp_path, '[[limit]]\ntissue = "kidney"\nquantity = "absorbed"\nvalue_gy = 23.0\n'
                                'source = "x"\n')
    plans = []
    for rel in (0.01, 0.10):
        regs = [region("kidney_left", "kidney", 4.0, 50.0, rel=rel)]
        c1 = write_cycle(tmp_path / f"a{rel}", cycle_doc("2026-03-02T09:00:00", regions=regs))
        c2 = write_cycle(tmp_path / f"b{rel}", cycle_doc("2026-04-27T09:00:00", regions=regs))
        plans.append(co.plan_course(co.course_from_paths([c1, c2], limits_path=lim), 2))
    assert plans[1].proposed_activity_mbq < plans[0].proposed_activity_mbq
    assert plans[1].limiting.at.margin_gy > plans[0].limiting.at.margin_gy
    # absorbed dose by hand: u^2 = (0.04 rel-scaled)^2 + (D2 u + 2 d A u)^2, T + k u = 23
    for rel, plan in zip((0.01, 0.10), plans):
        a = plan.proposed_activity_mbq
        t = 8.0 + 2 * 4.0 / 7400.0 * a
        u = math.hypot(4.0 * rel, 4.0 * rel + 2 * 4.0 / 7400.0 * a * rel)
        assert t + 1.645 * u == pytest.approx(23.0, rel=1e-9)


def test_uncertainty_basis_prefers_the_most_complete(tmp_path):
    regs = default_regions()
    regs[0].update(mean_dose_rel_uncertainty_with_tia=0.05, u_total=0.08)    # kidney_left: u_total
    regs[1].update(mean_dose_rel_uncertainty_with_tia=0.06)                  # kidney_right: with TIA
    regs[2]["mean_dose_rel_uncertainty"] = None                             # red_marrow: none
    c1 = write_cycle(tmp_path / "c1", cycle_doc("2026-03-02T09:00:00", regions=regs))
    course = co.course_from_paths([c1])
    r = course.regions
    assert r["kidney_left"].basis == "u_total" and r["kidney_left"].total_dose_u_gy == pytest.approx(0.32)
    assert r["kidney_right"].basis == "statistical + TIA fit"
    assert r["kidney_right"].total_dose_u_gy == pytest.approx(3.6 * 0.06)
    assert r["tumour_1"].basis == "statistical only"
    assert r["red_marrow"].basis == "not given"
    assert any("red_marrow" in w and "no dose uncertainty" in w for w in course.warnings)
    checks = {(c.region, c.limit.quantity): c for c in course.checks}
    assert checks[("kidney_left", "absorbed")].sigma_gy == pytest.approx(0.32)


@pytest.mark.parametrize("k", [0.0, 1.645, 2.0])
def test_every_reported_activity_is_labelled_by_the_check(cycles, k):
    """The issue's case: no activity is called within a limit that it exceeds. Each label is the
    check of that activity: EXCEEDS iff some projected total > its limit; 'within' only when
    projected + k u <= limit for every limit."""
    course = co.course_from_paths(cycles, k=k)
    plan = co.plan_course(course, 2, target_gy=200.0)

    def consistent(chk):
        over = [s for s in chk.limits if s.projected_gy > s.limit.value_gy * (1 + co.CHECK_RTOL)]
        no_margin = [s for s in chk.limits if s.upper_gy > s.limit.value_gy * (1 + co.CHECK_RTOL)]
        if over:
            assert chk.status == co.EXCEEDS and chk.label.startswith("EXCEEDS") and "within" not in chk.short_label
        elif no_margin:
            assert chk.status == co.NO_MARGIN and "NOT THE MARGIN" in chk.label
        else:
            assert chk.status == co.WITHIN and chk.label.startswith("within every limit")

    consistent(plan.proposed_check)
    consistent(plan.target_check)
    assert plan.target_check.status == co.EXCEEDS                   # 200 Gy needs far too much activity
    for r in plan.rows:
        consistent(r.check)
        assert (r.check.status == co.WITHIN) == (r.activity_mbq <= plan.max_activity_mbq)
    assert plan.limiting.check.status == co.WITHIN
    exceeded = 0
    for srow in plan.sensitivity:
        if srow["proposed_fraction_of_limit"] > 1.0:
            exceeded += 1
            assert srow["proposed_status"] == co.EXCEEDS and srow["proposed_label"].startswith("EXCEEDS")
        else:
            assert srow["proposed_status"] != co.EXCEEDS
        assert srow["max_activity_status"] == co.WITHIN
    assert exceeded == 2                                            # dose per MBq x1.2 (alone and with t_eff)


def test_within_the_limit_but_not_the_margin():
    lim = co.Limit("kidney", "absorbed", 23.0, "x")
    s = co.LimitStatus(region="k", limit=lim, activity_mbq=1.0, delivered_gy=0.0, projected_gy=22.5, u_gy=0.5, k=2.0)
    assert s.status == co.NO_MARGIN and s.upper_gy == 23.5
    chk = co.ActivityCheck(activity_mbq=1.0, k=2.0, limits=[s])
    assert "NOT THE MARGIN" in chk.label and "within the limits, NOT the margin" in chk.short_label
    assert co.LimitStatus("k", lim, 1.0, 0.0, 23.5, 0.0, 2.0).status == co.EXCEEDS
    assert co.LimitStatus("k", lim, 1.0, 0.0, 22.0, 0.4, 2.0).status == co.WITHIN


def test_delivered_within_the_margin_gives_zero(tmp_path):
    lim = limits_file(tmp_path, '[[limit]]\ntissue = "kidney"\nquantity = "absorbed"\nvalue_gy = 8.1\n'
                                'source = "x"\n')
    regs = [region("kidney_left", "kidney", 4.0, 50.0, rel=0.05)]   # 8.0 +- 0.28 Gy delivered
    c1 = write_cycle(tmp_path / "c1", cycle_doc("2026-03-02T09:00:00", regions=regs))
    c2 = write_cycle(tmp_path / "c2", cycle_doc("2026-04-27T09:00:00", regions=regs))
    plan = co.plan_course(co.course_from_paths([c1, c2], limits_path=lim), 1)
    assert plan.proposed_activity_mbq == 0.0 and plan.limiting.activity_no_margin_mbq > 0
    assert any("margin k u already reaches" in w for w in plan.warnings)
    assert plan.proposed_check.status == co.NO_MARGIN


def test_plan_absorbed_limit_and_kinetics_from(cycles):
    course = co.course_from_paths(cycles)
    plan = co.plan_course(course, 2, kinetics_from=1, k=0)
    # default limits: kidney_left absorbed 23 Gy limits; kinetics of cycle 1: 4.0 Gy / 7400 MBq
    assert plan.limiting.region == "kidney_left" and plan.limiting.limit.quantity == "absorbed"
    assert plan.proposed_activity_mbq == pytest.approx((23.0 - 8.4) / (2 * 4.0 / 7400.0), rel=1e-12)
    # with the margin: cycle 2 independent, cycle 1 (the kinetics cycle) correlated with the planned ones
    a = co.plan_course(course, 2, kinetics_from=1).proposed_activity_mbq
    d = 4.0 / 7400.0 * a
    u = math.hypot(0.044, 0.04 + 2 * d * 0.01)
    assert 8.4 + 2 * d + 1.645 * u == pytest.approx(23.0, rel=1e-9)
    assert plan.course.cycles[plan.kinetics_cycle].label == "cycle1"
    with pytest.raises(InputError, match="kinetics-from"):
        co.plan_course(course, 2, kinetics_from=3)
    with pytest.raises(InputError, match="cycles-left"):
        co.plan_course(course, 0)


def test_plan_tumour_target_and_sensitivity(cycles):
    course = co.course_from_paths(cycles, k=0)
    plan = co.plan_course(course, 2, target_gy=60.0)
    # tumour: 50 Gy delivered, 25 Gy / 7000 MBq in the last cycle -> 10 Gy more in two cycles
    assert plan.target_activity_mbq == pytest.approx(10.0 / (2 * 25.0 / 7000.0), rel=1e-12)
    assert plan.proposed_activity_mbq == plan.target_activity_mbq < plan.max_activity_mbq
    assert plan.target_check.status == co.WITHIN
    rows = {s["scenario"]: s for s in plan.sensitivity}
    assert rows["dose per MBq x1.2"]["max_activity_mbq"] == pytest.approx(plan.max_activity_mbq / 1.2, rel=1e-12)
    assert rows["dose per MBq x0.8"]["max_activity_mbq"] > plan.max_activity_mbq
    assert len(plan.sensitivity) == 7
    # a BED target solves the quadratic too
    plan = co.plan_course(course, 1, target_gy=80.0, target_quantity="bed")
    d = 25.0 / 7000.0 * plan.target_activity_mbq
    assert course.regions["tumour_1"].total_bed_gy + rd.bed(d, 90.0, 10.0, 1.5) == pytest.approx(80.0, rel=1e-9)


def test_limit_already_reached(tmp_path):
    regs = default_regions(scale=4.0)        # kidney 16 Gy a cycle
    c1 = write_cycle(tmp_path / "c1", cycle_doc("2026-03-02T09:00:00", regions=regs))
    c2 = write_cycle(tmp_path / "c2", cycle_doc("2026-04-27T09:00:00", regions=regs))
    course = co.course_from_paths([c1, c2])
    assert any(c.status == "exceeded" for c in course.checks)
    plan = co.plan_course(course, 1)
    assert plan.proposed_activity_mbq == 0.0
    assert any("reached its limit" in w for w in plan.warnings)


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.update(format_version=2), "format_version"),
    (lambda d: d.update(format="something-else"), "'format'"),
    (lambda d: d.pop("administered_activity_mbq"), "administered_activity_mbq"),
    (lambda d: d.update(administration_time="next tuesday"), "ISO-8601"),
    (lambda d: d["regions"][0].update(kind="brain"), "kind"),
    (lambda d: d["regions"][0].pop("mean_dose_gy"), "mean_dose_gy"),
    (lambda d: d["regions"][0].update(mean_dose_gy=-1.0), "mean_dose_gy"),
    (lambda d: d["regions"].append(d["regions"][0]), "twice"),
    (lambda d: d.update(regions=[]), "regions"),
])
def test_bad_regions_json(tmp_path, mutate, match):
    doc = cycle_doc("2026-03-02T09:00:00")
    mutate(doc)
    folder = write_cycle(tmp_path / "c1", doc)
    with pytest.raises(InputError, match=match) as exc:
        co.read_regions(folder)
    assert "regions.json" in str(exc.value)          # names the file


def test_missing_t_eff_where_bed_is_needed(tmp_path):
    regs = default_regions()
    regs[0]["t_eff_h"] = None
    c1 = write_cycle(tmp_path / "c1", cycle_doc("2026-03-02T09:00:00", regions=regs))
    with pytest.raises(InputError, match="t_eff_h.*null.*BED limit"):
        co.course_from_paths([c1])
    # without a BED limit it is only a warning (no BED for that region)
    lim = limits_file(tmp_path, '[[limit]]\ntissue = "kidney"\nquantity = "absorbed"\nvalue_gy = 23.0\nsource = "x"\n')
    course = co.course_from_paths([c1], limits_path=lim)
    assert math.isnan(course.regions["kidney_left"].total_bed_gy)


def test_cycles_out_of_order_and_nuclide(tmp_path):
    c1 = write_cycle(tmp_path / "c1", cycle_doc("2026-03-02T09:00:00"))
    c2 = write_cycle(tmp_path / "c2", cycle_doc("2026-04-27T09:00:00"))
    with pytest.raises(InputError, match="out of order"):
        co.load_cycles([c2, c1])
    c3 = write_cycle(tmp_path / "c3", cycle_doc("2026-06-22T09:00:00", nuclide="Y-90"))
    with pytest.raises(InputError, match="same nuclide"):
        co.load_cycles([c1, c3])
    with pytest.raises(InputError, match="no regions.json"):
        co.load_cycles([tmp_path / "nowhere"])


def test_close_cycles_warn(tmp_path):
    c1 = write_cycle(tmp_path / "c1", cycle_doc("2026-03-02T09:00:00"))
    c2 = write_cycle(tmp_path / "c2", cycle_doc("2026-03-09T09:00:00"))    # one week: < 10 x 90 h
    course = co.course_from_paths([c1, c2])
    assert any("well-separated" in w for w in course.warnings)


def test_unknown_organ_in_limits(tmp_path, cycles):
    lim = limits_file(tmp_path, '[[limit]]\ntissue = "pancreas"\nquantity = "absorbed"\nvalue_gy = 10.0\n'
                                'source = "x"\n')
    with pytest.raises(InputError, match="pancreas.*not in the tissue table"):
        co.course_from_paths(cycles, limits_path=lim)
    lim = limits_file(tmp_path, '[[limit]]\ntissue = "kidney"\nquantity = "dose"\nvalue_gy = 10.0\nsource = "x"\n')
    with pytest.raises(InputError, match="quantity"):
        co.course_from_paths(cycles, limits_path=lim)
    lim = limits_file(tmp_path, '[[limit]]\ntissue = "kidney"\nquantity = "bed"\nvalue_gy = 10.0\nsource = "x"\n')
    lim.write_text(lim.read_text().replace("format_version = 1", "format_version = 3"))
    with pytest.raises(InputError, match="format_version"):
        co.course_from_paths(cycles, limits_path=lim)


def test_shipped_limits_have_sources():
    table = co.load_limits(None, rb.load_tissues())
    got = {(x.tissue, x.quantity): x for x in table.limits}
    assert got[("kidney", "absorbed")].value_gy == 23.0 and "Emami" in got[("kidney", "absorbed")].source
    assert got[("kidney", "bed")].value_gy == 28.0 and "Bodei" in got[("kidney", "bed")].source
    assert got[("red_marrow", "absorbed")].value_gy == 2.0
    assert all(len(x.source) > 20 for x in table.limits)


def test_cli_course_and_plan_outputs(cycles, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert run_cli(["course", *map(str, cycles), "-o", str(out)], monkeypatch) == 0
    assert (out / "course.html").is_file() and (out / "course.json").is_file()
    assert not (out / "plan.csv").exists()
    rc = run_cli(["plan", *map(str, cycles), "--cycles-left", "2", "--target-tumour-gy", "60", "-o", str(out)],
                 monkeypatch)
    assert rc == 0
    text = capsys.readouterr().out
    assert "DECISION SUPPORT ONLY" in text and "set by kidney_left" in text
    assert "safe" not in text.lower()
    assert "k = 1.645" in text and "margin k u" in text
    doc = json.loads((out / "course.json").read_text())
    assert doc["plan"]["caveat"].startswith("DECISION SUPPORT ONLY")
    assert doc["plan"]["limited_by"]["region"] == "kidney_left"
    assert doc["plan"]["k"] == 1.645 and doc["plan"]["proposed_status"] == "within"
    assert {r["region"] for r in doc["plan"]["proposed_limits"]} == {"kidney_left", "kidney_right", "red_marrow"}
    assert all(r["margin_gy"] == pytest.approx(1.645 * r["u_gy"]) for r in doc["plan"]["proposed_limits"])
    assert doc["regions_without_tissue"] == ["spleen"]
    prov = doc["provenance"]
    assert [i["sha256"] for i in prov["inputs"]] == [rb.file_sha256(c / "regions.json") for c in cycles]
    assert prov["tissue_table"]["tissues"]["kidney"]["alpha_beta_gy"] == 2.6
    assert prov["limits_table"]["sha256"] == rb.file_sha256(co.DEFAULT_LIMITS)
    page = (out / "course.html").read_text()
    assert "data:image/png;base64," in page and "DECISION SUPPORT ONLY" in page and "<script" not in page
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]     # no temporary files left
    assert (out / "plan_sensitivity.csv").read_text().count("\n") == 8


def test_cli_exit_codes(cycles, tmp_path, monkeypatch, capsys):
    assert run_cli(["course", str(cycles[1]), str(cycles[0])], monkeypatch) == 2
    err = capsys.readouterr().err
    assert "out of order" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert run_cli(["plan", *map(str, cycles), "--cycles-left", "0"], monkeypatch) == 2
    assert run_cli(["course", *map(str, cycles), "--limits", str(tmp_path / "none.toml")], monkeypatch) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_internal_error_is_1(cycles, monkeypatch, capsys):
    def boom(*a, **k):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(co, "course_from_paths", boom)
    assert run_cli(["course", *map(str, cycles)], monkeypatch) == 1
    assert "internal error" in capsys.readouterr().err


def test_biexponential_region(tmp_path):
    regs = [region("kidney_left", "kidney", 4.0, 50.0, t_uptake_h=2.0), region("red_marrow", "marrow", 0.2, 30.0)]
    c1 = write_cycle(tmp_path / "c1", cycle_doc("2026-03-02T09:00:00", regions=regs))
    course = co.course_from_paths([c1])
    assert course.regions["kidney_left"].total_bed_gy == pytest.approx(
        rd.bed(4.0, 50.0, 2.6, 2.8, t_uptake_h=2.0), rel=1e-14)


def test_commands_registered():
    import rptdose.cli as cli

    assert "rptdose.cli_course" in cli.COMMAND_MODULES


def test_same_folder_names_are_numbered(tmp_path):
    c1 = write_cycle(tmp_path / "a" / "out", cycle_doc("2026-03-02T09:00:00"))
    c2 = write_cycle(tmp_path / "b" / "out", cycle_doc("2026-04-27T09:00:00"))
    assert [c.label for c in co.load_cycles([c1, c2])] == ["1:out", "2:out"]


def test_nan_statistics_read_as_missing(tmp_path):
    doc = cycle_doc("2026-03-02T09:00:00")
    doc["regions"][3]["d98_gy"] = float("nan")             # json.dumps writes NaN
    doc["regions"][3]["mean_dose_rel_uncertainty"] = float("nan")
    folder = write_cycle(tmp_path / "c1", doc)
    cyc = co.read_regions(folder)
    assert cyc.regions["tumour_1"].d98_gy is None and math.isnan(cyc.regions["tumour_1"].rel_uncertainty)
    course = co.course_from_paths([folder])
    assert math.isnan(course.regions["tumour_1"].total_dose_sigma_gy)


def test_demo_course_orchestration(tmp_path, monkeypatch, capsys):
    """demo-course: two demo cycles 56 days apart, each run, then the plan. The demo patient and the
    pipeline are replaced by stubs (the real ones take minutes); the stub run writes regions.json
    with the administration time the demo study was written with."""
    demo = pytest.importorskip("rptdose.demo")
    pipeline = pytest.importorskip("rptdose.pipeline")
    seen = []

    first = demo.ADMINISTRATION

    def fake_write(folder, histories=None, administration=None, **kw):
        assert demo.ADMINISTRATION == first                   # passed as an argument, the module is left alone
        seen.append(administration)
        return folder / "study.toml"

    def fake_run(study, outdir, **kw):
        write_cycle(outdir, cycle_doc(seen[-1].isoformat()))

    monkeypatch.setattr(demo, "write_demo_study", fake_write)
    monkeypatch.setattr(pipeline, "run_study", fake_run)
    assert run_cli(["demo-course", "-o", str(tmp_path / "dc"), "--histories", "1000"], monkeypatch) == 0
    assert demo.ADMINISTRATION == first                       # unchanged
    assert seen[0] == first and (seen[1] - seen[0]).days == 56
    assert (tmp_path / "dc" / "course" / "course.html").is_file()
    assert "DECISION SUPPORT ONLY" in capsys.readouterr().out


def test_uncertainty_with_tia_fit(tmp_path):
    regs = default_regions()
    regs[0]["mean_dose_rel_uncertainty_with_tia"] = 0.05
    c1 = write_cycle(tmp_path / "c1", cycle_doc("2026-03-02T09:00:00", regions=regs))
    c2 = write_cycle(tmp_path / "c2", cycle_doc("2026-04-27T09:00:00", regions=regs))
    course = co.course_from_paths([c1, c2])
    k = course.regions["kidney_left"]
    assert k.total_dose_sigma_tia_gy == pytest.approx(math.hypot(0.2, 0.2), rel=1e-12)
    assert k.total_dose_sigma_gy == pytest.approx(math.hypot(0.04, 0.04), rel=1e-12)
    assert math.isnan(course.regions["kidney_right"].total_dose_sigma_tia_gy)     # not given


def test_status_near_the_limit(tmp_path):
    lim = limits_file(tmp_path, '[[limit]]\ntissue = "kidney"\nquantity = "absorbed"\nvalue_gy = 4.05\n'
                                'source = "x"\n')
    regs = [region("kidney_left", "kidney", 4.0, 50.0, rel=0.01)]          # 4.0 +- 0.04 Gy: 4.08 at 2 sigma
    c1 = write_cycle(tmp_path / "c1", cycle_doc("2026-03-02T09:00:00", regions=regs))
    (check,) = co.course_from_paths([c1], limits_path=lim).checks
    assert check.status == "within (the limit is inside k u, k = 1.645)"
    assert rb.load_tissues()["red_marrow"].checked.startswith("not checked")


def test_cli_k_option_and_no_tissue_line(cycles, monkeypatch, capsys):
    """--k 0 plans to the limit itself; a bad --k is bad input; the regions without tissue
    parameters are named once, on one line, and not again among the warnings."""
    assert run_cli(["plan", *map(str, cycles), "--cycles-left", "2", "--k", "0"], monkeypatch) == 0
    out, err = capsys.readouterr()
    assert "k = 0" in out
    course = co.course_from_paths(cycles, k=0)
    assert f"{co.plan_course(course, 2).max_activity_mbq:.1f} MBq" in out
    lines = [line for line in (out + err).splitlines() if "spleen" in line and "tissue" in line]
    assert len(lines) == 1 and "no tissue parameters" in lines[0]
    assert "spleen" not in err
    assert run_cli(["plan", *map(str, cycles), "--cycles-left", "2", "--k", "-1"], monkeypatch) == 2
    assert "--k" in capsys.readouterr().err
    assert run_cli(["course", *map(str, cycles), "--k", "nan"], monkeypatch) == 2
