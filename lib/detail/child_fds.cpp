// The descriptor preparation of a spawn (docs/architecture.md, "Spawning", parent step 2).
#include "detail/child_fds.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "detail/fault.hpp"
#include "detail/posix.hpp"

namespace drover::detail {

bool spawn_fail(spawn_failure& f, int err, spawn_stage stage, std::string detail) {
    f.code = sys_error(err);
    f.stage = stage;
    f.detail = std::move(detail);
    return false;
}

namespace {

/// If `fd` is a pipe or terminal with O_NONBLOCK set (Asio sets it on what it wraps), opens the
/// same object afresh, blocking, so the child's flag and the parent's are independent
/// (docs/reliability.md row B4).
/// Returns an invalid fd when the descriptor can be shared as is (or cannot be reopened:
/// then the child clears O_NONBLOCK on the shared description, as libuv and systemd do).
/// `fl` is the descriptor's F_GETFL, when the caller has it already (-2: read it here).
unique_fd fresh_blocking_open(int fd, int fl = -2) noexcept {
    if (fl == -2) fl = ::fcntl(fd, F_GETFL);
    if (fl < 0 || !(fl & O_NONBLOCK)) return {};
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !(S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode))) return {};
    char proc_path[32];
    std::snprintf(proc_path, sizeof proc_path, "/proc/self/fd/%d", fd);
    // O_NONBLOCK on open: a pipe with no reader left must not block us (ENXIO instead).
    int nfd = f_open(proc_path, (fl & O_ACCMODE) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (nfd < 0) return {};
    unique_fd owned{nfd};
    int nfl = ::fcntl(nfd, F_GETFL);
    if (nfl < 0 || ::fcntl(nfd, F_SETFL, nfl & ~O_NONBLOCK) != 0) return {};
    return owned;
}

/// Opens a new pseudo-terminal pair: the master (non-blocking, for the parent) and the slave
/// (blocking, for the child), with the window size set on it.
bool open_pty(unsigned short rows, unsigned short cols, unique_fd& master, unique_fd& slave,
              spawn_failure& f) {
    unique_fd m{::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC)};
    if (!m) return spawn_fail(f, errno, spawn_stage::terminal, "posix_openpt");
    if (::grantpt(m.get()) != 0 || ::unlockpt(m.get()) != 0)
        return spawn_fail(f, errno, spawn_stage::terminal, "unlockpt");
    char name[64];
    if (::ptsname_r(m.get(), name, sizeof name) != 0)
        return spawn_fail(f, errno, spawn_stage::terminal, "ptsname");
    struct winsize ws {};
    ws.ws_row = rows;
    ws.ws_col = cols;
    if (::ioctl(m.get(), TIOCSWINSZ, &ws) != 0)
        return spawn_fail(f, errno, spawn_stage::terminal, "TIOCSWINSZ");
    unique_fd sl{::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)};
    if (!sl) return spawn_fail(f, errno, spawn_stage::terminal, name);
    int fl = ::fcntl(m.get(), F_GETFL);
    if (fl < 0 || ::fcntl(m.get(), F_SETFL, fl | O_NONBLOCK) != 0)
        return spawn_fail(f, errno, spawn_stage::terminal, "O_NONBLOCK on the master");
    master = std::move(m);
    slave = std::move(sl);
    return true;
}

} // namespace

