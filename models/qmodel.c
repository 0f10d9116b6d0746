/* The QAT / PTQ model: fake-quant around a qat_model's layer records and simulated BN folding.
 * docs/quantization.md ("QAT model") states what is computed and why. */
#include "qmodel.h"
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int add_point(qat_qmodel *q, const char *name, const char *suffix) {
    int i = q->nfq++;
    snprintf(q->fq_names[i], QAT_QPOINT_NAME_MAX, "%s%s", name, suffix);
    return i;
}

/* One scale per channel for every point, plus an offset per activation point (LSQ+). */
static qat_status lsq_alloc(qat_qmodel *q, const int *wch) {
    int64_t n = 0;
    for (int i = 0; i < q->nfq; i++) n += q->fq[i].nchannels * (wch[i] > 0 ? 1 : 2);
    q->nlsq = n;
    q->lsq = calloc((size_t)q->nfq, sizeof *q->lsq);
    q->lsq_params = calloc((size_t)n, sizeof(float));
    q->lsq_grads = calloc((size_t)n, sizeof(float));
    q->lsq_segs = calloc(2 * (size_t)q->nfq, sizeof *q->lsq_segs);
    if (!q->lsq || !q->lsq_params || !q->lsq_grads || !q->lsq_segs)
        return qat_fail(QAT_ERR_NOMEM, "qmodel: out of memory");
    int64_t off = 0;
    for (int i = 0; i < q->nfq; i++) {
        int C = q->fq[i].nchannels, act = wch[i] == 0;
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
        qat_status st = qat_lsq_init(&q->lsq[i], &q->fq[i].scheme, act, C, sc, sg, of, og, act, q->fq_names[i]);
        if (st) return st;
    }
    return QAT_OK;
}

qat_status qat_qmodel_lsq_start(qat_qmodel *q) {
    if (!q->cfg.lsq) return qat_fail(QAT_ERR_ARG, "qmodel: qconfig %s has no learned quantizers", q->cfg.name);
    for (int i = 0; i < q->nfq; i++) {
        qat_fq *fq = &q->fq[i];
        if (fq->obs.seen == 0)
            return qat_fail(QAT_ERR_ARG, "qmodel: observer %s saw no data before LSQ init", fq->name);
        qat_status st = qat_fq_compute_qparams(fq);
        if (!st) st = qat_lsq_init_from_qparams(&q->lsq[i], fq->scale, fq->zero_point);
        if (st) return st;
        q->lsq[i].fake_quant_enabled = fq->fake_quant_enabled;
    }
    q->lsq_ready = 1;
    return QAT_OK;
}

void qat_qmodel_zero_grad(qat_qmodel *q) {
    if (q->lsq_grads) memset(q->lsq_grads, 0, (size_t)q->nlsq * sizeof(float));
}

void qat_qmodel_lsq_clamp(qat_qmodel *q) {
    for (int i = 0; q->lsq && i < q->nfq; i++) qat_lsq_clamp_scale(&q->lsq[i]);
}

