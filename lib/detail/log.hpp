// drover (private): the library's logging. The library reports through return values and
// errors; it logs at debug level only, through the logger named "drover" if the program has
// registered one, and never installs sinks.
#pragma once

#include <utility>

#include <spdlog/spdlog.h>

namespace drover::detail {

template <typename... Args>
void log_debug(fmt::format_string<Args...> fmt, Args&&... args) {
    if (auto l = spdlog::get("drover")) l->debug(fmt, std::forward<Args>(args)...);
}

} // namespace drover::detail
