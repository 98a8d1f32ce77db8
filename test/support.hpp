// Test support: run coroutines to completion on an io_context, drive drover-test-child, and
// look at this process's children through /proc; counted skips and the conditions that call
// for them; temporary directories and copies of the built programs other users can run.
#pragma once

#include <dirent.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
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

// ---- counted skips -----------------------------------------------------------------------------
// doctest 2.4 has no runtime skip: a case that returned early would count as passed. DROVER_SKIP
// records the running case and the reason (test/main.cpp lists them after the run as
// "[drover] skip: <case>: <reason>" and counts them apart from the passed ones), prints the
// reason, and returns from the test case.

/// Records that the running test case is skipped for `reason` and prints it. Defined in
/// test/main.cpp. Called directly only where a return cannot leave the case (a coroutine);
/// the case must then end without checking more.
void note_skip(const std::string& reason);

/// Skips the running test case: records it, prints `reason` (anything `<<` can write), returns.
#define DROVER_SKIP(reason)                                                                                  \
    do {                                                                                                     \
        std::ostringstream drover_skip_reason_;                                                              \
        drover_skip_reason_ << reason;                                                                       \
        ::drover::test::note_skip(drover_skip_reason_.str());                                                \
        return;                                                                                              \
    } while (false)

/// Skips the running test case if `why` (a skip condition below) names something missing.
#define DROVER_SKIP_IF(why)                                                                                  \
    do {                                                                                                     \
        if (std::string drover_skip_why_ = (why); !drover_skip_why_.empty()) DROVER_SKIP(drover_skip_why_);  \
    } while (false)

/// Calls `f` again while it fails with EINTR: the signal-storm runs (test/main.cpp) interrupt
/// the tests' own blocking calls too, which must not fail a test for drover.
template <typename F>
auto eintr_retry(F f) {
    decltype(f()) r;
    do r = f();
    while (r < 0 && errno == EINTR);
    return r;
}

/// True (with a message saying so; the case goes on) under ThreadSanitizer, where the launchers
/// built on glibc's clone() cannot be tested: libtsan intercepts clone() and does its fork
/// bookkeeping in the child, which under CLONE_VM is the parent's state (see test/meson.build).
/// For a whole case, DROVER_SKIP_IF(needs_no_tsan_clone()).
inline bool tsan_skips_glibc_clone() {
#if defined(__SANITIZE_THREAD__)
    MESSAGE("partly skipped under ThreadSanitizer: its clone() interceptor assumes a fork-like clone");
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

// ---- the drover program under test ------------------------------------------------------------

/// The drover program the cli, proc and up cases run: the build's (DROVER_BIN), or, in suite
/// portable, the one linked to the shared libraries (tools/drover/portable), named by
/// DROVER_TEST_BIN, which loads lib/portable's libdrover.so (test/meson.build).
inline const char* drover_bin() {
    static const char* const p = [] {
        const char* e = std::getenv("DROVER_TEST_BIN");
        return e != nullptr && *e != '\0' ? e : DROVER_BIN;
    }();
    return p;
}

/// Whether drover_bin() is a static PIE (option program_link): the portable run's never is.
inline bool drover_bin_static() {
    const char* e = std::getenv("DROVER_TEST_BIN");
    return DROVER_PROGRAM_STATIC && (e == nullptr || *e == '\0');
}

// ---- skip conditions: each returns what this machine lacks for the check, or "" ---------------

inline bool has_nobody() {
    struct passwd* pw = ::getpwnam("nobody");
    return pw != nullptr && pw->pw_uid == 65534;
}

inline std::string needs_root() {
    return ::geteuid() == 0 ? "" : "needs root";
}

/// Root, to become another user, and that user: 'nobody' with uid 65534.
inline std::string needs_root_and_nobody() {
    return ::geteuid() == 0 && has_nobody() ? "" : "needs root and a 'nobody' user with uid 65534";
}

/// The Linux backend (backend_kind::linux_native) for `feature`: on the portable backend (the
/// suite's second run, lib/portable) the reason names the feature that backend lacks.
inline std::string needs_linux_backend(const std::string& feature) {
    return drover::backend() == drover::backend_kind::linux_native
               ? ""
               : feature + ": not on the portable backend (Linux backend only)";
}

inline bool portable_backend() {
    return drover::backend() == drover::backend_kind::portable;
}

/// A usable cgroup v2 hierarchy for drover's leaves (and the Linux backend, which uses them).
inline std::string needs_cgroup_v2() {
    if (auto why = needs_linux_backend("cgroups"); !why.empty()) return why;
    const auto& p = detail::probe_cgroup();
    return p.usable ? "" : "no usable cgroup v2: " + p.why_not;
}

/// The glibc clone() launchers: not under ThreadSanitizer, whose clone() interceptor does its
/// fork bookkeeping in the child, which under CLONE_VM is the parent's state (see test/meson.build).
inline std::string needs_no_tsan_clone() {
#if defined(__SANITIZE_THREAD__)
    return "ThreadSanitizer: its clone() interceptor assumes a fork-like clone";
#else
    return "";
#endif
}

/// The scripted helper program (see test/child/drover_test_child.cpp for its operations).
inline const char* helper_path() {
    return DROVER_TEST_CHILD;
}

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

/// strace installed and allowed to trace (ptrace is refused in some containers).
inline std::string needs_strace() {
    const std::string strace = on_path("strace");
    if (strace.empty()) return "strace is not installed";
    if (output_now(command(strace, {"-o", "/dev/null", "true"}).std_err(stdio::null())).status !=
        exit_status::exited(0))
        return "strace cannot trace here (ptrace refused)";
    return "";
}

/// A directory under /tmp, removed with everything in it when this goes.
struct temp_dir {
    std::filesystem::path path;
    temp_dir() {
        char tmpl[] = "/tmp/drover-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

/// The number of this process's open descriptors.
inline int open_fd_count() {
    int n = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
    return n;
}

/// Polls `pred` every 10 ms until it holds or `limit` has passed; its last answer.
inline bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit = 5000ms) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
        if (pred()) return true;
        std::this_thread::sleep_for(10ms);
    }
    return pred();
}

