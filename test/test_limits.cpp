// Limits and hygiene applied in the child: rlimits (B6), umask,
// no_new_privs (G4), the shell-syntax lint and command::shell (G1).
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support.hpp"

using namespace drover;
using namespace drover::test;

namespace {

/// Raises this process's soft NOFILE limit for the scope (like a supervisor does), then puts it back.
struct raised_nofile {
    struct rlimit saved {};
    bool ok = false;
    explicit raised_nofile(rlim_t want) {
        ::getrlimit(RLIMIT_NOFILE, &saved);
        struct rlimit r = saved;
        r.rlim_cur = std::min<rlim_t>(want, saved.rlim_max);
        ok = r.rlim_cur > 1024 && ::setrlimit(RLIMIT_NOFILE, &r) == 0;
    }
    ~raised_nofile() { ::setrlimit(RLIMIT_NOFILE, &saved); }
};

std::string rlim_text(rlim_t v) {
    return v == RLIM_INFINITY ? "unlimited" : std::to_string(v);
}

} // namespace

TEST_SUITE("limits") {

    TEST_CASE("B6: a raised soft NOFILE limit does not leak into children; an explicit one wins") {
        raised_nofile raised(65536);
        if (!raised.ok)
            DROVER_SKIP("the hard NOFILE limit (" << raised.saved.rlim_max
                                                  << ") does not allow raising the soft one above 1024");
        auto def = output_now(helper({"print-rlimit", "NOFILE"}));
        CHECK(def.out == "1024 " + rlim_text(raised.saved.rlim_max) + "\n");
        auto set = output_now(helper({"print-rlimit", "NOFILE"}).rlimit(RLIMIT_NOFILE, 500, 600));
        CHECK(set.out == "500 600\n");
    }

    TEST_CASE("raise_fd_limit lifts the soft NOFILE limit to the hard one; children still get 1024") {
        struct rlimit saved {};
        REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
        if (saved.rlim_max <= 1024)
            DROVER_SKIP("the hard NOFILE limit (" << saved.rlim_max << ") leaves nothing to raise");
        struct rlimit low = saved;
        low.rlim_cur = 1024;
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
        error_code ec;
        CHECK(raise_fd_limit(ec) == saved.rlim_max);
        CHECK_FALSE(ec);
        struct rlimit now {};
        REQUIRE(::getrlimit(RLIMIT_NOFILE, &now) == 0);
        CHECK(now.rlim_cur == saved.rlim_max);
        CHECK(raise_fd_limit() == saved.rlim_max); // already there: unchanged, no error
        auto child_sees = output_now(helper({"print-rlimit", "NOFILE"}));
        CHECK(child_sees.out == "1024 " + rlim_text(saved.rlim_max) + "\n");
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &saved) == 0);
    }

    TEST_CASE_FIXTURE(io_fixture, "rlimit cpu=1 ends a busy loop with SIGXCPU") {
        auto st = finish([]() -> asio::awaitable<exit_status> {
            auto ex = co_await asio::this_coro::executor;
            child c = spawn(ex, helper({"busy", "20000"}).rlimit(RLIMIT_CPU, 1, 3));
            co_return co_await c.async_wait(asio::use_awaitable);
        }());
        CHECK(st == exit_status::signaled(SIGXCPU, st.core_dumped()));
    }

    TEST_CASE("rlimits by name; soft above hard and unknown resources are refused before spawning") {
        CHECK(rlimit_resource("nofile") == RLIMIT_NOFILE);
        CHECK(rlimit_resource("RLIMIT_CPU") == RLIMIT_CPU);
        CHECK(rlimit_resource("As") == RLIMIT_AS);
        CHECK_FALSE(rlimit_resource("files"));
        auto core = output_now(helper({"print-rlimit", "CORE"}).rlimit(RLIMIT_CORE, 0, 0));
        CHECK(core.out == "0 0\n");
        asio::io_context ctx;
        spawn_failure f;
        child c = spawn(ctx, helper({"exit", "0"}).rlimit(RLIMIT_NOFILE, 100, 50), f);
        CHECK_FALSE(c.valid());
        CHECK(f.code == errc::invalid_command);
        CHECK(f.detail.find("soft limit above hard") != std::string::npos);
        child d = spawn(ctx, helper({"exit", "0"}).rlimit(999, 1, 1), f);
        CHECK_FALSE(d.valid());
        CHECK(f.detail.find("does not exist") != std::string::npos);
    }

    TEST_CASE("raising a hard limit without privilege fails at stage 'limits' with EPERM") {
        if (::geteuid() == 0) {
            // Root may raise hard limits (CAP_SYS_RESOURCE), but not NOFILE past fs.nr_open.
            asio::io_context ctx;
            spawn_failure f;
            child c =
                spawn(ctx, helper({"exit", "0"}).rlimit(RLIMIT_NOFILE, RLIM_INFINITY, RLIM_INFINITY), f);
            CHECK_FALSE(c.valid());
            CHECK(f.stage == spawn_stage::limits);
            CHECK(f.code == error_code(EPERM, boost::system::system_category()));
            return;
        }
        asio::io_context ctx;
        struct rlimit own {};
        ::getrlimit(RLIMIT_CORE, &own);
        if (own.rlim_max == RLIM_INFINITY) DROVER_SKIP("the hard CORE limit is already unlimited");
        spawn_failure f;
        child c = spawn(ctx, helper({"exit", "0"}).rlimit(RLIMIT_CORE, 0, RLIM_INFINITY), f);
        CHECK_FALSE(c.valid());
        CHECK(f.stage == spawn_stage::limits);
    }

    TEST_CASE("umask is what the child sees; the default is the parent's") {
        CHECK(output_now(helper({"print-umask"}).umask(027)).out == "0027\n");
        mode_t mine = ::umask(022);
        ::umask(mine);
        char buf[8];
        std::snprintf(buf, sizeof buf, "%04o\n", mine);
        CHECK(output_now(helper({"print-umask"})).out == buf);
    }

    TEST_CASE("G4: no_new_privs reaches the child; off by default") {
        if (portable_backend()) {
            asio::io_context ctx;
            spawn_failure f;
            spawn(ctx, helper({"print-nnp"}).no_new_privs(true), f);
            CHECK(f.code == errc::not_supported);
            CHECK(f.detail.find("no_new_privs") != std::string::npos);
            DROVER_SKIP(needs_linux_backend("no_new_privs") << " (refused: " << f.message() << ")");
        }
        CHECK(output_now(helper({"print-nnp"}).no_new_privs(true)).out == "nnp 1\n");
        CHECK(output_now(helper({"print-nnp"})).out == "nnp 0\n");
    }

    TEST_CASE(
        "G1: a hostile argument reaches the child as one exact element; nothing runs; the lint reports it") {
        const std::string hostile = "; touch /tmp/drover-g1-pwned $(id)\nrm -rf x";
        ::unlink("/tmp/drover-g1-pwned");
        command cmd = helper({"echo-args", hostile, "|", "`id`"});
        auto r = output_now(cmd);
        CHECK(r.out ==
              hostile + std::string("\0", 1) + "|" + std::string("\0", 1) + "`id`" + std::string("\0", 1));
        CHECK(::access("/tmp/drover-g1-pwned", F_OK) != 0);
        auto hints = shell_syntax_hints(cmd);
        REQUIRE(hints.size() == 3);
        CHECK(hints[0].index == 2);
        CHECK(hints[0].what.find("$(") != std::string::npos);
        CHECK(hints[1].index == 3);
        CHECK(hints[2].index == 4);
        CHECK(shell_syntax_hints(helper({"echo-args", "plain", "a-b", "x=1"})).empty());
        CHECK(shell_syntax_hints(command::shell("a | b && c $(d)")).empty()); // a shell, on purpose
        CHECK(shell_syntax_hints(command("/usr/bin/bash", {"-c", "x; y"})).empty());
    }

    TEST_CASE("command::shell runs /bin/sh -c, and positional parameters keep data out of the script") {
        auto r = output_now(command::shell("printf '%s|' \"$0\" \"$1\"").arg("sh-name").arg("a b; $(id)"));
        CHECK(r.status.success());
        CHECK(r.out == "sh-name|a b; $(id)|");
    }

} // TEST_SUITE
