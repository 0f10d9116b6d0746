/* Convert: a PTQ/QAT model (models/qmodel.h) to its INT8 model (runtime/q8.h); see export.h.
 * This file reads the qparams of every point and wires the INT8 layers together (operands,
 * shapes, input qparams); each layer kind writes the rest of its own INT8 layer
 * (qat_layer_desc.convert: BN folding, weight codes, biases, multipliers, clamps). */
#include "export.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    for (int i = 0; i < q->npoints; i++) {
        const qat_qpoint *p = &q->points[i];
        if (p->keep_float) continue; /* a float layer's: no qparams needed */
        if (!qat_qpoint_on(p, q->lsq_ready)) {
            snprintf(why, cap, "fake-quant is off at %s: the model is not quantized there", p->name);
            return 0;
        }
        if (!q->lsq_ready && p->fq.obs.seen == 0) {
            snprintf(why, cap, "observer %s saw no data (calibrate or train first)", p->name);
            return 0;
        }
    }
    for (int i = 0; i < q->model->nlayers; i++) {
        const qat_layer *L = &q->model->layers[i];
        const qat_layer_desc *d = qat_layer_kinds[L->kind];
        if (qat_qmodel_layer_is_float(q, i)) {
            if (!d->convert_float) {
                snprintf(why, cap, "layer %s: a %s layer has no float form", L->name, d->name);
                return 0;
            }
            continue; /* runs in float: whatever has no INT8 kernel (hardswish) is fine */
        }
        if (d->int8_check && !d->int8_check(L, why, cap)) return 0;
    }
    return 1;
}

/* ---- the qparams of every point, as the eval forward uses them ------------------------------- */

static void free_points(qat_qparams *p, int n) {
    for (int i = 0; p && i < n; i++) free(p[i].scale), free(p[i].zp);
    free(p);
}

static qat_status gather_points(qat_qmodel *q, qat_qparams **out) {
    qat_qparams *p = calloc((size_t)q->npoints, sizeof *p);
    if (!p) return qat_fail(QAT_ERR_NOMEM, "convert: out of memory");
    for (int i = 0; i < q->npoints; i++) {
        qat_qpoint *pt = &q->points[i];
        int n = pt->fq.nchannels;
        p[i].n = n;
        p[i].scale = malloc((size_t)n * sizeof(float));
        p[i].zp = malloc((size_t)n * sizeof(int32_t));
        qat_status st = !p[i].scale || !p[i].zp ? qat_fail(QAT_ERR_NOMEM, "convert: out of memory")
                                                : qat_qpoint_qparams(pt, q->lsq_ready, p[i].scale, p[i].zp);
        if (st) {
            free_points(p, q->npoints);
            return st;
        }
        for (int c = 0; c < n; c++)
            if (!(p[i].scale[c] > 0) || !isfinite(p[i].scale[c])) {
                free_points(p, q->npoints);
                return qat_fail(QAT_ERR_NUMERIC, "convert: %s has scale %g", pt->name, p[i].scale[c]);
            }
    }
    *out = p;
    return QAT_OK;
}

/* ---- the INT8 model --------------------------------------------------------------------------- */

/* The generic part of layer L's INT8 layer Y: name, operands (val maps model layers to INT8
 * values; -1 the quantized input), shapes and the operands' qparams (their producers'). */
static void wire(qat_q8_model *m, qat_q8_layer *Y, const qat_layer *L, const int *val) {
    int a = L->in[0] < 0 ? -1 : val[L->in[0]];
    int b = L->nin > 1 ? (L->in[1] < 0 ? -1 : val[L->in[1]]) : -1;
    snprintf(Y->name, sizeof Y->name, "%s", L->name);
    Y->input = a, Y->skip = b;
    Y->in_h = L->in_h, Y->in_w = L->in_w, Y->in_c = L->in_c;
    Y->out_h = L->out_h, Y->out_w = L->out_w, Y->out_c = L->out_c;
    const qat_q8_layer *P = a < 0 ? NULL : &m->layers[a];
    Y->sx = P ? P->sy : m->in_scale;
    Y->zx = P ? P->zy : m->in_zp;
    if (L->nin > 1) {
        const qat_q8_layer *S = b < 0 ? NULL : &m->layers[b];
        Y->sb = S ? S->sy : m->in_scale;
        Y->zb = S ? S->zy : m->in_zp;
    }
}

/* The next INT8 layer: name (plus a suffix for the edges of a float layer), operand, shape. */
static qat_q8_layer *append(qat_q8_model *m, const char *name, const char *suffix, int input,
                            int h, int w, int c) {
    qat_q8_layer *Y = &m->layers[m->nlayers++];
    snprintf(Y->name, sizeof Y->name, "%.*s%s", (int)(sizeof Y->name - 1 - strlen(suffix)), name, suffix);
    Y->input = input, Y->skip = -1;
    Y->in_h = Y->out_h = h, Y->in_w = Y->out_w = w, Y->in_c = Y->out_c = c;
    return Y;
}

