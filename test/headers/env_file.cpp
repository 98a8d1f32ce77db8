// Compiles drover/env_file.hpp alone, first: every public header is self-contained.
#include "drover/env_file.hpp"
#include "drover/env_file.hpp" // and guarded
