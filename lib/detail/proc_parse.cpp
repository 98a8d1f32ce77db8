#include "detail/compat.hpp"
#include "detail/proc_parse.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>

#include "drover/command.hpp"

namespace drover::detail {

namespace {

std::uint64_t ticks_per_second() {
    static const long hz = ::sysconf(_SC_CLK_TCK);
    return hz > 0 ? static_cast<std::uint64_t>(hz) : 100;
}

/// Whether a tick count (CPU time, start time since boot) is one a process can have: under
/// 2^61 ns, 73 years. More is a corrupt file, and callers add these durations to each other and
/// to the boot time, which must not overflow. (Fuzzing found the overflow in from_ticks.)
bool plausible_ticks(std::uint64_t t) {
    return t / ticks_per_second() < (std::uint64_t{1} << 61) / 1000000000;
}

bool parse_ids(std::string_view value, unsigned& real, unsigned& effective) {
    auto w = words(value);
    return w.size() >= 2 && parse_num(w[0], real) && parse_num(w[1], effective);
}

} // namespace

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

std::optional<std::string_view> field(std::string_view text, std::string_view key) {
    std::size_t pos = 0;
    while (pos < text.size()) {
        auto nl = text.find('\n', pos);
        std::string_view line =
            text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() : nl + 1;
        if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ':')
            return line.substr(key.size() + 1);
    }
    return std::nullopt;
}

std::chrono::nanoseconds from_ticks(std::uint64_t t) {
    const std::uint64_t hz = ticks_per_second();
    // Past 292 years the seconds would overflow nanoseconds (UB): saturate.
    constexpr std::uint64_t max_seconds = std::chrono::nanoseconds::max().count() / 1000000000 - 1;
    if (t / hz > max_seconds) return std::chrono::nanoseconds::max();
    return std::chrono::seconds(t / hz) + std::chrono::nanoseconds((t % hz) * 1000000000ULL / hz);
}

std::size_t stat_fields(std::string_view stat, std::string_view* f, std::size_t n) noexcept {
    auto close = stat.rfind(')');
    if (close == std::string_view::npos) return 0;
    std::string_view rest = stat.substr(close + 1);
    std::size_t count = 0, i = 0;
    while (count < n && i < rest.size()) {
        while (i < rest.size() && (rest[i] == ' ' || rest[i] == '\t')) ++i;
        std::size_t j = i;
        while (j < rest.size() && rest[j] != ' ' && rest[j] != '\t' && rest[j] != '\n') ++j;
        if (j > i) f[count++] = rest.substr(i, j - i);
        i = j;
        if (i < rest.size() && rest[i] == '\n') break;
    }
    return count;
}

bool parse_stat(std::string_view text, pid_t pid, proc_info& p) {
    auto open = text.find('(');
    auto close = text.rfind(')');
    if (open == std::string_view::npos || close == std::string_view::npos || close < open || open < 2)
        return false;
    pid_t first = 0;
    if (!parse_num(text.substr(0, open - 1), first) || first != pid || text[open - 1] != ' ') return false;
    p.comm.assign(text.substr(open + 1, close - open - 1));
    if (close + 2 >= text.size() || text[close + 1] != ' ') return false;
    std::string_view f[22]; // f[0] is field 3 (state)
    if (stat_fields(text, f, 22) < 22 || f[0].size() != 1) return false;
    p.state = f[0][0];
    std::uint64_t utime = 0, stime = 0, start = 0, flags = 0;
    long threads = 0;
    if (!parse_num(f[1], p.ppid) || !parse_num(f[2], p.pgrp) || !parse_num(f[3], p.session) ||
        !parse_num(f[6], flags) || !parse_num(f[11], utime) || !parse_num(f[12], stime) ||
        !parse_num(f[17], threads) || !parse_num(f[19], start) || !plausible_ticks(utime) ||
        !plausible_ticks(stime) || !plausible_ticks(start))
        return false;
    p.user_cpu = from_ticks(utime);
    p.system_cpu = from_ticks(stime);
    p.threads = static_cast<int>(threads);
    p.start_ticks = start;
    p.kernel_thread = (flags & 0x00200000U) != 0; // PF_KTHREAD
    return true;
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
        // An unreadable figure is no figure, as is one whose bytes would not fit (it wrapped).
        return !w.empty() && parse_num(w[0], n) && n <= UINT64_MAX / 1024 ? n * 1024 : 0;
    };
    p.rss_bytes = kib("VmRSS");
    p.peak_rss_bytes = kib("VmHWM");
    return true;
}

