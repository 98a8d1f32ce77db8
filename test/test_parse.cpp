// The value parsers of the drover program (tools/drover/parse.cpp): durations as --timeout,
// --grace, --drain-grace and ps --interval read them, and how drover echoes one.
#include "../tools/drover/parse.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <string>

using namespace std::chrono;
using drover::cli::format_duration;
using drover::cli::max_duration;
using drover::cli::parse_duration;
using drover::cli::read_duration;

TEST_SUITE("parse") {

    TEST_CASE("a duration is a decimal number with an optional unit, seconds by default") {
        CHECK(parse_duration("0") == nanoseconds(0));
        CHECK(parse_duration("10") == seconds(10));
        CHECK(parse_duration("10s") == seconds(10));
        CHECK(parse_duration("250ms") == milliseconds(250));
        CHECK(parse_duration("250us") == microseconds(250));
        CHECK(parse_duration("7ns") == nanoseconds(7));
        CHECK(parse_duration("2m") == minutes(2));
        CHECK(parse_duration("1h") == hours(1));
        CHECK(parse_duration("1d") == hours(24));
    }

    TEST_CASE("fractions are read exactly, with or without digits on either side of the point") {
        CHECK(parse_duration("1.5s") == milliseconds(1500));
        CHECK(parse_duration("1.5") == milliseconds(1500));
        CHECK(parse_duration(".1") == milliseconds(100));
        CHECK(parse_duration("5.") == seconds(5));
        CHECK(parse_duration("0.5m") == seconds(30));
        CHECK(parse_duration("0.1m") == seconds(6));
        CHECK(parse_duration("0.3") == milliseconds(300)); // not 299999999ns, as a double would give
        CHECK(parse_duration("1.5ms") == microseconds(1500));
        CHECK(parse_duration("0.0000000015") == nanoseconds(1)); // truncated to whole nanoseconds
        CHECK(parse_duration("1.000000000000000000000000000001s") == seconds(1));
    }

    TEST_CASE("a value above zero never reads as zero, however small") {
        CHECK(parse_duration("0.0000000001") == nanoseconds(1));
        CHECK(parse_duration("0.00000000000000000000000000000001d") == nanoseconds(1));
        CHECK(parse_duration("0.000") == nanoseconds(0));
        CHECK(parse_duration("0d") == nanoseconds(0));
    }

    TEST_CASE("a huge duration is clamped to 36500 days, and says so") {
        CHECK(max_duration == hours(24 * 36500));
        for (const char* s : {"36501d", "3153600001", "876001h", "99999999999999999999999999999999",
                              "1000000000000000000000h"}) {
            auto r = read_duration(s);
            CHECK(r.value == max_duration);
            CHECK(r.clamped);
        }
        auto exact = read_duration("36500d");
        CHECK(exact.value == max_duration);
        CHECK_FALSE(exact.clamped);
        CHECK_FALSE(read_duration("1d").clamped);
        CHECK(parse_duration("999999999") == seconds(999999999)); // nine digits of seconds: exact
    }

    TEST_CASE("what timeout(1) or strtod would take but drover refuses has a reason") {
        auto problem = [](const char* s) {
            auto r = read_duration(s);
            CHECK_FALSE(r.value);
            return r.problem;
        };
        CHECK(problem("") == "is empty");
        CHECK(problem("-1s") == "is negative");
        CHECK(problem("-0") == "is negative");
        CHECK(problem("+1").find("sign") != std::string::npos);
        CHECK(problem("nan").find("not a number") != std::string::npos);
        CHECK(problem("NaN").find("not a number") != std::string::npos);
        CHECK(problem("inf").find("not a number") != std::string::npos);
        CHECK(problem("Infinity").find("not a number") != std::string::npos);
        CHECK(problem("0x10").find("hexadecimal") != std::string::npos);
        CHECK(problem("1e3").find("exponent") != std::string::npos);
        CHECK(problem("1e3s").find("exponent") != std::string::npos);
        CHECK(problem(".").find("no digits") != std::string::npos);
        CHECK(problem(".s").find("no digits") != std::string::npos);
        CHECK(problem("1..2s").find("more than one '.'") != std::string::npos);
        CHECK(problem("1.2.3").find("more than one '.'") != std::string::npos);
        CHECK(problem(" 1").find("does not start with a number") != std::string::npos);
        CHECK(problem("soon").find("does not start with a number") != std::string::npos);
        CHECK(problem("1 s") == "has an unknown unit ' s'");
        CHECK(problem("10S").find("unknown unit 'S'") != std::string::npos);
        CHECK(problem("1y").find("unknown unit 'y'") != std::string::npos);
        CHECK(problem("1e").find("unknown unit 'e'") != std::string::npos);
        CHECK(problem("1,5").find("unknown unit ',5'") != std::string::npos);
        // The unit is the user's text: escaped before it lands in a message.
        CHECK(problem("1\x1b[2J").find("unknown unit '\\x1B[2J'") != std::string::npos);
    }

    TEST_CASE("an echoed duration always has a unit and reads back to itself") {
        CHECK(format_duration(nanoseconds(0)) == "0s");
        CHECK(format_duration(seconds(1)) == "1s");
        CHECK(format_duration(milliseconds(1500)) == "1.5s");
        CHECK(format_duration(milliseconds(500)) == "500ms");
        CHECK(format_duration(seconds(90)) == "90s");
        CHECK(format_duration(minutes(2)) == "2m");
        CHECK(format_duration(hours(1)) == "1h");
        CHECK(format_duration(hours(48)) == "2d");
        CHECK(format_duration(max_duration) == "36500d");
        CHECK(format_duration(microseconds(2500)) == "2.5ms");
        CHECK(format_duration(nanoseconds(2500)) == "2.5us");
        CHECK(format_duration(nanoseconds(7)) == "7ns");
        CHECK(format_duration(nanoseconds(1'000'000'001)) == "1.000000001s");
        for (auto d : {nanoseconds(1), nanoseconds(999), nanoseconds(1001), nanoseconds(123'456'789),
                       nanoseconds(86'399'999'999'999), nanoseconds(max_duration.count() - 1),
                       nanoseconds(max_duration)})
            CHECK(parse_duration(format_duration(d)) == d);
    }
}
