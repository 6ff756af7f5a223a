"""Registering each time point's CT to the reference CT (SimpleITK), and carrying its SPECT along.

================================  ===========================================================
step                              how
================================  ===========================================================
initial alignment                 CenteredTransformInitializer (geometric centres)
rigid (always)                    Euler3DTransform; Mattes mutual information (50 bins, random
                                  sampling of ``sampling`` of the voxels with a fixed seed);
                                  regular-step gradient descent with scales from physical
                                  shifts; multi-resolution (shrink 4, 2, 1; smoothing 2, 1, 0
                                  voxels; levels that would leave fewer than 12 voxels along an
                                  axis are skipped); linear interpolation. CT values are clamped to
                                  [-1000, 2000] HU first (metal and outside-FOV padding).
deformable (``deformable=True``)  a BSpline transform (control points every ``mesh_mm``) on top
                                  of the rigid one, same metric, L-BFGS-B; the result is a
                                  composite transform (rigid, then BSpline)
================================  ===========================================================

The transform maps points of the reference (fixed) frame to the time point's (moving) frame, so
``resample(moving_image, reference_grid, transform)`` brings any image of the moving frame (its
CT, and its SPECT, which shares the CT's frame of reference) onto the reference grid.

Registration gives the same bits for a given seed, also from one run to the next in a process.
ITK's v4 metrics split the sampled points into work units and add each unit's partial sums
(Mattes: joint histogram and derivative) into the total as the units finish, so with more than
one work unit the order of the floating-point additions, and with it the last bits of every
metric value and gradient, changes from run to run; the optimizer then carries the difference
along (~1e-13 to 1e-7 in the parameters). The metric is therefore evaluated as one work unit
(:data:`METRIC_WORK_UNITS`); the per-voxel filters around it (pyramid smoothing and shrinking,
gradient images, resampling) stay multi-threaded and do not depend on the thread count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rptdose.errors import InputError

HU_CLAMP = (-1000.0, 2000.0)
#: A pyramid level is used only if the shrunken image keeps this many voxels along every axis.
MIN_LEVEL_VOXELS = 12
#: Work units of the registration metric: one, so that its sums are added in a fixed order
#: (more than one makes the result differ in the last bits from run to run; see the module notes).
METRIC_WORK_UNITS = 1


@dataclass
class RegistrationSettings:
    """How time points are registered (the study file's ``[registration]`` table)."""

    method: str = "rigid"          # "rigid" or "none"
    deformable: bool = False       # add a BSpline step after the rigid one
    iterations: int = 200          # per resolution level (rigid)
    sampling: float = 0.25         # fraction of voxels sampled by the metric
    bspline_mesh_mm: float = 60.0  # BSpline control-point spacing
    bspline_iterations: int = 50
    seed: int = 1
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas: tuple[float, ...] = (2.0, 1.0, 0.0)


@dataclass
class RegistrationResult:
    transform: Any                 # sitk.Transform (reference -> moving points)
    metric: float                  # final metric value (Mattes MI: lower is better)
    stop: str                      # the optimizer's stop condition
    iterations: int
    kind: str                      # "identity", "rigid" or "rigid+bspline"
    parameters: dict = field(default_factory=dict)
    #: how it was computed (seed, sampling, metric work units, threads, SimpleITK version): see
    #: :func:`registration_provenance`; written into the transform file by :func:`write_transform`
    provenance: dict = field(default_factory=dict)

    @property
    def rigid_parameters(self) -> dict:
        """{"rotation_deg": (x, y, z), "translation_mm": (x, y, z)} of the rigid part."""
        return self.parameters


def _prepare(image: Any) -> Any:
    import SimpleITK as sitk

    return sitk.Clamp(sitk.Cast(image, sitk.sitkFloat32), sitk.sitkFloat32, *HU_CLAMP)


def register_ct(fixed: Any, moving: Any, settings: RegistrationSettings | None = None) -> RegistrationResult:
    """Register ``moving`` (a CT in HU) to ``fixed`` (the reference CT); returns the transform
    mapping fixed points to moving points."""
    import SimpleITK as sitk

    s = settings or RegistrationSettings()
    if s.method == "none":
        return RegistrationResult(sitk.Euler3DTransform(), float("nan"), "registration disabled", 0, "identity",
                                  {"rotation_deg": (0.0, 0.0, 0.0), "translation_mm": (0.0, 0.0, 0.0)},
                                  {"method": "none"})
    f, m = _prepare(fixed), _prepare(moving)
    initial = sitk.CenteredTransformInitializer(f, m, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.GEOMETRY)
    reg = _method(s, f.GetSize())
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=s.iterations,
                                                 gradientMagnitudeTolerance=1e-8, relaxationFactor=0.5)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetInitialTransform(initial, inPlace=False)
    try:
        rigid = reg.Execute(f, m)
    except RuntimeError as exc:
        raise InputError(f"registration (rigid, Mattes mutual information failed: {_last_line(exc)}): expected CTs "
                         "of the same patient that overlap") from None
    result_kind, final = "rigid", rigid
    metric, stop, iters = reg.GetMetricValue(), reg.GetOptimizerStopConditionDescription(), reg.GetOptimizerIteration()
    euler = _as_euler(rigid)
    params = {"rotation_deg": tuple(float(np.degrees(v)) for v in euler.GetParameters()[:3]),
              "translation_mm": tuple(float(v) for v in euler.GetParameters()[3:]),
              "center_mm": tuple(float(v) for v in euler.GetCenter())}
    if s.deformable:
        mesh = [max(1, int(round(sz * sp / s.bspline_mesh_mm))) for sz, sp in zip(f.GetSize(), f.GetSpacing())]
        bspline = sitk.BSplineTransformInitializer(f, mesh, order=3)
        breg = _method(s, f.GetSize())
        breg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=s.bspline_iterations,
                                  maximumNumberOfCorrections=5,
                                  maximumNumberOfFunctionEvaluations=4 * s.bspline_iterations)
        breg.SetMovingInitialTransform(euler)
        breg.SetInitialTransform(bspline, inPlace=True)
        try:
            breg.Execute(f, m)
        except RuntimeError as exc:
            raise InputError(f"registration (BSpline step failed: {_last_line(exc)}): expected CTs of the same "
                             "patient that overlap, or deformable = false") from None
        final = sitk.CompositeTransform([euler, bspline])
        result_kind = "rigid+bspline"
        metric, stop, iters = (breg.GetMetricValue(), breg.GetOptimizerStopConditionDescription(),
                               iters + breg.GetOptimizerIteration())
    return RegistrationResult(final, float(metric), str(stop), int(iters), result_kind, params,
                              registration_provenance(s, reg))


