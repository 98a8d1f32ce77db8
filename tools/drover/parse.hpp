// drover (the program): parsers of the values its options take. Kept apart from main.cpp so
// the fuzz targets (test/fuzz) can link them without a main().
#pragma once

#include <sys/resource.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace drover::cli {

/// The longest duration drover keeps: 36500 days (100 years of 365 days). Longer values are
/// clamped to it, as timeout(1) clamps to the longest it can represent: scripts write huge
/// values to mean "never", and that must not be an error. Above 999999999s (so nine digits of
/// seconds stay exact), and a third of steady_clock's range (about 292 years of nanoseconds),
/// so a deadline of now() plus it never overflows.
constexpr std::chrono::nanoseconds max_duration = std::chrono::hours(24) * 36500;

/// A duration as drover's options take it (docs/cli.md, "Durations"): a decimal number, with a
/// fraction or not ("1.5", ".1", "5."), and an optional unit: ns, us, ms, s (the default), m,
/// h or d. No sign, exponent, hex, NaN, infinity or spaces. Read exactly (no floating point),
/// truncated to whole nanoseconds, except that a value above zero is at least 1ns (so it is
/// never mistaken for 0, which several options read as "none").
struct duration_reading {
    std::optional<std::chrono::nanoseconds> value; ///< empty when refused
    bool clamped = false;                          ///< longer than max_duration: value is max_duration
    std::string problem; ///< when refused: what is wrong, a phrase like "has an unknown unit 'x'"
};
duration_reading read_duration(std::string_view s);

/// read_duration(s).value: the duration, or empty when `s` is not one.
std::optional<std::chrono::nanoseconds> parse_duration(std::string_view s);

/// `d` as drover echoes it, always with a unit and exactly (read_duration reads it back to the
/// same value): "0s", "500ms", "1.5s", "90s", "2m", "1h", "1d", "250us", "7ns".
std::string format_duration(std::chrono::nanoseconds d);

/// "TERM", "SIGTERM", "sigterm" or "15": a signal number in 1..SIGRTMAX.
std::optional<int> parse_signal(std::string s);

/// "16MiB", "512KiB", "1M", "64k", "1G", "1048576": bytes; K, M, G (with or without "iB")
/// are binary (1024-based), as in most tools' size options.
std::optional<std::size_t> parse_size(std::string_view s);

/// "24x80" (rows x columns), each 1..10000.
std::optional<std::pair<unsigned short, unsigned short>> parse_pty_size(std::string_view s);

/// --cpu-max: "50%" of one CPU (per 100ms), "150%", or QUOTA/PERIOD as durations
/// ("20ms/100ms"). Returns {quota, period}: a period of 1ms to 1s, a quota of at least 1ms.
std::optional<std::pair<std::chrono::microseconds, std::chrono::microseconds>>
parse_cpu_max(std::string_view s);

/// An rlimit value: "unlimited"/"infinity" (RLIM_INFINITY) or a number.
std::optional<rlim_t> parse_rlim(std::string_view s);

/// --rlimit NAME=SOFT[:HARD] (HARD defaults to SOFT), NAME as `drover::rlimit_resource` takes it.
struct rlimit_spec {
    int resource = 0;
    rlim_t soft = 0;
    rlim_t hard = 0;
};
/// Empty when `s` is not NAME=SOFT[:HARD]. The order of soft and hard is not checked here: see
/// `soft_above_hard`.
std::optional<rlimit_spec> parse_rlimit_spec(std::string_view s);
/// Whether the soft limit of `r` exceeds its hard limit (which the kernel refuses).
bool soft_above_hard(const rlimit_spec& r) noexcept;

/// --umask: octal, at most 0777.
std::optional<unsigned> parse_umask(std::string_view s);

/// --pids-max: a positive decimal number.
std::optional<unsigned long long> parse_positive(std::string_view s);

/// "--groups a,b,c" / "--cap-bound x,y": a comma-separated list ("" and "none" are empty).
std::vector<std::string> split_list(const std::string& s);

/// The number of single-character insertions, deletions, substitutions and swaps of two
/// neighbours that turn `a` into `b` (optimal string alignment): a swap is one typo ("--tiemout").
std::size_t typo_distance(std::string_view a, std::string_view b);

/// The names `wrong` is most likely a typo of, compared without leading dashes: the nearest,
/// when at most (length + 1) / 3 typos away (none for one character, 1 for 2 to 4, 2 for 5 to 7,
/// 3 for longer words), several when equally near; else the one name it is the start of (--time
/// for --timeout). Empty when none is near. The `drover` program's "did you mean" everywhere.
std::vector<std::string> near_names(std::string_view wrong, const std::vector<std::string>& names);

} // namespace drover::cli
