/* INT8 kernels: argument checks, weight packing, variant dispatch, threading, and the scalar
 * reference of every kernel (QAT_I8_REF, also the fallback on CPUs without AVX2). */
#include "int8.h"
#include "base.h" /* QAT_ASSERT */
#include <omp.h>
#include <string.h>

#define FILE_TAG "kernels/int8_ref.c"

/* ---- variant selection --------------------------------------------------------------------- */

typedef struct {
    qat_i8_gemm_fn gemm;
    qat_i8_dw_fn dw;
    qat_i8_add_fn add;
    qat_i8_pool_fn pool;
} i8_kernels;

/* VNNI helps the GEMM and, on zmm, the depthwise conv; the other kernels of a VNNI variant are
 * those of its register width. */
static const i8_kernels i8_table[QAT_I8_PATH_COUNT] = {
    [QAT_I8_REF] = {qat_i8_gemm_rows_ref, qat_i8_dw_rows_ref, qat_i8_add_range_ref,
                    qat_i8_pool_images_ref},
    [QAT_I8_AVX2] = {qat_i8_gemm_rows_avx2, qat_i8_dw_rows_avx2, qat_i8_add_range_avx2,
                     qat_i8_pool_images_avx2},
    [QAT_I8_AVX512] = {qat_i8_gemm_rows_avx512, qat_i8_dw_rows_avx512, qat_i8_add_range_avx512,
                       qat_i8_pool_images_avx512},
    [QAT_I8_AVXVNNI] = {qat_i8_gemm_rows_avxvnni, qat_i8_dw_rows_avx2, qat_i8_add_range_avx2,
                        qat_i8_pool_images_avx2},
    [QAT_I8_VNNI512] = {qat_i8_gemm_rows_vnni512, qat_i8_dw_rows_vnni512, qat_i8_add_range_avx512,
                        qat_i8_pool_images_avx512},
};

static const char *const i8_path_names[QAT_I8_PATH_COUNT] = {
    "auto", "ref", "avx2", "avx512", "avxvnni", "vnni512",
};
_Static_assert(sizeof i8_path_names / sizeof i8_path_names[0] == QAT_I8_PATH_COUNT, "path names");

static qat_i8_path i8_forced = QAT_I8_AUTO;

const char *qat_i8_path_name(qat_i8_path p) {
    return (unsigned)p < QAT_I8_PATH_COUNT ? i8_path_names[p] : "unknown";
}

int qat_i8_path_available(qat_i8_path p) {
    qat_isa isa = qat_cpu_isa();
    switch (p) {
    case QAT_I8_AUTO:
    case QAT_I8_REF: return 1;
    case QAT_I8_AVX2: return isa >= QAT_ISA_AVX2;
    case QAT_I8_AVX512: return isa >= QAT_ISA_AVX512;
    /* AVX-VNNI is a VEX (ymm) extension: allowed under an AVX2 cap. */
    case QAT_I8_AVXVNNI: return isa >= QAT_ISA_AVX2 && qat_cpu_has_avx_vnni();
    case QAT_I8_VNNI512: return isa >= QAT_ISA_AVX512 && qat_cpu_has_avx512_vnni();
    default: return 0;
    }
}

qat_i8_path qat_i8_set_path(qat_i8_path p) {
    qat_i8_path old = i8_forced;
    if ((unsigned)p < QAT_I8_PATH_COUNT) i8_forced = p;
    return old;
}

qat_i8_path qat_i8_active_path(void) {
    if (i8_forced != QAT_I8_AUTO && qat_i8_path_available(i8_forced)) return i8_forced;
    static const qat_i8_path order[] = {QAT_I8_VNNI512, QAT_I8_AVXVNNI, QAT_I8_AVX512,
                                        QAT_I8_AVX2};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (qat_i8_path_available(order[i])) return order[i];
    return QAT_I8_REF;
}

static const i8_kernels *i8_active(void) { return &i8_table[qat_i8_active_path()]; }

/* Threads for `work` multiply-adds split into `units` independent pieces: one below
 * QAT_I8_PAR_MIN_WORK (see kernels/int8.h). */
static int i8_threads(int64_t work, int64_t units) {
    int nt = qat_kernel_threads();
    if (nt < 1) nt = 1;
    if (work < QAT_I8_PAR_MIN_WORK) nt = 1;
    if (nt > units) nt = (int)(units > 0 ? units : 1);
    return nt;
}

static size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

static int valid_zp(int32_t z) { return z >= 0 && z <= 255; }

