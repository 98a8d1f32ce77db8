// The Linux launcher. docs/architecture.md ("Spawning") lists the steps of both sides, in order.
//
// Parent: prepares everything the child needs (absolute path, argv/envp arrays, every stdio
// descriptor at a number above every target), blocks all signals, and creates the child with
// clone3(CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_CLEAR_SIGHAND) on a per-thread stack.
// CLONE_VFORK suspends this thread until the child has exec'd or died, so the child may write
// its {stage, errno} straight into `child_plan` (shared memory, no error pipe), and the stack
// is free again when clone returns.
//
// Child: raw syscalls only, through `syscall()` (no malloc, no locks, no exceptions, no
// logging, no sanitizer instrumentation), in the order docs/architecture.md ("Spawning") gives.
//
// The child's exit signal is SIGCHLD, as for any child: drover never handles it (it waits on
// the pidfd), and leaves the process's SIGCHLD disposition alone.
#include "detail/fault.hpp"
#include "detail/launch.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <termios.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "detail/prepare.hpp"
#include "detail/sys.hpp"

extern char** environ;

namespace drover::detail {

std::string_view to_string(launcher_kind k) noexcept {
    switch (k) {
    case launcher_kind::automatic: return "automatic";
    case launcher_kind::clone3: return "clone3";
    case launcher_kind::clone_pidfd: return "clone+pidfd";
    case launcher_kind::clone_pidfd_open: return "clone+pidfd_open";
    }
    return "?";
}

namespace {

std::atomic<int> g_forced{0};                 // launcher_kind pinned by tests, 0 = probe
std::atomic<int> g_detected{0};               // launcher_kind that worked, 0 = not yet
std::atomic<bool> g_clear_sighand_ok{true};   // CLONE_CLEAR_SIGHAND accepted (5.5+)
std::atomic<unsigned> g_test_pdeathsig_delay_ms{0};

// ---- what the child needs, prepared by the parent ------------------------------------------

struct fd_move {
    int src; // > every target, CLOEXEC
    int dst;
};

/// One prlimit64 call's arguments (the kernel's struct rlimit64 is two u64).
struct rlimit64_arg {
    int resource;
    std::uint64_t soft;
    std::uint64_t hard;
};

struct child_plan {
    const char* path = nullptr;
    char* const* argv = nullptr;
    char* const* envp = nullptr;
    const char* cwd = nullptr;
    const fd_move* moves = nullptr;
    int n_moves = 0;
    const int* keep = nullptr; // passed targets >= 3, ascending
    int n_keep = 0;
    unsigned inherit_in_place = 0; // bit t: fd t (0..2) is inherited as is; clear its CLOEXEC
    bool new_session = true;
    int ctty_fd = -1;              // a target fd (0-2) on the pty slave: TIOCSCTTY, or -1
    bool cloexec_range = true;
    int cgroup_fd = -1;            // the leaf cgroup's directory, or -1
    bool attach_in_child = false;  // join cgroup_fd by writing cgroup.procs (no CLONE_INTO_CGROUP)
    int pdeathsig = 0;             // PR_SET_PDEATHSIG, 0 = none
    pid_t parent_pid = 0;          // getpid() before the clone, for the getppid() check
    unsigned test_delay_ms = 0;    // tests: sleep before PR_SET_PDEATHSIG
    const struct rlimit64_arg* limits = nullptr; // resource limits to set, with their resource
    int n_limits = 0;
    int umask = -1;                // -1: keep the parent's
    bool no_new_privs = false;
    // Identity (resolved by the parent; each step only when it changes something).
    bool set_groups = false;
    const gid_t* groups = nullptr;
    gid_t* groups_check = nullptr; // n_groups entries, for getgroups
    int n_groups = 0;
    bool set_gid = false;
    gid_t gid = 0;
    bool set_uid = false;
    uid_t uid = 0;
    // Capability bounding set: drop every cap in [0, last_cap] not in keep_caps.
    bool drop_caps = false;
    std::uint64_t keep_caps = 0;
    int last_cap = -1;
    // Namespaces: clone flags, then what the child sets up inside them.
    std::uint64_t ns_flags = 0;
    const char* uid_map = nullptr; // "0 <euid> 1\n" for a new user namespace
    const char* gid_map = nullptr;
    bool private_mounts = false;   // MS_REC|MS_PRIVATE on / (new mount namespace)
    bool mount_proc = false;       // a fresh /proc (new pid + mount namespaces)
    struct ifreq* loopback = nullptr; // "lo", brought up in a new network namespace
    // Written by the child on failure (shared memory: CLONE_VM).
    int stage = 0;
    int err = 0;
    int substep = 0; // which step of a stage failed (for the parent's message)
};

/// Steps within a stage, for messages (child_plan::substep).
enum substep : int {
    sub_none = 0,
    sub_setgroups_deny,
    sub_uid_map,
    sub_gid_map,
    sub_loopback,
    sub_private_mounts,
    sub_mount_proc,
    sub_capbset,
    sub_capset,
    sub_verify,
};

// ---- the child ------------------------------------------------------------------------------

// The 32-bit-id set*id calls: on i386 and 32-bit arm the plain numbers take 16-bit ids.
#ifdef SYS_setresuid32
constexpr long sys_setgroups_nr = SYS_setgroups32, sys_getgroups_nr = SYS_getgroups32,
               sys_setresuid_nr = SYS_setresuid32, sys_getresuid_nr = SYS_getresuid32,
               sys_setresgid_nr = SYS_setresgid32, sys_getresgid_nr = SYS_getresgid32;
#else
constexpr long sys_setgroups_nr = SYS_setgroups, sys_getgroups_nr = SYS_getgroups,
               sys_setresuid_nr = SYS_setresuid, sys_getresuid_nr = SYS_getresuid,
               sys_setresgid_nr = SYS_setresgid, sys_getresgid_nr = SYS_getresgid;
#endif

#define DROVER_CHILD_FN                                                                           \
    __attribute__((noinline, no_sanitize("address", "thread", "undefined"), no_stack_protector))

DROVER_CHILD_FN [[noreturn]] void child_fail(child_plan* p, spawn_stage stage, int err) noexcept {
    p->err = err;
    p->stage = static_cast<int>(stage);
    ::syscall(SYS_exit_group, 127);
    __builtin_unreachable();
}

DROVER_CHILD_FN [[noreturn]] void child_fail_at(child_plan* p, spawn_stage stage, int sub, int err) noexcept {
    p->substep = sub;
    child_fail(p, stage, err);
}

DROVER_CHILD_FN std::size_t child_strlen(const char* s) noexcept {
    std::size_t n = 0;
    while (s[n] != '\0') ++n;
    return n;
}

/// Writes `text` to `path` in one write(2). Returns 0 or an errno.
DROVER_CHILD_FN int child_write_file(const char* path, const char* text) noexcept {
    long fd = ::syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    std::size_t len = child_strlen(text);
    long n = ::syscall(SYS_write, fd, text, len);
    int err = n < 0 ? errno : (static_cast<std::size_t>(n) != len ? EIO : 0);
    ::syscall(SYS_close, fd);
    return err;
}

DROVER_CHILD_FN int child_main(void* arg) noexcept {
    auto* p = static_cast<child_plan*>(arg);

    // 1. Every signal to its default disposition (handlers and SIG_IGN alike: B3). Signals are
    //    all blocked (inherited from the parent's mask), so nothing runs on this shared memory.
    //    The kernel's sigaction for SIG_DFL with no flags and an empty mask is all zeros.
    const unsigned long dfl_action[4] = {0, 0, 0, 0};
    for (int sig = 1; sig <= 64; ++sig) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        if (::syscall(SYS_rt_sigaction, sig, dfl_action, nullptr, 8) != 0 && errno != EINVAL)
            child_fail(p, spawn_stage::signals, errno);
    }

