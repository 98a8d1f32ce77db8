// Compiles drover/fd_limit.hpp alone, first: every public header is self-contained.
#include "drover/fd_limit.hpp"
#include "drover/fd_limit.hpp" // and guarded
