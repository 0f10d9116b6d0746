/* CPU feature detection and the thread count. Everything else in the library is built for
 * baseline x86-64; the *_avx2.c / *_avx512.c kernels are only entered after these checks, so
 * one binary runs on any x86-64 CPU. */
#include "kernels.h"
#include <cpuid.h>
#include <omp.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

/* Feature bits, filled once. -1 = not probed yet. Probing is idempotent, so two threads racing
 * on the first call store the same values (the atomics only keep the compiler honest). */
static int hw_isa = -1;
static int hw_avx512_vnni, hw_avx_vnni, hw_avx512_vbmi;
static int env_cap = -1;       /* ISA cap from QAT_ISA, QAT_ISA_COUNT when unset */
static int forced_isa = -1;    /* qat_set_isa override, -1 when none */
static int nthreads;           /* 0: not set, use the OpenMP default */
static int thread_cap;         /* 0: none; else qat_kernel_threads() gives at most this */

static uint64_t xgetbv0(void) {
    /* Inline asm rather than _xgetbv(): that intrinsic needs -mxsave, and this file is built
     * for baseline x86-64. */
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void probe(void) {
    unsigned a, b, c, d;
    int isa = QAT_ISA_SCALAR, vnni512 = 0, avxvnni = 0, vbmi = 0;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf >= 7 && __get_cpuid(1, &a, &b, &c, &d)) {
        int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
        uint64_t xcr0 = osxsave ? xgetbv0() : 0;
        /* The OS must save the register state, not only the CPU implement it: XMM|YMM for
         * AVX, plus opmask|ZMM_Hi256|Hi16_ZMM for AVX-512. */
        int ymm_ok = (xcr0 & 0x6) == 0x6;
        int zmm_ok = (xcr0 & 0xe6) == 0xe6;
        unsigned max_sub, b7, c7, d7;
        __cpuid_count(7, 0, max_sub, b7, c7, d7);
        (void)d7;
        int avx2 = (b7 >> 5) & 1;
        int f = (b7 >> 16) & 1, dq = (b7 >> 17) & 1, bw = (b7 >> 30) & 1, vl = (b7 >> 31) & 1;
        if (avx && avx2 && fma && ymm_ok) {
            isa = QAT_ISA_AVX2;
            if (f && dq && bw && vl && zmm_ok) {
                isa = QAT_ISA_AVX512;
                vnni512 = (c7 >> 11) & 1;
                vbmi = (c7 >> 1) & 1;
            }
            if (max_sub >= 1) {
                unsigned a71, b71, c71, d71;
                __cpuid_count(7, 1, a71, b71, c71, d71);
                (void)b71, (void)c71, (void)d71;
                avxvnni = (a71 >> 4) & 1;
            }
        }
    }
    __atomic_store_n(&hw_avx512_vnni, vnni512, __ATOMIC_RELAXED);
    __atomic_store_n(&hw_avx_vnni, avxvnni, __ATOMIC_RELAXED);
    __atomic_store_n(&hw_avx512_vbmi, vbmi, __ATOMIC_RELAXED);
    __atomic_store_n(&hw_isa, isa, __ATOMIC_RELEASE);
}

qat_isa qat_cpu_isa_hw(void) {
    int v = __atomic_load_n(&hw_isa, __ATOMIC_ACQUIRE);
    if (v < 0) {
        probe();
        v = __atomic_load_n(&hw_isa, __ATOMIC_ACQUIRE);
    }
    return (qat_isa)v;
}

int qat_isa_parse(const char *s, qat_isa *out) {
    static const char *const names[QAT_ISA_COUNT] = {"scalar", "avx2", "avx512"};
    if (!s) return -1;
    for (int i = 0; i < QAT_ISA_COUNT; i++)
        if (!strcasecmp(s, names[i])) {
            *out = (qat_isa)i;
            return 0;
        }
    return -1;
}

static int env_isa_cap(void) {
    int v = __atomic_load_n(&env_cap, __ATOMIC_RELAXED);
    if (v < 0) {
        qat_isa parsed;
        v = qat_isa_parse(getenv("QAT_ISA"), &parsed) == 0 ? (int)parsed : QAT_ISA_COUNT;
        __atomic_store_n(&env_cap, v, __ATOMIC_RELAXED);
    }
    return v;
}

