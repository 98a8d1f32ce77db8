// drover (private): one attempt of a readiness or health probe (TCP connect, HTTP GET, command).
// The address parsers are in probe_address.cpp, the attempts in probe.cpp.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/any_io_executor.hpp>

#include "drover/service.hpp"

namespace drover::detail {

/// "http://host[:port]/path" split up; false and `error` set for anything else (https is not
/// supported: say so).
struct http_url {
    std::string host;
    std::string port = "80";
    std::string target = "/";
};
bool parse_http_url(std::string_view url, http_url& out, std::string& error);
/// "host:port" / "[v6]:port" split up; false and `error` set when malformed.
bool parse_host_port(std::string_view address, std::string& host, std::string& port, std::string& error);

/// "host:port" for messages and the Host header, with an IPv6 host back in brackets.
std::string join_host_port(const std::string& host, const std::string& port);

/// Checks what `add` must refuse: an address that does not parse, an exec probe without a
/// command. Empty when fine, else the message.
std::string probe_error(const probe& p);

/// Runs one attempt of `p`, bounded by `p.timeout`, and calls `done(ok, detail)` on `ex`
/// (detail: "connected", "HTTP 200", "exit code 0", or why it failed: "connection refused",
/// "HTTP 503", "timed out after 1s", "exit code 1"...). The returned handle cancels the attempt
/// when destroyed (then `done` is not called; an exec probe's tree is stopped).
class probe_attempt {
public:
    virtual ~probe_attempt() = default;
};
std::unique_ptr<probe_attempt> start_probe(boost::asio::any_io_executor ex, const probe& p,
                                           std::function<void(bool ok, std::string detail)> done);

} // namespace drover::detail
