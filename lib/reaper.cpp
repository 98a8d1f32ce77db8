#include "drover/reaper.hpp"

#include "drover/child.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <thread>
#include <unordered_set>

#include "detail/log.hpp"
#include "detail/registry.hpp"
#include "detail/sys.hpp"
#include "detail/tree.hpp"

namespace drover {
namespace detail {

namespace {
std::mutex g_registry_mutex;
std::unordered_set<pid_t> g_live; // guarded by g_registry_mutex
std::atomic<bool> g_runner{false};
std::atomic<const void*> g_orphan_owner{nullptr};
} // namespace

const void* orphan_owner() noexcept { return g_orphan_owner.load(std::memory_order_acquire); }

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

void become_reaper(error_code& ec) noexcept {
    ec.clear();
    if (::getpid() != 1 && ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
        ec.assign(errno, boost::system::system_category());
        return;
    }
    detail::g_runner.store(true, std::memory_order_release);
}

void become_reaper() {
    error_code ec;
    become_reaper(ec);
    if (ec) throw boost::system::system_error(ec, "become_reaper");
}

void attribute_orphans_to(const child& c) noexcept {
    detail::g_orphan_owner.store(c.impl_for_attribution(), std::memory_order_release);
}

bool is_reaper() noexcept { return detail::runner_mode(); }

std::vector<pid_t> orphans() {
    std::vector<pid_t> out;
    std::lock_guard lock(detail::g_registry_mutex);
    for (pid_t p : detail::children_of(::getpid()))
        if (!detail::registry_contains_locked(p)) out.push_back(p);
    return out;
}

void kill_abandoned_tree(const std::string& cgroup_path, pid_t session) noexcept try {
    using namespace std::chrono_literals;
    if (!cgroup_path.empty()) {
        int fd = ::open((cgroup_path + "/cgroup.kill").c_str(), O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            (void)!::write(fd, "1", 1);
            ::close(fd);
        }
        auto end = std::chrono::steady_clock::now() + 5s;
        while (std::chrono::steady_clock::now() < end) {
            std::ifstream ev(cgroup_path + "/cgroup.events");
            std::string key, value;
            bool populated = true;
            while (ev >> key >> value)
                if (key == "populated") populated = value != "0";
            if (!populated || !ev.eof()) break;
            std::this_thread::sleep_for(10ms);
        }
        // EBUSY while the killed processes are zombies waiting for their new parent to reap them.
        for (int i = 0; i < 300 && ::rmdir(cgroup_path.c_str()) != 0 && errno == EBUSY; ++i)
            std::this_thread::sleep_for(10ms);
        if (::access(cgroup_path.c_str(), F_OK) != 0) {
            auto slash = cgroup_path.rfind('/');
            if (slash != std::string::npos) ::rmdir(cgroup_path.substr(0, slash).c_str());
        }
    }
    if (session > 0) {
        // SIGSTOP every member until none is new, then SIGKILL: a parent killed first would
        // re-parent a setsid'd child out of the walk's reach.
        for (int round = 0; round < 10; ++round) {
            if (detail::kill_tree(session, {}) == 0) break; // the leader is found by its session
            std::this_thread::sleep_for(10ms);
        }
    }
} catch (...) {
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
