/* Stage 2 foundation: qparams, observers, the fake-quant op (forward, STE backward) and LSQ /
 * LSQ+. The references are written here again from the formulas in docs/quantization.md —
 * scalar float for forward values (compared bit for bit: they must equal the INT8 arithmetic),
 * double for gradients (checked against central differences of the STE surrogate forward). */
#include "test_util.h"
#include "quant.h"
#include "kernels.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* ---- independent references -------------------------------------------------------------- */

static void ref_range(int bits, int is_signed, int narrow, int32_t *qmin, int32_t *qmax) {
    if (is_signed) {
        *qmin = -(1 << (bits - 1)) + narrow;
        *qmax = (1 << (bits - 1)) - 1;
    } else {
        *qmin = narrow;
        *qmax = (1 << bits) - 1;
    }
}

/* PyTorch _calculate_qparams, in float32 as torch does it. */
static void ref_qparams(const qat_qscheme *s, float mn, float mx, float *scale, int32_t *zp) {
    int32_t qmin, qmax;
    ref_range(s->bits, s->is_signed, s->narrow_range, &qmin, &qmax);
    float lo = fminf(mn, 0.0f), hi = fmaxf(mx, 0.0f);
    if (s->symmetric) {
        float a = fmaxf(-lo, hi);
        *scale = fmaxf(a / ((float)(qmax - qmin) / 2.0f), 1.1920929e-07f);
        *zp = s->is_signed ? 0 : (qmin + qmax + 1) / 2;
    } else {
        *scale = fmaxf((hi - lo) / (float)(qmax - qmin), 1.1920929e-07f);
        int32_t z = qmin - (int32_t)nearbyintf(lo / *scale);
        *zp = z < qmin ? qmin : (z > qmax ? qmax : z);
    }
}

/* quantize -> dequantize with the reciprocal, half to even; NaN to qmin */
static float ref_fq(float x, float scale, int32_t zp, int32_t qmin, int32_t qmax, uint8_t *code) {
    float inv = 1.0f / scale;
    float r = nearbyintf(x * inv);
    int64_t q;
    if (isnan(r)) {
        q = qmin;
        *code = 0;
    } else {
        double qd = (double)r + zp;
        *code = qd < qmin ? 0 : (qd > qmax ? 2 : 1);
        q = qd < qmin ? qmin : (qd > qmax ? qmax : (int64_t)qd);
    }
    return (float)(q - zp) * scale;
}

static int first_bit_mismatch(const char *what, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float))) {
            printf("\n  %s: first mismatch at %lld: %.9g vs %.9g\n", what, (long long)i, a[i], b[i]);
            return 1;
        }
    return 0;
}

static qat_isa isa_max(void) { return qat_cpu_isa_hw(); }

/* ---- qparams ---------------------------------------------------------------------------------- */

static void test_qscheme_ranges(void) {
    struct { int bits, sgn, narrow, qmin, qmax; } t[] = {
        {8, 1, 0, -128, 127}, {8, 1, 1, -127, 127}, {8, 0, 0, 0, 255}, {8, 0, 1, 1, 255},
        {4, 1, 0, -8, 7},     {4, 0, 0, 0, 15},     {2, 1, 0, -2, 1},  {2, 1, 1, -1, 1},
        {2, 0, 0, 0, 3},      {7, 0, 1, 1, 127},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        qat_qscheme s = {.bits = t[i].bits, .is_signed = t[i].sgn, .narrow_range = t[i].narrow};
        int32_t lo, hi;
        CU_ASSERT_EQUAL(qat_qscheme_check(&s), QAT_OK);
        qat_qscheme_range(&s, &lo, &hi);
        CU_ASSERT_EQUAL(lo, t[i].qmin);
        CU_ASSERT_EQUAL(hi, t[i].qmax);
    }
    qat_qscheme u8s = {.bits = 8, .symmetric = 1}, u4s = {.bits = 4, .symmetric = 1};
    CU_ASSERT_EQUAL(qat_qscheme_symmetric_zp(&u8s), 128);
    CU_ASSERT_EQUAL(qat_qscheme_symmetric_zp(&u4s), 8);
}

static void test_qparams_by_hand(void) {
    float sc;
    int32_t zp;
    qat_qscheme u8 = {.bits = 8}, s8sym = {.bits = 8, .is_signed = 1, .symmetric = 1};
    /* [-1, 3] u8 affine: scale 4/255, zp = 0 - round(-1 / (4/255)) = round(63.75) = 64 */
    CU_ASSERT_EQUAL(qat_qparams_from_range(&u8, -1.0f, 3.0f, &sc, &zp), QAT_OK);
    CU_ASSERT_EQUAL(sc, 4.0f / 255.0f);
    CU_ASSERT_EQUAL(zp, 64);
    /* symmetric s8 [-2, 1]: max|x| / ((127 - -128) / 2) = 2 / 127.5, zp 0 */
    CU_ASSERT_EQUAL(qat_qparams_from_range(&s8sym, -2.0f, 1.0f, &sc, &zp), QAT_OK);
    CU_ASSERT_EQUAL(sc, 2.0f / 127.5f);
    CU_ASSERT_EQUAL(zp, 0);
    qat_qscheme s8n = s8sym;
    s8n.narrow_range = 1; /* [-127, 127]: 2 / 127 */
    CU_ASSERT_EQUAL(qat_qparams_from_range(&s8n, -2.0f, 1.0f, &sc, &zp), QAT_OK);
    CU_ASSERT_EQUAL(sc, 2.0f / 127.0f);
    qat_qscheme u8sym = {.bits = 8, .symmetric = 1};
    CU_ASSERT_EQUAL(qat_qparams_from_range(&u8sym, -2.0f, 1.0f, &sc, &zp), QAT_OK);
    CU_ASSERT_EQUAL(sc, 2.0f / 127.5f);
    CU_ASSERT_EQUAL(zp, 128);
    /* a tie: min / scale = -126.5 rounds half to even, zp = 126 (roundf would give 127) */
    CU_ASSERT_EQUAL(qat_qparams_from_range(&u8, -126.5f, 128.5f, &sc, &zp), QAT_OK);
    CU_ASSERT_EQUAL(sc, 1.0f);
    CU_ASSERT_EQUAL(zp, 126);
    /* one-sided ranges are extended to hold 0 */
    CU_ASSERT_EQUAL(qat_qparams_from_range(&u8, 2.0f, 5.0f, &sc, &zp), QAT_OK);
    CU_ASSERT_EQUAL(sc, 5.0f / 255.0f);
    CU_ASSERT_EQUAL(zp, 0);
    CU_ASSERT_EQUAL(qat_qparams_from_range(&u8, -4.0f, -1.0f, &sc, &zp), QAT_OK);
    CU_ASSERT_EQUAL(sc, 4.0f / 255.0f);
    CU_ASSERT_EQUAL(zp, 255);
    /* zero range: the eps floor, zp qmin (affine) */
    CU_ASSERT_EQUAL(qat_qparams_from_range(&u8, 0.0f, 0.0f, &sc, &zp), QAT_OK);
    CU_ASSERT_EQUAL(sc, QAT_QPARAMS_EPS);
    CU_ASSERT_EQUAL(zp, 0);
    qat_qscheme s8 = {.bits = 8, .is_signed = 1};
    CU_ASSERT_EQUAL(qat_qparams_from_range(&s8, 0.0f, 0.0f, &sc, &zp), QAT_OK);
    CU_ASSERT_EQUAL(sc, QAT_QPARAMS_EPS);
    CU_ASSERT_EQUAL(zp, -128);
    CU_ASSERT_EQUAL(qat_qparams_from_range(&s8sym, 0.0f, 0.0f, &sc, &zp), QAT_OK);
    CU_ASSERT_EQUAL(sc, QAT_QPARAMS_EPS);
    CU_ASSERT_EQUAL(zp, 0);
    /* errors leave the outputs alone */
    sc = 7.0f, zp = 7;
    CU_ASSERT_EQUAL(qat_qparams_from_range(&u8, NAN, 1.0f, &sc, &zp), QAT_ERR_NUMERIC);
    CU_ASSERT_PTR_NOT_NULL(strstr(qat_last_error(), "not finite"));
    CU_ASSERT_EQUAL(qat_qparams_from_range(&u8, -1.0f, INFINITY, &sc, &zp), QAT_ERR_NUMERIC);
    CU_ASSERT_EQUAL(qat_qparams_from_range(&u8, -3e38f, 3e38f, &sc, &zp), QAT_ERR_NUMERIC);
    CU_ASSERT_EQUAL(qat_qparams_from_range(&u8, 2.0f, 1.0f, &sc, &zp), QAT_ERR_ARG);
    qat_qscheme b1 = {.bits = 1}, b9 = {.bits = 9, .is_signed = 1};
    CU_ASSERT_EQUAL(qat_qparams_from_range(&b1, -1.0f, 1.0f, &sc, &zp), QAT_ERR_ARG);
    CU_ASSERT_EQUAL(qat_qparams_from_range(&b9, -1.0f, 1.0f, &sc, &zp), QAT_ERR_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qat_last_error(), "9 bits"));
    CU_ASSERT(sc == 7.0f && zp == 7);
    /* per channel: the same function per channel */
    float mn[3] = {-1, 0, -0.5f}, mx[3] = {3, 2, 0}, scs[3];
    int32_t zps[3];
    CU_ASSERT_EQUAL(qat_qparams_from_ranges(&u8, 3, mn, mx, scs, zps), QAT_OK);
    for (int c = 0; c < 3; c++) {
        float rs;
        int32_t rz;
        ref_qparams(&u8, mn[c], mx[c], &rs, &rz);
        CU_ASSERT(scs[c] == rs && zps[c] == rz);
    }
}

