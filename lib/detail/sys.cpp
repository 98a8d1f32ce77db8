#include <sys/wait.h> // before sys.hpp, whose P_PIDFD fallback would clash with its enum

#include "detail/sys.hpp"

#include <sys/utsname.h>

#include <cerrno>
#include <cstdio>

namespace drover::detail {

void kill_and_reap(int pidfd, pid_t pid) noexcept {
    if (pidfd >= 0)
        sys_pidfd_send_signal(pidfd, SIGKILL);
    else
        ::kill(pid, SIGKILL);
    siginfo_t si{};
    int r;
    do {
        r = pidfd >= 0
                ? ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &si, WEXITED | __WALL)
                : ::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | __WALL);
    } while (r != 0 && errno == EINTR);
}

std::optional<exit_status> pidfd_exit_info(int pidfd) noexcept {
    pidfd_info info{};
    info.mask = pidfd_info_exit;
    // ENOTTY/EINVAL: a kernel without PIDFD_GET_INFO (< 6.13); ESRCH: nothing recorded.
    if (::ioctl(pidfd, pidfd_get_info, &info) != 0) return std::nullopt;
    if (!(info.mask & pidfd_info_exit)) return std::nullopt; // < 6.15: no exit information
    return exit_status::from_wait_status(info.exit_code);
}

bool kernel_has_pidfd_exit_info() noexcept {
    static const bool has = [] {
        utsname u{};
        int major = 0, minor = 0;
        if (::uname(&u) != 0 || std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return false;
        return major > 6 || (major == 6 && minor >= 15);
    }();
    return has;
}

} // namespace drover::detail
