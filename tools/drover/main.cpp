// drover: the command-line program. `drover run` runs one command done right.
//
// Exit status of `drover run` (see docs/cli.md): the child's own code; 128+N when the child was
// killed by signal N; 124 when --timeout expired; 125 when drover itself failed (bad option,
// spawn setup failed); 126 when the program exists but cannot be executed; 127 when it cannot
// be found.
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <variant>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "drover/drover.hpp"
#include "command_line.hpp"
#include "inspect.hpp"
#include "name_services.hpp"
#include "up.hpp"
#include "parse.hpp"

namespace asio = boost::asio;

namespace {

constexpr int exit_timed_out = 124;
using drover::cli::exit_drover_failed;
constexpr int exit_cannot_execute = 126;
constexpr int exit_not_found = 127;

/// The signals drover run handles (drover::cli::handled_signals), as a set. The child starts
/// with an empty mask and default dispositions.
sigset_t handled_set() {
    sigset_t set;
    sigemptyset(&set);
    for (int s : drover::cli::handled_signals) sigaddset(&set, s);
    return set;
}

/// Writes all of `data` to `fd`, blocking (drover's own stdout/stderr).
bool write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) { // someone made it non-blocking: wait for room
                fd_set w;
                FD_ZERO(&w);
                FD_SET(fd, &w);
                ::select(fd + 1, nullptr, &w, nullptr, nullptr);
                continue;
            }
            return false;
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

