// The portable backend's launcher (meson option launcher=portable; docs/architecture.md,
// "Backends"): Boost.Process v2's POSIX launcher creates the child, and drover's own
// initializer does everything between fork and exec, so that none of the launcher's 1.81
// defaults that are wrong for a supervisor runs (docs/reliability.md, J1-J4):
//   - the child side is drover's: every signal to its default disposition, the signal mask
//     reset (B2), setsid, the descriptor moves, every other descriptor marked close-on-exec
//     (B1: the launcher's own close-all skips the gaps below its error pipe), limits, identity
//     (each call checked), and drover's own execve. On failure it writes {stage, errno} to a
//     pipe2(O_CLOEXEC) of its own and calls _exit(127) (A3: the launcher's path writes errno
//     even when it is 0 and calls ::exit, which runs atexit handlers in the child);
//   - the launcher's io_context is a fresh one per launch: its notify_fork() in the child never
//     touches the caller's context (whose descriptors it would re-register, under a mutex
//     another thread may hold: A1);
//   - its process handle is detached at once (its destructor kills by raw pid: J2), a failed
//     child is reaped here (the launcher leaves it a zombie), and the child is then held by a
//     pidfd like any other (Linux: pidfd_open, safe because the child is ours and unreaped).
// Only POSIX calls in the child, async-signal-safe ones: the launcher forks (glibc's fork keeps
// malloc usable in the child, which the launcher's own notify_fork needs).
#if defined(__linux__) // Process v2's launcher is used on Linux only (see launch() below)
#define BOOST_PROCESS_USE_STD_FS 1
// Boost.Process v2 1.81's headers are not self-contained (docs/reliability.md, "Facts").
#include <boost/optional.hpp>
#include <boost/type_traits.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/process/v2/posix/default_launcher.hpp>
#include <boost/process/v2/process.hpp>
#endif

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/prctl.h>
#elif defined(__FreeBSD__)
#include <sys/procctl.h>
#endif

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "detail/compat.hpp"
#include "detail/child_fds.hpp"
#include "detail/fault.hpp"
#include "detail/launch.hpp"
#include "detail/launch_common.hpp"
#include "detail/posix.hpp"
#include "detail/prepare.hpp"
#include "detail/sys.hpp"
#include "drover/backend.hpp"

#if defined(__linux__)
namespace bp2 = boost::process::v2;
#endif

