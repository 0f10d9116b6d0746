/* ONNX import (export/onnx_import.c): graphs built here with the exporter's own writer
 * (export/onnx.h, no PyTorch) covering every supported op, run by ONNX Runtime (tests/onnx/
 * ort_run.js) and by the imported qat model on the same inputs: the logits agree. Bad inputs
 * (unsupported op, opset < 11, external data, byte size mismatch, cycle, dangling input,
 * truncated and bit-flipped files) fail with one line naming the file, the node and the
 * problem, and never crash. */
#include "model.h"
#include "onnx.h"
#include "onnx/onnx.pb-c.h"
#include "onnx_import.h"
#include "test_onnx_import.h"
#include "test_util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];

int it_setup(void) {
    snprintf(dir, sizeof dir, "/tmp/qat_import_XXXXXX");
    return mkdtemp(dir) ? 0 : 1;
}
int it_teardown(void) {
    return test_rm_tree(dir);
}

const char *it_path(const char *name) {
    static char p[8][160];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

/* n values N(0, scale) (deterministic by seed). */
float *it_randn(int64_t n, float scale, uint64_t seed) {
    float *v = malloc((size_t)n * sizeof(float));
    qat_rng r;
    qat_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) v[i] = scale * qat_rng_normal(&r);
    return v;
}

void it_init_randn(onnx_b *b, const char *name, int ndim, const int64_t *dims, float scale, uint64_t seed) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= dims[d];
    float *v = it_randn(n, scale, seed);
    onnx_b_init(b, name, ONNX_F32, ndim, dims, v);
    free(v);
}

void it_init_pos(onnx_b *b, const char *name, int n, uint64_t seed) { /* BN variances: 0.2 .. 1.2 */
    float *v = it_randn(n, 1, seed);
    for (int i = 0; i < n; i++) v[i] = 0.2f + fabsf(v[i]) * 0.5f;
    onnx_b_init(b, name, ONNX_F32, 1, (int64_t[]){n}, v);
    free(v);
}

/* Input "pixels", output "logits": the names tests/onnx/ort_run.js feeds and reads.
 *
 * Graph A (opset 14 and up: HardSwish): Conv+bias+Relu, depthwise Conv + BN (eps 1e-3) + Clip(0, 6) from
 * initializers, 1x1 Conv with bias + BN, residual Add, strided Conv + HardSwish, HardSigmoid on
 * its own, Identity, GlobalAveragePool, Shape/Gather/Unsqueeze/Concat computing the Reshape's
 * shape, Dropout, MatMul + Add. */
