/* conv2d over NHWC with OHWI weights: forward and backward.
 *
 * Four paths, picked from the shape in the forward and replayed by the backward:
 *   1x1, stride 1, no padding  a GEMM straight on x viewed as (N*H*W, Cin): no copy at all;
 *   1x1 strided, no padding    gather the strided pixels once, then GEMM;
 *   depthwise                  (groups == Cin == Cout) the channel-vectorised kernels of
 *                              kernels/dwconv*.c on weights repacked to (KH, KW, C);
 *   anything else              im2col per group, then GEMM.
 * In NHWC an im2col row is ordered (kh, kw, ci), which is exactly an OHWI weight row, so every
 * GEMM uses the weights in place: out_g (P, Cout_g) = A_g (P, Kg) * W_g^T with W_g the
 * (Cout_g, Kg) rows of group g.
 *
 * Backward: dW_g += dY_g^T * A_g, dA_g = dY_g * W_g (then col2im / scatter for the copying
 * paths), db += column sums of dY. All scratch comes from the step arena. When an input's
 * gradient does not exist yet and the path writes every element of it, the gradient buffer is
 * taken uninitialised from the arena and written rather than zeroed and accumulated into:
 * that is qat_grad() minus a memset and a re-read, and saves a full pass over the largest
 * activations of the network.
 */
#include "ops.h"
#include "kernels.h"
#include <string.h>

typedef enum {
    CONV_1X1 = 0,      /* A = x itself */
    CONV_1X1_STRIDED,  /* A = gathered x */
    CONV_DEPTHWISE,
    CONV_IM2COL,
} conv_path;

/* Kept for the backward in the arena (only when the output requires grad). */
typedef struct {
    float *a;   /* CONV_1X1_STRIDED: gathered x (P, Cin); CONV_IM2COL: cols (groups, P, Kg).
                 * NULL when w needs no gradient (only dW reads them). */
    float *wk;  /* CONV_DEPTHWISE: weights repacked to (KH, KW, C) */
} conv_saved;

static void conv_geom(const qat_tensor *out, qat_conv_geom *g) {
    const qat_tensor *x = out->src[0], *w = out->src[1];
    int ok = qat_conv_geom_init(g, x->shape[0], x->shape[1], x->shape[2], x->shape[3],
                                w->shape[1], w->shape[2], out->iparam[0], out->iparam[1]);
    QAT_ASSERT(ok == 0);
}

