// drover: a JoinSet-style group of coroutines that owns what they start.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/this_coro.hpp>

#include "drover/error.hpp"

namespace drover {

/// How a group runs its tasks.
struct task_group_options {
    /// At most this many tasks run at once; the others wait their turn in spawn order.
    /// 0: no limit.
    std::size_t max_concurrency = 0;
    /// The first task that ends with an exception cancels every other task of the group.
    bool fail_fast = false;
};

/// The outcome of one task: its id (from `spawn`), and its value or its exception.
template <typename T>
struct task_result {
    std::size_t id = 0;
    std::exception_ptr error;
    std::optional<T> value;

    bool ok() const noexcept { return !error; }
    /// The value; rethrows the task's exception.
    T& get() {
        if (error) std::rethrow_exception(error);
        return *value;
    }
};

template <>
struct task_result<void> {
    std::size_t id = 0;
    std::exception_ptr error;

    bool ok() const noexcept { return !error; }
    void get() const {
        if (error) std::rethrow_exception(error);
    }
};

namespace detail {

/// What the group core knows of one finished task; the value lives in `payload`.
struct finished_task {
    std::size_t id = 0;
    std::exception_ptr error;
    std::shared_ptr<void> payload;
};

/// Starts a task's coroutine (type-erased, move-only).
struct task_starter {
    virtual ~task_starter() = default;
    virtual void start(const boost::asio::any_io_executor& ex, boost::asio::cancellation_slot slot,
                       boost::asio::any_completion_handler<void(std::exception_ptr)> done) = 0;
};

/// The non-template part of task_group: bookkeeping, limits, cancellation, joins.
class task_group_core;

std::shared_ptr<task_group_core> make_task_group_core(const boost::asio::any_io_executor& ex,
                                                      task_group_options opts);
std::size_t task_group_spawn(const std::shared_ptr<task_group_core>& core,
                             std::unique_ptr<task_starter> starter, std::shared_ptr<void> payload);
void task_group_join_next(
    const std::shared_ptr<task_group_core>& core,
    boost::asio::any_completion_handler<void(error_code, std::optional<finished_task>)> h);
void task_group_join_all(const std::shared_ptr<task_group_core>& core,
                         boost::asio::any_completion_handler<void(error_code, std::vector<finished_task>)> h);
void task_group_shutdown(const std::shared_ptr<task_group_core>& core,
                         boost::asio::any_completion_handler<void(error_code)> h);
void task_group_cancel_all(const std::shared_ptr<task_group_core>& core);
std::size_t task_group_size(const task_group_core& core) noexcept;
boost::asio::any_io_executor task_group_executor(const task_group_core& core) noexcept;
std::size_t task_group_running(const task_group_core& core) noexcept;

template <typename T>
struct awaitable_starter final : task_starter {
    boost::asio::awaitable<T> body;
    std::shared_ptr<std::optional<T>> out;

    awaitable_starter(boost::asio::awaitable<T> b, std::shared_ptr<std::optional<T>> o)
        : body(std::move(b)), out(std::move(o)) {}

    static boost::asio::awaitable<void> wrap(boost::asio::awaitable<T> b,
                                             std::shared_ptr<std::optional<T>> o) {
        o->emplace(co_await std::move(b));
    }

    void start(const boost::asio::any_io_executor& ex, boost::asio::cancellation_slot slot,
               boost::asio::any_completion_handler<void(std::exception_ptr)> done) override {
        boost::asio::co_spawn(ex, wrap(std::move(body), out),
                              boost::asio::bind_cancellation_slot(slot, std::move(done)));
    }
};

template <>
struct awaitable_starter<void> final : task_starter {
    boost::asio::awaitable<void> body;

    explicit awaitable_starter(boost::asio::awaitable<void> b) : body(std::move(b)) {}