def registration_provenance(s: RegistrationSettings, reg: Any | None = None) -> dict:
    """What a registration's bits depend on besides its inputs: the settings' seed and sampling,
    the metric's work units and the threads of the registration object ``reg`` (the global
    default when None), the SimpleITK version."""
    import SimpleITK as sitk

    threads = reg.GetNumberOfThreads() if reg is not None else sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    return {"method": s.method, "deformable": bool(s.deformable), "seed": int(s.seed), "sampling": float(s.sampling),
            "sampling_strategy": "random", "metric_work_units": METRIC_WORK_UNITS, "threads": int(threads),
            "simpleitk": sitk.Version.VersionString()}


def _levels(s: RegistrationSettings, size: tuple[int, ...]) -> tuple[list[int], list[float]]:
    """The pyramid levels whose shrunken image keeps at least MIN_LEVEL_VOXELS along every axis
    (the full-resolution level always stays)."""
    keep = [(f, g) for f, g in zip(s.shrink_factors, s.smoothing_sigmas) if f == 1 or min(size) / f >= MIN_LEVEL_VOXELS]
    if not keep or keep[-1][0] != 1:
        keep.append((1, 0.0))
    return [f for f, _ in keep], [g for _, g in keep]


def _method(s: RegistrationSettings, size: tuple[int, ...]) -> Any:
    import SimpleITK as sitk

    shrink, sigmas = _levels(s, size)

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(float(s.sampling), int(s.seed))
    reg.SetNumberOfWorkUnits(METRIC_WORK_UNITS)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetShrinkFactorsPerLevel(list(shrink))
    reg.SetSmoothingSigmasPerLevel(list(sigmas))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    return reg


