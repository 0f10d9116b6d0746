/* Depthwise convolution kernel bodies, NHWC, written once against a small vector vocabulary and
 * instantiated per ISA: kernels/dwconv_avx2.c (8 channels per ymm) and kernels/dwconv_avx512.c
 * (16 channels per zmm) each define the ISA block below and then include this file. It is a
 * template, not a normal header: no include guard, and it must be included exactly once per
 * translation unit, after the ISA block.
 *
 * ISA block (what the including file defines):
 *   VL               lanes per vector (channels per block)
 *   vec, vmask       the vector type and the tail-mask type
 *   tail_mask(n)     a vmask with lanes [0, n) set, 0 < n < VL
 *   FULL_MASK        a vmask with all lanes set (passed, unused, on the unmasked path)
 *   LD(p), ST(p, v)  load/store VL floats; `masked` and `m` are in scope wherever these are used:
 *                    full channel blocks use plain loads/stores, the last partial block masked
 *   FMA(a, b, c)     a * b + c, fused;  ADD(a, b);  ZERO()
 *   NAME(f)          the exported name of f for this ISA (f##_avx2, f##_avx512)
 *
 * Layout of the work: channels are the vector lanes (NHWC keeps them contiguous), one channel
 * block at a time, with the KH*KW tap weights (or, for the weight gradient, the KH*KW tap
 * accumulators) held in registers across a whole output row. Kernel size and stride are
 * compile-time constants for the shapes MobileNets use (3x3 and 5x5, stride 1 and 2) so the
 * tap loops unroll into straight-line FMAs; other shapes run the same code with runtime
 * bounds. Pixels whose taps all lie inside the image take a path without bounds checks.
 */
#if !defined(VL) || !defined(NAME) || !defined(LD) || !defined(ST) || !defined(FMA) ||        \
    !defined(ADD) || !defined(ZERO) || !defined(FULL_MASK)
#error "dwconv_simd.h: define the ISA block (see the top of this file) before including it"
#endif

#include "kernels.h"
#include <omp.h>

#define MAXK 8 /* kernels up to 8x8 run here; larger ones fall back to the reference */
#define INLINE static inline __attribute__((always_inline))

static int threads_for(int64_t macs, int64_t units) {
    int nt = qat_kernel_threads();
    if (macs < QAT_DW_PARALLEL_MIN_MACS) nt = 1;
    if (nt > units) nt = units > 0 ? (int)units : 1;
    return nt;
}

static inline void share(int64_t R, int t, int nt, int64_t *lo, int64_t *hi) {
    *lo = R * t / nt;
    *hi = R * (t + 1) / nt;
}

/* Positions [lo, hi) along one axis whose taps all land inside [0, len): out position o reads
 * o*S - P .. o*S - P + K - 1. */
static void interior(int len, int K, int S, int P, int nout, int *lo, int *hi) {
    int l = (P + S - 1) / S;
    int h = len - K + P >= 0 ? (len - K + P) / S + 1 : 0;
    if (l > nout) l = nout;
    if (h > nout) h = nout;
    if (h < l) h = l;
    *lo = l;
    *hi = h;
}

/* Calls rows(args..., KH, KW, S) with the kernel size and stride as compile-time constants for
 * the shapes MobileNets use, so the tap loops unroll; any other shape gets runtime bounds.
 * KH, KW and S are in scope where it is used. */
#define DISPATCH_SHAPE(rows, ...)                                                               \
    do {                                                                                       \
        if (KH == 3 && KW == 3 && S == 1)                                                      \
            rows(__VA_ARGS__, 3, 3, 1);                                                        \
        else if (KH == 3 && KW == 3 && S == 2)                                                 \
            rows(__VA_ARGS__, 3, 3, 2);                                                        \
        else if (KH == 5 && KW == 5 && S == 1)                                                 \
            rows(__VA_ARGS__, 5, 5, 1);                                                        \
        else if (KH == 5 && KW == 5 && S == 2)                                                 \
            rows(__VA_ARGS__, 5, 5, 2);                                                        \
        else                                                                                   \
            rows(__VA_ARGS__, KH, KW, S);                                                      \
    } while (0)