namespace drover::detail {

namespace {

std::atomic<unsigned> g_test_pdeathsig_delay_ms{0};

/// Everything the child needs, prepared by the parent; the child only reads it.
struct portable_plan {
    const char* path = nullptr;
    char* const* argv = nullptr;
    char* const* envp = nullptr;
    const char* cwd = nullptr;
    const fd_move* moves = nullptr;
    int n_moves = 0;
    const int* keep = nullptr; // passed targets >= 3, ascending
    int n_keep = 0;
    unsigned inherit_in_place = 0;
    bool new_session = true;
    int ctty_fd = -1;
    const rlimit64_arg* limits = nullptr;
    int n_limits = 0;
    int umask = -1;
    bool set_groups = false;
    const gid_t* groups = nullptr;
    int n_groups = 0;
    bool set_gid = false;
    gid_t gid = 0;
    bool set_uid = false;
    uid_t uid = 0;
    int pdeathsig = 0;
    pid_t parent_pid = 0;
    unsigned test_delay_ms = 0;
    long open_max = -1; ///< sysconf(_SC_OPEN_MAX), read before the fork (not async-signal-safe)
    unsigned long sigmask = 0;
    int report_fd = -1; // the write end of the failure pipe (CLOEXEC), above every target
};

/// What the child writes on failure.
struct child_report {
    int stage;
    int err;
};

[[noreturn]] void child_fail(const portable_plan& p, spawn_stage stage, int err) noexcept {
    const child_report r{static_cast<int>(stage), err};
    ssize_t n;
    do n = ::write(p.report_fd, &r, sizeof r);
    while (n < 0 && errno == EINTR);
    ::_exit(127);
}

/// Marks every descriptor in [lo, hi] close-on-exec; `max` is the parent's descriptor limit.
bool cloexec_range(unsigned lo, unsigned hi, long max) noexcept {
#if defined(__linux__) && defined(SYS_close_range)
    if (::syscall(SYS_close_range, lo, hi, close_range_cloexec) == 0) return true;
#elif defined(__FreeBSD__) && defined(CLOSE_RANGE_CLOEXEC) // FreeBSD 13.1
    if (::close_range(lo, hi, CLOSE_RANGE_CLOEXEC) == 0) return true;
#endif
    // Elsewhere (macOS; Linux before 5.11): one fcntl per possible descriptor, up to the limit
    // (this runs before the command's own limits are set, so the limit is still the parent's).
    for (long fd = lo; fd <= static_cast<long>(hi) && (max < 0 || fd < max); ++fd) {
        int fl = ::fcntl(static_cast<int>(fd), F_GETFD);
        if (fl >= 0 && !(fl & FD_CLOEXEC)) ::fcntl(static_cast<int>(fd), F_SETFD, fl | FD_CLOEXEC);
    }
    return true;
}

/// The child, between fork and exec. Every signal is blocked (inherited from the parent's mask
/// around the fork), so no handler runs here.
[[noreturn]] void portable_child(const portable_plan& p) noexcept {
    // 1. Every signal to its default disposition (B3).
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; ++sig) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        if (::sigaction(sig, &dfl, nullptr) != 0 && errno != EINVAL)
            child_fail(p, spawn_stage::signals, errno);
    }
    // 2. A new session: the child leads its own process group, which is its tree.
    if (p.new_session && ::setsid() < 0) child_fail(p, spawn_stage::session, errno);
    // 3. stdio and passed fds (every source sits above every target; dup2 clears CLOEXEC).
    for (int i = 0; i < p.n_moves; ++i)
        if (::dup2(p.moves[i].src, p.moves[i].dst) < 0) child_fail(p, spawn_stage::stdio, errno);
    for (int fd = 0; fd < 3; ++fd)
        if (p.inherit_in_place & (1U << fd)) ::fcntl(fd, F_SETFD, 0);
    if (p.ctty_fd >= 0 && ::ioctl(p.ctty_fd, TIOCSCTTY, 0) < 0) child_fail(p, spawn_stage::terminal, errno);
    for (int fd = 0; fd < 3; ++fd) { // blocking stdio (B4)
        int fl = ::fcntl(fd, F_GETFL);
        if (fl >= 0 && (fl & O_NONBLOCK)) ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    }
    // 3c. Every descriptor >= 3 not passed on purpose: close-on-exec (B1), before step 4 may
    //     lower the descriptor limit that bounds the fallback's loop. The report pipe is
    //     close-on-exec already.
    unsigned lo = 3;
    for (int i = 0; i <= p.n_keep; ++i) {
        unsigned hi = i < p.n_keep ? static_cast<unsigned>(p.keep[i]) - 1 : ~0U;
        if (lo <= hi && !cloexec_range(lo, hi, p.open_max)) child_fail(p, spawn_stage::close_fds, errno);
        if (i < p.n_keep) lo = static_cast<unsigned>(p.keep[i]) + 1;
    }
    // 4. Resource limits, while still privileged.
    for (int i = 0; i < p.n_limits; ++i) {
        struct rlimit rl {};
        rl.rlim_cur = static_cast<rlim_t>(p.limits[i].soft);
        rl.rlim_max = static_cast<rlim_t>(p.limits[i].hard);
        if (::setrlimit(p.limits[i].resource, &rl) != 0) child_fail(p, spawn_stage::limits, errno);
    }
    // 5. Identity: groups, gid, uid; each checked and read back (G2). Called by the only thread
    //    of the forked child, so the C library's per-thread set*id broadcast has no one to reach.
    if (p.set_groups && ::setgroups(static_cast<std::size_t>(p.n_groups), p.groups) != 0)
        child_fail(p, spawn_stage::setgroups, errno);
    if (p.set_gid) {
        if (::setgid(p.gid) != 0) child_fail(p, spawn_stage::setgid, errno);
        if (::getgid() != p.gid || ::getegid() != p.gid) child_fail(p, spawn_stage::setgid, EPERM);
    }
    if (p.set_uid) {
        if (::setuid(p.uid) != 0) child_fail(p, spawn_stage::setuid, errno);
        if (::getuid() != p.uid || ::geteuid() != p.uid) child_fail(p, spawn_stage::setuid, EPERM);
    }
    // 6. Working directory (as the new identity) and umask.
    if (p.cwd != nullptr && ::chdir(p.cwd) < 0) child_fail(p, spawn_stage::cwd, errno);
    if (p.umask >= 0) ::umask(static_cast<mode_t>(p.umask));
        // 7. Parent death signal where the kernel has one (Linux, FreeBSD; on macOS it is not
        //    applied, and spawn() lists it in unapplied_limits()), after the identity change that
        //    would clear it.
#if defined(__linux__)
    if (p.pdeathsig != 0) {
        if (p.test_delay_ms != 0) {
            const struct timespec ts = {static_cast<time_t>(p.test_delay_ms / 1000),
                                        static_cast<long>(p.test_delay_ms % 1000) * 1000000L};
            ::nanosleep(&ts, nullptr);
        }
        if (::prctl(PR_SET_PDEATHSIG, p.pdeathsig, 0, 0, 0) != 0)
            child_fail(p, spawn_stage::parent_death, errno);
        if (::getppid() != p.parent_pid) ::kill(::getpid(), p.pdeathsig); // delivered at unmask
    }
#elif defined(__FreeBSD__)
    if (p.pdeathsig != 0) {
        int sig = p.pdeathsig;
        if (::procctl(P_PID, 0, PROC_PDEATHSIG_CTL, &sig) != 0)
            child_fail(p, spawn_stage::parent_death, errno);
        if (::getppid() != p.parent_pid) ::kill(::getpid(), p.pdeathsig); // delivered at unmask
    }
#endif
    // 9. The signal mask the program starts with (B2), then exec.
    sigset_t mask;
    sigemptyset(&mask);
    for (int sig = 1; sig < NSIG && sig <= 64; ++sig)
        if ((p.sigmask >> (sig - 1)) & 1UL) sigaddset(&mask, sig);
    if (::sigprocmask(SIG_SETMASK, &mask, nullptr) != 0) child_fail(p, spawn_stage::signals, errno);
    ::execve(p.path, p.argv, p.envp);
    child_fail(p, spawn_stage::exec, errno);
}

