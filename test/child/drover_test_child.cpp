// drover-test-child: the scripted helper program that drover's tests run as a child process, so
// that no test depends on the host's shell tools (sh, sleep, cat, env, ...) and every behaviour a
// test relies on is spelled out here, byte for byte. It uses only the C++ standard library and
// Linux/glibc headers.
//
// Script model
// ------------
// argv[1..] is a script: a sequence of operations run left to right. Each operation is a name
// followed by a fixed number of arguments. After the last operation the program exits 0.
//
// The whole script is checked before anything runs, so a typo never leaves a half-run script
// behind: an unknown operation or a bad or missing argument prints
// "drover-test-child: <message>" to stderr and exits 64. No arguments at all prints the usage
// (generated from the operation table) to stderr and exits 64.
//
// Numbers are unsigned decimal. Data goes out through raw write(2) loops, never buffered stdio,
// so output ordering across fork() and signals is exactly the order of the operations. A failed
// write to stdout or stderr prints "drover-test-child: write: <strerror>" and exits 3 (unless
// SIGPIPE kills the process first, which tests rely on).
//
// Exit codes: 0 script finished; 1 a lookup found nothing (print-env VAR, print-status FIELD);
// 2 a system call failed (message on stderr); 3 writing stdout/stderr failed; 64 usage error or
// an escaped exception; 70 `signal` did not kill the process.
//
// Operations
// ----------
//   exit STATUS                 _exit(STATUS) at once (0-255).
//   sleep MS                    sleep MS milliseconds, resuming after signal handlers.
//   signal SIG                  die by SIG: default disposition, unblock, raise; exit 70 if alive.
//                               SIG is a number or a name with or without "SIG" (TERM, SIGKILL...).
//   print-fds                   open fds, ascending, space separated: "0 1 2\n".
//   print-sigmask               the "SigBlk:" and "SigIgn:" lines of /proc/self/status.
//   print-env [VAR]             all of environ as "KEY=VALUE\n"; or, when the next word is not an
//                               operation name, VAR's value + "\n" (exit 1, no output, if unset).
//   print-env0                  all of environ, each entry followed by a NUL byte.
//   echo-args ARG...            every remaining word (not operations) + a NUL byte; then exit 0.
//   ignore-term MS              SIGTERM to SIG_IGN, print "ignoring TERM\n", sleep MS.
//   trap-term MS                SIGTERM handler printing "got TERM\n" and _exit(0); print
//                               "trapping TERM\n"; sleep MS, then go on with the script.
//   report-signal SIG           a SIG handler printing "got signal N pid P\n" (N: the number, P: the
//                               receiving process, so a child forked later reports as itself);
//                               the script goes on (sleep resumes after it).
//   spawn-grandchild MS         fork a child that sleeps MS and exits 0; print "grandchild <pid>\n";
//                               do not wait for it.
//   spawn-grandchild-setsid MS  the same, the grandchild calls setsid() first.
//   spawn-orphan MS             double fork; the intermediate prints "orphan <pid>\n" (the
//                               grandchild's pid) and exits; the grandchild sleeps MS and exits 0.
//   wait-children               reap every child until ECHILD; print "reaped N\n".
//   write-stdout BYTES          BYTES bytes of "abcdefghijklmnopqrstuvwxyz0123456789\n" repeated
//   write-stderr BYTES          (byte i is pattern[i % 37]) to fd 1 / fd 2, 64 KiB per write.
//   write-line TEXT             TEXT + "\n" to stdout.
//   write-line-stderr TEXT      TEXT + "\n" to stderr.
//   read-stdin                  read fd 0 to EOF; print "read N bytes\n".
//   cat                         copy fd 0 to fd 1 until EOF.
//   upper                       the same, ASCII a-z turned to A-Z.
//   head-lines N                copy fd 0 to fd 1 up to and including the N-th newline (or EOF),
//                               reading nothing further.
//   yes                         "y\n" to stdout forever (exit 3 on a write error).
//   count N MS                  "count PID I\n" for I = 0..N-1 (N = 0: forever), one write(2) per
//                               line, MS milliseconds between lines (0: as fast as possible).
//   flood MIBPS                 write-stdout's pattern to stdout forever, paced at about MIBPS MiB/s
//                               (0: as fast as possible), 64 KiB per write.
//   write-hostile               one line of hostile bytes to stdout: ESC/CSI and OSC sequences, C1
//                               controls, bidi overrides, a NUL, invalid UTF-8, CR and BS, then "\n".
//   close-stdin / close-stdout / close-stderr
//                               close fd 0 / 1 / 2 (closing a closed fd is not an error).
//   print-pid / print-ppid      "pid P\n" / "ppid P\n".
//   print-ids                   "pid P ppid PP sid S pgid G\n".
//   print-cwd                   the working directory + "\n".
//   print-nonblock              "0:b 1:b 2:b\n", b = 1 if O_NONBLOCK, 0 if not, - if closed.
//   print-tty                   "0:t 1:t 2:t ctty:c\n": t = isatty(fd), c = 1 if /dev/tty opens.
//   print-winsize               "winsize ROWS COLS\n" of the terminal on fd 0.
//   wait-winch MS               block SIGWINCH, print "waiting for WINCH\n", wait up to MS for
//                               it; print "WINCH ROWS COLS\n" (fd 0's new size) or "no WINCH\n".
//   print-rlimit NAME           "<soft> <hard>\n" ("unlimited" for RLIM_INFINITY); NAME is NOFILE,
//                               NPROC, CORE, AS, CPU, FSIZE, STACK or MEMLOCK.
//   print-umask                 "0022\n".
//   print-creds                 "uid R E S gid R E S groups G1,G2,...\n".
//   print-pdeathsig             "pdeathsig N\n".
//   print-nnp                   "nnp N\n" (no_new_privs).
//   print-status FIELD          the line of /proc/self/status whose key is FIELD + "\n"
//                               (exit 1, no output, if there is none).
//   stop-self                   raise(SIGSTOP); carries on after SIGCONT.
//   touch PATH                  create or truncate PATH, mode 0644 (exit 2 on error).
//   try-setuid UID              setuid(UID); "setuid ok\n" or "setuid failed EPERM\n".
//   fd-write FD TEXT            TEXT + "\n" to fd FD (exit 2 on error).
//   fd-read FD                  copy fd FD to stdout until EOF (exit 2 on a read error).
//   fork-children N MS          fork N children sleeping MS then exiting 0; no wait;
//                               print "forked N\n".
//   alloc MB                    map and touch MB MiB and keep them; print "allocated MB\n"
//                               (exit 2 if the mapping fails, e.g. under RLIMIT_AS).
//   busy MS                     spin on the CPU for MS milliseconds of steady_clock time.
//   print-proc-pids             the numeric entries of /proc, ascending, one per line.
//   print-netdevs               each interface of /proc/self/net/dev as "NAME up|down\n".
//   print-ns NS                 the target of /proc/self/ns/NS + "\n" (like "pid:[4026531836]").
//   print-file PATH             PATH's contents, as is (exit 2 if it cannot be read).
//   set-comm TEXT               prctl(PR_SET_NAME, TEXT): the kernel keeps the first 15 bytes.
//   try-fork                    fork once: "fork ok\n" or "fork failed E<NAME>\n" (the child exits).
//   trace PID MS                attach to PID as its tracer (PTRACE_SEIZE; exit 2 if refused), print
//                               "tracing PID\n", pass every signal on to it; once it has exited,
//                               hold its exit for MS (its parent cannot reap it meanwhile), then
//                               take the exit (which hands it to the parent) and print "released\n".
//
// Example: drover-test-child write-line hello sleep 100 exit 3
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

