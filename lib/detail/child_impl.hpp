// drover (private): the state behind a `drover::child`, shared with its pending operations.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/consign.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include "detail/cgroup.hpp"
#include "drover/command.hpp"
#include "drover/error.hpp"
#include "drover/exit_status.hpp"
#include "drover/pipe_writer.hpp"
#include "drover/resource_usage.hpp"

namespace drover::detail {

using stop_handler = boost::asio::any_completion_handler<void(error_code, exit_status)>;

struct child_impl {
    explicit child_impl(const boost::asio::any_io_executor& ex)
        : strand(boost::asio::make_strand(ex)), pidfd(ex), timer(strand), poll_timer(strand) {}

    // Internal operations (stop, cleanup) run on this strand; user operations on their own
    // executors. `m` guards `pid` and `status`, which both touch.
    boost::asio::strand<boost::asio::any_io_executor> strand;
    boost::asio::posix::stream_descriptor pidfd; ///< owns the pidfd; readable once it exits
    std::mutex m;
    pid_t pid = -1;     ///< -1 once reaped
    pid_t session = -1; ///< = the pid if it leads its own session
    /// Without a cgroup: proven, while the exited main process still held its pid, that no pid
    /// was allocated after it (ns_last_pid), so it never forked and its session is empty:
    /// the stop's /proc walk is skipped (see try_reap).
    std::atomic<bool> session_alone{false};
    std::optional<exit_status> status; ///< set once, when reaped
    std::string program;
    std::optional<resource_usage> usage; ///< set with status, when the kernel gave one
    std::optional<pipe_writer> in;
    std::optional<boost::asio::posix::stream_descriptor> out;
    std::optional<boost::asio::posix::stream_descriptor> err;
    std::optional<boost::asio::posix::stream_descriptor> pty; ///< the master side of stdio::pty()
    /// An eventfd, set once an exit that a tracer held can be reaped (see watch_held_exit;
    /// created under `m`, only for a child whose exit was seen held).
    std::optional<boost::asio::posix::stream_descriptor> held_exit;

    // The tree and how to stop it.
    std::unique_ptr<cgroup_leaf> leaf;              ///< null: the session/process-group fallback
    std::vector<drover::unapplied_limit> unapplied; ///< cgroup limits not in force (set at spawn)
    bool memory_limited = false;                    ///< memory.max was written to the leaf
    std::optional<std::uint64_t> oom_kills;         ///< from memory.events, read when reaped
    int stop_signal = 15;
    std::chrono::steady_clock::duration stop_grace{};
    cancel_policy on_cancel = cancel_policy::stop;

    // Stop state (on the strand).
    bool stopping = false;  ///< a stop or cleanup is under way
    bool signalled = false; ///< the stop signal went to the tree
    bool killed = false;    ///< SIGKILL went to the tree
    bool tree_done = false; ///< the tree is empty, the main process reaped, the leaf removed
    int rmdir_tries = 0;
    std::vector<stop_handler> stop_waiters;
    /// Without a cgroup: pidfds of every tree member seen when signalling, by pid (guarded by
    /// known_m: signal_tree() adds from the caller's thread). Exited entries are pruned.
    std::mutex known_m;
    std::vector<std::pair<pid_t, unique_fd>> known;
    bool finishing = false;               ///< the tree is empty; reaping and removing the leaf
    boost::asio::steady_timer timer;      ///< the grace period
    boost::asio::steady_timer poll_timer; ///< fallback emptiness checks; rmdir retries
    /// The leaf's cgroup.events descriptor, borrowed for waiting in the reactor: released,
    /// never closed, by release_events() (the leaf owns the descriptor).
    std::optional<boost::asio::posix::stream_descriptor> events;
    bool watch_failed = false;        ///< the reactor reported an error on `events`: poll instead
    bool events_wait_pending = false; ///< an async_wait on `events` is queued
    int blind_checks = 0;             ///< consecutive /proc walks that could not look everywhere
    error_code stop_error;            ///< given to stop waiters (EMFILE: the tree could not be checked)
    /// finish_cleanup_now() reaped the main process and removed the leaf off the strand: a stop
    /// queued before or after has nothing left to do (and must not walk a session id that may
    /// now be someone else's).
    std::atomic<bool> finished_now{false};

