/* Building a model from a spec, its initialisation, forward, and the summary table.
 *
 * Creation runs in two passes: layers/build.c expands the spec's stages into layer records with
 * shapes, attributes and parameter counts (their kinds' storage declarations counted); then the
 * parameter, gradient and buffer arrays are allocated once and the same declarations place every
 * record's tensors in them. The records are never moved after that, so param_info[i].tensor
 * stays valid for the model's life. Everything per kind goes through qat_layer_kinds[]. */
#include "model.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MAX_CHANNELS 65536
#define MAX_INPUT_SIZE 4096
#define MAX_CLASSES 100000

/* Every record's storage declared again, now into the arrays. */
static void place_storage(qat_model *m) {
    qat_layer_store s = {0};
    s.params = m->params, s.grads = m->grads, s.buffers = m->buffers;
    s.segs = m->segs, s.param_info = m->param_info, s.buffer_info = m->buffer_info;
    for (int i = 0; i < m->nlayers; i++) {
        qat_layer *L = &m->layers[i];
        s.layer = i;
        s.prefix = L->name;
        if (qat_layer_kinds[L->kind]->storage) qat_layer_kinds[L->kind]->storage(L, &s);
    }
    QAT_ASSERT(s.nparams == m->nparams && s.nsegs == m->nsegs);
    QAT_ASSERT(s.nbuffers == m->nbuffers && s.nbuffer_segs == m->nbuffer_segs);
}

/* The deterministic part of the init: BN affine 1/0, running stats 0/1, everything else 0. */
static void reset_state(qat_model *m) {
    memset(m->params, 0, (size_t)m->nparams * sizeof(float));
    for (int i = 0; i < m->nlayers; i++) {
        qat_layer *L = &m->layers[i];
        if (qat_layer_kinds[L->kind]->reset) qat_layer_kinds[L->kind]->reset(L);
    }
}

void qat_model_free(qat_model *m) {
    if (!m) return;
    free(m->params);
    free(m->grads);
    free(m->segs);
    free(m->param_info);
    free(m->buffers);
    free(m->buffer_info);
    free(m->layers);
    qat_spec_free(m->spec);
    free(m);
}

static void *alloc_floats(int64_t n) {
    void *p = NULL;
    /* 64-byte aligned for the SIMD kernels; calloc-like zeroing. */
    if (posix_memalign(&p, 64, (size_t)(n ? n : 1) * sizeof(float))) return NULL;
    memset(p, 0, (size_t)(n ? n : 1) * sizeof(float));
    return p;
}

qat_status qat_model_create(const qat_spec *spec, float width_mult, int in_h, int in_w, int in_c,
                            int nclasses, qat_model **out) {
    *out = NULL;
    if (!spec) return qat_fail(QAT_ERR_ARG, "model: no spec");
    const char *src = spec->source;
    if (in_h < 1 || in_w < 1 || in_h > MAX_INPUT_SIZE || in_w > MAX_INPUT_SIZE)
        return qat_fail(QAT_ERR_ARG, "%s: input size %dx%d out of range (1 to %d)", src, in_h,
                        in_w, MAX_INPUT_SIZE);
    if (in_c < 1 || in_c > MAX_CHANNELS)
        return qat_fail(QAT_ERR_ARG, "%s: %d input channels out of range (1 to %d)", src, in_c,
                        MAX_CHANNELS);
    if (nclasses < 1 || nclasses > MAX_CLASSES)
        return qat_fail(QAT_ERR_ARG, "%s: %d classes out of range (1 to %d)", src, nclasses,
                        MAX_CLASSES);
    if (isnan(width_mult))
        return qat_fail(QAT_ERR_ARG, "%s: width multiplier is NaN", src);
    float width = width_mult > 0 ? width_mult : spec->width;
    if (!(width > 0 && width <= 16))
        return qat_fail(QAT_ERR_ARG, "%s: width multiplier %g out of range (0 to 16]", src,
                        (double)width);

    qat_layer *layers;
    int nlayers;
    qat_layer_store count;
    qat_status st = qat_layers_from_spec(spec, width, in_h, in_w, in_c, nclasses, &layers, &nlayers,
                                         &count);
    if (st) return st;

    qat_model *m = calloc(1, sizeof *m);
    if (!m) {
        free(layers);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory building model", src);
    }
    m->layers = layers;
    m->nlayers = nlayers;
    m->nparams = count.nparams;
    m->nsegs = count.nsegs;
    m->nbuffers = count.nbuffers;
    m->nbuffer_segs = count.nbuffer_segs;
    m->in_h = in_h;
    m->in_w = in_w;
    m->in_c = in_c;
    m->nclasses = nclasses;
    m->width_mult = width;
    for (int i = 0; i < m->nlayers; i++) m->macs += m->layers[i].macs;
    m->params = alloc_floats(m->nparams);
    m->grads = alloc_floats(m->nparams);
    m->buffers = alloc_floats(m->nbuffers);
    m->segs = calloc((size_t)m->nsegs, sizeof *m->segs);
    m->param_info = calloc((size_t)m->nsegs, sizeof *m->param_info);
    m->buffer_info = calloc((size_t)(m->nbuffer_segs ? m->nbuffer_segs : 1),
                            sizeof *m->buffer_info);
    if (!m->params || !m->grads || !m->buffers || !m->segs || !m->param_info ||
        !m->buffer_info || (st = qat_spec_copy(spec, &m->spec))) {
        qat_model_free(m);
        return st ? st : qat_fail(QAT_ERR_NOMEM, "%s: out of memory for %lld parameters", src,
                                  (long long)count.nparams);
    }
    place_storage(m);
    reset_state(m);
    *out = m;
    return QAT_OK;
}

