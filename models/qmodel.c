/* The QAT / PTQ model: the quantization points of a qat_model's layer records and the forward
 * through their kinds' fake-quant graphs (layers/<kind>.c, forward_fq). docs/quantization.md ("QAT
 * model") states what is computed and why. */
#include "qmodel.h"
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One scale per channel for every point, plus an offset per activation point (LSQ+). */
static qat_status lsq_alloc(qat_qmodel *q) {
    int64_t n = 0;
    for (int i = 0; i < q->npoints; i++) n += q->points[i].fq.nchannels * (q->points[i].weight ? 1 : 2);
    q->nlsq = n;
    q->lsq_params = calloc((size_t)n, sizeof(float));
    q->lsq_grads = calloc((size_t)n, sizeof(float));
    q->lsq_segs = calloc(2 * (size_t)q->npoints, sizeof *q->lsq_segs);
    if (!q->lsq_params || !q->lsq_grads || !q->lsq_segs)
        return qat_fail(QAT_ERR_NOMEM, "qmodel: out of memory");
    int64_t off = 0;
    for (int i = 0; i < q->npoints; i++) {
        qat_qpoint *p = &q->points[i];
        int C = p->fq.nchannels, act = !p->weight;
        float *sc = q->lsq_params + off, *sg = q->lsq_grads + off;
        q->lsq_segs[q->nlsq_segs++] = (qat_param_seg){off, C, 0};
        for (int c = 0; c < C; c++) q->lsq_params[off + c] = 1.0f;
        off += C;
        float *of = NULL, *og = NULL;
        if (act) {
            of = q->lsq_params + off, og = q->lsq_grads + off;
            q->lsq_segs[q->nlsq_segs++] = (qat_param_seg){off, C, 0};
            off += C;
        }
        qat_status st = qat_lsq_init(&p->lsq, &p->fq.scheme, act, C, sc, sg, of, og, act, p->name);
        if (st) return st;
    }
    return QAT_OK;
}

qat_status qat_qmodel_lsq_start(qat_qmodel *q) {
    if (!q->cfg.lsq) return qat_fail(QAT_ERR_ARG, "qmodel: qconfig %s has no learned quantizers", q->cfg.name);
    for (int i = 0; i < q->npoints; i++) {
        qat_qpoint *p = &q->points[i];
        qat_fq *fq = &p->fq;
        if (fq->obs.seen == 0)
            return qat_fail(QAT_ERR_ARG, "qmodel: observer %s saw no data before LSQ init", fq->name);
        qat_status st = qat_fq_compute_qparams(fq);
        if (!st) st = qat_lsq_init_from_qparams(&p->lsq, fq->scale, fq->zero_point);
        if (st) return st;
        p->lsq.fake_quant_enabled = fq->fake_quant_enabled;
    }
    q->lsq_ready = 1;
    return QAT_OK;
}

void qat_qmodel_zero_grad(qat_qmodel *q) {
    if (q->lsq_grads) memset(q->lsq_grads, 0, (size_t)q->nlsq * sizeof(float));
}

void qat_qmodel_lsq_clamp(qat_qmodel *q) {
    for (int i = 0; q->lsq_params && i < q->npoints; i++) qat_lsq_clamp_scale(&q->points[i].lsq);
}

/* The point that holds the value layer `li` produces (-1: the model input, point 0): a layer
 * without an output point (dropout) passes its input through. */
static int value_point(const qat_qmodel *q, int li) {
    while (li >= 0 && q->layers[li].out < 0) li = q->model->layers[li].in[0];
    return li < 0 ? 0 : q->layers[li].out;
}

/* ---- float layers ------------------------------------------------------------------------------ */

/* Whether every reader of layer li's output is a float layer (through layers that pass their
 * input on, dropout); a value nobody reads counts as read in float. */
static int read_only_in_float(const qat_qmodel *q, int li) {
    const qat_model *m = q->model;
    for (int j = li + 1; j < m->nlayers; j++)
        for (int k = 0; k < m->layers[j].nin; k++) {
            if (m->layers[j].in[k] != li) continue;
            const int passes_on = qat_layer_kinds[m->layers[j].kind]->convert == NULL;
            if (passes_on ? !read_only_in_float(q, j) : !q->layers[j].is_float) return 0;
        }
    return 1;
}

/* keep_float of every point from the layers' is_float; a point whose keep_float changes has its
 * fake-quant turned off (float) or on (quantized). */