    ~child_impl() { release_events(*this); }
    friend void release_events(child_impl& c) noexcept {
        if (!c.events) return;
        boost::system::error_code ignored;
        c.events->cancel(ignored);
        c.events->release();
        c.events.reset();
        c.events_wait_pending = false;
    }
};

/// Reaps the child if it has exited (waitid(P_PIDFD, WEXITED|WNOHANG|__WALL)); returns its
/// status, or empty while it runs. On ECHILD (reaped by someone else) the status comes from
/// PIDFD_INFO_EXIT where the kernel keeps it, else it is `unknown`.
std::optional<exit_status> try_reap(child_impl& c, error_code& ec) noexcept;

/// Sends `sig` to the main process: through the pidfd on Linux (no pid reuse can misdirect it);
/// elsewhere kill(pid) under `m`, and only while the child is unreaped, so that its pid is still
/// its own. 0, or -1 with errno (ESRCH once reaped).
int signal_main(child_impl& c, int sig) noexcept;
/// The same, for a caller that holds `c.m`.
int signal_main_locked(child_impl& c, int sig) noexcept;

/// True if the pidfd reports the process as exited (poll, no waiting).
bool pidfd_ready(child_impl& c) noexcept;

/// True if waitid would reap the child now (or fail): checked with WNOWAIT, so nothing is
/// reaped. False while the process runs, and also while a tracer holds its exit (the pidfd is
/// readable then, but there is nothing to reap yet: reliability.md, C5).
bool reapable_now(child_impl& c) noexcept;

/// Call right after queueing an async_wait on `c.pidfd`: if the exit can be reaped already
/// (its edge may have been consumed by another thread's reactor before the wait was queued),
/// cancels the queued waits so that each re-checks. Never cancels for a traced exit that cannot
/// be reaped yet (async_wait_reapable waits for that one on watch_held_exit's eventfd).
void close_lost_wakeup_window(child_impl& c);

/// Reaps the (SIGKILLed) child and removes its leaf cgroup synchronously, blocking until done
/// or until `deadline`. For cleanups that the io_context will not run: a child handle destroyed
/// while its context is stopped, or a context destroyed with the cleanup still queued.
/// Thread-safe against the strand's own cleanup (reaping takes `m`; leaf removal is idempotent).
void finish_cleanup_now(child_impl& c, std::chrono::steady_clock::time_point deadline) noexcept;

/// For an exit the pidfd reports but waitid cannot reap yet (a tracer holds it, C5): returns a
/// descriptor that becomes readable once the exit can be reaped. Behind it, one thread for this
/// child blocks in waitid(WEXITED|WNOWAIT) (the kernel wakes a parent's waiters when the tracer
/// lets the exit go; nothing wakes a readable pidfd again without re-polling it) and then sets
/// an eventfd. Null if no thread or descriptor could be had: the caller then waits on a timer.
boost::asio::posix::stream_descriptor* watch_held_exit(child_impl& c) noexcept;

/// Calls `h(error_code)` when the exit may have become reapable (try_reap then tells): on the
/// pidfd's readiness while the process runs; once a tracer lets go of an exit it holds; on a
/// short timer if neither can be waited for. Never re-arms on a readable pidfd, which Asio's
/// reactor would report again at once (it re-polls the descriptor whenever a wait is queued).
template <typename Handler>
void async_wait_reapable(child_impl& c, Handler&& h) {
    if (!pidfd_ready(c)) {
        c.pidfd.async_wait(boost::asio::posix::descriptor_base::wait_read, std::forward<Handler>(h));
        close_lost_wakeup_window(c);
        return;
    }
    if (reapable_now(c)) {
        // Exited between the caller's look and ours: nothing to wait for. post() runs the
        // handler on its own associated executor.
        boost::asio::post(c.pidfd.get_executor(),
                          boost::asio::append(std::forward<Handler>(h), error_code{}));
        return;
    }
    if (auto* released = watch_held_exit(c)) {
        released->async_wait(boost::asio::posix::descriptor_base::wait_read, std::forward<Handler>(h));
        return;
    }
    // No thread or descriptor to be had: look again shortly. consign keeps the timer alive and
    // the handler's associated executor, cancellation slot and allocator visible to Asio.
    auto t =
        std::make_shared<boost::asio::steady_timer>(c.pidfd.get_executor(), std::chrono::milliseconds(10));
    auto& timer = *t;
    timer.async_wait(boost::asio::consign(std::forward<Handler>(h), std::move(t)));
}

/// Keeps waiting in the io_context until the child exits, then reaps it.
void reap_in_background(std::shared_ptr<child_impl> c);

} // namespace drover::detail
