// task_group: JoinSet-style concurrency with structured cleanup; async_run_all.
#include "drover/task_group.hpp"

#include <algorithm>
#include <atomic>
#include <functional>
#include <thread>
#include <filesystem>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>

#include "drover/child.hpp"
#include "drover/run_all.hpp"
#include "support.hpp"

using namespace drover;
using namespace drover::test;
using clk = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

/// Live processes whose argv is drover-test-child with exactly this script.
int helpers_running(const std::string& script) {
    const std::string want = std::string(helper_path()) + " " + script;
    return live_processes_where([&](const std::string& cl) { return cl == want; }, true);
}

/// helpers_running(), looked at again for up to 3 s until it is `n`; the last count. Polled
/// because there is no event to wait for: spawn returns when the kernel releases the vfork parent
/// in the middle of execve, before it has set the new program's argument area, and until then
/// /proc/PID/cmdline reads empty (seen as 9 of 10 on a loaded machine). A leak of a 30 s sleeper
/// still shows.
int helpers_settle(const std::string& script, int n) {
    int seen = helpers_running(script);
    for (int i = 0; i < 60 && seen != n; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        seen = helpers_running(script);
    }
    return seen;
}

/// A task that runs a helper child sleeping `ms` and returns `value` once it has exited.
asio::awaitable<int> sleeper(int ms, int value) {
    auto ex = co_await asio::this_coro::executor;
    child c = spawn(ex, helper({"sleep", std::to_string(ms)}));
    auto st = co_await c.async_wait(asio::use_awaitable);
    if (!st.success()) throw std::runtime_error("sleeper failed");
    co_return value;
}

asio::awaitable<void> wait_for(std::chrono::milliseconds d) {
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(asio::use_awaitable);
}

} // namespace

