#include "drover/child.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#if defined(__linux__)
#include <sys/eventfd.h>
#endif
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <thread>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/strand.hpp>

#include "detail/cgroup.hpp"
#include "detail/cleanups.hpp"
#include "detail/posix.hpp"
#include "detail/child_impl.hpp"
#include "detail/fault.hpp"
#include "detail/log.hpp"
#include "detail/registry.hpp"
#include "detail/stop.hpp"
#include "detail/sys.hpp"
#include "drover/backend.hpp"

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
    if (!c.leaf && c.session > 0 && c.session == c.pid && backend() == backend_kind::linux_native) {
        // A session tree: if the main process has exited (a zombie still holding its pid, so
        // the pid cannot come round again) and it is the last pid the kernel allocated in this
        // pid namespace, nothing was created after it: it never forked, and its session holds
        // nothing but itself. A short-lived child's stop then needs no walk of /proc. Any other
        // allocation (a thread, another program's process) only means the walk is done.
        siginfo_t peek{};
        if (wait_process(c.pidfd.native_handle(), c.pid, &peek, WEXITED | WNOHANG | WNOWAIT, nullptr) == 0 &&
            peek.si_pid != 0)
            c.session_alone.store(last_allocated_pid() == c.pid, std::memory_order_release);
    }
    for (;;) {
        if (wait_process(c.pidfd.native_handle(), c.pid, &si, WEXITED | WNOHANG, &ru) == 0) break;
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
    case CLD_EXITED:
        mark_reaped(c, exit_status::exited(si.si_status));
        break;
    case CLD_KILLED:
        mark_reaped(c, exit_status::signaled(si.si_status, false));
        break;
    case CLD_DUMPED:
        mark_reaped(c, exit_status::signaled(si.si_status, true));
        break;
    default:
        mark_reaped(c, exit_status::unknown());
        break;
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

int signal_main_locked(child_impl& c, int sig) noexcept {
    if (c.status || c.pid <= 0) return errno = ESRCH, -1;
#if defined(__linux__)
    return sys_pidfd_send_signal(c.pidfd.native_handle(), sig);
#else
    // Unreaped by us (under `m`); a host's waitpid(-1) may have reaped it, and then the pid may
    // be anyone's: only while it is still our child (reliability.md, C2: a narrow window is left
    // between this check and the kill).
    if (!still_our_child(c.pid)) return errno = ESRCH, -1;
    return ::kill(c.pid, sig);
#endif
}

int signal_main(child_impl& c, int sig) noexcept {
#if defined(__linux__)
    return sys_pidfd_send_signal(c.pidfd.native_handle(), sig);
#else
    std::lock_guard lock(c.m);
    return signal_main_locked(c, sig);
#endif
}

bool reapable_now(child_impl& c) noexcept {
    pid_t pid;
    {
        std::lock_guard lock(c.m);
        if (c.status) return true;
        pid = c.pid;
    }
    // WNOWAIT: look without reaping (try_reap does that, with the rusage). Unlike the pidfd's
    // readability, this stays false while a tracer holds the exit (reliability.md, C5). Off
    // Linux by pid: reaped meanwhile, the pid is no child of ours (ECHILD) or another child's
    // (a look at the wrong exit only makes the caller check again).
    siginfo_t si{};
    int r;
    do r = wait_process(c.pidfd.native_handle(), pid, &si, WEXITED | WNOHANG | WNOWAIT, nullptr);
    while (r != 0 && errno == EINTR);
    return r != 0 || si.si_pid != 0; // an error (ECHILD: reaped elsewhere) is for try_reap to report
}

// Asio's epoll reactor is edge-triggered and does not remember an edge that arrived while no
// operation was queued. When another thread runs the reactor, the child may exit between our
// check and the queueing of the wait, and that edge would be lost. So, after queueing, look
// once more; if the exit can be reaped now, cancel the queued waits: each one re-checks, finds
// the status and completes with it.
//
// "Can be reaped", not "the pidfd is readable": a traced child's pidfd is readable from its
// exit on, but the exit is the tracer's until the tracer has seen it, and until then waitid
// has nothing for us (C5). Cancelling on readability turned that into a reported
// cancellation. (Re-arming on the readable pidfd would not help either: Asio re-polls a
// descriptor when a wait is queued on it, so that spins; async_wait_reapable waits on
// watch_held_exit's eventfd instead.)
void close_lost_wakeup_window(child_impl& c) {
#if defined(__linux__)
    if (reapable_now(c)) {
#else
    // The kqueue's exit note may be posted before waitid can see the exit (macOS), so here
    // readiness decides: each cancelled wait re-checks, and a readable descriptor whose exit
    // cannot be reaped yet is waited for on a short timer (async_wait_reapable), not re-armed.
    if (pidfd_ready(c)) {
#endif
        error_code ignored;
        c.pidfd.cancel(ignored);
    }
}

#if !defined(__linux__)
// No tracer hand-off to wait for off Linux (waitid there has no pidfd to block on in a thread):
// the caller looks again on a short timer.
boost::asio::posix::stream_descriptor* watch_held_exit(child_impl&) noexcept {
    return nullptr;
}
#else
boost::asio::posix::stream_descriptor* watch_held_exit(child_impl& c) noexcept try {
    std::lock_guard lock(c.m);
    if (c.held_exit) return &*c.held_exit;
    if (c.status) return nullptr;
    unique_fd ev{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
    if (!ev) return nullptr;
    unique_fd ev_thread{::fcntl(ev.get(), F_DUPFD_CLOEXEC, 3)};
    // A pidfd of its own, not a duplicate: the reactor made the description of ours
    // O_NONBLOCK, and waitid on a non-blocking pidfd returns EAGAIN instead of blocking. By pid,
    // which is safe: the process is an unreaped zombie (`m` is held, `status` is empty), so its
    // pid cannot name anyone else, unless someone else (a host's waitpid(-1)) reaps it right
    // now. A waitid on our own pidfd after the open rules that out: it fails with ECHILD once
    // the process is gone, and needs no permission (a signal 0 would, for a child that changed
    // its credentials).
    unique_fd pidfd_thread{sys_pidfd_open(c.pid, 0)};
    if (!ev_thread || !pidfd_thread) return nullptr;
    siginfo_t still{};
    int r;
    do
        r = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(c.pidfd.native_handle()), &still,
                     WEXITED | WNOHANG | WNOWAIT | __WALL);
    while (r != 0 && errno == EINTR);
    if (r != 0) return nullptr;
    auto watch = [e = std::move(ev_thread), p = std::move(pidfd_thread)] {
        // Blocks until the exit can be reaped (WNOWAIT: the reaping is try_reap's), or until
        // the child is gone (ECHILD: someone else reaped it). The thread then ends; it holds
        // only its own duplicates, so the child handle and the io_context may be gone by then.
        siginfo_t si{};
        while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(p.get()), &si,
                        WEXITED | WNOWAIT | __WALL) != 0 &&
               errno == EINTR) {
        }
        const std::uint64_t one = 1;
        while (::write(e.get(), &one, sizeof one) < 0 && errno == EINTR) {
        }
    };
    // Every signal blocked in the new thread (inherited from here), so that it never takes a
    // process-directed signal meant for someone else's handler or a runner's signalfd.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    std::thread t;
    try {
        t = std::thread(std::move(watch));
    } catch (...) {
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
        return nullptr;
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    pthread_setname_np(t.native_handle(), "drover-traced");
    t.detach();
    log_debug("'{}' exited but a tracer holds its exit; waiting for the tracer to let it go", c.program);
    auto& d = c.held_exit.emplace(c.pidfd.get_executor());
    error_code aec;
    d.assign(ev.get(), aec);
    if (aec) {
        d.release();
        c.held_exit.reset();
        return nullptr; // the thread still ends by itself; its write goes nowhere
    }
    ev.release();
    return &d;
} catch (...) {
    return nullptr;
}
#endif

namespace {

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
                return asio::post(ex,
                                  [self = std::move(self)]() mutable { asio::dispatch(std::move(self)); });
            }
            if (rec) return self.complete(rec, exit_status::unknown());
            return self.complete(error_code{}, *st);
        }
        if (rec) return self.complete(rec, exit_status::unknown());
        const bool cancelled = self.cancelled() != asio::cancellation_type::none;
        if (cancelled && impl->on_cancel != cancel_policy::leave_running) {
            // Cancelled while the process runs: stop the tree first, then report the abort.
            auto ex = self.get_executor();
            auto c = impl;
            start_stop(c, c->stop_signal, c->stop_grace, c->on_cancel == cancel_policy::kill,
                       asio::bind_executor(ex, [self = std::move(self)](error_code, exit_status st) mutable {
                           self.complete(asio::error::operation_aborted, st);
                       }));
            return;
        }
        if (cancelled)
            return self.complete(asio::error::operation_aborted, exit_status::unknown()); // left running
        if (ec && ec != asio::error::operation_aborted)
            return self.complete(ec, exit_status::unknown()); // reactor error
        // Not reaped yet: the first call, a wake-up with nothing to reap (a tracer still holds
        // the exit, C5), or close_lost_wakeup_window's own cancel (not the user's): wait again.
        auto keep = impl;
        async_wait_reapable(*keep, std::move(self));
    }
};

} // namespace

