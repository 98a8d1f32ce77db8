// drover: a running child process, owned through its pidfd.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "drover/command.hpp"
#include "drover/error.hpp"
#include "drover/exit_status.hpp"
#include "drover/pipe_writer.hpp"
#include "drover/resource_usage.hpp"

namespace drover {

namespace detail {
struct child_impl;
struct guard_access;

// Initiate child's asynchronous operations with a type-erased handler (defined in libdrover).
void initiate_child_wait(std::shared_ptr<child_impl> impl,
                         boost::asio::any_completion_handler<void(error_code, exit_status)> handler);
void initiate_child_wait_for(std::shared_ptr<child_impl> impl, std::chrono::steady_clock::duration timeout,
                             boost::asio::any_completion_handler<void(error_code, exit_status)> handler);
void initiate_child_stop(std::shared_ptr<child_impl> impl, int sig,
                         std::optional<std::chrono::steady_clock::duration> grace, bool kill,
                         boost::asio::any_completion_handler<void(error_code, exit_status)> handler);
} // namespace detail

/// How a child's process tree is tracked (see `child::tree()`).
enum class tree_kind {
    cgroup,  ///< a fresh leaf cgroup: complete and atomic (cgroup.kill, cgroup.events)
    session, ///< the child's session and process group plus descendants found through /proc
    /// The portable backend (`backend_kind::portable`): the child's process group (the child
    /// leads its own session). A process that leaves the group (setsid, setpgid) escapes the
    /// stop; descendants are not followed.
    process_group,
};

/// A child process started by `spawn()`, owned through its pidfd.
///
/// A process is its handle: signals go through the pidfd (`pidfd_send_signal`), so a reaped
/// child's pid, even when reused by an unrelated process, is never hit. The child is reaped
/// exactly once, by `async_wait`, `try_wait` or the destructor's background reaper; after that
/// `id()` is empty.
///
/// drover waits on the pidfd and never installs, changes or depends on a SIGCHLD handler. If the
/// host process reaps a drover child itself (a `waitpid(-1)` loop), the status comes from the
/// kernel's `PIDFD_INFO_EXIT` record (Linux 6.15+) or is `exit_status::unknown()`; a wait never
/// hangs on it.
///
/// Off Linux (the portable backend on macOS and FreeBSD) a kqueue watching the pid for its exit
/// (`EVFILT_PROC`/`NOTE_EXIT`) stands in for the pidfd, and signals go by pid, only while the
/// child is still this process's and unreaped; a host's `waitpid(-1)` leaves a narrow window
/// there (docs/reliability.md, C2).
///
/// **The tree**: the child and everything it starts. With a leaf cgroup (`tree_kind::cgroup`)
/// that is exact; otherwise it is every process in the child's session or process group plus
/// their descendants (`tree_kind::session`), and, in runner mode (`become_reaper()`), the
/// orphans adopted from it. On the portable backend (`backend()`) it is the child's process
/// group (`tree_kind::process_group`), which a process that calls setsid leaves.
///
/// **Destruction**: unless the tree was stopped or `detach()` was called, the destructor kills
/// what remains of the tree: at once `cgroup.kill` (or, without a cgroup, SIGKILL to the main
/// process), then, in the io_context, SIGKILL to the rest of a session tree, reaping of the main
/// process and removal of the leaf cgroup once the tree is empty. It does not wait. A leaf
/// left because the io_context stopped running is removed when the process exits.
///
/// **Threads**: like every Asio I/O object, one `child` must not be used from two threads at
/// once; distinct children are independent. Waits are correct with any number of threads
/// running the io_context; the stop machinery runs on a strand of its own. A `child` must not
/// outlive its io_context.
///
/// Asynchronous operations default to the `deferred` token (docs/api.md, "Conventions").
class child {
public:
    using executor_type = boost::asio::any_io_executor;
    using wait_signature = void(error_code, exit_status);

    /// An empty handle: no process.
    child() noexcept;
    child(child&&) noexcept;
    child& operator=(child&&) noexcept;
    child(const child&) = delete;
    child& operator=(const child&) = delete;
    ~child();

    /// The executor the child's pidfd and pipes are bound to.
    executor_type get_executor() const;

    /// True unless this is an empty (default-constructed, moved-from or detached) handle.
    bool valid() const noexcept { return impl_ != nullptr; }

    /// The process id, or empty once the process has been reaped (or for an empty handle).
    std::optional<pid_t> id() const noexcept;

    /// The pidfd (off Linux: the kqueue watching its exit), or -1 for an empty handle. Owned by
    /// the child; do not close it.
    int native_handle() const noexcept;

    /// The exit status once the process has been reaped, else empty.
    std::optional<exit_status> status() const noexcept;

    /// Sends `sig` through the pidfd. Fails with `errc::not_running` once the process has exited
    /// (reaped or not); never signals a pid that was reused.
    void signal(int sig);
    void signal(int sig, error_code& ec) noexcept;

    /// Reaps the process if it has exited, without blocking. Returns the status, or empty while
    /// it runs.
    std::optional<exit_status> try_wait();
    std::optional<exit_status> try_wait(error_code& ec) noexcept;

