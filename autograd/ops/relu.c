/* relu: y = max(x, 0). The backward mask is read from the output (y > 0 exactly where x > 0),
 * so nothing is saved. */
#include "ops.h"
#include "kernels.h" /* qat_kernel_threads */

/* Element-wise passes below this size run on one thread: a parallel region costs more. */
#define RELU_PAR_ELEMS 32768

qat_tensor *qat_relu(qat_ctx *ctx, qat_tensor *x) {
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_RELU, x->ndim, x->shape, 1, &x);
    const float *restrict xd = x->data;
    float *restrict y = out->data;
    const int64_t n = x->numel;
#pragma omp parallel for simd num_threads(qat_kernel_threads()) schedule(static) if (n >= RELU_PAR_ELEMS)
    for (int64_t i = 0; i < n; i++) y[i] = xd[i] > 0.0f ? xd[i] : 0.0f;
    return out;
}

/* dy where the output is positive; both operands are loaded so the select vectorises */
static inline float relu_dx(float dy, float y) { return y > 0.0f ? dy : 0.0f; }

/* dx = (or += when accumulate) the masked dy */
static void relu_grad(float *restrict dx, const float *restrict dy, const float *restrict y,
                      int64_t n, int accumulate) {
    if (accumulate) {
#pragma omp parallel for simd num_threads(qat_kernel_threads()) schedule(static) if (n >= RELU_PAR_ELEMS)
        for (int64_t i = 0; i < n; i++) dx[i] += relu_dx(dy[i], y[i]);
    } else {
#pragma omp parallel for simd num_threads(qat_kernel_threads()) schedule(static) if (n >= RELU_PAR_ELEMS)
        for (int64_t i = 0; i < n; i++) dx[i] = relu_dx(dy[i], y[i]);
    }
}

void qat_relu_backward(qat_ctx *ctx, qat_tensor *out) {
    qat_tensor *x = out->src[0];
    if (!x->requires_grad) return;
    /* A grad that does not exist yet would be zeros: allocate it uninitialised and store
     * instead of adding, which saves the zeroing pass and a read of the buffer. */
    if (x->grad)
        relu_grad(x->grad, out->grad, out->data, x->numel, 1);
    else
        relu_grad(x->grad = qat_arena_floats(&ctx->arena, x->numel), out->grad, out->data,
                  x->numel, 0);
}
