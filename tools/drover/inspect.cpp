// drover inspect / drover ps (see inspect.hpp). Everything a child could control (its name,
// its argv, its cwd, its fd targets) goes through drover::escape before it is printed.
#include "inspect.hpp"

#include <unistd.h>

#include <cmath>
#include <ctime>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "drover/escape.hpp"
#include "drover/proc_info.hpp"

namespace drover::tool {
namespace {

void write_all(const std::string& s) {
    std::size_t off = 0;
    while (off < s.size()) {
        ssize_t n = ::write(1, s.data() + off, s.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        off += static_cast<std::size_t>(n);
    }
}

/// "3.1 MiB" (or, `compact`, "3.1M" for tables).
std::string bytes(std::uint64_t b, bool compact = false) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(b);
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        ++u;
    }
    if (compact) return u == 0 ? std::to_string(b) : fmt::format("{:.1f}{}", v, units[u][0]);
    return u == 0 ? fmt::format("{} B", b) : fmt::format("{:.1f} {}", v, units[u]);
}

std::string human_duration(std::chrono::nanoseconds d) {
    using namespace std::chrono;
    auto s = duration_cast<seconds>(d).count();
    if (s < 60) return fmt::format("{:.1f}s", duration<double>(d).count());
    if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
    if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
    return fmt::format("{}d{:02}h", s / 86400, s % 86400 / 3600);
}

std::string state_name(char s) {
    switch (s) {
    case 'R':
        return "running";
    case 'S':
        return "sleeping";
    case 'D':
        return "waiting on I/O (uninterruptible)";
    case 'Z':
        return "zombie (exited, not reaped)";
    case 'T':
        return "stopped";
    case 't':
        return "stopped by a tracer";
    case 'X':
        return "dead";
    case 'I':
        return "idle";
    case 'P':
        return "parked";
    default:
        return "unknown";
    }
}

/// argv as one line: each word escaped, quoted when it holds a space or is empty.
std::string command_line(const proc_info& p) {
    if (p.cmdline.empty()) return "[" + drover::escape(p.comm) + "]";
    std::string out;
    for (const auto& a : p.cmdline) {
        if (!out.empty()) out += ' ';
        std::string e = drover::escape(a);
        if (e.empty() || e.find(' ') != std::string::npos) e = "'" + e + "'";
        out += e;
    }
    if (p.cmdline_truncated) out += " [...]";
    return out;
}

std::string utc(std::chrono::system_clock::time_point t) {    // wall clock for display
    std::time_t tt = std::chrono::system_clock::to_time_t(t); // wall clock for display
    std::tm tm{};
    ::gmtime_r(&tt, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
    return buf;
}

std::int64_t micros(std::chrono::nanoseconds d) {
    return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

struct ns_row {
    const char* name;
    std::optional<std::uint64_t> theirs, ours;
};

std::vector<ns_row> ns_rows(const namespace_ids& t, const namespace_ids& o) {
    return {{"pid", t.pid, o.pid},         {"mnt", t.mnt, o.mnt}, {"net", t.net, o.net},
            {"user", t.user, o.user},      {"uts", t.uts, o.uts}, {"ipc", t.ipc, o.ipc},
            {"cgroup", t.cgroup, o.cgroup}};
}

boost::json::value opt(const std::optional<std::uint64_t>& v) {
    return v ? boost::json::value(*v) : boost::json::value(nullptr);
}

std::string inspect_json(const proc_info& p) {
    boost::json::object j;
    j["pid"] = p.pid;
    j["ppid"] = p.ppid;
    j["state"] = std::string(1, p.state);
    j["state_name"] = state_name(p.state);
    j["comm"] = drover::to_valid_utf8(p.comm);
    boost::json::array argv;
    for (const auto& a : p.cmdline) argv.emplace_back(drover::to_valid_utf8(a));
    j["cmdline"] = std::move(argv);
    j["cmdline_truncated"] = p.cmdline_truncated;
    j["exe"] = drover::to_valid_utf8(p.exe);
    j["cwd"] = drover::to_valid_utf8(p.cwd);
    j["uid"] = p.uid;
    j["euid"] = p.euid;
    j["gid"] = p.gid;
    j["egid"] = p.egid;
    boost::json::array groups;
    for (auto g : p.groups) groups.emplace_back(g);
    j["groups"] = std::move(groups);
    j["session"] = p.session;
    j["pgrp"] = p.pgrp;
    j["threads"] = p.threads;
    j["started_unix_us"] = micros(p.started.time_since_epoch());
    j["age_us"] = micros(p.age);
    j["user_cpu_us"] = micros(p.user_cpu);
    j["system_cpu_us"] = micros(p.system_cpu);
    j["rss_bytes"] = p.rss_bytes;
    j["peak_rss_bytes"] = p.peak_rss_bytes;
    j["fd_count"] = p.fd_count;
    boost::json::array fds;
    for (const auto& f : p.fds)
        fds.push_back(boost::json::object{{"fd", f.fd}, {"target", drover::to_valid_utf8(f.target)}});
    j["fds"] = std::move(fds);
    j["cgroup"] = drover::to_valid_utf8(p.cgroup);
    boost::json::object ns;
    for (const auto& r : ns_rows(p.ns, own_namespaces()))
        ns[r.name] =
            boost::json::object{{"id", opt(r.theirs)}, {"same_as_drover", r.theirs && r.theirs == r.ours}};
    j["namespaces"] = std::move(ns);
    if (p.io) {
        j["io"] = boost::json::object{{"rchar", p.io->rchar},
                                      {"wchar", p.io->wchar},
                                      {"syscr", p.io->syscr},
                                      {"syscw", p.io->syscw},
                                      {"read_bytes", p.io->read_bytes},
                                      {"write_bytes", p.io->write_bytes},
                                      {"cancelled_write_bytes", p.io->cancelled_write_bytes}};
    } else {
        j["io"] = nullptr;
    }
    boost::json::object limits;
    for (const auto& l : p.limits)
        limits[l.name] = boost::json::object{{"soft", opt(l.soft)}, {"hard", opt(l.hard)}};
    j["limits"] = std::move(limits);
    boost::json::array ifs;
    for (const auto& i : p.interfaces)
        ifs.push_back(boost::json::object{{"name", drover::to_valid_utf8(i.name)},
                                          {"rx_bytes", i.rx_bytes},
                                          {"rx_packets", i.rx_packets},
                                          {"tx_bytes", i.tx_bytes},
                                          {"tx_packets", i.tx_packets}});
    j["interfaces"] = std::move(ifs);
    boost::json::array un;
    for (const auto& u : p.unreadable) un.emplace_back(u);
    j["unreadable"] = std::move(un);
    return boost::json::serialize(j) + "\n";
}

std::string inspect_text(const proc_info& p) {
    std::string o;
    auto line = [&](std::string_view key, const std::string& value) {
        o += fmt::format("{:<11}{}\n", key, value);
    };
    line("pid", fmt::format("{} ({})", p.pid, drover::escape(p.comm)));
    line("ppid", std::to_string(p.ppid));
    line("state", fmt::format("{} ({})", p.state, state_name(p.state)));
    line("command", command_line(p));
    line("exe", drover::escape(p.exe));
    line("cwd", drover::escape(p.cwd));
    line("uid", p.uid == p.euid ? std::to_string(p.uid) : fmt::format("{} (effective {})", p.uid, p.euid));
    line("gid", p.gid == p.egid ? std::to_string(p.gid) : fmt::format("{} (effective {})", p.gid, p.egid));
    std::string groups;
    for (auto g : p.groups) groups += (groups.empty() ? "" : " ") + std::to_string(g);
    line("groups", groups.empty() ? "(none)" : groups);
    line("session", fmt::format("{}, process group {}", p.session, p.pgrp));
    line("threads", std::to_string(p.threads));
    line("started", fmt::format("{} (running {})", utc(p.started), human_duration(p.age)));
    line("cpu", fmt::format("user {:.2f}s, system {:.2f}s", std::chrono::duration<double>(p.user_cpu).count(),
                            std::chrono::duration<double>(p.system_cpu).count()));
    line("memory", fmt::format("rss {}, peak {}", bytes(p.rss_bytes), bytes(p.peak_rss_bytes)));
    line("fds", fmt::format("{} open{}", p.fd_count,
                            p.fd_count > p.fds.size() ? fmt::format(" (first {} shown)", p.fds.size()) : ""));
    for (const auto& f : p.fds) o += fmt::format("  {:>4} -> {}\n", f.fd, drover::escape(f.target));
    line("cgroup", p.cgroup.empty() ? "(no cgroup v2 membership)" : drover::escape(p.cgroup));
    o += "namespaces (compared with this drover's own)\n";
    bool any_own = false;
    for (const auto& r : ns_rows(p.ns, own_namespaces())) {
        std::string id = r.theirs ? std::to_string(*r.theirs) : "?";
        std::string cmp = !r.theirs || !r.ours   ? "unknown"
                          : *r.theirs == *r.ours ? "same as drover's"
                                                 : "its own (differs from drover's)";
        any_own = any_own || (r.theirs && r.ours && *r.theirs != *r.ours);
        o += fmt::format("  {:<8} {:<12} {}\n", r.name, id, cmp);
    }
    if (!any_own) o += "  (it shares every namespace with drover)\n";
    if (p.io)
        line("io", fmt::format("read {} in {} calls, wrote {} in {} calls; storage: read {}, wrote {}",
                               bytes(p.io->rchar), p.io->syscr, bytes(p.io->wchar), p.io->syscw,
                               bytes(p.io->read_bytes), bytes(p.io->write_bytes)));
    o += "limits (soft / hard)\n";
    auto lim = [](const std::optional<std::uint64_t>& v) {
        return v ? std::to_string(*v) : std::string("unlimited");
    };
    for (const auto& l : p.limits) o += fmt::format("  {:<11}{} / {}\n", l.name, lim(l.soft), lim(l.hard));
    o += "network (as its network namespace sees it)\n";
    for (const auto& i : p.interfaces)
        o += fmt::format("  {:<10} rx {} ({} packets), tx {} ({} packets)\n", drover::escape(i.name),
                         bytes(i.rx_bytes), i.rx_packets, bytes(i.tx_bytes), i.tx_packets);
    for (const auto& u : p.unreadable) o += fmt::format("unreadable {}\n", u);
    return o;
}

std::string describe(const error_code& ec) {
    if (ec == std::errc::no_such_process) return "no such process (it is gone)";
    if (ec == errc::not_supported) // the portable backend: no pidfd-verified /proc reads
        return "reading a process's /proc files is not supported by the portable backend (Linux backend "
               "only)";
    return ec.message();
}

} // namespace

int inspect_main(pid_t pid, bool json, spdlog::logger& log) {
    error_code ec;
    auto p = read_proc_info(pid, ec);
    if (!p) {
        log.error("inspect: process {}: {}", pid, describe(ec));
        return 1;
    }
    write_all(json ? inspect_json(*p) : inspect_text(*p));
    return 0;
}

int ps_main(pid_t pid, bool json, std::chrono::nanoseconds interval, spdlog::logger& log) {
    // Two samples of the whole tree, `interval` apart: CPU is the share used in between.
    auto tree = process_tree(pid);
    if (tree.empty()) {
        log.error("ps: process {}: no such process (it is gone)", pid);
        return 1;
    }
    std::map<pid_t, proc_info> first;
    if (interval.count() > 0) {
        for (pid_t p : tree) {
            error_code ec;
            if (auto info = read_proc_info(p, ec)) first.emplace(p, std::move(*info));
        }
        std::this_thread::sleep_for(interval);
    }
    tree = process_tree(pid); // it may have grown or shrunk meanwhile
    struct row {
        proc_info info;
        int depth = 0;
        std::optional<double> cpu;
    };
    std::vector<row> rows;
    std::map<pid_t, int> depth_of;
    for (pid_t p : tree) {
        error_code ec;
        auto info = read_proc_info(p, ec);
        if (!info && ec == errc::not_supported) {
            log.error("ps: process {}: {}", pid, describe(ec));
            return 1;
        }
        if (!info) continue; // exited meanwhile
        int depth = 0;
        if (p != pid) {
            // Its parent must be a row already: a pid reaped and reused after the walk is not ours.
            auto it = depth_of.find(info->ppid);
            if (it == depth_of.end()) continue;
            depth = it->second + 1;
        }
        depth_of[p] = depth;
        std::optional<double> cpu;
        if (auto f = first.find(p); f != first.end() && f->second.start_ticks == info->start_ticks)
            cpu = cpu_percent(f->second, *info);
        rows.push_back({std::move(*info), depth, cpu});
    }
    if (rows.empty()) {
        log.error("ps: process {}: no such process (it is gone)", pid);
        return 1;
    }
    if (json) {
        boost::json::array a;
        for (const auto& r : rows) {
            boost::json::array argv;
            for (const auto& s : r.info.cmdline) argv.emplace_back(drover::to_valid_utf8(s));
            a.push_back(
                boost::json::object{{"pid", r.info.pid},
                                    {"ppid", r.info.ppid},
                                    {"depth", r.depth},
                                    {"state", std::string(1, r.info.state)},
                                    {"cpu_percent", r.cpu ? boost::json::value(std::round(*r.cpu * 10) / 10)
                                                          : boost::json::value(nullptr)},
                                    {"rss_bytes", r.info.rss_bytes},
                                    {"age_us", micros(r.info.age)},
                                    {"comm", drover::to_valid_utf8(r.info.comm)},
                                    {"cmdline", std::move(argv)}});
        }
        write_all(boost::json::serialize(a) + "\n");
        return 0;
    }
    std::string o = fmt::format("{:>7} {:>7} {} {:>6} {:>7} {:>8}  {}\n", "PID", "PPID", "S", "CPU%", "RSS",
                                "UPTIME", "COMMAND");
    for (const auto& r : rows) {
        std::string indent =
            r.depth == 0 ? "" : std::string(static_cast<std::size_t>(r.depth - 1) * 3, ' ') + "\\_ ";
        o += fmt::format("{:>7} {:>7} {} {:>6} {:>7} {:>8}  {}{}\n", r.info.pid, r.info.ppid, r.info.state,
                         r.cpu ? fmt::format("{:.1f}", *r.cpu) : std::string("-"),
                         bytes(r.info.rss_bytes, true), human_duration(r.info.age), indent,
                         command_line(r.info));
    }
    write_all(o);
    return 0;
}

} // namespace drover::tool
