"""The ``rptdose`` command line.

=============================  =============================================================
command                        does
=============================  =============================================================
``rptdose info``               version, backends (and why the others are missing), physics
                               data versions
``rptdose example -o DIR``     a small Lu-177 run: a water cube with a hot sphere; writes
                               ``DIR/example_lu177.h5``, prints the energy balance and the
                               mean dose in the sphere
=============================  =============================================================

Exit codes: 0 success; 2 bad input (InputError, or an unavailable backend asked for: one line on
stderr naming what and why, no traceback; also an output folder that is not writable, in use by
another run, or a dose grid too large for the memory or the disk, found before any work); 1
internal error (an unexpected exception: message and traceback on stderr; a DataError, i.e. broken
physics data, an output that could not be written (OutputWriteError), or a full disk, a read-only
file system, missing permissions or memory met during the work: one line); 130 interrupted by
Ctrl-C (SIGINT), 143 by SIGTERM, at any point: the transport stops within about a second and an
output folder being written is discarded, the earlier one kept (rptdose._interrupt).
"""

from __future__ import annotations

import argparse
import errno
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143

#: The example's geometry and source.
EXAMPLE_SHAPE = (32, 32, 32)           # voxels (z, y, x)
EXAMPLE_SPACING_MM = (2.0, 2.0, 2.0)   # a 64 mm water cube
EXAMPLE_SPHERE_RADIUS_MM = 10.0        # hot sphere at the centre (about 4.2 mL)


def _sphere_mask(shape: tuple[int, int, int], spacing_mm: tuple[float, float, float], radius_mm: float):
    import numpy as np

    nz, ny, nx = shape
    sx, sy, sz = spacing_mm
    z = (np.arange(nz) - (nz - 1) / 2.0) * sz
    y = (np.arange(ny) - (ny - 1) / 2.0) * sy
    x = (np.arange(nx) - (nx - 1) / 2.0) * sx
    return z[:, None, None] ** 2 + y[None, :, None] ** 2 + x[None, None, :] ** 2 <= radius_mm ** 2


def cmd_example(args: argparse.Namespace) -> int:
    import numpy as np

    import rptdose as rd
    from rptdose.errors import InputError

    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--output '{out_dir}' (is a file): expected a folder for the results")
    phantom = rd.Phantom.water(shape=EXAMPLE_SHAPE, spacing_mm=EXAMPLE_SPACING_MM)
    sphere = _sphere_mask(phantom.shape, phantom.spacing_mm, EXAMPLE_SPHERE_RADIUS_MM)
    nuclide = "Lu-177"
    # the whole activity of 1 MBq Lu-177 (A0 * mean life), spread uniformly over the sphere
    from rptdose.physics.nuclides import load_nuclide

    half_life_s = load_nuclide(nuclide).half_life_s
    tia_bq_s = 1e6 * half_life_s / np.log(2.0)
    decays = np.where(sphere, tia_bq_s / sphere.sum(), 0.0)
    source = rd.Source(nuclide, decays)
    result = rd.simulate(phantom, source, histories=args.histories, seed=args.seed, backend=args.backend,
                         threads=args.threads, regions={"sphere": sphere})
    out_dir.mkdir(parents=True, exist_ok=True)
    path = result.save(out_dir / "example_lu177.h5")

    eb = result.energy_balance
    sphere_stats = result.region_means["sphere"]
    print(f"rptdose {rd.__version__} example: {nuclide} in a {EXAMPLE_SPHERE_RADIUS_MM:g} mm radius sphere "
          f"({sphere_stats['mass_kg'] * 1e3:.2f} g) in a {EXAMPLE_SHAPE[2] * EXAMPLE_SPACING_MM[0]:g} mm water cube")
    print(f"  decays in the map      {source.total_decays:.4g} (1 MBq, complete decay)")
    print(f"  histories simulated    {result.histories} (seed {result.seed}, backend {result.backend}, "
          f"{result.elapsed_s:.2f} s)")
    balance = eb["emitted_mev"] - eb["deposited_mev"] - eb["escaped_mev"]
    print(f"  energy per decay (MeV) emitted {eb['emitted_mev']:.6f} = deposited {eb['deposited_mev']:.6f} "
          f"+ escaped {eb['escaped_mev']:.6f} (difference {balance:.1e})")
    print(f"  mean dose in sphere    {sphere_stats['mean_dose_gy']:.4g} Gy "
          f"+- {100 * sphere_stats['rel_uncertainty']:.2f} % (1 sigma)")
    print(f"  result                 {path}")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    import rptdose as rd
    from rptdose._provenance import package_version as version

    print(f"rptdose {rd.__version__}")
    print("backends:")
    for name, info in rd.backends().items():
        state = "available" if info["available"] else "unavailable"
        print(f"  {name:5s} {state:11s} {info['reason']}")
    print("physics data:")
    print(f"  ICRP-107 decay data   icrp107-database {version('icrp107-database')}")
    print(f"  photon cross sections xraylib {version('xraylib')}")
    try:
        from rptdose.physics import tables

        print(f"  transport tables      format {tables.TABLE_VERSION}, {tables.NE} energies "
              f"{tables.E_MIN_MEV:g}..{tables.E_MAX_MEV:g} MeV, cache {tables.cache_dir()}")
    except Exception as exc:  # info must print what it can
        print(f"  transport tables      unavailable ({exc})")
    from rptdose.io.hdf5 import FORMAT_VERSION

    print(f"result file format      {FORMAT_VERSION}")
    return EXIT_OK


