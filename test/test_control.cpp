// The control API of `drover up` (tools/drover/control.cpp) and its client `drover ctl`
// (tools/drover/ctl.cpp): a real supervisor on its own thread, the server on a socket in a
// temporary directory, and the client talking to it as `drover ctl` does.
#include "control.hpp"
#include "drover/http_api.hpp"
#include "ctl.hpp"

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <future>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "support.hpp"

using namespace drover;
using namespace drover::test;
using namespace std::chrono_literals;
namespace http = boost::beast::http;
namespace json = boost::json;
using local = asio::local::stream_protocol;

// ctl_request is filled with designated initializers, the other fields keeping their defaults.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace {

service sleeper() {
    return service("sleeper", command("/bin/sleep", {"1000"}));
}

/// Prints five lines, then sleeps; ready once the fifth is out (so logs() holds all five).
service printer() {
    service s("printer",
              command("/bin/sh", {"-c", "for i in 1 2 3 4 5; do echo line $i; done; exec sleep 1000"}));
    s.ready = readiness::log("line 5");
    return s;
}

/// A line every 50 ms, numbered from 1.
service ticker() {
    return service("ticker",
                   command("/bin/sh", {"-c", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.05; done"}));
}

/// A supervisor and a control server on an io_context run by a thread of their own; the test's
/// thread is the client, as `drover ctl` is another process.
struct control_fixture {
    asio::io_context ctx;
    supervisor sup{ctx.get_executor()};
    std::atomic<int> shutdowns{0};
    std::atomic<int> reloads{0};
    std::optional<std::string> reload_problem; ///< what the reload hook answers
    up::control_server server{ctx.get_executor(), sup, hooks()};
    temp_dir dir;
    std::string path = (dir.path / "run" / "ctl.sock").string();
    std::thread loop;

    explicit control_fixture(std::vector<service> services = {sleeper(), printer()}) {
        std::vector<std::string> names;
        for (auto& s : services) {
            names.push_back(s.name);
            sup.add(std::move(s));
        }
        server.listen(path);
        loop = std::thread([this] {
            auto guard = asio::make_work_guard(ctx);
            ctx.run();
        });
        for (const auto& n : names) REQUIRE_MESSAGE(!start(n), "service '" << n << "' did not start");
    }
    ~control_fixture() {
        post([this] {
            server.close();
            sup.async_shutdown(10s, [this](error_code) { ctx.stop(); });
        });
        loop.join();
    }

    up::control_hooks hooks() {
        up::control_hooks h;
        h.reload = [this](std::function<void(std::optional<std::string>)> done) {
            ++reloads;
            done(reload_problem);
        };
        h.shutdown = [this] { ++shutdowns; };
        return h;
    }

    /// Runs `f` on the loop's thread.
    void post(std::function<void()> f) { asio::post(ctx, std::move(f)); }
    /// Runs `f` on the loop's thread and waits for it.
    template <typename F>
    auto on_loop(F f) {
        std::packaged_task<decltype(f())()> task(std::move(f));
        auto fut = task.get_future();
        asio::post(ctx, [&task] { task(); });
        return fut.get();
    }
    error_code start(const std::string& name) {
        std::promise<error_code> p;
        auto fut = p.get_future();
        post([&] { sup.async_start(name, [&](error_code ec) { p.set_value(ec); }); });
        REQUIRE(fut.wait_for(30s) == std::future_status::ready);
        return fut.get();
    }
};

json::object parse_object(const std::string& body) {
    json::value v = json::parse(body);
    REQUIRE(v.is_object());
    return v.as_object();
}

json::object status_of(const std::string& path, const std::string& name) {
    const auto rep = ctl::ctl_call(path, "GET", "/v1/services/" + name);
    REQUIRE(rep.status == 200);
    return parse_object(rep.body);
}

/// A logger writing into a string, as `drover ctl`'s stderr.
struct captured_log {
    std::ostringstream text;
    std::shared_ptr<spdlog::logger> log;
    captured_log() {
        auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text);
        log = std::make_shared<spdlog::logger>("ctl-test", sink);
        log->set_pattern("%v");
    }
};

/// An output stream whose flushes another thread can wait for: `drover ctl` flushes after each
/// table and each piece of a followed log.
struct flush_counter : std::stringbuf {
    std::mutex m;
    std::condition_variable cv;
    int flushes = 0;
    std::size_t lines = 0; ///< newlines written so far, as of the last flush
    int sync() override {
        // Called by the writing thread: str() is safe here.
        const std::string text = str();
        const auto n = static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
        {
            std::lock_guard lk(m);
            ++flushes;
            lines = n;
        }
        cv.notify_all();
        return 0;
    }
    bool wait_for(int n, std::chrono::seconds limit = 20s) {
        std::unique_lock lk(m);
        return cv.wait_for(lk, limit, [&] { return flushes >= n; });
    }
    bool wait_for_lines(std::size_t n, std::chrono::seconds limit = 20s) {
        std::unique_lock lk(m);
        return cv.wait_for(lk, limit, [&] { return lines >= n; });
    }
};

/// A raw streaming client (/v1/events, followed logs): reads the body line by line, each read
/// bounded in time.
struct stream_reader {
    asio::io_context io;
    local::socket sock{io};
    boost::beast::flat_buffer buf;
    http::response_parser<http::buffer_body> parser;
    std::string pending;
    int status = 0;

    stream_reader(const std::string& path, const std::string& target) {
        sock.connect(local::endpoint(path));
        http::request<http::empty_body> req{http::verb::get, target, 11};
        req.set(http::field::host, "drover");
        http::write(sock, req);
        parser.body_limit(boost::none);
        http::read_header(sock, buf, parser);
        status = static_cast<int>(parser.get().result_int());
    }
    /// The next line, or nothing at the end of the stream (or after `limit`).
    std::optional<std::string> next_line(std::chrono::seconds limit = 20s) {
        for (;;) {
            if (const auto nl = pending.find('\n'); nl != std::string::npos) {
                std::string line = pending.substr(0, nl);
                pending.erase(0, nl + 1);
                return line;
            }
            if (parser.is_done()) return std::nullopt;
            char piece[4096];
            parser.get().body().data = piece;
            parser.get().body().size = sizeof piece;
            bool finished = false;
            error_code ec;
            http::async_read_some(sock, buf, parser, [&](error_code e, std::size_t) {
                ec = e;
                finished = true;
            });
            io.restart();
            io.run_for(limit);
            if (!finished) {
                sock.close();
                io.restart();
                io.run();
                return std::nullopt;
            }
            if (ec == http::error::need_buffer) ec = {};
            if (ec) return std::nullopt;
            pending.append(piece, sizeof piece - parser.get().body().size);
        }
    }
};

/// Sends `raw` bytes on a new connection and returns everything the server answers until it
/// closes (or 10 s pass).
std::string raw_exchange(const std::string& path, const std::string& raw) {
    asio::io_context io;
    local::socket sock(io);
    sock.connect(local::endpoint(path));
    asio::write(sock, asio::buffer(raw));
    std::string got;
    char piece[4096];
    std::function<void()> read = [&] {
        sock.async_read_some(asio::buffer(piece), [&](error_code ec, std::size_t n) {
            got.append(piece, n);
            if (!ec) read();
        });
    };
    read();
    io.run_for(10s);
    return got;
}

} // namespace

TEST_SUITE("control") {

    TEST_CASE("status lists the services in the supervisor's order, with their pids") {
        control_fixture f;
        const auto rep = ctl::ctl_call(f.path, "GET", "/v1/services");
        CHECK(rep.status == 200);
        CHECK(rep.content_type == "application/json");
        const auto o = parse_object(rep.body);
        const auto& list = o.at("services").as_array();
        REQUIRE(list.size() == 2);
        CHECK(list[0].at("name").as_string() == "sleeper");
        CHECK(list[1].at("name").as_string() == "printer");
        // The sleeper has no readiness check: running; the printer's passed: ready.
        CHECK(list[0].at("state").as_string() == "running");
        CHECK(list[1].at("state").as_string() == "ready");
        for (const auto& s : list) {
            const auto& so = s.as_object();
            CHECK(so.at("pid").is_int64());
            CHECK(so.at("last_exit").is_null());
            CHECK(so.at("restarts").to_number<int>() == 0);
            if (portable_backend()) { // no /proc introspection there: the fields are null
                CHECK(so.at("rss_bytes").is_null());
                CHECK(so.at("uptime_ms").is_null());
                CHECK(so.at("cpu_ms").is_null());
            } else {
                CHECK(so.at("rss_bytes").to_number<std::uint64_t>() > 0);
                CHECK(so.at("uptime_ms").to_number<std::int64_t>() >= 0);
                CHECK(so.at("cpu_ms").to_number<std::int64_t>() >= 0);
            }
            CHECK(std::regex_match(std::string(so.at("since").as_string()),
                                   std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
        }

        captured_log log;
        std::ostringstream out;
        ctl::ctl_request req{.socket = f.path, .verb = "status"};
        CHECK(ctl::ctl_main(req, out, *log.log) == ctl::exit_ok);
        const std::string table = out.str();
        INFO(table);
        CHECK(std::regex_search(
            table,
            std::regex(R"(^NAME +STATE +PID +UPTIME +RESTARTS +LAST-EXIT +READY +HEALTH +CPU +RSS\n)")));
        // Uptime, CPU and RSS come from /proc introspection: "-" on the portable backend.
        const bool intro = !portable_backend();
        const std::string uptime = intro ? R"(\d+s)" : "-", cpu = intro ? R"(\d+\.\d\ds)" : "-",
                          rss = intro ? "[0-9.]+[KM]iB" : "-";
        CHECK(std::regex_search(table, std::regex(R"(\nsleeper +running +\d+ +)" + uptime +
                                                  R"( +0 +- +yes +- +)" + cpu + " +" + rss + R"(\n)")));
        CHECK(std::regex_search(table, std::regex(R"(\nprinter +ready +\d+ +)" + uptime +
                                                  R"( +0 +- +yes +- +)" + cpu + " +" + rss + R"(\n)")));

        std::ostringstream json_out;
        req.json = true;
        req.names = {"printer"};
        CHECK(ctl::ctl_main(req, json_out, *log.log) == ctl::exit_ok);
        const auto one = parse_object(json_out.str());
        REQUIRE(one.at("services").as_array().size() == 1);
        CHECK(one.at("services").as_array()[0].at("name").as_string() == "printer");
    }

    TEST_CASE("restart gives a new pid; stop leaves the service stopped; start brings it back") {
        control_fixture f;
        const auto before = status_of(f.path, "sleeper").at("pid").as_int64();

        auto rep = ctl::ctl_call(f.path, "POST", "/v1/services/sleeper/restart");
        CHECK(rep.status == 200);
        CHECK(parse_object(rep.body).at("ok").as_bool());
        const auto after = status_of(f.path, "sleeper");
        REQUIRE(after.at("pid").is_int64());
        CHECK(after.at("pid").as_int64() != before);
        CHECK(after.at("last_exit").as_string() == "killed by signal 15 (SIGTERM)");

        captured_log log;
        std::ostringstream out;
        ctl::ctl_request req{.socket = f.path, .verb = "stop", .names = {"sleeper", "printer"}};
        CHECK(ctl::ctl_main(req, out, *log.log) == ctl::exit_ok);
        CHECK(out.str().empty());
        for (const char* name : {"sleeper", "printer"}) {
            const auto st = status_of(f.path, name);
            CHECK(st.at("state").as_string() == "stopped");
            CHECK(st.at("pid").is_null());
            CHECK(st.at("uptime_ms").is_null());
            CHECK(st.at("rss_bytes").is_null());
        }
        std::ostringstream table;
        CHECK(ctl::ctl_main({.socket = f.path, .verb = "status", .names = {"sleeper"}}, table, *log.log) ==
              0);
        INFO(table.str());
        CHECK(std::regex_search(table.str(),
                                // RESTARTS 1: the restart asked for above counts.
                                std::regex(R"(\nsleeper +stopped +- +- +1 +SIGTERM +no +- +- +-\n)")));

        req.verb = "start";
        CHECK(ctl::ctl_main(req, out, *log.log) == ctl::exit_ok);
        CHECK(status_of(f.path, "sleeper").at("state").as_string() == "running");
        CHECK(status_of(f.path, "printer").at("state").as_string() == "ready");
        CHECK(log.text.str().empty());
    }

    TEST_CASE("an unknown service is a 404 that suggests the nearest name") {
        control_fixture f;
        auto rep = ctl::ctl_call(f.path, "GET", "/v1/services/sleper");
        CHECK(rep.status == 404);
        auto err = parse_object(rep.body).at("error").as_object();
        CHECK(err.at("code").as_string() == "unknown_service");
        CHECK(err.at("message").as_string() == "no service 'sleper' (did you mean 'sleeper'?)");

        rep = ctl::ctl_call(f.path, "POST", "/v1/services/pritner/restart");
        CHECK(rep.status == 404);
        CHECK(parse_object(rep.body).at("error").at("message").as_string() ==
              "no service 'pritner' (did you mean 'printer'?)");

        rep = ctl::ctl_call(f.path, "GET", "/v1/services/zzz");
        CHECK(parse_object(rep.body).at("error").at("message").as_string() == "no service 'zzz'");

        // ctl goes on with the other names and reports each failure.
        captured_log log;
        std::ostringstream out;
        CHECK(ctl::ctl_main({.socket = f.path, .verb = "restart", .names = {"sleper", "printer"}}, out,
                            *log.log) == ctl::exit_server_error);
        CHECK(log.text.str() == "no service 'sleper' (did you mean 'sleeper'?)\n");
        CHECK(status_of(f.path, "printer").at("state").as_string() == "ready");
    }

    TEST_CASE("a start that fails answers 409 with the service's reason") {
        control_fixture f;
        f.on_loop([&] {
            f.sup.add(service("missing", command("/nonexistent/program", {})));
            return 0;
        });
        const auto rep = ctl::ctl_call(f.path, "POST", "/v1/services/missing/start");
        CHECK(rep.status == 409);
        const auto err = parse_object(rep.body).at("error").as_object();
        CHECK(err.at("code").as_string() == "service_failed");
        INFO(err.at("message").as_string());
        CHECK(err.at("message").as_string().starts_with("service 'missing' failed: "));
        CHECK(std::string_view(err.at("message").as_string()).find("/nonexistent/program") !=
              std::string_view::npos);
    }

    TEST_CASE("logs returns the last N lines, escaped, or as JSON lines") {
        control_fixture f;
        auto rep = ctl::ctl_call(f.path, "GET", "/v1/services/printer/logs?n=3");
        CHECK(rep.status == 200);
        CHECK(rep.content_type == "text/plain; charset=utf-8");
        CHECK(rep.body == "line 3\nline 4\nline 5\n");

        rep = ctl::ctl_call(f.path, "GET", "/v1/services/printer/logs");
        CHECK(rep.body == "line 1\nline 2\nline 3\nline 4\nline 5\n");

        rep = ctl::ctl_call(f.path, "GET", "/v1/services/printer/logs?n=1&format=json");
        CHECK(rep.content_type == "application/x-ndjson");
        const auto line = parse_object(rep.body);
        CHECK(line.at("text").as_string() == "line 5");
        CHECK(line.at("stream").as_string() == "stdout");

        rep = ctl::ctl_call(f.path, "GET", "/v1/services/printer/logs?n=many");
        CHECK(rep.status == 400);

        captured_log log;
        std::ostringstream out;
        CHECK(ctl::ctl_main({.socket = f.path, .verb = "logs", .names = {"printer"}, .lines = 2}, out,
                            *log.log) == 0);
        CHECK(out.str() == "line 4\nline 5\n");
    }

    TEST_CASE("JSON answers escape DEL, C1 and bidirectional controls as well as C0; bad UTF-8 is replaced") {
        // ESC, DEL, CSI (U+009B), RIGHT-TO-LEFT OVERRIDE (U+202E), then two bytes that are not UTF-8.
        service hostile("hostile",
                        command("/bin/sh", {"-c", "printf 'a\\033[31m\\177\\302\\233b\\342\\200\\256c"
                                                  "\\377\\376d\\n'; echo done; exec sleep 1000"}));
        hostile.ready = readiness::log("done");
        control_fixture f({hostile});
        auto rep = ctl::ctl_call(f.path, "GET", "/v1/services/hostile/logs?n=2&format=json");
        REQUIRE(rep.status == 200);
        for (unsigned char c : rep.body)
            CHECK_MESSAGE((c >= 0x20 || c == '\n'), "raw control byte " << int(c));
        CHECK(rep.body.find("\xc2\x9b") == std::string::npos);
        CHECK(rep.body.find("\xe2\x80\xae") == std::string::npos);
        CHECK(rep.body.find("\\u001b[31m\\u007F\\u009Bb\\u202Ec") != std::string::npos);
        const auto line = parse_object(rep.body.substr(0, rep.body.find('\n')));
        CHECK(line.at("text").as_string() == "a\x1b[31m\x7f\xc2\x9b"
                                             "b\xe2\x80\xae"
                                             "c\xef\xbf\xbd\xef\xbf\xbd"
                                             "d");
    }

    TEST_CASE("a followed log gets the kept lines then the new ones, none missed or repeated, until close") {
        control_fixture f({ticker()});
        flush_counter buf;
        std::ostream out(&buf);
        captured_log log;
        std::atomic<int> rc{-1};
        std::thread client([&] {
            rc = ctl::ctl_main({.socket = f.path, .verb = "logs", .names = {"ticker"}, .follow = true}, out,
                               *log.log);
        });
        CHECK(buf.wait_for_lines(10));
        f.on_loop([&] {
            f.server.close();
            return 0;
        });
        client.join();
        CHECK(rc == ctl::exit_ok);
        CHECK(!std::filesystem::exists(f.path));

        std::istringstream lines(buf.str());
        std::string word;
        int n = 0, expected = 1;
        while (lines >> word >> n) {
            CHECK(word == "tick");
            CHECK(n == expected);
            ++expected;
        }
        CHECK(expected > 10);
    }

    TEST_CASE("the event stream carries each supervisor event as a JSON line") {
        control_fixture f;
        stream_reader events(f.path, "/v1/events");
        REQUIRE(events.status == 200);
        CHECK(events.parser.get()[http::field::content_type] == "application/x-ndjson");
        CHECK(ctl::ctl_call(f.path, "POST", "/v1/services/sleeper/restart").status == 200);

        std::vector<std::string> states;
        bool exited = false;
        while (auto line = events.next_line()) {
            const auto ev = parse_object(*line);
            CHECK(std::regex_match(std::string(ev.at("time").as_string()),
                                   std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
            if (ev.at("service").as_string() != "sleeper") continue;
            if (ev.at("type").as_string() == "exited") {
                exited = true;
                CHECK(ev.at("exit").as_string() == "killed by signal 15 (SIGTERM)");
            }
            if (ev.at("type").as_string() == "state") states.emplace_back(ev.at("state").as_string());
            if (!states.empty() && states.back() == "running") break;
        }
        CHECK(exited);
        REQUIRE(!states.empty());
        CHECK(states.front() == "stopping");
        CHECK(states.back() == "running");

        // close() ends the stream with its last chunk.
        f.on_loop([&] {
            f.server.close();
            return 0;
        });
        while (events.next_line()) {
        }
        CHECK(events.parser.is_done());
    }

    TEST_CASE("status --watch prints a new table when a status changes") {
        control_fixture f;
        flush_counter buf;
        std::ostream out(&buf);
        captured_log log;
        std::atomic<int> rc{-1};
        std::thread client([&] {
            rc = ctl::ctl_main({.socket = f.path, .verb = "status", .watch = true, .max_updates = 2}, out,
                               *log.log);
        });
        REQUIRE(buf.wait_for(1));
        CHECK(ctl::ctl_call(f.path, "POST", "/v1/services/sleeper/stop").status == 200);
        client.join();
        CHECK(rc == ctl::exit_ok);
        const std::string text = buf.str();
        const auto second = text.find("\n\nNAME");
        REQUIRE(second != std::string::npos);
        INFO(text);
        CHECK(std::regex_search(text.substr(0, second), std::regex("\nsleeper +running ")));
        CHECK(std::regex_search(text.substr(second), std::regex("\nsleeper +stopped ")));
    }

    TEST_CASE("wrong methods, unknown paths and malformed requests get JSON errors") {
        control_fixture f;
        auto rep = ctl::ctl_call(f.path, "GET", "/v1/services/sleeper/restart");
        CHECK(rep.status == 405);
        CHECK(parse_object(rep.body).at("error").at("code").as_string() == "method_not_allowed");
        rep = ctl::ctl_call(f.path, "POST", "/v1/services");
        CHECK(rep.status == 405);
        rep = ctl::ctl_call(f.path, "GET", "/v2/services");
        CHECK(rep.status == 404);
        CHECK(parse_object(rep.body).at("error").at("code").as_string() == "not_found");
        rep = ctl::ctl_call(f.path, "GET", "/v1/services/sleeper/frobnicate");
        CHECK(rep.status == 404);
        rep = ctl::ctl_call(f.path, "GET", "/v1/services/%zz");
        CHECK(rep.status == 400);

        std::string answer = raw_exchange(f.path, "NOT HTTP AT ALL\r\n\r\n");
        CHECK(answer.rfind("HTTP/1.1 400", 0) == 0);
        CHECK(answer.find("\"bad_request\"") != std::string::npos);

        answer =
            raw_exchange(f.path, "POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
        CHECK(answer.rfind("HTTP/1.1 413", 0) == 0);
        CHECK(f.reloads == 0);
    }

    TEST_CASE("reload and shutdown call drover up's hooks") {
        control_fixture f;
        auto rep = ctl::ctl_call(f.path, "POST", "/v1/reload");
        CHECK(rep.status == 200);
        CHECK(f.reloads == 1);

        f.on_loop([&] {
            f.reload_problem = "drover.toml:3: unknown key 'comand'";
            return 0;
        });
        captured_log log;
        std::ostringstream out;
        CHECK(ctl::ctl_main({.socket = f.path, .verb = "reload"}, out, *log.log) == ctl::exit_server_error);
        CHECK(log.text.str() == "drover.toml:3: unknown key 'comand'\n");
        CHECK(f.reloads == 2);

        CHECK(ctl::ctl_main({.socket = f.path, .verb = "shutdown"}, out, *log.log) == ctl::exit_ok);
        // The hook runs once the 202 is written: maybe just after ctl has read it.
        CHECK(eventually([&] { return f.shutdowns == 1; }));
        CHECK(out.str().empty());
    }

    TEST_CASE("the socket is 0600 in a 0700 directory; close() removes it") {
        control_fixture f;
        struct stat st {};
        REQUIRE(::stat(f.path.c_str(), &st) == 0);
        CHECK(S_ISSOCK(st.st_mode));
        CHECK((st.st_mode & 07777) == 0600);
        REQUIRE(::stat((f.dir.path / "run").c_str(), &st) == 0);
        CHECK((st.st_mode & 07777) == 0700);
        f.on_loop([&] {
            f.server.close();
            return 0;
        });
        CHECK(!std::filesystem::exists(f.path));
    }

    TEST_CASE("a second server refuses a live socket, and replaces a stale one") {
        control_fixture f;
        asio::io_context other;
        supervisor sup2(other.get_executor());
        {
            up::control_server second(other.get_executor(), sup2, {});
            CHECK_THROWS_WITH_AS(second.listen(f.path),
                                 ("another drover up is listening on '" + f.path + "'").c_str(),
                                 std::runtime_error);
        }
        // The refused server did not remove the live one's socket.
        CHECK(ctl::ctl_call(f.path, "GET", "/v1/services").status == 200);

        // A socket file nobody listens on: what a drover up that was killed leaves.
        const std::string stale = (f.dir.path / "stale.sock").string();
        {
            const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_un addr{};
            addr.sun_family = AF_UNIX;
            stale.copy(addr.sun_path, stale.size());
            REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
            ::close(fd);
        }
        {
            up::control_server third(other.get_executor(), sup2, {});
            CHECK_NOTHROW(third.listen(stale));
            // Listening again (nobody runs `other`: a connection waits in the backlog).
            const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_un addr{};
            addr.sun_family = AF_UNIX;
            stale.copy(addr.sun_path, stale.size());
            CHECK(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
            ::close(fd);
        }
        CHECK(!std::filesystem::exists(stale));

        // Not a socket: never replaced.
        const std::string plain = (f.dir.path / "plain").string();
        std::ofstream(plain) << "data";
        up::control_server fourth(other.get_executor(), sup2, {});
        CHECK_THROWS_AS(fourth.listen(plain), std::runtime_error);
        CHECK(std::filesystem::exists(plain));
    }

    TEST_CASE("a peer of another uid gets 403") {
        if (const auto why = needs_root_and_nobody(); !why.empty()) DROVER_SKIP(why);
        control_fixture f;
        // Let the other user reach the socket at all: the peer check is what is under test.
        std::filesystem::permissions(f.dir.path, std::filesystem::perms(0755));
        std::filesystem::permissions(f.dir.path / "run", std::filesystem::perms(0755));
        std::filesystem::permissions(f.path, std::filesystem::perms(0666));

        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            // Only system calls from here: this child of a threaded process exits without returning.
            ::alarm(10);
            if (::syscall(SYS_setresuid, 65534, 65534, 65534) != 0) ::_exit(10);
            const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_un addr{};
            addr.sun_family = AF_UNIX;
            f.path.copy(addr.sun_path, f.path.size());
            if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) ::_exit(11);
            const char req[] = "GET /v1/services HTTP/1.1\r\nHost: x\r\n\r\n";
            if (::write(fd, req, sizeof req - 1) != static_cast<ssize_t>(sizeof req - 1)) ::_exit(12);
            char got[4096];
            std::size_t n = 0;
            for (ssize_t r; n < sizeof got && (r = ::read(fd, got + n, sizeof got - n)) > 0;)
                n += static_cast<std::size_t>(r);
            const std::string_view answer(got, n);
            const bool refused = answer.substr(0, 12) == "HTTP/1.1 403" &&
                                 answer.find("\"forbidden\"") != std::string_view::npos &&
                                 answer.find("\"services\"") == std::string_view::npos;
            ::_exit(refused ? 0 : 13);
        }
        int status = 0;
        REQUIRE(::waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
        // The owner still gets its answers.
        CHECK(ctl::ctl_call(f.path, "GET", "/v1/services").status == 200);
    }

    TEST_CASE("beyond 64 connections the next one gets 503") {
        control_fixture f;
        asio::io_context io;
        std::vector<local::socket> held;
        for (int i = 0; i < 64; ++i) {
            held.emplace_back(io);
            held.back().connect(local::endpoint(f.path));
        }
        // Accepted in order: once the 65th is refused, the 64 before are all open.
        const std::string answer = raw_exchange(f.path, "GET /v1/services HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(answer.rfind("HTTP/1.1 503", 0) == 0);
        held.clear();
        // Their slots come back once the server has seen them go.
        CHECK(eventually([&] {
            try {
                return ctl::ctl_call(f.path, "GET", "/v1/services").status == 200;
            } catch (const std::exception&) {
                return false;
            }
        }));
    }

    TEST_CASE("ctl refuses a socket served by another user's process") {
        DROVER_SKIP_IF(needs_root_and_nobody());
        temp_dir dir;
        REQUIRE(::chmod(dir.path.c_str(), 0777) == 0);
        const std::string path = (dir.path / "other.sock").string();
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            // Only system calls from here: a listener of uid 65534 that never answers.
            ::alarm(20);
            if (::syscall(SYS_setresuid, 65534, 65534, 65534) != 0) ::_exit(10);
            const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_un addr{};
            addr.sun_family = AF_UNIX;
            path.copy(addr.sun_path, path.size());
            if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 8) != 0)
                ::_exit(11);
            ::pause();
            ::_exit(0);
        }
        REQUIRE(eventually([&] { return std::filesystem::exists(path); }));
        captured_log log;
        std::ostringstream out;
        CHECK(ctl::ctl_main({.socket = path, .verb = "status"}, out, *log.log) == ctl::exit_unreachable);
        CHECK(log.text.str().find("another user's process (uid 65534)") != std::string::npos);
        CHECK(out.str().empty());
        ::kill(pid, SIGKILL);
        int status = 0;
        ::waitpid(pid, &status, 0);
    }

    TEST_CASE("ctl says when no drover up listens, and refuses bad usage with 2") {
        temp_dir dir;
        captured_log log;
        std::ostringstream out;
        const std::string path = (dir.path / "none.sock").string();
        CHECK(ctl::ctl_main({.socket = path, .verb = "status"}, out, *log.log) == ctl::exit_unreachable);
        CHECK(log.text.str() ==
              "no drover up is listening on " + path + " (start one with `drover up`, or give --socket)\n");

        CHECK(ctl::ctl_main({.socket = path, .verb = "frob"}, out, *log.log) == ctl::exit_usage);
        CHECK(ctl::ctl_main({.socket = path, .verb = "start"}, out, *log.log) == ctl::exit_usage);
        CHECK(ctl::ctl_main({.socket = path, .verb = "logs", .names = {"a", "b"}}, out, *log.log) ==
              ctl::exit_usage);
        CHECK(ctl::ctl_main({.socket = path, .verb = "status", .follow = true}, out, *log.log) ==
              ctl::exit_usage);
        CHECK(ctl::ctl_main({.socket = path, .verb = "logs", .names = {"a"}, .watch = true}, out, *log.log) ==
              ctl::exit_usage);
        CHECK(ctl::ctl_main({.socket = path, .verb = "shutdown", .names = {"a"}}, out, *log.log) ==
              ctl::exit_usage);
        CHECK(out.str().empty());
    }

    TEST_CASE(
        "default_socket_path: per project under XDG_RUNTIME_DIR, or /run/drover, or beside the config") {
        temp_dir dir;
        std::filesystem::create_directories(dir.path / "my project");
        std::filesystem::create_directory_symlink(dir.path / "my project", dir.path / "link");
        const char* saved = std::getenv("XDG_RUNTIME_DIR");
        const std::optional<std::string> old = saved ? std::optional<std::string>(saved) : std::nullopt;

        ::setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
        const std::string a = up::default_socket_path((dir.path / "my project" / "drover.toml").string());
        CHECK(std::regex_match(a, std::regex(R"(/run/user/1000/drover/my_project-[0-9a-f]{16}\.sock)")));
        // Through a symlink, or relative: the same project, the same socket.
        CHECK(up::default_socket_path((dir.path / "link" / "drover.toml").string()) == a);
        CHECK(up::default_socket_path((dir.path / "link" / ".." / "my project" / "Procfile").string()) == a);
        CHECK(up::default_socket_path((dir.path / "other.toml").string()) != a);

        const std::string long_dir(70, 'x'); // too long with the label, short enough without
        ::setenv("XDG_RUNTIME_DIR", ("/" + long_dir).c_str(), 1);
        const std::string b = up::default_socket_path((dir.path / "my project" / "drover.toml").string());
        CHECK(b.size() <= 107);
        CHECK(std::regex_match(b, std::regex("/" + long_dir + R"(/drover/[0-9a-f]{16}\.sock)")));

        ::unsetenv("XDG_RUNTIME_DIR");
        const std::string c = up::default_socket_path((dir.path / "my project" / "drover.toml").string());
        if (::geteuid() == 0)
            CHECK(c.rfind("/run/drover/my_project-", 0) == 0);
        else
            CHECK(c == (dir.path / "my project" / ".drover.sock").string());
        if (old) ::setenv("XDG_RUNTIME_DIR", old->c_str(), 1);
    }

    TEST_CASE("ctl shows durations and sizes in human units") {
        CHECK(ctl::human_duration(7.9) == "7s");
        CHECK(ctl::human_duration(192) == "3m12s");
        CHECK(ctl::human_duration(7500) == "2h05m");
        CHECK(ctl::human_duration(3 * 86400 + 4 * 3600 + 5) == "3d04h");
        CHECK(ctl::human_cpu(0.424) == "0.42s");
        CHECK(ctl::human_cpu(75) == "1m15s");
        CHECK(ctl::human_bytes(900) == "900B");
        CHECK(ctl::human_bytes(12 * 1024 * 1024 + 300 * 1024) == "12.3MiB");
        CHECK(ctl::human_bytes(3ULL << 30) == "3.0GiB");
    }

    TEST_CASE("constant_time_equal: equal, different, prefix, and no early exit") {
        CHECK(drover::constant_time_equal("", ""));
        CHECK(drover::constant_time_equal("secret-token-0123", "secret-token-0123"));
        CHECK_FALSE(drover::constant_time_equal("secret-token-0123", "secret-token-0124"));
        CHECK_FALSE(drover::constant_time_equal("secret", "secret-token")); // a prefix
        CHECK_FALSE(drover::constant_time_equal("secret-token", "secret"));
        CHECK_FALSE(drover::constant_time_equal("", "x"));
        CHECK_FALSE(drover::constant_time_equal(std::string("a\0b", 3), std::string("a\0c", 3)));

        // The time must not depend on where the strings differ: a guess wrong in its first byte
        // and one wrong in its last take as long. An early exit would make the first ~1000x
        // faster; the bound is generous for a loaded machine and the sanitizers.
        const std::string secret(64 * 1024, 'k');
        std::string first = secret, last = secret;
        first.front() = 'x';
        last.back() = 'x';
        auto median_ns = [&](const std::string& guess) {
            std::vector<double> samples;
            for (int s = 0; s < 21; ++s) {
                const auto t0 = std::chrono::steady_clock::now();
                bool any = false;
                for (int i = 0; i < 20; ++i) any |= drover::constant_time_equal(secret, guess);
                samples.push_back(
                    std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count());
                CHECK_FALSE(any);
            }
            std::sort(samples.begin(), samples.end());
            return samples[samples.size() / 2];
        };
        const double early = median_ns(first), late = median_ns(last);
        INFO("median ns, differing first: " << early << ", last: " << late);
        CHECK(early > late / 3);
        CHECK(early < late * 3);
    }

} // TEST_SUITE