extern char** environ;

namespace {

constexpr std::string_view program_name = "drover-test-child";

constexpr int exit_not_found = 1;
constexpr int exit_syscall_failed = 2;
constexpr int exit_write_failed = 3;
constexpr int exit_usage = 64;
constexpr int exit_signal_survived = 70;

// Buffer size for bulk reads and writes: the 64 KiB chunks the script model promises, and the
// default capacity of a Linux pipe.
constexpr std::size_t io_chunk = std::size_t{64} * 1024;

// ---------------------------------------------------------------------------------------------
// Output and failure

// Writes all of [data, data + size) to fd. Returns 0 or the errno of the failing write.
// Async-signal-safe (write(2) only), so the SIGTERM handler can use it too.
int write_fully(int fd, const char* data, std::size_t size) {
    while (size > 0) {
        const ssize_t n = ::write(fd, data, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        data += n;
        size -= static_cast<std::size_t>(n);
    }
    return 0;
}

// Prints "drover-test-child: <parts...>\n" to stderr and _exits with `code`. Builds the line in a
// fixed buffer so it can report out-of-memory too, and sends it in one write so that messages
// from several processes sharing stderr do not interleave.
[[noreturn]] void fail(int code, std::initializer_list<std::string_view> parts) {
    char line[4096];
    std::size_t len = 0;
    auto append = [&](std::string_view s) {
        const std::size_t n = std::min(s.size(), sizeof line - 1 - len); // keep room for '\n'
        std::memcpy(line + len, s.data(), n);
        len += n;
    };
    append(program_name);
    append(": ");
    for (std::string_view part : parts) append(part);
    line[len++] = '\n';
    (void)write_fully(2, line, len); // if stderr itself is broken there is nobody left to tell
    ::_exit(code);
}

// Reports a failed system call (errno must still be the call's) and exits 2.
[[noreturn]] void fail_syscall(std::string_view what) {
    const int err = errno;
    fail(exit_syscall_failed, {what, ": ", std::strerror(err)});
}

// Writes data to stdout/stderr; a failure there is the "write error" of the script model.
void emit(int fd, std::string_view data) {
    if (const int err = write_fully(fd, data.data(), data.size()); err != 0)
        fail(exit_write_failed, {"write: ", std::strerror(err)});
}

void out(std::string_view data) {
    emit(STDOUT_FILENO, data);
}

// Reads once from fd, retrying on EINTR. Returns the byte count (0 at EOF); exits 2 on error.
std::size_t read_some(int fd, char* buf, std::size_t size, std::string_view what) {
    for (;;) {
        const ssize_t n = ::read(fd, buf, size);
        if (n >= 0) return static_cast<std::size_t>(n);
        if (errno != EINTR) fail_syscall(what);
    }
}

// Closes fd; EINTR still closes it on Linux, so only other errors are failures.
void close_or_fail(int fd, std::string_view what) {
    if (::close(fd) != 0 && errno != EINTR) fail_syscall(what);
}

// ---------------------------------------------------------------------------------------------
// Argument parsing

// Unsigned decimal only: a sign, spaces or trailing junk make a bad argument.
std::optional<unsigned long long> parse_number(std::string_view text) {
    if (text.empty() || text.front() < '0' || text.front() > '9') return std::nullopt;
    unsigned long long value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
    return value;
}

struct named_signal {
    std::string_view name;
    int number;
};

// The names tests use; anything else falls back to glibc's own abbreviations.
constexpr std::array signal_names{
    named_signal{"TERM", SIGTERM}, named_signal{"KILL", SIGKILL}, named_signal{"INT", SIGINT},
    named_signal{"HUP", SIGHUP},   named_signal{"USR1", SIGUSR1}, named_signal{"USR2", SIGUSR2},
    named_signal{"PIPE", SIGPIPE}, named_signal{"SEGV", SIGSEGV}, named_signal{"ABRT", SIGABRT},
    named_signal{"QUIT", SIGQUIT}, named_signal{"STOP", SIGSTOP}, named_signal{"CONT", SIGCONT},
    named_signal{"ALRM", SIGALRM}, named_signal{"CHLD", SIGCHLD},
};

std::optional<int> parse_signal(std::string_view text) {
    if (auto number = parse_number(text)) {
        if (*number < 1 || *number > static_cast<unsigned long long>(SIGRTMAX)) return std::nullopt;
        return static_cast<int>(*number);
    }
    std::string name(text);
    for (char& c : name)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (name.starts_with("SIG")) name.erase(0, 3);
    for (const auto& entry : signal_names)
        if (entry.name == name) return entry.number;
    for (int sig = 1; sig <= SIGRTMAX; ++sig)
        if (const char* abbrev = ::sigabbrev_np(sig); abbrev != nullptr && name == abbrev) return sig;
    return std::nullopt;
}

struct named_rlimit {
    std::string_view name;
    int resource; // glibc's __rlimit_resource_t is plain int in C++
};

constexpr std::array rlimit_names{
    named_rlimit{"NOFILE", RLIMIT_NOFILE}, named_rlimit{"NPROC", RLIMIT_NPROC},
    named_rlimit{"CORE", RLIMIT_CORE},     named_rlimit{"AS", RLIMIT_AS},
    named_rlimit{"CPU", RLIMIT_CPU},       named_rlimit{"FSIZE", RLIMIT_FSIZE},
    named_rlimit{"STACK", RLIMIT_STACK},   named_rlimit{"MEMLOCK", RLIMIT_MEMLOCK},
};

std::optional<int> parse_rlimit(std::string_view name) {
    for (const auto& entry : rlimit_names)
        if (entry.name == name) return entry.resource;
    return std::nullopt;
}

// How a parameter is checked. The parameter names in the operation table double as the usage
// text, and each name maps to exactly one rule here, so the two cannot drift apart.
enum class param_kind { number, signal, rlimit, text, optional_var, rest };

struct param_rule {
    std::string_view word;
    param_kind kind;
    unsigned long long max = 0; // for numbers
};

constexpr std::array param_rules{
    param_rule{"STATUS", param_kind::number, 255},
    // Capped so that milliseconds -> nanoseconds for steady_clock cannot overflow (~31 years).
    param_rule{"MS", param_kind::number, 1'000'000'000'000ULL},
    param_rule{"N", param_kind::number, INT_MAX},
    param_rule{"BYTES", param_kind::number, ULLONG_MAX},
    param_rule{"UID", param_kind::number, UINT32_MAX},
    param_rule{"FD", param_kind::number, INT_MAX},
    param_rule{"PID", param_kind::number, INT_MAX},
    param_rule{"MB", param_kind::number, 1ULL << 30},    // 1 PiB: MB << 20 stays far from overflow
    param_rule{"MIBPS", param_kind::number, 1ULL << 20}, // 1 TiB/s: << 20 and * 10^6 stay far from overflow
    param_rule{"SIG", param_kind::signal},
    param_rule{"NAME", param_kind::rlimit},
    param_rule{"TEXT", param_kind::text},
    param_rule{"PATH", param_kind::text},
    param_rule{"FIELD", param_kind::text},
    param_rule{"NS", param_kind::text},
    param_rule{"[VAR]", param_kind::optional_var},
    param_rule{"ARG...", param_kind::rest},
};

const param_rule* find_param_rule(std::string_view word) {
    for (const auto& rule : param_rules)
        if (rule.word == word) return &rule;
    return nullptr;
}

bool valid_argument(const param_rule& rule, std::string_view text) {
    switch (rule.kind) {
    case param_kind::number: {
        const auto value = parse_number(text);
        return value && *value <= rule.max;
    }
    case param_kind::signal:
        return parse_signal(text).has_value();
    case param_kind::rlimit:
        return parse_rlimit(text).has_value();
    case param_kind::text:
    case param_kind::optional_var:
    case param_kind::rest:
        return true;
    }
    return false;
}

// The arguments of one operation: pointers into argv, so they stay NUL-terminated C strings.
using args_t = std::span<char* const>;

// Numeric arguments were range-checked before the script started; this only converts.
unsigned long long number_arg(args_t args, std::size_t index) {
    const auto value = parse_number(args[index]);
    if (!value) fail(exit_usage, {"bad number '", args[index], "'"});
    return *value;
}

int int_arg(args_t args, std::size_t index) {
    return static_cast<int>(number_arg(args, index));
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by several operations

void sleep_ms(unsigned long long ms) {
    timespec request{};
    request.tv_sec = static_cast<time_t>(ms / 1000);
    request.tv_nsec = static_cast<long>(ms % 1000) * 1'000'000L;
    timespec remaining{};
    // A signal handler that returns (any but trap-term's) must not cut the sleep short.
    while (::nanosleep(&request, &remaining) != 0) {
        if (errno != EINTR) fail_syscall("nanosleep");
        request = remaining;
    }
}

pid_t fork_or_fail() {
    const pid_t pid = ::fork();
    if (pid < 0) fail_syscall("fork");
    return pid;
}

std::string read_whole_file(const char* path) {
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail_syscall(std::string("open ") + path);
    std::string text;
    char buf[4096];
    while (const std::size_t n = read_some(fd, buf, sizeof buf, std::string("read ") + path))
        text.append(buf, n);
    close_or_fail(fd, std::string("close ") + path);
    return text;
}

// The line of a /proc status file whose key is `key` ("Key:\tvalue"), without its newline.
std::optional<std::string_view> find_status_line(std::string_view text, std::string_view key) {
    while (!text.empty()) {
        const std::size_t eol = text.find('\n');
        const std::string_view line = text.substr(0, eol);
        if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == ':') return line;
        if (eol == std::string_view::npos) break;
        text.remove_prefix(eol + 1);
    }
    return std::nullopt;
}

void set_disposition(int sig, void (*handler)(int)) {
    struct sigaction action {};
    action.sa_handler = handler;
    if (::sigemptyset(&action.sa_mask) != 0) fail_syscall("sigemptyset");
    if (::sigaction(sig, &action, nullptr) != 0) fail_syscall("sigaction");
}

void copy_stream(int from, int to, bool to_upper, std::string_view what) {
    std::vector<char> buf(io_chunk);
    while (const std::size_t n = read_some(from, buf.data(), buf.size(), what)) {
        if (to_upper)
            for (std::size_t i = 0; i < n; ++i)
                if (buf[i] >= 'a' && buf[i] <= 'z') buf[i] = static_cast<char>(buf[i] - 'a' + 'A');
        emit(to, std::string_view(buf.data(), n));
    }
}

void write_pattern(int fd, unsigned long long bytes) {
    constexpr std::string_view pattern = "abcdefghijklmnopqrstuvwxyz0123456789\n";
    static_assert(pattern.size() == 37);
    // One chunk plus a pattern's worth of slack, so that any chunk can start at any phase of the
    // pattern: byte i of the output is pattern[i % 37] across chunk boundaries.
    std::string buf;
    buf.reserve(io_chunk + pattern.size());
    while (buf.size() < io_chunk + pattern.size()) buf += pattern;
    unsigned long long written = 0;
    while (written < bytes) {
        const std::size_t phase = static_cast<std::size_t>(written % pattern.size());
        const std::size_t n =
            static_cast<std::size_t>(std::min<unsigned long long>(io_chunk, bytes - written));
        emit(fd, std::string_view(buf.data() + phase, n));
        written += n;
    }
}

void spawn_grandchild(unsigned long long ms, bool new_session) {
    const pid_t pid = fork_or_fail();
    if (pid == 0) {
        if (new_session && ::setsid() < 0) fail_syscall("setsid");
        sleep_ms(ms);
        ::_exit(0);
    }
    out("grandchild " + std::to_string(pid) + "\n");
}

// SIGTERM handler for trap-term: only write(2) and _exit(2), both async-signal-safe.
void on_term(int) {
    static constexpr char message[] = "got TERM\n";
    (void)write_fully(STDOUT_FILENO, message, sizeof message - 1);
    ::_exit(0);
}

// Handler of report-signal: formats by hand, since only write(2) and getpid(2) are
// async-signal-safe here.
void on_reported_signal(int sig) {
    const int saved_errno = errno; // the interrupted code may be about to read errno
    char line[64] = "got signal ";
    std::size_t len = sizeof "got signal " - 1;
    auto append_number = [&](unsigned long long v) {
        char digits[24];
        std::size_t n = 0;
        do digits[n++] = static_cast<char>('0' + v % 10);
        while ((v /= 10) != 0);
        while (n > 0) line[len++] = digits[--n];
    };
    append_number(static_cast<unsigned long long>(sig));
    for (char c : std::string_view(" pid ")) line[len++] = c;
    append_number(static_cast<unsigned long long>(::getpid()));
    line[len++] = '\n';
    (void)write_fully(STDOUT_FILENO, line, len);
    errno = saved_errno;
}

// ---------------------------------------------------------------------------------------------
// Operations, in the order of the table below

void op_exit(args_t args) {
    ::_exit(int_arg(args, 0));
}

void op_sleep(args_t args) {
    sleep_ms(number_arg(args, 0));
}

void op_signal(args_t args) {
    const int sig = *parse_signal(args[0]);
    // KILL and STOP cannot be caught or ignored, and sigaction refuses to touch them.
    if (sig != SIGKILL && sig != SIGSTOP) set_disposition(sig, SIG_DFL);
    sigset_t set;
    if (::sigemptyset(&set) != 0 || ::sigaddset(&set, sig) != 0) fail_syscall("sigaddset");
    if (::sigprocmask(SIG_UNBLOCK, &set, nullptr) != 0) fail_syscall("sigprocmask");
    if (::raise(sig) != 0) fail_syscall("raise");
    // Signals whose default is to ignore (CHLD, CONT) or stop (after a SIGCONT) land here.
    ::_exit(exit_signal_survived);
}

void op_print_fds(args_t) {
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) fail_syscall("opendir /proc/self/fd");
    const int dir_fd = ::dirfd(dir); // an artefact of looking, not one of "our" descriptors
    if (dir_fd < 0) fail_syscall("dirfd");
    std::vector<int> fds;
    for (;;) {
        errno = 0;
        const dirent* entry = ::readdir(dir);
        if (entry == nullptr) {
            if (errno != 0) fail_syscall("readdir /proc/self/fd");
            break;
        }
        const auto fd = parse_number(entry->d_name); // skips "." and ".."
        if (fd && *fd <= INT_MAX && static_cast<int>(*fd) != dir_fd) fds.push_back(static_cast<int>(*fd));
    }
    if (::closedir(dir) != 0) fail_syscall("closedir");
    std::sort(fds.begin(), fds.end());
    std::string line;
    for (std::size_t i = 0; i < fds.size(); ++i) {
        if (i != 0) line += ' ';
        line += std::to_string(fds[i]);
    }
    out(line + "\n");
}

void op_print_sigmask(args_t) {
    const std::string status = read_whole_file("/proc/self/status");
    std::string lines;
    for (std::string_view key : {"SigBlk", "SigIgn"}) {
        const auto line = find_status_line(status, key);
        if (!line) fail(exit_syscall_failed, {"no ", key, " line in /proc/self/status"});
        lines.append(*line).append("\n");
    }
    out(lines);
}

void op_print_env(args_t args) {
    if (args.empty()) {
        std::string all;
        for (char** entry = environ; *entry != nullptr; ++entry) all.append(*entry).append("\n");
        out(all);
        return;
    }
    // Scan environ rather than getenv() so a VAR containing '=' cannot match by accident.
    const std::string_view var = args[0];
    for (char** entry = environ; *entry != nullptr; ++entry) {
        const std::string_view text = *entry;
        if (text.size() > var.size() && text.starts_with(var) && text[var.size()] == '=') {
            out(std::string(text.substr(var.size() + 1)) + "\n");
            return;
        }
    }
    ::_exit(exit_not_found);
}

void op_print_env0(args_t) {
    std::string all;
    for (char** entry = environ; *entry != nullptr; ++entry) all.append(*entry, std::strlen(*entry) + 1);
    out(all);
}

void op_echo_args(args_t args) {
    std::string all;
    for (const char* arg : args) all.append(arg, std::strlen(arg) + 1); // + 1: the NUL separator
    out(all);
}

void op_ignore_term(args_t args) {
    set_disposition(SIGTERM, SIG_IGN);
    out("ignoring TERM\n");
    sleep_ms(number_arg(args, 0));
}

void op_trap_term(args_t args) {
    // Installed before the announcement, so a test that waits for the line cannot race it.
    set_disposition(SIGTERM, on_term);
    out("trapping TERM\n");
    sleep_ms(number_arg(args, 0));
}

void op_report_signal(args_t args) {
    set_disposition(*parse_signal(args[0]), on_reported_signal);
}

void op_spawn_grandchild(args_t args) {
    spawn_grandchild(number_arg(args, 0), false);
}

void op_spawn_grandchild_setsid(args_t args) {
    spawn_grandchild(number_arg(args, 0), true);
}

void op_spawn_orphan(args_t args) {
    const unsigned long long ms = number_arg(args, 0);
    const pid_t middle = fork_or_fail();
    if (middle == 0) {
        const pid_t grandchild = fork_or_fail();
        if (grandchild == 0) {
            sleep_ms(ms);
            ::_exit(0);
        }
        out("orphan " + std::to_string(grandchild) + "\n");
        ::_exit(0);
    }
    // Waiting for the middle process guarantees the grandchild is already orphaned (reparented
    // to a subreaper or init) and its pid printed before the script goes on.
    int status = 0;
    while (::waitpid(middle, &status, 0) < 0)
        if (errno != EINTR) fail_syscall("waitpid");
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0) ::_exit(WEXITSTATUS(status)); // it reported
    if (!WIFEXITED(status))
        fail(exit_syscall_failed,
             {"spawn-orphan: intermediate child killed by signal ", std::to_string(WTERMSIG(status))});
}

