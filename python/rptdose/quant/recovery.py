"""Recovery (partial-volume) correction of region activities: the geometric transfer matrix.

A reconstructed SPECT is the true activity blurred by the system's resolution (the PSF): a
region loses counts to its neighbours (spill-out) and receives theirs (spill-in). A region of
the size of the PSF keeps only a part of its activity (the recovery coefficient, RC).
This module undoes that for regions, per scan, with the geometric transfer matrix (GTM) of
Rousset, Ma & Evans, J Nucl Med 39:904-911 (1998).

Model and derivation
--------------------
The image is I = h * a (h the normalised PSF, a Gaussian of FWHM ``psf_fwhm_mm``; a the true
activity density). The GTM assumes that the field of view is tiled by disjoint *parts* j
(:func:`partition`: the named regions, where they overlap the smallest wins, plus the rest of
the body and the outside of the body, or the rest of the field of view), each with a uniform
true concentration c_j over its volume V_j, a = sum_j c_j chi_j. The measured (observed)
activity in part i is then

    O_i = int chi_i I = sum_j c_j int chi_i (h * chi_j) = sum_j W[i, j] c_j V_j = sum_j W[i, j] A_j

with A_j = c_j V_j the true activity of part j and

    W[i, j] = int chi_i (h * chi_j) / V_j

the fraction of a uniform unit concentration in part j that the blurred image puts in part i
(receiver i, source j; :func:`gtm_matrix` blurs each part's indicator and sums the result over
every part). So O = W A, and the corrected activities are A = W^-1 O (:func:`correct`). (In
Rousset's notation, with mean concentrations t_i = O_i / V_i, t = Omega c with
Omega[i, j] = W[i, j] V_j / V_i: the same system. An index convention source-first writes it
with W transposed.) Because h is symmetric, W[i, j] V_j = W[j, i] V_i (a check of the matrix).
The system is solved exactly when its solution is non-negative; otherwise by non-negative
least squares (Lawson & Hanson, Solving Least Squares Problems, 1974, ch. 23), and the parts
set to 0 are reported (``clipped``).

The total in the field of view is conserved: the columns of W are normalised to 1, i.e. what
the Gaussian would carry beyond the edge of the grid is counted as staying in the field of
view (a reconstruction cannot place counts outside its field of view), so sum_i O_i =
sum_j A_j exactly when no part is clipped. What an organ gains back (its spill-out) is taken
from the background parts that received it, and the activity the blur put into the air
around the patient returns to the body. The background parts are solved like any other part
(no separate rescaling): forcing a total by hand would put the model's error into one region.

Each named region's corrected activity is the sum, over its voxels, of the observed activity
map scaled per part by corrected / observed (:meth:`RecoveryResult.apply`); for a region made
of whole parts (the nesting of a liver and its tumours) that is the sum of its parts'
corrected activities, and the region table and the dose use the same scaled map. The scaling
keeps the shape of the activity inside each part and changes its level; for the voxel TIA
map, scale each scan's activity map before the time integration (or scale the TIA map with
:func:`voxel_scale` from the parts' TIAs). The correction is linear, so it commutes with a
trapezoid integration; it is applied to each scan because the regions' RCs change with the
distribution of activity between neighbours over time.

Uncertainty (relative standard uncertainties, per named region; :func:`recover`):

* ``u_recovery``: from the PSF. The correction is repeated with FWHM x (1 +- p), p =
  ``psf_fwhm_uncertainty_pct`` / 100 (default 10 %, the relative standard uncertainty of the
  FWHM): u = |A(+) - A(-)| / (2 A), the linear propagation of one standard uncertainty.
* ``u_volume``: from the segmentation. Every named region is eroded and dilated by one voxel
  (face neighbours; a one-voxel standard uncertainty of the contour), the correction repeated
  with those masks, and u = |c(dilated) - c(eroded)| / (2 c) for the recovered mean
  concentration c = A / V (what a region's mean absorbed dose follows: its mass changes with
  the contour too). Where the eroded mask is empty, the one-sided |c(dilated) - c| / c.
  ``u_volume_activity`` gives the same for the recovered total activity A. With a contour
  standard uncertainty delta other than one voxel (``contour_uncertainty_mm``), both are
  scaled by delta / voxel (the one-voxel change is a central difference: u is linear in
  delta). One voxel of a 4 mm SPECT grid is a large change for a small region (a 10 ml sphere
  changes volume by -65 % / +120 %): u_volume then reaches tens of %; a contour drawn on the
  CT is usually better known than that.

With several scans, each is given per scan (``*_per_scan``), and the per-region values are
those of the activity summed over the scans (the deviations of the scans are fully correlated,
so this is an activity-weighted mean of the scans' signed deviations, a proxy of the TIA's).

Refusals (:class:`~rptdose.errors.InputError`) and warnings (``RecoveryResult.warnings``)
------------------------------------------------------------------------------------
* ``recovery.psf_fwhm_mm``: finite, > 0 and <= :data:`MAX_FWHM_MM` (a number or (x, y, z)).
* An empty named region is refused; a named region smaller than ``FWHM^3 / 8``
  (:data:`MIN_VOLUME_FRACTION` of the PSF volume Fx Fy Fz; RC about 0.1, the correction a
  factor of 10) is refused unless listed in ``exclude`` (left uncorrected: its voxels belong
  to the part of the region that contains it). Below ``FWHM^3`` it is warned: the correction
  is then large and sensitive to the PSF and the contour.
* A named region holding >= 90 % of ``body`` (the body outline, an EXTERNAL contour) is
  excluded automatically (noted): the background parts are the body.
* A warning where a region's RC < 0.5 at some scan (the corrected activity is more than twice
  the measured one).

Limits of the model (validation/recovery, 12 mm FWHM, 4 mm voxels): each part is assumed
uniform. A cold structure left inside a warm part biases its neighbours (a red marrow inside a
cold cortical spine: -34 % with one uniform rest of body, -1 % with the rest of the body split
by the CT, ``background_classes``). Binary contours on the SPECT grid cannot follow boundaries
that cut voxels: a region much colder or hotter than its surroundings carries the mixed
boundary voxels' activity (lungs +12 %, red marrow -9 % in TIA with the truth made on 2 mm
voxels); fractional (sub-voxel) masks from the CT's resolution would remove this and are not
implemented. A region whose concentration is not uniform (kidney cortex and medulla) keeps a
few % (-3 to -5 %).

The fit of the PSF from a sphere phantom (the NEMA IEC body phantom, NEMA NU 2-2012 /
IEC 61675-1: spheres of 10, 13, 17, 22, 28 and 37 mm inner diameter) is
:func:`fit_psf_from_spheres`; :func:`sphere_rc` gives the analytic RC of a sphere.

Arrays are [z, y, x]; spacings and FWHMs (x, y, z) in mm; volumes in ml; activities in Bq (any
unit works: the correction is linear).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rptdose.errors import InputError

#: Largest accepted FWHM (mm): a SPECT reconstructed at worse than 10 cm resolution is not one.
MAX_FWHM_MM = 100.0
#: Named regions smaller than this fraction of the PSF volume (Fx Fy Fz) are refused.
MIN_VOLUME_FRACTION = 1.0 / 8.0
#: Named regions smaller than this fraction of the PSF volume are warned.
WARN_VOLUME_FRACTION = 1.0
#: Regions whose recovery coefficient is below this are warned.
RC_WARN = 0.5
#: The sphere fit's background datum: background voxels within this distance (mm) of the spheres' box.
BG_MARGIN_MM = 20.0
#: A named region holding at least this share of the body outline is the outline (RTSTRUCT
#: EXTERNAL): modelled by the background parts, not as a part of its own.
BODY_OUTLINE_SHARE = 0.9
#: Default relative standard uncertainty of the FWHM (%).
DEFAULT_FWHM_UNCERTAINTY_PCT = 10.0
#: Background part names.
REST_OF_BODY = "rest of body"
OUTSIDE_BODY = "outside body"
REST_OF_FOV = "rest of field of view"
#: FWHM = SIGMA_TO_FWHM * sigma for a Gaussian.
SIGMA_TO_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))

#: NEMA IEC body phantom spheres (NEMA NU 2-2012 section 7 / IEC 61675-1): inner diameter (mm)
#: and volume (ml) = pi d^3 / 6.
NEMA_IEC_SPHERES: tuple[tuple[float, float], ...] = tuple(
    (d, math.pi * d ** 3 / 6.0 / 1000.0) for d in (10.0, 13.0, 17.0, 22.0, 28.0, 37.0))

_KEY = "recovery.psf_fwhm_mm"
_KEY_U = "recovery.psf_fwhm_uncertainty_pct"


# ---------------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------------
def check_psf_fwhm(value: Any, key: str = _KEY) -> tuple[float, float, float]:
    """The PSF FWHM (mm) as (x, y, z): a number (isotropic) or three numbers, each finite,
    > 0 and <= :data:`MAX_FWHM_MM`; else :class:`InputError` naming ``key``."""
    expected = (f"the FWHM of the reconstructed SPECT's resolution in mm: a number or [x, y, z], each > 0 and "
                f"<= {MAX_FWHM_MM:g} (typically 8-20 mm for Lu-177 SPECT)")
    if isinstance(value, bool) or value is None or isinstance(value, (str, bytes)):
        raise InputError(f"{key} {value!r} (not a number): expected {expected}")
    if isinstance(value, numbers.Real):
        vals = [float(value)] * 3
    elif isinstance(value, (Sequence, np.ndarray)):
        arr = np.asarray(value, dtype=object).reshape(-1)
        if arr.size != 3 or any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in arr):
            raise InputError(f"{key} {_short(value)} (not 3 numbers): expected {expected}")
        vals = [float(v) for v in arr]
    else:
        raise InputError(f"{key} {_short(value)} (of type {type(value).__name__}): expected {expected}")
    for v in vals:
        if not math.isfinite(v):
            raise InputError(f"{key} {_short(value)} (not finite): expected {expected}")
        if v <= 0:
            raise InputError(f"{key} {_short(value)} (not > 0): expected {expected}")
        if v > MAX_FWHM_MM:
            raise InputError(f"{key} {_short(value)} (absurd: above {MAX_FWHM_MM:g} mm): expected {expected}")
    return (vals[0], vals[1], vals[2])


def check_fwhm_uncertainty_pct(value: Any, key: str = _KEY_U) -> float:
    """The relative standard uncertainty of the FWHM in %: finite, >= 0 and < 50."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
            or not 0.0 <= float(value) < 50.0:
        raise InputError(f"{key} {_short(value)} (not a number in [0, 50)): expected the relative standard "
                         "uncertainty of the PSF FWHM in percent, e.g. 10")
    return float(value)


