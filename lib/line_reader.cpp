#include "drover/line_reader.hpp"

#include <unistd.h>

#include <cerrno>

#include <boost/asio/compose.hpp>
#include <boost/asio/post.hpp>

namespace asio = boost::asio;

namespace drover {

struct line_reader_access {
    static constexpr std::size_t read_size = 64 * 1024;

    /// Adds `n` bytes to the line being assembled, keeping at most `max_` of them.
    static void add(line_reader& r, const char* p, std::size_t n) {
        if (n == 0) return;
        r.have_partial_ = true;
        std::size_t room = r.max_ > r.partial_.size() ? r.max_ - r.partial_.size() : 0;
        std::size_t take = n < room ? n : room;
        r.partial_.append(p, take);
        r.dropped_ += n - take;
    }

    static line take_line(line_reader& r, bool complete) {
        line l;
        l.text = std::move(r.partial_);
        l.dropped = r.dropped_;
        l.complete = complete;
        if (r.tty_ && complete && l.dropped == 0 && !l.text.empty() && l.text.back() == '\r')
            l.text.pop_back();
        r.partial_.clear();
        r.dropped_ = 0;
        r.have_partial_ = false;
        return l;
    }

    /// A complete line from what was read, if there is one.
    static std::optional<line> split(line_reader& r) {
        auto pos = r.buf_.find('\n', r.start_);
        if (pos == std::string::npos) {
            add(r, r.buf_.data() + r.start_, r.buf_.size() - r.start_);
            r.buf_.clear();
            r.start_ = 0;
            return std::nullopt;
        }
        add(r, r.buf_.data() + r.start_, pos - r.start_);
        r.start_ = pos + 1; // no erase per line: splitting stays linear in the bytes read
        if (r.start_ == r.buf_.size()) {
            r.buf_.clear();
            r.start_ = 0;
        }
        r.have_partial_ = true;
        return take_line(r, true);
    }

    /// The end of output: EOF, and EIO from a terminal's master side.
    static bool is_end(const line_reader& r, const error_code& ec) {
        return ec == asio::error::eof || (r.tty_ && ec == error_code(EIO, boost::system::system_category()));
    }

    struct next_op {
        line_reader* r;
        bool started = false;
        bool reading = false;
        std::size_t before = 0; // buf_ size before the pending read

        template <typename Self>
        void operator()(Self& self, error_code ec = {}, std::size_t n = 0) {
            auto& rd = *r;
            if (!started) {
                started = true; // never complete inline from the initiating function
                auto ex = rd.src_->get_executor();
                return asio::post(ex, [self = std::move(self)]() mutable { self(error_code{}, 0); });
            }
            if (reading) {
                reading = false;
                rd.buf_.resize(before + n);
                if (ec) {
                    if (!is_end(rd, ec)) return self.complete(ec, std::nullopt);
                    rd.eof_ = true;
                }
            }
            if (auto l = split(rd)) return self.complete(error_code{}, std::move(l));
            if (rd.eof_) {
                if (rd.have_partial_) return self.complete(error_code{}, take_line(rd, false));
                return self.complete(error_code{}, std::nullopt);
            }
            if (rd.start_ != 0) { // unreachable: split() consumed the buffer; keep it compact anyway
                rd.buf_.erase(0, rd.start_);
                rd.start_ = 0;
            }
            before = rd.buf_.size();
            reading = true;
            rd.buf_.resize(before + read_size);
            rd.src_->async_read_some(asio::buffer(rd.buf_.data() + before, read_size), std::move(self));
        }
    };

    struct chunk_op {
        line_reader* r;
        bool started = false;
        std::string chunk;

        template <typename Self>
        void operator()(Self& self, error_code ec = {}, std::size_t n = 0) {
            auto& rd = *r;
            if (!started) {
                started = true;
                if (!rd.partial_.empty() || rd.start_ != rd.buf_.size() || rd.eof_) {
                    // What a line read left behind comes first.
                    chunk = std::move(rd.partial_);
                    chunk.append(rd.buf_, rd.start_, std::string::npos);
                    rd.partial_.clear();
                    rd.buf_.clear();
                    rd.start_ = 0;
                    rd.dropped_ = 0;
                    rd.have_partial_ = false;
                    leftover = true;
                    auto ex = rd.src_->get_executor();
                    return asio::post(ex, [self = std::move(self)]() mutable { self(error_code{}, 0); });
                }
                chunk.resize(read_size);
                return rd.src_->async_read_some(asio::buffer(chunk), std::move(self));
            }
            if (ec) {
                chunk.resize(0);
                if (!is_end(rd, ec)) return self.complete(ec, std::string{});
                rd.eof_ = true;
                return self.complete(error_code{}, std::string{});
            }
            if (!leftover) chunk.resize(n);
            return self.complete(error_code{}, std::move(chunk));
        }
        bool leftover = false;
    };
};

line_reader::line_reader(asio::posix::stream_descriptor& source, std::size_t max_length)
    : src_(&source), max_(max_length == 0 ? 1 : max_length) {
    tty_ = source.is_open() && ::isatty(source.native_handle()) == 1;
}

void detail::initiate_line_read(line_reader* self,
                                asio::any_completion_handler<line_reader::line_signature> h) {
    asio::async_compose<asio::any_completion_handler<line_reader::line_signature>,
                        line_reader::line_signature>(line_reader_access::next_op{self}, h, *self->src_);
}

void detail::initiate_chunk_read(line_reader* self,
                                 asio::any_completion_handler<line_reader::chunk_signature> h) {
    asio::async_compose<asio::any_completion_handler<line_reader::chunk_signature>,
                        line_reader::chunk_signature>(line_reader_access::chunk_op{self, false, {}, false}, h,
                                                      *self->src_);
}

} // namespace drover