static void write_graph_a(const char *path, int opset) {
    onnx_b *b = onnx_b_create();
    onnx_b_input(b, "pixels", ONNX_F32, 4, (int64_t[]){-1, 2, 9, 9});
    onnx_b_output(b, "logits", ONNX_F32, 2, (int64_t[]){-1, 3});
    it_init_randn(b, "c0.weight", 4, (int64_t[]){8, 2, 3, 3}, 0.4f, 1);
    it_init_randn(b, "c0.bias", 1, (int64_t[]){8}, 0.2f, 2);
    onnx_node *n = onnx_b_node(b, "Conv", "conv0", 3, (const char *[]){"pixels", "c0.weight", "c0.bias"}, "y0");
    onnx_b_attr_ints(b, n, "pads", 4, (int64_t[]){1, 1, 1, 1});
    onnx_b_attr_ints(b, n, "kernel_shape", 2, (int64_t[]){3, 3});
    onnx_b_node(b, "Relu", "relu0", 1, (const char *[]){"y0"}, "r0");
    it_init_randn(b, "onnx::Conv_1", 4, (int64_t[]){8, 1, 3, 3}, 0.5f, 3);
    n = onnx_b_node(b, "Conv", "dw", 2, (const char *[]){"r0", "onnx::Conv_1"}, "y1");
    onnx_b_attr_ints(b, n, "pads", 4, (int64_t[]){1, 1, 1, 1});
    onnx_b_attr_int(b, n, "group", 8);
    it_init_randn(b, "bn1.s", 1, (int64_t[]){8}, 1, 4);
    it_init_randn(b, "bn1.b", 1, (int64_t[]){8}, 0.3f, 5);
    it_init_randn(b, "bn1.m", 1, (int64_t[]){8}, 0.3f, 6);
    it_init_pos(b, "bn1.v", 8, 7);
    n = onnx_b_node(b, "BatchNormalization", "bn1", 5, (const char *[]){"y1", "bn1.s", "bn1.b", "bn1.m", "bn1.v"}, "z1");
    onnx_b_attr_float(b, n, "epsilon", 1e-3f);
    float lo = 0, hi = 6;
    onnx_b_init(b, "zero", ONNX_F32, 0, NULL, &lo);
    onnx_b_init(b, "six", ONNX_F32, 0, NULL, &hi);
    onnx_b_node(b, "Clip", "clip1", 3, (const char *[]){"z1", "zero", "six"}, "r1");
    it_init_randn(b, "c2.weight", 4, (int64_t[]){8, 8, 1, 1}, 0.4f, 8);
    it_init_randn(b, "c2.bias", 1, (int64_t[]){8}, 0.2f, 9);
    onnx_b_node(b, "Conv", "pw", 3, (const char *[]){"r1", "c2.weight", "c2.bias"}, "y2");
    it_init_randn(b, "bn2.s", 1, (int64_t[]){8}, 1, 10);
    it_init_randn(b, "bn2.b", 1, (int64_t[]){8}, 0.3f, 11);
    it_init_randn(b, "bn2.m", 1, (int64_t[]){8}, 0.3f, 12);
    it_init_pos(b, "bn2.v", 8, 13);
    onnx_b_node(b, "BatchNormalization", "bn2", 5, (const char *[]){"y2", "bn2.s", "bn2.b", "bn2.m", "bn2.v"}, "z2");
    onnx_b_node(b, "Add", "res", 2, (const char *[]){"z2", "r0"}, "s");
    it_init_randn(b, "c3.weight", 4, (int64_t[]){12, 8, 3, 3}, 0.3f, 14);
    it_init_randn(b, "c3.bias", 1, (int64_t[]){12}, 0.2f, 15);
    n = onnx_b_node(b, "Conv", "c3", 3, (const char *[]){"s", "c3.weight", "c3.bias"}, "y3");
    onnx_b_attr_ints(b, n, "pads", 4, (int64_t[]){1, 1, 1, 1});
    onnx_b_attr_ints(b, n, "strides", 2, (int64_t[]){2, 2});
    onnx_b_node(b, "HardSwish", "hs", 1, (const char *[]){"y3"}, "h3");
    n = onnx_b_node(b, "HardSigmoid", "hsig", 1, (const char *[]){"h3"}, "h4");
    onnx_b_attr_float(b, n, "alpha", 1.0f / 6);
    onnx_b_node(b, "Identity", "id", 1, (const char *[]){"h4"}, "h5");
    onnx_b_node(b, "GlobalAveragePool", "gap", 1, (const char *[]){"h5"}, "p");
    onnx_b_node(b, "Shape", "shape", 1, (const char *[]){"p"}, "shp");
    int64_t zero64 = 0, minus1 = -1, ax0 = 0;
    onnx_b_init(b, "i0", ONNX_I64, 0, NULL, &zero64);
    onnx_b_node(b, "Gather", "gather", 2, (const char *[]){"shp", "i0"}, "nb");
    onnx_b_init(b, "axes0", ONNX_I64, 1, (int64_t[]){1}, &ax0);
    onnx_b_node(b, "Unsqueeze", "unsq", 2, (const char *[]){"nb", "axes0"}, "nb1");
    onnx_b_init(b, "m1", ONNX_I64, 1, (int64_t[]){1}, &minus1);
    n = onnx_b_node(b, "Concat", "cat", 2, (const char *[]){"nb1", "m1"}, "newshape");
    onnx_b_attr_int(b, n, "axis", 0);
    onnx_b_node(b, "Reshape", "reshape", 2, (const char *[]){"p", "newshape"}, "f");
    onnx_b_node(b, "Dropout", "drop", 1, (const char *[]){"f"}, "f2");
    it_init_randn(b, "fc.w", 2, (int64_t[]){12, 3}, 0.5f, 16);
    it_init_randn(b, "fc.b", 1, (int64_t[]){3}, 0.1f, 17);
    onnx_b_node(b, "MatMul", "mm", 2, (const char *[]){"f2", "fc.w"}, "mmo");
    onnx_b_node(b, "Add", "mmadd", 2, (const char *[]){"mmo", "fc.b"}, "logits");
    CU_ASSERT_FATAL(onnx_b_write(b, "a", opset, path, NULL) == QAT_OK);
    onnx_b_destroy(b);
}

