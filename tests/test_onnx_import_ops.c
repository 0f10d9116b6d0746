/* ONNX import of the pooling and squeeze-and-excite ops (export/onnx_import_ops.c): MaxPool,
 * AveragePool with a window, Pad folded into the Conv / AveragePool after it, Sigmoid, Mul by a
 * per-channel gate and the 1x1 Convs on a pooled vector that compute it. A graph built with the
 * exporter's writer (no PyTorch) is run by ONNX Runtime and by the imported model (FP32); then
 * the imported model goes through QAT (fake-quant forward and backward), convert, the INT8
 * runtime (== the integer simulation bit for bit on every path), a .q8 file and the QDQ ONNX
 * export run by ONNX Runtime. Bad uses of these ops fail with one line naming the file, the node
 * and the problem. */
#include "export.h"
#include "model.h"
#include "onnx.h"
#include "onnx_import.h"
#include "qmodel.h"
#include "rt_internal.h"
#include "test_onnx_import.h"
#include "test_util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define C_IN 2
#define SIDE 12
#define CLASSES 5

static void conv(onnx_b *b, const char *name, const char *x, int O, int I, int k, int pad, int group, int bias,
                 const char *y, uint64_t seed) {
    const char *w = onnx_b_str(b, "%s.weight", name), *bn = onnx_b_str(b, "%s.bias", name);
    it_init_randn(b, w, 4, (int64_t[]){O, I / group, k, k}, 0.5f, seed);
    if (bias) it_init_randn(b, bn, 1, (int64_t[]){O}, 0.2f, seed + 1);
    onnx_node *n = onnx_b_node(b, "Conv", name, bias ? 3 : 2, (const char *[]){x, w, bn}, y);
    onnx_b_attr_ints(b, n, "pads", 4, (int64_t[]){pad, pad, pad, pad});
    if (group > 1) onnx_b_attr_int(b, n, "group", group);
}

static onnx_node *pool(onnx_b *b, const char *op, const char *name, const char *x, int k, int s, int pad,
                       const char *y) {
    onnx_node *n = onnx_b_node(b, op, name, 1, &x, y);
    onnx_b_attr_ints(b, n, "kernel_shape", 2, (int64_t[]){k, k});
    onnx_b_attr_ints(b, n, "strides", 2, (int64_t[]){s, s});
    onnx_b_attr_ints(b, n, "pads", 4, (int64_t[]){pad, pad, pad, pad});
    return n;
}

static void pad_node(onnx_b *b, const char *name, const char *x, int p, const char *y) {
    const char *pn = onnx_b_str(b, "%s.pads", name);
    onnx_b_init(b, pn, ONNX_I64, 1, (int64_t[]){8}, (int64_t[]){0, 0, p, p, 0, 0, p, p});
    onnx_b_node(b, "Pad", name, 2, (const char *[]){x, pn}, y);
}

/* Graph P: Conv + Relu, MaxPool 3/2 pad 1, Pad + depthwise Conv (pads 0) + BN + Relu,
 * squeeze-and-excite (GlobalAveragePool, 1x1 Conv + Relu, 1x1 Conv, Sigmoid, Mul), Pad +
 * AveragePool 3/2 (PyTorch's nn.AvgPool2d export), 1x1 Conv + Sigmoid, AveragePool 3/1 pad 1
 * counting the padding, MaxPool 2/1, GlobalAveragePool, Flatten, Gemm. */
