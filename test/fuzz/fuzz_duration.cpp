// parse_duration / read_duration (--timeout, --grace, --drain-grace, ps --interval),
// format_duration, and parse_cpu_max.
#include "parse.hpp"

#include <cctype>
#include <chrono>
#include <string>

#include "fuzz.hpp"

using namespace std::chrono;
using drover::cli::format_duration;
using drover::cli::max_duration;
using drover::cli::parse_cpu_max;
using drover::cli::parse_duration;
using drover::cli::read_duration;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view s = fuzz::as_text(data, size);
    const auto r = read_duration(s);
    const auto& d = r.value;
    FUZZ_CHECK(d == parse_duration(s));
    // Refused exactly when there is a reason; clamped only to the maximum.
    FUZZ_CHECK(d.has_value() == r.problem.empty());
    if (r.clamped) FUZZ_CHECK(d == max_duration);
    if (d) {
        FUZZ_CHECK(d->count() >= 0 && *d <= max_duration);
        // What drover echoes has a unit and reads back to the same value.
        const std::string shown = format_duration(*d);
        FUZZ_CHECK(!shown.empty() && !std::isdigit(static_cast<unsigned char>(shown.back())));
        FUZZ_CHECK(parse_duration(shown) == d);
    }

    // A number without a unit: seconds, so "N" == "Ns"; every unit is accepted (at most one
    // '.', at least one digit); a larger unit never gives a shorter duration, and once clamped
    // stays clamped; zero is zero in every unit and anything above it is above it in every unit.
    if (!s.empty() && s.size() <= 64 && s.find_first_not_of("0123456789.") == std::string_view::npos) {
        const std::string n(s);
        FUZZ_CHECK(parse_duration(n + "s") == d);
        const bool well_formed =
            n.find('.') == n.rfind('.') && n.find_first_of("0123456789") != std::string::npos;
        FUZZ_CHECK(d.has_value() == well_formed);
        std::optional<nanoseconds> prev;
        bool clamped = false;
        for (const char* unit : {"ns", "us", "ms", "s", "m", "h", "d"}) {
            auto v = read_duration(n + unit);
            FUZZ_CHECK(v.value.has_value() == well_formed);
            if (!v.value) continue;
            if (clamped) FUZZ_CHECK(v.clamped);
            if (prev) FUZZ_CHECK(*prev <= *v.value);
            FUZZ_CHECK((*v.value == nanoseconds::zero()) == (*d == nanoseconds::zero()));
            clamped = v.clamped;
            prev = v.value;
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
