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
#include <charconv>
#include <chrono>
#include <climits>
#include <limits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
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
#include "inspect.hpp"

namespace asio = boost::asio;

namespace {

constexpr int exit_timed_out = 124;
constexpr int exit_drover_failed = 125;
constexpr int exit_cannot_execute = 126;
constexpr int exit_not_found = 127;

/// The signals `drover run` forwards to its child. They are blocked before any thread exists
/// and read from a signalfd; the child starts with an empty mask and default dispositions.
/// SIGCHLD joins them: drover run reaps the orphans it adopts as a subreaper (or as PID 1).
constexpr std::array forwarded_signals = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

sigset_t handled_set() {
    sigset_t set;
    sigemptyset(&set);
    for (int s : forwarded_signals) sigaddset(&set, s);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGWINCH); // --pty: the terminal's new size goes to the child's terminal
    return set;
}

/// "500ms", "1.5s", "2m", "1h", "250us", or a bare number of seconds.
std::optional<std::chrono::nanoseconds> parse_duration(std::string_view s) {
    if (s.empty()) return std::nullopt;
    std::size_t unit_at = 0;
    while (unit_at < s.size() && (std::isdigit(static_cast<unsigned char>(s[unit_at])) || s[unit_at] == '.')) ++unit_at;
    if (unit_at == 0) return std::nullopt;
    double v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + unit_at, v);
    if (ec != std::errc{} || ptr != s.data() + unit_at || !std::isfinite(v) || v < 0) return std::nullopt;
    std::string_view unit = s.substr(unit_at);
    double scale;
    if (unit.empty() || unit == "s") scale = 1e9;
    else if (unit == "ms") scale = 1e6;
    else if (unit == "us") scale = 1e3;
    else if (unit == "m") scale = 60e9;
    else if (unit == "h") scale = 3600e9;
    else return std::nullopt;
    double ns = v * scale;
    if (ns > 1e18) return std::nullopt; // ~31 years: a typo, not a timeout
    return std::chrono::nanoseconds(static_cast<long long>(ns));
}

/// "TERM", "SIGTERM", "sigterm" or "15".
std::optional<int> parse_signal(std::string s) {
    if (s.empty()) return std::nullopt;
    if (std::isdigit(static_cast<unsigned char>(s[0]))) {
        int v = 0;
        auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (ec != std::errc{} || ptr != s.data() + s.size() || v < 1 || v > SIGRTMAX) return std::nullopt;
        return v;
    }
    for (auto& ch : s) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    if (s.rfind("SIG", 0) == 0) s = s.substr(3);
    for (int sig = 1; sig < NSIG; ++sig)
        if (const char* name = sigabbrev_np(sig); name != nullptr && s == name) return sig;
    return std::nullopt;
}

/// "16MiB", "512KiB", "1M", "64k", "1G", "1048576": bytes; K, M, G (with or without "iB")
/// are binary (1024-based), as in most tools' size options.
std::optional<std::size_t> parse_size(std::string_view s) {
    std::size_t digits = 0;
    while (digits < s.size() && std::isdigit(static_cast<unsigned char>(s[digits]))) ++digits;
    if (digits == 0) return std::nullopt;
    unsigned long long v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + digits, v);
    if (ec != std::errc{}) return std::nullopt;
    std::string unit(s.substr(digits));
    for (auto& ch : unit) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    unsigned shift;
    if (unit.empty() || unit == "b") shift = 0;
    else if (unit == "k" || unit == "kb" || unit == "kib") shift = 10;
    else if (unit == "m" || unit == "mb" || unit == "mib") shift = 20;
    else if (unit == "g" || unit == "gb" || unit == "gib") shift = 30;
    else return std::nullopt;
    if (v > (std::numeric_limits<std::size_t>::max() >> shift)) return std::nullopt;
    return static_cast<std::size_t>(v) << shift;
}

/// "24x80" (rows x columns).
std::optional<std::pair<unsigned short, unsigned short>> parse_pty_size(std::string_view s) {
    auto x = s.find('x');
    if (x == std::string_view::npos) return std::nullopt;
    unsigned rows = 0, cols = 0;
    auto a = std::from_chars(s.data(), s.data() + x, rows);
    auto b = std::from_chars(s.data() + x + 1, s.data() + s.size(), cols);
    if (a.ec != std::errc{} || a.ptr != s.data() + x || b.ec != std::errc{} || b.ptr != s.data() + s.size())
        return std::nullopt;
    if (rows == 0 || cols == 0 || rows > 10000 || cols > 10000) return std::nullopt;
    return std::pair{static_cast<unsigned short>(rows), static_cast<unsigned short>(cols)};
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
        std::uint32_t v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
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
std::int64_t micros(std::chrono::nanoseconds d) { return std::chrono::duration_cast<std::chrono::microseconds>(d).count(); }

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
    for (const auto& u : c.unapplied_limits()) na.push_back(boost::json::object{{"setting", u.setting}, {"reason", u.reason}});
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
    none,      ///< stdin is closed
    reopened,  ///< a pipe or terminal opened afresh, non-blocking: plain async reads
    ready_then_read, ///< a socket (cannot be reopened): wait for readiness, recv(MSG_DONTWAIT)
    blocking,  ///< a regular file or /dev/null: reads never wait for long
};

