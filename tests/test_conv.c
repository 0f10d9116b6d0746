/* conv2d: the forward against a naive 7-loop NHWC/OHWI convolution for every path (1x1,
 * strided 1x1, depthwise, grouped and dense im2col, the Cin=1 stem) under every ISA the CPU
 * has, the backward against central differences, and gradient accumulation. */
#include "test_util.h"
#include "kernels.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int h, w, cin, cout, k, stride, pad, groups;
} conv_case;

static const conv_case cases[] = {
    {"dense 3x3 s1 p1", 5, 5, 3, 4, 3, 1, 1, 1},
    {"dense 3x3 s2 p1 on 7x7", 7, 7, 3, 5, 3, 2, 1, 1},
    {"dense 3x3 s1 p0", 6, 5, 2, 3, 3, 1, 0, 1},
    {"1x1 s1", 5, 4, 6, 4, 1, 1, 0, 1},
    {"1x1 s2 on 7x7", 7, 7, 5, 3, 1, 2, 0, 1},
    {"1x1 s1 p1 (im2col path)", 3, 4, 3, 2, 1, 1, 1, 1},
    {"1x1 groups 2", 4, 4, 4, 6, 1, 1, 0, 2},
    {"grouped 3x3 g2", 5, 5, 4, 6, 3, 1, 1, 2},
    {"grouped 3x3 s2 g4 on 7x7", 7, 7, 8, 4, 3, 2, 1, 4},
    {"depthwise 3x3 s1", 5, 5, 5, 5, 3, 1, 1, 5},
    {"depthwise 3x3 s2 on 7x7, 17 ch", 7, 7, 17, 17, 3, 2, 1, 17},
    {"depthwise 5x5 s1 p2", 6, 6, 3, 3, 5, 1, 2, 3},
    {"depthwise multiplier 2 (grouped path)", 5, 5, 3, 6, 3, 1, 1, 3},
    {"stem Cin=1 3x3 s1 p1", 6, 6, 1, 4, 3, 1, 1, 1},
    {"stem Cin=1 3x3 s2 p1", 7, 7, 1, 3, 3, 2, 1, 1},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* out (N, OH, OW, Cout) in double: the seven loops of the definition. */
static void conv_naive(double *out, const float *x, const float *w, const float *b, int N,
                       const conv_case *c, int OH, int OW) {
    const int Cg = c->cin / c->groups, Coutg = c->cout / c->groups;
    for (int n = 0; n < N; n++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                for (int co = 0; co < c->cout; co++) {
                    const int gi = co / Coutg;
                    double s = b ? b[co] : 0.0;
                    for (int kh = 0; kh < c->k; kh++)
                        for (int kw = 0; kw < c->k; kw++)
                            for (int ci = 0; ci < Cg; ci++) {
                                int ih = oh * c->stride - c->pad + kh, iw = ow * c->stride - c->pad + kw;
                                if (ih < 0 || ih >= c->h || iw < 0 || iw >= c->w) continue;
                                s += (double)x[((n * c->h + ih) * c->w + iw) * c->cin + gi * Cg + ci] *
                                     w[((co * c->k + kh) * c->k + kw) * Cg + ci];
                            }
                    out[((n * OH + oh) * OW + ow) * c->cout + co] = s;
                }
}

typedef struct {
    const conv_case *c;
    int has_bias;
} build_arg;

static qat_tensor *build_conv(qat_ctx *ctx, qat_tensor **in, void *user) {
    const build_arg *a = user;
    return qat_conv2d(ctx, in[0], in[1], a->has_bias ? in[2] : NULL, a->c->stride, a->c->pad,
                      a->c->groups);
}

static void make_inputs(const conv_case *c, int N, qat_tensor **in, uint64_t seed) {
    int xs[4] = {N, c->h, c->w, c->cin}, ws[4] = {c->cout, c->k, c->k, c->cin / c->groups};
    int bs[1] = {c->cout};
    in[0] = test_leaf(4, xs, 1.0f, seed);
    in[1] = test_leaf(4, ws, 0.5f, seed + 1);
    in[2] = test_leaf(1, bs, 0.5f, seed + 2);
}

static void free_inputs(qat_tensor **in) {
    for (int i = 0; i < 3; i++) test_leaf_free(in[i]);
}

static void check_forward(const conv_case *c, int N, int has_bias) {
    qat_tensor *in[3];
    make_inputs(c, N, in, 100 + (uint64_t)(c - cases) * 7 + N);
    const int OH = (c->h + 2 * c->pad - c->k) / c->stride + 1;
    const int OW = (c->w + 2 * c->pad - c->k) / c->stride + 1;
    const int64_t ny = (int64_t)N * OH * OW * c->cout;
    double *ref = malloc(ny * sizeof(double));
    float *reff = malloc(ny * sizeof(float));
    conv_naive(ref, in[0]->data, in[1]->data, has_bias ? in[2]->data : NULL, N, c, OH, OW);
    for (int64_t i = 0; i < ny; i++) reff[i] = (float)ref[i];
    qat_isa keep = qat_cpu_isa();
    for (int isa = 0; isa < QAT_ISA_COUNT; isa++) {
        qat_set_isa((qat_isa)isa);
        if (qat_cpu_isa() != (qat_isa)isa) continue;
        qat_ctx ctx;
        qat_ctx_init(&ctx, 1 << 16);
        build_arg a = {c, has_bias};
        qat_tensor *out = build_conv(&ctx, in, &a);
        CU_ASSERT_EQUAL(out->ndim, 4);
        CU_ASSERT(out->shape[0] == N && out->shape[1] == OH && out->shape[2] == OW &&
                  out->shape[3] == c->cout);
        char what[160];
        snprintf(what, sizeof what, "conv fwd %s n%d bias%d %s", c->name, N, has_bias,
                 qat_isa_name((qat_isa)isa));
        test_compare(what, out->data, reff, ny, 1e-5);
        qat_ctx_free(&ctx);
    }
    qat_set_isa(keep);
    free(ref);
    free(reff);
    free_inputs(in);
}

static void test_conv_forward(void) {
    for (int i = 0; i < NCASES; i++)
        for (int N = 1; N <= 3; N += 2)
            for (int bias = 0; bias <= 1; bias++) check_forward(&cases[i], N, bias);
}

static void test_conv_forward_large(void) {
    /* Shapes large enough for the threaded GEMM split and multi-threaded depthwise. */
    static const conv_case big[] = {
        {"1x1 s1 large", 14, 14, 16, 64, 1, 1, 0, 1},
        {"depthwise large", 14, 14, 40, 40, 3, 2, 1, 40},
        {"stem large", 28, 28, 1, 16, 3, 1, 1, 1},
    };
    int keep = qat_get_threads();
    qat_set_threads(2);
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) check_forward(&big[i], 4, 1);
    qat_set_threads(keep);
}

static void test_conv_gradcheck(void) {
    for (int i = 0; i < NCASES; i++) {
        const conv_case *c = &cases[i];
        /* batch 1 with bias, batch 3 without: both batch sizes and both bias variants */
        for (int v = 0; v < 2; v++) {
            int N = v ? 3 : 1, has_bias = !v;
            qat_tensor *in[3];
            make_inputs(c, N, in, 500 + (uint64_t)i * 13 + v);
            build_arg a = {c, has_bias};
            char what[160];
            snprintf(what, sizeof what, "conv grad %s n%d bias%d", c->name, N, has_bias);
            test_gradcheck(what, build_conv, has_bias ? 3 : 2, in, &a, 0, 1e-2f, 2e-2);
            free_inputs(in);
        }
    }
}

static void test_conv_gradcheck_frozen_input(void) {
    /* The stem: the image needs no gradient, only w and b do (dx is skipped). */
    const conv_case *c = &cases[NCASES - 2];
    qat_tensor *in[3];
    make_inputs(c, 2, in, 900);
    in[0]->requires_grad = 0;
    build_arg a = {c, 1};
    test_gradcheck("conv grad stem, frozen x", build_conv, 3, in, &a, 0, 1e-2f, 2e-2);
    for (int64_t i = 0; i < in[0]->numel; i++)
        if (in[0]->grad[i] != 0.0f) {
            CU_FAIL("gradient written into an input that does not require it");
            break;
        }
    free_inputs(in);
}

static void test_conv_grad_scalar_isa(void) {
    /* The depthwise backward once more through the scalar references. */
    qat_isa keep = qat_set_isa(QAT_ISA_SCALAR);
    for (int i = 0; i < NCASES; i++) {
        const conv_case *c = &cases[i];
        if (!(c->groups == c->cin && c->cout == c->cin)) continue;
        qat_tensor *in[3];
        make_inputs(c, 2, in, 700 + (uint64_t)i);
        build_arg a = {c, 1};
        test_gradcheck(c->name, build_conv, 3, in, &a, 0, 1e-2f, 2e-2);
        free_inputs(in);
    }
    qat_set_isa(keep);
}

/* Runs the conv backward twice on the same output gradient: every gradient must double. The
 * input is an arena (non-leaf) tensor whose gradient does not exist before the first call, so
 * that call takes the write-instead-of-accumulate branch and the second the accumulating one. */
static void check_accumulate(const conv_case *c) {
    qat_tensor *in[3];
    make_inputs(c, 2, in, 1300 + (uint64_t)(c - cases));
    qat_ctx ctx;
    qat_ctx_init(&ctx, 1 << 16);
    qat_tensor *x = qat_tensor_new(&ctx, 4, in[0]->shape);
    memcpy(x->data, in[0]->data, (size_t)x->numel * sizeof(float));
    x->requires_grad = 1;
    qat_tensor *out = qat_conv2d(&ctx, x, in[1], in[2], c->stride, c->pad, c->groups);
    CU_ASSERT_PTR_NOT_NULL(out->saved);
    float *gy = qat_grad(&ctx, out);
    qat_rng r;
    qat_rng_seed(&r, 5);
    for (int64_t i = 0; i < out->numel; i++) gy[i] = qat_rng_uniform(&r) - 0.5f;
    CU_ASSERT_PTR_NULL(x->grad);
    qat_conv2d_backward(&ctx, out);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x->grad);
    float *once[3];
    qat_tensor *t3[3] = {x, in[1], in[2]};
    for (int k = 0; k < 3; k++) {
        once[k] = malloc((size_t)t3[k]->numel * sizeof(float));
        memcpy(once[k], t3[k]->grad, (size_t)t3[k]->numel * sizeof(float));
    }
    qat_conv2d_backward(&ctx, out);
    for (int k = 0; k < 3; k++) {
        for (int64_t i = 0; i < t3[k]->numel; i++) once[k][i] *= 2.0f;
        char what[128];
        snprintf(what, sizeof what, "conv grad x2 %s input %d", c->name, k);
        test_compare(what, t3[k]->grad, once[k], t3[k]->numel, 1e-5);
        free(once[k]);
    }
    qat_ctx_free(&ctx);
    free_inputs(in);
}

