// drover (the program): `drover ctl`, the client of the control API of a running `drover up`
// (control.hpp). Synchronous: ctl is a short-lived program, one request after another.
//
// Exit status of `drover ctl`:
//   0  done
//   1  drover up answered with an error (its message is printed), or broke off the connection
//   2  usage: an unknown verb, missing or extra names, an option the verb does not take
//   3  nobody answers on the socket: "no drover up is listening on SOCKET (start one with
//      `drover up`, or give --socket)", or the socket cannot be used (permission)
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spdlog {
class logger;
}

namespace drover::ctl {

constexpr int exit_ok = 0;
constexpr int exit_server_error = 1;
constexpr int exit_usage = 2;
constexpr int exit_unreachable = 3;

/// One `drover ctl` invocation, as the command line gave it.
struct ctl_request {
    std::string socket;             ///< the control socket (default_socket_path when none given)
    std::string verb;               ///< status, start, stop, restart, logs, reload or shutdown
    std::vector<std::string> names; ///< status: some (or all), start/stop/restart: 1+, logs: 1
    bool json = false;   ///< status, start/stop/restart, reload: print the API's JSON; logs: JSON lines
    bool follow = false; ///< logs -f: keep printing new lines until drover up ends
    std::optional<std::size_t> lines; ///< logs -n N: the last N lines (all kept lines when empty)
    bool watch = false;               ///< status --watch: a new table on each change
    bool terminal = false;            ///< `out` is a terminal: --watch redraws in place (clear + home)
    std::size_t max_updates = 0;      ///< --watch ends after this many tables (0: when drover up ends)
};

/// Runs `req` against the drover up listening on `req.socket`; the exit status above. Results go
/// to `out`, problems to `log` (error level), each once.
///
/// - status: an aligned table NAME STATE PID UPTIME RESTARTS LAST-EXIT READY HEALTH CPU RSS, or
///   with `json` the API's {"services": [...]}. With `watch`, a table on each status change
///   (events of /v1/events, output lines excepted), coalesced to at most 10 a second; on a
///   terminal the table is redrawn in place and also once a second (uptimes move); elsewhere a
///   table is printed only when it differs from the last one, tables separated by a blank line.
/// - start/stop/restart: one request per name, in order, each waiting for the operation; an
///   error for one name is reported and the others still go; nothing is printed on success
///   (`json`: {"ok": true} per name).
/// - logs: the lines as drover up keeps them (escaped), then with `follow` new ones as they come.
/// - reload, shutdown: nothing printed on success.
int ctl_main(const ctl_request& req, std::ostream& out, spdlog::logger& log);

/// One answer of drover up, whole.
struct ctl_reply {
    int status = 0;           ///< the HTTP status
    std::string content_type; ///< as sent
    std::string body;
};

/// One request on a new connection to `socket` (method "GET" or "POST", target "/v1/..."): the
/// building block of ctl_main, for tests and scripts. Throws `std::system_error` when the
/// socket cannot be reached or the connection breaks.
ctl_reply ctl_call(const std::string& socket, std::string_view method, std::string_view target);

/// "7s", "3m12s", "2h05m", "3d04h": whole seconds, two units at most (uptimes).
std::string human_duration(double seconds);
/// "0.42s" below a minute, else as human_duration (CPU times).
std::string human_cpu(double seconds);
/// "900B", "512.0KiB", "12.3MiB", "1.5GiB".
std::string human_bytes(std::uint64_t bytes);

} // namespace drover::ctl
