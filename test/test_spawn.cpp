// Spawning: what the child gets (argv, environment, fds, signals, stdio, session) and how
// failures are reported. Tests are named after the rows of docs/reliability.md.
#include "drover/child.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/write.hpp>

#include <array>

#include "support.hpp"

using namespace drover;
using namespace drover::test;
namespace fs = std::filesystem;

extern char** environ;

namespace {

spawn_failure failure_of(const command& cmd) {
    asio::io_context ctx;
    spawn_failure f;
    child c = spawn(ctx, cmd, f);
    CHECK_FALSE(c.valid());
    return f;
}

std::vector<std::string> split_nul(const std::string& s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    for (std::size_t i = 0; i < s.size(); ++i)
        if (s[i] == '\0') {
            out.push_back(s.substr(start, i - start));
            start = i + 1;
        }
    return out;
}

// A3: a child that ran the parent's atexit handlers (exit() instead of _exit()) would create
// this file. Only a process other than the test process can create it.
pid_t g_test_pid = ::getpid();
std::string g_sentinel = "/tmp/drover-atexit-sentinel-" + std::to_string(::getpid());
[[maybe_unused]] const int g_atexit_registered = std::atexit([] {
    if (::getpid() != g_test_pid) std::ofstream(g_sentinel) << "a child ran atexit handlers\n";
});

} // namespace

