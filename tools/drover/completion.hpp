// drover (the program): shell completion. `drover completion bash` prints a script made from the
// program's own command tree (the CLI11 app that parses argv, described by command_line.cpp as
// plain data below), so a new command or option is completed without touching this file. This
// part needs no CLI11: only command_line.cpp includes it.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace drover::cli {

/// An option or a positional argument of a command.
struct option_info {
    std::vector<std::string> names;   ///< "-f", "--file"; a positional's single name ("SERVICE")
    bool takes_value = false;         ///< false for a flag
    std::vector<std::string> choices; ///< the only values accepted, when the option says so
};

/// A command of the drover program (the program itself at the root) and its subcommands.
struct command_info {
    std::string name; ///< "drover", "run", "status"
    std::string description;
    std::vector<option_info> options;     ///< what it accepts, with a parent's where they fall through
    std::vector<option_info> positionals; ///< in order
    std::vector<command_info> subcommands;
    bool rest_is_command = false; ///< `drover run`: the first other word starts a command line
};

/// The shells `drover completion` has a script for.
inline const std::vector<std::string>& completion_shells() {
    static const std::vector<std::string> shells{"bash"};
    return shells;
}

/// Writes the completion script for `shell` (one of completion_shells()) of the program
/// described by `root`. The bash script completes commands and options at every level, the
/// listed values of an option, file names after an option that takes any other value, the
/// services of `drover up` and `drover ctl` (the `[service.NAME]` tables of the config given
/// with -f, else of ./drover.toml, else the process types of ./Procfile), and, after `drover
/// run`'s options, the command and its own arguments (with bash-completion's help when loaded).
void write_completion(std::ostream& out, const std::string& shell, const command_info& root);

} // namespace drover::cli
