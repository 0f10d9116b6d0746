/* ONNX import, what each op becomes (export/onnx_import.c walks the graph and calls
 * oi_import_node for every node in dependency order): a layer line of the spec's general form, or
 * a fold into the layer before it, or a constant; anything else is refused naming the node. */
#include "onnx_import_internal.h"
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char qat_onnx_import_ops[] =
    "Conv, BatchNormalization, Relu, Clip, HardSigmoid, HardSwish, Sigmoid, Add, Mul, GlobalAveragePool, "
    "ReduceMean, MaxPool, AveragePool, Pad, Flatten, Reshape, Gemm, MatMul, Identity, Dropout, Constant, "
    "Shape, Gather, Unsqueeze, Concat";

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
    return j < n->n_input && n->input[j] && *n->input[j] ? oi_get(I, n->input[j]) : NULL;
}

static value *out0(imp *I, const Onnx__NodeProto *n) { return oi_slot(I, n->output[0]); }

static qat_status need_act(imp *I, const value *v, int j, int want_map) {
    if (!v || v->kind != V_ACT) return oi_fail(I, "input %d must be a computed tensor (not a constant)", j);
    if (v->pad)
        return oi_fail(I, "input %d comes from a Pad, which folds only into a Conv or AveragePool reading it", j);
    if (want_map == 1 && v->vec)
        return oi_fail(I, "input %d is a pooled (N, C) vector; this op needs a (N, C, H, W) feature map", j);
    if (want_map == 0 && !v->vec)
        return oi_fail(I, "input %d is a (N, C, H, W) feature map; this op needs a pooled (N, C) vector "
                    "(only global pooling may come before Flatten / Reshape / Gemm / MatMul)", j);
    return QAT_OK;
}

