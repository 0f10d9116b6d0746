/* Learning-rate schedules as pure functions of the step, so resuming from a checkpoint needs
 * only the step counter. Computed in double and rounded once. */
#include "optim.h"
#include <math.h>
#include <string.h>

static const char *const sched_names[QAT_SCHED_COUNT] = {"constant", "step", "cosine", "onecycle"};
_Static_assert(sizeof sched_names / sizeof sched_names[0] == QAT_SCHED_COUNT, "schedule name table");

const char *qat_sched_name(qat_sched_kind k) {
    return (unsigned)k < QAT_SCHED_COUNT ? sched_names[k] : "unknown";
}

int qat_sched_parse(const char *s, qat_sched_kind *out) {
    if (!s) return 1;
    for (int k = 0; k < QAT_SCHED_COUNT; k++)
        if (!strcmp(s, sched_names[k])) {
            *out = (qat_sched_kind)k;
            return 0;
        }
    return 1;
}

void qat_sched_default(qat_sched *s, qat_sched_kind kind, float base_lr, int64_t total_steps) {
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->base_lr = base_lr;
    s->total_steps = total_steps;
    s->warmup_steps = kind == QAT_SCHED_COSINE ? total_steps / 20 : 0;
    s->warmup_start = 0.1f;
    s->min_lr = 0.0f;
    s->step_size = total_steps / 3 > 0 ? total_steps / 3 : 1;
    s->gamma = 0.1f;
    s->pct_start = 0.3f;
    s->div_factor = 25.0f;
    s->final_div_factor = 1e4f;
}

/* PyTorch's _annealing_cos: from `start` at pct 0 to `end` at pct 1. */
static double anneal_cos(double start, double end, double pct) {
    return end + (start - end) / 2.0 * (cos(M_PI * pct) + 1.0);
}

/* torch.optim.lr_scheduler.OneCycleLR (two phases, cos annealing): phase 1 ends at step
 * pct_start*total - 1 (the peak), phase 2 at total - 1 (the floor max/div/final_div). */
static double onecycle_lr(const qat_sched *s, int64_t step) {
    const double max_lr = s->base_lr;
    const double initial = max_lr / s->div_factor;
    const double floor_lr = initial / s->final_div_factor;
    const double peak_step = (double)s->pct_start * (double)s->total_steps - 1.0;
    const double last_step = (double)s->total_steps - 1.0;
    double t = (double)step;
    if (t > last_step) t = last_step; /* PyTorch raises past the end; we hold the floor */
    if (t < 0) t = 0;
    /* peak_step == 0 (pct_start*total == 1) is a 0/0 in PyTorch; we start at the peak. */
    if (peak_step > 0 && t <= peak_step) return anneal_cos(initial, max_lr, t / peak_step);
    const double span = last_step - peak_step;
    const double pct = span > 0 ? (t - peak_step) / span : 1.0;
    return anneal_cos(max_lr, floor_lr, pct > 1.0 ? 1.0 : pct);
}

float qat_sched_lr(const qat_sched *s, int64_t step) {
    if (step < 0) step = 0;
    const double base = s->base_lr;
    switch (s->kind) {
    case QAT_SCHED_CONSTANT:
        return s->base_lr;
    case QAT_SCHED_STEP: {
        int64_t k = s->step_size > 0 ? step / s->step_size : 0;
        return (float)(base * pow((double)s->gamma, (double)k));
    }
    case QAT_SCHED_COSINE: {
        const int64_t warm = s->warmup_steps > 0 ? s->warmup_steps : 0;
        if (step < warm) {
            double f = s->warmup_start + (1.0 - s->warmup_start) * (double)step / (double)warm;
            return (float)(base * f);
        }
        const int64_t span = s->total_steps - warm;
        double pct = span > 0 ? (double)(step - warm) / (double)span : 1.0;
        if (pct > 1.0) pct = 1.0;
        return (float)anneal_cos(base, s->min_lr, pct);
    }
    case QAT_SCHED_ONECYCLE:
        return (float)onecycle_lr(s, step);
    default:
        return s->base_lr;
    }
}
