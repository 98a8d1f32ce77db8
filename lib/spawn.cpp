// spawn(): from a command to a supervised child. The leaf cgroup (lib/detail/cgroup.cpp), the
// launch itself (lib/detail/launch_linux.cpp, on the spawn thread when the parent-death signal
// needs a long-lived one: lib/detail/spawn_thread.cpp), runner mode's registration
// (lib/detail/registry.cpp), and the child's descriptors registered with the io_context.
// docs/architecture.md, "Spawning".
#include "drover/child.hpp"

#include <signal.h>

#include <cerrno>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "detail/cgroup.hpp"
#include "detail/child_impl.hpp"
#include "detail/cleanups.hpp"
#include "detail/fault.hpp"
#include "detail/launch.hpp"
#include "detail/log.hpp"
#include "detail/pipe_writer_access.hpp"
#include "detail/posix.hpp"
#include "detail/registry.hpp"
#include "detail/spawn_thread.hpp"
#include "detail/sys.hpp"
#include "drover/backend.hpp"

namespace asio = boost::asio;

namespace drover {

namespace {

/// A child that runs but cannot be taken under supervision: kill and reap it, unregister it, and
/// kill its leaf (whose removal is left to the leaf's owner).
void abandon(int pidfd, pid_t pid, detail::cgroup_leaf* leaf) noexcept {
    detail::kill_and_reap(pidfd, pid);
    detail::registry_remove(pid);
    if (leaf != nullptr) leaf->kill();
}

/// The portable backend has no cgroups: a command that needs one, or its limits, is refused
/// (errc::not_supported, naming the feature) rather than run without them. cgroup_mode::automatic
/// (the default) without limits just runs with the process-group tree.
bool portable_supports(const command& cmd, spawn_failure& f) {
    std::string feature;
    if (cmd.cgroup() == cgroup_mode::required) feature = "a cgroup (cgroup_mode::required)";
    const auto& lim = cmd.cgroup_settings();
    if (feature.empty() && lim.memory_max) feature = "the cgroup limit memory_max";
    if (feature.empty() && lim.pids_max) feature = "the cgroup limit pids_max";
    if (feature.empty() && lim.cpu_quota) feature = "the cgroup limit cpu_max";
    if (feature.empty()) return true;
    f.code = errc::not_supported;
    f.stage = spawn_stage::prepare;
    f.detail = feature + " is not supported by the portable backend";
    return false;
}

} // namespace

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
        const bool portable = backend() == backend_kind::portable;
        if (portable && !portable_supports(cmd, f)) return {};
        detail::prepare_cleanups(ex);
        std::unique_ptr<detail::cgroup_leaf> leaf;
        std::string no_leaf_why = "the command runs without a cgroup (cgroup_mode::off)";
        if (cmd.cgroup() != cgroup_mode::off && !portable) {
            error_code lec;
            std::string why;
            leaf = detail::cgroup_leaf::create(lec, why, cmd.cgroup_settings().empty());
            if (!leaf) no_leaf_why = "no cgroup for the child: " + why;
            if (!leaf && cmd.cgroup() == cgroup_mode::required) {
                f.code = lec == detail::sys_error(ENOTSUP) ? error_code(errc::no_cgroup) : lec;
                f.stage = spawn_stage::cgroup;
                f.detail = why;
                return {};
            }
        }
        if (leaf && leaf->frozen()) {
            // A child cloned into a frozen cgroup freezes before exec, and the clone (vfork
            // semantics) would wait for it forever: refuse instead, in every cgroup mode.
            f.code = detail::sys_error(EBUSY);
            f.stage = spawn_stage::cgroup;
            f.detail =
                "the child's cgroup " + leaf->path() +
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
            if (cmd.parent_death_signal() != 0 && !detail::on_long_lived_thread(ex))
                detail::run_on_spawn_thread(do_launch);
            else
                do_launch();
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
            abandon(l.pidfd.get(), l.pid, leaf.get()); // never leave an unsupervised process behind
            f.code = detail::sys_error(ENOMEM);
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
#if !defined(__linux__) && !defined(__FreeBSD__)
        if (cmd.parent_death_signal() != 0)
            not_applied.emplace_back("parent_death_signal", "this system has no parent-death signal");
#endif
        for (auto& [setting, why] : not_applied)
            impl->unapplied.push_back({std::move(setting), std::move(why)});
        impl->memory_limited = memory_limited;
        impl->leaf = std::move(leaf);
        impl->session = cmd.new_session() ? l.pid : -1;
        impl->stop_signal = cmd.stop_signal();
        impl->stop_grace = cmd.stop_grace();
        impl->on_cancel = cmd.on_cancel();
        error_code ec;
        impl->pidfd.assign(l.pidfd.get(), ec);
        if (!ec) {
            l.pidfd.release();
            impl->pid = l.pid;
            if (l.parent_end[0] && !ec)
                pipe_writer_access::descriptor(impl->in.emplace(ex)).assign(l.parent_end[0].get(), ec);
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
            abandon(impl->pidfd.is_open() ? impl->pidfd.native_handle() : l.pidfd.get(), l.pid,
                    impl->leaf.get());
            impl->leaf.reset(); // rmdir may fail while the kill completes; the leaf is left
            f.code = ec;
            f.stage = spawn_stage::register_io;
            return {};
        }
        return child(std::move(impl));
    } catch (const std::bad_alloc&) {
        f.code = detail::sys_error(ENOMEM);
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
