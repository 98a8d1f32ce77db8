// The supervisor: restart policies, backoff and the start limit, dependencies and readiness,
// health checks, the watchdog, OTP strategies, replace by diff, the event stream, and no idle
// wake-ups (reliability.md H1, H3, D1, C4).
#include "drover/supervisor.hpp"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <thread>

#include <boost/asio/io_context.hpp>

#include "detail/cgroup.hpp"
#include "support.hpp"

using namespace drover;
using namespace drover::test;
using clk = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

/// A supervisor on its own io_context, with every event recorded.
struct harness {
    asio::io_context ctx;
    supervisor sup{ctx.get_executor()};
    event_stream events = sup.subscribe(100000);
    std::vector<supervisor_event> seen;
    bool reading = false;

    harness() { read_events(); }
    ~harness() {
        bool done = false;
        sup.async_shutdown(10s, [&](error_code) { done = true; });
        pump([&] { return done; }, 30s);
    }

    void read_events() {
        events.next([this](error_code ec, supervisor_event ev) {
            if (ec) return;
            seen.push_back(std::move(ev));
            read_events();
        });
    }
    /// Runs the io_context until `pred` holds or `limit` passes; `pred`'s last answer.
    bool pump(const std::function<bool()>& pred, clk::duration limit = 10s) {
        const auto end = clk::now() + limit;
        while (!pred()) {
            if (clk::now() >= end) return false;
            ctx.restart();
            ctx.run_for(5ms);
        }
        // Events are posted: deliver those already queued.
        ctx.restart();
        ctx.poll();
        return true;
    }
    void pump_for(clk::duration d) {
        const auto end = clk::now() + d;
        while (clk::now() < end) {
            ctx.restart();
            ctx.run_for(5ms);
        }
    }
    error_code start(const std::string& name, clk::duration limit = 20s) {
        std::optional<error_code> r;
        sup.async_start(name, [&](error_code ec) { r = ec; });
        if (!pump([&] { return r.has_value(); }, limit)) FAIL("async_start(" << name << ") did not complete");
        return *r;
    }
    error_code run_op(std::function<void(std::function<void(error_code)>)> op, clk::duration limit = 20s) {
        std::optional<error_code> r;
        op([&](error_code ec) { r = ec; });
        if (!pump([&] { return r.has_value(); }, limit)) FAIL("the operation did not complete");
        return *r;
    }
    service_status st(const std::string& name) { return *sup.status(name); }
    bool state_is(const std::string& name, service_state s) { return sup.status(name)->state == s; }
    std::vector<supervisor_event> of(const std::string& name, supervisor_event::kind k) {
        std::vector<supervisor_event> out;
        for (const auto& e : seen)
            if (e.service == name && e.type == k) out.push_back(e);
        return out;
    }
    /// Index in `seen` of the first state event of `name` entering `s` with a reason containing
    /// `text`; -1 if none.
    long first(const std::string& name, service_state s, const std::string& text = "", int skip = 0) {
        for (std::size_t i = 0; i < seen.size(); ++i) {
            const auto& e = seen[i];
            if (e.type == supervisor_event::kind::state && e.service == name && e.state == s &&
                e.text.find(text) != std::string::npos && skip-- == 0)
                return static_cast<long>(i);
        }
        return -1;
    }
    long first_of(const std::string& name, supervisor_event::kind k) {
        for (std::size_t i = 0; i < seen.size(); ++i)
            if (seen[i].service == name && seen[i].type == k) return static_cast<long>(i);
        return -1;
    }
};

service svc(std::string name, std::vector<std::string> script) {
    service s;
    s.name = std::move(name);
    s.command = helper(std::move(script));
    s.command.stop_grace(2s);
    return s;
}

bool alive(pid_t pid) {
    std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    if (stat.empty()) return false;
    auto rp = stat.rfind(')');
    return rp != std::string::npos && rp + 2 < stat.size() && stat[rp + 2] != 'Z';
}

std::uint64_t context_switches() {
    std::ifstream f("/proc/self/task/" + std::to_string(::gettid()) + "/status");
    std::string line;
    std::uint64_t total = 0;
    while (std::getline(f, line))
        if (line.rfind("voluntary_ctxt_switches:", 0) == 0 ||
            line.rfind("nonvoluntary_ctxt_switches:", 0) == 0)
            total += std::stoull(line.substr(line.find(':') + 1));
    return total;
}

std::string on_path_or_empty(const char* p) {
    return ::access(p, X_OK) == 0 ? std::string(p) : std::string();
}

} // namespace

TEST_CASE("supervisor: a bad spec names the service and the field, and changes nothing") {
    harness h;
    h.sup.add(svc("db", {"sleep", "100000"}));
    auto expect = [&](service s, const std::string& text) {
        try {
            h.sup.add(std::move(s));
            FAIL("accepted: " << text);
        } catch (const service_error& e) {
            CHECK(std::string(e.what()).find(text) != std::string::npos);
            CHECK(e.code() == errc::invalid_service);
            INFO(e.what());
        }
        CHECK(h.sup.status().size() == 1);
    };
    auto web = svc("web", {"sleep", "1"});
    web.depends_on = {{"dbx"}};
    expect(web, "service 'web': depends_on: unknown service 'dbx' (did you mean 'db'?)");
    expect(svc("db", {"exit", "0"}), "service 'db': name: defined twice");
    expect(svc("a b", {"exit", "0"}), "service 'a b': name:");
    auto bad_re = svc("re", {"exit", "0"});
    bad_re.ready = readiness::log("([unclosed");
    expect(bad_re, "service 're': ready.log: bad regular expression");
    auto bad_probe = svc("p", {"exit", "0"});
    bad_probe.health = health_check{probe::tcp("localhost")};
    expect(bad_probe, "service 'p': health:");
    auto bad_backoff = svc("b", {"exit", "0"});
    bad_backoff.backoff.max = 1ms;
    expect(bad_backoff, "service 'b': backoff.max");

    // A cycle, named in order.
    std::vector<service> set = {svc("a", {"exit", "0"}), svc("b", {"exit", "0"}), svc("c", {"exit", "0"})};
    set[0].depends_on = {{"b"}};
    set[1].depends_on = {{"c"}};
    set[2].depends_on = {{"a"}};
    try {
        supervisor::validate(set, {});
        FAIL("a cycle was accepted");
    } catch (const service_error& e) {
        CHECK(std::string(e.what()).find("dependency cycle: a -> b -> c -> a") != std::string::npos);
    }
    // Groups: unknown member, member twice.
    try {
        h.sup.add_group({"g", {"db", "nope"}});
        FAIL("an unknown member was accepted");
    } catch (const service_error& e) {
        CHECK(std::string(e.what()).find("unknown service 'nope'") != std::string::npos);
    }
}

