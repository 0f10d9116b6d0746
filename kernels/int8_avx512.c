/* INT8 kernels for AVX-512 F/BW without VNNI (e.g. Skylake-X), and the depthwise / add / pool
 * kernels of the VNNI512 variant, which VNNI would not speed up.
 *
 * Same widening scheme as int8_avx2.c and for the same reason: vpmaddubsw saturates its int16
 * pair sums (255*(-128)*2 = -65280), so u8 and s8 are widened to s16 and multiplied by vpmaddwd,
 * whose int32 pair sums are exact.
 *
 * GEMM: a packed 16-channel group (64 bytes) is 2 chunks of 32 bytes = 8 channels x 4 K; a chunk
 * widened to 32 s16 times the row's activations (x0 x1 x2 x3 repeated) gives two int32 partials
 * per channel; they are summed once per tile with two vpermt2d. Microkernel: MR rows x NB blocks,
 * 2*MR*NB accumulators (24) + 2*NB weight vectors + a broadcast. */
#include "int8_simd512.h" /* load_x4, requant16, epilogue, store_block, rows_nb, ... */
#include <immintrin.h>

#include <string.h>

#define MRMAX 12
#define DW_ZXLINE_MAX 8192 /* bytes of the zx row above/below the image (in->w * C) on the stack */
#define NBMAX 2

FI void tile(const qat_i8_gemm_job *j, const epilogue *e, int m, int nb0, const int MR,
             const int NB) {
    const qat_i8_gemm_weights *w = j->w;
    const int kg = w->K / 4, krem = w->K % 4;
    const size_t bstride = (size_t)(w->Kp / 4) * 64;
    const int8_t *wp = w->w + (size_t)nb0 * bstride;
    const uint8_t *xp = j->x + (size_t)m * j->ldx;
    const int64_t ldx = j->ldx;
    __m512i acc[MRMAX][2 * NBMAX];
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int q = 0; q < 2 * NB; q++) acc[r][q] = _mm512_setzero_si512();
    for (int g = 0; g <= kg; g++) {
        if (g == kg && !krem) break;
        __m512i wq[2 * NBMAX];
#pragma GCC unroll 4
        for (int q = 0; q < 2 * NB; q++)
            wq[q] = _mm512_cvtepi8_epi16(
                _mm256_loadu_si256((const __m256i *)(wp + (q / 2) * bstride + (size_t)g * 64 + 32 * (q % 2))));
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
            int32_t x4 = g < kg ? load_x4(xp + r * ldx + 4 * g) : load_x_tail(xp + r * ldx + 4 * g, krem);
            __m512i xb = _mm512_cvtepu8_epi16(_mm256_set1_epi32(x4));
#pragma GCC unroll 4
            for (int q = 0; q < 2 * NB; q++) acc[r][q] = _mm512_add_epi32(acc[r][q], _mm512_madd_epi16(xb, wq[q]));
        }
    }
    /* chunk 0 lanes (2c, 2c+1) = partials of channel c, chunk 1 the same for channel 8 + c */
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
#pragma GCC unroll 2
    for (int b = 0; b < NB; b++) {
        int n0 = (nb0 + b) * 16;
        __mmask16 k = lane_mask(w->N - n0);
        __m512i be = _mm512_loadu_si512(w->bias_eff + n0);
        __m512 mult = _mm512_setzero_ps(), fbias = _mm512_setzero_ps();
        if (e->kind != QAT_I8_OUT_S32) mult = _mm512_maskz_loadu_ps(k, e->mult + n0);
        if (e->kind == QAT_I8_OUT_F32 && e->fbias) fbias = _mm512_maskz_loadu_ps(k, e->fbias + n0);
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
            __m512i a0 = acc[r][2 * b], a1 = acc[r][2 * b + 1];
            __m512i s = _mm512_add_epi32(_mm512_permutex2var_epi32(a0, even, a1),
                                         _mm512_permutex2var_epi32(a0, odd, a1));
            store_block(e, m + r, n0, _mm512_add_epi32(s, be), mult, fbias, k);
        }
    }
}

void qat_i8_gemm_rows_avx512(const qat_i8_gemm_job *j, int m0, int m1) {
    const int nblk = j->w->Np / 16;
    const epilogue e = epilogue_of(j);
    int nb = 0;
    for (; nb + 2 <= nblk; nb += 2) rows_nb(j, &e, m0, m1, nb, 6, 2);
    if (nb < nblk) rows_nb(j, &e, m0, m1, nb, 12, 1);
}

