/* Kernels: CPU dispatch, the GEMM wrapper against a naive triple loop, im2col/col2im and the
 * strided gather as adjoint pairs, and every SIMD depthwise kernel against its scalar
 * reference on odd shapes (channel tails, borders, strides, paddings). */
#include "test_util.h"
#include "kernels.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

static float *rand_buf(int64_t n, uint64_t seed) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    qat_rng r;
    qat_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) p[i] = qat_rng_uniform(&r) * 2.0f - 1.0f;
    return p;
}

/* ---- CPU dispatch ---------------------------------------------------------------------- */

static void test_isa_parse(void) {
    qat_isa v = QAT_ISA_COUNT;
    CU_ASSERT_EQUAL(qat_isa_parse("scalar", &v), 0);
    CU_ASSERT_EQUAL(v, QAT_ISA_SCALAR);
    CU_ASSERT_EQUAL(qat_isa_parse("AVX2", &v), 0);
    CU_ASSERT_EQUAL(v, QAT_ISA_AVX2);
    CU_ASSERT_EQUAL(qat_isa_parse("avx512", &v), 0);
    CU_ASSERT_EQUAL(v, QAT_ISA_AVX512);
    v = QAT_ISA_AVX2;
    CU_ASSERT_EQUAL(qat_isa_parse("sse9", &v), -1);
    CU_ASSERT_EQUAL(qat_isa_parse("", &v), -1);
    CU_ASSERT_EQUAL(qat_isa_parse(NULL, &v), -1);
    CU_ASSERT_EQUAL(v, QAT_ISA_AVX2); /* untouched on failure */
    CU_ASSERT_STRING_EQUAL(qat_isa_name(QAT_ISA_SCALAR), "scalar");
    CU_ASSERT_STRING_EQUAL(qat_isa_name(QAT_ISA_AVX2), "avx2");
    CU_ASSERT_STRING_EQUAL(qat_isa_name(QAT_ISA_AVX512), "avx512");
    CU_ASSERT_STRING_EQUAL(qat_isa_name(QAT_ISA_COUNT), "unknown");
}

static void test_isa_detect(void) {
    /* cpuid/xgetbv detection agrees with the compiler's own probe (which also checks the OS
     * register state for AVX/AVX-512 since GCC 12's libgcc). */
    qat_isa hw = qat_cpu_isa_hw();
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    CU_ASSERT_EQUAL(hw >= QAT_ISA_AVX2, avx2);
    CU_ASSERT_EQUAL(hw >= QAT_ISA_AVX512, avx2 && avx512);
    /* (CU_ASSERT_* expand to braced blocks: keep them out of bare if/else) */
    int vnni512 = hw >= QAT_ISA_AVX512 && __builtin_cpu_supports("avx512vnni");
    int avxvnni = hw >= QAT_ISA_AVX2 && __builtin_cpu_supports("avxvnni");
    CU_ASSERT_EQUAL(qat_cpu_has_avx512_vnni(), vnni512);
    CU_ASSERT_EQUAL(qat_cpu_has_avx_vnni(), avxvnni);
}

static void test_isa_cap(void) {
    qat_isa hw = qat_cpu_isa_hw();
    qat_isa before = qat_cpu_isa();
    CU_ASSERT(before <= hw);
    qat_isa prev = qat_set_isa(QAT_ISA_SCALAR);
    CU_ASSERT_EQUAL(prev, before);
    CU_ASSERT_EQUAL(qat_cpu_isa(), QAT_ISA_SCALAR);
    prev = qat_set_isa(QAT_ISA_AVX2);
    CU_ASSERT_EQUAL(prev, QAT_ISA_SCALAR);
    CU_ASSERT_EQUAL(qat_cpu_isa(), hw < QAT_ISA_AVX2 ? hw : QAT_ISA_AVX2);
    /* Never above the hardware, even when forced. */
    qat_set_isa(QAT_ISA_AVX512);
    CU_ASSERT_EQUAL(qat_cpu_isa(), hw);
    qat_set_isa(before);
    CU_ASSERT_EQUAL(qat_cpu_isa(), before);
}

