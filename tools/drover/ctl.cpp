// drover (the program): `drover ctl`, the control API's client (see ctl.hpp and control.hpp).
#include "ctl.hpp"
#include "up_log.hpp"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <string.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <ostream>
#include <system_error>
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "drover/escape.hpp"

namespace drover::ctl {

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using local = asio::local::stream_protocol;
using boost::system::error_code;
using clk = std::chrono::steady_clock;
using namespace std::chrono_literals;

/// Kept answers are bounded by the services' kept lines (1000 of at most 16 KiB by default):
/// this is far above that, and still a bound.
constexpr std::uint64_t max_reply = 256ULL * 1024 * 1024;

/// The connection could not be made: exit status 3.
struct unreachable : std::system_error {
    using std::system_error::system_error;
};

std::string encode(std::string_view s) {
    std::string out;
    for (unsigned char ch : s) {
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
            ch == '_' || ch == '.' || ch == '~')
            out += static_cast<char>(ch);
        else
            out += fmt::format("%{:02X}", ch);
    }
    return out;
}

/// One connection to drover up; requests one after another on it.
class connection {
public:
    explicit connection(const std::string& path) : sock_(io_) {
        error_code ec;
        sock_.connect(local::endpoint(path), ec);
        if (ec) throw unreachable(ec.value(), std::generic_category(), path);
        // The other side must be our own user's drover up (or root's): a socket in a shared
        // directory could be anyone's, and what it answers is printed to a terminal.
        struct ucred cred {};
        socklen_t len = sizeof cred;
        if (::getsockopt(sock_.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
            (cred.uid != ::geteuid() && cred.uid != 0))
            throw unreachable(EACCES, std::generic_category(),
                              path + " belongs to another user's process (uid " + std::to_string(cred.uid) +
                                  ")");
    }

    void send(std::string_view method, std::string_view target) {
        http::request<http::empty_body> req{http::string_to_verb(method), target, 11};
        req.set(http::field::host, "drover");
        req.set(http::field::user_agent, "drover-ctl");
        req.keep_alive(true);
        error_code ec;
        http::write(sock_, req, ec);
        if (ec) throw std::system_error(ec, "cannot send the request");
    }

    ctl_reply read() {
        http::response_parser<http::string_body> p;
        p.body_limit(max_reply);
        error_code ec;
        http::read(sock_, buf_, p, ec);
        if (ec) throw std::system_error(ec, "no answer");
        auto& res = p.get();
        return {static_cast<int>(res.result_int()), std::string(res[http::field::content_type]),
                std::move(res.body())};
    }

    ctl_reply call(std::string_view method, std::string_view target) {
        send(method, target);
        return read();
    }

    /// A streamed answer: `on_data` gets the body piece by piece, as it arrives. The status.
    /// An answer other than 200 is collected whole into `error_body` instead.
    int stream(std::string_view target, const std::function<void(std::string_view)>& on_data,
               std::string& error_body) {
        send("GET", target);
        http::response_parser<http::buffer_body> p;
        p.body_limit(boost::none); // a stream has no end: each piece is bounded instead
        error_code ec;
        http::read_header(sock_, buf_, p, ec);
        if (ec) throw std::system_error(ec, "no answer");
        const int status = static_cast<int>(p.get().result_int());
        char piece[16384];
        while (!p.is_done()) {
            p.get().body().data = piece;
            p.get().body().size = sizeof piece;
            http::read_some(sock_, buf_, p, ec);
            if (ec == http::error::need_buffer) ec = {};
            if (ec) throw std::system_error(ec, "drover up broke off the stream");
            const std::string_view got(piece, sizeof piece - p.get().body().size);
            if (status == 200)
                on_data(got);
            else if (error_body.size() < 65536)
                error_body.append(got);
        }
        return status;
    }

    asio::io_context& io() { return io_; }
    local::socket& socket() { return sock_; }
    boost::beast::flat_buffer& buffer() { return buf_; }

private:
    asio::io_context io_;
    local::socket sock_;
    boost::beast::flat_buffer buf_;
};

/// The message of an error answer ({"error": {"message": ...}}), or a description of it.
std::string error_message(int status, std::string_view body) {
    error_code ec;
    const json::value v = json::parse(body, ec);
    if (!ec && v.is_object()) {
        const auto* e = v.as_object().if_contains("error");
        if (e && e->is_object()) {
            const auto* m = e->as_object().if_contains("message");
            if (m && m->is_string()) return escape(std::string_view(m->as_string()));
        }
    }
    return fmt::format("drover up answered HTTP {}", status);
}

// ---- the table ---------------------------------------------------------------------------------

std::string str(const json::object& o, std::string_view key) {
    const auto* v = o.if_contains(key);
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

std::optional<double> num(const json::object& o, std::string_view key) {
    const auto* v = o.if_contains(key);
    if (!v) return std::nullopt;
    if (v->is_double()) return v->as_double();
    if (v->is_int64()) return static_cast<double>(v->as_int64());
    if (v->is_uint64()) return static_cast<double>(v->as_uint64());
    return std::nullopt;
}

std::string last_exit(const json::object& o) {
    if (const auto code = num(o, "last_exit_code")) return fmt::format("exit {}", static_cast<int>(*code));
    if (const auto sig = num(o, "last_exit_signal")) {
        if (const char* abbrev = ::sigabbrev_np(static_cast<int>(*sig))) return fmt::format("SIG{}", abbrev);
        return fmt::format("signal {}", static_cast<int>(*sig));
    }
    const auto* v = o.if_contains("last_exit");
    if (v && v->is_string()) return "unknown";
    return "-";
}

std::string status_table(const std::vector<json::object>& services) {
    std::vector<std::vector<std::string>> rows;
    rows.push_back(
        {"NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST-EXIT", "READY", "HEALTH", "CPU", "RSS"});
    for (const auto& s : services) {
        const auto pid = num(s, "pid");
        auto up = num(s, "uptime_ms");
        auto cpu = num(s, "cpu_ms");
        if (up) *up /= 1000;
        if (cpu) *cpu /= 1000;
        const auto rss = num(s, "rss_bytes");
        const auto restarts = num(s, "restarts");
        const auto* ready = s.if_contains("ready");
        std::string health = str(s, "health");
        if (health.empty() || health == "unknown") health = "-";
        // Names and states are drover's own (checked characters), escaped anyway: the table goes
        // to a terminal and the other end of the socket is another program.
        rows.push_back(
            {escape(str(s, "name")), escape(str(s, "state")),
             pid ? fmt::format("{}", static_cast<long long>(*pid)) : "-", up ? human_duration(*up) : "-",
             restarts ? fmt::format("{}", static_cast<long long>(*restarts)) : "-", last_exit(s),
             ready && ready->is_bool() ? (ready->as_bool() ? "yes" : "no") : "-", escape(health),
             cpu ? human_cpu(*cpu) : "-", rss ? human_bytes(static_cast<std::uint64_t>(*rss)) : "-"});
    }
    std::vector<std::size_t> width(rows.front().size(), 0);
    for (const auto& r : rows)
        for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
    std::string out;
    for (const auto& r : rows) {
        std::string line;
        for (std::size_t i = 0; i < r.size(); ++i) {
            line += r[i];
            if (i + 1 < r.size()) line.append(width[i] - r[i].size() + 2, ' ');
        }
        while (!line.empty() && line.back() == ' ') line.pop_back();
        out += line;
        out += '\n';
    }
    return out;
}

/// The services of a {"services": [...]} answer.
std::optional<std::vector<json::object>> services_of(std::string_view body) {
    error_code ec;
    json::value v = json::parse(body, ec);
    if (ec || !v.is_object()) return std::nullopt;
    auto* list = v.as_object().if_contains("services");
    if (!list || !list->is_array()) return std::nullopt;
    std::vector<json::object> out;
    for (auto& s : list->as_array())
        if (s.is_object()) out.push_back(std::move(s.as_object()));
    return out;
}

/// The statuses to show: all, or those named (in the order named). An error message when one
/// is refused.
struct statuses {
    std::vector<json::object> services;
    std::vector<std::string> errors;
};

statuses fetch_statuses(connection& c, const std::vector<std::string>& names) {
    statuses r;
    if (names.empty()) {
        const ctl_reply rep = c.call("GET", "/v1/services");
        if (rep.status != 200) {
            r.errors.push_back(error_message(rep.status, rep.body));
            return r;
        }
        auto list = services_of(rep.body);
        if (!list)
            r.errors.push_back("drover up sent a list of services that is not valid JSON");
        else
            r.services = std::move(*list);
        return r;
    }
    for (const auto& name : names) {
        const ctl_reply rep = c.call("GET", "/v1/services/" + encode(name));
        error_code ec;
        json::value v = rep.status == 200 ? json::parse(rep.body, ec) : json::value();
        if (rep.status != 200)
            r.errors.push_back(error_message(rep.status, rep.body));
        else if (ec || !v.is_object())
            r.errors.push_back("drover up sent a status that is not valid JSON");
        else
            r.services.push_back(std::move(v.as_object()));
    }
    return r;
}

int run_status(const ctl_request& req, std::ostream& out, spdlog::logger& log) {
    connection c(req.socket);
    statuses s = fetch_statuses(c, req.names);
    for (const auto& e : s.errors) log.error("{}", e);
    if (req.json) {
        json::array list;
        for (auto& o : s.services) list.push_back(std::move(o));
        json::object o;
        o["services"] = std::move(list);
        out << up::harden_json(json::serialize(o)) << '\n';
    } else if (!s.services.empty() || s.errors.empty()) {
        out << status_table(s.services);
    }
    out.flush();
    return s.errors.empty() ? exit_ok : exit_server_error;
}

/// status --watch: the statuses again on each change the event stream shows.
int run_watch(const ctl_request& req, std::ostream& out, spdlog::logger& log) {
    connection events(req.socket);

    // Subscribed (the answer's header read) before the first table: no change falls between.
    events.send("GET", "/v1/events");
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    error_code ec;
    http::read_header(events.socket(), events.buffer(), parser, ec);
    if (ec) throw std::system_error(ec, "no answer");
    if (parser.get().result_int() != 200) {
        log.error("drover up refused the event stream (HTTP {})", parser.get().result_int());
        return exit_server_error;
    }

    asio::io_context& io = events.io();
    asio::steady_timer redraw_timer(io);
    asio::steady_timer tick(io);
    bool pending = false;
    clk::time_point last_draw{};
    std::string last_table;
    std::size_t updates = 0;
    int result = exit_ok;
    bool done = false;

    auto finish = [&](int rc) {
        if (done) return;
        done = true;
        result = rc;
        error_code ignored;
        events.socket().close(ignored);
        redraw_timer.cancel();
        tick.cancel();
    };
    auto draw = [&] {
        pending = false;
        last_draw = clk::now();
        statuses s;
        try {
            // A connection per table: drover up closes one that stays idle for 30 s, and a
            // quiet set of services can go longer than that between two changes.
            connection queries(req.socket);
            s = fetch_statuses(queries, req.names);
        } catch (const std::system_error& e) {
            log.error("lost the connection to drover up: {}", e.what());
            finish(exit_server_error);
            return;
        }
        if (!s.errors.empty()) {
            for (const auto& e : s.errors) log.error("{}", e);
            finish(exit_server_error);
            return;
        }
        const std::string table = status_table(s.services);
        if (req.terminal) {
            out << "\x1b[H\x1b[2J" << table << std::flush;
        } else if (table != last_table) {
            if (updates > 0) out << '\n';
            out << table << std::flush;
        } else {
            return;
        }
        last_table = table;
        if (req.max_updates != 0 && ++updates >= req.max_updates) finish(exit_ok);
    };
    // Bursts (a restart is several events) make one table: at most one draw per 100 ms.
    auto schedule = [&] {
        if (pending || done) return;
        pending = true;
        redraw_timer.expires_at(std::max(clk::now(), last_draw + 100ms));
        redraw_timer.async_wait([&](error_code e) {
            if (!e && !done) draw();
        });
    };
    std::function<void()> tick_loop = [&] {
        tick.expires_after(1s);
        tick.async_wait([&](error_code e) {
            if (e || done) return;
            schedule();
            tick_loop();
        });
    };

    std::string partial;
    char piece[16384];
    std::function<void()> read_more = [&] {
        if (parser.is_done()) {
            finish(exit_ok); // drover up ended the stream
            return;
        }
        parser.get().body().data = piece;
        parser.get().body().size = sizeof piece;
        http::async_read_some(events.socket(), events.buffer(), parser, [&](error_code e, std::size_t) {
            if (done) return;
            if (e == http::error::need_buffer) e = {};
            if (e) {
                log.error("lost the connection to drover up: {}", e.message());
                finish(exit_server_error);
                return;
            }
            partial.append(piece, sizeof piece - parser.get().body().size);
            std::size_t nl;
            bool changed = false;
            while ((nl = partial.find('\n')) != std::string::npos) {
                error_code pe;
                const json::value ev = json::parse(std::string_view(partial).substr(0, nl), pe);
                partial.erase(0, nl + 1);
                // Output lines do not change the table: they would redraw it for nothing.
                if (!pe && ev.is_object() && str(ev.as_object(), "type") != "output") changed = true;
            }
            if (partial.size() > 1024 * 1024) partial.clear(); // no line is that long: not ours
            if (changed) schedule();
            read_more();
        });
    };

    draw();
    if (!done) {
        read_more();
        if (req.terminal) tick_loop();
        io.run();
    }
    return result;
}

int run_ops(const ctl_request& req, std::ostream& out, spdlog::logger& log) {
    connection c(req.socket);
    int rc = exit_ok;
    for (const auto& name : req.names) {
        const ctl_reply rep = c.call("POST", "/v1/services/" + encode(name) + "/" + req.verb);
        if (rep.status / 100 != 2) {
            log.error("{}", error_message(rep.status, rep.body));
            rc = exit_server_error;
        } else if (req.json) {
            out << rep.body;
        }
    }
    out.flush();
    return rc;
}

int run_simple_post(const ctl_request& req, std::ostream& out, spdlog::logger& log) {
    connection c(req.socket);
    const ctl_reply rep = c.call("POST", "/v1/" + req.verb);
    if (rep.status / 100 != 2) {
        log.error("{}", error_message(rep.status, rep.body));
        return exit_server_error;
    }
    if (req.json) out << rep.body << std::flush;
    return exit_ok;
}

int run_logs(const ctl_request& req, std::ostream& out, spdlog::logger& log) {
    connection c(req.socket);
    std::string target = "/v1/services/" + encode(req.names.front()) + "/logs";
    std::string sep = "?";
    if (req.lines) {
        target += fmt::format("{}n={}", sep, *req.lines);
        sep = "&";
    }
    if (req.follow) {
        target += sep + "follow=1";
        sep = "&";
    }
    if (req.json) target += sep + "format=json";
    std::string error_body;
    const int status = c.stream(
        target,
        [&](std::string_view data) {
            if (!data.empty()) out.write(data.data(), static_cast<std::streamsize>(data.size())).flush();
        },
        error_body);
    if (status != 200) {
        log.error("{}", error_message(status, error_body));
        return exit_server_error;
    }
    return exit_ok;
}

std::optional<std::string> usage_problem(const ctl_request& req) {
    const std::string& v = req.verb;
    const bool op = v == "start" || v == "stop" || v == "restart";
    if (v != "status" && !op && v != "logs" && v != "reload" && v != "shutdown")
        return fmt::format("unknown command '{}' (status, start, stop, restart, logs, reload or shutdown)",
                           escape(v));
    if (op && req.names.empty()) return fmt::format("{} needs at least one service name", v);
    if (v == "logs" && req.names.size() != 1) return "logs takes exactly one service name";
    if ((v == "reload" || v == "shutdown") && !req.names.empty())
        return fmt::format("{} takes no service name", v);
    if (req.follow && v != "logs") return "--follow is for logs";
    if (req.lines && v != "logs") return "-n is for logs";
    if (req.watch && v != "status") return "--watch is for status";
    if (req.watch && req.json) return "--watch shows tables: it does not go with --json";
    if (req.socket.empty()) return "no control socket given";
    return std::nullopt;
}

} // namespace

int ctl_main(const ctl_request& req, std::ostream& out, spdlog::logger& log) {
    if (const auto problem = usage_problem(req)) {
        log.error("ctl: {}", *problem);
        return exit_usage;
    }
    try {
        if (req.verb == "status") return req.watch ? run_watch(req, out, log) : run_status(req, out, log);
        if (req.verb == "logs") return run_logs(req, out, log);
        if (req.verb == "reload" || req.verb == "shutdown") return run_simple_post(req, out, log);
        return run_ops(req, out, log);
    } catch (const unreachable& e) {
        const int err = e.code().value();
        if (err == ENOENT || err == ECONNREFUSED)
            log.error("no drover up is listening on {} (start one with `drover up`, or give --socket)",
                      escape(req.socket));
        else if (err == EACCES && std::string_view(e.what()).find("another user") != std::string_view::npos)
            log.error("refusing {}: {}", escape(req.socket), escape(e.what()));
        else
            log.error("cannot connect to {}: {}", escape(req.socket), ::strerror(err));
        return exit_unreachable;
    } catch (const std::system_error& e) {
        log.error("drover up at {}: {}", escape(req.socket), e.what());
        return exit_server_error;
    }
}

ctl_reply ctl_call(const std::string& socket, std::string_view method, std::string_view target) {
    connection c(socket);
    return c.call(method, target);
}

std::string human_duration(double seconds) {
    if (!(seconds >= 0)) return "-";
    const auto s = static_cast<long long>(seconds);
    if (s < 60) return fmt::format("{}s", s);
    if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
    if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
    return fmt::format("{}d{:02}h", s / 86400, s % 86400 / 3600);
}

std::string human_cpu(double seconds) {
    if (!(seconds >= 0)) return "-";
    if (seconds < 60) return fmt::format("{:.2f}s", seconds);
    return human_duration(seconds);
}

std::string human_bytes(std::uint64_t bytes) {
    if (bytes < 1024) return fmt::format("{}B", bytes);
    static constexpr const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = static_cast<double>(bytes) / 1024;
    std::size_t u = 0;
    while (v >= 1024 && u + 1 < std::size(units)) {
        v /= 1024;
        ++u;
    }
    return fmt::format("{:.1f}{}", v, units[u]);
}

} // namespace drover::ctl
