// One doctest main for every suite: doctest prints its summary at the end of each.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
