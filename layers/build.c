/* Records from a spec (qat_layers_from_spec, layers/layer.h): the stem, the blocks, the head,
 * the pool and the classifier expanded into conv_bn_act / add / global_avgpool / dropout /
 * linear records with their inputs and attributes, named as the PyTorch peer names its
 * modules. Each record gets its shape, MACs and parameter count from its kind's descriptor.
 * docs/model-spec.md says what a spec's lines expand into. */
#include "layer.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHANNEL_DIVISOR 8          /* torchvision's round_nearest */
#define MAX_CHANNELS 65536
#define MAX_PARAMS (INT64_C(1) << 31)

typedef struct {
    const qat_spec *spec;
    qat_layer *layers;
    int nlayers, cap;
    int h, w, c;              /* shape of the last layer's output */
    qat_layer_store store;    /* counting: the storage totals */
} builder;

static qat_status build_fail(const builder *b, qat_status s, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static qat_status build_fail(const builder *b, qat_status s, int line, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qat_fail(s, "%s:%d: %s", b->spec->source, line, msg);
}

/* A record of `kind` reading the last layer's output (a chain unless told otherwise; -1 is the
 * model input), its input shape that output's. */
static qat_layer *new_layer(builder *b, qat_layer_kind kind, int stage) {
    if (b->nlayers == b->cap) {
        int cap = b->cap ? 2 * b->cap : 32;
        qat_layer *nl = realloc(b->layers, (size_t)cap * sizeof *nl);
        if (!nl) return NULL;
        b->layers = nl;
        b->cap = cap;
    }
    qat_layer *L = &b->layers[b->nlayers];
    memset(L, 0, sizeof *L);
    L->kind = kind;
    L->stage = stage;
    L->nin = 1;
    L->in[0] = b->nlayers - 1;
    for (int j = 1; j < QAT_LAYER_MAX_IN; j++) L->in[j] = -1;
    L->in_h = L->out_h = b->h;
    L->in_w = L->out_w = b->w;
    L->in_c = L->out_c = b->c;
    b->nlayers++;
    return L;
}

#define NEW_LAYER(L, b, kind, stage)                                                      \
    do {                                                                                  \
        if (!((L) = new_layer((b), (kind), (stage))))                                     \
            return qat_fail(QAT_ERR_NOMEM, "%s: out of memory building model",           \
                            (b)->spec->source);                                           \
    } while (0)

/* Completes a record whose attributes are set: its kind infers the output shape and MACs and
 * declares its storage (counted here: nparams), and its output becomes the running shape. */
static qat_status finish(builder *b, qat_layer *L, int line) {
    const qat_layer_desc *d = qat_layer_kinds[L->kind];
    d->infer(L);
    const int64_t before = b->store.nparams;
    b->store.layer = (int)(L - b->layers);
    b->store.prefix = L->name;
    if (d->storage) d->storage(L, &b->store);
    L->nparams = b->store.nparams - before;
    b->h = L->out_h;
    b->w = L->out_w;
    b->c = L->out_c;
    if (b->store.nparams > MAX_PARAMS)
        return build_fail(b, QAT_ERR_SHAPE, line, "model too large (more than %lld parameters)",
                          (long long)MAX_PARAMS);
    return QAT_OK;
}

/* An activation record (layers/act.c) on the last layer's output. */
static qat_status add_act(builder *b, int stage, int line, const char *name, qat_act act) {
    qat_layer *L;
    NEW_LAYER(L, b, QAT_LAYER_ACT, stage);
    snprintf(L->name, sizeof L->name, "%s", name);
    L->act = act;
    return finish(b, L, line);
}

/* One conv + BN + act record reading the last layer's output (+ an act record for hardswish
 * and hardsigmoid). */
static qat_status add_conv(builder *b, int stage, int line, const char *name, qat_conv_role role,
                           int cout, int k, int stride, int depthwise, qat_act act) {
    if (b->h < stride || b->w < stride)
        return build_fail(b, QAT_ERR_SHAPE, line,
                          "%s: stride %d needs a spatial size of at least %dx%d, got %dx%d "
                          "(too many strided stages for this input size)",
                          name, stride, stride, stride, b->h, b->w);
    if (cout > MAX_CHANNELS || (int64_t)b->c > MAX_CHANNELS)
        return build_fail(b, QAT_ERR_SHAPE, line, "%s: %d channels (more than %d)", name,
                          cout > b->c ? cout : b->c, MAX_CHANNELS);
    qat_layer *L;
    NEW_LAYER(L, b, QAT_LAYER_CONV_BN_ACT, stage);
    snprintf(L->name, sizeof L->name, "%s", name);
    L->role = role;
    L->k = k;
    L->stride = stride;
    L->pad = k / 2;
    L->groups = depthwise ? b->c : 1;
    /* hardswish / hardsigmoid: a record of their own after the conv (layers/act.c), named as
     * torchvision's Conv2dNormActivation names its activation (index 2 after conv, BN) */
    const int table_act = qat_act_is_table(act);
    L->act = table_act ? QAT_ACT_NONE : act;
    L->out_c = cout;
    qat_status s = finish(b, L, line);
    if (s || !table_act) return s;
    char an[QAT_LAYER_NAME_MAX];
    snprintf(an, sizeof an, "%s.2", name);
    return add_act(b, stage, line, an, act);
}

/* squeeze-and-excite on the last layer's output (N, H, W, C) (torchvision SqueezeExcitation):
 * global average pool, fc1 to `squeeze` channels + ReLU, fc2 back to C, hardsigmoid, and the
 * feature map times that gate. Records "<name>.avgpool", ".fc1", ".fc2", ".hardsigmoid", ".mul". */
static qat_status add_se(builder *b, int stage, int line, const char *name, int squeeze) {
    const int src = b->nlayers - 1, h = b->h, w = b->w, c = b->c;
    qat_layer *L;
    qat_status s;
    NEW_LAYER(L, b, QAT_LAYER_GLOBAL_AVGPOOL, stage);
    snprintf(L->name, sizeof L->name, "%.32s.avgpool", name);
    if ((s = finish(b, L, line))) return s;
    const int outs[2] = {squeeze, c};
    const qat_act acts[2] = {QAT_ACT_RELU, QAT_ACT_NONE};
    for (int j = 0; j < 2; j++) {
        NEW_LAYER(L, b, QAT_LAYER_FC, stage);
        snprintf(L->name, sizeof L->name, "%.32s.fc%d", name, j + 1);
        L->out_c = outs[j];
        L->act = acts[j];
        if ((s = finish(b, L, line))) return s;
    }
    char an[QAT_LAYER_NAME_MAX];
    snprintf(an, sizeof an, "%.32s.hardsigmoid", name);
    if ((s = add_act(b, stage, line, an, QAT_ACT_HARDSIGMOID))) return s;
    b->h = h, b->w = w, b->c = c; /* the mul reads the feature map */
    NEW_LAYER(L, b, QAT_LAYER_CHANNEL_MUL, stage);
    snprintf(L->name, sizeof L->name, "%.32s.mul", name);
    L->nin = 2;
    L->in[0] = src;
    L->in[1] = b->nlayers - 2;
    return finish(b, L, line);
}

static qat_status add_stage(builder *b, int si, float width) {
    const qat_spec_stage *st = &b->spec->stages[si];
    char name[QAT_LAYER_NAME_MAX];
    /* features.<i> as in PyTorch: the stem is 0, then one index per block repeat, then the
     * head; count the repeats of the earlier stages. */
    int feature = 0;
    for (int j = 0; j < si; j++) {
        const qat_spec_stage *e = &b->spec->stages[j];
        feature += e->kind == QAT_STAGE_IR || e->kind == QAT_STAGE_DS || e->kind == QAT_STAGE_V3 ? e->n : 1;
    }
    qat_status s;
    switch (st->kind) {
    case QAT_STAGE_STEM:
    case QAT_STAGE_HEAD: {
        /* torchvision keeps the last conv at full width when width < 1. */
        double scale = st->kind == QAT_STAGE_HEAD && width < 1.0f ? 1.0 : (double)width;
        int cout = qat_make_divisible(st->c * scale, CHANNEL_DIVISOR);
        snprintf(name, sizeof name, "features.%d", feature);
        return add_conv(b, si, st->line, name, st->kind == QAT_STAGE_STEM ? QAT_CONV_STEM
                                                                            : QAT_CONV_HEAD,
                        cout, st->k, st->s, 0, st->act);
    }
    case QAT_STAGE_IR:
    case QAT_STAGE_DS: {
        int cout = qat_make_divisible(st->c * (double)width, CHANNEL_DIVISOR);
        for (int r = 0; r < st->n; r++, feature++) {
            int stride = r == 0 ? st->s : 1, cin = b->c, block_input = b->nlayers - 1, part = 0;
            if (st->kind == QAT_STAGE_IR) {
                int64_t hidden = (int64_t)cin * st->t;
                if (hidden > MAX_CHANNELS)
                    return build_fail(b, QAT_ERR_SHAPE, st->line,
                                      "block ir: expanded width %lld (more than %d)",
                                      (long long)hidden, MAX_CHANNELS);
                if (st->t != 1) {
                    snprintf(name, sizeof name, "features.%d.body.%d", feature, part++);
                    if ((s = add_conv(b, si, st->line, name, QAT_CONV_EXPAND, (int)hidden, 1, 1,
                                      0, st->act)))
                        return s;
                }
                snprintf(name, sizeof name, "features.%d.body.%d", feature, part++);
                if ((s = add_conv(b, si, st->line, name, QAT_CONV_DW, (int)hidden, st->k, stride,
                                  1, st->act)))
                    return s;
                snprintf(name, sizeof name, "features.%d.body.%d", feature, part++);
                if ((s = add_conv(b, si, st->line, name, QAT_CONV_PROJECT, cout, 1, 1, 0,
                                  QAT_ACT_NONE)))
                    return s;
                if (stride == 1 && cin == cout) {
                    qat_layer *L;
                    NEW_LAYER(L, b, QAT_LAYER_ADD, si);
                    snprintf(L->name, sizeof L->name, "features.%d.add", feature);
                    L->nin = 2;
                    L->in[1] = block_input;
                    if ((s = finish(b, L, st->line))) return s;
                }
            } else {
                snprintf(name, sizeof name, "features.%d.body.0", feature);
                if ((s = add_conv(b, si, st->line, name, QAT_CONV_DW, cin, st->k, stride, 1,
                                  st->act)))
                    return s;
                snprintf(name, sizeof name, "features.%d.body.1", feature);
                if ((s = add_conv(b, si, st->line, name, QAT_CONV_PW, cout, 1, 1, 0, st->act)))
                    return s;
            }
        }
        return QAT_OK;
    }
    case QAT_STAGE_V3: {
        /* torchvision's InvertedResidual of MobileNetV3: expand (when e != in), depthwise k,
         * SE, project, residual; channels scaled with _make_divisible(c * width, 8) */
        const int cout = qat_make_divisible(st->c * (double)width, CHANNEL_DIVISOR);
        const int hidden = qat_make_divisible(st->e * (double)width, CHANNEL_DIVISOR);
        if (hidden > MAX_CHANNELS)
            return build_fail(b, QAT_ERR_SHAPE, st->line, "block v3: expanded width %d (more than %d)",
                              hidden, MAX_CHANNELS);
        for (int r = 0; r < st->n; r++, feature++) {
            int stride = r == 0 ? st->s : 1, cin = b->c, block_input = b->nlayers - 1, part = 0;
            if (hidden != cin) {
                snprintf(name, sizeof name, "features.%d.block.%d", feature, part++);
                if ((s = add_conv(b, si, st->line, name, QAT_CONV_EXPAND, hidden, 1, 1, 0, st->act)))
                    return s;
            }
            snprintf(name, sizeof name, "features.%d.block.%d", feature, part++);
            if ((s = add_conv(b, si, st->line, name, QAT_CONV_DW, hidden, st->k, stride, 1, st->act)))
                return s;
            if (st->se) {
                snprintf(name, sizeof name, "features.%d.block.%d", feature, part++);
                if ((s = add_se(b, si, st->line, name, qat_make_divisible(hidden / 4, CHANNEL_DIVISOR))))
                    return s;
            }
            snprintf(name, sizeof name, "features.%d.block.%d", feature, part++);
            if ((s = add_conv(b, si, st->line, name, QAT_CONV_PROJECT, cout, 1, 1, 0, QAT_ACT_NONE)))
                return s;
            if (stride == 1 && cin == cout) {
                qat_layer *L;
                NEW_LAYER(L, b, QAT_LAYER_ADD, si);
                snprintf(L->name, sizeof L->name, "features.%d.add", feature);
                L->nin = 2;
                L->in[1] = block_input;
                if ((s = finish(b, L, st->line))) return s;
            }
        }
        return QAT_OK;
    }
    default:
        QAT_ASSERT(0);
    }
    return QAT_OK;
}

static qat_status add_classifier(builder *b, int nclasses) {
    const int line = b->spec->classifier_line;
    qat_layer *L;
    qat_status s;
    NEW_LAYER(L, b, QAT_LAYER_GLOBAL_AVGPOOL, -1);
    snprintf(L->name, sizeof L->name, "pool");
    if ((s = finish(b, L, line))) return s;
    if (b->spec->dropout > 0) {
        NEW_LAYER(L, b, QAT_LAYER_DROPOUT, -1);
        snprintf(L->name, sizeof L->name, "dropout");
        L->dropout = b->spec->dropout;
        if ((s = finish(b, L, line))) return s;
    }
    NEW_LAYER(L, b, QAT_LAYER_LINEAR, -1);
    snprintf(L->name, sizeof L->name, "fc");
    L->out_c = nclasses;
    return finish(b, L, line);
}

/* The general form: one node (layer line) as one record (two for a conv with a table
 * activation), reading the records its inputs name. rec[] maps a node to the record holding its
 * output. The width multiplier does not apply: channel counts are written out. */
static qat_status add_node(builder *b, int si, int *rec, char *vec, int in_h, int in_w, int in_c,
                           int nclasses) {
    const qat_spec_stage *st = &b->spec->stages[si];
    const int line = st->line, src = st->in[0] < 0 ? -1 : rec[st->in[0]];
    const qat_layer *P = src < 0 ? NULL : &b->layers[src];
    b->h = P ? P->out_h : in_h, b->w = P ? P->out_w : in_w, b->c = P ? P->out_c : in_c;
    /* (N, C) rather than (N, H, W, C): pool and linear outputs; dropout passes its input's on */
    const int vector = st->in[0] >= 0 && vec[st->in[0]];
    vec[si] = st->op == QAT_NODE_AVGPOOL || st->op == QAT_NODE_LINEAR || st->op == QAT_NODE_FC ||
              ((st->op == QAT_NODE_DROPOUT || st->op == QAT_NODE_ACT) && vector);
    qat_layer *L;
    qat_status s;
    switch (st->op) {
    case QAT_NODE_CONV: {
        if (vector)
            return build_fail(b, QAT_ERR_SHAPE, line, "layer %s: conv needs a (H, W, C) input, not a vector",
                              st->node);
        if (b->c % st->g || st->c % st->g)
            return build_fail(b, QAT_ERR_SHAPE, line, "layer %s: groups g=%d must divide the %d input "
                              "and %d output channels", st->node, st->g, b->c, st->c);
        if (b->h + 2 * st->pad < st->k || b->w + 2 * st->pad < st->k)
            return build_fail(b, QAT_ERR_SHAPE, line, "layer %s: kernel %d does not fit a %dx%d input "
                              "padded by %d", st->node, st->k, b->h, b->w, st->pad);
        NEW_LAYER(L, b, QAT_LAYER_CONV_BN_ACT, si);
        L->in[0] = src;
        snprintf(L->name, sizeof L->name, "%s", st->node);
        L->role = st->g > 1 && st->g == b->c && st->c == b->c ? QAT_CONV_DW
                : src < 0 ? QAT_CONV_STEM : st->k == 1 ? QAT_CONV_PW : QAT_CONV_NONE;
        L->k = st->k, L->stride = st->s, L->pad = st->pad, L->groups = st->g;
        L->conv_bias = !st->bn;
        const int table_act = qat_act_is_table(st->act);
        L->act = table_act ? QAT_ACT_NONE : st->act;
        L->out_c = st->c;
        if ((s = finish(b, L, line)) || !table_act) break;
        char an[QAT_LAYER_NAME_MAX];
        snprintf(an, sizeof an, "%.45s.2", st->node);
        s = add_act(b, si, line, an, st->act);
        break;
    }
    case QAT_NODE_ADD: {
        const int src2 = st->in[1] < 0 ? -1 : rec[st->in[1]];
        const qat_layer *Q = src2 < 0 ? NULL : &b->layers[src2];
        const int h2 = Q ? Q->out_h : in_h, w2 = Q ? Q->out_w : in_w, c2 = Q ? Q->out_c : in_c;
        if (h2 != b->h || w2 != b->w || c2 != b->c)
            return build_fail(b, QAT_ERR_SHAPE, line, "layer %s: add of %dx%dx%d and %dx%dx%d (the shapes "
                              "must be equal)", st->node, b->h, b->w, b->c, h2, w2, c2);
        if (vector || (st->in[1] >= 0 && vec[st->in[1]]))
            return build_fail(b, QAT_ERR_SHAPE, line, "layer %s: add needs (H, W, C) inputs", st->node);
        NEW_LAYER(L, b, QAT_LAYER_ADD, si);
        L->nin = 2, L->in[0] = src, L->in[1] = src2;
        snprintf(L->name, sizeof L->name, "%s", st->node);
        s = finish(b, L, line);
        break;
    }
    case QAT_NODE_MUL: {
        /* squeeze-and-excite's rescale: the feature map times a per-channel gate (N, C) */
        const int src2 = st->in[1] < 0 ? -1 : rec[st->in[1]];
        const int c2 = src2 < 0 ? in_c : b->layers[src2].out_c;
        if (vector || st->in[1] < 0 || !vec[st->in[1]] || c2 != b->c)
            return build_fail(b, QAT_ERR_SHAPE, line, "layer %s: mul takes a (H, W, C) map and a (C) "
                              "gate of its %d channels, got %s and %s of %d", st->node, b->c,
                              vector ? "a vector" : "a map", st->in[1] >= 0 && vec[st->in[1]] ? "a vector" : "a map", c2);
        NEW_LAYER(L, b, QAT_LAYER_CHANNEL_MUL, si);
        L->nin = 2, L->in[0] = src, L->in[1] = src2;
        snprintf(L->name, sizeof L->name, "%s", st->node);
        s = finish(b, L, line);
        break;
    }
    case QAT_NODE_ACT:
    case QAT_NODE_AVGPOOL:
    case QAT_NODE_DROPOUT:
    case QAT_NODE_LINEAR:
    case QAT_NODE_MAXPOOL:
    case QAT_NODE_AVGPOOL2D:
    case QAT_NODE_FC: {
        static const qat_layer_kind kinds[] = {[QAT_NODE_ACT] = QAT_LAYER_ACT,
                                               [QAT_NODE_AVGPOOL] = QAT_LAYER_GLOBAL_AVGPOOL,
                                               [QAT_NODE_DROPOUT] = QAT_LAYER_DROPOUT,
                                               [QAT_NODE_LINEAR] = QAT_LAYER_LINEAR,
                                               [QAT_NODE_MAXPOOL] = QAT_LAYER_MAXPOOL,
                                               [QAT_NODE_AVGPOOL2D] = QAT_LAYER_AVGPOOL,
                                               [QAT_NODE_FC] = QAT_LAYER_FC};
        const int needs_vector = st->op == QAT_NODE_LINEAR || st->op == QAT_NODE_FC;
        if (needs_vector && !vector)
            return build_fail(b, QAT_ERR_SHAPE, line, "layer %s: %s needs a vector input, got "
                              "%dx%dx%d (pool it first)", st->node, qat_node_op_names[st->op], b->h, b->w, b->c);
        if (!needs_vector && st->op != QAT_NODE_DROPOUT && st->op != QAT_NODE_ACT && vector)
            return build_fail(b, QAT_ERR_SHAPE, line, "layer %s: %s needs a (H, W, C) input", st->node,
                              qat_node_op_names[st->op]);
        if ((st->op == QAT_NODE_MAXPOOL || st->op == QAT_NODE_AVGPOOL2D) &&
            (b->h + 2 * st->pad < st->k || b->w + 2 * st->pad < st->k))
            return build_fail(b, QAT_ERR_SHAPE, line, "layer %s: window %d does not fit a %dx%d input "
                              "padded by %d", st->node, st->k, b->h, b->w, st->pad);
        if (st->op == QAT_NODE_FC && st->act != QAT_ACT_NONE && st->act != QAT_ACT_RELU && st->act != QAT_ACT_RELU6)
            return build_fail(b, QAT_ERR_SHAPE, line, "layer %s: fc takes act=none, relu or relu6 (write "
                              "an act line after it for %s)", st->node, qat_act_names[st->act]);
        if (st->op == QAT_NODE_LINEAR && si == b->spec->nstages - 1 && st->c != nclasses)
            return build_fail(b, QAT_ERR_SHAPE, line, "layer %s: %d outputs, but the data has %d classes",
                              st->node, st->c, nclasses);
        NEW_LAYER(L, b, kinds[st->op], si);
        L->in[0] = src;
        snprintf(L->name, sizeof L->name, "%s", st->node);
        L->act = st->act;
        L->dropout = st->p;
        L->k = st->k, L->stride = st->s, L->pad = st->pad;
        if (needs_vector) L->out_c = st->c;
        s = finish(b, L, line);
        break;
    }
    default: QAT_ASSERT(0); return QAT_OK;
    }
    rec[si] = b->nlayers - 1;
    return s;
}

qat_status qat_layers_from_spec(const qat_spec *spec, float width, int in_h, int in_w, int in_c,
                                int nclasses, qat_layer **out, int *n, qat_layer_store *count) {
    builder b;
    memset(&b, 0, sizeof b);
    b.spec = spec;
    b.h = in_h, b.w = in_w, b.c = in_c;
    qat_status st = QAT_OK;
    if (spec->graph) {
        int *rec = malloc((size_t)spec->nstages * sizeof *rec);
        char *vec = malloc((size_t)spec->nstages);
        if (!rec || !vec) {
            free(rec);
            free(vec);
            return qat_fail(QAT_ERR_NOMEM, "%s: out of memory building model", spec->source);
        }
        for (int i = 0; i < spec->nstages && !st; i++)
            st = add_node(&b, i, rec, vec, in_h, in_w, in_c, nclasses);
        free(rec);
        free(vec);
    } else {
        for (int i = 0; i < spec->nstages && !st; i++) st = add_stage(&b, i, width);
        if (!st) st = add_classifier(&b, nclasses);
    }
    if (st) {
        free(b.layers);
        return st;
    }
    QAT_ASSERT(b.nlayers <= QAT_SPEC_MAX_LAYERS);
    *out = b.layers;
    *n = b.nlayers;
    *count = b.store;
    return QAT_OK;
}
