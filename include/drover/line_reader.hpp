// drover: a child's output as lines (or chunks), with a bound on line length.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "drover/error.hpp"

namespace drover {

/// One line of output, without its `\n` (and, from a terminal, without the `\r` before it).
struct line {
    std::string text;          ///< at most the reader's `max_length` bytes
    std::uint64_t dropped = 0; ///< bytes of this line beyond `max_length`, read and discarded
    bool complete = true;      ///< false for a last line that ended without `\n`

    bool truncated() const noexcept { return dropped != 0; }
};

class line_reader;

namespace detail {
// Initiate line_reader's operations with a type-erased handler (defined in libdrover).
void initiate_line_read(line_reader* self,
                        boost::asio::any_completion_handler<void(error_code, std::optional<line>)> h);
void initiate_chunk_read(line_reader* self,
                         boost::asio::any_completion_handler<void(error_code, std::string)> h);
} // namespace detail

/// Reads a child's stdout or stderr (`child::std_out()`, `std_err()`) or its terminal
/// (`child::pty()`) line by line:
///
/// <!-- snippet: coroutine given: drover::child& c -->
/// ```cpp
/// drover::line_reader lines(c.std_out());
/// while (auto l = co_await lines.next()) use(l->text);
/// ```
///
/// `next()` completes with `void(error_code, std::optional<line>)`: a line, or an empty optional
/// at the end of the output (EOF; for a terminal also EIO, which is what reading the master
/// side gives once every process has closed the terminal). A line longer than `max_length`
/// keeps its first `max_length` bytes and counts the rest in `line::dropped`: memory stays
/// bounded whatever the child prints. Bytes are passed as they are: escape them
/// (`drover::escape`) before they reach a log or a terminal.
///
/// `next_chunk()` completes with `void(error_code, std::string)`: whatever is available (up to
/// 64 KiB), an empty string at the end. After `next()`, it first returns what `next()` had read
/// but not yet returned (a partial line keeps only its first `max_length` bytes).
///
/// The reader refers to the descriptor, which must outlive it. One operation at a time.
class line_reader {
public:
    using line_signature = void(error_code, std::optional<line>);
    using chunk_signature = void(error_code, std::string);

    explicit line_reader(boost::asio::posix::stream_descriptor& source, std::size_t max_length = 64 * 1024);

    template <typename CompletionToken = boost::asio::deferred_t>
    auto next(CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken, line_signature>(
            [](auto handler, line_reader* self) { detail::initiate_line_read(self, std::move(handler)); },
            token, this);
    }

    template <typename CompletionToken = boost::asio::deferred_t>
    auto next_chunk(CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken, chunk_signature>(
            [](auto handler, line_reader* self) { detail::initiate_chunk_read(self, std::move(handler)); },
            token, this);
    }

    /// True once the end of the output was reached.
    bool at_end() const noexcept { return eof_ && start_ == buf_.size() && !have_partial_; }
    std::size_t max_length() const noexcept { return max_; }

private:
    friend void detail::initiate_line_read(line_reader* self,
                                           boost::asio::any_completion_handler<line_signature> h);
    friend void detail::initiate_chunk_read(line_reader* self,
                                            boost::asio::any_completion_handler<chunk_signature> h);

    friend struct line_reader_access;
    boost::asio::posix::stream_descriptor* src_;
    std::size_t max_;
    bool tty_ = false;
    bool eof_ = false;
    std::string buf_; // read; bytes before start_ are already split off
    std::size_t start_ = 0;
    std::string partial_; // the line being assembled (at most max_ bytes)
    std::uint64_t dropped_ = 0;
    bool have_partial_ = false;
};

} // namespace drover
