"""``rptdose.simulate``: validate, build the physics, run a backend, convert energy to dose.

Options (each declared once here, with its default, unit and check):

======================  ==========  =========================================================
argument                default     meaning / check
======================  ==========  =========================================================
``phantom``             --          a :class:`rptdose.Phantom`
``source``              --          a :class:`rptdose.Source` on the phantom's grid
``histories``           10**6       decays simulated; integer, >= ``batches`` and within the
                                    tally capacity (``_core.max_histories``)
``seed``                1           integer in 0..2**64-1; same seed + backend => same bits
``backend``             "auto"      "auto" (cuda, else cupy, else cpu), "cuda", "cupy", "cpu";
                                    with a checkpoint cpu or cuda; with a scheduler one for
                                    all workers ("auto": cuda if every worker has a GPU)
``threads``             None        CPU threads (None: all the OpenMP default gives), >= 1;
                                    more than the CPUs available to this process are capped
                                    to that number with a warning (results do not depend on
                                    the thread count; oversubscription only slows the run);
                                    with a scheduler: each unit's threads on its worker,
                                    not capped here (None: its host's CPUs over its slots)
``batches``             10          batches for the uncertainty (batch method), >= 10
``electron_transport``  True        False: electrons deposit their energy where created
``regions``             None        {name: bool mask [z, y, x]} (masks may overlap) or an
                                    integer label map [z, y, x] (0 = background, each label
                                    > 0 a region named str(label)): per-region mean dose
``progress``            None        None: a bar on a terminal for long runs; True / False;
                                    or a callable(histories_done)
``scheduler``           None        None: this process; ``"local:N"``: N worker processes
                                    here; ``"tcp://host:port"``: a Dask scheduler; or a
                                    ``dask.distributed.Client`` (rptdose.transport.distributed;
                                    needs ``rptdose[distributed]``). Same bits as in-process.
``checkpoint``          None        a file path: the run's sums written after every batch
                                    (HDF5, atomically); the same call resumes from it
                                    (rptdose.transport.checkpoint). Same bits as uninterrupted.
``precision``           "auto"      floating-point precision of the transport: "double",
                                    "single", or "auto" (double on the CPU; on a GPU from
                                    the device: double where its FP64:FP32 throughput is
                                    >= 1/2, else single, docs/gpu_backends.md). The tallies
                                    are 64-bit integers in both (exact energy balance);
                                    same seed + backend + precision => same bits
======================  ==========  =========================================================

With ``scheduler`` or ``checkpoint`` the batches run in the batch loop's export mode and are
folded here in batch order (rptdose.transport.batched), on the cpu or cuda backend.

Dose from energy (all in float64)::

    dose_gy = edep_mev * (total_decays / histories) * 1.602176634e-13 J/MeV / voxel_mass_kg

so the dose is that of *all* the source's decays, estimated from the simulated ones.
A region's mean dose is its energy over its mass (the MIRD mean absorbed dose), and its
uncertainty comes from the per-batch region energies.

Alpha particles and recoil nuclei (``source.alpha_mev_per_decay``, all chain members) are not
sampled: they deposit their energy in the decay voxel (ranges 40-100 um), so their dose is
computed exactly as its expected value, ``alpha_dose_gy = decays * E_alpha * J/MeV /
voxel_mass_kg`` (:func:`rptdose.source.alpha_dose_gy`), and added to the transported part::

    dose_gy = transported dose + alpha_dose_gy        (result.alpha_dose_gy holds the second)

Consistently, ``E_alpha`` (quantised to the tallies' 1e-8 MeV) is added to the emitted and the
deposited energy of every simulated decay (emitted = deposited + escaped stays exact in the
integer units), a region's alpha energy is added to each batch's region sum (so its uncertainty
is that of the transported part, over the larger mean), and a voxel's relative uncertainty is
the transported part's standard error over the total dose (0 where only alphas deposited).
"""

from __future__ import annotations

import hashlib
import platform
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from rptdose._progress import check_progress, progress_callback
from rptdose._validate import as_grid_array, as_int, describe
from rptdose.analysis.regions import normalize_regions
from rptdose.errors import InputError
from rptdose.phantom import Phantom
from rptdose.source import Source, alpha_dose_gy, max_mev_per_decay, mean_mev_per_decay
from rptdose.transport.backends import check_backend_name, max_histories, select_backend
from rptdose.resources import available_cpus  # noqa: F401  (also part of this module's face)
from rptdose.transport.backends import BATCH_BACKENDS
from rptdose.transport.request import RunRequest
from rptdose.transport.result import SimulationResult

