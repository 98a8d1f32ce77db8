#include "detail/sys.hpp"

#include <sys/utsname.h>

#include <cerrno>
#include <cstdio>

namespace drover::detail {

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
