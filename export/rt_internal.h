/* Internals of the INT8 runtime (export/rt*.c) shared with the tests and the CLI of this
 * repository; deploy code uses include/qat_rt.h only. */
#ifndef QAT_RT_INTERNAL_H
#define QAT_RT_INTERNAL_H

#include "q8.h"
#include "qat_rt.h"

/* Builds a runtime from a model in memory. The runtime keeps no pointer into m (weights are
 * packed, multipliers copied): m may be freed right after. */
qat_status qat_rt_from_model(const qat_q8_model *m, const qat_rt_options *opt, qat_rt **out);

#endif
