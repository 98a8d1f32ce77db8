#include "detail/cleanups.hpp"

#include <memory>
#include <cstdint>
#include <mutex>
#include <set>
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

    struct waiter {
        std::uint64_t upto; // released once no cleanup numbered <= upto is in flight
        asio::any_io_executor ex;
        std::function<void()> h;
    };
    struct state {
        std::mutex m;
        std::uint64_t next = 1;            // number of the next cleanup
        std::set<std::uint64_t> in_flight; // numbers of cleanups under way
        std::vector<waiter> waiters;
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
    std::uint64_t n;
    {
        std::lock_guard lock(st->m);
        n = st->next++;
        st->in_flight.insert(n);
    }
    return [st, n] {
        std::vector<cleanup_service::waiter> ready;
        {
            std::lock_guard lock(st->m);
            st->in_flight.erase(n);
            const std::uint64_t oldest = st->in_flight.empty() ? UINT64_MAX : *st->in_flight.begin();
            for (auto it = st->waiters.begin(); it != st->waiters.end();) {
                if (it->upto < oldest) {
                    ready.push_back(std::move(*it));
                    it = st->waiters.erase(it);
                } else {
                    ++it;
                }
            }
        }
        for (auto& w : ready) asio::post(w.ex, std::move(w.h));
    };
}

void when_cleanups_started_so_far_done(const asio::any_io_executor& ex, std::function<void()> h) {
    auto st = state_for(ex);
    {
        std::lock_guard lock(st->m);
        const std::uint64_t upto = st->next - 1;
        if (!st->in_flight.empty() && *st->in_flight.begin() <= upto) {
            st->waiters.push_back({upto, ex, std::move(h)});
            return;
        }
    }
    asio::post(ex, std::move(h));
}

} // namespace drover::detail