def add_study_parser(sub: argparse._SubParsersAction, name: str, help: str, description: str
                     ) -> argparse.ArgumentParser:
    """A subcommand that reads a study file and writes into an output folder (``STUDY -o DIR``)."""
    p = sub.add_parser(name, help=help, description=description)
    p.add_argument("study", help="the study file (TOML)")
    p.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    return p


#: Modules that contribute subcommands: each defines ``add_commands(sub)`` which adds its parsers
#: to the subparsers object and sets ``func`` (args -> exit code) on each.
COMMAND_MODULES: tuple[str, ...] = ("rptdose.cli_tia", "rptdose.cli_fast", "rptdose.cli_run",
                                   "rptdose.cli_many", "rptdose.cli_course", "rptdose.cli_calibrate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rptdose", description="Monte Carlo absorbed dose for "
                                     "radiopharmaceutical therapy.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_info = sub.add_parser("info", help="version, backends and physics data versions")
    p_info.set_defaults(func=cmd_info)

    p_ex = sub.add_parser("example", help="run a small Lu-177 example (water cube, hot sphere)")
    p_ex.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    p_ex.add_argument("--histories", type=int, default=100_000, help="decays to simulate (default 1e5)")
    p_ex.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p_ex.add_argument("--backend", default="auto", help="auto, cuda, cupy or cpu (default auto)")
    p_ex.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    p_ex.set_defaults(func=cmd_example)

    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse exits with 2 on a malformed command line
    if args.version:
        import rptdose

        print(rptdose.__version__)
        return EXIT_OK
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_INPUT
    from rptdose import _interrupt

    # Ctrl-C / SIGTERM recorded even where a library swallows the KeyboardInterrupt: the exit code
    # is 128 + the signal whatever happened after it (rptdose._interrupt)
    with _interrupt.installed():
        code = _run_command(args)
        signum = _interrupt.received()
    if signum is not None:
        if code not in (EXIT_INTERRUPTED, EXIT_TERMINATED):
            print(f"rptdose {args.command}: interrupted", file=sys.stderr)
        return 128 + int(signum)
    return code


#: errno values of foreseeable conditions of the machine (disk full, read-only, permissions):
#: one line, exit code 1, no traceback
_SYSTEM_ERRNOS = frozenset(getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EIO", "ENOMEM")
                           if hasattr(errno, n))


def _run_command(args: argparse.Namespace) -> int:
    from rptdose.errors import BackendUnavailableError, InputError, RptdoseError

    try:
        return int(args.func(args))
    except (InputError, BackendUnavailableError) as exc:
        message = " ".join(str(exc).split())  # one line
        print(f"rptdose {args.command}: error: {message}", file=sys.stderr)
        return EXIT_INPUT
    except RptdoseError as exc:  # e.g. DataError: physics data missing or corrupt; not a bug
        print(f"rptdose {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        print(f"rptdose {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print(f"rptdose {args.command}: error: out of memory (MemoryError): expected a smaller problem, e.g. a "
              "coarser dose.grid, or a machine with more memory", file=sys.stderr)
        return EXIT_INTERNAL
    except OSError as exc:
        if exc.errno not in _SYSTEM_ERRNOS:
            return _internal_error(args, exc)
        where = f": '{exc.filename}'" if exc.filename else ""
        print(f"rptdose {args.command}: error: {exc.strerror or exc}{where} (a condition of the machine, not a bug): "
              "expected free disk space, memory and write permission", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:
        return _internal_error(args, exc)


def _internal_error(args: argparse.Namespace, exc: BaseException) -> int:
    print(f"rptdose {args.command}: internal error ({type(exc).__name__}: {exc}); please report it "
          "with the traceback below", file=sys.stderr)
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
