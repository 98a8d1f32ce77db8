// drover (private): what both launchers (lib/detail/launch_linux.cpp, the clone3 backend, and
// lib/detail/launch_portable.cpp, the Boost.Process v2 backend) check and build the same way in
// the parent: arguments, the program's path, argv and envp, resource limits, the signal mask.
#pragma once

#include <string>
#include <vector>

#include "detail/raw_child.hpp"
#include "drover/command.hpp"
#include "drover/error.hpp"

namespace drover::detail {

/// Fills `f` with errc::invalid_command at stage prepare; returns false.
bool invalid_command(spawn_failure& f, std::string detail);

/// No NUL byte in an argument or argv[0].
bool check_arguments(const command& cmd, spawn_failure& f);

/// The program's path, environment and working directory, with the argv/envp arrays that point
/// into them (so this must not move once the arrays are built).
struct program_image {
    std::vector<std::string> env;
    std::string path;
    std::string cwd; ///< empty: the parent's
    std::string arg0;
    std::vector<char*> argv;
    std::vector<char*> envp;
};

/// The environment, the program's path (PATH lookup), the working directory, argv and envp.
bool prepare_program(const command& cmd, program_image& s, spawn_failure& f);

/// The command's resource limits, checked (the child sets them), plus the conventional soft
/// NOFILE of 1024 when the command sets none and this process raised its own
/// (docs/reliability.md row B6).
bool plan_rlimits(const command& cmd, std::vector<rlimit64_arg>& out, spawn_failure& f);

/// The signal mask the program starts with (bit sig-1), from `blocked_signals()`; and the parent
/// death signal, checked.
bool plan_signals(const command& cmd, unsigned long& mask, spawn_failure& f);

/// Whether the child needs setgroups: `want` differs from this process's supplementary groups.
bool groups_differ(std::vector<gid_t> want);

} // namespace drover::detail
