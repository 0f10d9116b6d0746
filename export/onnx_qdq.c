/* An INT8 model (runtime/q8.h) as an ONNX QDQ graph: every u8 value of the model becomes a
 * uint8 tensor (NCHW) with its scale and zero point; each INT8 layer reads its operands through
 * DequantizeLinear, runs the float op ONNX defines, and QuantizeLinear gives its u8 output with
 * the layer's own output scale and zero point. Runtimes (ONNX Runtime, OpenVINO, TensorRT)
 * recognise DQ -> op -> Q and run the op on integers, which is how they run PyTorch's and
 * their own quantizers' models.
 *
 * Numbers: the weight codes (s8, per output channel scale on axis 0), the int32 biases (scale
 * s_in * s_w, the unit they are counted in), the weight scales, every activation scale, zero
 * point and clamp come from the .q8 as they are. What ONNX cannot take as stored, a runtime
 * derives from those scales: the requantization multipliers (s_in * s_w / s_out; the exporter
 * counts how many equal the stored ones bit for bit) and the hardswish/hardsigmoid tables (ONNX's
 * HardSwish/HardSigmoid between the DQ and Q; counted likewise).
 *
 * Clamps: QuantizeLinear to uint8 saturates to 0..255. A layer whose clamp [lo, hi] is
 * narrower (ReLU with a zero point above 0, ReLU6 below the top of the range, a qconfig with a
 * smaller activation range) gets a Clip on the u8 codes after its QuantizeLinear: integers, so
 * exact, and the DQ -> op -> Q pattern stays whole for the runtime to fuse. */
#include "onnx.h"
#include "qmath.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    onnx_b *b;
    const qat_q8_model *m;
    const char **code;     /* (nlayers + 1): u8 tensor of value v at [v + 1]; [0] the input */
    const char **scale;    /* its scale initializer (f32 scalar) */
    const char **zp;       /* its zero point initializer (u8 scalar) */
    const char **prefix;   /* per layer: unique name prefix of its nodes and tensors */
    qat_onnx_info *info;
} qdq;

/* DequantizeLinear of value v for the consumer `who` (one DQ per consumer: runtimes fuse a DQ
 * into the one node it feeds). */
static const char *deq(qdq *g, int v, const char *who) {
    const char *out = onnx_b_str(g->b, "%s.dq", who);
    const char *in[] = {g->code[v + 1], g->scale[v + 1], g->zp[v + 1]};
    onnx_b_node(g->b, "DequantizeLinear", out, 3, in, out);
    return out;
}

static void scalar_qparams(qdq *g, int v, float s, int32_t z) {
    const char *p = v < 0 ? "input" : g->prefix[v];
    g->scale[v + 1] = onnx_b_str(g->b, "%s.y_scale", p);
    g->zp[v + 1] = onnx_b_str(g->b, "%s.y_zero_point", p);
    uint8_t zu = (uint8_t)z;
    onnx_b_init(g->b, g->scale[v + 1], ONNX_F32, 0, NULL, &s);
    onnx_b_init(g->b, g->zp[v + 1], ONNX_U8, 0, NULL, &zu);
}

/* QuantizeLinear of the float result `f` into value v's codes (scale s, zero point z), then a
 * Clip on the codes when [lo, hi] is narrower than 0..255; `act` names that clip. */