TEST_CASE("supervisor: adding thousands of services checks only the new one (linear, not quadratic)") {
    harness h;
    const int n = 3000;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) {
        auto s = svc("s" + std::to_string(i), {"sleep", "100000"});
        if (i > 0) s.depends_on = {{"s" + std::to_string(i - 1)}}; // a chain: every add looks one up
        h.sup.add(std::move(s));
    }
    const auto took = std::chrono::steady_clock::now() - t0;
    MESSAGE("adding " << n << " services took "
                      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
    CHECK(took < 10s); // checking the whole set on every add took minutes for this under a sanitizer
    CHECK(h.sup.status().size() == n);
    // The checks still hold for the new one: itself, twice, unknown.
    auto self = svc("x", {"exit", "0"});
    self.depends_on = {{"x"}};
    CHECK_THROWS_WITH_AS(h.sup.add(self), doctest::Contains("depends on itself"), service_error);
    CHECK_THROWS_WITH_AS(h.sup.add(svc("s7", {"exit", "0"})), doctest::Contains("defined twice"),
                         service_error);
    CHECK(h.sup.status().size() == n);
}

TEST_CASE("supervisor: once destroyed it leaves nothing pending in the io_context (its run() returns)") {
    // The service exits while an escaped grandchild still holds its stdout: the readers stay open
    // for the drain grace (1 s) after the exit. Destroying the supervisor must not leave those
    // timers behind: a program's io_context.run() returns at once, not a second later.
    asio::io_context ctx;
    std::optional<supervisor> sup;
    sup.emplace(ctx.get_executor());
    auto s = svc("leaves", {"spawn-grandchild-setsid", "3000", "exit", "0"});
    s.command.cgroup(cgroup_mode::off);
    s.restart = restart_policy::no;
    sup->add(s);
    auto events = sup->subscribe(1000);
    bool exited = false;
    std::function<void()> read = [&] {
        events.next([&](error_code ec, supervisor_event ev) {
            if (ec) return;
            if (ev.type == supervisor_event::kind::exited) exited = true;
            read();
        });
    };
    read();
    sup->async_start("leaves", [](error_code) {});
    const auto end = clk::now() + 20s;
    while (!exited && clk::now() < end) {
        ctx.restart();
        ctx.run_for(5ms);
    }
    REQUIRE(exited);
    sup.reset();
    const auto t0 = clk::now();
    ctx.restart();
    ctx.run_for(5s); // returns as soon as nothing is pending
    const auto took = clk::now() - t0;
    MESSAGE("run() returned after " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                                    << " ms");
    CHECK(took < 700ms);
}

namespace {
/// Reads `stream` until nothing more comes for `quiet`: every event it held, in order.
std::vector<supervisor_event> drain(harness& h, event_stream& stream, clk::duration quiet = 300ms) {
    struct state {
        std::vector<supervisor_event> out;
        bool done = false;
    };
    auto st = std::make_shared<state>();
    std::function<void()> read = [&stream, st, &read] {
        stream.next([st, &read](error_code ec, supervisor_event ev) {
            if (ec || st->done) return;
            st->out.push_back(std::move(ev));
            read();
        });
    };
    read();
    std::size_t seen = 0;
    for (;;) {
        h.pump_for(quiet);
        if (st->out.size() == seen) break;
        seen = st->out.size();
    }
    st->done = true; // the caller closes the stream; the pending next() then ends
    return std::move(st->out);
}
std::size_t count_lines(const std::vector<supervisor_event>& evs, const std::string& name) {
    return static_cast<std::size_t>(std::count_if(evs.begin(), evs.end(), [&](const supervisor_event& e) {
        return e.type == supervisor_event::kind::output && e.service == name;
    }));
}
} // namespace

TEST_CASE("supervisor: a subscriber that falls behind loses lines of output, counted per service, "
          "never the lifecycle events") {
    harness h;
    auto slow = h.sup.subscribe(20); // event_overflow::drop_oldest, read only at the end
    auto s = svc("chatty", {"write-stdout", "37000", "exit", "0"}); // 1,000 lines
    s.restart = restart_policy::no;
    h.sup.add(s);
    CHECK(h.start("chatty") == error_code{});
    REQUIRE(h.pump([&] { return h.state_is("chatty", service_state::exited); }));
    h.pump_for(200ms);
    auto evs = drain(h, slow);
    slow.close();
    std::uint64_t lost = 0;
    for (const auto& e : evs)
        if (e.type == supervisor_event::kind::lost) {
            CHECK(e.service == "chatty");
            CHECK(e.text.find("lines of output dropped") != std::string::npos);
            lost += e.count;
        }
    CHECK(lost > 0);
    CHECK(lost + count_lines(evs, "chatty") == 1000);
    auto has = [&](supervisor_event::kind k, service_state st) {
        return std::any_of(evs.begin(), evs.end(), [&](const supervisor_event& e) {
            return e.type == k && (k != supervisor_event::kind::state || e.state == st);
        });
    };
    CHECK(has(supervisor_event::kind::state, service_state::running));
    CHECK(has(supervisor_event::kind::exited, service_state::stopped));
    CHECK(has(supervisor_event::kind::state, service_state::exited));
}