/* ---- forward ------------------------------------------------------------------------- */

INLINE vec fwd_pixel(const float *restrict xn, const vec *wv, vec acc, int H, int W, int C,
                     int ih0, int iw0, vmask m, const int masked, const int check, const int KH,
                     const int KW) {
#pragma GCC unroll 8
    for (int kh = 0; kh < KH; kh++) {
        const int ih = ih0 + kh;
        if ((unsigned)ih >= (unsigned)H) continue;
        const float *xp = xn + ((int64_t)ih * W + iw0) * C;
#pragma GCC unroll 8
        for (int kw = 0; kw < KW; kw++) {
            if (check && (unsigned)(iw0 + kw) >= (unsigned)W) continue;
            acc = FMA(LD(xp + (int64_t)kw * C), wv[kh * KW + kw], acc);
        }
    }
    return acc;
}

/* One output row, one channel block. xn and orow already point at channel c0. */
INLINE void fwd_block(float *restrict orow, const float *restrict xn, const float *restrict wk,
                      const float *restrict bias, const qat_conv_geom *g, int ih0, int ow_lo,
                      int ow_hi, vmask m, const int masked, const int KH, const int KW,
                      const int S) {
    const int H = g->h, W = g->w, C = g->c, P = g->pad, OW = g->ow;
    vec wv[MAXK * MAXK];
#pragma GCC unroll 8
    for (int kh = 0; kh < KH; kh++)
#pragma GCC unroll 8
        for (int kw = 0; kw < KW; kw++) wv[kh * KW + kw] = LD(wk + (int64_t)(kh * KW + kw) * C);
    const vec bv = bias ? LD(bias) : ZERO();
    int ow = 0;
    for (; ow < ow_lo; ow++)
        ST(orow + (int64_t)ow * C,
           fwd_pixel(xn, wv, bv, H, W, C, ih0, ow * S - P, m, masked, 1, KH, KW));
    for (; ow < ow_hi; ow++)
        ST(orow + (int64_t)ow * C,
           fwd_pixel(xn, wv, bv, H, W, C, ih0, ow * S - P, m, masked, 0, KH, KW));
    for (; ow < OW; ow++)
        ST(orow + (int64_t)ow * C,
           fwd_pixel(xn, wv, bv, H, W, C, ih0, ow * S - P, m, masked, 1, KH, KW));
}

INLINE void fwd_rows(const qat_conv_geom *g, float *restrict out, const float *restrict x,
                     const float *restrict wk, const float *restrict bias, int64_t r0, int64_t r1,
                     const int KH, const int KW, const int S) {
    const int H = g->h, W = g->w, C = g->c, P = g->pad, OH = g->oh, OW = g->ow;
    int ow_lo, ow_hi;
    interior(W, KW, S, P, OW, &ow_lo, &ow_hi);
    const int cfull = C / VL * VL;
    for (int64_t r = r0; r < r1; r++) {
        const int n = (int)(r / OH), oh = (int)(r % OH);
        const float *xn = x + (int64_t)n * H * W * C;
        float *orow = out + r * OW * C;
        const int ih0 = oh * S - P;
        for (int c0 = 0; c0 < cfull; c0 += VL)
            fwd_block(orow + c0, xn + c0, wk + c0, bias ? bias + c0 : NULL, g, ih0, ow_lo, ow_hi,
                      FULL_MASK, 0, KH, KW, S);
        if (cfull < C)
            fwd_block(orow + cfull, xn + cfull, wk + cfull, bias ? bias + cfull : NULL, g, ih0,
                      ow_lo, ow_hi, tail_mask(C - cfull), 1, KH, KW, S);
    }
}

static void fwd_range(const qat_conv_geom *g, float *out, const float *x, const float *wk,
                      const float *bias, int64_t r0, int64_t r1) {
    const int KH = g->kh, KW = g->kw, S = g->stride;
    DISPATCH_SHAPE(fwd_rows, g, out, x, wk, bias, r0, r1);
}