void op_wait_children(args_t) {
    unsigned long long reaped = 0;
    for (;;) {
        int status = 0;
        if (::waitpid(-1, &status, 0) >= 0) {
            ++reaped;
        } else if (errno == ECHILD) {
            break;
        } else if (errno != EINTR) {
            fail_syscall("waitpid");
        }
    }
    out("reaped " + std::to_string(reaped) + "\n");
}

void op_write_stdout(args_t args) {
    write_pattern(STDOUT_FILENO, number_arg(args, 0));
}

void op_write_stderr(args_t args) {
    write_pattern(STDERR_FILENO, number_arg(args, 0));
}

void op_write_line(args_t args) {
    out(std::string(args[0]) + "\n");
}

void op_write_line_stderr(args_t args) {
    emit(STDERR_FILENO, std::string(args[0]) + "\n");
}

void op_read_stdin(args_t) {
    std::vector<char> buf(io_chunk);
    unsigned long long total = 0;
    while (const std::size_t n = read_some(STDIN_FILENO, buf.data(), buf.size(), "read stdin")) total += n;
    out("read " + std::to_string(total) + " bytes\n");
}

void op_cat(args_t) {
    copy_stream(STDIN_FILENO, STDOUT_FILENO, false, "read stdin");
}

void op_upper(args_t) {
    copy_stream(STDIN_FILENO, STDOUT_FILENO, true, "read stdin");
}

