/* INT8 kernels of MobileNetV3's extra layers (kernels/int8.h, section 7): the activation lookup
 * table and the channel-wise multiply of squeeze-and-excite — argument checks, threading, the
 * dispatch to the variant of the active path, and the scalar reference. The SIMD variants of the
 * multiply sit with the other element-wise kernels in int8_avx2.c and int8_avx512.c. */
#include "int8.h"
#include <omp.h>

#define FILE_TAG "kernels/int8_se.c"

static int valid_zp(int32_t z) { return z >= 0 && z <= 255; }

/* Threads for `work` element-operations over `units` independent parts (as kernels/int8_ref.c:
 * small layers run on one thread, the fork costs more than they do). */
static int se_threads(int64_t work, int64_t units) {
    int nt = qat_kernel_threads();
    if (nt < 1) nt = 1;
    if (work < QAT_I8_PAR_MIN_WORK) nt = 1;
    if (nt > units) nt = (int)(units > 0 ? units : 1);
    return nt;
}

qat_status qat_i8_lut(uint8_t *y, const uint8_t *x, int64_t n, const uint8_t *table) {
    if (n < 0 || !table) return qat_fail(QAT_ERR_ARG, FILE_TAG ": lut: n < 0 or no table");
    if (n && (!y || !x)) return qat_fail(QAT_ERR_ARG, FILE_TAG ": lut: NULL tensor");
    qat_i8_path path = qat_i8_active_path();
    int vbmi = (path == QAT_I8_AVX512 || path == QAT_I8_VNNI512) && qat_cpu_has_avx512_vbmi();
    void (*fn)(uint8_t *, const uint8_t *, int64_t, const uint8_t *) = vbmi ? qat_i8_lut_vbmi : qat_i8_lut_ref;
    int64_t chunks = (n + 4095) / 4096;
    /* the VBMI loop does 64 bytes in a few instructions: a 2-thread split pays off much later */
    int nt = se_threads(vbmi ? n / 16 : n, chunks);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        int64_t i0 = chunks * t / T * 4096, i1 = chunks * (t + 1) / T * 4096;
        if (i1 > n) i1 = n;
        if (i1 > i0) fn(y + i0, x + i0, i1 - i0, table);
    }
    return QAT_OK;
}

void qat_i8_lut_ref(uint8_t *y, const uint8_t *x, int64_t n, const uint8_t *table) {
    for (int64_t i = 0; i < n; i++) y[i] = table[x[i]];
}

void qat_i8_mul_pixels_ref(uint8_t *y, const uint8_t *x, const uint8_t *g, const qat_i8_dims *in,
                           const qat_i8_mul_params *p, int64_t p0, int64_t p1) {
    const int C = in->c;
    const int64_t hw = (int64_t)in->h * in->w;
    for (int64_t px = p0; px < p1; px++) {
        const uint8_t *gr = g + (px / hw) * C;
        for (int c = 0; c < C; c++) {
            int32_t acc = ((int32_t)x[px * C + c] - p->zx) * ((int32_t)gr[c] - p->zg);
            y[px * C + c] = (uint8_t)qat_requantize(acc, p->mult[c], p->zy, p->lo, p->hi);
        }
    }
}

qat_status qat_i8_channel_mul(uint8_t *y, const uint8_t *x, const uint8_t *g, const qat_i8_dims *in,
                              const qat_i8_mul_params *p) {
    if (!in || !p || !p->mult) return qat_fail(QAT_ERR_ARG, FILE_TAG ": channel_mul: NULL dims or params");
    if (in->n < 0 || in->h < 1 || in->w < 1 || in->c < 1)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": channel_mul: bad dims %dx%dx%dx%d", in->n, in->h,
                        in->w, in->c);
    if (!valid_zp(p->zx) || !valid_zp(p->zg) || !valid_zp(p->zy) || p->lo < 0 || p->hi > 255 ||
        p->lo > p->hi)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": channel_mul: zero points %d %d %d / clamp [%d, %d] outside u8",
                        p->zx, p->zg, p->zy, p->lo, p->hi);
    if (in->n == 0) return QAT_OK;
    if (!x || !y || !g) return qat_fail(QAT_ERR_ARG, FILE_TAG ": channel_mul: NULL tensor");
    qat_i8_mul_fn fn = qat_i8_mul_pixels_ref;
    switch (qat_i8_active_path()) {
    case QAT_I8_AVX2:
    case QAT_I8_AVXVNNI: fn = qat_i8_mul_pixels_avx2; break;
    case QAT_I8_AVX512:
    case QAT_I8_VNNI512: fn = qat_i8_mul_pixels_avx512; break;
    default: break;
    }
    const int64_t pixels = (int64_t)in->n * in->h * in->w;
    /* ~6 vector operations per element: weigh an element like 4 multiply-adds */
    int nt = se_threads(pixels * in->c * 4, pixels);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        int64_t q0 = pixels * t / T, q1 = pixels * (t + 1) / T;
        if (q1 > q0) fn(y, x, g, in, p, q0, q1);
    }
    return QAT_OK;
}
