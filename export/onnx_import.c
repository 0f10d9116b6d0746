/* ONNX import (export/onnx_import.h): the file is unpacked with protobuf-c from ONNX's own schema
 * (the code the Makefile generates for the exporter), its nodes are walked in dependency order
 * and turned into the layer lines of the spec's general form (docs/model-spec.md), with the
 * weights moved to qat's layouts; then the spec text is parsed and the model built like any other,
 * and the weights are copied into its records by name.
 *
 * What folds away: BatchNormalization into the conv before it (its bias into the running mean),
 * Relu / Clip(0, 6) / HardSigmoid / HardSwish into the conv before it when nothing else reads the
 * conv's output, MatMul + Add into one linear, Flatten / Reshape to (N, C) after pooling, Identity,
 * Dropout (inference), and Constant / Shape / Gather / Unsqueeze / Concat when they only compute a
 * constant shape. Everything else is refused with the node's name and op. */
#include "onnx_import.h"
#include "onnx/onnx.pb-c.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char qat_onnx_import_ops[] =
    "Conv, BatchNormalization, Relu, Clip, HardSigmoid, HardSwish, Add, GlobalAveragePool, ReduceMean, "
    "Flatten, Reshape, Gemm, MatMul, Identity, Dropout, Constant, Shape, Gather, Unsqueeze, Concat";

#define MAX_FILE (INT64_C(1) << 30)   /* bytes of an ONNX file we read */
#define MAX_NODES 4096
#define MAX_NUMEL (INT64_C(1) << 28)  /* elements of one tensor */
#define DYN INT64_MIN                 /* a shape entry only known at run time (the batch) */
#define OUR_BN_EPS 1e-5f              /* layers/conv_bn_act.c: PyTorch's default */

enum { V_NONE = 0, V_ACT, V_CONST };

/* What a tensor name holds while the graph is walked. */
typedef struct {
    const char *key;   /* the name (the unpacked model owns it) */
    int uses;          /* node inputs and graph outputs reading it */
    int kind;
    /* V_ACT: a feature map or vector produced by spec node `node` (-1: the model input) */
    int node, vec, c, h, w;
    int fusable;       /* only one reader between here and the node: an activation / BN / bias may join it */
    /* V_CONST */
    int is_int, ndim;
    int64_t dims[8], numel;
    float *f;
    int64_t *i;
} value;

/* One layer line being built. */
typedef struct {
    char name[QAT_NODE_NAME_MAX];
    qat_node_op op;
    int nin, in[2];
    int c, k, s, pad, g, bn, in_c;
    qat_act act;
    float *w, *b, *gamma, *beta, *mean, *var;
    int bias_pending;  /* MatMul: an Add may give it its bias */
} snode;

typedef struct {
    const char *what;
    Onnx__ModelProto *model;
    int opset;
    value *tab;        /* open addressing by name */
    size_t cap;
    snode *nodes;
    int nnodes, cap_nodes;
    void **allocs;     /* every buffer made here, freed at the end */
    size_t nallocs, cap_allocs;
    int in_h, in_w, in_c;
    const Onnx__NodeProto *cur; /* the node being imported, for messages */
} imp;

static qat_status fail(imp *I, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static qat_status fail(imp *I, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *c = msg; *c; c++) /* a hostile name must not break the one-line message */
        if ((unsigned char)*c < 0x20) *c = '?';
    if (I->cur)
        return qat_fail(QAT_ERR_FORMAT, "%s: node '%.60s' (%.40s): %s", I->what,
                        I->cur->name && *I->cur->name ? I->cur->name : "(unnamed)",
                        I->cur->op_type ? I->cur->op_type : "?", msg);
    return qat_fail(QAT_ERR_FORMAT, "%s: %s", I->what, msg);
}

static void *track(imp *I, size_t bytes) {
    if (I->nallocs == I->cap_allocs) {
        size_t cap = I->cap_allocs ? 2 * I->cap_allocs : 256;
        void **a = realloc(I->allocs, cap * sizeof *a);
        if (!a) return NULL;
        I->allocs = a, I->cap_allocs = cap;
    }
    void *p = calloc(1, bytes ? bytes : 1);
    if (p) I->allocs[I->nallocs++] = p;
    return p;
}

