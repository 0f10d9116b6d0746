/* Internals shared by the files of the INT8 model format (runtime/q8_model.c, q8_kinds.c,
 * q8_file.c): limits, the arrays' descriptors, message and check helpers. Depends only on
 * qat.h and header-only parts of kernels/int8.h, so the loader can be built alone (make fuzz). */
#ifndef QAT_Q8_INTERNAL_H
#define QAT_Q8_INTERNAL_H

#include "int8.h"
#include "q8.h"
#include <math.h>
#include <stdint.h>

/* Limits the runtime relies on (q8.h, kernels/int8.h). */
#define Q8_MAX_DIM 65536
#define Q8_MAX_ELEMS (INT64_C(1) << 28) /* elements per image of one value */
#define Q8_MAX_GEMM_K (1 << 24)          /* I8_MAX_K of kernels/int8_ref.c: qat_i8_gemm_pack */
#define Q8_MAX_POOL_HW (1 << 23)         /* qat_i8_global_avgpool: sum and HW*zx stay exact */
#define Q8_MIN_WBITS 2
#define Q8_MAX_WBITS 8

/* ---- the per-layer arrays, one descriptor each ----------------------------------------------- */

typedef enum { ELEM_S8, ELEM_S32, ELEM_F32 } qat_q8_elem;
typedef struct {
    const char *name; /* also the name of the file section holding it */
    qat_q8_elem type;
} qat_q8_array_desc;
extern const qat_q8_array_desc qat_q8_arrays[QAT_Q8_ARR_COUNT];
#define QAT_Q8_ARRAY_BITS ((1u << QAT_Q8_ARR_COUNT) - 1)

const void *qat_q8_array_get(const qat_q8_layer *L, int a);
void qat_q8_array_set(qat_q8_layer *L, int a, void *p);
static inline size_t qat_q8_elem_bytes(qat_q8_elem t) { return t == ELEM_S8 ? 1 : 4; }
/* Elements of array a in layer L (shape validated: every factor is small). */
int64_t qat_q8_array_count(const qat_q8_layer *L, int a);
/* Which arrays are present, as a bit mask in array order. */
unsigned qat_q8_arrays_present(const qat_q8_layer *L);
/* The arrays of mask `have` are exactly what the kind needs (plus what it may have). */
qat_status qat_q8_check_array_set(const char *what, int i, const qat_q8_layer *L, unsigned have);

/* ---- messages and checks --------------------------------------------------------------------- */

/* "WHAT: layer I 'NAME': problem" (the name only once it is known to be a valid string). */
qat_status qat_q8_layer_fail(qat_status st, const char *what, int i, const qat_q8_layer *L,
                             int name_ok, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* A fixed-size text field: NUL-terminated within its size, printable ASCII before the NUL. */
int qat_q8_text_ok(const char *s, size_t cap);
/* What the writer leaves after a text field's NUL: zeros (a file is canonical: every byte of
 * it is either meaningful or zero, and loading then saving reproduces it). */
int qat_q8_zero_tail(const char *s, size_t cap);

static inline int qat_q8_pos_finite(float x) { return isfinite(x) && x > 0.0f; }
static inline int qat_q8_is_u8(int32_t v) { return v >= 0 && v <= 255; }
static inline int qat_q8_dim_ok(int32_t d) { return d >= 1 && d <= Q8_MAX_DIM; }

/* Operand `which` of layer i reads value v with qparams (s, z) and the layer's input shape. */
qat_status qat_q8_check_operand(const qat_q8_model *m, const char *what, int i, const char *which,
                                int32_t v, float s, int32_t z);
qat_status qat_q8_check_output_qparams(const char *what, int i, const qat_q8_layer *L);
qat_status qat_q8_check_wbits(const char *what, int i, const qat_q8_layer *L);
/* The model's invariants; with_arrays = 0: everything but the arrays (the loader's check
 * before it sizes them). */
qat_status qat_q8_check(const qat_q8_model *m, const char *what, int with_arrays);

#endif
