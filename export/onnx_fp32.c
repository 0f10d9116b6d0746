/* A float model (models/model.h) as a float ONNX graph, the evaluation forward of qat's FP32
 * network: each conv's BatchNorm (running statistics) folded into its weights and a bias,
 * w' = w * gamma / sqrt(var + eps), b' = beta - mean * gamma / sqrt(var + eps) (computed in
 * double, stored as float), so the graph is Conv / Relu / Clip / HardSwish / HardSigmoid / Add /
 * GlobalAveragePool / Mul / Gemm, as deployment runtimes expect (BatchNormalization nodes would
 * be folded by them anyway). Dropout is the identity at inference and is left out. Input and
 * normalisation as the QDQ graph's (export/onnx_qdq.c): raw pixels in, the graph normalises. */
#include "model.h"
#include "onnx.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    onnx_b *b;
    const qat_model *m;
    const char **val;    /* (nlayers + 1): float tensor of layer l's output at [l + 1]; [0] the input */
    const char **prefix; /* unique name per layer */
} fp;

static const char *in_val(fp *g, const qat_layer *L, int k) { return g->val[L->in[k] + 1]; }

/* The activation after a layer's float output f; returns the tensor name to use. */
static const char *activation(fp *g, int l, const char *f, qat_act act) {
    const char *p = g->prefix[l];
    if (act == QAT_ACT_NONE) return f;
    const char *out = onnx_b_str(g->b, "%s.%s", p, qat_act_names[act]);
    if (act == QAT_ACT_RELU) {
        onnx_b_node(g->b, "Relu", out, 1, &f, out);
    } else if (act == QAT_ACT_RELU6) {
        const char *lo = onnx_b_str(g->b, "%s.relu6_min", p), *hi = onnx_b_str(g->b, "%s.relu6_max", p);
        float zero = 0.0f, six = 6.0f;
        onnx_b_init(g->b, lo, ONNX_F32, 0, NULL, &zero);
        onnx_b_init(g->b, hi, ONNX_F32, 0, NULL, &six);
        const char *in[] = {f, lo, hi};
        onnx_b_node(g->b, "Clip", out, 3, in, out);
    } else if (act == QAT_ACT_HARDSWISH) {
        onnx_b_node(g->b, "HardSwish", out, 1, &f, out);
    } else if (act == QAT_ACT_SIGMOID) {
        onnx_b_node(g->b, "Sigmoid", out, 1, &f, out);
    } else { /* hardsigmoid: relu6(x + 3) / 6 */
        onnx_node *n = onnx_b_node(g->b, "HardSigmoid", out, 1, &f, out);
        onnx_b_attr_float(g->b, n, "alpha", 1.0f / 6.0f);
        onnx_b_attr_float(g->b, n, "beta", 0.5f);
    }
    return out;
}

/* Conv with weight (O, I, k, k) and bias (O) initializers. */
static const char *conv_node(fp *g, int l, const char *x, const float *w, const float *bias, int O,
                             int I, int k, int stride, int pad, int groups) {
    const char *p = g->prefix[l];
    const char *wn = onnx_b_str(g->b, "%s.weight", p), *bn = onnx_b_str(g->b, "%s.bias", p),
               *out = onnx_b_str(g->b, "%s.conv", p);
    int64_t wd[4] = {O, I, k, k}, bd[1] = {O};
    onnx_b_init(g->b, wn, ONNX_F32, 4, wd, w);
    onnx_b_init(g->b, bn, ONNX_F32, 1, bd, bias);
    const char *in[] = {x, wn, bn};
    onnx_node *n = onnx_b_node(g->b, "Conv", out, 3, in, out);
    int64_t ks[2] = {k, k}, st[2] = {stride, stride}, pads[4] = {pad, pad, pad, pad};
    onnx_b_attr_ints(g->b, n, "kernel_shape", 2, ks);
    onnx_b_attr_ints(g->b, n, "strides", 2, st);
    onnx_b_attr_ints(g->b, n, "pads", 4, pads);
    onnx_b_attr_int(g->b, n, "group", groups);
    return out;
}

