// Compiles drover/daemon.hpp alone, first: every public header is self-contained.
#include "drover/daemon.hpp"
#include "drover/daemon.hpp" // and guarded
