// drover: the supervisor: keeps a set of services running, in dependency order, with restart
// policies, readiness, health checks, a watchdog, an event stream and per-service logs.
#pragma once

#include <sys/types.h>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>

#include "drover/error.hpp"
#include "drover/exit_status.hpp"
#include "drover/service.hpp"

namespace drover {

/// The clock of the timestamps in statuses, events and log lines, for people to read. No timing
/// uses it: every timer, backoff and timeout runs on `steady_clock`.
using wall_clock = std::chrono::system_clock; // wall clock for display

enum class service_state : unsigned char {
    stopped,  ///< not running, not asked to run
    starting, ///< waiting for its dependencies, or spawned and waiting for its readiness
    running,  ///< spawned; has no readiness check
    ready,    ///< spawned and its readiness check passed
    stopping, ///< its tree is being stopped
    exited,   ///< its process ended and it will not restart (done: a one-shot service)
    backoff,  ///< waiting to restart
    failed,   ///< given up on, with the reason (an explicit start tries again)
};
std::string_view to_string(service_state s) noexcept;

enum class health_state : unsigned char { unknown, healthy, unhealthy };
std::string_view to_string(health_state h) noexcept;

/// A service's state at one moment.
struct service_status {
    std::string name;
    service_state state = service_state::stopped;
    std::string reason;                     ///< why it is in that state, for a person
    std::optional<pid_t> pid;               ///< the main process while it runs
    wall_clock::time_point since;           ///< when it entered the state (wall clock)
    unsigned restarts = 0;                  ///< restarts of a run since it was added (automatic or asked for)
    std::uint64_t probes_ok = 0;            ///< readiness and health attempts that passed, since it was added
    std::uint64_t probes_failed = 0;        ///< ... and that failed
    std::optional<exit_status> last_status; ///< how its last run ended
    bool ready = false;                     ///< readiness passed in this run
    health_state health = health_state::unknown;
    std::string notify_status; ///< the last STATUS= it sent
};

/// Something that happened in a supervisor, in the order it happened.
struct supervisor_event {
    enum class kind : unsigned char {
        state,   ///< `state` entered, `text` the reason
        exited,  ///< the run ended with `status`; `text` says how
        restart, ///< a restart is scheduled in `delay`; `text` the reason
        probe,   ///< a readiness or health attempt: `ok`, `text` its result
        notify,  ///< an sd_notify message accepted (`text`: the message) or refused
                 ///<   (`ok` false, `text`: who sent it and why it was dropped)
        output,  ///< one line of output: `stream` 1 or 2, `text` (the child's bytes, unescaped)
        lost,    ///< this subscriber fell behind (event_overflow::drop_oldest): `count` lines of `service`'s
                 ///<   output were dropped before this one (`service` empty: `count` events)
    };
    kind type = kind::state;
    std::string service;
    wall_clock::time_point time;
    service_state state = service_state::stopped;
    std::string text;
    std::optional<exit_status> status;
    std::chrono::steady_clock::duration delay{};
    int stream = 0;
    bool ok = true;
    std::uint64_t count = 0;
};

/// One line a service printed, as kept for `supervisor::logs()`.
struct service_line {
    wall_clock::time_point time;
    int stream = 1;            ///< 1 stdout, 2 stderr
    std::string text;          ///< the child's bytes: escape before logging
    std::uint64_t dropped = 0; ///< bytes beyond the service's `max_line`
};

/// A supervisor's bad input: the service and field at fault, in `what()` too
/// ("service 'web': depends_on: unknown service 'dbx'"). `code()` is `errc::invalid_service`.
class service_error : public boost::system::system_error {
public:
    service_error(std::string service, std::string field, std::string message);
    const std::string& service() const noexcept { return service_; }
    const std::string& field() const noexcept { return field_; }
    /// The message alone, without the code's text.
    const char* what() const noexcept override { return message_.c_str(); }

private:
    std::string service_;
    std::string field_;
    std::string message_;
};

namespace detail {
struct supervisor_impl;
struct event_queue;
void initiate_event_next(std::shared_ptr<event_queue> q,
                         boost::asio::any_completion_handler<void(error_code, supervisor_event)> h);
void initiate_supervisor_op(std::shared_ptr<supervisor_impl> impl, int op, std::string name,
                            boost::asio::any_completion_handler<void(error_code)> h);
void initiate_supervisor_replace(std::shared_ptr<supervisor_impl> impl, std::vector<service> services,
                                 std::vector<service_group> groups,
                                 boost::asio::any_completion_handler<void(error_code)> h);
void initiate_supervisor_shutdown(std::shared_ptr<supervisor_impl> impl,
                                  std::chrono::steady_clock::duration deadline,
                                  boost::asio::any_completion_handler<void(error_code)> h);
enum supervisor_op : int { op_start, op_stop, op_restart, op_remove, op_run };
} // namespace detail

/// What a subscriber's queue does when it is full (`supervisor::subscribe`).
enum class event_overflow : unsigned char {
    /// Drop the oldest line of output (a lifecycle event only when the queue holds nothing
    /// else); the next `next()` first returns a `lost` event per service with the count of its
    /// lines dropped (`service`, `count`). The supervisor never waits for this subscriber.
    drop_oldest,
    /// Drop nothing: the supervisor stops reading every service's output until the queue is
    /// half empty. A service that prints faster than the subscriber reads is slowed down, as by
    /// a slow terminal (its writes block on the full pipe). Lifecycle events are never held
    /// back, and a service whose readiness waits for a log line is read on until it is ready.
    /// A service's last lines (what its pipe held) may come after its `exited`; the
    /// queue may pass `capacity` by what one read of each pipe holds. For the subscriber that
    /// writes the logs; a slow one slows every service's output.
    pause_output,
};

/// A subscriber's view of a supervisor's events (`supervisor::subscribe`). It holds about
/// `capacity` events; what happens when the subscriber falls behind is its `overflow` policy.
class event_stream {
public:
    using next_signature = void(error_code, supervisor_event);
    event_stream() = default;
    explicit event_stream(std::shared_ptr<detail::event_queue> q) noexcept : q_(std::move(q)) {}
    event_stream(event_stream&&) noexcept = default;
    event_stream& operator=(event_stream&&) noexcept;
    ~event_stream();

