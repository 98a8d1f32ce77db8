// drover (private): the parent-side preparation of a spawn that needs no syscalls beyond
// stat/access: the child's environment and the program's path.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "drover/command.hpp"
#include "drover/error.hpp"

namespace drover::detail {

/// The child's environment as `KEY=VALUE` strings, built from `parent_env` (a NULL-terminated
/// array like `environ`) and the command's base and operations. Fails with
/// `errc::invalid_command` (and `detail` naming the entry) on an empty key, `=` or NUL in a key,
/// or NUL in a value.
bool build_environment(const command& cmd, char* const* parent_env, std::vector<std::string>& out,
                       spawn_failure& f);

/// The identity a child takes, resolved from names in the parent.
struct identity {
    std::optional<uid_t> uid;
    std::optional<gid_t> gid;
    std::optional<std::vector<gid_t>> groups; ///< the supplementary groups to set
    std::string description;                  ///< "user 'nobody' (uid 65534)", for messages
};

/// Resolves `user()`, `group()` and `supplementary_groups()` (names through the user and group
/// databases, or numbers). Without group(): the user's primary group (a numeric uid with no
/// entry needs an explicit group). Without supplementary_groups(): the user's groups
/// (getgrouplist), or none when only a group is given. Fails with `errc::invalid_command`.
bool resolve_identity(const command& cmd, identity& out, spawn_failure& f);

/// NOTIFY_SOCKET, WATCHDOG_*, LISTEN_* and DROVER_*: the supervisor's own variables, not
/// inherited by default.
bool is_supervisor_variable(std::string_view key) noexcept;

/// The value of `key` in a `KEY=VALUE` list, or nullptr.
const std::string* find_env(const std::vector<std::string>& env, std::string_view key) noexcept;

/// Resolves `program` as `execve` will be given it. A name containing `/` is returned as is.
/// A bare name is searched in `path_list` (colon-separated); empty and relative entries are
/// skipped (never the current directory). Returns the path, or fails with ENOENT (nowhere) or
/// EACCES (found, but not an executable regular file) at stage `resolve`.
bool resolve_program(const std::string& program, std::string_view path_list, std::string& out,
                     spawn_failure& f);

/// The PATH used to resolve a bare program name: the child's PATH if it has one, else the
/// parent's, else the system default from `confstr(_CS_PATH)`.
std::string search_path_for(const std::vector<std::string>& child_env);

} // namespace drover::detail
