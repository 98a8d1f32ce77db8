// daemonize(): the classic double fork (see daemon.hpp), with the outcome reported back to the
// process that asked, through a socket pair, before it exits.
#include "drover/daemon.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__APPLE__)
#include <libproc.h>
#elif defined(__FreeBSD__)
#include <sys/param.h>
#include <sys/sysctl.h>
#include <sys/user.h>
#endif

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <string>

#include "detail/fault.hpp"
#include "detail/compat.hpp"
#include "detail/posix.hpp"

namespace drover {
namespace {

/// Sends on the report socket; MSG_NOSIGNAL: a starter that died must not kill the daemon.
void write_all(int fd, const std::string& s) noexcept {
    std::size_t off = 0;
    while (off < s.size()) {
        ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        off += static_cast<std::size_t>(n);
    }
}

/// In the intermediate process or the daemon: tell the original process what failed, then go.
/// A pidfd of this process travels with the message (SCM_RIGHTS), so the original process can
/// wait until this one has really exited before it reports: the caller of daemonize() then
/// never sees the failed process still around (it closes the socket, giving EOF, a moment
/// before it leaves its cgroup and process table).
[[noreturn]] void report_and_exit(int pipe_fd, int err, const std::string& what) noexcept {
    const std::string text = std::to_string(err) + " " + what;
#if defined(__linux__)
    const int self = static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0));
#else
    const int self = -1; // no pidfd to hand over: the text alone
#endif
    std::size_t sent = 0;
    if (self >= 0) {
        char control[CMSG_SPACE(sizeof(int))] = {};
        iovec iov{const_cast<char*>(text.data()), text.size()};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &self, sizeof(int));
        ssize_t n;
        do n = ::sendmsg(pipe_fd, &msg, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n > 0) sent = static_cast<std::size_t>(n);
    }
    write_all(pipe_fd, text.substr(sent));
    ::_exit(1);
}

/// Reads the report socket to EOF; a pidfd passed along (see report_and_exit) goes to `pidfd`.
std::string read_report(int fd, int& pidfd) {
    std::string msg;
    char buf[512];
    for (;;) {
        char control[CMSG_SPACE(sizeof(int))] = {};
        iovec iov{buf, sizeof buf};
        msghdr m{};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = control;
        m.msg_controllen = sizeof control;
        ssize_t n = ::recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR) continue;
        for (cmsghdr* c = n >= 0 ? CMSG_FIRSTHDR(&m) : nullptr; c != nullptr; c = CMSG_NXTHDR(&m, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            int got = -1;
            std::memcpy(&got, CMSG_DATA(c), sizeof(int));
            if (pidfd >= 0) ::close(pidfd);
            pidfd = got;
        }
        if (n <= 0) break;
        msg.append(buf, static_cast<std::size_t>(n));
    }
    return msg;
}

/// Makes `target` (0-2) refer to `fd`'s file, inheritable across exec (the caller closes `fd`).
bool move_fd(int fd, int target) noexcept {
    if (fd == target) return ::fcntl(target, F_SETFD, 0) == 0; // it was opened CLOEXEC
    return ::dup2(fd, target) >= 0;
}

/// Threads of this process (fork copies only the calling one). 1 when it cannot be told.
int thread_count() noexcept {
#if defined(__APPLE__)
    struct proc_taskinfo ti {};
    if (::proc_pidinfo(::getpid(), PROC_PIDTASKINFO, 0, &ti, sizeof ti) != static_cast<int>(sizeof ti))
        return 1;
    return ti.pti_threadnum;
#elif defined(__FreeBSD__)
    struct kinfo_proc kp {};
    std::size_t size = sizeof kp;
    int mib[4] = {CTL_KERN, KERN_PROC, KERN_PROC_PID, ::getpid()};
    if (::sysctl(mib, 4, &kp, &size, nullptr, 0) != 0 || size != sizeof kp) return 1;
    return kp.ki_numthreads;
#else
    DIR* d = ::opendir("/proc/self/task");
    if (d == nullptr) return 1;
    int n = 0;
    while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.' ? 1 : 0;
    ::closedir(d);
    return n;
#endif
}

/// Moves a descriptor above 2, so that putting /dev/null on 0-2 can never overwrite it.
int above_stdio(int fd) noexcept {
    if (fd > 2) return fd;
    int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    ::close(fd);
    return moved;
}

} // namespace