    /// The next event. Completes with `operation_aborted` once the supervisor is destroyed
    /// and every queued event was delivered, or after `close()`. One `next()` at a time.
    template <typename CompletionToken = boost::asio::deferred_t>
    auto next(CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken, next_signature>(
            [](auto handler, std::shared_ptr<detail::event_queue> q) {
                detail::initiate_event_next(std::move(q), std::move(handler));
            },
            token, q_);
    }
    /// Unsubscribes: events not yet read are dropped, and a pending or later `next()` completes
    /// with `operation_aborted`.
    void close() noexcept;

private:
    std::shared_ptr<detail::event_queue> q_;
};

/// Keeps a set of services running.
///
/// ```cpp
/// drover::supervisor sup(ex);
/// sup.add(drover::service("db", drover::command("sleep", {"1000"})));
/// co_await sup.async_start("db");
/// ```
///
/// Every member function must be called from the thread running the executor (give it a strand
/// when several threads run the io_context); the asynchronous operations complete there.
/// Destroying the supervisor kills every tree it runs (as `child`'s destructor does) and ends
/// pending operations with `operation_aborted`.
class supervisor {
public:
    using executor_type = boost::asio::any_io_executor;
    using op_signature = void(error_code);

    explicit supervisor(executor_type ex);
    supervisor(const supervisor&) = delete;
    supervisor& operator=(const supervisor&) = delete;
    ~supervisor();

    executor_type get_executor() const;

    /// Adds a service (stopped). Throws `service_error` naming the service and the field for a
    /// bad spec (a duplicate or bad name, a dependency on an unknown service or a cycle, a bad
    /// probe address or pattern, a watchdog without a notify socket...); nothing changes then.
    void add(service s);
    /// Adds a restart group. Throws `service_error` (unknown member, member of another group).
    void add_group(service_group g);

