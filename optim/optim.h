/* Optimizers and learning-rate schedules over the model's flat parameter array.
 *
 * The model keeps every parameter in one float allocation and every gradient in another of the
 * same layout (llm.c habit); a qat_param_seg names one parameter's slice of both. The optimizer
 * state is one more allocation laid out the same way, so a checkpoint saves it as one section.
 *
 *   qat_optimizer o;
 *   if (qat_optim_init(&o, QAT_OPT_SGD, n, segs, nseg)) die(qat_last_error());
 *   qat_sched s; qat_sched_default(&s, QAT_SCHED_COSINE, 0.05f, total_steps);
 *   for (int64_t t = 0; t < total_steps; t++) {
 *       ... forward, backward into grads ...
 *       qat_optim_step(&o, params, grads, qat_sched_lr(&s, t));
 *   }
 *   qat_optim_free(&o);
 *
 * Semantics match torch.optim.SGD (dampening 0) and torch.optim.AdamW (amsgrad off) exactly, so
 * a PyTorch peer fed the same gradients follows the same trajectory up to float rounding.
 */
#ifndef QAT_OPTIM_H
#define QAT_OPTIM_H

#include "qat.h"
#include <stdint.h>

/* A parameter's slice of the flat arrays; decay=0 for BN params and biases. */
typedef struct { int64_t offset, numel; int decay; } qat_param_seg;

/* qat_opt_kind and qat_sched_kind are public: include/qat.h */

typedef struct {
    qat_opt_kind kind;
    float momentum;          /* SGD; 0.9 */
    int nesterov;            /* SGD */
    float weight_decay;      /* SGD: L2 added to the gradient (PyTorch SGD semantics);
                                AdamW: decoupled, p -= lr*wd*p */
    float beta1, beta2, eps; /* AdamW: 0.9, 0.999, 1e-8 */
    int64_t n;               /* total parameter floats */
    int nseg;
    qat_param_seg *segs;     /* copy owned by the optimizer */
    float *state;            /* one allocation: SGD n floats (momentum buffer), AdamW 2n (m, v) */
    int64_t step;            /* number of steps taken (SGD first-step buffer, AdamW bias correction) */
} qat_optimizer;

/* Sets defaults: momentum .9, nesterov 1, wd 4e-5 (SGD) / 0.05 (AdamW), betas .9/.999, eps 1e-8.
 * Segments must lie inside [0, n) and must not overlap (an element in two segments would be
 * updated twice). State starts at zero, step at 0. */
qat_status qat_optim_init(qat_optimizer *o, qat_opt_kind kind, int64_t n, const qat_param_seg *segs,
                          int nseg);
/* One update of params (n floats) from grads (n floats) at learning rate lr; increments o->step.
 * Params outside every segment are untouched. */
void qat_optim_step(qat_optimizer *o, float *params, const float *grads, float lr);
/* For checkpoints: o->state has this many floats (SGD n, AdamW 2n). */
int64_t qat_optim_state_floats(const qat_optimizer *o);
void qat_optim_free(qat_optimizer *o);
const char *qat_opt_name(qat_opt_kind k);

/* Per-kind update kernels over one contiguous range [0, numel) of a segment (optim/sgd.c,
 * optim/adamw.c). Internal: qat_optim_step splits segments across threads and calls these.
 * AdamW takes doubles because qat_optim_step passes the decimal each float hyperparameter was
 * written as (0.999f -> 0.999), so 1-beta2 etc. round as PyTorch's Python doubles do. */
void qat_sgd_update(float *p, const float *g, float *buf, int64_t numel, float lr, float momentum,
                    int nesterov, float wd, int first_step);
void qat_adamw_update(float *p, const float *g, float *m, float *v, int64_t numel, double lr,
                      double beta1, double beta2, double eps, double wd, int64_t step);


typedef struct {
    qat_sched_kind kind;
    float base_lr;           /* peak lr */
    int64_t total_steps;
    int64_t warmup_steps;    /* cosine: linear warmup from base_lr*warmup_start to base_lr,
                                then cosine to min_lr */
    float warmup_start;      /* fraction, e.g. 0.1 */
    float min_lr;            /* cosine floor */
    int64_t step_size;       /* step: lr = base * gamma^(step / step_size) */
    float gamma;
    float pct_start, div_factor, final_div_factor; /* one-cycle, PyTorch OneCycleLR defaults 0.3,
                                                      25, 1e4, cosine annealing both phases */
} qat_sched;

/* Defaults: step: step_size = total/3, gamma 0.1; cosine: warmup 5% of total from 0.1*base,
 * min_lr 0; one-cycle: 0.3, 25, 1e4. One-cycle follows OneCycleLR to the step: base/div at step
 * 0, the peak at step pct_start*total - 1, base/div/final_div at step total - 1. */
void qat_sched_default(qat_sched *s, qat_sched_kind kind, float base_lr, int64_t total_steps);
/* lr to use for step `step` (0-based). Steps past the end keep the last value of the schedule. */
float qat_sched_lr(const qat_sched *s, int64_t step);
const char *qat_sched_name(qat_sched_kind k);

#endif