#define TRACK(p, I, bytes)                                                          \
    do {                                                                            \
        if (!((p) = track((I), (bytes))))                                           \
            return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", (I)->what);         \
    } while (0)

/* ---- names --------------------------------------------------------------------------------- */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The entry of name (created empty when absent). Names come from the file: "" is no value. */
static value *slot(imp *I, const char *name) {
    size_t i = hash_str(name) & (I->cap - 1);
    while (I->tab[i].key && strcmp(I->tab[i].key, name)) i = (i + 1) & (I->cap - 1);
    if (!I->tab[i].key) I->tab[i].key = name;
    return &I->tab[i];
}

static value *get(imp *I, const char *name) {
    value *v = slot(I, name);
    return v->kind ? v : NULL;
}

/* ---- tensors ------------------------------------------------------------------------------- */

/* A TensorProto (initializer or Constant) as a V_CONST value. */
static qat_status load_tensor(imp *I, const Onnx__TensorProto *t, value *v) {
    const char *name = t->name ? t->name : "";
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return fail(I, "tensor '%.60s': its data is in an external file (external data is not supported; "
                    "save the model with all tensors inside the .onnx file)", name);
    if (t->n_dims > 8) return fail(I, "tensor '%.60s': %zu dimensions (at most 8)", name, t->n_dims);
    int64_t numel = 1;
    for (size_t d = 0; d < t->n_dims; d++) {
        if (t->dims[d] < 0 || t->dims[d] > MAX_NUMEL)
            return fail(I, "tensor '%.60s': dimension %zu is %lld", name, d, (long long)t->dims[d]);
        numel *= t->dims[d];
        if (numel > MAX_NUMEL) return fail(I, "tensor '%.60s': more than %lld elements", name, (long long)MAX_NUMEL);
        v->dims[d] = t->dims[d];
    }
    v->ndim = (int)t->n_dims, v->numel = numel, v->kind = V_CONST;
    int dt = t->has_data_type ? t->data_type : 0;
    size_t esize = dt == 1 ? 4 : dt == 7 ? 8 : dt == 6 ? 4 : 0;
    if (!esize)
        return fail(I, "tensor '%.60s': data type %d is not supported (float, int64, int32)", name, dt);
    v->is_int = dt != 1;
    size_t typed = dt == 1 ? t->n_float_data : dt == 7 ? t->n_int64_data : t->n_int32_data;
    if (t->has_raw_data && t->raw_data.len != (uint64_t)numel * esize)
        return fail(I, "tensor '%.60s': raw_data has %zu bytes, its shape needs %lld", name,
                    t->raw_data.len, (long long)(numel * (int64_t)esize));
    if (!t->has_raw_data && typed != (size_t)numel)
        return fail(I, "tensor '%.60s': %zu values, its shape needs %lld", name, typed, (long long)numel);
    if (v->is_int) {
        TRACK(v->i, I, (size_t)numel * sizeof(int64_t));
        for (int64_t k = 0; k < numel; k++) {
            if (t->has_raw_data && dt == 7) memcpy(&v->i[k], t->raw_data.data + 8 * k, 8);
            else if (t->has_raw_data) {
                int32_t x;
                memcpy(&x, t->raw_data.data + 4 * k, 4);
                v->i[k] = x;
            } else v->i[k] = dt == 7 ? t->int64_data[k] : t->int32_data[k];
        }
    } else {
        TRACK(v->f, I, (size_t)numel * sizeof(float));
        if (t->has_raw_data) memcpy(v->f, t->raw_data.data, (size_t)numel * 4);
        else memcpy(v->f, t->float_data, (size_t)numel * 4);
        for (int64_t k = 0; k < numel; k++)
            if (!isfinite(v->f[k])) return fail(I, "tensor '%.60s': value %lld is not finite", name, (long long)k);
    }
    return QAT_OK;
}

/* ---- attributes ------------------------------------------------------------------------------ */

static const Onnx__AttributeProto *attr(const Onnx__NodeProto *n, const char *name) {
    for (size_t i = 0; i < n->n_attribute; i++)
        if (n->attribute[i]->name && !strcmp(n->attribute[i]->name, name)) return n->attribute[i];
    return NULL;
}
static int64_t attr_int(const Onnx__NodeProto *n, const char *name, int64_t def) {
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_i ? a->i : def;
}
static float attr_float(const Onnx__NodeProto *n, const char *name, float def) {
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_f ? a->f : def;
}

/* Node input j's value, or NULL when absent ("" or beyond the list). */
static value *input(imp *I, const Onnx__NodeProto *n, size_t j) {
    return j < n->n_input && n->input[j] && *n->input[j] ? get(I, n->input[j]) : NULL;
}

static value *out0(imp *I, const Onnx__NodeProto *n) { return slot(I, n->output[0]); }

static qat_status need_act(imp *I, const value *v, int j, int want_map) {
    if (!v || v->kind != V_ACT) return fail(I, "input %d must be a computed tensor (not a constant)", j);
    if (want_map == 1 && v->vec)
        return fail(I, "input %d is a pooled (N, C) vector; this op needs a (N, C, H, W) feature map", j);
    if (want_map == 0 && !v->vec)
        return fail(I, "input %d is a (N, C, H, W) feature map; this op needs a pooled (N, C) vector "
                    "(only global pooling may come before Flatten / Reshape / Gemm / MatMul)", j);
    return QAT_OK;
}

static qat_status need_const(imp *I, const value *v, int j, const char *what, int is_int) {
    if (!v || v->kind != V_CONST)
        return fail(I, "input %d (%s) must be a constant (an initializer or Constant node)", j, what);
    if (v->is_int != is_int) return fail(I, "input %d (%s) must be %s", j, what, is_int ? "int64" : "float");
    return QAT_OK;
}

/* ---- spec nodes ------------------------------------------------------------------------------ */

/* A layer name from ONNX names: characters outside the spec's name set become '_', at most the
 * last 40 kept, made unique with a suffix. */
static void make_name(imp *I, char *dst, const char *base, const char *op) {
    char tmp[256];
    size_t n = 0;
    for (const char *c = base ? base : ""; *c && n + 1 < sizeof tmp; c++) {
        char ch = *c;
        if (!(isalnum((unsigned char)ch) || ch == '-' || ch == '_' || ch == '.')) ch = '_';
        if (n == 0 && (ch == '_' || ch == '.')) continue;
        tmp[n++] = ch;
    }
    tmp[n] = 0;
    if (!n || !strcmp(tmp, "input")) snprintf(tmp, sizeof tmp, "%s%d", op, I->nnodes);
    const char *t = strlen(tmp) > 40 ? tmp + strlen(tmp) - 40 : tmp; /* at most 40 + "_NNNN" */
    const size_t tl = strlen(t);
    for (int k = 1;; k++) {
        memcpy(dst, t, tl + 1);
        if (k > 1) {
            char suf[16];
            int sl = snprintf(suf, sizeof suf, "_%d", k % 100000);
            memcpy(dst + tl, suf, (size_t)sl + 1);
        }
        int taken = 0;
        for (int i = 0; i < I->nnodes && !taken; i++) taken = !strcmp(I->nodes[i].name, dst);
        if (!taken) return;
    }
}

static qat_status new_node(imp *I, qat_node_op op, const char *base, snode **out) {
    if (I->nnodes >= QAT_SPEC_MAX_LAYERS / 2) return fail(I, "more than %d layers", QAT_SPEC_MAX_LAYERS / 2);
    if (I->nnodes == I->cap_nodes) {
        int cap = I->cap_nodes ? 2 * I->cap_nodes : 64;
        snode *ns = realloc(I->nodes, (size_t)cap * sizeof *ns);
        if (!ns) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", I->what);
        I->nodes = ns, I->cap_nodes = cap;
    }
    snode *s = &I->nodes[I->nnodes];
    memset(s, 0, sizeof *s);
    make_name(I, s->name, base, qat_node_op_names[op]);
    s->op = op;
    s->s = 1, s->g = 1, s->k = 1;
    I->nnodes++;
    *out = s;
    return QAT_OK;
}

/* The weight's name without ".weight" when the exporter named it after a module
 * ("features.0.0.weight"), else the node's name. */
static const char *layer_base(const Onnx__NodeProto *n) {
    static char buf[256];
    const char *w = n->n_input > 1 ? n->input[1] : NULL;
    if (w && strncmp(w, "onnx::", 6) && strlen(w) < sizeof buf) {
        snprintf(buf, sizeof buf, "%s", w);
        size_t L = strlen(buf);
        if (L > 7 && !strcmp(buf + L - 7, ".weight")) buf[L - 7] = 0;
        return buf;
    }
    return n->name && *n->name ? n->name : n->output[0];
}

static void set_act(value *o, int node, int vec, int c, int h, int w, int fusable) {
    o->kind = V_ACT, o->node = node, o->vec = vec, o->c = c, o->h = h, o->w = w, o->fusable = fusable;
}

/* ---- ops ------------------------------------------------------------------------------------- */

static qat_status op_conv(imp *I, const Onnx__NodeProto *n) {
    value *x = input(I, n, 0), *W = input(I, n, 1), *B = input(I, n, 2);
    qat_status st;
    if ((st = need_act(I, x, 0, 1)) || (st = need_const(I, W, 1, "weight", 0))) return st;
    if (B && (st = need_const(I, B, 2, "bias", 0))) return st;
    if (W->ndim != 4) return fail(I, "weight must be 4-D (O, I/groups, KH, KW), got %d-D", W->ndim);
    const int64_t O = W->dims[0], Ig = W->dims[1], KH = W->dims[2], KW = W->dims[3];
    const int64_t g = attr_int(n, "group", 1);
    if (g < 1 || g > x->c || x->c % g || Ig * g != x->c)
        return fail(I, "group %lld and weight (%lld, %lld, ...) do not fit %d input channels", (long long)g,
                    (long long)O, (long long)Ig, x->c);
    if (O < 1 || O > 4096 || O % g) return fail(I, "%lld output channels (1 to 4096, a multiple of group)", (long long)O);
    if (KH != KW || KH < 1 || KH > 15) return fail(I, "kernel %lldx%lld: only square kernels up to 15 are supported", (long long)KH, (long long)KW);
    const Onnx__AttributeProto *a;
    if ((a = attr(n, "auto_pad")) && a->has_s && a->s.len && !(a->s.len == 6 && !memcmp(a->s.data, "NOTSET", 6)))
        return fail(I, "auto_pad is not supported (export with explicit pads)");
    int64_t stride = 1, pad = 0;
    if ((a = attr(n, "strides"))) {
        if (a->n_ints != 2 || a->ints[0] != a->ints[1] || a->ints[0] < 1 || a->ints[0] > 8)
            return fail(I, "strides must be two equal values from 1 to 8");
        stride = a->ints[0];
    }
    if ((a = attr(n, "pads"))) {
        if (a->n_ints != 4 || a->ints[0] != a->ints[1] || a->ints[0] != a->ints[2] || a->ints[0] != a->ints[3] ||
            a->ints[0] < 0 || a->ints[0] > 15)
            return fail(I, "pads must be four equal values from 0 to 15 (asymmetric padding is not supported)");
        pad = a->ints[0];
    }
    if ((a = attr(n, "dilations")))
        for (size_t k = 0; k < a->n_ints; k++)
            if (a->ints[k] != 1) return fail(I, "dilation %lld is not supported", (long long)a->ints[k]);
    if ((a = attr(n, "kernel_shape")) && (a->n_ints != 2 || a->ints[0] != KH || a->ints[1] != KW))
        return fail(I, "kernel_shape does not match the weight");
    if (B && B->numel != O) return fail(I, "bias has %lld values, expected %lld", (long long)B->numel, (long long)O);
    if (x->h + 2 * pad < KH || x->w + 2 * pad < KW)
        return fail(I, "kernel %lld does not fit the %dx%d input padded by %lld", (long long)KH, x->h, x->w, (long long)pad);
    snode *s;
    if ((st = new_node(I, QAT_NODE_CONV, layer_base(n), &s))) return st;
    s->nin = 1, s->in[0] = x->node;
    s->c = (int)O, s->k = (int)KH, s->s = (int)stride, s->pad = (int)pad, s->g = (int)g, s->in_c = x->c;
    TRACK(s->w, I, (size_t)W->numel * sizeof(float));
    TRACK(s->b, I, (size_t)O * sizeof(float));
    /* OIHW -> OHWI */
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < Ig; i++)
            for (int64_t y = 0; y < KH; y++)
                for (int64_t xx = 0; xx < KW; xx++)
                    s->w[((o * KH + y) * KW + xx) * Ig + i] = W->f[((o * Ig + i) * KH + y) * KW + xx];
    if (B) memcpy(s->b, B->f, (size_t)O * sizeof(float));
    value *o = out0(I, n);
    set_act(o, I->nnodes - 1, 0, (int)O, (int)((x->h + 2 * pad - KH) / stride + 1),
            (int)((x->w + 2 * pad - KW) / stride + 1), o->uses == 1);
    return QAT_OK;
}

