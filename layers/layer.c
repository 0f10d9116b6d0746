/* What the layer kinds share (layers/layer.h): storage declarations, the fake-quant of a value
 * at a point, per-channel constants, activations, and the pieces of an INT8 layer that several
 * kinds write the same way. */
#include "layer.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const qat_conv_role_names[QAT_CONV_ROLE_COUNT] = {
    "none", "stem", "expand", "dw", "project", "pw", "head",
};
_Static_assert(sizeof qat_conv_role_names / sizeof qat_conv_role_names[0] ==
                   QAT_CONV_ROLE_COUNT, "conv role names");

const char *qat_layer_op_name(const qat_layer *L) {
    return L->role != QAT_CONV_NONE ? qat_conv_role_names[L->role] : qat_layer_kinds[L->kind]->name;
}

/* ---- storage ------------------------------------------------------------------------------------ */

void qat_store_param(qat_layer_store *s, qat_tensor *t, const char *suffix, int ndim,
                     const int *shape, int decay) {
    const int64_t numel = qat_shape_numel(ndim, shape);
    if (s->params) {
        qat_param_info *pi = &s->param_info[s->nsegs];
        qat_param_seg *sg = &s->segs[s->nsegs];
        snprintf(pi->name, sizeof pi->name, "%s%s", s->prefix, suffix);
        qat_tensor_param(t, ndim, shape, s->params + s->nparams, s->grads + s->nparams, pi->name);
        pi->tensor = t;
        pi->layer = s->layer;
        sg->offset = s->nparams;
        sg->numel = numel;
        sg->decay = decay;
    }
    s->nparams += numel;
    s->nsegs++;
}

float *qat_store_buffer(qat_layer_store *s, const char *suffix, int64_t n) {
    float *p = NULL;
    if (s->buffers) {
        qat_buffer_info *bi = &s->buffer_info[s->nbuffer_segs];
        snprintf(bi->name, sizeof bi->name, "%s%s", s->prefix, suffix);
        bi->offset = s->nbuffers;
        bi->numel = n;
        bi->layer = s->layer;
        p = s->buffers + bi->offset;
    }
    s->nbuffers += n;
    s->nbuffer_segs++;
    return p;
}

/* ---- the fake-quant graph ------------------------------------------------------------------------ */

qat_tensor *qat_qpoint_apply(qat_ctx *ctx, qat_tensor *x, qat_qpoint *p, const qat_qforward *f) {
    if (f->lsq) return qat_lsq_quantize(ctx, x, &p->lsq);
    qat_fq *fq = &p->fq;
    int saved = fq->observer_enabled;
    fq->observer_enabled = saved && f->observe && (p->weight || !f->act_paused);
    if (fq->observer_enabled && !fq->obs.frozen && p->weight) qat_observer_reset(&fq->obs);
    qat_tensor *y = qat_fakequant(ctx, x, fq);
    fq->observer_enabled = saved;
    return y;
}

const float *qat_qpoint_scales(qat_ctx *ctx, qat_qpoint *p, int lsq) {
    if (!lsq) return p->fq.scale;
    int C = p->lsq.nchannels;
    float *sc = qat_arena_floats(&ctx->arena, C);
    int32_t *zp = qat_arena_alloc(&ctx->arena, (size_t)C * sizeof(int32_t));
    qat_lsq_qparams(&p->lsq, sc, zp);
    return sc;
}

qat_tensor *qat_bias_fq(qat_ctx *ctx, const qat_qforward *f, qat_tensor *b) {
    qat_qpoint *xp = f->in;
    if (!qat_qpoint_on(xp, f->lsq) || xp->keep_float) return b;
    const float *sx = qat_qpoint_scales(ctx, xp, f->lsq), *sw = qat_qpoint_scales(ctx, f->weight, f->lsq);
    int C = (int)b->numel, pc = f->weight->fq.nchannels > 1;
    float *d = qat_arena_floats(&ctx->arena, C);
    for (int c = 0; c < C; c++) {
        double step = (double)sx[0] * (double)sw[pc ? c : 0];
        float bq = (float)((double)qat_bias_quantize(b->data[c], sx[0], sw[pc ? c : 0]) * step);
        d[c] = isfinite(bq) ? bq - b->data[c] : 0.0f;
    }
    int cs[1] = {C};
    return qat_add(ctx, b, qat_channel_const(ctx, 1, cs, 0, d, C));
}

