"""``rptdose course`` and ``rptdose plan``: cumulative dose and BED over therapy cycles, and the
activity of the remaining cycles within the organ limits (decision support only).

``rptdose course CYCLE1 CYCLE2 ... [-o DIR] [--limits L.toml] [--tissues T.toml] [--k K]``
``rptdose plan CYCLE1 ... --cycles-left N [--target-tumour-gy X] [--kinetics-from K] [--k K] [-o DIR] ...``
``rptdose demo-course -o DIR``: the synthetic demo patient as two cycles (studies in
``DIR/patient_cycle<k>``, ``rptdose run`` outputs in ``DIR/cycle<k>``), then ``course`` and
``plan`` (files in ``DIR/course``).

Each CYCLE is an output folder of ``rptdose run`` (its ``regions.json``) or that file. With
``-o`` the files of ``rptdose.analysis.course_report`` are written there (``course.html`` ...).
``--k``: the margin kept below every limit, in standard uncertainties of the organ's cumulative
dose (default 1.645, one-sided 95 %; ``rptdose.analysis.course``): the plan's activity keeps
``projected + k u <= limit`` for every organ at risk, and every activity it prints is labelled by
that one check.
Exit codes as for every command (``rptdose.cli``): 0 ok, 2 bad input, 1 internal error.
"""

from __future__ import annotations

import argparse
import math
import sys


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("cycles", nargs="+", help="cycle folders (outputs of `rptdose run`, with regions.json) or "
                                             "regions.json files, in the order they were given")
    p.add_argument("-o", "--output", default=None, help="folder for course.html, course.json and the tables")
    p.add_argument("--limits", default=None, help="organ limits table (TOML; default: the shipped "
                                                  "data/organ_limits.toml)")
    p.add_argument("--tissues", default=None, help="tissue parameter table (TOML; default: the shipped "
                                                   "data/radiobiology_tissues.toml)")
    p.add_argument("--k", type=float, default=None,
                   help="margin below every limit in standard uncertainties u of the organ's cumulative dose or "
                        "BED: the plan keeps projected + k u <= limit (default 1.645: one-sided 95 %%; 0: plan to "
                        "the limit itself)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("course", help="cumulative absorbed dose and BED per region over therapy cycles",
                       description="Sum the absorbed dose and the BED (linear-quadratic, incomplete repair) of each "
                                   "region over the cycles and compare the totals with the organ limits.")
    _common(p)
    p.set_defaults(func=cmd_course)

    p = sub.add_parser("plan", help="activity of the remaining cycles within the organ limits (decision support)",
                       description="Propose the activity per remaining cycle that keeps every organ at risk within "
                                   "its limits, with the kinetics of a measured cycle. Decision support only.")
    _common(p)
    p.add_argument("--cycles-left", type=int, required=True, help="number of remaining cycles (>= 1)")
    p.add_argument("--target-tumour-gy", type=float, default=None,
                   help="cumulative tumour dose to reach (Gy): also report the activity for it")
    p.add_argument("--target-quantity", choices=("absorbed", "bed"), default="absorbed",
                   help="what --target-tumour-gy is: absorbed dose (default) or BED")
    p.add_argument("--kinetics-from", type=int, default=None,
                   help="cycle (1-based, in the order given) whose dose per MBq and t_eff are assumed for the "
                        "remaining cycles (default: the last)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("demo-course", help="two cycles of the synthetic demo patient, then course and plan",
                       description="Write the synthetic Lu-177-DOTATATE demo patient (rptdose demo) as two cycles "
                                   f"{DEMO_COURSE_INTERVAL_DAYS} days apart, run each (rptdose run), then "
                                   "rptdose course and rptdose plan on them.")
    p.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    p.add_argument("--histories", type=int, default=None, help="decays to simulate per cycle (default: the demo's)")
    p.add_argument("--method", default=None, help="dose method (default mc)")
    p.add_argument("--cycles-left", type=int, default=2, help="remaining cycles to plan (default 2)")
    p.set_defaults(func=cmd_demo_course)


#: the demo course: two cycles of the demo patient this many days apart (8 weeks, as for Lu-177-DOTATATE)
DEMO_COURSE_INTERVAL_DAYS = 56


