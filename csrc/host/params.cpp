#include "host/params.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <cstring>
#include <type_traits>

#include "cuda/param_arrays.hpp"
#include "physics/types.hpp"

namespace rpt::host {
namespace {

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument(what); }

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << (s.size() == 1 ? ",)" : ")");
  return o.str();
}

const ArrayRef& need(const std::map<std::string, ArrayRef>& m, const std::string& dict,
                     const std::string& key, const std::vector<int64_t>& shape) {
  auto it = m.find(key);
  if (it == m.end()) fail(dict + "['" + key + "'] is missing (expected a float64 array)");
  const ArrayRef& a = it->second;
  if (a.shape != shape)
    fail(dict + "['" + key + "'] has shape " + shape_str(a.shape) + ", expected " +
         shape_str(shape));
  for (int64_t i = 0; i < a.size(); ++i)
    if (!std::isfinite(a.data[i])) fail(dict + "['" + key + "'] contains a non-finite value");
  return a;
}

double need_scalar(const std::map<std::string, double>& m, const std::string& dict,
                   const std::string& key) {
  auto it = m.find(key);
  if (it == m.end()) fail(dict + "['" + key + "'] is missing (expected a float)");
  if (!std::isfinite(it->second)) fail(dict + "['" + key + "'] is not finite");
  return it->second;
}

double g_voxel_alias_max_bytes = 256.0 * 1024 * 1024;

// The alias table's two layouts over n items of which n_pos have weight, whichever is
// smaller: sparse, one column {threshold, item, alias item} per item with weight (12 B each);
// dense, one column {threshold, alias item} per item (8 B each, the column index is the item;
// items without weight have threshold 0), chosen when more than two thirds of the items have
// weight.
bool alias_is_dense(size_t n, size_t n_pos) { return 3 * n_pos > 2 * n; }

double alias_table_bytes(size_t n, size_t n_pos) {
  return alias_is_dense(n, n_pos) ? 8.0 * double(n) : 12.0 * double(n_pos);
}

// Vose's alias method (M. D. Vose, IEEE TSE 17:972, 1991) over the items of weights w (the
// source's voxels or blocks of voxels: build_source), packed for one memory access per draw. A
// column keeps its own item when a uniform 32-bit integer is below its threshold (its
// probability times 2^32, rounded: 2^-33 against the 2^-25 of a float probability), else takes
// its alias item; a full column (p = 1) has its own item as alias, so it is exact. Layout:
// alias_is_dense. Working memory: the table, the column probabilities (8 B) and one work list
// (4 B) per column.
void build_alias(const double* w, int64_t n, std::vector<uint32_t>& table, uint32_t& n_cols,
                 int32_t& dense) {
  size_t n_pos = 0;
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (w[i] > 0.0) {
      ++n_pos;
      total += w[i];
    }
  }
  dense = alias_is_dense(size_t(n), n_pos) ? 1 : 0;
  const size_t m = dense ? size_t(n) : n_pos;
  const size_t stride = dense ? 2 : 3;
  const size_t own = dense ? 0 : 1;  // word holding the column's item (sparse only)
  const size_t alt = stride - 1;     // word holding the alias (a column index until the end)
  table.assign(stride * m, 0u);
  std::vector<double> p(m);  // scaled weights, then the final column probabilities
  size_t k = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!dense && !(w[i] > 0.0)) continue;
    if (!dense) table[stride * k + own] = uint32_t(i);
    table[stride * k + alt] = uint32_t(k);  // itself until paired
    p[k] = w[i] > 0.0 ? w[i] * double(m) / total : 0.0;
    ++k;
  }
  // one work list: small columns (p < 1) stacked from the front, large ones from the back
  std::vector<uint32_t> work(m);
  size_t ns = 0, nl = 0;
  for (size_t j = 0; j < m; ++j) {
    if (p[j] < 1.0) work[ns++] = uint32_t(j);
    else work[m - 1 - nl++] = uint32_t(j);
  }
  while (ns > 0 && nl > 0) {
    const uint32_t s = work[--ns];
    const uint32_t l = work[m - nl];
    --nl;
    table[stride * size_t(s) + alt] = l;  // p[s] is final
    p[l] = (p[l] + p[s]) - 1.0;
    if (p[l] < 1.0) work[ns++] = l;
    else work[m - 1 - nl++] = l;
  }
  // leftovers are 1 up to rounding
  for (size_t j = 0; j < ns; ++j) p[work[j]] = 1.0;
  for (size_t j = 0; j < nl; ++j) p[work[m - 1 - j]] = 1.0;
  auto item_of = [&](size_t col) { return dense ? uint32_t(col) : table[stride * col + own]; };
  for (size_t j = 0; j < m; ++j) {
    const double t = std::nearbyint(p[j] * 4294967296.0);
    const bool full = !(t < 4294967295.0);
    table[stride * j] = full ? 0xFFFFFFFFu : uint32_t(t);
    table[stride * j + alt] = full ? item_of(j) : item_of(table[stride * j + alt]);
  }
  n_cols = uint32_t(m);
}

