// Reading /proc/<pid> for one process, strictly and boundedly, and verifying the result against
// a pidfd (reliability.md G5: a pid read from /proc may already name another process).
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
#include "detail/posix.hpp"
#include "detail/proc_hook.hpp"
#include "detail/proc_parse.hpp"
#include "detail/sys.hpp"
#include "detail/tree.hpp"
#include "detail/unique_fd.hpp"
#include "drover/backend.hpp"
#include "drover/child.hpp"
#include "drover/command.hpp"

#if !defined(CLOCK_BOOTTIME) // not Linux: read_proc_info is refused there (the portable backend)
#define CLOCK_BOOTTIME CLOCK_MONOTONIC
#endif

namespace drover {
namespace detail {
namespace {
std::atomic<void (*)(pid_t)> g_verify_hook{nullptr};
}
void set_proc_verify_hook(void (*hook)(pid_t)) noexcept {
    g_verify_hook.store(hook);
}
} // namespace detail

namespace {

using detail::from_ticks;
using detail::parse_io;
using detail::parse_limits;
using detail::parse_net_dev;
using detail::parse_num;
using detail::parse_stat;
using detail::parse_status;
using detail::unique_fd;

using detail::read_file_at;
using detail::sys_error;

/// Boot time (btime in /proc/stat), for start times on the wall clock.
std::optional<std::int64_t> boot_time() {
    static const std::optional<std::int64_t> bt = []() -> std::optional<std::int64_t> {
        std::string text;
        if (read_file_at(AT_FDCWD, "/proc/stat", text, 1 << 20) != 0) return std::nullopt;
        return detail::parse_boot_time(text);
    }();
    return bt;
}

std::optional<std::uint64_t> ns_inode(int dir, const char* link) {
    char buf[128];
    ssize_t n = ::readlinkat(dir, link, buf, sizeof buf);
    if (n <= 0) return std::nullopt;
    return detail::parse_ns_link(std::string_view(buf, static_cast<std::size_t>(n)));
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

/// "Pid:" of a pidfd's fdinfo: the pid while the process exists (running or a zombie), -1 once
/// it has been reaped. Empty if the kernel does not say.
std::optional<pid_t> pidfd_pid(int pidfd) {
    std::string path = "/proc/self/fdinfo/" + std::to_string(pidfd);
    std::string text;
    if (read_file_at(AT_FDCWD, path.c_str(), text, 4096) != 0) return std::nullopt;
    return detail::parse_fdinfo_pid(text);
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
        ec = sys_error(errno == ENOENT ? ESRCH : errno);
        return std::nullopt;
    }
    proc_info p;
    p.pid = pid;
    std::string text;
    // A file that vanishes (ENOENT/ESRCH) means the process exited while we read; what decides
    // is the check at the end. Other errors (EACCES: another user's process) are named.
    bool vanished = false;
    auto note = [&](const char* what, int err) {
        if (err == ESRCH || err == ENOENT)
            vanished = true;
        else
            p.unreadable.push_back(std::string(what) + ": " + std::strerror(err));
    };

    if (int e = read_file_at(dir.get(), "stat", text, 4096); e != 0) {
        ec = sys_error(e == ENOENT ? ESRCH : e);
        return std::nullopt;
    }
    p.sampled_at = std::chrono::steady_clock::now();
    if (!parse_stat(text, pid, p)) {
        ec = errc::malformed_proc;
        return std::nullopt;
    }
    if (auto bt = boot_time()) {
        using wall = std::chrono::system_clock;                   // wall clock for display
        p.started = wall::time_point(std::chrono::seconds(*bt)) + // wall clock for display
                    std::chrono::duration_cast<wall::duration>(from_ticks(p.start_ticks));
    }
    struct timespec now {};
    ::clock_gettime(CLOCK_BOOTTIME, &now);
    p.age =
        std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec) - from_ticks(p.start_ticks);
    if (p.age.count() < 0) p.age = {};

