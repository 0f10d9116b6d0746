/* Depthwise convolution over NHWC: the scalar references, the weight repacking and the
 * dispatch to the AVX2 / AVX-512 variants (kernels/dwconv_avx2.c, kernels/dwconv_avx512.c).
 * The references are written the obvious way (the backward-data one scatters, where the SIMD
 * versions gather) so that the tests compare two independent formulations. */
#include "kernels.h"
#include <string.h>

void qat_dw_pack_weights(float *wk, const float *w_ohwi, int C, int KH, int KW) {
    for (int c = 0; c < C; c++)
        for (int t = 0; t < KH * KW; t++) wk[(size_t)t * C + c] = w_ohwi[(size_t)c * KH * KW + t];
}

void qat_dw_unpack_add(float *dw_ohwi, const float *dwk, int C, int KH, int KW) {
    for (int c = 0; c < C; c++)
        for (int t = 0; t < KH * KW; t++) dw_ohwi[(size_t)c * KH * KW + t] += dwk[(size_t)t * C + c];
}

void qat_dwconv_fwd_ref(const qat_conv_geom *g, float *out, const float *x, const float *wk,
                        const float *bias) {
    const int H = g->h, W = g->w, C = g->c, KH = g->kh, KW = g->kw, S = g->stride, P = g->pad;
    const int OH = g->oh, OW = g->ow;
    int nt = qat_kernel_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int n = 0; n < g->n; n++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                for (int c = 0; c < C; c++) {
                    float s = bias ? bias[c] : 0.0f;
                    for (int kh = 0; kh < KH; kh++)
                        for (int kw = 0; kw < KW; kw++) {
                            int ih = oh * S - P + kh, iw = ow * S - P + kw;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                            s += x[(((int64_t)n * H + ih) * W + iw) * C + c] *
                                 wk[((int64_t)kh * KW + kw) * C + c];
                        }
                    out[(((int64_t)n * OH + oh) * OW + ow) * C + c] = s;
                }
}

void qat_dwconv_bwd_data_ref(const qat_conv_geom *g, float *dx, const float *dy,
                             const float *wk, int accumulate) {
    const int H = g->h, W = g->w, C = g->c, KH = g->kh, KW = g->kw, S = g->stride, P = g->pad;
    const int OH = g->oh, OW = g->ow;
    int nt = qat_kernel_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int n = 0; n < g->n; n++) {
        if (!accumulate) memset(dx + (int64_t)n * H * W * C, 0, (size_t)H * W * C * sizeof(float));
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                for (int kh = 0; kh < KH; kh++)
                    for (int kw = 0; kw < KW; kw++) {
                        int ih = oh * S - P + kh, iw = ow * S - P + kw;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        float *d = dx + (((int64_t)n * H + ih) * W + iw) * C;
                        const float *gy = dy + (((int64_t)n * OH + oh) * OW + ow) * C;
                        const float *wt = wk + ((int64_t)kh * KW + kw) * C;
                        for (int c = 0; c < C; c++) d[c] += gy[c] * wt[c];
                    }
    }
}

void qat_dwconv_bwd_weight_ref(const qat_conv_geom *g, float *dwk, float *db, const float *dy,
                               const float *x, float *scratch) {
    const int H = g->h, W = g->w, C = g->c, KH = g->kh, KW = g->kw, S = g->stride, P = g->pad;
    const int OH = g->oh, OW = g->ow;
    for (int n = 0; n < g->n; n++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                const float *gy = dy + (((int64_t)n * OH + oh) * OW + ow) * C;
                if (db)
                    for (int c = 0; c < C; c++) db[c] += gy[c];
                for (int kh = 0; kh < KH; kh++)
                    for (int kw = 0; kw < KW; kw++) {
                        int ih = oh * S - P + kh, iw = ow * S - P + kw;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        const float *xi = x + (((int64_t)n * H + ih) * W + iw) * C;
                        float *d = dwk + ((int64_t)kh * KW + kw) * C;
                        for (int c = 0; c < C; c++) d[c] += xi[c] * gy[c];
                    }
            }
}

/* 16 chunks where the pass is worth threads: a multiple of the common thread counts (2, 4, 8,
 * 16), so static shares stay even, and each chunk's private sums are small next to its rows. */
#define DW_WEIGHT_CHUNKS 16

int qat_dw_weight_chunks(const qat_conv_geom *g) {
    const int64_t R = (int64_t)g->n * g->oh;
    const int64_t macs = R * g->ow * g->c * g->kh * g->kw;
    if (macs < QAT_DW_PARALLEL_MIN_MACS || R < 2) return 1;
    return R < DW_WEIGHT_CHUNKS ? (int)R : DW_WEIGHT_CHUNKS;
}

size_t qat_dwconv_bwd_weight_scratch(const qat_conv_geom *g) {
    /* One private (KH*KW*C + C) accumulator per chunk, each rounded to 16 floats so that
     * threads never share a cache line. */
    size_t taps = ((size_t)g->kh * g->kw * g->c + 15) & ~(size_t)15;
    size_t bias = ((size_t)g->c + 15) & ~(size_t)15;
    return (size_t)qat_dw_weight_chunks(g) * (taps + bias);
}

void qat_dwconv_fwd(const qat_conv_geom *g, float *out, const float *x, const float *wk,
                    const float *bias) {
    switch (qat_cpu_isa()) {
    case QAT_ISA_AVX512: qat_dwconv_fwd_avx512(g, out, x, wk, bias); break;
    case QAT_ISA_AVX2: qat_dwconv_fwd_avx2(g, out, x, wk, bias); break;
    default: qat_dwconv_fwd_ref(g, out, x, wk, bias); break;
    }
}

void qat_dwconv_bwd_data(const qat_conv_geom *g, float *dx, const float *dy, const float *wk,
                         int accumulate) {
    switch (qat_cpu_isa()) {
    case QAT_ISA_AVX512: qat_dwconv_bwd_data_avx512(g, dx, dy, wk, accumulate); break;
    case QAT_ISA_AVX2: qat_dwconv_bwd_data_avx2(g, dx, dy, wk, accumulate); break;
    default: qat_dwconv_bwd_data_ref(g, dx, dy, wk, accumulate); break;
    }
}

void qat_dwconv_bwd_weight(const qat_conv_geom *g, float *dwk, float *db, const float *dy,
                           const float *x, float *scratch) {
    switch (qat_cpu_isa()) {
    case QAT_ISA_AVX512: qat_dwconv_bwd_weight_avx512(g, dwk, db, dy, x, scratch); break;
    case QAT_ISA_AVX2: qat_dwconv_bwd_weight_avx2(g, dwk, db, dy, x, scratch); break;
    default: qat_dwconv_bwd_weight_ref(g, dwk, db, dy, x, scratch); break;
    }
}
