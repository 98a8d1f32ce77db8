// drover: the error category, spawn stages and the spawn error type.
#pragma once

#include <string>
#include <string_view>
#include <type_traits>

#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

namespace drover {

using boost::system::error_code;

/// Domain errors of drover. System failures keep their `errno` in `system_category()`.
enum class errc {
    not_running = 1, ///< the process was already reaped (or never started): nothing to signal
    not_piped,       ///< a stdio stream was requested that was not configured as a pipe
    invalid_command, ///< the command cannot be spawned as written (empty program, NUL byte, bad key)
    no_launcher,     ///< the kernel refused every launcher (clone3, clone, pidfd_open)
    timed_out,       ///< a wait's deadline passed; the process tree was stopped
    no_cgroup,       ///< a cgroup was required but no writable cgroup v2 hierarchy is usable
    stale, ///< /proc data was discarded: the process exited during the read and its pid names another now
    malformed_proc,  ///< a /proc file did not have the format the kernel documents
    invalid_service, ///< a supervisor refused a service spec (see `service_error`)
    unknown_service, ///< no service of that name in the supervisor
    service_in_use,  ///< the service cannot be removed: another one depends on it
    service_failed,  ///< the service failed (its status says why)
    shutting_down,   ///< the supervisor is shutting down (or was destroyed)
    not_supported,   ///< the feature does not exist on this backend (see `backend()`); the
                     ///<   failure's detail names the feature
};

/// The `drover` error category.
const boost::system::error_category& category() noexcept;

inline error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), category()};
}

/// Where a spawn failed. The stages after `clone` run in the child, before `exec`.
enum class spawn_stage {
    none,         ///< no failure
    prepare,      ///< validating the command, building argv/envp
    resolve,      ///< finding the program on PATH (in the parent)
    open_stdio,   ///< opening /dev/null, a file or a pipe for fds 0-2 (in the parent)
    clone,        ///< creating the child process
    pidfd,        ///< obtaining a pidfd for the child (fallback launchers only)
    signals,      ///< resetting signal dispositions in the child
    session,      ///< setsid() in the child
    stdio,        ///< dup2 of fds 0-2 and passed fds in the child
    terminal,     ///< opening a pseudo-terminal (parent) or making it the controlling tty (child)
    cgroup,       ///< creating the child's leaf cgroup (parent) or joining it (child)
    namespaces,   ///< creating namespaces (clone), or writing the user namespace's id maps,
                  ///<   or bringing up the new network namespace's loopback
    mounts,       ///< making mounts private / mounting /proc in a new mount namespace
    cwd,          ///< chdir() in the child
    limits,       ///< setting resource limits (prlimit) in the child
    capabilities, ///< dropping capabilities from the bounding set in the child
    setgroups,    ///< setgroups() in the child (supplementary groups)
    setgid,       ///< setresgid() in the child, verified with getresgid
    setuid,       ///< setresuid() in the child, verified with getresuid
    privileges,   ///< PR_SET_NO_NEW_PRIVS in the child
    parent_death, ///< PR_SET_PDEATHSIG in the child
    close_fds,    ///< closing every fd not passed on purpose, in the child
    exec,         ///< execve() itself
    register_io,  ///< registering the pidfd/pipes with the io_context
};

std::string_view to_string(spawn_stage s) noexcept;

/// Everything known about a failed spawn: what failed, where, for which program, and why.
struct spawn_failure {
    error_code code;                       ///< errno (system_category) or an `errc`
    spawn_stage stage = spawn_stage::none; ///< where it failed
    std::string program;                   ///< the program as given to the command
    std::string detail;                    ///< extra context (a path, the offending argument)

    explicit operator bool() const noexcept { return static_cast<bool>(code); }
    /// "cannot spawn 'prog': exec: Permission denied (/path/prog)".
    std::string message() const;
};

/// Thrown by the throwing `spawn()`: a `system_error` that also names the stage and program.
class spawn_error : public boost::system::system_error {
public:
    explicit spawn_error(spawn_failure f);
    spawn_stage stage() const noexcept { return failure_.stage; }
    const std::string& program() const noexcept { return failure_.program; }
    const spawn_failure& failure() const noexcept { return failure_; }

private:
    spawn_failure failure_;
};

} // namespace drover

template <>
struct boost::system::is_error_code_enum<drover::errc> : std::true_type {};