static qat_status op_bn(imp *I, const Onnx__NodeProto *n) {
    value *x = input(I, n, 0), *p[4];
    static const char *const what[4] = {"scale", "B", "mean", "var"};
    qat_status st;
    if ((st = need_act(I, x, 0, 1))) return st;
    for (int j = 0; j < 4; j++) {
        p[j] = input(I, n, (size_t)j + 1);
        if ((st = need_const(I, p[j], j + 1, what[j], 0))) return st;
        if (p[j]->numel != x->c)
            return fail(I, "%s has %lld values for %d channels", what[j], (long long)p[j]->numel, x->c);
    }
    if (attr_int(n, "training_mode", 0)) return fail(I, "training_mode=1 (export the model in eval mode)");
    for (size_t j = 1; j < n->n_output; j++)
        if (n->output[j] && *n->output[j] && slot(I, n->output[j])->uses)
            return fail(I, "its running-statistics outputs are used (training-mode BN is not supported)");
    snode *s = x->node >= 0 ? &I->nodes[x->node] : NULL;
    if (!s || s->op != QAT_NODE_CONV || s->bn || s->act != QAT_ACT_NONE || !x->fusable)
        return fail(I, "BatchNormalization must follow a Conv whose output nothing else reads");
    const float eps = attr_float(n, "epsilon", 1e-5f);
    if (!(eps > 0)) return fail(I, "epsilon %g must be positive", (double)eps);
    const int C = x->c;
    TRACK(s->gamma, I, (size_t)C * sizeof(float));
    TRACK(s->beta, I, (size_t)C * sizeof(float));
    TRACK(s->mean, I, (size_t)C * sizeof(float));
    TRACK(s->var, I, (size_t)C * sizeof(float));
    for (int c = 0; c < C; c++) {
        if (!(p[3]->f[c] >= 0)) return fail(I, "var[%d] = %g is negative", c, (double)p[3]->f[c]);
        s->gamma[c] = p[0]->f[c], s->beta[c] = p[1]->f[c];
        /* BN(conv + b) = BN'(conv) with the mean moved by b; our BN's eps is PyTorch's 1e-5, so
         * another eps goes into the variance (exact when eps is 1e-5) */
        s->mean[c] = p[2]->f[c] - s->b[c];
        s->var[c] = eps == OUR_BN_EPS ? p[3]->f[c] : p[3]->f[c] + (eps - OUR_BN_EPS);
    }
    s->bn = 1;
    value *o = out0(I, n);
    *o = (value){.key = o->key, .uses = o->uses};
    set_act(o, x->node, 0, x->c, x->h, x->w, o->uses == 1);
    return QAT_OK;
}

