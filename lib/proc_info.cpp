// Reading /proc/<pid> for one process, strictly and boundedly, and verifying the result against
// a pidfd (pitfall G5: a pid read from /proc may already name another process).
//
// Every file is opened relative to one /proc/<pid> directory descriptor, so a read never hops to
// another process of the same pid halfway; and the pidfd, taken before that directory was
// opened, says afterwards whether the process was reaped during the read (its fdinfo shows
// "Pid: -1" then). Only then could the directory describe a newer process of the same pid.
#include "drover/proc_info.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <functional>
#include <memory>
#include <string_view>

#include "detail/fault.hpp"
#include "detail/proc_hook.hpp"
#include "detail/sys.hpp"
#include "detail/tree.hpp"
#include "detail/unique_fd.hpp"
#include "drover/child.hpp"
#include "drover/command.hpp"

namespace drover {
namespace detail {
namespace {
std::atomic<void (*)(pid_t)> g_verify_hook{nullptr};
}
void set_proc_verify_hook(void (*hook)(pid_t)) noexcept { g_verify_hook.store(hook); }
} // namespace detail

namespace {

using detail::unique_fd;

error_code sys_err(int e) { return {e, boost::system::system_category()}; }

/// Reads a whole file below `dir` (at most `cap` bytes; `truncated` says if there was more).
/// Returns 0 or an errno.
int read_at(int dir, const char* name, std::string& out, std::size_t cap, bool* truncated = nullptr) {
    out.clear();
    unique_fd fd{detail::f_openat(dir, name, O_RDONLY | O_CLOEXEC | O_NOCTTY)};
    if (!fd) return errno;
    char buf[16384];
    for (;;) {
        ssize_t n = detail::f_read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno;
        if (n == 0) break;
        std::size_t take = std::min<std::size_t>(static_cast<std::size_t>(n), cap - out.size());
        out.append(buf, take);
        if (out.size() >= cap) {
            if (truncated != nullptr) *truncated = true;
            break;
        }
    }
    return 0;
}

template <class T>
bool parse_num(std::string_view s, T& out) noexcept {
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && p == s.data() + s.size();
}

/// Splits on runs of spaces and tabs.
std::vector<std::string_view> words(std::string_view s) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
        std::size_t j = i;
        while (j < s.size() && s[j] != ' ' && s[j] != '\t' && s[j] != '\n') ++j;
        if (j > i) out.push_back(s.substr(i, j - i));
        i = j;
        if (i < s.size() && s[i] == '\n') break;
    }
    return out;
}

/// The value of "Key:" in a "Key:\tvalue" file (status, io), or empty.
std::optional<std::string_view> field(std::string_view text, std::string_view key) {
    std::size_t pos = 0;
    while (pos < text.size()) {
        auto nl = text.find('\n', pos);
        std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() : nl + 1;
        if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ':')
            return line.substr(key.size() + 1);
    }
    return std::nullopt;
}

std::uint64_t ticks_per_second() {
    static const long hz = ::sysconf(_SC_CLK_TCK);
    return hz > 0 ? static_cast<std::uint64_t>(hz) : 100;
}

std::chrono::nanoseconds from_ticks(std::uint64_t t) {
    const std::uint64_t hz = ticks_per_second();
    return std::chrono::seconds(t / hz) + std::chrono::nanoseconds((t % hz) * 1000000000ULL / hz);
}

/// Boot time (btime in /proc/stat), for start times on the wall clock.
std::optional<std::int64_t> boot_time() {
    static const std::optional<std::int64_t> bt = []() -> std::optional<std::int64_t> {
        std::string text;
        if (read_at(AT_FDCWD, "/proc/stat", text, 1 << 20) != 0) return std::nullopt;
        auto at = text.find("\nbtime ");
        if (at == std::string::npos) return std::nullopt;
        auto end = text.find('\n', at + 7);
        std::int64_t b = 0;
        if (!parse_num(std::string_view(text).substr(at + 7, end - at - 7), b)) return std::nullopt;
        return b;
    }();
    return bt;
}

