"""A synthetic Lu-177-DOTATATE patient: CT, four SPECT time points, structures and a study file.

``write_demo_study(folder)`` writes (``rptdose demo`` then runs the pipeline on it)::

    folder/study.toml
    folder/tp<k>/ct/ct*.dcm      CT of each SPECT/CT (int16 HU, one file per slice)
    folder/tp<k>/spect.dcm       SPECT in counts (multi-frame NM, calibration factor in study.toml)
    folder/rtstruct.dcm          the organs on the first CT
    folder/calibration/spect.dcm a uniform cylinder scanned like the patient the day before: the
                                 study derives the camera's sensitivity from it
                                 (calibration.mode = "phantom"); the study also corrects the
                                 regions for the SPECT's resolution ([recovery])

Anatomy (analytic shapes in patient coordinates, LPS: +x to the patient's left, +y posterior,
+z head; mm from the centre of the grid): an elliptic-cylinder body, two lungs, the spine
(cortical shell around spongiosa: the "red_marrow" region) and ribs, liver, spleen, left and
right kidneys (cortex around a medulla that takes up less), bladder, and two tumours in the
liver. The patient lies 6 mm off position at the third scan (its CT is registered).

Kinetics: each compartment's activity is A0 f exp(-ln2 t / T_eff) from the administration
(t = 0), mono-exponential, with the effective half-lives in :data:`KINETICS`:

* kidneys ~50 h, spleen ~65 h, liver ~75 h, tumours ~100 h: representative of the effective
  half-lives reported for 177Lu-DOTATATE by Garske et al., Acta Oncol 51:86-96 (2012) and
  Sandström et al., J Nucl Med 54:33-41 (2013) (kidneys around 50 h; spleen, liver and
  tumours longer; tumours the longest);
* the uptake fractions f are set so that the absorbed doses per administered activity are of
  the order reported in the literature (kidneys ~0.4-0.6 Gy/GBq: Staanum et al., EJNMMI Phys
  8:78 (2021), 0.46 Gy/GBq median for DOTATATE; spleen ~1 Gy/GBq, liver ~0.3 Gy/GBq, tumours a
  few Gy/GBq: "Dosimetric analyses of kidneys, liver, spleen, pituitary gland, and
  neuroendocrine tumors of patients treated with 177Lu-DOTATATE", Clin Nucl Med 38(3) (2013));
* the remainder of the body (blood and soft tissue, lungs at their density's share) clears in
  two phases, a fast renal one (T_eff 3 h) and a slow one (40 h), and the bladder content
  (urine) with 8 h; red marrow follows the blood (30 h).

These are illustrative values, not a population model: the demo shows the pipeline on a
patient-like study whose true activity is known (:meth:`DemoPatient.tia_bq_s`).

Other nuclides (``rptdose demo --nuclide Ac-225``, ``DemoPatient(nuclide=...)``): the same
biology, i.e. the biological half-lives behind the Lu-177 effective ones (1/T_bio = 1/T_eff -
1/T_phys(Lu-177)), combined with the nuclide's physical half-life (:func:`effective_half_life_h`),
and the administered activity of :data:`DEMO_ACTIVITY_MBQ` (Ac-225: 8 MBq, 100 kBq/kg for 80 kg
as given with Ac-225-PSMA-617 by Kratochwil et al., J Nucl Med 57:1941, 2016); a nuclide not
listed there gets the activity that emits as much energy in the patient as the Lu-177 demo. The
study file says ``chain = "equilibrium"`` for nuclides with short-lived daughters. The scans stay
at 4-168 h, so the nuclide's half-life must be at least :data:`MIN_DEMO_HALF_LIFE_H`.

SPECT: the true activity at the scan blurred with a Gaussian of :data:`SPECT_FWHM_MM` FWHM
(the resolution of a reconstructed Lu-177 SPECT), converted to counts with the calibration
factor :data:`SENSITIVITY_CPS_PER_MBQ` over a 60 x 30 s acquisition (physical decay during
the acquisition included), and Poisson-sampled with a fixed seed.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HOUR = 3600.0
NUCLIDE = "Lu-177"
ADMINISTERED_MBQ = 7400.0
ADMINISTRATION = _dt.datetime(2026, 3, 2, 9, 0, 0)
TIMES_H = (4.0, 24.0, 96.0, 168.0)
SPECT_FWHM_MM = 10.0
SENSITIVITY_CPS_PER_MBQ = 9.0
VIEWS, MS_PER_VIEW = 60, 30_000
#: Voxel size of the demo (mm) and its default histories: about 1 % statistical uncertainty in
#: the kidneys on this grid in a few minutes on 2 cores.
DEMO_VOXEL_MM = 4.8
DEMO_HISTORIES = 10_000_000
#: Patient displacement (mm, x y z) at each scan (1-based): the third scan is registered.
DEMO_SHIFTS_MM = {3: (6.0, -4.0, 0.0)}
#: Administered activity (MBq) per nuclide (module docstring); others: equal emitted energy.
DEMO_ACTIVITY_MBQ = {"Lu-177": ADMINISTERED_MBQ, "Ac-225": 8.0}
#: Shortest half-life the demo accepts (h): its last scan is at 168 h.
MIN_DEMO_HALF_LIFE_H = 24.0

#: compartment: (fraction of the administered activity at t = 0 (extrapolated), T_eff in h)
KINETICS: dict[str, tuple[float, float]] = {
    "body_fast": (0.45, 3.0),
    "body_slow": (0.15, 40.0),
    "bladder": (0.03, 8.0),
    "red_marrow": (0.002, 30.0),
    "liver": (0.06, 75.0),
    "spleen": (0.018, 65.0),
    "kidney_left": (0.016, 50.0),
    "kidney_right": (0.016, 50.0),
    "tumour_1": (0.004, 100.0),
    "tumour_2": (0.0015, 100.0),
}
#: Relative concentration in the kidneys' medulla (the cortex takes up most).
MEDULLA_UPTAKE = 0.3

#: HU of the tissues (CT).
HU = {"air": -1000.0, "lung": -800.0, "body": 20.0, "liver": 60.0, "spleen": 50.0, "kidney": 35.0,
      "bladder": 10.0, "tumour": 80.0, "spongiosa": 250.0, "cortical": 1000.0, "rib": 700.0}

#: Shapes (mm): centre (x, y, z) and semi-axes (x, y, z) of ellipsoids; the body is an
#: elliptic cylinder over the whole grid.
BODY_SEMI_AXES = (165.0, 112.0)
SHAPES = {
    "lung_left": ((85.0, 0.0, 100.0), (55.0, 70.0, 85.0)),
    "lung_right": ((-85.0, 0.0, 100.0), (60.0, 72.0, 85.0)),
    "liver": ((-70.0, -5.0, 25.0), (85.0, 72.0, 65.0)),
    "spleen": ((100.0, 35.0, 35.0), (30.0, 40.0, 32.0)),
    "kidney_left": ((75.0, 55.0, -35.0), (30.0, 27.0, 52.0)),
    "kidney_right": ((-75.0, 55.0, -40.0), (30.0, 27.0, 52.0)),
    "bladder": ((0.0, -30.0, -125.0), (40.0, 35.0, 28.0)),
    "tumour_1": ((-95.0, -25.0, 40.0), (16.0, 16.0, 16.0)),
    "tumour_2": ((-40.0, 20.0, 5.0), (11.0, 11.0, 11.0)),
}
SPINE = ((0.0, 80.0), 17.0, 4.0)   # (x, y) centre, outer radius, cortical shell thickness (mm)
RIB_PITCH_MM, RIB_HALF_WIDTH_MM, RIB_THICKNESS_MM, RIB_Z_MIN_MM = 26.0, 5.0, 8.0, -10.0
#: Grid extent (mm, x y z).
EXTENT_MM = (365.0, 270.0, 310.0)


def _ellipsoid(x, y, z, centre, axes) -> np.ndarray:
    (cx, cy, cz), (rx, ry, rz) = centre, axes
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 < 1.0


def demo_label(nuclide: str | None = None) -> str:
    """What the demo patient is given, e.g. "Lu-177-DOTATATE" or "Ac-225 (Lu-177-DOTATATE biology)"."""
    name = demo_nuclide(nuclide)
    return "Lu-177-DOTATATE" if name == NUCLIDE else f"{name} (Lu-177-DOTATATE biology)"


def demo_nuclide(nuclide: str | None) -> str:
    """The ICRP-107 name of the demo's nuclide (default :data:`NUCLIDE`), checked: InputError for
    an unknown one or one shorter-lived than :data:`MIN_DEMO_HALF_LIFE_H`."""
    from rptdose.errors import InputError
    from rptdose.physics.nuclides import load_nuclide

    if nuclide is None:
        return NUCLIDE
    nuc = load_nuclide(nuclide)
    if nuc.half_life_s < MIN_DEMO_HALF_LIFE_H * HOUR:
        raise InputError(f"--nuclide {nuclide!r} (half-life {nuc.half_life_s / HOUR:.3g} h): expected a nuclide with a "
                         f"half-life of at least {MIN_DEMO_HALF_LIFE_H:g} h, the demo's scans being at "
                         f"{', '.join(f'{t:g}' for t in TIMES_H)} h")
    return nuc.name


def effective_half_life_h(compartment: str, nuclide: str = NUCLIDE) -> float:
    """T_eff (h) of a compartment of :data:`KINETICS` for ``nuclide``: the Lu-177 values' biological
    half-life with the nuclide's physical one (module docstring)."""
    from rptdose.physics.nuclides import load_nuclide

    teff_lu = KINETICS[compartment][1]
    if nuclide == NUCLIDE:
        return teff_lu
    t_lu = load_nuclide(NUCLIDE).half_life_s / HOUR
    t_new = load_nuclide(nuclide).half_life_s / HOUR
    inv_bio = max(1.0 / teff_lu - 1.0 / t_lu, 0.0)
    return 1.0 / (inv_bio + 1.0 / t_new)