qat_isa qat_cpu_isa(void) {
    int hw = qat_cpu_isa_hw();
    int forced = __atomic_load_n(&forced_isa, __ATOMIC_RELAXED);
    if (forced >= 0) return (qat_isa)(forced < hw ? forced : hw);
    int cap = env_isa_cap();
    return (qat_isa)(cap < hw ? cap : hw);
}

qat_isa qat_set_isa(qat_isa isa) {
    qat_isa prev = qat_cpu_isa();
    int v = (int)isa;
    if (v < 0) v = 0;
    if (v >= QAT_ISA_COUNT) v = QAT_ISA_COUNT - 1;
    /* Never above what the hardware runs: a test asking for AVX-512 on an AVX2 machine gets
     * AVX2 and can see that from qat_cpu_isa(). */
    __atomic_store_n(&forced_isa, v, __ATOMIC_RELAXED);
    return prev;
}

int qat_cpu_has_avx512_vnni(void) {
    qat_cpu_isa_hw();
    return __atomic_load_n(&hw_avx512_vnni, __ATOMIC_RELAXED);
}

int qat_cpu_has_avx512_vbmi(void) {
    qat_cpu_isa_hw();
    return __atomic_load_n(&hw_avx512_vbmi, __ATOMIC_RELAXED);
}

int qat_cpu_has_avx_vnni(void) {
    qat_cpu_isa_hw();
    return __atomic_load_n(&hw_avx_vnni, __ATOMIC_RELAXED);
}

const char *qat_isa_name(qat_isa isa) {
    static const char *const names[QAT_ISA_COUNT] = {"scalar", "avx2", "avx512"};
    return (unsigned)isa < QAT_ISA_COUNT ? names[isa] : "unknown";
}

void qat_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    nthreads = n;
    thread_cap = 0;
    omp_set_num_threads(n);
    /* OpenBLAS is kept single-threaded by kernels/gemm.c before its first call, not here:
     * this file is part of the INT8 runtime library, which does not link OpenBLAS. */
}

int qat_get_threads(void) {
    if (nthreads > 0) return nthreads;
    return omp_get_max_threads();
}

int qat_kernel_threads(void) {
    if (omp_in_parallel()) return 1;
    int n = qat_get_threads();
    int cap = __atomic_load_n(&thread_cap, __ATOMIC_RELAXED);
    if (cap > 0 && cap < n) n = cap;
    return n > 0 ? n : 1;
}

/* Set by the FP32 engine's team governor (kernels/team.c) only. The INT8 runtime's kernels and
 * lanes read qat_kernel_threads() too, so after a contended FP32 step in the same process they
 * may run on fewer threads until the next step or qat_set_threads (speed only: INT8 results do
 * not depend on the thread count); a process that only runs INT8 never sets it. */
void qat_set_thread_cap(int n) { __atomic_store_n(&thread_cap, n > 0 ? n : 0, __ATOMIC_RELAXED); }

int qat_thread_cap(void) { return __atomic_load_n(&thread_cap, __ATOMIC_RELAXED); }

/* libgomp reads its environment once, when the library loads, so a program that wants a
 * different default must set it and re-execute itself before any OpenMP call. The default
 * spin of idle workers (300000 rounds) is right on a dedicated machine but, when another
 * process shares the 2 cores, a spinning worker can hold a core the other thread needs:
 * measured here, a batch-64 evaluation of 10,000 images took 52 s instead of 1.7 s.
 * A short spin keeps the fast hand-off between regions and bounds that loss;
 * OMP_WAIT_POLICY=passive instead cost 8x on batch-1 inference. */
void qat_exec_with_omp_defaults(char **argv) {
    if (getenv("GOMP_SPINCOUNT") || getenv("OMP_WAIT_POLICY") || getenv("QAT_NO_REEXEC")) return;
    setenv("GOMP_SPINCOUNT", "20000", 1);
    setenv("QAT_NO_REEXEC", "1", 1);
    execv("/proc/self/exe", argv); /* returns only on failure: then run with the defaults */
}
