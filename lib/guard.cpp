#include "drover/guard.hpp"

#include <limits.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <new>
#include <string_view>
#include <utility>

#include <boost/asio/buffer.hpp>
#include <boost/asio/write.hpp>

#include "drover/reaper.hpp"

namespace drover {
namespace detail {

struct guard_access {
    static tree_guard make(child c) noexcept {
        tree_guard g;
        g.guard_ = std::move(c);
        return g;
    }
};

namespace {

/// This program's path for the guard's argv[0] (so `ps` shows what runs), or /proc/self/exe
/// when the link cannot be read or no longer names the file (replaced on disk).
std::string this_program() {
    char buf[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return "/proc/self/exe";
    std::string path(buf, static_cast<std::size_t>(n));
    if (::access(path.c_str(), X_OK) != 0) return "/proc/self/exe";
    return path;
}

} // namespace
} // namespace detail

tree_guard::tree_guard() noexcept = default;
tree_guard::tree_guard(tree_guard&&) noexcept = default;

tree_guard& tree_guard::operator=(tree_guard&& other) noexcept {
    if (this != &other) {
        error_code ignored;
        dismiss(ignored);
        guard_ = std::move(other.guard_);
    }
    return *this;
}

tree_guard::~tree_guard() {
    error_code ignored;
    dismiss(ignored);
}

std::optional<pid_t> tree_guard::id() const noexcept {
    return guard_.id();
}

void tree_guard::dismiss() {
    error_code ec;
    dismiss(ec);
    if (ec) throw boost::system::system_error(ec, "dismissing the tree guard");
}

void tree_guard::dismiss(error_code& ec) noexcept {
    ec.clear();
    if (!guard_.valid()) {
        ec = errc::not_running;
        return;
    }
    try {
        // "d": all is well. The guard exits at once; detach() reaps it in the background.
        boost::asio::write(guard_.std_in(), boost::asio::buffer("d", 1), ec);
        error_code ignored;
        guard_.std_in().close(ignored);
    } catch (const std::bad_alloc&) {
        ec = make_error_code(boost::system::errc::not_enough_memory);
    } catch (const boost::system::system_error& e) {
        ec = e.code();
    }
    guard_.detach();
}

tree_guard guard_tree(const child& c, const guard_options& options, spawn_failure& failure) noexcept {
    failure = {};
    try {
        failure.program = options.program.empty() ? detail::this_program() : options.program;
        const std::optional<pid_t> pid = c.id();
        if (!pid) {
            failure.code = errc::not_running;
            failure.stage = spawn_stage::prepare;
            failure.detail = "the child to guard is not running";
            return {};
        }
        command g(failure.program, {guard_argument, c.cgroup_path().value_or("-"), std::to_string(*pid)});
        // Outside the tree (no cgroup of its own), in its own session (the default), and with
        // no parent-death signal: it has to outlive this process to do its job.
        g.std_in(stdio::pipe())
            .std_out(stdio::null())
            .std_err(stdio::null())
            .cgroup(cgroup_mode::off)
            .parent_death_signal(0)
            .on_cancel(cancel_policy::leave_running);
        child guard = spawn(c.get_executor(), g, failure);
        if (failure) return {};
        return detail::guard_access::make(std::move(guard));
    } catch (const std::bad_alloc&) {
        failure.code = make_error_code(boost::system::errc::not_enough_memory);
        failure.stage = spawn_stage::prepare;
        return {};
    }
}

tree_guard guard_tree(const child& c, const guard_options& options, error_code& ec) noexcept {
    spawn_failure failure;
    tree_guard g = guard_tree(c, options, failure);
    ec = failure.code;
    return g;
}

tree_guard guard_tree(const child& c, const guard_options& options) {
    spawn_failure failure;
    tree_guard g = guard_tree(c, options, failure);
    if (failure) throw spawn_error(std::move(failure));
    return g;
}

std::optional<int> run_guard_if_requested(int argc, const char* const* argv) {
    if (argc < 2 || std::string_view(argv[1]) != guard_argument) return std::nullopt;
    if (argc != 4) return 2;
    const std::string_view cgroup(argv[2]), session(argv[3]);
    pid_t sid = 0;
    auto [end, err] = std::from_chars(session.data(), session.data() + session.size(), sid);
    if (err != std::errc{} || end != session.data() + session.size() || sid <= 0 || cgroup.empty() ||
        (cgroup != "-" && cgroup.front() != '/'))
        return 2;
    // Only SIGKILL ends a guard early: a TERM or HUP meant for everything (a logout, a group
    // kill) must not take it before the process it watches.
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGQUIT}) sigaddset(&set, s);
    ::sigprocmask(SIG_BLOCK, &set, nullptr);
    // "d": dismissed. End-of-file without it: the process that started us is gone.
    char c = 0;
    ssize_t n;
    do n = ::read(0, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n == 1 && c == 'd') return 0;
    kill_abandoned_tree(cgroup == "-" ? std::string() : std::string(cgroup), sid);
    return 0;
}

} // namespace drover
