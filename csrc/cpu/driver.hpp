// The CPU backend: OpenMP threads over histories, driven by host/driver.hpp's batch loop.
#pragma once
#include "host/driver.hpp"
#include "host/params.hpp"

namespace rpt::cpu {

// Runs (or, in export mode, hands out the batch tallies of) `opt`'s histories on CPU threads.
// Throws std::invalid_argument for bad options (host::validate_options).
host::RunOutput run(const host::HostRun& run, const host::RunOptions& opt);

}  // namespace rpt::cpu
