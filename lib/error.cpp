#include "drover/error.hpp"

namespace drover {
namespace {

class drover_category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "drover"; }
    std::string message(int ev) const override {
        switch (static_cast<errc>(ev)) {
        case errc::not_running:
            return "the process is not running (already exited or reaped)";
        case errc::not_piped:
            return "that stdio stream is not a pipe";
        case errc::invalid_command:
            return "invalid command";
        case errc::no_launcher:
            return "the kernel refused every way to create a process";
        case errc::timed_out:
            return "timed out; the process tree was stopped";
        case errc::no_cgroup:
            return "no writable cgroup v2 hierarchy";
        case errc::stale:
            return "the process exited while it was read, and its pid now names another process";
        case errc::malformed_proc:
            return "a /proc file is not in the format the kernel documents";
        case errc::invalid_service:
            return "invalid service";
        case errc::unknown_service:
            return "no such service";
        case errc::service_in_use:
            return "another service depends on it";
        case errc::service_failed:
            return "the service failed";
        case errc::shutting_down:
            return "the supervisor is shutting down";
        case errc::not_supported:
            return "not supported by this backend";
        }
        return "unknown drover error " + std::to_string(ev);
    }
};

} // namespace

const boost::system::error_category& category() noexcept {
    static const drover_category c;
    return c;
}

std::string_view to_string(spawn_stage s) noexcept {
    switch (s) {
    case spawn_stage::none:
        return "none";
    case spawn_stage::prepare:
        return "prepare";
    case spawn_stage::resolve:
        return "resolve";
    case spawn_stage::open_stdio:
        return "open stdio";
    case spawn_stage::clone:
        return "clone";
    case spawn_stage::pidfd:
        return "pidfd";
    case spawn_stage::signals:
        return "signals";
    case spawn_stage::session:
        return "setsid";
    case spawn_stage::stdio:
        return "stdio";
    case spawn_stage::terminal:
        return "terminal";
    case spawn_stage::cgroup:
        return "cgroup";
    case spawn_stage::cwd:
        return "chdir";
    case spawn_stage::namespaces:
        return "namespaces";
    case spawn_stage::mounts:
        return "mounts";
    case spawn_stage::capabilities:
        return "capabilities";
    case spawn_stage::setgroups:
        return "setgroups";
    case spawn_stage::setgid:
        return "setgid";
    case spawn_stage::setuid:
        return "setuid";
    case spawn_stage::parent_death:
        return "parent death signal";
    case spawn_stage::limits:
        return "resource limits";
    case spawn_stage::privileges:
        return "no_new_privs";
    case spawn_stage::close_fds:
        return "close fds";
    case spawn_stage::exec:
        return "exec";
    case spawn_stage::register_io:
        return "register with io_context";
    }
    return "?";
}

std::string spawn_failure::message() const {
    std::string m =
        "cannot spawn '" + program + "': " + std::string(to_string(stage)) + ": " + code.message();
    if (!detail.empty()) m += " (" + detail + ")";
    return m;
}

spawn_error::spawn_error(spawn_failure f)
    : boost::system::system_error(f.code, f.message()), failure_(std::move(f)) {}

} // namespace drover
