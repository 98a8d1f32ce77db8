// drover (private): the long-lived thread spawns run on when the caller's thread may not
// outlive its children (PR_SET_PDEATHSIG follows the spawning *thread*: reliability.md C3).
#pragma once

#include <functional>

#include <boost/asio/any_io_executor.hpp>

namespace drover::detail {

/// True if the calling thread is one that lives as long as the children it would spawn: the
/// process's main thread, or a thread running the io_context that `ex` belongs to.
bool on_long_lived_thread(const boost::asio::any_io_executor& ex) noexcept;

/// Runs `fn` on drover's spawn thread (started on first use, never stopped, all signals
/// blocked) and returns when it is done. `fn` must not throw.
void run_on_spawn_thread(const std::function<void()>& fn);

} // namespace drover::detail