bool parse_net_dev(std::string_view text, std::vector<net_interface>& out) {
    std::size_t pos = 0;
    int line_no = 0;
    while (pos < text.size()) {
        auto nl = text.find('\n', pos);
        std::string_view line =
            text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
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

// (Readable by anyone, where prlimit(2) on another user's process needs CAP_SYS_RESOURCE.)
bool parse_limits(std::string_view text, std::vector<limit_value>& out) {
    auto nl = text.find('\n');
    if (nl == std::string_view::npos) return false;
    std::string_view header = text.substr(0, nl);
    const auto soft_at = header.find("Soft Limit"), hard_at = header.find("Hard Limit"),
               units_at = header.find("Units");
    if (header.rfind("Limit", 0) != 0 || soft_at == std::string_view::npos ||
        hard_at == std::string_view::npos || units_at == std::string_view::npos ||
        !(soft_at < hard_at && hard_at < units_at))
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
        std::string_view line =
            text.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
        pos = end == std::string_view::npos ? text.size() : end + 1;
        if (line.size() < units_at) return false;
        limit_value l;
        l.name = std::string(rlimit_name(r++));
        if (l.name.empty()) { // a limit newer than this build: its own words
            auto w = words(line.substr(0, soft_at));
            for (auto x : w) l.name += (l.name.empty() ? "" : " ") + std::string(x);
        }
        if (!value(line.substr(soft_at, hard_at - soft_at), l.soft) ||
            !value(line.substr(hard_at, units_at - hard_at), l.hard))
            return false;
        out.push_back(std::move(l));
    }
    return r >= RLIMIT_NLIMITS;
}

bool parse_io(std::string_view text, io_counters& io) {
    const std::pair<const char*, std::uint64_t*> keys[] = {
        {"rchar", &io.rchar},
        {"wchar", &io.wchar},
        {"syscr", &io.syscr},
        {"syscw", &io.syscw},
        {"read_bytes", &io.read_bytes},
        {"write_bytes", &io.write_bytes},
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

std::optional<std::string> parse_proc_cgroup(std::string_view t) {
    // The v2 line comes last. A "\n0::" at offset 0 (a file starting with a newline) is not a
    // first line "0::": taking it for one cut the path's first character (found by fuzzing).
    std::size_t at = 0;
    if (!t.starts_with("0::")) {
        at = t.find("\n0::");
        if (at == std::string_view::npos) return std::nullopt;
        ++at; // past the newline
    }
    auto v = t.substr(at + 3);
    if (!v.empty() && v.back() == '\n') v.remove_suffix(1);
    return std::string(v);
}

std::vector<std::string> split_cmdline(std::string_view text) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start < text.size()) {
        auto nul = text.find('\0', start);
        if (nul == std::string_view::npos) nul = text.size();
        out.emplace_back(text.substr(start, nul - start));
        start = nul + 1;
    }
    return out;
}

std::optional<std::uint64_t> parse_ns_link(std::string_view s) {
    auto open = s.find(":[");
    if (open == std::string_view::npos || s.empty() || s.back() != ']') return std::nullopt;
    std::uint64_t v = 0;
    if (!parse_num(s.substr(open + 2, s.size() - open - 3), v)) return std::nullopt;
    return v;
}

std::optional<pid_t> parse_fdinfo_pid(std::string_view text) {
    auto v = field(text, "Pid");
    if (!v) return std::nullopt;
    auto w = words(*v);
    pid_t p = 0;
    if (w.empty() || !parse_num(w[0], p)) return std::nullopt;
    return p;
}

std::optional<std::int64_t> parse_boot_time(std::string_view text) {
    auto at = text.find("\nbtime ");
    if (at == std::string_view::npos) return std::nullopt;
    auto end = text.find('\n', at + 7);
    std::int64_t b = 0;
    if (!parse_num(text.substr(at + 7, end - at - 7), b)) return std::nullopt;
    return b;
}

} // namespace drover::detail
