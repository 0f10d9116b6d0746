/* Layer kind maxpool: max over k x k windows of (N, H, W, C), stride and symmetric padding that
 * acts as -inf (PyTorch nn.MaxPool2d / ONNX MaxPool, ceil_mode off, 2 pad <= k). The max of
 * fake-quantized values is one of them, on the same grid: the kind has no quantization point of
 * its own and its output value shares its input's (models/qmodel.c follows in[0]); INT8: one
 * MAXPOOL layer, the max of the u8 codes with the input's scale and zero point. */
#include "layer.h"
#include <stdio.h>

static void maxpool_infer(qat_layer *L) {
    L->out_h = (L->in_h + 2 * L->pad - L->k) / L->stride + 1;
    L->out_w = (L->in_w + 2 * L->pad - L->k) / L->stride + 1;
    L->out_c = L->in_c;
    L->macs = 0;
}

static qat_tensor *maxpool_forward(qat_layer *L, qat_ctx *ctx, qat_tensor *const *in) {
    return qat_maxpool2d(ctx, in[0], L->k, L->stride, L->pad);
}

static qat_status maxpool_convert(const qat_layer *L, const qat_qconvert *c, qat_q8_layer *Y) {
    Y->kind = QAT_Q8_MAXPOOL;
    Y->k = L->k, Y->stride = L->stride, Y->pad = L->pad, Y->groups = 1;
    Y->sy = Y->sx, Y->zy = Y->zx; /* the codes themselves */
    Y->lo = c->act_qmin, Y->hi = c->act_qmax;
    return QAT_OK;
}

static void maxpool_describe(const qat_layer *L, char *buf, size_t cap) {
    snprintf(buf, cap, "maxpool %dx%d/s%d", L->k, L->k, L->stride);
}

const qat_layer_desc qat_layer_maxpool = {
    .name = "maxpool",
    .infer = maxpool_infer,
    .forward = maxpool_forward,
    .qpoints = 0,
    .convert = maxpool_convert,
    .describe = maxpool_describe,
};
