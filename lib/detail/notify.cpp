// drover (private): the receiving side of the sd_notify protocol (reliability.md, H3).
//
// Who sent a datagram is taken from the kernel, never from the datagram: SCM_CREDENTIALS gives
// the pid and uid, and SO_PASSPIDFD (Linux 6.5+) a pidfd of that pid with every datagram. The
// pidfd is what makes the check reliable: a sender often exits (and its pid is reused) before
// the datagram is read, but the pidfd still names the process that sent it, and
// PIDFD_GET_INFO (6.13+) reports its cgroup even once it has been reaped: asked with
// PIDFD_INFO_EXIT, the kernel answers from the exit record it keeps for the pidfd, which holds
// the cgroup the sender died in. A pid looked up in /proc at read time could name another process.
//
// Credentials can be claimed: a sender may pass its own SCM_CREDENTIALS naming another pid,
// which the kernel allows for its own pid and, with CAP_SYS_ADMIN, for any. The pidfd then names
// the claimed process. systemd-notify does exactly this: it speaks for its parent (systemd 252
// sends its parent's pid), so the shell script that runs it is the sender seen here.
#include "detail/notify.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#if defined(__linux__)
#include <sys/statfs.h>
#endif
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <utility>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/system/system_error.hpp>

#include "detail/sys.hpp"
#include "detail/compat.hpp"
#include "drover/error.hpp"
#include "detail/unique_fd.hpp"

// Linux 6.5; Debian 12's headers (6.1) lack them.
#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#endif
#ifndef SCM_PIDFD
#define SCM_PIDFD 0x04
#endif

