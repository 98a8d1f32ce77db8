// drover-bench-svc: the service that drover-bench's supervise-peers benchmark has every supervisor
// run. On start it tells the bench that it runs: one datagram "IDX PID NS" (NS: its
// CLOCK_MONOTONIC time in nanoseconds, taken first thing, so the bench knows when the process ran
// whatever the scheduler does next) to the unix datagram socket in $DRBENCH_SVC_SOCKET.
// Then, with DRBENCH_SVC_MODE:
//   plain (default): nothing more, like sleep;
//   ready: it tells its supervisor it is ready, the way that supervisor understands: READY=1 on
//          $NOTIFY_SOCKET (sd_notify, drover up), else a newline on the descriptor named by the
//          s6 service directory's ./notification-fd file (then closed). runit and supervisord have
//          no readiness protocol: nothing is sent;
//   once: it exits 0 (the bench's measure of one spawn).
// and pause()s forever. IDX is argv[1], else the digits of the current directory's name (runit's
// and s6's ./run gets no arguments but runs in its service directory, named sIDX by the bench).
// The variables are not named DROVER_*: drover keeps those from its services.
// Plain libc, no C++ library: it should cost its supervisor's spawn and nothing else.
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

namespace {

long index_of(const char* s) {
    while (*s && (*s < '0' || *s > '9')) ++s;
    return *s ? strtol(s, nullptr, 10) : -1;
}

/// Sends `msg` to the unix datagram socket at `path` ('@': an abstract name, as systemd's).
bool send_to(const char* path, const char* msg, size_t len) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    const size_t n = strlen(path);
    if (n == 0 || n >= sizeof a.sun_path) return false;
    memcpy(a.sun_path, path, n);
    if (path[0] == '@') a.sun_path[0] = '\0';
    const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    const bool ok = sendto(fd, msg, len, 0, reinterpret_cast<sockaddr*>(&a),
                           static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n)) >= 0;
    close(fd);
    return ok;
}

} // namespace

int main(int argc, char** argv) {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long idx = -1;
    if (argc > 1) idx = index_of(argv[1]);
    char cwd[4096];
    if (idx < 0 && getcwd(cwd, sizeof cwd)) {
        const char* slash = strrchr(cwd, '/');
        idx = index_of(slash ? slash + 1 : cwd);
    }
    const char* mode = getenv("DRBENCH_SVC_MODE");
    if (!mode) mode = "plain";
    if (const char* sock = getenv("DRBENCH_SVC_SOCKET")) {
        char msg[96];
        const int len = snprintf(msg, sizeof msg, "%ld %ld %lld", idx, static_cast<long>(getpid()),
                                 static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec);
        send_to(sock, msg, static_cast<size_t>(len)); // blocks while the bench's queue is full
    }
    if (strcmp(mode, "once") == 0) return 0;
    if (strcmp(mode, "ready") == 0) {
        if (const char* notify = getenv("NOTIFY_SOCKET")) {
            send_to(notify, "READY=1", 7);
        } else {
            const int f = open("notification-fd", O_RDONLY | O_CLOEXEC);
            if (f >= 0) {
                char buf[16] = {};
                const ssize_t n = read(f, buf, sizeof buf - 1);
                close(f);
                const long nfd = n > 0 ? strtol(buf, nullptr, 10) : -1;
                if (nfd >= 0) {
                    (void)!write(static_cast<int>(nfd), "\n", 1);
                    close(static_cast<int>(nfd));
                }
            }
        }
    }
    for (;;) pause();
}