bool prepare_fds(const command& cmd, prepared_fds& pf, spawn_failure& f) {
    int max_target = 2;
    for (const auto& p : cmd.passed_fds()) {
        if (p.child_fd < 3)
            return f.code = errc::invalid_command, f.stage = spawn_stage::prepare,
                   f.detail = "pass_fd target " + std::to_string(p.child_fd) +
                              " is below 3; use std_in/std_out/std_err",
                   false;
        max_target = std::max(max_target, p.child_fd);
        pf.keep.push_back(p.child_fd);
    }
    std::sort(pf.keep.begin(), pf.keep.end());
    if (std::adjacent_find(pf.keep.begin(), pf.keep.end()) != pf.keep.end())
        return f.code = errc::invalid_command, f.stage = spawn_stage::prepare,
               f.detail = "pass_fd target given twice", false;

    // Each source must sit above every target, so that no dup3 in the child clobbers a source
    // still to be moved, and so that dup3 never sees src == dst (which would keep CLOEXEC).
    auto add_move = [&](int src, int dst, bool owned_src) -> bool {
        if (src <= max_target) {
            int d = ::fcntl(src, F_DUPFD_CLOEXEC, max_target + 1);
            if (d < 0)
                return spawn_fail(f, errno, spawn_stage::open_stdio, "dup of fd " + std::to_string(src));
            pf.owned.emplace_back(d);
            src = d;
        } else if (!owned_src && ::fcntl(src, F_GETFD) < 0) {
            return spawn_fail(f, errno, spawn_stage::open_stdio, "fd " + std::to_string(src));
        }
        pf.moves.push_back({src, dst});
        return true;
    };

    unique_fd devnull;
    unique_fd pty_slave;
    int source_of[3] = {-1, -1, -1}; // what fd t is made from (for to_stdout); -1: closed
    for (int t = 0; t < 3; ++t) {
        const stdio& s = cmd.stdio_for(t);
        const std::size_t moves_before = pf.moves.size();
        switch (s.type()) {
        case stdio::kind::inherit: {
            const int fl = ::fcntl(t, F_GETFL); // one call: is it open, and is it non-blocking
            if (fl < 0) break;                  // closed in the parent: closed in the child
            unique_fd fresh = fresh_blocking_open(t, fl);
            if (fresh) {
                int fd = fresh.get();
                pf.owned.push_back(std::move(fresh));
                if (!add_move(fd, t, true)) return false;
            } else {
                pf.inherit_in_place |= 1U << t;
                source_of[t] = t;
            }
            break;
        }
        case stdio::kind::pty: {
            if (!cmd.new_session())
                return f.code = errc::invalid_command, f.stage = spawn_stage::prepare,
                       f.detail = "a pty needs a new session (new_session(false) was set)", false;
            if (!pf.pty_master && !open_pty(s.rows(), s.cols(), pf.pty_master, pty_slave, f)) return false;
            if (pf.ctty_fd < 0) pf.ctty_fd = t;
            if (!add_move(pty_slave.get(), t, true)) return false;
            break;
        }
        case stdio::kind::to_stdout: {
            if (t != 2)
                return f.code = errc::invalid_command, f.stage = spawn_stage::prepare,
                       f.detail = "stdio::to_stdout() is only for fd 2 (stderr)", false;
            if (source_of[1] < 0) break; // fd 1 is closed: so is fd 2
            if (!add_move(source_of[1], 2, true)) return false;
            break;
        }
        case stdio::kind::null: {
            if (!devnull) {
                devnull.reset(f_open("/dev/null", O_RDWR | O_CLOEXEC | O_NOCTTY));
                if (!devnull) return spawn_fail(f, errno, spawn_stage::open_stdio, "/dev/null");
            }
            if (!add_move(devnull.get(), t, true)) return false;
            break;
        }
        case stdio::kind::pipe: {
            int p[2];
            if (f_pipe2(p, O_CLOEXEC) != 0)
                return spawn_fail(f, errno, spawn_stage::open_stdio, "pipe for fd " + std::to_string(t));
            unique_fd rd{p[0]}, wr{p[1]};
            unique_fd& child_end = t == 0 ? rd : wr;
            unique_fd& parent_end = t == 0 ? wr : rd;
            // Only the parent's end is non-blocking; the child's end stays blocking.
            int fl = ::fcntl(parent_end.get(), F_GETFL);
            if (fl < 0 || ::fcntl(parent_end.get(), F_SETFL, fl | O_NONBLOCK) != 0)
                return spawn_fail(f, errno, spawn_stage::open_stdio, "pipe for fd " + std::to_string(t));
            int cfd = child_end.get();
            pf.owned.push_back(std::move(child_end));
            pf.parent_end[t] = std::move(parent_end);
            if (!add_move(cfd, t, true)) return false;
            break;
        }
        case stdio::kind::file:
        case stdio::kind::append: {
            int flags = O_CLOEXEC | O_NOCTTY;
            if (t == 0 && s.type() == stdio::kind::file)
                flags |= O_RDONLY;
            else if (s.type() == stdio::kind::append)
                flags |= O_WRONLY | O_CREAT | O_APPEND;
            else
                flags |= O_WRONLY | O_CREAT | O_TRUNC;
            int fd = f_open(s.path().c_str(), flags, 0666);
            if (fd < 0) return spawn_fail(f, errno, spawn_stage::open_stdio, s.path().string());
            pf.owned.emplace_back(fd);
            if (!add_move(fd, t, true)) return false;
            break;
        }
        case stdio::kind::fd: {
            int src = s.native_fd();
            if (::fcntl(src, F_GETFD) < 0)
                return spawn_fail(f, errno, spawn_stage::open_stdio, "fd " + std::to_string(src));
            unique_fd fresh = fresh_blocking_open(src);
            if (fresh) {
                src = fresh.get();
                pf.owned.push_back(std::move(fresh));
            }
            if (!add_move(src, t, false)) return false;
            break;
        }
        }
        if (pf.moves.size() > moves_before) source_of[t] = pf.moves.back().src;
    }
    if (devnull) pf.owned.push_back(std::move(devnull));
    if (pty_slave) pf.owned.push_back(std::move(pty_slave));
    for (const auto& p : cmd.passed_fds())
        if (!add_move(p.parent_fd, p.child_fd, false)) return false;
    return true;
}

} // namespace drover::detail
