// The tree guard (guard.hpp): a program embedding drover that is SIGKILLed leaves nothing of its
// child's tree behind (reliability.md, C3); dismissal; the error paths. The embedding program
// is test/child/drover_guard_host.cpp, also the guard program of the in-process cases.
#include "drover/guard.hpp"

#include <signal.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <filesystem>
#include <thread>

#include <boost/asio/buffers_iterator.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>

#include "detail/cgroup.hpp"
#include "support.hpp"

using namespace drover;
using namespace drover::test;
using clk = std::chrono::steady_clock;

namespace {

/// Whether `pid` is gone or a zombie (a guard is reparented, and reaped, elsewhere).
bool gone(pid_t pid) {
    std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    auto rp = stat.rfind(')');
    return stat.empty() || (rp != std::string::npos && rp + 2 < stat.size() && stat[rp + 2] == 'Z');
}

/// Starts drover-guard-host MODE with a shell script; returns it and its guard's pid.
std::pair<child, pid_t> start_host(asio::io_context& ctx, const std::string& mode,
                                   const std::string& script) {
    // Not in a leaf of this test (cgroup off): the host's own drover-<pid> directory is then next to
    // this test's, where the tests look for its removal.
    child h = spawn(ctx, command(DROVER_GUARD_HOST, {mode, "/bin/sh", "-c", script})
                             .std_out(stdio::pipe())
                             .cgroup(cgroup_mode::off));
    auto line = run(
        ctx,
        [](child& h) -> asio::awaitable<std::string> {
            asio::streambuf buf;
            co_await asio::async_read_until(h.std_out(), buf, '\n', asio::use_awaitable);
            co_return std::string(asio::buffers_begin(buf.data()), asio::buffers_end(buf.data()));
        }(h),
        10s);
    REQUIRE(line.rfind("ready ", 0) == 0);
    return {std::move(h), static_cast<pid_t>(std::stoi(line.substr(6)))};
}

guard_options host_as_guard() {
    guard_options o;
    o.program = DROVER_GUARD_HOST;
    return o;
}

} // namespace

