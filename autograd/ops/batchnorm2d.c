/* batchnorm2d over NHWC, forward and backward: this file computes the per-channel constants
 * (batch or running statistics, scale and shift, the backward's coefficients) and runs the
 * passes of kernels/bn.h over the rows. Training: one pass for the statistics, one for
 * y = x*scale[c] + shift[c]. Backward: one pass for sum(dy) and sum(dy*(x-mean)), one for dx.
 * For the QAT model the same op can also scale its input per channel (the / s of simulated BN
 * folding) and fake-quantize its output (the activation quantization point, a qat_fq of
 * fakequant/quant.h) without any extra node or full-tensor pass in backward; both bitwise
 * equal to the separate ops.
 *
 * The batch statistics are computed in one place, bn_batch_stats below: a data-parallel run
 * (several processes, each with a slice of the batch; dist/dist.h) sums them and M across
 * processes there, before the mean and variance are taken (SyncBN), and the backward sums its
 * two per-channel sums likewise. */
#include "bn.h"
#include "dist.h"
#include "ops.h"
#include <math.h>
#include <string.h>

typedef struct {
    float *mean; /* (C) mean used to normalise: batch mean in training, running mean in eval */
    float *rstd; /* (C) 1 / sqrt(var + eps) */
    const float *isc; /* (C) input scale (qat_batchnorm2d_scaled_act), NULL for none */
    const float *aff;     /* with an output fake-quant: (2C) scale and shift of the forward: the
                           * backward recomputes the pre-clamp value from x for the activation
                           * mask (bitwise the forward's) instead of reading a stored output */
    const uint8_t *code;  /* and its clipping codes (the straight-through mask) */
    int64_t count;        /* images x positions the statistics were taken over: M, or with
                           * SyncBN the sum of every rank's M (the backward's sums follow) */
} bn_saved;

/* SyncBN: the shifted sums of this rank (around its own ref) become sums around 0, which add
 * up across ranks; then back to the form below with ref 0 and M the global count. In double,
 * sum x^2 - M mean^2 loses ~(|mean|/std)^2 * 1e-16 relative: nothing at the activations' 1e2. */
static int64_t bn_sync_sums(qat_ctx *ctx, double *s1, double *s2, float *ref, int64_t M, int C) {
    double *all = qat_arena_alloc(&ctx->arena, (2 * (size_t)C + 1) * sizeof(double));
    for (int c = 0; c < C; c++) {
        double r = ref[c];
        all[c] = s1[c] + (double)M * r;                         /* sum x */
        all[C + c] = s2[c] + 2.0 * r * s1[c] + (double)M * r * r; /* sum x^2 */
    }
    all[2 * C] = (double)M;
    qat_dist_sum_f64(all, 2 * (size_t)C + 1);
    for (int c = 0; c < C; c++) s1[c] = all[c], s2[c] = all[C + c], ref[c] = 0.0f;
    return (int64_t)all[2 * C];
}

/* The batch statistics of t (= x, or x * isc) per channel: mean and 1/sqrt(var + eps) from the
 * shifted sums of one kernels/bn.h pass, and the running statistics updated (unless frozen).
 * With trange (C + C floats) also each channel's min and max of t (the fused observer's).
 * Returns the count they were taken over (M, or the global count with SyncBN). */
static int64_t bn_batch_stats(qat_ctx *ctx, const qat_tensor *x, const float *isc, qat_bn_state *st,
                              int64_t M, int C, float *mean, float *rstd, float *trange) {
    double *s1 = qat_arena_alloc(&ctx->arena, 2 * (size_t)C * sizeof(double)), *s2 = s1 + C;
    float *ref = qat_arena_floats(&ctx->arena, C); /* first row: a sample of each channel */
    for (int c = 0; c < C; c++) ref[c] = isc ? x->data[c] * isc[c] : x->data[c];
    void *scratch = qat_arena_alloc(&ctx->arena, qat_bn_sums_scratch(M, C, trange != NULL));
    qat_bn_stats(s1, s2, trange, trange ? trange + C : NULL, x->data, isc, ref, M, C, scratch);
    if (qat_dist_syncing_bn()) M = bn_sync_sums(ctx, s1, s2, ref, M, C);
    for (int c = 0; c < C; c++) {
        double dm = s1[c] / (double)M;
        double var = s2[c] / (double)M - dm * dm; /* biased: what normalises */
        if (var < 0) var = 0;
        double mu = (double)ref[c] + dm;
        mean[c] = (float)mu;
        rstd[c] = (float)(1.0 / sqrt(var + (double)st->eps));
        if (st->update_stats) {
            /* PyTorch updates the running variance with the unbiased estimate. */
            double unbiased = M > 1 ? var * (double)M / (double)(M - 1) : var;
            double m = st->momentum;
            st->running_mean[c] = (float)((1.0 - m) * st->running_mean[c] + m * mu);
            st->running_var[c] = (float)((1.0 - m) * st->running_var[c] + m * unbiased);
        }
    }
    return M;
}

