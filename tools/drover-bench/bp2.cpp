// Boost.Process v2 (1.81) as a drover-bench contender, in its own translation unit: its
// headers are heavy and, in 1.81, not self-contained: the two includes below must come first
// (docs/reliability.md, "Facts about the machines").
#define BOOST_PROCESS_USE_STD_FS 1
#include <boost/optional.hpp>
#include <boost/type_traits.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/process/v2/process.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "bp2.hpp"

namespace bench {

double bp2_spawn_seq(const std::string& prog, int n, int registered_fds) {
    namespace asio = boost::asio;
    asio::io_context ctx;
    // Descriptors registered with the io_context (pipes with a pending read), as a server holding
    // children's pipes has: bp2's launcher re-registers each of them in every child it forks.
    std::vector<std::unique_ptr<asio::posix::stream_descriptor>> held;
    std::vector<int> write_ends;
    for (int i = 0; i < registered_fds; ++i) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) break;
        held.push_back(std::make_unique<asio::posix::stream_descriptor>(ctx, fds[0]));
        held.back()->async_wait(asio::posix::descriptor_base::wait_read, [](boost::system::error_code) {});
        write_ends.push_back(fds[1]);
    }
    double us = -1;
    asio::co_spawn(
        ctx,
        [&]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            const std::vector<std::string> no_args;
            auto t0 = std::chrono::steady_clock::now();
            for (int i = 0; i < n; ++i) {
                boost::process::v2::process p(ex, prog, no_args); // the default launcher: fork + exec
                co_await p.async_wait(asio::use_awaitable);
            }
            us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / n;
            for (auto& h : held) h->close();
        },
        asio::detached);
    ctx.run();
    for (int fd : write_ends) ::close(fd);
    return us;
}

double bp2_spawn_concurrent(const std::string& prog, int n, int width) {
    namespace asio = boost::asio;
    asio::io_context ctx;
    int started = 0;
    bool failed = false;
    auto t0 = std::chrono::steady_clock::now();
    auto worker = [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        const std::vector<std::string> no_args;
        while (started < n && !failed) {
            ++started;
            boost::process::v2::process p(ex, prog, no_args);
            co_await p.async_wait(asio::use_awaitable);
        }
    };
    for (int i = 0; i < width; ++i)
        asio::co_spawn(ctx, worker(), [&](std::exception_ptr e) { failed = failed || e != nullptr; });
    ctx.run();
    if (failed) return -1;
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / n;
}

} // namespace bench
