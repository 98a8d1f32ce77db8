// drover (private): a test seam in read_proc_info, between the last /proc read and the pidfd
// verification, where a test reaps the process and reuses its pid (reliability.md G5).
#pragma once

#include <sys/types.h>

namespace drover::detail {

/// Called with the pid after the reads and before the verification; nullptr to remove.
void set_proc_verify_hook(void (*hook)(pid_t)) noexcept;

} // namespace drover::detail