void reap_in_background(std::shared_ptr<child_impl> c) {
    error_code ec;
    if (try_reap(*c, ec) || ec) return;
    auto keep = c; // the handler may run and release `c` on another thread before this returns
    async_wait_reapable(*keep, [c = std::move(c)](error_code) mutable { reap_in_background(std::move(c)); });
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

/// How long a child handle's destructor may block when its io_context is stopped.
constexpr std::chrono::seconds destroy_when_stopped_bound{1};

/// Whether `ex` belongs to an io_context that is stopped: run() has returned (out of work, or
/// stop() was called) and nothing will run its handlers unless someone calls it again.
/// (Executors of other contexts, such as a thread_pool, answer no: their cleanups run there, or
/// finish when the context is destroyed.)
bool context_stopped(const asio::any_io_executor& ex) noexcept {
    using io_ex = asio::io_context::executor_type;
    if (auto* e = ex.target<io_ex>()) return asio::query(*e, asio::execution::context).stopped();
    if (auto* s = ex.target<asio::strand<io_ex>>())
        return asio::query(s->get_inner_executor(), asio::execution::context).stopped();
    if (auto* s = ex.target<asio::strand<asio::any_io_executor>>())
        return context_stopped(s->get_inner_executor());
    return false;
}

} // namespace