/* ---- the fake-quant op over every scheme ------------------------------------------------------- */

typedef struct {
    const char *what;
    int per_channel, axis, ndim, shape[4];
} layout_case;

static const layout_case layouts[] = {
    {"per-tensor", 0, 0, 4, {2, 3, 5, 7}},
    {"NHWC C=7", 1, -1, 4, {2, 3, 4, 7}},
    {"NHWC C=17", 1, -1, 4, {3, 2, 3, 17}},
    {"OHWI C=7", 1, 0, 4, {7, 3, 3, 5}},
    {"OHWI C=17", 1, 0, 4, {17, 1, 1, 9}},
    {"linear (out,in) C=7", 1, 0, 2, {7, 13}},
};

/* channel of flat element e */
static int channel_of(const layout_case *lc, int64_t e) {
    if (!lc->per_channel) return 0;
    int ax = lc->axis < 0 ? lc->ndim + lc->axis : lc->axis;
    int64_t inner = 1;
    for (int d = ax + 1; d < lc->ndim; d++) inner *= lc->shape[d];
    return (int)((e / inner) % lc->shape[ax]);
}

static void test_fakequant_all_schemes(void) {
    qat_isa top = isa_max(), saved = qat_cpu_isa();
    int failures = 0, cases = 0;
    for (int bits = 2; bits <= 8; bits++)
        for (int sgn = 0; sgn <= 1; sgn++)
            for (int sym = 0; sym <= 1; sym++)
                for (int narrow = 0; narrow <= 1; narrow++)
                    for (size_t li = 0; li < sizeof layouts / sizeof layouts[0]; li++) {
                        const layout_case *lc = &layouts[li];
                        qat_qscheme s = {bits, sgn, sym, narrow, lc->per_channel, lc->axis};
                        int ax = lc->axis < 0 ? lc->ndim + lc->axis : lc->axis;
                        int C = lc->per_channel ? lc->shape[ax] : 1;
                        int32_t qmin, qmax;
                        ref_range(bits, sgn, narrow, &qmin, &qmax);
                        qat_tensor *x = test_leaf(lc->ndim, lc->shape, 1.0f, 1000 + bits * 7 + li);
                        int64_t n = x->numel;
                        /* channel-dependent ranges, some channels one-sided */
                        for (int64_t e = 0; e < n; e++) {
                            int c = channel_of(lc, e);
                            x->data[e] = x->data[e] * (0.5f + 0.3f * c) + (c % 3 == 1 ? 2.0f : 0.0f);
                        }
                        float *ref = malloc(n * sizeof(float)), *y2 = malloc(n * sizeof(float));
                        uint8_t *rc = malloc(n);
                        for (int isa = QAT_ISA_SCALAR; isa <= (int)top; isa++) {
                            qat_set_isa((qat_isa)isa);
                            qat_fq fq;
                            CU_ASSERT_FATAL(qat_fq_init(&fq, &s, QAT_OBS_MINMAX, C, "t") == QAT_OK);
                            qat_ctx ctx;
                            qat_ctx_init(&ctx, 1 << 16);
                            qat_tensor *y = qat_fakequant(&ctx, x, &fq);
                            /* the test's own min/max and qparams per channel */
                            float mn[32], mx[32], rs[32];
                            int32_t rz[32];
                            for (int c = 0; c < C; c++) mn[c] = INFINITY, mx[c] = -INFINITY;
                            for (int64_t e = 0; e < n; e++) {
                                int c = channel_of(lc, e);
                                mn[c] = fminf(mn[c], x->data[e]), mx[c] = fmaxf(mx[c], x->data[e]);
                            }
                            int bad = 0;
                            for (int c = 0; c < C; c++) {
                                ref_qparams(&s, mn[c], mx[c], &rs[c], &rz[c]);
                                if (fq.scale[c] != rs[c] || fq.zero_point[c] != rz[c]) bad = 1;
                            }
                            for (int64_t e = 0; e < n; e++) {
                                int c = channel_of(lc, e);
                                ref[e] = ref_fq(x->data[e], rs[c], rz[c], qmin, qmax, &rc[e]);
                            }
                            bad |= first_bit_mismatch(lc->what, y->data, ref, n);
                            /* second batch through fixed qparams: wider data, so some clip */
                            fq.observer_enabled = 0;
                            for (int64_t e = 0; e < n; e++) x->data[e] *= 1.7f;
                            qat_tensor *y2t = qat_fakequant(&ctx, x, &fq);
                            const qat_fq_saved *sv = y2t->saved;
                            for (int64_t e = 0; e < n; e++) {
                                int c = channel_of(lc, e);
                                uint8_t code;
                                y2[e] = ref_fq(x->data[e], rs[c], rz[c], qmin, qmax, &code);
                                if (!sv || sv->code[e] != code) bad = 1;
                            }
                            bad |= first_bit_mismatch(lc->what, y2t->data, y2, n);
                            for (int64_t e = 0; e < n; e++) x->data[e] /= 1.7f;
                            if (bad) {
                                printf("\n  bits %d signed %d sym %d narrow %d %s isa %s\n", bits,
                                       sgn, sym, narrow, lc->what, qat_isa_name((qat_isa)isa));
                                failures++;
                            }
                            cases++;
                            qat_ctx_free(&ctx);
                            qat_fq_free(&fq);
                        }
                        free(ref), free(y2), free(rc);
                        test_leaf_free(x);
                    }
    qat_set_isa(saved);
    CU_ASSERT_EQUAL(failures, 0);
    CU_ASSERT(cases >= 7 * 8 * 6);
}

/* Halves, NaN, infinities, signed zeros, denormals, huge values, clip edges, odd tails: every
 * ISA variant bit for bit against the reference kernel and the test's formula. */
static void test_fq_kernel_edge_values(void) {
    const float specials[] = {0.0f,  -0.0f,  NAN,   -NAN,   INFINITY, -INFINITY, 1e30f, -1e30f,
                              3e38f, -3e38f, 1e-40f, -1e-40f, 0.125f, -0.125f, 0.375f, 2.5e9f};
    qat_isa top = isa_max(), saved = qat_cpu_isa();
    for (int sc_i = 0; sc_i < 2; sc_i++) {
        float scale = sc_i ? 0.1f : 0.25f; /* 0.25: x * inv lands exactly on halves */
        for (int zpc = 0; zpc < 3; zpc++) {
            int32_t qmin = zpc == 2 ? -128 : 0, qmax = zpc == 2 ? 127 : 255;
            int32_t zp = zpc == 0 ? 0 : (zpc == 1 ? 77 : -3);
            for (int n = 1; n <= 70; n += (n < 34 ? 1 : 17)) {
                float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
                float *yr = malloc(n * sizeof(float)), *yt = malloc(n * sizeof(float));
                uint8_t *c = malloc(n), *cr = malloc(n), *ct = malloc(n);
                for (int i = 0; i < n; i++) {
                    if (i % 3 == 0) x[i] = specials[(i / 3) % 16];
                    else if (i % 3 == 1) x[i] = ((float)(i % 41 - 20) + 0.5f) * scale; /* halves */
                    else x[i] = (float)(qmin - zp + (i % 7) - 3) * scale * 1.0001f; /* clip edge */
                }
                float inv = 1.0f / scale, lo = (float)(qmin - zp), hi = (float)(qmax - zp);
                qat_fq_consts k = {&scale, &inv, &zp, &lo, &hi, qmin, qmax};
                qat_qlayout l = {.outer = 1, .channels = 1, .inner = n};
                qat_fq_kernel_ref(yr, cr, x, &l, &k);
                for (int i = 0; i < n; i++) yt[i] = ref_fq(x[i], scale, zp, qmin, qmax, &ct[i]);
                CU_ASSERT(!first_bit_mismatch("ref kernel vs formula", yr, yt, n));
                CU_ASSERT(!memcmp(cr, ct, n));
                for (int isa = QAT_ISA_SCALAR; isa <= (int)top; isa++) {
                    qat_set_isa((qat_isa)isa);
                    qat_fq_kernel(y, c, x, &l, &k);
                    if (first_bit_mismatch(qat_isa_name((qat_isa)isa), y, yr, n) || memcmp(c, cr, n)) {
                        printf("  (n %d scale %g zp %d)\n", n, scale, zp);
                        CU_FAIL("kernel variant differs from the reference");
                    }
                    /* without codes too (inference path) */
                    qat_fq_kernel(y, NULL, x, &l, &k);
                    CU_ASSERT(!first_bit_mismatch("no codes", y, yr, n));
                }
                free(x), free(y), free(yr), free(yt), free(c), free(cr), free(ct);
            }
        }
    }
    /* per-channel rows with awkward C against the reference */
    for (int C = 1; C <= 35; C += 2) {
        int rows = 5, n = rows * C;
        float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), *yr = malloc(n * sizeof(float));
        uint8_t *c = malloc(n), *cr = malloc(n);
        float sc[35], inv[35], lo[35], hi[35];
        int32_t zp[35];
        for (int ch = 0; ch < C; ch++) {
            sc[ch] = 0.01f * (ch + 1);
            zp[ch] = (ch * 37) % 256;
            inv[ch] = 1.0f / sc[ch], lo[ch] = (float)(0 - zp[ch]), hi[ch] = (float)(255 - zp[ch]);
        }
        qat_rng r;
        qat_rng_seed(&r, C);
        for (int i = 0; i < n; i++) x[i] = qat_rng_normal(&r) * 2.0f;
        x[0] = NAN;
        qat_fq_consts k = {sc, inv, zp, lo, hi, 0, 255};
        qat_qlayout lrow = {.outer = rows, .channels = C, .inner = 1};
        qat_qlayout lcol = {.outer = 1, .channels = C, .inner = rows};
        for (int pass = 0; pass < 2; pass++) {
            qat_qlayout *l = pass ? &lcol : &lrow;
            qat_fq_kernel_ref(yr, cr, x, l, &k);
            for (int isa = QAT_ISA_SCALAR; isa <= (int)top; isa++) {
                qat_set_isa((qat_isa)isa);
                qat_fq_kernel(y, c, x, l, &k);
                CU_ASSERT(!first_bit_mismatch("per-channel", y, yr, n));
                CU_ASSERT(!memcmp(c, cr, n));
            }
        }
        free(x), free(y), free(yr), free(c), free(cr);
    }
    qat_set_isa(saved);
}

