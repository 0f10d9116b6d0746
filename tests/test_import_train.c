/* An imported ONNX model (qat import) through the rest of qat: FP32 fine-tuning with
 * `train --init` (an imported checkpoint has no optimizer state, so --resume refuses it) starts
 * from exactly the imported weights and normalisation, and `export --ckpt` of an imported model
 * gives ONNX Runtime the outputs of the original file. The ONNX inputs are built with the
 * exporter's own writer (export/onnx.h), no PyTorch. */
#include "model.h"
#include "onnx.h"
#include "onnx_import.h"
#include "test_util.h"
#include "train.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char dir[64];

static int setup(void) {
    snprintf(dir, sizeof dir, "/tmp/qat_imptrain_XXXXXX");
    return mkdtemp(dir) ? 0 : 1;
}
static int teardown(void) {
    return test_rm_tree(dir);
}

static const char *tpath(const char *name) {
    static char p[8][160];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static void init_randn(onnx_b *b, const char *name, int ndim, const int64_t *dims, float scale, float offset,
                       uint64_t seed) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= dims[d];
    float *v = malloc((size_t)n * sizeof(float));
    qat_rng r;
    qat_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) v[i] = offset + scale * (offset > 0 ? fabsf(qat_rng_normal(&r)) : qat_rng_normal(&r));
    onnx_b_init(b, name, ONNX_F32, ndim, dims, v);
    free(v);
}

/* (N, 1, 8, 8) -> Conv 3x3 + bias -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> 3 logits:
 * no BN and no dropout, so training mode computes what evaluation does. */
static void write_small(const char *path) {
    onnx_b *b = onnx_b_create();
    onnx_b_input(b, "pixels", ONNX_F32, 4, (int64_t[]){-1, 1, 8, 8});
    onnx_b_output(b, "logits", ONNX_F32, 2, (int64_t[]){-1, 3});
    init_randn(b, "c.w", 4, (int64_t[]){6, 1, 3, 3}, 0.5f, 0, 1);
    init_randn(b, "c.b", 1, (int64_t[]){6}, 0.1f, 0, 2);
    onnx_node *n = onnx_b_node(b, "Conv", "conv", 3, (const char *[]){"pixels", "c.w", "c.b"}, "y");
    onnx_b_attr_ints(b, n, "pads", 4, (int64_t[]){1, 1, 1, 1});
    onnx_b_node(b, "Relu", "relu", 1, (const char *[]){"y"}, "r");
    onnx_b_node(b, "GlobalAveragePool", "gap", 1, (const char *[]){"r"}, "p");
    onnx_b_node(b, "Flatten", "flat", 1, (const char *[]){"p"}, "f");
    init_randn(b, "fc.w", 2, (int64_t[]){3, 6}, 0.8f, 0, 3);
    init_randn(b, "fc.b", 1, (int64_t[]){3}, 0.1f, 0, 4);
    n = onnx_b_node(b, "Gemm", "fc", 3, (const char *[]){"f", "fc.w", "fc.b"}, "logits");
    onnx_b_attr_int(b, n, "transB", 1);
    CU_ASSERT_FATAL(onnx_b_write(b, "small", 13, path, NULL) == QAT_OK);
    onnx_b_destroy(b);
}

typedef struct {
    int steps;
    float first_loss;
} step_log;

