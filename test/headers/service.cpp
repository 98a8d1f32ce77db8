// Compiles drover/service.hpp alone, first: every public header is self-contained.
#include "drover/service.hpp"
#include "drover/service.hpp" // and guarded
