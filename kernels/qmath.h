/* The quantization arithmetic of qat, defined once. The fake-quant simulation (stage 2), the
 * convert step and the INT8 runtime (stage 3) all use these inline functions, so what QAT
 * reports is what the INT8 model computes.
 *
 * Rounding rule: round half to even (IEEE default, `nearbyintf` in the default rounding mode) —
 * PyTorch's fake_quantize and quantize_per_tensor use std::nearbyint too, so figures compare.
 * Values are scaled by multiplying with the reciprocal of the scale (inv_scale = 1.0f / scale,
 * computed once in float), as PyTorch's fake-quant kernels do; every path uses that same float.
 *
 *   quantize:    q = clamp(nearbyintf(x * inv_scale) + zero_point, qmin, qmax)
 *   dequantize:  x = (float)(q - zero_point) * scale
 *
 * Requantization of an int32 accumulator (conv/linear with s8 weights, u8 activations):
 *   acc  = sum_k (xq_k - zx) * wq_k + bias_q            (exact integers)
 *   mult = (sx * sw[c]) / sy                             (float, computed by qat_requant_mult)
 *   yq   = clamp(nearbyintf((float)acc * mult) + zy, lo, hi)
 * where lo/hi also implement a fused ReLU (lo = zy) or ReLU6 (hi = min(qmax, zy + q(6))).
 * The simulation reproduces this exactly because float sums of the integer products are exact
 * while |acc| < 2^24, and `(float)acc * mult` is the same single float multiply in both.
 */
#ifndef QAT_QMATH_H
#define QAT_QMATH_H

#include <math.h>
#include <stdint.h>

/* Rounds half to even, independent of the compiler's contraction choices. */
static inline float qat_round(float x) { return nearbyintf(x); }

static inline int32_t qat_clamp_i32(int32_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

/* Quantize one value. inv_scale = 1.0f / scale. Values beyond the int32 range (and NaN) are
 * clamped first so the conversion is always defined. */
static inline int32_t qat_quantize(float x, float inv_scale, int32_t zero_point, int32_t qmin,
                                   int32_t qmax) {
    float r = qat_round(x * inv_scale);
    if (!(r > -2147483520.0f)) r = -2147483520.0f; /* also catches NaN */
    if (r > 2147483520.0f) r = 2147483520.0f;
    int64_t q = (int64_t)r + zero_point;
    return (int32_t)(q < qmin ? qmin : (q > qmax ? qmax : q));
}

static inline float qat_dequantize(int32_t q, float scale, int32_t zero_point) {
    return (float)(q - zero_point) * scale;
}

/* Quantize then dequantize: the fake-quant forward. */
static inline float qat_fake_quantize(float x, float scale, float inv_scale, int32_t zero_point,
                                      int32_t qmin, int32_t qmax) {
    return qat_dequantize(qat_quantize(x, inv_scale, zero_point, qmin, qmax), scale, zero_point);
}

/* Multiplier of the int32 accumulator into the output scale. */
static inline float qat_requant_mult(float in_scale, float w_scale, float out_scale) {
    return (in_scale * w_scale) / out_scale;
}

/* Bias in the accumulator's units: bias_q = round(b / (sx * sw)), saturated to int32. */
static inline int32_t qat_bias_quantize(float b, float in_scale, float w_scale) {
    double r = nearbyint((double)b / ((double)in_scale * (double)w_scale));
    if (r > 2147483647.0) r = 2147483647.0;
    if (r < -2147483648.0) r = -2147483648.0;
    return (int32_t)r;
}

static inline int32_t qat_requantize(int32_t acc, float mult, int32_t out_zp, int32_t lo,
                                     int32_t hi) {
    float r = qat_round((float)acc * mult);
    if (!(r > -2147483520.0f)) r = -2147483520.0f;
    if (r > 2147483520.0f) r = 2147483520.0f;
    int64_t q = (int64_t)r + out_zp;
    return (int32_t)(q < lo ? lo : (q > hi ? hi : q));
}

/* The hard activations of MobileNetV3, defined once: the autograd ops (autograd/ops/hardswish.c,
 * hardsigmoid.c) and the INT8 lookup tables built at convert time (qat_act_table) evaluate these,
 * so a table entry is exactly what the fake-quant graph computes for that input code.
 *   hardsigmoid(x) = relu6(x + 3) / 6        hardswish(x) = x * relu6(x + 3) / 6
 * Each product rounds on its own: the files that call these are built for baseline x86-64, which
 * has no FMA to contract them into. */
static inline float qat_relu6_shift3(float x) {
    float v = x + 3.0f;
    v = v > 0.0f ? v : 0.0f;
    return v < 6.0f ? v : 6.0f;
}
static inline float qat_hardsigmoid_f(float x) { return qat_relu6_shift3(x) * (1.0f / 6.0f); }
static inline float qat_hardswish_f(float x) {
    return x * qat_relu6_shift3(x) * (1.0f / 6.0f);
}
/* sigmoid(x) = 1 / (1 + exp(-x)) with the scalar expf: the autograd op and the INT8 table
 * (layers/act.c) both call this, so the table holds what the fake-quant graph computes. */
static inline float qat_sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

#endif
