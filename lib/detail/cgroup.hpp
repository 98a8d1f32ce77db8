// drover (private): cgroup v2 leaves, one fresh leaf per spawned child.
//
// Layout: drover's own cgroup (from /proc/self/cgroup, on the cgroup2 mount found through
// /proc/self/mountinfo) gets one directory per drover process, `drover-<pid>`, and under it one
// leaf per spawn, `run-<n>`, with n never reused within the process (a cgroup that has seen
// `cgroup.kill` kills every child later cloned into it: docs/reliability.md, "Facts about the
// machines"). A leaf is removed once it is empty and its main process is reaped;
// `drover-<pid>` is removed with its last leaf.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "detail/unique_fd.hpp"
#include "drover/command.hpp"
#include "drover/error.hpp"

namespace drover::detail {

/// Where cgroup v2 lives for this process, probed once.
struct cgroup_probe {
    bool usable = false; ///< a writable cgroup2 hierarchy with cgroup.kill was found
    std::string mount;   ///< the cgroup2 mount point
    std::string root;    ///< the mount's root within the hierarchy (mountinfo field 4)
    std::string own;     ///< this process's cgroup directory (absolute path)
    std::string why_not; ///< when !usable: what is missing, for messages
};

/// The probe result (cached after the first call; thread-safe).
const cgroup_probe& probe_cgroup();

/// Parses /proc/self/mountinfo text: the mount point of the first cgroup2 mount and its root
/// within the hierarchy. Empty mount if there is none. (Exposed for tests.)
void parse_cgroup2_mount(const std::string& mountinfo, std::string& mount, std::string& root);

/// One fresh leaf cgroup.
class cgroup_leaf {
public:
    /// Creates a new leaf under drover's directory. Returns null and sets `ec`/`why` on failure.
    /// `allow_spare`: a leaf kept by recycle() may be handed out instead (never for a spawn
    /// that sets limits: a fresh leaf's counters, memory.events among them, start at zero).
    static std::unique_ptr<cgroup_leaf> create(error_code& ec, std::string& why, bool allow_spare = true);

    ~cgroup_leaf();
    cgroup_leaf(const cgroup_leaf&) = delete;
    cgroup_leaf& operator=(const cgroup_leaf&) = delete;

    const std::string& path() const noexcept { return path_; }
    /// The leaf as /proc/<pid>/cgroup names it ("0::" + this).
    const std::string& proc_view() const noexcept { return proc_view_; }
    /// The directory, opened O_RDONLY|O_DIRECTORY (for CLONE_INTO_CGROUP). Closed by
    /// `launched()`: a running child costs no descriptor for it.
    int dir_fd() const noexcept { return dir_.get(); }
    /// The child is in the leaf: the directory descriptor is no longer needed.
    void launched() noexcept { dir_.reset(); }

    /// Writes "1" to cgroup.kill: SIGKILL to every process in the leaf, atomically with
    /// respect to forks.
    error_code kill() noexcept;
    /// The pids in the leaf now (cgroup.procs); none once removed or recycled.
    std::vector<pid_t> procs() const;
    /// `populated` from cgroup.events; true on a read error (never claims empty wrongly); false
    /// once the leaf is removed.
    bool populated() const noexcept;
    /// `frozen` from cgroup.events: the leaf (a new one inherits this from a frozen parent)
    /// would freeze a child placed in it before it could exec.
    bool frozen() const noexcept;
    /// cgroup.events, open for the leaf's whole life (owned by the leaf). The kernel reports a
    /// change of it as EPOLLPRI (kernfs_notify), so a stop waits on this descriptor in the
    /// reactor: no inotify instance per child (128 per user by default), and no open() while
    /// stopping, so a process out of descriptors (EMFILE) can still see its tree empty.
    int events_fd() const noexcept { return events_.get(); }
    /// Writes the limits into the leaf (before the child is placed in it), enabling the
    /// controllers they need in drover's cgroups first. What cannot be applied is appended to
    /// `not_applied`, as {setting name, reason}; everything else is in force. `memory_applied`
    /// says whether memory.max was written (then `oom_kills()` means something).
    void apply_limits(const cgroup_limits& limits,
                      std::vector<std::pair<std::string, std::string>>& not_applied, bool& memory_applied);
    /// `oom_kill` from memory.events: processes of the leaf the OOM killer took. Empty when the
    /// file cannot be read (no memory controller).
    std::optional<std::uint64_t> oom_kills() const noexcept;

    /// rmdir of the leaf (and of drover's directory if it was the last leaf). False while the
    /// kernel still refuses (EBUSY): try again later.
    /// `close_descriptors` false keeps cgroup.events and cgroup.kill open until the leaf is
    /// destroyed: for a removal off the strand, which may have the events descriptor registered
    /// with the reactor (closing it there would let a reused number be dropped from epoll).
    bool remove(bool close_descriptors = true) noexcept;
    /// A duplicate of the cgroup.events descriptor (same open file, so the same EPOLLPRI
    /// notices), or -1 once the leaf is removed or if none can be had. The caller closes it.
    int dup_events_fd() const noexcept;
    bool removed() const noexcept { return removed_.load(std::memory_order_acquire); }

    /// Offers the leaf for a later spawn of this process instead of removing it, when that is
    /// sound: its tree ended by itself (the caller knows that no signal went to it), no
    /// `cgroup.kill` was ever written to it, no limit was set on it, it is empty and has no
    /// cgroup below it. A fresh cgroup costs the kernel far more at its first clone than one
    /// that held a process before (docs/performance.md). On success this object is left as if
    /// removed (its descriptors moved to the spare) and true is returned; else nothing changed.
    bool recycle() noexcept;
    /// Marks the leaf removed without removing it (a spare dropped at exit or after fork).
    void forget() noexcept;

private:
    /// A spare leaf, if one is kept for this process (its descriptors opened again), else null;
    /// null with `ec` set when they cannot be opened for lack of descriptors or memory.
    static std::unique_ptr<cgroup_leaf> take_spare(error_code& ec, std::string& why) noexcept;
    std::atomic<bool> killed_{false}; ///< cgroup.kill was written (a killed cgroup is never used again)
    bool limited_ = false;            ///< apply_limits() wrote to it
    cgroup_leaf() = default;
    std::string path_;
    std::string proc_view_;
    unique_fd dir_;
    unique_fd events_; ///< cgroup.events, read with pread
    unique_fd kill_;   ///< cgroup.kill, opened at creation so that a stop needs no new descriptor
    /// Until create() has made the directory, and once remove() has removed it. A child
    /// handle's destructor calls populated() and kill() from its own thread while the strand may
    /// be removing the leaf: `fds_m_` guards the two descriptors, which remove() closes, so such
    /// a late call never reaches a reused descriptor number.
    std::atomic<bool> removed_{true};
    mutable std::mutex fds_m_;
    std::mutex remove_m_; ///< one remove() at a time (the strand's, and a blocking cleanup's)
};

} // namespace drover::detail
