/* Layer kind conv_bn_act: a conv without bias, BatchNorm and an activation (ReLU, ReLU6,
 * hardswish or none) — every conv of a MobileNet. Dense (groups 1) or depthwise (groups = in_c
 * = out_c). Fake-quant: the weight after simulated BN folding and the output after the
 * activation (docs/quantization.md, "Simulated BN folding"); INT8: one conv layer with BN
 * folded into the weights and the int32 bias, the activation in the output clamp. */
#include "layer.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BN_MOMENTUM 0.1f /* PyTorch BatchNorm2d defaults */
#define BN_EPS 1e-5f

static void conv_infer(qat_layer *L) {
    L->out_h = (L->in_h + 2 * L->pad - L->k) / L->stride + 1;
    L->out_w = (L->in_w + 2 * L->pad - L->k) / L->stride + 1;
    L->macs = (int64_t)L->out_h * L->out_w * L->out_c * L->k * L->k * (L->in_c / L->groups);
}

/* Parameter order: weight, BN weight (gamma), BN bias (beta), as PyTorch's model.parameters()
 * lists conv then BatchNorm. Weight decay only on the conv weight. */
static void conv_storage(qat_layer *L, qat_layer_store *s) {
    int ws[4] = {L->out_c, L->k, L->k, L->in_c / L->groups}, cs[1] = {L->out_c};
    qat_store_param(s, &L->weight, ".0.weight", 4, ws, 1);
    qat_store_param(s, &L->gamma, ".1.weight", 1, cs, 0);
    qat_store_param(s, &L->beta, ".1.bias", 1, cs, 0);
    L->bn.running_mean = qat_store_buffer(s, ".1.running_mean", L->out_c);
    L->bn.running_var = qat_store_buffer(s, ".1.running_var", L->out_c);
    L->bn.momentum = BN_MOMENTUM;
    L->bn.eps = BN_EPS;
    L->bn.update_stats = 1;
}

static void conv_reset(qat_layer *L) {
    for (int c = 0; c < L->out_c; c++) {
        L->gamma.data[c] = 1.0f;
        L->bn.running_mean[c] = 0.0f;
        L->bn.running_var[c] = 1.0f;
    }
}

/* kaiming_normal_(fan_out): PyTorch's fan_out of a (Cout, Cin/g, K, K) weight is Cout*K*K, not
 * divided by groups. Gain sqrt(2) (ReLU). */
static void conv_init(qat_layer *L, qat_rng *rng) {
    float std = sqrtf(2.0f / (float)(L->out_c * L->k * L->k));
    for (int64_t i = 0; i < L->weight.numel; i++) L->weight.data[i] = std * qat_rng_normal(rng);
}

static qat_tensor *conv_forward(qat_layer *L, qat_ctx *ctx, qat_tensor *const *in) {
    qat_tensor *y = qat_conv2d(ctx, in[0], &L->weight, NULL, L->stride, L->pad, L->groups);
    /* ReLU and ReLU6 run inside the BN pass (one read/write of the tensor less) */
    if (L->act == QAT_ACT_RELU || L->act == QAT_ACT_RELU6)
        return qat_batchnorm2d_act(ctx, y, &L->gamma, &L->beta, &L->bn,
                                   L->act == QAT_ACT_RELU ? QAT_BN_ACT_RELU : QAT_BN_ACT_RELU6);
    y = qat_batchnorm2d(ctx, y, &L->gamma, &L->beta, &L->bn);
    return qat_activation(ctx, y, L->act);
}

/* ---- fake-quant ------------------------------------------------------------------------------ */

/* gamma_c / std_c broadcast to the weight's shape, differentiable in gamma: gamma as a (C, 1)
 * matrix times a (R, 1) matrix of ones is the (C, R) broadcast (each element one exact product,
 * and linear's backward sums the gradient over R), then times the constant 1 / std. No op of
 * its own is needed (the op enum is closed). */
static qat_tensor *fold_scale(qat_ctx *ctx, qat_layer *L, const float *istd) {
    int C = L->out_c, R = (int)(L->weight.numel / C);
    int gs[2] = {C, 1}, os[2] = {R, 1};
    qat_tensor *ones = qat_tensor_new(ctx, 2, os);
    ones->requires_grad = 0;
    for (int r = 0; r < R; r++) ones->data[r] = 1.0f;
    qat_tensor *g = qat_linear(ctx, qat_reshape(ctx, &L->gamma, 2, gs), ones, NULL);
    g = qat_reshape(ctx, g, L->weight.ndim, L->weight.shape);
    return qat_mul(ctx, g, qat_channel_const(ctx, L->weight.ndim, L->weight.shape, 0, istd, C));
}