static void test_threads(void) {
    int keep = qat_get_threads();
    qat_set_threads(1);
    CU_ASSERT_EQUAL(qat_get_threads(), 1);
    CU_ASSERT_EQUAL(qat_kernel_threads(), 1);
    qat_set_threads(3);
    CU_ASSERT_EQUAL(qat_get_threads(), 3);
    CU_ASSERT_EQUAL(omp_get_max_threads(), 3);
    int inner = -1;
#pragma omp parallel num_threads(2)
    {
#pragma omp single
        inner = qat_kernel_threads();
    }
    CU_ASSERT_EQUAL(inner, 1);
    /* the team governor's cap (kernels/team.c) bounds qat_kernel_threads only, and
     * qat_set_threads lifts it */
    qat_set_thread_cap(1);
    CU_ASSERT_EQUAL(qat_kernel_threads(), 1);
    CU_ASSERT_EQUAL(qat_get_threads(), 3);
    qat_set_thread_cap(5);
    CU_ASSERT_EQUAL(qat_kernel_threads(), 3);
    qat_set_thread_cap(2);
    qat_set_threads(3);
    CU_ASSERT_EQUAL(qat_thread_cap(), 0);
    CU_ASSERT_EQUAL(qat_kernel_threads(), 3);
    qat_set_threads(0); /* the default: one per core */
    CU_ASSERT_EQUAL(qat_get_threads(), omp_get_num_procs());
    qat_set_threads(keep);
}

static void test_team_decide(void) {
    /* The governor's decision on made-up windows (ns times, 50 ms windows): the numbers a
     * quiet machine, one busy process beside 2 threads, and the load leaving give. */
    const long long ms = 1000000;
    qat_team_state d;
    qat_team_init(&d, 2);
    long long t = 0;
    CU_ASSERT_EQUAL(qat_team_decide(&d, 0.01, -1, t += 50 * ms), 0); /* quiet */
    CU_ASSERT_EQUAL(qat_team_decide(&d, 0.30, -1, t += 50 * ms), 0); /* one hot window: noise */
    CU_ASSERT_EQUAL(qat_team_decide(&d, 0.01, -1, t += 50 * ms), 0);
    CU_ASSERT_EQUAL(qat_team_decide(&d, 0.70, -1, t += 50 * ms), 0); /* busy process starts */
    CU_ASSERT_EQUAL(qat_team_decide(&d, 0.65, -1, t += 50 * ms), 1); /* two in a row: capped */
    /* capped, the other process still running (3 runnable): no probe before the backoff */
    CU_ASSERT_EQUAL(qat_team_decide(&d, 0.00, 3, t += 50 * ms), 1);
    CU_ASSERT_EQUAL(qat_team_decide(&d, 0.00, 3, t += 50 * ms), 1);
    t += 500 * ms; /* the backoff (0.5 s) runs out: probe with the whole team */
    CU_ASSERT_EQUAL(qat_team_decide(&d, 0.00, 3, t), 0);
    CU_ASSERT(d.probing);
    CU_ASSERT_EQUAL(qat_team_decide(&d, 0.70, -1, t += 50 * ms), 1); /* the probe waited */
    CU_ASSERT_EQUAL(d.backoff, 1000 * ms);                         /* so the backoff doubled */
    /* the process leaves: two windows with nothing else runnable, then a probe that finds
     * quiet cores keeps the whole team */
    CU_ASSERT_EQUAL(qat_team_decide(&d, 0.00, 1, t += 50 * ms), 1);
    CU_ASSERT_EQUAL(qat_team_decide(&d, 0.00, 1, t += 50 * ms), 0);
    CU_ASSERT_EQUAL(qat_team_decide(&d, 0.01, -1, t += 50 * ms), 0);
    CU_ASSERT(!d.probing);
    CU_ASSERT_EQUAL(d.backoff, 500 * ms);
    CU_ASSERT_EQUAL(qat_team_decide(&d, 0.02, -1, t += 50 * ms), 0);
    /* 8 threads beside one busy process wait about 8/9 of a core: 7 threads */
    qat_team_init(&d, 8);
    qat_team_decide(&d, 0.89, -1, t += 50 * ms);
    CU_ASSERT_EQUAL(qat_team_decide(&d, 0.89, -1, t += 50 * ms), 7);
}

/* ---- GEMM ------------------------------------------------------------------------------ */

typedef void (*gemm_fn)(int, int, int, int, int, float, const float *, int, const float *, int,
                        float, float *, int);

