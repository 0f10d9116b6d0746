/* INT8 kernels: every variant this CPU can run against naive references written here from the
 * definitions in kernels/int8.h and kernels/qmath.h, demanding bit-exact output and printing
 * the first mismatching index (CMSIS-NN habit). Shapes are odd on purpose (tails everywhere). */
#include "int8.h"
#include "test_util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers -------------------------------------------------------------------------------- */

static uint64_t rng_state = 0x1234567;
static uint32_t rnd(void) { return test_splitmix32(&rng_state); }
static int rnd_int(int lo, int hi) { return lo + (int)(rnd() % (uint32_t)(hi - lo + 1)); }
static float rnd_unit(void) { return (float)(rnd() >> 8) / 16777216.0f; }

static void fill_u8(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rnd();
}
static void fill_s8(int8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (int8_t)rnd();
}

/* Exact sizes, so that AddressSanitizer sees any read or write past a buffer (kernel tails). */
static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    QAT_ASSERT(p);
    return p;
}

/* The variants to exercise: every one this CPU can run. */
static int paths_available(qat_i8_path *out) {
    int n = 0;
    for (int p = QAT_I8_REF; p < QAT_I8_PATH_COUNT; p++)
        if (qat_i8_path_available((qat_i8_path)p)) out[n++] = (qat_i8_path)p;
    return n;
}

static int use_path(qat_i8_path p) {
    qat_i8_set_path(p);
    CU_ASSERT_EQUAL(qat_i8_active_path(), p);
    return qat_i8_active_path() == p;
}

/* Prints the first mismatch and fails; returns 1 if equal. */
static int same_u8(const char *what, qat_i8_path path, const uint8_t *got, const uint8_t *exp,
                   size_t n) {
    for (size_t i = 0; i < n; i++)
        if (got[i] != exp[i]) {
            printf("\n  %s [%s]: first mismatch at index %zu: got %d expected %d\n", what,
                   qat_i8_path_name(path), i, got[i], exp[i]);
            CU_FAIL("int8 output differs");
            return 0;
        }
    return 1;
}
static int same_s32(const char *what, qat_i8_path path, const int32_t *got, const int32_t *exp,
                    size_t n) {
    for (size_t i = 0; i < n; i++)
        if (got[i] != exp[i]) {
            printf("\n  %s [%s]: first mismatch at index %zu: got %d expected %d\n", what,
                   qat_i8_path_name(path), i, got[i], exp[i]);
            CU_FAIL("int32 output differs");
            return 0;
        }
    return 1;
}
static int same_f32(const char *what, qat_i8_path path, const float *got, const float *exp,
                    size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &exp[i], sizeof(float))) {
            printf("\n  %s [%s]: first mismatch at index %zu: got %.9g expected %.9g\n", what,
                   qat_i8_path_name(path), i, got[i], exp[i]);
            CU_FAIL("float output differs");
            return 0;
        }
    return 1;
}

/* Independent requantization: the qmath definition. */
static uint8_t ref_requant(int64_t acc, float mult, int zy, int lo, int hi) {
    CU_ASSERT(acc >= INT32_MIN && acc <= INT32_MAX); /* the accumulator never overflows */
    return (uint8_t)qat_requantize((int32_t)acc, mult, zy, lo, hi);
}

static float ref_dequant(int64_t acc, float scale, const float *fbias, int n) {
    volatile float p = (float)(int32_t)acc * scale; /* rounded product, then the add */
    return fbias ? p + fbias[n] : p;
}

/* Multipliers that spread accumulators of magnitude ~ spread over the u8 range. */
static void fill_mult(float *mult, int n, double spread) {
    for (int i = 0; i < n; i++) mult[i] = (float)((0.5 + rnd_unit()) * 60.0 / spread);
}

/* ---- GEMM -------------------------------------------------------------------------------------- */

/* Naive reference from the unpacked weights: acc = bias + sum (x - zx) * w in int64. */
static void ref_gemm_acc(int64_t *acc, const uint8_t *x, int64_t ldx, const int8_t *w,
                         const int32_t *bias, int M, int N, int K, int zx) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            int64_t s = bias ? bias[n] : 0;
            for (int k = 0; k < K; k++) s += (int64_t)((int)x[(size_t)m * ldx + k] - zx) * w[(size_t)n * K + k];
            acc[(size_t)m * N + n] = s;
        }
}

typedef struct {
    int zx, zy, lo, hi;
    int with_bias, with_fbias;
    int64_t ldx_pad, ldy_pad;
} gemm_case;

/* Runs one GEMM shape on every variant (u8, s32 and f32 outputs) against the naive reference.
 * Output rows are strided (ldy > N) and the gap must stay untouched. */
