/* linear: y = x W^T + b with x (N, in), W (out, in), b (out) or NULL, through qat_sgemm.
 * x may be any tensor whose first dimension is N and whose remaining ones hold `in` values. */
#include "ops.h"
#include "kernels.h"

qat_tensor *qat_linear(qat_ctx *ctx, qat_tensor *x, qat_tensor *w, qat_tensor *b) {
    QAT_ASSERT(w->ndim == 2);
    const int N = x->shape[0], OUT = w->shape[0], IN = w->shape[1];
    QAT_ASSERT(N > 0 && x->numel == (int64_t)N * IN);
    QAT_ASSERT(!b || b->numel == OUT);
    int shape[2] = {N, OUT};
    qat_tensor *srcs[3] = {x, w, b};
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_LINEAR, 2, shape, 3, srcs);
    float *y = out->data; /* (N, OUT) */
    if (b) {
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OUT; o++) y[(int64_t)n * OUT + o] = b->data[o];
    }
    /* (N, IN) x (OUT, IN)^T */
    qat_sgemm(0, 1, N, OUT, IN, 1.0f, x->data, IN, w->data, IN, b ? 1.0f : 0.0f, y, OUT);
    return out;
}

void qat_linear_backward(qat_ctx *ctx, qat_tensor *out) {
    qat_tensor *x = out->src[0], *w = out->src[1], *b = out->src[2];
    const int N = x->shape[0], OUT = w->shape[0], IN = w->shape[1];
    const float *dy = out->grad; /* (N, OUT) */
    if (x->requires_grad) {
        /* dx (N, IN) += dy W; a grad that does not exist yet is written with beta = 0 */
        float beta = x->grad ? 1.0f : 0.0f;
        if (!x->grad) x->grad = qat_arena_floats(&ctx->arena, x->numel);
        qat_sgemm(0, 0, N, IN, OUT, 1.0f, dy, OUT, w->data, IN, beta, x->grad, IN);
    }
    if (w->requires_grad) /* dW (OUT, IN) += dy^T x */
        qat_sgemm(1, 0, OUT, IN, N, 1.0f, dy, OUT, x->data, IN, 1.0f, qat_grad(ctx, w), IN);
    if (b && b->requires_grad) {
        float *db = qat_grad(ctx, b);
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OUT; o++) db[o] += dy[(int64_t)n * OUT + o];
    }
}
