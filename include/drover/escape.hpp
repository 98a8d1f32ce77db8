// drover: making child output safe to show in drover's own logs and terminals.
#pragma once

#include <string>
#include <string_view>

namespace drover {

/// Returns `bytes` (child output, or any untrusted text) in a form that cannot restyle,
/// reorder or corrupt a log line or a terminal, and that still shows what was there:
/// - printable ASCII and valid UTF-8 text pass through unchanged; a backslash is doubled;
/// - `\n`, `\r`, `\t` become `\n`, `\r`, `\t` (two characters), other C0 controls, ESC and DEL
///   become `\xNN` (so no escape sequence reaches a terminal);
/// - C1 controls (U+0080..U+009F) and the invisible bidirectional controls (U+061C, U+200E,
///   U+200F, U+202A..U+202E, U+2066..U+2069: "Trojan Source") become `\u{XXXX}`;
/// - bytes that are not valid UTF-8 (stray continuation bytes, overlong forms, surrogates,
///   code points above U+10FFFF, truncated sequences) become `\xNN`, one per byte.
/// The result is valid UTF-8 and contains no control character. Every sink in drover that
/// prints child output goes through this function.
std::string escape(std::string_view bytes);

/// `bytes` as valid UTF-8, for formats that require Unicode text (JSON): every byte that is not
/// part of a valid sequence becomes U+FFFD; everything else, controls included, is kept (the
/// format's own escaping handles those). `*replaced`, if given, says whether any byte was.
std::string to_valid_utf8(std::string_view bytes, bool* replaced = nullptr);

/// Serialized JSON (as Boost.JSON or any JSON writer leaves it) with DEL, the C1 controls and the
/// bidirectional controls written as \uXXXX too: JSON requires escaping the C0 controls only, and
/// a terminal showing the text may act on the others. Every JSON text drover writes that can
/// hold a child's bytes goes through this.
std::string harden_json(std::string serialized);

} // namespace drover
