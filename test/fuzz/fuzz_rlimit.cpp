// --rlimit NAME=SOFT[:HARD] (parse_rlimit_spec, parse_rlim), --umask (parse_umask),
// --pids-max (parse_positive), --groups/--cap-bound lists (split_list).
#include "parse.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <string>

#include "drover/command.hpp"
#include "fuzz.hpp"

using namespace drover::cli;

namespace {
std::string limit_text(rlim_t v) {
    return v == RLIM_INFINITY ? "unlimited" : std::to_string(v);
}
std::string octal(unsigned v) {
    std::string out;
    do out.insert(out.begin(), static_cast<char>('0' + (v & 7)));
    while ((v >>= 3) != 0);
    return out;
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view s = fuzz::as_text(data, size);

    if (auto r = parse_rlimit_spec(s)) {
        // The resource's own name and the values written out give the same spec back.
        const auto name = drover::rlimit_name(r->resource);
        FUZZ_CHECK(!name.empty());
        auto again =
            parse_rlimit_spec(std::string(name) + "=" + limit_text(r->soft) + ":" + limit_text(r->hard));
        FUZZ_CHECK(again && again->resource == r->resource && again->soft == r->soft &&
                   again->hard == r->hard);
        // Without ":HARD", hard is soft: never above it.
        if (s.find(':') == std::string_view::npos) FUZZ_CHECK(r->hard == r->soft && !soft_above_hard(*r));
    }
    if (auto v = parse_rlim(s)) FUZZ_CHECK(parse_rlim(limit_text(*v)) == v);

    if (auto m = parse_umask(s)) {
        FUZZ_CHECK(*m <= 0777);
        FUZZ_CHECK(parse_umask(octal(*m)) == m);
    }
    if (auto n = parse_positive(s)) {
        FUZZ_CHECK(*n > 0);
        FUZZ_CHECK(parse_positive(std::to_string(*n)) == n);
    }

    const std::string list(s);
    const auto items = split_list(list);
    if (list.empty() || list == "none") {
        FUZZ_CHECK(items.empty());
    } else {
        // The items, joined with commas again, are the list.
        FUZZ_CHECK(items.size() == static_cast<std::size_t>(std::count(list.begin(), list.end(), ',')) + 1);
        std::string joined;
        for (std::size_t k = 0; k < items.size(); ++k) joined += (k == 0 ? "" : ",") + items[k];
        FUZZ_CHECK(joined == list);
    }
    return 0;
}
