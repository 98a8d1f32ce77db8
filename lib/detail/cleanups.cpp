#include "detail/cleanups.hpp"

#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include <boost/asio/execution/context.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/query.hpp>

namespace asio = boost::asio;

namespace drover::detail {
namespace {

/// Lives in the io_context (an Asio service), so a cleanup that never ran because its context
/// was destroyed cannot block waiters of another context.
class cleanup_service : public asio::execution_context::service {
public:
    static asio::execution_context::id id;
    explicit cleanup_service(asio::execution_context& ctx) : service(ctx) {}

    struct state {
        std::mutex m;
        long in_flight = 0;
        std::vector<std::pair<asio::any_io_executor, std::function<void()>>> waiters;
    };
    std::shared_ptr<state> st = std::make_shared<state>();

private:
    void shutdown() override {
        std::lock_guard lock(st->m);
        st->waiters.clear();
    }
};

asio::execution_context::id cleanup_service::id;

std::shared_ptr<cleanup_service::state> state_for(const asio::any_io_executor& ex) {
    auto& ctx = asio::query(ex, asio::execution::context);
    return asio::use_service<cleanup_service>(ctx).st;
}

} // namespace

std::function<void()> cleanup_started(const asio::any_io_executor& ex) {
    auto st = state_for(ex);
    {
        std::lock_guard lock(st->m);
        ++st->in_flight;
    }
    return [st] {
        std::vector<std::pair<asio::any_io_executor, std::function<void()>>> ready;
        {
            std::lock_guard lock(st->m);
            if (--st->in_flight > 0) return;
            ready.swap(st->waiters);
        }
        for (auto& [e, h] : ready) asio::post(e, std::move(h));
    };
}

void when_no_cleanups(const asio::any_io_executor& ex, std::function<void()> h) {
    auto st = state_for(ex);
    {
        std::lock_guard lock(st->m);
        if (st->in_flight > 0) {
            st->waiters.emplace_back(ex, std::move(h));
            return;
        }
    }
    asio::post(ex, std::move(h));
}

} // namespace drover::detail
