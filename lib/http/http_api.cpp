// drover::http_api (see include/drover/http_api.hpp and docs/api.md, "HTTP API").
#include "drover/http_api.hpp"
#include "static_files.hpp"

#include <dirent.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <deque>
#include <map>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>

#include "drover/escape.hpp"
#include "drover/proc_info.hpp"

namespace drover {

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using gsocket = asio::generic::stream_protocol::socket;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

/// The unix control socket's own bound (drover ctl and scripts; no idle eviction there).
constexpr std::size_t max_unix_connections = 64;
/// After close(), how long a stream may take to write its last chunk.
constexpr auto close_grace = 5s;
/// How long the first request of a connection may take to arrive whole.
constexpr auto first_request_timeout = 10s;
/// A stream whose client reads slower than events come holds at most this much; past it, events
/// are dropped (and counted in a "lost" event) rather than slowing anything.
constexpr std::size_t max_stream_backlog = 1024 * 1024;

// ---- JSON of statuses and events ---------------------------------------------------------------

std::string rfc3339(wall_clock::time_point t) {
    const auto ms = std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
    const auto secs = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    const auto milli = static_cast<int>(ms - static_cast<long long>(secs) * 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                       tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, milli);
}

std::int64_t millis(std::chrono::nanoseconds d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

std::optional<proc_info> info_of(const service_status& st) {
    if (!st.pid) return std::nullopt;
    // The supervisor holds the main process's pidfd and has not reaped it while it reports the
    // pid, so the pid names that process; a read failing (it just exited) leaves nothing.
    error_code ec;
    return read_proc_info(*st.pid, ec);
}

// Text a child may have shaped (reasons quote output, STATUS=, output lines) goes through
// to_valid_utf8: JSON strings are Unicode.

json::object status_json(const service_status& st) {
    json::object o;
    o["name"] = st.name;
    o["state"] = to_string(st.state);
    o["reason"] = to_valid_utf8(st.reason);
    o["pid"] = st.pid ? json::value(*st.pid) : json::value(nullptr);
    o["since"] = rfc3339(st.since);
    const auto info = info_of(st);
    // Whole milliseconds: integers read the same in every JSON library.
    o["uptime_ms"] = info ? json::value(millis(info->age)) : json::value(nullptr);
    o["restarts"] = st.restarts;
    if (st.last_status) {
        o["last_exit"] = st.last_status->to_string();
        o["last_exit_code"] = st.last_status->is_exited() ? json::value(st.last_status->code()) : nullptr;
        o["last_exit_signal"] =
            st.last_status->is_signaled() ? json::value(st.last_status->signal()) : nullptr;
    } else {
        o["last_exit"] = nullptr;
        o["last_exit_code"] = nullptr;
        o["last_exit_signal"] = nullptr;
    }
    o["ready"] = st.ready;
    o["health"] = to_string(st.health);
    o["notify_status"] = to_valid_utf8(st.notify_status);
    o["cpu_ms"] = info ? json::value(millis(info->user_cpu + info->system_cpu)) : json::value(nullptr);
    o["rss_bytes"] = info ? json::value(info->rss_bytes) : json::value(nullptr);
    return o;
}

json::object services_json(const supervisor& sup) {
    json::array list;
    for (const auto& st : sup.status()) list.push_back(status_json(st));
    json::object o;
    o["services"] = std::move(list);
    return o;
}

std::string_view kind_name(supervisor_event::kind k) {
    using kind = supervisor_event::kind;
    switch (k) {
    case kind::state:
        return "state";
    case kind::exited:
        return "exited";
    case kind::restart:
        return "restart";
    case kind::probe:
        return "probe";
    case kind::notify:
        return "notify";
    case kind::output:
        return "output";
    case kind::lost:
        return "lost";
    }
    return "unknown";
}

std::string_view stream_name(int stream) {
    return stream == 2 ? "stderr" : "stdout";
}

json::object event_json(const supervisor_event& e, bool with_escaped) {
    using kind = supervisor_event::kind;
    json::object o;
    o["type"] = kind_name(e.type);
    o["service"] = e.service;
    o["time"] = rfc3339(e.time);
    switch (e.type) {
    case kind::state:
        o["state"] = to_string(e.state);
        o["text"] = to_valid_utf8(e.text);
        break;
    case kind::exited:
        o["exit"] = e.status ? json::value(e.status->to_string()) : json::value(nullptr);
        o["text"] = to_valid_utf8(e.text);
        break;
    case kind::restart:
        o["delay_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(e.delay).count();
        o["text"] = to_valid_utf8(e.text);
        break;
    case kind::probe:
    case kind::notify:
        o["ok"] = e.ok;
        o["text"] = to_valid_utf8(e.text);
        break;
    case kind::output:
        o["stream"] = stream_name(e.stream);
        o["text"] = to_valid_utf8(e.text);
        if (with_escaped) o["escaped"] = escape(e.text);
        break;
    case kind::lost:
        o["count"] = e.count;
        break;
    }
    return o;
}

json::object line_json(wall_clock::time_point time, int stream, const std::string& text,
                       std::uint64_t dropped, bool with_escaped) {
    json::object o;
    o["time"] = rfc3339(time);
    o["stream"] = stream_name(stream);
    o["text"] = to_valid_utf8(text);
    if (with_escaped) o["escaped"] = escape(text);
    if (dropped != 0) o["dropped"] = dropped;
    return o;
}

json::value error_json(std::string_view code, std::string_view message) {
    json::object e;
    e["code"] = code;
    e["message"] = to_valid_utf8(message);
    json::object o;
    o["error"] = std::move(e);
    return o;
}

std::string to_text(const json::value& v) {
    return harden_json(json::serialize(v));
}

std::string sse(std::string_view event, const json::value& data) {
    // serialize() writes no newline, so the data is one "data:" line.
    return fmt::format("event: {}\ndata: {}\n\n", event, to_text(data));
}

// ---- names -------------------------------------------------------------------------------------

/// Edit distance with adjacent transpositions (optimal string alignment).
std::size_t distance(std::string_view a, std::string_view b) {
    std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
    for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
    for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i)
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    return d[a.size()][b.size()];
}

std::string unknown_service_message(const supervisor& sup, std::string_view name) {
    std::string best;
    std::size_t best_d = SIZE_MAX;
    // Names a client sends can be anything: compare only reasonably short ones.
    if (name.size() <= 256) {
        for (const auto& st : sup.status()) {
            const std::size_t d = distance(name, st.name);
            const std::size_t limit = std::max<std::size_t>(2, name.size() / 3);
            if (d <= limit && d < std::max(name.size(), st.name.size()) && d < best_d) {
                best_d = d;
                best = st.name;
            }
        }
    }
    if (best.empty()) return fmt::format("no service '{}'", escape(name));
    return fmt::format("no service '{}' (did you mean '{}'?)", escape(name), best);
}

// ---- targets -----------------------------------------------------------------------------------

std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space) {
    std::string out;
    out.reserve(s.size());
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%') {
            if (i + 2 >= s.size()) return std::nullopt;
            const int h = hex(s[i + 1]), l = hex(s[i + 2]);
            if (h < 0 || l < 0) return std::nullopt;
            out += static_cast<char>(h * 16 + l);
            i += 2;
        } else if (s[i] == '+' && plus_is_space) {
            out += ' ';
        } else {
            out += s[i];
        }
    }
    return out;
}

