// supervise-peers: `drover up` against supervisord, runit (runsvdir + runsv) and s6 (s6-svscan +
// s6-supervise), each supervising N copies of drover-bench-svc. Each service process reports
// itself on a unix datagram socket the bench listens on ("IDX PID NS", NS its own monotonic
// clock), so the bench knows to the microsecond when each one ran, whatever the supervisor.
//
// One run of a contender: write its configuration into a fresh temporary directory, start it
// (start all: until every service reported, and for drover up its READY=1), wait 200 ms, count
// the context switches of the supervisor side over an idle window, read its memory (PSS), kill -9
// services one at a time round-robin (each up for over 1 s: runit and s6 delay the restart of a
// service that ran less than that) until their new process reports, then ask it to stop (until
// every service process has ended). Whatever happens, the run ends by killing what is left: the
// supervisor's process group, then every process whose environment carries the run's token.
#include "peers.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>

#include <fmt/core.h>

extern char** environ;

namespace bench {
namespace {

namespace fs = std::filesystem;

std::int64_t mono_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

volatile sig_atomic_t g_interrupted = 0;
extern "C" void on_interrupt(int) {
    g_interrupted = 1;
}

struct interrupted : std::runtime_error {
    interrupted() : std::runtime_error("interrupted") {}
};

std::string which(const std::string& name) {
    for (const char* dir : {"/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"}) {
        std::string p = std::string(dir) + "/" + name;
        if (::access(p.c_str(), X_OK) == 0) return p;
    }
    return {};
}

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

// ---- /proc ------------------------------------------------------------------------------------

/// The state letter of `pid` (R, S, Z...), or 0 when it is gone.
char proc_state(pid_t pid) {
    std::string s = slurp(fmt::format("/proc/{}/stat", pid));
    auto p = s.rfind(')');
    return p == std::string::npos || p + 2 >= s.size() ? 0 : s[p + 2];
}

std::vector<pid_t> all_pids() {
    std::vector<pid_t> v;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc", ec)) {
        const std::string n = e.path().filename().string();
        if (!n.empty() && n.find_first_not_of("0123456789") == std::string::npos) v.push_back(std::stoi(n));
    }
    return v;
}

/// `root` and every process below it.
std::vector<pid_t> tree(pid_t root) {
    std::multimap<pid_t, pid_t> children;
    for (pid_t p : all_pids()) {
        std::string s = slurp(fmt::format("/proc/{}/stat", p));
        auto q = s.rfind(')');
        if (q == std::string::npos) continue;
        char st = 0;
        int ppid = 0;
        if (std::sscanf(s.c_str() + q + 1, " %c %d", &st, &ppid) == 2) children.emplace(ppid, p);
    }
    std::vector<pid_t> out{root};
    for (std::size_t i = 0; i < out.size(); ++i) {
        auto [b, e] = children.equal_range(out[i]);
        for (auto it = b; it != e; ++it) out.push_back(it->second);
    }
    return out;
}

/// A field of /proc/PID/smaps_rollup or status, in its unit (kB or a count); 0 when missing.
std::uint64_t proc_field(const std::string& file, const char* key) {
    std::ifstream f(file);
    std::string line;
    const std::size_t n = std::strlen(key);
    while (std::getline(f, line))
        if (line.compare(0, n, key) == 0) return std::strtoull(line.c_str() + n, nullptr, 10);
    return 0;
}

std::uint64_t context_switches(pid_t pid) {
    std::uint64_t total = 0;
    std::error_code ec;
    for (const auto& t : fs::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
        const std::string st = (t.path() / "status").string();
        total += proc_field(st, "voluntary_ctxt_switches:") + proc_field(st, "nonvoluntary_ctxt_switches:");
    }
    return total;
}

bool environ_has(pid_t pid, const std::string& entry) {
    std::string e = slurp(fmt::format("/proc/{}/environ", pid));
    for (std::size_t i = 0; i < e.size();) {
        std::size_t z = e.find('\0', i);
        if (z == std::string::npos) z = e.size();
        if (e.compare(i, z - i, entry) == 0) return true;
        i = z + 1;
    }
    return false;
}

// ---- sockets ------------------------------------------------------------------------------------

/// A bound unix datagram socket, unlinked when destroyed.
struct dgram {
    int fd = -1;
    std::string path;
    explicit dgram(std::string p) : path(std::move(p)) {
        fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        if (fd < 0 || path.size() >= sizeof a.sun_path) throw std::runtime_error("socket: " + path);
        std::memcpy(a.sun_path, path.c_str(), path.size());
        ::unlink(path.c_str());
        if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
            throw std::runtime_error(fmt::format("bind {}: {}", path, std::strerror(errno)));
        int size = 4 << 20;
        ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
    dgram(const dgram&) = delete;
    dgram& operator=(const dgram&) = delete;
    ~dgram() {
        if (fd >= 0) ::close(fd);
        ::unlink(path.c_str());
    }
};

// ---- contenders ---------------------------------------------------------------------------------

enum class peer { drover, supervisord, runit, s6 };

struct variant {
    std::string name;
    peer kind;
    bool ready = false; ///< the service signals readiness (drover: notify; s6: notification-fd)
    std::string missing;
    std::string program; ///< drover, supervisord, runsvdir or s6-svscan
};

struct run_result {
    double start_ms = -1, pss_kib = -1, switches = -1, stop_ms = -1;
    std::vector<double> restart_us;
    std::vector<std::string> problems; ///< a failed run says why; a run with surprises says which
    bool ok = false;
};

std::string toml_string(const std::string& s) {
    std::string o = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\';
        o += c;
    }
    return o + "\"";
}

/// One run of one contender with `n` services, torn down (everything killed, the directory
/// removed) when destroyed.
class run {
public:
    run(const variant& v, int n, const peers_options& o, int serial)
        : v_(v), n_(n), o_(o), pid_of_(static_cast<std::size_t>(n), 0),
          since_(static_cast<std::size_t>(n), 0) {
        char tmpl[] = "/tmp/drover-bench-peers-XXXXXX";
        if (!::mkdtemp(tmpl)) throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
        dir_ = tmpl;
        token_ = fmt::format("DRBENCH_RUN={}-{}-{}", ::getpid(), serial, dir_.filename().string());
        reports_.emplace((dir_ / "report.sock").string());
        if (v_.kind == peer::drover) notify_.emplace((dir_ / "notify.sock").string());
    }
    run(const run&) = delete;
    run& operator=(const run&) = delete;
    ~run() { teardown(); }