// The source draw (physics/params.hpp SourceView): the alias table over voxels (block = 1),
// unless it would exceed voxel_alias_max_bytes(); then over blocks of
// kSourceBlock voxels, each block's sum formed in voxel order (the order history.hpp
// voxel_in_block sums them in).
void build_source(const double* decays, int64_t n_voxels, uint32_t n_with_decays,
                  std::vector<double>& block_weight, std::vector<uint32_t>& table, SourceView& s) {
  const double voxel_table = alias_table_bytes(size_t(n_voxels), n_with_decays);
  s.block = voxel_table > voxel_alias_max_bytes() ? kSourceBlock : 1;
  if (s.block == 1) {
    block_weight.clear();
    build_alias(decays, n_voxels, table, s.n_src, s.alias_dense);
    s.decays = nullptr;
    s.block_weight = nullptr;
  } else {
    const int64_t nb = (n_voxels + s.block - 1) / s.block;
    block_weight.assign(size_t(nb), 0.0);
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t v1 = std::min(n_voxels, (b + 1) * int64_t(s.block));
      double c = 0.0;
      for (int64_t v = b * int64_t(s.block); v < v1; ++v) c += decays[v];
      block_weight[size_t(b)] = c;
    }
    build_alias(block_weight.data(), nb, table, s.n_src, s.alias_dense);
    s.decays = decays;
    s.block_weight = block_weight.data();
  }
  s.alias = table.data();
}

}  // namespace

Precision parse_precision(const std::string& name) {
  if (name == "double") return Precision::kDouble;
  if (name == "single") return Precision::kSingle;
  fail("precision: '" + name + "', expected 'double' or 'single'");
}

const char* precision_name(Precision p) { return p == Precision::kSingle ? "single" : "double"; }

