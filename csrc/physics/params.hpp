// Read-only parameters of a run: the grid, the physics tables, the source. Plain pointers so
// the same struct describes host memory (CPU backend) or device memory (CUDA backends).
// Filled and validated on the host by csrc/host/params.cpp; never modified during transport.
//
// Precision: the grid, table and settings views are templates over the floating type `Real`
// of the transport (ParamsT<double>, the default, or ParamsT<float>: host/params.hpp
// Precision). The host fills ParamsT<double> from the caller's float64 arrays and builds
// ParamsT<float> from it with float copies of the tables; the source draw (SourceView: alias
// table, decay map, line hazards, emission spectra) is shared by both and read in double
// (once per decay), the phantom (float32 density, int32 materials) is the same memory.
#pragma once
#include "macros.hpp"

namespace rpt {

template <class Real>
struct GridViewT {
  int32_t nx, ny, nz;
  Real sx, sy, sz;             // voxel size (mm)
  const float* density;        // [nz*ny*nx] g/cm3
  const int32_t* material;     // [nz*ny*nx] index into the tables' material axis
};

// Tables on a log-uniform energy grid, [material][energy] row-major.
template <class Real>
struct TableViewT {
  int32_t n_mat, n_e;
  Real ln_e_min, inv_dln_e, dln_e;
  // photons (cm2/g)
  const Real* mu_photo;
  const Real* mu_incoh;
  const Real* mu_coh;
  const Real* majorant;        // [n_e] 1/mm, >= density*mu_total of every voxel of the grid
  int32_t n_sf;                // incoherent scattering function S(x)/Z, uniform in ln x
  Real sf_lnx_min, sf_inv_dlnx, sf_lnx_max;
  const Real* incoh_sf;        // [n_mat*n_sf]
  int32_t n_coh;               // coherent form factor: cumulative of F^2 over x^2
  const Real* coh_x2;          // [n_coh] 1/Angstrom^2
  const Real* coh_cum;         // [n_mat*n_coh]
  // electrons
  const Real* el_dedx;         // continuous-loss stopping power (MeV cm2/g)
  const Real* el_range;        // range with that stopping power (g/cm2)
  const Real* el_sigma_hard;   // Moller cross section above el_wcc (cm2/g)
  const Real* el_tr1;          // soft part of the first transport cross section (cm2/g)
  // hard elastic events (mu = (1-cos)/2 > mu_c), physics/electron.py hard_elastic_parameters:
  // density (1 - mott_b mu + mott_c (sqrt(mu) - mu)) / (mu + eta)^2 on [mu_c, 1]
  const Real* el_sigma_el;     // hard elastic cross section (cm2/g)
  const Real* el_el_inv_lo;    // 1 / (mu_c + eta)
  const Real* el_el_inv_hi;    // 1 / (1 + eta)
  const Real* el_el_eta;       // effective screening parameter eta
  const Real* el_mott_b;       // beta^2 x weight of the elements with a Mott factor
  const Real* el_mott_c;       // pi alpha Z_eff beta (McKinley-Feshbach Mott factor)
  // positrons: range with the Bhabha restricted stopping power, Bhabha cross section above
  // el_wcc (the elastic tables above serve both charges: physics/electron.py)
  const Real* pos_range;       // g/cm2
  const Real* pos_sigma_hard;  // cm2/g
  Real el_wcc;                 // Moller cut (MeV)
  // bremsstrahlung above brems_kc (physics/electron.py; absent tables: brems_kc = 0 and no
  // photons, the whole radiative loss then being in el_range): number cross section (cm2/g)
  // and the material-independent rejection table of the photon energy,
  // [n_e][brems_nu] X(T,k)/max X at k = kc (T/kc)^u, u = j/(brems_nu-1)
  Real brems_kc;               // MeV (0: no bremsstrahlung photons)
  int32_t brems_nu;
  const Real* el_sigma_brems;  // [n_mat*n_e] or null
  const Real* brems_rej;       // [n_e*brems_nu] or null
  // soft multiple scattering: ln lambda of p(mu) ~ exp(-lambda mu) on [0,1] as a function of
  // ln <mu>, mu = (1-cos)/2 (host-built)
  int32_t ms_n;
  Real ms_ln_mean_min, ms_inv_dln, ms_mean_max;
  const Real* ms_ln_lambda;    // [ms_n]
};

// Source voxels are drawn with an alias table (host/params.cpp build_source) over blocks of
// `block` consecutive voxels (linear index (z*ny + y)*nx + x), in proportion to each block's
// decays. block = 1 (the table over voxels, 8-12 B per voxel with decays) unless that table
// would exceed 256 MiB (host::voxel_alias_max_bytes); then block = kSourceBlock, and the voxel
// inside the drawn block is found by summing its decays in order up to u times the block's sum
// (history.hpp voxel_in_block): the decay map itself is the second stage's table, and the
// source costs ~0.5 B per voxel beyond it.
constexpr uint32_t kSourceBlock = 32;

struct SourceView {
  // Walker/Vose alias table over n_src columns; a column gives its own block when a uniform
  // u32 < threshold, else its alias block. Sparse (alias_dense 0): [3 n_src]
  // {threshold, block, alias block}, one column per block with decays. Dense (1): [2 n_src]
  // {threshold, alias block}, one column per block, the column index being the block.
  uint32_t n_src;
  int32_t alias_dense;
  const uint32_t* alias;
  uint32_t block;              // voxels per block: 1 or kSourceBlock
  const double* decays;        // [n_voxels] the decay map (read in place on the CPU); block > 1
  const double* block_weight;  // [ceil(n_voxels / block)] each block's decays summed in order; block > 1
  double beta_yield;           // expected betas per decay
  int32_t n_beta;
  const double* beta_inv_cdf;  // [n_beta] energy (MeV) at u = i/(n_beta-1)
  double pos_yield;            // expected positrons (beta+) per decay
  int32_t n_pos;
  const double* pos_inv_cdf;   // [n_pos] positron kinetic energy (MeV) at u = i/(n_pos-1)
  int32_t n_lines;
  const double* line_e;        // MeV
  const int32_t* line_photon;  // 1 photon, 0 electron
  // yield y = floor(y) + f of each line: the whole parts are emitted every decay, the
  // fractional parts are independent Bernoulli(f) draws (see history.hpp sample_lines)
  int32_t n_whole;             // lines with floor(y) >= 1
  const int32_t* whole_line;   // [n_whole] line index
  const int32_t* whole_count;  // [n_whole] floor(y)
  int32_t n_frac;              // lines with f > 0
  const int32_t* frac_line;    // [n_frac] line index
  const double* frac_hcum;     // [n_frac] cumulative hazard sum_{j<=k} -ln(1 - f_j), increasing
  double local_mev;            // expected energy of sub-cut lines, deposited at the decay site
};

template <class Real>
struct SettingsT {
  Real el_cut;                 // electrons at or below this deposit locally (MeV)
  Real ph_cut;                 // photons at or below this deposit locally (MeV)
  int32_t electron_transport;  // 0: all electrons deposit at their creation point
  Real max_loss_fraction;      // electron step limited to this fraction of the residual range
  Real min_step_mm;            // shortest boundary-limited electron step (avoids grazing stalls)
  // push past a voxel face after a boundary-limited step (mm): small against any voxel, large
  // against the rounding of the coordinates (double: 1e-7 mm; float: a few ulp of the largest
  // coordinate of the grid, host/params.cpp)
  Real boundary_push;
};

template <class Real>
struct ParamsT {
  GridViewT<Real> grid;
  TableViewT<Real> tab;
  SourceView src;
  SettingsT<Real> set;
};

using GridView = GridViewT<double>;
using TableView = TableViewT<double>;
using Settings = SettingsT<double>;
using Params = ParamsT<double>;

}  // namespace rpt
