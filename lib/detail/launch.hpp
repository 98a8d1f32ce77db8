// drover (private): the Linux launcher. Creates a child with clone3(CLONE_VM|CLONE_VFORK|
// CLONE_PIDFD) on a preallocated stack; the child runs raw syscalls only.
#pragma once

#include <sys/types.h>

#include <string_view>

#include "detail/unique_fd.hpp"
#include "drover/command.hpp"
#include "drover/error.hpp"

namespace drover::detail {

/// How children are created. `automatic` probes in order and remembers what worked.
enum class launcher_kind : int {
    automatic = 0,
    clone3 = 1,           ///< clone3(CLONE_VM|CLONE_VFORK|CLONE_PIDFD[|CLONE_CLEAR_SIGHAND])
    clone_pidfd = 2,      ///< glibc clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD): clone3 refused
    clone_pidfd_open = 3, ///< glibc clone(CLONE_VM|CLONE_VFORK) + pidfd_open: CLONE_PIDFD refused
};

std::string_view to_string(launcher_kind k) noexcept;

/// Pins the launcher (tests), or returns to probing (from clone3 again) with `automatic`.
void force_launcher(launcher_kind k) noexcept;

/// Tests only: the child sleeps this long just before PR_SET_PDEATHSIG, so a test can kill the
/// parent inside the window the getppid() check covers (reliability.md C3 (b)). 0 = off.
void set_test_delay_before_pdeathsig(unsigned ms) noexcept;

/// The launcher the last spawn used (`automatic` before the first spawn).
launcher_kind current_launcher() noexcept;

/// What a successful launch hands over.
struct launched {
    unique_fd pidfd;
    pid_t pid = -1;
    unique_fd parent_end[3]; ///< the parent's pipe ends for fds configured as stdio::pipe()
    unique_fd pty_master;    ///< the master side when any fd is stdio::pty()
};

/// Creates the process described by `cmd`. Returns false and fills `f` (code, stage, detail;
/// not the program) on failure; then nothing is left behind: no zombie, no descriptor.
/// `cgroup_fd` (or -1) is the leaf cgroup directory the child is created in.
bool launch(const command& cmd, int cgroup_fd, launched& out, spawn_failure& f) noexcept;

} // namespace drover::detail