TEST_CASE("supervisor: event_overflow::pause_output loses nothing: the service waits on its pipe until "
          "the subscriber catches up, even past its exit") {
    harness h;
    auto paced = h.sup.subscribe(16, event_overflow::pause_output);
    // 40,000 lines (1.48 MB): more than the pipe holds, so the writer must block while paused.
    auto big = svc("big", {"write-stdout", "1480000", "exit", "0"});
    big.restart = restart_policy::no;
    // 1,000 lines (37 KB, fits in the pipe): it exits while its reader waits, past the drain
    // grace (1 s) after its exit; what its pipe holds is still read.
    auto small = svc("small", {"write-stdout", "37000", "exit", "0"});
    small.restart = restart_policy::no;
    h.sup.add(big);
    h.sup.add(small);
    CHECK(h.start("big") == error_code{});
    CHECK(h.start("small") == error_code{});
    REQUIRE(h.pump([&] { return h.state_is("small", service_state::exited); }));
    h.pump_for(1500ms);
    CHECK(h.state_is("big", service_state::running)); // blocked on its full pipe
    auto evs = drain(h, paced, 2s);
    paced.close();
    CHECK(count_lines(evs, "big") == 40000);
    CHECK(count_lines(evs, "small") == 1000);
    for (const auto& e : evs) CHECK(e.type != supervisor_event::kind::lost);
    CHECK(h.state_is("big", service_state::exited));
}

TEST_CASE("supervisor: a crash loop backs off and ends failed at the start limit (H1)") {
    harness h;
    auto s = svc("crash", {"exit", "1"});
    s.backoff = {100ms, 1s, 0.0, 10s};
    s.start_limit = {5, 10s, false};
    h.sup.add(s);
    CHECK(h.start("crash") == error_code{}); // it was running: started
    CHECK(h.pump([&] { return h.state_is("crash", service_state::failed); }));
    h.pump_for(700ms); // nothing more starts
    CHECK(h.of("crash", supervisor_event::kind::exited).size() == 5);
    auto restarts = h.of("crash", supervisor_event::kind::restart);
    REQUIRE(restarts.size() == 4);
    // The first restart is immediate, then 100 ms doubling.
    CHECK(restarts[0].delay == 0ms);
    CHECK(restarts[1].delay == 100ms);
    CHECK(restarts[2].delay == 200ms);
    CHECK(restarts[3].delay == 400ms);
    auto st = h.st("crash");
    CHECK(st.reason.find("start limit reached: 5 starts within 10s") != std::string::npos);
    CHECK(st.reason.find("exited with code 1") != std::string::npos);
    CHECK(st.restarts == 4);
    CHECK(st.last_status == exit_status::exited(1));
    // An explicit start tries again.
    CHECK(h.start("crash") == error_code{});
    CHECK(h.pump([&] { return h.of("crash", supervisor_event::kind::exited).size() == 10; }));
    CHECK(h.pump([&] { return h.state_is("crash", service_state::failed); }));
}

TEST_CASE("supervisor: a run longer than reset_after restarts at once; short runs back off") {
    harness h;
    auto slow = svc("slow", {"sleep", "250", "exit", "1"});
    slow.backoff = {200ms, 2s, 0.0, 150ms};
    slow.start_limit.burst = 0;
    auto fast = svc("fast", {"exit", "1"});
    fast.backoff = {100ms, 2s, 0.0, 10s};
    fast.start_limit.burst = 0;
    h.sup.add(slow);
    h.sup.add(fast);
    h.start("slow");
    h.start("fast");
    CHECK(h.pump([&] { return h.of("slow", supervisor_event::kind::restart).size() >= 3; }));
    for (const auto& e : h.of("slow", supervisor_event::kind::restart)) CHECK(e.delay == 0ms);
    CHECK(h.pump([&] { return h.of("fast", supervisor_event::kind::restart).size() >= 3; }));
    auto f = h.of("fast", supervisor_event::kind::restart);
    CHECK(f[0].delay == 0ms);
    CHECK(f[1].delay == 100ms);
    CHECK(f[2].delay == 200ms);
}

TEST_CASE("supervisor: kill -9 of a running service restarts it and counts it") {
    harness h;
    h.sup.add(svc("w", {"sleep", "100000"}));
    REQUIRE(h.start("w") == error_code{});
    pid_t first = *h.st("w").pid;
    const auto t0 = clk::now();
    REQUIRE(::kill(first, SIGKILL) == 0);
    CHECK(h.pump([&] {
        auto st = h.st("w");
        return st.state == service_state::running && st.pid && *st.pid != first;
    }));
    MESSAGE("restart after kill -9 seen in "
            << std::chrono::duration_cast<std::chrono::microseconds>(clk::now() - t0).count() << " us");
    {
        auto ex = h.of("w", supervisor_event::kind::exited);
        auto rs = h.of("w", supervisor_event::kind::restart);
        long run_i = -1;
        for (std::size_t i = 0; i < h.seen.size(); ++i)
            if (h.seen[i].service == "w" && h.seen[i].type == supervisor_event::kind::state &&
                h.seen[i].state == service_state::running)
                run_i = static_cast<long>(i);
        if (!ex.empty() && !rs.empty() && run_i >= 0)
            MESSAGE("exited event -> restart event "
                    << std::chrono::duration_cast<std::chrono::microseconds>(rs[0].time - ex[0].time).count()
                    << " us; -> running "
                    << std::chrono::duration_cast<std::chrono::microseconds>(h.seen[run_i].time - ex[0].time)
                           .count()
                    << " us");
    }
    auto st = h.st("w");
    CHECK(st.restarts == 1);
    CHECK(st.last_status == exit_status::signaled(SIGKILL));
    CHECK(!alive(first));
}

TEST_CASE("supervisor: a restart leaves no grandchild behind, even one that called setsid (D1)") {
    DROVER_SKIP_IF(needs_cgroup_v2());
    harness h;
    auto s = svc("esc", {"spawn-grandchild-setsid", "100000", "sleep", "300", "exit", "1"});
    s.backoff.initial = 50ms;
    s.start_limit.burst = 0;
    h.sup.add(s);
    h.start("esc");
    auto grandchild = [&](std::size_t i) -> pid_t {
        auto lines = h.sup.logs("esc");
        std::size_t n = 0;
        for (const auto& l : lines)
            if (l.text.rfind("grandchild ", 0) == 0 && n++ == i) return std::stoi(l.text.substr(11));
        return 0;
    };
    REQUIRE(h.pump([&] { return grandchild(0) != 0; }));
    pid_t g0 = grandchild(0);
    REQUIRE(h.pump([&] { return grandchild(1) != 0; }));
    // The old tree was stopped before the restart: gone by the time the new run prints.
    CHECK(!alive(g0));
    const long exited = h.first_of("esc", supervisor_event::kind::exited);
    const long restarted = h.first("esc", service_state::running, "started", 1);
    CHECK(exited >= 0);
    CHECK(exited < restarted);
    CHECK(h.st("esc").restarts >= 1);
}

