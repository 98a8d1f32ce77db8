// drover-demo: every capability of drover, end to end, in seconds. Each scenario runs real
// programs (coreutils, present on every Debian system), checks what it sees, and prints one line.
// Exit status: 0 when every scenario holds, 1 otherwise.
#include <signal.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/core.h>
#include <fmt/ranges.h>

#include "drover/drover.hpp"

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;

namespace {

struct result {
    bool ok;
    std::string detail;
};

awaitable<std::string> read_all(asio::posix::stream_descriptor& p) {
    std::string out;
    char buf[4096];
    for (;;) {
        auto [ec, n] = co_await p.async_read_some(asio::buffer(buf), asio::as_tuple(use_awaitable));
        out.append(buf, n);
        if (ec) co_return out;
    }
}

/// What children print goes through drover::escape before it reaches the demo's terminal.
std::string visible(const std::string& s) { return drover::escape(s); }

// ---- scenarios ----------------------------------------------------------------------------------

awaitable<result> run_a_command() {
    auto ex = co_await asio::this_coro::executor;
    drover::child c = drover::spawn(ex, drover::command("uname", {"-s"}).std_out(drover::stdio::pipe()));
    std::string out = co_await read_all(c.std_out());
    auto st = co_await c.async_wait(use_awaitable);
    co_return result{st.success() && out == "Linux\n", fmt::format("uname -s printed '{}', {}", visible(out), st)};
}

awaitable<result> exit_codes_and_signals() {
    auto ex = co_await asio::this_coro::executor;
    drover::child f = drover::spawn(ex, drover::command("false"));
    auto st1 = co_await f.async_wait(use_awaitable);
    drover::child s = drover::spawn(ex, drover::command("sleep", {"30"}));
    s.signal(SIGTERM); // through the pidfd: never a reused pid
    auto st2 = co_await s.async_wait(use_awaitable);
    co_return result{st1 == drover::exit_status::exited(1) && st2 == drover::exit_status::signaled(SIGTERM),
                     fmt::format("false {} ($?={}); sleep 30 + SIGTERM {} ($?={})", st1, st1.shell_code(), st2,
                                 st2.shell_code())};
}

awaitable<result> hostile_arguments() {
    auto ex = co_await asio::this_coro::executor;
    const std::vector<std::string> hostile = {"; touch /tmp/pwned $(id)\nrm -rf x", "`id`", "*", "a b", "|", ""};
    drover::command cmd("printf", {"%s\\0"});
    cmd.args(hostile).std_out(drover::stdio::pipe());
    drover::child c = drover::spawn(ex, cmd);
    std::string out = co_await read_all(c.std_out());
    co_await c.async_wait(use_awaitable);
    std::string expected;
    for (const auto& h : hostile) expected += h + '\0';
    co_return result{out == expected,
                     fmt::format("{} arguments echoed back byte for byte, no shell: '{}'", hostile.size(), visible(out))};
}

awaitable<result> pipe_through_a_child() {
    auto ex = co_await asio::this_coro::executor;
    drover::child c = drover::spawn(
        ex, drover::command("tr", {"a-z", "A-Z"}).std_in(drover::stdio::pipe()).std_out(drover::stdio::pipe()));
    co_await c.std_in().write("piped through\na child\n"); // EPIPE if tr were gone; never SIGPIPE
    c.std_in().close();                                    // EOF
    drover::line_reader lines(c.std_out());
    std::vector<std::string> got;
    while (auto l = co_await lines.next()) got.push_back(l->text);
    auto st = co_await c.async_wait(use_awaitable);
    bool ok = st.success() && got.size() == 2 && got[0] == "PIPED THROUGH" && got[1] == "A CHILD";
    co_return result{ok, fmt::format("tr a-z A-Z sent back {} lines: '{}', '{}'", got.size(), visible(got.at(0)),
                                     visible(got.at(1)))};
}

awaitable<result> bounded_capture() {
    // 1.3 MB on stdout and a line on stderr, read concurrently; 64 KiB kept per stream: the
    // first and last 32 KiB, the middle counted. The child is never blocked on a full pipe.
    auto ex = co_await asio::this_coro::executor;
    drover::run_options opts;
    opts.max_output = 64 * 1024;
    drover::command cmd("sh", {"-c", "seq 1 200000; echo done >&2"});
    auto r = co_await drover::async_run(ex, std::move(cmd), opts);
    auto last = r.out.tail.substr(r.out.tail.rfind('\n', r.out.tail.size() - 2) + 1);
    co_return result{r.status.success() && r.out.truncated() && last == "200000\n" && r.err.head == "done\n",
                     fmt::format("seq 1 200000: {} bytes, kept {} + {}, {} dropped, last line '{}'; stderr '{}'; "
                                 "{:.1f} ms, {} KiB peak RSS",
                                 r.out.total_bytes, r.out.head.size(), r.out.tail.size(), r.out.dropped_bytes(),
                                 visible(last), visible(r.err.head),
                                 std::chrono::duration<double, std::milli>(r.duration).count(),
                                 r.usage ? r.usage->max_rss_kib : 0)};
}

awaitable<result> a_terminal_for_the_child() {
    // The child runs on a new pseudo-terminal (its controlling tty, 30x100): isatty is true,
    // and what it prints is read from the master side until the terminal closes (EIO).
    auto ex = co_await asio::this_coro::executor;
    drover::child c = drover::spawn(ex, drover::command("sh", {"-c", "test -t 0 && test -t 1 && stty size"})
                                            .std_in(drover::stdio::pty(30, 100))
                                            .std_out(drover::stdio::pty()));
    drover::line_reader lines(c.pty());
    auto size = co_await lines.next();
    auto st = co_await c.async_wait(use_awaitable);
    bool ok = st.success() && size && size->text == "30 100";
    co_return result{ok, fmt::format("'test -t' held and stty size printed '{}'", size ? visible(size->text) : "")};
}

awaitable<result> exact_spawn_errors() {
    auto ex = co_await asio::this_coro::executor;
    std::vector<std::string> lines;
    bool ok = true;
    auto expect = [&](const drover::command& cmd, int err, drover::spawn_stage stage) {
        drover::spawn_failure f;
        drover::child c = drover::spawn(ex, cmd, f);
        ok = ok && !c.valid() && f.code.value() == err && f.stage == stage;
        lines.push_back(f.message());
    };
    expect(drover::command("no-such-program-anywhere"), ENOENT, drover::spawn_stage::resolve);
    expect(drover::command("/etc/passwd"), EACCES, drover::spawn_stage::exec);
    expect(drover::command("/tmp"), EISDIR, drover::spawn_stage::exec);
    expect(drover::command("true").cwd("/nonexistent"), ENOENT, drover::spawn_stage::cwd);
    std::string detail;
    for (const auto& l : lines) detail += "\n      " + l;
    co_return result{ok, "each failure is synchronous, with its stage and errno:" + detail};
}

awaitable<result> controlled_environment() {
    auto ex = co_await asio::this_coro::executor;
    drover::child c = drover::spawn(
        ex, drover::command("env").env_clear().env("GREETING", "hello").std_out(drover::stdio::pipe()));
    std::string out = co_await read_all(c.std_out());
    co_await c.async_wait(use_awaitable);
    co_return result{out == "GREETING=hello\n", fmt::format("env_clear + env(GREETING): the child saw '{}'", visible(out))};
}

awaitable<result> many_at_once() {
    // xargs -P 32: 500 commands through async_run_all, results in the order given.
    auto ex = co_await asio::this_coro::executor;
    std::vector<drover::command> cmds;
    for (int i = 0; i < 500; ++i) cmds.push_back(drover::command("sh", {"-c", "exit $0", std::to_string(i % 3)}));
    drover::run_all_options opts;
    opts.max_concurrency = 32;
    auto t0 = std::chrono::steady_clock::now();
    auto results = co_await drover::async_run_all(ex, std::move(cmds), opts);
    auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    int good = 0;
    for (std::size_t i = 0; i < results.size(); ++i)
        if (results[i].ok() && results[i].value->status.code() == static_cast<int>(i % 3)) ++good;
    co_return result{good == 500, fmt::format("{} commands, 32 at a time, every status in order, in {:.0f} ms ({:.0f}/s)",
                                              good, ms, 500 / (ms / 1000))};
}

awaitable<int> nap(int hundredths) {
    // One task: a child sleeping `hundredths` hundredths of a second, then that number.
    auto ex = co_await asio::this_coro::executor;
    drover::child c = drover::spawn(ex, drover::command("sleep", {fmt::format("{:.2f}", hundredths / 100.0)}));
    co_await c.async_wait(use_awaitable);
    co_return hundredths;
}

awaitable<result> concurrent_tasks() {
    // The seed article's five sleepers (2.5, 2, 1.5, 1, 0.5 s; here a tenth of that) in a
    // task_group: they run at once and join in the order they finish, shortest first.
    auto ex = co_await asio::this_coro::executor;
    drover::task_group<int> group(ex);
    for (int t : {25, 20, 15, 10, 5}) group.spawn(nap(t));
    std::vector<int> order;
    auto t0 = std::chrono::steady_clock::now();
    while (auto r = co_await group.async_join_next()) order.push_back(r->get());
    auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    bool ok = order == std::vector<int>({5, 10, 15, 20, 25}) && ms < 500;
    std::vector<std::string> secs;
    for (int t : order) secs.push_back(fmt::format("{:.2f} s", t / 100.0));
    co_return result{ok, fmt::format("joined in completion order: {}, all after {:.0f} ms (a sequence: 750 ms)",
                                     fmt::join(secs, ", "), ms)};
}

awaitable<result> scope_cleanup() {
    // Leaving a with_task_group scope early stops and reaps every child its tasks started.
    auto ex = co_await asio::this_coro::executor;
    std::vector<pid_t> pids;
    co_await drover::with_task_group<void>(ex, {}, [&](drover::task_group<void>& g) -> awaitable<void> {
        for (int i = 0; i < 5; ++i)
            g.spawn([](std::vector<pid_t>& out) -> awaitable<void> {
                auto task_ex = co_await asio::this_coro::executor;
                drover::child c = drover::spawn(task_ex, drover::command("sleep", {"1000"}));
                out.push_back(*c.id());
                co_await c.async_wait(use_awaitable); // cancelled when the scope ends: stopped
            }(pids));
        asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(100));
        co_await t.async_wait(use_awaitable);
        // The body returns early; five children still run.
    });
    int alive = 0;
    for (pid_t p : pids) alive += ::kill(p, 0) == 0 ? 1 : 0;
    co_return result{pids.size() == 5 && alive == 0,
                     fmt::format("5 'sleep 1000' children, scope left after 100 ms: {} alive, none a zombie", alive)};
}

