/* Autograd ops: one file per op in autograd/ops/, forward and backward side by side.
 * A forward takes the context and its input tensors and returns a new tensor recorded on the
 * tape; its backward (named <op>_backward) accumulates into the inputs' grads.
 * Shapes: activations NHWC (N, H, W, C); 2-d tensors (N, C).
 */
#ifndef QAT_OPS_H
#define QAT_OPS_H

#include "quant.h"
#include "tensor.h"

/* conv2d: x (N, H, W, Cin), w (Cout, KH, KW, Cin/groups), b (Cout) or NULL.
 * out (N, OH, OW, Cout), OH = (H + 2*pad - KH) / stride + 1. groups == Cin == Cout is depthwise.
 * iparam: [0]=stride [1]=pad [2]=groups. */
qat_tensor *qat_conv2d(qat_ctx *ctx, qat_tensor *x, qat_tensor *w, qat_tensor *b, int stride,
                       int pad, int groups);
void qat_conv2d_backward(qat_ctx *ctx, qat_tensor *out);

/* Running statistics of a BatchNorm layer, owned by the layer (updated in training mode). */
typedef struct {
    float *running_mean, *running_var; /* (C) */
    float momentum;                    /* PyTorch convention: new = (1-m)*old + m*batch; 0.1 */
    float eps;                         /* 1e-5 */
    int update_stats;                  /* 0 freezes the running statistics (freeze-bn) */
} qat_bn_state;

/* batchnorm2d: x (N, H, W, C), gamma/beta (C). Training: normalise with batch mean and biased
 * variance, update running stats with the unbiased variance; eval: use running stats. */
qat_tensor *qat_batchnorm2d(qat_ctx *ctx, qat_tensor *x, qat_tensor *gamma, qat_tensor *beta,
                            qat_bn_state *st);
void qat_batchnorm2d_backward(qat_ctx *ctx, qat_tensor *out);

/* batchnorm2d followed by a fused activation in the same pass (iparam[1] = act): saves a full
 * read and write of the tensor in forward and in backward. Equals qat_relu(6)(batchnorm2d()). */
typedef enum { QAT_BN_ACT_NONE = 0, QAT_BN_ACT_RELU, QAT_BN_ACT_RELU6 } qat_bn_act;
qat_tensor *qat_batchnorm2d_act(qat_ctx *ctx, qat_tensor *x, qat_tensor *gamma,
                                qat_tensor *beta, qat_bn_state *st, qat_bn_act act);
/* qat_batchnorm2d_act of t = x * in_scale[c] (in_scale (C) copied; NULL = 1) without storing
 * t: bitwise qat_batchnorm2d_act(qat_mul(x, broadcast in_scale)), gradients included, one
 * full-tensor op less forward and backward. The QAT model's x / s before batch-statistics BN. */
qat_tensor *qat_batchnorm2d_scaled_act(qat_ctx *ctx, qat_tensor *x, const float *in_scale,
                                       qat_tensor *gamma, qat_tensor *beta, qat_bn_state *st,
                                       qat_bn_act act);

/* qat_batchnorm2d_scaled_act followed by qat_fakequant(fq) as one QAT_OP_BATCHNORM2D node
 * (autograd/ops/batchnorm2d.c; qat_fq is the quantization point's state, fakequant/quant.h):
 * the same observer update, qparams and outputs bit for bit, gradients included, while the
 * straight-through mask is applied inside BN's backward passes (no separate gradient pass).
 * fq->fake_quant_enabled must be set; NULL fq is qat_batchnorm2d_scaled_act. */
qat_tensor *qat_batchnorm2d_act_fq(qat_ctx *ctx, qat_tensor *x, const float *in_scale,
                                   qat_tensor *gamma, qat_tensor *beta, qat_bn_state *st,
                                   qat_bn_act act, qat_fq *fq);

qat_tensor *qat_relu(qat_ctx *ctx, qat_tensor *x);
void qat_relu_backward(qat_ctx *ctx, qat_tensor *out);
qat_tensor *qat_relu6(qat_ctx *ctx, qat_tensor *x);
void qat_relu6_backward(qat_ctx *ctx, qat_tensor *out);
qat_tensor *qat_hardswish(qat_ctx *ctx, qat_tensor *x);
void qat_hardswish_backward(qat_ctx *ctx, qat_tensor *out);
qat_tensor *qat_hardsigmoid(qat_ctx *ctx, qat_tensor *x);
void qat_hardsigmoid_backward(qat_ctx *ctx, qat_tensor *out);
/* sigmoid 1 / (1 + exp(-x)) (qat_sigmoid_f, kernels/qmath.h) */
qat_tensor *qat_sigmoid(qat_ctx *ctx, qat_tensor *x);
void qat_sigmoid_backward(qat_ctx *ctx, qat_tensor *out);

