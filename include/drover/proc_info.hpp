// drover: what a process is, read from /proc, verified against a pidfd.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "drover/error.hpp"

namespace drover {

class child;

/// Namespace identities: the inode numbers behind /proc/<pid>/ns/* (two processes share a
/// namespace exactly when the numbers are equal). Empty where the link could not be read.
struct namespace_ids {
    std::optional<std::uint64_t> pid, mnt, net, user, uts, ipc, cgroup;
};

/// /proc/<pid>/io: bytes and calls through read/write-like syscalls, and bytes that reached
/// or came from storage.
struct io_counters {
    std::uint64_t rchar = 0, wchar = 0, syscr = 0, syscw = 0, read_bytes = 0, write_bytes = 0,
                  cancelled_write_bytes = 0;
};

/// One resource limit (from /proc/<pid>/limits): empty means unlimited.
struct limit_value {
    std::string name; ///< "cpu", "nofile", ... (as `rlimit_resource` takes them)
    std::optional<std::uint64_t> soft, hard;
};

/// One open descriptor and what it refers to (the readlink of /proc/<pid>/fd/N).
struct open_fd {
    int fd = -1;
    std::string target; ///< "/dev/null", "pipe:[1234]", "socket:[99]", "anon_inode:[pidfd]"...
};

/// One network interface seen from the process's network namespace (/proc/<pid>/net/dev).
struct net_interface {
    std::string name;
    std::uint64_t rx_bytes = 0, rx_packets = 0, tx_bytes = 0, tx_packets = 0;
};

/// Everything drover reads about one process. Fields the kernel would not show (EACCES for
/// another user's process without privilege) stay empty and are named in `unreadable`; a
/// kernel thread has no exe, cwd or cmdline, a zombie not even interfaces (empty, and not
/// "unreadable").
struct proc_info {
    pid_t pid = -1;
    pid_t ppid = -1;
    char state = '?';                 ///< R running, S sleeping, D disk, Z zombie, T stopped, ...
    std::string comm;                 ///< the kernel's 15-byte name, exactly (any bytes but NUL)
    std::vector<std::string> cmdline; ///< argv as the process shows it (empty for kernel threads and zombies)
    bool cmdline_truncated = false;   ///< longer than 256 KiB: the rest is not read
    std::string exe;                  ///< the executable (" (deleted)" when it was removed)
    std::string cwd;
    uid_t uid = 0, euid = 0; ///< real and effective
    gid_t gid = 0, egid = 0;
    std::vector<gid_t> groups;
    int threads = 0;
    pid_t session = -1, pgrp = -1;
    std::chrono::system_clock::time_point started; ///< boot time + start ticks (wall clock for display)
    std::chrono::nanoseconds age{};                ///< how long it has been running
    std::uint64_t start_ticks = 0;                 ///< /proc/<pid>/stat field 22: with the pid, an identity
    bool kernel_thread = false;                    ///< PF_KTHREAD: no exe, cwd or cmdline
    std::chrono::nanoseconds user_cpu{}, system_cpu{};
    std::uint64_t rss_bytes = 0, peak_rss_bytes = 0; ///< VmRSS, VmHWM
    std::size_t fd_count = 0;                        ///< every open descriptor
    std::vector<open_fd> fds;                        ///< the first 1024, with targets
    std::string cgroup;                              ///< the cgroup v2 path ("0::" line), "" if none
    namespace_ids ns;
    std::optional<io_counters> io;
    std::vector<limit_value> limits;
    std::vector<net_interface> interfaces;
    std::vector<std::string> unreadable;              ///< what could not be read, and why
    std::chrono::steady_clock::time_point sampled_at; ///< when the CPU times were read
};

/// Reads `pid` from /proc. Every file is read through one /proc/<pid> directory descriptor, and
/// the result is verified afterwards against a pidfd opened before the first read: if the
/// process exited meanwhile, nothing read is trusted. Fails with ESRCH (`gone`: the process does
/// not exist, or it exited during the read: a zombie read whole is returned, state 'Z') or
/// `errc::stale` (it was reaped during the read and its pid already names another process). Parsing is strict
/// and bounded: a `comm` holding spaces, parentheses or newlines parses exactly; a malformed file is
/// `errc::malformed_proc` (never a guess). Out of memory is ENOMEM. The throwing overloads throw
/// `system_error` with the same codes.
proc_info read_proc_info(pid_t pid);
std::optional<proc_info> read_proc_info(pid_t pid, error_code& ec) noexcept;
/// Reads the main process of `c`, identified by its own pidfd (no pid-reuse window at all).
/// ESRCH once it has exited.
proc_info read_proc_info(const child& c);
std::optional<proc_info> read_proc_info(const child& c, error_code& ec) noexcept;

/// CPU use between two samples of one process, in percent of one CPU (200 = two CPUs busy).
double cpu_percent(const proc_info& earlier, const proc_info& later) noexcept;

/// The processes under `pid` (it first, then depth-first by pid), found through
/// /proc/<pid>/task/*/children. A process that exits during the walk is left out.
std::vector<pid_t> process_tree(pid_t pid);

/// The namespace identities of this process (for comparisons: "differs from drover's own").
namespace_ids own_namespaces();

} // namespace drover
