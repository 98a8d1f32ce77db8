// Compiles drover/resource_usage.hpp alone, first: every public header is self-contained.
#include "drover/resource_usage.hpp"
#include "drover/resource_usage.hpp" // and guarded
