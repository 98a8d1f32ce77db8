// Compiles drover/guard.hpp alone, first: every public header is self-contained.
#include "drover/guard.hpp"
#include "drover/guard.hpp" // and guarded
