#include "drover/exit_status.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <sstream>

#include <doctest/doctest.h>
#include <fmt/format.h>

using drover::exit_status;

TEST_SUITE("exit_status") {

    TEST_CASE("an exit code is a success only when it is zero") {
        CHECK(exit_status::exited(0).success());
        CHECK_FALSE(exit_status::exited(3).success());
        CHECK(exit_status::exited(3).code() == 3);
        CHECK(exit_status::exited(3).signal() == 0);
        CHECK(exit_status::exited(3).shell_code() == 3);
    }

    TEST_CASE("a signal death reads like a shell's 128+N and names the signal") {
        auto s = exit_status::signaled(SIGTERM);
        CHECK(s.is_signaled());
        CHECK_FALSE(s.success());
        CHECK(s.code() == -1);
        CHECK(s.signal() == SIGTERM);
        CHECK(s.shell_code() == 143);
        CHECK(s.to_string() == "killed by signal 15 (SIGTERM)");
        CHECK(exit_status::signaled(SIGSEGV, true).to_string() ==
              "killed by signal 11 (SIGSEGV, core dumped)");
    }

    TEST_CASE("an unknown status says why and has no shell code") {
        exit_status s;
        CHECK(s.is_unknown());
        CHECK(s == exit_status::unknown());
        CHECK(s.shell_code() == -1);
        CHECK(s.to_string() == "exit status unavailable (reaped elsewhere)");
    }

    TEST_CASE("raw wait statuses decode to the same values") {
        CHECK(exit_status::from_wait_status(7 << 8) == exit_status::exited(7));
        CHECK(exit_status::from_wait_status(SIGKILL) == exit_status::signaled(SIGKILL));
        CHECK(exit_status::from_wait_status(SIGABRT | 0x80) == exit_status::signaled(SIGABRT, true));
    }

    TEST_CASE("fmt and iostreams print the same text") {
        auto s = exit_status::exited(2);
        CHECK(fmt::format("{}", s) == "exited with code 2");
        CHECK(fmt::format("[{:>20}]", s) == "[  exited with code 2]");
        std::ostringstream os;
        os << s;
        CHECK(os.str() == "exited with code 2");
    }
}
