"""The voxel phantom: mass density and material per voxel on a regular grid.

Conventions (DESIGN.md; SimpleITK/DICOM for the geometry):

=====================  ===================  =========  ======================================
quantity               layout               unit       notes
=====================  ===================  =========  ======================================
``density``            float32 [z, y, x]    g/cm3      finite, at least 1e-30, at most 25 (no
                                                       tissue or implant is denser; catches kg/m3)
``material_index``     int32 [z, y, x]      --         index into ``materials``
``materials``          list of Material     --         built-in names resolve with
                                                       ``physics.get_material``
``spacing_mm``         (sx, sy, sz)         mm         each in [1e-3, 1e3]
``origin_mm``          (x, y, z)            mm         centre of voxel [0, 0, 0], patient frame
``direction``          9 floats, row-major  --         3x3 direction cosines, columns = the
                                                       x, y, z index axes (SimpleITK order)
``voxel_mass_kg``      float64 [z, y, x]    kg         density * sx * sy * sz * 1e-6
=====================  ===================  =========  ======================================

Arrays are numpy, C-order, indexed ``[z, y, x]`` (SimpleITK's ``GetArrayFromImage`` order).
A Phantom is immutable: its arrays are private read-only copies.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from rptdose._validate import as_grid_array, as_vec3, describe, frozen
from rptdose.errors import InputError

if TYPE_CHECKING:  # imported lazily at run time (the physics package is heavier)
    import SimpleITK as sitk

    from rptdose.physics.materials import HUCalibration, Material

#: Allowed voxel spacing (mm): below is a unit error (m, cm?) or a typo, above is not a voxel.
SPACING_MIN_MM, SPACING_MAX_MM = 1e-3, 1e3
#: Largest accepted voxel density (g/cm3): osmium is 22.6; more means kg/m3 or garbage.
DENSITY_MAX_G_CM3 = 25.0
#: Smallest accepted voxel density (g/cm3): a normal float32 (subnormals lose precision), far
#: below any gas (air 1.2e-3, a laboratory vacuum ~1e-15).
DENSITY_MIN_G_CM3 = 1e-30
#: Tolerance on the orthonormality of the direction matrix (DICOM cosines carry ~1e-6 noise).
DIRECTION_TOL = 1e-4

IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

MaterialLike = Union[str, "Material"]


def check_spacing_mm(spacing_mm: object, name: str = "spacing_mm") -> tuple[float, float, float]:
    """Validated voxel spacing (x, y, z) in mm."""
    sp = as_vec3(name, spacing_mm, unit="mm")
    for axis, s in zip("xyz", sp):
        if not SPACING_MIN_MM <= s <= SPACING_MAX_MM:
            raise InputError(
                f"{name} {sp} ({axis} spacing {s:g} mm out of range): expected voxel sizes in "
                f"[{SPACING_MIN_MM:g}, {SPACING_MAX_MM:g}] mm, in (x, y, z) order")
    return sp


def check_direction(direction: object, name: str = "direction") -> tuple[float, ...]:
    """Validated direction cosines as 9 floats (row-major 3x3, SimpleITK order)."""
    if direction is None:
        return IDENTITY_DIRECTION
    try:
        d = np.asarray(direction, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} {describe(direction)} (not numbers): expected 9 direction cosines "
                         "(row-major 3x3) or a 3x3 array") from None
    if d.size != 9 or d.shape not in ((9,), (3, 3)):
        raise InputError(f"{name} {describe(direction)} (shape {d.shape}): expected 9 direction cosines "
                         "(row-major 3x3) or a 3x3 array")
    m = d.reshape(3, 3)
    if not np.all(np.isfinite(m)) or np.max(np.abs(m @ m.T - np.eye(3))) > DIRECTION_TOL:
        raise InputError(f"{name} {tuple(np.round(d.ravel(), 6).tolist())} (not orthonormal): expected "
                         "orthonormal direction cosines (a rotation, possibly with a flip)")
    return tuple(float(v) for v in m.ravel())


def resolve_materials(materials: object, name: str = "materials") -> list[Material]:
    """Resolve a list of built-in names and/or Material objects into Materials."""
    from rptdose.physics.materials import Material, get_material

    if isinstance(materials, (str, bytes, Material)) or not isinstance(materials, (Sequence, np.ndarray)):
        raise InputError(f"{name} {describe(materials)} (not a list): expected a list of material names "
                         "or Material objects, one per material index")
    out = []
    for i, m in enumerate(materials):
        if not isinstance(m, (str, Material)):
            raise InputError(f"{name}[{i}] {describe(m)} (of type {type(m).__name__}): expected a material "
                             "name or a rptdose.physics.materials.Material")
        try:
            out.append(get_material(m))
        except InputError as exc:
            raise InputError(f"{name}[{i}]: {exc}") from None
    if not out:
        raise InputError(f"{name} [] (empty): expected at least one material")
    return out


class Phantom:
    """A voxel phantom: density and material per voxel on a regular grid.

    Build one with :meth:`water`, :meth:`from_arrays` or :meth:`from_ct` (the constructor takes
    the same arguments as :meth:`from_arrays`). See the module docstring for the conventions.
    """

    def __init__(self, density_g_cm3: Any, material_index: Any, materials: Sequence[MaterialLike],
                 spacing_mm: Sequence[float], origin_mm: Sequence[float] = (0.0, 0.0, 0.0),
                 direction: Sequence[float] | None = None):
        density = as_grid_array("density_g_cm3", density_g_cm3)
        if density.dtype == bool:
            raise InputError(f"density_g_cm3 {describe(density)} (booleans): expected densities in g/cm3")
        index = as_grid_array("material_index", material_index)
        if tuple(index.shape) != tuple(density.shape):
            raise InputError(f"material_index {describe(index)} (shape differs from density_g_cm3's "
                             f"{density.shape}): expected the same [z, y, x] shape")
        mats = resolve_materials(materials)
        spacing = check_spacing_mm(spacing_mm)
        origin = as_vec3("origin_mm", origin_mm, unit="mm")
        dirs = check_direction(direction)

        dens64 = np.asarray(density, dtype=np.float64)
        if not np.all(np.isfinite(dens64)):
            n_bad = int(np.count_nonzero(~np.isfinite(dens64)))
            raise InputError(f"density_g_cm3 ({n_bad} voxels NaN or infinite): expected finite densities in g/cm3")
        lo, hi = float(dens64.min()), float(dens64.max())
        if lo < DENSITY_MIN_G_CM3:  # also every positive value that float32 rounds to 0 or a subnormal
            why = f"minimum {lo:g}" + ("" if lo <= 0.0 else f", below {DENSITY_MIN_G_CM3:g}")
            raise InputError(f"density_g_cm3 ({why}): expected densities > 0 g/cm3, at least {DENSITY_MIN_G_CM3:g}, "
                             "in every voxel (use air, about 0.0012 g/cm3, for empty space)")
        if hi > DENSITY_MAX_G_CM3:
            raise InputError(f"density_g_cm3 (maximum {hi:g}): expected g/cm3 up to {DENSITY_MAX_G_CM3:g} "
                             "(was the density given in kg/m3?)")
        dens32 = dens64.astype(np.float32)
        del dens64

        if index.dtype == bool or not np.issubdtype(index.dtype, np.integer):
            raise InputError(f"material_index {describe(index)} (dtype {index.dtype}): expected integer indices "
                             f"into materials (0..{len(mats) - 1})")
        imin, imax = int(index.min()), int(index.max())
        if imin < 0 or imax >= len(mats):
            raise InputError(f"material_index (values {imin}..{imax}) out of range: expected indices "
                             f"0..{len(mats) - 1} into the {len(mats)} materials")

        self._density = frozen(np.ascontiguousarray(dens32))
        self._material_index = frozen(np.array(index, dtype=np.int32, order="C", copy=True))
        self._materials = mats
        self._spacing_mm = spacing
        self._origin_mm = origin
        self._direction = dirs
        self._voxel_mass_kg: np.ndarray | None = None

    # ---- constructors ----------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, density_g_cm3: Any, material_index: Any, materials: Sequence[MaterialLike],
                    spacing_mm: Sequence[float], origin_mm: Sequence[float] = (0.0, 0.0, 0.0),
                    direction: Sequence[float] | None = None) -> Phantom:
        """A phantom from arrays.

        Parameters
        ----------
        density_g_cm3 : array [z, y, x]
            Mass density (g/cm3) per voxel; finite, > 0.
        material_index : integer array [z, y, x]
            Index of each voxel's material in ``materials``.
        materials : list of str or Material
            Built-in names (``"water"``, ``"air"``, ``"lung"``, ``"adipose"``, ``"soft_tissue"``,
            ``"muscle"``, ``"red_marrow"``, ``"spongiosa"``, ``"cortical_bone"``, ...) or
            :class:`rptdose.physics.materials.Material` objects.
        spacing_mm : (sx, sy, sz)
            Voxel size in mm, (x, y, z) order.
        origin_mm : (x, y, z), optional
            Position of the centre of voxel [0, 0, 0] in mm.
        direction : 9 floats or 3x3, optional
            Direction cosines (SimpleITK order); identity by default.
        """
        return cls(density_g_cm3, material_index, materials, spacing_mm, origin_mm, direction)

    @classmethod
    def water(cls, shape: Sequence[int], spacing_mm: Sequence[float],
              origin_mm: Sequence[float] = (0.0, 0.0, 0.0)) -> Phantom:
        """A homogeneous water phantom of ``shape`` (nz, ny, nx) voxels of ``spacing_mm`` (x, y, z).

        The density is the nominal density of the built-in material ``"water"`` (1.0 g/cm3).
        """
        from rptdose.physics.materials import get_material

        if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, np.ndarray)) or len(shape) != 3:
            raise InputError(f"shape {describe(shape)} (not 3 values): expected (nz, ny, nx) voxel counts")
        dims = []
        for axis, n in zip("zyx", shape):
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) < 1:
                raise InputError(f"shape {tuple(shape)} ({axis} count {n!r}): expected (nz, ny, nx) "
                                 "positive integers")
            dims.append(int(n))
        if np.prod(dims, dtype=np.float64) > 2**31 - 1:
            raise InputError(f"shape {tuple(dims)} (too many voxels): expected at most {2**31 - 1} voxels")
        water = get_material("water")
        density = np.full(dims, water.density_g_cm3, dtype=np.float32)
        index = np.zeros(dims, dtype=np.int32)
        return cls(density, index, [water], spacing_mm, origin_mm)

    @classmethod
    def from_ct(cls, ct: sitk.Image | str | os.PathLike, calibration: HUCalibration | None = None,
                *, series_uid: str | None = None) -> Phantom:
        """A phantom from a CT: HU -> density and material with ``calibration``.

        Parameters
        ----------
        ct : SimpleITK.Image, or path
            A 3-D CT image in HU (SimpleITK image), a file SimpleITK reads (MetaImage ``.mha`` /
            ``.mhd``, NIfTI ``.nii`` / ``.nii.gz``, NRRD), or a folder holding a DICOM CT series.
            It must be a CT volume (:func:`rptdose.io.ct.read_ct`): DICOM files of another
            modality or SOP class (an NM/SPECT or PET file, a secondary capture) are refused, since
            their pixel values are not HU, and so is a single slice (at least 2 voxels per axis).
        calibration : HUCalibration, optional
            Default :meth:`HUCalibration.schneider2000`. Any object with
            ``apply(hu) -> (density float32, material_index int32, materials)`` works.
        series_uid : str, optional
            The SeriesInstanceUID to read when a DICOM folder holds several series.

        The phantom takes the CT's spacing, origin and direction.
        """
        import SimpleITK as sitk

        from rptdose.io.ct import read_ct

        image = read_ct(ct, series_uid=series_uid)
        if calibration is None:
            from rptdose.physics.materials import HUCalibration

            calibration = HUCalibration.schneider2000()
        elif not callable(getattr(calibration, "apply", None)):
            raise InputError(f"calibration {describe(calibration)} (no apply method): expected a "
                             "rptdose.physics.materials.HUCalibration")
        hu = sitk.GetArrayViewFromImage(image)
        density, index, materials = calibration.apply(hu)
        return cls(density, index, materials, image.GetSpacing(), image.GetOrigin(), image.GetDirection())

    # ---- properties ------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape (nz, ny, nx)."""
        return tuple(int(n) for n in self._density.shape)  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size (sx, sy, sz) in mm."""
        return self._spacing_mm

    @property
    def origin_mm(self) -> tuple[float, float, float]:
        """Centre of voxel [0, 0, 0] (x, y, z) in mm."""
        return self._origin_mm

    @property
    def direction(self) -> tuple[float, ...]:
        """Direction cosines, 9 floats row-major (SimpleITK order)."""
        return self._direction

    @property
    def density(self) -> np.ndarray:
        """Mass density (g/cm3), float32 [z, y, x], read-only."""
        return self._density

    @property
    def material_index(self) -> np.ndarray:
        """Material of each voxel (index into :attr:`materials`), int32 [z, y, x], read-only."""
        return self._material_index

    @property
    def materials(self) -> list[Material]:
        """The materials (a copy of the list)."""
        return list(self._materials)

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel (mm3)."""
        sx, sy, sz = self._spacing_mm
        return sx * sy * sz

    @property
    def voxel_mass_kg(self) -> np.ndarray:
        """Mass of each voxel (kg), float64 [z, y, x], read-only:
        density [g/cm3] * volume [mm3] * 1e-3 [cm3/mm3] * 1e-3 [kg/g]."""
        if self._voxel_mass_kg is None:
            mass = self._density.astype(np.float64) * (self.voxel_volume_mm3 * 1e-6)
            self._voxel_mass_kg = frozen(mass)
        return self._voxel_mass_kg

    @property
    def geometry(self) -> dict[str, tuple]:
        """{"shape", "spacing_mm", "origin_mm", "direction"}: the grid without the data."""
        return {"shape": self.shape, "spacing_mm": self.spacing_mm, "origin_mm": self.origin_mm,
                "direction": self.direction}

    # ---- helpers ---------------------------------------------------------------------------
    def to_sitk(self, array: Any) -> sitk.Image:
        """Wrap a [z, y, x] array of this phantom's shape as a SimpleITK image on its grid."""
        return grid_to_sitk(array, self.shape, self.spacing_mm, self.origin_mm, self.direction)

    def __repr__(self) -> str:
        names = ", ".join(m.name for m in self._materials[:4]) + (", ..." if len(self._materials) > 4 else "")
        return (f"Phantom(shape={self.shape}, spacing_mm={self.spacing_mm}, origin_mm={self.origin_mm}, "
                f"materials=[{names}])")


def grid_to_sitk(array: Any, shape: tuple[int, ...], spacing_mm: Sequence[float],
                 origin_mm: Sequence[float], direction: Sequence[float], name: str = "array") -> sitk.Image:
    """A SimpleITK image of a [z, y, x] array with the given geometry (bool arrays become uint8)."""
    import SimpleITK as sitk

    arr = as_grid_array(name, array, shape=tuple(shape))
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    image.SetSpacing(tuple(float(v) for v in spacing_mm))
    image.SetOrigin(tuple(float(v) for v in origin_mm))
    image.SetDirection(tuple(float(v) for v in direction))
    return image