static void test_minmax_kernel(void) {
    qat_isa top = isa_max(), saved = qat_cpu_isa();
    int shapes[][3] = {{1, 1, 1}, {1, 1, 37}, {1, 1, 300000}, {9, 13, 1}, {1, 13, 29}, {3, 5, 7}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        qat_qlayout l = {.outer = shapes[si][0], .channels = shapes[si][1], .inner = shapes[si][2]};
        int64_t n = l.outer * l.channels * l.inner;
        float *x = malloc(n * sizeof(float));
        qat_rng r;
        qat_rng_seed(&r, si);
        for (int64_t i = 0; i < n; i++) x[i] = qat_rng_normal(&r);
        for (int withnan = 0; withnan < 2; withnan++) {
            if (withnan) {
                x[n / 2] = NAN;
                if (n > 1) x[n - 1] = -INFINITY;
            }
            float mr[13], Mr[13], m[13], M[13];
            int64_t kr, k;
            qat_minmax_ref(mr, Mr, &kr, x, &l);
            CU_ASSERT_EQUAL(kr, withnan);
            for (int isa = QAT_ISA_SCALAR; isa <= (int)top; isa++) {
                qat_set_isa((qat_isa)isa);
                qat_minmax(m, M, &k, x, &l);
                CU_ASSERT_EQUAL(k, kr);
                CU_ASSERT(!memcmp(m, mr, l.channels * sizeof(float)));
                CU_ASSERT(!memcmp(M, Mr, l.channels * sizeof(float)));
            }
        }
        free(x);
    }
    qat_set_isa(saved);
}

static void test_ste_kernel(void) {
    qat_isa top = isa_max(), saved = qat_cpu_isa();
    for (int n = 1; n < 300; n += 7) {
        float *dy = malloc(n * sizeof(float)), *d0 = malloc(n * sizeof(float));
        float *dr = malloc(n * sizeof(float)), *dv = malloc(n * sizeof(float));
        uint8_t *code = malloc(n);
        for (int i = 0; i < n; i++) {
            dy[i] = (float)(i % 9) - 4.5f;
            d0[i] = i % 4 == 0 ? -0.0f : 0.25f * i;
            code[i] = (uint8_t)((i * 5) % 3);
        }
        memcpy(dr, d0, n * sizeof(float));
        qat_fq_ste_grad_ref(dr, dy, code, n);
        for (int i = 0; i < n; i++) {
            float e = code[i] == QAT_FQ_INSIDE ? d0[i] + dy[i] : d0[i];
            CU_ASSERT(!memcmp(&e, &dr[i], sizeof e));
        }
        for (int isa = QAT_ISA_SCALAR; isa <= (int)top; isa++) {
            qat_set_isa((qat_isa)isa);
            memcpy(dv, d0, n * sizeof(float));
            qat_fq_ste_grad(dv, dy, code, n);
            CU_ASSERT(!first_bit_mismatch(qat_isa_name((qat_isa)isa), dv, dr, n));
        }
        free(dy), free(d0), free(dr), free(dv), free(code);
    }
    qat_set_isa(saved);
}

/* ---- STE backward --------------------------------------------------------------------------- */

static void run_backward(qat_ctx *ctx, qat_tensor *out, const float *seed) {
    float *g = qat_grad(ctx, out);
    memcpy(g, seed, out->numel * sizeof(float));
    for (int k = ctx->ntape - 1; k >= 0; k--)
        if (ctx->tape[k]->grad) qat_backward_node(ctx, ctx->tape[k]);
}

