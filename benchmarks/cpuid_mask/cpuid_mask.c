/* cpuid_mask.c: make this x86-64 CPU look AVX2-only to everything that asks the `cpuid` instruction.
 *
 * Loaded with LD_PRELOAD (benchmarks/cpuid_mask/__init__.py compiles it and sets the environment). A
 * constructor turns on CPUID faulting for the thread (Linux arch_prctl(ARCH_SET_CPUID, 0), on CPUs with the
 * `cpuid_fault` flag): from then on `cpuid` raises SIGSEGV in this thread and in every thread and fork made
 * from it (execve turns it off; LD_PRELOAD turns it on again in the new program). The SIGSEGV handler runs
 * the real cpuid with faulting briefly off, clears the feature bits an AVX2-only x86 CPU (e.g. AMD EPYC
 * Rome/Milan) lacks, writes EAX..EDX into the interrupted context and steps over the 2-byte instruction.
 *
 * Any other SIGSEGV goes to the handler the program installed (sigaction and signal are interposed, so a
 * later handler, e.g. Python's faulthandler, sits behind this one instead of replacing it), or, where there
 * is none, kills the process as it would have without this library.
 *
 * What it cannot change: xgetbv (XCR0 still enables AVX-512 and AMX state; every library read so far needs
 * the cpuid bit as well), glibc's own choices made by ld.so before this constructor runs (the helper sets
 * GLIBC_TUNABLES for those), /proc/cpuinfo, and code that runs AVX-512 without asking.
 *
 * Environment: CPUID_MASK_STRICT=1 exits with status 97 where faulting cannot be turned on (instead of a
 * warning and an unmasked run); CPUID_MASK_VERBOSE=1 prints one line per masked process at start.
 * The constructor sets REFINE_CPU_MASKED_FLAGS to the /proc/cpuinfo names of the flags it hides.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#if !defined(__x86_64__) || !defined(__linux__)
#error "cpuid_mask is for x86-64 Linux"
#endif

#ifndef ARCH_GET_CPUID
#define ARCH_GET_CPUID 0x1011
#endif
#ifndef ARCH_SET_CPUID
#define ARCH_SET_CPUID 0x1012
#endif

enum { EAX, EBX, ECX, EDX };
#define ANY_SUBLEAF 0xffffffffu

/* One hidden feature: its leaf, subleaf, register and bit, and its name in /proc/cpuinfo. */
struct hidden_bit {
    uint32_t leaf, subleaf;
    int reg, bit;
    const char *name;
};

static const struct hidden_bit HIDDEN[] = {
    /* leaf 7 subleaf 0 */
    {7, 0, EBX, 16, "avx512f"},
    {7, 0, EBX, 17, "avx512dq"},
    {7, 0, EBX, 21, "avx512ifma"},
    {7, 0, EBX, 26, "avx512pf"},
    {7, 0, EBX, 27, "avx512er"},
    {7, 0, EBX, 28, "avx512cd"},
    {7, 0, EBX, 30, "avx512bw"},
    {7, 0, EBX, 31, "avx512vl"},
    {7, 0, ECX, 1, "avx512vbmi"},
    {7, 0, ECX, 6, "avx512_vbmi2"},
    {7, 0, ECX, 11, "avx512_vnni"},
    {7, 0, ECX, 12, "avx512_bitalg"},
    {7, 0, ECX, 14, "avx512_vpopcntdq"},
    {7, 0, EDX, 2, "avx512_4vnniw"},
    {7, 0, EDX, 3, "avx512_4fmaps"},
    {7, 0, EDX, 8, "avx512_vp2intersect"},
    {7, 0, EDX, 22, "amx_bf16"},
    {7, 0, EDX, 23, "avx512_fp16"},
    {7, 0, EDX, 24, "amx_tile"},
    {7, 0, EDX, 25, "amx_int8"},
    /* leaf 7 subleaf 1: VEX-encoded extensions newer than AVX2, AVX-512 BF16, AMX, AVX10, APX */
    {7, 1, EAX, 0, "sha512"},
    {7, 1, EAX, 1, "sm3"},
    {7, 1, EAX, 2, "sm4"},
    {7, 1, EAX, 4, "avx_vnni"},
    {7, 1, EAX, 5, "avx512_bf16"},
    {7, 1, EAX, 21, "amx_fp16"},
    {7, 1, EAX, 23, "avx_ifma"},
    {7, 1, EDX, 4, "avx_vnni_int8"},
    {7, 1, EDX, 5, "avx_ne_convert"},
    {7, 1, EDX, 8, "amx_complex"},
    {7, 1, EDX, 10, "avx_vnni_int16"},
    {7, 1, EDX, 19, "avx10"},
    {7, 1, EDX, 21, "apx_f"},
};