static void update_float(qat_qmodel *q) {
    for (int i = 0; i < q->model->nlayers; i++) {
        const qat_qlayer *ql = &q->layers[i];
        int pts[2] = {ql->weight, ql->out};
        int keep[2] = {ql->is_float, ql->is_float && read_only_in_float(q, i)};
        for (int k = 0; k < 2; k++) {
            if (pts[k] < 0) continue;
            qat_qpoint *p = &q->points[pts[k]];
            if (p->keep_float == keep[k]) continue;
            p->keep_float = keep[k];
            p->fq.fake_quant_enabled = p->lsq.fake_quant_enabled = !keep[k];
        }
    }
}

int qat_qmodel_layer_is_float(const qat_qmodel *q, int li) { return q->layers[li].is_float; }

qat_status qat_qmodel_set_float(qat_qmodel *q, int li, int on) {
    if (li < 0 || li >= q->model->nlayers) return qat_fail(QAT_ERR_ARG, "qmodel: no layer %d", li);
    if (q->layers[li].weight < 0)
        return qat_fail(QAT_ERR_ARG, "layer %s has no weight: only conv, fc and linear layers can "
                        "be left in float", q->model->layers[li].name);
    q->layers[li].is_float = on != 0;
    update_float(q);
    return QAT_OK;
}

qat_status qat_qmodel_create(qat_model *m, const qat_qconfig *cfg, qat_qmodel_mode mode,
                             qat_observer_kind act_obs, qat_qmodel **out) {
    *out = NULL;
    qat_status st;
    if ((st = qat_qscheme_check(&cfg->act)) || (st = qat_qscheme_check(&cfg->weight))) return st;
    if (mode == QAT_QMODEL_PTQ && (unsigned)act_obs >= QAT_OBS_KIND_COUNT)
        return qat_fail(QAT_ERR_ARG, "qmodel: unknown PTQ observer kind %d", (int)act_obs);
    qat_qmodel *q = calloc(1, sizeof *q);
    int cap = 1 + 2 * m->nlayers;
    if (q) {
        q->points = calloc((size_t)cap, sizeof *q->points);
        q->layers = malloc((size_t)m->nlayers * sizeof *q->layers);
    }
    if (!q || !q->points || !q->layers) {
        qat_qmodel_free(q);
        return qat_fail(QAT_ERR_NOMEM, "qmodel: out of memory");
    }
    q->model = m;
    q->cfg = *cfg;
    q->act_obs = mode == QAT_QMODEL_PTQ ? act_obs : cfg->act_obs_qat;
    q->fold_bn = 1;
    q->exact_eval = 1;
    q->lsq_lr_mult = 1;
    q->freeze_bn_step = q->freeze_observer_step = -1;
    q->legacy_freeze_bn_epoch = q->legacy_freeze_observer_epoch = -1;
    /* The points in order: the input, then each layer's weight and output as its kind declares
     * them, with the spec's per-stage overrides (wbits=, quant=) on layers with weights. */
    st = qat_qpoint_init(&q->points[q->npoints++], "input", 0, &cfg->act, q->act_obs, 1);
    for (int i = 0; i < m->nlayers && !st; i++) {
        const qat_layer *L = &m->layers[i];
        const unsigned pts = qat_layer_kinds[L->kind]->qpoints;
        const qat_spec_stage *stage = L->stage >= 0 && (pts & QAT_QP_WEIGHT) ? &m->spec->stages[L->stage] : NULL;
        char name[QAT_QPOINT_NAME_MAX];
        q->layers[i].weight = q->layers[i].out = -1;
        q->layers[i].is_float = 0;
        if (pts & QAT_QP_WEIGHT) {
            qat_qscheme s = cfg->weight;
            if (stage && stage->wbits) s.bits = stage->wbits;
            snprintf(name, sizeof name, "%s.weight_fq", L->name);
            q->layers[i].weight = q->npoints;
            qat_qpoint *p = &q->points[q->npoints++];
            st = qat_qpoint_init(p, name, 1, &s, cfg->weight_obs, s.per_channel ? L->out_c : 1);
            q->layers[i].is_float = stage && !stage->quant;
        }
        if (!st && (pts & QAT_QP_OUT)) {
            snprintf(name, sizeof name, "%s.out_fq", L->name);
            q->layers[i].out = q->npoints;
            qat_qpoint *p = &q->points[q->npoints++];
            st = qat_qpoint_init(p, name, 0, &cfg->act, q->act_obs, 1);
        }
    }
    if (st) {
        qat_qmodel_free(q);
        return st;
    }
    for (int i = 0; i < m->nlayers; i++) q->layers[i].in = value_point(q, m->layers[i].in[0]);
    if (cfg->lsq && (st = lsq_alloc(q))) {
        qat_qmodel_free(q);
        return st;
    }
    update_float(q);
    *out = q;
    return QAT_OK;
}

