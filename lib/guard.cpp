// The tree guard (drover/guard.hpp). For a cgroup tree the guard is a copy of this process made
// by clone3 without CLONE_VM and without exec, running only raw system calls: it costs a page
// table copy, not the start-up of a program (docs/performance.md, run-overhead). Otherwise, or
// when guard_options names a program, the guard is that program run with `__drover_guard`.
#include "drover/guard.hpp"

#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#if defined(__linux__)
#include <sys/prctl.h>
#include <sys/syscall.h>
#elif defined(__APPLE__)
#include <libproc.h>
#include <sys/sysctl.h>
#elif defined(__FreeBSD__)
#include <sys/param.h>
#include <sys/sysctl.h>
#include <sys/user.h>
#include <string.h>
#endif
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <new>
#include <string_view>
#include <utility>

#include <boost/asio/buffer.hpp>
#include <boost/asio/write.hpp>

#include "detail/child_impl.hpp"
#include "detail/cleanups.hpp"
#include "detail/pipe_writer_access.hpp"
#include "detail/posix.hpp"
#include "detail/raw_child.hpp"
#include "detail/registry.hpp"
#include "detail/sys.hpp"
#include "detail/unique_fd.hpp"
#include "drover/backend.hpp"
#include "drover/reaper.hpp"