static void check_gemm_shape(int M, int N, int K, const gemm_case *gc, const uint8_t *x_in,
                             const int8_t *w_in, const float *mult_in) {
    int64_t ldx = K + gc->ldx_pad, ldy = N + gc->ldy_pad;
    uint8_t *x = xmalloc((size_t)M * ldx);
    int8_t *w = xmalloc((size_t)N * K);
    int32_t *bias = xmalloc((size_t)N * 4);
    float *mult = xmalloc((size_t)N * 4), *fbias = xmalloc((size_t)N * 4);
    if (x_in) memcpy(x, x_in, (size_t)M * ldx); else fill_u8(x, (size_t)M * ldx);
    if (w_in) memcpy(w, w_in, (size_t)N * K); else fill_s8(w, (size_t)N * K);
    for (int n = 0; n < N; n++) {
        bias[n] = gc->with_bias ? rnd_int(-20000, 20000) : 0;
        fbias[n] = (rnd_unit() - 0.5f) * 3.0f;
    }
    if (mult_in) memcpy(mult, mult_in, (size_t)N * 4); else fill_mult(mult, N, sqrt((double)K) * 128.0 * 74.0);

    size_t psz = qat_i8_gemm_packed_size(N, K);
    CU_ASSERT_FATAL(psz > 0);
    void *pbuf = xmalloc(psz);
    qat_i8_gemm_weights pw;
    CU_ASSERT_EQUAL_FATAL(qat_i8_gemm_pack(&pw, pbuf, psz, w, gc->with_bias ? bias : NULL, N, K, gc->zx), QAT_OK);

    size_t ny = (size_t)M * ldy;
    int64_t *acc = xmalloc((size_t)M * N * 8);
    uint8_t *exp8 = xmalloc(ny), *got8 = xmalloc(ny);
    int32_t *exp32 = xmalloc(ny * 4), *got32 = xmalloc(ny * 4);
    float *expf = xmalloc(ny * 4), *gotf = xmalloc(ny * 4);
    ref_gemm_acc(acc, x, ldx, w, gc->with_bias ? bias : NULL, M, N, K, gc->zx);
    memset(exp8, 0xA5, ny);
    memset(exp32, 0xA5, ny * 4);
    memset(expf, 0xA5, ny * 4);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            int64_t a = acc[(size_t)m * N + n];
            exp8[(size_t)m * ldy + n] = ref_requant(a, mult[n], gc->zy, gc->lo, gc->hi);
            exp32[(size_t)m * ldy + n] = (int32_t)a;
            expf[(size_t)m * ldy + n] = ref_dequant(a, mult[n], gc->with_fbias ? fbias : NULL, n);
        }
    char what[128];
    snprintf(what, sizeof what, "gemm M=%d N=%d K=%d zx=%d zy=%d [%d,%d]", M, N, K, gc->zx, gc->zy, gc->lo, gc->hi);
    qat_i8_requant rq = {mult, gc->zy, gc->lo, gc->hi};
    qat_i8_path paths[QAT_I8_PATH_COUNT];
    int np = paths_available(paths);
    for (int i = 0; i < np; i++) {
        if (!use_path(paths[i])) continue;
        memset(got8, 0xA5, ny);
        memset(got32, 0xA5, ny * 4);
        memset(gotf, 0xA5, ny * 4);
        CU_ASSERT_EQUAL(qat_i8_gemm_u8(got8, ldy, x, ldx, M, &pw, &rq), QAT_OK);
        CU_ASSERT_EQUAL(qat_i8_gemm_s32(got32, ldy, x, ldx, M, &pw), QAT_OK);
        CU_ASSERT_EQUAL(qat_i8_gemm_f32(gotf, ldy, x, ldx, M, &pw, mult, gc->with_fbias ? fbias : NULL), QAT_OK);
        same_u8(what, paths[i], got8, exp8, ny);
        same_s32(what, paths[i], got32, exp32, ny);
        same_f32(what, paths[i], gotf, expf, ny);
    }
    qat_i8_set_path(QAT_I8_AUTO);
    free(x); free(w); free(bias); free(mult); free(fbias); free(pbuf); free(acc);
    free(exp8); free(got8); free(exp32); free(got32); free(expf); free(gotf);
}

static void test_gemm_shapes(void) {
    static const int Ms[] = {1, 3, 17, 100}, Ks[] = {1, 3, 9, 13, 64, 100, 129},
                     Ns[] = {1, 7, 16, 17, 33, 130};
    int idx = 0;
    for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
        for (size_t b = 0; b < sizeof Ks / sizeof *Ks; b++)
            for (size_t c = 0; c < sizeof Ns / sizeof *Ns; c++, idx++) {
                gemm_case gc = {0};
                gc.zx = idx % 3 == 0 ? 0 : idx % 3 == 1 ? 128 : rnd_int(1, 255);
                gc.zy = idx % 2 ? 128 : rnd_int(0, 255);
                switch (idx % 4) { /* full range, ReLU, ReLU6-like, narrow */
                case 0: gc.lo = 0; gc.hi = 255; break;
                case 1: gc.lo = gc.zy; gc.hi = 255; break;
                case 2: gc.lo = gc.zy; gc.hi = gc.zy + 60 > 255 ? 255 : gc.zy + 60; break;
                default: gc.lo = 10; gc.hi = 200; break;
                }
                gc.with_bias = idx % 5 != 0;
                gc.with_fbias = idx % 2;
                gc.ldx_pad = idx % 3 == 2 ? 5 : 0;
                gc.ldy_pad = idx % 4 == 3 ? 3 : 0;
                check_gemm_shape(Ms[a], Ns[c], Ks[b], &gc, NULL, NULL, NULL);
            }
}

/* All activations 255 times all -128 (or 127) weights at the largest K the packer accepts:
 * |acc| = 255*128*65536 = 2139095040, just under 2^31. A pair-summing int16 instruction
 * (vpmaddubsw) would saturate at -32768 per pair here; the int64 reference proves the result. */
static void test_gemm_extreme_no_saturation(void) {
    const int M = 3, N = 17, K = 65536;
    uint8_t *x = xmalloc((size_t)M * K);
    int8_t *w = xmalloc((size_t)N * K);
    memset(x, 255, (size_t)M * K);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++)
            w[(size_t)n * K + k] = n % 3 == 0 ? -128 : n % 3 == 1 ? 127 : (k & 1 ? -128 : 127);
    float mult[17];
    for (int n = 0; n < N; n++) mult[n] = 1.0f / 16777216.0f;
    for (int zx = 0; zx <= 128; zx += 128) {
        gemm_case gc = {.zx = zx, .zy = 128, .lo = 0, .hi = 255};
        check_gemm_shape(M, N, K, &gc, x, w, mult);
    }
    /* the exact value the reference must see in channel 0 with zx = 0 */
    int64_t acc0;
    ref_gemm_acc(&acc0, x, K, w, NULL, 1, 1, K, 0);
    CU_ASSERT_EQUAL(acc0, -2139095040LL);

    /* one more unit of |bias| could overflow: the packer must refuse it */
    size_t psz = qat_i8_gemm_packed_size(1, K);
    void *pbuf = xmalloc(psz);
    qat_i8_gemm_weights pw;
    int32_t big = INT32_MAX - 2139095040 + 1;
    CU_ASSERT_EQUAL(qat_i8_gemm_pack(&pw, pbuf, psz, w, &big, 1, K, 0), QAT_ERR_NUMERIC);
    CU_ASSERT_PTR_NOT_NULL(strstr(qat_last_error(), "int8_ref.c"));
    big--;
    CU_ASSERT_EQUAL(qat_i8_gemm_pack(&pw, pbuf, psz, w, &big, 1, K, 0), QAT_OK);
    free(pbuf);
    free(x);
    free(w);
}