qat_tensor *qat_conv2d(qat_ctx *ctx, qat_tensor *x, qat_tensor *w, qat_tensor *b, int stride,
                       int pad, int groups) {
    QAT_ASSERT(x->ndim == 4 && w->ndim == 4);
    const int N = x->shape[0], Cin = x->shape[3];
    const int Cout = w->shape[0], KH = w->shape[1], KW = w->shape[2], Cg = w->shape[3];
    QAT_ASSERT(groups >= 1 && Cin % groups == 0 && Cout % groups == 0 && Cg == Cin / groups);
    QAT_ASSERT(!b || b->numel == Cout);
    qat_conv_geom g;
    QAT_ASSERT(qat_conv_geom_init(&g, N, x->shape[1], x->shape[2], Cin, KH, KW, stride, pad) == 0);
    const int OH = g.oh, OW = g.ow, Coutg = Cout / groups, Kg = KH * KW * Cg;
    const int P = N * OH * OW;

    int shape[4] = {N, OH, OW, Cout};
    qat_tensor *srcs[3] = {x, w, b};
    qat_tensor *out = qat_tensor_op(ctx, QAT_OP_CONV2D, 4, shape, 3, srcs);
    out->iparam[0] = stride;
    out->iparam[1] = pad;
    out->iparam[2] = groups;

    conv_path path;
    if (groups == Cin && Cout == Cin && Cg == 1)
        path = CONV_DEPTHWISE;
    else if (KH == 1 && KW == 1 && pad == 0)
        path = stride == 1 ? CONV_1X1 : CONV_1X1_STRIDED;
    else
        path = CONV_IM2COL;
    out->iparam[3] = path;

    /* out->requires_grad is 0 whenever ctx->grad_enabled is 0: nothing extra is kept then. */
    const int keep = out->requires_grad;
    const int keep_a = keep && w->requires_grad;
    conv_saved *sv = NULL;
    if (keep) {
        sv = qat_arena_alloc(&ctx->arena, sizeof *sv);
        memset(sv, 0, sizeof *sv);
        out->saved = sv;
    }
    float *y = out->data; /* (P, Cout) */
    if (P == 0) return out;

    if (path == CONV_DEPTHWISE) {
        float *wk = qat_arena_floats(&ctx->arena, (int64_t)KH * KW * Cin);
        qat_dw_pack_weights(wk, w->data, Cin, KH, KW);
        qat_dwconv_fwd(&g, y, x->data, wk, b ? b->data : NULL);
        if (sv) sv->wk = wk;
        return out;
    }

    const float *a; /* A_0 = A viewed at group 0; group gi starts at column gi * (lda / groups) */
    int lda;
    if (path == CONV_1X1) {
        a = x->data;
        lda = Cin;
    } else if (path == CONV_1X1_STRIDED) {
        float *xs = qat_arena_floats(&ctx->arena, (int64_t)P * Cin);
        qat_gather_strided(xs, x->data, &g);
        a = xs;
        lda = Cin;
        if (keep_a) sv->a = xs;
    } else {
        a = NULL;
        lda = Kg;
    }

    if (path != CONV_IM2COL) {
        for (int gi = 0; gi < groups; gi++)
            qat_sgemm(0, 1, P, Coutg, Cg, 1.0f, a + (int64_t)gi * Cg, lda,
                      w->data + (int64_t)gi * Coutg * Cg, Cg, 0.0f, y + (int64_t)gi * Coutg, Cout);
    } else {
        /* Kept cols hold every group (the backward's dW needs them); otherwise one group's
         * worth of scratch is reused. */
        float *cols = qat_arena_floats(&ctx->arena, (int64_t)(keep_a ? groups : 1) * P * Kg);
        for (int gi = 0; gi < groups; gi++) {
            float *cg = keep_a ? cols + (int64_t)gi * P * Kg : cols;
            qat_im2col_nhwc(cg, x->data, &g, Cin, gi * Cg, Cg);
            qat_sgemm(0, 1, P, Coutg, Kg, 1.0f, cg, Kg, w->data + (int64_t)gi * Coutg * Kg, Kg,
                      0.0f, y + (int64_t)gi * Coutg, Cout);
        }
        if (keep_a) sv->a = cols;
    }
    if (b) qat_bias_add(y, b->data, P, Cout);
    return out;
}

/* x's gradient buffer, and whether it still has to be accumulated into. A gradient that does
 * not exist yet is handed out uninitialised when the caller will overwrite all of it. */
static float *input_grad(qat_ctx *ctx, qat_tensor *x, int overwrites_all, int *accumulate) {
    if (!x->grad && overwrites_all) {
        x->grad = qat_arena_floats(&ctx->arena, x->numel);
        *accumulate = 0;
        return x->grad;
    }
    *accumulate = 1;
    return qat_grad(ctx, x);
}

