/* INT8 GEMM with AVX512-VNNI: vpdpbusd multiplies 4 u8 activations by 4 s8 weights per int32 lane
 * and adds them to the lane without saturation, so one instruction does 64 exact MACs.
 *
 * Microkernel: MR rows x NB blocks of 16 output channels, MR*NB zmm accumulators (<= 24 of the
 * 32 registers, leaving NB weight vectors and one broadcast). Per group of 4 K values: NB weight
 * loads (the packed [Kp/4][16][4] block is exactly one zmm), then per row one 32-bit broadcast
 * of the row's 4 activations and NB vpdpbusd. The packed weights hold zeros for K >= K and
 * N >= N, so only the loads of the activations (K tail) and the stores (N tail) need care. */
#include "int8.h"
#include <immintrin.h>
#include <string.h>

#define FI static inline __attribute__((always_inline))
#define MRMAX 16
#define NBMAX 4

FI int32_t load_x4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The last K % 4 activations of a row, zero-extended; never reads past the row. */
FI int32_t load_x_tail(const uint8_t *p, int n) {
    int32_t v = 0;
    memcpy(&v, p, (size_t)n);
    return v;
}

FI __mmask16 lane_mask(int valid) { return valid >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << valid) - 1); }

/* 16 accumulators -> 16 requantized bytes. Clamp in float before converting:
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

/* Writes one 16-channel block of one row; acc already includes bias_eff. */
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
