// Names from the command line: parse_namespaces (--unshare), capability_number (--cap-bound),
// rlimit_resource (--rlimit NAME).
#include <string>

#include "drover/command.hpp"
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view s = fuzz::as_text(data, size);

    std::string bad = "UNSET"; // never a lower-cased name
    if (auto ns = drover::parse_namespaces(s, &bad)) {
        // A list names at least one namespace; its canonical spelling gives the same set.
        FUZZ_CHECK(drover::any(*ns));
        FUZZ_CHECK(drover::parse_namespaces(drover::to_string(*ns)) == ns);
        FUZZ_CHECK(bad == "UNSET");
    } else {
        FUZZ_CHECK(bad != "UNSET" && bad.size() <= s.size() && bad.find(',') == std::string::npos);
    }

    if (auto cap = drover::capability_number(s)) {
        const auto name = drover::capability_name(*cap);
        FUZZ_CHECK(!name.empty() && drover::capability_number(name) == cap);
        FUZZ_CHECK(drover::capability_number(name.substr(4)) == cap); // without "cap_"
    }

    if (auto r = drover::rlimit_resource(s)) {
        const auto name = drover::rlimit_name(*r);
        FUZZ_CHECK(!name.empty() && drover::rlimit_resource(name) == r);
        FUZZ_CHECK(drover::rlimit_resource("RLIMIT_" + std::string(name)) == r);
    }
    return 0;
}
