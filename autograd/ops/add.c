/* add: y = a + b, same shapes (residual connections). */
#include "ops.h"
#include "kernels.h" /* qat_kernel_threads */

#define ADD_PAR_ELEMS 32768

qat_tensor *qat_add(qat_ctx *ctx, qat_tensor *a, qat_tensor *b) {
    QAT_ASSERT(a->numel == b->numel);
    qat_tensor *srcs[2] = {a, b};
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_ADD, a->ndim, a->shape, 2, srcs);
    const float *restrict ad = a->data, *restrict bd = b->data;
    float *restrict y = out->data;
    const int64_t n = a->numel;
#pragma omp parallel for simd num_threads(qat_kernel_threads()) schedule(static) if (n >= ADD_PAR_ELEMS)
    for (int64_t i = 0; i < n; i++) y[i] = ad[i] + bd[i];
    return out;
}

/* dst = (or += when accumulate) src */
static void pass_grad(float *restrict dst, const float *restrict src, int64_t n, int accumulate) {
    if (accumulate) {
#pragma omp parallel for simd num_threads(qat_kernel_threads()) schedule(static) if (n >= ADD_PAR_ELEMS)
        for (int64_t i = 0; i < n; i++) dst[i] += src[i];
    } else {
#pragma omp parallel for simd num_threads(qat_kernel_threads()) schedule(static) if (n >= ADD_PAR_ELEMS)
        for (int64_t i = 0; i < n; i++) dst[i] = src[i];
    }
}

void qat_add_backward(qat_ctx *ctx, qat_tensor *out) {
    /* a and b may be the same tensor (x + x): the second pass then adds to the first. */
    for (int k = 0; k < 2; k++) {
        qat_tensor *s = out->src[k];
        if (!s->requires_grad) continue;
        /* A grad that does not exist yet would be zeros: allocate it uninitialised and copy
         * instead of zeroing and adding. */
        if (s->grad)
            pass_grad(s->grad, out->grad, out->numel, 1);
        else
            pass_grad(s->grad = qat_arena_floats(&ctx->arena, s->numel), out->grad, out->numel, 0);
    }
}
