// Compiles drover/backend.hpp alone, first: every public header is self-contained.
#include "drover/backend.hpp"
#include "drover/backend.hpp" // and guarded
