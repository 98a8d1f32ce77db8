// drover (the program): the control API server of `drover up` (see control.hpp for the API).
#include "control.hpp"
#include "up_log.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <filesystem>
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
#include <boost/asio/local/stream_protocol.hpp>
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

namespace drover::up {

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using local = asio::local::stream_protocol;
using namespace std::chrono_literals;

constexpr std::size_t max_connections = 64;
constexpr std::size_t max_body = 64 * 1024;
constexpr std::size_t max_header = 16 * 1024;
constexpr std::size_t max_socket_path = sizeof(sockaddr_un{}.sun_path) - 1; // 107 on Linux
/// How long a request may take to arrive whole, and a streamed write to finish: a stuck or
/// malicious client cannot hold a connection (one of 64) for longer.
constexpr auto io_timeout = 30s;
/// After close(), how long a stream may take to write its last chunk.
constexpr auto close_grace = 5s;

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

// Text a child may have shaped (reasons quote output, STATUS=, output lines) goes through
// to_valid_utf8: JSON strings are Unicode.

json::object status_json(const service_status& st) {
    json::object o;
    o["name"] = st.name;
    o["state"] = to_string(st.state);
    o["reason"] = to_valid_utf8(st.reason);
    o["pid"] = st.pid ? json::value(*st.pid) : json::value(nullptr);
    o["since"] = rfc3339(st.since);
    std::optional<proc_info> info;
    if (st.pid) {
        // The supervisor holds the main process's pidfd and has not reaped it while it reports
        // the pid, so the pid names that process; a read failing (it just exited) leaves nulls.
        error_code ec;
        info = read_proc_info(*st.pid, ec);
    }
    // Whole milliseconds: integers read the same in every JSON library (Boost.JSON writes
    // doubles as "1.075E0").
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

json::object event_json(const supervisor_event& e) {
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
        break;
    case kind::lost:
        o["count"] = e.count;
        break;
    }
    return o;
}

json::object line_json(wall_clock::time_point time, int stream, const std::string& text,
                       std::uint64_t dropped) {
    json::object o;
    o["time"] = rfc3339(time);
    o["stream"] = stream_name(stream);
    o["text"] = to_valid_utf8(text);
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

// ---- names -------------------------------------------------------------------------------------

/// Edit distance with adjacent transpositions (optimal string alignment): "wbe" is one edit
/// from "web".
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

struct target {
    std::vector<std::string> segments; ///< the path after "/v1/", split at '/', decoded
    std::map<std::string, std::string, std::less<>> query;
    bool v1 = false;
};

std::optional<target> parse_target(std::string_view t) {
    target r;
    const auto q = t.find('?');
    std::string_view path = t.substr(0, q);
    std::string_view query = q == std::string_view::npos ? std::string_view() : t.substr(q + 1);
    if (const auto h = query.find('#'); h != std::string_view::npos) query = query.substr(0, h);
    if (path.substr(0, 4) != "/v1/") return r;
    r.v1 = true;
    path.remove_prefix(4);
    for (;;) {
        const auto slash = path.find('/');
        auto seg = percent_decode(path.substr(0, slash), false);
        if (!seg) return std::nullopt;
        r.segments.push_back(std::move(*seg));
        if (slash == std::string_view::npos) break;
        path.remove_prefix(slash + 1);
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

// ---- HTTP --------------------------------------------------------------------------------------

using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

response make_response(const request& req, http::status status, std::string body, std::string_view type) {
    response res{status, req.version()};
    res.set(http::field::server, "drover");
    res.set(http::field::content_type, type);
    res.set(http::field::cache_control, "no-store");
    res.keep_alive(req.keep_alive());
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
}

response json_response(const request& req, http::status status, const json::value& v) {
    return make_response(req, status, harden_json(json::serialize(v)) + "\n", "application/json");
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

/// A connection: the socket, the timer of its current read or write, and the event stream it
/// forwards while it streams.
struct connection : std::enable_shared_from_this<connection> {
    explicit connection(local::socket s) : sock(std::move(s)), timer(sock.get_executor()) {}

    local::socket sock;
    asio::steady_timer timer;
    std::shared_ptr<event_stream> stream; ///< set while it streams events or output
    std::array<char, 512> sink{};         ///< what a streaming client sends: discarded

    /// Closes the socket unless disarmed or re-armed within `d`.
    void arm(std::chrono::steady_clock::duration d) {
        timer.expires_after(d);
        timer.async_wait([w = weak_from_this()](error_code ec) {
            if (ec) return;
            if (auto c = w.lock()) c->sock.close(ec);
        });
    }
    void disarm() { timer.cancel(); }

    /// While streaming, the only sign of a client that went away is its end of the socket: a
    /// read that completes with an error (EOF) ends the stream.
    void watch_peer() {
        sock.async_read_some(asio::buffer(sink), [self = shared_from_this()](error_code ec, std::size_t) {
            if (ec) {
                if (self->stream) self->stream->close();
                return;
            }
            self->watch_peer();
        });
    }

    /// close(): a stream ends with its last chunk (within close_grace); anything else is cut.
    void stop() {
        error_code ec;
        if (stream) {
            stream->close();
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

void make_dirs_0700(const std::filesystem::path& dir) {
    std::filesystem::path p;
    for (const auto& part : dir) {
        p /= part;
        if (::mkdir(p.c_str(), 0700) != 0 && errno != EEXIST)
            throw std::system_error(errno, std::generic_category(),
                                    "cannot create the directory '" + p.string() + "'");
    }
}

} // namespace

// ---- the server --------------------------------------------------------------------------------

struct control_server::impl : std::enable_shared_from_this<impl> {
    impl(asio::any_io_executor e, supervisor& s, control_hooks h)
        : ex(std::move(e)), sup(&s), hooks(std::move(h)), acceptor(ex) {}

    asio::any_io_executor ex;
    supervisor* sup;
    control_hooks hooks;
    local::acceptor acceptor;
    std::string path;
    dev_t dev = 0;
    ino_t ino = 0;
    bool bound = false;
    bool closed = false;
    std::unordered_map<connection*, std::weak_ptr<connection>> conns;

    void close() {
        if (closed) return;
        closed = true;
        error_code ec;
        acceptor.close(ec);
        // Copied first: a connection that ends erases itself from the map.
        std::vector<std::shared_ptr<connection>> open;
        for (auto& [p, w] : conns)
            if (auto c = w.lock()) open.push_back(std::move(c));
        for (auto& c : open) c->stop();
        if (bound) {
            // Only our own socket: another drover up may have replaced a path we lost.
            struct stat st {};
            if (::lstat(path.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino)
                ::unlink(path.c_str());
        }
    }

    static asio::awaitable<void> accept_loop(std::shared_ptr<impl> self) {
        for (;;) {
            error_code ec;
            local::socket sock =
                co_await self->acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
            if (self->closed || ec == asio::error::operation_aborted) co_return;
            if (ec) {
                // EMFILE and the like: pause instead of spinning on the same error.
                asio::steady_timer t(self->ex, 100ms);
                co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
                if (self->closed) co_return;
                continue;
            }
            if (self->conns.size() >= max_connections) {
                reject_busy(sock);
                continue;
            }
            auto c = std::make_shared<connection>(std::move(sock));
            self->conns.emplace(c.get(), c);
            asio::co_spawn(self->ex, session(self, c), [](std::exception_ptr) {});
        }
    }

    static void reject_busy(local::socket& sock) {
        // A few hundred bytes fit in any socket buffer: written without waiting.
        const std::string body =
            harden_json(json::serialize(error_json("busy", "too many connections to drover up"))) + "\n";
        const std::string msg =
            fmt::format("HTTP/1.1 503 Service Unavailable\r\nServer: drover\r\nContent-Type: "
                        "application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                        body.size(), body);
        error_code ec;
        sock.non_blocking(true, ec);
        sock.write_some(asio::buffer(msg), ec);
        sock.close(ec);
    }

    static asio::awaitable<void> session(std::shared_ptr<impl> self, std::shared_ptr<connection> c) {
        try {
            co_await serve(self, c);
        } catch (...) {
            // Out of memory or a bug in one request: that connection ends, the server goes on.
        }
        error_code ec;
        c->timer.cancel();
        c->sock.close(ec);
        self->conns.erase(c.get());
    }

    static asio::awaitable<bool> send(connection& c, response res) {
        error_code ec;
        c.arm(io_timeout);
        co_await http::async_write(c.sock, res, asio::redirect_error(asio::use_awaitable, ec));
        c.disarm();
        co_return !ec && res.keep_alive();
    }

    static asio::awaitable<void> serve(std::shared_ptr<impl> self, std::shared_ptr<connection> c) {
        const bool allowed = peer_allowed(c->sock.native_handle());
        boost::beast::flat_buffer buf;
        for (;;) {
            http::request_parser<http::string_body> parser;
            parser.header_limit(max_header);
            parser.body_limit(max_body);
            error_code ec;
            c->arm(io_timeout);
            co_await http::async_read(c->sock, buf, parser, asio::redirect_error(asio::use_awaitable, ec));
            c->disarm();
            if (self->closed) co_return;
            if (ec) {
                if (ec.category() != http::make_error_code(http::error::bad_target).category() ||
                    ec == http::error::end_of_stream || ec == http::error::partial_message)
                    co_return; // gone, timed out or closed: nobody to answer
                request req;
                req.version(11);
                req.keep_alive(false);
                response res = ec == http::error::body_limit
                                   ? error_response(req, http::status::payload_too_large, "too_large",
                                                    "request body over 64 KiB")
                                   : error_response(req, http::status::bad_request, "bad_request",
                                                    "malformed request: " + ec.message());
                co_await send(*c, std::move(res));
                co_return;
            }
            request& req = parser.get();
            if (!allowed) {
                req.keep_alive(false);
                response res = error_response(req, http::status::forbidden, "forbidden",
                                              "only the user running drover up (or root) may use its socket");
                co_await send(*c, std::move(res));
                co_return;
            }
            if (!co_await handle(self, c, req)) co_return;
        }
    }

    /// Answers one request; whether the connection may serve another.
    static asio::awaitable<bool> handle(std::shared_ptr<impl> self, std::shared_ptr<connection> c,
                                        request& req) {
        auto reply = [&](response res) { return send(*c, std::move(res)); };
        auto error = [&](http::status s, std::string_view code, std::string_view msg) {
            return send(*c, error_response(req, s, code, msg));
        };
        auto not_allowed = [&](std::string_view allow) {
            response res = error_response(req, http::status::method_not_allowed, "method_not_allowed",
                                          fmt::format("{} is not allowed on {} (use {})",
                                                      std::string_view(req.method_string()),
                                                      escape(std::string_view(req.target())), allow));
            res.set(http::field::allow, allow);
            return send(*c, std::move(res));
        };

        const auto t = parse_target(std::string_view(req.target()));
        if (!t)
            co_return co_await error(http::status::bad_request, "bad_request", "malformed percent-encoding");
        const auto& seg = t->segments;
        const auto method = req.method();
        const auto not_found = [&] {
            return error(http::status::not_found, "not_found",
                         fmt::format("no such endpoint: {}", escape(std::string_view(req.target()))));
        };
        if (!t->v1) co_return co_await not_found();
        supervisor& sup = *self->sup;

        if (seg.size() == 1 && seg[0] == "services") {
            if (method != http::verb::get) co_return co_await not_allowed("GET");
            json::array list;
            for (const auto& st : sup.status()) list.push_back(status_json(st));
            json::object o;
            o["services"] = std::move(list);
            co_return co_await reply(json_response(req, http::status::ok, o));
        }
        if (seg.size() >= 2 && seg.size() <= 3 && seg[0] == "services" && !seg[1].empty()) {
            const std::string& name = seg[1];
            const std::string action = seg.size() == 3 ? seg[2] : std::string();
            const bool is_op = action == "start" || action == "stop" || action == "restart";
            if (seg.size() == 3 && !is_op && action != "logs") co_return co_await not_found();
            if (is_op && method != http::verb::post) co_return co_await not_allowed("POST");
            if (!is_op && method != http::verb::get) co_return co_await not_allowed("GET");
            const auto st = sup.status(name);
            if (!st)
                co_return co_await error(http::status::not_found, "unknown_service",
                                         unknown_service_message(sup, name));
            if (action.empty())
                co_return co_await reply(json_response(req, http::status::ok, status_json(*st)));
            if (action == "logs") co_return co_await logs(self, c, req, *t, name);
            co_return co_await operation(self, c, req, action, name);
        }
        if (seg.size() == 1 && seg[0] == "events") {
            if (method != http::verb::get) co_return co_await not_allowed("GET");
            co_await events(self, c, req);
            co_return false;
        }
        if (seg.size() == 1 && seg[0] == "reload") {
            if (method != http::verb::post) co_return co_await not_allowed("POST");
            if (!self->hooks.reload)
                co_return co_await error(http::status::not_implemented, "not_supported",
                                         "this drover up cannot reload");
            auto problem = co_await async_call_reload(self);
            if (problem)
                co_return co_await error(http::status::unprocessable_entity, "invalid_config", *problem);
            co_return co_await reply(ok_response(req));
        }
        if (seg.size() == 1 && seg[0] == "shutdown") {
            if (method != http::verb::post) co_return co_await not_allowed("POST");
            req.keep_alive(false);
            co_await send(*c, ok_response(req, http::status::accepted));
            // After the answer: the hook may close the server (this connection with it).
            if (!self->closed && self->hooks.shutdown) self->hooks.shutdown();
            co_return false;
        }
        co_return co_await not_found();
    }

    static asio::awaitable<std::optional<std::string>> async_call_reload(std::shared_ptr<impl> self) {
        return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::optional<std::string>)>(
            [self](auto handler) {
                using handler_t = decltype(handler);
                auto h = std::make_shared<handler_t>(std::move(handler));
                // Posted: the hook may answer from inside the call.
                self->hooks.reload([h, ex = self->ex](std::optional<std::string> problem) {
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
        if (!ec) co_return co_await send(*c, (ok_response(req)));

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
        co_return co_await send(*c, (error_response(req, status, code, message)));
    }

    /// Writes the header of a streamed answer: chunked for HTTP/1.1, delimited by the close
    /// for HTTP/1.0 (which has no chunks).
    static asio::awaitable<bool> stream_header(connection& c, const request& req, std::string_view type) {
        http::response<http::empty_body> res{http::status::ok, req.version()};
        res.set(http::field::server, "drover");
        res.set(http::field::content_type, type);
        res.set(http::field::cache_control, "no-store");
        res.keep_alive(false);
        if (req.version() >= 11) res.chunked(true);
        http::response_serializer<http::empty_body> sr{res};
        error_code ec;
        c.arm(io_timeout);
        co_await http::async_write_header(c.sock, sr, asio::redirect_error(asio::use_awaitable, ec));
        c.disarm();
        co_return !ec;
    }

    static asio::awaitable<bool> stream_piece(connection& c, bool chunked, const std::string& data) {
        if (data.empty()) co_return true; // an empty chunk would end the body
        error_code ec;
        c.arm(io_timeout);
        if (chunked)
            co_await asio::async_write(c.sock, http::make_chunk(asio::buffer(data)),
                                       asio::redirect_error(asio::use_awaitable, ec));
        else
            co_await asio::async_write(c.sock, asio::buffer(data),
                                       asio::redirect_error(asio::use_awaitable, ec));
        c.disarm();
        co_return !ec;
    }

    static asio::awaitable<void> stream_end(connection& c, bool chunked) {
        if (!chunked) co_return;
        error_code ec;
        c.arm(close_grace);
        co_await asio::async_write(c.sock, http::make_chunk_last(),
                                   asio::redirect_error(asio::use_awaitable, ec));
        c.disarm();
    }

    /// Forwards events through `fmt_event` (empty: skipped) until the stream ends.
    template <typename Format>
    static asio::awaitable<void> pump(std::shared_ptr<impl> self, std::shared_ptr<connection> c, bool chunked,
                                      Format fmt_event) {
        c->watch_peer();
        for (;;) {
            error_code ec;
            supervisor_event ev = co_await c->stream->next(asio::redirect_error(asio::use_awaitable, ec));
            if (ec || self->closed) break;
            if (!co_await stream_piece(*c, chunked, fmt_event(ev))) co_return;
        }
        co_await stream_end(*c, chunked);
    }

    static asio::awaitable<void> events(std::shared_ptr<impl> self, std::shared_ptr<connection> c,
                                        request& req) {
        c->stream = std::make_shared<event_stream>(self->sup->subscribe());
        const bool chunked = req.version() >= 11;
        if (!co_await stream_header(*c, req, "application/x-ndjson")) co_return;
        co_await pump(self, c, chunked, [](const supervisor_event& ev) {
            return harden_json(json::serialize(event_json(ev))) + "\n";
        });
    }

    static asio::awaitable<bool> logs(std::shared_ptr<impl> self, std::shared_ptr<connection> c, request& req,
                                      const target& t, const std::string& name) {
        std::size_t n = SIZE_MAX;
        bool follow = false;
        bool as_json = false;
        for (const auto& [key, value] : t.query) {
            if (key == "n") {
                const auto v = parse_count(value);
                if (!v)
                    co_return co_await send(
                        *c, (error_response(req, http::status::bad_request, "bad_request",
                                            fmt::format("n '{}' is not a number of lines", escape(value)))));
                n = *v;
            } else if (key == "follow") {
                const auto v = parse_flag(value);
                if (!v)
                    co_return co_await send(
                        *c, (error_response(req, http::status::bad_request, "bad_request",
                                            fmt::format("follow '{}' is not 0 or 1", escape(value)))));
                follow = *v;
            } else if (key == "format") {
                if (value != "json" && value != "text")
                    co_return co_await send(
                        *c, (error_response(req, http::status::bad_request, "bad_request",
                                            fmt::format("format '{}' is not text or json", escape(value)))));
                as_json = value == "json";
            }
            // Unknown parameters are ignored, as HTTP APIs usually do: a newer client can ask
            // for more without breaking against an older server.
        }
        auto format_line = [as_json](wall_clock::time_point time, int stream, const std::string& text,
                                     std::uint64_t dropped) {
            if (as_json) return harden_json(json::serialize(line_json(time, stream, text, dropped))) + "\n";
            return escape(text) + "\n";
        };
        // Subscribed before the kept lines are read, in the same handler: no line is missed or
        // shown twice between the two.
        if (follow) c->stream = std::make_shared<event_stream>(self->sup->subscribe());
        std::string kept;
        for (const auto& line : self->sup->logs(name, n))
            kept += format_line(line.time, line.stream, line.text, line.dropped);
        const std::string_view type = as_json ? "application/x-ndjson" : "text/plain; charset=utf-8";
        if (!follow)
            co_return co_await send(*c, (make_response(req, http::status::ok, std::move(kept), type)));

        const bool chunked = req.version() >= 11;
        if (!co_await stream_header(*c, req, type)) co_return false;
        if (!co_await stream_piece(*c, chunked, kept)) co_return false;
        co_await pump(self, c, chunked, [&](const supervisor_event& ev) -> std::string {
            using kind = supervisor_event::kind;
            if (ev.type == kind::lost) {
                if (as_json) {
                    json::object o;
                    o["type"] = "lost";
                    o["count"] = ev.count;
                    return harden_json(json::serialize(o)) + "\n";
                }
                return "[drover: lines lost: this reader fell behind]\n";
            }
            if (ev.type != kind::output || ev.service != name) return {};
            return format_line(ev.time, ev.stream, ev.text, 0);
        });
        co_return false;
    }
};

control_server::control_server(asio::any_io_executor ex, supervisor& sup, control_hooks hooks)
    : impl_(std::make_shared<impl>(std::move(ex), sup, std::move(hooks))) {}

control_server::~control_server() {
    impl_->close();
}

const std::string& control_server::path() const noexcept {
    return impl_->path;
}

void control_server::close() {
    impl_->close();
}

void control_server::listen(const std::string& path) {
    if (impl_->bound || impl_->closed) throw std::logic_error("control_server::listen called twice");
    if (path.empty()) throw std::runtime_error("the control socket path is empty");
    if (path.size() > max_socket_path)
        throw std::runtime_error(
            fmt::format("the control socket path '{}' is too long ({} bytes; a unix socket "
                        "path has at most {})",
                        escape(path), path.size(), max_socket_path));
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) make_dirs_0700(parent);

    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            throw std::runtime_error(
                fmt::format("'{}' exists and is not a socket: not replacing it", escape(path)));
        // A socket file outlives the drover up that made it if that one died: a connect tells.
        // Non-blocking, so a live server with a full backlog (EAGAIN) counts as live.
        const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        path.copy(addr.sun_path, path.size());
        const int r = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
        const int err = errno;
        ::close(fd);
        if (r == 0 || err == EAGAIN)
            throw std::runtime_error(fmt::format("another drover up is listening on '{}'", escape(path)));
        if (err != ECONNREFUSED)
            throw std::system_error(err, std::generic_category(),
                                    fmt::format("cannot check the existing socket '{}'", escape(path)));
        if (::unlink(path.c_str()) != 0 && errno != ENOENT)
            throw std::system_error(errno, std::generic_category(),
                                    fmt::format("cannot remove the stale socket '{}'", escape(path)));
    } else if (errno != ENOENT) {
        throw std::system_error(errno, std::generic_category(),
                                fmt::format("cannot stat '{}'", escape(path)));
    }

    auto& acc = impl_->acceptor;
    error_code ec;
    acc.open(local(), ec);
    if (ec) throw std::system_error(ec.value(), std::generic_category(), "cannot create the control socket");
    // The file is created by bind() with the umask's mode; no moment at which another user
    // could connect to it. The chmod after makes the mode exact whatever the umask gave.
    const mode_t old = ::umask(0177);
    acc.bind(local::endpoint(path), ec);
    ::umask(old);
    if (ec) {
        acc.close();
        throw std::system_error(ec.value(), std::generic_category(),
                                fmt::format("cannot bind '{}'", escape(path)));
    }
    impl_->path = path;
    impl_->bound = true;
    if (::chmod(path.c_str(), 0600) != 0 || ::lstat(path.c_str(), &st) != 0) {
        const int err = errno;
        impl_->close();
        throw std::system_error(err, std::generic_category(),
                                fmt::format("cannot set the mode of '{}'", escape(path)));
    }
    impl_->dev = st.st_dev;
    impl_->ino = st.st_ino;
    acc.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        impl_->close();
        throw std::system_error(ec.value(), std::generic_category(),
                                fmt::format("cannot listen on '{}'", escape(path)));
    }
    asio::co_spawn(impl_->ex, impl::accept_loop(impl_), [](std::exception_ptr) {});
}

// ---- default_socket_path -----------------------------------------------------------------------

std::string default_socket_path(const std::string& config_path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::path abs = fs::absolute(config_path, ec);
    if (ec) abs = fs::path(config_path);
    fs::path dir = abs.parent_path();
    // Resolved, so a project reached through a symlink gets the same socket either way.
    if (fs::path canon = fs::weakly_canonical(dir, ec); !ec) dir = canon;
    dir = dir.lexically_normal();
    std::string key = dir.string();
    if (key.size() > 1 && key.back() == '/') key.pop_back();

    std::string runtime;
    if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x != nullptr && *x != '\0')
        runtime = std::string(x) + "/drover";
    else if (::geteuid() == 0)
        runtime = "/run/drover";
    else
        return (dir / ".drover.sock").string();

    std::uint64_t h = 14695981039346656037ULL; // FNV-1a: stable across runs and builds
    for (unsigned char ch : key) {
        h ^= ch;
        h *= 1099511628211ULL;
    }
    const std::string hash = fmt::format("{:016x}", h);
    std::string label = dir.filename().string();
    if (label.empty()) label = "root";
    for (char& ch : label) {
        const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                        ch == '-' || ch == '_' || ch == '.';
        if (!ok) ch = '_';
    }
    if (label.size() > 32) label.resize(32);
    if (label[0] == '.') label[0] = '_'; // no hidden files
    std::string full = fmt::format("{}/{}-{}.sock", runtime, label, hash);
    if (full.size() <= max_socket_path) return full;
    return fmt::format("{}/{}.sock", runtime, hash);
}

} // namespace drover::up