namespace drover {
namespace detail {

struct guard_access {
    static tree_guard make(child c) noexcept {
        tree_guard g;
        g.guard_ = std::move(c);
        return g;
    }
    static child make_child(std::shared_ptr<child_impl> impl) noexcept { return child(std::move(impl)); }
};

namespace {

#if defined(__linux__) // the forked guard and its cgroup: Linux only (the portable backend refuses)
// ---- the forked guard --------------------------------------------------------------------------
//
// THE RULE FOR THESE FUNCTIONS is raw_child.cpp's: the copy of this process they run in may have
// been made while another thread held a lock (malloc's, the logger's), so they make raw system
// calls through syscall() only, never allocate, lock, throw or log, and are not instrumented by
// sanitizers. Everything they read was prepared by the parent before the clone.

/// What the forked guard needs; its copy of the parent's memory holds it.
struct forked_guard_plan {
    int pipe_r = -1;  ///< the read end of the dismissal pipe
    int pipe_w = -1;  ///< its write end (this process's): closed first, whatever close_range does
    int null_fd = -1; ///< /dev/null, for stdout and stderr
    const char* kill_path = nullptr;
    const char* events_path = nullptr;
    const char* leaf = nullptr;
    const char* drover_dir = nullptr;
};

#define DROVER_GUARD_FN                                                                                      \
    __attribute__((noinline, no_sanitize("address", "thread", "undefined"), no_stack_protector))

DROVER_GUARD_FN void guard_sleep_10ms() noexcept {
    const struct timespec ts = {0, 10L * 1000 * 1000};
    ::syscall(SYS_nanosleep, &ts, nullptr);
}

/// `populated` of the leaf: 1, 0, or -1 once cgroup.events cannot be read (the leaf is gone).
DROVER_GUARD_FN int guard_populated(const char* events_path) noexcept {
    long fd = ::syscall(SYS_openat, AT_FDCWD, events_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[256];
    long n = ::syscall(SYS_read, fd, buf, sizeof buf - 1);
    ::syscall(SYS_close, fd);
    if (n <= 0) return -1;
    const char key[] = {'p', 'o', 'p', 'u', 'l', 'a', 't', 'e', 'd', ' '};
    for (long i = 0; i < n; ++i) {
        if (i != 0 && buf[i - 1] != '\n') continue;
        long k = 0;
        while (k < 10 && i + k < n && buf[i + k] == key[k]) ++k;
        if (k == 10 && i + k < n) return buf[i + k] == '0' ? 0 : 1;
    }
    return 1; // never claims empty wrongly
}

/// The guard's whole life: its own session, stdin the pipe, stdout and stderr /dev/null, no
/// other descriptor, every signal at its default and TERM, INT, HUP and QUIT blocked (as
/// run_guard_if_requested). "d" on the pipe: dismissed. End-of-file without it: the parent is
/// gone; kill the leaf, wait for it to empty, remove it and drover's directory above it.
DROVER_GUARD_FN int forked_guard_main(void* arg) noexcept {
    const auto* p = static_cast<const forked_guard_plan*>(arg);
    const unsigned long dfl_action[4] = {0, 0, 0, 0};
    for (int sig = 1; sig <= 64; ++sig)
        if (sig != SIGKILL && sig != SIGSTOP) ::syscall(SYS_rt_sigaction, sig, dfl_action, nullptr, 8);
    ::syscall(SYS_setsid);
    ::syscall(SYS_prctl, PR_SET_NAME, "drover-guard", 0, 0, 0);
    ::syscall(SYS_close, p->pipe_w);
    ::syscall(SYS_dup3, p->pipe_r, 0, 0);
    ::syscall(SYS_dup3, p->null_fd, 1, 0);
    ::syscall(SYS_dup3, p->null_fd, 2, 0);
    ::syscall(SYS_close_range, 3U, ~0U, 0U);
    ::syscall(SYS_chdir, "/");
    const unsigned long blocked =
        1UL << (SIGTERM - 1) | 1UL << (SIGINT - 1) | 1UL << (SIGHUP - 1) | 1UL << (SIGQUIT - 1);
    ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &blocked, nullptr, 8);
    char c = 0;
    long n;
    do n = ::syscall(SYS_read, 0, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n == 1 && c == 'd') return 0;
    long fd = ::syscall(SYS_openat, AT_FDCWD, p->kill_path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        ::syscall(SYS_write, fd, "1", 1);
        ::syscall(SYS_close, fd);
    }
    for (int i = 0; i < 500 && guard_populated(p->events_path) == 1; ++i) guard_sleep_10ms();
    // EBUSY while the killed processes are zombies waiting for their new parent to reap them.
    for (int i = 0; i < 300 && ::syscall(SYS_rmdir, p->leaf) != 0 && errno == EBUSY; ++i) guard_sleep_10ms();
    ::syscall(SYS_rmdir, p->drover_dir); // fails harmlessly while another leaf remains
    return 0;
}

/// A descriptor at 3 or above (the guard moves its own to 0, 1 and 2), close-on-exec.
int above_stdio(int fd) noexcept {
    if (fd < 0 || fd >= 3) return fd;
    int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    ::close(fd);
    return moved;
}

/// Starts the forked guard of a cgroup tree (the leaf at `leaf`). False when this system will not
/// make one (no clone3, a seccomp profile refusing it): the caller execs a guard program instead.
/// On any other failure fills `f`.
bool fork_guard(const child& c, const std::string& leaf, child& out, spawn_failure& f) {
    if constexpr (!have_clone3_trampoline) {
        return false;
    } else {
        const auto& ex = c.get_executor();
        prepare_cleanups(ex);
        // Everything that can throw, before the clone: after it, a failure would leave a guard
        // running that reads end-of-file as this process's death.
        auto impl = std::make_shared<child_impl>(ex);
        impl->in.emplace(ex);
        impl->program = "drover-guard";
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) {
            f.code = sys_error(errno);
            f.stage = spawn_stage::stdio;
            return true;
        }
        unique_fd pipe_r(above_stdio(p[0])), pipe_w(above_stdio(p[1]));
        unique_fd null_fd(above_stdio(::open("/dev/null", O_RDWR | O_CLOEXEC)));
        if (!pipe_r || !pipe_w || !null_fd) {
            f.code = sys_error(errno);
            f.stage = spawn_stage::stdio;
            return true;
        }
        const std::string kill_path = leaf + "/cgroup.kill", events_path = leaf + "/cgroup.events",
                          drover_dir = leaf.substr(0, leaf.rfind('/'));
        forked_guard_plan plan;
        plan.pipe_r = pipe_r.get();
        plan.pipe_w = pipe_w.get();
        plan.null_fd = null_fd.get();
        plan.kill_path = kill_path.c_str();
        plan.events_path = events_path.c_str();
        plan.leaf = leaf.c_str();
        plan.drover_dir = drover_dir.c_str();
        void* stack_top = child_stack_top();
        if (stack_top == nullptr) {
            f.code = sys_error(ENOMEM);
            f.stage = spawn_stage::clone;
            f.detail = "child stack";
            return true;
        }
        int pidfd = -1;
        clone_args args{};
        args.flags = CLONE_PIDFD;
        args.pidfd = reinterpret_cast<std::uint64_t>(&pidfd);
        args.exit_signal = SIGCHLD; // what every spawned child sends (no disposition is touched)
        args.stack = reinterpret_cast<std::uint64_t>(stack_top) - child_stack_size;
        args.stack_size = child_stack_size;
        long ret;
        {
            // Every signal blocked across the clone: no handler of this process runs in the copy
            // before it has reset them. Under the registry's lock: in runner mode,
            // reap_orphans() never takes a child that is ours but not registered yet.
            const unsigned long all = ~0UL;
            unsigned long old = 0;
            ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, 8);
            {
                std::lock_guard lock(spawn_registry_mutex());
                ret = drover_clone3_trampoline(&args, sizeof(clone_args), forked_guard_main, &plan);
                if (ret > 0) {
                    try {
                        registry_add_locked(static_cast<pid_t>(ret));
                    } catch (...) {
                    }
                }
            }
            ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, nullptr, 8);
        }
        if (ret < 0) {
            // No clone3 (a seccomp profile), or no memory for a copy (overcommit refused, a
            // pids limit): the exec'd guard may still start.
            if (-ret == ENOSYS || -ret == EPERM || -ret == EINVAL || -ret == ENOMEM || -ret == EAGAIN)
                return false;
            f.code = sys_error(static_cast<int>(-ret));
            f.stage = spawn_stage::clone;
            return true;
        }
        const auto pid = static_cast<pid_t>(ret);
        pipe_r.reset(); // the guard has its copy
        impl->session = pid;
        impl->stop_signal = SIGTERM;
        impl->on_cancel = cancel_policy::leave_running;
        error_code ec;
        impl->pidfd.assign(pidfd, ec);
        if (!ec) {
            impl->pid = pid;
            pipe_writer_access::descriptor(*impl->in).assign(pipe_w.get(), ec);
            if (!ec) pipe_w.release();
        }
        if (ec) { // the guard cannot be watched: end it now
            kill_and_reap(pidfd, pid);
            if (!impl->pidfd.is_open()) ::close(pidfd);
            registry_remove(pid);
            f.code = ec;
            f.stage = spawn_stage::register_io;
            return true;
        }
        out = guard_access::make_child(std::move(impl));
        return true;
    }
}

