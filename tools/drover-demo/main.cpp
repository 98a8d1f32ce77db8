// drover-demo: every capability of drover, end to end, in seconds. It does the usual tasks of
// process management (running and waiting, a tour of /proc, daemonization, process-tree
// cleanup) with drover's library API, and shows what drover does beyond them. Each scenario
// runs real programs, checks what it sees, and prints PASS, FAIL or SKIP with its evidence.
//
//   drover-demo                 every scenario
//   drover-demo NAME...         only these (see --list)
//   drover-demo --list          the names and what each shows
//   drover-demo --speed 2       the timed scenarios twice as fast
//
// Exit status: 0 when no scenario failed (skips are fine), 1 otherwise, 2 on bad usage.
// It reads like a tutorial on purpose: docs/api.md quotes it.
#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read.hpp>
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

double g_speed = 1.0; // --speed: divides the timed scenarios' durations

struct result {
    bool ok;
    std::string detail;
    bool skipped = false;
};

result skip(std::string why) {
    return {true, std::move(why), true};
}

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
std::string visible(const std::string& s) {
    return drover::escape(s);
}

/// This program's own path: some scenarios run a second copy of it as a helper.
std::string self_exe() {
    std::error_code ec;
    auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
    return ec ? std::string("/proc/self/exe") : p.string();
}

awaitable<void> sleep_for(std::chrono::milliseconds d) {
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(use_awaitable);
}

/// Whether `pid` still exists as a live (not zombie) process.
bool alive(pid_t pid) {
    drover::error_code ec;
    auto p = drover::read_proc_info(pid, ec);
    return p && p->state != 'Z';
}

// ---- scenarios ----------------------------------------------------------------------------------

awaitable<result> simple() {
    // async_run: spawn, read stdout and stderr concurrently (no pipe deadlock), wait.
    auto ex = co_await asio::this_coro::executor;
    drover::command cmd("sh", {"-c", "echo to stdout; echo to stderr >&2; exit 3"});
    auto r = co_await drover::async_run(ex, cmd);
    co_return result{r.out.text() == "to stdout\n" && r.err.text() == "to stderr\n" && r.status.code() == 3,
                     fmt::format("stdout '{}', stderr '{}', {} (shell $? {})", visible(r.out.text()),
                                 visible(r.err.text()), r.status, r.status.shell_code())};
}

awaitable<result> no_shell() {
    // A common defence refuses "dangerous" strings with a deny-list. drover needs none: the arguments
    // are an argv vector and no shell ever parses them. Both ideas side by side:
    const std::vector<std::string> hostile = {"; rm -rf /", "$(whoami)", "`id`", "../../../etc/passwd",
                                              "line\nbreak"};
    auto deny_list_refuses = [](const std::string& s) {
        return s.find_first_of(";|&$`\n<>") != std::string::npos;
    };
    int refused = 0;
    for (const auto& h : hostile) refused += deny_list_refuses(h) ? 1 : 0;

    auto ex = co_await asio::this_coro::executor;
    drover::command cmd("printf", {"%s\\0"});
    cmd.args(hostile);
    auto hints = drover::shell_syntax_hints(cmd); // what a tool warns about: no shell will see it
    auto r = co_await drover::async_run(ex, cmd);
    std::string expected;
    for (const auto& h : hostile) expected += h + '\0';
    co_return result{r.out.text() == expected && hints.size() >= 2,
                     fmt::format("{} hostile arguments came back byte for byte, one argv element each: '{}'; "
                                 "a deny-list would refuse {} of them (and pass '../../../etc/passwd'); "
                                 "the lint flags {} as shell syntax no shell will interpret",
                                 hostile.size(), visible(r.out.text()), refused, hints.size())};
}

