// Fault injection: through the seam in lib/detail/fault.hpp, chosen system calls of
// the library fail (an errno, EINTR, a short transfer, std::bad_alloc), and every case must end
// in a clear error or a bounded retry: never a crash, a leaked descriptor, a leftover child or
// zombie, or a hang. Each test counts this process's descriptors and children before and after.
// (Running whole suites on the fallback launchers is done by meson: see test/meson.build.)
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/write.hpp>

#include "detail/cgroup.hpp"
#include "detail/fault.hpp"
#include "detail/launch.hpp"
#include "detail/unique_fd.hpp"
#include "support.hpp"

using namespace drover;
using namespace drover::test;
using drover::detail::fault_point;

namespace {

std::string fd_listing() {
    std::string out;
    for (auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        out += e.path().filename().string() + " -> " + std::filesystem::read_symlink(e.path(), ec).string() +
               "\n";
    }
    return out;
}

/// Counts descriptors and children at construction (after warming up what drover creates once
/// and keeps: the io_context's reactor, the spawn thread); `check()` asserts both are back.
struct leak_check {
    asio::io_context& ctx;
    int fds = 0;
    std::size_t children = 0;

    explicit leak_check(asio::io_context& c) : ctx(c) {
        detail::clear_faults();
        child w = spawn(ctx, helper({"exit", "0"}).std_in(stdio::pipe()).std_out(stdio::pipe()));
        w.async_wait([](error_code, exit_status) {});
        ctx.run();
        ctx.restart();
        w = child();
        ctx.run();
        ctx.restart();
        fds = open_fd_count();
        children = my_children().size();
    }
    ~leak_check() { detail::clear_faults(); }

    void check() {
        detail::clear_faults();
        ctx.restart();
        ctx.run(); // cleanups the destructors left behind
        ctx.restart();
        CHECK(zombie_count() == 0);
        CHECK(my_children().size() == children);
        int now = open_fd_count();
        CHECK_MESSAGE(now == fds, fd_listing());
        // And drover still works.
        auto ok = output_now(helper({"write-line", "recovered"}));
        CHECK(ok.out == "recovered\n");
        CHECK(open_fd_count() == fds);
    }
};

/// Resets the launcher probe before and after (a fault may make drover settle on a fallback).
struct fresh_launcher {
    fresh_launcher() { detail::force_launcher(detail::launcher_kind::automatic); }
    ~fresh_launcher() { detail::force_launcher(detail::launcher_kind::automatic); }
};

/// A sleep length no other test process uses (this process's pid is in it), so the checks for
/// leftover processes cannot see another suite's children, even the same test run in parallel
/// in the signal-storm suite.
const std::string& long_ms() {
    static const std::string ms = std::to_string(40000 + ::getpid() % 50000);
    return ms;
}

/// Waits (up to 10 s) until the tree of `c` has `n` processes; true if it got there.
bool wait_tree_size(const child& c, std::size_t n) {
    for (auto end = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < end;) {
        if (c.tree_pids().size() == n) return true;
        std::this_thread::sleep_for(5ms);
    }
    return false;
}

command three_pipes(std::vector<std::string> script) {
    return helper(std::move(script)).std_in(stdio::pipe()).std_out(stdio::pipe()).std_err(stdio::pipe());
}

/// Runs `c` to its end (reading nothing) and returns its status.
exit_status wait_for(asio::io_context& ctx, child& c) {
    exit_status st = exit_status::unknown();
    c.async_wait([&](error_code ec, exit_status s) {
        CHECK(!ec);
        st = s;
    });
    ctx.restart();
    ctx.run_for(20s);
    return st;
}

} // namespace