static qat_status need_const(imp *I, const value *v, int j, const char *what, int is_int) {
    if (!v || v->kind != V_CONST)
        return oi_fail(I, "input %d (%s) must be a constant (an initializer or Constant node)", j, what);
    if (v->is_int != is_int) return oi_fail(I, "input %d (%s) must be %s", j, what, is_int ? "int64" : "float");
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
    if (I->nnodes >= QAT_SPEC_MAX_LAYERS / 2) return oi_fail(I, "more than %d layers", QAT_SPEC_MAX_LAYERS / 2);
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

/* ---- ops ------------------------------------------------------------------------------------- */

/* The window attributes of Conv, MaxPool and AveragePool: kernel_shape (when given: *k), strides,
 * pads (symmetric only), dilations 1, no auto_pad, no ceil_mode. */
static qat_status window_attrs(imp *I, const Onnx__NodeProto *n, int64_t *k, int64_t *stride, int64_t *pad) {
    const Onnx__AttributeProto *a;
    if ((a = attr(n, "auto_pad")) && a->has_s && a->s.len && !(a->s.len == 6 && !memcmp(a->s.data, "NOTSET", 6)))
        return oi_fail(I, "auto_pad is not supported (export with explicit pads)");
    if (attr_int(n, "ceil_mode", 0)) return oi_fail(I, "ceil_mode=1 is not supported (floor output sizes only)");
    *stride = 1, *pad = 0;
    if ((a = attr(n, "kernel_shape"))) {
        if (a->n_ints != 2 || a->ints[0] != a->ints[1] || a->ints[0] < 1 || a->ints[0] > 15)
            return oi_fail(I, "kernel_shape must be two equal values from 1 to 15 (non-square kernels are not "
                           "supported)");
        *k = a->ints[0];
    }
    if ((a = attr(n, "strides"))) {
        if (a->n_ints != 2 || a->ints[0] != a->ints[1] || a->ints[0] < 1 || a->ints[0] > 8)
            return oi_fail(I, "strides must be two equal values from 1 to 8");
        *stride = a->ints[0];
    }
    if ((a = attr(n, "pads"))) {
        if (a->n_ints != 4 || a->ints[0] != a->ints[1] || a->ints[0] != a->ints[2] || a->ints[0] != a->ints[3] ||
            a->ints[0] < 0 || a->ints[0] > 15)
            return oi_fail(I, "pads must be four equal values from 0 to 15 (asymmetric padding is not supported)");
        *pad = a->ints[0];
    }
    if ((a = attr(n, "dilations")))
        for (size_t j = 0; j < a->n_ints; j++)
            if (a->ints[j] != 1) return oi_fail(I, "dilation %lld is not supported", (long long)a->ints[j]);
    return QAT_OK;
}

/* x without the padding of a Pad before it (*extra), for the ops that fold it. */
static value *unpadded(value *x, value *copy, int64_t *extra) {
    *extra = 0;
    if (!x || x->kind != V_ACT) return x;
    *copy = *x;
    *extra = copy->pad, copy->pad = 0;
    return copy;
}

/* A 1x1 Conv on a pooled vector (squeeze-and-excite's convs): an fc layer (N, C) -> (N, O). */
static qat_status conv_on_vector(imp *I, const Onnx__NodeProto *n, const value *x, const value *W, const value *B) {
    const int64_t O = W->dims[0];
    int64_t k = 1, stride, pad;
    qat_status st;
    if ((st = window_attrs(I, n, &k, &stride, &pad))) return st;
    if (W->dims[2] != 1 || W->dims[3] != 1 || k != 1 || pad || attr_int(n, "group", 1) != 1 || W->dims[1] != x->c)
        return oi_fail(I, "a Conv on a pooled (N, C, 1, 1) tensor must be 1x1, group 1, no padding, on its %d channels",
                       x->c);
    if (O < 1 || O > 4096) return oi_fail(I, "%lld output channels (1 to 4096)", (long long)O);
    if (B && B->numel != O) return oi_fail(I, "bias has %lld values, expected %lld", (long long)B->numel, (long long)O);
    snode *s;
    if ((st = new_node(I, QAT_NODE_FC, layer_base(n), &s))) return st;
    s->nin = 1, s->in[0] = x->node, s->c = (int)O, s->in_c = x->c;
    TRACK(s->w, I, (size_t)W->numel * sizeof(float));
    TRACK(s->b, I, (size_t)O * sizeof(float));
    memcpy(s->w, W->f, (size_t)W->numel * sizeof(float)); /* (O, I, 1, 1) is (out, in) */
    if (B) memcpy(s->b, B->f, (size_t)O * sizeof(float));
    value *o = out0(I, n);
    oi_set_act(o, I->nnodes - 1, 1, (int)O, 1, 1, o->uses == 1);
    return QAT_OK;
}

static qat_status op_conv(imp *I, const Onnx__NodeProto *n) {
    value xcopy, *W = input(I, n, 1), *B = input(I, n, 2);
    int64_t extra;
    value *x = unpadded(input(I, n, 0), &xcopy, &extra);
    qat_status st;
    if (x && x->kind == V_ACT && x->vec && !extra && W && W->kind == V_CONST && W->ndim == 4 && !W->is_int) {
        if (B && (st = need_const(I, B, 2, "bias", 0))) return st;
        return conv_on_vector(I, n, x, W, B);
    }
    if ((st = need_act(I, x, 0, 1)) || (st = need_const(I, W, 1, "weight", 0))) return st;
    if (B && (st = need_const(I, B, 2, "bias", 0))) return st;
    if (W->ndim != 4) return oi_fail(I, "weight must be 4-D (O, I/groups, KH, KW), got %d-D", W->ndim);
    const int64_t O = W->dims[0], Ig = W->dims[1], KH = W->dims[2], KW = W->dims[3];
    const int64_t g = attr_int(n, "group", 1);
    if (g < 1 || g > x->c || x->c % g || Ig * g != x->c)
        return oi_fail(I, "group %lld and weight (%lld, %lld, ...) do not fit %d input channels", (long long)g,
                    (long long)O, (long long)Ig, x->c);
    if (O < 1 || O > 4096 || O % g) return oi_fail(I, "%lld output channels (1 to 4096, a multiple of group)", (long long)O);
    if (KH != KW || KH < 1 || KH > 15) return oi_fail(I, "kernel %lldx%lld: only square kernels up to 15 are supported", (long long)KH, (long long)KW);
    int64_t k = KH, stride, pad;
    if ((st = window_attrs(I, n, &k, &stride, &pad))) return st;
    if (k != KH) return oi_fail(I, "kernel_shape does not match the weight");
    pad += extra; /* a zero Pad before the conv is the conv's own zero padding */
    if (pad > 15) return oi_fail(I, "padding %lld (with the Pad before it) is more than 15", (long long)pad);
    if (B && B->numel != O) return oi_fail(I, "bias has %lld values, expected %lld", (long long)B->numel, (long long)O);
    if (x->h + 2 * pad < KH || x->w + 2 * pad < KW)
        return oi_fail(I, "kernel %lld does not fit the %dx%d input padded by %lld", (long long)KH, x->h, x->w, (long long)pad);
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
    oi_set_act(o, I->nnodes - 1, 0, (int)O, (int)((x->h + 2 * pad - KH) / stride + 1),
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
            return oi_fail(I, "%s has %lld values for %d channels", what[j], (long long)p[j]->numel, x->c);
    }
    if (attr_int(n, "training_mode", 0)) return oi_fail(I, "training_mode=1 (export the model in eval mode)");
    for (size_t j = 1; j < n->n_output; j++)
        if (n->output[j] && *n->output[j] && oi_slot(I, n->output[j])->uses)
            return oi_fail(I, "its running-statistics outputs are used (training-mode BN is not supported)");
    snode *s = x->node >= 0 ? &I->nodes[x->node] : NULL;
    if (!s || s->op != QAT_NODE_CONV || s->bn || s->act != QAT_ACT_NONE || !x->fusable)
        return oi_fail(I, "BatchNormalization must follow a Conv whose output nothing else reads");
    const float eps = attr_float(n, "epsilon", 1e-5f);
    if (!(eps > 0)) return oi_fail(I, "epsilon %g must be positive", (double)eps);
    const int C = x->c;
    TRACK(s->gamma, I, (size_t)C * sizeof(float));
    TRACK(s->beta, I, (size_t)C * sizeof(float));
    TRACK(s->mean, I, (size_t)C * sizeof(float));
    TRACK(s->var, I, (size_t)C * sizeof(float));
    for (int c = 0; c < C; c++) {
        if (!(p[3]->f[c] >= 0)) return oi_fail(I, "var[%d] = %g is negative", c, (double)p[3]->f[c]);
        s->gamma[c] = p[0]->f[c], s->beta[c] = p[1]->f[c];
        /* BN(conv + b) = BN'(conv) with the mean moved by b; our BN's eps is PyTorch's 1e-5, so
         * another eps goes into the variance (exact when eps is 1e-5) */
        s->mean[c] = p[2]->f[c] - s->b[c];
        s->var[c] = eps == OUR_BN_EPS ? p[3]->f[c] : p[3]->f[c] + (eps - OUR_BN_EPS);
    }
    s->bn = 1;
    value *o = out0(I, n);
    *o = (value){.key = o->key, .uses = o->uses};
    oi_set_act(o, x->node, 0, x->c, x->h, x->w, o->uses == 1);
    return QAT_OK;
}

/* Relu, Clip, HardSigmoid, HardSwish: into the conv before it when it is the conv's only reader,
 * else an act layer. */
static qat_status op_act(imp *I, const Onnx__NodeProto *n, const char *op) {
    value *x = input(I, n, 0);
    qat_status st;
    if ((st = need_act(I, x, 0, -1))) return st; /* a map, or squeeze-and-excite's gate (N, C) */
    qat_act act = QAT_ACT_RELU;
    if (!strcmp(op, "Clip")) {
        float lo = attr_float(n, "min", -INFINITY), hi = attr_float(n, "max", INFINITY);
        value *vl = input(I, n, 1), *vh = input(I, n, 2);
        if (vl) {
            if ((st = need_const(I, vl, 1, "min", 0))) return st;
            if (vl->numel != 1) return oi_fail(I, "min must be a scalar");
            lo = vl->f[0];
        }
        if (vh) {
            if ((st = need_const(I, vh, 2, "max", 0))) return st;
            if (vh->numel != 1) return oi_fail(I, "max must be a scalar");
            hi = vh->f[0];
        }
        if (lo == 0 && hi == 6) act = QAT_ACT_RELU6;
        else if (lo == 0 && isinf(hi) && hi > 0) act = QAT_ACT_RELU;
        else return oi_fail(I, "Clip(%g, %g): only Clip(0, 6) (ReLU6) and Clip(0, inf) (ReLU) are supported",
                         (double)lo, (double)hi);
    } else if (!strcmp(op, "HardSigmoid")) {
        float al = attr_float(n, "alpha", 0.2f), be = attr_float(n, "beta", 0.5f);
        if (fabsf(al - 1.0f / 6) > 1e-6f || be != 0.5f)
            return oi_fail(I, "HardSigmoid(alpha=%g, beta=%g): only alpha=1/6, beta=0.5 (PyTorch's) is supported",
                        (double)al, (double)be);
        act = QAT_ACT_HARDSIGMOID;
    } else if (!strcmp(op, "HardSwish")) {
        act = QAT_ACT_HARDSWISH;
    } else if (!strcmp(op, "Sigmoid")) {
        act = QAT_ACT_SIGMOID;
    }
    value *o = out0(I, n);
    snode *s = x->node >= 0 ? &I->nodes[x->node] : NULL;
    /* into the conv or fc before it (an fc keeps only the clamps: relu, relu6) */
    const int fuse = s && x->fusable && s->act == QAT_ACT_NONE &&
                     (s->op == QAT_NODE_CONV || (s->op == QAT_NODE_FC && !qat_act_is_table(act)));
    if (fuse) {
        s->act = act;
        oi_set_act(o, x->node, x->vec, x->c, x->h, x->w, 0);
        return QAT_OK;
    }
    if ((st = new_node(I, QAT_NODE_ACT, n->name && *n->name ? n->name : n->output[0], &s))) return st;
    s->nin = 1, s->in[0] = x->node, s->act = act, s->out_uses = o->uses;
    oi_set_act(o, I->nnodes - 1, x->vec, x->c, x->h, x->w, 0);
    return QAT_OK;
}

static qat_status op_add(imp *I, const Onnx__NodeProto *n) {
    value *a = input(I, n, 0), *b = input(I, n, 1);
    if (!a || !b) return oi_fail(I, "needs two inputs");
    value *o = out0(I, n);
    if (a->kind == V_CONST || b->kind == V_CONST) { /* the bias of a MatMul */
        value *x = a->kind == V_CONST ? b : a, *k = a->kind == V_CONST ? a : b;
        snode *s = x->kind == V_ACT && x->node >= 0 ? &I->nodes[x->node] : NULL;
        if (!s || !s->bias_pending || !x->fusable || k->is_int || k->numel != s->c)
            return oi_fail(I, "adding a constant is supported only as the bias of a MatMul (%s values)",
                        s ? "matching" : "a vector of output");
        memcpy(s->b, k->f, (size_t)s->c * sizeof(float));
        s->bias_pending = 0;
        oi_set_act(o, x->node, 1, x->c, 1, 1, o->uses == 1);
        return QAT_OK;
    }
    qat_status st;
    if ((st = need_act(I, a, 0, 1)) || (st = need_act(I, b, 1, 1))) return st;
    if (a->c != b->c || a->h != b->h || a->w != b->w)
        return oi_fail(I, "adds (%d, %d, %d) and (%d, %d, %d) (C, H, W): broadcasting is not supported", a->c,
                    a->h, a->w, b->c, b->h, b->w);
    snode *s;
    if ((st = new_node(I, QAT_NODE_ADD, n->name && *n->name ? n->name : n->output[0], &s))) return st;
    s->nin = 2, s->in[0] = a->node, s->in[1] = b->node;
    oi_set_act(o, I->nnodes - 1, 0, a->c, a->h, a->w, 0);
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
        if (!ok || n->n_input > 1) return oi_fail(I, "only a mean over axes (2, 3) (global average pooling) is supported");
    }
    snode *s;
    if ((st = new_node(I, QAT_NODE_AVGPOOL, n->name && *n->name ? n->name : n->output[0], &s))) return st;
    s->nin = 1, s->in[0] = x->node;
    oi_set_act(out0(I, n), I->nnodes - 1, 1, x->c, 1, 1, 0);
    return QAT_OK;
}