awaitable<result> limits() {
    // RLIMIT_CPU: the kernel sends SIGXCPU at the soft limit (1 s of CPU) to a busy loop.
    auto ex = co_await asio::this_coro::executor;
    drover::child busy =
        drover::spawn(ex, drover::command("sh", {"-c", "while :; do :; done"}).rlimit(RLIMIT_CPU, 1, 2));
    auto st = co_await busy.async_wait(use_awaitable);
    bool cpu_ok = st.is_signaled() && st.signal() == SIGXCPU;
    std::string evidence = fmt::format("busy loop with cpu=1s: {}", st);
    // RLIMIT_NPROC counts every process of a uid, and root is exempt: a fresh uid of its own.
    if (!cpu_ok) co_return result{false, evidence};
    if (::geteuid() != 0)
        co_return skip(evidence +
                       " (held); the nproc part needs root, to run as a fresh uid, and was not run");
    drover::command forker("sh", {"-c", "sleep 0 & wait && echo forked"});
    forker.user("54330").group("54330").rlimit(RLIMIT_NPROC, 1, 1);
    auto r = co_await drover::async_run(ex, forker);
    bool nproc_ok =
        r.status.code() != 0 && r.out.text().empty() && r.err.text().find("fork") != std::string::npos;
    co_return result{cpu_ok && nproc_ok,
                     fmt::format("{}; uid 54330 with nproc=1: fork refused, sh said '{}'", evidence,
                                 visible(r.err.text().substr(0, r.err.text().find('\n'))))};
}

awaitable<result> proc_tour() {
    // A tour of /proc/<pid>, for a child drover started: read once,
    // verified against the child's pidfd, so it can never describe a recycled pid.
    if (drover::backend() == drover::backend_kind::portable)
        co_return skip("read_proc_info is not supported by the portable backend");
    auto ex = co_await asio::this_coro::executor;
    drover::child c =
        drover::spawn(ex, drover::command("sleep", {"30"}).cwd("/tmp").std_in(drover::stdio::null()));
    co_await sleep_for(std::chrono::milliseconds(50));
    drover::error_code ec;
    auto p = drover::read_proc_info(c, ec);
    co_await c.async_kill(use_awaitable);
    if (!p) co_return result{false, "read_proc_info: " + ec.message()};
    auto own = drover::own_namespaces();
    std::vector<std::string> fds;
    for (const auto& f : p->fds) fds.push_back(fmt::format("{}->{}", f.fd, visible(f.target)));
    bool ok = p->ppid == ::getpid() && p->cwd == "/tmp" && p->exe.ends_with("/sleep") && p->ns.pid &&
              p->ns.pid == own.pid && p->fds.size() == 3 && p->fds[0].target == "/dev/null";
    co_return result{
        ok, fmt::format("pid {} ppid {} (us) exe {} cwd {} uid {} gid {}; fds {}; pid namespace {} ({}); "
                        "cgroup {}; rss {} KiB",
                        p->pid, p->ppid, visible(p->exe), visible(p->cwd), p->uid, p->gid,
                        fmt::join(fds, " "), p->ns.pid.value_or(0), p->ns.pid == own.pid ? "ours" : "its own",
                        p->cgroup.empty() ? "-" : visible(p->cgroup), p->rss_bytes / 1024)};
}

