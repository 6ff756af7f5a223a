"""Loading a study, stage by stage: from the study file's inputs to a :class:`Study`.

:func:`rptdose.study.load_study` runs these stages in order; each takes the results of the
earlier ones and returns a small typed result, so that each can be run and tested alone and a
new step has an obvious home:

=========================  ======================  =============================================
stage                      result                  what it does
=========================  ======================  =============================================
:func:`read_scans`         :class:`Scans`          read every SPECT (io/nm.py) and CT
                                                   (io/ct.py); one patient, frames of
                                                   reference; nuclide, activity and time of the
                                                   administration
:func:`quantify`           [:class:`ScanActivity`] timing of each scan; activity at its start
                                                   (quant/calibration.py), in time order
:func:`register_activity`  :class:`RegisteredActivity`  the dose grid; each CT registered to
                                                   the first (quant/registration.py); activity
                                                   resampled onto the grid
:func:`segment`            {region: mask}          RTSTRUCT / DICOM-SEG / label map on the grid
:func:`build_anatomy`      :class:`Anatomy`        phantom (HU -> density, material) and the
                                                   body outline (quant/body.py)
:func:`correct_recovery`   :class:`Recovered`      [recovery]: partial-volume correction of
                                                   every scan's regions (quant/recovery.py),
                                                   the maps scaled inside each part
:func:`integrate_activity` :class:`Integrated`     region fits, voxel TIA (quant/voxel_tia.py),
                                                   tia.outside_body
:func:`assemble`           :class:`Study`          source, time-point and region tables,
                                                   settings and provenance
=========================  ======================  =============================================

The study file itself is read by :func:`rptdose.study.read_study_file` (rptdose/study.py).
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rptdose.analysis.regions import FOV_REGION
from rptdose.errors import InputError

if TYPE_CHECKING:   # the study file's types (rptdose.study imports this module, not the reverse)
    from rptdose.study import StudySpec

HOUR = 3600.0
#: Latest scan accepted, in physical half-lives after the administration: later, less than 1e-6
#: of the activity is left and decay correction multiplies noise by more than 1e6 (a wrong date).
MAX_SCAN_HALF_LIVES = 20.0


# ---- the loaded study ---------------------------------------------------------------------------

@dataclass
class TimePoint:
    """One scan, after quantification and registration (``index``: 1-based, in time order)."""

    index: int
    label: str
    spect_path: Path
    ct_path: Path
    acquisition_start: _dt.datetime
    acquisition_start_source: str
    time_s: float                         # since the administration
    duration_s: float | None
    duration_source: str
    units: str
    units_source: str
    calibration_info: dict
    total_activity_fov_bq: float          # at scan time, in the SPECT's field of view
    total_activity_grid_bq: float = float("nan")   # at scan time, on the dose grid
    registration: Any = None              # RegistrationResult (None for the reference)
    check_slices: dict | None = None
    activity_bq: np.ndarray | None = None  # [z, y, x] at scan time on the dose grid

    @property
    def time_h(self) -> float:
        return self.time_s / HOUR


@dataclass
class Study:
    """A loaded study (see :func:`load_study`)."""

    path: Path
    name: str
    nuclide: str
    half_life_s: float
    administered_activity_bq: float
    administration_time: _dt.datetime
    timepoints: list[TimePoint]
    geometry: dict
    phantom: Any
    source: Any
    tia: np.ndarray
    tia_rel_uncertainty: np.ndarray
    voxel_fit: Any
    region_fit: Any
    region_names: list[str]
    masks: dict[str, np.ndarray]
    activity: np.ndarray
    quant_report: list[dict]
    region_table: list[dict]
    settings: dict
    provenance: dict = field(default_factory=dict)
    body: np.ndarray | None = None            # bool [z, y, x]: inside the CT's body outline
    voxel_method: np.ndarray | None = None    # uint8 [z, y, x]: quant/voxel_tia.py METHOD_NAMES
    tia_outside_body: dict = field(default_factory=dict)   # quant/body.py apply_outside_body summary
    recovery: Any = None                      # Recovered ([recovery]) or None

    @property
    def histories(self) -> int:
        return int(self.settings["dose"]["histories"])

    @property
    def seed(self) -> int:
        return int(self.settings["dose"]["seed"])

    @property
    def region_columns(self) -> list[str]:
        cols = ["region", "voxels", "volume_ml", "mass_g"]
        cols += [f"activity_{tp.label}_mbq" for tp in self.timepoints]
        cols += ["model", "tia_mbq_h", "tia_bq_s", "tia_rel_uncertainty", "t_eff_h", "residence_time_h",
                 "voxel_sum_tia_bq_s", "voxel_sum_to_region_fit", "flags"]
        if self.recovery is not None:
            cols += ["tia_uncorrected_bq_s", "recovery_coefficient"]
        return cols + list(BUDGET_COLUMNS)

    def write_tia(self, outdir: str | os.PathLike, plots: bool = True) -> dict[str, Path]:
        """Write the TIA maps, tables and plots (``rptdose.quant.outputs.write_tia_outputs``)."""
        from rptdose.quant.outputs import write_tia_outputs

        return write_tia_outputs(self, outdir, plots=plots)

    def __repr__(self) -> str:
        return (f"Study({self.name!r}, {self.nuclide}, {len(self.timepoints)} time points, grid {self.phantom.shape}, "
                f"regions {list(self.masks)}, total TIA {float(self.tia.sum()):.4g} Bq s)")


# ---- the stages ---------------------------------------------------------------------------------

@dataclass
class Scans:
    """Stage 1, :func:`read_scans`: every time point's SPECT and CT, read and checked (one
    patient, each SPECT in its CT's frame of reference), and the administration (nuclide,
    activity, time: from the study file, else from the DICOM)."""

    nms: list                      # rptdose.io.nm.NMImage per time point (study-file order)
    cts: list                      # SimpleITK CT images
    ct_ids: list[dict]             # DICOM identity of each CT (PatientID, FrameOfReferenceUID)
    nuclide: str
    half_life_s: float
    activity_bq: float
    administration_time: _dt.datetime
    administration_info: dict      # where each value came from


@dataclass
class ScanActivity:
    """Stage 2, :func:`quantify`: one scan's activity (Bq per voxel of its own SPECT) at its
    acquisition start, with its timing."""

    time_s: float                  # acquisition start since the administration
    spec: Any                      # the study file's TimepointSpec
    nm: Any
    ct: Any
    start: _dt.datetime
    start_source: str
    duration_s: float | None
    duration_source: str
    activity_bq: np.ndarray
    calibration_info: dict


@dataclass
class RegisteredActivity:
    """Stage 3, :func:`register_activity`: every scan's activity on the dose grid, in the
    reference (first) CT's frame, with the registration of each time point."""

    grid: Any                      # SimpleITK image: the dose grid
    geometry: dict                 # shape [z, y, x], spacing/origin/direction (x, y, z)
    reference_ct: Any
    reference_ct_id: dict
    activity: np.ndarray           # (time points, z, y, x) Bq at each scan's start
    timepoints: list[TimePoint]

    @property
    def times_s(self) -> np.ndarray:
        return np.array([tp.time_s for tp in self.timepoints])

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.grid.GetSpacing())) * 1e-3