/* Conv + BN with the weight fake-quantized after folding (Krishnamoorthi 2018; PyTorch's
 * ConvBn2d), s = gamma / std_running per output channel:
 *  - running statistics (eval, or BN frozen): the fully folded layer the INT8 model computes,
 *      y = conv(x, fq(w * s)) + (beta - gamma * mean / std)
 *    with s and the bias differentiable in gamma and beta;
 *  - batch statistics (training): PyTorch's _forward_approximate,
 *      y = BN(conv(x, fq(w * s)) / s)
 *    with s constant for autograd: w gets the straight-through gradient through the fold and
 *    gamma/beta BN's gradient (PyTorch also differentiates s; through the batch normalisation
 *    that path is nearly zero, see docs/quantization.md).
 * Without folding (fake-quant off): conv -> BN exactly as the float forward. */
static qat_tensor *conv_forward_fq(qat_layer *L, qat_qforward *f, qat_ctx *ctx,
                                   qat_tensor *const *in) {
    qat_qpoint *wp = f->weight;
    int on = qat_qpoint_on(wp, f->lsq);
    int fold = f->fold_bn == 2 || (f->fold_bn == 1 && on);
    int running = !ctx->training || f->bn_frozen;
    qat_tensor *y;
    const float *in_scale = NULL; /* per-channel multiplier of the BN input (the / s) */
    int C = L->out_c;
    float *s = qat_arena_floats(&ctx->arena, C), *istd = qat_arena_floats(&ctx->arena, C);
    for (int c = 0; c < C; c++) {
        istd[c] = 1.0f / sqrtf(L->bn.running_var[c] + L->bn.eps);
        s[c] = L->gamma.data[c] * istd[c];
    }
    if (!fold) {
        if (f->fold_bn == 1 && f->observe && !f->lsq) {
            /* Fake-quant is off, so the output is plain conv -> BN (bit for bit FP32), but the
             * observer must still see the folded weight: that is what gets quantized later. */
            qat_tensor *ws = qat_channel_const(ctx, L->weight.ndim, L->weight.shape, 0, s, C);
            for (int64_t k = 0; k < ws->numel; k++) ws->data[k] *= L->weight.data[k];
            qat_qforward g = *f;
            g.observe = 1;
            qat_qpoint_apply(ctx, ws, wp, &g);
        }
        qat_tensor *w = f->fold_bn == 0 ? qat_qpoint_apply(ctx, &L->weight, wp, f) : &L->weight;
        y = qat_conv2d(ctx, in[0], w, NULL, L->stride, L->pad, L->groups);
    } else if (running) {
        qat_tensor *w = qat_qpoint_apply(ctx, qat_mul(ctx, &L->weight, fold_scale(ctx, L, istd)), wp, f);
        float *nb = qat_arena_floats(&ctx->arena, C);
        for (int c = 0; c < C; c++) nb[c] = -L->bn.running_mean[c] * istd[c];
        int cs[1] = {C};
        qat_tensor *b = qat_add(ctx, &L->beta, qat_mul(ctx, &L->gamma, qat_channel_const(ctx, 1, cs, 0, nb, C)));
        b = qat_bias_fq(ctx, f, b);
        y = qat_conv2d(ctx, in[0], w, b, L->stride, L->pad, L->groups);
        return qat_activation(ctx, y, L->act);
    } else {
        float *inv = qat_arena_floats(&ctx->arena, C);
        for (int c = 0; c < C; c++) {
            /* gamma == 0 would divide by zero: keep the sign, floor the magnitude */
            float sc = fabsf(s[c]) < 1e-12f ? (s[c] < 0 ? -1e-12f : 1e-12f) : s[c];
            s[c] = sc, inv[c] = 1.0f / sc;
        }
        qat_tensor *ws = qat_mul(ctx, &L->weight, qat_channel_const(ctx, L->weight.ndim, L->weight.shape, 0, s, C));
        qat_tensor *w = qat_qpoint_apply(ctx, ws, wp, f);
        y = qat_conv2d(ctx, in[0], w, NULL, L->stride, L->pad, L->groups);
        in_scale = inv; /* the / s runs inside the BN op's passes (bitwise a separate qat_mul) */
    }
    /* ReLU and ReLU6 run inside the BN pass, as in the float forward (bitwise the separate ops) */
    qat_bn_act bact = L->act == QAT_ACT_RELU ? QAT_BN_ACT_RELU
                    : L->act == QAT_ACT_RELU6 ? QAT_BN_ACT_RELU6 : QAT_BN_ACT_NONE;
    int training = ctx->training;
    if (f->bn_frozen) ctx->training = 0; /* BN normalises with (and keeps) running statistics */
    qat_fq *ofq = f->out ? &f->out->fq : NULL;
    if (ofq && !f->lsq && ofq->fake_quant_enabled &&
        (bact != QAT_BN_ACT_NONE || L->act == QAT_ACT_NONE)) {
        /* the output fake-quant inside the BN node: what qat_qpoint_apply would do, one node less */
        int saved = ofq->observer_enabled;
        ofq->observer_enabled = saved && f->observe && !f->act_paused;
        y = qat_batchnorm2d_act_fq(ctx, y, in_scale, &L->gamma, &L->beta, &L->bn, bact, ofq);
        ofq->observer_enabled = saved;
        f->quantized = 1;
    } else {
        y = qat_batchnorm2d_scaled_act(ctx, y, in_scale, &L->gamma, &L->beta, &L->bn, bact);
    }
    ctx->training = training;
    return bact == QAT_BN_ACT_NONE && !f->quantized ? qat_activation(ctx, y, L->act) : y;
}

