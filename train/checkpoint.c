/* Checkpoint contents. The file container (magic, version, section table, CRCs, atomic write)
 * is base/container.c; this file decides what a training run stores in it. The spec text is
 * stored so `qat eval --ckpt` rebuilds the architecture without being told it. */
#include "container.h"
#include "train.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char CKPT_MAGIC[8] = {'Q', 'A', 'T', 'C', 'K', 'P', 'T', '1'};
#define CKPT_VERSION 1

/* Fixed-size, little-endian (x86) record of everything scalar in a run. */
typedef struct {
    uint32_t in_h, in_w, in_c, nclasses;
    float width;
    uint32_t epoch;
    int64_t step;
    float best_acc;
    float mean[4], std[4];
    uint32_t pad_a;
    uint64_t seed;
    int64_t nparams, nbuffers;
    /* optimizer */
    int32_t has_opt, opt_kind, nesterov, pad0;
    float momentum, weight_decay, beta1, beta2, eps, pad1;
    int64_t opt_step, opt_state_floats;
    /* schedule */
    int32_t sched_kind, pad2;
    float base_lr, warmup_start, min_lr, gamma, pct_start, div_factor, final_div_factor, pad3;
    int64_t total_steps, warmup_steps, step_size;
    uint64_t rng[4];
} ckpt_meta;
_Static_assert(sizeof(ckpt_meta) == 248, "checkpoint meta layout is part of the file format");
/* Section "data" (optional, added without a version bump: readers look sections up by name and
 * skip the ones they do not know, and a checkpoint without it just has no recorded pipeline). */
_Static_assert(sizeof(qat_pipeline) == 416, "the \"data\" section layout is part of the file format");

/* ---- the values a run carries (issue 15 point 2) -----------------------------------------------
 *
 * Checked on save and on load with the same functions: a diverged run must not write a
 * checkpoint that eval refuses or a resume trains on (qat train --lr 1e16 wrote NaN parameters
 * and exited 0), and a corrupt or edited checkpoint is refused naming the checkpoint, not the
 * dataset it meets later (a NaN mean was blamed on t10k-images-idx3-ubyte; a std of 0 was
 * silently taken as 1). */
static qat_status check_finite(const float *v, int64_t n, const char *path, const char *what) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return qat_fail(QAT_ERR_NUMERIC, "%s: %s value %lld is not finite (%g)", path, what,
                            (long long)i, (double)v[i]);
    return QAT_OK;
}

/* BN running statistics: finite, and a running variance >= 0 (its square root divides). */
static qat_status check_bn_buffers(const qat_model *m, const char *path) {
    for (int s = 0; s < m->nbuffer_segs; s++) {
        const qat_buffer_info *b = &m->buffer_info[s];
        size_t len = strlen(b->name);
        int var = len >= 11 && !strcmp(b->name + len - 11, "running_var");
        for (int64_t i = 0; i < b->numel; i++) {
            float v = m->buffers[b->offset + i];
            if (!isfinite(v) || (var && v < 0))
                return qat_fail(QAT_ERR_NUMERIC, "%s: BN %s[%lld] is %g (%s)", path, b->name,
                                (long long)i, (double)v,
                                var ? "a running variance must be finite and >= 0" : "not finite");
        }
    }
    return QAT_OK;
}

/* The input normalisation of the run: a finite mean and a positive finite std per channel. */
static qat_status check_norm(const float *mean, const float *std, int c, const char *path) {
    for (int k = 0; k < c; k++)
        if (!isfinite(mean[k]) || !isfinite(std[k]) || !(std[k] > 0))
            return qat_fail(QAT_ERR_FORMAT, "%s: input normalisation of channel %d is mean %g, "
                            "std %g (a finite mean and a std > 0 expected)", path, k,
                            (double)mean[k], (double)std[k]);
    return QAT_OK;
}

static int in_range(double v, double lo, double hi) { return v >= lo && v <= hi; }

