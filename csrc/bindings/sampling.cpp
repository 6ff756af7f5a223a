// Test hooks: draw samples from the shared physics routines (the same functions transport
// calls), so tests can compare sampled distributions with their analytic forms.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <stdexcept>

#include "bindings/dict_args.hpp"
#include "host/params.hpp"
#include "physics/electron.hpp"
#include "physics/history.hpp"
#include "physics/photon.hpp"
#include "physics/rng.hpp"

namespace py = pybind11;

namespace {

// The context of electron.hpp's collision routines for sampling: no grid, no tally; the
// particle a collision emits is recorded as made.
struct RecordingCtx {
  const rpt::Params& P;
  rpt::Counters cnt{0, 0};
  bool made = false;
  rpt::Particle last{};
  void deposit(int64_t, int64_t) {}
  void emit(rpt::Philox4x32&, const rpt::Particle& q, int64_t) {
    made = true;
    last = q;
  }
};

struct TablesHolder {
  std::vector<DArr> keep;
  std::map<std::string, rpt::host::ArrayRef> arrays;
  std::map<std::string, double> scalars;
  std::vector<double> ms_ln_lambda;
  rpt::TableView view{};
  explicit TablesHolder(const py::dict& tables) {
    split_dict(tables, "tables", arrays, scalars, keep);
    view = rpt::host::make_table_view(arrays, scalars, ms_ln_lambda);
  }
};

void check_mat(const rpt::TableView& t, int32_t mat) {
  if (mat < 0 || mat >= t.n_mat) throw std::invalid_argument("material: index out of range");
}

}  // namespace

// n hard collisions of a particle of `kind` (kElectron: Moller, kPositron: Bhabha) at e_mev:
// the knock-on electron's energy and the primary's cos theta after it, one random stream each.
static py::tuple sample_knock_on(py::dict tables, double e_mev, int64_t n, uint64_t seed, int32_t kind) {
  TablesHolder th(tables);
  py::array_t<double> w(n), cost_primary(n);
  rpt::Params P{};
  P.tab = th.view;
  for (int64_t i = 0; i < n; ++i) {
    rpt::Philox4x32 rng(seed, uint64_t(i));
    RecordingCtx c{P};
    rpt::Particle p{{0, 0, 0}, {0, 0, 1}, e_mev, kind};
    if (kind == rpt::kPositron) {
      rpt::bhabha_collision(p, 0, rng, c);
    } else {
      rpt::moller_collision(p, 0, rng, c);
    }
    w.mutable_data()[i] = c.made ? c.last.e : 0.0;
    cost_primary.mutable_data()[i] = p.d.z;
  }
  return py::make_tuple(w, cost_primary);
}