static qat_status check_requant(const qat_i8_requant *rq, const char *what) {
    if (!rq || !rq->mult) return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: requant multipliers missing", what);
    if (!valid_zp(rq->zy) || rq->lo < 0 || rq->hi > 255 || rq->lo > rq->hi)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: output zero point %d / clamp [%d, %d] outside u8",
                        what, rq->zy, rq->lo, rq->hi);
    return QAT_OK;
}

/* ---- GEMM packing ---------------------------------------------------------------------------- */

#define I8_MAX_K (1 << 24)
#define I8_MAX_N (1 << 20)

/* Layout of the buffer: bias_eff (Np) s32, colsum (Np) s32, then the weights. The int32 arrays
 * come first so a 4-byte aligned buffer keeps them aligned; weights start at a 64-byte multiple
 * offset when Np is a multiple of 16 (always), so a 64-byte aligned buffer aligns them too. */
size_t qat_i8_gemm_packed_size(int N, int K) {
    if (N < 1 || K < 1 || N > I8_MAX_N || K > I8_MAX_K) return 0;
    size_t np = round_up((size_t)N, 16), kp = round_up((size_t)K, 4);
    return 2 * np * sizeof(int32_t) + np * kp;
}

qat_status qat_i8_gemm_pack(qat_i8_gemm_weights *pw, void *buf, size_t buf_size, const int8_t *w,
                            const int32_t *bias, int N, int K, int32_t zx) {
    size_t need = qat_i8_gemm_packed_size(N, K);
    if (!pw || !buf || !w) return qat_fail(QAT_ERR_ARG, FILE_TAG ": gemm_pack: NULL argument");
    if (!need) return qat_fail(QAT_ERR_ARG, FILE_TAG ": gemm_pack: bad sizes N=%d K=%d", N, K);
    if (buf_size < need)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": gemm_pack: buffer of %zu bytes, need %zu", buf_size, need);
    if ((uintptr_t)buf % 4)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": gemm_pack: buffer not 4-byte aligned");
    if (!valid_zp(zx)) return qat_fail(QAT_ERR_ARG, FILE_TAG ": gemm_pack: zero point %d outside u8", zx);
    int np = (int)round_up((size_t)N, 16), kp = (int)round_up((size_t)K, 4);
    /* Reject weights whose accumulator could overflow int32 on some input, so that every
     * variant's wrapping int32 sums equal the exact integer. */
    for (int n = 0; n < N; n++) {
        int64_t mag = 0;
        for (int k = 0; k < K; k++) mag += w[(size_t)n * K + k] < 0 ? -w[(size_t)n * K + k] : w[(size_t)n * K + k];
        int64_t b = bias ? bias[n] : 0;
        if ((b < 0 ? -b : b) + 255 * mag > INT32_MAX)
            return qat_fail(QAT_ERR_NUMERIC,
                            FILE_TAG ": gemm_pack: channel %d could overflow the int32 accumulator "
                                     "(|bias| + 255*sum|w| > 2^31-1)", n);
    }
    pw->N = N;
    pw->K = K;
    pw->Np = np;
    pw->Kp = kp;
    pw->zx = zx;
    pw->bias_eff = (int32_t *)buf;
    pw->colsum = pw->bias_eff + np;
    pw->w = (int8_t *)(pw->colsum + np);
    memset(pw->w, 0, (size_t)np * kp);
    for (int n = 0; n < np; n++) {
        int64_t cs = 0;
        if (n < N)
            for (int k = 0; k < K; k++) {
                int8_t v = w[(size_t)n * K + k];
                cs += v;
                pw->w[((size_t)(n / 16) * (kp / 4) + k / 4) * 64 + (n % 16) * 4 + k % 4] = v;
            }
        pw->colsum[n] = (int32_t)cs;
        pw->bias_eff[n] = (int32_t)((n < N && bias ? bias[n] : 0) - (int64_t)zx * cs);
    }
    return QAT_OK;
}

/* ---- GEMM: reference and driver ------------------------------------------------------------ */

static inline int32_t gemm_ref_acc(const qat_i8_gemm_weights *w, const uint8_t *xr, int n) {
    const int8_t *wb = w->w + (size_t)(n / 16) * (w->Kp / 4) * 64 + (n % 16) * 4;
    int32_t acc = w->bias_eff[n]; /* no overflow in any order: see qat_i8_gemm_pack */
    int k = 0;
    for (; k + 4 <= w->K; k += 4, wb += 64) /* one packed group: 4 consecutive K of channel n */
        acc += xr[k] * wb[0] + xr[k + 1] * wb[1] + xr[k + 2] * wb[2] + xr[k + 3] * wb[3];
    for (; k < w->K; k++) acc += xr[k] * wb[k % 4];
    return acc;
}