/* The optimizer's settings and the schedule's fields, as a run can have set them. */
static qat_status check_opt_sched(const qat_optimizer *o, const qat_sched *s, const char *path) {
    if (!in_range(o->momentum, 0, 0.9999999) || !in_range(o->weight_decay, 0, 0.9999999) ||
        !in_range(o->beta1, 0, 0.9999999) || !in_range(o->beta2, 0, 0.9999999) ||
        !in_range(o->eps, 0, 1) || o->step < 0)
        return qat_fail(QAT_ERR_FORMAT, "%s: optimizer settings out of range (momentum %g, weight "
                        "decay %g, betas %g %g, eps %g, step %lld)", path, (double)o->momentum,
                        (double)o->weight_decay, (double)o->beta1, (double)o->beta2, (double)o->eps,
                        (long long)o->step);
    const double big = 9007199254740992.0; /* 2^53 steps */
    if (!in_range(s->base_lr, 1e-30, 1e6) || !in_range(s->warmup_start, 0, 1) ||
        !in_range(s->min_lr, 0, s->base_lr) || !in_range(s->gamma, 0, 1e6) ||
        !in_range(s->pct_start, 0, 1) || !in_range(s->div_factor, 0, 1e12) ||
        !in_range(s->final_div_factor, 0, 1e12) || !in_range((double)s->total_steps, 0, big) ||
        !in_range((double)s->warmup_steps, 0, big) ||
        !in_range((double)s->step_size, 0, big))
        return qat_fail(QAT_ERR_FORMAT, "%s: schedule fields out of range (lr %g, min %g, warmup "
                        "start %g, gamma %g, pct_start %g, div %g/%g, steps %lld, warmup %lld, step "
                        "size %lld)", path, (double)s->base_lr, (double)s->min_lr,
                        (double)s->warmup_start, (double)s->gamma, (double)s->pct_start,
                        (double)s->div_factor, (double)s->final_div_factor,
                        (long long)s->total_steps, (long long)s->warmup_steps, (long long)s->step_size);
    return QAT_OK;
}

qat_status qat_run_check_state(const qat_run *r, const char *path) {
    const qat_model *m = r->model;
    qat_status st;
    if ((st = check_finite(m->params, m->nparams, path, "parameter"))) return st;
    if ((st = check_bn_buffers(m, path))) return st;
    if ((st = check_norm(r->mean, r->std, m->in_c, path))) return st;
    if (r->has_opt && (st = check_finite(r->opt.state, qat_optim_state_floats(&r->opt), path,
                                         "optimizer state")))
        return st;
    if (r->has_qopt && (st = check_finite(r->qopt.state, qat_optim_state_floats(&r->qopt), path,
                                          "quantizer optimizer state")))
        return st;
    if (r->qmodel && r->qmodel->nlsq &&
        (st = check_finite(r->qmodel->lsq_params, r->qmodel->nlsq, path, "learned quantizer parameter")))
        return st;
    return QAT_OK;
}

