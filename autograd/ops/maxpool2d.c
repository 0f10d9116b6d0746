/* max pool k x k over NHWC, padding acting as -inf (PyTorch, ceil_mode off). The index of each
 * window's first maximum is saved for backward, which routes dy there. */
#include "ops.h"
#include "kernels.h" /* qat_kernel_threads */
#include <math.h>

#define POOL_PAR_ELEMS 32768

qat_tensor *qat_maxpool2d(qat_ctx *ctx, qat_tensor *x, int k, int stride, int pad) {
    QAT_ASSERT(x->ndim == 4 && k >= 1 && stride >= 1 && pad >= 0);
    /* PyTorch's rule: every window then holds at least one real element. */
    QAT_ASSERT(2 * pad <= k);
    const int N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    QAT_ASSERT(H + 2 * pad >= k && W + 2 * pad >= k);
    QAT_ASSERT((int64_t)H * W * C <= INT32_MAX); /* saved indices are int32 within an image */
    const int OH = (H + 2 * pad - k) / stride + 1, OW = (W + 2 * pad - k) / stride + 1;
    int shape[4] = {N, OH, OW, C};
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_MAXPOOL2D, 4, shape, 1, &x);
    out->iparam[0] = k;
    out->iparam[1] = stride;
    out->iparam[2] = pad;
    /* (N, OH, OW, C) offsets into the image's (H, W, C) block */
    int32_t *arg = NULL;
    if (out->requires_grad) {
        arg = qat_arena_alloc(&ctx->arena, (size_t)out->numel * sizeof *arg);
        out->saved = arg;
    }
    const float *xd = x->data;
    float *y = out->data;
#pragma omp parallel for num_threads(qat_kernel_threads()) schedule(static) if (x->numel >= POOL_PAR_ELEMS)
    for (int n = 0; n < N; n++) {
        const float *xi = xd + (int64_t)n * H * W * C;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                int64_t o = (((int64_t)n * OH + oh) * OW + ow) * C;
                float *restrict best = y + o;
                int32_t *restrict bi = arg ? arg + o : NULL;
                for (int c = 0; c < C; c++) best[c] = -INFINITY;
                if (bi)
                    for (int c = 0; c < C; c++) bi[c] = -1;
                for (int kh = 0; kh < k; kh++) {
                    int ih = oh * stride - pad + kh;
                    if (ih < 0 || ih >= H) continue;
                    for (int kw = 0; kw < k; kw++) {
                        int iw = ow * stride - pad + kw;
                        if (iw < 0 || iw >= W) continue;
                        int32_t base = (int32_t)(((int64_t)ih * W + iw) * C);
                        const float *restrict xr = xi + base;
                        /* strict > keeps the first maximum; NaN propagates as in PyTorch */
                        for (int c = 0; c < C; c++)
                            if (xr[c] > best[c] || isnan(xr[c])) {
                                best[c] = xr[c];
                                if (bi) bi[c] = base + c;
                            }
                    }
                }
            }
    }
    return out;
}

void qat_maxpool2d_backward(qat_ctx *ctx, qat_tensor *out) {
    qat_tensor *x = out->src[0];
    if (!x->requires_grad) return;
    const int32_t *arg = out->saved;
    QAT_ASSERT(arg);
    const int N = x->shape[0];
    const int64_t in_img = x->numel / N, out_img = out->numel / N;
    float *dx = qat_grad(ctx, x);
    const float *dy = out->grad;
    /* each image scatters only into its own block: parallel over images is race-free */
#pragma omp parallel for num_threads(qat_kernel_threads()) schedule(static) if (x->numel >= POOL_PAR_ELEMS)
    for (int n = 0; n < N; n++) {
        float *di = dx + n * in_img;
        const float *g = dy + n * out_img;
        const int32_t *a = arg + n * out_img;
        for (int64_t i = 0; i < out_img; i++)
            if (a[i] >= 0) di[a[i]] += g[i];
    }
}
