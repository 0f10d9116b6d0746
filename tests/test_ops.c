/* Tests of the autograd ops other than conv2d: every forward against a naive reference written
 * here, every backward against central differences (test_gradcheck), plus the properties the
 * training loop relies on (BN running statistics, freeze, eval mode, deterministic threaded
 * reductions, numerically stable cross-entropy, gradient accumulation). */
#include "test_util.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#define ARENA_BYTES (1 << 20)

/* ---- helpers ------------------------------------------------------------------------------ */

static qat_tensor *leaf4(int n, int h, int w, int c, float scale, uint64_t seed) {
    int s[4] = {n, h, w, c};
    return test_leaf(4, s, scale, seed);
}

static qat_tensor *leaf2(int n, int c, float scale, uint64_t seed) {
    int s[2] = {n, c};
    return test_leaf(2, s, scale, seed);
}

static qat_tensor *leaf1(int c, float scale, uint64_t seed) {
    int s[1] = {c};
    return test_leaf(1, s, scale, seed);
}

/* Moves every value at least `margin` away from each kink, keeping its side. */
static void avoid_kinks(qat_tensor *t, const float *kinks, int nk, float margin) {
    for (int64_t i = 0; i < t->numel; i++)
        for (int k = 0; k < nk; k++) {
            float d = t->data[i] - kinks[k];
            if (fabsf(d) < margin) t->data[i] = kinks[k] + (d < 0 ? -margin : margin);
        }
}

static void fill_uniform(float *p, int64_t n, float lo, float hi, uint64_t seed) {
    qat_rng r;
    qat_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * qat_rng_uniform(&r);
}

/* Distinct values spaced 0.1 apart in a shuffled order: max pool has no near-ties. */
static void fill_distinct(qat_tensor *t, uint64_t seed) {
    qat_rng r;
    qat_rng_seed(&r, seed);
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = 0.1f * (float)(i - t->numel / 2);
    for (int64_t i = t->numel - 1; i > 0; i--) {
        int64_t j = qat_rng_below(&r, (uint32_t)(i + 1));
        float tmp = t->data[i];
        t->data[i] = t->data[j];
        t->data[j] = tmp;
    }
}

/* Gradient check of build twice: on the leaves directly (each backward adds into existing
 * grads) and behind a reshape of every input, so the op's inputs are intermediate tensors
 * whose grads its backward creates (the ops store into a fresh buffer instead of adding). */
typedef struct {
    qat_test_build_fn build;
    void *user;
} fresh_args;

static qat_tensor *build_fresh(qat_ctx *ctx, qat_tensor **in, void *user) {
    fresh_args *f = user;
    qat_tensor *mid[QAT_MAX_SRC + 1] = {NULL};
    for (int i = 0; i <= QAT_MAX_SRC && in[i]; i++)
        mid[i] = qat_reshape(ctx, in[i], in[i]->ndim, in[i]->shape);
    return f->build(ctx, mid, f->user);
}

static void gradcheck2(const char *what, qat_test_build_fn build, int n, qat_tensor **in,
                       void *user, int training, float eps, double tol) {
    test_gradcheck(what, build, n, in, user, training, eps, tol);
    QAT_ASSERT(n <= QAT_MAX_SRC + 1);
    qat_tensor *ins[QAT_MAX_SRC + 2] = {NULL};
    for (int i = 0; i < n; i++) ins[i] = in[i];
    fresh_args f = {build, user};
    char name[96];
    snprintf(name, sizeof name, "%s (fresh grads)", what);
    test_gradcheck(name, build_fresh, n, ins, &f, training, eps, tol);
}

/* ---- batchnorm ---------------------------------------------------------------------------- */

typedef struct {
    float rm[64], rv[64];
    qat_bn_state st;
} bn_fixture;

static void bn_fixture_init(bn_fixture *f, int C, uint64_t seed) {
    QAT_ASSERT(C <= 64);
    fill_uniform(f->rm, C, -1.0f, 1.0f, seed);
    fill_uniform(f->rv, C, 0.5f, 2.0f, seed + 1);
    f->st = (qat_bn_state){f->rm, f->rv, 0.1f, 1e-5f, 1};
}

/* Per-channel batch mean and biased variance of x (M, C) in double. */
static void ref_stats(const qat_tensor *x, double *mean, double *var) {
    int C = x->shape[x->ndim - 1];
    int64_t M = x->numel / C;
    for (int c = 0; c < C; c++) {
        double s = 0, ss = 0;
        for (int64_t r = 0; r < M; r++) s += x->data[r * C + c];
        double m = s / M;
        for (int64_t r = 0; r < M; r++) {
            double d = x->data[r * C + c] - m;
            ss += d * d;
        }
        mean[c] = m;
        var[c] = ss / M;
    }
}

static void test_bn_train_forward(void) {
    const int N = 2, H = 3, W = 5, C = 7, M = N * H * W;
    qat_tensor *x = leaf4(N, H, W, C, 2.0f, 1), *g = leaf1(C, 1.0f, 2), *b = leaf1(C, 1.0f, 3);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] += 3.0f * (float)(i % C) - 5.0f;
    bn_fixture f;
    bn_fixture_init(&f, C, 4);
    float rm0[7], rv0[7];
    memcpy(rm0, f.rm, sizeof rm0);
    memcpy(rv0, f.rv, sizeof rv0);
    double mean[7], var[7];
    ref_stats(x, mean, var);

    qat_ctx ctx;
    qat_ctx_init(&ctx, ARENA_BYTES);
    ctx.training = 1;
    qat_tensor *y = qat_batchnorm2d(&ctx, x, g, b, &f.st);
    float *ref = malloc((size_t)x->numel * sizeof(float));
    for (int64_t i = 0; i < x->numel; i++) {
        int c = (int)(i % C);
        ref[i] = (float)(g->data[c] * (x->data[i] - mean[c]) / sqrt(var[c] + 1e-5) + b->data[c]);
    }
    CU_ASSERT_EQUAL(y->ndim, 4);
    CU_ASSERT_EQUAL(y->shape[3], C);
    test_compare("bn train forward", y->data, ref, x->numel, 1e-5);

    /* running stats after one step: (1-m)*old + m*batch, unbiased variance */
    for (int c = 0; c < C; c++) {
        float em = (float)(0.9 * rm0[c] + 0.1 * mean[c]);
        float ev = (float)(0.9 * rv0[c] + 0.1 * var[c] * M / (M - 1));
        CU_ASSERT_DOUBLE_EQUAL(f.rm[c], em, 1e-5);
        CU_ASSERT_DOUBLE_EQUAL(f.rv[c], ev, 1e-5 * fabsf(ev));
    }

    /* without affine the output has per-channel mean 0 and (biased) variance ~1 */
    qat_tensor *z = qat_batchnorm2d(&ctx, x, NULL, NULL, &f.st);
    double zm[7], zv[7];
    ref_stats(z, zm, zv);
    for (int c = 0; c < C; c++) {
        CU_ASSERT_DOUBLE_EQUAL(zm[c], 0.0, 1e-5);
        CU_ASSERT_DOUBLE_EQUAL(zv[c], var[c] / (var[c] + 1e-5), 1e-5);
    }
    free(ref);
    qat_ctx_free(&ctx);
    test_leaf_free(x);
    test_leaf_free(g);
    test_leaf_free(b);
}