/// The Boost.Process v2 initializer: in the child, runs drover's child side, which never
/// returns (so the launcher's close-all, errno write and ::exit are never reached).
#if defined(__linux__)
struct drover_child_setup {
    const portable_plan* plan;
    template <typename Launcher>
    bp2::error_code on_exec_setup(Launcher&, const bp2::filesystem::path&, const char* const*&) const {
        portable_child(*plan);
    }
};
#endif

/// What the portable backend cannot do, named (errc::not_supported).
bool not_supported(spawn_failure& f, std::string feature) {
    f.code = errc::not_supported;
    f.stage = spawn_stage::prepare;
    f.detail = std::move(feature) + " is not supported by the portable backend";
    return false;
}

bool reject_unsupported(const command& cmd, spawn_failure& f) {
    if (cmd.unshare() != namespaces::none)
        return not_supported(f, "namespaces (" + to_string(cmd.unshare()) + ")");
    if (cmd.capability_bounding_set()) return not_supported(f, "the capability bounding set");
    if (cmd.no_new_privs()) return not_supported(f, "no_new_privs");
    return true;
}

/// SIGKILLs and reaps the child by pid, only while it is ours and unreaped (a host's
/// waitpid(-1) may have taken it, and then its pid may name someone else: C1, C2).
void kill_if_ours(pid_t pid) noexcept {
    siginfo_t si{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOHANG | WNOWAIT) == 0)
        kill_and_reap(-1, pid);
}

/// Reads the child's failure report: false and `f` filled if it failed before exec (it has
/// exited; reaped here), true on EOF (it exec'd).
bool read_report(int fd, pid_t pid, const program_image& prog, const identity& id, spawn_failure& f) {
    child_report r{};
    ssize_t n;
    do n = ::read(fd, &r, sizeof r);
    while (n < 0 && errno == EINTR);
    if (n == 0) return true;
    if (n != static_cast<ssize_t>(sizeof r)) { // not a report: the child's state is unknown
        const int err = n < 0 ? errno : EIO;
        kill_if_ours(pid);
        return spawn_fail(f, err, spawn_stage::clone, "the child's report");
    }
    // It reported and calls _exit: reap it, without a signal (by pid: a host's waitpid(-1) may
    // have taken it already, and then ECHILD ends the wait).
    siginfo_t si{};
    while (::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED) != 0 && errno == EINTR) {
    }
    auto stage = static_cast<spawn_stage>(r.stage);
    int err = r.err;
    std::string detail;
    if (stage == spawn_stage::exec) {
        detail = prog.path;
        struct stat st {};
        if (err == EACCES && ::stat(prog.path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) err = EISDIR;
    } else if (stage == spawn_stage::cwd) {
        detail = prog.cwd;
    } else if (stage == spawn_stage::setgroups || stage == spawn_stage::setgid ||
               stage == spawn_stage::setuid) {
        detail = "changing to " + id.description;
        if (err == EPERM && ::geteuid() != 0)
            detail += " needs root; drover runs as uid " + std::to_string(::geteuid());
    }
    return spawn_fail(f, err, stage, std::move(detail));
}

} // namespace

