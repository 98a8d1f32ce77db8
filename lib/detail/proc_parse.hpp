// drover (private): parsers of the text files under /proc/<pid> that read_proc_info reads.
// Apart from proc_info.cpp (which opens and verifies) so that each can be tested and fuzzed
// alone (test/fuzz). Every function takes the file's text as read, which a process can shape
// (its name, its cgroup path), and never trusts it: on text it does not expect, a parser
// returns false (or empty) rather than guessing.
#pragma once

#include <sys/types.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "drover/proc_info.hpp"

namespace drover::detail {

/// A whole decimal number (a leading '-' for signed types), nothing around it.
template <class T>
bool parse_num(std::string_view s, T& out) noexcept {
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && p == s.data() + s.size();
}

/// The words of the first line of `s`, split on runs of spaces and tabs.
std::vector<std::string_view> words(std::string_view s);

/// The value of the first "Key:" line in a "Key:\tvalue" file (status, io, fdinfo), or empty.
std::optional<std::string_view> field(std::string_view text, std::string_view key);

/// Clock ticks (USER_HZ) as a duration (nanoseconds::max() past 292 years).
std::chrono::nanoseconds from_ticks(std::uint64_t ticks);

/// The one splitter of /proc/<pid>/stat text, shared by parse_stat and parse_stat_ids (tree.hpp)
/// so that the two never disagree: after the *last* ')', the fields of that line, separated by
/// runs of spaces or tabs. Stores at most `n` into `f` (f[0] is field 3, the state) and returns
/// how many; 0 without a ')'. No allocation.
std::size_t stat_fields(std::string_view stat, std::string_view* f, std::size_t n) noexcept;

/// /proc/<pid>/stat: pid, comm, state, ppid, pgrp, session, flags, CPU times, threads, start
/// time. False unless the text is the stat of `pid` with tick counts under 73 years. The name
/// sits between the first '(' and the *last* ')': it may itself hold spaces, parentheses and
/// newlines.
bool parse_stat(std::string_view text, pid_t pid, proc_info& p);

/// /proc/<pid>/status: uids, gids, groups, VmRSS and VmHWM. False without Uid and Gid lines.
bool parse_status(std::string_view text, proc_info& p);

/// /proc/<pid>/io: all seven counters, or false.
bool parse_io(std::string_view text, io_counters& io);

/// /proc/<pid>/limits: one row per resource under a header that places the columns. Appends
/// to `out`; false unless every row parses and there are at least RLIMIT_NLIMITS of them.
bool parse_limits(std::string_view text, std::vector<limit_value>& out);

/// /proc/<pid>/net/dev: two header lines, then one interface per line. Appends to `out`.
bool parse_net_dev(std::string_view text, std::vector<net_interface>& out);

/// /proc/<pid>/cgroup: the cgroup v2 path (the "0::" line), or empty. A cgroup path is
/// printed unescaped, so a newline inside one could fake a line: the first "0::" line is
/// taken through to the end of the file.
std::optional<std::string> parse_proc_cgroup(std::string_view text);

/// /proc/<pid>/cmdline: the NUL-separated words.
std::vector<std::string> split_cmdline(std::string_view text);

/// A /proc/<pid>/ns/* link ("pid:[4026531836]"): the inode number.
std::optional<std::uint64_t> parse_ns_link(std::string_view link);

/// The "Pid:" line of a pidfd's fdinfo: the pid, or -1 once reaped.
std::optional<pid_t> parse_fdinfo_pid(std::string_view text);

/// /proc/stat: btime, the boot time in seconds since the epoch.
std::optional<std::int64_t> parse_boot_time(std::string_view text);

} // namespace drover::detail
