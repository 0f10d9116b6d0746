/* Layer kind fc: (N, C) -> (N, C') with bias, then ReLU or nothing — a 1x1 conv with bias on a
 * pooled vector, as squeeze-and-excite's two convs are (torchvision SqueezeExcitation fc1, fc2).
 * Fake-quant: its weight (per output channel) with the int32-exact bias (qat_bias_fq) and its
 * output point after the activation; INT8: a 1x1 CONV on a 1x1xC value (the int8 GEMM) with the
 * bias in accumulator units and ReLU in the clamp. */
#include "layer.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static void fc_infer(qat_layer *L) {
    L->out_h = L->out_w = 1;
    L->macs = (int64_t)L->out_c * L->in_c;
}

/* PyTorch's Conv2d(in, out, 1) parameters: weight (out, in[, 1, 1]) then bias. */
static void fc_storage(qat_layer *L, qat_layer_store *s) {
    int ws[2] = {L->out_c, L->in_c}, bs[1] = {L->out_c};
    qat_store_param(s, &L->weight, ".weight", 2, ws, 1);
    qat_store_param(s, &L->bias, ".bias", 1, bs, 0);
}

/* torchvision MobileNetV3's conv init: kaiming_normal_(fan_out) = N(0, 2 / out), bias 0. */
static void fc_init(qat_layer *L, qat_rng *rng) {
    float std = sqrtf(2.0f / (float)L->out_c);
    for (int64_t i = 0; i < L->weight.numel; i++) L->weight.data[i] = std * qat_rng_normal(rng);
}

static qat_tensor *fc_forward(qat_layer *L, qat_ctx *ctx, qat_tensor *const *in) {
    return qat_activation(ctx, qat_linear(ctx, in[0], &L->weight, &L->bias), L->act);
}

static qat_tensor *fc_forward_fq(qat_layer *L, qat_qforward *f, qat_ctx *ctx, qat_tensor *const *in) {
    qat_tensor *w = qat_qpoint_apply(ctx, &L->weight, f->weight, f);
    qat_tensor *b = qat_qpoint_on(f->weight, f->lsq) ? qat_bias_fq(ctx, f, &L->bias) : &L->bias;
    return qat_activation(ctx, qat_linear(ctx, in[0], w, b), L->act);
}

static int fc_int8_check(const qat_layer *L, char *why, size_t cap) {
    if (L->act == QAT_ACT_NONE || L->act == QAT_ACT_RELU || L->act == QAT_ACT_RELU6) return 1;
    snprintf(why, cap, "layer %s: fc with %s has no INT8 form (only a clamp)", L->name,
             qat_act_names[L->act]);
    return 0;
}

static qat_status fc_convert(const qat_layer *L, const qat_qconvert *cv, qat_q8_layer *Y) {
    const int C = L->out_c;
    Y->kind = QAT_Q8_CONV;
    Y->k = 1, Y->stride = 1, Y->pad = 0, Y->groups = 1;
    Y->in_h = Y->in_w = Y->out_h = Y->out_w = 1;
    qat_convert_output(Y, cv, L->act);
    float *ones = malloc((size_t)C * sizeof(float));
    Y->bias = malloc((size_t)C * sizeof(int32_t));
    if (!ones || !Y->bias) {
        free(ones);
        return qat_fail(QAT_ERR_NOMEM, "convert: out of memory");
    }
    for (int c = 0; c < C; c++) ones[c] = 1.0f; /* w * 1 is w: the codes of the weight itself */
    qat_status st = qat_convert_weights(Y, cv, L->name, &L->weight, ones);
    for (int c = 0; !st && c < C; c++) {
        if (!isfinite(L->bias.data[c]))
            st = qat_fail(QAT_ERR_NUMERIC, "convert: layer %s: bias is not finite", L->name);
        else Y->bias[c] = qat_bias_quantize(L->bias.data[c], Y->sx, Y->wscale[c]);
    }
    free(ones);
    return st;
}

/* Left in float: a 1x1 float conv on the 1x1xC vector, bias and activation in float. */
static qat_status fc_convert_float(const qat_layer *L, qat_q8_layer *Y) {
    Y->kind = QAT_Q8_FCONV;
    Y->k = 1, Y->stride = 1, Y->pad = 0, Y->groups = 1;
    Y->in_h = Y->in_w = Y->out_h = Y->out_w = 1;
    Y->act = qat_q8_act_of(L->act);
    Y->fweight = qat_floats_dup(L->weight.data, L->weight.numel);
    Y->fbias = qat_floats_dup(L->bias.data, L->out_c);
    return Y->fweight && Y->fbias ? QAT_OK : qat_fail(QAT_ERR_NOMEM, "convert: out of memory");
}

static void fc_describe(const qat_layer *L, char *buf, size_t cap) {
    snprintf(buf, cap, "fc %s", qat_act_names[L->act]);
}

const qat_layer_desc qat_layer_fc = {
    .name = "fc",
    .vector_output = 1,
    .infer = fc_infer,
    .storage = fc_storage,
    .init = fc_init,
    .forward = fc_forward,
    .qpoints = QAT_QP_WEIGHT | QAT_QP_OUT,
    .forward_fq = fc_forward_fq,
    .int8_check = fc_int8_check,
    .convert = fc_convert,
    .convert_float = fc_convert_float,
    .describe = fc_describe,
};
