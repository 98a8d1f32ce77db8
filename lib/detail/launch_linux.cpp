// The Linux launcher's parent side: launch() turns a command into a `child_plan` for the raw
// child, creates the child, and turns a failure into a spawn_failure. docs/architecture.md
// ("Spawning") lists the steps of both sides, in order. The parts live in their own files:
//   lib/detail/launch_common.cpp  what both backends check and build (argv, envp, rlimits, mask)
//   lib/detail/prepare.cpp    environment and PATH lookup, identity names
//   lib/detail/child_fds.cpp  the descriptors (stdio, pipes, a pty, passed fds)
//   lib/detail/launcher.cpp   clone3 and its fallbacks, with every signal blocked
//   lib/detail/raw_child.cpp  the child between clone and exec (raw syscalls only)
//
// CLONE_VFORK suspends this thread until the child has exec'd or died, so the child may write
// its {stage, errno} straight into the plan (shared memory, no error pipe), and its stack is
// free again when the clone returns. The child's exit signal is SIGCHLD, as for any child:
// drover never handles it (it waits on the pidfd), and leaves the process's SIGCHLD
// disposition alone.
#include "detail/launch.hpp"

#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "detail/child_fds.hpp"
#include "detail/fault.hpp"
#include "detail/launch_common.hpp"
#include "detail/launcher.hpp"
#include "detail/posix.hpp"
#include "detail/prepare.hpp"
#include "detail/raw_child.hpp"
#include "detail/sys.hpp"
#include "drover/backend.hpp"

extern char** environ;

namespace drover::detail {

namespace {

std::atomic<unsigned> g_test_pdeathsig_delay_ms{0};

/// What one launch() builds for the raw child. The plan points into the rest, so it all lives
/// until the clone has returned.
struct launch_state {
    program_image prog;
    prepared_fds fds;
    std::vector<rlimit64_arg> limits;
    namespaces ns = namespaces::none;
    bool userns = false;
    std::string uid_map, gid_map;
    struct ifreq lo {};
    identity id;
    std::vector<gid_t> groups, groups_check;
    child_plan plan;
};

/// The plan's program, descriptors, session and parent-death fields.
void plan_basics(const command& cmd, int cgroup_fd, launch_state& s) {
    child_plan& plan = s.plan;
    plan.path = s.prog.path.c_str();
    plan.argv = s.prog.argv.data();
    plan.envp = s.prog.envp.data();
    plan.cwd = cmd.cwd() ? s.prog.cwd.c_str() : nullptr;
    plan.moves = s.fds.moves.data();
    plan.n_moves = static_cast<int>(s.fds.moves.size());
    plan.keep = s.fds.keep.data();
    plan.n_keep = static_cast<int>(s.fds.keep.size());
    plan.inherit_in_place = s.fds.inherit_in_place;
    plan.new_session = cmd.new_session();
    plan.ctty_fd = s.fds.ctty_fd;
    plan.cloexec_range = true;
    plan.cgroup_fd = cgroup_fd;
    plan.pdeathsig = cmd.parent_death_signal();
    plan.parent_pid = own_pid();
    plan.test_delay_ms = g_test_pdeathsig_delay_ms.load(std::memory_order_relaxed);
}

/// Resource limits (checked here, set by the child), the umask and no_new_privs.
bool plan_limits(const command& cmd, launch_state& s, spawn_failure& f) {
    if (!plan_rlimits(cmd, s.limits, f)) return false;
    s.plan.limits = s.limits.data();
    s.plan.n_limits = static_cast<int>(s.limits.size());
    s.plan.umask = cmd.umask() ? static_cast<int>(*cmd.umask()) : -1;
    s.plan.no_new_privs = cmd.no_new_privs();
    return true;
}

/// Namespaces: clone flags, the one-id maps of a new user namespace, and what the child sets up
/// in a new mount or network namespace.
void plan_namespaces(const command& cmd, launch_state& s) {
    const namespaces ns = cmd.unshare();
    child_plan& plan = s.plan;
    s.ns = ns;
    s.userns = any(ns & namespaces::user);
    if (any(ns & namespaces::user)) plan.ns_flags |= CLONE_NEWUSER;
    if (any(ns & namespaces::pid)) plan.ns_flags |= CLONE_NEWPID;
    if (any(ns & namespaces::mount)) plan.ns_flags |= CLONE_NEWNS;
    if (any(ns & namespaces::net)) plan.ns_flags |= CLONE_NEWNET;
    if (any(ns & namespaces::uts)) plan.ns_flags |= CLONE_NEWUTS;
    if (any(ns & namespaces::ipc)) plan.ns_flags |= CLONE_NEWIPC;
    if (any(ns & namespaces::cgroup)) plan.ns_flags |= CLONE_NEWCGROUP;
    if (s.userns) {
        s.uid_map = "0 " + std::to_string(::geteuid()) + " 1\n";
        s.gid_map = "0 " + std::to_string(::getegid()) + " 1\n";
        plan.uid_map = s.uid_map.c_str();
        plan.gid_map = s.gid_map.c_str();
    }
    plan.private_mounts = any(ns & namespaces::mount);
    plan.mount_proc = any(ns & namespaces::mount) && any(ns & namespaces::pid);
    if (any(ns & namespaces::net)) {
        std::memcpy(s.lo.ifr_name, "lo", 3);
        plan.loopback = &s.lo;
    }
}

/// Identity: resolved here, applied by the child only where it changes something (so an
/// unprivileged caller may name itself).
bool plan_identity(const command& cmd, launch_state& s, spawn_failure& f) {
    child_plan& plan = s.plan;
    if (!resolve_identity(cmd, s.id, f)) return false;
    if (s.id.groups) {
        if (s.userns && cmd.supplementary_groups())
            return invalid_command(
                f, "supplementary groups cannot be set in a new user namespace (setgroups is denied there)");
        s.groups = *s.id.groups;
        plan.set_groups = !s.userns && groups_differ(s.groups);
        s.groups_check.resize(s.groups.size() + 1);
        plan.groups = s.groups.data();
        plan.groups_check = s.groups_check.data();
        plan.n_groups = static_cast<int>(s.groups.size());
    }
    if (s.id.gid) {
        gid_t r = 0, e = 0, sv = 0;
        ::getresgid(&r, &e, &sv);
        plan.set_gid = s.userns || !(r == *s.id.gid && e == *s.id.gid && sv == *s.id.gid);
        plan.gid = *s.id.gid;
    }
    if (s.id.uid) {
        uid_t r = 0, e = 0, sv = 0;
        ::getresuid(&r, &e, &sv);
        plan.set_uid = s.userns || !(r == *s.id.uid && e == *s.id.uid && sv == *s.id.uid);
        plan.uid = *s.id.uid;
    }
    return true;
}

/// The capability bounding set to keep, checked against this kernel's last capability.
bool plan_capabilities(const command& cmd, launch_state& s, spawn_failure& f) {
    const auto& keep = cmd.capability_bounding_set();
    if (!keep) return true;
    static const int last_cap = [] {
        int c = 0;
        while (c < 63 && ::prctl(PR_CAPBSET_READ, c + 1, 0, 0, 0) >= 0) ++c;
        return c;
    }();
    for (int cap : *keep)
        if (cap < 0 || cap > last_cap)
            return invalid_command(f, "capability " + std::to_string(cap) +
                                          " does not exist on this kernel (last is " +
                                          std::to_string(last_cap) + ")");
    s.plan.drop_caps = true;
    s.plan.last_cap = last_cap;
    for (int cap : *keep) s.plan.keep_caps |= std::uint64_t{1} << cap;
    return true;
}

/// Creates the child. The child's set*id calls commit new credentials, and the kernel then
/// resets "dumpable" on the *mm*, which CLONE_VM shares with us: restore ours (else drover stops
/// dumping core and its /proc entries turn root-owned).
clone_result clone_child(child_plan& plan, void* stack_top, launcher_kind& used) {
    const bool changes_ids = plan.set_uid || plan.set_gid || plan.set_groups;
    const int dumpable = changes_ids ? ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) : -1;

