// drover (private): the raw child, the code that runs between clone and exec, and what it
// needs from the parent: the plan it follows, its stack, and the clone3 trampoline.
//
// The parent (lib/detail/launch_linux.cpp) fills a `child_plan`; the launcher
// (lib/detail/launcher.cpp) creates the child on the stack from `child_stack_top()` running
// `raw_child_main(&plan)`. Under CLONE_VM|CLONE_VFORK the child shares the parent's memory, so
// it reports a failure by writing `stage`, `err` and `substep` into the plan and exiting.
#pragma once

#include <net/if.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include "detail/sys.hpp"

namespace drover::detail {

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

/// Everything the raw child needs, prepared by the parent (lib/detail/launch_linux.cpp). The
/// child only reads it, except for the three failure fields at the end.
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
    int ctty_fd = -1; // a target fd (0-2) on the pty slave: TIOCSCTTY, or -1
    bool cloexec_range = true;
    int cgroup_fd = -1;           // the leaf cgroup's directory, or -1
    bool attach_in_child = false; // join cgroup_fd by writing cgroup.procs (no CLONE_INTO_CGROUP)
    int pdeathsig = 0;            // PR_SET_PDEATHSIG, 0 = none
    unsigned long sigmask = 0;    // the signal mask the program starts with (bit sig-1)
    pid_t parent_pid = 0;         // getpid() before the clone, for the getppid() check
    unsigned test_delay_ms = 0;   // tests: sleep before PR_SET_PDEATHSIG
    const struct rlimit64_arg* limits = nullptr; // resource limits to set, with their resource
    int n_limits = 0;
    int umask = -1; // -1: keep the parent's
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
    bool private_mounts = false;      // MS_REC|MS_PRIVATE on / (new mount namespace)
    bool mount_proc = false;          // a fresh /proc (new pid + mount namespaces)
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

/// The child's entry point (the function clone runs; `arg` is the `child_plan`). Never returns
/// to its caller: it execs, or records the failure in the plan and exits with 127.
int raw_child_main(void* arg) noexcept;

/// The size of the child's stack.
inline constexpr std::size_t child_stack_size = 64 * 1024;

/// The top of this thread's child stack (mapped on first use, with a guard page below it), or
/// null if it cannot be mapped. Called by the parent before the clone.
void* child_stack_top() noexcept;

/// clone3 with a child function on a new stack (glibc 2.36 has no clone3 wrapper). Returns the
/// child's pid, or -errno; the child runs `fn(arg)` on `args->stack` and exits with its result.
/// Present on x86-64 and aarch64 (`have_clone3_trampoline`); elsewhere clone3 is not used.
extern "C" long drover_clone3_trampoline(clone_args* args, std::size_t size, int (*fn)(void*), void* arg);

#if defined(__x86_64__) || defined(__aarch64__)
inline constexpr bool have_clone3_trampoline = true;
#else
inline constexpr bool have_clone3_trampoline = false;
#endif

} // namespace drover::detail
