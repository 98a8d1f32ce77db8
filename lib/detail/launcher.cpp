// The launcher choice: clone3 and its fallbacks, probed once and remembered
// (docs/architecture.md, "Spawning"). All of them run the same raw child.
#include "detail/launcher.hpp"

#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

#include "detail/fault.hpp"
#include "detail/sys.hpp"

namespace drover::detail {

std::string_view to_string(launcher_kind k) noexcept {
    switch (k) {
    case launcher_kind::automatic:
        return "automatic";
    case launcher_kind::clone3:
        return "clone3";
    case launcher_kind::clone_pidfd:
        return "clone+pidfd";
    case launcher_kind::clone_pidfd_open:
        return "clone+pidfd_open";
    }
    return "?";
}

namespace {

std::atomic<int> g_forced{0};               // launcher_kind pinned by tests, 0 = probe
std::atomic<int> g_detected{0};             // launcher_kind that worked, 0 = not yet
std::atomic<bool> g_clear_sighand_ok{true}; // CLONE_CLEAR_SIGHAND accepted (5.5+)

/// Blocks every signal on this thread for the duration of a clone.
class all_signals_blocked {
public:
    all_signals_blocked() noexcept {
        const unsigned long all = ~0UL;
        ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old_, 8);
    }
    ~all_signals_blocked() { ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old_, nullptr, 8); }
    all_signals_blocked(const all_signals_blocked&) = delete;
    all_signals_blocked& operator=(const all_signals_blocked&) = delete;

private:
    unsigned long old_ = 0;
};

clone_result do_clone3(child_plan& plan, void* stack_top) noexcept {
    clone_result r;
    if (int e = fault(fault_point::clone3)) { // tests: a seccomp profile or an old kernel
        r.err = e;
        return r;
    }
    if constexpr (have_clone3_trampoline) {
        for (;;) {
            bool clear = g_clear_sighand_ok.load(std::memory_order_relaxed);
            bool into = plan.cgroup_fd >= 0 && !plan.attach_in_child;
            clone_args args{};
            args.flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | (clear ? clone_clear_sighand : 0) |
                         (into ? clone_into_cgroup : 0) | plan.ns_flags;
            if (into) args.cgroup = static_cast<std::uint64_t>(plan.cgroup_fd);
            args.pidfd = reinterpret_cast<std::uint64_t>(&r.pidfd);
            args.exit_signal = SIGCHLD;
            args.stack = reinterpret_cast<std::uint64_t>(stack_top) - child_stack_size;
            args.stack_size = child_stack_size;
            long ret = drover_clone3_trampoline(&args, sizeof(clone_args), raw_child_main, &plan);
            if (ret >= 0) {
                r.pid = static_cast<pid_t>(ret);
                return r;
            }
            if (into) { // < 5.7, or a cgroup that refuses it (threaded, EBUSY): join from the child
                plan.attach_in_child = true;
                continue;
            }
            if ((ret == -EINVAL || ret == -E2BIG) && clear &&
                plan.ns_flags == 0) { // < 5.5: no CLONE_CLEAR_SIGHAND
                g_clear_sighand_ok.store(false, std::memory_order_relaxed);
                continue;
            }
            r.err = static_cast<int>(-ret);
            return r;
        }
    } else {
        (void)plan;
        (void)stack_top;
        r.err = ENOSYS;
        return r;
    }
}

clone_result do_clone(child_plan& plan, void* stack_top, bool with_pidfd) noexcept {
    clone_result r;
    if (int e = with_pidfd ? fault(fault_point::clone_pidfd) : 0) { // tests: CLONE_PIDFD refused
        r.err = e;
        return r;
    }
    if (plan.cgroup_fd >= 0) plan.attach_in_child = true; // no CLONE_INTO_CGROUP with clone()
    int flags =
        CLONE_VM | CLONE_VFORK | (with_pidfd ? CLONE_PIDFD : 0) | SIGCHLD | static_cast<int>(plan.ns_flags);
    pid_t pid = ::clone(raw_child_main, stack_top, flags, &plan, with_pidfd ? &r.pidfd : nullptr);
    if (pid < 0) {
        r.err = errno;
        return r;
    }
    r.pid = pid;
    return r;
}

} // namespace

bool launcher_refused(int err) noexcept {
    return err == ENOSYS || err == EPERM || err == EINVAL;
}

clone_result create_child(child_plan& plan, void* stack_top, launcher_kind& used) noexcept {
    all_signals_blocked blocked;
    int forced = g_forced.load(std::memory_order_relaxed);
    int start = forced != 0 ? forced : g_detected.load(std::memory_order_relaxed);
    if (start == 0) start = static_cast<int>(launcher_kind::clone3);
    clone_result r;
    for (int k = start; k <= static_cast<int>(launcher_kind::clone_pidfd_open); ++k) {
        switch (static_cast<launcher_kind>(k)) {
        case launcher_kind::clone3:
            r = do_clone3(plan, stack_top);
            break;
        case launcher_kind::clone_pidfd:
            r = do_clone(plan, stack_top, true);
            break;
        default:
            r = do_clone(plan, stack_top, false);
            break;
        }
        used = static_cast<launcher_kind>(k);
        // ENOSYS: no such syscall (or a seccomp profile saying so); EPERM: a seccomp profile
        // refusing it; EINVAL: a flag this kernel does not know. Try the next launcher.
        if (r.pid >= 0 || forced != 0 || !launcher_refused(r.err)) break;
    }
    if (r.pid >= 0 && forced == 0) g_detected.store(static_cast<int>(used), std::memory_order_relaxed);
    return r;
}

void force_launcher(launcher_kind k) noexcept {
    g_forced.store(static_cast<int>(k), std::memory_order_relaxed);
    if (k == launcher_kind::automatic) g_detected.store(0, std::memory_order_relaxed); // probe afresh
}

launcher_kind current_launcher() noexcept {
    int forced = g_forced.load(std::memory_order_relaxed);
    return static_cast<launcher_kind>(forced != 0 ? forced : g_detected.load(std::memory_order_relaxed));
}

} // namespace drover::detail
