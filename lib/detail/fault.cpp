#include "detail/fault.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <string_view>

#include "detail/compat.hpp"

namespace drover::detail {

std::atomic<bool> g_faults_armed{false};

namespace {

struct armed_point {
    std::atomic<int> err{0};
    std::atomic<int> remaining{0}; ///< -1: every call
    std::atomic<int> skip{0};
    std::atomic<unsigned> hits{0};
};

constexpr auto n_points = static_cast<std::size_t>(fault_point::count_);
armed_point g_points[n_points];

constexpr const char* point_names[n_points] = {"clone3", "clone_pidfd", "pipe2", "pidfd_open", "open",
                                               "fork",   "read",        "write", "alloc"};

struct errno_name {
    const char* name;
    int value;
};
constexpr errno_name errno_names[] = {{"ENOSYS", ENOSYS}, {"EPERM", EPERM},   {"EINVAL", EINVAL},
                                      {"EMFILE", EMFILE}, {"ENFILE", ENFILE}, {"EAGAIN", EAGAIN},
                                      {"ENOMEM", ENOMEM}, {"EINTR", EINTR},   {"EIO", EIO},
                                      {"ENOSPC", ENOSPC}, {"EACCES", EACCES}, {"short", fault_short}};

} // namespace

void inject_fault(fault_point p, int err, int times, int skip) noexcept {
    auto& a = g_points[static_cast<std::size_t>(p)];
    a.err.store(err, std::memory_order_relaxed);
    a.skip.store(skip, std::memory_order_relaxed);
    a.remaining.store(times, std::memory_order_release);
    g_faults_armed.store(true, std::memory_order_release);
}

void clear_faults() noexcept {
    g_faults_armed.store(false, std::memory_order_release);
    for (auto& a : g_points) {
        a.remaining.store(0, std::memory_order_relaxed);
        a.skip.store(0, std::memory_order_relaxed);
        a.hits.store(0, std::memory_order_relaxed);
    }
}

unsigned fault_hits(fault_point p) noexcept {
    return g_points[static_cast<std::size_t>(p)].hits.load(std::memory_order_relaxed);
}

int take_fault(fault_point p) noexcept {
    auto& a = g_points[static_cast<std::size_t>(p)];
    int left = a.remaining.load(std::memory_order_acquire);
    if (left == 0) return 0;
    for (int s = a.skip.load(std::memory_order_relaxed); s > 0;)
        if (a.skip.compare_exchange_weak(s, s - 1, std::memory_order_relaxed)) return 0;
    if (left > 0) {
        do {
            if (left == 0) return 0;
        } while (!a.remaining.compare_exchange_weak(left, left - 1, std::memory_order_acq_rel));
    }
    a.hits.fetch_add(1, std::memory_order_relaxed);
    return a.err.load(std::memory_order_relaxed);
}

const char* fault_point_name(fault_point p) noexcept {
    auto i = static_cast<std::size_t>(p);
    return i < n_points ? point_names[i] : "?";
}

bool inject_fault_spec(const char* spec) noexcept {
    if (spec == nullptr) return false;
    std::string_view s(spec);
    auto c1 = s.find(':');
    if (c1 == std::string_view::npos) return false;
    std::string_view point = s.substr(0, c1), rest = s.substr(c1 + 1);
    auto c2 = rest.find(':');
    std::string_view err = rest.substr(0, c2);
    int times = 1;
    if (c2 != std::string_view::npos) {
        std::string t(rest.substr(c2 + 1));
        char* end = nullptr;
        long v = std::strtol(t.c_str(), &end, 10);
        if (t.empty() || *end != '\0' || v < -1 || v > 1000000) return false;
        times = static_cast<int>(v);
    }
    for (std::size_t i = 0; i < n_points; ++i) {
        if (point != point_names[i]) continue;
        for (const auto& e : errno_names)
            if (err == e.name) {
                const bool io = i == static_cast<std::size_t>(fault_point::read) ||
                                i == static_cast<std::size_t>(fault_point::write);
                if (e.value == fault_short && !io) return false; // a short transfer is for read/write
                inject_fault(static_cast<fault_point>(i), e.value, times);
                return true;
            }
        return false;
    }
    return false;
}

int f_open(const char* path, int flags, mode_t mode) noexcept {
    if (int e = fault(fault_point::open)) return errno = e, -1;
    return ::open(path, flags, mode);
}

int f_openat(int dir, const char* path, int flags, mode_t mode) noexcept {
    if (int e = fault(fault_point::open)) return errno = e, -1;
    return ::openat(dir, path, flags, mode);
}

int f_pipe2(int fds[2], int flags) noexcept {
    if (int e = fault(fault_point::pipe2)) return errno = e, -1;
    return ::pipe2(fds, flags);
}

ssize_t f_read(int fd, void* buf, std::size_t n) noexcept {
    if (int e = fault(fault_point::read)) {
        if (e != fault_short) return errno = e, -1;
        if (n > 1) n = 1;
    }
    return ::read(fd, buf, n);
}

ssize_t f_pread(int fd, void* buf, std::size_t n, off_t at) noexcept {
    if (int e = fault(fault_point::read)) {
        if (e != fault_short) return errno = e, -1;
        if (n > 1) n = 1;
    }
    return ::pread(fd, buf, n, at);
}

ssize_t f_write(int fd, const void* buf, std::size_t n) noexcept {
    if (int e = fault(fault_point::write)) {
        if (e != fault_short) return errno = e, -1;
        if (n > 1) n = 1;
    }
    return ::write(fd, buf, n);
}

void f_alloc_point() {
    if (fault(fault_point::alloc)) throw std::bad_alloc();
}

} // namespace drover::detail
