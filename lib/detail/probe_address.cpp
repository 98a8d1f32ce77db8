// drover (private): the probe addresses a service's configuration gives ("host:port",
// "http://host:port/path"), parsed and checked apart from the probes themselves so that the
// parsers can be fuzzed without the library (docs/fuzzing.md).
#include "detail/probe.hpp"

#include <cctype>
#include <chrono>
#include <charconv>
#include <string>
#include <string_view>

#include <boost/asio/ip/address.hpp>
#include <fmt/core.h>

namespace asio = boost::asio;

namespace drover::detail {

namespace {

using clk = std::chrono::steady_clock;

/// Spaces and control characters: never valid in a URL or an address, and a sign of a typo
/// (or of an attempt to smuggle a header line into the request).
bool has_bad_char(std::string_view s) {
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f) return true;
    }
    return false;
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
    if (s.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
    return true;
}

bool parse_port(std::string_view text, std::string& port, std::string& error) {
    if (text.empty()) {
        error = "missing port";
        return false;
    }
    if (text.find_first_not_of("0123456789") != std::string_view::npos) {
        error = fmt::format("port '{}' is not a number", text);
        return false;
    }
    unsigned long value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || value == 0 || value > 65535) {
        error = fmt::format("port {} is out of range (1-65535)", text);
        return false;
    }
    port = std::to_string(value); // "080" is port 80
    return true;
}

/// Splits "host[:port]" / "[v6][:port]". The host comes back without brackets (what the
/// resolver takes); `port` is left alone when the text has none and it is optional.
bool split_authority(std::string_view text, bool port_required, std::string& host, std::string& port,
                     std::string& error) {
    std::string_view host_part, port_part;
    bool has_port = false;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos) {
            error = "missing ']' after the IPv6 address";
            return false;
        }
        host_part = text.substr(1, close - 1);
        const auto rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') {
                error = fmt::format("unexpected '{}' after ']'", rest);
                return false;
            }
            has_port = true;
            port_part = rest.substr(1);
        }
        if (host_part.empty()) {
            error = "empty host";
            return false;
        }
        boost::system::error_code ec;
        asio::ip::make_address_v6(std::string(host_part), ec);
        if (ec) {
            error = fmt::format("'[{}]' is not an IPv6 address", host_part);
            return false;
        }
    } else {
        const auto colon = text.find(':');
        host_part = text.substr(0, colon);
        if (colon != std::string_view::npos) {
            has_port = true;
            port_part = text.substr(colon + 1);
            if (port_part.find(':') != std::string_view::npos) {
                error = "an IPv6 address must be in brackets, like [::1]:80";
                return false;
            }
        }
        if (host_part.empty()) {
            error = "empty host";
            return false;
        }
        for (char c : host_part) {
            if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') {
                error = fmt::format("bad character '{}' in host '{}'", c, host_part);
                return false;
            }
        }
        // Only digits and dots is meant as an IPv4 address; catch "10.0.0.300" here rather
        // than as a name the resolver cannot find.
        if (host_part.find_first_not_of("0123456789.") == std::string_view::npos) {
            boost::system::error_code ec;
            asio::ip::make_address_v4(std::string(host_part), ec);
            if (ec) {
                error = fmt::format("'{}' is not an IPv4 address", host_part);
                return false;
            }
        }
    }
    std::string parsed_port = port;
    if (has_port) {
        if (!parse_port(port_part, parsed_port, error)) return false;
    } else if (port_required) {
        error = "missing port";
        return false;
    }
    host = std::string(host_part);
    port = std::move(parsed_port);
    return true;
}

} // namespace

std::string join_host_port(const std::string& host, const std::string& port) {
    if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
    return fmt::format("{}:{}", host, port);
}

bool parse_http_url(std::string_view url, http_url& out, std::string& error) {
    if (has_bad_char(url)) {
        error = "the URL contains a space or a control character";
        return false;
    }
    if (starts_with_nocase(url, "https://")) {
        error = "https is not supported; use http or a tcp probe";
        return false;
    }
    if (!starts_with_nocase(url, "http://")) {
        error = "not an http:// URL";
        return false;
    }
    const auto rest = url.substr(7);
    const auto end = rest.find_first_of("/?#");
    const auto authority = rest.substr(0, end);
    if (authority.find('@') != std::string_view::npos) {
        error = "user info ('user@') in the URL is not supported";
        return false;
    }
    http_url parsed;
    if (!split_authority(authority, false, parsed.host, parsed.port, error)) return false;
    auto target = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
    target = target.substr(0, target.find('#')); // a fragment is never sent
    if (target.empty())
        parsed.target = "/";
    else if (target.front() == '?')
        parsed.target = "/" + std::string(target);
    else
        parsed.target = std::string(target);
    out = std::move(parsed);
    return true;
}

bool parse_host_port(std::string_view address, std::string& host, std::string& port, std::string& error) {
    if (address.empty()) {
        error = "empty address";
        return false;
    }
    if (has_bad_char(address)) {
        error = "the address contains a space or a control character";
        return false;
    }
    if (address.find("://") != std::string_view::npos) {
        error = "a tcp probe's address is host:port, not a URL";
        return false;
    }
    return split_authority(address, true, host, port, error);
}

std::string probe_error(const probe& p) {
    if (p.timeout <= clk::duration::zero()) return "the probe's timeout must be positive";
    std::string error;
    switch (p.type) {
    case probe::kind::tcp: {
        std::string host, port;
        if (!parse_host_port(p.address, host, port, error))
            return fmt::format("tcp probe address '{}': {}", p.address, error);
        return {};
    }
    case probe::kind::http: {
        http_url url;
        if (!parse_http_url(p.address, url, error))
            return fmt::format("http probe URL '{}': {}", p.address, error);
        return {};
    }
    case probe::kind::exec:
        if (!p.program) return "an exec probe needs a program";
        if (p.program->program().empty()) return "an exec probe's command has no program";
        return {};
    }
    return "unknown probe type";
}

} // namespace drover::detail
