// drover-bench: drover measured against the physical floor and against what users pick
// instead, in one run, as ratios (see docs/performance.md). Contenders alternate (A B C A B C
// ...) so that a noisy neighbour hits them all alike; each benchmark reports the median, the
// spread (min and max) and the ratio of every contender to drover.
//
//   drover-bench [--quick] [--json FILE] [--plot DIR] [BENCH...]
//   BENCH: spawn-seq spawn-concurrent spawn-vs-rss spawn-vs-children run-overhead capture many-children
//          supervise supervise-peers
//   --drover PATH: the drover program supervise-peers and run-overhead use (default: the build's)
//   --services N,N...: supervise-peers' numbers of services (default 10,100,500; quick: 10,100)
//
// Peers (python3, node, go, tini) are used where installed; tools/dev/bench.sh installs them
// from Debian's packages first. A missing peer is reported as such, never silently dropped.
#include <fcntl.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/core.h>

#include "bench.hpp"
#include "bp2.hpp"
#include "peers.hpp"
#include "drover/drover.hpp"

extern char** environ;

namespace asio = boost::asio;
namespace fs = std::filesystem;
using clk = std::chrono::steady_clock;

namespace {

bool g_quick = false;

// ---- helpers --------------------------------------------------------------------------------------

std::string find_program(const std::string& name) {
    for (const char* dir : {"/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin"}) {
        std::string p = std::string(dir) + "/" + name;
        if (::access(p.c_str(), X_OK) == 0) return p;
    }
    return {};
}

std::string self_dir() {
    std::error_code ec;
    return fs::read_symlink("/proc/self/exe", ec).parent_path().string();
}

/// Runs argv (no shell) with stdout captured; returns stdout, or empty optional on failure.
std::optional<std::string> run_capture(const std::vector<std::string>& argv) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return std::nullopt;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    std::vector<char*> av;
    for (const auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));
    av.push_back(nullptr);
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, av[0], &fa, nullptr, av.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(p[1]);
    if (rc != 0) {
        ::close(p[0]);
        return std::nullopt;
    }
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(p[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    ::close(p[0]);
    int st = 0;
    ::waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return std::nullopt;
    return out;
}

using bench::bench_result;
using bench::contender;
using bench::stats;
using bench::summarize;

/// Alternates the contenders for `rounds` rounds (the order rotated every round).
bench_result alternate(std::string name, std::string unit, std::string what, std::vector<contender> cs,
                       int rounds, bool lower_is_better = true) {
    bench_result r{std::move(name), std::move(unit), std::move(what), lower_is_better, {}, {}, {}};
    std::vector<contender*> live;
    for (auto& c : cs) {
        if (!c.missing.empty())
            r.missing.emplace_back(c.name, c.missing);
        else {
            live.push_back(&c);
            r.samples.emplace_back(c.name, std::vector<double>{});
        }
    }
    for (int round = 0; round < rounds; ++round) {
        for (std::size_t k = 0; k < live.size(); ++k) {
            std::size_t i = (k + static_cast<std::size_t>(round)) % live.size();
            auto v = live[i]->sample();
            if (v) r.samples[i].second.push_back(*v);
        }
        fmt::print(stderr, ".");
    }
    fmt::print(stderr, "\n");
    return r;
}

using bench::cell;

std::string markdown(const bench_result& r) {
    if (!r.ratios) {
        std::string o = fmt::format("### {}\n\n{}\n\n", r.name, r.what);
        for (const auto& note : r.notes) o += note + "\n\n";
        for (const auto& [n, why] : r.missing) o += fmt::format("{}: not run: {}\n\n", n, why);
        return o;
    }
    std::string o = fmt::format("### {}\n\n{}\n\n| contender | median ({}) | min | max | samples | vs drover "
                                "|\n|---|---|---|---|---|---|\n",
                                r.name, r.what, r.unit);
    double base = 0;
    for (const auto& [n, v] : r.samples)
        if (n.rfind("drover", 0) == 0 && !v.empty()) {
            base = summarize(v).median;
            break;
        }
    for (const auto& [n, v] : r.samples) {
        auto s = summarize(v);
        std::string ratio = base > 0 && s.median > 0 ? fmt::format("{:.2f}x", s.median / base) : "-";
        o += fmt::format("| {} | {:.3f} | {:.3f} | {:.3f} | {} | {} |\n", cell(n), s.median, s.min, s.max,
                         v.size(), ratio);
    }
    for (const auto& [n, why] : r.missing)
        o += fmt::format("| {} | not run: {} | | | | |\n", cell(n), cell(why));
    for (const auto& note : r.notes) o += "\n" + note + "\n";
    return o + "\n";
}

// ---- spawn-seq ----------------------------------------------------------------------------------

/// drover: co_await spawn + async_wait, `n` times in a row; µs per spawn.
double drover_spawn_seq(const std::string& prog, int n, bool cgroup = true) {
    asio::io_context ctx;
    double us = 0;
    asio::co_spawn(
        ctx,
        [&]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            drover::command cmd(prog);
            if (!cgroup) cmd.cgroup(drover::cgroup_mode::off);
            auto t0 = clk::now();
            for (int i = 0; i < n; ++i) {
                drover::child c = drover::spawn(ex, cmd);
                co_await c.async_wait(asio::use_awaitable);
            }
            us = std::chrono::duration<double, std::micro>(clk::now() - t0).count() / n;
        },
        asio::detached);
    ctx.run();
    return us;
}

alignas(64) char g_floor_stack[64 * 1024];
struct floor_args {
    const char* path;
};
int floor_child(void* a) {
    const char* path = static_cast<floor_args*>(a)->path;
    char* const argv[] = {const_cast<char*>(path), nullptr};
    ::execve(path, argv, environ);
    ::_exit(127);
}

/// The floor: clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD) + execve + waitid(P_PIDFD); µs per spawn.
double floor_spawn_seq(const std::string& prog, int n) {
    floor_args a{prog.c_str()};
    auto t0 = clk::now();
    for (int i = 0; i < n; ++i) {
        int pidfd = -1;
        pid_t pid = ::clone(floor_child, g_floor_stack + sizeof g_floor_stack,
                            CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &a, &pidfd);
        if (pid < 0) return -1;
        siginfo_t si{};
        ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &si, WEXITED);
        ::close(pidfd);
    }
    return std::chrono::duration<double, std::micro>(clk::now() - t0).count() / n;
}

double posix_spawn_seq(const std::string& prog, int n) {
    char* const argv[] = {const_cast<char*>(prog.c_str()), nullptr};
    auto t0 = clk::now();
    for (int i = 0; i < n; ++i) {
        pid_t pid = -1;
        if (::posix_spawn(&pid, prog.c_str(), nullptr, nullptr, argv, environ) != 0) return -1;
        ::waitpid(pid, nullptr, 0);
    }
    return std::chrono::duration<double, std::micro>(clk::now() - t0).count() / n;
}

const char* k_python_seq = R"(
import asyncio, sys, time
async def main(n, prog):
    t0 = time.perf_counter()
    for _ in range(n):
        p = await asyncio.create_subprocess_exec(prog)
        await p.wait()
    print((time.perf_counter() - t0) / n * 1e6)
asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
)";

