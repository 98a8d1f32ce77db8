// drover (private): a child's process tree without cgroups, read from /proc.
//
// Every child starts as a session leader, so its session id is its pid, and that id cannot be
// reused while any member of the session lives. The tree is: every live process whose session
// or process group is that id, plus every descendant of those (found through
// /proc/<pid>/task/*/children), plus the given extra roots (the main process, adopted orphans
// in runner mode). Processes that left the session *and* lost their parent in the tree are
// invisible here; the cgroup path has no such gap.
#pragma once

#include <sys/types.h>

#include <string_view>
#include <vector>

#include "detail/unique_fd.hpp"

namespace drover::detail {

struct proc_ids {
    pid_t ppid = 0;
    pid_t pgrp = 0;
    pid_t session = 0;
    char state = '?';
};

/// Parses the text of /proc/<pid>/stat (the comm field may hold spaces, parentheses and
/// newlines: fields are read after the last ')'). False if malformed.
bool parse_stat_ids(std::string_view stat, proc_ids& out) noexcept;

/// Reads /proc/<pid>/stat. False if the process is gone.
bool read_proc_ids(pid_t pid, proc_ids& out) noexcept;

/// The pids listed in /proc/<pid>/task/*/children.
std::vector<pid_t> children_of(pid_t pid, bool* complete = nullptr);

struct tree_member {
    pid_t pid;
    proc_ids ids; ///< as read when the walk found it
};

/// The live (non-zombie) members of the tree of session `sid`, with their ids at discovery.
/// `complete` (if given) is set false when the walk could not look everywhere because drover
/// is out of descriptors or memory: then "no members" does not mean the tree is empty.
std::vector<tree_member> session_members(pid_t sid, const std::vector<pid_t>& extra_roots,
                                         bool* complete = nullptr);

/// The live (non-zombie) processes of the tree rooted at session `sid`, as described above.
/// Never includes the calling process.
std::vector<pid_t> session_tree(pid_t sid, const std::vector<pid_t>& extra_roots, bool* complete = nullptr);

/// The portable backend's tree (tree_kind::process_group): the live processes of process group
/// `pgid`, plus the live ones of `extra_roots` (the main process while it lives). Where /proc
/// exists (Linux) it is read; elsewhere the list holds the extra roots only.
/// `complete` (if given) is set false when /proc could not be read whole (out of descriptors or
/// memory): then "no members" does not mean the group is empty.
std::vector<pid_t> group_members(pid_t pgid, const std::vector<pid_t>& extra_roots, bool* complete = nullptr);

/// Pidfds for every process of the tree, each one's identity re-checked after pidfd_open (so
/// a pid reused meanwhile is left out). Collect first, then signal: a parent that dies of the
/// signal re-parents its children out of reach of the walk.
unique_fd verified_pidfd(const tree_member& m);
std::vector<unique_fd> collect_tree(pid_t sid, const std::vector<pid_t>& extra_roots);

/// Kills the whole tree: SIGSTOP to every member until no new member appears (a stopped process
/// cannot fork), then SIGKILL to all of them.
std::size_t kill_tree(pid_t sid, const std::vector<pid_t>& extra_roots);

} // namespace drover::detail
