// drover: the supervisor engine: one state machine per service, driven by the exit of its process,
// its readiness and health checks, its notify socket and the timers it asked for (none while
// idle). docs/architecture.md ("Supervision") has the state table this file implements.
#include "drover/supervisor.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <random>
#include <regex>
#include <set>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "detail/compat.hpp"
#include "detail/notify.hpp"
#include "detail/probe.hpp"
#include "detail/unique_fd.hpp"
#include "drover/child.hpp"
#include "drover/escape.hpp"

namespace drover {

namespace asio = boost::asio;
using clk = std::chrono::steady_clock;
using op_handler = asio::any_completion_handler<void(error_code)>;

std::string_view to_string(service_state s) noexcept {
    switch (s) {
    case service_state::stopped:
        return "stopped";
    case service_state::starting:
        return "starting";
    case service_state::running:
        return "running";
    case service_state::ready:
        return "ready";
    case service_state::stopping:
        return "stopping";
    case service_state::exited:
        return "exited";
    case service_state::backoff:
        return "backoff";
    case service_state::failed:
        return "failed";
    }
    return "unknown";
}

std::string_view to_string(health_state h) noexcept {
    switch (h) {
    case health_state::unknown:
        return "unknown";
    case health_state::healthy:
        return "healthy";
    case health_state::unhealthy:
        return "unhealthy";
    }
    return "unknown";
}

service_error::service_error(std::string service, std::string field, std::string message)
    : boost::system::system_error(make_error_code(errc::invalid_service),
                                  "service '" + service + "': " + field + ": " + message),
      service_(std::move(service)), field_(std::move(field)),
      message_((service_.empty() ? std::string() : "service '" + service_ + "': ") + field_ + ": " +
               message) {}

namespace {

// "250ms", "1.5s", "2m30s": short, exact to the millisecond.
std::string human(clk::duration d) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    if (ms < 1000) return std::to_string(ms) + "ms";
    if (ms < 60000) {
        std::string s = std::to_string(ms / 1000);
        if (ms % 1000) {
            char frac[8];
            std::snprintf(frac, sizeof frac, ".%03lld", static_cast<long long>(ms % 1000));
            std::string f = frac;
            while (f.back() == '0') f.pop_back();
            s += f;
        }
        return s + "s";
    }
    auto s = ms / 1000;
    std::string out = std::to_string(s / 60) + "m";
    if (s % 60) out += std::to_string(s % 60) + "s";
    return out;
}

std::string_view condition_name(dependency_condition c) {
    switch (c) {
    case dependency_condition::started:
        return "started";
    case dependency_condition::ready:
        return "ready";
    case dependency_condition::healthy:
        return "healthy";
    case dependency_condition::completed:
        return "completed";
    case dependency_condition::completed_successfully:
        return "completed successfully";
    }
    return "?";
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diag = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            std::size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diag = up;
        }
    }
    return row[b.size()];
}

