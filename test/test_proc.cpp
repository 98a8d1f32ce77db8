// Introspection: read_proc_info against what the kernel says about a known helper
// child, a hostile comm, gone and stale processes (G5, with a private pid namespace and
// ns_last_pid), CPU percentages, the tree under a process, and drover inspect / drover ps.
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "detail/proc_hook.hpp"
#include "detail/proc_parse.hpp"
#include "detail/tree.hpp"
#include "support.hpp"

using namespace drover;
using namespace drover::test;
namespace fs = std::filesystem;

namespace {

/// Waits (up to 10 s) until `c` is asleep (its state S), so its /proc entries are settled.
void wait_sleeping(const child& c) {
    for (int i = 0; i < 2000; ++i) {
        error_code ec;
        auto p = read_proc_info(c, ec);
        if (p && p->state == 'S') return;
        ::usleep(5000);
    }
    FAIL("the child never went to sleep");
}

/// Every descendant of `root`, found independently of drover: all of /proc, by ppid.
std::set<pid_t> descendants_by_scan(pid_t root) {
    std::map<pid_t, std::vector<pid_t>> kids;
    for (auto& e : fs::directory_iterator("/proc")) {
        pid_t pid = 0;
        auto name = e.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        pid = std::stoi(name);
        std::string stat = read_file("/proc/" + name + "/stat");
        auto rp = stat.rfind(')');
        if (rp == std::string::npos) continue;
        std::istringstream in(stat.substr(rp + 2));
        char state;
        pid_t ppid;
        if (in >> state >> ppid) kids[ppid].push_back(pid);
    }
    std::set<pid_t> out{root};
    std::vector<pid_t> todo{root};
    while (!todo.empty()) {
        pid_t p = todo.back();
        todo.pop_back();
        for (pid_t k : kids[p])
            if (out.insert(k).second) todo.push_back(k);
    }
    return out;
}

// ---- the stale-pid scenario, run in a private pid namespace --------------------------------

pid_t g_victim = 0;

/// Between the reads and the verification: reap the victim and give its pid to a new process.
void reuse_pid(pid_t pid) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    int fd = ::open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
    if (fd < 0) ::_exit(20);
    std::string last = std::to_string(pid - 1);
    if (::write(fd, last.data(), last.size()) != static_cast<ssize_t>(last.size())) ::_exit(21);
    ::close(fd);
    pid_t again = ::fork();
    if (again == 0) {
        ::pause();
        ::_exit(0);
    }
    if (again != pid) ::_exit(22); // the pid was not reused: the scenario did not happen
}

/// Pid 1 of the new namespace: exit 0 when read_proc_info reported the reused pid as stale.
[[noreturn]] void namespace_init() {
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(10);
    if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) ::_exit(11);
    g_victim = ::fork();
    if (g_victim == 0) {
        ::pause();
        ::_exit(0);
    }
    detail::set_proc_verify_hook(reuse_pid);
    error_code ec;
    auto info = read_proc_info(g_victim, ec);
    detail::set_proc_verify_hook(nullptr);
    if (info) ::_exit(30);              // stale data was returned
    if (ec != errc::stale) ::_exit(31); // discarded, but not called stale
    // Without the hook the new process reads fine, as itself.
    auto fresh = read_proc_info(g_victim, ec);
    ::_exit(fresh && fresh->pid == g_victim ? 0 : 32);
}

} // namespace