void op_head_lines(args_t args) {
    const unsigned long long wanted = number_arg(args, 0);
    // One byte per read so that nothing past the last wanted newline is consumed: whatever
    // follows stays in the pipe for the next operation or process.
    std::string line;
    for (unsigned long long seen = 0; seen < wanted;) {
        char c = 0;
        if (read_some(STDIN_FILENO, &c, 1, "read stdin") == 0) break;
        line += c;
        if (c == '\n') {
            out(line);
            line.clear();
            ++seen;
        }
    }
    out(line); // an unterminated last line at EOF
}

void op_yes(args_t) {
    std::string buf;
    buf.reserve(io_chunk);
    while (buf.size() < io_chunk) buf += "y\n";
    for (;;) out(buf); // ends by SIGPIPE, or by exit 3 from out() when SIGPIPE is ignored
}

void op_count(args_t args) {
    const unsigned long long n = number_arg(args, 0);
    const unsigned long long ms = number_arg(args, 1);
    const std::string prefix = "count " + std::to_string(::getpid()) + " ";
    for (unsigned long long i = 0; n == 0 || i < n; ++i) {
        if (i != 0 && ms != 0) sleep_ms(ms);
        out(prefix + std::to_string(i) + "\n"); // one write: a line is in the pipe whole or not at all
    }
}