/* acc * mult exactly halfway between integers must round to even (not away from zero). */
static void test_gemm_rounding_ties(void) {
    const int M = 256, N = 3, K = 1, zx = 128, zy = 128;
    uint8_t x[256];
    for (int i = 0; i < M; i++) x[i] = (uint8_t)i;
    int8_t w[3] = {1, -1, 2};
    float mult[3] = {0.5f, 0.5f, 0.25f}; /* acc*mult = +-(x-128)/2: a tie for every odd x */
    size_t psz = qat_i8_gemm_packed_size(N, K);
    void *pbuf = xmalloc(psz);
    qat_i8_gemm_weights pw;
    CU_ASSERT_EQUAL_FATAL(qat_i8_gemm_pack(&pw, pbuf, psz, w, NULL, N, K, zx), QAT_OK);
    uint8_t exp[256 * 3], got[256 * 3];
    for (int i = 0; i < M; i++)
        for (int n = 0; n < N; n++) {
            int v = (i - zx) * (n == 1 ? -1 : 1); /* 2*acc*mult */
            int h = v >= 0 ? v / 2 : -((-v + 1) / 2); /* floor(v / 2) */
            int r = (v & 1) ? (h % 2 == 0 ? h : h + 1) : h;
            int q = r + zy;
            exp[i * N + n] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
        }
    CU_ASSERT_EQUAL(exp[129 * N], 128); /* 0.5 -> 0 */
    CU_ASSERT_EQUAL(exp[131 * N], 130); /* 1.5 -> 2 */
    CU_ASSERT_EQUAL(exp[133 * N], 130); /* 2.5 -> 2 */
    CU_ASSERT_EQUAL(exp[127 * N], 128); /* -0.5 -> 0 */
    CU_ASSERT_EQUAL(exp[125 * N], 126); /* -1.5 -> -2 */
    qat_i8_requant rq = {mult, zy, 0, 255};
    qat_i8_path paths[QAT_I8_PATH_COUNT];
    int np = paths_available(paths);
    for (int i = 0; i < np; i++) {
        if (!use_path(paths[i])) continue;
        CU_ASSERT_EQUAL(qat_i8_gemm_u8(got, N, x, K, M, &pw, &rq), QAT_OK);
        same_u8("gemm rounding ties", paths[i], got, exp, sizeof exp);
    }
    qat_i8_set_path(QAT_I8_AUTO);
    free(pbuf);
}

/* Multipliers whose products leave the int32 range or are NaN must clamp exactly as
 * qat_requantize does (huge -> hi, -huge -> lo, NaN -> lo); N = 70 also takes the kernels'
 * 64-channel paths (VNNI512 packs before it raises to lo). */
static void test_gemm_requant_extremes(void) {
    const float ext[5] = {INFINITY, 1e30f, -1e30f, NAN, 3e-9f};
    float mult[70];
    for (int i = 0; i < 70; i++) mult[i] = ext[i % 5];
    gemm_case gc = {.zx = 128, .zy = 100, .lo = 3, .hi = 250, .with_bias = 1};
    check_gemm_shape(9, 5, 20, &gc, NULL, NULL, mult);
    check_gemm_shape(9, 70, 20, &gc, NULL, NULL, mult);
}

/* ---- dense conv ----------------------------------------------------------------------------- */

/* Naive conv on an explicitly zx-padded copy of the input. */
static void ref_conv(uint8_t *y, const uint8_t *x, const qat_i8_dims *in, const qat_i8_conv_params *p,
                     const int8_t *w, const int32_t *bias, int cout, int zx, const float *mult,
                     int zy, int lo, int hi, int oh, int ow) {
    int hp = in->h + 2 * p->pad, wp = in->w + 2 * p->pad, C = in->c;
    uint8_t *xp = xmalloc((size_t)hp * wp * C);
    for (int n = 0; n < in->n; n++) {
        memset(xp, zx, (size_t)hp * wp * C);
        for (int h = 0; h < in->h; h++)
            memcpy(xp + ((size_t)(h + p->pad) * wp + p->pad) * C,
                   x + (((size_t)n * in->h + h) * in->w) * C, (size_t)in->w * C);
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++)
                for (int co = 0; co < cout; co++) {
                    int64_t s = bias[co];
                    for (int a = 0; a < p->kh; a++)
                        for (int b = 0; b < p->kw; b++)
                            for (int c = 0; c < C; c++)
                                s += (int64_t)((int)xp[((size_t)(i * p->stride + a) * wp + j * p->stride + b) * C + c] - zx) *
                                     w[(((size_t)co * p->kh + a) * p->kw + b) * C + c];
                    y[(((size_t)n * oh + i) * ow + j) * cout + co] = ref_requant(s, mult[co], zy, lo, hi);
                }
    }
    free(xp);
}

static void check_conv(int n, int h, int wd, int cin, int cout, int k, int stride, int pad, int zx) {
    qat_i8_dims in = {n, h, wd, cin}, out;
    qat_i8_conv_params p = {k, k, stride, pad};
    CU_ASSERT_EQUAL_FATAL(qat_i8_conv_out_dims(&in, &p, cout, &out), QAT_OK);
    int K = k * k * cin;
    uint8_t *x = xmalloc((size_t)n * h * wd * cin);
    int8_t *w = xmalloc((size_t)cout * K);
    int32_t *bias = xmalloc((size_t)cout * 4);
    float *mult = xmalloc((size_t)cout * 4);
    fill_u8(x, (size_t)n * h * wd * cin);
    fill_s8(w, (size_t)cout * K);
    for (int c = 0; c < cout; c++) bias[c] = rnd_int(-3000, 3000);
    fill_mult(mult, cout, sqrt((double)K) * 128.0 * 74.0);
    int zy = rnd_int(0, 255), lo = zy, hi = 255; /* fused ReLU */
    size_t ny = (size_t)out.n * out.h * out.w * cout;
    uint8_t *exp = xmalloc(ny), *got = xmalloc(ny);
    ref_conv(exp, x, &in, &p, w, bias, cout, zx, mult, zy, lo, hi, out.h, out.w);

    size_t psz = qat_i8_gemm_packed_size(cout, K);
    void *pbuf = xmalloc(psz);
    qat_i8_gemm_weights pw;
    CU_ASSERT_EQUAL_FATAL(qat_i8_gemm_pack(&pw, pbuf, psz, w, bias, cout, K, zx), QAT_OK);
    size_t bsz = qat_i8_conv_get_buffer_size(&in, &p);
    void *scratch = bsz ? xmalloc(bsz) : NULL;
    qat_i8_requant rq = {mult, zy, lo, hi};
    char what[128];
    snprintf(what, sizeof what, "conv %dx%dx%dx%d -> %d k%d s%d p%d zx=%d", n, h, wd, cin, cout, k, stride, pad, zx);
    qat_i8_path paths[QAT_I8_PATH_COUNT];
    int np = paths_available(paths);
    for (int i = 0; i < np; i++) {
        if (!use_path(paths[i])) continue;
        memset(got, 0xA5, ny);
        CU_ASSERT_EQUAL(qat_i8_conv(got, x, &in, &p, &pw, &rq, scratch, bsz), QAT_OK);
        same_u8(what, paths[i], got, exp, ny);
        /* the minimum scratch (one image's unfolding) takes the one-image-at-a-time route */
        size_t one = (size_t)out.h * out.w * (size_t)((K + 3) / 4 * 4);
        if (bsz > one) {
            memset(got, 0xA5, ny);
            CU_ASSERT_EQUAL(qat_i8_conv(got, x, &in, &p, &pw, &rq, scratch, one), QAT_OK);
            same_u8(what, paths[i], got, exp, ny);
            CU_ASSERT_EQUAL(qat_i8_conv(got, x, &in, &p, &pw, &rq, scratch, one - 1), QAT_ERR_ARG);
        }
    }
    qat_i8_set_path(QAT_I8_AUTO);
    free(x); free(w); free(bias); free(mult); free(exp); free(got); free(pbuf); free(scratch);
}

