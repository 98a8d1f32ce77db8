// What both launchers check and build the same way in the parent (lib/detail/launch_common.hpp).
#include "detail/launch_common.hpp"
#include "detail/compat.hpp"

#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "detail/prepare.hpp"
#include "drover/backend.hpp"

extern char** environ;

namespace drover::detail {

bool invalid_command(spawn_failure& f, std::string detail) {
    f.code = errc::invalid_command;
    f.stage = spawn_stage::prepare;
    f.detail = std::move(detail);
    return false;
}

bool check_arguments(const command& cmd, spawn_failure& f) {
    for (std::size_t i = 0; i < cmd.args().size(); ++i)
        if (cmd.args()[i].find('\0') != std::string::npos)
            return invalid_command(f, "argument " + std::to_string(i + 1) + " contains a NUL byte");
    if (cmd.arg0() && cmd.arg0()->find('\0') != std::string::npos)
        return invalid_command(f, "argv[0] contains a NUL byte");
    return true;
}

bool prepare_program(const command& cmd, program_image& s, spawn_failure& f) {
    if (!build_environment(cmd, environ, s.env, f)) return false;
    if (!resolve_program(cmd.program(), search_path_for(s.env), s.path, f)) return false;
    if (cmd.cwd()) {
        s.cwd = cmd.cwd()->string();
        if (s.cwd.empty() || s.cwd.find('\0') != std::string::npos)
            return invalid_command(f, "working directory is empty or contains a NUL byte");
    }
    s.argv.reserve(cmd.args().size() + 2);
    s.arg0 = cmd.arg0() ? *cmd.arg0() : cmd.program();
    s.argv.push_back(s.arg0.data());
    for (const auto& a : cmd.args()) s.argv.push_back(const_cast<char*>(a.c_str()));
    s.argv.push_back(nullptr);
    s.envp.reserve(s.env.size() + 1);
    for (auto& e : s.env) s.envp.push_back(e.data());
    s.envp.push_back(nullptr);
    return true;
}

bool plan_rlimits(const command& cmd, std::vector<rlimit64_arg>& out, spawn_failure& f) {
    bool nofile_set = false;
    for (const auto& l : cmd.rlimits()) {
        if (l.resource < 0 || l.resource >= RLIMIT_NLIMITS)
            return invalid_command(f, "resource limit " + std::to_string(l.resource) + " does not exist");
        if (l.soft != RLIM_INFINITY && (l.hard == RLIM_INFINITY ? false : l.soft > l.hard))
            return invalid_command(f, "resource limit " + std::to_string(l.resource) +
                                          ": soft limit above hard limit");
        out.push_back({l.resource, l.soft, l.hard});
        nofile_set = nofile_set || l.resource == RLIMIT_NOFILE;
    }
    if (!nofile_set) {
        // A supervisor raises its own soft NOFILE limit; its children get the conventional 1024
        // (select() breaks above it), the hard limit kept (docs/reliability.md row B6).
        struct rlimit own {};
        if (::getrlimit(RLIMIT_NOFILE, &own) == 0 && own.rlim_cur > 1024) // RLIM_INFINITY too
            out.push_back({RLIMIT_NOFILE, 1024, own.rlim_max});
    }
    return true;
}

bool plan_signals(const command& cmd, unsigned long& mask, spawn_failure& f) {
    const int pdeathsig = cmd.parent_death_signal();
    if (pdeathsig < 0 || pdeathsig > 64)
        return invalid_command(f, "parent death signal " + std::to_string(pdeathsig) + " is not a signal");
    for (int sig : cmd.blocked_signals()) {
        if (sig <= 0 || sig >= NSIG)
            return invalid_command(f, "blocked signal " + std::to_string(sig) + " is not a signal");
        if (sig == SIGKILL || sig == SIGSTOP)
            return invalid_command(f, "signal " + std::to_string(sig) + " (" + signal_abbrev(sig) +
                                          ") cannot be blocked");
        mask |= 1UL << (sig - 1);
    }
    return true;
}

bool groups_differ(std::vector<gid_t> want) {
    std::vector<gid_t> current(static_cast<std::size_t>(std::max(0, ::getgroups(0, nullptr))));
    int n = ::getgroups(static_cast<int>(current.size()), current.data());
    if (n < 0) return true;
    current.resize(static_cast<std::size_t>(n));
    std::sort(want.begin(), want.end());
    want.erase(std::unique(want.begin(), want.end()), want.end());
    std::sort(current.begin(), current.end());
    current.erase(std::unique(current.begin(), current.end()), current.end());
    return want != current;
}

} // namespace drover::detail

namespace drover {

// backend() itself is defined by the backend's launcher (launch_linux.cpp, launch_portable.cpp).
std::string_view to_string(backend_kind k) noexcept {
    return k == backend_kind::linux_native ? "linux" : "portable";
}

} // namespace drover
