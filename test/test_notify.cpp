// The notify socket (reliability.md H3): parse_notify, and datagrams from real processes, read
// only after their sender exited and was reaped, accepted when the kernel places the sender in
// the service's cgroup and refused otherwise; no descriptor a sender attaches leaks.
#include "detail/notify.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/use_awaitable.hpp>

#include "detail/sys.hpp"
#include "detail/unique_fd.hpp"
#include "drover/child.hpp"
#include "support.hpp"

using namespace drover;
using namespace drover::test;
using detail::notify_message;
using detail::notify_sender;
using detail::notify_socket;

#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#endif
#ifndef SCM_PIDFD
#define SCM_PIDFD 0x04
#endif

namespace {

constexpr std::uint64_t pidfd_info_cgroupid = 1ULL << 2;
const std::string systemd_notify = "/usr/bin/systemd-notify";

/// What a notify_socket's callbacks saw.
struct seen {
    std::vector<notify_sender> asked; ///< every sender `belongs` was asked about
    std::vector<notify_message> messages;
    std::vector<std::pair<notify_sender, std::string>> refused;
};

/// A notify_socket on `ex` recording into `s`, accepting the senders `accept` accepts.
std::unique_ptr<notify_socket> recording_socket(asio::any_io_executor ex, seen& s,
                                                std::function<bool(const notify_sender&)> accept,
                                                std::string_view name = "svc") {
    return std::make_unique<notify_socket>(
        std::move(ex), name,
        [&s, accept = std::move(accept)](const notify_sender& who) {
            s.asked.push_back(who);
            return accept(who);
        },
        [&s](notify_message m) { s.messages.push_back(std::move(m)); },
        [&s](const notify_sender& who, std::string why) { s.refused.emplace_back(who, std::move(why)); });
}

/// Accepts the senders the kernel places in the cgroup with id `*id`.
std::function<bool(const notify_sender&)> in_cgroup(const std::optional<std::uint64_t>& id) {
    return [&id](const notify_sender& who) { return who.cgroup_id && id && *who.cgroup_id == *id; };
}

/// Sends `text` to the abstract `address` ("@...") from a fresh socket, with `nfds` descriptors
/// of /dev/null attached (SCM_RIGHTS). 0 or an errno. Async-signal-safe (used in forked children).
int send_datagram(std::string_view address, std::string_view text, int nfds = 0) noexcept {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (address.empty() || address[0] != '@' || address.size() > sizeof addr.sun_path) return EINVAL;
    std::memcpy(addr.sun_path + 1, address.data() + 1, address.size() - 1);
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());

    const int s = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return errno;
    std::array<int, 8> fds{};
    nfds = nfds > 8 ? 8 : nfds;
    for (int i = 0; i < nfds; ++i)
        fds[static_cast<std::size_t>(i)] = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)] = {};
    iovec iov{const_cast<char*>(text.data()), text.size()};
    msghdr msg{};
    msg.msg_name = &addr;
    msg.msg_namelen = len;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * static_cast<std::size_t>(nfds));
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * static_cast<std::size_t>(nfds));
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * static_cast<std::size_t>(nfds));
    }
    const int r = ::sendmsg(s, &msg, MSG_NOSIGNAL) < 0 ? errno : 0;
    for (int i = 0; i < nfds; ++i) ::close(fds[static_cast<std::size_t>(i)]);
    ::close(s);
    return r;
}