/* Clamp bounds of the fused activation; the backward mask is lo < y < hi. Returned by value:
 * locals whose address escapes are reloaded inside the loops (they might alias the output). */
static float act_lo(qat_bn_act act) { return act == QAT_BN_ACT_NONE ? -INFINITY : 0.0f; }
static float act_hi(qat_bn_act act) { return act == QAT_BN_ACT_RELU6 ? 6.0f : INFINITY; }

qat_tensor *qat_batchnorm2d(qat_ctx *ctx, qat_tensor *x, qat_tensor *gamma, qat_tensor *beta,
                            qat_bn_state *st) {
    return qat_batchnorm2d_act(ctx, x, gamma, beta, st, QAT_BN_ACT_NONE);
}

qat_tensor *qat_batchnorm2d_act(qat_ctx *ctx, qat_tensor *x, qat_tensor *gamma,
                                qat_tensor *beta, qat_bn_state *st, qat_bn_act act) {
    return qat_batchnorm2d_scaled_act(ctx, x, NULL, gamma, beta, st, act);
}

/* With in_scale the op normalises t = x * in_scale[c] without storing t: every pass that read
 * t recomputes the same float product (the passes of kernels/bn.h never contract it), so
 * the numbers are bitwise those of qat_mul by a broadcast constant followed by this op, and
 * the gradient to x is in_scale[c] times the gradient to t, rounded once as qat_mul's was. */
qat_tensor *qat_batchnorm2d_scaled_act(qat_ctx *ctx, qat_tensor *x, const float *in_scale,
                                       qat_tensor *gamma, qat_tensor *beta, qat_bn_state *st,
                                       qat_bn_act act) {
    return qat_batchnorm2d_act_fq(ctx, x, in_scale, gamma, beta, st, act, NULL);
}

/* With fq the BN+act output goes to an arena buffer (not kept: the backward recomputes the
 * activation mask from x) and the node's output is its fake-quant, computed exactly as
 * qat_fakequant does (same observer call on the same array, same kernel): one node, and the backward applies the straight-through
 * mask inside BN's two passes instead of a separate pass writing a fresh gradient. */
