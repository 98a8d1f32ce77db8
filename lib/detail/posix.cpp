#include "detail/posix.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

#include "detail/fault.hpp"
#include "detail/unique_fd.hpp"

namespace drover::detail {

int read_all(int fd, std::string& out, std::size_t cap, bool* truncated) {
    out.clear();
    char buf[16384];
    for (;;) {
        ssize_t n = f_read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno;
        if (n == 0) return 0;
        std::size_t take = std::min<std::size_t>(static_cast<std::size_t>(n), cap - out.size());
        out.append(buf, take);
        if (out.size() >= cap) {
            if (truncated != nullptr) *truncated = true;
            return 0;
        }
    }
}

int read_file(const char* path, std::string& out, std::size_t cap, bool* truncated) {
    out.clear();
    unique_fd fd{f_open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)};
    if (!fd) return errno;
    return read_all(fd.get(), out, cap, truncated);
}

int read_file_at(int dir, const char* name, std::string& out, std::size_t cap, bool* truncated) {
    out.clear();
    unique_fd fd{f_openat(dir, name, O_RDONLY | O_CLOEXEC | O_NOCTTY)};
    if (!fd) return errno;
    return read_all(fd.get(), out, cap, truncated);
}

int poll_one(int fd, short events, int timeout_ms) noexcept {
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
    pollfd p{fd, events, 0};
    for (;;) {
        int r = ::poll(&p, 1, timeout_ms);
        if (r >= 0 || errno != EINTR) return r;
        if (timeout_ms > 0) {
            auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now()).count();
            timeout_ms = static_cast<int>(std::max<decltype(left)>(left, 0));
        }
    }
}

} // namespace drover::detail
