// Probes (lib/detail/probe.hpp): parsing URLs and addresses, what `add` must refuse, and one
// attempt of each kind against servers run in the test's own io_context and the scripted
// helper, including an attempt whose handle is destroyed before it completes.
#include "detail/probe.hpp"

#include <functional>
#include <memory>
#include <string>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "support.hpp"

using namespace drover;
using namespace drover::test;
using drover::detail::http_url;
using drover::detail::parse_host_port;
using drover::detail::parse_http_url;
using drover::detail::probe_error;
using drover::detail::start_probe;
using tcp = boost::asio::ip::tcp;
using clk = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

/// What `done` was told, how often, and after how long.
struct outcome {
    int calls = 0;
    bool ok = false;
    std::string detail;
    clk::duration took{};
};

/// Starts `p` on `ctx`, checks that `done` is not called inline, runs the context until `done`
/// was called (at most `limit`), and a little longer to see that it is called only once.
outcome attempt(asio::io_context& ctx, const probe& p, clk::duration limit = 30s) {
    auto r = std::make_shared<outcome>();
    const auto start = clk::now();
    auto handle = start_probe(ctx.get_executor(), p, [r, start](bool ok, std::string detail) {
        ++r->calls;
        r->ok = ok;
        r->detail = std::move(detail);
        r->took = clk::now() - start;
    });
    CHECK(r->calls == 0); // always through the executor
    const auto deadline = clk::now() + limit;
    while (r->calls == 0 && clk::now() < deadline) {
        if (ctx.stopped()) ctx.restart();
        ctx.run_one_for(100ms);
    }
    ctx.restart();
    ctx.run_for(50ms);
    handle.reset();
    ctx.restart();
    ctx.run_for(50ms);
    CHECK(r->calls == 1);
    return *r;
}

