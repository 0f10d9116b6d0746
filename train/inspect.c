/* `qat inspect`: per layer of a PTQ/QAT checkpoint the output qparams, the weight scales and
 * range, and the SQNR of its output with fake-quant against FP32 on one test batch; and the
 * description of a checkpoint that `qat summary --ckpt` prints. */
#include "train.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- qat inspect ------------------------------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(b->buf ? b->buf + b->len : NULL, b->buf ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (b->buf && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
        char *p = realloc(b->buf, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->buf = p, b->cap = cap;
    }
}

static void range_of(const float *v, int n, float *lo, float *hi) {
    *lo = v[0], *hi = v[0];
    for (int i = 1; i < n; i++) *lo = v[i] < *lo ? v[i] : *lo, *hi = v[i] > *hi ? v[i] : *hi;
}

/* The qparams the forward of point i uses now (learned ones once LSQ started). */
static void qparams_of(const qat_qmodel *q, int i, float *scale, int32_t *zp) {
    const qat_qpoint *p = &q->points[i];
    if (q->lsq_ready) {
        qat_lsq_qparams(&p->lsq, scale, zp);
        return;
    }
    memcpy(scale, p->fq.scale, (size_t)p->fq.nchannels * sizeof(float));
    memcpy(zp, p->fq.zero_point, (size_t)p->fq.nchannels * sizeof(int32_t));
}

/* The names and SQNR of every layer, for callers that draw them (qat inspect --plot). */
static qat_status copy_layer_sqnr(const qat_model *m, const double *sqnr, qat_layer_sqnr *out) {
    out->names = malloc((size_t)m->nlayers * sizeof *out->names);
    out->sqnr_db = malloc((size_t)m->nlayers * sizeof *out->sqnr_db);
    if (!out->names || !out->sqnr_db) {
        qat_layer_sqnr_free(out);
        return qat_fail(QAT_ERR_NOMEM, "inspect: out of memory");
    }
    for (int i = 0; i < m->nlayers; i++) {
        snprintf(out->names[i], sizeof out->names[i], "%s", m->layers[i].name);
        out->sqnr_db[i] = sqnr[i];
    }
    out->n = m->nlayers;
    return QAT_OK;
}

void qat_layer_sqnr_free(qat_layer_sqnr *s) {
    free(s->names);
    free(s->sqnr_db);
    memset(s, 0, sizeof *s);
}

/* The SQNR of every layer on the first test batch (the graph part of inspect). */
typedef struct {
    qat_qmodel *q;
    qat_loader *l;
    double *sqnr;
    int batch, B;
} sqnr_batch;

static qat_status sqnr_step(qat_ctx *ctx, void *arg) {
    sqnr_batch *s = arg;
    const qat_model *m = s->q->model;
    const int batch = s->batch;
    qat_tensor *x = qat_tensor_4d(ctx, batch, m->in_h, m->in_w, m->in_c);
    int32_t *y = qat_arena_alloc(&ctx->arena, (size_t)batch * sizeof(int32_t));
    s->B = qat_loader_get(s->l, 0, 0, x->data, y);
    x->shape[0] = s->B, x->numel = (int64_t)s->B * m->in_h * m->in_w * m->in_c;
    ctx->grad_enabled = 0;
    qat_qmodel_sqnr(s->q, ctx, x, s->sqnr);
    return QAT_OK;
}

