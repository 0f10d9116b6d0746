/* A model built from a spec: the architecture is a flat array of layer records that forward
 * walks, and all learnable parameters live in one allocation (grads in another), llm.c style.
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
 * Layer records are what later stages transform: stage 2 inserts fake-quant after activations,
 * on adds and on the classifier and simulates BN folding per QAT_LAYER_CONV_BN_ACT record;
 * stage 3 turns each record into one INT8 op.
 *
 * Names follow the PyTorch peer (torch_peer.py, class MBV2Tiny): the parameter and buffer names
 * are its state_dict keys ("features.3.body.1.0.weight" is block 3's depthwise conv), in the
 * order of model.parameters(). Conv weights are OHWI here, OIHW in PyTorch.
 */
#ifndef QAT_MODEL_H
#define QAT_MODEL_H

#include "ops.h"
#include "optim.h"
#include "spec.h"

typedef enum {
    QAT_LAYER_CONV_BN_ACT = 0, /* conv (no bias) + BatchNorm + activation (or none) */
    QAT_LAYER_ADD,             /* residual: output of `input` + output of `skip` */
    QAT_LAYER_GLOBAL_AVGPOOL,  /* (N, H, W, C) -> (N, C) */
    QAT_LAYER_DROPOUT,         /* only present when the classifier's dropout > 0 */
    QAT_LAYER_LINEAR,          /* the classifier, with bias */
    QAT_LAYER_KIND_COUNT
} qat_layer_kind;

extern const char *const qat_layer_kind_names[QAT_LAYER_KIND_COUNT];

/* What a conv is for (summaries, and per-role choices in later stages). */
typedef enum {
    QAT_CONV_NONE = 0, /* not a conv layer */
    QAT_CONV_STEM,
    QAT_CONV_EXPAND,   /* ir: 1x1 in -> in*t */
    QAT_CONV_DW,       /* depthwise k x k (groups == channels) */
    QAT_CONV_PROJECT,  /* ir: 1x1 hidden -> out, no activation */
    QAT_CONV_PW,       /* ds: 1x1 pointwise */
    QAT_CONV_HEAD,
    QAT_CONV_ROLE_COUNT
} qat_conv_role;

extern const char *const qat_conv_role_names[QAT_CONV_ROLE_COUNT];

#define QAT_LAYER_NAME_MAX 48
#define QAT_PARAM_NAME_MAX 64

typedef struct {
    qat_layer_kind kind;
    char name[QAT_LAYER_NAME_MAX]; /* module path, e.g. "features.3.body.1"; "pool", "fc" */
    int input;                     /* layer whose output this reads; -1 = the model input */
    int skip;                      /* ADD: the other operand (layer index, -1 = model input) */
    int stage;                     /* index into spec->stages, -1 for pool/dropout/linear */
    int in_h, in_w, in_c;          /* per-image input shape */
    int out_h, out_w, out_c;       /* per-image output shape (1x1xC after pooling) */
    /* QAT_LAYER_CONV_BN_ACT */
    qat_conv_role role;
    int k, stride, pad, groups;
    qat_act act;
    qat_tensor weight;             /* conv (Cout, K, K, Cin/groups) or linear (out, in) */
    qat_tensor gamma, beta;        /* BN scale and shift (Cout) */
    qat_bn_state bn;               /* running mean/var point into model->buffers */
    /* QAT_LAYER_LINEAR */
    qat_tensor bias;               /* (out) */
    /* QAT_LAYER_DROPOUT */
    float dropout;
    int64_t nparams;               /* learnable parameters of this layer */
    int64_t macs;                  /* multiply-accumulates per image */
} qat_layer;

/* One learnable tensor: m->param_info[i] describes m->segs[i]. */
typedef struct {
    char name[QAT_PARAM_NAME_MAX]; /* PyTorch state_dict key */
    qat_tensor *tensor;            /* persistent tensor in its layer record */
    int layer;
} qat_param_info;

/* One buffer tensor (BN running statistics) inside m->buffers. */
typedef struct {
    char name[QAT_PARAM_NAME_MAX]; /* "features.0.1.running_mean" */
    int64_t offset, numel;
    int layer;
} qat_buffer_info;

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