static void quant_out(qdq *g, int v, const char *f, float s, int32_t z, int32_t lo, int32_t hi,
                      const char *act) {
    const char *p = v < 0 ? "input" : g->prefix[v];
    scalar_qparams(g, v, s, z);
    int clip = lo > 0 || hi < 255;
    const char *q = onnx_b_str(g->b, clip ? "%s.q_full" : "%s.q", p);
    const char *qin[] = {f, g->scale[v + 1], g->zp[v + 1]};
    onnx_b_node(g->b, "QuantizeLinear", onnx_b_str(g->b, "%s.quant", p), 3, qin, q);
    g->code[v + 1] = q;
    if (!clip) return;
    const char *lo_n = onnx_b_str(g->b, "%s.clip_lo", p), *hi_n = onnx_b_str(g->b, "%s.clip_hi", p);
    uint8_t l = (uint8_t)lo, h = (uint8_t)hi;
    onnx_b_init(g->b, lo_n, ONNX_U8, 0, NULL, &l);
    onnx_b_init(g->b, hi_n, ONNX_U8, 0, NULL, &h);
    const char *out = onnx_b_str(g->b, "%s.q", p);
    const char *cin[] = {q, lo_n, hi_n};
    onnx_b_node(g->b, "Clip", onnx_b_str(g->b, "%s.%s", p, act), 3, cin, out);
    g->code[v + 1] = out;
}

/* s8 weight codes (q8 layout OHWI or (out, in)) as DQ(axis 0) of an initializer in ONNX's
 * layout (OIHW), per-channel scales from the .q8. */
static const char *weight(qdq *g, int i, int ndim, const int64_t *dims) {
    const qat_q8_layer *L = &g->m->layers[i];
    const char *p = g->prefix[i];
    int64_t C = dims[0], per = 1;
    for (int d = 1; d < ndim; d++) per *= dims[d];
    int8_t *w = malloc((size_t)(C * per)), *zero = calloc((size_t)C, 1);
    if (!w || !zero) {
        free(w), free(zero);
        return NULL;
    }
    if (ndim == 4) { /* (O, k, k, I) -> (O, I, k, k) */
        int64_t I = dims[1], K = dims[2];
        for (int64_t o = 0; o < C; o++)
            for (int64_t ci = 0; ci < I; ci++)
                for (int64_t t = 0; t < K * K; t++) w[(o * I + ci) * K * K + t] = L->weight[(o * K * K + t) * I + ci];
    } else {
        memcpy(w, L->weight, (size_t)(C * per));
    }
    const char *wn = onnx_b_str(g->b, "%s.weight", p), *sn = onnx_b_str(g->b, "%s.weight_scale", p),
               *zn = onnx_b_str(g->b, "%s.weight_zero_point", p), *out = onnx_b_str(g->b, "%s.weight.dq", p);
    onnx_b_init(g->b, wn, ONNX_S8, ndim, dims, w);
    onnx_b_init(g->b, sn, ONNX_F32, 1, &C, L->wscale);
    onnx_b_init(g->b, zn, ONNX_S8, 1, &C, zero);
    free(w), free(zero);
    const char *in[] = {wn, sn, zn};
    onnx_b_attr_int(g->b, onnx_b_node(g->b, "DequantizeLinear", out, 3, in, out), "axis", 0);
    return out;
}

/* The int32 bias in accumulator units: DQ with scale s_in * s_w[c] (what one unit is worth). */
static const char *bias(qdq *g, int i) {
    const qat_q8_layer *L = &g->m->layers[i];
    const char *p = g->prefix[i];
    int64_t C = L->out_c;
    float *s = malloc((size_t)C * sizeof *s);
    int32_t *zero = calloc((size_t)C, sizeof *zero);
    if (!s || !zero) {
        free(s), free(zero);
        return NULL;
    }
    for (int64_t c = 0; c < C; c++) s[c] = L->sx * L->wscale[c];
    const char *bn = onnx_b_str(g->b, "%s.bias", p), *sn = onnx_b_str(g->b, "%s.bias_scale", p),
               *zn = onnx_b_str(g->b, "%s.bias_zero_point", p), *out = onnx_b_str(g->b, "%s.bias.dq", p);
    onnx_b_init(g->b, bn, ONNX_S32, 1, &C, L->bias);
    onnx_b_init(g->b, sn, ONNX_F32, 1, &C, s);
    onnx_b_init(g->b, zn, ONNX_S32, 1, &C, zero);
    free(s), free(zero);
    const char *in[] = {bn, sn, zn};
    onnx_b_attr_int(g->b, onnx_b_node(g->b, "DequantizeLinear", out, 3, in, out), "axis", 0);
    return out;
}