void set_test_delay_before_pdeathsig(unsigned ms) noexcept {
    g_test_pdeathsig_delay_ms.store(ms, std::memory_order_relaxed);
}

bool launch(const command& cmd, int /*cgroup_fd: none on this backend*/, launched& out,
            spawn_failure& f) noexcept try {
    if (!reject_unsupported(cmd, f) || !check_arguments(cmd, f)) return false;
    program_image prog;
    prepared_fds fds;
    if (!prepare_program(cmd, prog, f) || !prepare_fds(cmd, fds, f)) return false;
    std::vector<rlimit64_arg> limits;
    portable_plan plan;
    if (!plan_rlimits(cmd, limits, f) || !plan_signals(cmd, plan.sigmask, f)) return false;
    identity id;
    if (!resolve_identity(cmd, id, f)) return false;
    std::vector<gid_t> groups;
    if (id.groups) {
        groups = *id.groups;
        plan.set_groups = groups_differ(groups);
        plan.groups = groups.data();
        plan.n_groups = static_cast<int>(groups.size());
    }
    if (id.gid) {
        plan.set_gid = !(::getgid() == *id.gid && ::getegid() == *id.gid);
        plan.gid = *id.gid;
    }
    if (id.uid) {
        plan.set_uid = !(::getuid() == *id.uid && ::geteuid() == *id.uid);
        plan.uid = *id.uid;
    }
    plan.path = prog.path.c_str();
    plan.argv = prog.argv.data();
    plan.envp = prog.envp.data();
    plan.cwd = cmd.cwd() ? prog.cwd.c_str() : nullptr;
    plan.moves = fds.moves.data();
    plan.n_moves = static_cast<int>(fds.moves.size());
    plan.keep = fds.keep.data();
    plan.n_keep = static_cast<int>(fds.keep.size());
    plan.inherit_in_place = fds.inherit_in_place;
    plan.new_session = cmd.new_session();
    plan.ctty_fd = fds.ctty_fd;
    plan.limits = limits.data();
    plan.n_limits = static_cast<int>(limits.size());
    plan.umask = cmd.umask() ? static_cast<int>(*cmd.umask()) : -1;
    plan.pdeathsig = cmd.parent_death_signal();
    plan.parent_pid = own_pid();
    plan.test_delay_ms = g_test_pdeathsig_delay_ms.load(std::memory_order_relaxed);
    plan.open_max = ::sysconf(_SC_OPEN_MAX);

    // The failure pipe, its write end above every target descriptor (no dup2 clobbers it).
    int max_target = 2;
    for (const auto& m : fds.moves) max_target = std::max(max_target, m.dst);
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0)
        return spawn_fail(f, errno, spawn_stage::clone, "the child's report pipe");
    unique_fd report_read{p[0]}, report_write{p[1]};
    if (report_write.get() <= max_target) {
        unique_fd high{::fcntl(report_write.get(), F_DUPFD_CLOEXEC, max_target + 1)};
        if (!high) return spawn_fail(f, errno, spawn_stage::clone, "the child's report pipe");
        report_write = std::move(high);
    }
    plan.report_fd = report_write.get();

    f_alloc_point(); // tests: everything opened so far must be closed on the way out

    // Every signal blocked around the fork: no handler of ours runs in the child, and a signal
    // sent at the newborn waits until it has exec'd (its mask is set just before execve).
    sigset_t all, old;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = -1;
    int err = 0;
    bool held = false; // the launcher built its process handle (then detached)
    const pid_t parent = ::getpid();
    // An exception thrown in the forked child (the launcher's notify_fork there) must never
    // reach the code below, which is the parent's: the child reports and exits instead.
    const auto in_child = [&](int e) {
        if (::getpid() != parent) child_fail(plan, spawn_stage::clone, e != 0 ? e : EIO);
    };
#if !defined(__linux__)
    // Not Linux: Process v2's handle there waits through an Asio signal_set on SIGCHLD, that
    // is, a process-wide SIGCHLD handler installed (and, when the set goes, reset to SIG_DFL)
    // for every launch: drover's own fork instead, with the same child side.
    if (int e = fault(fault_point::fork)) {
        err = e;
    } else {
        pid = ::fork();
        if (pid == 0) portable_child(plan);
        if (pid < 0) err = errno;
        held = true;
    }
    (void)in_child;
