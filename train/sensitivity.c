/* Per-layer quantization sensitivity (`qat sensitivity`), what AIMET's per-layer analysis, NNCF's
 * and PyTorch's Numeric Suite users look at: the FP32 checkpoint is calibrated once (PTQ), then
 * on the first `images` test images the fake-quant graph is evaluated with
 *   only layer L quantized: L's input, weight and output points on, every other point off;
 *   only layer L float:     every point on except L's weight (its activations stay quantized,
 *                           as they would between INT8 neighbours: Q/DQ at its edges),
 * each against the FP32 logits: accuracy and the mean KL divergence KL(p_fp32 || p_quant) of
 * the softmax. The float fake-quant graph is used (not the integer-exact simulation), because a
 * partly quantized model has no INT8 form to simulate. */
#include "train.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void qat_sensitivity_opts_default(qat_sensitivity_opts *o) {
    memset(o, 0, sizeof *o);
    o->qconfig = "x86";
    o->observer = "histogram";
    o->percentile = 99.99f;
    o->averaging_constant = QAT_OBS_AVERAGING_CONSTANT;
    o->calib_batches = 32;
    o->images = 2000;
}

/* Logits of the first n images of d through q's fake-quant graph (eval mode), into out (n, K). */
typedef struct {
    qat_qmodel *q;
    const qat_dataset *d;
    const float *x;
    int B;
    qat_tensor *logits;
} sens_batch;

static qat_status sens_step(qat_ctx *ctx, void *arg) {
    sens_batch *s = arg;
    qat_tensor *xt = qat_tensor_4d(ctx, s->B, s->d->h, s->d->w, s->d->c);
    memcpy(xt->data, s->x, (size_t)xt->numel * sizeof(float));
    return (s->logits = qat_qmodel_forward(s->q, ctx, xt)) ? QAT_OK : QAT_ERR_SHAPE;
}

typedef struct {
    qat_qmodel *q;
    const qat_dataset *d;
    qat_loader *l;
    float *x;
    int32_t *y;
    int n, K, batch;
    qat_ctx ctx;
} sens_eval;

static qat_status logits_of(sens_eval *e, float *out) {
    int done = 0;
    for (int b = 0; done < e->n; b++) {
        sens_batch sb = {e->q, e->d, e->x, qat_loader_get(e->l, 0, b, e->x, e->y), NULL};
        if (sb.B > e->n - done) sb.B = e->n - done;
        qat_ctx_reset(&e->ctx);
        qat_status st = qat_ctx_run(&e->ctx, sens_step, &sb);
        if (st) return st;
        memcpy(out + (size_t)done * e->K, sb.logits->data, (size_t)sb.B * e->K * sizeof(float));
        done += sb.B;
    }
    return QAT_OK;
}

/* Accuracy of logits against labels, and mean KL(softmax(ref) || softmax(q)). */
static void compare(const float *ref, const float *q, const int32_t *labels, int n, int K,
                    double *acc, double *kl) {
    long correct = 0;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        const float *a = ref + (size_t)i * K, *b = q + (size_t)i * K;
        correct += qat_argmax(b, K) == labels[i];
        double ma = a[0], mb = b[0], za = 0, zb = 0;
        for (int k = 1; k < K; k++) ma = a[k] > ma ? a[k] : ma, mb = b[k] > mb ? b[k] : mb;
        for (int k = 0; k < K; k++) za += exp(a[k] - ma), zb += exp(b[k] - mb);
        double la = log(za), lb = log(zb), d = 0;
        for (int k = 0; k < K; k++) {
            double lpa = a[k] - ma - la, lpb = b[k] - mb - lb;
            d += exp(lpa) * (lpa - lpb);
        }
        sum += d > 0 ? d : 0; /* rounding can make an identical pair a hair negative */
    }
    *acc = n ? (double)correct / n : 0;
    *kl = n ? sum / n : 0;
}

/* Fake-quant on at the points listed (-1 ignored), off everywhere else; or, with all_but, on
 * everywhere except those. */
static void enable_points(qat_qmodel *q, const int *pts, int npts, int all_but) {
    for (int i = 0; i < q->npoints; i++) qat_qpoint_enable(&q->points[i], all_but);
    for (int k = 0; k < npts; k++)
        if (pts[k] >= 0) qat_qpoint_enable(&q->points[pts[k]], !all_but);
}

void qat_sensitivity_free(qat_sensitivity *s) {
    if (!s) return;
    free(s->names);
    free(s->quant_acc);
    memset(s, 0, sizeof *s);
}

