#include "detail/posix.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#if defined(__linux__)
#include <sys/syscall.h>
#else
#include <pthread.h>
#if defined(__FreeBSD__)
#include <pthread_np.h>
#endif
#endif
#include <unistd.h>

#include <atomic>

#include <algorithm>
#include <cerrno>
#include <chrono>

#include "detail/fault.hpp"
#include "detail/unique_fd.hpp"

namespace drover::detail {

namespace {
std::atomic<pid_t> g_own_pid{0};
void forget_own_pid() noexcept {
    g_own_pid.store(0, std::memory_order_relaxed);
}
} // namespace

pid_t own_pid() noexcept {
    pid_t p = g_own_pid.load(std::memory_order_relaxed);
    if (p != 0) return p;
    static const bool registered = ::pthread_atfork(nullptr, nullptr, forget_own_pid) == 0;
    p = ::getpid();
    if (registered) g_own_pid.store(p, std::memory_order_relaxed);
    return p;
}

pid_t last_allocated_pid() noexcept {
    int fd = f_open("/proc/sys/kernel/ns_last_pid", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[24];
    ssize_t n;
    do n = ::pread(fd, buf, sizeof buf - 1, 0);
    while (n < 0 && errno == EINTR);
    ::close(fd);
    if (n <= 0) return -1;
    long v = 0;
    for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i) v = v * 10 + (buf[i] - '0');
    return v > 0 && v <= 0x3fffffff ? static_cast<pid_t>(v) : -1;
}

bool on_main_thread() noexcept {
    thread_local pid_t t_for = 0; // the pid the answer was computed in
    thread_local bool t_main = false;
    const pid_t pid = own_pid();
    if (t_for != pid) {
#if defined(__linux__)
        t_main = ::syscall(SYS_gettid) == pid;
#else
        t_main = ::pthread_main_np() != 0;
#endif
        t_for = pid;
    }
    return t_main;
}

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