/* ---- depthwise --------------------------------------------------------------------------------
 * 32 channels per step, two zmm of int32: even and odd channels. vpmaddwd needs, per int32 lane,
 * the activations of one channel at two taps side by side. Widened to s16, tap 2p holds channels
 * (c, c+1) in each 32-bit lane, so
 *   A = blend(x0, x1 << 16)  -> lane i = (x0[2i], x1[2i])     channel 2i at both taps
 *   B = blend(x0 >> 16, x1)  -> lane i = (x0[2i+1], x1[2i+1]) channel 2i+1 at both taps
 * which costs a shift and a blend (ALU ops) instead of byte shuffles; the weights are packed in
 * the same even/odd order (qat_i8_dw_pair_index). vpermt2d puts the channels back in order
 * before the epilogue. Channel tails use masked loads and stores (the zx row and the packed
 * weights are padded to Cp).
 *
 * Tap addresses: at C = 16 a pixel's arithmetic is ~25 vector ops, about what qat_i8_dw_taps
 * costs, so pixels whose window is inside the image columns (most of them) take their taps as
 * rowp[t] + col, with one table rowp per output row: tap t's input row (or, above and below the
 * image, a row of zx bytes) plus its column offset. Only the border columns build tap arrays. */

/* Where the taps of up to 4 output pixels are read. */
typedef struct {
    const uint8_t *const *tp[4]; /* border columns: tap pointers from qat_i8_dw_taps */
    ptrdiff_t col[4];            /* inner columns: byte offset of the pixel's first input column */
    const uint8_t **rowp;        /* inner columns: tap t at column 0 (shared by the row) */
} dw_src;

FI const uint8_t *dw_tap(const dw_src *s, int q, int t, const int INTERIOR) {
    return INTERIOR ? s->rowp[t] + s->col[q] : s->tp[q][t];
}

/* Fills rowp (T + 1 entries) for output row (n, oh): tap t's input row at column 0 and its column
 * offset, rows outside the image reading zxline (in->w * C bytes of zx, NULL if unavailable:
 * then returns 0 for such rows and the caller uses tap arrays). The extra tap of an odd count
 * has weight 0, so it may read any valid byte: tap 0's. */
static inline int dw_row_taps(const qat_i8_dw_job *j, int n, int oh, const uint8_t *zxline,
                              const uint8_t **rowp) {
    const int C = j->in.c, kh = j->p.kh, kw = j->p.kw, ih0 = oh * j->p.stride - j->p.pad;
    if (!zxline && (ih0 < 0 || ih0 + kh > j->in.h)) return 0;
    for (int i = 0; i < kh; i++) {
        int ih = ih0 + i;
        const uint8_t *rp = ih < 0 || ih >= j->in.h ? zxline : j->x + (((size_t)n * j->in.h + ih) * j->in.w) * C;
        for (int jj = 0; jj < kw; jj++) rowp[i * kw + jj] = rp + (size_t)jj * C;
    }
    rowp[kh * kw] = rowp[0];
    return 1;
}

/* Channels [c, c+32) of PIX output pixels (outputs yp[i]) with NP tap pairs; PIX and NP are
 * constants at the call sites, so the loops unroll and the pixels share weight loads. */
FI void dw_block(const qat_i8_dw_job *j, const dw_src *s, uint8_t *const *yp, int c, const int PIX,
                 const int NP, int np_rt, const int FULL, const int INTERIOR) {
    const qat_i8_dw_weights *w = j->w;
    const int C = j->in.c, cp = w->Cp, np = NP ? NP : np_rt;
    const __mmask32 k = C - c >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << (C - c)) - 1);
    __m512i ae[4], ao[4];
#pragma GCC unroll 4
    for (int i = 0; i < PIX; i++) ae[i] = ao[i] = _mm512_setzero_si512();
    const int16_t *wp = w->w + qat_i8_dw_pair_index(cp, 0, c);
