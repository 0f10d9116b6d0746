/* global average pool: (N, H, W, C) -> (N, C). Each image is HW rows of C channels; the sum
 * runs in double per channel so large feature maps lose nothing, in a fixed order per image. */
#include "ops.h"
#include "kernels.h" /* qat_kernel_threads */

#define GAP_PAR_ELEMS 32768

qat_tensor *qat_global_avgpool(qat_ctx *ctx, qat_tensor *x) {
    QAT_ASSERT(x->ndim == 4);
    const int N = x->shape[0], C = x->shape[3];
    const int64_t HW = (int64_t)x->shape[1] * x->shape[2];
    QAT_ASSERT(HW > 0);
    int shape[2] = {N, C};
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_GLOBAL_AVGPOOL, 2, shape, 1, &x);
    double *acc = qat_arena_alloc(&ctx->arena, (size_t)N * C * sizeof(double)); /* (N, C) */
    const double inv = 1.0 / (double)HW;
    const float *xd = x->data;
    float *y = out->data;
#pragma omp parallel for num_threads(qat_kernel_threads()) schedule(static) if (x->numel >= GAP_PAR_ELEMS)
    for (int n = 0; n < N; n++) {
        double *restrict a = acc + (int64_t)n * C;
        for (int c = 0; c < C; c++) a[c] = 0.0;
        for (int64_t p = 0; p < HW; p++) {
            const float *restrict xr = xd + ((int64_t)n * HW + p) * C;
#pragma omp simd
            for (int c = 0; c < C; c++) a[c] += xr[c];
        }
        for (int c = 0; c < C; c++) y[(int64_t)n * C + c] = (float)(a[c] * inv);
    }
    return out;
}

void qat_global_avgpool_backward(qat_ctx *ctx, qat_tensor *out) {
    qat_tensor *x = out->src[0];
    if (!x->requires_grad) return;
    const int N = x->shape[0], C = x->shape[3];
    const int64_t HW = (int64_t)x->shape[1] * x->shape[2];
    const float inv = (float)(1.0 / (double)HW);
    /* a grad that does not exist yet would be zeros: store instead of zeroing and adding */
    const int accumulate = x->grad != NULL;
    float *dx = accumulate ? x->grad : (x->grad = qat_arena_floats(&ctx->arena, x->numel));
    const float *dy = out->grad;
#pragma omp parallel for num_threads(qat_kernel_threads()) schedule(static) if (x->numel >= GAP_PAR_ELEMS)
    for (int n = 0; n < N; n++) {
        const float *restrict g = dy + (int64_t)n * C;
        for (int64_t p = 0; p < HW; p++) {
            float *restrict dr = dx + ((int64_t)n * HW + p) * C;
            if (accumulate) {
#pragma omp simd
                for (int c = 0; c < C; c++) dr[c] += g[c] * inv;
            } else {
#pragma omp simd
                for (int c = 0; c < C; c++) dr[c] = g[c] * inv;
            }
        }
    }
}
