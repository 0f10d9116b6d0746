/* The training loop of `qat train` and `qat qat`: data → forward → loss → backward → optimizer
 * (optimizer_step), with per-epoch evaluation, metrics.jsonl and atomic checkpoints (last.ckpt,
 * best.ckpt); for QAT the freeze schedule (BN re-estimation, frozen BN and observers). What
 * happens is reported through qat_train_opts.on_event: this file prints nothing. */
#include "train.h"
#include "dist.h"
#include "dist_train.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

void qat_train_opts_default(qat_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->model = NULL; /* mbv2-tiny; NULL so that --resume can tell a --model given on purpose */
    o->out_dir = "runs/train";
    o->epochs = 15;
    o->batch = 128;
    o->threads = 0; /* all cores */
    o->lr = 0.1f;
    o->weight_decay = 5e-5f;
    o->momentum = 0.9f;
    o->label_smoothing = 0.05f;
    o->width = 0.0f; /* the spec's width line (1 when absent) */
    o->opt = QAT_OPT_SGD;
    o->sched = QAT_SCHED_ONECYCLE;
    o->warmup_epochs = 1.0f;
    o->seed = 1;
    o->crop_pad = -1; /* -1: the dataset kind's augmentation (qat_augment_default) */
    o->hflip = -1;
    o->eval_batch = QAT_EVAL_BATCH;
    o->freeze_bn_epochs = o->freeze_observer_epochs = QAT_FREEZE_AUTO;
    o->bn_reestimate_batches = QAT_BN_REESTIMATE_BATCHES;
}


static qat_status make_dir(const char *dir) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) && errno != EEXIST)
            return qat_fail(QAT_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) && errno != EEXIST)
        return qat_fail(QAT_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
    return QAT_OK;
}

static qat_status append_line(const char *dir, const char *line) {
    char path[1100];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "a");
    if (!f) return qat_fail(QAT_ERR_IO, "%s: cannot append: %s", path, strerror(errno));
    fprintf(f, "%s\n", line);
    if (fclose(f)) return qat_fail(QAT_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return QAT_OK;
}

/* A JSON number, or null for a non-finite one (printf's "nan" and "inf" are not JSON). */
static const char *json_num(char *buf, size_t size, const char *fmt, double v) {
    if (!isfinite(v)) return "null";
    snprintf(buf, size, fmt, v);
    return buf;
}

static qat_status append_metrics(const char *dir, const char *phase, int epoch, int64_t step, float lr,
                                 float train_loss, float train_acc, const qat_eval_result *ev,
                                 double epoch_s, double img_s) {
    char path[1100];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    char n[7][32];
    FILE *f = fopen(path, "a");
    if (!f) return qat_fail(QAT_ERR_IO, "%s: cannot append: %s", path, strerror(errno));
    fprintf(f,
            "{\"phase\": \"%s\", \"epoch\": %d, \"step\": %lld, \"lr\": %s, \"train_loss\": %s, "
            "\"train_acc\": %s, \"test_loss\": %s, \"test_acc\": %s, \"epoch_s\": %s, "
            "\"img_s\": %s}\n",
            phase, epoch, (long long)step, json_num(n[0], 32, "%.6g", lr),
            json_num(n[1], 32, "%.5f", train_loss), json_num(n[2], 32, "%.5f", train_acc),
            json_num(n[3], 32, "%.5f", ev->loss), json_num(n[4], 32, "%.5f", ev->accuracy),
            json_num(n[5], 32, "%.2f", epoch_s), json_num(n[6], 32, "%.1f", img_s));
    int bad = ferror(f);
    if (fclose(f) || bad) return qat_fail(QAT_ERR_IO, "%s: write failed", path);
    return QAT_OK;
}

/* steps.jsonl: the running train loss and accuracy of the epoch every few steps (the same keys
 * as a metrics.jsonl line, without the test figures), so that `qat plot` can draw a run of few
 * epochs (a --max-steps run, a short QAT) by step rather than as one or two points. A file of its
 * own: metrics.jsonl keeps one line per epoch for whatever reads it. */
static qat_status append_step(const char *dir, const char *phase, int epoch, int64_t step, float lr,
                              double loss, double acc) {
    char path[1100];
    snprintf(path, sizeof path, "%s/steps.jsonl", dir);
    FILE *f = fopen(path, "a");
    if (!f) return qat_fail(QAT_ERR_IO, "%s: cannot append: %s", path, strerror(errno));
    fprintf(f, "{\"phase\": \"%s\", \"epoch\": %d, \"step\": %lld, \"lr\": %.6g, \"train_loss\": %.5f, "
            "\"train_acc\": %.5f}\n", phase, epoch, (long long)step, lr, loss, acc);
    int bad = ferror(f);
    if (fclose(f) || bad) return qat_fail(QAT_ERR_IO, "%s: write failed", path);
    return QAT_OK;
}

/* --resume and --init rebuild the model from the spec stored in the checkpoint at path; a
 * --model (or --width) given as well must describe the same network, else the user meant another
 * run. */
static qat_status check_same_model(const qat_train_opts *o, const char *path, const qat_run *r) {
    if (!o->model && !(o->width > 0)) return QAT_OK;
    qat_spec *s = r->spec; /* --width alone: the checkpoint's own spec (an imported one has no file) */
    qat_status st = o->model ? qat_spec_load(o->model, &s) : QAT_OK;
    if (st) return st;
    qat_model *m = NULL;
    if (!(st = qat_model_create(s, o->width, r->model->in_h, r->model->in_w, r->model->in_c,
                                r->model->nclasses, &m))) {
        int same = m->nparams == r->model->nparams && m->nlayers == r->model->nlayers &&
                   !strcmp(qat_spec_text(s), qat_spec_text(r->spec));
        if (!same)
            st = qat_fail(QAT_ERR_MISMATCH, "%s: the checkpoint is a %s (%lld parameters); --model %s%s "
                          "describes another network (drop --model/--width to %s it)",
                          path, qat_spec_name(r->spec), (long long)r->model->nparams,
                          o->model ? o->model : qat_spec_name(r->spec), o->width > 0 ? " --width" : "",
                          path == o->resume ? "resume" : "start from");
    }
    qat_model_free(m);
    if (s != r->spec) qat_spec_free(s);
    return st;
}