def _short(value: Any) -> str:
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= 60 else text[:57] + "..."


def _spacing(spacing_mm: Any, key: str = "spacing_mm") -> tuple[float, float, float]:
    try:
        arr = np.asarray(spacing_mm, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{key} {_short(spacing_mm)} (not numbers): expected the voxel size (x, y, z) in mm") from None
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    if arr.size != 3 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InputError(f"{key} {_short(spacing_mm)} (not 3 positive numbers): expected the voxel size (x, y, z) "
                         "in mm")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def _mask(name: str, m: Any, shape: tuple | None) -> np.ndarray:
    arr = np.asarray(m)
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isin(arr, (0, 1))):
            raise InputError(f"region '{name}' (mask of dtype {arr.dtype} with values other than 0/1): expected a "
                             "boolean mask [z, y, x]")
        arr = arr.astype(bool)
    if arr.ndim != 3:
        raise InputError(f"region '{name}' (mask of {arr.ndim} dimensions): expected a boolean mask [z, y, x]")
    if shape is not None and arr.shape != tuple(shape):
        raise InputError(f"region '{name}' (mask shape {arr.shape}): expected the image's shape {tuple(shape)} "
                         "[z, y, x]")
    return arr


def _psf_volume_ml(psf: tuple[float, float, float]) -> float:
    return psf[0] * psf[1] * psf[2] / 1000.0


# ---------------------------------------------------------------------------------------------
# blur and partition
# ---------------------------------------------------------------------------------------------
def blur(image: np.ndarray, spacing_mm: Any, psf_fwhm_mm: Any) -> np.ndarray:
    """``image`` [z, y, x] convolved with a normalised Gaussian of ``psf_fwhm_mm`` (a number or
    (x, y, z)); float64.

    SimpleITK's DiscreteGaussian: the discrete analogue of the Gaussian (modified Bessel
    functions: Lindeberg, IEEE Trans PAMI 12:234 (1990)), whose variance is exactly sigma^2 in mm^2 also for sigma below
    a voxel (a sampled Gaussian, or the recursive filter, is off by several % there), kernel
    truncation error 1e-5, zero-flux (replicated) boundary.
    """
    import SimpleITK as sitk

    sp = _spacing(spacing_mm)
    psf = check_psf_fwhm(psf_fwhm_mm)
    arr = np.asarray(image, dtype=np.float64)
    sig = [f / SIGMA_TO_FWHM for f in psf]
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(sp)
    f = sitk.DiscreteGaussianImageFilter()
    f.SetVariance([s * s for s in sig])
    f.SetMaximumError(1e-5)
    f.SetUseImageSpacing(True)
    f.SetMaximumKernelWidth(int(2 * max(math.ceil(6.0 * s / d) for s, d in zip(sig, sp)) + 3))
    return sitk.GetArrayFromImage(f.Execute(img))


def _reach_voxels(spacing: tuple, psf: tuple) -> tuple[int, int, int]:
    """Half-width of the blur kernel in voxels, (z, y, x)."""
    r = [math.ceil(5.0 * (f / SIGMA_TO_FWHM) / s) + 1 for f, s in zip(psf, spacing)]
    return (r[2], r[1], r[0])


def _bbox(mask: np.ndarray, margin: tuple[int, int, int]) -> tuple[slice, ...]:
    out = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        idx = np.flatnonzero(mask.any(axis=other))
        out.append(slice(max(0, int(idx[0]) - margin[ax]), min(mask.shape[ax], int(idx[-1]) + 1 + margin[ax])))
    return tuple(out)


