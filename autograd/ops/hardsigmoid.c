/* hardsigmoid: y = relu6(x + 3) / 6 (qat_hardsigmoid_f, kernels/qmath.h: the INT8 lookup table
 * evaluates the same function). The backward needs x, which the input tensor still holds. */
#include "ops.h"
#include "kernels.h" /* qat_kernel_threads */
#include "qmath.h"

#define HSIG_PAR_ELEMS 32768

qat_tensor *qat_hardsigmoid(qat_ctx *ctx, qat_tensor *x) {
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_HARDSIGMOID, x->ndim, x->shape, 1, &x);
    const float *restrict xd = x->data;
    float *restrict y = out->data;
    const int64_t n = x->numel;
#pragma omp parallel for simd num_threads(qat_kernel_threads()) schedule(static) if (n >= HSIG_PAR_ELEMS)
    for (int64_t i = 0; i < n; i++) y[i] = qat_hardsigmoid_f(xd[i]);
    return out;
}

/* hardsigmoid'(x) = 1/6 on -3 < x < 3, else 0 (PyTorch's: the kinks get 0). */
static inline float hardsigmoid_dx(float dy, float x) {
    float g = dy * (1.0f / 6.0f);
    g = x > -3.0f ? g : 0.0f;
    return x < 3.0f ? g : 0.0f;
}

void qat_hardsigmoid_backward(qat_ctx *ctx, qat_tensor *out) {
    qat_tensor *x = out->src[0];
    if (!x->requires_grad) return;
    const int64_t n = x->numel;
    const float *restrict dy = out->grad, *restrict xd = x->data;
    /* a grad that does not exist yet would be zeros: store instead of zeroing and adding */
    if (x->grad) {
        float *restrict dx = x->grad;
#pragma omp parallel for simd num_threads(qat_kernel_threads()) schedule(static) if (n >= HSIG_PAR_ELEMS)
        for (int64_t i = 0; i < n; i++) dx[i] += hardsigmoid_dx(dy[i], xd[i]);
    } else {
        float *restrict dx = x->grad = qat_arena_floats(&ctx->arena, n);
#pragma omp parallel for simd num_threads(qat_kernel_threads()) schedule(static) if (n >= HSIG_PAR_ELEMS)
        for (int64_t i = 0; i < n; i++) dx[i] = hardsigmoid_dx(dy[i], xd[i]);
    }
}