    run_result go(int kills, double idle_s) {
        run_result r;
        try {
            configure();
            start(r);
            pump_for(0.2);
            idle(r, idle_s);
            restarts(r, kills);
            stop(r);
            r.ok = true;
        } catch (const interrupted&) {
            throw;
        } catch (const std::exception& e) {
            std::string tail = slurp((dir_ / "output.log").string());
            if (tail.size() > 600) tail = "..." + tail.substr(tail.size() - 600);
            r.problems.push_back(std::string(e.what()) + (tail.empty() ? "" : "; its output ends: " + tail));
        }
        return r;
    }

private:
    const variant& v_;
    int n_;
    const peers_options& o_;
    fs::path dir_;
    std::string token_;
    std::optional<dgram> reports_, notify_;
    pid_t root_ = -1;
    bool root_exited_ = false;
    int root_status_ = 0;
    std::vector<pid_t> pid_of_;       // the current process of each service (0: none yet)
    std::vector<std::int64_t> since_; // when it reported (its own clock)
    int reported_ = 0;                // services that reported at least once
    int unexpected_ = 0;              // reports while nothing was being restarted
    bool counting_unexpected_ = false;
    std::int64_t ready_ns_ = 0; // drover up's READY=1

    void configure() {
        const std::string svc = o_.svc;
        switch (v_.kind) {
        case peer::drover: {
            std::ofstream f(dir_ / "drover.toml");
            // reset_after = 1s: a service killed after more than 1 s of running restarts at once,
            // as under runit and s6 (the default, 30 s, would back off on the second kill).
            f << "[drover]\nshutdown_grace = \"10s\"\n";
            for (int i = 0; i < n_; ++i) {
                f << fmt::format("\n[service.s{}]\ncommand = [{}, \"{}\"]\nrestart = \"always\"\n"
                                 "backoff = {{ reset_after = \"1s\" }}\n",
                                 i, toml_string(svc), i);
                if (v_.ready) f << "ready = { notify = true }\n";
            }
            break;
        }
        case peer::supervisord: {
            std::ofstream f(dir_ / "supervisord.conf");
            // Output to NONE: supervisord still reads the pipes but writes no file per service.
            f << fmt::format("[supervisord]\nnodaemon=true\nlogfile={0}/supervisord.log\npidfile={0}/"
                             "supervisord.pid\nchildlogdir={0}\nminfds={1}\nminprocs={2}\n",
                             dir_.string(), std::max(1024, n_ * 6 + 64), n_ + 200);
            for (int i = 0; i < n_; ++i)
                f << fmt::format("\n[program:s{}]\ncommand={} {}\nautorestart=true\nstdout_logfile=NONE\n"
                                 "stderr_logfile=NONE\n",
                                 i, svc, i);
            break;
        }
        case peer::runit:
        case peer::s6: {
            // ./run is the service program itself (a symlink), no shell in between: the service
            // finds its index in its directory's name.
            const fs::path scan = dir_ / "scan";
            for (int i = 0; i < n_; ++i) {
                const fs::path d = scan / fmt::format("s{}", i);
                fs::create_directories(d);
                fs::create_symlink(svc, d / "run");
                if (v_.ready) std::ofstream(d / "notification-fd") << "3\n";
            }
            // runsvdir waits for the next second before scanning a directory changed in the
            // current one (it could miss a later change within it): a configuration written long
            // before the start, as in real use, is scanned at once.
            // (The file system's own idea of now, the directory's fresh mtime, less 10 s: a file
            // time, not a timing; drover's timing never reads the wall clock, test_stop.cpp H2.)
            struct stat st {};
            if (::stat(scan.c_str(), &st) == 0) {
                const timespec past[2] = {{st.st_mtim.tv_sec - 10, 0}, {st.st_mtim.tv_sec - 10, 0}};
                ::utimensat(AT_FDCWD, scan.c_str(), past, 0);
            }
            break;
        }
        }
    }