/// A request's target, below the prefix.
struct target {
    std::string path; ///< "/livez", "/v1/services/web"... (raw, not decoded)
    enum class api { none, v1, web } flavour = api::none; ///< /v1/... or /api/v1/...
    std::vector<std::string> segments; ///< the API path after its version, split at '/', decoded
    std::map<std::string, std::string, std::less<>> query;
};

std::optional<target> parse_target(std::string_view path, std::string_view query) {
    target r;
    r.path = std::string(path);
    if (const auto h = query.find('#'); h != std::string_view::npos) query = query.substr(0, h);
    std::string_view rest;
    if (path.substr(0, 4) == "/v1/") {
        r.flavour = target::api::v1;
        rest = path.substr(4);
    } else if (path.substr(0, 8) == "/api/v1/") {
        r.flavour = target::api::web;
        rest = path.substr(8);
    }
    if (r.flavour != target::api::none) {
        for (;;) {
            const auto slash = rest.find('/');
            auto seg = percent_decode(rest.substr(0, slash), false);
            if (!seg) return std::nullopt;
            r.segments.push_back(std::move(*seg));
            if (slash == std::string_view::npos) break;
            rest.remove_prefix(slash + 1);
        }
    }
    while (!query.empty()) {
        const auto amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        if (!pair.empty()) {
            const auto eq = pair.find('=');
            auto key = percent_decode(pair.substr(0, eq), true);
            auto value =
                percent_decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1), true);
            if (!key || !value) return std::nullopt;
            r.query[std::move(*key)] = std::move(*value);
        }
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return r;
}

std::optional<bool> parse_flag(std::string_view v) {
    if (v.empty() || v == "1" || v == "true" || v == "yes") return true;
    if (v == "0" || v == "false" || v == "no") return false;
    return std::nullopt;
}

std::optional<std::size_t> parse_count(std::string_view v) {
    if (v.empty() || v.size() > 9) return std::nullopt;
    std::size_t n = 0;
    for (char c : v) {
        if (c < '0' || c > '9') return std::nullopt;
        n = n * 10 + static_cast<std::size_t>(c - '0');
    }
    return n;
}

/// Whether a Host header names this machine's loopback: "127.0.0.1:9090", "[::1]:9090",
/// "localhost:9090" (any port, or none). Anything else, when no token protects the API, may be a
/// page of another site that resolved its own name to 127.0.0.1 (DNS rebinding).
bool loopback_host(std::string_view host) {
    if (host.empty()) return false;
    std::string_view name = host;
    if (name.front() == '[') {
        const auto end = name.find(']');
        if (end == std::string_view::npos) return false;
        const std::string_view rest = name.substr(end + 1);
        if (!rest.empty() && rest.front() != ':') return false;
        name = name.substr(1, end - 1);
    } else if (const auto colon = name.rfind(':'); colon != std::string_view::npos) {
        name = name.substr(0, colon);
    }
    if (name == "localhost" || name == "localhost.") return true;
    error_code ec;
    const auto a = asio::ip::make_address(std::string(name), ec);
    return !ec && a.is_loopback();
}

/// "http://HOST" of an Origin header, compared with the Host header.
bool same_origin(std::string_view origin, std::string_view host) {
    for (std::string_view scheme : {"http://", "https://"})
        if (origin.substr(0, scheme.size()) == scheme) return origin.substr(scheme.size()) == host;
    return false;
}

// ---- HTTP --------------------------------------------------------------------------------------

using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

void common_headers(http::fields& f) {
    f.set(http::field::server, "drover");
    f.set(http::field::cache_control, "no-store");
    f.set("X-Content-Type-Options", "nosniff");
}

response make_response(const request& req, http::status status, std::string body, std::string_view type) {
    response res{status, req.version()};
    common_headers(res);
    res.set(http::field::content_type, type);
    res.keep_alive(req.keep_alive());
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
}

response json_response(const request& req, http::status status, const json::value& v) {
    return make_response(req, status, to_text(v) + "\n", "application/json");
}

response error_response(const request& req, http::status status, std::string_view code,
                        std::string_view message) {
    return json_response(req, status, error_json(code, message));
}

response ok_response(const request& req, http::status status = http::status::ok) {
    json::object o;
    o["ok"] = true;
    return json_response(req, status, o);
}

enum class transport { tcp, unix_socket };

/// A connection: the socket, the timer of its current read or write, and while it streams the
/// event stream it forwards and what waits to be written.
struct connection : std::enable_shared_from_this<connection> {
    connection(gsocket s, transport t, std::uint64_t n)
        : sock(std::move(s)), timer(sock.get_executor()), wake(sock.get_executor()),
          tick(sock.get_executor()), kind(t), serial(n) {}

    gsocket sock;
    asio::steady_timer timer;
    asio::steady_timer wake; ///< the stream writer waits on it for `out`
    asio::steady_timer tick; ///< the stream's snapshot period
    transport kind;
    std::uint64_t serial; ///< accept order
    bool idle = false;    ///< waiting for a request (nothing of it handled yet)
    /// When it last made progress (a request read, an answer written): when the server is full,
    /// the connection (not a stream) that made none for longest is closed for a new one.
    std::chrono::steady_clock::time_point active = std::chrono::steady_clock::now();
    /// Set by stop(): every later write must finish by then.
    std::optional<std::chrono::steady_clock::time_point> deadline;
    bool peer_ok = true; ///< unix: SO_PEERCRED allowed it

    std::shared_ptr<event_stream> stream; ///< set while it streams events or output
    std::deque<std::string> out;          ///< stream pieces not written yet
    std::size_t out_bytes = 0;
    std::uint64_t dropped = 0; ///< stream pieces dropped since the last "lost"
    bool ending = false;       ///< the stream ends: write what is queued, then the last chunk
    enum class lost_style { sse, json, text } lost = lost_style::json; ///< how a "lost" notice reads
    std::array<char, 512> sink{};

    /// Closes the socket unless disarmed or re-armed within `d`.
    void arm(std::chrono::steady_clock::duration d) {
        auto when = std::chrono::steady_clock::now() + d;
        if (deadline && *deadline < when) when = *deadline;
        timer.expires_at(when);
        timer.async_wait([w = weak_from_this()](error_code ec) {
            if (ec) return;
            auto c = w.lock();
            // A handler already queued when the timer was re-armed: not this arming's expiry.
            if (!c || c->timer.expiry() > std::chrono::steady_clock::now()) return;
            c->sock.close(ec);
        });
    }
    void disarm() { timer.cancel(); }

    void end_stream() {
        ending = true;
        if (stream) stream->close();
        tick.cancel();
        wake.cancel();
    }

    /// While streaming, the only sign of a client that went away is its end of the socket.
    void watch_peer() {
        sock.async_read_some(asio::buffer(sink), [self = shared_from_this()](error_code ec, std::size_t) {
            if (ec) {
                self->end_stream();
                return;
            }
            self->watch_peer();
        });
    }

    /// close(): a stream ends with its last chunk (within close_grace); anything else is cut.
    void stop() {
        error_code ec;
        if (stream) {
            deadline = std::chrono::steady_clock::now() + close_grace;
            end_stream();
            arm(close_grace);
        } else {
            sock.close(ec);
        }
    }
};

