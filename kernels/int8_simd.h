/* Helpers shared by the SIMD INT8 kernels (kernels/int8_avx2.c, int8_avxvnni.c, int8_avx512.c,
 * int8_vnni512.c): ISA-neutral pieces only. The per-vector-width GEMM epilogues are in
 * kernels/int8_simd256.h (ymm) and kernels/int8_simd512.h (zmm), which include this file. */
#ifndef QAT_INT8_SIMD_H
#define QAT_INT8_SIMD_H

#include "int8.h"
#include <stdint.h>
#include <string.h>

#define FI static inline __attribute__((always_inline))

/* A row's next 4 activations as one int32, ready to broadcast (may be unaligned). */
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

#endif