void op_flood(args_t args) {
    const unsigned long long mibps = number_arg(args, 0);
    constexpr std::string_view pattern = "abcdefghijklmnopqrstuvwxyz0123456789\n";
    std::string buf;
    while (buf.size() < io_chunk) buf += pattern;
    buf.resize(io_chunk - io_chunk % pattern.size()); // whole lines in every write
    // Pacing by the clock rather than by sleeping a fixed time per chunk: a slow reader (a full
    // pipe) does not make the writer burst later to catch up by more than one second's worth.
    const auto start = std::chrono::steady_clock::now();
    unsigned long long written = 0;
    for (;;) {
        out(buf);
        written += buf.size();
        if (mibps == 0) continue;
        const auto due = start + std::chrono::microseconds(written * 1'000'000ULL / (mibps << 20));
        const auto now = std::chrono::steady_clock::now();
        if (due > now)
            sleep_ms(static_cast<unsigned long long>(
                std::chrono::duration_cast<std::chrono::milliseconds>(due - now).count()));
        else if (now - due > std::chrono::seconds(1))
            written = static_cast<unsigned long long>(
                          std::chrono::duration_cast<std::chrono::microseconds>(now - start).count()) *
                      (mibps << 20) / 1'000'000ULL;
    }
}

void op_write_hostile(args_t) {
    // Terminal escapes (clear screen, a title, a hyperlink), C1 controls as raw bytes and as
    // UTF-8, bidi overrides (U+202E, U+2066), a NUL, invalid UTF-8 (a lone continuation byte, a
    // truncated sequence, an overlong '/', a surrogate), carriage return and backspace.
    static constexpr char line[] = "hostile \x1b[2J\x1b[31mred\x1b]0;title\x07\x1b]8;;http://x/\x1b\\link"
                                   "\x1b]8;;\x1b\\ c1:\x9b\x85\xc2\x9b bidi:\xe2\x80\xae"
                                   "evil\xe2\x81\xa6x"
                                   " nul:\0 bad:\x80\xe2\x82 \xc0\xaf \xed\xa0\x80 \xff cr:\rbs:\b end\n";
    out(std::string_view(line, sizeof line - 1));
}

// Closing an already closed descriptor is not an error: the script wants it closed, and it is.
void close_standard_fd(int fd, std::string_view what) {
    if (::close(fd) != 0 && errno != EBADF && errno != EINTR) fail_syscall(what);
}

void op_close_stdin(args_t) {
    close_standard_fd(STDIN_FILENO, "close stdin");
}

void op_close_stdout(args_t) {
    close_standard_fd(STDOUT_FILENO, "close stdout");
}

void op_close_stderr(args_t) {
    close_standard_fd(STDERR_FILENO, "close stderr");
}

void op_print_pid(args_t) {
    out("pid " + std::to_string(::getpid()) + "\n");
}

