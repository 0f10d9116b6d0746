/* Layer kind dropout: inverted dropout before the classifier in training, the identity at
 * inference (no quantization point, no INT8 layer: the value passes through). */
#include "layer.h"
#include <stdio.h>

static void dropout_infer(qat_layer *L) {
    L->out_h = L->in_h, L->out_w = L->in_w, L->out_c = L->in_c;
    L->macs = 0;
}

static qat_tensor *dropout_forward(qat_layer *L, qat_ctx *ctx, qat_tensor *const *in) {
    return qat_dropout(ctx, in[0], L->dropout);
}

static void dropout_describe(const qat_layer *L, char *buf, size_t cap) {
    snprintf(buf, cap, "dropout p=%g", (double)L->dropout);
}

const qat_layer_desc qat_layer_dropout = {
    .name = "dropout",
    .vector_output = 1,
    .infer = dropout_infer,
    .forward = dropout_forward,
    .describe = dropout_describe,
};
