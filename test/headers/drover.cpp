// Compiles drover/drover.hpp alone, first: every public header is self-contained.
#include "drover/drover.hpp"
#include "drover/drover.hpp" // and guarded
