/* INT8 kernels for AVX2 without VNNI.
 *
 * Why not vpmaddubsw (_mm256_maddubs_epi16), the usual pre-VNNI u8 x s8 instruction: it adds
 * each pair of u8*s8 products into a SATURATING int16, and 255*(-128) + 255*(-128) = -65280 (or
 * 255*127*2 = 64770) does not fit, so full-range activations and weights give wrong sums. We
 * widen instead: u8 -> s16 (0..255) and s8 -> s16, then vpmaddwd (_mm256_madd_epi16) forms
 * x0*w0 + x1*w1 in an int32 lane, which is exact (|sum| <= 65280) — bit-identical to the
 * reference at the cost of twice the multiply instructions of vpmaddubsw.
 *
 * GEMM: the packed group [16 channels][4 K] of one 16-channel block is 4 chunks of 16 bytes
 * (4 channels x 4 K each); a chunk widened to 16 s16 times the row's 4 activations repeated
 * (x0 x1 x2 x3 x0 ...) gives, per channel, two int32 partial sums (K 0-1 and K 2-3). The
 * partials are summed once at the end with vphaddd. Microkernel: 2 rows x 16 channels = 8 ymm
 * accumulators + 4 widened weight vectors + 2 broadcasts of the 16 ymm registers. */
#include "int8_simd256.h" /* load_x4, requant8, epilogue, store_row, ... */
#include <immintrin.h>

/* acc[q] holds channels 4q..4q+3 as (K01, K23) partial pairs; returns channels 0-7 and 8-15. */
FI void reduce_pairs(const __m256i acc[4], __m256i *c0_7, __m256i *c8_15) {
    /* hadd within 128-bit lanes gives (c0 c1 c4 c5 | c2 c3 c6 c7); vpermq 0xD8 restores order. */
    *c0_7 = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[0], acc[1]), 0xD8);
    *c8_15 = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[2], acc[3]), 0xD8);
}

FI void tile(const qat_i8_gemm_job *j, const epilogue *e, int m, int nb, const int MR) {
    const qat_i8_gemm_weights *w = j->w;
    const int kg = w->K / 4, krem = w->K % 4;
    const int8_t *wp = w->w + (size_t)nb * (w->Kp / 4) * 64;
    const uint8_t *xp = j->x + (size_t)m * j->ldx;
    const int64_t ldx = j->ldx;
    __m256i acc[2][4];
#pragma GCC unroll 2
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) acc[r][q] = _mm256_setzero_si256();
    for (int g = 0; g <= kg; g++) {
        if (g == kg && !krem) break;
        __m256i wq[4];
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++)
            wq[q] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wp + (size_t)g * 64 + 16 * q)));
#pragma GCC unroll 2
        for (int r = 0; r < MR; r++) {
            int32_t x4 = g < kg ? load_x4(xp + r * ldx + 4 * g) : load_x_tail(xp + r * ldx + 4 * g, krem);
            __m256i xb = _mm256_cvtepu8_epi16(_mm_set1_epi32(x4));
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++) acc[r][q] = _mm256_add_epi32(acc[r][q], _mm256_madd_epi16(xb, wq[q]));
        }
    }
    const int n0 = nb * 16, valid = w->N - n0;
    __m256i be0 = _mm256_loadu_si256((const __m256i *)(w->bias_eff + n0));
    __m256i be1 = _mm256_loadu_si256((const __m256i *)(w->bias_eff + n0 + 8));
    __m256 mult[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, fbias[2] = {mult[0], mult[1]};
    if (e->kind != QAT_I8_OUT_S32) load_chan16(mult, e->mult, n0, valid);
    if (e->kind == QAT_I8_OUT_F32 && e->fbias) load_chan16(fbias, e->fbias, n0, valid);
#pragma GCC unroll 2
    for (int r = 0; r < MR; r++) {
        __m256i lo, hi;
        reduce_pairs(acc[r], &lo, &hi);
        store_row(e, m + r, n0, valid, _mm256_add_epi32(lo, be0), _mm256_add_epi32(hi, be1), mult, fbias);
    }
}

void qat_i8_gemm_rows_avx2(const qat_i8_gemm_job *j, int m0, int m1) {
    const int nblk = j->w->Np / 16;
    const epilogue e = epilogue_of(j);
    for (int nb = 0; nb < nblk; nb++) {
        int m = m0;
        for (; m + 2 <= m1; m += 2) tile(j, &e, m, nb, 2);
        if (m < m1) tile(j, &e, m, nb, 1);
    }
}