awaitable<result> daemon() {
    // A second copy of this program calls drover::daemonize(): fork, setsid, fork, chdir /,
    // stdio on /dev/null, a pidfile locked with flock. The copy we started exits 0 once the
    // daemon reported that every step worked.
    if (drover::backend() == drover::backend_kind::portable) // the check reads the daemon's /proc
        co_return skip("read_proc_info is not supported by the portable backend");
    auto ex = co_await asio::this_coro::executor;
    char dir[] = "/tmp/drover-demo-XXXXXX";
    if (::mkdtemp(dir) == nullptr) co_return result{false, std::string("mkdtemp: ") + std::strerror(errno)};
    const std::string pidfile = std::string(dir) + "/daemon.pid";
    struct cleanup { // the pidfile and its directory go, whatever happens below
        std::string dir;
        ~cleanup() {
            std::error_code ec;
            std::filesystem::remove_all(dir, ec);
        }
    } remove_dir{dir};
    drover::child starter = drover::spawn(ex, drover::command(self_exe(), {"__daemon", pidfile}));
    auto st = co_await starter.async_wait(use_awaitable);
    pid_t d = 0;
    std::ifstream(pidfile) >> d;
    drover::error_code ec;
    auto p = d > 0 ? drover::read_proc_info(d, ec) : std::nullopt;
    if (!st.success() || !p) {
        co_await starter.async_stop(use_awaitable); // its cgroup still holds whatever it left
        co_return result{false, fmt::format("the starter {}; pidfile held '{}'", st, d)};
    }
    // The daemon forks two children after it reported: wait for them.
    std::vector<pid_t> kids;
    for (int i = 0; i < 300 && kids.size() < 3; ++i) {
        kids = drover::process_tree(d);
        if (kids.size() < 3) co_await sleep_for(std::chrono::milliseconds(10));
    }
    // A second instance finds the pidfile locked and says who holds it.
    drover::command second(self_exe(), {"__daemon", pidfile});
    auto again = co_await drover::async_run(ex, second);
    bool locked = again.status.code() == 1 &&
                  again.err.text().find("already running as pid " + std::to_string(d)) != std::string::npos;
    // Detached: not a session leader (no terminal can become its own), re-parented to us (the
    // subreaper), in /, stdio on /dev/null.
    bool detached = p->session != d && p->session == p->pgrp && p->pgrp != ::getpgrp() &&
                    p->ppid == ::getpid() && p->cwd == "/" && p->fds.size() >= 3 &&
                    p->fds[0].target == "/dev/null" && p->fds[2].target == "/dev/null";
    // The process-group kill: one kill(-pgid) takes the daemon and the children it forked.
    int left = static_cast<int>(kids.size());
    if (detached) {
        ::kill(-p->pgrp, SIGTERM);
        for (int i = 0; i < 100 && left > 0; ++i) {
            drover::reap_orphans(); // we are their subreaper
            left = 0;
            for (pid_t k : kids) left += alive(k) ? 1 : 0;
            if (left > 0) co_await sleep_for(std::chrono::milliseconds(10));
        }
    }
    co_await starter.async_stop(use_awaitable); // and whatever else its cgroup still holds
    drover::reap_orphans();
    co_return result{
        detached && locked && kids.size() == 3 && left == 0,
        fmt::format("daemon pid {} (parent now: us, the subreaper): session {} (not its leader: no "
                    "terminal can become its own), cwd {}, stdio {}; pidfile locked, a second start said "
                    "'{}'; kill(-{}) took it and its {} children: {} left",
                    d, p->session, visible(p->cwd), p->fds.empty() ? "?" : visible(p->fds[0].target),
                    visible(again.err.text().substr(0, again.err.text().find('\n'))), p->pgrp,
                    kids.empty() ? 0 : kids.size() - 1, left)};
}

awaitable<result> parent_death() {
    // A helper (this program again) spawns three children through drover, then is SIGKILLed:
    // no destructor, no cleanup code runs. The children die anyway: drover gives each a
    // parent-death signal, set in the child before exec and checked against a race.
    auto ex = co_await asio::this_coro::executor;
    drover::child helper =
        drover::spawn(ex, drover::command(self_exe(), {"__parent"}).std_out(drover::stdio::pipe()));
    drover::line_reader lines(helper.std_out());
    auto line = co_await lines.next();
    std::vector<int> pidfds;
    std::vector<pid_t> pids;
    std::istringstream in(line ? line->text : "");
    std::string word;
    in >> word;
    for (pid_t p; in >> p;) {
        pids.push_back(p);
        pidfds.push_back(static_cast<int>(::syscall(SYS_pidfd_open, p, 0)));
    }
    helper.signal(SIGKILL);
    co_await helper.async_wait(use_awaitable);
    auto t0 = std::chrono::steady_clock::now();
    int dead = 0;
    for (int i = 0; i < 200 && dead < static_cast<int>(pidfds.size()); ++i) {
        dead = 0;
        for (int fd : pidfds) {
            pollfd pf{fd, POLLIN, 0};
            dead += fd >= 0 && ::poll(&pf, 1, 0) == 1 ? 1 : 0;
        }
        if (dead < static_cast<int>(pidfds.size())) co_await sleep_for(std::chrono::milliseconds(5));
    }
    auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    for (int fd : pidfds) ::close(fd);
    drover::reap_orphans();
    co_await helper.async_stop(use_awaitable);
    co_return result{pids.size() == 3 && dead == 3,
                     fmt::format("helper SIGKILLed; its children {} were all gone {:.0f} ms later",
                                 fmt::join(pids, ", "), ms)};
}