void qat_i8_gemm_rows_ref(const qat_i8_gemm_job *j, int m0, int m1) {
    const qat_i8_gemm_weights *w = j->w;
    for (int m = m0; m < m1; m++) {
        const uint8_t *xr = j->x + (size_t)m * j->ldx;
        for (int n = 0; n < w->N; n++) {
            int32_t acc = gemm_ref_acc(w, xr, n);
            switch (j->kind) {
            case QAT_I8_OUT_U8:
                ((uint8_t *)j->y)[(size_t)m * j->ldy + n] =
                    (uint8_t)qat_requantize(acc, j->mult[n], j->zy, j->lo, j->hi);
                break;
            case QAT_I8_OUT_S32: ((int32_t *)j->y)[(size_t)m * j->ldy + n] = acc; break;
            case QAT_I8_OUT_F32:
                ((float *)j->y)[(size_t)m * j->ldy + n] = qat_i8_dequant_f32(acc, j->mult[n], j->fbias, n);
                break;
            }
        }
    }
}

/* Row block given to one call of a variant: a multiple of every microkernel height (4, 6, 8, 12,
 * 16) and small enough (48 x K bytes) that the rows stay in L1 while all N tiles sweep them. */
#define I8_GEMM_MB 48

static void gemm_run(const qat_i8_gemm_job *j, int M) {
    qat_i8_gemm_fn fn = i8_active()->gemm;
    int nblocks = (M + I8_GEMM_MB - 1) / I8_GEMM_MB;
    int nt = i8_threads((int64_t)M * j->w->Np * j->w->Kp, nblocks);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int b = 0; b < nblocks; b++) {
        int m0 = b * I8_GEMM_MB, m1 = m0 + I8_GEMM_MB < M ? m0 + I8_GEMM_MB : M;
        fn(j, m0, m1);
    }
}

static qat_status check_gemm(const void *y, int64_t ldy, const uint8_t *x, int64_t ldx, int M,
                             const qat_i8_gemm_weights *w, const char *what) {
    if (!w || !w->w || !w->bias_eff) return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: weights not packed", what);
    if (M < 0) return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: M = %d", what, M);
    if (M > 0 && (!y || !x)) return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: NULL x or y", what);
    if (ldx < w->K || ldy < w->N)
        return qat_fail(QAT_ERR_SHAPE, FILE_TAG ": %s: ldx %lld < K %d or ldy %lld < N %d", what,
                        (long long)ldx, w->K, (long long)ldy, w->N);
    return QAT_OK;
}

qat_status qat_i8_gemm_u8(uint8_t *y, int64_t ldy, const uint8_t *x, int64_t ldx, int M,
                          const qat_i8_gemm_weights *w, const qat_i8_requant *rq) {
    qat_status s = check_gemm(y, ldy, x, ldx, M, w, "gemm_u8");
    if (s) return s;
    if ((s = check_requant(rq, "gemm_u8"))) return s;
    qat_i8_gemm_job j = {.x = x, .ldx = ldx, .w = w, .kind = QAT_I8_OUT_U8, .y = y, .ldy = ldy,
                         .mult = rq->mult, .zy = rq->zy, .lo = rq->lo, .hi = rq->hi};
    if (M) gemm_run(&j, M);
    return QAT_OK;
}

qat_status qat_i8_gemm_s32(int32_t *y, int64_t ldy, const uint8_t *x, int64_t ldx, int M,
                           const qat_i8_gemm_weights *w) {
    qat_status s = check_gemm(y, ldy, x, ldx, M, w, "gemm_s32");
    if (s) return s;
    qat_i8_gemm_job j = {.x = x, .ldx = ldx, .w = w, .kind = QAT_I8_OUT_S32, .y = y, .ldy = ldy};
    if (M) gemm_run(&j, M);
    return QAT_OK;
}

qat_status qat_i8_gemm_f32(float *y, int64_t ldy, const uint8_t *x, int64_t ldx, int M,
                           const qat_i8_gemm_weights *w, const float *deq_scale,
                           const float *fbias) {
    qat_status s = check_gemm(y, ldy, x, ldx, M, w, "gemm_f32");
    if (s) return s;
    if (!deq_scale) return qat_fail(QAT_ERR_ARG, FILE_TAG ": gemm_f32: deq_scale missing");
    qat_i8_gemm_job j = {.x = x, .ldx = ldx, .w = w, .kind = QAT_I8_OUT_F32, .y = y, .ldy = ldy,
                         .mult = deq_scale, .fbias = fbias};
    if (M) gemm_run(&j, M);
    return QAT_OK;
}

