/* drover-bench-tiny: the smallest program that can be spawned: no libc, no dynamic loader,
 * just exit(0). Spawning it measures the kernel's fork/exec/exit/wait path and drover's own
 * cost, without ld.so and libc start-up (which dominate /bin/true). */
#if defined(__x86_64__)
extern "C" __attribute__((naked, noreturn)) void _start() {
    __asm__ volatile("mov $60, %eax\n" /* SYS_exit */
                     "xor %edi, %edi\n"
                     "syscall\n");
}
#elif defined(__aarch64__)
extern "C" __attribute__((naked, noreturn)) void _start() {
    __asm__ volatile("mov x0, #0\n"
                     "mov x8, #93\n" /* SYS_exit */
                     "svc #0\n");
}
#else
#error "drover-bench-tiny: x86-64 and aarch64 only"
#endif
