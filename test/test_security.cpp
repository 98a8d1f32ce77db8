// Identity, capabilities, namespaces, cgroup limits and exhaustion: G2, G3, G4's
// bounding set, F2, F3, I1, I3, and a pid namespace with its own /proc. Tests that need root,
// namespaces or cgroup controllers skip with a message naming what is missing.
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>

#include "detail/cgroup.hpp"
#include "support.hpp"

using namespace drover;
using namespace drover::test;

namespace {

/// Spawns `cmd` and returns the failure (empty on success, after waiting for the child).
spawn_failure spawn_result(command cmd) {
    asio::io_context ctx;
    spawn_failure f;
    cmd.std_out(stdio::null());
    child c = spawn(ctx, cmd, f);
    if (!f) {
        c.async_wait([](error_code, exit_status) {});
        ctx.run();
    }
    return f;
}

/// The Uid/Gid/Groups lines of every thread of this process.
std::string thread_ids() {
    std::string all;
    for (auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
        std::istringstream in(read_file(e.path().string() + "/status"));
        std::string line;
        while (std::getline(in, line))
            if (line.rfind("Uid:", 0) == 0 || line.rfind("Gid:", 0) == 0 || line.rfind("Groups:", 0) == 0)
                all += line + "\n";
    }
    return all;
}

std::string own_ns(const char* name) {
    return std::filesystem::read_symlink(std::string("/proc/self/ns/") + name).string() + "\n";
}

/// Runs `cmd` with new namespaces; empty optional when the kernel refuses them, and the running
/// case is then skipped (note_skip): the caller returns at once.
std::optional<output> in_namespaces(command cmd, const char* what) {
    asio::io_context ctx;
    cmd.std_out(stdio::pipe());
    spawn_failure f;
    child c = spawn(ctx, cmd, f);
    if (f && portable_backend()) {
        CHECK(f.code == errc::not_supported);
        CHECK(f.detail.find("namespaces") != std::string::npos);
        note_skip(needs_linux_backend("namespaces") + " (refused: " + f.message() + ")");
        return std::nullopt;
    }
    if (f) {
        note_skip(std::string("the kernel refused the namespaces (") + what +
                  ") or the /proc mount: " + f.message());
        CHECK((f.stage == spawn_stage::namespaces || f.stage == spawn_stage::mounts));
        return std::nullopt;
    }
    return run(ctx, [](child c) -> asio::awaitable<output> {
        std::string out = co_await read_all(c.std_out());
        exit_status st = co_await c.async_wait(asio::use_awaitable);
        co_return output{st, std::move(out)};
    }(std::move(c)));
}

std::string collapse_spaces(const std::string& s) {
    std::istringstream in(s);
    std::string w, out;
    while (in >> w) out += (out.empty() ? "" : " ") + w;
    return out;
}

} // namespace