awaitable<result> signals() {
    // The demo's own SIGINT/SIGTERM handling: the runner reads them from a signalfd on its
    // io_context and cancels the running scenario, whose awaited operations then stop what they
    // started. Shown on a second copy of the demo, interrupted in its 'concurrent' scenario
    // while five children sleep.
    auto ex = co_await asio::this_coro::executor;
    drover::child demo =
        drover::spawn(ex, drover::command(self_exe(), {"concurrent"}).std_out(drover::stdio::pipe()));
    drover::line_reader lines(demo.std_out());
    auto title = co_await lines.next();
    std::vector<pid_t> tree;
    for (int i = 0; i < 200 && tree.size() < 6; ++i) { // the demo and its five sleepers
        co_await sleep_for(std::chrono::milliseconds(10));
        tree = drover::process_tree(*demo.id());
    }
    demo.signal(SIGTERM);
    std::string rest;
    while (auto l = co_await lines.next())
        rest += l->text.substr(std::min(l->text.find_first_not_of(' '), l->text.size())) + " ";
    auto st = co_await demo.async_wait(use_awaitable);
    int left = 0;
    for (pid_t p : tree) left += alive(p) ? 1 : 0;
    bool ok = title && tree.size() == 6 && st == drover::exit_status::exited(128 + SIGTERM) &&
              rest.find("interrupted by SIGTERM") != std::string::npos && left == 0;
    co_return result{
        ok, fmt::format("SIGTERM to a demo running 'concurrent' ({} processes): it said '{}', {}; {} left",
                        tree.size(), visible(rest.substr(0, rest.find(';'))), st, left)};
}

