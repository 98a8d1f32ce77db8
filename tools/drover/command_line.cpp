#include "command_line.hpp"

#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <exception>
#include <iterator>
#include <ostream>
#include <string_view>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "ctl.hpp"
#include "drover/env_file.hpp"
#include "drover/escape.hpp"
#include "parse.hpp"
#include "up.hpp"

namespace drover::cli {
namespace {

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
        log.error("run: --{} needs inherit, null{} or a file path",
                  fd == 0   ? "stdin"
                  : fd == 1 ? "stdout"
                            : "stderr",
                  fd == 2 ? ", stdout" : "");
        return std::nullopt;
    }
    return drover::stdio::file(v);
}

/// A duration option's value, or empty after logging why it is not one: the option, the value
/// (escaped: it may hold anything) and the grammar, with `zero` saying what 0 means for it.
std::optional<std::chrono::nanoseconds> duration_option(std::string_view option, const std::string& value,
                                                        std::string_view zero, spdlog::logger& log) {
    auto r = read_duration(value);
    if (!r.value) {
        log.error(
            "run: {} '{}' {}; a duration is a decimal number with an optional unit (ns, us, ms, s, m, h, "
            "d; s if none), like 500ms, 1.5s, .1, 2m, 1d ({})",
            option, drover::escape(value), r.problem, zero);
        return std::nullopt;
    }
    if (r.clamped)
        log.debug("run: {} '{}' is longer than {}: clamped to it", option, drover::escape(value),
                  format_duration(max_duration));
    return r.value;
}

// ---- mistakes, named with the fix ---------------------------------------------------------------

/// "; did you mean 'a'?", "; did you mean 'a' or 'b'?", or empty.
std::string did_you_mean(const std::vector<std::string>& near) {
    if (near.empty()) return {};
    std::string s = "; did you mean ";
    for (std::size_t i = 0; i < near.size(); ++i)
        s += (i == 0 ? "" : i + 1 == near.size() ? " or " : ", ") + ("'" + near[i] + "'");
    return s + "?";
}

/// The commands of `app` (all of them, not only those given).
std::vector<CLI::App*> subcommands_of(CLI::App& app) {
    return app.get_subcommands([](CLI::App* a) { return !a->get_name().empty(); });
}

/// The names of the options `app` accepts: its own and, where they fall through, its parent's.
std::vector<std::string> option_names(CLI::App& app) {
    std::vector<std::string> names;
    for (CLI::App* a = &app; a != nullptr; a = a->get_fallthrough() ? a->get_parent() : nullptr)
        for (const CLI::Option* o : a->get_options()) {
            for (const auto& n : o->get_snames()) names.push_back("-" + n);
            for (const auto& n : o->get_lnames()) names.push_back("--" + n);
        }
    return names;
}

/// "drover ctl status": the commands given, from the program on.
std::string command_path(const std::vector<CLI::App*>& chain) {
    std::string s = "drover";
    for (std::size_t i = 1; i < chain.size(); ++i) s += " " + chain[i]->get_name();
    return s;
}

/// The short usage of a command that needs a subcommand: its commands and what each does.
void write_short_usage(CLI::App& app, const std::string& path, std::ostream& err) {
    err << "usage: " << path << " [OPTIONS] COMMAND [ARGS...]\n\ncommands:\n";
    for (CLI::App* sub : subcommands_of(app)) {
        std::string name = sub->get_name();
        err << "  " << name << std::string(name.size() < 12 ? 12 - name.size() : 1, ' ')
            << sub->get_description() << "\n";
    }
    err << "\nSee '" << path << " COMMAND --help' for a command's options, and man drover.\n";
}

