/* Optimizer lifetime, names, and the step that spreads the per-kind update over threads.
 *
 * Threads split every segment into contiguous ranges (one parallel region per step, no barrier
 * between segments): each element is updated by exactly one thread with the same arithmetic, so
 * results do not depend on the thread count. */
#include "optim.h"
#include "kernels.h" /* qat_kernel_threads */
#include "base.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Below this many floats a step takes microseconds and a thread team costs more than it saves. */
#define QAT_OPTIM_PARALLEL_MIN (1 << 16)

static const char *const opt_names[QAT_OPT_COUNT] = {"sgd", "adamw"};
_Static_assert(sizeof opt_names / sizeof opt_names[0] == QAT_OPT_COUNT, "optimizer name table");

const char *qat_opt_name(qat_opt_kind k) {
    return (unsigned)k < QAT_OPT_COUNT ? opt_names[k] : "unknown";
}

int qat_opt_parse(const char *s, qat_opt_kind *out) {
    if (!s) return 1;
    for (int k = 0; k < QAT_OPT_COUNT; k++)
        if (!strcmp(s, opt_names[k])) {
            *out = (qat_opt_kind)k;
            return 0;
        }
    return 1;
}

int64_t qat_optim_state_floats(const qat_optimizer *o) {
    return o->kind == QAT_OPT_ADAMW ? 2 * o->n : o->n;
}

static int seg_by_offset(const void *a, const void *b) {
    int64_t x = ((const qat_param_seg *)a)->offset, y = ((const qat_param_seg *)b)->offset;
    return (x > y) - (x < y);
}

qat_status qat_optim_init(qat_optimizer *o, qat_opt_kind kind, int64_t n, const qat_param_seg *segs,
                          int nseg) {
    memset(o, 0, sizeof *o);
    if ((unsigned)kind >= QAT_OPT_COUNT) return qat_fail(QAT_ERR_ARG, "optimizer: unknown kind %d", (int)kind);
    /* 2n floats must fit in a size_t byte count. */
    if (n < 0 || (uint64_t)n > (uint64_t)SIZE_MAX / (2 * sizeof(float)))
        return qat_fail(QAT_ERR_ARG, "optimizer: bad parameter count %lld", (long long)n);
    if (nseg < 0 || (nseg > 0 && !segs))
        return qat_fail(QAT_ERR_ARG, "optimizer: bad segment list (%d segments)", nseg);
    for (int i = 0; i < nseg; i++) {
        const qat_param_seg *s = &segs[i];
        if (s->offset < 0 || s->numel < 0 || s->offset > n || s->numel > n - s->offset)
            return qat_fail(QAT_ERR_ARG,
                            "optimizer: segment %d [%lld, +%lld) outside the %lld parameters", i,
                            (long long)s->offset, (long long)s->numel, (long long)n);
    }
    qat_param_seg *copy = malloc((size_t)(nseg ? nseg : 1) * sizeof *copy);
    qat_param_seg *sorted = malloc((size_t)(nseg ? nseg : 1) * sizeof *sorted);
    if (!copy || !sorted) {
        free(copy);
        free(sorted);
        return qat_fail(QAT_ERR_NOMEM, "optimizer: out of memory for %d segments", nseg);
    }
    if (nseg) {
        memcpy(copy, segs, (size_t)nseg * sizeof *copy);
        memcpy(sorted, segs, (size_t)nseg * sizeof *sorted);
    }
    qsort(sorted, (size_t)nseg, sizeof *sorted, seg_by_offset);
    for (int i = 1; i < nseg; i++)
        if (sorted[i].offset < sorted[i - 1].offset + sorted[i - 1].numel) {
            qat_status st = qat_fail(QAT_ERR_ARG,
                                     "optimizer: segments at offsets %lld and %lld overlap",
                                     (long long)sorted[i - 1].offset, (long long)sorted[i].offset);
            free(copy);
            free(sorted);
            return st;
        }
    free(sorted);

    o->kind = kind;
    o->n = n;
    o->nseg = nseg;
    o->segs = copy;
    int64_t nstate = qat_optim_state_floats(o);
    size_t bytes = (size_t)(nstate ? nstate : 1) * sizeof(float);
    void *state = NULL;
    if (posix_memalign(&state, 64, bytes)) {
        free(copy);
        memset(o, 0, sizeof *o);
        return qat_fail(QAT_ERR_NOMEM, "optimizer: out of memory for %lld state floats",
                        (long long)nstate);
    }
    memset(state, 0, bytes);
    o->state = state;
    o->step = 0;
    o->momentum = 0.9f;
    o->nesterov = 1;
    o->weight_decay = kind == QAT_OPT_SGD ? 4e-5f : 0.05f;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
    return QAT_OK;
}

void qat_optim_free(qat_optimizer *o) {
    if (!o) return;
    free(o->segs);
    free(o->state);
    memset(o, 0, sizeof *o);
}

/* Start of thread `t`'s share of [0, numel) among `nt` threads, on a 16-float boundary so each
 * thread's range starts cache-line aligned relative to the segment. */
static int64_t split_point(int64_t numel, int t, int nt) {
    if (t >= nt) return numel;
    return (numel / nt * t + numel % nt * t / nt) & ~(int64_t)15;
}

/* The decimal a float hyperparameter was most likely written as (0.999f -> 0.999): the shortest
 * decimal that rounds back to it. PyTorch keeps betas and weight decay as Python doubles and
 * computes 1-beta2 etc. in double; 1 - 0.999f would be 4.7e-5 off in relative terms. */
static double decimal_of(float x) {
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)x);
        if (strtof(buf, NULL) == x) return strtod(buf, NULL);
    }
    return x;
}

void qat_optim_step(qat_optimizer *o, float *params, const float *grads, float lr) {
    QAT_ASSERT((unsigned)o->kind < QAT_OPT_COUNT && o->state);
    const int64_t step = o->step + 1; /* 1-based, as PyTorch's state['step'] after increment */
    const int first = o->step == 0;
    float *state = o->state;
    const int64_t n = o->n;
    const double beta1 = decimal_of(o->beta1), beta2 = decimal_of(o->beta2);
    const double eps = decimal_of(o->eps), wd_adamw = decimal_of(o->weight_decay);
#pragma omp parallel num_threads(qat_kernel_threads()) if (n >= QAT_OPTIM_PARALLEL_MIN)
    {
        const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
        for (int s = 0; s < o->nseg; s++) {
            const qat_param_seg seg = o->segs[s];
            const int64_t lo = split_point(seg.numel, tid, nt);
            const int64_t hi = split_point(seg.numel, tid + 1, nt);
            if (hi <= lo) continue;
            const int64_t off = seg.offset + lo, len = hi - lo;
            const float wd = seg.decay ? o->weight_decay : 0.0f;
            if (o->kind == QAT_OPT_SGD)
                qat_sgd_update(params + off, grads + off, state + off, len, lr, o->momentum,
                               o->nesterov, wd, first);
            else
                qat_adamw_update(params + off, grads + off, state + off, state + n + off, len, lr,
                                 beta1, beta2, eps, seg.decay ? wd_adamw : 0.0, step);
        }
    }
    o->step = step;
}
