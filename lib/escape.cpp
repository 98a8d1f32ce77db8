#include "drover/escape.hpp"

#include <cstdint>
#include <cstdio>

namespace drover {

namespace {

constexpr char hex[] = "0123456789ABCDEF";

void put_byte_escape(std::string& out, unsigned char b) {
    out += "\\x";
    out += hex[b >> 4];
    out += hex[b & 0xF];
}

void put_code_point_escape(std::string& out, std::uint32_t cp) {
    out += "\\u{";
    char buf[8];
    int n = 0;
    do {
        buf[n++] = hex[cp & 0xF];
        cp >>= 4;
    } while (cp != 0);
    while (n < 4) buf[n++] = '0';
    while (n > 0) out += buf[--n];
    out += '}';
}

bool invisible_control(std::uint32_t cp) {
    return (cp >= 0x80 && cp <= 0x9F) || cp == 0x061C || cp == 0x200E || cp == 0x200F ||
           (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

/// Length of the valid UTF-8 sequence at s[i] and its code point, or 0 if it is not valid.
std::size_t decode(std::string_view s, std::size_t i, std::uint32_t& cp) {
    auto b = static_cast<unsigned char>(s[i]);
    std::size_t len;
    std::uint32_t min;
    if (b >= 0xC2 && b <= 0xDF)
        len = 2, cp = b & 0x1F, min = 0x80;
    else if (b >= 0xE0 && b <= 0xEF)
        len = 3, cp = b & 0x0F, min = 0x800;
    else if (b >= 0xF0 && b <= 0xF4)
        len = 4, cp = b & 0x07, min = 0x10000;
    else
        return 0;
    if (i + len > s.size()) return 0;
    for (std::size_t k = 1; k < len; ++k) {
        auto c = static_cast<unsigned char>(s[i + k]);
        if ((c & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (c & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

} // namespace

std::string escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        auto b = static_cast<unsigned char>(s[i]);
        if (b < 0x80) {
            switch (b) {
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (b < 0x20 || b == 0x7F)
                    put_byte_escape(out, b);
                else
                    out += static_cast<char>(b);
            }
            ++i;
            continue;
        }
        std::uint32_t cp = 0;
        std::size_t len = decode(s, i, cp);
        if (len == 0) {
            put_byte_escape(out, b);
            ++i;
        } else if (invisible_control(cp)) {
            put_code_point_escape(out, cp);
            i += len;
        } else {
            out.append(s.substr(i, len));
            i += len;
        }
    }
    return out;
}

std::string to_valid_utf8(std::string_view s, bool* replaced) {
    std::string out;
    out.reserve(s.size());
    bool any = false;
    for (std::size_t i = 0; i < s.size();) {
        if (static_cast<unsigned char>(s[i]) < 0x80) {
            out += s[i++];
            continue;
        }
        std::uint32_t cp = 0;
        std::size_t len = decode(s, i, cp);
        if (len == 0) {
            out += "\xEF\xBF\xBD"; // U+FFFD
            any = true;
            ++i;
        } else {
            out.append(s.substr(i, len));
            i += len;
        }
    }
    if (replaced) *replaced = any;
    return out;
}

// Only string contents can hold these sequences, and serialized JSON is valid UTF-8, so matching
// the encoded sequences byte-wise is exact.
std::string harden_json(std::string s) {
    auto needs = [](const std::string& x, std::size_t i, std::size_t& len, unsigned& cp) {
        auto b = [&](std::size_t k) { return i + k < x.size() ? static_cast<unsigned char>(x[i + k]) : 0u; };
        if (b(0) == 0x7F) return len = 1, cp = 0x7F, true;
        if (b(0) == 0xC2 && b(1) >= 0x80 && b(1) <= 0x9F) return len = 2, cp = b(1), true;
        if (b(0) == 0xD8 && b(1) == 0x9C) return len = 2, cp = 0x061C, true;
        if (b(0) == 0xE2 && b(1) == 0x80 && (b(2) == 0x8E || b(2) == 0x8F || (b(2) >= 0xAA && b(2) <= 0xAE)))
            return len = 3, cp = 0x2000u + (b(2) - 0x80), true;
        if (b(0) == 0xE2 && b(1) == 0x81 && b(2) >= 0xA6 && b(2) <= 0xA9)
            return len = 3, cp = 0x2040u + (b(2) - 0x80), true;
        return false;
    };
    std::string out;
    std::size_t done = 0;
    for (std::size_t i = 0; i < s.size();) {
        std::size_t len = 0;
        unsigned cp = 0;
        if (!needs(s, i, len, cp)) {
            ++i;
            continue;
        }
        char esc[8];
        std::snprintf(esc, sizeof esc, "\\u%04X", cp);
        out.append(s, done, i - done).append(esc);
        i += len;
        done = i;
    }
    if (done == 0) return s;
    out.append(s, done, std::string::npos);
    return out;
}

} // namespace drover