    void start(const boost::asio::any_io_executor& ex, boost::asio::cancellation_slot slot,
               boost::asio::any_completion_handler<void(std::exception_ptr)> done) override {
        boost::asio::co_spawn(ex, std::move(body),
                              boost::asio::bind_cancellation_slot(slot, std::move(done)));
    }
};

template <typename T>
task_result<T> to_result(finished_task&& f) {
    task_result<T> r;
    r.id = f.id;
    r.error = std::move(f.error);
    if constexpr (!std::is_void_v<T>) {
        auto v = std::static_pointer_cast<std::optional<T>>(f.payload);
        if (!r.error && v && *v) r.value.emplace(std::move(**v));
    }
    return r;
}

} // namespace detail

/// A group of coroutines (tasks) run concurrently on one executor, joined in completion order:
/// drover's answer to tokio's `JoinSet`, Trio's nursery and asyncio's `TaskGroup`.
///
/// <!-- snippet: coroutine given: const std::vector<drover::command>& commands
///      before: awaitable<int> run_one(drover::command cmd); -->
/// ```cpp
/// drover::task_group<int> g(ex);
/// for (auto& cmd : commands) g.spawn(run_one(cmd));
/// while (auto r = co_await g.async_join_next()) use(r->get());
/// ```
///
/// Each task runs in its own strand of the executor and gets its own cancellation slot:
/// `cancel_all()` (and fail-fast, and leaving the group) sends a *terminal* cancellation to
/// every unfinished task. A task waiting on a child (`child::async_wait`, `async_run`) then
/// stops the child's whole tree with the default escalation (stop signal, grace, SIGKILL) and
/// ends once it is reaped; a task that drops a `child` while unwinding kills its tree through
/// the destructor. A task that has not started yet (concurrency limit) never starts; its result
/// is `operation_aborted`.
///
/// **Leaving the group.** `async_shutdown()` cancels every unfinished task and completes once
/// all of them have ended *and* every `child` destructor cleanup (kill, reap, rmdir) started in
/// the io_context by then is done, those of the group's tasks included: no process started in
/// the group is left, and none is a zombie. After it, the group takes no new task (`spawn`
/// returns an id whose result is `operation_aborted`).
/// `with_task_group()` does this for you when its body completes, throws or is cancelled.
///
/// **The destructor** cannot wait: it cancels every unfinished task and returns. The tasks
/// finish in the background while the io_context runs (their children are stopped as above);
/// their results are discarded. Prefer `async_shutdown()` or `with_task_group()`.
///
/// One group object must not be used from two threads at once; tasks may run on any thread of
/// the io_context. A moved-from group may only be destroyed or assigned to.
template <typename T = void>
class task_group {
public:
    using result_type = task_result<T>;
    using join_next_signature = void(error_code, std::optional<task_result<T>>);
    using join_all_signature = void(error_code, std::vector<task_result<T>>);

    explicit task_group(const boost::asio::any_io_executor& ex, task_group_options opts = {})
        : core_(detail::make_task_group_core(ex, opts)) {}
    task_group(task_group&&) noexcept = default;
    task_group& operator=(task_group&& o) noexcept {
        if (this != &o) {
            if (core_) detail::task_group_cancel_all(core_);
            core_ = std::move(o.core_);
        }
        return *this;
    }
    task_group(const task_group&) = delete;
    task_group& operator=(const task_group&) = delete;
    ~task_group() {
        if (core_) detail::task_group_cancel_all(core_);
    }

    /// Adds a task; it starts at once, or when the concurrency limit allows. Returns its id.
    /// After `async_shutdown()` the task is not run: its result is `operation_aborted`.
    std::size_t spawn(boost::asio::awaitable<T> task) {
        if constexpr (std::is_void_v<T>) {
            return detail::task_group_spawn(
                core_, std::make_unique<detail::awaitable_starter<void>>(std::move(task)), {});
        } else {
            auto out = std::make_shared<std::optional<T>>();
            return detail::task_group_spawn(
                core_, std::make_unique<detail::awaitable_starter<T>>(std::move(task), out), out);
        }
    }

    /// The next task to finish (in completion order; one already finished comes at once), or
    /// an empty optional when the group has no task left to join. Cancelling the join ends only
    /// the join (`operation_aborted`); the tasks keep running in the group.
    template <typename CompletionToken = boost::asio::deferred_t>
    auto async_join_next(CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken, join_next_signature>(
            [](auto handler, std::shared_ptr<detail::task_group_core> core) {
                // The wrapper keeps the handler's executor and cancellation slot.
                auto slot = boost::asio::get_associated_cancellation_slot(handler);
                auto hex = boost::asio::get_associated_executor(handler, detail::task_group_executor(*core));
                detail::task_group_join_next(
                    core,
                    boost::asio::bind_cancellation_slot(
                        slot, boost::asio::bind_executor(
                                  hex, [h = std::move(handler),
                                        slot](error_code ec, std::optional<detail::finished_task> f) mutable {
                                      if (slot.is_connected()) slot.clear(); // on the handler's executor
                                      std::optional<task_result<T>> r;
                                      if (f) r.emplace(detail::to_result<T>(std::move(*f)));
                                      std::move(h)(ec, std::move(r));
                                  })));
            },
            token, core_);
    }