#: J per MeV (exact, SI 2019).
J_PER_MEV = 1.602176634e-13
#: Fewest batches accepted (batch-method uncertainty needs enough degrees of freedom).
MIN_BATCHES = 10
MAX_BATCHES = 100_000
SEED_MAX = 2**64 - 1
#: Accepted values of ``precision``.
PRECISIONS = ("auto", "single", "double")


def check_precision(precision: object) -> str:
    """Validate the ``precision`` argument's value ("auto", "single" or "double")."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} (unknown): expected 'auto', 'single' or 'double'")
    return precision


def resolve_precision(precision: str, backend_name: str) -> tuple[str, str]:
    """``(precision used, why)`` for a requested ``precision`` on backend ``backend_name``:
    as requested unless "auto"; "auto" is double on the CPU and, on a GPU, the device's choice
    (:func:`rptdose.transport.gpu_runners.auto_precision`)."""
    if precision != "auto":
        return precision, "requested"
    if backend_name == "cpu":
        return "double", "auto: double on the CPU"
    from rptdose.transport.gpu_runners import auto_precision

    return auto_precision(backend_name)


class _Regions:
    """Regions prepared for the core: disjoint "atoms" (one label per voxel) and, per region,
    the atoms it is made of, so that overlapping masks get exact per-batch sums."""

    def __init__(self, names: list[str], labels: np.ndarray, membership: np.ndarray,
                 voxels: np.ndarray, mass_kg: np.ndarray):
        self.names = names            # R region names
        self.labels = labels          # int32 [z, y, x]: atom 0..A-1, -1 outside every region
        self.membership = membership  # float64 [A, R]: 1 where atom a belongs to region r, else 0
        self.voxels = voxels          # int64 [R]
        self.mass_kg = mass_kg        # float64 [R]


def _prepare_regions(regions: Any, phantom: Phantom) -> _Regions | None:
    if regions is None:
        return None
    shape = phantom.shape
    if isinstance(regions, Mapping):
        checked = normalize_regions(regions, shape)  # the one check of {name: mask}
        names = list(checked)
        masks = [m.reshape(-1) for m in checked.values()]
        count = np.zeros(masks[0].size, dtype=np.int32)
        for m in masks:
            count += m
        flat = np.full(count.size, -1, dtype=np.int64)
        if count.max() <= 1:  # disjoint: one atom per region
            for k, m in enumerate(masks):
                flat[m] = k
            membership = np.eye(len(names))
        else:  # overlapping: atoms = the distinct combinations of regions, as bit strings
            inside = count > 0
            nbytes = (len(masks) + 7) // 8
            packed = np.zeros((int(inside.sum()), nbytes), dtype=np.uint8)  # [voxels inside, bytes]
            for k, m in enumerate(masks):
                packed[:, k // 8] |= m[inside].astype(np.uint8) << np.uint8(7 - k % 8)
            keys = packed.view(np.dtype((np.void, nbytes))).ravel()
            uniq, inverse = np.unique(keys, return_inverse=True)
            flat[inside] = inverse.ravel()
            bits = np.unpackbits(uniq.view(np.uint8).reshape(len(uniq), nbytes), axis=1)[:, :len(names)]
            membership = bits.astype(np.float64)
        labels = flat.astype(np.int32).reshape(shape)
    else:
        arr = as_grid_array("regions", regions, shape=shape,
                            what="a {name: mask} dict or an integer label map [z, y, x]")
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"regions {describe(arr)} (dtype {arr.dtype}): expected an integer label map "
                             "(0 = background) or a {name: bool mask} dict")
        if int(arr.min()) < 0:
            raise InputError(f"regions (minimum label {int(arr.min())}): expected labels >= 0 (0 = background)")
        values = np.unique(arr[arr > 0])
        if values.size == 0:
            raise InputError("regions (only background, label 0): expected at least one label > 0")
        flat = np.full(arr.size, -1, dtype=np.int64)
        inside = arr.reshape(-1) > 0
        flat[inside] = np.searchsorted(values, arr.reshape(-1)[inside])
        labels = flat.astype(np.int32).reshape(shape)
        names = [str(int(v)) for v in values]
        membership = np.eye(len(names))
    atom_voxels = _atom_sums(labels, None, membership.shape[0])
    atom_mass = _atom_sums(labels, phantom.voxel_mass_kg, membership.shape[0])
    voxels = np.rint(_regions_from_atoms(atom_voxels, membership)).astype(np.int64)
    mass = _regions_from_atoms(atom_mass, membership)
    return _Regions(names, np.ascontiguousarray(labels), membership, voxels, mass)


def _atom_sums(labels: np.ndarray, values: np.ndarray | None, atoms: int) -> np.ndarray:
    """Sum of ``values`` (or voxel counts) per atom label; one sequential pass, deterministic."""
    flat = labels.reshape(-1)
    sel = flat >= 0
    weights = None if values is None else values.reshape(-1)[sel]
    return np.bincount(flat[sel], weights=weights, minlength=atoms).astype(np.float64)


def _regions_from_atoms(atom_values: np.ndarray, membership: np.ndarray) -> np.ndarray:
    """Per-region sums of per-atom values (a fixed summation order, so bit-reproducible)."""
    return np.array([np.sum(atom_values[membership[:, r] > 0]) for r in range(membership.shape[1])])


def _region_means(reg: _Regions, edep_mev: np.ndarray, batch_edep_mev: np.ndarray, histories: int,
                  batches: int, total_decays: float, alpha_mev_per_history: np.ndarray | None = None
                  ) -> dict[str, dict[str, float]]:
    """Mean dose (energy / mass) and batch-method relative uncertainty of each region.

    The mean comes from the voxel energies (exact tallies, summed in a fixed order: the same
    bits whatever the thread count); the uncertainty from the core's per-batch region sums.
    ``alpha_mev_per_history`` [A]: the exact alpha energy per simulated history of each atom
    (module docstring), added to the energies and to every batch's sums.
    """
    energy = _regions_from_atoms(_atom_sums(reg.labels, edep_mev, reg.membership.shape[0]), reg.membership)
    per_region = np.asarray(batch_edep_mev, dtype=np.float64) @ reg.membership  # [B, R]
    from rptdose import _core

    n_b = _core.batch_sizes(histories, batches)  # the core's split of histories
    if alpha_mev_per_history is not None:
        alpha_region = _regions_from_atoms(alpha_mev_per_history, reg.membership)  # [R] per history
        energy = energy + histories * alpha_region
        per_region = per_region + n_b[:, None] * alpha_region[None, :]
    x = per_region / n_b[:, None]              # mean energy per history in each batch
    total = per_region.sum(axis=0)
    mean = total / histories                   # per-history mean over all batches
    var = np.maximum((np.sum(x * x, axis=0) - batches * mean * mean) / (batches - 1), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(total > 0, np.sqrt(var / batches) / np.abs(mean), 1.0)
    dose = energy * (total_decays / histories) * J_PER_MEV / reg.mass_kg
    return {name: {"mean_dose_gy": float(dose[r]), "rel_uncertainty": float(rel[r]),
                   "mass_kg": float(reg.mass_kg[r]), "voxels": int(reg.voxels[r])}
            for r, name in enumerate(reg.names)}


def array_sha256(arr: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (C order): the input hashes of provenance."""
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))
    return h.hexdigest()


