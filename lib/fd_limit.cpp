#include "drover/fd_limit.hpp"

#include <cerrno>

namespace drover {

rlim_t raise_fd_limit(error_code& ec) noexcept {
    ec.clear();
    struct rlimit r {};
    if (::getrlimit(RLIMIT_NOFILE, &r) != 0) {
        ec.assign(errno, boost::system::system_category());
        return 0;
    }
    if (r.rlim_cur == r.rlim_max) return r.rlim_cur;
    struct rlimit raised = r;
    raised.rlim_cur = r.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) {
        ec.assign(errno, boost::system::system_category());
        return r.rlim_cur;
    }
    return raised.rlim_cur;
}

rlim_t raise_fd_limit() {
    error_code ec;
    rlim_t n = raise_fd_limit(ec);
    if (ec) throw boost::system::system_error(ec, "raise_fd_limit");
    return n;
}

} // namespace drover