const char* k_node_seq = R"(
const { spawn } = require('child_process');
const n = parseInt(process.argv[1]), prog = process.argv[2];
(async () => {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await new Promise((res) => spawn(prog, [], { stdio: 'ignore' }).on('exit', res));
  console.log(Number(process.hrtime.bigint() - t0) / 1000 / n);
})();
)";

const char* k_go_seq = R"(package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func rssKiB() float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			v, _ := strconv.Atoi(strings.Fields(l)[1])
			return float64(v)
		}
	}
	return 0
}

func fds() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }

func switches() int {
	total := 0
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, t := range tasks {
		b, _ := os.ReadFile("/proc/self/task/" + t.Name() + "/status")
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "ctxt_switches") {
				v, _ := strconv.Atoi(strings.Fields(l)[1])
				total += v
			}
		}
	}
	return total
}

// many N IDLE_MS: hold N sleeping children with stdout/stderr pipes; one JSON line.
func many(n, idleMs int) {
	r0, f0 := rssKiB(), fds()
	t0 := time.Now()
	cmds := make([]*exec.Cmd, n)
	for i := range cmds {
		c := exec.Command("sleep", "1000")
		c.StdoutPipe()
		c.StderrPipe()
		if err := c.Start(); err != nil {
			panic(err)
		}
		cmds[i] = c
	}
	spawnMs := float64(time.Since(t0).Microseconds()) / 1000
	var wg sync.WaitGroup
	wg.Add(n)
	for _, c := range cmds {
		go func(c *exec.Cmd) { c.Wait(); wg.Done() }(c)
	}
	time.Sleep(10 * time.Millisecond)
	r1, f1 := rssKiB(), fds()
	s0 := switches()
	time.Sleep(time.Duration(idleMs) * time.Millisecond)
	s1 := switches() - 1
	if s1 < s0 {
		s1 = s0
	}
	t1 := time.Now()
	for _, c := range cmds {
		c.Process.Signal(syscall.SIGTERM)
	}
	wg.Wait()
	stopMs := float64(time.Since(t1).Microseconds()) / 1000
	fmt.Printf("{\"rss_kib_per_child\": %.2f, \"fds_per_child\": %.2f, \"wakeups_per_s\": %.2f, \"spawn_ms\": %.1f, \"stop_ms\": %.1f, \"stopped\": %d}\n",
		(r1-r0)/float64(n), float64(f1-f0)/float64(n), float64(s1-s0)*1000/float64(idleMs), spawnMs, stopMs, n)
}

func main() {
	if os.Args[1] == "many" {
		n, _ := strconv.Atoi(os.Args[2])
		idle, _ := strconv.Atoi(os.Args[3])
		many(n, idle)
		return
	}
	n, _ := strconv.Atoi(os.Args[1])
	width := 1
	if len(os.Args) > 3 {
		width, _ = strconv.Atoi(os.Args[3])
	}
	sem := make(chan struct{}, width)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := exec.Command(os.Args[2]).Run(); err != nil {
				panic(err)
			}
			<-sem
		}()
	}
	wg.Wait()
	fmt.Println(float64(time.Since(t0).Microseconds()) / float64(n))
}
)";

/// A peer that prints µs per spawn; empty optional if it failed.
std::optional<double> peer_number(const std::vector<std::string>& argv) {
    auto out = run_capture(argv);
    if (!out) return std::nullopt;
    try {
        return std::stod(*out);
    } catch (...) {
        return std::nullopt;
    }
}

std::string python_path() {
    std::string p = find_program("python3");
    return p;
}

/// Builds the Go peer once (cached in /tmp); empty with `why` when go is missing or fails.
std::string go_peer(std::string& why) {
    std::string go = find_program("go");
    if (go.empty()) go = fs::exists("/usr/lib/go/bin/go") ? "/usr/lib/go/bin/go" : "";
    if (go.empty()) {
        why = "go is not installed (apt-get install golang-go; tools/dev/bench.sh does)";
        return {};
    }
    fs::path dir = "/tmp/drover-bench-go";
    fs::create_directories(dir);
    fs::path bin = dir / "spawnseq-v2"; // bump when k_go_seq changes
    if (!fs::exists(bin)) {
        std::ofstream(dir / "main.go") << k_go_seq;
        // An argv vector, no shell: env sets the Go build's cache and mode.
        const std::vector<std::string> build = {"/usr/bin/env",    "GOCACHE=" + (dir / "cache").string(),
                                                "GO111MODULE=off", go,
                                                "build",           "-o",
                                                bin.string(),      (dir / "main.go").string()};
        if (!run_capture(build)) {
            why = "go build failed";
            return {};
        }
    }
    return bin.string();
}

bench_result spawn_seq(const std::string& prog, const std::string& label) {
    const int n = g_quick ? 200 : 1000;
    const int rounds = g_quick ? 5 : 11;
    std::vector<contender> cs;
    cs.push_back({"drover (co_await spawn + async_wait)",
                  [&] { return std::optional<double>(drover_spawn_seq(prog, n)); },
                  {}});
    cs.push_back({"drover, cgroup(off): no leaf cgroup per child",
                  [&] { return std::optional<double>(drover_spawn_seq(prog, n, false)); },
                  {}});
    cs.push_back({"floor: clone(VM|VFORK|PIDFD) + waitid",
                  [&] { return std::optional<double>(floor_spawn_seq(prog, n)); },
                  {}});
    cs.push_back(
        {"glibc posix_spawn + waitpid", [&] { return std::optional<double>(posix_spawn_seq(prog, n)); }, {}});
    cs.push_back({"Boost.Process v2 1.81 (default launcher) + async_wait",
                  [&] {
                      double v = bench::bp2_spawn_seq(prog, n);
                      return v > 0 ? std::optional<double>(v) : std::nullopt;
                  },
                  {}});
    std::string py = python_path();
    cs.push_back({"Python asyncio",
                  [&, py] {
                      return peer_number({py, "-c", k_python_seq, std::to_string(n), prog});
                  },
                  py.empty() ? "python3 is not installed" : ""});
    std::string node = find_program("node");
    cs.push_back({"Node child_process",
                  [&, node] {
                      return peer_number({node, "-e", k_node_seq, std::to_string(n), prog});
                  },
                  node.empty() ? "node is not installed" : ""});
    std::string why;
    std::string go = go_peer(why);
    cs.push_back({"Go os/exec", [&, go] { return peer_number({go, std::to_string(n), prog}); }, why});
    auto r =
        alternate("spawn-seq: " + label, "µs per spawn",
                  fmt::format("{} sequential spawn+wait of `{}`, per sample; {} samples each, alternated.", n,
                              prog, rounds),
                  std::move(cs), rounds);
    return r;
}

// ---- spawn-concurrent ---------------------------------------------------------------------------

/// drover: `width` coroutines, each spawning and awaiting until `n` spawns are done; µs per spawn.
/// With `cgroup` false, the children run without a leaf cgroup (cgroup_mode::off).
double drover_spawn_concurrent(const std::string& prog, int n, int width, bool cgroup = true) {
    asio::io_context ctx;
    int started = 0;
    auto t0 = clk::now();
    auto worker = [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        drover::command cmd(prog);
        if (!cgroup) cmd.cgroup(drover::cgroup_mode::off);
        while (started < n) {
            ++started;
            drover::child c = drover::spawn(ex, cmd);
            co_await c.async_wait(asio::use_awaitable);
        }
    };
    for (int i = 0; i < width; ++i) asio::co_spawn(ctx, worker(), asio::detached);
    ctx.run();
    return std::chrono::duration<double, std::micro>(clk::now() - t0).count() / n;
}