static void test_bn_eval_and_freeze(void) {
    const int N = 3, H = 2, W = 3, C = 5;
    qat_tensor *x = leaf4(N, H, W, C, 1.5f, 11), *g = leaf1(C, 1.0f, 12), *b = leaf1(C, 1.0f, 13);
    bn_fixture f;
    bn_fixture_init(&f, C, 14);
    float rm0[5], rv0[5];
    memcpy(rm0, f.rm, sizeof rm0);
    memcpy(rv0, f.rv, sizeof rv0);
    qat_ctx ctx;
    qat_ctx_init(&ctx, ARENA_BYTES);
    float *ref = malloc((size_t)x->numel * sizeof(float));

    /* eval: running statistics normalise, and stay as they were */
    ctx.training = 0;
    qat_tensor *y = qat_batchnorm2d(&ctx, x, g, b, &f.st);
    for (int64_t i = 0; i < x->numel; i++) {
        int c = (int)(i % C);
        ref[i] = (float)(g->data[c] * (x->data[i] - rm0[c]) / sqrt(rv0[c] + 1e-5) + b->data[c]);
    }
    test_compare("bn eval forward", y->data, ref, x->numel, 1e-5);
    CU_ASSERT(memcmp(rm0, f.rm, sizeof rm0) == 0 && memcmp(rv0, f.rv, sizeof rv0) == 0);

    /* freeze: training mode normalises with batch statistics but leaves running ones alone */
    ctx.training = 1;
    f.st.update_stats = 0;
    y = qat_batchnorm2d(&ctx, x, g, b, &f.st);
    double mean[5], var[5];
    ref_stats(x, mean, var);
    for (int64_t i = 0; i < x->numel; i++) {
        int c = (int)(i % C);
        ref[i] = (float)(g->data[c] * (x->data[i] - mean[c]) / sqrt(var[c] + 1e-5) + b->data[c]);
    }
    test_compare("bn frozen forward", y->data, ref, x->numel, 1e-5);
    CU_ASSERT(memcmp(rm0, f.rm, sizeof rm0) == 0 && memcmp(rv0, f.rv, sizeof rv0) == 0);

    /* momentum 1 replaces the running stats by the batch ones */
    f.st.update_stats = 1;
    f.st.momentum = 1.0f;
    qat_batchnorm2d(&ctx, x, g, b, &f.st);
    for (int c = 0; c < C; c++) {
        CU_ASSERT_DOUBLE_EQUAL(f.rm[c], mean[c], 1e-5);
        CU_ASSERT_DOUBLE_EQUAL(f.rv[c], var[c] * (N * H * W) / (N * H * W - 1), 1e-5);
    }
    free(ref);
    qat_ctx_free(&ctx);
    test_leaf_free(x);
    test_leaf_free(g);
    test_leaf_free(b);
}

/* Large enough for the chunked, threaded path; channels far from zero mean test the shifted
 * sums. Forward and backward vs double references, and bitwise equal with 1 and 2 threads. */
static void test_bn_large_threads(void) {
    const int N = 4, H = 28, W = 28, C = 24;
    const int64_t M = (int64_t)N * H * W;
    qat_tensor *x = leaf4(N, H, W, C, 1.0f, 21), *g = leaf1(C, 1.0f, 22), *b = leaf1(C, 1.0f, 23);
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] = x->data[i] * (1.0f + (float)(i % C) * 0.1f) + 100.0f * (float)((i % C) % 3);
    qat_tensor *dy = leaf4(N, H, W, C, 1.0f, 24);
    double mean[24], var[24];
    ref_stats(x, mean, var);

    float *out[2], *dx[2], dg[2][24], db[2][24];
    int prev = qat_get_threads();
    for (int t = 0; t < 2; t++) {
        qat_set_threads(t + 1); /* the regions take qat_kernel_threads(), not the OpenMP default */
        bn_fixture f;
        bn_fixture_init(&f, C, 25);
        qat_ctx ctx;
        qat_ctx_init(&ctx, ARENA_BYTES);
        memset(x->grad, 0, (size_t)x->numel * sizeof(float));
        memset(g->grad, 0, C * sizeof(float));
        memset(b->grad, 0, C * sizeof(float));
        qat_tensor *y = qat_batchnorm2d(&ctx, x, g, b, &f.st);
        memcpy(qat_grad(&ctx, y), dy->data, (size_t)y->numel * sizeof(float));
        qat_backward_node(&ctx, y);
        out[t] = malloc((size_t)x->numel * sizeof(float));
        dx[t] = malloc((size_t)x->numel * sizeof(float));
        memcpy(out[t], y->data, (size_t)x->numel * sizeof(float));
        memcpy(dx[t], x->grad, (size_t)x->numel * sizeof(float));
        memcpy(dg[t], g->grad, sizeof dg[t]);
        memcpy(db[t], b->grad, sizeof db[t]);
        qat_ctx_free(&ctx);
    }
    qat_set_threads(prev);
    CU_ASSERT(memcmp(out[0], out[1], (size_t)x->numel * sizeof(float)) == 0);
    CU_ASSERT(memcmp(dx[0], dx[1], (size_t)x->numel * sizeof(float)) == 0);
    CU_ASSERT(memcmp(dg[0], dg[1], sizeof dg[0]) == 0 && memcmp(db[0], db[1], sizeof db[0]) == 0);

    /* references in double */
    float *ry = malloc((size_t)x->numel * sizeof(float)),
          *rdx = malloc((size_t)x->numel * sizeof(float));
    float rdg[24], rdb[24];
    for (int c = 0; c < C; c++) {
        double rstd = 1.0 / sqrt(var[c] + 1e-5), sdy = 0, sdyx = 0;
        for (int64_t r = 0; r < M; r++) {
            double xh = (x->data[r * C + c] - mean[c]) * rstd, d = dy->data[r * C + c];
            ry[r * C + c] = (float)(g->data[c] * xh + b->data[c]);
            sdy += d;
            sdyx += d * xh;
        }
        rdg[c] = (float)sdyx;
        rdb[c] = (float)sdy;
        for (int64_t r = 0; r < M; r++) {
            double xh = (x->data[r * C + c] - mean[c]) * rstd, d = dy->data[r * C + c];
            rdx[r * C + c] = (float)(g->data[c] * rstd / M * (M * d - sdy - xh * sdyx));
        }
    }
    test_compare("bn large forward", out[1], ry, x->numel, 1e-5);
    test_compare("bn large dx", dx[1], rdx, x->numel, 1e-5);
    test_compare("bn large dgamma", dg[1], rdg, C, 1e-4);
    test_compare("bn large dbeta", db[1], rdb, C, 1e-4);
    for (int t = 0; t < 2; t++) {
        free(out[t]);
        free(dx[t]);
    }
    free(ry);
    free(rdx);
    test_leaf_free(x);
    test_leaf_free(g);
    test_leaf_free(b);
    test_leaf_free(dy);
}

/* inputs: x, gamma, beta; user: bn_fixture */
static qat_tensor *build_bn(qat_ctx *ctx, qat_tensor **in, void *user) {
    bn_fixture *f = user;
    return qat_batchnorm2d(ctx, in[0], in[1], in[2], &f->st);
}

static void test_bn_gradcheck(void) {
    const int C = 3;
    qat_tensor *in[3] = {leaf4(2, 2, 3, C, 1.0f, 31), leaf1(C, 1.0f, 32), leaf1(C, 1.0f, 33)};
    for (int64_t i = 0; i < in[0]->numel; i++) in[0]->data[i] += (float)(i % C);
    bn_fixture f;
    bn_fixture_init(&f, C, 34);
    gradcheck2("bn train", build_bn, 3, in, &f, 1, 1e-2f, 2e-3);
    gradcheck2("bn eval", build_bn, 3, in, &f, 0, 1e-2f, 2e-3);
    f.st.update_stats = 0;
    gradcheck2("bn frozen", build_bn, 3, in, &f, 1, 1e-2f, 2e-3);
    for (int i = 0; i < 3; i++) test_leaf_free(in[i]);
}

