/* oneDNN int8 backend (kernels/int8_onednn.h): every output byte of qat_i8_dnnl_conv_run equal to
 * qat_i8_conv / qat_i8_dwconv (reference and default variant), every logit of
 * qat_i8_dnnl_linear_run bitwise equal to qat_i8_gemm_f32, on odd shapes with extreme inputs and
 * weights, rounding ties (mult 0.5, 0.25, just below 0.5), all kinds of zero points and clamps;
 * plus the refusals at create. Without VNNI oneDNN is not exact and create must refuse. */
#include "int8_onednn.h"
#include "test_util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x0de1ce;
static uint32_t rnd(void) { return test_splitmix32(&rng_state); }
static int rnd_int(int lo, int hi) { return lo + (int)(rnd() % (uint32_t)(hi - lo + 1)); }
static float rnd_unit(void) { return (float)(rnd() >> 8) / 16777216.0f; }

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    QAT_ASSERT(p);
    return p;
}

/* u8 with many 0 and 255 */
static void fill_x(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t r = rnd();
        p[i] = (r & 7) == 0 ? 0 : (r & 7) == 1 ? 255 : (uint8_t)(r >> 8);
    }
}
/* s8 in [-amp, amp] with extremes -128 / 127 when amp is full scale */
static void fill_w(int8_t *p, size_t n, int amp) {
    for (size_t i = 0; i < n; i++) {
        uint32_t r = rnd();
        if (amp >= 127 && (r & 15) == 0) p[i] = -128;
        else if (amp >= 127 && (r & 15) == 1) p[i] = 127;
        else p[i] = (int8_t)rnd_int(-amp, amp);
    }
}

static int same_bytes(const char *what, const uint8_t *got, const uint8_t *exp, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (got[i] != exp[i]) {
            printf("\n  %s: first mismatch at index %zu: got %d expected %d\n", what, i, got[i], exp[i]);
            CU_FAIL("oneDNN output differs from the native kernels");
            return 0;
        }
    return 1;
}

/* ---- convolutions ------------------------------------------------------------------------------ */

typedef enum { MULT_HALF, MULT_QUARTER, MULT_BELOW_HALF, MULT_RANDOM, MULT_MIXED, MULT_KINDS } mult_kind;
static const char *const mult_names[] = {"0.5", "0.25", "0.5-ulp", "random", "mixed"};

typedef struct {
    int n, h, w, cin, cout, k, stride, pad, dw;
    int zx, zy, lo, hi;
    mult_kind mk;
    int small_w; /* weights in [-2, 2] and a small bias: accumulators near the ties */
    int no_bias;
} conv_case;

static void fill_mult(float *mult, int C, mult_kind mk, double spread) {
    for (int c = 0; c < C; c++) {
        mult_kind m = mk == MULT_MIXED ? (mult_kind)(c % MULT_MIXED) : mk;
        switch (m) {
        case MULT_HALF: mult[c] = 0.5f; break;
        case MULT_QUARTER: mult[c] = 0.25f; break;
        case MULT_BELOW_HALF: mult[c] = nextafterf(0.5f, 0.0f); break;
        default: mult[c] = (float)((0.5 + rnd_unit()) * 60.0 / spread); break;
        }
    }
}

/* Native output: qat_i8_conv (dense) or qat_i8_dwconv under the current variant. */
static void native_conv(uint8_t *y, const conv_case *cc, const uint8_t *x, const int8_t *w,
                        const int32_t *bias, const float *mult) {
    qat_i8_dims in = {cc->n, cc->h, cc->w, cc->cin};
    qat_i8_conv_params p = {cc->k, cc->k, cc->stride, cc->pad};
    qat_i8_requant rq = {mult, cc->zy, cc->lo, cc->hi};
    if (cc->dw) {
        size_t psz = qat_i8_dw_packed_size(cc->cin, cc->k, cc->k);
        void *pbuf = xmalloc(psz);
        qat_i8_dw_weights pw;
        CU_ASSERT_EQUAL_FATAL(qat_i8_dw_pack(&pw, pbuf, psz, w, bias, cc->cin, cc->k, cc->k, cc->zx), QAT_OK);
        size_t bsz = qat_i8_dwconv_get_buffer_size(&in, &p);
        void *scratch = xmalloc(bsz);
        CU_ASSERT_EQUAL(qat_i8_dwconv(y, x, &in, &p, &pw, &rq, scratch, bsz), QAT_OK);
        free(pbuf);
        free(scratch);
    } else {
        int K = cc->k * cc->k * cc->cin;
        size_t psz = qat_i8_gemm_packed_size(cc->cout, K);
        void *pbuf = xmalloc(psz);
        qat_i8_gemm_weights pw;
        CU_ASSERT_EQUAL_FATAL(qat_i8_gemm_pack(&pw, pbuf, psz, w, bias, cc->cout, K, cc->zx), QAT_OK);
        size_t bsz = qat_i8_conv_get_buffer_size(&in, &p);
        void *scratch = xmalloc(bsz);
        CU_ASSERT_EQUAL(qat_i8_conv(y, x, &in, &p, &pw, &rq, scratch, bsz), QAT_OK);
        free(pbuf);
        free(scratch);
    }
}

