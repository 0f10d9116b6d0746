/* INT8 GEMM with AVX-VNNI (the VEX, ymm-only form of vpdpbusd found on CPUs without AVX-512,
 * e.g. Alder Lake, and on Zen 5): 32 exact u8 x s8 MACs per instruction, no saturation.
 *
 * Same packed weights as every variant: a 16-channel block [Kp/4][16][4] is two ymm (channels
 * 0-7 and 8-15). With 16 ymm registers the microkernel is MR rows x 16 channels: 2*MR
 * accumulators (12 for MR = 6), 2 weight vectors and one broadcast. The depthwise, add and
 * pooling kernels of this variant are the AVX2 ones (VNNI does not help them). */
#include "int8.h"
#include <immintrin.h>
#include <string.h>

#define FI static inline __attribute__((always_inline))
#define MRMAX 6

FI int32_t load_x4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

FI int32_t load_x_tail(const uint8_t *p, int n) {
    int32_t v = 0;
    memcpy(&v, p, (size_t)n);
    return v;
}

/* 8 requantized channels (acc includes bias_eff) into 8 bytes; see int8_vnni512.c for why the
 * clamp is done in float. */
FI __m128i requant8(__m256i acc, __m256 mult, __m256 flo, __m256 fhi, __m256i zy) {
    __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), mult);
    f = _mm256_min_ps(_mm256_max_ps(f, flo), fhi); /* max(NaN, lo) = lo, as qat_requantize */
    __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(f), zy);
    __m128i q16 = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    return _mm_packus_epi16(q16, q16); /* low 8 bytes */
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

/* One row, 16 channels from n0 (valid of them real): acc0 = channels 0-7, acc1 = 8-15. */
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

FI void tile(const qat_i8_gemm_job *j, const epilogue *e, int m, int nb, const int MR) {
    const qat_i8_gemm_weights *w = j->w;
    const int kg = w->K / 4, krem = w->K % 4;
    const int8_t *wp = w->w + (size_t)nb * (w->Kp / 4) * 64;
    const uint8_t *xp = j->x + (size_t)m * j->ldx;
    const int64_t ldx = j->ldx;
    __m256i acc[MRMAX][2];
    __m256i be0 = _mm256_loadu_si256((const __m256i *)(w->bias_eff + nb * 16));
    __m256i be1 = _mm256_loadu_si256((const __m256i *)(w->bias_eff + nb * 16 + 8));
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        acc[r][0] = be0;
        acc[r][1] = be1;
    }
    for (int g = 0; g < kg; g++) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(wp + (size_t)g * 64));
        __m256i w1 = _mm256_loadu_si256((const __m256i *)(wp + (size_t)g * 64 + 32));
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m256i xb = _mm256_set1_epi32(load_x4(xp + r * ldx + 4 * g));
            acc[r][0] = _mm256_dpbusd_avx_epi32(acc[r][0], xb, w0);
            acc[r][1] = _mm256_dpbusd_avx_epi32(acc[r][1], xb, w1);
        }
    }
    if (krem) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(wp + (size_t)kg * 64));
        __m256i w1 = _mm256_loadu_si256((const __m256i *)(wp + (size_t)kg * 64 + 32));
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m256i xb = _mm256_set1_epi32(load_x_tail(xp + r * ldx + 4 * kg, krem));
            acc[r][0] = _mm256_dpbusd_avx_epi32(acc[r][0], xb, w0);
            acc[r][1] = _mm256_dpbusd_avx_epi32(acc[r][1], xb, w1);
        }
    }
    const int n0 = nb * 16, valid = w->N - n0;
    __m256 mult[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, fbias[2] = {mult[0], mult[1]};
    if (e->kind != QAT_I8_OUT_S32) load_chan16(mult, e->mult, n0, valid);
    if (e->kind == QAT_I8_OUT_F32 && e->fbias) load_chan16(fbias, e->fbias, n0, valid);
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) store_row(e, m + r, n0, valid, acc[r][0], acc[r][1], mult, fbias);
}

void qat_i8_gemm_rows_avxvnni(const qat_i8_gemm_job *j, int m0, int m1) {
    const int nblk = j->w->Np / 16;
    const epilogue e = epilogue_of(j);
    for (int nb = 0; nb < nblk; nb++) {
        int m = m0;
        for (; m + 6 <= m1; m += 6) tile(j, &e, m, nb, 6);
        for (; m + 4 <= m1; m += 4) tile(j, &e, m, nb, 4);
        if (m + 2 <= m1) {
            tile(j, &e, m, nb, 2);
            m += 2;
        }
        if (m < m1) tile(j, &e, m, nb, 1);
    }
}
