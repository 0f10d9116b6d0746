/* batchnorm2d over NHWC: each of the M = N*H*W rows holds C channel values, so the statistics
 * are column reductions and every pass is a row loop with a channel-inner loop the compiler
 * vectorises. Training: one pass for the statistics, one for y = x*scale[c] + shift[c].
 * Backward: one pass for sum(dy) and sum(dy*(x-mean)), one for dx.
 * For the QAT model the same op can also scale its input per channel (the / s of simulated BN
 * folding) and fake-quantize its output (the activation quantization point) without any extra
 * node or full-tensor pass in backward; both bitwise equal to the separate ops. */
#include "kernels.h" /* qat_cpu_isa */
#include "ops.h"
#include "qmodel.h" /* qat_batchnorm2d_act_fq: ops.h does not know qat_fq */
#include "quant.h"
#include <immintrin.h>
#include <math.h>
#include <string.h>

/* Row reductions are split into chunks that depend on the shape only (never on the thread
 * count); each chunk sums in double and the chunk partials are added in chunk order, so the
 * result is bitwise the same with 1 or 2 threads. */
#define BN_CHUNK_ELEMS 16384
#define BN_MAX_CHUNKS 64
/* Rows summed in float before folding into double: float adds vectorise twice as wide and the
 * error of 16 float adds is negligible next to the double sum over 50K rows. */
#define BN_SUB_ROWS 16
/* Below this many elements a parallel region costs more than it saves. */
#define BN_PAR_ELEMS 32768

typedef struct {
    float *mean; /* (C) mean used to normalise: batch mean in training, running mean in eval */
    float *rstd; /* (C) 1 / sqrt(var + eps) */
    const float *isc; /* (C) input scale (qat_batchnorm2d_scaled_act), NULL for none */
    const float *aff;     /* with an output fake-quant: (2C) scale and shift of the forward: the
                           * backward recomputes the pre-clamp value from x for the activation
                           * mask (bitwise the forward's) instead of reading a stored output */
    const uint8_t *code;  /* and its clipping codes (the straight-through mask) */
} bn_saved;

/* s1 += sum_r (a - ref), s2 += sum_r (a - ref)^2 per column; ref is a per-channel shift (a
 * sample of x) that keeps E[x^2] - E[x]^2 from cancelling when |mean| >> std. */
static void stats_chunk(const float *restrict a, const float *restrict b,
                        const float *restrict ref, const float *restrict y,
                        const float *restrict isc, const uint8_t *restrict code, const float *restrict aff, float lo,
                        float hi, int64_t rows, int C, float *restrict f1, float *restrict f2,
                        double *restrict s1, double *restrict s2) {
    (void)b, (void)y, (void)isc, (void)code, (void)aff, (void)lo, (void)hi;
    for (int64_t r0 = 0; r0 < rows; r0 += BN_SUB_ROWS) {
        int64_t r1 = r0 + BN_SUB_ROWS < rows ? r0 + BN_SUB_ROWS : rows;
        memset(f1, 0, (size_t)C * sizeof *f1);
        memset(f2, 0, (size_t)C * sizeof *f2);
        for (int64_t r = r0; r < r1; r++) {
            const float *restrict ar = a + r * C;
#pragma omp simd
            for (int c = 0; c < C; c++) {
                float d = ar[c] - ref[c];
                f1[c] += d;
                f2[c] += d * d;
            }
        }
        for (int c = 0; c < C; c++) {
            s1[c] += f1[c];
            s2[c] += f2[c];
        }
    }
}

/* stats_chunk of the BN input t = a * isc[c] (the input scale of qat_batchnorm2d_scaled_act),
 * t rounded to float before use exactly as if a separate op had stored it. */
static void stats_scaled_chunk(const float *restrict a, const float *restrict b,
                               const float *restrict ref, const float *restrict y,
                               const float *restrict isc, const uint8_t *restrict code, const float *restrict aff,
                               float lo, float hi, int64_t rows, int C, float *restrict f1,
                               float *restrict f2, double *restrict s1, double *restrict s2) {
    (void)b, (void)y, (void)code, (void)aff, (void)lo, (void)hi;
    for (int64_t r0 = 0; r0 < rows; r0 += BN_SUB_ROWS) {
        int64_t r1 = r0 + BN_SUB_ROWS < rows ? r0 + BN_SUB_ROWS : rows;
        memset(f1, 0, (size_t)C * sizeof *f1);
        memset(f2, 0, (size_t)C * sizeof *f2);
        for (int64_t r = r0; r < r1; r++) {
            const float *restrict ar = a + r * C;
#pragma omp simd
            for (int c = 0; c < C; c++) {
                float d = ar[c] * isc[c] - ref[c];
                f1[c] += d;
                f2[c] += d * d;
            }
        }
        for (int c = 0; c < C; c++) {
            s1[c] += f1[c];
            s2[c] += f2[c];
        }
    }
}

/* The gradient that reaches the BN output through the fused activation: dy where the
 * activation passed its input (lo < y < hi), 0 where it clamped. */
static inline float act_grad(float dy, float y, float lo, float hi) {
    float g = y > lo ? dy : 0.0f;
    return y < hi ? g : 0.0f;
}

/* With a fused output fake-quant the gradient reaching the BN output is, as the separate ops
 * gave it, act_grad(STE(dy)) with STE(dy) = 0.0f + dy inside the quantization range (the add
 * into a zeroed grad) and +0.0 where clipped: 0.0f + dy where the code is QAT_FQ_INSIDE and
 * lo < y < hi, else +0.0. Computed with integer masks: gcc does not vectorise the chained
 * float selects mixed with byte loads (it will not speculate the compares), and those loops
 * would stay scalar. mk[c] is all ones where code[c] == QAT_FQ_INSIDE. y may be the value
 * before the clamp: lo < clamp(v) < hi exactly when lo < v < hi (NaN fails both). */
#define BN_CODE_BLOCK 256
_Static_assert(QAT_FQ_BELOW == 0 && QAT_FQ_INSIDE == 1 && QAT_FQ_ABOVE == 2, "code values");
static inline void code_mask(uint32_t *restrict mk, const uint8_t *restrict code, int n) {
#pragma omp simd
    for (int c = 0; c < n; c++) mk[c] = 0u - ((uint32_t)code[c] & 1u);
}
static inline float ste_act_grad(float dy, uint32_t mk, float y, float lo, float hi) {
    float v = 0.0f + dy;
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    u &= mk & (0u - (uint32_t)(y > lo)) & (0u - (uint32_t)(y < hi));
    memcpy(&v, &u, sizeof v);
    return v;
}

/* s1 += sum_r g, s2 += sum_r g * (t - mean) per column, g = act_grad(dy) (a = dy, b = x,
 * ref = mean, y = BN+act output), t = x or x * isc[c] (scaled), dy masked by the output
 * fake-quant's codes (has_code). Constant flags: the inlined copies are branch-free loops. */