    /// Waits asynchronously until the *process* exits and reaps it.
    ///
    /// Completion signature: `void(error_code, exit_status)`. Completes at once (through the
    /// executor, never inline) if the process was already reaped. Any number of waits may be
    /// outstanding on one child; all complete with the same status.
    ///
    /// Cancellation: terminal and partial cancellation apply the command's `on_cancel()`
    /// policy: by default the tree is stopped (stop signal, grace, SIGKILL) and the wait then
    /// completes with `operation_aborted` and the status, once the tree is empty and the main
    /// process reaped. With `cancel_policy::leave_running` only the wait ends. If the process
    /// exited before the cancellation took effect, the wait completes with its status. Total
    /// cancellation is not supported (stopping is a side effect).
    ///
    /// Throws `system_error` (`errc::not_running`) on an empty handle.
    template <typename CompletionToken = boost::asio::deferred_t>
    auto async_wait(CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken, wait_signature>(
            [](auto handler, std::shared_ptr<detail::child_impl> impl) {
                detail::initiate_child_wait(std::move(impl), std::move(handler));
            },
            token, impl_);
    }

    /// Waits like `async_wait`, for at most `timeout` (steady clock). When the deadline passes,
    /// the stop escalation runs (as `async_stop()`), and the operation completes with
    /// `errc::timed_out` and the status once the tree is empty. Cancellation as `async_wait`.
    template <typename CompletionToken = boost::asio::deferred_t>
    auto async_wait_for(std::chrono::steady_clock::duration timeout, CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken, wait_signature>(
            [](auto handler, std::shared_ptr<detail::child_impl> impl,
               std::chrono::steady_clock::duration t) {
                detail::initiate_child_wait_for(std::move(impl), t, std::move(handler));
            },
            token, impl_, timeout);
    }

    /// Stops the whole tree: the stop signal (the command's, default SIGTERM) and SIGCONT to
    /// every process, then, if anything is left after `grace`, SIGKILL to the tree. Completes
    /// with the main process's status once *no process of the tree remains* (not merely when
    /// the main process exited), the main process is reaped and its leaf cgroup removed.
    ///
    /// Completion signature: `void(error_code, exit_status)`. Several stops (or a stop and the
    /// destructor) share one escalation; a stop after the tree is gone completes at once with
    /// the status. Not cancellable: a stop always finishes, within `grace` plus the time the
    /// kernel takes to kill.
    template <typename CompletionToken = boost::asio::deferred_t>
    auto async_stop(std::chrono::steady_clock::duration grace, CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken, wait_signature>(
            [](auto handler, std::shared_ptr<detail::child_impl> impl,
               std::chrono::steady_clock::duration g) {
                detail::initiate_child_stop(std::move(impl), 0, g, false, std::move(handler));
            },
            token, impl_, grace);
    }
    /// As above, starting with `sig` instead of the command's stop signal (`drover run` stops
    /// with the signal it received).
    template <typename CompletionToken = boost::asio::deferred_t>
    auto async_stop(int sig, std::chrono::steady_clock::duration grace, CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken, wait_signature>(
            [](auto handler, std::shared_ptr<detail::child_impl> impl, int s,
               std::chrono::steady_clock::duration g) {
                detail::initiate_child_stop(std::move(impl), s, g, false, std::move(handler));
            },
            token, impl_, sig, grace);
    }
    /// As above, with the command's `stop_grace()`.
    template <typename CompletionToken = boost::asio::deferred_t>
    requires(!std::is_convertible_v<CompletionToken, std::chrono::steady_clock::duration>) auto async_stop(
        CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken, wait_signature>(
            [](auto handler, std::shared_ptr<detail::child_impl> impl) {
                detail::initiate_child_stop(std::move(impl), 0, std::nullopt, false, std::move(handler));
            },
            token, impl_);
    }
    /// SIGKILL to the whole tree at once; completes like `async_stop`.
    template <typename CompletionToken = boost::asio::deferred_t>
    auto async_kill(CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken, wait_signature>(
            [](auto handler, std::shared_ptr<detail::child_impl> impl) {
                detail::initiate_child_stop(std::move(impl), 0, std::nullopt, true, std::move(handler));
            },
            token, impl_);
    }

    /// How the tree is tracked: `tree_kind::cgroup` when the child got a leaf cgroup. On the
    /// portable backend `tree_kind::process_group`: without cgroups the kernel cannot keep a
    /// process in the tree, so one that calls setsid (or setpgid) leaves it, and a stop does
    /// not reach it.
    tree_kind tree() const noexcept;
    /// The leaf cgroup's directory, when there is one. Once the tree has ended by itself, the
    /// leaf may be kept and given to a later child of this process: the path then names that
    /// child's leaf (and `tree_pids()` of this one is empty).
    std::optional<std::string> cgroup_path() const;
    /// The pids of the tree right now (the main process included while it lives).
    std::vector<pid_t> tree_pids() const;

