/* Evaluation: the loop every network kind is evaluated with (FP32 model, PTQ/QAT run as its
 * INT8 simulation, the INT8 runtime), checkpoints on a dataset's test split, and the FP32
 * inference speed that qat bench compares INT8 with. Each batch's graph runs through
 * qat_ctx_run: out of memory is QAT_ERR_NOMEM. */
#include "train.h"
#include "qat_rt.h"
#include "dist.h"
#include <stdlib.h>
#include <string.h>

static qat_tensor *model_fwd(void *net, qat_ctx *ctx, qat_tensor *x) {
    return qat_model_forward(net, ctx, x);
}

/* A PTQ/QAT run is evaluated as its INT8 model (export/export.h, qat_quantized_forward). */
qat_tensor *qat_run_forward(qat_run *r, qat_ctx *ctx, qat_tensor *x) {
    return r->qmodel ? qat_quantized_forward(r->qmodel, ctx, x) : qat_model_forward(r->model, ctx, x);
}

static qat_tensor *run_fwd(void *net, qat_ctx *ctx, qat_tensor *x) {
    return qat_run_forward(net, ctx, x);
}

/* One evaluation batch: its logits and loss (qat_ctx_run: out of memory is an error). */
typedef struct {
    qat_forward_fn fwd;
    void *net;
    const qat_dataset *d;
    const float *x;
    const int32_t *y;
    int B;
    qat_tensor *logits, *loss;
} eval_job;

static qat_status eval_step(qat_ctx *ctx, void *arg) {
    eval_job *e = arg;
    qat_tensor *xt = qat_tensor_4d(ctx, e->B, e->d->h, e->d->w, e->d->c);
    memcpy(xt->data, e->x, (size_t)xt->numel * sizeof(float));
    if (!(e->logits = e->fwd(e->net, ctx, xt))) return QAT_ERR_SHAPE; /* the forward said why */
    e->loss = qat_softmax_cross_entropy(ctx, e->logits, e->y, 0.0f);
    return QAT_OK;
}

void qat_progress_report(const qat_progress *p, int done, int total, int64_t images, double t0) {
    if (!p || !p->fn) return;
    qat_event e = {.kind = QAT_EVENT_PROGRESS, .text = p->what, .batch = done, .batches = total,
                   .images = (int)images, .seconds = qat_now() - t0};
    p->fn(&e, p->user);
}

/* qat_evaluate_net on every rank's share of the batches (b = rank, rank + size, ...), the counts
 * summed over ranks at the end, when `shard`; on all of them otherwise. */
static qat_status evaluate_net(qat_forward_fn fwd, void *net, const qat_dataset *d, const float *mean,
                               const float *std, int eval_batch, qat_eval_result *res, float *logits_out,
                               const qat_progress *p, int shard) {
    double t0 = qat_now();
    qat_loader_opts lo;
    memset(&lo, 0, sizeof lo);
    lo.batch = eval_batch > 0 ? eval_batch : QAT_EVAL_BATCH;
    lo.prefetch = 0; /* batches come from decoded memory; see qat_loader_opts.prefetch */
    for (int c = 0; c < 4; c++) lo.mean[c] = mean[c], lo.std[c] = std[c];
    qat_loader *l;
    qat_status st = qat_loader_create(d, &lo, &l);
    if (st) return st;
    float *x = malloc((size_t)lo.batch * d->h * d->w * d->c * sizeof(float));
    int32_t *y = malloc((size_t)lo.batch * sizeof(int32_t));
    if (!x || !y) {
        free(x), free(y), qat_loader_free(l);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory for evaluation batches", d->source);
    }
    qat_ctx ctx;
    qat_ctx_init(&ctx, 64u << 20);
    ctx.training = 0;
    ctx.grad_enabled = 0;
    long correct = 0, n = 0;
    double loss_sum = 0;
    int nb = qat_loader_num_batches(l);
    const int first = shard ? qat_dist_rank() : 0, stride = shard ? qat_dist_size() : 1;
    for (int b = first; b < nb && !st; b += stride) {
        eval_job e = {fwd, net, d, x, y, qat_loader_get(l, 0, b, x, y), NULL, NULL};
        qat_ctx_reset(&ctx);
        if ((st = qat_ctx_run(&ctx, eval_step, &e))) break;
        loss_sum += (double)e.loss->data[0] * e.B;
        int K = e.logits->shape[1];
        for (int i = 0; i < e.B; i++) correct += qat_argmax(e.logits->data + (size_t)i * K, K) == y[i];
        if (logits_out) memcpy(logits_out + (size_t)n * K, e.logits->data, (size_t)e.B * K * sizeof(float));
        n += e.B;
        qat_progress_report(p, b + 1, nb, n, t0);
    }
    qat_ctx_free(&ctx);
    free(x), free(y);
    qat_loader_free(l);
    if (shard) {
        /* a rank that failed still joins the sum (every rank calls it), and the failure counts */
        double v[4] = {(double)correct, (double)n, loss_sum, st ? 1.0 : 0.0};
        qat_dist_sum_f64(v, 4);
        correct = (long)v[0], n = (long)v[1], loss_sum = v[2];
        if (v[3] > 0 && !st) st = qat_fail(QAT_ERR_IO, "%s: evaluation failed on another rank", d->source);
    }
    res->n = (int)n;
    res->accuracy = n ? (float)correct / (float)n : 0.0f;
    res->loss = n ? (float)(loss_sum / n) : 0.0f;
    res->seconds = qat_now() - t0;
    return st;
}

