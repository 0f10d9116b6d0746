/* batchnorm2d over NHWC: each of the M = N*H*W rows holds C channel values, so the statistics
 * are column reductions and every pass is a row loop with a channel-inner loop the compiler
 * vectorises. Training: one pass for the statistics, one for y = x*scale[c] + shift[c].
 * Backward: one pass for sum(dy) and sum(dy*(x-mean)), one for dx.
 * For the QAT model the same op can also scale its input per channel (the / s of simulated BN
 * folding) and fake-quantize its output (the activation quantization point) without any extra
 * node or full-tensor pass in backward; both bitwise equal to the separate ops. */
#include "ops.h"
#include "qmodel.h" /* qat_batchnorm2d_act_fq: ops.h does not know qat_fq */
#include "quant.h"
#include <math.h>
#include <string.h>

/* Row reductions are split into chunks that depend on the shape only (never on the thread
 * count); each chunk sums in double and the chunk partials are added in chunk order, so the
 * result is bitwise the same with 1 or 2 threads. */
#define BN_CHUNK_ELEMS 16384
#define BN_MAX_CHUNKS 64
/* Rows summed in float before folding into double: float adds vectorise twice as wide and the
 * error of 16 float adds is negligible next to the double sum over 50K rows. */
#define BN_SUB_ROWS 16
/* Below this many elements a parallel region costs more than it saves. */
#define BN_PAR_ELEMS 32768

typedef struct {
    float *mean; /* (C) mean used to normalise: batch mean in training, running mean in eval */
    float *rstd; /* (C) 1 / sqrt(var + eps) */
    const float *isc; /* (C) input scale (qat_batchnorm2d_scaled_act), NULL for none */
    const float *aff;     /* with an output fake-quant: (2C) scale and shift of the forward: the
                           * backward recomputes the pre-clamp value from x for the activation
                           * mask (bitwise the forward's) instead of reading a stored output */
    const uint8_t *code;  /* and its clipping codes (the straight-through mask) */
} bn_saved;

/* s1 += sum_r (a - ref), s2 += sum_r (a - ref)^2 per column; ref is a per-channel shift (a
 * sample of x) that keeps E[x^2] - E[x]^2 from cancelling when |mean| >> std. */
static void stats_chunk(const float *restrict a, const float *restrict b,
                        const float *restrict ref, const float *restrict y,
                        const float *restrict isc, const uint8_t *restrict code, const float *restrict aff, float lo,
                        float hi, int64_t rows, int C, float *restrict f1, float *restrict f2,
                        double *restrict s1, double *restrict s2) {
    (void)b, (void)y, (void)isc, (void)code, (void)aff, (void)lo, (void)hi;
    for (int64_t r0 = 0; r0 < rows; r0 += BN_SUB_ROWS) {
        int64_t r1 = r0 + BN_SUB_ROWS < rows ? r0 + BN_SUB_ROWS : rows;
        memset(f1, 0, (size_t)C * sizeof *f1);
        memset(f2, 0, (size_t)C * sizeof *f2);
        for (int64_t r = r0; r < r1; r++) {
            const float *restrict ar = a + r * C;
#pragma omp simd
            for (int c = 0; c < C; c++) {
                float d = ar[c] - ref[c];
                f1[c] += d;
                f2[c] += d * d;
            }
        }
        for (int c = 0; c < C; c++) {
            s1[c] += f1[c];
            s2[c] += f2[c];
        }
    }
}

/* stats_chunk of the BN input t = a * isc[c] (the input scale of qat_batchnorm2d_scaled_act),
 * t rounded to float before use exactly as if a separate op had stored it. */