/* ---- dense conv: im2col + GEMM -------------------------------------------------------------- */

static qat_status check_conv_geometry(const qat_i8_dims *in, const qat_i8_conv_params *p,
                                      int *oh, int *ow, const char *what) {
    if (!in || !p) return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: NULL dims or params", what);
    if (in->n < 0 || in->h < 1 || in->w < 1 || in->c < 1 || p->kh < 1 || p->kw < 1 ||
        p->stride < 1 || p->pad < 0)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: bad geometry in %dx%dx%dx%d k %dx%d s %d p %d",
                        what, in->n, in->h, in->w, in->c, p->kh, p->kw, p->stride, p->pad);
    int hh = in->h + 2 * p->pad - p->kh, ww = in->w + 2 * p->pad - p->kw;
    if (hh < 0 || ww < 0)
        return qat_fail(QAT_ERR_SHAPE, FILE_TAG ": %s: kernel %dx%d larger than padded input %dx%d",
                        what, p->kh, p->kw, in->h + 2 * p->pad, in->w + 2 * p->pad);
    *oh = hh / p->stride + 1;
    *ow = ww / p->stride + 1;
    return QAT_OK;
}

qat_status qat_i8_conv_out_dims(const qat_i8_dims *in, const qat_i8_conv_params *p, int cout,
                                qat_i8_dims *out) {
    int oh, ow;
    qat_status s = check_conv_geometry(in, p, &oh, &ow, "conv_out_dims");
    if (s) return s;
    if (!out || cout < 1) return qat_fail(QAT_ERR_ARG, FILE_TAG ": conv_out_dims: bad cout %d", cout);
    *out = (qat_i8_dims){in->n, oh, ow, cout};
    return QAT_OK;
}

static int conv_is_pointwise(const qat_i8_conv_params *p) {
    return p->kh == 1 && p->kw == 1 && p->stride == 1 && p->pad == 0;
}

/* One image unfolded: OH*OW rows of Kp bytes (K = KH*KW*Cin in OHWI order, rows padded to 4). */
static size_t conv_image_bytes(const qat_i8_dims *in, const qat_i8_conv_params *p, int oh, int ow) {
    return (size_t)oh * ow * round_up((size_t)p->kh * p->kw * in->c, 4);
}

size_t qat_i8_conv_get_buffer_size(const qat_i8_dims *in, const qat_i8_conv_params *p) {
    int oh, ow;
    if (check_conv_geometry(in, p, &oh, &ow, "conv_get_buffer_size") || conv_is_pointwise(p)) return 0;
    int slots = qat_kernel_threads();
    if (slots < 1) slots = 1;
    if (in->n > 0 && slots > in->n) slots = in->n;
    return (size_t)slots * conv_image_bytes(in, p, oh, ow);
}

/* Copies / fills of the few bytes an unfolded tap row holds (kw*Cin: 3 for the stem). Calls to
 * memcpy for 1-3 bytes cost more than the GEMM after them, so small sizes use fixed-size
 * (inlined) overlapping moves. */
static inline void copy_bytes(uint8_t *d, const uint8_t *s, size_t n) {
    if (n > 64) {
        memcpy(d, s, n);
    } else if (n >= 16) {
        for (size_t i = 0; i + 16 <= n; i += 16) memcpy(d + i, s + i, 16);
        memcpy(d + n - 16, s + n - 16, 16);
    } else if (n >= 8) {
        memcpy(d, s, 8);
        memcpy(d + n - 8, s + n - 8, 8);
    } else if (n >= 4) {
        memcpy(d, s, 4);
        memcpy(d + n - 4, s + n - 4, 4);
    } else if (n) {
        d[0] = s[0];
        d[n / 2] = s[n / 2];
        d[n - 1] = s[n - 1];
    }
}

static inline void fill_bytes(uint8_t *d, uint8_t v, size_t n) {
    if (n > 16) {
        memset(d, v, n);
    } else if (n >= 8) {
        memset(d, v, 8);
        memset(d + n - 8, v, 8);
    } else if (n >= 4) {
        memset(d, v, 4);
        memset(d + n - 4, v, 4);
    } else if (n) {
        d[0] = v;
        d[n / 2] = v;
        d[n - 1] = v;
    }
}

