// drover: a command to spawn: a program, an argv vector, and how the child is set up.
#pragma once

#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string_view>
#include <string>
#include <utility>
#include <vector>

#include "drover/stdio.hpp"

namespace drover {

/// Whether a child gets its own leaf cgroup (see docs/architecture.md, "Stopping a tree").
enum class cgroup_mode : unsigned char {
    automatic, ///< a fresh leaf when a writable cgroup v2 hierarchy exists, else process groups
    required,  ///< a fresh leaf, or spawn() fails (`errc::no_cgroup`, stage `cgroup`)
    off,       ///< never: the tree is the child's session and descendants, found through /proc
};

/// What cancelling an awaited wait on the child does to the process tree.
enum class cancel_policy : unsigned char {
    stop,          ///< the stop escalation (stop signal, grace, SIGKILL), then complete (default)
    kill,          ///< SIGKILL to the tree at once, then complete once it is empty
    leave_running, ///< only the wait ends; the tree keeps running
};

/// Linux namespaces a child can get (opt-in; combine with `|`). See `command::unshare`.
enum class namespaces : unsigned {
    none = 0,
    user = 1U << 0,   ///< CLONE_NEWUSER: the caller's uid/gid become 0 inside (one-id maps)
    pid = 1U << 1,    ///< CLONE_NEWPID: the child is pid 1 of a new pid namespace
    mount = 1U << 2,  ///< CLONE_NEWNS: private mounts (propagation made private); with `pid`,
                      ///<   a fresh /proc is mounted
    net = 1U << 3,    ///< CLONE_NEWNET: only a loopback interface, brought up
    uts = 1U << 4,    ///< CLONE_NEWUTS: its own hostname
    ipc = 1U << 5,    ///< CLONE_NEWIPC: its own System V IPC and POSIX message queues
    cgroup = 1U << 6, ///< CLONE_NEWCGROUP: its cgroup becomes the root of its view
};
constexpr namespaces operator|(namespaces a, namespaces b) noexcept {
    return static_cast<namespaces>(static_cast<unsigned>(a) | static_cast<unsigned>(b));
}
constexpr namespaces operator&(namespaces a, namespaces b) noexcept {
    return static_cast<namespaces>(static_cast<unsigned>(a) & static_cast<unsigned>(b));
}
constexpr bool any(namespaces n) noexcept {
    return static_cast<unsigned>(n) != 0;
}

/// Resource limits enforced through the child's leaf cgroup (cgroup v2 controllers).
struct cgroup_limits {
    std::optional<std::uint64_t> memory_max; ///< bytes, memory.max
    std::optional<std::uint64_t> pids_max;   ///< processes and threads, pids.max
    /// cpu.max: `cpu_quota` of CPU time per `cpu_period` (e.g. 50ms per 100ms = half a core).
    std::optional<std::chrono::microseconds> cpu_quota;
    std::chrono::microseconds cpu_period{100000};
    bool empty() const noexcept { return !memory_max && !pids_max && !cpu_quota; }
    bool operator==(const cgroup_limits&) const = default;
};

/// A cgroup limit that could not be put in force for a child (see `child::unapplied_limits`).
struct unapplied_limit {
    std::string setting; ///< "memory_max", "pids_max", "cpu_max"; "parent_death_signal" on macOS
    std::string reason;  ///< why, for a warning
};

/// A command to spawn: a program plus an argv vector, never a command string.
///
/// Arguments reach the child byte for byte; no shell ever sees them. A shell runs only if you
/// name one as the program (`command("/bin/sh").arg("-c").arg(script)`).
///
/// **Program lookup** happens in the parent, at `spawn()`:
/// - a name without `/` is searched on PATH only: the PATH the child will get if the command
///   sets or keeps one, else the parent's PATH, else `confstr(_CS_PATH)`. Empty and relative
///   PATH entries are skipped, so a bare name never resolves against the current directory;
/// - a name with `/` is used as written; a relative one is relative to the child's `cwd()`.
///
/// **Environment** starts from a base and then applies `env()`/`env_remove()` in call order:
/// - inherit (default): the parent's environment minus what belongs to the supervisor itself:
///   `NOTIFY_SOCKET`, `WATCHDOG_PID`, `WATCHDOG_USEC` (its systemd channel), `LISTEN_PID`,
///   `LISTEN_FDS`, `LISTEN_FDNAMES` (sockets passed to it) and every `DROVER_*` variable;
/// - `env_clear()`: empty;
/// - `env_keep(key)`: only the listed keys of the parent's environment (an allow-list; a listed
///   supervisor variable is kept, because it was asked for).
/// Duplicate keys: the last one wins, everywhere (a key twice in the parent's environment, twice
/// in an env file, or set twice). `env_file()` applies a dotenv file (see `read_env_file`).
/// Keys must be non-empty and contain no `=` or NUL; values no NUL.
///
/// **Stdio** defaults to `stdio::inherit()` for fds 0-2. `pass_fd()` hands further descriptors
/// to the child; every other descriptor is closed before exec, CLOEXEC or not.
///
/// **Session**: the child starts in a new session (`setsid`) unless `new_session(false)`, so a
/// terminal's Ctrl-C or a stop reaches the child's whole tree and not drover.
///
/// **Stopping** (see `child::async_stop`): `stop_signal()` (default SIGTERM) and SIGCONT go to
/// the whole tree, then after `stop_grace()` (default 10 s) SIGKILL. The tree is the child's
/// leaf cgroup where `cgroup()` allows one, else its session and descendants.
/// `on_cancel()` says what cancelling a wait does (default: stop).
///
/// **Parent death**: the child gets `parent_death_signal()` (default SIGKILL; 0 for none) when
/// the thread that spawned it exits. drover spawns from a long-lived thread (see `spawn`).
///
/// **Signal mask**: the child starts with an empty signal mask and default dispositions, unless
/// `blocked_signals()` names signals to start blocked.
///
/// **Limits**: `rlimit()` sets a resource limit for the child only. Without an explicit
/// RLIMIT_NOFILE, a child whose parent raised its soft NOFILE limit above 1024 gets 1024 (the
/// hard limit kept): programs using `select()` break above it (pitfalls B6).
/// `umask()` and `no_new_privs()` apply in the child before exec.
///
/// **Identity** (`user()`, `group()`, `supplementary_groups()`): names are resolved in the
/// parent at spawn; the child then calls setgroups, setgid, setuid (in that order, each checked
/// and verified with getres[ug]id) before exec. Only the child changes identity, never the
/// parent or its threads. Without `group()`, the user's primary group; without
/// `supplementary_groups()`, the user's groups from the group database. Changing identity
/// needs root (CAP_SETUID, CAP_SETGID): otherwise the spawn fails at stage `setgroups` with
/// EPERM. `capability_bounding_set()` (root) limits what the child and its descendants can ever
/// hold.
///
/// **Isolation** (`unshare()`): new namespaces for the child, created by clone itself. With
/// `namespaces::user`, the caller's uid and gid are mapped to 0 inside (works unprivileged).
/// A child in a new pid namespace is its init: the kernel ignores signals it has no handler
/// for, so a stop reaches it only through its handler or the SIGKILL after the grace.
///
/// **cgroup limits** (`memory_max()`, `pids_max()`, `cpu_max()`) are written to the child's
/// leaf cgroup before it starts. Where a controller is missing (a hybrid host, no delegation)
/// the spawn still succeeds and `child::unapplied_limits()` says which limit was not applied
/// and why: never silently ignored.
class command {
public:
    /// No program yet (spawning it fails with `invalid_command`): a placeholder to assign to.
    command() = default;
    explicit command(std::string program) : program_(std::move(program)) {}
    command(std::string program, std::vector<std::string> args)
        : program_(std::move(program)), args_(std::move(args)) {}