static inline __attribute__((always_inline)) void
grad_body(const float *restrict a, const float *restrict b, const float *restrict ref,
          const float *restrict yo, const float *restrict isc, const uint8_t *restrict code, const float *restrict aff,
          float lo, float hi, int64_t rows, int C, float *restrict f1, float *restrict f2,
          double *restrict s1, double *restrict s2, const int scaled, const int has_code) {
    for (int64_t r0 = 0; r0 < rows; r0 += BN_SUB_ROWS) {
        int64_t r1 = r0 + BN_SUB_ROWS < rows ? r0 + BN_SUB_ROWS : rows;
        memset(f1, 0, (size_t)C * sizeof *f1);
        memset(f2, 0, (size_t)C * sizeof *f2);
        for (int64_t r = r0; r < r1; r++) {
            const float *restrict dy = a + r * C;
            const float *restrict x = b + r * C;
            const float *restrict y = has_code ? NULL : yo + r * C;
            if (has_code) {
                uint32_t mk[BN_CODE_BLOCK];
                for (int c0 = 0; c0 < C; c0 += BN_CODE_BLOCK) {
                    const int n = C - c0 < BN_CODE_BLOCK ? C - c0 : BN_CODE_BLOCK;
                    code_mask(mk, code + r * C + c0, n);
#pragma omp simd
                    for (int j = 0; j < n; j++) {
                        const int c = c0 + j;
                        const float t = scaled ? x[c] * isc[c] : x[c];
                        float g = ste_act_grad(dy[c], mk[j], (t - ref[c]) * aff[c] + aff[C + c], lo, hi);
                        f1[c] += g;
                        f2[c] += g * (t - ref[c]);
                    }
                }
            } else {
#pragma omp simd
                for (int c = 0; c < C; c++) {
                    float g = act_grad(dy[c], y[c], lo, hi);
                    f1[c] += g;
                    f2[c] += g * ((scaled ? x[c] * isc[c] : x[c]) - ref[c]);
                }
            }
        }
        for (int c = 0; c < C; c++) {
            s1[c] += f1[c];
            s2[c] += f2[c];
        }
    }
}

#define GRAD_CHUNK(name, scaled, has_code)                                                       \
    static void name(const float *restrict a, const float *restrict b,                          \
                     const float *restrict ref, const float *restrict yo,                       \
                     const float *restrict isc, const uint8_t *restrict code, const float *restrict aff, float lo,         \
                     float hi, int64_t rows, int C, float *restrict f1, float *restrict f2,     \
                     double *restrict s1, double *restrict s2) {                                \
        grad_body(a, b, ref, yo, isc, code, aff, lo, hi, rows, C, f1, f2, s1, s2, scaled,       \
                  has_code);                                                                    \
    }
GRAD_CHUNK(grad_chunk, 0, 0)
GRAD_CHUNK(grad_scaled_chunk, 1, 0)
GRAD_CHUNK(grad_fq_chunk, 0, 1)
GRAD_CHUNK(grad_scaled_fq_chunk, 1, 1)

typedef void (*bn_chunk_fn)(const float *restrict a, const float *restrict b,
                            const float *restrict ref, const float *restrict y,
                            const float *restrict isc, const uint8_t *restrict code, const float *restrict aff, float lo,
                            float hi, int64_t rows, int C, float *restrict f1,
                            float *restrict f2, double *restrict s1, double *restrict s2);

/* ---- AVX-512 variants of the QAT passes ----------------------------------------------------
 * The passes only the QAT model runs (input scale, output fake-quant codes) do about twice the
 * arithmetic of the plain ones, and this file is built for baseline x86-64 (4-lane SSE2), so
 * they made most of the QAT step's extra cost. These compute the same expressions 16 channels
 * at a time, each element through the same sequence of separately rounded float operations
 * (fp-contract=off: gcc would otherwise fuse the intrinsics' multiply and add into an FMA),
 * so they are bitwise the scalar code above, which stays the reference: tests/test_fakequant.c
 * compares the two under qat_set_isa on odd shapes. A column's rows are still added in row
 * order; only the channels run side by side. Full channel blocks use plain loads and stores,
 * the last partial block masked ones (masked stores are slow on AMD Zen 4/5).
 * Every streamed array is prefetched BN512_PF elements ahead: with the hardware prefetcher alone
 * these passes ran slower than the scalar ones on tensors that do not fit in cache (backward
 * of a 64x28x28x64 batch: 5.1 ms against 3.4 ms scalar; with the prefetch 1.6 ms). Prefetches
 * past the end of an array are harmless (they never fault).
 * The plain FP32 passes are the same loops with no input scale and no codes (every flag off),
 * so they run these variants too: in the FP32 training step the BN passes were a third of the
 * time. */
/* C rounded up to whole 16-lane blocks: the width of a row of the chunk scratch. */
static inline int bn_pad(int C) { return (C + 15) & ~15; }

#define BN512_ATTR                                                                                \
    __attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512dq"),                             \
                   optimize("fp-contract=off")))
#define BN512_PF 1024 /* elements ahead: 4 KiB of a float array, 1 KiB of codes */
#define BN512_INLINE BN512_ATTR static inline __attribute__((always_inline))

BN512_INLINE __mmask16 bn512_mask(int n) {
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
}
BN512_INLINE __m512 bn512_ld(__mmask16 m, const float *p) {
    return m == 0xffff ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m, p);
}
BN512_INLINE void bn512_st(__mmask16 m, float *p, __m512 v) {
    if (m == 0xffff)
        _mm512_storeu_ps(p, v);
    else
        _mm512_mask_storeu_ps(p, m, v);
}

/* s[c] += f[c] in double for the lanes of m: a block's float partials into the chunk sums */
BN512_INLINE void bn512_fold(double *s, __m512 f, __mmask16 m) {
    const __mmask8 m0 = (__mmask8)(m & 0xff), m1 = (__mmask8)(m >> 8);
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(f));
    _mm512_mask_storeu_pd(s, m0, _mm512_add_pd(_mm512_maskz_loadu_pd(m0, s), lo));
    if (m1) {
        __m512d hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(f, 1));
        _mm512_mask_storeu_pd(s + 8, m1, _mm512_add_pd(_mm512_maskz_loadu_pd(m1, s + 8), hi));
    }
}

/* Adds the float partials f1/f2 of one sub-block of rows into the double sums s1/s2 (C each):
 * the fixed reduction order every BN pass shares. */
BN512_INLINE void bn512_fold_partials(double *s1, double *s2, const float *f1, const float *f2, int C) {
    for (int c0 = 0; c0 < C; c0 += 16) {
        const __mmask16 m = bn512_mask(C - c0);
        bn512_fold(s1 + c0, _mm512_loadu_ps(f1 + c0), m);
        bn512_fold(s2 + c0, _mm512_loadu_ps(f2 + c0), m);
    }
}

/* The gradient reaching the BN output: act_grad (dy where lo < y < hi, else +0.0), or with
 * codes ste_act_grad (0.0f + dy where also code == QAT_FQ_INSIDE, else +0.0). The code test
 * is code & 1, as code_mask's. */
BN512_INLINE __m512 bn512_act_grad(__mmask16 m, const float *dy, __m512 y, __m512 lo, __m512 hi) {
    __mmask16 pass = _mm512_cmp_ps_mask(y, lo, _CMP_GT_OQ) & _mm512_cmp_ps_mask(y, hi, _CMP_LT_OQ);
    return _mm512_maskz_mov_ps(pass, bn512_ld(m, dy));
}
BN512_INLINE __m512 bn512_ste_act_grad(__mmask16 m, const float *dy, const uint8_t *code,
                                       __m512 y, __m512 lo, __m512 hi) {
    __m128i cb = m == 0xffff ? _mm_loadu_si128((const __m128i *)code) : _mm_maskz_loadu_epi8(m, code);
    __mmask16 pass = _mm_test_epi8_mask(cb, _mm_set1_epi8(1)) &
                     _mm512_cmp_ps_mask(y, lo, _CMP_GT_OQ) & _mm512_cmp_ps_mask(y, hi, _CMP_LT_OQ);
    return _mm512_maskz_add_ps(pass, _mm512_setzero_ps(), bn512_ld(m, dy));
}

