// drover (private): runner mode's registry: whether the process is a reaper, which pids belong
// to live drover children, and which child adopted orphans are attributed to. It sits below
// child (which registers its children), stop (which walks adopted orphans) and the public
// reaper API (become_reaper, reap_orphans, orphans), and calls none of them.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <mutex>
#include <vector>

namespace drover::detail {

/// Held across clone-and-register in runner mode, and by reap_orphans(), so an orphan reaper
/// never takes a child that was just created but not yet registered.
std::mutex& spawn_registry_mutex() noexcept;

/// Must be called with spawn_registry_mutex() held.
void registry_add_locked(pid_t pid);
void registry_remove(pid_t pid) noexcept;
bool registry_contains_locked(pid_t pid) noexcept;
std::size_t registry_size() noexcept;

/// The children of this process that no drover child owns (adopted orphans, or children the
/// host made), read from /proc under spawn_registry_mutex().
std::vector<pid_t> unregistered_children();

/// Runner mode: set once the process is a subreaper (or PID 1), never cleared.
bool runner_mode() noexcept;
void set_runner_mode() noexcept;

/// The child_impl (address) that adopted orphans are attributed to, or null.
const void* orphan_owner() noexcept;
void set_orphan_owner(const void* impl) noexcept;

} // namespace drover::detail