awaitable<result> timeout_with_escalation() {
    // A child that ignores SIGTERM, with a 300 ms timeout and a 200 ms grace period: SIGTERM at
    // the deadline, SIGKILL 200 ms later, errc::timed_out once nothing of it is left.
    auto ex = co_await asio::this_coro::executor;
    drover::child c = drover::spawn(
        ex, drover::command("sh", {"-c", "trap '' TERM; sleep 10"}).stop_grace(std::chrono::milliseconds(200)));
    auto t0 = std::chrono::steady_clock::now();
    auto [ec, st] = co_await c.async_wait_for(std::chrono::milliseconds(300), asio::as_tuple(use_awaitable));
    auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    co_return result{ec == drover::errc::timed_out && st == drover::exit_status::signaled(SIGKILL) && ms < 1500,
                     fmt::format("sh ignoring TERM, timeout 300 ms, grace 200 ms: '{}', {} after {:.0f} ms",
                                 ec.message(), st, ms)};
}

awaitable<result> stop_the_whole_tree() {
    // The child escapes every way a process group kill misses: setsid, a double fork, nohup.
    // A stop still leaves nothing, and completes only when the tree is empty.
    auto ex = co_await asio::this_coro::executor;
    drover::child c = drover::spawn(
        ex, drover::command("sh", {"-c", "setsid sleep 1000 & (sleep 1001 &); nohup sleep 1002 >/dev/null 2>&1 & wait"}));
    asio::steady_timer settle(ex, std::chrono::milliseconds(200));
    co_await settle.async_wait(use_awaitable);
    std::size_t before = c.tree_pids().size();
    std::string how = c.tree() == drover::tree_kind::cgroup ? "cgroup " + *c.cgroup_path() : "session walk";
    auto st = co_await c.async_stop(std::chrono::seconds(2), use_awaitable);
    std::size_t after = c.tree_pids().size();
    co_return result{before == 4 && after == 0 && st == drover::exit_status::signaled(SIGTERM),
                     fmt::format("{} processes in the tree ({}), stopped: {}, {} left", before, how, st, after)};
}

} // namespace