/* stats_scaled_chunk: d = t - ref (t = x * isc, or x unscaled), f1 += d, f2 += d * d over
 * each BN_SUB_ROWS block. Rows in memory order (a column-block-major walk defeats the
 * prefetcher), the float partials in the f1/f2 scratch (C floats each, in L1). With range,
 * also the per-column min and max of t (NaN skipped) in f2 + Cp and f2 + 2Cp (column_sums).
 * The scratch rows are padded to whole lane blocks (bn_pad), so the partials are updated with
 * plain stores: a masked store per row was slower than the scalar pass for C = 24. */
BN512_INLINE void stats_body_avx512(const float *restrict a, const float *restrict ref,
                                    const float *restrict isc, int64_t rows, int C,
                                    float *restrict f1, float *restrict f2, double *restrict s1,
                                    double *restrict s2, const int scaled, const int range) {
    const int Cp = bn_pad(C);
    float *restrict rmin = f2 + Cp, *restrict rmax = f2 + 2 * Cp;
    for (int64_t r0 = 0; r0 < rows; r0 += BN_SUB_ROWS) {
        const int64_t r1 = r0 + BN_SUB_ROWS < rows ? r0 + BN_SUB_ROWS : rows;
        memset(f1, 0, (size_t)Cp * sizeof *f1);
        memset(f2, 0, (size_t)Cp * sizeof *f2);
        for (int64_t r = r0; r < r1; r++)
            for (int c0 = 0; c0 < C; c0 += 16) {
                const __mmask16 m = bn512_mask(C - c0);
                _mm_prefetch((const char *)(a + r * C + c0 + BN512_PF), _MM_HINT_T0);
                __m512 t = bn512_ld(m, a + r * C + c0);
                if (scaled) t = _mm512_mul_ps(t, bn512_ld(m, isc + c0));
                __m512 d = _mm512_sub_ps(t, bn512_ld(m, ref + c0));
                _mm512_storeu_ps(f1 + c0, _mm512_add_ps(_mm512_loadu_ps(f1 + c0), d));
                _mm512_storeu_ps(f2 + c0,
                                 _mm512_add_ps(_mm512_loadu_ps(f2 + c0), _mm512_mul_ps(d, d)));
                if (range) {
                    _mm512_storeu_ps(rmin + c0, _mm512_min_ps(t, _mm512_loadu_ps(rmin + c0)));
                    _mm512_storeu_ps(rmax + c0, _mm512_max_ps(t, _mm512_loadu_ps(rmax + c0)));
                }
            }
        bn512_fold_partials(s1, s2, f1, f2, C);
    }
}

#define STATS_CHUNK_AVX512(name, scaled, range)                                                   \
    BN512_ATTR static void name(const float *restrict a, const float *restrict b,                 \
                                const float *restrict ref, const float *restrict y,               \
                                const float *restrict isc, const uint8_t *restrict code,          \
                                const float *restrict aff, float lo, float hi, int64_t rows,      \
                                int C, float *restrict f1, float *restrict f2,                    \
                                double *restrict s1, double *restrict s2) {                       \
        (void)b, (void)y, (void)code, (void)aff, (void)lo, (void)hi;                              \
        stats_body_avx512(a, ref, isc, rows, C, f1, f2, s1, s2, scaled, range);                   \
    }
STATS_CHUNK_AVX512(stats_chunk_avx512, 0, 0)
STATS_CHUNK_AVX512(stats_scaled_chunk_avx512, 1, 0)
STATS_CHUNK_AVX512(stats_range_chunk_avx512, 0, 1)
STATS_CHUNK_AVX512(stats_scaled_range_chunk_avx512, 1, 1)

/* grad_body, 16 channels at a time, walked as stats_scaled_chunk_avx512. */
BN512_INLINE void grad_body_avx512(const float *restrict a, const float *restrict b,
                                   const float *restrict ref, const float *restrict yo,
                                   const float *restrict isc, const uint8_t *restrict code,
                                   const float *restrict aff, float lo, float hi, int64_t rows,
                                   int C, float *restrict f1, float *restrict f2,
                                   double *restrict s1, double *restrict s2, const int scaled,
                                   const int has_code) {
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    const int Cp = bn_pad(C);
    for (int64_t r0 = 0; r0 < rows; r0 += BN_SUB_ROWS) {
        const int64_t r1 = r0 + BN_SUB_ROWS < rows ? r0 + BN_SUB_ROWS : rows;
        memset(f1, 0, (size_t)Cp * sizeof *f1);
        memset(f2, 0, (size_t)Cp * sizeof *f2);
        for (int64_t r = r0; r < r1; r++)
            for (int c0 = 0; c0 < C; c0 += 16) {
                const __mmask16 m = bn512_mask(C - c0);
                const int64_t o = r * C + c0;
                _mm_prefetch((const char *)(a + o + BN512_PF), _MM_HINT_T0);
                _mm_prefetch((const char *)(b + o + BN512_PF), _MM_HINT_T0);
                if (has_code) _mm_prefetch((const char *)(code + o + BN512_PF), _MM_HINT_T0);
                else _mm_prefetch((const char *)(yo + o + BN512_PF), _MM_HINT_T0);
                __m512 x = bn512_ld(m, b + o);
                __m512 d = _mm512_sub_ps(scaled ? _mm512_mul_ps(x, bn512_ld(m, isc + c0)) : x,
                                         bn512_ld(m, ref + c0));
                __m512 g = has_code
                    ? bn512_ste_act_grad(m, a + o, code + o,
                                         _mm512_add_ps(_mm512_mul_ps(d, bn512_ld(m, aff + c0)),
                                                       bn512_ld(m, aff + C + c0)), vlo, vhi)
                    : bn512_act_grad(m, a + o, bn512_ld(m, yo + o), vlo, vhi);
                _mm512_storeu_ps(f1 + c0, _mm512_add_ps(_mm512_loadu_ps(f1 + c0), g));
                _mm512_storeu_ps(f2 + c0,
                                 _mm512_add_ps(_mm512_loadu_ps(f2 + c0), _mm512_mul_ps(g, d)));
            }
        bn512_fold_partials(s1, s2, f1, f2, C);
    }
}

#define GRAD_CHUNK_AVX512(name, scaled, has_code)                                                 \
    BN512_ATTR static void name(const float *restrict a, const float *restrict b,                 \
                                const float *restrict ref, const float *restrict yo,              \
                                const float *restrict isc, const uint8_t *restrict code,          \
                                const float *restrict aff, float lo, float hi, int64_t rows,      \
                                int C, float *restrict f1, float *restrict f2,                    \
                                double *restrict s1, double *restrict s2) {                       \
        grad_body_avx512(a, b, ref, yo, isc, code, aff, lo, hi, rows, C, f1, f2, s1, s2, scaled,  \
                         has_code);                                                               \
    }
GRAD_CHUNK_AVX512(grad_chunk_avx512, 0, 0)
GRAD_CHUNK_AVX512(grad_scaled_chunk_avx512, 1, 0)
GRAD_CHUNK_AVX512(grad_fq_chunk_avx512, 0, 1)
GRAD_CHUNK_AVX512(grad_scaled_fq_chunk_avx512, 1, 1)

/* The forward's y = (x * isc - mean) * scale + shift (x - mean without isc), clamped to
 * [lo, hi] when clamp: max_ps and min_ps return their second operand unless the first
 * compares greater/less, which is the scalar v > lo ? v : lo and v < hi ? v : hi, NaN
 * included. */