static void test_ste_gradient(void) {
    /* u8 affine, scale 0.05, zp 100: inputs at q + 0.25 in quantized units, some clipped */
    qat_qscheme s = {.bits = 8};
    const int n = 300, shape[2] = {3, 100};
    qat_fq fq;
    CU_ASSERT_FATAL(qat_fq_init(&fq, &s, QAT_OBS_MINMAX, 1, "ste") == QAT_OK);
    float sc = 0.05f;
    int32_t zp = 100;
    CU_ASSERT_EQUAL(qat_fq_set_qparams(&fq, &sc, &zp), QAT_OK);
    fq.observer_enabled = 0;
    qat_tensor *x = test_leaf(2, shape, 1.0f, 5);
    for (int i = 0; i < n; i++) {
        int q = (i * 7) % 400 - 172; /* q - zp: -172..227, [-100, 155] is inside */
        if (q == -100 || q == 155) q++; /* the surrogate has a kink at the ends */
        x->data[i] = ((float)q + (i % 2 ? 0.25f : -0.25f)) * sc;
        x->grad[i] = 1.0f; /* backward must accumulate */
    }
    float *seed = malloc(n * sizeof(float));
    for (int i = 0; i < n; i++) seed[i] = (float)((i * 13) % 17) / 8.0f - 1.0f;
    qat_ctx ctx;
    qat_ctx_init(&ctx, 1 << 16);
    qat_tensor *y = qat_fakequant(&ctx, x, &fq);
    CU_ASSERT_EQUAL_FATAL(ctx.ntape, 1);
    run_backward(&ctx, y, seed);
    /* central differences of the STE surrogate y = s * clamp(x/s + c, lo, hi), c frozen at x */
    const double eps = 1e-3 * sc;
    int bad = 0, inside = 0, clipped = 0;
    for (int i = 0; i < n; i++) {
        double v0 = (double)x->data[i] / sc, c = nearbyint(v0) - v0;
        double lo = 0 - zp, hi = 255 - zp;
        double up = fmin(fmax((x->data[i] + eps) / sc + c, lo), hi) * sc;
        double dn = fmin(fmax((x->data[i] - eps) / sc + c, lo), hi) * sc;
        double num = seed[i] * (up - dn) / (2 * eps);
        double ana = x->grad[i] - 1.0;
        if (fabs(num - ana) > 1e-4) {
            if (!bad) printf("\n  STE %d: x %g analytic %g numeric %g\n", i, x->data[i], ana, num);
            bad++;
        }
        const qat_fq_saved *sv = y->saved;
        int in = sv->code[i] == QAT_FQ_INSIDE;
        inside += in, clipped += !in;
        if (!in && ana != 0.0) bad++;
        /* and the real forward is flat here: away from rounding boundaries */
        uint8_t cd;
        float a = ref_fq(x->data[i] + (float)eps, sc, zp, 0, 255, &cd);
        float b = ref_fq(x->data[i] - (float)eps, sc, zp, 0, 255, &cd);
        if (a != b) bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(inside > 100 && clipped > 50);
    qat_ctx_free(&ctx);
    free(seed);
    test_leaf_free(x);
    qat_fq_free(&fq);
}

/* ---- LSQ / LSQ+ ------------------------------------------------------------------------------ */

typedef struct {
    const layout_case *lc;
    int plus, sgn, bits, per_example;
} lsq_case;

/* sum_i R_i * y_sur_i in double, rounding frozen by c_i (the STE surrogate of the forward) */
static double lsq_surrogate(const float *x, const double *cfix, const float *R, int64_t n,
                            const layout_case *lc, const double *s, const double *beta,
                            const int32_t *zpfix, int plus, int32_t qmin, int32_t qmax) {
    double L = 0;
    for (int64_t e = 0; e < n; e++) {
        int c = channel_of(lc, e);
        double y;
        if (plus) {
            double u = fmin(fmax((x[e] - beta[c]) / s[c] + cfix[e], qmin), qmax);
            y = u * s[c] + beta[c];
        } else {
            double u = fmin(fmax(x[e] / s[c] + zpfix[c] + cfix[e], qmin), qmax);
            y = (u - zpfix[c]) * s[c];
        }
        L += R[e] * y;
    }
    return L;
}

static void check_lsq(const lsq_case *k) {
    const layout_case *lc = k->lc;
    int ax = lc->axis < 0 ? lc->ndim + lc->axis : lc->axis;
    int C = lc->per_channel ? lc->shape[ax] : 1;
    qat_qscheme s = {k->bits, k->sgn, 0, 0, lc->per_channel, lc->axis};
    int32_t qmin, qmax;
    ref_range(k->bits, k->sgn, 0, &qmin, &qmax);
    float sdat[32], sgrad[32], bdat[32], bgrad[32];
    int32_t zp0[32];
    int shp1[1] = {C};
    qat_tensor st, bt;
    qat_tensor_param(&st, 1, shp1, sdat, sgrad, "s");
    qat_tensor_param(&bt, 1, shp1, bdat, bgrad, "beta");
    for (int c = 0; c < C; c++) {
        sdat[c] = 0.03f + 0.01f * c;
        zp0[c] = k->plus ? qmin + (qmax - qmin) / 3 + (c % 2) : 0;
        bdat[c] = -(float)zp0[c] * sdat[c]; /* on the grid */
        sgrad[c] = bgrad[c] = 0;
    }
    qat_lsq q;
    CU_ASSERT_FATAL(qat_lsq_init(&q, &s, k->plus, C, st.data, st.grad, k->plus ? bt.data : NULL,
                                 k->plus ? bt.grad : NULL, k->per_example, "lsq") == QAT_OK);
    qat_tensor *x = test_leaf(lc->ndim, lc->shape, 1.0f, 77 + k->bits);
    int64_t n = x->numel;
    /* codes at q + 0.3 inside [qmin + 1, qmax - 1]; every 5th far outside */
    for (int64_t e = 0; e < n; e++) {
        int c = channel_of(lc, e);
        int span = qmax - qmin - 2;
        int code = qmin + 1 + (int)((e * 5 + 3) % (span + 1));
        double u = code + ((e % 2) ? 0.3 : -0.3);
        if (e % 5 == 0) u = (e % 10 == 0) ? qmax + 3.3 : qmin - 2.7;
        x->data[e] = (float)((u - zp0[c]) * sdat[c]);
    }
    float *R = malloc(n * sizeof(float));
    double *cfix = malloc(n * sizeof(double));
    for (int64_t e = 0; e < n; e++) {
        R[e] = (float)((e * 11) % 13) / 6.0f - 1.0f;
        int c = channel_of(lc, e);
        double v = (x->data[e] - (double)bdat[c]) / sdat[c];
        cfix[e] = nearbyint(v) - v;
    }
    qat_ctx ctx;
    qat_ctx_init(&ctx, 1 << 16);
    qat_tensor *y = qat_lsq_quantize(&ctx, x, &q);
    /* forward = fake-quant with (s, zp) bit for bit */
    float *ref = malloc(n * sizeof(float));
    int bad = 0;
    for (int64_t e = 0; e < n; e++) {
        int c = channel_of(lc, e);
        uint8_t cd;
        ref[e] = ref_fq(x->data[e], sdat[c], zp0[c], qmin, qmax, &cd);
    }
    bad |= first_bit_mismatch("lsq forward", y->data, ref, n);
    run_backward(&ctx, y, R);
    /* gradient scale */
    int64_t N = n / C;
    if (k->per_example) N /= lc->shape[0];
    double g = 1.0 / sqrt((double)N * qmax);
    const qat_fq_saved *sv = y->saved;
    if (fabs(sv->grad_scale - g) > 1e-6 * g) {
        printf("\n  grad scale %g expected %g\n", sv->grad_scale, g);
        bad = 1;
    }
    double sd[32], bd[32];
    for (int c = 0; c < C; c++) sd[c] = sdat[c], bd[c] = bdat[c];
    /* dx: 1 inside, 0 clipped */
    for (int64_t e = 0; e < n; e++) {
        int in = !(e % 5 == 0);
        double expect = in ? R[e] : 0.0;
        if (fabs(x->grad[e] - expect) > 1e-6) bad = 1;
    }
    for (int c = 0; c < C; c++) {
        double h = 1e-4 * sd[c];
        sd[c] += h;
        double Lp = lsq_surrogate(x->data, cfix, R, n, lc, sd, bd, zp0, k->plus, qmin, qmax);
        sd[c] -= 2 * h;
        double Lm = lsq_surrogate(x->data, cfix, R, n, lc, sd, bd, zp0, k->plus, qmin, qmax);
        sd[c] += h;
        double num = g * (Lp - Lm) / (2 * h);
        if (fabs(num - sgrad[c]) > 2e-3 * fmax(1.0, fabs(num))) {
            printf("\n  ds[%d]: analytic %.7g numeric %.7g\n", c, sgrad[c], num);
            bad = 1;
        }
        if (k->plus) {
            double hb = 1e-4 * sd[c];
            bd[c] += hb;
            Lp = lsq_surrogate(x->data, cfix, R, n, lc, sd, bd, zp0, 1, qmin, qmax);
            bd[c] -= 2 * hb;
            Lm = lsq_surrogate(x->data, cfix, R, n, lc, sd, bd, zp0, 1, qmin, qmax);
            bd[c] += hb;
            num = g * (Lp - Lm) / (2 * hb);
            if (fabs(num - bgrad[c]) > 2e-3 * fmax(1.0, fabs(num))) {
                printf("\n  dbeta[%d]: analytic %.7g numeric %.7g\n", c, bgrad[c], num);
                bad = 1;
            }
        }
    }
    if (bad) {
        printf("  LSQ%s %s bits %d signed %d\n", k->plus ? "+" : "", lc->what, k->bits, k->sgn);
        CU_FAIL("LSQ mismatch");
    }
    qat_ctx_free(&ctx);
    free(R), free(cfix), free(ref);
    test_leaf_free(x);
}

static void test_lsq_gradients(void) {
    static const layout_case act = {"act NHWC per-tensor", 0, 0, 4, {2, 3, 3, 5}};
    for (int plus = 0; plus <= 1; plus++)
        for (int sgn = 0; sgn <= 1; sgn++)
            for (int bits = 2; bits <= 8; bits += 3) {
                lsq_case a = {&act, plus, sgn, bits, 1};
                check_lsq(&a);
                for (size_t li = 0; li < sizeof layouts / sizeof layouts[0]; li++) {
                    lsq_case w = {&layouts[li], plus, sgn, bits, 0};
                    check_lsq(&w);
                }
            }
}

static void test_lsq_helpers(void) {
    qat_qscheme s = {.bits = 4, .is_signed = 1, .per_channel = 1, .axis = 0};
    float sd[3] = {0}, bd[3] = {0};
    int shp[1] = {3};
    qat_tensor st, bt;
    qat_tensor_param(&st, 1, shp, sd, NULL, "s");
    qat_tensor_param(&bt, 1, shp, bd, NULL, "b");
    qat_lsq q;
    CU_ASSERT_EQUAL(qat_lsq_init(&q, &s, 0, 3, st.data, st.grad, bt.data, bt.grad, 0, "w"), QAT_ERR_ARG);
    CU_ASSERT_EQUAL(qat_lsq_init(&q, &s, 1, 3, st.data, st.grad, bt.data, bt.grad, 0, "w"), QAT_OK);
    /* 2 * mean|x| / sqrt(7) per channel */
    float w[3 * 4] = {1, -1, 1, -1, 0.5f, 0.5f, -0.5f, -0.5f, 0, 0, 0, 0};
    int wshape[2] = {3, 4};
    CU_ASSERT_EQUAL(qat_lsq_init_from_data(&q, w, 2, wshape), QAT_OK);
    CU_ASSERT(fabsf(sd[0] - (float)(2.0 / sqrt(7.0))) < 1e-6f);
    CU_ASSERT(fabsf(sd[1] - (float)(1.0 / sqrt(7.0))) < 1e-6f);
    CU_ASSERT_EQUAL(sd[2], QAT_QPARAMS_EPS);
    /* from qparams: beta = -zp * s, and back */
    float sc[3] = {0.1f, 0.2f, 0.3f};
    int32_t zp[3] = {-3, 0, 5}, zpo[3];
    float sco[3];
    CU_ASSERT_EQUAL(qat_lsq_init_from_qparams(&q, sc, zp), QAT_OK);
    qat_lsq_qparams(&q, sco, zpo);
    for (int c = 0; c < 3; c++) CU_ASSERT(sco[c] == sc[c] && zpo[c] == zp[c]);
    /* clamp */
    sd[0] = -1.0f, sd[1] = NAN, sd[2] = 0.5f;
    qat_lsq_clamp_scale(&q);
    CU_ASSERT(sd[0] == q.scale_floor && sd[1] == q.scale_floor && sd[2] == 0.5f);
    /* disabled: the input itself */
    qat_ctx ctx;
    qat_ctx_init(&ctx, 1 << 12);
    qat_tensor *x = test_leaf(2, wshape, 1.0f, 3);
    q.fake_quant_enabled = 0;
    CU_ASSERT_PTR_EQUAL(qat_lsq_quantize(&ctx, x, &q), x);
    CU_ASSERT_EQUAL(ctx.ntape, 0);
    qat_ctx_free(&ctx);
    test_leaf_free(x);
}

/* LSQ parameter gradients do not depend on the thread count. */
static void test_lsq_threads(void) {
    qat_qscheme s = {.bits = 8};
    float sd = 0.02f, sg[2], bd = -0.5f, bg[2];
    int shp1[1] = {1}, shape[4] = {4, 40, 40, 32};
    qat_tensor *x = test_leaf(4, shape, 1.0f, 9);
    int saved_threads = qat_get_threads();
    for (int run = 0; run < 2; run++) {
        qat_set_threads(run ? 2 : 1);
        qat_tensor st, bt;
        sg[run] = bg[run] = 0;
        qat_tensor_param(&st, 1, shp1, &sd, &sg[run], "s");
        qat_tensor_param(&bt, 1, shp1, &bd, &bg[run], "b");
        qat_lsq q;
        CU_ASSERT_FATAL(qat_lsq_init(&q, &s, 1, 1, st.data, st.grad, bt.data, bt.grad, 1, "a") == QAT_OK);
        qat_ctx ctx;
        qat_ctx_init(&ctx, 1 << 20);
        qat_tensor *y = qat_lsq_quantize(&ctx, x, &q);
        float *seed = malloc(y->numel * sizeof(float));
        for (int64_t i = 0; i < y->numel; i++) seed[i] = (float)(i % 7) - 3.0f;
        run_backward(&ctx, y, seed);
        free(seed);
        qat_ctx_free(&ctx);
    }
    qat_set_threads(saved_threads);
    CU_ASSERT(!memcmp(&sg[0], &sg[1], sizeof(float)));
    CU_ASSERT(!memcmp(&bg[0], &bg[1], sizeof(float)));
    test_leaf_free(x);
}

/* ---- observers ------------------------------------------------------------------------------- */

static void test_observer_minmax_and_avg(void) {
    qat_qscheme s = {.bits = 8};
    int shp[1] = {4};
    float b1[4] = {-1.0f, 0.5f, 2.0f, 0.0f}, b2[4] = {-3.0f, 1.0f, 4.0f, 0.25f};
    float lo, hi, sc;
    int32_t zp;
    qat_observer o;
    CU_ASSERT_FATAL(qat_observer_init(&o, QAT_OBS_MINMAX, &s, 1, "mm") == QAT_OK);
    CU_ASSERT_EQUAL(qat_observer_qparams(&o, &s, &sc, &zp), QAT_ERR_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qat_last_error(), "observer mm saw no data"));
    CU_ASSERT_EQUAL(qat_observer_update(&o, b1, 1, shp), QAT_OK);
    CU_ASSERT_EQUAL(qat_observer_update(&o, b2, 1, shp), QAT_OK);
    CU_ASSERT_EQUAL(qat_observer_range(&o, &s, &lo, &hi), QAT_OK);
    CU_ASSERT(lo == -3.0f && hi == 4.0f && o.seen == 2);
    CU_ASSERT_EQUAL(qat_observer_qparams(&o, &s, &sc, &zp), QAT_OK);
    CU_ASSERT(sc == 7.0f / 255.0f && zp == 109); /* round(3 / (7/255)) = round(109.29) */
    /* NaN batch: refused, state unchanged */
    float bn[4] = {0, NAN, 100, -100};
    CU_ASSERT_EQUAL(qat_observer_update(&o, bn, 1, shp), QAT_ERR_NUMERIC);
    CU_ASSERT_PTR_NOT_NULL(strstr(qat_last_error(), "NaN"));
    float binf[4] = {0, INFINITY, 1, 2};
    CU_ASSERT_EQUAL(qat_observer_update(&o, binf, 1, shp), QAT_ERR_NUMERIC);
    CU_ASSERT(o.min_val[0] == -3.0f && o.max_val[0] == 4.0f && o.seen == 2);
    /* disabled / frozen: no-ops */
    float b3[4] = {-10, 10, 0, 0};
    o.enabled = 0;
    CU_ASSERT_EQUAL(qat_observer_update(&o, b3, 1, shp), QAT_OK);
    o.enabled = 1, o.frozen = 1;
    CU_ASSERT_EQUAL(qat_observer_update(&o, b3, 1, shp), QAT_OK);
    CU_ASSERT(o.min_val[0] == -3.0f && o.max_val[0] == 4.0f && o.seen == 2);
    o.frozen = 0;
    qat_observer_reset(&o);
    CU_ASSERT_EQUAL(qat_observer_range(&o, &s, &lo, &hi), QAT_ERR_ARG);
    qat_observer_free(&o);

    /* moving average, c = 0.01: the first batch sets the range */
    CU_ASSERT_FATAL(qat_observer_init(&o, QAT_OBS_MOVING_AVG, &s, 1, "ma") == QAT_OK);
    CU_ASSERT_EQUAL(qat_observer_update(&o, b1, 1, shp), QAT_OK);
    CU_ASSERT(o.min_val[0] == -1.0f && o.max_val[0] == 2.0f);
    CU_ASSERT_EQUAL(qat_observer_update(&o, b2, 1, shp), QAT_OK);
    float emin = -1.0f + 0.01f * (-3.0f - -1.0f), emax = 2.0f + 0.01f * (4.0f - 2.0f);
    CU_ASSERT(o.min_val[0] == emin && o.max_val[0] == emax);
    CU_ASSERT(fabsf(emin - -1.02f) < 1e-6f && fabsf(emax - 2.02f) < 1e-6f);
    /* pack / unpack round trip; a different observer is refused */
    size_t nb = qat_observer_state_bytes(&o);
    char *buf = malloc(nb);
    qat_observer_pack(&o, buf);
    qat_observer o2;
    CU_ASSERT_FATAL(qat_observer_init(&o2, QAT_OBS_MOVING_AVG, &s, 1, "ma2") == QAT_OK);
    CU_ASSERT_EQUAL(qat_observer_unpack(&o2, buf, nb - 1), QAT_ERR_FORMAT);
    CU_ASSERT_EQUAL(qat_observer_unpack(&o2, buf, nb), QAT_OK);
    CU_ASSERT(o2.seen == 2 && o2.min_val[0] == emin && o2.max_val[0] == emax);
    qat_observer o3;
    CU_ASSERT_FATAL(qat_observer_init(&o3, QAT_OBS_MINMAX, &s, 1, "mm3") == QAT_OK);
    CU_ASSERT_EQUAL(qat_observer_unpack(&o3, buf, nb), QAT_ERR_MISMATCH);
    free(buf);
    qat_observer_free(&o);
    qat_observer_free(&o2);
    qat_observer_free(&o3);
}

