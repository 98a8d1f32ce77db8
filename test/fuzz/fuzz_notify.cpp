// parse_notify: a notify socket's datagrams come from whatever runs in a service.
#include "detail/notify.hpp"

#include <climits>
#include <string>

#include "fuzz.hpp"

using drover::detail::parse_notify;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto text = fuzz::as_text(data, size);
    const auto m = parse_notify(text);
    FUZZ_CHECK(m.text == text);
    if (m.mainpid) FUZZ_CHECK(*m.mainpid > 0);
    // A field is set only by an assignment of its own name.
    if (m.ready) FUZZ_CHECK(text.find("READY=1") != std::string_view::npos);
    if (m.watchdog) FUZZ_CHECK(text.find("WATCHDOG=1") != std::string_view::npos);
    if (m.watchdog_trigger) FUZZ_CHECK(text.find("WATCHDOG=trigger") != std::string_view::npos);
    if (m.status) FUZZ_CHECK(text.find("STATUS=" + *m.status) != std::string_view::npos);
    // Parsing is a function of the lines: appending an empty line changes nothing.
    const auto again = parse_notify(std::string(text) + "\n");
    FUZZ_CHECK(again.ready == m.ready && again.status == m.status && again.mainpid == m.mainpid &&
               again.watchdog_usec == m.watchdog_usec);
    return 0;
}