BN512_INLINE __m512 bn512_y_of(__mmask16 m, __m512 t, const float *is, const float *mu,
                               const float *sc, const float *sh, __m512 vlo, __m512 vhi, int c0,
                               const int clamp) {
    if (is) t = _mm512_mul_ps(t, bn512_ld(m, is + c0));
    __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(t, bn512_ld(m, mu + c0)),
                                           bn512_ld(m, sc + c0)),
                             bn512_ld(m, sh + c0));
    return clamp ? _mm512_min_ps(_mm512_max_ps(v, vlo), vhi) : v;
}
BN512_INLINE __m512 bn512_y(__mmask16 m, const float *xr, const float *is, const float *mu,
                            const float *sc, const float *sh, __m512 vlo, __m512 vhi, int c0,
                            const int clamp) {
    return bn512_y_of(m, bn512_ld(m, xr + c0), is, mu, sc, sh, vlo, vhi, c0, clamp);
}

/* The element-wise passes (the stored forward y, dx) walk a block of whole rows as one flat
 * array, 16 elements at a time, so only the block's last vector is partial: per row, a
 * channel count that is no multiple of 16 (24, 40) left a masked store per row, slow on AMD
 * Zen, and a row of 16 channels a call per row. The per-channel vectors are repeated over
 * P = lcm(C, 16) floats plus one vector (bn_rep) and read at the phase (element index mod P),
 * a vector at a time: a block starting mid-period reads past P into the repeat. With C a
 * multiple of 16, P = C, every phase is a multiple of 16 and the vectors are used as they
 * are. Each element still goes through the same float operations as in dx_row and the scalar
 * forward. */
typedef struct {
    int P;                /* lcm(C, 16) */
    const float *mu, *is; /* is NULL: unscaled */
    const float *sc, *sh; /* forward: y = (t - mu) * sc + sh */
    const float *A, *B, *D, *afs, *afh; /* dx; with codes the forward's scale and shift */
} bn_flat;

static int bn_period(int C) {
    const int low = C & -C; /* gcd(C, 16) is min(low, 16) */
    return low >= 16 ? C : C * (16 / low);
}

static const float *bn_rep(qat_ctx *ctx, const float *v, int C, int P) {
    if (!v || P == C) return v;
    float *r = qat_arena_floats(&ctx->arena, P + 16);
    for (int i = 0; i < P + 16; i++) r[i] = v[i % C];
    return r;
}

BN512_INLINE __mmask16 bn512_mask_n(int64_t left) {
    return bn512_mask(left >= 16 ? 16 : (int)left);
}

/* y over n elements of whole rows starting at phase ph (is and clamp constant per copy). */
BN512_INLINE void fwd_flat_body_avx512(float *restrict y, const float *restrict x, int64_t n,
                                       int ph, const bn_flat *f, const float *is, float lo,
                                       float hi, const int clamp) {
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    const float *restrict mu = f->mu, *restrict sc = f->sc, *restrict sh = f->sh;
    const int P = f->P;
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = bn512_mask_n(n - i);
        _mm_prefetch((const char *)(x + i + BN512_PF), _MM_HINT_T0);
        _mm_prefetch((const char *)(y + i + BN512_PF), _MM_HINT_T0);
        bn512_st(m, y + i, bn512_y_of(m, bn512_ld(m, x + i), is, mu, sc, sh, vlo, vhi, ph, clamp));
        ph = ph + 16 >= P ? ph + 16 - P : ph + 16;
    }
}

BN512_ATTR static void fwd_flat_avx512(float *restrict y, const float *restrict x, int64_t n,
                                       int ph, const bn_flat *f, float lo, float hi, int clamp) {
    if (f->is && clamp) fwd_flat_body_avx512(y, x, n, ph, f, f->is, lo, hi, 1);
    else if (f->is) fwd_flat_body_avx512(y, x, n, ph, f, f->is, lo, hi, 0);
    else if (clamp) fwd_flat_body_avx512(y, x, n, ph, f, NULL, lo, hi, 1);
    else fwd_flat_body_avx512(y, x, n, ph, f, NULL, lo, hi, 0);
}

/* With a per-tensor output fake-quant the forward never stores y: one pass takes its range
 * (what the observer needs), a second recomputes y and writes the fake-quant and the codes.
 * That is 17 bytes of memory traffic per element instead of 29 (y written, read by the
 * observer, read by the fake-quant), and the big layers are memory-bound.
 * Range of y over rows [r0, r1): min and max skipping NaN (minmax_run_avx512's
 * min_ps(v, a)), NaN count. */
BN512_ATTR static void fwd_range_avx512(const float *restrict x, int64_t r0, int64_t r1, int C,
                                        const float *restrict is, const float *restrict mu,
                                        const float *restrict sc, const float *restrict sh,
                                        float lo, float hi, int clamp, float *mn, float *mx,
                                        int64_t *nan) {
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    __m512 a = _mm512_set1_ps(INFINITY), b = _mm512_set1_ps(-INFINITY);
    __m512i cnt = _mm512_setzero_si512();
    const __m512i one = _mm512_set1_epi32(1);
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = x + r * C;
        for (int c0 = 0; c0 < C; c0 += 16) {
            const __mmask16 m = bn512_mask(C - c0);
            _mm_prefetch((const char *)(xr + c0 + BN512_PF), _MM_HINT_T0);
            __m512 v = clamp ? bn512_y(m, xr, is, mu, sc, sh, vlo, vhi, c0, 1)
                             : bn512_y(m, xr, is, mu, sc, sh, vlo, vhi, c0, 0);
            a = _mm512_mask_min_ps(a, m, v, a);
            b = _mm512_mask_max_ps(b, m, v, b);
            cnt = _mm512_mask_add_epi32(cnt, _mm512_mask_cmp_ps_mask(m, v, v, _CMP_UNORD_Q), cnt, one);
        }
    }
    *mn = _mm512_reduce_min_ps(a);
    *mx = _mm512_reduce_max_ps(b);
    *nan = _mm512_reduce_add_epi32(cnt);
}

/* y recomputed and fake-quantized per tensor (k's channel 0) into out and code (code may be
 * NULL): fakequant.c's fq16 and code16 on the same values, so bitwise qat_fq_kernel of the
 * stored y. */
BN512_ATTR static void fwd_fq_rows_avx512(float *restrict out, uint8_t *restrict code,
                                          const float *restrict x, int64_t r0, int64_t r1, int C,
                                          const float *restrict is, const float *restrict mu,
                                          const float *restrict sc, const float *restrict sh,
                                          float lo, float hi, int clamp, const qat_fq_consts *k) {
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    const __m512 qs = _mm512_set1_ps(k->scale[0]), qinv = _mm512_set1_ps(k->inv[0]);
    const __m512 qlo = _mm512_set1_ps(k->lo[0]), qhi = _mm512_set1_ps(k->hi[0]);
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = x + r * C;
        for (int c0 = 0; c0 < C; c0 += 16) {
            const __mmask16 m = bn512_mask(C - c0);
            const int64_t o = r * C + c0;
            _mm_prefetch((const char *)(xr + c0 + BN512_PF), _MM_HINT_T0);
            _mm_prefetch((const char *)(out + o + BN512_PF), _MM_HINT_T0);
            if (code) _mm_prefetch((const char *)(code + o + BN512_PF), _MM_HINT_T0);
            __m512 v = clamp ? bn512_y(m, xr, is, mu, sc, sh, vlo, vhi, c0, 1)
                             : bn512_y(m, xr, is, mu, sc, sh, vlo, vhi, c0, 0);
            __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(v, qinv),
                                            _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC);
            __m512 t = _mm512_min_ps(_mm512_max_ps(q, qlo), qhi);
            bn512_st(m, out + o, _mm512_mul_ps(_mm512_add_ps(t, _mm512_setzero_ps()), qs));
            if (code) {
                __mmask16 in = _mm512_cmp_ps_mask(q, qlo, _CMP_GE_OQ) & _mm512_cmp_ps_mask(q, qhi, _CMP_LE_OQ);
                __mmask16 ab = _mm512_cmp_ps_mask(q, qhi, _CMP_GT_OQ);
                __m128i cv = _mm_or_si128(_mm_maskz_mov_epi8(in, _mm_set1_epi8(QAT_FQ_INSIDE)),
                                          _mm_maskz_mov_epi8(ab, _mm_set1_epi8(QAT_FQ_ABOVE)));
                if (m == 0xffff)
                    _mm_storeu_si128((__m128i *)(code + o), cv);
                else
                    _mm_mask_storeu_epi8(code + o, m, cv);
            }
        }
    }
}

