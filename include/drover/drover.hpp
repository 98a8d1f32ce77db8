// drover: everything, for programs that prefer one include.
#pragma once

#include "drover/child.hpp"
#include "drover/command.hpp"
#include "drover/error.hpp"
#include "drover/escape.hpp"
#include "drover/exit_status.hpp"
#include "drover/reaper.hpp"
#include "drover/stdio.hpp"