namespace drover::detail {

namespace {

namespace asio = boost::asio;

#if defined(__linux__) // the receiving socket's (Linux only; see below)
/// PIDFD_INFO_CGROUPID of <linux/pidfd.h> (6.13+; PIDFD_INFO_PID is 1 << 0, CREDS 1 << 1).
constexpr std::uint64_t pidfd_info_cgroupid = 1ULL << 2;
/// CGROUP2_SUPER_MAGIC of <linux/magic.h>.
constexpr long cgroup2_super_magic = 0x63677270;

/// The largest datagram accepted. The protocol's assignments are short; a bigger datagram is
/// refused whole rather than parsed in part.
constexpr std::size_t max_datagram = 4096;
/// At most this many datagrams are read per wakeup, so that a flooding sender cannot keep the
/// executor from running anything else; the next wait completes at once if more are queued.
constexpr int max_per_wakeup = 64;
/// The most descriptors one SCM_RIGHTS message can carry (SCM_MAX_FD in the kernel).
constexpr std::size_t max_rights = 253;
#endif

/// "STATUS=..." etc.: digits only, not empty, no overflow.
std::optional<std::uint64_t> parse_u64(std::string_view s) {
    if (s.empty()) return std::nullopt;
    for (char c : s)
        if (c < '0' || c > '9') return std::nullopt;
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
    return v;
}

#if defined(__linux__)
/// Bytes a NOTIFY_SOCKET value and log lines can carry as they are: printable ASCII, no space.
char name_byte(char c) {
    return c > ' ' && c < 0x7f ? c : '_';
}

[[noreturn]] void throw_errno(int e, const std::string& what) {
    throw boost::system::system_error(boost::system::error_code(e, boost::system::system_category()), what);
}
#endif

} // namespace

notify_message parse_notify(std::string_view datagram) {
    notify_message m;
    m.text = std::string(datagram);
    std::size_t start = 0;
    while (start <= datagram.size()) {
        std::size_t end = datagram.find('\n', start);
        if (end == std::string_view::npos) end = datagram.size();
        const std::string_view line = datagram.substr(start, end - start);
        start = end + 1;
        const std::size_t eq = line.find('=');
        if (eq == std::string_view::npos || eq == 0) continue; // empty line, or not an assignment
        const std::string_view key = line.substr(0, eq), value = line.substr(eq + 1);
        // A malformed assignment is ignored: the field keeps what an earlier one set, if any.
        if (key == "READY") {
            if (value == "1") m.ready = true;
        } else if (key == "STOPPING") {
            if (value == "1") m.stopping = true;
        } else if (key == "RELOADING") {
            if (value == "1") m.reloading = true;
        } else if (key == "WATCHDOG") {
            if (value == "1")
                m.watchdog = true;
            else if (value == "trigger")
                m.watchdog_trigger = true;
        } else if (key == "STATUS") {
            m.status = std::string(value);
        } else if (key == "WATCHDOG_USEC") {
            if (auto v = parse_u64(value)) m.watchdog_usec = v;
        } else if (key == "EXTEND_TIMEOUT_USEC") {
            if (auto v = parse_u64(value)) m.extend_timeout_usec = v;
        } else if (key == "MAINPID") {
            if (auto v = parse_u64(value); v && *v > 0 && *v <= static_cast<std::uint64_t>(INT_MAX))
                m.mainpid = static_cast<pid_t>(*v);
        }
    }
    return m;
}

#if !defined(__linux__)
// Off Linux there are no cgroups, and the receiving side of the protocol needs what only Linux
// has (abstract socket names, the sender's credentials on each datagram): a service that asks
// for it fails to start, saying why.
std::optional<std::uint64_t> cgroup_id_of(const std::string&) noexcept {
    return std::nullopt;
}

struct notify_socket::impl {
    std::string address;
};

notify_socket::notify_socket(asio::any_io_executor, std::string_view,
                             std::function<bool(const notify_sender&)>, std::function<void(notify_message)>,
                             std::function<void(const notify_sender&, std::string why)>) {
    throw boost::system::system_error(make_error_code(errc::not_supported),
                                      "notify socket: the sd_notify protocol needs Linux (abstract unix "
                                      "sockets, the sender's credentials)");
}

notify_socket::~notify_socket() = default;

const std::string& notify_socket::address() const noexcept {
    return impl_->address;
}
#else
std::optional<std::uint64_t> cgroup_id_of(const std::string& cgroup_dir) noexcept {
    // Only a cgroup2 directory's inode number is a cgroup id; anything else would compare equal
    // to nothing meaningful.
    struct statfs fs {};
    struct stat st {};
    if (::statfs(cgroup_dir.c_str(), &fs) != 0 || fs.f_type != cgroup2_super_magic) return std::nullopt;
    if (::stat(cgroup_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return std::nullopt;
    return static_cast<std::uint64_t>(st.st_ino);
}

struct notify_socket::impl : std::enable_shared_from_this<impl> {
    impl(asio::any_io_executor ex, std::function<bool(const notify_sender&)> b,
         std::function<void(notify_message)> m, std::function<void(const notify_sender&, std::string)> r)
        : sd(std::move(ex)), belongs(std::move(b)), on_message(std::move(m)), on_refused(std::move(r)) {}

    asio::posix::stream_descriptor sd;
    std::string address;
    std::function<bool(const notify_sender&)> belongs;
    std::function<void(notify_message)> on_message;
    std::function<void(const notify_sender&, std::string)> on_refused;

    // Held while datagrams are read and the callbacks run, and by the destructor: with several
    // threads running the executor, ~notify_socket waits for a callback in progress, and no
    // callback starts after it. Recursive, as a callback may destroy the socket itself.
    std::recursive_mutex mutex;
    bool closed = false;

    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int)) +
                                          CMSG_SPACE(sizeof(int) * max_rights)> control{};

    /// Waits for readability (no timer, no polling: idle costs nothing but the registration).
    void arm() {
        sd.async_wait(
            asio::posix::descriptor_base::wait_read,
            [self = shared_from_this()](const boost::system::error_code& ec) { self->readable(ec); });
    }

    void readable(const boost::system::error_code& ec) {
        std::lock_guard lock(mutex);
        if (closed || ec == asio::error::operation_aborted) return;
        if (ec) return; // the descriptor is unusable; nothing more will arrive
        for (int i = 0; i < max_per_wakeup; ++i) {
            if (!receive_one()) break;
            if (closed) return; // a callback destroyed the socket
        }
        arm();
    }

    /// Reads and dispatches one datagram. False when none is left (or reading failed).
    bool receive_one() {
        // One buffer per thread, not per socket (4 KiB resident for each service with readiness
        // by notification): the datagram is parsed into its own strings before any callback.
        static thread_local std::array<char, max_datagram> data;
        iovec iov{data.data(), data.size()};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        // MSG_TRUNC: the datagram's real length even when it did not fit (unix sockets, 3.4+).
        // MSG_CMSG_CLOEXEC: the received descriptors never reach a program spawned meanwhile.
        const ssize_t n = ::recvmsg(sd.native_handle(), &msg, MSG_TRUNC | MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (n < 0) {
            // EINTR: read again. EAGAIN: drained. Anything else (none is expected on a unix
            // datagram socket) ends this round; the re-armed wait tries again.
            return errno == EINTR;
        }

        notify_sender sender;
        // Every descriptor the datagram carried is closed on the way out: the pidfd, and any
        // SCM_RIGHTS a sender attached (FDSTORE=1 and the like are not supported).
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET) continue;
            const std::size_t len = c->cmsg_len - CMSG_LEN(0);
            if (c->cmsg_type == SCM_CREDENTIALS && len >= sizeof(ucred)) {
                ucred cred{};
                std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
                sender.pid = cred.pid;
                sender.uid = cred.uid;
            } else if (c->cmsg_type == SCM_PIDFD && len >= sizeof(int)) {
                int fd = -1;
                std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
                unique_fd pidfd(fd);
                pidfd_info info{};
                // For a sender already reaped, PIDFD_GET_INFO answers only with
                // PIDFD_INFO_EXIT in the request (else ESRCH); the exit record then carries
                // the cgroup the sender died in. For a live sender the cgroup is its current
                // one. ENOTTY/EINVAL before 6.13.
                info.mask = pidfd_info_cgroupid | pidfd_info_exit;
                if (::ioctl(pidfd.get(), pidfd_get_info, &info) == 0 && (info.mask & pidfd_info_cgroupid))
                    sender.cgroup_id = info.cgroupid;
            } else if (c->cmsg_type == SCM_RIGHTS) {
                for (std::size_t k = 0; k + sizeof(int) <= len; k += sizeof(int)) {
                    int fd = -1;
                    std::memcpy(&fd, CMSG_DATA(c) + k, sizeof fd);
                    ::close(fd);
                }
            }
        }

        if (static_cast<std::size_t>(n) > data.size() || (msg.msg_flags & MSG_TRUNC)) {
            on_refused(sender, "datagram of " + std::to_string(n) + " bytes is over the limit of " +
                                   std::to_string(data.size()) + " bytes");
            return true;
        }
        if (!belongs(sender)) {
            std::string why = "sender pid " + std::to_string(sender.pid);
            if (sender.cgroup_id)
                why +=
                    " (cgroup id " + std::to_string(*sender.cgroup_id) + ") is not a process of the service";
            else if (msg.msg_flags & MSG_CTRUNC)
                why += " is not known to be a process of the service: its pidfd was dropped (no "
                       "descriptor free in this process)";
            else
                why += " is not known to be a process of the service: the kernel gave no cgroup for it "
                       "(SO_PASSPIDFD needs Linux 6.5, PIDFD_GET_INFO 6.13)";
            on_refused(sender, std::move(why));
            return true;
        }
        on_message(parse_notify(std::string_view(data.data(), static_cast<std::size_t>(n))));
        return true;
    }
};