/* Row blocks of the fused forward passes and the flat element-wise ones: about BN_CHUNK_ELEMS
 * elements each (the result does not depend on the split: min and max are exact and the tie
 * case is excluded; the element-wise passes compute each element alone). */
static int64_t fwd_blocks(int64_t M, int C) {
    int64_t n = M * C / BN_CHUNK_ELEMS;
    return n < 1 ? 1 : n > M ? M : n;
}


/* y's range from t's range per channel: y = clamp((t - mean) * scale + shift) is monotone in
 * t (each operation by a constant rounds monotonically; decreasing where scale < 0), so a
 * channel's extremes are y(tmin) and y(tmax), computed here with the forward's own float
 * operations (no FMA in this file). Then every y is finite and not NaN. 0 when a value is not
 * finite (NaN in the channel, overflow): the pass over y decides those. */
static int y_range_from_t(const float *tmin, const float *tmax, const float *mu,
                          const float *sc, const float *sh, float lo, float hi, int clamp, int C,
                          float *ymin, float *ymax) {
    float a = INFINITY, b = -INFINITY;
    for (int c = 0; c < C; c++) {
        float y0 = (tmin[c] - mu[c]) * sc[c] + sh[c], y1 = (tmax[c] - mu[c]) * sc[c] + sh[c];
        if (!isfinite(tmin[c]) || !isfinite(tmax[c]) || !isfinite(y0) || !isfinite(y1)) return 0;
        if (clamp) {
            y0 = y0 > lo ? y0 : lo, y0 = y0 < hi ? y0 : hi;
            y1 = y1 > lo ? y1 : lo, y1 = y1 < hi ? y1 : hi;
        }
        const float u = y0 < y1 ? y0 : y1, v = y0 < y1 ? y1 : y0;
        a = u < a ? u : a;
        b = v > b ? v : b;
    }
    *ymin = a, *ymax = b;
    return 1;
}

/* Whether the QAT passes run their AVX-512 variants (QAT_ISA / qat_set_isa can lower it). */
static int bn_use_avx512(void) { return qat_cpu_isa() >= QAT_ISA_AVX512; }

/* Column sums s1, s2 (C doubles each) over M rows of a (and b, y), chunked as described above.
 * With tmin/tmax (C floats each, else NULL) also the per-column range a range-taking fn
 * (stats_range_chunk_avx512) leaves in the chunk scratch after f2: rmin at f2 + Cp, rmax at
 * f2 + 2Cp (Cp = bn_pad(C)), set to +inf/-inf here first. */
static void column_sums(qat_ctx *ctx, bn_chunk_fn fn, const float *a, const float *b,
                        const float *ref, const float *y, const float *isc, const uint8_t *code,
                        const float *aff, float lo, float hi, int64_t M, int C, double *s1,
                        double *s2, float *tmin, float *tmax) {
    int64_t nch = M * C / BN_CHUNK_ELEMS;
    if (nch > BN_MAX_CHUNKS) nch = BN_MAX_CHUNKS;
    if (nch > M) nch = M;
    if (nch < 1) nch = 1;
    int64_t rows_per = (M + nch - 1) / nch;
    double *part = qat_arena_alloc(&ctx->arena, (size_t)nch * 2 * C * sizeof(double));
    const int Cp = bn_pad(C);
    const int64_t stride = (tmin ? 4 : 2) * (int64_t)Cp; /* scratch floats per chunk */
    float *scratch = qat_arena_floats(&ctx->arena, nch * stride);
    memset(part, 0, (size_t)nch * 2 * C * sizeof(double));
    for (int64_t k = 0; tmin && k < nch; k++)
        for (int c = 0; c < Cp; c++) {
            scratch[k * stride + 2 * Cp + c] = INFINITY;
            scratch[k * stride + 3 * Cp + c] = -INFINITY;
        }
#pragma omp parallel for schedule(static) if (nch > 1 && M * C >= BN_PAR_ELEMS)
    for (int64_t k = 0; k < nch; k++) {
        int64_t r0 = k * rows_per, r1 = r0 + rows_per < M ? r0 + rows_per : M;
        if (r0 >= r1) continue;
        fn(a + r0 * C, b ? b + r0 * C : NULL, ref, y ? y + r0 * C : NULL, isc,
           code ? code + r0 * C : NULL, aff, lo, hi, r1 - r0, C,
           scratch + k * stride,
           scratch + k * stride + Cp, part + k * 2 * C, part + k * 2 * C + C);
    }
    for (int c = 0; c < C; c++) s1[c] = s2[c] = 0;
    for (int64_t k = 0; k < nch; k++)
        for (int c = 0; c < C; c++) {
            s1[c] += part[k * 2 * C + c];
            s2[c] += part[k * 2 * C + C + c];
        }
    if (!tmin) return;
    for (int c = 0; c < C; c++) tmin[c] = INFINITY, tmax[c] = -INFINITY;
    for (int64_t k = 0; k < nch; k++)
        for (int c = 0; c < C; c++) {
            const float a0 = scratch[k * stride + 2 * Cp + c], a1 = scratch[k * stride + 3 * Cp + c];
            tmin[c] = a0 < tmin[c] ? a0 : tmin[c];
            tmax[c] = a1 > tmax[c] ? a1 : tmax[c];
        }
}

/* Clamp bounds of the fused activation; the backward mask is lo < y < hi. Returned by value:
 * locals whose address escapes are reloaded inside the loops (they might alias the output). */
static float act_lo(qat_bn_act act) { return act == QAT_BN_ACT_NONE ? -INFINITY : 0.0f; }
static float act_hi(qat_bn_act act) { return act == QAT_BN_ACT_RELU6 ? 6.0f : INFINITY; }

qat_tensor *qat_batchnorm2d(qat_ctx *ctx, qat_tensor *x, qat_tensor *gamma, qat_tensor *beta,
                            qat_bn_state *st) {
    return qat_batchnorm2d_act(ctx, x, gamma, beta, st, QAT_BN_ACT_NONE);
}

qat_tensor *qat_batchnorm2d_act(qat_ctx *ctx, qat_tensor *x, qat_tensor *gamma,
                                qat_tensor *beta, qat_bn_state *st, qat_bn_act act) {
    return qat_batchnorm2d_scaled_act(ctx, x, NULL, gamma, beta, st, act);
}

/* With in_scale the op normalises t = x * in_scale[c] without storing t: every pass that read
 * t recomputes the same float product (this file has no FMA contraction: -march=x86-64), so
 * the numbers are bitwise those of qat_mul by a broadcast constant followed by this op, and
 * the gradient to x is in_scale[c] times the gradient to t, rounded once as qat_mul's was. */
qat_tensor *qat_batchnorm2d_scaled_act(qat_ctx *ctx, qat_tensor *x, const float *in_scale,
                                       qat_tensor *gamma, qat_tensor *beta, qat_bn_state *st,
                                       qat_bn_act act) {
    return qat_batchnorm2d_act_fq(ctx, x, in_scale, gamma, beta, st, act, NULL);
}

/* With fq the BN+act output goes to an arena buffer (not kept: the backward recomputes the
 * activation mask from x) and the node's output is its fake-quant, computed exactly as qat_fakequant does (same observer call
 * on the same array, same kernel): one node, and the backward applies the straight-through
 * mask inside BN's two passes instead of a separate pass writing a fresh gradient. */
