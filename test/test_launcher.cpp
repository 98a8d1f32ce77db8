// Every launcher in the fallback chain gives the same child: clone3 (the default), clone with
// CLONE_PIDFD (clone3 refused, as under Docker's seccomp profile), clone + pidfd_open.
#include "detail/launch.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include <doctest/doctest.h>

#include <thread>

#include "support.hpp"

using namespace drover;
using namespace drover::test;

namespace {
struct pinned {
    explicit pinned(detail::launcher_kind k) { detail::force_launcher(k); }
    ~pinned() { detail::force_launcher(detail::launcher_kind::automatic); }
};
} // namespace

TEST_SUITE("launcher") {

    TEST_CASE("C3b: a parent killed before the child's PR_SET_PDEATHSIG still takes the child with it") {
        // A plain fork (this test binary has no other threads) plays drover's process: it spawns a
        // helper whose launch pauses 600 ms just before prctl(PR_SET_PDEATHSIG). The parent is
        // SIGKILLed inside that pause; the child's getppid() check must notice and die.
        pid_t parent = ::fork();
        REQUIRE(parent >= 0);
        if (parent == 0) {
            detail::set_test_delay_before_pdeathsig(600);
            asio::io_context ctx;
            spawn_failure f;
            child c = spawn(ctx, helper({"sleep", "30000"}), f);
            ::_exit(f ? 1 : 0); // not reached in time: we are killed during the spawn
        }
        // Find the helper while it sits in the pause (it is the forked process's only child).
        pid_t helper_pid = 0;
        for (auto end = std::chrono::steady_clock::now() + 3s;
             helper_pid == 0 && std::chrono::steady_clock::now() < end;) {
            std::ifstream kids("/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) +
                               "/children");
            kids >> helper_pid;
            if (helper_pid == 0) std::this_thread::sleep_for(1ms);
        }
        REQUIRE(helper_pid > 0);
        ::kill(parent, SIGKILL);
        int ws = 0;
        eintr_retry([&] { return ::waitpid(parent, &ws, 0); }); // directed at our own forked child
        bool gone = false;
        for (auto end = std::chrono::steady_clock::now() + 3s;
             !gone && std::chrono::steady_clock::now() < end;) {
            std::string stat = read_file("/proc/" + std::to_string(helper_pid) + "/stat");
            auto rp = stat.rfind(')');
            gone = stat.empty() || (rp != std::string::npos && rp + 2 < stat.size() && stat[rp + 2] == 'Z');
            if (!gone) std::this_thread::sleep_for(10ms);
        }
        CHECK(gone); // died within 3 s: at the end of the pause, not 30 s later
    }

    TEST_CASE("the default launcher is clone3 on this kernel") {
        output_now(helper({"exit", "0"}));
        CHECK(detail::current_launcher() == detail::launcher_kind::clone3);
    }

    TEST_CASE("each fallback launcher spawns, reports errors and sets up the child the same way") {
        for (auto kind : {detail::launcher_kind::clone3, detail::launcher_kind::clone_pidfd,
                          detail::launcher_kind::clone_pidfd_open}) {
            CAPTURE(detail::to_string(kind));
            if (kind != detail::launcher_kind::clone3 && tsan_skips_glibc_clone()) continue;
            pinned p(kind);

            auto r = output_now(helper({"print-fds", "print-sigmask", "exit", "6"}));
            CHECK(r.status == exit_status::exited(6));
            CHECK(r.out == "0 1 2\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
            CHECK(detail::current_launcher() == kind);

            asio::io_context ctx;
            spawn_failure f;
            child c = spawn(ctx, command("/nonexistent/prog"), f);
            CHECK_FALSE(c.valid());
            CHECK(f.code.value() == ENOENT);
            CHECK(f.stage == spawn_stage::exec);
            spawn_failure g;
            spawn(ctx, helper({"exit", "0"}).cwd("/nonexistent-dir"), g);
            CHECK(g.stage == spawn_stage::cwd);
            CHECK(my_children().empty());

            auto sig = run(ctx, []() -> asio::awaitable<exit_status> {
                auto ex48 = co_await asio::this_coro::executor;
                child k = spawn(ex48, helper({"sleep", "30000"}));
                k.signal(SIGTERM);
                co_return co_await k.async_wait(asio::use_awaitable);
            }());
            CHECK(sig == exit_status::signaled(SIGTERM));
        }
    }
}