static void test_conv_dense(void) {
    static const int sizes[] = {7, 5, 1}, cins[] = {1, 3, 16}, couts[] = {8, 17};
    int idx = 0;
    for (int s = 0; s < 3; s++)
        for (int ci = 0; ci < 3; ci++)
            for (int co = 0; co < 2; co++)
                for (int stride = 1; stride <= 2; stride++, idx++)
                    check_conv(2, sizes[s], sizes[s], cins[ci], couts[co], 3, stride, 1,
                               idx % 2 ? 128 : rnd_int(0, 255));
    check_conv(2, 9, 7, 5, 19, 1, 1, 0, 77);  /* pointwise: no unfolding */
    check_conv(1, 9, 7, 5, 19, 1, 2, 0, 200); /* 1x1 stride 2: unfolded */
    check_conv(1, 6, 5, 2, 7, 5, 1, 2, 255);  /* 5x5 pad 2 */
    check_conv(1, 28, 28, 1, 16, 3, 2, 1, 0); /* the stem */
}

/* ---- depthwise ------------------------------------------------------------------------------ */

/* The VNNI512 path's depthwise kernels called directly, on rows [0, rows/3) then the rest (a
 * split as between threads): qat_i8_dwconv on that path runs the VBMI tile kernel where it fits
 * and the CPU has VBMI, the quad-row kernel elsewhere, so each is tested here on every shape. */
static void check_dw_vnni_kernels(const char *what, const uint8_t *x, const qat_i8_dims *in,
                                  const qat_i8_conv_params *p, const qat_i8_dims *out,
                                  const qat_i8_dw_weights *pw, const qat_i8_requant *rq,
                                  const uint8_t *exp, uint8_t *got, size_t ny) {
    if (!qat_i8_path_available(QAT_I8_VNNI512) || !qat_i8_dw_vnni_stride(p->stride)) return;
    uint8_t *zx = xmalloc((size_t)pw->Cp);
    memset(zx, pw->zx, (size_t)pw->Cp);
    size_t sb = (qat_i8_dw_slot_bytes(out->w, p->stride, p->kh, p->kw, in->c) + 63) / 64 * 64;
    void *slot = aligned_alloc(64, sb);
    QAT_ASSERT(slot);
    qat_i8_dw_job j = {.x = x, .y = got, .in = *in, .oh = out->h, .ow = out->w, .p = *p, .w = pw,
                       .mult = rq->mult, .zy = rq->zy, .lo = rq->lo, .hi = rq->hi, .zx_row = zx, .slot = slot};
    const int rows = in->n * out->h;
    char name[200];
    for (int kernel = 0; kernel < 2; kernel++) {
        qat_i8_dw_fn fn = kernel ? qat_i8_dw_rows_vnnivbmi : qat_i8_dw_rows_vnni512_quads;
        if (kernel && !(qat_i8_dw_vbmi_fits(p) && qat_cpu_has_avx512_vbmi())) continue;
        snprintf(name, sizeof name, "%s, %s kernel", what, kernel ? "VBMI tile" : "quad-row");
        memset(got, 0xA5, ny);
        fn(&j, 0, rows / 3);
        fn(&j, rows / 3, rows);
        same_u8(name, QAT_I8_VNNI512, got, exp, ny);
    }
    free(zx);
    free(slot);
}

static void check_dw_pad(int n, int h, int wd, int C, int k, int stride, int pad, int zx) {
    qat_i8_dims in = {n, h, wd, C}, out;
    qat_i8_conv_params p = {k, k, stride, pad};
    CU_ASSERT_EQUAL_FATAL(qat_i8_conv_out_dims(&in, &p, C, &out), QAT_OK);
    int T = k * k;
    uint8_t *x = xmalloc((size_t)n * h * wd * C);
    int8_t *w = xmalloc((size_t)C * T);
    int32_t *bias = xmalloc((size_t)C * 4);
    float *mult = xmalloc((size_t)C * 4);
    fill_u8(x, (size_t)n * h * wd * C);
    fill_s8(w, (size_t)C * T);
    for (int c = 0; c < C; c++) bias[c] = rnd_int(-3000, 3000);
    fill_mult(mult, C, sqrt((double)T) * 128.0 * 74.0);
    int zy = rnd_int(0, 200), lo = zy, hi = zy + 50; /* ReLU6-like */
    size_t ny = (size_t)out.n * out.h * out.w * C;
    uint8_t *exp = xmalloc(ny), *got = xmalloc(ny);
    /* naive: zx-padded input, channel c sees only channel c */
    int hp = h + 2 * pad, wp = wd + 2 * pad;
    uint8_t *xp = xmalloc((size_t)hp * wp * C);
    for (int b = 0; b < n; b++) {
        memset(xp, zx, (size_t)hp * wp * C);
        for (int r = 0; r < h; r++)
            memcpy(xp + ((size_t)(r + pad) * wp + pad) * C, x + (((size_t)b * h + r) * wd) * C, (size_t)wd * C);
        for (int i = 0; i < out.h; i++)
            for (int j = 0; j < out.w; j++)
                for (int c = 0; c < C; c++) {
                    int64_t s = bias[c];
                    for (int a = 0; a < k; a++)
                        for (int bb = 0; bb < k; bb++)
                            s += (int64_t)((int)xp[((size_t)(i * stride + a) * wp + j * stride + bb) * C + c] - zx) *
                                 w[(size_t)c * T + a * k + bb];
                    exp[(((size_t)b * out.h + i) * out.w + j) * C + c] = ref_requant(s, mult[c], zy, lo, hi);
                }
    }
    free(xp);
    size_t psz = qat_i8_dw_packed_size(C, k, k);
    CU_ASSERT_FATAL(psz > 0);
    void *pbuf = xmalloc(psz);
    qat_i8_dw_weights pw;
    CU_ASSERT_EQUAL_FATAL(qat_i8_dw_pack(&pw, pbuf, psz, w, bias, C, k, k, zx), QAT_OK);
    size_t bsz = qat_i8_dwconv_get_buffer_size(&in, &p);
    void *scratch = xmalloc(bsz);
    qat_i8_requant rq = {mult, zy, lo, hi};
    char what[128];
    snprintf(what, sizeof what, "dwconv %dx%dx%dx%d k%d s%d p%d zx=%d", n, h, wd, C, k, stride, pad, zx);
    qat_i8_path paths[QAT_I8_PATH_COUNT];
    int np = paths_available(paths);
    for (int i = 0; i < np; i++) {
        if (!use_path(paths[i])) continue;
        memset(got, 0xA5, ny);
        CU_ASSERT_EQUAL(qat_i8_dwconv(got, x, &in, &p, &pw, &rq, scratch, bsz), QAT_OK);
        same_u8(what, paths[i], got, exp, ny);
    }
    qat_i8_set_path(QAT_I8_AUTO);
    check_dw_vnni_kernels(what, x, &in, &p, &out, &pw, &rq, exp, got, ny);
    free(x); free(w); free(bias); free(mult); free(exp); free(got); free(pbuf); free(scratch);
}

