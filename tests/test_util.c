#include "test_util.h"
#include "dataset.h"
#include "model.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

qat_tensor *test_leaf(int ndim, const int *shape, float scale, uint64_t seed) {
    qat_tensor *t = calloc(1, sizeof *t);
    int64_t n = qat_shape_numel(ndim, shape);
    float *d = malloc((size_t)(n ? n : 1) * sizeof(float));
    float *g = calloc((size_t)(n ? n : 1), sizeof(float));
    qat_rng r;
    qat_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) d[i] = scale * qat_rng_normal(&r);
    qat_tensor_param(t, ndim, shape, d, g, "test");
    return t;
}

void test_leaf_free(qat_tensor *t) {
    if (!t) return;
    free(t->data);
    free(t->grad);
    free(t);
}

/* Weighted sum of the output with fixed weights, in double. */
static double weighted_loss(const qat_tensor *out, const float *w) {
    double s = 0;
    for (int64_t i = 0; i < out->numel; i++) s += (double)out->data[i] * w[i];
    return s;
}

static double forward_loss(qat_test_build_fn build, qat_tensor **inputs, void *user, int training,
                           const float *w, int64_t expect_n) {
    qat_ctx ctx;
    qat_ctx_init(&ctx, 1 << 20);
    ctx.training = training;
    ctx.grad_enabled = 0;
    qat_rng_seed(&ctx.rng, 1234); /* same dropout mask every evaluation */
    qat_tensor *out = build(&ctx, inputs, user);
    QAT_ASSERT(out->numel == expect_n);
    double l = weighted_loss(out, w);
    qat_ctx_free(&ctx);
    return l;
}

void test_backward_from(qat_ctx *ctx, qat_tensor *out, const float *w) {
    memcpy(qat_grad(ctx, out), w, (size_t)out->numel * sizeof(float));
    /* same dispatch as qat_backward, but starting from an arbitrary seed gradient */
    for (int k = ctx->ntape - 1; k >= 0; k--)
        if (ctx->tape[k]->grad) qat_backward_node(ctx, ctx->tape[k]);
}

int64_t test_run_backward(qat_test_build_fn build, int ninputs, qat_tensor **inputs, void *user,
                          int training, const float *w, float *y, float *g) {
    qat_ctx ctx;
    qat_ctx_init(&ctx, 1 << 20);
    ctx.training = training;
    qat_rng_seed(&ctx.rng, 1234);
    for (int i = 0; i < ninputs; i++)
        if (inputs[i]->grad) memset(inputs[i]->grad, 0, (size_t)inputs[i]->numel * sizeof(float));
    qat_tensor *out = build(&ctx, inputs, user);
    int64_t n = out->numel;
    if (y) memcpy(y, out->data, (size_t)n * sizeof(float));
    test_backward_from(&ctx, out, w);
    for (int i = 0; g && i < ninputs; i++) {
        memcpy(g, inputs[i]->grad, (size_t)inputs[i]->numel * sizeof(float));
        g += inputs[i]->numel;
    }
    qat_ctx_free(&ctx);
    return n;
}

double test_gradcheck(const char *what, qat_test_build_fn build, int ninputs, qat_tensor **inputs,
                      void *user, int training, float eps, double tol) {
    /* Analytic gradients: loss = sum(out .* R) through a mul by a constant tensor would add an
     * op under test, so seed out->grad with R directly and run the tape backward. */
    qat_ctx ctx;
    qat_ctx_init(&ctx, 1 << 20);
    ctx.training = training;
    qat_rng_seed(&ctx.rng, 1234);
    for (int i = 0; i < ninputs; i++)
        if (inputs[i]->grad) memset(inputs[i]->grad, 0, (size_t)inputs[i]->numel * sizeof(float));
    qat_tensor *out = build(&ctx, inputs, user);
    float *w = malloc((size_t)out->numel * sizeof(float));
    qat_rng r;
    qat_rng_seed(&r, 99);
    for (int64_t i = 0; i < out->numel; i++) w[i] = qat_rng_uniform(&r) * 2.0f - 1.0f;
    test_backward_from(&ctx, out, w);
    int64_t nout = out->numel;
    double worst = 0;
    for (int i = 0; i < ninputs; i++) {
        qat_tensor *in = inputs[i];
        if (!in->requires_grad) continue;
        for (int64_t j = 0; j < in->numel; j++) {
            float keep = in->data[j];
            in->data[j] = keep + eps;
            double lp = forward_loss(build, inputs, user, training, w, nout);
            in->data[j] = keep - eps;
            double lm = forward_loss(build, inputs, user, training, w, nout);
            in->data[j] = keep;
            double num = (lp - lm) / (2.0 * eps), ana = in->grad[j];
            double err = fabs(num - ana) / fmax(1.0, fabs(num) + fabs(ana));
            if (err > worst) worst = err;
            if (err > tol) {
                printf("\n  %s: input %d index %lld: analytic %.6g numeric %.6g (err %.3g)\n", what,
                       i, (long long)j, ana, num, err);
                CU_FAIL("gradient mismatch");
                i = ninputs; /* report the first mismatch only */
                break;
            }
        }
    }
    free(w);
    qat_ctx_free(&ctx);
    return worst;
}