TEST_CASE("supervisor: db -> api -> web start in order on readiness and stop in reverse") {
    const std::string notify = on_path_or_empty("/usr/bin/systemd-notify");
    if (notify.empty()) DROVER_SKIP("systemd-notify is not installed (Debian package systemd)");
    DROVER_SKIP_IF(needs_cgroup_v2());
    harness h;
    auto db = svc("db", {"sleep", "150", "write-line", "db: ready to accept connections", "sleep", "100000"});
    db.ready = readiness::log("ready to accept");
    auto api = svc("api", {});
    api.command = command("/bin/sh", {"-c", notify + " --ready --status=serving; exec sleep 100000"});
    api.command.stop_grace(2s);
    api.ready = readiness::notify();
    api.depends_on = {{"db", dependency_condition::ready}};
    auto web = svc("web", {"sleep", "100", "fd-write", "3", "up", "sleep", "100000"});
    web.ready = readiness::fd(3);
    web.depends_on = {{"api", dependency_condition::ready}};
    // Added in reverse: the order comes from the dependencies.
    h.sup.add(db);
    h.sup.add(api);
    h.sup.add(web);
    bool ran = false;
    h.sup.async_run([&](error_code) { ran = true; });
    REQUIRE(h.pump([&] { return h.state_is("web", service_state::ready); }, 20s));
    CHECK(h.first("web", service_state::starting, "waiting for 'api'") >= 0);
    const long db_ready = h.first("db", service_state::ready);
    const long api_started = h.first("api", service_state::starting, "started");
    const long api_ready = h.first("api", service_state::ready, "READY=1");
    const long web_started = h.first("web", service_state::starting, "started");
    const long web_ready = h.first("web", service_state::ready, "newline on descriptor 3");
    CHECK(db_ready >= 0);
    CHECK(db_ready < api_started);
    CHECK(api_started < api_ready);
    CHECK(api_ready < web_started);
    CHECK(web_started < web_ready);
    CHECK(h.st("api").notify_status == "serving");
    std::vector<pid_t> pids = {*h.st("db").pid, *h.st("api").pid, *h.st("web").pid};

    REQUIRE(h.run_op([&](auto cb) { h.sup.async_shutdown(10s, cb); }) == error_code{});
    CHECK(h.pump([&] { return ran; }));
    const long web_stop = h.first("web", service_state::stopped);
    const long api_stop = h.first("api", service_state::stopping);
    const long api_stopped = h.first("api", service_state::stopped);
    const long db_stop = h.first("db", service_state::stopping);
    CHECK(web_stop >= 0);
    CHECK(api_stop >= 0);
    CHECK(api_stopped >= 0);
    CHECK(db_stop >= 0);
    CHECK(web_stop < api_stop);
    CHECK(api_stopped < db_stop);
    for (pid_t p : pids) CHECK(!alive(p));
    CHECK(zombie_count() == 0);
}

TEST_CASE("supervisor: a failed dependency fails its dependents with the reason") {
    harness h;
    auto db = svc("db", {"sleep", "100", "exit", "3"});
    db.restart = restart_policy::no;
    db.ready = readiness::log("ready"); // never printed: api waits, then sees it fail
    auto api = svc("api", {"sleep", "100000"});
    api.depends_on = {{"db", dependency_condition::ready}};
    auto job = svc("job", {"sleep", "100000"});
    job.depends_on = {{"db", dependency_condition::completed}};
    h.sup.add(db);
    h.sup.add(api);
    h.sup.add(job);
    h.sup.async_run([](error_code) {});
    CHECK(h.pump([&] { return h.state_is("api", service_state::failed); }));
    CHECK(h.st("db").reason == "exited with code 3 (restart = no)");
    CHECK(h.st("api").reason == "dependency 'db' failed: exited with code 3 (restart = no)");
    // `completed` accepts any end of the run.
    CHECK(h.pump([&] { return h.state_is("job", service_state::running); }));
}

TEST_CASE("supervisor: completed_successfully waits for a one-shot to exit 0") {
    harness h;
    auto migrate = svc("migrate", {"sleep", "200", "exit", "0"});
    migrate.restart = restart_policy::no;
    auto app = svc("app", {"sleep", "100000"});
    app.depends_on = {{"migrate", dependency_condition::completed_successfully}};
    h.sup.add(migrate);
    h.sup.add(app);
    h.sup.async_run([](error_code) {});
    CHECK(h.pump([&] { return h.state_is("app", service_state::running); }));
    CHECK(h.st("migrate").state == service_state::exited);
    CHECK(h.pump([&] { return h.first("app", service_state::running) >= 0; })); // events are posted
    CHECK(h.first("migrate", service_state::exited) >= 0);
    CHECK(h.first("migrate", service_state::exited) < h.first("app", service_state::running));
}