/* Relu, Clip, HardSigmoid, HardSwish: into the conv before it when it is the conv's only reader,
 * else an act layer. */
static qat_status op_act(imp *I, const Onnx__NodeProto *n, const char *op) {
    value *x = input(I, n, 0);
    qat_status st;
    if ((st = need_act(I, x, 0, 1))) return st;
    qat_act act = QAT_ACT_RELU;
    if (!strcmp(op, "Clip")) {
        float lo = attr_float(n, "min", -INFINITY), hi = attr_float(n, "max", INFINITY);
        value *vl = input(I, n, 1), *vh = input(I, n, 2);
        if (vl) {
            if ((st = need_const(I, vl, 1, "min", 0))) return st;
            if (vl->numel != 1) return fail(I, "min must be a scalar");
            lo = vl->f[0];
        }
        if (vh) {
            if ((st = need_const(I, vh, 2, "max", 0))) return st;
            if (vh->numel != 1) return fail(I, "max must be a scalar");
            hi = vh->f[0];
        }
        if (lo == 0 && hi == 6) act = QAT_ACT_RELU6;
        else if (lo == 0 && isinf(hi) && hi > 0) act = QAT_ACT_RELU;
        else return fail(I, "Clip(%g, %g): only Clip(0, 6) (ReLU6) and Clip(0, inf) (ReLU) are supported",
                         (double)lo, (double)hi);
    } else if (!strcmp(op, "HardSigmoid")) {
        float al = attr_float(n, "alpha", 0.2f), be = attr_float(n, "beta", 0.5f);
        if (fabsf(al - 1.0f / 6) > 1e-6f || be != 0.5f)
            return fail(I, "HardSigmoid(alpha=%g, beta=%g): only alpha=1/6, beta=0.5 (PyTorch's) is supported",
                        (double)al, (double)be);
        act = QAT_ACT_HARDSIGMOID;
    } else if (!strcmp(op, "HardSwish")) {
        act = QAT_ACT_HARDSWISH;
    }
    value *o = out0(I, n);
    snode *s = x->node >= 0 ? &I->nodes[x->node] : NULL;
    if (s && s->op == QAT_NODE_CONV && s->act == QAT_ACT_NONE && x->fusable) {
        s->act = act;
        set_act(o, x->node, 0, x->c, x->h, x->w, 0);
        return QAT_OK;
    }
    if ((st = new_node(I, QAT_NODE_ACT, n->name && *n->name ? n->name : n->output[0], &s))) return st;
    s->nin = 1, s->in[0] = x->node, s->act = act;
    set_act(o, I->nnodes - 1, 0, x->c, x->h, x->w, 0);
    return QAT_OK;
}

static qat_status op_add(imp *I, const Onnx__NodeProto *n) {
    value *a = input(I, n, 0), *b = input(I, n, 1);
    if (!a || !b) return fail(I, "needs two inputs");
    value *o = out0(I, n);
    if (a->kind == V_CONST || b->kind == V_CONST) { /* the bias of a MatMul */
        value *x = a->kind == V_CONST ? b : a, *k = a->kind == V_CONST ? a : b;
        snode *s = x->kind == V_ACT && x->node >= 0 ? &I->nodes[x->node] : NULL;
        if (!s || !s->bias_pending || !x->fusable || k->is_int || k->numel != s->c)
            return fail(I, "adding a constant is supported only as the bias of a MatMul (%s values)",
                        s ? "matching" : "a vector of output");
        memcpy(s->b, k->f, (size_t)s->c * sizeof(float));
        s->bias_pending = 0;
        set_act(o, x->node, 1, x->c, 1, 1, o->uses == 1);
        return QAT_OK;
    }
    qat_status st;
    if ((st = need_act(I, a, 0, 1)) || (st = need_act(I, b, 1, 1))) return st;
    if (a->c != b->c || a->h != b->h || a->w != b->w)
        return fail(I, "adds (%d, %d, %d) and (%d, %d, %d) (C, H, W): broadcasting is not supported", a->c,
                    a->h, a->w, b->c, b->h, b->w);
    snode *s;
    if ((st = new_node(I, QAT_NODE_ADD, n->name && *n->name ? n->name : n->output[0], &s))) return st;
    s->nin = 2, s->in[0] = a->node, s->in[1] = b->node;
    set_act(o, I->nnodes - 1, 0, a->c, a->h, a->w, 0);
    return QAT_OK;
}

