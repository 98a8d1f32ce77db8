#include <sys/wait.h> // before sys.hpp, whose P_PIDFD fallback would clash with its enum

#include "detail/sys.hpp"

#include "detail/compat.hpp"

#include <fcntl.h>
#include <string.h>
#if defined(__FreeBSD__)
#include <pthread_np.h>
#endif
#include <sys/utsname.h>

#include <cerrno>
#include <cstdio>

namespace drover::detail {

void kill_and_reap(int pidfd, pid_t pid) noexcept {
    if (pidfd >= 0)
        send_signal_to(pidfd, pid, SIGKILL);
    else
        ::kill(pid, SIGKILL);
    siginfo_t si{};
    int r;
    do {
        r = pidfd >= 0 ? wait_process(pidfd, pid, &si, WEXITED, nullptr)
                       : ::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | __WALL);
    } while (r != 0 && errno == EINTR);
}

#if defined(__linux__)
int wait_process(int pidfd, pid_t, siginfo_t* si, int options, struct rusage* usage) noexcept {
    // The raw syscall takes a fifth argument glibc's waitid() does not expose: the rusage.
    return static_cast<int>(::syscall(SYS_waitid, P_PIDFD, pidfd, si, options | __WALL, usage));
}
#else
bool still_our_child(pid_t pid) noexcept {
    siginfo_t si{};
    int r;
    do r = ::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOHANG | WNOWAIT);
    while (r != 0 && errno == EINTR);
    return r == 0;
}

int wait_process(int, pid_t pid, siginfo_t* si, int options, struct rusage* usage) noexcept {
    if ((options & WNOWAIT) || !usage) {
        if (::waitid(P_PID, static_cast<id_t>(pid), si, options) != 0) return -1;
        // macOS's waitid reports a stopped child even without WSTOPPED: only an exit counts.
        if (si->si_pid != 0 && si->si_code != CLD_EXITED && si->si_code != CLD_KILLED &&
            si->si_code != CLD_DUMPED)
            si->si_pid = 0;
        return 0;
    }
    // Reaping with the rusage: wait4, its status turned into the siginfo waitid would give.
    int status = 0;
    pid_t r = ::wait4(pid, &status, (options & WNOHANG) ? WNOHANG : 0, usage);
    if (r < 0) return -1;
    *si = siginfo_t{};
    si->si_pid = r;
    if (r == 0) return 0;
    si->si_signo = SIGCHLD;
    if (WIFEXITED(status)) {
        si->si_code = CLD_EXITED;
        si->si_status = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        si->si_code = WCOREDUMP(status) ? CLD_DUMPED : CLD_KILLED;
        si->si_status = WTERMSIG(status);
    }
    return 0;
}

int sys_pidfd_open(pid_t pid, unsigned flags) noexcept {
    if (int e = fault(fault_point::pidfd_open)) return errno = e, -1;
    if (flags != 0) return errno = EINVAL, -1;
    int kq = ::kqueue();
    if (kq < 0) return -1;
    // kqueue descriptors are not inherited by fork's child on macOS and FreeBSD; close-on-exec
    // still keeps one out of a child forked by someone else's fork+exec.
    ::fcntl(kq, F_SETFD, FD_CLOEXEC);
    // Fields set one by one: FreeBSD's EV_SET is a compound literal, not C++.
    struct kevent ev {};
    ev.ident = static_cast<uintptr_t>(pid);
    ev.filter = EVFILT_PROC;
    ev.flags = EV_ADD | EV_ONESHOT;
    ev.fflags = NOTE_EXIT;
    if (::kevent(kq, &ev, 1, nullptr, 0, nullptr) == 0) return kq;
    int e = errno;
    if (e == ESRCH && still_our_child(pid)) {
        // Exiting or a zombie: macOS attaches the filter to neither, from the moment the exit
        // begins (before waitid can see it). Still a child of ours, unreaped: a descriptor that
        // is readable at once (a triggered EVFILT_USER), as a pidfd of an exited process is;
        // waiting treats "readable, not reapable yet" as a short retry. Otherwise ESRCH, as
        // pidfd_open says.
        struct kevent user {};
        user.ident = 0;
        user.filter = EVFILT_USER;
        user.flags = EV_ADD;
        user.fflags = NOTE_TRIGGER;
        if (::kevent(kq, &user, 1, nullptr, 0, nullptr) == 0) return kq;
        e = errno;
    }
    ::close(kq);
    return errno = e, -1;
}
#endif

std::optional<exit_status> pidfd_exit_info([[maybe_unused]] int pidfd) noexcept {
#if !defined(__linux__)
    return std::nullopt;
#else
    pidfd_info info{};
    info.mask = pidfd_info_exit;
    // ENOTTY/EINVAL: a kernel without PIDFD_GET_INFO (< 6.13); ESRCH: nothing recorded.
    if (::ioctl(pidfd, pidfd_get_info, &info) != 0) return std::nullopt;
    if (!(info.mask & pidfd_info_exit)) return std::nullopt; // < 6.15: no exit information
    return exit_status::from_wait_status(info.exit_code);
#endif
}

bool kernel_has_pidfd_exit_info() noexcept {
#if !defined(__linux__)
    return false;
#endif
    static const bool has = [] {
        utsname u{};
        int major = 0, minor = 0;
        if (::uname(&u) != 0 || std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return false;
        return major > 6 || (major == 6 && minor >= 15);
    }();
    return has;
}

const char* signal_abbrev(int sig) noexcept {
#if defined(__GLIBC__)
    return ::sigabbrev_np(sig);
#else
    static const struct {
        int sig;
        const char* name;
    } names[] = {
        {SIGHUP, "HUP"},   {SIGINT, "INT"},     {SIGQUIT, "QUIT"}, {SIGILL, "ILL"},   {SIGTRAP, "TRAP"},
        {SIGABRT, "ABRT"}, {SIGBUS, "BUS"},     {SIGFPE, "FPE"},   {SIGKILL, "KILL"}, {SIGUSR1, "USR1"},
        {SIGSEGV, "SEGV"}, {SIGUSR2, "USR2"},   {SIGPIPE, "PIPE"}, {SIGALRM, "ALRM"}, {SIGTERM, "TERM"},
        {SIGCHLD, "CHLD"}, {SIGCONT, "CONT"},   {SIGSTOP, "STOP"}, {SIGTSTP, "TSTP"}, {SIGTTIN, "TTIN"},
        {SIGTTOU, "TTOU"}, {SIGURG, "URG"},     {SIGXCPU, "XCPU"}, {SIGXFSZ, "XFSZ"}, {SIGVTALRM, "VTALRM"},
        {SIGPROF, "PROF"}, {SIGWINCH, "WINCH"}, {SIGIO, "IO"},     {SIGSYS, "SYS"},
    };
    for (const auto& n : names)
        if (n.sig == sig) return n.name;
    return nullptr;
#endif
}

void name_thread([[maybe_unused]] pthread_t t, [[maybe_unused]] const char* name) noexcept {
#if defined(__linux__)
    ::pthread_setname_np(t, name);
#elif defined(__FreeBSD__)
    ::pthread_set_name_np(t, name);
#endif
}

} // namespace drover::detail