/// Parses /proc/<pid>/stat. The name sits between the first '(' and the *last* ')': it may
/// itself hold spaces, parentheses and newlines.
bool parse_stat(std::string_view text, pid_t pid, proc_info& p) {
    auto open = text.find('(');
    auto close = text.rfind(')');
    if (open == std::string_view::npos || close == std::string_view::npos || close < open || open < 2) return false;
    pid_t first = 0;
    if (!parse_num(text.substr(0, open - 1), first) || first != pid || text[open - 1] != ' ') return false;
    p.comm.assign(text.substr(open + 1, close - open - 1));
    if (close + 2 >= text.size() || text[close + 1] != ' ') return false;
    auto f = words(text.substr(close + 2)); // f[0] is field 3 (state)
    if (f.size() < 22 || f[0].size() != 1) return false;
    p.state = f[0][0];
    std::uint64_t utime = 0, stime = 0, start = 0, flags = 0;
    long threads = 0;
    if (!parse_num(f[1], p.ppid) || !parse_num(f[2], p.pgrp) || !parse_num(f[3], p.session) || !parse_num(f[6], flags) ||
        !parse_num(f[11], utime) || !parse_num(f[12], stime) || !parse_num(f[17], threads) ||
        !parse_num(f[19], start))
        return false;
    p.user_cpu = from_ticks(utime);
    p.system_cpu = from_ticks(stime);
    p.threads = static_cast<int>(threads);
    p.start_ticks = start;
    p.kernel_thread = (flags & 0x00200000U) != 0; // PF_KTHREAD
    return true;
}

bool parse_ids(std::string_view value, unsigned& real, unsigned& effective) {
    auto w = words(value);
    return w.size() >= 2 && parse_num(w[0], real) && parse_num(w[1], effective);
}

bool parse_status(std::string_view text, proc_info& p) {
    auto uid = field(text, "Uid");
    auto gid = field(text, "Gid");
    unsigned r = 0, e = 0;
    if (!uid || !parse_ids(*uid, r, e)) return false;
    p.uid = r;
    p.euid = e;
    if (!gid || !parse_ids(*gid, r, e)) return false;
    p.gid = r;
    p.egid = e;
    if (auto g = field(text, "Groups"))
        for (auto w : words(*g)) {
            unsigned v = 0;
            if (!parse_num(w, v)) return false;
            p.groups.push_back(v);
        }
    auto kib = [&](const char* key) -> std::uint64_t {
        auto v = field(text, key);
        if (!v) return 0; // kernel threads and zombies have no memory lines
        auto w = words(*v);
        std::uint64_t n = 0;
        return !w.empty() && parse_num(w[0], n) ? n * 1024 : 0;
    };
    p.rss_bytes = kib("VmRSS");
    p.peak_rss_bytes = kib("VmHWM");
    return true;
}

std::optional<std::uint64_t> ns_inode(int dir, const char* link) {
    char buf[128];
    ssize_t n = ::readlinkat(dir, link, buf, sizeof buf);
    if (n <= 0) return std::nullopt;
    std::string_view s(buf, static_cast<std::size_t>(n));
    auto open = s.find(":[");
    if (open == std::string_view::npos || s.back() != ']') return std::nullopt;
    std::uint64_t v = 0;
    if (!parse_num(s.substr(open + 2, s.size() - open - 3), v)) return std::nullopt;
    return v;
}

namespace_ids read_ns(int dir) {
    namespace_ids ns;
    ns.pid = ns_inode(dir, "ns/pid");
    ns.mnt = ns_inode(dir, "ns/mnt");
    ns.net = ns_inode(dir, "ns/net");
    ns.user = ns_inode(dir, "ns/user");
    ns.uts = ns_inode(dir, "ns/uts");
    ns.ipc = ns_inode(dir, "ns/ipc");
    ns.cgroup = ns_inode(dir, "ns/cgroup");
    return ns;
}

bool parse_net_dev(std::string_view text, std::vector<net_interface>& out) {
    std::size_t pos = 0;
    int line_no = 0;
    while (pos < text.size()) {
        auto nl = text.find('\n', pos);
        std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() : nl + 1;
        if (++line_no <= 2) continue; // the two header lines
        auto colon = line.find(':');
        if (colon == std::string_view::npos) return false;
        auto name = line.substr(0, colon);
        name.remove_prefix(std::min(name.find_first_not_of(' '), name.size()));
        auto f = words(line.substr(colon + 1));
        net_interface i;
        i.name.assign(name);
        if (f.size() < 16 || !parse_num(f[0], i.rx_bytes) || !parse_num(f[1], i.rx_packets) ||
            !parse_num(f[8], i.tx_bytes) || !parse_num(f[9], i.tx_packets))
            return false;
        out.push_back(std::move(i));
    }
    return true;
}