def input_hashes(phantom: Phantom, source: Source) -> dict[str, str]:
    """The phantom's and the source's arrays as SHA-256 digests (provenance ``inputs_sha256``)."""
    return {"density_g_cm3": array_sha256(phantom.density), "material_index": array_sha256(phantom.material_index),
            "decays": array_sha256(source.decays)}


def check_phantom_source(phantom: object, source: object) -> None:
    """A Phantom and a Source on its grid, else an InputError naming what is wrong (every dose
    method checks its inputs with this)."""
    if not isinstance(phantom, Phantom):
        raise InputError(f"phantom {describe(phantom)} (of type {type(phantom).__name__}): expected an "
                         "rptdose.Phantom (Phantom.water, Phantom.from_arrays, Phantom.from_ct)")
    if not isinstance(source, Source):
        raise InputError(f"source {describe(source)} (of type {type(source).__name__}): expected an "
                         "rptdose.Source (Source('Lu-177', decays) or Source.monoenergetic)")
    if source.shape != phantom.shape:
        raise InputError(f"source decays shape {source.shape} (differs from the phantom's {phantom.shape}): "
                         "expected the source on the phantom's [z, y, x] grid")


def _version(dist: str) -> str:
    from rptdose._provenance import package_version

    return package_version(dist)


def simulate(phantom: Phantom, source: Source, histories: int = 10**6, seed: int = 1, backend: str = "auto",
             threads: int | None = None, batches: int = 10, electron_transport: bool = True,
             regions: Any = None, progress: Any = None, scheduler: Any = None,
             checkpoint: Any = None, precision: str = "auto") -> SimulationResult:
    """Monte Carlo absorbed dose of ``source`` in ``phantom``.

    See the module docstring for the arguments. Everything is validated before any work starts:
    a bad argument raises :class:`~rptdose.errors.InputError` naming it, an unavailable
    explicitly requested backend :class:`~rptdose.errors.BackendUnavailableError`.

    Returns a :class:`~rptdose.SimulationResult` with ``dose_gy`` (from all
    ``source.total_decays`` decays), ``rel_uncertainty``, ``energy_balance`` (MeV per decay),
    ``region_means`` and ``provenance``.
    """
    # ---- validate everything first --------------------------------------------------------
    check_phantom_source(phantom, source)
    batches = as_int("batches", batches, minimum=MIN_BATCHES, maximum=MAX_BATCHES)
    histories = as_int("histories", histories, minimum=1)
    if histories < batches:
        raise InputError(f"histories {histories} (fewer than batches={batches}): expected at least one "
                         "history per batch")
    seed = as_int("seed", seed, minimum=0, maximum=SEED_MAX)
    run_threads = 0  # the core's "all the OpenMP default gives"
    if threads is not None:
        threads = as_int("threads", threads, minimum=1, maximum=2**31 - 1)
        # capped to this process's CPUs when it runs the batches; on a scheduler they are the workers'
        run_threads = min(threads, available_cpus()) if scheduler is None else threads
        if run_threads < threads:  # provenance keeps the request (threads_requested) and what ran
            import warnings

            warnings.warn(f"threads {threads} (more than the {run_threads} CPUs available to this process): using "
                          f"{run_threads}; the results are the same for any thread count, oversubscription only "
                          "slows the run", UserWarning, stacklevel=2)
    if not isinstance(electron_transport, (bool, np.bool_)):
        raise InputError(f"electron_transport {electron_transport!r}: expected True or False")
    electron_transport = bool(electron_transport)
    check_progress(progress)
    check_backend_name(backend)
    from rptdose.transport import checkpoint as ckpt
    from rptdose.transport.distributed import check_scheduler

    scheduler = check_scheduler(scheduler)
    checkpoint = None if checkpoint is None else ckpt.check_path(checkpoint)
    check_precision(precision)
    reg = _prepare_regions(regions, phantom)

    emissions = source.emission_arrays()
    max_mev = max_mev_per_decay(emissions)
    mean_mev = mean_mev_per_decay(emissions)
    capacity = max_histories(mean_mev)
    if histories > capacity:
        raise InputError(f"histories {histories} (beyond the 64-bit tally capacity for {source.nuclide}, "
                         f"{mean_mev:.4g} MeV per decay on average): expected at most {capacity}; "
                         "split the run over seeds")

    batched = scheduler is not None or checkpoint is not None
    if scheduler is not None:
        # the workers' backend is chosen with the cluster (Cluster.resolve_backend); their
        # precision: double unless single is asked for
        backend_name, runner = "dask", None
        run_precision, precision_reason = ((precision, "requested") if precision != "auto"
                                           else ("double", "auto: double on Dask workers"))
    else:
        backend_name, runner = select_backend(backend)  # BackendUnavailableError says why
        if checkpoint is not None and backend_name not in BATCH_BACKENDS:
            if backend != "auto":
                raise InputError(f"backend {backend!r} with a checkpoint (no batch-wise runs on it): expected "
                                 f"one of {', '.join(BATCH_BACKENDS)} or 'auto'")
            backend_name, runner = select_backend("cpu")
        run_precision, precision_reason = resolve_precision(precision, backend_name)

    # ---- physics tables --------------------------------------------------------------------
    from rptdose.physics.tables import transport_tables

    t0 = time.perf_counter()
    tables = transport_tables(phantom.materials)
    t_tables = time.perf_counter() - t0

    # ---- transport -------------------------------------------------------------------------
    t0 = time.perf_counter()
    with progress_callback(progress, histories, desc=f"rptdose {backend_name}") as callback:
        request = RunRequest(density=phantom.density, material=phantom.material_index,
                             spacing_mm=phantom.spacing_mm, decays=source.decays, tables=tables,
                             emissions=emissions, histories=histories, seed=seed, batches=batches,
                             threads=run_threads, electron_transport=electron_transport,
                             regions=None if reg is None else reg.labels, progress=callback,
                             precision=run_precision)
        if batched:
            from rptdose.transport.batched import run_batched

            identity = ckpt.run_identity(_run_inputs(phantom, source, reg), phantom.spacing_mm, tables, emissions,
                                         histories, seed, batches, electron_transport, _core_version(),
                                         run_precision)
            out = run_batched(request, backend=backend if scheduler is not None else backend_name,
                              scheduler=scheduler, checkpoint=checkpoint, identity=identity)
        else:
            out = runner(request)
    elapsed_s = time.perf_counter() - t0
    if scheduler is not None:  # what the workers ran: "dask/cpu" or "dask/cuda"
        backend_name = "dask/" + out["batched"]["tally_backend"]

    # ---- energy -> dose --------------------------------------------------------------------
    decays_per_history = source.total_decays / histories
    alpha_mev = float(emissions.get("alpha_mev_per_decay", 0.0))
    energy_balance = {k: float(out[k]) / histories for k in ("emitted_mev", "deposited_mev", "escaped_mev")}
    if alpha_mev > 0.0:  # alphas at the decay site: the same energy emitted and deposited per decay
        energy_balance = _balance_with_alphas(out, alpha_mev, histories)
    region_means = None
    if reg is not None:
        alpha_atoms = None
        if alpha_mev > 0.0:
            atom_decays = _atom_sums(reg.labels, source.decays, reg.membership.shape[0])
            alpha_atoms = alpha_mev * atom_decays / source.total_decays
        region_means = _region_means(reg, out["edep_mev"], out["region_batch_edep_mev"], histories, batches,
                                     source.total_decays, alpha_atoms)
    # the backend's buffer is ours: convert it in place (no second voxel-sized array)
    dose_gy = np.asarray(out.pop("edep_mev"), dtype=np.float64)
    if not dose_gy.flags.writeable:
        dose_gy = dose_gy.copy()
    # Gy = J / (density [g/cm3] * volume [mm3] * 1e-6 [kg per g/cm3 mm3]), without a mass array
    sx, sy, sz = phantom.spacing_mm
    dose_gy *= decays_per_history * J_PER_MEV / (sx * sy * sz * 1e-6)
    dose_gy /= phantom.density
    rel = out["rel_uncertainty"]
    alpha_gy = None
    if alpha_mev > 0.0:
        alpha_gy = alpha_dose_gy(source.decays, alpha_mev, phantom.density, phantom.spacing_mm)
        total = dose_gy + alpha_gy
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(total > 0.0, np.asarray(rel) * dose_gy / total, 1.0)
        dose_gy = total

    provenance = _provenance(phantom, source, reg, tables, emissions, out, backend_name, backend, histories,
                             seed, batches, threads, electron_transport, max_mev, t_tables, elapsed_s,
                             (str(out.get("precision", run_precision)), precision, precision_reason))
    return SimulationResult(dose_gy=dose_gy, rel_uncertainty=rel,
                            energy_balance=energy_balance, backend=backend_name, histories=histories, seed=seed,
                            batches=batches, elapsed_s=elapsed_s, provenance=provenance,
                            spacing_mm=phantom.spacing_mm, origin_mm=phantom.origin_mm,
                            direction=phantom.direction, region_means=region_means, alpha_dose_gy=alpha_gy)