ParamsT<float> single_precision_params(const Params& p, std::vector<std::vector<float>>& store) {
  store.clear();
  store.reserve(32);
  auto conv = [&store](const double* src, size_t n) -> const float* {
    if (src == nullptr || n == 0) return nullptr;
    store.emplace_back(src, src + n);  // each value rounded to the nearest float
    return store.back().data();
  };
  ParamsT<float> f{};
  const TableView& t = p.tab;
  TableViewT<float>& u = f.tab;
  u.n_mat = t.n_mat;
  u.n_e = t.n_e;
  u.ln_e_min = float(t.ln_e_min);
  u.inv_dln_e = float(t.inv_dln_e);
  u.dln_e = float(t.dln_e);
  u.n_sf = t.n_sf;
  u.sf_lnx_min = float(t.sf_lnx_min);
  u.sf_inv_dlnx = float(t.sf_inv_dlnx);
  u.sf_lnx_max = float(t.sf_lnx_max);
  u.n_coh = t.n_coh;
  u.el_wcc = float(t.el_wcc);
  u.brems_kc = float(t.brems_kc);
  u.brems_nu = t.brems_nu;
  u.ms_n = t.ms_n;
  u.ms_ln_mean_min = float(t.ms_ln_mean_min);
  u.ms_inv_dln = float(t.ms_inv_dln);
  u.ms_mean_max = float(t.ms_mean_max);
  f.src = p.src;  // shared: the source is drawn in double in both precisions
  // Woodcock tracking needs majorant >= the voxel's mu_photo + mu_incoh + mu_coh as the float
  // transport sums them: the double majorant (1e-9 above them) rounds within a few 1e-7, so
  // it is raised by 1e-5 (that many more virtual collisions, no bias).
  std::vector<double> maj(t.majorant, t.majorant + t.n_e);
  for (double& v : maj) v *= 1.0 + 1e-5;
  // The arrays: the one list of them (cuda/param_arrays.hpp visit_param_arrays), walked over
  // the double parameters and then over the float ones in the same order; the tables (double
  // there, float here) are rounded to float, the rest (phantom, source) shared.
  struct Array {
    const char* name;
    const void* data;
    size_t count;
    bool is_double;
  };
  std::vector<Array> arrays;
  Params pd = p;  // visited for its pointers only
  gpu::visit_param_arrays(pd, 0, [&arrays](const char* name, auto& ptr, size_t count) {
    using T = std::remove_cv_t<std::remove_pointer_t<std::remove_reference_t<decltype(ptr)>>>;
    arrays.push_back({name, ptr, count, std::is_same<T, double>::value});
  });
  size_t next = 0;
  gpu::visit_param_arrays(f, 0, [&](const char* name, auto& ptr, size_t) {
    using T = std::remove_cv_t<std::remove_pointer_t<std::remove_reference_t<decltype(ptr)>>>;
    const Array& a = arrays.at(next++);
    if (std::strcmp(a.name, name) != 0) fail(std::string("single_precision_params: array ") + name + " out of order");
    if constexpr (std::is_same<T, float>::value) {
      if (a.is_double) {
        const double* from = std::strcmp(name, "majorant") == 0 ? maj.data() : static_cast<const double*>(a.data);
        ptr = conv(from, a.count);
        return;
      }
    }
    ptr = static_cast<const T*>(a.data);
  });
  // the range tables are inverted by bisection (physics/tables.hpp index_from_range) and must
  // stay strictly increasing in float: with steps of ~3 % between grid points they do; a tie
  // (not seen with the shipped tables) would become the next float up
  for (const float* r : {u.el_range, u.pos_range}) {
    float* w = const_cast<float*>(r);  // points into `store`
    for (int32_t m = 0; m < u.n_mat; ++m)
      for (int32_t i = 1; i < u.n_e; ++i) {
        float& x = w[size_t(m) * u.n_e + i];
        const float prev = w[size_t(m) * u.n_e + i - 1];
        if (!(x > prev)) x = std::nextafter(prev, std::numeric_limits<float>::infinity());
      }
  }

  const GridView& g = p.grid;
  f.grid.nx = g.nx; f.grid.ny = g.ny; f.grid.nz = g.nz;
  f.grid.sx = float(g.sx); f.grid.sy = float(g.sy); f.grid.sz = float(g.sz);

  const Settings& st = p.set;
  f.set.el_cut = float(st.el_cut);
  f.set.ph_cut = float(st.ph_cut);
  f.set.electron_transport = st.electron_transport;
  f.set.max_loss_fraction = float(st.max_loss_fraction);
  // a float coordinate x has an ulp <= x 2^-23: the push past a face is 4 ulp of the grid's
  // largest coordinate (2.9e-4 mm on a 614 mm grid), so that a pushed particle is past the
  // face after rounding, and the shortest boundary-limited step is at least that
  const double extent = std::max({double(g.nx) * g.sx, double(g.ny) * g.sy, double(g.nz) * g.sz});
  const double push = std::max(st.boundary_push, extent * std::ldexp(1.0, -21));
  f.set.boundary_push = float(push);
  f.set.min_step_mm = float(std::max(st.min_step_mm, push));
  return f;
}

void LineYields::split(const double* y, int64_t n) {
  whole_line.clear(); whole_count.clear(); frac_line.clear(); frac_hcum.clear();
  double hcum = 0.0;
  for (int64_t l = 0; l < n; ++l) {
    if (!(y[l] >= 0.0) || !std::isfinite(y[l]))
      fail("emissions['line_yield']: line " + std::to_string(l) + " has yield " +
           std::to_string(y[l]) + ", expected a finite value >= 0");
    const double whole = std::floor(y[l]);
    if (whole > double(std::numeric_limits<int32_t>::max()))
      fail("emissions['line_yield']: line " + std::to_string(l) + " yield " +
           std::to_string(y[l]) + " per decay, expected < 2^31");
    if (whole >= 1.0) {
      whole_line.push_back(int32_t(l));
      whole_count.push_back(int32_t(whole));
    }
    const double f = y[l] - whole;
    const double h = -std::log1p(-f);  // hazard of a Bernoulli(f): 1 - exp(-h) = f
    if (f > 0.0 && hcum + h > hcum) {  // a line whose hazard vanishes against the sum
      hcum += h;                       // (probability < 1e-16 of the others') is dropped
      frac_line.push_back(int32_t(l));
      frac_hcum.push_back(hcum);
    }
  }
}