bool peer_allowed(int fd) {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
    return cred.uid == ::geteuid() || cred.uid == 0;
}

std::size_t open_fds() {
    std::size_t n = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
        while (const dirent* e = ::readdir(d))
            if (e->d_name[0] != '.') ++n;
        ::closedir(d);
        if (n > 0) --n; // the directory's own descriptor
    }
    return n;
}

/// A Prometheus label value: backslash, double quote and newline escaped.
std::string label(std::string_view v) {
    std::string out;
    for (char c : v) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

} // namespace

bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
    // Every byte of the longer one is read whatever the contents: the time depends on the lengths
    // only. volatile keeps the compiler from ending the loop at the first difference.
    const std::size_t n = std::max(a.size(), b.size());
    volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
    for (std::size_t i = 0; i < n; ++i) {
        const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
        const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
        diff = static_cast<unsigned char>(diff | (x ^ y));
    }
    return diff == 0;
}

// ---- the server --------------------------------------------------------------------------------

struct http_api::impl : std::enable_shared_from_this<impl> {
    impl(asio::any_io_executor e, supervisor& s, http_api_options o)
        : ex(std::move(e)), sup(&s), opts(std::move(o)) {
        while (!opts.prefix.empty() && opts.prefix.back() == '/') opts.prefix.pop_back();
    }

    asio::any_io_executor ex;
    supervisor* sup;
    http_api_options opts;
    std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
    std::string address;
    bool closed = false;
    std::uint64_t next_serial = 0;
    std::unordered_map<connection*, std::weak_ptr<connection>> conns;
    std::size_t tcp_count = 0, unix_count = 0, streams = 0;
    std::uint64_t requests = 0, events_lost = 0;

    void close() {
        if (closed) return;
        closed = true;
        error_code ec;
        for (auto& a : acceptors) a->close(ec);
        // Copied first: a connection that ends erases itself from the map.
        std::vector<std::shared_ptr<connection>> open;
        for (auto& [p, w] : conns)
            if (auto c = w.lock()) open.push_back(std::move(c));
        for (auto& c : open) c->stop();
    }

    // -- connections ------------------------------------------------------------------------