static qat_status conv_bn(fp *g, int l) {
    const qat_layer *L = &g->m->layers[l];
    int O = L->out_c, I = L->in_c / L->groups, K = L->k;
    float *w = malloc(sizeof(float) * (size_t)O * I * K * K), *b = malloc(sizeof(float) * (size_t)O);
    if (!w || !b) {
        free(w), free(b);
        return qat_fail(QAT_ERR_NOMEM, "export: out of memory");
    }
    for (int o = 0; o < O; o++) {
        /* a conv with a bias and no BN (the spec's bn=0, e.g. imported): nothing to fold */
        double s = L->conv_bias ? 1.0 : (double)L->gamma.data[o] / sqrt((double)L->bn.running_var[o] + (double)L->bn.eps);
        b[o] = L->conv_bias ? L->bias.data[o] : (float)((double)L->beta.data[o] - (double)L->bn.running_mean[o] * s);
        for (int ci = 0; ci < I; ci++) /* qat's OHWI -> ONNX's OIHW */
            for (int t = 0; t < K * K; t++)
                w[((size_t)o * I + ci) * K * K + t] = (float)(L->weight.data[((size_t)o * K * K + t) * I + ci] * s);
    }
    const char *y = conv_node(g, l, in_val(g, L, 0), w, b, O, I, K, L->stride, L->pad, L->groups);
    free(w), free(b);
    g->val[l + 1] = activation(g, l, y, L->act);
    return QAT_OK;
}

/* Squeeze-excite's fc on the pooled (N, C, 1, 1) vector: a 1x1 Conv keeps the 4-d shape the
 * channel multiply broadcasts against. */
static qat_status fc(fp *g, int l) {
    const qat_layer *L = &g->m->layers[l];
    const char *y = conv_node(g, l, in_val(g, L, 0), L->weight.data, L->bias.data, L->out_c, L->in_c, 1, 1, 0, 1);
    g->val[l + 1] = activation(g, l, y, L->act);
    return QAT_OK;
}

static qat_status linear(fp *g, int l) {
    const qat_layer *L = &g->m->layers[l];
    const char *p = g->prefix[l];
    const char *x = in_val(g, L, 0), *flat = onnx_b_str(g->b, "%s.flat", p);
    onnx_b_attr_int(g->b, onnx_b_node(g->b, "Flatten", flat, 1, &x, flat), "axis", 1);
    const char *wn = onnx_b_str(g->b, "%s.weight", p), *bn = onnx_b_str(g->b, "%s.bias", p);
    int64_t wd[2] = {L->out_c, L->in_c}, bd[1] = {L->out_c};
    onnx_b_init(g->b, wn, ONNX_F32, 2, wd, L->weight.data);
    onnx_b_init(g->b, bn, ONNX_F32, 1, bd, L->bias.data);
    const char *in[] = {flat, wn, bn};
    const char *out = l == g->m->nlayers - 1 ? "logits" : onnx_b_str(g->b, "%s.gemm", p);
    onnx_b_attr_int(g->b, onnx_b_node(g->b, "Gemm", onnx_b_str(g->b, "%s.gemm", p), 3, in, out), "transB", 1);
    g->val[l + 1] = out;
    return QAT_OK;
}

static qat_status binary(fp *g, int l, const char *op) {
    const qat_layer *L = &g->m->layers[l];
    const char *out = onnx_b_str(g->b, "%s.%s", g->prefix[l], op);
    const char *in[] = {in_val(g, L, 0), in_val(g, L, 1)};
    onnx_b_node(g->b, op, out, 2, in, out);
    g->val[l + 1] = out;
    return QAT_OK;
}

static qat_status layer(fp *g, int l, const char *what) {
    const qat_layer *L = &g->m->layers[l];
    switch (L->kind) {
    case QAT_LAYER_CONV_BN_ACT: return conv_bn(g, l);
    case QAT_LAYER_ADD: return binary(g, l, "Add");
    case QAT_LAYER_CHANNEL_MUL: return binary(g, l, "Mul");
    case QAT_LAYER_GLOBAL_AVGPOOL: {
        const char *x = in_val(g, L, 0), *out = onnx_b_str(g->b, "%s.pool", g->prefix[l]);
        onnx_b_node(g->b, "GlobalAveragePool", out, 1, &x, out);
        g->val[l + 1] = out;
        return QAT_OK;
    }
    case QAT_LAYER_DROPOUT: g->val[l + 1] = in_val(g, L, 0); return QAT_OK;
    case QAT_LAYER_LINEAR: return linear(g, l);
    case QAT_LAYER_ACT: g->val[l + 1] = activation(g, l, in_val(g, L, 0), L->act); return QAT_OK;
    case QAT_LAYER_FC: return fc(g, l);
    case QAT_LAYER_MAXPOOL:
    case QAT_LAYER_AVGPOOL: {
        const char *x = in_val(g, L, 0), *out = onnx_b_str(g->b, "%s.pool", g->prefix[l]);
        onnx_node *n = onnx_b_node(g->b, L->kind == QAT_LAYER_MAXPOOL ? "MaxPool" : "AveragePool", out, 1, &x, out);
        int64_t k[2] = {L->k, L->k}, s[2] = {L->stride, L->stride}, pad[4] = {L->pad, L->pad, L->pad, L->pad};
        onnx_b_attr_ints(g->b, n, "kernel_shape", 2, k);
        onnx_b_attr_ints(g->b, n, "strides", 2, s);
        onnx_b_attr_ints(g->b, n, "pads", 4, pad);
        if (L->kind == QAT_LAYER_AVGPOOL) onnx_b_attr_int(g->b, n, "count_include_pad", 1);
        g->val[l + 1] = out;
        return QAT_OK;
    }
    default:
        return qat_fail(QAT_ERR_ARG, "%s: layer %d '%s': kind %d has no ONNX form", what, l, L->name, (int)L->kind);
    }
}