@dataclass
class Anatomy:
    """Stage 4, :func:`build_anatomy`: the reference CT on the dose grid as a phantom
    (Schneider 2000 HU calibration) and the body outline (``rptdose.quant.body``)."""

    phantom: Any
    body: np.ndarray               # bool [z, y, x]
    hu: np.ndarray | None = None   # the reference CT on the dose grid (HU)


@dataclass
class Recovered:
    """Stage 4b, :func:`correct_recovery` ([recovery]): the regions' activities corrected for
    the SPECT's resolution at every scan (``rptdose.quant.recovery``), the activity maps scaled
    inside each part."""

    result: Any                    # rptdose.quant.recovery.RecoveryResult, (scans, regions)
    psf_fwhm_mm: tuple[float, float, float]
    psf_source: str                # "recovery.psf_fwhm_mm" or the sphere phantom's fit
    sphere_fit: Any                # rptdose.quant.recovery.SphereFit or None
    uncorrected: np.ndarray        # (scans, z, y, x) the activity before the correction


@dataclass
class Integrated:
    """Stage 5, :func:`integrate_activity`: time-integrated activity per voxel (the source)
    and per region."""

    tia: np.ndarray                # Bq s per voxel, after tia.outside_body
    tia_rel_uncertainty: np.ndarray
    voxel: Any                     # rptdose.quant.voxel_tia.VoxelTIA
    region_fit: Any                # rptdose.quant.tia.TIAResult, one column per region name
    region_names: list[str]        # the masks, then the field of view
    region_tac: np.ndarray         # (time points, regions) Bq
    outside_body: dict             # rptdose.quant.body.apply_outside_body summary + methods
    region_tia_uncorrected: np.ndarray | None = None   # the regions' TIA without recovery correction


def read_scans(spec: StudySpec) -> Scans:
    """Stage 1: read every SPECT and CT, check identities and the nuclide."""
    from rptdose.io.ct import read_ct
    from rptdose.io.nm import dicom_identity, read_nm
    from rptdose.io.segmentation import segmentation_identity
    from rptdose.physics.nuclides import load_nuclide

    nms, cts, ct_ids = [], [], []
    for tp in spec.timepoints:
        try:
            nms.append(read_nm(tp.spect, series_uid=tp.spect_series_uid))
        except InputError as exc:
            raise InputError(f"study '{spec.path}' timepoint[{tp.position}].spect: {exc}") from None
        try:
            cts.append(read_ct(tp.ct, series_uid=tp.ct_series_uid))
        except InputError as exc:
            raise InputError(f"study '{spec.path}' timepoint[{tp.position}].ct: {exc}") from None
        ct_ids.append(dicom_identity(tp.ct, modality="CT"))
    seg_id = segmentation_identity(spec.segmentation["path"]) if spec.segmentation["path"] is not None else None
    _check_identity(spec, nms, ct_ids, seg_id)
    nuclide, activity_bq, adm_time, adm_info = _administration(spec, nms, spec.nuclide)
    half_life_s = float(load_nuclide(nuclide).half_life_s)
    for tp, nm in zip(spec.timepoints, nms):
        hl = nm.radiopharmaceutical.half_life_s
        if hl is not None and abs(hl - half_life_s) > 0.02 * half_life_s:
            raise InputError(f"spect '{tp.spect}' (RadionuclideHalfLife (0018,1075) {hl:g} s, the half-life of "
                             f"{nuclide} is {half_life_s:g} s): expected the study's nuclide; check study.nuclide")
    from rptdose.quant.phantom_calibration import check_camera_match

    for tp, nm in zip(spec.timepoints, nms):   # a phantom or file calibration: same camera, same nuclide
        check_camera_match(spec.calibration, nm, f"spect '{tp.spect}'", nuclide=nuclide)
    return Scans(nms, cts, ct_ids, nuclide, half_life_s, activity_bq, adm_time, adm_info)


