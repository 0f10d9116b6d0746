/* A layer of a model: one record (a kind, its inputs, attributes and parameters) and, for each
 * kind, one descriptor that knows everything the rest of qat does with it — declare its
 * parameters, build its float graph and its fake-quant graph, say which quantization points it
 * has, convert itself to INT8 layers and describe itself. One file per kind in layers/ (conv,
 * add, pool, dropout, linear), one row per kind in qat_layer_kinds[] (layers/kinds.c). The
 * model (models/) is a DAG of records in execution order and walks them through these rows;
 * adding a kind is a file and a row (docs/architecture.md).
 *
 *   record       kind, name, inputs (producer indices, -1 = the model input), per-image input
 *                and output shapes, attributes (the kind reads the ones it declares), parameters
 *   descriptor   storage  forward  qpoints + forward_fq  int8_check + convert  describe
 *
 * Names follow the PyTorch peer (torch_peer.py, class MBV2Tiny): the parameter and buffer names
 * are its state_dict keys ("features.3.body.1.0.weight" is block 3's depthwise conv), in the
 * order of model.parameters(). Conv weights are OHWI here, OIHW in PyTorch.
 */
#ifndef QAT_LAYER_H
#define QAT_LAYER_H

#include "ops.h"
#include "optim.h"
#include "q8.h"
#include "quant.h"
#include "spec.h"

/* ---- the record ------------------------------------------------------------------------------ */

typedef enum {
    QAT_LAYER_CONV_BN_ACT = 0, /* conv (no bias) + BatchNorm + activation (or none); or
                                * conv + bias + activation when conv_bias is set */
    QAT_LAYER_ADD,             /* residual: the sum of its two inputs */
    QAT_LAYER_GLOBAL_AVGPOOL,  /* (N, H, W, C) -> (N, C) */
    QAT_LAYER_DROPOUT,         /* only present when the classifier's dropout > 0 */
    QAT_LAYER_LINEAR,          /* the classifier, with bias */
    QAT_LAYER_ACT,             /* an activation on its own (hardswish, hardsigmoid): INT8 table */
    QAT_LAYER_FC,              /* (N, C) -> (N, C') with bias + ReLU or none: squeeze-excite's 1x1 convs */
    QAT_LAYER_CHANNEL_MUL,     /* (N, H, W, C) times a per-channel gate (N, C): squeeze-excite */
    QAT_LAYER_MAXPOOL,         /* max over k x k windows (the general form's maxpool) */
    QAT_LAYER_AVGPOOL,         /* mean over k x k windows, zero padding counted (avgpool2d) */
    QAT_LAYER_KIND_COUNT
} qat_layer_kind;

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

#define QAT_LAYER_NAME_MAX QAT_NAME_MAX
#define QAT_PARAM_NAME_MAX 64
#define QAT_LAYER_MAX_IN 4

typedef struct {
    qat_layer_kind kind;
    char name[QAT_LAYER_NAME_MAX]; /* module path, e.g. "features.3.body.1"; "pool", "fc" */
    int nin;                       /* inputs used */
    int in[QAT_LAYER_MAX_IN];      /* the layer producing each input; -1 = the model input */
    int stage;                     /* index into spec->stages, -1 for pool/dropout/linear */
    int in_h, in_w, in_c;          /* per-image shape of input 0 */
    int out_h, out_w, out_c;       /* per-image output shape (1x1xC after pooling) */
    /* attributes */
    qat_conv_role role;            /* conv */
    int k, stride, pad, groups;    /* conv, maxpool, avgpool: square kernel / window,
                                    * OH = (H + 2 pad - k) / stride + 1 */
    int conv_bias;                 /* conv: a bias and no BN (the general form's bn=0, e.g. an
                                    * imported conv that had its BN folded in) */
    qat_act act;                   /* conv: the activation after BN; act, fc: the activation */
    float dropout;                 /* dropout: drop probability */
    /* parameters and state (declared by the kind's storage; owned by the model's arrays) */
    qat_tensor weight;             /* conv (Cout, K, K, Cin/groups) or linear, fc (out, in) */
    qat_tensor gamma, beta;        /* BN scale and shift (Cout) */
    qat_bn_state bn;               /* running mean/var point into model->buffers */
    qat_tensor bias;               /* linear, fc, conv with conv_bias (out) */
    int64_t nparams;               /* learnable parameters of this layer */
    int64_t macs;                  /* multiply-accumulates per image */
} qat_layer;