/* ---- depthwise --------------------------------------------------------------------------------
 * 16 channels per step as two ymm of int32, even and odd channels. The (tap 2p, tap 2p+1) s16
 * pairs vpmaddwd needs come from a shift and a blend of the two widened taps (see
 * int8_avx512.c); the packed weights use the same even/odd order. Channel tails: scalar. */
void qat_i8_dw_rows_avx2(const qat_i8_dw_job *j, int r0, int r1) {
    const qat_i8_dw_weights *w = j->w;
    const int C = j->in.c, cp = w->Cp, np = w->npairs, cv = C / 16 * 16;
    const __m256 flo = _mm256_set1_ps((float)(j->lo - j->zy)), fhi = _mm256_set1_ps((float)(j->hi - j->zy));
    const __m256i zy = _mm256_set1_epi32(j->zy);
    const uint8_t *tp[QAT_I8_DW_MAX_TAPS + 1];
    for (int r = r0; r < r1; r++) {
        int n = r / j->oh, oh = r % j->oh;
        for (int ow = 0; ow < j->ow; ow++) {
            qat_i8_dw_taps(j, n, oh, ow, tp);
            uint8_t *yp = j->y + (((size_t)n * j->oh + oh) * j->ow + ow) * C;
            for (int c = 0; c < cv; c += 16) {
                __m256i ae = _mm256_setzero_si256(), ao = _mm256_setzero_si256();
                const int16_t *wp = w->w + qat_i8_dw_pair_index(cp, 0, c);
                for (int p = 0; p < np; p++, wp += cp * 2) {
                    __m256i x0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(tp[2 * p] + c)));
                    __m256i x1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(tp[2 * p + 1] + c)));
                    __m256i a = _mm256_blend_epi16(x0, _mm256_slli_epi32(x1, 16), 0xAA);
                    __m256i b = _mm256_blend_epi16(_mm256_srli_epi32(x0, 16), x1, 0xAA);
                    ae = _mm256_add_epi32(ae, _mm256_madd_epi16(a, _mm256_loadu_si256((const __m256i *)wp)));
                    ao = _mm256_add_epi32(ao, _mm256_madd_epi16(b, _mm256_loadu_si256((const __m256i *)(wp + 32))));
                }
                /* (even, odd) -> channel order: unpack gives (0-3 | 8-11) and (4-7 | 12-15) */
                __m256i t0 = _mm256_unpacklo_epi32(ae, ao), t1 = _mm256_unpackhi_epi32(ae, ao);
                __m256i s0 = _mm256_add_epi32(_mm256_permute2x128_si256(t0, t1, 0x20),
                                              _mm256_loadu_si256((const __m256i *)(w->bias_eff + c)));
                __m256i s1 = _mm256_add_epi32(_mm256_permute2x128_si256(t0, t1, 0x31),
                                              _mm256_loadu_si256((const __m256i *)(w->bias_eff + c + 8)));
                __m128i v = _mm_unpacklo_epi64(requant8(s0, _mm256_loadu_ps(j->mult + c), flo, fhi, zy),
                                               requant8(s1, _mm256_loadu_ps(j->mult + c + 8), flo, fhi, zy));
                _mm_storeu_si128((__m128i *)(yp + c), v);
            }
            if (cv < C) qat_i8_dw_pixel_scalar(j, tp, yp, cv, C);
        }
    }
}

/* ---- element-wise add -------------------------------------------------------------------------- */

/* 8 elements: (float)(a - za) * sa + (float)(b - zb) * sb, each product rounded (the asm keeps
 * the compiler from fusing it into an FMA), times inv_sy, clamped, rounded, plus zy. */
FI __m128i add8(__m128i a8, __m128i b8, const qat_i8_add_params *p) {
    __m256 fa = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(a8), _mm256_set1_epi32(p->za))),
                              _mm256_set1_ps(p->sa));
    __m256 fb = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(b8), _mm256_set1_epi32(p->zb))),
                              _mm256_set1_ps(p->sb));
    __asm__("" : "+x"(fa), "+x"(fb));
    __m256 f = _mm256_mul_ps(_mm256_add_ps(fa, fb), _mm256_set1_ps(p->inv_sy));
    f = _mm256_min_ps(_mm256_max_ps(f, _mm256_set1_ps((float)(p->lo - p->zy))), _mm256_set1_ps((float)(p->hi - p->zy)));
    return pack8_u8(_mm256_add_epi32(_mm256_cvtps_epi32(f), _mm256_set1_epi32(p->zy)));
}