/* MaxPool and AveragePool (k x k windows, floor sizes, 2 pad <= k). AveragePool's divisor must
 * count the padding (count_include_pad=1, PyTorch's default) unless there is none; the zeros of a
 * Pad before it are real pixels, so they always count. */
static qat_status op_pool2d(imp *I, const Onnx__NodeProto *n, int max) {
    value xcopy;
    int64_t extra, k = 0, stride, pad;
    value *x = unpadded(input(I, n, 0), &xcopy, &extra);
    qat_status st;
    if ((st = need_act(I, x, 0, 1)) || (st = window_attrs(I, n, &k, &stride, &pad))) return st;
    if (!k) return oi_fail(I, "kernel_shape is missing");
    if (max && extra)
        return oi_fail(I, "a Pad before MaxPool pads with zeros, MaxPool's own padding is -inf: not supported");
    if (max && (attr_int(n, "storage_order", 0) ||
                (n->n_output > 1 && n->output[1] && *n->output[1] && oi_slot(I, n->output[1])->uses)))
        return oi_fail(I, "its Indices output / storage_order is not supported");
    if (!max && pad && !attr_int(n, "count_include_pad", 0))
        return oi_fail(I, "padding %lld with count_include_pad=0 is not supported (the divisor must count the "
                       "padding: export nn.AvgPool2d with count_include_pad=True)", (long long)pad);
    pad += extra;
    if (2 * pad > k)
        return oi_fail(I, "padding %lld is more than half the window %lld", (long long)pad, (long long)k);
    if (x->h + 2 * pad < k || x->w + 2 * pad < k)
        return oi_fail(I, "window %lld does not fit the %dx%d input padded by %lld", (long long)k, x->h, x->w,
                       (long long)pad);
    snode *s;
    if ((st = new_node(I, max ? QAT_NODE_MAXPOOL : QAT_NODE_AVGPOOL2D, n->name && *n->name ? n->name : n->output[0],
                       &s)))
        return st;
    s->nin = 1, s->in[0] = x->node, s->k = (int)k, s->s = (int)stride, s->pad = (int)pad;
    oi_set_act(out0(I, n), I->nnodes - 1, 0, x->c, (int)((x->h + 2 * pad - k) / stride + 1),
               (int)((x->w + 2 * pad - k) / stride + 1), 0);
    return QAT_OK;
}

