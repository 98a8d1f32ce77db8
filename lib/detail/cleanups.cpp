#include "detail/cleanups.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
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
        std::map<std::uint64_t, finish_now_fn> finishers; // by cleanup number, while in flight
        bool shut_down = false; // the context is being destroyed: cleanups finish at once
        std::chrono::steady_clock::time_point deadline{}; // for all of them together
    };
    std::shared_ptr<state> st = std::make_shared<state>();

private:
    void shutdown() override {
        // The context is being destroyed: the cleanups it never ran never will. Finish them
        // here (the trees were SIGKILLed when their handles were dropped, so this is short),
        // bounded in time. No thread runs the context now (Asio requires it of the destructor).
        std::map<std::uint64_t, finish_now_fn> pending;
        std::vector<waiter> waiters; // destroyed outside the lock: a waiter may own a coroutine
                                     // frame that owns a child, whose destructor comes back here
        const auto deadline = std::chrono::steady_clock::now() + shutdown_cleanup_bound;
        {
            std::lock_guard lock(st->m);
            waiters.swap(st->waiters);
            pending.swap(st->finishers);
            // Handles destroyed from now on (the scheduler destroys the handlers it never ran,
            // and with them coroutine frames that own children) finish their cleanup at once,
            // within the same deadline.
            st->shut_down = true;
            st->deadline = deadline;
        }
        waiters.clear();
        for (auto& [n, f] : pending)
            if (f) f(deadline);
        // Dropping them here, while every service still exists, releases what they hold (a
        // child's descriptors deregister from a reactor that is shut down but not destroyed).
    }
};

asio::execution_context::id cleanup_service::id;

std::shared_ptr<cleanup_service::state> state_for(const asio::any_io_executor& ex) {
    auto& ctx = asio::query(ex, asio::execution::context);
    return asio::use_service<cleanup_service>(ctx).st;
}

} // namespace

std::function<void()> cleanup_started(const asio::any_io_executor& ex, finish_now_fn finish_now) {
    auto st = state_for(ex);
    std::uint64_t n;
    {
        std::unique_lock lock(st->m);
        if (st->shut_down) {
            // The shared deadline, but a moment for each at least: its tree was just killed.
            const auto deadline =
                std::max(st->deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
            lock.unlock();
            if (finish_now) finish_now(deadline);
            return [] {};
        }
        n = st->next++;
        st->in_flight.insert(n);
        if (finish_now) st->finishers.emplace(n, std::move(finish_now));
    }
    return [st, n] {
        std::vector<cleanup_service::waiter> ready;
        finish_now_fn dropped; // released outside the lock (it may own the child's state)
        {
            std::lock_guard lock(st->m);
            st->in_flight.erase(n);
            if (auto it = st->finishers.find(n); it != st->finishers.end()) {
                dropped = std::move(it->second);
                st->finishers.erase(it);
            }
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

void prepare_cleanups(const asio::any_io_executor& ex) {
    (void)state_for(ex);
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