TEST_SUITE("fault") {

    TEST_CASE("clone3 refused (ENOSYS, EPERM): the spawn falls back to clone with CLONE_PIDFD and works") {
        DROVER_SKIP_IF(needs_linux_backend("the clone3 launcher and its fallbacks"));
        DROVER_SKIP_IF(needs_no_tsan_clone());
        fresh_launcher fresh;
        for (int err : {ENOSYS, EPERM}) {
            CAPTURE(err);
            asio::io_context ctx;
            leak_check leaks(ctx);
            detail::force_launcher(detail::launcher_kind::automatic);
            detail::inject_fault(fault_point::clone3, err, 1);
            auto r = output_now(helper({"write-line", "via fallback"}));
            CHECK(r.out == "via fallback\n");
            CHECK(detail::fault_hits(fault_point::clone3) == 1);
            CHECK(detail::current_launcher() == detail::launcher_kind::clone_pidfd);
            leaks.check();
        }
    }

    TEST_CASE(
        "clone3 and CLONE_PIDFD refused: the third launcher (clone, then pidfd_open) works, stop included") {
        DROVER_SKIP_IF(needs_linux_backend("the clone3 launcher and its fallbacks"));
        DROVER_SKIP_IF(needs_no_tsan_clone());
        fresh_launcher fresh;
        asio::io_context ctx;
        leak_check leaks(ctx);
        detail::inject_fault(fault_point::clone3, ENOSYS, -1);
        detail::inject_fault(fault_point::clone_pidfd, EPERM, -1);
        auto r = output_now(helper({"write-line", "third"}));
        CHECK(r.out == "third\n");
        CHECK(detail::current_launcher() == detail::launcher_kind::clone_pidfd_open);
        {
            child c = spawn(ctx, helper({"spawn-grandchild", long_ms(), "sleep", long_ms()}));
            bool stopped = false;
            c.async_stop(50ms, [&](error_code ec, exit_status st) {
                CHECK(!ec);
                CHECK(st.signal() == SIGTERM);
                stopped = true;
            });
            ctx.run_for(10s);
            CHECK(stopped);
        }
        leaks.check();
    }

    TEST_CASE(
        "clone3 fails with EAGAIN (a process limit): the F3 message, no fallback tried, nothing leaked") {
        DROVER_SKIP_IF(needs_linux_backend("the clone3 launcher and its fallbacks"));
        fresh_launcher fresh;
        asio::io_context ctx;
        leak_check leaks(ctx);
        detail::inject_fault(fault_point::clone3, EAGAIN, 1);
        spawn_failure f;
        child c = spawn(ctx, three_pipes({"exit", "0"}), f);
        CHECK(f.code == error_code(EAGAIN, boost::system::system_category()));
        CHECK(f.stage == spawn_stage::clone);
        CHECK(f.message().find("a process limit was reached") != std::string::npos);
        CHECK(detail::fault_hits(fault_point::clone_pidfd) == 0);
        leaks.check();
    }

    TEST_CASE("pipe2 fails with EMFILE or ENFILE at each of the three pipes: a named error, nothing leaked") {
        for (int err : {EMFILE, ENFILE}) {
            for (int which = 0; which < 3; ++which) {
                CAPTURE(err);
                CAPTURE(which);
                asio::io_context ctx;
                leak_check leaks(ctx);
                detail::inject_fault(fault_point::pipe2, err, 1, which);
                spawn_failure f;
                child c = spawn(ctx, three_pipes({"exit", "0"}), f);
                CHECK(f.code == error_code(err, boost::system::system_category()));
                CHECK(f.stage == spawn_stage::open_stdio);
                CHECK(f.message().find("pipe for fd " + std::to_string(which)) != std::string::npos);
                leaks.check();
            }
        }
    }

    TEST_CASE_FIXTURE(
        io_fixture,
        "open fails for a stdio file or /dev/null: stage open_stdio names the path; nothing leaked") {
        leak_check leaks(ctx);
        detail::inject_fault(fault_point::open, ENFILE, 1);
        spawn_failure f;
        child c = spawn(
            ctx, helper({"exit", "0"}).cgroup(cgroup_mode::off).std_out(stdio::file("/tmp/drover-fault-out")),
            f);
        CHECK(f.code == error_code(ENFILE, boost::system::system_category()));
        CHECK(f.stage == spawn_stage::open_stdio);
        CHECK(f.message().find("/tmp/drover-fault-out") != std::string::npos);
        detail::inject_fault(fault_point::open, EMFILE, 1);
        child c2 = spawn(ctx, helper({"exit", "0"}).cgroup(cgroup_mode::off).std_in(stdio::null()), f);
        CHECK(f.code == error_code(EMFILE, boost::system::system_category()));
        CHECK(f.message().find("/dev/null") != std::string::npos);
        leaks.check();
    }

    TEST_CASE("pidfd_open fails on the third launcher: the child is killed and reaped, stage pidfd") {
        DROVER_SKIP_IF(needs_no_tsan_clone());
        fresh_launcher fresh;
        asio::io_context ctx;
        leak_check leaks(ctx);
        detail::force_launcher(detail::launcher_kind::clone_pidfd_open);
        detail::inject_fault(fault_point::pidfd_open, EMFILE, 1);
        spawn_failure f;
        child c = spawn(ctx, three_pipes({"sleep", long_ms()}), f);
        CHECK(f.code == error_code(EMFILE, boost::system::system_category()));
        CHECK(f.stage == spawn_stage::pidfd);
        CHECK(live_processes_where([](const std::string& cl) {
                  return cl == std::string(helper_path()) + " sleep " + long_ms();
              }) == 0);
        leaks.check();
    }

    TEST_CASE_FIXTURE(io_fixture, "the leaf cgroup cannot be opened (EMFILE): automatic mode runs without "
                                  "one, required mode says why") {
        DROVER_SKIP_IF(needs_cgroup_v2());
        leak_check leaks(ctx);
        for (int skip = 0; skip < 3; ++skip) { // the directory, cgroup.events, cgroup.kill
            CAPTURE(skip);
            detail::inject_fault(fault_point::open, EMFILE, 1, skip);
            spawn_failure f;
            child c = spawn(ctx, helper({"exit", "0"}).cgroup(cgroup_mode::required), f);
            CHECK(f.code == error_code(EMFILE, boost::system::system_category()));
            CHECK(f.stage == spawn_stage::cgroup);
            CHECK(f.message().find("cannot open") != std::string::npos);
        }
        detail::inject_fault(fault_point::open, EMFILE, 1);
        child c = spawn(ctx, helper({"exit", "7"}));
        CHECK(c.tree() == tree_kind::session);
        CHECK(wait_for(ctx, c).code() == 7);
        c = child();
        leaks.check();
    }

    TEST_CASE_FIXTURE(
        io_fixture,
        "allocation fails before the clone and after it: ENOMEM, and a launched child is killed and reaped") {
        leak_check leaks(ctx);
        for (int skip = 0; skip < 2; ++skip) { // 0: in the launcher, before clone; 1: in spawn(), after it
            CAPTURE(skip);
            detail::inject_fault(fault_point::alloc, ENOMEM, 1, skip);
            spawn_failure f;
            child c = spawn(ctx, three_pipes({"sleep", long_ms()}), f);
            CHECK(f.code == error_code(ENOMEM, boost::system::system_category()));
            CHECK(f.stage == (skip == 0 ? spawn_stage::prepare : spawn_stage::register_io));
            CHECK(detail::fault_hits(fault_point::alloc) == 1);
            CHECK(live_processes_where([](const std::string& cl) {
                      return cl == std::string(helper_path()) + " sleep " + long_ms();
                  }) == 0);
            detail::clear_faults();
        }
        leaks.check();
    }

    TEST_CASE_FIXTURE(
        io_fixture,
        "reads return EINTR and short counts: /proc introspection, tree walks and env files read the same") {
        DROVER_SKIP_IF(needs_linux_backend("/proc introspection (read_proc_info)"));
        leak_check leaks(ctx);
        {
            child c = spawn(
                ctx, helper({"spawn-grandchild", long_ms(), "sleep", long_ms()}).cgroup(cgroup_mode::off));
            REQUIRE(wait_tree_size(c, 2));
            error_code ec;
            auto clean = read_proc_info(c, ec);
            REQUIRE(clean);
            auto tree_clean = c.tree_pids();
            detail::inject_fault(fault_point::read, EINTR, 3);
            auto interrupted = read_proc_info(c, ec);
            CHECK(detail::fault_hits(fault_point::read) == 3);
            detail::inject_fault(fault_point::read, detail::fault_short, -1);
            auto shorter = read_proc_info(c, ec);
            auto tree_short = c.tree_pids();
            CHECK(detail::fault_hits(fault_point::read) > 100); // one byte per read
            detail::clear_faults();
            for (const auto* p : {&interrupted, &shorter}) {
                REQUIRE(*p);
                CHECK((*p)->comm == clean->comm);
                CHECK((*p)->cmdline == clean->cmdline);
                CHECK((*p)->limits.size() == clean->limits.size());
                CHECK((*p)->unreadable == clean->unreadable);
            }
            CHECK(tree_short == tree_clean);
            CHECK(tree_clean.size() == 2);
            bool stopped = false;
            detail::inject_fault(fault_point::read, detail::fault_short, -1);
            c.async_stop(50ms, [&](error_code e, exit_status) {
                CHECK(!e);
                stopped = true;
            });
            ctx.run_for(10s);
            CHECK(stopped);
            detail::clear_faults();
        }
        {
            const std::string path = "/tmp/drover-fault-env-" + std::to_string(::getpid());
            std::ofstream(path) << "# comment\nA=1\nexport B='two words'\nC=\"x\\ty\"\n";
            auto clean = read_env_file(path);
            detail::inject_fault(fault_point::read, EINTR, 2);
            auto a = read_env_file(path);
            detail::inject_fault(fault_point::read, detail::fault_short, -1);
            auto b = read_env_file(path);
            detail::clear_faults();
            CHECK(a == clean);
            CHECK(b == clean);
            CHECK(clean.size() == 3);
            std::filesystem::remove(path);
        }
        leaks.check();
    }

    TEST_CASE_FIXTURE(
        io_fixture,
        "writes to a child's stdin return EINTR and then one byte at a time: every byte arrives, in order") {
        leak_check leaks(ctx);
        std::string data;
        for (int i = 0; data.size() < 20000; ++i) data += "line " + std::to_string(i) + "\n";
        for (int err : {EINTR, detail::fault_short}) {
            CAPTURE(err);
            child c = spawn(ctx, helper({"cat"}).std_in(stdio::pipe()).std_out(stdio::pipe()));
            detail::inject_fault(fault_point::write, err, err == EINTR ? 5 : -1);
            std::string got;
            error_code wec;
            std::size_t written = 0;
            asio::async_write(c.std_in(), asio::buffer(data), [&](error_code e, std::size_t n) {
                wec = e;
                written = n;
                error_code ignored;
                c.std_in().close(ignored);
            });
            auto reader = [&]() -> asio::awaitable<void> { got = co_await read_all(c.std_out()); };
            asio::co_spawn(ctx, reader(), [](std::exception_ptr e) {
                if (e) std::rethrow_exception(e); // out of run_for: the test fails, never silently
            });
            ctx.restart();
            ctx.run_for(30s);
            CHECK(!wec);
            CHECK(written == data.size());
            CHECK(got == data);
            CHECK(detail::fault_hits(fault_point::write) >= (err == EINTR ? 5u : data.size() / 2));
            detail::clear_faults();
            CHECK(wait_for(ctx, c).success());
        }
        leaks.check();
    }

    TEST_CASE_FIXTURE(io_fixture,
                      "writes to cgroup.kill return EINTR: the kill is retried and the stop completes") {
        DROVER_SKIP_IF(needs_cgroup_v2());
        leak_check leaks(ctx);
        {
            child c = spawn(ctx, helper({"spawn-grandchild-setsid", long_ms(), "sleep", long_ms()}));
            REQUIRE(c.tree() == tree_kind::cgroup);
            REQUIRE(wait_tree_size(c, 2));
            detail::inject_fault(fault_point::write, EINTR, 2);
            bool stopped = false;
            c.async_kill([&](error_code e, exit_status st) {
                CHECK(!e);
                CHECK(st.signal() == SIGKILL);
                stopped = true;
            });
            ctx.run_for(10s);
            CHECK(stopped);
            CHECK(detail::fault_hits(fault_point::write) == 2);
        }
        leaks.check();
    }

    TEST_CASE_FIXTURE(io_fixture,
                      "out of descriptors during a stop (cgroup): the tree is still seen empty; no hang") {
        DROVER_SKIP_IF(needs_cgroup_v2());
        leak_check leaks(ctx);
        {
            std::vector<child> kids;
            for (int i = 0; i < 8; ++i)
                kids.push_back(
                    spawn(ctx, three_pipes({"spawn-grandchild-setsid", long_ms(), "sleep", long_ms()})));
            for (auto& k : kids) REQUIRE(wait_tree_size(k, 2));
            // Every later open(), pipe2(), pidfd_open() fails with EMFILE: lower the
            // limit a little above the highest descriptor, then fill every free slot.
            struct rlimit saved {};
            ::getrlimit(RLIMIT_NOFILE, &saved);
            int highest = 0;
            for (auto& e : std::filesystem::directory_iterator("/proc/self/fd"))
                highest = std::max(highest, std::stoi(e.path().filename().string()));
            struct rlimit none = saved;
            none.rlim_cur = static_cast<rlim_t>(highest + 8);
            REQUIRE(::setrlimit(RLIMIT_NOFILE, &none) == 0);
            std::vector<detail::unique_fd> fillers;
            for (;;) {
                int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (fd < 0) break;
                fillers.emplace_back(fd);
            }
            CHECK(errno == EMFILE); // really out
            int stopped = 0;
            auto t0 = std::chrono::steady_clock::now();
            for (auto& c : kids)
                c.async_stop(100ms, [&](error_code e, exit_status st) {
                    CHECK(!e);
                    CHECK(st.signal() == SIGTERM);
                    ++stopped;
                });
            ctx.run_for(20s);
            fillers.clear();
            ::setrlimit(RLIMIT_NOFILE, &saved);
            CHECK(stopped == 8);
            CHECK(std::chrono::steady_clock::now() - t0 < 5s);
            CHECK(live_processes_where([](const std::string& cl) {
                      return cl.find(" spawn-grandchild-setsid " + long_ms()) != std::string::npos;
                  }) == 0);
        }
        leaks.check();
    }

    TEST_CASE_FIXTURE(io_fixture, "out of descriptors during a stop (no cgroup): bounded, ends with EMFILE, "
                                  "the process group is killed") {
        // The process-group stop needs no descriptor to see its tree: nothing to run out of.
        DROVER_SKIP_IF(needs_linux_backend("the /proc walk of a session tree"));
        leak_check leaks(ctx);
        {
            child c = spawn(
                ctx, helper({"spawn-grandchild", long_ms(), "sleep", long_ms()}).cgroup(cgroup_mode::off));
            REQUIRE(wait_tree_size(c, 2));
            // /proc cannot be walked and no pidfd can be had: the stop cannot see the tree.
            detail::inject_fault(fault_point::open, EMFILE, -1);
            detail::inject_fault(fault_point::pidfd_open, EMFILE, -1);
            bool stopped = false;
            error_code got;
            auto t0 = std::chrono::steady_clock::now();
            c.async_stop(50ms, [&](error_code e, exit_status) {
                got = e;
                stopped = true;
            });
            ctx.run_for(20s);
            auto took = std::chrono::steady_clock::now() - t0;
            detail::clear_faults();
            CHECK(stopped);
            CHECK(got == error_code(EMFILE, boost::system::system_category()));
            CHECK(took < 10s);
            // The grandchild shares the main process's group: the blind kill reached it.
            auto left = [] {
                return live_processes_where([](const std::string& cl) {
                    return cl == std::string(helper_path()) + " spawn-grandchild " + long_ms() + " sleep " +
                                     long_ms();
                });
            };
            for (auto end = std::chrono::steady_clock::now() + 5s;
                 left() != 0 && std::chrono::steady_clock::now() < end;)
                std::this_thread::sleep_for(10ms);
            CHECK(left() == 0);
        }
        leaks.check();
    }

    TEST_CASE("daemonize: fork fails with EAGAIN: a daemon_error naming the step; nothing leaked") {
        // In a single-threaded copy of this process (daemonize refuses threaded callers).
        int report[2];
        REQUIRE(::pipe2(report, O_CLOEXEC) == 0);
        pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            ::close(report[0]);
            int before = open_fd_count();
            std::string what = "no error";
            detail::inject_fault(fault_point::fork, EAGAIN, 1);
            try {
                daemon_options o;
                daemonize(o);
            } catch (const daemon_error& e) {
                what = std::string(e.what()) +
                       (e.code() == error_code(EAGAIN, boost::system::system_category()) ? " [EAGAIN]" : "");
            }
            what += open_fd_count() == before ? " [fds equal]" : " [fds differ]";
            eintr_retry([&] { return ::write(report[1], what.data(), what.size()); });
            ::_exit(0);
        }
        ::close(report[1]);
        std::string got;
        char buf[512];
        ssize_t n;
        while ((n = eintr_retry([&] { return ::read(report[0], buf, sizeof buf); })) > 0)
            got.append(buf, static_cast<std::size_t>(n));
        ::close(report[0]);
        int st = 0;
        eintr_retry([&] { return ::waitpid(pid, &st, 0); });
#if defined(__SANITIZE_THREAD__)
        // ThreadSanitizer restarts its background thread in a forked child, so daemonize() rightly
        // refuses the (now two-threaded) caller before it reaches the fork.
        if (got.find("threads; call daemonize before any thread exists") != std::string::npos)
            DROVER_SKIP("ThreadSanitizer: its runtime thread makes daemonize refuse first");
#endif
        CHECK(got.find("daemonize: fork") != std::string::npos);
        CHECK(got.find("[EAGAIN]") != std::string::npos);
        CHECK(got.find("[fds equal]") != std::string::npos);
    }

} // TEST_SUITE
