// drover (the program): its command line, parsed and checked without side effects, so that
// main() only acts on the result and the fuzz target (test/fuzz/fuzz_run_args.cpp) can feed it
// any argv.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <iosfwd>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "completion.hpp"
#include "drover/command.hpp"
#include "drover/run.hpp"

namespace spdlog {
class logger;
}

namespace drover::cli {

/// `drover run`'s exit code when drover itself failed (a bad option, spawn setup); also that of
/// a usage mistake at the top level and of `drover run`, `inspect`, `ps` and `completion`.
constexpr int exit_drover_failed = 125;

/// The signals `drover run` handles: the ones it forwards to its child (TERM, INT, HUP, QUIT,
/// USR1, USR2), CHLD (it reaps the orphans it adopts as a subreaper or PID 1) and WINCH (--pty:
/// the terminal's new size). main() blocks them before any thread exists and reads them from a
/// signalfd; a drover started as a pid namespace's init starts with them blocked already.
inline constexpr int handled_signals[] = {SIGTERM, SIGINT,  SIGHUP,  SIGQUIT,
                                          SIGUSR1, SIGUSR2, SIGCHLD, SIGWINCH};

/// `drover run`'s options as given (strings), before any check.
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
    bool signal_tree = false;
    std::vector<std::string> argv;
};

/// `drover up`'s options as given.
struct up_options {
    std::optional<std::string> file;   ///< -f: the config (default: drover.toml, else Procfile)
    std::vector<std::string> services; ///< to start, with their dependencies (default: all)
    bool check = false;                ///< --check: validate, print the plan, start nothing
    bool timestamps = false;
    std::string log_format = "text"; ///< text | json
    std::string color = "auto";      ///< auto | always | never
    bool daemon = false;
    std::optional<std::string> pidfile, log_file, socket;
    std::optional<std::string> http;            ///< --http ADDR:PORT: the API on TCP too
    std::optional<std::string> http_token_file; ///< --http-token-file: its bearer token
};

/// `drover ctl`'s request as given.
struct ctl_options {
    std::string verb; ///< status, start, stop, restart, logs, reload, shutdown, check
    std::vector<std::string> names;
    bool json = false, follow = false, watch = false;
    unsigned lines = 100; ///< logs -n
    bool lines_given = false;
    std::optional<std::string> socket, file; ///< --socket; -f (to find the socket, or for check)
};

/// What `drover` was asked to do.
struct command_line {
    enum class action { exit, run, inspect, ps, up, ctl, completion };
    action what = action::exit;
    int exit_code = 0;              ///< action::exit: the process's exit code (0 after --help)
    run_options run;                ///< action::run
    pid_t pid = 0;                  ///< action::inspect, action::ps
    bool json = false;              ///< action::inspect, action::ps
    std::string interval = "200ms"; ///< action::ps (not checked yet)
    up_options up;                  ///< action::up
    ctl_options ctl;                ///< action::ctl
    std::string shell;              ///< action::completion: one of completion_shells()
    command_info commands;          ///< action::completion: the program's commands and options
};

/// Parses argv (argv[0] is the program name). Help and version go to `out`, usage mistakes to
/// `err` (named with the fix: "drover run: unknown option '--tiemout'; did you mean
/// '--timeout'?"), drover's own complaints to `log`; nothing else is touched. A mistake gives
/// action::exit with 2 for `up` and `ctl` (their usage status: up.hpp, ctl.hpp), else
/// exit_drover_failed.
command_line parse_command_line(int argc, const char* const* argv, spdlog::logger& log, std::ostream& out,
                                std::ostream& err);

/// `drover run`'s options, checked and turned into what to spawn.
struct run_plan {
    drover::command cmd; ///< the command (or drover itself as the init of a new pid namespace)
    std::optional<std::chrono::nanoseconds> timeout; ///< empty: no limit (none given, or 0)
    bool capture = false;                            ///< --capture or --json
    drover::run_options capture_opts;
    std::optional<std::pair<unsigned short, unsigned short>> pty_size; ///< --pty-size
    /// --signal-tree: QUIT, USR1 and USR2 go to every process of the tree. False when drover
    /// runs as the init of a new pid namespace: that inner drover forwards them itself.
    bool signal_tree = false;
};

/// Checks every option of `drover run` before anything starts; the first problem is logged and
/// gives exit_drover_failed. Side effects: reads the --env-file files and, for --unshare pid,
/// the link /proc/self/exe; warns (to `log`) about shell syntax in the command's arguments.
std::variant<int, run_plan> check_run_options(const run_options& o, spdlog::logger& log);

/// This program's path (/proc/self/exe), or empty.
std::string self_exe();

} // namespace drover::cli
