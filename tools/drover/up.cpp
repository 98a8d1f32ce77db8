// drover (the program): `drover up` and `drover ctl` (up.hpp). The supervision itself is the
// library's drover::supervisor; this file is the program around it: the config, signals, the
// output, the control socket, the service manager above drover (sd_notify), daemon mode.
#include "up.hpp"

#include <malloc.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "config.hpp"
#include "control.hpp"
#include "ctl.hpp"
#include "drover/daemon.hpp"
#include "drover/escape.hpp"
#include "drover/fd_limit.hpp"
#include "drover/reaper.hpp"
#include "drover/supervisor.hpp"
#include "parse.hpp"
#include "up_log.hpp"

namespace drover::up {

namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using clk = std::chrono::steady_clock;

// ---- choosing services ------------------------------------------------------------------------

/// " (did you mean 'x'?)" for the nearest of `names`, when it is near enough to be a typo.
std::string suggestion(std::string_view wrong, const std::vector<std::string>& names) {
    auto near = cli::near_names(wrong, names);
    return near.empty() ? std::string() : " (did you mean '" + near.front() + "'?)";
}

/// The services `drover up` runs: the named ones and everything they depend on (all when none
/// is named), in the config's order, and the groups restricted to them. Each service without a
/// working directory of its own runs in the config file's directory. Empty `error` on success.
struct selection {
    std::vector<drover::service> services;
    std::vector<drover::service_group> groups;
};

selection select_services(const config& cfg, const std::vector<std::string>& wanted, const fs::path& dir,
                          std::string& error) {
    selection out;
    std::vector<std::string> names;
    for (const auto& s : cfg.services) names.push_back(s.name);
    std::set<std::string> keep;
    std::vector<std::string> todo;
    for (const auto& w : wanted) {
        if (std::find(names.begin(), names.end(), w) == names.end()) {
            error = "no service '" + drover::escape(w) + "' in " + cfg.path + suggestion(w, names);
            return out;
        }
        todo.push_back(w);
    }
    if (wanted.empty()) todo = names;
    while (!todo.empty()) {
        std::string n = std::move(todo.back());
        todo.pop_back();
        if (!keep.insert(n).second) continue;
        for (const auto& s : cfg.services)
            if (s.name == n)
                for (const auto& d : s.depends_on) todo.push_back(d.service);
    }
    for (auto s : cfg.services) {
        if (!keep.count(s.name)) continue;
        if (!s.command.cwd()) s.command.cwd(dir);
        out.services.push_back(std::move(s));
    }
    for (auto g : cfg.groups) {
        std::erase_if(g.services, [&](const std::string& m) { return !keep.count(m); });
        if (!g.services.empty()) out.groups.push_back(std::move(g));
    }
    return out;
}

/// The bearer token of --http-token-file: the file's first line, without its line end and
/// surrounding blanks. `problem` says what is wrong (missing, unreadable, empty, too short).
std::string read_token_file(const std::string& path, std::string& problem) {
    std::ifstream in(path);
    if (!in) {
        problem = fmt::format("cannot read '{}': {}", drover::escape(path), std::strerror(errno));
        return {};
    }
    std::string line;
    std::getline(in, line);
    const auto first = line.find_first_not_of(" \t\r");
    const auto last = line.find_last_not_of(" \t\r");
    line = first == std::string::npos ? std::string() : line.substr(first, last - first + 1);
    if (line.empty())
        problem = fmt::format("'{}' holds no token (its first line is empty)", drover::escape(path));
    else if (line.size() < 16)
        problem =
            fmt::format("the token in '{}' is {} characters; use at least 16 (like: openssl rand -hex 32)",
                        drover::escape(path), line.size());
    return line;
}

/// Whether --http's ADDR:PORT names a loopback address (which needs no token).
bool loopback_address(std::string_view address) {
    auto host = address.substr(0, address.rfind(':'));
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (host == "localhost") return true;
    boost::system::error_code ec;
    const auto ip = boost::asio::ip::make_address(std::string(host), ec);
    return !ec && ip.is_loopback();
}

/// Whether something accepts connections on the unix socket `path` (a live drover up).
bool socket_answers(const std::string& path) {
    sockaddr_un sa{};
    if (path.size() >= sizeof(sa.sun_path)) return false;
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path.data(), path.size());
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0;
    ::close(fd);
    return ok;
}

