// drover (private): which pids belong to live drover children, for runner mode.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <mutex>

namespace drover::detail {

/// Held across clone-and-register in runner mode, and by reap_orphans(), so an orphan reaper
/// never takes a child that was just created but not yet registered.
std::mutex& spawn_registry_mutex() noexcept;

/// Must be called with spawn_registry_mutex() held.
void registry_add_locked(pid_t pid);
void registry_remove(pid_t pid) noexcept;
bool registry_contains_locked(pid_t pid) noexcept;
std::size_t registry_size() noexcept;

bool runner_mode() noexcept;

/// The child_impl (address) that adopted orphans are attributed to, or null.
const void* orphan_owner() noexcept;

} // namespace drover::detail