/* ---- activations -------------------------------------------------------------------------- */

static qat_tensor *build_relu(qat_ctx *ctx, qat_tensor **in, void *u) {
    return qat_relu(ctx, in[0]);
}
static qat_tensor *build_relu6(qat_ctx *ctx, qat_tensor **in, void *u) {
    return qat_relu6(ctx, in[0]);
}
static qat_tensor *build_hswish(qat_ctx *ctx, qat_tensor **in, void *u) {
    return qat_hardswish(ctx, in[0]);
}

static float ref_hswish(float v) {
    double r = v + 3.0 < 0 ? 0 : (v + 3.0 > 6 ? 6 : v + 3.0);
    return (float)(v * r / 6.0);
}

static void test_activations(void) {
    /* x spans all pieces of each function: N(0, 4) hits < -3, (-3, 3), > 6 */
    qat_tensor *x = leaf4(2, 3, 4, 5, 4.0f, 41);
    const float kinks[4] = {-3.0f, 0.0f, 3.0f, 6.0f};
    avoid_kinks(x, kinks, 4, 0.05f);
    qat_ctx ctx;
    qat_ctx_init(&ctx, ARENA_BYTES);
    qat_tensor *r = qat_relu(&ctx, x), *r6 = qat_relu6(&ctx, x), *hs = qat_hardswish(&ctx, x);
    float *e = malloc((size_t)x->numel * sizeof(float));
    int below = 0, above6 = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        below += x->data[i] < -3;
        above6 += x->data[i] > 6;
    }
    CU_ASSERT(below > 0 && above6 > 0);
    for (int64_t i = 0; i < x->numel; i++) e[i] = x->data[i] > 0 ? x->data[i] : 0;
    test_compare("relu forward", r->data, e, x->numel, 0);
    for (int64_t i = 0; i < x->numel; i++) e[i] = fminf(fmaxf(x->data[i], 0), 6);
    test_compare("relu6 forward", r6->data, e, x->numel, 0);
    for (int64_t i = 0; i < x->numel; i++) e[i] = ref_hswish(x->data[i]);
    test_compare("hardswish forward", hs->data, e, x->numel, 1e-6);
    free(e);
    qat_ctx_free(&ctx);

    qat_tensor *in[1] = {x};
    gradcheck2("relu", build_relu, 1, in, NULL, 1, 1e-3f, 2e-3);
    gradcheck2("relu6", build_relu6, 1, in, NULL, 1, 1e-3f, 2e-3);
    gradcheck2("hardswish", build_hswish, 1, in, NULL, 1, 1e-3f, 2e-3);
    test_leaf_free(x);

    /* At the kinks the derivative follows PyTorch: relu'(0) = 0, relu6'(0) = relu6'(6) = 0,
     * hardswish'(-3) = -1/2, hardswish'(3) = 3/2. */
    int s1[1] = {6};
    qat_tensor *k = test_leaf(1, s1, 0.0f, 42);
    const float kv[6] = {-3, 0, 3, 6, -4, 7};
    memcpy(k->data, kv, sizeof kv);
    const float want_relu[6] = {0, 0, 1, 1, 0, 1}, want_r6[6] = {0, 0, 1, 0, 0, 0};
    const float want_hs[6] = {-0.5f, 0.5f, 1.5f, 1, 0, 1};
    qat_tensor *(*fns[3])(qat_ctx *, qat_tensor *) = {qat_relu, qat_relu6, qat_hardswish};
    const float *wants[3] = {want_relu, want_r6, want_hs};
    for (int f = 0; f < 3; f++) {
        qat_ctx_init(&ctx, ARENA_BYTES);
        memset(k->grad, 0, sizeof kv);
        qat_tensor *y = fns[f](&ctx, k);
        float *g = qat_grad(&ctx, y);
        for (int i = 0; i < 6; i++) g[i] = 1.0f;
        qat_backward_node(&ctx, y);
        test_compare("activation derivative at kinks", k->grad, wants[f], 6, 1e-6);
        qat_ctx_free(&ctx);
    }
    test_leaf_free(k);
}

static qat_tensor *build_hsig(qat_ctx *ctx, qat_tensor **in, void *u) {
    return qat_hardsigmoid(ctx, in[0]);
}

/* hardsigmoid = relu6(x + 3) / 6 against a double reference, its gradient by central
 * differences away from the kinks, and 0 at the kinks (PyTorch's) */
static void test_hardsigmoid(void) {
    qat_tensor *x = leaf4(2, 3, 4, 5, 4.0f, 45);
    const float kinks[2] = {-3.0f, 3.0f};
    avoid_kinks(x, kinks, 2, 0.05f);
    qat_ctx ctx;
    qat_ctx_init(&ctx, ARENA_BYTES);
    qat_tensor *y = qat_hardsigmoid(&ctx, x);
    float *e = malloc((size_t)x->numel * sizeof(float));
    int lo = 0, mid = 0, hi = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        double v = x->data[i] + 3.0;
        e[i] = (float)((v < 0 ? 0 : v > 6 ? 6 : v) / 6.0);
        lo += x->data[i] < -3, hi += x->data[i] > 3, mid += fabsf(x->data[i]) < 3;
    }
    CU_ASSERT(lo > 0 && mid > 0 && hi > 0);
    test_compare("hardsigmoid forward", y->data, e, x->numel, 1e-6);
    free(e);
    qat_ctx_free(&ctx);
    qat_tensor *in[1] = {x};
    gradcheck2("hardsigmoid", build_hsig, 1, in, NULL, 1, 1e-3f, 2e-3);
    test_leaf_free(x);
    int s1[1] = {4};
    qat_tensor *k = test_leaf(1, s1, 0.0f, 46);
    const float kv[4] = {-3, 3, 0, -4}, want[4] = {0, 0, 1.0f / 6, 0};
    memcpy(k->data, kv, sizeof kv);
    memset(k->grad, 0, sizeof kv);
    qat_ctx_init(&ctx, ARENA_BYTES);
    qat_tensor *yk = qat_hardsigmoid(&ctx, k);
    float *g = qat_grad(&ctx, yk);
    for (int i = 0; i < 4; i++) g[i] = 1.0f;
    qat_backward_node(&ctx, yk);
    test_compare("hardsigmoid derivative at kinks", k->grad, want, 4, 1e-7);
    qat_ctx_free(&ctx);
    test_leaf_free(k);
}

static qat_tensor *build_sigmoid(qat_ctx *ctx, qat_tensor **in, void *u) { return qat_sigmoid(ctx, in[0]); }

/* sigmoid against a double reference (on both sides of 0 and in both tails, above the thread
 * threshold too), its gradient by central differences */
static void test_sigmoid(void) {
    qat_tensor *x = leaf4(2, 3, 4, 5, 6.0f, 47), *big = leaf4(4, 16, 16, 20, 8.0f, 48);
    qat_ctx ctx;
    qat_ctx_init(&ctx, ARENA_BYTES);
    for (int t = 0; t < 2; t++) {
        qat_tensor *in = t ? big : x, *y = qat_sigmoid(&ctx, in);
        float *e = malloc((size_t)in->numel * sizeof(float));
        for (int64_t i = 0; i < in->numel; i++) e[i] = (float)(1.0 / (1.0 + exp(-(double)in->data[i])));
        test_compare("sigmoid forward", y->data, e, in->numel, 1e-6);
        free(e);
    }
    qat_ctx_free(&ctx);
    qat_tensor *in[1] = {x};
    gradcheck2("sigmoid", build_sigmoid, 1, in, NULL, 1, 1e-3f, 2e-3);
    test_leaf_free(x), test_leaf_free(big);
}

