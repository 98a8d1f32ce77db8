// parse_size (--max-output, --memory-max) and parse_pty_size (--pty-size).
#include "parse.hpp"

#include <limits>
#include <string>
#include <utility>

#include "fuzz.hpp"

using drover::cli::parse_pty_size;
using drover::cli::parse_size;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view s = fuzz::as_text(data, size);
    const auto v = parse_size(s);
    // The byte count, written out, is the same size.
    if (v) FUZZ_CHECK(parse_size(std::to_string(*v)) == v);

    // A bare number with each unit: shifted by the unit's power of 1024, or empty on overflow.
    if (!s.empty() && s.size() <= 64 && s.find_first_not_of("0123456789") == std::string_view::npos) {
        const std::string n(s);
        const std::pair<const char*, unsigned> units[] = {{"b", 0},  {"k", 10},   {"KB", 10}, {"kiB", 10},
                                                          {"M", 20}, {"mib", 20}, {"G", 30},  {"GiB", 30}};
        for (auto [unit, shift] : units) {
            auto u = parse_size(n + unit);
            if (v && *v <= (std::numeric_limits<std::size_t>::max() >> shift))
                FUZZ_CHECK(u && *u == *v << shift);
            else
                FUZZ_CHECK(!u);
        }
    }

    if (auto p = parse_pty_size(s)) {
        const auto [rows, cols] = *p;
        FUZZ_CHECK(rows >= 1 && rows <= 10000 && cols >= 1 && cols <= 10000);
        FUZZ_CHECK(parse_pty_size(std::to_string(rows) + "x" + std::to_string(cols)) == p);
    }
    return 0;
}
