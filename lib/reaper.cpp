#include "drover/reaper.hpp"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <unordered_set>

#include "detail/log.hpp"
#include "detail/registry.hpp"
#include "detail/tree.hpp"

namespace drover {
namespace detail {

namespace {
std::mutex g_registry_mutex;
std::unordered_set<pid_t> g_live; // guarded by g_registry_mutex
std::atomic<bool> g_runner{false};
} // namespace

std::mutex& spawn_registry_mutex() noexcept { return g_registry_mutex; }

void registry_add_locked(pid_t pid) { g_live.insert(pid); }

void registry_remove(pid_t pid) noexcept {
    std::lock_guard lock(g_registry_mutex);
    g_live.erase(pid);
}

bool registry_contains_locked(pid_t pid) noexcept { return g_live.count(pid) != 0; }

std::size_t registry_size() noexcept {
    std::lock_guard lock(g_registry_mutex);
    return g_live.size();
}

bool runner_mode() noexcept { return g_runner.load(std::memory_order_acquire); }

} // namespace detail

error_code become_reaper() noexcept {
    if (::getpid() != 1 && ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
        return {errno, boost::system::system_category()};
    detail::g_runner.store(true, std::memory_order_release);
    return {};
}

bool is_reaper() noexcept { return detail::runner_mode(); }

std::vector<pid_t> orphans() {
    std::vector<pid_t> out;
    std::lock_guard lock(detail::g_registry_mutex);
    for (pid_t p : detail::children_of(::getpid()))
        if (!detail::registry_contains_locked(p)) out.push_back(p);
    return out;
}

std::size_t reap_orphans() noexcept try {
    std::size_t n = 0;
    std::lock_guard lock(detail::g_registry_mutex);
    for (pid_t p : detail::children_of(::getpid())) {
        if (detail::registry_contains_locked(p)) continue;
        // Directed at one pid that is ours and not a drover child: never steals a status.
        siginfo_t si{};
        int r;
        do r = ::waitid(P_PID, static_cast<id_t>(p), &si, WEXITED | WNOHANG | __WALL);
        while (r != 0 && errno == EINTR);
        if (r == 0 && si.si_pid == p) {
            ++n;
            detail::log_debug("reaped orphan pid {}", p);
        }
    }
    return n;
} catch (...) {
    return 0;
}

} // namespace drover