static void describe(char *s, size_t n, const conv_case *cc) {
    snprintf(s, n, "%s %dx%dx%dx%d->%d k%d s%d p%d zx=%d zy=%d [%d,%d] mult %s%s%s",
             cc->dw ? "dw" : "conv", cc->n, cc->h, cc->w, cc->cin, cc->cout, cc->k, cc->stride,
             cc->pad, cc->zx, cc->zy, cc->lo, cc->hi, mult_names[cc->mk],
             cc->small_w ? " small w" : "", cc->no_bias ? " no bias" : "");
}

/* oneDNN at batch n and batch 1 (each image) against the native REF and default variants. */
static void check_conv(const conv_case *cc) {
    const int C = cc->cout, K = cc->k * cc->k * (cc->dw ? 1 : cc->cin);
    const int oh = (cc->h + 2 * cc->pad - cc->k) / cc->stride + 1;
    const int ow = (cc->w + 2 * cc->pad - cc->k) / cc->stride + 1;
    const size_t nx1 = (size_t)cc->h * cc->w * cc->cin, ny1 = (size_t)oh * ow * C;
    const size_t nx = nx1 * cc->n, ny = ny1 * cc->n;
    uint8_t *x = xmalloc(nx), *ref = xmalloc(ny), *def = xmalloc(ny), *got = xmalloc(ny);
    int8_t *w = xmalloc((size_t)C * K);
    int32_t *bias = xmalloc((size_t)C * 4);
    float *mult = xmalloc((size_t)C * 4);
    fill_x(x, nx);
    fill_w(w, (size_t)C * K, cc->small_w ? 2 : 127);
    for (int c = 0; c < C; c++) bias[c] = cc->small_w ? rnd_int(-40, 40) : rnd_int(-20000, 20000);
    fill_mult(mult, C, cc->mk, sqrt((double)K) * 128.0 * 74.0);
    const int32_t *b = cc->no_bias ? NULL : bias;
    char what[160];
    describe(what, sizeof what, cc);

    qat_i8_set_path(QAT_I8_REF);
    native_conv(ref, cc, x, w, b, mult);
    qat_i8_set_path(QAT_I8_AUTO);
    native_conv(def, cc, x, w, b, mult);
    same_bytes(what, def, ref, ny); /* the two native variants agree (else the suite is moot) */

    qat_i8_dnnl_conv_desc d = {cc->h, cc->w, cc->cin, cc->cout, cc->k, cc->stride, cc->pad,
                               cc->dw ? cc->cin : 1, w, b, mult, cc->zx, cc->zy, cc->lo, cc->hi};
    qat_i8_dnnl_conv *dc = NULL;
    qat_status st = qat_i8_dnnl_conv_create(&dc, &d);
    if (st) printf("\n  %s: %s\n", what, qat_last_error());
    CU_ASSERT_EQUAL_FATAL(st, QAT_OK);
    memset(got, 0xA5, ny);
    CU_ASSERT_EQUAL(qat_i8_dnnl_conv_run(dc, got, x, cc->n), QAT_OK);
    if (!same_bytes(what, got, ref, ny)) printf("  (oneDNN impl %s)\n", qat_i8_dnnl_conv_impl(dc));
    for (int i = 0; i < cc->n; i++) { /* batch 1: another primitive */
        memset(got, 0xA5, ny1);
        CU_ASSERT_EQUAL(qat_i8_dnnl_conv_run(dc, got, x + i * nx1, 1), QAT_OK);
        same_bytes(what, got, ref + i * ny1, ny1);
    }
    qat_i8_dnnl_conv_free(dc);
    free(x); free(ref); free(def); free(got); free(w); free(bias); free(mult);
}

