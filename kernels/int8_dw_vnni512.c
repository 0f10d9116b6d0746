/* INT8 depthwise conv on vpdpbusd (the VNNI512 path; the AVX-512 kernel in int8_avx512.c and
 * the scalar qat_i8_dw_rows_ref compute the same bytes). On CPUs with AVX512-VBMI the 3x3 and
 * 5x5 convs at strides 1 and 2 run the tile kernel of int8_dw_vnnivbmi.c instead, which builds
 * the same quads in registers; this quad-row kernel runs the other shapes and CPUs.
 *
 * vpdpbusd adds to each int32 lane the 4 products of the lane's 4 u8 activations and 4 s8
 * weights, exactly (no saturation). With one channel per lane, the 4 bytes of a lane must be 4
 * taps of that channel: the weights are packed so once (qat_i8_dw_weights.wq: per kernel row,
 * taps in quads along the row, 16 channels per zmm), and the activations are rearranged per
 * input row into "quad rows": position i of a quad row holds, for every channel, the bytes of
 * padded columns s*i .. s*i+3 (s = stride, 1 or 2; columns outside the image hold zx). Then the
 * taps of quad q of kernel row i for output column ow are one 64-byte load at position
 * ow + 4q/s, and a 3x3 conv is 3 vpdpbusd per 16 channels and output pixel (9 of their 12
 * weights nonzero), a 5x5 10 (25 of 40), against 5 or 13 widening multiply-adds per 16
 * channels on the AVX-512 path.
 *
 * Building a quad row costs a few operations per position and 16 channels: sliding along the
 * row, quad(i) = quad(i - 1) >> 8s | the s new columns on top, in each lane. Each thread keeps the
 * quad rows of its last KH input rows in its scratch slot (a ring indexed by input row mod KH),
 * so at stride 1 each input row is rearranged once per thread, not KH times; rows above and
 * below the image read one quad row of zx.
 *
 * The integers: acc = bias_eff + sum over all padded taps of x * w, where a padded tap reads zx
 * and the zero weights (4th byte of a 3-tap quad, channels past C) multiply whatever is there;
 * that is the reference's sum, and the epilogue is the shared requant16: bit-identical. */
#define QAT_I8_SIMD512_REQUANT_ONLY
#include "int8_simd512.h" /* requant16, lane_mask */
#include <immintrin.h>

/* Column pc of the padded input row (pad columns of zx each side) for channels [c, c+16), one
 * byte per int32 lane, zero-extended; k masks the channel tail (FULL: no tail). */
__attribute__((always_inline)) static inline __m512i column(const uint8_t *row, int pc, int pad,
                                                            int W, int C, int c, __mmask16 k,
                                                            __m512i zx, const int FULL) {
    if (pc < pad || pc >= pad + W) return zx;
    const uint8_t *p = row + (size_t)(pc - pad) * C + c;
    return _mm512_cvtepu8_epi32(FULL ? _mm_loadu_si128((const __m128i *)p) : _mm_maskz_loadu_epi8(k, p));
}

/* Channels [c, c+16) of a quad row: position i holds padded columns s*i .. s*i+3 (s = stride, 1
 * or 2: the only positions the taps read). Sliding: position i is position i - 1 shifted down
 * by s bytes per lane with the s new columns on top. */
__attribute__((always_inline)) static inline void quad_block(const qat_i8_dw_job *j, const uint8_t *row,
                                                             __m512i *dst, size_t step, int c,
                                                             const int FULL) {
    const int C = j->in.c, W = j->in.w, pad = j->p.pad, s = j->p.stride;
    const int npos = qat_i8_dw_quad_cols(j->ow, s, j->w->nq);
    const __mmask16 k = lane_mask(C - c);
    const __m512i zx = _mm512_set1_epi32(j->w->zx);
    __m512i v = _mm512_or_si512(
        _mm512_or_si512(column(row, 0, pad, W, C, c, k, zx, FULL),
                        _mm512_slli_epi32(column(row, 1, pad, W, C, c, k, zx, FULL), 8)),
        _mm512_or_si512(_mm512_slli_epi32(column(row, 2, pad, W, C, c, k, zx, FULL), 16),
                        _mm512_slli_epi32(column(row, 3, pad, W, C, c, k, zx, FULL), 24)));
    _mm512_store_si512(dst, v);
    if (s == 1) {
        for (int i = 1; i < npos; i++) {
            v = _mm512_or_si512(_mm512_srli_epi32(v, 8),
                                _mm512_slli_epi32(column(row, i + 3, pad, W, C, c, k, zx, FULL), 24));
            _mm512_store_si512(dst + (size_t)i * step, v);
        }
    } else {
        for (int i = 1; i < npos; i++) {
            __m512i hi = _mm512_or_si512(_mm512_slli_epi32(column(row, 2 * i + 2, pad, W, C, c, k, zx, FULL), 16),
                                         _mm512_slli_epi32(column(row, 2 * i + 3, pad, W, C, c, k, zx, FULL), 24));
            v = _mm512_or_si512(_mm512_srli_epi32(v, 16), hi);
            _mm512_store_si512(dst + (size_t)i * step, v);
        }
    }
}

