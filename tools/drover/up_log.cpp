// drover up: the output of the services (up_log.hpp).
#include "up_log.hpp"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>

#include <boost/json.hpp>

#include "drover/escape.hpp"

namespace drover::up {

namespace {

using sys_clock = drover::wall_clock;

enum class kind { line, note, marker, set_file, reopen };

struct item {
    kind k = kind::line;
    std::uint32_t svc = 0;
    int stream = 1;
    sys_clock::time_point time;
    std::string text;                  // line, note: as given (unescaped)
    std::uint64_t count = 0;           // marker: lines dropped
    std::optional<rotation_spec> spec; // set_file
    std::size_t cost = 0;              // bytes it holds of the queue's budget
    std::size_t width = 0;             // of the prefix, when it was submitted
};

/// What an item costs besides its text, so a flood of empty lines is bounded too.
constexpr std::size_t item_overhead = 64;

/// Splits `t` into whole seconds and milliseconds, rounding down (times before 1970 included).
std::pair<time_t, int> split_ms(sys_clock::time_point t) {
    auto ms = std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
    auto sec = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    return {time_t(sec), int(ms - sec * 1000)};
}

/// "2026-12-03T11:22:48.123Z"
std::string rfc3339_utc(sys_clock::time_point t) {
    auto [sec, ms] = split_ms(t);
    struct tm tm {};
    ::gmtime_r(&sec, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    return buf;
}

/// "11:22:48.123 " in local time.
std::string local_hms(sys_clock::time_point t) {
    auto [sec, ms] = split_ms(t);
    struct tm tm {};
    ::localtime_r(&sec, &tm);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%02d:%02d:%02d.%03d ", tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    return buf;
}

/// Columns a (valid UTF-8, escaped) name takes: one per code point, which is right for the
/// names services have; wide characters would only misalign, never corrupt.
std::size_t display_width(std::string_view s) {
    return std::size_t(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

std::string dropped_text(std::uint64_t n) {
    return std::to_string(n) + (n == 1 ? " line" : " lines") + " dropped (output too slow)";
}

/// Writes all of `data`, retrying EINTR and short writes. 0, or the errno of the failure;
/// `written` says how much reached the file either way.
int write_all(int fd, std::string_view data, std::size_t& written) {
    written = 0;
    while (written < data.size()) {
        ssize_t n = ::write(fd, data.data() + written, data.size() - written);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (n == 0) return EIO;
        written += std::size_t(n);
    }
    return 0;
}

std::string errno_text(int e) {
    char buf[256];
    // GNU strerror_r: returns the message, maybe not in buf.
    return ::strerror_r(e, buf, sizeof buf);
}

/// A log file, as the writer thread alone keeps it.
struct file_state {
    std::optional<rotation_spec> spec;
    int fd = -1;
    std::size_t size = 0;
    bool failing = false;           // an error was reported and nothing was written since
    std::uint64_t failed_lines = 0; // lost to failed writes since the last line written
    bool cut = false;               // a failed write left the file ending mid-line
    int last_errno = 0;
};

} // namespace

struct output_writer::state {
    // Fixed at construction.
    int out_fd = -1;
    std::size_t out_chunk = SIZE_MAX; // largest write to out_fd (see the constructor)
    output_options opts;
    std::function<void(std::string)> on_error;
    int wake_fd = -1;
    std::thread thread;

    std::atomic<std::uint64_t> dropped{0};

    // Shared with the producers: guarded by `m`.
    std::mutex m;
    std::condition_variable cv; // flush() and the destructor wait on it
    std::vector<std::string> names;
    std::vector<std::string> display; // escaped names
    std::unordered_map<std::string, std::uint32_t> index;
    std::vector<char> has_file;
    std::vector<std::uint64_t> file_drops; // per service, waiting for a marker
    std::uint64_t file_drops_total = 0;
    std::size_t width = 0;
    std::deque<item> out_q, file_q;
    std::size_t out_bytes = 0, file_bytes = 0; // queued or being written
    std::uint64_t out_drops = 0;               // waiting for a marker
    bool sleeping = false, want_out = false;
    bool stop = false, exited = false;

    // The writer thread's own.
    std::vector<std::string> w_display;
    std::vector<file_state> files;
    bool out_failing = false;

    ~state() {
        if (wake_fd >= 0) ::close(wake_fd);
    }

    // ---- producers (any thread), with `m` held --------------------------------------------------

    std::uint32_t ensure(const std::string& name) {
        if (auto it = index.find(name); it != index.end()) return it->second;
        auto i = std::uint32_t(names.size());
        names.push_back(name);
        display.push_back(escape(name));
        width = std::max(width, display_width(display.back()));
        index.emplace(name, i);
        has_file.push_back(0);
        file_drops.push_back(0);
        return i;
    }

    void poke(bool for_out) {
        if (!sleeping || (for_out && !want_out)) return;
        sleeping = false;
        std::uint64_t one = 1;
        // The counter cannot overflow (the writer reads it on every wake-up): never blocks.
        [[maybe_unused]] auto r = ::write(wake_fd, &one, sizeof one);
    }

    static item marker(std::uint32_t svc, std::uint64_t n, sys_clock::time_point t) {
        item it;
        it.k = kind::marker;
        it.svc = svc;
        it.count = n;
        it.time = t;
        it.cost = item_overhead;
        return it;
    }

    void submit(item it) {
        it.cost = it.text.size() + item_overhead;
        it.width = width;
        const auto svc = it.svc;
        const bool to_file = has_file[svc] != 0;
        bool poke_out = false, poke_file = false;
        if (out_fd >= 0) {
            if (out_bytes + it.cost > opts.max_pending) {
                ++out_drops;
                dropped.fetch_add(1, std::memory_order_relaxed);
            } else {
                if (out_drops > 0) {
                    out_q.push_back(marker(0, out_drops, it.time));
                    out_bytes += item_overhead;
                    out_drops = 0;
                }
                out_bytes += it.cost;
                if (to_file)
                    out_q.push_back(it);
                else
                    out_q.push_back(std::move(it));
                poke_out = true;
            }
        }
        if (to_file) {
            if (file_bytes + it.cost > opts.max_pending) {
                ++file_drops[svc];
                ++file_drops_total;
                dropped.fetch_add(1, std::memory_order_relaxed);
            } else {
                if (file_drops[svc] > 0) {
                    file_q.push_back(marker(svc, file_drops[svc], it.time));
                    file_bytes += item_overhead;
                    file_drops_total -= file_drops[svc];
                    file_drops[svc] = 0;
                }
                file_bytes += it.cost;
                file_q.push_back(std::move(it));
                poke_file = true;
            }
        }
        if (poke_file)
            poke(false);
        else if (poke_out)
            poke(true);
    }

    /// A control item for the file queue (never dropped).
    void control(item it) {
        it.cost = item_overhead;
        file_bytes += it.cost;
        file_q.push_back(std::move(it));
        poke(false);
    }

    bool idle() const { return out_bytes == 0 && file_bytes == 0 && out_drops == 0 && file_drops_total == 0; }

    // ---- the writer thread ----------------------------------------------------------------------

    void report(const std::string& what) {
        if (!on_error) return;
        try {
            on_error(what);
        } catch (...) {
            // The caller's logger failing must not stop the output.
        }
    }

    void format_out(const item& it, std::string& buf) {
        if (opts.fmt == output_options::format::json) {
            boost::json::object o;
            o["time"] = rfc3339_utc(it.time);
            if (it.k == kind::marker) {
                o["stream"] = "drover";
                o["line"] = "drover: " + dropped_text(it.count);
                o["dropped"] = it.count;
            } else {
                o["service"] = to_valid_utf8(names_for_json(it.svc));
                o["stream"] = it.k == kind::note ? "drover" : it.stream == 2 ? "stderr" : "stdout";
                o["line"] = to_valid_utf8(it.text);
            }
            buf += harden_json(boost::json::serialize(o));
            buf += '\n';
            return;
        }
        if (opts.timestamps) buf += local_hms(it.time);
        if (it.k == kind::marker) {
            buf += "drover: " + dropped_text(it.count) + '\n';
            return;
        }
        static constexpr std::array<const char*, 10> palette = {"36", "33", "32", "35", "34",
                                                                "96", "93", "92", "95", "94"};
        const std::string& name = w_display[it.svc];
        if (opts.color) buf += std::string("\x1b[") + palette[it.svc % palette.size()] + 'm';
        buf += name;
        buf.append(it.width - std::min(it.width, display_width(name)), ' ');
        buf += opts.color ? " |\x1b[0m " : " | ";
        if (it.k == kind::note) buf += "drover: ";
        buf += escape(it.text);
        buf += '\n';
    }

    // The raw names, for JSON (the writer's copy is escaped): read under the lock, which the
    // JSON case takes per batch anyway through w_names.
    std::vector<std::string> w_names;
    const std::string& names_for_json(std::uint32_t svc) const { return w_names[svc]; }

    void open_file(file_state& f) {
        const auto& path = f.spec->path;
        std::error_code ec;
        auto parent = std::filesystem::path(path).parent_path();
        if (!parent.empty()) std::filesystem::create_directories(parent, ec);
        int fd;
        // O_NOFOLLOW: a service that can write to its log directory must not make drover (maybe
        // root) append to another file through a symlink planted at the log's path.
        do fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0644);
        while (fd < 0 && errno == EINTR);
        if (fd < 0) {
            fail(f, errno, "cannot open");
            return;
        }
        struct stat st {};
        f.fd = fd;
        f.cut = false;
        f.size = ::fstat(fd, &st) == 0 ? std::size_t(st.st_size) : 0;
    }

    void close_file(file_state& f) {
        if (f.fd >= 0) ::close(f.fd);
        f.fd = -1;
    }

    void fail(file_state& f, int e, const char* what) {
        f.last_errno = e;
        if (f.failing) return;
        f.failing = true;
        report("log file " + escape(f.spec->path) + ": " + what + ": " + errno_text(e));
    }

    void rotate(file_state& f) {
        close_file(f);
        const auto& p = f.spec->path;
        auto numbered = [&](unsigned i) { return p + "." + std::to_string(i); };
        int bad = 0;
        if (f.spec->keep == 0) {
            if (::unlink(p.c_str()) != 0 && errno != ENOENT) bad = errno;
        } else {
            // Shift path.1.. up by one into the first free number, or onto path.keep (which
            // deletes the oldest); oldest first, so each rename moves into a name just vacated.
            // Looking for the free number first keeps a large `keep` cheap.
            unsigned top = 1;
            struct stat st {};
            while (top < f.spec->keep && ::stat(numbered(top).c_str(), &st) == 0) ++top;
            for (unsigned i = top - 1; i >= 1; --i)
                if (::rename(numbered(i).c_str(), numbered(i + 1).c_str()) != 0 && errno != ENOENT)
                    bad = errno;
            if (::rename(p.c_str(), numbered(1).c_str()) != 0 && errno != ENOENT) bad = errno;
        }
        if (bad != 0) fail(f, bad, "cannot rotate");
        open_file(f);
    }

    std::string file_line(sys_clock::time_point t, std::string_view stream, std::string_view text) {
        std::string s = rfc3339_utc(t);
        s += ' ';
        s += stream;
        s += ' ';
        s += text;
        s += '\n';
        return s;
    }

    void write_file(file_state& f, const item& it) {
        std::string data;
        // A line cut short by a full disk is ended, so the next one starts a line of its own.
        if (f.cut && f.fd >= 0) data = "\n";
        if (f.failed_lines > 0)
            data += file_line(it.time, "drover",
                              std::to_string(f.failed_lines) + (f.failed_lines == 1 ? " line" : " lines") +
                                  " dropped (write failed: " + errno_text(f.last_errno) + ")");
        if (it.k == kind::marker)
            data += file_line(it.time, "drover", dropped_text(it.count));
        else
            data += file_line(it.time,
                              it.k == kind::note ? "drover"
                              : it.stream == 2   ? "stderr"
                                                 : "stdout",
                              escape(it.text));
        if (f.fd < 0) open_file(f);
        if (f.fd >= 0 && f.spec->max_size > 0 && f.size > 0 && f.size + data.size() > f.spec->max_size)
            rotate(f);
        if (f.fd < 0) {
            lose(f);
            return;
        }
        std::size_t written = 0;
        int e = write_all(f.fd, data, written);
        f.size += written;
        if (written > 0) f.cut = data[written - 1] != '\n';
        if (e != 0) {
            fail(f, e, "write failed");
            lose(f);
            return;
        }
        f.failing = false;
        f.failed_lines = 0;
    }

    void lose(file_state& f) {
        ++f.failed_lines;
        dropped.fetch_add(1, std::memory_order_relaxed);
    }

    void process_file(item& it) {
        if (it.k == kind::reopen) {
            for (auto& f : files)
                if (f.spec) {
                    close_file(f);
                    open_file(f);
                }
            return;
        }
        if (files.size() <= it.svc) files.resize(it.svc + 1);
        auto& f = files[it.svc];
        if (it.k == kind::set_file) {
            close_file(f);
            f = file_state{};
            f.spec = std::move(it.spec);
            if (f.spec) open_file(f);
            return;
        }
        if (!f.spec) return; // the file was removed after the line was queued: nothing to count
        write_file(f, it);
    }

    /// Writes some of obuf to stdout; false when stdout failed (obuf is then discarded).
    void write_out(std::string& obuf, std::size_t& ooff) {
        std::size_t n = std::min(obuf.size() - ooff, out_chunk);
        ssize_t r;
        do r = ::write(out_fd, obuf.data() + ooff, n);
        while (r < 0 && errno == EINTR);
        if (r >= 0) {
            ooff += std::size_t(r);
            out_failing = false;
            return;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) return; // someone made it non-blocking: poll again
        int e = errno;
        discard_out(obuf, ooff);
        if (!out_failing) {
            out_failing = true;
            report("stdout: write failed: " + errno_text(e));
        }
    }

    void discard_out(std::string& obuf, std::size_t& ooff) {
        auto lost = std::count(obuf.begin() + std::ptrdiff_t(ooff), obuf.end(), '\n');
        dropped.fetch_add(std::uint64_t(lost), std::memory_order_relaxed);
        ooff = obuf.size();
    }

    void drain_wake() {
        std::uint64_t v;
        while (::read(wake_fd, &v, sizeof v) < 0 && errno == EINTR) {
        }
    }

    void run() {
        std::deque<item> fbatch, obatch;
        std::string obuf;
        std::size_t ooff = 0, ocost = 0, fcost = 0;
        for (;;) {
            bool wait_out = false, wait_any = false;
            {
                std::unique_lock lk(m);
                sleeping = false;
                file_bytes -= fcost;
                fcost = 0;
                if (ooff == obuf.size()) {
                    out_bytes -= ocost;
                    ocost = 0;
                    obuf.clear();
                    ooff = 0;
                }
                if (stop) {
                    // What is left is lost: flush() already waited as long as it may.
                    std::uint64_t lost = 0;
                    for (auto* q : {&out_q, &file_q})
                        for (auto& it : *q) lost += it.k == kind::line || it.k == kind::note;
                    lost += std::uint64_t(std::count(obuf.begin() + std::ptrdiff_t(ooff), obuf.end(), '\n'));
                    dropped.fetch_add(lost, std::memory_order_relaxed);
                    for (auto& f : files) close_file(f);
                    exited = true;
                    cv.notify_all();
                    return;
                }
                // Room has returned once a queue is empty: say what was dropped, where it was.
                auto now = sys_clock::now();
                if (out_drops > 0 && out_q.empty() && obuf.empty()) {
                    out_q.push_back(marker(0, out_drops, now));
                    out_bytes += item_overhead;
                    out_drops = 0;
                }
                if (file_drops_total > 0 && file_q.empty()) {
                    for (std::uint32_t i = 0; i < file_drops.size(); ++i)
                        if (file_drops[i] > 0) {
                            file_q.push_back(marker(i, file_drops[i], now));
                            file_bytes += item_overhead;
                            file_drops[i] = 0;
                        }
                    file_drops_total = 0;
                }
                while (w_display.size() < display.size()) {
                    w_display.push_back(display[w_display.size()]);
                    w_names.push_back(names[w_names.size()]);
                }
                fbatch.swap(file_q);
                for (auto& it : fbatch) fcost += it.cost;
                if (obuf.empty()) {
                    obatch.swap(out_q);
                    for (auto& it : obatch) ocost += it.cost;
                }
                if (idle()) cv.notify_all();
                if (fbatch.empty() && obatch.empty()) {
                    sleeping = true;
                    want_out = obuf.empty();
                    if (obuf.empty())
                        wait_any = true;
                    else
                        wait_out = true;
                }
            }
            if (wait_any || wait_out) {
                pollfd p[2] = {{wake_fd, POLLIN, 0}, {out_fd, POLLOUT, 0}};
                int r = ::poll(p, wait_out ? 2 : 1, -1);
                if (r <= 0) continue; // EINTR
                if (p[0].revents & POLLIN) drain_wake();
                if (wait_out && p[1].revents != 0) {
                    if (p[1].revents & POLLNVAL)
                        discard_out(obuf, ooff);
                    else
                        write_out(obuf, ooff); // POLLERR/POLLHUP: write() says what went wrong
                }
                continue;
            }
            for (auto& it : fbatch) process_file(it);
            fbatch.clear();
            for (auto& it : obatch) format_out(it, obuf);
            obatch.clear();
            if (ooff < obuf.size()) {
                pollfd p{out_fd, POLLOUT, 0};
                if (::poll(&p, 1, 0) > 0) {
                    if (p.revents & POLLNVAL)
                        discard_out(obuf, ooff);
                    else
                        write_out(obuf, ooff);
                }
            }
        }
    }
};

output_writer::output_writer(int stdout_fd, output_options opts, std::vector<std::string> service_names,
                             std::function<void(std::string)> on_error)
    : s_(std::make_shared<state>()) {
    s_->out_fd = stdout_fd;
    s_->opts = opts;
    s_->on_error = std::move(on_error);
    for (const auto& n : service_names) s_->ensure(n);
    // Into a pipe or a terminal, at most PIPE_BUF bytes a write: after poll() said POLLOUT such a
    // write does not block (a pipe takes it whole once a slot is free), so a reader that stops
    // draining holds up only stdout, never the log files. A file takes everything at once.
    struct stat st {};
    if (stdout_fd >= 0 && ::fstat(stdout_fd, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        s_->out_chunk = PIPE_BUF;
    s_->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s_->wake_fd < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
    // The writer takes no signals: they belong to the event loop, and a SIGPIPE from a closed
    // stdout then stays pending on this thread instead of ending the process (write says EPIPE).
    sigset_t all, old;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old);
    try {
        s_->thread = std::thread([s = s_] { s->run(); });
    } catch (...) {
        ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
        throw;
    }
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

output_writer::~output_writer() {
    flush(std::chrono::seconds(2));
    std::unique_lock lk(s_->m);
    s_->stop = true;
    s_->sleeping = true; // poke regardless
    s_->poke(false);
    // The writer may be inside a write that a hung disk does not finish: wait a little, then
    // leave it (it owns the state too) rather than hanging drover's exit.
    bool done = s_->cv.wait_for(lk, std::chrono::milliseconds(500), [&] { return s_->exited; });
    lk.unlock();
    if (done)
        s_->thread.join();
    else
        s_->thread.detach();
}

bool output_writer::want_color(int fd) {
    if (::isatty(fd) != 1) return false;
    const char* no = std::getenv("NO_COLOR");
    if (no != nullptr && *no != '\0') return false;
    const char* term = std::getenv("TERM");
    return term == nullptr || std::string_view(term) != "dumb";
}

void output_writer::add_service(const std::string& name) {
    std::lock_guard lk(s_->m);
    s_->ensure(name);
}

void output_writer::set_log_file(const std::string& service, std::optional<rotation_spec> spec) {
    std::lock_guard lk(s_->m);
    auto i = s_->ensure(service);
    // Lines dropped for the old file are reported in it, before it goes.
    if (s_->has_file[i] && s_->file_drops[i] > 0) {
        s_->file_q.push_back(state::marker(i, s_->file_drops[i], sys_clock::now()));
        s_->file_bytes += item_overhead;
        s_->file_drops_total -= s_->file_drops[i];
        s_->file_drops[i] = 0;
    }
    s_->has_file[i] = spec.has_value();
    item it;
    it.k = kind::set_file;
    it.svc = i;
    it.spec = std::move(spec);
    s_->control(std::move(it));
}

void output_writer::line(const std::string& service, int stream, std::string_view raw,
                         drover::wall_clock::time_point t) {
    item it;
    it.k = kind::line;
    it.stream = stream == 2 ? 2 : 1;
    it.time = t;
    it.text.assign(raw);
    std::lock_guard lk(s_->m);
    it.svc = s_->ensure(service);
    s_->submit(std::move(it));
}

void output_writer::note(const std::string& service, std::string_view text,
                         drover::wall_clock::time_point t) {
    item it;
    it.k = kind::note;
    it.time = t;
    it.text.assign(text);
    std::lock_guard lk(s_->m);
    it.svc = s_->ensure(service);
    s_->submit(std::move(it));
}

void output_writer::reopen_all() {
    std::lock_guard lk(s_->m);
    item it;
    it.k = kind::reopen;
    s_->control(std::move(it));
}

bool output_writer::flush(std::chrono::milliseconds max) {
    std::unique_lock lk(s_->m);
    return s_->cv.wait_for(lk, max, [&] { return s_->idle() || s_->exited; }) && s_->idle();
}

std::uint64_t output_writer::dropped() const {
    return s_->dropped.load(std::memory_order_relaxed);
}

} // namespace drover::up