TEST_SUITE("group") {

    TEST_CASE_FIXTURE(io_fixture,
                      "join_next yields tasks in completion order: 1250..250 ms sleepers finish in reverse") {
        finish([]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            task_group<int> g(ex);
            // drover-demo's "concurrent" 2.5 .. 0.5 s, halved: 250 ms apart, more than a helper's
            // start-up varies under TSan in a signal storm on a loaded machine (100 ms was not).
            const int ms[] = {1250, 1000, 750, 500, 250};
            for (int i = 0; i < 5; ++i) g.spawn(sleeper(ms[i], i));
            CHECK(g.size() == 5);
            auto t0 = clk::now();
            std::vector<int> order;
            while (auto r = co_await g.async_join_next()) order.push_back(r->get());
            auto took = clk::now() - t0;
            CHECK(order == std::vector<int>{4, 3, 2, 1, 0});
            CHECK(took >= 1250ms);
            CHECK(took < 30s); // about 1250 ms; the reverse order above already shows they ran at once
            CHECK(g.empty());
            auto none = co_await g.async_join_next();
            CHECK_FALSE(none);
        }());
        CHECK(zombie_count() == 0);
    }

    TEST_CASE_FIXTURE(io_fixture,
                      "a concurrency limit of 3 over 20 tasks: never more than 3 running, observed") {
        finish([]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            task_group<int> g(ex, {.max_concurrency = 3});
            int now = 0, peak = 0, group_peak = 0;
            auto task = [&](int i) -> asio::awaitable<int> {
                ++now;
                peak = std::max(peak, now);
                group_peak = std::max(group_peak, static_cast<int>(g.running()));
                int v = co_await sleeper(30, i); // a real child each
                --now;
                co_return v;
            };
            for (int i = 0; i < 20; ++i) g.spawn(task(i));
            CHECK(g.running() <= 3);
            auto all = co_await g.async_join_all();
            CHECK(all.size() == 20);
            std::vector<int> values;
            for (auto& r : all) values.push_back(r.get());
            std::sort(values.begin(), values.end());
            for (int i = 0; i < 20; ++i) CHECK(values[i] == i);
            CHECK(peak == 3);
            CHECK(group_peak <= 3);
        }());
    }

    TEST_CASE_FIXTURE(io_fixture,
                      "fail-fast: one task fails, the others are cancelled and their children are gone") {
        finish([]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            task_group<int> g(ex, {.fail_fast = true});
            for (int i = 0; i < 4; ++i) g.spawn(sleeper(30017, i));
            g.spawn([]() -> asio::awaitable<int> {
                co_await wait_for(200ms);
                throw std::runtime_error("task 5 failed");
            }());
            co_await wait_for(100ms);
            CHECK(helpers_settle("sleep 30017", 4) == 4);
            auto t0 = clk::now();
            auto all = co_await g.async_join_all();
            CHECK(clk::now() - t0 < 8s); // the stop takes the children's SIGTERM, not 30 s
            REQUIRE(all.size() == 5);
            CHECK(all.front().id == 5); // the failure finished first
            CHECK_THROWS_WITH_AS(all.front().get(), "task 5 failed", std::runtime_error);
            for (std::size_t i = 1; i < all.size(); ++i) {
                CHECK_FALSE(all[i].ok());
                try {
                    all[i].get();
                } catch (const boost::system::system_error& e) {
                    CHECK(e.code() == asio::error::operation_aborted); // the wait, cancelled
                }
            }
            CHECK(helpers_settle("sleep 30017", 0) == 0);
        }());
        CHECK(zombie_count() == 0);
    }

    TEST_CASE("leaving the scope with 10 long-running children: all stopped and reaped") {
        SUBCASE("with_task_group: the body returns early") {
            asio::io_context ctx;
            run(ctx, []() -> asio::awaitable<void> {
                auto ex = co_await asio::this_coro::executor;
                int r =
                    co_await with_task_group<int>(ex, {}, [&](task_group<int>& g) -> asio::awaitable<int> {
                        for (int i = 0; i < 10; ++i) g.spawn(sleeper(30018, i));
                        co_await wait_for(200ms);
                        CHECK(helpers_settle("sleep 30018", 10) == 10);
                        co_return 42;
                    });
                CHECK(r == 42);
                // with_task_group returned: every child is stopped and reaped.
                CHECK(helpers_settle("sleep 30018", 0) == 0);
                CHECK(zombie_count() == 0);
            }());
        }
        SUBCASE("with_task_group: the body throws; tasks hold children while waiting on something else") {
            asio::io_context ctx;
            run(ctx, []() -> asio::awaitable<void> {
                auto ex = co_await asio::this_coro::executor;
                auto holder = [](int i) -> asio::awaitable<int> {
                    auto e = co_await asio::this_coro::executor;
                    child c = spawn(e, helper({"sleep", "30019"}));
                    co_await wait_for(30s); // cancelled: the child is dropped while unwinding
                    co_return i;
                };
                try {
                    co_await with_task_group<int>(ex, {}, [&](task_group<int>& g) -> asio::awaitable<void> {
                        for (int i = 0; i < 10; ++i) g.spawn(holder(i));
                        co_await wait_for(200ms);
                        CHECK(helpers_settle("sleep 30019", 10) == 10);
                        throw std::runtime_error("body failed");
                    });
                    FAIL("no exception");
                } catch (const std::runtime_error& e) {
                    CHECK(std::string(e.what()) == "body failed");
                }
                // The destructors' kills were reaped before with_task_group rethrew.
                CHECK(helpers_settle("sleep 30019", 0) == 0);
                CHECK(zombie_count() == 0);
            }());
        }
        SUBCASE("the destructor: cancels, and the io_context finishes the cleanup") {
            asio::io_context ctx;
            run(ctx, []() -> asio::awaitable<void> {
                auto ex = co_await asio::this_coro::executor;
                {
                    task_group<int> g(ex);
                    for (int i = 0; i < 10; ++i) g.spawn(sleeper(30020, i));
                    for (int i = 0; i < 400 && helpers_running("sleep 30020") < 10; ++i)
                        co_await wait_for(50ms);
                    CHECK(helpers_settle("sleep 30020", 10) == 10);
                } // never joined
                // The tasks end in the background; give them the time a stop takes.
                for (int i = 0; i < 400 && helpers_running("sleep 30020") > 0; ++i) co_await wait_for(50ms);
                CHECK(helpers_settle("sleep 30020", 0) == 0);
            }());
            // The last reaps and rmdirs.
            for (auto end = clk::now() + 20s; zombie_count() != 0 && clk::now() < end;) ctx.run_for(100ms);
            CHECK(zombie_count() == 0);
        }
    }

    TEST_CASE_FIXTURE(io_fixture, "cancelling the coroutine that awaits join_next does not leak tasks") {
        finish([]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            task_group<int> g(ex);
            for (int i = 0; i < 3; ++i) g.spawn(sleeper(30021, i));
            // The join loses a race against a timer: the join is cancelled, not the tasks.
            using namespace asio::experimental::awaitable_operators;
            asio::steady_timer t(ex, 150ms);
            auto winner =
                co_await (g.async_join_next(asio::use_awaitable) || t.async_wait(asio::use_awaitable));
            CHECK(winner.index() == 1);
            CHECK(g.size() == 3);
            CHECK(helpers_settle("sleep 30021", 3) == 3);
            CHECK(co_await asio::this_coro::throw_if_cancelled()); // untouched by the race
            // The group still works after the cancelled join: a new task joins normally.
            g.spawn(sleeper(10, 99));
            auto next = co_await g.async_join_next();
            REQUIRE(next);
            CHECK(next->get() == 99);
            // Leaving the group stops them.
            co_await g.async_shutdown();
            CHECK(g.size() == 0);
            CHECK(helpers_settle("sleep 30021", 0) == 0);
        }());
        CHECK(zombie_count() == 0);
    }

    TEST_CASE_FIXTURE(io_fixture,
                      "cancelling the coroutine around with_task_group stops every task and child") {
        asio::cancellation_signal cancel;
        bool done = false;
        asio::co_spawn(
            ctx,
            []() -> asio::awaitable<void> {
                auto ex = co_await asio::this_coro::executor;
                co_await with_task_group<void>(ex, {}, [](task_group<void>& g) -> asio::awaitable<void> {
                    for (int i = 0; i < 5; ++i)
                        g.spawn([]() -> asio::awaitable<void> { co_await sleeper(30022, 0); }());
                    co_await g.async_join_all(asio::use_awaitable); // cancelled from outside
                });
            }(),
            asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr e) {
                done = true;
                CHECK(e); // the cancellation reaches the caller
                // Checked in the completion itself: by now everything is stopped and reaped.
                CHECK(helpers_settle("sleep 30022", 0) == 0);
                CHECK(zombie_count() == 0);
            }));
        asio::steady_timer t(ctx, 200ms);
        t.async_wait([&](error_code) {
            CHECK(helpers_settle("sleep 30022", 5) == 5);
            cancel.emit(asio::cancellation_type::terminal);
        });
        ctx.run_for(20s);
        CHECK(done);
        CHECK(helpers_settle("sleep 30022", 0) == 0);
        CHECK(zombie_count() == 0);
    }

    TEST_CASE_FIXTURE(
        io_fixture,
        "task_group<void>: join_next on an empty group is empty; a spawn after shutdown is aborted") {
        finish([]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            task_group<void> g(ex);
            CHECK_FALSE(co_await g.async_join_next());
            g.spawn([]() -> asio::awaitable<void> { co_return; }());
            auto r = co_await g.async_join_next();
            REQUIRE(r);
            CHECK(r->ok());
            co_await g.async_shutdown();
            g.spawn([]() -> asio::awaitable<void> { co_return; }());
            auto late = co_await g.async_join_next();
            REQUIRE(late);
            CHECK_FALSE(late->ok());
        }());
    }

    TEST_CASE_FIXTURE(io_fixture,
                      "async_run_all: 1,000 short commands, 32 at a time, every status right and in order") {
        auto t0 = clk::now();
        auto results = finish(
            []() -> asio::awaitable<std::vector<task_result<run_result>>> {
                auto ex = co_await asio::this_coro::executor;
                std::vector<command> cmds;
                for (int i = 0; i < 1000; ++i)
                    cmds.push_back(
                        helper({"write-line", "n" + std::to_string(i), "exit", std::to_string(i % 7)}));
                run_all_options o;
                o.max_concurrency = 32;
                co_return co_await async_run_all(ex, std::move(cmds), o, asio::use_awaitable);
            }(),
            300s);
        MESSAGE("1000 commands in " << std::chrono::duration<double>(clk::now() - t0).count() << " s");
        REQUIRE(results.size() == 1000);
        int wrong = 0;
        for (int i = 0; i < 1000; ++i) {
            auto& r = results[i];
            if (!r.ok() || r.value->status.code() != i % 7 ||
                r.value->out.head != "n" + std::to_string(i) + "\n")
                ++wrong;
        }
        CHECK(wrong == 0);
        CHECK(zombie_count() == 0);
    }

    TEST_CASE_FIXTURE(io_fixture, "async_run_all: per-command timeout, and a spawn failure in its own slot") {
        auto results = finish([]() -> asio::awaitable<std::vector<task_result<run_result>>> {
            auto ex = co_await asio::this_coro::executor;
            std::vector<command> cmds;
            cmds.push_back(helper({"exit", "0"}));
            cmds.push_back(helper({"sleep", "30023"}));
            cmds.push_back(command("/nonexistent/prog"));
            run_all_options o;
            o.timeout = 2s; // each command's own: room for a TSan-built helper to start and exit 0
            co_return co_await async_run_all(ex, std::move(cmds), o, asio::use_awaitable);
        }());
        REQUIRE(results.size() == 3);
        CHECK(results[0].get().status.success());
        CHECK(results[1].get().timed_out);
        CHECK_THROWS_AS(results[2].get(), spawn_error);
        CHECK(helpers_settle("sleep 30023", 0) == 0);
    }

} // TEST_SUITE