    static void reject_busy(gsocket& sock, std::string_view why) {
        // A few hundred bytes fit in any socket buffer: written without waiting.
        const std::string body = to_text(error_json("busy", why)) + "\n";
        const std::string msg =
            fmt::format("HTTP/1.1 503 Service Unavailable\r\nServer: drover\r\nContent-Type: "
                        "application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                        body.size(), body);
        error_code ec;
        sock.non_blocking(true, ec);
        sock.write_some(asio::buffer(msg), ec);
        linger_close(std::make_shared<gsocket>(std::move(sock)));
    }

    /// Closes a socket without losing the last answer: closing with the client's request unread
    /// makes the kernel send a reset, which can discard the answer before the client reads it.
    /// Our side is shut down, and what the client still sends is read and dropped until it
    /// closes, for at most 1 s and 64 KiB.
    static void linger_close(std::shared_ptr<gsocket> sock) {
        error_code ec;
        sock->shutdown(asio::socket_base::shutdown_send, ec);
        if (ec) return sock->close(ec);
        auto timer = std::make_shared<asio::steady_timer>(sock->get_executor(), 1s);
        timer->async_wait([sock](error_code e) {
            if (!e) sock->close(e);
        });
        struct drain {
            std::shared_ptr<gsocket> sock;
            std::shared_ptr<asio::steady_timer> timer;
            std::shared_ptr<std::array<char, 4096>> buf = std::make_shared<std::array<char, 4096>>();
            std::size_t total = 0;
            void operator()(error_code e, std::size_t n) {
                total += n;
                if (e || total > 64 * 1024) {
                    timer->cancel();
                    sock->close(e);
                    return;
                }
                sock->async_read_some(asio::buffer(*buf), std::move(*this));
            }
        };
        drain d{sock, timer};
        auto buf = d.buf;
        sock->async_read_some(asio::buffer(*buf), std::move(d));
    }

    /// Room for one more connection of `kind`: when TCP is full, closes the TCP connection that
    /// made no progress for longest (waiting for a request, or for a client that does not read
    /// its answer); streams have their own bound.
    bool admit(transport kind) {
        if (kind == transport::unix_socket) return unix_count < max_unix_connections;
        if (tcp_count < opts.max_connections) return true;
        std::shared_ptr<connection> oldest;
        for (auto& [p, w] : conns)
            if (auto c = w.lock())
                if (c->kind == transport::tcp && !c->stream && (!oldest || c->active < oldest->active))
                    oldest = std::move(c);
        if (!oldest) return false;
        error_code ec;
        oldest->idle = false;
        oldest->sock.close(ec);
        return true; // its session erases it shortly; the bound is passed by one at most
    }

    void start(gsocket sock, transport kind, std::optional<request> first, std::string buffered) {
        if (closed) {
            error_code ec;
            sock.close(ec);
            return;
        }
        if (!admit(kind)) return reject_busy(sock, "too many connections");
        auto c = std::make_shared<connection>(std::move(sock), kind, next_serial++);
        if (kind == transport::unix_socket) c->peer_ok = peer_allowed(c->sock.native_handle());
        (kind == transport::tcp ? tcp_count : unix_count)++;
        conns.emplace(c.get(), c);
        asio::co_spawn(ex, session(shared_from_this(), c, std::move(first), std::move(buffered)),
                       asio::detached);
    }

    static asio::awaitable<void> accept_loop(std::shared_ptr<impl> self, tcp::acceptor* acc) {
        for (;;) {
            error_code ec;
            tcp::socket sock = co_await acc->async_accept(asio::redirect_error(asio::use_awaitable, ec));
            if (self->closed || ec == asio::error::operation_aborted) co_return;
            if (ec) {
                // EMFILE and the like: pause instead of spinning on the same error.
                asio::steady_timer t(self->ex, 100ms);
                co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
                if (self->closed) co_return;
                continue;
            }
            self->start(to_generic(std::move(sock)), transport::tcp, std::nullopt, {});
        }
    }

    static gsocket to_generic(tcp::socket s) {
        error_code ec;
        const auto ep = s.local_endpoint(ec);
        const auto ex = s.get_executor();
        const int family = !ec && ep.address().is_v6() ? AF_INET6 : AF_INET;
        gsocket g(ex);
        const int fd = s.release(ec);
        if (!ec) g.assign(asio::generic::stream_protocol(family, IPPROTO_TCP), fd, ec);
        return g;
    }

    static asio::awaitable<void> session(std::shared_ptr<impl> self, std::shared_ptr<connection> c,
                                         std::optional<request> first, std::string buffered) {
        // Counted out however the frame ends: also when it is destroyed without resuming (an
        // embedder's reload hook that drops its callback).
        struct count_out {
            impl* i;
            connection* c;
            ~count_out() {
                (c->kind == transport::tcp ? i->tcp_count : i->unix_count)--;
                i->conns.erase(c);
            }
        } guard{self.get(), c.get()};
        try {
            co_await serve(self, c, std::move(first), std::move(buffered));
        } catch (...) {
            // Out of memory or a bug in one request: that connection ends, the server goes on.
        }
        c->timer.cancel();
        linger_close(std::make_shared<gsocket>(std::move(c->sock)));
    }

    static asio::awaitable<bool> send(connection& c, response res, std::chrono::seconds timeout) {
        error_code ec;
        c.arm(timeout);
        co_await http::async_write(c.sock, res, asio::redirect_error(asio::use_awaitable, ec));
        c.disarm();
        c.active = std::chrono::steady_clock::now();
        co_return !ec && res.keep_alive();
    }
    asio::awaitable<bool> send(connection& c, response res) {
        return send(c, std::move(res), opts.io_timeout);
    }

    static asio::awaitable<void> serve(std::shared_ptr<impl> self, std::shared_ptr<connection> c,
                                       std::optional<request> first, std::string buffered) {
        boost::beast::flat_buffer buf;
        if (!buffered.empty()) {
            auto mb = buf.prepare(buffered.size());
            asio::buffer_copy(mb, asio::buffer(buffered));
            buf.commit(buffered.size());
        }
        bool first_read = true;
        for (;;) {
            std::optional<request> got;
            if (first) {
                got = std::move(first);
                first.reset();
            } else {
                http::request_parser<http::string_body> parser;
                parser.header_limit(static_cast<std::uint32_t>(self->opts.max_header));
                parser.body_limit(self->opts.max_body);
                error_code ec;
                c->idle = true;
                c->arm(first_read
                           ? std::min<std::chrono::seconds>(
                                 self->opts.io_timeout,
                                 std::chrono::duration_cast<std::chrono::seconds>(first_request_timeout))
                           : self->opts.io_timeout);
                co_await http::async_read(c->sock, buf, parser,
                                          asio::redirect_error(asio::use_awaitable, ec));
                c->disarm();
                c->idle = false;
                c->active = std::chrono::steady_clock::now();
                if (self->closed) co_return;
                if (ec) {
                    if (ec.category() != http::make_error_code(http::error::bad_target).category() ||
                        ec == http::error::end_of_stream || ec == http::error::partial_message)
                        co_return; // gone, timed out or closed: nobody to answer
                    request req;
                    req.version(11);
                    req.keep_alive(false);
                    response res =
                        ec == http::error::body_limit
                            ? error_response(req, http::status::payload_too_large, "too_large",
                                             fmt::format("request body over {} bytes", self->opts.max_body))
                        : ec == http::error::header_limit
                            ? error_response(
                                  req, http::status::request_header_fields_too_large, "too_large",
                                  fmt::format("request header over {} bytes", self->opts.max_header))
                            : error_response(req, http::status::bad_request, "bad_request",
                                             "malformed request: " + ec.message());
                    co_await self->send(*c, std::move(res));
                    co_return;
                }
                got = parser.release();
            }
            first_read = false;
            ++self->requests;
            if (!co_await handle(self, c, *got)) co_return;
        }
    }

    // -- routing ----------------------------------------------------------------------------

    /// Answers one request; whether the connection may serve another.
    static asio::awaitable<bool> handle(std::shared_ptr<impl> self, std::shared_ptr<connection> c,
                                        request& req) {
        auto error = [&](http::status s, std::string_view code, std::string_view msg) {
            return self->send(*c, error_response(req, s, code, msg));
        };
        const std::string_view raw(req.target());
        const std::string_view full_path = raw.substr(0, raw.find('?'));
        const std::string_view query =
            raw.find('?') == std::string_view::npos ? std::string_view() : raw.substr(raw.find('?') + 1);
        const std::string& prefix = self->opts.prefix;

        if (c->kind == transport::unix_socket && !c->peer_ok) {
            req.keep_alive(false);
            co_await error(http::status::forbidden, "forbidden",
                           "only the user running drover up (or root) may use its socket");
            co_return false;
        }
        const auto not_found = [&] {
            return error(http::status::not_found, "not_found",
                         fmt::format("no such endpoint: {}", escape(raw)));
        };
        if (!prefix.empty() && full_path == prefix) {
            response res = make_response(req, http::status::permanent_redirect, {}, "text/plain");
            res.set(http::field::location, prefix + "/" + (query.empty() ? "" : "?") + std::string(query));
            co_return co_await self->send(*c, std::move(res));
        }
        if (full_path.substr(0, prefix.size()) != prefix || full_path.substr(prefix.size(), 1) != "/")
            co_return co_await not_found();
        const auto t = parse_target(full_path.substr(prefix.size()), query);
        if (!t)
            co_return co_await error(http::status::bad_request, "bad_request", "malformed percent-encoding");

        const bool probe = t->path == "/livez" || t->path == "/readyz";
        const detail::static_file* file = nullptr;
        if (self->opts.dashboard)
            for (const auto& f : detail::static_files())
                if (f.path == t->path) file = &f;

        if (c->kind == transport::tcp) {
            if (!self->opts.token.empty()) {
                if (!probe && !file) {
                    const std::string_view auth = req[http::field::authorization];
                    // The scheme is case-insensitive (RFC 9110); the token is not.
                    const bool bearer =
                        auth.size() > 7 && boost::beast::iequals(auth.substr(0, 7), "Bearer ");
                    if (!bearer || !constant_time_equal(auth.substr(7), self->opts.token)) {
                        response res =
                            error_response(req, http::status::unauthorized, "unauthorized",
                                           bearer ? "the bearer token is not the right one"
                                                  : "this API needs an Authorization: Bearer header");
                        res.set(http::field::www_authenticate, "Bearer realm=\"drover\"");
                        co_return co_await self->send(*c, std::move(res));
                    }
                }
            } else {
                const std::string_view host = req[http::field::host];
                if (!loopback_host(host))
                    co_return co_await error(
                        http::status::forbidden, "forbidden",
                        fmt::format("host '{}' is not a loopback address: without a token "
                                    "drover answers requests for 127.0.0.1, [::1] or "
                                    "localhost only",
                                    escape(host)));
            }
            // A page of another site may not use the API through the user's browser, not even to
            // read or hold streams open: its requests carry its Origin (every POST, EventSource
            // and fetch) or Sec-Fetch-Site: cross-site.
            const std::string_view origin = req[http::field::origin];
            if ((!origin.empty() && !same_origin(origin, req[http::field::host])) ||
                req["Sec-Fetch-Site"] == "cross-site")
                co_return co_await error(
                    http::status::forbidden, "forbidden",
                    fmt::format("a request from another site ('{}') is refused",
                                escape(origin.empty() ? std::string_view("cross-site") : origin)));
        }

        if (file) {
            if (req.method() != http::verb::get && req.method() != http::verb::head)
                co_return co_await not_allowed(self, c, req, "GET");
            response res = make_response(req, http::status::ok, std::string(file->data), file->type);
            if (req.method() == http::verb::head) {
                res.body().clear(); // the length of what a GET would send, and no body
                res.content_length(file->data.size());
            }
            res.set(http::field::cache_control, "no-cache");
            res.set("Content-Security-Policy",
                    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                    "form-action 'self'; frame-ancestors 'none'");
            res.set("Referrer-Policy", "no-referrer");
            res.set("X-Frame-Options", "DENY");
            co_return co_await self->send(*c, std::move(res));
        }
        if (probe || t->path == "/metrics") {
            if (req.method() != http::verb::get) co_return co_await not_allowed(self, c, req, "GET");
            if (t->path == "/livez") {
                json::object o;
                o["ok"] = true;
                co_return co_await self->send(*c, json_response(req, http::status::ok, o));
            }
            if (t->path == "/readyz") co_return co_await self->send(*c, self->readyz(req));
            co_return co_await self->send(*c, make_response(req, http::status::ok, self->metrics(),
                                                            "text/plain; version=0.0.4; charset=utf-8"));
        }
        if (t->path == "/favicon.ico" && self->opts.dashboard) {
            // Browsers ask for it; the dashboard has none. 204 keeps their consoles clean.
            response res = make_response(req, http::status::no_content, {}, "image/x-icon");
            res.erase(http::field::content_length); // a 204 has none
            co_return co_await self->send(*c, std::move(res));
        }
        if (t->flavour == target::api::none) co_return co_await not_found();
        co_return co_await api(self, c, req, *t);
    }

    static asio::awaitable<bool> not_allowed(std::shared_ptr<impl> self, std::shared_ptr<connection> c,
                                             request& req, std::string_view allow) {
        response res = error_response(req, http::status::method_not_allowed, "method_not_allowed",
                                      fmt::format("{} is not allowed on {} (use {})",
                                                  std::string_view(req.method_string()),
                                                  escape(std::string_view(req.target())), allow));
        res.set(http::field::allow, allow);
        co_return co_await self->send(*c, std::move(res));
    }

    static asio::awaitable<bool> api(std::shared_ptr<impl> self, std::shared_ptr<connection> c, request& req,
                                     const target& t) {
        auto reply = [&](response res) { return self->send(*c, std::move(res)); };
        auto error = [&](http::status s, std::string_view code, std::string_view msg) {
            return self->send(*c, error_response(req, s, code, msg));
        };
        const auto& seg = t.segments;
        const auto method = req.method();
        supervisor& sup = *self->sup;

        if (seg.size() == 1 && seg[0] == "services") {
            if (method != http::verb::get) co_return co_await not_allowed(self, c, req, "GET");
            co_return co_await reply(json_response(req, http::status::ok, services_json(sup)));
        }
        if (seg.size() >= 2 && seg.size() <= 3 && seg[0] == "services" && !seg[1].empty()) {
            const std::string& name = seg[1];
            const std::string action = seg.size() == 3 ? seg[2] : std::string();
            const bool is_op = action == "start" || action == "stop" || action == "restart";
            if (seg.size() == 3 && !is_op && action != "logs")
                co_return co_await error(
                    http::status::not_found, "not_found",
                    fmt::format("no such endpoint: {}", escape(std::string_view(req.target()))));
            if (is_op && method != http::verb::post) co_return co_await not_allowed(self, c, req, "POST");
            if (!is_op && method != http::verb::get) co_return co_await not_allowed(self, c, req, "GET");
            const auto st = sup.status(name);
            if (!st)
                co_return co_await error(http::status::not_found, "unknown_service",
                                         unknown_service_message(sup, name));
            if (action.empty())
                co_return co_await reply(json_response(req, http::status::ok, status_json(*st)));
            if (action == "logs") co_return co_await logs(self, c, req, t, name);
            co_return co_await operation(self, c, req, action, name);
        }
        if (seg.size() == 1 && seg[0] == "events") {
            if (method != http::verb::get) co_return co_await not_allowed(self, c, req, "GET");
            co_await events(self, c, req, t);
            co_return false;
        }
        if (seg.size() == 1 && seg[0] == "reload") {
            if (method != http::verb::post) co_return co_await not_allowed(self, c, req, "POST");
            if (!self->opts.reload)
                co_return co_await error(http::status::not_implemented, "not_supported",
                                         "this server cannot reload");
            auto problem = co_await async_call_reload(self);
            if (problem)
                co_return co_await error(http::status::unprocessable_entity, "invalid_config", *problem);
            co_return co_await reply(ok_response(req));
        }
        if (seg.size() == 1 && seg[0] == "shutdown") {
            if (method != http::verb::post) co_return co_await not_allowed(self, c, req, "POST");
            if (!self->opts.shutdown)
                co_return co_await error(http::status::not_implemented, "not_supported",
                                         "this server cannot shut down");
            req.keep_alive(false);
            co_await self->send(*c, ok_response(req, http::status::accepted));
            // After the answer: the hook may close the server (this connection with it).
            if (!self->closed && self->opts.shutdown) self->opts.shutdown();
            co_return false;
        }
        co_return co_await error(http::status::not_found, "not_found",
                                 fmt::format("no such endpoint: {}", escape(std::string_view(req.target()))));
    }

    static asio::awaitable<std::optional<std::string>> async_call_reload(std::shared_ptr<impl> self) {
        return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::optional<std::string>)>(
            [self](auto handler) {
                using handler_t = decltype(handler);
                auto h = std::make_shared<handler_t>(std::move(handler));
                // Posted: the hook may answer from inside the call.
                self->opts.reload([h, ex = self->ex](std::optional<std::string> problem) {
                    asio::post(ex, [h, p = std::move(problem)]() mutable { (*h)(std::move(p)); });
                });
            },
            asio::use_awaitable);
    }