void qat_qmodel_free(qat_qmodel *q) {
    if (!q) return;
    for (int i = 0; q->points && i < q->npoints; i++) qat_qpoint_free(&q->points[i]);
    free(q->points);
    free(q->layers);
    free(q->lsq_params);
    free(q->lsq_grads);
    free(q->lsq_segs);
    free(q);
}

void qat_qmodel_enable_fake_quant(qat_qmodel *q, int on) {
    for (int i = 0; i < q->npoints; i++) qat_qpoint_enable(&q->points[i], on);
}

qat_status qat_qmodel_freeze_observers(qat_qmodel *q) {
    for (int i = 0; i < q->npoints; i++) {
        qat_status st = qat_qpoint_freeze(&q->points[i]);
        if (st) return st;
    }
    q->observers_frozen = 1;
    return QAT_OK;
}

void qat_qmodel_freeze_bn(qat_qmodel *q) {
    qat_model_set_bn_update(q->model, 0);
    q->bn_frozen = 1;
}

/* ---- forward --------------------------------------------------------------------------------- */

qat_tensor *qat_qmodel_forward(qat_qmodel *q, qat_ctx *ctx, qat_tensor *x) {
    qat_model *m = q->model;
    if (!x || x->ndim != 4 || x->shape[0] < 1 || x->shape[1] != m->in_h ||
        x->shape[2] != m->in_w || x->shape[3] != m->in_c)
        return qat_model_forward(m, ctx, x); /* sets the same shape error and returns NULL */
    qat_qforward f = {.observe = !q->observers_frozen && (ctx->training || q->calibrating),
                      .act_paused = q->act_observers_paused, .lsq = q->lsq_ready,
                      .fold_bn = q->fold_bn, .bn_frozen = q->bn_frozen};
    qat_tensor **outs = qat_arena_alloc(&ctx->arena, (size_t)m->nlayers * sizeof *outs);
    qat_tensor *xin = qat_qpoint_apply(ctx, x, &q->points[0], &f);
    qat_tensor *y = xin;
    for (int i = 0; i < m->nlayers; i++) {
        qat_layer *L = &m->layers[i];
        const qat_layer_desc *d = qat_layer_kinds[L->kind];
        const qat_qlayer *ql = &q->layers[i];
        qat_tensor *in[QAT_LAYER_MAX_IN];
        for (int j = 0; j < L->nin; j++) in[j] = L->in[j] < 0 ? xin : outs[L->in[j]];
        f.weight = ql->weight >= 0 ? &q->points[ql->weight] : NULL;
        f.out = ql->out >= 0 ? &q->points[ql->out] : NULL;
        f.in = &q->points[ql->in];
        f.quantized = 0;
        y = d->forward_fq ? d->forward_fq(L, &f, ctx, in) : d->forward(L, ctx, in);
        if (f.out && !f.quantized) y = qat_qpoint_apply(ctx, y, f.out, &f);
        if (!y->name) y->name = L->name;
        outs[i] = y;
        if (q->trace) q->trace[i] = y;
    }
    return y;
}

void qat_qmodel_sqnr(qat_qmodel *q, qat_ctx *ctx, qat_tensor *x, double *sqnr) {
    int n = q->model->nlayers, training = ctx->training;
    qat_tensor **ref = qat_arena_alloc(&ctx->arena, (size_t)n * sizeof *ref);
    qat_tensor **got = qat_arena_alloc(&ctx->arena, (size_t)n * sizeof *got);
    ctx->training = 0;
    q->trace = ref;
    qat_qmodel_enable_fake_quant(q, 0);
    qat_qmodel_forward(q, ctx, x);
    q->trace = got;
    qat_qmodel_enable_fake_quant(q, 1);
    qat_qmodel_forward(q, ctx, x);
    q->trace = NULL;
    ctx->training = training;
    for (int i = 0; i < n; i++) {
        double sig = 0, noise = 0;
        for (int64_t k = 0; k < ref[i]->numel; k++) {
            double a = ref[i]->data[k], d = (double)got[i]->data[k] - a;
            sig += a * a, noise += d * d;
        }
        sqnr[i] = noise > 0 ? 10 * log10(sig / noise) : INFINITY;
    }
}

/* ---- state ----------------------------------------------------------------------------------- */