    /// The one way to run a shell: `/bin/sh -c script` (argv[0] "sh"). Everything in `script` is
    /// shell syntax; never build it from untrusted text (pass such text as arguments of a
    /// command instead, or as positional parameters: `shell("echo \"$1\"").arg("sh").arg(x)`,
    /// where the first extra argument becomes `$0`).
    static command shell(std::string script) {
        command c("/bin/sh", {"-c", std::move(script)});
        c.arg0("sh");
        return c;
    }

    /// Appends one argument (argv[1], argv[2], ...).
    command& arg(std::string a) {
        args_.push_back(std::move(a));
        return *this;
    }
    /// Appends several arguments.
    command& args(const std::vector<std::string>& as) {
        args_.insert(args_.end(), as.begin(), as.end());
        return *this;
    }
    command& args(std::initializer_list<std::string> as) {
        args_.insert(args_.end(), as.begin(), as.end());
        return *this;
    }
    /// Sets argv[0] (default: the program as given).
    command& arg0(std::string a0) {
        arg0_ = std::move(a0);
        return *this;
    }

    /// Sets `key=value` in the child's environment.
    command& env(std::string key, std::string value) {
        env_ops_.push_back({std::move(key), std::move(value)});
        return *this;
    }
    /// Removes `key` from the child's environment.
    command& env_remove(std::string key) {
        env_ops_.push_back({std::move(key), std::nullopt});
        return *this;
    }
    /// Starts the child's environment empty (drops the inherited base and any kept keys).
    command& env_clear() {
        env_base_ = env_base::empty;
        env_keep_.clear();
        env_ops_.clear();
        return *this;
    }
    /// Keeps `key` from the parent's environment; the base becomes "only the kept keys".
    command& env_keep(std::string key) {
        env_base_ = env_base::keep_list;
        env_keep_.push_back(std::move(key));
        return *this;
    }