static void write_graph_p(const char *path, int opset) {
    onnx_b *b = onnx_b_create();
    onnx_b_input(b, "pixels", ONNX_F32, 4, (int64_t[]){-1, C_IN, SIDE, SIDE});
    onnx_b_output(b, "logits", ONNX_F32, 2, (int64_t[]){-1, CLASSES});
    conv(b, "c0", "pixels", 8, C_IN, 3, 1, 1, 1, "y0", 1);
    onnx_b_node(b, "Relu", "relu0", 1, (const char *[]){"y0"}, "r0");
    pool(b, "MaxPool", "mp", "r0", 3, 2, 1, "m0");                      /* (8, 6, 6) */
    pad_node(b, "pad1", "m0", 1, "m0p");
    conv(b, "dw", "m0p", 8, 8, 3, 0, 8, 0, "y1", 3);
    it_init_randn(b, "bn.s", 1, (int64_t[]){8}, 1, 5);
    it_init_randn(b, "bn.b", 1, (int64_t[]){8}, 0.3f, 6);
    it_init_randn(b, "bn.m", 1, (int64_t[]){8}, 0.3f, 7);
    it_init_pos(b, "bn.v", 8, 8);
    onnx_b_node(b, "BatchNormalization", "bn", 5, (const char *[]){"y1", "bn.s", "bn.b", "bn.m", "bn.v"}, "z1");
    onnx_b_node(b, "Relu", "relu1", 1, (const char *[]){"z1"}, "r1");
    onnx_b_node(b, "GlobalAveragePool", "se.pool", 1, (const char *[]){"r1"}, "g0");
    conv(b, "se.fc1", "g0", 4, 8, 1, 0, 1, 1, "g1", 9);
    onnx_b_node(b, "Relu", "se.relu", 1, (const char *[]){"g1"}, "g2");
    conv(b, "se.fc2", "g2", 8, 4, 1, 0, 1, 1, "g3", 11);
    onnx_b_node(b, "Sigmoid", "se.sigmoid", 1, (const char *[]){"g3"}, "gate");
    onnx_b_node(b, "Mul", "se.mul", 2, (const char *[]){"r1", "gate"}, "s1");
    pad_node(b, "pad2", "s1", 1, "s1p");
    pool(b, "AveragePool", "ap", "s1p", 3, 2, 0, "a1");                  /* (8, 3, 3) */
    conv(b, "c3", "a1", 12, 8, 1, 0, 1, 1, "y3", 13);
    onnx_b_node(b, "Sigmoid", "sig3", 1, (const char *[]){"y3"}, "h3");
    onnx_node *n = pool(b, "AveragePool", "ap2", "h3", 3, 1, 1, "a2");   /* (12, 3, 3) */
    onnx_b_attr_int(b, n, "count_include_pad", 1);
    pool(b, "MaxPool", "mp2", "a2", 2, 1, 0, "m2");                      /* (12, 2, 2) */
    onnx_b_node(b, "GlobalAveragePool", "gap", 1, (const char *[]){"m2"}, "p");
    onnx_b_node(b, "Flatten", "flat", 1, (const char *[]){"p"}, "f");
    it_init_randn(b, "fc.weight", 2, (int64_t[]){CLASSES, 12}, 0.8f, 15);
    it_init_randn(b, "fc.bias", 1, (int64_t[]){CLASSES}, 0.1f, 16);
    n = onnx_b_node(b, "Gemm", "fc", 3, (const char *[]){"f", "fc.weight", "fc.bias"}, "logits");
    onnx_b_attr_int(b, n, "transB", 1);
    CU_ASSERT_FATAL(onnx_b_write(b, "p", opset, path, NULL) == QAT_OK);
    onnx_b_destroy(b);
}