TEST_SUITE("proc") {

    TEST_CASE("read_proc_info matches what the kernel says about a known helper child") {
        DROVER_SKIP_IF(needs_linux_backend("pidfd-verified /proc reads"));
        int p[2];
        REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
        const bool root = needs_root_and_nobody().empty();
        asio::io_context ctx;
        // As nobody, the copy of the helper nobody can reach, wherever the build directory is.
        const std::string helper_exe = root ? public_helper_path() : std::string(helper_path());
        command cmd(helper_exe, {"sleep", "30000"});
        cmd.cwd("/tmp").std_in(stdio::pipe()).std_out(stdio::null()).std_err(stdio::null()).pass_fd(p[0], 5);
        if (root) cmd.user("nobody");
        child c = spawn(ctx, cmd);
        wait_sleeping(c);
        error_code ec;
        auto info = read_proc_info(c, ec);
        REQUIRE_MESSAGE(info, ec.message());
        CHECK(info->pid == *c.id());
        CHECK(info->ppid == ::getpid());
        CHECK(info->state == 'S');
        CHECK(info->comm == "drover-test-chi"); // the kernel's 15 bytes
        CHECK(info->cmdline == std::vector<std::string>{helper_exe, "sleep", "30000"});
        CHECK(info->exe == fs::canonical(helper_exe).string());
        CHECK(info->cwd == "/tmp");
        CHECK(info->threads == 1);
        CHECK(info->session == *c.id()); // its own session
        if (root) {
            CHECK(info->uid == 65534);
            CHECK(info->euid == 65534);
        } else {
            CHECK(info->uid == ::getuid());
        }
        // Exactly the descriptors drover gave it: 0 (our pipe), 1 and 2 (/dev/null), 5 (passed).
        REQUIRE(info->fds.size() == 4);
        CHECK(info->fd_count == 4);
        CHECK(info->fds[0].fd == 0);
        CHECK(info->fds[0].target.rfind("pipe:[", 0) == 0);
        CHECK(info->fds[1].target == "/dev/null");
        CHECK(info->fds[2].target == "/dev/null");
        CHECK(info->fds[3].fd == 5);
        CHECK(info->fds[3].target == fs::read_symlink("/proc/self/fd/" + std::to_string(p[0])).string());
        // Namespaces: all drover's own.
        auto own = own_namespaces();
        CHECK(info->ns.pid == own.pid);
        CHECK(info->ns.mnt == own.mnt);
        CHECK(info->ns.net == own.net);
        CHECK(info->ns.user == own.user);
        CHECK(info->ns.pid.has_value());
        if (auto cg = c.cgroup_path()) CHECK(fs::path(info->cgroup).filename() == fs::path(*cg).filename());
        CHECK(info->rss_bytes > 0);
        CHECK(info->peak_rss_bytes >= info->rss_bytes);
        CHECK(info->age < std::chrono::seconds(60));
        CHECK(std::chrono::system_clock::now() - info->started <
              std::chrono::seconds(60)); // wall clock for display
        CHECK(std::any_of(info->interfaces.begin(), info->interfaces.end(),
                          [](const net_interface& i) { return i.name == "lo"; }));
        bool nofile = false;
        for (const auto& l : info->limits)
            if (l.name == "nofile") nofile = l.soft.has_value();
        CHECK(nofile);
        if (root) CHECK(info->io.has_value());
        for (const auto& u : info->unreadable) MESSAGE("unreadable: " << u);
        CHECK(info->unreadable.empty());
        c.async_kill([](error_code, exit_status) {});
        ctx.run();
        ::close(p[0]);
        ::close(p[1]);
    }

    TEST_CASE_FIXTURE(io_fixture, "namespace identities differ exactly where the child was given its own") {
        DROVER_SKIP_IF(needs_linux_backend("pidfd-verified /proc reads"));
        spawn_failure f;
        child c = spawn(ctx, helper({"sleep", "30000"}).unshare(namespaces::net | namespaces::uts), f);
        if (f) DROVER_SKIP("the kernel refused net,uts namespaces: " << f.message());
        wait_sleeping(c);
        error_code ec;
        auto info = read_proc_info(c, ec);
        REQUIRE(info);
        auto own = own_namespaces();
        CHECK(info->ns.net != own.net);
        CHECK(info->ns.uts != own.uts);
        CHECK(info->ns.pid == own.pid);
        CHECK(info->ns.mnt == own.mnt);
        // Its network namespace has only its own lo (no traffic yet).
        REQUIRE_FALSE(info->interfaces.empty());
        CHECK(info->interfaces[0].name == "lo");
        CHECK(info->interfaces[0].rx_packets == 0);

        // drover inspect says so, by eye and in JSON.
        auto text = drover_cli({"inspect", std::to_string(*c.id())});
        CHECK(text.out.text().find("net      " + std::to_string(*info->ns.net) +
                                   "   its own (differs from drover's)") != std::string::npos);
        CHECK(text.out.text().find("same as drover's") != std::string::npos); // pid, mnt...
        auto js = drover_cli({"inspect", "--json", std::to_string(*c.id())});
        auto j = boost::json::parse(js.out.text()).as_object();
        CHECK(j.at("namespaces").at("net").at("same_as_drover").as_bool() == false);
        CHECK(j.at("namespaces").at("pid").at("same_as_drover").as_bool() == true);
        CHECK(j.at("namespaces").at("net").at("id").to_number<std::uint64_t>() == *info->ns.net);
        c.async_kill([](error_code, exit_status) {});
        ctx.run();
    }

    TEST_CASE_FIXTURE(io_fixture, "a process name holding ') (' and a newline parses exactly") {
        DROVER_SKIP_IF(needs_linux_backend("pidfd-verified /proc reads"));
        const std::string hostile = "a) (b\nc) Z 1 (";
        child c = spawn(ctx, helper({"set-comm", hostile, "sleep", "30000"}));
        std::optional<proc_info> info;
        for (int i = 0; i < 2000; ++i) {
            error_code ec;
            info = read_proc_info(c, ec);
            REQUIRE_MESSAGE(info, ec.message());
            if (info->comm != "drover-test-chi") break;
            ::usleep(5000);
        }
        CHECK(info->comm == hostile.substr(0, 15));
        CHECK(info->ppid == ::getpid()); // the fields after the name are still the right ones
        CHECK(info->cmdline.size() == 5);
        auto js = drover_cli({"inspect", "--json", std::to_string(*c.id())});
        CHECK(boost::json::parse(js.out.text()).at("comm").as_string() == hostile.substr(0, 15));
        c.async_kill([](error_code, exit_status) {});
        ctx.run();
    }

    TEST_CASE_FIXTURE(io_fixture, "a process that is gone is reported gone, never described") {
        DROVER_SKIP_IF(needs_linux_backend("pidfd-verified /proc reads"));
        child c = spawn(ctx, helper({"exit", "0"}));
        pid_t pid = *c.id();
        c.async_wait([](error_code, exit_status) {});
        ctx.run();
        error_code ec;
        CHECK_FALSE(read_proc_info(c, ec));
        CHECK(ec == std::errc::no_such_process);
        if (!fs::exists("/proc/" + std::to_string(pid))) {
            CHECK_FALSE(read_proc_info(pid, ec));
            CHECK(ec == std::errc::no_such_process);
        }
        auto r = drover_cli({"inspect", "999999999"});
        CHECK(r.status == exit_status::exited(1));
        CHECK(r.err.text().find("no such process") != std::string::npos);
    }

    TEST_CASE_FIXTURE(
        io_fixture,
        "a zombie is read as a zombie; a kernel thread has no exe, cwd or cmdline and is not 'stale'") {
        DROVER_SKIP_IF(needs_linux_backend("pidfd-verified /proc reads"));
        child c = spawn(ctx, helper({"exit", "0"}));
        const pid_t pid = *c.id();
        for (int i = 0; i < 2000; ++i) { // not reaped: it stays a zombie until we wait
            if (read_file("/proc/" + std::to_string(pid) + "/stat").find(") Z ") != std::string::npos) break;
            ::usleep(5000);
        }
        error_code ec;
        auto z = read_proc_info(pid, ec);
        REQUIRE_MESSAGE(z, ec.message());
        CHECK(z->state == 'Z');
        CHECK(z->exe.empty());
        CHECK(z->unreadable.empty());
        c.async_wait([](error_code, exit_status) {});
        ctx.run();

        // kthreadd is pid 2 wherever the pid namespace is the host's.
        if (read_file("/proc/2/stat").rfind("2 (kthreadd) ", 0) != 0) {
            MESSAGE("partly skipped (the rest was checked): pid 2 is not kthreadd here");
            return;
        }
        auto k = read_proc_info(2, ec);
        REQUIRE_MESSAGE(k, ec.message());
        CHECK(k->kernel_thread);
        CHECK(k->comm == "kthreadd");
        CHECK(k->exe.empty());
        CHECK(k->cmdline.empty());
        auto r = drover_cli({"inspect", "2"});
        CHECK(r.status == exit_status::exited(0));
    }

    TEST_CASE_FIXTURE(io_fixture, "E4: drover inspect escapes what the process controls") {
        DROVER_SKIP_IF(needs_linux_backend("pidfd-verified /proc reads"));
        child c =
            spawn(ctx, helper({"set-comm", "\x1b[31mred\xff", "sleep", "30000"}).arg0("\x1b]0;title\x07"));
        for (int i = 0; i < 2000; ++i) {
            if (read_file("/proc/" + std::to_string(*c.id()) + "/comm").find("red") != std::string::npos)
                break;
            ::usleep(5000);
        }
        auto text = drover_cli({"inspect", std::to_string(*c.id())});
        CHECK(text.status == exit_status::exited(0));
        CHECK(text.out.text().find('\x1b') == std::string::npos); // no raw escape reaches the terminal
        CHECK(text.out.text().find("\\x1B[31mred") != std::string::npos);
        auto ps = drover_cli({"ps", "--interval", "0", std::to_string(*c.id())});
        CHECK(ps.out.text().find('\x1b') == std::string::npos);
        CHECK(ps.out.text().find(" - ") != std::string::npos); // no CPU figure without an interval
        auto js = drover_cli({"inspect", "--json", std::to_string(*c.id())});
        CHECK_NOTHROW(boost::json::parse(js.out.text())); // invalid UTF-8 still makes valid JSON
        c.async_kill([](error_code, exit_status) {});
        ctx.run();
    }

    TEST_CASE_FIXTURE(io_fixture, "the portable backend refuses /proc reads by name: read_proc_info, drover "
                                  "inspect and drover ps") {
        DROVER_SKIP_IF(portable_backend() ? "" : "the portable backend's refusal (suite portable runs it)");
        child c = spawn(ctx, helper({"sleep", "30000"}));
        error_code ec;
        CHECK_FALSE(read_proc_info(c, ec));
        CHECK(ec == errc::not_supported);
        CHECK_FALSE(read_proc_info(*c.id(), ec));
        CHECK(ec == errc::not_supported);
        const std::string why = "not supported by the portable backend (Linux backend only)";
        for (const char* what : {"inspect", "ps"}) {
            auto r = drover_cli({what, std::to_string(*c.id())});
            CHECK(r.status == exit_status::exited(1));
            CHECK_MESSAGE(r.err.text().find(why) != std::string::npos, what << ": " << r.err.text());
            CHECK(r.out.text().empty());
        }
        c.async_kill([](error_code, exit_status) {});
        ctx.run();
    }

    TEST_CASE("G5: a pid reaped and reused between the reads and the verification is reported stale") {
        DROVER_SKIP_IF(needs_linux_backend("pidfd-verified /proc reads"));
        DROVER_SKIP_IF(needs_root()); // a private pid namespace with ns_last_pid
        pid_t outer = ::fork();
        REQUIRE(outer >= 0);
        if (outer == 0) {
            if (::unshare(CLONE_NEWPID | CLONE_NEWNS) != 0) ::_exit(77);
            pid_t init = ::fork();
            if (init < 0) ::_exit(78);
            if (init == 0) namespace_init();
            int st = 0;
            ::waitpid(init, &st, 0);
            ::_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 79);
        }
        int st = 0;
        ::waitpid(outer, &st, 0);
        REQUIRE(WIFEXITED(st));
        if (WEXITSTATUS(st) == 77) DROVER_SKIP("unshare(CLONE_NEWPID|CLONE_NEWNS) was refused");
        CHECK_MESSAGE(WEXITSTATUS(st) == 0,
                      "exit code " << WEXITSTATUS(st)
                                   << " (30: stale data returned, 31: not called stale, 2x: no reuse)");
    }

    TEST_CASE_FIXTURE(io_fixture, "cpu_percent from two samples: a busy child well above a sleeping one") {
        DROVER_SKIP_IF(needs_linux_backend("pidfd-verified /proc reads"));
        child busy = spawn(ctx, helper({"busy", "10000"}));
        command idle_cmd = helper({"write-line", "ready", "sleep", "30000"});
        idle_cmd.std_out(stdio::pipe());
        child idle = spawn(ctx, idle_cmd);
        // Sample the sleeper only once it is asleep: its exec and start-up (slow and CPU-heavy
        // under a sanitizer on a loaded machine) must not count as the CPU of a sleeping process.
        pollfd ready{idle.std_out().native_handle(), POLLIN, 0};
        REQUIRE(eintr_retry([&] { return ::poll(&ready, 1, 30000); }) == 1);
        error_code ec;
        auto b1 = read_proc_info(busy, ec), i1 = read_proc_info(idle, ec);
        REQUIRE((b1 && i1));
        // Sample again once the busy child has used 200 ms of CPU (at most 8 s on a loaded machine).
        std::optional<proc_info> b2, i2;
        for (int i = 0; i < 160; ++i) {
            ::usleep(50000);
            b2 = read_proc_info(busy, ec);
            REQUIRE(b2);
            if (b2->user_cpu + b2->system_cpu - b1->user_cpu - b1->system_cpu >=
                std::chrono::milliseconds(200))
                break;
        }
        i2 = read_proc_info(idle, ec);
        REQUIRE(i2);
        const double busy_pct = cpu_percent(*b1, *b2), idle_pct = cpu_percent(*i1, *i2);
        const double wall = std::chrono::duration<double>(b2->sampled_at - b1->sampled_at).count();
        const double cpu =
            std::chrono::duration<double>(b2->user_cpu + b2->system_cpu - b1->user_cpu - b1->system_cpu)
                .count();
        CHECK(busy_pct == doctest::Approx(cpu / wall * 100).epsilon(0.01)); // exactly the definition
        CHECK(busy_pct > 10);
        CHECK(busy_pct <= 220); // at most the two cores (plus a tick of rounding)
        CHECK(idle_pct < 5);
        CHECK(busy_pct > idle_pct);
        CHECK(cpu_percent(*b1, *i2) == 0); // different processes: no answer
        busy.async_kill([](error_code, exit_status) {});
        idle.async_kill([](error_code, exit_status) {});
        ctx.run();
    }

    TEST_CASE_FIXTURE(io_fixture,
                      "drover ps of a child that started grandchildren lists every process of the tree") {
        DROVER_SKIP_IF(needs_linux_backend("pidfd-verified /proc reads"));
        // drover run (with its guard) -> helper -> three sleeping children: three levels.
        std::vector<std::string> args = {"run", "--",    helper_path(), "fork-children",
                                         "3",   "30000", "sleep",       "30000"};
        child d = spawn(ctx, command(drover_bin(), args).std_out(stdio::null()));
        const pid_t root = *d.id();
        std::set<pid_t> expected;
        for (int i = 0; i < 500; ++i) { // until the helper's three children exist
            expected = descendants_by_scan(root);
            if (expected.size() >= 6) break;
            ::usleep(5000);
        }
        REQUIRE(expected.size() >= 6); // drover, guard, helper, 3 children
        auto walked = process_tree(root);
        CHECK(std::set<pid_t>(walked.begin(), walked.end()) == expected);
        auto r = drover_cli({"ps", "--json", "--interval", "50ms", std::to_string(root)});
        CHECK(r.status == exit_status::exited(0));
        auto a = boost::json::parse(r.out.text()).as_array();
        std::set<pid_t> listed;
        int deepest = 0;
        for (const auto& v : a) {
            listed.insert(static_cast<pid_t>(v.at("pid").as_int64()));
            deepest = std::max(deepest, static_cast<int>(v.at("depth").as_int64()));
            CHECK(v.at("state").as_string().size() == 1);
            CHECK(v.at("rss_bytes").as_int64() > 0);
        }
        CHECK(listed == expected);
        CHECK(deepest == 2);
        CHECK(a[0].at("pid").as_int64() == root);
        auto text = drover_cli({"ps", std::to_string(root)});
        CHECK(text.out.text().rfind("    PID    PPID S   CPU%     RSS   UPTIME  COMMAND\n", 0) == 0);
        CHECK(text.out.text().find("\\_ " + std::string(helper_path()) + " fork-children 3 30000") !=
              std::string::npos);
        d.async_stop([](error_code, exit_status) {});
        ctx.run();
    }

} // TEST_SUITE

