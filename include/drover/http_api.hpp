// drover::http_api: a supervisor's HTTP API, its Prometheus metrics, its probes and its live
// dashboard, served from the supervisor's own io_context. `drover up` serves it on its control
// socket and with `--http` on TCP; an application embedding a `drover::supervisor` serves it on
// its own listener, or under a prefix of its own HTTP server (`serve(socket, request)`).
//
// Linked as libdrover-http (meson: dependency('drover-http')): Boost.Beast and Boost.JSON stay in
// its sources; this header names only Asio sockets and plain types. docs/api.md, "HTTP API",
// lists the routes.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include "drover/supervisor.hpp"

namespace drover {

/// A request the application's own HTTP server already read, handed over with its connection
/// (`http_api::serve(socket, request)`).
struct http_request {
    std::string method;    ///< "GET", "POST"...
    std::string target;    ///< as sent: "/drover/api/v1/services?x=1"
    unsigned version = 11; ///< 10 or 11
    bool keep_alive = true;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;

    /// From a Boost.Beast request (`http::request<http::string_body>`), or anything with the
    /// same members: a template, so this header needs no Beast.
    template <typename Message>
    static http_request from(const Message& m) {
        http_request r;
        r.method = std::string(m.method_string());
        r.target = std::string(m.target());
        r.version = m.version();
        r.keep_alive = m.keep_alive();
        for (const auto& f : m) r.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
        r.body = std::string(m.body());
        return r;
    }
};

/// What an `http_api` serves, and its bounds.
struct http_api_options {
    /// Every route lives under it: "" (the default) or a path like "/drover" (no trailing '/').
    std::string prefix;
    /// A bearer token every TCP request needs, but the probes (/livez, /readyz) and the
    /// dashboard's static files. Empty: none, and then `listen()` accepts loopback addresses
    /// only, and every TCP request must name a loopback host (Host header: no DNS rebinding)
    /// and a POST may not come from another origin (Origin header). Compared in constant time.
    std::string token;
    /// Reloads the configuration (POST /v1/reload); calls its argument once, with a message
    /// when the new configuration was refused, or empty once it was applied. Unset: 501.
    std::function<void(std::function<void(std::optional<std::string> error)>)> reload;
    /// Starts a shutdown (POST /v1/shutdown), after the 202 answer was written. Unset: 501.
    std::function<void()> shutdown;
    /// Serve the dashboard at "/" (prefix + "/").
    bool dashboard = true;
    std::size_t max_connections = 256; ///< TCP; the unix socket has its own 64
    std::size_t max_streams = 32;      ///< event and log streams open at once
    std::size_t max_header = 16 * 1024;
    std::size_t max_body = 64 * 1024;
    /// A request must arrive whole within it, and every write of an answer or a stream finish.
    std::chrono::seconds io_timeout{30};
};

/// Serves a supervisor's HTTP API. One thread: every member function must be called from the
/// thread running the supervisor's executor, and the supervisor must outlive this object;
/// connections still open after `close()` finish without touching it again. Destruction is
/// `close()`.
class http_api {
public:
    http_api(boost::asio::any_io_executor ex, supervisor& sup, http_api_options options = {});
    http_api(const http_api&) = delete;
    http_api& operator=(const http_api&) = delete;
    ~http_api();

    /// Listens on TCP at `address`: "HOST:PORT", "[IPV6]:PORT" or ":PORT" (all addresses);
    /// HOST an IP address or "localhost"; port 0 picks a free one (see `local_address()`).
    /// Without a token only loopback addresses are accepted. Throws `std::runtime_error` naming
    /// the address for a bad or refused address, or `std::system_error` when it cannot bind.
    /// May be called for several addresses.
    void listen(std::string_view address);
    /// "127.0.0.1:9090": where the last `listen()` listens (the port resolved). Empty before.
    std::string local_address() const;

    /// Serves a TCP connection the application accepted, until it closes.
    void serve(boost::asio::ip::tcp::socket socket);
    /// The same, for a connection whose first request the application's own server read (and
    /// routed here, usually by the prefix). `buffered`: bytes it read past that request.
    void serve(boost::asio::ip::tcp::socket socket, http_request first, std::string buffered = {});
    /// Serves a unix socket connection: no token and no Host check; the peer must be this
    /// process's effective uid or root (SO_PEERCRED), else 403.
    void serve(boost::asio::local::stream_protocol::socket socket);

    /// Connections open now (TCP and unix).
    std::size_t connections() const noexcept;

    /// Stops listening, ends the open streams (each with its last chunk, within 5 s) and closes
    /// every connection. Idempotent.
    void close();

private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

/// Whether `a` and `b` are equal, in a time that depends on their lengths only (not on where
/// they differ): for secrets such as a bearer token.
bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

} // namespace drover