TEST_SUITE("security") {

    TEST_CASE("G2: as root with user nobody the child has only 65534 ids and groups, and setuid(0) fails") {
        DROVER_SKIP_IF(needs_root_and_nobody());
        auto r = output_now(public_helper({"print-creds", "try-setuid", "0"}).user("nobody"));
        CHECK(r.status == exit_status::exited(0));
        CHECK(r.out == "uid 65534 65534 65534 gid 65534 65534 65534 groups 65534\nsetuid failed EPERM\n");
        // A numeric uid works the same way, and an explicit group list replaces the user's.
        auto n = output_now(public_helper({"print-creds"}).user("65534").supplementary_groups({}));
        CHECK(n.out == "uid 65534 65534 65534 gid 65534 65534 65534 groups \n");
    }

    TEST_CASE("G3: only the child changes identity: every thread of the parent keeps its ids, and drover "
              "stays dumpable") {
        DROVER_SKIP_IF(needs_root_and_nobody());
        std::string before = thread_ids();
        const int dumpable = ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
        for (int i = 0; i < 3; ++i) CHECK_FALSE(spawn_result(public_helper({"exit", "0"}).user("nobody")));
        CHECK(thread_ids() == before);
        // The child's credential change resets "dumpable" on the memory it shares with us until
        // exec; drover restores it.
        CHECK(::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == dumpable);
    }

    TEST_CASE("identity: unknown names and a uid without a group are refused before spawning, by name") {
        auto f = spawn_result(helper({"exit", "0"}).user("no-such-user-drover"));
        CHECK(f.code == errc::invalid_command);
        CHECK(f.stage == spawn_stage::prepare);
        CHECK(f.detail.find("no user 'no-such-user-drover'") != std::string::npos);
        auto g = spawn_result(helper({"exit", "0"}).group("no-such-group-drover"));
        CHECK(g.detail.find("no group 'no-such-group-drover'") != std::string::npos);
        if (::getpwuid(54321) == nullptr) {
            auto u = spawn_result(helper({"exit", "0"}).user("54321"));
            CHECK(u.code == errc::invalid_command);
            CHECK(u.detail.find("give a group too") != std::string::npos);
        }
        if (::geteuid() == 0) {
            // Another uid: the copy it can reach (support.hpp, copy_for_others).
            auto ok = output_now(public_helper({"print-creds"}).user("54321").group("54321"));
            CHECK(ok.out == "uid 54321 54321 54321 gid 54321 54321 54321 groups \n");
            auto grp = output_now(public_helper({"print-creds"}).group("65534"));
            CHECK(grp.out ==
                  "uid 0 0 0 gid 65534 65534 65534 groups \n"); // root's groups are not carried over
        }
    }

    TEST_CASE("capabilities: names and numbers; the bounding set keeps exactly the listed ones") {
        CHECK(capability_number("net_bind_service") == 10);
        CHECK(capability_number("CAP_SYS_ADMIN") == 21);
        CHECK(capability_number("Chown") == 0);
        CHECK_FALSE(capability_number("cap_fly"));
        CHECK(capability_name(10) == "cap_net_bind_service");
        CHECK(capability_name(99).empty());
        auto bad = spawn_result(helper({"exit", "0"}).capability_bounding_set({63}));
        if (portable_backend()) {
            CHECK(bad.code == errc::not_supported);
            CHECK(bad.detail.find("capability bounding set") != std::string::npos);
            DROVER_SKIP(needs_linux_backend("the capability bounding set")
                        << " (refused: " << bad.message() << ")");
        }
        CHECK(bad.code == errc::invalid_command);
        DROVER_SKIP_IF(needs_root()); // dropping from the bounding set needs CAP_SETPCAP
        auto r =
            output_now(helper({"print-status", "CapBnd", "print-status", "CapEff", "print-status", "CapInh"})
                           .capability_bounding_set({0, 10}));
        CHECK(r.out == "CapBnd:\t0000000000000401\nCapEff:\t0000000000000401\nCapInh:\t0000000000000000\n");
        if (has_nobody()) {
            auto n = output_now(public_helper({"print-status", "CapBnd", "print-status", "CapEff"})
                                    .capability_bounding_set({10})
                                    .user("nobody"));
            CHECK(n.out == "CapBnd:\t0000000000000400\nCapEff:\t0000000000000000\n");
        }
    }

    TEST_CASE(
        "a pid namespace child sees itself as pid 1 and a private /proc; the host's mounts are untouched") {
        const std::string mounts_before = read_file("/proc/self/mountinfo");
        auto r = in_namespaces(helper({"print-pid", "print-proc-pids", "print-ns", "pid", "print-ns", "mnt"})
                                   .unshare(namespaces::pid | namespaces::mount),
                               "pid,mount");
        if (!r) return; // skipped: in_namespaces said why
        CHECK(r->status == exit_status::exited(0));
        std::istringstream in(r->out);
        std::string pid_line, procs, pidns, mntns;
        std::getline(in, pid_line);
        std::getline(in, procs);
        std::getline(in, pidns);
        std::getline(in, mntns);
        CHECK(pid_line == "pid 1");
        CHECK(procs == "1"); // only itself: /proc is the namespace's own
        CHECK(pidns + "\n" != own_ns("pid"));
        CHECK(mntns + "\n" != own_ns("mnt"));
        CHECK(read_file("/proc/self/mountinfo") == mounts_before); // nothing propagated back
    }

    TEST_CASE("a network namespace has only lo, up; namespaces not asked for are shared") {
        auto r =
            in_namespaces(helper({"print-ns", "net", "print-ns", "pid", "print-ns", "uts", "print-netdevs"})
                              .unshare(namespaces::net),
                          "net");
        if (!r) return; // skipped: in_namespaces said why
        std::istringstream in(r->out);
        std::string lines[3];
        for (auto& l : lines) std::getline(in, l);
        CHECK(lines[0] + "\n" != own_ns("net"));
        CHECK(lines[1] + "\n" == own_ns("pid"));
        CHECK(lines[2] + "\n" == own_ns("uts"));
        // lo, up; anything else is one of the kernel's tunnel fallback devices (sit0, tunl0...,
        // present in every new network namespace where those modules are loaded), down.
        std::string dev;
        bool lo_up = false;
        while (std::getline(in, dev)) {
            if (dev == "lo up")
                lo_up = true;
            else
                CHECK_MESSAGE(dev.ends_with(" down"), dev);
        }
        CHECK(lo_up);
    }

    TEST_CASE("uts and ipc namespaces are new; a user namespace maps the caller's ids to 0") {
        auto r = in_namespaces(
            helper({"print-ns", "uts", "print-ns", "ipc", "print-creds", "print-file", "/proc/self/uid_map"})
                .unshare(namespaces::uts | namespaces::ipc | namespaces::user),
            "user,uts,ipc");
        if (!r) return; // skipped: in_namespaces said why
        CHECK(r->out.find(own_ns("uts")) == std::string::npos);
        CHECK(r->out.find(own_ns("ipc")) == std::string::npos);
        CHECK(r->out.find("uid 0 0 0 gid 0 0 0") != std::string::npos);
        auto map_at = r->out.find('\n', r->out.find("uid 0")) + 1;
        CHECK(collapse_spaces(r->out.substr(map_at)) == "0 " + std::to_string(::geteuid()) + " 1");
    }

    TEST_CASE("namespaces: names parse, and supplementary groups in a new user namespace are refused") {
        std::string bad;
        CHECK(parse_namespaces("pid,mnt,net") == (namespaces::pid | namespaces::mount | namespaces::net));
        CHECK_FALSE(parse_namespaces("pid,,net", &bad));
        CHECK_FALSE(parse_namespaces("pid,time", &bad));
        CHECK(bad == "time");
        CHECK(to_string(namespaces::user | namespaces::ipc) == "user,ipc");
        auto f = spawn_result(helper({"exit", "0"}).unshare(namespaces::user).supplementary_groups({"0"}));
        if (portable_backend()) {
            CHECK(f.code == errc::not_supported);
            DROVER_SKIP(needs_linux_backend("namespaces") << " (refused: " << f.message() << ")");
        }
        CHECK(f.code == errc::invalid_command);
        CHECK(f.detail.find("user namespace") != std::string::npos);
    }

    TEST_CASE_FIXTURE(
        io_fixture,
        "I1: cgroup limits are applied where the controllers exist, else reported as not applied") {
        if (portable_backend()) {
            for (auto cmd : {helper({"exit", "0"}).memory_max(64 << 20), helper({"exit", "0"}).pids_max(50),
                             helper({"exit", "0"}).cpu_max(std::chrono::milliseconds(50))}) {
                spawn_failure f;
                spawn(ctx, cmd, f);
                CHECK(f.code == errc::not_supported);
                CHECK(f.detail.find("the cgroup limit ") == 0);
            }
            DROVER_SKIP(needs_linux_backend("cgroup limits") << " (each refused with not_supported)");
        }
        child c = spawn(
            ctx,
            helper({"exit", "0"}).memory_max(64 << 20).pids_max(50).cpu_max(std::chrono::milliseconds(50)));
        auto unapplied = c.unapplied_limits();
        for (const char* ctl : {"memory", "pids", "cpu"}) {
            std::string setting = std::string(ctl) + "_max";
            bool listed = std::any_of(unapplied.begin(), unapplied.end(), [&](const unapplied_limit& u) {
                return u.setting == setting && !u.reason.empty();
            });
            if (controller_available(ctl)) {
                CHECK_FALSE(listed);
            } else {
                CHECK(listed); // never silently ignored
                MESSAGE("cgroup v2 '" << std::string(ctl) << "' controller missing here: " << setting
                                      << " reported as not applied");
            }
        }
        if (controller_available("memory") && c.cgroup_path())
            CHECK(read_file(*c.cgroup_path() + "/memory.max") == std::to_string(64 << 20) + "\n");
        c.async_wait([](error_code, exit_status) {});
        ctx.run();
        CHECK_FALSE(c.oom_kills().value_or(0));

        // Without a cgroup nothing can apply: each limit is reported with the reason.
        asio::io_context ctx2;
        child off = spawn(ctx2, helper({"exit", "0"}).cgroup(cgroup_mode::off).pids_max(5));
        REQUIRE(off.unapplied_limits().size() == 1);
        CHECK(off.unapplied_limits()[0].setting == "pids_max");
        CHECK(off.unapplied_limits()[0].reason.find("cgroup_mode::off") != std::string::npos);
        off.async_wait([](error_code, exit_status) {});
        ctx2.run();
    }

    TEST_CASE_FIXTURE(io_fixture,
                      "a leaf holding empty cgroups of a killed nested drover is still removed, at once") {
        child c = spawn(ctx, helper({"sleep", "100"}));
        auto cg = c.cgroup_path();
        if (!cg) {
            c.async_kill([](error_code, exit_status) {});
            ctx.run();
            DROVER_SKIP("no cgroup v2 leaf for children here");
        }
        // What a drover running inside the leaf leaves when it is SIGKILLed: its empty directories.
        REQUIRE(std::filesystem::create_directories(*cg + "/drover-999999/run-1"));
        const auto t0 = std::chrono::steady_clock::now();
        c.async_kill([](error_code, exit_status) {});
        ctx.run();
        CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1)); // not 2 s of EBUSY retries
        CHECK_FALSE(std::filesystem::exists(*cg));
    }

    TEST_CASE("I3: an OOM kill in the child's cgroup is reported from memory.events") {
        if (!controller_available("memory"))
            DROVER_SKIP("no cgroup v2 memory controller for drover's cgroup (hybrid host)");
        if (read_file("/proc/swaps").find('\n') + 1 < read_file("/proc/swaps").size())
            DROVER_SKIP("swap is on, so a memory.max child swaps instead of being OOM-killed");
        asio::io_context ctx;
        child c = spawn(ctx, helper({"alloc", "1024", "sleep", "10000"}).memory_max(64 << 20));
        exit_status st;
        c.async_wait([&](error_code, exit_status s) { st = s; });
        ctx.run();
        CHECK(st == exit_status::signaled(SIGKILL));
        CHECK(c.oom_kills().value_or(0) >= 1);
    }

    TEST_CASE("F3: pids.max refuses a fork with EAGAIN inside the tree") {
        if (!controller_available("pids"))
            DROVER_SKIP("no cgroup v2 pids controller for drover's cgroup (hybrid host); "
                        "the RLIMIT_NPROC case is tested through drover run in the cli suite");
        auto r = output_now(helper({"try-fork"}).pids_max(1));
        CHECK(r.out == "fork failed EAGAIN\n");
    }

    TEST_CASE_FIXTURE(
        io_fixture,
        "F2: with RLIMIT_NOFILE at 32, 50 spawns fail cleanly with EMFILE, leak nothing, and recover") {
        {
            // Warm up what is created once and kept: the io_context's reactor, drover's spawn thread.
            child w = spawn(ctx, helper({"exit", "0"}).std_in(stdio::pipe()));
            w.async_wait([](error_code, exit_status) {});
            ctx.run();
            ctx.restart();
        }
        ctx.run(); // its handle's cleanup
        ctx.restart();
        const int before = open_fd_count();
        struct rlimit saved {};
        ::getrlimit(RLIMIT_NOFILE, &saved);
        struct rlimit tight = saved;
        tight.rlim_cur = std::max<rlim_t>(32, static_cast<rlim_t>(before) + 12);
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &tight) == 0);
        std::vector<child> alive;
        int failed = 0;
        for (int i = 0; i < 50; ++i) {
            spawn_failure f;
            child c = spawn(ctx,
                            helper({"sleep", "30000"})
                                .std_in(stdio::pipe())
                                .std_out(stdio::pipe())
                                .std_err(stdio::pipe()),
                            f);
            if (f) {
                ++failed;
                CHECK_MESSAGE((f.code.value() == EMFILE || f.code.value() == ENFILE), f.message());
                CHECK(f.message().find("cannot spawn") == 0);
            } else {
                alive.push_back(std::move(c));
            }
        }
        ::setrlimit(RLIMIT_NOFILE, &saved);
        CHECK(failed > 0);
        CHECK(!alive.empty()); // some fit before the limit
        for (auto& c : alive) c.async_kill([](error_code, exit_status) {});
        ctx.run();
        alive.clear();
        ctx.restart();
        ctx.run(); // the cleanups the destructors left behind
        CHECK(zombie_count() == 0);
        if (open_fd_count() != before) {
            for (auto& e : std::filesystem::directory_iterator("/proc/self/fd"))
                MESSAGE(e.path().filename().string()
                        << " -> " << std::filesystem::read_symlink(e.path()).string());
        }
        CHECK(open_fd_count() == before);
        auto ok = output_now(helper({"write-line", "recovered"}));
        CHECK(ok.out == "recovered\n");
        CHECK(open_fd_count() == before);
    }

} // TEST_SUITE
