// Compiles drover/command.hpp alone, first: every public header is self-contained.
#include "drover/command.hpp"
#include "drover/command.hpp" // and guarded