void init_sampling(py::module_& m) {
  m.def("_philox4x32_10",
        [](std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
          std::array<uint32_t, 4> out{};
          rpt::philox4x32_10(ctr.data(), key.data(), out.data());
          return out;
        },
        "Philox4x32-10 bijection (for known-answer tests).");
  m.def("_uniforms",
        [](uint64_t seed, uint64_t history, int64_t n) {
          rpt::Philox4x32 rng(seed, history);
          py::array_t<double> out(n);
          for (int64_t i = 0; i < n; ++i) out.mutable_data()[i] = rng.uniform();
          return out;
        });
  m.def("_uniforms_single",
        [](uint64_t seed, uint64_t history, int64_t n) {
          rpt::PhiloxT<float> rng(seed, history);
          py::array_t<float> out(n);
          for (int64_t i = 0; i < n; ++i) out.mutable_data()[i] = rng.uniform();
          return out;
        },
        "The single-precision transport's uniforms (float, open interval) of one history.");
  m.def("_sincos_2pi_single",
        [](py::array_t<float, py::array::c_style | py::array::forcecast> u) {
          py::array_t<float> c(u.size()), s(u.size());
          for (py::ssize_t i = 0; i < u.size(); ++i)
            rpt::sincos_2pi(u.data()[i], c.mutable_data()[i], s.mutable_data()[i]);
          return py::make_tuple(c, s);
        },
        "cos and sin of 2 pi u in float, as the single-precision transport computes azimuths.");
  m.def("_sample_lines",
        [](DArr yields, int64_t n_decays, uint64_t seed) {
          const int64_t nl = yields.size();
          rpt::host::LineYields ly;
          ly.split(yields.data(), nl);
          rpt::SourceView s{};
          s.n_lines = int32_t(nl);
          ly.attach(s);
          py::array_t<int32_t> counts({n_decays, nl});
          int32_t* c = counts.mutable_data();
          std::fill(c, c + n_decays * nl, 0);
          for (int64_t h = 0; h < n_decays; ++h) {
            rpt::Philox4x32 rng(seed, uint64_t(h));
            rpt::sample_lines(s, rng, [&](int32_t l) { ++c[h * nl + l]; });
          }
          return counts;
        },
        "Emissions per decay of each discrete line (history.hpp sample_lines) for given yields.");
  m.def("_sincos_2pi",
        [](DArr u) {
          py::array_t<double> c(u.size()), s(u.size());
          for (py::ssize_t i = 0; i < u.size(); ++i)
            rpt::sincos_2pi(u.data()[i], c.mutable_data()[i], s.mutable_data()[i]);
          return py::make_tuple(c, s);
        },
        "cos and sin of 2 pi u, as transport computes azimuths (for accuracy tests).");
  m.def("_sample_incoherent",
        [](py::dict tables, int32_t mat, double e_mev, int64_t n, uint64_t seed) {
          TablesHolder th(tables);
          check_mat(th.view, mat);
          py::array_t<double> eps(n), cost(n);
          for (int64_t i = 0; i < n; ++i) {
            rpt::Philox4x32 rng(seed, uint64_t(i));
            rpt::sample_incoherent(th.view, mat, e_mev, rng, eps.mutable_data()[i],
                                   cost.mutable_data()[i]);
          }
          return py::make_tuple(eps, cost);
        },
        "Samples (E'/E, cos theta) of incoherent scattering in material `mat`.");
  m.def("_sample_coherent",
        [](py::dict tables, int32_t mat, double e_mev, int64_t n, uint64_t seed) {
          TablesHolder th(tables);
          check_mat(th.view, mat);
          py::array_t<double> cost(n);
          for (int64_t i = 0; i < n; ++i) {
            rpt::Philox4x32 rng(seed, uint64_t(i));
            cost.mutable_data()[i] = rpt::sample_coherent(th.view, mat, e_mev, rng);
          }
          return cost;
        },
        "Samples cos theta of coherent scattering in material `mat`.");
  m.def("_sample_hard_elastic",
        [](py::dict tables, int32_t mat, double e_mev, int64_t n, uint64_t seed) {
          TablesHolder th(tables);
          check_mat(th.view, mat);
          const rpt::EIndex k = rpt::energy_index(th.view, e_mev);
          py::array_t<double> cost(n);
          for (int64_t i = 0; i < n; ++i) {
            rpt::Philox4x32 rng(seed, uint64_t(i));
            cost.mutable_data()[i] = rpt::sample_hard_elastic_cos(th.view, mat, k, rng);
          }
          return cost;
        },
        "Samples cos theta of a hard elastic event of an electron in material `mat`.");
  m.def("_sample_multiple_scattering",
        [](py::dict tables, double mean_mu, int64_t n, uint64_t seed) {
          TablesHolder th(tables);
          py::array_t<double> cost(n);
          for (int64_t i = 0; i < n; ++i) {
            rpt::Philox4x32 rng(seed, uint64_t(i));
            cost.mutable_data()[i] = rpt::sample_multiple_scattering_cos(th.view, mean_mu, rng);
          }
          return cost;
        },
        "Samples cos theta of the soft multiple-scattering deflection with <(1-cos)/2> = mean_mu.");
  m.def("_sample_moller",
        [](py::dict tables, double e_mev, int64_t n, uint64_t seed) {
          return sample_knock_on(tables, e_mev, n, seed, rpt::kElectron);
        },
        "Samples the delta-ray energy (MeV) of hard Moller collisions at e_mev, and the primary's cos theta.");
  m.def("_sample_bhabha",
        [](py::dict tables, double e_mev, int64_t n, uint64_t seed) {
          return sample_knock_on(tables, e_mev, n, seed, rpt::kPositron);
        },
        "Samples the energy (MeV) given to the atomic electron in hard Bhabha collisions of a "
        "positron of e_mev, and the positron's cos theta.");
  m.def("_soft_ms_mean", &rpt::host::soft_ms_mean, py::arg("lam"));
}