static void count_mult(qdq *g, float stored, float derived) {
    g->info->mults++;
    g->info->mult_exact += memcmp(&stored, &derived, sizeof stored) == 0;
}

static const char *act_name(qat_q8_act a) {
    return a == QAT_Q8_ACT_RELU ? "relu" : a == QAT_Q8_ACT_RELU6 ? "relu6" : "clamp";
}

static qat_status conv(qdq *g, int i) {
    const qat_q8_layer *L = &g->m->layers[i];
    const char *p = g->prefix[i];
    int64_t dims[4] = {L->out_c, L->in_c / L->groups, L->k, L->k};
    const char *x = deq(g, L->input, p), *w = weight(g, i, 4, dims), *b = bias(g, i);
    if (!w || !b) return qat_fail(QAT_ERR_NOMEM, "export: out of memory");
    const char *f = onnx_b_str(g->b, "%s.conv", p);
    const char *in[] = {x, w, b};
    onnx_node *n = onnx_b_node(g->b, "Conv", f, 3, in, f);
    int64_t k[2] = {L->k, L->k}, s[2] = {L->stride, L->stride}, pad[4] = {L->pad, L->pad, L->pad, L->pad};
    onnx_b_attr_ints(g->b, n, "kernel_shape", 2, k);
    onnx_b_attr_ints(g->b, n, "strides", 2, s);
    onnx_b_attr_ints(g->b, n, "pads", 4, pad);
    onnx_b_attr_int(g->b, n, "group", L->groups);
    for (int c = 0; c < L->out_c; c++) count_mult(g, L->mult[c], qat_requant_mult(L->sx, L->wscale[c], L->sy));
    quant_out(g, i, f, L->sy, L->zy, L->lo, L->hi, act_name(L->act));
    return QAT_OK;
}

static qat_status binary(qdq *g, int i, const char *op) {
    const qat_q8_layer *L = &g->m->layers[i];
    const char *p = g->prefix[i];
    const char *a = deq(g, L->input, onnx_b_str(g->b, "%s.a", p));
    const char *b = deq(g, L->skip, onnx_b_str(g->b, "%s.b", p));
    const char *f = onnx_b_str(g->b, "%s.%s", p, op);
    const char *in[] = {a, b};
    onnx_b_node(g->b, op, f, 2, in, f);
    if (L->kind == QAT_Q8_MUL)
        for (int c = 0; c < L->out_c; c++) count_mult(g, L->mult[c], qat_requant_mult(L->sx, L->sb, L->sy));
    quant_out(g, i, f, L->sy, L->zy, L->lo, L->hi, "relu");
    return QAT_OK;
}

static qat_status avgpool(qdq *g, int i) {
    const qat_q8_layer *L = &g->m->layers[i];
    const char *p = g->prefix[i];
    const char *x = deq(g, L->input, p), *f = onnx_b_str(g->b, "%s.pool", p);
    onnx_b_node(g->b, "GlobalAveragePool", f, 1, &x, f);
    quant_out(g, i, f, L->sy, L->zy, L->lo, L->hi, "clamp");
    return QAT_OK;
}

/* Windowed pools: MaxPool on the dequantized codes, quantized back with the same qparams (the
 * max of a code grid is on it: exact); AveragePool counting the padding as the INT8 layer does. */