std::string base64(std::string_view in) {
    static constexpr char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= in.size(); i += 3) {
        std::uint32_t v = (static_cast<unsigned char>(in[i]) << 16) |
                          (static_cast<unsigned char>(in[i + 1]) << 8) |
                          static_cast<unsigned char>(in[i + 2]);
        out += tbl[(v >> 18) & 63];
        out += tbl[(v >> 12) & 63];
        out += tbl[(v >> 6) & 63];
        out += tbl[v & 63];
    }
    if (std::size_t rest = in.size() - i) {
        std::uint32_t v = static_cast<unsigned char>(in[i]) << 16;
        if (rest == 2) v |= static_cast<unsigned char>(in[i + 1]) << 8;
        out += tbl[(v >> 18) & 63];
        out += tbl[(v >> 12) & 63];
        out += rest == 2 ? tbl[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

boost::json::object stream_json(const drover::captured_output& c) {
    boost::json::object o;
    std::string text = c.text();
    bool replaced = false;
    o["text"] = drover::to_valid_utf8(text, &replaced);
    o["utf8"] = !replaced;
    if (replaced) o["base64"] = base64(text); // the exact bytes, when "text" had to replace some
    o["bytes_total"] = c.total_bytes;
    o["bytes_dropped"] = c.dropped_bytes();
    o["truncated"] = c.truncated();
    return o;
}

/// Whole microseconds: JSON readers get integers (Boost.JSON writes doubles as 4.9E1).
std::int64_t micros(std::chrono::nanoseconds d) {
    return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

/// The JSON record of `drover run --json`: one object, one line.
std::string run_json(const std::vector<std::string>& argv, const drover::run_result& r, int exit_code,
                     const drover::child& c) {
    boost::json::object j;
    boost::json::array a;
    for (const auto& s : argv) a.emplace_back(drover::to_valid_utf8(s));
    j["argv"] = std::move(a);
    j["pid"] = r.pid;
    boost::json::object st;
    if (r.status.is_exited()) {
        st["exited"] = true;
        st["code"] = r.status.code();
    } else if (r.status.is_signaled()) {
        st["exited"] = false;
        st["signal"] = r.status.signal();
        const char* name = sigabbrev_np(r.status.signal());
        st["signal_name"] = name != nullptr ? std::string("SIG") + name : std::string();
        st["core_dumped"] = r.status.core_dumped();
    } else {
        st["unknown"] = true;
    }
    st["text"] = r.status.to_string();
    j["status"] = std::move(st);
    j["exit_code"] = exit_code;
    j["timed_out"] = r.timed_out;
    j["duration_us"] = micros(r.duration);
    if (r.usage) {
        boost::json::object u;
        u["user_cpu_us"] = micros(r.usage->user_cpu);
        u["system_cpu_us"] = micros(r.usage->system_cpu);
        u["max_rss_kib"] = r.usage->max_rss_kib;
        u["minor_faults"] = r.usage->minor_faults;
        u["major_faults"] = r.usage->major_faults;
        u["voluntary_switches"] = r.usage->voluntary_switches;
        u["involuntary_switches"] = r.usage->involuntary_switches;
        u["input_blocks"] = r.usage->input_blocks;
        u["output_blocks"] = r.usage->output_blocks;
        j["rusage"] = std::move(u);
    } else {
        j["rusage"] = nullptr;
    }
    j["stdout"] = stream_json(r.out);
    j["stderr"] = stream_json(r.err);
    j["output_limit_exceeded"] = r.output_limit_exceeded;
    j["drain_timed_out"] = r.drain_timed_out;
    j["killed_leftovers"] = r.killed_leftovers;
    auto oom = c.oom_kills();
    j["oom_killed"] = oom && *oom > 0;
    boost::json::array na;
    for (const auto& u : c.unapplied_limits())
        na.push_back(boost::json::object{{"setting", u.setting}, {"reason", u.reason}});
    j["limits_not_applied"] = std::move(na);
    return boost::json::serialize(j) + "\n";
}

/// A descriptor of our own on the same file as `fd` (a terminal or pipe), opened afresh so that
/// O_NONBLOCK on it does not change the file description drover shares with its parent (B4).
/// -1 when that is not possible (a socket, a regular file): then use blocking I/O on `fd`.
int private_nonblocking(int fd, int access) {
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !(S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode))) return -1;
    std::string path = "/proc/self/fd/" + std::to_string(fd);
    return ::open(path.c_str(), access | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
}

/// Puts a terminal in raw mode (keys go to the child's terminal as typed: Ctrl-C is a byte the
/// child's terminal turns into SIGINT) and restores it.
class raw_terminal {
public:
    explicit raw_terminal(int fd) {
        if (::isatty(fd) != 1 || ::tcgetattr(fd, &saved_) != 0) return;
        termios raw = saved_;
        ::cfmakeraw(&raw);
        if (::tcsetattr(fd, TCSANOW, &raw) == 0) fd_ = fd;
    }
    ~raw_terminal() { restore(); }
    void restore() {
        if (fd_ >= 0) ::tcsetattr(fd_, TCSADRAIN, &saved_);
        fd_ = -1;
    }
    raw_terminal(const raw_terminal&) = delete;
    raw_terminal& operator=(const raw_terminal&) = delete;

private:
    int fd_ = -1;
    termios saved_{};
};

std::optional<std::pair<unsigned short, unsigned short>> terminal_size() {
    for (int fd : {1, 0, 2}) {
        winsize ws{};
        if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row != 0 && ws.ws_col != 0)
            return std::pair{ws.ws_row, ws.ws_col};
    }
    return std::nullopt;
}

/// How --pty reads drover's stdin without blocking the io_context or changing the O_NONBLOCK
/// flag of a file description drover shares with its parent (B4).
enum class input_mode {
    none,            ///< stdin is closed
    reopened,        ///< a pipe or terminal opened afresh, non-blocking: plain async reads
    ready_then_read, ///< a socket (cannot be reopened): wait for readiness, recv(MSG_DONTWAIT)
    blocking,        ///< a regular file or /dev/null: reads never wait for long
};

/// --pty: drover's stdin to the child's terminal. At EOF, the terminal's EOF character.
asio::awaitable<void> relay_input(asio::posix::stream_descriptor& in, input_mode mode,
                                  asio::posix::stream_descriptor& master) {
    std::vector<char> buf(16 * 1024);
    for (;;) {
        std::size_t n = 0;
        if (mode == input_mode::reopened) {
            auto [ec, got] =
                co_await in.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
            if (ec == asio::error::operation_aborted) co_return;
            n = ec ? 0 : got;
        } else if (mode == input_mode::ready_then_read) {
            auto [ec] = co_await in.async_wait(asio::posix::descriptor_base::wait_read,
                                               asio::as_tuple(asio::use_awaitable));
            if (ec == asio::error::operation_aborted) co_return;
            ssize_t r = ec ? 0 : ::recv(in.native_handle(), buf.data(), buf.size(), MSG_DONTWAIT);
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
            n = r > 0 ? static_cast<std::size_t>(r) : 0;
        } else if (mode == input_mode::blocking) {
            ssize_t r;
            do r = ::read(0, buf.data(), buf.size());
            while (r < 0 && errno == EINTR);
            n = r > 0 ? static_cast<std::size_t>(r) : 0;
        }
        if (!master.is_open()) co_return;
        if (n == 0) {
            char eof = 4; // VEOF (^D): ends the child's read in canonical mode
            co_await asio::async_write(master, asio::buffer(&eof, 1), asio::as_tuple(asio::use_awaitable));
            co_return;
        }
        auto [wec, w] = co_await asio::async_write(master, asio::buffer(buf.data(), n),
                                                   asio::as_tuple(asio::use_awaitable));
        if (wec) co_return;
    }
}

/// Chooses how to read drover's stdin for --pty and prepares `in` for it.
input_mode open_input(asio::posix::stream_descriptor& in) {
    struct stat st {};
    if (::fstat(0, &st) != 0) return input_mode::none;
    boost::system::error_code ec;
    if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
        int fd = private_nonblocking(0, O_RDONLY);
        if (fd >= 0) {
            in.assign(fd, ec);
            if (!ec) return input_mode::reopened;
            ::close(fd); // epoll refuses it (/dev/null): reads never block
            return input_mode::blocking;
        }
    }
    if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) return input_mode::blocking;
    int fd = ::fcntl(0, F_DUPFD_CLOEXEC, 3); // a socket, or a pipe /proc cannot reopen
    if (fd < 0) return input_mode::none;
    in.assign(fd, ec);
    if (ec) {
        ::close(fd);
        return input_mode::none;
    }
    return input_mode::ready_then_read;
}