def quantify(spec: StudySpec, scans: Scans) -> list[ScanActivity]:
    """Stage 2: each scan's timing and its activity at the acquisition start
    (``rptdose.quant.calibration.activity_at_start``), in time order."""
    from rptdose.quant.calibration import activity_at_start

    out = []
    adm_time, adm_info, half_life_s = scans.administration_time, scans.administration_info, scans.half_life_s
    for tp, nm, ct in zip(spec.timepoints, scans.nms, scans.cts):
        where = f"spect '{tp.spect}'"
        if tp.acquisition_time is not None:
            start, start_source = tp.acquisition_time, f"timepoint[{tp.position}].acquisition_time"
        elif nm.acquisition_start is not None:
            start, start_source = nm.acquisition_start, nm.acquisition_start_source
        else:
            raise InputError(f"{where} (acquisition start {nm.acquisition_start_source}): expected these tags, or "
                             f"timepoint[{tp.position}].acquisition_time in the study file '{spec.path}'")
        dt = (start - adm_time).total_seconds()
        if not dt > 0:
            raise InputError(f"{where} (acquisition start {start.isoformat()} from {start_source} is not after the "
                             f"administration {adm_time.isoformat()} ({adm_info['time_source']})): expected scans "
                             "after the administration; check the dates")
        if dt > MAX_SCAN_HALF_LIVES * half_life_s:
            raise InputError(f"{where} (acquisition start {start.isoformat()} from {start_source} is "
                             f"{dt / 86400.0:.4g} days, {dt / half_life_s:.3g} half-lives of {scans.nuclide}, after "
                             f"the administration {adm_time.isoformat()} ({adm_info['time_source']})): expected scans "
                             f"within {MAX_SCAN_HALF_LIVES:g} half-lives "
                             f"({MAX_SCAN_HALF_LIVES * half_life_s / 86400.0:.4g} days) of the administration; check "
                             "the dates (administration.time, "
                             f"timepoint[{tp.position}].acquisition_time)")
        duration, duration_source = ((tp.duration_s, f"timepoint[{tp.position}].duration_s") if tp.duration_s
                                     else (nm.duration_s, nm.duration_source))
        activity, cal_info = activity_at_start(
            nm.values(), nm.units, spec.calibration, half_life_s, voxel_volume_ml=nm.voxel_volume_ml,
            duration_s=duration, decay_correction=nm.decay_correction, time_since_administration_s=dt, where=where,
            units_source=nm.units_source)
        out.append(ScanActivity(dt, tp, nm, ct, start, start_source, duration, duration_source, activity, cal_info))
    out.sort(key=lambda e: e.time_s)
    times = [e.time_s for e in out]
    if np.any(np.diff(times) <= 0):
        i = int(np.argmin(np.diff(times)))
        raise InputError(f"study '{spec.path}' (timepoint[{out[i].spec.position}] and timepoint"
                         f"[{out[i + 1].spec.position}] start at the same time): expected distinct scans")
    return out


def register_activity(spec: StudySpec, scans: Scans, acts: list[ScanActivity], settings: Any) -> RegisteredActivity:
    """Stage 3: the dose grid (``dose.grid``), each time point's CT registered to the first one's
    (``settings``: RegistrationSettings), each scan's activity resampled onto the grid."""
    import SimpleITK as sitk

    from rptdose.quant.calibration import check_fov_total
    from rptdose.quant.decay import decay_correct
    from rptdose.quant.registration import RegistrationResult, check_slices, register_ct, resample

    ref_ct = acts[0].ct
    grid = _dose_grid(spec.dose["grid"], acts[0].nm.image, ref_ct)
    geometry = _geometry(grid)
    voxel_ml = float(np.prod(grid.GetSpacing())) * 1e-3
    timepoints: list[TimePoint] = []
    stack = np.zeros((len(acts),) + geometry["shape"], dtype=np.float64)
    ref_ct_path = acts[0].spec.ct.resolve()
    for i, e in enumerate(acts):
        tp, nm = e.spec, e.nm
        conc = sitk.GetImageFromArray(e.activity_bq / nm.voxel_volume_ml)
        conc.CopyInformation(nm.image)
        registration = transform = slices = None
        if i > 0:
            if tp.ct.resolve() == ref_ct_path:
                registration = RegistrationResult(sitk.Euler3DTransform(), float("nan"), "same CT as the reference",
                                                  0, "identity")
            else:
                registration = register_ct(ref_ct, e.ct, settings)
            transform = registration.transform
            reg_ct = resample(e.ct, ref_ct, transform, default=-1000.0)
            reg_spect = resample(conc, ref_ct, transform, default=0.0)
            slices = check_slices(ref_ct, reg_ct, reg_spect)
        stack[i] = sitk.GetArrayFromImage(resample(conc, grid, transform, default=0.0)) * voxel_ml
        total_fov = float(e.activity_bq.sum())
        timepoints.append(TimePoint(
            index=i + 1, label=tp.label or f"tp{i + 1}", spect_path=tp.spect, ct_path=tp.ct,
            acquisition_start=e.start, acquisition_start_source=e.start_source, time_s=e.time_s,
            duration_s=e.duration_s, duration_source=e.duration_source, units=nm.units, units_source=nm.units_source,
            calibration_info=e.calibration_info, total_activity_fov_bq=total_fov,
            total_activity_grid_bq=float(stack[i].sum()), registration=registration, check_slices=slices,
            activity_bq=stack[i]))
        check_fov_total(float(decay_correct(total_fov, e.time_s, scans.half_life_s)), scans.activity_bq,
                        f"spect '{tp.spect}'")
    ref_id = scans.ct_ids[acts[0].spec.position - 1]
    return RegisteredActivity(grid, geometry, ref_ct, ref_id, stack, timepoints)


def segment(spec: StudySpec, registered: RegisteredActivity) -> dict[str, np.ndarray]:
    """Stage: the segmentation's regions as bool masks on the dose grid (empty: no segmentation)."""
    return _masks(spec, registered.reference_ct, registered.grid, registered.reference_ct_id)


