/* NHWC im2col / col2im and the strided gather used by 1x1 convolutions. In NHWC a kernel tap
 * reads `cg` contiguous channels, so a row of cols is KH*KW short contiguous copies, ordered
 * (kh, kw, ci) to match the OHWI weight rows: conv = cols * W^T with no weight reordering. */
#include "kernels.h"
#include <string.h>

int qat_conv_geom_init(qat_conv_geom *g, int n, int h, int w, int c, int kh, int kw, int stride,
                       int pad) {
    memset(g, 0, sizeof *g);
    if (n < 0 || h < 1 || w < 1 || c < 1 || kh < 1 || kw < 1 || stride < 1 || pad < 0) return -1;
    if (h + 2 * pad < kh || w + 2 * pad < kw) return -1;
    g->n = n;
    g->h = h;
    g->w = w;
    g->c = c;
    g->kh = kh;
    g->kw = kw;
    g->stride = stride;
    g->pad = pad;
    g->oh = (h + 2 * pad - kh) / stride + 1;
    g->ow = (w + 2 * pad - kw) / stride + 1;
    return 0;
}

/* Short copies: a memcpy call per tap costs more than the copy when cg is tiny (the Cin=1 stem
 * copies three floats per kernel row), so common short lengths get constant-size copies. */
static inline __attribute__((always_inline)) void copy_ch(float *restrict d, const float *restrict s, int n) {
    /* Constant-length cases compile to a few moves; n is the same on every call of a conv, so
     * the switch predicts perfectly. */
#define COPY_N(k)                                                                              \
    case k:                                                                                    \
        for (int i = 0; i < k; i++) d[i] = s[i];                                               \
        return;
    switch (n) {
        COPY_N(1) COPY_N(2) COPY_N(3) COPY_N(4) COPY_N(5) COPY_N(6) COPY_N(8) COPY_N(9)
        COPY_N(12) COPY_N(16)
    default: break;
    }
#undef COPY_N
    if (n >= 32) {
        memcpy(d, s, (size_t)n * sizeof(float));
        return;
    }
    for (int i = 0; i < n; i++) d[i] = s[i];
}

static inline __attribute__((always_inline)) void zero_ch(float *d, int n) {
    for (int i = 0; i < n; i++) d[i] = 0.0f;
}

static inline __attribute__((always_inline)) void add_ch(float *restrict d, const float *restrict s, int n) {
    for (int i = 0; i < n; i++) d[i] += s[i];
}

void qat_im2col_nhwc(float *cols, const float *x, const qat_conv_geom *g, int ctot, int c0,
                     int cg) {
    const int H = g->h, W = g->w, KH = g->kh, KW = g->kw, S = g->stride, P = g->pad;
    const int OH = g->oh, OW = g->ow;
    const int64_t K = (int64_t)KH * KW * cg;
    const int64_t rows = (int64_t)g->n * OH;
    int nt = qat_kernel_threads();
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * OW * K >= (1 << 15))
    for (int64_t r = 0; r < rows; r++) {
        int n = (int)(r / OH), oh = (int)(r % OH);
        const float *xn = x + (int64_t)n * H * W * ctot + c0;
        float *crow = cols + r * OW * K;
        for (int ow = 0; ow < OW; ow++) {
            float *dst = crow + (int64_t)ow * K;
            const int iw0 = ow * S - P;
            /* With all channels taken and every kw inside the image, the KW taps of one kernel
             * row are one contiguous run of x (NHWC): one copy instead of KW. */
            const int whole_row = cg == ctot && iw0 >= 0 && iw0 + KW <= W;
            for (int kh = 0; kh < KH; kh++) {
                const int ih = oh * S - P + kh;
                if ((unsigned)ih >= (unsigned)H) {
                    zero_ch(dst, KW * cg);
                    dst += KW * cg;
                    continue;
                }
                const float *src = xn + ((int64_t)ih * W + iw0) * ctot;
                if (whole_row) {
                    copy_ch(dst, src, KW * cg);
                    dst += KW * cg;
                    continue;
                }
                for (int kw = 0; kw < KW; kw++, dst += cg) {
                    if ((unsigned)(iw0 + kw) < (unsigned)W)
                        copy_ch(dst, src + (int64_t)kw * ctot, cg);
                    else
                        zero_ch(dst, cg);
                }
            }
        }
    }
}

void qat_col2im_nhwc_add(float *dx, const float *cols, const qat_conv_geom *g, int ctot, int c0,
                         int cg) {
    const int H = g->h, W = g->w, KH = g->kh, KW = g->kw, S = g->stride, P = g->pad;
    const int OH = g->oh, OW = g->ow;
    const int64_t K = (int64_t)KH * KW * cg;
    int nt = qat_kernel_threads();
    /* Taps of different output pixels overlap in dx, so the unit of parallel work is a whole
     * image: no two threads touch the same dx element and the summation order is fixed. */
#pragma omp parallel for num_threads(nt) schedule(static) if ((int64_t)g->n * OH * OW * K >= (1 << 15))
    for (int n = 0; n < g->n; n++) {
        float *dxn = dx + (int64_t)n * H * W * ctot + c0;
        const float *cn = cols + (int64_t)n * OH * OW * K;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                const float *src = cn + ((int64_t)oh * OW + ow) * K;
                for (int kh = 0; kh < KH; kh++) {
                    int ih = oh * S - P + kh;
                    if ((unsigned)ih >= (unsigned)H) {
                        src += (int64_t)KW * cg;
                        continue;
                    }
                    for (int kw = 0; kw < KW; kw++, src += cg) {
                        int iw = ow * S - P + kw;
                        if ((unsigned)iw < (unsigned)W)
                            add_ch(dxn + ((int64_t)ih * W + iw) * ctot, src, cg);
                    }
                }
            }
    }
}

void qat_gather_strided(float *xs, const float *x, const qat_conv_geom *g) {
    const int H = g->h, W = g->w, C = g->c, S = g->stride, OH = g->oh, OW = g->ow;
    const int64_t rows = (int64_t)g->n * OH;
    int nt = qat_kernel_threads();
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * OW * C >= (1 << 15))
    for (int64_t r = 0; r < rows; r++) {
        int n = (int)(r / OH), oh = (int)(r % OH);
        const float *src = x + ((int64_t)n * H + (int64_t)oh * S) * W * C;
        float *dst = xs + r * OW * C;
        for (int ow = 0; ow < OW; ow++) copy_ch(dst + (int64_t)ow * C, src + (int64_t)ow * S * C, C);
    }
}

void qat_scatter_strided_add(float *dx, const float *dxs, const qat_conv_geom *g) {
    const int H = g->h, W = g->w, C = g->c, S = g->stride, OH = g->oh, OW = g->ow;
    const int64_t rows = (int64_t)g->n * OH;
    int nt = qat_kernel_threads();
    /* Without padding each (n, oh, ow) maps to a distinct input pixel: rows never collide. */
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * OW * C >= (1 << 15))
    for (int64_t r = 0; r < rows; r++) {
        int n = (int)(r / OH), oh = (int)(r % OH);
        float *dst = dx + ((int64_t)n * H + (int64_t)oh * S) * W * C;
        const float *src = dxs + r * OW * C;
        for (int ow = 0; ow < OW; ow++) add_ch(dst + (int64_t)ow * S * C, src + (int64_t)ow * C, C);
    }
}