    std::vector<std::string> argv() const {
        switch (v_.kind) {
        case peer::drover:
            return {v_.program, "up",
                    "-f",       (dir_ / "drover.toml").string(),
                    "--socket", (dir_ / "ctl.sock").string()};
        case peer::supervisord:
            return {v_.program, "-c", (dir_ / "supervisord.conf").string()};
        case peer::runit:
            return {v_.program, (dir_ / "scan").string()};
        case peer::s6:
            // s6-svscan keeps at most 500 services by default.
            if (n_ >= 400) return {v_.program, "-c", std::to_string(n_ * 2), (dir_ / "scan").string()};
            return {v_.program, (dir_ / "scan").string()};
        }
        return {};
    }

    pid_t spawn(const std::vector<std::string>& args, bool own_group) {
        std::vector<std::string> env;
        for (char** e = environ; *e; ++e) {
            std::string_view s(*e);
            if (s.rfind("NOTIFY_SOCKET=", 0) == 0 || s.rfind("DRBENCH_", 0) == 0 ||
                s.rfind("LISTEN_", 0) == 0 || s.rfind("WATCHDOG_", 0) == 0)
                continue;
            env.emplace_back(s);
        }
        env.push_back("DRBENCH_SVC_SOCKET=" + reports_->path);
        env.push_back(std::string("DRBENCH_SVC_MODE=") + (v_.ready ? "ready" : "plain"));
        env.push_back(token_);
        if (notify_) env.push_back("NOTIFY_SOCKET=" + notify_->path);
        std::vector<char*> ev, av;
        for (auto& s : env) ev.push_back(s.data());
        ev.push_back(nullptr);
        std::vector<std::string> a = args;
        for (auto& s : a) av.push_back(s.data());
        av.push_back(nullptr);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        const std::string log = (dir_ / "output.log").string();
        posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
        posix_spawn_file_actions_addclosefrom_np(&fa, 3); // nothing of the bench's leaks into the peers
        posix_spawnattr_t at;
        posix_spawnattr_init(&at);
        sigset_t none, dflt;
        sigemptyset(&none);
        sigemptyset(&dflt);
        for (int s : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD, SIGQUIT}) sigaddset(&dflt, s);
        posix_spawnattr_setsigmask(&at, &none);
        posix_spawnattr_setsigdefault(&at, &dflt);
        short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
        if (own_group) {
            flags |= POSIX_SPAWN_SETPGROUP;
            posix_spawnattr_setpgroup(&at, 0);
        }
        posix_spawnattr_setflags(&at, flags);
        pid_t pid = -1;
        int rc = ::posix_spawn(&pid, av[0], &fa, &at, av.data(), ev.data());
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&at);
        if (rc != 0) throw std::runtime_error(fmt::format("spawning {}: {}", args[0], std::strerror(rc)));
        return pid;
    }

    /// Reaps whatever ended among our children and the orphans that came to us.
    void reap() {
        int st = 0;
        pid_t p;
        while ((p = ::waitpid(-1, &st, WNOHANG)) > 0)
            if (p == root_) {
                root_exited_ = true;
                root_status_ = st;
            }
    }

    std::string root_end() const {
        return WIFEXITED(root_status_)     ? fmt::format("exited with status {}", WEXITSTATUS(root_status_))
               : WIFSIGNALED(root_status_) ? fmt::format("was killed by signal {}", WTERMSIG(root_status_))
                                           : "ended";
    }

    /// Waits up to `timeout_ms` for datagrams and takes them all in.
    void pump(int timeout_ms) {
        if (g_interrupted) throw interrupted();
        pollfd p[2] = {{reports_->fd, POLLIN, 0}, {notify_ ? notify_->fd : -1, POLLIN, 0}};
        ::poll(p, 2, timeout_ms);
        char buf[512];
        ssize_t k;
        while ((k = ::recv(reports_->fd, buf, sizeof buf - 1, 0)) > 0) {
            buf[k] = 0;
            long idx = -1, pid = 0;
            long long ns = 0;
            if (std::sscanf(buf, "%ld %ld %lld", &idx, &pid, &ns) != 3 || idx < 0 || idx >= n_) continue;
            auto i = static_cast<std::size_t>(idx);
            if (pid_of_[i] == 0)
                ++reported_;
            else if (counting_unexpected_)
                ++unexpected_;
            pid_of_[i] = static_cast<pid_t>(pid);
            since_[i] = ns;
        }
        if (notify_)
            while ((k = ::recv(notify_->fd, buf, sizeof buf - 1, 0)) > 0) {
                buf[k] = 0;
                if (!ready_ns_ && std::strstr(buf, "READY=1")) ready_ns_ = mono_ns();
            }
        reap();
    }

    void pump_for(double seconds) {
        const std::int64_t end = mono_ns() + static_cast<std::int64_t>(seconds * 1e9);
        for (std::int64_t now; (now = mono_ns()) < end;)
            pump(static_cast<int>(std::max<std::int64_t>(1, (end - now) / 1000000)));
    }

    void start(run_result& r) {
        const std::int64_t t0 = mono_ns();
        root_ = spawn(argv(), true);
        const double limit_s = 30 + 0.2 * n_;
        const std::int64_t deadline = t0 + static_cast<std::int64_t>(limit_s * 1e9);
        while (reported_ < n_ || (notify_ && !ready_ns_)) {
            pump(20);
            if (root_exited_)
                throw std::runtime_error(fmt::format("{} {} after {} of {} services started", v_.program,
                                                     root_end(), reported_, n_));
            if (mono_ns() > deadline)
                throw std::runtime_error(fmt::format("only {} of {} services started within {:.0f} s{}",
                                                     reported_, n_, limit_s,
                                                     notify_ && !ready_ns_ ? ", no READY=1" : ""));
        }
        std::int64_t last = *std::max_element(since_.begin(), since_.end());
        if (notify_) last = std::max(last, ready_ns_);
        r.start_ms = static_cast<double>(last - t0) / 1e6;
    }

    /// The supervisor's side: its process tree less the services' processes.
    std::vector<pid_t> supervisor_side() const {
        std::set<pid_t> services(pid_of_.begin(), pid_of_.end());
        std::vector<pid_t> out;
        for (pid_t p : tree(root_))
            if (!services.count(p) && proc_state(p) != 'Z') out.push_back(p);
        return out;
    }

    void idle(run_result& r, double seconds) {
        counting_unexpected_ = true;
        auto side = supervisor_side();
        std::uint64_t s0 = 0, s1 = 0;
        for (pid_t p : side) s0 += context_switches(p);
        pump_for(seconds);
        for (pid_t p : side) s1 += context_switches(p);
        r.switches = static_cast<double>(s1 - s0);
        double pss = 0;
        for (pid_t p : supervisor_side())
            pss += static_cast<double>(proc_field(fmt::format("/proc/{}/smaps_rollup", p), "Pss:"));
        r.pss_kib = pss;
        if (unexpected_) r.problems.push_back(fmt::format("{} service(s) restarted while idle", unexpected_));
        counting_unexpected_ = false;
    }

    void restarts(run_result& r, int kills) {
        int timeouts = 0;
        for (int k = 0; k < kills; ++k) {
            const auto i = static_cast<std::size_t>(k % n_);
            while (mono_ns() - since_[i] < 1000000000)
                pump(static_cast<int>(
                    std::max<std::int64_t>(1, (since_[i] + 1000000000 - mono_ns()) / 1000000)));
            const pid_t old = pid_of_[i];
            const std::int64_t t = mono_ns();
            ::kill(old, SIGKILL);
            const std::int64_t deadline = t + 5000000000;
            while (pid_of_[i] == old && mono_ns() < deadline) pump(5);
            if (pid_of_[i] == old) {
                ++timeouts;
                if (timeouts == 3) break;
                continue;
            }
            r.restart_us.push_back(static_cast<double>(since_[i] - t) / 1e3);
        }
        if (timeouts)
            r.problems.push_back(
                fmt::format("{} kill(s) not followed by a new process within 5 s", timeouts));
    }

    void request_stop() {
        switch (v_.kind) {
        case peer::drover:
        case peer::supervisord:
            ::kill(root_, SIGTERM);
            break;
        case peer::runit:
            // runsvdir(8): HUP sends TERM to every runsv, then it exits; runsv(8) takes TERM as
            // `x`: TERM (and CONT) to the service, and it exits once the service is down.
            ::kill(root_, SIGHUP);
            break;
        case peer::s6: {
            // s6-svscanctl -t: SIGTERM to every s6-supervise, which brings its service down and
            // exits; then s6-svscan exits.
            pid_t p = spawn({(fs::path(v_.program).parent_path() / "s6-svscanctl").string(), "-t",
                             (dir_ / "scan").string()},
                            false);
            int st = 0;
            ::waitpid(p, &st, 0);
            break;
        }
        }
    }

    void stop(run_result& r) {
        // A pidfd per service process: readable once it ended (a zombie is gone for us).
        std::vector<pollfd> fds;
        for (pid_t p : pid_of_) {
            int fd = static_cast<int>(::syscall(SYS_pidfd_open, p, 0));
            if (fd >= 0) fds.push_back({fd, POLLIN, 0});
        }
        const std::int64_t t = mono_ns();
        request_stop();
        const std::int64_t deadline = t + 60000000000; // supervisord may take tens of seconds
        std::size_t left = fds.size();
        std::int64_t last = t;
        while (left && mono_ns() < deadline && !g_interrupted) {
            if (::poll(fds.data(), fds.size(), 100) > 0) {
                const std::int64_t now = mono_ns();
                for (auto& f : fds)
                    if (f.fd >= 0 && f.revents) {
                        ::close(f.fd);
                        f.fd = -1;
                        --left;
                        last = now;
                    }
            }
            reap();
        }
        for (auto& f : fds)
            if (f.fd >= 0) ::close(f.fd);
        if (left)
            throw std::runtime_error(
                fmt::format("{} of {} services still ran 60 s after the stop request", left, fds.size()));
        r.stop_ms = static_cast<double>(last - t) / 1e6;
        // The supervisor itself should end too (not timed).
        const std::int64_t end = mono_ns() + 10000000000;
        while (!root_exited_ && mono_ns() < end) pump(10);
        if (!root_exited_)
            r.problems.push_back(fmt::format("{} did not exit within 10 s of the stop", v_.program));
        else if (v_.kind != peer::runit && !(WIFEXITED(root_status_) && WEXITSTATUS(root_status_) == 0))
            r.problems.push_back(fmt::format("{} {}", v_.program, root_end()));
    }

    /// Kills the supervisor's process group and then, until none is left, every process that
    /// carries this run's token in its environment (runsv, s6-supervise and the services
    /// included, wherever they moved); reaps; removes the directory.
    void teardown() {
        if (root_ > 0 && !root_exited_) ::kill(-root_, SIGKILL);
        for (int pass = 0; pass < 50; ++pass) {
            int found = 0;
            for (pid_t p : all_pids())
                if (p != ::getpid() && proc_state(p) != 'Z' && environ_has(p, token_)) {
                    ::kill(p, SIGKILL);
                    ++found;
                }
            reap();
            if (!found) break;
            ::usleep(20000);
        }
        reap();
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
};