static void check_dw(int n, int h, int wd, int C, int k, int stride, int zx) {
    check_dw_pad(n, h, wd, C, k, stride, k / 2, zx);
}

static void test_dwconv(void) {
    static const int chans[] = {1, 7, 16, 17, 33, 96}, sizes[] = {7, 5, 1};
    int idx = 0;
    for (int k = 3; k <= 5; k += 2)
        for (int stride = 1; stride <= 2; stride++)
            for (size_t c = 0; c < sizeof chans / sizeof *chans; c++)
                for (int s = 0; s < 3; s++, idx++)
                    check_dw(2, sizes[s], sizes[s], chans[c], k, stride, idx % 2 ? 128 : rnd_int(0, 255));
    check_dw(1, 14, 9, 40, 3, 1, 0); /* larger */
}

/* The AVX-512 depthwise paths: C <= 16 packs two pixels per vector and steps 4 pixels (row
 * tails repeat the last pixel), pixels of the inner columns read taps from a per-row table plus
 * a column offset (rows above and below the image: a row of zx) while border columns use tap
 * arrays; widths 1..9 and paddings 0..2 put the inner/border split and the row tail at every
 * position, C 13 / 40 / 101 exercise the masked channel tails, k = 2 an even tap count. */
static void test_dwconv_paths(void) {
    static const int chans[] = {13, 16, 40, 101};
    for (size_t c = 0; c < sizeof chans / sizeof *chans; c++)
        for (int stride = 1; stride <= 2; stride++)
            for (int pad = 0; pad <= 2; pad++) {
                check_dw_pad(1, 6, 9, chans[c], 3, stride, pad, rnd_int(0, 255));
                check_dw_pad(3, 5, 4 + pad, chans[c], 3, stride, pad, 128);
                check_dw_pad(1, 3, 3, chans[c], 3, stride, pad, rnd_int(0, 255));
            }
    for (int wd = 1; wd <= 8; wd++) check_dw_pad(1, 4, wd, 16, 3, 1, 1, rnd_int(0, 255));
    check_dw_pad(3, 8, 7, 16, 2, 1, 0, 17);   /* even tap count: no padding tap */
    check_dw_pad(3, 8, 7, 16, 2, 2, 1, 200);
    check_dw_pad(2, 9, 9, 13, 5, 1, 2, 5);    /* 5x5 with C <= 16: run-time pair count */
    check_dw_pad(2, 9, 9, 16, 5, 2, 2, 250);
    check_dw_pad(3, 28, 28, 16, 3, 1, 1, 9);  /* mbv2 shapes, large enough to use threads */
    check_dw_pad(1, 14, 14, 96, 3, 2, 1, 77);
    /* rows wider than the AVX-512 kernel's on-stack zx row (8 KiB): top and bottom rows fall
     * back to tap arrays */
    check_dw_pad(1, 3, 600, 16, 3, 1, 1, 3);
    check_dw_pad(1, 4, 90, 101, 3, 2, 1, 251);
    /* the VNNI512 kernel: quads per kernel row (k 4: one full quad, 7: two, 9: three, 1: a quad
     * of one tap) and its run-time quad count; a shape that splits over threads; stride 3 */
    check_dw_pad(2, 9, 11, 21, 4, 1, 1, 99);
    check_dw_pad(1, 10, 13, 35, 7, 2, 3, 200);
    check_dw_pad(1, 11, 9, 17, 9, 1, 4, 1);
    check_dw_pad(2, 5, 7, 19, 1, 2, 0, 60);
    check_dw_pad(2, 28, 28, 40, 3, 1, 1, 130); /* 1.1 M MACs */
    check_dw_pad(1, 10, 11, 20, 3, 3, 1, 50);  /* stride 3: the AVX-512 kernel on that path */
}

/* The VBMI tile kernel (3x3 and 5x5, strides 1 and 2): bands of 4 output rows (a last one
 * overlapping the band before, else 2 or 1 rows), tiles of 4 or 2 columns that continue each
 * other's quads, column checks in the tiles at both ends of a row: every output width and height
 * from 1 to 9 at each kernel and stride, then pads 0 to k-1 with channel tails, batches and
 * row splits (the direct calls in check_dw_vnni_kernels). */
static void test_dwconv_tiles(void) {
    static const int chans[] = {5, 16, 33};
    for (int k = 3; k <= 5; k += 2)
        for (int s = 1; s <= 2; s++) {
            for (int h = 1; h <= 9; h++)
                for (int wd = 1; wd <= 9; wd++)
                    check_dw_pad(1, h, wd, 16, k, s, k / 2, rnd_int(0, 255));
            for (int pad = 0; pad < k; pad++)
                for (int wd = 1; wd <= 11; wd++) {
                    int h = 1 + (wd * 7 + k + s + pad) % 9;
                    if (wd + 2 * pad < k || h + 2 * pad < k) continue;
                    check_dw_pad(wd % 3 + 1, h, wd, chans[(wd + pad) % 3], k, s, pad, rnd_int(0, 255));
                }
        }
}

