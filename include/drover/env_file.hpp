// drover: environment files (a strict dotenv format).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "drover/error.hpp"

namespace drover {

/// A syntax error or read failure in an environment file. `what()` is "FILE:LINE: MESSAGE", or
/// "FILE: MESSAGE" when the file could not be read (then `line()` is 0). `code()` is
/// `std::errc::invalid_argument` for a syntax error, `std::errc::file_too_large` for a file over
/// 1 MiB, else the errno of the failed read.
class env_file_error : public boost::system::system_error {
public:
    env_file_error(error_code ec, std::string file, std::size_t line, const std::string& message)
        : boost::system::system_error(ec, message),
          text_(file + (line != 0 ? ":" + std::to_string(line) : std::string()) + ": " + message),
          file_(std::move(file)), line_(line) {}
    const char* what() const noexcept override { return text_.c_str(); }
    const std::string& file() const noexcept { return file_; }
    std::size_t line() const noexcept { return line_; }

private:
    std::string text_;
    std::string file_;
    std::size_t line_;
};

/// The variables of an environment file, in file order (a key may repeat: apply in order, the
/// last wins). The format, strictly:
/// - one `KEY=VALUE` per line; blank lines and lines starting with `#` are skipped; an optional
///   `export ` prefix is accepted; CRLF line ends are accepted;
/// - KEY is `[A-Za-z_][A-Za-z0-9_]*`, with no space before `=`;
/// - VALUE is unquoted (no spaces, quotes or backslashes; `#` only at its end after a space
///   starts a comment), `'single quoted'` (taken literally), or `"double quoted"` (escapes
///   `\\` `\"` `\n` `\t` `\r` `\$` only); nothing but a comment may follow a quoted value;
///   values never span lines;
/// - nothing is expanded: `$HOME` is five characters;
/// - a NUL byte anywhere is an error.
/// Throws `env_file_error` with the line and a suggestion.
std::vector<std::pair<std::string, std::string>> parse_env_file(std::string_view text,
                                                                const std::string& file_name);

/// Reads and parses `file` (at most 1 MiB).
std::vector<std::pair<std::string, std::string>> read_env_file(const std::filesystem::path& file);

} // namespace drover