/* zy and a clamp: none, ReLU (lo = zy) or ReLU6-like (lo = zy, hi = zy + r), by index. */
static void pick_requant(conv_case *cc, int idx) {
    static const int zps[] = {0, 128, 255, -1};
    cc->zx = zps[idx % 4] >= 0 ? zps[idx % 4] : rnd_int(1, 254);
    cc->zy = zps[(idx / 4) % 4] >= 0 ? zps[(idx / 4) % 4] : rnd_int(1, 254);
    switch (idx % 3) {
    case 0: cc->lo = 0; cc->hi = 255; break;
    case 1: cc->lo = cc->zy; cc->hi = 255; break;
    default: cc->lo = cc->zy; cc->hi = cc->zy + (255 - cc->zy) * 3 / 5; break;
    }
    cc->mk = (mult_kind)(idx % MULT_KINDS);
    cc->small_w = cc->mk != MULT_RANDOM && idx % 2 == 0;
    cc->no_bias = idx % 7 == 3;
}

static void test_conv_dense(void) {
    static const int chans[] = {1, 3, 13, 17, 24};
    static const int geo[][3] = {{3, 1, 1}, {3, 2, 1}, {1, 1, 0}, {1, 2, 0}}; /* k, stride, pad */
    int idx = 0;
    for (int g = 0; g < 4; g++)
        for (int ci = 0; ci < 5; ci++)
            for (int co = 0; co < 5; co++, idx++) {
                if ((ci + co + g) % 2 && !(ci == 4 && co == 4)) continue; /* half the grid */
                int size = idx % 3 == 0 ? 28 : 7;
                conv_case cc = {.n = idx % 2 ? 3 : 1, .h = size, .w = size, .cin = chans[ci],
                                .cout = chans[co], .k = geo[g][0], .stride = geo[g][1],
                                .pad = geo[g][2]};
                pick_requant(&cc, idx);
                check_conv(&cc);
            }
    /* non-square inputs, borders that stride 2 meets unevenly, a 5x5 pad 2 */
    static const int odd[][6] = {{9, 6, 3, 2, 1, 5}, {6, 9, 3, 2, 1, 7}, {7, 5, 5, 1, 2, 3}, {8, 7, 5, 2, 2, 3}};
    for (int i = 0; i < 4; i++) {
        conv_case cc = {.n = 2, .h = odd[i][0], .w = odd[i][1], .cin = odd[i][5], .cout = 13,
                        .k = odd[i][2], .stride = odd[i][3], .pad = odd[i][4]};
        pick_requant(&cc, 11 * i + 3);
        check_conv(&cc);
    }
}

static void test_conv_depthwise(void) {
    static const int chans[] = {1, 13, 40};
    int idx = 0;
    for (int k = 3; k <= 5; k += 2)
        for (int stride = 1; stride <= 2; stride++)
            for (int c = 0; c < 3; c++)
                for (int size = 0; size < 2; size++, idx++) {
                    int hw = size ? 28 : 7;
                    conv_case cc = {.n = idx % 2 ? 3 : 1, .h = hw, .w = hw - 2 * size,
                                    .cin = chans[c], .cout = chans[c], .k = k, .stride = stride,
                                    .pad = k / 2, .dw = 1};
                    pick_requant(&cc, idx * 5 + 1);
                    check_conv(&cc);
                }
}

/* Every tie kind against every zero point / clamp on one padded 3x3 and one 1x1 shape. */
static void test_conv_ties(void) {
    for (int idx = 0; idx < 48; idx++) {
        conv_case cc = {.n = 1, .h = 7, .w = 7, .cin = 13, .cout = 17, .k = idx % 2 ? 3 : 1,
                        .stride = 1, .pad = idx % 2};
        pick_requant(&cc, idx);
        cc.mk = (mult_kind)(idx % 3); /* 0.5, 0.25, just below 0.5 */
        cc.small_w = 1;
        check_conv(&cc);
        conv_case dw = {.n = 1, .h = 7, .w = 7, .cin = 40, .cout = 40, .k = 3,
                        .stride = 1 + idx % 2, .pad = 1, .dw = 1};
        pick_requant(&dw, idx);
        dw.mk = (mult_kind)(idx % 3);
        dw.small_w = 1;
        check_conv(&dw);
    }
}