def _fmt(v: float | None, spec: str = ".3g") -> str:
    if v is None or not math.isfinite(v):
        width = spec.split(".")[0]
        return "-".rjust(int(width) if width.isdigit() else 0)
    return format(v, spec)


def _k(args: argparse.Namespace) -> float:
    from rptdose.analysis.course import DEFAULT_K

    k = getattr(args, "k", None)
    return DEFAULT_K if k is None else k


def _print_course(course) -> None:
    print(f"rptdose course: {course.nuclide}, {len(course.cycles)} cycle(s)")
    for c in course.cycles:
        print(f"  cycle {c.label:<12s} {c.time.isoformat():<25s} {c.activity_mbq:9.1f} MBq  ({c.method})")
    print("  cumulative totals, 1 sd: stat = statistical; u = the uncertainty the limits use (basis: the most "
          "complete one the cycles give)")
    print("  region              kind     dose (Gy)  stat     u        BED (Gy)  u        EQD2 (Gy)  basis of u")
    no_mc = all(c.method != "mc" for c in course.cycles)
    for rc in course.regions.values():
        mark = "" if rc.complete else "  (incomplete)"
        stat = rc.total_dose_sigma_gy
        if no_mc and stat == 0.0:
            stat = float("nan")          # a method without Monte Carlo noise (ldm): "-", not 0
        print(f"  {rc.name:<18s}  {rc.kind:<7s}  {_fmt(rc.total_dose_gy, '9.3f')}  {_fmt(stat, '7.3f')}"
              f"  {_fmt(rc.total_dose_u_gy, '7.3f')}  {_fmt(rc.total_bed_gy, '8.3f')}  "
              f"{_fmt(rc.total_bed_u_gy, '7.3f')}  {_fmt(rc.total_eqd2_gy, '9.3f')}  {rc.basis}{mark}")
    if course.no_tissue:
        print(f"  {course.no_tissue_line}")
    if course.checks:
        print(f"  limits (k = {course.k:g}):")
        for ch in course.checks:
            print(f"    {ch.region:<18s} {ch.limit.label:<34s} cumulative {_fmt(ch.total_gy, '.3f')} Gy "
                  f"({_fmt(100 * ch.fraction, '.1f')} % of limit): {ch.status}")


def _warnings(lines: list[str]) -> None:
    sys.stdout.flush()                       # the warnings after what was printed before them
    for w in lines:
        print(f"  warning: {w}", file=sys.stderr)
    sys.stderr.flush()


def cmd_course(args: argparse.Namespace) -> int:
    from rptdose.analysis.course import course_from_paths

    course = course_from_paths(args.cycles, args.tissues, args.limits, k=_k(args))
    _print_course(course)
    _warnings(course.warnings)
    if args.output:
        from rptdose.analysis.course_report import write_course_outputs

        written = write_course_outputs(args.output, course, argv=sys.argv)
        print(f"  wrote {len(written)} files to {args.output} (course.html)")
    return 0