TEST_CASE("supervisor: one_for_all and rest_for_one restart the right siblings") {
    for (auto strategy :
         {restart_strategy::one_for_all, restart_strategy::rest_for_one, restart_strategy::one_for_one}) {
        CAPTURE(static_cast<int>(strategy));
        harness h;
        for (auto n : {"a", "b", "c"}) h.sup.add(svc(n, {"sleep", "100000"}));
        h.sup.add_group({"g", {"a", "b", "c"}, strategy});
        for (auto n : {"a", "b", "c"}) REQUIRE(h.start(n) == error_code{});
        pid_t a = *h.st("a").pid, b = *h.st("b").pid, c = *h.st("c").pid;
        ::kill(b, SIGKILL);
        REQUIRE(h.pump([&] {
            auto s = h.st("b");
            return s.state == service_state::running && s.pid && *s.pid != b;
        }));
        bool c_restarts = strategy != restart_strategy::one_for_one;
        bool a_restarts = strategy == restart_strategy::one_for_all;
        if (c_restarts)
            CHECK(h.pump([&] {
                auto s = h.st("c");
                return s.state == service_state::running && s.pid && *s.pid != c;
            }));
        if (a_restarts)
            CHECK(h.pump([&] {
                auto s = h.st("a");
                return s.state == service_state::running && s.pid && *s.pid != a;
            }));
        h.pump_for(300ms);
        CHECK((*h.st("a").pid != a) == a_restarts);
        CHECK((*h.st("c").pid != c) == c_restarts);
        if (c_restarts) CHECK(h.st("c").reason.find("restarting with group 'g'") == std::string::npos);
        if (c_restarts) CHECK(h.first("c", service_state::stopping, "restarting with group 'g': 'b'") >= 0);
    }
}

TEST_CASE("supervisor: a failing health check restarts the service") {
    harness h;
    auto s = svc("h", {"sleep", "100000"});
    s.health = health_check{probe::exec(helper({"exit", "1"})), 100ms, 0ms, 2};
    s.start_limit.burst = 0;
    h.sup.add(s);
    REQUIRE(h.start("h") == error_code{});
    pid_t first = *h.st("h").pid;
    CHECK(h.pump([&] { return h.st("h").restarts >= 1; }));
    CHECK(h.first("h", service_state::stopping, "health check failed 2 times in a row: exit code 1") >= 0);
    CHECK(!h.of("h", supervisor_event::kind::probe).empty());
    CHECK(eventually([&] { return !alive(first); }, 5000ms));
}

TEST_CASE("supervisor: a healthy service stays, and `healthy` dependents wait for it") {
    harness h;
    auto s = svc("h", {"sleep", "100000"});
    s.health = health_check{probe::exec(helper({"exit", "0"})), 100ms, 200ms, 1};
    auto d = svc("d", {"sleep", "100000"});
    d.depends_on = {{"h", dependency_condition::healthy}};
    h.sup.add(s);
    h.sup.add(d);
    h.sup.async_run([](error_code) {});
    CHECK(h.pump([&] { return h.state_is("d", service_state::running); }));
    CHECK(h.st("h").health == health_state::healthy);
    CHECK(h.first("d", service_state::starting, "waiting for 'h' to be healthy") >= 0);
    h.pump_for(500ms);
    CHECK(h.st("h").restarts == 0);
}

TEST_CASE("supervisor: a watchdog timeout restarts the service") {
    harness h;
    auto s = svc("wd", {"print-env", "WATCHDOG_USEC", "sleep", "100000"});
    // 1 s: a sanitizer-built helper on a loaded machine can take longer than a few hundred ms
    // to print its environment, and the watchdog would end each run before it did.
    s.watchdog = 1s;
    s.start_limit.burst = 0;
    h.sup.add(s);
    REQUIRE(h.start("wd") == error_code{});
    CHECK(h.pump([&] { return h.st("wd").restarts >= 1; }, 30s));
    CHECK(h.first("wd", service_state::stopping, "watchdog: no WATCHDOG=1 within 1s") >= 0);
    REQUIRE(h.pump([&] { return !h.sup.logs("wd").empty(); }, 30s));
    CHECK(h.sup.logs("wd").front().text == "1000000");
}

TEST_CASE("supervisor: a notify message from outside the service is refused (H3)") {
    harness h;
    auto s = svc("n", {"print-env", "NOTIFY_SOCKET", "sleep", "100000"});
    s.ready = readiness::notify();
    h.sup.add(s);
    h.sup.async_start("n", [](error_code) {});
    REQUIRE(h.pump([&] { return !h.sup.logs("n").empty(); }));
    std::string addr = h.sup.logs("n").front().text;
    REQUIRE(addr.size() > 1);
    REQUIRE(addr[0] == '@');
    int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path + 1, addr.data() + 1, addr.size() - 1);
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + addr.size());
    const char msg[] = "READY=1";
    CHECK(::sendto(fd, msg, sizeof msg - 1, 0, reinterpret_cast<sockaddr*>(&sa), len) == 7);
    ::close(fd);
    CHECK(h.pump([&] {
        for (const auto& e : h.of("n", supervisor_event::kind::notify))
            if (!e.ok) return true;
        return false;
    }));
    h.pump_for(200ms);
    CHECK(h.st("n").state == service_state::starting);
    CHECK(!h.st("n").ready);
}

TEST_CASE("supervisor: not ready within the timeout is a failed start") {
    harness h;
    auto s = svc("slow", {"sleep", "100000"});
    s.ready = readiness::log("never printed");
    s.ready.timeout = 200ms;
    s.restart = restart_policy::no;
    h.sup.add(s);
    CHECK(h.start("slow") == errc::service_failed);
    CHECK(h.st("slow").reason.find("not ready within 200ms") != std::string::npos);
}

TEST_CASE("supervisor: a spawn error fails the service with the stage and errno") {
    harness h;
    service s;
    s.name = "ghost";
    s.command = command("/nonexistent/drover-no-such-program");
    h.sup.add(s);
    CHECK(h.start("ghost") == errc::service_failed);
    auto reason = h.st("ghost").reason;
    CHECK(reason.find("/nonexistent/drover-no-such-program") != std::string::npos);
    CHECK(reason.find("No such file or directory") != std::string::npos);
}

