// Unit tests of the parent-side preparation: environment and program lookup (A5, B5).
#include "detail/prepare.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <doctest/doctest.h>

#include "support.hpp"

using drover::command;
using drover::spawn_failure;
using drover::spawn_stage;
using drover::test::temp_dir;
namespace fs = std::filesystem;

namespace {
std::vector<std::string> env_of(const command& c, std::vector<const char*> parent) {
    parent.push_back(nullptr);
    std::vector<std::string> out;
    spawn_failure f;
    REQUIRE(drover::detail::build_environment(c, const_cast<char* const*>(parent.data()), out, f));
    return out;
}

void write_file(const fs::path& p, const std::string& content, mode_t mode) {
    std::ofstream(p) << content;
    ::chmod(p.c_str(), mode);
}
} // namespace

TEST_SUITE("prepare") {

    TEST_CASE("B5: the inherited environment keeps the last of duplicate keys and drops the supervisor's "
              "variables") {
        command c("x");
        auto env = env_of(c, {"FOO=1", "NOTIFY_SOCKET=/run/x", "BAR=b", "MALFORMED", "FOO=2", "LISTEN_FDS=3",
                              "LISTEN_PID=9", "LISTEN_FDNAMES=a", "WATCHDOG_USEC=1", "WATCHDOG_PID=9",
                              "DROVER_LOG=debug", "LD_PRELOAD=/x.so"});
        CHECK(env == std::vector<std::string>{"FOO=2", "BAR=b",
                                              "LD_PRELOAD=/x.so"}); // LD_* is inherited: documented
    }

    TEST_CASE("B5: a keep-list passes exactly the listed keys, once each") {
        command c("x");
        c.env_keep("FOO").env_keep("PATH");
        auto env = env_of(
            c, {"LD_PRELOAD=/x.so", "FOO=1", "FOO=2", "SECRET=s", "NOTIFY_SOCKET=/run/x", "PATH=/bin"});
        CHECK(env == std::vector<std::string>{"FOO=2", "PATH=/bin"});
    }

    TEST_CASE("env_clear starts empty and set/remove apply in call order") {
        command c("x");
        c.env_clear().env("A", "1").env("B", "2").env_remove("A").env("B", "3").env("EMPTY", "");
        auto env = env_of(c, {"A=0", "C=9"});
        CHECK(env == std::vector<std::string>{"B=3", "EMPTY="});
    }

    TEST_CASE("B5: a NUL in a value or a bad key is rejected with the key named") {
        std::vector<std::string> out;
        spawn_failure f;
        char* const none[] = {nullptr};
        command nul("x");
        nul.env("K", std::string("a\0b", 3));
        CHECK_FALSE(drover::detail::build_environment(nul, none, out, f));
        CHECK(f.code == drover::errc::invalid_command);
        CHECK(f.stage == spawn_stage::prepare);
        CHECK(f.detail.find("'K'") != std::string::npos);
        for (std::string bad : {std::string(""), std::string("A=B"), std::string("A\0B", 3)}) {
            command c("x");
            c.env(bad, "v");
            spawn_failure g;
            CHECK_FALSE(drover::detail::build_environment(c, none, out, g));
            CHECK(g.code == drover::errc::invalid_command);
        }
    }

    TEST_CASE("A5: a bare name is never resolved against empty or relative PATH entries") {
        temp_dir d;
        write_file(d.path / "true", "#!/bin/sh\nexit 42\n", 0755);
        auto old = fs::current_path();
        fs::current_path(d.path);
        std::string out;
        spawn_failure f;
        bool ok = drover::detail::resolve_program("true", ":.:bin:/usr/bin", out, f);
        fs::current_path(old);
        REQUIRE(ok);
        CHECK(out == "/usr/bin/true");
    }

    TEST_CASE("A5: a name found nowhere fails with ENOENT at the resolve stage") {
        std::string out;
        spawn_failure f;
        CHECK_FALSE(drover::detail::resolve_program("drover-no-such-program", "/usr/bin:/bin", out, f));
        CHECK(f.code.value() == ENOENT);
        CHECK(f.stage == spawn_stage::resolve);
    }

    TEST_CASE("a name found only as a non-executable file fails with EACCES and names the file") {
        temp_dir d;
        write_file(d.path / "tool", "data", 0644);
        fs::create_directory(d.path / "sub");
        std::string out;
        spawn_failure f;
        CHECK_FALSE(drover::detail::resolve_program("tool", d.path.string(), out, f));
        CHECK(f.code.value() == EACCES);
        CHECK(f.detail.find((d.path / "tool").string()) != std::string::npos);
        spawn_failure g;
        CHECK_FALSE(drover::detail::resolve_program("sub", d.path.string(), out, g));
        CHECK(g.code.value() == EACCES);
    }

    TEST_CASE("a name with a slash is used as written") {
        std::string out;
        spawn_failure f;
        REQUIRE(drover::detail::resolve_program("./x/y", "/usr/bin", out, f));
        CHECK(out == "./x/y");
        CHECK_FALSE(drover::detail::resolve_program("", "/usr/bin", out, f));
        CHECK(f.code == drover::errc::invalid_command);
    }

    TEST_CASE("the search path is the child's PATH, else the parent's") {
        CHECK(drover::detail::search_path_for({"A=1", "PATH=/opt/bin"}) == "/opt/bin");
        ::setenv("PATH", "/usr/bin:/bin", 1);
        CHECK(drover::detail::search_path_for({"A=1"}) == "/usr/bin:/bin");
    }
}