static qat_status op_pool(imp *I, const Onnx__NodeProto *n, const char *op) {
    value *x = input(I, n, 0);
    qat_status st;
    if ((st = need_act(I, x, 0, 1))) return st;
    if (!strcmp(op, "ReduceMean")) {
        const Onnx__AttributeProto *a = attr(n, "axes");
        int ok = a && a->n_ints == 2;
        for (size_t k = 0; ok && k < 2; k++) ok = a->ints[k] == 2 + (int64_t)k || a->ints[k] == -2 + (int64_t)k;
        if (!ok || n->n_input > 1) return fail(I, "only a mean over axes (2, 3) (global average pooling) is supported");
    }
    snode *s;
    if ((st = new_node(I, QAT_NODE_AVGPOOL, n->name && *n->name ? n->name : n->output[0], &s))) return st;
    s->nin = 1, s->in[0] = x->node;
    set_act(out0(I, n), I->nnodes - 1, 1, x->c, 1, 1, 0);
    return QAT_OK;
}

/* Gemm (transB 0 or 1, alpha = beta = 1) and MatMul (its bias from the Add after it). */
static qat_status op_linear(imp *I, const Onnx__NodeProto *n, int matmul) {
    value *x = input(I, n, 0), *W = input(I, n, 1), *B = matmul ? NULL : input(I, n, 2);
    qat_status st;
    if ((st = need_act(I, x, 0, 0)) || (st = need_const(I, W, 1, "weight", 0))) return st;
    if (B && (st = need_const(I, B, 2, "bias", 0))) return st;
    if (W->ndim != 2) return fail(I, "weight must be 2-D, got %d-D", W->ndim);
    const int transb = matmul ? 0 : (int)attr_int(n, "transB", 0);
    if (!matmul && (attr_int(n, "transA", 0) || attr_float(n, "alpha", 1) != 1 || attr_float(n, "beta", 1) != 1))
        return fail(I, "only transA=0, alpha=1, beta=1 is supported");
    const int64_t in = transb ? W->dims[1] : W->dims[0], out = transb ? W->dims[0] : W->dims[1];
    if (in != x->c) return fail(I, "weight is for %lld inputs, the input has %d", (long long)in, x->c);
    if (out < 1 || out > 4096) return fail(I, "%lld outputs (1 to 4096)", (long long)out);
    if (B && B->numel != out && B->numel != 1)
        return fail(I, "bias has %lld values for %lld outputs", (long long)B->numel, (long long)out);
    snode *s;
    if ((st = new_node(I, QAT_NODE_LINEAR, layer_base(n), &s))) return st;
    s->nin = 1, s->in[0] = x->node, s->c = (int)out, s->in_c = x->c;
    TRACK(s->w, I, (size_t)(in * out) * sizeof(float));
    TRACK(s->b, I, (size_t)out * sizeof(float));
    for (int64_t o = 0; o < out; o++)
        for (int64_t i = 0; i < in; i++) s->w[o * in + i] = transb ? W->f[o * in + i] : W->f[i * out + o];
    for (int64_t o = 0; B && o < out; o++) s->b[o] = B->f[B->numel == 1 ? 0 : o];
    s->bias_pending = matmul;
    value *ov = out0(I, n);
    set_act(ov, I->nnodes - 1, 1, (int)out, 1, 1, ov->uses == 1);
    return QAT_OK;
}

/* Flatten / Reshape: only (N, C, 1, 1) after pooling to (N, C); the value stays what it is. */
static qat_status op_flatten(imp *I, const Onnx__NodeProto *n, int reshape) {
    value *x = input(I, n, 0);
    qat_status st;
    if ((st = need_act(I, x, 0, 0))) return st;
    if (!reshape && attr_int(n, "axis", 1) != 1) return fail(I, "only axis=1 is supported");
    if (reshape) {
        value *sh = input(I, n, 1);
        if ((st = need_const(I, sh, 1, "shape", 1))) return st;
        int ok = sh->numel == 2 && (sh->i[0] == -1 || sh->i[0] == 0 || sh->i[0] == DYN) &&
                 (sh->i[1] == -1 || sh->i[1] == x->c);
        if (!ok) return fail(I, "only a reshape of the pooled (N, C, 1, 1) to (N, C) is supported");
    }
    value *o = out0(I, n);
    int fusable = x->fusable && o->uses == 1;
    *o = (value){.key = o->key, .uses = o->uses};
    set_act(o, x->node, 1, x->c, 1, 1, fusable);
    return QAT_OK;
}

/* Identity, Dropout: the output is the input. */
static qat_status op_alias(imp *I, const Onnx__NodeProto *n) {
    value *x = input(I, n, 0);
    if (!x) return fail(I, "needs an input");
    for (size_t j = 1; j < n->n_output; j++)
        if (n->output[j] && *n->output[j] && slot(I, n->output[j])->uses)
            return fail(I, "its mask output is used");
    value *o = out0(I, n);
    value keep = *o;
    *o = *x;
    o->key = keep.key, o->uses = keep.uses;
    if (o->kind == V_ACT) o->fusable = x->fusable && keep.uses == 1;
    return QAT_OK;
}

