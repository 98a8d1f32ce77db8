// Stopping: the whole tree, escalation, timeouts, cancellation, parent death, cgroup leaves
// (reliability.md C3, D1, D2, D3, H2, I1, I2).
#include "drover/child.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <thread>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>

#include "detail/cgroup.hpp"
#include "detail/tree.hpp"
#include "support.hpp"

using namespace drover;
using namespace drover::test;
namespace fs = std::filesystem;
using clk = std::chrono::steady_clock;

namespace {

/// The D1 tree: a shell that starts three escaping sleepers and waits. Without the setsid one
/// for a process-group tree (the portable backend), which cannot follow it (reliability.md D1).
command escaping_tree(const std::string& t, bool with_setsid = true) {
    std::string script = (with_setsid ? "setsid sleep 1000." + t + " & " : std::string()) + "(sleep 1001." +
                         t + " &); nohup sleep 1002." + t + " >/dev/null 2>&1 & wait";
    return command("/bin/sh").args({"-c", script}).std_in(stdio::null());
}

void d1(cgroup_mode mode) {
    asio::io_context ctx;
    const std::string t = run_tag() + (mode == cgroup_mode::off ? "1" : "2");
    const bool group = portable_backend();
    child c = spawn(ctx, escaping_tree(t, !group).cgroup(mode));
    CHECK((c.tree() == (group                      ? tree_kind::process_group
                        : mode == cgroup_mode::off ? tree_kind::session
                                                   : tree_kind::cgroup)));
    const std::size_t sleepers = group ? 2 : 3;
    REQUIRE(eventually([&] { return sleepers_with("." + t).size() == sleepers; }));
    auto tree = c.tree_pids();
    CHECK(tree.size() >= sleepers + 1); // sh and the sleepers
    std::optional<std::string> cg = c.cgroup_path();
    auto t0 = clk::now();
    exit_status st = run(ctx, c.async_stop(10s, asio::use_awaitable));
    auto took = clk::now() - t0;
    MESSAGE("stop took " << std::chrono::duration<double, std::milli>(took).count() << " ms");
    CHECK(st == exit_status::signaled(SIGTERM));
    CHECK(sleepers_with("." + t).empty());
    CHECK(took < 9s);                     // SIGTERM ends them all: no escalation (the 10 s grace) needed
    if (cg) CHECK_FALSE(fs::exists(*cg)); // the leaf was removed
}

} // namespace