qat_status qat_sensitivity_run(const qat_sensitivity_opts *o, qat_sensitivity *out) {
    memset(out, 0, sizeof *out);
    if (!o->ckpt || !o->data) return qat_fail(QAT_ERR_ARG, "sensitivity: --ckpt and --data are required");
    if (o->images < 1 || o->calib_batches < 1)
        return qat_fail(QAT_ERR_ARG, "sensitivity: --images and --calib-batches must be positive");
    qat_observer_kind obs;
    qat_hist_method method;
    qat_qconfig cfg;
    qat_status st;
    if ((st = qat_ptq_check_observer(o->observer, o->percentile, o->averaging_constant, &obs, &method)) ||
        (st = qat_qconfig_get(o->qconfig ? o->qconfig : "x86", &cfg)))
        return st;
    if (cfg.lsq) return qat_fail(QAT_ERR_ARG, "sensitivity: the lsq qconfig learns its scales in QAT; use x86, per-tensor or w4a8");
    if (o->threads > 0) qat_set_threads(o->threads);
    qat_run run;
    if ((st = qat_checkpoint_load(o->ckpt, &run))) return st;
    qat_dataset *train = NULL, *test = NULL;
    sens_eval e = {0};
    float *ref = NULL, *cur = NULL;
    int32_t *labels = NULL;
    qat_ctx_init(&e.ctx, 64u << 20);
    e.ctx.training = 0;
    e.ctx.grad_enabled = 0;
    qat_data_opts dopt;
    memset(&dopt, 0, sizeof dopt);
    dopt.val_split = o->val_split;
    dopt.seed = run.seed;
    if ((st = qat_dataset_open(o->data, &dopt, &train, &test))) goto done;
    qat_model *m = run.model;
    if (m->in_h != test->h || m->in_w != test->w || m->in_c != test->c || m->nclasses != test->nclasses) {
        st = qat_fail(QAT_ERR_MISMATCH, "%s: checkpoint expects %dx%dx%d images and %d classes, %s has %dx%dx%d and %d",
                      o->ckpt, m->in_h, m->in_w, m->in_c, m->nclasses, test->source, test->h, test->w,
                      test->c, test->nclasses);
        goto done;
    }
    qat_qmodel_free(run.qmodel); /* a PTQ/QAT checkpoint: start from its FP32 weights */
    run.qmodel = NULL;
    if ((st = qat_qmodel_create(m, &cfg, QAT_QMODEL_PTQ, obs, &run.qmodel))) goto done;
    qat_qmodel *q = run.qmodel;
    for (int i = 0; i < q->npoints; i++)
        if (!q->points[i].weight) {
            q->points[i].fq.obs.method = method;
            q->points[i].fq.obs.percentile = o->percentile;
            q->points[i].fq.obs.averaging_constant = o->averaging_constant;
        }
    qat_progress pc = {o->on_event, o->event_user, "sensitivity: calibrating"};
    if ((st = qat_calibrate(&run, train, 128, o->calib_batches, &pc)) ||
        (st = qat_qmodel_freeze_observers(q)))
        goto done;
    q->exact_eval = 0;
    e.q = q, e.d = test, e.K = m->nclasses, e.batch = 128;
    e.n = o->images < test->n ? o->images : test->n;
    qat_loader_opts lo;
    memset(&lo, 0, sizeof lo);
    lo.batch = e.batch;
    for (int c = 0; c < 4; c++) lo.mean[c] = run.mean[c], lo.std[c] = run.std[c];
    if ((st = qat_loader_create(test, &lo, &e.l))) goto done;
    int nl = 0; /* layers with a weight point: the candidates */
    for (int i = 0; i < m->nlayers; i++) nl += q->layers[i].weight >= 0;
    e.x = malloc((size_t)e.batch * test->h * test->w * test->c * sizeof(float));
    e.y = malloc((size_t)e.batch * sizeof(int32_t));
    ref = malloc((size_t)e.n * e.K * sizeof(float));
    cur = malloc((size_t)e.n * e.K * sizeof(float));
    labels = malloc((size_t)e.n * sizeof(int32_t));
    out->names = calloc((size_t)(nl > 0 ? nl : 1), sizeof *out->names);
    out->quant_acc = calloc((size_t)(nl > 0 ? nl : 1) * 4, sizeof(double));
    if (!e.x || !e.y || !ref || !cur || !labels || !out->names || !out->quant_acc) {
        st = qat_fail(QAT_ERR_NOMEM, "sensitivity: out of memory");
        goto done;
    }
    out->quant_kl = out->quant_acc + nl;
    out->float_acc = out->quant_kl + nl;
    out->float_kl = out->float_acc + nl;
    for (int done_n = 0, b = 0; done_n < e.n; b++) { /* the labels, in the loader's order */
        int B = qat_loader_get(e.l, 0, b, e.x, e.y);
        if (B > e.n - done_n) B = e.n - done_n;
        memcpy(labels + done_n, e.y, (size_t)B * sizeof(int32_t));
        done_n += B;
    }
    qat_qmodel_enable_fake_quant(q, 0);
    if ((st = logits_of(&e, ref))) goto done;
    double kl0;
    compare(ref, ref, labels, e.n, e.K, &out->fp32_acc, &kl0);
    qat_qmodel_enable_fake_quant(q, 1);
    if ((st = logits_of(&e, cur))) goto done;
    compare(ref, cur, labels, e.n, e.K, &out->quant_all_acc, &out->quant_all_kl);
    out->images = e.n;
    double t0 = qat_now();
    qat_progress pe = {o->on_event, o->event_user, "sensitivity: layers"};
    for (int i = 0, k = 0; i < m->nlayers && !st; i++) {
        const qat_qlayer *ql = &q->layers[i];
        if (ql->weight < 0) continue;
        snprintf(out->names[k], QAT_NAME_MAX, "%s", m->layers[i].name);
        int only[3] = {ql->in, ql->weight, ql->out};
        enable_points(q, only, 3, 0);
        if ((st = logits_of(&e, cur))) break;
        compare(ref, cur, labels, e.n, e.K, &out->quant_acc[k], &out->quant_kl[k]);
        enable_points(q, &ql->weight, 1, 1);
        if ((st = logits_of(&e, cur))) break;
        compare(ref, cur, labels, e.n, e.K, &out->float_acc[k], &out->float_kl[k]);
        k++;
        out->n = k;
        qat_progress_report(&pe, k, nl, (int64_t)k * 2 * e.n, t0);
    }
done:
    if (st) qat_sensitivity_free(out);
    free(e.x), free(e.y), free(ref), free(cur), free(labels);
    qat_loader_free(e.l);
    qat_ctx_free(&e.ctx);
    qat_dataset_free(train);
    qat_dataset_free(test);
    qat_run_free(&run);
    return st;
}