/* The scratch decides the VNNI512 kernel's threads (one slot of quad rows each) and a buffer of
 * only the zx row makes that path run the AVX-512 kernel: all give the same bytes. */
static void test_dwconv_scratch(void) {
    const int n = 2, h = 13, wd = 11, C = 37, k = 3;
    qat_i8_dims in = {n, h, wd, C}, out;
    qat_i8_conv_params p = {k, k, 1, 1};
    CU_ASSERT_EQUAL_FATAL(qat_i8_conv_out_dims(&in, &p, C, &out), QAT_OK);
    uint8_t *x = xmalloc((size_t)n * h * wd * C);
    int8_t *w = xmalloc((size_t)C * k * k);
    int32_t bias[37];
    float mult[37];
    fill_u8(x, (size_t)n * h * wd * C);
    fill_s8(w, (size_t)C * k * k);
    for (int c = 0; c < C; c++) bias[c] = rnd_int(-3000, 3000);
    fill_mult(mult, C, 3.0 * 128.0 * 74.0);
    size_t psz = qat_i8_dw_packed_size(C, k, k), ny = (size_t)out.n * out.h * out.w * C;
    void *pbuf = xmalloc(psz);
    qat_i8_dw_weights pw;
    CU_ASSERT_EQUAL_FATAL(qat_i8_dw_pack(&pw, pbuf, psz, w, bias, C, k, k, 140), QAT_OK);
    qat_i8_requant rq = {mult, 120, 120, 255};
    uint8_t *exp = xmalloc(ny), *got = xmalloc(ny);
    size_t full = qat_i8_dwconv_get_buffer_size(&in, &p);
    uint8_t *scratch = xmalloc(full);
    qat_i8_path keep = qat_i8_set_path(QAT_I8_REF);
    CU_ASSERT_EQUAL(qat_i8_dwconv(exp, x, &in, &p, &pw, &rq, scratch, full), QAT_OK);
    qat_i8_set_path(keep);
    size_t zxrow = (C + 31) / 32 * 32;
    CU_ASSERT(full >= zxrow);
    CU_ASSERT_EQUAL(qat_i8_dwconv(got, x, &in, &p, &pw, &rq, scratch, zxrow - 1), QAT_ERR_ARG);
    if (qat_i8_path_available(QAT_I8_VNNI512)) {
        size_t slot = qat_i8_dw_slot_bytes(out.w, 1, k, k, C);
        CU_ASSERT(full > zxrow + slot); /* the zx row, alignment, a slot per thread */
        const size_t sizes[] = {zxrow, zxrow + slot - 1, full - slot, full};
        use_path(QAT_I8_VNNI512);
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            memset(got, 0xA5, ny);
            CU_ASSERT_EQUAL(qat_i8_dwconv(got, x, &in, &p, &pw, &rq, scratch, sizes[i]), QAT_OK);
            same_u8("dwconv with a smaller scratch", QAT_I8_VNNI512, got, exp, ny);
        }
        qat_i8_set_path(QAT_I8_AUTO);
    }
    free(x); free(w); free(pbuf); free(exp); free(got); free(scratch);
}

/* ---- add --------------------------------------------------------------------------------------- */

static void check_add(int64_t n, const qat_i8_add_params *ap, int in_place) {
    uint8_t *a = xmalloc((size_t)n), *b = xmalloc((size_t)n), *exp = xmalloc((size_t)n), *got = xmalloc((size_t)n);
    fill_u8(a, (size_t)n);
    fill_u8(b, (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        /* written out from the definition in int8.h, separately rounded steps */
        volatile float fa = (float)((int)a[i] - ap->za) * ap->sa;
        volatile float fb = (float)((int)b[i] - ap->zb) * ap->sb;
        volatile float s = fa + fb;
        float r = nearbyintf(s * ap->inv_sy) + (float)ap->zy;
        exp[i] = (uint8_t)(r < ap->lo ? ap->lo : r > ap->hi ? ap->hi : r);
    }
    char what[96];
    snprintf(what, sizeof what, "add n=%lld%s", (long long)n, in_place ? " in place" : "");
    qat_i8_path paths[QAT_I8_PATH_COUNT];
    int np = paths_available(paths);
    for (int i = 0; i < np; i++) {
        if (!use_path(paths[i])) continue;
        if (in_place) {
            memcpy(got, a, (size_t)n);
            CU_ASSERT_EQUAL(qat_i8_add(got, got, b, n, ap), QAT_OK);
        } else {
            memset(got, 0xA5, (size_t)n);
            CU_ASSERT_EQUAL(qat_i8_add(got, a, b, n, ap), QAT_OK);
        }
        same_u8(what, paths[i], got, exp, (size_t)n);
    }
    qat_i8_set_path(QAT_I8_AUTO);
    free(a); free(b); free(exp); free(got);
}

static void test_add(void) {
    static const int64_t ns[] = {1, 7, 16, 33, 1000, 70001, 150001}; /* the last splits over threads */
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++) {
        float sy = 0.05f + rnd_unit() * 0.1f;
        qat_i8_add_params ap = {.sa = 0.02f + rnd_unit() * 0.1f, .sb = 0.02f + rnd_unit() * 0.1f,
                                .inv_sy = 1.0f / sy, .za = i % 2 ? 128 : rnd_int(0, 255),
                                .zb = i % 2 ? 0 : rnd_int(0, 255), .zy = rnd_int(0, 255)};
        ap.lo = i % 2 ? ap.zy : 0; /* fused ReLU on every other size */
        ap.hi = 255;
        check_add(ns[i], &ap, i == 4);
    }
    /* ties: sa = sb = 0.5, inv_sy = 1 gives halves for every odd (a - za) + (b - zb) */
    qat_i8_add_params half = {.sa = 0.5f, .sb = 0.5f, .inv_sy = 1.0f, .za = 128, .zb = 128, .zy = 128, .lo = 0, .hi = 255};
    check_add(517, &half, 0);
}

/* ---- global average pool ----------------------------------------------------------------------- */