TEST_SUITE("stop") {

    TEST_CASE("D1: a stop leaves nothing of a tree that escaped with setsid, a subshell and nohup (cgroup)") {
        DROVER_SKIP_IF(needs_cgroup_v2());
        d1(cgroup_mode::required);
    }

    TEST_CASE("D1: the same on the process-group path (no cgroup)") {
        d1(cgroup_mode::off);
    }

    TEST_CASE("D2: a SIGSTOPped child stops on SIGTERM, not at the SIGKILL escalation") {
        for (auto mode : {cgroup_mode::automatic, cgroup_mode::off}) {
            asio::io_context ctx;
            child c = spawn(ctx, helper({"stop-self", "sleep", "30000"}).cgroup(mode));
            REQUIRE(eventually([&] {
                detail::proc_ids ids;
                return detail::read_proc_ids(*c.id(), ids) && ids.state == 'T';
            }));
            auto t0 = clk::now();
            exit_status st = run(ctx, c.async_stop(5s, asio::use_awaitable));
            CHECK(st == exit_status::signaled(SIGTERM));
            CHECK(clk::now() - t0 < 4500ms); // not the 5 s escalation
        }
    }

    TEST_CASE("D3: escalation by tree, completion by emptiness") {
        // The main process exits on SIGTERM; its grandchild ignores SIGTERM. The stop must wait
        // the grace period, SIGKILL the grandchild, and complete only when the tree is empty.
        for (auto mode : {cgroup_mode::automatic, cgroup_mode::off}) {
            asio::io_context ctx;
            const std::string t = run_tag() + "3";
            std::string script = "(trap '' TERM; exec sleep 1003." + t + ") & sleep 30 & wait";
            child c = spawn(ctx, command("/bin/sh").args({"-c", script}).cgroup(mode));
            REQUIRE(eventually([&] { return sleepers_with("1003." + t).size() == 1; }));
            std::optional<std::string> cg = c.cgroup_path();
            auto t0 = clk::now();
            exit_status st = run(ctx, c.async_stop(700ms, asio::use_awaitable));
            auto took = clk::now() - t0;
            CHECK(st == exit_status::signaled(SIGTERM));
            CHECK(took >= 650ms); // the ignoring grandchild held the stop until the escalation
            CHECK(took < 20s);    // not the 30 s sleep
            CHECK(sleepers_with("1003." + t).empty());
            if (cg) CHECK_FALSE(fs::exists(*cg)); // rmdir succeeded: no zombie held it
        }
    }

    TEST_CASE_FIXTURE(
        io_fixture,
        "a stop after the tree is gone completes at once with the status; stops share one escalation") {
        child c = spawn(ctx, helper({"sleep", "30000"}));
        int completed = 0;
        exit_status a, b;
        c.async_stop(5s, [&](error_code ec, exit_status st) {
            CHECK_FALSE(ec);
            a = st;
            ++completed;
        });
        c.async_stop(5s, [&](error_code ec, exit_status st) {
            CHECK_FALSE(ec);
            b = st;
            ++completed;
        });
        ctx.run_for(10s);
        CHECK(completed == 2);
        CHECK(a == exit_status::signaled(SIGTERM));
        CHECK(b == a);
        ctx.restart();
        CHECK(finish(c.async_stop(5s, asio::use_awaitable)) == a);
        CHECK(c.status() == a);
    }

    TEST_CASE_FIXTURE(io_fixture, "the stop signal is configurable, and async_kill skips the grace period") {
        child c = spawn(ctx, helper({"trap-term", "30000"}).stop_signal(SIGINT));
        CHECK(finish(c.async_stop(5s, asio::use_awaitable)) == exit_status::signaled(SIGINT));
        child d = spawn(ctx, helper({"ignore-term", "30000"}).stop_grace(30s));
        auto t0 = clk::now();
        CHECK(finish(d.async_kill(asio::use_awaitable)) == exit_status::signaled(SIGKILL));
        CHECK(clk::now() - t0 < 10s); // not the 30 s grace
    }

    TEST_CASE_FIXTURE(io_fixture, "timeout: a 200 ms timeout on a 10 s sleep returns well under a second") {
        child c = spawn(ctx, helper({"sleep", "10000"}));
        auto t0 = clk::now();
        error_code ec;
        exit_status st;
        c.async_wait_for(200ms, [&](error_code e, exit_status s) {
            ec = e;
            st = s;
        });
        ctx.run_for(10s);
        auto took = clk::now() - t0;
        MESSAGE("timed out after " << std::chrono::duration<double, std::milli>(took).count() << " ms");
        CHECK(ec == errc::timed_out);
        CHECK(st == exit_status::signaled(SIGTERM));
        CHECK(took >= 190ms);
        CHECK(took < 5s); // not the 10 s sleep
    }

    TEST_CASE_FIXTURE(io_fixture,
                      "timeout: a process that ends in time completes normally and the timer is gone") {
        child c = spawn(ctx, helper({"sleep", "50", "exit", "7"}));
        error_code ec = errc::not_running;
        exit_status st;
        auto t0 = clk::now();
        c.async_wait_for(10s, [&](error_code e, exit_status s) {
            ec = e;
            st = s;
        });
        ctx.run(); // returns only when nothing is pending: the timer must have been cancelled
        CHECK_FALSE(ec);
        CHECK(st == exit_status::exited(7));
        CHECK(clk::now() - t0 < 5s);
    }

    TEST_CASE_FIXTURE(
        io_fixture,
        "cancelling a wait stops the tree (default policy) before completing with operation_aborted") {
        DROVER_SKIP_IF(needs_linux_backend("a tree that follows a setsid escapee"));
        const std::string t = run_tag() + "4";
        child c = spawn(ctx, command("/bin/sh").args({"-c", "setsid sleep 1004." + t + " & wait"}));
        REQUIRE(eventually([&] { return sleepers_with("1004." + t).size() == 1; }));
        asio::cancellation_signal cancel;
        error_code got;
        exit_status st;
        bool done = false;
        c.async_wait(asio::bind_cancellation_slot(cancel.slot(), [&](error_code ec, exit_status s) {
            got = ec;
            st = s;
            done = true;
            // Completion comes only after the tree is empty.
            CHECK(sleepers_with("1004." + t).empty());
        }));
        asio::post(ctx, [&] { cancel.emit(asio::cancellation_type::terminal); });
        ctx.run_for(10s);
        REQUIRE(done);
        CHECK(got == asio::error::operation_aborted);
        CHECK(st == exit_status::signaled(SIGTERM));
        CHECK(c.status() == st);
    }

    TEST_CASE_FIXTURE(io_fixture, "leaving an awaitable-operators race stops the loser's tree") {
        using namespace asio::experimental::awaitable_operators;
        const std::string t = run_tag() + "5";
        child c = spawn(ctx, command("/bin/sh").args({"-c", "sleep 1005." + t + " & wait"}));
        REQUIRE(eventually([&] { return sleepers_with("1005." + t).size() == 1; }));
        finish([&]() -> asio::awaitable<void> {
            asio::steady_timer timer(co_await asio::this_coro::executor, 100ms);
            auto r = co_await (c.async_wait(asio::use_awaitable) || timer.async_wait(asio::use_awaitable));
            CHECK(r.index() == 1);
        }());
        CHECK(c.status() == exit_status::signaled(SIGTERM));
        CHECK(sleepers_with("1005." + t).empty());
    }

    TEST_CASE_FIXTURE(io_fixture, "destroying a child kills the tree it left running") {
        DROVER_SKIP_IF(needs_linux_backend("a tree that follows a setsid escapee"));
        const std::string t = run_tag() + "6";
        {
            child c = spawn(ctx, command("/bin/sh").args({"-c", "setsid sleep 1006." + t + " & wait"}));
            REQUIRE(eventually([&] { return sleepers_with("1006." + t).size() == 1; }));
        }
        ctx.run_for(500ms);
        CHECK(eventually([&] { return sleepers_with("1006." + t).empty(); }, 2000ms));
        CHECK(zombie_count() == 0);
    }

    TEST_CASE_FIXTURE(
        io_fixture, "without a cgroup, a main process that exited at once but forked first is still walked: "
                    "its stop ends what it left in its session") {
        // The stop skips the walk of /proc only for a main process that provably never forked (the
        // last pid allocated when it exited was its own): this one forked a sleeper, so the walk runs.
        const std::string t = run_tag() + "7";
        child c = spawn(ctx, command("/bin/sh")
                                 .args({"-c", "sleep 1007." + t + " >/dev/null 2>&1 & exit 0"})
                                 .std_in(stdio::null())
                                 .cgroup(cgroup_mode::off));
        CHECK(run(ctx, c.async_wait(asio::use_awaitable)) == exit_status::exited(0));
        REQUIRE(eventually([&] { return sleepers_with("1007." + t).size() == 1; }));
        CHECK(run(ctx, c.async_stop(5s, asio::use_awaitable)) == exit_status::exited(0));
        CHECK(sleepers_with("1007." + t).empty());
        // And one that never forked: stopped at once, the same answer.
        child lone = spawn(ctx, helper({"exit", "3"}).cgroup(cgroup_mode::off));
        CHECK(run(ctx, lone.async_wait(asio::use_awaitable)) == exit_status::exited(3));
        CHECK(run(ctx, lone.async_stop(5s, asio::use_awaitable)) == exit_status::exited(3));
    }

    TEST_CASE_FIXTURE(io_fixture,
                      "a leaf whose tree ended by itself is reused by the next spawn; a killed or "
                      "limited leaf never is") {
        DROVER_SKIP_IF(needs_cgroup_v2());
        auto leaf_of_finished = [&](command cmd) {
            child c = spawn(ctx, cmd.cgroup(cgroup_mode::required));
            REQUIRE(c.cgroup_path());
            std::string path = *c.cgroup_path();
            CHECK(run(ctx, c.async_wait(asio::use_awaitable)) == exit_status::exited(0));
            ctx.restart(); // a running context: the handle's cleanup is queued, not done at once
            c = child();   // the cleanup keeps the leaf or removes it
            ctx.run();
            ctx.restart();
            return path;
        };
        const std::string first = leaf_of_finished(helper({"exit", "0"}));
        CHECK(fs::exists(first)); // kept, empty, for the next spawn
        child next = spawn(ctx, helper({"sleep", "30000"}).cgroup(cgroup_mode::required));
        REQUIRE(next.cgroup_path());
        CHECK(*next.cgroup_path() == first);
        CHECK(next.tree_pids() == std::vector<pid_t>{*next.id()}); // alone in it
        // Killed through cgroup.kill: never used again (a killed cgroup kills what enters it).
        CHECK(run(ctx, next.async_kill(asio::use_awaitable)) == exit_status::signaled(SIGKILL));
        CHECK_FALSE(fs::exists(first));
        child after_kill = spawn(ctx, helper({"write-line", "up", "sleep", "30000"})
                                          .std_out(stdio::pipe())
                                          .cgroup(cgroup_mode::required));
        REQUIRE(after_kill.cgroup_path());
        CHECK(*after_kill.cgroup_path() != first);
        // It runs and says so: a child killed at birth (a reused killed leaf) reads as end-of-file.
        std::array<char, 3> up{};
        // Read through the io_context: a blocking read fails with EINTR in the signal-storm pass.
        auto [ec, n] = run(ctx, asio::async_read(after_kill.std_out(), asio::buffer(up),
                                                 asio::as_tuple(asio::use_awaitable)));
        CHECK_FALSE(ec);
        CHECK(n == up.size());
        CHECK(std::string(up.data(), up.size()) == "up\n");
        CHECK(run(ctx, after_kill.async_kill(asio::use_awaitable)) == exit_status::signaled(SIGKILL));
        // A stop signal to a tree: not reused either (its leaf may have seen cgroup.kill).
        child stopped = spawn(ctx, helper({"sleep", "30000"}).cgroup(cgroup_mode::required));
        const std::string stopped_leaf = *stopped.cgroup_path();
        CHECK(run(ctx, stopped.async_stop(5s, asio::use_awaitable)) == exit_status::signaled(SIGTERM));
        CHECK_FALSE(fs::exists(stopped_leaf));
    }

    TEST_CASE_FIXTURE(io_fixture, "C3: a child spawned from a thread that then exits stays alive") {
        child c;
        std::thread([&] { c = spawn(ctx, helper({"sleep", "30000"})); }).join();
        std::this_thread::sleep_for(1000ms);
        error_code ec;
        c.signal(0, ec);
        CHECK_FALSE(ec); // PR_SET_PDEATHSIG did not fire: the clone ran on drover's spawn thread
        auto out = output_now(helper({"print-pdeathsig"}));
        CHECK(out.out == "pdeathsig 9\n");
        auto none = output_now(helper({"print-pdeathsig"}).parent_death_signal(0));
        CHECK(none.out == "pdeathsig 0\n");
        finish(c.async_kill(asio::use_awaitable));
    }

    TEST_CASE_FIXTURE(
        io_fixture, "I2: stop, then start the same command again three times under the same parent cgroup") {
        DROVER_SKIP_IF(needs_cgroup_v2());
        std::set<std::string> leaves;
        std::set<std::string> parents;
        for (int i = 0; i < 3; ++i) {
            child c = spawn(ctx, helper({"sleep", "30000"}).cgroup(cgroup_mode::required));
            REQUIRE(c.cgroup_path());
            leaves.insert(*c.cgroup_path());
            parents.insert(fs::path(*c.cgroup_path()).parent_path().string());
            std::this_thread::sleep_for(300ms);
            error_code ec;
            c.signal(0, ec);
            CHECK_FALSE(ec); // still up: not killed at birth by a reused, killed cgroup
            CHECK(c.tree_pids() == std::vector<pid_t>{*c.id()});
            CHECK(run(ctx, c.async_kill(asio::use_awaitable)) == exit_status::signaled(SIGKILL));
        }
        CHECK(leaves.size() == 3);
        CHECK(parents.size() == 1);
    }

    TEST_CASE_FIXTURE(
        io_fixture,
        "I2: a spawn into a frozen cgroup fails at once with EBUSY, stage cgroup; it does not hang") {
        DROVER_SKIP_IF(needs_cgroup_v2());
        // drover's own directory (drover-<pid>), the parent of every leaf: freeze it while nothing
        // of this suite runs in it. A fresh leaf below inherits the freeze.
        child probe = spawn(ctx, helper({"sleep", "30000"}).cgroup(cgroup_mode::required));
        REQUIRE(probe.cgroup_path());
        const std::string dir = fs::path(*probe.cgroup_path()).parent_path().string();
        CHECK(finish(probe.async_kill(asio::use_awaitable)) == exit_status::signaled(SIGKILL));
        auto freeze = [&](const char* v) { std::ofstream(dir + "/cgroup.freeze") << v; };
        // A child that stayed alive (the directory exists while it does) keeps the directory.
        child keeper = spawn(ctx, helper({"sleep", "30000"}).cgroup(cgroup_mode::required));
        freeze("1");
        // If the check were missing, the spawn below would block forever: thaw after 10 s anyway.
        std::atomic<bool> done{false};
        std::thread thaw([&] {
            for (int i = 0; i < 1000 && !done; ++i) std::this_thread::sleep_for(10ms);
            freeze("0");
        });
        auto t0 = clk::now();
        for (auto mode : {cgroup_mode::automatic, cgroup_mode::required}) {
            spawn_failure f;
            child c = spawn(ctx, helper({"exit", "0"}).cgroup(mode), f);
            CHECK(f.code == error_code(EBUSY, boost::system::system_category()));
            CHECK(f.stage == spawn_stage::cgroup);
            CHECK(f.message().find("is frozen") != std::string::npos);
        }
        CHECK(clk::now() - t0 < 8s); // the freezer lets go after 10 s
        done = true;
        thaw.join();
        CHECK(output_now(helper({"write-line", "thawed"})).out == "thawed\n");
        CHECK(finish(keeper.async_kill(asio::use_awaitable)) == exit_status::signaled(SIGKILL));
    }

    TEST_CASE("I1: the cgroup2 mount is found through mountinfo, wherever it is") {
        std::string mount, root;
        detail::parse_cgroup2_mount(
            "22 1 0:21 / /proc rw - proc proc rw\n"
            "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n",
            mount, root);
        CHECK(mount == "/sys/fs/cgroup/unified");
        CHECK(root == "/");
        detail::parse_cgroup2_mount("50 1 0:40 /sub /mnt/my\\040cg rw - cgroup2 none rw\n", mount, root);
        CHECK(mount == "/mnt/my cg");
        CHECK(root == "/sub");
        detail::parse_cgroup2_mount("22 1 0:21 / /proc rw - proc proc rw\n", mount, root);
        CHECK(mount.empty());
        const auto& p = detail::probe_cgroup();
        MESSAGE("cgroup v2: " << (p.usable ? "usable at " + p.own : "unavailable: " + p.why_not));
    }

    TEST_CASE("a required cgroup that cannot be had fails the spawn with a clear error") {
        if (needs_cgroup_v2().empty())
            DROVER_SKIP("this machine has a usable cgroup v2 (the failure path needs one without)");
        spawn_failure f;
        asio::io_context ctx;
        child c = spawn(ctx, helper({"exit", "0"}).cgroup(cgroup_mode::required), f);
        if (portable_backend()) { // no cgroups at all there: refused, by name
            CHECK(f.code == errc::not_supported);
            CHECK(f.detail.find("cgroup_mode::required") != std::string::npos);
            return;
        }
        CHECK(f.code == errc::no_cgroup);
        CHECK(f.stage == spawn_stage::cgroup);
    }

    TEST_CASE_FIXTURE(io_fixture,
                      "signalling a session tree again and again does not accumulate descriptors") {
        const std::string t = run_tag() + "7";
        child c = spawn(ctx, command("/bin/sh")
                                 .args({"-c", "sleep 1007." + t + " & sleep 1008." + t + " & wait"})
                                 .cgroup(cgroup_mode::off));
        REQUIRE(eventually([&] { return sleepers_with("." + t).size() == 2; }));
        auto fds = [] {
            return std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator());
        };
        error_code ec;
        c.signal_tree(SIGCONT, ec);
        auto before = fds();
        for (int i = 0; i < 100; ++i) c.signal_tree(SIGCONT, ec);
        CHECK_FALSE(ec);
        CHECK(fds() <= before + 1);
        CHECK_NOTHROW(c.signal_tree(SIGCONT));
        finish(c.async_kill(asio::use_awaitable));
        CHECK(sleepers_with("." + t).empty());
        // Nothing of the tree is left: both overloads say not_running.
        c.signal_tree(SIGCONT, ec);
        CHECK(ec == errc::not_running);
        try {
            c.signal_tree(SIGCONT);
            FAIL("no exception");
        } catch (const boost::system::system_error& e) {
            CHECK(e.code() == errc::not_running);
        }
    }

    TEST_CASE_FIXTURE(
        io_fixture,
        "a stop of a tree that is already empty still completes through the executor, not inline") {
        child c = spawn(ctx, helper({"exit", "5"}));
        CHECK(finish(c.async_wait(asio::use_awaitable)) == exit_status::exited(5));
        bool done = false;
        ctx.restart();
        asio::post(ctx, [&] {
            c.async_stop(1s, [&](error_code, exit_status st) {
                CHECK(st == exit_status::exited(5));
                done = true;
            });
            CHECK_FALSE(done); // not from inside the initiating call
        });
        ctx.run_for(5s);
        CHECK(done);
    }

    TEST_CASE_FIXTURE(
        io_fixture, "detach: the main process is reaped when it exits, while the rest of its tree runs on") {
        const std::string t = run_tag() + "8";
        child c = spawn(ctx, command("/bin/sh").args({"-c", "setsid sleep 1009." + t + " & exit 0"}));
        pid_t pid = *c.id();
        c.detach();
        REQUIRE(eventually([&] { return sleepers_with("." + t).size() == 1; }));
        ctx.run_for(300ms);
        detail::proc_ids ids;
        CHECK_FALSE((detail::read_proc_ids(pid, ids) && ids.state == 'Z')); // no zombie left
        for (pid_t p : sleepers_with("." + t)) ::kill(p, SIGKILL);
    }

    TEST_CASE_FIXTURE(io_fixture, "a stop signal that is not a signal is refused at spawn") {
        spawn_failure f;
        child c = spawn(ctx, helper({"exit", "0"}).stop_signal(0), f);
        CHECK(f.code == errc::invalid_command);
        CHECK_FALSE(c.valid());
    }

    TEST_CASE("/proc/<pid>/stat parsing survives a hostile comm") {
        detail::proc_ids ids;
        REQUIRE(detail::parse_stat_ids("123 (a) (b\n) c) S 1 456 789 0 -1", ids));
        CHECK(ids.state == 'S');
        CHECK(ids.ppid == 1);
        CHECK(ids.pgrp == 456);
        CHECK(ids.session == 789);
        CHECK_FALSE(detail::parse_stat_ids("123 no paren", ids));
    }

    TEST_CASE("H2: no wall clock in any timing path") {
        // Static check over the library and tools: timing uses steady_clock / steady_timer only.
        // (A line marked "wall clock for display" converts a kernel start time for people to read.)
        int hits = 0;
        for (const char* dir :
             {DROVER_SOURCE_ROOT "/lib", DROVER_SOURCE_ROOT "/tools", DROVER_SOURCE_ROOT "/include"}) {
            for (auto& e : fs::recursive_directory_iterator(dir)) {
                if (!e.is_regular_file()) continue;
                auto ext = e.path().extension();
                if (ext != ".cpp" && ext != ".hpp") continue;
                std::ifstream in(e.path());
                std::string line;
                int n = 0;
                while (std::getline(in, line)) {
                    ++n;
                    // A start time shown to people is wall-clock data, not timing: such lines say so,
                    // and only in the introspection files and the supervisor's timestamp type.
                    const auto file = e.path().filename().string();
                    if ((file == "proc_info.cpp" || file == "proc_info.hpp" || file == "inspect.cpp" ||
                         file == "supervisor.hpp") &&
                        line.find("wall clock for display") != std::string::npos)
                        continue;
                    for (const char* bad : {"system_clock", "gettimeofday", "time(nullptr)", "time(NULL)",
                                            "CLOCK_REALTIME", "system_timer"}) {
                        if (line.find(bad) != std::string::npos) {
                            ++hits;
                            MESSAGE(e.path().string() << ":" << n << ": " << line);
                        }
                    }
                }
            }
        }
        CHECK(hits == 0);
    }

} // TEST_SUITE