static void check_gemm(gemm_fn gemm, const char *lib, int ta, int tb, int M, int N, int K,
                       float alpha, float beta, int pad) {
    /* Stored shapes: A is M x K (K x M when transposed), B is K x N (N x K); `pad` extra
     * columns on every leading dimension check that the strides are honoured. */
    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    int lda = ac + pad, ldb = bc + pad, ldc = N + pad;
    float *A = rand_buf((int64_t)ar * lda, 1 + M), *B = rand_buf((int64_t)br * ldb, 2 + N);
    float *C = rand_buf((int64_t)M * ldc, 3 + K), *R = malloc((size_t)M * ldc * sizeof(float));
    if (beta == 0.0f)
        for (int64_t i = 0; i < (int64_t)M * ldc; i++) C[i] = NAN; /* must be overwritten */
    memcpy(R, C, (size_t)M * ldc * sizeof(float));
    gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    qat_sgemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
    char what[128];
    snprintf(what, sizeof what, "%s ta%d tb%d %dx%dx%d a%g b%g", lib, ta, tb, M, N, K, alpha,
             beta);
    /* Compare the MxN block only; padding columns must be untouched (NaN == NaN fails the
     * generic comparison, so check those bitwise). */
    for (int i = 0; i < M; i++) {
        test_compare(what, C + (int64_t)i * ldc, R + (int64_t)i * ldc, N, 1e-4 * (1 + K / 64));
        if (memcmp(C + (int64_t)i * ldc + N, R + (int64_t)i * ldc + N, (size_t)pad * sizeof(float)))
            CU_FAIL("sgemm wrote outside the MxN block");
    }
    free(A);
    free(B);
    free(C);
    free(R);
}

static void test_sgemm_shapes(void) {
    int keep = qat_get_threads();
    qat_set_threads(2); /* so the large shapes take the threaded split */
    static const int shapes[][3] = {
        {1, 1, 1}, {7, 13, 5}, {67, 33, 129}, {300, 70, 40} /* splits M */,
        {20, 301, 90} /* splits N, non-multiple of the column quantum */, {5, 3, 0} /* K = 0 */,
    };
    static const float ab[][2] = {{1, 0}, {0.5f, 2}, {-1.5f, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++)
            for (int k = 0; k < 3; k++) {
                check_gemm(qat_sgemm, "sgemm", t & 1, t >> 1, shapes[s][0], shapes[s][1],
                           shapes[s][2], ab[k][0], ab[k][1], (int)(s % 3));
                check_gemm(qat_sgemm_openblas, "sgemm_openblas", t & 1, t >> 1, shapes[s][0],
                           shapes[s][1], shapes[s][2], ab[k][0], ab[k][1], (int)(s % 3));
            }
    qat_set_threads(keep);
}

static void test_sgemm_deterministic(void) {
    /* A long K (the weight-gradient shape) is where a library may split the reduction over
     * threads: repeated calls with the same thread count must agree to the bit. */
    int keep = qat_get_threads();
    qat_set_threads(2);
    const int M = 24, N = 16, K = 20000;
    float *A = rand_buf((int64_t)K * M, 61), *B = rand_buf((int64_t)K * N, 62);
    float *C1 = calloc(M * N, sizeof(float)), *C2 = calloc(M * N, sizeof(float));
    float *R = calloc(M * N, sizeof(float));
    qat_sgemm(1, 0, M, N, K, 1.0f, A, M, B, N, 0.0f, C1, N);
    qat_sgemm(1, 0, M, N, K, 1.0f, A, M, B, N, 0.0f, C2, N);
    CU_ASSERT(memcmp(C1, C2, M * N * sizeof(float)) == 0);
    qat_sgemm_ref(1, 0, M, N, K, 1.0f, A, M, B, N, 0.0f, R, N);
    test_compare("sgemm long K", C1, R, M * N, 1e-3);
    free(A);
    free(B);
    free(C1);
    free(C2);
    free(R);
    qat_set_threads(keep);
}

static void test_sgemm_in_parallel(void) {
    /* Inside our own parallel region qat_sgemm must run on the calling thread and still be
     * right (each thread its own product). */
    int keep = qat_get_threads();
    qat_set_threads(2);
    const int M = 150, N = 64, K = 48;
    float *A = rand_buf(2 * M * K, 11), *B = rand_buf(K * N, 12);
    float *C = calloc(2 * M * N, sizeof(float)), *R = calloc(2 * M * N, sizeof(float));
#pragma omp parallel for num_threads(2)
    for (int t = 0; t < 2; t++)
        qat_sgemm(0, 0, M, N, K, 1.0f, A + t * M * K, K, B, N, 0.0f, C + t * M * N, N);
    for (int t = 0; t < 2; t++)
        qat_sgemm_ref(0, 0, M, N, K, 1.0f, A + t * M * K, K, B, N, 0.0f, R + t * M * N, N);
    test_compare("sgemm in parallel region", C, R, 2 * M * N, 1e-4);
    free(A);
    free(B);
    free(C);
    free(R);
    qat_set_threads(keep);
}

static void test_bias_helpers(void) {
    const int rows = 2000, C = 37; /* large enough to run threaded (2^16 elements) */
    int keep = qat_get_threads();
    qat_set_threads(2);
    float *y = rand_buf(rows * C, 5), *b = rand_buf(C, 6), *ref = malloc(rows * C * sizeof(float));
    memcpy(ref, y, rows * C * sizeof(float));
    qat_bias_add(y, b, rows, C);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < C; c++) ref[r * C + c] += b[c];
    test_compare("bias add", y, ref, rows * C, 1e-6);
    float db[37], dref[37];
    for (int c = 0; c < C; c++) db[c] = dref[c] = 0.25f;
    float *scratch = malloc(qat_bias_grad_scratch(rows, C) * sizeof(float));
    qat_bias_grad(db, y, rows, C, scratch);
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int r = 0; r < rows; r++) s += y[r * C + c];
        dref[c] += (float)s;
    }
    test_compare("bias grad", db, dref, C, 1e-4);
    /* the same bits on one thread: the chunks depend on the shape only */
    float db1[37];
    for (int c = 0; c < C; c++) db1[c] = 0.25f;
    qat_set_threads(1);
    qat_bias_grad(db1, y, rows, C, scratch);
    CU_ASSERT(memcmp(db1, db, sizeof db) == 0);
    free(scratch);
    free(y);
    free(b);
    free(ref);
    qat_set_threads(keep);
}

