// parse_duration (--timeout, --grace, --drain-grace, ps --interval) and parse_cpu_max.
#include "parse.hpp"

#include <chrono>
#include <string>

#include "fuzz.hpp"

using namespace std::chrono;
using drover::cli::parse_cpu_max;
using drover::cli::parse_duration;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view s = fuzz::as_text(data, size);
    const auto d = parse_duration(s);
    if (d) FUZZ_CHECK(d->count() >= 0 && d->count() <= 1'000'000'000'000'000'000LL);

    // A bare number: seconds, so "N" == "Ns"; a larger unit never gives a shorter duration,
    // and once the limit is passed it stays passed.
    if (!s.empty() && s.size() <= 64 && s.find_first_not_of("0123456789.") == std::string_view::npos) {
        const std::string n(s);
        FUZZ_CHECK(parse_duration(n + "s") == d);
        std::optional<nanoseconds> prev;
        bool failed = false;
        for (const char* unit : {"us", "ms", "s", "m", "h"}) {
            auto v = parse_duration(n + unit);
            if (failed) FUZZ_CHECK(!v);
            if (v && prev) FUZZ_CHECK(*prev <= *v);
            failed = !v;
            prev = v;
        }
        // Up to 9 digits of whole seconds: exact.
        if (s.size() <= 9 && s.find('.') == std::string_view::npos)
            FUZZ_CHECK(d && *d == seconds(std::stoll(n)));
    }

    if (auto c = parse_cpu_max(s)) {
        const auto [quota, period] = *c;
        FUZZ_CHECK(quota >= milliseconds(1) && period >= milliseconds(1) && period <= seconds(1));
        if (s.back() == '%') FUZZ_CHECK(period == milliseconds(100) && quota.count() % 1000 == 0);
    }
    return 0;
}