static qat_tensor *build_cmul(qat_ctx *ctx, qat_tensor **in, void *u) {
    return qat_channel_mul(ctx, in[0], in[1]);
}

/* x (N, H, W, C) * s (N, C) against the naive loop, small and above the threading threshold,
 * and both gradients by central differences */
static void test_channel_mul(void) {
    const int shapes[2][4] = {{3, 5, 3, 7}, {4, 17, 15, 33}};
    for (int t = 0; t < 2; t++) {
        const int N = shapes[t][0], H = shapes[t][1], W = shapes[t][2], C = shapes[t][3];
        qat_tensor *x = leaf4(N, H, W, C, 1.0f, 47 + t), *s = leaf2(N, C, 1.0f, 49 + t);
        qat_ctx ctx;
        qat_ctx_init(&ctx, 8 * ARENA_BYTES);
        qat_tensor *y = qat_channel_mul(&ctx, x, s);
        float *e = malloc((size_t)x->numel * sizeof(float));
        for (int n = 0; n < N; n++)
            for (int p = 0; p < H * W; p++)
                for (int c = 0; c < C; c++) {
                    int64_t i = ((int64_t)n * H * W + p) * C + c;
                    e[i] = x->data[i] * s->data[n * C + c];
                }
        CU_ASSERT(y->ndim == 4 && y->shape[1] == H && y->shape[3] == C);
        test_compare("channel_mul forward", y->data, e, x->numel, 0);
        /* backward against the naive sums: dx = dy * s, ds = sum_hw dy * x (dy = y's index) */
        float *g = qat_grad(&ctx, y);
        for (int64_t i = 0; i < y->numel; i++) g[i] = (float)(i % 5) - 2.0f;
        memset(x->grad, 0, (size_t)x->numel * sizeof(float));
        memset(s->grad, 0, (size_t)s->numel * sizeof(float));
        qat_backward_node(&ctx, y);
        double *ds = calloc((size_t)N * C, sizeof(double));
        for (int n = 0; n < N; n++)
            for (int p = 0; p < H * W; p++)
                for (int c = 0; c < C; c++) {
                    int64_t i = ((int64_t)n * H * W + p) * C + c;
                    e[i] = g[i] * s->data[n * C + c];
                    ds[n * C + c] += (double)g[i] * x->data[i];
                }
        test_compare("channel_mul dx", x->grad, e, x->numel, 0);
        for (int i = 0; i < N * C; i++) e[i] = (float)ds[i];
        test_compare("channel_mul ds", s->grad, e, N * C, 1e-5);
        free(ds);
        free(e);
        qat_ctx_free(&ctx);
        if (t == 0) {
            qat_tensor *in[2] = {x, s};
            gradcheck2("channel_mul", build_cmul, 2, in, NULL, 1, 1e-2f, 1e-3);
        }
        test_leaf_free(x);
        test_leaf_free(s);
    }
}

/* Above the threading threshold: the parallel element-wise loops against the serial rule. */
static void test_activations_large(void) {
    qat_tensor *x = leaf4(4, 16, 16, 40, 4.0f, 43), *y = leaf4(4, 16, 16, 40, 1.0f, 44);
    qat_ctx ctx;
    qat_ctx_init(&ctx, ARENA_BYTES);
    qat_tensor *r6 = qat_relu6(&ctx, x), *s = qat_add(&ctx, x, y), *hs = qat_hardswish(&ctx, x);
    float *g = qat_grad(&ctx, hs);
    for (int64_t i = 0; i < x->numel; i++) g[i] = 1.0f;
    qat_backward_node(&ctx, hs);
    int bad = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        float v = x->data[i];
        bad += r6->data[i] != fminf(fmaxf(v, 0), 6);
        bad += s->data[i] != v + y->data[i];
        float d = v < -3 ? 0 : (v <= 3 ? v / 3 + 0.5f : 1);
        bad += fabsf(x->grad[i] - d) > 1e-6f;
    }
    CU_ASSERT_EQUAL(bad, 0);
    qat_ctx_free(&ctx);
    test_leaf_free(x);
    test_leaf_free(y);
}

/* ---- element-wise binary ------------------------------------------------------------------ */

static qat_tensor *build_add(qat_ctx *ctx, qat_tensor **in, void *u) {
    return qat_add(ctx, in[0], in[1]);
}
static qat_tensor *build_mul(qat_ctx *ctx, qat_tensor **in, void *u) {
    return qat_mul(ctx, in[0], in[1]);
}
static qat_tensor *build_add_self(qat_ctx *ctx, qat_tensor **in, void *u) {
    return qat_add(ctx, in[0], in[0]);
}
static qat_tensor *build_mul_self(qat_ctx *ctx, qat_tensor **in, void *u) {
    return qat_mul(ctx, in[0], in[0]);
}

static void test_add_mul(void) {
    qat_tensor *in[2] = {leaf4(2, 3, 3, 4, 1.0f, 51), leaf4(2, 3, 3, 4, 1.0f, 52)};
    qat_ctx ctx;
    qat_ctx_init(&ctx, ARENA_BYTES);
    qat_tensor *s = qat_add(&ctx, in[0], in[1]), *p = qat_mul(&ctx, in[0], in[1]);
    int bad = 0;
    for (int64_t i = 0; i < s->numel; i++) {
        bad += s->data[i] != in[0]->data[i] + in[1]->data[i];
        bad += p->data[i] != in[0]->data[i] * in[1]->data[i];
    }
    CU_ASSERT_EQUAL(bad, 0);
    qat_ctx_free(&ctx);
    gradcheck2("add", build_add, 2, in, NULL, 1, 1e-2f, 1e-3);
    gradcheck2("mul", build_mul, 2, in, NULL, 1, 1e-2f, 1e-3);
    gradcheck2("add x+x", build_add_self, 1, in, NULL, 1, 1e-2f, 1e-3);
    gradcheck2("mul x*x", build_mul_self, 1, in, NULL, 1, 1e-2f, 1e-3);
    test_leaf_free(in[0]);
    test_leaf_free(in[1]);
}

/* ---- pooling ------------------------------------------------------------------------------ */

typedef struct {
    int k, stride, pad;
} pool_args;

static qat_tensor *build_gap(qat_ctx *ctx, qat_tensor **in, void *u) {
    return qat_global_avgpool(ctx, in[0]);
}
static qat_tensor *build_maxpool(qat_ctx *ctx, qat_tensor **in, void *u) {
    pool_args *a = u;
    return qat_maxpool2d(ctx, in[0], a->k, a->stride, a->pad);
}
static qat_tensor *build_avgpool(qat_ctx *ctx, qat_tensor **in, void *u) {
    pool_args *a = u;
    return qat_avgpool2d(ctx, in[0], a->k, a->stride, a->pad);
}

#define AT(t, n, h, w, c)                                                                          \
    ((t)->data[(((int64_t)(n) * (t)->shape[1] + (h)) * (t)->shape[2] + (w)) * (t)->shape[3] + (c)])

/* Naive pooling over the padded window: is_max selects max (padding -inf) or the average
 * with padding counted as zeros and the divisor k*k. */