void op_print_ppid(args_t) {
    out("ppid " + std::to_string(::getppid()) + "\n");
}

void op_print_ids(args_t) {
    const pid_t sid = ::getsid(0);
    if (sid < 0) fail_syscall("getsid");
    const pid_t pgid = ::getpgid(0);
    if (pgid < 0) fail_syscall("getpgid");
    out("pid " + std::to_string(::getpid()) + " ppid " + std::to_string(::getppid()) + " sid " +
        std::to_string(sid) + " pgid " + std::to_string(pgid) + "\n");
}

void op_print_cwd(args_t) {
    std::string buf(256, '\0');
    while (::getcwd(buf.data(), buf.size()) == nullptr) {
        if (errno != ERANGE) fail_syscall("getcwd");
        buf.resize(buf.size() * 2);
    }
    out(std::string(buf.c_str()) + "\n");
}

void op_print_nonblock(args_t) {
    std::string line;
    for (int fd = 0; fd <= 2; ++fd) {
        if (fd != 0) line += ' ';
        line += std::to_string(fd) + ":";
        const int flags = ::fcntl(fd, F_GETFL);
        if (flags < 0) {
            if (errno != EBADF) fail_syscall("fcntl F_GETFL");
            line += '-';
        } else {
            line += (flags & O_NONBLOCK) != 0 ? '1' : '0';
        }
    }
    out(line + "\n");
}

void op_print_tty(args_t) {
    std::string line;
    for (int fd = 0; fd <= 2; ++fd) line += std::to_string(fd) + ":" + (::isatty(fd) == 1 ? "1 " : "0 ");
    // The controlling terminal: /dev/tty opens only if there is one.
    const int tty = ::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (tty >= 0) ::close(tty);
    line += std::string("ctty:") + (tty >= 0 ? "1" : "0");
    out(line + "\n");
}

void op_print_winsize(args_t) {
    winsize ws{};
    if (::ioctl(0, TIOCGWINSZ, &ws) != 0) fail_syscall("TIOCGWINSZ");
    out("winsize " + std::to_string(ws.ws_row) + " " + std::to_string(ws.ws_col) + "\n");
}

void op_wait_winch(args_t args) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGWINCH);
    if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) fail_syscall("sigprocmask");
    out("waiting for WINCH\n");
    const unsigned long long ms = number_arg(args, 0);
    const timespec ts{static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1000000L};
    int sig;
    do sig = ::sigtimedwait(&set, nullptr, &ts);
    while (sig < 0 && errno == EINTR);
    if (sig != SIGWINCH) {
        out("no WINCH\n");
        return;
    }
    winsize ws{};
    if (::ioctl(0, TIOCGWINSZ, &ws) != 0) fail_syscall("TIOCGWINSZ");
    out("WINCH " + std::to_string(ws.ws_row) + " " + std::to_string(ws.ws_col) + "\n");
}

void op_print_rlimit(args_t args) {
    rlimit limit{};
    if (::getrlimit(*parse_rlimit(args[0]), &limit) != 0) fail_syscall("getrlimit");
    auto show = [](rlim_t value) {
        return value == RLIM_INFINITY ? std::string("unlimited") : std::to_string(value);
    };
    out(show(limit.rlim_cur) + " " + show(limit.rlim_max) + "\n");
}

void op_print_umask(args_t) {
    // umask() can only be read by setting it; put the old value straight back.
    const mode_t mask = ::umask(0);
    ::umask(mask);
    const char line[] = {'0', static_cast<char>('0' + ((mask >> 6) & 7)),
                         static_cast<char>('0' + ((mask >> 3) & 7)), static_cast<char>('0' + (mask & 7)),
                         '\n'};
    out(std::string_view(line, sizeof line));
}

void op_print_creds(args_t) {
    uid_t ruid = 0, euid = 0, suid = 0;
    gid_t rgid = 0, egid = 0, sgid = 0;
    if (::getresuid(&ruid, &euid, &suid) != 0) fail_syscall("getresuid");
    if (::getresgid(&rgid, &egid, &sgid) != 0) fail_syscall("getresgid");
    const int count = ::getgroups(0, nullptr);
    if (count < 0) fail_syscall("getgroups");
    std::vector<gid_t> groups(static_cast<std::size_t>(count));
    const int got = ::getgroups(count, groups.data());
    if (got < 0) fail_syscall("getgroups");
    std::string line = "uid " + std::to_string(ruid) + " " + std::to_string(euid) + " " +
                       std::to_string(suid) + " gid " + std::to_string(rgid) + " " + std::to_string(egid) +
                       " " + std::to_string(sgid) + " groups ";
    for (int i = 0; i < got; ++i) {
        if (i != 0) line += ',';
        line += std::to_string(groups[static_cast<std::size_t>(i)]);
    }
    out(line + "\n");
}

void op_print_pdeathsig(args_t) {
    int sig = 0;
    if (::prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0) != 0) fail_syscall("prctl PR_GET_PDEATHSIG");
    out("pdeathsig " + std::to_string(sig) + "\n");
}

void op_print_nnp(args_t) {
    const int nnp = ::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
    if (nnp < 0) fail_syscall("prctl PR_GET_NO_NEW_PRIVS");
    out("nnp " + std::to_string(nnp) + "\n");
}

void op_print_status(args_t args) {
    const std::string status = read_whole_file("/proc/self/status");
    const auto line = find_status_line(status, args[0]);
    if (!line) ::_exit(exit_not_found);
    out(std::string(*line) + "\n");
}

void op_stop_self(args_t) {
    if (::raise(SIGSTOP) != 0) fail_syscall("raise SIGSTOP");
}

