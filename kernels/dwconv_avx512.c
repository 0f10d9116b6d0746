/* Depthwise convolution, NHWC, AVX-512: 16 channels per zmm. Built with -mavx512f/bw/vl/dq and
 * entered only when kernels/cpu.c found AVX-512 (dispatch in kernels/dwconv.c).
 *
 * The kernel bodies (and the notes on how the work is laid out) are in kernels/dwconv_simd.h,
 * shared with kernels/dwconv_avx2.c; this file only defines the ISA block they are written
 * against.
 */
#include <immintrin.h>

/* ---- ISA block ------------------------------------------------------------------------ */
#define VL 16
typedef __m512 vec;
typedef __mmask16 vmask;
static inline vmask tail_mask(int n) { return (vmask)((1u << n) - 1u); } /* 0 < n < VL */
/* `masked` and `m` are in scope wherever these are used: full channel blocks use plain
 * loads/stores, the last partial block masked ones. */
#define LD(p) (masked ? _mm512_maskz_loadu_ps(m, (p)) : _mm512_loadu_ps(p))
#define ST(p, v) (masked ? _mm512_mask_storeu_ps((p), m, (v)) : _mm512_storeu_ps((p), (v)))
#define FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define ADD(a, b) _mm512_add_ps((a), (b))
#define ZERO() _mm512_setzero_ps()
#define FULL_MASK ((vmask)0xffff)
#define NAME(f) f##_avx512
/* ---- end of ISA block ----------------------------------------------------------------- */

#include "dwconv_simd.h"