/* Element-wise, same shapes. */
qat_tensor *qat_add(qat_ctx *ctx, qat_tensor *a, qat_tensor *b);
void qat_add_backward(qat_ctx *ctx, qat_tensor *out);
qat_tensor *qat_mul(qat_ctx *ctx, qat_tensor *a, qat_tensor *b);
void qat_mul_backward(qat_ctx *ctx, qat_tensor *out);

/* x (N, H, W, C) times s (N, C) broadcast over H and W (squeeze-and-excite). */
qat_tensor *qat_channel_mul(qat_ctx *ctx, qat_tensor *x, qat_tensor *s);
void qat_channel_mul_backward(qat_ctx *ctx, qat_tensor *out);

/* (N, H, W, C) -> (N, C) */
qat_tensor *qat_global_avgpool(qat_ctx *ctx, qat_tensor *x);
void qat_global_avgpool_backward(qat_ctx *ctx, qat_tensor *out);

/* Pooling windows k x k, stride, pad (max pool pads with -inf; avg pool counts padding, like
 * PyTorch's count_include_pad=True). iparam: [0]=k [1]=stride [2]=pad. */
qat_tensor *qat_maxpool2d(qat_ctx *ctx, qat_tensor *x, int k, int stride, int pad);
void qat_maxpool2d_backward(qat_ctx *ctx, qat_tensor *out);
qat_tensor *qat_avgpool2d(qat_ctx *ctx, qat_tensor *x, int k, int stride, int pad);
void qat_avgpool2d_backward(qat_ctx *ctx, qat_tensor *out);

/* linear: x (N, in), w (out, in), b (out) or NULL -> (N, out) */
qat_tensor *qat_linear(qat_ctx *ctx, qat_tensor *x, qat_tensor *w, qat_tensor *b);
void qat_linear_backward(qat_ctx *ctx, qat_tensor *out);

/* Same data, new shape (numel must match); flatten is reshape to (N, rest). */
qat_tensor *qat_reshape(qat_ctx *ctx, qat_tensor *x, int ndim, const int *shape);
qat_tensor *qat_flatten(qat_ctx *ctx, qat_tensor *x);
void qat_reshape_backward(qat_ctx *ctx, qat_tensor *out);

/* Inverted dropout with drop probability p (identity when !ctx->training or p == 0). */
qat_tensor *qat_dropout(qat_ctx *ctx, qat_tensor *x, float p);
void qat_dropout_backward(qat_ctx *ctx, qat_tensor *out);

/* Mean softmax cross-entropy of logits (N, K) against labels[N] with label smoothing eps:
 * target = (1-eps)*onehot + eps/K. Returns a scalar tensor (ndim 1, shape {1}). */
qat_tensor *qat_softmax_cross_entropy(qat_ctx *ctx, qat_tensor *logits, const int *labels,
                                      float smoothing);
void qat_softmax_cross_entropy_backward(qat_ctx *ctx, qat_tensor *out);

/* Reductions over all elements -> scalar (shape {1}). */
qat_tensor *qat_mean(qat_ctx *ctx, qat_tensor *x);
void qat_mean_backward(qat_ctx *ctx, qat_tensor *out);
qat_tensor *qat_sum(qat_ctx *ctx, qat_tensor *x);
void qat_sum_backward(qat_ctx *ctx, qat_tensor *out);


/* ---- fake-quant (the quantizers' state: fakequant/quant.h) ---------------------------------- */

/* y = fake_quantize(x) with fq's qparams, after observing x when the observer is on.
 * Returns x itself when fake_quant_enabled == 0. Backward is the straight-through estimator:
 * dx += dy where round(x/scale) + zp was inside [qmin, qmax], else 0. */
qat_tensor *qat_fakequant(qat_ctx *ctx, qat_tensor *x, qat_fq *fq);
void qat_fakequant_backward(qat_ctx *ctx, qat_tensor *out);

/* y = fake_quantize(x) with the learned quantizer's qparams (QAT_OP_LSQ, iparam[0] = 1 for
 * LSQ+); src = {x, scale, offset} as leaf tensors over q's arrays, so the backward accumulates
 * ds and dbeta into q->scale_grad / q->offset_grad. */
qat_tensor *qat_lsq_quantize(qat_ctx *ctx, qat_tensor *x, qat_lsq *q);
void qat_lsq_backward(qat_ctx *ctx, qat_tensor *out);

/* What a QAT_OP_FAKEQUANT / QAT_OP_LSQ node keeps for backward (arena memory). */
typedef struct {
    uint8_t *code;            /* (numel) QAT_FQ_* */
    qat_qlayout layout;
    float *inv;               /* (C) LSQ: 1 / scale used in forward */
    float *ds_below, *ds_above; /* (C) LSQ: d(y)/d(scale) of clipped elements */
    float grad_scale;         /* LSQ: g */
} qat_fq_saved;

#endif