    if (int e = read_file_at(dir.get(), "status", text, 64 * 1024); e != 0)
        note("status", e);
    else if (!parse_status(text, p)) {
        ec = errc::malformed_proc;
        return std::nullopt;
    }
    if (int e = read_file_at(dir.get(), "cmdline", text, 256 * 1024, &p.cmdline_truncated); e != 0) {
        note("cmdline", e);
    } else {
        p.cmdline = detail::split_cmdline(text);
    }
    // A kernel thread and a zombie have no executable, working directory or network view.
    const bool no_task_files = p.kernel_thread || p.state == 'Z';
    char link[4096];
    for (auto [name, dst] : {std::pair{"exe", &p.exe}, std::pair{"cwd", &p.cwd}}) {
        ssize_t n = ::readlinkat(dir.get(), name, link, sizeof link);
        if (n >= 0)
            dst->assign(link, static_cast<std::size_t>(n));
        else if (!(no_task_files && errno == ENOENT))
            note(name, errno);
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
    if (int e = read_file_at(dir.get(), "cgroup", text, 64 * 1024); e != 0) {
        note("cgroup", e);
    } else if (auto cg = detail::parse_proc_cgroup(text)) {
        p.cgroup = std::move(*cg); // (see parse_proc_cgroup on paths with a newline)
    }
    p.ns = read_ns(dir.get());
    if (!p.ns.pid && !no_task_files) {
        char probe[64];
        if (::readlinkat(dir.get(), "ns/pid", probe, sizeof probe) < 0) note("ns", errno);
    }
    if (int e = read_file_at(dir.get(), "io", text, 4096); e != 0) {
        note("io", e);
    } else {
        io_counters io;
        if (!parse_io(text, io)) {
            ec = errc::malformed_proc;
            return std::nullopt;
        }
        p.io = io;
    }
    if (int e = read_file_at(dir.get(), "limits", text, 16 * 1024); e != 0) {
        note("limits", e);
    } else if (!parse_limits(text, p.limits)) {
        ec = errc::malformed_proc;
        return std::nullopt;
    }
    bool dev_truncated = false;
    if (int e = read_file_at(dir.get(), "net/dev", text, 1 << 20, &dev_truncated); e != 0) {
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
        return read_file_at(dir.get(), "stat", again, 4096) != 0 || !parse_stat(again, pid, q) ||
               q.start_ticks != p.start_ticks;
    })();
    if (reaped) {
        ec = pid_in_use(pid) ? error_code(errc::stale) : sys_error(ESRCH);
        return std::nullopt;
    }
    if (vanished) {
        // Not reaped, but files vanished: it exited during the read (now a zombie). What was
        // read is half a process: report it gone, cleanly.
        std::string again;
        proc_info q;
        if (read_file_at(dir.get(), "stat", again, 4096) != 0 || !parse_stat(again, pid, q) ||
            q.state == 'Z' || q.state == 'X') {
            ec = sys_error(ESRCH);
            return std::nullopt;
        }
    }
    return p;
}

} // namespace

std::optional<proc_info> read_proc_info(pid_t pid, error_code& ec) noexcept try {
    if (backend() == backend_kind::portable) {
        ec = errc::not_supported;
        return std::nullopt;
    }
    if (pid <= 0) {
        ec = sys_error(ESRCH);
        return std::nullopt;
    }
    unique_fd pidfd{detail::sys_pidfd_open(pid, 0)};
    if (!pidfd) {
        // EINVAL: the number is a thread of some process, not a process.
        ec = sys_error(errno == EINVAL ? ESRCH : errno);
        return std::nullopt;
    }
    return read_with(pid, pidfd.get(), ec);
} catch (...) { // std::bad_alloc: nothing else is thrown
    ec = sys_error(ENOMEM);
    return std::nullopt;
}

std::optional<proc_info> read_proc_info(const child& c, error_code& ec) noexcept try {
    if (backend() == backend_kind::portable) { // pidfd-verified /proc reads are Linux's
        ec = errc::not_supported;
        return std::nullopt;
    }
    auto pid = c.id();
    if (!pid) {
        ec = sys_error(ESRCH);
        return std::nullopt;
    }
    return read_with(*pid, c.native_handle(), ec);
} catch (...) { // std::bad_alloc: nothing else is thrown
    ec = sys_error(ENOMEM);
    return std::nullopt;
}

proc_info read_proc_info(pid_t pid) {
    error_code ec;
    auto p = read_proc_info(pid, ec);
    if (!p) throw boost::system::system_error(ec, "read_proc_info");
    return std::move(*p);
}

proc_info read_proc_info(const child& c) {
    error_code ec;
    auto p = read_proc_info(c, ec);
    if (!p) throw boost::system::system_error(ec, "read_proc_info");
    return std::move(*p);
}

double cpu_percent(const proc_info& a, const proc_info& b) noexcept {
    if (a.pid != b.pid || a.start_ticks != b.start_ticks) return 0;
    auto wall = std::chrono::duration<double>(b.sampled_at - a.sampled_at).count();
    auto cpu =
        std::chrono::duration<double>((b.user_cpu + b.system_cpu) - (a.user_cpu + a.system_cpu)).count();
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
