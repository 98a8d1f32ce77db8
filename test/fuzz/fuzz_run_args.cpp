// `drover run`'s argument parsing: the input, split at NUL bytes, is the argv after
// `drover run`; parse_command_line (CLI11 and the `--` split) then check_run_options (every
// check before a spawn). Nothing is spawned.
#include "command_line.hpp"
#include "parse.hpp"

#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static spdlog::logger log("fuzz", std::make_shared<spdlog::sinks::null_sink_st>());
    const std::string_view s = fuzz::as_text(data, size);
    std::vector<std::string> args{"drover", "run"};
    for (std::size_t start = 0;;) {
        const auto nul = s.find('\0', start);
        args.emplace_back(
            s.substr(start, nul == std::string_view::npos ? std::string_view::npos : nul - start));
        if (nul == std::string_view::npos) break;
        start = nul + 1;
    }
    if (args.size() > 66) return 0;
    for (const auto& a : args)
        if (a.rfind("--env-file", 0) == 0) return 0; // it reads files (parse_env_file has its own target)
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());

    std::ostringstream out, err;
    const auto cl =
        drover::cli::parse_command_line(static_cast<int>(argv.size()), argv.data(), log, out, err);
    using action = drover::cli::command_line::action;
    if (cl.what == action::exit) {
        FUZZ_CHECK(cl.exit_code == 0 || cl.exit_code == drover::cli::exit_drover_failed);
        return 0;
    }
    FUZZ_CHECK(cl.what == action::run);

    const auto checked = drover::cli::check_run_options(cl.run, log);
    if (const int* rc = std::get_if<int>(&checked)) {
        FUZZ_CHECK(*rc == drover::cli::exit_drover_failed);
        return 0;
    }
    const auto& plan = std::get<drover::cli::run_plan>(checked);
    FUZZ_CHECK(!cl.run.argv.empty());
    // The program is the one given, or drover itself as the init of a new pid namespace.
    FUZZ_CHECK(plan.cmd.program() == cl.run.argv.front() || plan.cmd.program() == drover::cli::self_exe());
    // 0 is no limit: a timeout in the plan is a real one, never longer than the clamp.
    if (plan.timeout) FUZZ_CHECK(plan.timeout->count() > 0 && *plan.timeout <= drover::cli::max_duration);
    if (plan.signal_tree) FUZZ_CHECK(cl.run.signal_tree);
    FUZZ_CHECK(plan.cmd.stop_grace().count() >= 0);
    FUZZ_CHECK(plan.capture == (cl.run.capture || cl.run.json));
    if (plan.pty_size) FUZZ_CHECK(cl.run.pty);
    return 0;
}