/// The message of a usage mistake, named with its fix where there is one, to `err`; returns the
/// exit code: 2 for `drover up` and `drover ctl` (their usage status), else exit_drover_failed.
int report_mistake(CLI::App& root, const CLI::ParseError& e, std::ostream& err) {
    std::vector<CLI::App*> chain{&root}; // the commands given, root first
    for (;;) {
        auto given = chain.back()->get_subcommands();
        if (given.empty()) break;
        chain.push_back(given.front());
    }
    int code = exit_drover_failed;
    if (chain.size() > 1 && chain[1]->get_name() == "up") code = drover::up::exit_config_error;
    if (chain.size() > 1 && chain[1]->get_name() == "ctl") code = drover::ctl::exit_usage;
    CLI::App& cmd = *chain.back();
    const std::string path = command_path(chain);

    // A word CLI11 did not know is the mistake to name, whatever error it then ran into (a
    // missing subcommand, a missing PID). Through fallthrough() it may have landed on a parent of
    // the command it was given to (ctl for `ctl reload web`).
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
        if ((*it)->get_prefix_command()) continue; // drover run: the rest is the child's
        auto left = (*it)->remaining(false);
        if (left.empty()) continue;
        const std::string& word = left.front();
        if (word.size() > 1 && word[0] == '-') {
            std::string name = word.substr(0, word.find('=')); // --opt=value
            err << path << ": unknown option '" << drover::escape(name) << "'"
                << did_you_mean(near_names(name, option_names(cmd)));
        } else if (auto subs = subcommands_of(cmd); *it == &cmd && !subs.empty()) {
            std::vector<std::string> names;
            for (auto* s : subs) names.push_back(s->get_name());
            auto near = near_names(word, names);
            err << path << ": '" << drover::escape(word) << "' is not a " << path << " command"
                << did_you_mean(near);
            if (near.empty()) {
                err << "; the commands are:";
                for (std::size_t i = 0; i < names.size(); ++i) err << (i ? ", " : " ") << names[i];
            }
        } else {
            err << path << ": unexpected argument '" << drover::escape(word) << "'";
        }
        err << "\nSee '" << path << " --help'.\n";
        return code;
    }
    // A command that needs a subcommand was given none: what there is to choose from.
    if (dynamic_cast<const CLI::RequiredError*>(&e) && cmd.get_require_subcommand_min() > 0 &&
        !subcommands_of(cmd).empty()) {
        write_short_usage(cmd, path, err);
        return code;
    }
    err << path << ": " << e.what() << "\nSee '" << path << " --help'.\n";
    return code;
}

// ---- the command tree, for completion -------------------------------------------------------------

/// The values an option's check allows, from its type name ("TEXT:{text,json}"), or none.
std::vector<std::string> choices_of(const CLI::Option& o) {
    std::string t = o.get_type_name();
    auto open = t.find('{'), close = t.rfind('}');
    if (open == std::string::npos || close == std::string::npos || close < open) return {};
    return split_list(t.substr(open + 1, close - open - 1));
}

command_info describe(CLI::App& app) {
    command_info c;
    c.name = app.get_name();
    c.description = app.get_description();
    c.rest_is_command = app.get_prefix_command();
    for (CLI::App* a = &app; a != nullptr; a = a->get_fallthrough() ? a->get_parent() : nullptr)
        for (const CLI::Option* o : a->get_options()) {
            option_info i;
            i.takes_value = o->get_items_expected_max() > 0; // 0 for a flag
            i.choices = choices_of(*o);
            if (o->get_snames().empty() && o->get_lnames().empty()) {
                if (a != &app) continue; // a parent's positionals are not this command's
                i.names = {o->get_name()};
                c.positionals.push_back(std::move(i));
                continue;
            }
            // A parent's option keeps only the names the command leaves free (ctl -f is --file,
            // but ctl logs -f is its own --follow), as CLI11 looks at the command's own first.
            auto taken = [&](const std::string& n) {
                for (const auto& have : c.options)
                    if (std::find(have.names.begin(), have.names.end(), n) != have.names.end()) return true;
                return false;
            };
            for (const auto& n : o->get_snames())
                if (!taken("-" + n)) i.names.push_back("-" + n);
            for (const auto& n : o->get_lnames())
                if (!taken("--" + n)) i.names.push_back("--" + n);
            if (!i.names.empty()) c.options.push_back(std::move(i));
        }
    for (CLI::App* sub : subcommands_of(app)) c.subcommands.push_back(describe(*sub));
    return c;
}

} // namespace