qat_status qat_qmodel_create(qat_model *m, const qat_qconfig *cfg, qat_qmodel_mode mode,
                             qat_observer_kind act_obs, qat_qmodel **out) {
    *out = NULL;
    qat_status st;
    if ((st = qat_qscheme_check(&cfg->act)) || (st = qat_qscheme_check(&cfg->weight))) return st;
    if (mode == QAT_QMODEL_PTQ && act_obs != QAT_OBS_MINMAX && act_obs != QAT_OBS_HISTOGRAM)
        return qat_fail(QAT_ERR_ARG, "qmodel: PTQ observer must be minmax or histogram");
    qat_qmodel *q = calloc(1, sizeof *q);
    int cap = 1 + 2 * m->nlayers;
    if (q) {
        q->fq = calloc((size_t)cap, sizeof *q->fq);
        q->fq_names = calloc((size_t)cap, sizeof *q->fq_names);
        q->weight_fq = malloc((size_t)m->nlayers * sizeof(int));
        q->out_fq = malloc((size_t)m->nlayers * sizeof(int));
        q->keep_float = calloc((size_t)cap, 1);
    }
    if (!q || !q->fq || !q->fq_names || !q->weight_fq || !q->out_fq || !q->keep_float) {
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
    /* Name the points first (fq->name points into fq_names), then initialise them. */
    int *wch = malloc((size_t)cap * sizeof(int)); /* channels of each point, 0 = activation */
    int *wbits = calloc((size_t)cap, sizeof(int)); /* per point: the spec's wbits override, 0 none */
    if (!wch || !wbits) {
        free(wch), free(wbits);
        qat_qmodel_free(q);
        return qat_fail(QAT_ERR_NOMEM, "qmodel: out of memory");
    }
    wch[add_point(q, "input", "")] = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const qat_layer *L = &m->layers[i];
        q->weight_fq[i] = q->out_fq[i] = -1;
        switch (L->kind) {
        case QAT_LAYER_CONV_BN_ACT:
        case QAT_LAYER_LINEAR:
            q->weight_fq[i] = add_point(q, L->name, ".weight_fq");
            wch[q->weight_fq[i]] = L->kind == QAT_LAYER_LINEAR ? L->weight.shape[0] : L->out_c;
            if (L->kind == QAT_LAYER_CONV_BN_ACT) wch[q->out_fq[i] = add_point(q, L->name, ".out_fq")] = 0;
            if (L->stage >= 0) { /* per-stage overrides of the spec (wbits=, quant=) */
                const qat_spec_stage *st = &m->spec->stages[L->stage];
                wbits[q->weight_fq[i]] = st->wbits;
                if (!st->quant) q->keep_float[q->weight_fq[i]] = q->keep_float[q->out_fq[i]] = 1;
            }
            break;
        case QAT_LAYER_ADD:
        case QAT_LAYER_GLOBAL_AVGPOOL: wch[q->out_fq[i] = add_point(q, L->name, ".out_fq")] = 0; break;
        default: break;
        }
    }
    for (int i = 0; i < q->nfq; i++) {
        int w = wch[i] > 0;
        qat_qscheme s = w ? cfg->weight : cfg->act;
        if (wbits[i]) s.bits = wbits[i];
        int nch = w && s.per_channel ? wch[i] : 1;
        if ((st = qat_fq_init(&q->fq[i], &s, w ? cfg->weight_obs : q->act_obs, nch, q->fq_names[i]))) {
            q->nfq = i; /* free only what was initialised */
            free(wch), free(wbits);
            qat_qmodel_free(q);
            return st;
        }
    }
    if (cfg->lsq && (st = lsq_alloc(q, wch))) {
        free(wch), free(wbits);
        qat_qmodel_free(q);
        return st;
    }
    free(wch), free(wbits);
    for (int i = 0; i < q->nfq; i++)
        if (q->keep_float[i]) q->fq[i].fake_quant_enabled = 0;
    *out = q;
    return QAT_OK;
}

void qat_qmodel_free(qat_qmodel *q) {
    if (!q) return;
    for (int i = 0; q->fq && i < q->nfq; i++) qat_fq_free(&q->fq[i]);
    free(q->fq);
    free(q->fq_names);
    free(q->weight_fq);
    free(q->out_fq);
    free(q->keep_float);
    free(q->lsq);
    free(q->lsq_params);
    free(q->lsq_grads);
    free(q->lsq_segs);
    free(q);
}

static int is_weight(const qat_qmodel *q, int i) {
    for (int l = 0; l < q->model->nlayers; l++)
        if (q->weight_fq[l] == i) return 1;
    return 0;
}

void qat_qmodel_enable_fake_quant(qat_qmodel *q, int on) {
    for (int i = 0; i < q->nfq; i++) {
        int e = on != 0 && !q->keep_float[i];
        q->fq[i].fake_quant_enabled = e;
        if (q->lsq) q->lsq[i].fake_quant_enabled = e;
    }
}

qat_status qat_qmodel_freeze_observers(qat_qmodel *q) {
    for (int i = 0; i < q->nfq; i++) {
        qat_fq *fq = &q->fq[i];
        if (fq->obs.seen > 0 && fq->qparams_dirty) {
            qat_status st = qat_fq_compute_qparams(fq);
            if (st) return st;
        } else if (fq->obs.seen == 0) {
            return qat_fail(QAT_ERR_ARG, "qmodel: observer %s saw no data before freezing", fq->name);
        }
        fq->observer_enabled = 0;
        fq->obs.frozen = 1;
    }
    q->observers_frozen = 1;
    return QAT_OK;
}