/* Graph B (opset 11): Conv (no bias) + Clip(0, 6) from Constant nodes, ReduceMean over (2, 3),
 * Flatten, Gemm with transB = 1. */
static void write_graph_b(const char *path) {
    onnx_b *b = onnx_b_create();
    onnx_b_input(b, "pixels", ONNX_F32, 4, (int64_t[]){-1, 1, 8, 8});
    onnx_b_output(b, "logits", ONNX_F32, 2, (int64_t[]){-1, 4});
    it_init_randn(b, "w", 4, (int64_t[]){6, 1, 3, 3}, 0.5f, 21);
    onnx_node *n = onnx_b_node(b, "Conv", "conv", 2, (const char *[]){"pixels", "w"}, "c");
    onnx_b_attr_ints(b, n, "pads", 4, (int64_t[]){0, 0, 0, 0});
    n = onnx_b_node(b, "Constant", "lo", 0, NULL, "lo");
    onnx_b_attr_float(b, n, "value_float", 0.0f);
    n = onnx_b_node(b, "Constant", "hi", 0, NULL, "hi");
    onnx_b_attr_float(b, n, "value_float", 6.0f);
    onnx_b_node(b, "Clip", "clip", 3, (const char *[]){"c", "lo", "hi"}, "r");
    n = onnx_b_node(b, "ReduceMean", "mean", 1, (const char *[]){"r"}, "p");
    onnx_b_attr_ints(b, n, "axes", 2, (int64_t[]){2, 3});
    onnx_b_node(b, "Flatten", "flat", 1, (const char *[]){"p"}, "f");
    it_init_randn(b, "gw", 2, (int64_t[]){4, 6}, 0.5f, 22);
    it_init_randn(b, "gb", 1, (int64_t[]){4}, 0.1f, 23);
    n = onnx_b_node(b, "Gemm", "gemm", 3, (const char *[]){"f", "gw", "gb"}, "logits");
    onnx_b_attr_int(b, n, "transB", 1);
    CU_ASSERT_FATAL(onnx_b_write(b, "b", 11, path, NULL) == QAT_OK);
    onnx_b_destroy(b);
}

/* Rewrites the model at path through protobuf-c: edit(model) changes it in place. */
static void rewrite(const char *path, const char *out, void (*edit)(Onnx__ModelProto *)) {
    long len;
    unsigned char *buf = test_slurp(path, &len);
    CU_ASSERT_FATAL(buf && len > 0);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, (size_t)len, buf);
    CU_ASSERT_FATAL(m != NULL);
    edit(m);
    size_t n = onnx__model_proto__get_packed_size(m);
    unsigned char *o = malloc(n);
    onnx__model_proto__pack(m, o);
    test_spit(out, o, n);
    free(o);
    onnx__model_proto__free_unpacked(m, NULL);
    free(buf);
}

/* test_onnx_set_string_attr: node g_node's attribute g_attr becomes the string g_val (the writer
 * has no string attributes). */
