/* INT8 depthwise 3x3 and 5x5 conv, strides 1 and 2, on vpdpbusd with the tap quads built in
 * registers by vpermt2b (AVX512-VNNI + AVX512-VBMI: Ice Lake and later, Zen 4 and later; the
 * quad-row kernel in int8_dw_vnni512.c runs the other shapes and the CPUs without VBMI).
 *
 * As there, one int32 lane per channel holds 4 taps of a kernel row (bytes b = 0..3 = padded
 * columns col0 + b) and is multiplied by the packed weight quads (qat_i8_dw_weights.wq); a 3x3
 * conv is 3 vpdpbusd per 16 channels and output pixel, a 5x5 10. The difference is where the
 * quads live. The quad-row kernel writes every quad of an input row to memory and reads it
 * back, a 64-byte store per input position and channel block (two cycles of Zen 4's store
 * port; at stride 2 two input rows per output row), which took most of its time. Here a tile
 * of R output rows x P output columns x 16 channels keeps its R*P accumulators in registers and
 * walks the (R-1)*S + KH input rows it reads; along each row the quads slide: the next quad is
 * the previous one moved down S bytes per lane with the S new columns' bytes on top, one
 * vpermt2b from the previous quad and a 16- or 32-byte load of the new columns. Each quad goes
 * straight into the vpdpbusd of the up to KH/S output rows of the tile that use that input row.
 * A band of R rows is walked in tiles from left to right, each tile starting from the last quads
 * of the one before, so a slide is done once per band, input row and output column. At 5x5 the
 * fifth kernel column gets no quad of its own (the quad-row kernel's quad 1: one tap, 4 more
 * slides per row): it is byte 4 - S of the next output column's quad, the weight moved there.
 * Columns and rows outside the image read the job's zx row, so the sum is the reference's
 * (padded taps x zx, zero weights x whatever), and the epilogue is the shared requant16:
 * bit-identical to qat_i8_dw_rows_ref. */
#define QAT_I8_SIMD512_REQUANT_ONLY
#include "int8_simd512.h" /* requant16, lane_mask */
#include <immintrin.h>

/* vpermt2b index of one slide: byte b of lane l takes byte b + S of the old quad (b < 4 - S)
 * or, for the S new columns, byte l of column b - (4 - S) (bytes 16..31 of the second table
 * hold the second column at stride 2). */
FI __m512i slide_index(const int S) {
    uint8_t ix[64];
    for (int l = 0; l < 16; l++)
        for (int b = 0; b < 4; b++)
            ix[l * 4 + b] = (uint8_t)(b < 4 - S ? l * 4 + b + S : 64 + 16 * (b - (4 - S)) + l);
    return _mm512_loadu_si512(ix);
}

/* The new columns of one slide (S = 1: one, 2: two side by side in bytes 0..31), channels c ..
 * c+15 (k: the valid ones) of padded columns col, col+1 of an input row; cp points at column
 * col's channel c. CHECK: columns outside [0, W) read the zx row instead (only the tiles at the
 * row's ends need the check: branch-free pointer choice). */
FI __m128i load16(const uint8_t *p, __mmask16 k, const int FULL) {
    return FULL ? _mm_loadu_si128((const __m128i *)p) : _mm_maskz_loadu_epi8(k, p);
}

FI __m512i new_columns(const uint8_t *cp, const uint8_t *zxc, int col, int W, int C, __mmask16 k,
                       const int S, const int CHECK, const int FULL) {
    const uint8_t *a = cp, *b = cp + C;
    if (CHECK) {
        a = (unsigned)col < (unsigned)W ? a : zxc;
        b = (unsigned)(col + 1) < (unsigned)W ? b : zxc;
    }
    if (S == 1) return _mm512_castsi128_si512(load16(a, k, FULL));
    return _mm512_castsi256_si512(_mm256_inserti128_si256(_mm256_castsi128_si256(load16(a, k, FULL)),
                                                          load16(b, k, FULL), 1));
}

typedef struct {
    __m512 flo, fhi;
    __m512i zy, zxq, ix;
} dw_consts;

/* One tile: output rows oh0 .. oh0+R-1 of image `img`, columns p0 .. p0+P-1, channels c ..
 * c+15 (k: the valid ones), stored up to column OW - 1 (a last tile may reach past the row: its
 * columns there read zx and are not stored). wv: the block's weight quads (kernel row i at
 * wv[i*NQ .. i*NQ+NQ-1]); y: output of (oh0, p0, c).
 * Along input row t the slides run m = 0, 1, ..: slide m brings in padded columns col0 + m*S ..
 * + S-1 (col0 = p0*S - pad), after which the quad holds columns col0 + jq*S .. + 3 with
 * jq = m - WARM: the taps of output column p0 + jq of quad 0 (kernel columns 0..3), and at 5x5
 * (NQ = 2) of output column p0 + jq - 1 for kernel column 4, which is byte 4 - S of that quad
 * (the caller moved quad 1's weight there). So a row needs J = P + NQ - 1 quads.
 * CARRY: the tile before left each row's last quad in carry[t], the quad jq = J - 1 - P of this
 * tile; the row then starts from it instead of WARM + J - P slides of warm-up. */