static qat_status op_constant(imp *I, const Onnx__NodeProto *n) {
    value *o = out0(I, n);
    const Onnx__AttributeProto *a;
    if ((a = attr(n, "value")) && a->t) return load_tensor(I, a->t, o);
    o->kind = V_CONST, o->ndim = 0, o->numel = 1;
    if ((a = attr(n, "value_float")) && a->has_f) {
        TRACK(o->f, I, sizeof(float));
        o->f[0] = a->f;
    } else if ((a = attr(n, "value_int")) && a->has_i) {
        o->is_int = 1;
        TRACK(o->i, I, sizeof(int64_t));
        o->i[0] = a->i;
    } else if ((a = attr(n, "value_ints")) && a->n_ints <= (size_t)MAX_NUMEL) {
        o->is_int = 1, o->ndim = 1, o->numel = (int64_t)a->n_ints, o->dims[0] = o->numel;
        TRACK(o->i, I, a->n_ints * sizeof(int64_t));
        if (a->n_ints) memcpy(o->i, a->ints, a->n_ints * sizeof(int64_t));
    } else if ((a = attr(n, "value_floats")) && a->n_floats <= (size_t)MAX_NUMEL) {
        o->ndim = 1, o->numel = (int64_t)a->n_floats, o->dims[0] = o->numel;
        TRACK(o->f, I, a->n_floats * sizeof(float));
        if (a->n_floats) memcpy(o->f, a->floats, a->n_floats * sizeof(float));
    } else {
        o->kind = V_NONE;
        return fail(I, "no value (value, value_float(s), value_int(s) are supported)");
    }
    return QAT_OK;
}

/* Shape / Gather / Unsqueeze / Concat on constant int64 shapes (the batch is DYN). */
static qat_status op_shape(imp *I, const Onnx__NodeProto *n, const char *op) {
    value *x = input(I, n, 0), *o = out0(I, n);
    qat_status st;
    int64_t buf[64];
    int64_t cnt = 0;
    int ndim = 1;
    if (!strcmp(op, "Shape")) {
        if (!x || x->kind != V_ACT) return fail(I, "only the shape of a computed tensor is supported");
        int64_t full[4] = {DYN, x->c, x->vec ? 1 : x->h, x->vec ? 1 : x->w};
        int r = 4;
        int64_t b = attr_int(n, "start", 0), e = attr_int(n, "end", r);
        if (b < 0) b += r;
        if (e < 0) e += r;
        b = b < 0 ? 0 : b > r ? r : b, e = e < 0 ? 0 : e > r ? r : e;
        for (int64_t k = b; k < e; k++) buf[cnt++] = full[k];
    } else if (!strcmp(op, "Gather")) {
        value *idx = input(I, n, 1);
        if ((st = need_const(I, x, 0, "data", 1)) || (st = need_const(I, idx, 1, "indices", 1))) return st;
        if (x->ndim != 1 || attr_int(n, "axis", 0) != 0 || idx->numel > 64)
            return fail(I, "only gathering from a 1-D shape on axis 0 is supported");
        for (int64_t k = 0; k < idx->numel; k++) {
            int64_t j = idx->i[k] < 0 ? idx->i[k] + x->numel : idx->i[k];
            if (j < 0 || j >= x->numel) return fail(I, "index %lld out of range", (long long)idx->i[k]);
            buf[cnt++] = x->i[j];
        }
        ndim = idx->ndim;
    } else if (!strcmp(op, "Unsqueeze")) {
        if ((st = need_const(I, x, 0, "data", 1))) return st;
        value *ax = input(I, n, 1);
        size_t nax = ax ? (size_t)ax->numel : attr(n, "axes") ? attr(n, "axes")->n_ints : 0;
        if (x->numel > 64 || x->ndim + (int)nax > 1 || nax > 1)
            return fail(I, "only unsqueezing a shape entry to a 1-D shape is supported");
        for (int64_t k = 0; k < x->numel; k++) buf[cnt++] = x->i[k];
        ndim = 1;
    } else { /* Concat */
        if (attr_int(n, "axis", 0) != 0 && attr_int(n, "axis", 0) != -1) return fail(I, "only axis 0 is supported");
        for (size_t j = 0; j < n->n_input; j++) {
            value *v = input(I, n, j);
            if ((st = need_const(I, v, (int)j, "shape part", 1))) return st;
            if (v->ndim != 1 || cnt + v->numel > 64) return fail(I, "only concatenating 1-D shapes is supported");
            for (int64_t k = 0; k < v->numel; k++) buf[cnt++] = v->i[k];
        }
    }
    o->kind = V_CONST, o->is_int = 1, o->ndim = ndim, o->numel = cnt, o->dims[0] = cnt;
    TRACK(o->i, I, (size_t)(cnt ? cnt : 1) * sizeof(int64_t));
    memcpy(o->i, buf, (size_t)cnt * sizeof(int64_t));
    return QAT_OK;
}

static qat_status import_node(imp *I, const Onnx__NodeProto *n) {
    const char *op = n->op_type ? n->op_type : "";
    if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx"))
        return fail(I, "domain '%.40s' is not supported (the default ONNX domain only)", n->domain);
    if (!n->n_output || !n->output[0] || !*n->output[0]) return fail(I, "has no output");
    if (!strcmp(op, "Conv")) return op_conv(I, n);
    if (!strcmp(op, "BatchNormalization")) return op_bn(I, n);
    if (!strcmp(op, "Relu") || !strcmp(op, "Clip") || !strcmp(op, "HardSigmoid") || !strcmp(op, "HardSwish"))
        return op_act(I, n, op);
    if (!strcmp(op, "Add")) return op_add(I, n);
    if (!strcmp(op, "GlobalAveragePool") || !strcmp(op, "ReduceMean")) return op_pool(I, n, op);
    if (!strcmp(op, "Gemm")) return op_linear(I, n, 0);
    if (!strcmp(op, "MatMul")) return op_linear(I, n, 1);
    if (!strcmp(op, "Flatten")) return op_flatten(I, n, 0);
    if (!strcmp(op, "Reshape")) return op_flatten(I, n, 1);
    if (!strcmp(op, "Identity") || !strcmp(op, "Dropout")) return op_alias(I, n);
    if (!strcmp(op, "Constant")) return op_constant(I, n);
    if (!strcmp(op, "Shape") || !strcmp(op, "Gather") || !strcmp(op, "Unsqueeze") || !strcmp(op, "Concat"))
        return op_shape(I, n, op);
    return fail(I, "unsupported op (supported: %s)", qat_onnx_import_ops);
}

/* ---- the graph --------------------------------------------------------------------------------- */