qat_status qat_evaluate_net(qat_forward_fn fwd, void *net, const qat_dataset *d, const float *mean,
                            const float *std, int eval_batch, qat_eval_result *res, float *logits_out,
                            const qat_progress *p) {
    return evaluate_net(fwd, net, d, mean, std, eval_batch, res, logits_out, p, 0);
}

qat_status qat_evaluate(qat_model *m, const qat_dataset *d, const float *mean, const float *std,
                        int eval_batch, qat_eval_result *res) {
    return qat_evaluate_net(model_fwd, m, d, mean, std, eval_batch, res, NULL, NULL);
}

qat_status qat_run_evaluate(qat_run *r, const qat_dataset *d, int eval_batch, qat_eval_result *res,
                            const qat_progress *p) {
    /* data-parallel: every rank evaluates its share (all ranks call this, from training and PTQ) */
    return evaluate_net(run_fwd, r, d, r->mean, r->std, eval_batch, res, NULL, p, qat_dist_active());
}

qat_status qat_checkpoint_evaluate_split(const char *ckpt, const char *data, float val_split,
                                         int eval_batch, qat_eval_result *res) {
    return qat_checkpoint_evaluate_progress(ckpt, data, val_split, eval_batch, NULL, NULL, res);
}

void qat_class_report_free(qat_class_report *r) {
    if (!r) return;
    free(r->confusion);
    free(r->names);
    memset(r, 0, sizeof *r);
}

/* An empty report for d's classes, named by `names` (the model's) or else by d's. */
static qat_status class_report_init(qat_class_report *cr, const qat_dataset *d,
                                    char (*names)[QAT_Q8_CLASS_NAME_MAX]) {
    _Static_assert(QAT_Q8_CLASS_NAME_MAX == 64, "qat_class_report.names holds 64-byte names");
    const int K = d->nclasses;
    cr->nclasses = K;
    cr->confusion = calloc((size_t)K * K, sizeof *cr->confusion);
    cr->names = calloc((size_t)K, sizeof *cr->names);
    if (!cr->confusion || !cr->names) return qat_fail(QAT_ERR_NOMEM, "eval: out of memory");
    cr->names_from_model = names != NULL;
    for (int k = 0; k < K; k++)
        snprintf(cr->names[k], sizeof cr->names[k], "%s", names ? names[k] : d->class_names ? d->class_names[k] : "");
    return QAT_OK;
}

qat_status qat_checkpoint_evaluate_progress(const char *ckpt, const char *data, float val_split,
                                            int eval_batch, qat_event_fn on_event, void *user,
                                            qat_eval_result *res) {
    return qat_checkpoint_evaluate_classes(ckpt, data, val_split, eval_batch, on_event, user, res, NULL);
}

