// `drover run --timeout` and its neighbours as scripts coming from timeout(1) use them: the
// duration forms, 0 as no limit, clamping, refusals that name the option, units in what drover
// echoes; and --signal-tree. Driven through the real binary.
#include <signal.h>

#include <doctest/doctest.h>

#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "drover/run.hpp"
#include "support.hpp"

using namespace drover;
using namespace drover::test;
using namespace std::chrono_literals;

namespace {

using clk = std::chrono::steady_clock;

int code(const run_result& r) {
    return r.status.code();
}

/// Reads `p` into `got` until it holds `lines` newlines; false at EOF before that.
asio::awaitable<bool> read_lines(asio::posix::stream_descriptor& p, std::string& got, std::size_t lines) {
    char buf[4096];
    while (static_cast<std::size_t>(std::count(got.begin(), got.end(), '\n')) < lines) {
        auto [ec, n] = co_await p.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
        got.append(buf, n);
        if (ec) co_return false;
    }
    co_return true;
}

/// The number after `key` ("pid ", "grandchild ") in the helper's output, or 0.
long number_after(const std::string& text, const std::string& key) {
    auto at = text.find(key);
    return at == std::string::npos ? 0 : std::stol(text.substr(at + key.size()));
}

} // namespace

TEST_SUITE("cli") {

    TEST_CASE("drover run --timeout 0 means no limit: the command runs to completion") {
        auto t0 = clk::now();
        auto r = drover_cli({"run", "--timeout", "0"}, {"sleep", "300", "exit", "5"});
        CHECK(code(r) == 5);
        CHECK(clk::now() - t0 >= 300ms);
        CHECK(drover_cli({"run", "--timeout", "0s"}, {"exit", "0"}).status.code() == 0);
        CHECK(drover_cli({"run", "--timeout", "0.0d"}, {"exit", "0"}).status.code() == 0);
    }

    TEST_CASE("drover run takes timeout(1)'s duration forms: fractions, a bare point, and the m, h and d "
              "suffixes") {
        // Long enough for a command that exits at once: the run ends with its own status.
        for (const char* d : {"1.5s", "1.5", "0.1m", "0.5m", "1h", "1d", "5.", "2500ms"}) {
            CAPTURE(d);
            CHECK(code(drover_cli({"run", "--timeout", d}, {"exit", "0"})) == 0);
        }
        // Short enough to expire: .1 is 100ms, not refused and not zero.
        auto t0 = clk::now();
        CHECK(code(drover_cli({"run", "--timeout", ".1"}, {"sleep", "10000"})) == 124);
        CHECK(clk::now() - t0 < 5s);
        // The same forms for --grace and --drain-grace.
        CHECK(code(drover_cli({"run", "--grace", ".5", "--capture", "--drain-grace", "0.01m"},
                              {"exit", "3"})) == 3);
    }

    TEST_CASE("drover run clamps a huge --timeout to 36500 days instead of refusing it") {
        for (const char* d : {"9999999999999", "99999999999999999999999999d", "36501d"}) {
            CAPTURE(d);
            // DROVER_LOG=debug: drover's debug lines land in the captured stderr.
            auto r = drover_cli({"run", "--timeout", d}, {"exit", "0"}, {{"DROVER_LOG", "debug"}});
            CHECK(code(r) == 0);
            CHECK(r.err.head.find(std::string("--timeout '") + d +
                                  "' is longer than 36500d: clamped to it") != std::string::npos);
        }
    }

    TEST_CASE("drover run refuses a bad duration with exit 125, naming the option and the value") {
        struct bad {
            const char* value;
            const char* why;
        };
        for (const char* option : {"--timeout", "--grace", "--drain-grace"}) {
            for (auto [value, why] :
                 {bad{"-1s", "is negative"}, bad{"nan", "is not a number"}, bad{"inf", "is not a number"},
                  bad{"0x10", "is hexadecimal"}, bad{"", "is empty"}, bad{"1.5x", "unknown unit 'x'"},
                  bad{"1e3", "has an exponent"}, bad{".", "has no digits"}, bad{"1..2", "more than one '.'"},
                  bad{"soon", "does not start with a number"}}) {
                CAPTURE(option);
                CAPTURE(value);
                auto r = drover_cli({"run", "--capture", option, value},
                                    {"touch", "/tmp/drover-bad-duration-should-not-exist"});
                CHECK(code(r) == 125);
                CHECK(r.err.head.find(std::string(option) + " '" + value + "' ") != std::string::npos);
                CHECK(r.err.head.find(why) != std::string::npos);
            }
        }
        CHECK_FALSE(std::filesystem::exists("/tmp/drover-bad-duration-should-not-exist"));
        // The value is the user's text: escaped in the message, no raw control bytes.
        auto r = drover_cli({"run", "--timeout", "1\x1b[2J"}, {"exit", "0"});
        CHECK(code(r) == 125);
        CHECK(r.err.head.find("--timeout '1\\x1B[2J'") != std::string::npos);
        CHECK(r.err.head.find('\x1b') == std::string::npos);
    }

    TEST_CASE("drover run's timeout warning gives the duration with its unit") {
        auto r = drover_cli({"run", "--timeout", "1"}, {"sleep", "10000"});
        CHECK(code(r) == 124);
        CHECK(r.err.head.find("timed out after 1s;") != std::string::npos);
        r = drover_cli({"run", "--timeout", "0.3"}, {"sleep", "10000"});
        CHECK(code(r) == 124);
        CHECK(r.err.head.find("timed out after 300ms;") != std::string::npos);
        r = drover_cli({"run", "--capture", "--timeout", ".25"}, {"sleep", "10000"});
        CHECK(code(r) == 124);
        CHECK(r.err.head.find("timed out after 250ms;") != std::string::npos);
    }

    TEST_CASE("drover run --signal-tree forwards SIGUSR1 to a grandchild; without it only the main process "
              "gets it") {
#if defined(__SANITIZE_THREAD__)
        // Open: under TSan about one run in five the main process never reports the forwarded
        // SIGUSR1 and drover run ends before the test's SIGTERM (seen in CI and locally; the plain
        // and ASan passes always pass). Skipped, counted, until the cause is found.
        DROVER_SKIP("flaky under ThreadSanitizer: the forwarded SIGUSR1 is sometimes not reported (open)");
#endif
        for (bool tree : {true, false}) {
            CAPTURE(tree);
            std::vector<std::string> args = {"run"};
            if (tree) args.push_back("--signal-tree");
            for (const char* w : {"--", helper_path(), "report-signal", "USR1", "print-pid",
                                  "spawn-grandchild", "30000", "sleep", "30000"})
                args.push_back(w);
            asio::io_context ctx;
            child d = spawn(ctx, command(drover_bin(), args).std_out(stdio::pipe()).std_err(stdio::null()));
            auto [status, got] = run(ctx, [&]() -> asio::awaitable<std::pair<exit_status, std::string>> {
                std::string out;
                // "pid M\ngrandchild G\n": both exist, with the handler (a fork keeps it).
                const bool started = co_await read_lines(d.std_out(), out, 2);
                if (started) {
                    d.signal(SIGUSR1);
                    std::size_t want = tree ? 4 : 3;
                    co_await read_lines(d.std_out(), out, want);
                    // Without --signal-tree nothing more may come: give a stray signal time to show.
                    if (!tree) {
                        asio::steady_timer t(co_await asio::this_coro::executor, 300ms);
                        co_await t.async_wait(asio::use_awaitable);
                    }
                }
                d.signal(SIGTERM); // end the run: a stop of the whole tree
                out += co_await read_all(d.std_out());
                auto st = co_await d.async_wait(asio::use_awaitable);
                co_return std::pair{st, out};
            }());
            const std::string usr1 = "got signal " + std::to_string(SIGUSR1) + " pid ";
            const long main_pid = number_after(got, "pid "), grandchild = number_after(got, "grandchild ");
            REQUIRE(main_pid > 0);
            REQUIRE(grandchild > 0);
            CHECK(got.find(usr1 + std::to_string(main_pid) + "\n") != std::string::npos);
            if (tree)
                CHECK(got.find(usr1 + std::to_string(grandchild) + "\n") != std::string::npos);
            else
                CHECK(got.find(usr1 + std::to_string(grandchild) + "\n") == std::string::npos);
            CHECK(status == exit_status::exited(128 + SIGTERM));
        }
    }
}