#endif

#if !defined(__linux__)
/// Off Linux, where the guard kills by group id: whether a process `pid` exists that started
/// after this one (the guard, which starts after the tree's leader). Then the leader is gone and
/// its number names another process, whose group must not be killed (reliability.md C2, D1).
bool started_after_me(pid_t pid) noexcept {
    auto start_of = [](pid_t p, struct timeval& tv) noexcept -> bool {
#if defined(__APPLE__)
        struct proc_bsdinfo bi {};
        if (::proc_pidinfo(p, PROC_PIDTBSDINFO, 0, &bi, sizeof bi) != static_cast<int>(sizeof bi))
            return false;
        tv.tv_sec = static_cast<time_t>(bi.pbi_start_tvsec);
        tv.tv_usec = static_cast<suseconds_t>(bi.pbi_start_tvusec);
        return true;
#elif defined(__FreeBSD__)
        struct kinfo_proc kp {};
        std::size_t size = sizeof kp;
        int mib[4] = {CTL_KERN, KERN_PROC, KERN_PROC_PID, p};
        if (::sysctl(mib, 4, &kp, &size, nullptr, 0) != 0 || size != sizeof kp) return false;
        tv = kp.ki_start;
        return true;
#else
        (void)p;
        (void)tv;
        return false;
#endif
    };
    struct timeval mine {
    }, theirs{};
    if (!start_of(::getpid(), mine) || !start_of(pid, theirs)) return false;
    return timercmp(&theirs, &mine, >);
}
#endif

/// This program's path for the guard's argv[0] (so `ps` shows what runs), or /proc/self/exe
/// when the link cannot be read or no longer names the file (replaced on disk). Off Linux the
/// kernel's absolute path of it (empty when there is none).
std::string this_program() {
#if defined(__APPLE__)
    char buf[PROC_PIDPATHINFO_MAXSIZE];
    int n = ::proc_pidpath(::getpid(), buf, sizeof buf);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
#elif defined(__FreeBSD__)
    char buf[PATH_MAX];
    std::size_t size = sizeof buf;
    int mib[4] = {CTL_KERN, KERN_PROC, KERN_PROC_PATHNAME, -1};
    if (::sysctl(mib, 4, buf, &size, nullptr, 0) != 0 || size == 0) return {};
    return std::string(buf, ::strnlen(buf, size));
#else
    char buf[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return "/proc/self/exe";
    std::string path(buf, static_cast<std::size_t>(n));
    if (::access(path.c_str(), X_OK) != 0) return "/proc/self/exe";
    return path;
#endif
}

} // namespace
} // namespace detail

tree_guard::tree_guard() noexcept = default;
tree_guard::tree_guard(tree_guard&&) noexcept = default;

tree_guard& tree_guard::operator=(tree_guard&& other) noexcept {
    if (this != &other) {
        error_code ignored;
        dismiss(ignored);
        guard_ = std::move(other.guard_);
    }
    return *this;
}

tree_guard::~tree_guard() {
    error_code ignored;
    dismiss(ignored);
}

std::optional<pid_t> tree_guard::id() const noexcept {
    return guard_.id();
}

void tree_guard::dismiss() {
    error_code ec;
    dismiss(ec);
    if (ec) throw boost::system::system_error(ec, "dismissing the tree guard");
}