void qat_conv2d_backward(qat_ctx *ctx, qat_tensor *out) {
    qat_tensor *x = out->src[0], *w = out->src[1], *b = out->src[2];
    const conv_saved *sv = out->saved;
    QAT_ASSERT(sv != NULL);
    qat_conv_geom g;
    conv_geom(out, &g);
    const int groups = out->iparam[2];
    const conv_path path = (conv_path)out->iparam[3];
    const int Cin = g.c, Cout = out->shape[3], Cg = Cin / groups, Coutg = Cout / groups;
    const int Kg = g.kh * g.kw * Cg;
    const int P = g.n * g.oh * g.ow;
    const float *dy = out->grad; /* (P, Cout) */
    const int need_dx = x->requires_grad, need_dw = w->requires_grad;
    const int need_db = b && b->requires_grad;
    if (P == 0) return;

    if (path == CONV_DEPTHWISE) {
        if (need_dw || need_db) {
            /* The bias gradient comes out of the same pass over dy. */
            float *dwk = qat_arena_zeros(&ctx->arena, (int64_t)g.kh * g.kw * Cin);
            float *scratch = qat_arena_floats(&ctx->arena, (int64_t)qat_dwconv_bwd_weight_scratch(&g));
            float *db = need_db ? qat_grad(ctx, b) : NULL;
            qat_dwconv_bwd_weight(&g, dwk, db, dy, x->data, scratch);
            if (need_dw) qat_dw_unpack_add(qat_grad(ctx, w), dwk, Cin, g.kh, g.kw);
        }
        if (need_dx) {
            int acc;
            float *dx = input_grad(ctx, x, 1, &acc);
            qat_dwconv_bwd_data(&g, dx, dy, sv->wk, acc);
        }
        return;
    }

    if (need_db) {
        float *scratch = qat_arena_floats(&ctx->arena, (int64_t)qat_bias_grad_scratch(P, Cout));
        qat_bias_grad(qat_grad(ctx, b), dy, P, Cout, scratch);
    }

    if (need_dw) {
        float *dw = qat_grad(ctx, w); /* (Cout, KH, KW, Cg) = groups x (Coutg, Kg) */
        const float *a = path == CONV_1X1 ? x->data : sv->a;
        const int lda = path == CONV_IM2COL ? Kg : Cin;
        QAT_ASSERT(a != NULL);
        for (int gi = 0; gi < groups; gi++) {
            const float *ag = path == CONV_IM2COL ? a + (int64_t)gi * P * Kg : a + (int64_t)gi * Cg;
            qat_sgemm(1, 0, Coutg, Kg, P, 1.0f, dy + (int64_t)gi * Coutg, Cout, ag, lda, 1.0f,
                      dw + (int64_t)gi * Coutg * Kg, Kg);
        }
    }

    if (!need_dx) return;
    if (path == CONV_1X1) {
        /* dX_g (P, Cg) = dY_g (P, Coutg) * W_g (Coutg, Cg), written in place in x's grad. The
         * groups' column slices tile all of dX, so a fresh gradient needs no zeroing. */
        int acc;
        float *dx = input_grad(ctx, x, 1, &acc);
        for (int gi = 0; gi < groups; gi++)
            qat_sgemm(0, 0, P, Cg, Coutg, 1.0f, dy + (int64_t)gi * Coutg, Cout,
                      w->data + (int64_t)gi * Coutg * Cg, Cg, acc ? 1.0f : 0.0f,
                      dx + (int64_t)gi * Cg, Cin);
    } else if (path == CONV_1X1_STRIDED) {
        float *dxs = qat_arena_floats(&ctx->arena, (int64_t)P * Cin);
        for (int gi = 0; gi < groups; gi++)
            qat_sgemm(0, 0, P, Cg, Coutg, 1.0f, dy + (int64_t)gi * Coutg, Cout,
                      w->data + (int64_t)gi * Coutg * Cg, Cg, 0.0f, dxs + (int64_t)gi * Cg, Cin);
        qat_scatter_strided_add(qat_grad(ctx, x), dxs, &g);
    } else {
        float *dx = qat_grad(ctx, x);
        float *dcols = qat_arena_floats(&ctx->arena, (int64_t)P * Kg);
        for (int gi = 0; gi < groups; gi++) {
            qat_sgemm(0, 0, P, Kg, Coutg, 1.0f, dy + (int64_t)gi * Coutg, Cout,
                      w->data + (int64_t)gi * Coutg * Kg, Kg, 0.0f, dcols, Kg);
            qat_col2im_nhwc_add(dx, dcols, &g, Cin, gi * Cg, Cg);
        }
    }
}
