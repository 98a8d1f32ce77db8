// drover (the program): the configuration `drover up` reads: a drover.toml (docs/config.md) or a
// Procfile, turned into the library's service specs plus what only the program acts on (log
// files, exit on failure). The TOML parser stays inside config.cpp, so only that file pays for it.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "drover/service.hpp"

namespace drover::up {

/// A service's output also written to a file, rotated at `max_size` with `keep` old files.
struct log_file_spec {
    std::string path; ///< relative paths already resolved against the config file's directory
    std::size_t max_size = 10 * 1024 * 1024;
    unsigned keep = 5;
    bool operator==(const log_file_spec&) const = default;
};

/// What `drover up` does for a service beyond what the supervisor does.
struct service_options {
    std::optional<log_file_spec> log_file;
    /// When the service ends in `failed`, `drover up` stops everything and exits non-zero.
    bool exit_on_failure = false;
    bool operator==(const service_options&) const = default;
};

struct config {
    std::string path; ///< the file read, as given
    enum class format { toml, procfile } kind = format::toml;
    std::vector<drover::service> services; ///< in file order
    std::vector<drover::service_group> groups;
    std::map<std::string, service_options> options; ///< by service name; every service has one
    bool exit_on_failure = false;                   ///< [drover] exit_on_failure: the default
    std::chrono::nanoseconds shutdown_grace = std::chrono::seconds(10); ///< [drover] shutdown_grace
};

/// A problem in a configuration file. `what()` is "FILE:LINE:COLUMN: KEY: MESSAGE"; the line and
/// column are left out when unknown (0), the key when there is none (a syntax error). `message`
/// ends with " (did you mean 'X'?)" when a near valid spelling exists.
struct config_error : std::runtime_error {
    config_error(std::string file, int line, int column, std::string key, std::string message);
    std::string file;
    std::string key; ///< dotted, from the top: "service.web.restart"
    std::string message;
    int line = 0;
    int column = 0;
};

/// Reads `path`: a Procfile when its name starts with "Procfile" (with the `.env` beside it),
/// else a drover.toml. `getenv` looks up the variables of `${VAR}` (default: the process's
/// environment). Checks everything the supervisor would refuse too, and that users and groups
/// exist. Throws config_error for the first problem found.
config load_config(const std::string& path,
                   std::function<std::optional<std::string>(const std::string&)> getenv = {});

/// The file `drover up` reads without -f, in `dir`: drover.toml, else Procfile; empty when there
/// is neither.
std::string find_config(const std::string& dir);

/// `drover up --check`: the resolved plan, for a person: the start order (dependencies first),
/// then for each service its command (argv, escaped), directory, what it waits for, readiness,
/// health check, restart policy, stop, log file; then the groups.
std::string describe_plan(const config& cfg);

} // namespace drover::up
