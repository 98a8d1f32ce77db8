// Built by a parent meson project against drover's drover_dep (test/package/subproject-parent):
// spawns a child, waits for it in a coroutine and checks its exit status.
#include <cstdio>
#include <exception>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/core.h>

#include <drover/drover.hpp>

// drover_dep passes the Asio configuration libdrover was built with.
#if !defined(BOOST_ASIO_NO_DEPRECATED) || !defined(BOOST_ASIO_NO_TS_EXECUTORS)
#error "drover_dep did not pass libdrover's Asio configuration"
#endif

namespace asio = boost::asio;

asio::awaitable<drover::exit_status> run_child() {
    auto ex = co_await asio::this_coro::executor;
    drover::command cmd("/bin/sh", {"-c", "exit 7"});
    drover::child c = drover::spawn(ex, std::move(cmd));
    co_return co_await c.async_wait(asio::use_awaitable);
}

int main() {
    asio::io_context ctx;
    drover::exit_status status;
    std::exception_ptr error;
    asio::co_spawn(ctx, run_child(), [&](std::exception_ptr e, drover::exit_status s) {
        error = e;
        status = s;
    });
    ctx.run();
    if (error) std::rethrow_exception(error);
    fmt::print("child: {}\n", status);
    return status == drover::exit_status::exited(7) ? 0 : 1;
}
