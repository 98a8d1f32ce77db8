// One doctest main for every suite: doctest prints its summary at the end of each.
//
// DROVER_TEST_FAULT="point:ERRNO[:times],..." runs the suite with those faults armed through
// the library's fault-injection seam (lib/detail/fault.hpp), e.g. "clone3:ENOSYS:-1" to prove
// the core suites pass on the fallback launchers. The library itself never reads it.
//
// DROVER_TEST_SIGNAL_STORM=HZ runs the suite under a signal storm (reliability.md A2, F1): handlers
// for SIGUSR1 and SIGALRM are installed *without* SA_RESTART (so every blocking call they
// interrupt returns EINTR), and a separate process sends this one SIGUSR1 and SIGALRM in turn,
// HZ signals a second, until this process exits. Every test must still pass: no EINTR may
// surface as an error, nothing may hang. At the end the number of signals handled is printed,
// and the run fails if the storm did not reach it.
//
// Skips are counted: a case that calls DROVER_SKIP (test/support.hpp) is listed after the run,
// apart from the passed ones, in lines tools/dev/test.sh reads:
//   [drover] test cases: N | P passed | F failed | K skipped
//   [drover] skipped: K
//   [drover] skip: <test case>: <reason>
// P excludes the skipped cases; a case that skipped after a failed check counts as failed only.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <fcntl.h>
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
#include <utility>
#include <vector>

#include "detail/fault.hpp"
#include "drover/backend.hpp"

namespace drover::test {
void note_skip(const std::string& reason);
} // namespace drover::test

namespace {

/// The skips of this run: the case's name and the reason, in order; the running case's name.
struct skip_record {
    std::vector<std::pair<std::string, std::string>> skipped;
    std::string current;
    int cases = 0, failed = 0;
    bool ran = false;
};
skip_record g_skips;

/// Follows the run: which case is running, and whether a case that skipped failed after all.
struct skip_listener : doctest::IReporter {
    explicit skip_listener(const doctest::ContextOptions&) {}
    void report_query(const doctest::QueryData&) override {}
    void test_run_start() override { g_skips.ran = true; }
    void test_run_end(const doctest::TestRunStats& st) override {
        g_skips.cases = static_cast<int>(st.numTestCasesPassingFilters);
        g_skips.failed = static_cast<int>(st.numTestCasesFailed);
    }
    void test_case_start(const doctest::TestCaseData& tc) override { g_skips.current = tc.m_name; }
    void test_case_reenter(const doctest::TestCaseData&) override {}
    void test_case_end(const doctest::CurrentTestCaseStats& st) override {
        if (st.testCaseSuccess) return;
        std::erase_if(g_skips.skipped, [](const auto& s) { return s.first == g_skips.current; });
    }
    void test_case_exception(const doctest::TestCaseException&) override {}
    void subcase_start(const doctest::SubcaseSignature&) override {}
    void subcase_end() override {}
    void log_assert(const doctest::AssertData&) override {}
    void log_message(const doctest::MessageData&) override {}
    void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("drover-skips", 1, skip_listener);

/// The lines test/dev/test.sh reads (see the top of this file).
void print_skips() {
    const int skipped = static_cast<int>(g_skips.skipped.size());
    std::printf("[drover] test cases: %d | %d passed | %d failed | %d skipped\n", g_skips.cases,
                g_skips.cases - g_skips.failed - skipped, g_skips.failed, skipped);
    std::printf("[drover] skipped: %d\n", skipped);
    for (auto& [name, reason] : g_skips.skipped)
        std::printf("[drover] skip: %s: %s\n", name.c_str(), reason.c_str());
    std::fflush(stdout);
}

std::atomic<unsigned long> g_storm_signals{0};

void on_storm_signal(int) {
    g_storm_signals.fetch_add(1, std::memory_order_relaxed);
}

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
        // Hold nothing of the test's: meson waits for EOF on the test's stdout and stderr.
        int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
        for (int fd = 0; fd < 3; ++fd) ::dup2(null, fd);
        for (int fd = 3; fd < 1024; ++fd)
            if (fd != target_fd) ::close(fd);
        // The storm: alternate SIGUSR1 and SIGALRM at `hz`; each pause is a wait for the
        // target's exit, so the storm ends the moment the test process does.
        const timespec gap{0, 1000000000L / hz};
        pollfd p{target_fd, POLLIN, 0};
        for (unsigned long n = 0;; ++n) {
            if (::syscall(SYS_pidfd_send_signal, target_fd, (n & 1) ? SIGALRM : SIGUSR1, nullptr, 0) != 0)
                ::_exit(0);
            if (::ppoll(&p, 1, &gap, nullptr) > 0) ::_exit(0); // the target exited
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
        std::fprintf(stderr, "signal storm: SIGUSR1/SIGALRM at %ld Hz, handlers without SA_RESTART\n",
                     storm_hz);
    }
    const char* fault_env = std::getenv("DROVER_TEST_FAULT");
    if (fault_env != nullptr && *fault_env == '\0') fault_env = nullptr;
    if (const char* env = fault_env) {
        std::string specs = env;
        for (std::size_t at = 0; at <= specs.size();) {
            std::size_t comma = specs.find(',', at);
            if (comma == std::string::npos) comma = specs.size();
            std::string one = specs.substr(at, comma - at);
            if (!drover::detail::inject_fault_spec(one.c_str())) {
                std::fprintf(stderr, "DROVER_TEST_FAULT: cannot parse '%s' (point:ERRNO[:times])\n",
                             one.c_str());
                return 2;
            }
            at = comma + 1;
        }
        std::fprintf(stderr, "faults armed for this run: %s\n", env);
    }
    // The suites' second run on the portable backend loads lib/portable's libdrover.so through
    // LD_LIBRARY_PATH (test/meson.build): make sure it did, rather than pass on the other one.
    if (const char* want = std::getenv("DROVER_TEST_BACKEND"); want != nullptr && *want != '\0') {
        if (to_string(drover::backend()) != want) {
            std::fprintf(stderr, "DROVER_TEST_BACKEND=%s, but the library loaded is the %s backend\n", want,
                         std::string(to_string(drover::backend())).c_str());
            return 2;
        }
        std::fprintf(stderr, "backend: %s\n", want);
    }
    doctest::Context ctx(argc, argv);
    int rc = ctx.run();
    if (g_skips.ran) print_skips(); // not after a query (--help, --list-test-cases ...)
    if (fault_env != nullptr) {     // proof that the faults were reached: a fault never hit fails the run
        using drover::detail::fault_point;
        unsigned total = 0;
        for (unsigned p = 0; p < static_cast<unsigned>(fault_point::count_); ++p)
            if (unsigned n = drover::detail::fault_hits(static_cast<fault_point>(p))) {
                std::fprintf(stderr, "fault %s injected %u times\n",
                             drover::detail::fault_point_name(static_cast<fault_point>(p)), n);
                total += n;
            }
        if (total == 0) {
            std::fprintf(stderr,
                         "DROVER_TEST_FAULT: no armed fault was ever reached: the run proved nothing\n");
            return rc != 0 ? rc : 3;
        }
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

void drover::test::note_skip(const std::string& reason) {
    MESSAGE("skipped: " << reason);
    for (auto& s : g_skips.skipped)
        if (s.first == g_skips.current) return; // once per case (a case with subcases runs again)
    g_skips.skipped.emplace_back(g_skips.current, reason);
}
