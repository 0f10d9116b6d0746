/* Layer kind add: the residual sum of its two inputs (an inverted-residual block's output and
 * its input). Fake-quant: the sum's output point; INT8: one add layer, dequantize-add-quantize
 * with the three scales (kernels/int8.h, qat_i8_add_one). */
#include "layer.h"
#include <stdio.h>

static void add_infer(qat_layer *L) {
    L->out_h = L->in_h, L->out_w = L->in_w, L->out_c = L->in_c;
    L->macs = 0;
}

static qat_tensor *add_forward(qat_layer *L, qat_ctx *ctx, qat_tensor *const *in) {
    return qat_add(ctx, in[0], in[1]);
}

static qat_status add_convert(const qat_layer *L, const qat_qconvert *c, qat_q8_layer *Y) {
    Y->kind = QAT_Q8_ADD;
    qat_convert_output(Y, c, QAT_ACT_NONE);
    return QAT_OK;
}

static void add_describe(const qat_layer *L, char *buf, size_t cap) {
    snprintf(buf, cap, "add (+ layer %d)", L->in[1]);
}

const qat_layer_desc qat_layer_add = {
    .name = "add",
    .infer = add_infer,
    .forward = add_forward,
    .qpoints = QAT_QP_OUT,
    .convert = add_convert,
    .describe = add_describe,
};