/* Accumulators at the 2^24 bound create accepts: all-255 or all-0 inputs against weights of
 * magnitude 126 (sum|w| = 65520, 255 * 65520 + |bias| = 2^24). */
static void check_bound(int k, int pad, int cin, int zx, int x_value) {
    const int C = 5, K = k * k * cin, hw = 3;
    int8_t *w = xmalloc((size_t)C * K);
    uint8_t *x = xmalloc((size_t)hw * hw * cin), ref[64], got[64];
    int32_t bias[5];
    float mult[5];
    for (int c = 0; c < C; c++) {
        for (int t = 0; t < K; t++) w[(size_t)c * K + t] = t < 520 ? (c % 2 ? 126 : -126) : 0;
        bias[c] = (c % 3 == 0 ? 1 : -1) * (16777216 - 255 * 65520);
        mult[c] = c == 4 ? 0.5f : 127.0f / 16777216.0f;
    }
    memset(x, x_value, (size_t)hw * hw * cin);
    conv_case cc = {1, hw, hw, cin, C, k, 1, pad, 0, zx, 100, 0, 255, MULT_RANDOM, 0, 0};
    qat_i8_set_path(QAT_I8_REF);
    native_conv(ref, &cc, x, w, bias, mult);
    qat_i8_set_path(QAT_I8_AUTO);
    qat_i8_dnnl_conv_desc d = {hw, hw, cin, C, k, 1, pad, 1, w, bias, mult, zx, 100, 0, 255};
    qat_i8_dnnl_conv *dc = NULL;
    CU_ASSERT_EQUAL_FATAL(qat_i8_dnnl_conv_create(&dc, &d), QAT_OK);
    size_t ny = (size_t)((hw + 2 * pad - k) + 1) * ((hw + 2 * pad - k) + 1) * C;
    CU_ASSERT_EQUAL(qat_i8_dnnl_conv_run(dc, got, x, 1), QAT_OK);
    char what[96];
    snprintf(what, sizeof what, "2^24 bound k%d p%d cin %d zx %d x %d", k, pad, cin, zx, x_value);
    same_bytes(what, got, ref, ny);
    qat_i8_dnnl_conv_free(dc);
    /* one more unit of |bias| and the layer is refused */
    bias[0] += 1;
    CU_ASSERT_EQUAL(qat_i8_dnnl_conv_create(&dc, &d), QAT_ERR_ARG);
    CU_ASSERT_PTR_NULL(dc);
    CU_ASSERT_PTR_NOT_NULL(strstr(qat_last_error(), "2^24"));
    free(w);
    free(x);
}

static void test_conv_bound(void) {
    for (int v = 0; v < 2; v++) {
        check_bound(1, 0, 520, 0, v ? 255 : 0);
        check_bound(1, 0, 520, 255, v ? 255 : 0);
        check_bound(3, 1, 58, 0, v ? 255 : 0);
        check_bound(3, 1, 58, 255, v ? 255 : 0);
    }
}