/* A fresh run from options: spec, model, init, optimizer and schedule. */
static qat_status new_run(const qat_train_opts *o, const qat_dataset *train, int steps_per_epoch,
                          qat_run *r) {
    memset(r, 0, sizeof *r);
    qat_status st = qat_spec_load(o->model ? o->model : "mbv2-tiny", &r->spec);
    if (st) return st;
    st = qat_model_create(r->spec, o->width, train->h, train->w, train->c, train->nclasses, &r->model);
    if (st) return st;
    r->seed = o->seed;
    qat_rng init_rng;
    qat_rng_seed(&init_rng, o->seed);
    qat_model_init(r->model, &init_rng);
    qat_rng_seed(&r->rng, o->seed ^ 0x5eed5eedull);
    qat_dataset_stats(train, r->mean, r->std);
    for (int c = 0; c < train->c; c++)
        if (!(r->std[c] > 1e-6f)) r->std[c] = 1.0f; /* constant images: do not divide by zero */
    qat_model *m = r->model;
    if ((st = qat_optim_init(&r->opt, o->opt, m->nparams, m->segs, m->nsegs))) return st;
    r->has_opt = 1;
    r->opt.momentum = o->momentum;
    r->opt.weight_decay = o->weight_decay;
    int64_t total = (int64_t)o->epochs * steps_per_epoch;
    qat_sched_default(&r->sched, o->sched, o->lr, total);
    r->sched.warmup_steps = (int64_t)(o->warmup_epochs * steps_per_epoch);
    return QAT_OK;
}

/* The run diverged (why: "loss nan", "parameter 12 is not finite"): training stops without
 * writing a checkpoint and says which good one there is, truthfully: the last this run wrote,
 * the one it resumed from (left as it was), or none. */
static qat_status diverged(const char *why, int epoch, int64_t step, const char *good) {
    if (good[0])
        return qat_fail(QAT_ERR_NUMERIC, "training diverged at epoch %d, step %lld (%s): stopped "
                        "without writing a checkpoint; the last good one is %s (try a lower --lr)",
                        epoch + 1, (long long)step, why, good);
    return qat_fail(QAT_ERR_NUMERIC, "training diverged at epoch %d, step %lld (%s): stopped; "
                    "no checkpoint of this run was written (try a lower --lr)", epoch + 1,
                    (long long)step, why);
}

static qat_status check_shape(const char *path, const qat_model *m, const qat_dataset *d) {
    if (m->in_h != d->h || m->in_w != d->w || m->in_c != d->c || m->nclasses != d->nclasses)
        return qat_fail(QAT_ERR_MISMATCH,
                        "%s: checkpoint expects %dx%dx%d images and %d classes, %s has %dx%dx%d and %d",
                        path, m->in_h, m->in_w, m->in_c, m->nclasses, d->source, d->h, d->w, d->c,
                        d->nclasses);
    return QAT_OK;
}

/* `qat train --init CKPT`: FP32 fine-tuning from a checkpoint's weights. An imported model (qat
 * import) has no optimizer state, so --resume refuses it; here the network, its BN statistics, the
 * input normalisation and the class names come from the checkpoint, and the optimizer, schedule,
 * counters and seed start afresh from the options, as in a new run. A PTQ/QAT checkpoint gives its
 * FP32 weights (as qat qat --ckpt does). */
static qat_status new_init_run(const qat_train_opts *o, const qat_dataset *train, int steps_per_epoch,
                               qat_run *r) {
    qat_status st = qat_checkpoint_load(o->init, r);
    if (st) return st;
    if ((st = check_shape(o->init, r->model, train)) || (st = check_same_model(o, o->init, r))) return st;
    if (r->has_opt) qat_optim_free(&r->opt);
    if (r->has_qopt) qat_optim_free(&r->qopt);
    r->has_opt = r->has_qopt = 0;
    qat_qmodel_free(r->qmodel);
    r->qmodel = NULL;
    qat_model *m = r->model;
    qat_model_set_bn_update(m, 1); /* a frozen QAT checkpoint had switched the updates off */
    r->step = 0, r->epoch = 0, r->best_acc = 0;
    r->seed = o->seed;
    qat_rng_seed(&r->rng, o->seed ^ 0x5eed5eedull);
    if ((st = qat_optim_init(&r->opt, o->opt, m->nparams, m->segs, m->nsegs))) return st;
    r->has_opt = 1;
    r->opt.momentum = o->momentum;
    r->opt.weight_decay = o->weight_decay;
    qat_sched_default(&r->sched, o->sched, o->lr, (int64_t)o->epochs * steps_per_epoch);
    r->sched.warmup_steps = (int64_t)(o->warmup_epochs * steps_per_epoch);
    return QAT_OK;
}

/* ---- the QAT freeze schedule ----------------------------------------------------------------
 *
 * Freezing BN switches the folded convs from batch statistics to the running statistics, and
 * from then on nothing normalises the network. A channel whose conv output has a mean far from
 * zero (|mean| >> std, common after the stem on images with a flat background) is then
 * cancelled by a constant folded bias, and a relative weight change e moves its output by
 * e * |mean| / std standard deviations, which batch statistics used to absorb. So a learning
 * rate the normalised network took in its stride makes the frozen one diverge within a few
 * steps: on 600-image sets (16 steps per epoch) the loss went 0.50 -> 1.24 -> 3.18 -> 6.41
 * over the first frozen steps at lr 0.025; at 0.0096 (a tenth of the peak) one set of six
 * still jumped 0.23 -> 1.89; at 3% of the peak none did, with x86 and w4a8. By default BN
 * therefore freezes once the schedule has brought the rate down to 3% of its peak, however
 * many steps an epoch has, and the running statistics are re-estimated first (bn_reestimate). */
