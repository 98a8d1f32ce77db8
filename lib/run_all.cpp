#include "drover/run_all.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace asio = boost::asio;

namespace drover {
namespace {

asio::awaitable<run_result> run_one(asio::any_io_executor ex, command cmd, run_options o) {
    co_return co_await async_run(ex, std::move(cmd), std::move(o), asio::use_awaitable);
}

struct outcome {
    error_code ec;
    std::vector<task_result<run_result>> results;
};

asio::awaitable<outcome> run_all(asio::any_io_executor ex, std::vector<command> commands,
                                 run_all_options opts) {
    co_await asio::this_coro::throw_if_cancelled(false);
    outcome out;
    out.results.resize(commands.size());
    task_group<run_result> group(ex, {opts.max_concurrency, opts.fail_fast});
    std::vector<std::size_t> index_of_id(commands.size() + 1);
    for (std::size_t i = 0; i < commands.size(); ++i) {
        run_options o = opts.run;
        if (opts.timeout) o.timeout = opts.timeout;
        std::size_t id = group.spawn(run_one(ex, std::move(commands[i]), std::move(o)));
        if (id >= index_of_id.size()) index_of_id.resize(id + 1);
        index_of_id[id] = i;
        out.results[i].id = id;
    }
    for (;;) {
        auto [ec, r] = co_await group.async_join_next(asio::as_tuple(asio::deferred));
        if (ec) { // cancelled: leave the group (stop and reap everything), report what finished
            out.ec = ec;
            auto [sec] = co_await group.async_shutdown(asio::as_tuple(asio::deferred));
            (void)sec;
            for (auto& res : out.results)
                if (!res.value && !res.error)
                    res.error = std::make_exception_ptr(boost::system::system_error(ec, "async_run_all"));
            break;
        }
        if (!r) break;
        std::size_t i = index_of_id[r->id];
        out.results[i] = std::move(*r);
    }
    co_return std::move(out);
}

} // namespace

void detail::initiate_run_all(const asio::any_io_executor& ex, std::vector<command> commands,
                              run_all_options opts, asio::any_completion_handler<run_all_signature> handler) {
    const std::size_t n = commands.size();
    // Keep the handler's cancellation slot (cancelling the whole run) and executor.
    auto slot = asio::get_associated_cancellation_slot(handler);
    auto hex = asio::get_associated_executor(handler, ex);
    asio::co_spawn(ex, run_all(ex, std::move(commands), std::move(opts)),
                   asio::bind_cancellation_slot(
                       slot, asio::bind_executor(
                                 hex, [h = std::move(handler), n](std::exception_ptr e, outcome o) mutable {
                                     if (e) { // out of memory, say: every command gets the exception
                                         o.ec = make_error_code(boost::system::errc::io_error);
                                         o.results.assign(n, task_result<run_result>{});
                                         for (auto& r : o.results) r.error = e;
                                     }
                                     std::move(h)(o.ec, std::move(o.results));
                                 })));
}

} // namespace drover
