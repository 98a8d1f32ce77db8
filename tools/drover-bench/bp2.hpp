// drover-bench: the Boost.Process v2 contender (bp2.cpp).
#pragma once

#include <string>

namespace bench {

/// Boost.Process v2's default launcher + co_await async_wait, `n` times in a row, with
/// `registered_fds` pipe descriptors registered in its io_context: µs per spawn (-1 if it failed).
double bp2_spawn_seq(const std::string& prog, int n, int registered_fds = 0);

/// The same with `width` coroutines spawning until `n` spawns are done: µs per spawn (-1: failed).
double bp2_spawn_concurrent(const std::string& prog, int n, int width);

} // namespace bench