awaitable<result> pipe_through_a_child() {
    auto ex = co_await asio::this_coro::executor;
    drover::child c = drover::spawn(
        ex,
        drover::command("tr", {"a-z", "A-Z"}).std_in(drover::stdio::pipe()).std_out(drover::stdio::pipe()));
    co_await c.std_in().write("piped through\na child\n"); // EPIPE if tr were gone; never SIGPIPE
    c.std_in().close();                                    // EOF
    drover::line_reader lines(c.std_out());
    std::vector<std::string> got;
    while (auto l = co_await lines.next()) got.push_back(l->text);
    auto st = co_await c.async_wait(use_awaitable);
    bool ok = st.success() && got.size() == 2 && got[0] == "PIPED THROUGH" && got[1] == "A CHILD";
    co_return result{ok, fmt::format("tr a-z A-Z sent back {} lines: '{}', '{}'", got.size(),
                                     visible(got.at(0)), visible(got.at(1)))};
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
    co_return result{
        r.status.success() && r.out.truncated() && last == "200000\n" && r.err.head == "done\n",
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
    co_return result{
        ok, fmt::format("'test -t' held and stty size printed '{}'", size ? visible(size->text) : "")};
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
    co_return result{out == "GREETING=hello\n",
                     fmt::format("env_clear + env(GREETING): the child saw '{}'", visible(out))};
}

awaitable<result> many_at_once() {
    // xargs -P 32: 500 commands through async_run_all, results in the order given.
    auto ex = co_await asio::this_coro::executor;
    std::vector<drover::command> cmds;
    for (int i = 0; i < 500; ++i)
        cmds.push_back(drover::command("sh", {"-c", "exit $0", std::to_string(i % 3)}));
    drover::run_all_options opts;
    opts.max_concurrency = 32;
    auto t0 = std::chrono::steady_clock::now();
    auto results = co_await drover::async_run_all(ex, std::move(cmds), opts);
    auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    int good = 0;
    for (std::size_t i = 0; i < results.size(); ++i)
        if (results[i].ok() && results[i].value->status.code() == static_cast<int>(i % 3)) ++good;
    co_return result{good == 500,
                     fmt::format("{} commands, 32 at a time, every status in order, in {:.0f} ms ({:.0f}/s)",
                                 good, ms, 500 / (ms / 1000))};
}

awaitable<int> nap(int tenths) {
    // One task: a child sleeping `tenths` tenths of a second (divided by --speed), then that number.
    auto ex = co_await asio::this_coro::executor;
    drover::child c =
        drover::spawn(ex, drover::command("sleep", {fmt::format("{:.3f}", tenths / 10.0 / g_speed)}));
    co_await c.async_wait(use_awaitable);
    co_return tenths;
}

awaitable<result> concurrent_tasks() {
    // Five sleepers, 2.5, 2, 1.5, 1 and 0.5 s, started in that order in a
    // task_group: they run at once and join in the order they finish, so the report is the
    // reverse of the start order, and the whole takes as long as the longest, not the sum.
    auto ex = co_await asio::this_coro::executor;
    drover::task_group<int> group(ex);
    for (int t : {25, 20, 15, 10, 5}) group.spawn(nap(t));
    std::vector<int> order;
    auto t0 = std::chrono::steady_clock::now();
    while (auto r = co_await group.async_join_next()) order.push_back(r->get());
    auto s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    bool ok = order == std::vector<int>({5, 10, 15, 20, 25}) && s < (2.5 + 1.0) / g_speed;
    std::vector<std::string> secs;
    for (int t : order) secs.push_back(fmt::format("{:.2f} s", t / 10.0 / g_speed));
    co_return result{ok,
                     fmt::format("started 2.5 s first, joined shortest first: {}; all done after {:.2f} s "
                                 "(one after another: {:.2f} s)",
                                 fmt::join(secs, ", "), s, 7.5 / g_speed)};
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
    co_return result{
        pids.size() == 5 && alive == 0,
        fmt::format("5 'sleep 1000' children, scope left after 100 ms: {} alive, none a zombie", alive)};
}

awaitable<result> timeout_with_escalation() {
    // A child that ignores SIGTERM, with a 300 ms timeout and a 200 ms grace period: SIGTERM at
    // the deadline, SIGKILL 200 ms later, errc::timed_out once nothing of it is left.
    auto ex = co_await asio::this_coro::executor;
    drover::child c = drover::spawn(
        ex,
        drover::command("sh", {"-c", "trap '' TERM; sleep 10"}).stop_grace(std::chrono::milliseconds(200)));
    auto t0 = std::chrono::steady_clock::now();
    auto [ec, st] = co_await c.async_wait_for(std::chrono::milliseconds(300), asio::as_tuple(use_awaitable));
    auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    co_return result{ec == drover::errc::timed_out && st == drover::exit_status::signaled(SIGKILL) &&
                         ms >= 450 && ms < 1500,
                     fmt::format("sh ignoring TERM, timeout 300 ms, grace 200 ms: '{}', {} after {:.0f} ms",
                                 ec.message(), st, ms)};
}

awaitable<result> stop_the_whole_tree() {
    // The child escapes every way a process group kill misses: setsid, a double fork, nohup.
    // A stop still leaves nothing, and completes only when the tree is empty.
    if (drover::backend() == drover::backend_kind::portable)
        co_return skip("the portable backend's tree is the process group, which a setsid escapee leaves");
    auto ex = co_await asio::this_coro::executor;
    drover::child c = drover::spawn(
        ex, drover::command(
                "sh", {"-c", "setsid sleep 1000 & (sleep 1001 &); nohup sleep 1002 >/dev/null 2>&1 & wait"}));
    std::size_t before = 0;
    for (int i = 0; i < 300 && before != 4; ++i) { // sh and its three sleeps (the subshell gone)
        co_await sleep_for(std::chrono::milliseconds(10));
        before = c.tree_pids().size();
    }
    std::string how = c.tree() == drover::tree_kind::cgroup ? "cgroup " + *c.cgroup_path() : "session walk";
    auto st = co_await c.async_stop(std::chrono::seconds(2), use_awaitable);
    std::size_t after = c.tree_pids().size();
    co_return result{
        before == 4 && after == 0 && st == drover::exit_status::signaled(SIGTERM),
        fmt::format("{} processes in the tree ({}), stopped: {}, {} left", before, how, st, after)};
}

awaitable<result> supervise() {
    // A chain db -> api -> web, each started once the one before is ready: db prints a log line,
    // api sends sd_notify READY=1 (systemd-notify), web writes a newline on descriptor 3 (the s6
    // convention). Then api is killed with SIGKILL and restarted; a service that cannot start
    // backs off and ends failed with its reason; the shutdown stops web, api, db in that order.
    if (::access("/usr/bin/systemd-notify", X_OK) != 0)
        co_return skip("systemd-notify is not installed (Debian package systemd)");
    auto ex = co_await asio::this_coro::executor;
    drover::supervisor sup(ex);

    drover::service db(
        "db",
        drover::command("sh", {"-c", "sleep 0.1; echo 'db: ready to accept connections'; exec sleep 1000"}));
    db.ready = drover::readiness::log("ready to accept connections");

    drover::service api(
        "api", drover::command("sh", {"-c", "systemd-notify --ready --status=serving; exec sleep 1000"}));
    api.ready = drover::readiness::notify();
    api.depends_on = {drover::dependency{"db", drover::dependency_condition::ready}};

    drover::service web("web", drover::command("sh", {"-c", "echo >&3; exec sleep 1000"}));
    web.ready = drover::readiness::fd(3);
    web.depends_on = {drover::dependency{"api"}}; // condition: ready

    drover::service flaky("flaky", drover::command("sh", {"-c", "echo 'cannot bind :8080' >&2; exit 1"}));
    flaky.backoff.initial = std::chrono::milliseconds(50);
    flaky.backoff.max = std::chrono::milliseconds(400);
    flaky.start_limit.burst = 4;
    flaky.start_limit.interval = std::chrono::seconds(10);

    for (const auto* s : {&db, &api, &web, &flaky}) sup.add(*s); // a dependency is added first
    sup.async_run(asio::detached);

    auto state = [&](const char* n) { return sup.status(n)->state; };
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 500 && state("web") != drover::service_state::ready; ++i)
        co_await sleep_for(std::chrono::milliseconds(10));
    const auto up_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    const bool chain = state("web") == drover::service_state::ready &&
                       sup.status("db")->since < sup.status("api")->since &&
                       sup.status("api")->since < sup.status("web")->since;

    // kill -9 api: measured from the kill to the new process running.
    const pid_t old_api = sup.status("api")->pid.value_or(0);
    const auto k0 = std::chrono::steady_clock::now();
    if (old_api > 0) ::kill(old_api, SIGKILL);
    pid_t new_api = 0;
    for (int i = 0; i < 5000 && (new_api == 0 || new_api == old_api); ++i) {
        co_await sleep_for(std::chrono::milliseconds(1));
        new_api = sup.status("api")->pid.value_or(0);
    }
    const auto restart_us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - k0).count();

    for (int i = 0; i < 500 && state("flaky") != drover::service_state::failed; ++i)
        co_await sleep_for(std::chrono::milliseconds(10));
    const auto flaky_st = *sup.status("flaky");

    std::vector<pid_t> pids;
    for (const auto& s : sup.status())
        if (s.pid) pids.push_back(*s.pid);
    co_await sup.async_shutdown(std::chrono::seconds(5), use_awaitable);
    const bool reverse = sup.status("web")->since < sup.status("api")->since &&
                         sup.status("api")->since < sup.status("db")->since;
    int left = 0;
    for (pid_t p : pids) left += ::kill(p, 0) == 0 ? 1 : 0;

    co_return result{
        chain && new_api > 0 && new_api != old_api && flaky_st.state == drover::service_state::failed &&
            reverse && left == 0,
        fmt::format(
            "db -> api -> web ready in {} ms (log line, READY=1, fd 3); kill -9 api: new pid {} after "
            "{} us; flaky: {} after {} restarts ('{}'); shutdown web, api, db in {} order, {} "
            "processes left",
            up_ms, new_api, restart_us, drover::to_string(flaky_st.state), flaky_st.restarts,
            visible(flaky_st.reason), reverse ? "reverse" : "WRONG", left)};
}