double test_compare(const char *what, const float *a, const float *b, int64_t n, double tol) {
    double worst = 0;
    int64_t first = -1;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]) / fmax(1.0, fabs((double)b[i]));
        if (!(e <= tol) && first < 0) first = i; /* also catches NaN */
        if (e > worst || e != e) worst = e;
    }
    if (first >= 0) {
        printf("\n  %s: first mismatch at %lld: %.7g vs %.7g\n", what, (long long)first,
               a[first], b[first]);
        CU_FAIL("values differ");
    }
    return worst;
}

void test_add_suite(const char *name, ...) {
    CU_pSuite s = CU_add_suite(name, NULL, NULL);
    va_list ap;
    va_start(ap, name);
    for (;;) {
        const char *tn = va_arg(ap, const char *);
        if (!tn) break;
        CU_TestFunc fn = va_arg(ap, CU_TestFunc);
        CU_add_test(s, tn, fn);
    }
    va_end(ap);
}

static void put_be32(FILE *f, uint32_t v) {
    unsigned char b[4] = {v >> 24, v >> 16, v >> 8, v};
    fwrite(b, 1, 4, f);
}

/* Class k of 3: a bright bar in row band k of an s x s image, plus noise. */
void test_write_bars_idx(const char *dir, const char *split, int n, int s, uint64_t seed) {
    char path[512];
    qat_rng r;
    qat_rng_seed(&r, seed);
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, split);
    FILE *fi = fopen(path, "wb");
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, split);
    FILE *fl = fopen(path, "wb");
    QAT_ASSERT(fi && fl);
    put_be32(fi, 2051), put_be32(fi, n), put_be32(fi, s), put_be32(fi, s);
    put_be32(fl, 2049), put_be32(fl, n);
    for (int i = 0; i < n; i++) {
        int k = (int)qat_rng_below(&r, 3);
        unsigned char lab = (unsigned char)k;
        for (int p = 0; p < s * s; p++) {
            int row = p / s;
            unsigned char v = (unsigned char)((int)qat_rng_below(&r, 60) + (row * 3 / s == k ? 150 : 0));
            fwrite(&v, 1, 1, fi);
        }
        fwrite(&lab, 1, 1, fl);
    }
    fclose(fi);
    fclose(fl);
}

void test_write_bars_folder(const char *dir, int n, int s, uint64_t seed) {
    char path[600];
    qat_rng r;
    qat_rng_seed(&r, seed);
    uint8_t *img = malloc((size_t)s * s);
    QAT_ASSERT(img);
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/%d", dir, k);
        QAT_ASSERT(mkdir(dir, 0777) == 0 || errno == EEXIST);
        QAT_ASSERT(mkdir(path, 0777) == 0 || errno == EEXIST);
    }
    for (int i = 0; i < n; i++) {
        int k = i % 3;
        for (int p = 0; p < s * s; p++)
            img[p] = (uint8_t)((int)qat_rng_below(&r, 60) + (p / s * 3 / s == k ? 150 : 0));
        snprintf(path, sizeof path, "%s/%d/%04d.png", dir, k, i);
        QAT_ASSERT(qat_png_write_gray(path, s, s, img) == QAT_OK);
    }
    free(img);
}

qat_model *test_random_model(const char *spec_text, int s, qat_spec **spec, uint64_t seed) {
    return test_random_model_c(spec_text, s, 1, spec, seed);
}

