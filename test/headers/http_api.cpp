// Compiles drover/http_api.hpp alone, first: every public header is self-contained.
#include "drover/http_api.hpp"
#include "drover/http_api.hpp" // and guarded