/// Runs `ctx` in slices until `pred` holds or `limit` passed; its last answer.
bool run_until(asio::io_context& ctx, const std::function<bool()>& pred, clk::duration limit = 10s) {
    const auto deadline = clk::now() + limit;
    while (!pred() && clk::now() < deadline) {
        ctx.restart();
        ctx.run_for(20ms);
    }
    return pred();
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

tcp::acceptor listen_on(asio::io_context& ctx, const char* address) {
    return tcp::acceptor(ctx, tcp::endpoint(asio::ip::make_address(address), 0));
}

/// A port nothing listens on: one the kernel just gave out and that was closed again.
unsigned short closed_port(asio::io_context& ctx) {
    auto a = listen_on(ctx, "127.0.0.1");
    return a.local_endpoint().port();
}

/// What a tiny HTTP server saw and did.
struct server_log {
    std::string request; // the request's head, as received
    bool peer_closed = false;
};

/// Accepts one connection, reads the request head, answers `response` (nothing when empty) and
/// then reads until the client closes.
asio::awaitable<void> serve_once(tcp::acceptor& acc, std::string response, std::shared_ptr<server_log> log) {
    tcp::socket s = co_await acc.async_accept(asio::use_awaitable);
    std::string buf;
    auto [ec, n] = co_await asio::async_read_until(s, asio::dynamic_buffer(buf), "\r\n\r\n",
                                                   asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    log->request = buf.substr(0, n);
    if (!response.empty()) {
        auto [wec, wn] =
            co_await asio::async_write(s, asio::buffer(response), asio::as_tuple(asio::use_awaitable));
        (void)wn;
        if (wec) co_return;
        s.shutdown(tcp::socket::shutdown_send, ec);
    }
    char sink[4096];
    for (;;) {
        auto [rec, rn] = co_await s.async_read_some(asio::buffer(sink), asio::as_tuple(asio::use_awaitable));
        (void)rn;
        if (rec) break;
    }
    log->peer_closed = true;
}

std::shared_ptr<server_log> start_server(asio::io_context& ctx, tcp::acceptor& acc, std::string response) {
    auto log = std::make_shared<server_log>();
    asio::co_spawn(ctx, serve_once(acc, std::move(response), log), [](std::exception_ptr) {});
    return log;
}

std::string url_of(const tcp::acceptor& acc, const std::string& target) {
    return "http://127.0.0.1:" + std::to_string(acc.local_endpoint().port()) + target;
}

/// A needle for the command line of one helper process: this test process's tag plus `what`.
std::string tag(const std::string& what) {
    return "drover-probe-" + run_tag() + "-" + what;
}

/// Live processes whose command line contains `needle`.
int running_with(const std::string& needle) {
    return live_processes_where([&](const std::string& cl) { return contains(cl, needle); });
}

/// The helper sleeping 30 s, findable by `needle` (written to a discarded stdout).
command sleeper(const std::string& needle) {
    return helper({"write-line", needle, "sleep", "30000"}).std_out(stdio::null());
}

probe with_timeout(probe p, clk::duration t) {
    p.timeout = t;
    return p;
}

} // namespace

TEST_SUITE("probe") {

    TEST_CASE("parse_http_url: host, port and target") {
        struct good {
            const char* url;
            const char* host;
            const char* port;
            const char* target;
        };
        for (const good& g : {
                 good{"http://localhost:8080/health?full=1", "localhost", "8080", "/health?full=1"},
                 good{"http://127.0.0.1", "127.0.0.1", "80", "/"},
                 good{"http://127.0.0.1/", "127.0.0.1", "80", "/"},
                 good{"http://[::1]:9000/x/y", "::1", "9000", "/x/y"},
                 good{"http://[::1]", "::1", "80", "/"},
                 good{"http://example.com?q=1", "example.com", "80", "/?q=1"},
                 good{"HTTP://db-1.internal/ready#fragment", "db-1.internal", "80", "/ready"},
                 good{"http://h:080/", "h", "80", "/"},
             }) {
            INFO("url: ", g.url);
            http_url u;
            std::string error;
            REQUIRE(parse_http_url(g.url, u, error));
            CHECK(u.host == g.host);
            CHECK(u.port == g.port);
            CHECK(u.target == g.target);
        }
    }

    TEST_CASE("parse_http_url: what it refuses, and why") {
        struct bad {
            const char* url;
            const char* says;
        };
        for (const bad& b : {
                 bad{"https://example.com/", "https is not supported; use http or a tcp probe"},
                 bad{"HTTPS://example.com/", "https is not supported"},
                 bad{"ftp://example.com/", "not an http:// URL"},
                 bad{"localhost:80", "not an http:// URL"},
                 bad{"", "not an http:// URL"},
                 bad{"http://", "empty host"},
                 bad{"http:///health", "empty host"},
                 bad{"http://:80/", "empty host"},
                 bad{"http://h:0/", "port 0 is out of range"},
                 bad{"http://h:70000/", "port 70000 is out of range"},
                 bad{"http://h:99999999999999999999999/", "is out of range"},
                 bad{"http://h:http/", "port 'http' is not a number"},
                 bad{"http://h:/", "missing port"},
                 bad{"http://h /x", "space or a control character"},
                 bad{"http://h/a b", "space or a control character"},
                 bad{"http://h/\r\nX-Injected: 1", "space or a control character"},
                 bad{"http://[::1/", "missing ']'"},
                 bad{"http://[nope]/", "not an IPv6 address"},
                 bad{"http://[::1]x/", "unexpected 'x' after ']'"},
                 bad{"http://::1/", "must be in brackets"},
                 bad{"http://user@h/", "user info"},
                 bad{"http://h%41/", "bad character '%'"},
                 bad{"http://10.0.0.300/", "not an IPv4 address"},
             }) {
            INFO("url: ", b.url);
            http_url u;
            u.host = "untouched";
            std::string error;
            CHECK_FALSE(parse_http_url(b.url, u, error));
            CHECK(contains(error, b.says));
            CHECK(u.host == "untouched"); // nothing half-parsed is left in `out`
        }
    }

    TEST_CASE("parse_host_port: good and bad addresses") {
        struct good {
            const char* address;
            const char* host;
            const char* port;
        };
        for (const good& g : {
                 good{"127.0.0.1:80", "127.0.0.1", "80"},
                 good{"localhost:5432", "localhost", "5432"},
                 good{"[::1]:8080", "::1", "8080"},
                 good{"db_1.local:1", "db_1.local", "1"},
                 good{"h:65535", "h", "65535"},
             }) {
            INFO("address: ", g.address);
            std::string host, port, error;
            REQUIRE(parse_host_port(g.address, host, port, error));
            CHECK(host == g.host);
            CHECK(port == g.port);
        }
        struct bad {
            const char* address;
            const char* says;
        };
        for (const bad& b : {
                 bad{"", "empty address"},
                 bad{"localhost", "missing port"},
                 bad{"localhost:", "missing port"},
                 bad{"[::1]", "missing port"},
                 bad{":80", "empty host"},
                 bad{"h:70000", "port 70000 is out of range"},
                 bad{"h:0", "port 0 is out of range"},
                 bad{"h:-1", "port '-1' is not a number"},
                 bad{"::1:80", "must be in brackets"},
                 bad{"[::1]80", "unexpected '80' after ']'"},
                 bad{"h :1", "space or a control character"},
                 bad{"h:1\n", "space or a control character"},
                 bad{"http://h:1", "not a URL"},
             }) {
            INFO("address: ", b.address);
            std::string host, port, error;
            CHECK_FALSE(parse_host_port(b.address, host, port, error));
            CHECK(contains(error, b.says));
        }
    }

    TEST_CASE("probe_error: what add must refuse") {
        CHECK(probe_error(probe::tcp("127.0.0.1:80")) == "");
        CHECK(probe_error(probe::http("http://localhost/health")) == "");
        CHECK(probe_error(probe::exec(command("/bin/true"))) == "");

        CHECK(probe_error(probe::tcp("localhost")) == "tcp probe address 'localhost': missing port");
        CHECK(probe_error(probe::http("https://x/")) ==
              "http probe URL 'https://x/': https is not supported; use http or a tcp probe");
        probe no_program;
        no_program.type = probe::kind::exec;
        CHECK(probe_error(no_program) == "an exec probe needs a program");
        CHECK(probe_error(probe::exec(command(""))) == "an exec probe's command has no program");
        CHECK(
            contains(probe_error(with_timeout(probe::tcp("127.0.0.1:80"), 0s)), "timeout must be positive"));
        CHECK(
            contains(probe_error(with_timeout(probe::tcp("127.0.0.1:80"), -1s)), "timeout must be positive"));
    }

    TEST_CASE("start_probe: a probe that does not parse fails through done, not inline") {
        asio::io_context ctx;
        auto r = attempt(ctx, probe::tcp("no-port"));
        CHECK_FALSE(r.ok);
        CHECK(r.detail == "tcp probe address 'no-port': missing port");
    }

    TEST_CASE("tcp: connects to a listening port") {
        asio::io_context ctx;
        auto acc = listen_on(ctx, "127.0.0.1");
        const std::string address = "127.0.0.1:" + std::to_string(acc.local_endpoint().port());
        auto r = attempt(ctx, probe::tcp(address));
        CHECK(r.ok);
        CHECK(r.detail == "connected to " + address);
    }

    TEST_CASE("tcp: a name is resolved (localhost)") {
        asio::io_context ctx;
        auto acc = listen_on(ctx, "127.0.0.1");
        const std::string port = std::to_string(acc.local_endpoint().port());
        auto r = attempt(ctx, probe::tcp("localhost:" + port));
        // localhost may resolve to ::1 first; any endpoint that connects will do, and 127.0.0.1
        // listens.
        CHECK(r.ok);
        CHECK(r.detail == "connected to localhost:" + port);
    }

    TEST_CASE("tcp: a closed port is refused") {
        asio::io_context ctx;
        const auto port = closed_port(ctx);
        auto r = attempt(ctx, probe::tcp("127.0.0.1:" + std::to_string(port)));
        CHECK_FALSE(r.ok);
        CHECK(r.detail == "connection refused");
    }

    TEST_CASE("tcp: [::1] when IPv6 loopback exists") {
        asio::io_context ctx;
        boost::system::error_code ec;
        tcp::acceptor acc(ctx);
        acc.open(tcp::v6(), ec);
        if (!ec) acc.bind(tcp::endpoint(asio::ip::make_address("::1"), 0), ec);
        if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
        if (ec) DROVER_SKIP("no IPv6 loopback: " << ec.message());
        const std::string address = "[::1]:" + std::to_string(acc.local_endpoint().port());
        auto r = attempt(ctx, probe::tcp(address));
        CHECK(r.ok);
        CHECK(r.detail == "connected to " + address);
    }

    TEST_CASE("http: 200 passes; the request is a GET with Host, User-Agent and Connection: close") {
        asio::io_context ctx;
        auto acc = listen_on(ctx, "127.0.0.1");
        auto log =
            start_server(ctx, acc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        auto r = attempt(ctx, probe::http(url_of(acc, "/health?full=1")));
        CHECK(r.ok);
        CHECK(r.detail == "HTTP 200");
        INFO("request: ", log->request);
        CHECK(log->request.rfind("GET /health?full=1 HTTP/1.1\r\n", 0) == 0);
        CHECK(contains(log->request,
                       "Host: 127.0.0.1:" + std::to_string(acc.local_endpoint().port()) + "\r\n"));
        CHECK(contains(log->request, "User-Agent: drover\r\n"));
        CHECK(contains(log->request, "Connection: close\r\n"));
        CHECK(run_until(ctx, [&] { return log->peer_closed; }));
    }

    TEST_CASE("http: 503 fails with its status") {
        asio::io_context ctx;
        auto acc = listen_on(ctx, "127.0.0.1");
        start_server(ctx, acc, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy");
        auto r = attempt(ctx, probe::http(url_of(acc, "/")));
        CHECK_FALSE(r.ok);
        CHECK(r.detail == "HTTP 503");
    }

    TEST_CASE("http: the status decides, whatever the body (until close, or over the limit)") {
        asio::io_context ctx;
        {
            auto acc = listen_on(ctx, "127.0.0.1");
            start_server(ctx, acc, "HTTP/1.1 204 No Content\r\n\r\n");
            auto r = attempt(ctx, probe::http(url_of(acc, "/")));
            CHECK(r.ok);
            CHECK(r.detail == "HTTP 204");
        }
        {
            auto acc = listen_on(ctx, "127.0.0.1");
            start_server(ctx, acc, "HTTP/1.1 200 OK\r\n\r\nbody until the server closes");
            auto r = attempt(ctx, probe::http(url_of(acc, "/")));
            CHECK(r.ok);
            CHECK(r.detail == "HTTP 200");
        }
        {
            auto acc = listen_on(ctx, "127.0.0.1");
            const std::string big(1024 * 1024, 'x');
            start_server(ctx, acc,
                         "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(big.size()) + "\r\n\r\n" +
                             big);
            auto r = attempt(ctx, probe::http(url_of(acc, "/")));
            CHECK(r.ok);
            CHECK(r.detail == "HTTP 200");
        }
    }

    TEST_CASE("http: a server that closes without answering fails") {
        asio::io_context ctx;
        auto acc = listen_on(ctx, "127.0.0.1");
        asio::co_spawn(
            ctx,
            [&]() -> asio::awaitable<void> {
                tcp::socket s = co_await acc.async_accept(asio::use_awaitable);
                s.close();
            },
            [](std::exception_ptr) {});
        auto r = attempt(ctx, probe::http(url_of(acc, "/")));
        CHECK_FALSE(r.ok);
        CHECK(contains(r.detail, "reading the response"));
    }

    TEST_CASE("http: a server that never answers times out") {
        asio::io_context ctx;
        auto acc = listen_on(ctx, "127.0.0.1");
        auto log = start_server(ctx, acc, "");
        auto r = attempt(ctx, with_timeout(probe::http(url_of(acc, "/")), 300ms));
        CHECK_FALSE(r.ok);
        CHECK(r.detail == "timed out after 300ms");
        CHECK(r.took >= 250ms);
        CHECK(r.took < 20s);
        // The attempt closed its connection when it gave up.
        CHECK(run_until(ctx, [&] { return log->peer_closed; }));
    }

    TEST_CASE("http: a closed port is refused") {
        asio::io_context ctx;
        const auto port = closed_port(ctx);
        auto r = attempt(ctx, probe::http("http://127.0.0.1:" + std::to_string(port) + "/"));
        CHECK_FALSE(r.ok);
        CHECK(r.detail == "connection refused");
    }

    TEST_CASE("exec: exit 0 passes, exit 3 and a signal fail") {
        asio::io_context ctx;
        auto ok = attempt(ctx, probe::exec(helper({"exit", "0"})));
        CHECK(ok.ok);
        CHECK(ok.detail == "exit code 0");
        auto three = attempt(ctx, probe::exec(helper({"exit", "3"})));
        CHECK_FALSE(three.ok);
        CHECK(three.detail == "exit code 3");
        auto killed = attempt(ctx, probe::exec(helper({"signal", "KILL"})));
        CHECK_FALSE(killed.ok);
        CHECK(contains(killed.detail, "killed by signal 9"));
    }

    TEST_CASE("exec: the probe's stdin is /dev/null") {
        asio::io_context ctx;
        // read-stdin ends at once on /dev/null; on an inherited terminal or pipe it could block.
        auto r = attempt(ctx, probe::exec(helper({"read-stdin", "exit", "0"}).std_out(stdio::null())));
        CHECK(r.ok);
    }

    TEST_CASE("exec: past the timeout it fails, and nothing of it is left") {
        asio::io_context ctx;
        const std::string needle = tag("timeout");
        auto r = attempt(ctx, with_timeout(probe::exec(sleeper(needle)), 300ms));
        CHECK_FALSE(r.ok);
        CHECK(r.detail == "timed out after 300ms");
        CHECK(r.took >= 250ms);
        CHECK(r.took < 20s);
        CHECK(running_with(needle) == 0);
    }

    TEST_CASE("exec: a program that does not exist fails with the spawn error") {
        asio::io_context ctx;
        auto r = attempt(ctx, probe::exec(command("/nonexistent/drover-probe-missing")));
        CHECK_FALSE(r.ok);
        CHECK(contains(r.detail, "cannot spawn '/nonexistent/drover-probe-missing'"));
        CHECK(contains(r.detail, "No such file or directory"));
    }

    TEST_CASE("destroying the handle: done is never called") {
        asio::io_context ctx;
        SUBCASE("tcp, before anything ran") {
            const auto port = closed_port(ctx);
            int calls = 0;
            auto handle = start_probe(ctx.get_executor(), probe::tcp("127.0.0.1:" + std::to_string(port)),
                                      [&](bool, std::string) { ++calls; });
            handle.reset();
            ctx.run_for(5s); // returns as soon as the aborted operations have run: nothing idles
            CHECK(ctx.stopped());
            CHECK(calls == 0);
        }
        SUBCASE("a probe that does not parse") {
            int calls = 0;
            auto handle =
                start_probe(ctx.get_executor(), probe::tcp("no-port"), [&](bool, std::string) { ++calls; });
            handle.reset();
            ctx.run_for(5s);
            CHECK(ctx.stopped());
            CHECK(calls == 0);
        }
        SUBCASE("http, waiting for the response: its connection is closed") {
            auto acc = listen_on(ctx, "127.0.0.1");
            auto log = start_server(ctx, acc, "");
            int calls = 0;
            auto handle = start_probe(ctx.get_executor(), with_timeout(probe::http(url_of(acc, "/")), 60s),
                                      [&](bool, std::string) { ++calls; });
            REQUIRE(run_until(ctx, [&] { return !log->request.empty(); }));
            handle.reset();
            CHECK(run_until(ctx, [&] { return log->peer_closed; }));
            CHECK(calls == 0);
        }
        SUBCASE("exec: the child is killed") {
            const std::string needle = tag("destroyed");
            int calls = 0;
            auto handle = start_probe(ctx.get_executor(), with_timeout(probe::exec(sleeper(needle)), 60s),
                                      [&](bool, std::string) { ++calls; });
            // Spawned, but until it has exec'd, its command line is still this test's.
            CHECK(eventually([&] { return running_with(needle) == 1; }));
            ctx.run_for(100ms);
            handle.reset();
            CHECK(run_until(ctx, [&] { return running_with(needle) == 0; }));
            // The child's cleanup (reaping) runs in the context and then nothing is left.
            ctx.restart();
            ctx.run_for(5s);
            CHECK(ctx.stopped());
            CHECK(calls == 0);
            CHECK(zombie_count() == 0);
        }
    }
}