#define QSTATE_MAGIC 0x54534d51u /* "QMST" */
#define QSTATE_VERSION 3u
/* Version 3 appends one byte per layer, 1 for a layer left in float, after the learned scales;
 * written only when a per-layer qconfig made the float layers differ from the spec's quant=0
 * (other checkpoints stay version 2, byte for byte as before). */
/* Version 1 ended after `pad` (64 bytes) and kept the freeze schedule in epochs; version 2
 * keeps it in optimizer steps (the epoch fields are -1) so that it means the same for epochs
 * of 16 steps and of 500. Both load. */
typedef struct {
    uint32_t magic, version;
    char qconfig[QAT_QCONFIG_NAME_MAX];
    int32_t act_obs, nfq, bn_frozen, observers_frozen;
    int32_t freeze_bn_epoch, freeze_observer_epoch, fold_bn, lsq_ready;
    float lsq_lr_mult;
    int32_t pad;
    int64_t freeze_bn_step, freeze_observer_step; /* version 2 */
} qstate_header;
#define QSTATE_V1_BYTES 64
_Static_assert(sizeof(qstate_header) == 80, "quant state header layout");
_Static_assert(offsetof(qstate_header, freeze_bn_step) == QSTATE_V1_BYTES, "v1 prefix");

/* The float layers the spec's quant=0 alone gives. */
static int spec_float(const qat_qmodel *q, int li) {
    const qat_layer *L = &q->model->layers[li];
    return q->layers[li].weight >= 0 && L->stage >= 0 && !q->model->spec->stages[L->stage].quant;
}

static int floats_beyond_spec(const qat_qmodel *q) {
    for (int i = 0; i < q->model->nlayers; i++)
        if (q->layers[i].is_float != spec_float(q, i)) return 1;
    return 0;
}

size_t qat_qmodel_state_bytes(const qat_qmodel *q) {
    size_t n = sizeof(qstate_header);
    for (int i = 0; i < q->npoints; i++) n += sizeof(uint64_t) + qat_fq_state_bytes(&q->points[i].fq);
    n += (size_t)q->nlsq * sizeof(float); /* learned scales and offsets */
    return n + (floats_beyond_spec(q) ? (size_t)q->model->nlayers : 0);
}

void qat_qmodel_pack(const qat_qmodel *q, void *buf) {
    qstate_header h;
    memset(&h, 0, sizeof h);
    h.magic = QSTATE_MAGIC, h.version = floats_beyond_spec(q) ? 3 : 2;
    memcpy(h.qconfig, q->cfg.name, sizeof h.qconfig);
    h.act_obs = q->act_obs, h.nfq = q->npoints, h.bn_frozen = q->bn_frozen;
    h.observers_frozen = q->observers_frozen, h.freeze_bn_epoch = h.freeze_observer_epoch = -1;
    h.freeze_bn_step = q->freeze_bn_step, h.freeze_observer_step = q->freeze_observer_step;
    h.fold_bn = q->fold_bn;
    h.lsq_ready = q->lsq_ready, h.lsq_lr_mult = q->lsq_lr_mult;
    char *p = buf;
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    for (int i = 0; i < q->npoints; i++) {
        uint64_t n = qat_fq_state_bytes(&q->points[i].fq);
        memcpy(p, &n, sizeof n);
        qat_fq_pack(&q->points[i].fq, p + sizeof n);
        p += sizeof n + n;
    }
    if (q->nlsq) memcpy(p, q->lsq_params, (size_t)q->nlsq * sizeof(float));
    p += (size_t)q->nlsq * sizeof(float);
    if (h.version == 3)
        for (int i = 0; i < q->model->nlayers; i++) p[i] = (char)q->layers[i].is_float;
}

