// drover up: the output of the services. Every line a service prints goes to drover's stdout,
// multiplexed with a "name |" prefix (or as JSON lines), and optionally to a per-service log
// file that drover rotates by size.
//
// The lines arrive on the event-loop thread, which must never wait for a terminal, a pipe or a
// disk: while it waits, the supervisor stops reading the children's pipes and the children
// block on their next write. So the loop only appends to bounded in-memory queues; ONE
// background thread does every write, rotation and reopen. A single writer is also what makes
// rotation exact: no line is lost or written twice across a rotation or a reopen.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "drover/escape.hpp"
#include "drover/supervisor.hpp" // drover::wall_clock

namespace drover::up {

using drover::harden_json; // drover/escape.hpp

/// A per-service log file and its rotation.
///
/// Before a write that would take the file past `max_size` bytes, the file is closed and renamed
/// path -> path.1, the older path.1 -> path.2 and so on up to path.`keep` (the one that was
/// path.`keep` is replaced, so at most `keep` rotated files remain); then `path` is opened anew.
/// `keep` 0 deletes the full file instead. `max_size` 0 never rotates. A line longer than
/// `max_size` is still written whole, to a fresh file.
///
/// The file is opened O_APPEND|O_CREAT|O_CLOEXEC with mode 0644 (less the umask); missing parent
/// directories are created.
///
/// Each line of the file is "TIME STREAM TEXT": TIME is RFC 3339 in UTC with milliseconds
/// ("2026-12-03T11:22:48.123Z"), STREAM is "stdout", "stderr" or "drover", and TEXT is the line
/// as drover::escape shows it, so the file never holds a control byte and one line of the file
/// is one line of output. "drover" lines are the notes drover wrote about the service and the
/// markers of lost lines: "N lines dropped (output too slow)" (the queue was full) and
/// "N lines dropped (write failed: ERROR)" (written once the file takes lines again; a line a
/// full disk cut short is ended with a newline first).
struct rotation_spec {
    std::string path;
    std::size_t max_size = 10 * 1024 * 1024;
    unsigned keep = 5;
};

struct output_options {
    /// text: "name | line" (name padded to the longest service name), the line escaped.
    /// json: one object a line, {"time", "service", "stream", "line"}: "time" RFC 3339 in UTC
    /// with milliseconds, "stream" "stdout", "stderr" or "drover" (a note), "line" the line as
    /// valid UTF-8 (invalid bytes become U+FFFD) with every control character escaped. A marker
    /// of lost lines is {"time", "stream": "drover", "line", "dropped": N}, with no "service".
    enum class format { text, json } fmt = format::text;
    /// text only: the prefix coloured per service (a fixed palette, cycled by service index).
    bool color = false;
    /// text only: the local time "HH:MM:SS.mmm " before the prefix.
    bool timestamps = false;
    /// The most bytes of output waiting to be written to stdout, and separately to the log files
    /// together (so a stdout nobody drains does not cost the files their lines). Beyond it lines
    /// are dropped, counted, and a marker "drover: N lines dropped (output too slow)" takes
    /// their place once there is room again.
    std::size_t max_pending = std::size_t(8) << 20;
};

/// The multiplexer and the log files. line(), note(), add_service(), set_log_file() and
/// reopen_all() never block on output and never throw on a full queue or a failed write; they
/// may be called from any thread, and what one thread submits is written in that order.
class output_writer {
public:
    /// `stdout_fd`: where the multiplexed stream goes (not closed, its flags not changed; -1 for
    /// none). `on_error` is called on the writer thread, once per destination each time it
    /// starts failing (a file that cannot be opened or written, ENOSPC, EIO; a stdout gone, EPIPE),
    /// with a message naming the destination and the error; it must not block for long and must
    /// not call back into this object.
    output_writer(int stdout_fd, output_options opts, std::vector<std::string> service_names,
                  std::function<void(std::string)> on_error);
    /// flush(2s), then stops the writer; what is still pending then is counted as dropped. If
    /// the writer thread is stuck in a write that does not return (a hung disk), it is left to
    /// finish on its own rather than blocking the exit.
    ~output_writer();
    output_writer(const output_writer&) = delete;
    output_writer& operator=(const output_writer&) = delete;

    /// Whether to colour the output written to `fd`: it is a terminal, NO_COLOR is unset or
    /// empty (no-color.org) and TERM is not "dumb".
    static bool want_color(int fd);

    /// Makes a service known (after a reload): widens the prefix if the name is longer, gives it
    /// the next colour. Known names are left alone. line() and note() add an unknown name too.
    void add_service(const std::string& name);

    /// Sets or replaces (none: removes) the service's log file. Lines submitted before go to the
    /// old file, lines after to the new one.
    void set_log_file(const std::string& service, std::optional<rotation_spec> spec);

    /// One line the service printed: `stream` 1 (stdout) or 2 (stderr), `raw` without its
    /// newline, unescaped; `t` when it was read.
    void line(const std::string& service, int stream, std::string_view raw, drover::wall_clock::time_point t);

    /// A line from drover about the service ("exited with code 1; restarting in 200ms"), written
    /// with the service's prefix ("name | drover: TEXT"), in order with its output, and to its
    /// log file.
    void note(const std::string& service, std::string_view text, drover::wall_clock::time_point t);

    /// Closes and reopens every log file at a line boundary (on SIGUSR1, after logrotate renamed
    /// them): lines submitted before go to the old file, lines after to the new one.
    void reopen_all();

    /// Waits up to `max` for everything submitted so far to be written (or to have failed).
    /// True when nothing is pending any more.
    bool flush(std::chrono::milliseconds max);

    /// Lines lost so far, counted per destination (a line lost to both stdout and its file
    /// counts twice): dropped from a full queue, failed to write, or still pending at the end.
    std::uint64_t dropped() const;

    struct state; // shared with the writer thread, which may outlive this object (see above)

private:
    std::shared_ptr<state> s_;
};

} // namespace drover::up
