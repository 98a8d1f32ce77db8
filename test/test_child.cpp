// The child handle: waiting, signalling, reaping, destruction, and living inside a host
// process that has its own ideas about children and signals (C1, C2, A1).
#include "drover/child.hpp"

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

#include "detail/launch.hpp"
#include "detail/sys.hpp"
#include <array>

#include "support.hpp"

using namespace drover;
using namespace drover::test;
namespace fs = std::filesystem;

extern char** environ;

namespace {

/// Blocks until the pidfd says the process has exited (without reaping it).
bool wait_exited_unreaped(const child& c, int timeout_ms = 10000) {
    pollfd p{c.native_handle(), POLLIN, 0};
    return eintr_retry([&] { return ::poll(&p, 1, timeout_ms); }) == 1;
}

asio::awaitable<exit_status> spawn_and_wait(command cmd) {
    auto ex44 = co_await asio::this_coro::executor;
    child c = spawn(ex44, cmd);
    co_return co_await c.async_wait(asio::use_awaitable);
}

/// CPU time (user + system) this process has used so far, all threads.
std::chrono::microseconds own_cpu() {
    struct rusage ru {};
    ::getrusage(RUSAGE_SELF, &ru);
    return std::chrono::seconds(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           std::chrono::microseconds(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

bool is_my_child(pid_t pid) {
    for (auto& [p, state] : my_children())
        if (p == pid) return true;
    return false;
}

struct dropped_tree {
    pid_t pid;
    detail::unique_fd grandchild; // a pidfd: readable once the grandchild has exited
    std::optional<std::string> leaf;
};

/// Spawns 20 children that each leave a grandchild behind, then drops every handle without a
/// wait, with the io_context either stopped (its run() returned: nothing waited on the
/// children) or merely idle (never run again), and destroys the context. Nothing may be left:
/// no zombie, no grandchild, no leaf cgroup, within a bound.
void drop_twenty(cgroup_mode mode, bool stopped_at_drop) {
    std::vector<dropped_tree> trees;
    const auto t0 = std::chrono::steady_clock::now();
    {
        asio::io_context ctx;
        std::vector<child> kids;
        for (int i = 0; i < 20; ++i) {
            command cmd = helper({"spawn-grandchild", "30000", "sleep", "30000"});
            cmd.std_out(stdio::pipe()).cgroup(mode);
            kids.push_back(spawn(ctx, cmd));
        }
        run(ctx, [&]() -> asio::awaitable<void> {
            for (auto& k : kids) {
                line_reader lines(k.std_out());
                auto l = co_await lines.next(asio::use_awaitable);
                REQUIRE(l);
                REQUIRE(l->text.rfind("grandchild ", 0) == 0);
                const pid_t g = std::stoi(l->text.substr(11));
                trees.push_back({*k.id(), detail::unique_fd{detail::sys_pidfd_open(g, 0)}, k.cgroup_path()});
                REQUIRE(trees.back().grandchild);
            }
        }());
        REQUIRE(ctx.stopped());              // run() returned: nothing waits on the children
        if (!stopped_at_drop) ctx.restart(); // idle, as if it would run again; it never does
        kids.clear();
        if (stopped_at_drop) {
            // Nothing will run the context: the destructors themselves reaped.
            for (auto& t : trees) CHECK_FALSE(is_my_child(t.pid));
        }
    } // the io_context is destroyed here
    const auto took = std::chrono::steady_clock::now() - t0;
    CHECK(took < 20s); // generous: spawning 40 processes, killing and reaping them
    bool any_leaf = false;
    for (auto& t : trees) {
        CHECK_FALSE(is_my_child(t.pid));
        pollfd p{t.grandchild.get(), POLLIN, 0};
        CHECK(eintr_retry([&] { return ::poll(&p, 1, 5000); }) == 1); // the grandchild died too
        if (t.leaf) {
            any_leaf = true;
            CHECK_FALSE(fs::exists(*t.leaf));
        }
    }
    if (mode != cgroup_mode::off && !any_leaf)
        MESSAGE("partly skipped (the rest was checked): no cgroup v2 here, so no leaf removal to check");
    CHECK(zombie_count() == 0);
}

} // namespace

TEST_SUITE("child") {

    TEST_CASE_FIXTURE(io_fixture, "async_wait reports exit codes and signals, then the id is empty") {
        finish([]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            child c = spawn(ex, helper({"exit", "42"}));
            REQUIRE(c.id().has_value());
            CHECK(*c.id() > 0);
            CHECK(c.native_handle() >= 0);
            auto st = co_await c.async_wait(asio::use_awaitable);
            CHECK(st == exit_status::exited(42));
            CHECK_FALSE(c.id().has_value());
            CHECK(c.status() == exit_status::exited(42));
            // Waiting again gives the same answer.
            CHECK(co_await c.async_wait(asio::use_awaitable) == exit_status::exited(42));

            child k = spawn(ex, helper({"signal", "KILL"}));
            CHECK(co_await k.async_wait(asio::use_awaitable) == exit_status::signaled(SIGKILL));
        }());
    }

    TEST_CASE_FIXTURE(io_fixture, "signal goes through the pidfd and fails with not_running after the exit") {
        finish([]() -> asio::awaitable<void> {
            auto ex81 = co_await asio::this_coro::executor;
            child c = spawn(ex81, helper({"trap-term", "30000"}).std_out(stdio::pipe()));
            std::array<char, 14> buf{};
            co_await asio::async_read(c.std_out(), asio::buffer(buf),
                                      asio::use_awaitable); // "trapping TERM\n"
            c.signal(SIGTERM);
            CHECK(co_await c.async_wait(asio::use_awaitable) == exit_status::exited(0));
            error_code ec;
            c.signal(SIGTERM, ec);
            CHECK(ec == errc::not_running);
            CHECK_THROWS_AS(c.signal(SIGTERM), boost::system::system_error);

            // Exited but not yet reaped: still not_running, never a signal to a stranger.
            auto ex92 = co_await asio::this_coro::executor;
            child z = spawn(ex92, helper({"exit", "0"}));
            REQUIRE(wait_exited_unreaped(z));
            z.signal(SIGTERM, ec);
            CHECK(ec == errc::not_running);
            CHECK(co_await z.async_wait(asio::use_awaitable) == exit_status::exited(0));
        }());
    }

    TEST_CASE_FIXTURE(io_fixture,
                      "a wait on a process that already exited completes through the executor, not inline") {
        child c = spawn(ctx, helper({"exit", "3"}));
        REQUIRE(wait_exited_unreaped(c));
        bool initiated = false, called_inline = false, done = false;
        c.async_wait([&](error_code ec, exit_status st) {
            called_inline = !initiated;
            done = true;
            CHECK_FALSE(ec);
            CHECK(st == exit_status::exited(3));
        });
        initiated = true;
        ctx.run_for(10s);
        CHECK(done);
        CHECK_FALSE(called_inline);
        // And once reaped, too.
        done = initiated = false;
        c.async_wait([&](error_code, exit_status st) {
            called_inline = !initiated;
            done = true;
            CHECK(st == exit_status::exited(3));
        });
        initiated = true;
        ctx.restart();
        ctx.run_for(10s);
        CHECK(done);
        CHECK_FALSE(called_inline);
    }

    TEST_CASE_FIXTURE(io_fixture, "try_wait does not block and reaps once the process is gone") {
        child c = spawn(ctx, helper({"sleep", "200", "exit", "5"}));
        CHECK_FALSE(c.try_wait().has_value());
        REQUIRE(wait_exited_unreaped(c));
        CHECK(c.try_wait() == exit_status::exited(5));
        CHECK_FALSE(c.id().has_value());
    }

    TEST_CASE_FIXTURE(io_fixture, "several waits on one child all complete with the same status") {
        child c = spawn(ctx, helper({"sleep", "100", "exit", "9"}));
        int completed = 0;
        for (int i = 0; i < 3; ++i)
            c.async_wait([&](error_code ec, exit_status st) {
                CHECK_FALSE(ec);
                CHECK(st == exit_status::exited(9));
                ++completed;
            });
        ctx.run_for(10s);
        CHECK(completed == 3);
    }

    TEST_CASE_FIXTURE(io_fixture,
                      "with cancel_policy::leave_running, cancelling a wait leaves the process running") {
        child c = spawn(ctx, helper({"sleep", "30000"}).on_cancel(cancel_policy::leave_running));
        asio::cancellation_signal cancel;
        error_code got;
        bool done = false;
        c.async_wait(asio::bind_cancellation_slot(cancel.slot(), [&](error_code ec, exit_status) {
            got = ec;
            done = true;
        }));
        asio::post(ctx, [&] { cancel.emit(asio::cancellation_type::terminal); });
        ctx.run_for(10s);
        REQUIRE(done);
        CHECK(got == asio::error::operation_aborted);
        error_code ec;
        c.signal(0, ec);
        CHECK_FALSE(ec); // still running
        c.signal(SIGKILL);
        ctx.restart();
        CHECK(finish([&]() -> asio::awaitable<exit_status> {
                  co_return co_await c.async_wait(asio::use_awaitable);
              }()) == exit_status::signaled(SIGKILL));
    }

    TEST_CASE_FIXTURE(io_fixture, "destroying a running child kills it and reaps it in the background") {
        pid_t pid;
        {
            child c = spawn(ctx, helper({"sleep", "30000"}));
            pid = *c.id();
            CHECK(is_my_child(pid));
        }
        ctx.run_for(10s); // returns once the background reaper is done
        CHECK(ctx.stopped());
        CHECK_FALSE(is_my_child(pid));
    }

    TEST_CASE("20 children dropped after ctx.run() returned leave no zombie, no process and no leaf cgroup") {
        drop_twenty(cgroup_mode::automatic, true);
    }

    TEST_CASE("20 children dropped on an idle io_context that is then destroyed leave nothing behind") {
        drop_twenty(cgroup_mode::automatic, false);
    }

    TEST_CASE("without cgroups, dropped children's whole sessions die and the children are reaped, stopped "
              "or destroyed context") {
        drop_twenty(cgroup_mode::off, true);
        drop_twenty(cgroup_mode::off, false);
    }

    TEST_CASE("children owned by coroutines that a destroyed io_context never resumed are killed and reaped, "
              "leaves removed") {
        // An I/O object made before the first spawn makes drover's cleanup service the newer one,
        // so it is shut down before the reactor destroys the suspended coroutines: their children
        // are dropped after drover's shutdown, and must still be killed, reaped and removed.
        struct seen {
            pid_t pid;
            detail::unique_fd grandchild;
            std::optional<std::string> leaf;
        };
        std::vector<seen> trees;
        const auto t0 = std::chrono::steady_clock::now();
        {
            asio::io_context ctx;
            asio::steady_timer early(ctx);
            for (int i = 0; i < 10; ++i)
                asio::co_spawn(
                    ctx,
                    [&]() -> asio::awaitable<void> {
                        auto ex = co_await asio::this_coro::executor;
                        command cmd = helper({"spawn-grandchild", "30000", "sleep", "30000"});
                        cmd.std_out(stdio::pipe());
                        child c = spawn(ex, cmd);
                        line_reader lines(c.std_out());
                        auto l = co_await lines.next(asio::use_awaitable);
                        const pid_t g = l ? std::stoi(l->text.substr(11)) : -1;
                        trees.push_back(
                            {*c.id(), detail::unique_fd{detail::sys_pidfd_open(g, 0)}, c.cgroup_path()});
                        co_await c.async_wait(asio::use_awaitable); // suspended here when the context dies
                    },
                    [](std::exception_ptr) {});
            for (int i = 0; i < 500 && trees.size() < 10; ++i) ctx.run_for(10ms);
            REQUIRE(trees.size() == 10);
        } // destroyed with ten coroutines suspended, each owning a running child
        CHECK(std::chrono::steady_clock::now() - t0 < 20s);
        for (auto& t : trees) {
            CHECK_FALSE(is_my_child(t.pid));
            REQUIRE(t.grandchild);
            pollfd p{t.grandchild.get(), POLLIN, 0};
            CHECK(eintr_retry([&] { return ::poll(&p, 1, 5000); }) == 1);
            if (t.leaf) CHECK_FALSE(fs::exists(*t.leaf));
        }
        CHECK(zombie_count() == 0);
    }

    TEST_CASE("a detached child keeps running and is still reaped when it exits") {
        char tmpl[] = "/tmp/drover-detach-XXXXXX";
        int fd = ::mkstemp(tmpl);
        REQUIRE(fd >= 0);
        ::close(fd);
        ::unlink(tmpl);
        asio::io_context ctx;
        pid_t pid;
        {
            child c = spawn(ctx, helper({"sleep", "300", "touch", tmpl}));
            pid = *c.id();
            c.detach();
            CHECK_FALSE(c.valid());
        }
        ctx.run_for(10s);
        CHECK(ctx.stopped());
        CHECK(fs::exists(tmpl)); // it ran to its end: not killed
        CHECK_FALSE(is_my_child(pid));
        ::unlink(tmpl);
    }

    TEST_CASE_FIXTURE(io_fixture, "moving a child keeps its waits and its process") {
        auto st = finish([]() -> asio::awaitable<exit_status> {
            auto ex212 = co_await asio::this_coro::executor;
            child a = spawn(ex212, helper({"sleep", "50", "exit", "4"}));
            child b = std::move(a);
            CHECK_FALSE(a.valid());
            co_return co_await b.async_wait(asio::use_awaitable);
        }());
        CHECK(st == exit_status::exited(4));
    }

    TEST_CASE_FIXTURE(io_fixture,
                      "1,000 short-lived children, 64 at a time, are all reaped with their own statuses") {
        constexpr int total = 1000, width = 64;
        int next = 0, wrong = 0, finished = 0;
        auto worker = [&]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            while (next < total) {
                int i = next++;
                child c = spawn(ex, helper({"exit", std::to_string(i % 256)}));
                auto st = co_await c.async_wait(asio::use_awaitable);
                if (st != exit_status::exited(i % 256)) ++wrong;
                ++finished;
            }
        };
        std::exception_ptr failure;
        for (int w = 0; w < width; ++w)
            asio::co_spawn(ctx, worker(), [&](std::exception_ptr e) {
                if (e) failure = e;
            });
        ctx.run_for(300s);
        if (failure) std::rethrow_exception(failure);
        CHECK(finished == total);
        CHECK(wrong == 0);
        CHECK(zombie_count() == 0);
        CHECK(my_children().empty());
    }

    TEST_CASE_FIXTURE(io_fixture,
                      "waits complete when several threads run the io_context (no lost wake-up)") {
        constexpr int total = 300;
        std::atomic<int> ok{0};
        for (int i = 0; i < total; ++i)
            asio::co_spawn(ctx, spawn_and_wait(helper({"exit", std::to_string(i % 100)})),
                           [&, i](std::exception_ptr e, exit_status st) {
                               if (!e && st == exit_status::exited(i % 100)) ++ok;
                           });
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t) threads.emplace_back([&] { ctx.run_for(120s); });
        for (auto& t : threads) t.join();
        CHECK(ok == total);
        CHECK(my_children().empty());
    }