int main() {
    ::signal(SIGPIPE, SIG_IGN);
    struct scenario {
        const char* name;
        std::function<awaitable<result>()> body;
    };
    const std::vector<scenario> scenarios = {
        {"run a command", run_a_command},
        {"exit codes and signals", exit_codes_and_signals},
        {"hostile arguments, unchanged", hostile_arguments},
        {"pipe through a child", pipe_through_a_child},
        {"bounded capture", bounded_capture},
        {"a terminal for the child", a_terminal_for_the_child},
        {"exact spawn errors", exact_spawn_errors},
        {"a controlled environment", controlled_environment},
        {"many commands at once", many_at_once},
        {"concurrent tasks", concurrent_tasks},
        {"leaving a scope", scope_cleanup},
        {"timeout with escalation", timeout_with_escalation},
        {"stop the whole tree", stop_the_whole_tree},
    };
    asio::io_context ctx;
    int failed = 0;
    for (const auto& s : scenarios) {
        auto t0 = std::chrono::steady_clock::now();
        result r{false, "did not finish"};
        asio::co_spawn(ctx, s.body(), [&](std::exception_ptr e, result got) {
            if (e) {
                try {
                    std::rethrow_exception(e);
                } catch (const std::exception& ex) {
                    r = {false, std::string("threw: ") + ex.what()};
                }
            } else {
                r = std::move(got);
            }
        });
        ctx.restart();
        ctx.run_for(std::chrono::seconds(30));
        auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        fmt::print("{} {:<30} {:>7.1f} ms  {}\n", r.ok ? "ok  " : "FAIL", s.name, ms, r.detail);
        if (!r.ok) ++failed;
    }
    fmt::print("\ndrover-demo: {} of {} scenarios held\n", scenarios.size() - failed, scenarios.size());
    return failed == 0 ? 0 : 1;
}
