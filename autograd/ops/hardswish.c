/* hardswish: y = x * relu6(x + 3) / 6. The backward needs x, which the input tensor still
 * holds at backward time. */
#include "ops.h"
#include "kernels.h" /* qat_kernel_threads */
#include "qmath.h" /* qat_hardswish_f: the INT8 lookup table computes the same */

#define HSWISH_PAR_ELEMS 32768

qat_tensor *qat_hardswish(qat_ctx *ctx, qat_tensor *x) {
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_HARDSWISH, x->ndim, x->shape, 1, &x);
    const float *restrict xd = x->data;
    float *restrict y = out->data;
    const int64_t n = x->numel;
#pragma omp parallel for simd num_threads(qat_kernel_threads()) schedule(static) if (n >= HSWISH_PAR_ELEMS)
    for (int64_t i = 0; i < n; i++) y[i] = qat_hardswish_f(xd[i]);
    return out;
}

/* dy * hardswish'(x). hardswish'(x) = (relu6(x + 3) + x*[-3 <= x <= 3]) / 6 is PyTorch's
 * piecewise form (0, then x/3 + 1/2 up to and including 3, then 1) written with clamps and
 * selects of loaded values: GCC will not if-convert a select of the computed x/3 + 1/2 (it may
 * trap), so that form stays scalar. */
static inline float hardswish_dx(float dy, float x) {
    float r = x + 3.0f;
    r = r > 0.0f ? r : 0.0f;
    r = r < 6.0f ? r : 6.0f;
    float m = x >= -3.0f ? x : 0.0f;
    m = x <= 3.0f ? m : 0.0f;
    return (r + m) * (1.0f / 6.0f) * dy;
}

/* dx = (or += when accumulate) dy * hardswish'(x) */
static void hardswish_grad(float *restrict dx, const float *restrict dy,
                           const float *restrict xd, int64_t n, int accumulate) {
    if (accumulate) {
#pragma omp parallel for simd num_threads(qat_kernel_threads()) schedule(static) if (n >= HSWISH_PAR_ELEMS)
        for (int64_t i = 0; i < n; i++) dx[i] += hardswish_dx(dy[i], xd[i]);
    } else {
#pragma omp parallel for simd num_threads(qat_kernel_threads()) schedule(static) if (n >= HSWISH_PAR_ELEMS)
        for (int64_t i = 0; i < n; i++) dx[i] = hardswish_dx(dy[i], xd[i]);
    }
}

void qat_hardswish_backward(qat_ctx *ctx, qat_tensor *out) {
    qat_tensor *x = out->src[0];
    if (!x->requires_grad) return;
    /* A grad that does not exist yet would be zeros: allocate it uninitialised and store
     * instead of adding, which saves the zeroing pass and a read of the buffer. */
    if (x->grad)
        hardswish_grad(x->grad, out->grad, x->data, x->numel, 1);
    else
        hardswish_grad(x->grad = qat_arena_floats(&ctx->arena, x->numel), out->grad, x->data,
                       x->numel, 0);
}
