/* Fake-quant, straight-through and min/max kernels, AVX2: 8 floats per ymm. Built with -mavx2
 * -mfma and entered only through the dispatch of kernels/fq.c; bit-identical to the _ref
 * (kernels/fq.h says why the float formulation is exact). */
#include "fq.h"
#include <immintrin.h>

static inline __m256 fq8(__m256 v, __m256 sc, __m256 inv, __m256 lo, __m256 hi, __m256 *r_out) {
    __m256 r = _mm256_round_ps(_mm256_mul_ps(v, inv), _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC);
    __m256 t = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
    *r_out = r;
    return _mm256_mul_ps(_mm256_add_ps(t, _mm256_setzero_ps()), sc);
}

static inline void code8(uint8_t *dst, __m256 r, __m256 lo, __m256 hi) {
    __m256 in = _mm256_and_ps(_mm256_cmp_ps(r, lo, _CMP_GE_OQ), _mm256_cmp_ps(r, hi, _CMP_LE_OQ));
    __m256 ab = _mm256_cmp_ps(r, hi, _CMP_GT_OQ);
    __m256i ci = _mm256_or_si256(_mm256_and_si256(_mm256_castps_si256(in), _mm256_set1_epi32(1)),
                                 _mm256_and_si256(_mm256_castps_si256(ab), _mm256_set1_epi32(2)));
    __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(ci), _mm256_extracti128_si256(ci, 1));
    _mm_storel_epi64((__m128i *)dst, _mm_packus_epi16(p16, p16));
}

void qat_fq_run_avx2(float *restrict y, uint8_t *restrict code, const float *restrict x,
                     int64_t n, const qat_fq_consts *k, int c, int per_elem) {
    int64_t i = 0;
    if (per_elem) {
        for (; i + 8 <= n; i += 8) {
            __m256 sc = _mm256_loadu_ps(k->scale + c + i), inv = _mm256_loadu_ps(k->inv + c + i);
            __m256 lo = _mm256_loadu_ps(k->lo + c + i), hi = _mm256_loadu_ps(k->hi + c + i), r;
            _mm256_storeu_ps(y + i, fq8(_mm256_loadu_ps(x + i), sc, inv, lo, hi, &r));
            if (code) code8(code + i, r, lo, hi);
        }
    } else {
        __m256 sc = _mm256_set1_ps(k->scale[c]), inv = _mm256_set1_ps(k->inv[c]);
        __m256 lo = _mm256_set1_ps(k->lo[c]), hi = _mm256_set1_ps(k->hi[c]), r;
        if (code) {
            for (; i + 8 <= n; i += 8) {
                _mm256_storeu_ps(y + i, fq8(_mm256_loadu_ps(x + i), sc, inv, lo, hi, &r));
                code8(code + i, r, lo, hi);
            }
        } else {
            for (; i + 8 <= n; i += 8)
                _mm256_storeu_ps(y + i, fq8(_mm256_loadu_ps(x + i), sc, inv, lo, hi, &r));
        }
    }
    if (i < n)
        qat_fq_run_ref(y + i, code ? code + i : NULL, x + i, n - i, k, per_elem ? c + (int)i : c,
                       per_elem);
}

/* Clipped elements are left alone rather than given += 0.0f, so every variant (and the _ref)
 * leaves a -0.0 gradient as it was. */
void qat_fq_ste_run_avx2(float *restrict dx, const float *restrict dy,
                         const uint8_t *restrict code, int64_t n) {
    int64_t i = 0;
    const __m256i one = _mm256_set1_epi32(QAT_FQ_INSIDE);
    for (; i + 8 <= n; i += 8) {
        __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(code + i)));
        __m256 m = _mm256_castsi256_ps(_mm256_cmpeq_epi32(c, one));
        __m256 d = _mm256_loadu_ps(dx + i);
        _mm256_storeu_ps(dx + i, _mm256_blendv_ps(d, _mm256_add_ps(d, _mm256_loadu_ps(dy + i)), m));
    }
    qat_fq_ste_grad_ref(dx + i, dy + i, code + i, n - i);
}

void qat_fq_ste_store_avx2(float *restrict dx, const float *restrict dy,
                           const uint8_t *restrict code, int64_t n) {
    int64_t i = 0;
    const __m256i one = _mm256_set1_epi32(QAT_FQ_INSIDE);
    for (; i + 8 <= n; i += 8) {
        __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(code + i)));
        __m256 m = _mm256_castsi256_ps(_mm256_cmpeq_epi32(c, one));
        __m256 v = _mm256_add_ps(_mm256_setzero_ps(), _mm256_loadu_ps(dy + i));
        _mm256_storeu_ps(dx + i, _mm256_and_ps(v, m));
    }
    qat_fq_ste_store_ref(dx + i, dy + i, code + i, n - i);
}

void qat_minmax_run_avx2(const float *restrict x, int64_t n, float *mn, float *mx, int64_t *nan) {
    __m256 a = _mm256_set1_ps(*mn), b = _mm256_set1_ps(*mx);
    __m256i cnt = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        a = _mm256_min_ps(v, a);
        b = _mm256_max_ps(v, b);
        /* unordered compare: all-ones (= -1) lanes for NaN */
        cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
    }
    float la[8], lb[8];
    int32_t lc[8];
    _mm256_storeu_ps(la, a);
    _mm256_storeu_ps(lb, b);
    _mm256_storeu_si256((__m256i *)lc, cnt);
    float ra = la[0], rb = lb[0];
    int64_t k = lc[0];
    for (int j = 1; j < 8; j++) {
        ra = la[j] < ra ? la[j] : ra;
        rb = lb[j] > rb ? lb[j] : rb;
        k += lc[j];
    }
    *mn = ra, *mx = rb, *nan += k;
    qat_minmax_run_ref(x + i, n - i, mn, mx, nan);
}