    static asio::awaitable<bool> operation(std::shared_ptr<impl> self, std::shared_ptr<connection> c,
                                           request& req, const std::string& action, const std::string& name) {
        supervisor& sup = *self->sup;
        error_code ec;
        if (action == "start")
            co_await sup.async_start(name, asio::redirect_error(asio::use_awaitable, ec));
        else if (action == "stop")
            co_await sup.async_stop(name, asio::redirect_error(asio::use_awaitable, ec));
        else
            co_await sup.async_restart(name, asio::redirect_error(asio::use_awaitable, ec));
        if (self->closed) co_return false; // the supervisor may be gone: do not touch it
        if (!ec) co_return co_await self->send(*c, ok_response(req));

        http::status status = http::status::internal_server_error;
        std::string code = "error";
        std::string message = ec.message();
        if (ec.category() == drover::category()) {
            switch (static_cast<errc>(ec.value())) {
            case errc::unknown_service:
                status = http::status::not_found;
                code = "unknown_service";
                message = unknown_service_message(sup, name);
                break;
            case errc::service_failed: {
                status = http::status::conflict;
                code = "service_failed";
                const auto st = sup.status(name);
                message = fmt::format("service '{}' failed{}{}", name, st && !st->reason.empty() ? ": " : "",
                                      st ? escape(st->reason) : std::string());
                break;
            }
            case errc::service_in_use:
                status = http::status::conflict;
                code = "service_in_use";
                break;
            case errc::shutting_down:
                status = http::status::service_unavailable;
                code = "shutting_down";
                break;
            default:
                break;
            }
        } else if (ec == asio::error::operation_aborted) {
            status = http::status::service_unavailable;
            code = "shutting_down";
            message = "the supervisor is shutting down";
        }
        if (code == "error") message = fmt::format("cannot {} '{}': {}", action, name, message);
        co_return co_await self->send(*c, error_response(req, status, code, message));
    }

    // -- probes and metrics -----------------------------------------------------------------