qat_status qat_checkpoint_save(const char *path, const qat_run *r) {
    const qat_model *m = r->model;
    /* never a checkpoint the loader would refuse: a diverged run keeps its last good one */
    qat_status bad = qat_run_check_state(r, path);
    if (!bad && r->has_opt) bad = check_opt_sched(&r->opt, &r->sched, path);
    if (bad) {
        char why[1024];
        snprintf(why, sizeof why, "%s", qat_last_error());
        return qat_fail(bad, "%s (not written)", why);
    }
    ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.in_h = m->in_h, meta.in_w = m->in_w, meta.in_c = m->in_c, meta.nclasses = m->nclasses;
    meta.width = m->width_mult;
    meta.epoch = r->epoch, meta.step = r->step, meta.best_acc = r->best_acc;
    memcpy(meta.mean, r->mean, sizeof meta.mean);
    memcpy(meta.std, r->std, sizeof meta.std);
    meta.seed = r->seed;
    meta.nparams = m->nparams, meta.nbuffers = m->nbuffers;
    meta.has_opt = r->has_opt;
    if (r->has_opt) {
        const qat_optimizer *o = &r->opt;
        meta.opt_kind = o->kind, meta.nesterov = o->nesterov;
        meta.momentum = o->momentum, meta.weight_decay = o->weight_decay;
        meta.beta1 = o->beta1, meta.beta2 = o->beta2, meta.eps = o->eps;
        meta.opt_step = o->step, meta.opt_state_floats = qat_optim_state_floats(o);
        const qat_sched *s = &r->sched;
        meta.sched_kind = s->kind, meta.base_lr = s->base_lr, meta.warmup_start = s->warmup_start;
        meta.min_lr = s->min_lr, meta.gamma = s->gamma, meta.pct_start = s->pct_start;
        meta.div_factor = s->div_factor, meta.final_div_factor = s->final_div_factor;
        meta.total_steps = s->total_steps, meta.warmup_steps = s->warmup_steps;
        meta.step_size = s->step_size;
    }
    memcpy(meta.rng, r->rng.s, sizeof meta.rng);
    const char *spec = qat_spec_text(r->spec);
    /* PTQ / QAT runs add the fake-quant state; FP32 checkpoints stay as they were. */
    size_t qbytes = r->qmodel ? qat_qmodel_state_bytes(r->qmodel) : 0;
    void *qbuf = NULL;
    if (r->qmodel) {
        if (!(qbuf = malloc(qbytes))) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path);
        qat_qmodel_pack(r->qmodel, qbuf);
        /* the quantizers' state goes through the loader's own checks (scales, observer ranges)
         * before it is written */
        qat_qmodel *check = NULL;
        /* unpack only reads the model (its BN update flag, set again as it already is for a
         * frozen state), hence the cast */
        qat_status qst = qat_qmodel_unpack((qat_model *)m, qbuf, qbytes, path, &check);
        qat_qmodel_free(check);
        if (qst) {
            char why[1024];
            snprintf(why, sizeof why, "%s", qat_last_error());
            free(qbuf);
            return qat_fail(qst, "%s (not written)", why);
        }
    }
    size_t nlen = 0;
    char *names = r->class_names ? qat_class_names_join(r->class_names, m->nclasses, &nlen) : NULL;
    if (r->class_names && !names) {
        free(qbuf);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path);
    }
    qat_section secs[9] = {
        {"meta", &meta, sizeof meta},
        {"spec", spec, strlen(spec)},
        {"params", m->params, (uint64_t)m->nparams * sizeof(float)},
        {"buffers", m->buffers, (uint64_t)m->nbuffers * sizeof(float)},
        {"optim", r->has_opt ? r->opt.state : NULL,
         r->has_opt ? (uint64_t)meta.opt_state_floats * sizeof(float) : 0},
        {"quant", qbuf, qbytes},
        {"qoptim", r->has_qopt ? r->qopt.state : NULL,
         r->has_qopt ? (uint64_t)qat_optim_state_floats(&r->qopt) * sizeof(float) : 0},
    };
    int nsec = r->qmodel ? (r->has_qopt ? 7 : 6) : 5;
    /* The recorded pipeline goes after the sections in use; a run without one (loaded from an
     * older checkpoint, e.g. by ptq) writes the sections it was read with. */
    if (r->has_pipeline) secs[nsec++] = (qat_section){"data", &r->pipeline, sizeof r->pipeline};
    /* an ImageFolder's class names (optional, looked up by name like "data") */
    if (names) secs[nsec++] = (qat_section){"classes", names, nlen};
    qat_status st = qat_container_write(path, CKPT_MAGIC, CKPT_VERSION, secs, nsec);
    free(qbuf);
    free(names);
    return st;
}

void qat_run_free(qat_run *r) {
    if (r->has_opt) qat_optim_free(&r->opt);
    if (r->has_qopt) qat_optim_free(&r->qopt);
    qat_qmodel_free(r->qmodel);
    qat_model_free(r->model);
    qat_spec_free(r->spec);
    free(r->class_names);
    memset(r, 0, sizeof *r);
}