static qat_status walk(imp *I) {
    const Onnx__GraphProto *g = I->model->graph;
    qat_status st;
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *t = g->initializer[i];
        if (!t->name || !*t->name) return fail(I, "initializer %zu has no name", i);
        value *v = slot(I, t->name);
        if (v->kind) return fail(I, "tensor '%.60s' is defined twice", t->name);
        if ((st = load_tensor(I, t, v))) return st;
    }
    /* the one graph input that is not an initializer: a fixed (N, C, H, W) float */
    int ninputs = 0;
    for (size_t i = 0; i < g->n_input; i++) {
        const Onnx__ValueInfoProto *vi = g->input[i];
        if (!vi->name || !*vi->name) return fail(I, "graph input %zu has no name", i);
        value *v = slot(I, vi->name);
        if (v->kind == V_CONST) continue;
        if (v->kind) return fail(I, "graph input '%.60s' is listed twice", vi->name);
        if (ninputs++) return fail(I, "more than one graph input ('%.60s'); a classifier takes one image tensor", vi->name);
        const Onnx__TypeProto *tp = vi->type;
        const Onnx__TensorShapeProto *sh = tp && tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && tp->tensor_type
                                               ? tp->tensor_type->shape : NULL;
        if (!sh || sh->n_dim != 4 || !tp->tensor_type->has_elem_type || tp->tensor_type->elem_type != 1)
            return fail(I, "input '%.60s': needs a float (N, C, H, W) tensor type", vi->name);
        int64_t d[4];
        for (int k = 1; k < 4; k++) {
            const Onnx__TensorShapeProto__Dimension *dm = sh->dim[k];
            if (dm->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE || dm->dim_value < 1 ||
                dm->dim_value > 4096)
                return fail(I, "input '%.60s': dimension %d is not a fixed size from 1 to 4096 (dynamic spatial "
                            "sizes and channels are not supported)", vi->name, k);
            d[k] = dm->dim_value;
        }
        if (d[1] > 4) return fail(I, "input '%.60s': %lld channels (qat takes 1 to 4)", vi->name, (long long)d[1]);
        I->in_c = (int)d[1], I->in_h = (int)d[2], I->in_w = (int)d[3];
        set_act(v, -1, 0, I->in_c, I->in_h, I->in_w, 0);
    }
    if (!ninputs) return fail(I, "the graph has no input besides its initializers");
    if (g->n_output != 1) return fail(I, "the graph has %zu outputs; a classifier has one (the logits)", g->n_output);
    /* nodes in dependency order: ONNX requires topological order, but take any order and report
     * what keeps a node from running */
    char *done = calloc(g->n_node ? g->n_node : 1, 1);
    if (!done) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", I->what);
    size_t left = g->n_node;
    st = QAT_OK;
    while (left && !st) {
        size_t progress = 0;
        for (size_t i = 0; i < g->n_node && !st; i++) {
            if (done[i]) continue;
            const Onnx__NodeProto *n = g->node[i];
            int ready = 1;
            for (size_t j = 0; j < n->n_input && ready; j++)
                ready = !*n->input[j] || get(I, n->input[j]) != NULL;
            if (!ready) continue;
            I->cur = n;
            for (size_t j = 0; j < n->n_output && !st; j++)
                if (*n->output[j] && slot(I, n->output[j])->kind)
                    st = fail(I, "output '%.60s' is already defined", n->output[j]);
            if (!st) st = import_node(I, n);
            I->cur = NULL;
            done[i] = 1, left--, progress++;
        }
        if (st || progress) continue;
        /* stuck: an input nothing produces (dangling), or one only a waiting node produces (cycle) */
        for (size_t i = 0; i < g->n_node && !st; i++) {
            if (done[i]) continue;
            const Onnx__NodeProto *n = g->node[i];
            for (size_t j = 0; j < n->n_input && !st; j++) {
                if (!*n->input[j] || get(I, n->input[j])) continue;
                int produced = 0;
                for (size_t k = 0; k < g->n_node && !produced; k++)
                    for (size_t m = 0; !done[k] && m < g->node[k]->n_output && !produced; m++)
                        produced = !strcmp(g->node[k]->output[m], n->input[j]);
                I->cur = n;
                st = produced ? fail(I, "input '%.60s' depends on this node's own output (the graph has a cycle)",
                                     n->input[j])
                              : fail(I, "input '%.60s' is not produced by any node, initializer or graph input "
                                     "(a dangling input)", n->input[j]);
                I->cur = NULL;
            }
        }
        if (!st) st = fail(I, "the graph cannot be ordered");
    }
    free(done);
    if (st) return st;
    const char *oname = g->output[0]->name ? g->output[0]->name : "";
    value *o = get(I, oname);
    if (!o || o->kind != V_ACT || o->node < 0 || o->node != I->nnodes - 1 || I->nodes[o->node].op != QAT_NODE_LINEAR || !o->vec)
        return fail(I, "graph output '%.60s' must be the logits of a final Gemm / MatMul, computed last", oname);
    if (I->nodes[o->node].c < 2) return fail(I, "the classifier has %d output (at least 2 classes)", I->nodes[o->node].c);
    return QAT_OK;
}

/* ---- the spec and the model ----------------------------------------------------------------- */

static char *spec_text(imp *I, const char *model_name) {
    size_t cap = 256 + (size_t)I->nnodes * 256;
    char *t = malloc(cap);
    if (!t) return NULL;
    size_t len = (size_t)snprintf(t, cap, "# imported from %.200s by qat import\nname %s\n", I->what, model_name);
    for (int i = 0; i < I->nnodes; i++) {
        const snode *s = &I->nodes[i];
        len += (size_t)snprintf(t + len, cap - len, "layer %s %s in=", s->name, qat_node_op_names[s->op]);
        for (int j = 0; j < s->nin; j++)
            len += (size_t)snprintf(t + len, cap - len, "%s%s", j ? "," : "", s->in[j] < 0 ? "input" : I->nodes[s->in[j]].name);
        if (s->op == QAT_NODE_CONV)
            len += (size_t)snprintf(t + len, cap - len, " c=%d k=%d s=%d pad=%d g=%d bn=%d act=%s", s->c, s->k, s->s,
                                    s->pad, s->g, s->bn, qat_act_names[s->act]);
        else if (s->op == QAT_NODE_ACT)
            len += (size_t)snprintf(t + len, cap - len, " act=%s", qat_act_names[s->act]);
        else if (s->op == QAT_NODE_LINEAR)
            len += (size_t)snprintf(t + len, cap - len, " c=%d", s->c);
        len += (size_t)snprintf(t + len, cap - len, "\n");
    }
    return t;
}