qat_tensor *qat_batchnorm2d_act_fq(qat_ctx *ctx, qat_tensor *x, const float *in_scale,
                                   qat_tensor *gamma, qat_tensor *beta, qat_bn_state *st,
                                   qat_bn_act act, qat_fq *fq) {
    QAT_ASSERT(st && st->running_mean && st->running_var && x->ndim >= 2);
    const int C = x->shape[x->ndim - 1];
    QAT_ASSERT(C > 0 && x->numel > 0);
    const int64_t M = x->numel / C;
    QAT_ASSERT(!gamma || gamma->numel == C);
    QAT_ASSERT(!beta || beta->numel == C);
    qat_tensor *srcs[3] = {x, gamma, beta};
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_BATCHNORM2D, x->ndim, x->shape, 3, srcs);
    out->iparam[0] = ctx->training ? 1 : 0;
    out->fparam[0] = st->eps;
    out->fparam[1] = st->momentum;
    out->iparam[1] = (int)act;
    const float lo = act_lo(act), hi = act_hi(act);
    float *isc = NULL;
    if (in_scale) { /* copied: the caller's array need not outlive the forward */
        isc = qat_arena_floats(&ctx->arena, C);
        memcpy(isc, in_scale, (size_t)C * sizeof *isc);
    }

    /* The output fake-quant (qat_fakequant's forward on y; fq->fake_quant_enabled: the caller
     * checked), fused into y's passes when AVX-512 can and the observer needs only a range.
     * In training the statistics pass also takes each channel's range of t, from which
     * y_range_from_t has y's range without a pass of its own. */
    qat_qlayout l;
    int fused = 0;
    if (fq) {
        QAT_ASSERT(fq->fake_quant_enabled);
        QAT_ASSERT(qat_qlayout_of(&fq->scheme, x->ndim, x->shape, &l) == QAT_OK);
        QAT_ASSERT(l.channels == fq->nchannels);
        fused = l.channels == 1 && fq->obs.kind != QAT_OBS_HISTOGRAM && bn_use_avx512();
    }
    const int observing = fq && fq->observer_enabled && fq->obs.enabled && !fq->obs.frozen;
    float *trange = fused && observing && ctx->training ? qat_arena_floats(&ctx->arena, 2 * (int64_t)C)
                                                        : NULL; /* (2C) min, max of t */
    const int clamp = act != QAT_BN_ACT_NONE;

    float *mean = qat_arena_floats(&ctx->arena, C); /* (C) */
    float *rstd = qat_arena_floats(&ctx->arena, C); /* (C) */
    if (ctx->training) {
        double *s1 = qat_arena_alloc(&ctx->arena, 2 * (size_t)C * sizeof(double)), *s2 = s1 + C;
        float *ref = qat_arena_floats(&ctx->arena, C); /* first row: a sample of each channel */
        for (int c = 0; c < C; c++) ref[c] = isc ? x->data[c] * isc[c] : x->data[c];
        bn_chunk_fn fn = trange ? (isc ? stats_scaled_range_chunk_avx512 : stats_range_chunk_avx512)
                       : !isc ? (bn_use_avx512() ? stats_chunk_avx512 : stats_chunk)
                       : bn_use_avx512() ? stats_scaled_chunk_avx512 : stats_scaled_chunk;
        column_sums(ctx, fn, x->data, NULL, ref, NULL, isc, NULL, NULL, lo, hi, M, C, s1, s2,
                    trange, trange ? trange + C : NULL);
        for (int c = 0; c < C; c++) {
            double dm = s1[c] / (double)M;
            double var = s2[c] / (double)M - dm * dm; /* biased: what normalises */
            if (var < 0) var = 0;
            double mu = (double)ref[c] + dm;
            mean[c] = (float)mu;
            rstd[c] = (float)(1.0 / sqrt(var + (double)st->eps));
            if (st->update_stats) {
                /* PyTorch updates the running variance with the unbiased estimate. */
                double unbiased = M > 1 ? var * (double)M / (double)(M - 1) : var;
                double m = st->momentum;
                st->running_mean[c] = (float)((1.0 - m) * st->running_mean[c] + m * mu);
                st->running_var[c] = (float)((1.0 - m) * st->running_var[c] + m * unbiased);
            }
        }
    } else {
        for (int c = 0; c < C; c++) {
            mean[c] = st->running_mean[c];
            rstd[c] = (float)(1.0 / sqrt((double)st->running_var[c] + (double)st->eps));
        }
    }

    /* y = (x - mean) * scale + shift: subtracting the mean first keeps the precision when
     * |mean| >> std, and the pass is memory-bound so the extra subtraction is free. */
    float *scale = qat_arena_floats(&ctx->arena, C), *shift = qat_arena_floats(&ctx->arena, C);
    for (int c = 0; c < C; c++) {
        scale[c] = (gamma ? gamma->data[c] : 1.0f) * rstd[c];
        shift[c] = beta ? beta->data[c] : 0.0f;
    }
    const float *restrict xd = x->data;
    const float *restrict mu = mean, *restrict sc = scale, *restrict sh = shift;
    const float *restrict is = isc;

    float ymin = INFINITY, ymax = -INFINITY;
    int64_t ynan = 0;
    if (fused && observing && !(trange && y_range_from_t(trange, trange + C, mu, sc, sh, lo, hi,
                                                          clamp, C, &ymin, &ymax))) {
        const int64_t nblk = fwd_blocks(M, C);
#pragma omp parallel for schedule(static) reduction(min : ymin) reduction(max : ymax) \
    reduction(+ : ynan) if (nblk > 1 && x->numel >= BN_PAR_ELEMS)
        for (int64_t b = 0; b < nblk; b++) {
            float a, z;
            int64_t k;
            fwd_range_avx512(xd, b * M / nblk, (b + 1) * M / nblk, C, is, mu, sc, sh, lo, hi,
                             clamp, &a, &z, &k);
            ymin = a < ymin ? a : ymin;
            ymax = z > ymax ? z : ymax;
            ynan += k;
        }
    }
    /* Which zero qat_minmax keeps on a tie of -0.0 and +0.0 depends on its lane and chunk order:
     * leave such a batch to it. Clamped outputs hold no -0.0 (max(v, +0.0) is +0.0 for
     * v = -0.0) and no NaN, so only an unclamped output can tie. */
    if (fused && observing && !clamp && (ymin == 0.0f || ymax == 0.0f)) fused = 0;

    float *restrict y = NULL; /* the stored y: the output, or with fq unfused its input */
    if (!fused) {
        y = fq ? qat_arena_floats(&ctx->arena, x->numel) : out->data;
        if (bn_use_avx512()) {
            const int P = bn_period(C);
            const bn_flat f = {.P = P, .mu = bn_rep(ctx, mu, C, P), .is = bn_rep(ctx, is, C, P),
                               .sc = bn_rep(ctx, sc, C, P), .sh = bn_rep(ctx, sh, C, P)};
            const int64_t nblk = fwd_blocks(M, C);
#pragma omp parallel for schedule(static) if (nblk > 1 && x->numel >= BN_PAR_ELEMS)
            for (int64_t b = 0; b < nblk; b++) {
                const int64_t r0 = b * M / nblk, r1 = (b + 1) * M / nblk;
                fwd_flat_avx512(y + r0 * C, xd + r0 * C, (r1 - r0) * C, (int)(r0 * C % P), &f,
                                lo, hi, clamp);
            }
        } else {
#pragma omp parallel for schedule(static) if (x->numel >= BN_PAR_ELEMS)
            for (int64_t r = 0; r < M; r++) {
                const float *restrict xr = xd + r * C;
                float *restrict yr = y + r * C;
                if (is && act == QAT_BN_ACT_NONE) {
#pragma omp simd
                    for (int c = 0; c < C; c++) yr[c] = (xr[c] * is[c] - mu[c]) * sc[c] + sh[c];
                } else if (is) {
#pragma omp simd
                    for (int c = 0; c < C; c++) {
                        float v = (xr[c] * is[c] - mu[c]) * sc[c] + sh[c];
                        v = v > lo ? v : lo;
                        yr[c] = v < hi ? v : hi;
                    }
                } else if (act == QAT_BN_ACT_NONE) {
#pragma omp simd
                    for (int c = 0; c < C; c++) yr[c] = (xr[c] - mu[c]) * sc[c] + sh[c];
                } else {
                    /* same clamp as qat_relu / qat_relu6: fused and separate ops agree bitwise */
#pragma omp simd
                    for (int c = 0; c < C; c++) {
                        float v = (xr[c] - mu[c]) * sc[c] + sh[c];
                        v = v > lo ? v : lo;
                        yr[c] = v < hi ? v : hi;
                    }
                }
            }
        }
    }

    uint8_t *code = NULL;
    if (fq) {
        if (observing) {
            qat_status ost = fused ? qat_observer_update_minmax(&fq->obs, &ymin, &ymax, ynan)
                                   : qat_observer_update(&fq->obs, y, x->ndim, x->shape);
            if (ost == QAT_OK)
                fq->qparams_dirty = 1;
            else
                fq->skipped++;
        }
        if (fq->qparams_dirty && fq->obs.seen > 0 && qat_fq_compute_qparams(fq) != QAT_OK)
            fq->skipped++;
        qat_fq_consts k;
        qat_fq_consts_fill(&k, &fq->scheme, l.channels, fq->scale, fq->zero_point,
                           qat_arena_floats(&ctx->arena, 3 * (int64_t)l.channels));
        if (out->requires_grad) code = qat_arena_alloc(&ctx->arena, (size_t)x->numel);
        if (fused) {
            float *restrict o = out->data;
            uint8_t *restrict cd = code;
            const int64_t nblk = fwd_blocks(M, C);
#pragma omp parallel for schedule(static) if (nblk > 1 && x->numel >= BN_PAR_ELEMS)
            for (int64_t b = 0; b < nblk; b++)
                fwd_fq_rows_avx512(o, cd, xd, b * M / nblk, (b + 1) * M / nblk, C, is, mu, sc, sh,
                                   lo, hi, clamp, &k);
        } else {
            qat_fq_kernel(out->data, code, y, &l, &k);
        }
    }

    if (out->requires_grad) {
        bn_saved *sv = qat_arena_alloc(&ctx->arena, sizeof *sv);
        sv->mean = mean;
        sv->rstd = rstd;
        sv->isc = isc;
        if (fq) {
            float *aff = qat_arena_floats(&ctx->arena, 2 * (int64_t)C);
            memcpy(aff, scale, (size_t)C * sizeof *aff);
            memcpy(aff + C, shift, (size_t)C * sizeof *aff);
            sv->aff = aff;
        } else {
            sv->aff = NULL;
        }
        sv->code = code;
        out->saved = sv;
    }
    return out;
}