static void test_pool_graph_matches_ort(void) {
    const int opsets[3] = {11, 13, 17};
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "p%d.onnx", opsets[i]);
        const char *p = it_path(name);
        write_graph_p(p, opsets[i]);
        double d = it_check_against_ort(p, C_IN, SIDE, SIDE, CLASSES, 1e-5);
        printf("\n  MaxPool/AveragePool/Pad/Sigmoid/Mul graph, opset %d: max |qat - ORT| / max(1, max |logit|) "
               "%.3g", opsets[i], d);
    }
    /* what each op became */
    qat_model *m;
    CU_ASSERT_FATAL(qat_onnx_import(it_path("p13.onnx"), &m) == QAT_OK);
    const char *t = qat_spec_text(m->spec);
    static const char *const want[] = {
        "layer mp maxpool in=c0 k=3 s=2 pad=1\n",
        "layer dw conv in=mp c=8 k=3 s=1 pad=1 g=8 bn=1 act=relu ", /* the Pad folded into it */
        "layer se.fc1 fc in=se.pool c=4 act=relu ",
        "layer se.fc2 fc in=se.fc1 c=8 act=none ",
        "layer se.sigmoid act in=se.fc2 act=sigmoid\n",
        "layer se.mul mul in=dw,se.sigmoid\n",
        "layer ap avgpool2d in=se.mul k=3 s=2 pad=1\n", /* the Pad folded into it */
        "layer c3 conv in=ap c=12 k=1 s=1 pad=0 g=1 bn=0 act=sigmoid ",
        "layer ap2 avgpool2d in=c3 k=3 s=1 pad=1\n",
        "layer mp2 maxpool in=ap2 k=2 s=1 pad=0\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(t, want[i])) {
            printf("\n  missing '%s' in\n%s", want[i], t);
            CU_FAIL("spec line");
        }
    qat_model_free(m);
}

/* x: n NHWC images of raw pixels / 255 (what the INT8 model's normalisation mean 0, std 1 gives). */
static qat_tensor *pixels01(qat_ctx *ctx, const uint8_t *px, int n) {
    qat_tensor *x = qat_tensor_4d(ctx, n, SIDE, SIDE, C_IN);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = px[i] / 255.0f;
    return x;
}

