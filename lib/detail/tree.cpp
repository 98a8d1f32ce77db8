#include "detail/tree.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#if defined(__APPLE__)
#include <libproc.h>
#include <sys/proc.h>
#include <sys/proc_info.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <string>
#include <unordered_set>

#include "detail/fault.hpp"
#include "detail/posix.hpp"
#include "detail/proc_parse.hpp"
#include "detail/sys.hpp"
#include "detail/unique_fd.hpp"

namespace drover::detail {

namespace {

bool parse_pid(std::string_view s, pid_t& out) {
    if (s.empty() || s.size() > 10) return false;
    long v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
    }
    if (v <= 0 || v > 0x3fffffff) return false;
    out = static_cast<pid_t>(v);
    return true;
}

/// An error that says nothing about the process, only that we could not look (out of
/// descriptors or memory): the walk is then incomplete, never "found nothing".
bool resource_error(int e) {
    return e == EMFILE || e == ENFILE || e == ENOMEM || e == EINTR;
}

DIR* open_dir(const char* path) {
    if (int e = fault(fault_point::open)) return errno = e, nullptr;
    return ::opendir(path);
}

/// Calls f(pid) for every process; false if /proc could not be listed.
template <typename F>
bool for_each_proc(F&& f) {
    DIR* d = open_dir("/proc");
    if (d == nullptr) return false;
    bool whole = true;
    for (;;) {
        errno = 0;
        dirent* e = ::readdir(d);
        if (e == nullptr) {
            whole = !resource_error(errno); // end of the listing, or could not go on
            break;
        }
        pid_t pid;
        if (parse_pid(e->d_name, pid)) f(pid);
    }
    ::closedir(d);
    return whole;
}

bool same_ids(const proc_ids& a, const proc_ids& b) {
    return a.ppid == b.ppid && a.pgrp == b.pgrp && a.session == b.session;
}

} // namespace

bool parse_stat_ids(std::string_view stat, proc_ids& out) noexcept {
    // Split as parse_stat splits it (stat_fields, proc_parse.cpp), each id a whole number.
    // No allocation: callers are noexcept.
    std::string_view f[4]; // " S ppid pgrp session ..."
    if (stat_fields(stat, f, 4) < 4 || f[0].size() != 1) return false;
    pid_t ids[3] = {0, 0, 0};
    for (int i = 0; i < 3; ++i)
        if (!parse_num(f[i + 1], ids[i])) return false;
    out.state = f[0][0];
    out.ppid = ids[0];
    out.pgrp = ids[1];
    out.session = ids[2];
    return true;
}

bool read_proc_ids(pid_t pid, proc_ids& out) noexcept try {
    std::string text;
    std::string path = "/proc/" + std::to_string(pid) + "/stat";
    if (int e = read_file(path.c_str(), text); e != 0) return errno = e, false;
    return parse_stat_ids(text, out);
} catch (...) {
    errno = ENOMEM; // could not look: a walk counts itself incomplete (see resource_error)
    return false;
}

std::vector<pid_t> children_of(pid_t pid, bool* complete) {
    std::vector<pid_t> out;
    std::string base = "/proc/" + std::to_string(pid) + "/task";
    DIR* d = open_dir(base.c_str());
    if (d == nullptr) {
        if (complete != nullptr && resource_error(errno)) *complete = false;
        return out;
    }
    std::string text;
    for (;;) {
        errno = 0;
        dirent* e = ::readdir(d);
        if (e == nullptr) {
            if (complete != nullptr && resource_error(errno)) *complete = false;
            break;
        }
        pid_t tid;
        if (!parse_pid(e->d_name, tid)) continue;
        std::string p = base + "/" + e->d_name + "/children";
        if (int err = read_file(p.c_str(), text); err != 0) {
            if (complete != nullptr && resource_error(err)) *complete = false;
            continue;
        }
        std::size_t i = 0;
        while (i < text.size()) {
            std::size_t j = text.find(' ', i);
            if (j == std::string::npos) j = text.size();
            pid_t c;
            if (parse_pid(std::string_view(text).substr(i, j - i), c)) out.push_back(c);
            i = j + 1;
        }
    }
    ::closedir(d);
    return out;
}

std::vector<tree_member> session_members(pid_t sid, const std::vector<pid_t>& extra_roots, bool* complete) {
    const pid_t self = ::getpid();
    std::unordered_set<pid_t> seen;
    std::vector<tree_member> todo;
    bool whole = true;
    auto ids_of = [&](pid_t pid, proc_ids& ids) {
        errno = 0;
        if (read_proc_ids(pid, ids)) return true;
        if (resource_error(errno)) whole = false;
        return false;
    };
    if (sid > 0 && !for_each_proc([&](pid_t pid) {
            if (pid == self) return;
            // One system call rules out a process of another session without reading its stat
            // (an open, a read and a close, and the kernel formatting 52 fields). Its process
            // group is not `sid` either: a group belongs to one session (setpgid joins only a
            // group of the caller's own session), and the pid `sid` is not reused while its
            // session or group has a member. Any doubt (an error other than ESRCH) reads the stat.
            errno = 0;
            const pid_t s = ::getsid(pid);
            if (s < 0 && errno == ESRCH) return; // gone
            if (s >= 0 && s != sid) return;
            proc_ids ids;
            if (!ids_of(pid, ids) || ids.state == 'Z' || ids.state == 'X') return;
            if (ids.session == sid || ids.pgrp == sid)
                if (seen.insert(pid).second) todo.push_back({pid, ids});
        }))
        whole = false;
    for (pid_t r : extra_roots) {
        proc_ids ids;
        if (r != self && ids_of(r, ids) && ids.state != 'Z' && ids.state != 'X' && seen.insert(r).second)
            todo.push_back({r, ids});
    }
    std::vector<tree_member> out;
    while (!todo.empty()) {
        tree_member m = todo.back();
        todo.pop_back();
        out.push_back(m);
        for (pid_t c : children_of(m.pid, &whole)) {
            proc_ids ids;
            if (c == self || !ids_of(c, ids) || ids.state == 'Z' || ids.state == 'X') continue;
            if (ids.ppid != m.pid) continue; // re-parented (or reused) since the listing
            if (seen.insert(c).second) todo.push_back({c, ids});
        }
    }
    if (complete != nullptr) *complete = whole;
    return out;
}