def build_anatomy(spec: StudySpec, registered: RegisteredActivity) -> Anatomy:
    """Stage 4: the reference CT on the dose grid as a phantom, and the body outline."""
    import SimpleITK as sitk

    from rptdose.phantom import Phantom
    from rptdose.physics.materials import HUCalibration
    from rptdose.quant.body import body_mask_on_grid
    from rptdose.quant.registration import resample

    grid, ref_ct = registered.grid, registered.reference_ct
    hu = sitk.GetArrayFromImage(resample(ref_ct, grid, None, default=-1000.0))
    density, index, materials = HUCalibration.schneider2000().apply(hu)
    phantom = Phantom.from_arrays(density, index, materials, grid.GetSpacing(), grid.GetOrigin(), grid.GetDirection())
    body = body_mask_on_grid(ref_ct, grid)
    if not body.any():
        warnings.warn(f"study '{spec.path}': no body outline found in the reference CT (no voxel above -400 HU on the "
                      "dose grid); tia.outside_body and dose.mask_to_body are not applied", UserWarning, stacklevel=3)
        body = np.ones(registered.geometry["shape"], dtype=bool)
    return Anatomy(phantom, body, hu)


def correct_recovery(spec: StudySpec, registered: RegisteredActivity, masks: dict[str, np.ndarray],
                     anatomy: Anatomy) -> tuple[RegisteredActivity, Recovered | None]:
    """Stage 4b: with [recovery], every scan's region activities corrected for partial volume
    (geometric transfer matrix, rptdose/quant/recovery.py) and the maps scaled inside each part;
    the registered activity returned with the corrected maps (the input unchanged). Without
    [recovery]: ``(registered, None)``."""
    import dataclasses

    from rptdose.quant.calibration import QuantWarning
    from rptdose.quant.recovery import ct_background_classes, recover

    rc = spec.recovery
    if rc is None:
        return registered, None
    if not masks:
        raise InputError(f"study '{spec.path}' key [recovery] (no segmentation): expected regions to correct "
                         "([segmentation]) with a recovery correction")
    sphere_fit = None
    if rc["psf_fwhm_mm"] is not None:
        psf, source = tuple(rc["psf_fwhm_mm"]), "recovery.psf_fwhm_mm"
    else:
        sphere_fit = _fit_sphere_phantom(spec)
        psf = (sphere_fit.fwhm_mm,) * 3
        source = (f"fitted to the sphere phantom '{rc['sphere_phantom']['spect']}' "
                  f"({sphere_fit.fwhm_mm:.2f} +- {sphere_fit.u_fwhm_mm:.2f} mm)")
    classes = ct_background_classes(anatomy.hu, anatomy.body) if rc["split_background"] and anatomy.hu is not None         else None
    try:
        res = recover(registered.activity, masks, registered.grid.GetSpacing(), psf, body=anatomy.body,
                      psf_fwhm_uncertainty_pct=rc["psf_fwhm_uncertainty_pct"],
                      contour_uncertainty_mm=rc["contour_uncertainty_mm"], background_classes=classes,
                      exclude=tuple(rc["exclude"]), psf_key=f"study '{spec.path}' key recovery.psf_fwhm_mm")
    except InputError as exc:
        text = str(exc)
        raise InputError(text if text.startswith("study '") else f"study '{spec.path}' [recovery]: {text}") from None
    for w in res.warnings:
        warnings.warn(f"study '{spec.path}' recovery correction: {w}", QuantWarning, stacklevel=3)
    corrected = np.stack([res.apply(registered.activity[k], k) for k in range(registered.activity.shape[0])])
    timepoints = [dataclasses.replace(tp, activity_bq=corrected[i]) for i, tp in enumerate(registered.timepoints)]
    out = dataclasses.replace(registered, activity=corrected, timepoints=timepoints)
    return out, Recovered(res, psf, source, sphere_fit, registered.activity)


