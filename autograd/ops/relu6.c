/* relu6: y = min(max(x, 0), 6). The backward mask 0 < x < 6 equals 0 < y < 6 (PyTorch's
 * hardtanh gives zero gradient at both kinks too), so it is read from the output. */
#include "ops.h"
#include "kernels.h" /* qat_kernel_threads */

#define RELU6_PAR_ELEMS 32768

qat_tensor *qat_relu6(qat_ctx *ctx, qat_tensor *x) {
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_RELU6, x->ndim, x->shape, 1, &x);
    const float *restrict xd = x->data;
    float *restrict y = out->data;
    const int64_t n = x->numel;
#pragma omp parallel for simd num_threads(qat_kernel_threads()) schedule(static) if (n >= RELU6_PAR_ELEMS)
    for (int64_t i = 0; i < n; i++) {
        float v = xd[i] > 0.0f ? xd[i] : 0.0f;
        y[i] = v < 6.0f ? v : 6.0f;
    }
    return out;
}

/* dy where 0 < y < 6; both operands are loaded so the selects vectorise */
static inline float relu6_dx(float dy, float y) {
    float g = y > 0.0f ? dy : 0.0f;
    return y < 6.0f ? g : 0.0f;
}

/* dx = (or += when accumulate) the masked dy */
static void relu6_grad(float *restrict dx, const float *restrict dy, const float *restrict y,
                       int64_t n, int accumulate) {
    if (accumulate) {
#pragma omp parallel for simd num_threads(qat_kernel_threads()) schedule(static) if (n >= RELU6_PAR_ELEMS)
        for (int64_t i = 0; i < n; i++) dx[i] += relu6_dx(dy[i], y[i]);
    } else {
#pragma omp parallel for simd num_threads(qat_kernel_threads()) schedule(static) if (n >= RELU6_PAR_ELEMS)
        for (int64_t i = 0; i < n; i++) dx[i] = relu6_dx(dy[i], y[i]);
    }
}

void qat_relu6_backward(qat_ctx *ctx, qat_tensor *out) {
    qat_tensor *x = out->src[0];
    if (!x->requires_grad) return;
    /* A grad that does not exist yet would be zeros: allocate it uninitialised and store
     * instead of adding, which saves the zeroing pass and a read of the buffer. */
    if (x->grad)
        relu6_grad(x->grad, out->grad, out->data, x->numel, 1);
    else
        relu6_grad(x->grad = qat_arena_floats(&ctx->arena, x->numel), out->grad, out->data,
                   x->numel, 0);
}