static float ref_pool(const qat_tensor *x, int n, int oh, int ow, int c, const pool_args *a,
                      int is_max) {
    double acc = is_max ? -INFINITY : 0.0;
    for (int i = 0; i < a->k; i++)
        for (int j = 0; j < a->k; j++) {
            int h = oh * a->stride - a->pad + i, w = ow * a->stride - a->pad + j;
            int inside = h >= 0 && h < x->shape[1] && w >= 0 && w < x->shape[2];
            double v = inside ? AT(x, n, h, w, c) : (is_max ? -INFINITY : 0.0);
            acc = is_max ? (v > acc ? v : acc) : acc + v;
        }
    return (float)(is_max ? acc : acc / (a->k * a->k));
}

static void test_pooling(void) {
    const int N = 2, H = 7, W = 5, C = 3;
    qat_tensor *x = leaf4(N, H, W, C, 1.0f, 61);
    fill_distinct(x, 62);
    qat_tensor *in[1] = {x};
    qat_ctx ctx;
    qat_ctx_init(&ctx, ARENA_BYTES);

    qat_tensor *gp = qat_global_avgpool(&ctx, x);
    CU_ASSERT(gp->ndim == 2 && gp->shape[0] == N && gp->shape[1] == C);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++) s += AT(x, n, h, w, c);
            CU_ASSERT_DOUBLE_EQUAL(gp->data[n * C + c], s / (H * W), 1e-6);
        }

    /* k3 s2 p1 on odd sizes: OH = (7+2-3)/2+1 = 4, OW = (5+2-3)/2+1 = 3 */
    const pool_args cases[3] = {{3, 2, 1}, {2, 2, 0}, {3, 1, 1}};
    for (int ci = 0; ci < 3; ci++) {
        const pool_args *a = &cases[ci];
        qat_tensor *mp = qat_maxpool2d(&ctx, x, a->k, a->stride, a->pad);
        qat_tensor *ap = qat_avgpool2d(&ctx, x, a->k, a->stride, a->pad);
        int OH = (H + 2 * a->pad - a->k) / a->stride + 1,
            OW = (W + 2 * a->pad - a->k) / a->stride + 1;
        CU_ASSERT(mp->shape[1] == OH && mp->shape[2] == OW && ap->shape[1] == OH &&
                  ap->shape[2] == OW);
        int bad = 0;
        for (int n = 0; n < N; n++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++)
                    for (int c = 0; c < C; c++) {
                        bad += AT(mp, n, oh, ow, c) != ref_pool(x, n, oh, ow, c, a, 1);
                        bad +=
                            fabsf(AT(ap, n, oh, ow, c) - ref_pool(x, n, oh, ow, c, a, 0)) > 1e-6f;
                    }
        CU_ASSERT_EQUAL(bad, 0);
        gradcheck2("maxpool", build_maxpool, 1, in, (void *)a, 1, 1e-3f, 1e-3);
        gradcheck2("avgpool", build_avgpool, 1, in, (void *)a, 1, 1e-2f, 1e-3);
    }
    /* ties go to the first maximum in window order, as in PyTorch: with a constant input the
     * gradient of a 2x2/2 pool lands on each window's top-left element */
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = 1.0f;
    memset(x->grad, 0, (size_t)x->numel * sizeof(float));
    qat_tensor *mp = qat_maxpool2d(&ctx, x, 2, 2, 0);
    float *g = qat_grad(&ctx, mp);
    for (int64_t i = 0; i < mp->numel; i++) g[i] = 1.0f;
    qat_backward_node(&ctx, mp);
    int bad = 0;
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++)
                for (int c = 0; c < C; c++) {
                    int first = h % 2 == 0 && w % 2 == 0 && h < 6 && w < 4;
                    bad += AT(x, n, h, w, c) != 1.0f ||
                           x->grad[(((int64_t)n * H + h) * W + w) * C + c] != (first ? 1.0f : 0.0f);
                }
    CU_ASSERT_EQUAL(bad, 0);
    fill_distinct(x, 62);
    qat_ctx_free(&ctx);
    gradcheck2("global avgpool", build_gap, 1, in, NULL, 1, 1e-2f, 1e-3);
    test_leaf_free(x);
}

/* ---- linear, reshape ---------------------------------------------------------------------- */

static qat_tensor *build_linear(qat_ctx *ctx, qat_tensor **in, void *u) {
    return qat_linear(ctx, in[0], in[1], u ? in[2] : NULL);
}

static void test_linear(void) {
    const int N = 3, IN = 5, OUT = 4;
    qat_tensor *in[3] = {leaf2(N, IN, 1.0f, 71), leaf2(OUT, IN, 1.0f, 72), leaf1(OUT, 1.0f, 73)};
    qat_ctx ctx;
    qat_ctx_init(&ctx, ARENA_BYTES);
    qat_tensor *y = qat_linear(&ctx, in[0], in[1], in[2]),
               *y0 = qat_linear(&ctx, in[0], in[1], NULL);
    CU_ASSERT(y->ndim == 2 && y->shape[0] == N && y->shape[1] == OUT);
    float ref[12], ref0[12];
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            double s = 0;
            for (int i = 0; i < IN; i++)
                s += (double)in[0]->data[n * IN + i] * in[1]->data[o * IN + i];
            ref0[n * OUT + o] = (float)s;
            ref[n * OUT + o] = (float)(s + in[2]->data[o]);
        }
    test_compare("linear forward", y->data, ref, N * OUT, 1e-5);
    test_compare("linear forward no bias", y0->data, ref0, N * OUT, 1e-5);
    qat_ctx_free(&ctx);
    int one = 1;
    gradcheck2("linear", build_linear, 3, in, &one, 1, 1e-2f, 1e-3);
    gradcheck2("linear no bias", build_linear, 2, in, NULL, 1, 1e-2f, 1e-3);
    for (int i = 0; i < 3; i++) test_leaf_free(in[i]);
}

static qat_tensor *build_flatten(qat_ctx *ctx, qat_tensor **in, void *u) {
    return qat_flatten(ctx, in[0]);
}
static qat_tensor *build_reshape(qat_ctx *ctx, qat_tensor **in, void *u) {
    int s[3] = {3, 2, 10};
    return qat_reshape(ctx, in[0], 3, s);
}

static void test_reshape(void) {
    qat_tensor *x = leaf4(3, 2, 2, 5, 1.0f, 81);
    qat_ctx ctx;
    qat_ctx_init(&ctx, ARENA_BYTES);
    qat_tensor *f = qat_flatten(&ctx, x);
    CU_ASSERT(f->ndim == 2 && f->shape[0] == 3 && f->shape[1] == 20 && f->numel == x->numel);
    CU_ASSERT(memcmp(f->data, x->data, (size_t)x->numel * sizeof(float)) == 0);
    qat_ctx_free(&ctx);
    qat_tensor *in[1] = {x};
    gradcheck2("flatten", build_flatten, 1, in, NULL, 1, 1e-2f, 1e-3);
    gradcheck2("reshape", build_reshape, 1, in, NULL, 1, 1e-2f, 1e-3);
    test_leaf_free(x);
}

/* ---- dropout ------------------------------------------------------------------------------ */

static qat_tensor *build_dropout(qat_ctx *ctx, qat_tensor **in, void *u) {
    return qat_dropout(ctx, in[0], 0.4f);
}

