#include "drover/task_group.hpp"

#include <deque>
#include <functional>
#include <list>
#include <map>
#include <mutex>

#include <boost/asio/append.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include "detail/cleanups.hpp"

namespace asio = boost::asio;

namespace drover::detail {
namespace {

/// A move-only `void()` callable (std::function needs copyable targets; C++20 has no
/// move_only_function).
class action {
public:
    template <typename F>
    action(F f) : p_(std::make_unique<impl<F>>(std::move(f))) {} // NOLINT: implicit on purpose
    void operator()() { p_->run(); }

private:
    struct base {
        virtual ~base() = default;
        virtual void run() = 0;
    };
    template <typename F>
    struct impl final : base {
        explicit impl(F f) : f(std::move(f)) {}
        void run() override { f(); }
        F f;
    };
    std::unique_ptr<base> p_;
};

} // namespace

using next_handler = asio::any_completion_handler<void(error_code, std::optional<finished_task>)>;
using all_handler = asio::any_completion_handler<void(error_code, std::vector<finished_task>)>;
using shutdown_handler = asio::any_completion_handler<void(error_code)>;

class task_group_core : public std::enable_shared_from_this<task_group_core> {
public:
    task_group_core(const asio::any_io_executor& e, task_group_options o) : ex(e), opts(o) {}

    struct task {
        std::size_t id = 0;
        asio::any_io_executor strand;
        asio::cancellation_signal sig;
        std::unique_ptr<task_starter> starter;
        std::shared_ptr<void> payload;
        bool started = false;
        bool cancel_sent = false;
    };
    template <typename H>
    struct waiter {
        std::uint64_t key;
        H h;
    };

    asio::any_io_executor ex;
    task_group_options opts;
    mutable std::mutex m;
    std::map<std::size_t, std::unique_ptr<task>> live; // not finished (waiting or running)
    std::deque<std::size_t> waiting;                   // not started, in spawn order
    std::deque<finished_task> done;                    // finished, not joined
    std::size_t next_id = 1;
    std::size_t running = 0;
    std::uint64_t next_key = 1;
    std::list<waiter<next_handler>> next_waiters;
    std::list<waiter<all_handler>> all_waiters;
    std::vector<shutdown_handler> shutdown_waiters;
    bool shutting_down = false;

    using actions = std::vector<action>;

    task* find(std::size_t id) {
        std::lock_guard lock(m);
        auto it = live.find(id);
        return it == live.end() ? nullptr : it->second.get();
    }

    static std::exception_ptr aborted() {
        return std::make_exception_ptr(
            boost::system::system_error(asio::error::operation_aborted, "task_group"));
    }

    /// Starts waiting tasks while the limit allows (under the lock; the start is posted).
    void start_waiting_locked(actions& todo) {
        while (!waiting.empty() && (opts.max_concurrency == 0 || running < opts.max_concurrency)) {
            std::size_t id = waiting.front();
            waiting.pop_front();
            auto it = live.find(id);
            if (it == live.end()) continue;
            task& t = *it->second;
            t.started = true;
            ++running;
            todo.push_back([self = shared_from_this(), strand = t.strand, id] {
                // On the task's strand: every use of its cancellation slot happens there, and so
                // does on_done, which removes the task; look it up, never keep a pointer.
                asio::post(strand, [self, id] {
                    task* tp = nullptr;
                    bool cancelled = false;
                    {
                        std::lock_guard lock(self->m);
                        auto it = self->live.find(id);
                        if (it == self->live.end()) return;
                        tp = it->second.get();
                        cancelled = tp->cancel_sent;
                    }
                    // A cancellation sent between "started" and here found no slot to reach:
                    // the task never runs.
                    if (cancelled) return self->on_done(id, aborted());
                    auto starter = std::move(tp->starter);
                    starter->start(tp->strand, tp->sig.slot(),
                                   [self, id](std::exception_ptr e) { self->on_done(id, std::move(e)); });
                });
            });
        }
    }

