/* Reductions of all elements to a scalar (shape {1}), summed in double. */
#include "ops.h"

static double sum_all(const float *restrict x, int64_t n) {
    double s = 0;
    /* fixed order for a given build: the simd lanes are combined the same way every call */
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) s += x[i];
    return s;
}

static qat_tensor *reduce(qat_ctx *ctx, qat_op op, qat_tensor *x, double scale) {
    int shape[1] = {1};
    qat_tensor *out = qat_tensor_op(ctx, op, 1, shape, 1, &x);
    out->data[0] = (float)(sum_all(x->data, x->numel) * scale);
    return out;
}

/* dx += g: every element contributes with weight `scale` */
static void reduce_backward(qat_ctx *ctx, qat_tensor *out, float scale) {
    qat_tensor *x = out->src[0];
    if (!x->requires_grad) return;
    float *restrict dx = qat_grad(ctx, x);
    const float g = out->grad[0] * scale;
#pragma omp simd
    for (int64_t i = 0; i < x->numel; i++) dx[i] += g;
}

qat_tensor *qat_mean(qat_ctx *ctx, qat_tensor *x) {
    QAT_ASSERT(x->numel > 0);
    return reduce(ctx, QAT_OP_MEAN, x, 1.0 / (double)x->numel);
}

void qat_mean_backward(qat_ctx *ctx, qat_tensor *out) {
    reduce_backward(ctx, out, (float)(1.0 / (double)out->src[0]->numel));
}

qat_tensor *qat_sum(qat_ctx *ctx, qat_tensor *x) { return reduce(ctx, QAT_OP_SUM, x, 1.0); }

void qat_sum_backward(qat_ctx *ctx, qat_tensor *out) { reduce_backward(ctx, out, 1.0f); }