def demo_activity_mbq(nuclide: str = NUCLIDE) -> float:
    """Administered activity (MBq) of the demo for ``nuclide`` (module docstring)."""
    if nuclide in DEMO_ACTIVITY_MBQ:
        return DEMO_ACTIVITY_MBQ[nuclide]
    from rptdose.physics.chains import decay_chain

    def energy_per_mbq(n: str) -> float:  # MeV emitted per MBq administered (TIA x energy per decay)
        e = decay_chain(n).total_mev_per_decay
        return e * sum(f * effective_half_life_h(c, n) for c, (f, _) in KINETICS.items())

    return ADMINISTERED_MBQ * energy_per_mbq(NUCLIDE) / energy_per_mbq(nuclide)


@dataclass
class DemoPatient:
    """The demo patient on a grid of ``voxel_mm`` voxels (smaller grids for tests: a larger
    ``voxel_mm``), with ``nuclide`` (default Lu-177; module docstring)."""

    voxel_mm: float = DEMO_VOXEL_MM
    seed: int = 1
    nuclide: str = NUCLIDE
    shape: tuple[int, int, int] = field(init=False)
    spacing: tuple[float, float, float] = field(init=False)
    origin: tuple[float, float, float] = field(init=False)

    def __post_init__(self):
        v = float(self.voxel_mm)
        n = [max(8, int(round(e / v))) for e in EXTENT_MM]
        self.shape = (n[2], n[1], n[0])
        self.spacing = (v, v, v)
        self.origin = tuple(-0.5 * (k - 1) * v for k in n)
        self.nuclide = demo_nuclide(self.nuclide)

    @property
    def administered_mbq(self) -> float:
        return demo_activity_mbq(self.nuclide)

    def kinetics(self) -> dict[str, tuple[float, float]]:
        """{compartment: (fraction at t = 0, T_eff in h)} for this patient's nuclide."""
        return {c: (f, effective_half_life_h(c, self.nuclide)) for c, (f, _) in KINETICS.items()}

    def _coords(self, shift=(0.0, 0.0, 0.0)):
        nz, ny, nx = self.shape
        v = self.voxel_mm
        x = self.origin[0] + v * np.arange(nx) - shift[0]
        y = self.origin[1] + v * np.arange(ny) - shift[1]
        z = self.origin[2] + v * np.arange(nz) - shift[2]
        return z[:, None, None], y[None, :, None], x[None, None, :]

    def compartments(self, shift=(0.0, 0.0, 0.0)) -> dict[str, np.ndarray]:
        """Disjoint bool masks of the tissues (later entries win where shapes overlap)."""
        z, y, x = self._coords(shift)
        full = np.ones(self.shape, dtype=bool)
        body = full & (((x / BODY_SEMI_AXES[0]) ** 2 + (y / BODY_SEMI_AXES[1]) ** 2) < 1.0)
        (sx, sy), r_out, shell = SPINE
        r_spine = np.sqrt((x - sx) ** 2 + (y - sy) ** 2)
        spine = full & (r_spine < r_out)
        spongiosa = full & (r_spine < r_out - shell)
        # ribs: elliptic bands just inside the body outline, in slabs every RIB_PITCH_MM above RIB_Z_MIN_MM
        e = np.sqrt((x / BODY_SEMI_AXES[0]) ** 2 + (y / BODY_SEMI_AXES[1]) ** 2)
        band = (e > 1.0 - (RIB_THICKNESS_MM + 6.0) / BODY_SEMI_AXES[1]) & (e < 1.0 - 6.0 / BODY_SEMI_AXES[1])
        phase = np.abs(((z - RIB_Z_MIN_MM) % RIB_PITCH_MM) - 0.5 * RIB_PITCH_MM)
        slab = (phase < RIB_HALF_WIDTH_MM) & (z > RIB_Z_MIN_MM)
        ribs = full & band & slab & (y > -60.0)
        out: dict[str, np.ndarray] = {"body": body}
        for name in ("lung_left", "lung_right"):
            out[name] = body & _ellipsoid(x, y, z, *SHAPES[name])
        for name in ("liver", "spleen", "bladder", "kidney_left", "kidney_right", "tumour_1", "tumour_2"):
            out[name] = body & _ellipsoid(x, y, z, *SHAPES[name])
        out["ribs"] = body & ribs
        out["spine_cortical"] = body & spine & ~spongiosa
        out["red_marrow"] = body & spongiosa
        for name in ("kidney_left", "kidney_right"):
            c, a = SHAPES[name]
            out[name.replace("kidney", "medulla")] = out[name] & _ellipsoid(x, y, z, c, tuple(0.55 * v for v in a))
        # make them disjoint in priority order (later wins)
        order = list(out)
        taken = np.zeros(self.shape, dtype=bool)
        for name in reversed(order):
            out[name] = out[name] & ~taken
            taken |= out[name]
        return out

    def regions(self, shift=(0.0, 0.0, 0.0)) -> dict[str, np.ndarray]:
        """The structures of the RTSTRUCT (may overlap: a kidney includes its medulla, the liver
        its tumours)."""
        c = self.compartments(shift)
        outline = np.logical_or.reduce(list(c.values()))
        return {"body": outline,
                "liver": c["liver"] | c["tumour_1"] | c["tumour_2"], "spleen": c["spleen"],
                "kidney_left": c["kidney_left"] | c["medulla_left"],
                "kidney_right": c["kidney_right"] | c["medulla_right"], "bladder": c["bladder"],
                "red_marrow": c["red_marrow"], "tumour_1": c["tumour_1"], "tumour_2": c["tumour_2"],
                "lungs": c["lung_left"] | c["lung_right"]}

    def hu(self, shift=(0.0, 0.0, 0.0)) -> np.ndarray:
        c = self.compartments(shift)
        out = np.full(self.shape, HU["air"])
        table = {"body": "body", "lung_left": "lung", "lung_right": "lung", "liver": "liver", "spleen": "spleen",
                 "bladder": "bladder", "kidney_left": "kidney", "kidney_right": "kidney", "medulla_left": "kidney",
                 "medulla_right": "kidney", "tumour_1": "tumour", "tumour_2": "tumour", "ribs": "rib",
                 "spine_cortical": "cortical", "red_marrow": "spongiosa"}
        for name, m in c.items():
            out[m] = HU[table[name]]
        rng = np.random.default_rng(self.seed)
        return out + np.where(out > -1000.0, rng.normal(0.0, 8.0, self.shape), 0.0)

    def _concentration_weights(self, c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per compartment of KINETICS, a [z, y, x] weight map summing to 1 (where its activity is)."""
        lung = c["lung_left"] | c["lung_right"]
        soft = c["body"] | c["liver"] | c["spleen"] | c["bladder"] | c["kidney_left"] | c["kidney_right"] | \
            c["medulla_left"] | c["medulla_right"] | c["tumour_1"] | c["tumour_2"]
        # blood and soft tissue everywhere in the body (lungs at ~ their density's share, 0.26)
        remainder = soft.astype(np.float64) + 0.26 * lung
        w = {"body_fast": remainder, "body_slow": remainder, "bladder": c["bladder"].astype(np.float64),
             "red_marrow": c["red_marrow"].astype(np.float64), "liver": c["liver"].astype(np.float64),
             "spleen": c["spleen"].astype(np.float64), "tumour_1": c["tumour_1"].astype(np.float64),
             "tumour_2": c["tumour_2"].astype(np.float64)}
        for side in ("left", "right"):
            w[f"kidney_{side}"] = c[f"kidney_{side}"] + MEDULLA_UPTAKE * c[f"medulla_{side}"]
        return {k: v / v.sum() for k, v in w.items() if v.sum() > 0}

    def activity_bq(self, t_s: float, shift=(0.0, 0.0, 0.0)) -> np.ndarray:
        """True activity per voxel (Bq) at ``t_s`` after the administration."""
        w = self._concentration_weights(self.compartments(shift))
        out = np.zeros(self.shape)
        kin, a0 = self.kinetics(), self.administered_mbq
        for name, weights in w.items():
            f, teff_h = kin[name]
            out += a0 * 1e6 * f * math.exp(-math.log(2.0) * t_s / (teff_h * HOUR)) * weights
        return out

    def tia_bq_s(self) -> np.ndarray:
        """True TIA per voxel (Bq s), from the administration to infinity."""
        w = self._concentration_weights(self.compartments())
        out = np.zeros(self.shape)
        kin, a0 = self.kinetics(), self.administered_mbq
        for name, weights in w.items():
            f, teff_h = kin[name]
            out += a0 * 1e6 * f * teff_h * HOUR / math.log(2.0) * weights
        return out

    def spect_counts(self, t_s: float, shift=(0.0, 0.0, 0.0), index: int = 0) -> np.ndarray:
        """The reconstructed SPECT in counts: blurred, calibrated, Poisson-sampled."""
        from rptdose.physics.nuclides import load_nuclide

        lam = math.log(2.0) / load_nuclide(self.nuclide).half_life_s
        duration_s = VIEWS * MS_PER_VIEW / 1000.0
        blurred = gaussian_blur(self.activity_bq(t_s, shift), SPECT_FWHM_MM, self.spacing)
        mean = np.maximum(blurred, 0.0) * SENSITIVITY_CPS_PER_MBQ * 1e-6 * (-math.expm1(-lam * duration_s)) / lam
        rng = np.random.default_rng([self.seed, index])
        return rng.poisson(mean).astype(np.float64)


def gaussian_blur(a: np.ndarray, fwhm_mm: float, spacing: tuple[float, float, float]) -> np.ndarray:
    """``a`` [z, y, x] convolved with a normalised 3-D Gaussian of ``fwhm_mm`` (zero outside),
    truncated at 3 sigma.

    Direct separable convolution in numpy (one pass per axis, a sum of shifted copies): the
    result is the same wherever rptdose runs (no FFT library to choose) and exactly 0 further
    than the kernel's reach from any activity, as a blurred image is, with no round-off
    residue for the Poisson sampling to turn into counts in air.
    """
    sigma = fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    out = np.asarray(a, dtype=np.float64)
    for axis, s in zip(range(3), (spacing[2], spacing[1], spacing[0])):
        h = int(math.ceil(3.0 * sigma / s))
        u = np.arange(-h, h + 1) * s
        g = np.exp(-0.5 * (u / sigma) ** 2)
        g /= g.sum()
        n = out.shape[axis]
        pad = [(0, 0)] * 3
        pad[axis] = (h, h)
        padded = np.pad(out, pad)
        acc = np.zeros_like(out)
        for j, w in enumerate(g):   # out[i] = sum_j g[j] a[i + j - h]
            acc += w * np.take(padded, np.arange(j, j + n), axis=axis)
        out = acc
    return out


def write_demo_study(folder: str | Path, patient: DemoPatient | None = None, *, times_h=TIMES_H,
                     shifts: dict[int, tuple] | None = None, histories: int = DEMO_HISTORIES,
                     administration: _dt.datetime | None = None, nuclide: str | None = None,
                     calibration: str = "phantom", recovery: bool = True) -> Path:
    """Write the demo patient's DICOM and study.toml into ``folder``; returns the study file.

    ``administration``: the date-time of the administration (default :data:`ADMINISTRATION`);
    the scans follow it at ``times_h``. ``nuclide``: the demo's nuclide (default Lu-177, or the
    ``patient``'s), e.g. "Ac-225" (module docstring). ``calibration``: "phantom" (default: a
    uniform-cylinder calibration scan is written beside the patient, :func:`write_calibration_phantom`,
    and the study derives the sensitivity from it) or "sensitivity" (the true value typed in).
    ``recovery``: a ``[recovery]`` table with the SPECT's resolution (:data:`SPECT_FWHM_MM`).
    """
    if calibration not in ("phantom", "sensitivity"):
        from rptdose.errors import InputError

        raise InputError(f"calibration {calibration!r} (unknown): expected 'phantom' or 'sensitivity'")
    from pydicom.uid import generate_uid

    from rptdose.io.dicom_write import Identity, write_ct_series, write_nm_counts, write_rtstruct
    from rptdose.physics.nuclides import load_nuclide

    if patient is not None and nuclide is not None and demo_nuclide(nuclide) != patient.nuclide:
        from rptdose.errors import InputError

        raise InputError(f"nuclide {nuclide!r} (the patient given is of {patient.nuclide}): expected one nuclide")
    p = patient or DemoPatient(nuclide=demo_nuclide(nuclide))
    nuc_name = p.nuclide
    activity_mbq = p.administered_mbq
    adm = administration or ADMINISTRATION
    shifts = DEMO_SHIFTS_MM if shifts is None else shifts
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    ident = Identity("RPTDEMO01", "Demo^Patient", generate_uid())
    half_life_s = load_nuclide(nuc_name).half_life_s
    from rptdose.io.nm import _ELEMENTS

    symbol, mass = nuc_name.split("-")
    element = next((k.capitalize() for k, v in _ELEMENTS.items() if v == symbol), symbol)
    code_meaning = f"^{mass}^{element}"
    from rptdose.physics.chains import decay_chain

    with_chain = decay_chain(nuc_name).has_daughters
    tables = []
    first_for = None
    for i, t_h in enumerate(times_h, start=1):
        shift = shifts.get(i, (0.0, 0.0, 0.0))
        for_uid = generate_uid()
        first_for = first_for or for_uid
        when = adm + _dt.timedelta(hours=t_h)
        write_ct_series(root / f"tp{i}" / "ct", p.hu(shift), p.spacing, p.origin, ident=ident, for_uid=for_uid,
                        when=when, description=f"CT {t_h:g} h")
        write_nm_counts(root / f"tp{i}" / "spect.dcm", p.spect_counts(t_h * HOUR, shift, i), p.spacing, p.origin,
                        ident=ident, for_uid=for_uid, acquisition=when, views=VIEWS, ms_per_view=MS_PER_VIEW,
                        nuclide_code_meaning=code_meaning, total_dose_mbq=activity_mbq,
                        radiopharm_start=adm, half_life_s=half_life_s,
                        description=f"SPECT {nuc_name} {t_h:g} h")
        tables.append(f'[[timepoint]]\nlabel = "{t_h:g}h"\nspect = "tp{i}/spect.dcm"\nct = "tp{i}/ct"\n')
    regions = p.regions()
    kinds = {"body": "EXTERNAL", "tumour_1": "GTV", "tumour_2": "GTV"}
    write_rtstruct(root / "rtstruct.dcm", regions, p.spacing, p.origin, ident=ident, for_uid=first_for,
                   when=adm, kinds=kinds)
    if calibration == "phantom":
        reading = write_calibration_phantom(root / "calibration", p.voxel_mm, nuc_name, code_meaning=code_meaning,
                                            scan=adm - _dt.timedelta(hours=20), seed=p.seed)
        cal_text = ('\n[calibration]\n# the sensitivity from a uniform cylinder scanned and reconstructed like the '
                    'patient\nmode = "phantom"\nphantom_spect = "calibration/spect.dcm"\n'
                    f'phantom_activity_mbq = {reading[0]:g}\nphantom_time = {reading[1].isoformat()}\n'
                    'phantom_activity_uncertainty_pct = 2\n\n')
    else:
        cal_text = f'\n[calibration]\nmode = "sensitivity"\nsensitivity_cps_per_mbq = {SENSITIVITY_CPS_PER_MBQ:g}\n\n'
    label = demo_label(nuc_name)
    chain_line = 'chain = "equilibrium"\n' if with_chain else ""
    text = (f'# A synthetic {label} patient (rptdose demo): see rptdose/demo.py for the anatomy and\n'
            '# kinetics, and docs/study_file.md for the keys.\n'
            f'[study]\nnuclide = "{nuc_name}"\nname = "demo {label}"\n{chain_line}\n'
            f'[administration]\nactivity_mbq = {activity_mbq:.6g}\ntime = {adm.isoformat()}\n\n'
            + "\n".join(tables)
            + cal_text
            + '[segmentation]\nrtstruct = "rtstruct.dcm"\n\n'
            f'[dose]\ngrid = "spect"\nmethod = "mc"\nhistories = {int(histories)}\nseed = 1\n\n'
            '[tia]\nmodel = "auto"\n\n[registration]\nmethod = "rigid"\n'
            + (f'\n[recovery]\n# the reconstructed SPECT\'s resolution (FWHM, mm) and its standard uncertainty (%)\n'
               f'psf_fwhm_mm = {SPECT_FWHM_MM:g}\npsf_fwhm_uncertainty_pct = 10\n' if recovery else ""))
    study = root / "study.toml"
    study.write_text(text, encoding="utf-8")
    return study


#: The calibration phantom: a uniform water cylinder (radius, half-length in mm) and the
#: dose-calibrator reading (MBq), taken an hour before its scan.
PHANTOM_RADIUS_MM, PHANTOM_HALF_LENGTH_MM = 100.0, 100.0
PHANTOM_ACTIVITY_MBQ = 250.0


def write_calibration_phantom(folder: str | Path, voxel_mm: float, nuclide: str, *, code_meaning: str,
                              scan: _dt.datetime, seed: int = 1) -> tuple[float, _dt.datetime]:
    """A calibration scan of a uniform cylinder (:data:`PHANTOM_RADIUS_MM`, ...) filled with
    :data:`PHANTOM_ACTIVITY_MBQ` of ``nuclide`` measured an hour before ``scan``, imaged like the
    patient (the same blur, sensitivity, acquisition and camera), into ``folder/spect.dcm``.
    Returns the dose-calibrator reading (MBq, date-time) for the study file."""
    from pydicom.uid import generate_uid

    from rptdose.io.dicom_write import Identity, write_nm_counts
    from rptdose.physics.nuclides import load_nuclide

    v = float(voxel_mm)
    n = int(math.ceil((2 * PHANTOM_RADIUS_MM + 6 * SPECT_FWHM_MM) / v))
    shape = (int(math.ceil((2 * PHANTOM_HALF_LENGTH_MM + 6 * SPECT_FWHM_MM) / v)), n, n)
    origin = tuple(-0.5 * (k - 1) * v for k in (shape[2], shape[1], shape[0]))
    z, y, x = (origin[2] + v * np.arange(shape[0]))[:, None, None], (origin[1] + v * np.arange(shape[1]))[None, :, None], \
        (origin[0] + v * np.arange(shape[2]))[None, None, :]
    inside = (x ** 2 + y ** 2 < PHANTOM_RADIUS_MM ** 2) & (np.abs(z) < PHANTOM_HALF_LENGTH_MM)
    reading = scan - _dt.timedelta(hours=1)
    half_life_s = load_nuclide(nuclide).half_life_s
    lam = math.log(2.0) / half_life_s
    at_scan = PHANTOM_ACTIVITY_MBQ * 1e6 * math.exp(-lam * 3600.0)
    activity = np.where(inside, at_scan / inside.sum(), 0.0)
    duration_s = VIEWS * MS_PER_VIEW / 1000.0
    blurred = gaussian_blur(activity, SPECT_FWHM_MM, (v, v, v))
    mean = np.maximum(blurred, 0.0) * SENSITIVITY_CPS_PER_MBQ * 1e-6 * (-math.expm1(-lam * duration_s)) / lam
    counts = np.random.default_rng([seed, 1000]).poisson(mean).astype(np.float64)
    ident = Identity("RPTCALIB01", "Calibration^Phantom", generate_uid())
    write_nm_counts(Path(folder) / "spect.dcm", counts, (v, v, v), origin, ident=ident, for_uid=generate_uid(),
                    acquisition=scan, views=VIEWS, ms_per_view=MS_PER_VIEW, nuclide_code_meaning=code_meaning,
                    total_dose_mbq=PHANTOM_ACTIVITY_MBQ, radiopharm_start=reading, half_life_s=half_life_s,
                    description=f"SPECT calibration phantom {nuclide}")
    return PHANTOM_ACTIVITY_MBQ, reading