/// The floor with `width` in flight: clone(VM|VFORK) + reap whichever child exits (waitid P_ALL).
double floor_spawn_concurrent(const std::string& prog, int n, int width) {
    floor_args a{prog.c_str()};
    int running = 0, started = 0;
    auto t0 = clk::now();
    while (started < n || running > 0) {
        while (running < width && started < n) {
            if (::clone(floor_child, g_floor_stack + sizeof g_floor_stack, CLONE_VM | CLONE_VFORK | SIGCHLD,
                        &a) < 0)
                return -1;
            ++running;
            ++started;
        }
        siginfo_t si{};
        if (::waitid(P_ALL, 0, &si, WEXITED) == 0) --running;
    }
    return std::chrono::duration<double, std::micro>(clk::now() - t0).count() / n;
}

const char* k_python_conc = R"(
import asyncio, sys, time
async def main(n, prog, width):
    sem = asyncio.Semaphore(width)
    async def one():
        async with sem:
            p = await asyncio.create_subprocess_exec(prog)
            await p.wait()
    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    print((time.perf_counter() - t0) / n * 1e6)
asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
)";

const char* k_node_conc = R"(
const { spawn } = require('child_process');
const n = parseInt(process.argv[1]), prog = process.argv[2], width = parseInt(process.argv[3]);
let started = 0;
const one = () => new Promise((res) => spawn(prog, [], { stdio: 'ignore' }).on('exit', res));
const worker = async () => { while (started < n) { started++; await one(); } };
(async () => {
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: width }, worker));
  console.log(Number(process.hrtime.bigint() - t0) / 1000 / n);
})();
)";

bench_result spawn_concurrent(const std::string& prog) {
    const int n = g_quick ? 1000 : 5000;
    const int width = 64;
    const int rounds = g_quick ? 3 : 5;
    std::vector<contender> cs;
    cs.push_back({"drover (64 coroutines)",
                  [&] { return std::optional<double>(drover_spawn_concurrent(prog, n, width)); },
                  {}});
    cs.push_back({"drover, cgroup(off) (64 coroutines)",
                  [&] { return std::optional<double>(drover_spawn_concurrent(prog, n, width, false)); },
                  {}});
    cs.push_back({"floor: clone(VM|VFORK) + waitid(P_ALL)",
                  [&] {
                      double v = floor_spawn_concurrent(prog, n, width);
                      return v > 0 ? std::optional<double>(v) : std::nullopt;
                  },
                  {}});
    cs.push_back({"glibc posix_spawn + waitpid(-1)",
                  [&] {
                      char* const argv[] = {const_cast<char*>(prog.c_str()), nullptr};
                      int running = 0, started = 0;
                      auto t0 = clk::now();
                      while (started < n || running > 0) {
                          while (running < width && started < n) {
                              pid_t pid = -1;
                              if (::posix_spawn(&pid, prog.c_str(), nullptr, nullptr, argv, environ) != 0)
                                  return std::optional<double>();
                              ++running;
                              ++started;
                          }
                          if (::waitpid(-1, nullptr, 0) > 0) --running;
                      }
                      return std::optional<double>(
                          std::chrono::duration<double, std::micro>(clk::now() - t0).count() / n);
                  },
                  {}});
    cs.push_back({"Boost.Process v2 (64 coroutines)",
                  [&] {
                      double v = bench::bp2_spawn_concurrent(prog, n, width);
                      return v > 0 ? std::optional<double>(v) : std::nullopt;
                  },
                  {}});
    std::string gowhy;
    std::string go = go_peer(gowhy);
    cs.push_back({"Go os/exec (64 goroutines)",
                  [&, go] {
                      return peer_number({go, std::to_string(n), prog, std::to_string(width)});
                  },
                  gowhy});
    std::string py = python_path(), node = find_program("node");
    cs.push_back(
        {"Python asyncio (Semaphore(64))",
         [&, py] {
             return peer_number({py, "-c", k_python_conc, std::to_string(n), prog, std::to_string(width)});
         },
         py.empty() ? "python3 is not installed" : ""});
    cs.push_back(
        {"Node child_process (64 chains)",
         [&, node] {
             return peer_number({node, "-e", k_node_conc, std::to_string(n), prog, std::to_string(width)});
         },
         node.empty() ? "node is not installed" : ""});
    return alternate("spawn-concurrent", "µs per spawn (total time / spawns)",
                     fmt::format("{} spawns of `{}`, {} in flight.", n, prog, width), std::move(cs), rounds);
}

// ---- spawn-vs-rss, spawn-vs-children -------------------------------------------------------------

/// A touched heap of `bytes` for the duration of one sample (fork copies its page tables).
struct ballast {
    std::vector<char> heap;
    explicit ballast(std::size_t bytes) : heap(bytes) {
        for (std::size_t i = 0; i < heap.size(); i += 4096) heap[i] = static_cast<char>(i);
    }
};

bench_result spawn_vs_rss(const std::string& prog) {
    const int n = g_quick ? 100 : 400;
    const int rounds = g_quick ? 3 : 7;
    const std::size_t gib = std::size_t{1} << 30;
    std::vector<contender> cs;
    cs.push_back({"drover, no heap", [&] { return std::optional<double>(drover_spawn_seq(prog, n)); }, {}});
    cs.push_back({"drover, 1 GiB touched heap",
                  [&] {
                      ballast b(gib);
                      return std::optional<double>(drover_spawn_seq(prog, n));
                  },
                  {}});
    cs.push_back({"Boost.Process v2, no heap",
                  [&] {
                      double v = bench::bp2_spawn_seq(prog, n / 4);
                      return v > 0 ? std::optional<double>(v) : std::nullopt;
                  },
                  {}});
    cs.push_back({"Boost.Process v2, 1 GiB touched heap",
                  [&] {
                      ballast b(gib);
                      double v = bench::bp2_spawn_seq(prog, n / 4);
                      return v > 0 ? std::optional<double>(v) : std::nullopt;
                  },
                  {}});
    auto r = alternate(
        "spawn-vs-rss", "µs per spawn",
        fmt::format("Sequential spawn+wait of `{}` with and without a 1 GiB touched heap in the parent "
                    "({} spawns per sample for drover, {} for Boost.Process v2).",
                    prog, n, n / 4),
        std::move(cs), rounds);
    auto med = [&](std::size_t i) { return summarize(r.samples.at(i).second).median; };
    if (r.samples.size() == 4 && med(0) > 0 && med(2) > 0)
        r.notes.push_back(
            fmt::format("Heap ratio (1 GiB / none): drover {:.2f}x (target < 1.2), Boost.Process v2 {:.2f}x.",
                        med(1) / med(0), med(3) / med(2)));
    return r;
}