static qat_status load_sections(const qat_container *c, const char *path, qat_run *r) {
    const void *p;
    uint64_t size;
    qat_status st;
    if ((st = qat_container_get(c, "meta", sizeof(ckpt_meta), &p, &size))) return st;
    ckpt_meta meta;
    memcpy(&meta, p, sizeof meta);
    if ((st = qat_container_get(c, "spec", 0, &p, &size))) return st;
    char *text = malloc(size + 1);
    if (!text) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path);
    memcpy(text, p, size);
    text[size] = 0;
    char source[600];
    snprintf(source, sizeof source, "%s (stored spec)", path);
    st = qat_spec_parse(text, source, &r->spec);
    free(text);
    if (st) return st;
    if (meta.in_h == 0 || meta.in_h > 4096 || meta.in_w == 0 || meta.in_w > 4096 ||
        meta.in_c == 0 || meta.in_c > 4 || meta.nclasses < 2 || meta.nclasses > 100000 ||
        !(meta.width > 0 && meta.width <= 16))
        return qat_fail(QAT_ERR_FORMAT, "%s: implausible input shape or width in checkpoint", path);
    if ((st = qat_model_create(r->spec, meta.width, meta.in_h, meta.in_w, meta.in_c,
                               meta.nclasses, &r->model)))
        return st;
    qat_model *m = r->model;
    if (meta.nparams != m->nparams || meta.nbuffers != m->nbuffers)
        return qat_fail(QAT_ERR_MISMATCH, "%s: parameter count %lld does not match its spec (%lld)",
                        path, (long long)meta.nparams, (long long)m->nparams);
    if ((st = qat_container_get(c, "params", (uint64_t)m->nparams * sizeof(float), &p, &size)))
        return st;
    memcpy(m->params, p, size);
    if (m->nbuffers) {
        if ((st = qat_container_get(c, "buffers", (uint64_t)m->nbuffers * sizeof(float), &p, &size)))
            return st;
        memcpy(m->buffers, p, size);
    }
    if (meta.step < 0 || !(meta.best_acc >= 0 && meta.best_acc <= 1))
        return qat_fail(QAT_ERR_FORMAT, "%s: step %lld or best accuracy %g out of range", path,
                        (long long)meta.step, (double)meta.best_acc);
    r->epoch = (int)meta.epoch, r->step = meta.step, r->best_acc = meta.best_acc;
    memcpy(r->mean, meta.mean, sizeof r->mean);
    memcpy(r->std, meta.std, sizeof r->std);
    r->seed = meta.seed;
    memcpy(r->rng.s, meta.rng, sizeof meta.rng);
    if (meta.has_opt) {
        if (meta.opt_kind < 0 || meta.opt_kind >= QAT_OPT_COUNT || meta.sched_kind < 0 ||
            meta.sched_kind >= QAT_SCHED_COUNT)
            return qat_fail(QAT_ERR_FORMAT, "%s: unknown optimizer or schedule kind", path);
        if ((st = qat_optim_init(&r->opt, (qat_opt_kind)meta.opt_kind, m->nparams, m->segs, m->nsegs)))
            return st;
        r->has_opt = 1;
        qat_optimizer *o = &r->opt;
        o->nesterov = meta.nesterov, o->momentum = meta.momentum;
        o->weight_decay = meta.weight_decay, o->beta1 = meta.beta1, o->beta2 = meta.beta2;
        o->eps = meta.eps, o->step = meta.opt_step;
        if (meta.opt_state_floats != qat_optim_state_floats(o))
            return qat_fail(QAT_ERR_FORMAT, "%s: optimizer state size mismatch", path);
        if ((st = qat_container_get(c, "optim", (uint64_t)meta.opt_state_floats * sizeof(float), &p,
                                    &size)))
            return st;
        memcpy(o->state, p, size);
        qat_sched *s = &r->sched;
        memset(s, 0, sizeof *s);
        s->kind = (qat_sched_kind)meta.sched_kind, s->base_lr = meta.base_lr;
        s->warmup_start = meta.warmup_start, s->min_lr = meta.min_lr, s->gamma = meta.gamma;
        s->pct_start = meta.pct_start, s->div_factor = meta.div_factor;
        s->final_div_factor = meta.final_div_factor, s->total_steps = meta.total_steps;
        s->warmup_steps = meta.warmup_steps, s->step_size = meta.step_size;
        if ((st = check_opt_sched(o, s, path))) return st;
    }
    p = qat_container_find(c, "data", &size);
    if (p) {
        /* a longer record is a newer qat's: its first fields are these */
        if (size < sizeof r->pipeline)
            return qat_fail(QAT_ERR_FORMAT, "%s: section 'data' has %llu bytes, expected at least %zu",
                            path, (unsigned long long)size, sizeof r->pipeline);
        memcpy(&r->pipeline, p, sizeof r->pipeline);
        qat_pipeline *d = &r->pipeline;
        d->phase[sizeof d->phase - 1] = d->kind[sizeof d->kind - 1] = d->data[sizeof d->data - 1] = 0;
        if (d->c < 1 || d->c > 4 || d->steps_per_epoch < 1 || d->total_steps < 0)
            return qat_fail(QAT_ERR_FORMAT, "%s: implausible values in section 'data'", path);
        r->has_pipeline = 1;
    }
    p = qat_container_find(c, "classes", &size);
    if (p && (st = qat_class_names_parse(p, (size_t)size, m->nclasses, path, &r->class_names))) return st;
    p = qat_container_find(c, "quant", &size);
    if (p && (st = qat_qmodel_unpack(m, p, size, path, &r->qmodel))) return st;
    p = qat_container_find(c, "qoptim", &size);
    if (p && r->has_opt && r->qmodel && r->qmodel->nlsq) {
        /* the learned quantizers' optimizer: same kind and settings as the model's, no decay */
        if ((st = qat_optim_init(&r->qopt, r->opt.kind, r->qmodel->nlsq, r->qmodel->lsq_segs,
                                 r->qmodel->nlsq_segs)))
            return st;
        r->has_qopt = 1;
        qat_optimizer *o = &r->qopt;
        o->nesterov = r->opt.nesterov, o->momentum = r->opt.momentum, o->weight_decay = 0;
        o->beta1 = r->opt.beta1, o->beta2 = r->opt.beta2, o->eps = r->opt.eps, o->step = r->opt.step;
        if (size != (uint64_t)qat_optim_state_floats(o) * sizeof(float))
            return qat_fail(QAT_ERR_FORMAT, "%s: section 'qoptim' has the wrong size", path);
        memcpy(o->state, p, size);
    }
    return qat_run_check_state(r, path);
}

