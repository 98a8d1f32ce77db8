// drover (the program): `drover up`, a set of services from drover.toml or a Procfile, kept
// running by one drover::supervisor; and `drover ctl`, which talks to it.
#pragma once

#include "command_line.hpp"

namespace spdlog {
class logger;
}

namespace drover::up {

/// `drover up`'s exit status for a config that cannot be used (nothing was started).
constexpr int exit_config_error = 2;

/// Runs `drover up` until a requested shutdown, or a permanent failure of a service that says
/// `exit_on_failure`, or until no service is left running or waiting. Returns the exit status:
/// 0 after a clean stop, 1 after a failure, 2 for a config error, 125 when drover could not start.
int up_main(const cli::up_options& o, spdlog::logger& log);

/// Runs `drover ctl`.
int ctl_entry(const cli::ctl_options& o, spdlog::logger& log);

} // namespace drover::up