static void check_pool(int n, int h, int w, int C, int zx, int zy, int lo, int hi) {
    qat_i8_dims in = {n, h, w, C};
    int hw = h * w;
    qat_i8_pool_params pp = {qat_i8_avgpool_mult(0.03f, 0.02f, hw), zx, zy, lo, hi};
    uint8_t *x = xmalloc((size_t)n * hw * C), *exp = xmalloc((size_t)n * C), *got = xmalloc((size_t)n * C);
    fill_u8(x, (size_t)n * hw * C);
    for (int b = 0; b < n; b++)
        for (int c = 0; c < C; c++) {
            int64_t s = 0;
            for (int i = 0; i < hw; i++) s += x[((size_t)b * hw + i) * C + c];
            float r = nearbyintf((float)(s - (int64_t)hw * zx) * pp.mult) + (float)zy;
            exp[(size_t)b * C + c] = (uint8_t)(r < lo ? lo : r > hi ? hi : r);
        }
    char what[96];
    snprintf(what, sizeof what, "avgpool %dx%dx%dx%d zx=%d", n, h, w, C, zx);
    qat_i8_path paths[QAT_I8_PATH_COUNT];
    int np = paths_available(paths);
    for (int i = 0; i < np; i++) {
        if (!use_path(paths[i])) continue;
        memset(got, 0xA5, (size_t)n * C);
        CU_ASSERT_EQUAL(qat_i8_global_avgpool(got, x, &in, &pp), QAT_OK);
        same_u8(what, paths[i], got, exp, (size_t)n * C);
    }
    qat_i8_set_path(QAT_I8_AUTO);
    free(x); free(exp); free(got);
}

static void test_avgpool(void) {
    static const int chans[] = {1, 7, 16, 33, 96};
    static const int hs[] = {1, 7, 5}, ws[] = {1, 7, 3};
    int idx = 0;
    for (int s = 0; s < 3; s++)
        for (size_t c = 0; c < sizeof chans / sizeof *chans; c++, idx++) {
            int zy = rnd_int(0, 255);
            check_pool(3, hs[s], ws[s], chans[c], idx % 2 ? 128 : rnd_int(0, 255), zy, idx % 2 ? zy : 0, 255);
        }
}

/* ---- dispatch and argument checks ------------------------------------------------------------- */

static void test_paths(void) {
    CU_ASSERT(qat_i8_path_available(QAT_I8_REF));
    qat_i8_path prev = qat_i8_set_path(QAT_I8_REF);
    CU_ASSERT_EQUAL(qat_i8_active_path(), QAT_I8_REF);
    CU_ASSERT_EQUAL(qat_i8_set_path(prev), QAT_I8_REF);
    qat_i8_set_path(QAT_I8_AUTO);
    qat_i8_path a = qat_i8_active_path();
    CU_ASSERT(a != QAT_I8_AUTO && qat_i8_path_available(a));
    for (int p = QAT_I8_REF; p < QAT_I8_PATH_COUNT; p++) {
        qat_i8_set_path((qat_i8_path)p);
        /* an unavailable forced path falls back to the automatic choice, never to illegal code */
        CU_ASSERT_EQUAL(qat_i8_active_path(), qat_i8_path_available((qat_i8_path)p) ? (qat_i8_path)p : a);
        CU_ASSERT(strcmp(qat_i8_path_name((qat_i8_path)p), "unknown") != 0);
    }
    qat_i8_set_path(QAT_I8_AUTO);
}

static void test_errors(void) {
    int8_t w[12] = {0};
    size_t psz = qat_i8_gemm_packed_size(3, 4);
    void *pbuf = xmalloc(psz);
    qat_i8_gemm_weights pw;
    CU_ASSERT_EQUAL(qat_i8_gemm_pack(&pw, pbuf, psz, w, NULL, 3, 4, 256), QAT_ERR_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qat_last_error(), "int8_ref.c"));
    CU_ASSERT_EQUAL(qat_i8_gemm_pack(&pw, pbuf, psz - 1, w, NULL, 3, 4, 0), QAT_ERR_ARG);
    CU_ASSERT_EQUAL(qat_i8_gemm_packed_size(0, 4), 0);
    CU_ASSERT_EQUAL_FATAL(qat_i8_gemm_pack(&pw, pbuf, psz, w, NULL, 3, 4, 0), QAT_OK);
    uint8_t x[8] = {0}, y[8];
    float mult[3] = {1, 1, 1};
    qat_i8_requant rq = {mult, 0, 0, 255};
    CU_ASSERT_EQUAL(qat_i8_gemm_u8(y, 3, x, 3, 1, &pw, &rq), QAT_ERR_SHAPE); /* ldx < K */
    qat_i8_requant bad = {mult, 0, 200, 100};
    CU_ASSERT_EQUAL(qat_i8_gemm_u8(y, 3, x, 4, 1, &pw, &bad), QAT_ERR_ARG);
    CU_ASSERT_EQUAL(qat_i8_gemm_u8(y, 3, x, 4, 0, &pw, &rq), QAT_OK); /* M = 0 */
    qat_i8_dims in = {1, 3, 3, 1};
    qat_i8_conv_params p = {2, 2, 1, 1}; /* K = 4, matches the packed weights */
    size_t bsz = qat_i8_conv_get_buffer_size(&in, &p);
    CU_ASSERT(bsz > 0);
    uint8_t img[9] = {0}, out[16], scratch[256];
    CU_ASSERT_EQUAL(qat_i8_conv(out, img, &in, &p, &pw, &rq, scratch, bsz - 1), QAT_ERR_ARG);
    qat_i8_conv_params p3 = {3, 3, 1, 1};
    CU_ASSERT_EQUAL(qat_i8_conv(out, img, &in, &p3, &pw, &rq, scratch, sizeof scratch), QAT_ERR_SHAPE);
    qat_i8_conv_params big = {5, 5, 1, 0};
    qat_i8_dims od;
    CU_ASSERT_EQUAL(qat_i8_conv_out_dims(&in, &big, 1, &od), QAT_ERR_SHAPE);
    qat_i8_add_params ap = {1, 1, 1, 300, 0, 0, 0, 255};
    CU_ASSERT_EQUAL(qat_i8_add(y, x, x, 8, &ap), QAT_ERR_ARG);
    CU_ASSERT_EQUAL(qat_i8_dw_packed_size(4, 12, 12), 0); /* > 128 taps */
    free(pbuf);
}

/* ---- activation lookup table (hardswish / hardsigmoid) ------------------------------------------ */

/* qat_i8_lut on every path (the AVX-512 ones run the VBMI loop where the CPU has it) and the VBMI
 * loop called directly, against table[x[i]] computed here: lengths around the 64-byte step, the
 * 4096-byte thread chunks and one that splits over threads, in place (y == x) too. */