/// drover spawn-seq while `held` idle children (with stdout/stderr pipes) live in the same io_context.
double drover_spawn_with_children(const std::string& prog, int n, int held) {
    asio::io_context ctx;
    std::vector<drover::child> idle;
    for (int i = 0; i < held; ++i) {
        idle.push_back(drover::spawn(ctx, drover::command("sleep", {"1000"})
                                              .std_out(drover::stdio::pipe())
                                              .std_err(drover::stdio::pipe())));
        idle.back().async_wait([](drover::error_code, drover::exit_status) {});
    }
    double us = 0;
    asio::co_spawn(
        ctx,
        [&]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            drover::command cmd(prog);
            auto t0 = clk::now();
            for (int i = 0; i < n; ++i) {
                drover::child c = drover::spawn(ex, cmd);
                co_await c.async_wait(asio::use_awaitable);
            }
            us = std::chrono::duration<double, std::micro>(clk::now() - t0).count() / n;
            for (auto& k : idle) k.async_kill([](drover::error_code, drover::exit_status) {});
        },
        asio::detached);
    ctx.run();
    return us;
}

bench_result spawn_vs_children(const std::string& prog) {
    const int n = g_quick ? 100 : 400;
    const int held = g_quick ? 300 : 1000;
    const int rounds = g_quick ? 3 : 7;
    struct rlimit nofile {};
    ::getrlimit(RLIMIT_NOFILE, &nofile);
    if (nofile.rlim_cur < static_cast<rlim_t>(held * 4 + 64)) {
        nofile.rlim_cur = std::min<rlim_t>(nofile.rlim_max, static_cast<rlim_t>(held * 4 + 64));
        ::setrlimit(RLIMIT_NOFILE, &nofile);
    }
    std::vector<contender> cs;
    cs.push_back({"drover, no other children",
                  [&] { return std::optional<double>(drover_spawn_with_children(prog, n, 0)); },
                  {}});
    cs.push_back({fmt::format("drover, {} idle children with pipes", held),
                  [&] { return std::optional<double>(drover_spawn_with_children(prog, n, held)); },
                  {}});
    cs.push_back({fmt::format("floor, with {} descriptors open", held * 4),
                  [&] {
                      // Every clone without CLONE_FILES copies the descriptor table, and exec then
                      // closes the CLOEXEC ones: a cost in open descriptors that no launcher avoids.
                      std::vector<int> fds;
                      for (int i = 0; i < held * 2; ++i) {
                          int p[2];
                          if (::pipe2(p, O_CLOEXEC) != 0) break;
                          fds.push_back(p[0]);
                          fds.push_back(p[1]);
                      }
                      double v = floor_spawn_seq(prog, n);
                      for (int fd : fds) ::close(fd);
                      return std::optional<double>(v);
                  },
                  {}});
    cs.push_back(
        {"floor, no descriptors", [&] { return std::optional<double>(floor_spawn_seq(prog, n)); }, {}});
    cs.push_back({"Boost.Process v2, no registered fds",
                  [&] {
                      double v = bench::bp2_spawn_seq(prog, n / 4, 0);
                      return v > 0 ? std::optional<double>(v) : std::nullopt;
                  },
                  {}});
    cs.push_back({fmt::format("Boost.Process v2, {} registered fds", held * 2),
                  [&] {
                      double v = bench::bp2_spawn_seq(prog, n / 4, held * 2);
                      return v > 0 ? std::optional<double>(v) : std::nullopt;
                  },
                  {}});
    auto r = alternate(
        "spawn-vs-children", "µs per spawn",
        fmt::format("Sequential spawn+wait of `{}` while the io_context holds {} idle children with two "
                    "pipes each (for Boost.Process v2: as many registered pipe descriptors), vs nothing.",
                    prog, held),
        std::move(cs), rounds);
    auto med = [&](std::size_t i) { return summarize(r.samples.at(i).second).median; };
    if (r.samples.size() == 6 && med(0) > 0 && med(3) > 0 && med(4) > 0)
        r.notes.push_back(
            fmt::format("Ratio (held / none): drover {:.2f}x (target < 1.2), the floor with as many open "
                        "descriptors {:.2f}x, Boost.Process v2 {:.2f}x.",
                        med(1) / med(0), med(2) / med(3), med(5) / med(4)));
    return r;
}

// ---- run-overhead -------------------------------------------------------------------------------

/// Wall time of running argv to completion, `n` times; ms per run.
std::optional<double> whole_process(const std::vector<std::string>& argv, int n) {
    std::vector<char*> av;
    for (const auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));
    av.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    auto t0 = clk::now();
    for (int i = 0; i < n; ++i) {
        pid_t pid = -1;
        if (::posix_spawn(&pid, av[0], &fa, nullptr, av.data(), environ) != 0) return std::nullopt;
        int st = 0;
        ::waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return std::nullopt;
    }
    posix_spawn_file_actions_destroy(&fa);
    return std::chrono::duration<double, std::milli>(clk::now() - t0).count() / n;
}

bench_result run_overhead(const std::string& drover_bin) {
    const int n = g_quick ? 30 : 100;
    const int rounds = g_quick ? 5 : 11;
    std::string tr = find_program("true"), to = find_program("timeout"), tini = find_program("tini");
    std::vector<contender> cs;
    cs.push_back({"drover run -- /bin/true",
                  [=] {
                      return whole_process({drover_bin, "run", "--", tr}, n);
                  },
                  {}});
    cs.push_back({"timeout 10 /bin/true",
                  [=] {
                      return whole_process({to, "10", tr}, n);
                  },
                  to.empty() ? "no timeout" : ""});
    cs.push_back(
        {"tini -s -- /bin/true",
         [=] {
             return whole_process({tini, "-s", "--", tr}, n);
         },
         tini.empty() ? "tini is not installed (apt-get install tini; tools/dev/bench.sh does)" : ""});
    cs.push_back({"/bin/true alone", [=] { return whole_process({tr}, n); }, {}});
    return alternate(
        "run-overhead", "ms per run",
        fmt::format("Whole-process wall time of one command run to completion, {} runs per sample.", n),
        std::move(cs), rounds);
}

// ---- capture ------------------------------------------------------------------------------------

std::optional<double> drover_capture(const std::string& head, std::uint64_t bytes) {
    asio::io_context ctx;
    double gbps = 0;
    bool ok = false;
    asio::co_spawn(
        ctx,
        [&]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            drover::run_options o;
            o.max_output = 1 << 20;
            drover::command cmd(head, {"-c", std::to_string(bytes), "/dev/zero"});
            auto t0 = clk::now();
            auto r = co_await drover::async_run(ex, cmd, o);
            double s = std::chrono::duration<double>(clk::now() - t0).count();
            ok = r.out.total_bytes == bytes;
            gbps = static_cast<double>(bytes) / s / 1e9;
        },
        asio::detached);
    ctx.run();
    if (!ok) return std::nullopt;
    return gbps;
}

std::optional<double> timed_gbps(const std::vector<std::string>& argv, std::uint64_t bytes) {
    auto t0 = clk::now();
    if (!run_capture(argv)) return std::nullopt;
    return static_cast<double>(bytes) / std::chrono::duration<double>(clk::now() - t0).count() / 1e9;
}

const char* k_python_capture = R"(
import asyncio, sys
async def main(n, head):
    p = await asyncio.create_subprocess_exec(head, '-c', str(n), '/dev/zero', stdout=asyncio.subprocess.PIPE)
    total = 0
    while True:
        b = await p.stdout.read(1 << 18)
        if not b: break
        total += len(b)
    await p.wait()
    assert total == n
asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
)";

const char* k_node_capture = R"(
const { spawn } = require('child_process');
const n = parseInt(process.argv[1]);
let total = 0;
const p = spawn(process.argv[2], ['-c', String(n), '/dev/zero']);
p.stdout.on('data', (b) => { total += b.length; });
p.on('close', () => { if (total !== n) process.exit(1); });
)";

