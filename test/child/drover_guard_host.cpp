// drover-guard-host: a program embedding drover that guards its child's tree with
// drover::guard_tree (include/drover/guard.hpp), for test/test_guard.cpp.
//
//   drover-guard-host MODE PROGRAM [ARGS...]
//
// MODE is `cgroup` (the default cgroup mode), `session` (no cgroup, and no parent-death signal
// for the child, as guard_tree asks for a session tree) or `detach` (as `session`, then the
// guard is dismissed and the tree left running; the host exits 0 at once). Prints
// "ready GUARD_PID\n" once the guard runs; then waits for PROGRAM, dismisses the guard and
// exits with PROGRAM's shell code. The host is also its own guard program.
#include <cstdio>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "drover/child.hpp"
#include "drover/guard.hpp"

int main(int argc, char** argv) {
    if (auto rc = drover::run_guard_if_requested(argc, argv)) return *rc;
    if (argc < 3) {
        std::fprintf(stderr, "usage: drover-guard-host cgroup|session|detach PROGRAM [ARGS...]\n");
        return 2;
    }
    const std::string mode = argv[1];
    boost::asio::io_context ctx;
    drover::command cmd(argv[2], std::vector<std::string>(argv + 3, argv + argc));
    if (mode != "cgroup") cmd.cgroup(drover::cgroup_mode::off).parent_death_signal(0);
    drover::child c = drover::spawn(ctx, cmd);
    drover::tree_guard guard = drover::guard_tree(c);
    std::printf("ready %d\n", static_cast<int>(*guard.id()));
    std::fflush(stdout);
    if (mode == "detach") {
        guard.dismiss();
        c.detach();
        return 0;
    }
    int rc = 125;
    c.async_wait([&](drover::error_code, drover::exit_status st) {
        rc = st.shell_code();
        guard.dismiss();
    });
    ctx.run();
    return rc;
}