static void stats_scaled_chunk(const float *restrict a, const float *restrict b,
                               const float *restrict ref, const float *restrict y,
                               const float *restrict isc, const uint8_t *restrict code, const float *restrict aff,
                               float lo, float hi, int64_t rows, int C, float *restrict f1,
                               float *restrict f2, double *restrict s1, double *restrict s2) {
    (void)b, (void)y, (void)code, (void)aff, (void)lo, (void)hi;
    for (int64_t r0 = 0; r0 < rows; r0 += BN_SUB_ROWS) {
        int64_t r1 = r0 + BN_SUB_ROWS < rows ? r0 + BN_SUB_ROWS : rows;
        memset(f1, 0, (size_t)C * sizeof *f1);
        memset(f2, 0, (size_t)C * sizeof *f2);
        for (int64_t r = r0; r < r1; r++) {
            const float *restrict ar = a + r * C;
#pragma omp simd
            for (int c = 0; c < C; c++) {
                float d = ar[c] * isc[c] - ref[c];
                f1[c] += d;
                f2[c] += d * d;
            }
        }
        for (int c = 0; c < C; c++) {
            s1[c] += f1[c];
            s2[c] += f2[c];
        }
    }
}

/* The gradient that reaches the BN output through the fused activation: dy where the
 * activation passed its input (lo < y < hi), 0 where it clamped. */
static inline float act_grad(float dy, float y, float lo, float hi) {
    float g = y > lo ? dy : 0.0f;
    return y < hi ? g : 0.0f;
}

/* With a fused output fake-quant the gradient reaching the BN output is, as the separate ops
 * gave it, act_grad(STE(dy)) with STE(dy) = 0.0f + dy inside the quantization range (the add
 * into a zeroed grad) and +0.0 where clipped: 0.0f + dy where the code is QAT_FQ_INSIDE and
 * lo < y < hi, else +0.0. Computed with integer masks: gcc does not vectorise the chained
 * float selects mixed with byte loads (it will not speculate the compares), and those loops
 * would stay scalar. mk[c] is all ones where code[c] == QAT_FQ_INSIDE. y may be the value
 * before the clamp: lo < clamp(v) < hi exactly when lo < v < hi (NaN fails both). */
#define BN_CODE_BLOCK 256
_Static_assert(QAT_FQ_BELOW == 0 && QAT_FQ_INSIDE == 1 && QAT_FQ_ABOVE == 2, "code values");
static inline void code_mask(uint32_t *restrict mk, const uint8_t *restrict code, int n) {
#pragma omp simd
    for (int c = 0; c < n; c++) mk[c] = 0u - ((uint32_t)code[c] & 1u);
}
static inline float ste_act_grad(float dy, uint32_t mk, float y, float lo, float hi) {
    float v = 0.0f + dy;
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    u &= mk & (0u - (uint32_t)(y > lo)) & (0u - (uint32_t)(y < hi));
    memcpy(&v, &u, sizeof v);
    return v;
}

/* s1 += sum_r g, s2 += sum_r g * (t - mean) per column, g = act_grad(dy) (a = dy, b = x,
 * ref = mean, y = BN+act output), t = x or x * isc[c] (scaled), dy masked by the output
 * fake-quant's codes (has_code). Constant flags: the inlined copies are branch-free loops. */
static inline __attribute__((always_inline)) void
grad_body(const float *restrict a, const float *restrict b, const float *restrict ref,
          const float *restrict yo, const float *restrict isc, const uint8_t *restrict code, const float *restrict aff,
          float lo, float hi, int64_t rows, int C, float *restrict f1, float *restrict f2,
          double *restrict s1, double *restrict s2, const int scaled, const int has_code) {
    for (int64_t r0 = 0; r0 < rows; r0 += BN_SUB_ROWS) {
        int64_t r1 = r0 + BN_SUB_ROWS < rows ? r0 + BN_SUB_ROWS : rows;
        memset(f1, 0, (size_t)C * sizeof *f1);
        memset(f2, 0, (size_t)C * sizeof *f2);
        for (int64_t r = r0; r < r1; r++) {
            const float *restrict dy = a + r * C;
            const float *restrict x = b + r * C;
            const float *restrict y = has_code ? NULL : yo + r * C;
            if (has_code) {
                uint32_t mk[BN_CODE_BLOCK];
                for (int c0 = 0; c0 < C; c0 += BN_CODE_BLOCK) {
                    const int n = C - c0 < BN_CODE_BLOCK ? C - c0 : BN_CODE_BLOCK;
                    code_mask(mk, code + r * C + c0, n);
#pragma omp simd
                    for (int j = 0; j < n; j++) {
                        const int c = c0 + j;
                        const float t = scaled ? x[c] * isc[c] : x[c];
                        float g = ste_act_grad(dy[c], mk[j], (t - ref[c]) * aff[c] + aff[C + c], lo, hi);
                        f1[c] += g;
                        f2[c] += g * (t - ref[c]);
                    }
                }
            } else {
#pragma omp simd
                for (int c = 0; c < C; c++) {
                    float g = act_grad(dy[c], y[c], lo, hi);
                    f1[c] += g;
                    f2[c] += g * ((scaled ? x[c] * isc[c] : x[c]) - ref[c]);
                }
            }
        }
        for (int c = 0; c < C; c++) {
            s1[c] += f1[c];
            s2[c] += f2[c];
        }
    }
}

