// drover (private): the fault-injection seam. Tests make chosen system calls of the library
// fail (an errno, EINTR, a short transfer, or std::bad_alloc) to prove that every failure ends
// in a clear error or a bounded retry, never a crash, a leaked descriptor, a zombie or a hang.
//
// Production cost: one relaxed atomic load per wrapped call while nothing is armed. Nothing
// here reads the environment: only code linked into a test can arm a fault (test/main.cpp
// turns DROVER_TEST_FAULT into calls of inject_fault()). Never used in the launcher's child.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>

namespace drover::detail {

enum class fault_point : unsigned {
    clone3,      ///< clone3() in the launcher (the first launcher tried)
    clone_pidfd, ///< glibc clone() with CLONE_PIDFD (the second launcher)
    pipe2,       ///< the pipes for stdio::pipe()
    pidfd_open,  ///< pidfd_open(): the launcher without CLONE_PIDFD, tree walks, introspection
    open,        ///< open()/openat()/opendir() of files drover reads or writes itself
    fork,        ///< fork() in daemonize(), and the portable launcher's off Linux
    read,        ///< read()/pread() loops of drover's own (not those inside Asio)
    write,       ///< write() of drover's own (cgroup files, pipe_writer's synchronous path)
    alloc,       ///< allocation points where drover can recover (spawn before and after clone)
    count_
};

/// The errno value that makes a read/write fault a short transfer (one byte) instead of an error.
inline constexpr int fault_short = -1;

/// Arms `p`: after letting `skip` calls through, the next `times` calls (-1: all) fail with
/// `err` (for read/write also EINTR or fault_short; for alloc any value: std::bad_alloc).
void inject_fault(fault_point p, int err, int times = 1, int skip = 0) noexcept;
/// Disarms every point and zeroes the counters.
void clear_faults() noexcept;
/// How many calls at `p` were made to fail since the last clear_faults().
unsigned fault_hits(fault_point p) noexcept;
/// The point's name as inject_fault_spec() takes it.
const char* fault_point_name(fault_point p) noexcept;
/// Parses "point:ERRNO[:times]" (e.g. "clone3:ENOSYS:-1"); false if malformed. For test mains.
bool inject_fault_spec(const char* spec) noexcept;

extern std::atomic<bool> g_faults_armed;
int take_fault(fault_point p) noexcept;

/// The errno to fail this call at `p` with, or 0 to go ahead.
inline int fault(fault_point p) noexcept {
    return g_faults_armed.load(std::memory_order_relaxed) ? take_fault(p) : 0;
}

// Wrapped calls: the real call, unless a fault is armed for its point.
int f_open(const char* path, int flags, mode_t mode = 0) noexcept;
int f_openat(int dir, const char* path, int flags, mode_t mode = 0) noexcept;
int f_pipe2(int fds[2], int flags) noexcept;
ssize_t f_read(int fd, void* buf, std::size_t n) noexcept;
ssize_t f_pread(int fd, void* buf, std::size_t n, off_t at) noexcept;
ssize_t f_write(int fd, const void* buf, std::size_t n) noexcept;
/// Throws std::bad_alloc if an alloc fault is armed.
void f_alloc_point();

} // namespace drover::detail