/// The floor of a restart: posix_spawn of drover-bench-svc by the bench itself, until its report.
double spawn_floor_us(const std::string& svc) {
    char tmpl[] = "/tmp/drover-bench-floor-XXXXXX";
    if (!::mkdtemp(tmpl)) return -1;
    std::vector<double> v;
    {
        dgram d(std::string(tmpl) + "/report.sock");
        std::string e1 = "DRBENCH_SVC_SOCKET=" + d.path, e2 = "DRBENCH_SVC_MODE=once";
        std::vector<char*> env{e1.data(), e2.data(), nullptr};
        std::string a0 = svc, a1 = "0";
        char* argv[] = {a0.data(), a1.data(), nullptr};
        for (int i = 0; i < 21; ++i) {
            const std::int64_t t = mono_ns();
            pid_t pid = -1;
            if (::posix_spawn(&pid, svc.c_str(), nullptr, nullptr, argv, env.data()) != 0) break;
            pollfd p{d.fd, POLLIN, 0};
            char buf[128];
            if (::poll(&p, 1, 5000) > 0) {
                ssize_t k = ::recv(d.fd, buf, sizeof buf - 1, 0);
                long long ns = 0;
                long idx = 0, rp = 0;
                if (k > 0) {
                    buf[k] = 0;
                    if (std::sscanf(buf, "%ld %ld %lld", &idx, &rp, &ns) == 3 && i > 0) // the first warms up
                        v.push_back(static_cast<double>(ns - t) / 1e3);
                }
            }
            ::waitpid(pid, nullptr, 0);
        }
    }
    std::error_code ec;
    fs::remove_all(tmpl, ec);
    return v.empty() ? -1 : summarize(v).median;
}

