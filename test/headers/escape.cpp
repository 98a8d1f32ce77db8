// Compiles drover/escape.hpp alone, first: every public header is self-contained.
#include "drover/escape.hpp"
#include "drover/escape.hpp" // and guarded