/// --pty: the child's terminal to drover's stdout, until every process closed the terminal.
asio::awaitable<void> relay_output(asio::posix::stream_descriptor& master,
                                   asio::posix::stream_descriptor& out) {
    drover::line_reader reader(master);
    for (;;) {
        auto [ec, chunk] = co_await reader.next_chunk(asio::as_tuple(asio::use_awaitable));
        if (ec || chunk.empty()) co_return;
        if (out.is_open()) {
            auto [wec, n] =
                co_await asio::async_write(out, asio::buffer(chunk), asio::as_tuple(asio::use_awaitable));
            if (wec) out.close();
        } else {
            write_all(1, chunk);
        }
    }
}

/// --label: each line of a stream as an escaped log line, `NAME | text` (stdout) or
/// `NAME ! text` (stderr), on drover's stdout.
asio::awaitable<void> label_lines(asio::posix::stream_descriptor& d, std::string prefix) {
    drover::line_reader lines(d, 16 * 1024);
    for (;;) {
        auto [ec, l] = co_await lines.next(asio::as_tuple(asio::use_awaitable));
        if (ec || !l) co_return;
        std::string rec = prefix + drover::escape(l->text);
        if (l->truncated()) rec += fmt::format(" [drover: line cut, {} more bytes]", l->dropped);
        if (!l->complete) rec += " [drover: no newline at end]";
        rec += '\n';
        write_all(1, rec);
    }
}

std::shared_ptr<spdlog::logger> make_logger() {
    auto log = spdlog::stderr_color_st("drover");
    log->set_pattern("drover: %^%l%$: %v");
    log->set_level(spdlog::level::warn);
    if (const char* lvl = std::getenv("DROVER_LOG")) log->set_level(spdlog::level::from_str(lvl));
    return log;
}