namespace detail {

void finish_cleanup_now(child_impl& c, std::chrono::steady_clock::time_point deadline) noexcept {
    using namespace std::chrono_literals;
    if (c.finished_now.load(std::memory_order_acquire)) return;
    const auto ms_left = [&] {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                          std::chrono::steady_clock::now());
        return static_cast<int>(std::clamp<std::chrono::milliseconds::rep>(left.count(), 0, 1000));
    };
    bool reaped;
    {
        std::lock_guard lock(c.m);
        reaped = c.status.has_value();
    }
    // Kill first, whoever called: the tree may still run (a handle dropped while its context
    // was being destroyed comes here before anything else). Without a cgroup, the rest of the
    // session too, and only while the main process is unreaped: until then its session id
    // cannot name anyone else's processes.
    if (!reaped) {
        if (c.leaf) c.leaf->kill();
        signal_main(c, SIGKILL);
        if (!c.leaf) kill_tree_now(c);
    } else if (c.leaf) {
        c.leaf->kill();
    }
    // The main process: wait for its exit on the pidfd, then reap it. try_reap takes the
    // child's lock, so this is safe next to anything else that reaps.
    for (;;) {
        error_code ec;
        if (try_reap(c, ec) || ec) break;
        const int left = ms_left();
        if (left <= 0) break;
        if (pidfd_ready(c)) {
            // Exited, but a tracer holds the exit (C5). Rare, and bounded by the deadline: look
            // again in a millisecond rather than start a watcher thread for a blocking cleanup.
            ::usleep(1000);
            continue;
        }
        pollfd p{c.pidfd.native_handle(), POLLIN, 0};
        ::poll(&p, 1, left);
    }
    {
        std::lock_guard lock(c.m);
        reaped = c.status.has_value();
    }
    if (c.leaf) {
        // The leaf: wait (EPOLLPRI on cgroup.events, through a duplicate, since the strand may
        // close the leaf's own descriptor) until the kernel says it is empty, then remove it. A
        // read of the file re-arms the notice, so read, then poll.
        unique_fd ev{c.leaf->dup_events_fd()};
        while (c.leaf->populated() && ms_left() > 0) {
            c.leaf->kill();
            if (ev) {
                pollfd p{ev.get(), POLLPRI, 0};
                ::poll(&p, 1, ms_left());
            } else {
                ::usleep(1000); // no descriptor to be had: bounded polling
            }
        }
        // The descriptors stay open until the leaf is destroyed: the strand may have the events
        // one registered with the reactor, and must release it itself.
        while (!c.leaf->remove(false) && ms_left() > 0) ::usleep(1000); // EBUSY: the last task is leaving
        if (!c.leaf->removed()) return;
    }
    if (reaped) c.finished_now.store(true, std::memory_order_release);
}

} // namespace detail

