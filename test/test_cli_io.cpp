// `drover run`'s output options: --capture, --max-output, --json, --label (E4), --pty,
// --stdin/--stdout/--stderr; driven through the real binary, captured with async_run.
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "drover/run.hpp"
#include "support.hpp"

using namespace drover;
using namespace drover::test;
using namespace std::chrono_literals;

namespace {

int code(const run_result& r) {
    return r.status.code();
}

} // namespace

TEST_SUITE("cli") {

    TEST_CASE("drover run --capture prints both streams after the run, head and tail past --max-output") {
        auto r = drover_cli({"run", "--capture", "--max-output", "100"},
                            {"write-stdout", "1000", "write-line-stderr", "oops", "exit", "3"});
        CHECK(code(r) == 3); // the child's status passes through
        CHECK(r.out.head.find("[drover: 900 bytes truncated]") != std::string::npos);
        CHECK(r.out.head.rfind("abcdefghijklmnopqrstuvwxyz0123456789\nabcdefghijklm\n[drover:", 0) == 0);
        CHECK(r.err.head.rfind("oops\n", 0) == 0);
        CHECK(r.err.head.find("1000 bytes, 100 kept") != std::string::npos); // the warning, after the output
    }

    TEST_CASE(
        "drover run --json: one record with status, duration, rusage and both streams, escaped as JSON") {
        std::string hostile = "bad\xff\x1b[2J\"\\";
        auto r = drover_cli({"run", "--json", "--max-output", "64"},
                            {"write-stdout", "100", "write-line-stderr", hostile, "busy", "50", "exit", "7"});
        CHECK(code(r) == 7);
        boost::json::value v = boost::json::parse(r.out.head); // throws on invalid JSON
        auto& j = v.as_object();
        CHECK(j.at("exit_code").as_int64() == 7);
        CHECK(j.at("status").at("code").as_int64() == 7);
        CHECK(j.at("status").at("exited").as_bool());
        CHECK(j.at("timed_out").as_bool() == false);
        CHECK(j.at("duration_us").as_int64() >= 50000);
        // busy spins 50 ms of wall time; on a loaded machine it gets less CPU than that.
        CHECK(j.at("rusage").at("user_cpu_us").as_int64() + j.at("rusage").at("system_cpu_us").as_int64() >=
              5000);
        auto& out = j.at("stdout").as_object();
        CHECK(out.at("bytes_total").as_int64() == 100);
        CHECK(out.at("bytes_dropped").as_int64() == 36);
        CHECK(out.at("truncated").as_bool());
        CHECK(j.at("output_limit_exceeded").as_bool());
        auto& err = j.at("stderr").as_object();
        CHECK(err.at("utf8").as_bool() == false);
        CHECK(err.at("text").as_string() == "bad\xEF\xBF\xBD\x1b[2J\"\\\n");
        CHECK(err.at("base64").as_string() == "YmFk/xtbMkoiXAo=");
        // The record itself is one line and carries no raw control bytes.
        CHECK(r.out.head.find('\x1b') == std::string::npos);
        CHECK(r.out.head.find('\n') == r.out.head.size() - 1);
    }

    TEST_CASE("drover run --json --timeout: the record says timed_out and exit_code 124") {
        auto r = drover_cli({"run", "--json", "--timeout", "300ms", "--grace", "1s"},
                            {"write-line", "started", "sleep", "30000"});
        CHECK(code(r) == 124);
        auto v = boost::json::parse(r.out.head);
        CHECK(v.at("timed_out").as_bool());
        CHECK(v.at("exit_code").as_int64() == 124);
        CHECK(v.at("status").at("signal_name").as_string() == "SIGTERM");
        CHECK(v.at("stdout").at("text").as_string() == "started\n");
    }

    TEST_CASE("E1: drover run --capture does not wait for a grandchild holding stdout") {
        auto t0 = std::chrono::steady_clock::now();
        auto r = drover_cli(
            {"run", "--capture", "--drain-grace", "300ms", "--", "/bin/sh", "-c", "sleep 32 & echo hi"});
        CHECK(std::chrono::steady_clock::now() - t0 < 10s);
        CHECK(code(r) == 0);
        CHECK(r.out.head == "hi\n");
        CHECK(r.err.head.find("stayed open") != std::string::npos);
    }

    TEST_CASE("E4: --label escapes hostile child output; every line is tagged, no raw control bytes") {
        std::string hostile = "ok\n\x1b[2J\x1b]0;pwn\x07\r[drover] svc: healthy\xe2\x80\xae";
        auto r = drover_cli({"run", "--label", "svc"},
                            {"write-line", hostile, "write-line-stderr", "on\x1b[31mstderr", "fd-write", "1",
                             "\xc2\x9b"
                             "c1"});
        CHECK(code(r) == 0);
        const std::string& log = r.out.head;
        CHECK(log.find("svc | ok\n") != std::string::npos);
        CHECK(log.find("svc | \\x1B[2J\\x1B]0;pwn\\x07\\r[drover] svc: healthy\\u{202E}\n") !=
              std::string::npos);
        CHECK(log.find("svc ! on\\x1B[31mstderr\n") != std::string::npos);
        CHECK(log.find("svc | \\u{009B}c1\n") != std::string::npos);
        // Nothing raw: no C0 control but the newline ending each record, no C1, no bidi override.
        for (unsigned char ch : log)
            CHECK_MESSAGE((ch >= 0x20 || ch == '\n'), "raw control byte " << int(ch));
        CHECK(log.find("\xe2\x80\xae") == std::string::npos);
        CHECK(log.find("\xc2\x9b") == std::string::npos);
        // Each line of the log is a record that starts with the tag (the forged one is inside).
        std::size_t start = 0;
        while (start < log.size()) {
            auto nl = log.find('\n', start);
            std::string rec = log.substr(start, nl - start);
            CHECK((rec.rfind("svc | ", 0) == 0 || rec.rfind("svc ! ", 0) == 0));
            start = nl + 1;
        }
    }

    TEST_CASE("drover run --pty: the child sees a terminal of --pty-size; its output is relayed to the end") {
        auto r = drover_cli({"run", "--pty", "--pty-size", "33x99"},
                            {"print-tty", "print-winsize", "write-stdout", "5000", "exit", "4"});
        CHECK(code(r) == 4);
        CHECK(r.out.head.rfind("0:1 1:1 2:1 ctty:1\r\nwinsize 33 99\r\n", 0) == 0);
        // All 5000 bytes arrived: 135 full lines of 37 bytes (+1 for the terminal's \r each) and 5
        // bytes without a newline.
        CHECK(r.out.total_bytes == 20 + 15 + 5000 + 5000 / 37);
    }

    TEST_CASE_FIXTURE(io_fixture, "drover run --pty relays drover's stdin to the child's terminal") {
        auto r = finish([]() -> asio::awaitable<run_result> {
            auto ex = co_await asio::this_coro::executor;
            run_options o;
            o.input = "typed line\n";
            o.timeout = 30s;
            // (g++ 12: no braced list of literals in an expression holding co_await.)
            std::vector<std::string> args = {"run", "--pty", "--", helper_path(), "head-lines", "1"};
            command cmd(drover_bin(), std::move(args));
            co_return co_await async_run(ex, std::move(cmd), o, asio::use_awaitable);
        }());
        CHECK(r.status.code() == 0);
        CHECK(r.out.head == "typed line\r\ntyped line\r\n"); // the terminal's echo, then the child's copy
    }

    TEST_CASE(
        "drover run --pty with stdin on a socket (ssh, socket activation) relays it and ends promptly") {
        int sv[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        REQUIRE(::write(sv[0], "via socket\n", 11) == 11);
        asio::io_context ctx;
        auto t0 = std::chrono::steady_clock::now();
        auto r = run(ctx, [](int in) -> asio::awaitable<run_result> {
            auto ex = co_await asio::this_coro::executor;
            std::vector<std::string> args = {"run", "--pty", "--", helper_path(), "head-lines", "1"};
            command cmd(drover_bin(), std::move(args));
            cmd.std_in(stdio::fd(in));
            run_options o;
            o.timeout = 30s;
            co_return co_await async_run(ex, std::move(cmd), o, asio::use_awaitable);
        }(sv[1]));
        ::close(sv[0]);
        ::close(sv[1]);
        CHECK(std::chrono::steady_clock::now() - t0 < 1900ms); // no blocking read, no 2 s idle drain wait
        CHECK(r.status.code() == 0);
        CHECK(r.out.head == "via socket\r\nvia socket\r\n");
    }

    TEST_CASE("drover run --stdin/--stdout/--stderr: null, files, stderr to stdout") {
        char path[] = "/tmp/drover-cli-out-XXXXXX";
        int fd = ::mkstemp(path);
        REQUIRE(fd >= 0);
        ::close(fd);
        auto r = drover_cli({"run", "--stdout", path, "--stderr", "stdout", "--stdin", "null"},
                            {"write-line", "one", "write-line-stderr", "two", "read-stdin"});
        CHECK(code(r) == 0);
        CHECK(read_file(path) == "one\ntwo\nread 0 bytes\n");
        auto n = drover_cli({"run", "--stdout", "null"}, {"write-line", "gone"});
        CHECK(n.out.total_bytes == 0);
        ::unlink(path);
    }

    TEST_CASE("drover run --rlimit, --umask, --no-new-privs shape the child") {
        if (portable_backend()) { // no_new_privs is Linux's: refused by name; the rest applies
            auto refused = drover_cli({"run", "--no-new-privs"}, {"exit", "0"});
            CHECK(code(refused) == 125);
            CHECK(refused.err.text().find("no_new_privs is not supported by the portable backend") !=
                  std::string::npos);
            auto r = drover_cli({"run", "--rlimit", "core=0", "--rlimit", "nofile=256:512", "--umask", "077"},
                                {"print-rlimit", "CORE", "print-rlimit", "NOFILE", "print-umask"});
            CHECK(code(r) == 0);
            CHECK(r.out.head == "0 0\n256 512\n0077\n");
            return;
        }
        auto r = drover_cli(
            {"run", "--rlimit", "core=0", "--rlimit", "nofile=256:512", "--umask", "077", "--no-new-privs"},
            {"print-rlimit", "CORE", "print-rlimit", "NOFILE", "print-umask", "print-nnp"});
        CHECK(code(r) == 0);
        CHECK(r.out.head == "0 0\n256 512\n0077\nnnp 1\n");
    }

    TEST_CASE("drover run warns about shell syntax that no shell will see, and says how to use one") {
        auto r = drover_cli({"run"}, {"echo-args", "a", "|", "$(id)"});
        CHECK(code(r) == 0);
        CHECK(r.err.head.find("argument 3 ('|') looks like a pipe") != std::string::npos);
        CHECK(r.err.head.find("argument 4 ('$(id)') looks like command substitution") != std::string::npos);
        CHECK(r.err.head.find("sh -c") != std::string::npos);
        // A shell named on purpose gets no warning.
        auto sh = drover_cli({"run", "--", "/bin/sh", "-c", "echo a | cat"});
        CHECK(sh.out.head == "a\n");
        CHECK(sh.err.head.find("warning") == std::string::npos);
    }

    TEST_CASE("drover run: output and limit options are validated before anything starts") {
        for (auto args : std::vector<std::vector<std::string>>{
                 {"run", "--capture", "--max-output", "lots"},
                 {"run", "--capture", "--on-overflow", "explode"},
                 {"run", "--max-output", "1M"},
                 {"run", "--pty", "--capture"},
                 {"run", "--pty", "--label", "x"},
                 {"run", "--pty-size", "24x80"},
                 {"run", "--pty", "--pty-size", "24by80"},
                 {"run", "--pty", "--stdin", "null"},
                 {"run", "--capture", "--stdout", "null"},
                 {"run", "--stdout", "stdout"},
                 {"run", "--capture", "--drain-grace", "soon"},
                 {"run", "--drain-grace", "1s"},
                 {"run", "--rlimit", "files=10"},
                 {"run", "--rlimit", "nofile=ten"},
                 {"run", "--rlimit", "nofile=100:50"},
                 {"run", "--rlimit", "nofile"},
                 {"run", "--umask", "999"},
             }) {
            CAPTURE(args);
            auto r = drover_cli(args, {"touch", "/tmp/drover-must-not-exist"});
            CHECK(code(r) == 125);
            CHECK(r.err.head.find("drover: error: run:") != std::string::npos);
        }
        CHECK(::access("/tmp/drover-must-not-exist", F_OK) != 0);
    }

} // TEST_SUITE