static void test_observer_per_channel(void) {
    /* NHWC (1, 2, 2, 3): channel = last index */
    float act[12] = {1, -2, 0.5f, 3, 4, -1, -5, 0, 2, 0.25f, 6, 7};
    int ashape[4] = {1, 2, 2, 3};
    qat_qscheme sa = {.bits = 8, .per_channel = 1, .axis = -1};
    qat_observer o;
    CU_ASSERT_FATAL(qat_observer_init(&o, QAT_OBS_MINMAX, &sa, 3, "act") == QAT_OK);
    CU_ASSERT_EQUAL(qat_observer_update(&o, act, 4, ashape), QAT_OK);
    float emn[3] = {-5, -2, -1}, emx[3] = {3, 6, 7};
    for (int c = 0; c < 3; c++) CU_ASSERT(o.min_val[c] == emn[c] && o.max_val[c] == emx[c]);
    int bad[4] = {1, 2, 2, 4}; /* 4 channels */
    CU_ASSERT_EQUAL(qat_observer_update(&o, act, 4, bad), QAT_ERR_SHAPE);
    qat_observer_free(&o);
    /* OHWI (3, 1, 2, 2): channel = first index, moving average per channel */
    qat_qscheme sw = {.bits = 8, .is_signed = 1, .symmetric = 1, .per_channel = 1, .axis = 0};
    CU_ASSERT_FATAL(qat_observer_init(&o, QAT_OBS_MOVING_AVG, &sw, 3, "w") == QAT_OK);
    int wshape[4] = {3, 1, 2, 2};
    CU_ASSERT_EQUAL(qat_observer_update(&o, act, 4, wshape), QAT_OK);
    float wmn[3] = {-2, -5, 0.25f}, wmx[3] = {3, 4, 7};
    for (int c = 0; c < 3; c++) CU_ASSERT(o.min_val[c] == wmn[c] && o.max_val[c] == wmx[c]);
    float act2[12];
    for (int i = 0; i < 12; i++) act2[i] = act[i] * 2.0f;
    CU_ASSERT_EQUAL(qat_observer_update(&o, act2, 4, wshape), QAT_OK);
    float sc[3];
    int32_t zp[3];
    CU_ASSERT_EQUAL(qat_observer_qparams(&o, &sw, sc, zp), QAT_OK);
    for (int c = 0; c < 3; c++) {
        float mn = wmn[c] + 0.01f * (2 * wmn[c] - wmn[c]), mx = wmx[c] + 0.01f * (2 * wmx[c] - wmx[c]);
        CU_ASSERT(o.min_val[c] == mn && o.max_val[c] == mx);
        float rs;
        int32_t rz;
        ref_qparams(&sw, mn, mx, &rs, &rz);
        CU_ASSERT(sc[c] == rs && zp[c] == rz);
    }
    qat_observer_free(&o);
    /* histogram observers are per-tensor only; per-tensor schemes have one channel */
    CU_ASSERT_EQUAL(qat_observer_init(&o, QAT_OBS_HISTOGRAM, &sw, 3, "h"), QAT_ERR_ARG);
    qat_qscheme pt = {.bits = 8};
    CU_ASSERT_EQUAL(qat_observer_init(&o, QAT_OBS_MINMAX, &pt, 2, "h"), QAT_ERR_ARG);
}

/* mean squared error of fake-quantizing x with (scale, zp) */
static double fq_mse(const float *x, int64_t n, const qat_qscheme *s, float scale, int32_t zp) {
    int32_t qmin, qmax;
    qat_qscheme_range(s, &qmin, &qmax);
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        uint8_t cd;
        double d = ref_fq(x[i], scale, zp, qmin, qmax, &cd) - (double)x[i];
        e += d * d;
    }
    return e / n;
}