def partition(masks: Mapping[str, Any], body: Any = None,
              background_classes: Mapping[str, Any] | None = None) -> tuple[np.ndarray, list[str]]:
    """Disjoint GTM parts from the named (possibly overlapping) regions.

    Each voxel belongs to the smallest named region that contains it (a tumour inside the liver
    is its own part, the liver's part is the rest of the liver; ties by the order given),
    else to ``REST_OF_BODY`` (inside ``body``), else to ``OUTSIDE_BODY`` (or, without a body,
    ``REST_OF_FOV``), so that spill-in from the background is modelled.

    ``background_classes`` ({class: bool mask}, e.g. from :func:`ct_background_classes`) split
    the background: a background voxel inside class k (the first that contains it) is part
    ``"rest of body (k)"`` (or ``"rest of field of view (k)"``). The GTM assumes each part
    uniform; a cold structure (cortical bone, lung) left in a warm background makes it
    over-estimate the spill-in to its neighbours (a low-uptake marrow in a cold spine, in the
    validation, is corrected to half its activity without the split).

    Returns ``(labels, names)``: labels [z, y, x] int32 with values 0 .. len(names) - 1 and
    the part names; a region covered entirely by smaller ones, and an empty background, have
    no part. An empty named region is refused.
    """
    if not isinstance(masks, Mapping) or not masks:
        raise InputError("masks (no region): expected a mapping {region name: boolean mask [z, y, x]} with at least "
                         "one region")
    shape = None
    checked: dict[str, np.ndarray] = {}
    for name, m in masks.items():
        arr = _mask(str(name), m, shape)
        shape = arr.shape
        if not arr.any():
            raise InputError(f"region '{name}' (empty: no voxel): expected a region with at least one voxel for the "
                             "recovery correction")
        checked[str(name)] = arr
    bodyarr = None if body is None else _mask("body", body, shape)
    classes = {str(k): _mask(f"background class {k}", v, shape) for k, v in (background_classes or {}).items()}
    names = list(checked)
    order = sorted(range(len(names)), key=lambda i: int(checked[names[i]].sum()))   # stable: ties by order
    bg_base = [REST_OF_BODY, OUTSIDE_BODY] if bodyarr is not None else [REST_OF_FOV]
    all_names = names + bg_base + [f"{bg_base[0]} ({k})" for k in classes]
    rest, outside = len(names), len(names) + 1
    labels = np.full(shape, outside if bodyarr is not None else rest, dtype=np.int32)
    if bodyarr is not None:
        labels[bodyarr] = rest
    first_class = len(names) + len(bg_base)
    for c, m in reversed(list(enumerate(classes.values()))):   # the first class wins
        labels[m & (labels == rest)] = first_class + c
    for i in reversed(order):   # smallest last: it wins
        labels[checked[names[i]]] = i
    counts = np.bincount(labels.ravel(), minlength=len(all_names))
    keep = np.flatnonzero(counts > 0)
    remap = np.full(len(all_names), -1, dtype=np.int32)
    remap[keep] = np.arange(keep.size, dtype=np.int32)
    out_names = []
    for k in keep:
        n = all_names[k]
        if k >= len(names) and n in names:
            n = f"{n} (background)"
        out_names.append(n)
    return remap[labels], out_names


def ct_background_classes(hu: Any, body: Any = None, *, lung_below_hu: float = -400.0,
                          bone_above_hu: float = 300.0) -> dict[str, np.ndarray]:
    """Background classes from a CT on the activity grid (HU [z, y, x]): ``lung`` (< -400 HU)
    and ``bone`` (> 300 HU: cortical bone; trabecular bone with marrow is mostly below),
    inside ``body`` when given. For :func:`partition` / :func:`recover`
    (``background_classes``): the named regions still win over them."""
    h = np.asarray(hu, dtype=np.float64)
    if h.ndim != 3 or not np.all(np.isfinite(h)):
        raise InputError(f"hu (array of {h.ndim} dimensions or non-finite values): expected a CT in HU [z, y, x] on "
                         "the activity grid")
    inside = np.ones(h.shape, dtype=bool) if body is None else _mask("body", body, h.shape)
    return {"lung": inside & (h < lung_below_hu), "bone": inside & (h > bone_above_hu)}


def gtm_matrix(labels: np.ndarray, n: int, spacing_mm: Any, psf_fwhm_mm: Any, *,
               normalise: bool = True) -> np.ndarray:
    """The geometric transfer matrix W (n, n): W[i, j] = fraction of a uniform unit concentration
    in part j (``labels == j``) that the image blurred by the PSF puts in part i.

    Each part's indicator is blurred (:func:`blur`, on its bounding box plus the kernel's reach)
    and summed per part. ``normalise``: columns scaled to sum to 1 (what the blur carries past
    the grid's edge counted as staying in the field of view; the module docstring).
    """
    sp = _spacing(spacing_mm)
    psf = check_psf_fwhm(psf_fwhm_mm)
    labels = np.asarray(labels)
    if labels.ndim != 3 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels (array of {labels.ndim} dimensions, dtype {labels.dtype}): expected an integer "
                         "label map [z, y, x]")
    n = int(n)
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        raise InputError(f"labels (values {labels.min()}..{labels.max()}): expected values 0..{n - 1}")
    reach = _reach_voxels(sp, psf)
    W = np.zeros((n, n))
    for j in range(n):
        ind = labels == j
        if not ind.any():
            raise InputError(f"labels (part {j} has no voxel): expected every part 0..{n - 1} present")
        box = _bbox(ind, reach)
        b = blur(ind[box].astype(np.float64), sp, psf)
        W[:, j] = np.bincount(labels[box].ravel(), weights=b.ravel(), minlength=n)[:n] / float(ind.sum())
    if normalise:
        W /= W.sum(axis=0, keepdims=True)
    return W


