/* mul: y = a * b element-wise, same shapes. */
#include "ops.h"
#include "kernels.h" /* qat_kernel_threads */

#define MUL_PAR_ELEMS 32768

qat_tensor *qat_mul(qat_ctx *ctx, qat_tensor *a, qat_tensor *b) {
    QAT_ASSERT(a->numel == b->numel);
    qat_tensor *srcs[2] = {a, b};
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_MUL, a->ndim, a->shape, 2, srcs);
    const float *restrict ad = a->data, *restrict bd = b->data;
    float *restrict y = out->data;
    const int64_t n = a->numel;
#pragma omp parallel for simd num_threads(qat_kernel_threads()) schedule(static) if (n >= MUL_PAR_ELEMS)
    for (int64_t i = 0; i < n; i++) y[i] = ad[i] * bd[i];
    return out;
}

/* dst = (or += when accumulate) dy * other. For x * x both calls go to the same grad, the
 * second adding: 2*x*dy. */
static void product_grad(float *restrict dst, const float *restrict dy,
                         const float *restrict other, int64_t n, int accumulate) {
    if (accumulate) {
#pragma omp parallel for simd num_threads(qat_kernel_threads()) schedule(static) if (n >= MUL_PAR_ELEMS)
        for (int64_t i = 0; i < n; i++) dst[i] += dy[i] * other[i];
    } else {
#pragma omp parallel for simd num_threads(qat_kernel_threads()) schedule(static) if (n >= MUL_PAR_ELEMS)
        for (int64_t i = 0; i < n; i++) dst[i] = dy[i] * other[i];
    }
}

static void grad_into(qat_ctx *ctx, qat_tensor *t, const float *dy, const float *other) {
    /* A grad that does not exist yet would be zeros: allocate it uninitialised and store
     * instead of adding, which saves the zeroing pass and a read of the buffer. */
    if (t->grad)
        product_grad(t->grad, dy, other, t->numel, 1);
    else
        product_grad(t->grad = qat_arena_floats(&ctx->arena, t->numel), dy, other, t->numel, 0);
}

void qat_mul_backward(qat_ctx *ctx, qat_tensor *out) {
    qat_tensor *a = out->src[0], *b = out->src[1];
    if (a->requires_grad) grad_into(ctx, a, out->grad, b->data);
    if (b->requires_grad) grad_into(ctx, b, out->grad, a->data);
}