TEST_SUITE("spawn") {

    TEST_CASE("a program runs and its exit code comes back") {
        auto r = output_now(helper({"write-line", "hello", "exit", "7"}));
        CHECK(r.status == exit_status::exited(7));
        CHECK(r.out == "hello\n");
    }

    TEST_CASE("G1: hostile arguments reach the child byte for byte, one argv element each") {
        std::vector<std::string> args = {"; touch /tmp/drover-pwned $(id)\nrm -rf x",
                                         "",
                                         "-n",
                                         "--",
                                         "a b\tc",
                                         "`id`",
                                         "\"quoted\" 'single'",
                                         "*",
                                         "\xe2\x80\xae\x1b[2J",
                                         "|",
                                         "&&",
                                         ">",
                                         "x=y"};
        std::vector<std::string> script = {"echo-args"};
        script.insert(script.end(), args.begin(), args.end());
        auto r = output_now(helper(script));
        CHECK(r.status.success());
        CHECK(split_nul(r.out) == args);
        CHECK_FALSE(fs::exists("/tmp/drover-pwned"));
    }

    TEST_CASE("argv[0] is the program as given unless set") {
        auto r = output_now(command("/bin/sh", {"-c", "printf %s \"$0\""}));
        CHECK(r.out == "/bin/sh");
        auto r2 = output_now(command("/bin/sh", {"-c", "printf %s \"$0\""}).arg0("custom-name"));
        CHECK(r2.out == "custom-name");
    }

    TEST_CASE("A3: spawn errors are synchronous, exact, name the program and leave no zombie") {
        temp_dir d;
        auto plain = d.path / "plain-file";
        std::ofstream(plain) << "data";
        ::chmod(plain.c_str(), 0644);
        auto script = d.path / "no-shebang";
        std::ofstream(script) << "echo this must not run under sh\n";
        ::chmod(script.c_str(), 0755);
        int zombies_before = zombie_count();

        SUBCASE("not found on PATH") {
            auto f = failure_of(command("drover-definitely-not-installed"));
            CHECK(f.code.value() == ENOENT);
            CHECK(f.stage == spawn_stage::resolve);
            CHECK(f.program == "drover-definitely-not-installed");
            CHECK(f.message().find("'drover-definitely-not-installed'") != std::string::npos);
        }
        SUBCASE("not found by path") {
            auto f = failure_of(command("/nonexistent/prog"));
            CHECK(f.code.value() == ENOENT);
            CHECK(f.stage == spawn_stage::exec);
            CHECK(f.detail == "/nonexistent/prog");
        }
        SUBCASE("not executable") {
            auto f = failure_of(command(plain.string()));
            CHECK(f.code.value() == EACCES);
            CHECK(f.stage == spawn_stage::exec);
        }
        SUBCASE("a directory") {
            auto f = failure_of(command(d.path.string()));
            CHECK(f.code.value() == EISDIR);
            CHECK(f.stage == spawn_stage::exec);
        }
        SUBCASE("A5: a script without a shebang is not run by a shell") {
            auto f = failure_of(command(script.string()));
            CHECK(f.code.value() == ENOEXEC);
            CHECK(f.stage == spawn_stage::exec);
        }
        SUBCASE("a bad working directory") {
            auto f = failure_of(command(helper_path()).cwd("/nonexistent-dir"));
            CHECK(f.code.value() == ENOENT);
            CHECK(f.stage == spawn_stage::cwd);
            CHECK(f.detail == "/nonexistent-dir");
        }
        SUBCASE("an stdout file that cannot be opened") {
            auto f = failure_of(command(helper_path()).std_out(stdio::file("/nonexistent-dir/out")));
            CHECK(f.code.value() == ENOENT);
            CHECK(f.stage == spawn_stage::open_stdio);
            CHECK(f.detail == "/nonexistent-dir/out");
        }
        SUBCASE("a NUL byte in an argument") {
            auto f = failure_of(command(helper_path()).arg(std::string("a\0b", 3)));
            CHECK(f.code == errc::invalid_command);
            CHECK(f.stage == spawn_stage::prepare);
        }
        SUBCASE("the throwing overload throws spawn_error with the same facts") {
            asio::io_context ctx;
            try {
                spawn(ctx, command("/nonexistent/prog"));
                FAIL("spawn did not throw");
            } catch (const spawn_error& e) {
                CHECK(e.code().value() == ENOENT);
                CHECK(e.stage() == spawn_stage::exec);
                CHECK(e.program() == "/nonexistent/prog");
                CHECK(std::string(e.what()).find("cannot spawn '/nonexistent/prog'") != std::string::npos);
            }
        }
        CHECK(zombie_count() == zombies_before);
        CHECK(my_children().empty());
        CHECK_FALSE(fs::exists(g_sentinel));
    }

    TEST_CASE("A5: with PATH=':/usr/bin' and ./true in the cwd, 'true' runs /usr/bin/true") {
        temp_dir d;
        auto planted = d.path / "true";
        std::ofstream(planted) << "#!/bin/sh\nexit 42\n";
        ::chmod(planted.c_str(), 0755);
        auto old = fs::current_path();
        fs::current_path(d.path);
        asio::io_context ctx;
        exit_status st;
        try {
            st = run(ctx, [&]() -> asio::awaitable<exit_status> {
                auto ex186 = co_await asio::this_coro::executor;
                child c = spawn(ex186, command("true").env("PATH", ":/usr/bin"));
                co_return co_await c.async_wait(asio::use_awaitable);
            }());
        } catch (...) {
            fs::current_path(old);
            throw;
        }
        fs::current_path(old);
        CHECK(st == exit_status::exited(0));
    }

    TEST_CASE("B1: a child sees only fds 0-2 and passed fds, while another thread leaks fds") {
        std::atomic<bool> stop{false};
        std::thread leaker([&] {
            std::vector<int> fds;
            while (!stop.load()) {
                for (int i = 0; i < 100; ++i) fds.push_back(::open("/dev/null", O_RDONLY)); // no CLOEXEC
                for (int fd : fds) ::close(fd);
                fds.clear();
            }
        });
        int leaked = ::open("/dev/null", O_RDONLY); // no CLOEXEC, lives through every spawn
        int passed = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        for (int i = 0; i < 50; ++i) {
            auto r = output_now(helper({"print-fds"}));
            CHECK(r.out == "0 1 2\n");
            auto p = output_now(helper({"print-fds"}).pass_fd(passed, 7));
            CHECK(p.out == "0 1 2 7\n");
        }
        stop = true;
        leaker.join();
        ::close(leaked);
        ::close(passed);
    }

    TEST_CASE("a passed fd works in the child at the number asked for, even a low parent fd") {
        int p[2];
        REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
        // Move the write end to fd 9 and ask for it at 3, and the read end stays unpassed.
        int w9 = ::fcntl(p[1], F_DUPFD_CLOEXEC, 9);
        ::close(p[1]);
        auto r = output_now(helper({"fd-write", "3", "via three", "print-fds"}).pass_fd(w9, 3));
        ::close(w9);
        CHECK(r.status.success());
        CHECK(r.out == "0 1 2 3\n");
        char buf[64] = {};
        auto n = eintr_retry([&] { return ::read(p[0], buf, sizeof buf); });
        ::close(p[0]);
        CHECK(std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0) == "via three\n");
    }

    namespace {
    std::atomic<int> g_phantom_terms{0};
    void count_phantom_term(int) {
        ++g_phantom_terms;
    }
    } // namespace

    TEST_CASE("A4: spawn, then stop in the same tick, 1,000 times: the program always gets the signal; "
              "drover never does") {
        struct sigaction sa {
        }, old{};
        sa.sa_handler = count_phantom_term;
        sigemptyset(&sa.sa_mask);
        REQUIRE(::sigaction(SIGTERM, &sa, &old) == 0);
        asio::io_context ctx;
        int by_term = 0, other = 0;
        for (int i = 0; i < 1000; ++i) {
            child c = spawn(
                ctx, helper({"sleep", "30000"}).cgroup(i % 2 ? cgroup_mode::off : cgroup_mode::automatic));
            c.async_stop(10s, [&](error_code ec, exit_status st) {
                if (!ec && st == exit_status::signaled(SIGTERM))
                    ++by_term;
                else
                    ++other;
            });
            ctx.restart();
            ctx.run_for(10s);
        }
        ::sigaction(SIGTERM, &old, nullptr);
        CHECK(by_term == 1000);
        CHECK(other == 0);
        CHECK(g_phantom_terms == 0);
    }

    TEST_CASE("B2, B3: the child gets an empty signal mask and default dispositions") {
        sigset_t block, old;
        sigemptyset(&block);
        for (int s : {SIGTERM, SIGINT, SIGCHLD, SIGHUP}) sigaddset(&block, s);
        ::pthread_sigmask(SIG_BLOCK, &block, &old);
        auto old_pipe = ::signal(SIGPIPE, SIG_IGN);
        auto old_hup = ::signal(SIGUSR1, SIG_IGN);

        auto r = output_now(helper({"print-sigmask"}));
        CHECK(r.out == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");

        SUBCASE("SIGTERM reaches a child spawned by a thread that blocks it") {
            asio::io_context ctx;
            auto st = run(ctx, [&]() -> asio::awaitable<exit_status> {
                auto ex251 = co_await asio::this_coro::executor;
                child c = spawn(ex251, helper({"sleep", "30000"}));
                c.signal(SIGTERM);
                co_return co_await c.async_wait(asio::use_awaitable);
            }());
            CHECK(st == exit_status::signaled(SIGTERM));
        }
        SUBCASE("yes | head -1 ends: SIGPIPE kills the writer although drover ignores SIGPIPE") {
            asio::io_context ctx;
            auto st = run(ctx, [&]() -> asio::awaitable<exit_status> {
                auto ex260 = co_await asio::this_coro::executor;
                child c = spawn(ex260, helper({"yes"}).std_out(stdio::pipe()));
                std::array<char, 2> buf{};
                co_await asio::async_read(c.std_out(), asio::buffer(buf), asio::use_awaitable);
                c.std_out().close(); // the reader goes away, like head after one line
                co_return co_await c.async_wait(asio::use_awaitable);
            }());
            CHECK(st == exit_status::signaled(SIGPIPE));
        }

        ::signal(SIGPIPE, old_pipe);
        ::signal(SIGUSR1, old_hup);
        ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    }

    TEST_CASE("blocked_signals: the child starts with exactly those blocked; SIGKILL, SIGSTOP and "
              "non-signals fail") {
        auto r = output_now(helper({"print-sigmask"}).blocked_signals({SIGUSR1, SIGTERM}));
        CHECK(r.out == "SigBlk:\t0000000000004200\nSigIgn:\t0000000000000000\n"); // bits 10 and 15
        // A signal sent to it stays pending: the child is alive 200 ms after a SIGTERM.
        asio::io_context ctx;
        child c = spawn(ctx, helper({"sleep", "30000"}).blocked_signals({SIGTERM}));
        c.signal(SIGTERM);
        std::this_thread::sleep_for(200ms);
        CHECK_FALSE(c.try_wait().has_value());
        c.signal(SIGKILL);
        CHECK(run(ctx, c.async_wait(asio::use_awaitable)) == exit_status::signaled(SIGKILL));
        for (int bad : {SIGKILL, SIGSTOP, 0, -1, NSIG}) {
            CAPTURE(bad);
            auto f = failure_of(command(helper_path()).blocked_signals({SIGTERM, bad}));
            CHECK(f.code == errc::invalid_command);
            CHECK(f.stage == spawn_stage::prepare);
            CHECK(f.detail.find(std::to_string(bad)) != std::string::npos);
        }
    }

    TEST_CASE("B4: a child inheriting a non-blocking stdout writes 1 MiB without EAGAIN") {
        int p[2];
        REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
        asio::io_context ctx;
        // What a program does when it wraps its own stdout in Asio: the description goes O_NONBLOCK.
        asio::posix::stream_descriptor out(ctx, ::dup(p[1]));
        out.non_blocking(true);
        ::close(p[1]);
        REQUIRE((::fcntl(out.native_handle(), F_GETFL) & O_NONBLOCK) != 0);

        std::string received;
        std::thread reader([&] {
            char buf[65536];
            ssize_t n;
            while ((n = eintr_retry([&] { return ::read(p[0], buf, sizeof buf); })) > 0)
                received.append(buf, static_cast<std::size_t>(n));
        });
        exit_status st;
        {
            // A slow reader makes the pipe fill up: a non-blocking child write would see EAGAIN.
            auto cmd = helper({"write-stdout", "1048576", "print-nonblock"});
            cmd.std_out(stdio::fd(out.native_handle()));
            st = run(ctx, [&]() -> asio::awaitable<exit_status> {
                auto ex296 = co_await asio::this_coro::executor;
                child c = spawn(ex296, cmd);
                co_return co_await c.async_wait(asio::use_awaitable);
            }());
            // The parent's own description keeps its flag.
            CHECK((::fcntl(out.native_handle(), F_GETFL) & O_NONBLOCK) != 0);
            out.close();
        }
        reader.join();
        ::close(p[0]);
        CHECK(st == exit_status::exited(0));
        REQUIRE(received.size() == 1048576 + std::string("0:0 1:0 2:0\n").size());
        CHECK(received.substr(1048576, 4) == "0:0 ");
    }

    TEST_CASE("B5: with a keep-list the child sees exactly the allowed variables, once each") {
        // Give this process a hostile environment of its own, duplicates included.
        std::vector<std::string> storage = {"LD_PRELOAD=/nonexistent-preload.so",
                                            "FOO=1",
                                            "FOO=2",
                                            "SECRET=s",
                                            "NOTIFY_SOCKET=/run/x",
                                            "PATH=/usr/bin:/bin"};
        std::vector<char*> hostile;
        for (auto& s : storage) hostile.push_back(s.data());
        hostile.push_back(nullptr);
        char** saved = environ;
        environ = hostile.data();
        output r, inherit;
        try {
            r = output_now(helper({"print-env0"}).env_keep("FOO").env_keep("PATH").env("ADDED", "x y"));
            inherit = output_now(helper({"print-env0"}).env_remove("LD_PRELOAD"));
        } catch (...) {
            environ = saved;
            throw;
        }
        environ = saved;
        CHECK(split_nul(r.out) == std::vector<std::string>{"FOO=2", "PATH=/usr/bin:/bin", "ADDED=x y"});
        CHECK(split_nul(inherit.out) == std::vector<std::string>{"FOO=2", "SECRET=s", "PATH=/usr/bin:/bin"});
    }

    TEST_CASE("stdio: null, files (truncate, append, read) and a pipe through a child") {
        temp_dir d;
        auto in = d.path / "in.txt";
        auto out = d.path / "out.txt";
        std::ofstream(in) << "from a file\n";
        std::ofstream(out) << "old content that must go away\n";

        auto r = output_now(helper({"cat"}).std_in(stdio::file(in)));
        CHECK(r.out == "from a file\n");

        asio::io_context ctx;
        auto run_to_end = [&](command cmd) {
            return run(ctx, [&]() -> asio::awaitable<exit_status> {
                auto ex346 = co_await asio::this_coro::executor;
                child c = spawn(ex346, cmd);
                co_return co_await c.async_wait(asio::use_awaitable);
            }());
        };
        CHECK(run_to_end(helper({"write-line", "one"}).std_out(stdio::file(out))).success());
        CHECK(read_file(out.string()) == "one\n");
        CHECK(run_to_end(helper({"write-line", "two"}).std_out(stdio::append(out))).success());
        CHECK(run_to_end(helper({"write-line-stderr", "three"}).std_err(stdio::append(out))).success());
        CHECK(read_file(out.string()) == "one\ntwo\nthree\n");

        auto n = output_now(helper({"read-stdin", "write-line-stderr", "to null"})
                                .std_in(stdio::null())
                                .std_err(stdio::null()));
        CHECK(n.out == "read 0 bytes\n");

        // Piping through a child: write to its stdin, close it, read its transformed stdout.
        auto piped = run(ctx, [&]() -> asio::awaitable<std::string> {
            auto ex361 = co_await asio::this_coro::executor;
            child c = spawn(ex361, helper({"upper"}).std_in(stdio::pipe()).std_out(stdio::pipe()));
            std::string text = "piped through a child\n";
            co_await asio::async_write(c.std_in(), asio::buffer(text), asio::use_awaitable);
            c.std_in().close();
            std::string result = co_await read_all(c.std_out());
            auto st = co_await c.async_wait(asio::use_awaitable);
            CHECK(st.success());
            co_return result;
        }());
        CHECK(piped == "PIPED THROUGH A CHILD\n");
    }

    TEST_CASE_FIXTURE(io_fixture, "asking for a stream that is not a pipe is an error, not a crash") {
        child c = spawn(ctx, helper({"exit", "0"}));
        CHECK_THROWS_AS(c.std_out(), boost::system::system_error);
        try {
            c.std_in();
        } catch (const boost::system::system_error& e) {
            CHECK(e.code() == errc::not_piped);
        }
    }

    TEST_CASE("a child starts in its own session unless told otherwise") {
        auto r = output_now(helper({"print-ids"}));
        pid_t pid = 0, ppid = 0, sid = 0, pgid = 0;
        REQUIRE(std::sscanf(r.out.c_str(), "pid %d ppid %d sid %d pgid %d", &pid, &ppid, &sid, &pgid) == 4);
        CHECK(sid == pid);
        CHECK(pgid == pid);
        CHECK(ppid == ::getpid());
        auto same = output_now(helper({"print-ids"}).new_session(false));
        REQUIRE(std::sscanf(same.out.c_str(), "pid %d ppid %d sid %d pgid %d", &pid, &ppid, &sid, &pgid) ==
                4);
        CHECK(sid == ::getsid(0));
    }

    TEST_CASE("the working directory applies, and a relative program path is relative to it") {
        temp_dir d;
        fs::create_directory(d.path / "bin");
        // Not fs::copy_file: libstdc++ 12's sendfile loop gives up on EINTR (the signal-storm run).
        {
            std::ifstream from("/bin/pwd", std::ios::binary);
            std::ofstream(d.path / "bin" / "mypwd", std::ios::binary) << from.rdbuf();
            fs::permissions(d.path / "bin" / "mypwd", fs::perms::owner_all);
        }
        auto r = output_now(command("./bin/mypwd").cwd(d.path));
        CHECK(r.status.success());
        CHECK(r.out == fs::canonical(d.path).string() + "\n");
    }
}