/* More batch sizes than cached primitives: evictions and rebuilds give the same bytes. */
static void test_conv_cache(void) {
    conv_case cc = {.n = 6, .h = 7, .w = 7, .cin = 13, .cout = 17, .k = 3, .stride = 1, .pad = 1};
    pick_requant(&cc, 5);
    const int K = 9 * 13, C = 17;
    const size_t nx1 = 7 * 7 * 13, ny1 = 7 * 7 * C;
    uint8_t *x = xmalloc(nx1 * 6), *ref = xmalloc(ny1 * 6), *got = xmalloc(ny1 * 6);
    int8_t *w = xmalloc((size_t)C * K);
    int32_t bias[17];
    float mult[17];
    fill_x(x, nx1 * 6);
    fill_w(w, (size_t)C * K, 127);
    for (int c = 0; c < C; c++) bias[c] = rnd_int(-20000, 20000);
    fill_mult(mult, C, MULT_RANDOM, sqrt((double)K) * 128.0 * 74.0);
    qat_i8_set_path(QAT_I8_REF);
    native_conv(ref, &cc, x, w, bias, mult);
    qat_i8_set_path(QAT_I8_AUTO);
    qat_i8_dnnl_conv_desc d = {7, 7, 13, C, 3, 1, 1, 1, w, bias, mult, cc.zx, cc.zy, cc.lo, cc.hi};
    qat_i8_dnnl_conv *dc = NULL;
    CU_ASSERT_EQUAL_FATAL(qat_i8_dnnl_conv_create(&dc, &d), QAT_OK);
    static const int batches[] = {1, 2, 3, 4, 5, 6, 1, 6, 2, 0, 5};
    for (size_t i = 0; i < sizeof batches / sizeof *batches; i++) {
        int n = batches[i];
        memset(got, 0xA5, ny1 * 6);
        CU_ASSERT_EQUAL(qat_i8_dnnl_conv_run(dc, got, x, n), QAT_OK);
        char what[64];
        snprintf(what, sizeof what, "cache, batch %d", n);
        same_bytes(what, got, ref, ny1 * n);
        if (n < 6) CU_ASSERT_EQUAL(got[ny1 * n], 0xA5); /* nothing written past the batch */
    }
    qat_i8_dnnl_conv_free(dc);
    free(x); free(ref); free(got); free(w);
}

/* ---- linear with float output ------------------------------------------------------------------- */

static void check_linear(int n, int in, int out, int zx, int with_fbias) {
    uint8_t *x = xmalloc((size_t)n * in);
    int8_t *w = xmalloc((size_t)out * in);
    float *deq = xmalloc((size_t)out * 4), *fbias = xmalloc((size_t)out * 4);
    float *ref = xmalloc((size_t)n * out * 4), *def = xmalloc((size_t)n * out * 4);
    float *got = xmalloc((size_t)n * out * 4);
    fill_x(x, (size_t)n * in);
    fill_w(w, (size_t)out * in, 127);
    for (int o = 0; o < out; o++) {
        deq[o] = (0.5f + rnd_unit()) * 1e-4f;
        if (o % 5 == 0) deq[o] = 1.0f / 3.0f; /* products with a long fraction */
        fbias[o] = (rnd_unit() - 0.5f) * 3.0f;
    }
    const float *fb = with_fbias ? fbias : NULL;
    size_t psz = qat_i8_gemm_packed_size(out, in);
    void *pbuf = xmalloc(psz);
    qat_i8_gemm_weights pw;
    CU_ASSERT_EQUAL_FATAL(qat_i8_gemm_pack(&pw, pbuf, psz, w, NULL, out, in, zx), QAT_OK);
    qat_i8_set_path(QAT_I8_REF);
    CU_ASSERT_EQUAL(qat_i8_gemm_f32(ref, out, x, in, n, &pw, deq, fb), QAT_OK);
    qat_i8_set_path(QAT_I8_AUTO);
    CU_ASSERT_EQUAL(qat_i8_gemm_f32(def, out, x, in, n, &pw, deq, fb), QAT_OK);
    CU_ASSERT_EQUAL(memcmp(def, ref, (size_t)n * out * 4), 0);

    qat_i8_dnnl_linear_desc d = {in, out, w, deq, fb, zx};
    qat_i8_dnnl_linear *l = NULL;
    qat_status st = qat_i8_dnnl_linear_create(&l, &d);
    if (st) printf("\n  linear %d x %d: %s\n", in, out, qat_last_error());
    CU_ASSERT_EQUAL_FATAL(st, QAT_OK);
    for (int pass = 0; pass < 2; pass++) { /* batch n, then batch 1 per row */
        memset(got, 0xA5, (size_t)n * out * 4);
        if (pass == 0) CU_ASSERT_EQUAL(qat_i8_dnnl_linear_run(l, got, x, n), QAT_OK);
        for (int m = 0; pass == 1 && m < n; m++)
            CU_ASSERT_EQUAL(qat_i8_dnnl_linear_run(l, got + (size_t)m * out, x + (size_t)m * in, 1), QAT_OK);
        for (size_t i = 0; i < (size_t)n * out; i++)
            if (memcmp(&got[i], &ref[i], 4)) {
                printf("\n  linear %dx%d->%d zx=%d fbias=%d batch %d: first mismatch at %zu: got %.9g "
                       "expected %.9g (impl %s)\n", n, in, out, zx, with_fbias, pass ? 1 : n, i,
                       got[i], ref[i], qat_i8_dnnl_linear_impl(l));
                CU_FAIL("oneDNN logits differ from qat_i8_gemm_f32");
                break;
            }
    }
    qat_i8_dnnl_linear_free(l);
    free(x); free(w); free(deq); free(fbias); free(ref); free(def); free(got); free(pbuf);
}