#else
    try {
        boost::asio::io_context launch_ctx; // never the caller's: see the top of this file
        // Its reactor now, before the fork: built later, inside the launcher's handle, a failure
        // (out of descriptors) would throw after the handle's pidfd_open, leaking that pidfd.
        boost::asio::posix::stream_descriptor reactor_first(launch_ctx);
        bp2::posix::default_launcher launcher;
        try {
            bp2::error_code ec;
            auto proc = launcher(launch_ctx.get_executor(), ec, bp2::filesystem::path(prog.path),
                                 std::vector<std::string>{}, drover_child_setup{&plan});
            proc.detach(); // its destructor would kill by raw pid
            held = true;
            err = ec.value();
        } catch (const boost::system::system_error& e) {
            // Asio could not build the handle's descriptor for the pidfd it opens: out of
            // descriptors, or ESRCH when someone else reaped the child first (C2).
            in_child(e.code().value());
            err = e.code().value();
        } catch (...) {
            in_child(ENOMEM);
            err = ENOMEM;
        }
        pid = launcher.pid;
    } catch (const boost::system::system_error& e) { // the io_context itself (before any fork)
        err = e.code().value();
    } catch (...) {
        err = ENOMEM;
    }
#endif
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    report_write.reset();
    if (pid > 0 && !held) {
        // The child was created, but the launcher failed after the fork: it must not run
        // unsupervised. By pid only while it is ours and unreaped (a host's waitpid(-1) may
        // have taken it: then its pid may name someone else already, C2).
        siginfo_t si{};
        if (::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOHANG | WNOWAIT) != 0 && errno == ECHILD)
            err = ESRCH;
        else
            kill_if_ours(pid);
        // Asio reports the handle's failed pidfd_open as the EBADF of registering -1.
        if (err == EBADF || err == 0) err = EMFILE;
        return spawn_fail(f, err, spawn_stage::pidfd);
    }
    if (pid <= 0) {
        if (err == 0) err = EAGAIN;
        if (err == EAGAIN) { // a process limit: say which (docs/reliability.md row F3)
            struct rlimit np {};
            ::getrlimit(RLIMIT_NPROC, &np);
            return spawn_fail(
                f, err, spawn_stage::clone,
                "a process limit was reached: RLIMIT_NPROC of uid " + std::to_string(::getuid()) + " (" +
                    (np.rlim_cur == RLIM_INFINITY ? std::string("unlimited") : std::to_string(np.rlim_cur)) +
                    ") or the system's process table");
        }
        return spawn_fail(f, err, spawn_stage::clone);
    }
    if (!read_report(report_read.get(), pid, prog, id, f)) return false;

#if defined(__linux__)
    // The child is ours and unreaped: its pid cannot name another process yet (unless a host's
    // waitpid(-1) took it: then ESRCH, docs/reliability.md row C2).
    unique_fd pidfd{sys_pidfd_open(pid, 0)};
    if (!pidfd) {
        int err = errno;
        if (err != ESRCH) kill_if_ours(pid);
        return spawn_fail(f, err, spawn_stage::pidfd);
    }
    // Still our child? (A host's waitpid(-1) may have reaped it before the pidfd_open, and the
    // pid been reused: then the pidfd names someone else's process.)
    siginfo_t si{};
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd.get()), &si,
                 WEXITED | WNOHANG | WNOWAIT) != 0 &&
        errno == ECHILD)
        return spawn_fail(f, ESRCH, spawn_stage::pidfd);
    out.pidfd = std::move(pidfd);
#else
    // The exit watch: a kqueue with EVFILT_PROC/NOTE_EXIT on the pid (detail/sys.hpp), which
    // the child's exit makes readable; waiting on it needs no SIGCHLD handler. The pid is safe
    // to name: the child is ours and unreaped (sys_pidfd_open checks that it still is when the
    // filter cannot attach; a host's waitpid(-1) in between is the C2 window).
    unique_fd watch{sys_pidfd_open(pid, 0)};
    if (!watch) {
        int err = errno;
        kill_if_ours(pid);
        return spawn_fail(f, err, spawn_stage::pidfd);
    }
    out.pidfd = std::move(watch);
#endif
    out.pid = pid;
    for (int t = 0; t < 3; ++t) out.parent_end[t] = std::move(fds.parent_end[t]);
    out.pty_master = std::move(fds.pty_master);
    return true;
} catch (const std::bad_alloc&) {
    return spawn_fail(f, ENOMEM, spawn_stage::prepare);
}

} // namespace drover::detail

namespace drover {

backend_kind backend() noexcept {
    return backend_kind::portable;
}

} // namespace drover