void qat_model_init(qat_model *m, qat_rng *rng) {
    reset_state(m);
    /* in record order, so the draws follow m->segs (each kind initialises its own tensors) */
    for (int i = 0; i < m->nlayers; i++) {
        qat_layer *L = &m->layers[i];
        if (qat_layer_kinds[L->kind]->init) qat_layer_kinds[L->kind]->init(L, rng);
    }
}

void qat_model_init_seed(qat_model *m, uint64_t seed) {
    qat_rng r;
    qat_rng_seed(&r, seed);
    qat_model_init(m, &r);
}

qat_tensor *qat_model_forward(qat_model *m, qat_ctx *ctx, qat_tensor *x) {
    if (!x || x->ndim != 4 || x->shape[0] < 1 || x->shape[1] != m->in_h ||
        x->shape[2] != m->in_w || x->shape[3] != m->in_c) {
        char got[64] = "no tensor";
        if (x) {
            int n = snprintf(got, sizeof got, "%d-d (", x->ndim);
            for (int d = 0; d < x->ndim && d < QAT_MAX_DIMS && n < (int)sizeof got; d++)
                n += snprintf(got + n, sizeof got - (size_t)n, d ? ", %d" : "%d", x->shape[d]);
            if (n < (int)sizeof got) snprintf(got + n, sizeof got - (size_t)n, ")");
        }
        qat_fail(QAT_ERR_SHAPE, "%s: input must be (N, %d, %d, %d) NHWC, got %s", m->spec->name,
                 m->in_h, m->in_w, m->in_c, got);
        return NULL;
    }
    /* Outputs by layer index: a record reads any earlier one (-1: the model input). */
    qat_tensor **outs = qat_arena_alloc(&ctx->arena, (size_t)m->nlayers * sizeof *outs);
    qat_tensor *y = x;
    for (int i = 0; i < m->nlayers; i++) {
        qat_layer *L = &m->layers[i];
        qat_tensor *in[QAT_LAYER_MAX_IN];
        for (int j = 0; j < L->nin; j++) in[j] = L->in[j] < 0 ? x : outs[L->in[j]];
        y = qat_layer_kinds[L->kind]->forward(L, ctx, in);
        if (!y->name) y->name = L->name;
        outs[i] = y;
    }
    return y;
}

void qat_model_zero_grad(qat_model *m) {
    memset(m->grads, 0, (size_t)m->nparams * sizeof(float));
}

void qat_model_set_bn_update(qat_model *m, int update) {
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].bn.running_mean) m->layers[i].bn.update_stats = update != 0;
}

int qat_model_num_layers(const qat_model *m) { return m->nlayers; }

const qat_layer *qat_model_layer(const qat_model *m, int i) {
    return i >= 0 && i < m->nlayers ? &m->layers[i] : NULL;
}

int qat_model_find_param(const qat_model *m, const char *name) {
    for (int i = 0; i < m->nsegs; i++)
        if (!strcmp(m->param_info[i].name, name)) return i;
    return -1;
}

int qat_model_find_buffer(const qat_model *m, const char *name) {
    for (int i = 0; i < m->nbuffer_segs; i++)
        if (!strcmp(m->buffer_info[i].name, name)) return i;
    return -1;
}

/* ---- summary --------------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t cap, len;
} out_buf;

static void out_printf(out_buf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(out_buf *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    int n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0) o->len += (size_t)n;
}

/* 1234567 -> "1,234,567" */
static const char *grouped(char *buf, size_t cap, int64_t v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v), j = 0;
    for (int i = 0; i < n && (size_t)j + 2 < cap; i++) {
        if (i && tmp[i - 1] != '-' && (n - i) % 3 == 0) buf[j++] = ',';
        buf[j++] = tmp[i];
    }
    buf[j] = 0;
    return buf;
}

static void describe(const qat_layer *L, char *buf, size_t cap) {
    const qat_layer_desc *d = qat_layer_kinds[L->kind];
    if (d->describe)
        d->describe(L, buf, cap);
    else
        snprintf(buf, cap, "%s", d->name);
}

size_t qat_model_summary(const qat_model *m, char *buf, size_t cap) {
    out_buf o = {buf, cap, 0};
    if (cap) buf[0] = 0;
    char a[32], b[32];
    out_printf(&o, "model %s: width %g, input %dx%dx%d, %d classes\n", m->spec->name,
               (double)m->width_mult, m->in_h, m->in_w, m->in_c, m->nclasses);
    out_printf(&o, "%4s  %-20s %-26s %-12s %10s %12s\n", "#", "layer", "op", "output", "params",
               "MACs");
    for (int i = 0; i < m->nlayers; i++) {
        const qat_layer *L = &m->layers[i];
        char op[48], shape[32];
        describe(L, op, sizeof op);
        if (qat_layer_kinds[L->kind]->vector_output)
            snprintf(shape, sizeof shape, "%d", L->out_c);
        else
            snprintf(shape, sizeof shape, "%dx%dx%d", L->out_h, L->out_w, L->out_c);
        out_printf(&o, "%4d  %-20s %-26s %-12s %10s %12s\n", i, L->name, op, shape,
                   grouped(a, sizeof a, L->nparams), grouped(b, sizeof b, L->macs));
    }
    out_printf(&o, "total: %s parameters, %s MACs per image (%.2f M)\n",
               grouped(a, sizeof a, m->nparams), grouped(b, sizeof b, m->macs),
               (double)m->macs / 1e6);
    return o.len;
}