// ---- the service manager above drover (sd_notify) ---------------------------------------------

/// Speaks to the manager that started drover up when NOTIFY_SOCKET names one (systemd with
/// Type=notify, or anything that implements the protocol): READY=1, STATUS=, RELOADING=1,
/// STOPPING=1, WATCHDOG=1. Without NOTIFY_SOCKET every call does nothing.
class manager_notify {
public:
    manager_notify() {
        const char* p = std::getenv("NOTIFY_SOCKET");
        if (!p || !*p) return;
        std::string path = p;
        if (path.size() >= sizeof(addr_.sun_path) || (path[0] != '/' && path[0] != '@')) return;
        addr_.sun_family = AF_UNIX;
        std::memcpy(addr_.sun_path, path.data(), path.size());
        if (path[0] == '@') addr_.sun_path[0] = '\0'; // an abstract address
        len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        // WATCHDOG_USEC is for us only when WATCHDOG_PID is unset or names this process.
        const char* wpid = std::getenv("WATCHDOG_PID");
        const char* wusec = std::getenv("WATCHDOG_USEC");
        if (wusec && (!wpid || std::strtol(wpid, nullptr, 10) == ::getpid())) {
            auto us = std::strtoull(wusec, nullptr, 10);
            if (us > 0) watchdog_ = std::chrono::microseconds(us);
        }
    }
    ~manager_notify() {
        if (fd_ >= 0) ::close(fd_);
    }
    manager_notify(const manager_notify&) = delete;
    manager_notify& operator=(const manager_notify&) = delete;

    bool active() const noexcept { return fd_ >= 0; }
    std::optional<std::chrono::microseconds> watchdog() const noexcept { return watchdog_; }

    void send(const std::string& msg) const noexcept {
        if (fd_ < 0) return;
        (void)::sendto(fd_, msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT,
                       reinterpret_cast<const sockaddr*>(&addr_), len_);
    }

    /// RELOADING=1 needs the time of the reload (systemd 253+ checks MONOTONIC_USEC).
    static std::string monotonic_usec() {
        timespec ts{};
        ::clock_gettime(CLOCK_MONOTONIC, &ts);
        return std::to_string(std::uint64_t(ts.tv_sec) * 1000000 + std::uint64_t(ts.tv_nsec) / 1000);
    }

private:
    int fd_ = -1;
    sockaddr_un addr_{};
    socklen_t len_ = 0;
    std::optional<std::chrono::microseconds> watchdog_;
};

// ---- one drover up ------------------------------------------------------------------------------

/// Everything one `drover up` holds, declared in the order it is built: the io_context first, so
/// it outlives everything bound to it.
class up_session {
public:
    up_session(const cli::up_options& o, config cfg, selection sel, fs::path dir, std::string socket,
               std::string http_token, spdlog::logger& log)
        : o_(o), cfg_(std::move(cfg)), dir_(std::move(dir)), socket_(std::move(socket)),
          http_token_(std::move(http_token)), log_(log), first_(std::move(sel)) {}

    int run();

private:
    void read_signals();
    void on_signal(int sig);
    void handle(const supervisor_event& ev);
    void check_settled();
    void begin_shutdown(clk::duration deadline, const std::string& why);
    void finish();
    void reload(std::function<void(std::optional<std::string>)> done);
    void apply_log_files(const std::vector<drover::service>& services);
    void arm_watchdog();
    bool exit_on_failure(const std::string& service) const;
    /// The supervisor holds each service's spec from here on: the config's and the selection's
    /// copies go (a drover::service is about 2.4 KiB: two more copies were 5 KiB per service).
    void release_specs() {
        first_ = {};
        std::vector<drover::service>().swap(cfg_.services);
        std::vector<drover::service_group>().swap(cfg_.groups);
    }

