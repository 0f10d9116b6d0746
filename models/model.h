/* A model built from a spec: the architecture is an array of layer records in execution order
 * (a DAG: each record names the records it reads, layers/layer.h) that forward walks through
 * their kinds' descriptors, and all learnable parameters live in one allocation (grads in
 * another), llm.c style.
 *
 *   qat_spec *s;  qat_spec_load("mbv2-tiny", &s);
 *   qat_model *m;
 *   if (qat_model_create(s, 0.0f, 28, 28, 1, 10, &m)) die(qat_last_error());
 *   qat_rng r;  qat_rng_seed(&r, 1);  qat_model_init(m, &r);
 *   qat_ctx ctx;  qat_ctx_init(&ctx, 1 << 24);
 *   qat_tensor *logits = qat_model_forward(m, &ctx, x);       // x (N, H, W, C) -> (N, classes)
 *   qat_backward(&ctx, qat_softmax_cross_entropy(&ctx, logits, labels, 0.0f));
 *   ... optimizer step over m->params / m->grads / m->segs ...
 *   qat_model_zero_grad(m);  qat_ctx_reset(&ctx);
 *
 * The fake-quant model (models/qmodel.h) walks the same records with their kinds' fake-quant
 * graphs, and convert (export/) turns each into its INT8 layer.
 */
#ifndef QAT_MODEL_H
#define QAT_MODEL_H

#include "layer.h"

typedef struct qat_model qat_model;
struct qat_model {
    float *params, *grads;         /* ALL learnable parameters, one allocation each (nparams) */
    int64_t nparams;
    qat_param_seg *segs;           /* one per parameter tensor: offset, numel, decay */
    qat_param_info *param_info;    /* nsegs entries, same order as segs */
    int nsegs;
    float *buffers;                /* BN running mean/var, one allocation (nbuffers) */
    int64_t nbuffers;
    qat_buffer_info *buffer_info;
    int nbuffer_segs;
    int in_h, in_w, in_c, nclasses;
    float width_mult;              /* the width in effect (argument, or the spec's width) */
    qat_spec *spec;                /* a private copy of the spec the model was built from */
    qat_layer *layers;             /* in execution order; forward walks them */
    int nlayers;
    int64_t macs;                  /* per image */
};

/* Builds the model for inputs (in_h, in_w, in_c) and nclasses classes. width_mult > 0 replaces
 * the spec's `width` line; width_mult <= 0 uses it (1 when absent), so rebuilding a model with
 * (m->spec, m->width_mult) gives the same model. Channels are scaled with
 * qat_make_divisible(c * width, 8); the head conv with max(width, 1), as torchvision does.
 * Errors: QAT_ERR_ARG (sizes), QAT_ERR_SHAPE ("<spec>:<line>: ..." when e.g. a stride-2 stage
 * meets a spatial size below 2), QAT_ERR_NOMEM.
 * Parameters come out zero, BN gamma 1 and beta 0, running mean 0 and var 1: call
 * qat_model_init (or load a checkpoint) before training. */
qat_status qat_model_create(const qat_spec *spec, float width_mult, int in_h, int in_w, int in_c,
                            int nclasses, qat_model **out);
void qat_model_free(qat_model *m);

/* torchvision MobileNetV2's init: conv weights kaiming_normal_(mode="fan_out") i.e.
 * N(0, 2 / (Cout*K*K)); BN gamma 1, beta 0, running mean 0, var 1; linear weight N(0, 0.01^2),
 * bias 0. Draws from rng in the order of m->segs. */
void qat_model_init(qat_model *m, qat_rng *rng);

/* x (N, in_h, in_w, in_c) NHWC -> logits (N, nclasses). ctx->training selects batch statistics
 * (and running-stat updates) in BN and active dropout. Returns NULL with the error set
 * (QAT_ERR_SHAPE) when x does not have the model's input shape. */
qat_tensor *qat_model_forward(qat_model *m, qat_ctx *ctx, qat_tensor *x);

void qat_model_zero_grad(qat_model *m);
/* 0 freezes every BN layer's running statistics (freeze-bn), 1 resumes updates. */
void qat_model_set_bn_update(qat_model *m, int update);

int qat_model_num_layers(const qat_model *m);
const qat_layer *qat_model_layer(const qat_model *m, int i);
/* Segment index of the parameter called `name`, or -1. */
int qat_model_find_param(const qat_model *m, const char *name);
/* Buffer segment index of `name` (e.g. "features.0.1.running_var"), or -1. */
int qat_model_find_buffer(const qat_model *m, const char *name);

/* A table of layers (name, op, output shape, params, MACs) and totals, written like snprintf:
 * at most cap bytes including the NUL; returns the length the whole table needs. */
size_t qat_model_summary(const qat_model *m, char *buf, size_t cap);

#endif
