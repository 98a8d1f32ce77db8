// escape (every sink that prints child output) and to_valid_utf8 (JSON output).
#include "drover/escape.hpp"

#include <string>

#include "fuzz.hpp"

namespace {

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1; // escape writes upper-case hex only
}

void put_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

/// The inverse of drover::escape, per its documented forms; aborts on anything else.
std::string unescape(std::string_view e) {
    std::string out;
    for (std::size_t i = 0; i < e.size();) {
        if (e[i] != '\\') {
            out += e[i++];
            continue;
        }
        FUZZ_CHECK(i + 1 < e.size());
        const char k = e[i + 1];
        if (k == '\\' || k == 'n' || k == 'r' || k == 't') {
            out += k == '\\' ? '\\' : k == 'n' ? '\n' : k == 'r' ? '\r' : '\t';
            i += 2;
        } else if (k == 'x') {
            FUZZ_CHECK(i + 3 < e.size());
            const int hi = hex_digit(e[i + 2]), lo = hex_digit(e[i + 3]);
            FUZZ_CHECK(hi >= 0 && lo >= 0);
            out += static_cast<char>(hi * 16 + lo);
            i += 4;
        } else {
            FUZZ_CHECK(k == 'u' && i + 2 < e.size() && e[i + 2] == '{');
            std::uint32_t cp = 0;
            std::size_t j = i + 3, digits = 0;
            for (; j < e.size() && e[j] != '}'; ++j, ++digits) {
                const int h = hex_digit(e[j]);
                FUZZ_CHECK(h >= 0 && digits < 6);
                cp = cp * 16 + static_cast<std::uint32_t>(h);
            }
            FUZZ_CHECK(j < e.size() && digits >= 4);
            put_utf8(out, cp);
            i = j + 1;
        }
    }
    return out;
}

/// Whether valid UTF-8 text holds a control character: C0, DEL, C1, or an invisible bidi control.
bool has_control(std::string_view s) {
    for (std::size_t i = 0; i < s.size(); ++i) {
        const auto b = static_cast<unsigned char>(s[i]);
        if (b < 0x20 || b == 0x7F) return true;
        if (b == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) <= 0x9F)
            return true; // U+0080..9F
    }
    for (std::string_view bidi : {"\u061C", "\u200E", "\u200F", "\u202A", "\u202B", "\u202C", "\u202D",
                                  "\u202E", "\u2066", "\u2067", "\u2068", "\u2069"})
        if (s.find(bidi) != std::string_view::npos) return true;
    return false;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view s = fuzz::as_text(data, size);

    const std::string e = drover::escape(s);
    FUZZ_CHECK(fuzz::valid_utf8(e));
    FUZZ_CHECK(!has_control(e));
    FUZZ_CHECK(unescape(e) == s); // nothing is lost: the escaped text says exactly what was there
    if (s.find_first_of("\\") == std::string_view::npos && fuzz::valid_utf8(s) && !has_control(s))
        FUZZ_CHECK(e == s); // text that needs nothing gets nothing

    bool replaced = true;
    const std::string u = drover::to_valid_utf8(s, &replaced);
    FUZZ_CHECK(fuzz::valid_utf8(u));
    FUZZ_CHECK(replaced == (u != s));
    FUZZ_CHECK(replaced == !fuzz::valid_utf8(s));
    bool again = true;
    FUZZ_CHECK(drover::to_valid_utf8(u, &again) == u && !again);
    return 0;
}