qat_status qat_qmodel_unpack(qat_model *m, const void *buf, size_t bytes, const char *path,
                             qat_qmodel **out) {
    *out = NULL;
    qstate_header h;
    memset(&h, 0, sizeof h);
    if (bytes < QSTATE_V1_BYTES) return qat_fail(QAT_ERR_FORMAT, "%s: quant section truncated", path);
    memcpy(&h, buf, QSTATE_V1_BYTES);
    if (h.magic != QSTATE_MAGIC || h.version < 1 || h.version > QSTATE_VERSION)
        return qat_fail(QAT_ERR_FORMAT, "%s: quant section has an unknown format", path);
    size_t hbytes = h.version == 1 ? QSTATE_V1_BYTES : sizeof h;
    if (bytes < hbytes) return qat_fail(QAT_ERR_FORMAT, "%s: quant section truncated", path);
    memcpy(&h, buf, hbytes);
    if (h.version == 1) {
        h.freeze_bn_step = h.freeze_observer_step = -1;
    } else if (h.freeze_bn_step < -1 || h.freeze_observer_step < -1) {
        return qat_fail(QAT_ERR_FORMAT, "%s: quant section has a bad freeze schedule", path);
    }
    h.qconfig[QAT_QCONFIG_NAME_MAX - 1] = 0;
    qat_qconfig cfg;
    qat_status st = qat_qconfig_get(h.qconfig, &cfg);
    if (st) return qat_fail(QAT_ERR_FORMAT, "%s: %s", path, qat_last_error());
    if (h.act_obs < 0 || h.act_obs >= QAT_OBS_KIND_COUNT || h.fold_bn < 0 || h.fold_bn > 2)
        return qat_fail(QAT_ERR_FORMAT, "%s: quant section has a bad observer kind", path);
    qat_qmodel *q;
    int ptq = h.act_obs != (int32_t)cfg.act_obs_qat;
    if ((st = qat_qmodel_create(m, &cfg, ptq ? QAT_QMODEL_PTQ : QAT_QMODEL_QAT,
                                (qat_observer_kind)h.act_obs, &q)))
        return st;
    if (h.nfq != q->npoints) {
        int n = q->npoints;
        qat_qmodel_free(q);
        return qat_fail(QAT_ERR_MISMATCH, "%s: quant section has %d quantization points, the model has %d",
                        path, (int)h.nfq, n);
    }
    const char *p = (const char *)buf + hbytes, *end = (const char *)buf + bytes;
    for (int i = 0; i < q->npoints; i++) {
        uint64_t n;
        if ((size_t)(end - p) < sizeof n) goto truncated;
        memcpy(&n, p, sizeof n);
        p += sizeof n;
        if ((uint64_t)(end - p) < n) goto truncated;
        if ((st = qat_fq_unpack(&q->points[i].fq, p, n))) {
            qat_fail(st, "%s: %s", path, qat_last_error());
            qat_qmodel_free(q);
            return st;
        }
        p += n;
    }
    const size_t nfloat_flags = h.version >= 3 ? (size_t)m->nlayers : 0;
    if ((size_t)(end - p) != (size_t)q->nlsq * sizeof(float) + nfloat_flags) goto truncated;
    for (size_t i = 0; i < nfloat_flags; i++) {
        const unsigned char f = (unsigned char)p[(size_t)q->nlsq * sizeof(float) + i];
        if (f > 1 || (f && q->layers[i].weight < 0)) {
            qat_qmodel_free(q);
            return qat_fail(QAT_ERR_FORMAT, "%s: quant section marks layer %d float (flag %u): "
                            "only layers with a weight can be", path, (int)i, f);
        }
        q->layers[i].is_float = f;
    }
    if (nfloat_flags) update_float(q);
    if (q->nlsq) {
        memcpy(q->lsq_params, p, (size_t)q->nlsq * sizeof(float));
        for (int64_t k = 0; k < q->nlsq; k++)
            if (!isfinite(q->lsq_params[k])) {
                qat_qmodel_free(q);
                return qat_fail(QAT_ERR_NUMERIC, "%s: learned quantizer parameter %lld is not finite",
                                path, (long long)k);
            }
        for (int i = 0; i < q->npoints; i++)
            q->points[i].lsq.fake_quant_enabled = q->points[i].fq.fake_quant_enabled;
        q->lsq_ready = h.lsq_ready != 0;
        if (!(h.lsq_lr_mult >= 0 && h.lsq_lr_mult <= 1e6)) {
            qat_qmodel_free(q);
            return qat_fail(QAT_ERR_FORMAT, "%s: bad quantizer learning-rate multiplier", path);
        }
        q->lsq_lr_mult = h.lsq_lr_mult;
    }
    q->bn_frozen = h.bn_frozen != 0, q->observers_frozen = h.observers_frozen != 0;
    q->freeze_bn_step = h.freeze_bn_step, q->freeze_observer_step = h.freeze_observer_step;
    if (h.version == 1) {
        q->legacy_freeze_bn_epoch = h.freeze_bn_epoch >= 0 ? h.freeze_bn_epoch : -1;
        q->legacy_freeze_observer_epoch = h.freeze_observer_epoch >= 0 ? h.freeze_observer_epoch : -1;
    }
    q->fold_bn = h.fold_bn;
    if (q->bn_frozen) qat_model_set_bn_update(m, 0);
    *out = q;
    return QAT_OK;
truncated:
    qat_qmodel_free(q);
    return qat_fail(QAT_ERR_FORMAT, "%s: quant section size does not match the model", path);
}
