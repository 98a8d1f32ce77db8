#include "detail/cgroup.hpp"
#include "detail/fault.hpp"
#include "detail/posix.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <cstring>
#include <mutex>
#include <sstream>

namespace drover::detail {

namespace {

/// The whole file, or "" if it cannot be read. mountinfo can be long on a host with many
/// mounts: the cap is well above any seen.
std::string read_small_file(const std::string& path) {
    std::string text;
    if (read_file(path.c_str(), text, 16U << 20) != 0) text.clear();
    return text;
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_octal(const std::string& s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
            s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
            out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
            i += 3;
        } else {
            out += s[i];
        }
    }
    return out;
}

std::mutex g_dir_mutex;        // guards creation/removal of drover's directory
std::size_t g_live_leaves = 0; // leaves not yet removed (under g_dir_mutex)
pid_t g_dir_owner = 0;         // the process g_live_leaves counts for (under g_dir_mutex)
std::atomic<unsigned long> g_next_leaf{1};

std::string drover_dir(const cgroup_probe& p) {
    return p.own + "/drover-" + std::to_string(own_pid());
}

/// Removes the cgroups under `dir` that have emptied (depth first: a runner nested in one of
/// our leaves may have made its own), then `dir` itself. Keeps trying until `deadline` for
/// cgroups whose last processes are still exiting or are zombies awaiting their reaper.
bool sweep_until(const std::string& dir, std::chrono::steady_clock::time_point deadline) {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return errno == ENOENT;
    std::vector<std::string> subs;
    while (dirent* e = ::readdir(d))
        if (e->d_type == DT_DIR && e->d_name[0] != '.') subs.push_back(dir + "/" + e->d_name);
    ::closedir(d);
    for (const auto& sub : subs) sweep_until(sub, deadline);
    for (;;) {
        if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return true;
        if (errno != EBUSY || std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

void sweep(const std::string& dir, std::chrono::milliseconds patience) {
    sweep_until(dir, std::chrono::steady_clock::now() + patience);
}

/// Empty directories left by drover processes that no longer exist (killed before they could
/// clean up). Populated leaves are left alone: their processes are not ours to judge.
void sweep_dead_drovers(const std::string& own) {
    DIR* d = ::opendir(own.c_str());
    if (d == nullptr) return;
    std::vector<std::string> dead;
    while (dirent* e = ::readdir(d)) {
        if (std::strncmp(e->d_name, "drover-", 7) != 0) continue;
        char* end = nullptr;
        long pid = std::strtol(e->d_name + 7, &end, 10);
        if (end == nullptr || *end != '\0' || pid <= 0) continue;
        if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) dead.push_back(own + "/" + e->d_name);
    }
    ::closedir(d);
    for (const auto& dir : dead) sweep(dir, std::chrono::milliseconds(0));
}

/// At exit, remove this process's leaves that have emptied (a child killed by a destructor
/// just before the io_context went away never got its cleanup).
struct exit_sweeper {
    std::string dir;
    pid_t owner = 0; // a forked copy of this process exiting must not sweep its parent's leaves
    ~exit_sweeper() {
        if (!dir.empty() && ::getpid() == owner) sweep(dir, std::chrono::milliseconds(200));
    }
};
exit_sweeper g_exit_sweeper;

cgroup_probe do_probe() {
    cgroup_probe p;
    std::string& root = p.root;
    parse_cgroup2_mount(read_small_file("/proc/self/mountinfo"), p.mount, root);
    if (p.mount.empty()) {
        p.why_not = "no cgroup2 filesystem is mounted";
        return p;
    }
    std::string rel;
    {
        std::istringstream in(read_small_file("/proc/self/cgroup"));
        std::string line;
        while (std::getline(in, line))
            if (line.rfind("0::", 0) == 0) rel = line.substr(3);
    }
    if (rel.empty()) {
        p.why_not = "this process has no cgroup2 membership in /proc/self/cgroup";
        return p;
    }
    if (root != "/") {
        if (rel.rfind(root, 0) != 0) {
            p.why_not = "own cgroup " + rel + " is outside the cgroup2 mount at " + p.mount;
            return p;
        }
        rel = rel.substr(root.size());
    }
    if (rel == "/") rel.clear();
    p.own = p.mount + rel;
    std::lock_guard lock(g_dir_mutex);
    std::string dir = drover_dir(p);
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
        p.why_not = "cannot create " + dir + ": " + std::strerror(errno);
        return p;
    }
    if (::access((dir + "/cgroup.kill").c_str(), W_OK) != 0) {
        p.why_not = "no writable cgroup.kill in " + dir + " (Linux 5.14+ is needed)";
        ::rmdir(dir.c_str());
        return p;
    }
    ::rmdir(dir.c_str()); // created again with the first leaf
    p.usable = true;
    sweep_dead_drovers(p.own);
    g_exit_sweeper.dir = dir;
    g_exit_sweeper.owner = ::getpid();
    return p;
}

} // namespace

void parse_cgroup2_mount(const std::string& mountinfo, std::string& mount, std::string& root) {
    mount.clear();
    root.clear();
    std::istringstream in(mountinfo);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream f(line);
        std::vector<std::string> fields;
        std::string w;
        while (f >> w) fields.push_back(w);
        // id parent maj:min root mountpoint options [optional...] - fstype source superopts
        std::size_t dash = 0;
        for (std::size_t i = 6; i < fields.size(); ++i)
            if (fields[i] == "-") {
                dash = i;
                break;
            }
        if (dash == 0 || dash + 1 >= fields.size() || fields[dash + 1] != "cgroup2") continue;
        root = unescape_octal(fields[3]);
        mount = unescape_octal(fields[4]);
        return;
    }
}