/* ---- im2col / col2im / gather --------------------------------------------------------- */

static double dot(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static void test_im2col_values(void) {
    /* x (1, 3, 3, 2) = 0..17; 3x3 kernel, pad 1, stride 2 over channel 1 only -> OH = OW = 2.
     * Row 0 (oh=0, ow=0) reads rows -1..1 and cols -1..1. */
    float x[18];
    for (int i = 0; i < 18; i++) x[i] = (float)i;
    qat_conv_geom g;
    CU_ASSERT_EQUAL_FATAL(qat_conv_geom_init(&g, 1, 3, 3, 2, 3, 3, 2, 1), 0);
    CU_ASSERT_EQUAL(g.oh, 2);
    CU_ASSERT_EQUAL(g.ow, 2);
    float cols[4 * 9];
    qat_im2col_nhwc(cols, x, &g, 2, 1, 1);
    const float row0[9] = {0, 0, 0, 0, 1, 3, 0, 7, 9};
    const float row3[9] = {9, 11, 0, 15, 17, 0, 0, 0, 0};
    test_compare("im2col row 0", cols, row0, 9, 0);
    test_compare("im2col row 3", cols + 27, row3, 9, 0);
    qat_conv_geom bad;
    CU_ASSERT_EQUAL(qat_conv_geom_init(&bad, 1, 2, 2, 1, 5, 5, 1, 1), -1); /* empty output */
    CU_ASSERT_EQUAL(qat_conv_geom_init(&bad, 1, 2, 2, 1, 3, 3, 0, 1), -1); /* stride 0 */
}

static void test_im2col_adjoint(void) {
    /* col2im is the transpose of im2col: <im2col(x), c> == <x, col2im(c)>. */
    static const int cases[][8] = {/* n h w ctot k s p cg(c0 = ctot - cg) */
                                   {2, 7, 5, 6, 3, 2, 1, 4}, {1, 5, 5, 3, 3, 1, 1, 3},
                                   {3, 6, 7, 2, 5, 1, 2, 1}, {1, 4, 4, 5, 2, 3, 0, 5}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const int *c = cases[t];
        qat_conv_geom g;
        CU_ASSERT_EQUAL_FATAL(qat_conv_geom_init(&g, c[0], c[1], c[2], c[3], c[4], c[4], c[5], c[6]), 0);
        int ctot = c[3], cg = c[7], c0 = ctot - cg;
        int64_t nx = (int64_t)g.n * g.h * g.w * ctot, nc = (int64_t)g.n * g.oh * g.ow * g.kh * g.kw * cg;
        float *x = rand_buf(nx, 21 + t), *cl = rand_buf(nc, 31 + t), *cx = malloc(nc * sizeof(float));
        float *dx = calloc(nx, sizeof(float));
        qat_im2col_nhwc(cx, x, &g, ctot, c0, cg);
        qat_col2im_nhwc_add(dx, cl, &g, ctot, c0, cg);
        double l = dot(cx, cl, nc), r = dot(x, dx, nx);
        CU_ASSERT(fabs(l - r) <= 1e-4 * (1 + fabs(l)));
        /* channels outside [c0, c0+cg) untouched */
        for (int64_t i = 0; i < nx; i++)
            if ((int)(i % ctot) < c0 && dx[i] != 0.0f) {
                CU_FAIL("col2im wrote outside its channel slice");
                break;
            }
        free(x);
        free(cl);
        free(cx);
        free(dx);
    }
}

static void test_gather_adjoint(void) {
    qat_conv_geom g;
    CU_ASSERT_EQUAL_FATAL(qat_conv_geom_init(&g, 2, 7, 9, 5, 1, 1, 2, 0), 0);
    CU_ASSERT_EQUAL(g.oh, 4);
    CU_ASSERT_EQUAL(g.ow, 5);
    int64_t nx = (int64_t)2 * 7 * 9 * 5, ns = (int64_t)2 * 4 * 5 * 5;
    float *x = rand_buf(nx, 41), *s = rand_buf(ns, 42), *xs = malloc(ns * sizeof(float));
    float *dx = calloc(nx, sizeof(float));
    qat_gather_strided(xs, x, &g);
    CU_ASSERT_EQUAL(xs[0], x[0]);
    CU_ASSERT_EQUAL(xs[5 * 5 + 2], x[(2 * 9 + 0) * 5 + 2]); /* (n0, oh1, ow0, c2) <- (ih2, iw0) */
    qat_scatter_strided_add(dx, s, &g);
    double l = dot(xs, s, ns), r = dot(x, dx, nx);
    CU_ASSERT(fabs(l - r) <= 1e-4 * (1 + fabs(l)));
    free(x);
    free(s);
    free(xs);
    free(dx);
}

/* ---- depthwise ------------------------------------------------------------------------- */

static void test_dw_ref_values(void) {
    /* 1 channel, 3x3 ones on a 3x3 image of ones, pad 1: corners see 4 taps, edges 6, the
     * centre 9. Anchors the reference itself, which every SIMD test trusts. */
    qat_conv_geom g;
    CU_ASSERT_EQUAL_FATAL(qat_conv_geom_init(&g, 1, 3, 3, 1, 3, 3, 1, 1), 0);
    float x[9], w[9], y[9], b = 0.5f;
    for (int i = 0; i < 9; i++) x[i] = w[i] = 1.0f;
    qat_dwconv_fwd_ref(&g, y, x, w, &b);
    const float expect[9] = {4.5f, 6.5f, 4.5f, 6.5f, 9.5f, 6.5f, 4.5f, 6.5f, 4.5f};
    test_compare("dw ref fwd", y, expect, 9, 0);
    float dx[9], dw[9] = {0}, db = 0;
    qat_dwconv_bwd_data_ref(&g, dx, x, w, 0); /* dy = ones: dx counts the taps reading it */
    const float ex_dx[9] = {4, 6, 4, 6, 9, 6, 4, 6, 4};
    test_compare("dw ref bwd data", dx, ex_dx, 9, 0);
    qat_dwconv_bwd_weight_ref(&g, dw, &db, x, x, NULL);
    const float ex_dw[9] = {4, 6, 4, 6, 9, 6, 4, 6, 4}; /* pixels each tap sees */
    test_compare("dw ref bwd weight", dw, ex_dw, 9, 0);
    CU_ASSERT_DOUBLE_EQUAL(db, 9.0, 0);
    /* pack/unpack are inverse layouts */
    float ohwi[2 * 3 * 3], wk[18], back[18] = {0};
    for (int i = 0; i < 18; i++) ohwi[i] = (float)i;
    qat_dw_pack_weights(wk, ohwi, 2, 3, 3);
    CU_ASSERT_EQUAL(wk[1], 9.0f);  /* tap 0, channel 1 */
    CU_ASSERT_EQUAL(wk[2], 1.0f);  /* tap 1, channel 0 */
    qat_dw_unpack_add(back, wk, 2, 3, 3);
    test_compare("dw pack/unpack", back, ohwi, 18, 0);
}

/* Runs the dispatching kernels (under whatever ISA is set) against the references on one
 * shape. Returns 0 if the shape is empty (skipped). */
static int check_dw_shape(int N, int H, int W, int C, int KH, int KW, int S, int P, int bias) {
    qat_conv_geom g;
    if (qat_conv_geom_init(&g, N, H, W, C, KH, KW, S, P)) return 0;
    char what[128];
    snprintf(what, sizeof what, "dw %s n%d %dx%d c%d k%dx%d s%d p%d", qat_isa_name(qat_cpu_isa()),
             N, H, W, C, KH, KW, S, P);
    int64_t nx = (int64_t)N * H * W * C, ny = (int64_t)N * g.oh * g.ow * C, nw = (int64_t)KH * KW * C;
    uint64_t seed = (uint64_t)(N * 1000003 + H * 10007 + W * 1009 + C * 101 + KH * 11 + S * 3 + P);
    float *x = rand_buf(nx, seed), *wk = rand_buf(nw, seed + 1), *b = bias ? rand_buf(C, seed + 2) : NULL;
    float *dy = rand_buf(ny, seed + 3);
    float *y = rand_buf(ny, seed + 4), *yr = malloc(ny * sizeof(float));
    qat_dwconv_fwd(&g, y, x, wk, b);
    qat_dwconv_fwd_ref(&g, yr, x, wk, b);
    test_compare(what, y, yr, ny, 1e-5);

    /* backward data, accumulating onto a non-zero dx, then overwriting garbage */
    float *dx = rand_buf(nx, seed + 5), *dxr = malloc(nx * sizeof(float));
    memcpy(dxr, dx, nx * sizeof(float));
    qat_dwconv_bwd_data(&g, dx, dy, wk, 1);
    qat_dwconv_bwd_data_ref(&g, dxr, dy, wk, 1);
    test_compare(what, dx, dxr, nx, 1e-5);
    for (int64_t i = 0; i < nx; i++) dx[i] = NAN;
    qat_dwconv_bwd_data(&g, dx, dy, wk, 0);
    qat_dwconv_bwd_data_ref(&g, dxr, dy, wk, 0);
    test_compare(what, dx, dxr, nx, 1e-5);

    /* backward weights onto non-zero dw/db; once more without db */
    float *dw = rand_buf(nw, seed + 6), *dwr = malloc(nw * sizeof(float));
    float *db = rand_buf(C, seed + 7), *dbr = malloc(C * sizeof(float));
    memcpy(dwr, dw, nw * sizeof(float));
    memcpy(dbr, db, C * sizeof(float));
    float *scratch = malloc((qat_dwconv_bwd_weight_scratch(&g) + 1) * sizeof(float));
    qat_dwconv_bwd_weight(&g, dw, db, dy, x, scratch);
    qat_dwconv_bwd_weight_ref(&g, dwr, dbr, dy, x, NULL);
    test_compare(what, dw, dwr, nw, 1e-4);
    test_compare(what, db, dbr, C, 1e-4);
    qat_dwconv_bwd_weight(&g, dw, NULL, dy, x, scratch);
    qat_dwconv_bwd_weight_ref(&g, dwr, NULL, dy, x, NULL);
    test_compare(what, dw, dwr, nw, 1e-4);

    free(x);
    free(wk);
    free(b);
    free(dy);
    free(y);
    free(yr);
    free(dx);
    free(dxr);
    free(dw);
    free(dwr);
    free(db);
    free(dbr);
    free(scratch);
    return 1;
}

static void dw_sweep(qat_isa isa) {
    qat_isa keep = qat_set_isa(isa);
    if (qat_cpu_isa() != isa) { /* CPU lacks it: nothing to compare */
        qat_set_isa(keep);
        return;
    }
    int keep_threads = qat_get_threads();
    qat_set_threads(2);
    static const int chans[] = {1, 7, 17, 33, 100};
    static const int sizes[][2] = {{1, 1}, {5, 5}, {7, 7}, {9, 6}};
    int ran = 0;
    for (size_t c = 0; c < sizeof chans / sizeof chans[0]; c++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            for (int k = 3; k <= 5; k += 2)
                for (int st = 1; st <= 2; st++)
                    for (int p = 0; p <= 2; p++)
                        ran += check_dw_shape(c % 2 ? 2 : 1, sizes[s][0], sizes[s][1], chans[c], k,
                                              k, st, p, (int)((c + s + p) % 2));
    /* the runtime-shaped path: non-square kernels, stride 3, 1x1 kernels, and a kernel too
     * large for the SIMD path (falls back to the reference) */
    ran += check_dw_shape(2, 8, 7, 19, 2, 4, 1, 1, 1);
    ran += check_dw_shape(1, 9, 11, 33, 3, 3, 3, 1, 0);
    ran += check_dw_shape(3, 6, 5, 40, 1, 1, 2, 0, 1);
    ran += check_dw_shape(1, 11, 10, 18, 9, 9, 1, 4, 1);
    /* big enough to run on several threads */
    ran += check_dw_shape(4, 28, 28, 48, 3, 3, 1, 1, 1); /* 1.35 M MACs: over PARALLEL_MIN_MACS */
    ran += check_dw_shape(4, 63, 63, 40, 3, 3, 2, 1, 0); /* 1.47 M */
    CU_ASSERT(ran > 200);
    qat_set_threads(keep_threads);
    qat_set_isa(keep);
}

static void test_dw_scalar(void) { dw_sweep(QAT_ISA_SCALAR); }
static void test_dw_avx2(void) { dw_sweep(QAT_ISA_AVX2); }
static void test_dw_avx512(void) { dw_sweep(QAT_ISA_AVX512); }

static void test_dw_weight_deterministic(void) {
    /* The same bits on any thread count, and on the same thread count twice. */
    int keep = qat_get_threads();
    qat_conv_geom g;
    CU_ASSERT_EQUAL_FATAL(qat_conv_geom_init(&g, 32, 14, 14, 40, 3, 3, 1, 1), 0);
    int64_t nx = (int64_t)32 * 14 * 14 * 40, nw = 9 * 40;
    float *x = rand_buf(nx, 51), *dy = rand_buf(nx, 52);
    float *a = calloc(nw + 40, sizeof(float)), *b = calloc(nw + 40, sizeof(float));
    float *c = calloc(nw + 40, sizeof(float));
    qat_set_threads(2);
    CU_ASSERT(qat_dw_weight_chunks(&g) > 2); /* threaded, more chunks than threads */
    float *scratch = malloc(qat_dwconv_bwd_weight_scratch(&g) * sizeof(float));
    qat_dwconv_bwd_weight(&g, a, a + nw, dy, x, scratch);
    qat_dwconv_bwd_weight(&g, b, b + nw, dy, x, scratch);
    CU_ASSERT(memcmp(a, b, (nw + 40) * sizeof(float)) == 0);
    qat_set_threads(1);
    qat_dwconv_bwd_weight(&g, c, c + nw, dy, x, scratch);
    CU_ASSERT(memcmp(a, c, (nw + 40) * sizeof(float)) == 0);
    float *r = calloc(nw + 40, sizeof(float));
    qat_dwconv_bwd_weight_ref(&g, r, r + nw, dy, x, NULL);
    test_compare("dw weight vs reference", a, r, nw + 40, 1e-4);
    free(r);
    free(scratch);
    free(x);
    free(dy);
    free(a);
    free(b);
    free(c);
    qat_set_threads(keep);
}

void register_kernels_tests(void) {
    test_add_suite("kernels",
                   "isa parse and names", test_isa_parse,
                   "isa detection matches the compiler probe", test_isa_detect,
                   "isa forcing and capping", test_isa_cap,
                   "thread count", test_threads,
                   "team governor decisions", test_team_decide,
                   "sgemm vs naive, all transposes, odd sizes, alpha/beta", test_sgemm_shapes,
                   "sgemm inside a parallel region", test_sgemm_in_parallel,
                   "sgemm deterministic over a long K", test_sgemm_deterministic,
                   "bias add and bias grad", test_bias_helpers,
                   "im2col values", test_im2col_values,
                   "im2col/col2im adjoint", test_im2col_adjoint,
                   "strided gather/scatter adjoint", test_gather_adjoint,
                   "depthwise reference on known values", test_dw_ref_values,
                   "depthwise scalar dispatch vs ref", test_dw_scalar,
                   "depthwise avx2 vs ref", test_dw_avx2,
                   "depthwise avx512 vs ref", test_dw_avx512,
                   "depthwise weight grad determinism", test_dw_weight_deterministic,
                   NULL);
}