static void test_histogram_mse(void) {
    const int64_t n = 1000000;
    float *x = malloc(n * sizeof(float));
    qat_rng r;
    qat_rng_seed(&r, 2024);
    for (int64_t i = 0; i < n; i++) x[i] = qat_rng_normal(&r);
    x[10] = 200.0f, x[20] = -150.0f; /* two huge outliers (200 sigma) */
    qat_qscheme schemes[2] = {{.bits = 8}, {.bits = 8, .is_signed = 1, .symmetric = 1}};
    for (int si = 0; si < 2; si++) {
        qat_qscheme *s = &schemes[si];
        qat_observer o;
        CU_ASSERT_FATAL(qat_observer_init(&o, QAT_OBS_HISTOGRAM, s, 1, "hist") == QAT_OK);
        /* two batches: the second widens the grid (outliers are in it) */
        int sh1[1] = {(int)(n / 2)}, sh2[1] = {(int)(n - n / 2)};
        CU_ASSERT_EQUAL(qat_observer_update(&o, x + n / 2, 1, sh2), QAT_OK);
        CU_ASSERT_EQUAL(qat_observer_update(&o, x, 1, sh1), QAT_OK);
        double total = 0;
        for (int k = 0; k < QAT_HIST_BINS; k++) total += o.hist[k];
        CU_ASSERT_EQUAL(total, (double)n);
        float lo, hi, sc, msc;
        int32_t zp, mzp;
        CU_ASSERT_EQUAL(qat_observer_range(&o, s, &lo, &hi), QAT_OK);
        CU_ASSERT(o.min_val[0] == -150.0f && o.max_val[0] == 200.0f);
        /* MSE-optimal clips the outliers (cost k (M - t)^2) but not down to the bulk: with N
         * = 1M the rounding noise N (2t/255)^2 / 12 balances them near t ~ M / 6. */
        int ok = hi < 200.0f && lo > -150.0f && (hi - lo) < 350.0f / 3 && hi > 3.0f && lo < -3.0f;
        if (!ok) printf("\n  hist MSE range [%g, %g]\n", lo, hi);
        CU_ASSERT(ok);
        CU_ASSERT_EQUAL(qat_observer_qparams(&o, s, &sc, &zp), QAT_OK);
        CU_ASSERT_EQUAL(qat_qparams_from_range(s, -150.0f, 200.0f, &msc, &mzp), QAT_OK);
        double e_hist = fq_mse(x, n, s, sc, zp), e_mm = fq_mse(x, n, s, msc, mzp);
        /* and a tight range around the bulk (what a greedy search picks) is worse */
        CU_ASSERT_EQUAL(qat_qparams_from_range(s, -4.4f, 4.4f, &msc, &mzp), QAT_OK);
        double e_tight = fq_mse(x, n, s, msc, mzp);
        if (!(e_hist < 0.5 * e_mm && e_hist < e_tight))
            printf("\n  MSE hist %g minmax %g tight %g\n", e_hist, e_mm, e_tight);
        CU_ASSERT(e_hist < 0.5 * e_mm && e_hist < e_tight);
        qat_observer_free(&o);
    }
    free(x);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static void test_histogram_percentile(void) {
    qat_qscheme s = {.bits = 8};
    /* a uniform grid on [0, 1): quantile p is p, within one bin */
    const int n = 100000;
    float *x = malloc(2 * n * sizeof(float));
    for (int i = 0; i < n; i++) x[i] = (float)i / n;
    qat_observer o;
    CU_ASSERT_FATAL(qat_observer_init(&o, QAT_OBS_HISTOGRAM, &s, 1, "pct") == QAT_OK);
    o.method = QAT_HIST_PERCENTILE;
    o.percentile = 99.9f;
    int sh[1] = {n};
    CU_ASSERT_EQUAL(qat_observer_update(&o, x, 1, sh), QAT_OK);
    float lo, hi;
    CU_ASSERT_EQUAL(qat_observer_range(&o, &s, &lo, &hi), QAT_OK);
    double w = o.hist_width;
    /* uniform density inside each bin: the interpolation is exact up to the data's 1/n grid */
    CU_ASSERT(w > 4e-4 && fabs(hi - 0.999) <= 2.0 / n);
    CU_ASSERT(fabs(lo - 0.001) <= 2.0 / n);
    /* a second batch on [-1, 3) grows the grid; compare with the exact quantile of all data */
    for (int i = 0; i < n; i++) x[n + i] = -1.0f + 4.0f * (float)((i * 7919) % n) / n;
    CU_ASSERT_EQUAL(qat_observer_update(&o, x + n, 1, sh), QAT_OK);
    double total = 0;
    for (int k = 0; k < QAT_HIST_BINS; k++) total += o.hist[k];
    CU_ASSERT_EQUAL(total, 2.0 * n);
    CU_ASSERT(o.hist_lo <= -1.0 && o.hist_lo + QAT_HIST_BINS * o.hist_width >= 3.0 - 4.0 / n);
    /* old bins nest inside new ones: every bin holds exactly the data inside its edges
     * (up to values on an edge, binned by the old grid's arithmetic) */
    double *expect = calloc(QAT_HIST_BINS, sizeof(double)), off = 0;
    for (int i = 0; i < 2 * n; i++) {
        double t = floor(((double)x[i] - o.hist_lo) / o.hist_width);
        expect[t < 0 ? 0 : (t >= QAT_HIST_BINS ? QAT_HIST_BINS - 1 : (int)t)] += 1;
    }
    for (int k = 0; k < QAT_HIST_BINS; k++) off += fabs(expect[k] - o.hist[k]);
    if (!(off <= 0.001 * n)) printf("\n  %g counts in the wrong bin after growth\n", off / 2);
    CU_ASSERT(off <= 0.001 * n);
    free(expect);
    CU_ASSERT_EQUAL(qat_observer_range(&o, &s, &lo, &hi), QAT_OK);
    qsort(x, 2 * n, sizeof(float), cmp_float);
    float qhi = x[(int)(0.999 * 2 * n)], qlo = x[(int)(0.001 * 2 * n)];
    w = o.hist_width;
    /* both quantiles lie where the merged density is uniform, so again within the data grid:
     * counts moved to the wrong bin by the growth would show as errors of a bin width */
    if (!(fabs(hi - qhi) <= 0.1 * w && fabs(lo - qlo) <= 0.1 * w))
        printf("\n  percentile [%g, %g] exact [%g, %g] bin %g\n", lo, hi, qlo, qhi, w);
    CU_ASSERT(fabs(hi - qhi) <= 0.1 * w && fabs(lo - qlo) <= 0.1 * w);
    free(x);
    qat_observer_free(&o);

    /* Gaussian: 99.99% is 3.719 sigma */
    const int m = 400000;
    float *g = malloc(m * sizeof(float));
    qat_rng r;
    qat_rng_seed(&r, 11);
    for (int i = 0; i < m; i++) g[i] = qat_rng_normal(&r);
    CU_ASSERT_FATAL(qat_observer_init(&o, QAT_OBS_HISTOGRAM, &s, 1, "pct") == QAT_OK);
    o.method = QAT_HIST_PERCENTILE;
    int shg[1] = {m};
    CU_ASSERT_EQUAL(qat_observer_update(&o, g, 1, shg), QAT_OK);
    CU_ASSERT_EQUAL(qat_observer_range(&o, &s, &lo, &hi), QAT_OK);
    CU_ASSERT(fabs(hi - 3.719) < 0.1 && fabs(lo + 3.719) < 0.1);
    /* all zeros: the zero range fallback gives the eps scale */
    qat_observer_reset(&o);
    memset(g, 0, 1000 * sizeof(float));
    int shz[1] = {1000};
    CU_ASSERT_EQUAL(qat_observer_update(&o, g, 1, shz), QAT_OK);
    float sc;
    int32_t zp;
    o.method = QAT_HIST_MSE;
    CU_ASSERT_EQUAL(qat_observer_qparams(&o, &s, &sc, &zp), QAT_OK);
    CU_ASSERT(sc == QAT_QPARAMS_EPS && zp == 0);
    /* histogram state round trip */
    size_t nb = qat_observer_state_bytes(&o);
    char *buf = malloc(nb);
    qat_observer_pack(&o, buf);
    qat_observer o2;
    CU_ASSERT_FATAL(qat_observer_init(&o2, QAT_OBS_HISTOGRAM, &s, 1, "pct2") == QAT_OK);
    CU_ASSERT_EQUAL(qat_observer_unpack(&o2, buf, nb), QAT_OK);
    CU_ASSERT(!memcmp(o2.hist, o.hist, QAT_HIST_BINS * sizeof(double)) && o2.zeros == 1000);
    free(buf);
    qat_observer_free(&o2);
    qat_observer_free(&o);
    free(g);
}

/* ---- flags ----------------------------------------------------------------------------------- */

static void test_fakequant_flags(void) {
    qat_qscheme s = {.bits = 8};
    int shape[2] = {4, 9};
    qat_tensor *x = test_leaf(2, shape, 1.0f, 8);
    float *copy = malloc(x->numel * sizeof(float));
    memcpy(copy, x->data, x->numel * sizeof(float));
    qat_fq fq;
    CU_ASSERT_FATAL(qat_fq_init(&fq, &s, QAT_OBS_MINMAX, 1, "flags") == QAT_OK);
    qat_ctx ctx;
    qat_ctx_init(&ctx, 1 << 14);
    /* fake-quant off, observer off: the input itself, nothing recorded, nothing observed */
    fq.fake_quant_enabled = 0, fq.observer_enabled = 0;
    qat_tensor *y = qat_fakequant(&ctx, x, &fq);
    CU_ASSERT_PTR_EQUAL(y, x);
    CU_ASSERT(!memcmp(x->data, copy, x->numel * sizeof(float)));
    CU_ASSERT_EQUAL(ctx.ntape, 0);
    CU_ASSERT_EQUAL(fq.obs.seen, 0);
    /* calibration: observe only; qparams follow when fake-quant is switched on */
    fq.observer_enabled = 1;
    CU_ASSERT_PTR_EQUAL(qat_fakequant(&ctx, x, &fq), x);
    CU_ASSERT_EQUAL(fq.obs.seen, 1);
    CU_ASSERT_EQUAL(fq.scale[0], 1.0f); /* not computed yet */
    fq.observer_enabled = 0, fq.fake_quant_enabled = 1;
    y = qat_fakequant(&ctx, x, &fq);
    CU_ASSERT(y != x && ctx.ntape == 1);
    float rs;
    int32_t rz;
    float mn = INFINITY, mx = -INFINITY;
    for (int64_t i = 0; i < x->numel; i++) mn = fminf(mn, x->data[i]), mx = fmaxf(mx, x->data[i]);
    ref_qparams(&s, mn, mx, &rs, &rz);
    CU_ASSERT(fq.scale[0] == rs && fq.zero_point[0] == rz);
    /* frozen observer: a wider batch changes nothing */
    fq.observer_enabled = 1, fq.obs.frozen = 1;
    for (int64_t i = 0; i < x->numel; i++) x->data[i] *= 3.0f;
    qat_fakequant(&ctx, x, &fq);
    CU_ASSERT(fq.scale[0] == rs && fq.zero_point[0] == rz && fq.obs.seen == 1);
    /* NaN batch with the observer on: skipped, qparams kept */
    fq.obs.frozen = 0;
    x->data[3] = NAN;
    y = qat_fakequant(&ctx, x, &fq);
    CU_ASSERT(fq.skipped == 1 && fq.scale[0] == rs && fq.obs.seen == 1);
    CU_ASSERT_EQUAL(y->data[3], (float)(0 - rz) * rs); /* NaN -> qmin */
    /* no grad: no codes saved */
    ctx.grad_enabled = 0;
    memcpy(x->data, copy, x->numel * sizeof(float));
    y = qat_fakequant(&ctx, x, &fq);
    CU_ASSERT(y->saved == NULL && y->requires_grad == 0);
    /* state round trip */
    size_t nb = qat_fq_state_bytes(&fq);
    char *buf = malloc(nb);
    qat_fq_pack(&fq, buf);
    qat_fq f2;
    CU_ASSERT_FATAL(qat_fq_init(&f2, &s, QAT_OBS_MINMAX, 1, "f2") == QAT_OK);
    CU_ASSERT_EQUAL(qat_fq_unpack(&f2, buf, nb), QAT_OK);
    CU_ASSERT(f2.scale[0] == fq.scale[0] && f2.zero_point[0] == fq.zero_point[0] &&
              f2.obs.seen == fq.obs.seen && f2.skipped == 1 && f2.obs.max_val[0] == fq.obs.max_val[0]);
    int32_t badzp = 300;
    memcpy(buf + 32 + sizeof(float), &badzp, sizeof badzp);
    f2.zero_point[0] = 5;
    CU_ASSERT_EQUAL(qat_fq_unpack(&f2, buf, nb), QAT_ERR_FORMAT);
    CU_ASSERT_EQUAL(f2.zero_point[0], 5);
    float zero = 0;
    CU_ASSERT_EQUAL(qat_fq_set_qparams(&f2, &zero, &rz), QAT_ERR_NUMERIC);
    free(buf);
    qat_fq_free(&f2);
    qat_ctx_free(&ctx);
    qat_fq_free(&fq);
    free(copy);
    test_leaf_free(x);
}

/* The AVX-512 variants of the QAT batchnorm passes (input scale, output fake-quant fused
 * without storing y, straight-through masks in the backward) against the scalar reference:
 * the same op under QAT_ISA_SCALAR and QAT_ISA_AVX512, bit for bit in outputs, gradients of
 * x, gamma and beta, running statistics, observer range, qparams and skip count, over two
 * steps (the moving average moves and the second range clips), in training (y's range from
 * the statistics pass) and eval (a range pass), on channel counts that leave
 * a partial 16-lane block, a row count that is no multiple of anything and one large enough
 * for the parallel passes. */
typedef struct {
    float rm[64], rv[64], isc[64];
    qat_bn_state st;
    qat_bn_act act;
    int scaled;
    qat_fq fq;
    int with_fq;
} bnq_fixture;

static void bnq_init(bnq_fixture *f, int C, qat_bn_act act, int scaled, int with_fq,
                     const qat_qconfig *cfg) {
    qat_rng r;
    qat_rng_seed(&r, 95);
    for (int c = 0; c < C; c++) {
        f->rm[c] = 0.3f * qat_rng_normal(&r);
        f->rv[c] = 0.5f + (float)qat_rng_below(&r, 100) / 50.0f;
        f->isc[c] = (c % 3 == 0 ? -1.0f : 1.0f) * (0.05f + (float)qat_rng_below(&r, 1000) / 100.0f);
    }
    f->st = (qat_bn_state){f->rm, f->rv, 0.1f, 1e-5f, 1};
    f->act = act, f->scaled = scaled, f->with_fq = with_fq;
    CU_ASSERT_FATAL(qat_fq_init(&f->fq, &cfg->act, cfg->act_obs_qat, 1, "bnq") == QAT_OK);
}

static qat_tensor *build_bnq(qat_ctx *ctx, qat_tensor **in, void *user) {
    bnq_fixture *f = user;
    const float *isc = f->scaled ? f->isc : NULL;
    if (f->with_fq) return qat_batchnorm2d_act_fq(ctx, in[0], isc, in[1], in[2], &f->st, f->act, &f->fq);
    return qat_batchnorm2d_scaled_act(ctx, in[0], isc, in[1], in[2], &f->st, f->act);
}

/* Runs the fixture under `isa` for two steps; the outputs and grads of the last step. */
static void bnq_run(bnq_fixture *f, qat_isa isa, int training, qat_tensor **in, const float *w,
                    float *y, float *g) {
    qat_set_isa(isa);
    for (int step = 0; step < 2; step++) test_run_backward(build_bnq, 3, in, f, training, w, y, g);
}

static int bnq_same(const bnq_fixture *a, const bnq_fixture *b, int C) {
    return !memcmp(a->rm, b->rm, (size_t)C * sizeof(float)) &&
           !memcmp(a->rv, b->rv, (size_t)C * sizeof(float)) &&
           !memcmp(a->fq.obs.min_val, b->fq.obs.min_val, sizeof(float)) &&
           !memcmp(a->fq.obs.max_val, b->fq.obs.max_val, sizeof(float)) &&
           !memcmp(a->fq.scale, b->fq.scale, sizeof(float)) &&
           a->fq.zero_point[0] == b->fq.zero_point[0] && a->fq.obs.seen == b->fq.obs.seen &&
           a->fq.skipped == b->fq.skipped;
}

/* One shape's inputs for the AVX-512-vs-scalar BN tests: x (N(0, 2^2)), gamma, beta, the
 * output-gradient weights w, and an output and gradient buffer per ISA; seeds from base. */
typedef struct {
    qat_tensor *in[3];
    int C;
    int64_t n, ng;
    float *w, *y[2], *g[2];
} bn_case;

static void bn_case_init(bn_case *k, const int *shape, int base, int si) {
    const int C = shape[3], cs[1] = {C};
    k->C = C;
    k->in[0] = test_leaf(4, shape, 2.0f, (uint64_t)(base + 1 + si));
    k->in[1] = test_leaf(1, cs, 1.0f, (uint64_t)(base + 2));
    k->in[2] = test_leaf(1, cs, 1.0f, (uint64_t)(base + 3));
    k->n = k->in[0]->numel, k->ng = k->n + 2 * C;
    k->w = malloc((size_t)k->n * sizeof(float));
    for (int i = 0; i < 2; i++) {
        k->y[i] = malloc((size_t)k->n * sizeof(float));
        k->g[i] = malloc((size_t)k->ng * sizeof(float));
    }
    qat_rng r;
    qat_rng_seed(&r, (uint64_t)(base + 4));
    for (int64_t i = 0; i < k->n; i++) k->w[i] = qat_rng_normal(&r);
}

static void bn_case_free(bn_case *k) {
    for (int i = 0; i < 3; i++) test_leaf_free(k->in[i]);
    for (int i = 0; i < 2; i++) free(k->y[i]), free(k->g[i]);
    free(k->w);
}

static void test_bn_qat_simd(void) {
    if (qat_cpu_isa_hw() < QAT_ISA_AVX512) return; /* no variant to compare on this CPU */
    qat_isa saved = qat_cpu_isa();
    qat_qconfig cfg;
    CU_ASSERT_FATAL(qat_qconfig_get("x86", &cfg) == QAT_OK);
    /* {N, H, W, C}: odd rows and partial lane blocks; the last is above the parallel threshold */
    static const int shapes[][4] = {{3, 5, 7, 1}, {3, 5, 7, 3}, {3, 5, 7, 17}, {1, 3, 3, 24},
                                    {3, 5, 7, 40}, {2, 9, 11, 64}, {4, 16, 16, 40}};
    int cases = 0, bad = 0, ties = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        bn_case bc;
        bn_case_init(&bc, shapes[si], 300, (int)si);
        const int C = bc.C;
        const int64_t n = bc.n, ng = bc.ng;
        qat_tensor **in = bc.in;
        float *w = bc.w, **y = bc.y, **g = bc.g;
        for (int c = 0; c < C; c++) { /* ReLU6 outputs on both sides of 6; the widest */
            in[2]->data[c] += 1.0f;  /* channels (the tensor's range) scaled by either sign */
            if (c % 4 == 0) in[1]->data[c] = 4.0f;
            if (c % 4 == 1 || C == 1) in[1]->data[c] = -5.0f;
        }
        /* tie: gamma 0 and beta -0.0 make an unclamped output of -0.0 and +0.0 only, the batch
         * the fused range leaves to qat_minmax */
        for (int tie = 0; tie <= 1; tie++)
            for (int act = QAT_BN_ACT_NONE; act <= QAT_BN_ACT_RELU6; act++)
                for (int v = 1; v < 8; v++) { /* bit 0: scaled, 1: output fake-quant, 2: eval */
                    if (!(v & 3) || (tie && (act != QAT_BN_ACT_NONE || !(v & 2)))) continue;
                    const int training = !(v & 4);
                    float gsave[64], bsave[64];
                    memcpy(gsave, in[1]->data, (size_t)C * sizeof(float));
                    memcpy(bsave, in[2]->data, (size_t)C * sizeof(float));
                    if (tie)
                        for (int c = 0; c < C; c++) in[1]->data[c] = 0.0f, in[2]->data[c] = -0.0f;
                    bnq_fixture f[2];
                    for (int k = 0; k < 2; k++) bnq_init(&f[k], C, (qat_bn_act)act, v & 1, (v >> 1) & 1, &cfg);
                    bnq_run(&f[0], QAT_ISA_SCALAR, training, in, w, y[0], g[0]);
                    bnq_run(&f[1], QAT_ISA_AVX512, training, in, w, y[1], g[1]);
                    int ok = !memcmp(y[0], y[1], (size_t)n * sizeof(float)) &&
                             !memcmp(g[0], g[1], (size_t)ng * sizeof(float)) && bnq_same(&f[0], &f[1], C);
                    if (!ok) {
                        printf("\n  QAT BN shape %dx%dx%dx%d act %d scaled %d fq %d training %d tie %d differs\n",
                               shapes[si][0], shapes[si][1], shapes[si][2], C, act, v & 1, (v >> 1) & 1,
                               training, tie);
                        test_compare("bn y", y[1], y[0], n, 0);
                        test_compare("bn grads", g[1], g[0], ng, 0);
                        bad++;
                    }
                    ties += tie && training && f[0].fq.obs.seen == 2;
                    cases++;
                    for (int k = 0; k < 2; k++) qat_fq_free(&f[k].fq);
                    memcpy(in[1]->data, gsave, (size_t)C * sizeof(float));
                    memcpy(in[2]->data, bsave, (size_t)C * sizeof(float));
                }
        bn_case_free(&bc);
    }
    qat_set_isa(saved);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(cases > 0);
    CU_ASSERT(ties > 0);
}