def _balance_with_alphas(out: dict, alpha_mev: float, histories: int) -> dict[str, float]:
    """Energy balance per decay with the alphas' energy (quantised like every tallied energy)
    added to the emitted and the deposited energy of each decay; computed from the integer units
    so that emitted = deposited + escaped holds exactly in them."""
    unit = float(out.get("energy_unit_mev", 1e-8))
    qa = int(alpha_mev / unit + 0.5) * int(histories)
    if all(k in out for k in ("emitted_units", "deposited_units", "escaped_units")):
        units = {"emitted_mev": int(out["emitted_units"]) + qa, "deposited_mev": int(out["deposited_units"]) + qa,
                 "escaped_mev": int(out["escaped_units"])}
        return {k: float(v) * unit / histories for k, v in units.items()}
    return {"emitted_mev": (float(out["emitted_mev"]) + qa * unit) / histories,
            "deposited_mev": (float(out["deposited_mev"]) + qa * unit) / histories,
            "escaped_mev": float(out["escaped_mev"]) / histories}


def _run_inputs(phantom: Phantom, source: Source, reg: _Regions | None) -> dict[str, str]:
    """SHA-256 of the run's arrays: phantom, source and (when given) region labels."""
    inputs = input_hashes(phantom, source)
    if reg is not None:
        inputs["region_labels"] = array_sha256(reg.labels)
    return inputs


