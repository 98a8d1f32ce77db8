// drover up's output (tools/drover/up_log.hpp): the multiplexed stdout stream, JSON lines, the
// per-service log files and their rotation, and that a stalled reader or a full disk never
// blocks the caller.
#include "up_log.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <doctest/doctest.h>

#include "drover/escape.hpp"
#include "support.hpp"

using drover::up::output_options;
using drover::up::output_writer;
using drover::up::rotation_spec;
using namespace std::chrono_literals;
using namespace std::string_literals;

namespace {

using sys_clock = std::chrono::system_clock;

/// How long submitting a flood of lines may take. The point is that it finishes at all (a call
/// that blocked on the unread pipe or the full disk would never return); sanitizers slow every
/// call down several times, so they get more.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr auto flood_bound = 20s;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
constexpr auto flood_bound = 20s;
#else
constexpr auto flood_bound = 2s;
#endif
#else
constexpr auto flood_bound = 2s;
#endif

/// 2023-11-14T22:13:20.123Z
const sys_clock::time_point fixed_time{std::chrono::milliseconds(1700000000123)};

struct pipe_pair {
    int r = -1, w = -1;
    pipe_pair() {
        int p[2];
        REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
        r = p[0];
        w = p[1];
    }
    ~pipe_pair() {
        close_w();
        if (r >= 0) ::close(r);
    }
    void close_w() {
        if (w >= 0) ::close(w);
        w = -1;
    }
};

/// Everything readable from `fd` until end of file.
std::string read_all(int fd) {
    std::string out;
    char buf[65536];
    for (;;) {
        ssize_t n = drover::test::eintr_retry([&] { return ::read(fd, buf, sizeof buf); });
        if (n <= 0) break;
        out.append(buf, std::size_t(n));
    }
    return out;
}

std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::vector<std::string> split_lines(const std::string& s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start < s.size()) {
        auto nl = s.find('\n', start);
        if (nl == std::string::npos) nl = s.size();
        out.push_back(s.substr(start, nl - start));
        start = nl + 1;
    }
    return out;
}

/// The numbers of the lines "TIME stdout line NNNNN" of a log file, in order.
std::vector<int> numbers_in(const std::string& content) {
    static const std::regex re(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z stdout line (\d+)$)");
    std::vector<int> out;
    for (const auto& l : split_lines(content)) {
        std::smatch m;
        REQUIRE_MESSAGE(std::regex_match(l, m, re), l);
        out.push_back(std::stoi(m[1]));
    }
    return out;
}

std::string numbered(int i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "line %05d", i);
    return buf;
}

/// Runs `f` with the writer writing to a pipe, and returns what reached the pipe.
template <typename F>
std::string captured(output_options opts, std::vector<std::string> names, F f) {
    pipe_pair p;
    {
        output_writer w(p.w, opts, std::move(names), nullptr);
        f(w);
        REQUIRE(w.flush(10s));
        CHECK(w.dropped() == 0);
    }
    p.close_w();
    return read_all(p.r);
}

} // namespace