/// /proc/<pid>/limits: a header, then one row per resource in RLIMIT_* order, in columns the
/// header places ("Limit", "Soft Limit", "Hard Limit", "Units"). (Readable by anyone, where
/// prlimit(2) on another user's process needs CAP_SYS_RESOURCE.)
bool parse_limits(std::string_view text, std::vector<limit_value>& out) {
    auto nl = text.find('\n');
    if (nl == std::string_view::npos) return false;
    std::string_view header = text.substr(0, nl);
    const auto soft_at = header.find("Soft Limit"), hard_at = header.find("Hard Limit"), units_at = header.find("Units");
    if (header.rfind("Limit", 0) != 0 || soft_at == std::string_view::npos || hard_at == std::string_view::npos ||
        units_at == std::string_view::npos || !(soft_at < hard_at && hard_at < units_at))
        return false;
    auto value = [](std::string_view cell, std::optional<std::uint64_t>& v) {
        auto w = words(cell);
        if (w.size() != 1) return false;
        if (w[0] == "unlimited") return true;
        std::uint64_t n = 0;
        if (!parse_num(w[0], n)) return false;
        v = n;
        return true;
    };
    std::size_t pos = nl + 1;
    int r = 0;
    while (pos < text.size()) {
        auto end = text.find('\n', pos);
        std::string_view line = text.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
        pos = end == std::string_view::npos ? text.size() : end + 1;
        if (line.size() < units_at) return false;
        limit_value l;
        l.name = std::string(rlimit_name(r++));
        if (l.name.empty()) { // a limit newer than this build: its own words
            auto w = words(line.substr(0, soft_at));
            for (auto x : w) l.name += (l.name.empty() ? "" : " ") + std::string(x);
        }
        if (!value(line.substr(soft_at, hard_at - soft_at), l.soft) || !value(line.substr(hard_at, units_at - hard_at), l.hard))
            return false;
        out.push_back(std::move(l));
    }
    return r >= RLIMIT_NLIMITS;
}

bool parse_io(std::string_view text, io_counters& io) {
    const std::pair<const char*, std::uint64_t*> keys[] = {
        {"rchar", &io.rchar},         {"wchar", &io.wchar},           {"syscr", &io.syscr},
        {"syscw", &io.syscw},         {"read_bytes", &io.read_bytes}, {"write_bytes", &io.write_bytes},
        {"cancelled_write_bytes", &io.cancelled_write_bytes},
    };
    for (auto [key, dst] : keys) {
        auto v = field(text, key);
        if (!v) return false;
        auto w = words(*v);
        if (w.empty() || !parse_num(w[0], *dst)) return false;
    }
    return true;
}

/// "Pid:" of a pidfd's fdinfo: the pid while the process exists (running or a zombie), -1 once
/// it has been reaped. Empty if the kernel does not say.
std::optional<pid_t> pidfd_pid(int pidfd) {
    std::string path = "/proc/self/fdinfo/" + std::to_string(pidfd);
    std::string text;
    if (read_at(AT_FDCWD, path.c_str(), text, 4096) != 0) return std::nullopt;
    auto v = field(text, "Pid");
    if (!v) return std::nullopt;
    auto w = words(*v);
    pid_t p = 0;
    if (w.empty() || !parse_num(w[0], p)) return std::nullopt;
    return p;
}

/// Whether `pid` names a process now (ours is known to be gone, so it would be another one).
bool pid_in_use(pid_t pid) {
    std::string path = "/proc/" + std::to_string(pid);
    return ::access(path.c_str(), F_OK) == 0;
}