/// The exit code `drover run` reports for a spawn that failed.
int exit_code_for(const drover::spawn_failure& f) {
    const bool sys = f.code.category() == boost::system::system_category();
    if (sys && f.code.value() == ENOENT &&
        (f.stage == drover::spawn_stage::resolve || f.stage == drover::spawn_stage::exec))
        return exit_not_found;
    if (sys && (f.stage == drover::spawn_stage::exec || f.stage == drover::spawn_stage::resolve))
        return exit_cannot_execute; // EACCES, EISDIR, ENOEXEC, ETXTBSY, ...
    return exit_drover_failed;
}

/// One `drover run`, in named steps that run() calls in order. The members are declared in the
/// order the steps create them: the io_context first, so it outlives everything bound to it.
class run_job {
public:
    run_job(const drover::cli::run_options& o, drover::cli::run_plan& plan, spdlog::logger& log)
        : o_(o), plan_(plan), log_(log) {}
    run_job(const run_job&) = delete;
    run_job& operator=(const run_job&) = delete;

    void use_terminal();
    std::optional<int> start();
    bool relay_signals();
    void connect_output();
    void wait();
    int report();

private:
    void start_guard(bool guarded_session);
    void read_signal();
    void on_signal(int sig);
    void capture();
    void on_main_exit(boost::system::error_code ec, drover::exit_status st);
    void report_timeout(const drover::exit_status& st);
    void finish();
    int exit_code();
    void print_captured(int rc);

    const drover::cli::run_options& o_;
    drover::cli::run_plan& plan_;
    spdlog::logger& log_;
    asio::io_context ctx_;
    std::chrono::steady_clock::time_point spawned_at_;
    drover::child child_;
    drover::tree_guard guard_;
    asio::posix::stream_descriptor sigfd_{ctx_};
    signalfd_siginfo info_{};
    int stop_requests_ = 0;
    bool finished_ = false;
    asio::posix::stream_descriptor pty_in_{ctx_}, pty_out_{ctx_};
    asio::steady_timer pty_drain_{ctx_};
    std::optional<raw_terminal> raw_;
    bool pty_output_done_ = false;
    drover::exit_status status_;
    boost::system::error_code wait_ec_;
    bool timed_out_ = false;
    std::optional<drover::run_result> captured_;
};

/// --pty: the child's stdin, stdout and stderr on one new terminal, of --pty-size or drover's
/// own terminal's size (24x80 without either).
void run_job::use_terminal() {
    auto size = plan_.pty_size ? plan_.pty_size : terminal_size();
    auto [rows, cols] = size.value_or(std::pair<unsigned short, unsigned short>{24, 80});
    plan_.cmd.std_in(drover::stdio::pty(rows, cols))
        .std_out(drover::stdio::pty())
        .std_err(drover::stdio::pty());
}