TEST_CASE("supervisor: replace by diff restarts only the changed service") {
    harness h;
    std::vector<service> set = {svc("a", {"sleep", "100000"}), svc("b", {"sleep", "100000"}),
                                svc("c", {"sleep", "100000"})};
    for (const auto& s : set) h.sup.add(s);
    h.sup.async_run([](error_code) {});
    REQUIRE(h.pump([&] {
        return h.state_is("a", service_state::running) && h.state_is("b", service_state::running) &&
               h.state_is("c", service_state::running);
    }));
    pid_t a = *h.st("a").pid, b = *h.st("b").pid, c = *h.st("c").pid;
    auto next = set;
    next[1].command.arg("0");                      // b changed
    next.erase(next.begin() + 2);                  // c removed
    next.push_back(svc("d", {"sleep", "100000"})); // d added
    REQUIRE(h.run_op([&](auto cb) { h.sup.async_replace(next, {}, cb); }) == error_code{});
    CHECK(h.pump([&] {
        auto sb = h.st("b");
        return h.state_is("d", service_state::running) && sb.state == service_state::running &&
               *sb.pid != b && !h.sup.status("c");
    }));
    CHECK(*h.st("a").pid == a);
    CHECK(h.st("a").restarts == 0);
    CHECK(eventually([&] { return !alive(c) && !alive(b); }, 5000ms));
    // A bad set throws and changes nothing.
    auto bad = next;
    bad[0].depends_on = {{"zzz"}};
    CHECK_THROWS_AS(h.sup.async_replace(bad, {}, [](error_code) {}), service_error);
    CHECK(*h.st("a").pid == a);
}

TEST_CASE("supervisor: output lines become events and the last N are kept") {
    harness h;
    auto s = svc("out", {"write-line", "one", "write-line-stderr", "two", "write-line", "three", "write-line",
                         "four", "sleep", "100000"});
    s.output.keep_lines = 3;
    h.sup.add(s);
    h.start("out");
    REQUIRE(h.pump([&] { return h.of("out", supervisor_event::kind::output).size() == 4; }));
    auto lines = h.sup.logs("out");
    REQUIRE(lines.size() == 3);
    // stdout's lines in order (stderr is another pipe: read in whatever order they arrive).
    std::vector<std::string> out;
    for (const auto& l : h.sup.logs("out"))
        if (l.stream == 1) out.push_back(l.text);
    CHECK(out.back() == "four");
    bool err = false;
    for (const auto& e : h.of("out", supervisor_event::kind::output))
        if (e.text == "two") err = e.stream == 2;
    CHECK(err);
}

TEST_CASE("supervisor: a subscriber that falls behind loses events with a count") {
    harness h;
    auto slow = h.sup.subscribe(4);
    auto s = svc("chatty", {"write-stdout", "37000", "sleep", "100000"}); // 1000 lines
    h.sup.add(s);
    h.start("chatty");
    REQUIRE(h.pump([&] { return h.of("chatty", supervisor_event::kind::output).size() == 1000; }));
    std::optional<supervisor_event> ev;
    slow.next([&](error_code, supervisor_event e) { ev = std::move(e); });
    REQUIRE(h.pump([&] { return ev.has_value(); }));
    CHECK(ev->type == supervisor_event::kind::lost);
    CHECK(ev->count > 900);
}

TEST_CASE("supervisor: 50 idle services do not wake the supervisor's thread") {
    harness h;
    for (int i = 0; i < 50; ++i) h.sup.add(svc("idle" + std::to_string(i), {"sleep", "100000"}));
    h.sup.async_run([](error_code) {});
    REQUIRE(h.pump(
        [&] {
            for (const auto& s : h.sup.status())
                if (s.state != service_state::running) return false;
            return true;
        },
        30s));
    h.pump_for(200ms);
    // run() (not run_for, whose waits are cut into 1 s slices) until another thread stops it
    // 3 s later: the stop is the one wake-up expected.
    h.ctx.restart();
    std::thread stopper([&] {
        std::this_thread::sleep_for(3s);
        h.ctx.stop();
    });
    auto before = context_switches();
    const std::size_t handlers = h.ctx.run();
    auto after = context_switches();
    stopper.join();
    MESSAGE("over 3 s with 50 idle services: " << handlers << " handlers run, " << after - before
                                               << " context switches of the io_context thread");
    CHECK(handlers == 0);
    CHECK(after - before <= 5); // 1 here (2 under TSan, whose runtime takes locks of its own)
}

TEST_CASE("supervisor: async_stop, async_restart, async_remove and unknown names") {
    harness h;
    h.sup.add(svc("s", {"sleep", "100000"}));
    auto dep = svc("t", {"sleep", "100000"});
    dep.depends_on = {{"s", dependency_condition::started}};
    h.sup.add(dep);
    REQUIRE(h.start("s") == error_code{});
    pid_t p = *h.st("s").pid;
    CHECK(h.run_op([&](auto cb) { h.sup.async_restart("s", cb); }) == error_code{});
    CHECK(*h.st("s").pid != p);
    CHECK(!alive(p));
    p = *h.st("s").pid;
    CHECK(h.run_op([&](auto cb) { h.sup.async_stop("s", cb); }) == error_code{});
    CHECK(h.st("s").state == service_state::stopped);
    CHECK(!h.st("s").pid);
    CHECK(!alive(p));
    CHECK(h.run_op([&](auto cb) { h.sup.async_remove("s", cb); }) == errc::service_in_use);
    CHECK(h.run_op([&](auto cb) { h.sup.async_remove("t", cb); }) == error_code{});
    CHECK(!h.sup.status("t"));
    CHECK(h.run_op([&](auto cb) { h.sup.async_start("nope", cb); }) == errc::unknown_service);
}

TEST_CASE("supervisor: destroying it kills every tree and leaves no zombie") {
    std::vector<pid_t> pids;
    std::optional<error_code> ran; // outlives the supervisor: its completion runs after it
    {
        asio::io_context ctx;
        {
            supervisor sup(ctx.get_executor());
            for (int i = 0; i < 5; ++i) sup.add(svc("k" + std::to_string(i), {"sleep", "100000"}));
            sup.async_run([&](error_code ec) { ran = ec; });
            const auto end = clk::now() + 10s;
            while (clk::now() < end && pids.size() < 5) {
                ctx.run_for(10ms);
                pids.clear();
                for (const auto& s : sup.status())
                    if (s.state == service_state::running) pids.push_back(*s.pid);
            }
            REQUIRE(pids.size() == 5);
        }
        ctx.restart();
        ctx.run_for(500ms);
        REQUIRE(ran.has_value());
        CHECK(*ran == asio::error::operation_aborted); // pending operations end
    }
    for (pid_t p : pids) CHECK(eventually([&] { return !alive(p); }, 5000ms));
    CHECK(eventually([] { return zombie_count() == 0; }, 5000ms));
}