/* ---- storage: where a kind declares its parameters and buffers ------------------------------- */

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

/* The model's storage as a kind's declarations fill it: first counted (arrays NULL: only the
 * totals grow), then placed (the totals are the offsets where the next tensor goes). */
typedef struct {
    int layer;                     /* the record declaring */
    const char *prefix;            /* its name: parameter names are prefix + suffix */
    float *params, *grads, *buffers;
    qat_param_seg *segs;
    qat_param_info *param_info;
    qat_buffer_info *buffer_info;
    int64_t nparams, nbuffers;
    int nsegs, nbuffer_segs;
} qat_layer_store;

/* A parameter tensor of ndim/shape at the next offset; decay: weight decay applies. */
void qat_store_param(qat_layer_store *s, qat_tensor *t, const char *suffix, int ndim,
                     const int *shape, int decay);
/* A buffer of n floats; NULL while counting. */
float *qat_store_buffer(qat_layer_store *s, const char *suffix, int64_t n);

/* ---- the fake-quant graph: what a layer sees of the PTQ/QAT model -------------------------- */

/* Filled per layer by the model's fake-quant forward (models/qmodel.c). */
typedef struct {
    qat_qpoint *weight, *out;      /* this layer's points (NULL when it has none) */
    qat_qpoint *in;                /* the point holding input 0's value (the folded bias's step) */
    int observe;                   /* observers may move (training or calibrating, not frozen) */
    int act_paused;                /* activation observers stay (BN re-estimation) */
    int lsq;                       /* the learned quantizers are in use */
    int fold_bn;                   /* 1: fold BN when the weight is fake-quantized; 2 always; 0 never */
    int bn_frozen;                 /* BN uses (and keeps) its running statistics */
    int quantized;                 /* set by the layer: it applied its output point itself */
} qat_qforward;

/* x fake-quantized at point p as the forward uses it (the learned quantizer when f->lsq); a
 * weight point's observer is reset first, so its range is that of the weights now. */
qat_tensor *qat_qpoint_apply(qat_ctx *ctx, qat_tensor *x, qat_qpoint *p, const qat_qforward *f);
/* Point p's scales as the forward uses them now (arena memory when learned). */
const float *qat_qpoint_scales(qat_ctx *ctx, qat_qpoint *p, int lsq);
/* The int32 bias b as the INT8 model stores it: round(b / (sx * sw_c)) in accumulator units
 * (qat_bias_quantize, what convert computes), times sx * sw_c, with sx input 0's scale (f->in) and
 * sw the weight point's; the gradient passes straight through (b + a constant correction).
 * Without it the fake-quant graph would differ from the INT8 arithmetic by up to mult/2 output
 * steps per layer. b itself when the input is not quantized. */
qat_tensor *qat_bias_fq(qat_ctx *ctx, const qat_qforward *f, qat_tensor *b);
/* A constant (no-grad) tensor of `shape` whose element at channel c (dim `axis`, 0 or last) is
 * v[c]. */
qat_tensor *qat_channel_const(qat_ctx *ctx, int ndim, const int *shape, int axis, const float *v,
                              int C);
/* act after x as separate ops (ReLU, ReLU6, hardswish; none: x). */
qat_tensor *qat_activation(qat_ctx *ctx, qat_tensor *x, qat_act act);

/* ---- convert: what a layer sees of its INT8 form --------------------------------------------- */

/* The qparams of one point as convert reads them (per channel for per-channel weights). */
typedef struct {
    float *scale;
    int32_t *zp;
    int n;
} qat_qparams;

typedef struct {
    const qat_qparams *w, *out;    /* the layer's weight and output points (NULL: none) */
    const qat_qscheme *wscheme;    /* the weight point's scheme (its bits and range) */
    int32_t act_qmin, act_qmax;    /* the activations' integer range (clamps) */
} qat_qconvert;

/* Output qparams of Y and the clamp of act (ReLU: [q(0), qmax], ReLU6: [q(0), q(6)]). */
void qat_convert_output(qat_q8_layer *Y, const qat_qconvert *c, qat_act act);
/* Weight codes of w (C = Y->out_c rows; folded with s[c] first, s NULL: as they are), the
 * weight scales, and the multipliers: conv (s given) Y->sx * sw / Y->sy requantizes, linear
 * Y->sx * sw dequantizes. */
qat_status qat_convert_weights(qat_q8_layer *Y, const qat_qconvert *c, const char *name,
                               const qat_tensor *w, const float *s);