    cli::up_options o_;
    config cfg_;
    fs::path dir_;
    std::string socket_;
    std::string http_token_;
    spdlog::logger& log_;
    selection first_;
    std::set<std::string> selected_;

    asio::io_context ctx_;
    std::unique_ptr<drover::supervisor> sup_;
    std::unique_ptr<control_server> control_;
    std::unique_ptr<output_writer> out_;
    asio::posix::stream_descriptor sigfd_{ctx_};
    signalfd_siginfo info_{};
    manager_notify manager_;
    asio::steady_timer watchdog_timer_{ctx_};
    asio::steady_timer backstop_{ctx_};
    asio::steady_timer drain_timer_{ctx_};
    event_stream events_;
    /// False once run() is over: the writer thread's error callback (which may outlive the
    /// session if a write hangs and the writer is abandoned) then does nothing.
    std::shared_ptr<std::atomic<bool>> alive_ = std::make_shared<std::atomic<bool>>(true);

    int stop_requests_ = 0;
    bool shutting_down_ = false;
    bool announced_ready_ = false;
    bool done_ = false;
    int exit_code_ = 0;
    std::string failure_;
};

bool up_session::exit_on_failure(const std::string& service) const {
    // Resolved by load_config: the service's own setting, else the [drover] default.
    auto it = cfg_.options.find(service);
    return it != cfg_.options.end() ? it->second.exit_on_failure : cfg_.exit_on_failure;
}

void up_session::apply_log_files(const std::vector<drover::service>& services) {
    for (const auto& s : services) {
        out_->add_service(s.name);
        std::optional<rotation_spec> spec;
        if (auto it = cfg_.options.find(s.name); it != cfg_.options.end() && it->second.log_file)
            spec = rotation_spec{it->second.log_file->path, it->second.log_file->max_size,
                                 it->second.log_file->keep};
        out_->set_log_file(s.name, std::move(spec));
    }
}

