#include "drover/reaper.hpp"

#include "drover/backend.hpp"
#include "drover/child.hpp"

#include <fcntl.h>
#include <signal.h>
#if defined(__linux__)
#include <sys/prctl.h>
#endif
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <sstream>
#include <thread>

#include "detail/log.hpp"
#include "detail/posix.hpp"
#include "detail/registry.hpp"
#include "detail/sys.hpp"
#include "detail/tree.hpp"

namespace drover {

void become_reaper(error_code& ec) noexcept {
    ec.clear();
    if (backend() == backend_kind::portable) { // PR_SET_CHILD_SUBREAPER is Linux's
        ec = errc::not_supported;
        return;
    }
#if defined(__linux__)
    if (::getpid() != 1 && ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
        ec.assign(errno, boost::system::system_category());
        return;
    }
    detail::set_runner_mode();
#endif
}

void become_reaper() {
    error_code ec;
    become_reaper(ec);
    if (ec) throw boost::system::system_error(ec, "become_reaper");
}

void attribute_orphans_to(const child& c) noexcept {
    detail::set_orphan_owner(c.impl_for_attribution());
}

bool is_reaper() noexcept {
    return detail::runner_mode();
}

std::vector<pid_t> orphans() {
    return detail::unregistered_children();
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
            std::string text;
            if (detail::read_file((cgroup_path + "/cgroup.events").c_str(), text) != 0) break; // gone
            std::istringstream ev(text);
            std::string key, value;
            bool populated = true;
            while (ev >> key >> value)
                if (key == "populated") populated = value != "0";
            if (!populated) break;
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
#if defined(__linux__)
        // SIGSTOP every member until none is new, then SIGKILL: a parent killed first would
        // re-parent a setsid'd child out of the walk's reach.
        for (int round = 0; round < 10; ++round) {
            if (detail::kill_tree(session, {}) == 0) break; // the leader is found by its session
            std::this_thread::sleep_for(10ms);
        }
#else
        // No /proc walk nor pidfd: the process group of the same id (the portable backend's
        // tree; its child leads its own session and group). Stopped first, so that none forks
        // out of a kill in progress; an id that cannot be reused while any member lives (the
        // guard first checks that the number names no younger process: run_guard_if_requested).
        // Left: a group that empties and is re-formed under the same id within these rounds.
        for (int round = 0; round < 10; ++round) {
            if (::kill(-session, SIGSTOP) != 0) break; // ESRCH: the group is gone
            ::kill(-session, SIGKILL);
            std::this_thread::sleep_for(10ms);
        }
#endif
    }
} catch (...) {
}

std::size_t reap_orphans() noexcept try {
    std::size_t n = 0;
    std::lock_guard lock(detail::spawn_registry_mutex());
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