#define GRAD_CHUNK(name, scaled, has_code)                                                       \
    static void name(const float *restrict a, const float *restrict b,                          \
                     const float *restrict ref, const float *restrict yo,                       \
                     const float *restrict isc, const uint8_t *restrict code, const float *restrict aff, float lo,         \
                     float hi, int64_t rows, int C, float *restrict f1, float *restrict f2,     \
                     double *restrict s1, double *restrict s2) {                                \
        grad_body(a, b, ref, yo, isc, code, aff, lo, hi, rows, C, f1, f2, s1, s2, scaled,       \
                  has_code);                                                                    \
    }
GRAD_CHUNK(grad_chunk, 0, 0)
GRAD_CHUNK(grad_scaled_chunk, 1, 0)
GRAD_CHUNK(grad_fq_chunk, 0, 1)
GRAD_CHUNK(grad_scaled_fq_chunk, 1, 1)

typedef void (*bn_chunk_fn)(const float *restrict a, const float *restrict b,
                            const float *restrict ref, const float *restrict y,
                            const float *restrict isc, const uint8_t *restrict code, const float *restrict aff, float lo,
                            float hi, int64_t rows, int C, float *restrict f1,
                            float *restrict f2, double *restrict s1, double *restrict s2);

/* Column sums s1, s2 (C doubles each) over M rows of a (and b, y), chunked as described above. */
static void column_sums(qat_ctx *ctx, bn_chunk_fn fn, const float *a, const float *b,
                        const float *ref, const float *y, const float *isc, const uint8_t *code,
                        const float *aff, float lo, float hi, int64_t M, int C, double *s1,
                        double *s2) {
    int64_t nch = M * C / BN_CHUNK_ELEMS;
    if (nch > BN_MAX_CHUNKS) nch = BN_MAX_CHUNKS;
    if (nch > M) nch = M;
    if (nch < 1) nch = 1;
    int64_t rows_per = (M + nch - 1) / nch;
    double *part = qat_arena_alloc(&ctx->arena, (size_t)nch * 2 * C * sizeof(double));
    float *scratch = qat_arena_floats(&ctx->arena, nch * 2 * C);
    memset(part, 0, (size_t)nch * 2 * C * sizeof(double));
#pragma omp parallel for schedule(static) if (nch > 1 && M * C >= BN_PAR_ELEMS)
    for (int64_t k = 0; k < nch; k++) {
        int64_t r0 = k * rows_per, r1 = r0 + rows_per < M ? r0 + rows_per : M;
        if (r0 >= r1) continue;
        fn(a + r0 * C, b ? b + r0 * C : NULL, ref, y ? y + r0 * C : NULL, isc,
           code ? code + r0 * C : NULL, aff, lo, hi, r1 - r0, C,
           scratch + k * 2 * C,
           scratch + k * 2 * C + C, part + k * 2 * C, part + k * 2 * C + C);
    }
    for (int c = 0; c < C; c++) s1[c] = s2[c] = 0;
    for (int64_t k = 0; k < nch; k++)
        for (int c = 0; c < C; c++) {
            s1[c] += part[k * 2 * C + c];
            s2[c] += part[k * 2 * C + C + c];
        }
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
 * t recomputes the same float product (this file has no FMA contraction: -march=x86-64), so
 * the numbers are bitwise those of qat_mul by a broadcast constant followed by this op, and
 * the gradient to x is in_scale[c] times the gradient to t, rounded once as qat_mul's was. */
qat_tensor *qat_batchnorm2d_scaled_act(qat_ctx *ctx, qat_tensor *x, const float *in_scale,
                                       qat_tensor *gamma, qat_tensor *beta, qat_bn_state *st,
                                       qat_bn_act act) {
    return qat_batchnorm2d_act_fq(ctx, x, in_scale, gamma, beta, st, act, NULL);
}

/* With fq the BN+act output goes to an arena buffer (not kept: the backward recomputes the
 * activation mask from x) and the node's output is its fake-quant, computed exactly as qat_fakequant does (same observer call
 * on the same array, same kernel): one node, and the backward applies the straight-through
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

    float *mean = qat_arena_floats(&ctx->arena, C); /* (C) */
    float *rstd = qat_arena_floats(&ctx->arena, C); /* (C) */
    if (ctx->training) {
        double *s1 = qat_arena_alloc(&ctx->arena, 2 * (size_t)C * sizeof(double)), *s2 = s1 + C;
        float *ref = qat_arena_floats(&ctx->arena, C); /* first row: a sample of each channel */
        for (int c = 0; c < C; c++) ref[c] = isc ? x->data[c] * isc[c] : x->data[c];
        column_sums(ctx, isc ? stats_scaled_chunk : stats_chunk, x->data, NULL, ref, NULL, isc, NULL,
                    NULL, lo, hi, M, C, s1, s2);
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
    const float *restrict xd = x->data;
    float *restrict y = fq ? qat_arena_floats(&ctx->arena, x->numel) : out->data;
    const float *restrict mu = mean, *restrict sc = scale, *restrict sh = shift;
    const float *restrict is = isc;
#pragma omp parallel for schedule(static) if (x->numel >= BN_PAR_ELEMS)
    for (int64_t r = 0; r < M; r++) {
        const float *restrict xr = xd + r * C;
        float *restrict yr = y + r * C;
        if (is && act == QAT_BN_ACT_NONE) {
#pragma omp simd
            for (int c = 0; c < C; c++) yr[c] = (xr[c] * is[c] - mu[c]) * sc[c] + sh[c];
        } else if (is) {
#pragma omp simd
            for (int c = 0; c < C; c++) {
                float v = (xr[c] * is[c] - mu[c]) * sc[c] + sh[c];
                v = v > lo ? v : lo;
                yr[c] = v < hi ? v : hi;
            }
        } else if (act == QAT_BN_ACT_NONE) {
#pragma omp simd
            for (int c = 0; c < C; c++) yr[c] = (xr[c] - mu[c]) * sc[c] + sh[c];
        } else {
            /* same clamp as qat_relu / qat_relu6, so fused and separate ops agree bitwise */
#pragma omp simd
            for (int c = 0; c < C; c++) {
                float v = (xr[c] - mu[c]) * sc[c] + sh[c];
                v = v > lo ? v : lo;
                yr[c] = v < hi ? v : hi;
            }
        }
    }

    uint8_t *code = NULL;
    if (fq) {
        /* qat_fakequant's forward on y (fq->fake_quant_enabled: the caller checked) */
        qat_qlayout l;
        QAT_ASSERT(fq->fake_quant_enabled);
        QAT_ASSERT(qat_qlayout_of(&fq->scheme, x->ndim, x->shape, &l) == QAT_OK);
        QAT_ASSERT(l.channels == fq->nchannels);
        if (fq->observer_enabled && fq->obs.enabled && !fq->obs.frozen) {
            if (qat_observer_update(&fq->obs, y, x->ndim, x->shape) == QAT_OK)
                fq->qparams_dirty = 1;
            else
                fq->skipped++;
        }
        if (fq->qparams_dirty && fq->obs.seen > 0 && qat_fq_compute_qparams(fq) != QAT_OK)
            fq->skipped++;
        qat_fq_consts k;
        qat_fq_consts_fill(&k, &fq->scheme, l.channels, fq->scale, fq->zero_point,
                           qat_arena_floats(&ctx->arena, 3 * (int64_t)l.channels));
        if (out->requires_grad) code = qat_arena_alloc(&ctx->arena, (size_t)x->numel);
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
        out->saved = sv;
    }
    return out;
}

/* One row of dx = A*g + B*(t - mean) + D (g = act_grad of dy, STE-masked when has_code; t = x
 * or x * isc), times isc when scaled (qat_mul's backward: dt rounded, then times the scale),
 * stored or added. */
static inline __attribute__((always_inline)) void
dx_row(float *restrict dxr, const float *restrict dyr, const float *restrict xr,
       const float *restrict yr, const uint8_t *restrict cd, const float *restrict mu,
       const float *restrict Ar, const float *restrict Br, const float *restrict Dr,
       const float *restrict is, const float *restrict aff, float lo, float hi, int C,
       const int scaled, const int has_code, const int accumulate) {
    if (has_code) {
        uint32_t mk[BN_CODE_BLOCK];
        for (int c0 = 0; c0 < C; c0 += BN_CODE_BLOCK) {
            const int n = C - c0 < BN_CODE_BLOCK ? C - c0 : BN_CODE_BLOCK;
            code_mask(mk, cd + c0, n);
#pragma omp simd
            for (int j = 0; j < n; j++) {
                const int c = c0 + j;
                float t = scaled ? xr[c] * is[c] : xr[c];
                float yv = (t - mu[c]) * aff[c] + aff[C + c]; /* the forward's, before the clamp */
                float dt = Ar[c] * ste_act_grad(dyr[c], mk[j], yv, lo, hi) + Br[c] * (t - mu[c]) + Dr[c];
                float v = scaled ? dt * is[c] : dt;
                if (accumulate)
                    dxr[c] += v;
                else
                    dxr[c] = v;
            }
        }
        return;
    }
#pragma omp simd
    for (int c = 0; c < C; c++) {
        float t = scaled ? xr[c] * is[c] : xr[c];
        float dt = Ar[c] * act_grad(dyr[c], yr[c], lo, hi) + Br[c] * (t - mu[c]) + Dr[c];
        float v = scaled ? dt * is[c] : dt;
        if (accumulate)
            dxr[c] += v;
        else
            dxr[c] = v;
    }
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
        bn_chunk_fn fn = sv->isc ? (code ? grad_scaled_fq_chunk : grad_scaled_chunk)
                                 : (code ? grad_fq_chunk : grad_chunk);
        column_sums(ctx, fn, dy, x->data, sv->mean, code ? NULL : yo, sv->isc, code, sv->aff, lo, hi,
                    M, C, s_dy, s_dyx);
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
            B[c] = (float)(-k * r * r * (s_dyx[c] / (double)M));
            D[c] = (float)(-k * (s_dy[c] / (double)M));
        } else {
            B[c] = 0.0f;
            D[c] = 0.0f;
        }
    }
    /* A grad that does not exist yet would be zeros: allocate it uninitialised and store
     * instead of adding, which saves the zeroing pass and a read of the buffer. */
    const int accumulate = x->grad != NULL;
    float *restrict dx = accumulate ? x->grad : (x->grad = qat_arena_floats(&ctx->arena, x->numel));
    const int scaled = sv->isc != NULL, has_code = code != NULL;
#pragma omp parallel for schedule(static) if (x->numel >= BN_PAR_ELEMS)
    for (int64_t r = 0; r < M; r++) {
        const int64_t o = r * C;
        const uint8_t *cd = code ? code + o : NULL;
        /* constant flags: each call inlines to a branch-free vector loop */
#define DX_ROW(sc, hc, acc)                                                                       \
    dx_row(dx + o, dy + o, x->data + o, yo + o, cd, sv->mean, A, B, D, sv->isc, sv->aff, lo, hi, \
           C, sc, hc, acc)
        if (scaled && has_code) accumulate ? DX_ROW(1, 1, 1) : DX_ROW(1, 1, 0);
        else if (scaled) accumulate ? DX_ROW(1, 0, 1) : DX_ROW(1, 0, 0);
        else if (has_code) accumulate ? DX_ROW(0, 1, 1) : DX_ROW(0, 1, 0);
        else accumulate ? DX_ROW(0, 0, 1) : DX_ROW(0, 0, 0);
#undef DX_ROW
    }
}