qat_status qat_checkpoint_evaluate_classes(const char *ckpt, const char *data, float val_split,
                                           int eval_batch, qat_event_fn on_event, void *user,
                                           qat_eval_result *res, qat_class_report *cr) {
    if (cr) memset(cr, 0, sizeof *cr);
    qat_run run;
    qat_status st = qat_checkpoint_load(ckpt, &run);
    if (st) return st;
    qat_data_opts dopt;
    memset(&dopt, 0, sizeof dopt);
    dopt.val_split = val_split;
    dopt.seed = run.seed; /* the same ImageFolder split as training */
    qat_dataset *train = NULL, *test = NULL;
    if (!(st = qat_dataset_open(data, &dopt, &train, &test))) {
        qat_model *m = run.model;
        if (m->in_h != test->h || m->in_w != test->w || m->in_c != test->c ||
            m->nclasses != test->nclasses)
            st = qat_fail(QAT_ERR_MISMATCH,
                          "%s: checkpoint expects %dx%dx%d images and %d classes, %s has %dx%dx%d and %d",
                          ckpt, m->in_h, m->in_w, m->in_c, m->nclasses, test->source, test->h,
                          test->w, test->c, test->nclasses);
        else {
            qat_progress p = {on_event, user, run.qmodel ? "evaluating (INT8 simulation)" : "evaluating"};
            const int K = m->nclasses;
            float *logits = cr ? malloc((size_t)test->n * K * sizeof(float)) : NULL;
            if (cr && !logits) st = qat_fail(QAT_ERR_NOMEM, "eval: out of memory");
            if (!st && cr) st = class_report_init(cr, test, run.class_names);
            /* the loader without shuffling gives the images in dataset order */
            if (!st) st = qat_evaluate_net(run_fwd, &run, test, run.mean, run.std, eval_batch, res, logits, &p);
            for (int i = 0; !st && cr && i < res->n; i++)
                cr->confusion[(size_t)test->labels[i] * K + qat_argmax(logits + (size_t)i * K, K)]++;
            free(logits);
        }
    }
    if (st && cr) qat_class_report_free(cr);
    qat_dataset_free(train);
    qat_dataset_free(test);
    qat_run_free(&run);
    return st;
}

qat_status qat_checkpoint_evaluate(const char *ckpt, const char *data, qat_eval_result *res) {
    return qat_checkpoint_evaluate_split(ckpt, data, 0.0f, QAT_EVAL_BATCH, res);
}


/* ---- the INT8 runtime on a test split (`qat eval --int8`) ------------------------------------- */

qat_status qat_evaluate_int8(qat_rt *rt, const char *name, const char *data, float val_split,
                             int batch, qat_eval_result *res) {
    return qat_evaluate_int8_progress(rt, name, data, val_split, batch, NULL, NULL, res);
}

qat_status qat_evaluate_int8_progress(qat_rt *rt, const char *name, const char *data,
                                      float val_split, int batch, qat_event_fn on_event,
                                      void *user, qat_eval_result *res) {
    return qat_evaluate_int8_classes(rt, name, data, val_split, batch, on_event, user, res, NULL);
}

