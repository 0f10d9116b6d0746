/* Convert: a PTQ/QAT model (models/qmodel.h) to its INT8 model (runtime/q8.h); see export.h. */
#include "export.h"
#include "int8.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keeps a product a separately rounded float (no FMA contraction with what follows), as the
 * separate qat_mul / qat_add nodes of the QAT forward round it. */
static inline float rounded(float v) {
    __asm__("" : "+x"(v));
    return v;
}

static int point_on(const qat_qmodel *q, int i) {
    return q->lsq_ready ? q->lsq[i].fake_quant_enabled : q->fq[i].fake_quant_enabled;
}

int qat_convertible(const qat_qmodel *q, char *why, size_t cap) {
    char tmp[8];
    if (!why) why = tmp, cap = sizeof tmp;
    const qat_qscheme *a = &q->cfg.act, *w = &q->cfg.weight;
    if (a->is_signed || a->per_channel) {
        snprintf(why, cap, "qconfig %s: activations must be unsigned per-tensor (u8 kernels)", q->cfg.name);
        return 0;
    }
    if (!w->is_signed || !w->symmetric) {
        snprintf(why, cap, "qconfig %s: weights must be signed symmetric (s8 kernels have no weight zero point)",
                 q->cfg.name);
        return 0;
    }
    if (q->fold_bn == 0) {
        snprintf(why, cap, "BN folding is off: the INT8 model needs BN folded into the weights");
        return 0;
    }
    for (int i = 0; i < q->nfq; i++) {
        if (!point_on(q, i)) {
            snprintf(why, cap, "fake-quant is off at %s: the model is not quantized there", q->fq_names[i]);
            return 0;
        }
        if (!q->lsq_ready && q->fq[i].obs.seen == 0) {
            snprintf(why, cap, "observer %s saw no data (calibrate or train first)", q->fq_names[i]);
            return 0;
        }
    }
    for (int i = 0; i < q->model->nlayers; i++) {
        const qat_layer *L = &q->model->layers[i];
        if (L->kind == QAT_LAYER_CONV_BN_ACT && L->act == QAT_ACT_HARDSWISH) {
            snprintf(why, cap, "layer %s: hardswish has no INT8 kernel", L->name);
            return 0;
        }
    }
    return 1;
}

/* The qparams the eval forward uses at every point (per channel for per-channel weights). */
typedef struct {
    float *scale;
    int32_t *zp;
    int n;
} point_qp;

static void free_points(point_qp *p, int n) {
    for (int i = 0; p && i < n; i++) free(p[i].scale), free(p[i].zp);
    free(p);
}

static qat_status gather_points(qat_qmodel *q, point_qp **out) {
    point_qp *p = calloc((size_t)q->nfq, sizeof *p);
    if (!p) return qat_fail(QAT_ERR_NOMEM, "convert: out of memory");
    for (int i = 0; i < q->nfq; i++) {
        qat_fq *fq = &q->fq[i];
        int n = fq->nchannels;
        p[i].n = n;
        p[i].scale = malloc((size_t)n * sizeof(float));
        p[i].zp = malloc((size_t)n * sizeof(int32_t));
        if (!p[i].scale || !p[i].zp) {
            free_points(p, q->nfq);
            return qat_fail(QAT_ERR_NOMEM, "convert: out of memory");
        }
        if (q->lsq_ready) {
            qat_lsq_qparams(&q->lsq[i], p[i].scale, p[i].zp);
        } else {
            qat_status st = fq->qparams_dirty ? qat_fq_compute_qparams(fq) : QAT_OK;
            if (st) {
                free_points(p, q->nfq);
                return st;
            }
            memcpy(p[i].scale, fq->scale, (size_t)n * sizeof(float));
            memcpy(p[i].zp, fq->zero_point, (size_t)n * sizeof(int32_t));
        }
        for (int c = 0; c < n; c++)
            if (!(p[i].scale[c] > 0) || !isfinite(p[i].scale[c])) {
                free_points(p, q->nfq);
                return qat_fail(QAT_ERR_NUMERIC, "convert: %s has scale %g", q->fq_names[i], p[i].scale[c]);
            }
    }
    *out = p;
    return QAT_OK;
}