    /// Cancels every unfinished task (under the lock; the signals are emitted on the strands).
    void cancel_all_locked(actions& todo) {
        for (auto it = live.begin(); it != live.end();) {
            task& t = *it->second;
            if (!t.started) { // never starts: finished as aborted
                done.push_back({t.id, aborted(), nullptr});
                std::erase(waiting, t.id);
                it = live.erase(it);
                continue;
            }
            if (!t.cancel_sent) {
                t.cancel_sent = true;
                todo.push_back([self = shared_from_this(), strand = t.strand, id = t.id] {
                    asio::post(strand, [self, id] {
                        if (task* tp = self->find(id)) tp->sig.emit(asio::cancellation_type::terminal);
                    });
                });
            }
            ++it;
        }
    }

    /// Hands finished tasks to waiting joins; completes what waits for the group to be empty.
    void pump_locked(actions& todo) {
        while (!next_waiters.empty() && !done.empty()) {
            auto w = std::move(next_waiters.front());
            next_waiters.pop_front();
            auto f = std::move(done.front());
            done.pop_front();
            todo.push_back(deliver_next(std::move(w.h), std::optional<finished_task>(std::move(f))));
        }
        if (!live.empty()) return;
        while (!next_waiters.empty()) { // nothing left to join
            auto w = std::move(next_waiters.front());
            next_waiters.pop_front();
            todo.push_back(deliver_next(std::move(w.h), std::nullopt));
        }
        while (!all_waiters.empty()) {
            auto w = std::move(all_waiters.front());
            all_waiters.pop_front();
            std::vector<finished_task> all(std::make_move_iterator(done.begin()),
                                           std::make_move_iterator(done.end()));
            done.clear();
            todo.push_back([self = shared_from_this(), h = std::move(w.h), all = std::move(all)]() mutable {
                asio::post(self->ex, asio::append(std::move(h), error_code{}, std::move(all)));
            });
        }
        if (!shutdown_waiters.empty()) {
            done.clear(); // results of a group being left are discarded
            auto hs = std::move(shutdown_waiters);
            shutdown_waiters.clear();
            for (auto& h : hs)
                todo.push_back([self = shared_from_this(), h = std::move(h)]() mutable {
                    // Every task has ended; now wait for the child cleanups started so far,
                    // which include those the tasks left behind (a std::function: the handler
                    // goes behind a pointer).
                    auto hp = std::make_shared<shutdown_handler>(std::move(h));
                    when_cleanups_started_so_far_done(self->ex, [self, hp] {
                        asio::post(self->ex, asio::append(std::move(*hp), error_code{}));
                    });
                });
        }
    }

    action deliver_next(next_handler h, std::optional<finished_task> f) {
        // The join's cancellation slot is cleared by the wrapper in task_group.hpp, on the
        // handler's own executor (never from a task's thread).
        return [self = shared_from_this(), h = std::move(h), f = std::move(f)]() mutable {
            asio::post(self->ex, asio::append(std::move(h), error_code{}, std::move(f)));
        };
    }

    void on_done(std::size_t id, std::exception_ptr e) {
        actions todo;
        {
            std::lock_guard lock(m);
            auto it = live.find(id);
            if (it == live.end()) return;
            --running;
            done.push_back({id, e, std::move(it->second->payload)});
            live.erase(it);
            if (e && opts.fail_fast) cancel_all_locked(todo);
            if (!shutting_down) start_waiting_locked(todo);
            pump_locked(todo);
        }
        for (auto& a : todo) a();
    }

