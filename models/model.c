/* Building a model from a spec, its initialisation, forward, and the summary table.
 *
 * Creation runs in two passes: the first expands the spec's stages into layer records with
 * shapes, parameter counts and offsets; the second allocates the parameter, gradient and buffer
 * arrays once and points every record's tensors into them. The records are never moved after
 * that, so param_info[i].tensor stays valid for the model's life.
 */
#include "model.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *const qat_layer_kind_names[QAT_LAYER_KIND_COUNT] = {
    "conv_bn_act", "add", "global_avgpool", "dropout", "linear",
};
_Static_assert(sizeof qat_layer_kind_names / sizeof qat_layer_kind_names[0] ==
                   QAT_LAYER_KIND_COUNT, "layer kind names");

const char *const qat_conv_role_names[QAT_CONV_ROLE_COUNT] = {
    "none", "stem", "expand", "dw", "project", "pw", "head",
};
_Static_assert(sizeof qat_conv_role_names / sizeof qat_conv_role_names[0] ==
                   QAT_CONV_ROLE_COUNT, "conv role names");

#define CHANNEL_DIVISOR 8          /* torchvision's round_nearest */
#define MAX_CHANNELS 65536
#define MAX_INPUT_SIZE 4096
#define MAX_CLASSES 100000
#define MAX_PARAMS (INT64_C(1) << 31)
#define BN_MOMENTUM 0.1f           /* PyTorch BatchNorm2d defaults */
#define BN_EPS 1e-5f

/* ---- pass 1: layer records ------------------------------------------------------------- */

typedef struct {
    const qat_spec *spec;
    qat_layer *layers;
    int nlayers, cap;
    int h, w, c;       /* shape of the last layer's output */
    int64_t nparams, nbuffers;
    int nsegs, nbuffer_segs;
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
    L->input = b->nlayers - 1; /* a chain unless told otherwise; -1 is the model input */
    L->skip = -1;
    L->in_h = b->h;
    L->in_w = b->w;
    L->in_c = b->c;
    L->out_h = b->h;
    L->out_w = b->w;
    L->out_c = b->c;
    b->nlayers++;
    return L;
}

#define NEW_LAYER(L, b, kind, stage)                                                      \
    do {                                                                                  \
        if (!((L) = new_layer((b), (kind), (stage))))                                     \
            return qat_fail(QAT_ERR_NOMEM, "%s: out of memory building model",           \
                            (b)->spec->source);                                           \
    } while (0)

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
    L->out_h = (b->h + 2 * L->pad - k) / stride + 1;
    L->out_w = (b->w + 2 * L->pad - k) / stride + 1;
    L->out_c = cout;
    int64_t cin_g = b->c / L->groups, wn = (int64_t)cout * k * k * cin_g;
    L->nparams = wn + 2 * (int64_t)cout;
    L->macs = (int64_t)L->out_h * L->out_w * wn;
    b->nparams += L->nparams;
    b->nsegs += 3;
    b->nbuffers += 2 * (int64_t)cout;
    b->nbuffer_segs += 2;
    b->h = L->out_h;
    b->w = L->out_w;
    b->c = cout;
    if (b->nparams > MAX_PARAMS)
        return build_fail(b, QAT_ERR_SHAPE, line, "model too large (more than %lld parameters)",
                          (long long)MAX_PARAMS);
    return QAT_OK;
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
                    L->skip = block_input;
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
    qat_layer *L;
    NEW_LAYER(L, b, QAT_LAYER_GLOBAL_AVGPOOL, -1);
    snprintf(L->name, sizeof L->name, "pool");
    L->out_h = L->out_w = 1;
    b->h = b->w = 1;
    if (b->spec->dropout > 0) {
        NEW_LAYER(L, b, QAT_LAYER_DROPOUT, -1);
        snprintf(L->name, sizeof L->name, "dropout");
        L->dropout = b->spec->dropout;
    }
    NEW_LAYER(L, b, QAT_LAYER_LINEAR, -1);
    snprintf(L->name, sizeof L->name, "fc");
    L->out_c = nclasses;
    L->nparams = (int64_t)nclasses * b->c + nclasses;
    L->macs = (int64_t)nclasses * b->c;
    b->nparams += L->nparams;
    b->nsegs += 2;
    b->c = nclasses;
    if (b->nparams > MAX_PARAMS)
        return build_fail(b, QAT_ERR_SHAPE, b->spec->classifier_line,
                          "model too large (more than %lld parameters)", (long long)MAX_PARAMS);
    return QAT_OK;
}

