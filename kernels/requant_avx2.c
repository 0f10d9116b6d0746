/* AVX2 version of the simulation's requantization loop (kernels/requant.h): 8 channels at a
 * time, the same operations as qat_requantize in the same order — int32 add of the bias,
 * conversion to float (round to nearest), one float multiply, round half to even, clamp — so
 * the codes are identical (tests/test_qint.c compares it with the scalar loop). Built with
 * -mavx2 -mfma: no multiply here is followed by an add, so nothing can be contracted. */
#include "requant.h"
#include "qat.h"
#include <immintrin.h>

void qat_requant_rows_avx2(uint8_t *y, const float *acc, int64_t rows, int C,
                                const int32_t *bias, const float *mult, int32_t zy, int32_t lo,
                                int32_t hi) {
    /* Clamping the rounded value to [lo - zy, hi - zy] before adding zy equals qat_requantize's
     * clamp after it: both bounds are small integers and rounding is monotonic. */
    const __m256 flo = _mm256_set1_ps((float)(lo - zy)), fhi = _mm256_set1_ps((float)(hi - zy));
    const __m256i vzy = _mm256_set1_epi32(zy);
#pragma omp parallel for num_threads(qat_get_threads()) if (rows * C > 65536) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *a = acc + r * C;
        uint8_t *o = y + r * C;
        int c = 0;
        for (; c + 8 <= C; c += 8) {
            __m256i s = _mm256_add_epi32(_mm256_cvttps_epi32(_mm256_loadu_ps(a + c)),
                                         _mm256_loadu_si256((const __m256i *)(bias + c)));
            __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_loadu_ps(mult + c));
            v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v = _mm256_min_ps(_mm256_max_ps(v, flo), fhi);
            __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(v), vzy);
            __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
            _mm_storel_epi64((__m128i *)(o + c), _mm_packus_epi16(w, w));
        }
        for (; c < C; c++) o[c] = (uint8_t)qat_requantize((int32_t)a[c] + bias[c], mult[c], zy, lo, hi);
    }
}
