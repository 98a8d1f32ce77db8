// Compiles drover/error.hpp alone, first: every public header is self-contained.
#include "drover/error.hpp"
#include "drover/error.hpp" // and guarded
