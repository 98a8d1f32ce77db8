// drover (private): the stop engine (lib/stop.cpp), as child.cpp calls it: stopping a child's
// tree, signalling it, and listing it. docs/architecture.md, "Stopping a tree".
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <vector>

#include "detail/child_impl.hpp"

namespace drover::detail {

/// Starts (or joins) the stop of `c`'s tree. `sig` 0 sends nothing (only waits for the tree to
/// empty, then cleans up); `kill_now` skips the grace period. `h` (may be empty) completes once
/// the tree is empty, the main process reaped and the leaf cgroup removed.
void start_stop(const std::shared_ptr<child_impl>& c, int sig, std::chrono::steady_clock::duration grace,
                bool kill_now, stop_handler h);

/// Sends `sig` to every process of the tree now; returns how many got it.
std::size_t signal_tree_now(child_impl& c, int sig);

/// SIGKILL to the main process's process group, for when /proc cannot be walked (no
/// descriptors left); only while the main process is unreaped.
void kill_group_blind(child_impl& c) noexcept;

/// SIGKILL to the whole tree, synchronously (used by the destructor).
void kill_tree_now(child_impl& c) noexcept;

/// The pids of the tree right now (cgroup.procs, or the /proc walk).
std::vector<pid_t> tree_pids(child_impl& c);

} // namespace drover::detail