def _print_plan(plan) -> None:
    course = plan.course
    k = course.cycles[plan.kinetics_cycle]
    print(f"  plan: {plan.cycles_left} remaining cycle(s), kinetics of cycle {k.label}")
    print(f"    margin: each organ at risk keeps projected + k u <= limit, k = {plan.k:g} (u: standard uncertainty of "
          "its projected cumulative total; the planned cycles share the kinetics cycle's dose-per-MBq error)")
    print("    organ               limit                               delivered  u (Gy)   basis of u             "
          "activity/cycle (MBq)  [to the limit]  margin k u (Gy)  that activity against every limit")
    for r in plan.rows:
        mark = "  <- sets the maximum" if r is plan.limiting else ""
        print(f"    {r.region:<18s}  {r.limit.label:<34s}  {_fmt(r.delivered_gy, '9.3f')}  "
              f"{_fmt(r.delivered_u_gy, '7.3f')}  {r.u_basis:<21s}  {r.activity_mbq:20.1f}  "
              f"[{r.activity_no_margin_mbq:12.1f}]  {r.at.margin_gy:15.3f}  {r.check.short_label}{mark}")
    print(f"    largest activity per cycle within every limit with the margin k u: {plan.max_activity_mbq:.1f} MBq "
          f"(set by {plan.limiting.region}: {plan.limiting.limit.label}; {plan.limiting.activity_no_margin_mbq:.1f} "
          "MBq would reach that limit itself)")
    for name, delivered, act in plan.target_rows:
        print(f"    tumour {name}: delivered {delivered:.3f} Gy; {act:.1f} MBq per cycle reaches "
              f"{plan.target_gy:g} Gy ({plan.target_quantity})")
    if plan.target_check is not None:
        print(f"    tumour target activity {plan.target_activity_mbq:.1f} MBq per cycle: {plan.target_check.label}")
    print(f"    proposed activity per cycle: {plan.proposed_activity_mbq:.1f} MBq: {plan.proposed_check.label}")
    print("    at the proposed activity, every limit:")
    print("      organ               limit                               projected (Gy)  u (Gy)  margin k u  "
          "projected + k u  % of limit  check")
    for s in plan.proposed_check.limits:
        print(f"      {s.region:<18s}  {s.limit.label:<34s}  {s.projected_gy:14.3f}  {_fmt(s.u_gy, '6.3f')}  "
              f"{s.margin_gy:10.3f}  {s.upper_gy:15.3f}  {100 * s.upper_fraction_of_limit:10.1f}  {s.status}")
    others = [p for p in plan.projections if p.limit_gy is None]
    if others:
        print("    projected totals without a limit:  region  quantity  projected (Gy)  u (Gy)")
        for p in others:
            print(f"      {p.region:<18s}  {p.quantity:<9s}  {p.projected_gy:14.3f}  {_fmt(p.u_gy, '6.3f')}")
    print(f"    sensitivity (kinetics +-20 %): the largest activity within the limits with the margin, and the "
          f"proposed {plan.proposed_activity_mbq:.1f} MBq checked with those kinetics")
    for s in plan.sensitivity:
        print(f"      {s['scenario']:<34s} max {s['max_activity_mbq']:9.1f} MBq ({s['limited_by']}); proposed: "
              f"{s['proposed_short_label']}")


def cmd_plan(args: argparse.Namespace) -> int:
    from rptdose.analysis.course import DECISION_SUPPORT, course_from_paths, plan_course

    course = course_from_paths(args.cycles, args.tissues, args.limits, k=_k(args))
    plan = plan_course(course, args.cycles_left, kinetics_from=args.kinetics_from, target_gy=args.target_tumour_gy,
                       target_quantity=args.target_quantity)
    print(f"*** {DECISION_SUPPORT} ***")
    _print_course(course)
    _print_plan(plan)
    _warnings(plan.warnings)
    if args.output:
        from rptdose.analysis.course_report import write_course_outputs

        written = write_course_outputs(args.output, course, plan, argv=sys.argv)
        print(f"  wrote {len(written)} files to {args.output} (course.html)")
    print(f"*** {DECISION_SUPPORT} ***")
    return 0


def cmd_demo_course(args: argparse.Namespace) -> int:
    import datetime as dt
    from pathlib import Path

    from rptdose import demo
    from rptdose.errors import InputError
    from rptdose.pipeline import run_study

    root = Path(args.output)
    if root.exists() and not root.is_dir():
        raise InputError(f"--output '{root}' (is a file): expected a folder for the demo course")
    histories = args.histories if args.histories is not None else demo.DEMO_HISTORIES
    cycles = []
    for k in (1, 2):
        administration = demo.ADMINISTRATION + dt.timedelta(days=DEMO_COURSE_INTERVAL_DAYS * (k - 1))
        study = demo.write_demo_study(root / f"patient_cycle{k}", histories=histories, administration=administration)
        print(f"rptdose demo-course: cycle {k}: demo patient, administration {administration.isoformat()}")
        run_study(study, root / f"cycle{k}", method=args.method, histories=histories, seed=k, progress=None)
        cycles.append(str(root / f"cycle{k}"))
    course_args = argparse.Namespace(cycles=cycles, output=str(root / "course"), limits=None, tissues=None,
                                     cycles_left=args.cycles_left, target_tumour_gy=None, target_quantity="absorbed",
                                     kinetics_from=None, k=None)
    return cmd_plan(course_args)
