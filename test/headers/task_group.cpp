// Compiles drover/task_group.hpp alone, first: every public header is self-contained.
#include "drover/task_group.hpp"
#include "drover/task_group.hpp" // and guarded