    TEST_CASE_FIXTURE(
        io_fixture,
        "C5: a wait on a traced child lasts until the tracer lets the exit go, and costs no CPU meanwhile") {
        // drover-test-child's `trace` holds the exit for 1.5 s: all that time the pidfd is readable
        // but there is nothing to reap. The wait must complete with the real status, not an error or
        // an unknown status, and must not spin on the readable pidfd.
        finish([]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            child target = spawn(ex, helper({"sleep", "30000"}));
            command trace = helper({"trace", std::to_string(*target.id()), "1500"});
            trace.std_out(stdio::pipe()).std_err(stdio::null());
            child tracer = spawn(ex, trace);
            line_reader lines(tracer.std_out());
            auto [lec, first] = co_await lines.next(asio::as_tuple(asio::use_awaitable));
            if (!first || first->text.rfind("tracing", 0) != 0) {
                note_skip("this machine refuses PTRACE_SEIZE of a sibling process (needs CAP_SYS_PTRACE)");
                co_return; // the case ends here: nothing follows the run
            }
            const auto cpu0 = own_cpu();
            const auto t0 = std::chrono::steady_clock::now();
            target.signal(SIGINT);
            auto [ec, st] = co_await target.async_wait(asio::as_tuple(asio::use_awaitable));
            const auto waited = std::chrono::steady_clock::now() - t0;
            const auto cpu = own_cpu() - cpu0;
            CHECK_MESSAGE(!ec, ec.message());
            CHECK(st == exit_status::signaled(SIGINT));
            CHECK(waited >= 1400ms); // the tracer really held the exit
            // Generous: a loop re-arming on the readable pidfd would burn about the 1.5 s held.
            CHECK_MESSAGE(cpu < 600ms, "CPU used while waiting: " << cpu.count() << " us");
            auto [lec2, second] = co_await lines.next(asio::as_tuple(asio::use_awaitable));
            CHECK((second && second->text == "released"));
            CHECK(co_await tracer.async_wait(asio::use_awaitable) == exit_status::exited(0));
        }());
    }

    TEST_CASE_FIXTURE(
        io_fixture,
        "C5: 20 children traced by strace and sent SIGINT are all waited for as killed by SIGINT") {
        DROVER_SKIP_IF(needs_strace());
        const std::string strace = on_path("strace");
        const auto cpu0 = own_cpu();
        finish([](std::string strace) -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            std::vector<child> kids;
            // The plain sleep(1), as a user would trace it: the helper built with a sanitizer makes
            // strace trace its whole start-up, twenty times at once, which loads the machine.
            const std::string sleep = on_path("sleep");
            for (int i = 0; i < 20; ++i) {
                std::vector<std::string> args{"-o", "/dev/null", "-D", sleep.empty() ? helper_path() : sleep};
                if (sleep.empty())
                    args.insert(args.end(), {"sleep", "5000"});
                else
                    args.push_back("5");
                kids.push_back(spawn(ex, command(strace, std::move(args)).std_err(stdio::null())));
            }
            asio::steady_timer t(ex);
            t.expires_after(100ms);
            co_await t.async_wait(asio::use_awaitable);
            for (auto& k : kids) k.signal(SIGINT);
            for (auto& k : kids) {
                auto [ec, st] = co_await k.async_wait(asio::as_tuple(asio::use_awaitable));
                CHECK_MESSAGE(!ec, ec.message());
                CHECK(st == exit_status::signaled(SIGINT));
            }
        }(strace));
        const auto cpu = own_cpu() - cpu0;
        CHECK_MESSAGE(cpu < 3s, "CPU used: " << cpu.count() << " us"); // generous: 20 spawns and waits
        CHECK(zombie_count() == 0);
    }

    TEST_CASE_FIXTURE(io_fixture, "spawn may be called from a thread that does not run the io_context") {
        child c;
        std::thread t([&] { c = spawn(ctx, helper({"exit", "11"})); });
        t.join();
        CHECK(finish([&]() -> asio::awaitable<exit_status> {
                  co_return co_await c.async_wait(asio::use_awaitable);
              }()) == exit_status::exited(11));
    }

    TEST_CASE(
        "C2: drover never installs or changes a SIGCHLD disposition; the host's handler keeps working") {
        static std::atomic<int> sigchld_count{0};
        struct sigaction sa {
        }, old{};
        sa.sa_handler = [](int) { ++sigchld_count; };
        sigemptyset(&sa.sa_mask);
        REQUIRE(::sigaction(SIGCHLD, &sa, &old) == 0);
        asio::io_context ctx;
        for (int i = 0; i < 20; ++i)
            CHECK(run(ctx, spawn_and_wait(helper({"exit", "1"}))) == exit_status::exited(1));
        struct sigaction now {};
        ::sigaction(SIGCHLD, nullptr, &now);
        ::sigaction(SIGCHLD, &old, nullptr);
        CHECK(reinterpret_cast<void*>(now.sa_handler) == reinterpret_cast<void*>(sa.sa_handler));
        ::sigaction(SIGCHLD, &sa, nullptr); // counting again while the delivery is awaited
        // The kernel still tells the host; drover just does not listen. Under ThreadSanitizer the
        // handler runs when the runtime hands the signal over (deferred to a thread's next
        // intercepted call, once per signal number), which in a signal storm was seen not to
        // happen within the case: there it is reported, not failed; every other build checks it.
        const bool told = eventually([] { return sigchld_count > 0; }, 10s);
        ::sigaction(SIGCHLD, &old, nullptr);
#if defined(__SANITIZE_THREAD__)
        if (!told) MESSAGE("under ThreadSanitizer no SIGCHLD handler ran (deferred signal delivery)");
#else
        CHECK(told);
#endif
    }

    TEST_CASE("C2: inside a host that reaps with waitpid(-1) every 10 ms, drover never hangs and never reaps "
              "the host's children") {
        for (bool all : {false, true}) { // the host's waitpid(-1) with and without __WALL
            CAPTURE(all);
            // The host's own child, which drover must leave to the host.
            std::atomic<pid_t> own{-1};
            std::atomic<bool> stop{false};
            std::atomic<int> host_reaped{0};
            std::mutex m;
            std::condition_variable reaped_cv;
            std::vector<std::pair<pid_t, int>> host_statuses;
            std::thread host([&] {
                // The host's polling reaper, as in the row: every 10 ms, until told to stop and its own
                // child has been reaped (at most ~10 s).
                bool own_reaped = false;
                for (int round = 0; round < 1000 && !(stop.load() && own_reaped); ++round) {
                    int s;
                    pid_t p;
                    while ((p = ::waitpid(-1, &s, WNOHANG | (all ? __WALL : 0))) > 0) {
                        ++host_reaped;
                        if (p == own.load()) own_reaped = true;
                        {
                            std::lock_guard lk(m);
                            host_statuses.emplace_back(p, s);
                        }
                        reaped_cv.notify_all();
                    }
                    std::this_thread::sleep_for(10ms);
                }
            });
            pid_t own_pid = -1;
            char arg0[] = "sleep", arg1[] = "0.3";
            char* own_argv[] = {arg0, arg1, nullptr};
            REQUIRE(::posix_spawnp(&own_pid, "sleep", nullptr, nullptr, own_argv, environ) == 0);
            own = own_pid;

            asio::io_context ctx;
            // The clone+pidfd_open launcher (run by the *-on-clone-pidfd-open tests) takes the pidfd
            // once the child runs: a child that exits at once can be reaped by the host first, and the
            // spawn then fails with ESRCH at stage pidfd (documented). Let such a child live 30 ms.
            (void)output_now(helper({"exit", "0"}));
            // So does the portable backend (pidfd_open after its fork).
            const bool late_pidfd =
                detail::current_launcher() == detail::launcher_kind::clone_pidfd_open || portable_backend();
            int exact = 0, unknown = 0, wrong = 0, stolen = 0;
            for (int i = 0; i < 40; ++i) {
                std::vector<std::string> script{"exit", std::to_string(i)};
                if (late_pidfd) script.insert(script.begin(), {"sleep", "30"});
                child c = spawn(ctx, helper(std::move(script)));
                const pid_t pid = *c.id();
                if (i % 2 == 0) {
                    // Let the host win: wait until its reaper has taken this child.
                    REQUIRE(wait_exited_unreaped(c));
                    std::unique_lock lk(m);
                    if (reaped_cv.wait_for(lk, 5s, [&] {
                            return std::any_of(host_statuses.begin(), host_statuses.end(),
                                               [&](auto& ps) { return ps.first == pid; });
                        }))
                        ++stolen;
                }
                auto st = run(ctx, [&]() -> asio::awaitable<exit_status> {
                    co_return co_await c.async_wait(asio::use_awaitable);
                }());
                CHECK_FALSE(c.id().has_value());
                if (st == exit_status::exited(i))
                    ++exact;
                else if (st.is_unknown())
                    ++unknown;
                else
                    ++wrong;
            }
            stop = true;
            host.join();
            CHECK(wrong == 0);
            CHECK(stolen == 20);
            if (detail::kernel_has_pidfd_exit_info())
                CHECK(exact == 40); // recovered through PIDFD_INFO_EXIT
            else
                CHECK(exact + unknown == 40);
            std::lock_guard lk(m);
            auto it = std::find_if(host_statuses.begin(), host_statuses.end(),
                                   [&](auto& ps) { return ps.first == own_pid; });
            REQUIRE(it != host_statuses.end());
            CHECK(WIFEXITED(it->second));
            CHECK(WEXITSTATUS(it->second) == 0);
        }
    }

    TEST_CASE_FIXTURE(io_fixture,
                      "C1: after pid reuse, signalling the old child never reaches the new process") {
        child a = spawn(ctx, helper({"exit", "0"}));
        const pid_t old_pid = *a.id();
        REQUIRE(wait_exited_unreaped(a));
        // Someone else reaps A (a host with __WALL), so its pid is free for reuse.
        siginfo_t si{};
        REQUIRE(eintr_retry(
                    [&] { return ::waitid(P_PID, static_cast<id_t>(old_pid), &si, WEXITED | __WALL); }) == 0);
        // Make an unrelated process B take exactly that pid (clone3 set_tid, Linux 5.5, CAP_SYS_ADMIN).
        detail::clone_args args{};
        args.exit_signal = SIGCHLD;
        pid_t want = old_pid;
        args.set_tid = reinterpret_cast<std::uint64_t>(&want);
        args.set_tid_size = 1;
        long b = ::syscall(SYS_clone3, &args, sizeof args);
        if (b == 0) {
            for (;;) ::syscall(SYS_pause); // B: an innocent bystander, until the test kills it
        }
        if (b < 0) {
            const int err = errno;
            CHECK(run(ctx,
                      [&]() -> asio::awaitable<exit_status> {
                          co_return co_await a.async_wait(asio::use_awaitable);
                      }())
                      .is_exited() == detail::kernel_has_pidfd_exit_info());
            DROVER_SKIP("cannot choose a pid with clone3 set_tid here ("
                        << std::strerror(err) << "); needs CAP_SYS_ADMIN and Linux 5.5");
        }
        REQUIRE(b == old_pid);
        error_code ec;
        a.signal(SIGKILL, ec);
        CHECK(ec == errc::not_running);
        auto st = finish([&]() -> asio::awaitable<exit_status> {
            co_return co_await a.async_wait(asio::use_awaitable);
        }());
        if (detail::kernel_has_pidfd_exit_info())
            CHECK(st == exit_status::exited(0));
        else
            CHECK(st.is_unknown());
        CHECK_FALSE(a.id().has_value());
        // B is untouched: still running, not reaped by drover.
        siginfo_t bs{};
        REQUIRE(eintr_retry([&] { return ::waitid(P_PID, static_cast<id_t>(b), &bs, WEXITED | WNOHANG); }) ==
                0);
        CHECK(bs.si_pid == 0);
        ::kill(static_cast<pid_t>(b), SIGKILL); // the test's own raw child
        REQUIRE(eintr_retry([&] { return ::waitid(P_PID, static_cast<id_t>(b), &bs, WEXITED); }) == 0);
        CHECK(bs.si_code == CLD_KILLED);
    }

    TEST_CASE("A1: spawning while other threads hold locks, allocate and log never deadlocks") {
        auto log = spdlog::basic_logger_mt("a1-hammer", "/dev/null");
        std::mutex global;
        std::atomic<bool> stop{false};
        std::vector<std::thread> hammers;
        for (int t = 0; t < 8; ++t)
            hammers.emplace_back([&, t] {
                std::vector<std::string> junk;
                while (!stop.load()) {
                    std::lock_guard lk(global);
                    junk.emplace_back(256, 'x');
                    if (junk.size() > 64) junk.clear();
                    log->info("hammer {} holds the lock", t);
                }
            });
        asio::io_context ctx;
        constexpr int spawns = 2000;
        auto worst = std::chrono::steady_clock::duration::zero();
        int failed = 0;
        run(
            ctx,
            [&]() -> asio::awaitable<void> {
                auto ex = co_await asio::this_coro::executor;
                for (int i = 0; i < spawns; ++i) {
                    auto t0 = std::chrono::steady_clock::now();
                    child c = spawn(ex, command("/bin/true"));
                    auto st = co_await c.async_wait(asio::use_awaitable);
                    worst = std::max(worst, std::chrono::steady_clock::now() - t0);
                    if (!st.success()) ++failed;
                }
            }(),
            600s);
        stop = true;
        for (auto& h : hammers) h.join();
        spdlog::drop("a1-hammer");
        CHECK(failed == 0);
        MESSAGE("slowest spawn+wait under contention: "
                << std::chrono::duration_cast<std::chrono::milliseconds>(worst).count() << " ms");
        CHECK(worst < 5s); // tens of ms here; a blocked spawn path would be the 600 s limit
    }

    TEST_CASE_FIXTURE(
        io_fixture,
        "spawn cost does not grow with a 1 GiB parent heap (generous bound; measured in drover-bench)") {
        // Boost.Process v2's launcher forks: its cost grows with the parent's memory (~30 ms/GiB).
        DROVER_SKIP_IF(needs_linux_backend("a spawn cost independent of the parent's memory"));
        auto median_spawn = [&] {
            std::vector<std::chrono::steady_clock::duration> d;
            run(ctx, [&]() -> asio::awaitable<void> {
                auto ex = co_await asio::this_coro::executor;
                for (int i = 0; i < 21; ++i) {
                    auto t0 = std::chrono::steady_clock::now();
                    child c = spawn(ex, command("/bin/true"));
                    d.push_back(std::chrono::steady_clock::now() - t0);
                    co_await c.async_wait(asio::use_awaitable);
                }
            }());
            std::sort(d.begin(), d.end());
            return std::pair{d.front(), d[d.size() / 2]};
        };
        auto [before, before_median] = median_spawn();
        std::vector<char> heap(std::size_t{1} << 30);
        for (std::size_t i = 0; i < heap.size(); i += 4096) heap[i] = static_cast<char>(i);
        auto [after, after_median] = median_spawn();
        using ms = std::chrono::duration<double, std::milli>;
        MESSAGE("spawn: fastest " << ms(before).count() << " ms, median " << ms(before_median).count()
                                  << " ms before; fastest " << ms(after).count() << " ms, median "
                                  << ms(after_median).count() << " ms with 1 GiB touched");
        // fork() would cost ~30 ms here at 1 GiB, every time; a vfork-style spawn stays near the
        // baseline. The fastest of 21 is compared: the median moves with the load of the other
        // suites running in parallel on two cores, the fastest only with the spawn's own cost.
#if defined(__SANITIZE_THREAD__)
        // TSan's shadow memory for the 1 GiB heap and its interceptors make every spawn cost vary
        // with what the runtime does, not with the heap: the ratio says nothing there.
        note_skip("ThreadSanitizer: spawn timings reflect its runtime, not the heap");
#else
        CHECK(after < before * 4 + 5ms);
#endif
        CHECK(heap[4096] == static_cast<char>(4096));
    }
}