std::optional<proc_info> read_with(pid_t pid, int pidfd, error_code& ec) {
    ec.clear();
    std::string path = "/proc/" + std::to_string(pid);
    unique_fd dir{detail::f_open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (!dir) {
        ec = sys_err(errno == ENOENT ? ESRCH : errno);
        return std::nullopt;
    }
    proc_info p;
    p.pid = pid;
    std::string text;
    // A file that vanishes (ENOENT/ESRCH) means the process exited while we read; what decides
    // is the check at the end. Other errors (EACCES: another user's process) are named.
    bool vanished = false;
    auto note = [&](const char* what, int err) {
        if (err == ESRCH || err == ENOENT) vanished = true;
        else p.unreadable.push_back(std::string(what) + ": " + std::strerror(err));
    };

    if (int e = read_at(dir.get(), "stat", text, 4096); e != 0) {
        ec = sys_err(e == ENOENT ? ESRCH : e);
        return std::nullopt;
    }
    p.sampled_at = std::chrono::steady_clock::now();
    if (!parse_stat(text, pid, p)) {
        ec = errc::malformed_proc;
        return std::nullopt;
    }
    if (auto bt = boot_time()) {
        using wall = std::chrono::system_clock; // wall clock for display
        p.started = wall::time_point(std::chrono::seconds(*bt)) + // wall clock for display
                    std::chrono::duration_cast<wall::duration>(from_ticks(p.start_ticks));
    }
    struct timespec now {};
    ::clock_gettime(CLOCK_BOOTTIME, &now);
    p.age = std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec) - from_ticks(p.start_ticks);
    if (p.age.count() < 0) p.age = {};

    if (int e = read_at(dir.get(), "status", text, 64 * 1024); e != 0) note("status", e);
    else if (!parse_status(text, p)) {
        ec = errc::malformed_proc;
        return std::nullopt;
    }
    if (int e = read_at(dir.get(), "cmdline", text, 256 * 1024, &p.cmdline_truncated); e != 0) {
        note("cmdline", e);
    } else {
        std::size_t start = 0;
        while (start < text.size()) {
            auto nul = text.find('\0', start);
            if (nul == std::string::npos) nul = text.size();
            p.cmdline.emplace_back(text.substr(start, nul - start));
            start = nul + 1;
        }
    }
    // A kernel thread and a zombie have no executable, working directory or network view.
    const bool no_task_files = p.kernel_thread || p.state == 'Z';
    char link[4096];
    for (auto [name, dst] : {std::pair{"exe", &p.exe}, std::pair{"cwd", &p.cwd}}) {
        ssize_t n = ::readlinkat(dir.get(), name, link, sizeof link);
        if (n >= 0) dst->assign(link, static_cast<std::size_t>(n));
        else if (!(no_task_files && errno == ENOENT)) note(name, errno);
    }
    if (unique_fd fdd{::openat(dir.get(), "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC)}; !fdd) {
        note("fd", errno);
    } else if (std::unique_ptr<DIR, int (*)(DIR*)> d{::fdopendir(fdd.get()), ::closedir}; d) {
        fdd.release();
        while (dirent* e = ::readdir(d.get())) {
            int fd = 0;
            if (!parse_num(std::string_view(e->d_name), fd)) continue;
            ++p.fd_count;
            if (p.fds.size() >= 1024) continue;
            ssize_t n = ::readlinkat(::dirfd(d.get()), e->d_name, link, sizeof link);
            if (n >= 0) p.fds.push_back({fd, std::string(link, static_cast<std::size_t>(n))});
        }
        std::sort(p.fds.begin(), p.fds.end(), [](const open_fd& a, const open_fd& b) { return a.fd < b.fd; });
    }
    if (int e = read_at(dir.get(), "cgroup", text, 64 * 1024); e != 0) {
        note("cgroup", e);
    } else {
        // The v2 line comes last. A cgroup path is printed unescaped, so a newline inside one
        // could fake a line: take the first "0::" line through to the end of the file.
        std::string_view t(text);
        std::size_t at = t.rfind("0::", 0) == 0 ? 0 : t.find("\n0::");
        if (at != 0 && at != std::string_view::npos) ++at; // past the newline
        if (at != std::string_view::npos) {
            auto v = t.substr(at + 3);
            if (!v.empty() && v.back() == '\n') v.remove_suffix(1);
            p.cgroup.assign(v);
        }
    }
    p.ns = read_ns(dir.get());
    if (!p.ns.pid && !no_task_files) {
        char probe[64];
        if (::readlinkat(dir.get(), "ns/pid", probe, sizeof probe) < 0) note("ns", errno);
    }
    if (int e = read_at(dir.get(), "io", text, 4096); e != 0) {
        note("io", e);
    } else {
        io_counters io;
        if (!parse_io(text, io)) {
            ec = errc::malformed_proc;
            return std::nullopt;
        }
        p.io = io;
    }
    if (int e = read_at(dir.get(), "limits", text, 16 * 1024); e != 0) {
        note("limits", e);
    } else if (!parse_limits(text, p.limits)) {
        ec = errc::malformed_proc;
        return std::nullopt;
    }
    bool dev_truncated = false;
    if (int e = read_at(dir.get(), "net/dev", text, 1 << 20, &dev_truncated); e != 0) {
        if (!(no_task_files && e == ENOENT)) note("net/dev", e);
    } else {
        if (dev_truncated) { // keep the whole lines
            text.erase(text.rfind('\n') + 1);
            p.unreadable.push_back("net/dev: more than 1 MiB of interfaces; the rest is not shown");
        }
        if (!parse_net_dev(text, p.interfaces)) {
            ec = errc::malformed_proc;
            return std::nullopt;
        }
    }

    if (auto hook = detail::g_verify_hook.load()) hook(pid);

    // Verify: was the process reaped at any point during the reads? Then none of it is trusted.
    auto still = pidfd_pid(pidfd);
    const bool reaped = still ? *still != pid : ([&] {
        // No "Pid:" in fdinfo (before 5.10?): the directory's stat must still show our process.
        std::string again;
        proc_info q;
        return read_at(dir.get(), "stat", again, 4096) != 0 || !parse_stat(again, pid, q) ||
               q.start_ticks != p.start_ticks;
    })();
    if (reaped) {
        ec = pid_in_use(pid) ? error_code(errc::stale) : sys_err(ESRCH);
        return std::nullopt;
    }
    if (vanished) {
        // Not reaped, but files vanished: it exited during the read (now a zombie). What was
        // read is half a process: report it gone, cleanly.
        std::string again;
        proc_info q;
        if (read_at(dir.get(), "stat", again, 4096) != 0 || !parse_stat(again, pid, q) || q.state == 'Z' ||
            q.state == 'X') {
            ec = sys_err(ESRCH);
            return std::nullopt;
        }
    }
    return p;
}

} // namespace

std::optional<proc_info> read_proc_info(pid_t pid, error_code& ec) {
    if (pid <= 0) {
        ec = sys_err(ESRCH);
        return std::nullopt;
    }
    unique_fd pidfd{detail::sys_pidfd_open(pid, 0)};
    if (!pidfd) {
        // EINVAL: the number is a thread of some process, not a process.
        ec = sys_err(errno == EINVAL ? ESRCH : errno);
        return std::nullopt;
    }
    return read_with(pid, pidfd.get(), ec);
}

std::optional<proc_info> read_proc_info(const child& c, error_code& ec) {
    auto pid = c.id();
    if (!pid) {
        ec = sys_err(ESRCH);
        return std::nullopt;
    }
    return read_with(*pid, c.native_handle(), ec);
}

double cpu_percent(const proc_info& a, const proc_info& b) noexcept {
    if (a.pid != b.pid || a.start_ticks != b.start_ticks) return 0;
    auto wall = std::chrono::duration<double>(b.sampled_at - a.sampled_at).count();
    auto cpu = std::chrono::duration<double>((b.user_cpu + b.system_cpu) - (a.user_cpu + a.system_cpu)).count();
    if (wall <= 0 || cpu < 0) return 0;
    return cpu / wall * 100.0;
}

std::vector<pid_t> process_tree(pid_t root) {
    std::vector<pid_t> out;
    if (::access(("/proc/" + std::to_string(root)).c_str(), F_OK) != 0) return out;
    // Depth first, children by pid; a pid seen twice (reused during the walk) is not re-entered.
    std::vector<pid_t> todo{root};
    while (!todo.empty()) {
        pid_t pid = todo.back();
        todo.pop_back();
        if (std::find(out.begin(), out.end(), pid) != out.end()) continue;
        out.push_back(pid);
        auto kids = detail::children_of(pid);
        std::sort(kids.begin(), kids.end(), std::greater<>());
        todo.insert(todo.end(), kids.begin(), kids.end());
    }
    return out;
}

namespace_ids own_namespaces() {
    unique_fd self{::open("/proc/self", O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (!self) return {};
    return read_ns(self.get());
}

} // namespace drover