/* The activation code of a float layer (FCONV's act). */
qat_q8_act qat_q8_act_of(qat_act act);
/* A copy of n floats (malloc), NULL when out of memory. */
float *qat_floats_dup(const float *v, int64_t n);

/* The INT8 table of act for input qparams (sx, zx) and output qparams (sy, zy), codes clamped to
 * [qmin, qmax]: entry q = qat_quantize(act(qat_dequantize(q, sx, zx)), 1 / sy, zy, qmin, qmax),
 * the activation evaluated as the autograd op evaluates it (layers/act.c). */
void qat_act_table(uint8_t table[256], qat_act act, float sx, int32_t zx, float sy, int32_t zy,
                   int32_t qmin, int32_t qmax);
/* v as a separately rounded float (no FMA contraction with what follows), as the separate
 * qat_mul / qat_add nodes of the fake-quant graph round it. */
static inline float qat_rounded(float v) {
    __asm__("" : "+x"(v));
    return v;
}

/* ---- the descriptor ----------------------------------------------------------------------------- */

enum { QAT_QP_WEIGHT = 1, QAT_QP_OUT = 2 }; /* qat_layer_desc.qpoints */

typedef struct qat_layer_desc {
    const char *name;              /* "conv_bn_act", ...: summaries and messages */
    int vector_output;             /* the output is (N, C): summaries print C */
    /* Output shape and MACs per image from input 0's shape and the attributes. */
    void (*infer)(qat_layer *L);
    /* Declares the parameters and buffers in model.parameters() order (NULL: none); the
     * checkpoint layout follows from these declarations. */
    void (*storage)(qat_layer *L, qat_layer_store *s);
    /* The deterministic state (BN gamma 1, running var 1; parameters start at 0), then the
     * seeded initialisation drawn from rng (NULL: none). */
    void (*reset)(qat_layer *L);
    void (*init)(qat_layer *L, qat_rng *rng);
    /* The float graph: in[j] is the output of input j. */
    qat_tensor *(*forward)(qat_layer *L, qat_ctx *ctx, qat_tensor *const *in);
    /* Quantization points (QAT_QP_* bits) and the fake-quant graph (NULL: forward, then the
     * output point applied by the model). */
    unsigned qpoints;
    qat_tensor *(*forward_fq)(qat_layer *L, qat_qforward *f, qat_ctx *ctx, qat_tensor *const *in);
    /* 0 with the reason when the layer has no INT8 form (NULL: it has one). */
    int (*int8_check)(const qat_layer *L, char *why, size_t cap);
    /* Fills the kind-specific part of its INT8 layer Y (input operands, shapes and input
     * qparams are set); NULL: the layer passes its input through at inference (dropout). */
    qat_status (*convert)(const qat_layer *L, const qat_qconvert *c, qat_q8_layer *Y);
    /* The layer left in float by a per-layer qconfig (its weight point keep_float): fills its
     * float INT8-model layer Y (FCONV, FLINEAR; input operand, shapes set, sx/zx 0, output
     * qparams 0). NULL: the kind has no float form (a layer without weights never needs one). */
    qat_status (*convert_float)(const qat_layer *L, qat_q8_layer *Y);
    /* The "op" column of the summary (NULL: the kind's name). */
    void (*describe)(const qat_layer *L, char *buf, size_t cap);
} qat_layer_desc;

extern const qat_layer_desc *const qat_layer_kinds[QAT_LAYER_KIND_COUNT];

/* The descriptors, one per file. */
extern const qat_layer_desc qat_layer_conv_bn_act, qat_layer_add, qat_layer_global_avgpool,
    qat_layer_dropout, qat_layer_linear, qat_layer_act, qat_layer_fc, qat_layer_channel_mul,
    qat_layer_maxpool, qat_layer_avgpool;

/* The op a layer is, for reports: its conv role ("dw", "project", ...) or its kind's name. */
const char *qat_layer_op_name(const qat_layer *L);

/* ---- building records from a spec (layers/build.c) ------------------------------------------- */

/* The records of spec at width `width` for (in_h, in_w, in_c) inputs and nclasses classes, with
 * shapes, attributes, parameter counts and MACs (not storage yet): *out (malloc'd, *n records)
 * and the storage totals in *count. Errors name the spec line (QAT_ERR_SHAPE, QAT_ERR_NOMEM). */
qat_status qat_layers_from_spec(const qat_spec *spec, float width, int in_h, int in_w, int in_c,
                                int nclasses, qat_layer **out, int *n, qat_layer_store *count);

#endif
