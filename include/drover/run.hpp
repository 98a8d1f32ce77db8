// drover: run a command to completion and capture its output, bounded.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "drover/command.hpp"
#include "drover/error.hpp"
#include "drover/exit_status.hpp"
#include "drover/resource_usage.hpp"

namespace drover {

/// What capture does when a stream passes `run_options::max_output`.
enum class overflow_policy : unsigned char {
    truncate, ///< keep the head and the tail, count the middle, keep draining (default)
    kill,     ///< the same, and SIGKILL the tree at once (like Node's maxBuffer)
};

struct run_options {
    /// Bytes kept per stream: the first half and the last half of the output; the middle is
    /// read, counted and discarded, so the child is never blocked and memory stays bounded.
    std::size_t max_output = 16 * 1024 * 1024;
    overflow_policy on_overflow = overflow_policy::truncate;
    /// Send stderr into the stdout capture (like `2>&1`), in the order the child wrote it.
    bool merge_stderr = false;
    /// Capture stderr (default). When false, and not merged, stderr is what the command says.
    bool capture_stderr = true;
    /// Written to the child's stdin, which is then closed. Without it, stdin is what the
    /// command says (default: inherited, as with Python's `subprocess.run`; give the command
    /// `std_in(stdio::null())` for Go's default).
    std::optional<std::string> input;
    /// Stop the tree (stop signal, the command's grace, SIGKILL) when the run takes longer.
    std::optional<std::chrono::steady_clock::duration> timeout;
    /// After the main process exits, how long the pipes may still deliver output (processes
    /// it started may hold them open). Then they are closed and the run completes (Go's
    /// `Cmd.WaitDelay`).
    std::chrono::steady_clock::duration drain_grace = std::chrono::seconds(1);
};

/// One captured stream: all of it, or its head and tail with the middle counted.
struct captured_output {
    std::string head;              ///< the first bytes; everything, when nothing was dropped
    std::string tail;              ///< the last bytes, when the middle was dropped; else empty
    std::uint64_t total_bytes = 0; ///< everything the child wrote to the stream

    std::uint64_t dropped_bytes() const noexcept { return total_bytes - head.size() - tail.size(); }
    bool truncated() const noexcept { return dropped_bytes() != 0; }
    /// head + "\n[drover: N bytes truncated]\n" + tail (or just the head when complete).
    std::string text() const;
};

struct run_result {
    pid_t pid = -1;
    exit_status status = exit_status::unknown();
    captured_output out;
    captured_output err;                            ///< empty when stderr was merged or not captured
    std::chrono::steady_clock::duration duration{}; ///< spawn to the main process's exit
    std::optional<resource_usage> usage;
    bool timed_out = false;             ///< the timeout expired and the tree was stopped
    bool output_limit_exceeded = false; ///< a stream passed max_output (killed, with `kill`)
    bool drain_timed_out = false;       ///< pipes were still open `drain_grace` after the exit
    bool killed_leftovers = false;      ///< processes of the tree outlived the main one; killed
    bool input_broken = false;          ///< the child stopped reading stdin before all was written
};

using run_signature = void(std::exception_ptr, run_result);
using capture_signature = void(error_code, run_result);

class child;

namespace detail {
// Initiate async_run and async_capture with a type-erased handler (defined in libdrover).
void initiate_run(const boost::asio::any_io_executor& ex, command cmd, run_options opts,
                  boost::asio::any_completion_handler<run_signature> handler);
void initiate_capture(child& c, run_options opts,
                      boost::asio::any_completion_handler<capture_signature> handler);
} // namespace detail

/// Spawns `cmd`, feeds `input`, captures stdout and stderr concurrently (no pipe can fill up
/// and block the child), waits for the main process to exit, gives the pipes `drain_grace`,
/// then stops whatever is left of the tree (the command's stop signal and grace, then
/// SIGKILL) and completes once it is gone.
///
/// Completion signature: `void(std::exception_ptr, run_result)`. A failed spawn is a
/// `spawn_error` (program, stage, errno); a non-zero exit, a timeout or an overflow are not
/// errors: they are in the result. Cancellation (terminal or partial) stops the tree as
/// `child::async_wait` does and then completes with `operation_aborted`.
/// Default token: `use_awaitable` (see docs/api.md, "Conventions").
///
/// ```cpp
/// drover::command git("git", {"status"}); // named first: g++ 12 rejects this list inside co_await
/// auto r = co_await drover::async_run(ex, std::move(git));
/// if (r.status.success()) use(r.out.text());
/// ```
template <typename CompletionToken = boost::asio::use_awaitable_t<>>
auto async_run(const boost::asio::any_io_executor& ex, command cmd, run_options opts = {},
               CompletionToken&& token = {}) {
    return boost::asio::async_initiate<CompletionToken, run_signature>(
        [](auto handler, boost::asio::any_io_executor e, command c, run_options o) {
            detail::initiate_run(e, std::move(c), std::move(o), std::move(handler));
        },
        token, ex, std::move(cmd), std::move(opts));
}

/// As `async_run`, for a child you spawned yourself (to keep signalling it, say): its stdout
/// must be `stdio::pipe()`, and so must its stderr unless `capture_stderr` is false (set it
/// false when you spawned with `stdio::to_stdout()` or left stderr inherited), and its stdin
/// when `input` is given; otherwise the operation fails with `errc::not_piped`.
/// `merge_stderr` is ignored. `duration` counts from the call. The child must outlive the
/// operation.
///
/// Completion signature: `void(error_code, run_result)` (it spawns nothing, so no failure
/// carries more than a code; see docs/api.md, "Conventions"): `errc::not_running`,
/// `errc::not_piped`, `operation_aborted` once a cancellation stopped the tree, ENOMEM; the
/// result is empty then.
template <typename CompletionToken = boost::asio::deferred_t>
auto async_capture(child& c, run_options opts, CompletionToken&& token = {}) {
    return boost::asio::async_initiate<CompletionToken, capture_signature>(
        [](auto handler, child* cp, run_options o) {
            detail::initiate_capture(*cp, std::move(o), std::move(handler));
        },
        token, &c, std::move(opts));
}

} // namespace drover
