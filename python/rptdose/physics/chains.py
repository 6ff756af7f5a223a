"""Decay chains: a nuclide with the radioactive progeny that decays where it did.

Daughters and branching fractions come from the ICRP-107 data set of the PyPI package
``radioactivedecay`` (Malins & Lemoine, Comput Phys Commun 2022; its default data set is ICRP
Publication 107 with AME2020/NUBASE2020 masses), shipped as the table data/icrp107_progeny.csv
(made, and checked, by data/make_progeny_table.py; radioactivedecay is needed only there);
every member's emissions from ICRP-107 through icrp107-database, as for a single nuclide
(:mod:`rptdose.physics.nuclides`).

``chain`` of :class:`rptdose.Source` and of ``[study] chain``:

=================  ==================================================================================
``"equilibrium"``  (the default) the parent and every descendant reached through members shorter-lived
                   than the parent, each with its number of decays per parent decay (the sum over the
                   paths to it of the products of the branching fractions), all at the parent's decay
                   site. The walk stops at a stable nuclide and at a daughter whose half-life is not
                   shorter than the parent's (no equilibrium with it is possible: At-211 -> Bi-207,
                   31.6 y; I-131 -> Xe-131m, 11.9 d; Tc-99m -> Tc-99): such a daughter and its own
                   progeny are left out and named in the chain's note
``"parent"``       the parent alone
=================  ==================================================================================

Why decays per parent decay are branching products: the source map holds the *time-integrated*
number of parent decays (Bq s). Each parent atom that decays makes a daughter atom with the
branching fraction's probability, and that atom decays once, later; integrated over all time the
daughter decays as often as the product of the branching fractions along its path, whatever the
half-lives (Bateman). The assumption is that it decays where the parent did, soon after
("short-lived next to the parent").

Known limit: daughters can leave the parent's site before they decay. For Ac-225, Bi-213
(T1/2 45.6 min) and Pb-209 (3.25 h) are known to redistribute (e.g. to the kidneys) after the
recoil frees them from the carrier molecule, Fr-221 (4.9 min) less so; for Pb-212, Bi-212
(60.6 min; ~36 % escape reported for Pb-212 carriers); for Ra-223, Pb-211 (36.1 min); for Th-227,
Ra-223 itself (11.4 d), whose half-life is close to the parent's, and which goes to bone. The
equilibrium dose is then an upper bound at the parent's site; ``chain="parent"`` gives the
parent's own share, and the member table says how the energy is split.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError, InputError
from .nuclides import (
    NB_BETA,
    Nuclide,
    _check_cuts,
    _invert_cdf,
    available_nuclides,
    check_emission_energies,
    load_nuclide,
)

__all__ = ["CHAIN_OPTIONS", "DEFAULT_CHAIN", "DecayChain", "decay_chain", "check_chain_option"]

#: Accepted values of ``chain``.
CHAIN_OPTIONS = ("equilibrium", "parent")
#: What ``chain=None`` means.
DEFAULT_CHAIN = "equilibrium"

ASSUMPTION = ("all members decay at the parent's decay site, each as often per parent decay as the product of the "
              "branching fractions on its path; daughters that leave the site before decaying (e.g. Bi-213 and "
              "Pb-209 of Ac-225, Bi-212 of Pb-212) make this an upper bound there")


def check_chain_option(chain: Any, what: str = "chain") -> str | None:
    """``chain`` validated: None (the default), "equilibrium" or "parent"; else InputError."""
    if chain is None:
        return None
    if not isinstance(chain, str) or chain.strip().lower() not in CHAIN_OPTIONS:
        raise InputError(f"{what} {chain!r} (unknown chain keyword): expected 'equilibrium' (the daughters decay "
                         "at the parent's site, each with its decays per parent decay) or 'parent' (the parent "
                         "alone)")
    return chain.strip().lower()


#: The shipped progeny table (data/icrp107_progeny.csv, made by data/make_progeny_table.py from
#: radioactivedecay's ICRP-107 data set).
PROGENY_TABLE = "icrp107_progeny.csv"


@functools.lru_cache(maxsize=1)
def _table() -> tuple[str, dict[str, float], dict[str, tuple[tuple[str, float], ...]]]:
    """(source line, {nuclide: half-life s}, {nuclide: ((daughter, branching fraction), ...)}) of
    the shipped progeny table."""
    import csv

    from rptdose._data import data_path

    p = data_path(PROGENY_TABLE)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
        source = lines[0].lstrip("# ").split(";")[0]
        half, progeny = {}, {}
        for row in csv.DictReader(lines[1:]):
            name = row["nuclide"]
            half[name] = float(row["half_life_s"])
            kids = progeny.setdefault(name, [])
            if row["daughter"]:
                kids.append((row["daughter"], float(row["branching_fraction"])))
    except (OSError, KeyError, ValueError, IndexError) as exc:
        raise DataError(f"progeny table '{p}' (unreadable: {exc}): expected the table data/make_progeny_table.py "
                        "writes") from None
    return source, half, {k: tuple(v) for k, v in progeny.items()}


def radioactivedecay_version() -> str:
    """The version of radioactivedecay the shipped progeny table was made with (its first line)."""
    return _table()[0].removeprefix("ICRP-107 progeny and half-lives, from radioactivedecay ").split()[0]


def _progeny(name: str) -> tuple[tuple[str, float], ...]:
    """(daughter, branching fraction) of ``name`` in the ICRP-107 progeny table; () for a nuclide
    it calls stable or does not know."""
    _, half, progeny = _table()
    if not math.isfinite(half.get(name, math.inf)):
        return ()
    return progeny.get(name, ())


def _half_life_s(name: str) -> float:
    """Half-life (s): ICRP-107's (icrp107-database) for nuclides it has, the progeny table's else;
    inf for stable."""
    if name in set(available_nuclides()):
        return float(load_nuclide(name).half_life_s)
    return _table()[1].get(name, math.inf)


def _fmt_t(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "stable"
    for unit, s in (("y", 365.25 * 86400.0), ("d", 86400.0), ("h", 3600.0), ("min", 60.0), ("s", 1.0)):
        if seconds >= s:
            return f"{seconds / s:.4g} {unit}"
    return f"{seconds:.3g} s"


@dataclass(frozen=True)
class DecayChain:
    """A parent nuclide and the members that decay at its site (module docstring).

    Offers the energy interface of :class:`~rptdose.physics.nuclides.Nuclide` (``name``,
    ``half_life_s``, ``source``, ``*_mev_per_decay``, ``mean_energies_mev``,
    ``emission_arrays``) summed over the members, per decay of the parent.
    """

    parent: Nuclide
    mode: str                                           # "equilibrium" or "parent"
    members: tuple[tuple[Nuclide, float], ...]          # (nuclide, decays per parent decay); parent first
    excluded: tuple[tuple[str, float, float], ...] = ()  # (name, half-life s, decays per parent decay)
    requested: str | None = None                        # the chain option given (None: the default)

    # ---- what it is -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.parent.name

    @property
    def half_life_s(self) -> float:
        return float(self.parent.half_life_s)

    @property
    def source(self) -> str:
        text = self.parent.source
        if len(self.members) > 1:
            text += f"; chain from radioactivedecay {radioactivedecay_version()} (ICRP-107 data set)"
        return text

    @property
    def member_names(self) -> tuple[str, ...]:
        return tuple(n.name for n, _ in self.members)

    @property
    def has_daughters(self) -> bool:
        """True when members besides the parent decay at its site."""
        return len(self.members) > 1

    @property
    def note(self) -> str:
        """One sentence on what the chain holds (for provenance, the report and the CLI)."""
        p = self.parent
        if self.mode == "parent":
            daughters = [d for d, _ in _progeny(p.name) if math.isfinite(_half_life_s(d))]
            if daughters:
                return (f"chain 'parent': {p.name} alone; its radioactive progeny "
                        f"({', '.join(daughters)}, ...) is not included")
            return f"chain 'parent': {p.name} alone (it has no radioactive daughters)"
        if not self.has_daughters:
            if self.excluded:
                ex = ", ".join(f"{n} (T1/2 {_fmt_t(t)})" for n, t, _ in self.excluded)
                why = (f"{p.name} has no daughter shorter-lived than itself (T1/2 {_fmt_t(p.half_life_s)}); "
                       f"{ex} not included")
            else:
                why = f"{p.name} has no radioactive daughters"
            return f"chain 'equilibrium': {why}, so the source is {p.name} alone"
        parts = ", ".join(f"{n.name} x{k:.4g}" for n, k in self.members[1:])
        text = (f"chain 'equilibrium': {p.name} with {parts} decays per {p.name} decay, all at the "
                f"{p.name} decay site")
        if self.excluded:
            ex = ", ".join(f"{n} (T1/2 {_fmt_t(t)}, x{k:.4g})" for n, t, k in self.excluded)
            text += f"; not included (not shorter-lived than {p.name}): {ex}"
        return text

    def summary(self) -> dict[str, Any]:
        """JSON-able description for provenance and reports."""
        return {
            "chain": self.mode,
            "requested": self.requested,
            "members": [{"nuclide": n.name, "decays_per_parent_decay": float(k), "half_life_s": float(n.half_life_s),
                         "alpha_recoil_mev_per_decay": float(n.alpha_recoil_mev_per_decay),
                         "total_mev_per_decay": float(n.total_mev_per_decay)}
                        for n, k in self.members],
            "excluded": [{"nuclide": n, "half_life_s": t, "decays_per_parent_decay": k} for n, t, k in self.excluded],
            "note": self.note,
            "assumption": ASSUMPTION if self.has_daughters else None,
            "data": {"progeny": f"radioactivedecay {radioactivedecay_version()} (ICRP-107 data set)",
                     "emissions": self.parent.source},
        }

    # ---- energies per parent decay (MeV) --------------------------------------------------------
    def _sum(self, attr: str) -> float:
        return float(sum(k * getattr(n, attr) for n, k in self.members))

    beta_mev_per_decay = property(lambda self: self._sum("beta_mev_per_decay"))
    positron_mev_per_decay = property(lambda self: self._sum("positron_mev_per_decay"))
    ie_mev_per_decay = property(lambda self: self._sum("ie_mev_per_decay"))
    auger_mev_per_decay = property(lambda self: self._sum("auger_mev_per_decay"))
    gamma_mev_per_decay = property(lambda self: self._sum("gamma_mev_per_decay"))
    xray_mev_per_decay = property(lambda self: self._sum("xray_mev_per_decay"))
    annihilation_mev_per_decay = property(lambda self: self._sum("annihilation_mev_per_decay"))
    alpha_mev_per_decay = property(lambda self: self._sum("alpha_mev_per_decay"))
    recoil_mev_per_decay = property(lambda self: self._sum("recoil_mev_per_decay"))
    alpha_recoil_mev_per_decay = property(lambda self: self._sum("alpha_recoil_mev_per_decay"))
    electron_mev_per_decay = property(lambda self: self._sum("electron_mev_per_decay"))
    photon_mev_per_decay = property(lambda self: self._sum("photon_mev_per_decay"))
    total_mev_per_decay = property(lambda self: self._sum("total_mev_per_decay"))
    beta_yield = property(lambda self: self._sum("beta_yield"))
    positron_yield = property(lambda self: self._sum("positron_yield"))

    def mean_energies_mev(self) -> dict[str, float]:
        """Mean energy per parent decay by emission type (MeV), ICRP-107 values summed."""
        out: dict[str, float] = {}
        for n, k in self.members:
            for key, v in n.mean_energies_mev().items():
                out[key] = out.get(key, 0.0) + k * v
        return out

    # ---- the core's arrays ----------------------------------------------------------------------
    def emission_arrays(self, el_cut_mev: float = 0.01, ph_cut_mev: float = 0.001) -> dict:
        """The emission dict of the core contract for one parent decay with its members.

        Lines: every member's, yields times its decays per parent decay. Beta- (and beta+)
        particles: the members' yields summed, energies from the mixture of their spectra
        weighted by yield x decays (the mixture's CDF on the union of the members' grids,
        inverted): the expected number and energy distribution are exact; within one decay the
        members' particles are not told apart, which leaves expected doses unchanged.
        """
        if not self.has_daughters:
            return self.parent.emission_arrays(el_cut_mev, ph_cut_mev)
        el_cut_mev, ph_cut_mev = _check_cuts(el_cut_mev, ph_cut_mev)
        energies, yields, photons = [], [], []
        local = alpha = 0.0
        beta_parts, pos_parts = [], []
        beta_yield = pos_yield = 0.0
        for nuc, k in self.members:
            em = nuc.raw_emission_arrays(el_cut_mev, ph_cut_mev)
            energies.append(em["line_energy_mev"])
            yields.append(em["line_yield"] * k)
            photons.append(em["line_is_photon"])
            local += k * em["local_mev_per_decay"]
            alpha += k * em["alpha_mev_per_decay"]
            if em["beta_yield"] > 0.0:
                beta_yield += k * em["beta_yield"]
                beta_parts.append((k * em["beta_yield"],) + nuc.spectrum_cdf("beta-"))
            if em.get("positron_yield", 0.0) > 0.0:
                pos_yield += k * em["positron_yield"]
                pos_parts.append((k * em["positron_yield"],) + nuc.spectrum_cdf("beta+"))
        out = {
            "beta_yield": float(beta_yield),
            "beta_inv_cdf": _mixture_inv_cdf(beta_parts) if beta_parts else np.zeros(1, dtype=np.float64),
            "line_energy_mev": np.ascontiguousarray(np.concatenate(energies), dtype=np.float64),
            "line_yield": np.ascontiguousarray(np.concatenate(yields), dtype=np.float64),
            "line_is_photon": np.ascontiguousarray(np.concatenate(photons), dtype=np.int32),
            "local_mev_per_decay": float(local),
            "el_cut_mev": float(el_cut_mev),
            "ph_cut_mev": float(ph_cut_mev),
            "alpha_mev_per_decay": float(alpha),
        }
        if pos_parts:
            out["positron_yield"] = float(pos_yield)
            out["positron_inv_cdf"] = _mixture_inv_cdf(pos_parts)
        return check_emission_energies(self.name, out)

    def __str__(self) -> str:
        return self.note


def _mixture_inv_cdf(parts: list[tuple[float, np.ndarray, np.ndarray]], nb: int = NB_BETA) -> np.ndarray:
    """Inverse CDF of a mixture of spectra: parts are (weight, E grid, normalised CDF)."""
    if len(parts) == 1:
        _, ef, cdf = parts[0]
        return _invert_cdf(ef, cdf, nb)
    grid = np.unique(np.concatenate([ef for _, ef, _ in parts]))
    wsum = sum(w for w, _, _ in parts)
    cdf = sum(w * np.interp(grid, ef, c, left=0.0, right=1.0) for w, ef, c in parts) / wsum
    cdf[-1] = 1.0
    return _invert_cdf(grid, np.maximum.accumulate(cdf), nb)


def decay_chain(nuclide: Any, chain: Any = None) -> DecayChain:
    """The :class:`DecayChain` of ``nuclide`` (a name or a Nuclide) for ``chain`` (None:
    :data:`DEFAULT_CHAIN`, except for a modified Nuclide, e.g. one holding its betas only, which
    is taken as given: "parent"; "equilibrium"; "parent"): the module docstring says what each
    holds.

    Raises InputError for an unknown chain keyword or nuclide, or a member whose ICRP-107 data
    cannot be transported (naming it).
    """
    mode = check_chain_option(chain)
    parent = nuclide if isinstance(nuclide, Nuclide) else load_nuclide(nuclide)
    resolved = mode or DEFAULT_CHAIN
    if mode is None and isinstance(nuclide, Nuclide) and not _is_standard(nuclide):
        resolved = "parent"  # a modified Nuclide (e.g. its betas only) is taken as given
    if resolved == "parent":
        return DecayChain(parent, "parent", ((parent, 1.0),), (), mode)
    return _equilibrium(parent, mode)


def _is_standard(nuc: Nuclide) -> bool:
    """True when ``nuc`` is ICRP-107's data for its name (not a modified copy)."""
    try:
        return load_nuclide(nuc.name) == nuc
    except InputError:
        return False