void qat_i8_add_range_avx2(uint8_t *y, const uint8_t *a, const uint8_t *b, int64_t i0, int64_t i1,
                           const qat_i8_add_params *p) {
    int64_t i = i0;
    for (; i + 16 <= i1; i += 16) {
        __m128i a16 = _mm_loadu_si128((const __m128i *)(a + i)), b16 = _mm_loadu_si128((const __m128i *)(b + i));
        __m128i lo = add8(a16, b16, p);
        __m128i hi = add8(_mm_srli_si128(a16, 8), _mm_srli_si128(b16, 8), p);
        _mm_storeu_si128((__m128i *)(y + i), _mm_unpacklo_epi64(lo, hi));
    }
    for (; i < i1; i++) y[i] = qat_i8_add_one(a[i], b[i], p);
}

/* ---- global average pool ----------------------------------------------------------------------- */

void qat_i8_pool_images_avx2(uint8_t *y, const uint8_t *x, const qat_i8_dims *in,
                             const qat_i8_pool_params *p, int n0, int n1) {
    const int hw = in->h * in->w, C = in->c, cv = C / 8 * 8;
    const __m256 mult = _mm256_set1_ps(p->mult);
    const __m256 flo = _mm256_set1_ps((float)(p->lo - p->zy)), fhi = _mm256_set1_ps((float)(p->hi - p->zy));
    const __m256i zy = _mm256_set1_epi32(p->zy), off = _mm256_set1_epi32(hw * p->zx);
    for (int n = n0; n < n1; n++) {
        const uint8_t *img = x + (size_t)n * hw * C;
        for (int c = 0; c < cv; c += 8) {
            __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
            int i = 0;
            for (; i + 2 <= hw; i += 2) { /* two chains: the adds do not wait on each other */
                s0 = _mm256_add_epi32(s0, _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(img + (size_t)i * C + c))));
                s1 = _mm256_add_epi32(s1, _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(img + (size_t)(i + 1) * C + c))));
            }
            if (i < hw)
                s0 = _mm256_add_epi32(s0, _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(img + (size_t)i * C + c))));
            __m256i acc = _mm256_sub_epi32(_mm256_add_epi32(s0, s1), off);
            _mm_storel_epi64((__m128i *)(y + (size_t)n * C + c), requant8(acc, mult, flo, fhi, zy));
        }
        for (int c = cv; c < C; c++) {
            int32_t sum = 0;
            for (int i = 0; i < hw; i++) sum += img[(size_t)i * C + c];
            y[(size_t)n * C + c] = qat_i8_requant_u8(sum - hw * p->zx, p->mult, p->zy, p->lo, p->hi);
        }
    }
}

/* ---- channel-wise multiply (squeeze-and-excite): the exact int32 product of the centred codes,
 * requantized as the GEMM epilogue does ---------------------------------------------------------- */

void qat_i8_mul_pixels_avx2(uint8_t *y, const uint8_t *x, const uint8_t *g, const qat_i8_dims *in,
                            const qat_i8_mul_params *p, int64_t p0, int64_t p1) {
    const int C = in->c, cv = C / 8 * 8;
    const int64_t hw = (int64_t)in->h * in->w;
    const __m256i zx = _mm256_set1_epi32(p->zx), zg = _mm256_set1_epi32(p->zg), zy = _mm256_set1_epi32(p->zy);
    const __m256 flo = _mm256_set1_ps((float)(p->lo - p->zy)), fhi = _mm256_set1_ps((float)(p->hi - p->zy));
    for (int64_t px = p0; px < p1; px++) {
        const uint8_t *gr = g + (px / hw) * C, *xr = x + px * C;
        uint8_t *yr = y + px * C;
        for (int c = 0; c < cv; c += 8) {
            __m256i a = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(xr + c))), zx);
            __m256i b = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(gr + c))), zg);
            __m128i v = requant8(_mm256_mullo_epi32(a, b), _mm256_loadu_ps(p->mult + c), flo, fhi, zy);
            _mm_storel_epi64((__m128i *)(yr + c), v);
        }
        for (int c = cv; c < C; c++)
            yr[c] = qat_i8_requant_u8(((int32_t)xr[c] - p->zx) * ((int32_t)gr[c] - p->zg), p->mult[c], p->zy, p->lo, p->hi);
    }
}