void qat_qmodel_freeze_bn(qat_qmodel *q) {
    qat_model_set_bn_update(q->model, 0);
    q->bn_frozen = 1;
}

/* ---- forward --------------------------------------------------------------------------------- */

/* Fake-quant of x at point i. Weights are observed alone (the observer is reset first), so the
 * range is that of the weights now, which is what convert quantizes. */
static qat_tensor *fq_at(qat_qmodel *q, qat_ctx *ctx, qat_tensor *x, int i, int observe) {
    if (q->lsq_ready) return qat_lsq_quantize(ctx, x, &q->lsq[i]);
    qat_fq *fq = &q->fq[i];
    int saved = fq->observer_enabled, weight = is_weight(q, i);
    fq->observer_enabled = saved && observe && (weight || !q->act_observers_paused);
    if (fq->observer_enabled && !fq->obs.frozen && weight) qat_observer_reset(&fq->obs);
    qat_tensor *y = qat_fakequant(ctx, x, fq);
    fq->observer_enabled = saved;
    return y;
}

static qat_tensor *activation(qat_ctx *ctx, qat_tensor *x, qat_act act) {
    switch (act) {
    case QAT_ACT_RELU: return qat_relu(ctx, x);
    case QAT_ACT_RELU6: return qat_relu6(ctx, x);
    case QAT_ACT_HARDSWISH: return qat_hardswish(ctx, x);
    default: return x;
    }
}

/* A constant (no-grad) tensor of `shape` whose element at channel c (dim `axis`, 0 or last) is
 * v[c]. */
