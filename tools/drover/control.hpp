// drover (the program): the control API of `drover up`: HTTP/1.1 + JSON on a unix socket, served
// in the supervisor's io_context. `drover ctl` is its client (ctl.hpp). Beast and Boost.JSON stay
// in control.cpp: this header exposes plain types.
//
// The API (version 1; every path starts with /v1, so a later version can live beside it):
//
//   GET  /v1/services                 200 {"services": [status...]}, in the supervisor's order
//   GET  /v1/services/NAME            200 status; 404 {"error": {"code": "unknown_service", ...}}
//   POST /v1/services/NAME/start      answers when the operation completed: 200 {"ok": true},
//   POST /v1/services/NAME/stop         or an error object (404 unknown_service, 409 service_failed
//   POST /v1/services/NAME/restart      or service_in_use, 503 shutting_down, 500 otherwise)
//   GET  /v1/services/NAME/logs?n=N   200 text/plain: the last N kept lines (all when n is absent),
//                                     each escaped with drover::escape, one per line.
//        &format=json                   application/x-ndjson instead: one object per line,
//                                     {"time", "stream": "stdout"|"stderr", "text", "dropped"?}
//        &follow=1                      after the kept lines, new lines as the service prints them
//                                     (chunked), until the client disconnects or close()
//   GET  /v1/events                   application/x-ndjson, chunked: one object per supervisor event
//                                     (type, service, time, and state, text, exit, delay_ms,
//                                     stream, ok, count as the type has them) until close()
//   POST /v1/reload                   the reload hook: 200 {"ok": true}, 422 with its message,
//                                     501 when drover up gave no hook
//   POST /v1/shutdown                 202 {"ok": true}, then the shutdown hook runs
//
// A status object: {"name", "state", "reason", "pid" (or null), "since" (RFC 3339, UTC),
// "uptime_ms" (the main process's age while it runs, else null), "restarts", "last_exit" (text, or
// null), "last_exit_code", "last_exit_signal" (or null), "ready", "health", "notify_status",
// "cpu_ms", "rss_bytes" (of the main process, from /proc; null when unknown)}.
//
// Every error is {"error": {"code": "...", "message": "..."}}: 400 bad_request (malformed
// request, bad query value), 403 forbidden (peer uid), 404 not_found / unknown_service, 405
// method_not_allowed (with Allow), 413 too_large (body over 64 KiB), 503 busy (more than 64
// connections). A request must arrive whole within 30 s of the previous one (or of the
// connection), and a streamed write must finish within 30 s, or the connection is closed.
// Text that comes from children (reasons, output, STATUS=) is made valid UTF-8 for JSON.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/any_io_executor.hpp>

#include "drover/supervisor.hpp"

namespace drover::up {

/// What the control API asks of `drover up` beyond the supervisor.
struct control_hooks {
    /// Reloads the configuration; calls its argument once, with an error message when the new
    /// configuration was refused (nothing changed then), or empty once it was applied.
    std::function<void(std::function<void(std::optional<std::string> error)>)> reload;
    /// Starts the shutdown of `drover up`; called after the 202 answer was written. It may
    /// call `close()` (and destroy the server) from inside.
    std::function<void()> shutdown;
};

/// Serves the control API on a unix socket, in the supervisor's executor (one thread: every
/// member function must be called from the thread running it).
///
/// Each accepted connection is checked with SO_PEERCRED: a peer whose uid is neither
/// `geteuid()` nor 0 gets 403 and the connection is closed. At most 64 connections are open at
/// once; more get 503 and are closed.
///
/// Destruction is `close()`. The supervisor must outlive the server; connections still open
/// after `close()` finish on their own without touching it again.
class control_server {
public:
    control_server(boost::asio::any_io_executor ex, drover::supervisor& sup, control_hooks hooks);
    control_server(const control_server&) = delete;
    control_server& operator=(const control_server&) = delete;
    ~control_server();

    /// Creates the socket at `path` (mode 0600; missing parent directories are created 0700)
    /// and starts accepting. An existing file at `path` is replaced only if it is a socket
    /// nobody answers on (ECONNREFUSED: a drover up that died); if something answers, throws
    /// `std::runtime_error` ("another drover up is listening on PATH"). Throws
    /// `std::system_error` for a system failure and `std::runtime_error` for a path longer
    /// than a unix socket allows (107 bytes), each naming the path. Once only.
    ///
    /// The mode comes from the process umask, set to 0177 around bind(): another thread
    /// creating files at that moment would get that umask too.
    void listen(const std::string& path);

    /// The path given to `listen()` (empty before).
    const std::string& path() const noexcept;

    /// Stops accepting, ends the open streams (events and followed logs end with their last
    /// chunk) and closes every connection, and removes the socket file if it is still the one
    /// this server created. Idempotent.
    void close();

private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

/// The socket `drover up` and `drover ctl` use for the configuration file `config_path`, when
/// none is given:
/// - with XDG_RUNTIME_DIR set: `$XDG_RUNTIME_DIR/drover/<name>.sock`;
/// - else as root: `/run/drover/<name>.sock`;
/// - else `<config dir>/.drover.sock`.
/// `<name>` is the last component of the configuration's directory (letters, digits, '-', '_'
/// and '.' kept, anything else '_', at most 32 bytes), a '-' and 16 hex digits of a hash
/// (64-bit FNV-1a) of that directory's absolute path with symlinks resolved: readable and
/// distinct per project. When that path would exceed the 107 bytes a unix socket path may
/// have, `<name>` is the hash alone (and if even that is too long, `listen()` says so). Nothing
/// is created or checked here.
std::string default_socket_path(const std::string& config_path);

} // namespace drover::up
