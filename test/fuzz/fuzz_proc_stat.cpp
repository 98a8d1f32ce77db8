// /proc/<pid>/stat, read by two parsers: parse_stat (drover inspect/ps, read_proc_info) and
// parse_stat_ids (the tree walk that decides what a stop signals). They must agree.
#include <charconv>

#include "detail/proc_parse.hpp"
#include "detail/tree.hpp"
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view s = fuzz::as_text(data, size);
    // The pid the text should be about: its leading number (so that half the inputs match).
    pid_t pid = 1;
    std::from_chars(s.data(), s.data() + s.size(), pid);

    drover::proc_info p;
    const bool ok = drover::detail::parse_stat(s, pid, p);
    drover::detail::proc_ids ids;
    const bool ids_ok = drover::detail::parse_stat_ids(s, ids);
    if (!ok) return 0;

    // The name is everything between the first '(' and the last ')'.
    const auto open = s.find('('), close = s.rfind(')');
    FUZZ_CHECK(p.comm == s.substr(open + 1, close - open - 1));
    FUZZ_CHECK(p.user_cpu.count() >= 0 && p.system_cpu.count() >= 0);
    // What the full parser accepts, the tree walk reads the same way.
    FUZZ_CHECK(ids_ok);
    FUZZ_CHECK(ids.state == p.state && ids.ppid == p.ppid && ids.pgrp == p.pgrp && ids.session == p.session);
    return 0;
}