/// Runner mode, the spawn, and the guard. An exit code when the child could not be started.
std::optional<int> run_job::start() {
    // Orphans of the child's tree are re-parented to us (or we are PID 1): we reap them, and
    // without a cgroup they still count as part of the tree.
    const bool pid1 = ::getpid() == 1;
    // The portable backend has no subreaper (docs/cli.md says so): a property of the build, not
    // news at every run, so it is logged at debug level there.
    if (drover::error_code ec; drover::become_reaper(ec), ec)
        log_.log(ec == drover::errc::not_supported ? spdlog::level::debug : spdlog::level::warn,
                 "cannot become a child subreaper ({}): orphans of the child go to init", ec.message());

    // Without a cgroup, the guard (below) kills the tree if drover dies; it needs the main
    // process alive to find the children that left its session, so the main process gets no
    // parent-death signal then. (As PID 1 there is no guard: the namespace dies with us.)
    const bool guarded_session = o_.no_cgroup && !pid1;
    if (guarded_session) plan_.cmd.parent_death_signal(0);
    drover::spawn_failure failure;
    spawned_at_ = std::chrono::steady_clock::now();
    child_ = drover::spawn(ctx_, plan_.cmd, failure);
    if (failure) {
        // A name the static program could not look up: say where it looked (name_services.hpp).
        const char* note = drover::cli::name_service_note();
        const bool lookup = failure.detail.find(" in the user database") != std::string::npos ||
                            failure.detail.find(" in the group database") != std::string::npos;
        if (lookup && failure.stage == drover::spawn_stage::prepare && *note)
            log_.error("{}; {}", failure.message(), note);
        else
            log_.error("{}", failure.message());
        return exit_code_for(failure);
    }
    drover::attribute_orphans_to(child_);
    for (const auto& u : child_.unapplied_limits())
        log_.warn("{} not applied: {}",
                  u.setting == "memory_max" ? "--memory-max"
                  : u.setting == "pids_max" ? "--pids-max"
                                            : "--cpu-max",
                  u.reason);
    if (auto cg = child_.cgroup_path())
        log_.debug("'{}' (pid {}) runs in cgroup {}", o_.argv.front(), *child_.id(), *cg);
    else if (child_.tree() == drover::tree_kind::process_group)
        log_.debug(
            "'{}' (pid {}) runs in its own session; its tree is its process group (the portable backend)",
            o_.argv.front(), *child_.id());
    else
        log_.debug("'{}' (pid {}) runs in its own session; no cgroup", o_.argv.front(), *child_.id());

    // The guard: if drover run dies without finishing (SIGKILL), it kills the tree. As PID 1
    // the kernel does that (the whole pid namespace dies with us).
    if (!pid1) start_guard(guarded_session);
    return std::nullopt;
}

/// True when `path` is a file only root or this user can have put there: a regular executable
/// owned by either, writable by neither group nor others, in a directory of the same kind. A
/// drover run from a directory others can write to (/tmp) must not exec what they left there.
bool trusted_program(const std::string& path) {
    auto safe = [](const struct stat& st) {
        return (st.st_uid == 0 || st.st_uid == ::geteuid()) && (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
    };
    struct stat file {
    }, dir{};
    const std::string parent = path.substr(0, path.rfind('/') == 0 ? 1 : path.rfind('/'));
    return ::stat(path.c_str(), &file) == 0 && S_ISREG(file.st_mode) && safe(file) &&
           ::stat(parent.c_str(), &dir) == 0 && safe(dir) && ::access(path.c_str(), X_OK) == 0;
}

/// The drover-guard program (tools/drover/drover-guard.cpp) for a cgroup tree: next to this
/// program (a build tree), else in drover's libexec directory (an install); only a trusted file
/// (trusted_program). Empty when there is none (a sanitizer build, another CPU): the library's
/// guard, a copy of this process, is used.
std::string guard_program() {
    std::string dir;
    char buf[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) {
        dir.assign(buf, static_cast<std::size_t>(n));
        dir.erase(dir.rfind('/') == std::string::npos ? 0 : dir.rfind('/'));
    }
    for (const std::string& p : {dir.empty() ? std::string() : dir + "/drover-guard",
                                 std::string(DROVER_LIBEXECDIR "/drover-guard")})
        if (!p.empty() && p.front() == '/' && trusted_program(p)) return p;
    return {};
}

void run_job::start_guard(bool guarded_session) {
    drover::spawn_failure gf;
    if (child_.tree() == drover::tree_kind::cgroup) {
        if (std::string program = guard_program(); !program.empty()) {
            guard_ = drover::guard_tree(child_, {program}, gf);
            if (!gf) return;
            log_.debug("cannot start {} ({}); using drover's own guard", program, gf.message());
        }
    }
    guard_ = drover::guard_tree(child_, {}, gf);
    if (gf) {
        log_.warn("no guard process ({}): if drover is killed, the child's tree may outlive it",
                  gf.message());
        if (guarded_session) log_.warn("and without a parent-death signal, the child itself too");
    }
}

/// Signals: TERM/INT/HUP go to the whole tree (a second TERM or INT kills the tree at once);
/// QUIT/USR1/USR2 to the main process, or with --signal-tree to the whole tree (for programs
/// whose workers act on them, like a log reopen); CHLD reaps adopted orphans. False (logged)
/// when there is no signalfd.
bool run_job::relay_signals() {
    sigset_t set = handled_set();
    int sfd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        log_.error("signalfd: {}", std::strerror(errno));
        return false;
    }
    sigfd_.assign(sfd);
    read_signal();
    drover::reap_orphans(); // any that exited before the signalfd existed
    return true;
}

