// drover (private): probes. Implemented in a following commit.
#include "detail/probe.hpp"