void LineYields::attach(SourceView& s) const {
  s.n_whole = int32_t(whole_line.size());
  s.whole_line = whole_line.data();
  s.whole_count = whole_count.data();
  s.n_frac = int32_t(frac_line.size());
  s.frac_line = frac_line.data();
  s.frac_hcum = frac_hcum.data();
}

double soft_ms_mean(double lambda) {
  // mean of p(mu) = lambda exp(-lambda mu) / (1 - exp(-lambda)) on [0, 1]
  if (lambda < 1e-3) return 0.5 - lambda / 12.0 + lambda * lambda * lambda / 720.0;
  if (lambda > 700.0) return 1.0 / lambda;
  return 1.0 / lambda - 1.0 / std::expm1(lambda);
}

double voxel_alias_max_bytes() { return g_voxel_alias_max_bytes; }

double set_voxel_alias_max_bytes(double bytes) {
  if (!(bytes >= 0.0)) throw std::invalid_argument("voxel_alias_max_bytes: expected >= 0");
  const double old = g_voxel_alias_max_bytes;
  g_voxel_alias_max_bytes = bytes;
  return old;
}

int64_t max_histories(double mean_mev_per_decay) {
  if (!(mean_mev_per_decay > 0.0)) return std::numeric_limits<int64_t>::max();
  double cap = double(std::numeric_limits<int64_t>::max()) * kEnergyUnitMeV;
  return int64_t(std::floor(0.5 * cap / mean_mev_per_decay));
}