// ---- the helper programs some scenarios run (this program, with a hidden first argument) -------

/// `__daemon PIDFILE`: daemonize, fork two children (same process group), wait forever.
int daemon_main(const char* pidfile) {
    drover::daemon_options o;
    o.pidfile = pidfile;
    try {
        drover::daemonize(o); // returns only in the daemon; the starter exits 0 (or throws here)
    } catch (const drover::daemon_error& e) {
        fmt::print(stderr, "{}\n", e.what());
        return 1;
    }
    for (int i = 0; i < 2; ++i)
        if (::fork() == 0) {
            ::pause();
            ::_exit(0);
        }
    for (;;) ::pause(); // until a signal ends it
}

/// `__parent`: spawn three sleeping children, print their pids, wait to be killed.
int parent_main() {
    asio::io_context ctx;
    std::vector<drover::child> kids;
    std::string line = "children";
    for (int i = 0; i < 3; ++i) {
        kids.push_back(drover::spawn(ctx, drover::command("sleep", {"1000"})));
        line += " " + std::to_string(*kids.back().id());
    }
    line += "\n";
    (void)!::write(1, line.data(), line.size());
    for (;;) ::pause();
}

struct scenario {
    const char* name;
    const char* what;
    std::function<awaitable<result>()> body;
};