/* The FP32 batchnorm passes (no input scale, no fake-quant: qat_batchnorm2d_act) run the same
 * AVX-512 loops with every QAT flag off: bit for bit the scalar reference under
 * QAT_ISA_SCALAR vs QAT_ISA_AVX512 in outputs, gradients of x, gamma and beta and running
 * statistics over two steps, with ReLU, ReLU6 and no activation, training and eval, on channel
 * counts with partial 16-lane blocks and shapes above the parallel threshold (64x7x7x17: row
 * blocks of the flat element-wise passes that start mid-way through the repeated channel
 * vectors). BN of the leaf x adds into its existing grad; BN of x + x stores a fresh one. */
typedef struct {
    bnq_fixture bn;
    int inner;
} bnf_fixture;

static qat_tensor *build_bnf(qat_ctx *ctx, qat_tensor **in, void *user) {
    bnf_fixture *f = user;
    qat_tensor *x = f->inner ? qat_add(ctx, in[0], in[0]) : in[0];
    return qat_batchnorm2d_act(ctx, x, in[1], in[2], &f->bn.st, f->bn.act);
}

static void bnf_run(bnf_fixture *f, qat_isa isa, int training, qat_tensor **in, const float *w,
                    float *y, float *g) {
    qat_set_isa(isa);
    for (int step = 0; step < 2; step++) test_run_backward(build_bnf, 3, in, f, training, w, y, g);
}