/* A layer left in float: DEQUANT its input when that is u8 codes, the float layer, and QUANT
 * its output when its output point is quantized (a reader of it runs in INT8). val[li] becomes
 * the value holding the layer's output. */
static qat_status convert_float_layer(const qat_qmodel *q, qat_q8_model *m, int li, int *val,
                                      const qat_qparams *pts, int32_t amin, int32_t amax) {
    const qat_layer *L = &q->model->layers[li];
    int a = L->in[0] < 0 ? -1 : val[L->in[0]];
    if (!qat_q8_value_is_float(m, a)) {
        const qat_q8_layer *P = a < 0 ? NULL : &m->layers[a];
        qat_q8_layer *D = append(m, L->name, ".dequant", a, L->in_h, L->in_w, L->in_c);
        D->kind = QAT_Q8_DEQUANT;
        D->sx = P ? P->sy : m->in_scale;
        D->zx = P ? P->zy : m->in_zp;
        a = m->nlayers - 1;
    }
    qat_q8_layer *Y = append(m, L->name, "", a, L->in_h, L->in_w, L->in_c);
    Y->out_h = L->out_h, Y->out_w = L->out_w, Y->out_c = L->out_c;
    qat_status st = qat_layer_kinds[L->kind]->convert_float(L, Y);
    val[li] = m->nlayers - 1;
    const int out = q->layers[li].out;
    if (st || out < 0 || q->points[out].keep_float) return st;
    qat_q8_layer *Qz = append(m, L->name, ".quant", val[li], L->out_h, L->out_w, L->out_c);
    Qz->kind = QAT_Q8_QUANT;
    Qz->sy = pts[out].scale[0], Qz->zy = pts[out].zp[0];
    Qz->lo = amin, Qz->hi = amax; /* the activation ran in float: the point's full range */
    val[li] = m->nlayers - 1;
    return QAT_OK;
}

qat_status qat_convert_qmodel(qat_qmodel *q, const float mean[4], const float std[4],
                              qat_q8_model **out) {
    *out = NULL;
    char why[256];
    if (!qat_convertible(q, why, sizeof why)) return qat_fail(QAT_ERR_ARG, "convert: %s", why);
    const qat_model *M = q->model;
    qat_qparams *pts = NULL;
    qat_status st = gather_points(q, &pts);
    if (st) return st;
    qat_q8_model *m = calloc(1, sizeof *m);
    int *val = malloc((size_t)M->nlayers * sizeof(int)); /* model layer -> value index */
    if (m) m->layers = calloc(3 * (size_t)M->nlayers, sizeof *m->layers); /* float layers: + 2 edges */
    if (!m || !val || !m->layers) {
        free(val);
        free_points(pts, q->npoints);
        if (m) free(m->layers);
        free(m);
        return qat_fail(QAT_ERR_NOMEM, "convert: out of memory");
    }
    m->in_h = M->in_h, m->in_w = M->in_w, m->in_c = M->in_c, m->nclasses = M->nclasses;
    m->in_scale = pts[0].scale[0];
    m->in_zp = pts[0].zp[0];
    int32_t amin, amax;
    qat_qscheme_range(&q->cfg.act, &amin, &amax);
    m->in_qmin = amin, m->in_qmax = amax;
    for (int i = 0; i < 4; i++) m->mean[i] = mean ? mean[i] : 0.0f, m->std[i] = std ? std[i] : 1.0f;
    snprintf(m->qconfig, sizeof m->qconfig, "%s", q->cfg.name);
    snprintf(m->arch, sizeof m->arch, "%s", qat_spec_name(M->spec));
    for (int li = 0; li < M->nlayers && !st; li++) {
        const qat_layer *L = &M->layers[li];
        const qat_layer_desc *d = qat_layer_kinds[L->kind];
        const qat_qlayer *ql = &q->layers[li];
        if (!d->convert) { /* identity at inference (dropout) */
            val[li] = L->in[0] < 0 ? -1 : val[L->in[0]];
            continue;
        }
        if (qat_qmodel_layer_is_float(q, li)) {
            st = convert_float_layer(q, m, li, val, pts, amin, amax);
            continue;
        }
        int yi = m->nlayers++;
        qat_q8_layer *Y = &m->layers[yi];
        val[li] = yi;
        wire(m, Y, L, val);
        qat_qconvert c = {ql->weight >= 0 ? &pts[ql->weight] : NULL,
                          ql->out >= 0 ? &pts[ql->out] : NULL,
                          ql->weight >= 0 ? &q->points[ql->weight].fq.scheme : NULL, amin, amax};
        st = d->convert(L, &c, Y);
    }
    free(val);
    free_points(pts, q->npoints);
    if (!st) st = qat_q8_validate(m, "convert");
    if (st) {
        qat_q8_free(m);
        return st;
    }
    *out = m;
    return QAT_OK;
}
