/* AVX512-VBMI variant of the activation lookup table (kernels/int8.h, section 7): 64 bytes per
 * step instead of one table load per byte. The 256-entry table sits in four zmm registers;
 * vpermi2b looks the low 7 bits of each byte up in entries 0-127 and in 128-255, and bit 7
 * (the byte's sign bit) picks between the two. Bit-identical to the scalar loop by construction:
 * every output byte is a table entry, indexed by the same input byte. Masked loads and stores
 * take the tail, so any n works. */
#include "int8.h"
#include <immintrin.h>

void qat_i8_lut_vbmi(uint8_t *y, const uint8_t *x, int64_t n, const uint8_t *table) {
    const __m512i t0 = _mm512_loadu_si512(table), t1 = _mm512_loadu_si512(table + 64);
    const __m512i t2 = _mm512_loadu_si512(table + 128), t3 = _mm512_loadu_si512(table + 192);
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512i v = _mm512_loadu_si512(x + i);
        __m512i lo = _mm512_permutex2var_epi8(t0, v, t1), hi = _mm512_permutex2var_epi8(t2, v, t3);
        _mm512_storeu_si512(y + i, _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), lo, hi));
    }
    if (i < n) {
        __mmask64 m = (1ull << (n - i)) - 1; /* n - i < 64 here */
        __m512i v = _mm512_maskz_loadu_epi8(m, x + i);
        __m512i lo = _mm512_permutex2var_epi8(t0, v, t1), hi = _mm512_permutex2var_epi8(t2, v, t3);
        _mm512_mask_storeu_epi8(y + i, m, _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), lo, hi));
    }
}