bench_result capture() {
    const std::uint64_t bytes = g_quick ? (512ULL << 20) : (2ULL << 30);
    const int rounds = g_quick ? 3 : 7;
    std::string head = find_program("head"), sh = find_program("sh"), py = python_path(),
                node = find_program("node");
    std::string pipeline = fmt::format("{} -c {} /dev/zero | cat >/dev/null", head, bytes);
    std::vector<contender> cs;
    cs.push_back({"drover async_run (1 MiB kept)", [=] { return drover_capture(head, bytes); }, {}});
    cs.push_back({"head | cat >/dev/null", [=] { return timed_gbps({sh, "-c", pipeline}, bytes); }, {}});
    cs.push_back({"Python asyncio",
                  [=] {
                      return timed_gbps({py, "-c", k_python_capture, std::to_string(bytes), head}, bytes);
                  },
                  py.empty() ? "python3 is not installed" : ""});
    cs.push_back({"Node child_process",
                  [=] {
                      return timed_gbps({node, "-e", k_node_capture, std::to_string(bytes), head}, bytes);
                  },
                  node.empty() ? "node is not installed" : ""});
    return alternate(
        "capture", "GB/s (higher is better)",
        fmt::format(
            "A child writing {} MiB to stdout, read to the end (the ratio column is contender / drover).",
            bytes >> 20),
        std::move(cs), rounds, false);
}

// ---- many-children ------------------------------------------------------------------------------

std::uint64_t status_kib(const char* key) {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(key, 0) == 0) return std::strtoull(line.c_str() + std::strlen(key), nullptr, 10);
    return 0;
}

int open_fds() {
    int n = 0;
    for ([[maybe_unused]] auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
    return n;
}

/// Context switches of every thread of this process (wake-ups).
std::uint64_t switches() {
    std::uint64_t total = 0;
    for (auto& t : fs::directory_iterator("/proc/self/task")) {
        std::ifstream in(t.path() / "status");
        std::string line;
        while (std::getline(in, line))
            if (line.rfind("voluntary_ctxt_switches:", 0) == 0 ||
                line.rfind("nonvoluntary_ctxt_switches:", 0) == 0)
                total += std::strtoull(line.c_str() + line.find(':') + 1, nullptr, 10);
    }
    return total;
}

/// `drover-bench __many N IDLE_MS`: hold N children (stdout and stderr on pipes) in this fresh
/// process and print one JSON line: memory (RSS growth) and descriptors per child, wake-ups per
/// second while they sleep, the time to spawn them all and to stop them all.
int many_main(int n, int idle_ms) {
    struct rlimit nofile {};
    ::getrlimit(RLIMIT_NOFILE, &nofile);
    // Six per child: pidfd, two pipes, the leaf's directory, its inotify instance, and room for
    // the cgroup files a stop opens (with fewer, a stop can wait forever: see docs/performance.md).
    nofile.rlim_cur = std::min<rlim_t>(nofile.rlim_max, static_cast<rlim_t>(n * 6 + 64));
    ::setrlimit(RLIMIT_NOFILE, &nofile);
    asio::io_context ctx;
    { // warm up: the reactor, the spawn path
        drover::child w = drover::spawn(ctx, drover::command("true"));
        w.async_wait([](drover::error_code, drover::exit_status) {});
        ctx.run();
        ctx.restart();
    }
    ctx.run();
    ctx.restart();
    const auto rss0 = status_kib("VmRSS:");
    const auto heap0 = ::mallinfo2().uordblks;
    const int fds0 = open_fds();
    std::vector<drover::child> kids;
    kids.reserve(static_cast<std::size_t>(n));
    auto t0 = clk::now();
    for (int i = 0; i < n; ++i)
        kids.push_back(drover::spawn(ctx, drover::command("sleep", {"1000"})
                                              .std_out(drover::stdio::pipe())
                                              .std_err(drover::stdio::pipe())));
    const double spawn_ms = std::chrono::duration<double, std::milli>(clk::now() - t0).count();
    for (auto& k : kids) k.async_wait([](drover::error_code, drover::exit_status) {});
    ctx.poll();
    const auto rss1 = status_kib("VmRSS:");
    const auto heap1 = ::mallinfo2().uordblks;
    const int fds1 = open_fds();
    const auto sw0 = switches();
    ctx.run_for(std::chrono::milliseconds(idle_ms));
    const auto sw1 = std::max(switches(), sw0 + 1) - 1; // one switch is the timer ending the window
    ctx.restart();
    int stopped = 0;
    auto t1 = clk::now();
    for (auto& k : kids) k.async_stop([&](drover::error_code, drover::exit_status) { ++stopped; });
    // Bounded: a stop that cannot finish is reported (as fewer stopped), never waited for forever.
    const auto give_up = clk::now() + std::chrono::seconds(60);
    while (stopped < n && clk::now() < give_up && ctx.run_one_for(std::chrono::seconds(5)) > 0) {
    }

    const double stop_ms = std::chrono::duration<double, std::milli>(clk::now() - t1).count();
    fmt::print("{{\"rss_kib_per_child\": {:.2f}, \"heap_kib_per_child\": {:.2f}, \"fds_per_child\": {:.2f}, "
               "\"wakeups_per_s\": {:.2f}, \"spawn_ms\": {:.1f}, \"stop_ms\": {:.1f}, \"stopped\": {}}}\n",
               static_cast<double>(rss1 - rss0) / n, static_cast<double>(heap1 - heap0) / 1024.0 / n,
               static_cast<double>(fds1 - fds0) / n, static_cast<double>(sw1 - sw0) * 1000.0 / idle_ms,
               spawn_ms, stop_ms, stopped);
    return stopped == n ? 0 : 1;
}

const char* k_python_many = R"(
import asyncio, json, os, sys, time
def rss():
    for l in open('/proc/self/status'):
        if l.startswith('VmRSS:'): return int(l.split()[1])
def switches():
    t = 0
    for task in os.listdir('/proc/self/task'):
        for l in open('/proc/self/task/%s/status' % task):
            if 'ctxt_switches' in l: t += int(l.split()[1])
    return t
async def main(n, idle_ms):
    r0, f0 = rss(), len(os.listdir('/proc/self/fd'))
    t0 = time.perf_counter()
    ps = [await asyncio.create_subprocess_exec('sleep', '1000', stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) for _ in range(n)]
    spawn_ms = (time.perf_counter() - t0) * 1000
    waits = [asyncio.ensure_future(p.wait()) for p in ps]
    await asyncio.sleep(0)
    r1, f1 = rss(), len(os.listdir('/proc/self/fd'))
    s0 = switches()
    await asyncio.sleep(idle_ms / 1000)
    s1 = max(switches(), s0 + 1) - 1
    t1 = time.perf_counter()
    for p in ps: p.terminate()
    await asyncio.gather(*waits)
    stop_ms = (time.perf_counter() - t1) * 1000
    print(json.dumps({'rss_kib_per_child': (r1 - r0) / n, 'fds_per_child': (f1 - f0) / n,
                      'wakeups_per_s': (s1 - s0) * 1000 / idle_ms, 'spawn_ms': spawn_ms, 'stop_ms': stop_ms, 'stopped': n}))
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
)";