TEST_SUITE("proc") {

    TEST_CASE_FIXTURE(
        io_fixture, "daemonize reports a failed step to the process that asked, and leaves nothing behind") {
        auto r = finish([]() -> asio::awaitable<run_result> {
            auto ex = co_await asio::this_coro::executor;
            command cmd(DROVER_DEMO, {"__daemon", "/nonexistent-drover-dir/x.pid"});
            co_return co_await async_run(ex, cmd, run_options{}, asio::use_awaitable);
        }());
        CHECK(r.status == exit_status::exited(1));
        CHECK(r.err.text() ==
              "daemonize: open pidfile /nonexistent-drover-dir/x.pid: No such file or directory\n");
        CHECK_FALSE(r.killed_leftovers); // the daemon itself exited after reporting
    }

} // TEST_SUITE

// Inputs the fuzzers (test/fuzz) found; the seeds in test/fuzz/corpus hold them too.
TEST_CASE("the cgroup v2 path is read after the first line starting with '0::', even at a leading newline") {
    CHECK(detail::parse_proc_cgroup("0::/a/b\n") == "/a/b");
    CHECK(detail::parse_proc_cgroup("1:name=systemd:/x\n0::/a/b\n") == "/a/b");
    CHECK(detail::parse_proc_cgroup("\n0::/a/b\n") == "/a/b");
    CHECK(detail::parse_proc_cgroup("0::/a\n0::/fake\n") == "/a\n0::/fake");
    CHECK_FALSE(detail::parse_proc_cgroup("1:pids:/\n"));
}