static void test_conv_accumulate(void) {
    for (int i = 0; i < NCASES; i++) check_accumulate(&cases[i]);
}

static void test_conv_no_grad(void) {
    /* Inference: nothing on the tape, nothing saved, same numbers. */
    const conv_case *c = &cases[1];
    qat_tensor *in[3];
    make_inputs(c, 2, in, 77);
    qat_ctx ctx;
    qat_ctx_init(&ctx, 1 << 16);
    qat_tensor *y1 = qat_conv2d(&ctx, in[0], in[1], in[2], c->stride, c->pad, c->groups);
    CU_ASSERT_EQUAL(ctx.ntape, 1);
    CU_ASSERT_PTR_NOT_NULL(y1->saved);
    ctx.grad_enabled = 0;
    qat_tensor *y2 = qat_conv2d(&ctx, in[0], in[1], in[2], c->stride, c->pad, c->groups);
    CU_ASSERT_EQUAL(ctx.ntape, 1);
    CU_ASSERT_PTR_NULL(y2->saved);
    CU_ASSERT_EQUAL(y2->requires_grad, 0);
    test_compare("conv no-grad forward", y2->data, y1->data, y1->numel, 0);
    qat_ctx_free(&ctx);
    free_inputs(in);
}

void register_conv_tests(void) {
    test_add_suite("conv",
                   "forward vs naive, all paths, batch 1/3, bias on/off, every ISA", test_conv_forward,
                   "forward vs naive, threaded shapes", test_conv_forward_large,
                   "backward vs central differences", test_conv_gradcheck,
                   "backward with a frozen input", test_conv_gradcheck_frozen_input,
                   "depthwise backward on the scalar path", test_conv_grad_scalar_isa,
                   "backward twice doubles the gradients", test_conv_accumulate,
                   "no-grad forward saves nothing", test_conv_no_grad,
                   NULL);
}
