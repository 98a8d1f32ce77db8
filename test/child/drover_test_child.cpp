// drover-test-child: the scripted helper that tests run as a child, so that no test depends on
// the host's shell tools for behaviour.
//
// argv[1..] is a script: operations run left to right, each a name plus a fixed number of
// arguments; after the last one the program exits 0. Unknown operation or bad argument: a
// message on stderr and exit 64. Write errors: a message and exit 3 (unless SIGPIPE kills first).
//
// Operations:
//   exit N | sleep MS | signal SIG | print-fds | print-sigmask | print-env [VAR] | print-env0
//   echo-args ARGS... (each arg + NUL; consumes the rest) | ignore-term MS | trap-term MS
//   spawn-grandchild MS | spawn-grandchild-setsid MS | spawn-orphan MS | wait-children
//   write-stdout BYTES | write-stderr BYTES | write-line TEXT | write-line-stderr TEXT
//   read-stdin | cat | upper | head-lines N | yes | close-stdin | close-stdout | close-stderr
//   print-pid | print-ppid | print-ids | print-cwd | print-nonblock | print-rlimit NAME
//   print-umask | print-creds | print-pdeathsig | print-nnp | print-status FIELD | stop-self
//   touch PATH | try-setuid UID | fd-write FD TEXT | fd-read FD | fork-children N MS
//   alloc MB | busy MS
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

extern char** environ;

namespace {

[[noreturn]] void die(const std::string& msg, int code = 64) {
    std::string m = "drover-test-child: " + msg + "\n";
    (void)!::write(2, m.data(), m.size());
    ::_exit(code);
}

void write_all(int fd, const char* p, std::size_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            die(std::string("write: ") + std::strerror(errno), 3);
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}
void out(const std::string& s, int fd = 1) { write_all(fd, s.data(), s.size()); }

long number(const std::string& s) {
    char* end = nullptr;
    errno = 0;
    long v = std::strtol(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || errno != 0) die("not a number: '" + s + "'");
    return v;
}

void sleep_ms(long ms) {
    timespec ts{ms / 1000, (ms % 1000) * 1000000L}, rem{};
    while (::nanosleep(&ts, &rem) != 0 && errno == EINTR) ts = rem;
}

int signal_number(std::string s) {
    if (!s.empty() && std::isdigit(static_cast<unsigned char>(s[0]))) return static_cast<int>(number(s));
    if (s.rfind("SIG", 0) == 0) s = s.substr(3);
    for (int i = 1; i < 65; ++i)
        if (const char* a = ::sigabbrev_np(i); a != nullptr && s == a) return i;
    die("unknown signal '" + s + "'");
}

void copy(int from, int to, bool upper) {
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(from, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die(std::string("read: ") + std::strerror(errno), 2);
        if (n == 0) return;
        if (upper)
            for (ssize_t i = 0; i < n; ++i)
                if (buf[i] >= 'a' && buf[i] <= 'z') buf[i] = static_cast<char>(buf[i] - 'a' + 'A');
        write_all(to, buf, static_cast<std::size_t>(n));
    }
}

void write_pattern(int fd, long bytes) {
    static const char pattern[] = "abcdefghijklmnopqrstuvwxyz0123456789\n"; // 37 bytes
    std::string chunk;
    long i = 0;
    while (i < bytes) {
        chunk.clear();
        for (long j = 0; j < 65536 && i < bytes; ++j, ++i) chunk.push_back(pattern[i % 37]);
        write_all(fd, chunk.data(), chunk.size());
    }
}

std::string status_line(const std::string& key) {
    FILE* f = std::fopen("/proc/self/status", "r");
    if (!f) die("cannot open /proc/self/status", 2);
    char line[512];
    std::string found;
    while (std::fgets(line, sizeof line, f))
        if (std::strncmp(line, key.c_str(), key.size()) == 0 && line[key.size()] == ':') found = line;
    std::fclose(f);
    return found;
}

volatile sig_atomic_t g_unused = 0;

void on_term(int) {
    static const char msg[] = "got TERM\n";
    (void)!::write(1, msg, sizeof msg - 1);
    ::_exit(0);
}

pid_t fork_or_die() {
    pid_t p = ::fork();
    if (p < 0) die(std::string("fork: ") + std::strerror(errno), 2);
    return p;
}

} // namespace