/// --pty: drover's stdin to the child's terminal. At EOF, the terminal's EOF character.
asio::awaitable<void> relay_input(asio::posix::stream_descriptor& in, input_mode mode,
                                  asio::posix::stream_descriptor& master) {
    std::vector<char> buf(16 * 1024);
    for (;;) {
        std::size_t n = 0;
        if (mode == input_mode::reopened) {
            auto [ec, got] = co_await in.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
            if (ec == asio::error::operation_aborted) co_return;
            n = ec ? 0 : got;
        } else if (mode == input_mode::ready_then_read) {
            auto [ec] = co_await in.async_wait(asio::posix::descriptor_base::wait_read, asio::as_tuple(asio::use_awaitable));
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
        auto [wec, w] = co_await asio::async_write(master, asio::buffer(buf.data(), n), asio::as_tuple(asio::use_awaitable));
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
asio::awaitable<void> relay_output(asio::posix::stream_descriptor& master, asio::posix::stream_descriptor& out) {
    drover::line_reader reader(master);
    for (;;) {
        auto [ec, chunk] = co_await reader.next_chunk(asio::as_tuple(asio::use_awaitable));
        if (ec || chunk.empty()) co_return;
        if (out.is_open()) {
            auto [wec, n] = co_await asio::async_write(out, asio::buffer(chunk), asio::as_tuple(asio::use_awaitable));
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

std::string self_exe() {
    char buf[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return {};
    return std::string(buf, static_cast<std::size_t>(n));
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

struct run_options {
    std::optional<std::string> cwd;
    std::vector<std::string> env;
    bool env_clear = false;
    std::vector<std::string> env_keep;
    std::optional<std::string> timeout;
    std::string grace = "10s";
    std::string stop_signal = "TERM";
    bool cgroup = false;
    bool no_cgroup = false;
    std::optional<std::string> std_in, std_out, std_err;
    bool capture = false;
    std::optional<std::string> max_output;
    std::optional<std::string> on_overflow;
    bool json = false;
    std::optional<std::string> drain_grace;
    bool pty = false;
    std::optional<std::string> pty_size;
    std::optional<std::string> label;
    std::vector<std::string> rlimits;
    std::optional<std::string> umask;
    bool no_new_privs = false;
    std::optional<std::string> user, group, groups, cap_bound, unshare, memory_max, pids_max, cpu_max;
    std::vector<std::string> env_files;
    bool no_init = false;
    std::vector<std::string> argv;
};

/// "--groups a,b,c" / "--cap-bound x,y": a comma-separated list ("" and "none" are empty).
std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    if (s.empty() || s == "none") return out;
    std::size_t start = 0;
    for (;;) {
        auto comma = s.find(',', start);
        out.push_back(s.substr(start, comma - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return out;
}

/// --cpu-max: "50%" of one CPU (per 100ms), "150%", or QUOTA/PERIOD as durations ("20ms/100ms").
std::optional<std::pair<std::chrono::microseconds, std::chrono::microseconds>> parse_cpu_max(std::string_view s) {
    using std::chrono::microseconds;
    if (!s.empty() && s.back() == '%') {
        unsigned long pct = 0;
        auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size() - 1, pct);
        if (ec != std::errc{} || ptr != s.data() + s.size() - 1 || pct == 0 || pct > 100000) return std::nullopt;
        return std::pair{microseconds(pct * 1000), microseconds(100000)};
    }
    auto slash = s.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    auto q = parse_duration(s.substr(0, slash));
    auto p = parse_duration(s.substr(slash + 1));
    if (!q || !p) return std::nullopt;
    auto qu = std::chrono::duration_cast<microseconds>(*q), pu = std::chrono::duration_cast<microseconds>(*p);
    // cpu.max accepts a period of 1ms to 1s and a quota of at least 1ms.
    if (pu < microseconds(1000) || pu > microseconds(1000000) || qu < microseconds(1000)) return std::nullopt;
    return std::pair{qu, pu};
}

/// "unlimited"/"infinity" or a number.
std::optional<rlim_t> parse_rlim(std::string_view s) {
    if (s == "unlimited" || s == "infinity") return RLIM_INFINITY;
    unsigned long long v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc{} || ptr != s.data() + s.size()) return std::nullopt;
    return static_cast<rlim_t>(v);
}

/// --stdin/--stdout/--stderr: "inherit", "null", "stdout" (stderr only), or a file path.
std::optional<drover::stdio> stdio_spec(const std::string& v, int fd, spdlog::logger& log) {
    if (v == "inherit") return drover::stdio::inherit();
    if (v == "null") return drover::stdio::null();
    if (v == "stdout") {
        if (fd == 2) return drover::stdio::to_stdout();
        log.error("run: --{} stdout: only --stderr can go to stdout", fd == 0 ? "stdin" : "stdout");
        return std::nullopt;
    }
    if (v.empty()) {
        log.error("run: --{} needs inherit, null{} or a file path", fd == 0 ? "stdin" : fd == 1 ? "stdout" : "stderr",
                  fd == 2 ? ", stdout" : "");
        return std::nullopt;
    }
    return drover::stdio::file(v);
}

/// `drover __guard CGROUP SESSION`: started by `drover run` (outside the child's tree, in its
/// own session, with no parent-death signal). It waits on its stdin, a pipe from drover run:
/// "d" means drover run finished its job; EOF without it means drover run died (SIGKILL, OOM),
/// and then the guard kills what drover run left, so nothing it started survives it.
int guard_main(const std::string& cgroup, const std::string& session) {
    char c = 0;
    ssize_t n;
    do n = ::read(0, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n == 1 && c == 'd') return 0;
    pid_t sid = 0;
    std::from_chars(session.data(), session.data() + session.size(), sid);
    drover::kill_abandoned_tree(cgroup == "-" ? std::string() : cgroup, sid);
    return 0;
}

int run(const run_options& o, spdlog::logger& log) {
    if (o.argv.empty()) {
        log.error("run: no command given (usage: drover run [OPTIONS] -- PROGRAM [ARGS...])");
        return exit_drover_failed;
    }
    // Every option is checked before anything starts.
    std::optional<std::chrono::nanoseconds> timeout;
    if (o.timeout) {
        timeout = parse_duration(*o.timeout);
        if (!timeout || *timeout == std::chrono::nanoseconds::zero()) {
            log.error("run: --timeout '{}' is not a positive duration (like 500ms, 1.5s, 2m, 1h)", *o.timeout);
            return exit_drover_failed;
        }
    }
    auto grace = parse_duration(o.grace);
    if (!grace) {
        log.error("run: --grace '{}' is not a duration (like 500ms, 1.5s, 2m, 0)", o.grace);
        return exit_drover_failed;
    }
    auto stop_signal = parse_signal(o.stop_signal);
    if (!stop_signal) {
        log.error("run: --stop-signal '{}' is not a signal (like TERM, SIGINT, 15)", o.stop_signal);
        return exit_drover_failed;
    }
    if (o.cgroup && o.no_cgroup) {
        log.error("run: --cgroup and --no-cgroup contradict each other");
        return exit_drover_failed;
    }
    const bool capture = o.capture || o.json;
    drover::run_options capture_opts;
    if (o.max_output) {
        auto n = parse_size(*o.max_output);
        if (!n) {
            log.error("run: --max-output '{}' is not a size (like 1MiB, 64k, 1048576)", drover::escape(*o.max_output));
            return exit_drover_failed;
        }
        capture_opts.max_output = *n;
    }
    if (o.on_overflow) {
        if (*o.on_overflow == "truncate") capture_opts.on_overflow = drover::overflow_policy::truncate;
        else if (*o.on_overflow == "kill") capture_opts.on_overflow = drover::overflow_policy::kill;
        else {
            log.error("run: --on-overflow '{}' is not truncate or kill", drover::escape(*o.on_overflow));
            return exit_drover_failed;
        }
    }
    if ((o.max_output || o.on_overflow) && !capture) {
        log.error("run: --max-output and --on-overflow apply to --capture (or --json); add one of them");
        return exit_drover_failed;
    }
    if (o.drain_grace) {
        auto drain = parse_duration(*o.drain_grace);
        if (!drain) {
            log.error("run: --drain-grace '{}' is not a duration (like 500ms, 1s)", drover::escape(*o.drain_grace));
            return exit_drover_failed;
        }
        if (!capture) {
            log.error("run: --drain-grace applies to --capture (or --json); add one of them");
            return exit_drover_failed;
        }
        capture_opts.drain_grace = std::chrono::duration_cast<std::chrono::steady_clock::duration>(*drain);
    }
    std::optional<std::pair<unsigned short, unsigned short>> pty_size;
    if (o.pty_size) {
        pty_size = parse_pty_size(*o.pty_size);
        if (!pty_size) {
            log.error("run: --pty-size '{}' is not ROWSxCOLS (like 24x80)", drover::escape(*o.pty_size));
            return exit_drover_failed;
        }
        if (!o.pty) {
            log.error("run: --pty-size needs --pty");
            return exit_drover_failed;
        }
    }
    {
        int modes = (capture ? 1 : 0) + (o.pty ? 1 : 0) + (o.label ? 1 : 0);
        if (modes > 1) {
            log.error("run: --capture/--json, --pty and --label each decide where the output goes; pick one");
            return exit_drover_failed;
        }
        if (o.pty && (o.std_in || o.std_out || o.std_err)) {
            log.error("run: --pty connects stdin, stdout and stderr to the terminal; drop --stdin/--stdout/--stderr");
            return exit_drover_failed;
        }
        if ((capture || o.label) && (o.std_out || o.std_err)) {
            log.error("run: --{} reads stdout and stderr itself; drop --stdout/--stderr", capture ? "capture" : "label");
            return exit_drover_failed;
        }
        if (o.label && o.label->empty()) {
            log.error("run: --label needs a name");
            return exit_drover_failed;
        }
    }
    std::optional<drover::namespaces> unshare;
    if (o.unshare) {
        std::string bad;
        unshare = drover::parse_namespaces(*o.unshare, &bad);
        if (!unshare) {
            log.error("run: --unshare: '{}' is not a namespace (user, pid, mount, net, uts, ipc, cgroup; "
                      "comma-separated, like pid,mount)", drover::escape(bad));
            return exit_drover_failed;
        }
    }
    if (o.no_init && !(unshare && any(*unshare & drover::namespaces::pid))) {
        log.error("run: --no-init applies to --unshare with pid");
        return exit_drover_failed;
    }
    // In a new pid namespace the program would be its init, which the kernel shields from every
    // signal it has no handler for (a stop would only land as the SIGKILL after the grace), and
    // which must reap the orphans of the namespace. So drover runs there first, as that init:
    // it forwards signals to the program's tree and reaps (drover run's PID-1 duty).
    const drover::command user_cmd(o.argv.front(), std::vector<std::string>(o.argv.begin() + 1, o.argv.end()));
    std::vector<std::string> child_argv = o.argv;
    if (unshare && any(*unshare & drover::namespaces::pid) && !o.no_init) {
        std::string exe = self_exe();
        if (exe.empty()) {
            log.error("run: cannot find drover's own executable (/proc/self/exe) to run as the namespace's init; "
                      "use --no-init");
            return exit_drover_failed;
        }
        child_argv = {exe, "run", "--grace", o.grace, "--stop-signal", o.stop_signal, "--"};
        child_argv.insert(child_argv.end(), o.argv.begin(), o.argv.end());
    }
    drover::command cmd(child_argv.front(), std::vector<std::string>(child_argv.begin() + 1, child_argv.end()));
    if (o.env_clear) cmd.env_clear();
    for (const auto& k : o.env_keep) cmd.env_keep(k);
    for (const auto& file : o.env_files) {
        try {
            cmd.env_file(file);
        } catch (const drover::env_file_error& e) {
            log.error("run: --env-file {}", drover::escape(e.what()));
            return exit_drover_failed;
        }
    }
    for (const auto& kv : o.env) {
        auto eq = kv.find('=');
        if (eq == std::string::npos || eq == 0) {
            log.error("run: --env '{}' is not KEY=VALUE", kv);
            return exit_drover_failed;
        }
        cmd.env(kv.substr(0, eq), kv.substr(eq + 1));
    }
    if (o.cwd) cmd.cwd(*o.cwd);
    if (o.std_in) {
        auto sp = stdio_spec(*o.std_in, 0, log);
        if (!sp) return exit_drover_failed;
        cmd.std_in(*sp);
    }
    if (o.std_out) {
        auto sp = stdio_spec(*o.std_out, 1, log);
        if (!sp) return exit_drover_failed;
        cmd.std_out(*sp);
    }
    if (o.std_err) {
        auto sp = stdio_spec(*o.std_err, 2, log);
        if (!sp) return exit_drover_failed;
        cmd.std_err(*sp);
    }
    if (capture || o.label) cmd.std_out(drover::stdio::pipe()).std_err(drover::stdio::pipe());
    if (o.pty) {
        auto size = pty_size ? pty_size : terminal_size();
        auto [rows, cols] = size.value_or(std::pair<unsigned short, unsigned short>{24, 80});
        cmd.std_in(drover::stdio::pty(rows, cols)).std_out(drover::stdio::pty()).std_err(drover::stdio::pty());
    }
    cmd.stop_signal(*stop_signal)
        .stop_grace(std::chrono::duration_cast<std::chrono::steady_clock::duration>(*grace))
        .cgroup(o.cgroup ? drover::cgroup_mode::required
                         : o.no_cgroup ? drover::cgroup_mode::off : drover::cgroup_mode::automatic);
    for (const auto& l : o.rlimits) { // NAME=SOFT[:HARD]
        auto eq = l.find('=');
        auto res = eq == std::string::npos ? std::nullopt : drover::rlimit_resource(std::string_view(l).substr(0, eq));
        std::string_view vals = eq == std::string::npos ? std::string_view{} : std::string_view(l).substr(eq + 1);
        auto colon = vals.find(':');
        auto soft = parse_rlim(vals.substr(0, colon));
        auto hard = colon == std::string_view::npos ? soft : parse_rlim(vals.substr(colon + 1));
        if (!res || !soft || !hard) {
            log.error("run: --rlimit '{}' is not NAME=SOFT[:HARD] (like nofile=1024, cpu=10:20, core=0, "
                      "as=unlimited; names: cpu fsize data stack core rss nproc nofile memlock as locks "
                      "sigpending msgqueue nice rtprio rttime)", drover::escape(l));
            return exit_drover_failed;
        }
        if (*hard != RLIM_INFINITY && (*soft == RLIM_INFINITY || *soft > *hard)) {
            log.error("run: --rlimit '{}': the soft limit is above the hard limit", drover::escape(l));
            return exit_drover_failed;
        }
        cmd.rlimit(*res, *soft, *hard);
    }
    if (o.umask) {
        unsigned v = 0;
        auto [ptr, ec] = std::from_chars(o.umask->data(), o.umask->data() + o.umask->size(), v, 8);
        if (o.umask->empty() || ec != std::errc{} || ptr != o.umask->data() + o.umask->size() || v > 0777) {
            log.error("run: --umask '{}' is not an octal mask (like 022, 0077)", drover::escape(*o.umask));
            return exit_drover_failed;
        }
        cmd.umask(static_cast<mode_t>(v));
    }
    if (o.no_new_privs) cmd.no_new_privs();
    if (o.user) {
        if (o.user->empty()) {
            log.error("run: --user needs a name or a uid");
            return exit_drover_failed;
        }
        cmd.user(*o.user);
    }
    if (o.group) {
        if (o.group->empty()) {
            log.error("run: --group needs a name or a gid");
            return exit_drover_failed;
        }
        cmd.group(*o.group);
    }
    if (o.groups) cmd.supplementary_groups(split_list(*o.groups));
    if (o.cap_bound) {
        std::vector<int> caps;
        for (const auto& name : split_list(*o.cap_bound)) {
            auto n = drover::capability_number(name);
            if (!n) {
                log.error("run: --cap-bound: '{}' is not a capability (like net_bind_service, chown, sys_ptrace; "
                          "'none' for an empty set)", drover::escape(name));
                return exit_drover_failed;
            }
            caps.push_back(*n);
        }
        cmd.capability_bounding_set(std::move(caps));
    }
    if (unshare) cmd.unshare(*unshare);
    if (o.memory_max) {
        auto n = parse_size(*o.memory_max);
        if (!n || *n == 0) {
            log.error("run: --memory-max '{}' is not a size (like 512M, 2GiB)", drover::escape(*o.memory_max));
            return exit_drover_failed;
        }
        cmd.memory_max(*n);
    }
    if (o.pids_max) {
        unsigned long long n = 0;
        auto [ptr, ec] = std::from_chars(o.pids_max->data(), o.pids_max->data() + o.pids_max->size(), n);
        if (o.pids_max->empty() || ec != std::errc{} || ptr != o.pids_max->data() + o.pids_max->size() || n == 0) {
            log.error("run: --pids-max '{}' is not a positive number of processes", drover::escape(*o.pids_max));
            return exit_drover_failed;
        }
        cmd.pids_max(n);
    }
    if (o.cpu_max) {
        auto c = parse_cpu_max(*o.cpu_max);
        if (!c) {
            log.error("run: --cpu-max '{}' is not a share of CPU time (like 50%, 200%, or QUOTA/PERIOD as "
                      "20ms/100ms; period 1ms-1s)", drover::escape(*o.cpu_max));
            return exit_drover_failed;
        }
        cmd.cpu_max(c->first, c->second);
    }
    if (!cmd.cgroup_settings().empty() && o.no_cgroup) {
        log.error("run: --memory-max, --pids-max and --cpu-max are cgroup limits; they cannot apply with --no-cgroup");
        return exit_drover_failed;
    }
    for (const auto& hint : drover::shell_syntax_hints(user_cmd))
        log.warn("argument {} ('{}') looks like {}, but no shell runs: '{}' gets it as is. To use a shell, "
                 "say so: drover run -- sh -c '...'", hint.index, drover::escape(o.argv[hint.index]), hint.what,
                 drover::escape(o.argv.front()));

    // Orphans of the child's tree are re-parented to us (or we are PID 1): we reap them, and
    // without a cgroup they still count as part of the tree.
    const bool pid1 = ::getpid() == 1;
    if (auto ec = drover::become_reaper())
        log.warn("cannot become a child subreaper ({}): orphans of the child go to init", ec.message());

    asio::io_context ctx;
    // Without a cgroup, the guard (below) kills the tree if drover dies; it needs the main
    // process alive to find the children that left its session, so the main process gets no
    // parent-death signal then. (As PID 1 there is no guard: the namespace dies with us.)
    const bool guarded_session = o.no_cgroup && !pid1;
    if (guarded_session) cmd.parent_death_signal(0);
    drover::spawn_failure failure;
    const auto spawned_at = std::chrono::steady_clock::now();
    drover::child child = drover::spawn(ctx, cmd, failure);
    if (failure) {
        log.error("{}", failure.message());
        return exit_code_for(failure);
    }
    drover::attribute_orphans_to(child);
    for (const auto& u : child.unapplied_limits())
        log.warn("{} not applied: {}", u.setting == "memory_max" ? "--memory-max"
                                       : u.setting == "pids_max" ? "--pids-max" : "--cpu-max", u.reason);
    if (auto cg = child.cgroup_path())
        log.debug("'{}' (pid {}) runs in cgroup {}", o.argv.front(), *child.id(), *cg);
    else
        log.debug("'{}' (pid {}) runs in its own session; no cgroup", o.argv.front(), *child.id());

    // The guard: if drover run dies without finishing (SIGKILL), it kills the tree. As PID 1
    // the kernel does that (the whole pid namespace dies with us).
    drover::child guard;
    if (!pid1) {
        std::string exe = self_exe();
        drover::command g(exe.empty() ? std::string("/proc/self/exe") : exe,
                          {"__guard", child.cgroup_path().value_or("-"), std::to_string(*child.id())});
        g.std_in(drover::stdio::pipe())
            .std_out(drover::stdio::null())
            .std_err(drover::stdio::null())
            .cgroup(drover::cgroup_mode::off)
            .parent_death_signal(0)
            .on_cancel(drover::cancel_policy::leave_running);
        drover::spawn_failure gf;
        guard = drover::spawn(ctx, g, gf);
        if (gf) {
            log.warn("no guard process ({}): if drover is killed, the child's tree may outlive it", gf.message());
            if (guarded_session) log.warn("and without a parent-death signal, the child itself too");
        }
    }

    // Signals: TERM/INT/HUP go to the whole tree (a second TERM or INT kills the tree at once);
    // QUIT/USR1/USR2 to the main process; CHLD reaps adopted orphans.
    sigset_t set = handled_set();
    asio::posix::stream_descriptor sigfd(ctx);
    int sfd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        log.error("signalfd: {}", std::strerror(errno));
        return exit_drover_failed;
    }
    sigfd.assign(sfd);
    signalfd_siginfo info{};
    int stop_requests = 0;
    bool finished = false;
    std::function<void()> read_signal = [&] {
        sigfd.async_read_some(asio::buffer(&info, sizeof info), [&](boost::system::error_code ec, std::size_t n) {
            if (ec || finished) return;
            if (n == sizeof info) {
                int sig = static_cast<int>(info.ssi_signo);
                boost::system::error_code sec;
                if (sig == SIGCHLD) {
                    drover::reap_orphans();
                } else if (sig == SIGTERM || sig == SIGINT) {
                    // A stop with the signal received: it and SIGCONT to the tree, SIGKILL
                    // after --grace if anything is left. A second one kills at once.
                    if (++stop_requests > 1) {
                        log.warn("SIG{} again: killing the process tree", sigabbrev_np(sig));
                        child.async_kill([](boost::system::error_code, drover::exit_status) {});
                    } else {
                        log.debug("SIG{}: stopping the process tree", sigabbrev_np(sig));
                        child.async_stop(sig, cmd.stop_grace(), [](boost::system::error_code, drover::exit_status) {});
                    }
                } else if (sig == SIGWINCH) {
                    if (o.pty) // our terminal changed size: so does the child's
                        if (auto size = terminal_size()) child.resize_pty(size->first, size->second, sec);
                } else if (sig == SIGHUP) {
                    child.signal_tree(sig, sec); // often "reload": no escalation
                    log.debug("forwarded SIGHUP to the tree: {}", sec ? sec.message() : "ok");
                } else {
                    child.signal(sig, sec);
                    log.debug("forwarded SIG{} to the child: {}", sigabbrev_np(sig), sec ? sec.message() : "ok");
                }
            }
            read_signal();
        });
    };
    read_signal();
    drover::reap_orphans(); // any that exited before the signalfd existed

    // Where the output goes: --pty relays the terminal, --label logs lines, --capture keeps it.
    asio::posix::stream_descriptor pty_in(ctx), pty_out(ctx);
    asio::steady_timer pty_drain(ctx);
    std::optional<raw_terminal> raw;
    bool pty_output_done = false;
    if (o.pty) {
        raw.emplace(0);
        input_mode in_mode = open_input(pty_in);
        int ofd = private_nonblocking(1, O_WRONLY);
        if (ofd >= 0) {
            boost::system::error_code aec;
            pty_out.assign(ofd, aec);
            if (aec) ::close(ofd);
        }
        if (in_mode != input_mode::none) asio::co_spawn(ctx, relay_input(pty_in, in_mode, child.pty()), asio::detached);
        asio::co_spawn(ctx, relay_output(child.pty(), pty_out), [&](std::exception_ptr) {
            pty_output_done = true;
            pty_drain.cancel();
        });
    }
    if (o.label) {
        std::string name = drover::escape(*o.label);
        asio::co_spawn(ctx, label_lines(child.std_out(), name + " | "), asio::detached);
        asio::co_spawn(ctx, label_lines(child.std_err(), name + " ! "), asio::detached);
    }

    drover::exit_status status;
    boost::system::error_code wait_ec;
    bool timed_out = false;
    std::optional<drover::run_result> captured;
    auto done = [&] {
        finished = true;
        boost::system::error_code ignored;
        sigfd.close(ignored);
        if (guard.valid()) {
            // Tell the guard all is well, then let it go (it exits at once; reaped below).
            boost::system::error_code wec;
            asio::write(guard.std_in(), asio::buffer("d", 1), wec);
            guard.std_in().close(ignored);
            guard.async_wait([](boost::system::error_code, drover::exit_status) {});
        }
        if (o.pty) {
            // The tree is gone, so the terminal reports EIO once its output is read; if
            // something else still holds it, give up on it after a moment.
            pty_in.close(ignored);
            if (pty_output_done) return;
            pty_drain.expires_after(std::chrono::seconds(2));
            pty_drain.async_wait([&](boost::system::error_code ec) {
                if (!ec) child.pty().close(ignored);
            });
        }
    };
    auto report_timeout = [&](const drover::exit_status& st) {
        log.warn("'{}' timed out after {}; its process tree was stopped ({})", drover::escape(o.argv.front()),
                 *o.timeout, st);
    };
    auto on_main_exit = [&](boost::system::error_code ec, drover::exit_status st) {
        wait_ec = ec == drover::errc::timed_out ? boost::system::error_code{} : ec;
        timed_out = ec == drover::errc::timed_out;
        status = st;
        if (timed_out) {
            report_timeout(st);
            return done();
        }
        // The main process is gone; stop whatever it left running, then finish.
        child.async_stop([&](boost::system::error_code, drover::exit_status) { done(); });
    };
    if (capture) {
        // Capture both streams (bounded), wait, drain, and stop what the command left running.
        if (timeout) capture_opts.timeout = std::chrono::duration_cast<std::chrono::steady_clock::duration>(*timeout);
        const auto capture_from = std::chrono::steady_clock::now();
        drover::async_capture(child, capture_opts, [&, capture_from](std::exception_ptr e, drover::run_result r) {
            if (e) {
                try {
                    std::rethrow_exception(e);
                } catch (const boost::system::system_error& se) {
                    wait_ec = se.code();
                } catch (const std::exception& ex) {
                    log.error("capturing the output of '{}': {}", drover::escape(o.argv.front()), ex.what());
                    wait_ec = make_error_code(boost::system::errc::io_error);
                }
            } else {
                status = r.status;
                timed_out = r.timed_out;
                r.duration += capture_from - spawned_at; // async_capture counts from its call
                if (timed_out) report_timeout(r.status);
                captured = std::move(r);
            }
            done();
        });
    } else if (timeout) {
        child.async_wait_for(std::chrono::duration_cast<std::chrono::steady_clock::duration>(*timeout), on_main_exit);
    } else {
        child.async_wait(on_main_exit);
    }
    ctx.run();
    if (raw) raw->restore();
    drover::reap_orphans();
    if (wait_ec) {
        log.error("waiting for '{}': {}", drover::escape(o.argv.front()), wait_ec.message());
        return exit_drover_failed;
    }
    log.debug("'{}' {}", drover::escape(o.argv.front()), status);
    if (auto oom = child.oom_kills(); oom && *oom > 0)
        log.warn("'{}': the OOM killer took {} process{} of its tree (--memory-max {})", drover::escape(o.argv.front()),
                 *oom, *oom == 1 ? "" : "es", *o.memory_max);
    int rc = status.shell_code();
    if (timed_out) rc = exit_timed_out;
    else if (status.is_unknown()) {
        log.error("'{}': {}", drover::escape(o.argv.front()), status);
        rc = exit_drover_failed;
    }
    if (captured) {
        if (o.json) {
            write_all(1, run_json(o.argv, *captured, rc, child));
        } else {
            write_all(1, captured->out.text());
            write_all(2, captured->err.text());
        }
        for (auto [name, c] : {std::pair{"stdout", &captured->out}, std::pair{"stderr", &captured->err}})
            if (c->truncated())
                log.warn("{} of '{}': {} bytes, {} kept (first and last {}), {} dropped{}", name,
                         drover::escape(o.argv.front()), c->total_bytes, c->head.size() + c->tail.size(),
                         c->head.size(), c->dropped_bytes(),
                         capture_opts.on_overflow == drover::overflow_policy::kill ? "; the tree was killed" : "");
        if (captured->drain_timed_out)
            log.warn("'{}' exited, but its output stayed open (a process it started?); stopped reading after {}",
                     drover::escape(o.argv.front()),
                     fmt::format("{} ms", std::chrono::duration_cast<std::chrono::milliseconds>(capture_opts.drain_grace).count()));
    }
    return rc;
}

} // namespace

int main(int argc, char** argv) {
    // Before any thread exists: the forwarded signals are only ever read from a signalfd.
    sigset_t set = handled_set();
    sigprocmask(SIG_BLOCK, &set, nullptr);
    // drover writes to pipes it does not own (logs); EPIPE is an error, not a death.
    signal(SIGPIPE, SIG_IGN);

    // The guard process of `drover run` (internal; see guard_main).
    if (argc == 4 && std::string_view(argv[1]) == "__guard") return guard_main(argv[2], argv[3]);

    auto log = make_logger();

    CLI::App app{"drover: an asynchronous process supervisor"};
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string("drover ") + DROVER_VERSION);

    run_options ro;
    auto* run_cmd = app.add_subcommand("run", "Run one command: drover run [OPTIONS] -- PROGRAM [ARGS...]");
    run_cmd->add_option("--cwd", ro.cwd, "Working directory of the child");
    run_cmd->add_option("--env", ro.env, "Set KEY=VALUE in the child's environment (repeatable)")
        ->expected(1)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    run_cmd->add_flag("--env-clear", ro.env_clear, "Start the child with an empty environment");
    run_cmd->add_option("--env-keep", ro.env_keep, "Keep only these inherited variables (repeatable)")
        ->expected(1)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    run_cmd->add_option("--timeout", ro.timeout,
                        "Stop the command's tree after this long and exit 124 (500ms, 1.5s, 2m, 1h)");
    run_cmd->add_option("--grace", ro.grace, "Time between the stop signal and SIGKILL (default 10s)");
    run_cmd->add_option("--stop-signal", ro.stop_signal, "First signal of a stop (default TERM)");
    run_cmd->add_flag("--cgroup", ro.cgroup, "Require a cgroup v2 leaf for the tree (fail if there is none)");
    run_cmd->add_flag("--no-cgroup", ro.no_cgroup, "Track the tree by session and /proc, without a cgroup");
    run_cmd->add_option("--stdin", ro.std_in, "The child's stdin: inherit (default), null, or a file");
    run_cmd->add_option("--stdout", ro.std_out, "The child's stdout: inherit (default), null, or a file (truncated)");
    run_cmd->add_option("--stderr", ro.std_err, "The child's stderr: inherit (default), null, stdout, or a file");
    run_cmd->add_flag("--capture", ro.capture,
                      "Capture stdout and stderr (bounded by --max-output) and print them when the command ends");
    run_cmd->add_option("--max-output", ro.max_output,
                        "Bytes kept per stream with --capture (default 16MiB): the first and last half");
    run_cmd->add_option("--on-overflow", ro.on_overflow,
                        "Past --max-output: truncate (default: keep draining) or kill (the tree)");
    run_cmd->add_flag("--json", ro.json,
                      "Print one JSON record: status, duration, rusage, both streams (implies --capture)");
    run_cmd->add_option("--drain-grace", ro.drain_grace,
                        "With --capture: how long output may still arrive after the command exits (default 1s)");
    run_cmd->add_flag("--pty", ro.pty, "Run the command on a new pseudo-terminal, relayed to drover's stdin/stdout");
    run_cmd->add_option("--pty-size", ro.pty_size, "The terminal's size as ROWSxCOLS (default: drover's terminal, or 24x80)");
    run_cmd->add_option("--rlimit", ro.rlimits, "A resource limit for the child, NAME=SOFT[:HARD] (repeatable)")
        ->expected(1)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    run_cmd->add_option("--umask", ro.umask, "The child's umask, octal (like 022)");
    run_cmd->add_flag("--no-new-privs", ro.no_new_privs, "Set no_new_privs: exec can never gain privileges");
    run_cmd->add_option("--user", ro.user, "Run the child as this user (name or uid; needs root)");
    run_cmd->add_option("--group", ro.group, "Run the child with this primary group (name or gid; default: the user's)");
    run_cmd->add_option("--groups", ro.groups, "Supplementary groups, comma-separated (default: the user's; 'none')");
    run_cmd->add_option("--cap-bound", ro.cap_bound,
                        "Keep only these capabilities in the bounding set, comma-separated ('none' drops all)");
    run_cmd->add_option("--env-file", ro.env_files, "Set the variables of a dotenv file (repeatable; strict format)")
        ->expected(1)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    run_cmd->add_option("--unshare", ro.unshare, "New namespaces for the child: user,pid,mount,net,uts,ipc,cgroup");
    run_cmd->add_flag("--no-init", ro.no_init,
                      "With --unshare pid: run PROGRAM itself as the namespace's init (default: drover runs as init)");
    run_cmd->add_option("--memory-max", ro.memory_max, "memory.max of the child's cgroup (like 512M)");
    run_cmd->add_option("--pids-max", ro.pids_max, "pids.max of the child's cgroup: processes and threads");
    run_cmd->add_option("--cpu-max", ro.cpu_max, "cpu.max of the child's cgroup: 50% (of one CPU) or 20ms/100ms");
    run_cmd->add_option("--label", ro.label,
                        "Print each output line as an escaped log line: 'NAME | line' (stdout), 'NAME ! line' (stderr)");
    // Everything from PROGRAM on belongs to the child, untouched (options included).
    run_cmd->prefix_command();
    run_cmd->allow_extras();

    // `--` ends drover's options: what follows is the child's argv, byte for byte. Without it,
    // the first non-option word starts the child's argv (prefix_command above).
    // Only a `--` among drover's own options counts: one after PROGRAM is the child's.
    int own_argc = argc;
    std::vector<std::string> child_argv;
    for (int i = 1; i < argc; ++i) {
        std::string_view a(argv[i]);
        if (a == "--") {
            own_argc = i;
            child_argv.assign(argv + i + 1, argv + argc);
            break;
        }
        static const std::array<std::string_view, 26> with_value = {
            "--cwd",    "--env",        "--env-keep",  "--timeout",  "--grace",       "--stop-signal", "--stdin",
            "--stdout", "--stderr",     "--max-output", "--on-overflow", "--drain-grace", "--pty-size",  "--label",
            "--rlimit", "--umask",      "--user",      "--group",    "--groups",      "--cap-bound",   "--env-file",
            "--unshare", "--memory-max", "--pids-max", "--cpu-max"};
        if (std::find(with_value.begin(), with_value.end(), a) != with_value.end()) {
            ++i; // the option's value
            continue;
        }
        if (i > 1 && !a.starts_with("-")) break; // PROGRAM: the rest is the child's
    }

    pid_t inspect_pid = 0;
    bool inspect_json = false;
    auto* inspect_cmd = app.add_subcommand("inspect", "Show everything about one process, read from /proc: drover inspect PID");
    inspect_cmd->add_option("PID", inspect_pid, "The process")->required();
    inspect_cmd->add_flag("--json", inspect_json, "One JSON record instead of text");
    pid_t ps_pid = 0;
    bool ps_json = false;
    std::string ps_interval = "200ms";
    auto* ps_cmd = app.add_subcommand("ps", "Show the process tree under PID: state, CPU, RSS, uptime: drover ps PID");
    ps_cmd->add_option("PID", ps_pid, "The root of the tree")->required();
    ps_cmd->add_flag("--json", ps_json, "A JSON array instead of a table");
    ps_cmd->add_option("--interval", ps_interval, "CPU is measured over this interval (default 200ms; 0 for none)");

    try {
        app.parse(own_argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? 0 : exit_drover_failed;
    }

    if (inspect_cmd->parsed()) return drover::tool::inspect_main(inspect_pid, inspect_json, *log);
    if (ps_cmd->parsed()) {
        auto interval = parse_duration(ps_interval);
        if (!interval) {
            log->error("ps: --interval '{}' is not a duration (like 200ms, 1s)", drover::escape(ps_interval));
            return exit_drover_failed;
        }
        return drover::tool::ps_main(ps_pid, ps_json, *interval, *log);
    }
    if (run_cmd->parsed()) {
        ro.argv = run_cmd->remaining();
        if (!ro.argv.empty() && ro.argv.front().starts_with("-")) {
            log->error("run: unknown option '{}' (put the command after --)", drover::escape(ro.argv.front()));
            return exit_drover_failed;
        }
        if (own_argc != argc) {
            if (!ro.argv.empty()) {
                log->error("run: unexpected '{}' before --", drover::escape(ro.argv.front()));
                return exit_drover_failed;
            }
            ro.argv = std::move(child_argv);
        }
        try {
            return run(ro, *log);
        } catch (const std::exception& e) {
            log->error("{}", e.what());
            return exit_drover_failed;
        }
    }
    return exit_drover_failed;
}