void daemonize(const daemon_options& options) {
    if (int n = thread_count(); n > 1)
        throw daemon_error({EBUSY, boost::system::system_category()},
                           "daemonize: the process has " + std::to_string(n) +
                               " threads; call daemonize before any thread exists (fork copies only one)");
    // Paths are resolved now: the daemon opens them after its chdir.
    daemon_options o = options;
    std::error_code fs_ec;
    if (!o.pidfile.empty()) o.pidfile = std::filesystem::absolute(o.pidfile, fs_ec);
    if (!o.output.empty()) o.output = std::filesystem::absolute(o.output, fs_ec);
    int report[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, report) != 0)
        throw daemon_error({errno, boost::system::system_category()}, "daemonize: socketpair");
    detail::finish_socket_flags(report[0], false);
    detail::finish_socket_flags(report[1], false);
    report[0] = above_stdio(report[0]);
    report[1] = above_stdio(report[1]);
    if (report[0] < 0 || report[1] < 0)
        throw daemon_error({errno, boost::system::system_category()}, "daemonize: socketpair");

    // 1. fork: the original process stays only to hear the outcome.
    pid_t first = -1;
    if (int e = detail::fault(detail::fault_point::fork))
        errno = e; // tests: fork refused
    else
        first = ::fork();
    if (first < 0) {
        int e = errno;
        ::close(report[0]);
        ::close(report[1]);
        throw daemon_error({e, boost::system::system_category()}, "daemonize: fork");
    }
    if (first > 0) {
        ::close(report[1]);
        int failed = -1;
        std::string msg = read_report(report[0], failed);
        ::close(report[0]);
        int st = 0;
        while (::waitpid(first, &st, 0) < 0 && errno == EINTR) {
        }
        if (failed >= 0) { // the process that failed: report only once it is gone (5 s at most)
            detail::poll_one(failed, POLLIN, 5000);
            ::close(failed);
        }
        if (msg == "ok") ::_exit(0); // the daemon runs: nothing of ours is flushed twice
        if (msg.empty())
            throw daemon_error({ECHILD, boost::system::system_category()},
                               "daemonize: the daemon died before it reported");
        int err = 0;
        auto space = msg.find(' ');
        std::from_chars(msg.data(), msg.data() + (space == std::string::npos ? msg.size() : space), err);
        throw daemon_error({err, boost::system::system_category()},
                           "daemonize: " + (space == std::string::npos ? msg : msg.substr(space + 1)));
    }

    // The first child. 2. setsid: it is not a process group leader (its parent is), so this
    // succeeds and gives it a new session with no controlling terminal.
    ::close(report[0]);
    const int out = report[1];
    if (::setsid() < 0) report_and_exit(out, errno, "setsid");
    // 3. fork again and let the session leader go: the daemon is no session leader, so no
    //    terminal it ever opens can become its controlling terminal.
    pid_t second = ::fork();
    if (second < 0) report_and_exit(out, errno, "second fork");
    if (second > 0) ::_exit(0);

    // The daemon. 4. A working directory that keeps no mount busy.
    if (::chdir(o.working_directory.c_str()) != 0) {
        int e = errno;
        report_and_exit(out, e, "chdir " + o.working_directory.string());
    }
    // 5. Its own umask, not the one its starter happened to have.
    if (o.umask) ::umask(*o.umask & 0777);
    // 6. stdio: nobody is there to read or write a terminal.
    int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) report_and_exit(out, errno, "open /dev/null");
    int sink = null;
    if (!o.output.empty()) {
        sink = ::open(o.output.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0644);
        if (sink < 0) {
            int e = errno;
            report_and_exit(out, e, "open " + o.output.string());
        }
    }
    if (!move_fd(null, 0) || !move_fd(sink, 1) || !move_fd(sink, 2))
        report_and_exit(out, errno, "dup2 onto stdio");
    if (null > 2) ::close(null);
    if (sink > 2 && sink != null) ::close(sink);
    // 7. The pidfile last: locked for the daemon's life, so a second instance sees it is taken,
    //    and written only once everything else worked.
    if (!o.pidfile.empty()) {
        int fd = ::open(o.pidfile.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
        if (fd < 0) {
            int e = errno;
            report_and_exit(out, e, "open pidfile " + o.pidfile.string());
        }
        if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            char buf[32] = {};
            ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
            std::string holder = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("?");
            while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
            report_and_exit(out, e == EWOULDBLOCK ? EEXIST : e,
                            "pidfile " + o.pidfile.string() + " is locked: already running as pid " + holder);
        }
        std::string pid = std::to_string(::getpid()) + "\n";
        if (::ftruncate(fd, 0) != 0) {
            int e = errno;
            report_and_exit(out, e, "truncate pidfile " + o.pidfile.string());
        }
        ssize_t n = ::pwrite(fd, pid.data(), pid.size(), 0);
        if (n != static_cast<ssize_t>(pid.size())) {
            int e = n < 0 ? errno : EIO;
            report_and_exit(out, e, "write pidfile " + o.pidfile.string());
        }
        // fd stays open (and locked) until the daemon exits; CLOEXEC: an exec'd program is
        // another program, and must take its own lock.
    }
    write_all(out, "ok");
    ::close(out);
}

} // namespace drover
