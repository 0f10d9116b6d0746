/* Layer kind avgpool: the mean over k x k windows of (N, H, W, C), stride and symmetric zero
 * padding counted in the divisor (PyTorch nn.AvgPool2d's default count_include_pad=True, ceil_mode
 * off, 2 pad <= k: every divisor is k*k). Fake-quant: its output point; INT8: one AVGPOOL2D
 * layer, requantize(sum over the window of (x - zx), sx / (k*k * sy)), padded taps adding 0. */
#include "int8.h" /* qat_i8_avgpool_mult */
#include "layer.h"
#include <stdio.h>

static void avgpool_infer(qat_layer *L) {
    L->out_h = (L->in_h + 2 * L->pad - L->k) / L->stride + 1;
    L->out_w = (L->in_w + 2 * L->pad - L->k) / L->stride + 1;
    L->out_c = L->in_c;
    L->macs = 0; /* additions only, as global_avgpool and the INT8 model count pools */
}

static qat_tensor *avgpool_forward(qat_layer *L, qat_ctx *ctx, qat_tensor *const *in) {
    return qat_avgpool2d(ctx, in[0], L->k, L->stride, L->pad);
}

static qat_status avgpool_convert(const qat_layer *L, const qat_qconvert *c, qat_q8_layer *Y) {
    Y->kind = QAT_Q8_AVGPOOL2D;
    Y->k = L->k, Y->stride = L->stride, Y->pad = L->pad, Y->groups = 1;
    qat_convert_output(Y, c, QAT_ACT_NONE);
    Y->pool_mult = qat_i8_avgpool_mult(Y->sx, Y->sy, L->k * L->k);
    return QAT_OK;
}

static void avgpool_describe(const qat_layer *L, char *buf, size_t cap) {
    snprintf(buf, cap, "avgpool %dx%d/s%d", L->k, L->k, L->stride);
}

const qat_layer_desc qat_layer_avgpool = {
    .name = "avgpool",
    .infer = avgpool_infer,
    .forward = avgpool_forward,
    .qpoints = QAT_QP_OUT,
    .convert = avgpool_convert,
    .describe = avgpool_describe,
};
