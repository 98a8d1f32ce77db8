// drover (private): the descriptor preparation of a spawn, in the parent: stdio (inherited,
// /dev/null, pipes, files, a pty, given fds) and the passed fds, each opened O_CLOEXEC at a
// number above every target fd, ready for the raw child's dup3s (lib/detail/raw_child.hpp).
#pragma once

#include <string>
#include <vector>

#include "detail/raw_child.hpp"
#include "detail/unique_fd.hpp"
#include "drover/command.hpp"
#include "drover/error.hpp"

namespace drover::detail {

/// Fills `f` with `err` (an errno), `stage` and `detail`; returns false (for `return
/// spawn_fail(...)` on a spawn's failure paths).
bool spawn_fail(spawn_failure& f, int err, spawn_stage stage, std::string detail = {});

/// Everything the parent opens for one spawn; closed on every path out of launch().
struct prepared_fds {
    std::vector<unique_fd> owned;
    std::vector<fd_move> moves;
    std::vector<int> keep;
    unsigned inherit_in_place = 0;
    unique_fd parent_end[3];
    unique_fd pty_master;
    int ctty_fd = -1;
};

/// Opens every descriptor `cmd` gives the child (stdio and passed fds) into `pf`. Returns false
/// and fills `f` on failure; whatever was opened is closed with `pf`.
bool prepare_fds(const command& cmd, prepared_fds& pf, spawn_failure& f);

} // namespace drover::detail
