/* LSQ / LSQ+: fake-quant with a learnable step size s (Esser et al. 2020, "Learned Step Size
 * Quantization") and, for LSQ+, a learnable offset beta (Bhalgat et al. 2020). The forward is
 * the shared fake-quant kernel with zp derived from beta (see quant.h), so the simulated values
 * are exactly the INT8 model's. The node is QAT_OP_LSQ with iparam[0] = 1 for LSQ+; the
 * quantizer's state (scales, offsets, their initialisation) is fakequant/lsq.c.
 *
 * Backward, per element with code m from the forward (v = x / s):
 *   inside:  dx = dy, ds += dy * (round(v) - v), dbeta += 0
 *   clipped: dx = 0,  ds += dy * (lo | hi for LSQ, qmin | qmax for LSQ+), dbeta += dy
 * round(v) - v is taken as (y - x) / s: inside, y = round(v) * s, so no second rounding pass is
 * needed (the difference is a few float ulps of |round(v)| <= 255).
 * The sums use fixed tasks and double partials added in task order: the same result for any
 * thread count. */
#include "kernels.h"
#include "ops.h"
#include <math.h>
#include <string.h>

#define LSQ_TASK ((int64_t)1 << 14) /* elements per task (per tensor) */
#define LSQ_ROWS 256                /* rows per task (channels innermost) */
#define LSQ_PAR_ELEMS ((int64_t)1 << 16)

qat_tensor *qat_lsq_quantize(qat_ctx *ctx, qat_tensor *x, qat_lsq *q) {
    if (!q->fake_quant_enabled) return x;
    qat_qlayout l;
    QAT_ASSERT(qat_qlayout_of(&q->scheme, x->ndim, x->shape, &l) == QAT_OK);
    QAT_ASSERT(l.channels == q->nchannels);
    const int C = l.channels;
    int32_t qmin, qmax;
    qat_qscheme_range(&q->scheme, &qmin, &qmax);

    /* scale, inv, lo, hi, ds_below, ds_above (C floats each) and the zero points */
    float *w = qat_arena_floats(&ctx->arena, 6 * (int64_t)C);
    int32_t *zp = qat_arena_alloc(&ctx->arena, (size_t)C * sizeof(int32_t));
    float *scale = w, *inv = w + C, *lo = w + 2 * C, *hi = w + 3 * C;
    float *ds_below = w + 4 * C, *ds_above = w + 5 * C;
    for (int c = 0; c < C; c++) {
        qat_lsq_channel(q, c, qmin, qmax, &scale[c], &inv[c], &zp[c]);
        lo[c] = (float)(qmin - zp[c]);
        hi[c] = (float)(qmax - zp[c]);
        /* clipped: y = lo * s (zp fixed) or, with beta ~ -zp * s, y = qmin * s + beta */
        ds_below[c] = q->plus ? (float)qmin : lo[c];
        ds_above[c] = q->plus ? (float)qmax : hi[c];
    }
    qat_fq_consts k = {scale, inv, zp, lo, hi, qmin, qmax};

    /* the scale and offset as leaf tensors of this step: the backward accumulates into the
     * quantizer's gradient arrays (none: no gradient) */
    int cs[1] = {C};
    qat_tensor *sc = qat_arena_alloc(&ctx->arena, 2 * sizeof *sc), *of = q->plus ? sc + 1 : NULL;
    qat_tensor_param(sc, 1, cs, q->scale, q->scale_grad, q->name);
    if (of) qat_tensor_param(of, 1, cs, q->offset, q->offset_grad, q->name);
    qat_tensor *srcs[3] = {x, sc, of};
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_LSQ, x->ndim, x->shape, q->plus ? 3 : 2, srcs);
    out->iparam[0] = q->plus;
    uint8_t *code = NULL;
    if (out->requires_grad) {
        qat_fq_saved *sv = qat_arena_alloc(&ctx->arena, sizeof *sv);
        memset(sv, 0, sizeof *sv);
        code = qat_arena_alloc(&ctx->arena, (size_t)x->numel);
        sv->code = code;
        sv->layout = l;
        sv->inv = inv, sv->ds_below = ds_below, sv->ds_above = ds_above;
        double n = (double)(l.outer * l.inner);
        if (q->per_example && x->shape[0] > 0) n /= x->shape[0];
        if (n < 1) n = 1;
        sv->grad_scale = q->grad_scale > 0 ? q->grad_scale : (float)(1.0 / sqrt(n * qmax));
        out->saved = sv;
    }
    qat_fq_kernel(out->data, code, x->data, &l, &k);
    return out;
}

/* ---- backward ---------------------------------------------------------------------------------- */

/* Sums over a run of one channel: acc[0] += dy * dq/ds-term, acc[1] += dy where clipped. */
static void lsq_run(double *acc, const float *restrict x, const float *restrict y,
                    const float *restrict dy, const uint8_t *restrict code, int64_t n, float inv,
                    float dsb, float dsa) {
    double a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
    for (int64_t i = 0; i < n; i++) {
        float g = dy[i];
        int m = code[i];
        float t = m == QAT_FQ_INSIDE ? (y[i] - x[i]) * inv : (m == QAT_FQ_ABOVE ? dsa : dsb);
        a += (double)(g * t);
        b += m == QAT_FQ_INSIDE ? 0.0 : (double)g;
    }
    acc[0] += a, acc[1] += b;
}