TEST_SUITE("group") {

    TEST_CASE("four threads run the io_context: 200 tasks with children, limit 16, fail-fast off") {
        asio::io_context ctx(4);
        std::atomic<int> now{0}, peak{0};
        std::vector<task_result<int>> all;
        bool done = false;
        auto body = [&]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            task_group<int> g(ex, {.max_concurrency = 16});
            // A named lambda: a coroutine lambda's captures live in the closure, which must outlive
            // the coroutine (a temporary closure would dangle).
            auto task = [&](int v) -> asio::awaitable<int> {
                int n = ++now;
                int p = peak.load();
                while (n > p && !peak.compare_exchange_weak(p, n)) {
                }
                int r = co_await sleeper(5, v);
                --now;
                co_return r;
            };
            for (int i = 0; i < 200; ++i) g.spawn(task(i));
            all = co_await g.async_join_all(asio::use_awaitable);
            done = true;
        };
        asio::co_spawn(ctx, body(), asio::detached);
        std::vector<std::thread> threads;
        for (int i = 0; i < 4; ++i) threads.emplace_back([&] { ctx.run_for(60s); });
        for (auto& t : threads) t.join();
        CHECK(done);
        CHECK(all.size() == 200);
        int ok = 0;
        for (auto& r : all) ok += r.ok() ? 1 : 0;
        CHECK(ok == 200);
        CHECK(peak.load() <= 16);
        CHECK(zombie_count() == 0);
    }

} // TEST_SUITE