TEST_CASE("a stat with CPU or start ticks beyond 73 years is malformed, not an overflow") {
    const std::string head = "42 (x) S 1 42 42 0 -1 4194304 0 0 0 0 ";
    const std::string tail = " 20 0 1 0 12345 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0\n";
    proc_info p;
    CHECK(detail::parse_stat(head + "100 200 0 0" + tail, 42, p));
    CHECK(p.user_cpu == detail::from_ticks(100));
    CHECK_FALSE(detail::parse_stat(head + "18446744073709551615 200 0 0" + tail, 42, p));
    CHECK_FALSE(detail::parse_stat(head + "100 1111111111111111111 0 0" + tail, 42, p));
    CHECK(detail::from_ticks(18446744073709551615ULL) == std::chrono::nanoseconds::max());
}

TEST_CASE("the tree walk reads a stat's ids exactly as read_proc_info does") {
    const std::string stat = "42 (a) b) S\t7  8\t9 0 -1 4194304 0 0 0 0 1 2 0 0 20 0 1 0 5 0 0 1 0 0 0 0 0 0 "
                             "0 0 0 0 0 0 17 1 0 0\n";
    proc_info p;
    detail::proc_ids ids;
    REQUIRE(detail::parse_stat(stat, 42, p));
    REQUIRE(detail::parse_stat_ids(stat, ids));
    CHECK(ids.state == 'S');
    CHECK(ids.ppid == 7);
    CHECK(ids.pgrp == 8);
    CHECK(ids.session == 9);
    // A number is whole or nothing: never cut at 10 digits with the rest taken as the next field.
    CHECK_FALSE(detail::parse_stat_ids("42 (x) S 12345678901 1 1 0\n", ids));
    CHECK_FALSE(detail::parse_stat_ids("42 (x) S 1x 1 1 0\n", ids));
    CHECK_FALSE(detail::parse_stat_ids("42 (x) S 1 1\n1 0\n", ids));
}

TEST_CASE("a memory figure too large to be bytes reads as unknown, not as a wrapped number") {
    proc_info p;
    REQUIRE(detail::parse_status(
        "Uid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nVmRSS:\t18014398509481984 kB\nVmHWM:\t4 kB\n", p));
    CHECK(p.rss_bytes == 0);
    CHECK(p.peak_rss_bytes == 4096);
    REQUIRE(detail::parse_status("Uid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nVmRSS:\t18014398509481983 kB\n", p));
    CHECK(p.rss_bytes == 18014398509481983ULL * 1024);
}
