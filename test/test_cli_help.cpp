// drover's help and its answers to mistakes: parse_command_line called directly (the program's
// command line is parsed without side effects), and the bash completion script it describes.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "command_line.hpp"
#include "completion.hpp"

namespace {

using drover::cli::command_line;

struct parsed {
    command_line cl;
    std::string out, err, log;
};

parsed parse(std::initializer_list<const char*> args) {
    std::vector<const char*> argv{"drover"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::ostringstream out, err, logs;
    spdlog::logger log("test", std::make_shared<spdlog::sinks::ostream_sink_st>(logs));
    log.set_pattern("drover: %l: %v");
    parsed p;
    p.cl = drover::cli::parse_command_line(static_cast<int>(argv.size()), argv.data(), log, out, err);
    p.out = out.str();
    p.err = err.str();
    p.log = logs.str();
    return p;
}

bool has(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

/// Runs `script` with bash; its exit status (-1 if it could not run).
int bash(const std::string& script) {
    char path[] = "/tmp/drover-test-completion-XXXXXX";
    int fd = ::mkstemp(path);
    if (fd < 0) return -1;
    ::close(fd);
    std::ofstream(path) << script;
    int rc = std::system(("bash " + std::string(path) + " >/dev/null 2>&1").c_str());
    ::unlink(path);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string completion_script() {
    auto p = parse({"completion", "bash"});
    std::ostringstream s;
    drover::cli::write_completion(s, p.cl.shell, p.cl.commands);
    return s.str();
}

} // namespace

TEST_SUITE("cli-help") {

    TEST_CASE("an unknown command is named, with the nearest one") {
        auto p = parse({"rn", "--", "true"});
        CHECK(p.cl.what == command_line::action::exit);
        CHECK(p.cl.exit_code == drover::cli::exit_drover_failed);
        CHECK(has(p.err, "drover: 'rn' is not a drover command; did you mean 'run'?"));
        CHECK(has(p.err, "See 'drover --help'."));

        // Nothing near: the commands, to choose from.
        p = parse({"frobnicate"});
        CHECK(p.cl.exit_code == drover::cli::exit_drover_failed);
        CHECK(has(p.err,
                  "drover: 'frobnicate' is not a drover command; the commands are: run, inspect, ps, up, "
                  "ctl, completion"));
        CHECK_FALSE(has(p.err, "did you mean"));
    }

    TEST_CASE("drover alone prints the short usage and fails") {
        auto p = parse({});
        CHECK(p.cl.what == command_line::action::exit);
        CHECK(p.cl.exit_code == drover::cli::exit_drover_failed);
        CHECK(has(p.err, "usage: drover [OPTIONS] COMMAND [ARGS...]"));
        for (const char* c : {"run", "inspect", "ps", "up", "ctl", "completion"})
            CHECK(has(p.err, std::string("  ") + c + " "));
        CHECK(p.out.empty());
    }

    TEST_CASE("an unknown option of drover run is named, with the nearest one") {
        auto p = parse({"run", "--tiemout", "1s", "--", "true"});
        CHECK(p.cl.what == command_line::action::exit);
        CHECK(p.cl.exit_code == drover::cli::exit_drover_failed);
        CHECK(has(p.err, "drover run: unknown option '--tiemout'; did you mean '--timeout'?"));
        CHECK(p.err == "drover run: unknown option '--tiemout'; did you mean '--timeout'?\n"
                       "See 'drover run --help'.\n");

        p = parse({"run", "--tiemout=1s", "--", "true"});
        CHECK(has(p.err, "drover run: unknown option '--tiemout'; did you mean '--timeout'?"));

        // The start of one option only.
        p = parse({"run", "--max-out", "1M", "--", "true"});
        CHECK(has(p.err, "did you mean '--max-output'?"));

        // Nothing near: where a command's own options go.
        p = parse({"run", "-x", "ls"});
        CHECK(p.cl.exit_code == drover::cli::exit_drover_failed);
        CHECK(
            has(p.err, "drover run: unknown option '-x' (the command and its own options go after drover's"));
    }

    TEST_CASE("unknown options of up and ctl are usage errors (2), with the nearest one") {
        auto p = parse({"up", "--chek"});
        CHECK(p.cl.what == command_line::action::exit);
        CHECK(p.cl.exit_code == 2);
        CHECK(has(p.err, "drover up: unknown option '--chek'; did you mean '--check'?"));
        CHECK(p.err ==
              "drover up: unknown option '--chek'; did you mean '--check'?\nSee 'drover up --help'.\n");

        p = parse({"ctl", "status", "--jsn"});
        CHECK(p.cl.exit_code == 2);
        CHECK(has(p.err, "drover ctl status: unknown option '--jsn'; did you mean '--json'?"));

        p = parse({"up", "--log-format", "xml"});
        CHECK(p.cl.exit_code == 2);
        CHECK(has(p.err, "drover up: --log-format: xml not in {text,json}"));

        p = parse({"inspect", "--jsn", "1"});
        CHECK(p.cl.exit_code == drover::cli::exit_drover_failed);
        CHECK(has(p.err, "drover inspect: unknown option '--jsn'; did you mean '--json'?"));
    }

    TEST_CASE("an unknown ctl verb is named, with the nearest one") {
        auto p = parse({"ctl", "restrat", "web"});
        CHECK(p.cl.what == command_line::action::exit);
        CHECK(p.cl.exit_code == 2);
        CHECK(has(p.err, "drover ctl: 'restrat' is not a drover ctl command; did you mean 'restart'?"));
        CHECK(has(p.err, "See 'drover ctl --help'."));

        p = parse({"ctl", "frob"});
        CHECK(p.cl.exit_code == 2);
        CHECK(has(p.err,
                  "drover ctl: 'frob' is not a drover ctl command; the commands are: status, start, stop, "
                  "restart, logs, reload, shutdown, check"));

        // A word after a verb that takes none is not taken for a verb.
        p = parse({"ctl", "reload", "web"});
        CHECK(p.cl.exit_code == 2);
        CHECK(has(p.err, "drover ctl reload: unexpected argument 'web'\nSee 'drover ctl reload --help'.\n"));

        p = parse({"ctl"});
        CHECK(p.cl.exit_code == 2);
        CHECK(has(p.err, "usage: drover ctl [OPTIONS] COMMAND [ARGS...]"));
    }

    TEST_CASE("ctl's own options also work after the verb") {
        auto p = parse({"ctl", "status", "--socket", "/tmp/x.sock", "--json"});
        REQUIRE(p.cl.what == command_line::action::ctl);
        CHECK(p.cl.ctl.verb == "status");
        CHECK(p.cl.ctl.socket == "/tmp/x.sock");
        CHECK(p.cl.ctl.json);

        // logs has its own -f (--follow): that one wins there.
        p = parse({"ctl", "-f", "a.toml", "logs", "-f", "web"});
        REQUIRE(p.cl.what == command_line::action::ctl);
        CHECK(p.cl.ctl.file == "a.toml");
        CHECK(p.cl.ctl.follow);
        CHECK(p.cl.ctl.names == std::vector<std::string>{"web"});
    }

    TEST_CASE("help shows the examples of up and ctl; --version") {
        auto p = parse({"up", "--help"});
        CHECK(p.cl.what == command_line::action::exit);
        CHECK(p.cl.exit_code == 0);
        CHECK(has(p.out, "Usage: drover up [OPTIONS] [SERVICE...]"));
        CHECK(has(p.out, "Examples:\n  drover up "));
        CHECK(has(p.out, "drover up --check"));
        CHECK(has(p.out, "Exit status: 0 stopped cleanly"));
        CHECK(p.err.empty());

        p = parse({"ctl", "--help"});
        CHECK(p.cl.exit_code == 0);
        CHECK(has(p.out, "drover ctl restart web"));
        CHECK(has(p.out, "3 no drover up is listening"));

        p = parse({"--help"});
        CHECK(p.cl.exit_code == 0);
        CHECK(has(p.out, "completion"));
        CHECK(has(p.out, "source <(drover completion bash)"));

        p = parse({"--version"});
        CHECK(p.cl.exit_code == 0);
        CHECK(has(p.out, "drover "));
    }

    TEST_CASE("completion: the action and the command tree") {
        auto p = parse({"completion", "bash"});
        REQUIRE(p.cl.what == command_line::action::completion);
        CHECK(p.cl.shell == "bash");
        const auto& root = p.cl.commands;
        CHECK(root.name == "drover");
        std::vector<std::string> names;
        for (const auto& c : root.subcommands) names.push_back(c.name);
        CHECK(names == std::vector<std::string>{"run", "inspect", "ps", "up", "ctl", "completion"});
        for (const auto& c : root.subcommands) {
            if (c.name == "run") CHECK(c.rest_is_command);
            if (c.name != "up") continue;
            bool log_format = false;
            for (const auto& o : c.options)
                if (o.names == std::vector<std::string>{"--log-format"}) {
                    log_format = true;
                    CHECK(o.takes_value);
                    CHECK(o.choices == std::vector<std::string>{"text", "json"});
                }
            CHECK(log_format);
            REQUIRE(c.positionals.size() == 1);
            CHECK(c.positionals[0].names == std::vector<std::string>{"SERVICE"});
        }

        p = parse({"completion", "zsh"});
        CHECK(p.cl.what == command_line::action::exit);
        CHECK(p.cl.exit_code == drover::cli::exit_drover_failed);
        CHECK(has(p.err, "drover completion: SHELL: zsh not in {bash}"));
    }

    TEST_CASE("completion: bash accepts the script, and it completes") {
        const std::string script = completion_script();
        CHECK(has(script, "complete -F _drover drover"));
        CHECK(bash("set -e\n" + script + "\ncomplete -p drover\n") == 0);
        // A word at a time, as bash's completion would call it.
        CHECK(bash(script + R"(
comp() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=(); _drover; echo "${COMPREPLY[*]}"; }
[[ $(comp drover ct) == ctl ]] || exit 1
[[ $(comp drover ctl rel) == reload ]] || exit 2
[[ $(comp drover run --tim) == --timeout ]] || exit 3
[[ $(comp drover up --log-format '') == 'text json' ]] || exit 4
[[ $(comp drover completion '') == bash ]] || exit 5
dir=$(mktemp -d) && cd "$dir" || exit 6
printf '[service.db]\ncommand = ["db"]\n\n[service.web]\ncommand = ["web"]\n[service.web.env]\nA = "1"\n' >drover.toml
printf 'worker: ./worker\n' >Procfile.dev
[[ $(comp drover ctl restart '') == 'db web' ]] || exit 7
[[ $(comp drover up -f Procfile.dev '') == worker ]] || exit 8
cd / && rm -r "$dir"
)") == 0);
    }

#ifdef DROVER_BIN
    TEST_CASE("completion: drover completion bash | bash -n") {
        // The build's program, or suite portable's (DROVER_TEST_BIN; test/support.hpp: drover_bin).
        const char* test_bin = std::getenv("DROVER_TEST_BIN");
        const std::string bin = test_bin != nullptr && *test_bin != '\0' ? test_bin : DROVER_BIN;
        CHECK(bash(std::string("set -o pipefail\n'") + bin + "' completion bash | bash -n\n") == 0);
        CHECK(bash(std::string("source <('") + bin + "' completion bash) && complete -p drover\n") == 0);
        // Mistakes exit as documented.
        CHECK(bash(std::string("'") + bin + "' frobnicate; [ $? = 125 ]\n") == 0);
        CHECK(bash(std::string("'") + bin + "' up --chek; [ $? = 2 ]\n") == 0);
    }
#endif

} // TEST_SUITE