/* The imported graph through QAT, convert, the INT8 runtime, a .q8 file and the QDQ export. */
static void test_pool_graph_int8(void) {
    const char *p = it_path("p_int8.onnx");
    write_graph_p(p, 13);
    qat_model *m;
    CU_ASSERT_FATAL(qat_onnx_import(p, &m) == QAT_OK);
    qat_qconfig cfg;
    CU_ASSERT_FATAL(qat_qconfig_get("x86", &cfg) == QAT_OK);
    qat_qmodel *q;
    CU_ASSERT_FATAL(qat_qmodel_create(m, &cfg, QAT_QMODEL_QAT, QAT_OBS_MINMAX, &q) == QAT_OK);
    enum { N = 32 };
    uint8_t px[N * SIDE * SIDE * C_IN];
    uint64_t seed = 21;
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(test_splitmix32(&seed) >> 24);
    qat_ctx ctx;
    qat_ctx_init(&ctx, 1 << 23);
    /* QAT: the fake-quant graph trains through the pools, the gate and the sigmoid */
    ctx.training = 1, ctx.grad_enabled = 1;
    int labels[N];
    for (int i = 0; i < N; i++) labels[i] = i % CLASSES;
    qat_model_zero_grad(m);
    qat_tensor *yq = qat_quantized_forward(q, &ctx, pixels01(&ctx, px, N));
    CU_ASSERT_FATAL(yq != NULL);
    qat_backward(&ctx, qat_softmax_cross_entropy(&ctx, yq, labels, 0.0f));
    static const char *const grads[] = {"c0.weight", "se.fc1.weight", "se.fc2.bias", "c3.weight"};
    for (int g = 0; g < 4; g++) {
        int pi = qat_model_find_param(m, grads[g]);
        CU_ASSERT_FATAL(pi >= 0);
        const qat_tensor *t = m->param_info[pi].tensor;
        double s = 0;
        for (int64_t i = 0; i < t->numel; i++) s += fabs(t->grad[i]);
        if (!(s > 0)) printf("\n  no gradient reaches %s\n", grads[g]);
        CU_ASSERT(s > 0);
    }
    qat_ctx_reset(&ctx);
    ctx.training = 0, ctx.grad_enabled = 0;
    CU_ASSERT_FATAL(qat_qmodel_freeze_observers(q) == QAT_OK);
    qat_q8_model *im;
    qat_status st = qat_convert_qmodel(q, NULL, NULL, &im);
    if (st) printf("\n  convert: %s\n", qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);
    int kinds[QAT_Q8_KIND_COUNT] = {0}, sig = 0;
    for (int i = 0; i < im->nlayers; i++) {
        kinds[im->layers[i].kind]++;
        sig += im->layers[i].kind == QAT_Q8_LUT && im->layers[i].act == QAT_Q8_ACT_SIGMOID;
    }
    CU_ASSERT(kinds[QAT_Q8_MAXPOOL] == 2 && kinds[QAT_Q8_AVGPOOL2D] == 2 && kinds[QAT_Q8_MUL] == 1 && sig == 2);
    /* the simulation, every native path and oneDNN/auto: the same logits bit for bit */
    qat_tensor *x = pixels01(&ctx, px, N);
    qat_tensor *sim = qat_qsim_forward(im, &ctx, x, NULL);
    CU_ASSERT_FATAL(sim != NULL);
    float ours[N * CLASSES], yr[N * CLASSES];
    int paths = 0, same = 0;
    for (int path = QAT_I8_REF; path < QAT_I8_PATH_COUNT; path++) {
        if (!qat_i8_path_available((qat_i8_path)path)) continue;
        qat_i8_path saved = qat_i8_set_path((qat_i8_path)path);
        qat_rt_options ro;
        qat_rt_options_default(&ro);
        ro.backend = QAT_RT_BACKEND_AUTO;
        qat_rt *rt;
        CU_ASSERT_FATAL(qat_rt_from_model(im, &ro, &rt) == 0);
        CU_ASSERT(qat_rt_run(rt, x->data, N, yr) == 0);
        paths++, same += !memcmp(yr, sim->data, sizeof yr);
        qat_rt_free(rt);
        qat_i8_set_path(saved);
    }
    printf("\n  imported pools/SE/sigmoid model, INT8 runtime == simulation bit for bit on %d of %d paths", same, paths);
    CU_ASSERT(paths > 0 && same == paths);
    /* the eval forward of the QAT model is the simulation */
    qat_tensor *ye = qat_quantized_forward(q, &ctx, x);
    CU_ASSERT(ye && !memcmp(ye->data, sim->data, sizeof yr));
    /* .q8: format version 5 (the new kinds), loads back to the same logits from raw pixels */
    const char *q8 = it_path("p.q8"), *qdq = it_path("p_qdq.onnx");
    CU_ASSERT_FATAL(qat_q8_save(im, q8) == QAT_OK);
    long len;
    unsigned char *buf = test_slurp(q8, &len);
    CU_ASSERT(buf && len > 12 && buf[8] == 5);
    free(buf);
    qat_rt *rt;
    CU_ASSERT_FATAL(qat_rt_load(q8, NULL, &rt) == 0);
    CU_ASSERT(qat_rt_run_u8(rt, px, N, ours) == 0);
    CU_ASSERT(!memcmp(ours, sim->data, sizeof ours));
    qat_rt_free(rt);
    /* the QDQ export (MaxPool, AveragePool, Sigmoid, Mul between DQ and Q) in ONNX Runtime */
    qat_onnx_info info;
    st = qat_export_onnx(q8, qdq, &info);
    if (st) printf("\n  export: %s\n", qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);
    float pf[N * SIDE * SIDE * C_IN], theirs[N * CLASSES];
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C_IN; c++)
            for (int k = 0; k < SIDE * SIDE; k++)
                pf[(i * C_IN + c) * SIDE * SIDE + k] = px[(i * SIDE * SIDE + k) * C_IN + c];
    CU_ASSERT_FATAL(it_ort_logits(qdq, pf, N, C_IN, SIDE, SIDE, theirs, CLASSES));
    int agree = 0;
    double diff = 0, top = 0;
    for (int i = 0; i < N; i++) {
        int a = 0, b = 0;
        for (int k = 0; k < CLASSES; k++) {
            const int j = i * CLASSES + k;
            a = ours[j] > ours[i * CLASSES + a] ? k : a, b = theirs[j] > theirs[i * CLASSES + b] ? k : b;
            diff = fmax(diff, fabs((double)ours[j] - theirs[j])), top = fmax(top, fabs((double)ours[j]));
        }
        agree += a == b;
    }
    printf("\n  its QDQ export in ONNX Runtime vs qat INT8: top-1 %d/%d, max |logit diff| %.3g (max |logit| %.3g), "
           "sigmoid table entries ONNX's Sigmoid reproduces %d/%d",
           agree, N, diff, top, info.lut_exact, info.lut_entries);
    /* ORT averages in float and rounds its own sigmoid: a code may move by one at a tie, so the
     * bar is agreement, not bit equality */
    CU_ASSERT(agree >= N - 1 && diff < 0.05 * fmax(1, top));
    qat_q8_free(im);
    qat_ctx_free(&ctx);
    qat_qmodel_free(q);
    qat_model_free(m);
}