/* Unfolds image `x` (H, W, C) into rows (OH*OW, ldb). Taps outside the image hold zx: the packed
 * bias subtracts zx * colsum for every tap, so a padded tap must read zx to contribute 0. In NHWC
 * the kw taps of one kernel row are kw*C contiguous bytes, copied at once when all are inside. */
static void im2col_u8(uint8_t *b, int64_t ldb, const uint8_t *x, const qat_i8_dims *in,
                      const qat_i8_conv_params *p, int oh, int ow, int zx, int nt) {
    const int C = in->c, K = p->kh * p->kw * C;
    const size_t rowb = (size_t)p->kw * C;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int r = 0; r < oh; r++) {
        for (int c0 = 0; c0 < ow; c0++) {
            uint8_t *row = b + ((size_t)r * ow + c0) * ldb;
            const int iw0 = c0 * p->stride - p->pad;
            const int inside_w = iw0 >= 0 && iw0 + p->kw <= in->w;
            for (int i = 0; i < p->kh; i++) {
                int ih = r * p->stride - p->pad + i;
                uint8_t *dst = row + (size_t)i * rowb;
                if (ih < 0 || ih >= in->h) {
                    fill_bytes(dst, (uint8_t)zx, rowb);
                } else if (inside_w) {
                    copy_bytes(dst, x + ((size_t)ih * in->w + iw0) * C, rowb);
                } else {
                    for (int jj = 0; jj < p->kw; jj++) {
                        int iw = iw0 + jj;
                        if (iw < 0 || iw >= in->w)
                            fill_bytes(dst + (size_t)jj * C, (uint8_t)zx, (size_t)C);
                        else
                            copy_bytes(dst + (size_t)jj * C, x + ((size_t)ih * in->w + iw) * C, (size_t)C);
                    }
                }
            }
            if (ldb > K) fill_bytes(row + K, (uint8_t)zx, (size_t)(ldb - K));
        }
    }
}

qat_status qat_i8_conv(uint8_t *y, const uint8_t *x, const qat_i8_dims *in,
                       const qat_i8_conv_params *p, const qat_i8_gemm_weights *w,
                       const qat_i8_requant *rq, void *buf, size_t buf_size) {
    int oh, ow;
    qat_status s = check_conv_geometry(in, p, &oh, &ow, "conv");
    if (s) return s;
    if (!w || !w->w) return qat_fail(QAT_ERR_ARG, FILE_TAG ": conv: weights not packed");
    if ((s = check_requant(rq, "conv"))) return s;
    int64_t K = (int64_t)p->kh * p->kw * in->c;
    if (w->K != K)
        return qat_fail(QAT_ERR_SHAPE, FILE_TAG ": conv: packed K %d != kh*kw*cin %lld", w->K, (long long)K);
    if (in->n == 0) return QAT_OK;
    if (!x || !y) return qat_fail(QAT_ERR_ARG, FILE_TAG ": conv: NULL x or y");
    int64_t pix = (int64_t)oh * ow;
    if (conv_is_pointwise(p))
        return qat_i8_gemm_u8(y, w->N, x, in->c, (int)((int64_t)in->n * pix), w, rq);
    size_t per = conv_image_bytes(in, p, oh, ow);
    if (!buf || buf_size < per)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": conv: scratch of %zu bytes, need at least %zu", buf_size, per);
    int64_t ldb = (int64_t)round_up((size_t)K, 4);
    const size_t img_in = (size_t)in->h * in->w * in->c, img_out = (size_t)pix * w->N;
    int slots = (int)(buf_size / per < (size_t)in->n ? buf_size / per : (size_t)in->n);
    int nt = qat_kernel_threads();
    if (nt > slots) nt = slots;
    if (nt > 1 && pix * w->Np * w->Kp < (1 << 21)) {
        /* Small images (the stem): one image per thread, each unfolded into its own slot of the
         * scratch; the GEMM inside runs single-threaded (nested parallelism is off). */
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int n = 0; n < in->n; n++) {
            uint8_t *slot = (uint8_t *)buf + (size_t)omp_get_thread_num() * per;
            im2col_u8(slot, ldb, x + (size_t)n * img_in, in, p, oh, ow, w->zx, 1);
            qat_status st = qat_i8_gemm_u8(y + (size_t)n * img_out, w->N, slot, ldb, (int)pix, w, rq);
            QAT_ASSERT(st == QAT_OK); /* arguments were checked above */
        }
        return QAT_OK;
    }
    int nti = i8_threads(pix * ldb * 4, oh);
    for (int n = 0; n < in->n; n++) {
        im2col_u8(buf, ldb, x + (size_t)n * img_in, in, p, oh, ow, w->zx, nti);
        if ((s = qat_i8_gemm_u8(y + (size_t)n * img_out, w->N, buf, ldb, (int)pix, w, rq))) return s;
    }
    return QAT_OK;
}

