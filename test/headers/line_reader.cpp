// Compiles drover/line_reader.hpp alone, first: every public header is self-contained.
#include "drover/line_reader.hpp"
#include "drover/line_reader.hpp" // and guarded
