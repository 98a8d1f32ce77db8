// Compiles drover/run.hpp alone, first: every public header is self-contained.
#include "drover/run.hpp"
#include "drover/run.hpp" // and guarded
