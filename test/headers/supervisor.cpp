// Compiles drover/supervisor.hpp alone, first: every public header is self-contained.
#include "drover/supervisor.hpp"
#include "drover/supervisor.hpp" // and guarded