void op_touch(args_t args) {
    const int fd = ::open(args[0], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail_syscall(std::string("touch ") + args[0]);
    close_or_fail(fd, std::string("touch ") + args[0]);
}

void op_try_setuid(args_t args) {
    if (::setuid(static_cast<uid_t>(number_arg(args, 0))) == 0) {
        out("setuid ok\n");
        return;
    }
    const int err = errno;
    const char* name = ::strerrorname_np(err);
    out(std::string("setuid failed ") + (name != nullptr ? std::string(name) : std::to_string(err)) + "\n");
}

void op_fd_write(args_t args) {
    const std::string line = std::string(args[1]) + "\n";
    if (const int err = write_fully(int_arg(args, 0), line.data(), line.size()); err != 0)
        fail(exit_syscall_failed, {"fd-write ", args[0], ": ", std::strerror(err)});
}

void op_fd_read(args_t args) {
    copy_stream(int_arg(args, 0), STDOUT_FILENO, false, std::string("fd-read ") + args[0]);
}

void op_fork_children(args_t args) {
    const unsigned long long count = number_arg(args, 0);
    const unsigned long long ms = number_arg(args, 1);
    for (unsigned long long i = 0; i < count; ++i) {
        if (fork_or_fail() == 0) {
            sleep_ms(ms);
            ::_exit(0);
        }
    }
    out("forked " + std::to_string(count) + "\n");
}

void op_alloc(args_t args) {
    const unsigned long long mb = number_arg(args, 0);
    const std::size_t bytes = static_cast<std::size_t>(mb) << 20;
    if (bytes != 0) {
        // mmap rather than new: a refused allocation (RLIMIT_AS, overcommit) is a plain exit 2
        // with a message, not an exception. The mapping is never unmapped: holding it is the point.
        void* memory = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (memory == MAP_FAILED) fail_syscall("alloc " + std::to_string(mb) + " MiB");
        const long page = ::sysconf(_SC_PAGESIZE);
        if (page <= 0) fail_syscall("sysconf _SC_PAGESIZE");
        // Touch every page so the memory is really resident (and charged to a memory cgroup).
        auto* bytes_ptr = static_cast<volatile unsigned char*>(memory);
        for (std::size_t offset = 0; offset < bytes; offset += static_cast<std::size_t>(page))
            bytes_ptr[offset] = 1;
    }
    out("allocated " + std::to_string(mb) + "\n");
}

void op_busy(args_t args) {
    const auto until = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(static_cast<long long>(number_arg(args, 0)));
    // Each now() is a real clock read, so the loop cannot be optimised away and burns CPU time.
    while (std::chrono::steady_clock::now() < until) {
    }
}

// ---------------------------------------------------------------------------------------------
// The operation table and the script runner

void op_print_proc_pids(args_t) {
    std::vector<long> pids;
    DIR* d = ::opendir("/proc");
    if (d == nullptr) fail_syscall("opendir /proc");
    while (dirent* e = ::readdir(d)) {
        std::string_view n = e->d_name;
        if (n.empty() || n.find_first_not_of("0123456789") != std::string_view::npos) continue;
        pids.push_back(std::stol(std::string(n)));
    }
    ::closedir(d);
    std::sort(pids.begin(), pids.end());
    std::string text;
    for (long p : pids) text += std::to_string(p) + "\n";
    out(text);
}

void op_print_netdevs(args_t) {
    const std::string dev = read_whole_file("/proc/self/net/dev");
    std::string text;
    std::size_t pos = 0;
    int line = 0;
    const int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    while (pos < dev.size()) {
        auto nl = dev.find('\n', pos);
        std::string l = dev.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        pos = nl == std::string::npos ? dev.size() : nl + 1;
        if (++line <= 2) continue; // two header lines
        auto colon = l.find(':');
        if (colon == std::string::npos) continue;
        auto start = l.find_first_not_of(' ');
        std::string name = l.substr(start, colon - start);
        struct ifreq req {};
        std::memcpy(req.ifr_name, name.c_str(), std::min(name.size(), sizeof req.ifr_name - 1));
        const bool up = sock >= 0 && ::ioctl(sock, SIOCGIFFLAGS, &req) == 0 && (req.ifr_flags & IFF_UP) != 0;
        text += name + (up ? " up\n" : " down\n");
    }
    if (sock >= 0) ::close(sock);
    out(text);
}

void op_print_ns(args_t args) {
    const std::string path = "/proc/self/ns/" + std::string(args[0]);
    char buf[256];
    const ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
    if (n < 0) fail_syscall("readlink " + path);
    out(std::string(buf, static_cast<std::size_t>(n)) + "\n");
}

void op_print_file(args_t args) {
    const std::string path(args[0]);
    out(read_whole_file(path.c_str()));
}

void op_set_comm(args_t args) {
    const std::string name(args[0]);
    if (::prctl(PR_SET_NAME, name.c_str(), 0, 0, 0) != 0) fail_syscall("prctl PR_SET_NAME");
}

void op_try_fork(args_t) {
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    if (pid < 0) {
        const char* name = strerrorname_np(errno);
        out(std::string("fork failed ") + (name != nullptr ? name : "?") + "\n");
        return;
    }
    ::waitpid(pid, nullptr, 0);
    out("fork ok\n");
}

// A tracer that sits on the exit: between the tracee's death and the tracer's wait, the pidfd
// of the tracee is readable for its parent, but the parent's waitid has nothing to reap.
void op_trace(args_t args) {
    const auto pid = static_cast<pid_t>(number_arg(args, 0));
    const unsigned long long hold = number_arg(args, 1);
    if (::ptrace(PTRACE_SEIZE, pid, nullptr, nullptr) != 0) fail_syscall("ptrace PTRACE_SEIZE");
    out("tracing " + std::to_string(pid) + "\n");
    for (;;) {
        siginfo_t si{};
        // WNOWAIT first, so that an exit is seen without being taken.
        if (::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WSTOPPED | WNOWAIT | __WALL) != 0) {
            if (errno == EINTR) continue;
            fail_syscall("waitid");
        }
        if (si.si_code == CLD_EXITED || si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED) break;
        int status = 0;
        if (::waitpid(pid, &status, __WALL) < 0) {
            if (errno == EINTR) continue;
            fail_syscall("waitpid");
        }
        if (!WIFSTOPPED(status)) continue;
        // A signal-delivery stop passes the signal on; other stops (group stop, events) resume.
        const int sig = (status >> 16) == 0 ? WSTOPSIG(status) : 0;
        ::ptrace(PTRACE_CONT, pid, nullptr, reinterpret_cast<void*>(static_cast<long>(sig)));
    }
    sleep_ms(hold);
    int status = 0;
    while (::waitpid(pid, &status, __WALL) < 0)
        if (errno != EINTR) fail_syscall("waitpid");
    out("released\n");
}

