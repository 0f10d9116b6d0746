/* Fake-quant kernels: y = qat_fake_quantize(x) per element with per-channel constants plus the
 * clipping code the straight-through backward reads, the straight-through gradient itself, and
 * the per-channel min/max every observer starts from. Each has a scalar _ref; the unsuffixed
 * name dispatches on qat_cpu_isa() to the AVX2 / AVX-512 variants of kernels/fq_avx2.c and
 * kernels/fq_avx512.c, which are bit-identical to it (tests/test_fakequant.c checks every
 * variant against the _ref on halves, NaN, infinities and huge values).
 *
 * The SIMD variants do not call qat_fake_quantize per element; they compute the same numbers
 * in float: for r = nearbyint(x * inv) (integer-valued), qmath's
 *   (float)(clamp(r + zp, qmin, qmax) - zp) * scale  ==  clamp(r, qmin - zp, qmax - zp) * scale
 * exactly, because qmin - zp and qmax - zp are small integers, float compares of integers are
 * exact, and both sides end in the same single multiply. NaN goes to qmin in qmath; in SIMD
 * max(r, lo) with r NaN returns lo (maxps returns its second operand on NaN). -0.0 from the
 * rounding becomes +0.0 (qmath converts through an integer) by adding +0.0f.
 *
 * A tensor is seen as (outer, C, inner) around its channel axis (fakequant/quant.h,
 * qat_qlayout_of); a per-tensor scheme is (1, 1, numel). */
#ifndef QAT_FQ_KERNELS_H
#define QAT_FQ_KERNELS_H

#include "qmath.h"
#include <stdint.h>

typedef struct {
    int64_t outer, inner;
    int channels;
} qat_qlayout;

/* Clipping codes saved for backward, one byte per element. */
enum { QAT_FQ_BELOW = 0 /* also NaN */, QAT_FQ_INSIDE = 1, QAT_FQ_ABOVE = 2 };

/* Per-channel constants of the kernel, derived from (scale, zero_point) once per call by
 * qat_fq_consts_fill: inv = 1.0f / scale, lo = qmin - zp, hi = qmax - zp (the SIMD variants
 * clamp round(x * inv) to [lo, hi] in float, which is exact for these small integers). */
typedef struct {
    const float *scale, *inv;   /* (C) */
    const int32_t *zero_point;  /* (C) */
    const float *lo, *hi;       /* (C) */
    int32_t qmin, qmax;
} qat_fq_consts;
/* Fills k from scale/zero_point (C each) of the integer range [qmin, qmax], writing inv/lo/hi
 * into work (3 * C floats). */
void qat_fq_consts_fill(qat_fq_consts *k, int32_t qmin, int32_t qmax, int C, const float *scale,
                        const int32_t *zero_point, float *work);

/* y = qat_fake_quantize(x) per element with channel c's constants; code (may be NULL) gets
 * QAT_FQ_INSIDE where lo <= round(x * inv) <= hi, QAT_FQ_ABOVE where above, else BELOW. */
void qat_fq_kernel(float *y, uint8_t *code, const float *x, const qat_qlayout *l,
                   const qat_fq_consts *k);
void qat_fq_kernel_ref(float *y, uint8_t *code, const float *x, const qat_qlayout *l,
                       const qat_fq_consts *k);

/* Straight-through gradient: dx[i] += dy[i] where code[i] == QAT_FQ_INSIDE (n elements; the
 * variants give identical sums and leave a -0.0 gradient of a clipped element as it was). */
void qat_fq_ste_grad(float *dx, const float *dy, const uint8_t *code, int64_t n);
void qat_fq_ste_grad_ref(float *dx, const float *dy, const uint8_t *code, int64_t n);
/* The same into a gradient that does not exist yet: dx = 0.0f + dy inside, +0.0 where clipped
 * (bitwise qat_fq_ste_grad into zeros, without the zeroing pass and the read). */
void qat_fq_ste_grad_store(float *dx, const float *dy, const uint8_t *code, int64_t n);

/* Min/max of a (outer, C, inner) tensor per channel, NaN skipped and counted (so one NaN does
 * not hide behind the comparison order). mn/mx (C) are overwritten. */
void qat_minmax(float *mn, float *mx, int64_t *nan_count, const float *x, const qat_qlayout *l);
void qat_minmax_ref(float *mn, float *mx, int64_t *nan_count, const float *x,
                    const qat_qlayout *l);

/* ---- ISA variants (kernels/fq_avx2.c, kernels/fq_avx512.c), entered through the above -------- */

/* A run of n elements; channel c for all of them, or (per_elem) channel c + i for element i. */
typedef void (*qat_fq_run_fn)(float *y, uint8_t *code, const float *x, int64_t n,
                              const qat_fq_consts *k, int c, int per_elem);
void qat_fq_run_ref(float *y, uint8_t *code, const float *x, int64_t n, const qat_fq_consts *k,
                    int c, int per_elem);
void qat_fq_run_avx2(float *y, uint8_t *code, const float *x, int64_t n, const qat_fq_consts *k,
                     int c, int per_elem);
void qat_fq_run_avx512(float *y, uint8_t *code, const float *x, int64_t n, const qat_fq_consts *k,
                       int c, int per_elem);
void qat_fq_ste_run_avx2(float *dx, const float *dy, const uint8_t *code, int64_t n);
void qat_fq_ste_run_avx512(float *dx, const float *dy, const uint8_t *code, int64_t n);
void qat_fq_ste_store_ref(float *dx, const float *dy, const uint8_t *code, int64_t n);
void qat_fq_ste_store_avx2(float *dx, const float *dy, const uint8_t *code, int64_t n);
void qat_fq_ste_store_avx512(float *dx, const float *dy, const uint8_t *code, int64_t n);
/* min/max of a run folded into *mn / *mx, NaNs counted into *nan */
void qat_minmax_run_ref(const float *x, int64_t n, float *mn, float *mx, int64_t *nan);
void qat_minmax_run_avx2(const float *x, int64_t n, float *mn, float *mx, int64_t *nan);
void qat_minmax_run_avx512(const float *x, int64_t n, float *mn, float *mx, int64_t *nan);

#endif