void qat_lsq_backward(qat_ctx *ctx, qat_tensor *out) {
    const qat_fq_saved *sv = out->saved;
    qat_tensor *x = out->src[0], *s = out->src[1];
    qat_tensor *beta = out->iparam[0] ? out->src[2] : NULL; /* LSQ+ */
    const qat_qlayout *l = &sv->layout;
    const int C = l->channels;
    const int64_t numel = x->numel;
    const float *restrict dy = out->grad, *restrict xd = x->data, *restrict y = out->data;
    const uint8_t *restrict code = sv->code;
    const int nt = numel >= LSQ_PAR_ELEMS ? qat_kernel_threads() : 1;

    if (x->requires_grad) qat_fq_ste_grad(qat_grad(ctx, x), dy, code, numel);
    int need_s = s->requires_grad, need_b = beta && beta->requires_grad;
    if (!need_s && !need_b) return;

    /* Partial sums (ds, dbeta) per task in a fixed layout, then added in task order. */
    double *sums = qat_arena_alloc(&ctx->arena, 2 * (size_t)C * sizeof(double));
    memset(sums, 0, 2 * (size_t)C * sizeof(double));
    if (C == 1) {
        const int64_t ntask = (numel + LSQ_TASK - 1) / LSQ_TASK;
        double *part = qat_arena_alloc(&ctx->arena, 2 * (size_t)(ntask ? ntask : 1) * sizeof(double));
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t t = 0; t < ntask; t++) {
            int64_t b = t * LSQ_TASK, n = numel - b < LSQ_TASK ? numel - b : LSQ_TASK;
            part[2 * t] = part[2 * t + 1] = 0;
            lsq_run(&part[2 * t], xd + b, y + b, dy + b, code + b, n, sv->inv[0], sv->ds_below[0],
                    sv->ds_above[0]);
        }
        for (int64_t t = 0; t < ntask; t++) sums[0] += part[2 * t], sums[1] += part[2 * t + 1];
    } else if (l->inner == 1) {
        /* channels innermost: row blocks, each with its own per-channel partials */
        const int64_t rows = l->outer, ntask = (rows + LSQ_ROWS - 1) / LSQ_ROWS;
        double *part = qat_arena_alloc(&ctx->arena,
                                       2 * (size_t)C * (size_t)(ntask ? ntask : 1) * sizeof(double));
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t t = 0; t < ntask; t++) {
            double *pa = part + 2 * C * t, *pb = pa + C;
            for (int c = 0; c < C; c++) pa[c] = pb[c] = 0;
            int64_t r1 = (t + 1) * LSQ_ROWS < rows ? (t + 1) * LSQ_ROWS : rows;
            for (int64_t r = t * LSQ_ROWS; r < r1; r++) {
                const int64_t o = r * C;
#pragma omp simd
                for (int c = 0; c < C; c++) {
                    float g = dy[o + c];
                    int m = code[o + c];
                    float tt = m == QAT_FQ_INSIDE ? (y[o + c] - xd[o + c]) * sv->inv[c]
                                                  : (m == QAT_FQ_ABOVE ? sv->ds_above[c]
                                                                       : sv->ds_below[c]);
                    pa[c] += (double)(g * tt);
                    pb[c] += m == QAT_FQ_INSIDE ? 0.0 : (double)g;
                }
            }
        }
        for (int64_t t = 0; t < ntask; t++)
            for (int c = 0; c < C; c++)
                sums[c] += part[2 * C * t + c], sums[C + c] += part[2 * C * t + C + c];
    } else {
        /* channels outer (weights): one task per (o, c) run */
        const int64_t nrun = l->outer * C;
        double *part = qat_arena_alloc(&ctx->arena, 2 * (size_t)nrun * sizeof(double));
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t r = 0; r < nrun; r++) {
            int c = (int)(r % C);
            int64_t b = r * l->inner;
            part[2 * r] = part[2 * r + 1] = 0;
            lsq_run(&part[2 * r], xd + b, y + b, dy + b, code + b, l->inner, sv->inv[c],
                    sv->ds_below[c], sv->ds_above[c]);
        }
        for (int64_t r = 0; r < nrun; r++) {
            int c = (int)(r % C);
            sums[c] += part[2 * r], sums[C + c] += part[2 * r + 1];
        }
    }
    /* C == 1 keeps (ds, dbeta) in sums[0], sums[1], which is sums[c], sums[C + c] too */
    const double g = sv->grad_scale;
    if (need_s) {
        float *ds = qat_grad(ctx, s);
        for (int c = 0; c < C; c++) ds[c] += (float)(g * sums[c]);
    }
    if (need_b) {
        float *db = qat_grad(ctx, beta);
        for (int c = 0; c < C; c++) db[c] += (float)(g * sums[C + c]);
    }
}
