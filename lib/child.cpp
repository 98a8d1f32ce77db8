#include "drover/child.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <functional>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include "detail/cgroup.hpp"
#include "detail/cleanups.hpp"
#include "detail/child_impl.hpp"
#include "detail/fault.hpp"
#include "detail/launch.hpp"
#include "detail/log.hpp"
#include "detail/pipe_writer_access.hpp"
#include "detail/registry.hpp"
#include "detail/spawn_thread.hpp"
#include "detail/sys.hpp"

namespace asio = boost::asio;

namespace drover {
namespace detail {

namespace {
resource_usage to_usage(const struct rusage& ru) noexcept {
    resource_usage u;
    u.user_cpu = std::chrono::seconds(ru.ru_utime.tv_sec) + std::chrono::microseconds(ru.ru_utime.tv_usec);
    u.system_cpu = std::chrono::seconds(ru.ru_stime.tv_sec) + std::chrono::microseconds(ru.ru_stime.tv_usec);
    u.max_rss_kib = ru.ru_maxrss;
    u.minor_faults = ru.ru_minflt;
    u.major_faults = ru.ru_majflt;
    u.voluntary_switches = ru.ru_nvcsw;
    u.involuntary_switches = ru.ru_nivcsw;
    u.input_blocks = ru.ru_inblock;
    u.output_blocks = ru.ru_oublock;
    return u;
}

void mark_reaped(child_impl& c, exit_status st) noexcept {
    c.status = st;
    registry_remove(c.pid);
    c.pid = -1;
}
} // namespace

std::optional<exit_status> try_reap(child_impl& c, error_code& ec) noexcept {
    ec.clear();
    std::lock_guard lock(c.m);
    if (c.status) return c.status;
    siginfo_t si{};
    struct rusage ru {};
    for (;;) {
        // The raw syscall takes a fifth argument glibc's waitid() does not expose: the rusage.
        if (::syscall(SYS_waitid, P_PIDFD, c.pidfd.native_handle(), &si, WEXITED | WNOHANG | __WALL, &ru) == 0)
            break;
        if (errno == EINTR) continue;
        if (errno == ECHILD) {
            // Someone else reaped it (a host waiting with __WALL): it has exited. The kernel
            // may still know how (Linux 6.15+).
            mark_reaped(c, pidfd_exit_info(c.pidfd.native_handle()).value_or(exit_status::unknown()));
            return c.status;
        }
        ec = error_code(errno, boost::system::system_category());
        return std::nullopt;
    }
    if (si.si_pid == 0) return std::nullopt; // still running: a spurious wake-up
    c.usage = to_usage(ru);
    // The OOM killer counts its kill before the process is gone: read while the leaf exists.
    if (c.memory_limited && c.leaf) c.oom_kills = c.leaf->oom_kills();
    switch (si.si_code) {
    case CLD_EXITED: mark_reaped(c, exit_status::exited(si.si_status)); break;
    case CLD_KILLED: mark_reaped(c, exit_status::signaled(si.si_status, false)); break;
    case CLD_DUMPED: mark_reaped(c, exit_status::signaled(si.si_status, true)); break;
    default: mark_reaped(c, exit_status::unknown()); break;
    }
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
        if (first) self.reset_cancellation_state(asio::enable_partial_cancellation());
        error_code rec;
        auto st = try_reap(*impl, rec);
        if (st || (rec && first)) {
            // Never complete inline from the initiating function: go through the io executor
            // first, then dispatch to the handler's own executor. (Boost 1.81's
            // any_completion_executor cannot be required to be non-blocking, so no post(self).)
            if (first) {
                auto ex = impl->pidfd.get_executor();
                return asio::post(ex, [self = std::move(self)]() mutable { asio::dispatch(std::move(self)); });
            }
            if (rec) return self.complete(rec, exit_status::unknown());
            return self.complete(error_code{}, *st);
        }
        if (rec) return self.complete(rec, exit_status::unknown());
        if (ec && self.cancelled() != asio::cancellation_type::none &&
            impl->on_cancel != cancel_policy::leave_running) {
            // Cancelled while the process runs: stop the tree first, then report the abort.
            auto ex = self.get_executor();
            auto c = impl;
            start_stop(c, c->stop_signal, c->stop_grace, c->on_cancel == cancel_policy::kill,
                       asio::bind_executor(ex, [self = std::move(self)](error_code, exit_status st) mutable {
                           self.complete(asio::error::operation_aborted, st);
                       }));
            return;
        }
        if (ec) return self.complete(ec, exit_status::unknown()); // cancelled, left running
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

namespace {

/// Whether anything of the tree may still run (cheap: no /proc walk when the main process was
/// reaped and its process group is empty).
bool tree_maybe_alive(detail::child_impl& c) {
    {
        std::lock_guard lock(c.m);
        if (!c.status) return true;
    }
    if (c.leaf) return c.leaf->populated();
    // The session id cannot have been reused while any member lives (a pgid probe suffices
    // for the common case of a child that left nothing behind).
    return c.session > 0 && ::kill(-c.session, 0) == 0;
}

} // namespace

child::~child() {
    if (!impl_) return;
    auto c = std::move(impl_);
    std::function<void()> finished;
    try {
        // Kill now, synchronously, so the tree dies even if the io_context never runs again;
        // everything else (and all stop state) stays on the child's strand. The cleanup is
        // counted, so a task_group can wait for it (detail/cleanups.hpp).
        finished = detail::cleanup_started(c->pidfd.get_executor());
        detail::stop_handler done = [f = finished](error_code, exit_status) { f(); };
        if (tree_maybe_alive(*c)) {
            detail::log_debug("killing the tree of '{}': its child handle was destroyed", c->program);
            if (c->leaf) c->leaf->kill();
            else detail::sys_pidfd_send_signal(c->pidfd.native_handle(), SIGKILL);
            detail::start_stop(c, SIGKILL, {}, true, std::move(done)); // the rest of the tree, reap, rmdir
        } else {
            detail::start_stop(c, 0, {}, false, std::move(done)); // reap if needed, remove the leaf
        }
    } catch (...) {
        if (finished) finished();
        // Out of memory while queueing the cleanup: the main process stays a zombie until
        // drover's process exits. Nothing else can be done in a destructor.
    }
}

child::executor_type child::get_executor() const {
    if (!impl_) throw boost::system::system_error(errc::not_running, "child::get_executor");
    return impl_->pidfd.get_executor();
}

std::optional<pid_t> child::id() const noexcept {
    if (!impl_) return std::nullopt;
    std::lock_guard lock(impl_->m);
    if (impl_->pid < 0) return std::nullopt;
    return impl_->pid;
}

int child::native_handle() const noexcept {
    return impl_ ? impl_->pidfd.native_handle() : -1;
}

std::optional<exit_status> child::status() const noexcept {
    if (!impl_) return std::nullopt;
    std::lock_guard lock(impl_->m);
    return impl_->status;
}

void child::signal(int sig, error_code& ec) noexcept {
    ec.clear();
    if (!impl_ || status()) {
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
    // Reap the main process when it exits; with a leaf, also watch cgroup.events (no cost
    // while it runs) and remove the leaf once the tree is empty.
    detail::reap_in_background(impl);
    if (impl->leaf) detail::start_stop(impl, 0, {}, false, {});
}

void child::signal_tree(int sig, error_code& ec) {
    ec.clear();
    if (!impl_ || impl_->tree_done || detail::signal_tree_now(*impl_, sig) == 0) ec = errc::not_running;
}

tree_kind child::tree() const noexcept {
    return impl_ && impl_->leaf ? tree_kind::cgroup : tree_kind::session;
}

std::optional<std::string> child::cgroup_path() const {
    if (!impl_ || !impl_->leaf) return std::nullopt;
    return impl_->leaf->path();
}

std::vector<pid_t> child::tree_pids() const {
    if (!impl_) return {};
    return detail::tree_pids(*impl_);
}

void child::async_stop_impl(std::shared_ptr<detail::child_impl> impl, int sig,
                            std::optional<std::chrono::steady_clock::duration> grace, bool kill,
                            asio::any_completion_handler<wait_signature> handler) {
    if (!impl) throw boost::system::system_error(errc::not_running, "async_stop on an empty child");
    if (sig <= 0 || sig >= NSIG) sig = impl->stop_signal;
    auto g = grace.value_or(impl->stop_grace);
    detail::start_stop(impl, kill ? SIGKILL : sig, g, kill, std::move(handler));
}

namespace {

/// async_wait_for: a wait raced against a steady_timer; the timer's expiry runs the stop.
struct timed_wait : std::enable_shared_from_this<timed_wait> {
    timed_wait(std::shared_ptr<detail::child_impl> c, asio::any_completion_handler<child::wait_signature> h)
        : c(std::move(c)), h(std::move(h)), timer(this->c->strand) {}
    std::shared_ptr<detail::child_impl> c;
    asio::any_completion_handler<child::wait_signature> h;
    asio::steady_timer timer;
    asio::cancellation_signal inner; // cancels the inner wait (the user's cancellation)
    bool timed_out = false;
    bool done = false;

    void complete(error_code ec, exit_status st) {
        if (done) return;
        done = true;
        error_code ignored;
        timer.cancel();
        auto slot = asio::get_associated_cancellation_slot(h);
        if (slot.is_connected()) slot.clear();
        auto handler = std::move(h);
        auto ex = asio::get_associated_executor(handler, c->strand);
        asio::dispatch(ex, [handler = std::move(handler), ec, st]() mutable { std::move(handler)(ec, st); });
    }
};

} // namespace

void child::async_wait_for_impl(std::shared_ptr<detail::child_impl> impl, std::chrono::steady_clock::duration timeout,
                                asio::any_completion_handler<wait_signature> handler) {
    if (!impl) throw boost::system::system_error(errc::not_running, "async_wait_for on an empty child");
    auto st = std::make_shared<timed_wait>(impl, std::move(handler));
    auto slot = asio::get_associated_cancellation_slot(st->h);
    if (slot.is_connected()) {
        slot.assign([w = std::weak_ptr<timed_wait>(st)](asio::cancellation_type type) {
            if (!(type & (asio::cancellation_type::terminal | asio::cancellation_type::partial))) return;
            if (auto s = w.lock())
                asio::dispatch(s->c->strand, [s] {
                    if (!s->done && !s->timed_out) s->inner.emit(asio::cancellation_type::terminal);
                });
        });
    }
    asio::dispatch(impl->strand, [st, timeout] {
        st->timer.expires_after(timeout);
        st->timer.async_wait([st](error_code ec) {
            if (ec || st->done) return;
            st->timed_out = true;
            detail::log_debug("'{}': timed out, stopping its process tree", st->c->program);
            detail::start_stop(st->c, st->c->stop_signal, st->c->stop_grace, false,
                               asio::bind_executor(st->c->strand, [st](error_code, exit_status s) {
                                   st->complete(errc::timed_out, s);
                               }));
        });
        async_wait_impl(st->c, asio::bind_cancellation_slot(
                                   st->inner.slot(), asio::bind_executor(st->c->strand, [st](error_code ec, exit_status s) {
                                       if (st->timed_out) return; // the stop completes us
                                       st->complete(ec, s);
                                   })));
    });
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

pipe_writer& child::std_in() { return pipe_or_throw(impl_, &detail::child_impl::in, "std_in"); }
asio::posix::stream_descriptor& child::std_out() { return pipe_or_throw(impl_, &detail::child_impl::out, "std_out"); }
asio::posix::stream_descriptor& child::std_err() { return pipe_or_throw(impl_, &detail::child_impl::err, "std_err"); }
asio::posix::stream_descriptor& child::pty() { return pipe_or_throw(impl_, &detail::child_impl::pty, "pty"); }

void child::resize_pty(unsigned short rows, unsigned short cols) {
    error_code ec;
    resize_pty(rows, cols, ec);
    if (ec) throw boost::system::system_error(ec, "resize_pty");
}

void child::resize_pty(unsigned short rows, unsigned short cols, error_code& ec) noexcept {
    ec.clear();
    if (!impl_ || !impl_->pty || !impl_->pty->is_open()) {
        ec = errc::not_piped;
        return;
    }
    struct winsize ws {};
    ws.ws_row = rows;
    ws.ws_col = cols;
    // The kernel sends SIGWINCH to the terminal's foreground process group when the size changes.
    if (::ioctl(impl_->pty->native_handle(), TIOCSWINSZ, &ws) != 0)
        ec = error_code(errno, boost::system::system_category());
}

std::vector<unapplied_limit> child::unapplied_limits() const {
    if (!impl_) return {};
    return impl_->unapplied;
}

std::optional<std::uint64_t> child::oom_kills() const noexcept {
    if (!impl_) return std::nullopt;
    std::lock_guard lock(impl_->m);
    return impl_->oom_kills;
}

std::optional<resource_usage> child::usage() const noexcept {
    if (!impl_) return std::nullopt;
    std::lock_guard lock(impl_->m);
    return impl_->usage;
}

// ---- spawn -----------------------------------------------------------------------------------

child spawn(const asio::any_io_executor& ex, const command& cmd, spawn_failure& f) noexcept {
    try {
        f = spawn_failure{};
        f.program = cmd.program();
        if (cmd.stop_signal() <= 0 || cmd.stop_signal() >= NSIG) {
            f.code = errc::invalid_command;
            f.stage = spawn_stage::prepare;
            f.detail = "stop signal " + std::to_string(cmd.stop_signal()) + " is not a signal";
            return {};
        }
        std::unique_ptr<detail::cgroup_leaf> leaf;
        std::string no_leaf_why = "the command runs without a cgroup (cgroup_mode::off)";
        if (cmd.cgroup() != cgroup_mode::off) {
            error_code lec;
            std::string why;
            leaf = detail::cgroup_leaf::create(lec, why);
            if (!leaf) no_leaf_why = "no cgroup for the child: " + why;
            if (!leaf && cmd.cgroup() == cgroup_mode::required) {
                f.code = lec == error_code(ENOTSUP, boost::system::system_category()) ? error_code(errc::no_cgroup) : lec;
                f.stage = spawn_stage::cgroup;
                f.detail = why;
                return {};
            }
        }
        if (leaf && leaf->frozen()) {
            // A child cloned into a frozen cgroup freezes before exec, and the clone (vfork
            // semantics) would wait for it forever: refuse instead, in every cgroup mode.
            f.code = error_code(EBUSY, boost::system::system_category());
            f.stage = spawn_stage::cgroup;
            f.detail = "the child's cgroup " + leaf->path() +
                       " is frozen (cgroup.freeze is set on it or a parent); a child placed there could not run";
            return {};
        }
        std::vector<std::pair<std::string, std::string>> not_applied;
        bool memory_limited = false;
        if (leaf) leaf->apply_limits(cmd.cgroup_settings(), not_applied, memory_limited);
        detail::launched l;
        bool ok = false;
        auto do_launch = [&] {
            // In runner mode, clone and register under one lock, so reap_orphans() never takes
            // a child that is ours but not registered yet.
            if (detail::runner_mode()) {
                std::lock_guard lock(detail::spawn_registry_mutex());
                ok = detail::launch(cmd, leaf ? leaf->dir_fd() : -1, l, f);
                if (ok) detail::registry_add_locked(l.pid);
            } else {
                ok = detail::launch(cmd, leaf ? leaf->dir_fd() : -1, l, f);
                if (ok) {
                    std::lock_guard lock(detail::spawn_registry_mutex());
                    detail::registry_add_locked(l.pid);
                }
            }
        };
        auto launch_once = [&] {
            if (cmd.parent_death_signal() != 0 && !detail::on_long_lived_thread(ex)) detail::run_on_spawn_thread(do_launch);
            else do_launch();
        };
        launch_once();
        if (!ok && leaf && f.stage == spawn_stage::cgroup && cmd.cgroup() == cgroup_mode::automatic) {
            // The kernel would not place the child in its leaf (a threaded cgroup, say):
            // automatic mode falls back to the session tree.
            detail::log_debug("{}; retrying without a cgroup", f.message());
            no_leaf_why = "the kernel would not place the child in its cgroup: " + f.message();
            leaf.reset();
            not_applied.clear();
            memory_limited = false;
            f = spawn_failure{};
            f.program = cmd.program();
            launch_once();
        }
        if (!ok) {
            detail::log_debug("{}", f.message());
            return {};
        }
        if (leaf) leaf->launched(); // the child is in it; its directory descriptor is not needed
        std::shared_ptr<detail::child_impl> impl;
        try {
            detail::f_alloc_point();
            impl = std::make_shared<detail::child_impl>(ex);
        } catch (const std::bad_alloc&) {
            // The process runs but cannot be supervised: kill and reap it, never leave it behind.
            detail::sys_pidfd_send_signal(l.pidfd.get(), SIGKILL);
            siginfo_t si{};
            while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(l.pidfd.get()), &si, WEXITED | __WALL) != 0 &&
                   errno == EINTR) {
            }
            detail::registry_remove(l.pid);
            if (leaf) leaf->kill();
            f.code = error_code(ENOMEM, boost::system::system_category());
            f.stage = spawn_stage::register_io; // it ran, but could not be taken under supervision
            return {};
        }
        impl->program = cmd.program();
        if (!leaf) {
            const auto& lim = cmd.cgroup_settings();
            if (lim.memory_max) not_applied.emplace_back("memory_max", no_leaf_why);
            if (lim.pids_max) not_applied.emplace_back("pids_max", no_leaf_why);
            if (lim.cpu_quota) not_applied.emplace_back("cpu_max", no_leaf_why);
        }
        for (auto& [setting, why] : not_applied) impl->unapplied.push_back({std::move(setting), std::move(why)});
        impl->memory_limited = memory_limited;
        impl->leaf = std::move(leaf);
        impl->session = cmd.starts_new_session() ? l.pid : -1;
        impl->stop_signal = cmd.stop_signal();
        impl->stop_grace = cmd.stop_grace();
        impl->on_cancel = cmd.on_cancel();
        error_code ec;
        impl->pidfd.assign(l.pidfd.get(), ec);
        if (!ec) {
            l.pidfd.release();
            impl->pid = l.pid;
            if (l.parent_end[0] && !ec) pipe_writer_access::descriptor(impl->in.emplace(ex)).assign(l.parent_end[0].get(), ec);
            if (!ec) l.parent_end[0].release();
            if (l.parent_end[1] && !ec) impl->out.emplace(ex).assign(l.parent_end[1].get(), ec);
            if (!ec) l.parent_end[1].release();
            if (l.parent_end[2] && !ec) impl->err.emplace(ex).assign(l.parent_end[2].get(), ec);
            if (!ec) l.parent_end[2].release();
            if (l.pty_master && !ec) impl->pty.emplace(ex).assign(l.pty_master.get(), ec);
            if (!ec) l.pty_master.release();
        }
        if (ec) {
            // The process runs but cannot be supervised: kill and reap it now (it dies at once).
            int fd = impl->pidfd.is_open() ? impl->pidfd.native_handle() : l.pidfd.get();
            detail::sys_pidfd_send_signal(fd, SIGKILL);
            siginfo_t si{};
            while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(fd), &si, WEXITED | __WALL) != 0 &&
                   errno == EINTR) {
            }
            detail::registry_remove(l.pid);
            if (impl->leaf) {
                impl->leaf->kill();
                impl->leaf.reset(); // rmdir may fail while the kill completes; the leaf is left
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
