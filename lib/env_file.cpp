#include "drover/env_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "detail/posix.hpp"

namespace drover {
namespace {

bool key_start(char c) noexcept {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}
bool key_char(char c) noexcept {
    return key_start(c) || (c >= '0' && c <= '9');
}
bool blank(char c) noexcept {
    return c == ' ' || c == '\t';
}

std::string shown(char c) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
        return buf;
    }
    return std::string(1, c);
}

} // namespace

std::vector<std::pair<std::string, std::string>> parse_env_file(std::string_view text,
                                                                const std::string& file_name) {
    std::vector<std::pair<std::string, std::string>> out;
    std::size_t line_no = 0;
    while (!text.empty()) {
        ++line_no;
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        auto fail = [&](const std::string& msg) {
            throw env_file_error(make_error_code(boost::system::errc::invalid_argument), file_name, line_no,
                                 msg);
        };
        if (line.find('\0') != std::string_view::npos) fail("a NUL byte");
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        std::size_t i = 0;
        while (i < line.size() && blank(line[i])) ++i;
        if (i == line.size() || line[i] == '#') continue;
        if (line.substr(i, 7) == "export " || line.substr(i, 7) == "export\t") {
            i += 7;
            while (i < line.size() && blank(line[i])) ++i;
        }
        std::size_t k0 = i;
        if (i == line.size() || !key_start(line[i]))
            fail(i == line.size()
                     ? "'export' without a variable"
                     : "a variable name must start with a letter or '_', not '" + shown(line[i]) + "'");
        while (i < line.size() && key_char(line[i])) ++i;
        std::string key(line.substr(k0, i - k0));
        if (i == line.size())
            fail("'" + key + "' has no '=': write " + key + "=VALUE (or " + key + "= for empty)");
        if (blank(line[i])) {
            std::size_t j = i;
            while (j < line.size() && blank(line[j])) ++j;
            if (j < line.size() && line[j] == '=')
                fail("a space before '=' in '" + key + "': write " + key +
                     "=VALUE with no spaces around '='");
            fail("'" + key + "' is followed by a space, not '='");
        }
        if (line[i] != '=')
            fail("'" + shown(line[i]) + "' in the variable name '" + key + shown(line[i]) +
                 "...': names are letters, digits and '_'");
        ++i;
        std::string value;
        auto rest_is_comment = [&](std::size_t j, const char* after) {
            std::size_t k = j;
            while (k < line.size() && blank(line[k])) ++k;
            if (k == line.size()) return;
            if (line[k] == '#' && k > j) return;
            fail(std::string("unexpected '") + shown(line[k]) + "' after " + after + " of '" + key +
                 "' (only a '# comment' may follow, after a space)");
        };
        if (i < line.size() && line[i] == '\'') {
            auto close = line.find('\'', i + 1);
            if (close == std::string_view::npos)
                fail("the value of '" + key + "' has no closing single quote (values never span lines)");
            value.assign(line.substr(i + 1, close - i - 1));
            rest_is_comment(close + 1, "the quoted value");
        } else if (i < line.size() && line[i] == '"') {
            std::size_t j = i + 1;
            bool closed = false;
            for (; j < line.size(); ++j) {
                char c = line[j];
                if (c == '"') {
                    closed = true;
                    break;
                }
                if (c == '\\') {
                    if (j + 1 == line.size()) break;
                    char e = line[++j];
                    switch (e) {
                    case '\\':
                        value.push_back('\\');
                        break;
                    case '"':
                        value.push_back('"');
                        break;
                    case 'n':
                        value.push_back('\n');
                        break;
                    case 't':
                        value.push_back('\t');
                        break;
                    case 'r':
                        value.push_back('\r');
                        break;
                    case '$':
                        value.push_back('$');
                        break;
                    default:
                        fail("unknown escape '\\" + shown(e) + "' in the value of '" + key +
                             "' (known: \\\\ \\\" \\n \\t \\r \\$; use single quotes for a literal "
                             "backslash)");
                    }
                    continue;
                }
                value.push_back(c);
            }
            if (!closed)
                fail("the value of '" + key +
                     "' has no closing double quote (values never span lines; write \\n)");
            rest_is_comment(j + 1, "the quoted value");
        } else {
            std::size_t j = i;
            while (j < line.size() && !blank(line[j])) {
                char c = line[j];
                if (c == '"' || c == '\'' || c == '\\')
                    fail("'" + shown(c) + "' in the unquoted value of '" + key +
                         "': quote the value ('...' is taken literally)");
                if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
                    fail("a control character " + shown(c) + " in the value of '" + key + "'");
                ++j;
            }
            value.assign(line.substr(i, j - i));
            std::size_t k = j;
            while (k < line.size() && blank(line[k])) ++k;
            if (k < line.size() && line[k] != '#')
                fail("a space in the unquoted value of '" + key + "': quote the value, as " + key + "=\"" +
                     std::string(line.substr(i, std::min<std::size_t>(line.size() - i, 40))) + "\"");
        }
        out.emplace_back(std::move(key), std::move(value));
    }
    return out;
}

std::vector<std::pair<std::string, std::string>> read_env_file(const std::filesystem::path& file) {
    const std::string name = file.string();
    constexpr std::size_t max_size = 1 << 20;
    std::string text;
    bool too_big = false;
    if (int e = detail::read_file(name.c_str(), text, max_size + 1, &too_big); e != 0)
        throw env_file_error({e, boost::system::system_category()}, name, 0, std::strerror(e));
    if (too_big)
        throw env_file_error(make_error_code(boost::system::errc::file_too_large), name, 0,
                             "larger than 1 MiB: not an environment file");
    return parse_env_file(text, name);
}

} // namespace drover