#if defined(__APPLE__)
// No /proc on macOS: libproc lists the group, and tells zombies by their status.
std::vector<pid_t> group_members(pid_t pgid, const std::vector<pid_t>& extra_roots, bool* complete) {
    const pid_t self = ::getpid();
    std::unordered_set<pid_t> seen;
    std::vector<pid_t> out;
    bool whole = true;
    auto add = [&](pid_t pid) {
        if (pid <= 0 || pid == self) return;
        struct proc_bsdinfo info {};
        if (::proc_pidinfo(pid, PROC_PIDTBSDINFO, 0, &info, sizeof info) != static_cast<int>(sizeof info)) {
            if (resource_error(errno)) whole = false;
            return;
        }
        if (info.pbi_status == SZOMB) return;
        if (seen.insert(pid).second) out.push_back(pid);
    };
    for (pid_t r : extra_roots) add(r);
    if (pgid > 0) {
        std::vector<pid_t> pids(64);
        for (;;) {
            const int bytes = ::proc_listpids(PROC_PGRP_ONLY, static_cast<uint32_t>(pgid), pids.data(),
                                              static_cast<int>(pids.size() * sizeof(pid_t)));
            if (bytes < 0) {
                whole = false;
                break;
            }
            const std::size_t n = static_cast<std::size_t>(bytes) / sizeof(pid_t);
            if (n < pids.size()) { // room to spare: the whole list
                for (std::size_t i = 0; i < n; ++i) add(pids[i]);
                break;
            }
            pids.resize(pids.size() * 2);
        }
    }
    if (complete != nullptr) *complete = whole;
    return out;
}
#else
std::vector<pid_t> group_members(pid_t pgid, const std::vector<pid_t>& extra_roots, bool* complete) {
    const pid_t self = ::getpid();
    std::unordered_set<pid_t> seen;
    std::vector<pid_t> out;
    bool whole = true;
    auto add = [&](pid_t pid) {
        proc_ids ids;
        errno = 0;
        if (pid == self) return;
        if (!read_proc_ids(pid, ids)) {
            if (resource_error(errno)) whole = false; // could not look: maybe a member
            return;
        }
        if (ids.state == 'Z' || ids.state == 'X') return;
        if (seen.insert(pid).second) out.push_back(pid);
    };
    for (pid_t r : extra_roots) add(r);
    if (pgid > 0 && !for_each_proc([&](pid_t pid) {
            if (::getpgid(pid) == pgid) add(pid);
        }))
        whole = false;
    if (complete != nullptr) *complete = whole;
    return out;
}
#endif

std::vector<pid_t> session_tree(pid_t sid, const std::vector<pid_t>& extra_roots, bool* complete) {
    std::vector<pid_t> out;
    for (const auto& m : session_members(sid, extra_roots, complete)) out.push_back(m.pid);
    return out;
}

/// A pidfd for a member found by the walk, only if the process holding the pid after
/// pidfd_open still has the parent, process group and session the walk saw: a member that
/// exited and whose pid was reused in between is never signalled.
unique_fd verified_pidfd(const tree_member& m) {
    unique_fd fd{sys_pidfd_open(m.pid, 0)};
    if (!fd) return {};
    proc_ids now;
    if (!read_proc_ids(m.pid, now) || !same_ids(m.ids, now)) return {};
    return fd;
}

std::vector<unique_fd> collect_tree(pid_t sid, const std::vector<pid_t>& extra_roots) {
    std::vector<unique_fd> out;
    for (const auto& m : session_members(sid, extra_roots)) {
        unique_fd fd = verified_pidfd(m);
        if (fd) out.push_back(std::move(fd));
    }
    return out;
}

std::size_t kill_tree(pid_t sid, const std::vector<pid_t>& extra_roots) {
    std::unordered_set<pid_t> stopped;
    std::vector<unique_fd> fds;
    std::vector<pid_t> roots = extra_roots;
    for (int round = 0; round < 64; ++round) {
        bool added = false;
        for (const auto& m : session_members(sid, roots)) {
            pid_t p = m.pid;
            if (stopped.count(p)) continue;
            unique_fd fd = verified_pidfd(m);
            stopped.insert(p);
            if (!fd) continue;
            sys_pidfd_send_signal(fd.get(), SIGSTOP);
            fds.push_back(std::move(fd));
            roots.push_back(p);
            added = true;
        }
        if (!added) break;
    }
    std::size_t n = 0;
    for (auto& fd : fds)
        if (sys_pidfd_send_signal(fd.get(), SIGKILL) == 0) ++n;
    return n;
}

} // namespace drover::detail
