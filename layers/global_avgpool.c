/* Layer kind global_avgpool: (N, H, W, C) -> (N, C), the classifier's input. Fake-quant: its
 * output point; INT8: one avgpool layer, requantize(sum - HW * zx, sx / (HW * sy)). */
#include "int8.h" /* qat_i8_avgpool_mult */
#include "layer.h"

static void pool_infer(qat_layer *L) {
    L->out_h = L->out_w = 1, L->out_c = L->in_c;
    L->macs = 0;
}

static qat_tensor *pool_forward(qat_layer *L, qat_ctx *ctx, qat_tensor *const *in) {
    return qat_global_avgpool(ctx, in[0]);
}

static qat_status pool_convert(const qat_layer *L, const qat_qconvert *c, qat_q8_layer *Y) {
    Y->kind = QAT_Q8_AVGPOOL;
    Y->out_h = Y->out_w = 1;
    qat_convert_output(Y, c, QAT_ACT_NONE);
    Y->pool_mult = qat_i8_avgpool_mult(Y->sx, Y->sy, L->in_h * L->in_w);
    return QAT_OK;
}

const qat_layer_desc qat_layer_global_avgpool = {
    .name = "global_avgpool",
    .vector_output = 1,
    .infer = pool_infer,
    .forward = pool_forward,
    .qpoints = QAT_QP_OUT,
    .convert = pool_convert,
};
