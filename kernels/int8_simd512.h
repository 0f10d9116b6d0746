/* The zmm INT8 GEMM epilogue shared by kernels/int8_avx512.c and kernels/int8_vnni512.c (they
 * differ only in how the accumulators are formed): requantization, the epilogue constants, the
 * masked store of one 16-channel block of one row as u8, s32 or f32, and the row loop over
 * tiles. Only for translation units built with AVX-512 F/BW (*_avx512.c, *_vnni512.c).
 *
 * The including file defines, after this header, the microkernel rows_nb() calls:
 *   FI void tile(const qat_i8_gemm_job *j, const epilogue *e, int m, int nb0, const int MR,
 *                const int NB);
 * which computes MR rows from m times NB 16-channel blocks from nb0 and stores them. */
#ifndef QAT_INT8_SIMD512_H
#define QAT_INT8_SIMD512_H

#if !defined(__AVX512F__) || !defined(__AVX512BW__)
#error "int8_simd512.h needs AVX-512 F/BW: include it only from *_avx512.c / *_vnni512.c"
#endif

#include "int8_simd.h"
#include <immintrin.h>

FI __mmask16 lane_mask(int valid) { return valid >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << valid) - 1); }

/* 16 accumulators -> 16 requantized int32 in [lo, hi]. Clamp in float before converting:
 * round(clamp(f, lo-zy, hi-zy)) + zy equals clamp(round(f) + zy, lo, hi) because the bounds are
 * integers, and it keeps huge or NaN products in range (max returns its second operand for NaN,
 * so NaN -> lo, as qat_requantize). cvtps2dq rounds with the MXCSR mode, as nearbyintf does. */
FI __m512i requant32(__m512i acc, __m512 mult, __m512 flo, __m512 fhi, __m512i zy) {
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), mult);
    f = _mm512_min_ps(_mm512_max_ps(f, flo), fhi);
    return _mm512_add_epi32(_mm512_cvtps_epi32(f), zy); /* in [lo, hi] */
}

/* The same as 16 bytes. The asm keeps GCC from fusing the narrowing into a masked vpmovusdb
 * store, which is several times slower than vpmovusdb to a register plus a masked store. */
FI __m128i requant16(__m512i acc, __m512 mult, __m512 flo, __m512 fhi, __m512i zy) {
    __m128i v = _mm512_cvtusepi32_epi8(requant32(acc, mult, flo, fhi, zy));
    __asm__("" : "+v"(v));
    return v;
}

/* The rest is the GEMM's; kernels that only requantize (int8_dw_vnni512.c) define
 * QAT_I8_SIMD512_REQUANT_ONLY before including this file. */
#ifndef QAT_I8_SIMD512_REQUANT_ONLY

/* Epilogue constants, copied out of the job once per call: stores through uint8_t pointers may
 * alias anything, so reading them from *j after each store would reload and rebroadcast them. */
typedef struct {
    qat_i8_out_kind kind;
    char *y;
    int64_t ldy;
    const float *mult, *fbias;
    __m512 flo, fhi; /* clamp bounds minus zy */
    __m512i zy;
} epilogue;

static epilogue epilogue_of(const qat_i8_gemm_job *j) {
    epilogue e = {j->kind, (char *)j->y, j->ldy, j->mult, j->fbias,
                  _mm512_set1_ps((float)(j->lo - j->zy)), _mm512_set1_ps((float)(j->hi - j->zy)),
                  _mm512_set1_epi32(j->zy)};
    return e;
}

/* Writes one 16-channel block of one row; acc already includes bias_eff, k = lane_mask(valid). */
FI void store_block(const epilogue *e, int m, int n0, __m512i acc, __m512 mult, __m512 fbias,
                    __mmask16 k) {
    switch (e->kind) {
    case QAT_I8_OUT_U8:
        _mm_mask_storeu_epi8(e->y + (size_t)m * e->ldy + n0, k, requant16(acc, mult, e->flo, e->fhi, e->zy));
        break;
    case QAT_I8_OUT_S32:
        _mm512_mask_storeu_epi32((int32_t *)e->y + (size_t)m * e->ldy + n0, k, acc);
        break;
    case QAT_I8_OUT_F32: {
        __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), mult);
        __asm__("" : "+v"(p)); /* the product stays a rounded float: no FMA with the bias add */
        if (e->fbias) p = _mm512_add_ps(p, fbias);
        _mm512_mask_storeu_ps((float *)e->y + (size_t)m * e->ldy + n0, k, p);
        break;
    }
    }
}

FI void tile(const qat_i8_gemm_job *j, const epilogue *e, int m, int nb0, const int MR,
             const int NB);

/* Rows [m0, m1) for NB blocks from nb0: main tiles of MR rows, then 4, 2, 1-row tails. */
FI void rows_nb(const qat_i8_gemm_job *j, const epilogue *e, int m0, int m1, int nb0,
                const int MR, const int NB) {
    int m = m0;
    for (; m + MR <= m1; m += MR) tile(j, e, m, nb0, MR, NB);
    for (; m + 4 <= m1; m += 4) tile(j, e, m, nb0, 4, NB);
    if (m + 2 <= m1) {
        tile(j, e, m, nb0, 2, NB);
        m += 2;
    }
    if (m < m1) tile(j, e, m, nb0, 1, NB);
}

#endif /* QAT_I8_SIMD512_REQUANT_ONLY */
#endif
