// drover (private): the few Linux/glibc calls the shared sources use, given where the system
// lacks them (macOS, FreeBSD: docs/architecture.md, "Backends"). On Linux this adds nothing.
#pragma once

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#if !defined(RLIMIT_NLIMITS) && defined(RLIM_NLIMITS)
#define RLIMIT_NLIMITS RLIM_NLIMITS
#endif

#if defined(__APPLE__)
// No atomic close-on-exec at creation: set right after. A fork+exec by another thread of the
// host in between can inherit the descriptor; children drover spawns cannot (the portable
// launcher marks every descriptor not passed close-on-exec in the child).
#ifndef SOCK_CLOEXEC
#define SOCK_CLOEXEC 0
#endif
#ifndef SOCK_NONBLOCK
#define SOCK_NONBLOCK 0
#endif
#ifndef MSG_CMSG_CLOEXEC
#define MSG_CMSG_CLOEXEC 0
#endif
inline int pipe2(int fds[2], int flags) noexcept {
    if (::pipe(fds) != 0) return -1;
    for (int i = 0; i < 2; ++i) {
        if (((flags & O_CLOEXEC) && ::fcntl(fds[i], F_SETFD, FD_CLOEXEC) != 0) ||
            ((flags & O_NONBLOCK) && ::fcntl(fds[i], F_SETFL, O_NONBLOCK) != 0)) {
            const int e = errno;
            ::close(fds[0]);
            ::close(fds[1]);
            return errno = e, -1;
        }
    }
    return 0;
}
#endif

namespace drover::detail {

/// After socket()/socketpair()/accept() with SOCK_CLOEXEC|SOCK_NONBLOCK: where those flags are
/// 0 (macOS), sets what they would have. 0 or -1 with errno.
inline int finish_socket_flags([[maybe_unused]] int fd, [[maybe_unused]] bool nonblock) noexcept {
#if defined(__APPLE__)
    if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) return -1;
    if (nonblock && ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) return -1;
#endif
    return 0;
}

/// A signal's abbreviation without "SIG" ("TERM"), or null for a number with no name:
/// glibc's sigabbrev_np, a table of the POSIX and common BSD signals elsewhere.
const char* signal_abbrev(int sig) noexcept;

/// Names the thread (shown by ps, top, debuggers). Not on macOS, where a thread can only name
/// itself: there the thread keeps no name.
void name_thread(pthread_t t, const char* name) noexcept;

} // namespace drover::detail