static void test_linear(void) {
    static const int shapes[][2] = {{128, 10}, {13, 7}, {1, 1}, {200, 33}, {64, 17}};
    static const int zps[] = {0, 128, 255, 77};
    int idx = 0;
    for (int s = 0; s < 5; s++)
        for (int z = 0; z < 4; z++, idx++)
            check_linear(idx % 3 == 0 ? 64 : idx % 3 == 1 ? 1 : 3, shapes[s][0], shapes[s][1],
                         zps[z], idx % 2 == 0);
}

/* ---- refusals --------------------------------------------------------------------------------- */

static void expect_refused(const qat_i8_dnnl_conv_desc *d, const char *why) {
    qat_i8_dnnl_conv *c = (qat_i8_dnnl_conv *)&c; /* any non-NULL value: create must clear it */
    qat_status st = qat_i8_dnnl_conv_create(&c, d);
    if (st == QAT_OK) printf("\n  accepted: %s\n", why);
    CU_ASSERT_NOT_EQUAL(st, QAT_OK);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_PTR_NOT_NULL(strstr(qat_last_error(), "int8_onednn.c"));
    if (st == QAT_OK) qat_i8_dnnl_conv_free(c);
}

static void test_errors(void) {
    int8_t w[9 * 64 * 8];
    int32_t bias[64] = {0};
    float mult[64];
    memset(w, 1, sizeof w);
    for (int i = 0; i < 64; i++) mult[i] = 0.01f;
    const qat_i8_dnnl_conv_desc good = {7, 7, 4, 4, 3, 1, 1, 1, w, bias, mult, 3, 5, 0, 255};
    qat_i8_dnnl_conv *c = NULL;
    CU_ASSERT_EQUAL(qat_i8_dnnl_conv_create(&c, &good), QAT_OK);
    CU_ASSERT_PTR_NOT_NULL(c);
    uint8_t x[7 * 7 * 4] = {0}, y[7 * 7 * 4];
    CU_ASSERT_EQUAL(qat_i8_dnnl_conv_run(c, y, NULL, 1), QAT_ERR_ARG);
    CU_ASSERT_EQUAL(qat_i8_dnnl_conv_run(c, y, x, -1), QAT_ERR_ARG);
    CU_ASSERT_EQUAL(qat_i8_dnnl_conv_run(c, NULL, NULL, 0), QAT_OK);
    qat_i8_dnnl_conv_free(c);
    qat_i8_dnnl_conv_free(NULL);
    CU_ASSERT_EQUAL(qat_i8_dnnl_conv_create(NULL, &good), QAT_ERR_ARG);
    CU_ASSERT_EQUAL(qat_i8_dnnl_conv_create(&c, NULL), QAT_ERR_ARG);

    qat_i8_dnnl_conv_desc d;
    d = good; d.weight = NULL; expect_refused(&d, "NULL weight");
    d = good; d.mult = NULL; expect_refused(&d, "NULL mult");
    d = good; d.groups = 2; expect_refused(&d, "groups 2 of 4");
    d = good; d.groups = 4; d.cout = 8; expect_refused(&d, "depthwise with cout != cin");
    d = good; d.pad = 3; expect_refused(&d, "k <= pad");
    d = good; d.k = 1; expect_refused(&d, "1x1 with pad 1");
    d = good; d.k = 0; d.pad = 0; expect_refused(&d, "k = 0");
    d = good; d.stride = 0; expect_refused(&d, "stride 0");
    d = good; d.h = 0; expect_refused(&d, "h = 0");
    d = good; d.cin = 0; expect_refused(&d, "cin = 0");
    d = good; d.k = 3; d.pad = 0; d.h = 2; expect_refused(&d, "kernel larger than input");
    d = good; d.zx = 256; expect_refused(&d, "zx 256");
    d = good; d.zy = -1; expect_refused(&d, "zy -1");
    d = good; d.lo = 200; d.hi = 100; expect_refused(&d, "lo > hi");
    d = good; d.hi = 256; expect_refused(&d, "hi 256");
    float bad_mult[4] = {0.01f, NAN, 0.01f, 0.01f};
    d = good; d.mult = bad_mult; expect_refused(&d, "NaN mult");
    bad_mult[1] = INFINITY; expect_refused(&d, "inf mult");
    /* 3x3x64 taps of 127: 255 * 73152 > 2^24, oneDNN's float bias add could round */
    memset(w, 127, sizeof w);
    d = good; d.cin = 64; expect_refused(&d, "accumulator beyond 2^24");

    qat_i8_dnnl_linear *l = NULL;
    float deq[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    qat_i8_dnnl_linear_desc ld = {8, 8, w, deq, NULL, 0};
    CU_ASSERT_EQUAL(qat_i8_dnnl_linear_create(&l, &ld), QAT_OK);
    float yl[8];
    CU_ASSERT_EQUAL(qat_i8_dnnl_linear_run(l, yl, NULL, 1), QAT_ERR_ARG);
    qat_i8_dnnl_linear_free(l);
    l = NULL;
    qat_i8_dnnl_linear_desc lb = ld;
    lb.weight = NULL;
    CU_ASSERT_EQUAL(qat_i8_dnnl_linear_create(&l, &lb), QAT_ERR_ARG);
    lb = ld; lb.deq_scale = NULL;
    CU_ASSERT_EQUAL(qat_i8_dnnl_linear_create(&l, &lb), QAT_ERR_ARG);
    lb = ld; lb.in = 0;
    CU_ASSERT_EQUAL(qat_i8_dnnl_linear_create(&l, &lb), QAT_ERR_ARG);
    lb = ld; lb.zx = 300;
    CU_ASSERT_EQUAL(qat_i8_dnnl_linear_create(&l, &lb), QAT_ERR_ARG);
    lb = ld; deq[3] = NAN;
    CU_ASSERT_EQUAL(qat_i8_dnnl_linear_create(&l, &lb), QAT_ERR_ARG);
    deq[3] = 1;
    lb = ld; lb.in = 9 * 64 * 8 / 8; /* 576 taps of 127 */
    CU_ASSERT_EQUAL(qat_i8_dnnl_linear_create(&l, &lb), QAT_ERR_ARG);
    CU_ASSERT_PTR_NULL(l);
}

/* Skipped suites would hide a machine where the backend is silently unusable: say so. */
static int available(void) {
    static int said;
    if (qat_i8_dnnl_available()) return 1;
    if (!said++) printf("\n  oneDNN has no VNNI here: the backend is refused, identity tests skipped\n");
    return 0;
}
static void test_unavailable_refuses(void) {
    if (qat_i8_dnnl_available()) return;
    int8_t w[16] = {0};
    float mult[4] = {1, 1, 1, 1};
    qat_i8_dnnl_conv_desc d = {2, 2, 4, 4, 1, 1, 0, 1, w, NULL, mult, 0, 0, 0, 255};
    qat_i8_dnnl_conv *c = NULL;
    CU_ASSERT_EQUAL(qat_i8_dnnl_conv_create(&c, &d), QAT_ERR_ARG);
}
#define IF_AVAILABLE(fn) static void fn##_if(void) { if (available()) fn(); }
IF_AVAILABLE(test_conv_dense)
IF_AVAILABLE(test_conv_depthwise)
IF_AVAILABLE(test_conv_ties)
IF_AVAILABLE(test_conv_bound)
IF_AVAILABLE(test_conv_cache)
IF_AVAILABLE(test_linear)
IF_AVAILABLE(test_errors)

void register_onednn_tests(void) {
    test_add_suite("onednn", "without VNNI create refuses", test_unavailable_refuses,
                   "argument checks and refusals", test_errors_if,
                   "dense and 1x1 conv bit-identical to qat_i8_conv", test_conv_dense_if,
                   "depthwise bit-identical to qat_i8_dwconv", test_conv_depthwise_if,
                   "rounding ties with every zero point and clamp", test_conv_ties_if,
                   "accumulators at the 2^24 bound; beyond it refused", test_conv_bound_if,
                   "primitive cache over batch sizes", test_conv_cache_if,
                   "linear logits bitwise equal to qat_i8_gemm_f32", test_linear_if, NULL);
}
