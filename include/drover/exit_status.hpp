// drover: how a process ended, as a value.
#pragma once

#include <iosfwd>
#include <string>
#include <string_view>

#include <fmt/core.h>

namespace drover {

/// How a child process ended: exited with a code, killed by a signal, or unknown.
///
/// `unknown` means the status could not be learned: another party in this process reaped the
/// child (a host's `waitpid(-1, __WALL)`) on a kernel without `PIDFD_INFO_EXIT` (Linux < 6.15).
/// A default-constructed `exit_status` is `unknown`.
///
/// Raw `waitid`/`waitpid` data never crosses drover's API; this type is what it becomes.
class exit_status {
public:
    enum class kind : unsigned char { exited, signaled, unknown };

    constexpr exit_status() noexcept = default;

    /// The process called `exit(code)` (0..255).
    static constexpr exit_status exited(int code) noexcept { return {kind::exited, code, false}; }
    /// The process was killed by signal `sig`; `core_dumped` if the kernel wrote a core.
    static constexpr exit_status signaled(int sig, bool core_dumped = false) noexcept {
        return {kind::signaled, sig, core_dumped};
    }
    /// The status could not be learned (reaped elsewhere).
    static constexpr exit_status unknown() noexcept { return {}; }
    /// Decodes a `waitpid`-style status word (as `WIFEXITED` & co. do).
    static exit_status from_wait_status(int status) noexcept;

    constexpr kind type() const noexcept { return kind_; }
    constexpr bool is_exited() const noexcept { return kind_ == kind::exited; }
    constexpr bool is_signaled() const noexcept { return kind_ == kind::signaled; }
    constexpr bool is_unknown() const noexcept { return kind_ == kind::unknown; }
    /// True for `exited(0)` only.
    constexpr bool success() const noexcept { return kind_ == kind::exited && value_ == 0; }

    /// The exit code; -1 unless `is_exited()`.
    constexpr int code() const noexcept { return kind_ == kind::exited ? value_ : -1; }
    /// The terminating signal; 0 unless `is_signaled()`.
    constexpr int signal() const noexcept { return kind_ == kind::signaled ? value_ : 0; }
    constexpr bool core_dumped() const noexcept { return kind_ == kind::signaled && core_; }

    /// The number a shell would put in `$?`: the code, or 128 + signal; -1 for `unknown`.
    constexpr int shell_code() const noexcept {
        switch (kind_) {
        case kind::exited:
            return value_;
        case kind::signaled:
            return 128 + value_;
        default:
            return -1;
        }
    }

    /// "exited with code 3", "killed by signal 15 (SIGTERM)",
    /// "killed by signal 11 (SIGSEGV, core dumped)", "exit status unavailable (reaped elsewhere)".
    std::string to_string() const;

    friend constexpr bool operator==(const exit_status&, const exit_status&) noexcept = default;

private:
    constexpr exit_status(kind k, int v, bool core) noexcept : kind_(k), value_(v), core_(core) {}

    kind kind_ = kind::unknown;
    int value_ = 0;
    bool core_ = false;
};

std::ostream& operator<<(std::ostream& os, const exit_status& s);

} // namespace drover

/// Formats like `to_string()`, honouring width, fill and alignment (`{:>30}`). Defined in the
/// library, so this header needs only <fmt/core.h>.
template <>
struct fmt::formatter<drover::exit_status> : fmt::formatter<fmt::string_view> {
    fmt::format_context::iterator format(const drover::exit_status& s, fmt::format_context& ctx) const;
};