TEST_SUITE("group") {

    TEST_CASE_FIXTURE(io_fixture,
                      "async_run_all respects its limit (sampled) and stops everything when cancelled") {
        int peak = 0;
        bool finished = false;
        error_code got;
        std::size_t n_results = 0;
        asio::cancellation_signal cancel;
        std::vector<command> cmds;
        for (int i = 0; i < 40; ++i) cmds.push_back(helper({"sleep", "30024"}));
        run_all_options o;
        o.max_concurrency = 6;
        async_run_all(ctx.get_executor(), std::move(cmds), o,
                      asio::bind_cancellation_slot(
                          cancel.slot(), [&](error_code ec, std::vector<task_result<run_result>> rs) {
                              finished = true;
                              got = ec;
                              n_results = rs.size();
                              CHECK(helpers_settle("sleep 30024", 0) == 0);
                          }));
        asio::steady_timer sample(ctx);
        int samples = 0;
        std::function<void()> tick = [&] {
            peak = std::max(peak, helpers_running("sleep 30024"));
            if (++samples == 20) return cancel.emit(asio::cancellation_type::terminal);
            sample.expires_after(20ms);
            sample.async_wait([&](error_code) { tick(); });
        };
        sample.expires_after(20ms);
        sample.async_wait([&](error_code) { tick(); });
        ctx.run_for(30s);
        CHECK(finished);
        CHECK(got == asio::error::operation_aborted);
        CHECK(n_results == 40);
        CHECK(peak == 6); // six at a time, observed
        CHECK(zombie_count() == 0);
    }

    TEST_CASE_FIXTURE(io_fixture, "with_task_group leaves the caller's throw_if_cancelled as it was") {
        finish([]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            CHECK(co_await asio::this_coro::throw_if_cancelled());
            co_await with_task_group<void>(ex, {}, [](task_group<void>& g) -> asio::awaitable<void> {
                g.spawn(wait_for(10ms));
                co_return;
            });
            CHECK(co_await asio::this_coro::throw_if_cancelled());
        }());
    }

    TEST_CASE(
        "four threads: shutdown in the middle of 100 tasks with children, limit 8, no hang, nothing left") {
        for (int round = 0; round < 5; ++round) {
            CAPTURE(round);
            asio::io_context ctx(4);
            bool done = false;
            auto body = [&]() -> asio::awaitable<void> {
                auto ex = co_await asio::this_coro::executor;
                task_group<int> g(ex, {.max_concurrency = 8});
                for (int i = 0; i < 100; ++i) g.spawn(sleeper(i % 2 ? 30025 : 5, i));
                co_await wait_for(std::chrono::milliseconds(20 + 30 * round));
                co_await g.async_shutdown(asio::use_awaitable);
                CHECK(g.size() == 0);
                done = true;
            };
            asio::co_spawn(ctx, body(), asio::detached);
            std::vector<std::thread> threads;
            for (int i = 0; i < 4; ++i) threads.emplace_back([&] { ctx.run_for(60s); });
            for (auto& t : threads) t.join();
            CHECK(done);
            CHECK(helpers_settle("sleep 30025", 0) == 0);
            CHECK(zombie_count() == 0);
        }
    }

    TEST_CASE_FIXTURE(io_fixture,
                      "leaving a group does not wait for unrelated child cleanups started later") {
        finish([]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            // Keep dropping children in the same io_context while the group is left.
            bool stop = false;
            auto churn = [&]() -> asio::awaitable<void> {
                while (!stop) {
                    auto e = co_await asio::this_coro::executor;
                    child c = spawn(e, helper({"sleep", "30026"}));
                    co_await wait_for(2ms); // c is dropped alive: a destructor cleanup each time
                }
            };
            asio::co_spawn(ex, churn(), asio::detached);
            co_await wait_for(50ms);
            auto t0 = clk::now();
            co_await with_task_group<void>(ex, {}, [](task_group<void>& g) -> asio::awaitable<void> {
                g.spawn(wait_for(10ms));
                co_return;
            });
            CHECK(clk::now() - t0 < 10s); // 10 ms here: the scope does not wait for the dropped children
            stop = true;
            co_await wait_for(100ms);
        }());
        // The dropped children's cleanups end by themselves (well under a second here; a loaded
        // sanitizer run gets longer).
        for (auto end = clk::now() + 20s; helpers_running("sleep 30026") != 0 && clk::now() < end;)
            ctx.run_for(100ms);
        CHECK(helpers_settle("sleep 30026", 0) == 0);
    }

} // TEST_SUITE