    /// Starts a service once its dependencies meet their conditions (starting them is the
    /// caller's: `async_run` starts everything). Completes when it is running or ready, or with
    /// the error that made it fail. A failed service is tried again.
    template <typename CompletionToken = boost::asio::deferred_t>
    auto async_start(std::string name, CompletionToken&& token = {}) {
        return op(detail::op_start, std::move(name), std::forward<CompletionToken>(token));
    }
    /// Stops a service's tree (its stop signal and grace); it stays stopped. Dependents are
    /// left as they are.
    template <typename CompletionToken = boost::asio::deferred_t>
    auto async_stop(std::string name, CompletionToken&& token = {}) {
        return op(detail::op_stop, std::move(name), std::forward<CompletionToken>(token));
    }
    /// Stops then starts a service; completes as `async_start`.
    template <typename CompletionToken = boost::asio::deferred_t>
    auto async_restart(std::string name, CompletionToken&& token = {}) {
        return op(detail::op_restart, std::move(name), std::forward<CompletionToken>(token));
    }
    /// Stops a service and removes it. Fails with `errc::service_in_use` while another service
    /// depends on it.
    template <typename CompletionToken = boost::asio::deferred_t>
    auto async_remove(std::string name, CompletionToken&& token = {}) {
        return op(detail::op_remove, std::move(name), std::forward<CompletionToken>(token));
    }
    /// Starts every service in dependency order and supervises until `async_shutdown` has
    /// finished; completes then.
    template <typename CompletionToken = boost::asio::deferred_t>
    auto async_run(CompletionToken&& token = {}) {
        return op(detail::op_run, std::string(), std::forward<CompletionToken>(token));
    }
    /// Stops every service in reverse dependency order (dependents first), each with its own
    /// grace; whatever still runs at `deadline` is killed. Completes when no tree is left.
    /// Called again during a shutdown, it completes with the first; an earlier deadline brings
    /// the kill forward (a second Ctrl-C), a later one changes nothing.
    template <typename CompletionToken = boost::asio::deferred_t>
    auto async_shutdown(std::chrono::steady_clock::duration deadline, CompletionToken&& token = {}) {
        return boost::asio::async_initiate<CompletionToken, op_signature>(
            [](auto handler, std::shared_ptr<detail::supervisor_impl> impl,
               std::chrono::steady_clock::duration d) {
                detail::initiate_supervisor_shutdown(std::move(impl), d, std::move(handler));
            },
            token, impl_, deadline);
    }
    /// Applies a new set of services and groups by difference: services whose spec changed
    /// restart, new ones are added (and started if the supervisor is running), missing ones are
    /// stopped and removed, unchanged ones are not touched (same process). Validated first as a
    /// whole: a bad set throws `service_error` and changes nothing.
    template <typename CompletionToken = boost::asio::deferred_t>
    auto async_replace(std::vector<service> services, std::vector<service_group> groups = {},
                       CompletionToken&& token = {}) {
        validate(services, groups);
        return boost::asio::async_initiate<CompletionToken, op_signature>(
            [](auto handler, std::shared_ptr<detail::supervisor_impl> impl, std::vector<service> s,
               std::vector<service_group> g) {
                detail::initiate_supervisor_replace(std::move(impl), std::move(s), std::move(g),
                                                    std::move(handler));
            },
            token, impl_, std::move(services), std::move(groups));
    }

    /// Every service's status, in the order they were added.
    std::vector<service_status> status() const;
    /// One service's status; empty for an unknown name.
    std::optional<service_status> status(std::string_view name) const;
    /// The service's spec; empty for an unknown name.
    std::optional<service> spec(std::string_view name) const;
    /// The last `max` lines the service printed (oldest first).
    std::vector<service_line> logs(std::string_view name, std::size_t max = SIZE_MAX) const;
    /// A new subscriber to every event from now on; `when_full` says what happens when it
    /// falls `capacity` events behind.
    event_stream subscribe(std::size_t capacity = 4096,
                           event_overflow when_full = event_overflow::drop_oldest);

    /// Throws `service_error` if `services` and `groups` would not be accepted by
    /// `async_replace` (or by `add` and `add_group` on an empty supervisor).
    static void validate(const std::vector<service>& services, const std::vector<service_group>& groups);

private:
    template <typename CompletionToken>
    auto op(int which, std::string name, CompletionToken&& token) {
        return boost::asio::async_initiate<CompletionToken, op_signature>(
            [](auto handler, std::shared_ptr<detail::supervisor_impl> impl, int w, std::string n) {
                detail::initiate_supervisor_op(std::move(impl), w, std::move(n), std::move(handler));
            },
            token, impl_, which, std::move(name));
    }
    std::shared_ptr<detail::supervisor_impl> impl_;
};

} // namespace drover