static const char *g_node, *g_attr, *g_val;
static void ed_string_attr(Onnx__ModelProto *m) {
    for (size_t i = 0; i < m->graph->n_node; i++) {
        Onnx__NodeProto *n = m->graph->node[i];
        if (strcmp(n->name, g_node)) continue;
        for (size_t j = 0; j < n->n_attribute; j++) {
            Onnx__AttributeProto *a = n->attribute[j];
            if (strcmp(a->name, g_attr)) continue;
            a->has_i = 0;
            a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING, a->has_type = 1;
            a->s.len = strlen(g_val);
            a->s.data = (uint8_t *)strdup(g_val); /* free_unpacked frees it */
            a->has_s = 1;
        }
    }
}
void test_onnx_set_string_attr(const char *path, const char *node, const char *attr, const char *value) {
    g_node = node, g_attr = attr, g_val = value;
    rewrite(path, path, ed_string_attr);
}

/* Float initializers moved from raw_data to the typed float_data field. The unpacked message
 * owns raw_data's buffer, so the floats are copied into it and float_data points there. */
static void to_typed(Onnx__ModelProto *m) {
    for (size_t i = 0; i < m->graph->n_initializer; i++) {
        Onnx__TensorProto *t = m->graph->initializer[i];
        if (t->data_type != 1 || !t->has_raw_data) continue;
        t->n_float_data = t->raw_data.len / 4;
        t->float_data = malloc(t->raw_data.len + 1); /* free_unpacked frees it (malloc allocator) */
        memcpy(t->float_data, t->raw_data.data, t->raw_data.len);
        t->has_raw_data = 0; /* not packed; the buffer is still freed */
    }
}

/* ORT's logits of n NCHW inputs, or 0 when it did not run. */
int it_ort_logits(const char *model, const float *x, int n, int c, int h, int w, float *out, int classes) {
    const char *in = it_path("in.f32"), *op = it_path("out.f32");
    test_spit(in, x, (size_t)n * c * h * w * sizeof(float));
    unlink(op);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "node tests/onnx/ort_run.js '%s' '%s' %d %d %d %d '%s'", model, in, n, c, h, w, op);
    int st = system(cmd);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        printf("\n  ONNX Runtime did not run %s (install: sh scripts/deps.sh)\n", model);
        return 0;
    }
    long len;
    unsigned char *b = test_slurp(op, &len);
    int ok = b && len == (long)((size_t)n * classes * sizeof(float));
    if (ok) memcpy(out, b, (size_t)len);
    free(b);
    return ok;
}

/* Imports path, runs n random images through qat (NHWC) and ORT (NCHW): max |diff| <= tol. */
double it_check_against_ort(const char *path, int c, int h, int w, int classes, double tol) {
    qat_model *m;
    qat_status st = qat_onnx_import(path, &m);
    if (st) printf("\n  import failed: %s\n", qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);
    CU_ASSERT(m->in_c == c && m->in_h == h && m->in_w == w && m->nclasses == classes);
    const int n = 6;
    float *x = it_randn((int64_t)n * c * h * w, 1, 99), *ref = malloc((size_t)n * classes * sizeof(float));
    CU_ASSERT_FATAL(it_ort_logits(path, x, n, c, h, w, ref, classes));
    qat_ctx ctx;
    qat_ctx_init(&ctx, 1 << 22);
    ctx.training = 0, ctx.grad_enabled = 0;
    qat_tensor *xt = qat_tensor_4d(&ctx, n, h, w, c);
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            for (int y = 0; y < h; y++)
                for (int xx = 0; xx < w; xx++)
                    xt->data[((i * h + y) * w + xx) * c + ch] = x[((i * c + ch) * h + y) * w + xx];
    qat_tensor *yt = qat_model_forward(m, &ctx, xt);
    CU_ASSERT_FATAL(yt && yt->numel == n * classes);
    double worst = 0, scale = 0;
    for (int i = 0; i < n * classes; i++) {
        worst = fmax(worst, fabs((double)yt->data[i] - ref[i]));
        scale = fmax(scale, fabs((double)ref[i]));
    }
    if (!(worst <= tol * fmax(1, scale))) printf("\n  %s: max |qat - ORT| %.3g (max |logit| %.3g)\n", path, worst, scale);
    CU_ASSERT(worst <= tol * fmax(1, scale));
    CU_ASSERT(scale > 1e-3); /* the graph computes something */
    qat_ctx_free(&ctx);
    free(x), free(ref);
    qat_model_free(m);
    return worst / fmax(1, scale);
}