static void test_dropout(void) {
    qat_tensor *x = leaf2(100, 100, 1.0f, 91);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = fabsf(x->data[i]) + 0.01f; /* non-zero */
    qat_ctx ctx;
    qat_ctx_init(&ctx, ARENA_BYTES);
    ctx.training = 1;
    qat_tensor *y = qat_dropout(&ctx, x, 0.3f);
    int dropped = 0, bad = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        if (y->data[i] == 0.0f)
            dropped++;
        else
            bad += fabsf(y->data[i] - x->data[i] / 0.7f) > 1e-6f * fabsf(y->data[i]);
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(dropped > 2800 && dropped < 3200); /* 3000 +- 4.4 sigma */
    /* same seed, same mask */
    qat_rng_seed(&ctx.rng, 5);
    qat_tensor *a = qat_dropout(&ctx, x, 0.5f);
    qat_rng_seed(&ctx.rng, 5);
    qat_tensor *b = qat_dropout(&ctx, x, 0.5f);
    CU_ASSERT(memcmp(a->data, b->data, (size_t)x->numel * sizeof(float)) == 0);
    /* identity when p == 0 or not training */
    CU_ASSERT(qat_dropout(&ctx, x, 0.0f) == x);
    ctx.training = 0;
    CU_ASSERT(qat_dropout(&ctx, x, 0.5f) == x);
    qat_ctx_free(&ctx);
    test_leaf_free(x);

    qat_tensor *in[1] = {leaf2(4, 6, 1.0f, 92)};
    gradcheck2("dropout", build_dropout, 1, in, NULL, 1, 1e-2f, 1e-3);
    test_leaf_free(in[0]);
}

/* ---- softmax cross-entropy ---------------------------------------------------------------- */

typedef struct {
    const int *labels;
    float smoothing;
} ce_args;

static qat_tensor *build_ce(qat_ctx *ctx, qat_tensor **in, void *u) {
    ce_args *a = u;
    return qat_softmax_cross_entropy(ctx, in[0], a->labels, a->smoothing);
}

