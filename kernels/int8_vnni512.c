/* INT8 GEMM with AVX512-VNNI: vpdpbusd multiplies 4 u8 activations by 4 s8 weights per int32 lane
 * and adds them to the lane without saturation, so one instruction does 64 exact MACs.
 *
 * Microkernel: MR rows x NB blocks of 16 output channels, MR*NB zmm accumulators (<= 24 of the
 * 32 registers, leaving NB weight vectors and one broadcast). Per group of 4 K values: NB weight
 * loads (the packed [Kp/4][16][4] block is exactly one zmm), then per row one 32-bit broadcast
 * of the row's 4 activations and NB vpdpbusd. The packed weights hold zeros for K >= K and
 * N >= N, so only the loads of the activations (K tail) and the stores (N tail) need care. */
#include "int8_simd512.h" /* load_x4, requant32, epilogue, store_block, rows_nb, ... */
#include <immintrin.h>

#define MRMAX 16
#define NBMAX 4

/* MR rows from m, NB 16-channel blocks from block nb0. MR and NB are compile-time constants at
 * every call, so the loops unroll and acc[][] lives in registers. */
FI void tile(const qat_i8_gemm_job *j, const epilogue *e, int m, int nb0, const int MR,
             const int NB) {
    const qat_i8_gemm_weights *w = j->w;
    const int kg = w->K / 4, krem = w->K % 4;
    const size_t bstride = (size_t)(w->Kp / 4) * 64;
    const int8_t *wp = w->w + (size_t)nb0 * bstride;
    const uint8_t *xp = j->x + (size_t)m * j->ldx;
    const int64_t ldx = j->ldx;
    __m512i acc[MRMAX][NBMAX];
#pragma GCC unroll 4
    for (int b = 0; b < NB; b++) {
        __m512i be = _mm512_loadu_si512(w->bias_eff + (nb0 + b) * 16);
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) acc[r][b] = be;
    }
    for (int g = 0; g < kg; g++) {
        __m512i wv[NBMAX];
#pragma GCC unroll 4
        for (int b = 0; b < NB; b++) wv[b] = _mm512_loadu_si512(wp + b * bstride + (size_t)g * 64);
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
            __m512i xb = _mm512_set1_epi32(load_x4(xp + r * ldx + 4 * g));
#pragma GCC unroll 4
            for (int b = 0; b < NB; b++) acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], xb, wv[b]);
        }
    }
    if (krem) {
        __m512i wv[NBMAX];
#pragma GCC unroll 4
        for (int b = 0; b < NB; b++) wv[b] = _mm512_loadu_si512(wp + b * bstride + (size_t)kg * 64);
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
            __m512i xb = _mm512_set1_epi32(load_x_tail(xp + r * ldx + 4 * kg, krem));
#pragma GCC unroll 4
            for (int b = 0; b < NB; b++) acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], xb, wv[b]);
        }
    }
    if (NB == 4 && e->kind == QAT_I8_OUT_U8 && w->N >= (nb0 + 4) * 16) {
        /* 64 full channels per row: pack the four int32 blocks to bytes with vpackusdw/vpackuswb
         * (in-lane) and one vpermd, then a single 64-byte store; cheaper than four narrowing
         * masked stores, which matters when K is small and the epilogue dominates. */
        const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        const int n0 = nb0 * 16;
        __m512 mult[NBMAX];
#pragma GCC unroll 4
        for (int b = 0; b < NB; b++) mult[b] = _mm512_loadu_ps(e->mult + n0 + 16 * b);
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
            __m512i q[NBMAX];
#pragma GCC unroll 4
            for (int b = 0; b < NB; b++) q[b] = requant32(acc[r][b], mult[b], e->flo, e->fhi, e->zy);
            __m512i v = _mm512_packus_epi16(_mm512_packus_epi32(q[0], q[1]), _mm512_packus_epi32(q[2], q[3]));
            _mm512_storeu_si512(e->y + (size_t)(m + r) * e->ldy + n0, _mm512_permutexvar_epi32(order, v));
        }
        return;
    }
#pragma GCC unroll 4
    for (int b = 0; b < NB; b++) {
        int n0 = (nb0 + b) * 16;
        __mmask16 k = lane_mask(w->N - n0);
        __m512 mult = _mm512_setzero_ps(), fbias = _mm512_setzero_ps();
        if (e->kind != QAT_I8_OUT_S32) mult = _mm512_maskz_loadu_ps(k, e->mult + n0);
        if (e->kind == QAT_I8_OUT_F32 && e->fbias) fbias = _mm512_maskz_loadu_ps(k, e->fbias + n0);
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) store_block(e, m + r, n0, acc[r][b], mult, fbias, k);
    }
}

void qat_i8_gemm_rows_vnni512(const qat_i8_gemm_job *j, int m0, int m1) {
    const int nblk = j->w->Np / 16;
    const epilogue e = epilogue_of(j);
    int nb = 0;
    /* 24 accumulators in every shape: enough independent chains to hide vpdpbusd latency. */
    for (; nb + 4 <= nblk; nb += 4) rows_nb(j, &e, m0, m1, nb, 6, 4);
    switch (nblk - nb) {
    case 3: rows_nb(j, &e, m0, m1, nb, 8, 3); break;
    case 2: rows_nb(j, &e, m0, m1, nb, 12, 2); break;
    case 1: rows_nb(j, &e, m0, m1, nb, 16, 1); break;
    default: break;
    }
}