/// A token unique to this test process, put into the command lines of processes looked for.
inline const std::string& run_tag() {
    static const std::string t = std::to_string(::getpid() % 100000);
    return t;
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

/// The parent pid in a /proc/PID/stat text; 0 when it cannot be read.
inline pid_t ppid_of_stat(const std::string& stat) {
    auto rp = stat.rfind(')');
    if (rp == std::string::npos || rp + 4 >= stat.size()) return 0;
    return static_cast<pid_t>(std::atol(stat.c_str() + rp + 4)); // ") S PPID"
}

/// Whether `pid` descends from this test process, or from no process but init and subreapers
/// that are not another test's: an orphan counts (a leak is ours to find), another test
/// binary's live children do not (meson runs suites side by side).
inline bool ours_or_orphan(pid_t pid) {
    const pid_t self = ::getpid();
    for (int depth = 0; depth < 64 && pid > 1; ++depth) {
        const pid_t parent = ppid_of_stat(read_file("/proc/" + std::to_string(pid) + "/stat"));
        if (parent == self) return true;
        if (parent <= 1) return true; // re-parented to init: an orphan
        const std::string exe = read_file("/proc/" + std::to_string(parent) + "/cmdline");
        if (exe.find("/test/test-") != std::string::npos) return false; // another test binary's
        pid = parent;
    }
    return true;
}

/// How many live (not zombie) processes have a command line (arguments joined by spaces) for
/// which `match` is true. With `only_ours`, those of another test binary running at the same
/// time are left out (ours_or_orphan).
template <typename Match>
int live_processes_where(Match match, bool only_ours = false) {
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
        if (!match(cl)) continue;
        if (only_ours && !ours_or_orphan(static_cast<pid_t>(std::atol(name.c_str())))) continue;
        ++n;
    }
    ::closedir(d);
    return n;
}

/// Live (not zombie) `sleep` processes other than this one whose command line (arguments joined
/// by spaces) contains `needle`: the shells that started them carry the needle in their script
/// too, and do not count.
inline std::vector<pid_t> sleepers_with(const std::string& needle) {
    std::vector<pid_t> out;
    const std::string self = std::to_string(::getpid());
    DIR* d = ::opendir("/proc");
    if (!d) return out;
    while (auto* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos || name == self)
            continue;
        std::string cl = read_file("/proc/" + name + "/cmdline");
        for (auto& ch : cl)
            if (ch == '\0') ch = ' ';
        if (cl.rfind("sleep ", 0) != 0 || cl.find(needle) == std::string::npos) continue;
        std::string stat = read_file("/proc/" + name + "/stat");
        auto rp = stat.rfind(')');
        if (rp == std::string::npos || rp + 2 >= stat.size() || stat[rp + 2] == 'Z') continue;
        out.push_back(static_cast<pid_t>(std::stol(name)));
    }
    ::closedir(d);
    return out;
}

/// Runs the drover binary with `args` (then `-- helper script...` when a script is given),
/// capturing both streams, with a 60 s timeout; `env` adds (or replaces) variables of drover's.
inline run_result drover_cli(std::vector<std::string> args, std::vector<std::string> script = {},
                             std::vector<std::pair<std::string, std::string>> env = {}) {
    if (!script.empty()) {
        args.push_back("--");
        args.push_back(helper_path());
        args.insert(args.end(), script.begin(), script.end());
    }
    command c(drover_bin(), std::move(args));
    for (auto& [name, value] : env) c.env(name, value);
    asio::io_context ctx;
    return run(ctx, [](command c) -> asio::awaitable<run_result> {
        auto ex = co_await asio::this_coro::executor;
        run_options o;
        o.timeout = 60s;
        co_return co_await async_run(ex, std::move(c), o, asio::use_awaitable);
    }(std::move(c)));
}

