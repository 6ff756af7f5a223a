"""Subcommands of the fast methods and the comparison toolkit.

=============================================  ==================================================
command                                        does
=============================================  ==================================================
``rptdose kernel NUCLIDE --voxel 4.8``         computes (or finds in the cache) the voxel S-value
                                               kernel by Monte Carlo; ``-o FILE`` writes a copy;
                                               ``--voxel`` takes 1 or 3 values (x y z, mm)
``rptdose compare A B --masks M -o DIR``       compares dose B with the reference A (rptdose .h5,
                                               NIfTI, DICOM RT Dose): difference and gamma maps,
                                               region means, DVH metrics, Bland-Altman plot, HTML
                                               and CSV summary in DIR
=============================================  ==================================================

``--masks`` takes a label map (``--labels 1=kidney,2=tumour`` names its labels) or one or more
``NAME=FILE`` masks; without it, the region masks of a dose.h5 (``rptdose run``) input are used
(``--no-file-masks``: none). The threshold (``--threshold``, default 10 %) and the global gamma
are relative to a robust reference dose: the 99.5th percentile of A inside the body outline
(``body_mask`` of a dose.h5, or ``--body-mask FILE``), else inside the region masks, else over
the voxels with dose; ``--normalisation GY`` sets it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rptdose.fast.kernels import (
    DEFAULT_HALF_WIDTH,
    DEFAULT_HISTORIES,
    DEFAULT_MARGIN_MM,
    DEFAULT_SEED,
)


def _float_or_int(text: str) -> float:
    return float(text)


def cmd_kernel(args: argparse.Namespace) -> int:
    from rptdose.errors import InputError
    from rptdose.fast.kernels import voxel_s_kernel

    if len(args.voxel) not in (1, 3):
        raise InputError(f"--voxel {' '.join(str(v) for v in args.voxel)} ({len(args.voxel)} values): expected "
                         "1 or 3 voxel sizes (x y z) in mm")
    hw = args.half_width if len(args.half_width) != 1 else args.half_width[0]
    kern = voxel_s_kernel(args.nuclide, args.voxel, half_width=hw, histories=int(args.histories), seed=args.seed,
                          medium=args.medium, margin_mm=args.margin, threads=args.threads, backend=args.backend,
                          use_cache=not args.no_cache, progress=None)
    path = kern.path
    if args.output:
        path = kern.save(Path(args.output))
    st = kern.provenance.get("statistical_uncertainty", {})
    kx, ky, kz = kern.half_width
    print(f"voxel S-value kernel {kern.nuclide} in {kern.medium}, voxel "
          f"{'x'.join(f'{v:g}' for v in kern.voxel_mm)} mm, {2 * kz + 1}x{2 * ky + 1}x{2 * kx + 1} voxels (z y x)")
    print(f"  S(centre)            {kern.s_gy_per_decay[kern.centre]:.6g} Gy per decay "
          f"+- {100 * st.get('centre_voxel_rel', float('nan')):.2f} % (1 sigma)")
    frac = kern.provenance.get("fraction_of_emitted_energy_in_kernel")
    if frac is not None:
        print(f"  energy in the kernel {100 * frac:.2f} % of the emitted energy")
    print(f"  histories            {kern.provenance.get('histories')} (seed {kern.provenance.get('seed')})")
    print(f"  file                 {path if path is not None else '(not written: cache disabled, no -o)'}")
    return 0


def _parse_labels(text: str | None) -> dict[int, str] | None:
    from rptdose.errors import InputError

    if not text:
        return None
    out = {}
    for part in text.split(","):
        if "=" not in part:
            raise InputError(f"--labels {text!r} (item {part!r} has no '='): expected LABEL=NAME,... e.g. "
                             "1=kidney,2=tumour")
        k, v = part.split("=", 1)
        try:
            out[int(k)] = v.strip()
        except ValueError:
            raise InputError(f"--labels {text!r} (label {k!r} not an integer): expected LABEL=NAME,...") from None
    return out


def cmd_compare(args: argparse.Namespace) -> int:
    import warnings

    from rptdose.analysis.compare import CompareWarning, compare
    from rptdose.errors import InputError

    masks = None
    if args.masks:
        if len(args.masks) == 1 and "=" not in args.masks[0]:
            masks = args.masks[0]
        else:
            masks = {}
            for item in args.masks:
                if "=" not in item:
                    raise InputError(f"--masks {item!r} (no NAME=): expected one label map, or NAME=FILE masks")
                name, path = item.split("=", 1)
                masks[name] = path
    crits = []
    for c in args.gamma:
        try:
            dp, dd = (float(v) for v in c.replace("%", "").replace("mm", "").split("/"))
        except ValueError:
            raise InputError(f"--gamma {c!r}: expected DOSE%/DTAmm such as 3/3 or 2%/2mm") from None
        crits.append((dp, dd))
    names = tuple(args.names) if args.names else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompareWarning)   # printed below as "warning:" lines
        comp = compare(args.a, args.b, masks, names=names, label_names=_parse_labels(args.labels), gamma=crits,
                       gamma_modes=tuple(args.modes), threshold_percent=args.threshold, max_gamma=args.max_gamma,
                       body_mask=args.body_mask, normalisation_gy=args.normalisation,
                       file_masks=not args.no_file_masks)
    paths = comp.write(args.output)
    a, b = comp.names
    sm = comp.summary
    print(f"rptdose compare: {b} vs {a} (reference), grid {sm['grid_shape_zyx']} (z y x), "
          f"{sm['spacing_mm']} mm{' (b resampled)' if sm['b_resampled'] else ''}")
    print(f"  normalisation        {sm['normalisation_gy']:.4g} Gy ({sm['normalisation']}); threshold "
          f"{sm['threshold_percent']:g} % = {sm['threshold_gy']:.4g} Gy, {sm['threshold_voxels']} voxels")
    print(f"  masks                {sm['masks']}; body outline {sm['body_mask']}")
    for w in comp.warnings:
        print(f"  warning: {w}")
    for row in comp.gamma_rows():
        print(f"  gamma {row['criterion']:<18s} pass {row['pass_rate_percent']:6.2f} % of "
              f"{row['evaluated_points']} points (threshold {row['threshold_percent']:g} %)")
    for r in comp.regions:
        if r.get("voxels", 0) == 0:
            print(f"  {r['region']:<16s} (no voxel on the dose grid)")
            continue
        print(f"  {r['region']:<16s} {a} {r['mean_a_gy']:.4g} Gy, {b} {r['mean_b_gy']:.4g} Gy, "
              f"diff {r['diff_percent']:+.2f} % +- {r['diff_percent_unc']:.2f} %")
    for n in comp.notes:
        print(f"  note: {n}")
    print(f"  summary              {paths['summary_html']}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kernel", help="compute (or fetch from the cache) a voxel S-value kernel by Monte Carlo")
    p.add_argument("nuclide", help="ICRP-107 nuclide, e.g. Lu-177")
    p.add_argument("--voxel", type=float, nargs="+", required=True, metavar="MM",
                   help="voxel size in mm: one value (cubic) or three (x y z)")
    p.add_argument("--half-width", type=int, nargs="+", default=[DEFAULT_HALF_WIDTH], metavar="K",
                   help=f"voxels each side of the centre, 1 or 3 values (kx ky kz) (default {DEFAULT_HALF_WIDTH})")
    p.add_argument("--histories", type=_float_or_int, default=DEFAULT_HISTORIES,
                   help=f"decays to simulate (default {DEFAULT_HISTORIES:.0e})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    p.add_argument("--medium", default="water", help="water (default) or soft_tissue")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN_MM,
                   help=f"mm of medium around the kernel (default {DEFAULT_MARGIN_MM:g})")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument("--backend", default="auto", help="auto, cuda, cupy or cpu (default auto)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the kernel cache")
    p.add_argument("-o", "--output", default=None, help="write the kernel to this .h5 file too")
    p.set_defaults(func=cmd_kernel)

    c = sub.add_parser("compare", help="compare a dose with a reference dose (gamma, DVH, region means)")
    c.add_argument("a", help="reference dose: rptdose result .h5, NIfTI / MetaImage, DICOM RT Dose")
    c.add_argument("b", help="evaluated dose, same kinds (resampled onto a's grid if needed)")
    c.add_argument("--masks", nargs="+", default=None, metavar="MASK",
                   help="a label map image, or NAME=FILE masks (default: the masks/ of a dose.h5 input)")
    c.add_argument("--no-file-masks", action="store_true",
                   help="without --masks, do not use the region masks of a dose.h5 input")
    c.add_argument("--body-mask", default=None, metavar="FILE",
                   help="body outline mask image (default: body_mask of a dose.h5 input)")
    c.add_argument("--normalisation", type=float, default=None, metavar="GY",
                   help="reference dose of the threshold and the global gamma (default: 99.5th percentile of "
                        "A inside the body outline, else the region masks, else the voxels with dose)")
    c.add_argument("--labels", default=None, help="names of the label map's labels: 1=kidney,2=tumour")
    c.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    c.add_argument("--gamma", nargs="+", default=["3/3", "2/2"], metavar="D%/DTA",
                   help="gamma criteria, dose %% / mm (default 3/3 2/2)")
    c.add_argument("--modes", nargs="+", default=["global", "local"], choices=["global", "local"],
                   help="gamma modes (default global local)")
    c.add_argument("--threshold", type=float, default=10.0,
                   help="lower dose threshold (low-dose cut-off), %% of the normalisation (default 10)")
    c.add_argument("--max-gamma", type=float, default=2.0, help="gamma search limit (default 2)")
    c.add_argument("--names", nargs=2, default=None, metavar=("A", "B"), help="labels of a and b")
    c.set_defaults(func=cmd_compare)
