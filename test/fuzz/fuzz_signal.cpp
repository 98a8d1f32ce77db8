// parse_signal (--stop-signal).
#include "parse.hpp"

#include <signal.h>
#include <string.h>

#include <string>

#include "fuzz.hpp"

using drover::cli::parse_signal;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto sig = parse_signal(std::string(fuzz::as_text(data, size)));
    if (!sig) return 0;
    FUZZ_CHECK(*sig >= 1 && *sig <= SIGRTMAX);
    // Its number and its names (any case, with or without SIG) give it back.
    FUZZ_CHECK(parse_signal(std::to_string(*sig)) == sig);
    if (const char* name = sigabbrev_np(*sig)) {
        FUZZ_CHECK(parse_signal(name) == sig);
        FUZZ_CHECK(parse_signal(std::string("SIG") + name) == sig);
        std::string lower = std::string("sig") + name;
        for (auto& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        FUZZ_CHECK(parse_signal(lower) == sig);
    }
    return 0;
}
