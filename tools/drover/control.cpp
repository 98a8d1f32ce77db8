// drover (the program): the control API server of `drover up` (see control.hpp for the API).
#include "control.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include "drover/escape.hpp"
#include "drover/http_api.hpp"

namespace drover::up {

namespace {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using namespace std::chrono_literals;

constexpr std::size_t max_socket_path = sizeof(sockaddr_un{}.sun_path) - 1; // 107 on Linux

void make_dirs_0700(const std::filesystem::path& dir) {
    std::filesystem::path p;
    for (const auto& part : dir) {
        p /= part;
        if (::mkdir(p.c_str(), 0700) != 0 && errno != EEXIST)
            throw std::system_error(errno, std::generic_category(),
                                    "cannot create the directory '" + p.string() + "'");
    }
}

} // namespace

// ---- the server --------------------------------------------------------------------------------

struct control_server::impl : std::enable_shared_from_this<impl> {
    impl(asio::any_io_executor e, supervisor& s, control_hooks h, std::string token)
        : ex(std::move(e)), api(ex, s, options(std::move(h), std::move(token))), acceptor(ex) {}

    static http_api_options options(control_hooks h, std::string token) {
        http_api_options o;
        o.reload = std::move(h.reload);
        o.shutdown = std::move(h.shutdown);
        o.token = std::move(token);
        return o;
    }

    asio::any_io_executor ex;
    http_api api;
    local::acceptor acceptor;
    std::string path;
    dev_t dev = 0;
    ino_t ino = 0;
    bool bound = false;
    bool closed = false;

    void close() {
        if (closed) return;
        closed = true;
        error_code ec;
        acceptor.close(ec);
        api.close();
        if (bound) {
            // Only our own socket: another drover up may have replaced a path we lost.
            struct stat st {};
            if (::lstat(path.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino)
                ::unlink(path.c_str());
        }
    }

    static asio::awaitable<void> accept_loop(std::shared_ptr<impl> self) {
        for (;;) {
            error_code ec;
            local::socket sock =
                co_await self->acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
            if (self->closed || ec == asio::error::operation_aborted) co_return;
            if (ec) {
                // EMFILE and the like: pause instead of spinning on the same error.
                asio::steady_timer t(self->ex, 100ms);
                co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
                if (self->closed) co_return;
                continue;
            }
            self->api.serve(std::move(sock));
        }
    }
};

control_server::control_server(asio::any_io_executor ex, supervisor& sup, control_hooks hooks,
                               std::string token)
    : impl_(std::make_shared<impl>(std::move(ex), sup, std::move(hooks), std::move(token))) {}

control_server::~control_server() {
    impl_->close();
}

const std::string& control_server::path() const noexcept {
    return impl_->path;
}

void control_server::close() {
    impl_->close();
}

void control_server::listen_http(const std::string& address) {
    impl_->api.listen(address);
}

std::string control_server::http_address() const {
    return impl_->api.local_address();
}

void control_server::listen(const std::string& path) {
    if (impl_->bound || impl_->closed) throw std::logic_error("control_server::listen called twice");
    if (path.empty()) throw std::runtime_error("the control socket path is empty");
    if (path.size() > max_socket_path)
        throw std::runtime_error(
            fmt::format("the control socket path '{}' is too long ({} bytes; a unix socket "
                        "path has at most {})",
                        escape(path), path.size(), max_socket_path));
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) make_dirs_0700(parent);

    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            throw std::runtime_error(
                fmt::format("'{}' exists and is not a socket: not replacing it", escape(path)));
        // A socket file outlives the drover up that made it if that one died: a connect tells.
        // Non-blocking, so a live server with a full backlog (EAGAIN) counts as live.
        const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        path.copy(addr.sun_path, path.size());
        const int r = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
        const int err = errno;
        ::close(fd);
        if (r == 0 || err == EAGAIN)
            throw std::runtime_error(fmt::format("another drover up is listening on '{}'", escape(path)));
        if (err != ECONNREFUSED)
            throw std::system_error(err, std::generic_category(),
                                    fmt::format("cannot check the existing socket '{}'", escape(path)));
        if (::unlink(path.c_str()) != 0 && errno != ENOENT)
            throw std::system_error(errno, std::generic_category(),
                                    fmt::format("cannot remove the stale socket '{}'", escape(path)));
    } else if (errno != ENOENT) {
        throw std::system_error(errno, std::generic_category(),
                                fmt::format("cannot stat '{}'", escape(path)));
    }

    auto& acc = impl_->acceptor;
    error_code ec;
    acc.open(local(), ec);
    if (ec) throw std::system_error(ec.value(), std::generic_category(), "cannot create the control socket");
    // The file is created by bind() with the umask's mode; no moment at which another user
    // could connect to it. The chmod after makes the mode exact whatever the umask gave.
    const mode_t old = ::umask(0177);
    acc.bind(local::endpoint(path), ec);
    ::umask(old);
    if (ec) {
        acc.close();
        throw std::system_error(ec.value(), std::generic_category(),
                                fmt::format("cannot bind '{}'", escape(path)));
    }
    impl_->path = path;
    impl_->bound = true;
    if (::chmod(path.c_str(), 0600) != 0 || ::lstat(path.c_str(), &st) != 0) {
        const int err = errno;
        impl_->close();
        throw std::system_error(err, std::generic_category(),
                                fmt::format("cannot set the mode of '{}'", escape(path)));
    }
    impl_->dev = st.st_dev;
    impl_->ino = st.st_ino;
    acc.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        impl_->close();
        throw std::system_error(ec.value(), std::generic_category(),
                                fmt::format("cannot listen on '{}'", escape(path)));
    }
    asio::co_spawn(impl_->ex, impl::accept_loop(impl_), asio::detached);
}

// ---- default_socket_path -----------------------------------------------------------------------

std::string default_socket_path(const std::string& config_path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::path abs = fs::absolute(config_path, ec);
    if (ec) abs = fs::path(config_path);
    fs::path dir = abs.parent_path();
    // Resolved, so a project reached through a symlink gets the same socket either way.
    if (fs::path canon = fs::weakly_canonical(dir, ec); !ec) dir = canon;
    dir = dir.lexically_normal();
    std::string key = dir.string();
    if (key.size() > 1 && key.back() == '/') key.pop_back();

    std::string runtime;
    if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x != nullptr && *x != '\0')
        runtime = std::string(x) + "/drover";
    else if (::geteuid() == 0)
        runtime = "/run/drover";
    else
        return (dir / ".drover.sock").string();

    std::uint64_t h = 14695981039346656037ULL; // FNV-1a: stable across runs and builds
    for (unsigned char ch : key) {
        h ^= ch;
        h *= 1099511628211ULL;
    }
    const std::string hash = fmt::format("{:016x}", h);
    std::string label = dir.filename().string();
    if (label.empty()) label = "root";
    for (char& ch : label) {
        const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                        ch == '-' || ch == '_' || ch == '.';
        if (!ok) ch = '_';
    }
    if (label.size() > 32) label.resize(32);
    if (label[0] == '.') label[0] = '_'; // no hidden files
    std::string full = fmt::format("{}/{}-{}.sock", runtime, label, hash);
    if (full.size() <= max_socket_path) return full;
    return fmt::format("{}/{}.sock", runtime, hash);
}

} // namespace drover::up