def _as_euler(transform: Any) -> Any:
    import SimpleITK as sitk

    t = transform
    if isinstance(t, sitk.CompositeTransform) or t.GetName() == "CompositeTransform":
        t = sitk.CompositeTransform(t)
        t = t.GetNthTransform(t.GetNumberOfTransforms() - 1)
    return sitk.Euler3DTransform(t)


def _last_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def resample(image: Any, reference: Any, transform: Any | None = None, default: float = 0.0,
             interpolator: str = "linear") -> Any:
    """``image`` resampled onto ``reference``'s grid through ``transform`` (reference -> image frame)."""
    import SimpleITK as sitk

    interp = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor, "bspline": sitk.sitkBSpline}[interpolator]
    return sitk.Resample(image, reference, transform if transform is not None else sitk.Transform(), interp,
                         float(default), image.GetPixelID())


def write_transform(transform: Any, path: str | os.PathLike, provenance: dict | None = None) -> Path:
    """Write a transform as ITK text (.tfm) atomically (temporary name + os.replace).

    ``provenance`` (e.g. :attr:`RegistrationResult.provenance`) goes in as comment lines after the
    header, ``#rptdose <key>: <value>`` (ITK's reader skips lines that start with ``#``)."""
    import SimpleITK as sitk

    from rptdose.io.atomic import atomic_path

    p = Path(path)
    with atomic_path(p) as tmp:
        sitk.WriteTransform(transform, str(tmp))
        if provenance and p.suffix.lower() == ".tfm":
            lines = Path(tmp).read_text().splitlines(keepends=True)
            notes = [f"#rptdose {k}: {v}\n" for k, v in provenance.items()]
            Path(tmp).write_text("".join(lines[:1] + notes + lines[1:]))
    return p


def read_transform_provenance(path: str | os.PathLike) -> dict[str, str]:
    """The ``#rptdose key: value`` lines of a transform file written by :func:`write_transform`."""
    out = {}
    for line in Path(path).read_text().splitlines():
        if line.startswith("#rptdose "):
            key, _, value = line[len("#rptdose "):].partition(": ")
            out[key.strip()] = value.strip()
    return out


def check_slices(reference_ct: Any, registered_ct: Any, registered_spect: Any | None = None,
                 point_mm: tuple[float, float, float] | None = None) -> dict[str, np.ndarray]:
    """Axial, coronal and sagittal slices through ``point_mm`` (default: the SPECT's hottest
    region's centre, else the grid centre) of the reference CT, the registered CT and SPECT,
    all on the reference grid: {"ct_ref_axial": [y, x], ..., "aspect_*": float}."""
    import SimpleITK as sitk

    ref = sitk.GetArrayViewFromImage(reference_ct)
    mov = sitk.GetArrayViewFromImage(registered_ct)
    spe = sitk.GetArrayViewFromImage(registered_spect) if registered_spect is not None else None
    nz, ny, nx = ref.shape
    if point_mm is not None:
        i, j, k = (int(round(v)) for v in reference_ct.TransformPhysicalPointToContinuousIndex(point_mm))
    elif spe is not None and float(np.max(spe)) > 0:
        hot = spe >= 0.5 * float(np.max(spe))
        k, j, i = (int(round(float(v))) for v in np.mean(np.nonzero(hot), axis=1))
    else:
        i, j, k = nx // 2, ny // 2, nz // 2
    i, j, k = min(max(i, 0), nx - 1), min(max(j, 0), ny - 1), min(max(k, 0), nz - 1)
    sx, sy, sz = reference_ct.GetSpacing()
    out: dict[str, Any] = {"index": (i, j, k), "aspect_axial": sy / sx, "aspect_coronal": sz / sx,
                           "aspect_sagittal": sz / sy}
    for name, vol in (("ct_ref", ref), ("ct_reg", mov), ("spect", spe)):
        if vol is None:
            continue
        out[f"{name}_axial"] = np.array(vol[k, :, :])
        out[f"{name}_coronal"] = np.array(vol[:, j, :])
        out[f"{name}_sagittal"] = np.array(vol[:, :, i])
    return out
