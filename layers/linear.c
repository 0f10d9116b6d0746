/* Layer kind linear: the classifier, (N, in) -> (N, out) with bias. Fake-quant: its weight
 * (per channel of the output); the logits stay float. INT8: one linear layer whose int32
 * accumulator is dequantized to float logits (plus the float bias); it must be the last. */
#include "layer.h"
#include <stdlib.h>
#include <string.h>

static void linear_infer(qat_layer *L) {
    L->out_h = L->out_w = 1;
    L->macs = (int64_t)L->out_c * L->in_c;
}

static void linear_storage(qat_layer *L, qat_layer_store *s) {
    int ws[2] = {L->out_c, L->in_c}, bs[1] = {L->out_c};
    qat_store_param(s, &L->weight, ".weight", 2, ws, 1);
    qat_store_param(s, &L->bias, ".bias", 1, bs, 0);
}

/* torchvision MobileNetV2's classifier init: weight N(0, 0.01^2), bias 0. */
static void linear_init(qat_layer *L, qat_rng *rng) {
    for (int64_t i = 0; i < L->weight.numel; i++) L->weight.data[i] = 0.01f * qat_rng_normal(rng);
}

static qat_tensor *linear_forward(qat_layer *L, qat_ctx *ctx, qat_tensor *const *in) {
    return qat_linear(ctx, in[0], &L->weight, &L->bias);
}

static qat_tensor *linear_forward_fq(qat_layer *L, qat_qforward *f, qat_ctx *ctx,
                                     qat_tensor *const *in) {
    return qat_linear(ctx, in[0], qat_qpoint_apply(ctx, &L->weight, f->weight, f), &L->bias);
}

static qat_status linear_convert(const qat_layer *L, const qat_qconvert *c, qat_q8_layer *Y) {
    Y->kind = QAT_Q8_LINEAR;
    Y->in_h = Y->in_w = Y->out_h = Y->out_w = 1;
    Y->in_c = L->weight.shape[1];
    Y->out_c = L->weight.shape[0];
    Y->fbias = malloc((size_t)Y->out_c * sizeof(float));
    if (!Y->fbias) return qat_fail(QAT_ERR_NOMEM, "convert: out of memory");
    memcpy(Y->fbias, L->bias.data, (size_t)Y->out_c * sizeof(float));
    return qat_convert_weights(Y, c, L->name, &L->weight, NULL);
}

/* Left in float: the float classifier on the (dequantized) pooled vector. */
static qat_status linear_convert_float(const qat_layer *L, qat_q8_layer *Y) {
    Y->kind = QAT_Q8_FLINEAR;
    Y->in_h = Y->in_w = Y->out_h = Y->out_w = 1;
    Y->in_c = L->weight.shape[1];
    Y->out_c = L->weight.shape[0];
    Y->fweight = qat_floats_dup(L->weight.data, L->weight.numel);
    Y->fbias = qat_floats_dup(L->bias.data, Y->out_c);
    return Y->fweight && Y->fbias ? QAT_OK : qat_fail(QAT_ERR_NOMEM, "convert: out of memory");
}

const qat_layer_desc qat_layer_linear = {
    .name = "linear",
    .vector_output = 1,
    .infer = linear_infer,
    .storage = linear_storage,
    .init = linear_init,
    .forward = linear_forward,
    .qpoints = QAT_QP_WEIGHT,
    .forward_fq = linear_forward_fq,
    .convert = linear_convert,
    .convert_float = linear_convert_float,
};
