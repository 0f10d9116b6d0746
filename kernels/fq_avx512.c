/* Fake-quant, straight-through and min/max kernels, AVX-512: 16 floats per zmm. Built with the
 * AVX-512 flags and entered only through the dispatch of kernels/fq.c; bit-identical to the
 * _ref. Full vectors use plain loads and stores, tails masked ones (masked stores are slow on
 * AMD Zen 4/5). */
#include "fq_simd512.h"

void qat_fq_run_avx512(float *restrict y, uint8_t *restrict code, const float *restrict x,
                       int64_t n, const qat_fq_consts *k, int c, int per_elem) {
    int64_t i = 0;
    __m512 r;
    if (per_elem) {
        /* full vectors with plain stores, then one masked tail whose off lanes get scale,
         * bounds and x of 0 and are not stored */
        for (; i < n; i += 16) {
            __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
            __m512 sc = _mm512_maskz_loadu_ps(m, k->scale + c + i);
            __m512 inv = _mm512_maskz_loadu_ps(m, k->inv + c + i);
            __m512 lo = _mm512_maskz_loadu_ps(m, k->lo + c + i);
            __m512 hi = _mm512_maskz_loadu_ps(m, k->hi + c + i);
            __m512 v = qat_fq16(_mm512_maskz_loadu_ps(m, x + i), sc, inv, lo, hi, &r);
            if (m == 0xffff) {
                _mm512_storeu_ps(y + i, v);
                if (code) _mm_storeu_si128((__m128i *)(code + i), qat_fq_code16(r, lo, hi));
            } else {
                _mm512_mask_storeu_ps(y + i, m, v);
                if (code) _mm_mask_storeu_epi8(code + i, m, qat_fq_code16(r, lo, hi));
            }
        }
        return;
    }
    __m512 sc = _mm512_set1_ps(k->scale[c]), inv = _mm512_set1_ps(k->inv[c]);
    __m512 lo = _mm512_set1_ps(k->lo[c]), hi = _mm512_set1_ps(k->hi[c]);
    if (code) {
        for (; i + 16 <= n; i += 16) {
            _mm512_storeu_ps(y + i, qat_fq16(_mm512_loadu_ps(x + i), sc, inv, lo, hi, &r));
            _mm_storeu_si128((__m128i *)(code + i), qat_fq_code16(r, lo, hi));
        }
    } else {
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(y + i, qat_fq16(_mm512_loadu_ps(x + i), sc, inv, lo, hi, &r));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        __m512 v = qat_fq16(_mm512_maskz_loadu_ps(m, x + i), sc, inv, lo, hi, &r);
        _mm512_mask_storeu_ps(y + i, m, v);
        if (code) _mm_mask_storeu_epi8(code + i, m, qat_fq_code16(r, lo, hi));
    }
}

/* Full-width loads and stores with a blend: AVX-512 masked stores are slow on AMD Zen 4/5. */
void qat_fq_ste_run_avx512(float *restrict dx, const float *restrict dy,
                           const uint8_t *restrict code, int64_t n) {
    const __m128i one = _mm_set1_epi8(QAT_FQ_INSIDE);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __mmask16 m = _mm_cmpeq_epi8_mask(_mm_loadu_si128((const __m128i *)(code + i)), one);
        __m512 d = _mm512_loadu_ps(dx + i);
        _mm512_storeu_ps(dx + i, _mm512_mask_add_ps(d, m, d, _mm512_loadu_ps(dy + i)));
    }
    qat_fq_ste_grad_ref(dx + i, dy + i, code + i, n - i);
}

void qat_fq_ste_store_avx512(float *restrict dx, const float *restrict dy,
                             const uint8_t *restrict code, int64_t n) {
    const __m128i one = _mm_set1_epi8(QAT_FQ_INSIDE);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __mmask16 m = _mm_cmpeq_epi8_mask(_mm_loadu_si128((const __m128i *)(code + i)), one);
        _mm512_storeu_ps(dx + i, _mm512_maskz_add_ps(m, _mm512_setzero_ps(), _mm512_loadu_ps(dy + i)));
    }
    qat_fq_ste_store_ref(dx + i, dy + i, code + i, n - i);
}

void qat_minmax_run_avx512(const float *restrict x, int64_t n, float *mn, float *mx,
                           int64_t *nan) {
    __m512 a = _mm512_set1_ps(*mn), b = _mm512_set1_ps(*mx);
    __m512i cnt = _mm512_setzero_si512(), one = _mm512_set1_epi32(1);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        a = _mm512_min_ps(v, a);
        b = _mm512_max_ps(v, b);
        cnt = _mm512_mask_add_epi32(cnt, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), cnt, one);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        a = _mm512_mask_min_ps(a, m, v, a);
        b = _mm512_mask_max_ps(b, m, v, b);
        cnt = _mm512_mask_add_epi32(cnt, _mm512_mask_cmp_ps_mask(m, v, v, _CMP_UNORD_Q), cnt, one);
    }
    /* no lane holds NaN, so the reduction order cannot change the result */
    *mn = _mm512_reduce_min_ps(a);
    *mx = _mm512_reduce_max_ps(b);
    *nan += _mm512_reduce_add_epi32(cnt);
}