    response readyz(const request& req) const {
        json::array waiting;
        for (const auto& st : sup->status()) {
            bool ok = false;
            switch (st.state) {
            case service_state::running:
            case service_state::ready:
            case service_state::stopped: // not asked to run
                ok = true;
                break;
            case service_state::exited: // a one-shot: done if it succeeded
                ok = st.last_status && st.last_status->is_exited() && st.last_status->code() == 0;
                break;
            default:
                break;
            }
            if (ok) continue;
            json::object w;
            w["name"] = st.name;
            w["state"] = to_string(st.state);
            w["reason"] = to_valid_utf8(st.reason);
            waiting.push_back(std::move(w));
        }
        json::object o;
        const bool ready = waiting.empty();
        o["ready"] = ready;
        o["waiting"] = std::move(waiting);
        return json_response(req, ready ? http::status::ok : http::status::service_unavailable, o);
    }

    std::string metrics() const {
        std::string out;
        out.reserve(4096);
        const auto list = sup->status();
        struct row {
            const service_status* st;
            std::optional<proc_info> info;
            std::string name;
        };
        std::vector<row> rows;
        rows.reserve(list.size());
        for (const auto& st : list) rows.push_back({&st, info_of(st), label(st.name)});
        auto family = [&](std::string_view name, std::string_view type, std::string_view help) {
            fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
        };
        constexpr service_state states[] = {
            service_state::stopped,  service_state::starting, service_state::running, service_state::ready,
            service_state::stopping, service_state::exited,   service_state::backoff, service_state::failed};
        family("drover_service_state", "gauge", "1 for the state the service is in, 0 for the others");
        for (const auto& r : rows)
            for (auto s : states)
                fmt::format_to(std::back_inserter(out),
                               "drover_service_state{{service=\"{}\",state=\"{}\"}} {}\n", r.name,
                               to_string(s), r.st->state == s ? 1 : 0);
        family("drover_service_restarts_total", "counter", "Restarts since the service was added");
        for (const auto& r : rows)
            fmt::format_to(std::back_inserter(out), "drover_service_restarts_total{{service=\"{}\"}} {}\n",
                           r.name, r.st->restarts);
        family("drover_service_probes_total", "counter", "Readiness and health attempts, by result");
        for (const auto& r : rows)
            fmt::format_to(std::back_inserter(out),
                           "drover_service_probes_total{{service=\"{}\",result=\"ok\"}} {}\n"
                           "drover_service_probes_total{{service=\"{}\",result=\"fail\"}} {}\n",
                           r.name, r.st->probes_ok, r.name, r.st->probes_failed);
        family("drover_service_ready", "gauge", "1 once the readiness check of the current run passed");
        for (const auto& r : rows)
            fmt::format_to(std::back_inserter(out), "drover_service_ready{{service=\"{}\"}} {}\n", r.name,
                           r.st->ready ? 1 : 0);
        family("drover_service_healthy", "gauge", "Health check: 1 passing, 0 failing, -1 unknown or none");
        for (const auto& r : rows)
            fmt::format_to(std::back_inserter(out), "drover_service_healthy{{service=\"{}\"}} {}\n", r.name,
                           r.st->health == health_state::healthy     ? 1
                           : r.st->health == health_state::unhealthy ? 0
                                                                     : -1);
        family("drover_service_last_exit_code", "gauge", "Exit code of the last run (when it exited)");
        for (const auto& r : rows)
            if (r.st->last_status && r.st->last_status->is_exited())
                fmt::format_to(std::back_inserter(out),
                               "drover_service_last_exit_code{{service=\"{}\"}} {}\n", r.name,
                               r.st->last_status->code());
        family("drover_service_last_exit_signal", "gauge", "Signal that ended the last run (when killed)");
        for (const auto& r : rows)
            if (r.st->last_status && r.st->last_status->is_signaled())
                fmt::format_to(std::back_inserter(out),
                               "drover_service_last_exit_signal{{service=\"{}\"}} {}\n", r.name,
                               r.st->last_status->signal());
        family("drover_service_uptime_seconds", "gauge", "Age of the running main process");
        for (const auto& r : rows)
            if (r.info)
                fmt::format_to(std::back_inserter(out),
                               "drover_service_uptime_seconds{{service=\"{}\"}} {:.3f}\n", r.name,
                               std::chrono::duration<double>(r.info->age).count());
        family("drover_service_cpu_seconds_total", "counter", "CPU time of the running main process");
        for (const auto& r : rows)
            if (r.info)
                fmt::format_to(std::back_inserter(out),
                               "drover_service_cpu_seconds_total{{service=\"{}\"}} {:.3f}\n", r.name,
                               std::chrono::duration<double>(r.info->user_cpu + r.info->system_cpu).count());
        family("drover_service_resident_memory_bytes", "gauge",
               "Resident memory of the running main process");
        for (const auto& r : rows)
            if (r.info)
                fmt::format_to(std::back_inserter(out),
                               "drover_service_resident_memory_bytes{{service=\"{}\"}} {}\n", r.name,
                               r.info->rss_bytes);
        family("drover_services", "gauge", "Services supervised");
        fmt::format_to(std::back_inserter(out), "drover_services {}\n", rows.size());
        family("drover_http_connections", "gauge", "Open connections to the HTTP API");
        fmt::format_to(std::back_inserter(out), "drover_http_connections {}\n", tcp_count + unix_count);
        family("drover_http_streams", "gauge", "Open event and log streams");
        fmt::format_to(std::back_inserter(out), "drover_http_streams {}\n", streams);
        family("drover_http_requests_total", "counter", "Requests answered by the HTTP API");
        fmt::format_to(std::back_inserter(out), "drover_http_requests_total {}\n", requests);
        family("drover_events_lost_total", "counter",
               "Stream messages dropped because a client read too slowly");
        fmt::format_to(std::back_inserter(out), "drover_events_lost_total {}\n", events_lost);
        error_code ec;
        if (const auto self_info = read_proc_info(::getpid(), ec)) {
            family("process_cpu_seconds_total", "counter", "CPU time of drover itself");
            fmt::format_to(
                std::back_inserter(out), "process_cpu_seconds_total {:.3f}\n",
                std::chrono::duration<double>(self_info->user_cpu + self_info->system_cpu).count());
            family("process_resident_memory_bytes", "gauge", "Resident memory of drover itself");
            fmt::format_to(std::back_inserter(out), "process_resident_memory_bytes {}\n",
                           self_info->rss_bytes);
        }
        family("process_open_fds", "gauge", "Open file descriptors of drover itself");
        fmt::format_to(std::back_inserter(out), "process_open_fds {}\n", open_fds());
        return out;
    }

    // -- streams ----------------------------------------------------------------------------

    /// Queues a piece of a stream; past the backlog bound it is dropped and counted.
    /// Past 1 MiB queued, output is dropped (and counted); past 4 MiB, when not even the lifecycle
    /// events are read, the stream is ended.
    void push(connection& c, std::string piece, bool droppable = true) {
        if (c.ending || piece.empty()) return;
        if (droppable && c.out_bytes > max_stream_backlog) {
            ++c.dropped;
            ++events_lost;
            return;
        }
        if (c.out_bytes > 4 * max_stream_backlog) {
            ++events_lost;
            c.end_stream();
            return;
        }
        if (c.dropped != 0) {
            json::object o;
            o["type"] = "lost";
            o["count"] = c.dropped;
            using style = connection::lost_style;
            std::string lost =
                c.lost == style::sse ? sse("lost", o)
                : c.lost == style::json
                    ? to_text(o) + "\n"
                    : fmt::format("[drover: {} lines lost: this reader fell behind]\n", c.dropped);
            c.out_bytes += lost.size();
            c.out.push_back(std::move(lost));
            c.dropped = 0;
        }
        c.out_bytes += piece.size();
        c.out.push_back(std::move(piece));
        c.wake.cancel();
    }

