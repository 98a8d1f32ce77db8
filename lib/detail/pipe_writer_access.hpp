// drover (private): what the library may do with a pipe_writer that users may not.
#pragma once

#include "drover/pipe_writer.hpp"

namespace drover {

struct pipe_writer_access {
    /// spawn() assigns the pipe through this; users write only through the SIGPIPE-safe path.
    static boost::asio::posix::stream_descriptor& descriptor(pipe_writer& w) noexcept { return w.fd_; }
    static std::size_t write_now(pipe_writer& w, boost::asio::const_buffer b, error_code& ec) noexcept {
        return w.write_some_now(b, ec);
    }
};

} // namespace drover