static qat_status pool2d(qdq *g, int i, const char *op) {
    const qat_q8_layer *L = &g->m->layers[i];
    const char *p = g->prefix[i];
    const char *x = deq(g, L->input, p), *f = onnx_b_str(g->b, "%s.pool", p);
    onnx_node *n = onnx_b_node(g->b, op, f, 1, &x, f);
    int64_t k[2] = {L->k, L->k}, s[2] = {L->stride, L->stride}, pad[4] = {L->pad, L->pad, L->pad, L->pad};
    onnx_b_attr_ints(g->b, n, "kernel_shape", 2, k);
    onnx_b_attr_ints(g->b, n, "strides", 2, s);
    onnx_b_attr_ints(g->b, n, "pads", 4, pad);
    if (L->kind == QAT_Q8_AVGPOOL2D) onnx_b_attr_int(g->b, n, "count_include_pad", 1);
    quant_out(g, i, f, L->sy, L->zy, L->lo, L->hi, "clamp");
    return QAT_OK;
}

/* ONNX's HardSigmoid is max(0, min(1, alpha x + beta)) and HardSwish x times it with alpha 1/6,
 * beta 1/2: the entries of the table that this, quantized as QuantizeLinear does (dividing by
 * the scale), reproduces (Sigmoid: 1 / (1 + exp(-x)) in float; a runtime's own approximation of
 * exp may differ in the last bit). */
static int lut_entries_exact(const qat_q8_layer *L) {
    int same = 0;
    for (int q = 0; q < 256; q++) {
        float x = qat_dequantize(q, L->sx, L->zx);
        float t = x * (1.0f / 6.0f);
        __asm__("" : "+x"(t)); /* no FMA with the add: ONNX Runtime rounds the product */
        float hs = fmaxf(0.0f, fminf(1.0f, t + 0.5f));
        float y = L->act == QAT_Q8_ACT_HARDSWISH ? x * hs : L->act == QAT_Q8_ACT_SIGMOID ? qat_sigmoid_f(x) : hs;
        int32_t c = qat_clamp_i32((int32_t)nearbyintf(y / L->sy) + L->zy, 0, 255);
        same += qat_clamp_i32(c, L->lo, L->hi) == L->table[q];
    }
    return same;
}

static qat_status lut(qdq *g, int i, const char *what) {
    const qat_q8_layer *L = &g->m->layers[i];
    const char *p = g->prefix[i];
    const char *op = L->act == QAT_Q8_ACT_HARDSWISH ? "HardSwish"
                     : L->act == QAT_Q8_ACT_HARDSIGMOID ? "HardSigmoid"
                     : L->act == QAT_Q8_ACT_SIGMOID ? "Sigmoid" : NULL;
    if (!op)
        return qat_fail(QAT_ERR_ARG, "%s: layer %d '%s': a lookup table of no known activation has no ONNX QDQ form",
                        what, i, L->name);
    const char *x = deq(g, L->input, p), *f = onnx_b_str(g->b, "%s.%s", p, op);
    onnx_node *n = onnx_b_node(g->b, op, f, 1, &x, f);
    if (L->act == QAT_Q8_ACT_HARDSIGMOID) {
        onnx_b_attr_float(g->b, n, "alpha", 1.0f / 6.0f);
        onnx_b_attr_float(g->b, n, "beta", 0.5f);
    }
    g->info->lut_entries += 256;
    g->info->lut_exact += lut_entries_exact(L);
    quant_out(g, i, f, L->sy, L->zy, L->lo, L->hi, "clamp");
    return QAT_OK;
}

/* The classifier: codes (N, C, 1, 1) flattened, DQ, Gemm with the DQ'd s8 weights (out, in)
 * transposed, the float bias; float logits, the graph's output. */
