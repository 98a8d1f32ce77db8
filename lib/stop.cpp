// Stopping a child's tree: stop signal + SIGCONT to every process, grace period on a steady
// timer, SIGKILL to the tree (cgroup.kill, or SIGSTOP-walk-SIGKILL without cgroups), done when
// the tree is empty (EPOLLPRI on cgroup.events, or /proc checks), then the main process is
// reaped and the leaf cgroup removed. See docs/architecture.md, "Stopping a tree".
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include "detail/fault.hpp"
#include "detail/child_impl.hpp"
#include "detail/log.hpp"
#include "detail/posix.hpp"
#include "detail/registry.hpp"
#include "detail/stop.hpp"
#include "detail/sys.hpp"
#include "detail/tree.hpp"
#include "drover/backend.hpp"

namespace asio = boost::asio;

namespace drover::detail {

namespace {

using namespace std::chrono_literals;

constexpr auto fallback_poll_interval = 10ms; // emptiness checks without cgroup.events
// With cgroup.events there is no periodic check (a detached child costs no wake-up while it
// runs). Any read of the file consumes the kernel's EPOLLPRI notice; the one reader off the
// strand is a child handle's destructor, which then always starts a stop, and every stop start
// checks the tree again (stop_on_strand), so a notice it consumed is never lost.
constexpr auto rmdir_retry_interval = 20ms;
constexpr int rmdir_max_tries = 100;
// Without a cgroup, emptiness is seen by walking /proc, which needs descriptors. Out of them
// (EMFILE/ENFILE), the walk is blind: keep trying for this many checks (3 s), then end the stop
// with the error instead of hanging.
constexpr int blind_check_limit = 300;

bool main_exited(child_impl& c) {
    {
        std::lock_guard lock(c.m);
        if (c.status) return true;
    }
    return pidfd_ready(c);
}

/// Extra roots of the /proc walk: the main process while it lives, and, in runner mode for the
/// child named by attribute_orphans_to(), every orphan this process adopted.
std::vector<pid_t> walk_roots(child_impl& c) {
    std::vector<pid_t> roots;
    {
        std::lock_guard lock(c.m);
        if (c.pid > 0) roots.push_back(c.pid);
    }
    if (runner_mode() && orphan_owner() == &c)
        for (pid_t p : unregistered_children()) roots.push_back(p);
    return roots;
}

/// Sends `sig` to a pid listed in the leaf, only if it is still in the leaf once we hold its
/// pidfd (so a pid reused in between is never hit).
bool signal_cgroup_member(const cgroup_leaf& leaf, pid_t pid, int sig) {
    unique_fd fd{sys_pidfd_open(pid, 0)};
    if (!fd) return false;
    std::string text;
    read_file(("/proc/" + std::to_string(pid) + "/cgroup").c_str(), text); // unreadable: empty
    if (text.find("0::" + leaf.proc_view() + "\n") == std::string::npos) return false;
    return sys_pidfd_send_signal(fd.get(), sig) == 0;
}

bool fd_exited(int fd) {
    return poll_one(fd, POLLIN, 0) > 0;
}

/// Without a cgroup: remember every member found (by pidfd), so that one re-parented out of
/// the walk's reach later (its parent died of the signal) is still killed and waited for.
void remember_tree(child_impl& c) {
    auto members = session_members(c.session, walk_roots(c));
    std::lock_guard lock(c.known_m);
    std::erase_if(c.known, [](const auto& k) { return fd_exited(k.second.get()); });
    for (const auto& m : members) {
        bool have = false;
        for (const auto& k : c.known) have = have || k.first == m.pid;
        if (have) continue;
        unique_fd fd = verified_pidfd(m);
        if (fd) c.known.emplace_back(m.pid, std::move(fd));
    }
}

/// The portable backend's tree: the main process's process group (it called setsid, so the
/// group id is its pid). While the main process is unreaped its pid, so the group id, cannot
/// be reused; after that, only while a member is left in the group (the id stays taken while
/// any member lives). Once the group is empty the id is free: a process that now holds that pid
/// is someone else's, and then nothing is sent. The window that remains: the last member exits
/// and a new process takes the id and leads a group between that check and the signal
/// (docs/reliability.md, D1).
bool portable_tree(const child_impl& c) noexcept {
    return backend() == backend_kind::portable && !c.leaf;
}

std::size_t signal_group(child_impl& c, int sig) {
    std::lock_guard lock(c.m);
    if (c.session > 0) {
        // Reaped (by us, under this lock): the pid is free, so a live process with it is not ours.
        if (c.status && (::kill(c.session, 0) == 0 || errno == EPERM)) return 0;
#if !defined(__linux__)
        // Unreaped by us, but reaped by someone else (a host's waitpid(-1), C2): the group id
        // may be free, so anyone's. (On Linux the same host reap is the window D1 describes.)
        if (!c.status && !still_our_child(c.pid)) return 0;
#endif
        return ::kill(-c.session, sig) == 0 ? 1 : 0;
    }
    return signal_main_locked(c, sig) == 0 ? 1 : 0;
}

/// Empty: the main process has exited and nothing live is left in its group; then the main
/// process is reaped (not before: until then its pid keeps the group id ours, and a cleanup
/// that finds it reaped would not kill the group).
bool group_empty(child_impl& c) {
    if (!main_exited(c)) return false;
    if (c.session > 0 && !(::kill(-c.session, 0) != 0 && errno == ESRCH)) {
#if defined(__linux__)
        // Members left may all be zombies, the unreaped leader among them: orphans wait there
        // until their new parent (init, or a subreaper) reaps them, and a zombie still counts
        // for kill(). They run nothing: /proc tells them apart.
        bool complete = true;
        const bool live = !group_members(c.session, {}, &complete).empty();
        if (!complete) { // out of descriptors: cannot tell (bounded by blind_check_limit)
            if (c.killed) ++c.blind_checks;
            return false;
        }
        c.blind_checks = 0;
        if (live) return false;
#else
        // Elsewhere the zombie leader itself keeps the group non-empty until reaped: reap it
        // first (the stop then waits for orphaned zombies to be reaped by their new parent).
        error_code ec;
        if (!try_reap(c, ec) && !ec) return false;
        if (!(::kill(-c.session, 0) != 0 && errno == ESRCH)) return false;
#endif
    }
    error_code ec;
    return try_reap(c, ec) || ec; // false only while a tracer holds the exit (C5)
}

std::size_t send_to_tree(child_impl& c, int sig) {
    std::size_t n = 0;
    if (portable_tree(c)) return signal_group(c, sig);
    if (c.leaf) {
        pid_t main_pid;
        {
            std::lock_guard lock(c.m);
            main_pid = c.pid;
        }
        if (!main_exited(c) && sys_pidfd_send_signal(c.pidfd.native_handle(), sig) == 0) ++n;
        for (pid_t p : c.leaf->procs())
            if (p != main_pid) n += signal_cgroup_member(*c.leaf, p, sig) ? 1 : 0;
        return n;
    }
    remember_tree(c);
    {
        std::lock_guard lock(c.known_m);
        for (auto& [pid, fd] : c.known)
            if (!fd_exited(fd.get()) && sys_pidfd_send_signal(fd.get(), sig) == 0) ++n;
    }
    if (!main_exited(c) && sys_pidfd_send_signal(c.pidfd.native_handle(), sig) == 0) ++n;
    return n;
}

bool tree_empty(child_impl& c) {
    if (portable_tree(c)) return group_empty(c);
    if (c.leaf) return !c.leaf->populated();
    if (!main_exited(c)) return false;
    {
        std::lock_guard lock(c.known_m);
        for (auto& [pid, fd] : c.known)
            if (!fd_exited(fd.get())) return false;
    }
    if (c.session <= 0) return true; // no session of its own: its descendants cannot be told apart
    if (c.session_alone.load(std::memory_order_acquire)) return true; // it never forked (see try_reap)
    bool complete = true;
    bool empty = session_tree(c.session, walk_roots(c), &complete).empty();
    if (!complete) {
        // Counted only once SIGKILL went out: before that, the grace period is what bounds it.
        if (c.killed) ++c.blind_checks;
        return false;
    }
    c.blind_checks = 0;
    return empty;
}

void check_empty(const std::shared_ptr<child_impl>& c);

void complete_waiters(const std::shared_ptr<child_impl>& c) {
    exit_status st = exit_status::unknown();
    {
        std::lock_guard lock(c->m);
        if (c->status) st = *c->status;
    }
    auto waiters = std::move(c->stop_waiters);
    c->stop_waiters.clear();
    const error_code ec = c->stop_error;
    for (auto& h : waiters) {
        auto ex = asio::get_associated_executor(h, c->strand);
        asio::dispatch(ex, [h = std::move(h), ec, st]() mutable { std::move(h)(ec, st); });
    }
}

void finish(const std::shared_ptr<child_impl>& c) {
    c->tree_done = true;
    c->finishing = false;
    c->stopping = false;
    complete_waiters(c);
}

void remove_leaf(const std::shared_ptr<child_impl>& c) {
    // A tree that ended by itself (no signal, no kill from us, the main process exited rather
    // than killed: a tree that wrote its own cgroup.kill is SIGKILLed) leaves a leaf worth
    // keeping for the next spawn (cgroup_leaf::recycle says when).
    bool exited = false;
    {
        std::lock_guard lock(c->m);
        exited = c->status && c->status->is_exited();
    }
    if (c->leaf && exited && c->rmdir_tries == 0 && !c->signalled && !c->killed && c->leaf->recycle())
        return finish(c);
    if (c->leaf && !c->leaf->remove()) {
        // EBUSY: the kernel has not finished with the last exiting task. Try again shortly.
        if (++c->rmdir_tries < rmdir_max_tries) {
            c->poll_timer.expires_after(rmdir_retry_interval);
            c->poll_timer.async_wait(asio::bind_executor(c->strand, [c](error_code ec) {
                if (!ec) remove_leaf(c);
            }));
            return;
        }
        log_debug("cannot remove cgroup {}: {}", c->leaf->path(), std::strerror(errno));
    }
    finish(c);
}

/// The tree is empty; the main process has exited, but populated=0 is reported before the
/// exit is (cgroup_exit runs before exit_notify), so wait for the pidfd, then reap.
void reap_main(const std::shared_ptr<child_impl>& c) {
    error_code ec;
    auto st = try_reap(*c, ec);
    if (!st && !ec) {
        // A traced exit waits for the tracer to let it go, without spinning (C5).
        async_wait_reapable(*c, asio::bind_executor(c->strand, [c](error_code) { reap_main(c); }));
        return;
    }
    remove_leaf(c);
}

void do_kill(const std::shared_ptr<child_impl>& c) {
    c->killed = true;
    kill_tree_now(*c);
}

void arm_watch(const std::shared_ptr<child_impl>& c) {
    if (c->tree_done) return;
    if (c->leaf && c->leaf->events_fd() >= 0 && !c->watch_failed) {
        if (!c->events) {
            // The reactor waits on the leaf's own cgroup.events descriptor (EPOLLPRI on change);
            // `events` borrows it and releases it, never closes it (see release_events).
            c->events.emplace(c->strand);
            error_code ec;
            c->events->assign(c->leaf->events_fd(), ec);
            if (ec) { // the reactor refused it (max_user_watches?): poll, and do not try again
                c->events->release();
                c->events.reset();
                c->watch_failed = true;
            }
        }
        if (c->events) {
            if (!c->events_wait_pending) {
                c->events_wait_pending = true;
                c->events->async_wait(asio::posix::descriptor_base::wait_error,
                                      asio::bind_executor(c->strand, [c](error_code ec) {
                                          c->events_wait_pending = false;
                                          if (ec == asio::error::operation_aborted || !c->events) return;
                                          if (ec) { // not expected: fall back to the periodic check
                                              release_events(*c);
                                              c->watch_failed = true;
                                          }
                                          check_empty(c);
                                      }));
            }
            // Edge-triggered epoll forgets an event that fired before the wait was queued (with
            // several threads in the reactor): look again now that it is queued.
            if (!c->leaf->populated()) asio::post(c->strand, [c] { check_empty(c); });
            return;
        }
    }
    // No cgroup.events to wait on (no leaf, or the reactor refused it): check periodically.
    c->poll_timer.expires_after(fallback_poll_interval);
    c->poll_timer.async_wait(asio::bind_executor(c->strand, [c](error_code ec) {
        if (!ec) check_empty(c);
    }));
}

void check_empty(const std::shared_ptr<child_impl>& c) {
    if (c->tree_done || !c->stopping || c->finishing) return;
    if (!tree_empty(*c)) {
        if (c->blind_checks < blind_check_limit) {
            arm_watch(c);
            return;
        }
        // Out of descriptors for 3 s: the tree cannot be seen. Kill what can be reached without
        // a descriptor and report that the stop could not make sure.
        log_debug("'{}': cannot check its process tree (out of file descriptors); ending the stop",
                  c->program);
        kill_group_blind(*c);
        c->stop_error = error_code(EMFILE, boost::system::system_category());
    }
    c->timer.cancel();
    c->poll_timer.cancel();
    release_events(*c);
    c->finishing = true;
    reap_main(c);
}

void stop_on_strand(const std::shared_ptr<child_impl>& c, int sig, std::chrono::steady_clock::duration grace,
                    bool kill_now, stop_handler h) {
    if (h) c->stop_waiters.push_back(std::move(h));
    if (!c->tree_done && c->finished_now.load(std::memory_order_acquire)) {
        // finish_cleanup_now() did it all off the strand (the main process is reaped, the leaf
        // removed). Nothing to signal, and nothing to walk: the session id may be reused now.
        c->timer.cancel();
        c->poll_timer.cancel();
        release_events(*c);
        finish(c);
        return;
    }
    if (c->tree_done) {
        // Never complete from inside the initiating call: go around the strand once.
        asio::post(c->strand, [c] { complete_waiters(c); });
        return;
    }
    c->stopping = true;
    if (kill_now || sig == SIGKILL) {
        if (!c->killed) do_kill(c);
    } else if (sig > 0 && !c->killed && !c->signalled) {
        c->signalled = true;
        send_to_tree(*c, sig);
        if (sig != SIGCONT) send_to_tree(*c, SIGCONT); // a stopped process ignores SIGTERM (D2)
        c->timer.expires_after(grace);
        c->timer.async_wait(asio::bind_executor(c->strand, [c](error_code ec) {
            if (ec || c->tree_done || c->killed || !c->stopping) return;
            log_debug("'{}': grace period over, killing its process tree", c->program);
            do_kill(c);
            check_empty(c);
        }));
    }
    // Every time, not only for the first stop: a wake-up may have been consumed meanwhile (see
    // fallback_poll_interval). check_empty() does nothing once the tree is done.
    check_empty(c);
}

} // namespace

void kill_tree_now(child_impl& c) noexcept try {
    if (!main_exited(c)) signal_main(c, SIGKILL);
    if (portable_tree(c)) {
        signal_group(c, SIGKILL);
        return;
    }
    if (c.leaf) {
        error_code ec = c.leaf->kill();
        if (!ec) return;
        // No cgroup.kill (it was there at the probe): kill member by member.
        for (pid_t p : c.leaf->procs()) signal_cgroup_member(*c.leaf, p, SIGKILL);
        return;
    }
    std::lock_guard lock(c.known_m);
    for (auto& [pid, fd] : c.known) sys_pidfd_send_signal(fd.get(), SIGSTOP);
    std::vector<pid_t> roots = walk_roots(c);
    kill_tree(c.session, roots);
    for (auto& [pid, fd] : c.known) sys_pidfd_send_signal(fd.get(), SIGKILL);
    kill_group_blind(c); // last, after the walk (which stops members before killing any)
} catch (...) {
    kill_group_blind(c);
}

void kill_group_blind(child_impl& c) noexcept {
    // The main process leads the session's process group (it called setsid; no process outside
    // the session can join the group). Through its pidfd (Linux 6.9+) the group is named with no
    // pid-reuse window at all. Before 6.9, by group id, only while the main process is unreaped:
    // not by us (checked under the lock reaping takes) and not by anyone else (a signal 0
    // through the pidfd fails once it is reaped); then the pid, so the group id, is still ours.
    if (c.session <= 0) return;
    std::lock_guard lock(c.m);
    if (c.status) return;
#if !defined(__linux__)
    // Unreaped by us, and not by a host's waitpid(-1) either (C2): the group id is still ours.
    if (still_our_child(c.pid)) ::kill(-c.session, SIGKILL);
#else
    constexpr unsigned pidfd_signal_process_group = 1U << 2;
    const int fd = c.pidfd.native_handle();
    if (::syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, pidfd_signal_process_group) == 0) return;
    if (errno != EINVAL) return; // ESRCH: reaped by someone else; the group id may be anyone's
    if (sys_pidfd_send_signal(fd, 0) == 0) ::kill(-c.session, SIGKILL);
#endif
}

std::size_t signal_tree_now(child_impl& c, int sig) {
    return send_to_tree(c, sig);
}

std::vector<pid_t> tree_pids(child_impl& c) {
    if (portable_tree(c)) return group_members(c.session, walk_roots(c));
    if (c.leaf) return c.leaf->procs();
    return session_tree(c.session, walk_roots(c));
}

void start_stop(const std::shared_ptr<child_impl>& c, int sig, std::chrono::steady_clock::duration grace,
                bool kill_now, stop_handler h) {
    // post, not dispatch: the handler must never run inside the initiating call.
    asio::post(c->strand, [c, sig, grace, kill_now, h = std::move(h)]() mutable {
        stop_on_strand(c, sig, grace, kill_now, std::move(h));
    });
}

} // namespace drover::detail