/* ---- pass 2: storage ------------------------------------------------------------------- */

typedef struct {
    qat_model *m;
    int64_t poff, boff;
    int seg, bseg;
} placer;

static void place_param(placer *p, int layer, qat_tensor *t, const char *suffix, int ndim,
                        const int *shape, int decay) {
    qat_model *m = p->m;
    qat_param_info *pi = &m->param_info[p->seg];
    qat_param_seg *sg = &m->segs[p->seg];
    snprintf(pi->name, sizeof pi->name, "%s%s", m->layers[layer].name, suffix);
    qat_tensor_param(t, ndim, shape, m->params + p->poff, m->grads + p->poff, pi->name);
    pi->tensor = t;
    pi->layer = layer;
    sg->offset = p->poff;
    sg->numel = t->numel;
    sg->decay = decay;
    p->poff += t->numel;
    p->seg++;
}

static float *place_buffer(placer *p, int layer, const char *suffix, int64_t n) {
    qat_model *m = p->m;
    qat_buffer_info *bi = &m->buffer_info[p->bseg++];
    snprintf(bi->name, sizeof bi->name, "%s%s", m->layers[layer].name, suffix);
    bi->offset = p->boff;
    bi->numel = n;
    bi->layer = layer;
    p->boff += n;
    return m->buffers + bi->offset;
}

/* Parameter order per conv record: weight, BN weight (gamma), BN bias (beta), as PyTorch's
 * model.parameters() lists conv then BatchNorm. Weight decay only on conv/linear weights. */
static void place_storage(qat_model *m) {
    placer p = {m, 0, 0, 0, 0};
    for (int i = 0; i < m->nlayers; i++) {
        qat_layer *L = &m->layers[i];
        if (L->kind == QAT_LAYER_CONV_BN_ACT) {
            int ws[4] = {L->out_c, L->k, L->k, L->in_c / L->groups}, cs[1] = {L->out_c};
            place_param(&p, i, &L->weight, ".0.weight", 4, ws, 1);
            place_param(&p, i, &L->gamma, ".1.weight", 1, cs, 0);
            place_param(&p, i, &L->beta, ".1.bias", 1, cs, 0);
            L->bn.running_mean = place_buffer(&p, i, ".1.running_mean", L->out_c);
            L->bn.running_var = place_buffer(&p, i, ".1.running_var", L->out_c);
            L->bn.momentum = BN_MOMENTUM;
            L->bn.eps = BN_EPS;
            L->bn.update_stats = 1;
        } else if (L->kind == QAT_LAYER_LINEAR) {
            int ws[2] = {L->out_c, L->in_c}, bs[1] = {L->out_c};
            place_param(&p, i, &L->weight, ".weight", 2, ws, 1);
            place_param(&p, i, &L->bias, ".bias", 1, bs, 0);
        }
    }
    QAT_ASSERT(p.poff == m->nparams && p.seg == m->nsegs);
    QAT_ASSERT(p.boff == m->nbuffers && p.bseg == m->nbuffer_segs);
}

/* The deterministic part of the init: BN affine 1/0, running stats 0/1, everything else 0. */
static void reset_state(qat_model *m) {
    memset(m->params, 0, (size_t)m->nparams * sizeof(float));
    for (int i = 0; i < m->nlayers; i++) {
        qat_layer *L = &m->layers[i];
        if (L->kind != QAT_LAYER_CONV_BN_ACT) continue;
        for (int c = 0; c < L->out_c; c++) {
            L->gamma.data[c] = 1.0f;
            L->bn.running_mean[c] = 0.0f;
            L->bn.running_var[c] = 1.0f;
        }
    }
}