#define QAT_FREEZE_BN_LR_FRACTION 0.03f

/* The default BN freeze step of a QAT phase [start, end): the first step after the schedule's
 * peak whose rate is at most QAT_FREEZE_BN_LR_FRACTION of the peak; three quarters into the
 * phase for a schedule that never decays that far. */
static int64_t auto_freeze_bn_step(const qat_sched *s, int64_t start, int64_t end) {
    int64_t peak = 0;
    float top = -1;
    for (int64_t t = 0; t < end; t++) {
        float lr = qat_sched_lr(s, t);
        if (lr > top) top = lr, peak = t;
    }
    for (int64_t t = start > peak ? start : peak; t < end; t++)
        if (qat_sched_lr(s, t) <= QAT_FREEZE_BN_LR_FRACTION * top) return t;
    return start + 3 * (end - start) / 4;
}

static int64_t freeze_step(float epochs, int64_t auto_step, int64_t start, int spe) {
    if (epochs == QAT_FREEZE_NEVER) return -1;
    if (epochs == QAT_FREEZE_AUTO) return auto_step;
    return start + (int64_t)llround((double)epochs * spe);
}

/* Sets r->qmodel's freeze steps for a QAT phase that starts at step `start` of the run. */
static void plan_freeze(const qat_train_opts *o, qat_run *r, int64_t start, int spe) {
    qat_qmodel *q = r->qmodel;
    int64_t end = r->sched.total_steps;
    q->freeze_bn_step = freeze_step(o->freeze_bn_epochs, auto_freeze_bn_step(&r->sched, start, end), start, spe);
    int64_t from = q->freeze_bn_step >= 0 ? q->freeze_bn_step : start;
    q->freeze_observer_step = freeze_step(o->freeze_observer_epochs, from + (end - from) / 2, start, spe);
}

