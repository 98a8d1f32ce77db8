#include "drover/exit_status.hpp"

#include <string.h>
#include <sys/wait.h>

#include <ostream>

#include <fmt/format.h>

#include "detail/compat.hpp"

namespace drover {

exit_status exit_status::from_wait_status(int status) noexcept {
    if (WIFEXITED(status)) return exited(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return signaled(WTERMSIG(status), WCOREDUMP(status));
    return unknown();
}

std::string exit_status::to_string() const {
    switch (kind_) {
    case kind::exited:
        return "exited with code " + std::to_string(value_);
    case kind::signaled: {
        std::string s = "killed by signal " + std::to_string(value_);
        const char* abbrev = detail::signal_abbrev(value_);
        if (abbrev != nullptr || core_) {
            s += " (";
            if (abbrev != nullptr) s += std::string("SIG") + abbrev;
            if (core_) s += abbrev != nullptr ? ", core dumped" : "core dumped";
            s += ")";
        }
        return s;
    }
    case kind::unknown:
        break;
    }
    return "exit status unavailable (reaped elsewhere)";
}

std::ostream& operator<<(std::ostream& os, const exit_status& s) {
    return os << s.to_string();
}

} // namespace drover

fmt::format_context::iterator fmt::formatter<drover::exit_status>::format(const drover::exit_status& s,
                                                                          fmt::format_context& ctx) const {
    std::string text = s.to_string();
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(text), ctx);
}
