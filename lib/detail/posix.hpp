// drover (private): small POSIX helpers the library needs in many places, written once: an
// errno as an error_code, reading a whole file or descriptor through the fault seam
// (lib/detail/fault.hpp), and poll() on one descriptor with EINTR retried.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>

#include "drover/error.hpp"

namespace drover::detail {

/// `err` (an errno value) in the system category.
inline error_code sys_error(int err) noexcept {
    return {err, boost::system::system_category()};
}

/// getpid(), cached (each system call counts on the spawn path: docs/performance.md); the
/// cache is dropped in the child of a fork (pthread_atfork). A copy made by a raw clone without
/// exec must not call into drover (the forked guard does not).
pid_t own_pid() noexcept;
/// True on the process's main thread (its tid is the pid), cached per thread as own_pid().
bool on_main_thread() noexcept;

/// The last pid the kernel allocated in this process's pid namespace
/// (/proc/sys/kernel/ns_last_pid), or -1 when it cannot be read.
pid_t last_allocated_pid() noexcept;

/// The most a whole-file read keeps unless told otherwise: /proc and cgroup files are far
/// smaller, and a file that is not must not grow a string without bound.
inline constexpr std::size_t default_read_cap = 1U << 20;

/// Reads `fd` from its current offset to EOF into `out` (cleared first), through f_read,
/// retrying EINTR and continuing after short reads. Stops at `cap` bytes; `truncated` (if given)
/// is then set (there may have been more). Returns 0, or the errno of a failed read (`out` then holds
/// what was read before it).
int read_all(int fd, std::string& out, std::size_t cap = default_read_cap, bool* truncated = nullptr);

/// Opens `path` (f_open, O_RDONLY | O_CLOEXEC | O_NOCTTY) and reads it with read_all(). Returns
/// 0 or an errno (of the open or of a read).
int read_file(const char* path, std::string& out, std::size_t cap = default_read_cap,
              bool* truncated = nullptr);

/// The same for `name` relative to the directory descriptor `dir` (f_openat).
int read_file_at(int dir, const char* name, std::string& out, std::size_t cap = default_read_cap,
                 bool* truncated = nullptr);

/// poll() on one descriptor for `events`, EINTR retried with the time still left
/// (`timeout_ms` < 0: no limit; 0: a check). Returns poll's result (> 0 ready, 0 timed out) or
/// -1 with errno set.
int poll_one(int fd, short events, int timeout_ms) noexcept;

} // namespace drover::detail