int up_session::run() {
    sup_ = std::make_unique<drover::supervisor>(ctx_.get_executor());
    try {
        // supervisor::add wants a service's dependencies added before it: dependencies first.
        std::set<std::string> added;
        while (added.size() < first_.services.size()) {
            const std::size_t before = added.size();
            for (const auto& s : first_.services) {
                if (added.count(s.name)) continue;
                if (std::all_of(s.depends_on.begin(), s.depends_on.end(),
                                [&](const dependency& d) { return added.count(d.service) > 0; })) {
                    sup_->add(s);
                    added.insert(s.name);
                }
            }
            if (added.size() == before) throw std::runtime_error("a dependency cycle"); // validated before
        }
        for (const auto& g : first_.groups) sup_->add_group(g);
    } catch (const std::exception& e) { // load_config checked the same; this is a last guard
        log_.error("{}: {}", cfg_.path, e.what());
        return exit_config_error;
    }
    for (const auto& s : first_.services) selected_.insert(s.name);

    // The control socket before the writer thread exists: listen() sets the umask around bind.
    control_ = std::make_unique<control_server>(
        ctx_.get_executor(), *sup_,
        control_hooks{
            [this](std::function<void(std::optional<std::string>)> done) { reload(std::move(done)); },
            [this] { begin_shutdown(cfg_.shutdown_grace, "shutdown requested through the control API"); }},
        http_token_);
    try {
        control_->listen(socket_);
    } catch (const std::exception& e) {
        log_.error("control socket: {}", e.what());
        return cli::exit_drover_failed;
    }
    log_.info("control socket {}", socket_);
    if (o_.http) {
        try {
            control_->listen_http(*o_.http);
        } catch (const std::exception& e) {
            log_.error("http: {}", e.what());
            return cli::exit_drover_failed;
        }
        log_.info("http: the API and the dashboard on http://{}/{}", control_->http_address(),
                  http_token_.empty() ? "" : " (bearer token required)");
    }

    output_options oo;
    oo.fmt = o_.log_format == "json" ? output_options::format::json : output_options::format::text;
    oo.color = o_.color == "always" || (o_.color == "auto" && !o_.daemon && output_writer::want_color(1));
    oo.timestamps = o_.timestamps;
    std::vector<std::string> names(selected_.begin(), selected_.end());
    auto ex = ctx_.get_executor();
    out_ = std::make_unique<output_writer>(1, oo, names, [ex, this, alive = alive_](std::string msg) {
        // Called on the writer thread: the logger belongs to the io_context's thread.
        if (alive->load()) asio::post(ex, [this, msg = std::move(msg)] { log_.warn("{}", msg); });
    });
    apply_log_files(first_.services);
    release_specs();

    // Signals: main() blocked them before any thread existed; they arrive here as data.
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGCHLD, SIGQUIT}) sigaddset(&set, s);
    int sfd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        log_.error("signalfd: {}", std::strerror(errno));
        return cli::exit_drover_failed;
    }
    sigfd_.assign(sfd);
    read_signals();
    drover::reap_orphans(); // any that ended before the signalfd existed

    // Every line reaches the output writer: when this loop falls behind, the supervisor pauses
    // reading the services' output instead of dropping lines (a flooding service is slowed).
    events_ = sup_->subscribe(8192, drover::event_overflow::pause_output);
    asio::co_spawn(
        ctx_,
        [this]() -> asio::awaitable<void> {
            for (;;) {
                auto [ec, ev] = co_await events_.next(asio::as_tuple(asio::use_awaitable));
                if (ec) {
                    // Every event is written; what remains are the control API's closing
                    // streams, which end on their own.
                    if (done_) backstop_.cancel();
                    co_return;
                }
                handle(ev);
            }
        },
        // An exception in the event handling leaves ctx.run() (main() reports it, exit 125)
        // rather than ending the coroutine silently with drover up still running blind.
        [](std::exception_ptr e) {
            if (e) std::rethrow_exception(e);
        });

    if (manager_.watchdog()) arm_watchdog();
    if (manager_.active()) manager_.send("STATUS=starting " + std::to_string(selected_.size()) + " services");
    sup_->async_run([](error_code) {});
    ctx_.run();

    out_->flush(std::chrono::seconds(2));
    alive_->store(false);
    out_.reset();
    if (!failure_.empty()) log_.error("{}", failure_);
    return exit_code_;
}

void up_session::arm_watchdog() {
    watchdog_timer_.expires_after(*manager_.watchdog() / 2);
    watchdog_timer_.async_wait([this](error_code ec) {
        if (ec || done_) return;
        manager_.send("WATCHDOG=1");
        arm_watchdog();
    });
}

void up_session::read_signals() {
    sigfd_.async_read_some(asio::buffer(&info_, sizeof info_), [this](error_code ec, std::size_t n) {
        if (ec) return;
        if (n == sizeof info_) on_signal(static_cast<int>(info_.ssi_signo));
        read_signals();
    });
}

void up_session::on_signal(int sig) {
    switch (sig) {
    case SIGCHLD:
        drover::reap_orphans();
        break;
    case SIGHUP:
        log_.info("SIGHUP: reloading {}", cfg_.path);
        reload([this](std::optional<std::string> error) {
            if (error) log_.error("reload refused, nothing changed: {}", *error);
        });
        break;
    case SIGUSR1:
        out_->reopen_all();
        break;
    case SIGTERM:
    case SIGINT:
    case SIGQUIT: {
        // The first asks for an orderly stop; a second (an impatient Ctrl-C) gives what still
        // runs one more second; a third kills everything now.
        ++stop_requests_;
        const char* name = sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "SIGQUIT";
        if (stop_requests_ == 1)
            begin_shutdown(cfg_.shutdown_grace, std::string(name) + ": stopping every service");
        else if (stop_requests_ == 2)
            begin_shutdown(std::chrono::seconds(1),
                           std::string(name) + " again: killing what still runs in 1s");
        else
            begin_shutdown(clk::duration::zero(),
                           std::string(name) + " a third time: killing everything now");
        break;
    }
    default:
        break;
    }
}

