// drover (private): Linux syscalls and kernel structures that glibc 2.36 or the Debian 12
// kernel headers do not (all) provide. Everything here is feature-detected at run time.
#pragma once

#include <signal.h>
#include <sys/ioctl.h>
#if defined(__linux__)
#include <sys/syscall.h>
#else
#include <sys/event.h>
#include <sys/resource.h>
#include <sys/wait.h>
#endif
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <optional>

#include "detail/fault.hpp"
#include "drover/exit_status.hpp"

#if defined(__linux__)
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#else
// Not Linux: no __WALL (every child is waited for alike), no pidfd. The process descriptor is
// a kqueue watching the one pid for EVFILT_PROC/NOTE_EXIT (docs/architecture.md, "Backends").
#ifndef __WALL
#define __WALL 0
#endif
#endif

namespace drover::detail {

inline constexpr std::uint64_t clone_clear_sighand = 0x100000000ULL; // 5.5
inline constexpr std::uint64_t clone_into_cgroup = 0x200000000ULL;   // 5.7
inline constexpr unsigned close_range_cloexec = 1U << 2;             // 5.11

/// `struct clone_args` as of Linux 5.7 (CLONE_ARGS_SIZE_VER2), declared here so the build does
/// not depend on the installed kernel headers.
struct clone_args {
    std::uint64_t flags;
    std::uint64_t pidfd;
    std::uint64_t child_tid;
    std::uint64_t parent_tid;
    std::uint64_t exit_signal;
    std::uint64_t stack;
    std::uint64_t stack_size;
    std::uint64_t tls;
    std::uint64_t set_tid;
    std::uint64_t set_tid_size;
    std::uint64_t cgroup;
};
static_assert(sizeof(clone_args) == 88);

/// `struct pidfd_info` (Linux 6.13+, PIDFD_INFO_EXIT since 6.15), first published size (64).
struct pidfd_info {
    std::uint64_t mask;
    std::uint64_t cgroupid;
    std::uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
    std::int32_t exit_code;
};
static_assert(sizeof(pidfd_info) == 64);
inline constexpr std::uint64_t pidfd_info_exit = 1ULL << 3;
inline constexpr unsigned long pidfd_get_info = _IOWR(0xFF, 11, pidfd_info);

#if defined(__linux__)
inline int sys_pidfd_open(pid_t pid, unsigned flags) noexcept {
    if (int e = fault(fault_point::pidfd_open)) return errno = e, -1;
    return static_cast<int>(::syscall(SYS_pidfd_open, pid, flags));
}

inline int sys_pidfd_send_signal(int pidfd, int sig) noexcept {
    return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}
#else
/// The kqueue stand-in for a pidfd: a close-on-exec kqueue with one EVFILT_PROC/NOTE_EXIT
/// filter for `pid`, readable (poll, Asio's reactor) once the process has exited. ESRCH if it
/// has exited already, as pidfd_open says for a reaped pid. `flags` must be 0.
int sys_pidfd_open(pid_t pid, unsigned flags) noexcept;

/// True while `pid` is a child of this process not yet reaped (running or a zombie): waitid
/// with WNOWAIT, which fails with ECHILD once someone (a host's waitpid(-1)) has reaped it.
bool still_our_child(pid_t pid) noexcept;

/// No signal through a kqueue: ENOSYS. Only the cgroup and session-walk trees call this, and
/// neither exists off Linux; the main process is signalled by signal_main (child_impl.hpp).
inline int sys_pidfd_send_signal(int, int) noexcept {
    return errno = ENOSYS, -1;
}
#endif

/// Sends `sig` to the process behind the process descriptor `pidfd`. Linux: pidfd_send_signal,
/// immune to pid reuse. Elsewhere kill(pid): the caller guarantees that `pid` is its own child
/// and not reaped by drover yet; a host's waitpid(-1) can still reap it first (reliability.md, C2).
inline int send_signal_to(int pidfd, [[maybe_unused]] pid_t pid, int sig) noexcept {
#if defined(__linux__)
    return sys_pidfd_send_signal(pidfd, sig);
#else
    (void)pidfd;
    return ::kill(pid, sig);
#endif
}

/// waitid on the process descriptor `pidfd` of child `pid` with `options` (WEXITED, WNOHANG,
/// WNOWAIT; __WALL added on Linux), filling `usage` if not null (Linux: the raw syscall's fifth
/// argument; elsewhere wait4 when reaping). 0 or -1 with errno, as waitid. A `si` with si_pid 0
/// after WNOHANG: still running.
int wait_process(int pidfd, pid_t pid, siginfo_t* si, int options, struct rusage* usage) noexcept;

/// Kills (SIGKILL) and reaps a child of ours that nothing supervises: one that failed before
/// exec, or ran but could not be taken under supervision. Through `pidfd` if >= 0, else by
/// `pid`, which is safe only because the child is ours and unreaped (its pid cannot have been
/// reused). Blocks until it is reaped (it dies at once); ECHILD, a host's __WALL reaper having
/// taken it first, also ends the wait and leaves no zombie either.
void kill_and_reap(int pidfd, pid_t pid) noexcept;

/// The exit status of an already-reaped process, from the kernel's pidfs record
/// (`PIDFD_GET_INFO` with `PIDFD_INFO_EXIT`, Linux 6.15+). Empty where the kernel cannot say.
std::optional<exit_status> pidfd_exit_info(int pidfd) noexcept;

/// True if this kernel keeps exit statuses for pidfds (Linux 6.15+). Probed once.
bool kernel_has_pidfd_exit_info() noexcept;

} // namespace drover::detail