/* x * HardSigmoid(x), PyTorch's export of nn.Hardswish below opset 14: one hardswish act layer
 * (an INT8 table); with the HardSigmoid also read elsewhere it stays a Mul of two maps (refused). */
static void write_hswish(const char *path, int shared) {
    onnx_b *b = onnx_b_create();
    onnx_b_input(b, "pixels", ONNX_F32, 4, (int64_t[]){-1, 1, 8, 8});
    onnx_b_output(b, "logits", ONNX_F32, 2, (int64_t[]){-1, 3});
    conv(b, "c0", "pixels", 6, 1, 3, 1, 1, 1, "y", 41);
    onnx_node *n = onnx_b_node(b, "HardSigmoid", "hsig", 1, (const char *[]){"y"}, "h");
    onnx_b_attr_float(b, n, "alpha", 1.0f / 6);
    onnx_b_node(b, "Mul", "hswish", 2, (const char *[]){"y", "h"}, "z");
    const char *last = "z";
    if (shared) {
        onnx_b_node(b, "Add", "also", 2, (const char *[]){"z", "h"}, "z2");
        last = "z2";
    }
    onnx_b_node(b, "GlobalAveragePool", "gap", 1, &last, "p");
    onnx_b_node(b, "Flatten", "flat", 1, (const char *[]){"p"}, "f");
    it_init_randn(b, "fc.weight", 2, (int64_t[]){3, 6}, 0.5f, 43);
    onnx_node *g = onnx_b_node(b, "Gemm", "fc", 2, (const char *[]){"f", "fc.weight"}, "logits");
    onnx_b_attr_int(b, g, "transB", 1);
    CU_ASSERT_FATAL(onnx_b_write(b, "hswish", 13, path, NULL) == QAT_OK);
    onnx_b_destroy(b);
}

static void test_decomposed_hardswish(void) {
    const char *p = it_path("hswish13.onnx"), *q = it_path("hswish_shared.onnx");
    write_hswish(p, 0);
    double d = it_check_against_ort(p, 1, 8, 8, 3, 1e-5);
    printf("\n  x * HardSigmoid(x) (opset 13) as hardswish: max |qat - ORT| / max(1, max |logit|) %.3g", d);
    qat_model *m;
    CU_ASSERT_FATAL(qat_onnx_import(p, &m) == QAT_OK);
    CU_ASSERT(strstr(qat_spec_text(m->spec), "layer hsig act in=c0 act=hardswish\n") != NULL);
    qat_model_free(m);
    write_hswish(q, 1);
    it_expect_fail(q, "node 'hswish' (Mul): multiplies (6, 8, 8) and (6, 8, 8)");
}

/* ---- bad input: one line naming the file, the node and the problem ----------------------------- */

enum { BAD_DILATION, BAD_CEIL, BAD_NONSQUARE, BAD_ASYM, BAD_PAD_MODE, BAD_PAD_VALUE, BAD_PAD_MAXPOOL,
       BAD_PAD_RELU, BAD_AVG_EXCLUDE, BAD_MUL_MAPS, BAD_COUNT };