#pragma GCC unroll 13
    for (int p = 0; p < np; p++, wp += cp * 2) {
        __m512i we = _mm512_loadu_si512(wp), wo = _mm512_loadu_si512(wp + 32);
#pragma GCC unroll 4
        for (int i = 0; i < PIX; i++) {
            const uint8_t *t0 = dw_tap(s, i, 2 * p, INTERIOR) + c, *t1 = dw_tap(s, i, 2 * p + 1, INTERIOR) + c;
            __m512i x0, x1;
            if (FULL) { /* unmasked loads where possible: masked ones cost more on some cores */
                x0 = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)t0));
                x1 = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)t1));
            } else {
                x0 = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(k, t0));
                x1 = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(k, t1));
            }
            __m512i a = _mm512_mask_blend_epi16(0xAAAAAAAAu, x0, _mm512_slli_epi32(x1, 16));
            __m512i b = _mm512_mask_blend_epi16(0xAAAAAAAAu, _mm512_srli_epi32(x0, 16), x1);
            ae[i] = _mm512_add_epi32(ae[i], _mm512_madd_epi16(a, we));
            ao[i] = _mm512_add_epi32(ao[i], _mm512_madd_epi16(b, wo));
        }
    }
    const __m512i lo16 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi16 = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512 flo = _mm512_set1_ps((float)(j->lo - j->zy)), fhi = _mm512_set1_ps((float)(j->hi - j->zy));
    const __m512i zy = _mm512_set1_epi32(j->zy);
    const __mmask16 k0 = (__mmask16)k, k1 = (__mmask16)(k >> 16);
    const __m512i b0 = _mm512_loadu_si512(w->bias_eff + c), b1 = _mm512_loadu_si512(w->bias_eff + c + 16);
    const __m512 m0 = _mm512_maskz_loadu_ps(k0, j->mult + c), m1 = _mm512_maskz_loadu_ps(k1, j->mult + c + 16);
#pragma GCC unroll 4
    for (int i = 0; i < PIX; i++) {
        __m512i s0 = _mm512_add_epi32(_mm512_permutex2var_epi32(ae[i], lo16, ao[i]), b0);
        __m512i s1 = _mm512_add_epi32(_mm512_permutex2var_epi32(ae[i], hi16, ao[i]), b1);
        if (FULL) {
            _mm_storeu_si128((__m128i *)(yp[i] + c), requant16(s0, m0, flo, fhi, zy));
            _mm_storeu_si128((__m128i *)(yp[i] + c + 16), requant16(s1, m1, flo, fhi, zy));
        } else {
            _mm_mask_storeu_epi8(yp[i] + c, k0, requant16(s0, m0, flo, fhi, zy));
            if (k1) _mm_mask_storeu_epi8(yp[i] + c + 16, k1, requant16(s1, m1, flo, fhi, zy));
        }
    }
}

FI void dw_pixels(const qat_i8_dw_job *j, const dw_src *s, uint8_t *const *yp, const int PIX,
                  const int INTERIOR) {
    const int C = j->in.c, np = j->w->npairs;
    int c = 0;
    for (; c + 32 <= C; c += 32) {
        if (np == 5) /* 3x3 */
            dw_block(j, s, yp, c, PIX, 5, np, 1, INTERIOR);
        else if (np == 13) /* 5x5 */
            dw_block(j, s, yp, c, PIX, 13, np, 1, INTERIOR);
        else
            dw_block(j, s, yp, c, PIX, 0, np, 1, INTERIOR);
    }
    if (c < C) dw_block(j, s, yp, c, PIX, 0, np, 0, INTERIOR);
}

/* ---- C <= 16: two pixels per zmm ----------------------------------------------------------------
 * A 32-channel step would waste half of every vector (and mask every load). Instead the low
 * 256-bit half of a vector holds pixel q's 16 channels and the high half pixel q+1's, so the
 * widened lanes of the high half are again (channel 2i, 2i+1) pairs; the weights of channels
 * 0..15 (lanes 0..7 of the even and odd vectors) are repeated in both halves once per call. */

/* Even/odd weight vectors of pair p with lanes 0..7 repeated in lanes 8..15. */
FI void dw16_weights(const qat_i8_dw_weights *w, int p, __m512i *we, __m512i *wo) {
    const int16_t *wp = w->w + qat_i8_dw_pair_index(w->Cp, p, 0);
    __m512i e = _mm512_loadu_si512(wp), o = _mm512_loadu_si512(wp + 32);
    *we = _mm512_shuffle_i64x2(e, e, _MM_SHUFFLE(1, 0, 1, 0));
    *wo = _mm512_shuffle_i64x2(o, o, _MM_SHUFFLE(1, 0, 1, 0));
}