void up_session::handle(const supervisor_event& ev) {
    using kind = supervisor_event::kind;
    switch (ev.type) {
    case kind::output:
        out_->line(ev.service, ev.stream, ev.text, ev.time);
        return;
    case kind::exited:
        out_->note(ev.service, ev.text, ev.time);
        break;
    case kind::restart:
        out_->note(ev.service,
                   "restarting in " +
                       cli::format_duration(std::chrono::duration_cast<std::chrono::nanoseconds>(ev.delay)) +
                       (ev.text.empty() ? "" : ": " + ev.text),
                   ev.time);
        break;
    case kind::state: {
        std::string text(drover::to_string(ev.state));
        if (!ev.text.empty()) text += ": " + ev.text;
        out_->note(ev.service, text, ev.time);
        if (ev.state == service_state::failed && exit_on_failure(ev.service) && !shutting_down_) {
            exit_code_ = 1;
            failure_ = "service '" + ev.service + "' failed: " + drover::escape(ev.text);
            begin_shutdown(cfg_.shutdown_grace, failure_);
        }
        break;
    }
    case kind::lost:
        log_.warn("{} supervisor events lost (output faster than drover can pass it on)", ev.count);
        break;
    case kind::probe:
    case kind::notify:
        return;
    }
    check_settled();
}

/// READY=1 to the manager once every service is up (ready, running without a readiness check,
/// or done); and the end of drover up once nothing is left running or waiting.
void up_session::check_settled() {
    if (shutting_down_) return;
    auto all = sup_->status();
    std::size_t up = 0, done = 0, failed = 0;
    for (const auto& s : all) {
        if (!selected_.count(s.name)) continue;
        switch (s.state) {
        case service_state::ready:
        case service_state::running:
            ++up;
            break;
        case service_state::exited:
            ++done;
            break;
        case service_state::failed:
            ++failed;
            break;
        default:
            break;
        }
    }
    std::size_t n = selected_.size();
    // Settled: each service is up, done, or failed for good. A failed one is said in STATUS=
    // rather than holding READY=1 back forever (the manager's start timeout would then kill
    // every service that did come up).
    if (!announced_ready_ && up + done + failed == n) {
        announced_ready_ = true;
        // Parsing the config and starting every service freed much more than stays in use (the
        // TOML tree, the start-up's temporaries): hand those pages back, so that what drover up
        // holds from here on is what the services need.
        ::malloc_trim(0);
        if (failed == 0)
            log_.info("all {} services are up", n);
        else
            log_.warn("{} of {} services are up; {} failed", up + done, n, failed);
        manager_.send("READY=1\nSTATUS=" + std::to_string(up) + " services running" +
                      (failed ? ", " + std::to_string(failed) + " failed" : std::string()));
    }
    if (done + failed == n && n > 0) {
        if (failed > 0) {
            exit_code_ = 1;
            std::string names;
            for (const auto& s : all)
                if (s.state == service_state::failed) names += (names.empty() ? "'" : ", '") + s.name + "'";
            failure_ = "nothing left to run: " + std::to_string(failed) + " failed (" + names + ")";
        }
        begin_shutdown(cfg_.shutdown_grace, "nothing left to run");
    }
}

void up_session::begin_shutdown(clk::duration deadline, const std::string& why) {
    if (done_) return;
    log_.info("{}", why);
    if (!shutting_down_) {
        shutting_down_ = true;
        manager_.send("STOPPING=1");
    }
    // A later call with an earlier deadline brings the kill forward (supervisor::async_shutdown).
    sup_->async_shutdown(deadline, [this](error_code) { finish(); });
}