// ---- environment files -------------------------------------------------------------------------

#include "drover/env_file.hpp"

namespace {
using kv = std::vector<std::pair<std::string, std::string>>;
std::string env_file_error_of(std::string_view text) {
    try {
        drover::parse_env_file(text, "f.env");
    } catch (const drover::env_file_error& e) {
        return e.what();
    }
    return "(no error)";
}
} // namespace

TEST_SUITE("prepare") {

    TEST_CASE("env files: the strict dotenv format") {
        auto v = drover::parse_env_file(
            "# comment\n\n  \nexport A=1\nB='$HOME \\n x' # c\nC=\"q\\\"\\n\\t\\\\\\$\"\r\n"
            "D=\nE=a#b\nF=x   # trailing comment\nA=2\n",
            "f.env");
        CHECK(v == kv{{"A", "1"},
                      {"B", "$HOME \\n x"},
                      {"C", "q\"\n\t\\$"},
                      {"D", ""},
                      {"E", "a#b"},
                      {"F", "x"},
                      {"A", "2"}});
        CHECK(drover::parse_env_file("", "f.env").empty());
        CHECK(drover::parse_env_file("X=1", "f.env") == kv{{"X", "1"}}); // no final newline
    }

    TEST_CASE("env files: every error names the file, the line and what to write instead") {
        CHECK(env_file_error_of("A=1\nB = 2\n") ==
              "f.env:2: a space before '=' in 'B': write B=VALUE with no spaces around '='");
        CHECK(env_file_error_of("A=x y\n") ==
              "f.env:1: a space in the unquoted value of 'A': quote the value, as A=\"x y\"");
        CHECK(env_file_error_of("1A=x\n").find("f.env:1: a variable name must start with a letter") == 0);
        CHECK(env_file_error_of("A-B=x\n").find("f.env:1: '-' in the variable name") == 0);
        CHECK(env_file_error_of("A\n").find("f.env:1: 'A' has no '='") == 0);
        CHECK(env_file_error_of("A='x\n").find("no closing single quote") != std::string::npos);
        CHECK(env_file_error_of("A=\"x\n").find("no closing double quote") != std::string::npos);
        CHECK(env_file_error_of("A=\"\\q\"\n").find("unknown escape '\\q'") != std::string::npos);
        CHECK(env_file_error_of("A='x'y\n").find("unexpected 'y'") != std::string::npos);
        CHECK(env_file_error_of("A=it's\n").find("quote the value") != std::string::npos);
        CHECK(env_file_error_of(std::string_view("A=x\0y\n", 6)) == "f.env:1: a NUL byte");
        CHECK(env_file_error_of("A=\x01\n").find("control character \\x01") != std::string::npos);
        CHECK(env_file_error_of("export\n").find("f.env:1:") == 0);
        try { // one exception base: a system_error with a code
            drover::parse_env_file("A B\n", "f.env");
            FAIL("no error");
        } catch (const boost::system::system_error& e) {
            CHECK(e.code() == boost::system::errc::invalid_argument);
            CHECK(std::string(e.what()).find("f.env:1: ") == 0);
        }
    }

    TEST_CASE("env files: read from disk, applied by command::env_file, the last of a key winning") {
        temp_dir d;
        write_file(d.path / "a.env", "A=1\nB=2\nA=3\n", 0644);
        command c("x");
        c.env_clear().env("B", "0").env_file(d.path / "a.env");
        CHECK(env_of(c, {}) == std::vector<std::string>{"B=2", "A=3"}); // a set key moves to the end
        try {
            drover::read_env_file(d.path / "missing.env");
            FAIL("no error");
        } catch (const drover::env_file_error& e) {
            CHECK(e.line() == 0);
            CHECK(e.code() == boost::system::errc::no_such_file_or_directory);
            CHECK(std::string(e.what()) == (d.path / "missing.env").string() + ": No such file or directory");
        }
    }

} // TEST_SUITE

TEST_SUITE("prepare") {

    TEST_CASE("applying many environment operations is linear (a 100 000-line env file)") {
        command c("x");
        for (int i = 0; i < 100000; ++i) c.env("K" + std::to_string(i % 50000), std::to_string(i));
        const auto t0 = std::chrono::steady_clock::now();
        auto env = env_of(c, {"K1=old", "OTHER=1"});
        const auto took = std::chrono::steady_clock::now() - t0;
        CHECK(env.size() == 50001);
        CHECK(env.front() == "OTHER=1");
        CHECK(env.back() == "K49999=99999");
        CHECK(took < std::chrono::seconds(5)); // generous: linear takes milliseconds, quadratic minutes
    }

} // TEST_SUITE
