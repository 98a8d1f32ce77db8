// Test support: run coroutines to completion on an io_context, drive drover-test-child, and
// look at this process's children through /proc.
#pragma once

#include <dirent.h>

#include <cerrno>
#include <chrono>
#include <exception>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <doctest/doctest.h>

#include "detail/cgroup.hpp"
#include "drover/drover.hpp"

namespace drover::test {

namespace asio = boost::asio;
using namespace std::chrono_literals;

/// Calls `f` again while it fails with EINTR: the signal-storm runs (test/main.cpp) interrupt
/// the tests' own blocking calls too, which must not fail a test for drover.
template <typename F>
auto eintr_retry(F f) {
    decltype(f()) r;
    do r = f();
    while (r < 0 && errno == EINTR);
    return r;
}

/// True (with a message saying so) under ThreadSanitizer, where the launchers built on glibc's
/// clone() cannot be tested: libtsan intercepts clone() and does its fork bookkeeping in the
/// child, which under CLONE_VM is the parent's state (see test/meson.build).
inline bool tsan_skips_glibc_clone() {
#if defined(__SANITIZE_THREAD__)
    MESSAGE("skipped under ThreadSanitizer: its clone() interceptor assumes a fork-like clone");
    return true;
#else
    return false;
#endif
}

/// The absolute path of `name` on PATH, or empty.
inline std::string on_path(const std::string& name) {
    const char* path = ::getenv("PATH");
    std::string dirs = path ? path : "/usr/bin:/bin";
    std::size_t start = 0;
    while (start <= dirs.size()) {
        auto end = dirs.find(':', start);
        if (end == std::string::npos) end = dirs.size();
        std::string candidate = dirs.substr(start, end - start) + "/" + name;
        if (end > start && ::access(candidate.c_str(), X_OK) == 0) return candidate;
        start = end + 1;
    }
    return {};
}

/// The scripted helper program (see test/child/drover_test_child.cpp for its operations).
inline const char* helper_path() { return DROVER_TEST_CHILD; }

/// A command running drover-test-child with the given script.
inline command helper(std::vector<std::string> script) {
    return command(helper_path(), std::move(script));
}

/// Runs `aw` on `ctx` until it completes; rethrows what it throws; fails the test (instead of
/// hanging) if it has not completed within `limit`.
template <typename T>
T run(asio::io_context& ctx, asio::awaitable<T> aw, std::chrono::steady_clock::duration limit = 60s) {
    std::optional<T> result;
    std::exception_ptr error;
    bool done = false;
    asio::co_spawn(ctx, std::move(aw), [&](std::exception_ptr e, T v) {
        done = true;
        error = e;
        if (!e) result.emplace(std::move(v));
    });
    ctx.restart();
    ctx.run_for(limit);
    if (!done) FAIL("the operation did not complete in time");
    if (error) std::rethrow_exception(error);
    return std::move(*result);
}

inline void run(asio::io_context& ctx, asio::awaitable<void> aw,
                std::chrono::steady_clock::duration limit = 60s) {
    auto wrapped = [](asio::awaitable<void> a) -> asio::awaitable<int> {
        co_await std::move(a);
        co_return 0;
    };
    run<int>(ctx, wrapped(std::move(aw)), limit);
}

/// Reads a pipe until EOF.
inline asio::awaitable<std::string> read_all(asio::posix::stream_descriptor& p) {
    std::string out;
    char buf[65536];
    for (;;) {
        auto [ec, n] = co_await p.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
        out.append(buf, n);
        if (ec) break;
    }
    co_return out;
}

struct output {
    exit_status status;
    std::string out;
};

/// Spawns `cmd` with stdout on a pipe, reads it to EOF and waits for the process.
inline asio::awaitable<output> output_of(command cmd) {
    auto ex = co_await asio::this_coro::executor;
    cmd.std_out(stdio::pipe());
    child c = spawn(ex, cmd);
    std::string out = co_await read_all(c.std_out());
    exit_status st = co_await c.async_wait(asio::use_awaitable);
    co_return output{st, std::move(out)};
}

/// Convenience: output_of on a private io_context.
inline output output_now(command cmd) {
    asio::io_context ctx;
    return run(ctx, output_of(std::move(cmd)));
}

/// The direct children of this process (all threads) and their state letter from /proc.
inline std::vector<std::pair<pid_t, char>> my_children() {
    std::vector<std::pair<pid_t, char>> kids;
    DIR* d = ::opendir("/proc/self/task");
    if (!d) return kids;
    while (auto* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        std::ifstream f(std::string("/proc/self/task/") + e->d_name + "/children");
        pid_t pid;
        while (f >> pid) {
            std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
            std::string line;
            std::getline(st, line);
            auto rp = line.rfind(')');
            char state = rp != std::string::npos && rp + 2 < line.size() ? line[rp + 2] : '?';
            kids.emplace_back(pid, state);
        }
    }
    ::closedir(d);
    return kids;
}

inline int zombie_count() {
    int n = 0;
    for (auto& [pid, state] : my_children())
        if (state == 'Z') ++n;
    return n;
}

inline std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

/// How many live (not zombie) processes have a command line (arguments joined by spaces) for
/// which `match` is true.
template <typename Match>
int live_processes_where(Match match) {
    int n = 0;
    DIR* d = ::opendir("/proc");
    if (!d) return 0;
    while (auto* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::string cl = read_file("/proc/" + name + "/cmdline");
        for (auto& ch : cl)
            if (ch == '\0') ch = ' ';
        if (!cl.empty() && cl.back() == ' ') cl.pop_back();
        std::string stat = read_file("/proc/" + name + "/stat");
        auto rp = stat.rfind(')');
        if (rp != std::string::npos && rp + 2 < stat.size() && stat[rp + 2] == 'Z') continue;
        if (match(cl)) ++n;
    }
    ::closedir(d);
    return n;
}

/// Runs the drover binary with `args` (then `-- helper script...` when a script is given),
/// capturing both streams, with a 60 s timeout.
inline run_result drover_cli(std::vector<std::string> args, std::vector<std::string> script = {}) {
    if (!script.empty()) {
        args.push_back("--");
        args.push_back(helper_path());
        args.insert(args.end(), script.begin(), script.end());
    }
    asio::io_context ctx;
    return run(ctx, [](std::vector<std::string> a) -> asio::awaitable<run_result> {
        auto ex = co_await asio::this_coro::executor;
        run_options o;
        o.timeout = 60s;
        co_return co_await async_run(ex, command(DROVER_BIN, std::move(a)), o, asio::use_awaitable);
    }(std::move(args)));
}

/// Whether drover's cgroup can hand the cgroup v2 `controller` to its leaves: the controller is
/// offered to drover's cgroup, and either that cgroup already passes it down or it is the
/// hierarchy's root (any other cgroup holding drover itself may not enable controllers: the
/// no-internal-processes rule). On the project's hybrid hosts it cannot.
inline bool controller_available(const std::string& controller) {
    const auto& p = detail::probe_cgroup();
    if (!p.usable) return false;
    auto listed = [&](const std::string& file) {
        std::istringstream in(read_file(file));
        std::string w;
        while (in >> w)
            if (w == controller) return true;
        return false;
    };
    if (!listed(p.own + "/cgroup.controllers")) return false;
    return p.own == p.mount || listed(p.own + "/cgroup.subtree_control");
}

/// Whether process `pid` has a handler for `sig` (the SigCgt mask of /proc/PID/status). A test
/// that signals a helper which traps the signal waits for this first: a sanitizer-built helper on
/// a loaded machine can take long to get to its `sigaction`.
inline bool catches_signal(pid_t pid, int sig) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(f, line);)
        if (line.rfind("SigCgt:", 0) == 0) return (std::stoull(line.substr(7), nullptr, 16) >> (sig - 1)) & 1;
    return false;
}

} // namespace drover::test
