// drover: run many commands, at most K at once, results in order (xargs -P, GNU parallel).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <vector>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>

#include "drover/command.hpp"
#include "drover/error.hpp"
#include "drover/run.hpp"
#include "drover/task_group.hpp"

namespace drover {

struct run_all_options {
    /// At most this many commands run at once (0: all at once).
    std::size_t max_concurrency = 8;
    /// Per command: stop its tree after this long (`run_result::timed_out`).
    std::optional<std::chrono::steady_clock::duration> timeout;
    /// Capture, input and drain settings for every command (its `timeout` is replaced by the
    /// one above when that is set).
    run_options run;
    /// The first command that cannot be spawned cancels the rest (a non-zero exit is a
    /// result, not a failure).
    bool fail_fast = false;
};

using run_all_signature = void(error_code, std::vector<task_result<run_result>>);

namespace detail {
// Initiates async_run_all with a type-erased handler (defined in libdrover).
void initiate_run_all(const boost::asio::any_io_executor& ex, std::vector<command> commands,
                      run_all_options opts, boost::asio::any_completion_handler<run_all_signature> handler);
} // namespace detail

/// Runs every command through `async_run` in a `task_group` with `max_concurrency`, and
/// completes with one `task_result<run_result>` per command, *in the order of `commands`*:
/// the result, or the `spawn_error` (or other exception) of that command. The error code is
/// `operation_aborted` when the whole operation was cancelled; then every command still
/// running was stopped and reaped, and the results hold what finished (the others carry an
/// `operation_aborted` error).
template <typename CompletionToken = boost::asio::deferred_t>
auto async_run_all(const boost::asio::any_io_executor& ex, std::vector<command> commands,
                   run_all_options opts = {}, CompletionToken&& token = {}) {
    return boost::asio::async_initiate<CompletionToken, run_all_signature>(
        [](auto handler, boost::asio::any_io_executor e, std::vector<command> c, run_all_options o) {
            detail::initiate_run_all(e, std::move(c), std::move(o), std::move(handler));
        },
        token, ex, std::move(commands), std::move(opts));
}

} // namespace drover