static void test_lut(void) {
    static const int64_t ns[] = {0, 1, 63, 64, 65, 127, 4097, 70001, 1100003};
    uint8_t table[256];
    fill_u8(table, 256);
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
        int64_t n = ns[k];
        uint8_t *x = xmalloc((size_t)n), *exp = xmalloc((size_t)n), *got = xmalloc((size_t)n);
        fill_u8(x, (size_t)n);
        for (int64_t i = 0; i < n; i++) exp[i] = table[x[i]];
        char what[64];
        snprintf(what, sizeof what, "lut n=%lld", (long long)n);
        qat_i8_path paths[QAT_I8_PATH_COUNT];
        int np = paths_available(paths);
        for (int i = 0; i < np; i++) {
            if (!use_path(paths[i])) continue;
            memset(got, 0xA5, (size_t)n);
            CU_ASSERT_EQUAL(qat_i8_lut(got, x, n, table), QAT_OK);
            same_u8(what, paths[i], got, exp, (size_t)n);
            memcpy(got, x, (size_t)n);
            CU_ASSERT_EQUAL(qat_i8_lut(got, got, n, table), QAT_OK);
            same_u8(what, paths[i], got, exp, (size_t)n);
        }
        qat_i8_set_path(QAT_I8_AUTO);
        if (qat_cpu_has_avx512_vbmi()) {
            memset(got, 0xA5, (size_t)n);
            qat_i8_lut_vbmi(got, x, n, table);
            same_u8(what, QAT_I8_VNNI512, got, exp, (size_t)n);
        }
        free(x); free(exp); free(got);
    }
    if (!qat_cpu_has_avx512_vbmi()) printf("\n  note: no AVX512-VBMI here, the lookup table's SIMD loop untested\n");
}

/* ---- windowed max / average pool (kernels/int8_pool.c) against a naive loop ------------------- */

/* One k x k pool (stride s, pad p) on random codes, odd shapes: max (padded taps skipped) and
 * the average of (x - zx) with padded taps adding 0, each against the direct formula. Threads: 2
 * images above the threshold too. */
static void check_pool2d(int n, int h, int w, int C, int k, int s, int p, int zx, int zy, int lo, int hi) {
    qat_i8_dims in = {n, h, w, C};
    qat_i8_conv_params cp = {k, k, s, p};
    const int OH = (h + 2 * p - k) / s + 1, OW = (w + 2 * p - k) / s + 1;
    const size_t nin = (size_t)n * h * w * C, nout = (size_t)n * OH * OW * C;
    qat_i8_pool_params pp = {qat_i8_avgpool_mult(0.03f, 0.02f, k * k), zx, zy, lo, hi};
    uint8_t *x = xmalloc(nin), *emax = xmalloc(nout), *eavg = xmalloc(nout), *got = xmalloc(nout);
    fill_u8(x, nin);
    for (int b = 0; b < n; b++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                for (int c = 0; c < C; c++) {
                    int mx = -1;
                    int64_t sum = 0;
                    for (int i = 0; i < k; i++)
                        for (int j = 0; j < k; j++) {
                            int ih = oh * s - p + i, iw = ow * s - p + j;
                            if (ih < 0 || ih >= h || iw < 0 || iw >= w) continue;
                            int v = x[(((size_t)b * h + ih) * w + iw) * C + c];
                            mx = v > mx ? v : mx;
                            sum += v - zx;
                        }
                    size_t o = (((size_t)b * OH + oh) * OW + ow) * C + c;
                    emax[o] = (uint8_t)(mx < lo ? lo : mx > hi ? hi : mx);
                    float r = nearbyintf((float)sum * pp.mult) + (float)zy;
                    eavg[o] = (uint8_t)(r < lo ? lo : r > hi ? hi : r);
                }
    char what[96];
    snprintf(what, sizeof what, "maxpool %dx%dx%dx%d k%d s%d p%d", n, h, w, C, k, s, p);
    memset(got, 0xA5, nout);
    CU_ASSERT_EQUAL(qat_i8_maxpool(got, x, &in, &cp, lo, hi), QAT_OK);
    same_u8(what, QAT_I8_REF, got, emax, nout);
    snprintf(what, sizeof what, "avgpool2d %dx%dx%dx%d k%d s%d p%d zx=%d", n, h, w, C, k, s, p, zx);
    memset(got, 0xA5, nout);
    CU_ASSERT_EQUAL(qat_i8_avgpool(got, x, &in, &cp, &pp), QAT_OK);
    same_u8(what, QAT_I8_REF, got, eavg, nout);
    free(x); free(emax); free(eavg); free(got);
}

static void test_pool2d(void) {
    check_pool2d(3, 7, 9, 5, 3, 2, 1, 128, 7, 0, 255);
    check_pool2d(2, 5, 5, 33, 2, 2, 0, 0, 0, 3, 250);
    check_pool2d(1, 6, 11, 16, 5, 1, 2, 200, 100, 0, 255);
    check_pool2d(2, 1, 1, 7, 1, 1, 0, 9, 9, 0, 255);
    check_pool2d(2, 64, 64, 17, 3, 1, 1, 77, 30, 10, 240); /* above the thread threshold */
    /* bad geometry: one error, no write */
    qat_i8_dims in = {1, 4, 4, 1};
    qat_i8_conv_params cp = {3, 3, 1, 2};
    uint8_t x[16] = {0}, y[64];
    CU_ASSERT(qat_i8_maxpool(y, x, &in, &cp, 0, 255) == QAT_ERR_ARG);
    CU_ASSERT(strstr(qat_last_error(), "maxpool: bad geometry") != NULL);
}

void register_int8_tests(void) {
    test_add_suite("int8", "path selection", test_paths, "argument checks", test_errors,
                   "gemm odd shapes, all variants bit-exact", test_gemm_shapes,
                   "gemm full-scale K=65536 without saturation", test_gemm_extreme_no_saturation,
                   "gemm rounding ties to even", test_gemm_rounding_ties,
                   "gemm requant of inf/NaN/huge products", test_gemm_requant_extremes,
                   "dense conv vs zx-padded naive conv", test_conv_dense,
                   "depthwise conv", test_dwconv,
                   "depthwise conv: C <= 16, interior/border, pad, tails", test_dwconv_paths,
                   "depthwise conv: VBMI tiles, every width and height 1..9", test_dwconv_tiles,
                   "depthwise conv: scratch sizes and the VNNI512 fallback", test_dwconv_scratch,
                   "add", test_add,
                   "global average pool", test_avgpool,
                   "k x k max / average pool vs naive, odd shapes", test_pool2d,
                   "activation lookup table, VBMI and scalar", test_lut, NULL);
}