void run_job::read_signal() {
    sigfd_.async_read_some(asio::buffer(&info_, sizeof info_),
                           [this](boost::system::error_code ec, std::size_t n) {
                               if (ec || finished_) return;
                               if (n == sizeof info_) on_signal(static_cast<int>(info_.ssi_signo));
                               read_signal();
                           });
}

void run_job::on_signal(int sig) {
    boost::system::error_code sec;
    if (sig == SIGCHLD) {
        drover::reap_orphans();
    } else if (sig == SIGTERM || sig == SIGINT) {
        // A stop with the signal received: it and SIGCONT to the tree, SIGKILL
        // after --grace if anything is left. A second one kills at once.
        if (++stop_requests_ > 1) {
            log_.warn("SIG{} again: killing the process tree", sigabbrev_np(sig));
            child_.async_kill([](boost::system::error_code, drover::exit_status) {});
        } else {
            log_.debug("SIG{}: stopping the process tree", sigabbrev_np(sig));
            child_.async_stop(sig, plan_.cmd.stop_grace(),
                              [](boost::system::error_code, drover::exit_status) {});
        }
    } else if (sig == SIGWINCH) {
        if (o_.pty) // our terminal changed size: so does the child's
            if (auto size = terminal_size()) child_.resize_pty(size->first, size->second, sec);
    } else if (sig == SIGHUP) {
        child_.signal_tree(sig, sec); // often "reload": no escalation
        log_.debug("forwarded SIGHUP to the tree: {}", sec ? sec.message() : "ok");
    } else if (plan_.signal_tree) {
        child_.signal_tree(sig, sec);
        log_.debug("forwarded SIG{} to the tree: {}", sigabbrev_np(sig), sec ? sec.message() : "ok");
    } else {
        child_.signal(sig, sec);
        log_.debug("forwarded SIG{} to the child: {}", sigabbrev_np(sig), sec ? sec.message() : "ok");
    }
}

/// Where the output goes: --pty relays the terminal, --label logs lines (--capture keeps it:
/// see wait()).
void run_job::connect_output() {
    if (o_.pty) {
        raw_.emplace(0);
        input_mode in_mode = open_input(pty_in_);
        int ofd = private_nonblocking(1, O_WRONLY);
        if (ofd >= 0) {
            boost::system::error_code aec;
            pty_out_.assign(ofd, aec);
            if (aec) ::close(ofd);
        }
        if (in_mode != input_mode::none)
            asio::co_spawn(ctx_, relay_input(pty_in_, in_mode, child_.pty()), asio::detached);
        asio::co_spawn(ctx_, relay_output(child_.pty(), pty_out_), [this](std::exception_ptr) {
            pty_output_done_ = true;
            pty_drain_.cancel();
        });
    }
    if (o_.label) {
        std::string name = drover::escape(*o_.label);
        asio::co_spawn(ctx_, label_lines(child_.std_out(), name + " | "), asio::detached);
        asio::co_spawn(ctx_, label_lines(child_.std_err(), name + " ! "), asio::detached);
    }
}

/// Waits for the main process (capturing, or up to --timeout), stops what it left running,
/// and returns when all of it is done.
void run_job::wait() {
    if (plan_.capture) {
        capture();
    } else if (plan_.timeout) {
        child_.async_wait_for(
            std::chrono::duration_cast<std::chrono::steady_clock::duration>(*plan_.timeout),
            [this](boost::system::error_code ec, drover::exit_status st) { on_main_exit(ec, st); });
    } else {
        child_.async_wait(
            [this](boost::system::error_code ec, drover::exit_status st) { on_main_exit(ec, st); });
    }
    ctx_.run();
    if (raw_) raw_->restore();
    drover::reap_orphans();
}