    /// The child's working directory (default: the parent's).
    command& cwd(std::filesystem::path dir) {
        cwd_ = std::move(dir);
        return *this;
    }

    command& std_in(stdio s) {
        stdio_[0] = std::move(s);
        return *this;
    }
    command& std_out(stdio s) {
        stdio_[1] = std::move(s);
        return *this;
    }
    command& std_err(stdio s) {
        stdio_[2] = std::move(s);
        return *this;
    }

    /// Passes the parent's `parent_fd` to the child as `child_fd` (>= 3). The descriptor is
    /// duplicated during `spawn()`; the caller keeps ownership of `parent_fd`.
    command& pass_fd(int parent_fd, int child_fd) {
        passed_fds_.push_back({parent_fd, child_fd});
        return *this;
    }

    /// Starts the child in a new session (default true).
    command& new_session(bool on) {
        new_session_ = on;
        return *this;
    }

    /// The first signal of a stop (default SIGTERM). SIGCONT always follows it.
    command& stop_signal(int sig) {
        stop_signal_ = sig;
        return *this;
    }
    /// How long a stop waits after the stop signal before SIGKILL (default 10 s).
    command& stop_grace(std::chrono::steady_clock::duration grace) {
        stop_grace_ = grace;
        return *this;
    }
    /// Whether the child gets a leaf cgroup (default `cgroup_mode::automatic`).
    command& cgroup(cgroup_mode m) {
        cgroup_mode_ = m;
        return *this;
    }
    /// What cancelling a wait does (default `cancel_policy::stop`).
    command& on_cancel(cancel_policy p) {
        cancel_policy_ = p;
        return *this;
    }
    /// The signal the child gets when drover's spawning thread dies (default SIGKILL; 0: none).
    command& parent_death_signal(int sig) {
        pdeathsig_ = sig;
        return *this;
    }
    /// Signals the child starts with blocked (default: none, an empty mask). For a program that
    /// installs its handlers first thing and must not lose a signal sent before: a blocked signal
    /// stays pending until the program unblocks it, even for the init of a new pid namespace,
    /// which the kernel otherwise spares every signal it has no handler for. SIGKILL and SIGSTOP
    /// cannot be blocked: the spawn fails at stage `prepare`, as it does for a number that is
    /// not a signal.
    command& blocked_signals(std::vector<int> sigs) {
        blocked_signals_ = std::move(sigs);
        return *this;
    }

