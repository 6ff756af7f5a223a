"""Transport tables for the C++ core (docs/core_contract.md), with an on-disk cache.

:func:`transport_tables` returns every photon and electron array of the contract for a list of
materials on the shared energy grid (:func:`energy_grid`), plus ``"provenance"`` (a dict of
strings: library versions, methods, the cache key and a sha256 of the tables).

The tables depend only on the materials' definitions (composition, I, nominal density), the Moller
cut and this module's :data:`TABLE_VERSION` (plus the xraylib version). They are cached as
``<cache dir>/tables/<key>.npz``, the key a sha256 of those inputs; the cache directory is
``$RPTDOSE_CACHE_DIR`` if set, else ``platformdirs.user_cache_dir('rptdose')``. Files are written
atomically (temporary file + os.replace); a file that cannot be read or fails its checksum is
rebuilt. An unwritable cache directory only disables caching.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from ..errors import InputError
from . import electron, photon
from .materials import Material, get_material
from .nuclides import icrp107_version

__all__ = ["NE", "E_MIN_MEV", "E_MAX_MEV", "TABLE_VERSION", "energy_grid", "transport_tables",
           "cache_dir", "ARRAY_KEYS", "SCALAR_KEYS"]

log = logging.getLogger(__name__)

NE = 512  # energy grid points (contract)
E_MIN_MEV, E_MAX_MEV = 1e-3, 3.0  # grid ends (contract)
TABLE_VERSION = "7"  # bump whenever the physics or the layout of the tables changes

# [NM, ...] arrays of the contract, and the scalars / shared 1-D arrays
ARRAY_KEYS = ("mu_photo", "mu_incoh", "mu_coh", "incoh_sf", "coh_cum",
              "el_dedx_cont", "el_range_cont", "el_sigma_hard", "el_tr1", "el_csda_range",
              "el_sigma_el", "el_el_inv_lo", "el_el_inv_hi", "el_el_eta", "el_mott_b", "el_mott_c",
              "pos_dedx_cont", "pos_range_cont", "pos_sigma_hard", "pos_csda_range", "el_sigma_brems")
SCALAR_KEYS = ("sf_lnx_min", "sf_lnx_max", "el_wcc_mev", "el_brems_kc_mev")
_SHARED_KEYS = ("energy_grid_mev", "coh_x2_grid", "el_brems_rej")


def energy_grid() -> np.ndarray:
    """The shared energy grid (MeV): NE = 512 points log-uniform from 1e-3 to 3 MeV, both ends
    included exactly."""
    g = np.exp(np.linspace(np.log(E_MIN_MEV), np.log(E_MAX_MEV), NE))
    g[0], g[-1] = E_MIN_MEV, E_MAX_MEV
    return g


def cache_dir() -> Path:
    """Folder of the table cache ($RPTDOSE_CACHE_DIR, else the user cache folder)."""
    env = os.environ.get("RPTDOSE_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "tables"
    import platformdirs  # noqa: WPS433

    return Path(platformdirs.user_cache_dir("rptdose")) / "tables"


def _cache_key(mats: Sequence[Material], wcc: float) -> str:
    payload = json.dumps({
        "table_version": TABLE_VERSION,
        "xraylib": photon.xraylib_version(),
        "ne": NE, "e_min": E_MIN_MEV, "e_max": E_MAX_MEV,
        "el_wcc_mev": repr(wcc),
        "materials": [m.key() for m in mats],
    }, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _tables_sha256(t: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(set(ARRAY_KEYS) | set(_SHARED_KEYS)):
        a = np.ascontiguousarray(t[k], dtype=np.float64)
        h.update(k.encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    for k in SCALAR_KEYS:
        h.update(f"{k}={float(t[k])!r}".encode())
    return h.hexdigest()


def _build(mats: Sequence[Material], wcc: float, key: str) -> dict:
    e = energy_grid()
    t: dict = {"energy_grid_mev": e}
    t.update(photon.photon_tables(mats, e))
    t.update(electron.electron_tables(mats, e, wcc))
    t["provenance"] = {
        "table_version": TABLE_VERSION,
        "xraylib_version": photon.xraylib_version(),
        "icrp107_database_version": icrp107_version(),
        "numpy_version": np.__version__,
        "materials": json.dumps([m.name for m in mats]),
        "material_definitions": json.dumps([m.key() for m in mats]),
        "energy_grid": f"{NE} points log-uniform {E_MIN_MEV:g}..{E_MAX_MEV:g} MeV",
        "el_wcc_mev": repr(wcc),
        "photon_method": ("xraylib CS_Photo/CS_Compt/CS_Rayl by mass fraction (standard atomic "
                          "weights) to 800 keV; above: Z x Klein-Nishina with a binding factor "
                          "continuous at 800 keV, photo/coherent log-log; no pair production; "
                          "S(x) from SF_Compt, F(x) from FF_Rayl (independent atoms)"),
        "electron_method": ("Bethe collision stopping power (ICRU 37), restricted below el_wcc "
                            "(G4MollerBhabhaModel form), Sternheimer density effect (1984 "
                            "tables for NIST materials, else Sternheimer-Peierls 1971); radiative: "
                            "Koch-Motz 3BN Born, Z(Z+1), continuous below el_brems_kc_mev, photons above it "
                            "(el_sigma_brems, el_brems_rej; dipole angular distribution boosted); ranges by integration with power-law start; "
                            "Moller hard cross section; screened Rutherford transport cross "
                            "section with Moliere screening; positrons: Bhabha restricted stopping "
                            "power and hard cross section (G4MollerBhabhaModel form), the electron's "
                            "radiative loss and elastic scattering"),
        "cache_key": key,
    }
    t["provenance"]["tables_sha256"] = _tables_sha256(t)
    return t


def _check(t: dict, nm: int, key: str) -> None:
    """Raise ValueError if the loaded tables are not what the contract and the key promise."""
    e = t["energy_grid_mev"]
    if e.shape != (NE,):
        raise ValueError("energy grid shape")
    for k in ARRAY_KEYS:
        a = t[k]
        if a.ndim != 2 or a.shape[0] != nm or not np.all(np.isfinite(a)):
            raise ValueError(f"bad array {k}")
    prov = t["provenance"]
    if prov.get("cache_key") != key or prov.get("table_version") != TABLE_VERSION:
        raise ValueError("cache key mismatch")
    if prov.get("tables_sha256") != _tables_sha256(t):
        raise ValueError("checksum mismatch")


def _load(path: Path, nm: int, key: str) -> dict:
    with open(path, "rb") as f:  # own the handle: np.load leaks it on a corrupt file
        z = np.load(f, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with z:
            t = {k: np.ascontiguousarray(z[k], dtype=np.float64) for k in ARRAY_KEYS + _SHARED_KEYS}
            for k in SCALAR_KEYS:
                t[k] = float(z[k])
            t["provenance"] = json.loads(str(z["provenance_json"]))
    _check(t, nm, key)
    return t


def _save(path: Path, t: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(t[k]) for k in ARRAY_KEYS + _SHARED_KEYS + SCALAR_KEYS}
    arrays["provenance_json"] = np.array(json.dumps(t["provenance"], sort_keys=True))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # mkstemp creates 0600; a shared cache should be readable
                os.fchmod(f.fileno(), 0o644)
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


#: Moller cut (MeV): energy transfers above it are explicit delta rays. 2 keV keeps the
#: energy-loss straggling that shapes the end of a 100 keV electron's track (with a 10 keV cut
#: the sub-cut losses, which are continuous, truncate the dose point kernel beyond 0.85 r0).
DEFAULT_EL_WCC_MEV = 0.002


def transport_tables(materials: Sequence[Union[Material, str]], el_wcc_mev: float = DEFAULT_EL_WCC_MEV,
                     use_cache: bool = True) -> dict:
    """Photon and electron transport tables for `materials` (docs/core_contract.md).

    `materials`: :class:`Material` objects or built-in names; the table's material axis follows
    this order. Returns a dict of float64 C-contiguous arrays ([NM, ...] per material, plus
    ``energy_grid_mev`` and ``coh_x2_grid``), the scalars ``sf_lnx_min``, ``sf_lnx_max``,
    ``el_wcc_mev``, and ``provenance`` (dict of str).
    """
    if isinstance(materials, (str, Material)):
        materials = [materials]
    try:
        mats = [get_material(m) for m in materials]
    except TypeError:
        raise InputError(
            f"materials={materials!r} (not a sequence): expected a list of Material objects or names"
        ) from None
    if not mats:
        raise InputError("materials (empty list): expected at least one material")
    try:
        wcc = float(el_wcc_mev)
    except (TypeError, ValueError):
        raise InputError(f"el_wcc_mev={el_wcc_mev!r} (not a number): expected a Moller cut in MeV") from None
    if not (1e-3 <= wcc <= 1.0):
        raise InputError(f"el_wcc_mev={el_wcc_mev!r} (out of range): expected 0.001..1 MeV")
    key = _cache_key(mats, wcc)
    path = None
    if use_cache:
        try:
            path = cache_dir() / f"{key}.npz"
        except Exception as exc:  # platformdirs missing or unusable: no cache
            log.info("rptdose table cache disabled: %s", exc)
    if path is not None and path.exists():
        try:
            return _load(path, len(mats), key)
        except Exception as exc:  # corrupt, truncated, stale: rebuild
            log.warning("rptdose: rebuilding unreadable table cache %s (%s)", path, exc)
    t = _build(mats, wcc, key)
    if path is not None:
        try:
            _save(path, t)
        except OSError as exc:
            log.info("rptdose: could not write table cache %s (%s)", path, exc)
    return t
