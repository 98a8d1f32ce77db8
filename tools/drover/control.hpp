// drover (the program): the control API of `drover up`: drover::http_api (include/drover/
// http_api.hpp, docs/api.md "HTTP API") served on a unix socket for `drover ctl`, and with
// `--http` on TCP too. `drover ctl` is its client (ctl.hpp).
//
// On the unix socket every peer must be the user running drover up or root (SO_PEERCRED); at
// most 64 connections are open at once (more get 503). On TCP a token, when given, is needed
// by everything but the probes and the dashboard's files.
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

/// Serves the control API on a unix socket (and on TCP), in the supervisor's executor (one
/// thread: every member function must be called from the thread running it).
///
/// Destruction is `close()`. The supervisor must outlive the server; connections still open
/// after `close()` finish on their own without touching it again.
class control_server {
public:
    /// `token`: the bearer token TCP clients must send (`listen_http`); empty: none, and then
    /// only loopback addresses may be listened on.
    control_server(boost::asio::any_io_executor ex, drover::supervisor& sup, control_hooks hooks,
                   std::string token = {});
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

    /// Serves the same API on TCP at `address` (http_api::listen: "127.0.0.1:9090", port 0 for
    /// any free one). Throws `std::runtime_error` or `std::system_error` naming the address.
    void listen_http(const std::string& address);
    /// Where `listen_http()` listens, the port resolved ("127.0.0.1:40123"); empty before.
    std::string http_address() const;

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