static void test_graph_a_matches_ort(void) {
    const char *p13 = it_path("a14.onnx"), *p17 = it_path("a17.onnx");
    write_graph_a(p13, 14);
    it_check_against_ort(p13, 2, 9, 9, 3, 1e-5);
    write_graph_a(p17, 17);
    it_check_against_ort(p17, 2, 9, 9, 3, 1e-5);
    /* what folded where: BN into the convs, the activations into them, MatMul + Add one linear */
    qat_model *m;
    CU_ASSERT_FATAL(qat_onnx_import(p13, &m) == QAT_OK);
    const char *t = qat_spec_text(m->spec);
    CU_ASSERT(strstr(t, "layer c0 conv in=input c=8 k=3 s=1 pad=1 g=1 bn=0 act=relu ") != NULL);
    CU_ASSERT(strstr(t, "layer dw conv in=c0 c=8 k=3 s=1 pad=1 g=8 bn=1 act=relu6 ") != NULL);
    CU_ASSERT(strstr(t, "layer c2 conv in=dw c=8 k=1 s=1 pad=0 g=1 bn=1 act=none ") != NULL);
    CU_ASSERT(strstr(t, "layer res add in=c2,c0\n") != NULL);
    CU_ASSERT(strstr(t, "act=hardswish") != NULL && strstr(t, "layer hsig act in=c3 act=hardsigmoid\n") != NULL);
    CU_ASSERT(strstr(t, "layer fc.w linear in=gap c=3") != NULL);
    if (!strstr(t, "layer res add in=c2,c0")) printf("\n%s\n", t);
    qat_model_free(m);
}

static void test_graph_b_typed_fields(void) {
    const char *p = it_path("b.onnx"), *pt = it_path("b_typed.onnx");
    write_graph_b(p);
    it_check_against_ort(p, 1, 8, 8, 4, 1e-5);
    rewrite(p, pt, to_typed);
    it_check_against_ort(pt, 1, 8, 8, 4, 1e-5);
}

/* ---- bad input ---------------------------------------------------------------------------- */

void it_expect_fail(const char *path, const char *want) {
    qat_model *m = NULL;
    qat_status st = qat_onnx_import(path, &m);
    const char *e = qat_last_error();
    int ok = st != QAT_OK && m == NULL && !strncmp(e, path, strlen(path)) && strstr(e, want) && !strchr(e, '\n');
    if (!ok) printf("\n  %s: status %d, '%s'; expected '%s'\n", path, st, st ? e : "(imported)", want);
    CU_ASSERT(ok);
    qat_model_free(m);
}

static void ed_opset10(Onnx__ModelProto *m) { m->opset_import[0]->version = 10; }
static void ed_maxpool(Onnx__ModelProto *m) {
    for (size_t i = 0; i < m->graph->n_node; i++)
        if (!strcmp(m->graph->node[i]->op_type, "Relu")) strcpy(m->graph->node[i]->op_type, "Elu");
}
static Onnx__TensorProto *find_init(Onnx__ModelProto *m, const char *name) {
    for (size_t i = 0; i < m->graph->n_initializer; i++)
        if (!strcmp(m->graph->initializer[i]->name, name)) return m->graph->initializer[i];
    return NULL;
}
static void ed_external(Onnx__ModelProto *m) {
    Onnx__TensorProto *t = find_init(m, "c2.weight");
    t->has_data_location = 1;
    t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
}
static void ed_short(Onnx__ModelProto *m) { find_init(m, "c3.bias")->raw_data.len -= 4; }
static void ed_dangling(Onnx__ModelProto *m) {
    for (size_t i = 0; i < m->graph->n_node; i++)
        if (!strcmp(m->graph->node[i]->name, "res")) {
            free(m->graph->node[i]->input[1]); /* free_unpacked frees what is there */
            m->graph->node[i]->input[1] = strdup("ghost");
        }
}
/* the residual Add reads the strided conv's output, which depends on the Add */
static void ed_cycle(Onnx__ModelProto *m) {
    for (size_t i = 0; i < m->graph->n_node; i++)
        if (!strcmp(m->graph->node[i]->name, "res")) {
            free(m->graph->node[i]->input[1]);
            m->graph->node[i]->input[1] = strdup("y3");
        }
}