    /// Waits for every task and returns all results not joined yet, in completion order.
    /// Cancelling it ends only the wait (`operation_aborted`, no results).
    template <typename CompletionToken = boost::asio::deferred_t>
    auto async_join_all(CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken, join_all_signature>(
            [](auto handler, std::shared_ptr<detail::task_group_core> core) {
                auto slot = boost::asio::get_associated_cancellation_slot(handler);
                auto hex = boost::asio::get_associated_executor(handler, detail::task_group_executor(*core));
                detail::task_group_join_all(
                    core,
                    boost::asio::bind_cancellation_slot(
                        slot, boost::asio::bind_executor(
                                  hex, [h = std::move(handler),
                                        slot](error_code ec, std::vector<detail::finished_task> fs) mutable {
                                      if (slot.is_connected()) slot.clear();
                                      std::vector<task_result<T>> rs;
                                      rs.reserve(fs.size());
                                      for (auto& f : fs) rs.push_back(detail::to_result<T>(std::move(f)));
                                      std::move(h)(ec, std::move(rs));
                                  })));
            },
            token, core_);
    }

    /// Cancels every unfinished task, waits until all have ended and every child they dropped
    /// is reaped. Results not joined are discarded. Not cancellable.
    template <typename CompletionToken = boost::asio::deferred_t>
    auto async_shutdown(CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken, void(error_code)>(
            [](auto handler, std::shared_ptr<detail::task_group_core> core) {
                detail::task_group_shutdown(core, std::move(handler));
            },
            token, core_);
    }

    /// Sends a terminal cancellation to every unfinished task; tasks not started never start.
    void cancel_all() { detail::task_group_cancel_all(core_); }

    /// Tasks not joined yet: waiting, running, or finished with a result to join.
    std::size_t size() const noexcept { return detail::task_group_size(*core_); }
    bool empty() const noexcept { return size() == 0; }
    /// Tasks running right now (started, not finished).
    std::size_t running() const noexcept { return detail::task_group_running(*core_); }

private:
    std::shared_ptr<detail::task_group_core> core_;
};

/// Runs `body(group)` with a fresh group, then leaves the group however the body ended
/// (returned, threw, or was cancelled): every unfinished task is cancelled and awaited, every
/// child it started is stopped and reaped. Returns the body's value or rethrows its exception.
///
/// <!-- snippet: coroutine before: awaitable<void> serve(); -->
/// ```cpp
/// co_await drover::with_task_group<void>(ex, {}, [&](drover::task_group<void>& g) ->
/// boost::asio::awaitable<void> {
///     g.spawn(serve());
///     co_await g.async_join_next(); // the first to end ends the scope; the rest is stopped
/// });
/// ```
template <typename T, typename Body>
auto with_task_group(const boost::asio::any_io_executor& ex, task_group_options opts, Body body)
    -> decltype(body(std::declval<task_group<T>&>())) {
    task_group<T> group(ex, opts);
    std::exception_ptr error;
    using R = typename decltype(body(group))::value_type;
    std::optional<std::conditional_t<std::is_void_v<R>, int, R>> value;
    try {
        if constexpr (std::is_void_v<R>) {
            co_await body(group);
            value.emplace(0);
        } else {
            value.emplace(co_await body(group));
        }
    } catch (...) {
        error = std::current_exception();
    }
    // Leave the group even if this coroutine was cancelled: the cleanup must run to the end.
    // (The flag belongs to the whole coroutine chain in Asio 1.81: restore it for the caller.)
    const bool throw_if_cancelled = co_await boost::asio::this_coro::throw_if_cancelled();
    co_await boost::asio::this_coro::throw_if_cancelled(false);
    auto [shutdown_ec] = co_await group.async_shutdown(boost::asio::as_tuple(boost::asio::deferred));
    (void)shutdown_ec; // never fails
    co_await boost::asio::this_coro::throw_if_cancelled(throw_if_cancelled);
    if (error) std::rethrow_exception(error);
    if constexpr (!std::is_void_v<R>) co_return std::move(*value);
}

} // namespace drover
