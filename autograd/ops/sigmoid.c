/* sigmoid: y = 1 / (1 + exp(-x)) (qat_sigmoid_f, kernels/qmath.h: the INT8 lookup table evaluates
 * the same function, so the table is what the fake-quant graph computes). The backward reads y,
 * which the output holds: dy * y * (1 - y). No `simd` pragma: a vectorised expf (libmvec) would
 * round differently from the scalar one the table uses. */
#include "ops.h"
#include "kernels.h" /* qat_kernel_threads */
#include "qmath.h"

#define SIGMOID_PAR_ELEMS 16384

qat_tensor *qat_sigmoid(qat_ctx *ctx, qat_tensor *x) {
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_SIGMOID, x->ndim, x->shape, 1, &x);
    const float *restrict xd = x->data;
    float *restrict y = out->data;
    const int64_t n = x->numel;
#pragma omp parallel for num_threads(qat_kernel_threads()) schedule(static) if (n >= SIGMOID_PAR_ELEMS)
    for (int64_t i = 0; i < n; i++) y[i] = qat_sigmoid_f(xd[i]);
    return out;
}

void qat_sigmoid_backward(qat_ctx *ctx, qat_tensor *out) {
    qat_tensor *x = out->src[0];
    if (!x->requires_grad) return;
    const int64_t n = x->numel;
    const float *restrict dy = out->grad, *restrict y = out->data;
    /* a grad that does not exist yet would be zeros: store instead of zeroing and adding */
    const int fresh = x->grad == NULL;
    if (fresh) x->grad = qat_arena_floats(&ctx->arena, n);
    float *restrict dx = x->grad;
#pragma omp parallel for num_threads(qat_kernel_threads()) schedule(static) if (n >= SIGMOID_PAR_ELEMS)
    for (int64_t i = 0; i < n; i++) {
        const float g = dy[i] * (y[i] * (1.0f - y[i]));
        dx[i] = fresh ? g : dx[i] + g;
    }
}