/* Leaves reported as all zero: AMX tile (0x1D) and TMUL (0x1E) information, AVX10 (0x24). */
static const uint32_t ZEROED_LEAVES[] = {0x1d, 0x1e, 0x24};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static unsigned long trap_count;             /* cpuid instructions answered (all threads) */
static struct sigaction app_action;          /* the SIGSEGV handler the program believes is installed */
static int active;                           /* faulting on and our handler installed */
static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);

/* Raw syscalls: async-signal-safe, and they leave errno alone. */
static long raw_arch_prctl(long code, unsigned long arg) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"((long)SYS_arch_prctl), "D"(code), "S"(arg) : "rcx", "r11", "memory");
    return ret;
}

static void raw_write(int fd, const char *text) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"((long)SYS_write), "D"((long)fd), "S"(text), "d"(strlen(text))
                     : "rcx", "r11", "memory");
    (void)ret;
}

static void real_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[EAX]), "=b"(r[EBX]), "=c"(r[ECX]), "=d"(r[EDX]) : "a"(leaf), "c"(subleaf));
}

static void mask(uint32_t leaf, uint32_t subleaf, uint32_t r[4]) {
    for (size_t i = 0; i < COUNT(ZEROED_LEAVES); i++)
        if (leaf == ZEROED_LEAVES[i]) r[EAX] = r[EBX] = r[ECX] = r[EDX] = 0;
    for (size_t i = 0; i < COUNT(HIDDEN); i++)
        if (HIDDEN[i].leaf == leaf && (HIDDEN[i].subleaf == ANY_SUBLEAF || HIDDEN[i].subleaf == subleaf))
            r[HIDDEN[i].reg] &= ~(UINT32_C(1) << HIDDEN[i].bit);
}

/* What the program would see: the masked cpuid, answered through the trap (exported for the self-check). */
void cpuid_mask_query(uint32_t leaf, uint32_t subleaf, uint32_t out[4]) { real_cpuid(leaf, subleaf, out); }

/* 1 where cpuid faults in the calling thread (the mask is on here), 0 where it does not, -1 unknown. */
int cpuid_mask_faulting(void) {
    long ret = raw_arch_prctl(ARCH_GET_CPUID, 0);
    return ret < 0 ? -1 : ret == 0;
}

unsigned long cpuid_mask_trap_count(void) { return __atomic_load_n(&trap_count, __ATOMIC_RELAXED); }

