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

/* One conv + BN + act record reading the last layer's output. */
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
    L->act = act;
    L->out_c = cout;
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
        feature += e->kind == QAT_STAGE_IR || e->kind == QAT_STAGE_DS ? e->n : 1;
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

qat_status qat_layers_from_spec(const qat_spec *spec, float width, int in_h, int in_w, int in_c,
                                int nclasses, qat_layer **out, int *n, qat_layer_store *count) {
    builder b;
    memset(&b, 0, sizeof b);
    b.spec = spec;
    b.h = in_h, b.w = in_w, b.c = in_c;
    qat_status st = QAT_OK;
    for (int i = 0; i < spec->nstages && !st; i++) st = add_stage(&b, i, width);
    if (!st) st = add_classifier(&b, nclasses);
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
