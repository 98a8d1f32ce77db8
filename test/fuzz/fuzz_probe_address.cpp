// parse_http_url and parse_host_port: probe addresses come from configuration files.
#include "detail/probe.hpp"

#include <string>

#include "fuzz.hpp"

using namespace drover::detail;

namespace {
bool printable(const std::string& s) {
    for (char c : s)
        if (static_cast<unsigned char>(c) <= ' ' || static_cast<unsigned char>(c) == 0x7f) return false;
    return true;
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto text = fuzz::as_text(data, size);
    http_url u;
    std::string error;
    if (parse_http_url(text, u, error)) {
        FUZZ_CHECK(error.empty());
        FUZZ_CHECK(!u.host.empty() && printable(u.host) && printable(u.target));
        FUZZ_CHECK(!u.target.empty() && u.target[0] == '/');
        const int port = std::stoi(u.port);
        FUZZ_CHECK(port >= 1 && port <= 65535);
    } else {
        FUZZ_CHECK(!error.empty());
    }
    std::string host, port;
    error.clear();
    if (parse_host_port(text, host, port, error)) {
        FUZZ_CHECK(!host.empty() && printable(host));
        const int p = std::stoi(port);
        FUZZ_CHECK(p >= 1 && p <= 65535);
        // What was parsed parses again to the same.
        const std::string again =
            host.find(':') != std::string::npos ? "[" + host + "]:" + port : host + ":" + port;
        std::string h2, p2, e2;
        FUZZ_CHECK(parse_host_port(again, h2, p2, e2) && h2 == host && p2 == port);
    } else {
        FUZZ_CHECK(!error.empty());
    }
    return 0;
}