/// Forks a process that runs `body` (async-signal-safe calls only: the test process has
/// threads) and exits with what it returns; waits for it and reaps it. Its exit code, or -1.
template <typename F>
int fork_and_reap(F body, pid_t* pid_out = nullptr) {
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(body());
    if (pid < 0) return -1;
    if (pid_out) *pid_out = pid;
    int st = 0;
    if (eintr_retry([&] { return ::waitpid(pid, &st, 0); }) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/// Runs the handlers of `ctx` that are ready until `pred` holds (or 5 s passed).
bool poll_until(asio::io_context& ctx, const std::function<bool()>& pred) {
    return eventually([&] {
        ctx.restart();
        ctx.poll();
        return pred();
    });
}

/// Runs handlers of `ctx` for a while; enough for a queued datagram to be read.
void settle(asio::io_context& ctx) {
    for (int i = 0; i < 20; ++i) {
        ctx.restart();
        ctx.poll();
        std::this_thread::sleep_for(5ms);
    }
}

std::string skip_without_systemd_notify() {
    return ::access(systemd_notify.c_str(), X_OK) == 0
               ? ""
               : systemd_notify + " is not installed (Debian: systemd)";
}

} // namespace

TEST_SUITE("notify") {

    TEST_CASE("parse_notify: every assignment, strict numbers, unknown keys and empty lines ignored") {
        auto m = detail::parse_notify("READY=1\nSTOPPING=1\nRELOADING=1\nWATCHDOG=1\nSTATUS=up and running\n"
                                      "WATCHDOG_USEC=30000000\nEXTEND_TIMEOUT_USEC=18446744073709551615\n"
                                      "MAINPID=4242\n");
        CHECK(m.ready);
        CHECK(m.stopping);
        CHECK(m.reloading);
        CHECK(m.watchdog);
        CHECK_FALSE(m.watchdog_trigger);
        CHECK(m.status == "up and running");
        CHECK(m.watchdog_usec == 30000000u);
        CHECK(m.extend_timeout_usec == 18446744073709551615u);
        CHECK(m.mainpid == 4242);
        CHECK(m.text.find("MAINPID=4242") != std::string::npos);

        m = detail::parse_notify("WATCHDOG=trigger");
        CHECK(m.watchdog_trigger);
        CHECK_FALSE(m.watchdog);
        CHECK_FALSE(m.ready);
        CHECK_FALSE(m.status);
        CHECK(m.text == "WATCHDOG=trigger");

        SUBCASE("malformed numbers leave their field empty") {
            for (const char* bad : {"", "-1", "+1", " 1", "1 ", "1x", "0x10", "18446744073709551616",
                                    "99999999999999999999999"}) {
                CAPTURE(bad);
                m = detail::parse_notify(std::string("WATCHDOG_USEC=") + bad +
                                         "\nEXTEND_TIMEOUT_USEC=" + bad + "\nMAINPID=" + bad);
                CHECK_FALSE(m.watchdog_usec);
                CHECK_FALSE(m.extend_timeout_usec);
                CHECK_FALSE(m.mainpid);
            }
            CHECK_FALSE(detail::parse_notify("MAINPID=0").mainpid);
            CHECK_FALSE(detail::parse_notify("MAINPID=2147483648").mainpid); // over pid_t
            CHECK(detail::parse_notify("MAINPID=2147483647").mainpid == 2147483647);
            CHECK(detail::parse_notify("WATCHDOG_USEC=0").watchdog_usec == 0u);
        }
        SUBCASE("unknown keys, values other than 1, lines without '=' and empty lines") {
            m = detail::parse_notify("\n\nFOO=1\nREADY=0\nSTOPPING=yes\nRELOADING\n=1\nWATCHDOG=2\n"
                                     "ready=1\nERRNO=2\nBUSERROR=x\n\n");
            CHECK_FALSE(m.ready);
            CHECK_FALSE(m.stopping);
            CHECK_FALSE(m.reloading);
            CHECK_FALSE(m.watchdog);
            CHECK_FALSE(m.watchdog_trigger);
            CHECK_FALSE(m.status);
            CHECK_FALSE(m.mainpid);
            m = detail::parse_notify("\nREADY=1\n\nSTATUS=\n");
            CHECK(m.ready);
            CHECK(m.status == ""); // an empty status is a status
            m = detail::parse_notify("STATUS=a=b");
            CHECK(m.status == "a=b"); // the value runs to the end of the line
            CHECK(detail::parse_notify("").text.empty());
        }
    }

    TEST_CASE(
        "address: @drover/<pid>/<n>/<name>, unique per socket, the name made printable and cut to fit") {
        asio::io_context ctx;
        seen s;
        auto a = recording_socket(
            ctx.get_executor(), s, [](auto&) { return true; }, "web");
        auto b = recording_socket(
            ctx.get_executor(), s, [](auto&) { return true; }, "web");
        const std::string prefix = "@drover/" + std::to_string(::getpid()) + "/";
        CHECK(a->address().rfind(prefix, 0) == 0);
        CHECK(a->address().size() > prefix.size() + 4);
        CHECK(a->address().substr(a->address().size() - 4) == "/web");
        CHECK(a->address() != b->address());

        auto odd = recording_socket(
            ctx.get_executor(), s, [](auto&) { return true; }, "a b\nc");
        CHECK(odd->address().substr(odd->address().size() - 6) == "/a_b_c");
        auto long_name = recording_socket(
            ctx.get_executor(), s, [](auto&) { return true; }, std::string(300, 'x'));
        CHECK(long_name->address().size() == 108); // '@' and the 107 bytes after sun_path's NUL
        CHECK(send_datagram(long_name->address(), "READY=1") == 0);
        CHECK(poll_until(ctx, [&] { return s.messages.size() == 1; }));
        // Idle, nothing is ready to run: no timer, no polling.
        ctx.restart();
        CHECK(ctx.poll() == 0);
    }

    TEST_CASE("kernel: every datagram carries an SCM_PIDFD; a reaped sender's pidfd says Pid: -1 and still "
              "gives the cgroup it was in") {
        DROVER_SKIP_IF(needs_cgroup_v2());
        detail::unique_fd sock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        REQUIRE(sock);
        const int on = 1;
        REQUIRE(::setsockopt(sock.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) == 0);
        if (::setsockopt(sock.get(), SOL_SOCKET, SO_PASSPIDFD, &on, sizeof on) != 0) {
            REQUIRE(errno == ENOPROTOOPT);
            DROVER_SKIP("the kernel has no SO_PASSPIDFD (Linux 6.5)");
        }
        const std::string name = "@drover-test/" + std::to_string(::getpid()) + "/kernel";
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::memcpy(addr.sun_path + 1, name.data() + 1, name.size() - 1);
        REQUIRE(::bind(sock.get(), reinterpret_cast<const sockaddr*>(&addr),
                       static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size())) == 0);

        // Three senders: one exited and reaped, one exited and not yet reaped (a zombie), and
        // this process.
        pid_t sender = 0;
        REQUIRE(fork_and_reap([&] { return send_datagram(name, "gone"); }, &sender) == 0);
        const pid_t zombie = ::fork();
        if (zombie == 0) ::_exit(send_datagram(name, "zombie"));
        REQUIRE(zombie > 0);
        siginfo_t si{};
        REQUIRE(eintr_retry(
                    [&] { return ::waitid(P_PID, static_cast<id_t>(zombie), &si, WEXITED | WNOWAIT); }) == 0);
        struct reap_zombie {
            pid_t pid;
            ~reap_zombie() {
                eintr_retry([&] { return ::waitpid(pid, nullptr, 0); });
            }
        } reaper{zombie};
        REQUIRE(send_datagram(name, "alive") == 0);
        const auto own_id = detail::cgroup_id_of(detail::probe_cgroup().own);
        REQUIRE(own_id);

        for (std::string_view expected : {"gone", "zombie", "alive"}) {
            CAPTURE(expected);
            char buf[64];
            alignas(cmsghdr) char control[256];
            iovec iov{buf, sizeof buf};
            msghdr msg{};
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control;
            msg.msg_controllen = sizeof control;
            const ssize_t n = ::recvmsg(sock.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
            REQUIRE(n == static_cast<ssize_t>(expected.size()));
            CHECK(std::string_view(buf, static_cast<std::size_t>(n)) == expected);
            detail::unique_fd pidfd;
            pid_t cred_pid = 0;
            for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
                if (c->cmsg_level != SOL_SOCKET) continue;
                if (c->cmsg_type == SCM_PIDFD) {
                    int fd;
                    std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
                    pidfd.reset(fd);
                } else if (c->cmsg_type == SCM_CREDENTIALS) {
                    ucred cr;
                    std::memcpy(&cr, CMSG_DATA(c), sizeof cr);
                    cred_pid = cr.pid;
                }
            }
            REQUIRE(pidfd);
            const bool gone = expected == "gone";
            const pid_t pid = gone ? sender : expected == "zombie" ? zombie : ::getpid();
            CHECK(cred_pid == pid);
            const std::string fdinfo = read_file("/proc/self/fdinfo/" + std::to_string(pidfd.get()));
            CHECK(fdinfo.find("\nPid:\t" + std::to_string(gone ? -1 : pid) + "\n") != std::string::npos);

            detail::pidfd_info info{};
            info.mask = pidfd_info_cgroupid;
            const int r = ::ioctl(pidfd.get(), detail::pidfd_get_info, &info);
            if (r != 0 && (errno == ENOTTY || errno == EINVAL))
                DROVER_SKIP("the kernel has no PIDFD_GET_INFO (Linux 6.13)");
            if (gone) {
                // Asked for the cgroup alone, a reaped process has nothing to say.
                CHECK(r == -1);
                CHECK(errno == ESRCH);
                // With PIDFD_INFO_EXIT in the request, its exit record answers, cgroup included.
                info = {};
                info.mask = pidfd_info_cgroupid | detail::pidfd_info_exit;
                REQUIRE(::ioctl(pidfd.get(), detail::pidfd_get_info, &info) == 0);
                CHECK((info.mask & detail::pidfd_info_exit) != 0);
                CHECK(WIFEXITED(info.exit_code));
            } else {
                REQUIRE(r == 0);
            }
            REQUIRE((info.mask & pidfd_info_cgroupid) != 0);
            CHECK(info.cgroupid == *own_id);
        }
    }

    TEST_CASE("systemd-notify run by a service's script: READY and STATUS are accepted though the sender was "
              "reaped before the datagram was read") {
        DROVER_SKIP_IF(needs_cgroup_v2());
        DROVER_SKIP_IF(skip_without_systemd_notify());
        // Two io_contexts: the child's runs until the service is reaped; only then does the
        // notify socket's run, so the datagram is read from a sender that no longer exists.
        asio::io_context notify_ctx;
        asio::io_context child_ctx;
        seen s;
        std::optional<std::uint64_t> leaf_id;
        auto ns = recording_socket(notify_ctx.get_executor(), s, in_cgroup(leaf_id));

        // systemd-notify (252) sends with its parent's pid in SCM_CREDENTIALS (it speaks for the
        // script that runs it), so the kernel's pidfd is the shell's: the shell is the sender.
        // "; exit $?" keeps the shell from exec'ing systemd-notify as its last command.
        // --no-block: no BARRIER=1 round trip, which would wait for a reader.
        command cmd("/bin/sh", {"-c", systemd_notify + " --ready --status=up --no-block; exit $?"});
        cmd.env("NOTIFY_SOCKET", ns->address()).cgroup(cgroup_mode::required);
        child c = spawn(child_ctx.get_executor(), cmd);
        REQUIRE(c.cgroup_path());
        leaf_id = detail::cgroup_id_of(*c.cgroup_path());
        REQUIRE(leaf_id);
        const pid_t shell = *c.id();
        CHECK(run(child_ctx, c.async_wait(asio::use_awaitable)) == exit_status::exited(0));
        CHECK_FALSE(c.id()); // reaped

        CHECK(poll_until(notify_ctx, [&] { return s.messages.size() + s.refused.size() >= 1; }));
        settle(notify_ctx);
        REQUIRE(s.asked.size() == 1);
        CHECK(s.asked[0].pid == shell);
        CHECK(s.asked[0].uid == 0u);
        CHECK(s.asked[0].cgroup_id == leaf_id);
        CHECK(s.refused.empty());
        REQUIRE(s.messages.size() == 1);
        CHECK(s.messages[0].ready);
        CHECK(s.messages[0].status == "up");
    }

    TEST_CASE("systemd-notify as the service's main process speaks for drover's process: refused") {
        DROVER_SKIP_IF(needs_cgroup_v2());
        DROVER_SKIP_IF(skip_without_systemd_notify());
        asio::io_context notify_ctx;
        asio::io_context child_ctx;
        seen s;
        std::optional<std::uint64_t> leaf_id;
        auto ns = recording_socket(notify_ctx.get_executor(), s, in_cgroup(leaf_id));
        command cmd(systemd_notify, {"--ready", "--no-block"});
        cmd.env("NOTIFY_SOCKET", ns->address()).cgroup(cgroup_mode::required);
        child c = spawn(child_ctx.get_executor(), cmd);
        REQUIRE(c.cgroup_path());
        leaf_id = detail::cgroup_id_of(*c.cgroup_path());
        CHECK(run(child_ctx, c.async_wait(asio::use_awaitable)) == exit_status::exited(0));

        CHECK(poll_until(notify_ctx, [&] { return s.asked.size() >= 1; }));
        settle(notify_ctx);
        REQUIRE(s.asked.size() == 1);
        if (s.asked[0].pid == ::getpid()) {
            // It claimed its parent, this process, which is outside the service's cgroup.
            CHECK(s.asked[0].cgroup_id != leaf_id);
            CHECK(s.messages.empty());
            REQUIRE(s.refused.size() == 1);
            CHECK(s.refused[0].second.find(std::to_string(::getpid())) != std::string::npos);
        } else {
            MESSAGE("this systemd-notify sends as itself (systemd 254+): accepted");
            CHECK(s.messages.size() == 1);
        }
    }

    TEST_CASE(
        "a raw datagram from a process of the service's cgroup, reaped before the read, is accepted; the "
        "descriptors it attached are closed") {
        DROVER_SKIP_IF(needs_cgroup_v2());
        asio::io_context notify_ctx;
        asio::io_context child_ctx;
        seen s;
        std::optional<std::uint64_t> leaf_id;
        auto ns = recording_socket(notify_ctx.get_executor(), s, in_cgroup(leaf_id));
        child c = spawn(child_ctx.get_executor(), helper({"sleep", "30000"}).cgroup(cgroup_mode::required));
        REQUIRE(c.cgroup_path());
        leaf_id = detail::cgroup_id_of(*c.cgroup_path());
        REQUIRE(leaf_id);

        // drover-test-child cannot send a datagram, so a forked copy of this process joins the
        // service's cgroup (as a process the service forked would be in it), sends a plain
        // datagram (no SCM_CREDENTIALS of its own: the kernel fills them in) with three
        // descriptors attached, and exits; it is reaped before anything reads the socket.
        const std::string procs = *c.cgroup_path() + "/cgroup.procs";
        const std::string address = ns->address();
        pid_t sender = 0;
        const int code = fork_and_reap(
            [&] {
                const int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
                if (fd < 0 || ::write(fd, "0", 1) != 1) return 10;
                ::close(fd);
                return send_datagram(address, "READY=1\nSTATUS=raw\nMAINPID=77", 3) == 0 ? 0 : 11;
            },
            &sender);
        REQUIRE(code == 0);

        const int fds_before = open_fd_count();
        CHECK(poll_until(notify_ctx, [&] { return s.asked.size() >= 1; }));
        settle(notify_ctx);
        CHECK(open_fd_count() == fds_before);
        REQUIRE(s.asked.size() == 1);
        CHECK(s.asked[0].pid == sender);
        CHECK(s.asked[0].cgroup_id == leaf_id);
        CHECK(s.refused.empty());
        REQUIRE(s.messages.size() == 1);
        CHECK(s.messages[0].ready);
        CHECK(s.messages[0].status == "raw");
        CHECK(s.messages[0].mainpid == 77);

        run(child_ctx, c.async_kill(asio::use_awaitable));
    }

    TEST_CASE("a datagram from outside the service is refused with a reason; its descriptors do not leak") {
        DROVER_SKIP_IF(needs_cgroup_v2());
        asio::io_context notify_ctx;
        asio::io_context child_ctx;
        seen s;
        std::optional<std::uint64_t> leaf_id;
        auto ns = recording_socket(notify_ctx.get_executor(), s, in_cgroup(leaf_id));
        child c = spawn(child_ctx.get_executor(), helper({"sleep", "30000"}).cgroup(cgroup_mode::required));
        REQUIRE(c.cgroup_path());
        leaf_id = detail::cgroup_id_of(*c.cgroup_path());
        REQUIRE(leaf_id);

        const int fds_before = open_fd_count();
        REQUIRE(send_datagram(ns->address(), "READY=1\nFDSTORE=1", 5) == 0);
        CHECK(poll_until(notify_ctx, [&] { return s.refused.size() >= 1; }));
        settle(notify_ctx);
        CHECK(open_fd_count() == fds_before);
        CHECK(s.messages.empty());
        REQUIRE(s.refused.size() == 1);
        CHECK(s.refused[0].first.pid == ::getpid());
        CHECK_FALSE(s.refused[0].second.empty());
        MESSAGE("refused: " << s.refused[0].second);
        // Where the kernel reports it, the sender's cgroup is this process's.
        if (s.refused[0].first.cgroup_id)
            CHECK(s.refused[0].first.cgroup_id == detail::cgroup_id_of(detail::probe_cgroup().own));

        run(child_ctx, c.async_kill(asio::use_awaitable));
    }

    TEST_CASE("an oversized datagram is refused and the socket keeps working") {
        asio::io_context ctx;
        seen s;
        auto ns = recording_socket(ctx.get_executor(), s, [](auto&) { return true; });
        const int fds_before = open_fd_count();
        REQUIRE(send_datagram(ns->address(), "READY=1\n" + std::string(5000, 'x'), 2) == 0);
        REQUIRE(send_datagram(ns->address(), "STATUS=" + std::string(4096 - 7, 'y')) == 0); // the limit
        REQUIRE(send_datagram(ns->address(), "READY=1") == 0);
        CHECK(poll_until(ctx, [&] { return s.messages.size() >= 2; }));
        settle(ctx);
        CHECK(open_fd_count() == fds_before);
        REQUIRE(s.refused.size() == 1);
        CHECK(s.refused[0].second.find("5008 bytes") != std::string::npos);
        REQUIRE(s.messages.size() == 2);
        CHECK(s.messages[0].status == std::string(4096 - 7, 'y'));
        CHECK(s.messages[1].ready);
        CHECK(s.messages[1].text == "READY=1");
    }

    TEST_CASE("200 datagrams from a sender blocked on the full queue all arrive, in order") {
        // The kernel queues 10 datagrams by default (net.unix.max_dgram_qlen); the sender waits
        // for each read, so every wakeup and re-arm of the wait is exercised.
        asio::io_context ctx;
        seen s;
        auto ns = recording_socket(ctx.get_executor(), s, [](auto&) { return true; });
        std::thread sender([address = ns->address()] {
            for (int i = 0; i < 200; ++i) {
                const std::string text = "STATUS=" + std::to_string(i);
                while (send_datagram(address, text) == EINTR) {
                }
            }
        });
        CHECK(poll_until(ctx, [&] { return s.messages.size() >= 200; }));
        if (s.messages.size() < 200) ns.reset(); // the sender's next send fails: it ends
        sender.join();
        settle(ctx);
        REQUIRE(s.messages.size() == 200);
        for (std::size_t i = 0; i < s.messages.size(); ++i) CHECK(s.messages[i].status == std::to_string(i));
    }

    TEST_CASE("no callback runs after the notify_socket is destroyed") {
        asio::io_context ctx;
        seen s;
        SUBCASE("destroyed with a datagram pending") {
            auto ns = recording_socket(ctx.get_executor(), s, [](auto&) { return true; });
            const std::string address = ns->address();
            REQUIRE(send_datagram(address, "READY=1") == 0);
            ns.reset();
            settle(ctx);
            CHECK(s.asked.empty());
            CHECK(s.messages.empty());
            CHECK(s.refused.empty());
            CHECK(send_datagram(address, "READY=1") == ECONNREFUSED); // the socket is closed
            ctx.restart();
            CHECK(ctx.poll() == 0);
        }
        SUBCASE("destroyed by its own callback, with a second datagram queued") {
            std::unique_ptr<notify_socket> ns;
            ns = std::make_unique<notify_socket>(
                ctx.get_executor(), "svc", [](auto&) { return true; },
                [&](notify_message m) {
                    s.messages.push_back(std::move(m));
                    ns.reset();
                },
                [&](auto&, std::string why) { s.refused.emplace_back(notify_sender{}, std::move(why)); });
            REQUIRE(send_datagram(ns->address(), "READY=1") == 0);
            REQUIRE(send_datagram(ns->address(), "STOPPING=1") == 0);
            settle(ctx);
            CHECK_FALSE(ns);
            REQUIRE(s.messages.size() == 1);
            CHECK(s.messages[0].ready);
            CHECK(s.refused.empty());
        }
    }
}
