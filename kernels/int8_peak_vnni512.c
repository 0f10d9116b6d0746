/* The int8 peak of this machine, for the "% of peak" column of `qat bench --int8`: how many
 * vpdpbusd (zmm: 16 lanes x 4 u8*s8 products) one thread retires per second when nothing
 * else limits it (the runtime's qat_rt_vnni_peak_gmacs). Built with AVX512-VNNI (Makefile rule
 * for *_vnni512.c); the caller checks the CPU first. */
#include "int8.h"
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>

/* Independent accumulators: enough chains to cover the instruction's latency x throughput
 * on current cores (latency 4-5 cycles, 2 per cycle), so the loop measures throughput. */
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9)
#define NCHAINS 10
#define INNER 1000

double qat_i8_vnni512_probe(double seconds) {
    const __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-2);
#define INIT(i) __m512i acc##i = _mm512_set1_epi32(i);
#define STEP(i) acc##i = _mm512_dpbusd_epi32(acc##i, u, s);
#define FOLD(i) sum = _mm512_add_epi32(sum, acc##i);
    CHAINS(INIT)
    long rounds = 0;
    double t0 = omp_get_wtime(), t;
    do {
        for (int k = 0; k < INNER; k++) {
            CHAINS(STEP)
            /* keeps the loop from being collapsed into a closed form */
            __asm__ volatile("" ::: "memory");
        }
        rounds++;
        t = omp_get_wtime() - t0;
    } while (t < seconds);
    __m512i sum = _mm512_setzero_si512();
    CHAINS(FOLD)
    /* the lanes wrap (vpdpbusd does not saturate): read them out as unsigned */
    uint32_t lanes[16];
    _mm512_storeu_si512(lanes, sum);
    volatile uint32_t sink = 0;
    for (int i = 0; i < 16; i++) sink += lanes[i];
    return (double)rounds * INNER * NCHAINS * 64 / t;
}
