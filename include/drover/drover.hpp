// drover: everything, for programs that prefer one include.
#pragma once

#include "drover/child.hpp"
#include "drover/command.hpp"
#include "drover/daemon.hpp"
#include "drover/env_file.hpp"
#include "drover/error.hpp"
#include "drover/escape.hpp"
#include "drover/exit_status.hpp"
#include "drover/line_reader.hpp"
#include "drover/pipe_writer.hpp"
#include "drover/proc_info.hpp"
#include "drover/reaper.hpp"
#include "drover/resource_usage.hpp"
#include "drover/run.hpp"
#include "drover/run_all.hpp"
#include "drover/stdio.hpp"
#include "drover/task_group.hpp"
