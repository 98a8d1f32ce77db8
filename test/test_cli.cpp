// `drover run`: the exit-status contract (docs/cli.md, "Exit status"), driven through the real binary.
#include <signal.h>

#include <boost/asio/write.hpp>
#include <doctest/doctest.h>

#include <array>
#include <fstream>

#include "detail/cgroup.hpp"
#include "detail/tree.hpp"
#include "support.hpp"

using namespace drover;
using namespace drover::test;

namespace {
output drover_run(std::vector<std::string> args) {
    command c(drover_bin(), std::move(args));
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
        CHECK(drover_run(cat({"run", "--"}, helper_argv({"signal", "TERM"}))).status ==
              exit_status::exited(128 + SIGTERM));
        CHECK(drover_run(cat({"run", "--"}, helper_argv({"signal", "KILL"}))).status ==
              exit_status::exited(128 + SIGKILL));
    }

    TEST_CASE("drover run: 127 not found, 126 not executable, 125 its own failure") {
        CHECK(drover_run({"run", "--", "drover-no-such-program"}).status == exit_status::exited(127));
        CHECK(drover_run({"run", "--", "/nonexistent/prog"}).status == exit_status::exited(127));
        CHECK(drover_run({"run", "--", "/etc/passwd"}).status == exit_status::exited(126));
        CHECK(drover_run({"run", "--", "/tmp"}).status == exit_status::exited(126));
        CHECK(
            drover_run(cat({"run", "--cwd", "/nonexistent-dir", "--"}, helper_argv({"exit", "0"}))).status ==
            exit_status::exited(125));
        CHECK(drover_run({"run", "--no-such-option", "--", "true"}).status == exit_status::exited(125));
        CHECK(drover_run({"run", "--env", "NOEQUALS", "--", "true"}).status == exit_status::exited(125));
        CHECK(drover_run({"run"}).status == exit_status::exited(125));
        CHECK(drover_run({}).status == exit_status::exited(125));
    }

    TEST_CASE("drover run: --cwd, --env, --env-clear and --env-keep shape the child") {
        auto cwd = drover_run(cat({"run", "--cwd", "/tmp", "--"}, helper_argv({"print-cwd"})));
        CHECK(cwd.out == "/tmp\n");
        auto env = drover_run(
            cat({"run", "--env-clear", "--env", "A=1", "--env", "B=x=y", "--"}, helper_argv({"print-env"})));
        CHECK(env.out == "A=1\nB=x=y\n");
        auto keep = drover_run(cat({"run", "--env-keep", "HOME", "--"}, helper_argv({"print-env"})));
        CHECK(keep.out == std::string("HOME=") + std::getenv("HOME") + "\n");
    }

    TEST_CASE("drover run passes options after the program to the program, untouched") {
        auto r = drover_run(cat({"run"}, helper_argv({"echo-args", "--cwd", "-x", "--"})));
        CHECK(r.out == std::string("--cwd\0-x\0--\0", 12));
    }

    TEST_CASE_FIXTURE(io_fixture, "drover run forwards SIGTERM to its child and reports the child's status") {
        auto r = finish([]() -> asio::awaitable<output> {
            auto ex = co_await asio::this_coro::executor;
            command c(drover_bin(), cat({"run", "--"}, helper_argv({"trap-term", "30000", "exit", "9"})));
            c.std_out(stdio::pipe());
            child d = spawn(ex, c);
            std::array<char, 14> buf{};
            co_await asio::async_read(d.std_out(), asio::buffer(buf),
                                      asio::use_awaitable); // "trapping TERM\n"
            d.signal(SIGTERM);
            std::string rest = co_await read_all(d.std_out());
            auto st = co_await d.async_wait(asio::use_awaitable);
            co_return output{st, std::string(buf.data(), buf.size()) + rest};
        }());
        CHECK(r.out == "trapping TERM\ngot TERM\n");
        CHECK(r.status == exit_status::exited(0));
    }
}