const cgroup_probe& probe_cgroup() {
    static const cgroup_probe p = do_probe();
    return p;
}

namespace {

bool read_events(int fd, char (&buf)[256]) noexcept;
char events_value(const char* text, const char* key) noexcept;

/// Leaves kept for reuse (cgroup_leaf::recycle), with the pid of the process they belong to.
/// A spare holds no descriptor (take_spare opens them again). A few are enough for one spawn at a
/// time and for a burst of short ones; with 64 spawns in flight, 64 spares saved most mkdirs but
/// only 2-4 % of the time (docs/performance.md, "What is left").
constexpr std::size_t max_spares = 4;
std::mutex g_spares_m;
/// The spares. At exit they are forgotten, not removed: the exit sweep (owner-checked) removes
/// them, and a copy of the process made by fork must not remove its parent's.
struct spare_list : std::vector<std::unique_ptr<cgroup_leaf>> {
    ~spare_list() {
        for (auto& l : *this) l->forget();
    }
};
spare_list g_spares;
pid_t g_spares_owner = 0;

} // namespace

std::unique_ptr<cgroup_leaf> cgroup_leaf::take_spare(error_code& ec, std::string& why) noexcept {
    for (;;) {
        std::unique_ptr<cgroup_leaf> leaf;
        {
            std::lock_guard lock(g_spares_m);
            if (g_spares.empty()) return nullptr;
            if (g_spares_owner != own_pid()) {        // a copy of the process after fork: not ours
                for (auto& l : g_spares) l->forget(); // no rmdir
                g_spares.clear();
                return nullptr;
            }
            leaf = std::move(g_spares.back());
            g_spares.pop_back();
        }
        // A spare holds no descriptor while it waits (so it never shows in a count of them):
        // the three a leaf keeps are opened again, as create() opens them.
        leaf->dir_.reset(f_open(leaf->path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (leaf->dir_)
            leaf->events_.reset(f_openat(leaf->dir_.get(), "cgroup.events", O_RDONLY | O_CLOEXEC));
        if (leaf->events_) leaf->kill_.reset(f_openat(leaf->dir_.get(), "cgroup.kill", O_WRONLY | O_CLOEXEC));
        if (!leaf->kill_) {
            const int err = errno;
            const char* what = !leaf->dir_ ? "" : !leaf->events_ ? "/cgroup.events" : "/cgroup.kill";
            leaf->dir_.reset();
            leaf->events_.reset();
            if (err == EMFILE || err == ENFILE ||
                err == ENOMEM) { // keep it; the spawn fails as create() would
                ec = error_code(err, boost::system::system_category());
                try {
                    why = "cannot open " + leaf->path_ + what;
                } catch (...) {
                }
                std::lock_guard lock(g_spares_m);
                try {
                    g_spares.push_back(std::move(leaf));
                } catch (...) {
                }
                return nullptr;
            }
            continue; // gone: its destructor forgets it
        }
        char buf[256];
        // Still ours to use: nothing was put into it meanwhile.
        if (read_events(leaf->events_.get(), buf) && events_value(buf, "populated") == '0') return leaf;
        // Else drop it (its destructor removes it when it can) and try the next.
    }
}

void cgroup_leaf::forget() noexcept {
    removed_.store(true, std::memory_order_release);
}

bool cgroup_leaf::recycle() noexcept try {
    if (killed_.load(std::memory_order_acquire) || limited_ || removed()) return false;
    const pid_t self = own_pid();
    {
        std::lock_guard lock(g_spares_m);
        if (g_spares.size() >= max_spares || (!g_spares.empty() && g_spares_owner != self)) return false;
    }
    // Empty, and nothing below it (a drover that ran inside it and was killed can leave cgroups).
    std::string stat;
    if (read_file((path_ + "/cgroup.stat").c_str(), stat, 4096) != 0 ||
        stat.find("nr_descendants 0\n") == std::string::npos || populated())
        return false;
    std::unique_ptr<cgroup_leaf> spare(new cgroup_leaf);
    spare->path_ = path_;
    spare->proc_view_ = proc_view_;
    spare->removed_.store(false, std::memory_order_release);
    {
        std::lock_guard fds(fds_m_);
        removed_.store(true, std::memory_order_release); // still counted live: the spare is
        dir_.reset();
        events_.reset();
        kill_.reset();
    }
    std::lock_guard lock(g_spares_m);
    g_spares_owner = self;
    g_spares.push_back(std::move(spare));
    return true;
} catch (...) {
    return false;
}

std::unique_ptr<cgroup_leaf> cgroup_leaf::create(error_code& ec, std::string& why, bool allow_spare) {
    ec.clear();
    const cgroup_probe& p = probe_cgroup();
    if (!p.usable) {
        ec = error_code(ENOTSUP, boost::system::system_category());
        why = p.why_not;
        return nullptr;
    }
    if (allow_spare) {
        if (auto spare = take_spare(ec, why)) return spare;
        if (ec) return nullptr;
    }
    std::unique_ptr<cgroup_leaf> leaf(new cgroup_leaf);
    std::lock_guard lock(g_dir_mutex);
    std::string dir = drover_dir(p);
    // While a leaf of this process lives, drover's directory exists (it is removed with the
    // last leaf). The count is a fork's copy in a forked child: the owner says whose it is.
    if (g_live_leaves == 0 || g_dir_owner != own_pid()) {
        g_live_leaves = 0;
        if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
            ec = error_code(errno, boost::system::system_category());
            why = "cannot create " + dir;
            return nullptr;
        }
        g_dir_owner = own_pid();
    }
    for (int attempt = 0; attempt < 100; ++attempt) {
        std::string path = dir + "/run-" + std::to_string(g_next_leaf.fetch_add(1));
        if (::mkdir(path.c_str(), 0755) != 0) {
            if (errno == EEXIST) continue; // left by an earlier drover with the same pid
            ec = error_code(errno, boost::system::system_category());
            why = "cannot create " + path;
            if (g_live_leaves == 0) ::rmdir(dir.c_str());
            return nullptr;
        }
        // The directory (for CLONE_INTO_CGROUP) and the two files a stop needs: opened now, so
        // that stopping never needs a descriptor it might not get.
        unique_fd fds[3];
        const char* what = path.c_str();
        fds[0].reset(f_open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (fds[0]) {
            what = "cgroup.events";
            fds[1].reset(f_openat(fds[0].get(), what, O_RDONLY | O_CLOEXEC));
        }
        if (fds[1]) {
            what = "cgroup.kill";
            fds[2].reset(f_openat(fds[0].get(), what, O_WRONLY | O_CLOEXEC));
        }
        if (!fds[2]) {
            ec = error_code(errno, boost::system::system_category());
            why = fds[0] ? "cannot open " + path + "/" + what : "cannot open " + path;
            for (auto& f : fds) f.reset();
            ::rmdir(path.c_str());
            if (g_live_leaves == 0) ::rmdir(dir.c_str());
            return nullptr;
        }
        std::string below = path.substr(p.mount.size());
        leaf->proc_view_ = p.root == "/" ? below : p.root + below;
        leaf->path_ = std::move(path);
        leaf->dir_ = std::move(fds[0]);
        leaf->events_ = std::move(fds[1]);
        leaf->kill_ = std::move(fds[2]);
        leaf->removed_.store(false, std::memory_order_release);
        ++g_live_leaves;
        return leaf;
    }
    ec = error_code(EEXIST, boost::system::system_category());
    why = "no free leaf name under " + dir;
    return nullptr;
}

cgroup_leaf::~cgroup_leaf() {
    if (!removed()) remove(); // best effort; a populated leaf stays (and is reported by tools)
}

error_code cgroup_leaf::kill() noexcept {
    std::lock_guard lock(fds_m_);
    if (!kill_) return {ENOENT, boost::system::system_category()}; // removed: nothing left to kill
    ssize_t n;
    do n = f_write(kill_.get(), "1", 1);
    while (n < 0 && errno == EINTR);
    if (n != 1) return {n < 0 ? errno : EIO, boost::system::system_category()};
    killed_.store(true, std::memory_order_release);
    return {};
}

std::vector<pid_t> cgroup_leaf::procs() const {
    std::vector<pid_t> out;
    if (removed()) return out; // removed, or kept for another child (recycle)
    std::string text;
    read_file((path_ + "/cgroup.procs").c_str(), text, std::string::npos); // what could be read
    std::istringstream in(text);
    long v;
    while (in >> v) out.push_back(static_cast<pid_t>(v));
    return out;
}

namespace {

/// Reads cgroup.events from offset 0 (which makes the kernel produce it afresh; short reads
/// continue) into `buf`, NUL-terminated. False on a read error or an empty file.
bool read_events(int fd, char (&buf)[256]) noexcept {
    if (fd < 0) return false;
    std::size_t len = 0;
    for (;;) {
        ssize_t n = f_pread(fd, buf + len, sizeof buf - 1 - len, static_cast<off_t>(len));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return false;
        if (n == 0) break;
        const std::size_t asked = sizeof buf - 1 - len;
        len += static_cast<std::size_t>(n);
        // The kernel produces the file in one read when it fits: a short read ending a line is
        // the whole of it (saves the read of end-of-file on every check).
        if ((static_cast<std::size_t>(n) < asked && buf[len - 1] == '\n') || len == sizeof buf - 1) break;
    }
    buf[len] = '\0';
    return len > 0;
}

/// The value of `key` ("populated", "frozen") in cgroup.events text: '0', '1', or 0 if absent.
char events_value(const char* text, const char* key) noexcept {
    std::size_t k = std::strlen(key);
    for (const char* p = text; (p = std::strstr(p, key)) != nullptr; p += k)
        if ((p == text || p[-1] == '\n') && p[k] == ' ') return p[k + 1];
    return 0;
}

} // namespace

bool cgroup_leaf::populated() const noexcept {
    std::lock_guard lock(fds_m_);
    if (removed()) return false;
    char buf[256];
    if (!read_events(events_.get(), buf)) return true;
    return events_value(buf, "populated") != '0';
}

bool cgroup_leaf::frozen() const noexcept {
    std::lock_guard lock(fds_m_);
    char buf[256];
    return read_events(events_.get(), buf) && events_value(buf, "frozen") == '1';
}

namespace {

/// Writes `text` to `path` in one write(2); an errno or 0.
int write_file(const std::string& path, const std::string& text) noexcept {
    int fd = f_open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    ssize_t n;
    do n = f_write(fd, text.data(), text.size());
    while (n < 0 && errno == EINTR);
    int err = n < 0 ? errno : (static_cast<std::size_t>(n) != text.size() ? EIO : 0);
    ::close(fd);
    return err;
}

bool listed(const std::string& words, const std::string& name) {
    std::istringstream in(words);
    std::string w;
    while (in >> w)
        if (w == name) return true;
    return false;
}

/// Makes `controller` available to drover's leaves: enabled in the subtree_control of drover's
/// own cgroup and of its drover-<pid> directory. Empty on success, else the reason.
std::string enable_controller(const cgroup_probe& p, const std::string& drover_directory,
                              const std::string& controller) {
    if (!listed(read_small_file(p.own + "/cgroup.controllers"), controller))
        return "the cgroup v2 hierarchy at " + p.mount + " offers no '" + controller + "' controller to " +
               p.own +
               " (on a hybrid host it is on cgroup v1; with systemd, give drover a delegated cgroup: "
               "Delegate=yes)";
    std::lock_guard lock(g_dir_mutex);
    for (const std::string& dir : {p.own, drover_directory}) {
        if (listed(read_small_file(dir + "/cgroup.subtree_control"), controller)) continue;
        int err = write_file(dir + "/cgroup.subtree_control", "+" + controller);
        if (err == 0) continue;
        std::string why =
            "cannot enable '" + controller + "' in " + dir + "/cgroup.subtree_control: " + std::strerror(err);
        if (err == EBUSY)
            why += " (it holds processes, drover among them, and cgroup v2 hands controllers down only "
                   "from cgroups without processes: run drover in the root cgroup, or in a delegated "
                   "cgroup whose subtree_control already enables '" +
                   controller + "')";
        return why;
    }
    return {};
}

} // namespace

void cgroup_leaf::apply_limits(const cgroup_limits& limits,
                               std::vector<std::pair<std::string, std::string>>& not_applied,
                               bool& memory_applied) {
    memory_applied = false;
    if (limits.empty()) return;
    limited_ = true;
    const cgroup_probe& p = probe_cgroup();
    const std::string dir = path_.substr(0, path_.rfind('/'));
    auto apply = [&](const char* setting, const std::string& controller, const std::string& file,
                     const std::string& value) -> bool {
        std::string why = enable_controller(p, dir, controller);
        if (why.empty()) {
            if (int err = write_file(path_ + "/" + file, value); err != 0)
                why = "cannot write '" + value + "' to " + path_ + "/" + file + ": " + std::strerror(err);
        }
        if (!why.empty()) not_applied.emplace_back(setting, std::move(why));
        return why.empty();
    };
    if (limits.memory_max)
        memory_applied = apply("memory_max", "memory", "memory.max", std::to_string(*limits.memory_max));
    if (limits.pids_max) apply("pids_max", "pids", "pids.max", std::to_string(*limits.pids_max));
    if (limits.cpu_quota)
        apply("cpu_max", "cpu", "cpu.max",
              std::to_string(limits.cpu_quota->count()) + " " + std::to_string(limits.cpu_period.count()));
}

std::optional<std::uint64_t> cgroup_leaf::oom_kills() const noexcept try {
    std::string text;
    if (read_file((path_ + "/memory.events").c_str(), text, 4096) != 0 || text.empty()) return std::nullopt;
    const char* at = std::strstr(text.c_str(), "oom_kill ");
    if (at == nullptr) return std::nullopt;
    return std::strtoull(at + 9, nullptr, 10);
} catch (const std::bad_alloc&) {
    return std::nullopt;
}

int cgroup_leaf::dup_events_fd() const noexcept {
    std::lock_guard fds(fds_m_);
    if (!events_) return -1;
    return ::fcntl(events_.get(), F_DUPFD_CLOEXEC, 3);
}

bool cgroup_leaf::remove(bool close_descriptors) noexcept {
    std::lock_guard serial(remove_m_);
    if (removed()) return true;
    if (::rmdir(path_.c_str()) != 0 && errno != ENOENT) {
        // EBUSY with nothing left in it: cgroups below the leaf, made by a drover that ran in
        // it and was killed before it could clean up. They are inside our leaf, so ours to remove.
        if (errno != EBUSY || populated()) return false;
        try {
            if (!sweep_until(path_, std::chrono::steady_clock::now())) return false;
        } catch (...) {
            return false;
        }
        errno = 0;
    }
    {
        std::lock_guard fds(fds_m_);
        removed_.store(true, std::memory_order_release);
        dir_.reset();
        if (close_descriptors) {
            events_.reset();
            kill_.reset();
        }
    }
    std::lock_guard lock(g_dir_mutex);
    if (g_live_leaves > 0 && --g_live_leaves == 0) {
        auto slash = path_.rfind('/');
        ::rmdir(path_.substr(0, slash).c_str()); // fails harmlessly if a leaf remains
    }
    return true;
}

} // namespace drover::detail
