// drover: what a supervised service is: a command plus restart, dependency, readiness, health
// and output settings (the `supervisor` runs them).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "drover/command.hpp"

namespace drover {

/// When a service whose process ended is started again.
enum class restart_policy : unsigned char {
    no,         ///< never: a success ends in `exited`, a failure in `failed`
    on_failure, ///< after an exit code not in `success_codes`, a signal, a failed health check,
                ///<   a watchdog timeout or a readiness timeout
    always,     ///< after every end of the process, a success included
};

/// The delay before an automatic restart: `initial`, doubled after each consecutive failed run
/// up to `max`, spread by ±`jitter` (a fraction: 0.2 is ±20 %). A run that lasted at least
/// `reset_after` starts the sequence again at `initial`.
struct backoff_policy {
    std::chrono::steady_clock::duration initial = std::chrono::milliseconds(100);
    std::chrono::steady_clock::duration max = std::chrono::seconds(30);
    double jitter = 0.2;
    std::chrono::steady_clock::duration reset_after = std::chrono::seconds(30);
    bool operator==(const backoff_policy&) const = default;
};

/// At most `burst` automatic starts within `interval` (systemd's StartLimitBurst and
/// StartLimitIntervalSec, OTP's intensity and period). When one more would exceed it the
/// service is `failed` ("start limit reached"), or, with `keep_retrying`, keeps restarting at
/// the backoff's `max`. `burst` 0: no limit. An explicit start clears the count.
struct start_limit_policy {
    unsigned burst = 5;
    std::chrono::steady_clock::duration interval = std::chrono::seconds(60);
    bool keep_retrying = false;
    bool operator==(const start_limit_policy&) const = default;
};

/// What a dependent waits for.
enum class dependency_condition : unsigned char {
    started,                ///< its process was spawned
    ready,                  ///< its readiness check passed (a service without one: spawned)
    healthy,                ///< ready, and its health check passed once (without one: ready)
    completed,              ///< its process ended (any status) and it will not restart
    completed_successfully, ///< its process ended with a success code and it will not restart
};

struct dependency {
    std::string service;
    dependency_condition condition = dependency_condition::ready;
    /// Restart this service whenever the dependency's process is restarted (systemd's
    /// BindsTo=, process-compose's default). Off: a running dependent stays as it is.
    bool restart_with = false;
    bool operator==(const dependency&) const = default;
};

/// One check of a service from outside: a TCP connect, an HTTP GET or a command.
struct probe {
    enum class kind : unsigned char { tcp, http, exec };
    kind type = kind::tcp;
    /// tcp: "host:port" (an IPv6 host in brackets, "[::1]:80"); http: "http://host[:port]/path".
    std::string address;
    /// exec: the command; it passes when it exits 0.
    std::optional<drover::command> program;
    /// The bound of one attempt (an exec probe's tree is stopped when it passes).
    std::chrono::steady_clock::duration timeout = std::chrono::seconds(1);

    static probe tcp(std::string host_port) { return probe{kind::tcp, std::move(host_port), {}}; }
    /// Passes on a 2xx response.
    static probe http(std::string url) { return probe{kind::http, std::move(url), {}}; }
    static probe exec(drover::command cmd) { return probe{kind::exec, {}, std::move(cmd)}; }
    bool operator==(const probe&) const = default;
};

/// How a started service tells that it is ready. Until then it is `starting`; if it is not
/// ready within `timeout`, the start failed (the tree is stopped; the restart policy decides).
struct readiness {
    enum class kind : unsigned char {
        none,   ///< ready as soon as it is spawned
        notify, ///< sd_notify READY=1 on the socket in its NOTIFY_SOCKET
        fd,     ///< a newline written on descriptor `fd_number` (the s6 convention)
        log,    ///< a line of stdout or stderr matches `pattern` (ECMAScript regex, searched)
        check,  ///< `check` passes (tried every `interval`)
    };
    kind type = kind::none;
    int fd_number = 3;
    std::string pattern;
    drover::probe check;
    std::chrono::steady_clock::duration interval = std::chrono::milliseconds(100);
    std::chrono::steady_clock::duration timeout = std::chrono::seconds(60);

    static readiness notify() { return with(kind::notify); }
    static readiness fd(int n) {
        readiness r = with(kind::fd);
        r.fd_number = n;
        return r;
    }
    static readiness log(std::string regex) {
        readiness r = with(kind::log);
        r.pattern = std::move(regex);
        return r;
    }
    static readiness tcp(std::string host_port) { return of(probe::tcp(std::move(host_port))); }
    static readiness http(std::string url) { return of(probe::http(std::move(url))); }
    static readiness exec(drover::command cmd) { return of(probe::exec(std::move(cmd))); }
    static readiness of(drover::probe p) {
        readiness r = with(kind::check);
        r.check = std::move(p);
        return r;
    }
    bool operator==(const readiness&) const = default;

private:
    static readiness with(kind k) {
        readiness r;
        r.type = k;
        return r;
    }
};

/// A liveness check: `check` runs every `interval` from `initial_delay` after the service is
/// ready; `failures` failed attempts in a row make the service unhealthy, which ends the run
/// as a failure (the tree is stopped; the restart policy decides).
struct health_check {
    drover::probe check;
    std::chrono::steady_clock::duration interval = std::chrono::seconds(10);
    std::chrono::steady_clock::duration initial_delay = std::chrono::seconds(0);
    unsigned failures = 3;
    bool operator==(const health_check&) const = default;
};

/// What happens to a service's stdout and stderr.
struct output_policy {
    /// On: both go to pipes the supervisor reads as lines (events and the `logs()` ring; the
    /// child never blocks on a slow reader). Off: the command's own stdio settings apply.
    bool capture = true;
    std::size_t keep_lines = 1000;    ///< lines kept per service for `supervisor::logs()`
    std::size_t max_line = 16 * 1024; ///< longer lines keep this many bytes, the rest counted
    bool operator==(const output_policy&) const = default;
};

/// A supervised service: a name, a command (identity, limits, namespaces, environment, stop
/// signal and grace all come from it) and how to keep it running.
struct service {
    service() = default;
    service(std::string n, drover::command cmd) : name(std::move(n)), command(std::move(cmd)) {}

    std::string name; ///< letters, digits, '-', '_', '.'; unique within a supervisor
    drover::command command;
    restart_policy restart = restart_policy::on_failure;
    backoff_policy backoff;
    start_limit_policy start_limit;
    std::vector<int> success_codes = {0}; ///< exit codes that count as success
    std::vector<dependency> depends_on;
    readiness ready;
    std::optional<health_check> health;
    /// With a notify socket: the service must send WATCHDOG=1 at least this often (systemd's
    /// WatchdogSec; WATCHDOG_USEC= from the service changes it), else the run fails.
    std::optional<std::chrono::steady_clock::duration> watchdog;
    output_policy output;
    bool operator==(const service&) const = default;
};

/// Erlang/OTP restart strategies for services that must restart together.
enum class restart_strategy : unsigned char {
    one_for_one, ///< only the service that ended restarts
    one_for_all, ///< every member of the group restarts
    rest_for_one ///< it and the members listed after it restart
};

struct service_group {
    std::string name;
    std::vector<std::string> services; ///< in order (rest_for_one restarts the later ones)
    restart_strategy strategy = restart_strategy::one_for_one;
    bool operator==(const service_group&) const = default;
};

} // namespace drover
