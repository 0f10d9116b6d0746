/* The AVX-512 BatchNorm passes (kernels/bn.h): the expressions of kernels/bn.c 16 channels at
 * a time, each element through the same sequence of separately rounded float operations, so
 * they are bitwise the scalar reference. This file is built with the AVX-512 flags and
 * -ffp-contract=off (the Makefile): gcc would otherwise fuse the intrinsics' multiply and add
 * into an FMA. Entered only through the dispatch of kernels/bn.c.
 *
 * The passes the QAT model runs (input scale, output fake-quant codes) do about twice the
 * arithmetic of the plain ones; built for baseline x86-64 (4-lane SSE2) they made most of the
 * QAT step's extra cost, and in the FP32 step the BN passes were a third of the time, so the
 * plain passes run these variants too (every flag off). A column's rows are still added in row
 * order; only the channels run side by side. Full channel blocks use plain loads and stores,
 * the last partial block masked ones (masked stores are slow on AMD Zen 4/5).
 * Every streamed array is prefetched BN512_PF elements ahead: with the hardware prefetcher alone
 * these passes ran slower than the scalar ones on tensors that do not fit in cache (backward
 * of a 64x28x28x64 batch: 5.1 ms against 3.4 ms scalar; with the prefetch 1.6 ms). Prefetches
 * past the end of an array are harmless (they never fault). */
#include "bn_pass.h"
#include "fq_simd512.h"
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define BN512_PF 1024 /* elements ahead: 4 KiB of a float array, 1 KiB of codes */
#define BN512_INLINE static inline __attribute__((always_inline))

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
    static void name(const float *restrict a, const float *restrict b,                 \
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
    static void name(const float *restrict a, const float *restrict b,                 \
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

void qat_bn_fwd_flat_avx512(float *restrict y, const float *restrict x, int64_t n, int ph,
                            const bn_flat *f, float lo, float hi, int clamp) {
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
void qat_bn_fwd_range_avx512(const float *restrict x, int64_t r0, int64_t r1, int C,
                             const float *restrict is, const float *restrict mu,
                             const float *restrict sc, const float *restrict sh, float lo, float hi,
                             int clamp, float *mn, float *mx, int64_t *nan) {
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
 * NULL): the fake-quant kernel's qat_fq16 and qat_fq_code16 on the same values, so bitwise
 * qat_fq_kernel of the stored y. */
void qat_bn_fwd_fq_rows_avx512(float *restrict out, uint8_t *restrict code, const float *restrict x,
                               int64_t r0, int64_t r1, int C, const float *restrict is,
                               const float *restrict mu, const float *restrict sc,
                               const float *restrict sh, float lo, float hi, int clamp,
                               const qat_fq_consts *k) {
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
            __m512 q;
            bn512_st(m, out + o, qat_fq16(v, qs, qinv, qlo, qhi, &q));
            if (code) {
                __m128i cv = qat_fq_code16(q, qlo, qhi);
                if (m == 0xffff)
                    _mm_storeu_si128((__m128i *)(code + o), cv);
                else
                    _mm_mask_storeu_epi8(code + o, m, cv);
            }
        }
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
    static void name(float *dx, const float *dy, const float *x, const float *y,       \
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

bn_dx_flat_fn qat_bn_dx_flat_fn_avx512(int scaled, int has_code, int accumulate) {
    if (scaled && has_code) return accumulate ? dx_flat_sq_acc_avx512 : dx_flat_sq_avx512;
    if (scaled) return accumulate ? dx_flat_s_acc_avx512 : dx_flat_s_avx512;
    if (has_code) return accumulate ? dx_flat_q_acc_avx512 : dx_flat_q_avx512;
    return accumulate ? dx_flat_p_acc_avx512 : dx_flat_p_avx512;
}

bn_chunk_fn qat_bn_stats_chunk_fn_avx512(int scaled, int range) {
    if (range) return scaled ? stats_scaled_range_chunk_avx512 : stats_range_chunk_avx512;
    return scaled ? stats_scaled_chunk_avx512 : stats_chunk_avx512;
}

bn_chunk_fn qat_bn_grad_chunk_fn_avx512(int scaled, int has_code) {
    if (scaled) return has_code ? grad_scaled_fq_chunk_avx512 : grad_scaled_chunk_avx512;
    return has_code ? grad_fq_chunk_avx512 : grad_chunk_avx512;
}