/* The C channels of pixels q (low half) and q+1 (high half) at tap t, widened to s16. */
FI __m512i dw16_load(const dw_src *s, int q, int t, __mmask16 k, const int FULL, const int INTERIOR) {
    const uint8_t *a = dw_tap(s, q, t, INTERIOR), *b = dw_tap(s, q + 1, t, INTERIOR);
    __m128i va = FULL ? _mm_loadu_si128((const __m128i *)a) : _mm_maskz_loadu_epi8(k, a);
    __m128i vb = FULL ? _mm_loadu_si128((const __m128i *)b) : _mm_maskz_loadu_epi8(k, b);
    return _mm512_cvtepu8_epi16(_mm256_inserti128_si256(_mm256_castsi128_si256(va), vb, 1));
}

/* Epilogue constants of the C <= 16 kernel (channels 0..15). */
typedef struct {
    __m512i bias, zy;
    __m512 mult, flo, fhi;
    __mmask16 k;
} dw16_epi;

/* 2*PP output pixels yp[0..2*PP) (a pixel may repeat: it is then computed and stored twice). wv
 * holds the repeated weights of the NP pairs when NP is a constant (else they are loaded here). */
FI void dw16_step(const qat_i8_dw_job *j, const dw_src *s, uint8_t *const *yp, const __m512i *wv,
                  const dw16_epi *e, const int NP, const int FULL, const int INTERIOR, const int PP) {
    const int np = NP ? NP : j->w->npairs;
    __m512i ae[2], ao[2];
#pragma GCC unroll 2
    for (int h = 0; h < PP; h++) ae[h] = ao[h] = _mm512_setzero_si512();
#pragma GCC unroll 13
    for (int p = 0; p < np; p++) {
        __m512i we, wo;
        if (NP) {
            we = wv[2 * p];
            wo = wv[2 * p + 1];
        } else {
            dw16_weights(j->w, p, &we, &wo);
        }
#pragma GCC unroll 2
        for (int h = 0; h < PP; h++) {
            __m512i x0 = dw16_load(s, 2 * h, 2 * p, e->k, FULL, INTERIOR);
            __m512i x1 = dw16_load(s, 2 * h, 2 * p + 1, e->k, FULL, INTERIOR);
            __m512i a = _mm512_mask_blend_epi16(0xAAAAAAAAu, x0, _mm512_slli_epi32(x1, 16));
            __m512i b = _mm512_mask_blend_epi16(0xAAAAAAAAu, _mm512_srli_epi32(x0, 16), x1);
            ae[h] = _mm512_add_epi32(ae[h], _mm512_madd_epi16(a, we));
            ao[h] = _mm512_add_epi32(ao[h], _mm512_madd_epi16(b, wo));
        }
    }
    /* lanes 0..7 of ae/ao: even/odd channels of the low pixel, 8..15 of the high pixel */
    const __m512i lo16 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi16 = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
#pragma GCC unroll 2
    for (int h = 0; h < PP; h++) {
        __m512i s0 = _mm512_add_epi32(_mm512_permutex2var_epi32(ae[h], lo16, ao[h]), e->bias);
        __m512i s1 = _mm512_add_epi32(_mm512_permutex2var_epi32(ae[h], hi16, ao[h]), e->bias);
        __m128i v0 = requant16(s0, e->mult, e->flo, e->fhi, e->zy);
        __m128i v1 = requant16(s1, e->mult, e->flo, e->fhi, e->zy);
        if (FULL) {
            _mm_storeu_si128((__m128i *)yp[2 * h], v0);
            _mm_storeu_si128((__m128i *)yp[2 * h + 1], v1);
        } else {
            _mm_mask_storeu_epi8(yp[2 * h], e->k, v0);
            _mm_mask_storeu_epi8(yp[2 * h + 1], e->k, v1);
        }
    }
}