/* ---- depthwise conv -------------------------------------------------------------------------- */

/* Layout: bias_eff (Cp) s32, the s16 pairs, then the s8 quads; each part a multiple of 64 bytes
 * (Cp is a multiple of 32), so a 64-byte aligned buffer aligns all three. */
size_t qat_i8_dw_packed_size(int C, int kh, int kw) {
    if (C < 1 || C > I8_MAX_N || kh < 1 || kw < 1 || kh * kw > QAT_I8_DW_MAX_TAPS) return 0;
    size_t cp = round_up((size_t)C, 32), np = (size_t)(kh * kw + 1) / 2, nq = (size_t)(kw + 3) / 4;
    return cp * sizeof(int32_t) + np * cp * 2 * sizeof(int16_t) + (size_t)kh * nq * cp * 4;
}

qat_status qat_i8_dw_pack(qat_i8_dw_weights *pw, void *buf, size_t buf_size, const int8_t *w,
                          const int32_t *bias, int C, int kh, int kw, int32_t zx) {
    size_t need = qat_i8_dw_packed_size(C, kh, kw);
    if (!pw || !buf || !w) return qat_fail(QAT_ERR_ARG, FILE_TAG ": dw_pack: NULL argument");
    if (!need) return qat_fail(QAT_ERR_ARG, FILE_TAG ": dw_pack: bad sizes C=%d k=%dx%d", C, kh, kw);
    if (buf_size < need)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": dw_pack: buffer of %zu bytes, need %zu", buf_size, need);
    if ((uintptr_t)buf % 4) return qat_fail(QAT_ERR_ARG, FILE_TAG ": dw_pack: buffer not 4-byte aligned");
    if (!valid_zp(zx)) return qat_fail(QAT_ERR_ARG, FILE_TAG ": dw_pack: zero point %d outside u8", zx);
    int T = kh * kw, cp = (int)round_up((size_t)C, 32);
    pw->C = C;
    pw->Cp = cp;
    pw->kh = kh;
    pw->kw = kw;
    pw->npairs = (T + 1) / 2;
    pw->nq = (kw + 3) / 4;
    pw->zx = zx;
    pw->bias_eff = (int32_t *)buf;
    pw->w = (int16_t *)(pw->bias_eff + cp);
    pw->wq = (int8_t *)(pw->w + (size_t)pw->npairs * cp * 2);
    memset(pw->w, 0, (size_t)pw->npairs * cp * 2 * sizeof(int16_t));
    memset(pw->wq, 0, (size_t)kh * pw->nq * cp * 4);
    for (int c = 0; c < cp; c++) {
        int64_t cs = 0, mag = 0;
        if (c < C)
            for (int t = 0; t < T; t++) {
                int8_t v = w[(size_t)c * T + t];
                cs += v;
                mag += v < 0 ? -v : v;
                pw->w[qat_i8_dw_pair_index(cp, t / 2, c) + t % 2] = v;
                int i = t / kw, q = t % kw / 4, b = t % kw % 4;
                pw->wq[(((size_t)(i * pw->nq + q) * (cp / 16) + c / 16) * 16 + c % 16) * 4 + b] = v;
            }
        int64_t b = c < C && bias ? bias[c] : 0;
        if ((b < 0 ? -b : b) + 255 * mag > INT32_MAX)
            return qat_fail(QAT_ERR_NUMERIC, FILE_TAG ": dw_pack: channel %d could overflow the int32 accumulator", c);
        pw->bias_eff[c] = (int32_t)(b - (int64_t)zx * cs);
    }
    return QAT_OK;
}

/* The zx row, rounded to 64 bytes so that the VNNI512 slots after it stay 64-byte aligned. */
static size_t dw_zx_bytes(int C) { return round_up((size_t)C, 64); }

