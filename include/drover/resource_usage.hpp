// drover: what a reaped child consumed (from the kernel's rusage at reaping).
#pragma once

#include <chrono>
#include <cstdint>

namespace drover {

/// Resources used by a child and by the descendants it reaped itself, as the kernel reports
/// them when drover reaps it (`waitid` with an rusage record, like `wait4`). Processes of the
/// tree that were not reaped by the child (orphans) are not included.
struct resource_usage {
    std::chrono::microseconds user_cpu{0};   ///< CPU time in user mode
    std::chrono::microseconds system_cpu{0}; ///< CPU time in the kernel
    std::int64_t max_rss_kib = 0;            ///< peak resident set size of the largest process, KiB
    std::int64_t minor_faults = 0;           ///< page faults served without I/O
    std::int64_t major_faults = 0;           ///< page faults that needed I/O
    std::int64_t voluntary_switches = 0;     ///< context switches while waiting (I/O, sleep)
    std::int64_t involuntary_switches = 0;   ///< preemptions
    std::int64_t input_blocks = 0;           ///< file system reads, 512-byte blocks
    std::int64_t output_blocks = 0;          ///< file system writes, 512-byte blocks
};

} // namespace drover
