/* qat — quantization-aware training of MobileNet-style CNNs in C.
 *
 * Usage (train a model from a spec on a dataset, then evaluate it):
 *
 *   qat_dataset *train, *test;
 *   if (qat_dataset_open("fashion-mnist", &(qat_data_opts){0}, &train, &test)) die(qat_last_error());
 *   qat_model *m;
 *   if (qat_model_from_spec("mbv2-tiny", qat_dataset_input(train), &m)) die(qat_last_error());
 *   qat_train_opts o; qat_train_opts_default(&o);
 *   if (qat_train(m, train, test, &o)) die(qat_last_error());
 *   float acc; qat_evaluate(m, test, &acc, NULL);
 *   qat_model_free(m); qat_dataset_free(train); qat_dataset_free(test);
 *
 * Every function that can fail returns a qat_status; qat_last_error() then names the file and
 * the problem in one line. Nothing in the library prints or exits.
 */
#ifndef QAT_H
#define QAT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    QAT_OK = 0,
    QAT_ERR_ARG,      /* bad argument or option value */
    QAT_ERR_IO,       /* file missing, unreadable, unwritable */
    QAT_ERR_FORMAT,   /* file present but malformed, truncated or corrupt */
    QAT_ERR_SPEC,     /* malformed model spec */
    QAT_ERR_SHAPE,    /* shapes that do not fit together */
    QAT_ERR_NOMEM,    /* allocation failed */
    QAT_ERR_NUMERIC,  /* NaN/inf where a finite value is required */
    QAT_ERR_MISMATCH, /* e.g. a checkpoint of another architecture */
    QAT_STATUS_COUNT
} qat_status;

/* One line describing the last error of the calling thread ("file: problem"). */
const char *qat_last_error(void);
const char *qat_status_name(qat_status s);

/* Records an error message for the calling thread and returns `s` (for `return qat_fail(...)`). */
qat_status qat_fail(qat_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- CPU feature dispatch ------------------------------------------------------------ */
typedef enum {
    QAT_ISA_SCALAR = 0,
    QAT_ISA_AVX2,        /* AVX2 + FMA */
    QAT_ISA_AVX512,      /* AVX-512 F/BW/VL/DQ */
    QAT_ISA_COUNT
} qat_isa;

/* Best ISA of this CPU, capped by the environment variable QAT_ISA=scalar|avx2|avx512. */
qat_isa qat_cpu_isa(void);
int qat_cpu_has_avx512_vnni(void);
int qat_cpu_has_avx_vnni(void);
const char *qat_isa_name(qat_isa isa);
/* Forces the ISA (tests use this to exercise every path); returns the previous value. */
qat_isa qat_set_isa(qat_isa isa);

/* Number of OpenMP threads our kernels use; OpenBLAS is kept single-threaded. */
void qat_set_threads(int n);
int qat_get_threads(void);

#ifdef __cplusplus
}
#endif
#endif
