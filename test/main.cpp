// One doctest main for every suite: doctest prints its summary at the end of each.
//
// DROVER_TEST_FAULT="point:ERRNO[:times],..." runs the suite with those faults armed through
// the library's fault-injection seam (lib/detail/fault.hpp), e.g. "clone3:ENOSYS:-1" to prove
// the core suites pass on the fallback launchers. The library itself never reads it.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "detail/fault.hpp"

int main(int argc, char** argv) {
    if (const char* env = std::getenv("DROVER_TEST_FAULT"); env != nullptr && *env != '\0') {
        std::string specs = env;
        for (std::size_t at = 0; at <= specs.size();) {
            std::size_t comma = specs.find(',', at);
            if (comma == std::string::npos) comma = specs.size();
            std::string one = specs.substr(at, comma - at);
            if (!drover::detail::inject_fault_spec(one.c_str())) {
                std::fprintf(stderr, "DROVER_TEST_FAULT: cannot parse '%s' (point:ERRNO[:times])\n", one.c_str());
                return 2;
            }
            at = comma + 1;
        }
        std::fprintf(stderr, "faults armed for this run: %s\n", env);
    }
    doctest::Context ctx(argc, argv);
    int rc = ctx.run();
    if (drover::detail::g_faults_armed.load()) { // proof that the faults were reached
        using drover::detail::fault_point;
        for (unsigned p = 0; p < static_cast<unsigned>(fault_point::count_); ++p)
            if (unsigned n = drover::detail::fault_hits(static_cast<fault_point>(p)))
                std::fprintf(stderr, "fault %s injected %u times\n",
                             drover::detail::fault_point_name(static_cast<fault_point>(p)), n);
    }
    return rc;
}
