// drover inspect / drover ps: what a process is, and the tree under it, from /proc.
#pragma once

#include <sys/types.h>

#include <chrono>

namespace spdlog {
class logger;
}

namespace drover::tool {

/// `drover inspect PID [--json]`: the full record of one process. 0, or 1 when it cannot be read.
int inspect_main(pid_t pid, bool json, spdlog::logger& log);

/// `drover ps PID [--json] [--interval DUR]`: the tree under PID with state, CPU (over
/// `interval`), RSS and uptime. 0, or 1 when PID cannot be read.
int ps_main(pid_t pid, bool json, std::chrono::nanoseconds interval, spdlog::logger& log);

} // namespace drover::tool