/* Output qparams and clamp of a layer whose output point is op, with activation act. */
static void set_output(qat_q8_layer *Y, const qat_qmodel *q, const point_qp *op, qat_act act) {
    int32_t qmin, qmax;
    qat_qscheme_range(&q->cfg.act, &qmin, &qmax);
    Y->sy = op->scale[0];
    Y->zy = op->zp[0];
    Y->lo = qmin, Y->hi = qmax;
    float inv = 1.0f / Y->sy; /* as qat_fq_consts_fill computes it */
    if (act == QAT_ACT_RELU || act == QAT_ACT_RELU6) Y->lo = qat_quantize(0.0f, inv, Y->zy, qmin, qmax);
    if (act == QAT_ACT_RELU6) Y->hi = qat_quantize(6.0f, inv, Y->zy, qmin, qmax);
    Y->act = act == QAT_ACT_RELU ? QAT_Q8_ACT_RELU : act == QAT_ACT_RELU6 ? QAT_Q8_ACT_RELU6 : QAT_Q8_ACT_NONE;
}

/* Weight codes of a conv (BN folded with s[c]; s == NULL: linear, no folding), its weight scales
 * and, for convs, the int32 bias and multipliers. */
static qat_status quantize_weights(qat_q8_layer *Y, const qat_qscheme *ws, const qat_layer *L,
                                   const point_qp *wp, const float *s) {
    int C = Y->out_c;
    int64_t R = L->weight.numel / C;
    int32_t qmin, qmax;
    qat_qscheme_range(ws, &qmin, &qmax);
    Y->weight = malloc((size_t)L->weight.numel);
    Y->wscale = malloc((size_t)C * sizeof(float));
    Y->mult = malloc((size_t)C * sizeof(float));
    if (!Y->weight || !Y->wscale || !Y->mult) return qat_fail(QAT_ERR_NOMEM, "convert: out of memory");
    Y->wbits = ws->bits; /* the qconfig's, or the spec's wbits= for this stage */
    for (int c = 0; c < C; c++) {
        int pc = wp->n > 1 ? c : 0;
        float sw = wp->scale[pc], inv = 1.0f / sw;
        if (wp->zp[pc] != 0)
            return qat_fail(QAT_ERR_ARG, "convert: layer %s: weight zero point %d (s8 kernels need 0)",
                            L->name, (int)wp->zp[pc]);
        Y->wscale[c] = sw;
        const float *w = L->weight.data + c * R;
        for (int64_t k = 0; k < R; k++) {
            float v = s ? rounded(w[k] * s[c]) : w[k];
            Y->weight[c * R + k] = (int8_t)qat_quantize(v, inv, 0, qmin, qmax);
        }
        Y->mult[c] = s ? qat_requant_mult(Y->sx, sw, Y->sy) : rounded(Y->sx * sw);
    }
    return QAT_OK;
}

static qat_status build_conv(qat_q8_layer *Y, const qat_qmodel *q, const qat_layer *L,
                             const qat_qscheme *ws, const point_qp *wp, const point_qp *op) {
    int C = L->out_c;
    Y->kind = QAT_Q8_CONV;
    Y->k = L->k, Y->stride = L->stride, Y->pad = L->pad, Y->groups = L->groups;
    set_output(Y, q, op, L->act);
    /* BN folded as the eval forward folds it (qmodel.c conv_bn, running statistics):
     * w' = w * (gamma * istd), b = beta + gamma * (-mean * istd), each product rounded */
    float *s = malloc((size_t)C * sizeof(float));
    Y->bias = malloc((size_t)C * sizeof(int32_t));
    if (!s || !Y->bias) {
        free(s);
        return qat_fail(QAT_ERR_NOMEM, "convert: out of memory");
    }
    for (int c = 0; c < C; c++) s[c] = rounded(L->gamma.data[c] * (1.0f / sqrtf(L->bn.running_var[c] + L->bn.eps)));
    qat_status st = quantize_weights(Y, ws, L, wp, s);
    for (int c = 0; !st && c < C; c++) {
        float istd = 1.0f / sqrtf(L->bn.running_var[c] + L->bn.eps);
        float nb = rounded(-L->bn.running_mean[c] * istd);
        float b = L->beta.data[c] + rounded(L->gamma.data[c] * nb);
        if (!isfinite(b)) st = qat_fail(QAT_ERR_NUMERIC, "convert: layer %s: folded bias is not finite", L->name);
        Y->bias[c] = qat_bias_quantize(b, Y->sx, Y->wscale[c]);
    }
    free(s);
    return st;
}

static qat_status build_linear(qat_q8_layer *Y, const qat_qscheme *ws, const qat_layer *L,
                               const point_qp *wp) {
    Y->kind = QAT_Q8_LINEAR;
    Y->in_h = Y->in_w = Y->out_h = Y->out_w = 1;
    Y->in_c = L->weight.shape[1];
    Y->out_c = L->weight.shape[0];
    Y->fbias = malloc((size_t)Y->out_c * sizeof(float));
    if (!Y->fbias) return qat_fail(QAT_ERR_NOMEM, "convert: out of memory");
    memcpy(Y->fbias, L->bias.data, (size_t)Y->out_c * sizeof(float));
    return quantize_weights(Y, ws, L, wp, NULL);
}

