// Compiles drover/reaper.hpp alone, first: every public header is self-contained.
#include "drover/reaper.hpp"
#include "drover/reaper.hpp" // and guarded