/// Every service has stopped. The io_context runs on until the events already queued (the last
/// exits, notes and output lines) are written and the control API's open streams have sent
/// their last chunk; then nothing is left and run() returns. A backstop stops it regardless.
void up_session::finish() {
    if (done_) return;
    done_ = true;
    error_code ignored;
    watchdog_timer_.cancel();
    sigfd_.close(ignored);
    if (control_) control_->close();
    // Then the supervisor goes (its last timers and sockets with it; the control server, closed
    // first, no longer uses it). Every tree is gone, so each service's pipes are at EOF: a
    // moment lets the supervisor read what is still in them. Destroying it closes the event
    // stream but keeps what is queued (event_stream::close would drop that): the coroutine
    // writes the last events, then gets operation_aborted.
    drain_timer_.expires_after(std::chrono::milliseconds(250));
    drain_timer_.async_wait([this](error_code) { sup_.reset(); });
    drover::reap_orphans();
    backstop_.expires_after(std::chrono::seconds(6)); // past the control API's 5 s close grace
    backstop_.async_wait([this](error_code ec) {
        if (!ec) ctx_.stop();
    });
}

void up_session::reload(std::function<void(std::optional<std::string>)> done) {
    if (shutting_down_) return done(std::string("drover up is shutting down"));
    config next;
    try {
        next = load_config(cfg_.path);
    } catch (const config_error& e) {
        return done(std::string(e.what()));
    } catch (const std::exception& e) {
        return done(cfg_.path + ": " + e.what());
    }
    std::string error;
    std::vector<std::string> wanted(o_.services.begin(), o_.services.end());
    auto sel = select_services(next, wanted, dir_, error);
    if (!error.empty()) return done(error);
    manager_.send("RELOADING=1\nMONOTONIC_USEC=" + manager_notify::monotonic_usec());
    auto services = sel.services;
    try {
        sup_->async_replace(std::move(sel.services), std::move(sel.groups),
                            [this, done, services, next = std::move(next)](error_code ec) mutable {
                                if (ec) {
                                    manager_.send("READY=1");
                                    return done("the new services could not be applied: " + ec.message());
                                }
                                cfg_ = std::move(next);
                                release_specs();
                                std::set<std::string> now;
                                for (const auto& s : services) now.insert(s.name);
                                for (const auto& old : selected_)
                                    if (!now.count(old)) out_->set_log_file(old, std::nullopt);
                                selected_ = std::move(now);
                                apply_log_files(services);
                                log_.info("reloaded {}: {} services", cfg_.path, services.size());
                                manager_.send("READY=1\nSTATUS=reloaded");
                                done(std::nullopt);
                            });
    } catch (const std::exception& e) { // validate() refused the set: nothing changed
        manager_.send("READY=1");
        return done(cfg_.path + ": " + e.what());
    }
}

} // namespace

