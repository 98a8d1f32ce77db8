// Compiles drover/proc_info.hpp alone, first: every public header is self-contained.
#include "drover/proc_info.hpp"
#include "drover/proc_info.hpp" // and guarded