const std::vector<scenario>& all_scenarios() {
    static const std::vector<scenario> list = {
        {"simple", "Run a command, capture its stdout and stderr, print the exit status.", simple},
        {"pipes", "Write two lines to a child's stdin and read them back from its stdout.",
         pipe_through_a_child},
        {"concurrent", "Five tasks sleeping 2.5, 2, 1.5, 1, 0.5 s in a task_group finish in reverse order.",
         concurrent_tasks},
        {"timeout", "A child that ignores SIGTERM, with a short timeout: TERM, the grace, then KILL.",
         timeout_with_escalation},
        {"cleanup", "Children owned by a scope are stopped and reaped when it exits early.", scope_cleanup},
        {"no-shell", "Hostile arguments reach the child unchanged; no shell, no deny-list needed.", no_shell},
        {"limits", "RLIMIT_CPU ends a busy loop with SIGXCPU; an nproc limit refuses forks.", limits},
        {"proc", "The /proc tour of a child: pid, ppid, exe, cwd, ids, fds, namespaces, cgroup.", proc_tour},
        {"daemon",
         "drover::daemonize: double fork, setsid, chdir /, /dev/null, a locked pidfile; a group kill.",
         daemon},
        {"parent-death", "A helper is SIGKILLed; the children it started do not survive it.", parent_death},
        {"tree-kill", "A child escapes with setsid, a double fork and nohup; a stop still takes everything.",
         stop_the_whole_tree},
        {"pty", "A child on a terminal of its own: isatty holds, the window size is ours to set.",
         a_terminal_for_the_child},
        {"signals", "The demo's own SIGINT/SIGTERM, read from a signalfd: a graceful stop of what runs.",
         signals},
        {"capture", "1.3 MB of output captured within 64 KiB: head and tail kept, the middle counted.",
         bounded_capture},
        {"errors", "Failed spawns say which program, which stage and which errno, at once.",
         exact_spawn_errors},
        {"environment", "An empty environment plus one variable: exactly that reaches the child.",
         controlled_environment},
        {"many", "500 commands, 32 at a time, every status back in the order given.", many_at_once},
        {"supervise", "db -> api -> web up on readiness; kill -9 restarts api at once; a crash loop fails.",
         supervise},
    };
    return list;
}

struct colours {
    bool on = false;
    std::string pass() const { return on ? "\x1b[32mPASS\x1b[0m" : "PASS"; }
    std::string fail() const { return on ? "\x1b[1;31mFAIL\x1b[0m" : "FAIL"; }
    std::string skipped() const { return on ? "\x1b[33mSKIP\x1b[0m" : "SKIP"; }
    std::string title(const std::string& s) const { return on ? "\x1b[1m" + s + "\x1b[0m" : s; }
};

struct outcome {
    result r{false, "did not finish"};
    int signal = 0; ///< SIGINT/SIGTERM arrived during the scenario
};

/// Runs one scenario on an io_context of its own. SIGINT/SIGTERM (from `sigfd`) or 30 s cancel
/// it: every operation it awaits is cancelled, which stops the children it started (the
/// default cancel policy), and the scenario ends with an exception. Nothing is left pending.
outcome run_one(const scenario& s, int sigfd) {
    asio::io_context ctx;
    auto out = std::make_shared<outcome>();
    auto done = std::make_shared<bool>(false);
    asio::cancellation_signal cancel;
    asio::posix::stream_descriptor sig(ctx, ::fcntl(sigfd, F_DUPFD_CLOEXEC, 3));
    asio::steady_timer deadline(ctx, std::chrono::seconds(30));
    signalfd_siginfo si{};
    sig.async_read_some(asio::buffer(&si, sizeof si), [&](drover::error_code ec, std::size_t n) {
        if (ec || n != sizeof si || *done) return;
        out->signal = static_cast<int>(si.ssi_signo);
        cancel.emit(asio::cancellation_type::terminal);
    });
    deadline.async_wait([&](drover::error_code ec) {
        if (ec || *done) return;
        out->r = {false, "did not finish within 30 s; cancelled"};
        cancel.emit(asio::cancellation_type::terminal);
    });
    asio::co_spawn(
        ctx, s.body(),
        asio::bind_cancellation_slot(cancel.slot(), [&, out, done](std::exception_ptr e, result got) {
            *done = true;
            if (e) {
                try {
                    std::rethrow_exception(e);
                } catch (const std::exception& ex) {
                    if (out->r.detail == "did not finish")
                        out->r = {false, std::string("threw: ") + ex.what()};
                }
            } else {
                out->r = std::move(got);
            }
            drover::error_code ignored;
            sig.cancel(ignored);
            deadline.cancel();
        }));
    ctx.run_for(std::chrono::seconds(60)); // 30 s, then the cancellation's own stops
    return *out;
}