    /// Sets resource limit `resource` (RLIMIT_CPU, RLIMIT_NOFILE, ...) for the child, soft and
    /// hard (RLIM_INFINITY for none). Raising a hard limit needs privilege: the spawn then fails
    /// at stage `limits` with EPERM. Set twice: the last wins.
    command& rlimit(int resource, rlim_t soft, rlim_t hard) {
        std::erase_if(rlimits_, [&](const resource_limit& l) { return l.resource == resource; });
        rlimits_.push_back({resource, soft, hard});
        return *this;
    }
    /// The child's file mode creation mask (default: the parent's).
    command& umask(mode_t mask) {
        umask_ = mask & 0777;
        return *this;
    }
    /// PR_SET_NO_NEW_PRIVS in the child: exec can never grant privileges (setuid binaries, file
    /// capabilities) to it or its descendants.
    command& no_new_privs(bool on) {
        no_new_privs_ = on;
        return *this;
    }

    /// Reads a dotenv file now (see `read_env_file`) and sets each of its variables, in file
    /// order. Throws `env_file_error` naming the file and line on a syntax error or a read
    /// failure.
    command& env_file(const std::filesystem::path& file);

    /// Runs the child as `user` (a name from the user database, or a numeric uid).
    command& user(std::string name_or_uid) {
        user_ = std::move(name_or_uid);
        return *this;
    }
    /// Runs the child with primary group `group` (a name or a numeric gid).
    command& group(std::string name_or_gid) {
        group_ = std::move(name_or_gid);
        return *this;
    }
    /// The child's supplementary groups (names or numbers); empty for none.
    command& supplementary_groups(std::vector<std::string> groups) {
        groups_ = std::move(groups);
        return *this;
    }
    /// Keeps only these capabilities (CAP_* numbers, see `capability_number`) in the child's
    /// bounding set; every other one is dropped for good. Needs CAP_SETPCAP (root).
    command& capability_bounding_set(std::vector<int> keep) {
        cap_bound_ = std::move(keep);
        return *this;
    }
    /// New namespaces for the child (default none).
    command& unshare(namespaces ns) {
        namespaces_ = ns;
        return *this;
    }
    /// memory.max of the child's cgroup, in bytes.
    command& memory_max(std::uint64_t bytes) {
        limits_.memory_max = bytes;
        return *this;
    }
    /// pids.max of the child's cgroup: processes and threads of the whole tree.
    command& pids_max(std::uint64_t n) {
        limits_.pids_max = n;
        return *this;
    }
    /// cpu.max of the child's cgroup: `quota` of CPU time per `period`.
    command& cpu_max(std::chrono::microseconds quota,
                     std::chrono::microseconds period = std::chrono::microseconds(100000)) {
        limits_.cpu_quota = quota;
        limits_.cpu_period = period;
        return *this;
    }

    // ---- observers: each getter has its setter's name (`cmd.cwd("/tmp")` sets, `cmd.cwd()` reads)
    const std::optional<std::string>& user() const noexcept { return user_; }
    const std::optional<std::string>& group() const noexcept { return group_; }
    const std::optional<std::vector<std::string>>& supplementary_groups() const noexcept { return groups_; }
    const std::optional<std::vector<int>>& capability_bounding_set() const noexcept { return cap_bound_; }
    namespaces unshare() const noexcept { return namespaces_; }
    const struct cgroup_limits& cgroup_settings() const noexcept { return limits_; }
    struct resource_limit {
        int resource;
        rlim_t soft;
        rlim_t hard;
        bool operator==(const resource_limit&) const = default;
    };
    const std::vector<resource_limit>& rlimits() const noexcept { return rlimits_; }
    std::optional<mode_t> umask() const noexcept { return umask_; }
    bool no_new_privs() const noexcept { return no_new_privs_; }
    enum class env_base : unsigned char { inherit, empty, keep_list };
    struct env_op {
        std::string key;
        std::optional<std::string> value; ///< nullopt: remove
        bool operator==(const env_op&) const = default;
    };
    struct passed_fd {
        int parent_fd;
        int child_fd;
        bool operator==(const passed_fd&) const = default;
    };

