/* Requantization of float accumulators for the integer-exact simulation of an INT8 model
 * (export/qsim.c), which sums its integer products with the float engine: a scalar reference
 * (qat_requantize per element) and an AVX2 version, identical codes (tests/test_qint.c). The
 * INT8 runtime's kernels (kernels/int8.h) requantize int32 accumulators in their own epilogues:
 * the two implementations share qmath.h's arithmetic and nothing else. */
#ifndef QAT_REQUANT_H
#define QAT_REQUANT_H

#include "qmath.h"
#include <stdint.h>

/* y[r][c] = qat_requantize((int32_t)acc[r][c] + bias[c], mult[c], zy, lo, hi); acc holds exact
 * integer-valued floats. Rows are split over the threads. */
void qat_requant_rows(uint8_t *y, const float *acc, int64_t rows, int C, const int32_t *bias,
                      const float *mult, int32_t zy, int32_t lo, int32_t hi);
void qat_requant_rows_ref(uint8_t *y, const float *acc, int64_t rows, int C, const int32_t *bias,
                          const float *mult, int32_t zy, int32_t lo, int32_t hi);
void qat_requant_rows_avx2(uint8_t *y, const float *acc, int64_t rows, int C,
                           const int32_t *bias, const float *mult, int32_t zy, int32_t lo,
                           int32_t hi);

#endif
