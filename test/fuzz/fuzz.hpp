// Shared by the libFuzzer targets: a property check that aborts (libFuzzer then saves the
// input as a crash artifact) and a strict UTF-8 validator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

/// Aborts with the failed condition when a property does not hold.
#define FUZZ_CHECK(cond)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            std::fprintf(stderr, "fuzz property failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);           \
            std::abort();                                                                                    \
        }                                                                                                    \
    } while (0)

namespace fuzz {

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

/// Whether `s` is valid UTF-8 (no overlong forms, surrogates or code points above U+10FFFF),
/// written independently of drover's decoder so the two check each other.
inline bool valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        auto b = static_cast<unsigned char>(s[i]);
        if (b < 0x80) {
            ++i;
            continue;
        }
        int n;
        std::uint32_t cp;
        if ((b & 0xE0) == 0xC0)
            n = 1, cp = b & 0x1F;
        else if ((b & 0xF0) == 0xE0)
            n = 2, cp = b & 0x0F;
        else if ((b & 0xF8) == 0xF0)
            n = 3, cp = b & 0x07;
        else
            return false;
        if (i + static_cast<std::size_t>(n) >= s.size()) return false; // truncated
        for (int k = 1; k <= n; ++k) {
            auto c = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
            if ((c & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (c & 0x3F);
        }
        const std::uint32_t min = n == 1 ? 0x80 : n == 2 ? 0x800 : 0x10000;
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += static_cast<std::size_t>(n) + 1;
    }
    return true;
}

} // namespace fuzz
