// parse_env_file (--env-file, command::env_file): the strict dotenv format.
#include "drover/env_file.hpp"

#include <algorithm>
#include <string>

#include "fuzz.hpp"

namespace {

bool valid_key(const std::string& k) {
    if (k.empty() || !(std::isalpha(static_cast<unsigned char>(k[0])) || k[0] == '_')) return false;
    return std::all_of(k.begin(), k.end(),
                       [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

/// VALUE as a double-quoted value the format reads back as VALUE.
std::string quoted(const std::string& v) {
    std::string out = "\"";
    for (char c : v) {
        switch (c) {
        case '\\':
            out += "\\\\";
            break;
        case '"':
            out += "\\\"";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\r':
            out += "\\r";
            break;
        default:
            out += c;
        }
    }
    return out + "\"";
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view s = fuzz::as_text(data, size);
    const std::size_t lines = static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')) + 1;
    try {
        const auto vars = drover::parse_env_file(s, "fuzz.env");
        FUZZ_CHECK(vars.size() <= lines);
        // Every variable written back as KEY="VALUE" (with `export ` on every other line)
        // reads back the same, in the same order.
        std::string again;
        for (std::size_t i = 0; i < vars.size(); ++i) {
            const auto& [k, v] = vars[i];
            FUZZ_CHECK(valid_key(k));
            FUZZ_CHECK(v.find('\0') == std::string::npos);
            again += (i % 2 ? "export " : "") + k + "=" + quoted(v) + "\n";
        }
        FUZZ_CHECK(drover::parse_env_file(again, "again.env") == vars);
    } catch (const drover::env_file_error& e) {
        // The error names the file given (not "again.env": the round trip must not fail) and a
        // line that exists.
        FUZZ_CHECK(e.file() == "fuzz.env");
        FUZZ_CHECK(e.line() >= 1 && e.line() <= lines);
        const std::string what = e.what();
        FUZZ_CHECK(what.rfind("fuzz.env:" + std::to_string(e.line()) + ": ", 0) == 0);
    }
    return 0;
}
