// drover: the descriptor limit of a program that supervises many children.
#pragma once

#include <sys/resource.h>

#include "drover/error.hpp"

namespace drover {

/// Descriptors one supervised child holds open in the supervising process: its pidfd, one per
/// piped stream, and with a leaf cgroup that leaf's `cgroup.events` and `cgroup.kill` (kept open
/// so a stop needs no new descriptor); a `supervisor` service with a notify socket holds one
/// more. So a child with stdout and stderr piped costs 5, and under Debian's default soft limit
/// of 1024 a program holds about 200 of them before spawns fail with EMFILE.
inline constexpr int descriptors_per_child = 5;

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit and returns the new soft limit
/// (unchanged when it already was the hard limit). Programs that supervise hundreds of children
/// call it once at start, as Go's runtime does for every program; the children are not affected:
/// a child whose parent raised its soft limit above 1024 still gets 1024 (reliability.md B6),
/// unless its command sets `rlimit(RLIMIT_NOFILE, ...)` itself. Fails only where getrlimit or
/// setrlimit does (an errno in `system_category()`).
rlim_t raise_fd_limit();
rlim_t raise_fd_limit(error_code& ec) noexcept;

} // namespace drover