    f_alloc_point(); // tests: everything opened so far must be closed on the way out

    clone_result r = create_child(plan, stack_top, used);
    if (dumpable >= 0 && ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != dumpable)
        ::prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0);
    return r;
}

/// A clone that failed: a process limit, namespaces refused, no launcher, or another errno.
bool describe_clone_failure(const clone_result& r, launcher_kind used, const launch_state& s,
                            spawn_failure& f) {
    if (r.err == EAGAIN) {
        // A process limit, not a transient failure: say which ones can cause it
        // (docs/reliability.md row F3).
        struct rlimit np {};
        ::getrlimit(RLIMIT_NPROC, &np);
        std::string d =
            "a process limit was reached: RLIMIT_NPROC of uid " + std::to_string(::getuid()) + " (" +
            (np.rlim_cur == RLIM_INFINITY ? std::string("unlimited") : std::to_string(np.rlim_cur)) +
            "), the cgroup's pids.max, or kernel.threads-max";
        return spawn_fail(f, r.err, spawn_stage::clone, std::move(d));
    }
    if (s.plan.ns_flags != 0 && (r.err == EPERM || r.err == EINVAL || r.err == ENOSPC || r.err == EUSERS)) {
        std::string what = "creating namespaces " + to_string(s.ns);
        if (r.err == EPERM && !s.userns && ::geteuid() != 0)
            what += " needs CAP_SYS_ADMIN; unprivileged, add 'user' (a user namespace)";
        else if (r.err == EPERM || r.err == ENOSPC || r.err == EUSERS)
            what += s.userns ? " was refused (user namespaces may be disabled or at their limit: "
                               "user.max_user_namespaces, kernel.unprivileged_userns_clone)"
                             : " was refused";
        return spawn_fail(f, r.err, spawn_stage::namespaces, std::move(what));
    }
    if (used == launcher_kind::clone_pidfd_open || launcher_refused(r.err)) {
        f.code = errc::no_launcher;
        f.stage = spawn_stage::clone;
        f.detail = "clone3/clone refused: " + sys_error(r.err).message();
        return false;
    }
    return spawn_fail(f, r.err, spawn_stage::clone);
}

