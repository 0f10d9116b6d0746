/* batchnorm2d over NHWC: each of the M = N*H*W rows holds C channel values, so the statistics
 * are column reductions and every pass is a row loop with a channel-inner loop the compiler
 * vectorises. Training: one pass for the statistics, one for y = x*scale[c] + shift[c].
 * Backward: one pass for sum(dy) and sum(dy*(x-mean)), one for dx. */
#include "ops.h"
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
} bn_saved;

/* s1 += sum_r (a - ref), s2 += sum_r (a - ref)^2 per column; ref is a per-channel shift (a
 * sample of x) that keeps E[x^2] - E[x]^2 from cancelling when |mean| >> std. */
static void stats_chunk(const float *restrict a, const float *restrict b,
                        const float *restrict ref, const float *restrict y, float lo, float hi,
                        int64_t rows, int C, float *restrict f1, float *restrict f2,
                        double *restrict s1, double *restrict s2) {
    (void)b, (void)y, (void)lo, (void)hi;
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

/* The gradient that reaches the BN output through the fused activation: dy where the
 * activation passed its input (lo < y < hi), 0 where it clamped. */
static inline float act_grad(float dy, float y, float lo, float hi) {
    float g = y > lo ? dy : 0.0f;
    return y < hi ? g : 0.0f;
}

/* s1 += sum_r g, s2 += sum_r g * (x - mean) per column, g = act_grad(dy) (a = dy, b = x,
 * ref = mean, y = output). */
static void grad_chunk(const float *restrict a, const float *restrict b,
                       const float *restrict ref, const float *restrict yo, float lo, float hi,
                       int64_t rows, int C, float *restrict f1, float *restrict f2,
                       double *restrict s1, double *restrict s2) {
    for (int64_t r0 = 0; r0 < rows; r0 += BN_SUB_ROWS) {
        int64_t r1 = r0 + BN_SUB_ROWS < rows ? r0 + BN_SUB_ROWS : rows;
        memset(f1, 0, (size_t)C * sizeof *f1);
        memset(f2, 0, (size_t)C * sizeof *f2);
        for (int64_t r = r0; r < r1; r++) {
            const float *restrict dy = a + r * C;
            const float *restrict x = b + r * C;
            const float *restrict y = yo + r * C;
#pragma omp simd
            for (int c = 0; c < C; c++) {
                float g = act_grad(dy[c], y[c], lo, hi);
                f1[c] += g;
                f2[c] += g * (x[c] - ref[c]);
            }
        }
        for (int c = 0; c < C; c++) {
            s1[c] += f1[c];
            s2[c] += f2[c];
        }
    }
}

typedef void (*bn_chunk_fn)(const float *restrict a, const float *restrict b,
                            const float *restrict ref, const float *restrict y, float lo,
                            float hi, int64_t rows, int C, float *restrict f1,
                            float *restrict f2, double *restrict s1, double *restrict s2);

/* Column sums s1, s2 (C doubles each) over M rows of a (and b, y), chunked as described above. */
static void column_sums(qat_ctx *ctx, bn_chunk_fn fn, const float *a, const float *b,
                        const float *ref, const float *y, float lo, float hi, int64_t M, int C,
                        double *s1, double *s2) {
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
        fn(a + r0 * C, b ? b + r0 * C : NULL, ref, y ? y + r0 * C : NULL, lo, hi, r1 - r0, C,
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

    float *mean = qat_arena_floats(&ctx->arena, C); /* (C) */
    float *rstd = qat_arena_floats(&ctx->arena, C); /* (C) */
    if (ctx->training) {
        double *s1 = qat_arena_alloc(&ctx->arena, 2 * (size_t)C * sizeof(double)), *s2 = s1 + C;
        const float *ref = x->data; /* first row: a sample of each channel */
        column_sums(ctx, stats_chunk, x->data, NULL, ref, NULL, lo, hi, M, C, s1, s2);
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
    float *restrict y = out->data;
    const float *restrict mu = mean, *restrict sc = scale, *restrict sh = shift;
#pragma omp parallel for schedule(static) if (x->numel >= BN_PAR_ELEMS)
    for (int64_t r = 0; r < M; r++) {
        const float *restrict xr = xd + r * C;
        float *restrict yr = y + r * C;
        if (act == QAT_BN_ACT_NONE) {
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

    if (out->requires_grad) {
        bn_saved *sv = qat_arena_alloc(&ctx->arena, sizeof *sv);
        sv->mean = mean;
        sv->rstd = rstd;
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
    const float *restrict dy = out->grad, *restrict yo = out->data;
    const float lo = act_lo((qat_bn_act)out->iparam[1]), hi = act_hi((qat_bn_act)out->iparam[1]);

    /* s_dy = sum dy, s_dyx = sum dy*(x - mean) per channel: the parameter grads, and in
     * training mode the terms through the batch mean and variance. */
    double *s_dy = NULL, *s_dyx = NULL;
    if (need_gamma || need_beta || (need_x && training)) {
        s_dy = qat_arena_alloc(&ctx->arena, 2 * (size_t)C * sizeof(double));
        s_dyx = s_dy + C;
        column_sums(ctx, grad_chunk, dy, x->data, sv->mean, yo, lo, hi, M, C, s_dy, s_dyx);
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
    const float *restrict xd = x->data, *restrict mu = sv->mean;
    const float *restrict Ar = A, *restrict Br = B, *restrict Dr = D;
#pragma omp parallel for schedule(static) if (x->numel >= BN_PAR_ELEMS)
    for (int64_t r = 0; r < M; r++) {
        const float *restrict dyr = dy + r * C, *restrict xr = xd + r * C;
        const float *restrict yr = yo + r * C;
        float *restrict dxr = dx + r * C;
        if (accumulate) {
#pragma omp simd
            for (int c = 0; c < C; c++)
                dxr[c] += Ar[c] * act_grad(dyr[c], yr[c], lo, hi) + Br[c] * (xr[c] - mu[c]) + Dr[c];
        } else {
#pragma omp simd
            for (int c = 0; c < C; c++)
                dxr[c] = Ar[c] * act_grad(dyr[c], yr[c], lo, hi) + Br[c] * (xr[c] - mu[c]) + Dr[c];
        }
    }
}
