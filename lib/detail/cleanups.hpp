// drover (private): the cleanups that child destructors leave to the io_context, counted per
// execution context, so a task_group can report done only once the children its tasks dropped
// are reaped.
#pragma once

#include <functional>

#include <boost/asio/any_io_executor.hpp>

namespace drover::detail {

/// Counts one cleanup in `ex`'s execution context; the returned function ends it (call once).
std::function<void()> cleanup_started(const boost::asio::any_io_executor& ex);

/// Posts `h` to `ex` once every destructor cleanup started so far in its context has finished
/// (at once if none is under way). Cleanups started later do not delay it.
void when_cleanups_started_so_far_done(const boost::asio::any_io_executor& ex, std::function<void()> h);

} // namespace drover::detail