struct op_spec {
    std::string_view name;
    std::string_view params; // space separated parameter names, see param_rules
    void (*run)(args_t args);
};

constexpr std::array op_table{
    op_spec{"exit", "STATUS", op_exit},
    op_spec{"sleep", "MS", op_sleep},
    op_spec{"signal", "SIG", op_signal},
    op_spec{"print-fds", "", op_print_fds},
    op_spec{"print-sigmask", "", op_print_sigmask},
    op_spec{"print-env", "[VAR]", op_print_env},
    op_spec{"print-env0", "", op_print_env0},
    op_spec{"echo-args", "ARG...", op_echo_args},
    op_spec{"ignore-term", "MS", op_ignore_term},
    op_spec{"trap-term", "MS", op_trap_term},
    op_spec{"report-signal", "SIG", op_report_signal},
    op_spec{"spawn-grandchild", "MS", op_spawn_grandchild},
    op_spec{"spawn-grandchild-setsid", "MS", op_spawn_grandchild_setsid},
    op_spec{"spawn-orphan", "MS", op_spawn_orphan},
    op_spec{"wait-children", "", op_wait_children},
    op_spec{"write-stdout", "BYTES", op_write_stdout},
    op_spec{"write-stderr", "BYTES", op_write_stderr},
    op_spec{"write-line", "TEXT", op_write_line},
    op_spec{"write-line-stderr", "TEXT", op_write_line_stderr},
    op_spec{"read-stdin", "", op_read_stdin},
    op_spec{"cat", "", op_cat},
    op_spec{"upper", "", op_upper},
    op_spec{"head-lines", "N", op_head_lines},
    op_spec{"yes", "", op_yes},
    op_spec{"count", "N MS", op_count},
    op_spec{"flood", "MIBPS", op_flood},
    op_spec{"write-hostile", "", op_write_hostile},
    op_spec{"close-stdin", "", op_close_stdin},
    op_spec{"close-stdout", "", op_close_stdout},
    op_spec{"close-stderr", "", op_close_stderr},
    op_spec{"print-pid", "", op_print_pid},
    op_spec{"print-ppid", "", op_print_ppid},
    op_spec{"print-ids", "", op_print_ids},
    op_spec{"print-cwd", "", op_print_cwd},
    op_spec{"print-nonblock", "", op_print_nonblock},
    op_spec{"print-tty", "", op_print_tty},
    op_spec{"print-winsize", "", op_print_winsize},
    op_spec{"wait-winch", "MS", op_wait_winch},
    op_spec{"print-rlimit", "NAME", op_print_rlimit},
    op_spec{"print-umask", "", op_print_umask},
    op_spec{"print-creds", "", op_print_creds},
    op_spec{"print-pdeathsig", "", op_print_pdeathsig},
    op_spec{"print-nnp", "", op_print_nnp},
    op_spec{"print-status", "FIELD", op_print_status},
    op_spec{"stop-self", "", op_stop_self},
    op_spec{"touch", "PATH", op_touch},
    op_spec{"try-setuid", "UID", op_try_setuid},
    op_spec{"fd-write", "FD TEXT", op_fd_write},
    op_spec{"fd-read", "FD", op_fd_read},
    op_spec{"fork-children", "N MS", op_fork_children},
    op_spec{"alloc", "MB", op_alloc},
    op_spec{"busy", "MS", op_busy},
    op_spec{"print-proc-pids", "", op_print_proc_pids},
    op_spec{"print-netdevs", "", op_print_netdevs},
    op_spec{"print-ns", "NS", op_print_ns},
    op_spec{"print-file", "PATH", op_print_file},
    op_spec{"try-fork", "", op_try_fork},
    op_spec{"set-comm", "TEXT", op_set_comm},
    op_spec{"trace", "PID MS", op_trace},
};

const op_spec* find_op(std::string_view name) {
    for (const auto& op : op_table)
        if (op.name == name) return &op;
    return nullptr;
}

[[noreturn]] void usage() {
    std::string text = "usage: drover-test-child OP [ARG...] [OP [ARG...]]...\n"
                       "Runs the operations left to right, then exits 0. Operations:\n";
    for (const auto& op : op_table) {
        text.append("  ").append(op.name);
        if (!op.params.empty()) text.append(" ").append(op.params);
        text += '\n';
    }
    (void)write_fully(STDERR_FILENO, text.data(), text.size());
    ::_exit(exit_usage);
}

struct step {
    const op_spec* op;
    args_t args;
};

// Checks the whole script and splits it into steps before anything runs.
std::vector<step> parse_script(std::span<char* const> words) {
    std::vector<step> script;
    std::size_t next = 0;
    while (next < words.size()) {
        const op_spec* op = find_op(words[next]);
        if (op == nullptr) fail(exit_usage, {"unknown operation '", words[next], "'"});
        const std::size_t first = ++next;
        std::string_view params = op->params;
        while (!params.empty()) {
            const std::size_t space = params.find(' ');
            const std::string_view word = params.substr(0, space);
            params = space == std::string_view::npos ? std::string_view{} : params.substr(space + 1);
            const param_rule* rule = find_param_rule(word);
            if (rule == nullptr) fail(exit_usage, {"internal error: no rule for parameter ", word});
            if (rule->kind == param_kind::rest) {
                next = words.size();
            } else if (rule->kind == param_kind::optional_var) {
                // Optional, so it must not swallow the next operation.
                if (next < words.size() && find_op(words[next]) == nullptr) ++next;
            } else {
                if (next >= words.size()) fail(exit_usage, {op->name, ": missing argument ", word});
                if (!valid_argument(*rule, words[next]))
                    fail(exit_usage, {op->name, ": bad ", word, " '", words[next], "'"});
                ++next;
            }
        }
        script.push_back(step{op, words.subspan(first, next - first)});
    }
    return script;
}

} // namespace

int main(int argc, char** argv) {
    try {
        if (argc < 2) usage();
        const std::vector<step> script =
            parse_script(std::span<char* const>(argv + 1, static_cast<std::size_t>(argc - 1)));
        for (const step& s : script) s.op->run(s.args);
        return 0;
    } catch (const std::exception& e) {
        fail(exit_usage, {e.what()});
    } catch (...) {
        fail(exit_usage, {"unknown exception"});
    }
}
