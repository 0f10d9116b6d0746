/* Depthwise convolution, NHWC, AVX2 + FMA: 8 channels per ymm. Built with -mavx2 -mfma and
 * entered only when kernels/cpu.c found AVX2 (dispatch in kernels/dwconv.c).
 *
 * The kernel bodies are in kernels/dwconv_simd.h, shared with kernels/dwconv_avx512.c; this file
 * only defines the ISA block they are written against. With 16 ymm registers the 5x5 tap
 * weights/accumulators spill to the stack, which costs L1 loads but stays correct.
 */
#include <immintrin.h>

/* ---- ISA block ------------------------------------------------------------------------ */
#define VL 8
typedef __m256 vec;
typedef __m256i vmask;
static inline vmask tail_mask(int n) { /* lanes [0, n) set, 0 < n < VL */
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* `masked` and `m` are in scope wherever these are used: full channel blocks use plain
 * loads/stores (vmaskmov stores are slow on several cores), the last partial block masked. */
#define LD(p) (masked ? _mm256_maskload_ps((p), m) : _mm256_loadu_ps(p))
#define ST(p, v) (masked ? _mm256_maskstore_ps((p), m, (v)) : _mm256_storeu_ps((p), (v)))
#define FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define ADD(a, b) _mm256_add_ps((a), (b))
#define ZERO() _mm256_setzero_ps()
#define FULL_MASK _mm256_set1_epi32(-1)
#define NAME(f) f##_avx2
/* ---- end of ISA block ----------------------------------------------------------------- */

#include "dwconv_simd.h"