std::string self_exe() {
    char buf[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return {};
    return std::string(buf, static_cast<std::size_t>(n));
}

command_line parse_command_line(int argc, const char* const* argv, spdlog::logger& log, std::ostream& out,
                                std::ostream& err) {
    command_line cl;
    CLI::App app{"drover: an asynchronous process supervisor", "drover"};
    app.require_subcommand(1);
    app.footer("Run 'drover COMMAND --help' for a command's options, and see man drover.\n"
               "Shell completion: source <(drover completion bash)");
    app.set_version_flag("--version", std::string("drover ") + DROVER_VERSION);

    run_options& ro = cl.run;
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
                        "Stop the command's tree after this long and exit 124 (500ms, 1.5s, .1, 2m, 1h, 1d; "
                        "a bare number is seconds; 0: no limit)");
    run_cmd->add_option("--grace", ro.grace,
                        "Time between the stop signal and SIGKILL (default 10s; 0: SIGKILL right after it)");
    run_cmd->add_flag("--signal-tree", ro.signal_tree,
                      "Forward QUIT, USR1 and USR2 to every process of the tree, not only the main process");
    run_cmd->add_option("--stop-signal", ro.stop_signal, "First signal of a stop (default TERM)");
    run_cmd->add_flag("--cgroup", ro.cgroup, "Require a cgroup v2 leaf for the tree (fail if there is none)");
    run_cmd->add_flag("--no-cgroup", ro.no_cgroup, "Track the tree by session and /proc, without a cgroup");
    run_cmd->add_option("--stdin", ro.std_in, "The child's stdin: inherit (default), null, or a file");
    run_cmd->add_option("--stdout", ro.std_out,
                        "The child's stdout: inherit (default), null, or a file (truncated)");
    run_cmd->add_option("--stderr", ro.std_err,
                        "The child's stderr: inherit (default), null, stdout, or a file");
    run_cmd->add_flag(
        "--capture", ro.capture,
        "Capture stdout and stderr (bounded by --max-output) and print them when the command ends");
    run_cmd->add_option("--max-output", ro.max_output,
                        "Bytes kept per stream with --capture (default 16MiB): the first and last half");
    run_cmd->add_option("--on-overflow", ro.on_overflow,
                        "Past --max-output: truncate (default: keep draining) or kill (the tree)");
    run_cmd->add_flag("--json", ro.json,
                      "Print one JSON record: status, duration, rusage, both streams (implies --capture)");
    run_cmd->add_option(
        "--drain-grace", ro.drain_grace,
        "With --capture: how long output may still arrive after the command exits (default 1s)");
    run_cmd->add_flag("--pty", ro.pty,
                      "Run the command on a new pseudo-terminal, relayed to drover's stdin/stdout");
    run_cmd->add_option("--pty-size", ro.pty_size,
                        "The terminal's size as ROWSxCOLS (default: drover's terminal, or 24x80)");
    run_cmd
        ->add_option("--rlimit", ro.rlimits, "A resource limit for the child, NAME=SOFT[:HARD] (repeatable)")
        ->expected(1)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    run_cmd->add_option("--umask", ro.umask, "The child's umask, octal (like 022)");
    run_cmd->add_flag("--no-new-privs", ro.no_new_privs, "Set no_new_privs: exec can never gain privileges");
    run_cmd->add_option("--user", ro.user, "Run the child as this user (name or uid; needs root)");
    run_cmd->add_option("--group", ro.group,
                        "Run the child with this primary group (name or gid; default: the user's)");
    run_cmd->add_option("--groups", ro.groups,
                        "Supplementary groups, comma-separated (default: the user's; 'none')");
    run_cmd->add_option(
        "--cap-bound", ro.cap_bound,
        "Keep only these capabilities in the bounding set, comma-separated ('none' drops all)");
    run_cmd
        ->add_option("--env-file", ro.env_files,
                     "Set the variables of a dotenv file (repeatable; strict format)")
        ->expected(1)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    run_cmd->add_option("--unshare", ro.unshare,
                        "New namespaces for the child: user,pid,mount,net,uts,ipc,cgroup");
    run_cmd->add_flag(
        "--no-init", ro.no_init,
        "With --unshare pid: run PROGRAM itself as the namespace's init (default: drover runs as init)");
    run_cmd->add_option("--memory-max", ro.memory_max, "memory.max of the child's cgroup (like 512M)");
    run_cmd->add_option("--pids-max", ro.pids_max, "pids.max of the child's cgroup: processes and threads");
    run_cmd->add_option("--cpu-max", ro.cpu_max,
                        "cpu.max of the child's cgroup: 50% (of one CPU) or 20ms/100ms");
    run_cmd->add_option(
        "--label", ro.label,
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
            "--cwd",         "--env",         "--env-keep",   "--timeout",  "--grace",
            "--stop-signal", "--stdin",       "--stdout",     "--stderr",   "--max-output",
            "--on-overflow", "--drain-grace", "--pty-size",   "--label",    "--rlimit",
            "--umask",       "--user",        "--group",      "--groups",   "--cap-bound",
            "--env-file",    "--unshare",     "--memory-max", "--pids-max", "--cpu-max"};
        if (std::find(with_value.begin(), with_value.end(), a) != with_value.end()) {
            ++i; // the option's value
            continue;
        }
        if (i > 1 && !a.starts_with("-")) break; // PROGRAM: the rest is the child's
    }

    // `drover run` defines only its own subcommand: the others' options are code and data its
    // start-up would touch for nothing (drover run's cost is mostly start-up: docs/performance.md).
    // With run first, nothing else can be parsed anyway (the rest of the line is run's).
    const bool only_run = argc > 1 && std::string_view(argv[1]) == "run";
    CLI::App* inspect_cmd = nullptr;
    CLI::App* ps_cmd = nullptr;
    CLI::App* up_cmd = nullptr;
    CLI::App* ctl_cmd = nullptr;
    CLI::App* completion_cmd = nullptr;
    CLI::Option* lines_opt = nullptr;
    up_options& uo = cl.up;
    ctl_options& co = cl.ctl;
    if (!only_run) {
        inspect_cmd = app.add_subcommand(
            "inspect", "Show everything about one process, read from /proc: drover inspect PID");
        inspect_cmd->add_option("PID", cl.pid, "The process")->required();
        inspect_cmd->add_flag("--json", cl.json, "One JSON record instead of text");
        ps_cmd = app.add_subcommand(
            "ps", "Show the process tree under PID: state, CPU, RSS, uptime: drover ps PID");
        ps_cmd->add_option("PID", cl.pid, "The root of the tree")->required();
        ps_cmd->add_flag("--json", cl.json, "A JSON array instead of a table");
        ps_cmd->add_option("--interval", cl.interval,
                           "CPU is measured over this interval (default 200ms; 0 for none)");

        up_cmd = app.add_subcommand(
            "up", "Supervise the services of drover.toml or a Procfile: drover up [-f FILE] [SERVICE...]");
        up_cmd->add_option("-f,--file", uo.file, "The config (default: ./drover.toml, else ./Procfile)");
        up_cmd->add_option("SERVICE", uo.services, "Start these and what they depend on (default: all)");
        up_cmd->add_flag("--check", uo.check, "Validate the config and print the plan; start nothing");
        up_cmd->add_flag("--timestamps", uo.timestamps, "Prefix each output line with the time");
        up_cmd->add_option("--log-format", uo.log_format, "text (default) or json: one object per line")
            ->check(CLI::IsMember({"text", "json"}));
        up_cmd->add_option("--color", uo.color, "Colour the service prefixes: auto (default), always, never")
            ->check(CLI::IsMember({"auto", "always", "never"}));
        up_cmd->add_flag("--daemon", uo.daemon, "Detach and run in the background (default: the foreground)");
        up_cmd->add_option("--pidfile", uo.pidfile,
                           "With --daemon: the locked pidfile (one daemon per file)");
        up_cmd->add_option("--log-file", uo.log_file, "With --daemon: where output and drover's log go");
        up_cmd->add_option("--socket", uo.socket,
                           "The control socket (default: $XDG_RUNTIME_DIR/drover/NAME.sock, else "
                           "/run/drover/NAME.sock as root, else .drover.sock beside the config)");
        up_cmd->add_option(
            "--http", uo.http,
            "Serve the control API, /metrics, /livez, /readyz and the dashboard on TCP "
            "too, at ADDR:PORT (like 127.0.0.1:9090); off loopback it needs --http-token-file");
        up_cmd->add_option("--http-token-file", uo.http_token_file,
                           "The bearer token HTTP clients must send (the file's first line; keep it 0600)");
        up_cmd->footer(R"(Examples:
  drover up                   every service of ./drover.toml (else ./Procfile), in the foreground
  drover up web worker        web, worker and what they depend on
  drover up --check           check the config and print the start order; start nothing
  drover up -f deploy/drover.toml --daemon --pidfile app.pid --log-file app.log
  drover up --http 127.0.0.1:9090   and open http://127.0.0.1:9090/ for the dashboard

Signals: TERM or INT stops every service, dependents first (a second INT kills what still runs
after 1s, a third at once); HUP rereads the config and applies the difference (a broken config is
refused, nothing changes); USR1 reopens the log files.
Exit status: 0 stopped cleanly, 1 a service failed, 2 a config or usage error, 125 drover failed.)");

        ctl_cmd = app.add_subcommand("ctl", "Talk to a running drover up: drover ctl status|start|...");
        ctl_cmd->add_option("--socket", co.socket, "The control socket of the drover up to talk to");
        ctl_cmd->add_option("-f,--file", co.file, "The config whose drover up to talk to (finds its socket)");
        ctl_cmd->require_subcommand(1);
        ctl_cmd->footer(R"(Examples:
  drover ctl status                 a table of the services of ./drover.toml's drover up
  drover ctl status --watch         the same, redrawn on each change
  drover ctl restart web            restart web (and wait until it is back)
  drover ctl logs -f -n 20 web      web's last 20 lines, then new ones as they come
  drover ctl -f deploy/drover.toml reload
  drover ctl --socket /run/drover/app.sock shutdown

Exit status: 0 done, 1 drover up answered with an error, 2 a usage error (or no config to find
the socket by), 3 no drover up is listening on the socket.)");
        auto* ctl_status = ctl_cmd->add_subcommand("status", "A table of the services");
        ctl_status->add_flag("--json", co.json, "The API's JSON instead of a table");
        ctl_status->add_flag("--watch", co.watch, "Keep the table live, redrawn on each change");
        ctl_status->add_option("SERVICE", co.names, "Only these services");
        for (const char* verb : {"start", "stop", "restart"})
            ctl_cmd->add_subcommand(verb, std::string(1, char(verb[0] - 32)) + (verb + 1) + " services")
                ->add_option("SERVICE", co.names, "The services")
                ->required();
        auto* ctl_logs = ctl_cmd->add_subcommand("logs", "The last lines of a service's output");
        ctl_logs->add_option("SERVICE", co.names, "The service")->required()->expected(1);
        ctl_logs->add_flag("-f,--follow", co.follow, "Keep printing new lines");
        lines_opt = ctl_logs->add_option("-n,--lines", co.lines, "How many lines (default: all kept)");
        ctl_cmd->add_subcommand("reload", "Reread the config and apply it by difference");
        ctl_cmd->add_subcommand("shutdown", "Stop every service, in reverse dependency order, and exit");
        ctl_cmd->add_subcommand("check", "Validate the config (-f) and print the plan");
        // --socket and -f work after the verb too (drover ctl status --socket PATH).
        for (CLI::App* verb : subcommands_of(*ctl_cmd)) verb->fallthrough();

        completion_cmd = app.add_subcommand(
            "completion", "Print a shell completion script: source <(drover completion bash)");
        completion_cmd->add_option("SHELL", cl.shell, "The shell: bash")
            ->required()
            ->check(CLI::IsMember(completion_shells()));
    }

    try {
        app.parse(own_argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) { // --help, --version
            cl.exit_code = app.exit(e, out, err);
            return cl;
        }
        cl.exit_code = report_mistake(app, e, err);
        return cl;
    }

    cl.exit_code = exit_drover_failed;
    if (completion_cmd && completion_cmd->parsed()) {
        cl.commands = describe(app);
        cl.what = command_line::action::completion;
    } else if (up_cmd && up_cmd->parsed()) {
        cl.what = command_line::action::up;
    } else if (ctl_cmd && ctl_cmd->parsed()) {
        for (auto* sub : ctl_cmd->get_subcommands())
            if (sub->parsed()) co.verb = sub->get_name();
        co.lines_given = lines_opt->count() > 0;
        cl.what = command_line::action::ctl;
    } else if (inspect_cmd && inspect_cmd->parsed()) {
        cl.what = command_line::action::inspect;
    } else if (ps_cmd && ps_cmd->parsed()) {
        cl.what = command_line::action::ps;
    } else if (run_cmd->parsed()) {
        ro.argv = run_cmd->remaining();
        if (!ro.argv.empty() && ro.argv.front().starts_with("-")) {
            std::string name = ro.argv.front().substr(0, ro.argv.front().find('=')); // --opt=value
            auto near = near_names(name, option_names(*run_cmd));
            err << "drover run: unknown option '" << drover::escape(name) << "'" << did_you_mean(near)
                << (near.empty()
                        ? " (the command and its own options go after drover's: drover run [OPTIONS] "
                          "-- PROGRAM [ARGS...])"
                        : "")
                << "\nSee 'drover run --help'.\n";
            return cl;
        }
        if (own_argc != argc) {
            if (!ro.argv.empty()) {
                log.error("run: unexpected '{}' before --", drover::escape(ro.argv.front()));
                return cl;
            }
            ro.argv = std::move(child_argv);
        }
        cl.what = command_line::action::run;
    }
    return cl;
}