    /// Writes the header of a streamed answer: chunked for HTTP/1.1, delimited by the close for
    /// HTTP/1.0 (which has no chunks).
    asio::awaitable<bool> stream_header(connection& c, const request& req, std::string_view type) {
        http::response<http::empty_body> res{http::status::ok, req.version()};
        common_headers(res);
        res.set(http::field::content_type, type);
        res.keep_alive(false);
        if (type == "text/event-stream") res.set("X-Accel-Buffering", "no");
        if (req.version() >= 11) res.chunked(true);
        http::response_serializer<http::empty_body> sr{res};
        error_code ec;
        c.arm(opts.io_timeout);
        co_await http::async_write_header(c.sock, sr, asio::redirect_error(asio::use_awaitable, ec));
        c.disarm();
        co_return !ec;
    }

    /// Writes what is queued until the stream ends; then the last chunk.
    asio::awaitable<void> writer(std::shared_ptr<connection> c, bool chunked) {
        bool ok = true;
        for (;;) {
            if (c->out.empty()) {
                if (c->ending || closed) break;
                error_code ec;
                c->wake.expires_at(asio::steady_timer::time_point::max());
                co_await c->wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
                continue;
            }
            std::string data;
            data.reserve(c->out_bytes);
            for (auto& s : c->out) data += s;
            c->out.clear();
            c->out_bytes = 0;
            error_code ec;
            c->arm(opts.io_timeout);
            if (chunked)
                co_await asio::async_write(c->sock, http::make_chunk(asio::buffer(data)),
                                           asio::redirect_error(asio::use_awaitable, ec));
            else
                co_await asio::async_write(c->sock, asio::buffer(data),
                                           asio::redirect_error(asio::use_awaitable, ec));
            c->disarm();
            if (ec) {
                ok = false;
                break;
            }
        }
        c->end_stream();
        if (ok && chunked) {
            error_code ec;
            c->arm(close_grace);
            co_await asio::async_write(c->sock, http::make_chunk_last(),
                                       asio::redirect_error(asio::use_awaitable, ec));
            c->disarm();
        }
    }

    /// Reads the subscription into the connection's queue through `format` (empty: skipped).
    template <typename Format>
    static asio::awaitable<void> pump(std::shared_ptr<impl> self, std::shared_ptr<connection> c,
                                      Format format) {
        for (;;) {
            error_code ec;
            supervisor_event ev = co_await c->stream->next(asio::redirect_error(asio::use_awaitable, ec));
            if (ec || self->closed || c->ending) break;
            self->push(*c, format(ev), ev.type == supervisor_event::kind::output);
        }
        c->end_stream();
    }

    /// Runs a stream: the pump (and the snapshot ticker, when `period` is set) feed the writer.
    template <typename Format>
    static asio::awaitable<void> run_stream(std::shared_ptr<impl> self, std::shared_ptr<connection> c,
                                            const request& req, std::string_view type, std::string first,
                                            Format format, std::chrono::milliseconds period) {
        using style = connection::lost_style;
        c->lost = type == "text/event-stream"      ? style::sse
                  : type == "application/x-ndjson" ? style::json
                                                   : style::text;
        ++self->streams;
        struct unstream {
            impl* i;
            ~unstream() { --i->streams; }
        } guard{self.get()};
        if (!co_await self->stream_header(*c, req, type)) co_return;
        self->push(*c, std::move(first), false);
        c->watch_peer();
        asio::co_spawn(self->ex, pump(self, c, std::move(format)), asio::detached);
        if (period.count() > 0 && !c->ending && !self->closed)
            asio::co_spawn(self->ex, ticker(self, c, period), asio::detached);
        co_await self->writer(c, req.version() >= 11);
    }

    static asio::awaitable<void> ticker(std::shared_ptr<impl> self, std::shared_ptr<connection> c,
                                        std::chrono::milliseconds period) {
        for (;;) {
            error_code ec;
            if (c->ending || self->closed) co_return; // end_stream() may have come before us
            c->tick.expires_after(period);
            co_await c->tick.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            if (ec || c->ending || self->closed) co_return;
            // A snapshot is worth sending only to a client that keeps up.
            if (c->out_bytes < max_stream_backlog / 4)
                self->push(*c, sse("snapshot", services_json(*self->sup)), false);
        }
    }

    /// Whether another stream may open; if not, the 503 to answer.
    std::optional<response> no_stream_room(request& req) const {
        if (streams < opts.max_streams) return std::nullopt;
        req.keep_alive(false);
        return error_response(req, http::status::service_unavailable, "busy",
                              fmt::format("too many streams open (at most {})", opts.max_streams));
    }

    static asio::awaitable<void> events(std::shared_ptr<impl> self, std::shared_ptr<connection> c,
                                        request& req, const target& t) {
        const bool sse_format = t.flavour == target::api::web;
        bool with_output = true;
        std::chrono::milliseconds period = sse_format ? 2000ms : 0ms;
        for (const auto& [key, value] : t.query) {
            if (key == "output") {
                const auto v = parse_flag(value);
                if (!v) {
                    co_await self->send(
                        *c, error_response(req, http::status::bad_request, "bad_request",
                                           fmt::format("output '{}' is not 0 or 1", escape(value))));
                    co_return;
                }
                with_output = *v;
            } else if (key == "stats_ms" && sse_format) {
                const auto v = parse_count(value);
                // Each snapshot reads /proc for every service, on the supervisor's thread: at most
                // two a second per stream.
                if (!v || (*v != 0 && *v < 500) || *v > 3'600'000) {
                    co_await self->send(*c,
                                        error_response(req, http::status::bad_request, "bad_request",
                                                       fmt::format("stats_ms '{}' is not 0 or a number of "
                                                                   "milliseconds from 500 to 3600000",
                                                                   escape(value))));
                    co_return;
                }
                period = std::chrono::milliseconds(*v);
            }
        }
        if (auto busy = self->no_stream_room(req)) {
            co_await self->send(*c, std::move(*busy));
            co_return;
        }
        // Drops the oldest (output first) rather than ever slowing a service for this client.
        c->stream = std::make_shared<event_stream>(self->sup->subscribe(4096, event_overflow::drop_oldest));
        std::string first;
        if (sse_format) first = "retry: 2000\n\n" + sse("snapshot", services_json(*self->sup));
        auto sup = self->sup;
        auto closed = &self->closed;
        // A named local, moved in: GCC 12 destroys a class temporary that a co_await expression
        // passes by value twice (the lambda of logs() below owns a string: a double free).
        auto format = [sse_format, with_output, sup, closed](const supervisor_event& ev) -> std::string {
            using kind = supervisor_event::kind;
            if (ev.type == kind::output && !with_output) return {};
            if (!sse_format) return to_text(event_json(ev, false)) + "\n";
            std::string s = sse(kind_name(ev.type), event_json(ev, true));
            if (ev.type != kind::output && ev.type != kind::lost && !*closed && !ev.service.empty())
                if (const auto st = sup->status(ev.service)) s += sse("status", status_json(*st));
            return s;
        };
        co_await run_stream(self, c, req, sse_format ? "text/event-stream" : "application/x-ndjson",
                            std::move(first), std::move(format), period);
    }