void tree_guard::dismiss(error_code& ec) noexcept {
    ec.clear();
    if (!guard_.valid()) {
        ec = errc::not_running;
        return;
    }
    try {
        // "d": all is well. The guard exits at once; detach() reaps it in the background.
        boost::asio::write(guard_.std_in(), boost::asio::buffer("d", 1), ec);
        error_code ignored;
        guard_.std_in().close(ignored);
    } catch (const std::bad_alloc&) {
        ec = make_error_code(boost::system::errc::not_enough_memory);
    } catch (const boost::system::system_error& e) {
        ec = e.code();
    }
    guard_.detach();
}

tree_guard guard_tree(const child& c, const guard_options& options, spawn_failure& failure) noexcept {
    failure = {};
    try {
        // The portable backend has no forked guard (it is Linux's clone3): always the guard
        // program (run_guard_if_requested: the session walk on Linux, the group kill elsewhere).
        failure.program = options.program.empty() ? detail::this_program() : options.program;
        if (failure.program.empty()) {
            failure.code = errc::not_supported;
            failure.stage = spawn_stage::prepare;
            failure.detail = "this program's path cannot be found: name the guard program (guard_options)";
            return {};
        }
        const std::optional<pid_t> pid = c.id();
        if (!pid) {
            failure.code = errc::not_running;
            failure.stage = spawn_stage::prepare;
            failure.detail = "the child to guard is not running";
            return {};
        }
#if defined(__linux__)
        if (options.program.empty() && c.tree() == tree_kind::cgroup &&
            backend() == backend_kind::linux_native) {
            child guard;
            failure.program = "drover-guard";
            if (detail::fork_guard(c, *c.cgroup_path(), guard, failure)) {
                if (failure) return {};
                return detail::guard_access::make(std::move(guard));
            }
            failure.program = detail::this_program();
        }
#endif
        command g(failure.program, {guard_argument, c.cgroup_path().value_or("-"), std::to_string(*pid)});
        // Outside the tree (no cgroup of its own), in its own session (the default), and with
        // no parent-death signal: it has to outlive this process to do its job.
        // TERM, INT, HUP and QUIT blocked from the start (a signal meant for everything must not
        // take the guard before it has blocked them itself).
        g.std_in(stdio::pipe())
            .std_out(stdio::null())
            .std_err(stdio::null())
            .blocked_signals({SIGTERM, SIGINT, SIGHUP, SIGQUIT})
            .cgroup(cgroup_mode::off)
            .parent_death_signal(0)
            .on_cancel(cancel_policy::leave_running);
        child guard = spawn(c.get_executor(), g, failure);
        if (failure) return {};
        return detail::guard_access::make(std::move(guard));
    } catch (const std::bad_alloc&) {
        failure.code = make_error_code(boost::system::errc::not_enough_memory);
        failure.stage = spawn_stage::prepare;
        return {};
    }
}

tree_guard guard_tree(const child& c, const guard_options& options, error_code& ec) noexcept {
    spawn_failure failure;
    tree_guard g = guard_tree(c, options, failure);
    ec = failure.code;
    return g;
}

tree_guard guard_tree(const child& c, const guard_options& options) {
    spawn_failure failure;
    tree_guard g = guard_tree(c, options, failure);
    if (failure) throw spawn_error(std::move(failure));
    return g;
}

std::optional<int> run_guard_if_requested(int argc, const char* const* argv) {
    if (argc < 2 || std::string_view(argv[1]) != guard_argument) return std::nullopt;
    if (argc != 4) return 2;
    const std::string_view cgroup(argv[2]), session(argv[3]);
    pid_t sid = 0;
    auto [end, err] = std::from_chars(session.data(), session.data() + session.size(), sid);
    if (err != std::errc{} || end != session.data() + session.size() || sid <= 0 || cgroup.empty() ||
        (cgroup != "-" && cgroup.front() != '/'))
        return 2;
    // Only SIGKILL ends a guard early: a TERM or HUP meant for everything (a logout, a group
    // kill) must not take it before the process it watches.
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGQUIT}) sigaddset(&set, s);
    ::sigprocmask(SIG_BLOCK, &set, nullptr);
    // "d": dismissed. End-of-file without it: the process that started us is gone.
    char c = 0;
    ssize_t n;
    do n = ::read(0, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n == 1 && c == 'd') return 0;
#if !defined(__linux__)
    // By group id there (kill_abandoned_tree): not when that number now names a process younger
    // than this guard. A group with members left keeps its id, so only a gone leader's can be
    // reused.
    if (detail::started_after_me(sid)) return 0;
#endif
    kill_abandoned_tree(cgroup == "-" ? std::string() : std::string(cgroup), sid);
    return 0;
}

} // namespace drover