child::~child() {
    if (!impl_) return;
    auto c = std::move(impl_);
    std::function<void()> finished;
    try {
        // Kill now, synchronously, so the tree dies even if the io_context never runs again;
        // everything else (and all stop state) stays on the child's strand. The cleanup is
        // counted, so a task_group can wait for it (detail/cleanups.hpp); if the context is
        // destroyed before it ran the cleanup, the context's shutdown finishes it.
        auto ex = c->pidfd.get_executor();
        const bool alive = tree_maybe_alive(*c);
        if (alive) {
            detail::log_debug("killing the tree of '{}': its child handle was destroyed", c->program);
            if (c->leaf)
                c->leaf->kill();
            else
                detail::signal_main(*c, SIGKILL);
        }
        finished = detail::cleanup_started(ex, [c](std::chrono::steady_clock::time_point deadline) {
            detail::finish_cleanup_now(*c, deadline);
        });
        detail::stop_handler done = [f = finished](error_code, exit_status) { f(); };
        if (context_stopped(ex)) {
            // Nothing runs the context now, and it may never run again: reap and remove the
            // leaf here, briefly blocking (the tree is SIGKILLed). The queued stop below then
            // finds everything done, if the context ever runs.
            detail::finish_cleanup_now(*c, std::chrono::steady_clock::now() + destroy_when_stopped_bound);
        }
        if (alive)
            detail::start_stop(c, SIGKILL, {}, true, std::move(done)); // the rest of the tree, reap, rmdir
        else
            detail::start_stop(c, 0, {}, false, std::move(done)); // reap if needed, remove the leaf
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
    if (detail::signal_main(*impl_, sig) == 0) return;
    ec = errno == ESRCH ? error_code(errc::not_running) : error_code(errno, boost::system::system_category());
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

void detail::initiate_child_wait(std::shared_ptr<detail::child_impl> impl,
                                 asio::any_completion_handler<child::wait_signature> handler) {
    if (!impl) throw boost::system::system_error(errc::not_running, "async_wait on an empty child");
    auto& sd = impl->pidfd;
    asio::async_compose<asio::any_completion_handler<child::wait_signature>, child::wait_signature>(
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

void child::signal_tree(int sig, error_code& ec) noexcept try {
    ec.clear();
    if (!impl_ || impl_->tree_done || detail::signal_tree_now(*impl_, sig) == 0) ec = errc::not_running;
} catch (const std::bad_alloc&) {
    ec.assign(ENOMEM, boost::system::system_category());
}

void child::signal_tree(int sig) {
    error_code ec;
    signal_tree(sig, ec);
    if (ec) throw boost::system::system_error(ec, "signal_tree");
}

tree_kind child::tree() const noexcept {
    if (impl_ && impl_->leaf) return tree_kind::cgroup;
    return backend() == backend_kind::portable ? tree_kind::process_group : tree_kind::session;
}

std::optional<std::string> child::cgroup_path() const {
    if (!impl_ || !impl_->leaf) return std::nullopt;
    return impl_->leaf->path();
}

std::vector<pid_t> child::tree_pids() const {
    if (!impl_) return {};
    return detail::tree_pids(*impl_);
}

void detail::initiate_child_stop(std::shared_ptr<detail::child_impl> impl, int sig,
                                 std::optional<std::chrono::steady_clock::duration> grace, bool kill,
                                 asio::any_completion_handler<child::wait_signature> handler) {
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
        timer.cancel();
        auto slot = asio::get_associated_cancellation_slot(h);
        if (slot.is_connected()) slot.clear();
        auto handler = std::move(h);
        auto ex = asio::get_associated_executor(handler, c->strand);
        asio::dispatch(ex, [handler = std::move(handler), ec, st]() mutable { std::move(handler)(ec, st); });
    }
};

} // namespace

void detail::initiate_child_wait_for(std::shared_ptr<detail::child_impl> impl,
                                     std::chrono::steady_clock::duration timeout,
                                     asio::any_completion_handler<child::wait_signature> handler) {
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
        detail::initiate_child_wait(
            st->c,
            asio::bind_cancellation_slot(
                st->inner.slot(), asio::bind_executor(st->c->strand, [st](error_code ec, exit_status s) {
                    if (st->timed_out) return; // the stop completes us
                    st->complete(ec, s);
                })));
    });
}

namespace {
template <typename Pipe>
Pipe& pipe_or_throw(const std::shared_ptr<detail::child_impl>& impl,
                    std::optional<Pipe> detail::child_impl::*member, const char* what) {
    if (!impl || !((*impl).*member)) throw boost::system::system_error(errc::not_piped, what);
    return *((*impl).*member);
}
} // namespace

pipe_writer& child::std_in() {
    return pipe_or_throw(impl_, &detail::child_impl::in, "std_in");
}
asio::posix::stream_descriptor& child::std_out() {
    return pipe_or_throw(impl_, &detail::child_impl::out, "std_out");
}
asio::posix::stream_descriptor& child::std_err() {
    return pipe_or_throw(impl_, &detail::child_impl::err, "std_err");
}
asio::posix::stream_descriptor& child::pty() {
    return pipe_or_throw(impl_, &detail::child_impl::pty, "pty");
}

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

} // namespace drover
