#include "parse.hpp"

#include <signal.h>
#include <string.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

#include "drover/command.hpp"

namespace drover::cli {

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view s) {
    if (s.empty()) return std::nullopt;
    std::size_t unit_at = 0;
    while (unit_at < s.size() && (std::isdigit(static_cast<unsigned char>(s[unit_at])) || s[unit_at] == '.')) ++unit_at;
    if (unit_at == 0) return std::nullopt;
    double v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + unit_at, v);
    if (ec != std::errc{} || ptr != s.data() + unit_at || !std::isfinite(v) || v < 0) return std::nullopt;
    std::string_view unit = s.substr(unit_at);
    double scale;
    if (unit.empty() || unit == "s") scale = 1e9;
    else if (unit == "ms") scale = 1e6;
    else if (unit == "us") scale = 1e3;
    else if (unit == "m") scale = 60e9;
    else if (unit == "h") scale = 3600e9;
    else return std::nullopt;
    double ns = v * scale;
    if (ns > 1e18) return std::nullopt; // ~31 years: a typo, not a timeout
    return std::chrono::nanoseconds(static_cast<long long>(ns));
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
    if (unit.empty() || unit == "b") shift = 0;
    else if (unit == "k" || unit == "kb" || unit == "kib") shift = 10;
    else if (unit == "m" || unit == "mb" || unit == "mib") shift = 20;
    else if (unit == "g" || unit == "gb" || unit == "gib") shift = 30;
    else return std::nullopt;
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

std::optional<std::pair<std::chrono::microseconds, std::chrono::microseconds>> parse_cpu_max(std::string_view s) {
    using std::chrono::microseconds;
    if (!s.empty() && s.back() == '%') {
        unsigned long pct = 0;
        auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size() - 1, pct);
        if (ec != std::errc{} || ptr != s.data() + s.size() - 1 || pct == 0 || pct > 100000) return std::nullopt;
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

} // namespace drover::cli