    /// Stops tracking the process: its tree keeps running; when the main process exits it is
    /// reaped in the background (while the io_context runs) so it leaves no zombie, and a leaf
    /// cgroup is removed once it is empty. The handle becomes empty.
    void detach();

    /// The parent's ends of the pipes configured with `stdio::pipe()`. Throw `system_error`
    /// with `errc::not_piped` if that stream is not a pipe.
    ///
    /// `std_in()` writes report EPIPE as an error once the child is gone and never raise
    /// SIGPIPE (see `pipe_writer`); close it to send EOF. `std_out()`/`std_err()` are plain
    /// non-blocking descriptors: read them with Asio or through a `line_reader`. Read every
    /// pipe you asked for, concurrently: a child blocked on a full pipe never exits.
    pipe_writer& std_in();
    boost::asio::posix::stream_descriptor& std_out();
    boost::asio::posix::stream_descriptor& std_err();

    /// The master side of the terminal configured with `stdio::pty()`: read what the child
    /// prints, write what it reads. Reading gives EIO (not EOF) once every process closed the
    /// terminal; `line_reader` treats that as the end. Throws `errc::not_piped` without a pty.
    boost::asio::posix::stream_descriptor& pty();
    /// Sets the terminal's window size; the child's foreground process group gets SIGWINCH.
    void resize_pty(unsigned short rows, unsigned short cols);
    void resize_pty(unsigned short rows, unsigned short cols, error_code& ec) noexcept;

    /// What the process (and the children it reaped) consumed, once it has been reaped.
    std::optional<resource_usage> usage() const noexcept;

    /// The command's cgroup limits (`memory_max`, `pids_max`, `cpu_max`) that are not in force
    /// for this child, each with the reason (no controller on this host, no cgroup, ...).
    /// Empty when every limit asked for applies. The library reports; tools warn.
    std::vector<unapplied_limit> unapplied_limits() const;
    /// Processes of the tree the OOM killer took (`oom_kill` of the leaf's memory.events), read
    /// when the main process is reaped. Empty while it runs, and when no memory limit was in
    /// force. A child killed by SIGKILL with a non-zero count was killed for memory.
    std::optional<std::uint64_t> oom_kills() const noexcept;

    /// Sends `sig` to every process of the tree (the main process included while it runs).
    /// Fails with `errc::not_running` once nothing of the tree is left.
    void signal_tree(int sig);
    void signal_tree(int sig, error_code& ec) noexcept;

private:
    friend child spawn(const boost::asio::any_io_executor& ex, const command& cmd,
                       spawn_failure& failure) noexcept;
    friend void attribute_orphans_to(const child& c) noexcept;
    friend struct detail::guard_access;

    explicit child(std::shared_ptr<detail::child_impl> impl) noexcept;
    /// Identifies the state for `attribute_orphans_to`.
    const void* impl_for_attribution() const noexcept { return impl_.get(); }

    std::shared_ptr<detail::child_impl> impl_;
};

/// Spawns `cmd` and returns its `child`, bound to `ex`.
///
/// Errors are synchronous and exact: a program that cannot be found, is not executable or is a
/// directory, a bad `cwd`, an unopenable stdio file — each reported with its errno, the stage
/// that failed and the program name. A failed spawn leaves no zombie and no descriptor behind.
///
/// The call costs one `clone3(CLONE_VM|CLONE_VFORK)` and the exec handshake: it does not grow
/// with the parent's memory or with the number of descriptors in the io_context, and it may be
/// called from any thread.
///
/// **Which thread is the parent**: Linux delivers the parent-death signal when the *thread*
/// that created the child exits. So spawn() creates the child on the calling thread only when
/// that thread lives as long as the process: the main thread, or a thread running the
/// io_context of `ex`. From any other thread it hands the clone to drover's own long-lived
/// spawn thread (one per process, created on first use) and waits for it. With
/// `parent_death_signal(0)` it always clones on the calling thread.
///
/// **Tree**: with `cgroup_mode::automatic` (default), the child is created directly inside a
/// fresh leaf cgroup (`clone3(CLONE_INTO_CGROUP)`) when a writable cgroup v2 hierarchy exists.
///
/// Throws `spawn_error` on failure.
child spawn(const boost::asio::any_io_executor& ex, const command& cmd);
/// As above; on failure returns an empty `child` and fills `failure`.
child spawn(const boost::asio::any_io_executor& ex, const command& cmd, spawn_failure& failure) noexcept;
/// As above; on failure returns an empty `child` and sets `ec` (stage and detail are lost:
/// prefer the `spawn_failure` overload for messages).
child spawn(const boost::asio::any_io_executor& ex, const command& cmd, error_code& ec) noexcept;

/// Overloads taking an execution context (such as an `io_context`) instead of an executor.
template <typename ExecutionContext, typename... Rest>
requires std::is_convertible_v<ExecutionContext&, boost::asio::execution_context&>
    child spawn(ExecutionContext& ctx, const command& cmd, Rest&... rest) {
    return spawn(boost::asio::any_io_executor(ctx.get_executor()), cmd, rest...);
}

} // namespace drover