qat_status qat_evaluate_int8_classes(qat_rt *rt, const char *name, const char *data,
                                     float val_split, int batch, qat_event_fn on_event, void *user,
                                     qat_eval_result *res, qat_class_report *cr) {
    memset(res, 0, sizeof *res);
    if (cr) memset(cr, 0, sizeof *cr);
    if (!rt || !data || batch < 1) return qat_fail(QAT_ERR_ARG, "eval: a runtime, data and a batch >= 1 are required");
    int h, w, c, nc = qat_rt_nclasses(rt);
    qat_rt_input_shape(rt, &h, &w, &c);
    qat_data_opts dopt;
    memset(&dopt, 0, sizeof dopt);
    dopt.val_split = val_split;
    dopt.seed = 1; /* qat train's default seed: the same ImageFolder split as training */
    qat_dataset *train = NULL, *test = NULL;
    qat_status st = qat_dataset_open(data, &dopt, &train, &test);
    if (st) return st;
    qat_loader *l = NULL;
    float *x = NULL, *logits = NULL;
    int32_t *labels = NULL;
    if (test->h != h || test->w != w || test->c != c || test->nclasses != nc) {
        st = qat_fail(QAT_ERR_MISMATCH, "%s expects %dx%dx%d images and %d classes, %s has %dx%dx%d and %d",
                      name ? name : "model", h, w, c, nc, test->source, test->h, test->w, test->c,
                      test->nclasses);
        goto done;
    }
    if (cr) {
        char (*names)[QAT_Q8_CLASS_NAME_MAX] = NULL;
        if (qat_rt_class_name(rt, 0)) {
            if (!(names = calloc((size_t)nc, sizeof *names))) {
                st = qat_fail(QAT_ERR_NOMEM, "eval: out of memory");
                goto done;
            }
            for (int k = 0; k < nc; k++) snprintf(names[k], sizeof names[k], "%s", qat_rt_class_name(rt, k));
        }
        st = class_report_init(cr, test, names);
        free(names);
        if (st) goto done;
    }
    qat_loader_opts lo = {.batch = batch};
    qat_rt_input_norm(rt, lo.mean, lo.std);
    if ((st = qat_loader_create(test, &lo, &l))) goto done;
    x = malloc(sizeof(float) * (size_t)batch * h * w * c);
    logits = malloc(sizeof(float) * (size_t)batch * nc);
    labels = malloc(sizeof(int32_t) * (size_t)batch);
    if (!x || !logits || !labels) {
        st = qat_fail(QAT_ERR_NOMEM, "eval: out of memory");
        goto done;
    }
    int64_t correct = 0, seen = 0;
    double t0 = qat_now();
    qat_progress p = {on_event, user, "evaluating INT8"};
    int nb = qat_loader_num_batches(l);
    for (int b = 0; b < nb && !st; b++) {
        int n = qat_loader_get(l, 0, b, x, labels);
        if ((st = qat_rt_run(rt, x, n, logits))) break;
        for (int i = 0; i < n; i++) {
            const int pred = qat_argmax(logits + (size_t)i * nc, nc);
            correct += pred == labels[i];
            if (cr) cr->confusion[(size_t)labels[i] * nc + pred]++;
        }
        seen += n;
        qat_progress_report(&p, b + 1, nb, seen, t0);
    }
    res->seconds = qat_now() - t0;
    res->n = (int)seen;
    res->accuracy = seen ? (float)((double)correct / seen) : 0.0f;
done:
    if (st && cr) qat_class_report_free(cr);
    free(x), free(logits), free(labels);
    qat_loader_free(l);
    qat_dataset_free(train);
    qat_dataset_free(test);
    return st;
}

/* ---- FP32 inference speed (`qat bench --ckpt`) -------------------------------------------------- */

typedef struct {
    qat_run *r;
    int bs;
    double seconds; /* of the forward alone */
} fp32_job;

static qat_status fp32_step(qat_ctx *ctx, void *arg) {
    fp32_job *j = arg;
    qat_model *m = j->r->model;
    qat_tensor *x = qat_tensor_4d(ctx, j->bs, m->in_h, m->in_w, m->in_c);
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] = ((uint8_t)(i * 2654435761u >> 24) / 255.0f - j->r->mean[i % m->in_c]) / j->r->std[i % m->in_c];
    double t0 = qat_now();
    if (!qat_model_forward(m, ctx, x)) return QAT_ERR_SHAPE;
    j->seconds = qat_now() - t0;
    return QAT_OK;
}

qat_status qat_checkpoint_fp32_speed(const char *ckpt, int batch, int iters, double *img_per_s) {
    *img_per_s = 0;
    if (batch < 1) return qat_fail(QAT_ERR_ARG, "bench: batch %d (must be >= 1)", batch);
    qat_run r;
    qat_status st = qat_checkpoint_load(ckpt, &r);
    if (st) return st;
    qat_ctx ctx;
    qat_ctx_init(&ctx, 64u << 20);
    ctx.training = 0;
    ctx.grad_enabled = 0;
    if (iters <= 0) iters = batch == 1 ? 2000 : 50 > 4000 / batch ? 50 : 4000 / batch;
    double total = 0;
    for (int k = -3; k < iters && !st; k++) { /* 3 warm-up runs */
        fp32_job j = {&r, batch, 0};
        qat_ctx_reset(&ctx);
        st = qat_ctx_run(&ctx, fp32_step, &j);
        if (k >= 0) total += j.seconds;
    }
    qat_ctx_free(&ctx);
    qat_run_free(&r);
    if (!st) *img_per_s = batch * iters / total;
    return st;
}
