// "Key:\tvalue" files: /proc/<pid>/status (parse_status), /proc/<pid>/io (parse_io), a pidfd's
// fdinfo (parse_fdinfo_pid), and /proc/stat's btime (parse_boot_time).
#include <string>

#include "detail/proc_parse.hpp"
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view s = fuzz::as_text(data, size);
    // A number read from the text appears in it (without its sign: "-007" is read as -7).
    auto appears = [&](auto n) {
        std::string digits = std::to_string(n);
        if (digits[0] == '-') digits.erase(0, 1);
        return s.find(digits) != std::string_view::npos;
    };

    drover::proc_info p;
    if (drover::detail::parse_status(s, p)) {
        FUZZ_CHECK(appears(p.uid) && appears(p.euid) && appears(p.gid) && appears(p.egid));
        FUZZ_CHECK(p.groups.size() <= s.size() / 2);
        // Sizes are in kB: bytes are a multiple of 1024, and the kB figure is in the text.
        for (auto bytes : {p.rss_bytes, p.peak_rss_bytes})
            FUZZ_CHECK(bytes % 1024 == 0 && (bytes == 0 || appears(bytes / 1024)));
    }
    drover::io_counters io;
    if (drover::detail::parse_io(s, io))
        for (auto v : {io.rchar, io.wchar, io.syscr, io.syscw, io.read_bytes, io.write_bytes,
                       io.cancelled_write_bytes})
            FUZZ_CHECK(appears(v));
    if (auto pid = drover::detail::parse_fdinfo_pid(s)) FUZZ_CHECK(appears(*pid));
    if (auto bt = drover::detail::parse_boot_time(s)) FUZZ_CHECK(appears(*bt));
    return 0;
}
