// drover (private): the cleanups that child destructors leave to the io_context, counted per
// execution context, so a task_group can report done only once the children its tasks dropped
// are reaped; and finished at once, blocking, when the context is destroyed before it ran them.
#pragma once

#include <chrono>
#include <functional>

#include <boost/asio/any_io_executor.hpp>

namespace drover::detail {

/// Finishes a cleanup synchronously, giving up at the deadline (must not throw).
using finish_now_fn = std::function<void(std::chrono::steady_clock::time_point deadline)>;

/// Counts one cleanup in `ex`'s execution context; the returned function ends it (call once).
/// If the context is destroyed (or shut down) while the cleanup is still under way, its
/// handlers will never run: `finish_now` is then called from the context's shutdown, with a
/// deadline a few seconds away, so a dropped child is reaped and its cgroup removed anyway.
std::function<void()> cleanup_started(const boost::asio::any_io_executor& ex, finish_now_fn finish_now = {});

/// Makes sure `ex`'s context has the cleanup service before the first child exists there, so
/// that the service is never first created while the context is being destroyed (too late to
/// be shut down, so too late to finish anything).
void prepare_cleanups(const boost::asio::any_io_executor& ex);

/// How long the shutdown of an execution context may spend on the cleanups it never ran.
inline constexpr std::chrono::seconds shutdown_cleanup_bound{5};

/// Posts `h` to `ex` once every destructor cleanup started so far in its context has finished
/// (at once if none is under way). Cleanups started later do not delay it.
void when_cleanups_started_so_far_done(const boost::asio::any_io_executor& ex, std::function<void()> h);

} // namespace drover::detail