bench_result many_children(const std::string& self) {
    const int n = g_quick ? 300 : 1000;
    const int idle_ms = g_quick ? 1000 : 3000;
    bench_result r{
        "many-children",
        "value",
        fmt::format("{} `sleep 1000` children with stdout and stderr on pipes, held by one process of each "
                    "contender (a fresh process each, so memory growth is comparable); idle window {} ms.",
                    n, idle_ms),
        true,
        {},
        {},
        {}};
    r.ratios = false;
    std::string py = python_path(), why;
    std::string go = go_peer(why);
    struct peer {
        std::string name;
        std::vector<std::string> argv;
        std::string missing;
    };
    std::vector<peer> peers = {
        {"drover", {self, "__many", std::to_string(n), std::to_string(idle_ms)}, {}},
        {"Python asyncio",
         {py, "-c", k_python_many, std::to_string(n), std::to_string(idle_ms)},
         py.empty() ? "python3 is not installed" : ""},
        {"Go os/exec", {go, "many", std::to_string(n), std::to_string(idle_ms)}, why},
    };
    std::string table = "| contender | memory per child (RSS growth) | descriptors per child | wake-ups/s "
                        "idle | spawn all | stop all |\n"
                        "|---|---|---|---|---|---|\n";
    for (const auto& p : peers) {
        if (!p.missing.empty()) {
            r.missing.emplace_back(p.name, p.missing);
            continue;
        }
        auto out = run_capture(p.argv);
        if (!out) {
            r.missing.emplace_back(p.name, "the run failed");
            continue;
        }
        try {
            auto j = boost::json::parse(*out).as_object();
            auto num = [&](const char* k) {
                return j.at(k).is_double() ? j.at(k).as_double()
                                           : static_cast<double>(j.at(k).to_number<double>());
            };
            table += fmt::format("| {} | {:.1f} KiB | {:.1f} | {:.1f} | {:.0f} ms | {:.0f} ms |\n", p.name,
                                 num("rss_kib_per_child"), num("fds_per_child"), num("wakeups_per_s"),
                                 num("spawn_ms"), num("stop_ms"));
            for (const char* k :
                 {"rss_kib_per_child", "fds_per_child", "wakeups_per_s", "spawn_ms", "stop_ms"})
                r.samples.emplace_back(p.name + " " + k, std::vector<double>{num(k)});
            if (j.contains("heap_kib_per_child"))
                r.notes.push_back(fmt::format(
                    "drover's malloc heap grows {:.1f} KiB per child (the rest of its RSS growth is "
                    "kernel-side and page granularity).",
                    num("heap_kib_per_child")));
        } catch (const std::exception& e) {
            r.missing.emplace_back(p.name, std::string("unreadable report: ") + e.what());
        }
    }
    r.notes.insert(r.notes.begin(),
                   table + "\nTargets: under 16 KiB of drover memory per child, zero wake-ups while idle, "
                           "stopping 1,000 children in under 1 s.");
    return r;
}

// ---- supervise ----------------------------------------------------------------------------------

/// The supervisor (supervisor.hpp) alone, in this process: `n` services of `sleep` started by
/// async_run (time to all running; RSS and heap growth per service; wake-ups while idle), then the
/// restart latency after kill -9 (from the kill to the new process running, seen through the event
/// stream), against one spawn + wait of the same program (the "plus one spawn" of the target).
bench_result supervise() {
    const int n = g_quick ? 200 : 500;
    const int kills = g_quick ? 10 : 30;
    const std::string sleep_bin = find_program("sleep");
    rlimit nofile{};
    ::getrlimit(RLIMIT_NOFILE, &nofile);
    nofile.rlim_cur = std::min<rlim_t>(nofile.rlim_max, static_cast<rlim_t>(n * 8 + 64));
    ::setrlimit(RLIMIT_NOFILE, &nofile);
    bench_result r{"supervise",
                   "value",
                   fmt::format("{} services (`sleep 100000`, output captured) in one drover::supervisor; "
                               "restart latency over {} kill -9.",
                               n, kills),
                   true,
                   {},
                   {},
                   {}};
    r.ratios = false;
    asio::io_context ctx;
    auto pump_until = [&](const std::function<bool()>& pred, clk::duration limit) {
        const auto end = clk::now() + limit;
        while (!pred() && clk::now() < end) {
            ctx.restart();
            ctx.run_for(std::chrono::milliseconds(1));
        }
        return pred();
    };
    { // warm up: the reactor, the spawn path
        drover::child w = drover::spawn(ctx, drover::command("true"));
        w.async_wait([](drover::error_code, drover::exit_status) {});
        ctx.run();
        ctx.restart();
    }
    double spawn_us = 0;
    { // one spawn + wait of a short-lived program, the floor of any restart
        std::vector<double> v;
        for (int i = 0; i < 20; ++i) {
            auto t = clk::now();
            drover::child c = drover::spawn(ctx, drover::command(sleep_bin, {"0"}));
            bool done = false;
            clk::time_point end{};
            c.async_wait([&](drover::error_code, drover::exit_status) {
                done = true;
                end = clk::now(); // not after the pump's slice
            });
            pump_until([&] { return done; }, std::chrono::seconds(5));
            v.push_back(std::chrono::duration<double, std::micro>(end - t).count());
        }
        spawn_us = summarize(v).median;
    }
    const auto rss0 = status_kib("VmRSS:");
    const auto heap0 = ::mallinfo2().uordblks;
    const int fds0 = open_fds();
    std::optional<drover::supervisor> sup;
    sup.emplace(ctx.get_executor());
    for (int i = 0; i < n; ++i) {
        drover::service s;
        s.name = "s" + std::to_string(i);
        s.command = drover::command(sleep_bin, {"100000"});
        sup->add(std::move(s));
    }
    auto events = sup->subscribe(1 << 20);
    int running = 0;
    std::function<void()> read;
    clk::time_point last_running{};
    read = [&] {
        events.next([&](drover::error_code ec, drover::supervisor_event ev) {
            if (ec) return;
            if (ev.type == drover::supervisor_event::kind::state &&
                ev.state == drover::service_state::running) {
                ++running;
                last_running = clk::now();
            }
            read();
        });
    };
    read();
    auto t0 = clk::now();
    sup->async_run([](drover::error_code) {});
    bool all = pump_until([&] { return running >= n; }, std::chrono::seconds(120));
    const double start_ms = std::chrono::duration<double, std::milli>(last_running - t0).count();
    const auto rss1 = status_kib("VmRSS:");
    const auto heap1 = ::mallinfo2().uordblks;
    const int fds1 = open_fds();
    const auto sw0 = switches();
    ctx.restart();
    ctx.run_for(std::chrono::seconds(g_quick ? 1 : 3));
    const auto sw1 = switches();
    // Restart latency: kill -9 one service's process, until its new process is running.
    std::vector<double> lat;
    for (int k = 0; k < kills && all; ++k) {
        auto name = "s" + std::to_string(k % n);
        auto pid = sup->status(name)->pid;
        if (!pid) break;
        const int before = running;
        auto t = clk::now();
        ::kill(*pid, SIGKILL);
        if (!pump_until([&] { return running > before; }, std::chrono::seconds(10))) break;
        lat.push_back(std::chrono::duration<double, std::micro>(last_running - t).count());
    }
    bool down = false;
    auto t1 = clk::now();
    sup->async_shutdown(std::chrono::seconds(30), [&](drover::error_code) { down = true; });
    pump_until([&] { return down; }, std::chrono::seconds(60));
    const double stop_ms = std::chrono::duration<double, std::milli>(clk::now() - t1).count();
    events.close();
    sup.reset();
    ctx.restart();
    ctx.run_for(std::chrono::milliseconds(100));
    if (!all) {
        r.missing.emplace_back("drover supervisor",
                               fmt::format("only {} of {} services came up", running, n));
        return r;
    }
    auto l = summarize(lat);
    const double rss_per = static_cast<double>(rss1 - rss0) / n;
    const double heap_per = static_cast<double>(heap1 - heap0) / 1024.0 / n;
    r.samples.emplace_back("restart latency median (us)", std::vector<double>{l.median});
    r.samples.emplace_back("one spawn + wait (us)", std::vector<double>{spawn_us});
    r.samples.emplace_back("start all (ms)", std::vector<double>{start_ms});
    r.samples.emplace_back("heap KiB per service", std::vector<double>{heap_per});
    r.samples.emplace_back("RSS KiB per service", std::vector<double>{rss_per});
    r.samples.emplace_back("wake-ups per s idle",
                           std::vector<double>{static_cast<double>(sw1 - sw0) / (g_quick ? 1 : 3)});
    r.notes.push_back(
        fmt::format("| measure | drover | target |\n|---|---|---|\n"
                    "| restart after kill -9 (kill to new process running) | median {:.0f} us, min {:.0f}, "
                    "max {:.0f} | under 5 ms plus one spawn ({:.0f} us here) |\n"
                    "| {} services started (async_run to all running) | {:.0f} ms | 500 in under 1 s |\n"
                    "| memory per service | heap {:.1f} KiB, RSS {:.1f} KiB, {:.1f} fds | under 16 KiB |\n"
                    "| wake-ups while idle | {} in {} s | none |\n"
                    "| shutdown of all | {:.0f} ms | |",
                    l.median, l.min, l.max, spawn_us, n, start_ms, heap_per, rss_per,
                    static_cast<double>(fds1 - fds0) / n, sw1 - sw0, g_quick ? 1 : 3, stop_ms));
    return r;
}