TEST_SUITE("guard") {

    TEST_CASE(
        "C3: a program guarding its child's tree, killed with SIGKILL, leaves nothing of the tree behind") {
        for (const char* mode : {"cgroup", "session"}) {
            CAPTURE(mode);
            const std::string t = run_tag() + (mode[0] == 'c' ? "1" : "2");
            asio::io_context ctx;
            // A process-group tree (the portable backend) whose leader died at once with the host
            // (its parent-death signal) has lost a setsid grandchild (reliability.md D1); without
            // the parent-death signal the guard finds it through the leader.
            const bool escapee = !portable_backend() || mode[0] == 's';
            auto started = start_host(ctx, mode,
                                      std::string(escapee ? "setsid " : "") + "sleep 1030." + t +
                                          " & sleep 1031." + t + " & wait");
            child& host = started.first;
            const pid_t guard_pid = started.second;
            REQUIRE(eventually([&] { return sleepers_with("." + t).size() == 2; }));
            CHECK_FALSE(gone(guard_pid));
            const pid_t host_pid = *host.id();
            host.signal(SIGKILL);
            CHECK(run(ctx, host.async_wait(asio::use_awaitable)) == exit_status::signaled(SIGKILL));
            // Generous bounds: under a sanitizer on a loaded machine the guard (a second process) is slow.
            CHECK(eventually([&] { return sleepers_with("." + t).empty(); }, 20s));
            CHECK(eventually([&] { return gone(guard_pid); }, 20s));
            const auto& cg = detail::probe_cgroup();
            if (mode[0] == 'c' && cg.usable) // the guard also removed the host's cgroup directory
                CHECK(eventually(
                    [&] { return !std::filesystem::exists(cg.own + "/drover-" + std::to_string(host_pid)); },
                    20s));
        }
    }

    TEST_CASE("a program that exits normally dismisses its guard, which exits and leaves the tree alone") {
        const std::string t = run_tag() + "3";
        asio::io_context ctx;
        auto started = start_host(ctx, "detach", "sleep 1032." + t + " & sleep 1033." + t + " & wait");
        child& host = started.first;
        const pid_t guard_pid = started.second;
        CHECK(run(ctx, host.async_wait(asio::use_awaitable)) == exit_status::exited(0));
        CHECK(eventually([&] { return gone(guard_pid); }, 20s));
        std::this_thread::sleep_for(300ms); // a guard that took the EOF for a death would kill now
        auto left = sleepers_with("." + t);
        CHECK(left.size() == 2);
        for (pid_t p : left) ::kill(p, SIGKILL);
        CHECK(eventually([&] { return sleepers_with("." + t).empty(); }));
    }

    TEST_CASE("guard_tree in this process: active until dismissed; the guard exits; the tree runs on") {
        asio::io_context ctx;
        child c = spawn(ctx, helper({"sleep", "30000"}));
        tree_guard g = guard_tree(c, host_as_guard());
        REQUIRE(g.active());
        REQUIRE(g.id().has_value());
        const pid_t guard_pid = *g.id();
        CHECK(guard_pid != *c.id());
        CHECK_FALSE(gone(guard_pid));
        g.dismiss();
        CHECK_FALSE(g.active());
        CHECK_FALSE(g.id().has_value());
        CHECK(eventually([&] {
            ctx.restart();
            ctx.poll(); // the detached guard is reaped here
            return gone(guard_pid);
        }));
        CHECK_FALSE(c.try_wait().has_value()); // dismissal touched nothing of the tree
        c.signal(SIGKILL);
        CHECK(run(ctx, c.async_wait(asio::use_awaitable)) == exit_status::signaled(SIGKILL));

        // Moving and destroying: the moved-from guard is empty; the destructor dismisses.
        child c2 = spawn(ctx, helper({"sleep", "30000"}));
        tree_guard g2 = guard_tree(c2, host_as_guard());
        const pid_t guard2 = *g2.id();
        tree_guard g3 = std::move(g2);
        CHECK_FALSE(g2.active());
        CHECK(g3.active());
        { tree_guard dropped = std::move(g3); }
        CHECK(eventually([&] {
            ctx.restart();
            ctx.poll();
            return gone(guard2);
        }));
        CHECK_FALSE(c2.try_wait().has_value());
    }

    TEST_CASE(
        "guard_tree fails for a child that is not running, and when the guard program cannot be spawned") {
        asio::io_context ctx;
        error_code ec;
        child empty;
        tree_guard g = guard_tree(empty, host_as_guard(), ec);
        CHECK(ec == errc::not_running);
        CHECK_FALSE(g.active());
        CHECK_THROWS_AS(guard_tree(empty, host_as_guard()), spawn_error);
        try {
            guard_tree(empty);
        } catch (const spawn_error& e) {
            CHECK(e.code() == errc::not_running);
        }

        child reaped = spawn(ctx, helper({"exit", "0"}));
        CHECK(run(ctx, reaped.async_wait(asio::use_awaitable)) == exit_status::exited(0));
        guard_tree(reaped, host_as_guard(), ec);
        CHECK(ec == errc::not_running);

        child c = spawn(ctx, helper({"sleep", "30000"}));
        guard_options missing;
        missing.program = "/nonexistent/drover-guard";
        spawn_failure f;
        g = guard_tree(c, missing, f);
        CHECK_FALSE(g.active());
        CHECK(f.code == std::errc::no_such_file_or_directory);
        CHECK(f.program == "/nonexistent/drover-guard");
        CHECK(f.message().find("/nonexistent/drover-guard") != std::string::npos);
        c.signal(SIGKILL);
        run(ctx, c.async_wait(asio::use_awaitable));
    }

    TEST_CASE("dismissing an empty guard, or one that died, is an error") {
        tree_guard empty;
        error_code ec;
        empty.dismiss(ec);
        CHECK(ec == errc::not_running);
        CHECK_THROWS_AS(empty.dismiss(), boost::system::system_error);

        asio::io_context ctx;
        child c = spawn(ctx, helper({"sleep", "30000"}));
        tree_guard g = guard_tree(c, host_as_guard());
        const pid_t guard_pid = *g.id();
        REQUIRE(::kill(guard_pid, SIGKILL) == 0);
        REQUIRE(eventually([&] { return gone(guard_pid); }));
        g.dismiss(ec);
        CHECK(ec == boost::system::errc::broken_pipe);
        CHECK_FALSE(g.active());
        CHECK_FALSE(c.try_wait().has_value()); // nothing was killed: the guard died, not this process
        c.signal(SIGKILL);
        run(ctx, c.async_wait(asio::use_awaitable));
    }

    TEST_CASE("run_guard_if_requested: other programs' argv pass; malformed guard arguments give 2 at once") {
        const char* plain[] = {"prog", "run", "x"};
        CHECK_FALSE(run_guard_if_requested(3, plain).has_value());
        const char* alone[] = {"prog"};
        CHECK_FALSE(run_guard_if_requested(1, alone).has_value());
        const char* few[] = {"prog", guard_argument, "-"};
        CHECK(run_guard_if_requested(3, few) == 2);
        const char* bad_session[] = {"prog", guard_argument, "-", "12x"};
        CHECK(run_guard_if_requested(4, bad_session) == 2);
        const char* zero_session[] = {"prog", guard_argument, "-", "0"};
        CHECK(run_guard_if_requested(4, zero_session) == 2);
        const char* relative_cgroup[] = {"prog", guard_argument, "sys/fs/cgroup/x", "42"};
        CHECK(run_guard_if_requested(4, relative_cgroup) == 2);
    }

} // TEST_SUITE