/// --capture: both streams (bounded), the wait, the drain, and the stop of what the command
/// left running.
void run_job::capture() {
    drover::run_options& opts = plan_.capture_opts;
    if (plan_.timeout)
        opts.timeout = std::chrono::duration_cast<std::chrono::steady_clock::duration>(*plan_.timeout);
    const auto capture_from = std::chrono::steady_clock::now();
    drover::async_capture(child_, opts, [this, capture_from](drover::error_code ec, drover::run_result r) {
        if (ec) {
            wait_ec_ = ec;
        } else {
            status_ = r.status;
            timed_out_ = r.timed_out;
            r.duration += capture_from - spawned_at_; // async_capture counts from its call
            if (timed_out_) report_timeout(r.status);
            captured_ = std::move(r);
        }
        finish();
    });
}

void run_job::on_main_exit(boost::system::error_code ec, drover::exit_status st) {
    wait_ec_ = ec == drover::errc::timed_out ? boost::system::error_code{} : ec;
    timed_out_ = ec == drover::errc::timed_out;
    status_ = st;
    if (timed_out_) {
        report_timeout(st);
        return finish();
    }
    // The main process is gone; stop whatever it left running, then finish.
    child_.async_stop([this](boost::system::error_code, drover::exit_status) { finish(); });
}

void run_job::report_timeout(const drover::exit_status& st) {
    log_.warn("'{}' timed out after {}; its process tree was stopped ({})", drover::escape(o_.argv.front()),
              drover::cli::format_duration(*plan_.timeout), st);
}

/// The tree is gone: no more signals, dismiss the guard, let the terminal drain.
void run_job::finish() {
    finished_ = true;
    boost::system::error_code ignored;
    sigfd_.close(ignored);
    if (guard_.active()) {
        // Tell the guard all is well (it exits at once; reaped while the context runs).
        boost::system::error_code gec;
        guard_.dismiss(gec);
    }
    if (o_.pty) {
        // The tree is gone, so the terminal reports EIO once its output is read; if
        // something else still holds it, give up on it after a moment.
        pty_in_.close(ignored);
        if (pty_output_done_) return;
        pty_drain_.expires_after(std::chrono::seconds(2));
        pty_drain_.async_wait([this](boost::system::error_code ec) {
            boost::system::error_code ignored;
            if (!ec) child_.pty().close(ignored);
        });
    }
}

/// Logs the outcome, prints what was captured, and returns drover run's exit status.
int run_job::report() {
    if (wait_ec_) {
        log_.error("waiting for '{}': {}", drover::escape(o_.argv.front()), wait_ec_.message());
        return exit_drover_failed;
    }
    log_.debug("'{}' {}", drover::escape(o_.argv.front()), status_);
    if (auto oom = child_.oom_kills(); oom && *oom > 0)
        log_.warn("'{}': the OOM killer took {} process{} of its tree (--memory-max {})",
                  drover::escape(o_.argv.front()), *oom, *oom == 1 ? "" : "es", *o_.memory_max);
    int rc = exit_code();
    if (captured_) print_captured(rc);
    return rc;
}

int run_job::exit_code() {
    if (timed_out_) return exit_timed_out;
    if (status_.is_unknown()) {
        log_.error("'{}': {}", drover::escape(o_.argv.front()), status_);
        return exit_drover_failed;
    }
    return status_.shell_code();
}