/* Pad (constant mode, value 0, the same padding on the four spatial sides): kept on the value
 * for the Conv or AveragePool that reads it. */
static qat_status op_pad(imp *I, const Onnx__NodeProto *n) {
    value *x = input(I, n, 0), *pads = input(I, n, 1), *cv = input(I, n, 2);
    qat_status st;
    if ((st = need_act(I, x, 0, 1))) return st;
    const Onnx__AttributeProto *a = attr(n, "mode");
    if (a && a->has_s && !(a->s.len == 8 && !memcmp(a->s.data, "constant", 8)))
        return oi_fail(I, "mode '%.*s' is not supported (constant only)", (int)(a->s.len < 20 ? a->s.len : 20),
                       (const char *)a->s.data);
    if ((st = need_const(I, pads, 1, "pads", 1))) return st;
    if (n->n_input > 3 && n->input[3] && *n->input[3]) return oi_fail(I, "the axes input is not supported");
    if (cv && (cv->kind != V_CONST || cv->is_int || cv->numel != 1 || cv->f[0] != 0))
        return oi_fail(I, "only a constant value of 0 is supported");
    const int64_t *p = pads->i;
    if (pads->numel != 8 || p[0] || p[1] || p[4] || p[5] || p[2] != p[3] || p[2] != p[6] || p[2] != p[7] ||
        p[2] < 0 || p[2] > 15)
        return oi_fail(I, "pads must be 0 on N and C and equal on the four spatial sides, 0 to 15 "
                       "(asymmetric padding is not supported)");
    value *o = out0(I, n);
    *o = (value){.key = o->key, .uses = o->uses};
    oi_set_act(o, x->node, 0, x->c, x->h, x->w, 0);
    o->pad = (int)p[2];
    return QAT_OK;
}