static void copy_weights(imp *I, qat_model *m) {
    for (int i = 0; i < I->nnodes; i++) {
        const snode *s = &I->nodes[i];
        if (s->op != QAT_NODE_CONV && s->op != QAT_NODE_LINEAR) continue;
        qat_layer *L = NULL;
        for (int j = 0; j < m->nlayers && !L; j++)
            if (!strcmp(m->layers[j].name, s->name)) L = &m->layers[j];
        QAT_ASSERT(L && L->weight.data);
        memcpy(L->weight.data, s->w, (size_t)L->weight.numel * sizeof(float));
        if (s->op == QAT_NODE_LINEAR || !s->bn) {
            memcpy(L->bias.data, s->b, (size_t)s->c * sizeof(float));
            continue;
        }
        memcpy(L->gamma.data, s->gamma, (size_t)s->c * sizeof(float));
        memcpy(L->beta.data, s->beta, (size_t)s->c * sizeof(float));
        memcpy(L->bn.running_mean, s->mean, (size_t)s->c * sizeof(float));
        memcpy(L->bn.running_var, s->var, (size_t)s->c * sizeof(float));
    }
}

static qat_status import_model(imp *I, qat_model **out) {
    Onnx__ModelProto *mp = I->model;
    if (!mp->graph) return fail(I, "no graph");
    int64_t opset = -1;
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
        if (!o->domain || !*o->domain || !strcmp(o->domain, "ai.onnx")) opset = o->has_version ? o->version : -1;
    }
    if (opset < 0) return fail(I, "no opset of the default ONNX domain");
    if (opset < 11 || opset > 17)
        return fail(I, "opset %lld is not supported (11 to 17; re-export with e.g. opset_version=13)", (long long)opset);
    I->opset = (int)opset;
    const Onnx__GraphProto *g = mp->graph;
    if (g->n_node > MAX_NODES) return fail(I, "%zu nodes (at most %d)", g->n_node, MAX_NODES);
    size_t names = g->n_initializer + g->n_input + g->n_output + 1;
    for (size_t i = 0; i < g->n_node; i++) names += g->node[i]->n_input + g->node[i]->n_output;
    I->cap = 64;
    while (I->cap < 2 * names) I->cap *= 2;
    TRACK(I->tab, I, I->cap * sizeof *I->tab);
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *n = g->node[i];
        for (size_t j = 0; j < n->n_input; j++)
            if (n->input[j] && *n->input[j]) slot(I, n->input[j])->uses++;
        for (size_t j = 0; j < n->n_output; j++)
            if (!n->output[j]) return fail(I, "node %zu has a missing output name", i);
        for (size_t j = 0; j < n->n_input; j++)
            if (!n->input[j]) return fail(I, "node %zu has a missing input name", i);
    }
    for (size_t i = 0; i < g->n_output; i++)
        if (g->output[i]->name && *g->output[i]->name) slot(I, g->output[i]->name)->uses++;
    qat_status st = walk(I);
    if (st) return st;
    /* the model's name: the file's base name in spec name characters */
    char name[QAT_SPEC_NAME_MAX];
    const char *base = strrchr(I->what, '/');
    base = base ? base + 1 : I->what;
    size_t n = 0;
    for (; *base && n + 1 < sizeof name && strcmp(base, ".onnx"); base++)
        name[n++] = isalnum((unsigned char)*base) || *base == '-' || *base == '_' || *base == '.' ? *base : '_';
    name[n] = 0;
    if (!n) snprintf(name, sizeof name, "imported");
    char *text = spec_text(I, name);
    if (!text) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", I->what);
    char source[600];
    snprintf(source, sizeof source, "%.500s (imported)", I->what);
    qat_spec *spec;
    st = qat_spec_parse(text, source, &spec);
    free(text);
    if (st) return st;
    st = qat_model_create(spec, 0, I->in_h, I->in_w, I->in_c, I->nodes[I->nnodes - 1].c, out);
    qat_spec_free(spec);
    if (st) return st;
    copy_weights(I, *out);
    return QAT_OK;
}

qat_status qat_onnx_import_bytes(const void *data, size_t len, const char *what, qat_model **out) {
    *out = NULL;
    imp I;
    memset(&I, 0, sizeof I);
    I.what = what ? what : "<onnx>";
    I.model = onnx__model_proto__unpack(NULL, len, data);
    if (!I.model)
        return qat_fail(QAT_ERR_FORMAT, "%s: not a valid ONNX model (the protobuf does not parse: truncated or "
                        "corrupt file?)", I.what);
    qat_status st = import_model(&I, out);
    for (size_t i = 0; i < I.nallocs; i++) free(I.allocs[i]);
    free(I.allocs);
    free(I.nodes);
    onnx__model_proto__free_unpacked(I.model, NULL);
    return st;
}

qat_status qat_onnx_import(const char *path, qat_model **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return qat_fail(QAT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    long size = -1;
    if (!fseek(f, 0, SEEK_END)) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET)) {
        fclose(f);
        return qat_fail(QAT_ERR_IO, "%s: cannot read (not a regular file?)", path);
    }
    if (size > MAX_FILE) {
        fclose(f);
        return qat_fail(QAT_ERR_FORMAT, "%s: %ld bytes (larger than %lld: not supported)", path, size, (long long)MAX_FILE);
    }
    void *buf = malloc((size_t)size + 1);
    if (!buf) {
        fclose(f);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    qat_status st = got != (size_t)size ? qat_fail(QAT_ERR_IO, "%s: read error", path)
                                        : qat_onnx_import_bytes(buf, (size_t)size, path, out);
    free(buf);
    return st;
}
