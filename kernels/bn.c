/* BatchNorm passes (kernels/bn.h): the scalar reference of every pass, the chunked column sums
 * and the drivers that split rows into tasks and dispatch to the AVX-512 variants of
 * kernels/bn_avx512.c. Built for baseline x86-64: no FMA contraction, so each expression is
 * rounded step by step as the separate ops would round it. */
#include "base.h"
#include "bn_pass.h"
#include "kernels.h"
#include <math.h>
#include <string.h>

static int bn_use_avx512(void) { return qat_cpu_isa() >= QAT_ISA_AVX512; }

int qat_bn_fused_fq(void) { return bn_use_avx512(); }

/* ---- scalar passes ---------------------------------------------------------------------------- */

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


/* Row blocks of the fused forward passes and the flat element-wise ones: about BN_CHUNK_ELEMS
 * elements each (the result does not depend on the split: min and max are exact and the tie
 * case is excluded; the element-wise passes compute each element alone). */
static int64_t fwd_blocks(int64_t M, int C) {
    int64_t n = M * C / BN_CHUNK_ELEMS;
    return n < 1 ? 1 : n > M ? M : n;
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

/* With the forward's own float operations (no FMA in this file); when it returns 1 every y is
 * finite and not NaN. */
int qat_bn_y_range(const float *tmin, const float *tmax, const float *mu, const float *sc,
                   const float *sh, float lo, float hi, int clamp, int C, float *ymin,
                   float *ymax) {
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

/* ---- column sums ------------------------------------------------------------------------------ */

static int64_t sum_chunks(int64_t M, int C) {
    int64_t nch = M * C / BN_CHUNK_ELEMS;
    if (nch > BN_MAX_CHUNKS) nch = BN_MAX_CHUNKS;
    if (nch > M) nch = M;
    if (nch < 1) nch = 1;
    return nch;
}

/* The partials (nch * 2C doubles), then the chunks' float scratch (stride floats each), each
 * part 64-byte aligned. */
static size_t sums_part_bytes(int64_t nch, int C) {
    return ((size_t)nch * 2 * (size_t)C * sizeof(double) + 63) & ~(size_t)63;
}

size_t qat_bn_sums_scratch(int64_t M, int C, int range) {
    const int64_t nch = sum_chunks(M, C);
    return sums_part_bytes(nch, C) + (size_t)nch * (range ? 4 : 2) * (size_t)bn_pad(C) * sizeof(float);
}

/* Column sums s1, s2 (C doubles each) over M rows of a (and b, y), chunked as described in
 * bn.h. With tmin/tmax (C floats each, else NULL) also the per-column range a range-taking fn
 * (the AVX-512 statistics chunk with range) leaves in the chunk scratch after f2: rmin at
 * f2 + Cp, rmax at f2 + 2Cp (Cp = bn_pad(C)), set to +inf/-inf here first. */
static void column_sums(bn_chunk_fn fn, const float *a, const float *b, const float *ref,
                        const float *y, const float *isc, const uint8_t *code, const float *aff,
                        float lo, float hi, int64_t M, int C, double *s1, double *s2, float *tmin,
                        float *tmax, void *work) {
    const int64_t nch = sum_chunks(M, C);
    int64_t rows_per = (M + nch - 1) / nch;
    double *part = work;
    const int Cp = bn_pad(C);
    const int64_t stride = (tmin ? 4 : 2) * (int64_t)Cp; /* scratch floats per chunk */
    float *scratch = (float *)((char *)work + sums_part_bytes(nch, C));
    memset(part, 0, (size_t)nch * 2 * C * sizeof(double));
    for (int64_t k = 0; tmin && k < nch; k++)
        for (int c = 0; c < Cp; c++) {
            scratch[k * stride + 2 * Cp + c] = INFINITY;
            scratch[k * stride + 3 * Cp + c] = -INFINITY;
        }
#pragma omp parallel for num_threads(qat_kernel_threads()) schedule(static) if (nch > 1 && M * C >= BN_PAR_ELEMS)
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

void qat_bn_stats(double *s1, double *s2, float *tmin, float *tmax, const float *x,
                  const float *isc, const float *ref, int64_t M, int C, void *scratch) {
    QAT_ASSERT(!tmin || bn_use_avx512()); /* the range rides on the AVX-512 pass */
    bn_chunk_fn fn = bn_use_avx512() ? qat_bn_stats_chunk_fn_avx512(isc != NULL, tmin != NULL)
                     : isc ? stats_scaled_chunk : stats_chunk;
    column_sums(fn, x, NULL, ref, NULL, isc, NULL, NULL, 0.0f, 0.0f, M, C, s1, s2, tmin, tmax,
                scratch);
}

void qat_bn_grad_sums(double *s_dy, double *s_dyx, const float *dy, const float *x,
                      const float *mean, const float *y, const float *isc, const uint8_t *code,
                      const float *aff, float lo, float hi, int64_t M, int C, void *scratch) {
    bn_chunk_fn fn = bn_use_avx512() ? qat_bn_grad_chunk_fn_avx512(isc != NULL, code != NULL)
                     : isc ? (code ? grad_scaled_fq_chunk : grad_scaled_chunk)
                           : (code ? grad_fq_chunk : grad_chunk);
    column_sums(fn, dy, x, mean, code ? NULL : y, isc, code, aff, lo, hi, M, C, s_dy, s_dyx, NULL,
                NULL, scratch);
}

/* ---- element-wise passes ---------------------------------------------------------------------- */

static int bn_period(int C) {
    const int low = C & -C; /* gcd(C, 16) is min(low, 16) */
    return low >= 16 ? C : C * (16 / low);
}

/* v repeated over P + 16 floats taken from *next (v itself when P == C; NULL stays NULL). */
static const float *bn_rep(float **next, const float *v, int C, int P) {
    if (!v || P == C) return v;
    float *r = *next;
    *next += P + 16;
    for (int i = 0; i < P + 16; i++) r[i] = v[i % C];
    return r;
}

size_t qat_bn_forward_scratch(int C) {
    const int P = bn_period(C);
    return bn_use_avx512() && P != C ? 4 * (size_t)(P + 16) : 0;
}

size_t qat_bn_dx_scratch(int C) {
    const int P = bn_period(C);
    return bn_use_avx512() && P != C ? 7 * (size_t)(P + 16) : 0;
}

void qat_bn_forward(float *y, const float *x, const float *mean, const float *isc,
                    const float *scale, const float *shift, float lo, float hi, int clamp,
                    int64_t M, int C, float *scratch) {
    const float *restrict xd = x;
    const float *restrict mu = mean, *restrict sc = scale, *restrict sh = shift;
    const float *restrict is = isc;
    if (bn_use_avx512()) {
        const int P = bn_period(C);
        float *next = scratch;
        const float *rmu = bn_rep(&next, mu, C, P), *ris = bn_rep(&next, is, C, P);
        const float *rsc = bn_rep(&next, sc, C, P), *rsh = bn_rep(&next, sh, C, P);
        const bn_flat f = {.P = P, .mu = rmu, .is = ris, .sc = rsc, .sh = rsh};
        const int64_t nblk = fwd_blocks(M, C);
#pragma omp parallel for num_threads(qat_kernel_threads()) schedule(static) if (nblk > 1 && M * C >= BN_PAR_ELEMS)
        for (int64_t b = 0; b < nblk; b++) {
            const int64_t r0 = b * M / nblk, r1 = (b + 1) * M / nblk;
            qat_bn_fwd_flat_avx512(y + r0 * C, xd + r0 * C, (r1 - r0) * C, (int)(r0 * C % P), &f,
                                   lo, hi, clamp);
        }
        return;
    }
#pragma omp parallel for num_threads(qat_kernel_threads()) schedule(static) if (M * C >= BN_PAR_ELEMS)
    for (int64_t r = 0; r < M; r++) {
        const float *restrict xr = xd + r * C;
        float *restrict yr = y + r * C;
        if (is && !clamp) {
#pragma omp simd
            for (int c = 0; c < C; c++) yr[c] = (xr[c] * is[c] - mu[c]) * sc[c] + sh[c];
        } else if (is) {
#pragma omp simd
            for (int c = 0; c < C; c++) {
                float v = (xr[c] * is[c] - mu[c]) * sc[c] + sh[c];
                v = v > lo ? v : lo;
                yr[c] = v < hi ? v : hi;
            }
        } else if (!clamp) {
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

void qat_bn_forward_range(float *ymin, float *ymax, int64_t *ynan_out, const float *x,
                          const float *mean, const float *isc, const float *scale,
                          const float *shift, float lo, float hi, int clamp, int64_t M, int C) {
    QAT_ASSERT(bn_use_avx512());
    float ymn = INFINITY, ymx = -INFINITY;
    int64_t ynan = 0;
    const int64_t nblk = fwd_blocks(M, C);
#pragma omp parallel for num_threads(qat_kernel_threads()) schedule(static) reduction(min : ymn) reduction(max : ymx) \
    reduction(+ : ynan) if (nblk > 1 && M * C >= BN_PAR_ELEMS)
    for (int64_t b = 0; b < nblk; b++) {
        float a, z;
        int64_t k;
        qat_bn_fwd_range_avx512(x, b * M / nblk, (b + 1) * M / nblk, C, isc, mean, scale, shift,
                                lo, hi, clamp, &a, &z, &k);
        ymn = a < ymn ? a : ymn;
        ymx = z > ymx ? z : ymx;
        ynan += k;
    }
    *ymin = ymn, *ymax = ymx, *ynan_out = ynan;
}

void qat_bn_forward_fq(float *out, uint8_t *code, const float *x, const float *mean,
                       const float *isc, const float *scale, const float *shift, float lo,
                       float hi, int clamp, int64_t M, int C, const qat_fq_consts *k) {
    QAT_ASSERT(bn_use_avx512());
    const int64_t nblk = fwd_blocks(M, C);
#pragma omp parallel for num_threads(qat_kernel_threads()) schedule(static) if (nblk > 1 && M * C >= BN_PAR_ELEMS)
    for (int64_t b = 0; b < nblk; b++)
        qat_bn_fwd_fq_rows_avx512(out, code, x, b * M / nblk, (b + 1) * M / nblk, C, isc, mean,
                                  scale, shift, lo, hi, clamp, k);
}

void qat_bn_dx(float *dx, const float *dy, const float *x, const float *yo, const uint8_t *code,
               const float *mean, const float *A, const float *B, const float *D,
               const float *isc, const float *aff, float lo, float hi, int64_t M, int C,
               int accumulate, float *scratch) {
    const int scaled = isc != NULL, has_code = code != NULL;
    if (bn_use_avx512()) {
        bn_dx_flat_fn fn = qat_bn_dx_flat_fn_avx512(scaled, has_code, accumulate);
        const int P = bn_period(C);
        float *next = scratch;
        const float *rmu = bn_rep(&next, mean, C, P), *ris = bn_rep(&next, isc, C, P);
        const float *rA = bn_rep(&next, A, C, P), *rB = bn_rep(&next, B, C, P);
        const float *rD = bn_rep(&next, D, C, P), *rafs = bn_rep(&next, aff, C, P);
        const float *rafh = bn_rep(&next, aff ? aff + C : NULL, C, P);
        const bn_flat f = {.P = P, .mu = rmu, .is = ris, .A = rA, .B = rB, .D = rD, .afs = rafs,
                           .afh = rafh};
        const int64_t nblk = fwd_blocks(M, C);
#pragma omp parallel for num_threads(qat_kernel_threads()) schedule(static) if (nblk > 1 && M * C >= BN_PAR_ELEMS)
        for (int64_t b = 0; b < nblk; b++) {
            const int64_t o = b * M / nblk * C, n = (b + 1) * M / nblk * C - o;
            fn(dx + o, dy + o, x + o, yo + o, code ? code + o : NULL, n, (int)(o % P), &f, lo, hi);
        }
        return;
    }
#pragma omp parallel for num_threads(qat_kernel_threads()) schedule(static) if (M * C >= BN_PAR_ELEMS)
    for (int64_t r = 0; r < M; r++) {
        const int64_t o = r * C;
        const uint8_t *cd = code ? code + o : NULL;
        /* constant flags: each call inlines to a branch-free vector loop */
#define DX_ROW(sc, hc, acc)                                                                       \
    dx_row(dx + o, dy + o, x + o, yo + o, cd, mean, A, B, D, isc, aff, lo, hi, C, sc, hc, acc)
        if (scaled && has_code) accumulate ? DX_ROW(1, 1, 1) : DX_ROW(1, 1, 0);
        else if (scaled) accumulate ? DX_ROW(1, 0, 1) : DX_ROW(1, 0, 0);
        else if (has_code) accumulate ? DX_ROW(0, 1, 1) : DX_ROW(0, 1, 0);
        else accumulate ? DX_ROW(0, 0, 1) : DX_ROW(0, 0, 0);
#undef DX_ROW
    }
}