qat_model *test_random_model_c(const char *spec_text, int s, int c, qat_spec **spec, uint64_t seed) {
    CU_ASSERT_FATAL(qat_spec_parse(spec_text, "tiny", spec) == QAT_OK);
    qat_model *m;
    CU_ASSERT_FATAL(qat_model_create(*spec, 0, s, s, c, 3, &m) == QAT_OK);
    qat_rng r;
    qat_rng_seed(&r, seed);
    qat_model_init(m, &r);
    for (int i = 0; i < m->nlayers; i++) {
        qat_layer *L = &m->layers[i];
        if (L->kind != QAT_LAYER_CONV_BN_ACT) continue;
        if (L->conv_bias) { /* a conv with a bias and no BN (the general form's bn=0) */
            for (int c = 0; c < L->out_c; c++) L->bias.data[c] = 0.2f * qat_rng_normal(&r);
            continue;
        }
        for (int c = 0; c < L->out_c; c++) {
            L->gamma.data[c] = 0.5f + qat_rng_uniform(&r);
            L->beta.data[c] = 0.2f * qat_rng_normal(&r);
            L->bn.running_mean[c] = 0.3f * qat_rng_normal(&r);
            L->bn.running_var[c] = 0.2f + qat_rng_uniform(&r);
        }
    }
    return m;
}

unsigned char *test_slurp(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    *len = -1;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) == (size_t)n) {
        *len = n;
        b[n] = 0; /* text files read as strings */
    }
    fclose(f);
    return b;
}

void test_spit(const char *path, const void *b, size_t len) {
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(b, 1, len, f), len);
    fclose(f);
}

uint32_t test_splitmix32(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

int test_run_qat(const char *dir, const char *env, const char *args, char **out, char **err) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s ./qat %s >'%s/out.txt' 2>'%s/err.txt'", env, args, dir, dir);
    int st = system(cmd);
    char path[400];
    long n;
    snprintf(path, sizeof path, "%s/out.txt", dir);
    *out = (char *)test_slurp(path, &n);
    snprintf(path, sizeof path, "%s/err.txt", dir);
    *err = (char *)test_slurp(path, &n);
    CU_ASSERT_FATAL(*out && *err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int test_count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

int test_rm_tree(const char *dir) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) != 0;
}

int test_cli_fixture(const char *template_, char *tmpdir, char *data_dir, char *spec_path) {
    static const char *tiny_spec = "name tiny\n"
                                   "stem conv k=3 c=8 s=1 act=relu6\n"
                                   "block ir t=2 c=8 n=1 s=1\n"
                                   "head conv k=1 c=16 act=relu6\n"
                                   "pool avg\n"
                                   "classifier\n";
    snprintf(tmpdir, 256, "%s", template_);
    if (!mkdtemp(tmpdir)) return 1;
    snprintf(data_dir, 300, "%s/data", tmpdir);
    mkdir(data_dir, 0777);
    test_write_bars_idx(data_dir, "train", 96, 12, 1);
    test_write_bars_idx(data_dir, "t10k", 32, 12, 2);
    snprintf(spec_path, 300, "%s/tiny.spec", tmpdir);
    FILE *f = fopen(spec_path, "w");
    if (!f) return 1;
    fputs(tiny_spec, f);
    fclose(f);
    return 0;
}

int test_ort_logits(const char *dir, const char *model, const float *x, int n, int c, int h, int w, float *out,
                    int classes) {
    char in[400], op[400], cmd[1400];
    snprintf(in, sizeof in, "%s/ort_in.f32", dir);
    snprintf(op, sizeof op, "%s/ort_out.f32", dir);
    test_spit(in, x, (size_t)n * c * h * w * sizeof(float));
    unlink(op);
    snprintf(cmd, sizeof cmd, "node tests/onnx/ort_run.js '%s' '%s' %d %d %d %d '%s'", model, in, n, c, h, w, op);
    int st = system(cmd);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        printf("\n  ONNX Runtime did not run %s (exit %d; install it with 'sh scripts/deps.sh')\n", model,
               WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        return 0;
    }
    long len;
    unsigned char *b = test_slurp(op, &len);
    int ok = b && len == (long)((size_t)n * classes * sizeof(float));
    if (ok) memcpy(out, b, (size_t)len);
    else printf("\n  ONNX Runtime wrote %ld bytes of logits for %s, expected %zu\n", len, model,
                (size_t)n * classes * sizeof(float));
    free(b);
    return ok;
}