    static void run(actions& todo) {
        for (auto& a : todo) a();
    }
};

std::shared_ptr<task_group_core> make_task_group_core(const asio::any_io_executor& ex,
                                                      task_group_options opts) {
    return std::make_shared<task_group_core>(ex, opts);
}

std::size_t task_group_spawn(const std::shared_ptr<task_group_core>& core,
                             std::unique_ptr<task_starter> starter, std::shared_ptr<void> payload) {
    task_group_core::actions todo;
    std::size_t id;
    {
        std::lock_guard lock(core->m);
        id = core->next_id++;
        if (core->shutting_down) { // a group being left takes no new work
            core->done.push_back({id, task_group_core::aborted(), nullptr});
            core->pump_locked(todo);
        } else {
            auto t = std::make_unique<task_group_core::task>();
            t->id = id;
            t->strand = asio::make_strand(core->ex);
            t->starter = std::move(starter);
            t->payload = std::move(payload);
            core->live.emplace(id, std::move(t));
            core->waiting.push_back(id);
            core->start_waiting_locked(todo);
        }
    }
    task_group_core::run(todo);
    return id;
}

void task_group_join_next(const std::shared_ptr<task_group_core>& core, next_handler h) {
    task_group_core::actions todo;
    {
        std::lock_guard lock(core->m);
        if (!core->done.empty() || core->live.empty()) {
            std::optional<finished_task> f;
            if (!core->done.empty()) {
                f = std::move(core->done.front());
                core->done.pop_front();
            }
            todo.push_back(core->deliver_next(std::move(h), std::move(f)));
        } else {
            std::uint64_t key = core->next_key++;
            auto slot = asio::get_associated_cancellation_slot(h);
            core->next_waiters.push_back({key, std::move(h)});
            if (slot.is_connected()) {
                // Cancelling the join ends only the join; the tasks stay in the group.
                slot.assign([weak = std::weak_ptr<task_group_core>(core), key](asio::cancellation_type) {
                    auto self = weak.lock();
                    if (!self) return;
                    std::optional<next_handler> found;
                    {
                        std::lock_guard lock(self->m);
                        for (auto it = self->next_waiters.begin(); it != self->next_waiters.end(); ++it)
                            if (it->key == key) {
                                found.emplace(std::move(it->h));
                                self->next_waiters.erase(it);
                                break;
                            }
                    }
                    if (found)
                        asio::post(self->ex,
                                   asio::append(std::move(*found), error_code(asio::error::operation_aborted),
                                                std::optional<finished_task>()));
                });
            }
        }
    }
    task_group_core::run(todo);
}

void task_group_join_all(const std::shared_ptr<task_group_core>& core, all_handler h) {
    task_group_core::actions todo;
    {
        std::lock_guard lock(core->m);
        std::uint64_t key = core->next_key++;
        auto slot = asio::get_associated_cancellation_slot(h);
        core->all_waiters.push_back({key, std::move(h)});
        if (slot.is_connected()) {
            slot.assign([weak = std::weak_ptr<task_group_core>(core), key](asio::cancellation_type) {
                auto self = weak.lock();
                if (!self) return;
                std::optional<all_handler> found;
                {
                    std::lock_guard lock(self->m);
                    for (auto it = self->all_waiters.begin(); it != self->all_waiters.end(); ++it)
                        if (it->key == key) {
                            found.emplace(std::move(it->h));
                            self->all_waiters.erase(it);
                            break;
                        }
                }
                if (found)
                    asio::post(self->ex,
                               asio::append(std::move(*found), error_code(asio::error::operation_aborted),
                                            std::vector<finished_task>()));
            });
        }
        core->pump_locked(todo);
    }
    task_group_core::run(todo);
}

void task_group_shutdown(const std::shared_ptr<task_group_core>& core, shutdown_handler h) {
    task_group_core::actions todo;
    {
        std::lock_guard lock(core->m);
        core->shutting_down = true;
        core->cancel_all_locked(todo);
        core->shutdown_waiters.push_back(std::move(h));
        core->pump_locked(todo);
    }
    task_group_core::run(todo);
}

void task_group_cancel_all(const std::shared_ptr<task_group_core>& core) {
    task_group_core::actions todo;
    {
        std::lock_guard lock(core->m);
        core->cancel_all_locked(todo);
        core->pump_locked(todo);
    }
    task_group_core::run(todo);
}

std::size_t task_group_size(const task_group_core& core) noexcept {
    std::lock_guard lock(core.m);
    return core.live.size() + core.done.size();
}

std::size_t task_group_running(const task_group_core& core) noexcept {
    std::lock_guard lock(core.m);
    return core.running;
}

asio::any_io_executor task_group_executor(const task_group_core& core) noexcept {
    return core.ex;
}

} // namespace drover::detail