TableView make_table_view(const std::map<std::string, ArrayRef>& tables,
                          const std::map<std::string, double>& scalars,
                          std::vector<double>& ms_ln_lambda) {
  const ArrayRef& egrid = [&]() -> const ArrayRef& {
    auto it = tables.find("energy_grid_mev");
    if (it == tables.end()) fail("tables['energy_grid_mev'] is missing");
    return it->second;
  }();
  if (egrid.shape.size() != 1 || egrid.shape[0] < 2) fail("tables['energy_grid_mev']: expected 1-D, >= 2 points");
  const int64_t ne = egrid.shape[0];
  auto mp = tables.find("mu_photo");
  if (mp == tables.end() || mp->second.shape.size() != 2)
    fail("tables['mu_photo'] is missing or not 2-D [materials, energies]");
  const int64_t nm = mp->second.shape[0];
  if (nm < 1 || nm > 65535) fail("tables: number of materials must be 1..65535");

  double lnmin = std::log(egrid.data[0]);
  double lnmax = std::log(egrid.data[ne - 1]);
  double dln = (lnmax - lnmin) / double(ne - 1);
  for (int64_t i = 0; i < ne; ++i) {
    double expect = std::exp(lnmin + dln * double(i));
    if (!(std::fabs(egrid.data[i] - expect) <= 1e-9 * expect))
      fail("tables['energy_grid_mev']: expected a log-uniform grid");
  }
  const std::vector<int64_t> me{nm, ne};
  const ArrayRef& mu_photo = need(tables, "tables", "mu_photo", me);
  const ArrayRef& mu_incoh = need(tables, "tables", "mu_incoh", me);
  const ArrayRef& mu_coh = need(tables, "tables", "mu_coh", me);
  const ArrayRef& el_dedx = need(tables, "tables", "el_dedx_cont", me);
  const ArrayRef& el_range = need(tables, "tables", "el_range_cont", me);
  const ArrayRef& el_hard = need(tables, "tables", "el_sigma_hard", me);
  const ArrayRef& el_tr1 = need(tables, "tables", "el_tr1", me);
  const ArrayRef& el_sig_el = need(tables, "tables", "el_sigma_el", me);
  const ArrayRef& el_inv_lo = need(tables, "tables", "el_el_inv_lo", me);
  const ArrayRef& el_inv_hi = need(tables, "tables", "el_el_inv_hi", me);
  const ArrayRef& el_eta = need(tables, "tables", "el_el_eta", me);
  const ArrayRef& el_mott_b = need(tables, "tables", "el_mott_b", me);
  const ArrayRef& el_mott = need(tables, "tables", "el_mott_c", me);
  const ArrayRef& pos_range = need(tables, "tables", "pos_range_cont", me);
  const ArrayRef& pos_hard = need(tables, "tables", "pos_sigma_hard", me);
  for (int64_t i = 0; i < nm * ne; ++i) {
    if (!(el_sig_el.data[i] >= 0.0) || !(el_tr1.data[i] >= 0.0))
      fail("tables['el_sigma_el'] / tables['el_tr1']: expected finite values >= 0");
    if (!(el_eta.data[i] > 0.0) || !(el_inv_hi.data[i] > 0.0) || !(el_inv_lo.data[i] >= el_inv_hi.data[i]))
      fail("tables['el_el_*']: expected eta > 0 and 1/(mu_c+eta) >= 1/(1+eta) > 0");
    if (!(el_mott.data[i] >= 0.0 && el_mott.data[i] < 10.0))
      fail("tables['el_mott_c']: expected 0 <= pi alpha Z beta < 10");
    if (!(el_mott_b.data[i] >= 0.0 && el_mott_b.data[i] <= 1.0))
      fail("tables['el_mott_b']: expected 0 <= b <= 1");
  }
  for (int64_t m = 0; m < nm; ++m)
    for (int64_t i = 1; i < ne; ++i) {
      if (!(el_range.data[m * ne + i] > el_range.data[m * ne + i - 1]))
        fail("tables['el_range_cont']: expected strictly increasing ranges (material " +
             std::to_string(m) + ")");
      if (!(pos_range.data[m * ne + i] > pos_range.data[m * ne + i - 1]))
        fail("tables['pos_range_cont']: expected strictly increasing ranges (material " +
             std::to_string(m) + ")");
    }
  for (int64_t i = 0; i < nm * ne; ++i)
    if (!(pos_hard.data[i] >= 0.0) || !(pos_range.data[i] > 0.0))
      fail("tables['pos_sigma_hard'] / tables['pos_range_cont']: expected values >= 0 / > 0");
  auto sf = tables.find("incoh_sf");
  if (sf == tables.end() || sf->second.shape.size() != 2 || sf->second.shape[0] != nm ||
      sf->second.shape[1] < 2)
    fail("tables['incoh_sf']: expected shape (materials, n_x)");
  const int64_t nsf = sf->second.shape[1];
  const ArrayRef& incoh_sf = need(tables, "tables", "incoh_sf", {nm, nsf});
  auto cx = tables.find("coh_x2_grid");
  if (cx == tables.end() || cx->second.shape.size() != 1 || cx->second.shape[0] < 2)
    fail("tables['coh_x2_grid']: expected a 1-D array");
  const int64_t ncoh = cx->second.shape[0];
  const ArrayRef& coh_x2 = need(tables, "tables", "coh_x2_grid", {ncoh});
  const ArrayRef& coh_cum = need(tables, "tables", "coh_cum", {nm, ncoh});
  double sf_lnx_min = need_scalar(scalars, "tables", "sf_lnx_min");
  double sf_lnx_max = need_scalar(scalars, "tables", "sf_lnx_max");
  double wcc = need_scalar(scalars, "tables", "el_wcc_mev");
  if (!(sf_lnx_max > sf_lnx_min)) fail("tables: expected sf_lnx_max > sf_lnx_min");
  if (!(wcc > 0.0)) fail("tables['el_wcc_mev']: expected > 0");
  // bremsstrahlung photons (optional: without these entries the radiative loss is all local)
  const double* sig_brems = nullptr;
  const double* brems_rej = nullptr;
  double brems_kc = 0.0;
  int32_t brems_nu = 0;
  if (tables.find("el_sigma_brems") != tables.end() || tables.find("el_brems_rej") != tables.end()) {
    const ArrayRef& sb = need(tables, "tables", "el_sigma_brems", me);
    auto br = tables.find("el_brems_rej");
    if (br == tables.end() || br->second.shape.size() != 2 || br->second.shape[0] != ne ||
        br->second.shape[1] < 2)
      fail("tables['el_brems_rej']: expected shape (energies, n_u >= 2)");
    const int64_t nu = br->second.shape[1];
    const ArrayRef& rej = need(tables, "tables", "el_brems_rej", {ne, nu});
    brems_kc = need_scalar(scalars, "tables", "el_brems_kc_mev");
    if (!(brems_kc >= egrid.data[0] && brems_kc < egrid.data[ne - 1]))
      fail("tables['el_brems_kc_mev']: expected a cut inside the energy grid");
    for (int64_t i = 0; i < nm * ne; ++i)
      if (!(sb.data[i] >= 0.0 && sb.data[i] < 1e6))
        fail("tables['el_sigma_brems']: expected finite values >= 0");
    for (int64_t i = 0; i < ne * nu; ++i)
      if (!(rej.data[i] >= 0.0 && rej.data[i] <= 1.0))
        fail("tables['el_brems_rej']: expected values in [0, 1]");
    sig_brems = sb.data;
    brems_rej = rej.data;
    brems_nu = int32_t(nu);
  }

  // soft multiple-scattering table: ln lambda on a uniform grid of ln <mu>
  const int32_t nw = 1024;
  const double mean_min = 1e-12, mean_max = 0.4999;
  double wl0 = std::log(mean_min), wl1 = std::log(mean_max);
  double wdl = (wl1 - wl0) / double(nw - 1);
  ms_ln_lambda.resize(nw);
  for (int32_t i = 0; i < nw; ++i) {
    double target = std::exp(wl0 + wdl * i);
    double lo = -30.0, hi = 40.0;  // ln lambda bracket; the mean falls as lambda grows
    for (int it = 0; it < 200; ++it) {
      double mid = 0.5 * (lo + hi);
      if (soft_ms_mean(std::exp(mid)) > target) lo = mid; else hi = mid;
    }
    ms_ln_lambda[size_t(i)] = 0.5 * (lo + hi);
  }

  TableView t{};
  t.n_mat = int32_t(nm);
  t.n_e = int32_t(ne);
  t.ln_e_min = lnmin;
  t.dln_e = dln;
  t.inv_dln_e = 1.0 / dln;
  t.mu_photo = mu_photo.data;
  t.mu_incoh = mu_incoh.data;
  t.mu_coh = mu_coh.data;
  t.majorant = nullptr;  // grid-dependent: set by HostRun
  t.n_sf = int32_t(nsf);
  t.sf_lnx_min = sf_lnx_min;
  t.sf_lnx_max = sf_lnx_max;
  t.sf_inv_dlnx = double(nsf - 1) / (sf_lnx_max - sf_lnx_min);
  t.incoh_sf = incoh_sf.data;
  t.n_coh = int32_t(ncoh);
  t.coh_x2 = coh_x2.data;
  t.coh_cum = coh_cum.data;
  t.el_dedx = el_dedx.data;
  t.el_range = el_range.data;
  t.el_sigma_hard = el_hard.data;
  t.el_tr1 = el_tr1.data;
  t.el_sigma_el = el_sig_el.data;
  t.el_el_inv_lo = el_inv_lo.data;
  t.el_el_inv_hi = el_inv_hi.data;
  t.el_el_eta = el_eta.data;
  t.el_mott_b = el_mott_b.data;
  t.el_mott_c = el_mott.data;
  t.pos_range = pos_range.data;
  t.pos_sigma_hard = pos_hard.data;
  t.el_wcc = wcc;
  t.brems_kc = brems_kc;
  t.brems_nu = brems_nu;
  t.el_sigma_brems = sig_brems;
  t.brems_rej = brems_rej;
  t.ms_n = nw;
  t.ms_ln_mean_min = wl0;
  t.ms_inv_dln = 1.0 / wdl;
  t.ms_mean_max = mean_max;
  t.ms_ln_lambda = ms_ln_lambda.data();

  return t;
}

