/* The ground floor every other folder stands on: status codes and one-line errors (qat_fail,
 * base/error.c, declared in include/qat.h), internal invariants, the clock, the deterministic RNG and the
 * small helpers several floors share. Nothing here knows about tensors, models or files. */
#ifndef QAT_BASE_H
#define QAT_BASE_H

#include "qat.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Internal invariants (a bug in qat, not a user error): file:line on stderr, then abort.
 * User errors never take this path: they return a qat_status. */
#define QAT_ASSERT(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: internal invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* Deterministic RNG (xoshiro256**); the state is saved in checkpoints. */
typedef struct { uint64_t s[4]; } qat_rng;
void qat_rng_seed(qat_rng *r, uint64_t seed);
uint64_t qat_rng_next(qat_rng *r);
float qat_rng_uniform(qat_rng *r);                    /* [0, 1) */
float qat_rng_normal(qat_rng *r);                     /* N(0, 1) */
uint32_t qat_rng_below(qat_rng *r, uint32_t n);       /* [0, n) */

/* Monotonic seconds. */
double qat_now(void);

/* Index of the largest of v[0..n) (the first one on ties; NaN never wins): the predicted class
 * of a row of logits. */
int qat_argmax(const float *v, int n);

/* Elements of a tensor of this shape (the product of ndim sizes). */
int64_t qat_shape_numel(int ndim, const int *shape);

#endif
