/* channel_mul: y[n,h,w,c] = x[n,h,w,c] * s[n,c] — squeeze-and-excite's rescaling of a feature map
 * (N, H, W, C) by a per-image, per-channel gate s (N, C). */
#include "ops.h"
#include "kernels.h" /* qat_kernel_threads */

#define CMUL_PAR_ELEMS 32768

qat_tensor *qat_channel_mul(qat_ctx *ctx, qat_tensor *x, qat_tensor *s) {
    QAT_ASSERT(x->ndim == 4 && s->ndim == 2 && s->shape[0] == x->shape[0] &&
               s->shape[1] == x->shape[3]);
    qat_tensor *srcs[2] = {x, s};
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_CHANNEL_MUL, 4, x->shape, 2, srcs);
    const int N = x->shape[0], C = x->shape[3];
    const int64_t HW = (int64_t)x->shape[1] * x->shape[2];
    const float *xd = x->data, *sd = s->data;
    float *y = out->data;
#pragma omp parallel for num_threads(qat_kernel_threads()) schedule(static) if (x->numel >= CMUL_PAR_ELEMS)
    for (int n = 0; n < N; n++) {
        const float *restrict g = sd + (int64_t)n * C;
        for (int64_t p = 0; p < HW; p++) {
            const float *restrict xr = xd + ((int64_t)n * HW + p) * C;
            float *restrict yr = y + ((int64_t)n * HW + p) * C;
#pragma omp simd
            for (int c = 0; c < C; c++) yr[c] = xr[c] * g[c];
        }
    }
    return out;
}

/* dx = dy * s (broadcast over H, W); ds[n,c] = sum_hw dy * x, summed in double in a fixed order
 * per image. Both accumulate into existing grads; a missing grad is stored, not added. */
void qat_channel_mul_backward(qat_ctx *ctx, qat_tensor *out) {
    qat_tensor *x = out->src[0], *s = out->src[1];
    const int N = x->shape[0], C = x->shape[3];
    const int64_t HW = (int64_t)x->shape[1] * x->shape[2];
    const float *dy = out->grad, *xd = x->data, *sd = s->data;
    if (x->requires_grad) {
        const int acc = x->grad != NULL;
        float *dx = acc ? x->grad : (x->grad = qat_arena_floats(&ctx->arena, x->numel));
#pragma omp parallel for num_threads(qat_kernel_threads()) schedule(static) if (x->numel >= CMUL_PAR_ELEMS)
        for (int n = 0; n < N; n++) {
            const float *restrict g = sd + (int64_t)n * C;
            for (int64_t p = 0; p < HW; p++) {
                const float *restrict d = dy + ((int64_t)n * HW + p) * C;
                float *restrict dr = dx + ((int64_t)n * HW + p) * C;
                if (acc) {
#pragma omp simd
                    for (int c = 0; c < C; c++) dr[c] += d[c] * g[c];
                } else {
#pragma omp simd
                    for (int c = 0; c < C; c++) dr[c] = d[c] * g[c];
                }
            }
        }
    }
    if (s->requires_grad) {
        const int acc = s->grad != NULL;
        float *ds = acc ? s->grad : (s->grad = qat_arena_floats(&ctx->arena, s->numel));
        double *sum = qat_arena_alloc(&ctx->arena, (size_t)s->numel * sizeof(double));
#pragma omp parallel for num_threads(qat_kernel_threads()) schedule(static) if (x->numel >= CMUL_PAR_ELEMS)
        for (int n = 0; n < N; n++) {
            double *restrict a = sum + (int64_t)n * C;
            for (int c = 0; c < C; c++) a[c] = 0.0;
            for (int64_t p = 0; p < HW; p++) {
                const float *restrict d = dy + ((int64_t)n * HW + p) * C;
                const float *restrict xr = xd + ((int64_t)n * HW + p) * C;
#pragma omp simd
                for (int c = 0; c < C; c++) a[c] += (double)d[c] * xr[c];
            }
            for (int c = 0; c < C; c++) {
                float v = (float)a[c];
                ds[(int64_t)n * C + c] = acc ? ds[(int64_t)n * C + c] + v : v;
            }
        }
    }
}