void NAME(qat_dwconv_fwd)(const qat_conv_geom *g, float *out, const float *x, const float *wk,
                          const float *bias) {
    if (g->kh > MAXK || g->kw > MAXK) {
        qat_dwconv_fwd_ref(g, out, x, wk, bias);
        return;
    }
    const int64_t R = (int64_t)g->n * g->oh;
    int nt = threads_for(R * g->ow * g->c * g->kh * g->kw, R);
#pragma omp parallel num_threads(nt)
    {
        int64_t lo, hi;
        share(R, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        fwd_range(g, out, x, wk, bias, lo, hi);
    }
}

/* ---- backward, data: gather form, dx[ih, iw] += sum over the taps that read it ---------- */

/* ohs[kh]: the output row that reads input row ih through tap row kh, or -1. */
INLINE vec bwd_data_pixel(const float *restrict dyn, const int *ohs, const vec *wv, int OW,
                          int C, int iw, int P, vmask m, const int masked, const int check,
                          const int KH, const int KW, const int S) {
    vec acc = ZERO();
#pragma GCC unroll 8
    for (int kh = 0; kh < KH; kh++) {
        if (ohs[kh] < 0) continue;
        const float *dyr = dyn + (int64_t)ohs[kh] * OW * C;
#pragma GCC unroll 8
        for (int kw = 0; kw < KW; kw++) {
            const int u = iw + P - kw; /* = ow * S when tap kw of output column ow reads iw */
            if (check && u < 0) continue;
            if (S > 1 && u % S) continue;
            const int ow = u / S;
            if (check && ow >= OW) continue;
            acc = FMA(LD(dyr + (int64_t)ow * C), wv[kh * KW + kw], acc);
        }
    }
    return acc;
}

INLINE void bwd_data_block(float *restrict dxrow, const float *restrict dyn,
                           const float *restrict wk, const qat_conv_geom *g, const int *ohs,
                           int iw_lo, int iw_hi, int accumulate, vmask m, const int masked,
                           const int KH, const int KW, const int S) {
    const int W = g->w, C = g->c, P = g->pad, OW = g->ow;
    vec wv[MAXK * MAXK];
#pragma GCC unroll 8
    for (int kh = 0; kh < KH; kh++)
#pragma GCC unroll 8
        for (int kw = 0; kw < KW; kw++) wv[kh * KW + kw] = LD(wk + (int64_t)(kh * KW + kw) * C);
    /* dx is read only when accumulating: a fresh gradient is written straight out. */
#define BWD_DATA_STORE(check)                                                                   \
    do {                                                                                       \
        float *d = dxrow + (int64_t)iw * C;                                                    \
        vec v = bwd_data_pixel(dyn, ohs, wv, OW, C, iw, P, m, masked, check, KH, KW, S);       \
        ST(d, accumulate ? ADD(LD(d), v) : v);                                                 \
    } while (0)
    int iw = 0;
    for (; iw < iw_lo; iw++) BWD_DATA_STORE(1);
    for (; iw < iw_hi; iw++) BWD_DATA_STORE(0);
    for (; iw < W; iw++) BWD_DATA_STORE(1);
#undef BWD_DATA_STORE
}

INLINE void bwd_data_rows(const qat_conv_geom *g, float *restrict dx, const float *restrict dy,
                          const float *restrict wk, int accumulate, int64_t r0, int64_t r1,
                          const int KH, const int KW, const int S) {
    const int H = g->h, W = g->w, C = g->c, P = g->pad, OH = g->oh, OW = g->ow;
    /* Input columns whose every tap maps to an output column inside [0, OW) (up to the stride
     * remainder): u = iw + P - kw must lie in [0, (OW-1)*S] for all kw. */
    int iw_lo = KW - 1 - P, iw_hi = (OW - 1) * S + 1 - P;
    if (iw_lo < 0) iw_lo = 0;
    if (iw_hi > W) iw_hi = W;
    if (iw_lo > W) iw_lo = W;
    if (iw_hi < iw_lo) iw_hi = iw_lo;
    const int cfull = C / VL * VL;
    for (int64_t r = r0; r < r1; r++) {
        const int n = (int)(r / H), ih = (int)(r % H);
        int ohs[MAXK];
        for (int kh = 0; kh < KH; kh++) {
            const int t = ih + P - kh;
            ohs[kh] = (t >= 0 && t % S == 0 && t / S < OH) ? t / S : -1;
        }
        const float *dyn = dy + (int64_t)n * OH * OW * C;
        float *dxrow = dx + r * W * C;
        for (int c0 = 0; c0 < cfull; c0 += VL)
            bwd_data_block(dxrow + c0, dyn + c0, wk + c0, g, ohs, iw_lo, iw_hi, accumulate,
                           FULL_MASK, 0, KH, KW, S);
        if (cfull < C)
            bwd_data_block(dxrow + cfull, dyn + cfull, wk + cfull, g, ohs, iw_lo, iw_hi,
                           accumulate, tail_mask(C - cfull), 1, KH, KW, S);
    }
}

static void bwd_data_range(const qat_conv_geom *g, float *dx, const float *dy, const float *wk,
                           int accumulate, int64_t r0, int64_t r1) {
    const int KH = g->kh, KW = g->kw, S = g->stride;
    DISPATCH_SHAPE(bwd_data_rows, g, dx, dy, wk, accumulate, r0, r1);
}

void NAME(qat_dwconv_bwd_data)(const qat_conv_geom *g, float *dx, const float *dy,
                               const float *wk, int accumulate) {
    if (g->kh > MAXK || g->kw > MAXK) {
        qat_dwconv_bwd_data_ref(g, dx, dy, wk, accumulate);
        return;
    }
    /* Work unit: one input row, which only this thread writes. */
    const int64_t R = (int64_t)g->n * g->h;
    int nt = threads_for((int64_t)g->n * g->oh * g->ow * g->c * g->kh * g->kw, R);
#pragma omp parallel num_threads(nt)
    {
        int64_t lo, hi;
        share(R, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        bwd_data_range(g, dx, dy, wk, accumulate, lo, hi);
    }
}

/* ---- backward, weights: per-thread tap accumulators in registers ---------------------- */

INLINE void bwd_weight_pixel(vec *acc, const float *restrict xn, vec dyv, int H, int W, int C,
                             int ih0, int iw0, vmask m, const int masked, const int check,
                             const int KH, const int KW) {
#pragma GCC unroll 8
    for (int kh = 0; kh < KH; kh++) {
        const int ih = ih0 + kh;
        if ((unsigned)ih >= (unsigned)H) continue;
        const float *xp = xn + ((int64_t)ih * W + iw0) * C;
#pragma GCC unroll 8
        for (int kw = 0; kw < KW; kw++) {
            if (check && (unsigned)(iw0 + kw) >= (unsigned)W) continue;
            acc[kh * KW + kw] = FMA(LD(xp + (int64_t)kw * C), dyv, acc[kh * KW + kw]);
        }
    }
}

/* Sums output rows [r0, r1) for one channel block into pdw (KH, KW, C) and pdb (C), which are
 * this thread's private buffers (written, not accumulated). Pointers are at channel c0. */
INLINE void bwd_weight_block(float *restrict pdw, float *restrict pdb, const float *restrict dy,
                             const float *restrict x, const qat_conv_geom *g, int64_t r0,
                             int64_t r1, int ow_lo, int ow_hi, vmask m, const int masked,
                             const int KH, const int KW, const int S) {
    const int H = g->h, W = g->w, C = g->c, P = g->pad, OH = g->oh, OW = g->ow;
    vec acc[MAXK * MAXK];
#pragma GCC unroll 64
    for (int t = 0; t < KH * KW; t++) acc[t] = ZERO();
    vec dbacc = ZERO();
    for (int64_t r = r0; r < r1; r++) {
        const int n = (int)(r / OH), oh = (int)(r % OH);
        const int ih0 = oh * S - P;
        const float *xn = x + (int64_t)n * H * W * C;
        const float *dyr = dy + r * OW * C;
        int ow = 0;
        for (; ow < ow_lo; ow++) {
            const vec dyv = LD(dyr + (int64_t)ow * C);
            dbacc = ADD(dbacc, dyv);
            bwd_weight_pixel(acc, xn, dyv, H, W, C, ih0, ow * S - P, m, masked, 1, KH, KW);
        }
        for (; ow < ow_hi; ow++) {
            const vec dyv = LD(dyr + (int64_t)ow * C);
            dbacc = ADD(dbacc, dyv);
            bwd_weight_pixel(acc, xn, dyv, H, W, C, ih0, ow * S - P, m, masked, 0, KH, KW);
        }
        for (; ow < OW; ow++) {
            const vec dyv = LD(dyr + (int64_t)ow * C);
            dbacc = ADD(dbacc, dyv);
            bwd_weight_pixel(acc, xn, dyv, H, W, C, ih0, ow * S - P, m, masked, 1, KH, KW);
        }
    }
#pragma GCC unroll 64
    for (int t = 0; t < KH * KW; t++) ST(pdw + (int64_t)t * C, acc[t]);
    ST(pdb, dbacc);
}

INLINE void bwd_weight_rows(const qat_conv_geom *g, float *restrict pdw, float *restrict pdb,
                            const float *restrict dy, const float *restrict x, int64_t r0,
                            int64_t r1, const int KH, const int KW, const int S) {
    int ow_lo, ow_hi;
    interior(g->w, KW, S, g->pad, g->ow, &ow_lo, &ow_hi);
    const int C = g->c, cfull = C / VL * VL;
    for (int c0 = 0; c0 < cfull; c0 += VL)
        bwd_weight_block(pdw + c0, pdb + c0, dy + c0, x + c0, g, r0, r1, ow_lo, ow_hi, FULL_MASK,
                         0, KH, KW, S);
    if (cfull < C)
        bwd_weight_block(pdw + cfull, pdb + cfull, dy + cfull, x + cfull, g, r0, r1, ow_lo,
                         ow_hi, tail_mask(C - cfull), 1, KH, KW, S);
}

static void bwd_weight_range(const qat_conv_geom *g, float *pdw, float *pdb, const float *dy,
                             const float *x, int64_t r0, int64_t r1) {
    const int KH = g->kh, KW = g->kw, S = g->stride;
    DISPATCH_SHAPE(bwd_weight_rows, g, pdw, pdb, dy, x, r0, r1);
}

void NAME(qat_dwconv_bwd_weight)(const qat_conv_geom *g, float *dwk, float *db, const float *dy,
                                 const float *x, float *scratch) {
    if (g->kh > MAXK || g->kw > MAXK) {
        qat_dwconv_bwd_weight_ref(g, dwk, db, dy, x, scratch);
        return;
    }
    const int C = g->c, T = g->kh * g->kw;
    const size_t taps = ((size_t)T * C + 15) & ~(size_t)15, slot = taps + (((size_t)C + 15) & ~(size_t)15);
    const int64_t R = (int64_t)g->n * g->oh;
    const int nch = qat_dw_weight_chunks(g); /* scratch holds nch slots */
    const int nt = threads_for(R * g->ow * C * T, nch);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int k = 0; k < nch; k++) {
        int64_t lo, hi;
        share(R, k, nch, &lo, &hi);
        float *pdw = scratch + (size_t)k * slot;
        bwd_weight_range(g, pdw, pdw + taps, dy, x, lo, hi);
    }
    for (int k = 0; k < nch; k++) {
        const float *pdw = scratch + (size_t)k * slot, *pdb = pdw + taps;
        for (size_t i = 0; i < (size_t)T * C; i++) dwk[i] += pdw[i];
        if (db)
            for (int c = 0; c < C; c++) db[c] += pdb[c];
    }
}