TEST_CASE("supervisor: restarting a service that waits for its dependency keeps one waiting instance") {
    // A restart while waiting must neither wedge it nor start a second copy.
    harness h;
    auto db = svc("db", {"sleep", "100000"});
    db.ready = readiness::log("never");
    auto api = svc("api", {"sleep", "100000"});
    api.depends_on = {dependency{"db"}};
    h.sup.add(db);
    h.sup.add(api);
    h.sup.async_run([](error_code) {});
    REQUIRE(h.pump([&] { return h.first("api", service_state::starting, "waiting for 'db'") >= 0; }));
    std::optional<error_code> restarted;
    h.sup.async_restart("api", [&](error_code ec) { restarted = ec; });
    h.pump_for(300ms);
    CHECK(!restarted); // still waiting for db
    CHECK(h.st("api").state == service_state::starting);
    CHECK(!h.st("api").pid);
    CHECK(h.of("api", supervisor_event::kind::exited).empty());
}

TEST_CASE("supervisor: a dependency that fails once and restarts does not strand its dependent") {
    // db fails its first run before it is ready, restarts, then becomes ready: api waits
    // through the restart instead of failing or waiting forever.
    char dir[] = "/tmp/drover-sup-XXXXXX";
    REQUIRE(::mkdtemp(dir));
    const std::string flag = std::string(dir) + "/ran";
    harness h;
    auto db = svc("db", {});
    db.command =
        command("/bin/sh", {"-c", "if [ -e \"$1\" ]; then echo up; exec sleep 100000; fi; : > \"$1\"; exit 1",
                            "sh", flag});
    db.command.stop_grace(2s);
    db.ready = readiness::log("^up$");
    db.backoff.initial = 50ms;
    auto api = svc("api", {"sleep", "100000"});
    api.depends_on = {dependency{"db", dependency_condition::ready}};
    h.sup.add(db);
    h.sup.add(api);
    h.sup.async_run([](error_code) {});
    CHECK(h.pump([&] { return h.state_is("api", service_state::running); }));
    CHECK(h.st("db").restarts == 1);
    CHECK(h.first("api", service_state::failed) < 0);
    std::filesystem::remove_all(dir);
}

TEST_CASE("supervisor: `healthy` on a dependency without a health check means ready") {
    harness h;
    h.sup.add(svc("plain", {"sleep", "100000"}));
    auto d = svc("d", {"sleep", "100000"});
    d.depends_on = {dependency{"plain", dependency_condition::healthy}};
    h.sup.add(d);
    h.sup.async_run([](error_code) {});
    CHECK(h.pump([&] { return h.state_is("d", service_state::running); }));
}

TEST_CASE("supervisor: on_failure leaves a success alone; always restarts it") {
    harness h;
    auto once = svc("once", {"exit", "0"});
    auto loop = svc("loop", {"sleep", "50", "exit", "0"});
    loop.restart = restart_policy::always;
    loop.start_limit.burst = 0;
    h.sup.add(once);
    h.sup.add(loop);
    h.start("once");
    h.start("loop");
    CHECK(h.pump([&] { return h.state_is("once", service_state::exited); }));
    CHECK(h.pump([&] { return h.st("loop").restarts >= 2; }));
    h.pump_for(200ms);
    CHECK(h.st("once").restarts == 0);
    CHECK(h.st("once").reason == "exited with code 0");
}

TEST_CASE("supervisor: keep_retrying restarts at backoff.max once the start limit is reached") {
    harness h;
    auto s = svc("stubborn", {"exit", "1"});
    s.backoff = {20ms, 300ms, 0.0, 10s};
    s.start_limit = {2, 10s, true};
    h.sup.add(s);
    h.start("stubborn");
    REQUIRE(h.pump([&] { return h.of("stubborn", supervisor_event::kind::restart).size() >= 3; }));
    auto r = h.of("stubborn", supervisor_event::kind::restart);
    CHECK(r[0].delay == 0ms);
    CHECK(r[1].delay == 300ms); // the limit (2 starts) is reached: the cap
    CHECK(r[2].delay == 300ms);
    CHECK(h.st("stubborn").state != service_state::failed);
}

TEST_CASE("supervisor: replace with a dependency listed after its dependent starts both") {
    harness h;
    h.sup.add(svc("a", {"sleep", "100000"}));
    h.sup.async_run([](error_code) {});
    REQUIRE(h.pump([&] { return h.state_is("a", service_state::running); }));
    auto d = svc("d", {"sleep", "100000"});
    d.depends_on = {dependency{"e"}};
    std::vector<service> next = {svc("a", {"sleep", "100000"}), d, svc("e", {"sleep", "100000"})};
    REQUIRE(h.run_op([&](auto cb) { h.sup.async_replace(next, {}, cb); }) == error_code{});
    CHECK(h.pump(
        [&] { return h.state_is("d", service_state::running) && h.state_is("e", service_state::running); }));
    CHECK(h.first("d", service_state::failed) < 0);
}

TEST_CASE("supervisor: a stop completes when the tree is gone, even if a start came meanwhile") {
    harness h;
    auto s = svc("slow", {"ignore-term", "100000"});
    s.command.stop_grace(500ms);
    h.sup.add(s);
    REQUIRE(h.start("slow") == error_code{});
    REQUIRE(h.pump([&] { return !h.sup.logs("slow").empty(); })); // "ignoring TERM"
    pid_t first = *h.st("slow").pid;
    std::optional<error_code> stopped, started;
    h.sup.async_stop("slow", [&](error_code ec) { stopped = ec; });
    h.sup.async_start("slow", [&](error_code ec) { started = ec; });
    CHECK(h.pump([&] { return stopped.has_value() && started.has_value(); }));
    CHECK(stopped == error_code{});
    CHECK(started == error_code{});
    CHECK(!alive(first));
    CHECK(h.st("slow").state == service_state::running);
    CHECK(*h.st("slow").pid != first);
}