qat_status qat_onnx_from_model(const qat_model *m, const float mean[4], const float std[4],
                               const char *what, const char *out, qat_onnx_info *info) {
    qat_onnx_info tmp;
    if (!info) info = &tmp;
    memset(info, 0, sizeof *info);
    if (m->nlayers < 1 || m->layers[m->nlayers - 1].kind != QAT_LAYER_LINEAR)
        return qat_fail(QAT_ERR_ARG, "%s: the model does not end in a classifier", what);
    int uses_hardswish = 0;
    for (int l = 0; l < m->nlayers; l++) uses_hardswish |= m->layers[l].act == QAT_ACT_HARDSWISH;
    info->opset = uses_hardswish ? 14 : 13;
    size_t n = (size_t)m->nlayers + 1;
    fp g = {onnx_b_create(), m, calloc(n, sizeof(char *)), calloc(n, sizeof(char *))};
    qat_status st = QAT_OK;
    if (!g.b || !g.val || !g.prefix) st = qat_fail(QAT_ERR_NOMEM, "export: out of memory");
    for (int l = 0; !st && l < m->nlayers; l++) {
        const char *nm = m->layers[l].name;
        int dup = !strcmp(nm, "input");
        for (int j = 0; j < l && !dup; j++) dup = !strcmp(nm, m->layers[j].name);
        g.prefix[l] = dup ? onnx_b_str(g.b, "%s#%d", nm, l) : onnx_b_str(g.b, "%s", nm);
    }
    if (!st) {
        int64_t dims[4] = {-1, m->in_c, m->in_h, m->in_w}, cd[4] = {1, m->in_c, 1, 1};
        onnx_b_input(g.b, "pixels", ONNX_F32, 4, dims);
        float k255 = 255.0f, mn[4], sd[4];
        for (int c = 0; c < m->in_c; c++) mn[c] = mean[c], sd[c] = std[c] != 0 ? std[c] : 1.0f;
        onnx_b_init(g.b, "input.255", ONNX_F32, 0, NULL, &k255);
        onnx_b_init(g.b, "input.mean", ONNX_F32, 4, cd, mn);
        onnx_b_init(g.b, "input.std", ONNX_F32, 4, cd, sd);
        const char *d1[] = {"pixels", "input.255"}, *d2[] = {"input.unit", "input.mean"},
                   *d3[] = {"input.centered", "input.std"};
        onnx_b_node(g.b, "Div", "input.unit", 2, d1, "input.unit");
        onnx_b_node(g.b, "Sub", "input.centered", 2, d2, "input.centered");
        onnx_b_node(g.b, "Div", "input.normalised", 2, d3, "input.normalised");
        g.val[0] = "input.normalised";
    }
    for (int l = 0; !st && l < m->nlayers; l++) st = layer(&g, l, what);
    if (!st) {
        int64_t od[2] = {-1, m->nclasses};
        onnx_b_output(g.b, "logits", ONNX_F32, 2, od);
        qat_onnx_describe_input(g.b, m->in_h, m->in_w, m->in_c, mean, std, info);
        onnx_b_meta(g.b, "qat.form", "FP32, BatchNorm folded into the conv weights and biases");
        onnx_b_meta(g.b, "qat.arch", qat_spec_name(m->spec));
        onnx_b_meta(g.b, "qat.source", what);
        info->nodes = onnx_b_nodes(g.b), info->initializers = onnx_b_initializers(g.b);
        st = onnx_b_write(g.b, "qat_fp32", info->opset, out, &info->bytes);
    }
    onnx_b_destroy(g.b);
    free(g.val), free(g.prefix);
    return st;
}
