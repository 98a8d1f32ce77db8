// drover (private): the launcher choice. Creates the raw child (lib/detail/raw_child.hpp) with
// the first launcher the kernel accepts: clone3(CLONE_VM|CLONE_VFORK|CLONE_PIDFD), then glibc
// clone() with CLONE_PIDFD, then clone() and pidfd_open. The choice is probed once and
// remembered; tests pin one with force_launcher() (lib/detail/launch.hpp).
#pragma once

#include <sys/types.h>

#include "detail/launch.hpp"
#include "detail/raw_child.hpp"

namespace drover::detail {

struct clone_result {
    pid_t pid = -1;
    int pidfd = -1; ///< -1 from the last fallback (clone without CLONE_PIDFD)
    int err = 0;    ///< the errno when pid < 0
};

/// Creates the child of `plan` on `stack_top`, every signal blocked on this thread meanwhile
/// (so no handler runs in the child on shared memory, and a signal sent at the newborn waits
/// until it has exec'd). `used` names the launcher that made the last attempt.
clone_result create_child(child_plan& plan, void* stack_top, launcher_kind& used) noexcept;

/// True for the errors that mean "this launcher is not available here" (ENOSYS, EPERM from a
/// seccomp profile, EINVAL for an unknown flag), after which the next launcher is tried.
bool launcher_refused(int err) noexcept;

} // namespace drover::detail
