/* The float layers of an INT8 model (kernels/int8.h, section 8): the edges (dequantize into a
 * float layer, quantize out of it) and the float conv and linear between them. The runtime
 * (runtime/rt_kinds.c) and the simulation (export/qsim.c) both call these, which is what makes
 * them agree bit for bit; the sums are plain sequential loops so that agreement does not depend
 * on the thread count or the batch size. Built for baseline x86-64 like the rest of the scalar
 * code (no FMA to contract with). */
#include "int8.h"
#include "qmath.h"
#include <omp.h>

#define FILE_TAG "kernels/int8_float.c"

/* Threads for `work` multiply-adds over `units` independent parts: small layers stay on one. */
static int float_threads(int64_t work, int64_t units) {
    int nt = qat_kernel_threads();
    if (nt < 1) nt = 1;
    if (work < QAT_I8_PAR_MIN_WORK) nt = 1;
    if (nt > units) nt = (int)(units > 0 ? units : 1);
    return nt;
}

static inline float act_f(float v, qat_f32_act act) {
    switch (act) {
    case QAT_F32_ACT_RELU: return v > 0.0f ? v : 0.0f;
    case QAT_F32_ACT_RELU6: return v > 0.0f ? (v < 6.0f ? v : 6.0f) : 0.0f;
    case QAT_F32_ACT_HARDSWISH: return qat_hardswish_f(v);
    case QAT_F32_ACT_HARDSIGMOID: return qat_hardsigmoid_f(v);
    default: return v;
    }
}

void qat_f32_dequant(float *y, const uint8_t *x, int64_t n, float sx, int32_t zx) {
    const int nt = float_threads(n, n);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = qat_dequantize(x[i], sx, zx);
}

void qat_f32_quant(uint8_t *y, const float *x, int64_t n, float inv_sy, int32_t zy, int32_t lo,
                   int32_t hi) {
    const int nt = float_threads(n, n);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = (uint8_t)qat_quantize(x[i], inv_sy, zy, lo, hi);
}

size_t qat_f32_conv_packed_floats(int out_c, int k, int in_c, int groups) {
    return (size_t)out_c * (size_t)k * (size_t)k * (size_t)(groups == 1 ? in_c : 1);
}

void qat_f32_conv_pack(float *packed, const float *w, int out_c, int k, int in_c, int groups) {
    const int cpg = groups == 1 ? in_c : 1, taps = k * k;
    for (int c = 0; c < out_c; c++)
        for (int t = 0; t < taps; t++)
            for (int ci = 0; ci < cpg; ci++)
                packed[((size_t)t * cpg + ci) * out_c + c] = w[((size_t)c * taps + t) * cpg + ci];
}

qat_status qat_f32_conv(float *y, const float *x, const qat_i8_dims *in,
                        const qat_i8_conv_params *p, int out_c, int groups, const float *packed,
                        const float *bias, qat_f32_act act) {
    if (!y || !x || !in || !p || !packed || !bias || out_c < 1 || p->kh != p->kw || p->stride < 1)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": conv: bad arguments");
    const int dw = groups != 1;
    if (dw && (groups != in->c || out_c != in->c))
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": conv: groups %d with %d -> %d channels", groups,
                        in->c, out_c);
    const int k = p->kh, H = in->h, W = in->w, C = in->c;
    const int OH = (H + 2 * p->pad - k) / p->stride + 1, OW = (W + 2 * p->pad - k) / p->stride + 1;
    const int64_t rows = (int64_t)in->n * OH;
    const int64_t work = rows * OW * out_c * k * k * (dw ? 1 : C);
    const int nt = float_threads(work, rows);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const int n = (int)(r / OH), oh = (int)(r % OH);
        for (int ow = 0; ow < OW; ow++) {
            float *yp = y + (r * OW + ow) * out_c;
            for (int c = 0; c < out_c; c++) yp[c] = bias[c];
            for (int ky = 0; ky < k; ky++) {
                const int ih = oh * p->stride - p->pad + ky;
                if (ih < 0 || ih >= H) continue; /* padding contributes 0 */
                for (int kx = 0; kx < k; kx++) {
                    const int iw = ow * p->stride - p->pad + kx;
                    if (iw < 0 || iw >= W) continue;
                    const float *xp = x + (((int64_t)n * H + ih) * W + iw) * C;
                    const int t = ky * k + kx;
                    if (dw) {
                        const float *wp = packed + (size_t)t * C;
                        for (int c = 0; c < C; c++) yp[c] += xp[c] * wp[c];
                        continue;
                    }
                    for (int ci = 0; ci < C; ci++) {
                        const float xv = xp[ci], *wp = packed + ((size_t)t * C + ci) * out_c;
                        for (int c = 0; c < out_c; c++) yp[c] += xv * wp[c];
                    }
                }
            }
            if (act != QAT_F32_ACT_NONE)
                for (int c = 0; c < out_c; c++) yp[c] = act_f(yp[c], act);
        }
    }
    return QAT_OK;
}

qat_status qat_f32_linear(float *y, const float *x, int n, int in, int out, const float *packed,
                          const float *bias) {
    if (!y || !x || !packed || n < 0 || in < 1 || out < 1)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": linear: bad arguments");
    const int nt = float_threads((int64_t)n * in * out, n);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int i = 0; i < n; i++) {
        float *yp = y + (size_t)i * out;
        const float *xp = x + (size_t)i * in;
        for (int o = 0; o < out; o++) yp[o] = bias ? bias[o] : 0.0f;
        for (int kk = 0; kk < in; kk++) {
            const float xv = xp[kk], *wp = packed + (size_t)kk * out;
            for (int o = 0; o < out; o++) yp[o] += xv * wp[o];
        }
    }
    return QAT_OK;
}