namespace {

/// The stop: --timeout (0: none), --grace and --stop-signal.
struct stop_settings {
    std::optional<std::chrono::nanoseconds> timeout;
    std::chrono::nanoseconds grace{};
    int signal = 0;
};

bool check_stop_options(const run_options& o, spdlog::logger& log, stop_settings& out) {
    if (o.timeout) {
        out.timeout = duration_option("--timeout", *o.timeout, "0: no limit", log);
        if (!out.timeout) return false;
        // 0 is no limit, as in timeout(1): a script can always pass the option.
        if (*out.timeout == std::chrono::nanoseconds::zero()) out.timeout.reset();
    }
    auto grace = duration_option("--grace", o.grace, "0: SIGKILL right after the stop signal", log);
    if (!grace) return false;
    out.grace = *grace;
    auto stop_signal = parse_signal(o.stop_signal);
    if (!stop_signal) {
        log.error("run: --stop-signal '{}' is not a signal (like TERM, SIGINT, 15)",
                  drover::escape(o.stop_signal));
        return false;
    }
    out.signal = *stop_signal;
    if (o.cgroup && o.no_cgroup) {
        log.error("run: --cgroup and --no-cgroup contradict each other");
        return false;
    }
    return true;
}

/// --capture and --json, with --max-output, --on-overflow and --drain-grace.
bool check_capture_options(const run_options& o, spdlog::logger& log, bool& capture,
                           drover::run_options& capture_opts) {
    capture = o.capture || o.json;
    if (o.max_output) {
        auto n = parse_size(*o.max_output);
        if (!n) {
            log.error("run: --max-output '{}' is not a size (like 1MiB, 64k, 1048576)",
                      drover::escape(*o.max_output));
            return false;
        }
        capture_opts.max_output = *n;
    }
    if (o.on_overflow) {
        if (*o.on_overflow == "truncate")
            capture_opts.on_overflow = drover::overflow_policy::truncate;
        else if (*o.on_overflow == "kill")
            capture_opts.on_overflow = drover::overflow_policy::kill;
        else {
            log.error("run: --on-overflow '{}' is not truncate or kill", drover::escape(*o.on_overflow));
            return false;
        }
    }
    if ((o.max_output || o.on_overflow) && !capture) {
        log.error("run: --max-output and --on-overflow apply to --capture (or --json); add one of them");
        return false;
    }
    if (o.drain_grace) {
        auto drain =
            duration_option("--drain-grace", *o.drain_grace, "0: stop reading when the command exits", log);
        if (!drain) return false;
        if (!capture) {
            log.error("run: --drain-grace applies to --capture (or --json); add one of them");
            return false;
        }
        capture_opts.drain_grace = std::chrono::duration_cast<std::chrono::steady_clock::duration>(*drain);
    }
    return true;
}

/// --pty and --pty-size, and the options that each decide where the output goes.
bool check_output_modes(const run_options& o, bool capture, spdlog::logger& log,
                        std::optional<std::pair<unsigned short, unsigned short>>& pty_size) {
    if (o.pty_size) {
        pty_size = parse_pty_size(*o.pty_size);
        if (!pty_size) {
            log.error("run: --pty-size '{}' is not ROWSxCOLS (like 24x80)", drover::escape(*o.pty_size));
            return false;
        }
        if (!o.pty) {
            log.error("run: --pty-size needs --pty");
            return false;
        }
    }
    int modes = (capture ? 1 : 0) + (o.pty ? 1 : 0) + (o.label ? 1 : 0);
    if (modes > 1) {
        log.error("run: --capture/--json, --pty and --label each decide where the output goes; pick one");
        return false;
    }
    if (o.pty && (o.std_in || o.std_out || o.std_err)) {
        log.error(
            "run: --pty connects stdin, stdout and stderr to the terminal; drop --stdin/--stdout/--stderr");
        return false;
    }
    if ((capture || o.label) && (o.std_out || o.std_err)) {
        log.error("run: --{} reads stdout and stderr itself; drop --stdout/--stderr",
                  capture ? "capture" : "label");
        return false;
    }
    if (o.label && o.label->empty()) {
        log.error("run: --label needs a name");
        return false;
    }
    return true;
}

/// --unshare and --no-init.
bool check_namespaces(const run_options& o, spdlog::logger& log, std::optional<drover::namespaces>& unshare) {
    if (o.unshare) {
        std::string bad;
        unshare = drover::parse_namespaces(*o.unshare, &bad);
        if (!unshare) {
            log.error("run: --unshare: '{}' is not a namespace (user, pid, mount, net, uts, ipc, cgroup; "
                      "comma-separated, like pid,mount)",
                      drover::escape(bad));
            return false;
        }
    }
    if (o.no_init && !(unshare && any(*unshare & drover::namespaces::pid))) {
        log.error("run: --no-init applies to --unshare with pid");
        return false;
    }
    return true;
}

/// What to spawn: the command itself, or, in a new pid namespace, drover as its init.
///
/// In a new pid namespace the program would be its init, which the kernel shields from every
/// signal it has no handler for (a stop would only land as the SIGKILL after the grace), and
/// which must reap the orphans of the namespace. So drover runs there first, as that init:
/// it forwards signals to the program's tree and reaps (drover run's PID-1 duty).
bool spawned_argv(const run_options& o, const std::optional<drover::namespaces>& unshare, spdlog::logger& log,
                  std::vector<std::string>& child_argv, bool& signal_tree) {
    child_argv = o.argv;
    signal_tree = o.signal_tree;
    if (!(unshare && any(*unshare & drover::namespaces::pid) && !o.no_init)) return true;
    std::string exe = self_exe();
    if (exe.empty()) {
        log.error("run: cannot find drover's own executable (/proc/self/exe) to run as the namespace's init; "
                  "use --no-init");
        return false;
    }
    child_argv = {exe, "run", "--grace", o.grace, "--stop-signal", o.stop_signal};
    // The inner drover forwards to the tree; the outer one then signals only it, or each
    // process would get the signal twice.
    if (o.signal_tree) child_argv.push_back("--signal-tree");
    child_argv.push_back("--");
    child_argv.insert(child_argv.end(), o.argv.begin(), o.argv.end());
    signal_tree = false;
    return true;
}

/// --env-clear, --env-keep, --env-file and --env, in that order.
bool apply_environment(const run_options& o, drover::command& cmd, spdlog::logger& log) {
    if (o.env_clear) cmd.env_clear();
    for (const auto& k : o.env_keep) cmd.env_keep(k);
    for (const auto& file : o.env_files) {
        try {
            cmd.env_file(file);
        } catch (const drover::env_file_error& e) {
            log.error("run: --env-file {}", drover::escape(e.what()));
            return false;
        }
    }
    for (const auto& kv : o.env) {
        auto eq = kv.find('=');
        if (eq == std::string::npos || eq == 0) {
            log.error("run: --env '{}' is not KEY=VALUE", drover::escape(kv));
            return false;
        }
        cmd.env(kv.substr(0, eq), kv.substr(eq + 1));
    }
    return true;
}

/// --stdin, --stdout and --stderr; pipes for --capture and --label.
bool apply_stdio(const run_options& o, bool capture, drover::command& cmd, spdlog::logger& log) {
    if (o.std_in) {
        auto sp = stdio_spec(*o.std_in, 0, log);
        if (!sp) return false;
        cmd.std_in(*sp);
    }
    if (o.std_out) {
        auto sp = stdio_spec(*o.std_out, 1, log);
        if (!sp) return false;
        cmd.std_out(*sp);
    }
    if (o.std_err) {
        auto sp = stdio_spec(*o.std_err, 2, log);
        if (!sp) return false;
        cmd.std_err(*sp);
    }
    if (capture || o.label) cmd.std_out(drover::stdio::pipe()).std_err(drover::stdio::pipe());
    return true;
}

/// --rlimit and --umask.
bool apply_process_limits(const run_options& o, drover::command& cmd, spdlog::logger& log) {
    for (const auto& l : o.rlimits) { // NAME=SOFT[:HARD]
        auto r = parse_rlimit_spec(l);
        if (!r) {
            log.error("run: --rlimit '{}' is not NAME=SOFT[:HARD] (like nofile=1024, cpu=10:20, core=0, "
                      "as=unlimited; names: cpu fsize data stack core rss nproc nofile memlock as locks "
                      "sigpending msgqueue nice rtprio rttime)",
                      drover::escape(l));
            return false;
        }
        if (soft_above_hard(*r)) {
            log.error("run: --rlimit '{}': the soft limit is above the hard limit", drover::escape(l));
            return false;
        }
        cmd.rlimit(r->resource, r->soft, r->hard);
    }
    if (o.umask) {
        auto v = parse_umask(*o.umask);
        if (!v) {
            log.error("run: --umask '{}' is not an octal mask (like 022, 0077)", drover::escape(*o.umask));
            return false;
        }
        cmd.umask(static_cast<mode_t>(*v));
    }
    return true;
}

/// --no-new-privs, --user, --group, --groups and --cap-bound.
bool apply_identity(const run_options& o, drover::command& cmd, spdlog::logger& log) {
    if (o.no_new_privs) cmd.no_new_privs(true);
    if (o.user) {
        if (o.user->empty()) {
            log.error("run: --user needs a name or a uid");
            return false;
        }
        cmd.user(*o.user);
    }
    if (o.group) {
        if (o.group->empty()) {
            log.error("run: --group needs a name or a gid");
            return false;
        }
        cmd.group(*o.group);
    }
    if (o.groups) cmd.supplementary_groups(split_list(*o.groups));
    if (o.cap_bound) {
        std::vector<int> caps;
        for (const auto& name : split_list(*o.cap_bound)) {
            auto n = drover::capability_number(name);
            if (!n) {
                log.error(
                    "run: --cap-bound: '{}' is not a capability (like net_bind_service, chown, sys_ptrace; "
                    "'none' for an empty set)",
                    drover::escape(name));
                return false;
            }
            caps.push_back(*n);
        }
        cmd.capability_bounding_set(std::move(caps));
    }
    return true;
}

/// --memory-max, --pids-max and --cpu-max, which need a cgroup.
bool apply_cgroup_limits(const run_options& o, drover::command& cmd, spdlog::logger& log) {
    if (o.memory_max) {
        auto n = parse_size(*o.memory_max);
        if (!n || *n == 0) {
            log.error("run: --memory-max '{}' is not a size (like 512M, 2GiB)",
                      drover::escape(*o.memory_max));
            return false;
        }
        cmd.memory_max(*n);
    }
    if (o.pids_max) {
        auto n = parse_positive(*o.pids_max);
        if (!n) {
            log.error("run: --pids-max '{}' is not a positive number of processes",
                      drover::escape(*o.pids_max));
            return false;
        }
        cmd.pids_max(*n);
    }
    if (o.cpu_max) {
        auto c = parse_cpu_max(*o.cpu_max);
        if (!c) {
            log.error("run: --cpu-max '{}' is not a share of CPU time (like 50%, 200%, or QUOTA/PERIOD as "
                      "20ms/100ms; period 1ms-1s)",
                      drover::escape(*o.cpu_max));
            return false;
        }
        cmd.cpu_max(c->first, c->second);
    }
    if (!cmd.cgroup_settings().empty() && o.no_cgroup) {
        log.error("run: --memory-max, --pids-max and --cpu-max are cgroup limits; they cannot apply with "
                  "--no-cgroup");
        return false;
    }
    return true;
}

/// Warns about arguments that look like shell syntax: no shell runs.
void warn_shell_syntax(const run_options& o, spdlog::logger& log) {
    const drover::command user_cmd(o.argv.front(),
                                   std::vector<std::string>(o.argv.begin() + 1, o.argv.end()));
    for (const auto& hint : drover::shell_syntax_hints(user_cmd))
        log.warn("argument {} ('{}') looks like {}, but no shell runs: '{}' gets it as is. To use a shell, "
                 "say so: drover run -- sh -c '...'",
                 hint.index, drover::escape(o.argv[hint.index]), hint.what, drover::escape(o.argv.front()));
}

} // namespace

