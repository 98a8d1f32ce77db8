// drover: runner mode, for programs that own their process (`drover run`, `drover up`, PID 1).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <vector>

#include "drover/error.hpp"

namespace drover {

/// Makes this process the reaper of the orphans its children leave: PID 1 already is one;
/// otherwise this sets `PR_SET_CHILD_SUBREAPER`. From then on:
/// - orphans of drover's children are re-parented to this process; `reap_orphans()` reaps them
///   (call it whenever SIGCHLD arrives: a runner blocks SIGCHLD and reads it from a signalfd);
/// - without a cgroup, a child's process tree also counts the adopted orphans that are still
///   in its session or process group, and every adopted orphan for the child named by
///   `attribute_orphans_to()`, so `async_stop` finds processes that escaped with a double fork
///   and `setsid`.
///
/// A library embedded in someone else's program must not call this: it changes who reaps what
/// for the whole process. Fails only where `prctl` does (an errno in `system_category()`).
void become_reaper();
void become_reaper(error_code& ec) noexcept;

class child;

/// In runner mode, counts every adopted orphan as part of `c`'s tree (for a runner with one
/// main child, such as `drover run`), whatever its session. Without this, orphans belong to a
/// child's tree only while they stay in its session or process group.
void attribute_orphans_to(const child& c) noexcept;

/// True once `become_reaper()` succeeded.
bool is_reaper() noexcept;

/// Reaps every exited child of this process that no `drover::child` owns (adopted orphans, or
/// children the program started by other means), without blocking. Children owned by a
/// `drover::child` are never touched. Returns how many were reaped.
std::size_t reap_orphans() noexcept;

/// The live children of this process that no `drover::child` owns.
std::vector<pid_t> orphans();

/// Kills what a runner that died left behind: with a leaf cgroup path, `cgroup.kill`, then
/// waits (up to 5 s) for it to empty and removes it (and its parent, when empty); with a
/// session id, SIGKILL to every process still in that session or process group (an id that
/// cannot be reused while any member lives). Used by `drover run`'s guard process.
void kill_abandoned_tree(const std::string& cgroup_path, pid_t session) noexcept;

} // namespace drover