void qat_model_free(qat_model *m) {
    if (!m) return;
    free(m->params);
    free(m->grads);
    free(m->segs);
    free(m->param_info);
    free(m->buffers);
    free(m->buffer_info);
    free(m->layers);
    qat_spec_free(m->spec);
    free(m);
}

static void *alloc_floats(int64_t n) {
    void *p = NULL;
    /* 64-byte aligned for the SIMD kernels; calloc-like zeroing. */
    if (posix_memalign(&p, 64, (size_t)(n ? n : 1) * sizeof(float))) return NULL;
    memset(p, 0, (size_t)(n ? n : 1) * sizeof(float));
    return p;
}

qat_status qat_model_create(const qat_spec *spec, float width_mult, int in_h, int in_w, int in_c,
                            int nclasses, qat_model **out) {
    *out = NULL;
    if (!spec) return qat_fail(QAT_ERR_ARG, "model: no spec");
    const char *src = spec->source;
    if (in_h < 1 || in_w < 1 || in_h > MAX_INPUT_SIZE || in_w > MAX_INPUT_SIZE)
        return qat_fail(QAT_ERR_ARG, "%s: input size %dx%d out of range (1 to %d)", src, in_h,
                        in_w, MAX_INPUT_SIZE);
    if (in_c < 1 || in_c > MAX_CHANNELS)
        return qat_fail(QAT_ERR_ARG, "%s: %d input channels out of range (1 to %d)", src, in_c,
                        MAX_CHANNELS);
    if (nclasses < 1 || nclasses > MAX_CLASSES)
        return qat_fail(QAT_ERR_ARG, "%s: %d classes out of range (1 to %d)", src, nclasses,
                        MAX_CLASSES);
    if (isnan(width_mult))
        return qat_fail(QAT_ERR_ARG, "%s: width multiplier is NaN", src);
    float width = width_mult > 0 ? width_mult : spec->width;
    if (!(width > 0 && width <= 16))
        return qat_fail(QAT_ERR_ARG, "%s: width multiplier %g out of range (0 to 16]", src,
                        (double)width);

    builder b = {spec, NULL, 0, 0, in_h, in_w, in_c, 0, 0, 0, 0};
    qat_status st = QAT_OK;
    for (int i = 0; i < spec->nstages && !st; i++) st = add_stage(&b, i, width);
    if (!st) st = add_classifier(&b, nclasses);
    if (st) {
        free(b.layers);
        return st;
    }
    QAT_ASSERT(b.nlayers <= QAT_SPEC_MAX_LAYERS);

    qat_model *m = calloc(1, sizeof *m);
    if (!m) {
        free(b.layers);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory building model", src);
    }
    m->layers = b.layers;
    m->nlayers = b.nlayers;
    m->nparams = b.nparams;
    m->nsegs = b.nsegs;
    m->nbuffers = b.nbuffers;
    m->nbuffer_segs = b.nbuffer_segs;
    m->in_h = in_h;
    m->in_w = in_w;
    m->in_c = in_c;
    m->nclasses = nclasses;
    m->width_mult = width;
    for (int i = 0; i < m->nlayers; i++) m->macs += m->layers[i].macs;
    m->params = alloc_floats(m->nparams);
    m->grads = alloc_floats(m->nparams);
    m->buffers = alloc_floats(m->nbuffers);
    m->segs = calloc((size_t)m->nsegs, sizeof *m->segs);
    m->param_info = calloc((size_t)m->nsegs, sizeof *m->param_info);
    m->buffer_info = calloc((size_t)(m->nbuffer_segs ? m->nbuffer_segs : 1),
                            sizeof *m->buffer_info);
    if (!m->params || !m->grads || !m->buffers || !m->segs || !m->param_info ||
        !m->buffer_info || (st = qat_spec_copy(spec, &m->spec))) {
        qat_model_free(m);
        return st ? st : qat_fail(QAT_ERR_NOMEM, "%s: out of memory for %lld parameters", src,
                                  (long long)b.nparams);
    }
    place_storage(m);
    reset_state(m);
    *out = m;
    return QAT_OK;
}

