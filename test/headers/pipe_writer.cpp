// Compiles drover/pipe_writer.hpp alone, first: every public header is self-contained.
#include "drover/pipe_writer.hpp"
#include "drover/pipe_writer.hpp" // and guarded
