#include "drover/child.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include <cerrno>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/post.hpp>

#include "detail/child_impl.hpp"
#include "detail/launch.hpp"
#include "detail/log.hpp"
#include "detail/sys.hpp"

namespace asio = boost::asio;

namespace drover {
namespace detail {

std::optional<exit_status> try_reap(child_impl& c, error_code& ec) noexcept {
    ec.clear();
    if (c.status) return c.status;
    siginfo_t si{};
    for (;;) {
        if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(c.pidfd.native_handle()), &si,
                     WEXITED | WNOHANG | __WALL) == 0)
            break;
        if (errno == EINTR) continue;
        if (errno == ECHILD) {
            // Someone else reaped it (a host waiting with __WALL): it has exited. The kernel
            // may still know how (Linux 6.15+).
            c.status = pidfd_exit_info(c.pidfd.native_handle()).value_or(exit_status::unknown());
            c.pid = -1;
            return c.status;
        }
        ec = error_code(errno, boost::system::system_category());
        return std::nullopt;
    }
    if (si.si_pid == 0) return std::nullopt; // still running: a spurious wake-up
    switch (si.si_code) {
    case CLD_EXITED: c.status = exit_status::exited(si.si_status); break;
    case CLD_KILLED: c.status = exit_status::signaled(si.si_status, false); break;
    case CLD_DUMPED: c.status = exit_status::signaled(si.si_status, true); break;
    default: c.status = exit_status::unknown(); break;
    }
    c.pid = -1;
    return c.status;
}

bool pidfd_ready(child_impl& c) noexcept {
    pollfd p{c.pidfd.native_handle(), POLLIN, 0};
    int r;
    do r = ::poll(&p, 1, 0);
    while (r < 0 && errno == EINTR);
    return r > 0;
}

namespace {

// Asio's epoll reactor is edge-triggered and does not remember an edge that arrived while no
// operation was queued. When another thread runs the reactor, the child may exit between our
// check and the queueing of the wait, and that edge would be lost. So, after queueing, look
// once more; if the process has exited, cancel the queued waits: each one re-checks, finds the
// status and completes with it.
void close_lost_wakeup_window(child_impl& c) {
    if (pidfd_ready(c)) {
        error_code ignored;
        c.pidfd.cancel(ignored);
    }
}

struct wait_op {
    std::shared_ptr<child_impl> impl;
    bool started = false;

    template <typename Self>
    void operator()(Self& self, error_code ec = {}) {
        const bool first = !started;
        started = true;
        error_code rec;
        auto st = try_reap(*impl, rec);
        if (rec) return self.complete(rec, exit_status::unknown());
        if (st) {
            // Never complete inline from the initiating function: go through the io executor
            // first, then dispatch to the handler's own executor. (Boost 1.81's
            // any_completion_executor cannot be required to be non-blocking, so no post(self).)
            if (first) {
                auto ex = impl->pidfd.get_executor();
                return asio::post(ex, [self = std::move(self)]() mutable { asio::dispatch(std::move(self)); });
            }
            return self.complete(error_code{}, *st);
        }
        if (ec) return self.complete(ec, exit_status::unknown()); // cancelled, still running
        auto keep = impl;
        impl->pidfd.async_wait(asio::posix::descriptor_base::wait_read, std::move(self));
        close_lost_wakeup_window(*keep);
    }
};

} // namespace

void reap_in_background(std::shared_ptr<child_impl> c) {
    error_code ec;
    if (try_reap(*c, ec) || ec) return;
    auto& raw = *c;
    raw.pidfd.async_wait(asio::posix::descriptor_base::wait_read,
                         [c = std::move(c)](error_code) mutable { reap_in_background(std::move(c)); });
    close_lost_wakeup_window(raw);
}

} // namespace detail

child::child() noexcept = default;
child::child(std::shared_ptr<detail::child_impl> impl) noexcept : impl_(std::move(impl)) {}
child::child(child&&) noexcept = default;

child& child::operator=(child&& o) noexcept {
    if (this != &o) {
        child old(std::move(*this)); // applies the destructor policy to what we held
        impl_ = std::move(o.impl_);
    }
    return *this;
}

child::~child() {
    if (!impl_ || impl_->status) return;
    if (detail::sys_pidfd_send_signal(impl_->pidfd.native_handle(), SIGKILL) == 0)
        detail::log_debug("killed '{}' (pid {}): its child handle was destroyed", impl_->program,
                          impl_->pid);
    try {
        detail::reap_in_background(std::move(impl_));
    } catch (...) {
        // Out of memory while queueing the reaper: the process is killed; it stays a zombie
        // until drover's process exits. Nothing else can be done in a destructor.
    }
}

child::executor_type child::get_executor() const {
    if (!impl_) throw boost::system::system_error(errc::not_running, "child::get_executor");
    return impl_->pidfd.get_executor();
}

std::optional<pid_t> child::id() const noexcept {
    if (!impl_ || impl_->pid < 0) return std::nullopt;
    return impl_->pid;
}

