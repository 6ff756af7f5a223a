// Host side: raw input arrays -> validated, self-consistent rpt::Params plus the buffers
// derived from them (alias table, photon majorant, multiple-scattering table).
// Every check names the argument and what was expected; errors are std::invalid_argument
// (ValueError in Python). Nothing here runs inside a kernel.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "physics/params.hpp"

namespace rpt::host {

struct ArrayRef {
  const double* data = nullptr;
  std::vector<int64_t> shape;
  int64_t size() const {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
};

// Floating-point precision of the transport (physics/params.hpp ParamsT<Real>). The tallies
// are 64-bit integers of quantised energy in both, so the energy balance is exact in both;
// kDouble is the reference (and the CPU default), kSingle runs the same source instantiated
// for float (fast on GPUs whose FP64 throughput is 1/32-1/64 of FP32's).
enum class Precision : int32_t { kDouble = 0, kSingle = 1 };

// "double" or "single" (else std::invalid_argument naming the argument); and back.
Precision parse_precision(const std::string& name);
const char* precision_name(Precision p);

struct RunInputs {
  int32_t nz = 0, ny = 0, nx = 0;
  double sx = 0, sy = 0, sz = 0;   // mm
  const float* density = nullptr;  // [nz, ny, nx]
  const int32_t* material = nullptr;
  const double* decays = nullptr;
  std::map<std::string, ArrayRef> tables;       // float64 arrays of the physics tables
  std::map<std::string, double> table_scalars;  // el_wcc_mev, sf_lnx_min, sf_lnx_max
  std::map<std::string, ArrayRef> emissions;    // beta_inv_cdf, line_energy_mev, line_yield
  std::map<std::string, double> emission_scalars;  // beta_yield, local_mev_per_decay, cuts
  const int32_t* line_photon = nullptr;
  int64_t n_line_photon = 0;
  bool electron_transport = true;
};

// Line yields y = floor(y) + f split for history.hpp sample_lines: the lines with a whole
// part >= 1 and their counts; the lines with f > 0 and their cumulative hazards
// sum -ln(1 - f) (strictly increasing).
struct LineYields {
  std::vector<int32_t> whole_line, whole_count, frac_line;
  std::vector<double> frac_hcum;
  // Split `n` yields; throws std::invalid_argument naming the line on a bad yield.
  void split(const double* y, int64_t n);
  // Point the line-sampling fields of `s` (n_whole .. frac_hcum) at these buffers.
  void attach(SourceView& s) const;
};

// Owns the derived buffers; `params` points into them and into the caller's arrays, which
// must outlive this object.
class HostRun {
 public:
  explicit HostRun(const RunInputs& in);
  HostRun(const HostRun&) = delete;
  HostRun& operator=(const HostRun&) = delete;

  Params params{};
  // the same run in single precision: float copies of the tables and settings, the source
  // (SourceView) and the phantom shared with `params`
  ParamsT<float> params_f32{};
  int64_t n_voxels = 0;
  double max_mev_per_decay = 0;   // upper bound of the energy one decay can emit
  double mean_mev_per_decay = 0;  // expected energy emitted per decay
  uint32_t n_source_voxels = 0;   // voxels with decays

  std::vector<uint32_t> alias_table;  // over the source blocks (physics/params.hpp SourceView)
  std::vector<double> block_weight;
  std::vector<double> majorant, ms_ln_lambda;
  LineYields lines;
  std::vector<std::vector<float>> f32_tables;  // the arrays params_f32 points to
};

// The single-precision parameters of a run from its double ones (HostRun builds them): every
// table converted to float into `store`, the scalars rounded, the photon majorant raised by a
// relative 1e-5 so that it stays above every voxel's attenuation summed in float, and the
// boundary push and shortest step raised to a few ulp of the grid's largest coordinate.
ParamsT<float> single_precision_params(const Params& p, std::vector<std::vector<float>>& store);

// Validated view of the physics tables (majorant left null: it depends on the grid).
// `ms_ln_lambda` receives the multiple-scattering table the view points into.
TableView make_table_view(const std::map<std::string, ArrayRef>& tables,
                          const std::map<std::string, double>& scalars,
                          std::vector<double>& ms_ln_lambda);


// Mean of mu = (1-cos)/2 under the soft multiple-scattering density lambda exp(-lambda mu) on [0,1].
double soft_ms_mean(double lambda);

// Tally capacity: the largest number of histories whose expected emitted energy is at most
// half of a signed 64-bit count of kEnergyUnitMeV (no voxel or total can hold more than all
// the emitted energy). The drivers also stop a run whose actual emitted energy nears the limit.
int64_t max_histories(double mean_mev_per_decay);

// Largest alias table over single voxels (bytes) before the source draw switches to blocks of
// voxels (physics/params.hpp SourceView); 256 MiB. The setter (a test hook, not thread-safe
// with runs being prepared) returns the previous value.
double voxel_alias_max_bytes();
double set_voxel_alias_max_bytes(double bytes);

// Emitted-energy level (units) at which a driver stops a run rather than risk overflow.
constexpr int64_t kTallyGuardUnits = int64_t(9.0e18);

}  // namespace rpt::host