/// A failure the child reported before exec (it has exited and been reaped): its stage and
/// errno, with a message that says what was being done.
bool describe_child_failure(const launch_state& s, spawn_failure& f) {
    const child_plan& plan = s.plan;
    auto stage = static_cast<spawn_stage>(plan.stage);
    int err = plan.err;
    std::string detail;
    if (stage == spawn_stage::exec) {
        detail = s.prog.path;
        struct stat st {};
        // execve says EACCES for a directory; say what it is.
        if (err == EACCES && ::stat(s.prog.path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) err = EISDIR;
    } else if (stage == spawn_stage::cwd) {
        detail = s.prog.cwd;
    } else if (stage == spawn_stage::setgroups || stage == spawn_stage::setgid ||
               stage == spawn_stage::setuid) {
        detail = "changing to " + s.id.description;
        if (plan.substep == sub_verify)
            detail += ": the ids read back differ";
        else if (err == EPERM && ::geteuid() != 0)
            detail +=
                " needs root (CAP_SETUID and CAP_SETGID); drover runs as uid " + std::to_string(::geteuid());
        else if (err == EINVAL && s.userns)
            detail += ": only uid/gid 0 exist in the new user namespace";
    } else if (stage == spawn_stage::capabilities) {
        detail = plan.substep == sub_capbset ? "dropping from the bounding set needs CAP_SETPCAP (root)"
                                             : "restricting the inheritable set";
    } else if (stage == spawn_stage::namespaces) {
        switch (plan.substep) {
        case sub_setgroups_deny:
            detail = "writing /proc/self/setgroups";
            break;
        case sub_uid_map:
            detail = "writing the uid map '" + s.uid_map.substr(0, s.uid_map.size() - 1) + "'";
            break;
        case sub_gid_map:
            detail = "writing the gid map '" + s.gid_map.substr(0, s.gid_map.size() - 1) + "'";
            break;
        case sub_loopback:
            detail = "bringing up the loopback interface";
            break;
        default:
            break;
        }
    } else if (stage == spawn_stage::mounts) {
        detail = plan.substep == sub_mount_proc ? "mounting a private /proc" : "making mounts private";
    }
    return spawn_fail(f, err, stage, std::move(detail));
}

/// The last launcher (clone without CLONE_PIDFD) returns no pidfd: open one. The child has
/// exec'd and is ours, unreaped, so its pid cannot have been reused yet (unless a host's __WALL
/// reaper took it; then ESRCH).
bool open_pidfd(pid_t pid, unique_fd& pidfd, spawn_failure& f) {
    int fd = sys_pidfd_open(pid, 0);
    if (fd < 0) {
        int err = errno;
        if (err != ESRCH) kill_and_reap(-1, pid); // no handle can be had: leave nothing behind
        return spawn_fail(f, err, spawn_stage::pidfd);
    }
    pidfd.reset(fd);
    return true;
}

} // namespace

} // namespace drover::detail

namespace drover {

backend_kind backend() noexcept {
    return backend_kind::linux_native;
}

} // namespace drover

namespace drover::detail {

void set_test_delay_before_pdeathsig(unsigned ms) noexcept {
    g_test_pdeathsig_delay_ms.store(ms, std::memory_order_relaxed);
}

bool launch(const command& cmd, int cgroup_fd, launched& out, spawn_failure& f) noexcept try {
    launch_state s;
    if (!check_arguments(cmd, f) || !prepare_program(cmd, s.prog, f) || !prepare_fds(cmd, s.fds, f))
        return false;
    plan_basics(cmd, cgroup_fd, s);
    if (!plan_limits(cmd, s, f)) return false;
    plan_namespaces(cmd, s);
    if (!plan_identity(cmd, s, f) || !plan_capabilities(cmd, s, f)) return false;
    if (!plan_signals(cmd, s.plan.sigmask, f)) return false;

    void* stack_top = child_stack_top();
    if (stack_top == nullptr) return spawn_fail(f, ENOMEM, spawn_stage::clone, "child stack");

    launcher_kind used = launcher_kind::automatic;
    clone_result r = clone_child(s.plan, stack_top, used);
    if (r.pid < 0) return describe_clone_failure(r, used, s, f);
    unique_fd pidfd{r.pidfd};
    if (s.plan.stage != 0) {               // the child reported a failure before exec and has exited
        kill_and_reap(pidfd.get(), r.pid); // it has exited already: this only reaps it
        return describe_child_failure(s, f);
    }
    if (!pidfd && !open_pidfd(r.pid, pidfd, f)) return false;

    out.pidfd = std::move(pidfd);
    out.pid = r.pid;
    for (int t = 0; t < 3; ++t) out.parent_end[t] = std::move(s.fds.parent_end[t]);
    out.pty_master = std::move(s.fds.pty_master);
    return true;
} catch (const std::bad_alloc&) {
    return spawn_fail(f, ENOMEM, spawn_stage::prepare);
}

} // namespace drover::detail
