// drover (private): the state behind a `drover::child`, shared with its pending operations.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/readable_pipe.hpp>
#include <boost/asio/writable_pipe.hpp>

#include "drover/error.hpp"
#include "drover/exit_status.hpp"

namespace drover::detail {

struct child_impl {
    explicit child_impl(const boost::asio::any_io_executor& ex) : pidfd(ex) {}

    boost::asio::posix::stream_descriptor pidfd; ///< owns the pidfd; readable once it exits
    pid_t pid = -1;                              ///< -1 once reaped
    std::optional<exit_status> status;           ///< set once, when reaped
    std::string program;
    std::optional<boost::asio::writable_pipe> in;
    std::optional<boost::asio::readable_pipe> out;
    std::optional<boost::asio::readable_pipe> err;
};

/// Reaps the child if it has exited (waitid(P_PIDFD, WEXITED|WNOHANG|__WALL)); returns its
/// status, or empty while it runs. On ECHILD (reaped by someone else) the status comes from
/// PIDFD_INFO_EXIT where the kernel keeps it, else it is `unknown`.
std::optional<exit_status> try_reap(child_impl& c, error_code& ec) noexcept;

/// True if the pidfd reports the process as exited (poll, no waiting).
bool pidfd_ready(child_impl& c) noexcept;

/// Keeps waiting in the io_context until the child exits, then reaps it.
void reap_in_background(std::shared_ptr<child_impl> c);

} // namespace drover::detail