/* Mul: a feature map times a per-channel gate (N, C, 1, 1) (squeeze-and-excite), either order. */
static qat_status op_mul(imp *I, const Onnx__NodeProto *n) {
    value *a = input(I, n, 0), *b = input(I, n, 1);
    qat_status st;
    if ((st = need_act(I, a, 0, -1)) || (st = need_act(I, b, 1, -1))) return st;
    /* x * HardSigmoid(x): how PyTorch exports nn.Hardswish below opset 14 (no HardSwish op yet);
     * the act layer becomes hardswish when nothing else reads the HardSigmoid */
    for (int k = 0; k < 2 && !a->vec && !b->vec; k++) {
        value *x = k ? b : a, *h = k ? a : b;
        snode *s = h->node >= 0 ? &I->nodes[h->node] : NULL;
        if (s && s->op == QAT_NODE_ACT && s->act == QAT_ACT_HARDSIGMOID && s->in[0] == x->node && s->out_uses == 1 &&
            h->uses == 1 && h->c == x->c && h->h == x->h && h->w == x->w) {
            s->act = QAT_ACT_HARDSWISH;
            oi_set_act(out0(I, n), h->node, 0, x->c, x->h, x->w, 0);
            return QAT_OK;
        }
    }
    value *x = a->vec ? b : a, *g = a->vec ? a : b;
    if (x->vec || !g->vec || g->c != x->c)
        return oi_fail(I, "multiplies (%d, %d, %d) and (%d, %d, %d) (C, H, W): only a feature map times a "
                       "per-channel (N, C, 1, 1) gate (squeeze-and-excite) is supported", a->c, a->h, a->w, b->c,
                       b->h, b->w);
    snode *s;
    if ((st = new_node(I, QAT_NODE_MUL, n->name && *n->name ? n->name : n->output[0], &s))) return st;
    s->nin = 2, s->in[0] = x->node, s->in[1] = g->node;
    oi_set_act(out0(I, n), I->nnodes - 1, 0, x->c, x->h, x->w, 0);
    return QAT_OK;
}

