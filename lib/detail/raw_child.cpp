// The raw child: what runs between clone and exec, in the order docs/architecture.md
// ("Spawning") gives, plus the clone3 trampoline that starts it and the stack it runs on.
//
// THE RULE FOR THIS FILE. The child shares the parent's memory (CLONE_VM) while the parent's
// thread is suspended (CLONE_VFORK), possibly in the middle of a malloc or holding a lock on
// another thread. So every function marked DROVER_CHILD_FN:
//   - makes raw system calls through syscall() only, and calls nothing else from libc;
//   - never allocates, locks, throws, logs, or touches the fault seam (lib/detail/fault.hpp);
//   - is not instrumented by sanitizers (their runtimes' state is the parent's) and runs on the
//     child's own stack, without a stack protector;
//   - reports a failure only by writing the plan's `stage`, `err` and `substep` and calling
//     exit_group (child_fail), never by returning into the clone frame.
// The one exception, marked below, is child_stack_top(), which the parent calls before the
// clone. Reviewing a change here: every call in a DROVER_CHILD_FN must be ::syscall(...) or
// another DROVER_CHILD_FN.
#include "detail/raw_child.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

#include "drover/error.hpp"

namespace drover::detail {

namespace {

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

#define DROVER_CHILD_FN                                                                                      \
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

/// Reads /proc/self/status of the child into `buf` (not NUL-terminated); its length, or -1
/// when it cannot be opened.
DROVER_CHILD_FN long child_read_status(char* buf, long size) noexcept {
    long fd = ::syscall(SYS_openat, AT_FDCWD, "/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    long len = 0;
    for (;;) {
        long n = ::syscall(SYS_read, fd, buf + len, size - len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += n;
        if (len == size) break;
    }
    ::syscall(SYS_close, fd);
    return len;
}

/// A signal mask line of the status text in `buf` ("SigIgn", "SigCgt": bit n-1 for signal n);
/// every bit set when it is not there or cannot be read (then every signal is reset).
DROVER_CHILD_FN std::uint64_t child_signal_mask(const char* buf, long len, const char* name) noexcept {
    // "\nNAME:\t" then 16 hex digits and a newline (more digits: signals beyond 64, not ours).
    for (long i = 0; i + 26 <= len; ++i) { // through the newline after the digits
        if (buf[i] != '\n') continue;
        long k = 0;
        while (k < 6 && buf[i + 1 + k] == name[k]) ++k;
        if (k != 6 || buf[i + 7] != ':' || buf[i + 8] != '\t') continue;
        std::uint64_t mask = 0;
        for (long j = i + 9; j < i + 9 + 16; ++j) {
            const char c = buf[j];
            int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (v < 0) return ~std::uint64_t{0};
            mask = mask << 4 | static_cast<std::uint64_t>(v);
        }
        if (buf[i + 9 + 16] != '\n') return ~std::uint64_t{0};
        return mask;
    }
    return ~std::uint64_t{0};
}

} // namespace

DROVER_CHILD_FN int raw_child_main(void* arg) noexcept {
    auto* p = static_cast<child_plan*>(arg);

    // 1. Every signal to its default disposition (handlers and SIG_IGN alike: docs/reliability.md
    //    row B3). Signals are all blocked (inherited from the parent's mask), so nothing runs on
    //    this shared memory. The kernel's sigaction for SIG_DFL with no flags and an empty mask
    //    is all zeros.
    //    Only a signal that is ignored or caught needs a call (with CLONE_CLEAR_SIGHAND none is
    //    caught; the fallback launchers have no such flag): /proc/self/status names them (SigIgn,
    //    SigCgt), one read instead of 62 rt_sigaction calls on every spawn (docs/performance.md).
    //    Without /proc, or a line it cannot read, all of them.
    const unsigned long dfl_action[4] = {0, 0, 0, 0};
    //    One read serves both lines (the file is generated on each open).
    char status[4096];
    const long status_len = child_read_status(status, sizeof status);
    const std::uint64_t to_reset =
        child_signal_mask(status, status_len, "SigIgn") | child_signal_mask(status, status_len, "SigCgt");
    for (int sig = 1; sig <= 64; ++sig) {
        if (sig == SIGKILL || sig == SIGSTOP || ((to_reset >> (sig - 1)) & 1U) == 0) continue;
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
    if (p->private_mounts && ::syscall(SYS_mount, nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
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
    // O_NONBLOCK lives in the open file description; a child expects blocking stdio
    // (docs/reliability.md row B4).
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
    //     is gone). Raw syscalls act on this thread only, which is the whole child
    //     (docs/reliability.md row G3). Every result is checked, and the ids verified (row G2).
    if (p->set_groups) {
        if (::syscall(sys_setgroups_nr, p->n_groups, p->groups) != 0)
            child_fail(p, spawn_stage::setgroups, errno);
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
        if (::syscall(sys_setresgid_nr, p->gid, p->gid, p->gid) != 0)
            child_fail(p, spawn_stage::setgid, errno);
        gid_t r = 0, e = 0, s = 0;
        if (::syscall(sys_getresgid_nr, &r, &e, &s) != 0 || r != p->gid || e != p->gid || s != p->gid)
            child_fail_at(p, spawn_stage::setgid, sub_verify, EPERM);
    }
    if (p->set_uid) {
        if (::syscall(sys_setresuid_nr, p->uid, p->uid, p->uid) != 0)
            child_fail(p, spawn_stage::setuid, errno);
        uid_t r = 0, e = 0, s = 0;
        if (::syscall(sys_getresuid_nr, &r, &e, &s) != 0 || r != p->uid || e != p->uid || s != p->uid)
            child_fail_at(p, spawn_stage::setuid, sub_verify, EPERM);
    }

    // 4c. Working directory, as the child's own identity (a directory it cannot enter fails).
    if (p->cwd != nullptr && ::syscall(SYS_chdir, p->cwd) < 0) child_fail(p, spawn_stage::cwd, errno);

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

    // 5. Close every descriptor >= 3 that was not passed on purpose, CLOEXEC or not
    //    (docs/reliability.md row B1).
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

    // 6. An empty signal mask (docs/reliability.md row B2), or the one the command asked for,
    //    then exec.
    if (::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &p->sigmask, nullptr, 8) != 0)
        child_fail(p, spawn_stage::signals, errno);
    ::syscall(SYS_execve, p->path, p->argv, p->envp);
    child_fail(p, spawn_stage::exec, errno);
}

// ---- clone3 on a separate stack --------------------------------------------------------------
//
// With CLONE_VM the child shares this thread's memory but runs on its own stack, so the code
// after the syscall must not touch the parent's frame: the trampoline calls fn(arg) on the new
// stack and exits with its result.

#if defined(__x86_64__)
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
#endif

// ---- parent side: the child's stack ----------------------------------------------------------
//
// Mapped by the parent before the clone (this is the one part of the file that is not child
// code). One child stack per spawning thread, mapped on first use, with a guard page below it.
// CLONE_VFORK keeps the thread suspended while its child runs, so one stack per thread is
// enough, and the cost is paid once, not per spawn.

namespace {

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

} // namespace

void* child_stack_top() noexcept {
    return t_stack.top();
}

} // namespace drover::detail
