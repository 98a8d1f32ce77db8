// drover: the supervisor engine. Implemented in a following commit.
#include "drover/supervisor.hpp"