static qat_tensor *channel_const(qat_ctx *ctx, int ndim, const int *shape, int axis,
                                 const float *v, int C) {
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

/* gamma_c / std_c broadcast to the weight's shape, differentiable in gamma: gamma as a (C, 1)
 * matrix times a (R, 1) matrix of ones is the (C, R) broadcast (each element one exact product,
 * and linear's backward sums the gradient over R), then times the constant 1 / std. No op of
 * its own is needed (the op enum is closed). */
static qat_tensor *fold_scale(qat_ctx *ctx, qat_layer *L, const float *istd) {
    int C = L->out_c, R = (int)(L->weight.numel / C);
    int gs[2] = {C, 1}, os[2] = {R, 1};
    qat_tensor *ones = qat_tensor_new(ctx, 2, os);
    ones->requires_grad = 0;
    for (int r = 0; r < R; r++) ones->data[r] = 1.0f;
    qat_tensor *g = qat_linear(ctx, qat_reshape(ctx, &L->gamma, 2, gs), ones, NULL);
    g = qat_reshape(ctx, g, L->weight.ndim, L->weight.shape);
    return qat_mul(ctx, g, channel_const(ctx, L->weight.ndim, L->weight.shape, 0, istd, C));
}

/* The quantization point that holds the value layer `li` produces (-1: the model input, point
 * 0); dropout passes its input through. */
static int value_point(const qat_qmodel *q, int li) {
    while (li >= 0 && q->out_fq[li] < 0) li = q->model->layers[li].input;
    return li < 0 ? 0 : q->out_fq[li];
}

/* Point i's qparams as the forward uses them now (learned quantizers: their current values). */
static void point_qparams(qat_qmodel *q, qat_ctx *ctx, int i, const float **scale) {
    if (!q->lsq_ready) {
        *scale = q->fq[i].scale;
        return;
    }
    int C = q->lsq[i].nchannels;
    float *sc = qat_arena_floats(&ctx->arena, C);
    int32_t *zp = qat_arena_alloc(&ctx->arena, (size_t)C * sizeof(int32_t));
    qat_lsq_qparams(&q->lsq[i], sc, zp);
    *scale = sc;
}

/* The folded bias as the INT8 model stores it: round(b / (sx * sw_c)) in accumulator units
 * (qat_bias_quantize, what convert computes), times sx * sw_c; the gradient passes straight
 * through (b + a constant correction). Without this the fake-quant graph would differ from the
 * INT8 arithmetic by up to mult/2 output steps per layer. */
static qat_tensor *bias_fq(qat_qmodel *q, qat_ctx *ctx, const qat_layer *L, qat_tensor *b, int wi) {
    int xp = value_point(q, L->input);
    int on = q->lsq_ready ? q->lsq[xp].fake_quant_enabled : q->fq[xp].fake_quant_enabled;
    if (!on || q->keep_float[xp]) return b;
    const float *sx, *sw;
    point_qparams(q, ctx, xp, &sx);
    point_qparams(q, ctx, wi, &sw);
    int C = (int)b->numel, pc = q->fq[wi].nchannels > 1;
    float *d = qat_arena_floats(&ctx->arena, C);
    for (int c = 0; c < C; c++) {
        double step = (double)sx[0] * (double)sw[pc ? c : 0];
        float bq = (float)((double)qat_bias_quantize(b->data[c], sx[0], sw[pc ? c : 0]) * step);
        d[c] = isfinite(bq) ? bq - b->data[c] : 0.0f;
    }
    int cs[1] = {C};
    return qat_add(ctx, b, channel_const(ctx, 1, cs, 0, d, C));
}

/* Conv + BN with the weight fake-quantized after folding (Krishnamoorthi 2018; PyTorch's
 * ConvBn2d), s = gamma / std_running per output channel:
 *  - running statistics (eval, or BN frozen): the fully folded layer the INT8 model computes,
 *      y = conv(x, fq(w * s)) + (beta - gamma * mean / std)
 *    with s and the bias differentiable in gamma and beta;
 *  - batch statistics (training): PyTorch's _forward_approximate,
 *      y = BN(conv(x, fq(w * s)) / s)
 *    with s constant for autograd: w gets the straight-through gradient through the fold and
 *    gamma/beta BN's gradient (PyTorch also differentiates s; through the batch normalisation
 *    that path is nearly zero, see docs/quantization.md).
 * Without folding (fake-quant off): conv -> BN exactly as qat_model_forward. */
static qat_tensor *conv_bn(qat_qmodel *q, qat_ctx *ctx, qat_layer *L, qat_tensor *in, int wi,
                           int oi, int observe, int *quantized) {
    qat_fq *wfq = &q->fq[wi];
    int on = q->lsq_ready ? q->lsq[wi].fake_quant_enabled : wfq->fake_quant_enabled;
    int fold = q->fold_bn == 2 || (q->fold_bn == 1 && on);
    int running = !ctx->training || q->bn_frozen;
    qat_tensor *y;
    const float *in_scale = NULL; /* per-channel multiplier of the BN input (the / s) */
    int C = L->out_c;
    float *s = qat_arena_floats(&ctx->arena, C), *istd = qat_arena_floats(&ctx->arena, C);
    for (int c = 0; c < C; c++) {
        istd[c] = 1.0f / sqrtf(L->bn.running_var[c] + L->bn.eps);
        s[c] = L->gamma.data[c] * istd[c];
    }
    if (!fold) {
        if (q->fold_bn == 1 && observe && !q->lsq_ready) {
            /* Fake-quant is off, so the output is plain conv -> BN (bit for bit FP32), but the
             * observer must still see the folded weight: that is what gets quantized later. */
            qat_tensor *ws = channel_const(ctx, L->weight.ndim, L->weight.shape, 0, s, C);
            for (int64_t k = 0; k < ws->numel; k++) ws->data[k] *= L->weight.data[k];
            fq_at(q, ctx, ws, wi, 1);
        }
        qat_tensor *w = q->fold_bn == 0 ? fq_at(q, ctx, &L->weight, wi, observe) : &L->weight;
        y = qat_conv2d(ctx, in, w, NULL, L->stride, L->pad, L->groups);
    } else if (running) {
        qat_tensor *w = fq_at(q, ctx, qat_mul(ctx, &L->weight, fold_scale(ctx, L, istd)), wi, observe);
        float *nb = qat_arena_floats(&ctx->arena, C);
        for (int c = 0; c < C; c++) nb[c] = -L->bn.running_mean[c] * istd[c];
        int cs[1] = {C};
        qat_tensor *b = qat_add(ctx, &L->beta, qat_mul(ctx, &L->gamma, channel_const(ctx, 1, cs, 0, nb, C)));
        b = bias_fq(q, ctx, L, b, wi);
        y = qat_conv2d(ctx, in, w, b, L->stride, L->pad, L->groups);
        return activation(ctx, y, L->act);
    } else {
        float *inv = qat_arena_floats(&ctx->arena, C);
        for (int c = 0; c < C; c++) {
            /* gamma == 0 would divide by zero: keep the sign, floor the magnitude */
            float sc = fabsf(s[c]) < 1e-12f ? (s[c] < 0 ? -1e-12f : 1e-12f) : s[c];
            s[c] = sc, inv[c] = 1.0f / sc;
        }
        qat_tensor *ws = qat_mul(ctx, &L->weight, channel_const(ctx, L->weight.ndim, L->weight.shape, 0, s, C));
        qat_tensor *w = fq_at(q, ctx, ws, wi, observe);
        y = qat_conv2d(ctx, in, w, NULL, L->stride, L->pad, L->groups);
        in_scale = inv; /* the / s runs inside the BN op's passes (bitwise a separate qat_mul) */
    }
    /* ReLU and ReLU6 run inside the BN pass, as in qat_model_forward (bitwise the separate ops) */
    qat_bn_act bact = L->act == QAT_ACT_RELU ? QAT_BN_ACT_RELU
                    : L->act == QAT_ACT_RELU6 ? QAT_BN_ACT_RELU6 : QAT_BN_ACT_NONE;
    int training = ctx->training;
    if (q->bn_frozen) ctx->training = 0; /* BN normalises with (and keeps) running statistics */
    qat_fq *ofq = oi >= 0 ? &q->fq[oi] : NULL;
    if (ofq && !q->lsq_ready && ofq->fake_quant_enabled &&
        (bact != QAT_BN_ACT_NONE || L->act == QAT_ACT_NONE)) {
        /* the output fake-quant inside the BN node: what fq_at would do, one node less */
        int saved = ofq->observer_enabled;
        ofq->observer_enabled = saved && observe && !q->act_observers_paused;
        y = qat_batchnorm2d_act_fq(ctx, y, in_scale, &L->gamma, &L->beta, &L->bn, bact, ofq);
        ofq->observer_enabled = saved;
        *quantized = 1;
    } else {
        y = qat_batchnorm2d_scaled_act(ctx, y, in_scale, &L->gamma, &L->beta, &L->bn, bact);
    }
    ctx->training = training;
    return bact == QAT_BN_ACT_NONE && !*quantized ? activation(ctx, y, L->act) : y;
}

qat_tensor *qat_qmodel_forward(qat_qmodel *q, qat_ctx *ctx, qat_tensor *x) {
    qat_model *m = q->model;
    if (!x || x->ndim != 4 || x->shape[0] < 1 || x->shape[1] != m->in_h ||
        x->shape[2] != m->in_w || x->shape[3] != m->in_c)
        return qat_model_forward(m, ctx, x); /* sets the same shape error and returns NULL */
    int observe = !q->observers_frozen && (ctx->training || q->calibrating);
    qat_tensor **outs = qat_arena_alloc(&ctx->arena, (size_t)m->nlayers * sizeof *outs);
    qat_tensor *xin = fq_at(q, ctx, x, 0, observe);
    qat_tensor *y = xin;
    for (int i = 0; i < m->nlayers; i++) {
        qat_layer *L = &m->layers[i];
        qat_tensor *in = L->input < 0 ? xin : outs[L->input];
        int quantized = 0; /* conv_bn applied the output fake-quant itself */
        switch (L->kind) {
        case QAT_LAYER_CONV_BN_ACT:
            y = conv_bn(q, ctx, L, in, q->weight_fq[i], q->out_fq[i], observe, &quantized);
            break;
        case QAT_LAYER_ADD: y = qat_add(ctx, in, L->skip < 0 ? xin : outs[L->skip]); break;
        case QAT_LAYER_GLOBAL_AVGPOOL: y = qat_global_avgpool(ctx, in); break;
        case QAT_LAYER_DROPOUT: y = qat_dropout(ctx, in, L->dropout); break;
        case QAT_LAYER_LINEAR:
            y = qat_linear(ctx, in, fq_at(q, ctx, &L->weight, q->weight_fq[i], observe), &L->bias);
            break;
        default: QAT_ASSERT(0);
        }
        if (q->out_fq[i] >= 0 && !quantized) y = fq_at(q, ctx, y, q->out_fq[i], observe);
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
#define QSTATE_VERSION 2u
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

size_t qat_qmodel_state_bytes(const qat_qmodel *q) {
    size_t n = sizeof(qstate_header);
    for (int i = 0; i < q->nfq; i++) n += sizeof(uint64_t) + qat_fq_state_bytes(&q->fq[i]);
    return n + (size_t)q->nlsq * sizeof(float); /* learned scales and offsets last */
}

void qat_qmodel_pack(const qat_qmodel *q, void *buf) {
    qstate_header h;
    memset(&h, 0, sizeof h);
    h.magic = QSTATE_MAGIC, h.version = QSTATE_VERSION;
    memcpy(h.qconfig, q->cfg.name, sizeof h.qconfig);
    h.act_obs = q->act_obs, h.nfq = q->nfq, h.bn_frozen = q->bn_frozen;
    h.observers_frozen = q->observers_frozen, h.freeze_bn_epoch = h.freeze_observer_epoch = -1;
    h.freeze_bn_step = q->freeze_bn_step, h.freeze_observer_step = q->freeze_observer_step;
    h.fold_bn = q->fold_bn;
    h.lsq_ready = q->lsq_ready, h.lsq_lr_mult = q->lsq_lr_mult;
    char *p = buf;
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    for (int i = 0; i < q->nfq; i++) {
        uint64_t n = qat_fq_state_bytes(&q->fq[i]);
        memcpy(p, &n, sizeof n);
        qat_fq_pack(&q->fq[i], p + sizeof n);
        p += sizeof n + n;
    }
    if (q->nlsq) memcpy(p, q->lsq_params, (size_t)q->nlsq * sizeof(float));
}

qat_status qat_qmodel_unpack(qat_model *m, const void *buf, size_t bytes, const char *path,
                             qat_qmodel **out) {
    *out = NULL;
    qstate_header h;
    memset(&h, 0, sizeof h);
    if (bytes < QSTATE_V1_BYTES) return qat_fail(QAT_ERR_FORMAT, "%s: quant section truncated", path);
    memcpy(&h, buf, QSTATE_V1_BYTES);
    if (h.magic != QSTATE_MAGIC || (h.version != 1 && h.version != QSTATE_VERSION))
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
    if (h.nfq != q->nfq) {
        int n = q->nfq;
        qat_qmodel_free(q);
        return qat_fail(QAT_ERR_MISMATCH, "%s: quant section has %d quantization points, the model has %d",
                        path, (int)h.nfq, n);
    }
    const char *p = (const char *)buf + hbytes, *end = (const char *)buf + bytes;
    for (int i = 0; i < q->nfq; i++) {
        uint64_t n;
        if ((size_t)(end - p) < sizeof n) goto truncated;
        memcpy(&n, p, sizeof n);
        p += sizeof n;
        if ((uint64_t)(end - p) < n) goto truncated;
        if ((st = qat_fq_unpack(&q->fq[i], p, n))) {
            qat_fail(st, "%s: %s", path, qat_last_error());
            qat_qmodel_free(q);
            return st;
        }
        p += n;
    }
    if ((size_t)(end - p) != (size_t)q->nlsq * sizeof(float)) goto truncated;
    if (q->nlsq) {
        memcpy(q->lsq_params, p, (size_t)q->nlsq * sizeof(float));
        for (int64_t k = 0; k < q->nlsq; k++)
            if (!isfinite(q->lsq_params[k])) {
                qat_qmodel_free(q);
                return qat_fail(QAT_ERR_NUMERIC, "%s: learned quantizer parameter %lld is not finite",
                                path, (long long)k);
            }
        for (int i = 0; i < q->nfq; i++) q->lsq[i].fake_quant_enabled = q->fq[i].fake_quant_enabled;
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