size_t qat_i8_dwconv_get_buffer_size(const qat_i8_dims *in, const qat_i8_conv_params *p) {
    int oh, ow;
    if (check_conv_geometry(in, p, &oh, &ow, "dwconv_get_buffer_size")) return 0;
    if (!qat_i8_path_available(QAT_I8_VNNI512) || !qat_i8_dw_vnni_stride(p->stride))
        return round_up((size_t)in->c, 32);
    /* one slot per thread (at most one per output row), plus 64 bytes to align the slots */
    int slots = qat_kernel_threads();
    if (slots < 1) slots = 1;
    if (in->n > 0 && (int64_t)slots > (int64_t)in->n * oh) slots = in->n * oh;
    return dw_zx_bytes(in->c) + 64 + (size_t)slots * qat_i8_dw_slot_bytes(ow, p->stride, p->kh, p->kw, in->c);
}

void qat_i8_dw_rows_ref(const qat_i8_dw_job *j, int r0, int r1) {
    const qat_i8_dw_weights *w = j->w;
    const qat_i8_dims *in = &j->in;
    const int C = in->c, cp = w->Cp;
    for (int r = r0; r < r1; r++) {
        int n = r / j->oh, oh = r % j->oh;
        for (int ow = 0; ow < j->ow; ow++) {
            uint8_t *yp = j->y + (((size_t)n * j->oh + oh) * j->ow + ow) * C;
            for (int c = 0; c < C; c++) {
                int32_t acc = w->bias_eff[c];
                for (int t = 0; t < w->kh * w->kw; t++) {
                    int ih = oh * j->p.stride - j->p.pad + t / w->kw;
                    int iw = ow * j->p.stride - j->p.pad + t % w->kw;
                    int32_t xv = (ih < 0 || ih >= in->h || iw < 0 || iw >= in->w)
                                     ? w->zx
                                     : j->x[(((size_t)n * in->h + ih) * in->w + iw) * C + c];
                    acc += xv * w->w[qat_i8_dw_pair_index(cp, t / 2, c) + t % 2];
                }
                yp[c] = (uint8_t)qat_requantize(acc, j->mult[c], j->zy, j->lo, j->hi);
            }
        }
    }
}

qat_status qat_i8_dwconv(uint8_t *y, const uint8_t *x, const qat_i8_dims *in,
                         const qat_i8_conv_params *p, const qat_i8_dw_weights *w,
                         const qat_i8_requant *rq, void *buf, size_t buf_size) {
    int oh, ow;
    qat_status s = check_conv_geometry(in, p, &oh, &ow, "dwconv");
    if (s) return s;
    if (!w || !w->w) return qat_fail(QAT_ERR_ARG, FILE_TAG ": dwconv: weights not packed");
    if ((s = check_requant(rq, "dwconv"))) return s;
    if (w->C != in->c || w->kh != p->kh || w->kw != p->kw)
        return qat_fail(QAT_ERR_SHAPE, FILE_TAG ": dwconv: packed C %d k %dx%d vs input C %d k %dx%d",
                        w->C, w->kh, w->kw, in->c, p->kh, p->kw);
    if (in->n == 0) return QAT_OK;
    if (!x || !y) return qat_fail(QAT_ERR_ARG, FILE_TAG ": dwconv: NULL x or y");
    size_t need = round_up((size_t)in->c, 32); /* the zx row: every path's minimum */
    if (!buf || buf_size < need)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": dwconv: scratch of %zu bytes, need %zu", buf_size, need);
    memset(buf, w->zx, need);
    qat_i8_dw_job j = {.x = x, .y = y, .in = *in, .oh = oh, .ow = ow, .p = *p, .w = w,
                       .mult = rq->mult, .zy = rq->zy, .lo = rq->lo, .hi = rq->hi, .zx_row = buf};
    qat_i8_dw_fn fn = i8_active()->dw;
    int rows = in->n * oh;
    /* A depthwise MAC costs ~4 GEMM MACs of time (no VNNI, widening, an epilogue per 9 taps), and
     * i8_threads' cut-off is meant as time; vpdpbusd on byte quads about halves that. */
    if (fn == qat_i8_dw_rows_vnni512 && !qat_i8_dw_vnni_stride(p->stride)) fn = qat_i8_dw_rows_avx512;
    int vnni = fn == qat_i8_dw_rows_vnni512;
    int nt = i8_threads((int64_t)rows * ow * in->c * p->kh * p->kw * (vnni ? 2 : 4), rows);
    /* VNNI512: each thread needs a slot of quad rows after the zx row; a buffer planned for
     * fewer threads runs fewer, one without slots the AVX-512 kernel */
    uint8_t *slots = NULL;
    const size_t slot = qat_i8_dw_slot_bytes(ow, p->stride, p->kh, p->kw, in->c);
    if (vnni) {
        uintptr_t s0 = round_up((uintptr_t)buf + dw_zx_bytes(in->c), 64);
        size_t have = (uintptr_t)buf + buf_size > s0 ? ((uintptr_t)buf + buf_size - s0) / slot : 0;
        if (have < 1) {
            fn = qat_i8_dw_rows_avx512;
        } else {
            slots = (uint8_t *)s0;
            if ((size_t)nt > have) nt = (int)have;
        }
    }
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        /* contiguous slices of output rows, one per thread */
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        int r0 = (int)((int64_t)rows * t / T), r1 = (int)((int64_t)rows * (t + 1) / T);
        qat_i8_dw_job jt = j;
        if (slots) jt.slot = slots + (size_t)t * slot;
        if (r1 > r0) fn(&jt, r0, r1);
    }
    return QAT_OK;
}

