/* reshape / flatten: the same values under a new shape. The data is copied (the output
 * already owns an arena buffer) so no tensor aliases another's memory. */
#include "ops.h"
#include <string.h>

qat_tensor *qat_reshape(qat_ctx *ctx, qat_tensor *x, int ndim, const int *shape) {
    QAT_ASSERT(ndim >= 1 && ndim <= QAT_MAX_DIMS);
    QAT_ASSERT(qat_shape_numel(ndim, shape) == x->numel);
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_RESHAPE, ndim, shape, 1, &x);
    memcpy(out->data, x->data, (size_t)x->numel * sizeof(float));
    return out;
}

qat_tensor *qat_flatten(qat_ctx *ctx, qat_tensor *x) {
    int shape[2] = {x->shape[0], x->shape[0] ? (int)(x->numel / x->shape[0]) : 0};
    return qat_reshape(ctx, x, 2, shape);
}

void qat_reshape_backward(qat_ctx *ctx, qat_tensor *out) {
    qat_tensor *x = out->src[0];
    if (!x->requires_grad) return;
    float *restrict dx = qat_grad(ctx, x);
    const float *restrict dy = out->grad;
#pragma omp simd
    for (int64_t i = 0; i < x->numel; i++) dx[i] += dy[i];
}