// ---- stopping ---------------------------------------------------------------------------------

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <thread>

namespace {

using clk = std::chrono::steady_clock;

std::vector<pid_t> children_of_pid(pid_t pid) {
    std::vector<pid_t> out;
    std::string base = "/proc/" + std::to_string(pid) + "/task";
    std::error_code ec;
    for (auto& t : std::filesystem::directory_iterator(base, ec)) {
        std::ifstream f(t.path() / "children");
        pid_t c;
        while (f >> c) out.push_back(c);
    }
    return out;
}

bool unshare_works() {
    auto r = output_now(
        command("unshare").args({"--pid", "--fork", "--mount-proc", "true"}).std_err(stdio::null()));
    return r.status == exit_status::exited(0);
}

} // namespace

TEST_SUITE("cli") {

    TEST_CASE(
        "C5: drover run exits 143 when its child, with strace -p attached, is sent SIGTERM (20 runs of 20)") {
        DROVER_SKIP_IF(needs_strace());
        const std::string strace = on_path("strace");
        int passed = 0;
        for (int i = 0; i < 20; ++i) {
            asio::io_context ctx;
            auto st = run(ctx, [](std::string strace) -> asio::awaitable<std::optional<exit_status>> {
                auto ex = co_await asio::this_coro::executor;
                command c(drover_bin(), cat({"run", "--"}, helper_argv({"print-pid", "sleep", "100000"})));
                c.std_out(stdio::pipe()).std_err(stdio::null());
                child d = spawn(ex, c);
                line_reader out(d.std_out());
                auto first = co_await out.next(asio::use_awaitable);
                REQUIRE(first);
                const std::string pid = first->text.substr(4); // "pid P"
                std::vector<std::string> args{"-o", "/dev/null", "-p", pid};
                command s(strace, std::move(args));
                s.std_err(stdio::pipe());
                child tracer = spawn(ex, s);
                line_reader err(tracer.std_err());
                bool attached = false;
                while (auto l = co_await err.next(asio::use_awaitable)) {
                    if (l->text.find("attached") != std::string::npos) {
                        attached = true;
                        break;
                    }
                }
                if (!attached) {
                    co_await d.async_stop(asio::use_awaitable);
                    co_return std::nullopt; // strace could not attach here
                }
                ::kill(std::stoi(pid), SIGTERM);
                auto status = co_await d.async_wait(asio::use_awaitable);
                co_await tracer.async_wait(asio::use_awaitable);
                co_return status;
            }(strace));
            if (!st) DROVER_SKIP("strace cannot attach here (ptrace refused)");
            CHECK(*st == exit_status::exited(128 + SIGTERM));
            if (*st == exit_status::exited(128 + SIGTERM)) ++passed;
        }
        CHECK(passed == 20);
    }

    TEST_CASE("drover run --timeout stops the tree and exits 124, quickly") {
        auto t0 = clk::now();
        auto r = drover_run(cat({"run", "--timeout", "200ms", "--"}, helper_argv({"sleep", "10000"})));
        CHECK(r.status == exit_status::exited(124));
        CHECK(clk::now() - t0 < 8s); // 0.2 s here; the sleep alone would be 10 s
        // A helper that ignores TERM is killed after --grace.
        t0 = clk::now();
        r = drover_run(cat({"run", "--timeout", "200ms", "--grace", "300ms", "--"},
                           helper_argv({"ignore-term", "10000"})));
        CHECK(r.status == exit_status::exited(124));
        CHECK(clk::now() - t0 >= 450ms);
        CHECK(clk::now() - t0 < 8s);
        // In time: the child's own status.
        CHECK(drover_run(cat({"run", "--timeout", "5s", "--"}, helper_argv({"exit", "4"}))).status ==
              exit_status::exited(4));
    }

    TEST_CASE("drover run: --timeout, --grace, --stop-signal and --cgroup/--no-cgroup are validated before "
              "anything starts") {
        for (auto args : std::vector<std::vector<std::string>>{{"--timeout", "soon"},
                                                               {"--timeout", "-1s"},
                                                               {"--timeout", "inf"},
                                                               {"--grace", "1y"},
                                                               {"--stop-signal", "NOPE"},
                                                               {"--stop-signal", "0"},
                                                               {"--cgroup", "--no-cgroup"}}) {
            auto all =
                cat(cat({"run"}, args), cat({"--"}, helper_argv({"touch", "/tmp/drover-should-not-exist"})));
            CHECK(drover_run(all).status == exit_status::exited(125));
        }
        CHECK_FALSE(std::filesystem::exists("/tmp/drover-should-not-exist"));
    }

    TEST_CASE("drover run --stop-signal picks the first signal of a stop") {
        auto r = drover_run(cat({"run", "--timeout", "200ms", "--stop-signal", "SIGINT", "--"},
                                helper_argv({"sleep", "10000"})));
        CHECK(r.status == exit_status::exited(124));
    }

    TEST_CASE("drover run stops what the command left running when it exits") {
        for (const char* mode : {"--no-cgroup", "--grace=2s"}) {
            const std::string t = run_tag() + (mode[2] == 'n' ? "1" : "2");
            auto t0 = clk::now();
            // A process-group tree (the portable backend) cannot follow a setsid (reliability.md D1).
            const std::string setsid = portable_backend() ? "" : "setsid ";
            auto r = drover_run({"run", mode, "--", "/bin/sh", "-c",
                                 setsid + "sleep 1010." + t + " & (sleep 1011." + t + " &); exit 3"});
            CHECK(r.status == exit_status::exited(3));
            CHECK(clk::now() - t0 < 60s); // the sleepers' 1010 s is the failure (10.2 s seen under TSan)
            CHECK(sleepers_with("." + t).empty());
        }
    }

    TEST_CASE_FIXTURE(
        io_fixture,
        "D3: a SIGTERM to drover run escalates to SIGKILL after --grace when the child ignores it") {
        child d = spawn(ctx, command(drover_bin(), cat({"run", "--grace", "300ms", "--"},
                                                       helper_argv({"ignore-term", "30000"})))
                                 .std_out(stdio::pipe())
                                 .std_err(stdio::null()));
        auto r = finish([&]() -> asio::awaitable<exit_status> {
            std::array<char, 14> buf{};
            co_await asio::async_read(d.std_out(), asio::buffer(buf),
                                      asio::use_awaitable); // "ignoring TERM\n"
            auto t0 = clk::now();
            d.signal(SIGTERM);
            auto st = co_await d.async_wait(asio::use_awaitable);
            CHECK(clk::now() - t0 < 10s); // 0.3 s grace here; the ignoring helper's 30 s is the failure
            co_return st;
        }());
        CHECK(r == exit_status::exited(128 + SIGKILL));
    }

    TEST_CASE("C3: drover run killed with SIGKILL leaves nothing of the tree behind") {
        // On the portable backend the tree is a process group: with the main process killed at
        // once by its parent-death signal (--grace, the default), a setsid grandchild has left
        // the guard's reach (reliability.md D1); with --no-cgroup the guard finds it through it.
        auto setsid = [](const std::string& mode) {
            return portable_backend() && mode != "--no-cgroup" ? std::string() : std::string("setsid ");
        };
        for (const char* mode : {"--no-cgroup", "--grace=10s"}) {
            const std::string t = run_tag() + (mode[2] == 'n' ? "3" : "4");
            asio::io_context ctx;
            child d = spawn(ctx, command(drover_bin(), {"run", mode, "--", "/bin/sh", "-c",
                                                        setsid(mode) + "sleep 1012." + t + " & sleep 1013." +
                                                            t + " & wait"})
                                     .std_err(stdio::null())
                                     .cgroup(cgroup_mode::off)); // its drover-<pid> next to this test's
            REQUIRE(eventually([&] { return sleepers_with("." + t).size() == 2; }));
            pid_t drover_pid = *d.id();
            d.signal(SIGKILL);
            CHECK(run(ctx, d.async_wait(asio::use_awaitable)) == exit_status::signaled(SIGKILL));
            // The guard is a second drover process, started just before: under a sanitizer on a loaded
            // machine its start-up alone can take seconds. The bound is generous; the point is "none left".
            CHECK(eventually([&] { return sleepers_with("." + t).empty(); }, 20s));
            const auto& cg = detail::probe_cgroup();
            if (cg.usable) // the guard also removed drover run's cgroup directory
                CHECK(eventually(
                    [&] {
                        return !std::filesystem::exists(cg.own + "/drover-" + std::to_string(drover_pid));
                    },
                    5000ms));
        }
    }

    TEST_CASE("C3: drover run's guard of a cgroup tree is the drover-guard program where it is built") {
        DROVER_SKIP_IF(needs_cgroup_v2());
        const auto& cg = detail::probe_cgroup();
        const std::string t = run_tag() + "5";
        asio::io_context ctx;
        child d =
            spawn(ctx, command(drover_bin(), {"run", "--", "/bin/sh", "-c", "sleep 1014." + t + " & wait"})
                           .std_err(stdio::null())
                           .cgroup(cgroup_mode::off)); // its drover-<pid> next to this test's
        pid_t guard = 0;
        REQUIRE(eventually(
            [&] {
                for (pid_t p : detail::children_of(*d.id())) {
                    std::ifstream comm("/proc/" + std::to_string(p) + "/comm");
                    std::string name;
                    if (std::getline(comm, name) && name == "drover-guard") guard = p;
                }
                return guard != 0 && sleepers_with("." + t).size() == 1;
            },
            20s));
        // A program of its own (no libc: nothing but the kernel's part of a spawn), the one built
        // next to drover; where it is not built (a sanitizer, another CPU), a copy of drover made
        // without exec, or an installed drover-guard.
        std::error_code fec;
        const std::string exe = std::filesystem::read_symlink("/proc/" + std::to_string(guard) + "/exe", fec);
        if (std::string(DROVER_GUARD_BIN).empty())
            CHECK((exe == std::filesystem::canonical(drover_bin()).string() ||
                   std::filesystem::path(exe).filename() == "drover-guard"));
        else
            CHECK(exe == std::filesystem::canonical(DROVER_GUARD_BIN).string());
        // It does its job: drover killed, the tree goes, and so does drover's cgroup directory.
        const pid_t drover_pid = *d.id();
        d.signal(SIGKILL);
        CHECK(run(ctx, d.async_wait(asio::use_awaitable)) == exit_status::signaled(SIGKILL));
        CHECK(eventually([&] { return sleepers_with("." + t).empty(); }, 20s));
        CHECK(eventually(
            [&] { return !std::filesystem::exists(cg.own + "/drover-" + std::to_string(drover_pid)); },
            5000ms));
        // Dismissed (a normal end), it exits at once, and drover run exits with the command.
        auto r = drover_run({"run", "--", "/bin/true"});
        CHECK(r.status == exit_status::exited(0));
    }

    TEST_CASE("drover-guard refuses a command line that is not the guard's, and exits 0 when dismissed") {
        if (std::string(DROVER_GUARD_BIN).empty())
            DROVER_SKIP(
                "drover-guard is not built here (a sanitizer build, or a CPU other than x86-64 and aarch64)");
        for (std::vector<std::string> args :
             std::vector<std::vector<std::string>>{{},
                                                   {"__drover_guard"},
                                                   {"__drover_guard", "relative/leaf", "1"},
                                                   {"other", "/leaf", "1"},
                                                   {"__drover_guard", "/leaf", "1", "extra"}}) {
            auto r = output_now(command(DROVER_GUARD_BIN, args).std_in(stdio::null()));
            CHECK(r.status == exit_status::exited(2));
        }
        asio::io_context ctx;
        child g = spawn(
            ctx,
            command(DROVER_GUARD_BIN, {"__drover_guard", "/nonexistent/leaf", "1"}).std_in(stdio::pipe()));
        asio::write(g.std_in(), asio::buffer("d", 1));
        g.std_in().close();
        CHECK(run(ctx, g.async_wait(asio::use_awaitable)) == exit_status::exited(0));
    }

    TEST_CASE("C4: drover run as PID 1 of a pid namespace reaps 100 double-forked grandchildren") {
        if (!unshare_works())
            DROVER_SKIP("cannot create a pid namespace here (unshare --pid --fork --mount-proc failed)");
        // The shell double-forks 100 short sleepers; they are re-parented to PID 1 (drover run),
        // which must reap them. Then the shell counts zombies in the namespace.
        const std::string script = "for i in $(seq 100); do (sleep 0.1 &); done; sleep 1; "
                                   "cat /proc/[0-9]*/stat 2>/dev/null | grep -c ') Z ' ; exit 0";
        auto r = output_now(command("unshare").args(
            {"--pid", "--fork", "--mount-proc", drover_bin(), "run", "--", "/bin/sh", "-c", script}));
        CHECK(r.status == exit_status::exited(0));
        CHECK(r.out == "0\n");
    }

    TEST_CASE("D4: TERM, INT and HUP to drover run as PID 1 reach the child; drover exits with its status") {
        if (!unshare_works())
            DROVER_SKIP("cannot create a pid namespace here (unshare --pid --fork --mount-proc failed)");
        struct expectation {
            int sig;
            exit_status status;
        };
        for (auto [sig, expected] : {expectation{SIGTERM, exit_status::exited(0)},
                                     expectation{SIGINT, exit_status::exited(128 + SIGINT)},
                                     expectation{SIGHUP, exit_status::exited(128 + SIGHUP)}}) {
            asio::io_context ctx;
            child u = spawn(ctx, command("unshare")
                                     .args({"--pid", "--fork", "--mount-proc", drover_bin(), "run", "--",
                                            helper_path(), "trap-term", "30000"})
                                     .std_out(stdio::null()));
            // unshare's child is drover run, PID 1 inside; wait until drover has started the helper.
            // The helper must have its TERM handler installed (SigCgt in its /proc status), or a TERM
            // kills it before its trap runs: a sanitizer-built helper on a loaded machine starts slowly.
            pid_t drover_pid = 0;
            REQUIRE(eventually(
                [&] {
                    auto kids = children_of_pid(*u.id());
                    if (kids.empty()) return false;
                    drover_pid = kids.front();
                    for (pid_t g : children_of_pid(drover_pid)) {
                        std::string cmd = read_file("/proc/" + std::to_string(g) + "/cmdline");
                        if (cmd.find("drover-test-child") != std::string::npos && catches_signal(g, SIGTERM))
                            return true;
                    }
                    return false;
                },
                30s));
            REQUIRE(::kill(drover_pid, sig) == 0);
            CHECK(run(ctx, u.async_wait(asio::use_awaitable), 10s) == expected);
        }
    }

    TEST_CASE("H2: drover run's timeout counts steady time (static check lives in test-stop)") {
        // The dynamic variant (stepping the wall clock) needs CAP_SYS_TIME in a private VM.
        auto t0 = clk::now();
        CHECK(drover_run(cat({"run", "--timeout", "0.3s", "--"}, helper_argv({"sleep", "5000"}))).status ==
              exit_status::exited(124));
        CHECK(clk::now() - t0 < 4500ms); // 0.3 s and drover's start-up; the 5 s sleep is the failure
    }
}