    const std::string& program() const noexcept { return program_; }
    const std::vector<std::string>& args() const noexcept { return args_; }
    const std::optional<std::string>& arg0() const noexcept { return arg0_; }
    env_base environment_base() const noexcept { return env_base_; }
    const std::vector<std::string>& env_keep() const noexcept { return env_keep_; }
    const std::vector<env_op>& env_ops() const noexcept { return env_ops_; }
    const std::optional<std::filesystem::path>& cwd() const noexcept { return cwd_; }
    const stdio& stdio_for(int fd) const noexcept { return stdio_[fd]; }
    const std::vector<passed_fd>& passed_fds() const noexcept { return passed_fds_; }
    bool new_session() const noexcept { return new_session_; }
    int stop_signal() const noexcept { return stop_signal_; }
    std::chrono::steady_clock::duration stop_grace() const noexcept { return stop_grace_; }
    cgroup_mode cgroup() const noexcept { return cgroup_mode_; }
    cancel_policy on_cancel() const noexcept { return cancel_policy_; }
    int parent_death_signal() const noexcept { return pdeathsig_; }
    const std::vector<int>& blocked_signals() const noexcept { return blocked_signals_; }

private:
    std::string program_;
    std::vector<std::string> args_;
    std::optional<std::string> arg0_;
    env_base env_base_ = env_base::inherit;
    std::vector<std::string> env_keep_;
    std::vector<env_op> env_ops_;
    std::optional<std::filesystem::path> cwd_;
    stdio stdio_[3] = {stdio::inherit(), stdio::inherit(), stdio::inherit()};
    std::vector<passed_fd> passed_fds_;
    bool new_session_ = true;
    int stop_signal_ = SIGTERM;
    std::chrono::steady_clock::duration stop_grace_ = std::chrono::seconds(10);
    cgroup_mode cgroup_mode_ = cgroup_mode::automatic;
    cancel_policy cancel_policy_ = cancel_policy::stop;
    int pdeathsig_ = SIGKILL;
    std::vector<int> blocked_signals_;
    std::vector<resource_limit> rlimits_;
    std::optional<mode_t> umask_;
    bool no_new_privs_ = false;
    std::optional<std::string> user_;
    std::optional<std::string> group_;
    std::optional<std::vector<std::string>> groups_;
    std::optional<std::vector<int>> cap_bound_;
    namespaces namespaces_ = namespaces::none;
    struct cgroup_limits limits_;

public:
    /// Two commands are equal when they would spawn the same process the same way (every
    /// setting compared; a `stdio::fd()` compares by descriptor number).
    friend bool operator==(const command&, const command&) = default;
};

/// RLIMIT_* for a name: "cpu", "fsize", "data", "stack", "core", "rss", "nproc", "nofile",
/// "memlock", "as", "locks", "sigpending", "msgqueue", "nice", "rtprio", "rttime" (any case,
/// with or without "RLIMIT_"). Empty for anything else.
std::optional<int> rlimit_resource(std::string_view name) noexcept;
/// The lower-case name of RLIMIT_* `resource` ("nofile"), empty if unknown.
std::string_view rlimit_name(int resource) noexcept;

/// CAP_* for a name: "net_bind_service", "CAP_SYS_ADMIN", ... (any case, with or without "CAP_").
/// Empty for anything else. `capability_name` is the reverse ("cap_chown"), empty if unknown.
std::optional<int> capability_number(std::string_view name) noexcept;
std::string_view capability_name(int cap) noexcept;

/// Namespaces from a comma-separated list: "user", "pid", "mount" (or "mnt"), "net", "uts",
/// "ipc", "cgroup". Empty for an unknown name (then `bad` holds it).
std::optional<namespaces> parse_namespaces(std::string_view list, std::string* bad = nullptr);
/// "pid,mount,net": the names of the set namespaces, in the enum's order.
std::string to_string(namespaces ns);

/// An argument that looks like shell syntax, which drover passes on literally.
struct shell_syntax_hint {
    std::size_t index; ///< in argv (1 = the first argument)
    std::string what;  ///< e.g. "a pipe '|'", "command substitution '$('"
};
/// The arguments of `cmd` that look like shell syntax (`|`, `&&`, `;`, `>`, `$(`, backticks...)
/// that no shell will interpret, for a warning that says how to use one on purpose
/// (`command::shell`). Nothing is reported when the program itself is a shell (sh, bash, dash,
/// zsh, ksh, mksh, ash, fish, busybox): that is using one on purpose. The library only
/// reports; tools decide whether to warn.
std::vector<shell_syntax_hint> shell_syntax_hints(const command& cmd);

} // namespace drover