# ---------------------------------------------------------------------------------------------
# solving
# ---------------------------------------------------------------------------------------------
def _nnls(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """min ||A x - b|| subject to x >= 0 (Lawson & Hanson's active-set algorithm)."""
    m, n = A.shape
    scale = float(np.abs(b).max()) or 1.0
    bs = b / scale
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    tol = 10.0 * np.finfo(float).eps * max(m, n) * max(1.0, float(np.abs(A).sum(axis=0).max()))
    w = A.T @ (bs - A @ x)
    for _ in range(3 * n + 10):
        if passive.all() or not np.any(w[~passive] > tol):
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        for _ in range(3 * n + 10):
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(A[:, passive], bs, rcond=None)[0]
            if np.all(z[passive] > tol):
                x = z
                break
            neg = passive & (z <= tol)
            alpha = float(np.min(x[neg] / (x[neg] - z[neg]))) if np.any(x[neg] - z[neg] > 0) else 0.0
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
        w = A.T @ (bs - A @ x)
    return np.maximum(x, 0.0) * scale


@dataclass(frozen=True)
class RecoveryResult:
    """A recovery correction: per region (columns) and scan (rows, when several).

    ``observed``, ``corrected`` and ``rc`` have the shape of the observed input: (n,) for one
    scan, (t, n) for several. ``rc`` = observed / corrected (NaN where corrected is 0).
    From :func:`recover`, the regions are the named regions, ``parts`` is the part-level
    result (from :func:`correct`), ``labels`` the part map, ``W`` the GTM and the uncertainties
    are filled; from :func:`correct` the regions are the parts.
    """

    names: tuple[str, ...]
    observed: np.ndarray
    corrected: np.ndarray
    rc: np.ndarray
    volumes_ml: np.ndarray
    psf_fwhm_mm: tuple[float, float, float] | None
    method: str
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    clipped: np.ndarray | None = None          # like corrected, bool: set to 0 by the non-negativity
    condition: float = float("nan")            # 2-norm condition number of W
    u_recovery: np.ndarray | None = None       # (n,) relative standard uncertainty from the PSF
    u_volume: np.ndarray | None = None         # (n,) of the recovered mean concentration, from the contours
    u_volume_activity: np.ndarray | None = None  # (n,) of the recovered total activity, from the contours
    u_recovery_per_scan: np.ndarray | None = None  # like corrected
    u_volume_per_scan: np.ndarray | None = None
    psf_fwhm_uncertainty_pct: float | None = None
    parts: RecoveryResult | None = None
    labels: np.ndarray | None = field(default=None, repr=False)
    W: np.ndarray | None = field(default=None, repr=False)

    @property
    def concentration_bq_ml(self) -> np.ndarray:
        """Corrected mean concentration (activity unit per ml) = corrected / volume."""
        return self.corrected / self.volumes_ml

    def table(self) -> list[dict]:
        """One row per region (several scans: the sum over the scans): name, volume_ml,
        observed, corrected, rc, u_recovery, u_volume, u_volume_activity."""
        obs = np.atleast_2d(self.observed).sum(axis=0)
        cor = np.atleast_2d(self.corrected).sum(axis=0)
        rows = []
        for i, n in enumerate(self.names):
            rows.append({"name": n, "volume_ml": float(self.volumes_ml[i]), "observed": float(obs[i]),
                         "corrected": float(cor[i]), "rc": float(obs[i] / cor[i]) if cor[i] > 0 else float("nan"),
                         "u_recovery": None if self.u_recovery is None else float(self.u_recovery[i]),
                         "u_volume": None if self.u_volume is None else float(self.u_volume[i]),
                         "u_volume_activity": None if self.u_volume_activity is None
                         else float(self.u_volume_activity[i])})
        return rows

    def _part_level(self) -> RecoveryResult:
        if self.parts is None or self.labels is None:
            raise InputError("RecoveryResult (from correct(), without a part map): expected the result of recover() "
                             "for voxel maps")
        return self.parts

    def part_factors(self, k: int | None = None) -> np.ndarray:
        """Per part, corrected / observed at scan ``k`` (None: the only scan); 0 where the part's
        observed activity is <= 0."""
        return _part_factors(self._part_level(), k)

    def scale_map(self, k: int | None = None) -> np.ndarray:
        """The per-voxel factor [z, y, x] (corrected / observed of the voxel's part) at scan ``k``.
        A part observed at <= 0 but corrected to > 0 gets 0 here; :meth:`apply` adds its activity
        uniformly."""
        return self.part_factors(k)[self.labels]

    def apply(self, activity: np.ndarray, k: int | None = None) -> np.ndarray:
        """Scan ``k``'s activity map [z, y, x] (the one the correction was computed from) scaled
        inside each part; parts with no observed activity receive their corrected activity
        uniformly. Sums to the corrected totals per part."""
        a = np.asarray(activity, dtype=np.float64)
        if self.labels is not None and a.shape != self.labels.shape:
            raise InputError(f"activity (shape {a.shape}): expected the shape of the part map {self.labels.shape}")
        return _apply(self._part_level(), self.labels, a, k)


def _part_factors(parts: RecoveryResult, k: int | None) -> np.ndarray:
    obs, cor = _row(parts.observed, k), _row(parts.corrected, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(obs > 0, cor / np.where(obs > 0, obs, 1.0), 0.0)


def _apply(parts: RecoveryResult, labels: np.ndarray, a: np.ndarray, k: int | None) -> np.ndarray:
    out = a * _part_factors(parts, k)[labels]
    obs, cor = _row(parts.observed, k), _row(parts.corrected, k)
    empty = np.flatnonzero((obs <= 0) & (cor > 0))
    if empty.size:
        per_voxel = np.zeros(len(parts.names))
        per_voxel[empty] = cor[empty] / np.bincount(labels.ravel(), minlength=len(parts.names))[empty]
        out += per_voxel[labels]
    return out


def _row(a: np.ndarray, k: int | None) -> np.ndarray:
    if a.ndim == 1:
        if k not in (None, 0):
            raise InputError(f"k {k!r} (one scan): expected None or 0")
        return a
    if k is None:
        if a.shape[0] != 1:
            raise InputError(f"k None ({a.shape[0]} scans): expected the scan's index")
        k = 0
    return a[int(k)]


def correct(observed: Any, W: np.ndarray, volumes_ml: Any = None, *, names: Sequence[str] | None = None,
            psf_fwhm_mm: Any = None) -> RecoveryResult:
    """Corrected activities A from the observed ones O (Bq per part; (n,) or (t, n) for t scans):
    O = W A solved exactly when the solution is >= 0, else by non-negative least squares (the
    parts at 0 reported in ``clipped`` and in the warnings or, for background parts, the notes).

    ``volumes_ml`` (n,): for the concentrations and the small-part warnings (optional).
    RC = observed / corrected.
    """
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or not np.all(np.isfinite(W)):
        raise InputError(f"W (shape {W.shape}): expected a finite square transfer matrix")
    n = W.shape[0]
    obs = np.asarray(observed, dtype=np.float64)
    if obs.ndim not in (1, 2) or obs.shape[-1] != n:
        raise InputError(f"observed (shape {obs.shape}): expected ({n},) or (scans, {n}) activities")
    if not np.all(np.isfinite(obs)):
        raise InputError("observed (NaN or infinite values): expected finite activities")
    names = tuple(names) if names is not None else tuple(f"part {j}" for j in range(n))
    if len(names) != n:
        raise InputError(f"names ({len(names)} names): expected {n}")
    vol = np.full(n, np.nan) if volumes_ml is None else np.asarray(volumes_ml, dtype=np.float64).reshape(-1)
    if vol.size != n:
        raise InputError(f"volumes_ml ({vol.size} values): expected {n}")
    psf = None if psf_fwhm_mm is None else check_psf_fwhm(psf_fwhm_mm)
    rows = np.atleast_2d(obs)
    cor = np.zeros_like(rows)
    clipped = np.zeros(rows.shape, dtype=bool)
    try:
        inv_ok = True
        exact = np.linalg.solve(W, rows.T).T
    except np.linalg.LinAlgError:
        inv_ok = False
        exact = np.full_like(rows, -1.0)
    for k in range(rows.shape[0]):
        tol = 1e-12 * max(1.0, float(np.abs(rows[k]).sum()))
        if inv_ok and np.all(exact[k] >= -tol):
            cor[k] = np.maximum(exact[k], 0.0)
        else:
            cor[k] = _nnls(W, rows[k])
            clipped[k] = cor[k] <= 0
    warn, notes = [], []
    background = (REST_OF_BODY, OUTSIDE_BODY, REST_OF_FOV)
    for j in np.flatnonzero(clipped.any(axis=0)):
        scans = ", ".join(str(k + 1) for k in np.flatnonzero(clipped[:, j]))
        text = (f"part '{names[j]}': activity set to 0 by the non-negativity constraint at scan(s) {scans} (its "
                "unconstrained solution was negative: noise, misregistration, or a PSF wider than the image's)")
        (notes if names[j].startswith(background) or names[j].endswith("(background)") else warn).append(text)
    cond = float(np.linalg.cond(W))
    if cond > 1e3:
        warn.append(f"the transfer matrix is ill-conditioned (condition number {cond:.3g}): small regions at this "
                    "PSF amplify noise")
    with np.errstate(divide="ignore", invalid="ignore"):
        rc = np.where(cor > 0, rows / np.where(cor > 0, cor, 1.0), np.nan)
    shape = obs.shape
    return RecoveryResult(names=names, observed=obs.copy(), corrected=cor.reshape(shape), rc=rc.reshape(shape),
                          volumes_ml=vol, psf_fwhm_mm=psf, method="GTM (Rousset et al. 1998), non-negative solution",
                          warnings=tuple(warn), notes=tuple(notes), clipped=clipped.reshape(shape), condition=cond,
                          W=W)


def voxel_scale(labels: np.ndarray, observed_parts: Any, corrected_parts: Any) -> np.ndarray:
    """The per-voxel factor corrected / observed of each voxel's part (0 where observed <= 0):
    scales a voxel map (e.g. a TIA map, with the parts' observed and corrected TIAs) inside
    each part."""
    obs = np.asarray(observed_parts, dtype=np.float64).reshape(-1)
    cor = np.asarray(corrected_parts, dtype=np.float64).reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(obs > 0, cor / np.where(obs > 0, obs, 1.0), 0.0)
    return f[np.asarray(labels)]


# ---------------------------------------------------------------------------------------------
# the whole correction on maps, with its uncertainty
# ---------------------------------------------------------------------------------------------
def _shift_or(m: np.ndarray, erode: bool) -> np.ndarray:
    """One-voxel erosion (erode) or dilation with the 6 face neighbours; the grid's outside
    counts as outside the region."""
    p = np.pad(m, 1, constant_values=False)
    c = p[1:-1, 1:-1, 1:-1]
    nb = [p[:-2, 1:-1, 1:-1], p[2:, 1:-1, 1:-1], p[1:-1, :-2, 1:-1], p[1:-1, 2:, 1:-1], p[1:-1, 1:-1, :-2],
          p[1:-1, 1:-1, 2:]]
    out = c.copy()
    for s in nb:
        out = (out & s) if erode else (out | s)
    return out


def _solve(maps: np.ndarray, corr_masks: dict[str, np.ndarray], body: Any, sp, psf,
           voxel_ml: float) -> tuple[RecoveryResult, np.ndarray]:
    """Partition, GTM and the correction of every scan: (part-level result (t, p), labels).
    ``body``: (body mask or None, background classes or None)."""
    labels, part_names = partition(corr_masks, body[0], body[1])
    p = len(part_names)
    W = gtm_matrix(labels, p, sp, psf)
    flat = labels.ravel()
    observed = np.stack([np.bincount(flat, weights=m.ravel(), minlength=p) for m in maps])
    vols = np.bincount(flat, minlength=p) * voxel_ml
    return correct(observed, W, vols, names=part_names, psf_fwhm_mm=psf), labels


def _totals(parts: RecoveryResult, labels: np.ndarray, maps: np.ndarray,
            masks: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(observed, corrected) activity (t, n) in each mask, the corrected from the scaled maps."""
    obs = np.zeros((maps.shape[0], len(masks)))
    cor = np.zeros_like(obs)
    for k in range(maps.shape[0]):
        cmap = _apply(parts, labels, maps[k], k)
        for i, m in enumerate(masks.values()):
            obs[k, i] = float(maps[k][m].sum())
            cor[k, i] = float(cmap[m].sum())
    return obs, cor


def recover(activity: Any, masks: Mapping[str, Any], spacing_mm: Any, psf_fwhm_mm: Any, *, body: Any = None,
            psf_fwhm_uncertainty_pct: Any = DEFAULT_FWHM_UNCERTAINTY_PCT, contour_uncertainty_mm: Any = None,
            background_classes: Mapping[str, Any] | None = None, exclude: Sequence[str] = (),
            uncertainty: bool = True, psf_key: str = _KEY) -> RecoveryResult:
    """Recovery correction of the named regions on an activity map [z, y, x] (one scan) or a
    stack [t, z, y, x] (the scans on one grid), in Bq per voxel.

    ``masks``: {name: bool [z, y, x]} (may overlap); ``body``: the body outline (bool), or None
    (then one background part, the rest of the field of view). ``background_classes``: split
    the background (:func:`partition`, :func:`ct_background_classes`). ``exclude``: named regions left
    out of the partition (reported, not corrected as parts of their own; required for regions
    below the size limit). ``contour_uncertainty_mm``: the standard uncertainty of the contours
    (None: one voxel); u_volume is scaled from the one-voxel erosion/dilation by it / the mean
    voxel size. ``uncertainty``: compute u_recovery and u_volume (4 more GTMs).
    ``psf_key``: the name used for the PSF in error messages.

    Returns a :class:`RecoveryResult` over the named regions (observed and corrected activity in
    each mask, RC, volumes, warnings, uncertainties), with the part-level result, the part
    map and W for scaling voxel maps (:meth:`RecoveryResult.apply`, ``scale_map``).
    """
    psf = check_psf_fwhm(psf_fwhm_mm, psf_key)
    p_unc = check_fwhm_uncertainty_pct(psf_fwhm_uncertainty_pct)
    sp = _spacing(spacing_mm)
    voxel_mm = sum(sp) / 3.0
    if contour_uncertainty_mm is None:
        contour_scale = 1.0
    else:
        cu = contour_uncertainty_mm
        if isinstance(cu, bool) or not isinstance(cu, numbers.Real) or not math.isfinite(float(cu)) or \
                not 0.0 <= float(cu) <= 5.0 * voxel_mm:
            raise InputError(f"recovery.contour_uncertainty_mm {_short(cu)} (not a number in [0, 5 voxels]): expected "
                             f"the standard uncertainty of the contours in mm (the voxels are {voxel_mm:.3g} mm)")
        contour_scale = float(cu) / voxel_mm
    a = np.asarray(activity)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a) or a.ndim not in (3, 4):
        raise InputError(f"activity (array of {a.ndim} dimensions, dtype {a.dtype}): expected activities in Bq per "
                         "voxel [z, y, x], or [scan, z, y, x]")
    one_scan = a.ndim == 3
    maps = a[None].astype(np.float64) if one_scan else a.astype(np.float64)
    if not np.all(np.isfinite(maps)):
        raise InputError("activity (NaN or infinite values): expected finite activities in Bq per voxel")
    if not isinstance(masks, Mapping) or not masks:
        raise InputError("masks (no region): expected {region name: boolean mask [z, y, x]} with at least one region")
    shape = maps.shape[1:]
    named = {str(k): _mask(str(k), v, shape) for k, v in masks.items()}
    bodyarr = (None if body is None else _mask("body", body, shape), background_classes)
    unknown = [e for e in exclude if e not in named]
    if unknown:
        raise InputError(f"recovery.exclude {unknown!r} (not a region): expected names among {sorted(named)}")
    exclude = list(exclude)
    notes_pre: list[str] = []
    if bodyarr[0] is not None:
        n_body = int(bodyarr[0].sum())
        for name, m in named.items():
            share = float(np.count_nonzero(m & bodyarr[0])) / n_body if n_body else 0.0
            if name not in exclude and share >= BODY_OUTLINE_SHARE:
                exclude.append(name)
                notes_pre.append(f"region '{name}' holds {100 * share:.0f} % of the body outline: it is modelled by "
                                 "the background parts (rest of body, outside body), not as a part of its own")
    voxel_ml = sp[0] * sp[1] * sp[2] / 1000.0
    psf_ml = _psf_volume_ml(psf)
    vols = np.array([m.sum() * voxel_ml for m in named.values()])
    warn: list[str] = []
    for (name, m), v in zip(named.items(), vols):
        if v <= 0:
            raise InputError(f"region '{name}' (empty: no voxel): expected a region with at least one voxel for the "
                             "recovery correction")
        if name in exclude:
            continue
        if v < MIN_VOLUME_FRACTION * psf_ml:
            raise InputError(f"region '{name}' ({v:.3g} ml, tiny for {psf_key} = {_fmt_psf(psf)} mm): expected a "
                             f"region of at least FWHM^3/8 = {MIN_VOLUME_FRACTION * psf_ml:.3g} ml for the recovery "
                             "correction (its RC would be about 0.1); list it in recovery.exclude to leave it "
                             "uncorrected, or leave it out of the segmentation")
        if v < WARN_VOLUME_FRACTION * psf_ml:
            warn.append(f"region '{name}' ({v:.3g} ml) is smaller than the PSF volume FWHM^3 = {psf_ml:.3g} ml: its "
                        "correction is large and sensitive to the PSF and the contour")
    corr_masks = {k: v for k, v in named.items() if k not in exclude}
    if not corr_masks:
        raise InputError("recovery.exclude (every region excluded): expected at least one region to correct")
    parts, labels = _solve(maps, corr_masks, bodyarr, sp, psf, voxel_ml)
    # the named regions (the excluded ones included) from the scaled maps
    names = list(named)
    observed, corrected = _totals(parts, labels, maps, named)
    with np.errstate(divide="ignore", invalid="ignore"):
        rc = np.where(corrected > 0, observed / np.where(corrected > 0, corrected, 1.0), np.nan)
    for i, name in enumerate(names):
        low = np.flatnonzero(rc[:, i] < RC_WARN)
        if low.size:
            kk = int(low[np.argmin(rc[low, i])])
            warn.append(f"region '{name}' ({vols[i]:.3g} ml): recovery coefficient {rc[kk, i]:.2f} < {RC_WARN:g} at "
                        f"scan {kk + 1} (corrected activity {1.0 / rc[kk, i]:.2f} x the measured one)")
    warn += list(parts.warnings)
    notes = notes_pre + list(parts.notes)
    clipped_named = np.zeros(observed.shape, dtype=bool)
    for i, m in enumerate(named.values()):
        in_parts = np.unique(labels[m])
        clipped_named[:, i] = np.asarray(parts.clipped)[:, in_parts].any(axis=1)
    u_rec = u_vol = u_vol_a = u_rec_t = u_vol_t = None
    if uncertainty:
        u_rec_t, u_rec = _u_psf(maps, corr_masks, named, bodyarr, sp, psf, p_unc, voxel_ml, corrected)
        u_vol_t, u_vol, u_vol_a = (contour_scale * u for u in _u_volume(maps, corr_masks, named, bodyarr, sp, psf,
                                                                           voxel_ml, corrected, vols, notes))
    sq = (lambda x: None if x is None else (x[0] if one_scan else x))
    return RecoveryResult(names=tuple(names), observed=sq(observed), corrected=sq(corrected), rc=sq(rc),
                          volumes_ml=vols, psf_fwhm_mm=psf, method=parts.method, warnings=tuple(warn),
                          notes=tuple(notes), clipped=sq(clipped_named), condition=parts.condition,
                          u_recovery=u_rec, u_volume=u_vol, u_volume_activity=u_vol_a,
                          u_recovery_per_scan=sq(u_rec_t), u_volume_per_scan=sq(u_vol_t),
                          psf_fwhm_uncertainty_pct=p_unc, parts=_squeeze_parts(parts, one_scan), labels=labels,
                          W=parts.W)


def _squeeze_parts(parts: RecoveryResult, one_scan: bool) -> RecoveryResult:
    if not one_scan:
        return parts
    return RecoveryResult(**{**parts.__dict__, "observed": parts.observed[0], "corrected": parts.corrected[0],
                             "rc": parts.rc[0], "clipped": parts.clipped[0]})


def _fmt_psf(psf: tuple) -> str:
    return f"{psf[0]:g}" if psf[0] == psf[1] == psf[2] else f"({psf[0]:g}, {psf[1]:g}, {psf[2]:g})"


def _named_totals(maps, corr_masks, named_eval, body, sp, psf, voxel_ml) -> np.ndarray:
    """Corrected activity (t, n) in the masks ``named_eval`` after correcting with the parts of
    ``corr_masks``."""
    parts, labels = _solve(maps, corr_masks, body, sp, psf, voxel_ml)
    return _totals(parts, labels, maps, named_eval)[1]


def _half_spread(plus: np.ndarray, minus: np.ndarray, nominal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        per_scan = np.where(nominal > 0, np.abs(plus - minus) / (2.0 * nominal), np.nan)
        tot = nominal.sum(axis=0)
        total = np.where(tot > 0, np.abs(plus.sum(axis=0) - minus.sum(axis=0)) / (2.0 * tot), np.nan)
    return per_scan, total


def _u_psf(maps, corr_masks, named, body, sp, psf, p_unc, voxel_ml, nominal):
    if p_unc == 0:
        z = np.zeros_like(nominal)
        return z, z[0].copy()
    hi = tuple(f * (1.0 + p_unc / 100.0) for f in psf)
    lo = tuple(f * (1.0 - p_unc / 100.0) for f in psf)
    a_hi = _named_totals(maps, corr_masks, named, body, sp, hi, voxel_ml)
    a_lo = _named_totals(maps, corr_masks, named, body, sp, lo, voxel_ml)
    return _half_spread(a_hi, a_lo, nominal)


def _u_volume(maps, corr_masks, named, body, sp, psf, voxel_ml, nominal, vols, notes):
    variants = {}
    one_sided = []
    for kind in ("dilate", "erode"):
        nm = {}
        for name, m in named.items():
            v = _shift_or(m, erode=(kind == "erode"))
            if not v.any():
                one_sided.append(name)
                v = m
            nm[name] = v
        cm = {k: nm[k] for k in corr_masks}
        a = _named_totals(maps, cm, nm, body, sp, psf, voxel_ml)
        vol = np.array([m.sum() * voxel_ml for m in nm.values()])
        variants[kind] = (a, vol)
    if one_sided:
        notes.append(f"u_volume of {', '.join(sorted(set(one_sided)))}: one-sided (the region vanishes when eroded by "
                     "one voxel)")
    (a_d, v_d), (a_e, v_e) = variants["dilate"], variants["erode"]
    c_nom, c_d, c_e = nominal / vols, a_d / v_d, a_e / v_e
    # one-sided where the erosion left the mask unchanged (an eroded region that vanished):
    # |c_d - c| / c, written as a half spread of (c_d, 2c - c_d)
    same = np.array([name in one_sided for name in named])
    c_e = np.where(same[None, :], 2.0 * c_nom - c_d, c_e)
    a_e = np.where(same[None, :], 2.0 * nominal - a_d, a_e)
    per_scan, u_conc = _half_spread(c_d, c_e, c_nom)
    _, u_act = _half_spread(a_d, a_e, nominal)
    return per_scan, u_conc, u_act


# ---------------------------------------------------------------------------------------------
# the PSF from a sphere phantom
# ---------------------------------------------------------------------------------------------
def sphere_rc(volume_ml: Any, psf_fwhm_mm: float) -> np.ndarray:
    """The recovery coefficient of a sphere of uniform activity in a cold surrounding, blurred by
    an isotropic 3-D Gaussian of ``psf_fwhm_mm``: the mean over the sphere of the blurred
    sphere, (1/V) int g(d) O(d) 4 pi d^2 dd with O(d) = pi (4R + d)(2R - d)^2 / 12 the overlap of
    two spheres of radius R at distance d and g the Gaussian's density (continuous: no voxels)."""
    f = check_psf_fwhm(psf_fwhm_mm)[0]
    v = np.asarray(volume_ml, dtype=np.float64)
    s = f / SIGMA_TO_FWHM
    out = np.empty(v.shape)
    for idx, vol in np.ndenumerate(v):
        r = (3.0 * vol * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
        d = np.linspace(0.0, 2.0 * r, 4001)
        g = (2.0 * math.pi * s * s) ** -1.5 * np.exp(-0.5 * (d / s) ** 2)
        ov = math.pi * (4.0 * r + d) * (2.0 * r - d) ** 2 / 12.0
        y = g * ov * 4.0 * math.pi * d * d
        out[idx] = float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(d))) / (vol * 1000.0)
    return out if out.ndim else float(out)


def sphere_fraction(shape: tuple[int, int, int], spacing_mm: Any, centre_mm: Any, volume_ml: float,
                    origin_mm: Any = (0.0, 0.0, 0.0), supersample: int = 5) -> np.ndarray:
    """The fraction [z, y, x] of each voxel inside a sphere of ``volume_ml`` centred at
    ``centre_mm`` (x, y, z; voxel i's centre at origin + i * spacing), by ``supersample``^3
    sub-voxel points."""
    sp = _spacing(spacing_mm)
    o = np.asarray(origin_mm, dtype=np.float64).reshape(3)
    c = np.asarray(centre_mm, dtype=np.float64).reshape(3)
    r = (3.0 * float(volume_ml) * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    out = np.zeros(shape)
    lo = [max(0, math.floor((c[a] - r - o[a]) / sp[a]) - 1) for a in range(3)]
    hi = [min(shape[2 - a], math.ceil((c[a] + r - o[a]) / sp[a]) + 2) for a in range(3)]
    if any(h <= l_ for l_, h in zip(lo, hi)):
        return out
    x = o[0] + sp[0] * np.arange(lo[0], hi[0])
    y = o[1] + sp[1] * np.arange(lo[1], hi[1])
    z = o[2] + sp[2] * np.arange(lo[2], hi[2])
    k = int(supersample)
    offs = (np.arange(k) + 0.5) / k - 0.5
    acc = np.zeros((z.size, y.size, x.size))
    for oz in offs:
        dz = (z + oz * sp[2] - c[2])[:, None, None] ** 2
        for oy in offs:
            dy = (y + oy * sp[1] - c[1])[None, :, None] ** 2
            for ox in offs:
                dx = (x + ox * sp[0] - c[0])[None, None, :] ** 2
                acc += (dz + dy + dx) < r * r
    out[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]] = acc / k ** 3
    return out


@dataclass(frozen=True)
class SphereFit:
    """The PSF fitted to a sphere phantom.

    ``table``: one row per sphere: name, volume_ml (true, or the mask's), diameter_mm,
    observed (mean in its measurement mask), rc_observed = observed / true concentration,
    rc_model (the same from the model at the fitted FWHM), rc_sphere (:func:`sphere_rc`: the
    sphere alone in a cold surrounding, no voxels, at the fitted FWHM).
    """

    fwhm_mm: float
    u_fwhm_mm: float
    background_concentration: float
    rms_residual: float
    table: tuple[dict, ...]
    warnings: tuple[str, ...] = ()

    def recovery_curve(self, volumes_ml: Any = tuple(v for _, v in NEMA_IEC_SPHERES)) -> list[tuple[float, float]]:
        """RC(volume) of a sphere alone at the fitted FWHM (:func:`sphere_rc`): [(volume_ml, rc)]."""
        vols = np.asarray(volumes_ml, dtype=np.float64).reshape(-1)
        return [(float(v), float(sphere_rc(v, self.fwhm_mm))) for v in vols]


def fit_psf_from_spheres(image: Any, spheres: Any, true_concentration: Any, spacing_mm: Any, *,
                         origin_mm: Any = (0.0, 0.0, 0.0), background_mask: Any = None,
                         background_concentration: float | None = None,
                         fwhm_range_mm: tuple[float, float] = (2.0, 40.0)) -> SphereFit:
    """Fit the (isotropic) FWHM that reproduces a sphere phantom's image.

    ``image`` [z, y, x] in concentration units (Bq/ml, or anything proportional: the same unit as
    ``true_concentration``). ``spheres``: {name: bool mask} (the truth is the mask) or a sequence
    of (centre_mm (x, y, z), volume_ml) (the truth is the exact sphere, by sub-voxel sampling;
    measured in the voxels whose centre is inside; centres in the image's coordinates, voxel i
    at origin_mm + i * spacing). ``true_concentration``: one value or one per sphere.

    Background: ``background_mask`` (bool) is the warm volume around the spheres (the phantom's
    water; its outside, a lung insert, air, are cold), None: everything outside the spheres.
    Its concentration is ``background_concentration`` or, when None, fitted (linear in the
    model, so profiled out exactly at each FWHM) with the background's mean as one more datum.

    The model image at FWHM F is blur_F(truth); the residuals are (model - observed) mean
    concentrations in the spheres' masks (and the background) divided by the sphere
    concentration; F minimises their sum of squares (a scan of 16 points over
    ``fwhm_range_mm``, then golden-section search in the best bracket). u(F) from the residuals:
    s^2 / (J^T J), s^2 = RSS / (n - p), J = d residuals / dF (numerical).
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 3 or not np.all(np.isfinite(img)):
        raise InputError(f"image (array of {img.ndim} dimensions or non-finite values): expected a finite image "
                         "[z, y, x]")
    sp = _spacing(spacing_mm)
    lo_f, hi_f = (float(fwhm_range_mm[0]), float(fwhm_range_mm[1]))
    if not (0 < lo_f < hi_f <= MAX_FWHM_MM):
        raise InputError(f"fwhm_range_mm {fwhm_range_mm!r} (not 0 < low < high <= {MAX_FWHM_MM:g}): expected the "
                         "range of FWHM (mm) to search")
    truths, meas, names, vols = [], [], [], []
    if isinstance(spheres, Mapping):
        for name, m in spheres.items():
            arr = _mask(str(name), m, img.shape)
            if not arr.any():
                raise InputError(f"sphere '{name}' (empty mask): expected at least one voxel")
            truths.append(arr.astype(np.float64))
            meas.append(arr)
            names.append(str(name))
            vols.append(arr.sum() * sp[0] * sp[1] * sp[2] / 1000.0)
    else:
        try:
            items = [(np.asarray(c, dtype=np.float64).reshape(3), float(v)) for c, v in spheres]
        except (TypeError, ValueError):
            raise InputError("spheres (not masks nor (centre_mm, volume_ml) pairs): expected {name: bool mask} or "
                             "[((x, y, z), volume_ml), ...]") from None
        for i, (c, v) in enumerate(items):
            if not np.all(np.isfinite(c)) or not v > 0:
                raise InputError(f"sphere {i + 1} (centre {c.tolist()}, volume {v}): expected a finite centre (mm) "
                                 "and a volume > 0 ml")
            frac = sphere_fraction(img.shape, sp, c, v, origin_mm)
            r = (3.0 * v * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
            m = _centres_inside(img.shape, sp, c, r, origin_mm)
            if not m.any():
                raise InputError(f"sphere {i + 1} (centre {c.tolist()} mm, {v} ml): expected a sphere inside the image "
                                 "with at least one voxel centre")
            truths.append(frac)
            meas.append(m)
            names.append(f"sphere {i + 1}")
            vols.append(v)
    ns = len(truths)
    if ns < 2:
        raise InputError(f"spheres ({ns}): expected at least 2 spheres to fit a FWHM")
    conc = np.asarray(true_concentration, dtype=np.float64).reshape(-1)
    if conc.size == 1:
        conc = np.repeat(conc, ns)
    if conc.size != ns or not np.all(np.isfinite(conc)) or np.any(conc <= 0):
        raise InputError(f"true_concentration ({conc.tolist()}): expected one value > 0, or one per sphere")
    occupied = np.sum(truths, axis=0)
    bg_ind = (1.0 - np.clip(occupied, 0.0, 1.0))
    if background_mask is not None:
        bg_ind = bg_ind * _mask("background", background_mask, img.shape)
    # the data: the spheres' masks and the background within BG_MARGIN_MM of the spheres' box (the
    # inner box); the model on a crop that extends the inner box by the kernel's reach at each FWHM
    any_sphere = occupied > 0
    inner = _bbox(any_sphere, tuple(math.ceil(BG_MARGIN_MM / d) for d in (sp[2], sp[1], sp[0])))
    sph_map = sum(c * t for c, t in zip(conc, truths))
    meas_c = [m[inner] for m in meas]
    bg_meas = (bg_ind[inner] >= 1.0) & ~np.logical_or.reduce(meas_c)
    obs = np.array([img[inner][m].mean() for m in meas_c])
    use_bg = bool(bg_meas.any())
    obs_bg = float(img[inner][bg_meas].mean()) if use_bg else 0.0
    scale = float(conc.max())
    fixed_bg = background_concentration
    if fixed_bg is not None and (not math.isfinite(float(fixed_bg)) or float(fixed_bg) < 0):
        raise InputError(f"background_concentration {fixed_bg!r}: expected a finite value >= 0, or None to fit it")

    def model(f):
        reach = _reach_voxels(sp, (f,) * 3)
        outer = tuple(slice(max(0, i.start - r), min(n, i.stop + r)) for i, r, n in zip(inner, reach, img.shape))
        rel = tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer))
        a = blur(sph_map[outer], sp, f)[rel]
        b = blur(bg_ind[outer], sp, f)[rel]
        am = np.array([a[m].mean() for m in meas_c])
        bm = np.array([b[m].mean() for m in meas_c])
        abg = float(a[bg_meas].mean()) if use_bg else 0.0
        bbg = float(b[bg_meas].mean()) if use_bg else 0.0
        A = np.append(am, abg) if use_bg else am
        B = np.append(bm, bbg) if use_bg else bm
        y = np.append(obs, obs_bg) if use_bg else obs
        if fixed_bg is None:
            cb = float(np.dot(B, y - A) / np.dot(B, B)) if np.dot(B, B) > 0 else 0.0
        else:
            cb = float(fixed_bg)
        return (A + cb * B - y) / scale, cb, am + cb * bm

    cache: dict[float, tuple] = {}

    def rss(f):
        if f not in cache:
            r, cb, pred = model(f)
            cache[f] = (float(np.dot(r, r)), r, cb, pred)
        return cache[f][0]

    grid = np.geomspace(lo_f, hi_f, 16)
    vals = [rss(float(g)) for g in grid]
    i = int(np.argmin(vals))
    a_, b_ = float(grid[max(0, i - 1)]), float(grid[min(len(grid) - 1, i + 1)])
    gr = (math.sqrt(5.0) - 1.0) / 2.0
    c_, d_ = b_ - gr * (b_ - a_), a_ + gr * (b_ - a_)
    while b_ - a_ > 1e-4 * max(1.0, a_):
        if rss(c_) < rss(d_):
            b_, d_ = d_, c_
            c_ = b_ - gr * (b_ - a_)
        else:
            a_, c_ = c_, d_
            d_ = a_ + gr * (b_ - a_)
    best = min([a_, b_, c_, d_, float(grid[i])], key=rss)
    rss_b, r_b, cb_b, pred = cache[best]
    h = 1e-3 * best
    jac = (model(best + h)[0] - model(best - h)[0]) / (2.0 * h)
    n_data = r_b.size
    n_par = 1 + (1 if fixed_bg is None else 0)
    dof = n_data - n_par
    s2 = rss_b / dof if dof > 0 else float("nan")
    jj = float(np.dot(jac, jac))
    u = math.sqrt(s2 / jj) if jj > 0 and math.isfinite(s2) else float("nan")
    warn = []
    if best <= lo_f * 1.001 or best >= hi_f * 0.999:
        warn.append(f"the fitted FWHM {best:.3g} mm is at the end of the search range {fwhm_range_mm}: widen "
                    "fwhm_range_mm or check the sphere definitions")
    if dof <= 0:
        warn.append(f"{n_data} data for {n_par} parameters: no uncertainty from the residuals")
    rows = []
    for k in range(ns):
        rows.append({"name": names[k], "volume_ml": float(vols[k]),
                     "diameter_mm": float((6.0 * vols[k] * 1000.0 / math.pi) ** (1.0 / 3.0)),
                     "observed": float(obs[k]), "rc_observed": float(obs[k] / conc[k]),
                     "rc_model": float(pred[k] / conc[k]), "rc_sphere": float(sphere_rc(vols[k], best))})
    return SphereFit(fwhm_mm=float(best), u_fwhm_mm=float(u), background_concentration=float(cb_b),
                     rms_residual=float(math.sqrt(rss_b / n_data)), table=tuple(rows), warnings=tuple(warn))


def _centres_inside(shape, sp, c, r, origin_mm) -> np.ndarray:
    o = np.asarray(origin_mm, dtype=np.float64).reshape(3)
    z = o[2] + sp[2] * np.arange(shape[0])
    y = o[1] + sp[1] * np.arange(shape[1])
    x = o[0] + sp[0] * np.arange(shape[2])
    return ((z[:, None, None] - c[2]) ** 2 + (y[None, :, None] - c[1]) ** 2 + (x[None, None, :] - c[0]) ** 2) < r * r