std::variant<int, run_plan> check_run_options(const run_options& o, spdlog::logger& log) {
    if (o.argv.empty()) {
        log.error("run: no command given (usage: drover run [OPTIONS] -- PROGRAM [ARGS...])");
        return exit_drover_failed;
    }
    // Every option is checked before anything starts; the first problem ends the check.
    stop_settings stop;
    bool capture = false;
    drover::run_options capture_opts;
    std::optional<std::pair<unsigned short, unsigned short>> pty_size;
    std::optional<drover::namespaces> unshare;
    std::vector<std::string> child_argv;
    bool signal_tree = false;
    if (!check_stop_options(o, log, stop) || !check_capture_options(o, log, capture, capture_opts) ||
        !check_output_modes(o, capture, log, pty_size) || !check_namespaces(o, log, unshare) ||
        !spawned_argv(o, unshare, log, child_argv, signal_tree))
        return exit_drover_failed;

    drover::command cmd(child_argv.front(),
                        std::vector<std::string>(child_argv.begin() + 1, child_argv.end()));
    if (!apply_environment(o, cmd, log)) return exit_drover_failed;
    if (o.cwd) cmd.cwd(*o.cwd);
    if (!apply_stdio(o, capture, cmd, log)) return exit_drover_failed;
    cmd.stop_signal(stop.signal)
        .stop_grace(std::chrono::duration_cast<std::chrono::steady_clock::duration>(stop.grace))
        .cgroup(o.cgroup      ? drover::cgroup_mode::required
                : o.no_cgroup ? drover::cgroup_mode::off
                              : drover::cgroup_mode::automatic);
    if (!apply_process_limits(o, cmd, log) || !apply_identity(o, cmd, log)) return exit_drover_failed;
    if (unshare) cmd.unshare(*unshare);
    if (child_argv != o.argv) {
        // The child is drover, as the namespace's init: until its main() has blocked them, a
        // signal it has no handler for would be discarded (the kernel spares an init those), and
        // a stop sent early would land only as the SIGKILL after the grace. Blocked from the
        // start, they stay pending until its signalfd reads them.
        cmd.blocked_signals({std::begin(handled_signals), std::end(handled_signals)});
    }
    if (!apply_cgroup_limits(o, cmd, log)) return exit_drover_failed;
    warn_shell_syntax(o, log);
    return run_plan{std::move(cmd), stop.timeout, capture, capture_opts, pty_size, signal_tree};
}

} // namespace drover::cli
