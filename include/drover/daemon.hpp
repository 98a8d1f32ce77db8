// drover: detaching the calling program as a daemon (the classic double fork, done carefully).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>

#include "drover/error.hpp"

namespace drover {

struct daemon_options {
    /// Created if missing, locked with flock(LOCK_EX|LOCK_NB) for the daemon's whole life, and
    /// holding the daemon's pid. A pidfile another live daemon holds makes daemonize fail
    /// ("already running"), with no process left behind. Empty: no pidfile.
    std::filesystem::path pidfile;
    /// The daemon's working directory (default "/": it must not keep a mount busy).
    std::filesystem::path working_directory = "/";
    /// The daemon's umask (default 022; empty: keep the caller's).
    std::optional<mode_t> umask = 022;
    /// Where fds 0-2 go: /dev/null (default), or, for 1 and 2, this file (appended).
    std::filesystem::path output;
};

/// Detaches the calling process: it returns only in the daemon, a grandchild of the caller in a
/// session of its own, with no controlling terminal and no way to get one. The original
/// process waits until the daemon reports that every step worked, then exits 0; if a step
/// failed, the original process gets the daemon's error, prints nothing itself, and
/// `daemonize` throws it there (a `daemon_error`), so the caller can report it while it still
/// has its terminal. The intermediate process always `_exit`s.
///
/// The steps, in order: fork (the parent stays to hear the outcome); setsid in the child (it is
/// not a process group leader, so setsid succeeds: a new session without a terminal); fork
/// again, the first child exiting (the daemon is no session leader, so opening a terminal can
/// never make it its controlling terminal); chdir; umask; stdio onto /dev/null (or `output`);
/// the pidfile created, locked and written last, so a pidfile with a pid in it always names a
/// daemon that got that far. Every descriptor but 0-2, the pidfile and the report pipe is left
/// as the caller had it (close what you do not need before).
///
/// Call it early, before any thread exists and before an io_context is created: fork copies
/// only the calling thread (with more than one thread it throws, EBUSY, and forks nothing).
/// Relative paths in the options are taken relative to the caller's working directory. The
/// signal mask and dispositions are kept as the caller set them. If the daemon dies before it
/// reports (killed), the starter throws ECHILD ("died before it reported").
void daemonize(const daemon_options& options = {});

/// Thrown by `daemonize` in the original process when the daemon could not be set up.
class daemon_error : public boost::system::system_error {
public:
    /// `what()` is "daemonize: STEP: strerror" (without Boost's " [system:N]" suffix).
    daemon_error(error_code ec, const std::string& what)
        : boost::system::system_error(ec, what), text_(what + ": " + ec.message()) {}
    const char* what() const noexcept override { return text_.c_str(); }

private:
    std::string text_;
};

} // namespace drover
