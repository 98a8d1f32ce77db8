// Compiles drover/exit_status.hpp alone, first: every public header is self-contained.
#include "drover/exit_status.hpp"
#include "drover/exit_status.hpp" // and guarded