int up_main(const cli::up_options& o, spdlog::logger& log) {
    if ((o.pidfile || o.log_file) && !o.daemon) {
        log.error("up: --pidfile and --log-file go with --daemon");
        return exit_config_error;
    }
    std::error_code fec;
    fs::path cwd = fs::current_path(fec);
    std::string path = o.file ? *o.file : find_config(cwd.string());
    if (path.empty()) {
        log.error("up: no drover.toml or Procfile in {} (name one with -f FILE)",
                  drover::escape(cwd.string()));
        return exit_config_error;
    }
    path = fs::absolute(path, fec).lexically_normal().string();
    config cfg;
    try {
        cfg = load_config(path);
    } catch (const config_error& e) {
        log.error("{}", e.what());
        return exit_config_error;
    }
    std::string error;
    fs::path dir = fs::path(path).parent_path();
    auto sel = select_services(cfg, o.services, dir, error);
    if (!error.empty()) {
        log.error("up: {}", error);
        return exit_config_error;
    }
    if (o.check) {
        std::cout << describe_plan(cfg) << std::flush;
        return 0;
    }
    std::string http_token;
    if (o.http_token_file && !o.http) {
        log.error("up: --http-token-file needs --http ADDR:PORT");
        return exit_config_error;
    }
    if (o.http_token_file) {
        std::string problem;
        http_token = read_token_file(*o.http_token_file, problem);
        if (!problem.empty()) {
            log.error("up: --http-token-file: {}", problem);
            return exit_config_error;
        }
    } else if (o.http && !loopback_address(*o.http)) {
        log.error("up: --http {}: not a loopback address; serving the API there needs --http-token-file "
                  "(or listen on 127.0.0.1)",
                  drover::escape(*o.http));
        return exit_config_error;
    }
    std::string socket = o.socket ? fs::absolute(*o.socket, fec).string() : default_socket_path(path);
    // Before --daemon detaches (so the starter can still say it) and before anything starts; the
    // control server checks again when it binds.
    if (socket_answers(socket)) {
        log.error("control socket: another drover up is listening on {}", drover::escape(socket));
        return cli::exit_drover_failed;
    }
    // main() blocked the signals drover up reads from its signalfd; one inherited as ignored
    // (nohup ignores HUP, a shell's `cmd &` INT and QUIT) would be discarded even while blocked.
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1}) ::signal(sig, SIG_DFL);

    // Hundreds of children with pipes need more than the default 1024 descriptors; children
    // still get 1024 (reliability.md B6).
    error_code ec;
    drover::raise_fd_limit(ec);
    if (ec) log.warn("could not raise the descriptor limit: {}", ec.message());

    if (o.daemon) {
        drover::daemon_options d;
        if (o.pidfile) d.pidfile = fs::absolute(*o.pidfile, fec);
        if (o.log_file) d.output = fs::absolute(*o.log_file, fec);
        d.working_directory = dir;
        try {
            drover::daemonize(d); // returns only in the daemon
        } catch (const std::exception& e) {
            log.error("up --daemon: {}", e.what());
            return cli::exit_drover_failed;
        }
    }

    // As PID 1 drover already reaps every orphan; otherwise it becomes a subreaper so the
    // orphans of its services come to it (reaped, and stopped with their service).
    drover::become_reaper(ec);
    if (ec) // the portable backend has none (docs/cli.md): debug there, as for drover run
        log.log(ec == drover::errc::not_supported ? spdlog::level::debug : spdlog::level::warn,
                "could not become a subreaper: {}; orphans of services go to init", ec.message());

    up_session session(o, std::move(cfg), std::move(sel), dir, socket, std::move(http_token), log);
    return session.run();
}

int ctl_entry(const cli::ctl_options& o, spdlog::logger& log) {
    std::error_code fec;
    std::string path;
    if (o.file) path = fs::absolute(*o.file, fec).lexically_normal().string();
    if (o.verb == "check") {
        if (path.empty()) path = find_config(fs::current_path(fec).string());
        if (path.empty()) {
            log.error("ctl check: no drover.toml or Procfile here (name one with -f FILE)");
            return exit_config_error;
        }
        path = fs::absolute(path, fec).lexically_normal().string();
        try {
            std::cout << describe_plan(load_config(path)) << std::flush;
            return 0;
        } catch (const config_error& e) {
            log.error("{}", e.what());
            return exit_config_error;
        }
    }
    ctl::ctl_request r;
    if (o.socket) {
        r.socket = *o.socket;
    } else {
        if (path.empty()) {
            std::string found = find_config(fs::current_path(fec).string());
            if (found.empty()) {
                log.error("ctl: no drover.toml or Procfile here to find drover up's socket by (give --socket "
                          "PATH or -f FILE)");
                return exit_config_error;
            }
            path = fs::absolute(found, fec).lexically_normal().string();
        }
        r.socket = default_socket_path(path);
    }
    r.verb = o.verb;
    r.names = o.names;
    r.json = o.json;
    r.follow = o.follow;
    r.watch = o.watch;
    if (o.lines_given) r.lines = o.lines;
    r.terminal = ::isatty(1) == 1;
    return ctl::ctl_main(r, std::cout, log);
}

} // namespace drover::up