    // 1b. A new user namespace (created by clone): map the parent's euid/egid to 0 inside. The
    //     child may write its own maps when they name only its own ids (user_namespaces(7));
    //     an unprivileged gid_map needs setgroups denied first.
    if (p->uid_map != nullptr) {
        int e = child_write_file("/proc/self/setgroups", "deny");
        if (e != 0 && e != ENOENT) child_fail_at(p, spawn_stage::namespaces, sub_setgroups_deny, e);
        if ((e = child_write_file("/proc/self/uid_map", p->uid_map)) != 0)
            child_fail_at(p, spawn_stage::namespaces, sub_uid_map, e);
        if ((e = child_write_file("/proc/self/gid_map", p->gid_map)) != 0)
            child_fail_at(p, spawn_stage::namespaces, sub_gid_map, e);
    }

    // 2. A new session: the child leads its own process group, away from drover's terminal.
    if (p->new_session && ::syscall(SYS_setsid) < 0) child_fail(p, spawn_stage::session, errno);

    // 2b. Join the leaf cgroup, when clone3 could not place us there (CLONE_INTO_CGROUP). This
    //     is before exec, so nothing of ours can have forked outside it.
    if (p->attach_in_child) {
        long fd = ::syscall(SYS_openat, p->cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
        if (fd < 0) child_fail(p, spawn_stage::cgroup, errno);
        long n = ::syscall(SYS_write, fd, "0", 1);
        if (n != 1) child_fail(p, spawn_stage::cgroup, n < 0 ? errno : EIO);
        ::syscall(SYS_close, fd);
    }

    // 2c. A new mount namespace starts with copies of the parent's mounts, shared ones still
    //     propagating back: make them all private first, so nothing the child mounts leaks out.
    //     With a new pid namespace too, a fresh /proc shows only the child's processes.
    if (p->private_mounts &&
        ::syscall(SYS_mount, nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
        child_fail_at(p, spawn_stage::mounts, sub_private_mounts, errno);
    if (p->mount_proc &&
        ::syscall(SYS_mount, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
        child_fail_at(p, spawn_stage::mounts, sub_mount_proc, errno);
    // 2d. A new network namespace has only "lo", down: bring it up, so localhost works.
    if (p->loopback != nullptr) {
        long s = ::syscall(SYS_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0) child_fail_at(p, spawn_stage::namespaces, sub_loopback, errno);
        if (::syscall(SYS_ioctl, s, SIOCGIFFLAGS, p->loopback) != 0)
            child_fail_at(p, spawn_stage::namespaces, sub_loopback, errno);
        p->loopback->ifr_flags = static_cast<short>(p->loopback->ifr_flags | IFF_UP);
        if (::syscall(SYS_ioctl, s, SIOCSIFFLAGS, p->loopback) != 0)
            child_fail_at(p, spawn_stage::namespaces, sub_loopback, errno);
        ::syscall(SYS_close, s);
    }

    // 3. stdio and passed fds. Every source is above every target, so no dup clobbers a
    //    source, and dup3 leaves the target without CLOEXEC.
    for (int i = 0; i < p->n_moves; ++i)
        if (::syscall(SYS_dup3, p->moves[i].src, p->moves[i].dst, 0) < 0)
            child_fail(p, spawn_stage::stdio, errno);
    for (int fd = 0; fd < 3; ++fd)
        if (p->inherit_in_place & (1U << fd)) ::syscall(SYS_fcntl, fd, F_SETFD, 0);
    // 3b. A pseudo-terminal becomes the controlling terminal of the new session.
    if (p->ctty_fd >= 0 && ::syscall(SYS_ioctl, p->ctty_fd, TIOCSCTTY, 0) < 0)
        child_fail(p, spawn_stage::terminal, errno);
    // O_NONBLOCK lives in the open file description; a child expects blocking stdio (B4).
    for (int fd = 0; fd < 3; ++fd) {
        long fl = ::syscall(SYS_fcntl, fd, F_GETFL);
        if (fl >= 0 && (fl & O_NONBLOCK)) ::syscall(SYS_fcntl, fd, F_SETFL, fl & ~O_NONBLOCK);
    }

    // 4. Resource limits, while still privileged (raising a hard limit needs
    //    CAP_SYS_RESOURCE; without it this fails with EPERM, reported with its stage).
    for (int i = 0; i < p->n_limits; ++i) {
        const std::uint64_t lim[2] = {p->limits[i].soft, p->limits[i].hard};
        if (::syscall(SYS_prlimit64, 0, p->limits[i].resource, lim, nullptr) != 0)
            child_fail(p, spawn_stage::limits, errno);
    }

    // 4a. The capability bounding set (needs CAP_SETPCAP, so before the identity change), and
    //     the inheritable set cut to it: inheritable caps pass exec outside the bounding set.
    if (p->drop_caps) {
        for (int cap = 0; cap <= p->last_cap; ++cap) {
            if (cap < 64 && ((p->keep_caps >> cap) & 1U) != 0) continue;
            if (::syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
                child_fail_at(p, spawn_stage::capabilities, sub_capbset, errno);
        }
        __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
        __user_cap_data_struct data[2] = {};
        if (::syscall(SYS_capget, &hdr, data) != 0)
            child_fail_at(p, spawn_stage::capabilities, sub_capset, errno);
        data[0].inheritable &= static_cast<std::uint32_t>(p->keep_caps);
        data[1].inheritable &= static_cast<std::uint32_t>(p->keep_caps >> 32);
        if (::syscall(SYS_capset, &hdr, data) != 0)
            child_fail_at(p, spawn_stage::capabilities, sub_capset, errno);
    }

    // 4b. Identity: setgroups, then setgid, then setuid (after setuid the right to change groups
    //     is gone). Raw syscalls act on this thread only, which is the whole child (G3). Every
    //     result is checked, and the ids verified (pitfalls G2).
    if (p->set_groups) {
        if (::syscall(sys_setgroups_nr, p->n_groups, p->groups) != 0) child_fail(p, spawn_stage::setgroups, errno);
        // Verify: the kernel keeps the list (sorted); every entry must be one we asked for.
        long n = ::syscall(sys_getgroups_nr, p->n_groups, p->groups_check);
        bool ok = n == p->n_groups;
        for (long i = 0; ok && i < n && p->n_groups <= 1024; ++i) {
            bool found = false;
            for (int j = 0; j < p->n_groups && !found; ++j) found = p->groups_check[i] == p->groups[j];
            ok = found;
        }
        if (!ok) child_fail_at(p, spawn_stage::setgroups, sub_verify, EPERM);
    }
    if (p->set_gid) {
        if (::syscall(sys_setresgid_nr, p->gid, p->gid, p->gid) != 0) child_fail(p, spawn_stage::setgid, errno);
        gid_t r = 0, e = 0, s = 0;
        if (::syscall(sys_getresgid_nr, &r, &e, &s) != 0 || r != p->gid || e != p->gid || s != p->gid)
            child_fail_at(p, spawn_stage::setgid, sub_verify, EPERM);
    }
    if (p->set_uid) {
        if (::syscall(sys_setresuid_nr, p->uid, p->uid, p->uid) != 0) child_fail(p, spawn_stage::setuid, errno);
        uid_t r = 0, e = 0, s = 0;
        if (::syscall(sys_getresuid_nr, &r, &e, &s) != 0 || r != p->uid || e != p->uid || s != p->uid)
            child_fail_at(p, spawn_stage::setuid, sub_verify, EPERM);
    }

    // 4c. Working directory, as the child's own identity (a directory it cannot enter fails).
    if (p->cwd != nullptr && ::syscall(SYS_chdir, p->cwd) < 0)
        child_fail(p, spawn_stage::cwd, errno);

    // 4d. File mode creation mask and no_new_privs.
    if (p->umask >= 0) ::syscall(SYS_umask, p->umask);
    if (p->no_new_privs && ::syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        child_fail(p, spawn_stage::privileges, errno);

    // 4b. Parent death signal, after any credential change (which would clear it). It fires when
    //     the spawning *thread* exits, so spawn() runs on a long-lived thread. If the parent
    //     died before the prctl, getppid() already names someone else: act as if it fired
    //     (0 means the parent is outside the child's pid namespace: the check cannot apply).
    if (p->pdeathsig != 0) {
        if (p->test_delay_ms != 0) {
            const struct timespec ts = {static_cast<time_t>(p->test_delay_ms / 1000),
                                        static_cast<long>(p->test_delay_ms % 1000) * 1000000L};
            ::syscall(SYS_nanosleep, &ts, nullptr);
        }
        if (::syscall(SYS_prctl, PR_SET_PDEATHSIG, p->pdeathsig, 0, 0, 0) != 0)
            child_fail(p, spawn_stage::parent_death, errno);
        long ppid = ::syscall(SYS_getppid);
        if (ppid != p->parent_pid && ppid != 0)
            ::syscall(SYS_kill, ::syscall(SYS_getpid), p->pdeathsig); // delivered at unmask
    }

    // 5. Close every descriptor >= 3 that was not passed on purpose, CLOEXEC or not (B1).
    unsigned lo = 3;
    for (int i = 0; i <= p->n_keep; ++i) {
        unsigned hi = i < p->n_keep ? static_cast<unsigned>(p->keep[i]) - 1 : ~0U;
        if (lo <= hi) {
            long r = -1;
            if (p->cloexec_range) r = ::syscall(SYS_close_range, lo, hi, close_range_cloexec);
            if (r < 0) r = ::syscall(SYS_close_range, lo, hi, 0); // < 5.11: close them now
            if (r < 0) child_fail(p, spawn_stage::close_fds, errno);
        }
        if (i < p->n_keep) lo = static_cast<unsigned>(p->keep[i]) + 1;
    }

    // 6. An empty signal mask (B2), then exec.
    const unsigned long empty_mask = 0;
    if (::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty_mask, nullptr, 8) != 0)
        child_fail(p, spawn_stage::signals, errno);
    ::syscall(SYS_execve, p->path, p->argv, p->envp);
    child_fail(p, spawn_stage::exec, errno);
}

// ---- clone3 on a separate stack --------------------------------------------------------------
//
// glibc 2.36 exports no clone3 wrapper. With CLONE_VM the child shares this thread's memory but
// runs on its own stack, so the code after the syscall must not touch the parent's frame: this
// trampoline calls fn(arg) on the new stack and exits with its result.

extern "C" long drover_clone3_trampoline(clone_args* args, std::size_t size, int (*fn)(void*),
                                         void* arg);

#if defined(__x86_64__)
#define DROVER_HAVE_CLONE3_TRAMPOLINE 1
asm(R"(
    .text
    .globl drover_clone3_trampoline
    .hidden drover_clone3_trampoline
    .type drover_clone3_trampoline, @function
    .p2align 4
drover_clone3_trampoline:
    movq %rdx, %r8
    movq %rcx, %r9
    movl $435, %eax
    syscall
    testq %rax, %rax
    jz 1f
    ret
1:
    xorl %ebp, %ebp
    movq %r9, %rdi
    callq *%r8
    movl %eax, %edi
    movl $231, %eax
    syscall
    hlt
    .size drover_clone3_trampoline, .-drover_clone3_trampoline
)");
#elif defined(__aarch64__)
#define DROVER_HAVE_CLONE3_TRAMPOLINE 1
asm(R"(
    .text
    .globl drover_clone3_trampoline
    .hidden drover_clone3_trampoline
    .type drover_clone3_trampoline, %function
    .p2align 4
drover_clone3_trampoline:
    mov x9, x2
    mov x10, x3
    mov x8, #435
    svc #0
    cbz x0, 1f
    ret
1:
    mov x29, xzr
    mov x30, xzr
    mov x0, x10
    blr x9
    mov x8, #94
    svc #0
    brk #0
    .size drover_clone3_trampoline, .-drover_clone3_trampoline
)");
#else
#define DROVER_HAVE_CLONE3_TRAMPOLINE 0
#endif

/// One child stack per spawning thread, mapped on first use, with a guard page below it.
/// CLONE_VFORK keeps the thread suspended while its child runs, so one stack per thread is
/// enough, and the cost is paid once, not per spawn.
inline constexpr std::size_t child_stack_size = 64 * 1024;

class child_stack {
public:
    ~child_stack() {
        if (base_ != nullptr) ::munmap(base_, total_);
    }
    void* top() noexcept {
        if (base_ == nullptr) {
            long page = ::sysconf(_SC_PAGESIZE);
            total_ = stack_size + static_cast<std::size_t>(page);
            void* m = ::mmap(nullptr, total_, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
            if (m == MAP_FAILED) return nullptr;
            ::mprotect(m, static_cast<std::size_t>(page), PROT_NONE);
            base_ = m;
        }
        return static_cast<char*>(base_) + total_;
    }

private:
    static constexpr std::size_t stack_size = child_stack_size;
    void* base_ = nullptr;
    std::size_t total_ = 0;
};

thread_local child_stack t_stack;

/// Blocks every signal on this thread for the duration of a clone (so no handler runs in the
/// child on shared memory, and a signal sent at the newborn waits until it has exec'd).
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

struct clone_result {
    pid_t pid = -1;
    int pidfd = -1;
    int err = 0;
};

clone_result do_clone3(child_plan& plan, void* stack_top) noexcept {
    clone_result r;
    if (int e = fault(fault_point::clone3)) { // tests: a seccomp profile or an old kernel
        r.err = e;
        return r;
    }
#if DROVER_HAVE_CLONE3_TRAMPOLINE
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
        long ret = drover_clone3_trampoline(&args, sizeof(clone_args), child_main, &plan);
        if (ret >= 0) {
            r.pid = static_cast<pid_t>(ret);
            return r;
        }
        if (into) { // < 5.7, or a cgroup that refuses it (threaded, EBUSY): join from the child
            plan.attach_in_child = true;
            continue;
        }
        if ((ret == -EINVAL || ret == -E2BIG) && clear && plan.ns_flags == 0) { // < 5.5: no CLONE_CLEAR_SIGHAND
            g_clear_sighand_ok.store(false, std::memory_order_relaxed);
            continue;
        }
        r.err = static_cast<int>(-ret);
        return r;
    }
#else
    (void)plan;
    (void)stack_top;
    r.err = ENOSYS;
    return r;
#endif
}

clone_result do_clone(child_plan& plan, void* stack_top, bool with_pidfd) noexcept {
    clone_result r;
    if (int e = with_pidfd ? fault(fault_point::clone_pidfd) : 0) { // tests: CLONE_PIDFD refused
        r.err = e;
        return r;
    }
    if (plan.cgroup_fd >= 0) plan.attach_in_child = true; // no CLONE_INTO_CGROUP with clone()
    int flags = CLONE_VM | CLONE_VFORK | (with_pidfd ? CLONE_PIDFD : 0) | SIGCHLD |
                static_cast<int>(plan.ns_flags);
    pid_t pid = ::clone(child_main, stack_top, flags, &plan, with_pidfd ? &r.pidfd : nullptr);
    if (pid < 0) {
        r.err = errno;
        return r;
    }
    r.pid = pid;
    return r;
}

bool refused(int err) noexcept { return err == ENOSYS || err == EPERM || err == EINVAL; }

/// Creates the child with the first launcher the kernel accepts, remembering it.
clone_result create_child(child_plan& plan, void* stack_top, launcher_kind& used) noexcept {
    int forced = g_forced.load(std::memory_order_relaxed);
    int start = forced != 0 ? forced : g_detected.load(std::memory_order_relaxed);
    if (start == 0) start = static_cast<int>(launcher_kind::clone3);
    clone_result r;
    for (int k = start; k <= static_cast<int>(launcher_kind::clone_pidfd_open); ++k) {
        switch (static_cast<launcher_kind>(k)) {
        case launcher_kind::clone3: r = do_clone3(plan, stack_top); break;
        case launcher_kind::clone_pidfd: r = do_clone(plan, stack_top, true); break;
        default: r = do_clone(plan, stack_top, false); break;
        }
        used = static_cast<launcher_kind>(k);
        // ENOSYS: no such syscall (or a seccomp profile saying so); EPERM: a seccomp profile
        // refusing it; EINVAL: a flag this kernel does not know. Try the next launcher.
        if (r.pid >= 0 || forced != 0 || !refused(r.err)) break;
    }
    if (r.pid >= 0 && forced == 0) g_detected.store(static_cast<int>(used), std::memory_order_relaxed);
    return r;
}

// ---- parent-side helpers ---------------------------------------------------------------------

error_code sys_error(int err) { return {err, boost::system::system_category()}; }

bool fail(spawn_failure& f, int err, spawn_stage stage, std::string detail = {}) {
    f.code = sys_error(err);
    f.stage = stage;
    f.detail = std::move(detail);
    return false;
}

/// If `fd` is a pipe or terminal with O_NONBLOCK set (Asio sets it on what it wraps), opens the
/// same object afresh, blocking, so the child's flag and the parent's are independent (B4).
/// Returns an invalid fd when the descriptor can be shared as is (or cannot be reopened:
/// then the child clears O_NONBLOCK on the shared description, as libuv and systemd do).
unique_fd fresh_blocking_open(int fd) noexcept {
    int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0 || !(fl & O_NONBLOCK)) return {};
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !(S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode))) return {};
    char proc_path[32];
    std::snprintf(proc_path, sizeof proc_path, "/proc/self/fd/%d", fd);
    // O_NONBLOCK on open: a pipe with no reader left must not block us (ENXIO instead).
    int nfd = f_open(proc_path, (fl & O_ACCMODE) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (nfd < 0) return {};
    unique_fd owned{nfd};
    int nfl = ::fcntl(nfd, F_GETFL);
    if (nfl < 0 || ::fcntl(nfd, F_SETFL, nfl & ~O_NONBLOCK) != 0) return {};
    return owned;
}

/// Everything the parent opens for one spawn; closed on every path out of launch().
struct prepared_fds {
    std::vector<unique_fd> owned;
    std::vector<fd_move> moves;
    std::vector<int> keep;
    unsigned inherit_in_place = 0;
    unique_fd parent_end[3];
    unique_fd pty_master;
    int ctty_fd = -1;
};

/// Opens a new pseudo-terminal pair: the master (non-blocking, for the parent) and the slave
/// (blocking, for the child), with the window size set on it.
bool open_pty(unsigned short rows, unsigned short cols, unique_fd& master, unique_fd& slave,
              spawn_failure& f) {
    unique_fd m{::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC)};
    if (!m) return fail(f, errno, spawn_stage::terminal, "posix_openpt");
    if (::grantpt(m.get()) != 0 || ::unlockpt(m.get()) != 0)
        return fail(f, errno, spawn_stage::terminal, "unlockpt");
    char name[64];
    if (::ptsname_r(m.get(), name, sizeof name) != 0) return fail(f, errno, spawn_stage::terminal, "ptsname");
    struct winsize ws {};
    ws.ws_row = rows;
    ws.ws_col = cols;
    if (::ioctl(m.get(), TIOCSWINSZ, &ws) != 0) return fail(f, errno, spawn_stage::terminal, "TIOCSWINSZ");
    unique_fd sl{::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)};
    if (!sl) return fail(f, errno, spawn_stage::terminal, name);
    int fl = ::fcntl(m.get(), F_GETFL);
    if (fl < 0 || ::fcntl(m.get(), F_SETFL, fl | O_NONBLOCK) != 0)
        return fail(f, errno, spawn_stage::terminal, "O_NONBLOCK on the master");
    master = std::move(m);
    slave = std::move(sl);
    return true;
}

bool prepare_fds(const command& cmd, prepared_fds& pf, spawn_failure& f) {
    int max_target = 2;
    for (const auto& p : cmd.passed_fds()) {
        if (p.child_fd < 3)
            return f.code = errc::invalid_command, f.stage = spawn_stage::prepare,
                   f.detail = "pass_fd target " + std::to_string(p.child_fd) +
                              " is below 3; use std_in/std_out/std_err",
                   false;
        max_target = std::max(max_target, p.child_fd);
        pf.keep.push_back(p.child_fd);
    }
    std::sort(pf.keep.begin(), pf.keep.end());
    if (std::adjacent_find(pf.keep.begin(), pf.keep.end()) != pf.keep.end())
        return f.code = errc::invalid_command, f.stage = spawn_stage::prepare,
               f.detail = "pass_fd target given twice", false;

    // Each source must sit above every target, so that no dup3 in the child clobbers a source
    // still to be moved, and so that dup3 never sees src == dst (which would keep CLOEXEC).
    auto add_move = [&](int src, int dst, bool owned_src) -> bool {
        if (src <= max_target) {
            int d = ::fcntl(src, F_DUPFD_CLOEXEC, max_target + 1);
            if (d < 0) return fail(f, errno, spawn_stage::open_stdio, "dup of fd " + std::to_string(src));
            pf.owned.emplace_back(d);
            src = d;
        } else if (!owned_src && ::fcntl(src, F_GETFD) < 0) {
            return fail(f, errno, spawn_stage::open_stdio, "fd " + std::to_string(src));
        }
        pf.moves.push_back({src, dst});
        return true;
    };

    unique_fd devnull;
    unique_fd pty_slave;
    int source_of[3] = {-1, -1, -1}; // what fd t is made from (for to_stdout); -1: closed
    for (int t = 0; t < 3; ++t) {
        const stdio& s = cmd.stdio_for(t);
        const std::size_t moves_before = pf.moves.size();
        switch (s.type()) {
        case stdio::kind::inherit: {
            if (::fcntl(t, F_GETFD) < 0) break; // closed in the parent: closed in the child
            unique_fd fresh = fresh_blocking_open(t);
            if (fresh) {
                int fd = fresh.get();
                pf.owned.push_back(std::move(fresh));
                if (!add_move(fd, t, true)) return false;
            } else {
                pf.inherit_in_place |= 1U << t;
                source_of[t] = t;
            }
            break;
        }
        case stdio::kind::pty: {
            if (!cmd.new_session())
                return f.code = errc::invalid_command, f.stage = spawn_stage::prepare,
                       f.detail = "a pty needs a new session (new_session(false) was set)", false;
            if (!pf.pty_master && !open_pty(s.rows(), s.cols(), pf.pty_master, pty_slave, f)) return false;
            if (pf.ctty_fd < 0) pf.ctty_fd = t;
            if (!add_move(pty_slave.get(), t, true)) return false;
            break;
        }
        case stdio::kind::to_stdout: {
            if (t != 2)
                return f.code = errc::invalid_command, f.stage = spawn_stage::prepare,
                       f.detail = "stdio::to_stdout() is only for fd 2 (stderr)", false;
            if (source_of[1] < 0) break; // fd 1 is closed: so is fd 2
            if (!add_move(source_of[1], 2, true)) return false;
            break;
        }
        case stdio::kind::null: {
            if (!devnull) {
                devnull.reset(f_open("/dev/null", O_RDWR | O_CLOEXEC | O_NOCTTY));
                if (!devnull) return fail(f, errno, spawn_stage::open_stdio, "/dev/null");
            }
            if (!add_move(devnull.get(), t, true)) return false;
            break;
        }
        case stdio::kind::pipe: {
            int p[2];
            if (f_pipe2(p, O_CLOEXEC) != 0)
                return fail(f, errno, spawn_stage::open_stdio, "pipe for fd " + std::to_string(t));
            unique_fd rd{p[0]}, wr{p[1]};
            unique_fd& child_end = t == 0 ? rd : wr;
            unique_fd& parent_end = t == 0 ? wr : rd;
            // Only the parent's end is non-blocking; the child's end stays blocking.
            int fl = ::fcntl(parent_end.get(), F_GETFL);
            if (fl < 0 || ::fcntl(parent_end.get(), F_SETFL, fl | O_NONBLOCK) != 0)
                return fail(f, errno, spawn_stage::open_stdio, "pipe for fd " + std::to_string(t));
            int cfd = child_end.get();
            pf.owned.push_back(std::move(child_end));
            pf.parent_end[t] = std::move(parent_end);
            if (!add_move(cfd, t, true)) return false;
            break;
        }
        case stdio::kind::file:
        case stdio::kind::append: {
            int flags = O_CLOEXEC | O_NOCTTY;
            if (t == 0 && s.type() == stdio::kind::file) flags |= O_RDONLY;
            else if (s.type() == stdio::kind::append) flags |= O_WRONLY | O_CREAT | O_APPEND;
            else flags |= O_WRONLY | O_CREAT | O_TRUNC;
            int fd = f_open(s.path().c_str(), flags, 0666);
            if (fd < 0) return fail(f, errno, spawn_stage::open_stdio, s.path().string());
            pf.owned.emplace_back(fd);
            if (!add_move(fd, t, true)) return false;
            break;
        }
        case stdio::kind::fd: {
            int src = s.native_fd();
            if (::fcntl(src, F_GETFD) < 0)
                return fail(f, errno, spawn_stage::open_stdio, "fd " + std::to_string(src));
            unique_fd fresh = fresh_blocking_open(src);
            if (fresh) {
                src = fresh.get();
                pf.owned.push_back(std::move(fresh));
            }
            if (!add_move(src, t, false)) return false;
            break;
        }
        }
        if (pf.moves.size() > moves_before) source_of[t] = pf.moves.back().src;
    }
    if (devnull) pf.owned.push_back(std::move(devnull));
    if (pty_slave) pf.owned.push_back(std::move(pty_slave));
    for (const auto& p : cmd.passed_fds())
        if (!add_move(p.parent_fd, p.child_fd, false)) return false;
    return true;
}

/// Reaps a child that failed before exec. It is ours and unreaped, so waiting on it is safe;
/// ECHILD means a host's __WALL reaper took it first, which also leaves no zombie.
void reap_failed(int pidfd, pid_t pid) noexcept {
    siginfo_t si{};
    int r;
    do {
        r = pidfd >= 0 ? ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &si,
                                  WEXITED | __WALL)
                       : ::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | __WALL);
    } while (r != 0 && errno == EINTR);
}

} // namespace

