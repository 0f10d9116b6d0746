/* BatchNorm passes over NHWC: each of the M = N*H*W rows holds C channel values, so the
 * statistics are column reductions and every pass is a row loop with a channel-inner loop.
 * The op (autograd/ops/batchnorm2d.c) computes the per-channel constants and calls these:
 *
 *   forward  qat_bn_stats          batch statistics (training): sums of t - ref, (t - ref)^2
 *            qat_bn_forward        y = clamp((t - mean) * scale + shift), t = x or x * isc
 *            qat_bn_forward_range  y's range without storing y (a fused per-tensor observer)
 *            qat_bn_forward_fq     y fake-quantized per tensor, with clipping codes
 *   backward qat_bn_grad_sums      sum g and sum g * (t - mean), g the gradient through the
 *                                  fused clamp (and the fake-quant's straight-through mask)
 *            qat_bn_dx             dx = (A * g + B * (t - mean) + D) (* isc)
 *
 * Each has a scalar reference (kernels/bn.c, built for baseline x86-64: no FMA contraction) and
 * AVX-512 variants (kernels/bn_avx512.c, built with -ffp-contract=off) that put every element
 * through the same sequence of separately rounded float operations, so they are bitwise the
 * reference (tests/test_fakequant.c compares the two under qat_set_isa on odd shapes).
 * qat_bn_forward_range / _fq exist only as AVX-512 passes: the op takes them when
 * qat_bn_fused_fq() says so, else it stores y and calls the fake-quant kernel.
 *
 * Reductions are split into chunks that depend on the shape only (never on the thread count);
 * each chunk sums in double and the chunk partials are added in chunk order, so every result is
 * bitwise the same with 1 or 2 threads. Scratch comes from the caller (CMSIS-NN habit): the
 * _scratch functions give its size for a shape. */
#ifndef QAT_BN_KERNELS_H
#define QAT_BN_KERNELS_H

#include "fq.h"
#include <stddef.h>
#include <stdint.h>

/* Bytes of scratch qat_bn_stats (range: with tmin/tmax) and qat_bn_grad_sums need. */
size_t qat_bn_sums_scratch(int64_t M, int C, int range);

/* s1[c] = sum_r (t - ref[c]), s2[c] = sum_r (t - ref[c])^2 over M rows, t = x or x * isc[c]
 * (isc NULL: none), in double; ref is a per-channel shift (a sample of x) that keeps
 * E[t^2] - E[t]^2 from cancelling when |mean| >> std. With tmin/tmax (C floats each; only when
 * qat_bn_fused_fq()) also each channel's min and max of t, NaN skipped. */
void qat_bn_stats(double *s1, double *s2, float *tmin, float *tmax, const float *x,
                  const float *isc, const float *ref, int64_t M, int C, void *scratch);

/* s_dy[c] = sum_r g, s_dyx[c] = sum_r g * (t - mean[c]), g = dy where lo < y < hi (the fused
 * clamp passed), else 0. With code (the output fake-quant's clipping codes) g is also 0 where
 * the code is not QAT_FQ_INSIDE, and y is recomputed from x as (t - mean) * aff[c] + aff[C + c]
 * (the forward's scale and shift) instead of read: y may then be NULL. */
void qat_bn_grad_sums(double *s_dy, double *s_dyx, const float *dy, const float *x,
                      const float *mean, const float *y, const float *isc, const uint8_t *code,
                      const float *aff, float lo, float hi, int64_t M, int C, void *scratch);

/* Floats of scratch qat_bn_forward / qat_bn_dx need for C channels on this CPU (0: none). */
size_t qat_bn_forward_scratch(int C);
size_t qat_bn_dx_scratch(int C);

/* y = (t - mean) * scale + shift, clamped to [lo, hi] when clamp (v > lo ? v : lo, then
 * v < hi ? v : hi: the ReLU / ReLU6 ops' clamp, NaN included). x and y are M x C. */
void qat_bn_forward(float *y, const float *x, const float *mean, const float *isc,
                    const float *scale, const float *shift, float lo, float hi, int clamp,
                    int64_t M, int C, float *scratch);

/* 1 when the fused passes below can run (AVX-512, QAT_ISA / qat_set_isa permitting). */
int qat_bn_fused_fq(void);
/* The min and max of y (NaN skipped, as qat_minmax) and its NaN count, y never stored. */
void qat_bn_forward_range(float *ymin, float *ymax, int64_t *nan, const float *x,
                          const float *mean, const float *isc, const float *scale,
                          const float *shift, float lo, float hi, int clamp, int64_t M, int C);
/* y fake-quantized per tensor with k's channel 0 into out, codes into code (may be NULL):
 * bitwise qat_fq_kernel of the stored y. */
void qat_bn_forward_fq(float *out, uint8_t *code, const float *x, const float *mean,
                       const float *isc, const float *scale, const float *shift, float lo,
                       float hi, int clamp, int64_t M, int C, const qat_fq_consts *k);
/* y's range from t's range per channel: y = clamp((t - mean) * scale + shift) is monotone in t
 * (each operation by a constant rounds monotonically; decreasing where scale < 0), so a
 * channel's extremes are y(tmin) and y(tmax), computed with the forward's own float operations.
 * 0 when a value is not finite (NaN in the channel, overflow): the pass over y decides those. */
int qat_bn_y_range(const float *tmin, const float *tmax, const float *mean, const float *scale,
                   const float *shift, float lo, float hi, int clamp, int C, float *ymin,
                   float *ymax);

/* dx = A[c] * g + B[c] * (t - mean[c]) + D[c] with g as in qat_bn_grad_sums, times isc[c] when
 * isc (the gradient of t = x * isc, rounded after dt as the separate mul op's), stored into dx
 * or added to it (accumulate). */
void qat_bn_dx(float *dx, const float *dy, const float *x, const float *y, const uint8_t *code,
               const float *mean, const float *A, const float *B, const float *D,
               const float *isc, const float *aff, float lo, float hi, int64_t M, int C,
               int accumulate, float *scratch);

#endif