qat_status qat_inspect(const char *ckpt, const char *data, float val_split, int batch,
                       char **report, qat_layer_sqnr *layers) {
    *report = NULL;
    if (layers) memset(layers, 0, sizeof *layers);
    qat_run run;
    qat_status st = qat_checkpoint_load(ckpt, &run);
    if (st) return st;
    qat_dataset *train = NULL, *test = NULL;
    qat_loader *l = NULL;
    qat_ctx ctx;
    qat_ctx_init(&ctx, 32u << 20);
    double *sqnr = NULL;
    if (!run.qmodel) {
        st = qat_fail(QAT_ERR_ARG, "%s: an FP32 checkpoint has no quantization state (run qat ptq or qat qat first)", ckpt);
        goto done;
    }
    qat_data_opts dopt;
    memset(&dopt, 0, sizeof dopt);
    dopt.val_split = val_split;
    dopt.seed = run.seed;
    if ((st = qat_dataset_open(data, &dopt, &train, &test))) goto done;
    qat_model *m = run.model;
    if (m->in_h != test->h || m->in_w != test->w || m->in_c != test->c) {
        st = qat_fail(QAT_ERR_MISMATCH, "%s: checkpoint expects %dx%dx%d images, %s has %dx%dx%d",
                      ckpt, m->in_h, m->in_w, m->in_c, test->source, test->h, test->w, test->c);
        goto done;
    }
    qat_loader_opts lo;
    memset(&lo, 0, sizeof lo);
    lo.batch = batch > 0 ? batch : 128;
    for (int c = 0; c < 4; c++) lo.mean[c] = run.mean[c], lo.std[c] = run.std[c];
    if ((st = qat_loader_create(test, &lo, &l))) goto done;
    sqnr = malloc((size_t)m->nlayers * sizeof(double));
    if (!sqnr) {
        st = qat_fail(QAT_ERR_NOMEM, "inspect: out of memory");
        goto done;
    }
    qat_qmodel *q = run.qmodel;
    sqnr_batch sb = {q, l, sqnr, lo.batch, 0};
    if ((st = qat_ctx_run(&ctx, sqnr_step, &sb))) goto done;
    int B = sb.B;
    strbuf b = {0};
    sb_printf(&b, "%s: qconfig %s, activation observer %s, BN %s, observers %s; SQNR on %d test images\n",
              ckpt, q->cfg.name, q->act_obs == QAT_OBS_HISTOGRAM ? "histogram"
                                 : q->act_obs == QAT_OBS_MOVING_AVG ? "moving-average" : "minmax",
              q->bn_frozen ? "frozen" : "live",
              q->lsq_ready ? "replaced by learned scales" : q->observers_frozen ? "frozen" : "live", B);
    sb_printf(&b, "%-22s %-14s %11s %4s %21s %21s %8s\n", "layer", "op", "act scale", "zp",
              "weight scale min/max", "weight range", "SQNR dB");
    float in_s;
    int32_t in_zp;
    qparams_of(q, 0, &in_s, &in_zp);
    sb_printf(&b, "%-22s %-14s %11.5g %4d %21s %21s %8s\n", "input", "fake-quant", (double)in_s,
              (int)in_zp, "", "", "");
    for (int i = 0; i < m->nlayers; i++) {
        const qat_layer *L = &m->layers[i];
        char as[16] = "", az[8] = "", ws[32] = "", wr[32] = "";
        if (q->layers[i].out >= 0) {
            float sc;
            int32_t zp;
            qparams_of(q, q->layers[i].out, &sc, &zp);
            snprintf(as, sizeof as, "%.5g", (double)sc);
            snprintf(az, sizeof az, "%d", (int)zp);
        }
        if (q->layers[i].weight >= 0) {
            const qat_fq *f = &q->points[q->layers[i].weight].fq;
            float lo_s, hi_s, lo_w, hi_w, t;
            float *sc = malloc((size_t)f->nchannels * sizeof(float));
            int32_t *zp = malloc((size_t)f->nchannels * sizeof(int32_t));
            if (!sc || !zp) {
                free(sc), free(zp), free(b.buf);
                st = qat_fail(QAT_ERR_NOMEM, "inspect: out of memory");
                goto done;
            }
            qparams_of(q, q->layers[i].weight, sc, zp);
            range_of(sc, f->nchannels, &lo_s, &hi_s);
            free(sc), free(zp);
            snprintf(ws, sizeof ws, "%.3g/%.3g", (double)lo_s, (double)hi_s);
            if (f->obs.seen > 0) {
                range_of(f->obs.min_val, f->obs.nchannels, &lo_w, &t);
                range_of(f->obs.max_val, f->obs.nchannels, &t, &hi_w);
                snprintf(wr, sizeof wr, "[%.3g, %.3g]", (double)lo_w, (double)hi_w);
            }
        }
        const char *op = qat_layer_op_name(L);
        sb_printf(&b, "%-22s %-14s %11s %4s %21s %21s %8.1f\n", L->name, op, as, az, ws, wr, sqnr[i]);
    }
    if (b.oom) {
        free(b.buf);
        st = qat_fail(QAT_ERR_NOMEM, "inspect: out of memory");
        goto done;
    }
    if (layers && (st = copy_layer_sqnr(m, sqnr, layers))) {
        free(b.buf);
        goto done;
    }
    *report = b.buf;
done:
    free(sqnr);
    qat_ctx_free(&ctx);
    qat_loader_free(l);
    qat_dataset_free(train);
    qat_dataset_free(test);
    qat_run_free(&run);
    return st;
}

/* ---- qat summary --ckpt ------------------------------------------------------------------------ */

qat_status qat_checkpoint_summary(const char *ckpt, char **text) {
    *text = NULL;
    qat_run run;
    qat_status st = qat_checkpoint_load(ckpt, &run);
    if (st) return st;
    strbuf b = {0};
    size_t need = qat_model_summary(run.model, NULL, 0) + 1;
    char *table = malloc(need), line[4096];
    if (table) {
        qat_model_summary(run.model, table, need);
        sb_printf(&b, "%s", table);
        free(table);
    } else {
        b.oom = 1;
    }
    sb_printf(&b, "checkpoint: %s, %s, epoch %d, step %lld, best test accuracy %.2f%%\n", ckpt,
              run.qmodel ? "fake-quant (PTQ/QAT)" : "FP32", run.epoch, (long long)run.step,
              100.0 * run.best_acc);
    if (run.has_pipeline) {
        qat_pipeline_describe(&run.pipeline, line, sizeof line);
        sb_printf(&b, "%s training: %s\n", run.pipeline.phase, line);
    } else {
        sb_printf(&b, "data: not recorded (a checkpoint written before qat recorded its data pipeline)\n");
    }
    qat_run_free(&run);
    if (b.oom) {
        free(b.buf);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", ckpt);
    }
    *text = b.buf;
    return QAT_OK;
}