def _equilibrium(parent: Nuclide, requested: str | None) -> DecayChain:
    t_parent = float(parent.half_life_s)
    known = set(available_nuclides())
    decays: dict[str, float] = {parent.name: 1.0}
    excluded: dict[str, list[float]] = {}
    order = [parent.name]
    # breadth-first over the members in order of discovery; a member's decays are complete before
    # its own daughters are expanded when every path to it is shorter than the later ones (chains
    # are acyclic and short); recompute by repeated passes to be exact for merging branches
    frontier = [parent.name]
    while frontier:
        nxt = []
        for name in frontier:
            for d, bf in _progeny(name):
                t_d = _half_life_s(d)
                if not math.isfinite(t_d):
                    continue  # stable
                if not t_d < t_parent:
                    excluded.setdefault(d, [t_d, 0.0])
                    continue
                if d not in decays:
                    decays[d] = 0.0
                    order.append(d)
                    nxt.append(d)
        frontier = nxt
    # decays per parent decay: sum over paths of products of branching fractions, in an order
    # where every member comes after all its in-chain parents (topological: repeated relaxation)
    for _ in range(len(order) + 1):
        new = {n: 0.0 for n in order}
        new[parent.name] = 1.0
        ex = {n: 0.0 for n in excluded}
        for name in order:
            for d, bf in _progeny(name):
                if d in new and d != parent.name:
                    new[d] += decays[name] * bf
                elif d in ex:
                    ex[d] += decays[name] * bf
        done = all(abs(new[n] - decays[n]) <= 1e-15 for n in order)
        decays = new
        for n, v in ex.items():
            excluded[n][1] = v
        if done:
            break
    members = []
    for name in order:
        if name == parent.name:
            members.append((parent, 1.0))
            continue
        if name not in known:
            raise InputError(f"nuclide {parent.name} (its daughter {name}, x{decays[name]:.4g} per decay, has no "
                             "ICRP-107 emission data in icrp107-database): expected data for every member of an "
                             "equilibrium chain; use chain='parent'")
        try:
            nuc = load_nuclide(name)
        except InputError as exc:
            raise InputError(f"nuclide {parent.name}: its daughter {name} (x{decays[name]:.4g} per decay) cannot be "
                             f"used in an equilibrium chain ({exc}); use chain='parent'") from None
        members.append((nuc, float(decays[name])))
    ex_list = tuple((n, float(t), float(k)) for n, (t, k) in excluded.items())
    return DecayChain(parent, "equilibrium", tuple(members), ex_list, requested)
