/* oneDNN 2.x int8 primitives as a second backend of the INT8 runtime, computing exactly the
 * arithmetic of kernels/int8.h (bit-identical outputs; tests/test_onednn.c checks it on odd
 * shapes against qat_i8_conv / qat_i8_dwconv / qat_i8_gemm_f32):
 *
 *   conv (dense KxK, 1x1, depthwise):  u8 NHWC in, s8 OHWI weights, s32 bias, per-channel float
 *     multipliers, input/output zero points, clamp [lo, hi]  ->  u8 NHWC out
 *   linear with float output (logits):  p = (float)acc * deq_scale[n]; y = p + fbias[n]
 *
 * Debian ships oneDNN 2.6: the 2.x C API is used (output scales and zero points as primitive
 * attributes), not the 3.x scales API.
 *
 *   qat_i8_dnnl_conv *c;
 *   if (qat_i8_dnnl_conv_create(&c, &desc)) ...;     // weights copied/reordered once
 *   qat_i8_dnnl_conv_run(c, y, x, batch);            // any batch; a primitive per batch size
 *   qat_i8_dnnl_conv_free(c);
 *
 * A configuration oneDNN cannot compute identically fails at create with QAT_ERR_ARG and a
 * reason (qat_last_error()), so that the runtime falls back to the native kernels:
 *   - oneDNN without VNNI (its u8 x s8 kernels saturate pair sums in s16): every layer;
 *   - a channel with |bias| + 255 * sum|w| > 2^24 (oneDNN adds the s32 bias in float);
 *   - a non-finite mult / deq_scale.
 * How the exact configuration was found: the comment at the top of int8_onednn.c.
 *
 * Threads: oneDNN runs on OpenMP with omp_get_max_threads() threads, which qat_set_threads sets.
 * A layer object caches primitives per batch size (at most 4 per lane, least recently used
 * replaced). Lanes let one object run on several threads at once: the _run_lane calls of
 * distinct lanes (0 .. QAT_I8_DNNL_LANES - 1) may run concurrently, each with its own primitives
 * and stream, as the runtime does when it splits a batch between threads (runtime/rt.c); the
 * calls of one lane must not overlap. The plain _run calls are lane 0.
 */
#ifndef QAT_INT8_ONEDNN_H
#define QAT_INT8_ONEDNN_H

#include "int8.h"

/* Threads that may run one layer object at once (lanes), see "Threads" above. */
#define QAT_I8_DNNL_LANES 64

/* 1 if oneDNN can serve as an exact backend on this machine (CPU engine, VNNI). */
int qat_i8_dnnl_available(void);

typedef struct {
    int h, w, cin, cout;         /* per-image input shape, output channels */
    int k, stride, pad, groups;  /* groups 1 (dense) or cin == cout (depthwise) */
    const int8_t *weight;        /* OHWI (cout, k, k, cin / groups) */
    const int32_t *bias;         /* (cout) accumulator units, may be NULL (0) */
    const float *mult;           /* (cout) */
    int32_t zx, zy, lo, hi;
} qat_i8_dnnl_conv_desc;

typedef struct qat_i8_dnnl_conv qat_i8_dnnl_conv;
qat_status qat_i8_dnnl_conv_create(qat_i8_dnnl_conv **out, const qat_i8_dnnl_conv_desc *d);
/* x (n, h, w, cin) u8 -> y (n, oh, ow, cout) u8. */
qat_status qat_i8_dnnl_conv_run(qat_i8_dnnl_conv *c, uint8_t *y, const uint8_t *x, int n);
qat_status qat_i8_dnnl_conv_run_lane(qat_i8_dnnl_conv *c, uint8_t *y, const uint8_t *x, int n, int lane);
void qat_i8_dnnl_conv_free(qat_i8_dnnl_conv *c);
/* oneDNN's name of the implementation chosen at create (batch 1), e.g. "brgconv_1x1:avx512_core_vnni". */
const char *qat_i8_dnnl_conv_impl(const qat_i8_dnnl_conv *c);

typedef struct {
    int in, out;
    const int8_t *weight;        /* (out, in) */
    const float *deq_scale;      /* (out) */
    const float *fbias;          /* (out), may be NULL */
    int32_t zx;
} qat_i8_dnnl_linear_desc;

typedef struct qat_i8_dnnl_linear qat_i8_dnnl_linear;
qat_status qat_i8_dnnl_linear_create(qat_i8_dnnl_linear **out, const qat_i8_dnnl_linear_desc *d);
/* x (n, in) u8 -> y (n, out) float. */
qat_status qat_i8_dnnl_linear_run(qat_i8_dnnl_linear *l, float *y, const uint8_t *x, int n);
qat_status qat_i8_dnnl_linear_run_lane(qat_i8_dnnl_linear *l, float *y, const uint8_t *x, int n,
                                       int lane);
void qat_i8_dnnl_linear_free(qat_i8_dnnl_linear *l);
const char *qat_i8_dnnl_linear_impl(const qat_i8_dnnl_linear *l);

#endif