def _core_version() -> str | None:
    try:
        from rptdose import _core
    except ImportError:
        return None
    return str(_core.version())


def _provenance(phantom: Phantom, source: Source, reg: _Regions | None, tables: dict, emissions: dict,
                out: dict, backend_name: str, backend_requested: str, histories: int, seed: int, batches: int,
                threads: int | None, electron_transport: bool, max_mev: float, t_tables: float,
                t_transport: float, precision: tuple[str, str, str]) -> dict[str, Any]:
    from rptdose._provenance import now_utc, rptdose_version

    core_version = _core_version()
    nuclide: dict[str, Any] = {"name": source.nuclide, "half_life_s": source.half_life_s,
                               "monoenergetic": source.is_monoenergetic}
    if not source.is_monoenergetic:
        nuclide["data_source"] = str(getattr(source._nuclide, "source", ""))
        if source.decay_chain is not None:
            nuclide["chain"] = source.decay_chain.summary()
    alpha_mev = float(emissions.get("alpha_mev_per_decay", 0.0))
    nuclide["alpha_recoil_mev_per_decay"] = alpha_mev
    if alpha_mev > 0.0:
        nuclide["alpha_method"] = ("alphas and recoil nuclei deposited in the decay voxel (ranges 40-100 um in tissue, "
                                   "far below a voxel) as the exact expected value decays x E / voxel mass; "
                                   "result.alpha_dose_gy")
    nuclide["above_table_mev_per_decay"] = float(emissions.get("above_table_mev_per_decay", 0.0))
    inputs = _run_inputs(phantom, source, reg)
    return {
        "rptdose_version": rptdose_version(),
        "core_version": core_version,
        "backend": backend_name,
        "backend_requested": backend_requested,
        "seed": seed,
        "histories": histories,
        "batches": batches,
        "electron_transport": electron_transport,
        # floating-point precision of the transport: the one used, the request, and why
        "precision": precision[0],
        "precision_requested": precision[1],
        "precision_reason": precision[2],
        "threads_requested": threads,
        "threads_used": int(out.get("threads_used", 0)),
        # GPU backends: the launch shape and the device that ran it
        **({"gpu_launch": dict(out["launch"])} if "launch" in out else {}),
        **({"gpu_device": out["device"]} if "device" in out else {}),
        # checkpointed or distributed: the checkpoint, the batch it resumed from, the scheduler and workers
        **({"batched": dict(out["batched"])} if "batched" in out else {}),
        "nuclide": nuclide,
        "total_decays": source.total_decays,
        "tracking_cuts_mev": {"electron": float(emissions["el_cut_mev"]), "photon": float(emissions["ph_cut_mev"])},
        "max_mev_per_decay": max_mev,
        "physics_data": dict(tables.get("provenance", {})),
        "materials": [{"name": m.name, "definition": m.key()} for m in phantom.materials],
        "phantom": {"shape": list(phantom.shape), "spacing_mm": list(phantom.spacing_mm),
                    "origin_mm": list(phantom.origin_mm), "direction": list(phantom.direction)},
        "regions": None if reg is None else list(reg.names),
        "inputs_sha256": inputs,
        "timing_s": {"tables": t_tables, "transport": t_transport},
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "h5py": _version("h5py"),
                     "SimpleITK": _version("SimpleITK"), "pydicom": _version("pydicom")},
        "platform": platform.platform(),
        "timestamp_utc": now_utc(),
    }
