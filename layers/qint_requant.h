/* The requantization loop of the integer-exact simulation (layers/qint.c): a scalar reference
 * (qat_qint_requant_rows_ref, qat_requantize per element) and an AVX2 version (qint_avx2.c);
 * qat_qint_requant_rows picks by CPU. Both give identical codes. */
#ifndef QAT_QINT_REQUANT_H
#define QAT_QINT_REQUANT_H

#include "qat.h"
#include "qmath.h"
#include <stdint.h>

/* y[r][c] = qat_requantize((int32_t)acc[r][c] + bias[c], mult[c], zy, lo, hi); acc holds exact
 * integer-valued floats. Rows are split over the threads. */
#define QAT_QINT_REQUANT_ROWS(NAME)                                                                \
    void NAME(uint8_t *y, const float *acc, int64_t rows, int C, const int32_t *bias,              \
              const float *mult, int32_t zy, int32_t lo, int32_t hi) {                             \
        _Pragma("omp parallel for num_threads(qat_get_threads()) if (rows * C > 65536) schedule(static)") \
        for (int64_t r = 0; r < rows; r++) {                                                       \
            const float *a = acc + r * C;                                                          \
            uint8_t *o = y + r * C;                                                                \
            for (int c = 0; c < C; c++)                                                            \
                o[c] = (uint8_t)qat_requantize((int32_t)a[c] + bias[c], mult[c], zy, lo, hi);     \
        }                                                                                          \
    }

void qat_qint_requant_rows_ref(uint8_t *y, const float *acc, int64_t rows, int C,
                               const int32_t *bias, const float *mult, int32_t zy, int32_t lo,
                               int32_t hi);
void qat_qint_requant_rows(uint8_t *y, const float *acc, int64_t rows, int C, const int32_t *bias,
                           const float *mult, int32_t zy, int32_t lo, int32_t hi);
void qat_qint_requant_rows_avx2(uint8_t *y, const float *acc, int64_t rows, int C,
                                const int32_t *bias, const float *mult, int32_t zy, int32_t lo,
                                int32_t hi);
#endif
