/* Mean softmax cross-entropy with label smoothing: target = (1-eps)*onehot + eps/K and
 * loss = -(1/N) sum_n sum_k target_k log softmax(z_n)_k. The log-softmax subtracts the row
 * maximum first, so logits of any size stay finite. Saves the probabilities and labels. */
#include "ops.h"
#include <math.h>

typedef struct {
    float *prob;  /* (N, K) softmax of the logits */
    int *labels;  /* (N) copy: the caller's array need not outlive the step */
} ce_saved;

qat_tensor *qat_softmax_cross_entropy(qat_ctx *ctx, qat_tensor *logits, const int *labels,
                                      float smoothing) {
    QAT_ASSERT(logits->ndim == 2 && labels);
    QAT_ASSERT(smoothing >= 0.0f && smoothing <= 1.0f);
    const int N = logits->shape[0], K = logits->shape[1];
    QAT_ASSERT(N > 0 && K > 0);
    int shape[1] = {1};
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_SOFTMAX_CE, 1, shape, 1, &logits);
    out->fparam[0] = smoothing;
    ce_saved *sv = NULL;
    if (out->requires_grad) {
        sv = qat_arena_alloc(&ctx->arena, sizeof *sv);
        sv->prob = qat_arena_floats(&ctx->arena, (int64_t)N * K);
        sv->labels = qat_arena_alloc(&ctx->arena, (size_t)N * sizeof(int));
        out->saved = sv;
    }
    const double off = smoothing / (double)K, on = 1.0 - smoothing;
    double total = 0;
    for (int n = 0; n < N; n++) {
        const float *z = logits->data + (int64_t)n * K;
        const int y = labels[n];
        QAT_ASSERT(y >= 0 && y < K);
        float zmax = z[0];
        for (int k = 1; k < K; k++) zmax = z[k] > zmax ? z[k] : zmax;
        double se = 0, sz = 0; /* sum exp(z - max), sum (z - max) */
        for (int k = 0; k < K; k++) {
            double d = (double)z[k] - zmax;
            se += exp(d);
            sz += d;
        }
        double lse = log(se); /* log p_k = (z_k - max) - lse */
        /* -sum_k t_k log p_k with t = off + on*onehot, sum_k t_k = 1 */
        total += lse - (off * sz + on * ((double)z[y] - zmax));
        if (sv) {
            float *p = sv->prob + (int64_t)n * K;
            for (int k = 0; k < K; k++) p[k] = (float)exp((double)z[k] - zmax - lse);
            sv->labels[n] = y;
        }
    }
    out->data[0] = (float)(total / N);
    return out;
}

void qat_softmax_cross_entropy_backward(qat_ctx *ctx, qat_tensor *out) {
    qat_tensor *logits = out->src[0];
    if (!logits->requires_grad) return;
    const ce_saved *sv = out->saved;
    QAT_ASSERT(sv);
    const int N = logits->shape[0], K = logits->shape[1];
    const float eps = out->fparam[0];
    const float g = out->grad[0] / (float)N;
    const float off = eps / (float)K, on = 1.0f - eps;
    float *dz = qat_grad(ctx, logits);
    /* dloss/dz = (p - target) / N */
    for (int n = 0; n < N; n++) {
        const float *p = sv->prob + (int64_t)n * K;
        float *d = dz + (int64_t)n * K;
        for (int k = 0; k < K; k++) d[k] += g * (p[k] - off);
        d[sv->labels[n]] -= g * on;
    }
}
