/* Inverted dropout: in training each element is kept with probability 1-p and scaled by
 * 1/(1-p), so evaluation is the identity. The mask is drawn from ctx->rng in element order,
 * one draw per element, so a seeded context reproduces it.
 *
 * Data-parallel (dist/dist.h): every rank starts the step with the same generator and holds the
 * rank-th equal slice of the global batch, so it skips the draws of the ranks before it, draws
 * its own, then skips those after it: each image gets the mask a one-process run gives it, and
 * every rank's generator leaves the step as that run's does (a checkpoint resumes under any
 * number of ranks). Dropout sits at the classifier, so the skipped draws are few. */
#include "dist.h"
#include "ops.h"

static void skip_draws(qat_rng *r, int64_t n) {
    for (int64_t i = 0; i < n; i++) qat_rng_next(r);
}

qat_tensor *qat_dropout(qat_ctx *ctx, qat_tensor *x, float p) {
    QAT_ASSERT(p >= 0.0f && p <= 1.0f);
    /* PyTorch also hands back its input here: nothing to record or compute. */
    if (!ctx->training || p == 0.0f) return x;
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_DROPOUT, x->ndim, x->shape, 1, &x);
    out->fparam[0] = p;
    /* p == 1 drops everything; the scale is then irrelevant and must not be inf */
    const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    uint8_t *mask = NULL; /* (numel) 1 = kept */
    if (out->requires_grad) {
        mask = qat_arena_alloc(&ctx->arena, (size_t)x->numel);
        out->saved = mask;
    }
    const int ranks = qat_dist_syncing() ? qat_dist_size() : 1, rank = ranks > 1 ? qat_dist_rank() : 0;
    skip_draws(&ctx->rng, (int64_t)rank * x->numel);
    for (int64_t i = 0; i < x->numel; i++) {
        int keep = qat_rng_uniform(&ctx->rng) >= p;
        out->data[i] = keep ? x->data[i] * scale : 0.0f;
        if (mask) mask[i] = (uint8_t)keep;
    }
    skip_draws(&ctx->rng, (int64_t)(ranks - 1 - rank) * x->numel);
    return out;
}

void qat_dropout_backward(qat_ctx *ctx, qat_tensor *out) {
    qat_tensor *x = out->src[0];
    if (!x->requires_grad) return;
    const uint8_t *mask = out->saved;
    QAT_ASSERT(mask);
    const float p = out->fparam[0];
    const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    float *restrict dx = qat_grad(ctx, x);
    const float *restrict dy = out->grad;
    for (int64_t i = 0; i < x->numel; i++) dx[i] += mask[i] ? dy[i] * scale : 0.0f;
}
