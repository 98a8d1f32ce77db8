// drover: the parent's end of a child's stdin pipe; writes report EPIPE, never raise SIGPIPE.
#pragma once

#include <cstddef>
#include <string_view>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "drover/error.hpp"

namespace drover {

class pipe_writer;

namespace detail {
// Initiates pipe_writer's writes with a type-erased handler (defined in libdrover).
void initiate_pipe_write(pipe_writer* self, boost::asio::const_buffer data, bool all,
                         boost::asio::any_completion_handler<void(error_code, std::size_t)> handler);
} // namespace detail

/// The write end of a pipe to a child (`child::std_in()`).
///
/// Writing to a child that has exited or closed its stdin fails with `EPIPE`
/// (`boost::asio::error::broken_pipe`) as an error; the process is never killed by SIGPIPE and
/// its SIGPIPE disposition is never changed. (Each write blocks SIGPIPE in the calling thread
/// for the duration of the `write(2)` and consumes the SIGPIPE the kernel queued for it.)
///
/// It is an Asio AsyncWriteStream and SyncWriteStream, so `asio::async_write` and
/// `asio::write` work on it (the synchronous forms block the calling thread while the pipe is
/// full). Like every Asio I/O object, it must not be used from two threads
/// at once, and the data written must stay valid until the operation completes.
class pipe_writer {
public:
    using executor_type = boost::asio::any_io_executor;
    using write_signature = void(error_code, std::size_t);

    explicit pipe_writer(const executor_type& ex) : fd_(ex) {}

    executor_type get_executor() noexcept { return fd_.get_executor(); }

    /// Writes all of `data`, then completes with the byte count (or the error and the bytes
    /// written before it). `co_await w.write(buf)` works with the default token.
    template <typename CompletionToken = boost::asio::deferred_t>
    auto write(boost::asio::const_buffer data, CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken, write_signature>(
            [](auto handler, pipe_writer* self, boost::asio::const_buffer d) {
                detail::initiate_pipe_write(self, d, true, std::move(handler));
            },
            token, this, data);
    }
    template <typename CompletionToken = boost::asio::deferred_t>
    auto write(std::string_view data, CompletionToken&& token = {}) {
        return write(boost::asio::buffer(data.data(), data.size()), std::forward<CompletionToken>(token));
    }

    /// AsyncWriteStream: writes some of the first non-empty buffer.
    template <typename ConstBufferSequence, typename CompletionToken>
    auto async_write_some(const ConstBufferSequence& buffers, CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, write_signature>(
            [](auto handler, pipe_writer* self, boost::asio::const_buffer d) {
                detail::initiate_pipe_write(self, d, false, std::move(handler));
            },
            token, this, first_buffer(buffers));
    }

    /// SyncWriteStream: writes some bytes, blocking the calling thread while the pipe is full.
    template <typename ConstBufferSequence>
    std::size_t write_some(const ConstBufferSequence& buffers, error_code& ec) {
        return write_some_blocking(first_buffer(buffers), ec);
    }
    template <typename ConstBufferSequence>
    std::size_t write_some(const ConstBufferSequence& buffers) {
        error_code ec;
        std::size_t n = write_some_blocking(first_buffer(buffers), ec);
        if (ec) throw boost::system::system_error(ec, "pipe_writer::write_some");
        return n;
    }

    /// Closes the pipe: the child reads EOF. A pending write completes with `operation_aborted`
    /// and the bytes written so far.
    void close() { fd_.close(); }
    void close(error_code& ec) noexcept { fd_.close(ec); }
    bool is_open() const noexcept { return fd_.is_open(); }
    int native_handle() noexcept { return fd_.native_handle(); }
    /// Cancels a pending write: it completes with `operation_aborted` and the bytes written.
    void cancel() { fd_.cancel(); }
    void cancel(error_code& ec) noexcept { fd_.cancel(ec); }

private:
    friend struct pipe_writer_access; // spawn() assigns the pipe

    template <typename ConstBufferSequence>
    static boost::asio::const_buffer first_buffer(const ConstBufferSequence& buffers) {
        for (auto it = boost::asio::buffer_sequence_begin(buffers);
             it != boost::asio::buffer_sequence_end(buffers); ++it) {
            boost::asio::const_buffer b(*it);
            if (b.size() != 0) return b;
        }
        return {};
    }
    std::size_t write_some_now(boost::asio::const_buffer data, error_code& ec) noexcept;
    std::size_t write_some_blocking(boost::asio::const_buffer data, error_code& ec) noexcept;
    friend void detail::initiate_pipe_write(pipe_writer* self, boost::asio::const_buffer data, bool all,
                                            boost::asio::any_completion_handler<write_signature> handler);

    boost::asio::posix::stream_descriptor fd_;
};

} // namespace drover