static qat_status linear(qdq *g, int i) {
    const qat_q8_layer *L = &g->m->layers[i];
    const char *p = g->prefix[i];
    const char *flat = onnx_b_str(g->b, "%s.flat", p);
    const char *x = g->code[L->input + 1];
    onnx_b_attr_int(g->b, onnx_b_node(g->b, "Flatten", flat, 1, &x, flat), "axis", 1);
    g->code[i + 1] = flat; /* so that deq reads the flattened codes with the producer's qparams */
    g->scale[i + 1] = g->scale[L->input + 1], g->zp[i + 1] = g->zp[L->input + 1];
    const char *a = deq(g, i, p);
    int64_t dims[2] = {L->out_c, L->in_c};
    const char *w = weight(g, i, 2, dims);
    if (!w) return qat_fail(QAT_ERR_NOMEM, "export: out of memory");
    const char *in[3] = {a, w, ""};
    if (L->fbias) {
        int64_t C = L->out_c;
        in[2] = onnx_b_str(g->b, "%s.bias", p);
        onnx_b_init(g->b, in[2], ONNX_F32, 1, &C, L->fbias);
    }
    onnx_node *n = onnx_b_node(g->b, "Gemm", onnx_b_str(g->b, "%s.gemm", p), L->fbias ? 3 : 2, in, "logits");
    onnx_b_attr_int(g->b, n, "transB", 1);
    for (int c = 0; c < L->out_c; c++) count_mult(g, L->mult[c], L->sx * L->wscale[c]);
    return QAT_OK;
}

/* ---- float layers (a mixed-precision model, runtime/q8.h): DequantizeLinear into a float region,
 * float Conv / Gemm with the .q8's float weights inside it (no DQ on the weights, so a runtime
 * keeps them float rather than fusing an integer kernel), QuantizeLinear out of it. A float value
 * is a plain float tensor (NCHW) with no scale or zero point. */

/* The DequantizeLinear into a float region carries its scale and zero point per axis (all equal:
 * the values a scalar would give), on the channels (axis 1), or the rows (axis 2) of a
 * one-channel value. ONNX Runtime's WeightBiasQuantization pass quantizes the float weights of a
 * Conv/Gemm whose input comes from a per-tensor DQ, which runs the float layer in INT8 after all
 * (measured: ORT's logits up to 1.4% of the largest off qat's, on every image); it leaves a
 * per-axis DQ alone. */
static qat_status dequant(qdq *g, int i) {
    const qat_q8_layer *L = &g->m->layers[i];
    const char *p = g->prefix[i];
    const int v = L->input;
    const int64_t ch = v < 0 ? g->m->in_c : g->m->layers[v].out_c, rows = v < 0 ? g->m->in_h : g->m->layers[v].out_h;
    const int axis = ch > 1 || rows == 1 ? 1 : 2;
    const int64_t C = axis == 1 ? ch : rows;
    float s = v < 0 ? g->m->in_scale : g->m->layers[v].sy;
    uint8_t z = (uint8_t)(v < 0 ? g->m->in_zp : g->m->layers[v].zy);
    float *sc = malloc(sizeof(float) * (size_t)C);
    uint8_t *zc = malloc((size_t)C);
    if (!sc || !zc) {
        free(sc), free(zc);
        return qat_fail(QAT_ERR_NOMEM, "export: out of memory");
    }
    for (int64_t c = 0; c < C; c++) sc[c] = s, zc[c] = z;
    const char *sn = onnx_b_str(g->b, "%s.x_scale", p), *zn = onnx_b_str(g->b, "%s.x_zero_point", p),
               *out = onnx_b_str(g->b, "%s.dq", p);
    onnx_b_init(g->b, sn, ONNX_F32, 1, &C, sc);
    onnx_b_init(g->b, zn, ONNX_U8, 1, &C, zc);
    free(sc), free(zc);
    const char *in[] = {g->code[v + 1], sn, zn};
    onnx_b_attr_int(g->b, onnx_b_node(g->b, "DequantizeLinear", out, 3, in, out), "axis", axis);
    g->code[i + 1] = out;
    return QAT_OK;
}

static qat_status quant(qdq *g, int i) {
    const qat_q8_layer *L = &g->m->layers[i];
    quant_out(g, i, g->code[L->input + 1], L->sy, L->zy, L->lo, L->hi, "clamp");
    return QAT_OK;
}

