/* INT8 windowed pooling (kernels/int8.h, section 9): max pool and average pool over k x k
 * windows of u8 NHWC codes. One scalar path (no SIMD variant: these pools sit in the stems of
 * imported networks, a few percent of the work); each output element is computed in one fixed
 * order, so the runtime and the integer-exact simulation, which calls the same functions, agree
 * bit for bit. */
#include "int8.h"
#include <omp.h>

#define FILE_TAG "kernels/int8_pool.c"

static int valid_zp(int32_t z) { return z >= 0 && z <= 255; }

/* Threads for `elems` output elements over n images (small layers run on one thread). */
static int pool_threads(int64_t elems, int n) {
    int nt = qat_kernel_threads();
    if (nt < 1) nt = 1;
    if (elems < (1 << 16)) nt = 1;
    if (nt > n) nt = n > 0 ? n : 1;
    return nt;
}

static qat_status check_geometry(const qat_i8_dims *in, const qat_i8_conv_params *cp, const char *what) {
    if (!in || !cp) return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: NULL dims or params", what);
    if (in->n < 0 || in->h < 1 || in->w < 1 || in->c < 1 || cp->kh < 1 || cp->kw < 1 || cp->stride < 1 ||
        cp->pad < 0 || 2 * cp->pad > cp->kh || 2 * cp->pad > cp->kw || in->h + 2 * cp->pad < cp->kh ||
        in->w + 2 * cp->pad < cp->kw || cp->kh * cp->kw > (1 << 16))
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": %s: bad geometry %dx%dx%dx%d k %dx%d stride %d pad %d", what,
                        in->n, in->h, in->w, in->c, cp->kh, cp->kw, cp->stride, cp->pad);
    return QAT_OK;
}

void qat_i8_maxpool_ref(uint8_t *y, const uint8_t *x, const qat_i8_dims *in, const qat_i8_conv_params *cp,
                        int32_t lo, int32_t hi, int n) {
    const int H = in->h, W = in->w, C = in->c;
    const int OH = (H + 2 * cp->pad - cp->kh) / cp->stride + 1, OW = (W + 2 * cp->pad - cp->kw) / cp->stride + 1;
    const uint8_t *xi = x + (int64_t)n * H * W * C;
    for (int oh = 0; oh < OH; oh++)
        for (int ow = 0; ow < OW; ow++) {
            uint8_t *yo = y + (((int64_t)n * OH + oh) * OW + ow) * C;
            for (int c = 0; c < C; c++) yo[c] = 0;
            /* padded taps are -inf (ONNX / PyTorch): skipped; every window holds a real pixel
             * because 2 pad <= k */
            for (int i = 0; i < cp->kh; i++) {
                const int ih = oh * cp->stride - cp->pad + i;
                if (ih < 0 || ih >= H) continue;
                for (int j = 0; j < cp->kw; j++) {
                    const int iw = ow * cp->stride - cp->pad + j;
                    if (iw < 0 || iw >= W) continue;
                    const uint8_t *px = xi + ((int64_t)ih * W + iw) * C;
                    for (int c = 0; c < C; c++) yo[c] = px[c] > yo[c] ? px[c] : yo[c];
                }
            }
            for (int c = 0; c < C; c++) yo[c] = (uint8_t)qat_clamp_i32(yo[c], lo, hi);
        }
}

qat_status qat_i8_maxpool(uint8_t *y, const uint8_t *x, const qat_i8_dims *in, const qat_i8_conv_params *cp,
                          int32_t lo, int32_t hi) {
    qat_status st = check_geometry(in, cp, "maxpool");
    if (st) return st;
    if (lo < 0 || hi > 255 || lo > hi) return qat_fail(QAT_ERR_ARG, FILE_TAG ": maxpool: clamp [%d, %d] outside u8", lo, hi);
    if (in->n == 0) return QAT_OK;
    if (!x || !y) return qat_fail(QAT_ERR_ARG, FILE_TAG ": maxpool: NULL x or y");
    const int nt = pool_threads((int64_t)in->n * in->h * in->w * in->c, in->n);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int n = 0; n < in->n; n++) qat_i8_maxpool_ref(y, x, in, cp, lo, hi, n);
    return QAT_OK;
}

void qat_i8_avgpool_ref(uint8_t *y, const uint8_t *x, const qat_i8_dims *in, const qat_i8_conv_params *cp,
                        const qat_i8_pool_params *p, int n) {
    const int H = in->h, W = in->w, C = in->c;
    const int OH = (H + 2 * cp->pad - cp->kh) / cp->stride + 1, OW = (W + 2 * cp->pad - cp->kw) / cp->stride + 1;
    const uint8_t *xi = x + (int64_t)n * H * W * C;
    for (int oh = 0; oh < OH; oh++)
        for (int ow = 0; ow < OW; ow++) {
            uint8_t *yo = y + (((int64_t)n * OH + oh) * OW + ow) * C;
            for (int c = 0; c < C; c++) {
                /* padded taps read the real value 0, i.e. code zx: they add nothing to sum(x - zx) */
                int32_t sum = 0;
                for (int i = 0; i < cp->kh; i++) {
                    const int ih = oh * cp->stride - cp->pad + i;
                    if (ih < 0 || ih >= H) continue;
                    for (int j = 0; j < cp->kw; j++) {
                        const int iw = ow * cp->stride - cp->pad + j;
                        if (iw >= 0 && iw < W) sum += (int32_t)xi[((int64_t)ih * W + iw) * C + c] - p->zx;
                    }
                }
                yo[c] = (uint8_t)qat_requantize(sum, p->mult, p->zy, p->lo, p->hi);
            }
        }
}

qat_status qat_i8_avgpool(uint8_t *y, const uint8_t *x, const qat_i8_dims *in, const qat_i8_conv_params *cp,
                          const qat_i8_pool_params *p) {
    qat_status st = check_geometry(in, cp, "avgpool");
    if (st) return st;
    if (!p || !valid_zp(p->zx) || !valid_zp(p->zy) || p->lo < 0 || p->hi > 255 || p->lo > p->hi)
        return qat_fail(QAT_ERR_ARG, FILE_TAG ": avgpool: missing params or zero points / clamp outside u8");
    if (in->n == 0) return QAT_OK;
    if (!x || !y) return qat_fail(QAT_ERR_ARG, FILE_TAG ": avgpool: NULL x or y");
    const int nt = pool_threads((int64_t)in->n * in->h * in->w * in->c, in->n);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int n = 0; n < in->n; n++) qat_i8_avgpool_ref(y, x, in, cp, p, n);
    return QAT_OK;
}