void qat_model_init(qat_model *m, qat_rng *rng) {
    reset_state(m);
    for (int s = 0; s < m->nsegs; s++) {
        const qat_param_info *pi = &m->param_info[s];
        const qat_layer *L = &m->layers[pi->layer];
        qat_tensor *t = pi->tensor;
        float std;
        if (L->kind == QAT_LAYER_CONV_BN_ACT && t == &L->weight)
            /* kaiming_normal_(fan_out): PyTorch's fan_out of a (Cout, Cin/g, K, K) weight is
             * Cout*K*K, not divided by groups. Gain sqrt(2) (ReLU). */
            std = sqrtf(2.0f / (float)(L->out_c * L->k * L->k));
        else if (L->kind == QAT_LAYER_LINEAR && t == &L->weight)
            std = 0.01f;
        else
            continue; /* BN affine and biases keep reset_state's values */
        for (int64_t i = 0; i < t->numel; i++) t->data[i] = std * qat_rng_normal(rng);
    }
}

static qat_tensor *activation(qat_ctx *ctx, qat_tensor *x, qat_act act) {
    switch (act) {
    case QAT_ACT_RELU: return qat_relu(ctx, x);
    case QAT_ACT_RELU6: return qat_relu6(ctx, x);
    case QAT_ACT_HARDSWISH: return qat_hardswish(ctx, x);
    default: return x;
    }
}

qat_tensor *qat_model_forward(qat_model *m, qat_ctx *ctx, qat_tensor *x) {
    if (!x || x->ndim != 4 || x->shape[0] < 1 || x->shape[1] != m->in_h ||
        x->shape[2] != m->in_w || x->shape[3] != m->in_c) {
        char got[64] = "no tensor";
        if (x) {
            int n = snprintf(got, sizeof got, "%d-d (", x->ndim);
            for (int d = 0; d < x->ndim && d < QAT_MAX_DIMS && n < (int)sizeof got; d++)
                n += snprintf(got + n, sizeof got - (size_t)n, d ? ", %d" : "%d", x->shape[d]);
            if (n < (int)sizeof got) snprintf(got + n, sizeof got - (size_t)n, ")");
        }
        qat_fail(QAT_ERR_SHAPE, "%s: input must be (N, %d, %d, %d) NHWC, got %s", m->spec->name,
                 m->in_h, m->in_w, m->in_c, got);
        return NULL;
    }
    /* Outputs by layer index: adds refer back to a block's input. */
    qat_tensor **outs = qat_arena_alloc(&ctx->arena, (size_t)m->nlayers * sizeof *outs);
    qat_tensor *y = x;
    for (int i = 0; i < m->nlayers; i++) {
        qat_layer *L = &m->layers[i];
        qat_tensor *in = L->input < 0 ? x : outs[L->input];
        switch (L->kind) {
        case QAT_LAYER_CONV_BN_ACT:
            y = qat_conv2d(ctx, in, &L->weight, NULL, L->stride, L->pad, L->groups);
            /* ReLU and ReLU6 run inside the BN pass (one read/write of the tensor less) */
            if (L->act == QAT_ACT_RELU || L->act == QAT_ACT_RELU6) {
                y = qat_batchnorm2d_act(ctx, y, &L->gamma, &L->beta, &L->bn,
                                        L->act == QAT_ACT_RELU ? QAT_BN_ACT_RELU : QAT_BN_ACT_RELU6);
            } else {
                y = qat_batchnorm2d(ctx, y, &L->gamma, &L->beta, &L->bn);
                y = activation(ctx, y, L->act);
            }
            break;
        case QAT_LAYER_ADD: y = qat_add(ctx, in, L->skip < 0 ? x : outs[L->skip]); break;
        case QAT_LAYER_GLOBAL_AVGPOOL: y = qat_global_avgpool(ctx, in); break;
        case QAT_LAYER_DROPOUT: y = qat_dropout(ctx, in, L->dropout); break;
        case QAT_LAYER_LINEAR: y = qat_linear(ctx, in, &L->weight, &L->bias); break;
        default: QAT_ASSERT(0);
        }
        if (!y->name) y->name = L->name;
        outs[i] = y;
    }
    return y;
}

