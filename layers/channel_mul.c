/* Layer kind channel_mul: in[0] (N, H, W, C) times the gate in[1] (N, C) per channel — the last
 * step of squeeze-and-excite. Fake-quant: its output point (both operands are quantized values
 * already); INT8: one MUL layer, requantize((x - zx) * (g - zg), sx * sg / sy). */
#include "layer.h"
#include <stdio.h>
#include <stdlib.h>

static void cmul_infer(qat_layer *L) {
    L->out_h = L->in_h, L->out_w = L->in_w, L->out_c = L->in_c;
    L->macs = 0;
}

static qat_tensor *cmul_forward(qat_layer *L, qat_ctx *ctx, qat_tensor *const *in) {
    return qat_channel_mul(ctx, in[0], in[1]);
}

static qat_status cmul_convert(const qat_layer *L, const qat_qconvert *c, qat_q8_layer *Y) {
    Y->kind = QAT_Q8_MUL;
    qat_convert_output(Y, c, QAT_ACT_NONE);
    if (!(Y->mult = malloc((size_t)Y->out_c * sizeof(float))))
        return qat_fail(QAT_ERR_NOMEM, "convert: out of memory");
    const float mult = qat_requant_mult(Y->sx, Y->sb, Y->sy);
    for (int ch = 0; ch < Y->out_c; ch++) Y->mult[ch] = mult;
    return QAT_OK;
}

static void cmul_describe(const qat_layer *L, char *buf, size_t cap) {
    snprintf(buf, cap, "mul (x layer %d)", L->in[1]);
}

const qat_layer_desc qat_layer_channel_mul = {
    .name = "channel_mul",
    .infer = cmul_infer,
    .forward = cmul_forward,
    .qpoints = QAT_QP_OUT,
    .convert = cmul_convert,
    .describe = cmul_describe,
};
