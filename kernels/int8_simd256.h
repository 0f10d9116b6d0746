/* The ymm INT8 GEMM epilogue shared by kernels/int8_avx2.c and kernels/int8_avxvnni.c (they
 * differ only in how the accumulators are formed): requantization to u8, the epilogue constants
 * and the store of one row of a 16-channel block as u8, s32 or f32. Only for translation units
 * built with AVX2 (the Makefile's ISA flags for *_avx2.c and *_avxvnni.c). */
#ifndef QAT_INT8_SIMD256_H
#define QAT_INT8_SIMD256_H

#ifndef __AVX2__
#error "int8_simd256.h needs AVX2: include it only from *_avx2.c / *_avxvnni.c"
#endif

#include "int8_simd.h"
#include <immintrin.h>

/* 8 int32 in [0, 255] -> 8 bytes in the low half. */
FI __m128i pack8_u8(__m256i q) {
    __m128i q16 = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    return _mm_packus_epi16(q16, q16);
}

/* 8 accumulators (bias_eff included) -> 8 requantized bytes. The clamp happens in float before
 * rounding: round(clamp(f, lo-zy, hi-zy)) + zy = clamp(round(f) + zy, lo, hi) for integer
 * bounds, and max(NaN, lo-zy) = lo-zy reproduces qat_requantize's NaN -> lo. cvtps2dq rounds
 * with the MXCSR mode, as nearbyintf does. */
FI __m128i requant8(__m256i acc, __m256 mult, __m256 flo, __m256 fhi, __m256i zy) {
    __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), mult);
    f = _mm256_min_ps(_mm256_max_ps(f, flo), fhi);
    return pack8_u8(_mm256_add_epi32(_mm256_cvtps_epi32(f), zy));
}

/* Loads 16 per-channel floats from v + n0 of which `valid` exist (the rest read as 0). */
FI void load_chan16(__m256 out[2], const float *v, int n0, int valid) {
    if (valid >= 16) {
        out[0] = _mm256_loadu_ps(v + n0);
        out[1] = _mm256_loadu_ps(v + n0 + 8);
    } else {
        float tmp[16] = {0};
        memcpy(tmp, v + n0, (size_t)valid * sizeof(float));
        out[0] = _mm256_loadu_ps(tmp);
        out[1] = _mm256_loadu_ps(tmp + 8);
    }
}

/* Epilogue constants, copied out of the job once per call: stores through uint8_t pointers may
 * alias anything, so reading them from *j after each store would reload and rebroadcast them. */
typedef struct {
    qat_i8_out_kind kind;
    char *y;
    int64_t ldy;
    const float *mult, *fbias;
    __m256 flo, fhi; /* clamp bounds minus zy */
    __m256i zy;
} epilogue;

static epilogue epilogue_of(const qat_i8_gemm_job *j) {
    epilogue e = {j->kind, (char *)j->y, j->ldy, j->mult, j->fbias,
                  _mm256_set1_ps((float)(j->lo - j->zy)), _mm256_set1_ps((float)(j->hi - j->zy)),
                  _mm256_set1_epi32(j->zy)};
    return e;
}

/* One row, 16 channels from n0 (valid of them real): acc0 = channels 0-7, acc1 = 8-15, bias_eff
 * included. mult/fbias from load_chan16 (fbias only read for f32 output with a bias). */
FI void store_row(const epilogue *e, int m, int n0, int valid, __m256i acc0, __m256i acc1,
                  const __m256 *mult, const __m256 *fbias) {
    switch (e->kind) {
    case QAT_I8_OUT_U8: {
        __m128i v = _mm_unpacklo_epi64(requant8(acc0, mult[0], e->flo, e->fhi, e->zy),
                                       requant8(acc1, mult[1], e->flo, e->fhi, e->zy));
        uint8_t *dst = (uint8_t *)e->y + (size_t)m * e->ldy + n0;
        if (valid >= 16)
            _mm_storeu_si128((__m128i *)dst, v);
        else {
            uint8_t tmp[16];
            _mm_storeu_si128((__m128i *)tmp, v);
            memcpy(dst, tmp, (size_t)valid);
        }
        break;
    }
    case QAT_I8_OUT_S32: {
        int32_t *dst = (int32_t *)e->y + (size_t)m * e->ldy + n0;
        if (valid >= 16) {
            _mm256_storeu_si256((__m256i *)dst, acc0);
            _mm256_storeu_si256((__m256i *)(dst + 8), acc1);
        } else {
            int32_t tmp[16];
            _mm256_storeu_si256((__m256i *)tmp, acc0);
            _mm256_storeu_si256((__m256i *)(tmp + 8), acc1);
            memcpy(dst, tmp, (size_t)valid * sizeof(int32_t));
        }
        break;
    }
    case QAT_I8_OUT_F32: {
        __m256 p0 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc0), mult[0]);
        __m256 p1 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc1), mult[1]);
        __asm__("" : "+x"(p0), "+x"(p1)); /* products stay rounded floats: no FMA with the bias */
        if (e->fbias) {
            p0 = _mm256_add_ps(p0, fbias[0]);
            p1 = _mm256_add_ps(p1, fbias[1]);
        }
        float *dst = (float *)e->y + (size_t)m * e->ldy + n0;
        if (valid >= 16) {
            _mm256_storeu_ps(dst, p0);
            _mm256_storeu_ps(dst + 8, p1);
        } else {
            float tmp[16];
            _mm256_storeu_ps(tmp, p0);
            _mm256_storeu_ps(tmp + 8, p1);
            memcpy(dst, tmp, (size_t)valid * sizeof(float));
        }
        break;
    }
    }
}

#endif
