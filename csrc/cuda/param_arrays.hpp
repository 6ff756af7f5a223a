// Every array a rpt::Params points to, with its element count: one list, used to copy a run's
// parameters to a device (rptdose._core_cuda), to export them for the cupy backend
// (_core.prepare_run), by the emulation, and to make the single-precision parameters
// (host/params.cpp single_precision_params). Host-only C++ (no CUDA headers).
#pragma once
#include <cstddef>
#include <cstdint>

#include "physics/params.hpp"

namespace rpt::gpu {

// Calls f(name, pointer_field, count) for each array of `p`, where pointer_field is a reference
// to the `const T*` member (so f may read the host data and replace the pointer) and count the
// number of elements of type T (0 for an empty array, whose pointer may be null). For either
// precision (the tables' T is Real; the source's arrays are double in both).
template <class Real, class F>
void visit_param_arrays(ParamsT<Real>& p, int64_t n_voxels, F&& f) {
  GridViewT<Real>& g = p.grid;
  TableViewT<Real>& t = p.tab;
  SourceView& s = p.src;
  const size_t nv = size_t(n_voxels);
  const size_t me = size_t(t.n_mat) * size_t(t.n_e);
  f("density", g.density, nv);
  f("material", g.material, nv);
  f("mu_photo", t.mu_photo, me);
  f("mu_incoh", t.mu_incoh, me);
  f("mu_coh", t.mu_coh, me);
  f("majorant", t.majorant, size_t(t.n_e));
  f("incoh_sf", t.incoh_sf, size_t(t.n_mat) * size_t(t.n_sf));
  f("coh_x2", t.coh_x2, size_t(t.n_coh));
  f("coh_cum", t.coh_cum, size_t(t.n_mat) * size_t(t.n_coh));
  f("el_dedx", t.el_dedx, me);
  f("el_range", t.el_range, me);
  f("el_sigma_hard", t.el_sigma_hard, me);
  f("el_tr1", t.el_tr1, me);
  f("el_sigma_el", t.el_sigma_el, me);
  f("el_el_inv_lo", t.el_el_inv_lo, me);
  f("el_el_inv_hi", t.el_el_inv_hi, me);
  f("el_el_eta", t.el_el_eta, me);
  f("el_mott_b", t.el_mott_b, me);
  f("el_mott_c", t.el_mott_c, me);
  f("pos_range", t.pos_range, me);
  f("pos_sigma_hard", t.pos_sigma_hard, me);
  f("el_sigma_brems", t.el_sigma_brems, t.brems_nu > 0 ? me : 0);
  f("brems_rej", t.brems_rej, t.brems_nu > 0 ? size_t(t.n_e) * size_t(t.brems_nu) : 0);
  f("ms_ln_lambda", t.ms_ln_lambda, size_t(t.ms_n));
  f("alias", s.alias, (s.alias_dense ? 2 : 3) * size_t(s.n_src));
  f("decays", s.decays, s.block > 1 ? nv : 0);
  f("block_weight", s.block_weight, s.block > 1 ? (nv + s.block - 1) / s.block : 0);
  f("beta_inv_cdf", s.beta_inv_cdf, size_t(s.n_beta));
  f("pos_inv_cdf", s.pos_inv_cdf, size_t(s.n_pos));
  f("line_e", s.line_e, size_t(s.n_lines));
  f("line_photon", s.line_photon, size_t(s.n_lines));
  f("whole_line", s.whole_line, size_t(s.n_whole));
  f("whole_count", s.whole_count, size_t(s.n_whole));
  f("frac_line", s.frac_line, size_t(s.n_frac));
  f("frac_hcum", s.frac_hcum, size_t(s.n_frac));
}

}  // namespace rpt::gpu