/* The float activation of a float conv (the runtime's qat_q8_f32_act of L->act) after f. */
static const char *float_act(qdq *g, int i, const char *f) {
    const qat_q8_layer *L = &g->m->layers[i];
    const char *p = g->prefix[i];
    if (L->act == QAT_Q8_ACT_NONE) return f;
    static const char *const names[QAT_Q8_ACT_COUNT] = {"none", "relu", "relu6", "hardswish", "hardsigmoid"};
    const char *out = onnx_b_str(g->b, "%s.%s", p, names[L->act]);
    if (L->act == QAT_Q8_ACT_RELU) {
        onnx_b_node(g->b, "Relu", out, 1, &f, out);
    } else if (L->act == QAT_Q8_ACT_RELU6) {
        const char *lo = onnx_b_str(g->b, "%s.relu6_min", p), *hi = onnx_b_str(g->b, "%s.relu6_max", p);
        float zero = 0.0f, six = 6.0f;
        onnx_b_init(g->b, lo, ONNX_F32, 0, NULL, &zero);
        onnx_b_init(g->b, hi, ONNX_F32, 0, NULL, &six);
        const char *in[] = {f, lo, hi};
        onnx_b_node(g->b, "Clip", out, 3, in, out);
    } else if (L->act == QAT_Q8_ACT_HARDSWISH) {
        onnx_b_node(g->b, "HardSwish", out, 1, &f, out);
    } else {
        onnx_node *n = onnx_b_node(g->b, "HardSigmoid", out, 1, &f, out);
        onnx_b_attr_float(g->b, n, "alpha", 1.0f / 6.0f);
        onnx_b_attr_float(g->b, n, "beta", 0.5f);
    }
    return out;
}

static qat_status fconv(qdq *g, int i) {
    const qat_q8_layer *L = &g->m->layers[i];
    const char *p = g->prefix[i];
    const int64_t O = L->out_c, I = L->in_c / L->groups, K = L->k;
    float *w = malloc(sizeof(float) * (size_t)(O * I * K * K));
    if (!w) return qat_fail(QAT_ERR_NOMEM, "export: out of memory");
    for (int64_t o = 0; o < O; o++) /* (O, k, k, I) -> (O, I, k, k) */
        for (int64_t ci = 0; ci < I; ci++)
            for (int64_t t = 0; t < K * K; t++) w[(o * I + ci) * K * K + t] = L->fweight[(o * K * K + t) * I + ci];
    const char *wn = onnx_b_str(g->b, "%s.fweight", p), *bn = onnx_b_str(g->b, "%s.fbias", p),
               *f = onnx_b_str(g->b, "%s.fconv", p);
    int64_t wd[4] = {O, I, K, K};
    onnx_b_init(g->b, wn, ONNX_F32, 4, wd, w);
    onnx_b_init(g->b, bn, ONNX_F32, 1, &O, L->fbias);
    free(w);
    const char *in[] = {g->code[L->input + 1], wn, bn};
    onnx_node *n = onnx_b_node(g->b, "Conv", f, 3, in, f);
    int64_t k[2] = {K, K}, s[2] = {L->stride, L->stride}, pad[4] = {L->pad, L->pad, L->pad, L->pad};
    onnx_b_attr_ints(g->b, n, "kernel_shape", 2, k);
    onnx_b_attr_ints(g->b, n, "strides", 2, s);
    onnx_b_attr_ints(g->b, n, "pads", 4, pad);
    onnx_b_attr_int(g->b, n, "group", L->groups);
    g->code[i + 1] = float_act(g, i, f);
    return QAT_OK;
}

/* The classifier in float: its float input (N, C, 1, 1) flattened, Gemm with the float weights
 * (out, in) transposed and the float bias: the graph's logits. */