qat_status qat_convert_qmodel(qat_qmodel *q, const float mean[4], const float std[4],
                          qat_q8_model **out) {
    *out = NULL;
    char why[256];
    if (!qat_convertible(q, why, sizeof why)) return qat_fail(QAT_ERR_ARG, "convert: %s", why);
    const qat_model *M = q->model;
    point_qp *pts = NULL;
    qat_status st = gather_points(q, &pts);
    if (st) return st;
    qat_q8_model *m = calloc(1, sizeof *m);
    int *val = malloc((size_t)M->nlayers * sizeof(int)); /* model layer -> value index */
    if (m) m->layers = calloc((size_t)M->nlayers, sizeof *m->layers);
    if (!m || !val || !m->layers) {
        free(val);
        free_points(pts, q->nfq);
        if (m) free(m->layers);
        free(m);
        return qat_fail(QAT_ERR_NOMEM, "convert: out of memory");
    }
    m->in_h = M->in_h, m->in_w = M->in_w, m->in_c = M->in_c, m->nclasses = M->nclasses;
    m->in_scale = pts[0].scale[0];
    m->in_zp = pts[0].zp[0];
    qat_qscheme_range(&q->cfg.act, &m->in_qmin, &m->in_qmax);
    for (int i = 0; i < 4; i++) m->mean[i] = mean ? mean[i] : 0.0f, m->std[i] = std ? std[i] : 1.0f;
    snprintf(m->qconfig, sizeof m->qconfig, "%s", q->cfg.name);
    snprintf(m->arch, sizeof m->arch, "%s", qat_spec_name(M->spec));
    for (int li = 0; li < M->nlayers && !st; li++) {
        const qat_layer *L = &M->layers[li];
        int in_v = L->input < 0 ? -1 : val[L->input];
        if (L->kind == QAT_LAYER_DROPOUT) { /* identity at inference */
            val[li] = in_v;
            continue;
        }
        int yi = m->nlayers++;
        qat_q8_layer *Y = &m->layers[yi];
        val[li] = yi;
        snprintf(Y->name, sizeof Y->name, "%s", L->name);
        Y->input = in_v, Y->skip = -1;
        Y->in_h = L->in_h, Y->in_w = L->in_w, Y->in_c = L->in_c;
        Y->out_h = L->out_h, Y->out_w = L->out_w, Y->out_c = L->out_c;
        const qat_q8_layer *P = in_v < 0 ? NULL : &m->layers[in_v];
        Y->sx = P ? P->sy : m->in_scale;
        Y->zx = P ? P->zy : m->in_zp;
        const point_qp *op = q->out_fq[li] >= 0 ? &pts[q->out_fq[li]] : NULL;
        const point_qp *wp = q->weight_fq[li] >= 0 ? &pts[q->weight_fq[li]] : NULL;
        switch (L->kind) {
        case QAT_LAYER_CONV_BN_ACT: st = build_conv(Y, q, L, &q->fq[q->weight_fq[li]].scheme, wp, op); break;
        case QAT_LAYER_ADD: {
            int sk = L->skip < 0 ? -1 : val[L->skip];
            const qat_q8_layer *S = sk < 0 ? NULL : &m->layers[sk];
            Y->kind = QAT_Q8_ADD;
            Y->skip = sk;
            Y->sb = S ? S->sy : m->in_scale;
            Y->zb = S ? S->zy : m->in_zp;
            set_output(Y, q, op, QAT_ACT_NONE);
            break;
        }
        case QAT_LAYER_GLOBAL_AVGPOOL:
            Y->kind = QAT_Q8_AVGPOOL;
            Y->out_h = Y->out_w = 1;
            set_output(Y, q, op, QAT_ACT_NONE);
            Y->pool_mult = qat_i8_avgpool_mult(Y->sx, Y->sy, L->in_h * L->in_w);
            break;
        case QAT_LAYER_LINEAR: st = build_linear(Y, &q->fq[q->weight_fq[li]].scheme, L, wp); break;
        default: st = qat_fail(QAT_ERR_ARG, "convert: layer %s: no INT8 form", L->name);
        }
    }
    free(val);
    free_points(pts, q->nfq);
    if (!st) st = qat_q8_validate(m, "convert");
    if (st) {
        qat_q8_free(m);
        return st;
    }
    *out = m;
    return QAT_OK;
}