int child::native_handle() const noexcept {
    return impl_ ? impl_->pidfd.native_handle() : -1;
}

std::optional<exit_status> child::status() const noexcept {
    return impl_ ? impl_->status : std::nullopt;
}

void child::signal(int sig, error_code& ec) noexcept {
    ec.clear();
    if (!impl_ || impl_->status) {
        ec = errc::not_running;
        return;
    }
    // A process that has exited but is not reaped yet would accept (and ignore) the signal;
    // say that it is not running instead. The pidfd guarantees that no process that reused the
    // pid is ever reached.
    if (detail::pidfd_ready(*impl_)) {
        ec = errc::not_running;
        return;
    }
    if (detail::sys_pidfd_send_signal(impl_->pidfd.native_handle(), sig) == 0) return;
    ec = errno == ESRCH ? error_code(errc::not_running)
                        : error_code(errno, boost::system::system_category());
}

void child::signal(int sig) {
    error_code ec;
    signal(sig, ec);
    if (ec) throw boost::system::system_error(ec, "signal");
}

std::optional<exit_status> child::try_wait(error_code& ec) noexcept {
    ec.clear();
    if (!impl_) {
        ec = errc::not_running;
        return std::nullopt;
    }
    return detail::try_reap(*impl_, ec);
}

std::optional<exit_status> child::try_wait() {
    error_code ec;
    auto st = try_wait(ec);
    if (ec) throw boost::system::system_error(ec, "try_wait");
    return st;
}

void child::async_wait_impl(std::shared_ptr<detail::child_impl> impl,
                            asio::any_completion_handler<wait_signature> handler) {
    if (!impl) throw boost::system::system_error(errc::not_running, "async_wait on an empty child");
    auto& sd = impl->pidfd;
    asio::async_compose<asio::any_completion_handler<wait_signature>, wait_signature>(
        detail::wait_op{std::move(impl)}, handler, sd);
}

void child::detach() {
    if (!impl_) return;
    auto impl = std::move(impl_);
    if (!impl->status) detail::reap_in_background(std::move(impl));
}

namespace {
template <typename Pipe>
Pipe& pipe_or_throw(const std::shared_ptr<detail::child_impl>& impl, std::optional<Pipe> detail::child_impl::*member,
                    const char* what) {
    if (!impl || !((*impl).*member))
        throw boost::system::system_error(errc::not_piped, what);
    return *((*impl).*member);
}
} // namespace

asio::writable_pipe& child::std_in() { return pipe_or_throw(impl_, &detail::child_impl::in, "std_in"); }
asio::readable_pipe& child::std_out() { return pipe_or_throw(impl_, &detail::child_impl::out, "std_out"); }
asio::readable_pipe& child::std_err() { return pipe_or_throw(impl_, &detail::child_impl::err, "std_err"); }

// ---- spawn -----------------------------------------------------------------------------------

child spawn(const asio::any_io_executor& ex, const command& cmd, spawn_failure& f) noexcept {
    try {
        f = spawn_failure{};
        f.program = cmd.program();
        detail::launched l;
        if (!detail::launch(cmd, l, f)) {
            detail::log_debug("{}", f.message());
            return {};
        }
        auto impl = std::make_shared<detail::child_impl>(ex);
        impl->program = cmd.program();
        error_code ec;
        impl->pidfd.assign(l.pidfd.get(), ec);
        if (!ec) {
            l.pidfd.release();
            impl->pid = l.pid;
            if (l.parent_end[0] && !ec) impl->in.emplace(ex).assign(l.parent_end[0].get(), ec);
            if (!ec) l.parent_end[0].release();
            if (l.parent_end[1] && !ec) impl->out.emplace(ex).assign(l.parent_end[1].get(), ec);
            if (!ec) l.parent_end[1].release();
            if (l.parent_end[2] && !ec) impl->err.emplace(ex).assign(l.parent_end[2].get(), ec);
            if (!ec) l.parent_end[2].release();
        }
        if (ec) {
            // The process runs but cannot be supervised: kill and reap it now (it dies at once).
            int fd = impl->pidfd.is_open() ? impl->pidfd.native_handle() : l.pidfd.get();
            detail::sys_pidfd_send_signal(fd, SIGKILL);
            siginfo_t si{};
            while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(fd), &si, WEXITED | __WALL) != 0 &&
                   errno == EINTR) {
            }
            f.code = ec;
            f.stage = spawn_stage::register_io;
            return {};
        }
        return child(std::move(impl));
    } catch (const std::bad_alloc&) {
        f.code = error_code(ENOMEM, boost::system::system_category());
        f.stage = spawn_stage::prepare;
        return {};
    }
}

child spawn(const asio::any_io_executor& ex, const command& cmd) {
    spawn_failure f;
    child c = spawn(ex, cmd, f);
    if (f) throw spawn_error(std::move(f));
    return c;
}

child spawn(const asio::any_io_executor& ex, const command& cmd, error_code& ec) noexcept {
    spawn_failure f;
    child c = spawn(ex, cmd, f);
    ec = f.code;
    return c;
}

} // namespace drover