TEST_SUITE("up-log") {

    TEST_CASE("text: aligned prefixes, escaped lines, notes in order") {
        auto out = captured({}, {"a", "longname"}, [](output_writer& w) {
            w.line("a", 1, "hello", fixed_time);
            w.line("longname", 2, "x\x1b[31m\r\0y\x07"s, fixed_time);
            w.note("a", "exited with code 1; restarting in 200ms", fixed_time);
            w.line("a", 1, "", fixed_time);
        });
        CHECK(out == "a        | hello\n"
                     "longname | x\\x1B[31m\\r\\x00y\\x07\n"
                     "a        | drover: exited with code 1; restarting in 200ms\n"
                     "a        | \n");
        for (char c : out) CHECK((static_cast<unsigned char>(c) >= 0x20 || c == '\n'));
    }

    TEST_CASE("text: a new service widens the prefix; unknown names are added") {
        auto out = captured({}, {"ab"}, [](output_writer& w) {
            w.line("ab", 1, "one", fixed_time);
            REQUIRE(w.flush(5s));
            w.add_service("abcdef");
            w.line("ab", 1, "two", fixed_time);
            w.line("xyz\x1b", 1, "three", fixed_time);
        });
        CHECK(out == "ab | one\n"
                     "ab     | two\n"
                     "xyz\\x1B | three\n");
    }

    TEST_CASE("text: colour only when asked, cycled by service index; timestamps") {
        output_options colored;
        colored.color = true;
        auto out = captured(colored, {"a", "bb"}, [](output_writer& w) {
            w.line("a", 1, "x", fixed_time);
            w.line("bb", 2, "y", fixed_time);
        });
        CHECK(out == "\x1b[36ma  |\x1b[0m x\n\x1b[33mbb |\x1b[0m y\n");

        auto plain =
            captured({}, {"a", "bb"}, [](output_writer& w) { w.line("a", 1, "x\x1b[1m", fixed_time); });
        CHECK(plain.find('\x1b') == std::string::npos);

        output_options stamped;
        stamped.timestamps = true;
        auto ts = captured(stamped, {"a"}, [](output_writer& w) { w.line("a", 1, "x", fixed_time); });
        CHECK(std::regex_match(ts, std::regex("\\d\\d:\\d\\d:\\d\\d\\.123 a \\| x\n")));

        CHECK_FALSE(output_writer::want_color(pipe_pair().w));
    }

    TEST_CASE("want_color: a terminal, unless NO_COLOR is set or TERM is dumb") {
        int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0) DROVER_SKIP("no pty");
        int slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
        REQUIRE(slave >= 0);
        auto keep = [](const char* n) {
            const char* v = std::getenv(n);
            return v ? std::optional<std::string>(v) : std::nullopt;
        };
        auto no_color = keep("NO_COLOR"), term = keep("TERM");
        ::unsetenv("NO_COLOR");
        ::setenv("TERM", "xterm", 1);
        CHECK(output_writer::want_color(slave));
        ::setenv("NO_COLOR", "", 1);
        CHECK(output_writer::want_color(slave)); // empty counts as unset (no-color.org)
        ::setenv("NO_COLOR", "1", 1);
        CHECK_FALSE(output_writer::want_color(slave));
        ::unsetenv("NO_COLOR");
        ::setenv("TERM", "dumb", 1);
        CHECK_FALSE(output_writer::want_color(slave));
        if (no_color)
            ::setenv("NO_COLOR", no_color->c_str(), 1);
        else
            ::unsetenv("NO_COLOR");
        if (term)
            ::setenv("TERM", term->c_str(), 1);
        else
            ::unsetenv("TERM");
        ::close(slave);
        ::close(master);
    }

    TEST_CASE("json: one object a line, every field, control characters escaped") {
        output_options opts;
        opts.fmt = output_options::format::json;
        const std::string hostile = "a\x1b[2J\r\0\x7f\xC2\x9B\xE2\x80\xAE\xff z"s;
        auto out = captured(opts, {"web", "db"}, [&](output_writer& w) {
            w.line("web", 1, "hello \"world\"", fixed_time);
            w.line("db", 2, hostile, fixed_time);
            w.note("web", "exited with code 1", fixed_time);
        });
        for (char c : out) CHECK((static_cast<unsigned char>(c) >= 0x20 || c == '\n'));
        CHECK(out.find("\xC2\x9B") == std::string::npos);
        CHECK(out.find("\xE2\x80\xAE") == std::string::npos);
        CHECK(out.find('\x7f') == std::string::npos);
        auto lines = split_lines(out);
        REQUIRE(lines.size() == 3);
        auto v0 = boost::json::parse(lines[0]).as_object();
        CHECK(v0.at("time").as_string() == "2023-11-14T22:13:20.123Z");
        CHECK(v0.at("service").as_string() == "web");
        CHECK(v0.at("stream").as_string() == "stdout");
        CHECK(v0.at("line").as_string() == "hello \"world\"");
        auto v1 = boost::json::parse(lines[1]).as_object();
        CHECK(v1.at("service").as_string() == "db");
        CHECK(v1.at("stream").as_string() == "stderr");
        CHECK(std::string(v1.at("line").as_string()) == drover::to_valid_utf8(hostile));
        auto v2 = boost::json::parse(lines[2]).as_object();
        CHECK(v2.at("stream").as_string() == "drover");
        CHECK(v2.at("line").as_string() == "exited with code 1");
    }

    TEST_CASE("log file: the line format, escaped, parent directories created") {
        drover::test::temp_dir dir;
        auto path = dir.path / "logs" / "web" / "web.log";
        {
            output_writer w(-1, {}, {"web"}, nullptr);
            w.set_log_file("web", rotation_spec{path.string(), 1 << 20, 3});
            w.line("web", 1, "out", fixed_time);
            w.line("web", 2, "err\x1b\n", fixed_time);
            w.note("web", "stopped", fixed_time);
            REQUIRE(w.flush(5s));
        }
        CHECK(slurp(path) == "2023-11-14T22:13:20.123Z stdout out\n"
                             "2023-11-14T22:13:20.123Z stderr err\\x1B\\n\n"
                             "2023-11-14T22:13:20.123Z drover stopped\n");
        struct stat st {};
        REQUIRE(::stat(path.c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == (0644 & ~[] {
                  mode_t m = ::umask(0);
                  ::umask(m);
                  return m;
              }()));
    }

    TEST_CASE("rotation: 10,000 lines, every one exactly once and in order across the files") {
        drover::test::temp_dir dir;
        auto path = (dir.path / "svc.log").string();
        constexpr int total = 10000;
        constexpr std::size_t max_size = 4096;
        {
            output_writer w(-1, {}, {"svc"}, nullptr);
            w.set_log_file("svc", rotation_spec{path, max_size, 1000}); // nothing is deleted
            for (int i = 0; i < total; ++i) w.line("svc", 1, numbered(i), sys_clock::now());
            REQUIRE(w.flush(60s));
            CHECK(w.dropped() == 0);
        }
        int rotated = 0;
        while (std::filesystem::exists(path + "." + std::to_string(rotated + 1))) ++rotated;
        CHECK(rotated > 50); // about 360 KB in files of at most 4 KiB
        std::vector<int> all;
        for (int i = rotated; i >= 0; --i) {
            auto file = i == 0 ? path : path + "." + std::to_string(i);
            auto content = slurp(file);
            CHECK(content.size() <= max_size);
            if (i > 0)
                CHECK(content.size() > max_size - 64); // rotated only when the next line did not fit
            else
                CHECK(!content.empty());
            auto nums = numbers_in(content);
            all.insert(all.end(), nums.begin(), nums.end());
        }
        REQUIRE(all.size() == std::size_t(total));
        for (int i = 0; i < total; ++i) REQUIRE(all[std::size_t(i)] == i);
    }

    TEST_CASE("rotation: only `keep` rotated files remain, the newest lines kept whole") {
        drover::test::temp_dir dir;
        auto path = (dir.path / "svc.log").string();
        {
            output_writer w(-1, {}, {"svc"}, nullptr);
            w.set_log_file("svc", rotation_spec{path, 2048, 3});
            for (int i = 0; i < 10000; ++i) w.line("svc", 1, numbered(i), sys_clock::now());
            REQUIRE(w.flush(60s));
        }
        CHECK(std::filesystem::exists(path + ".3"));
        CHECK_FALSE(std::filesystem::exists(path + ".4"));
        std::vector<int> all;
        for (auto f : {path + ".3", path + ".2", path + ".1", path}) {
            auto nums = numbers_in(slurp(f));
            all.insert(all.end(), nums.begin(), nums.end());
        }
        REQUIRE(!all.empty());
        CHECK(all.back() == 9999);
        for (std::size_t i = 1; i < all.size(); ++i) REQUIRE(all[i] == all[i - 1] + 1);

        // keep 0: the full file is deleted, not renamed.
        auto path0 = (dir.path / "zero.log").string();
        {
            output_writer w(-1, {}, {"z"}, nullptr);
            w.set_log_file("z", rotation_spec{path0, 1024, 0});
            for (int i = 0; i < 1000; ++i) w.line("z", 1, numbered(i), sys_clock::now());
            REQUIRE(w.flush(30s));
        }
        CHECK_FALSE(std::filesystem::exists(path0 + ".1"));
        auto nums = numbers_in(slurp(path0));
        REQUIRE(!nums.empty());
        CHECK(nums.back() == 999);
    }

    TEST_CASE("reopen_all while writing (logrotate): every line exactly once, split where asked") {
        drover::test::temp_dir dir;
        auto path = (dir.path / "svc.log").string();
        auto moved = (dir.path / "svc.log.old").string();
        constexpr int total = 10000, split = 5000;
        {
            output_writer w(-1, {}, {"svc"}, nullptr);
            w.set_log_file("svc", rotation_spec{path, 0, 5}); // max_size 0: no rotation of its own
            for (int i = 0; i < total; ++i) {
                w.line("svc", 1, numbered(i), sys_clock::now());
                if (i == 0) REQUIRE(w.flush(5s)); // the file exists before logrotate renames it
                if (i == split) {
                    // The writer is still busy with earlier lines: they land in the renamed file.
                    REQUIRE(::rename(path.c_str(), moved.c_str()) == 0);
                    w.reopen_all();
                }
            }
            REQUIRE(w.flush(30s));
            CHECK(w.dropped() == 0);
        }
        auto before = numbers_in(slurp(moved));
        auto after = numbers_in(slurp(path));
        REQUIRE(before.size() == std::size_t(split + 1));
        REQUIRE(after.size() == std::size_t(total - split - 1));
        for (int i = 0; i <= split; ++i) REQUIRE(before[std::size_t(i)] == i);
        for (int i = split + 1; i < total; ++i) REQUIRE(after[std::size_t(i - split - 1)] == i);
    }

    TEST_CASE("a stdout nobody reads: line() never blocks, drops are counted and then reported") {
        pipe_pair p;
        output_options opts;
        opts.max_pending = 1 << 20;
        constexpr int total = 100000;
        const std::string pad(80, 'x');
        std::string out;
        std::uint64_t dropped = 0;
        {
            output_writer w(p.w, opts, {"svc"}, nullptr);
            auto start = std::chrono::steady_clock::now();
            for (int i = 0; i < total; ++i) w.line("svc", 1, numbered(i) + pad, sys_clock::now());
            auto took = std::chrono::steady_clock::now() - start;
            CHECK(took < flood_bound);
            CHECK(w.dropped() > 0);
            CHECK_FALSE(w.flush(100ms)); // the pipe is full and nobody reads

            std::thread reader([&] { out = read_all(p.r); });
            CHECK(w.flush(30s));
            dropped = w.dropped();
            // The writer never closes the pipe: close it so the reader sees its end.
            p.close_w();
            reader.join();
        }
        static const std::regex marker(R"(drover: (\d+) lines? dropped \(output too slow\))");
        std::uint64_t reported = 0, shown = 0;
        int last = -1;
        for (const auto& l : split_lines(out)) {
            std::smatch m;
            if (std::regex_match(l, m, marker)) {
                reported += std::stoull(m[1]);
                continue;
            }
            REQUIRE(l.rfind("svc | line ", 0) == 0);
            int n = std::stoi(l.substr(11, 5));
            CHECK(n > last); // in order, none twice
            last = n;
            ++shown;
        }
        CHECK(reported > 0);
        CHECK(reported == dropped);
        CHECK(shown > 0);
        CHECK(shown + reported == std::uint64_t(total));
    }

    TEST_CASE("the destructor gives up on a stdout nobody reads, and counts what it lost") {
        pipe_pair p;
        auto w =
            std::make_unique<output_writer>(p.w, output_options{}, std::vector<std::string>{"svc"}, nullptr);
        const std::string big(1000, 'y');
        for (int i = 0; i < 1000; ++i) w->line("svc", 1, big, sys_clock::now()); // 1 MB > the pipe
        auto start = std::chrono::steady_clock::now();
        w.reset();
        auto took = std::chrono::steady_clock::now() - start;
        CHECK(took >= 1s);
        CHECK(took < 5s);
        // Nothing checks the count here: the object is gone; the count is dropped() just before.
    }

    TEST_CASE("a log file on a full filesystem: no blocking, no throwing, one error report") {
        drover::test::temp_dir dir;
        auto mnt = dir.path / "mnt";
        std::filesystem::create_directory(mnt);
        if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=64k") != 0)
            DROVER_SKIP("cannot mount a tmpfs: " << std::strerror(errno));
        struct unmount {
            std::string p;
            ~unmount() { ::umount2(p.c_str(), MNT_DETACH); }
        } um{mnt.string()};
        // Room that is given back at the end, to see the file recover.
        std::ofstream(mnt / "filler") << std::string(16384, 'f');

        std::vector<std::string> errors;
        std::mutex em;
        auto path = (mnt / "svc" / "svc.log").string();
        const std::string pad(90, 'z');
        constexpr int total = 10000; // about 1 MB, for 64 KiB of room
        std::uint64_t lost = 0;
        {
            output_writer w(-1, {}, {"svc"}, [&](std::string e) {
                std::lock_guard lk(em);
                errors.push_back(std::move(e));
            });
            w.set_log_file("svc", rotation_spec{path, 10 << 20, 5});
            auto start = std::chrono::steady_clock::now();
            for (int i = 0; i < total; ++i) w.line("svc", 1, numbered(i) + pad, sys_clock::now());
            CHECK(std::chrono::steady_clock::now() - start < flood_bound);
            REQUIRE(w.flush(30s));
            lost = w.dropped();
            CHECK(lost > 0);
            CHECK(lost < std::uint64_t(total));

            std::filesystem::remove(mnt / "filler");
            w.line("svc", 2, "room again", sys_clock::now());
            REQUIRE(w.flush(5s));
            CHECK(w.dropped() == lost);
        }
        {
            std::lock_guard lk(em);
            REQUIRE(errors.size() == 1);
            CHECK(errors[0].find(path) != std::string::npos);
            CHECK(errors[0].find(std::strerror(ENOSPC)) != std::string::npos);
        }
        // What fit is whole lines, in order from the start, but the last one, which may be cut
        // short; then how many were lost, then the line written once there was room.
        auto lines = split_lines(slurp(path));
        REQUIRE(lines.size() > 100);
        const auto n = lines.size();
        CHECK(lines[n - 2].find(" drover " + std::to_string(lost) + " lines dropped (write failed: " +
                                std::strerror(ENOSPC) + ")") != std::string::npos);
        CHECK(lines[n - 1].find(" stderr room again") != std::string::npos);
        for (std::size_t i = 0; i + 3 < n; ++i)
            REQUIRE(lines[i].find("stdout " + numbered(int(i)) + pad) != std::string::npos);
    }
}