qat_tensor *qat_batchnorm2d_act_fq(qat_ctx *ctx, qat_tensor *x, const float *in_scale,
                                   qat_tensor *gamma, qat_tensor *beta, qat_bn_state *st,
                                   qat_bn_act act, qat_fq *fq) {
    QAT_ASSERT(st && st->running_mean && st->running_var && x->ndim >= 2);
    const int C = x->shape[x->ndim - 1];
    QAT_ASSERT(C > 0 && x->numel > 0);
    const int64_t M = x->numel / C;
    QAT_ASSERT(!gamma || gamma->numel == C);
    QAT_ASSERT(!beta || beta->numel == C);
    qat_tensor *srcs[3] = {x, gamma, beta};
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_BATCHNORM2D, x->ndim, x->shape, 3, srcs);
    out->iparam[0] = ctx->training ? 1 : 0;
    out->fparam[0] = st->eps;
    out->fparam[1] = st->momentum;
    out->iparam[1] = (int)act;
    const float lo = act_lo(act), hi = act_hi(act);
    float *isc = NULL;
    if (in_scale) { /* copied: the caller's array need not outlive the forward */
        isc = qat_arena_floats(&ctx->arena, C);
        memcpy(isc, in_scale, (size_t)C * sizeof *isc);
    }

    /* The output fake-quant (qat_fakequant's forward on y; fq->fake_quant_enabled: the caller
     * checked), fused into y's passes when AVX-512 can and the observer needs only a range.
     * In training the statistics pass also takes each channel's range of t, from which
     * qat_bn_y_range has y's range without a pass of its own. */
    qat_qlayout l;
    int fused = 0;
    if (fq) {
        QAT_ASSERT(fq->fake_quant_enabled);
        QAT_ASSERT(qat_qlayout_of(&fq->scheme, x->ndim, x->shape, &l) == QAT_OK);
        QAT_ASSERT(l.channels == fq->nchannels);
        fused = l.channels == 1 && fq->obs.kind != QAT_OBS_HISTOGRAM && qat_bn_fused_fq();
    }
    const int observing = fq && fq->observer_enabled && fq->obs.enabled && !fq->obs.frozen;
    float *trange = fused && observing && ctx->training ? qat_arena_floats(&ctx->arena, 2 * (int64_t)C)
                                                        : NULL; /* (2C) min, max of t */
    const int clamp = act != QAT_BN_ACT_NONE;

    float *mean = qat_arena_floats(&ctx->arena, C); /* (C) */
    float *rstd = qat_arena_floats(&ctx->arena, C); /* (C) */
    int64_t count = M;
    if (ctx->training) {
        count = bn_batch_stats(ctx, x, isc, st, M, C, mean, rstd, trange);
    } else {
        for (int c = 0; c < C; c++) {
            mean[c] = st->running_mean[c];
            rstd[c] = (float)(1.0 / sqrt((double)st->running_var[c] + (double)st->eps));
        }
    }

    /* y = (x - mean) * scale + shift: subtracting the mean first keeps the precision when
     * |mean| >> std, and the pass is memory-bound so the extra subtraction is free. */
    float *scale = qat_arena_floats(&ctx->arena, C), *shift = qat_arena_floats(&ctx->arena, C);
    for (int c = 0; c < C; c++) {
        scale[c] = (gamma ? gamma->data[c] : 1.0f) * rstd[c];
        shift[c] = beta ? beta->data[c] : 0.0f;
    }

    float ymin = INFINITY, ymax = -INFINITY;
    int64_t ynan = 0;
    if (fused && observing && !(trange && qat_bn_y_range(trange, trange + C, mean, scale, shift,
                                                          lo, hi, clamp, C, &ymin, &ymax)))
        qat_bn_forward_range(&ymin, &ymax, &ynan, x->data, mean, isc, scale, shift, lo, hi, clamp,
                             M, C);
    /* Which zero qat_minmax keeps on a tie of -0.0 and +0.0 depends on its lane and chunk order:
     * leave such a batch to it. Clamped outputs hold no -0.0 (max(v, +0.0) is +0.0 for
     * v = -0.0) and no NaN, so only an unclamped output can tie. */
    if (fused && observing && !clamp && (ymin == 0.0f || ymax == 0.0f)) fused = 0;

    float *y = NULL; /* the stored y: the output, or with fq unfused its input */
    if (!fused) {
        y = fq ? qat_arena_floats(&ctx->arena, x->numel) : out->data;
        const size_t ns = qat_bn_forward_scratch(C);
        qat_bn_forward(y, x->data, mean, isc, scale, shift, lo, hi, clamp, M, C,
                       ns ? qat_arena_floats(&ctx->arena, (int64_t)ns) : NULL);
    }

    uint8_t *code = NULL;
    if (fq) {
        if (observing) {
            qat_status ost = fused ? qat_observer_update_minmax(&fq->obs, &ymin, &ymax, ynan)
                                   : qat_observer_update(&fq->obs, y, x->ndim, x->shape);
            if (ost == QAT_OK)
                fq->qparams_dirty = 1;
            else
                fq->skipped++;
        }
        if (fq->qparams_dirty && fq->obs.seen > 0 && qat_fq_compute_qparams(fq) != QAT_OK)
            fq->skipped++;
        qat_fq_consts k;
        qat_fq_consts_of(&k, &fq->scheme, l.channels, fq->scale, fq->zero_point,
                         qat_arena_floats(&ctx->arena, 3 * (int64_t)l.channels));
        if (out->requires_grad) code = qat_arena_alloc(&ctx->arena, (size_t)x->numel);
        if (fused)
            qat_bn_forward_fq(out->data, code, x->data, mean, isc, scale, shift, lo, hi, clamp, M, C,
                              &k);
        else
            qat_fq_kernel(out->data, code, y, &l, &k);
    }

    if (out->requires_grad) {
        bn_saved *sv = qat_arena_alloc(&ctx->arena, sizeof *sv);
        sv->mean = mean;
        sv->rstd = rstd;
        sv->isc = isc;
        if (fq) {
            float *aff = qat_arena_floats(&ctx->arena, 2 * (int64_t)C);
            memcpy(aff, scale, (size_t)C * sizeof *aff);
            memcpy(aff + C, shift, (size_t)C * sizeof *aff);
            sv->aff = aff;
        } else {
            sv->aff = NULL;
        }
        sv->code = code;
        sv->count = count;
        out->saved = sv;
    }
    return out;
}

