// drover: a running child process, owned through its pidfd.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <type_traits>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/readable_pipe.hpp>
#include <boost/asio/writable_pipe.hpp>

#include "drover/command.hpp"
#include "drover/error.hpp"
#include "drover/exit_status.hpp"

namespace drover {

namespace detail {
struct child_impl;
}

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
/// **Destruction**: if the process has not been reaped and `detach()` was not called, the
/// destructor sends SIGKILL through the pidfd and leaves a reaper in the io_context that reaps
/// it when it dies, so no zombie is left while the io_context runs. It never blocks.
///
/// **Threads**: like every Asio I/O object, one `child` must not be used from two threads at
/// once; distinct children are independent. The io_context may be run by any number of threads.
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

    /// The pidfd, or -1 for an empty handle. Owned by the child; do not close it.
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
    /// Cancellation: terminal, partial and total cancellation end the *wait* with
    /// `operation_aborted` and leave the process running (unless it has exited meanwhile, in
    /// which case the wait completes with its status). Stopping on cancellation is a separate,
    /// explicit operation.
    ///
    /// Throws `system_error` (`errc::not_running`) on an empty handle.
    template <typename CompletionToken>
    auto async_wait(CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, wait_signature>(
            [](auto handler, std::shared_ptr<detail::child_impl> impl) {
                async_wait_impl(std::move(impl), std::move(handler));
            },
            token, impl_);
    }

    /// Stops tracking the process: it keeps running; when it exits it is reaped in the
    /// background (while the io_context runs) so it leaves no zombie. The handle becomes empty.
    void detach();

    /// The parent's ends of the pipes configured with `stdio::pipe()`. Throw `system_error`
    /// with `errc::not_piped` if that stream is not a pipe.
    boost::asio::writable_pipe& std_in();
    boost::asio::readable_pipe& std_out();
    boost::asio::readable_pipe& std_err();

    /// Internal: spawn() builds children through this.
    explicit child(std::shared_ptr<detail::child_impl> impl) noexcept;

private:
    static void async_wait_impl(std::shared_ptr<detail::child_impl> impl,
                                boost::asio::any_completion_handler<wait_signature> handler);

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
/// Throws `spawn_error` on failure.
child spawn(const boost::asio::any_io_executor& ex, const command& cmd);
/// As above; on failure returns an empty `child` and fills `failure`.
child spawn(const boost::asio::any_io_executor& ex, const command& cmd,
            spawn_failure& failure) noexcept;
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
