// drover (private): sd_notify receiver. Implemented in a following commit.
#include "detail/notify.hpp"