int main(int argc, char** argv) try {
    if (argc < 2) die("usage: drover-test-child OP [ARGS...] [OP [ARGS...]]...");
    std::vector<std::string> a(argv + 1, argv + argc);
    std::size_t i = 0;
    auto arg = [&](const char* op) -> std::string {
        if (i >= a.size()) die(std::string(op) + ": missing argument");
        return a[i++];
    };
    static const std::vector<std::string> ops = {
        "exit", "sleep", "signal", "print-fds", "print-sigmask", "print-env", "print-env0", "echo-args",
        "ignore-term", "trap-term", "spawn-grandchild", "spawn-grandchild-setsid", "spawn-orphan",
        "wait-children", "write-stdout", "write-stderr", "write-line", "write-line-stderr", "read-stdin",
        "cat", "upper", "head-lines", "yes", "close-stdin", "close-stdout", "close-stderr", "print-pid",
        "print-ppid", "print-ids", "print-cwd", "print-nonblock", "print-rlimit", "print-umask",
        "print-creds", "print-pdeathsig", "print-nnp", "print-status", "stop-self", "touch", "try-setuid",
        "fd-write", "fd-read", "fork-children", "alloc", "busy"};
    auto is_op = [&](const std::string& s) { return std::find(ops.begin(), ops.end(), s) != ops.end(); };
    std::vector<std::vector<char>> kept;

    while (i < a.size()) {
        const std::string op = a[i++];
        if (op == "exit") ::_exit(static_cast<int>(number(arg("exit"))));
        else if (op == "sleep") sleep_ms(number(arg("sleep")));
        else if (op == "signal") {
            int sig = signal_number(arg("signal"));
            ::signal(sig, SIG_DFL);
            sigset_t s;
            sigemptyset(&s);
            sigaddset(&s, sig);
            ::sigprocmask(SIG_UNBLOCK, &s, nullptr);
            ::raise(sig);
            ::_exit(70);
        } else if (op == "print-fds") {
            DIR* d = ::opendir("/proc/self/fd");
            if (!d) die("opendir /proc/self/fd", 2);
            std::vector<int> fds;
            while (auto* e = ::readdir(d))
                if (e->d_name[0] != '.' && std::atoi(e->d_name) != ::dirfd(d)) fds.push_back(std::atoi(e->d_name));
            ::closedir(d);
            std::sort(fds.begin(), fds.end());
            std::string s;
            for (std::size_t k = 0; k < fds.size(); ++k) s += (k ? " " : "") + std::to_string(fds[k]);
            out(s + "\n");
        } else if (op == "print-sigmask") out(status_line("SigBlk") + status_line("SigIgn"));
        else if (op == "print-env") {
            if (i < a.size() && !is_op(a[i])) {
                const char* v = std::getenv(a[i++].c_str());
                if (!v) ::_exit(1);
                out(std::string(v) + "\n");
            } else {
                for (char** e = environ; *e; ++e) out(std::string(*e) + "\n");
            }
        } else if (op == "print-env0") {
            for (char** e = environ; *e; ++e) write_all(1, *e, std::strlen(*e) + 1);
        } else if (op == "echo-args") {
            for (; i < a.size(); ++i) write_all(1, a[i].c_str(), a[i].size() + 1);
            ::_exit(0);
        } else if (op == "ignore-term") {
            long ms = number(arg("ignore-term"));
            ::signal(SIGTERM, SIG_IGN);
            out("ignoring TERM\n");
            sleep_ms(ms);
        } else if (op == "trap-term") {
            long ms = number(arg("trap-term"));
            struct sigaction sa {};
            sa.sa_handler = on_term;
            sigemptyset(&sa.sa_mask);
            ::sigaction(SIGTERM, &sa, nullptr);
            out("trapping TERM\n");
            sleep_ms(ms);
        } else if (op == "spawn-grandchild" || op == "spawn-grandchild-setsid") {
            long ms = number(arg(op.c_str()));
            pid_t p = fork_or_die();
            if (p == 0) {
                if (op == "spawn-grandchild-setsid") ::setsid();
                sleep_ms(ms);
                ::_exit(0);
            }
            out("grandchild " + std::to_string(p) + "\n");
        } else if (op == "spawn-orphan") {
            long ms = number(arg("spawn-orphan"));
            pid_t mid = fork_or_die();
            if (mid == 0) {
                pid_t g = fork_or_die();
                if (g == 0) {
                    sleep_ms(ms);
                    ::_exit(0);
                }
                out("orphan " + std::to_string(g) + "\n");
                ::_exit(0);
            }
            int st;
            while (::waitpid(mid, &st, 0) < 0 && errno == EINTR) {
            }
        } else if (op == "wait-children") {
            int n = 0, st;
            for (;;) {
                pid_t p = ::waitpid(-1, &st, 0);
                if (p > 0) ++n;
                else if (errno != EINTR) break;
            }
            out("reaped " + std::to_string(n) + "\n");
        } else if (op == "write-stdout") write_pattern(1, number(arg("write-stdout")));
        else if (op == "write-stderr") write_pattern(2, number(arg("write-stderr")));
        else if (op == "write-line") out(arg("write-line") + "\n");
        else if (op == "write-line-stderr") out(arg("write-line-stderr") + "\n", 2);
        else if (op == "read-stdin") {
            char buf[65536];
            long total = 0;
            for (;;) {
                ssize_t n = ::read(0, buf, sizeof buf);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) break;
                total += n;
            }
            out("read " + std::to_string(total) + " bytes\n");
        } else if (op == "cat") copy(0, 1, false);
        else if (op == "upper") copy(0, 1, true);
        else if (op == "head-lines") {
            long want = number(arg("head-lines")), seen = 0;
            char c;
            while (seen < want) {
                ssize_t n = ::read(0, &c, 1);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) break;
                write_all(1, &c, 1);
                if (c == '\n') ++seen;
            }
        } else if (op == "yes") {
            std::string y;
            for (int k = 0; k < 8192; ++k) y += "y\n";
            for (;;) write_all(1, y.data(), y.size());
        } else if (op == "close-stdin") ::close(0);
        else if (op == "close-stdout") ::close(1);
        else if (op == "close-stderr") ::close(2);
        else if (op == "print-pid") out("pid " + std::to_string(::getpid()) + "\n");
        else if (op == "print-ppid") out("ppid " + std::to_string(::getppid()) + "\n");
        else if (op == "print-ids")
            out("pid " + std::to_string(::getpid()) + " ppid " + std::to_string(::getppid()) + " sid " +
                std::to_string(::getsid(0)) + " pgid " + std::to_string(::getpgid(0)) + "\n");
        else if (op == "print-cwd") {
            char buf[4096];
            if (!::getcwd(buf, sizeof buf)) die("getcwd", 2);
            out(std::string(buf) + "\n");
        } else if (op == "print-nonblock") {
            std::string s;
            for (int fd = 0; fd < 3; ++fd) {
                int fl = ::fcntl(fd, F_GETFL);
                s += (fd ? " " : "") + std::to_string(fd) + ":" + (fl < 0 ? "-" : (fl & O_NONBLOCK) ? "1" : "0");
            }
            out(s + "\n");
        } else if (op == "print-rlimit") {
            static const std::map<std::string, int> names = {
                {"NOFILE", RLIMIT_NOFILE}, {"NPROC", RLIMIT_NPROC}, {"CORE", RLIMIT_CORE}, {"AS", RLIMIT_AS},
                {"CPU", RLIMIT_CPU}, {"FSIZE", RLIMIT_FSIZE}, {"STACK", RLIMIT_STACK}, {"MEMLOCK", RLIMIT_MEMLOCK}};
            auto name = arg("print-rlimit");
            auto it = names.find(name);
            if (it == names.end()) die("unknown rlimit '" + name + "'");
            rlimit rl{};
            ::getrlimit(static_cast<__rlimit_resource>(it->second), &rl);
            auto show = [](rlim_t v) { return v == RLIM_INFINITY ? std::string("unlimited") : std::to_string(v); };
            out(show(rl.rlim_cur) + " " + show(rl.rlim_max) + "\n");
        } else if (op == "print-umask") {
            mode_t m = ::umask(0);
            ::umask(m);
            char buf[8];
            std::snprintf(buf, sizeof buf, "%04o\n", m);
            out(buf);
        } else if (op == "print-creds") {
            uid_t r, e, s;
            gid_t gr, ge, gs;
            ::getresuid(&r, &e, &s);
            ::getresgid(&gr, &ge, &gs);
            std::vector<gid_t> groups(static_cast<std::size_t>(std::max(::getgroups(0, nullptr), 0)));
            int n = ::getgroups(static_cast<int>(groups.size()), groups.data());
            std::string g;
            for (int k = 0; k < n; ++k) g += (k ? "," : "") + std::to_string(groups[static_cast<std::size_t>(k)]);
            out("uid " + std::to_string(r) + " " + std::to_string(e) + " " + std::to_string(s) + " gid " +
                std::to_string(gr) + " " + std::to_string(ge) + " " + std::to_string(gs) + " groups " + g + "\n");
        } else if (op == "print-pdeathsig") {
            int sig = 0;
            ::prctl(PR_GET_PDEATHSIG, &sig);
            out("pdeathsig " + std::to_string(sig) + "\n");
        } else if (op == "print-nnp") out("nnp " + std::to_string(::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)) + "\n");
        else if (op == "print-status") {
            auto l = status_line(arg("print-status"));
            if (l.empty()) ::_exit(1);
            out(l);
        } else if (op == "stop-self") ::raise(SIGSTOP);
        else if (op == "touch") {
            auto p = arg("touch");
            int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (fd < 0) die("touch " + p + ": " + std::strerror(errno), 2);
            ::close(fd);
        } else if (op == "try-setuid") {
            if (::setuid(static_cast<uid_t>(number(arg("try-setuid")))) == 0) out("setuid ok\n");
            else out(std::string("setuid failed ") + ::strerrorname_np(errno) + "\n");
        } else if (op == "fd-write") {
            int fd = static_cast<int>(number(arg("fd-write")));
            auto text = arg("fd-write") + "\n";
            if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
                die("fd-write: " + std::string(std::strerror(errno)), 2);
        } else if (op == "fd-read") copy(static_cast<int>(number(arg("fd-read"))), 1, false);
        else if (op == "fork-children") {
            long n = number(arg("fork-children")), ms = number(arg("fork-children"));
            for (long k = 0; k < n; ++k)
                if (fork_or_die() == 0) {
                    sleep_ms(ms);
                    ::_exit(0);
                }
            out("forked " + std::to_string(n) + "\n");
        } else if (op == "alloc") {
            long mb = number(arg("alloc"));
            kept.emplace_back(static_cast<std::size_t>(mb) << 20, 'x');
            out("allocated " + std::to_string(mb) + "\n");
        } else if (op == "busy") {
            auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(number(arg("busy")));
            while (std::chrono::steady_clock::now() < until) g_unused = g_unused + 1;
        } else die("unknown operation '" + op + "'");
    }
    return 0;
} catch (const std::exception& e) {
    die(e.what());
}
