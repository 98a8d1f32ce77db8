// drover: the command-line program. `drover run` runs one command done right.
//
// Exit status of `drover run` (see docs/cli.md): the child's own code; 128+N when the child was
// killed by signal N; 125 when drover itself failed (bad option, spawn setup failed); 126 when
// the program exists but cannot be executed; 127 when it cannot be found.
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "drover/drover.hpp"

namespace asio = boost::asio;

namespace {

constexpr int exit_drover_failed = 125;
constexpr int exit_cannot_execute = 126;
constexpr int exit_not_found = 127;

/// The signals `drover run` forwards to its child. They are blocked before any thread exists
/// and read from a signalfd; the child starts with an empty mask and default dispositions.
constexpr std::array forwarded_signals = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

sigset_t forwarded_set() {
    sigset_t set;
    sigemptyset(&set);
    for (int s : forwarded_signals) sigaddset(&set, s);
    return set;
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
    std::vector<std::string> argv;
};

int run(const run_options& o, spdlog::logger& log) {
    if (o.argv.empty()) {
        log.error("run: no command given (usage: drover run [OPTIONS] -- PROGRAM [ARGS...])");
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
    for (std::size_t i = 1; i < o.argv.size(); ++i)
        if (looks_like_shell_syntax(o.argv[i]))
            log.warn("argument {} ('{}') is passed to '{}' as is; no shell interprets it", i,
                     o.argv[i], o.argv.front());

    asio::io_context ctx;
    drover::spawn_failure failure;
    drover::child child = drover::spawn(ctx, cmd, failure);
    if (failure) {
        log.error("{}", failure.message());
        return exit_code_for(failure);
    }

    // Forward TERM/INT/HUP/QUIT/USR1/USR2 to the child through its pidfd.
    sigset_t set = forwarded_set();
    asio::posix::stream_descriptor sigfd(ctx);
    int sfd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        log.error("signalfd: {}", std::strerror(errno));
        return exit_drover_failed;
    }
    sigfd.assign(sfd);
    signalfd_siginfo info{};
    std::function<void()> read_signal = [&] {
        sigfd.async_read_some(asio::buffer(&info, sizeof info), [&](boost::system::error_code ec, std::size_t n) {
            if (ec) return;
            if (n == sizeof info) {
                boost::system::error_code sec;
                child.signal(static_cast<int>(info.ssi_signo), sec);
                log.debug("forwarded signal {} to the child: {}", info.ssi_signo, sec ? sec.message() : "ok");
            }
            read_signal();
        });
    };
    read_signal();

    drover::exit_status status;
    boost::system::error_code wait_ec;
    child.async_wait([&](boost::system::error_code ec, drover::exit_status st) {
        wait_ec = ec;
        status = st;
        sigfd.close();
    });
    ctx.run();
    if (wait_ec) {
        log.error("waiting for '{}': {}", o.argv.front(), wait_ec.message());
        return exit_drover_failed;
    }
    log.debug("'{}' {}", o.argv.front(), status);
    if (status.is_unknown()) {
        log.error("'{}': {}", o.argv.front(), status);
        return exit_drover_failed;
    }
    return status.shell_code();
}

} // namespace

int main(int argc, char** argv) {
    // Before any thread exists: the forwarded signals are only ever read from a signalfd.
    sigset_t set = forwarded_set();
    sigprocmask(SIG_BLOCK, &set, nullptr);
    // drover writes to pipes it does not own (logs); EPIPE is an error, not a death.
    signal(SIGPIPE, SIG_IGN);

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
        if (a == "--cwd" || a == "--env" || a == "--env-keep") {
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
            log->error("run: unknown option '{}' (put the command after --)", ro.argv.front());
            return exit_drover_failed;
        }
        if (own_argc != argc) {
            if (!ro.argv.empty()) {
                log->error("run: unexpected '{}' before --", ro.argv.front());
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
