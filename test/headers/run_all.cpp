// Compiles drover/run_all.hpp alone, first: every public header is self-contained.
#include "drover/run_all.hpp"
#include "drover/run_all.hpp" // and guarded