// ---- output -------------------------------------------------------------------------------------

/// One PNG per benchmark with contenders: median as a bar, min-max as an error bar (gnuplot).
void plot(const bench_result& r, const std::string& dir) {
    if (!r.ratios || r.samples.empty()) return;
    std::string slug;
    for (char c : r.name) slug += std::isalnum(static_cast<unsigned char>(c)) ? c : '-';
    while (slug.find("--") != std::string::npos) slug.erase(slug.find("--"), 1);
    const fs::path dat = fs::path(dir) / (slug + ".dat"), png = fs::path(dir) / (slug + ".png");
    {
        std::ofstream d(dat);
        for (const auto& [n, v] : r.samples) {
            auto st = summarize(v);
            std::string label = n.substr(0, std::min(n.find(" ("), n.find(':')));
            for (auto& c : label)
                if (c == '"') c = '\'';
            d << '"' << label << "\" " << st.median << ' ' << st.min << ' ' << st.max << '\n';
        }
    }
    std::string gp = fmt::format(
        "set terminal png noenhanced size 1000,{} font ',10'; set output '{}';"
        "set title '{}: median, min-max ({}{})';"
        "set style fill solid 0.6; set boxwidth 0.6; set xtics rotate by -25 left; set grid ytics;"
        "set yrange [0:*]; set bmargin 9; set rmargin 12;"
        "plot '{}' using 0:2:xtic(1) with boxes notitle lc rgb '#4477aa', '' using 0:2:3:4 with yerrorbars "
        "notitle lc rgb 'black' pt 0",
        440, png.string(), r.name, r.unit, r.lower_is_better ? ", lower is better" : "", dat.string());
    std::string gnuplot = find_program("gnuplot");
    if (gnuplot.empty()) {
        fmt::print(
            stderr,
            "drover-bench: no gnuplot (apt-get install gnuplot-nox; tools/dev/bench.sh does): no plots\n");
        return;
    }
    if (!run_capture({gnuplot, "-e", gp}))
        fmt::print(stderr, "drover-bench: gnuplot failed for {}\n", png.string());
    fs::remove(dat);
}

boost::json::object machine() {
    boost::json::object m;
    m["cores"] = ::sysconf(_SC_NPROCESSORS_ONLN);
    struct utsname u {};
    ::uname(&u);
    m["kernel"] = std::string(u.release);
    m["machine"] = std::string(u.machine);
    std::ifstream la("/proc/loadavg");
    std::string load;
    std::getline(la, load);
    m["loadavg"] = load;
    std::ifstream ci("/proc/cpuinfo");
    std::string line;
    while (std::getline(ci, line))
        if (line.rfind("model name", 0) == 0) {
            m["cpu"] = line.substr(line.find(':') + 2);
            break;
        }
    return m;
}

} // namespace

// ---- goals ----------------------------------------------------------------------------------------

/// The median of the contender of `bench` whose name starts with `prefix`, if it ran.
std::optional<double> median_of(const std::vector<bench_result>& results, const std::string& bench,
                                const std::string& prefix) {
    for (const auto& r : results) {
        if (r.name != bench) continue;
        for (const auto& [n, v] : r.samples)
            if (n.rfind(prefix, 0) == 0 && !v.empty()) return summarize(v).median;
    }
    return std::nullopt;
}