notify_socket::notify_socket(asio::any_io_executor ex, std::string_view service_name,
                             std::function<bool(const notify_sender&)> belongs,
                             std::function<void(notify_message)> on_message,
                             std::function<void(const notify_sender&, std::string why)> on_refused)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(belongs), std::move(on_message),
                                   std::move(on_refused))) {
    unique_fd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) throw_errno(errno, "notify socket: socket(AF_UNIX, SOCK_DGRAM)");
    const int on = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0)
        throw_errno(errno, "notify socket: setsockopt(SO_PASSCRED)");
    // Before 6.5 the option is unknown (ENOPROTOOPT): senders then carry no pidfd, so no cgroup,
    // and `belongs` decides without one.
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_PASSPIDFD, &on, sizeof on) != 0 && errno != ENOPROTOOPT)
        throw_errno(errno, "notify socket: setsockopt(SO_PASSPIDFD)");

    // The abstract name: no file to create or remove, gone with the socket. The pid and a
    // counter make it unique in this process; a drover with the same pid in another pid
    // namespace sharing this network namespace may hold the same name, hence the retry with the
    // next counter value on EADDRINUSE.
    static std::atomic<unsigned long> counter{0};
    std::string name;
    for (char c : service_name) name += name_byte(c);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    constexpr std::size_t max_name = sizeof addr.sun_path - 1; // after the leading NUL
    for (int attempt = 0;; ++attempt) {
        std::string path =
            "drover/" + std::to_string(::getpid()) + "/" + std::to_string(counter.fetch_add(1)) + "/";
        // A long service name is cut: the pid and the counter already make the name unique.
        path += name.substr(0, max_name > path.size() ? max_name - path.size() : 0);
        if (path.size() > max_name) throw_errno(ENAMETOOLONG, "notify socket: the address is too long");
        std::memset(addr.sun_path, 0, sizeof addr.sun_path);
        std::memcpy(addr.sun_path + 1, path.data(), path.size());
        const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + path.size());
        if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), len) == 0) {
            impl_->address = "@" + path;
            break;
        }
        if (errno != EADDRINUSE || attempt >= 1000) throw_errno(errno, "notify socket: bind(@" + path + ")");
    }

    boost::system::error_code ec;
    impl_->sd.assign(fd.get(), ec);
    if (ec) throw boost::system::system_error(ec, "notify socket: registering with the reactor");
    fd.release();
    impl_->arm();
}

notify_socket::~notify_socket() {
    std::lock_guard lock(impl_->mutex);
    impl_->closed = true;
    // Cancels the pending wait (its handler sees `closed`) and closes the socket now, so senders
    // get ECONNREFUSED at once instead of filling a queue no one reads.
    boost::system::error_code ignored;
    impl_->sd.close(ignored);
}

const std::string& notify_socket::address() const noexcept {
    return impl_->address;
}
#endif

} // namespace drover::detail
