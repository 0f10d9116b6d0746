/* The simulation's requantization loop (kernels/requant.h): scalar reference and dispatch. */
#include "requant.h"
#include "kernels.h"

void qat_requant_rows_ref(uint8_t *y, const float *acc, int64_t rows, int C, const int32_t *bias,
                          const float *mult, int32_t zy, int32_t lo, int32_t hi) {
#pragma omp parallel for num_threads(qat_get_threads()) if (rows * C > 65536) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *a = acc + r * C;
        uint8_t *o = y + r * C;
        for (int c = 0; c < C; c++)
            o[c] = (uint8_t)qat_requantize((int32_t)a[c] + bias[c], mult[c], zy, lo, hi);
    }
}

void qat_requant_rows(uint8_t *y, const float *acc, int64_t rows, int C, const int32_t *bias,
                      const float *mult, int32_t zy, int32_t lo, int32_t hi) {
    if (qat_cpu_isa() >= QAT_ISA_AVX2)
        qat_requant_rows_avx2(y, acc, rows, C, bias, mult, zy, lo, hi);
    else
        qat_requant_rows_ref(y, acc, rows, C, bias, mult, zy, lo, hi);
}