/* Quad row of input row `ih` of image n into q (qat_i8_dw_quad_row_bytes of them). */
static void build_quad_row(const qat_i8_dw_job *j, int n, int ih, uint8_t *q) {
    const int C = j->in.c, c16 = (C + 15) / 16;
    const uint8_t *row = j->x + ((size_t)n * j->in.h + ih) * j->in.w * C;
    int cb = 0;
    for (; cb < C / 16; cb++) quad_block(j, row, (__m512i *)q + cb, (size_t)c16, cb * 16, 1);
    if (cb < c16) quad_block(j, row, (__m512i *)q + cb, (size_t)c16, cb * 16, 0);
}

/* Requantization constants, copied out of the job once: stores through uint8_t pointers may
 * alias the job, so reading them from *j after each store would reload and rebroadcast them. */
typedef struct {
    __m512 flo, fhi;
    __m512i zy;
} dw_epi;

/* 16 channels from c of output pixels [ow0, ow0 + PIX) of one output row. rows[i]: the quad row
 * of kernel row i at this channel block; wv: the block's KQ weight quads (KQ = KH * nq, taps of
 * row i at wv[i * nq + q]); bias, mult: the block's. PIX and KQ are constants at the call
 * sites: the accumulators and weights stay in registers. Position (ow, quad q) of a quad row is
 * ow + 4q/s (the row holds every s-th column position). */
__attribute__((always_inline)) static inline void
pixels(const uint8_t *const *rows, const __m512i *wv, int nq, int qstep, size_t col, int ow0,
       uint8_t *yrow, int C, __m512i bias, __m512 mult, const dw_epi *e, const int PIX,
       const int KQ, const int FULL, __mmask16 k) {
    __m512i acc[8];
#pragma GCC unroll 8
    for (int p = 0; p < PIX; p++) acc[p] = bias;
#pragma GCC unroll 25
    for (int t = 0; t < KQ; t++) {
        const uint8_t *base = rows[t / nq] + (size_t)(t % nq) * qstep * col;
#pragma GCC unroll 8
        for (int p = 0; p < PIX; p++)
            acc[p] = _mm512_dpbusd_epi32(acc[p], _mm512_load_si512(base + (size_t)(ow0 + p) * col), wv[t]);
    }
#pragma GCC unroll 8
    for (int p = 0; p < PIX; p++) {
        __m128i v = requant16(acc[p], mult, e->flo, e->fhi, e->zy);
        uint8_t *yp = yrow + (size_t)(ow0 + p) * C;
        if (FULL)
            _mm_storeu_si128((__m128i *)yp, v);
        else
            _mm_mask_storeu_epi8(yp, k, v);
    }
}