static qat_status flinear(qdq *g, int i) {
    const qat_q8_layer *L = &g->m->layers[i];
    const char *p = g->prefix[i];
    const char *flat = onnx_b_str(g->b, "%s.flat", p), *x = g->code[L->input + 1];
    onnx_b_attr_int(g->b, onnx_b_node(g->b, "Flatten", flat, 1, &x, flat), "axis", 1);
    int64_t wd[2] = {L->out_c, L->in_c}, C = L->out_c;
    const char *wn = onnx_b_str(g->b, "%s.fweight", p), *bn = onnx_b_str(g->b, "%s.fbias", p);
    onnx_b_init(g->b, wn, ONNX_F32, 2, wd, L->fweight);
    if (L->fbias) onnx_b_init(g->b, bn, ONNX_F32, 1, &C, L->fbias);
    const char *in[] = {flat, wn, bn};
    onnx_node *n = onnx_b_node(g->b, "Gemm", onnx_b_str(g->b, "%s.gemm", p), L->fbias ? 3 : 2, in, "logits");
    onnx_b_attr_int(g->b, n, "transB", 1);
    return QAT_OK;
}

/* The input: raw pixels (float, 0..255) normalised as qat_rt_run_u8 does
 * ((pixel / 255 - mean) / std, each step rounded to float), then quantized. */
static void input(qdq *g) {
    const qat_q8_model *m = g->m;
    onnx_b *b = g->b;
    int64_t dims[4] = {-1, m->in_c, m->in_h, m->in_w}, cd[4] = {1, m->in_c, 1, 1};
    onnx_b_input(b, "pixels", ONNX_F32, 4, dims);
    float k255 = 255.0f, mean[4], sd[4];
    for (int c = 0; c < m->in_c; c++) mean[c] = m->mean[c], sd[c] = m->std[c] != 0 ? m->std[c] : 1.0f;
    onnx_b_init(b, "input.255", ONNX_F32, 0, NULL, &k255);
    onnx_b_init(b, "input.mean", ONNX_F32, 4, cd, mean);
    onnx_b_init(b, "input.std", ONNX_F32, 4, cd, sd);
    const char *d1[] = {"pixels", "input.255"}, *d2[] = {"input.unit", "input.mean"},
               *d3[] = {"input.centered", "input.std"};
    onnx_b_node(b, "Div", "input.unit", 2, d1, "input.unit");
    onnx_b_node(b, "Sub", "input.centered", 2, d2, "input.centered");
    onnx_b_node(b, "Div", "input.normalised", 2, d3, "input.normalised");
    quant_out(g, -1, "input.normalised", m->in_scale, m->in_zp, m->in_qmin, m->in_qmax, "clamp");
    /* Which of the 256 pixel values per channel QuantizeLinear (x / scale) maps to the code
     * qat's runtime computes (x * (1 / scale)). */
    float inv = 1.0f / m->in_scale;
    for (int c = 0; c < m->in_c; c++)
        for (int v = 0; v < 256; v++) {
            float x = (v / 255.0f - mean[c]) / sd[c];
            int32_t ours = qat_quantize(x, inv, m->in_zp, m->in_qmin, m->in_qmax);
            int32_t theirs = qat_clamp_i32((int32_t)nearbyintf(x / m->in_scale) + m->in_zp, 0, 255);
            theirs = qat_clamp_i32(theirs, m->in_qmin, m->in_qmax);
            g->info->input_values++;
            g->info->input_exact += ours == theirs;
        }
}