static void on_segv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *regs = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)regs[REG_RIP];
    /* CPUID faulting raises #GP, which Linux delivers as SIGSEGV with si_code SI_KERNEL; the instruction
       was fetched, so its bytes are readable. */
    if (info->si_code == SI_KERNEL && ip && ip[0] == 0x0f && ip[1] == 0xa2) {
        uint32_t r[4];
        uint32_t leaf = (uint32_t)regs[REG_RAX], subleaf = (uint32_t)regs[REG_RCX];
        raw_arch_prctl(ARCH_SET_CPUID, 1);
        real_cpuid(leaf, subleaf, r);
        raw_arch_prctl(ARCH_SET_CPUID, 0);
        mask(leaf, subleaf, r);
        /* a 32-bit register write zero-extends to 64 bits, as cpuid's own does */
        regs[REG_RAX] = r[EAX];
        regs[REG_RBX] = r[EBX];
        regs[REG_RCX] = r[ECX];
        regs[REG_RDX] = r[EDX];
        regs[REG_RIP] += 2;
        __atomic_fetch_add(&trap_count, 1, __ATOMIC_RELAXED);
        return;
    }
    struct sigaction app = app_action;
    if (app.sa_handler == SIG_DFL || app.sa_handler == SIG_IGN) {
        if (app.sa_handler == SIG_IGN && info->si_code <= 0) return; /* sent by kill/raise and ignored */
        /* A genuine fault: put the default action back; the faulting instruction runs again on return and
           kills the process as usual. A signal sent by kill/raise is sent again (it stays pending until
           this handler returns). */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        real_sigaction(SIGSEGV, &dfl, NULL);
        if (info->si_code <= 0) raise(SIGSEGV);
        return;
    }
    if (app.sa_flags & SA_RESETHAND) {
        memset(&app_action, 0, sizeof app_action);
        app_action.sa_handler = SIG_DFL;
    }
    if (app.sa_flags & SA_SIGINFO)
        app.sa_sigaction(sig, info, context);
    else
        app.sa_handler(sig);
}

/* Interposed: the program's SIGSEGV handler is kept behind ours rather than installed. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (!real_sigaction) real_sigaction = (int (*)(int, const struct sigaction *, struct sigaction *))dlsym(RTLD_NEXT, "sigaction");
    if (sig != SIGSEGV || !__atomic_load_n(&active, __ATOMIC_ACQUIRE)) return real_sigaction(sig, act, old);
    if (old) *old = app_action;
    if (act) app_action = *act;
    return 0;
}

sighandler_t signal(int sig, sighandler_t handler) {
    struct sigaction act, old;
    memset(&act, 0, sizeof act);
    act.sa_handler = handler;
    act.sa_flags = SA_RESTART;
    sigemptyset(&act.sa_mask);
    if (handler != SIG_DFL && handler != SIG_IGN) sigaddset(&act.sa_mask, sig);
    if (sigaction(sig, &act, &old) < 0) return SIG_ERR;
    return old.sa_handler;
}

static void append(char *buffer, size_t size, const char *text) {
    size_t used = strlen(buffer);
    if (used && used + 1 < size) buffer[used++] = ' ', buffer[used] = 0;
    strncat(buffer, text, size - used - 1);
}

__attribute__((constructor)) static void cpuid_mask_init(void) {
    real_sigaction = (int (*)(int, const struct sigaction *, struct sigaction *))dlsym(RTLD_NEXT, "sigaction");
    const char *strict = getenv("CPUID_MASK_STRICT");
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_sigaction = on_segv;
    act.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigfillset(&act.sa_mask); /* no other handler runs (and sees the real cpuid) while faulting is off */
    if (!real_sigaction || real_sigaction(SIGSEGV, &act, &app_action) != 0) {
        raw_write(2, "cpuid_mask: cannot install the SIGSEGV handler; cpuid is NOT masked\n");
        if (strict && strcmp(strict, "1") == 0) _exit(97);
        return;
    }
    long ret = raw_arch_prctl(ARCH_SET_CPUID, 0);
    if (ret != 0) {
        real_sigaction(SIGSEGV, &app_action, NULL);
        raw_write(2, ret == -ENODEV ? "cpuid_mask: this CPU or kernel has no CPUID faulting; cpuid is NOT masked\n"
                                    : "cpuid_mask: arch_prctl(ARCH_SET_CPUID) failed; cpuid is NOT masked\n");
        if (strict && strcmp(strict, "1") == 0) _exit(97);
        return;
    }
    __atomic_store_n(&active, 1, __ATOMIC_RELEASE);
    static char names[1024];
    names[0] = 0;
    for (size_t i = 0; i < COUNT(HIDDEN); i++) append(names, sizeof names, HIDDEN[i].name);
    setenv("REFINE_CPU_MASKED_FLAGS", names, 1);
    const char *verbose = getenv("CPUID_MASK_VERBOSE");
    if (verbose && strcmp(verbose, "1") == 0) raw_write(2, "cpuid_mask: cpuid masked to an AVX2-only CPU\n");
}