/* One row of dx = A*g + B*(t - mean) + D (g = act_grad of dy, STE-masked when has_code; t = x
 * or x * isc), times isc when scaled (qat_mul's backward: dt rounded, then times the scale),
 * stored or added. */
static inline __attribute__((always_inline)) void
dx_row(float *restrict dxr, const float *restrict dyr, const float *restrict xr,
       const float *restrict yr, const uint8_t *restrict cd, const float *restrict mu,
       const float *restrict Ar, const float *restrict Br, const float *restrict Dr,
       const float *restrict is, const float *restrict aff, float lo, float hi, int C,
       const int scaled, const int has_code, const int accumulate) {
    if (has_code) {
        uint32_t mk[BN_CODE_BLOCK];
        for (int c0 = 0; c0 < C; c0 += BN_CODE_BLOCK) {
            const int n = C - c0 < BN_CODE_BLOCK ? C - c0 : BN_CODE_BLOCK;
            code_mask(mk, cd + c0, n);
#pragma omp simd
            for (int j = 0; j < n; j++) {
                const int c = c0 + j;
                float t = scaled ? xr[c] * is[c] : xr[c];
                float yv = (t - mu[c]) * aff[c] + aff[C + c]; /* the forward's, before the clamp */
                float dt = Ar[c] * ste_act_grad(dyr[c], mk[j], yv, lo, hi) + Br[c] * (t - mu[c]) + Dr[c];
                float v = scaled ? dt * is[c] : dt;
                if (accumulate)
                    dxr[c] += v;
                else
                    dxr[c] = v;
            }
        }
        return;
    }
#pragma omp simd
    for (int c = 0; c < C; c++) {
        float t = scaled ? xr[c] * is[c] : xr[c];
        float dt = Ar[c] * act_grad(dyr[c], yr[c], lo, hi) + Br[c] * (t - mu[c]) + Dr[c];
        float v = scaled ? dt * is[c] : dt;
        if (accumulate)
            dxr[c] += v;
        else
            dxr[c] = v;
    }
}

/* dx_row over n elements of whole rows from phase ph, walked flat (bn_flat). */
BN512_INLINE void dx_flat_avx512(float *restrict dx, const float *restrict dy,
                                 const float *restrict x, const float *restrict y,
                                 const uint8_t *restrict cd, int64_t n, int ph, const bn_flat *f,
                                 float lo, float hi, const int scaled, const int has_code,
                                 const int accumulate) {
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    /* locals: the stores to dx would otherwise reload f's fields */
    const float *restrict mu = f->mu, *restrict is = f->is, *restrict A = f->A, *restrict B = f->B;
    const float *restrict D = f->D, *restrict afs = f->afs, *restrict afh = f->afh;
    const int P = f->P;
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = bn512_mask_n(n - i);
        _mm_prefetch((const char *)(x + i + BN512_PF), _MM_HINT_T0);
        _mm_prefetch((const char *)(dy + i + BN512_PF), _MM_HINT_T0);
        _mm_prefetch((const char *)(dx + i + BN512_PF), _MM_HINT_T0);
        if (has_code) _mm_prefetch((const char *)(cd + i + BN512_PF), _MM_HINT_T0);
        else _mm_prefetch((const char *)(y + i + BN512_PF), _MM_HINT_T0);
        __m512 xv = bn512_ld(m, x + i), vis = scaled ? bn512_ld(m, is + ph) : xv;
        __m512 d = _mm512_sub_ps(scaled ? _mm512_mul_ps(xv, vis) : xv, bn512_ld(m, mu + ph));
        __m512 g = has_code
            ? bn512_ste_act_grad(m, dy + i, cd + i,
                                 _mm512_add_ps(_mm512_mul_ps(d, bn512_ld(m, afs + ph)),
                                               bn512_ld(m, afh + ph)), vlo, vhi)
            : bn512_act_grad(m, dy + i, bn512_ld(m, y + i), vlo, vhi);
        __m512 dt = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(bn512_ld(m, A + ph), g),
                                                _mm512_mul_ps(bn512_ld(m, B + ph), d)),
                                  bn512_ld(m, D + ph));
        __m512 v = scaled ? _mm512_mul_ps(dt, vis) : dt;
        bn512_st(m, dx + i, accumulate ? _mm512_add_ps(bn512_ld(m, dx + i), v) : v);
        ph = ph + 16 >= P ? ph + 16 - P : ph + 16;
    }
}

