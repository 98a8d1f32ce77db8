// drover (private): the receiving side of the sd_notify protocol, one datagram socket per
// service, with each sender checked to be a process of that service's tree (reliability.md, H3).
#pragma once

#include <sys/types.h>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/any_io_executor.hpp>

namespace drover::detail {

/// The assignments of one notify datagram (newline-separated VAR=VALUE; unknown ones ignored).
struct notify_message {
    bool ready = false;                               ///< READY=1
    bool stopping = false;                            ///< STOPPING=1
    bool reloading = false;                           ///< RELOADING=1
    bool watchdog = false;                            ///< WATCHDOG=1
    bool watchdog_trigger = false;                    ///< WATCHDOG=trigger
    std::optional<std::string> status;                ///< STATUS=
    std::optional<std::uint64_t> watchdog_usec;       ///< WATCHDOG_USEC=
    std::optional<std::uint64_t> extend_timeout_usec; ///< EXTEND_TIMEOUT_USEC=
    std::optional<pid_t> mainpid;                     ///< MAINPID=
    std::string text; ///< the datagram as received (for events; escape before logging)
};

/// Parses one datagram. Malformed numbers leave their field empty.
notify_message parse_notify(std::string_view datagram);

/// Who sent a datagram, as the kernel says (SCM_PIDFD, SCM_CREDENTIALS).
struct notify_sender {
    pid_t pid = 0; ///< from SCM_CREDENTIALS (0 if absent)
    uid_t uid = 0;
    std::optional<std::uint64_t> cgroup_id; ///< from the SCM_PIDFD's PIDFD_GET_INFO (6.13+)
};

/// The cgroup v2 id of a cgroup directory (its inode number), as PIDFD_INFO_CGROUPID reports it.
std::optional<std::uint64_t> cgroup_id_of(const std::string& cgroup_dir) noexcept;

/// One service's notify socket: an abstract unix datagram socket ("@drover/<pid>/<n>/<name>")
/// with SO_PASSCRED and, where the kernel has it (6.5+), SO_PASSPIDFD.
class notify_socket {
public:
    /// `belongs(sender)` decides whether a datagram is accepted; `on_message` gets the accepted
    /// ones, `on_refused(sender, why)` the others. All three run on `ex`.
    notify_socket(boost::asio::any_io_executor ex, std::string_view service_name,
                  std::function<bool(const notify_sender&)> belongs,
                  std::function<void(notify_message)> on_message,
                  std::function<void(const notify_sender&, std::string why)> on_refused);
    ~notify_socket(); ///< closes the socket; no callback runs after it
    notify_socket(const notify_socket&) = delete;
    notify_socket& operator=(const notify_socket&) = delete;

    /// The value for the service's NOTIFY_SOCKET ("@drover/...").
    const std::string& address() const noexcept;

private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

} // namespace drover::detail
