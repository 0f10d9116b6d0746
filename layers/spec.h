/* Model specs: architectures as data. A spec is a small line-based text (docs/model-spec.md)
 * naming a stem conv, a list of MobileNet blocks, an optional head conv, the pooling and the
 * classifier. Presets ship as layers/presets/<name>.spec (embedded in layers/presets.c).
 *
 *   qat_spec *s;
 *   if (qat_spec_load("mbv2-tiny", &s)) die(qat_last_error());   // or a path to a .spec file
 *   qat_model *m;
 *   if (qat_model_create(s, 0.0f, 28, 28, 1, 10, &m)) die(qat_last_error());
 *   qat_spec_free(s);                                              // the model keeps a copy
 *
 * Errors are QAT_ERR_SPEC with one line "<file>:<line>: <problem>".
 */
#ifndef QAT_SPEC_H
#define QAT_SPEC_H

#include "qat.h"

/* Limits that keep a malformed or hostile spec from asking for absurd models. */
#define QAT_SPEC_MAX_LAYERS 512      /* layer records after expanding repeats (model.h) */
#define QAT_SPEC_MAX_STAGES 128      /* stem + block lines + head */
#define QAT_SPEC_MAX_TEXT (1 << 20)  /* bytes of a spec file */
#define QAT_SPEC_NAME_MAX 64         /* including the terminating NUL */

typedef enum {
    QAT_ACT_NONE = 0,
    QAT_ACT_RELU,
    QAT_ACT_RELU6,
    QAT_ACT_HARDSWISH,
    QAT_ACT_HARDSIGMOID,
    QAT_ACT_SIGMOID,
    QAT_ACT_COUNT
} qat_act;

extern const char *const qat_act_names[QAT_ACT_COUNT]; /* "none", "relu", "relu6", "hardswish", "hardsigmoid", "sigmoid" */

/* An activation whose INT8 form is a lookup table (a record of its own after a conv, layers/act.c)
 * rather than a clamp. */
static inline int qat_act_is_table(qat_act a) {
    return a == QAT_ACT_HARDSWISH || a == QAT_ACT_HARDSIGMOID || a == QAT_ACT_SIGMOID;
}

/* One stage line of the spec, with every key resolved (defaults filled in). */
typedef enum {
    QAT_STAGE_STEM = 0, /* stem conv: k c s act */
    QAT_STAGE_IR,       /* block ir: InvertedResidual (MobileNetV2): t c n s k act */
    QAT_STAGE_DS,       /* block ds: DepthwiseSeparable (MobileNetV1): c n s k act */
    QAT_STAGE_HEAD,     /* head conv: k c s act */
    QAT_STAGE_V3,       /* block v3: MobileNetV3 bottleneck: e c n s k se act */
    QAT_STAGE_NODE,     /* layer <name> <op> in=...: one node of the general form (a DAG) */
    QAT_STAGE_KIND_COUNT
} qat_stage_kind;

/* The ops of the general form's `layer` lines (docs/model-spec.md, "General form"). */
typedef enum {
    QAT_NODE_CONV = 0, /* conv (any k, stride, pad, groups) + BN (bn=1) or + bias (bn=0) + act */
    QAT_NODE_ACT,      /* an activation on its own */
    QAT_NODE_ADD,      /* the sum of two inputs of the same shape */
    QAT_NODE_AVGPOOL,  /* global average pool: (N, H, W, C) -> (N, C) */
    QAT_NODE_DROPOUT,
    QAT_NODE_LINEAR,   /* (N, C) -> (N, c) with bias; the last layer (the classes) */
    QAT_NODE_MAXPOOL,  /* max over k x k windows, stride s, padding pad (-inf) */
    QAT_NODE_AVGPOOL2D,/* mean over k x k windows, stride s, zero padding pad counted */
    QAT_NODE_FC,       /* (N, C) -> (N, c) with bias + act (none, relu): a 1x1 conv on a pooled vector */
    QAT_NODE_MUL,      /* (N, H, W, C) times a per-channel gate (N, C): squeeze-and-excite */
    QAT_NODE_OP_COUNT
} qat_node_op;