/* Conv -> the bad node(s) named "bad" -> GlobalAveragePool -> Flatten -> Gemm. */
static void write_bad(const char *path, int kind) {
    onnx_b *b = onnx_b_create();
    onnx_b_input(b, "pixels", ONNX_F32, 4, (int64_t[]){-1, 1, 8, 8});
    onnx_b_output(b, "logits", ONNX_F32, 2, (int64_t[]){-1, 3});
    conv(b, "c0", "pixels", 4, 1, 3, 1, 1, 1, "y", 31);
    onnx_node *n = NULL;
    switch (kind) {
    case BAD_DILATION:
    case BAD_CEIL:
    case BAD_NONSQUARE:
    case BAD_ASYM:
        n = onnx_b_node(b, "MaxPool", "bad", 1, (const char *[]){"y"}, "z");
        onnx_b_attr_ints(b, n, "kernel_shape", 2, (int64_t[]){3, kind == BAD_NONSQUARE ? 2 : 3});
        onnx_b_attr_ints(b, n, "pads", 4, kind == BAD_ASYM ? (int64_t[]){1, 1, 0, 0} : (int64_t[]){1, 1, 1, 1});
        if (kind == BAD_DILATION) onnx_b_attr_ints(b, n, "dilations", 2, (int64_t[]){2, 2});
        if (kind == BAD_CEIL) onnx_b_attr_int(b, n, "ceil_mode", 1);
        break;
    case BAD_PAD_MODE:
    case BAD_PAD_VALUE: {
        float one = 1;
        onnx_b_init(b, "one", ONNX_F32, 0, NULL, &one);
        onnx_b_init(b, "pads", ONNX_I64, 1, (int64_t[]){8}, (int64_t[]){0, 0, 1, 1, 0, 0, 1, 1});
        n = onnx_b_node(b, "Pad", "bad", kind == BAD_PAD_VALUE ? 3 : 2, (const char *[]){"y", "pads", "one"}, "yp");
        if (kind == BAD_PAD_MODE) {
            onnx_b_attr_int(b, n, "mode", 0); /* replaced below: the writer has no string attribute */
        }
        pool(b, "AveragePool", "after", "yp", 3, 1, 0, "z");
        break;
    }
    case BAD_PAD_MAXPOOL:
        pad_node(b, "pad", "y", 1, "yp");
        pool(b, "MaxPool", "bad", "yp", 3, 1, 0, "z");
        break;
    case BAD_PAD_RELU:
        pad_node(b, "pad", "y", 1, "yp");
        onnx_b_node(b, "Relu", "bad", 1, (const char *[]){"yp"}, "z");
        break;
    case BAD_AVG_EXCLUDE:
        pool(b, "AveragePool", "bad", "y", 3, 1, 1, "z"); /* count_include_pad defaults to 0 */
        break;
    default:
        onnx_b_node(b, "Mul", "bad", 2, (const char *[]){"y", "y"}, "z");
    }
    onnx_b_node(b, "GlobalAveragePool", "gap", 1, (const char *[]){"z"}, "p");
    onnx_b_node(b, "Flatten", "flat", 1, (const char *[]){"p"}, "f");
    it_init_randn(b, "fc.weight", 2, (int64_t[]){3, 4}, 0.5f, 33);
    onnx_node *g = onnx_b_node(b, "Gemm", "fc", 2, (const char *[]){"f", "fc.weight"}, "logits");
    onnx_b_attr_int(b, g, "transB", 1);
    CU_ASSERT_FATAL(onnx_b_write(b, "bad", 13, path, NULL) == QAT_OK);
    onnx_b_destroy(b);
}