/// The spawn path's goals (docs/performance.md), each judged from this run's medians: met or not
/// met, with the ratio that decides it. A goal whose contenders did not run is "not measured".
bench_result goals(const std::vector<bench_result>& results) {
    bench_result g{"goals", "", "Each goal judged from this run's medians.", true, {}, {}, {}};
    g.ratios = false;
    std::string table = "| goal | measured | |\n|---|---|---|\n";
    int met = 0, judged = 0;
    auto row = [&](const std::string& goal, std::optional<bool> ok, const std::string& measured) {
        table += fmt::format("| {} | {} | {} |\n", cell(goal), cell(measured),
                             !ok   ? "not measured"
                             : *ok ? "met"
                                   : "**not met**");
        if (ok) {
            ++judged;
            met += *ok ? 1 : 0;
        }
    };
    auto num = [](double v) { return v >= 100 ? fmt::format("{:.0f}", v) : fmt::format("{:.3g}", v); };
    auto ratio_goal = [&](const std::string& goal, const std::string& bench, const std::string& a,
                          const std::string& b, double limit) {
        auto x = median_of(results, bench, a), y = median_of(results, bench, b);
        if (!x || !y || *y <= 0) return row(goal, std::nullopt, "");
        const double q = *x / *y;
        row(goal, q <= limit, fmt::format("{} vs {}: {:.2f}x (limit {:.2f}x)", num(*x), num(*y), q, limit));
        g.samples.emplace_back(goal, std::vector<double>{q});
    };
    const std::string tiny = "spawn-seq: a tiny static program", tr = "spawn-seq: /bin/true",
                      conc = "spawn-concurrent", run = "run-overhead";
    ratio_goal("spawn-seq, tiny program: within 1.15x of the floor", tiny, "drover (", "floor", 1.15);
    {
        auto d = median_of(results, tiny, "drover (");
        std::string worst;
        bool ahead = d.has_value(), any = false;
        for (const char* peer : {"glibc posix_spawn", "Boost.Process", "Python", "Node", "Go"}) {
            auto p = median_of(results, tiny, peer);
            if (!p || !d) continue;
            any = true;
            if (*d >= *p) {
                ahead = false;
                worst += fmt::format("{}{} {}", worst.empty() ? "" : ", ", peer, num(*p));
            }
        }
        row("spawn-seq, tiny program: ahead of every peer", any ? std::optional<bool>(ahead) : std::nullopt,
            !d      ? std::string()
            : ahead ? "drover " + num(*d)
                    : fmt::format("drover {}; not ahead of {}", num(*d), worst));
    }
    ratio_goal("spawn-seq, /bin/true: within 1.1x of the floor", tr, "drover (", "floor", 1.1);
    ratio_goal("spawn-concurrent (64 in flight): within 1.5x of the floor", conc, "drover (", "floor", 1.5);
    ratio_goal("spawn-concurrent: ahead of Go", conc, "drover (", "Go", 1.0);
    {
        auto c = median_of(results, conc, "drover ("), s = median_of(results, tiny, "drover (");
        if (c && s)
            row("spawn-concurrent: cheaper per spawn than spawn-seq (same program)", *c < *s,
                fmt::format("{} vs {} µs: {:.2f}x", num(*c), num(*s), *c / *s));
        else
            row("spawn-concurrent: cheaper per spawn than spawn-seq (same program)", std::nullopt, "");
    }
    ratio_goal("cgroup(off) never slower than a leaf cgroup: tiny program", tiny, "drover, cgroup(off)",
               "drover (", 1.0);
    ratio_goal("cgroup(off) never slower than a leaf cgroup: /bin/true", tr, "drover, cgroup(off)",
               "drover (", 1.0);
    ratio_goal("cgroup(off) never slower than a leaf cgroup: 64 in flight", conc, "drover, cgroup(off)",
               "drover (", 1.0);
    ratio_goal("`drover run -- /bin/true`: within 1.3x of GNU timeout", run, "drover run", "timeout", 1.3);
    {
        auto fds = median_of(results, "many-children", "drover fds_per_child");
        if (fds)
            row("descriptors per held child: fewer than 5", *fds < 5, fmt::format("{:.1f}", *fds));
        else
            row("descriptors per held child: fewer than 5", std::nullopt, "");
    }
    g.what =
        fmt::format("{} of {} goals met in this run (ratios of medians taken in the same run).", met, judged);
    g.notes.push_back(table);
    return g;
}

int main(int argc, char** argv) {
    if (argc == 4 && std::string_view(argv[1]) == "__many")
        return many_main(std::atoi(argv[2]), std::atoi(argv[3]));
    std::vector<std::string> wanted;
    std::string json_path, plot_dir, drover_opt;
    std::vector<int> sizes;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--quick")
            g_quick = true;
        else if (a == "--json" && i + 1 < argc)
            json_path = argv[++i];
        else if (a == "--plot" && i + 1 < argc)
            plot_dir = argv[++i];
        else if (a == "--drover" && i + 1 < argc)
            drover_opt = argv[++i];
        else if (a == "--services" && i + 1 < argc) {
            std::stringstream list(argv[++i]);
            for (std::string item; std::getline(list, item, ',');) {
                int v = std::atoi(item.c_str());
                if (v <= 0) {
                    fmt::print(stderr, "drover-bench: --services takes numbers above 0: '{}'\n",
                               drover::escape(item));
                    return 2;
                }
                sizes.push_back(v);
            }
        } else if (a == "--help" || a == "-h") {
            fmt::print("usage: drover-bench [--quick] [--json FILE] [--plot DIR] [--drover PATH] [--services "
                       "N,N...] "
                       "[spawn-seq|spawn-concurrent|spawn-vs-rss|spawn-vs-children|run-overhead|capture|many-"
                       "children|supervise|supervise-peers...]\n");
            return 0;
        } else if (a.rfind("-", 0) == 0) {
            fmt::print(stderr, "drover-bench: unknown option '{}'\n", drover::escape(a));
            return 2;
        } else
            wanted.push_back(a);
    }
    auto want = [&](const char* b) {
        return wanted.empty() || std::find(wanted.begin(), wanted.end(), b) != wanted.end();
    };
    const std::string dir = self_dir();
    const std::string drover_bin =
        drover_opt.empty() ? (fs::path(dir).parent_path() / "drover" / "drover").string() : drover_opt;
    const std::string tiny = dir + "/drover-bench-tiny";

    std::vector<bench_result> results;
    auto start = clk::now();
    if (want("spawn-seq")) {
        if (fs::exists(tiny)) results.push_back(spawn_seq(tiny, "a tiny static program"));
        results.push_back(spawn_seq(find_program("true"), "/bin/true"));
    }
    if (want("spawn-concurrent"))
        results.push_back(spawn_concurrent(fs::exists(tiny) ? tiny : find_program("true")));
    if (want("spawn-vs-rss")) results.push_back(spawn_vs_rss(fs::exists(tiny) ? tiny : find_program("true")));
    if (want("spawn-vs-children"))
        results.push_back(spawn_vs_children(fs::exists(tiny) ? tiny : find_program("true")));
    if (want("run-overhead")) results.push_back(run_overhead(drover_bin));
    if (want("capture")) results.push_back(capture());
    if (want("many-children")) results.push_back(many_children((fs::path(dir) / "drover-bench").string()));
    if (want("supervise")) results.push_back(supervise());
    if (want("supervise-peers")) {
        bench::peers_options po;
        po.quick = g_quick;
        po.drover = drover_bin;
        po.svc = dir + "/drover-bench-svc";
        po.sizes = sizes;
        for (auto& r : bench::supervise_peers(po)) results.push_back(std::move(r));
    }

    results.push_back(goals(results));
    auto m = machine();
    std::string md =
        fmt::format("## drover-bench{} ({} cores, Linux {}, load {})\n\n", g_quick ? " --quick" : "",
                    m["cores"].as_int64(), m["kernel"].as_string().c_str(), m["loadavg"].as_string().c_str());
    for (const auto& r : results) md += markdown(r);
    md += fmt::format("Total: {:.0f} s.\n", std::chrono::duration<double>(clk::now() - start).count());
    fmt::print("{}", md);
    if (!plot_dir.empty()) {
        fs::create_directories(plot_dir);
        for (const auto& r : results) plot(r, plot_dir);
    }

    if (!json_path.empty()) {
        boost::json::object j;
        j["machine"] = std::move(m);
        j["quick"] = g_quick;
        boost::json::array benches;
        for (const auto& r : results) {
            boost::json::object b;
            b["name"] = r.name;
            b["unit"] = r.unit;
            b["what"] = r.what;
            boost::json::object samples;
            for (const auto& [n, v] : r.samples) {
                boost::json::array a;
                for (double x : v) a.emplace_back(x);
                samples[n] = std::move(a);
            }
            b["samples"] = std::move(samples);
            boost::json::object missing;
            for (const auto& [n, why] : r.missing) missing[n] = why;
            b["not_run"] = std::move(missing);
            benches.push_back(std::move(b));
        }
        j["benchmarks"] = std::move(benches);
        std::ofstream(json_path) << boost::json::serialize(j) << "\n";
    }
    return 0;
}