int usage(const char* msg) {
    fmt::print(stderr,
               "drover-demo: {}\nusage: drover-demo [--speed X (0-20, default 1)] [--list] [NAME...]\n", msg);
    return 2;
}

} // namespace

int main(int argc, char** argv) {
    ::signal(SIGPIPE, SIG_IGN);
    if (argc == 3 && std::strcmp(argv[1], "__daemon") == 0) return daemon_main(argv[2]);
    if (argc == 2 && std::strcmp(argv[1], "__parent") == 0) return parent_main();

    std::vector<const scenario*> chosen;
    bool list = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--list") {
            list = true;
        } else if (a == "--speed") {
            if (++i == argc) return usage("--speed needs a number");
            char* end = nullptr;
            g_speed = std::strtod(argv[i], &end);
            if (end == argv[i] || *end != '\0' || !(g_speed > 0 && g_speed <= 20))
                return usage("--speed takes a number in (0, 20]");
        } else if (a == "--help" || a == "-h") {
            usage("every capability of drover, end to end");
            return 0;
        } else {
            const scenario* found = nullptr;
            for (const auto& s : all_scenarios())
                if (a == s.name) found = &s;
            if (found == nullptr)
                return usage(("no scenario named '" + drover::escape(a) + "' (see --list)").c_str());
            chosen.push_back(found);
        }
    }
    if (list) {
        for (const auto& s : all_scenarios()) fmt::print("{:<13} {}\n", s.name, s.what);
        return 0;
    }
    if (chosen.empty())
        for (const auto& s : all_scenarios()) chosen.push_back(&s);

    // SIGINT and SIGTERM are read from a signalfd, never delivered: blocked before any thread.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    ::sigprocmask(SIG_BLOCK, &stop_signals, nullptr);
    const int sigfd = ::signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd < 0) {
        fmt::print(stderr, "drover-demo: signalfd: {}\n", std::strerror(errno));
        return 1;
    }

    const char* term = std::getenv("TERM");
    colours col{::isatty(1) == 1 && std::getenv("NO_COLOR") == nullptr &&
                !(term && std::strcmp(term, "dumb") == 0)};
    // Orphans of the scenarios (a daemon, children of a killed helper) come to us, not init,
    // so that we can prove they are gone.
    if (drover::error_code ec; drover::become_reaper(ec), ec)
        fmt::print(stderr, "drover-demo: not a subreaper: {}\n", ec.message());

    int failed = 0, skipped = 0, n = 0;
    const auto start = std::chrono::steady_clock::now();
    for (const scenario* s : chosen) {
        ++n;
        fmt::print("{}\n", col.title(fmt::format("{:2}. {:<13} {}", n, s->name, s->what)));
        std::fflush(stdout);
        auto t0 = std::chrono::steady_clock::now();
        outcome o = run_one(*s, sigfd);
        auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (o.signal != 0) {
            fmt::print("    interrupted by {} during '{}'; what it started was stopped\n",
                       sigabbrev_np(o.signal) ? std::string("SIG") + sigabbrev_np(o.signal)
                                              : std::string("a signal"),
                       s->name);
            return 128 + o.signal;
        }
        const result& r = o.r;
        std::string verdict = r.skipped ? col.skipped() : r.ok ? col.pass() : col.fail();
        fmt::print("    {}  {} ({:.0f} ms)\n\n", verdict, r.detail, ms);
        std::fflush(stdout);
        if (r.skipped)
            ++skipped;
        else if (!r.ok)
            ++failed;
    }
    auto total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    fmt::print("drover-demo: {} passed, {} failed, {} skipped, in {:.1f} s\n", n - failed - skipped, failed,
               skipped, total);
    return failed == 0 ? 0 : 1;
}