bool needs_notify_socket(const service& s) {
    return s.ready.type == readiness::kind::notify || s.watchdog.has_value();
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Validation: everything `add`, `add_group` and `async_replace` refuse, before anything changes.

namespace {

// One service's own fields (everything but its relations to other services).
void check_fields(const service& s) {
    auto bad = [&](std::string field, std::string msg) {
        throw service_error(s.name, std::move(field), std::move(msg));
    };
    if (s.name.empty()) bad("name", "empty");
    if (s.name.size() > 128) bad("name", "longer than 128 characters");
    for (char c : s.name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                  c == '_' || c == '.';
        if (!ok)
            bad("name",
                "only letters, digits, '-', '_' and '.' are allowed, not " + escape(std::string(1, c)));
    }
    if (s.command.program().empty()) bad("command", "no program");
    if (s.backoff.initial <= clk::duration::zero()) bad("backoff.initial", "must be positive");
    if (s.backoff.max < s.backoff.initial) bad("backoff.max", "is shorter than backoff.initial");
    if (!(s.backoff.jitter >= 0.0 && s.backoff.jitter <= 1.0))
        bad("backoff.jitter", "must be within 0 and 1");
    if (s.backoff.reset_after < clk::duration::zero()) bad("backoff.reset_after", "must not be negative");
    if (s.start_limit.burst && s.start_limit.interval <= clk::duration::zero())
        bad("start_limit.interval", "must be positive");
    for (int c : s.success_codes)
        if (c < 0 || c > 255) bad("success_codes", "exit code " + std::to_string(c) + " is outside 0..255");
    const auto& r = s.ready;
    if (r.timeout <= clk::duration::zero()) bad("ready.timeout", "must be positive");
    switch (r.type) {
    case readiness::kind::none:
    case readiness::kind::notify:
        break;
    case readiness::kind::fd:
        if (r.fd_number < 3 || r.fd_number > 1023) bad("ready.fd", "descriptor must be within 3..1023");
        for (const auto& p : s.command.passed_fds())
            if (p.child_fd == r.fd_number)
                bad("ready.fd",
                    "descriptor " + std::to_string(r.fd_number) + " is already passed by the command");
        break;
    case readiness::kind::log:
        if (!s.output.capture) bad("ready.log", "needs the output captured (output.capture)");
        try {
            std::regex re(r.pattern, std::regex::ECMAScript);
        } catch (const std::regex_error& e) {
            bad("ready.log", "bad regular expression '" + escape(r.pattern) + "': " + e.what());
        }
        break;
    case readiness::kind::check:
        if (r.interval <= clk::duration::zero()) bad("ready.interval", "must be positive");
        if (auto e = detail::probe_error(r.check); !e.empty()) bad("ready", e);
        break;
    }
    if (s.health) {
        if (s.health->interval <= clk::duration::zero()) bad("health.interval", "must be positive");
        if (s.health->initial_delay < clk::duration::zero())
            bad("health.initial_delay", "must not be negative");
        if (s.health->failures == 0) bad("health.failures", "must be at least 1");
        if (auto e = detail::probe_error(s.health->check); !e.empty()) bad("health", e);
    }
    if (s.watchdog && *s.watchdog <= clk::duration::zero()) bad("watchdog", "must be positive");
    if (s.output.capture && s.output.max_line == 0) bad("output.max_line", "must be positive");
}

// One service's dependencies: not itself, not twice, and known (`known` answers for a name; `names`
// offers the suggestion for a misspelt one).
template <class Known, class Names>
void check_dependencies(const service& s, Known&& known, Names&& names) {
    std::set<std::string, std::less<>> seen;
    for (const auto& d : s.depends_on) {
        if (d.service == s.name) throw service_error(s.name, "depends_on", "depends on itself");
        if (!seen.insert(d.service).second)
            throw service_error(s.name, "depends_on", "'" + escape(d.service) + "' listed twice");
        if (!known(d.service)) {
            std::string msg = "unknown service '" + escape(d.service) + "'";
            std::string best;
            std::size_t best_d = 3;
            names([&](std::string_view n) {
                if (auto dist = edit_distance(n, d.service); dist < best_d) best_d = dist, best = n;
            });
            if (!best.empty()) msg += " (did you mean '" + best + "'?)";
            throw service_error(s.name, "depends_on", msg);
        }
    }
}

} // namespace

void supervisor::validate(const std::vector<service>& services, const std::vector<service_group>& groups) {
    std::map<std::string, const service*, std::less<>> by_name;
    for (const auto& s : services) {
        check_fields(s);
        if (!by_name.emplace(s.name, &s).second) throw service_error(s.name, "name", "defined twice");
    }
    // Dependencies: known, not itself, no cycle.
    for (const auto& s : services)
        check_dependencies(
            s, [&](std::string_view n) { return by_name.count(n) != 0; },
            [&](auto&& each) {
                for (const auto& [n, _] : by_name) each(n);
            });
    std::map<std::string_view, int> color; // 0 white, 1 on the path, 2 done
    std::vector<std::string_view> path;
    std::function<void(const service&)> visit = [&](const service& s) {
        color[s.name] = 1;
        path.push_back(s.name);
        for (const auto& d : s.depends_on) {
            int c = color[d.service];
            if (c == 1) {
                std::string cyc;
                auto it = std::find(path.begin(), path.end(), std::string_view(d.service));
                for (; it != path.end(); ++it) cyc += std::string(*it) + " -> ";
                cyc += d.service;
                throw service_error(std::string(d.service), "depends_on", "dependency cycle: " + cyc);
            }
            if (c == 0) visit(*by_name.find(d.service)->second);
        }
        path.pop_back();
        color[s.name] = 2;
    };
    for (const auto& s : services)
        if (color[s.name] == 0) visit(s);
    // Groups: named once, known members, each member in one group.
    std::set<std::string, std::less<>> group_names;
    std::map<std::string, std::string, std::less<>> member_of;
    for (const auto& g : groups) {
        if (g.name.empty()) throw service_error("", "group", "a group without a name");
        if (!group_names.insert(g.name).second) throw service_error("", "group " + g.name, "defined twice");
        for (const auto& m : g.services) {
            if (!by_name.count(m))
                throw service_error(m, "group " + g.name, "unknown service '" + escape(m) + "'");
            auto [it, fresh] = member_of.emplace(m, g.name);
            if (!fresh)
                throw service_error(m, "group " + g.name, "already a member of group '" + it->second + "'");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Event queues: one per subscriber, bounded. Full, a queue drops its oldest output line (a
// lifecycle event only when it holds nothing but those), or, for a subscriber that asked for
// event_overflow::pause_output, it tells the supervisor to stop reading output until it is half empty.

struct detail::event_queue {
    asio::any_io_executor ex;
    std::size_t capacity;
    bool pace = false;             ///< event_overflow::pause_output: never drops; full() pauses the readers
    bool paused = false;           ///< full() said so, and the readers wait for room
    std::function<void()> on_room; ///< called (posted) once a paused queue is half empty
    std::deque<supervisor_event> events;
    std::uint64_t lost = 0;                                       ///< lifecycle events dropped
    std::map<std::string, std::uint64_t, std::less<>> lost_lines; ///< output lines dropped, by service
    bool closed = false;
    std::optional<asio::any_completion_handler<void(error_code, supervisor_event)>> waiting;

    void deliver(error_code ec, supervisor_event ev) {
        auto h = std::move(*waiting);
        waiting.reset();
        auto hex = asio::get_associated_executor(h, ex);
        asio::post(ex, [h = std::move(h), hex, ec, ev = std::move(ev)]() mutable {
            asio::dispatch(hex, [h = std::move(h), ec, ev = std::move(ev)]() mutable {
                std::move(h)(ec, std::move(ev));
            });
        });
    }
    bool anything_lost() const { return lost || !lost_lines.empty(); }
    /// A paced queue at capacity: output reading waits until it is half empty.
    bool full() {
        if (!pace || closed || events.size() < capacity) return false;
        paused = true;
        return true;
    }
    void push(const supervisor_event& ev) {
        if (closed) return;
        if (waiting && events.empty() && !anything_lost()) return deliver({}, ev);
        if (!pace && events.size() >= capacity) {
            // An output line goes first: what state a service is in outweighs one line of it.
            auto it = std::find_if(events.begin(), events.end(), [](const supervisor_event& e) {
                return e.type == supervisor_event::kind::output;
            });
            if (it != events.end()) {
                ++lost_lines[it->service];
                events.erase(it);
            } else {
                events.pop_front();
                ++lost;
            }
        }
        events.push_back(ev);
    }
    void next(asio::any_completion_handler<void(error_code, supervisor_event)> h) {
        waiting.emplace(std::move(h));
        if (!lost_lines.empty()) {
            auto node = lost_lines.extract(lost_lines.begin());
            supervisor_event ev;
            ev.type = supervisor_event::kind::lost;
            ev.service = std::move(node.key());
            ev.time = wall_clock::now();
            ev.count = node.mapped();
            ev.text = std::to_string(ev.count) + (ev.count == 1 ? " line" : " lines") +
                      " of output dropped: the subscriber fell behind";
            return deliver({}, std::move(ev));
        }
        if (lost) {
            supervisor_event ev;
            ev.type = supervisor_event::kind::lost;
            ev.time = wall_clock::now();
            ev.count = std::exchange(lost, 0);
            ev.text = std::to_string(ev.count) + " events dropped: the subscriber fell behind";
            return deliver({}, std::move(ev));
        }
        if (!events.empty()) {
            auto ev = std::move(events.front());
            events.pop_front();
            if (paused && events.size() <= capacity / 2) {
                paused = false;
                if (on_room) asio::post(ex, on_room);
            }
            return deliver({}, std::move(ev));
        }
        if (closed) return deliver(asio::error::operation_aborted, {});
    }
    void close() {
        closed = true;
        if (paused) {
            paused = false;
            if (on_room) asio::post(ex, on_room);
        }
        if (waiting && events.empty() && !anything_lost()) deliver(asio::error::operation_aborted, {});
    }
};

void detail::initiate_event_next(std::shared_ptr<event_queue> q,
                                 asio::any_completion_handler<void(error_code, supervisor_event)> h) {
    if (!q)
        throw boost::system::system_error(asio::error::bad_descriptor,
                                          "event_stream::next on an empty stream");
    if (q->waiting)
        throw boost::system::system_error(asio::error::in_progress, "event_stream::next: one at a time");
    q->next(std::move(h));
}

event_stream& event_stream::operator=(event_stream&& o) noexcept {
    if (this != &o) {
        close();
        q_ = std::move(o.q_);
    }
    return *this;
}
event_stream::~event_stream() {
    close();
}
void event_stream::close() noexcept {
    if (!q_) return;
    q_->events.clear();
    q_->lost = 0;
    q_->lost_lines.clear();
    q_->close(); // a later next() completes with operation_aborted
}

// ---------------------------------------------------------------------------------------------
// The engine.

namespace detail {

struct svc;
struct output_reader;

/// How long the output pipes of an ended run are still read: a process that left the tree
/// (possible only without a cgroup) may hold them open forever (reliability.md, E1).
constexpr auto drain_grace = std::chrono::seconds(1);

/// One run of a service's process: the child and everything that lives as long as it.
struct run_state {
    std::uint64_t gen = 0;
    child c;
    pid_t pid = 0;
    clk::time_point started;
    std::optional<std::uint64_t> cgroup_id;
    bool main_exited = false;
    bool stopping = false; // a stop of the tree is in flight
    bool ended = false;    // the tree is gone
    enum class after { decide, stay_stopped, start_again } then = after::decide;
    std::string stop_reason;    // for stay_stopped / start_again
    std::string failure_reason; // set when drover ended the run as a failure (health, watchdog...)
    std::optional<exit_status> status;
    // Checks; each allocated only when configured.
    std::unique_ptr<asio::steady_timer> ready_timer, check_timer, health_timer, watchdog_timer;
    std::unique_ptr<probe_attempt> attempt;
    std::unique_ptr<asio::posix::stream_descriptor> ready_fd;
    std::vector<std::weak_ptr<output_reader>> readers;
    unsigned health_fails = 0;
    clk::duration watchdog_interval{};

    void cancel_checks() {
        for (auto* t : {&ready_timer, &check_timer, &health_timer, &watchdog_timer})
            if (*t) (*t)->cancel();
        attempt.reset();
        if (ready_fd) {
            error_code ignored;
            ready_fd->close(ignored);
        }
    }
};

struct svc {
    service spec;
    std::string group; // the restart group it belongs to, if any
    std::shared_ptr<const std::regex> pattern;
    service_state state = service_state::stopped;
    std::string reason = "added";
    wall_clock::time_point since = wall_clock::now();
    unsigned restarts = 0;
    std::uint64_t probes_ok = 0, probes_failed = 0;
    std::optional<exit_status> last_status;
    bool ready = false;
    health_state health = health_state::unknown;
    std::string notify_status;
    bool wanted = false;        // should run (an explicit start, async_run)
    bool ran_and_ended = false; // its last run ended and it will not restart (for `completed`)
    bool ended_ok = false;      // ... with a success code
    bool removing = false;
    std::uint64_t gen = 0;
    unsigned consecutive = 0;           // consecutive short runs: the backoff exponent
    std::deque<clk::time_point> starts; // automatic starts within the start limit's interval
    std::shared_ptr<run_state> run;
    std::unique_ptr<asio::steady_timer> backoff_timer;
    std::unique_ptr<notify_socket> notify;
    std::deque<service_line> ring;
    std::vector<op_handler> start_waiters, stop_waiters;
};

struct output_reader;

struct supervisor_impl : std::enable_shared_from_this<supervisor_impl> {
    asio::any_io_executor ex;
    std::vector<std::shared_ptr<svc>> order; // in the order added
    std::vector<service_group> groups;
    std::vector<std::weak_ptr<event_queue>> subscribers;
    /// close_readers_later's timers still pending: destroy() cancels them, so that a supervisor
    /// that is gone leaves nothing behind in the io_context (its run() can return at once).
    std::vector<std::weak_ptr<asio::steady_timer>> drain_timers;
    /// Output readers waiting for room in a subscriber's queue (event_overflow::pause_output).
    /// Held here (no read is pending on them), until resume_output() arms them again.
    std::vector<std::shared_ptr<output_reader>> parked;
    std::vector<op_handler> run_waiters, shutdown_waiters;
    bool running = false; // async_run in progress
    bool shutting_down = false;
    std::unique_ptr<asio::steady_timer> shutdown_timer;
    std::minstd_rand rng{std::random_device{}()};

    explicit supervisor_impl(asio::any_io_executor e) : ex(std::move(e)) {}

    // -- plumbing --------------------------------------------------------------------------

    void complete(op_handler h, error_code ec) {
        auto hex = asio::get_associated_executor(h, ex);
        asio::post(ex, [h = std::move(h), hex, ec]() mutable {
            asio::dispatch(hex, [h = std::move(h), ec]() mutable { std::move(h)(ec); });
        });
    }
    void complete_all(std::vector<op_handler>& hs, error_code ec) {
        auto taken = std::move(hs);
        hs.clear();
        for (auto& h : taken) complete(std::move(h), ec);
    }

    /// The live service of that name (one being removed is not found: a new one of the same
    /// name may have been added meanwhile).
    std::shared_ptr<svc> find(std::string_view name) const {
        for (const auto& s : order)
            if (!s->removing && s->spec.name == name) return s;
        return nullptr;
    }

    /// True when a pausing subscriber's queue is full: the output readers wait (park) until
    /// it has room again.
    bool output_paused() {
        bool full = false;
        for (const auto& w : subscribers)
            if (auto q = w.lock(); q && q->full()) full = true;
        return full;
    }
    void resume_output();
    void close_all_readers();

    void emit(supervisor_event ev) {
        ev.time = wall_clock::now();
        bool prune = false;
        for (auto& w : subscribers) {
            if (auto q = w.lock())
                q->push(ev);
            else
                prune = true;
        }
        if (prune)
            std::erase_if(subscribers, [](const std::weak_ptr<event_queue>& w) { return w.expired(); });
    }
    void emit_simple(const svc& s, supervisor_event::kind k, std::string text, bool ok = true) {
        supervisor_event ev;
        ev.type = k;
        ev.service = s.spec.name;
        ev.state = s.state;
        ev.text = std::move(text);
        ev.ok = ok;
        emit(std::move(ev));
    }

    // Callbacks hold weak references and the run's generation, so a callback for a removed
    // service, an ended run or a destroyed supervisor does nothing.
    struct ref {
        std::weak_ptr<supervisor_impl> i;
        std::weak_ptr<svc> s;
        std::uint64_t gen;
    };
    ref ref_of(const std::shared_ptr<svc>& s) { return ref{weak_from_this(), s, s->gen}; }
    static bool lock(const ref& r, std::shared_ptr<supervisor_impl>& I, std::shared_ptr<svc>& S) {
        I = r.i.lock();
        S = r.s.lock();
        return I && S && S->gen == r.gen && S->run && S->run->gen == r.gen;
    }

    void set_state(const std::shared_ptr<svc>& s, service_state st, std::string reason) {
        s->state = st;
        s->reason = std::move(reason);
        s->since = wall_clock::now();
        supervisor_event ev;
        ev.type = supervisor_event::kind::state;
        ev.service = s->spec.name;
        ev.state = st;
        ev.text = s->reason;
        emit(std::move(ev));
        reevaluate_dependents(*s);
    }

    // -- dependencies ----------------------------------------------------------------------

    enum class dep_verdict { ok, wait, fail };
    dep_verdict check_dep(const dependency& d, std::string& why) {
        auto D = find(d.service);
        if (!D) {
            why = "dependency '" + d.service + "' was removed";
            return dep_verdict::fail;
        }
        const bool up = D->state == service_state::running || D->state == service_state::ready;
        if (D->state == service_state::failed) {
            if ((d.condition == dependency_condition::completed) && D->ran_and_ended) return dep_verdict::ok;
            why = "dependency '" + d.service + "' failed: " + D->reason;
            return dep_verdict::fail;
        }
        switch (d.condition) {
        case dependency_condition::started:
            if (D->state == service_state::exited || (D->run && !D->run->stopping)) return dep_verdict::ok;
            break;
        case dependency_condition::ready:
            if (up || D->state == service_state::exited) return dep_verdict::ok;
            break;
        case dependency_condition::healthy:
            if (D->state == service_state::exited) return dep_verdict::ok;
            if (up && (!D->spec.health || D->health == health_state::healthy)) return dep_verdict::ok;
            break;
        case dependency_condition::completed:
            if (D->state == service_state::exited) return dep_verdict::ok;
            break;
        case dependency_condition::completed_successfully:
            if (D->state == service_state::exited) {
                if (D->ended_ok) return dep_verdict::ok;
                why = "dependency '" + d.service + "' did not complete successfully: " + D->reason;
                return dep_verdict::fail;
            }
            break;
        }
        why = "waiting for '" + d.service + "' to be " + std::string(condition_name(d.condition));
        if (D->state == service_state::stopped && !D->wanted) why += " (it is stopped)";
        return dep_verdict::wait;
    }

    void reevaluate_dependents(const svc& changed) {
        auto depends_on_changed = [&](const svc& t) {
            return std::any_of(t.spec.depends_on.begin(), t.spec.depends_on.end(),
                               [&](const dependency& d) { return d.service == changed.spec.name; });
        };
        if (std::none_of(order.begin(), order.end(), [&](const auto& t) { return depends_on_changed(*t); }))
            return;
        // Copy: starting a dependent may change the list's elements' states, never the list.
        auto snapshot = order;
        for (const auto& t : snapshot) {
            if (t.get() == &changed || !t->wanted || t->run || t->state != service_state::starting) continue;
            bool depends = std::any_of(t->spec.depends_on.begin(), t->spec.depends_on.end(),
                                       [&](const dependency& d) { return d.service == changed.spec.name; });
            if (depends) try_start(t);
        }
    }

    std::vector<std::shared_ptr<svc>> dependency_order() const {
        std::vector<std::shared_ptr<svc>> out;
        std::set<const svc*> done;
        std::function<void(const std::shared_ptr<svc>&)> visit = [&](const std::shared_ptr<svc>& s) {
            if (!done.insert(s.get()).second) return;
            for (const auto& d : s->spec.depends_on)
                if (auto D = find(d.service)) visit(D);
            out.push_back(s);
        };
        for (const auto& s : order) visit(s);
        return out;
    }

    // -- starting --------------------------------------------------------------------------

    void fail(const std::shared_ptr<svc>& s, std::string reason) {
        s->wanted = false;
        if (s->backoff_timer) s->backoff_timer->cancel();
        set_state(s, service_state::failed, std::move(reason));
        complete_all(s->start_waiters, errc::service_failed);
    }

    void try_start(const std::shared_ptr<svc>& s) {
        if (!s->wanted || shutting_down) return;
        if (s->run) return; // running, or its tree is being stopped (the stop decides)
        std::string wait_why;
        for (const auto& d : s->spec.depends_on) {
            std::string why;
            switch (check_dep(d, why)) {
            case dep_verdict::ok:
                break;
            case dep_verdict::fail:
                return fail(s, why);
            case dep_verdict::wait:
                if (wait_why.empty()) wait_why = why;
                break;
            }
        }
        if (!wait_why.empty()) {
            if (s->state != service_state::starting || s->reason != wait_why)
                set_state(s, service_state::starting, wait_why);
            return;
        }
        spawn_run(s);
    }

    void spawn_run(const std::shared_ptr<svc>& s) {
        const service& sp = s->spec;
        command cmd = sp.command;
        if (sp.output.capture) cmd.std_out(stdio::pipe()).std_err(stdio::pipe());
        // The service talks to this supervisor's socket, never to the manager of drover itself.
        cmd.env_remove("NOTIFY_SOCKET").env_remove("WATCHDOG_USEC").env_remove("WATCHDOG_PID");
        if (needs_notify_socket(sp)) {
            if (!s->notify) {
                try {
                    std::weak_ptr<svc> w = s;
                    std::weak_ptr<supervisor_impl> wi = weak_from_this();
                    s->notify = std::make_unique<notify_socket>(
                        ex, sp.name, [w](const notify_sender& who) { return belongs(w, who); },
                        [w, wi](notify_message m) {
                            auto I = wi.lock();
                            auto S = w.lock();
                            if (I && S) I->on_notify(S, std::move(m));
                        },
                        [w, wi](const notify_sender& who, std::string why) {
                            auto I = wi.lock();
                            auto S = w.lock();
                            if (!I || !S) return;
                            I->emit_simple(
                                *S, supervisor_event::kind::notify,
                                "refused a message from pid " + std::to_string(who.pid) + ": " + why, false);
                        });
                } catch (const std::exception& e) {
                    return fail(s, std::string("cannot create the notify socket: ") + e.what());
                }
            }
            cmd.env("NOTIFY_SOCKET", s->notify->address());
            if (sp.watchdog)
                cmd.env("WATCHDOG_USEC",
                        std::to_string(
                            std::chrono::duration_cast<std::chrono::microseconds>(*sp.watchdog).count()));
        }
        unique_fd ready_read, ready_write;
        if (sp.ready.type == readiness::kind::fd) {
            int p[2];
            if (::pipe2(p, O_CLOEXEC) != 0 || ::fcntl(p[0], F_SETFL, O_NONBLOCK) != 0)
                return fail(s, std::string("cannot create the readiness pipe: ") + std::strerror(errno));
            ready_read.reset(p[0]);
            ready_write.reset(p[1]);
            cmd.pass_fd(ready_write.get(), sp.ready.fd_number);
        }
        spawn_failure failure;
        child c = spawn(ex, cmd, failure);
        ready_write.reset();
        if (!c.valid()) return fail(s, failure.message());

        auto r = std::make_shared<run_state>();
        r->gen = ++s->gen;
        r->pid = c.id().value_or(0);
        r->started = clk::now();
        if (auto p = c.cgroup_path()) r->cgroup_id = cgroup_id_of(*p);
        r->c = std::move(c);
        s->run = r;
        // The start limit's window: only starts within `interval` are kept (none without a limit).
        if (!sp.start_limit.burst) s->starts.clear();
        while (!s->starts.empty() && r->started - s->starts.front() >= sp.start_limit.interval)
            s->starts.pop_front();
        s->starts.push_back(r->started);
        s->ready = false;
        s->health = health_state::unknown;
        s->ran_and_ended = false;
        s->ended_ok = false;

        if (sp.output.capture) {
            start_reader(s, r, 1, std::move(r->c.std_out()));
            start_reader(s, r, 2, std::move(r->c.std_err()));
        }
        r->c.async_wait([rf = ref_of(s), w = std::weak_ptr<run_state>(r)](error_code, exit_status st) {
            std::shared_ptr<supervisor_impl> I;
            std::shared_ptr<svc> S;
            if (!lock(rf, I, S)) return;
            I->on_exit(S, st);
        });
        if (sp.watchdog) {
            r->watchdog_interval = *sp.watchdog;
            arm_watchdog(s);
        }
        const std::string started = "started (pid " + std::to_string(r->pid) + ")";
        if (sp.ready.type == readiness::kind::none) {
            s->ready = true;
            set_state(s, service_state::running, started);
            if (s->run != r) return; // a dependent's reaction changed it
            complete_all(s->start_waiters, {});
            start_health(s);
            return;
        }
        set_state(s, service_state::starting, started + ", waiting for readiness");
        if (s->run != r) return;
        r->ready_timer = std::make_unique<asio::steady_timer>(ex, sp.ready.timeout);
        r->ready_timer->async_wait([rf = ref_of(s)](error_code ec) {
            std::shared_ptr<supervisor_impl> I;
            std::shared_ptr<svc> S;
            if (ec || !lock(rf, I, S) || S->ready || S->run->stopping) return;
            I->end_as_failure(S, "not ready within " + human(S->spec.ready.timeout));
        });
        if (sp.ready.type == readiness::kind::fd) watch_ready_fd(s, std::move(ready_read));
        if (sp.ready.type == readiness::kind::check) run_ready_check(s);
    }

    static bool belongs(const std::weak_ptr<svc>& w, const notify_sender& who) {
        auto S = w.lock();
        if (!S || !S->run || S->run->ended) return false;
        const auto& r = *S->run;
        if (who.cgroup_id && r.cgroup_id) return *who.cgroup_id == *r.cgroup_id;
        // No cgroup id (a kernel before 6.13, or a service without a leaf cgroup): the sender's
        // pid must be in the tree now. This is racy for a sender that already exited (see
        // reliability.md, H3); such a message is refused.
        if (who.pid <= 0) return false;
        auto pids = r.c.tree_pids();
        return std::find(pids.begin(), pids.end(), who.pid) != pids.end();
    }

    void mark_ready(const std::shared_ptr<svc>& s, std::string how) {
        auto r = s->run;
        if (!r || s->ready || r->stopping) return;
        s->ready = true;
        if (r->ready_timer) r->ready_timer->cancel();
        if (r->check_timer) r->check_timer->cancel();
        r->attempt.reset();
        set_state(s, service_state::ready, "ready: " + how);
        if (s->run != r) return;
        complete_all(s->start_waiters, {});
        start_health(s);
    }

    void watch_ready_fd(const std::shared_ptr<svc>& s, unique_fd fd) {
        auto r = s->run;
        r->ready_fd = std::make_unique<asio::posix::stream_descriptor>(ex, fd.release());
        r->ready_fd->async_wait(asio::posix::stream_descriptor::wait_read, [rf = ref_of(s)](error_code ec) {
            std::shared_ptr<supervisor_impl> I;
            std::shared_ptr<svc> S;
            if (ec || !lock(rf, I, S)) return;
            I->on_ready_fd(S);
        });
    }
    void on_ready_fd(const std::shared_ptr<svc>& s) {
        auto& r = *s->run;
        if (!r.ready_fd || !r.ready_fd->is_open()) return;
        char buf[512];
        for (;;) {
            ssize_t n = ::read(r.ready_fd->native_handle(), buf, sizeof buf);
            if (n > 0) {
                if (std::memchr(buf, '\n', static_cast<std::size_t>(n))) {
                    error_code ignored;
                    r.ready_fd->close(ignored);
                    return mark_ready(s,
                                      "a newline on descriptor " + std::to_string(s->spec.ready.fd_number));
                }
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) return watch_ready_fd_again(s);
            // EOF without a newline: the service closed it; only the timeout can end the wait.
            error_code ignored;
            r.ready_fd->close(ignored);
            return;
        }
    }
    void watch_ready_fd_again(const std::shared_ptr<svc>& s) {
        s->run->ready_fd->async_wait(asio::posix::stream_descriptor::wait_read,
                                     [rf = ref_of(s)](error_code ec) {
                                         std::shared_ptr<supervisor_impl> I;
                                         std::shared_ptr<svc> S;
                                         if (ec || !lock(rf, I, S)) return;
                                         I->on_ready_fd(S);
                                     });
    }

    void run_ready_check(const std::shared_ptr<svc>& s) {
        auto r = s->run;
        r->attempt = start_probe(ex, s->spec.ready.check, [rf = ref_of(s)](bool ok, std::string detail) {
            std::shared_ptr<supervisor_impl> I;
            std::shared_ptr<svc> S;
            if (!lock(rf, I, S) || S->ready || S->run->stopping) return;
            ++(ok ? S->probes_ok : S->probes_failed);
            I->emit_simple(*S, supervisor_event::kind::probe, "readiness: " + detail, ok);
            if (ok) return I->mark_ready(S, detail);
            auto& rr = *S->run;
            if (!rr.check_timer) rr.check_timer = std::make_unique<asio::steady_timer>(I->ex);
            rr.check_timer->expires_after(S->spec.ready.interval);
            rr.check_timer->async_wait([rf2 = I->ref_of(S)](error_code ec) {
                std::shared_ptr<supervisor_impl> I2;
                std::shared_ptr<svc> S2;
                if (ec || !lock(rf2, I2, S2) || S2->ready || S2->run->stopping) return;
                I2->run_ready_check(S2);
            });
        });
    }

    void start_health(const std::shared_ptr<svc>& s) {
        if (!s->spec.health) return;
        auto& r = *s->run;
        if (!r.health_timer) r.health_timer = std::make_unique<asio::steady_timer>(ex);
        r.health_timer->expires_after(s->spec.health->initial_delay);
        r.health_timer->async_wait([rf = ref_of(s)](error_code ec) {
            std::shared_ptr<supervisor_impl> I;
            std::shared_ptr<svc> S;
            if (ec || !lock(rf, I, S) || S->run->stopping) return;
            I->run_health(S);
        });
    }
    void run_health(const std::shared_ptr<svc>& s) {
        s->run->attempt =
            start_probe(ex, s->spec.health->check, [rf = ref_of(s)](bool ok, std::string detail) {
                std::shared_ptr<supervisor_impl> I;
                std::shared_ptr<svc> S;
                if (!lock(rf, I, S) || S->run->stopping) return;
                I->on_health(S, ok, std::move(detail));
            });
    }
    void on_health(const std::shared_ptr<svc>& s, bool ok, std::string detail) {
        auto& r = *s->run;
        const auto& h = *s->spec.health;
        ++(ok ? s->probes_ok : s->probes_failed);
        emit_simple(*s, supervisor_event::kind::probe, "health: " + detail, ok);
        if (ok) {
            r.health_fails = 0;
            if (s->health != health_state::healthy) {
                s->health = health_state::healthy;
                reevaluate_dependents(*s);
                if (!s->run || s->run->stopping) return;
            }
        } else if (++r.health_fails >= h.failures) {
            s->health = health_state::unhealthy;
            return end_as_failure(s, "health check failed " + std::to_string(r.health_fails) +
                                         (r.health_fails == 1 ? " time: " : " times in a row: ") + detail);
        }
        s->run->health_timer->expires_after(h.interval);
        s->run->health_timer->async_wait([rf = ref_of(s)](error_code ec) {
            std::shared_ptr<supervisor_impl> I;
            std::shared_ptr<svc> S;
            if (ec || !lock(rf, I, S) || S->run->stopping) return;
            I->run_health(S);
        });
    }

    void arm_watchdog(const std::shared_ptr<svc>& s) {
        auto& r = *s->run;
        if (!r.watchdog_timer) r.watchdog_timer = std::make_unique<asio::steady_timer>(ex);
        r.watchdog_timer->expires_after(r.watchdog_interval);
        r.watchdog_timer->async_wait([rf = ref_of(s)](error_code ec) {
            std::shared_ptr<supervisor_impl> I;
            std::shared_ptr<svc> S;
            if (ec || !lock(rf, I, S) || S->run->stopping) return;
            I->end_as_failure(S, "watchdog: no WATCHDOG=1 within " + human(S->run->watchdog_interval));
        });
    }

    void on_notify(const std::shared_ptr<svc>& s, notify_message m) {
        auto r = s->run;
        if (!r || r->ended) return;
        emit_simple(*s, supervisor_event::kind::notify, m.text, true);
        if (m.status) s->notify_status = *m.status;
        if (r->stopping) return;
        if (m.watchdog_trigger)
            return end_as_failure(s, "watchdog triggered by the service (WATCHDOG=trigger)");
        if (m.watchdog_usec && *m.watchdog_usec > 0) {
            r->watchdog_interval = std::chrono::microseconds(*m.watchdog_usec);
            arm_watchdog(s);
        } else if (m.watchdog && r->watchdog_interval > clk::duration::zero()) {
            arm_watchdog(s);
        }
        if (m.extend_timeout_usec && !s->ready && r->ready_timer) {
            r->ready_timer->expires_after(std::chrono::microseconds(*m.extend_timeout_usec));
            r->ready_timer->async_wait([rf = ref_of(s)](error_code ec) {
                std::shared_ptr<supervisor_impl> I;
                std::shared_ptr<svc> S;
                if (ec || !lock(rf, I, S) || S->ready || S->run->stopping) return;
                I->end_as_failure(S, "not ready within the time extended by EXTEND_TIMEOUT_USEC");
            });
        }
        if (m.ready && s->spec.ready.type == readiness::kind::notify) mark_ready(s, "READY=1");
    }

    // -- output ----------------------------------------------------------------------------

    void start_reader(const std::shared_ptr<svc>& s, const std::shared_ptr<run_state>& r, int stream,
                      asio::posix::stream_descriptor sd);

    void on_line(const std::shared_ptr<svc>& s, int stream, std::string text, std::uint64_t dropped,
                 std::uint64_t gen) {
        auto& ring = s->ring;
        if (s->spec.output.keep_lines) {
            if (ring.size() >= s->spec.output.keep_lines) ring.pop_front();
            ring.push_back(service_line{wall_clock::now(), stream, text, dropped});
        }
        if (s->spec.ready.type == readiness::kind::log && s->pattern && s->run && s->run->gen == gen &&
            !s->ready && !s->run->stopping) {
            // libstdc++'s regex recurses per character: bound what it sees.
            std::string_view head(text.data(), std::min<std::size_t>(text.size(), 4096));
            if (std::regex_search(head.begin(), head.end(), *s->pattern))
                mark_ready(s, "log line matched /" + s->spec.ready.pattern + "/");
        }
        supervisor_event ev;
        ev.type = supervisor_event::kind::output;
        ev.service = s->spec.name;
        ev.state = s->state;
        ev.stream = stream;
        ev.text = std::move(text);
        ev.count = dropped;
        emit(std::move(ev));
    }

    // -- ending a run ----------------------------------------------------------------------

    void stop_tree(const std::shared_ptr<svc>& s) {
        auto r = s->run;
        r->stopping = true;
        r->cancel_checks();
        r->c.async_stop([rf = ref_of(s)](error_code, exit_status st) {
            std::shared_ptr<supervisor_impl> I;
            std::shared_ptr<svc> S;
            if (!lock(rf, I, S)) return;
            I->on_tree_gone(S, st);
        });
    }

    // The main process exited on its own (or after a stop drover sent: then the stop's
    // completion continues).
    void on_exit(const std::shared_ptr<svc>& s, exit_status st) {
        auto r = s->run;
        r->main_exited = true;
        r->status = st;
        s->last_status = st;
        if (r->stopping) return;
        // Whatever it started is stopped before anything else happens (a restart must not
        // meet the previous run's grandchildren).
        r->then = run_state::after::decide;
        stop_tree(s);
    }

    void end_as_failure(const std::shared_ptr<svc>& s, std::string why) {
        auto r = s->run;
        if (!r || r->stopping) return;
        r->failure_reason = why;
        r->then = run_state::after::decide;
        set_state(s, service_state::stopping, why);
        if (s->run != r || r->stopping) return;
        stop_tree(s);
    }

    void request_stop(const std::shared_ptr<svc>& s, std::string reason, run_state::after then) {
        if (s->backoff_timer) s->backoff_timer->cancel();
        auto r = s->run;
        if (!r) {
            if (then == run_state::after::start_again) return try_start(s);
            if (s->state != service_state::stopped) set_state(s, service_state::stopped, reason);
            after_stopped(s);
            return;
        }
        r->then = then;
        r->stop_reason = std::move(reason);
        if (r->stopping) return; // the stop in flight ends as asked now
        set_state(s, service_state::stopping, r->stop_reason);
        if (s->run != r || r->stopping) return;
        stop_tree(s);
    }

    void close_readers_later(const std::shared_ptr<run_state>& r);

    void on_tree_gone(const std::shared_ptr<svc>& s, exit_status st) {
        auto r = s->run;
        r->ended = true;
        close_readers_later(r);
        if (!r->status) r->status = st;
        s->last_status = *r->status;
        s->run.reset();
        {
            supervisor_event ev;
            ev.type = supervisor_event::kind::exited;
            ev.service = s->spec.name;
            ev.state = s->state;
            ev.status = *r->status;
            ev.text = r->status->to_string();
            if (!r->failure_reason.empty()) ev.text += " (" + r->failure_reason + ")";
            emit(std::move(ev));
        }
        // A stop asked for is done: the tree is gone, whatever comes next (a start asked for
        // after the stop may start it again).
        complete_all(s->stop_waiters, {});
        auto then = shutting_down ? run_state::after::stay_stopped : r->then;
        switch (then) {
        case run_state::after::stay_stopped:
            set_state(s, service_state::stopped, r->stop_reason.empty() ? "stopped" : r->stop_reason);
            return after_stopped(s);
        case run_state::after::start_again:
            s->wanted = true;
            return try_start(s);
        case run_state::after::decide:
            return decide(s, *r);
        }
    }

    void after_stopped(const std::shared_ptr<svc>& s) {
        complete_all(s->start_waiters, asio::error::operation_aborted);
        complete_all(s->stop_waiters, {});
        if (s->removing) {
            std::erase(order, s);
            if (!find(s->spec.name)) // not re-added meanwhile
                for (auto& g : groups) std::erase(g.services, s->spec.name);
            s->gen++; // every pending callback is now stale
        }
        if (shutting_down) shutdown_progress();
    }

    // The run ended by itself (or drover ended it as a failure): restart, or not, and how.
    void decide(const std::shared_ptr<svc>& s, const run_state& r) {
        const service& sp = s->spec;
        const exit_status st = *r.status;
        const bool success =
            r.failure_reason.empty() && st.is_exited() &&
            std::find(sp.success_codes.begin(), sp.success_codes.end(), st.code()) != sp.success_codes.end();
        std::string what = r.failure_reason.empty() ? st.to_string() : r.failure_reason;
        const auto ran = clk::now() - r.started;
        if (ran >= sp.backoff.reset_after) s->consecutive = 0;
        bool restart =
            sp.restart == restart_policy::always || (sp.restart == restart_policy::on_failure && !success);
        if (!s->wanted) restart = false;
        if (!restart) {
            s->wanted = false;
            s->ran_and_ended = true;
            s->ended_ok = success;
            if (success) {
                set_state(s, service_state::exited, what);
                complete_all(s->start_waiters, {});
            } else {
                set_state(s, service_state::failed,
                          what + (sp.restart == restart_policy::no ? " (restart = no)" : ""));
                complete_all(s->start_waiters, errc::service_failed);
            }
            return;
        }
        // The start limit: `burst` automatic starts within `interval`.
        clk::duration delay{};
        auto now = clk::now();
        while (!s->starts.empty() && now - s->starts.front() >= sp.start_limit.interval)
            s->starts.pop_front();
        bool at_limit = sp.start_limit.burst && s->starts.size() >= sp.start_limit.burst;
        if (at_limit && !sp.start_limit.keep_retrying) {
            s->wanted = false;
            s->ran_and_ended = true;
            set_state(s, service_state::failed,
                      "start limit reached: " + std::to_string(s->starts.size()) + " starts within " +
                          human(sp.start_limit.interval) + "; last run: " + what);
            complete_all(s->start_waiters, errc::service_failed);
            return;
        }
        if (at_limit) {
            delay = sp.backoff.max;
        } else if (s->consecutive > 0) {
            // initial * 2^(n-1), capped, then spread by the jitter.
            double d = std::chrono::duration<double>(sp.backoff.initial).count();
            for (unsigned i = 1; i < s->consecutive && d < 1e9; ++i) d *= 2;
            d = std::min(d, std::chrono::duration<double>(sp.backoff.max).count());
            if (sp.backoff.jitter > 0) {
                std::uniform_real_distribution<double> u(-sp.backoff.jitter, sp.backoff.jitter);
                d *= 1.0 + u(rng);
            }
            delay = std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(d));
        }
        ++s->consecutive;
        ++s->restarts;
        {
            supervisor_event ev;
            ev.type = supervisor_event::kind::restart;
            ev.service = sp.name;
            ev.state = s->state;
            ev.delay = delay;
            ev.text = what;
            emit(std::move(ev));
        }
        // Its own state first: the related services' reactions must see it waiting to restart.
        if (delay <= clk::duration::zero()) {
            set_state(s, service_state::starting, "restarting: " + what);
            restart_related(s, what);
            return try_start(s);
        }
        set_state(s, service_state::backoff, "restarting in " + human(delay) + ": " + what);
        restart_related(s, what);
        if (s->run || s->state != service_state::backoff) return; // a reaction already acted
        if (!s->backoff_timer) s->backoff_timer = std::make_unique<asio::steady_timer>(ex);
        s->backoff_timer->expires_after(delay);
        s->backoff_timer->async_wait([w = std::weak_ptr<svc>(s), wi = weak_from_this()](error_code ec) {
            auto I = wi.lock();
            auto S = w.lock();
            if (ec || !I || !S || S->state != service_state::backoff) return;
            I->try_start(S);
        });
    }

    // OTP strategies and `restart_with` dependents: the services that restart with this one.
    void restart_related(const std::shared_ptr<svc>& s, const std::string& what) {
        std::vector<std::shared_ptr<svc>> also;
        if (!s->group.empty()) {
            for (const auto& g : groups) {
                if (g.name != s->group || g.strategy == restart_strategy::one_for_one) continue;
                auto me = std::find(g.services.begin(), g.services.end(), s->spec.name);
                auto from = g.strategy == restart_strategy::one_for_all ? g.services.begin() : me;
                for (auto it = from; it != g.services.end(); ++it)
                    if (*it != s->spec.name)
                        if (auto t = find(*it)) also.push_back(t);
            }
        }
        for (const auto& t : followers(*s))
            if (std::find(also.begin(), also.end(), t) == also.end()) also.push_back(t);
        for (const auto& t : also) {
            if (!t->run || t->run->stopping) continue;
            ++t->restarts;
            std::string why = t->group == s->group && !s->group.empty()
                                  ? "restarting with group '" + s->group + "': '" + s->spec.name + "' " + what
                                  : "restarting with dependency '" + s->spec.name + "': " + what;
            request_stop(t, why, run_state::after::start_again);
        }
    }

    /// The running services that declared `restart_with` on `s`.
    std::vector<std::shared_ptr<svc>> followers(const svc& s) const {
        std::vector<std::shared_ptr<svc>> out;
        for (const auto& t : order)
            for (const auto& d : t->spec.depends_on)
                if (d.restart_with && d.service == s.spec.name) out.push_back(t);
        return out;
    }
    void restart_followers(const svc& s, const std::string& why) {
        for (const auto& t : followers(s)) {
            if (!t->run || t->run->stopping) continue;
            ++t->restarts;
            request_stop(t, "restarting with dependency '" + s.spec.name + "': " + why,
                         run_state::after::start_again);
        }
    }

    // -- operations ------------------------------------------------------------------------

    void start_op(const std::shared_ptr<svc>& s, op_handler h) {
        if (shutting_down) return complete(std::move(h), errc::shutting_down);
        if (s->run && !s->run->stopping &&
            (s->state == service_state::running || s->state == service_state::ready))
            return complete(std::move(h), {});
        s->start_waiters.push_back(std::move(h));
        request_start(s);
    }
    void request_start(const std::shared_ptr<svc>& s) {
        s->wanted = true;
        s->starts.clear(); // an explicit start is a fresh chance
        s->consecutive = 0;
        if (s->backoff_timer) s->backoff_timer->cancel();
        if (s->run) {
            if (s->run->stopping && s->run->then == run_state::after::stay_stopped)
                s->run->then = run_state::after::start_again;
            return;
        }
        try_start(s);
    }

    void stop_op(const std::shared_ptr<svc>& s, op_handler h) {
        s->wanted = false;
        s->stop_waiters.push_back(std::move(h));
        request_stop(s, "stopped on request", run_state::after::stay_stopped);
    }

    void restart_op(const std::shared_ptr<svc>& s, op_handler h) {
        if (shutting_down) return complete(std::move(h), errc::shutting_down);
        s->start_waiters.push_back(std::move(h));
        s->wanted = true;
        s->starts.clear();
        s->consecutive = 0;
        if (s->backoff_timer) s->backoff_timer->cancel();
        if (s->run) {
            ++s->restarts; // counted as the followers' restarts are
            request_stop(s, "restarting on request", run_state::after::start_again);
            return restart_followers(*s, "restarted on request");
        }
        try_start(s);
    }

    void remove_op(const std::shared_ptr<svc>& s, op_handler h) {
        for (const auto& t : order)
            for (const auto& d : t->spec.depends_on)
                if (d.service == s->spec.name && t != s) return complete(std::move(h), errc::service_in_use);
        s->removing = true;
        s->wanted = false;
        s->stop_waiters.push_back(std::move(h));
        request_stop(s, "removed", run_state::after::stay_stopped);
    }

    void run_op(op_handler h) {
        if (shutting_down) return complete(std::move(h), errc::shutting_down);
        running = true;
        run_waiters.push_back(std::move(h));
        // One handler per service, in dependency order: starting hundreds of services spawns
        // hundreds of processes, and the executor keeps serving everything else in between.
        for (const auto& s : dependency_order())
            asio::post(ex, [w = std::weak_ptr<svc>(s), wi = weak_from_this()] {
                auto I = wi.lock();
                auto S = w.lock();
                if (!I || !S || S->removing || I->shutting_down || !I->running) return;
                if (!S->wanted && !S->run) I->request_start(S);
            });
    }

    // Reverse dependency order: a service is stopped once nothing that depends on it runs.
    void shutdown_op(clk::duration deadline, op_handler h) {
        shutdown_waiters.push_back(std::move(h));
        if (shutting_down) {
            // A later, earlier deadline brings the kill forward (a second Ctrl-C); a later one
            // changes nothing.
            if (shutdown_timer && clk::now() + deadline < shutdown_timer->expiry())
                arm_shutdown_timer(deadline);
            return;
        }
        shutting_down = true;
        for (const auto& s : order) {
            s->wanted = false;
            if (s->backoff_timer) s->backoff_timer->cancel();
            if (!s->run && (s->state == service_state::starting || s->state == service_state::backoff))
                set_state(s, service_state::stopped, "shutdown");
            complete_all(s->start_waiters, errc::shutting_down);
        }
        shutdown_timer = std::make_unique<asio::steady_timer>(ex);
        arm_shutdown_timer(deadline);
        shutdown_progress();
    }

    void arm_shutdown_timer(clk::duration deadline) {
        shutdown_timer->expires_after(deadline); // cancels a wait for a later deadline
        shutdown_timer->async_wait([wi = weak_from_this(), deadline](error_code ec) {
            auto I = wi.lock();
            if (ec || !I || !I->shutting_down) return;
            for (const auto& s : I->order) {
                if (!s->run) continue;
                I->emit_simple(*s, supervisor_event::kind::state,
                               "killed: still running at the shutdown deadline (" + human(deadline) + ")");
                s->run->c.async_kill([](error_code, exit_status) {});
            }
        });
    }

    void shutdown_progress() {
        bool any = false;
        for (const auto& s : order) {
            if (!s->run) continue;
            any = true;
            if (s->run->stopping) continue;
            bool dependents_running = false;
            for (const auto& t : order)
                if (t->run)
                    for (const auto& d : t->spec.depends_on)
                        if (d.service == s->spec.name) dependents_running = true;
            if (!dependents_running) request_stop(s, "shutdown", run_state::after::stay_stopped);
        }
        if (any) return;
        shutting_down = false;
        running = false;
        if (shutdown_timer) shutdown_timer->cancel();
        complete_all(shutdown_waiters, {});
        complete_all(run_waiters, {});
    }

    void replace_op(std::vector<service> services, std::vector<service_group> new_groups, op_handler h) {
        if (shutting_down) return complete(std::move(h), errc::shutting_down);
        std::set<std::string> keep;
        for (const auto& sp : services) keep.insert(sp.name);
        // Removed: stopped and dropped (nothing in the new set depends on them: validated).
        for (const auto& s : std::vector<std::shared_ptr<svc>>(order))
            if (!keep.count(s->spec.name)) {
                s->removing = true;
                s->wanted = false;
                request_stop(s, "removed by a new configuration", run_state::after::stay_stopped);
            }
        groups = std::move(new_groups);
        // First every spec in place (the set may name a dependency after its dependent), then
        // the starts and restarts, in dependency order.
        std::set<const svc*> added, changed;
        for (auto& sp : services) {
            auto s = find(sp.name);
            if (!s) {
                auto n = make(std::move(sp));
                order.push_back(n);
                added.insert(n.get());
                continue;
            }
            if (s->spec == sp) continue;
            bool new_socket = needs_notify_socket(sp) != needs_notify_socket(s->spec);
            s->spec = std::move(sp);
            s->pattern = compile(s->spec);
            if (new_socket) s->notify.reset();
            changed.insert(s.get());
        }
        for (const auto& s : order) s->group.clear();
        for (const auto& g : groups)
            for (const auto& m : g.services)
                if (auto s = find(m)) s->group = g.name;
        for (const auto& s : dependency_order()) {
            if (added.count(s.get())) {
                if (running) request_start(s);
            } else if (changed.count(s.get()) && s->wanted) { // a service stopped on purpose stays so
                if (s->run) {
                    request_stop(s, "restarting: its configuration changed", run_state::after::start_again);
                    restart_followers(*s, "its configuration changed");
                } else {
                    try_start(s);
                }
            }
        }
        complete(std::move(h), {});
    }

    static std::shared_ptr<const std::regex> compile(const service& sp) {
        if (sp.ready.type != readiness::kind::log) return nullptr;
        return std::make_shared<const std::regex>(sp.ready.pattern, std::regex::ECMAScript);
    }
    std::shared_ptr<svc> make(service sp) {
        auto s = std::make_shared<svc>();
        s->pattern = compile(sp);
        s->spec = std::move(sp);
        return s;
    }

    std::vector<service> specs() const {
        std::vector<service> out;
        out.reserve(order.size());
        for (const auto& s : order)
            if (!s->removing) out.push_back(s->spec);
        return out;
    }

    service_status status_of(const svc& s) const {
        service_status st;
        st.name = s.spec.name;
        st.state = s.state;
        st.reason = s.reason;
        if (s.run && !s.run->main_exited) st.pid = s.run->pid;
        st.since = s.since;
        st.restarts = s.restarts;
        st.probes_ok = s.probes_ok;
        st.probes_failed = s.probes_failed;
        st.last_status = s.last_status;
        st.ready = s.ready && s.run;
        st.health = s.health;
        st.notify_status = s.notify_status;
        return st;
    }

    // Ends everything at once: the supervisor is being destroyed.
    void destroy() {
        shutting_down = true;
        for (const auto& s : order) {
            ++s->gen;
            if (s->backoff_timer) s->backoff_timer->cancel();
            if (s->run) s->run->cancel_checks();
            s->notify.reset();
            complete_all(s->start_waiters, asio::error::operation_aborted);
            complete_all(s->stop_waiters, asio::error::operation_aborted);
        }
        complete_all(run_waiters, asio::error::operation_aborted);
        complete_all(shutdown_waiters, asio::error::operation_aborted);
        if (shutdown_timer) shutdown_timer->cancel();
        close_all_readers();
        // Dropping the runs destroys the children: each kills its tree (child's destructor).
        order.clear();
        for (auto& w : subscribers)
            if (auto q = w.lock()) q->close();
        subscribers.clear();
    }
};

/// Reads one stream of a service as lines, into a scratch buffer shared by the thread: an idle
/// service holds no read buffer, only its unfinished line.
struct output_reader : std::enable_shared_from_this<output_reader> {
    asio::posix::stream_descriptor sd;
    std::weak_ptr<supervisor_impl> i;
    std::weak_ptr<svc> s;
    std::uint64_t gen;
    int stream;
    std::size_t max_line;
    std::string partial;
    std::uint64_t dropped = 0;
    bool parked = false; ///< waiting in supervisor_impl::parked for a subscriber to catch up
    bool last = false;   ///< past the drain grace: read `budget` more bytes at most, then close
    std::size_t budget = 0;

    output_reader(asio::posix::stream_descriptor d) : sd(std::move(d)) {}

    void arm() {
        sd.async_wait(asio::posix::stream_descriptor::wait_read,
                      [self = shared_from_this()](error_code ec) { self->on_readable(ec); });
    }
    void line_done(const std::shared_ptr<supervisor_impl>& I, const std::shared_ptr<svc>& S) {
        I->on_line(S, stream, std::move(partial), dropped, gen);
        partial.clear();
        dropped = 0;
    }
    /// The end of the reading: what the pipe holds now, and no more (a writer that left the tree
    /// may keep writing forever, reliability.md E1), then the close.
    void read_last() {
        last = true;
        int avail = 0;
        budget = ::ioctl(sd.native_handle(), FIONREAD, &avail) == 0 && avail > 0
                     ? static_cast<std::size_t>(avail)
                     : 0;
    }
    void finish(const std::shared_ptr<supervisor_impl>& I, const std::shared_ptr<svc>& S) {
        if (!partial.empty() || dropped) line_done(I, S);
        error_code ignored;
        sd.close(ignored); // the descriptor goes now, not with the last reference
    }
    /// `force`: read on even if a subscriber is full (the supervisor is going away).
    void on_readable(error_code ec, bool force = false) {
        if (ec || !sd.is_open()) return;
        auto I = i.lock();
        auto S = s.lock();
        if (!I || !S) return;
        static thread_local char buf[64 * 1024];
        for (int round = 0; round < 16 || force; ++round) {
            // A subscriber must catch up: the pipe holds the rest meanwhile. Not while the
            // service's readiness waits for a line of its log: it would wait for the subscriber.
            const bool log_ready_pending = S->pattern && !S->ready;
            if (!force && !log_ready_pending && I->output_paused()) {
                parked = true;
                I->parked.push_back(shared_from_this());
                return;
            }
            std::size_t want = sizeof buf;
            if (last) {
                if (budget == 0) return finish(I, S);
                want = std::min(want, budget);
            }
            ssize_t n = ::read(sd.native_handle(), buf, want);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN && !last) return arm();
            if (n <= 0) return finish(I, S); // EOF (or a read error: the same for a log)
            if (last) budget -= static_cast<std::size_t>(n);
            std::string_view data(buf, static_cast<std::size_t>(n));
            while (!data.empty()) {
                auto nl = data.find('\n');
                auto piece = data.substr(0, nl);
                std::size_t room = max_line > partial.size() ? max_line - partial.size() : 0;
                partial.append(piece.substr(0, room));
                if (piece.size() > room) dropped += piece.size() - room;
                if (nl == std::string_view::npos) break;
                if (!partial.empty() && partial.back() == '\r') partial.pop_back();
                line_done(I, S);
                data.remove_prefix(nl + 1);
            }
        }
        // A flood: let the other handlers run before reading more.
        asio::post(sd.get_executor(), [self = shared_from_this()] { self->on_readable({}); });
    }
};

void supervisor_impl::resume_output() {
    auto waiting = std::exchange(parked, {});
    for (const auto& rd : waiting) {
        rd->parked = false;
        if (!rd->sd.is_open()) continue;
        if (rd->last) // past the drain grace: what the pipe holds now, then close
            asio::post(ex, [rd] { rd->on_readable({}); });
        else
            rd->arm();
    }
}

void supervisor_impl::close_all_readers() {
    // A parked reader's pipe is read now, what it holds and no more (a pause_output subscriber
    // was promised every line, and its queue keeps them past close()), then closed.
    for (const auto& rd : std::exchange(parked, {})) {
        rd->parked = false;
        if (!rd->sd.is_open()) continue;
        rd->read_last();
        rd->on_readable({}, true);
    }
    // The ended runs' readers in their drain grace: the handlers close them now.
    for (const auto& w : drain_timers)
        if (auto t = w.lock()) t->cancel();
    drain_timers.clear();
    // And the readers of runs still going: a writer outside the tree could hold their pipes
    // open forever, and a pending wait on one would keep the io_context's run() from returning.
    for (const auto& s : order)
        if (s->run)
            for (const auto& w : s->run->readers)
                if (auto rd = w.lock()) {
                    error_code ignored;
                    rd->sd.close(ignored);
                }
}

void supervisor_impl::start_reader(const std::shared_ptr<svc>& s, const std::shared_ptr<run_state>& r,
                                   int stream, asio::posix::stream_descriptor sd) {
    auto rd = std::make_shared<output_reader>(std::move(sd));
    r->readers.push_back(rd);
    rd->i = weak_from_this();
    rd->s = s;
    rd->gen = r->gen;
    rd->stream = stream;
    rd->max_line = s->spec.output.max_line;
    rd->arm();
}

void supervisor_impl::close_readers_later(const std::shared_ptr<run_state>& r) {
    std::vector<std::shared_ptr<output_reader>> open;
    for (const auto& w : r->readers)
        if (auto rd = w.lock(); rd && rd->sd.is_open()) open.push_back(rd);
    if (open.empty()) return;
    auto t = std::make_shared<asio::steady_timer>(ex, drain_grace);
    std::erase_if(drain_timers, [](const auto& w) { return w.expired(); });
    drain_timers.push_back(t);
    t->async_wait([t, open](error_code) {
        for (const auto& rd : open) {
            if (rd->parked) {    // held back for a subscriber, not by an escaped writer: what its
                rd->read_last(); // pipe holds now is read when it resumes, then it closes
                continue;
            }
            error_code ignored;
            rd->sd.close(ignored); // its pending wait ends with operation_aborted
        }
    });
}

void initiate_supervisor_op(std::shared_ptr<supervisor_impl> impl, int op, std::string name, op_handler h) {
    if (op == op_run) return impl->run_op(std::move(h));
    auto s = impl->find(name);
    if (!s || s->removing) return impl->complete(std::move(h), errc::unknown_service);
    switch (op) {
    case op_start:
        return impl->start_op(s, std::move(h));
    case op_stop:
        return impl->stop_op(s, std::move(h));
    case op_restart:
        return impl->restart_op(s, std::move(h));
    case op_remove:
        return impl->remove_op(s, std::move(h));
    default:
        return impl->complete(std::move(h), asio::error::invalid_argument);
    }
}

void initiate_supervisor_replace(std::shared_ptr<supervisor_impl> impl, std::vector<service> services,
                                 std::vector<service_group> groups, op_handler h) {
    impl->replace_op(std::move(services), std::move(groups), std::move(h));
}

void initiate_supervisor_shutdown(std::shared_ptr<supervisor_impl> impl, clk::duration deadline,
                                  op_handler h) {
    impl->shutdown_op(deadline, std::move(h));
}

} // namespace detail

supervisor::supervisor(executor_type ex) : impl_(std::make_shared<detail::supervisor_impl>(std::move(ex))) {}

supervisor::~supervisor() {
    impl_->destroy();
}

supervisor::executor_type supervisor::get_executor() const {
    return impl_->ex;
}

void supervisor::add(service s) {
    // The same checks as validate() over the whole set, for the new service alone: the services
    // already added were checked when they were, none of them can name the new one (a dependency
    // must exist when it is added), so the new one cannot close a cycle. Checking only it keeps
    // adding n services O(n) each in names compared, not a copy and re-check of the whole set.
    check_fields(s);
    if (impl_->find(s.name)) throw service_error(s.name, "name", "defined twice");
    check_dependencies(
        s, [&](std::string_view n) { return impl_->find(n) != nullptr; },
        [&](auto&& each) {
            for (const auto& o : impl_->order)
                if (!o->removing) each(o->spec.name);
        });
    impl_->order.push_back(impl_->make(std::move(s)));
}

void supervisor::add_group(service_group g) {
    auto groups = impl_->groups;
    groups.push_back(g);
    validate(impl_->specs(), groups);
    for (const auto& m : g.services)
        if (auto s = impl_->find(m)) s->group = g.name;
    impl_->groups = std::move(groups);
}

std::vector<service_status> supervisor::status() const {
    std::vector<service_status> out;
    out.reserve(impl_->order.size());
    for (const auto& s : impl_->order)
        if (!s->removing) out.push_back(impl_->status_of(*s));
    return out;
}

std::optional<service_status> supervisor::status(std::string_view name) const {
    auto s = impl_->find(name);
    if (!s || s->removing) return std::nullopt;
    return impl_->status_of(*s);
}

std::optional<service> supervisor::spec(std::string_view name) const {
    auto s = impl_->find(name);
    if (!s || s->removing) return std::nullopt;
    return s->spec;
}

std::vector<service_line> supervisor::logs(std::string_view name, std::size_t max) const {
    auto s = impl_->find(name);
    if (!s) return {};
    auto n = std::min(max, s->ring.size());
    return {s->ring.end() - static_cast<std::ptrdiff_t>(n), s->ring.end()};
}

event_stream supervisor::subscribe(std::size_t capacity, event_overflow when_full) {
    auto q = std::make_shared<detail::event_queue>();
    q->ex = impl_->ex;
    q->capacity = std::max<std::size_t>(capacity, 1);
    if (when_full == event_overflow::pause_output) {
        q->pace = true;
        q->on_room = [w = std::weak_ptr<detail::supervisor_impl>(impl_)] {
            if (auto i = w.lock()) i->resume_output();
        };
    }
    impl_->subscribers.push_back(q);
    return event_stream(std::move(q));
}

} // namespace drover
