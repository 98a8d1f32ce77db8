// Compiles drover/child.hpp alone, first: every public header is self-contained.
#include "drover/child.hpp"
#include "drover/child.hpp" // and guarded