/* A one-line event for the callback (a message; the numbers stay zero). */
static void note(const qat_train_opts *o, qat_event_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void note(const qat_train_opts *o, qat_event_kind kind, const char *fmt, ...) {
    if (!o->on_event) return;
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    qat_event e = {.kind = kind, .text = text};
    o->on_event(&e, o->event_user);
}

/* Says when the schedule freezes what, and at which learning rate. */
static void freeze_plan_note(const qat_train_opts *o, const qat_run *r, int spe) {
    const qat_qmodel *q = r->qmodel;
    char bn[160] = "BN statistics never freeze", ob[120] = "observer ranges never freeze";
    if (q->bn_frozen)
        snprintf(bn, sizeof bn, "BN statistics frozen");
    else if (q->freeze_bn_step >= 0)
        snprintf(bn, sizeof bn, "BN statistics re-estimated and frozen at step %lld (epoch %.2f, lr %.3g)",
                 (long long)q->freeze_bn_step, (double)q->freeze_bn_step / spe + 1,
                 qat_sched_lr(&r->sched, q->freeze_bn_step));
    if (q->observers_frozen)
        snprintf(ob, sizeof ob, "observer ranges frozen");
    else if (q->freeze_observer_step >= 0)
        snprintf(ob, sizeof ob, "observer ranges at step %lld (epoch %.2f)",
                 (long long)q->freeze_observer_step, (double)q->freeze_observer_step / spe + 1);
    note(o, QAT_EVENT_NOTE, "qconfig %s at step %lld of %lld; %s; %s", q->cfg.name, (long long)r->step,
         (long long)r->sched.total_steps, bn, ob);
}

/* One training batch of r through the forward, and with smoothing >= 0 the loss and the
 * backward (the graph part of a step; qat_ctx_run makes out of memory an error). */
typedef struct {
    qat_run *r;
    const qat_dataset *d;
    const float *x;
    const int32_t *y;
    int B;
    float smoothing;          /* < 0: forward only */
    qat_tensor *logits, *loss;
} train_batch;

static qat_status train_step(qat_ctx *ctx, void *arg) {
    train_batch *t = arg;
    qat_tensor *x = qat_tensor_4d(ctx, t->B, t->d->h, t->d->w, t->d->c);
    memcpy(x->data, t->x, (size_t)x->numel * sizeof(float));
    t->logits = qat_run_forward(t->r, ctx, x);
    if (t->smoothing < 0) return QAT_OK;
    t->loss = qat_softmax_cross_entropy(ctx, t->logits, t->y, t->smoothing);
    double bad = !isfinite(t->loss->data[0]);
    if (qat_dist_syncing()) qat_dist_max_f64(&bad, 1); /* every rank skips the backward, or none */
    if (bad) return QAT_ERR_NUMERIC; /* no backward through NaN */
    qat_model_zero_grad(t->r->model);
    if (t->r->qmodel) qat_qmodel_zero_grad(t->r->qmodel);
    qat_backward(ctx, t->loss);
    return QAT_OK;
}

/* This rank's part of a global batch of `count` images loaded into xb/yb: the rank-th of
 * qat_dist_size() equal slices (all of it in one process). Every rank loads the same global batch
 * (same permutation and augmentation, a pure function of seed, epoch and position), so the
 * shards of an epoch are disjoint and an N-rank step sees the images of a one-process step. */
static train_batch rank_batch(qat_run *r, const qat_dataset *d, float *xb, int32_t *yb, int count,
                              float smoothing) {
    int per = count / qat_dist_size();
    size_t off = (size_t)qat_dist_rank() * per, img = (size_t)d->h * d->w * d->c;
    return (train_batch){r, d, xb + off * img, yb + off, per, smoothing, NULL, NULL};
}

/* One optimizer step on a batch: the graph (forward, loss, backward) through qat_ctx_run, then
 * the update of the parameters (and of the learned quantizers) at the schedule's rate. The one
 * place a training step happens: a data-parallel run (tb holds this rank's part of the global
 * batch) reduces BN statistics and observer ranges inside the graph and averages the gradients
 * across processes between the two (train/dist_train.c). The engine has no per-node hook in
 * the backward, so the allreduce follows it rather than overlapping it (docs/distributed.md). */
static qat_status optimizer_step(qat_run *run, qat_ctx *ctx, train_batch *tb, float *lr) {
    qat_ctx_reset(ctx);
    ctx->training = 1;
    ctx->grad_enabled = 1;
    ctx->rng = run->rng;
    qat_dist_sync_begin();
    qat_status st = qat_ctx_run(ctx, train_step, tb);
    qat_dist_sync_end();
    if (st) return st;
    run->rng = ctx->rng;
    qat_dist_average_grads(run);
    *lr = qat_sched_lr(&run->sched, run->step);
    qat_optim_step(&run->opt, run->model->params, run->model->grads, *lr);
    if (run->has_qopt) {
        qat_optim_step(&run->qopt, run->qmodel->lsq_params, run->qmodel->lsq_grads,
                       *lr * run->qmodel->lsq_lr_mult);
        qat_qmodel_lsq_clamp(run->qmodel);
    }
    run->step++;
    return QAT_OK;
}

/* BN re-estimation (AIMET's name; NNCF calls it BatchNorm adaptation): every BN layer's running
 * statistics become the plain average of n training batches' statistics under the current
 * weights, fake-quantized as training sees them (PyTorch's momentum=None). The moving average
 * they replace remembers ~10 steps of weights that moved: on a 600-image set it made the
 * frozen forward's loss 0.36 where the batch statistics gave 0.19; re-estimated, 0.19. The
 * activation observers and the run's RNG are left alone. */
static qat_status bn_reestimate(qat_run *r, qat_loader *l, const qat_dataset *d, int epoch, int b0,
                                int spe, int n, float *xb, int32_t *yb, qat_ctx *ctx) {
    qat_model *m = r->model;
    float *momentum = malloc((size_t)m->nlayers * sizeof(float));
    if (!momentum) return qat_fail(QAT_ERR_NOMEM, "train: out of memory");
    for (int i = 0; i < m->nlayers; i++) momentum[i] = m->layers[i].bn.momentum;
    r->qmodel->act_observers_paused = 1;
    qat_rng rng = r->rng;
    if (n > spe) n = spe;
    qat_status st = QAT_OK;
    for (int k = 0; k < n && !st; k++) {
        for (int i = 0; i < m->nlayers; i++) m->layers[i].bn.momentum = 1.0f / (float)(k + 1);
        train_batch tb = rank_batch(r, d, xb, yb, qat_loader_get(l, epoch, (b0 + k) % spe, xb, yb), -1.0f);
        qat_ctx_reset(ctx);
        ctx->training = 1;
        ctx->grad_enabled = 0;
        ctx->rng = rng;
        qat_dist_sync_begin();
        st = qat_ctx_run(ctx, train_step, &tb);
        qat_dist_sync_end();
    }
    for (int i = 0; i < m->nlayers; i++) m->layers[i].bn.momentum = momentum[i];
    r->qmodel->act_observers_paused = 0;
    free(momentum);
    return st;
}

/* Applies the freeze schedule before step r->step (batch b of `epoch`). */
static qat_status freeze_schedule(const qat_train_opts *o, qat_run *r, qat_loader *l,
                                  const qat_dataset *d, int epoch, int b, int spe, float *xb,
                                  int32_t *yb, qat_ctx *ctx) {
    qat_qmodel *q = r->qmodel;
    if (!q->bn_frozen && q->freeze_bn_step >= 0 && r->step >= q->freeze_bn_step) {
        int n = o->bn_reestimate_batches < spe ? o->bn_reestimate_batches : spe;
        if (n > 0) {
            qat_status st = bn_reestimate(r, l, d, epoch, b, spe, n, xb, yb, ctx);
            if (st) return st;
            if (o->local_bn) qat_dist_average_bn_buffers(r);
        }
        qat_qmodel_freeze_bn(q);
        if (n > 0)
            note(o, QAT_EVENT_NOTE, "step %lld: BN statistics re-estimated over %d batches and frozen (lr %.3g)",
                 (long long)r->step, n, qat_sched_lr(&r->sched, r->step));
        else
            note(o, QAT_EVENT_NOTE, "step %lld: BN statistics frozen as they are (lr %.3g)",
                 (long long)r->step, qat_sched_lr(&r->sched, r->step));
    }
    if (!q->observers_frozen && q->freeze_observer_step >= 0 && r->step >= q->freeze_observer_step) {
        qat_status st = qat_qmodel_freeze_observers(q);
        if (st) return st;
        note(o, QAT_EVENT_NOTE, "step %lld: observer ranges frozen", (long long)r->step);
    }
    return QAT_OK;
}

/* QAT starts from an FP32 checkpoint: its params, BN buffers, normalisation and seed are kept;
 * the optimizer, schedule and counters start afresh with the QAT options. */
static qat_status new_qat_run(const qat_qat_opts *qo, const qat_dataset *train,
                              int steps_per_epoch, qat_run *r) {
    const qat_train_opts *o = &qo->train;
    if (!qo->ckpt) return qat_fail(QAT_ERR_ARG, "qat: an FP32 checkpoint (--ckpt) is required");
    qat_qconfig cfg;
    qat_status st = qat_qconfig_get(qo->qconfig ? qo->qconfig : "x86", &cfg);
    if (st) return st;
    if ((st = qat_checkpoint_load(qo->ckpt, r))) return st;
    qat_model *m = r->model;
    if ((st = check_shape(qo->ckpt, m, train))) return st;
    if (r->has_opt) qat_optim_free(&r->opt);
    r->has_opt = 0;
    if (r->has_qopt) qat_optim_free(&r->qopt);
    r->has_qopt = 0;
    qat_qmodel_free(r->qmodel); /* a PTQ checkpoint: start from its FP32 weights */
    r->qmodel = NULL;
    if ((st = qat_qmodel_create(m, &cfg, QAT_QMODEL_QAT, cfg.act_obs_qat, &r->qmodel)) ||
        (st = qat_apply_float_choices(r->qmodel, qo->layer_qconfig, qo->float_layers, "qat: --float-layers")))
        return st;
    r->step = 0, r->epoch = 0, r->best_acc = 0;
    qat_model_set_bn_update(m, 1);
    if ((st = qat_optim_init(&r->opt, o->opt, m->nparams, m->segs, m->nsegs))) return st;
    r->has_opt = 1;
    r->opt.momentum = o->momentum;
    r->opt.weight_decay = o->weight_decay;
    if (cfg.lsq) {
        /* LSQ: seed the learned scales from a min-max calibration, then learn them with their
         * own optimizer (same kind and schedule, no weight decay). */
        qat_qmodel *q = r->qmodel;
        if ((st = qat_calibrate(r, train, o->batch, 16, NULL)) || (st = qat_qmodel_lsq_start(q))) return st;
        if ((st = qat_optim_init(&r->qopt, o->opt, q->nlsq, q->lsq_segs, q->nlsq_segs))) return st;
        r->has_qopt = 1;
        q->lsq_lr_mult = qo->lsq_lr_mult;
        r->qopt.momentum = o->momentum;
        r->qopt.weight_decay = 0;
    }
    qat_sched_default(&r->sched, o->sched, o->lr, (int64_t)o->epochs * steps_per_epoch);
    r->sched.warmup_steps = (int64_t)(o->warmup_epochs * steps_per_epoch);
    plan_freeze(o, r, 0, steps_per_epoch);
    return QAT_OK;
}

/* `qat train --qat-from-epoch K`: the FP32 run goes on with fake-quant from epoch K (1-based),
 * same optimizer and schedule; the freeze schedule counts from the switch (plan_freeze). */
static qat_status switch_to_qat(const qat_train_opts *o, qat_run *r, int epoch, int spe) {
    qat_qconfig cfg;
    qat_status st = qat_qconfig_get(o->qconfig ? o->qconfig : "x86", &cfg);
    if (st) return st;
    if (cfg.lsq)
        return qat_fail(QAT_ERR_ARG, "train: --qat-from-epoch does not support the lsq qconfig "
                                     "(its scales need their own optimizer: use qat qat)");
    if ((st = qat_qmodel_create(r->model, &cfg, QAT_QMODEL_QAT, cfg.act_obs_qat, &r->qmodel)))
        return st;
    plan_freeze(o, r, (int64_t)epoch * spe, spe);
    return QAT_OK;
}

/* The combinations of options a run cannot honour, found before any data is read or any step
 * trained (a --qat-from-epoch run with the lsq qconfig used to fail after its FP32 epochs). The
 * range of each option by itself is the CLI's; an option found wrong only once the data is open
 * (--crop-pad larger than the images) is checked there. */
static qat_status check_opts(const qat_train_opts *o, const qat_qat_opts *qo) {
    const char *cmd = qo ? "qat" : "train";
    if (!o->data) return qat_fail(QAT_ERR_ARG, "%s: --data is required", cmd);
    if (o->epochs < 1 || o->batch < 1 || o->batch > 65536 || !(o->lr > 0) || o->max_steps < 0)
        return qat_fail(QAT_ERR_ARG, "%s: --epochs, --batch and --lr must be positive", cmd);
    qat_qconfig cfg;
    qat_status st;
    if (o->init && o->resume)
        return qat_fail(QAT_ERR_ARG, "%s: --init starts a new run from a checkpoint, --resume continues "
                        "one: give one of them", cmd);
    if (o->init && qo)
        return qat_fail(QAT_ERR_ARG, "qat: --init is train's; qat starts from --ckpt");
    if (qo) {
        if (!qo->ckpt && !o->resume)
            return qat_fail(QAT_ERR_ARG, "qat: an FP32 checkpoint (--ckpt) is required");
        if ((st = qat_qconfig_get(qo->qconfig ? qo->qconfig : "x86", &cfg))) return st;
    } else if (o->qat_from_epoch > 0) {
        if ((st = qat_qconfig_get(o->qconfig ? o->qconfig : "x86", &cfg))) return st;
        if (cfg.lsq)
            return qat_fail(QAT_ERR_ARG, "train: --qat-from-epoch does not support the lsq qconfig "
                                         "(its scales need their own optimizer: use qat qat)");
        if (!o->resume && o->qat_from_epoch > o->epochs)
            return qat_fail(QAT_ERR_ARG, "train: --qat-from-epoch %d is after the last epoch "
                                         "(--epochs %d): the run would never switch to QAT",
                            o->qat_from_epoch, o->epochs);
    } else if (o->qconfig || o->freeze_bn_epochs != QAT_FREEZE_AUTO ||
               o->freeze_observer_epochs != QAT_FREEZE_AUTO ||
               o->bn_reestimate_batches != QAT_BN_REESTIMATE_BATCHES) {
        return qat_fail(QAT_ERR_ARG, "train: --qconfig, --freeze-bn-epoch, --freeze-observer-epoch "
                                     "and --bn-reestimate set up the QAT phase: give --qat-from-epoch "
                                     "K too (or use qat qat)");
    }
    if (o->init) { /* the checkpoint and a conflicting --model/--width: before the data is read */
        qat_run r;
        if (!(st = qat_checkpoint_load(o->init, &r))) {
            st = check_same_model(o, o->init, &r);
            qat_run_free(&r);
        }
        if (st) return st;
    } else if (!o->resume) { /* a bad spec file: before the data is read */
        qat_spec *spec;
        if ((st = qat_spec_load(o->model ? o->model : "mbv2-tiny", &spec))) return st;
        qat_spec_free(spec);
    }
    return QAT_OK;
}

/* The loop shared by `qat train` (qo == NULL) and `qat qat`. */
static qat_status train_loop(const qat_train_opts *given, const qat_qat_opts *qo) {
    const char *phase = qo ? "qat" : "fp32";
    /* Data-parallel (dist/dist.h): rank 0 alone reports and writes files; o->batch is the
     * global batch, every rank trains on its o->batch / nranks images of it. */
    const int nranks = qat_dist_size(), rank0 = qat_dist_rank() == 0;
    qat_train_opts own = *given;
    if (!rank0) own.on_event = NULL;
    const qat_train_opts *o = &own;
    qat_status st = check_opts(o, qo);
    if (st) return st;
    if (o->batch % nranks)
        return qat_fail(QAT_ERR_ARG, "%s: --batch %d is the global batch and must split evenly "
                        "over the %d ranks", qo ? "qat" : "train", o->batch, nranks);
    qat_dist_set_local_bn(o->local_bn);
    if (o->threads > 0) qat_set_threads(o->threads);
    qat_data_opts dopt;
    memset(&dopt, 0, sizeof dopt);
    dopt.seed = o->seed;
    dopt.val_split = o->val_split;
    qat_dataset *train = NULL, *test = NULL;
    if ((st = qat_dataset_open(o->data, &dopt, &train, &test))) return st;
    if ((st = qat_dist_check_options(o, qo, train, test))) {
        qat_dataset_free(train);
        qat_dataset_free(test);
        return st;
    }
    qat_run run;
    memset(&run, 0, sizeof run);
    qat_loader *loader = NULL;
    float *xb = NULL;
    int32_t *yb = NULL;
    qat_ctx ctx;
    qat_ctx_init(&ctx, 32u << 20);
    int lock_fd = -1; /* the run directory's lock (train/run_dir.c), held until the run ends */
    char last_path[1100], best_path[1100];
    snprintf(last_path, sizeof last_path, "%s/last.ckpt", o->out_dir);
    snprintf(best_path, sizeof best_path, "%s/best.ckpt", o->out_dir);

    int steps_per_epoch = train->n / o->batch; /* drop_last: every step sees a full batch */
    if (steps_per_epoch < 1) {
        st = qat_fail(QAT_ERR_ARG, "%s: %d training images is fewer than one batch of %d",
                      train->source, train->n, o->batch);
        goto done;
    }
    if (o->resume) {
        if ((st = qat_checkpoint_load(o->resume, &run))) goto done;
        if ((st = check_shape(o->resume, run.model, train))) goto done;
        if ((st = check_same_model(o, o->resume, &run))) goto done;
        if (!qo != !run.qmodel && !(o->qat_from_epoch > 0 && run.qmodel)) {
            st = qat_fail(QAT_ERR_ARG, qo ? "%s: not a QAT checkpoint (resume it with qat train)"
                                          : "%s: a PTQ/QAT checkpoint (resume it with qat qat)",
                          o->resume);
            goto done;
        }
        if (!run.has_opt) {
            st = qat_fail(QAT_ERR_ARG, "%s: checkpoint has no optimizer state to resume", o->resume);
            goto done;
        }
    } else if ((st = qo        ? new_qat_run(qo, train, steps_per_epoch, &run)
                     : o->init ? new_init_run(o, train, steps_per_epoch, &run)
                               : new_run(o, train, steps_per_epoch, &run))) {
        goto done;
    }
    if ((st = qat_pipeline_init(&run.pipeline, o, run.qmodel ? "qat" : phase, train, test, &run,
                                steps_per_epoch)) ||
        (st = qat_run_take_class_names(&run, train)))
        goto done;
    run.has_pipeline = 1;
    if (rank0 && (st = make_dir(o->out_dir))) goto done;
    if (rank0 && (st = qat_run_dir_lock(o->out_dir, &lock_fd))) goto done;
    if (rank0) { /* what a killed run left: temp checkpoints, epoch lines past the checkpoint */
        int removed = 0, dropped = 0;
        if ((st = qat_run_dir_clean(o->out_dir, &removed))) goto done;
        if (o->resume && (st = qat_metrics_truncate(o->out_dir, run.step, &dropped))) goto done;
        if (removed || dropped)
            note(o, QAT_EVENT_NOTE, "%s: removed %d unfinished checkpoint file%s and %d metrics line%s "
                 "past step %lld left by an earlier run", o->out_dir, removed, removed == 1 ? "" : "s",
                 dropped, dropped == 1 ? "" : "s", (long long)run.step);
    }
    if (rank0) {
        char line[4096]; /* the longest: --data of 255 bytes, each escaped as \u00XX */
        qat_pipeline_json(&run.pipeline, line, sizeof line);
        if ((st = append_line(o->out_dir, line))) goto done;
        if (o->on_event) {
            char warning[1024];
            qat_pipeline_describe(&run.pipeline, line, sizeof line);
            qat_pipeline_warning(&run.pipeline, warning, sizeof warning);
            qat_event e = {.kind = QAT_EVENT_START, .text = line, .warning = warning[0] ? warning : NULL};
            o->on_event(&e, o->event_user);
        }
    }
    if (nranks > 1)
        note(o, QAT_EVENT_NOTE, "data-parallel on %d ranks (%s): %d images per rank per step, "
             "global batch %d; BN statistics %s; gradients averaged with MPI_Allreduce in buckets "
             "of up to %d MiB", nranks, qat_dist_backend(), o->batch / nranks, o->batch,
             o->local_bn ? "per rank (--local-bn), running statistics averaged each epoch"
                         : "of the global batch (SyncBN)", QAT_DIST_BUCKET_FLOATS * 4 >> 20);
    if (run.qmodel) { /* a version-1 quant state counted its schedule in epochs */
        qat_qmodel *q = run.qmodel;
        if (q->legacy_freeze_bn_epoch >= 0) q->freeze_bn_step = (int64_t)q->legacy_freeze_bn_epoch * steps_per_epoch;
        if (q->legacy_freeze_observer_epoch >= 0)
            q->freeze_observer_step = (int64_t)q->legacy_freeze_observer_epoch * steps_per_epoch;
        q->legacy_freeze_bn_epoch = q->legacy_freeze_observer_epoch = -1;
        if (qo) freeze_plan_note(o, &run, steps_per_epoch);
    }

    qat_loader_opts lo;
    memset(&lo, 0, sizeof lo);
    lo.batch = o->batch;
    lo.shuffle = 1;
    lo.crop_pad = run.pipeline.crop_pad;
    lo.hflip = run.pipeline.hflip;
    lo.seed = run.seed;
    lo.drop_last = 1;
    lo.prefetch = 0; /* batches come from decoded memory; see qat_loader_opts.prefetch */
    for (int c = 0; c < 4; c++) lo.mean[c] = run.mean[c], lo.std[c] = run.std[c];
    if ((st = qat_loader_create(train, &lo, &loader))) goto done;
    size_t img = (size_t)train->h * train->w * train->c;
    xb = malloc((size_t)o->batch * img * sizeof(float));
    yb = malloc((size_t)o->batch * sizeof(int32_t));
    if (!xb || !yb) {
        st = qat_fail(QAT_ERR_NOMEM, "train: out of memory for batch buffers");
        goto done;
    }

    int epochs = run.sched.total_steps > 0 ? (int)((run.sched.total_steps + steps_per_epoch - 1) / steps_per_epoch)
                                           : o->epochs;
    qat_model *m = run.model;
    const char *prog_phase = qo ? "qat" : "train"; /* the progress line's word */
    int64_t steps_this_run = 0;
    qat_eval_result ev = {0};
    double train_s = 0;
    long train_images = 0;
    int stopped_early = 0, last_epoch = -1; /* the last epoch evaluated (0-based) */
    char good[1300] = ""; /* the last good checkpoint, for the divergence message */
    if (o->resume)
        snprintf(good, sizeof good, "%s (step %lld, the checkpoint this run resumed from, left as it was)",
                 o->resume, (long long)run.step);
    for (int epoch = (int)(run.step / steps_per_epoch); epoch < epochs && !stopped_early; epoch++) {
        if (!qo && o->qat_from_epoch > 0 && epoch + 1 >= o->qat_from_epoch && !run.qmodel) {
            if ((st = switch_to_qat(o, &run, epoch, steps_per_epoch))) goto done;
            phase = "qat";
            prog_phase = "qat";
            freeze_plan_note(o, &run, steps_per_epoch);
        }
        if (run.qmodel) phase = prog_phase = "qat";
        double e0 = qat_now(), loss_sum = 0;
        long correct = 0, seen = 0;
        float lr = 0;
        for (int b = (int)(run.step % steps_per_epoch); b < steps_per_epoch; b++) {
            if (o->max_steps && steps_this_run >= o->max_steps) {
                stopped_early = 1;
                break;
            }
            if (run.qmodel && (st = freeze_schedule(o, &run, loader, train, epoch, b, steps_per_epoch,
                                                    xb, yb, &ctx)))
                goto done;
            train_batch tb = rank_batch(&run, train, xb, yb, qat_loader_get(loader, epoch, b, xb, yb),
                                        o->label_smoothing);
            st = optimizer_step(&run, &ctx, &tb, &lr);
            if (st == QAT_ERR_NUMERIC && tb.loss && !isfinite(tb.loss->data[0])) {
                char why[64];
                snprintf(why, sizeof why, "loss %g", (double)tb.loss->data[0]);
                st = diverged(why, epoch, run.step, good);
                goto done;
            }
            if (st) goto done;
            int B = tb.B;
            qat_tensor *logits = tb.logits, *loss = tb.loss;
            steps_this_run++;
            int K = logits->shape[1];
            for (int i = 0; i < B; i++) correct += qat_argmax(logits->data + (size_t)i * K, K) == tb.y[i];
            seen += B;
            loss_sum += (double)loss->data[0] * B;
            /* about 16 points an epoch (every step of a short one), and the epoch's last */
            const int every = steps_per_epoch >= 32 ? steps_per_epoch / 16 : 1;
            if (rank0 && ((b + 1) % every == 0 || b + 1 == steps_per_epoch) &&
                (st = append_step(o->out_dir, phase, epoch + 1, run.step, lr, loss_sum / seen,
                                  (double)correct / seen)))
                goto done;
            if (o->on_event) {
                qat_event e = {.kind = QAT_EVENT_STEP, .phase = prog_phase, .epoch = epoch,
                               .epochs = epochs, .batch = b, .batches = steps_per_epoch,
                               .images = (int)seen * nranks, .loss = (float)(loss_sum / seen),
                               .acc = (float)correct / seen, .seconds = qat_now() - e0};
                o->on_event(&e, o->event_user);
            }
        }
        double epoch_s = qat_now() - e0, comm[4];
        comm[0] = qat_dist_take_comm_seconds(&comm[1]);
        /* over ranks: the most (waiting for the slower rank included) and, as -max(-x), the
         * least (the slowest rank hardly waits: about the communication itself) */
        comm[2] = -comm[0], comm[3] = -comm[1];
        qat_dist_max_f64(comm, 4);
        qat_dist_epoch_totals(&loss_sum, &correct, &seen);
        train_s += epoch_s;
        train_images += seen;
        if (seen == 0) break;
        int epoch_done = run.step % steps_per_epoch == 0;
        if (epoch_done) run.epoch = epoch + 1;
        if (o->local_bn) qat_dist_average_bn_buffers(&run);
        /* a finite loss does not make finite parameters: the last update may have overflowed */
        if (qat_run_check_state(&run, "the run")) {
            char why[512];
            snprintf(why, sizeof why, "%s", qat_last_error() + strlen("the run: "));
            st = diverged(why, epoch, run.step, good);
            goto done;
        }
        uint64_t state_hash;
        if ((st = qat_dist_check_state(&run, &state_hash))) goto done;
        if ((st = qat_run_evaluate(&run, test, o->eval_batch, &ev, NULL))) goto done;
        last_epoch = epoch;
        if (o->on_event) {
            char text[384];
            snprintf(text, sizeof text, "epoch %d: train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%% | %.1f s, %.0f img/s",
                     epoch + 1, loss_sum / seen, 100.0 * correct / seen, ev.loss, 100.0 * ev.accuracy,
                     epoch_s, seen / epoch_s);
            if (nranks > 1)
                snprintf(text + strlen(text), sizeof text - strlen(text), " (%d ranks; in "
                         "collectives %.1f%% of the time on the rank waiting most, %.1f%% least; "
                         "gradient allreduce %.1f%%, %.1f%%)", nranks, 100.0 * comm[0] / epoch_s,
                         -100.0 * comm[2] / epoch_s, 100.0 * comm[1] / epoch_s,
                         -100.0 * comm[3] / epoch_s);
            qat_event e = {.kind = QAT_EVENT_EPOCH, .text = text, .phase = phase, .epoch = epoch,
                           .epochs = epochs, .loss = (float)(loss_sum / seen),
                           .acc = (float)correct / seen, .test_loss = ev.loss,
                           .test_acc = ev.accuracy, .seconds = epoch_s, .img_per_s = seen / epoch_s};
            o->on_event(&e, o->event_user);
        }
        int best = ev.accuracy > run.best_acc;
        if (best) run.best_acc = ev.accuracy;
        if (rank0 && (st = qat_checkpoint_save(last_path, &run))) goto done;
        if (rank0 && best && (st = qat_checkpoint_save(best_path, &run))) goto done;
        /* the epoch's line only once its checkpoint is written: a resume truncates the metrics
         * to the checkpoint's step, and a line without its checkpoint would be a lie */
        if (rank0 && (st = append_metrics(o->out_dir, phase, epoch + 1, run.step, lr, (float)(loss_sum / seen),
                                 (float)correct / seen, &ev, epoch_s, seen / epoch_s)))
            goto done;
        snprintf(good, sizeof good, "%s (epoch %d, step %lld)", last_path, epoch + 1, (long long)run.step);
        if (o->stop_at_accuracy > 0 && ev.accuracy >= o->stop_at_accuracy && epoch_done) {
            note(o, QAT_EVENT_STOP, "test accuracy %.2f%% reached the target %.2f%%: stopping",
                 100.0 * ev.accuracy, 100.0 * o->stop_at_accuracy);
            stopped_early = 1;
        }
    }
    if (nranks > 1) {
        uint64_t state_hash;
        if ((st = qat_dist_check_state(&run, &state_hash))) goto done;
        note(o, QAT_EVENT_NOTE, "%d ranks: parameters, BN statistics, optimizer and quantizer state "
             "bitwise identical after step %lld (hash %016llx)", nranks, (long long)run.step,
             (unsigned long long)state_hash);
    }
    if (o->on_event) {
        qat_event e = {.kind = QAT_EVENT_DONE, .test_loss = ev.loss, .test_acc = ev.accuracy,
                       .best_acc = run.best_acc, .epoch = last_epoch, .epochs_done = run.epoch, .steps = run.step,
                       .seconds = train_s, .img_per_s = train_s > 0 ? train_images / train_s : 0.0,
                       .params = m->nparams, .checkpoint = last_path, .out_dir = o->out_dir};
        o->on_event(&e, o->event_user);
    }
done:
    qat_run_dir_unlock(lock_fd);
    free(xb);
    free(yb);
    qat_loader_free(loader);
    qat_ctx_free(&ctx);
    qat_run_free(&run);
    qat_dataset_free(train);
    qat_dataset_free(test);
    return st;
}

qat_status qat_train_run(const qat_train_opts *o) { return train_loop(o, NULL); }

void qat_qat_opts_default(qat_qat_opts *o) {
    memset(o, 0, sizeof *o);
    qat_train_opts_default(&o->train);
    o->train.out_dir = "runs/qat";
    o->train.epochs = 3;
    o->train.lr = 0.01f; /* a tenth of the FP32 peak: QAT fine-tunes a trained model */
    o->train.sched = QAT_SCHED_COSINE;
    o->train.warmup_epochs = 0;
    o->qconfig = "x86";
    /* LSQ's gradient scale alone let SGD at lr 0.01 push the small per-channel weight scales
     * (~2e-3) through zero on Fashion-MNIST (accuracy 88.7% after 60 steps vs 91.8% at 0.01x). */
    o->lsq_lr_mult = 0.01f;
}

qat_status qat_qat_run(const qat_qat_opts *o) { return train_loop(&o->train, o); }
