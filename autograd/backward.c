/* Reverse-mode pass over the tape, dispatched by op through one table. */
#include "ops.h"

const char *const qat_op_names[QAT_OP_COUNT] = {
    "leaf", "conv2d", "batchnorm2d", "relu", "relu6", "hardswish", "add", "mul",
    "global_avgpool", "maxpool2d", "avgpool2d", "linear", "reshape", "dropout",
    "softmax_cross_entropy", "mean", "sum", "fakequant", "lsq", "hardsigmoid", "channel_mul",
    "sigmoid",
};
_Static_assert(sizeof qat_op_names / sizeof qat_op_names[0] == QAT_OP_COUNT, "op name table");

/* One row per op; the forward and backward of each are in autograd/ops/<op>.c. */
static const qat_backward_fn backward_table[QAT_OP_COUNT] = {
    [QAT_OP_CONV2D] = qat_conv2d_backward,
    [QAT_OP_BATCHNORM2D] = qat_batchnorm2d_backward,
    [QAT_OP_RELU] = qat_relu_backward,
    [QAT_OP_RELU6] = qat_relu6_backward,
    [QAT_OP_HARDSWISH] = qat_hardswish_backward,
    [QAT_OP_ADD] = qat_add_backward,
    [QAT_OP_MUL] = qat_mul_backward,
    [QAT_OP_GLOBAL_AVGPOOL] = qat_global_avgpool_backward,
    [QAT_OP_MAXPOOL2D] = qat_maxpool2d_backward,
    [QAT_OP_AVGPOOL2D] = qat_avgpool2d_backward,
    [QAT_OP_LINEAR] = qat_linear_backward,
    [QAT_OP_RESHAPE] = qat_reshape_backward,
    [QAT_OP_DROPOUT] = qat_dropout_backward,
    [QAT_OP_SOFTMAX_CE] = qat_softmax_cross_entropy_backward,
    [QAT_OP_MEAN] = qat_mean_backward,
    [QAT_OP_SUM] = qat_sum_backward,
    [QAT_OP_FAKEQUANT] = qat_fakequant_backward,
    [QAT_OP_LSQ] = qat_lsq_backward,
    [QAT_OP_HARDSIGMOID] = qat_hardsigmoid_backward,
    [QAT_OP_CHANNEL_MUL] = qat_channel_mul_backward,
    [QAT_OP_SIGMOID] = qat_sigmoid_backward,
};

void qat_backward_node(qat_ctx *ctx, qat_tensor *t) {
    qat_backward_fn fn = backward_table[t->op];
    QAT_ASSERT(fn != NULL);
    fn(ctx, t);
}

void qat_backward(qat_ctx *ctx, qat_tensor *loss) {
    QAT_ASSERT(loss->numel == 1);
    float *g = qat_grad(ctx, loss);
    g[0] += 1.0f;
    for (int i = ctx->ntape - 1; i >= 0; i--) {
        qat_tensor *t = ctx->tape[i];
        if (!t->grad) continue; /* nothing downstream depends on it */
        qat_backward_node(ctx, t);
    }
}