HostRun::HostRun(const RunInputs& in) {
  // ---- grid
  if (in.nx <= 0 || in.ny <= 0 || in.nz <= 0) fail("density: expected a non-empty 3-D array");
  n_voxels = int64_t(in.nx) * in.ny * in.nz;
  if (n_voxels >= (int64_t(1) << 32))
    fail("density: grid of " + std::to_string(n_voxels) + " voxels exceeds 2^32 - 1");
  for (double s : {in.sx, in.sy, in.sz})
    if (!(s >= 1e-3 && s <= 1e3))
      fail("spacing_mm: " + std::to_string(s) + " mm is outside the accepted 0.001-1000 mm");
  if (!in.density || !in.material || !in.decays) fail("density/material/decays: null array");

  // grid contents
  auto mp = in.tables.find("mu_photo");
  if (mp == in.tables.end() || mp->second.shape.size() != 2)
    fail("tables['mu_photo'] is missing or not 2-D [materials, energies]");
  const int64_t nm = mp->second.shape[0];
  std::vector<double> rho_max(size_t(nm), 0.0);
  for (int64_t i = 0; i < n_voxels; ++i) {
    float r = in.density[i];
    int32_t m = in.material[i];
    if (!(r > 0.0f) || !std::isfinite(r))
      fail("density: voxel " + std::to_string(i) + " has density " + std::to_string(r) +
           " g/cm3, expected a finite value > 0");
    if (m < 0 || m >= nm)
      fail("material: voxel " + std::to_string(i) + " has index " + std::to_string(m) +
           ", expected 0.." + std::to_string(nm - 1));
    rho_max[size_t(m)] = std::max(rho_max[size_t(m)], double(r));
  }

  // ---- tables
  params.tab = make_table_view(in.tables, in.table_scalars, ms_ln_lambda);
  TableView& t = params.tab;
  const int64_t ne = t.n_e;
  const double* egrid_data = in.tables.at("energy_grid_mev").data;
  // photon majorant (1/mm) over the materials and densities present
  majorant.assign(size_t(ne), 0.0);
  for (int64_t m = 0; m < nm; ++m) {
    if (rho_max[size_t(m)] <= 0.0) continue;
    for (int64_t i = 0; i < ne; ++i) {
      double mu = t.mu_photo[m * ne + i] + t.mu_incoh[m * ne + i] + t.mu_coh[m * ne + i];
      majorant[size_t(i)] = std::max(majorant[size_t(i)], mu * rho_max[size_t(m)] * 0.1);
    }
  }
  for (double& v : majorant) v *= 1.0 + 1e-9;  // rounding guard: stays >= every voxel's mu
  t.majorant = majorant.data();

  // ---- source
  double total = 0.0;
  for (int64_t i = 0; i < n_voxels; ++i) {
    double d = in.decays[i];
    if (!std::isfinite(d) || d < 0.0)
      fail("decays: voxel " + std::to_string(i) + " holds " + std::to_string(d) +
           ", expected a finite value >= 0");
    total += d;
    if (d > 0.0) ++n_source_voxels;
  }
  if (!(total > 0.0)) fail("decays: the total is 0, expected some voxel with decays > 0");
  SourceView& s = params.src;
  build_source(in.decays, n_voxels, n_source_voxels, block_weight, alias_table, s);
  s.beta_yield = need_scalar(in.emission_scalars, "emissions", "beta_yield");
  s.local_mev = need_scalar(in.emission_scalars, "emissions", "local_mev_per_decay");
  if (s.beta_yield < 0.0 || s.local_mev < 0.0)
    fail("emissions: beta_yield and local_mev_per_decay must be >= 0");
  auto bi = in.emissions.find("beta_inv_cdf");
  if (bi == in.emissions.end() || bi->second.shape.size() != 1 || bi->second.shape[0] < 1)
    fail("emissions['beta_inv_cdf']: expected a 1-D array");
  const ArrayRef& binv = need(in.emissions, "emissions", "beta_inv_cdf", bi->second.shape);
  s.n_beta = int32_t(binv.shape[0]);
  s.beta_inv_cdf = binv.data;
  if (s.beta_yield > 0.0 && s.n_beta < 2) fail("emissions['beta_inv_cdf']: expected >= 2 points");
  // positrons (optional: absent = none)
  s.pos_yield = 0.0;
  s.n_pos = 0;
  s.pos_inv_cdf = nullptr;
  const ArrayRef* pinv = nullptr;
  if (in.emission_scalars.count("positron_yield"))
    s.pos_yield = need_scalar(in.emission_scalars, "emissions", "positron_yield");
  if (!(s.pos_yield >= 0.0)) fail("emissions['positron_yield']: expected >= 0");
  if (s.pos_yield > 0.0) {
    auto pi = in.emissions.find("positron_inv_cdf");
    if (pi == in.emissions.end() || pi->second.shape.size() != 1 || pi->second.shape[0] < 2)
      fail("emissions['positron_inv_cdf']: expected a 1-D array of >= 2 points with positron_yield > 0");
    pinv = &need(in.emissions, "emissions", "positron_inv_cdf", pi->second.shape);
    s.n_pos = int32_t(pinv->shape[0]);
    s.pos_inv_cdf = pinv->data;
  }
  auto le = in.emissions.find("line_energy_mev");
  if (le == in.emissions.end() || le->second.shape.size() != 1)
    fail("emissions['line_energy_mev']: expected a 1-D array");
  const int64_t nl = le->second.shape[0];
  const ArrayRef& line_e = need(in.emissions, "emissions", "line_energy_mev", {nl});
  const ArrayRef& line_y = need(in.emissions, "emissions", "line_yield", {nl});
  if (in.n_line_photon != nl || (nl > 0 && !in.line_photon))
    fail("emissions['line_is_photon']: expected an int32 array as long as line_energy_mev");
  lines.split(line_y.data, nl);  // checks the yields
  // Particles above the tables' top are accepted up to twice it and transported with the
  // tables' values at the top (the look-ups clamp; rptdose.physics.nuclides says what that means
  // and records the energy concerned).
  const double e_top = 2.0 * egrid_data[ne - 1];
  max_mev_per_decay = s.local_mev;
  mean_mev_per_decay = s.local_mev;
  if (s.beta_yield > 0.0) {
    double bmax = 0.0;
    for (int32_t i = 0; i < s.n_beta; ++i) {
      if (binv.data[i] < 0.0 || binv.data[i] > e_top)
        fail("emissions['beta_inv_cdf']: energies must lie in 0.." + std::to_string(e_top) + " MeV");
      if (i > 0 && binv.data[i] < binv.data[i - 1])
        fail("emissions['beta_inv_cdf']: expected non-decreasing energies");
      bmax = std::max(bmax, binv.data[i]);
    }
    max_mev_per_decay += std::ceil(s.beta_yield) * bmax;
    double bmean = 0.0;  // mean of the inverse CDF on its uniform grid (trapezoid rule)
    for (int32_t i = 0; i + 1 < s.n_beta; ++i) bmean += 0.5 * (binv.data[i] + binv.data[i + 1]);
    mean_mev_per_decay += s.beta_yield * bmean / double(s.n_beta - 1);
  }
  if (s.pos_yield > 0.0) {
    // each positron also brings 2 m_e c^2 when it annihilates (electron.hpp)
    const double annihilation = 2.0 * kElectronMassMeV;
    double pmax = 0.0, pmean = 0.0;
    for (int32_t i = 0; i < s.n_pos; ++i) {
      if (pinv->data[i] < 0.0 || pinv->data[i] > e_top)
        fail("emissions['positron_inv_cdf']: energies must lie in 0.." + std::to_string(e_top) + " MeV");
      if (i > 0 && pinv->data[i] < pinv->data[i - 1])
        fail("emissions['positron_inv_cdf']: expected non-decreasing energies");
      pmax = std::max(pmax, pinv->data[i]);
      if (i + 1 < s.n_pos) pmean += 0.5 * (pinv->data[i] + pinv->data[i + 1]);
    }
    max_mev_per_decay += std::ceil(s.pos_yield) * (pmax + annihilation);
    mean_mev_per_decay += s.pos_yield * (pmean / double(s.n_pos - 1) + annihilation);
  }
  for (int64_t l = 0; l < nl; ++l) {
    if (!(line_e.data[l] > 0.0 && line_e.data[l] <= e_top))
      fail("emissions['line_energy_mev']: line " + std::to_string(l) + " at " +
           std::to_string(line_e.data[l]) + " MeV is outside 0.." + std::to_string(e_top) + " MeV");
    max_mev_per_decay += std::ceil(line_y.data[l]) * line_e.data[l];
    mean_mev_per_decay += line_y.data[l] * line_e.data[l];
  }
  if (!(max_mev_per_decay > 0.0)) fail("emissions: the source emits no energy");
  s.n_lines = int32_t(nl);
  s.line_e = line_e.data;
  s.line_photon = in.line_photon;
  lines.attach(s);

  Settings& st = params.set;
  st.el_cut = need_scalar(in.emission_scalars, "emissions", "el_cut_mev");
  st.ph_cut = need_scalar(in.emission_scalars, "emissions", "ph_cut_mev");
  if (!(st.el_cut >= egrid_data[0] * (1 - 1e-9)) || !(st.ph_cut >= egrid_data[0] * (1 - 1e-9)))
    fail("emissions: el_cut_mev and ph_cut_mev must be >= the table's first energy");
  st.electron_transport = in.electron_transport ? 1 : 0;
  st.max_loss_fraction = 0.2;
  st.min_step_mm = 1e-4 * std::min(in.sx, std::min(in.sy, in.sz));
  st.boundary_push = 1e-7;  // mm: small against any voxel, large against double rounding (< 1e4 mm)

  GridView& g = params.grid;
  g.nx = in.nx; g.ny = in.ny; g.nz = in.nz;
  g.sx = in.sx; g.sy = in.sy; g.sz = in.sz;
  g.density = in.density;
  g.material = in.material;

  params_f32 = single_precision_params(params, f32_tables);
}

}  // namespace rpt::host