/* Gemm (transB 0 or 1, alpha = beta = 1) and MatMul (its bias from the Add after it). */
static qat_status op_linear(imp *I, const Onnx__NodeProto *n, int matmul) {
    value *x = input(I, n, 0), *W = input(I, n, 1), *B = matmul ? NULL : input(I, n, 2);
    qat_status st;
    if ((st = need_act(I, x, 0, 0)) || (st = need_const(I, W, 1, "weight", 0))) return st;
    if (B && (st = need_const(I, B, 2, "bias", 0))) return st;
    if (W->ndim != 2) return oi_fail(I, "weight must be 2-D, got %d-D", W->ndim);
    const int transb = matmul ? 0 : (int)attr_int(n, "transB", 0);
    if (!matmul && (attr_int(n, "transA", 0) || attr_float(n, "alpha", 1) != 1 || attr_float(n, "beta", 1) != 1))
        return oi_fail(I, "only transA=0, alpha=1, beta=1 is supported");
    const int64_t in = transb ? W->dims[1] : W->dims[0], out = transb ? W->dims[0] : W->dims[1];
    if (in != x->c) return oi_fail(I, "weight is for %lld inputs, the input has %d", (long long)in, x->c);
    if (out < 1 || out > 4096) return oi_fail(I, "%lld outputs (1 to 4096)", (long long)out);
    if (B && B->numel != out && B->numel != 1)
        return oi_fail(I, "bias has %lld values for %lld outputs", (long long)B->numel, (long long)out);
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
    oi_set_act(ov, I->nnodes - 1, 1, (int)out, 1, 1, ov->uses == 1);
    return QAT_OK;
}

/* Flatten / Reshape: only (N, C, 1, 1) after pooling to (N, C); the value stays what it is. */
static qat_status op_flatten(imp *I, const Onnx__NodeProto *n, int reshape) {
    value *x = input(I, n, 0);
    qat_status st;
    if ((st = need_act(I, x, 0, 0))) return st;
    if (!reshape && attr_int(n, "axis", 1) != 1) return oi_fail(I, "only axis=1 is supported");
    if (reshape) {
        value *sh = input(I, n, 1);
        if ((st = need_const(I, sh, 1, "shape", 1))) return st;
        int ok = sh->numel == 2 && (sh->i[0] == -1 || sh->i[0] == 0 || sh->i[0] == DYN) &&
                 (sh->i[1] == -1 || sh->i[1] == x->c);
        if (!ok) return oi_fail(I, "only a reshape of the pooled (N, C, 1, 1) to (N, C) is supported");
    }
    value *o = out0(I, n);
    int fusable = x->fusable && o->uses == 1;
    *o = (value){.key = o->key, .uses = o->uses};
    oi_set_act(o, x->node, 1, x->c, 1, 1, fusable);
    return QAT_OK;
}

