// drover-guard: the guard of a cgroup tree, as a program of its own that `drover run` execs
// (drover/guard.hpp, guard_options::program). The same protocol as run_guard_if_requested:
//
//     drover-guard __drover_guard <leaf cgroup directory> <pid>
//
// stdin is a pipe whose write end only drover holds. One byte "d": dismissed, exit 0.
// End-of-file without it: drover is gone; write the leaf's cgroup.kill, wait (at most 5 s) for
// `populated 0`, remove the leaf (retrying EBUSY for 3 s while the killed processes are reaped)
// and drover's directory above it when that is empty.
//
// No libc and no dynamic loader: the exec costs the kernel's part of a spawn and nothing else
// (docs/performance.md, run-overhead), a fraction of a copy of drover or of drover's start-up.
// Raw system calls only, on x86-64 and aarch64; a session tree (no cgroup, "-") is not handled
// here (exit 2): drover keeps its own guard for it. Signals: TERM, INT, HUP and QUIT are
// blocked first (a signal meant for everything must not take the guard before the tree).

namespace {

#if defined(__x86_64__)
constexpr long nr_read = 0, nr_write = 1, nr_close = 3, nr_rt_sigprocmask = 14, nr_nanosleep = 35,
               nr_exit_group = 231, nr_openat = 257, nr_unlinkat = 263;
inline long sys(long n, long a = 0, long b = 0, long c = 0, long d = 0) noexcept {
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}
#elif defined(__aarch64__)
constexpr long nr_read = 63, nr_write = 64, nr_close = 57, nr_rt_sigprocmask = 135, nr_nanosleep = 101,
               nr_exit_group = 94, nr_openat = 56, nr_unlinkat = 35;
inline long sys(long n, long a = 0, long b = 0, long c = 0, long d = 0) noexcept {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
}
#else
#error "drover-guard: x86-64 and aarch64 only (elsewhere drover uses its own guard)"
#endif

constexpr long at_fdcwd = -100, o_rdonly = 0, o_wronly = 1, o_cloexec = 02000000, at_removedir = 0x200;
constexpr long e_intr = 4, e_busy = 16;
constexpr long path_max = 4096;

bool equal(const char* a, const char* b) noexcept {
    while (*a != 0 && *a == *b) ++a, ++b;
    return *a == *b;
}

/// dir + "/" + name into out; false when it does not fit.
bool join(char (&out)[path_max], const char* dir, const char* name) noexcept {
    long i = 0;
    for (const char* p = dir; *p != 0; ++p)
        if (i < path_max - 1)
            out[i++] = *p;
        else
            return false;
    if (name != nullptr) {
        if (i < path_max - 1) out[i++] = '/';
        for (const char* p = name; *p != 0; ++p)
            if (i < path_max - 1)
                out[i++] = *p;
            else
                return false;
    }
    out[i] = 0;
    return true;
}

void sleep_10ms() noexcept {
    const long ts[2] = {0, 10L * 1000 * 1000};
    sys(nr_nanosleep, reinterpret_cast<long>(ts), 0);
}

/// `populated` of cgroup.events: 1, 0, or -1 once it cannot be read (the leaf is gone). The same
/// parse as guard_populated in lib/guard.cpp, written again: this program links nothing.
int populated(const char* events) noexcept {
    long fd = sys(nr_openat, at_fdcwd, reinterpret_cast<long>(events), o_rdonly | o_cloexec);
    if (fd < 0) return -1;
    char buf[256];
    long n = sys(nr_read, fd, reinterpret_cast<long>(buf), sizeof buf - 1);
    sys(nr_close, fd);
    if (n <= 0) return -1;
    const char key[] = "populated ";
    for (long i = 0; i < n; ++i) {
        if (i != 0 && buf[i - 1] != '\n') continue;
        long k = 0;
        while (k < 10 && i + k < n && buf[i + k] == key[k]) ++k;
        if (k == 10 && i + k < n) return buf[i + k] == '0' ? 0 : 1;
    }
    return 1; // never claims empty wrongly
}

int guard(long argc, char** argv) noexcept {
    const unsigned long blocked = 1UL << (15 - 1) | 1UL << (2 - 1) | 1UL << (1 - 1) | 1UL << (3 - 1);
    sys(nr_rt_sigprocmask, 0 /* SIG_BLOCK */, reinterpret_cast<long>(&blocked), 0, 8);
    if (argc != 4 || !equal(argv[1], "__drover_guard") || argv[2][0] != '/') return 2;
    // The pid of the guarded child (not used for a cgroup tree; checked as the library checks it).
    long pid = 0;
    for (const char* d = argv[3]; *d != 0; ++d) {
        if (*d < '0' || *d > '9' || pid > 100000000) return 2;
        pid = pid * 10 + (*d - '0');
    }
    if (pid <= 0) return 2;
    char kill_path[path_max], events_path[path_max], leaf[path_max];
    if (!join(kill_path, argv[2], "cgroup.kill") || !join(events_path, argv[2], "cgroup.events") ||
        !join(leaf, argv[2], nullptr))
        return 2;
    char c = 0;
    long n;
    do n = sys(nr_read, 0, reinterpret_cast<long>(&c), 1);
    while (n == -e_intr);
    if (n == 1 && c == 'd') return 0;
    long fd = sys(nr_openat, at_fdcwd, reinterpret_cast<long>(kill_path), o_wronly | o_cloexec);
    if (fd >= 0) {
        sys(nr_write, fd, reinterpret_cast<long>("1"), 1);
        sys(nr_close, fd);
    }
    for (int i = 0; i < 500 && populated(events_path) == 1; ++i) sleep_10ms();
    // EBUSY while the killed processes are zombies waiting for their new parent to reap them.
    for (int i = 0;
         i < 300 && sys(nr_unlinkat, at_fdcwd, reinterpret_cast<long>(leaf), at_removedir) == -e_busy; ++i)
        sleep_10ms();
    // drover's directory: fails harmlessly while another leaf remains.
    long slash = -1;
    for (long i = 0; leaf[i] != 0; ++i)
        if (leaf[i] == '/') slash = i;
    if (slash > 0) {
        leaf[slash] = 0;
        sys(nr_unlinkat, at_fdcwd, reinterpret_cast<long>(leaf), at_removedir);
    }
    return 0;
}

} // namespace

/// The stack at entry: argc, then argv's pointers. `used`: only _start's assembly calls it (a
/// link-time optimizer would drop it otherwise).
extern "C" [[noreturn]] __attribute__((used)) void drover_guard_main(long* sp) noexcept {
    const long rc = guard(sp[0], reinterpret_cast<char**>(sp + 1));
    for (;;) sys(nr_exit_group, rc);
}

// _start in assembly at file level, not a naked function: GCC ignores `naked` on aarch64 and
// could put a prologue before the stack pointer is read.
#if defined(__x86_64__)
__asm__(".text\n"
        ".global _start\n"
        ".type _start, @function\n"
        "_start:\n"
        "    xor %ebp, %ebp\n"
        "    mov %rsp, %rdi\n"
        "    and $-16, %rsp\n"
        "    call drover_guard_main\n"
        "    hlt\n");
#elif defined(__aarch64__)
__asm__(".text\n"
        ".global _start\n"
        ".type _start, %function\n"
        "_start:\n"
        "    mov x29, #0\n"
        "    mov x30, #0\n"
        "    mov x0, sp\n"
        "    bl drover_guard_main\n"
        "    brk #0\n");
#endif