static void test_softmax_ce(void) {
    qat_ctx ctx;
    qat_ctx_init(&ctx, ARENA_BYTES);
    /* rows [1 2 3] label 2 and [1 0 -1] label 1: losses log(1 + e^-1 + e^-2) and
     * log(e + 1 + e^-1), mean 0.907606. Smoothing eps adds eps*(z_y - mean_k z) per row:
     * 0.1*(3 - 2) = 0.1 and 0.1*(0 - 0) = 0, so the mean grows by 0.05. */
    int s23[2] = {2, 3};
    qat_tensor *z = test_leaf(2, s23, 0.0f, 1);
    const float zv[6] = {1, 2, 3, 1, 0, -1};
    memcpy(z->data, zv, sizeof zv);
    const int lab[2] = {2, 1};
    qat_tensor *l0 = qat_softmax_cross_entropy(&ctx, z, lab, 0.0f);
    qat_tensor *l1 = qat_softmax_cross_entropy(&ctx, z, lab, 0.1f);
    CU_ASSERT(l0->ndim == 1 && l0->shape[0] == 1 && l0->numel == 1);
    CU_ASSERT_DOUBLE_EQUAL(l0->data[0], 0.9076059644443802, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(l1->data[0], 0.9576059644443803, 1e-6);

    /* logits of 1000 stay finite: softmax of [1000, 0, -1000] is [1, ~0, ~0] */
    const float big[6] = {1000, 0, -1000, 1000, 1000, 999};
    memcpy(z->data, big, sizeof big);
    const int lb[2] = {0, 2};
    qat_tensor *l2 = qat_softmax_cross_entropy(&ctx, z, lb, 0.0f);
    double row1 = log(2.0 + exp(-1.0)) + 1.0; /* -log(e^-1 / (1 + 1 + e^-1)) */
    CU_ASSERT(isfinite(l2->data[0]));
    CU_ASSERT_DOUBLE_EQUAL(l2->data[0], (0.0 + row1) / 2, 1e-5);
    memset(z->grad, 0, sizeof zv);
    qat_backward(&ctx, l2);
    const float want[6] = {0,
                           0,
                           0,
                           (float)(1 / (2 + exp(-1.0)) / 2),
                           (float)(1 / (2 + exp(-1.0)) / 2),
                           (float)((exp(-1.0) / (2 + exp(-1.0)) - 1) / 2)};
    test_compare("ce grad at large logits", z->grad, want, 6, 1e-6);
    qat_ctx_free(&ctx);
    test_leaf_free(z);

    qat_tensor *in[1] = {leaf2(4, 5, 2.0f, 101)};
    const int labels[4] = {0, 3, 4, 3};
    ce_args a0 = {labels, 0.0f}, a1 = {labels, 0.2f};
    gradcheck2("softmax ce", build_ce, 1, in, &a0, 1, 1e-2f, 1e-3);
    gradcheck2("softmax ce smoothing", build_ce, 1, in, &a1, 1, 1e-2f, 1e-3);
    test_leaf_free(in[0]);
}

/* ---- reductions --------------------------------------------------------------------------- */

static qat_tensor *build_mean(qat_ctx *ctx, qat_tensor **in, void *u) {
    return qat_mean(ctx, in[0]);
}
static qat_tensor *build_sum(qat_ctx *ctx, qat_tensor **in, void *u) { return qat_sum(ctx, in[0]); }

static void test_reduce(void) {
    qat_tensor *x = leaf4(2, 3, 4, 5, 1.0f, 111);
    double s = 0;
    for (int64_t i = 0; i < x->numel; i++) s += x->data[i];
    qat_ctx ctx;
    qat_ctx_init(&ctx, ARENA_BYTES);
    qat_tensor *m = qat_mean(&ctx, x), *t = qat_sum(&ctx, x);
    CU_ASSERT(m->numel == 1 && t->numel == 1 && m->ndim == 1);
    CU_ASSERT_DOUBLE_EQUAL(t->data[0], s, 1e-5);
    CU_ASSERT_DOUBLE_EQUAL(m->data[0], s / x->numel, 1e-6);
    qat_ctx_free(&ctx);
    qat_tensor *in[1] = {x};
    gradcheck2("mean", build_mean, 1, in, NULL, 1, 1e-2f, 1e-3);
    gradcheck2("sum", build_sum, 1, in, NULL, 1, 1e-2f, 1e-3);
    test_leaf_free(x);
}

/* ---- gradient accumulation ---------------------------------------------------------------- */

/* Every backward adds into its inputs' grads: running one node's backward twice doubles them. */
static void test_backward_accumulates(void) {
    struct {
        const char *name;
        qat_test_build_fn build;
        int nin;
        void *user;
    } ops[20];
    int nops = 0;
    bn_fixture f;
    bn_fixture_init(&f, 4, 121);
    pool_args pa = {3, 2, 1};
    const int labels[3] = {1, 0, 3};
    ce_args ca = {labels, 0.1f};
#define OP(n, b, k, u) ops[nops++] = (typeof(ops[0])){n, b, k, u}
    OP("bn", build_bn, 3, &f);
    OP("relu", build_relu, 1, NULL);
    OP("relu6", build_relu6, 1, NULL);
    OP("hardswish", build_hswish, 1, NULL);
    OP("hardsigmoid", build_hsig, 1, NULL);
    OP("sigmoid", build_sigmoid, 1, NULL);
    OP("add", build_add, 2, NULL);
    OP("mul", build_mul, 2, NULL);
    OP("gap", build_gap, 1, NULL);
    OP("maxpool", build_maxpool, 1, &pa);
    OP("avgpool", build_avgpool, 1, &pa);
    OP("flatten", build_flatten, 1, NULL);
    OP("dropout", build_dropout, 1, NULL);
    OP("mean", build_mean, 1, NULL);
    OP("sum", build_sum, 1, NULL);
    OP("linear", build_linear, 3, &pa); /* any non-NULL user: with bias */
    OP("softmax ce", build_ce, 1, &ca);
#undef OP
    for (int k = 0; k < nops; k++) {
        /* x (3, 3, 5, 4) fits every op but linear and CE, which take (3, 4) */
        qat_tensor *in[3] = {NULL, NULL, NULL};
        if (ops[k].build == build_linear || ops[k].build == build_ce)
            in[0] = leaf2(3, 4, 1.0f, 130 + k);
        else
            in[0] = leaf4(3, 3, 5, 4, 1.0f, 130 + k);
        if (ops[k].build == build_linear) {
            in[1] = leaf2(5, 4, 1.0f, 150);
            in[2] = leaf1(5, 1.0f, 151);
        } else if (ops[k].build == build_bn) {
            in[1] = leaf1(4, 1.0f, 150);
            in[2] = leaf1(4, 1.0f, 151);
        } else if (ops[k].nin == 2) {
            in[1] = leaf4(3, 3, 5, 4, 1.0f, 152);
        }
        qat_ctx ctx;
        qat_ctx_init(&ctx, ARENA_BYTES);
        qat_tensor *y = ops[k].build(&ctx, in, ops[k].user);
        float *g = qat_grad(&ctx, y);
        fill_uniform(g, y->numel, -1.0f, 1.0f, 160);
        qat_backward_node(&ctx, y);
        float *once[3] = {NULL, NULL, NULL};
        for (int i = 0; i < ops[k].nin; i++) {
            once[i] = malloc((size_t)in[i]->numel * sizeof(float));
            memcpy(once[i], in[i]->grad, (size_t)in[i]->numel * sizeof(float));
            for (int64_t j = 0; j < in[i]->numel; j++) once[i][j] *= 2.0f;
        }
        qat_backward_node(&ctx, y);
        for (int i = 0; i < ops[k].nin; i++) {
            test_compare(ops[k].name, in[i]->grad, once[i], in[i]->numel, 1e-6);
            free(once[i]);
        }
        qat_ctx_free(&ctx);
        for (int i = 0; i < 3; i++) test_leaf_free(in[i]);
    }

    /* a whole graph through qat_backward: two steps without zeroing the parameter grads give
     * twice one step's grads */
    qat_tensor *x = leaf4(3, 2, 2, 4, 1.0f, 170), *w = leaf2(5, 4, 1.0f, 171),
               *b = leaf1(5, 1.0f, 172);
    x->requires_grad = 0; /* an input, not a parameter */
    float gw1[20], gb1[5];
    for (int step = 0; step < 2; step++) {
        qat_ctx ctx;
        qat_ctx_init(&ctx, ARENA_BYTES);
        qat_tensor *h = qat_global_avgpool(&ctx, qat_relu6(&ctx, x));
        qat_tensor *loss = qat_softmax_cross_entropy(&ctx, qat_linear(&ctx, h, w, b), labels, 0.1f);
        qat_backward(&ctx, loss);
        if (step == 0) {
            memcpy(gw1, w->grad, sizeof gw1);
            memcpy(gb1, b->grad, sizeof gb1);
            for (int i = 0; i < 20; i++) gw1[i] *= 2.0f;
            for (int i = 0; i < 5; i++) gb1[i] *= 2.0f;
        }
        qat_ctx_free(&ctx);
    }
    test_compare("linear dW accumulates", w->grad, gw1, 20, 1e-6);
    test_compare("linear db accumulates", b->grad, gb1, 5, 1e-6);
    test_leaf_free(x);
    test_leaf_free(w);
    test_leaf_free(b);
}

/* A graph where intermediate tensors receive grads: each op's first gradient into a fresh
 * buffer (stored, not added) and a second consumer adding to it (h feeds add and relu, ap
 * feeds flatten and global avgpool). Kinked ops are kept in their smooth regions: BN output in (0,
 * 6) with beta = 3 for relu6 / relu, and x away from +-3 for hardswish. */
typedef struct {
    bn_fixture bn;
    float zmin, zmax;
} graph_args;

static qat_tensor *build_graph(qat_ctx *ctx, qat_tensor **in, void *user) {
    graph_args *a = user;
    qat_tensor *x = in[0];
    qat_tensor *z = qat_batchnorm2d(ctx, x, in[1], in[2], &a->bn.st);
    for (int64_t i = 0; i < z->numel; i++) {
        a->zmin = fminf(a->zmin, z->data[i]);
        a->zmax = fmaxf(a->zmax, z->data[i]);
    }
    qat_tensor *h = qat_relu6(ctx, z);
    qat_tensor *m = qat_mul(ctx, qat_add(ctx, h, x), qat_hardswish(ctx, x));
    qat_tensor *s = qat_add(ctx, m, qat_relu(ctx, h));
    qat_tensor *ap = qat_avgpool2d(ctx, s, 3, 2, 1);               /* (2, 3, 3, 4) */
    qat_tensor *d = qat_dropout(ctx, qat_flatten(ctx, ap), 0.25f); /* (2, 36) */
    static const int labels[2] = {2, 0};
    qat_tensor *ce = qat_softmax_cross_entropy(ctx, qat_linear(ctx, d, in[3], in[4]), labels, 0.1f);
    return qat_add(ctx, ce, qat_mean(ctx, qat_global_avgpool(ctx, ap)));
}

static void test_graph_gradcheck(void) {
    const int C = 4;
    qat_tensor *in[5] = {leaf4(2, 5, 5, C, 1.5f, 191), leaf1(C, 0.0f, 192), leaf1(C, 0.0f, 193),
                         leaf2(3, 36, 0.3f, 194), leaf1(3, 0.3f, 195)};
    const float kinks[2] = {-3.0f, 3.0f};
    avoid_kinks(in[0], kinks, 2, 0.05f);
    for (int c = 0; c < C; c++) {
        in[1]->data[c] = 0.8f; /* |xhat| < 3 for 50 samples: z in (0.6, 5.4) */
        in[2]->data[c] = 3.0f;
    }
    graph_args a = {.zmin = INFINITY, .zmax = -INFINITY};
    bn_fixture_init(&a.bn, C, 196);
    test_gradcheck("graph", build_graph, 5, in, &a, 1, 1e-2f, 2e-3);
    /* the relu6 / relu kinks were never crossed, else the check above proves nothing */
    CU_ASSERT(a.zmin > 0.1f && a.zmax < 5.9f);
    for (int i = 0; i < 5; i++) test_leaf_free(in[i]);
}

/* With grad disabled (inference) nothing is recorded and outputs do not require grad. */
static void test_no_grad(void) {
    qat_tensor *x = leaf4(2, 4, 4, 3, 1.0f, 181), *g = leaf1(3, 1.0f, 182),
               *b = leaf1(3, 1.0f, 183);
    bn_fixture f;
    bn_fixture_init(&f, 3, 184);
    qat_ctx ctx;
    qat_ctx_init(&ctx, ARENA_BYTES);
    ctx.grad_enabled = 0;
    ctx.training = 1; /* dropout active, BN on batch statistics */
    qat_tensor *t[4];
    t[0] = qat_batchnorm2d(&ctx, x, g, b, &f.st);
    t[1] = qat_maxpool2d(&ctx, qat_relu6(&ctx, t[0]), 2, 2, 0);
    t[2] = qat_dropout(&ctx, qat_flatten(&ctx, t[1]), 0.5f);
    const int labels[2] = {0, 1};
    t[3] = qat_softmax_cross_entropy(&ctx, t[2], labels, 0.0f);
    CU_ASSERT_EQUAL(ctx.ntape, 0);
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(t[i]->requires_grad, 0);
        CU_ASSERT_PTR_NULL(t[i]->saved);
    }
    qat_ctx_free(&ctx);
    test_leaf_free(x);
    test_leaf_free(g);
    test_leaf_free(b);
}