FI void tile(const qat_i8_dw_job *j, const uint8_t *img, int oh0, int p0, int c, __mmask16 k,
             const __m512i *wv, __m512i bias, __m512 mult, const dw_consts *e, uint8_t *y,
             __m512i *carry, const int R, const int P, const int KH, const int NQ, const int S,
             const int CARRY, const int CHECK, const int FULL) {
    const int H = j->in.h, W = j->in.w, C = j->in.c, pad = j->p.pad, OW = j->ow;
    const int J = P + NQ - 1;        /* quads per input row */
    const int WARM = 4 / S - 1;      /* slides before the first full quad */
    const int TR = (R - 1) * S + KH; /* input rows the tile reads */
    const uint8_t *zxc = j->zx_row + c;
    const int ih0 = oh0 * S - pad, col0 = p0 * S - pad;
    __m512i acc[4][4]; /* R, P <= 4; fixed sizes (no VLA) so that they stay in registers */
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int p = 0; p < P; p++) acc[r][p] = bias;
#pragma GCC unroll 16
    for (int t = 0; t < TR; t++) {
        const int ih = ih0 + t;
        const int inside = (unsigned)ih < (unsigned)H;
        const int m0 = CARRY ? J - P + WARM : 0; /* the first slide */
        __m512i quad = CARRY ? carry[t] : e->zxq;
        const uint8_t *cp = img + ((size_t)(inside ? ih : 0) * W + (size_t)(col0 + m0 * S)) * C + c;
#pragma GCC unroll 16
        for (int m = m0 - CARRY; m < J + WARM; m++) {
            if (m >= m0) { /* else: the carried quad */
                if (inside)
                    quad = _mm512_permutex2var_epi8(quad, e->ix, new_columns(cp, zxc, col0 + m * S, W, C, k, S, CHECK, FULL));
                cp += S * C;
            }
            const int jq = m - WARM;
            if (jq < 0) continue;
#pragma GCC unroll 4
            for (int q = 0; q < NQ; q++) {
                const int p = jq - q;
                if (p < 0 || p >= P) continue;
#pragma GCC unroll 8
                for (int r = 0; r < R; r++) {
                    const int i = t - r * S; /* kernel row of input row t for output row r */
                    if (i < 0 || i >= KH) continue;
                    acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], quad, wv[i * NQ + q]);
                }
            }
        }
        carry[t] = quad;
    }
    const size_t OWC = (size_t)OW * C;
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int p = 0; p < P; p++) {
            if (CHECK && p0 + p >= OW) break;
            __m128i v = requant16(acc[r][p], mult, e->flo, e->fhi, e->zy);
            uint8_t *yp = y + r * OWC + (size_t)p * C;
            if (FULL)
                _mm_storeu_si128((__m128i *)yp, v);
            else
                _mm_mask_storeu_epi8(yp, k, v);
        }
}

/* Output rows oh0 .. oh0+R-1 of image n, every channel block, the row in tiles of P columns from
 * the left, each continuing the quads of the one before; the tiles that may read columns
 * outside the image (the first, the last ones) check each column. */
FI void band(const qat_i8_dw_job *j, int n, int oh0, const dw_consts *e, const int R, const int P,
             const int KH, const int NQ, const int S) {
    const qat_i8_dw_weights *w = j->w;
    const int C = j->in.c, OW = j->ow, W = j->in.w, pad = j->p.pad, cp16 = w->Cp / 16;
    const uint8_t *img = j->x + (size_t)n * j->in.h * j->in.w * C;
    uint8_t *yb = j->y + ((size_t)n * j->oh + oh0) * OW * C;
    /* columns a carrying tile at p0 reads: p0*S + first_off .. p0*S + last_off */
    const int WARM = 4 / S - 1, J = P + NQ - 1;
    const int first_off = (J - P + WARM) * S - pad, last_off = (J + WARM) * S - 1 - pad;
    {
        /* the band's output lines, for writing: each channel block writes 16 bytes of a line,
         * and in the network the output buffer is not in the cache (a read for ownership per
         * line otherwise stalls the first block's stores) */
        const char *yo = (const char *)(j->y + ((size_t)n * j->oh + oh0) * OW * C);
        const size_t bytes = (size_t)R * OW * C;
        for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(yo + o, 1, 3);
    }
    for (int c = 0; c < C; c += 16) {
        const __mmask16 k = lane_mask(C - c);
        __m512i wv[10]; /* KH * NQ <= 10 */
#pragma GCC unroll 16
        for (int t = 0; t < KH * NQ; t++) {
            wv[t] = _mm512_loadu_si512(w->wq + ((size_t)t * cp16 + c / 16) * 64);
            /* 5x5: kernel column 4 (byte 0 of quad 1) to byte 4 - S, see tile() */
            if (NQ == 2 && t % 2) wv[t] = _mm512_slli_epi32(wv[t], 8 * (4 - S));
        }
        const __m512i bias = _mm512_loadu_si512(w->bias_eff + c);
        const __m512 mult = _mm512_maskz_loadu_ps(k, j->mult + c);
        __m512i carry[4 * 2 + 3]; /* TR <= 11 */
        uint8_t *yc = yb + c;
        /* FULL: 16 channels, plain loads and stores (the masked ones cost ~3% more on Zen 4) */
#define TILES(FULL)                                                                                  \
    do {                                                                                             \
        tile(j, img, oh0, 0, c, k, wv, bias, mult, e, yc, carry, R, P, KH, NQ, S, 0, 1, FULL);        \
        int p0 = P;                                                                                  \
        for (; p0 < OW && p0 * S + first_off >= 0 && p0 * S + last_off < W; p0 += P)                \
            tile(j, img, oh0, p0, c, k, wv, bias, mult, e, yc + (size_t)p0 * C, carry, R, P, KH, NQ, \
                 S, 1, 0, FULL);                                                                     \
        for (; p0 < OW; p0 += P)                                                                     \
            tile(j, img, oh0, p0, c, k, wv, bias, mult, e, yc + (size_t)p0 * C, carry, R, P, KH, NQ, \
                 S, 1, 1, FULL);                                                                     \
    } while (0)
        if (C - c >= 16) TILES(1);
        else TILES(0);
#undef TILES
    }
}