static qat_status build(qdq *g, const char *what) {
    const qat_q8_model *m = g->m;
    input(g);
    for (int i = 0; i < m->nlayers; i++) {
        const qat_q8_layer *L = &m->layers[i];
        qat_status st;
        switch (L->kind) {
        case QAT_Q8_CONV: st = conv(g, i); break;
        case QAT_Q8_ADD: st = binary(g, i, "Add"); break;
        case QAT_Q8_MUL: st = binary(g, i, "Mul"); break;
        case QAT_Q8_AVGPOOL: st = avgpool(g, i); break;
        case QAT_Q8_LUT: st = lut(g, i, what); break;
        case QAT_Q8_LINEAR: st = linear(g, i); break;
        case QAT_Q8_MAXPOOL: st = pool2d(g, i, "MaxPool"); break;
        case QAT_Q8_AVGPOOL2D: st = pool2d(g, i, "AveragePool"); break;
        case QAT_Q8_DEQUANT: st = dequant(g, i); break;
        case QAT_Q8_QUANT: st = quant(g, i); break;
        case QAT_Q8_FCONV: st = fconv(g, i); break;
        case QAT_Q8_FLINEAR: st = flinear(g, i); break;
        default:
            st = qat_fail(QAT_ERR_ARG, "%s: layer %d '%s': kind '%s' has no ONNX QDQ form in this exporter",
                          what, i, L->name,
                          (unsigned)L->kind < QAT_Q8_KIND_COUNT ? qat_q8_kinds[L->kind].name : "?");
        }
        if (st) return st;
    }
    int64_t od[2] = {-1, m->nclasses};
    onnx_b_output(g->b, "logits", ONNX_F32, 2, od);
    return QAT_OK;
}

/* Node and tensor names start with the layer's name; a name seen before gets "#i". */
static void prefixes(qdq *g) {
    for (int i = 0; i < g->m->nlayers; i++) {
        const char *n = g->m->layers[i].name;
        int dup = !strcmp(n, "input");
        for (int j = 0; j < i && !dup; j++) dup = !strcmp(n, g->m->layers[j].name);
        g->prefix[i] = dup ? onnx_b_str(g->b, "%s#%d", n, i) : onnx_b_str(g->b, "%s", n);
    }
}

qat_status qat_onnx_from_q8(const qat_q8_model *m, const char *what, const char *out,
                            qat_onnx_info *info) {
    qat_onnx_info tmp;
    if (!info) info = &tmp;
    memset(info, 0, sizeof *info);
    int uses_hardswish = 0;
    for (int i = 0; i < m->nlayers; i++)
        uses_hardswish |= (m->layers[i].kind == QAT_Q8_LUT || m->layers[i].kind == QAT_Q8_FCONV) &&
                          m->layers[i].act == QAT_Q8_ACT_HARDSWISH;
    info->opset = uses_hardswish ? 14 : 13; /* per-axis QDQ: 13; HardSwish: 14 */
    size_t n = (size_t)m->nlayers + 1;
    qdq g = {onnx_b_create(), m, calloc(n, sizeof(char *)), calloc(n, sizeof(char *)),
             calloc(n, sizeof(char *)), calloc(n, sizeof(char *)), info};
    qat_status st = QAT_OK;
    if (!g.b || !g.code || !g.scale || !g.zp || !g.prefix) st = qat_fail(QAT_ERR_NOMEM, "export: out of memory");
    if (!st) {
        prefixes(&g);
        st = build(&g, what);
    }
    if (!st) {
        qat_onnx_describe_input(g.b, m->in_h, m->in_w, m->in_c, m->mean, m->std, info);
        onnx_b_meta(g.b, "qat.form", "INT8 QDQ (u8 activations, s8 per-channel weights, s32 biases)");
        onnx_b_meta(g.b, "qat.arch", m->arch);
        onnx_b_meta(g.b, "qat.qconfig", m->qconfig);
        onnx_b_meta(g.b, "qat.source", what);
        info->nodes = onnx_b_nodes(g.b), info->initializers = onnx_b_initializers(g.b);
        st = onnx_b_write(g.b, "qat_int8", info->opset, out, &info->bytes);
    }
    onnx_b_destroy(g.b);
    free(g.code), free(g.scale), free(g.zp), free(g.prefix);
    return st;
}

qat_status qat_export_onnx(const char *q8, const char *out, qat_onnx_info *info) {
    if (!q8 || !out) return qat_fail(QAT_ERR_ARG, "export: a model and an output path are required");
    qat_q8_model *m;
    qat_status st = qat_q8_load(q8, &m);
    if (st) return st;
    st = qat_onnx_from_q8(m, q8, out, info);
    qat_q8_free(m);
    return st;
}