static void test_bad_inputs(void) {
    const char *a = it_path("a.onnx");
    write_graph_a(a, 14);
    const char *p;
    rewrite(a, p = it_path("opset10.onnx"), ed_opset10);
    it_expect_fail(p, "opset 10 is not supported (11 to 17");
    (void)0;
    rewrite(a, p = it_path("elu.onnx"), ed_maxpool);
    it_expect_fail(p, "node 'relu0' (Elu): unsupported op (supported: Conv, BatchNormalization, Relu, Clip");
    rewrite(a, p = it_path("external.onnx"), ed_external);
    it_expect_fail(p, "tensor 'c2.weight': its data is in an external file");
    rewrite(a, p = it_path("short.onnx"), ed_short);
    it_expect_fail(p, "tensor 'c3.bias': raw_data has 44 bytes, its shape needs 48");
    rewrite(a, p = it_path("dangling.onnx"), ed_dangling);
    it_expect_fail(p, "node 'res' (Add): input 'ghost' is not produced by any node, initializer or graph input");
    rewrite(a, p = it_path("cycle.onnx"), ed_cycle);
    it_expect_fail(p, "(the graph has a cycle)");
    it_expect_fail(it_path("missing.onnx"), "cannot open");
    /* truncated: every prefix length in steps; bit flips at many places: an error line naming the
     * file or a model, never a crash (the fuzz target goes further) */
    long len;
    unsigned char *buf = test_slurp(a, &len);
    CU_ASSERT_FATAL(buf && len > 100);
    const char *q = it_path("mut.onnx");
    int failed = 0, imported = 0;
    for (long cut = 1; cut < len; cut += len / 97 + 1) {
        test_spit(q, buf, (size_t)cut);
        qat_model *m = NULL;
        if (qat_onnx_import(q, &m)) failed += !strncmp(qat_last_error(), q, strlen(q));
        else imported++;
        qat_model_free(m);
    }
    CU_ASSERT(failed > 90 && imported == 0);
    uint64_t s = 5;
    for (int k = 0; k < 300; k++) {
        unsigned char *mb = malloc((size_t)len);
        memcpy(mb, buf, (size_t)len);
        for (int f = 0; f < 3; f++) {
            uint32_t r = test_splitmix32(&s);
            mb[r % (uint32_t)len] ^= (unsigned char)(1u << (r >> 29));
        }
        test_spit(q, mb, (size_t)len);
        qat_model *m = NULL;
        if (qat_onnx_import(q, &m)) CU_ASSERT(!strncmp(qat_last_error(), q, strlen(q)) && !strchr(qat_last_error(), '\n'));
        qat_model_free(m);
        free(mb);
    }
    free(buf);
}

void register_onnx_import_tests(void) {
    CU_pSuite s = CU_add_suite("onnx_import", it_setup, it_teardown);
    CU_add_test(s, "every op vs ONNX Runtime (opsets 14, 17)", test_graph_a_matches_ort);
    CU_add_test(s, "opset 11, Constant nodes, typed float_data vs ONNX Runtime", test_graph_b_typed_fields);
    CU_add_test(s, "bad input: one line naming file, node, problem", test_bad_inputs);
}