    static asio::awaitable<bool> logs(std::shared_ptr<impl> self, std::shared_ptr<connection> c, request& req,
                                      const target& t, const std::string& name) {
        std::size_t n = SIZE_MAX;
        bool follow = false;
        bool as_json = false;
        bool n_given = false;
        for (const auto& [key, value] : t.query) {
            if (key == "n") {
                const auto v = parse_count(value);
                if (!v)
                    co_return co_await self->send(
                        *c, error_response(req, http::status::bad_request, "bad_request",
                                           fmt::format("n '{}' is not a number of lines", escape(value))));
                n = *v;
                n_given = true;
            } else if (key == "follow") {
                const auto v = parse_flag(value);
                if (!v)
                    co_return co_await self->send(
                        *c, error_response(req, http::status::bad_request, "bad_request",
                                           fmt::format("follow '{}' is not 0 or 1", escape(value))));
                follow = *v;
            } else if (key == "format") {
                if (value != "json" && value != "text")
                    co_return co_await self->send(
                        *c, error_response(req, http::status::bad_request, "bad_request",
                                           fmt::format("format '{}' is not text or json", escape(value))));
                as_json = value == "json";
            }
            // Unknown parameters are ignored, as HTTP APIs usually do: a newer client can ask for
            // more without breaking against an older server.
        }
        const bool sse_format = follow && t.flavour == target::api::web;
        if (sse_format && !n_given) n = 100;
        auto format_line = [as_json, sse_format](wall_clock::time_point time, int stream,
                                                 const std::string& text, std::uint64_t dropped) {
            if (sse_format) return sse("line", line_json(time, stream, text, dropped, true));
            if (as_json) return to_text(line_json(time, stream, text, dropped, false)) + "\n";
            return escape(text) + "\n";
        };
        if (follow) {
            if (auto busy = self->no_stream_room(req)) co_return co_await self->send(*c, std::move(*busy));
            // Subscribed before the kept lines are read, in the same handler: no line is missed
            // or shown twice between the two.
            c->stream =
                std::make_shared<event_stream>(self->sup->subscribe(4096, event_overflow::drop_oldest));
        }
        std::string kept = sse_format ? "retry: 2000\n\n" : "";
        for (const auto& line : self->sup->logs(name, n))
            kept += format_line(line.time, line.stream, line.text, line.dropped);
        const std::string_view type = sse_format ? "text/event-stream"
                                      : as_json  ? "application/x-ndjson"
                                                 : "text/plain; charset=utf-8";
        if (!follow)
            co_return co_await self->send(*c, make_response(req, http::status::ok, std::move(kept), type));

        // Named, not a temporary of the co_await expression (see events()).
        auto format = [=](const supervisor_event& ev) -> std::string {
            using kind = supervisor_event::kind;
            if (ev.type == kind::lost) {
                json::object o;
                o["type"] = "lost";
                o["count"] = ev.count;
                if (sse_format) return sse("lost", o);
                if (as_json) return to_text(o) + "\n";
                return "[drover: lines lost: this reader fell behind]\n";
            }
            if (ev.type != kind::output || ev.service != name) return {};
            return format_line(ev.time, ev.stream, ev.text, 0);
        };
        co_await run_stream(self, c, req, type, std::move(kept), std::move(format), 0ms);
        co_return false;
    }
};

// ---- http_api ----------------------------------------------------------------------------------

http_api::http_api(asio::any_io_executor ex, supervisor& sup, http_api_options options)
    : impl_(std::make_shared<impl>(std::move(ex), sup, std::move(options))) {}

http_api::~http_api() {
    impl_->close();
}

void http_api::close() {
    impl_->close();
}

std::size_t http_api::connections() const noexcept {
    return impl_->tcp_count + impl_->unix_count;
}

std::string http_api::local_address() const {
    return impl_->address;
}

void http_api::listen(std::string_view address) {
    if (impl_->closed) throw std::logic_error("http_api::listen after close()");
    const std::string shown = escape(address);
    const auto colon = address.rfind(':');
    if (colon == std::string_view::npos)
        throw std::runtime_error(fmt::format("HTTP address '{}' has no port (like 127.0.0.1:9090)", shown));
    std::string host(address.substr(0, colon));
    const std::string_view port_text = address.substr(colon + 1);
    const auto port = parse_count(port_text);
    if (!port || *port > 65535)
        throw std::runtime_error(
            fmt::format("HTTP address '{}': '{}' is not a port (0 to 65535)", shown, escape(port_text)));
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    asio::ip::address ip;
    if (host.empty()) {
        ip = asio::ip::address_v6::any();
    } else if (host == "localhost") {
        ip = asio::ip::address_v4::loopback();
    } else {
        error_code ec;
        ip = asio::ip::make_address(host, ec);
        if (ec)
            throw std::runtime_error(fmt::format(
                "HTTP address '{}': '{}' is not an IP address (or localhost)", shown, escape(host)));
    }
    if (!ip.is_loopback() && impl_->opts.token.empty())
        throw std::runtime_error(fmt::format("HTTP address '{}' is not a loopback address: serving the API "
                                             "there needs a token (drover up: --http-token-file)",
                                             shown));
    auto acc = std::make_unique<tcp::acceptor>(impl_->ex);
    const tcp::endpoint ep(ip, static_cast<unsigned short>(*port));
    error_code ec;
    acc->open(ep.protocol(), ec);
    if (!ec) acc->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec && ip.is_v6() && ip.is_unspecified()) acc->set_option(asio::ip::v6_only(false), ec);
    if (!ec) acc->bind(ep, ec);
    if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw std::system_error(ec, fmt::format("cannot listen on '{}'", shown));
    const auto bound = acc->local_endpoint(ec);
    impl_->address = bound.address().is_v6()
                         ? fmt::format("[{}]:{}", bound.address().to_string(), bound.port())
                         : fmt::format("{}:{}", bound.address().to_string(), bound.port());
    tcp::acceptor* raw = acc.get();
    impl_->acceptors.push_back(std::move(acc));
    asio::co_spawn(impl_->ex, impl::accept_loop(impl_, raw), asio::detached);
}

void http_api::serve(tcp::socket socket) {
    impl_->start(impl::to_generic(std::move(socket)), transport::tcp, std::nullopt, {});
}

void http_api::serve(tcp::socket socket, http_request first, std::string buffered) {
    request req;
    req.method_string(first.method);
    req.target(first.target);
    req.version(first.version);
    for (auto& [k, v] : first.headers) req.insert(k, v);
    req.body() = std::move(first.body);
    req.keep_alive(first.keep_alive);
    impl_->start(impl::to_generic(std::move(socket)), transport::tcp, std::move(req), std::move(buffered));
}

void http_api::serve(asio::local::stream_protocol::socket socket) {
    error_code ec;
    const auto ex = socket.get_executor();
    gsocket g(ex);
    const int fd = socket.release(ec);
    if (!ec) g.assign(asio::generic::stream_protocol(AF_UNIX, 0), fd, ec);
    impl_->start(std::move(g), transport::unix_socket, std::nullopt, {});
}

} // namespace drover
