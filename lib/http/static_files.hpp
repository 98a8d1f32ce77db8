// The dashboard's files, embedded in libdrover-http at build time (embed_files.py writes their
// definition from lib/http/dashboard/). Private to libdrover-http.
#pragma once

#include <span>
#include <string_view>

namespace drover::detail {

struct static_file {
    std::string_view path; ///< "/", "/dashboard.js"...
    std::string_view type; ///< its Content-Type
    std::string_view data;
};

/// Every embedded file.
std::span<const static_file> static_files() noexcept;

} // namespace drover::detail