/* dx_flat_avx512 for the variant of the flags (constant in each copy). */
#define DX_FLAT_AVX512(name, sc, hc, acc)                                                         \
    BN512_ATTR static void name(float *dx, const float *dy, const float *x, const float *y,       \
                                const uint8_t *cd, int64_t n, int ph, const bn_flat *f, float lo, \
                                float hi) {                                                       \
        dx_flat_avx512(dx, dy, x, y, cd, n, ph, f, lo, hi, sc, hc, acc);                          \
    }
DX_FLAT_AVX512(dx_flat_p_avx512, 0, 0, 0)
DX_FLAT_AVX512(dx_flat_p_acc_avx512, 0, 0, 1)
DX_FLAT_AVX512(dx_flat_s_avx512, 1, 0, 0)
DX_FLAT_AVX512(dx_flat_s_acc_avx512, 1, 0, 1)
DX_FLAT_AVX512(dx_flat_q_avx512, 0, 1, 0)
DX_FLAT_AVX512(dx_flat_q_acc_avx512, 0, 1, 1)
DX_FLAT_AVX512(dx_flat_sq_avx512, 1, 1, 0)
DX_FLAT_AVX512(dx_flat_sq_acc_avx512, 1, 1, 1)
typedef void (*dx_flat_fn)(float *, const float *, const float *, const float *, const uint8_t *,
                           int64_t, int, const bn_flat *, float, float);

void qat_batchnorm2d_backward(qat_ctx *ctx, qat_tensor *out) {
    qat_tensor *x = out->src[0], *gamma = out->src[1], *beta = out->src[2];
    const bn_saved *sv = out->saved;
    QAT_ASSERT(sv && out->grad);
    const int C = x->shape[x->ndim - 1];
    const int64_t M = x->numel / C;
    const int training = out->iparam[0];
    const int need_gamma = gamma && gamma->requires_grad, need_beta = beta && beta->requires_grad;
    const int need_x = x->requires_grad;
    const float *restrict dy = out->grad, *restrict yo = out->data; /* not read with codes */
    const uint8_t *restrict code = sv->code;
    const float lo = act_lo((qat_bn_act)out->iparam[1]), hi = act_hi((qat_bn_act)out->iparam[1]);

    /* s_dy = sum dy, s_dyx = sum dy*(x - mean) per channel: the parameter grads, and in
     * training mode the terms through the batch mean and variance. */
    double *s_dy = NULL, *s_dyx = NULL;
    if (need_gamma || need_beta || (need_x && training)) {
        s_dy = qat_arena_alloc(&ctx->arena, 2 * (size_t)C * sizeof(double));
        s_dyx = s_dy + C;
        const int v512 = bn_use_avx512();
        bn_chunk_fn fn = sv->isc ? (code ? (v512 ? grad_scaled_fq_chunk_avx512 : grad_scaled_fq_chunk)
                                         : (v512 ? grad_scaled_chunk_avx512 : grad_scaled_chunk))
                                 : (code ? (v512 ? grad_fq_chunk_avx512 : grad_fq_chunk)
                                         : (v512 ? grad_chunk_avx512 : grad_chunk));
        column_sums(ctx, fn, dy, x->data, sv->mean, code ? NULL : yo, sv->isc, code, sv->aff, lo, hi,
                    M, C, s_dy, s_dyx, NULL, NULL);
    }
    if (need_gamma) {
        float *dg = qat_grad(ctx, gamma);
        for (int c = 0; c < C; c++) dg[c] += (float)(s_dyx[c] * sv->rstd[c]);
    }
    if (need_beta) {
        float *db = qat_grad(ctx, beta);
        for (int c = 0; c < C; c++) db[c] += (float)s_dy[c];
    }
    if (!need_x) return;

    /* Training: with xhat = (x-mean)*rstd and k = gamma*rstd,
     *   dx = k * (dy - mean(dy) - xhat * mean(dy*xhat))
     *      = k*dy + B*(x - mean) + D,  B = -k*rstd^2*mean(dy*(x-mean)), D = -k*mean(dy).
     * Eval: the statistics are constants, dx = k*dy. */
    float *A = qat_arena_floats(&ctx->arena, C), *B = qat_arena_floats(&ctx->arena, C);
    float *D = qat_arena_floats(&ctx->arena, C);
    for (int c = 0; c < C; c++) {
        double r = sv->rstd[c];
        double k = (gamma ? (double)gamma->data[c] : 1.0) * r;
        A[c] = (float)k;
        if (training) {
            B[c] = (float)(-k * r * r * (s_dyx[c] / (double)M));
            D[c] = (float)(-k * (s_dy[c] / (double)M));
        } else {
            B[c] = 0.0f;
            D[c] = 0.0f;
        }
    }
    /* A grad that does not exist yet would be zeros: allocate it uninitialised and store
     * instead of adding, which saves the zeroing pass and a read of the buffer. */
    const int accumulate = x->grad != NULL;
    float *restrict dx = accumulate ? x->grad : (x->grad = qat_arena_floats(&ctx->arena, x->numel));
    const int scaled = sv->isc != NULL, has_code = code != NULL;
    if (bn_use_avx512()) {
        dx_flat_fn fn;
        if (scaled && has_code) fn = accumulate ? dx_flat_sq_acc_avx512 : dx_flat_sq_avx512;
        else if (scaled) fn = accumulate ? dx_flat_s_acc_avx512 : dx_flat_s_avx512;
        else if (has_code) fn = accumulate ? dx_flat_q_acc_avx512 : dx_flat_q_avx512;
        else fn = accumulate ? dx_flat_p_acc_avx512 : dx_flat_p_avx512;
        const int P = bn_period(C);
        const float *aff = sv->aff;
        const bn_flat f = {.P = P,
                           .mu = bn_rep(ctx, sv->mean, C, P),
                           .is = bn_rep(ctx, sv->isc, C, P),
                           .A = bn_rep(ctx, A, C, P),
                           .B = bn_rep(ctx, B, C, P),
                           .D = bn_rep(ctx, D, C, P),
                           .afs = bn_rep(ctx, aff, C, P),
                           .afh = bn_rep(ctx, aff ? aff + C : NULL, C, P)};
        const int64_t nblk = fwd_blocks(M, C);
#pragma omp parallel for schedule(static) if (nblk > 1 && x->numel >= BN_PAR_ELEMS)
        for (int64_t b = 0; b < nblk; b++) {
            const int64_t o = b * M / nblk * C, n = (b + 1) * M / nblk * C - o;
            fn(dx + o, dy + o, x->data + o, yo + o, code ? code + o : NULL, n, (int)(o % P), &f,
               lo, hi);
        }
        return;
    }
#pragma omp parallel for schedule(static) if (x->numel >= BN_PAR_ELEMS)
    for (int64_t r = 0; r < M; r++) {
        const int64_t o = r * C;
        const uint8_t *cd = code ? code + o : NULL;
        /* constant flags: each call inlines to a branch-free vector loop */
#define DX_ROW(sc, hc, acc)                                                                       \
    dx_row(dx + o, dy + o, x->data + o, yo + o, cd, sv->mean, A, B, D, sv->isc, sv->aff, lo, hi, \
           C, sc, hc, acc)
        if (scaled && has_code) accumulate ? DX_ROW(1, 1, 1) : DX_ROW(1, 1, 0);
        else if (scaled) accumulate ? DX_ROW(1, 0, 1) : DX_ROW(1, 0, 0);
        else if (has_code) accumulate ? DX_ROW(0, 1, 1) : DX_ROW(0, 1, 0);
        else accumulate ? DX_ROW(0, 0, 1) : DX_ROW(0, 0, 0);
#undef DX_ROW
    }
}