qat_status qat_checkpoint_load(const char *path, qat_run *r) {
    memset(r, 0, sizeof *r);
    qat_container *c;
    qat_status st = qat_container_read(path, CKPT_MAGIC, CKPT_VERSION, &c);
    if (st) return st;
    st = load_sections(c, path, r);
    qat_container_free(c);
    if (st) qat_run_free(r);
    return st;
}

qat_status qat_run_take_class_names(qat_run *r, const qat_dataset *d) {
    if (r->class_names || !d->class_names || d->nclasses != r->model->nclasses) return QAT_OK;
    int numbers = 1; /* "0", "1", ...: the names IDX and CIFAR get, nothing to keep */
    for (int k = 0; k < d->nclasses && numbers; k++) {
        char num[16];
        snprintf(num, sizeof num, "%d", k);
        numbers = !strcmp(d->class_names[k], num);
    }
    if (numbers) return QAT_OK;
    if (!(r->class_names = calloc((size_t)d->nclasses, sizeof *r->class_names)))
        return qat_fail(QAT_ERR_NOMEM, "out of memory");
    for (int k = 0; k < d->nclasses; k++) {
        /* names the file cannot hold (control characters) become their number */
        int ok = d->class_names[k][0] != 0;
        for (const char *c = d->class_names[k]; *c && ok; c++) ok = (unsigned char)*c >= 0x20 && (unsigned char)*c <= 0x7e;
        if (ok) snprintf(r->class_names[k], sizeof r->class_names[k], "%.63s", d->class_names[k]);
        else snprintf(r->class_names[k], sizeof r->class_names[k], "%d", k);
    }
    return QAT_OK;
}