/* One output row, all channel blocks; KQ = KH * nq known at compile time (0: use kq). */
__attribute__((always_inline)) static inline void
out_row(const qat_i8_dw_job *j, const uint8_t *const *qrows, uint8_t *yrow, const int KQ) {
    const qat_i8_dw_weights *w = j->w;
    const int C = j->in.c, c16 = (C + 15) / 16, nq = w->nq, kh = j->p.kh, OW = j->ow;
    const int kq = KQ ? KQ : kh * nq, qstep = 4 / j->p.stride, cp16 = w->Cp / 16;
    const size_t col = (size_t)c16 * 64; /* bytes from one quad position to the next */
    const float *multp = j->mult;
    const dw_epi e = {_mm512_set1_ps((float)(j->lo - j->zy)), _mm512_set1_ps((float)(j->hi - j->zy)),
                      _mm512_set1_epi32(j->zy)};
    for (int cb = 0; cb < c16; cb++) {
        const int c = cb * 16;
        const __mmask16 k = lane_mask(C - c);
        __m512i wv[QAT_I8_DW_MAX_TAPS]; /* kq <= kh * nq <= 128 quads */
#pragma GCC unroll 25
        for (int t = 0; t < kq; t++) wv[t] = _mm512_loadu_si512(w->wq + ((size_t)t * cp16 + cb) * 64);
        const uint8_t *rows[QAT_I8_DW_MAX_TAPS];
        for (int i = 0; i < kh; i++) rows[i] = qrows[i] + (size_t)cb * 64;
        const __m512i bias = _mm512_loadu_si512(w->bias_eff + c);
        const __m512 mult = _mm512_maskz_loadu_ps(k, multp + c);
        uint8_t *yc = yrow + c;
        /* 4 pixels at a time: 4 independent vpdpbusd chains. The last group of a row overlaps
         * the one before (recomputing up to 3 pixels, same bytes) rather than running pixels
         * one by one, whose single chain of KQ dependent vpdpbusd would wait on their latency
         * (7x7 rows: 3 of 7 pixels). */
        if (OW >= 4) {
            for (int ow = 0;; ow += 4) {
                if (ow + 4 > OW) ow = OW - 4;
                if (C - c >= 16)
                    pixels(rows, wv, nq, qstep, col, ow, yc, C, bias, mult, &e, 4, kq, 1, k);
                else
                    pixels(rows, wv, nq, qstep, col, ow, yc, C, bias, mult, &e, 4, kq, 0, k);
                if (ow + 4 >= OW) break;
            }
        } else {
            for (int ow = 0; ow < OW; ow++)
                pixels(rows, wv, nq, qstep, col, ow, yc, C, bias, mult, &e, 1, kq, 0, k);
        }
    }
}

static void out_row_3x3(const qat_i8_dw_job *j, const uint8_t *const *q, uint8_t *y) { out_row(j, q, y, 3); }
static void out_row_5x5(const qat_i8_dw_job *j, const uint8_t *const *q, uint8_t *y) { out_row(j, q, y, 10); }
static void out_row_any(const qat_i8_dw_job *j, const uint8_t *const *q, uint8_t *y) { out_row(j, q, y, 0); }

void qat_i8_dw_rows_vnni512(const qat_i8_dw_job *j, int r0, int r1) {
    if (qat_i8_dw_vbmi_fits(&j->p) && qat_cpu_has_avx512_vbmi()) qat_i8_dw_rows_vnnivbmi(j, r0, r1);
    else qat_i8_dw_rows_vnni512_quads(j, r0, r1);
}

void qat_i8_dw_rows_vnni512_quads(const qat_i8_dw_job *j, int r0, int r1) {
    const int kh = j->p.kh, kw = j->p.kw, H = j->in.h, C = j->in.c;
    const size_t rb = qat_i8_dw_quad_row_bytes(j->ow, j->p.stride, j->w->nq, C);
    uint8_t *zxq = j->slot + (size_t)kh * rb; /* the row of zx after the KH ring rows */
    memset(zxq, j->w->zx, rb);
    int64_t tag[QAT_I8_DW_MAX_TAPS]; /* ring slot i holds input row tag[i] = n * H + ih */
    for (int i = 0; i < kh; i++) tag[i] = -1;
    void (*row_fn)(const qat_i8_dw_job *, const uint8_t *const *, uint8_t *) =
        kh == 3 && kw == 3 ? out_row_3x3 : kh == 5 && kw == 5 ? out_row_5x5 : out_row_any;
    const uint8_t *qrows[QAT_I8_DW_MAX_TAPS];
    for (int r = r0; r < r1; r++) {
        const int n = r / j->oh, oh = r % j->oh, ih0 = oh * j->p.stride - j->p.pad;
        for (int i = 0; i < kh; i++) {
            const int ih = ih0 + i;
            if (ih < 0 || ih >= H) {
                qrows[i] = zxq;
                continue;
            }
            /* kh consecutive rows have distinct ih % kh: a window never evicts its own rows */
            const int s = ih % kh;
            uint8_t *q = j->slot + (size_t)s * rb;
            if (tag[s] != (int64_t)n * H + ih) {
                build_quad_row(j, n, ih, q);
                tag[s] = (int64_t)n * H + ih;
            }
            qrows[i] = q;
        }
        row_fn(j, qrows, j->y + (size_t)r * j->ow * C);
    }
}
