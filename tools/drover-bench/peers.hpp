// drover-bench: `drover up` against the supervisors users pick instead (supervisord, runit, s6),
// each supervising N identical services (drover-bench-svc): memory, start, restart, idle
// wake-ups, stop (peers.cpp).
#pragma once

#include <string>
#include <vector>

#include "bench.hpp"

namespace bench {

struct peers_options {
    bool quick = false;
    std::string drover;     ///< the drover program (`drover up`)
    std::string svc;        ///< drover-bench-svc
    std::vector<int> sizes; ///< the numbers of services; empty: 10 100 500 (quick: 10 100)
};

/// Runs the supervise-peers benchmark: one result per measure (rows: contender and N, with the
/// ratio to drover up at the same N), then one with the goals, met or not.
std::vector<bench_result> supervise_peers(const peers_options& options);

} // namespace bench
