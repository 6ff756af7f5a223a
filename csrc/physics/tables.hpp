// Table look-ups: linear interpolation in ln(E) on the shared log-uniform energy grid, in the
// precision `Real` of the table view (params.hpp).
#pragma once
#include "params.hpp"

namespace rpt {

template <class Real>
struct EIndexT {
  int32_t i;   // lower grid point
  Real f;      // fraction towards i+1
};
using EIndex = EIndexT<double>;

template <class Real>
RPT_INLINE EIndexT<Real> energy_index(const TableViewT<Real>& t, Real e) {
  Real x = (real_log(e) - t.ln_e_min) * t.inv_dln_e;
  if (x <= Real(0)) return EIndexT<Real>{0, Real(0)};
  int32_t i = int32_t(x);
  if (i >= t.n_e - 1) return EIndexT<Real>{t.n_e - 2, Real(1)};
  return EIndexT<Real>{i, x - Real(i)};
}

template <class Real>
RPT_INLINE Real lookup(const Real* table, const TableViewT<Real>& t, int32_t mat, EIndexT<Real> k) {
  const Real* row = table + size_t(mat) * size_t(t.n_e);
  return row[k.i] + k.f * (row[k.i + 1] - row[k.i]);
}

template <class Real>
RPT_INLINE Real lookup1(const Real* row, EIndexT<Real> k) {
  return row[k.i] + k.f * (row[k.i + 1] - row[k.i]);
}

// Table index (what energy_index would return) of the energy whose range (g/cm2) in material
// `mat` is `range_g`, from the range table `range_tab` (TableView el_range for electrons,
// pos_range for positrons) alone (no log, no exp): the grid interval, then the
// inverse of the same linear interpolation. `hint` is a grid index at or above the answer's (an
// electron that has just slowed down: the index of its previous energy + 1): the interval is
// searched downwards from it, which takes one or two comparisons for a condensed-history step.
// The interval found is the one a full binary search finds, so the result does not depend on
// the hint. Below the grid: {0, 0}; above it: its last point.
template <class Real>
RPT_INLINE EIndexT<Real> index_from_range(const TableViewT<Real>& t, const Real* range_tab,
                                          int32_t mat, Real range_g, int32_t hint) {
  const Real* row = range_tab + size_t(mat) * size_t(t.n_e);
  if (range_g <= row[0]) return EIndexT<Real>{0, Real(0)};
  int32_t hi = t.n_e - 1;
  if (range_g >= row[hi]) return EIndexT<Real>{t.n_e - 2, Real(1)};
  if (hint > hi) hint = hi;
  if (hint < 1) hint = 1;
  int32_t lo;
  if (row[hint] > range_g) {
    // downward scan from the hint: row[lo] <= range_g < row[lo + 1]
    lo = hint - 1;
    int32_t n = 0;
    while (lo > 0 && row[lo] > range_g && ++n < 16) --lo;
    if (row[lo] > range_g) {  // still above: bisect the rest, row[0] < range_g < row[lo]
      hi = lo;
      lo = 0;
      while (hi - lo > 1) {
        int32_t mid = (lo + hi) >> 1;
        if (row[mid] <= range_g) lo = mid; else hi = mid;
      }
    }
  } else {  // the hint was not above the answer: bisect above it
    lo = hint;
    while (hi - lo > 1) {
      int32_t mid = (lo + hi) >> 1;
      if (row[mid] <= range_g) lo = mid; else hi = mid;
    }
  }
  return EIndexT<Real>{lo, (range_g - row[lo]) / (row[lo + 1] - row[lo])};
}

// Energy whose range (g/cm2) in material `mat` is `range_g` (inverse of lookup(range_tab), so
// E(R(E)) == E); `hint` as for index_from_range, and `k_out` receives the energy's table index.
template <class Real>
RPT_INLINE Real energy_from_range(const TableViewT<Real>& t, const Real* range_tab, int32_t mat,
                                  Real range_g, int32_t hint, EIndexT<Real>& k_out) {
  const Real r0 = range_tab[size_t(mat) * size_t(t.n_e)];
  k_out = index_from_range(t, range_tab, mat, range_g, hint);
  if (range_g <= r0) {
    // below the grid: range ~ E^2 at low energy (documented extrapolation; only reached
    // under the tracking cut, where the electron stops anyway)
    return range_g > Real(0) ? real_exp(t.ln_e_min) * real_sqrt(range_g / r0) : Real(0);
  }
  return real_exp(t.ln_e_min + t.dln_e * (Real(k_out.i) + k_out.f));
}

}  // namespace rpt
