// One doctest main for every suite: doctest prints its summary at the end of each.
//
// DROVER_TEST_FAULT="point:ERRNO[:times],..." runs the suite with those faults armed through
// the library's fault-injection seam (lib/detail/fault.hpp), e.g. "clone3:ENOSYS:-1" to prove
// the core suites pass on the fallback launchers. The library itself never reads it.
//
// DROVER_TEST_SIGNAL_STORM=HZ runs the suite under a signal storm (pitfalls.md A2, F1): handlers
// for SIGUSR1 and SIGALRM are installed *without* SA_RESTART (so every blocking call they
// interrupt returns EINTR), and a separate process sends this one SIGUSR1 and SIGALRM in turn,
// HZ signals a second, until this process exits. Every test must still pass: no EINTR may
// surface as an error, nothing may hang. At the end the number of signals handled is printed,
// and the run fails if the storm did not reach it.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "detail/fault.hpp"

namespace {

std::atomic<unsigned long> g_storm_signals{0};

void on_storm_signal(int) { g_storm_signals.fetch_add(1, std::memory_order_relaxed); }

/// Installs the handlers and starts the storm process (not our child: forked twice, so no test
/// that counts this process's children sees it). It stops once `target` has exited.
bool start_signal_storm(long hz) {
    struct sigaction sa {};
    sa.sa_handler = on_storm_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; // no SA_RESTART: interrupted calls return EINTR
    if (::sigaction(SIGUSR1, &sa, nullptr) != 0 || ::sigaction(SIGALRM, &sa, nullptr) != 0) return false;
    const pid_t target = ::getpid();
    const int target_fd = static_cast<int>(::syscall(SYS_pidfd_open, target, 0));
    if (target_fd < 0) return false;
    pid_t middle = ::fork();
    if (middle < 0) return false;
    if (middle == 0) {
        if (::fork() != 0) ::_exit(0);
        // The storm: alternate SIGUSR1 and SIGALRM at `hz` until the target is gone.
        const long gap_ns = 1000000000L / hz;
        timespec next {};
        ::clock_gettime(CLOCK_MONOTONIC, &next);
        for (unsigned long n = 0;; ++n) {
            if (::syscall(SYS_pidfd_send_signal, target_fd, (n & 1) ? SIGALRM : SIGUSR1, nullptr, 0) != 0) ::_exit(0);
            if ((n & 1023) == 0) {
                pollfd p{target_fd, POLLIN, 0};
                if (::poll(&p, 1, 0) > 0) ::_exit(0); // the target exited
            }
            next.tv_nsec += gap_ns;
            while (next.tv_nsec >= 1000000000L) {
                next.tv_nsec -= 1000000000L;
                ++next.tv_sec;
            }
            ::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, nullptr);
        }
    }
    ::close(target_fd);
    int st = 0;
    while (::waitpid(middle, &st, 0) < 0 && errno == EINTR) {
    }
    return true;
}

} // namespace

int main(int argc, char** argv) {
    long storm_hz = 0;
    if (const char* env = std::getenv("DROVER_TEST_SIGNAL_STORM"); env != nullptr && *env != '\0') {
        storm_hz = std::strtol(env, nullptr, 10);
        if (storm_hz <= 0 || storm_hz > 100000 || !start_signal_storm(storm_hz)) {
            std::fprintf(stderr, "DROVER_TEST_SIGNAL_STORM: cannot start a storm of '%s' Hz\n", env);
            return 2;
        }
        std::fprintf(stderr, "signal storm: SIGUSR1/SIGALRM at %ld Hz, handlers without SA_RESTART\n", storm_hz);
    }
    if (const char* env = std::getenv("DROVER_TEST_FAULT"); env != nullptr && *env != '\0') {
        std::string specs = env;
        for (std::size_t at = 0; at <= specs.size();) {
            std::size_t comma = specs.find(',', at);
            if (comma == std::string::npos) comma = specs.size();
            std::string one = specs.substr(at, comma - at);
            if (!drover::detail::inject_fault_spec(one.c_str())) {
                std::fprintf(stderr, "DROVER_TEST_FAULT: cannot parse '%s' (point:ERRNO[:times])\n", one.c_str());
                return 2;
            }
            at = comma + 1;
        }
        std::fprintf(stderr, "faults armed for this run: %s\n", env);
    }
    doctest::Context ctx(argc, argv);
    int rc = ctx.run();
    if (drover::detail::g_faults_armed.load()) { // proof that the faults were reached
        using drover::detail::fault_point;
        for (unsigned p = 0; p < static_cast<unsigned>(fault_point::count_); ++p)
            if (unsigned n = drover::detail::fault_hits(static_cast<fault_point>(p)))
                std::fprintf(stderr, "fault %s injected %u times\n",
                             drover::detail::fault_point_name(static_cast<fault_point>(p)), n);
    }
    if (storm_hz > 0) {
        unsigned long n = g_storm_signals.load();
        std::fprintf(stderr, "signal storm: %lu signals handled during the run\n", n);
        if (n == 0) {
            std::fprintf(stderr, "signal storm: no signal arrived; the storm did not run\n");
            return rc != 0 ? rc : 3;
        }
    }
    return rc;
}
