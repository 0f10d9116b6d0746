/* Internals shared by the BatchNorm passes of kernels/bn.c (scalar, drivers) and
 * kernels/bn_avx512.c (AVX-512): chunking constants, the chunk functions' signature, the flat
 * walk's per-channel vectors. Not for callers: kernels/bn.h is the interface. */
#ifndef QAT_BN_PASS_H
#define QAT_BN_PASS_H

#include "bn.h"

/* Row reductions are split into chunks that depend on the shape only (never on the thread
 * count); each chunk sums in double and the chunk partials are added in chunk order, so the
 * result is bitwise the same with 1 or 2 threads. */
#define BN_CHUNK_ELEMS 16384
#define BN_MAX_CHUNKS 64
/* Rows summed in float before folding into double: float adds vectorise twice as wide and the
 * error of 16 float adds is negligible next to the double sum over 50K rows. */
#define BN_SUB_ROWS 16
/* Below this many elements a parallel region costs more than it saves; 2^17 keeps batch-1
 * activations on one thread (a join can wait a scheduler slice beside busy processes: issue 19,
 * kernels/dwconv_simd.h). */
#define BN_PAR_ELEMS 131072
/* Codes turned into masks per block of channels (see code_mask in kernels/bn.c). */
#define BN_CODE_BLOCK 256

/* C rounded up to whole 16-lane blocks: the width of a row of the chunk scratch. */
static inline int bn_pad(int C) { return (C + 15) & ~15; }

/* Sums of one chunk of rows: s1 += sum_r ..., s2 += sum_r ... per column, with f1/f2 the float
 * partials' scratch (bn_pad(C) each; a range-taking fn also uses f2 + Cp and f2 + 2Cp for the
 * per-column min and max). a = x (statistics) or dy (gradient), b = x (gradient). */
typedef void (*bn_chunk_fn)(const float *restrict a, const float *restrict b,
                            const float *restrict ref, const float *restrict y,
                            const float *restrict isc, const uint8_t *restrict code, const float *restrict aff, float lo,
                            float hi, int64_t rows, int C, float *restrict f1,
                            float *restrict f2, double *restrict s1, double *restrict s2);

/* The element-wise passes (the stored forward y, dx) walk a block of whole rows as one flat
 * array, 16 elements at a time, so only the block's last vector is partial: per row, a
 * channel count that is no multiple of 16 (24, 40) left a masked store per row, slow on AMD
 * Zen, and a row of 16 channels a call per row. The per-channel vectors are repeated over
 * P = lcm(C, 16) floats plus one vector (bn_rep) and read at the phase (element index mod P),
 * a vector at a time: a block starting mid-period reads past P into the repeat. With C a
 * multiple of 16, P = C, every phase is a multiple of 16 and the vectors are used as they
 * are. Each element still goes through the same float operations as in the scalar passes. */
typedef struct {
    int P;                /* lcm(C, 16) */
    const float *mu, *is; /* is NULL: unscaled */
    const float *sc, *sh; /* forward: y = (t - mu) * sc + sh */
    const float *A, *B, *D, *afs, *afh; /* dx; with codes the forward's scale and shift */
} bn_flat;

/* ---- the AVX-512 passes (kernels/bn_avx512.c) ------------------------------------------------ */
/* the statistics chunk for (scaled, range) and the gradient chunk for (scaled, has_code) */
bn_chunk_fn qat_bn_stats_chunk_fn_avx512(int scaled, int range);
bn_chunk_fn qat_bn_grad_chunk_fn_avx512(int scaled, int has_code);
/* y over n elements of whole rows starting at phase ph */
void qat_bn_fwd_flat_avx512(float *restrict y, const float *restrict x, int64_t n, int ph,
                            const bn_flat *f, float lo, float hi, int clamp);
/* range of y over rows [r0, r1): min and max skipping NaN, NaN count */
void qat_bn_fwd_range_avx512(const float *restrict x, int64_t r0, int64_t r1, int C,
                             const float *restrict is, const float *restrict mu,
                             const float *restrict sc, const float *restrict sh, float lo,
                             float hi, int clamp, float *mn, float *mx, int64_t *nan);
/* y recomputed over rows [r0, r1) and fake-quantized per tensor */
void qat_bn_fwd_fq_rows_avx512(float *restrict out, uint8_t *restrict code,
                               const float *restrict x, int64_t r0, int64_t r1, int C,
                               const float *restrict is, const float *restrict mu,
                               const float *restrict sc, const float *restrict sh, float lo,
                               float hi, int clamp, const qat_fq_consts *k);
/* dx over n elements of whole rows from phase ph, for (scaled, has_code, accumulate) */
typedef void (*bn_dx_flat_fn)(float *, const float *, const float *, const float *,
                              const uint8_t *, int64_t, int, const bn_flat *, float, float);
bn_dx_flat_fn qat_bn_dx_flat_fn_avx512(int scaled, int has_code, int accumulate);

#endif
