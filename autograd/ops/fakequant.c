/* fakequant: y = qat_fake_quantize(x) with the qparams of an observer-driven quantizer (qat_fq,
 * fakequant/quant.h), on the kernels of kernels/fq.h; straight-through backward.
 *
 * Cost: an observing forward is two passes over x (min/max, then quantize + clipping codes),
 * no allocation beyond the output and one byte per element of codes (only when the output
 * needs a gradient). The backward is one pass. */
#include "ops.h"
#include <string.h>

/* The straight-through gradient into a grad that does not exist yet: allocated uninitialised
 * and stored (bitwise qat_fq_ste_grad into qat_grad's zeros). */
static void ste_grad_new(qat_ctx *ctx, qat_tensor *x, const float *dy, const uint8_t *code) {
    x->grad = qat_arena_floats(&ctx->arena, x->numel);
    qat_fq_ste_grad_store(x->grad, dy, code, x->numel);
}

qat_tensor *qat_fakequant(qat_ctx *ctx, qat_tensor *x, qat_fq *fq) {
    qat_qlayout l;
    QAT_ASSERT(qat_qlayout_of(&fq->scheme, x->ndim, x->shape, &l) == QAT_OK);
    QAT_ASSERT(l.channels == fq->nchannels);
    if (fq->observer_enabled && fq->obs.enabled && !fq->obs.frozen) {
        /* A batch with NaN/inf is left out of the statistics (the message stays in
         * qat_last_error); the output is computed with the qparams from before. */
        if (qat_observer_update(&fq->obs, x->data, x->ndim, x->shape) == QAT_OK)
            fq->qparams_dirty = 1;
        else
            fq->skipped++;
    }
    if (!fq->fake_quant_enabled) return x;
    if (fq->qparams_dirty && fq->obs.seen > 0 && qat_fq_compute_qparams(fq) != QAT_OK)
        fq->skipped++;

    const int C = l.channels;
    qat_fq_consts k;
    qat_fq_consts_of(&k, &fq->scheme, C, fq->scale, fq->zero_point,
                     qat_arena_floats(&ctx->arena, 3 * (int64_t)C));
    /* The scale/zero point arrays are read during this call only (the kernel runs now). */
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_FAKEQUANT, x->ndim, x->shape, 1, &x);
    uint8_t *code = NULL;
    if (out->requires_grad) {
        qat_fq_saved *sv = qat_arena_alloc(&ctx->arena, sizeof *sv);
        memset(sv, 0, sizeof *sv);
        code = qat_arena_alloc(&ctx->arena, (size_t)x->numel);
        sv->code = code;
        sv->layout = l;
        out->saved = sv;
    }
    qat_fq_kernel(out->data, code, x->data, &l, &k);
    return out;
}

/* Straight-through estimator with PyTorch's mask: the gradient passes where the rounded value
 * was inside [qmin, qmax] before clamping, and is 0 where clipped (and for NaN inputs). */
void qat_fakequant_backward(qat_ctx *ctx, qat_tensor *out) {
    qat_tensor *x = out->src[0];
    if (!x->requires_grad) return;
    const qat_fq_saved *sv = out->saved;
    if (!x->grad)
        ste_grad_new(ctx, x, out->grad, sv->code);
    else
        qat_fq_ste_grad(x->grad, out->grad, sv->code, x->numel);
}
