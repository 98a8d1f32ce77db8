// Compiles drover/stdio.hpp alone, first: every public header is self-contained.
#include "drover/stdio.hpp"
#include "drover/stdio.hpp" // and guarded
