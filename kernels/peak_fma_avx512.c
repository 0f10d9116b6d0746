/* The FP32 peak of this machine, for bench/host.c: how many zmm FMAs (16 lanes) one thread
 * retires per second when nothing else limits it. Built for AVX-512 (Makefile rule for
 * *_avx512.c); the caller checks the CPU first. */
#include "kernels.h"
#include <immintrin.h>
#include <omp.h>

/* Twelve independent accumulators: more than latency (4 cycles) x throughput (2 per cycle),
 * so the loop measures throughput, not the dependency chain. */
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define NCHAINS 12
#define INNER 1000

double qat_fma512_probe(double seconds) {
    const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
#define INIT(i) __m512 acc##i = _mm512_set1_ps((float)(i));
#define STEP(i) acc##i = _mm512_fmadd_ps(acc##i, a, b);
#define FOLD(i) sum = _mm512_add_ps(sum, acc##i);
    CHAINS(INIT)
    long rounds = 0;
    double t0 = omp_get_wtime(), t;
    do {
        for (int k = 0; k < INNER; k++) {
            CHAINS(STEP)
            __asm__ volatile("" ::: "memory"); /* keeps the loop from being folded away */
        }
        rounds++;
        t = omp_get_wtime() - t0;
    } while (t < seconds);
    __m512 sum = _mm512_setzero_ps();
    CHAINS(FOLD)
    volatile float sink = _mm512_reduce_add_ps(sum);
    (void)sink;
    return (double)rounds * INNER * NCHAINS * 16 / t;
}