/* Pixels ow and ow + 1 (clipped to `last`, then repeated) of row (n, oh), border or not. */
FI void dw16_pair_border(const qat_i8_dw_job *j, dw_src *s, const uint8_t **taps0,
                         const uint8_t **taps1, uint8_t *yrow, int n, int oh, int ow, int last,
                         const __m512i *wv, const dw16_epi *e, const int NP, const int FULL) {
    const int C = j->in.c;
    uint8_t *yp[2] = {yrow + (size_t)ow * C, yrow + (size_t)(ow + 1 <= last ? ow + 1 : ow) * C};
    qat_i8_dw_taps(j, n, oh, ow, taps0);
    s->tp[0] = taps0;
    s->tp[1] = taps0;
    if (ow + 1 <= last) {
        qat_i8_dw_taps(j, n, oh, ow + 1, taps1);
        s->tp[1] = taps1;
    }
    dw16_step(j, s, yp, wv, e, NP, FULL, 0, 1);
}

/* Inner-column pixels ow .. ow + 2*PP - 1 (clipped to `last`, then repeated); s->rowp is set. */
FI void dw16_interior(const qat_i8_dw_job *j, dw_src *s, uint8_t *yrow, int ow, int last, const __m512i *wv, const dw16_epi *e, const int NP,
                      const int FULL, const int PP) {
    const int C = j->in.c, S = j->p.stride;
    uint8_t *yp[4];
#pragma GCC unroll 4
    for (int q = 0; q < 2 * PP; q++) {
        int o = ow + q <= last ? ow + q : last;
        s->col[q] = (ptrdiff_t)(o * S - j->p.pad) * C;
        yp[q] = yrow + (size_t)o * C;
    }
    dw16_step(j, s, yp, wv, e, NP, FULL, 1, PP);
}

/* Output rows [r0, r1) for C <= 16 (FULL: C == 16): the inner columns [ow_lo, ow_hi) 4 pixels
 * per step with rowp + col taps, the border columns in pairs with tap arrays. */
FI void dw16_rows(const qat_i8_dw_job *j, int r0, int r1, const uint8_t *zxline, int ow_lo,
                  int ow_hi, const int NP, const int FULL) {
    const qat_i8_dw_weights *w = j->w;
    const int C = j->in.c, OW = j->ow;
    __m512i wv[2 * 13]; /* NP <= 13 when constant */
#pragma GCC unroll 13
    for (int p = 0; p < NP; p++) dw16_weights(w, p, &wv[2 * p], &wv[2 * p + 1]);
    const __mmask16 k = lane_mask(C);
    const dw16_epi e = {_mm512_loadu_si512(w->bias_eff), _mm512_set1_epi32(j->zy),
                        _mm512_maskz_loadu_ps(k, j->mult), _mm512_set1_ps((float)(j->lo - j->zy)),
                        _mm512_set1_ps((float)(j->hi - j->zy)), k};
    const uint8_t *taps[2][QAT_I8_DW_MAX_TAPS + 1];
    const uint8_t *rowp[QAT_I8_DW_MAX_TAPS + 1];
    dw_src s = {{taps[0], taps[1]}, {0}, rowp};
    for (int r = r0; r < r1; r++) {
        const int n = r / j->oh, oh = r % j->oh;
        uint8_t *yrow = j->y + ((size_t)n * j->oh + oh) * OW * C;
        int ow = 0;
        if (dw_row_taps(j, n, oh, zxline, rowp)) {
            for (; ow < ow_lo && ow < OW; ow += 2)
                dw16_pair_border(j, &s, taps[0], taps[1], yrow, n, oh, ow, OW - 1, wv, &e, NP, FULL);
            for (; ow + 4 <= ow_hi; ow += 4)
                dw16_interior(j, &s, yrow, ow, ow_hi - 1, wv, &e, NP, FULL, 2);
            if (ow + 2 < ow_hi) { /* 3 left: a step of 4 with the last one repeated */
                dw16_interior(j, &s, yrow, ow, ow_hi - 1, wv, &e, NP, FULL, 2);
                ow = ow_hi;
            } else if (ow < ow_hi) {
                dw16_interior(j, &s, yrow, ow, ow_hi - 1, wv, &e, NP, FULL, 1);
                ow = ow_hi;
            }
        }
        for (; ow < OW; ow += 2)
            dw16_pair_border(j, &s, taps[0], taps[1], yrow, n, oh, ow, OW - 1, wv, &e, NP, FULL);
    }
}