// ---- programs other users can run --------------------------------------------------------------
// A case that runs a child as another user (nobody, a fresh uid) must not exec it out of the
// build directory: a clone in a 0700 directory leaves it unreachable to them. Such cases run
// copies, made once per test process in a fresh directory under /tmp (mode 0755) and removed
// when the process that made them exits.

/// Copies `built` (a file in the build directory) to the same place below the shared directory,
/// so that $ORIGIN-relative run paths still find the build's libraries copied beside it.
inline std::string copy_for_others(const std::string& built) {
    namespace fs = std::filesystem;
    struct shared_dir {
        fs::path path;
        pid_t owner = ::getpid();
        shared_dir() {
            char tmpl[] = "/tmp/drover-test-bin-XXXXXX";
            if (::mkdtemp(tmpl) == nullptr || ::chmod(tmpl, 0755) != 0) return;
            path = tmpl;
            // The build's shared libraries (libdrover.so, lib/http/libdrover-http.so and their
            // version links, as files).
            const fs::path lib = fs::path(DROVER_LIB).parent_path();
            for (const fs::path& dir : {lib, lib / "http"}) {
                std::error_code ec;
                for (auto& e : fs::directory_iterator(dir, ec)) {
                    const std::string name = e.path().filename().string();
                    if (name.rfind("libdrover.so", 0) == 0 || name.rfind("libdrover-http.so", 0) == 0)
                        copy(e.path());
                }
            }
            // Suite portable's drover (drover_bin) finds lib/portable's libdrover.so through
            // LD_LIBRARY_PATH, which another user may not be able to read: its copies go where
            // the copied programs' run path looks, in place of the Linux backend's.
            const char* test_bin = std::getenv("DROVER_TEST_BIN");
            if (test_bin != nullptr && *test_bin != '\0') {
                std::error_code ec;
                for (auto& e : fs::directory_iterator(lib / "portable", ec)) {
                    const std::string name = e.path().filename().string();
                    if (name.rfind("libdrover.so", 0) == 0) copy(e.path(), fs::path("lib") / name);
                }
            }
        }
        ~shared_dir() {
            std::error_code ec;
            if (!path.empty() && ::getpid() == owner) fs::remove_all(path, ec); // not in a forked child
        }
        /// Copies `from` to `rel` below the directory (default: where it is below the build root).
        std::string copy(const fs::path& from, fs::path rel = {}) {
            // Lexically: fs::relative would resolve libdrover.so.0 to the file it links to.
            if (rel.empty())
                rel = from.lexically_normal().lexically_relative(
                    fs::path(DROVER_BUILD_ROOT).lexically_normal());
            if (rel.empty() || *rel.begin() == "..") rel = from.filename();
            const fs::path to = path / rel;
            std::error_code ec;
            fs::create_directories(to.parent_path(), ec);
            for (fs::path d = to.parent_path(); d != path; d = d.parent_path()) ::chmod(d.c_str(), 0755);
            fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
            if (ec || ::chmod(to.c_str(), 0755) != 0) return "";
            return to.string();
        }
    };
    static shared_dir dir;
    REQUIRE_MESSAGE(!dir.path.empty(), "cannot make a directory under /tmp for copies of the built programs");
    std::string to = dir.copy(built);
    REQUIRE_MESSAGE(!to.empty(), "cannot copy " << built << " under " << dir.path);
    return to;
}

/// drover-test-child where every user can run it.
inline const std::string& public_helper_path() {
    static const std::string p = copy_for_others(DROVER_TEST_CHILD);
    return p;
}

/// The drover binary where every user can run it (with the build's libdrover.so beside it).
inline const std::string& public_drover_path() {
    static const std::string p = copy_for_others(drover_bin());
    return p;
}

/// A command running the public copy of drover-test-child with the given script.
inline command public_helper(std::vector<std::string> script) {
    return command(public_helper_path(), std::move(script));
}

// ---- the io_context fixture ----------------------------------------------------------------------

/// One io_context per test case: `TEST_CASE_FIXTURE(io_fixture, "...")` gives the body `ctx`.
struct io_fixture {
    asio::io_context ctx;

    /// Runs `aw` on ctx to completion (see run()).
    template <typename T>
    T finish(asio::awaitable<T> aw, std::chrono::steady_clock::duration limit = 60s) {
        return run(ctx, std::move(aw), limit);
    }
    void finish(asio::awaitable<void> aw, std::chrono::steady_clock::duration limit = 60s) {
        run(ctx, std::move(aw), limit);
    }
    /// Runs ctx until it has no more work (after a previous run stopped it).
    void drain() {
        ctx.restart();
        ctx.run();
    }
};

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