/* Rows [r0, r1) in bands of RM rows (then 2, then 1; a last band of RM overlaps the one before
 * when that stays inside this call's rows and image), tiles of PM columns (2, 1 when OW is
 * smaller). */
FI void rows(const qat_i8_dw_job *j, int r0, int r1, const int KH, const int NQ, const int S,
             const int RM, const int PM) {
    const int OH = j->oh, OW = j->ow;
    const dw_consts e = {_mm512_set1_ps((float)(j->lo - j->zy)), _mm512_set1_ps((float)(j->hi - j->zy)),
                         _mm512_set1_epi32(j->zy), _mm512_set1_epi32((int32_t)(j->w->zx * 0x01010101u)),
                         slide_index(S)};
    const int P = OW >= PM ? PM : OW >= 2 ? 2 : 1;
    for (int r = r0; r < r1;) {
        const int n = r / OH, oh = r % OH;
        const int cnt = OH - oh < r1 - r ? OH - oh : r1 - r; /* rows left in this image and call */
        int R, oh0 = oh;
        if (cnt >= RM) R = RM;
        else if (oh + cnt >= RM && r + cnt - RM >= r0) R = RM, oh0 = oh + cnt - RM;
        else R = cnt >= 2 ? 2 : 1;
        const int done = oh0 == oh ? R : cnt;
#define BAND(RR, PP) band(j, n, oh0, &e, RR, PP, KH, NQ, S)
        if (R == RM) {
            if (P == PM) BAND(RM, PM);
            else if (P == 2) BAND(RM, 2);
            else BAND(RM, 1);
        } else if (R == 2) {
            if (P == PM) BAND(2, PM);
            else if (P == 2) BAND(2, 2);
            else BAND(2, 1);
        } else {
            if (P == PM) BAND(1, PM);
            else if (P == 2) BAND(1, 2);
            else BAND(1, 1);
        }
#undef BAND
        r += done;
    }
}

int qat_i8_dw_vbmi_fits(const qat_i8_conv_params *p) {
    return p->kh == p->kw && (p->kh == 3 || p->kh == 5) && (p->stride == 1 || p->stride == 2);
}

/* Bands of RM rows x tiles of PM columns per kernel size and stride: R*P accumulators, KH*NQ
 * weights and TR carried quads in registers. Measured on Zen 4 (bench_dw): 3x3 4x4 beats 3x4,
 * 2x4 and 2x3 at both strides; 5x5 4x2 beats 2x4 by 13-20% and 3x3. */
static __attribute__((noinline)) void rows_3s1(const qat_i8_dw_job *j, int r0, int r1) { rows(j, r0, r1, 3, 1, 1, 4, 4); }
static __attribute__((noinline)) void rows_3s2(const qat_i8_dw_job *j, int r0, int r1) { rows(j, r0, r1, 3, 1, 2, 4, 4); }
static __attribute__((noinline)) void rows_5s1(const qat_i8_dw_job *j, int r0, int r1) { rows(j, r0, r1, 5, 2, 1, 4, 2); }
static __attribute__((noinline)) void rows_5s2(const qat_i8_dw_job *j, int r0, int r1) { rows(j, r0, r1, 5, 2, 2, 4, 2); }

void qat_i8_dw_rows_vnnivbmi(const qat_i8_dw_job *j, int r0, int r1) {
    const int k = j->p.kh, s = j->p.stride;
    if (k == 3 && s == 1) rows_3s1(j, r0, r1);
    else if (k == 3) rows_3s2(j, r0, r1);
    else if (s == 1) rows_5s1(j, r0, r1);
    else rows_5s2(j, r0, r1);
}