def _fit_sphere_phantom(spec: StudySpec) -> Any:
    """The FWHM of the [recovery.sphere_phantom] scan (rptdose.quant.recovery.fit_psf_from_spheres)."""
    import SimpleITK as sitk

    from rptdose.io.nm import read_nm
    from rptdose.quant.recovery import fit_psf_from_spheres

    sp = spec.recovery["sphere_phantom"]
    where = f"study '{spec.path}' key recovery.sphere_phantom"
    try:
        nm = read_nm(sp["spect"])
    except InputError as exc:
        raise InputError(f"{where}.spect: {exc}") from None
    image = nm.values()

    def on_phantom(path: Path, key: str) -> np.ndarray:
        try:
            lab = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            raise InputError(f"{where}.{key} '{path}' (not readable: {str(exc).strip().splitlines()[-1]}): expected "
                             "a label image (NIfTI, MetaImage, NRRD) on the phantom's frame") from None
        lab = sitk.Resample(lab, nm.image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
        return sitk.GetArrayFromImage(lab)

    if sp["spheres"] is not None:
        lab = on_phantom(sp["spheres"], "spheres")
        values = [int(v) for v in np.unique(lab) if v > 0]
        if not values:
            raise InputError(f"{where}.spheres '{sp['spheres']}' (no label > 0 on the phantom's grid): expected one "
                             "label per sphere")
        spheres: Any = {f"sphere {v}": lab == v for v in values}
    else:
        spheres = list(zip(sp["centres_mm"], sp["volumes_ml"]))
    background = on_phantom(sp["background"], "background") > 0 if sp["background"] is not None else None
    try:
        return fit_psf_from_spheres(image, spheres, sp["sphere_concentration_bq_ml"], nm.image.GetSpacing(),
                                    origin_mm=nm.image.GetOrigin(), background_mask=background,
                                    background_concentration=sp["background_concentration_bq_ml"])
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def integrate_activity(spec: StudySpec, registered: RegisteredActivity, masks: dict[str, np.ndarray],
                       body: np.ndarray, half_life_s: float, recovered: Recovered | None = None) -> Integrated:
    """Stage 5: region time-activity curves fitted with ``tia.model``; the voxel TIA map by the
    noise-robust hierarchy of ``rptdose.quant.voxel_tia`` (``tia.voxel_model``), each voxel's
    kinetic region the smallest region containing it; ``tia.outside_body`` applied."""
    from rptdose.quant.body import apply_outside_body
    from rptdose.quant.tia import integrate
    from rptdose.quant.voxel_tia import FIT_MODELS, voxel_tia

    stack, shape = registered.activity, registered.geometry["shape"]
    n = stack.shape[0]
    t = registered.times_s
    stp = spec.tia["timepoint"] - 1 if spec.tia["timepoint"] else None
    teff_h = spec.tia["effective_half_life_h"]
    region_names = list(masks) + ([FOV_REGION] if FOV_REGION not in masks else [])
    region_tac = np.stack([stack[:, m].sum(axis=1) for m in masks.values()] + [stack.reshape(n, -1).sum(axis=1)],
                          axis=1)
    region_teff = None
    if spec.tia["model"] == "madsen":
        region_teff = np.array([_region_teff(teff_h, r, spec) for r in region_names]) * HOUR
    region_fit = integrate(t, region_tac, half_life_s, spec.tia["model"], effective_half_life_s=region_teff,
                           stp_index=stp, trapezoid_start=spec.tia["trapezoid_start"], what="region activity")
    voxel_teff = _voxel_teff(teff_h, masks, shape, spec) if spec.tia["voxel_model"] == "madsen" else None
    labels, label_names = _kinetic_labels(masks, body)
    vt = voxel_tia(t, stack, half_life_s, spec.tia["voxel_model"], labels=labels, label_names=label_names,
                   region_model=spec.tia["model"] if spec.tia["model"] in FIT_MODELS else "trapezoid",
                   effective_half_life_s=voxel_teff, stp_index=stp, trapezoid_start=spec.tia["trapezoid_start"])
    tia, outside = apply_outside_body(vt.tia, body, spec.tia["outside_body"], registered.grid.GetSpacing())
    outside["voxel_methods"] = vt.counts()
    outside["tia_fraction_by_method"] = vt.tia_fractions()
    rel = np.where(body, vt.rel_uncertainty, np.nan) if spec.tia["outside_body"] == "drop" else vt.rel_uncertainty
    if not float(tia.sum()) > 0:
        raise InputError(f"study '{spec.path}' (the TIA map is zero everywhere on the dose grid): expected activity "
                         "in the SPECT field of view that overlaps the dose grid")
    uncorrected = None
    if recovered is not None:   # the same region fits on the measured (uncorrected) activities
        raw = recovered.uncorrected
        raw_tac = np.stack([raw[:, m].sum(axis=1) for m in masks.values()] + [raw.reshape(n, -1).sum(axis=1)], axis=1)
        uncorrected = np.asarray(integrate(t, raw_tac, half_life_s, spec.tia["model"],
                                           effective_half_life_s=region_teff, stp_index=stp,
                                           trapezoid_start=spec.tia["trapezoid_start"], what="region activity").tia,
                                 dtype=np.float64)
    return Integrated(np.ascontiguousarray(tia, dtype=np.float64), np.ascontiguousarray(rel, dtype=np.float64), vt,
                      region_fit, region_names, region_tac, outside, uncorrected)


def quant_report(spec: StudySpec, scans: Scans, registered: RegisteredActivity) -> list[dict]:
    """One row per time point: timing, units, activity in the field of view and on the grid,
    registration."""
    from rptdose.quant.decay import decay_correct

    rows = []
    for tp in registered.timepoints:
        corrected = float(decay_correct(tp.total_activity_fov_bq, tp.time_s, scans.half_life_s))
        row = {"timepoint": tp.index, "label": tp.label, "spect": str(tp.spect_path),
               "acquisition_start": tp.acquisition_start.isoformat(), "time_h": tp.time_h,
               "duration_s": tp.duration_s if tp.duration_s is not None else float("nan"),
               "units": tp.units, "calibration": spec.calibration.mode,
               "activity_fov_mbq": tp.total_activity_fov_bq / 1e6,
               "activity_fov_decay_corrected_mbq": corrected / 1e6,
               "percent_of_administered_decay_corrected": 100 * corrected / scans.activity_bq,
               "activity_dose_grid_mbq": tp.total_activity_grid_bq / 1e6,
               "registration": tp.registration.kind if tp.registration is not None else "reference",
               "registration_metric": tp.registration.metric if tp.registration is not None else float("nan"),
               "units_source": tp.units_source, "acquisition_start_source": tp.acquisition_start_source,
               "duration_source": tp.duration_source}
        if tp.registration is not None and tp.registration.parameters:
            row["rotation_deg"] = tuple(round(v, 4) for v in tp.registration.parameters["rotation_deg"])
            row["translation_mm"] = tuple(round(v, 3) for v in tp.registration.parameters["translation_mm"])
        rows.append(row)
    return rows


#: The uncertainty budget's columns in the region tables (relative standard uncertainties;
#: docs/study_file.md "Uncertainty budget").
BUDGET_COLUMNS = ("u_calibration", "u_recovery", "u_volume", "u_tia_fit", "u_total")


def region_table(spec: StudySpec, scans: Scans, registered: RegisteredActivity, masks: dict[str, np.ndarray],
                 anatomy: Anatomy, integrated: Integrated, recovered: Recovered | None = None) -> list[dict]:
    """One row per region (the masks, then the field of view): volume, mass, activity per scan,
    the region fit's TIA, uncertainty, T_eff, the sum of the voxel TIAs; with [recovery] the
    uncorrected TIA and the recovery coefficient; the TIA's uncertainty budget
    (:data:`BUDGET_COLUMNS`, without the Monte Carlo term, which ``rptdose run`` adds)."""
    from rptdose.analysis.regions import combine_relative, contour_uncertainty, contour_voxels
    from rptdose.quant.tia import effective_half_life_s

    mass_kg = anatomy.phantom.voxel_mass_kg
    fit, tia = integrated.region_fit, integrated.tia
    u_cal = float(spec.calibration.u_calibration)
    rec = recovered.result if recovered is not None else None
    rec_index = {n: i for i, n in enumerate(rec.names)} if rec is not None else {}
    contour_vox = contour_voxels((spec.recovery or {}).get("contour_uncertainty_mm"), registered.grid.GetSpacing())
    rows = []
    for r, name in enumerate(integrated.region_names):
        m = masks.get(name, np.ones(registered.geometry["shape"], dtype=bool))
        n_vox = int(m.sum())
        voxel_sum = float(tia[m].sum())
        tia_r = float(fit.tia[r])
        row = {"region": name, "voxels": n_vox, "volume_ml": n_vox * registered.voxel_ml,
               "mass_g": float(mass_kg[m].sum()) * 1e3}
        for i, tp in enumerate(registered.timepoints):
            row[f"activity_{tp.label}_mbq"] = float(integrated.region_tac[i, r]) / 1e6
        row.update({"model": fit.model_name(r), "tia_mbq_h": tia_r / 1e6 / HOUR, "tia_bq_s": tia_r,
                    "tia_rel_uncertainty": float(fit.rel_uncertainty[r]),
                    "t_eff_h": effective_half_life_s(fit, r) / HOUR,
                    "residence_time_h": tia_r / scans.activity_bq / HOUR, "voxel_sum_tia_bq_s": voxel_sum,
                    "voxel_sum_to_region_fit": voxel_sum / tia_r if tia_r > 0 else float("nan"),
                    "flags": fit.flag_names(r)})
        u_rec = u_vol = float("nan")
        if recovered is not None:
            raw = float(integrated.region_tia_uncorrected[r])
            row["tia_uncorrected_bq_s"] = raw
            row["recovery_coefficient"] = raw / tia_r if tia_r > 0 else float("nan")
            if name in rec_index and rec.u_recovery is not None:
                u_rec = float(rec.u_recovery[rec_index[name]])
                u_vol = float(rec.u_volume[rec_index[name]])
        if name != FOV_REGION and not np.isfinite(u_vol):
            # the TIA per mass of the region eroded / dilated by the contour's uncertainty
            u_vol = contour_uncertainty(tia, mass_kg, m, contour_vox)
        u_fit = float(fit.rel_uncertainty[r])
        row.update({"u_calibration": u_cal, "u_recovery": u_rec, "u_volume": u_vol, "u_tia_fit": u_fit,
                    "u_total": combine_relative(u_cal, u_rec, u_vol, u_fit)})
        rows.append(row)
    return rows


def settings_and_provenance(spec: StudySpec, scans: Scans, acts: list[ScanActivity], reg_settings: Any
                            ) -> tuple[dict, dict]:
    """The settings used (study-file values after defaults) and the provenance record (versions,
    input SHA-256s, administration and where each value came from)."""
    from rptdose._provenance import now_utc, rptdose_version
    from rptdose.quant.registration import METRIC_WORK_UNITS

    cal = spec.calibration
    settings = {"dose": dict(spec.dose), "tia": dict(spec.tia), "calibration": {
        "mode": cal.mode, "sensitivity_cps_per_mbq": cal.sensitivity_cps_per_mbq, "u_rel": cal.u_calibration,
        **cal.info()},
        "segmentation": {k: (str(v) if isinstance(v, Path) else v) for k, v in spec.segmentation.items()},
        "registration": {**vars(reg_settings), "metric_work_units": METRIC_WORK_UNITS},
        "hu_calibration": "schneider2000",
        "recovery": None if spec.recovery is None else {k: (str(v) if isinstance(v, Path) else v)
                                                        for k, v in spec.recovery.items() if k != "sphere_phantom"}}
    if spec.recovery is not None and spec.recovery.get("sphere_phantom"):
        settings["recovery"]["sphere_phantom"] = {k: (str(v) if isinstance(v, Path) else v)
                                                  for k, v in spec.recovery["sphere_phantom"].items()}
    inputs = [spec.path] + [e.spec.spect for e in acts] + [e.spec.ct for e in acts]
    if spec.segmentation["path"] is not None:
        inputs.append(spec.segmentation["path"])
    provenance = {"rptdose_version": rptdose_version(), "created": now_utc(),
                  "study_file": str(spec.path), "input_sha256": _hash_inputs(inputs), "settings": settings,
                  "administration": {"nuclide": scans.nuclide, "half_life_s": scans.half_life_s,
                                     "activity_bq": scans.activity_bq,
                                     "time": scans.administration_time.isoformat(),
                                     **dict(scans.administration_info)},
                  "versions": _versions()}
    if cal.record is not None:   # the phantom measurement, camera and input hashes of the calibration
        provenance["calibration"] = dict(cal.record)
    return settings, provenance


def assemble(spec: StudySpec, scans: Scans, acts: list[ScanActivity], registered: RegisteredActivity,
             masks: dict[str, np.ndarray], anatomy: Anatomy, integrated: Integrated, reg_settings: Any,
             recovered: Recovered | None = None) -> Study:
    """The :class:`Study` from the stages' results (source = the TIA map, reports, provenance)."""
    from rptdose.source import Source

    settings, provenance = settings_and_provenance(spec, scans, acts, reg_settings)
    return Study(path=spec.path, name=spec.name, nuclide=scans.nuclide, half_life_s=scans.half_life_s,
                 administered_activity_bq=scans.activity_bq, administration_time=scans.administration_time,
                 timepoints=registered.timepoints, geometry=registered.geometry, phantom=anatomy.phantom,
                 source=Source(scans.nuclide, integrated.tia, chain=spec.chain), tia=integrated.tia,
                 tia_rel_uncertainty=integrated.tia_rel_uncertainty, voxel_fit=integrated.voxel.fit,
                 region_fit=integrated.region_fit, region_names=integrated.region_names, masks=masks,
                 activity=registered.activity, quant_report=quant_report(spec, scans, registered),
                 region_table=region_table(spec, scans, registered, masks, anatomy, integrated, recovered),
                 settings=settings, recovery=recovered,
                 provenance=provenance, body=anatomy.body, voxel_method=integrated.voxel.method,
                 tia_outside_body=integrated.outside_body)


# ---- helpers ------------------------------------------------------------------------------------

def _hash_inputs(paths: list[Path]) -> dict[str, str]:
    from rptdose._provenance import sha256_file

    out = {}
    for p in paths:
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for f in files:
            out[str(f)] = sha256_file(f)
    return out


def _empty_image(template: Any) -> Any:
    import SimpleITK as sitk

    img = sitk.Image(template.GetSize(), sitk.sitkFloat64)
    img.CopyInformation(template)
    return img


def _dose_grid(grid: Any, ref_spect: Any, ref_ct: Any) -> Any:
    import SimpleITK as sitk

    from rptdose.resources import check_dose_grid  # memory and disk for this grid, before any work on it

    if grid in ("spect", "ct"):
        ref = ref_spect if grid == "spect" else ref_ct
        check_dose_grid(ref.GetSize(), ref.GetSpacing(), grid)
        return _empty_image(ref)
    spacing = np.array(grid, dtype=np.float64)
    ct_size = np.array(ref_ct.GetSize(), dtype=np.float64)
    ct_spacing = np.array(ref_ct.GetSpacing())
    extent = ct_size * ct_spacing
    size = np.maximum(1, np.ceil(extent / spacing - 1e-6)).astype(int)
    check_dose_grid(size, spacing, grid)
    direction = np.array(ref_ct.GetDirection()).reshape(3, 3)
    corner = np.array(ref_ct.GetOrigin()) - direction @ (0.5 * ct_spacing)
    origin = corner + direction @ (0.5 * spacing)
    img = sitk.Image([int(v) for v in size], sitk.sitkFloat64)
    img.SetSpacing(tuple(float(v) for v in spacing))
    img.SetOrigin(tuple(float(v) for v in origin))
    img.SetDirection(ref_ct.GetDirection())
    return img


def _geometry(image: Any) -> dict:
    nx, ny, nz = image.GetSize()
    return {"shape": (nz, ny, nx), "spacing_mm": tuple(image.GetSpacing()), "origin_mm": tuple(image.GetOrigin()),
            "direction": tuple(image.GetDirection())}


def _check_identity(spec: StudySpec, nms: list, ct_ids: list[dict], seg_id: dict | None) -> None:
    """Same patient everywhere (where stated); each SPECT in its CT's frame of reference."""
    patients: dict[str, list[str]] = {}
    for tp, nm, ct_id in zip(spec.timepoints, nms, ct_ids):
        if nm.patient_id:
            patients.setdefault(nm.patient_id, []).append(f"spect '{tp.spect}'")
        for pid in ct_id["PatientID"]:
            patients.setdefault(pid, []).append(f"ct '{tp.ct}'")
        if len(ct_id["FrameOfReferenceUID"]) > 1:
            raise InputError(f"ct '{tp.ct}' (several FrameOfReferenceUID (0020,0052): "
                             f"{sorted(ct_id['FrameOfReferenceUID'])}): expected one CT series")
        ct_for = next(iter(ct_id["FrameOfReferenceUID"]), None)
        if nm.frame_of_reference_uid and ct_for and nm.frame_of_reference_uid != ct_for:
            raise InputError(f"spect '{tp.spect}' (FrameOfReferenceUID (0020,0052) {nm.frame_of_reference_uid} differs "
                             f"from its ct '{tp.ct}' {ct_for}): expected the SPECT and CT of one SPECT/CT acquisition "
                             "(same frame of reference); register them first")
    if seg_id is not None:
        for pid in seg_id["PatientID"]:
            patients.setdefault(pid, []).append(f"segmentation '{spec.segmentation['path']}'")
    if len(patients) > 1:
        listing = "; ".join(f"{pid!r}: {', '.join(w[:3])}{' ...' if len(w) > 3 else ''}" for pid, w in patients.items())
        raise InputError(f"study '{spec.path}' (PatientID (0010,0020) differs between inputs: {listing}): expected "
                         "the images of one patient")


def _administration(spec: StudySpec, nms: list, nuclide_name: str | None) -> tuple[str, float, _dt.datetime, dict]:
    """Nuclide, activity (Bq) and time from the study file, else from the DICOM (consistent)."""
    info: dict[str, Any] = {}
    found: dict[str, dict[str, str]] = {"nuclide": {}, "activity": {}, "time": {}}
    time_only = []
    for tp, nm in zip(spec.timepoints, nms):
        rp = nm.radiopharmaceutical
        w = f"spect '{tp.spect}'"
        if rp.nuclide:
            found["nuclide"][w] = rp.nuclide
        if rp.total_dose_bq is not None:
            found["activity"][w] = rp.total_dose_bq
        if rp.start is not None:
            found["time"][w] = rp.start
        elif rp.start_time_only is not None:
            time_only.append(w)
    nuclide = spec.nuclide
    if nuclide is None:
        values = set(found["nuclide"].values())
        if not values:
            raise InputError(f"study '{spec.path}' key study.nuclide (missing, and no SPECT has a "
                             "RadionuclideCodeSequence (0054,0300)): expected a nuclide such as 'Lu-177'")
        if len(values) > 1:
            raise InputError(f"study '{spec.path}' (the SPECTs name different nuclides in RadionuclideCodeSequence "
                             f"(0054,0300): {found['nuclide']}): expected one; give study.nuclide")
        from rptdose.physics.nuclides import load_nuclide

        raw = values.pop()
        try:
            nuclide = load_nuclide(raw).name
        except InputError:
            w = next(iter(found["nuclide"]))
            raise InputError(f"{w} (RadionuclideCodeSequence (0054,0300) gives {raw!r}, not an ICRP-107 nuclide): "
                             "expected a known nuclide; give study.nuclide") from None
        info["nuclide_source"] = "RadionuclideCodeSequence (0054,0300)"
    else:
        from rptdose.physics.nuclides import load_nuclide

        for w, v in found["nuclide"].items():
            try:
                other = load_nuclide(v).name
            except InputError:
                continue
            if other != nuclide:
                raise InputError(f"{w} (RadionuclideCodeSequence (0054,0300) says {other}): expected {nuclide} as in "
                                 f"the study file's study.nuclide")
        info["nuclide_source"] = "study.nuclide"
    if spec.activity_mbq is not None:
        activity_bq = spec.activity_mbq * 1e6
        info["activity_source"] = "administration.activity_mbq"
    else:
        values = set(found["activity"].values())
        if not values:
            raise InputError(f"study '{spec.path}' key administration.activity_mbq (missing, and no SPECT has "
                             "RadionuclideTotalDose (0018,1074)): expected the administered activity in MBq")
        if max(values) > min(values) * (1 + 1e-6):
            raise InputError(f"study '{spec.path}' (RadionuclideTotalDose (0018,1074) differs between SPECTs: "
                             f"{ {w: v / 1e6 for w, v in found['activity'].items()} } MBq): expected one; give "
                             "administration.activity_mbq")
        activity_bq = float(values.pop())
        info["activity_source"] = "RadionuclideTotalDose (0018,1074)"
    if spec.administration_time is not None:
        adm_time = spec.administration_time
        info["time_source"] = "administration.time"
    else:
        values = set(found["time"].values())
        if not values:
            extra = (f" ({', '.join(time_only)} give only RadiopharmaceuticalStartTime (0018,1072), without a date)"
                     if time_only else "")
            raise InputError(f"study '{spec.path}' key administration.time (missing, and no SPECT has "
                             f"RadiopharmaceuticalStartDateTime (0018,1078){extra}): expected the administration's "
                             "local date and time, e.g. 2026-03-02T09:00:00")
        if len(values) > 1:
            raise InputError(f"study '{spec.path}' (RadiopharmaceuticalStartDateTime (0018,1078) differs between "
                             f"SPECTs: { {w: v.isoformat() for w, v in found['time'].items()} }): expected one; give "
                             "administration.time")
        adm_time = values.pop()
        info["time_source"] = "RadiopharmaceuticalStartDateTime (0018,1078)"
    info["dicom_activity_bq"] = {w: v for w, v in found["activity"].items()}
    return nuclide, activity_bq, adm_time, info


def _kinetic_labels(masks: dict[str, np.ndarray], body: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Each voxel's kinetic region for the voxel TIA (quant/voxel_tia.py): the smallest region
    that contains it, else the body outside the regions, else outside the body; the same
    disjoint parts as the recovery correction's (rptdose.quant.recovery.partition)."""
    from rptdose.quant.recovery import OUTSIDE_BODY, REST_OF_BODY, partition

    if not masks:
        return np.where(body, 0, 1).astype(np.int32), [REST_OF_BODY, OUTSIDE_BODY]
    return partition(masks, body)


def _versions() -> dict[str, str]:
    from rptdose._provenance import package_versions

    return package_versions()


def _region_teff(teff_h: Any, region: str, spec: StudySpec) -> float:
    if isinstance(teff_h, dict):
        if region in teff_h:
            return teff_h[region]
        if "default" in teff_h:
            return teff_h["default"]
        raise InputError(f"study '{spec.path}' key tia.effective_half_life_h (no entry for region {region!r} and no "
                         "'default'): expected a value per region or a default")
    return float(teff_h)


def _voxel_teff(teff_h: Any, masks: dict, shape: tuple, spec: StudySpec) -> np.ndarray:
    if not isinstance(teff_h, dict):
        return np.full(shape, float(teff_h) * HOUR)
    for key in teff_h:
        if key != "default" and key not in masks:
            raise InputError(f"study '{spec.path}' key tia.effective_half_life_h.{key} (no region of that name): "
                             f"expected 'default' or one of the regions {sorted(masks)}")
    out = np.full(shape, teff_h["default"] * HOUR)
    for name, m in masks.items():  # later regions win where they overlap
        if name in teff_h:
            out[m] = teff_h[name] * HOUR
    return out


def _masks(spec: StudySpec, ref_ct: Any, grid: Any, ref_ct_id: dict) -> dict[str, np.ndarray]:
    from rptdose.io.segmentation import read_label_map, read_rtstruct, read_seg, resample_mask

    kind, path, names = spec.segmentation["kind"], spec.segmentation["path"], spec.segmentation["names"]
    if kind is None:
        return {}
    for_uids = ref_ct_id["FrameOfReferenceUID"]
    ref_for = next(iter(for_uids)) if len(for_uids) == 1 else None
    if kind == "rtstruct":
        on_ct = read_rtstruct(path, ref_ct, names, frame_of_reference_uid=ref_for)
        masks = {k: resample_mask(v, ref_ct, grid) for k, v in on_ct.items()}
    elif kind == "seg":
        masks = read_seg(path, grid, names, frame_of_reference_uid=ref_for)
    else:
        masks = read_label_map(path, grid, names)
    out = {}
    for name, m in masks.items():
        if name == FOV_REGION:
            raise InputError(f"segmentation '{path}' (a region named {FOV_REGION!r}): expected another name; "
                             f"{FOV_REGION!r} is the whole dose grid in the region table")
        if not m.any():
            if names is not None:
                raise InputError(f"segmentation '{path}' (region {name!r} covers no voxel of the dose grid): expected "
                                 "a region inside the dose grid (the reference CT / SPECT field of view)")
            warnings.warn(f"segmentation '{path}': region {name!r} covers no voxel of the dose grid; left out",
                          UserWarning, stacklevel=3)
            continue
        out[name] = np.ascontiguousarray(m, dtype=bool)
    return out