/* ---- batchnorm with fused activation ------------------------------------------------------ */

static qat_tensor *build_bn_relu6_fused(qat_ctx *ctx, qat_tensor **in, void *user) {
    bn_fixture *f = user;
    return qat_batchnorm2d_act(ctx, in[0], in[1], in[2], &f->st, QAT_BN_ACT_RELU6);
}

static qat_tensor *build_bn_relu_fused(qat_ctx *ctx, qat_tensor **in, void *user) {
    bn_fixture *f = user;
    return qat_batchnorm2d_act(ctx, in[0], in[1], in[2], &f->st, QAT_BN_ACT_RELU);
}

static qat_tensor *build_bn_relu6_separate(qat_ctx *ctx, qat_tensor **in, void *user) {
    bn_fixture *f = user;
    return qat_relu6(ctx, qat_batchnorm2d(ctx, in[0], in[1], in[2], &f->st));
}

/* Output and input grads (x, gamma, beta) of build with output gradient w. */
static void grads_of(qat_test_build_fn build, qat_tensor **in, bn_fixture *f, int training,
                     const float *w, float *out_y, float *gx, float *gg, float *gb) {
    int64_t n = in[0]->numel, C = in[1]->numel;
    float *g = malloc((size_t)(n + 2 * C) * sizeof(float));
    test_run_backward(build, 3, in, f, training, w, out_y, g);
    memcpy(gx, g, (size_t)n * sizeof(float));
    memcpy(gg, g + n, (size_t)C * sizeof(float));
    memcpy(gb, g + n + C, (size_t)C * sizeof(float));
    free(g);
}

static void test_bn_fused_act(void) {
    const int C = 5, N = 3, H = 4, W = 3;
    qat_tensor *in[3] = {leaf4(N, H, W, C, 3.0f, 41), leaf1(C, 1.5f, 42), leaf1(C, 2.0f, 43)};
    int64_t n = in[0]->numel;
    float *w = malloc((size_t)n * sizeof(float)), *y1 = malloc((size_t)n * sizeof(float));
    float *y2 = malloc((size_t)n * sizeof(float)), *gx1 = malloc((size_t)n * sizeof(float));
    float *gx2 = malloc((size_t)n * sizeof(float));
    float gg1[8], gg2[8], gb1[8], gb2[8];
    fill_uniform(w, n, -1.0f, 1.0f, 44);
    for (int training = 0; training <= 1; training++) {
        bn_fixture f1, f2;
        bn_fixture_init(&f1, C, 45);
        bn_fixture_init(&f2, C, 45);
        grads_of(build_bn_relu6_fused, in, &f1, training, w, y1, gx1, gg1, gb1);
        grads_of(build_bn_relu6_separate, in, &f2, training, w, y2, gx2, gg2, gb2);
        /* the fused pass clamps exactly like relu6 and masks exactly like its backward */
        CU_ASSERT(memcmp(y1, y2, (size_t)n * sizeof(float)) == 0);
        int clamped = 0;
        for (int64_t i = 0; i < n; i++) clamped += y1[i] == 0.0f || y1[i] == 6.0f;
        CU_ASSERT(clamped > 0 && clamped < n); /* the test exercises both sides of the mask */
        test_compare("fused bn-relu6 dx", gx1, gx2, n, 1e-5);
        test_compare("fused bn-relu6 dgamma", gg1, gg2, C, 1e-5);
        test_compare("fused bn-relu6 dbeta", gb1, gb2, C, 1e-5);
        CU_ASSERT(memcmp(f1.rm, f2.rm, C * sizeof(float)) == 0);
    }
    /* and against central differences (inputs shifted away from the kinks is not needed for a
     * random batch with few values near 0 and 6, but the tolerance allows a rare kink crossing) */
    bn_fixture f;
    bn_fixture_init(&f, C, 46);
    qat_tensor *small[3] = {leaf4(2, 2, 2, C, 1.0f, 47), leaf1(C, 1.0f, 48), leaf1(C, 1.0f, 49)};
    for (int i = 0; i < 3; i++) small[i]->requires_grad = 1;
    test_gradcheck("bn+relu fused (train)", build_bn_relu_fused, 3, small, &f, 1, 1e-3f, 2e-2);
    for (int i = 0; i < 3; i++) test_leaf_free(in[i]), test_leaf_free(small[i]);
    free(w), free(y1), free(y2), free(gx1), free(gx2);
}

/* Out of memory inside qat_ctx_run is QAT_ERR_NOMEM with a message, not an abort: a cap below
 * what the graph needs makes the arena fail; without the cap the same work runs. */
static qat_status big_graph(qat_ctx *ctx, void *arg) {
    int *steps = arg;
    qat_tensor *x = qat_tensor_4d(ctx, 8, 64, 64, 16); /* 2 MiB */
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = (float)(i % 7);
    qat_tensor *y = qat_relu(ctx, qat_add(ctx, x, x));
    (*steps)++;
    return y->data[1] == 2.0f ? QAT_OK : QAT_ERR_NUMERIC;
}

static qat_status nested_graph(qat_ctx *ctx, void *arg) {
    qat_status st = qat_ctx_run(ctx, big_graph, arg);
    return st == QAT_ERR_NOMEM ? QAT_OK : QAT_ERR_ARG; /* the inner run reports it */
}

static void test_out_of_memory(void) {
    int steps = 0;
    qat_ctx ctx;
    qat_set_memory_limit(1 << 20);
    qat_ctx_init(&ctx, 1 << 16);
    qat_status st = qat_ctx_run(&ctx, big_graph, &steps);
    CU_ASSERT(st == QAT_ERR_NOMEM && steps == 0);
    CU_ASSERT(strstr(qat_last_error(), "out of memory") != NULL);
    CU_ASSERT(strstr(qat_last_error(), "memory limit 1048576") != NULL);
    qat_ctx_reset(&ctx);
    CU_ASSERT(qat_ctx_run(&ctx, nested_graph, &steps) == QAT_OK && steps == 0);
    qat_set_memory_limit(0);
    qat_ctx_reset(&ctx);
    CU_ASSERT(qat_ctx_run(&ctx, big_graph, &steps) == QAT_OK && steps == 1);
    qat_ctx_free(&ctx);
}

void register_ops_tests(void) {
    // clang-format off
    test_add_suite("ops",
                   "batchnorm train forward + running stats", test_bn_train_forward,
                   "batchnorm eval and freeze", test_bn_eval_and_freeze,
                   "batchnorm large, threaded, deterministic", test_bn_large_threads,
                   "batchnorm gradcheck", test_bn_gradcheck,
                   "relu / relu6 / hardswish", test_activations,
                   "hardsigmoid", test_hardsigmoid,
                   "sigmoid", test_sigmoid,
                   "channel_mul (squeeze-excite)", test_channel_mul,
                   "element-wise ops above thread threshold", test_activations_large,
                   "add / mul", test_add_mul,
                   "pooling", test_pooling,
                   "linear", test_linear,
                   "reshape / flatten", test_reshape,
                   "dropout", test_dropout,
                   "softmax cross-entropy", test_softmax_ce,
                   "mean / sum", test_reduce,
                   "backward accumulates", test_backward_accumulates,
                   "graph gradcheck (fresh and shared grads)", test_graph_gradcheck,
                   "no grad records nothing", test_no_grad,
                   "batchnorm with fused relu/relu6", test_bn_fused_act,
                   "out of memory in a graph is QAT_ERR_NOMEM", test_out_of_memory,
                   NULL);
    // clang-format on
}
