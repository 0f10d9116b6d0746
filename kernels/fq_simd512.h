/* The AVX-512 fake-quant of 16 floats and their clipping codes, shared by kernels/fq_avx512.c and
 * the fused BatchNorm + fake-quant pass of kernels/bn_avx512.c (both built with the AVX-512
 * flags), so the two compute one expression (kernels/fq.h says why it equals the _ref). */
#ifndef QAT_FQ_SIMD512_H
#define QAT_FQ_SIMD512_H

#include "fq.h"
#include <immintrin.h>

static inline __attribute__((always_inline)) __m512 qat_fq16(__m512 v, __m512 sc, __m512 inv,
                                                             __m512 lo, __m512 hi, __m512 *r_out) {
    __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(v, inv), _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC);
    __m512 t = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
    *r_out = r;
    return _mm512_mul_ps(_mm512_add_ps(t, _mm512_setzero_ps()), sc);
}

static inline __attribute__((always_inline)) __m128i qat_fq_code16(__m512 r, __m512 lo, __m512 hi) {
    __mmask16 in = _mm512_cmp_ps_mask(r, lo, _CMP_GE_OQ) & _mm512_cmp_ps_mask(r, hi, _CMP_LE_OQ);
    __mmask16 ab = _mm512_cmp_ps_mask(r, hi, _CMP_GT_OQ);
    return _mm_or_si128(_mm_maskz_mov_epi8(in, _mm_set1_epi8(QAT_FQ_INSIDE)),
                        _mm_maskz_mov_epi8(ab, _mm_set1_epi8(QAT_FQ_ABOVE)));
}

#endif