extern const char *const qat_node_op_names[QAT_NODE_OP_COUNT];

#define QAT_NODE_MAX_IN 4
#define QAT_NODE_NAME_MAX 48 /* = QAT_NAME_MAX: a node is one layer record of that name */

typedef struct {
    qat_stage_kind kind;
    int line;     /* line in the source text, for messages about this stage */
    int t;        /* expansion factor (ir) */
    int e;        /* expanded channels before the width multiplier (v3) */
    int se;       /* 1: squeeze-and-excite after the depthwise conv (v3) */
    int c;        /* output channels before the width multiplier */
    int n;        /* repeats (blocks) */
    int s;        /* stride of the first repeat */
    int k;        /* kernel size of the spatial conv (odd) */
    qat_act act;
    /* Quantization overrides of this stage's convs (stage 2): */
    int wbits;    /* weight bits 2..8 instead of the qconfig's (0: the qconfig's) */
    int quant;    /* 0: leave these convs in float (no fake-quant; not convertible to INT8) */
    /* The general form (kind QAT_STAGE_NODE): one named layer reading explicit inputs. */
    char node[QAT_NODE_NAME_MAX]; /* its name */
    qat_node_op op;
    int nin;
    int in[QAT_NODE_MAX_IN];      /* index of the producing stage (an earlier node); -1 = input */
    int pad;                      /* conv: zero padding on each side */
    int g;                        /* conv: groups */
    int bn;                       /* conv: 1 BatchNorm after it, 0 a bias instead */
    float p;                      /* dropout probability */
} qat_spec_stage;

typedef enum { QAT_POOL_AVG = 0, QAT_POOL_COUNT } qat_pool_kind;

typedef struct qat_spec qat_spec;
struct qat_spec {
    char name[QAT_SPEC_NAME_MAX];
    char *source;              /* file name used in messages ("<spec>" when none was given) */
    char *text;                /* the original text, as given */
    char *canonical;           /* every key explicit, defaults filled in (see qat_spec_text) */
    float width;               /* `width` line; 1 when absent */
    qat_spec_stage *stages;    /* stem first, then blocks in order, then the head if any */
    int nstages;
    int has_head;
    qat_pool_kind pool;
    float dropout;             /* classifier dropout probability, [0, 1) */
    int classifier_line;
    int graph;                 /* 1: the general form (layer lines only; no stem, classifier) */
    int nlines;                /* lines in the text (for messages about the end of the spec) */
};

/* Parses `text`; `source` names it in error messages (may be NULL). */
qat_status qat_spec_parse(const char *text, const char *source, qat_spec **out);
/* A preset name (see qat_spec_preset_name) or a path to a spec file. Preset names win, so a
 * file that happens to be called "mbv2-tiny" in the current directory needs "./mbv2-tiny". */
qat_status qat_spec_load(const char *name_or_path, qat_spec **out);
/* A deep copy (the model keeps one so callers may free theirs). */
qat_status qat_spec_copy(const qat_spec *s, qat_spec **out);
void qat_spec_free(qat_spec *s);

/* Canonical text: one line per stage with every key written out, defaults included, so a
 * checkpoint that stores it rebuilds the same model even if a default changes later.
 * qat_spec_parse(qat_spec_text(s)) yields a spec with the same canonical text. */
const char *qat_spec_text(const qat_spec *s);
const char *qat_spec_name(const qat_spec *s);

/* Presets compiled into the library (layers/presets.c, generated from layers/presets/ by
 * scripts/embed_presets.sh). Index from 0 to qat_spec_num_presets()-1. */
int qat_spec_num_presets(void);
const char *qat_spec_preset_name(int i);
const char *qat_spec_preset_text(int i);
/* The text of a preset by name, or NULL. */
const char *qat_spec_preset(const char *name);

/* PyTorch MobileNet's _make_divisible(v, divisor): the multiple of `divisor` nearest to v
 * (ties up), at least `divisor`, and never more than 10% below v. */
int qat_make_divisible(double v, int divisor);

#endif