std::string fmt_value(double v, const std::string& unit) {
    if (unit == "us" && v >= 10000) return fmt::format("{:.1f} ms", v / 1000);
    if (unit == "us") return fmt::format("{:.0f} us", v);
    if (unit == "ms") return fmt::format("{:.1f} ms", v);
    if (unit == "KiB") return fmt::format("{:.1f} KiB", v);
    return fmt::format("{:.0f}", v);
}

} // namespace

std::vector<bench_result> supervise_peers(const peers_options& o) {
    std::vector<int> sizes = o.sizes;
    if (sizes.empty()) sizes = o.quick ? std::vector<int>{10, 100} : std::vector<int>{10, 100, 500};
    // 3 rounds per N; quick: 2 at the smallest N and 1 above (supervisord alone needs 30 s for a
    // run of 100 services). The kills are shared out among the rounds: 30 per N, quick 10
    // (supervisord and s6 without readiness take a second per restart).
    auto rounds_for = [&](int n) { return !o.quick ? 3 : n == sizes.front() ? 2 : 1; };
    auto kills_for = [&](int n) { return (o.quick ? 10 : 30) / rounds_for(n); };
    const double idle_s = o.quick ? 3 : 10;

    // The contenders, in the order of the tables.
    std::vector<variant> vs;
    auto add = [&](std::string name, peer kind, bool ready, const std::string& program,
                   const std::string& pkg) {
        variant v{std::move(name), kind, ready, {}, program};
        if (program.empty() || ::access(program.c_str(), X_OK) != 0)
            v.missing = fmt::format("{} is not installed (apt-get install {}; tools/dev/bench.sh does)",
                                    program.empty() ? pkg : program, pkg);
        vs.push_back(std::move(v));
    };
    add("drover up", peer::drover, false, o.drover, "drover (build it)");
    add("drover up, ready = notify", peer::drover, true, o.drover, "drover (build it)");
    add("supervisord", peer::supervisord, false, which("supervisord"), "supervisor");
    add("runit (runsvdir + runsv)", peer::runit, false, which("runsvdir"), "runit");
    add("s6 (s6-svscan + s6-supervise)", peer::s6, false, which("s6-svscan"), "s6");
    add("s6, notification-fd", peer::s6, true, which("s6-svscan"), "s6");
    if (::access(o.svc.c_str(), X_OK) != 0)
        for (auto& v : vs) v.missing = "no drover-bench-svc at " + o.svc;
    if (!vs[3].missing.empty() || ::access(which("runsv").c_str(), X_OK) != 0)
        if (vs[3].missing.empty()) vs[3].missing = "runsv is not installed";

    // The bench reaps whatever reaches it (runsv and services orphaned by a supervisor that ends
    // first), and everything a supervisor starts may need many descriptors.
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    rlimit nofile{};
    ::getrlimit(RLIMIT_NOFILE, &nofile);
    const rlimit saved = nofile;
    nofile.rlim_cur = std::min<rlim_t>(nofile.rlim_max, 65536);
    ::setrlimit(RLIMIT_NOFILE, &nofile);
    struct sigaction sa {
    }, old_int{}, old_term{};
    sa.sa_handler = on_interrupt;
    ::sigaction(SIGINT, &sa, &old_int);
    ::sigaction(SIGTERM, &sa, &old_term);

    const double floor_us = spawn_floor_us(o.svc);

    // data[measure][variant][n] = samples
    enum { m_start, m_pss, m_pss_per, m_switch, m_restart, m_stop, m_count };
    std::vector<std::vector<std::map<int, std::vector<double>>>> data(
        m_count, std::vector<std::map<int, std::vector<double>>>(vs.size()));
    std::vector<std::string> problems;
    std::vector<std::size_t> live;
    for (std::size_t i = 0; i < vs.size(); ++i)
        if (vs[i].missing.empty()) live.push_back(i);
    int serial = 0;
    bool stopped = false;
    for (int n : sizes) {
        const int rounds = rounds_for(n);
        for (int round = 0; round < rounds && !stopped; ++round) {
            for (std::size_t k = 0; k < live.size() && !stopped; ++k) {
                const std::size_t vi = live[(k + static_cast<std::size_t>(round)) % live.size()];
                const variant& v = vs[vi];
                fmt::print(stderr, "supervise-peers: {} N={} round {}/{}\n", v.name, n, round + 1, rounds);
                run_result r;
                try {
                    run one(v, n, o, ++serial);
                    r = one.go(kills_for(n), idle_s);
                } catch (const interrupted&) {
                    stopped = true;
                    problems.push_back("interrupted: the results are partial");
                    break;
                } catch (const std::exception& e) {
                    r.problems.push_back(e.what());
                }
                for (const auto& p : r.problems)
                    problems.push_back(fmt::format("{} N={} round {}: {}", v.name, n, round + 1, p));
                if (!r.ok) continue;
                data[m_start][vi][n].push_back(r.start_ms);
                data[m_pss][vi][n].push_back(r.pss_kib);
                data[m_pss_per][vi][n].push_back(r.pss_kib / n);
                data[m_switch][vi][n].push_back(r.switches);
                for (double x : r.restart_us) data[m_restart][vi][n].push_back(x);
                data[m_stop][vi][n].push_back(r.stop_ms);
            }
        }
    }
    ::sigaction(SIGINT, &old_int, nullptr);
    ::sigaction(SIGTERM, &old_term, nullptr);
    ::setrlimit(RLIMIT_NOFILE, &saved);
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);

    struct measure {
        const char* name;
        const char* unit;
        std::string what;
    };
    const measure ms[m_count] = {
        {"start all", "ms",
         "From starting the supervisor until every service's process reported running (drover up: and its "
         "READY=1 on the NOTIFY_SOCKET the bench gave it; with ready = notify that waits for every "
         "service's READY=1). One sample per run."},
        {"supervisor memory (PSS)", "KiB",
         "Sum of Pss (/proc/PID/smaps_rollup) over the supervisor's side: drover up's one process; "
         "supervisord; runsvdir and every runsv; s6-svscan and every s6-supervise. After the idle window."},
        {"supervisor memory per service (PSS / N)", "KiB",
         "The total above divided by the number of services."},
        {"idle wake-ups", "count",
         fmt::format("Context switches (voluntary + involuntary, every thread) of the supervisor's side over "
                     "{:.0f} s "
                     "with every service running and healthy.",
                     idle_s)},
        {"restart after kill -9", "us",
         fmt::format(
             "From kill -9 of one service (up for over 1 s, round-robin) to its new process's report (its "
             "own clock). Every kill is a sample ({} per N). One spawn of the service by the bench itself "
             "(posix_spawn to its report) takes {:.0f} us here.",
             o.quick ? 10 : 30, floor_us)},
        {"stop all", "ms",
         "From the stop request (drover up, supervisord: SIGTERM; runit: SIGHUP to runsvdir; s6: "
         "s6-svscanctl -t) "
         "until no service process is left (a zombie counts as gone; pidfds)."},
    };
    const std::size_t base = 0; // drover up, plain

    std::vector<bench_result> out;
    for (int m = 0; m < m_count; ++m) {
        bench_result r{
            std::string("supervise-peers: ") + ms[m].name, ms[m].unit, ms[m].what, true, {}, {}, {}};
        r.ratios = false;
        std::string t = fmt::format("| contender | N | median | min | max | samples | vs drover up |\n"
                                    "|---|---|---|---|---|---|---|\n");
        for (int n : sizes)
            for (std::size_t vi = 0; vi < vs.size(); ++vi) {
                if (!vs[vi].missing.empty()) continue;
                auto it = data[m][vi].find(n);
                if (it == data[m][vi].end() || it->second.empty()) {
                    t += fmt::format("| {} | {} | no sample (see the problems) | | | | |\n",
                                     cell(vs[vi].name), n);
                    continue;
                }
                auto s = summarize(it->second);
                std::string ratio = "-";
                auto b = data[m][base].find(n);
                if (b != data[m][base].end() && !b->second.empty()) {
                    double bm = summarize(b->second).median;
                    if (bm > 0)
                        ratio = fmt::format("{:.2f}x", s.median / bm);
                    else if (s.median == 0)
                        ratio = "=";
                }
                t += fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", cell(vs[vi].name), n,
                                 fmt_value(s.median, ms[m].unit), fmt_value(s.min, ms[m].unit),
                                 fmt_value(s.max, ms[m].unit), it->second.size(), ratio);
                r.samples.emplace_back(fmt::format("{} N={}", vs[vi].name, n), it->second);
            }
        for (const auto& v : vs)
            if (!v.missing.empty()) r.missing.emplace_back(v.name, v.missing);
        r.missing.emplace_back("process-compose", "not packaged for Debian (nor on npm)");
        r.notes.push_back(t);
        out.push_back(std::move(r));
    }

    // Goals, judged at the largest N.
    const int nmax = sizes.back();
    auto med = [&](int m, std::size_t vi, int n) -> std::optional<double> {
        auto it = data[m][vi].find(n);
        if (it == data[m][vi].end() || it->second.empty()) return std::nullopt;
        return summarize(it->second).median;
    };
    auto worst = [&](int m, std::size_t vi, int n) -> std::optional<double> {
        auto it = data[m][vi].find(n);
        if (it == data[m][vi].end() || it->second.empty()) return std::nullopt;
        return summarize(it->second).max;
    };
    // The best peer (not drover) at N for measure m; kind: the same readiness as drover's row.
    auto best_peer = [&](int m, int n, bool ready) -> std::optional<std::pair<double, std::string>> {
        std::optional<std::pair<double, std::string>> b;
        for (std::size_t vi = 0; vi < vs.size(); ++vi) {
            if (vs[vi].kind == peer::drover || vs[vi].ready != ready) continue;
            if (auto x = med(m, vi, n); x && (!b || *x < b->first)) b = std::make_pair(*x, vs[vi].name);
        }
        return b;
    };
    std::string g = "| goal | drover up | met |\n|---|---|---|\n";
    auto row = [&](const std::string& goal, const std::string& figure, std::optional<bool> met) {
        g += fmt::format("| {} | {} | {} |\n", cell(goal), cell(figure),
                         !met   ? "not measured"
                         : *met ? "met"
                                : "**not met**");
    };
    {
        auto d = med(m_restart, base, nmax);
        auto p = best_peer(m_restart, nmax, false);
        std::string fig =
            d ? fmt::format("median {} (worst {}) at N={}; one spawn {:.0f} us; best peer {}",
                            fmt_value(*d, "us"), fmt_value(*worst(m_restart, base, nmax), "us"), nmax,
                            floor_us, p ? fmt::format("{} {}", p->second, fmt_value(p->first, "us")) : "none")
              : "no sample";
        row("restart under 5 ms plus one spawn, and ahead of every peer", fig,
            d ? std::optional<bool>(*d < 5000 + floor_us && (!p || *d < p->first)) : std::nullopt);
        auto dr = med(m_restart, 1, nmax);
        auto pr = best_peer(m_restart, nmax, true);
        if (dr)
            row("with readiness (notify; s6: notification-fd): restart ahead of every peer",
                fmt::format("median {} at N={}; best peer {}", fmt_value(*dr, "us"), nmax,
                            pr ? fmt::format("{} {}", pr->second, fmt_value(pr->first, "us")) : "none"),
                !pr || *dr < pr->first);
    }
    {
        auto d = med(m_pss_per, base, nmax);
        auto p = best_peer(m_pss_per, nmax, false);
        std::string fig =
            d ? fmt::format("{} per service at N={} ({} in all); best peer {}", fmt_value(*d, "KiB"), nmax,
                            fmt_value(*med(m_pss, base, nmax), "KiB"),
                            p ? fmt::format("{} {}", p->second, fmt_value(p->first, "KiB")) : "none")
              : "no sample";
        if (d && sizes.size() > 1) {
            auto lo = med(m_pss, base, sizes.front()), hi = med(m_pss, base, nmax);
            if (lo && hi)
                fig += fmt::format("; marginal {:.1f} KiB per added service (N={} to {})",
                                   (*hi - *lo) / (nmax - sizes.front()), sizes.front(), nmax);
        }
        row("memory per service under 16 KiB and below every peer", fig,
            d ? std::optional<bool>(*d < 16 && (!p || *d < p->first)) : std::nullopt);
    }
    {
        auto d = med(m_start, base, 500);
        row("500 services started in under 1 s",
            d ? fmt::format("{}", fmt_value(*d, "ms")) : "N=500 not run (quick, or --services without 500)",
            d ? std::optional<bool>(*d < 1000) : std::nullopt);
    }
    {
        auto d = med(m_switch, base, nmax);
        row("no idle wake-ups",
            d ? fmt::format("{:.0f} in {:.0f} s at N={} (worst run {:.0f})", *d, idle_s, nmax,
                            *worst(m_switch, base, nmax))
              : "no sample",
            d ? std::optional<bool>(*worst(m_switch, base, nmax) == 0) : std::nullopt);
    }
    {
        auto d = med(m_stop, base, 500);
        row("stop all (500) in under 1 s",
            d ? fmt::format("{} (worst {})", fmt_value(*d, "ms"), fmt_value(*worst(m_stop, base, 500), "ms"))
              : "N=500 not run (quick, or --services without 500)",
            d ? std::optional<bool>(*worst(m_stop, base, 500) < 1000) : std::nullopt);
    }
    bench_result goals{
        "supervise-peers: goals", "", "drover up's targets against its peers.", true, {}, {}, {}};
    goals.ratios = false;
    goals.notes.push_back(g);
    if (!problems.empty()) {
        std::string p = "Problems:\n\n";
        for (const auto& x : problems) p += "- " + x + "\n";
        goals.notes.push_back(p);
    }
    out.push_back(std::move(goals));
    return out;
}

} // namespace bench
