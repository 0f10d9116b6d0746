/* average pool k x k over NHWC counting padding (PyTorch count_include_pad=True, ceil_mode
 * off): with floor output sizes no window reaches past the padded border, so every divisor is
 * k*k. */
#include "ops.h"
#include "kernels.h" /* qat_kernel_threads */
#include <string.h>

#define POOL_PAR_ELEMS 32768

qat_tensor *qat_avgpool2d(qat_ctx *ctx, qat_tensor *x, int k, int stride, int pad) {
    QAT_ASSERT(x->ndim == 4 && k >= 1 && stride >= 1 && pad >= 0 && 2 * pad <= k);
    const int N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    QAT_ASSERT(H + 2 * pad >= k && W + 2 * pad >= k);
    const int OH = (H + 2 * pad - k) / stride + 1, OW = (W + 2 * pad - k) / stride + 1;
    int shape[4] = {N, OH, OW, C};
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_AVGPOOL2D, 4, shape, 1, &x);
    out->iparam[0] = k;
    out->iparam[1] = stride;
    out->iparam[2] = pad;
    const float inv = 1.0f / (float)(k * k);
    const float *xd = x->data;
    float *y = out->data;
#pragma omp parallel for num_threads(qat_kernel_threads()) schedule(static) if (x->numel >= POOL_PAR_ELEMS)
    for (int n = 0; n < N; n++) {
        const float *xi = xd + (int64_t)n * H * W * C;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float *restrict o = y + (((int64_t)n * OH + oh) * OW + ow) * C;
                memset(o, 0, (size_t)C * sizeof *o);
                for (int kh = 0; kh < k; kh++) {
                    int ih = oh * stride - pad + kh;
                    if (ih < 0 || ih >= H) continue;
                    for (int kw = 0; kw < k; kw++) {
                        int iw = ow * stride - pad + kw;
                        if (iw < 0 || iw >= W) continue;
                        const float *restrict xr = xi + ((int64_t)ih * W + iw) * C;
#pragma omp simd
                        for (int c = 0; c < C; c++) o[c] += xr[c];
                    }
                }
#pragma omp simd
                for (int c = 0; c < C; c++) o[c] *= inv;
            }
    }
    return out;
}

void qat_avgpool2d_backward(qat_ctx *ctx, qat_tensor *out) {
    qat_tensor *x = out->src[0];
    if (!x->requires_grad) return;
    const int k = out->iparam[0], stride = out->iparam[1], pad = out->iparam[2];
    const int N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    const int OH = out->shape[1], OW = out->shape[2];
    const float inv = 1.0f / (float)(k * k);
    float *dx = qat_grad(ctx, x);
    const float *dy = out->grad;
    /* overlapping windows of one image add into the same dx rows, so images run in parallel
     * and windows within an image in a fixed order */
#pragma omp parallel for num_threads(qat_kernel_threads()) schedule(static) if (x->numel >= POOL_PAR_ELEMS)
    for (int n = 0; n < N; n++) {
        float *di = dx + (int64_t)n * H * W * C;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                const float *restrict g = dy + (((int64_t)n * OH + oh) * OW + ow) * C;
                for (int kh = 0; kh < k; kh++) {
                    int ih = oh * stride - pad + kh;
                    if (ih < 0 || ih >= H) continue;
                    for (int kw = 0; kw < k; kw++) {
                        int iw = ow * stride - pad + kw;
                        if (iw < 0 || iw >= W) continue;
                        float *restrict dr = di + ((int64_t)ih * W + iw) * C;
#pragma omp simd
                        for (int c = 0; c < C; c++) dr[c] += g[c] * inv;
                    }
                }
            }
    }
}
