// Unit tests of the parent-side preparation: environment and program lookup (A5, B5).
#include "detail/prepare.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <doctest/doctest.h>

using drover::command;
using drover::spawn_failure;
using drover::spawn_stage;
namespace fs = std::filesystem;

namespace {
std::vector<std::string> env_of(const command& c, std::vector<const char*> parent) {
    parent.push_back(nullptr);
    std::vector<std::string> out;
    spawn_failure f;
    REQUIRE(drover::detail::build_environment(c, const_cast<char* const*>(parent.data()), out, f));
    return out;
}

struct temp_dir {
    fs::path path;
    temp_dir() {
        char tmpl[] = "/tmp/drover-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~temp_dir() { fs::remove_all(path); }
};

void write_file(const fs::path& p, const std::string& content, mode_t mode) {
    std::ofstream(p) << content;
    ::chmod(p.c_str(), mode);
}
} // namespace

TEST_SUITE("prepare") {

TEST_CASE("B5: the inherited environment keeps the first of duplicate keys and drops NOTIFY_SOCKET") {
    command c("x");
    auto env = env_of(c, {"FOO=1", "FOO=2", "NOTIFY_SOCKET=/run/x", "BAR=b", "MALFORMED"});
    CHECK(env == std::vector<std::string>{"FOO=1", "BAR=b"});
}

TEST_CASE("B5: a keep-list passes exactly the listed keys, once each") {
    command c("x");
    c.env_keep("FOO").env_keep("PATH");
    auto env = env_of(c, {"LD_PRELOAD=/x.so", "FOO=1", "FOO=2", "SECRET=s", "NOTIFY_SOCKET=/run/x", "PATH=/bin"});
    CHECK(env == std::vector<std::string>{"FOO=1", "PATH=/bin"});
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
