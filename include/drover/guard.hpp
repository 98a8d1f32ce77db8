// drover: a guard process, so that nothing a child started outlives this process's death.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "drover/child.hpp"
#include "drover/error.hpp"

namespace drover {

namespace detail {
struct guard_access;
}

/// argv[1] of a guard process: `PROGRAM __drover_guard CGROUP SESSION`.
inline constexpr const char* guard_argument = "__drover_guard";

struct guard_options {
    /// The program that runs the guard: one whose `main` calls `run_guard_if_requested` first.
    /// Empty (the default): this program (`/proc/self/exe`; macOS: `proc_pidpath`;
    /// FreeBSD: `KERN_PROC_PATHNAME`). On a Linux build with a cgroup tree, an empty program
    /// means no program at all: a copy of this process made without exec.
    std::string program;
};

/// A guard process watching one child's tree: if this process dies without dismissing it
/// (SIGKILL, the OOM killer, a crash), the guard kills what the child's tree still holds, so
/// nothing the child started survives. The parent-death signal alone reaches only the child
/// itself; the guard covers its descendants too (docs/reliability.md row C3).
///
/// The guard is a second process, outside the child's tree, in a session of its own, with no
/// parent-death signal, holding the read end of a pipe whose write end only this process has.
/// Dismissing it writes one byte and closes the pipe: the guard exits at once. If the pipe
/// reaches end-of-file without that byte, this process is gone, and the guard writes
/// `cgroup.kill` and removes the leaf cgroup, or, for a child without a cgroup, SIGKILLs its
/// session (`kill_abandoned_tree`).
///
/// Destroying an active guard dismisses it. A guard is a `child` of this process, bound to the
/// guarded child's executor: it is reaped while that io_context runs.
class tree_guard {
public:
    /// An empty guard: guards nothing.
    tree_guard() noexcept;
    tree_guard(tree_guard&&) noexcept;
    tree_guard& operator=(tree_guard&&) noexcept;
    tree_guard(const tree_guard&) = delete;
    tree_guard& operator=(const tree_guard&) = delete;
    ~tree_guard();

    /// True while a guard process watches (until dismissed).
    bool active() const noexcept { return guard_.valid(); }
    /// The guard process's id while it is active.
    std::optional<pid_t> id() const noexcept;

    /// Tells the guard that all is well: it exits without touching anything, and this handle
    /// becomes empty. Fails with `errc::not_running` on an empty guard, and with `broken_pipe`
    /// when the guard had already died (so nothing was guarding). Throws `system_error`.
    void dismiss();
    void dismiss(error_code& ec) noexcept;

private:
    friend struct detail::guard_access;
    child guard_;
};

/// Starts a guard for `c`'s tree (see `tree_guard`). Keep the returned guard as long as the
/// tree must not outlive this process; dismiss it once the tree has been stopped.
///
/// Without a cgroup (`tree_kind::session`), the guard kills the child's session and whatever
/// it finds below the child itself: give the command `parent_death_signal(0)` then, so that
/// the child is still alive for that walk when this process dies (a `setsid` grandchild is
/// found only through it). With a cgroup nothing escapes. On the portable backend
/// (`tree_kind::process_group`) the guard is always the program: on Linux it walks the same
/// way; on macOS and FreeBSD it kills the child's process group, which a `setsid` grandchild
/// has left (docs/reliability.md row D1).
///
/// Fails with `errc::not_running` for an empty or reaped child, with `errc::not_supported` when
/// no program is named and this program's path cannot be found, or as `spawn` fails (the guard
/// program cannot be found, say). Throws `spawn_error`.
tree_guard guard_tree(const child& c, const guard_options& options = {});
/// As above; on failure returns an empty guard and fills `failure` (stage, program, errno).
tree_guard guard_tree(const child& c, const guard_options& options, spawn_failure& failure) noexcept;
/// As above; on failure returns an empty guard and sets `ec`.
tree_guard guard_tree(const child& c, const guard_options& options, error_code& ec) noexcept;

/// The guard's side. A program that starts guards calls this first thing in `main`, before
/// any thread exists:
///
/// <!-- snippet: top-level -->
/// ```cpp
/// int main(int argc, char** argv) {
///     if (auto rc = drover::run_guard_if_requested(argc, argv)) return *rc;
///     // ... the program itself
/// }
/// ```
///
/// Returns empty unless argv[1] is `guard_argument`. Otherwise this process is a guard: it
/// blocks SIGTERM, SIGINT, SIGHUP and SIGQUIT, waits on its stdin, kills the tree named by
/// argv[2] (a leaf cgroup's directory, or `-`) and argv[3] (the session id) unless it was
/// dismissed, and returns 0; 2 for malformed arguments, without waiting.
std::optional<int> run_guard_if_requested(int argc, const char* const* argv);

} // namespace drover
