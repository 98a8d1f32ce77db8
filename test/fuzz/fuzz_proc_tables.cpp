// The other /proc/<pid> files drover inspect shows: limits (parse_limits), net/dev
// (parse_net_dev), cgroup (parse_proc_cgroup), cmdline (split_cmdline), ns/* links
// (parse_ns_link).
#include <sys/resource.h>

#include <algorithm>
#include <string>

#include "detail/proc_parse.hpp"
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view s = fuzz::as_text(data, size);
    const std::size_t lines = static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')) + 1;

    std::vector<drover::limit_value> limits;
    if (drover::detail::parse_limits(s, limits)) {
        FUZZ_CHECK(limits.size() >= RLIMIT_NLIMITS && limits.size() < lines);
        for (std::size_t r = 0; r < RLIMIT_NLIMITS; ++r) FUZZ_CHECK(!limits[r].name.empty());
    }

    std::vector<drover::net_interface> ifs;
    if (drover::detail::parse_net_dev(s, ifs)) FUZZ_CHECK(ifs.size() + 2 <= lines || ifs.empty());

    if (auto cg = drover::detail::parse_proc_cgroup(s)) {
        // The path follows a "0::" that starts a line, through to the end (less one newline).
        const std::string line = "0::" + *cg;
        const bool newline_dropped = !s.ends_with(line);
        FUZZ_CHECK(!newline_dropped || s.ends_with(line + "\n"));
        const std::size_t at = s.size() - line.size() - (newline_dropped ? 1 : 0);
        FUZZ_CHECK(at == 0 || s[at - 1] == '\n');
        // ... the first such line.
        if (at != 0) FUZZ_CHECK(!s.starts_with("0::") && s.find("\n0::") == at - 1);
    }

    const auto words = drover::detail::split_cmdline(s);
    std::string joined;
    for (std::size_t i = 0; i < words.size(); ++i) joined += (i == 0 ? "" : std::string(1, '\0')) + words[i];
    FUZZ_CHECK(joined == s || joined + '\0' == s);

    if (auto ino = drover::detail::parse_ns_link(s))
        FUZZ_CHECK(s.find(std::to_string(*ino)) != std::string_view::npos);
    return 0;
}
