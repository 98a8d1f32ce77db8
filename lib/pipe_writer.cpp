#include "drover/pipe_writer.hpp"

#include "detail/fault.hpp"
#include "detail/pipe_writer_access.hpp"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include <boost/asio/compose.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

namespace asio = boost::asio;

namespace drover {
namespace {

/// One write(2) with SIGPIPE blocked in this thread. If the write raised SIGPIPE (EPIPE) and no
/// SIGPIPE was pending for the thread before, the one the kernel queued is consumed, so it is
/// never delivered when the mask is restored. The process-wide disposition is untouched (E5).
ssize_t write_without_sigpipe(int fd, const void* p, std::size_t n) noexcept {
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    bool masked = ::pthread_sigmask(SIG_BLOCK, &pipe_set, &old) == 0;
    bool was_pending = false;
    if (masked) {
        sigset_t pending;
        if (::sigpending(&pending) == 0) was_pending = sigismember(&pending, SIGPIPE) == 1;
    }
    ssize_t r;
    do r = detail::f_write(fd, p, n);
    while (r < 0 && errno == EINTR);
    int err = errno;
    if (masked) {
        if (r < 0 && err == EPIPE && !was_pending) {
#if defined(__APPLE__) // no sigtimedwait: sigwait, only once SIGPIPE is known pending
            sigset_t now;
            int got = 0;
            if (::sigpending(&now) == 0 && sigismember(&now, SIGPIPE) == 1) ::sigwait(&pipe_set, &got);
#else
            const timespec zero{0, 0};
            while (::sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
            }
#endif
        }
        ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    }
    errno = err;
    return r;
}

struct write_op {
    pipe_writer* w;
    asio::posix::stream_descriptor* fd;
    asio::const_buffer data;
    bool all;
    std::size_t done = 0;
    bool started = false;

    template <typename Self>
    void operator()(Self& self, error_code ec = {}) {
        const bool first = !started;
        started = true;
        if (first) {
            // Never complete inline from the initiating function.
            auto ex = fd->get_executor();
            return asio::post(ex, [self = std::move(self)]() mutable { self(error_code{}); });
        }
        // Cancelled, closed, or the writer destroyed (its descriptor too): complete without
        // touching the descriptor again.
        if (ec) return self.complete(ec, done);
        while (done < data.size()) {
            error_code wec;
            std::size_t n = pipe_writer_access::write_now(
                *w, asio::buffer(static_cast<const char*>(data.data()) + done, data.size() - done), wec);
            done += n;
            if (wec == asio::error::would_block) break;
            if (wec) return self.complete(wec, done);
            if (!all && done > 0) return self.complete(error_code{}, done);
        }
        if (done == data.size()) return self.complete(error_code{}, done);
        // Asio re-arms the descriptor (EPOLL_CTL_MOD) for each new wait, so room freed before
        // the wait is queued is still reported.
        fd->async_wait(asio::posix::descriptor_base::wait_write, std::move(self));
    }
};

} // namespace

std::size_t pipe_writer::write_some_blocking(asio::const_buffer data, error_code& ec) noexcept {
    for (;;) {
        std::size_t n = write_some_now(data, ec);
        if (ec != asio::error::would_block) return n;
        pollfd p{fd_.native_handle(), POLLOUT, 0};
        int r;
        do r = ::poll(&p, 1, -1);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
            ec = error_code(errno, boost::system::system_category());
            return 0;
        }
    }
}

std::size_t pipe_writer::write_some_now(asio::const_buffer data, error_code& ec) noexcept {
    ec.clear();
    if (!fd_.is_open()) {
        ec = asio::error::bad_descriptor;
        return 0;
    }
    if (data.size() == 0) return 0;
    ssize_t n = write_without_sigpipe(fd_.native_handle(), data.data(), data.size());
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        ec = asio::error::would_block;
    else
        ec = error_code(errno, boost::system::system_category());
    return 0;
}

void detail::initiate_pipe_write(pipe_writer* self, asio::const_buffer data, bool all,
                                 asio::any_completion_handler<pipe_writer::write_signature> handler) {
    asio::async_compose<asio::any_completion_handler<pipe_writer::write_signature>,
                        pipe_writer::write_signature>(write_op{self, &self->fd_, data, all}, handler,
                                                      self->fd_);
}

} // namespace drover
