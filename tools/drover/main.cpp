// drover: the command-line program. `drover run` runs one command done right.
//
// Exit status of `drover run` (see docs/cli.md): the child's own code; 128+N when the child was
// killed by signal N; 124 when --timeout expired; 125 when drover itself failed (bad option,
// spawn setup failed); 126 when the program exists but cannot be executed; 127 when it cannot
// be found.
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "drover/drover.hpp"

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

/// Arguments that a user may have meant for a shell. They are passed on literally; say so.
bool looks_like_shell_syntax(const std::string& a) {
    static const std::array<std::string, 10> ops = {"|", "||", "&&", ";", ">", ">>", "<", "&", "2>&1", "|&"};
    for (const auto& op : ops)
        if (a == op) return true;
    return false;
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
    std::vector<std::string> argv;
};

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
    drover::command cmd(o.argv.front(), std::vector<std::string>(o.argv.begin() + 1, o.argv.end()));
    if (o.env_clear) cmd.env_clear();
    for (const auto& k : o.env_keep) cmd.env_keep(k);
    for (const auto& kv : o.env) {
        auto eq = kv.find('=');
        if (eq == std::string::npos || eq == 0) {
            log.error("run: --env '{}' is not KEY=VALUE", kv);
            return exit_drover_failed;
        }
        cmd.env(kv.substr(0, eq), kv.substr(eq + 1));
    }
    if (o.cwd) cmd.cwd(*o.cwd);
    cmd.stop_signal(*stop_signal)
        .stop_grace(std::chrono::duration_cast<std::chrono::steady_clock::duration>(*grace))
        .cgroup(o.cgroup ? drover::cgroup_mode::required
                         : o.no_cgroup ? drover::cgroup_mode::off : drover::cgroup_mode::automatic);
    for (std::size_t i = 1; i < o.argv.size(); ++i)
        if (looks_like_shell_syntax(o.argv[i]))
            log.warn("argument {} ('{}') is passed to '{}' as is; no shell interprets it", i,
                     drover::escape(o.argv[i]), drover::escape(o.argv.front()));

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
    drover::child child = drover::spawn(ctx, cmd, failure);
    if (failure) {
        log.error("{}", failure.message());
        return exit_code_for(failure);
    }
    drover::attribute_orphans_to(child);
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

    drover::exit_status status;
    boost::system::error_code wait_ec;
    bool timed_out = false;
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
    };
    auto on_main_exit = [&](boost::system::error_code ec, drover::exit_status st) {
        wait_ec = ec == drover::errc::timed_out ? boost::system::error_code{} : ec;
        timed_out = ec == drover::errc::timed_out;
        status = st;
        if (timed_out) {
            log.warn("'{}' timed out after {}; its process tree was stopped ({})", drover::escape(o.argv.front()),
                     *o.timeout, st);
            return done();
        }
        // The main process is gone; stop whatever it left running, then finish.
        child.async_stop([&](boost::system::error_code, drover::exit_status) { done(); });
    };
    if (timeout)
        child.async_wait_for(std::chrono::duration_cast<std::chrono::steady_clock::duration>(*timeout), on_main_exit);
    else
        child.async_wait(on_main_exit);
    ctx.run();
    drover::reap_orphans();
    if (wait_ec) {
        log.error("waiting for '{}': {}", o.argv.front(), wait_ec.message());
        return exit_drover_failed;
    }
    log.debug("'{}' {}", o.argv.front(), status);
    if (timed_out) return exit_timed_out;
    if (status.is_unknown()) {
        log.error("'{}': {}", o.argv.front(), status);
        return exit_drover_failed;
    }
    return status.shell_code();
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
        if (a == "--cwd" || a == "--env" || a == "--env-keep" || a == "--timeout" || a == "--grace" ||
            a == "--stop-signal") {
            ++i; // the option's value
            continue;
        }
        if (i > 1 && !a.starts_with("-")) break; // PROGRAM: the rest is the child's
    }

    try {
        app.parse(own_argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? 0 : exit_drover_failed;
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