void qat_model_zero_grad(qat_model *m) {
    memset(m->grads, 0, (size_t)m->nparams * sizeof(float));
}

void qat_model_set_bn_update(qat_model *m, int update) {
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].kind == QAT_LAYER_CONV_BN_ACT) m->layers[i].bn.update_stats = update != 0;
}

int qat_model_num_layers(const qat_model *m) { return m->nlayers; }

const qat_layer *qat_model_layer(const qat_model *m, int i) {
    return i >= 0 && i < m->nlayers ? &m->layers[i] : NULL;
}

int qat_model_find_param(const qat_model *m, const char *name) {
    for (int i = 0; i < m->nsegs; i++)
        if (!strcmp(m->param_info[i].name, name)) return i;
    return -1;
}

int qat_model_find_buffer(const qat_model *m, const char *name) {
    for (int i = 0; i < m->nbuffer_segs; i++)
        if (!strcmp(m->buffer_info[i].name, name)) return i;
    return -1;
}

/* ---- summary --------------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t cap, len;
} out_buf;

static void out_printf(out_buf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(out_buf *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    int n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0) o->len += (size_t)n;
}

/* 1234567 -> "1,234,567" */
static const char *grouped(char *buf, size_t cap, int64_t v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v), j = 0;
    for (int i = 0; i < n && (size_t)j + 2 < cap; i++) {
        if (i && tmp[i - 1] != '-' && (n - i) % 3 == 0) buf[j++] = ',';
        buf[j++] = tmp[i];
    }
    buf[j] = 0;
    return buf;
}

static void describe(const qat_layer *L, char *buf, size_t cap) {
    switch (L->kind) {
    case QAT_LAYER_CONV_BN_ACT:
        snprintf(buf, cap, "%s %dx%d s%d bn %s", L->role == QAT_CONV_DW ? "dwconv" : "conv", L->k,
                 L->k, L->stride, qat_act_names[L->act]);
        break;
    case QAT_LAYER_ADD: snprintf(buf, cap, "add (+ layer %d)", L->skip); break;
    case QAT_LAYER_DROPOUT: snprintf(buf, cap, "dropout p=%g", (double)L->dropout); break;
    default: snprintf(buf, cap, "%s", qat_layer_kind_names[L->kind]); break;
    }
}

size_t qat_model_summary(const qat_model *m, char *buf, size_t cap) {
    out_buf o = {buf, cap, 0};
    if (cap) buf[0] = 0;
    char a[32], b[32];
    out_printf(&o, "model %s: width %g, input %dx%dx%d, %d classes\n", m->spec->name,
               (double)m->width_mult, m->in_h, m->in_w, m->in_c, m->nclasses);
    out_printf(&o, "%4s  %-20s %-26s %-12s %10s %12s\n", "#", "layer", "op", "output", "params",
               "MACs");
    for (int i = 0; i < m->nlayers; i++) {
        const qat_layer *L = &m->layers[i];
        char op[48], shape[32];
        describe(L, op, sizeof op);
        if (L->kind == QAT_LAYER_GLOBAL_AVGPOOL || L->kind == QAT_LAYER_DROPOUT ||
            L->kind == QAT_LAYER_LINEAR)
            snprintf(shape, sizeof shape, "%d", L->out_c);
        else
            snprintf(shape, sizeof shape, "%dx%dx%d", L->out_h, L->out_w, L->out_c);
        out_printf(&o, "%4d  %-20s %-26s %-12s %10s %12s\n", i, L->name, op, shape,
                   grouped(a, sizeof a, L->nparams), grouped(b, sizeof b, L->macs));
    }
    out_printf(&o, "total: %s parameters, %s MACs per image (%.2f M)\n",
               grouped(a, sizeof a, m->nparams), grouped(b, sizeof b, m->macs),
               (double)m->macs / 1e6);
    return o.len;
}