TEST_CASE("supervisor: a service removed and added again under the same name is the new one") {
    harness h;
    auto s = svc("x", {"ignore-term", "100000"});
    s.command.stop_grace(500ms);
    h.sup.add(s);
    h.sup.add_group({"g", {"x"}, restart_strategy::one_for_all});
    REQUIRE(h.start("x") == error_code{});
    REQUIRE(h.pump([&] { return !h.sup.logs("x").empty(); }));
    std::optional<error_code> removed;
    h.sup.async_remove("x", [&](error_code ec) { removed = ec; });
    h.sup.add(svc("x", {"sleep", "100000"})); // while the old one is still stopping
    REQUIRE(h.sup.status("x"));
    CHECK(h.sup.status("x")->state == service_state::stopped);
    CHECK(h.start("x") == error_code{});
    CHECK(h.pump([&] { return removed.has_value(); }));
    CHECK(h.sup.status().size() == 1);
    CHECK(h.st("x").state == service_state::running);
}

TEST_CASE("supervisor: a group restart does not start a member past its own backoff") {
    // s depends on t (started) and crashes before it is ready; one_for_all stops t, and that
    // must not wake s out of its backoff.
    harness h;
    h.sup.add(svc("t", {"sleep", "100000"}));
    auto s = svc("s", {"sleep", "100", "exit", "1"});
    s.ready = readiness::log("never");
    s.depends_on = {dependency{"t", dependency_condition::started}};
    s.backoff = {2s, 2s, 0.0, 30s};
    h.sup.add(s);
    h.sup.add_group({"g", {"t", "s"}, restart_strategy::one_for_all});
    h.sup.async_run([](error_code) {});
    REQUIRE(h.pump([&] { return h.st("s").restarts >= 1; }));
    // The first restart is immediate; the second run fails too and must wait 2 s.
    REQUIRE(h.pump([&] { return h.state_is("s", service_state::backoff); }, 10s));
    h.pump_for(500ms);
    CHECK(h.st("s").state == service_state::backoff);
    CHECK(!h.st("s").pid);
}

TEST_CASE("supervisor: restart_with restarts a dependent when its dependency restarts") {
    harness h;
    h.sup.add(svc("db", {"sleep", "100000"}));
    auto api = svc("api", {"sleep", "100000"});
    api.depends_on = {dependency{"db", dependency_condition::ready, true}};
    auto other = svc("other", {"sleep", "100000"});
    other.depends_on = {dependency{"db"}};
    h.sup.add(api);
    h.sup.add(other);
    h.sup.async_run([](error_code) {});
    REQUIRE(h.pump([&] {
        return h.state_is("api", service_state::running) && h.state_is("other", service_state::running);
    }));
    pid_t a = *h.st("api").pid, o = *h.st("other").pid;
    ::kill(*h.st("db").pid, SIGKILL);
    CHECK(h.pump([&] {
        auto s = h.st("api");
        return s.state == service_state::running && *s.pid != a && h.state_is("db", service_state::running);
    }));
    CHECK(*h.st("other").pid == o); // without restart_with it keeps running
    a = *h.st("api").pid;
    REQUIRE(h.run_op([&](auto cb) { h.sup.async_restart("db", cb); }) == error_code{});
    CHECK(h.pump([&] {
        auto s = h.st("api");
        return s.state == service_state::running && *s.pid != a;
    }));
}

TEST_CASE("supervisor: the shutdown deadline kills what ignores its stop signal") {
    harness h;
    auto s = svc("stubborn", {"ignore-term", "100000"});
    s.command.stop_grace(60s);
    h.sup.add(s);
    REQUIRE(h.start("stubborn") == error_code{});
    REQUIRE(h.pump([&] { return !h.sup.logs("stubborn").empty(); }));
    pid_t p = *h.st("stubborn").pid;
    const auto t0 = clk::now();
    REQUIRE(h.run_op([&](auto cb) { h.sup.async_shutdown(300ms, cb); }) == error_code{});
    CHECK(clk::now() - t0 < 10s);
    CHECK(!alive(p));
    CHECK(h.st("stubborn").last_status == exit_status::signaled(SIGKILL));
}

TEST_CASE("supervisor: a second shutdown with an earlier deadline brings the kill forward") {
    harness h;
    auto s = svc("stubborn", {"ignore-term", "100000"});
    s.command.stop_grace(60s);
    h.sup.add(s);
    REQUIRE(h.start("stubborn") == error_code{});
    REQUIRE(h.pump([&] { return !h.sup.logs("stubborn").empty(); }));
    pid_t p = *h.st("stubborn").pid;
    const auto t0 = clk::now();
    std::optional<error_code> first, later;
    h.sup.async_shutdown(60s, [&](error_code ec) { first = ec; });
    h.sup.async_shutdown(120s, [&](error_code ec) { later = ec; }); // later: changes nothing
    h.pump_for(300ms);
    CHECK(alive(p));
    std::optional<error_code> second;
    h.sup.async_shutdown(0s, [&](error_code ec) { second = ec; }); // the third Ctrl-C
    REQUIRE(h.pump([&] { return first && second && later; }));
    CHECK(clk::now() - t0 < 30s); // the 60 s deadline and grace are the failure
    CHECK(*first == error_code{});
    CHECK(*second == error_code{});
    CHECK(!alive(p));
    CHECK(h.st("stubborn").last_status == exit_status::signaled(SIGKILL));
}

TEST_CASE("supervisor: start and stop during backoff") {
    harness h;
    auto s = svc("b", {"exit", "1"});
    s.backoff = {5s, 5s, 0.0, 30s};
    h.sup.add(s);
    h.start("b");
    REQUIRE(h.pump([&] { return h.state_is("b", service_state::backoff); }));
    // A stop ends the wait: it stays stopped.
    REQUIRE(h.run_op([&](auto cb) { h.sup.async_stop("b", cb); }) == error_code{});
    CHECK(h.st("b").state == service_state::stopped);
    h.pump_for(300ms);
    CHECK(h.st("b").state == service_state::stopped);
    // An explicit start does not wait for the backoff.
    const auto before = h.of("b", supervisor_event::kind::exited).size();
    h.start("b");
    CHECK(h.pump([&] { return h.of("b", supervisor_event::kind::exited).size() > before; }, 2s));
}
