// drover::escape: child output made safe for logs and terminals (reliability.md E4).
#include "drover/escape.hpp"

#include <doctest/doctest.h>

#include <string>

using drover::escape;
using namespace std::string_literals;

TEST_SUITE("escape") {

    TEST_CASE("plain text and valid UTF-8 pass through") {
        CHECK(escape("hello, world 123 ~!@#$%^&*()") == "hello, world 123 ~!@#$%^&*()");
        CHECK(escape("caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80") ==
              "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80");
        CHECK(escape("") == "");
    }

    TEST_CASE("controls, ESC sequences and backslashes are shown, never sent") {
        CHECK(escape("a\nb\r\tc") == "a\\nb\\r\\tc");
        CHECK(escape("\x1b[31mred\x1b[0m") == "\\x1B[31mred\\x1B[0m");
        CHECK(escape("\x1b]0;title\x07") == "\\x1B]0;title\\x07");
        CHECK(escape("nul\0byte"s) == "nul\\x00byte");
        CHECK(escape("del\x7f") == "del\\x7F");
        CHECK(escape("back\\slash") == "back\\\\slash");
    }

    TEST_CASE("C1 controls and bidi overrides are made visible") {
        CHECK(escape("\xC2\x9B"
                     "31m") == "\\u{009B}31m"); // CSI as C1
        CHECK(escape("a\xE2\x80\xAE"
                     "b") == "a\\u{202E}b");                                 // RIGHT-TO-LEFT OVERRIDE
        CHECK(escape("\xE2\x81\xA6x\xE2\x81\xA9") == "\\u{2066}x\\u{2069}"); // isolates
        CHECK(escape("\xE2\x80\x8F") == "\\u{200F}");
        CHECK(escape("\xD8\x9C") == "\\u{061C}");
    }

    TEST_CASE("invalid UTF-8 is shown byte by byte") {
        CHECK(escape("\x80") == "\\x80");                            // stray continuation
        CHECK(escape("\xC0\xAF") == "\\xC0\\xAF");                   // overlong '/'
        CHECK(escape("\xED\xA0\x80") == "\\xED\\xA0\\x80");          // surrogate
        CHECK(escape("\xF4\x90\x80\x80") == "\\xF4\\x90\\x80\\x80"); // above U+10FFFF
        CHECK(escape("ab\xE6\x97") == "ab\\xE6\\x97");               // truncated
        CHECK(escape("\xFF\xFE") == "\\xFF\\xFE");
    }

    TEST_CASE("the result never holds a control byte, whatever the input") {
        std::string all;
        for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
        for (int i = 0; i < 256; ++i) all += static_cast<char>(255 - i);
        std::string e = escape(all);
        for (unsigned char c : e) CHECK((c >= 0x20 && c != 0x7F));
        CHECK(escape(e).size() >= e.size()); // escaping is stable to apply again (and visible)
    }
}

TEST_SUITE("escape") {
    TEST_CASE("to_valid_utf8 keeps valid text and controls, replaces each invalid byte with U+FFFD") {
        bool replaced = true;
        CHECK(drover::to_valid_utf8("plain \x1b[2J \xe2\x80\xae \xc3\xa9", &replaced) ==
              "plain \x1b[2J \xe2\x80\xae \xc3\xa9");
        CHECK_FALSE(replaced);
        CHECK(drover::to_valid_utf8("a\xff"
                                    "b\xc0\xaf"
                                    "c\xed\xa0\x80",
                                    &replaced) == "a\xEF\xBF\xBD"
                                                  "b\xEF\xBF\xBD\xEF\xBF\xBD"
                                                  "c\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
        CHECK(replaced);
        CHECK(drover::to_valid_utf8("trunc\xe2\x80") == "trunc\xEF\xBF\xBD\xEF\xBF\xBD");
    }
} // TEST_SUITE
