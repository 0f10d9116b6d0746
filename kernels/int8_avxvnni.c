/* INT8 GEMM with AVX-VNNI (the VEX, ymm-only form of vpdpbusd found on CPUs without AVX-512,
 * e.g. Alder Lake, and on Zen 5): 32 exact u8 x s8 MACs per instruction, no saturation.
 *
 * Same packed weights as every variant: a 16-channel block [Kp/4][16][4] is two ymm (channels
 * 0-7 and 8-15). With 16 ymm registers the microkernel is MR rows x 16 channels: 2*MR
 * accumulators (12 for MR = 6), 2 weight vectors and one broadcast. The depthwise, add and
 * pooling kernels of this variant are the AVX2 ones (VNNI does not help them). */
#include "int8_simd256.h" /* load_x4, requant8, epilogue, store_row, ... */
#include <immintrin.h>

#define MRMAX 6

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