/* ---- INT8 -------------------------------------------------------------------------------------- */

static int conv_int8_check(const qat_layer *L, char *why, size_t cap) {
    if (L->act != QAT_ACT_HARDSWISH) return 1;
    snprintf(why, cap, "layer %s: hardswish has no INT8 kernel", L->name);
    return 0;
}

/* BN folded as the eval forward folds it (conv_forward_fq, running statistics):
 * w' = w * (gamma * istd), b = beta + gamma * (-mean * istd), each product rounded. */
static qat_status conv_convert(const qat_layer *L, const qat_qconvert *cv, qat_q8_layer *Y) {
    int C = L->out_c;
    Y->kind = QAT_Q8_CONV;
    Y->k = L->k, Y->stride = L->stride, Y->pad = L->pad, Y->groups = L->groups;
    qat_convert_output(Y, cv, L->act);
    float *s = malloc((size_t)C * sizeof(float));
    Y->bias = malloc((size_t)C * sizeof(int32_t));
    if (!s || !Y->bias) {
        free(s);
        return qat_fail(QAT_ERR_NOMEM, "convert: out of memory");
    }
    for (int c = 0; c < C; c++) s[c] = qat_rounded(L->gamma.data[c] * (1.0f / sqrtf(L->bn.running_var[c] + L->bn.eps)));
    qat_status st = qat_convert_weights(Y, cv, L->name, &L->weight, s);
    for (int c = 0; !st && c < C; c++) {
        float istd = 1.0f / sqrtf(L->bn.running_var[c] + L->bn.eps);
        float nb = qat_rounded(-L->bn.running_mean[c] * istd);
        float b = L->beta.data[c] + qat_rounded(L->gamma.data[c] * nb);
        if (!isfinite(b)) st = qat_fail(QAT_ERR_NUMERIC, "convert: layer %s: folded bias is not finite", L->name);
        Y->bias[c] = qat_bias_quantize(b, Y->sx, Y->wscale[c]);
    }
    free(s);
    return st;
}

/* Left in float: BN folded in float as conv_convert folds it (w * (gamma * istd) and
 * beta + gamma * (-mean * istd), each product rounded); the activation (hardswish too) runs in
 * float. */
static qat_status conv_convert_float(const qat_layer *L, qat_q8_layer *Y) {
    const int C = L->out_c;
    const int64_t R = L->weight.numel / C;
    Y->kind = QAT_Q8_FCONV;
    Y->k = L->k, Y->stride = L->stride, Y->pad = L->pad, Y->groups = L->groups;
    Y->act = qat_q8_act_of(L->act);
    Y->fweight = malloc((size_t)L->weight.numel * sizeof(float));
    Y->fbias = malloc((size_t)C * sizeof(float));
    if (!Y->fweight || !Y->fbias) return qat_fail(QAT_ERR_NOMEM, "convert: out of memory");
    for (int c = 0; c < C; c++) {
        const float istd = 1.0f / sqrtf(L->bn.running_var[c] + L->bn.eps);
        const float s = qat_rounded(L->gamma.data[c] * istd);
        for (int64_t k = 0; k < R; k++) Y->fweight[c * R + k] = qat_rounded(L->weight.data[c * R + k] * s);
        const float nb = qat_rounded(-L->bn.running_mean[c] * istd);
        Y->fbias[c] = L->beta.data[c] + qat_rounded(L->gamma.data[c] * nb);
        if (!isfinite(Y->fbias[c]) || !isfinite(s))
            return qat_fail(QAT_ERR_NUMERIC, "convert: layer %s: folded BN is not finite", L->name);
    }
    return QAT_OK;
}

static void conv_describe(const qat_layer *L, char *buf, size_t cap) {
    snprintf(buf, cap, "%s %dx%d s%d bn %s", L->role == QAT_CONV_DW ? "dwconv" : "conv", L->k, L->k,
             L->stride, qat_act_names[L->act]);
}

const qat_layer_desc qat_layer_conv_bn_act = {
    .name = "conv_bn_act",
    .infer = conv_infer,
    .storage = conv_storage,
    .reset = conv_reset,
    .init = conv_init,
    .forward = conv_forward,
    .qpoints = QAT_QP_WEIGHT | QAT_QP_OUT,
    .forward_fq = conv_forward_fq,
    .int8_check = conv_int8_check,
    .convert = conv_convert,
    .convert_float = conv_convert_float,
    .describe = conv_describe,
};
