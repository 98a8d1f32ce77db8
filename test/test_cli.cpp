// `drover run`: the exit-status contract of design.md, driven through the real binary.
#include <signal.h>

#include <doctest/doctest.h>

#include <array>

#include "support.hpp"

using namespace drover;
using namespace drover::test;

namespace {
output drover_run(std::vector<std::string> args) {
    command c(DROVER_BIN, std::move(args));
    c.std_err(stdio::null());
    return output_now(std::move(c));
}
std::vector<std::string> helper_argv(std::vector<std::string> script) {
    script.insert(script.begin(), helper_path());
    return script;
}
std::vector<std::string> cat(std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}
} // namespace

TEST_SUITE("cli") {

TEST_CASE("drover run passes the child's exit code through") {
    CHECK(drover_run(cat({"run", "--"}, helper_argv({"exit", "0"}))).status == exit_status::exited(0));
    CHECK(drover_run(cat({"run", "--"}, helper_argv({"exit", "3"}))).status == exit_status::exited(3));
    CHECK(drover_run(cat({"run"}, helper_argv({"exit", "255"}))).status == exit_status::exited(255));
}

TEST_CASE("drover run reports a signal death as 128+N") {
    CHECK(drover_run(cat({"run", "--"}, helper_argv({"signal", "TERM"}))).status == exit_status::exited(128 + SIGTERM));
    CHECK(drover_run(cat({"run", "--"}, helper_argv({"signal", "KILL"}))).status == exit_status::exited(128 + SIGKILL));
}

TEST_CASE("drover run: 127 not found, 126 not executable, 125 its own failure") {
    CHECK(drover_run({"run", "--", "drover-no-such-program"}).status == exit_status::exited(127));
    CHECK(drover_run({"run", "--", "/nonexistent/prog"}).status == exit_status::exited(127));
    CHECK(drover_run({"run", "--", "/etc/passwd"}).status == exit_status::exited(126));
    CHECK(drover_run({"run", "--", "/tmp"}).status == exit_status::exited(126));
    CHECK(drover_run(cat({"run", "--cwd", "/nonexistent-dir", "--"}, helper_argv({"exit", "0"}))).status ==
          exit_status::exited(125));
    CHECK(drover_run({"run", "--no-such-option", "--", "true"}).status == exit_status::exited(125));
    CHECK(drover_run({"run", "--env", "NOEQUALS", "--", "true"}).status == exit_status::exited(125));
    CHECK(drover_run({"run"}).status == exit_status::exited(125));
    CHECK(drover_run({}).status == exit_status::exited(125));
}

TEST_CASE("drover run: --cwd, --env, --env-clear and --env-keep shape the child") {
    auto cwd = drover_run(cat({"run", "--cwd", "/tmp", "--"}, helper_argv({"print-cwd"})));
    CHECK(cwd.out == "/tmp\n");
    auto env = drover_run(cat({"run", "--env-clear", "--env", "A=1", "--env", "B=x=y", "--"}, helper_argv({"print-env"})));
    CHECK(env.out == "A=1\nB=x=y\n");
    auto keep = drover_run(cat({"run", "--env-keep", "HOME", "--"}, helper_argv({"print-env"})));
    CHECK(keep.out == std::string("HOME=") + std::getenv("HOME") + "\n");
}

TEST_CASE("drover run passes options after the program to the program, untouched") {
    auto r = drover_run(cat({"run"}, helper_argv({"echo-args", "--cwd", "-x", "--"})));
    CHECK(r.out == std::string("--cwd\0-x\0--\0", 12));
}

TEST_CASE("drover run forwards SIGTERM to its child and reports the child's status") {
    asio::io_context ctx;
    auto r = run(ctx, []() -> asio::awaitable<output> {
        auto ex = co_await asio::this_coro::executor;
        command c(DROVER_BIN, cat({"run", "--"}, helper_argv({"trap-term", "30000", "exit", "9"})));
        c.std_out(stdio::pipe());
        child d = spawn(ex, c);
        std::array<char, 14> buf{};
        co_await asio::async_read(d.std_out(), asio::buffer(buf), asio::use_awaitable); // "trapping TERM\n"
        d.signal(SIGTERM);
        std::string rest = co_await read_all(d.std_out());
        auto st = co_await d.async_wait(asio::use_awaitable);
        co_return output{st, std::string(buf.data(), buf.size()) + rest};
    }());
    CHECK(r.out == "trapping TERM\ngot TERM\n");
    CHECK(r.status == exit_status::exited(0));
}

}