static void test_bn_fp32_simd(void) {
    if (qat_cpu_isa_hw() < QAT_ISA_AVX512) return; /* no variant to compare on this CPU */
    qat_isa saved = qat_cpu_isa();
    qat_qconfig cfg;
    CU_ASSERT_FATAL(qat_qconfig_get("x86", &cfg) == QAT_OK);
    static const int shapes[][4] = {{3, 5, 7, 1},  {3, 5, 7, 3},    {3, 5, 7, 17},
                                    {1, 3, 3, 24}, {3, 5, 7, 40},   {2, 9, 11, 64},
                                    {4, 16, 16, 40}, {8, 15, 17, 64}, {64, 7, 7, 17}};
    int cases = 0, bad = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        bn_case bc;
        bn_case_init(&bc, shapes[si], 400, (int)si);
        const int C = bc.C;
        const int64_t n = bc.n, ng = bc.ng;
        qat_tensor **in = bc.in;
        float *w = bc.w, **y = bc.y, **g = bc.g;
        for (int c = 0; c < C; c++) { /* ReLU6 outputs on both sides of 6, gammas of both signs */
            in[2]->data[c] += 1.0f;
            if (c % 4 == 0) in[1]->data[c] = 4.0f;
            if (c % 4 == 1 || C == 1) in[1]->data[c] = -5.0f;
        }
        for (int act = QAT_BN_ACT_NONE; act <= QAT_BN_ACT_RELU6; act++)
            for (int v = 0; v < 4; v++) { /* bit 0: eval, 1: BN of the intermediate x + x */
                const int training = !(v & 1);
                bnf_fixture f[2];
                for (int k = 0; k < 2; k++) {
                    bnq_init(&f[k].bn, C, (qat_bn_act)act, 0, 0, &cfg);
                    f[k].inner = (v >> 1) & 1;
                }
                bnf_run(&f[0], QAT_ISA_SCALAR, training, in, w, y[0], g[0]);
                bnf_run(&f[1], QAT_ISA_AVX512, training, in, w, y[1], g[1]);
                int ok = !memcmp(y[0], y[1], (size_t)n * sizeof(float)) &&
                         !memcmp(g[0], g[1], (size_t)ng * sizeof(float)) &&
                         !memcmp(f[0].bn.rm, f[1].bn.rm, (size_t)C * sizeof(float)) &&
                         !memcmp(f[0].bn.rv, f[1].bn.rv, (size_t)C * sizeof(float));
                if (!ok) {
                    printf("\n  FP32 BN shape %dx%dx%dx%d act %d training %d inner %d differs\n",
                           shapes[si][0], shapes[si][1], shapes[si][2], C, act, training, (v >> 1) & 1);
                    test_compare("bn y", y[1], y[0], n, 0);
                    test_compare("bn grads", g[1], g[0], ng, 0);
                    bad++;
                }
                cases++;
                for (int k = 0; k < 2; k++) qat_fq_free(&f[k].bn.fq);
            }
        bn_case_free(&bc);
    }
    qat_set_isa(saved);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(cases, 9 * 3 * 4);
}

void register_fakequant_tests(void) {
    test_add_suite("fakequant",
                   "qscheme ranges", test_qscheme_ranges,
                   "qparams by hand, fallbacks and errors", test_qparams_by_hand,
                   "fake-quant vs reference, all schemes and ISAs", test_fakequant_all_schemes,
                   "fake-quant kernel edge values, every ISA", test_fq_kernel_edge_values,
                   "min/max kernel, every ISA", test_minmax_kernel,
                   "STE gradient kernel, every ISA", test_ste_kernel,
                   "STE gradient and clipping mask", test_ste_gradient,
                   "LSQ / LSQ+ gradients vs finite differences", test_lsq_gradients,
                   "LSQ init, clamp, qparams, disabled", test_lsq_helpers,
                   "LSQ gradients independent of threads", test_lsq_threads,
                   "observer minmax, moving average, flags, state", test_observer_minmax_and_avg,
                   "observer per channel NHWC / OHWI", test_observer_per_channel,
                   "histogram MSE clips outliers", test_histogram_mse,
                   "histogram percentile and growth", test_histogram_percentile,
                   "fake-quant flags and state", test_fakequant_flags,
                   "QAT batchnorm passes, AVX-512 vs scalar", test_bn_qat_simd,
                   "FP32 batchnorm(+ReLU/ReLU6) passes, AVX-512 vs scalar", test_bn_fp32_simd,
                   NULL);
}