qat_tensor *qat_channel_const(qat_ctx *ctx, int ndim, const int *shape, int axis, const float *v,
                              int C) {
    qat_tensor *t = qat_tensor_new(ctx, ndim, shape);
    t->requires_grad = 0;
    if (axis == 0) {
        int64_t inner = t->numel / C;
        for (int c = 0; c < C; c++)
            for (int64_t k = 0; k < inner; k++) t->data[(int64_t)c * inner + k] = v[c];
    } else {
        for (int64_t k = 0; k < t->numel; k += C) memcpy(t->data + k, v, (size_t)C * sizeof(float));
    }
    return t;
}

qat_tensor *qat_activation(qat_ctx *ctx, qat_tensor *x, qat_act act) {
    switch (act) {
    case QAT_ACT_RELU: return qat_relu(ctx, x);
    case QAT_ACT_RELU6: return qat_relu6(ctx, x);
    case QAT_ACT_HARDSWISH: return qat_hardswish(ctx, x);
    case QAT_ACT_HARDSIGMOID: return qat_hardsigmoid(ctx, x);
    case QAT_ACT_SIGMOID: return qat_sigmoid(ctx, x);
    default: return x;
    }
}

/* ---- the INT8 form ------------------------------------------------------------------------------- */

void qat_convert_output(qat_q8_layer *Y, const qat_qconvert *c, qat_act act) {
    const int32_t qmin = c->act_qmin, qmax = c->act_qmax;
    Y->sy = c->out->scale[0];
    Y->zy = c->out->zp[0];
    Y->lo = qmin, Y->hi = qmax;
    float inv = 1.0f / Y->sy; /* as qat_fq_consts_fill computes it */
    if (act == QAT_ACT_RELU || act == QAT_ACT_RELU6) Y->lo = qat_quantize(0.0f, inv, Y->zy, qmin, qmax);
    if (act == QAT_ACT_RELU6) Y->hi = qat_quantize(6.0f, inv, Y->zy, qmin, qmax);
    Y->act = act == QAT_ACT_RELU ? QAT_Q8_ACT_RELU : act == QAT_ACT_RELU6 ? QAT_Q8_ACT_RELU6 : QAT_Q8_ACT_NONE;
}

qat_status qat_convert_weights(qat_q8_layer *Y, const qat_qconvert *c, const char *name,
                               const qat_tensor *wt, const float *s) {
    const qat_qparams *wp = c->w;
    int C = Y->out_c;
    int64_t R = wt->numel / C;
    int32_t qmin, qmax;
    qat_qscheme_range(c->wscheme, &qmin, &qmax);
    Y->weight = malloc((size_t)wt->numel);
    Y->wscale = malloc((size_t)C * sizeof(float));
    Y->mult = malloc((size_t)C * sizeof(float));
    if (!Y->weight || !Y->wscale || !Y->mult) return qat_fail(QAT_ERR_NOMEM, "convert: out of memory");
    Y->wbits = c->wscheme->bits; /* the qconfig's, or the spec's wbits= for this stage */
    for (int ch = 0; ch < C; ch++) {
        int pc = wp->n > 1 ? ch : 0;
        float sw = wp->scale[pc], inv = 1.0f / sw;
        if (wp->zp[pc] != 0)
            return qat_fail(QAT_ERR_ARG, "convert: layer %s: weight zero point %d (s8 kernels need 0)",
                            name, (int)wp->zp[pc]);
        Y->wscale[ch] = sw;
        const float *w = wt->data + ch * R;
        for (int64_t k = 0; k < R; k++) {
            float v = s ? qat_rounded(w[k] * s[ch]) : w[k];
            Y->weight[ch * R + k] = (int8_t)qat_quantize(v, inv, 0, qmin, qmax);
        }
        Y->mult[ch] = s ? qat_requant_mult(Y->sx, sw, Y->sy) : qat_rounded(Y->sx * sw);
    }
    return QAT_OK;
}

qat_q8_act qat_q8_act_of(qat_act act) {
    switch (act) {
    case QAT_ACT_RELU: return QAT_Q8_ACT_RELU;
    case QAT_ACT_RELU6: return QAT_Q8_ACT_RELU6;
    case QAT_ACT_HARDSWISH: return QAT_Q8_ACT_HARDSWISH;
    case QAT_ACT_HARDSIGMOID: return QAT_Q8_ACT_HARDSIGMOID;
    case QAT_ACT_SIGMOID: return QAT_Q8_ACT_SIGMOID;
    default: return QAT_Q8_ACT_NONE;
    }
}

float *qat_floats_dup(const float *v, int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (p && n > 0) memcpy(p, v, (size_t)n * sizeof(float));
    return p;
}