void set_test_delay_before_pdeathsig(unsigned ms) noexcept {
    g_test_pdeathsig_delay_ms.store(ms, std::memory_order_relaxed);
}

void force_launcher(launcher_kind k) noexcept {
    g_forced.store(static_cast<int>(k), std::memory_order_relaxed);
    if (k == launcher_kind::automatic) g_detected.store(0, std::memory_order_relaxed); // probe afresh
}

launcher_kind current_launcher() noexcept {
    int forced = g_forced.load(std::memory_order_relaxed);
    return static_cast<launcher_kind>(forced != 0 ? forced : g_detected.load(std::memory_order_relaxed));
}

bool launch(const command& cmd, int cgroup_fd, launched& out, spawn_failure& f) noexcept try {
    // argv
    for (std::size_t i = 0; i < cmd.args().size(); ++i)
        if (cmd.args()[i].find('\0') != std::string::npos)
            return f.code = errc::invalid_command, f.stage = spawn_stage::prepare,
                   f.detail = "argument " + std::to_string(i + 1) + " contains a NUL byte", false;
    if (cmd.arg0() && cmd.arg0()->find('\0') != std::string::npos)
        return f.code = errc::invalid_command, f.stage = spawn_stage::prepare,
               f.detail = "argv[0] contains a NUL byte", false;

    std::vector<std::string> env;
    if (!build_environment(cmd, environ, env, f)) return false;
    std::string path;
    if (!resolve_program(cmd.program(), search_path_for(env), path, f)) return false;

    std::string cwd;
    if (cmd.cwd()) {
        cwd = cmd.cwd()->string();
        if (cwd.empty() || cwd.find('\0') != std::string::npos)
            return f.code = errc::invalid_command, f.stage = spawn_stage::prepare,
                   f.detail = "working directory is empty or contains a NUL byte", false;
    }

    std::vector<char*> argv;
    argv.reserve(cmd.args().size() + 2);
    std::string arg0 = cmd.arg0() ? *cmd.arg0() : cmd.program();
    argv.push_back(arg0.data());
    for (const auto& a : cmd.args()) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<char*> envp;
    envp.reserve(env.size() + 1);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);

    prepared_fds pf;
    if (!prepare_fds(cmd, pf, f)) return false;

    child_plan plan;
    plan.path = path.c_str();
    plan.argv = argv.data();
    plan.envp = envp.data();
    plan.cwd = cmd.cwd() ? cwd.c_str() : nullptr;
    plan.moves = pf.moves.data();
    plan.n_moves = static_cast<int>(pf.moves.size());
    plan.keep = pf.keep.data();
    plan.n_keep = static_cast<int>(pf.keep.size());
    plan.inherit_in_place = pf.inherit_in_place;
    plan.new_session = cmd.new_session();
    plan.ctty_fd = pf.ctty_fd;
    plan.cloexec_range = true;
    plan.cgroup_fd = cgroup_fd;
    plan.pdeathsig = cmd.parent_death_signal();
    plan.parent_pid = ::getpid();
    plan.test_delay_ms = g_test_pdeathsig_delay_ms.load(std::memory_order_relaxed);
    std::vector<rlimit64_arg> limits;
    bool nofile_set = false;
    for (const auto& l : cmd.rlimits()) {
        if (l.resource < 0 || l.resource >= RLIMIT_NLIMITS)
            return f.code = errc::invalid_command, f.stage = spawn_stage::prepare,
                   f.detail = "resource limit " + std::to_string(l.resource) + " does not exist", false;
        if (l.soft != RLIM_INFINITY && (l.hard == RLIM_INFINITY ? false : l.soft > l.hard))
            return f.code = errc::invalid_command, f.stage = spawn_stage::prepare,
                   f.detail = "resource limit " + std::to_string(l.resource) + ": soft limit above hard limit", false;
        limits.push_back({l.resource, l.soft, l.hard});
        nofile_set = nofile_set || l.resource == RLIMIT_NOFILE;
    }
    if (!nofile_set) {
        // A supervisor raises its own soft NOFILE limit; its children get the conventional 1024
        // (select() breaks above it), the hard limit kept (pitfalls B6).
        struct rlimit own {};
        if (::getrlimit(RLIMIT_NOFILE, &own) == 0 && own.rlim_cur > 1024) // RLIM_INFINITY too
            limits.push_back({RLIMIT_NOFILE, 1024, own.rlim_max});
    }
    plan.limits = limits.data();
    plan.n_limits = static_cast<int>(limits.size());
    plan.umask = cmd.umask() ? static_cast<int>(*cmd.umask()) : -1;
    plan.no_new_privs = cmd.no_new_privs();

    // Namespaces.
    const namespaces ns = cmd.unshare();
    const bool userns = any(ns & namespaces::user);
    std::string uid_map, gid_map;
    struct ifreq lo {};
    if (any(ns & namespaces::user)) plan.ns_flags |= CLONE_NEWUSER;
    if (any(ns & namespaces::pid)) plan.ns_flags |= CLONE_NEWPID;
    if (any(ns & namespaces::mount)) plan.ns_flags |= CLONE_NEWNS;
    if (any(ns & namespaces::net)) plan.ns_flags |= CLONE_NEWNET;
    if (any(ns & namespaces::uts)) plan.ns_flags |= CLONE_NEWUTS;
    if (any(ns & namespaces::ipc)) plan.ns_flags |= CLONE_NEWIPC;
    if (any(ns & namespaces::cgroup)) plan.ns_flags |= CLONE_NEWCGROUP;
    if (userns) {
        uid_map = "0 " + std::to_string(::geteuid()) + " 1\n";
        gid_map = "0 " + std::to_string(::getegid()) + " 1\n";
        plan.uid_map = uid_map.c_str();
        plan.gid_map = gid_map.c_str();
    }
    plan.private_mounts = any(ns & namespaces::mount);
    plan.mount_proc = any(ns & namespaces::mount) && any(ns & namespaces::pid);
    if (any(ns & namespaces::net)) {
        std::memcpy(lo.ifr_name, "lo", 3);
        plan.loopback = &lo;
    }

    // Identity: resolved here, applied by the child only where it changes something (so an
    // unprivileged caller may name itself).
    identity id;
    if (!resolve_identity(cmd, id, f)) return false;
    std::vector<gid_t> groups, groups_check;
    if (id.groups) {
        if (userns && cmd.supplementary_groups())
            return f.code = errc::invalid_command, f.stage = spawn_stage::prepare,
                   f.detail = "supplementary groups cannot be set in a new user namespace (setgroups is denied there)", false;
        groups = *id.groups;
        std::vector<gid_t> current(static_cast<std::size_t>(std::max(0, ::getgroups(0, nullptr))));
        int n = ::getgroups(static_cast<int>(current.size()), current.data());
        current.resize(static_cast<std::size_t>(std::max(0, n)));
        std::vector<gid_t> want = groups;
        std::sort(want.begin(), want.end());
        want.erase(std::unique(want.begin(), want.end()), want.end());
        std::sort(current.begin(), current.end());
        current.erase(std::unique(current.begin(), current.end()), current.end());
        plan.set_groups = !userns && (n < 0 || want != current);
        groups_check.resize(groups.size() + 1);
        plan.groups = groups.data();
        plan.groups_check = groups_check.data();
        plan.n_groups = static_cast<int>(groups.size());
    }
    if (id.gid) {
        gid_t r = 0, e = 0, sv = 0;
        ::getresgid(&r, &e, &sv);
        plan.set_gid = userns || !(r == *id.gid && e == *id.gid && sv == *id.gid);
        plan.gid = *id.gid;
    }
    if (id.uid) {
        uid_t r = 0, e = 0, sv = 0;
        ::getresuid(&r, &e, &sv);
        plan.set_uid = userns || !(r == *id.uid && e == *id.uid && sv == *id.uid);
        plan.uid = *id.uid;
    }

    // Capability bounding set.
    if (const auto& keep = cmd.capability_bounding_set()) {
        static const int last_cap = [] {
            int c = 0;
            while (c < 63 && ::prctl(PR_CAPBSET_READ, c + 1, 0, 0, 0) >= 0) ++c;
            return c;
        }();
        for (int cap : *keep)
            if (cap < 0 || cap > last_cap)
                return f.code = errc::invalid_command, f.stage = spawn_stage::prepare,
                       f.detail = "capability " + std::to_string(cap) + " does not exist on this kernel (last is " +
                                  std::to_string(last_cap) + ")", false;
        plan.drop_caps = true;
        plan.last_cap = last_cap;
        for (int cap : *keep) plan.keep_caps |= std::uint64_t{1} << cap;
    }
    if (plan.pdeathsig < 0 || plan.pdeathsig > 64)
        return f.code = errc::invalid_command, f.stage = spawn_stage::prepare,
               f.detail = "parent death signal " + std::to_string(plan.pdeathsig) + " is not a signal", false;

    void* stack_top = t_stack.top();
    if (stack_top == nullptr) return fail(f, ENOMEM, spawn_stage::clone, "child stack");

    // The child's set*id calls commit new credentials, and the kernel then resets "dumpable" on
    // the *mm*, which CLONE_VM shares with us: restore ours (else drover stops dumping core and
    // its /proc entries turn root-owned).
    const bool changes_ids = plan.set_uid || plan.set_gid || plan.set_groups;
    const int dumpable = changes_ids ? ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) : -1;

    f_alloc_point(); // tests: everything opened so far must be closed on the way out

    launcher_kind used = launcher_kind::automatic;
    clone_result r;
    {
        all_signals_blocked blocked;
        r = create_child(plan, stack_top, used);
    }
    if (dumpable >= 0 && ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != dumpable)
        ::prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0);
    if (r.pid < 0) {
        if (r.err == EAGAIN) {
            // A process limit, not a transient failure: say which ones can cause it (F3).
            struct rlimit np {};
            ::getrlimit(RLIMIT_NPROC, &np);
            std::string d = "a process limit was reached: RLIMIT_NPROC of uid " + std::to_string(::getuid()) +
                            " (" + (np.rlim_cur == RLIM_INFINITY ? std::string("unlimited") : std::to_string(np.rlim_cur)) +
                            "), the cgroup's pids.max, or kernel.threads-max";
            return fail(f, r.err, spawn_stage::clone, std::move(d));
        }
        if (plan.ns_flags != 0 && (r.err == EPERM || r.err == EINVAL || r.err == ENOSPC || r.err == EUSERS)) {
            std::string what = "creating namespaces " + to_string(ns);
            if (r.err == EPERM && !userns && ::geteuid() != 0)
                what += " needs CAP_SYS_ADMIN; unprivileged, add 'user' (a user namespace)";
            else if (r.err == EPERM || r.err == ENOSPC || r.err == EUSERS)
                what += userns ? " was refused (user namespaces may be disabled or at their limit: "
                                 "user.max_user_namespaces, kernel.unprivileged_userns_clone)"
                               : " was refused";
            return fail(f, r.err, spawn_stage::namespaces, std::move(what));
        }
        if (used == launcher_kind::clone_pidfd_open || refused(r.err))
            return f.code = errc::no_launcher, f.stage = spawn_stage::clone,
                   f.detail = "clone3/clone refused: " + sys_error(r.err).message(), false;
        return fail(f, r.err, spawn_stage::clone);
    }
    unique_fd pidfd{r.pidfd};

    if (plan.stage != 0) { // the child reported a failure before exec and has exited
        reap_failed(pidfd.get(), r.pid);
        auto stage = static_cast<spawn_stage>(plan.stage);
        int err = plan.err;
        std::string detail;
        if (stage == spawn_stage::exec) {
            detail = path;
            struct stat st {};
            // execve says EACCES for a directory; say what it is.
            if (err == EACCES && ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) err = EISDIR;
        } else if (stage == spawn_stage::cwd) {
            detail = cwd;
        } else if (stage == spawn_stage::setgroups || stage == spawn_stage::setgid ||
                   stage == spawn_stage::setuid) {
            detail = "changing to " + id.description;
            if (plan.substep == sub_verify) detail += ": the ids read back differ";
            else if (err == EPERM && ::geteuid() != 0)
                detail += " needs root (CAP_SETUID and CAP_SETGID); drover runs as uid " + std::to_string(::geteuid());
            else if (err == EINVAL && userns)
                detail += ": only uid/gid 0 exist in the new user namespace";
        } else if (stage == spawn_stage::capabilities) {
            detail = plan.substep == sub_capbset ? "dropping from the bounding set needs CAP_SETPCAP (root)"
                                                 : "restricting the inheritable set";
        } else if (stage == spawn_stage::namespaces) {
            switch (plan.substep) {
            case sub_setgroups_deny: detail = "writing /proc/self/setgroups"; break;
            case sub_uid_map: detail = "writing the uid map '" + uid_map.substr(0, uid_map.size() - 1) + "'"; break;
            case sub_gid_map: detail = "writing the gid map '" + gid_map.substr(0, gid_map.size() - 1) + "'"; break;
            case sub_loopback: detail = "bringing up the loopback interface"; break;
            default: break;
            }
        } else if (stage == spawn_stage::mounts) {
            detail = plan.substep == sub_mount_proc ? "mounting a private /proc" : "making mounts private";
        }
        return fail(f, err, stage, std::move(detail));
    }

    if (!pidfd) {
        // clone without CLONE_PIDFD: the child has exec'd and is ours, unreaped, so its pid
        // cannot have been reused yet (unless a host's __WALL reaper took it; then ESRCH).
        int fd = sys_pidfd_open(r.pid, 0);
        if (fd < 0) {
            int err = errno;
            if (err != ESRCH) {
                // No handle can be had: do not leave an unsupervised child behind. The pid is
                // still ours (unreaped), so this raw-pid kill cannot hit another process.
                ::kill(r.pid, SIGKILL);
                reap_failed(-1, r.pid);
            }
            return fail(f, err, spawn_stage::pidfd);
        }
        pidfd.reset(fd);
    }

    out.pidfd = std::move(pidfd);
    out.pid = r.pid;
    for (int t = 0; t < 3; ++t) out.parent_end[t] = std::move(pf.parent_end[t]);
    out.pty_master = std::move(pf.pty_master);
    return true;
} catch (const std::bad_alloc&) {
    return fail(f, ENOMEM, spawn_stage::prepare);
}

} // namespace drover::detail