/// --capture: the two streams (or --json's record), then warnings about what was cut.
void run_job::print_captured(int rc) {
    if (o_.json) {
        write_all(1, run_json(o_.argv, *captured_, rc, child_));
    } else {
        write_all(1, captured_->out.text());
        write_all(2, captured_->err.text());
    }
    for (auto [name, c] : {std::pair{"stdout", &captured_->out}, std::pair{"stderr", &captured_->err}})
        if (c->truncated())
            log_.warn("{} of '{}': {} bytes, {} kept (first and last {}), {} dropped{}", name,
                      drover::escape(o_.argv.front()), c->total_bytes, c->head.size() + c->tail.size(),
                      c->head.size(), c->dropped_bytes(),
                      plan_.capture_opts.on_overflow == drover::overflow_policy::kill
                          ? "; the tree was killed"
                          : "");
    if (captured_->drain_timed_out)
        log_.warn("'{}' exited, but its output stayed open (a process it started?); stopped reading after {}",
                  drover::escape(o_.argv.front()),
                  drover::cli::format_duration(plan_.capture_opts.drain_grace));
}

int run(const drover::cli::run_options& o, spdlog::logger& log) {
    auto checked = drover::cli::check_run_options(o, log); // every option, before anything starts
    if (const int* rc = std::get_if<int>(&checked)) return *rc;
    run_job job(o, std::get<drover::cli::run_plan>(checked), log);
    if (o.pty) job.use_terminal();
    if (auto rc = job.start()) return *rc;
    if (!job.relay_signals()) return exit_drover_failed;
    job.connect_output();
    job.wait();
    return job.report();
}

} // namespace

int main(int argc, char** argv) {
    // Before any thread exists: the forwarded signals are only ever read from a signalfd.
    sigset_t set = handled_set();
    sigprocmask(SIG_BLOCK, &set, nullptr);
    // drover writes to pipes it does not own (logs); EPIPE is an error, not a death.
    signal(SIGPIPE, SIG_IGN);

    // The guard process of `drover run` (drover/guard.hpp).
    if (auto rc = drover::run_guard_if_requested(argc, argv)) return *rc;

    auto log = make_logger();
    auto cl = drover::cli::parse_command_line(argc, argv, *log, std::cout, std::cerr);
    // Before any thread exists (name_services.hpp; nothing in a dynamically linked drover). A
    // drover run that names no user or group looks nothing up: it skips the nsswitch.conf read.
    const bool names = cl.run.user || cl.run.group || cl.run.groups;
    if (cl.what != drover::cli::command_line::action::run || names) drover::cli::restrict_name_services();
    switch (cl.what) {
    case drover::cli::command_line::action::exit:
        return cl.exit_code;
    case drover::cli::command_line::action::inspect:
        return drover::tool::inspect_main(cl.pid, cl.json, *log);
    case drover::cli::command_line::action::ps: {
        auto interval = drover::cli::read_duration(cl.interval);
        if (!interval.value) {
            log->error("ps: --interval '{}' {} (a number with an optional unit ns, us, ms, s, m, h, d; like "
                       "200ms, 1s; 0 for none)",
                       drover::escape(cl.interval), interval.problem);
            return exit_drover_failed;
        }
        return drover::tool::ps_main(cl.pid, cl.json, *interval.value, *log);
    }
    case drover::cli::command_line::action::completion:
        drover::cli::write_completion(std::cout, cl.shell, cl.commands);
        std::cout.flush();
        return std::cout ? 0 : exit_drover_failed;
    case drover::cli::command_line::action::up:
        // drover up's own messages (a service's state, a reload) are its log: info by default.
        if (!std::getenv("DROVER_LOG")) log->set_level(spdlog::level::info);
        try {
            return drover::up::up_main(cl.up, *log);
        } catch (const std::exception& e) {
            log->error("up: {}", e.what());
            return exit_drover_failed;
        }
    case drover::cli::command_line::action::ctl:
        try {
            return drover::up::ctl_entry(cl.ctl, *log);
        } catch (const std::exception& e) {
            log->error("ctl: {}", e.what());
            return exit_drover_failed;
        }
    case drover::cli::command_line::action::run:
        try {
            return run(cl.run, *log);
        } catch (const std::exception& e) {
            log->error("{}", e.what());
            return exit_drover_failed;
        }
    }
    return exit_drover_failed;
}