void qat_i8_dw_rows_avx512(const qat_i8_dw_job *j, int r0, int r1) {
    const int C = j->in.c, kw = j->p.kw, S = j->p.stride, pad = j->p.pad;
    /* a row of zx for the taps above and below the image (job's zx_row is only Cp bytes) */
    uint8_t zxbuf[DW_ZXLINE_MAX];
    const size_t wc = (size_t)j->in.w * C;
    const uint8_t *zxline = NULL;
    if (wc <= sizeof zxbuf) {
        memset(zxbuf, j->w->zx, wc);
        zxline = zxbuf;
    }
    /* output columns whose kw input columns are all inside the row */
    int ow_lo = (pad + S - 1) / S, ow_hi = j->in.w - kw + pad >= 0 ? (j->in.w - kw + pad) / S + 1 : 0;
    if (ow_hi > j->ow) ow_hi = j->ow;
    if (C <= 16) {
        const int np = j->w->npairs;
        if (np == 5 && C == 16) dw16_rows(j, r0, r1, zxline, ow_lo, ow_hi, 5, 1);
        else if (np == 5) dw16_rows(j, r0, r1, zxline, ow_lo, ow_hi, 5, 0);
        else if (C == 16) dw16_rows(j, r0, r1, zxline, ow_lo, ow_hi, 0, 1);
        else dw16_rows(j, r0, r1, zxline, ow_lo, ow_hi, 0, 0);
        return;
    }
    const uint8_t *taps[2][QAT_I8_DW_MAX_TAPS + 1];
    const uint8_t *rowp[QAT_I8_DW_MAX_TAPS + 1];
    dw_src s = {{taps[0], taps[1]}, {0}, rowp};
    for (int r = r0; r < r1; r++) {
        const int n = r / j->oh, oh = r % j->oh;
        uint8_t *row = j->y + ((size_t)n * j->oh + oh) * j->ow * C;
        int ow = 0;
        if (dw_row_taps(j, n, oh, zxline, rowp)) {
            /* border columns one by one, the inner ones 4 (then 2, 1) sharing weight loads */
            for (; ow < ow_lo && ow < j->ow; ow++) {
                qat_i8_dw_taps(j, n, oh, ow, taps[0]);
                uint8_t *yp[1] = {row + (size_t)ow * C};
                dw_pixels(j, &s, yp, 1, 0);
            }
            for (; ow + 4 <= ow_hi; ow += 4) {
                uint8_t *yp[4];
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++) {
                    s.col[q] = (ptrdiff_t)((ow + q) * S - pad) * C;
                    yp[q] = row + (size_t)(ow + q) * C;
                }
                dw_pixels(j, &s, yp, 4, 1);
            }
            if (ow + 2 <= ow_hi) {
                s.col[0] = (ptrdiff_t)(ow * S - pad) * C;
                s.col[1] = s.col[0] + (ptrdiff_t)S * C;
                uint8_t *yp[2] = {row + (size_t)ow * C, row + (size_t)(ow + 1) * C};
                dw_pixels(j, &s, yp, 2, 1);
                ow += 2;
            }
            if (ow < ow_hi) {
                s.col[0] = (ptrdiff_t)(ow * S - pad) * C;
                uint8_t *yp[1] = {row + (size_t)ow * C};
                dw_pixels(j, &s, yp, 1, 1);
                ow++;
            }
        }
        for (; ow + 2 <= j->ow; ow += 2) { /* two pixels share each weight load */
            uint8_t *yp[2] = {row + (size_t)ow * C, row + (size_t)(ow + 1) * C};
            qat_i8_dw_taps(j, n, oh, ow, taps[0]);
            qat_i8_dw_taps(j, n, oh, ow + 1, taps[1]);
            dw_pixels(j, &s, yp, 2, 0);
        }
        if (ow < j->ow) {
            qat_i8_dw_taps(j, n, oh, ow, taps[0]);
            uint8_t *yp[1] = {row + (size_t)ow * C};
            dw_pixels(j, &s, yp, 1, 0);
        }
    }
}

/* ---- element-wise add -------------------------------------------------------------------------- */