static void on_event(const qat_event *e, void *user) {
    step_log *l = user;
    if (e->kind == QAT_EVENT_STEP && l->steps++ == 0) l->first_loss = e->loss;
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* train --init: train and test split are the same 48 images and one step takes all of them, so the
 * loss of step 1 (before the update) is the imported model's evaluation loss on the test split:
 * the run starts from the imported weights and normalisation, not from a fresh init or the
 * dataset's statistics. */
static void test_train_init(void) {
    const char *data = tpath("bars");
    mkdir(data, 0777);
    test_write_bars_idx(data, "train", 48, 8, 5);
    test_write_bars_idx(data, "t10k", 48, 8, 5);
    const char *onnx = tpath("small.onnx"), *imp = tpath("small.ckpt");
    write_small(onnx);
    CU_ASSERT_FATAL(qat_import_onnx_ckpt(onnx, imp, NULL, 0.3f, 0.4f, NULL) == QAT_OK);
    qat_eval_result ev0;
    CU_ASSERT_FATAL(qat_checkpoint_evaluate(imp, data, &ev0) == QAT_OK);

    /* --resume refuses an imported checkpoint; --init is the way in */
    qat_train_opts o;
    qat_train_opts_default(&o);
    o.data = data, o.out_dir = tpath("resumed"), o.epochs = 1, o.batch = 48, o.threads = 1;
    o.resume = imp;
    CU_ASSERT(qat_train_run(&o) == QAT_ERR_ARG && strstr(qat_last_error(), "no optimizer state"));

    step_log log = {0};
    o.resume = NULL, o.init = imp, o.out_dir = tpath("run");
    o.label_smoothing = 0, o.crop_pad = 0, o.hflip = 0, o.lr = 0.05f, o.seed = 3;
    o.on_event = on_event, o.event_user = &log;
    qat_status st = qat_train_run(&o);
    if (st) printf("\n  train --init: %s\n", qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);
    CU_ASSERT(log.steps == 1);
    double d = fabs((double)log.first_loss - ev0.loss);
    if (!(d <= 1e-5 * fmax(1, ev0.loss)))
        printf("\n  step-1 loss %.7f, imported model's eval loss %.7f\n", log.first_loss, ev0.loss);
    CU_ASSERT(d <= 1e-5 * fmax(1, ev0.loss));

    /* the run's checkpoint: the imported network and normalisation, one step on, weights moved */
    qat_run a, r;
    CU_ASSERT_FATAL(qat_checkpoint_load(imp, &a) == QAT_OK);
    char last[200];
    snprintf(last, sizeof last, "%s/last.ckpt", o.out_dir);
    CU_ASSERT_FATAL(qat_checkpoint_load(last, &r) == QAT_OK);
    CU_ASSERT(!strcmp(qat_spec_text(a.spec), qat_spec_text(r.spec)));
    CU_ASSERT(r.mean[0] == 0.3f && r.std[0] == 0.4f && r.step == 1 && r.has_opt && r.seed == 3);
    CU_ASSERT_FATAL(a.model->nparams == r.model->nparams);
    int64_t moved = 0;
    for (int64_t i = 0; i < a.model->nparams; i++) moved += a.model->params[i] != r.model->params[i];
    CU_ASSERT(moved > a.model->nparams / 2);
    qat_run_free(&a);
    qat_run_free(&r);

    /* a conflicting network or a second start: refused before any training, nothing written */
    o.on_event = NULL;
    o.model = "mbv1-tiny", o.out_dir = tpath("conflict");
    st = qat_train_run(&o);
    CU_ASSERT(st != QAT_OK && strstr(qat_last_error(), imp) && strstr(qat_last_error(), "describes another network") &&
              strstr(qat_last_error(), "start from it"));
    CU_ASSERT(!exists(o.out_dir));
    o.model = NULL, o.resume = last;
    CU_ASSERT(qat_train_run(&o) == QAT_ERR_ARG && strstr(qat_last_error(), "give one of them"));
    o.resume = NULL, o.init = tpath("missing.ckpt");
    CU_ASSERT(qat_train_run(&o) != QAT_OK && strstr(qat_last_error(), o.init));
    CU_ASSERT(!exists(o.out_dir));

    /* the CLI: --init in train's help, a conflict is one line and exit 2 */
    char *out, *err, args[900];
    CU_ASSERT(test_run_qat(dir, "", "train --help", &out, &err) == 0 && strstr(out, "--init"));
    free(out), free(err);
    snprintf(args, sizeof args, "train --data %s --init %s --model mbv1-tiny --out %s --quiet", data, imp,
             tpath("cli"));
    int rc = test_run_qat(dir, "", args, &out, &err);
    CU_ASSERT(rc != 0 && test_count_lines(err) == 1 && strstr(err, "describes another network"));
    free(out), free(err);
    snprintf(args, sizeof args, "train --data %s --init %s --resume %s --out %s", data, imp, last, tpath("cli"));
    rc = test_run_qat(dir, "", args, &out, &err);
    CU_ASSERT(rc == 2 && test_count_lines(err) == 1 && strstr(err, "--init"));
    free(out), free(err);
}

/* (N, 2, 9, 9): Conv + bias + Relu; depthwise Conv + BatchNormalization (eps 1e-3) + Clip(0, 6);
 * 1x1 Conv + bias + BatchNormalization; residual Add; strided Conv + HardSwish; HardSigmoid;
 * GlobalAveragePool; Flatten; Gemm: conv layers with and without BN (bn=0), add, every activation. */
static void write_roundtrip(const char *path) {
    onnx_b *b = onnx_b_create();
    onnx_b_input(b, "pixels", ONNX_F32, 4, (int64_t[]){-1, 2, 9, 9});
    onnx_b_output(b, "logits", ONNX_F32, 2, (int64_t[]){-1, 4});
    init_randn(b, "c0.w", 4, (int64_t[]){8, 2, 3, 3}, 0.4f, 0, 11);
    init_randn(b, "c0.b", 1, (int64_t[]){8}, 0.2f, 0, 12);
    onnx_node *n = onnx_b_node(b, "Conv", "c0", 3, (const char *[]){"pixels", "c0.w", "c0.b"}, "y0");
    onnx_b_attr_ints(b, n, "pads", 4, (int64_t[]){1, 1, 1, 1});
    onnx_b_node(b, "Relu", "relu0", 1, (const char *[]){"y0"}, "r0");
    init_randn(b, "dw.w", 4, (int64_t[]){8, 1, 3, 3}, 0.5f, 0, 13);
    n = onnx_b_node(b, "Conv", "dw", 2, (const char *[]){"r0", "dw.w"}, "y1");
    onnx_b_attr_ints(b, n, "pads", 4, (int64_t[]){1, 1, 1, 1});
    onnx_b_attr_int(b, n, "group", 8);
    init_randn(b, "bn1.s", 1, (int64_t[]){8}, 1, 0, 14);
    init_randn(b, "bn1.b", 1, (int64_t[]){8}, 0.3f, 0, 15);
    init_randn(b, "bn1.m", 1, (int64_t[]){8}, 0.3f, 0, 16);
    init_randn(b, "bn1.v", 1, (int64_t[]){8}, 0.5f, 0.2f, 17);
    n = onnx_b_node(b, "BatchNormalization", "bn1", 5, (const char *[]){"y1", "bn1.s", "bn1.b", "bn1.m", "bn1.v"}, "z1");
    onnx_b_attr_float(b, n, "epsilon", 1e-3f);
    float lo = 0, hi = 6;
    onnx_b_init(b, "zero", ONNX_F32, 0, NULL, &lo);
    onnx_b_init(b, "six", ONNX_F32, 0, NULL, &hi);
    onnx_b_node(b, "Clip", "clip1", 3, (const char *[]){"z1", "zero", "six"}, "r1");
    init_randn(b, "pw.w", 4, (int64_t[]){8, 8, 1, 1}, 0.4f, 0, 18);
    init_randn(b, "pw.b", 1, (int64_t[]){8}, 0.2f, 0, 19);
    onnx_b_node(b, "Conv", "pw", 3, (const char *[]){"r1", "pw.w", "pw.b"}, "y2");
    init_randn(b, "bn2.s", 1, (int64_t[]){8}, 1, 0, 20);
    init_randn(b, "bn2.b", 1, (int64_t[]){8}, 0.3f, 0, 21);
    init_randn(b, "bn2.m", 1, (int64_t[]){8}, 0.3f, 0, 22);
    init_randn(b, "bn2.v", 1, (int64_t[]){8}, 0.5f, 0.2f, 23);
    onnx_b_node(b, "BatchNormalization", "bn2", 5, (const char *[]){"y2", "bn2.s", "bn2.b", "bn2.m", "bn2.v"}, "z2");
    onnx_b_node(b, "Add", "res", 2, (const char *[]){"z2", "r0"}, "s");
    init_randn(b, "c3.w", 4, (int64_t[]){12, 8, 3, 3}, 0.3f, 0, 24);
    init_randn(b, "c3.b", 1, (int64_t[]){12}, 0.2f, 0, 25);
    n = onnx_b_node(b, "Conv", "c3", 3, (const char *[]){"s", "c3.w", "c3.b"}, "y3");
    onnx_b_attr_ints(b, n, "pads", 4, (int64_t[]){1, 1, 1, 1});
    onnx_b_attr_ints(b, n, "strides", 2, (int64_t[]){2, 2});
    onnx_b_node(b, "HardSwish", "hs", 1, (const char *[]){"y3"}, "h3");
    n = onnx_b_node(b, "HardSigmoid", "hsig", 1, (const char *[]){"h3"}, "h4");
    onnx_b_attr_float(b, n, "alpha", 1.0f / 6);
    onnx_b_node(b, "GlobalAveragePool", "gap", 1, (const char *[]){"h4"}, "p");
    onnx_b_node(b, "Flatten", "flat", 1, (const char *[]){"p"}, "f");
    init_randn(b, "fc.w", 2, (int64_t[]){4, 12}, 0.5f, 0, 26);
    init_randn(b, "fc.b", 1, (int64_t[]){4}, 0.1f, 0, 27);
    n = onnx_b_node(b, "Gemm", "fc", 3, (const char *[]){"f", "fc.w", "fc.b"}, "logits");
    onnx_b_attr_int(b, n, "transB", 1);
    CU_ASSERT_FATAL(onnx_b_write(b, "roundtrip", 14, path, NULL) == QAT_OK);
    onnx_b_destroy(b);
}

/* import -> export --ckpt: ORT on the exported graph (raw pixels in, it normalises itself) gives
 * the logits ORT computes on the original graph fed (pixel / 255 - mean) / std. */
static void test_export_roundtrip(void) {
    const char *onnx = tpath("rt.onnx"), *ckpt = tpath("rt.ckpt"), *back = tpath("rt_back.onnx");
    write_roundtrip(onnx);
    const float mean = 0.25f, std = 0.5f;
    CU_ASSERT_FATAL(qat_import_onnx_ckpt(onnx, ckpt, NULL, mean, std, NULL) == QAT_OK);
    qat_onnx_info info;
    qat_status st = qat_export_onnx_fp32(ckpt, back, &info);
    if (st) printf("\n  export: %s\n", qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);
    enum { N = 16, C = 2, H = 9, W = 9, K = 4 };
    static float pix[N * C * H * W], x[N * C * H * W], ref[N * K], got[N * K];
    uint64_t s = 77;
    for (int i = 0; i < N * C * H * W; i++) {
        pix[i] = (float)(test_splitmix32(&s) % 256);
        x[i] = (pix[i] / 255.0f - mean) / std;
    }
    CU_ASSERT_FATAL(test_ort_logits(dir, onnx, x, N, C, H, W, ref, K));
    CU_ASSERT_FATAL(test_ort_logits(dir, back, pix, N, C, H, W, got, K));
    double worst = 0, scale = 0;
    for (int i = 0; i < N * K; i++) {
        worst = fmax(worst, fabs((double)got[i] - ref[i]));
        scale = fmax(scale, fabs((double)ref[i]));
    }
    printf("\n  round trip: max |ORT(exported) - ORT(original)| = %.3g (max |logit| %.3g) ", worst, scale);
    CU_ASSERT(worst <= 1e-5 * fmax(1, scale));
    CU_ASSERT(scale > 1e-2);
}

void register_import_train_tests(void) {
    CU_pSuite s = CU_add_suite("import_train", setup, teardown);
    CU_add_test(s, "train --init from an imported model: step 1 = its eval loss; conflicts refused", test_train_init);
    CU_add_test(s, "import -> export --ckpt: ONNX Runtime gives the original's logits", test_export_roundtrip);
}