/* Identity, Dropout: the output is the input. */
static qat_status op_alias(imp *I, const Onnx__NodeProto *n) {
    value *x = input(I, n, 0);
    if (!x) return oi_fail(I, "needs an input");
    for (size_t j = 1; j < n->n_output; j++)
        if (n->output[j] && *n->output[j] && oi_slot(I, n->output[j])->uses)
            return oi_fail(I, "its mask output is used");
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
    if ((a = attr(n, "value")) && a->t) return oi_load_tensor(I, a->t, o);
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
        return oi_fail(I, "no value (value, value_float(s), value_int(s) are supported)");
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
        if (!x || x->kind != V_ACT || x->pad) return oi_fail(I, "only the shape of a computed tensor is supported");
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
            return oi_fail(I, "only gathering from a 1-D shape on axis 0 is supported");
        for (int64_t k = 0; k < idx->numel; k++) {
            int64_t j = idx->i[k] < 0 ? idx->i[k] + x->numel : idx->i[k];
            if (j < 0 || j >= x->numel) return oi_fail(I, "index %lld out of range", (long long)idx->i[k]);
            buf[cnt++] = x->i[j];
        }
        ndim = idx->ndim;
    } else if (!strcmp(op, "Unsqueeze")) {
        if ((st = need_const(I, x, 0, "data", 1))) return st;
        value *ax = input(I, n, 1);
        size_t nax = ax ? (size_t)ax->numel : attr(n, "axes") ? attr(n, "axes")->n_ints : 0;
        if (x->numel > 64 || x->ndim + (int)nax > 1 || nax > 1)
            return oi_fail(I, "only unsqueezing a shape entry to a 1-D shape is supported");
        for (int64_t k = 0; k < x->numel; k++) buf[cnt++] = x->i[k];
        ndim = 1;
    } else { /* Concat */
        if (attr_int(n, "axis", 0) != 0 && attr_int(n, "axis", 0) != -1) return oi_fail(I, "only axis 0 is supported");
        for (size_t j = 0; j < n->n_input; j++) {
            value *v = input(I, n, j);
            if ((st = need_const(I, v, (int)j, "shape part", 1))) return st;
            if (v->ndim != 1 || cnt + v->numel > 64) return oi_fail(I, "only concatenating 1-D shapes is supported");
            for (int64_t k = 0; k < v->numel; k++) buf[cnt++] = v->i[k];
        }
    }
    o->kind = V_CONST, o->is_int = 1, o->ndim = ndim, o->numel = cnt, o->dims[0] = cnt;
    TRACK(o->i, I, (size_t)(cnt ? cnt : 1) * sizeof(int64_t));
    memcpy(o->i, buf, (size_t)cnt * sizeof(int64_t));
    return QAT_OK;
}

qat_status oi_import_node(imp *I, const Onnx__NodeProto *n) {
    const char *op = n->op_type ? n->op_type : "";
    if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx"))
        return oi_fail(I, "domain '%.40s' is not supported (the default ONNX domain only)", n->domain);
    if (!n->n_output || !n->output[0] || !*n->output[0]) return oi_fail(I, "has no output");
    if (!strcmp(op, "Conv")) return op_conv(I, n);
    if (!strcmp(op, "BatchNormalization")) return op_bn(I, n);
    if (!strcmp(op, "Relu") || !strcmp(op, "Clip") || !strcmp(op, "HardSigmoid") || !strcmp(op, "HardSwish") ||
        !strcmp(op, "Sigmoid"))
        return op_act(I, n, op);
    if (!strcmp(op, "Add")) return op_add(I, n);
    if (!strcmp(op, "Mul")) return op_mul(I, n);
    if (!strcmp(op, "MaxPool")) return op_pool2d(I, n, 1);
    if (!strcmp(op, "AveragePool")) return op_pool2d(I, n, 0);
    if (!strcmp(op, "Pad")) return op_pad(I, n);
    if (!strcmp(op, "GlobalAveragePool") || !strcmp(op, "ReduceMean")) return op_pool(I, n, op);
    if (!strcmp(op, "Gemm")) return op_linear(I, n, 0);
    if (!strcmp(op, "MatMul")) return op_linear(I, n, 1);
    if (!strcmp(op, "Flatten")) return op_flatten(I, n, 0);
    if (!strcmp(op, "Reshape")) return op_flatten(I, n, 1);
    if (!strcmp(op, "Identity") || !strcmp(op, "Dropout")) return op_alias(I, n);
    if (!strcmp(op, "Constant")) return op_constant(I, n);
    if (!strcmp(op, "Shape") || !strcmp(op, "Gather") || !strcmp(op, "Unsqueeze") || !strcmp(op, "Concat"))
        return op_shape(I, n, op);
    return oi_fail(I, "unsupported op (supported: %s)", qat_onnx_import_ops);
}