static void test_pool_bad_inputs(void) {
    static const char *const want[BAD_COUNT] = {
        [BAD_DILATION] = "node 'bad' (MaxPool): dilation 2 is not supported",
        [BAD_CEIL] = "node 'bad' (MaxPool): ceil_mode=1 is not supported",
        [BAD_NONSQUARE] = "node 'bad' (MaxPool): kernel_shape must be two equal values",
        [BAD_ASYM] = "node 'bad' (MaxPool): pads must be four equal values from 0 to 15 (asymmetric padding",
        [BAD_PAD_MODE] = "node 'bad' (Pad): mode 'reflect' is not supported (constant only)",
        [BAD_PAD_VALUE] = "node 'bad' (Pad): only a constant value of 0 is supported",
        [BAD_PAD_MAXPOOL] = "node 'bad' (MaxPool): a Pad before MaxPool pads with zeros",
        [BAD_PAD_RELU] = "node 'bad' (Relu): input 0 comes from a Pad, which folds only into a Conv or AveragePool",
        [BAD_AVG_EXCLUDE] = "node 'bad' (AveragePool): padding 1 with count_include_pad=0 is not supported",
        [BAD_MUL_MAPS] = "node 'bad' (Mul): multiplies (4, 8, 8) and (4, 8, 8) (C, H, W): only a feature map",
    };
    for (int k = 0; k < BAD_COUNT; k++) {
        char name[32];
        snprintf(name, sizeof name, "bad%d.onnx", k);
        const char *p = it_path(name);
        write_bad(p, k);
        if (k == BAD_PAD_MODE) test_onnx_set_string_attr(p, "bad", "mode", "reflect");
        it_expect_fail(p, want[k]);
    }
}

/* Graph P truncated at ~100 lengths and with 3 bit flips in 400 copies: every import either
 * succeeds or fails with one line naming the file, never crashes (ASan: make asan). */
static void test_pool_graph_mutants(void) {
    const char *p = it_path("p_mut_src.onnx"), *q = it_path("p_mut.onnx");
    write_graph_p(p, 13);
    long len;
    unsigned char *buf = test_slurp(p, &len);
    CU_ASSERT_FATAL(buf && len > 100);
    int failed = 0, tried = 0, bad_lines = 0, imported = 0;
    for (long cut = 1; cut < len; cut += len / 97 + 1, tried++) {
        test_spit(q, buf, (size_t)cut);
        qat_model *m = NULL;
        if (qat_onnx_import(q, &m)) failed += !strncmp(qat_last_error(), q, strlen(q));
        qat_model_free(m);
    }
    CU_ASSERT(failed == tried);
    uint64_t s = 17;
    unsigned char *mb = malloc((size_t)len);
    for (int k = 0; k < 400; k++) {
        memcpy(mb, buf, (size_t)len);
        for (int f = 0; f < 3; f++) {
            uint32_t r = test_splitmix32(&s);
            mb[r % (uint32_t)len] ^= (unsigned char)(1u << (r >> 29));
        }
        test_spit(q, mb, (size_t)len);
        qat_model *m = NULL;
        if (!qat_onnx_import(q, &m)) {
            imported++;
        } else if (strncmp(qat_last_error(), q, strlen(q)) || strchr(qat_last_error(), '\n')) {
            bad_lines++;
            printf("\n  mutant %d: %s", k, qat_last_error());
        }
        qat_model_free(m);
    }
    printf("\n  graph P mutants: %d truncations refused, 400 bit-flipped copies: %d imported, %d refused in one line",
           failed, imported, 400 - imported - bad_lines);
    CU_ASSERT(bad_lines == 0);
    free(mb);
    free(buf);
}

void register_onnx_import_ops_tests(void) {
    CU_pSuite s = CU_add_suite("onnx_import_ops", it_setup, it_teardown);
    CU_add_test(s, "MaxPool, AveragePool, Pad, Sigmoid, SE Mul vs ONNX Runtime (opsets 11, 13, 17)",
                test_pool_graph_matches_ort);
    CU_add_test(s, "imported pools/SE/sigmoid: QAT, convert, INT8 == simulation, .q8, QDQ export in ORT",
                test_pool_graph_int8);
    CU_add_test(s, "x * HardSigmoid(x) (nn.Hardswish below opset 14) as hardswish vs ONNX Runtime",
                test_decomposed_hardswish);
    CU_add_test(s, "bad MaxPool / AveragePool / Pad / Mul: one line naming file, node, op", test_pool_bad_inputs);
    CU_add_test(s, "truncated and bit-flipped pooling graphs: no crash, one line", test_pool_graph_mutants);
}
