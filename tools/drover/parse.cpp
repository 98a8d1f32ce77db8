#include "parse.hpp"

#include <signal.h>
#include <string.h>

#include <cctype>
#include <charconv>
#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>

#include "drover/command.hpp"
#include "drover/escape.hpp"

namespace drover::cli {

namespace {

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

/// Nanoseconds per unit; 0 for an unknown unit. Case matters, as in timeout(1): "1S" and "1M"
/// are refused rather than guessed (M could be minutes or months).
std::uint64_t unit_scale(std::string_view unit) {
    if (unit.empty() || unit == "s") return 1'000'000'000ULL;
    if (unit == "ns") return 1;
    if (unit == "us") return 1'000ULL;
    if (unit == "ms") return 1'000'000ULL;
    if (unit == "m") return 60'000'000'000ULL;
    if (unit == "h") return 3'600'000'000'000ULL;
    if (unit == "d") return 86'400'000'000'000ULL;
    return 0;
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
    if (s.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
    return true;
}

std::string format_duration_ns(std::uint64_t n) {
    if (n == 0) return "0s";
    // A whole number of days, hours or minutes reads best in that unit ("2m", not "120s");
    // anything else in the largest unit up to seconds that is not more than it, as a decimal
    // without trailing zeros ("90s", "1.5s", "500ms", "2.5us").
    for (auto [unit, scale] : {std::pair{"d", 86'400'000'000'000ULL}, std::pair{"h", 3'600'000'000'000ULL},
                               std::pair{"m", 60'000'000'000ULL}})
        if (n % scale == 0) return std::to_string(n / scale) + unit;
    for (auto [unit, scale, places] : {std::tuple{"s", 1'000'000'000ULL, 9},
                                       std::tuple{"ms", 1'000'000ULL, 6}, std::tuple{"us", 1'000ULL, 3}}) {
        if (n < scale) continue;
        std::string out = std::to_string(n / scale);
        if (const std::uint64_t rest = n % scale) {
            std::string f = std::to_string(rest);
            f.insert(0, static_cast<std::size_t>(places) - f.size(), '0');
            while (f.back() == '0') f.pop_back();
            out += '.' + f;
        }
        return out + unit;
    }
    return std::to_string(n) + "ns";
}

} // namespace

duration_reading read_duration(std::string_view s) {
    // 128 bits: 24 fraction digits times a day in nanoseconds (< 2^127) stay exact.
    __extension__ typedef unsigned __int128 u128;
    duration_reading r;
    auto refuse = [&](std::string why) {
        r.problem = std::move(why);
        return r;
    };
    if (s.empty()) return refuse("is empty");
    if (s.front() == '-') return refuse("is negative");
    if (s.front() == '+') return refuse("has a sign (write the number alone)");
    if (starts_with_nocase(s, "nan") || starts_with_nocase(s, "inf"))
        return refuse(
            "is not a number (NaN and infinity are not durations; a huge value means no limit in practice)");
    if (starts_with_nocase(s, "0x")) return refuse("is hexadecimal (write it in decimal)");
    if (!is_digit(s.front()) && s.front() != '.') return refuse("does not start with a number");

    // Whole part: saturates (anything that long is clamped anyway).
    std::size_t i = 0;
    std::uint64_t whole = 0;
    bool whole_huge = false;
    for (; i < s.size() && is_digit(s[i]); ++i) {
        const unsigned d = static_cast<unsigned>(s[i] - '0');
        if (whole > (std::numeric_limits<std::uint64_t>::max() - 9) / 10)
            whole_huge = true;
        else
            whole = whole * 10 + d;
    }
    std::size_t digits = i;
    // Fraction: its first 24 digits exactly (with the largest unit, 1d, digit 24 is worth
    // 8.64e-11 ns), the rest only as "not zero" so that a tiny value stays above zero.
    u128 frac = 0, frac_den = 1;
    bool frac_rest = false;
    if (i < s.size() && s[i] == '.') {
        for (++i; i < s.size() && is_digit(s[i]); ++i, ++digits) {
            if (frac_den < u128(1'000'000'000'000ULL) * 1'000'000'000'000ULL) {
                frac = frac * 10 + static_cast<unsigned>(s[i] - '0');
                frac_den *= 10;
            } else if (s[i] != '0') {
                frac_rest = true;
            }
        }
    }
    if (digits == 0) return refuse("has no digits");
    const std::string_view unit = s.substr(i);
    if (!unit.empty() && unit.front() == '.') return refuse("has more than one '.'");
    if (!unit.empty() && (unit.front() == 'e' || unit.front() == 'E') && unit.size() > 1 &&
        (is_digit(unit[1]) || unit[1] == '-' || unit[1] == '+'))
        return refuse("has an exponent (write 1000, not 1e3)");
    const std::uint64_t scale = unit_scale(unit);
    if (scale == 0) return refuse("has an unknown unit '" + drover::escape(unit) + "'");

    const u128 max = static_cast<u128>(max_duration.count());
    u128 ns = whole_huge ? max + 1 : u128(whole) * scale + frac * scale / frac_den;
    if (ns == 0 && (frac != 0 || frac_rest)) ns = 1; // above zero stays above zero
    if (ns > max) {
        ns = max;
        r.clamped = true;
    }
    r.value = std::chrono::nanoseconds(static_cast<std::int64_t>(ns));
    return r;
}

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view s) {
    return read_duration(s).value;
}

std::string format_duration(std::chrono::nanoseconds d) {
    // Negated as unsigned: -nanoseconds::min() would overflow.
    if (d.count() < 0) return "-" + format_duration_ns(0 - static_cast<std::uint64_t>(d.count()));
    return format_duration_ns(static_cast<std::uint64_t>(d.count()));
}

std::optional<int> parse_signal(std::string s) {
    if (s.empty()) return std::nullopt;
    if (std::isdigit(static_cast<unsigned char>(s[0]))) {
        int v = 0;
        auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (ec != std::errc{} || ptr != s.data() + s.size() || v < 1 || v > SIGRTMAX) return std::nullopt;
        return v;
    }
    for (auto& ch : s) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    if (s.rfind("SIG", 0) == 0) s = s.substr(3);
    for (int sig = 1; sig < NSIG; ++sig)
        if (const char* name = sigabbrev_np(sig); name != nullptr && s == name) return sig;
    return std::nullopt;
}

std::optional<std::size_t> parse_size(std::string_view s) {
    std::size_t digits = 0;
    while (digits < s.size() && std::isdigit(static_cast<unsigned char>(s[digits]))) ++digits;
    if (digits == 0) return std::nullopt;
    unsigned long long v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + digits, v);
    if (ec != std::errc{}) return std::nullopt;
    std::string unit(s.substr(digits));
    for (auto& ch : unit) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    unsigned shift;
    if (unit.empty() || unit == "b")
        shift = 0;
    else if (unit == "k" || unit == "kb" || unit == "kib")
        shift = 10;
    else if (unit == "m" || unit == "mb" || unit == "mib")
        shift = 20;
    else if (unit == "g" || unit == "gb" || unit == "gib")
        shift = 30;
    else
        return std::nullopt;
    if (v > (std::numeric_limits<std::size_t>::max() >> shift)) return std::nullopt;
    return static_cast<std::size_t>(v) << shift;
}

std::optional<std::pair<unsigned short, unsigned short>> parse_pty_size(std::string_view s) {
    auto x = s.find('x');
    if (x == std::string_view::npos) return std::nullopt;
    unsigned rows = 0, cols = 0;
    auto a = std::from_chars(s.data(), s.data() + x, rows);
    auto b = std::from_chars(s.data() + x + 1, s.data() + s.size(), cols);
    if (a.ec != std::errc{} || a.ptr != s.data() + x || b.ec != std::errc{} || b.ptr != s.data() + s.size())
        return std::nullopt;
    if (rows == 0 || cols == 0 || rows > 10000 || cols > 10000) return std::nullopt;
    return std::pair{static_cast<unsigned short>(rows), static_cast<unsigned short>(cols)};
}

std::optional<std::pair<std::chrono::microseconds, std::chrono::microseconds>>
parse_cpu_max(std::string_view s) {
    using std::chrono::microseconds;
    if (!s.empty() && s.back() == '%') {
        unsigned long pct = 0;
        auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size() - 1, pct);
        if (ec != std::errc{} || ptr != s.data() + s.size() - 1 || pct == 0 || pct > 100000)
            return std::nullopt;
        return std::pair{microseconds(pct * 1000), microseconds(100000)};
    }
    auto slash = s.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    auto q = parse_duration(s.substr(0, slash));
    auto p = parse_duration(s.substr(slash + 1));
    if (!q || !p) return std::nullopt;
    auto qu = std::chrono::duration_cast<microseconds>(*q), pu = std::chrono::duration_cast<microseconds>(*p);
    // cpu.max accepts a period of 1ms to 1s and a quota of at least 1ms.
    if (pu < microseconds(1000) || pu > microseconds(1000000) || qu < microseconds(1000)) return std::nullopt;
    return std::pair{qu, pu};
}

std::optional<rlim_t> parse_rlim(std::string_view s) {
    if (s == "unlimited" || s == "infinity") return RLIM_INFINITY;
    unsigned long long v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc{} || ptr != s.data() + s.size()) return std::nullopt;
    return static_cast<rlim_t>(v);
}

std::optional<rlimit_spec> parse_rlimit_spec(std::string_view l) {
    auto eq = l.find('=');
    auto res = eq == std::string_view::npos ? std::nullopt : drover::rlimit_resource(l.substr(0, eq));
    std::string_view vals = eq == std::string_view::npos ? std::string_view{} : l.substr(eq + 1);
    auto colon = vals.find(':');
    auto soft = parse_rlim(vals.substr(0, colon));
    auto hard = colon == std::string_view::npos ? soft : parse_rlim(vals.substr(colon + 1));
    if (!res || !soft || !hard) return std::nullopt;
    return rlimit_spec{*res, *soft, *hard};
}

bool soft_above_hard(const rlimit_spec& r) noexcept {
    return r.hard != RLIM_INFINITY && (r.soft == RLIM_INFINITY || r.soft > r.hard);
}

std::optional<unsigned> parse_umask(std::string_view s) {
    unsigned v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 8);
    if (s.empty() || ec != std::errc{} || ptr != s.data() + s.size() || v > 0777) return std::nullopt;
    return v;
}

std::optional<unsigned long long> parse_positive(std::string_view s) {
    unsigned long long n = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (s.empty() || ec != std::errc{} || ptr != s.data() + s.size() || n == 0) return std::nullopt;
    return n;
}

std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    if (s.empty() || s == "none") return out;
    std::size_t start = 0;
    for (;;) {
        auto comma = s.find(',', start);
        out.push_back(s.substr(start, comma - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return out;
}

// The number of single-character insertions, deletions, substitutions and swaps of two
// neighbours that turn `a` into `b` (optimal string alignment): a swap is one typo, as in
// --tiemout.
std::size_t typo_distance(std::string_view a, std::string_view b) {
    std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
    for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
    for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i)
        for (std::size_t j = 1; j <= b.size(); ++j) {
            d[i][j] = std::min(
                {d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    return d[a.size()][b.size()];
}

// The names `wrong` is most likely a typo of, compared without leading dashes: the nearest,
// when at most (length + 1) / 3 typos away (none for one character, 1 for 2 to 4, 2 for 5 to 7,
// 3 for longer words), several when equally near; else the one name it is the start of (--time
// for --timeout).
std::vector<std::string> near_names(std::string_view wrong, const std::vector<std::string>& names) {
    auto bare = [](std::string_view s) { return s.substr(std::min(s.find_first_not_of('-'), s.size())); };
    const std::string_view w = bare(wrong);
    const std::size_t allowed = std::min<std::size_t>((w.size() + 1) / 3, 3);
    std::vector<std::string> best;
    std::size_t best_d = allowed + 1;
    for (const auto& n : names) {
        std::size_t d = typo_distance(w, bare(n));
        if (d > allowed) continue;
        if (d < best_d) best.clear(), best_d = d;
        if (d == best_d && std::find(best.begin(), best.end(), n) == best.end()) best.push_back(n);
    }
    if (!best.empty() || w.size() < 2) return best;
    for (const auto& n : names)
        if (bare(n).starts_with(w)) best.push_back(n);
    if (best.size() > 1) best.clear();
    return best;
}

} // namespace drover::cli
