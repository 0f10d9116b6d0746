/* Layer kind act: an activation on its own — hardswish, hardsigmoid and sigmoid, whose INT8 form is a
 * table rather than a clamp. A conv with act=hardswish in a spec becomes conv_bn_act (no
 * activation) followed by this record, because the INT8 model requantizes the conv's output
 * before the activation (PyTorch's quantized hardswish does the same). Fake-quant: its output
 * point (the conv's output point is its input's); INT8: one LUT layer whose 256 entries are
 * the fake-quant graph evaluated on every input code. */
#include "layer.h"
#include <stdio.h>
#include <stdlib.h>

static void act_infer(qat_layer *L) {
    L->out_h = L->in_h, L->out_w = L->in_w, L->out_c = L->in_c;
    L->macs = 0;
}

static qat_tensor *act_forward(qat_layer *L, qat_ctx *ctx, qat_tensor *const *in) {
    return qat_activation(ctx, in[0], L->act);
}

/* The activation as the autograd ops compute it (kernels/qmath.h for the hard ones). */
static float act_value(qat_act act, float x) {
    switch (act) {
    case QAT_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case QAT_ACT_RELU6: return x > 0.0f ? (x < 6.0f ? x : 6.0f) : 0.0f;
    case QAT_ACT_HARDSWISH: return qat_hardswish_f(x);
    case QAT_ACT_HARDSIGMOID: return qat_hardsigmoid_f(x);
    case QAT_ACT_SIGMOID: return qat_sigmoid_f(x);
    default: return x;
    }
}

void qat_act_table(uint8_t table[256], qat_act act, float sx, int32_t zx, float sy, int32_t zy,
                   int32_t qmin, int32_t qmax) {
    const float inv = 1.0f / sy; /* as qat_fq_consts_fill computes it */
    for (int q = 0; q < 256; q++)
        table[q] = (uint8_t)qat_quantize(act_value(act, qat_dequantize(q, sx, zx)), inv, zy, qmin, qmax);
}

static qat_status act_convert(const qat_layer *L, const qat_qconvert *c, qat_q8_layer *Y) {
    Y->kind = QAT_Q8_LUT;
    qat_convert_output(Y, c, QAT_ACT_NONE);
    Y->act = qat_q8_act_of(L->act);
    if (!(Y->table = malloc(256))) return qat_fail(QAT_ERR_NOMEM, "convert: out of memory");
    qat_act_table(Y->table, L->act, Y->sx, Y->zx, Y->sy, Y->zy, c->act_qmin, c->act_qmax);
    return QAT_OK;
}

static void act_describe(const qat_layer *L, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", qat_act_names[L->act]);
}

const qat_layer_desc qat_layer_act = {
    .name = "act",
    .infer = act_infer,
    .forward = act_forward,
    .qpoints = QAT_QP_OUT,
    .convert = act_convert,
    .describe = act_describe,
};
