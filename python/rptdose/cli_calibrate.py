"""``rptdose calibrate``: a camera's sensitivity from a SPECT of a uniform phantom, written as a
calibration file that studies reuse (``[calibration] mode = "file"``, ``file = "..."``).

``rptdose calibrate PHANTOM_SPECT --activity-mbq A --time ISO [--ct CT] [--uncertainty-pct 2]
[--nuclide Lu-177] [--acquisition-time ISO] [--duration-s D] [--voi-margin-mm M] -o calibration.json``

PHANTOM_SPECT: the phantom's reconstructed SPECT in counts (NM file or folder), acquired and
reconstructed as the patient scans; ``--activity-mbq`` and ``--time``: the dose-calibrator
reading of the phantom's activity and its local date-time; ``--ct``: the CT of the phantom's
SPECT/CT, to count inside its outline (+ ``--voi-margin-mm``, default 24 mm) instead of the whole
image; ``--uncertainty-pct``: the dose calibrator's relative standard uncertainty (default 2 %);
``--nuclide``: default from the DICOM (RadionuclideCodeSequence); ``--acquisition-time`` /
``--duration-s``: when the DICOM lacks them. The method, the uncertainty and the file format:
``rptdose.quant.phantom_calibration``.

Prints the sensitivity +- its uncertainty and the camera; the file is written atomically (a
failure leaves no file, or the earlier one unchanged). Exit codes as for every command
(``rptdose.cli``): 0 ok, 2 bad input (nothing written), 1 internal error.
"""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="camera sensitivity (cps/MBq) from a uniform phantom SPECT, as a calibration "
                                         "file",
                       description="Derive the sensitivity (counts per second per MBq in the reconstructed image) "
                                   "and its uncertainty from a SPECT of a uniform phantom of known activity, and "
                                   "write it with the camera's identity as a calibration file for "
                                   "[calibration] mode = \"file\".")
    p.add_argument("phantom_spect", help="the phantom's reconstructed SPECT in counts (NM file or folder)")
    p.add_argument("--activity-mbq", type=float, required=True,
                   help="the phantom's activity (MBq) read in the dose calibrator at --time")
    p.add_argument("--time", required=True, help="local date and time of that reading, ISO (2026-03-01T10:00:00)")
    p.add_argument("--ct", default=None, help="the CT of the phantom's SPECT/CT: count inside the phantom's outline "
                                              "+ --voi-margin-mm instead of the whole image")
    p.add_argument("--uncertainty-pct", type=float, default=None,
                   help="relative standard uncertainty of the dose calibrator in %% (default 2)")
    p.add_argument("--nuclide", default=None, help="the nuclide, e.g. Lu-177 (default: from the DICOM)")
    p.add_argument("--acquisition-time", default=None,
                   help="the acquisition start (local ISO date-time) when the DICOM lacks it")
    p.add_argument("--duration-s", type=float, default=None,
                   help="the acquisition duration (s) when the DICOM lacks it, or to override it")
    p.add_argument("--voi-margin-mm", type=float, default=None,
                   help="with --ct: margin around the phantom's outline (mm, default 24: 2 PSF widths)")
    p.add_argument("-o", "--output", required=True, help="the calibration file to write (JSON)")
    p.set_defaults(func=cmd_calibrate)


#: How rptdose.quant.phantom_calibration names the inputs in its messages: the options.
OPTION_NAMES = {"spect": "PHANTOM_SPECT", "activity": "--activity-mbq", "time": "--time", "ct": "--ct",
                "uncertainty": "--uncertainty-pct", "nuclide": "--nuclide", "acquisition_time": "--acquisition-time",
                "duration": "--duration-s", "margin": "--voi-margin-mm"}


def cmd_calibrate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rptdose.errors import InputError
    from rptdose.quant.phantom_calibration import calibrate_from_phantom, write_calibration

    out = Path(args.output)
    if out.is_dir():
        raise InputError(f"-o/--output '{out}' (is a folder): expected the calibration file to write, e.g. "
                         "calibration.json")
    if not out.parent.is_dir():
        raise InputError(f"-o/--output '{out}' (folder '{out.parent}' does not exist): expected a file in an existing "
                         "folder")
    for name, value in (("--ct", args.ct), ("PHANTOM_SPECT", args.phantom_spect)):
        if value is not None and not Path(value).exists():
            raise InputError(f"{name} '{value}' (does not exist): expected a DICOM file or folder")
    cal = calibrate_from_phantom(args.phantom_spect, args.activity_mbq, args.time, nuclide=args.nuclide,
                                 phantom_ct=args.ct, activity_uncertainty_pct=args.uncertainty_pct,
                                 acquisition_time=args.acquisition_time, duration_s=args.duration_s,
                                 voi_margin_mm=args.voi_margin_mm, names=OPTION_NAMES)
    path = write_calibration(out, cal)
    print("rptdose calibrate: " + cal.summary().replace("\n", "\n                   "))
    print(f"written            {path}")
    return 0