void qat_batchnorm2d_backward(qat_ctx *ctx, qat_tensor *out) {
    qat_tensor *x = out->src[0], *gamma = out->src[1], *beta = out->src[2];
    const bn_saved *sv = out->saved;
    QAT_ASSERT(sv && out->grad);
    const int C = x->shape[x->ndim - 1];
    const int64_t M = x->numel / C;
    const int training = out->iparam[0];
    const int need_gamma = gamma && gamma->requires_grad, need_beta = beta && beta->requires_grad;
    const int need_x = x->requires_grad;
    const float *restrict dy = out->grad, *restrict yo = out->data; /* not read with codes */
    const uint8_t *restrict code = sv->code;
    const float lo = act_lo((qat_bn_act)out->iparam[1]), hi = act_hi((qat_bn_act)out->iparam[1]);

    /* s_dy = sum dy, s_dyx = sum dy*(x - mean) per channel: the parameter grads, and in
     * training mode the terms through the batch mean and variance. */
    double *s_dy = NULL, *s_dyx = NULL;
    if (need_gamma || need_beta || (need_x && training)) {
        s_dy = qat_arena_alloc(&ctx->arena, 2 * (size_t)C * sizeof(double));
        s_dyx = s_dy + C;
        void *scratch = qat_arena_alloc(&ctx->arena, qat_bn_sums_scratch(M, C, 0));
        qat_bn_grad_sums(s_dy, s_dyx, dy, x->data, sv->mean, yo, sv->isc, code, sv->aff, lo, hi, M,
                         C, scratch);
    }
    if (need_gamma) {
        float *dg = qat_grad(ctx, gamma);
        for (int c = 0; c < C; c++) dg[c] += (float)(s_dyx[c] * sv->rstd[c]);
    }
    if (need_beta) {
        float *db = qat_grad(ctx, beta);
        for (int c = 0; c < C; c++) db[c] += (float)s_dy[c];
    }
    if (!need_x) return;
    /* SyncBN: the statistics were the global batch's, so their terms take every rank's sums
     * (gamma's and beta's grads above stay this rank's: the gradient allreduce averages them). */
    double count = (double)M;
    if (training && sv->count != M) {
        qat_dist_sum_f64(s_dy, 2 * (size_t)C);
        count = (double)sv->count;
    }

    /* Training: with xhat = (x-mean)*rstd and k = gamma*rstd,
     *   dx = k * (dy - mean(dy) - xhat * mean(dy*xhat))
     *      = k*dy + B*(x - mean) + D,  B = -k*rstd^2*mean(dy*(x-mean)), D = -k*mean(dy).
     * Eval: the statistics are constants, dx = k*dy. */
    float *A = qat_arena_floats(&ctx->arena, C), *B = qat_arena_floats(&ctx->arena, C);
    float *D = qat_arena_floats(&ctx->arena, C);
    for (int c = 0; c < C; c++) {
        double r = sv->rstd[c];
        double k = (gamma ? (double)gamma->data[c] : 1.0) * r;
        A[c] = (float)k;
        if (training) {
            B[c] = (float)(-k * r * r * (s_dyx[c] / count));
            D[c] = (float)(-k * (s_dy[c] / count));
        } else {
            B[c] = 0.0f;
            D[c] = 0.0f;
        }
    }
    /* A grad that does not exist yet would be zeros: allocate it uninitialised and store
     * instead of adding, which saves the zeroing pass and a read of the buffer. */
    const int accumulate = x->grad != NULL;
    float *restrict dx = accumulate ? x->grad : (x->grad = qat_arena_floats(&ctx->arena, x->numel));
    const size_t ns = qat_bn_dx_scratch(C);
    qat_bn_dx(dx, dy, x->data, yo, code, sv->mean, A, B, D, sv->isc, sv->aff, lo, hi, M, C,
              accumulate, ns ? qat_arena_floats(&ctx->arena, (int64_t)ns) : NULL);
}