/* ---- element-wise add -------------------------------------------------------------------------- */

void qat_i8_add_range_ref(uint8_t *y, const uint8_t *a, const uint8_t *b, int64_t i0, int64_t i1,
                          const qat_i8_add_params *p) {
    for (int64_t i = i0; i < i1; i++) y[i] = qat_i8_add_one(a[i], b[i], p);
}

qat_status qat_i8_add(uint8_t *y, const uint8_t *a, const uint8_t *b, int64_t n,
                      const qat_i8_add_params *p) {
    if (!p || n < 0) return qat_fail(QAT_ERR_ARG, FILE_TAG ": add: NULL params or n < 0");
    if (n && (!y || !a || !b)) return qat_fail(QAT_ERR_ARG, FILE_TAG ": add: NULL tensor");
    if (!valid_zp(p->za) || !valid_zp(p->zb) || !valid_zp(p->zy) || p->lo < 0 || p->hi > 255 ||
        p->lo > p->hi)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": add: zero points %d %d %d / clamp [%d, %d] outside u8",
                        p->za, p->zb, p->zy, p->lo, p->hi);
    qat_i8_add_fn fn = i8_active()->add;
    /* ~8 float ops per element: weigh an element like 8 multiply-adds. */
    int64_t chunks = (n + 4095) / 4096;
    int nt = i8_threads(n * 8, chunks);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        /* split on 4096-element boundaries: no two threads write the same cache line */
        int64_t c0 = chunks * t / T, c1 = chunks * (t + 1) / T;
        int64_t i0 = c0 * 4096, i1 = c1 * 4096 < n ? c1 * 4096 : n;
        if (i1 > i0) fn(y, a, b, i0, i1, p);
    }
    return QAT_OK;
}

/* ---- global average pool ----------------------------------------------------------------------- */

void qat_i8_pool_images_ref(uint8_t *y, const uint8_t *x, const qat_i8_dims *in,
                            const qat_i8_pool_params *p, int n0, int n1) {
    const int hw = in->h * in->w, C = in->c;
    for (int n = n0; n < n1; n++)
        for (int c = 0; c < C; c++) {
            int32_t sum = 0;
            for (int i = 0; i < hw; i++) sum += x[((size_t)n * hw + i) * C + c];
            y[(size_t)n * C + c] = (uint8_t)qat_requantize(sum - hw * p->zx, p->mult, p->zy, p->lo, p->hi);
        }
}

qat_status qat_i8_global_avgpool(uint8_t *y, const uint8_t *x, const qat_i8_dims *in,
                                 const qat_i8_pool_params *p) {
    if (!in || !p) return qat_fail(QAT_ERR_ARG, FILE_TAG ": global_avgpool: NULL dims or params");
    if (in->n < 0 || in->h < 1 || in->w < 1 || in->c < 1 || (int64_t)in->h * in->w > (1 << 23))
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": global_avgpool: bad dims %dx%dx%dx%d", in->n,
                        in->h, in->w, in->c);
    if (!valid_zp(p->zx) || !valid_zp(p->zy) || p->lo < 0 || p->hi > 255 || p->lo > p->hi)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": global_avgpool: zero points %d %d / clamp [%d, %d] outside u8",
                        p->zx, p->zy, p->lo, p->hi);
    if (in->n == 0) return QAT_OK;
    if (!x || !y) return qat_fail(QAT_ERR_ARG, FILE_TAG ": global_avgpool: NULL x or y");
    qat_i8_pool_fn fn = i8_active()->pool;
    int nt = i8_threads((int64_t)in->n * in->h * in->w * in->c, in->n);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        int n0 = (int)((int64_t)in->n * t / T), n1 = (int)((int64_t)in->n * (t + 1) / T);
        if (n1 > n0) fn(y, x, in, p, n0, n1);
    }
    return QAT_OK;
}