/* 16 elements; see qat_i8_add_one for the definition. The asm keeps each product rounded. */
FI __m128i add16(__m128i a16, __m128i b16, const qat_i8_add_params *p) {
    __m512 fa = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(a16), _mm512_set1_epi32(p->za))),
                              _mm512_set1_ps(p->sa));
    __m512 fb = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(b16), _mm512_set1_epi32(p->zb))),
                              _mm512_set1_ps(p->sb));
    __asm__("" : "+v"(fa), "+v"(fb));
    __m512 f = _mm512_mul_ps(_mm512_add_ps(fa, fb), _mm512_set1_ps(p->inv_sy));
    f = _mm512_min_ps(_mm512_max_ps(f, _mm512_set1_ps((float)(p->lo - p->zy))), _mm512_set1_ps((float)(p->hi - p->zy)));
    return _mm512_cvtusepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(f), _mm512_set1_epi32(p->zy)));
}

void qat_i8_add_range_avx512(uint8_t *y, const uint8_t *a, const uint8_t *b, int64_t i0,
                             int64_t i1, const qat_i8_add_params *p) {
    for (int64_t i = i0; i < i1; i += 16) {
        __mmask16 k = lane_mask((int)(i1 - i < 16 ? i1 - i : 16));
        __m128i v = add16(_mm_maskz_loadu_epi8(k, a + i), _mm_maskz_loadu_epi8(k, b + i), p);
        _mm_mask_storeu_epi8(y + i, k, v);
    }
}

/* ---- global average pool ----------------------------------------------------------------------- */

void qat_i8_pool_images_avx512(uint8_t *y, const uint8_t *x, const qat_i8_dims *in,
                               const qat_i8_pool_params *p, int n0, int n1) {
    const int hw = in->h * in->w, C = in->c;
    const __m512 mult = _mm512_set1_ps(p->mult);
    const __m512 flo = _mm512_set1_ps((float)(p->lo - p->zy)), fhi = _mm512_set1_ps((float)(p->hi - p->zy));
    const __m512i zy = _mm512_set1_epi32(p->zy), off = _mm512_set1_epi32(hw * p->zx);
    for (int n = n0; n < n1; n++) {
        const uint8_t *img = x + (size_t)n * hw * C;
        for (int c = 0; c < C; c += 16) {
            __mmask16 k = lane_mask(C - c);
            __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
            int i = 0;
            for (; i + 2 <= hw; i += 2) { /* two chains so the adds overlap */
                s0 = _mm512_add_epi32(s0, _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, img + (size_t)i * C + c)));
                s1 = _mm512_add_epi32(s1, _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, img + (size_t)(i + 1) * C + c)));
            }
            if (i < hw) s0 = _mm512_add_epi32(s0, _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, img + (size_t)i * C + c)));
            __m512i acc = _mm512_sub_epi32(_mm512_add_epi32(s0, s1), off);
            _mm_mask_storeu_epi8(y + (size_t)n * C + c, k, requant16(acc, mult, flo, fhi, zy));
        }
    }
}

/* ---- channel-wise multiply (squeeze-and-excite): the exact int32 product of the centred codes,
 * requantized as the GEMM epilogue does ---------------------------------------------------------- */

void qat_i8_mul_pixels_avx512(uint8_t *y, const uint8_t *x, const uint8_t *g, const qat_i8_dims *in,
                              const qat_i8_mul_params *p, int64_t p0, int64_t p1) {
    const int C = in->c;
    const int64_t hw = (int64_t)in->h * in->w;
    const __m512i zx = _mm512_set1_epi32(p->zx), zg = _mm512_set1_epi32(p->zg), zy = _mm512_set1_epi32(p->zy);
    const __m512 flo = _mm512_set1_ps((float)(p->lo - p->zy)), fhi = _mm512_set1_ps((float)(p->hi - p->zy));
    for (int64_t px = p0; px < p1; px++) {
        const uint8_t *gr = g + (px / hw) * C, *xr = x + px * C;
        uint8_t *yr = y + px * C;
        for (int c = 0; c < C; c += 16) {
            __mmask16 k = lane_mask(C - c);
            __m512i a = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, xr + c)), zx);
            __m512i b = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, gr + c)), zg);
            __m512 mult = _mm512_maskz_loadu_ps(k, p->mult + c);
            _mm_mask_storeu_epi8(yr + c, k, requant16(_mm512_mullo_epi32(a, b), mult, flo, fhi, zy));
        }
    }
}
