/* The INT8 model in memory (q8.h): the invariants every model the runtime, the simulation or a
 * .q8 file meets must satisfy, checked layer by layer with the kind's own rules from
 * qat_q8_kinds[] (runtime/q8_kinds.c), and the arrays every kind may carry. */
#include "q8_internal.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the per-layer arrays, one descriptor each ----------------------------------------------- */

const qat_q8_array_desc qat_q8_arrays[QAT_Q8_ARR_COUNT] = {
    [QAT_Q8_ARR_WEIGHT] = {"weight", ELEM_S8},
    [QAT_Q8_ARR_BIAS] = {"bias", ELEM_S32},
    [QAT_Q8_ARR_MULT] = {"mult", ELEM_F32},
    [QAT_Q8_ARR_FBIAS] = {"fbias", ELEM_F32},
    [QAT_Q8_ARR_WSCALE] = {"wscale", ELEM_F32},
    [QAT_Q8_ARR_TABLE] = {"table", ELEM_S8}, /* u8 codes, stored as bytes like s8 */
    [QAT_Q8_ARR_FWEIGHT] = {"fweight", ELEM_F32},
};

const void *qat_q8_array_get(const qat_q8_layer *L, int a) {
    switch (a) {
    case QAT_Q8_ARR_WEIGHT: return L->weight;
    case QAT_Q8_ARR_BIAS: return L->bias;
    case QAT_Q8_ARR_MULT: return L->mult;
    case QAT_Q8_ARR_FBIAS: return L->fbias;
    case QAT_Q8_ARR_TABLE: return L->table;
    case QAT_Q8_ARR_FWEIGHT: return L->fweight;
    default: return L->wscale;
    }
}

void qat_q8_array_set(qat_q8_layer *L, int a, void *p) {
    switch (a) {
    case QAT_Q8_ARR_WEIGHT: L->weight = p; break;
    case QAT_Q8_ARR_BIAS: L->bias = p; break;
    case QAT_Q8_ARR_MULT: L->mult = p; break;
    case QAT_Q8_ARR_FBIAS: L->fbias = p; break;
    case QAT_Q8_ARR_TABLE: L->table = p; break;
    case QAT_Q8_ARR_FWEIGHT: L->fweight = p; break;
    default: L->wscale = p; break;
    }
}

int64_t qat_q8_array_count(const qat_q8_layer *L, int a) {
    if (a == QAT_Q8_ARR_TABLE) return 256;
    return a == QAT_Q8_ARR_WEIGHT || a == QAT_Q8_ARR_FWEIGHT ? (int64_t)L->out_c * qat_q8_kinds[L->kind].weights_per_channel(L)
                                  : (int64_t)L->out_c;
}

/* ---- messages -------------------------------------------------------------------------------- */

qat_status qat_q8_layer_fail(qat_status st, const char *what, int i, const qat_q8_layer *L,
                             int name_ok, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (name_ok) return qat_fail(st, "%s: layer %d '%s': %s", what, i, L->name, msg);
    return qat_fail(st, "%s: layer %d: %s", what, i, msg);
}

int qat_q8_text_ok(const char *s, size_t cap) {
    for (size_t i = 0; i < cap; i++) {
        if (!s[i]) return 1;
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) return 0;
    }
    return 0;
}

int qat_q8_zero_tail(const char *s, size_t cap) {
    size_t n = strnlen(s, cap);
    for (size_t i = n; i < cap; i++)
        if (s[i]) return 0;
    return 1;
}

/* ---- validation ------------------------------------------------------------------------------ */

static qat_status check_header(const qat_q8_model *m, const char *what) {
    if (m->nlayers < 1 || m->nlayers > QAT_Q8_MAX_LAYERS)
        return qat_fail(QAT_ERR_FORMAT, "%s: %d layers (must be 1..%d)", what, m->nlayers,
                        QAT_Q8_MAX_LAYERS);
    if (!m->layers) return qat_fail(QAT_ERR_ARG, "%s: no layer array", what);
    /* mean/std hold 4 channels: the runtime normalises each input channel with them */
    if (!qat_q8_dim_ok(m->in_h) || !qat_q8_dim_ok(m->in_w) || m->in_c < 1 || m->in_c > 4)
        return qat_fail(QAT_ERR_SHAPE, "%s: input shape %dx%dx%d (h, w in 1..%d, c in 1..4)",
                        what, m->in_h, m->in_w, m->in_c, Q8_MAX_DIM);
    if ((int64_t)m->in_h * m->in_w * m->in_c > Q8_MAX_ELEMS)
        return qat_fail(QAT_ERR_SHAPE, "%s: input %dx%dx%d has more than 2^28 elements", what,
                        m->in_h, m->in_w, m->in_c);
    if (!qat_q8_dim_ok(m->nclasses))
        return qat_fail(QAT_ERR_SHAPE, "%s: %d classes (must be 1..%d)", what, m->nclasses,
                        Q8_MAX_DIM);
    if (!qat_q8_pos_finite(m->in_scale))
        return qat_fail(QAT_ERR_NUMERIC, "%s: input scale %g is not finite and > 0", what,
                        (double)m->in_scale);
    if (!qat_q8_is_u8(m->in_zp) || !qat_q8_is_u8(m->in_qmin) || !qat_q8_is_u8(m->in_qmax) || m->in_qmin > m->in_qmax)
        return qat_fail(QAT_ERR_FORMAT,
                        "%s: input zero point %d / range [%d, %d] outside u8 or empty", what,
                        m->in_zp, m->in_qmin, m->in_qmax);
    for (int c = 0; c < m->in_c; c++)
        if (!isfinite(m->mean[c]) || !qat_q8_pos_finite(m->std[c]))
            return qat_fail(QAT_ERR_NUMERIC, "%s: input channel %d: mean %g / std %g (need "
                            "finite, std > 0)", what, c, (double)m->mean[c], (double)m->std[c]);
    if (!qat_q8_text_ok(m->qconfig, sizeof m->qconfig))
        return qat_fail(QAT_ERR_FORMAT, "%s: qconfig name is not printable NUL-terminated text",
                        what);
    if (!qat_q8_text_ok(m->arch, sizeof m->arch))
        return qat_fail(QAT_ERR_FORMAT, "%s: architecture name is not printable NUL-terminated "
                        "text", what);
    return QAT_OK;
}

/* Output shape and qparams of value v (-1: the quantized model input). */
typedef struct {
    int32_t h, w, c, zp;
    float scale;
    int is_float;
} value_info;

int qat_q8_value_is_float(const qat_q8_model *m, int v) {
    return v >= 0 && v < m->nlayers && (unsigned)m->layers[v].kind < QAT_Q8_KIND_COUNT &&
           qat_q8_kinds[m->layers[v].kind].float_value;
}

static value_info value_of(const qat_q8_model *m, int32_t v) {
    if (v < 0) return (value_info){m->in_h, m->in_w, m->in_c, m->in_zp, m->in_scale, 0};
    const qat_q8_layer *P = &m->layers[v];
    return (value_info){P->out_h, P->out_w, P->out_c, P->zy, P->sy, qat_q8_value_is_float(m, v)};
}

/* Operand `which` of layer i reads value v with qparams (s, z) and the layer's input shape. */
qat_status qat_q8_check_operand(const qat_q8_model *m, const char *what, int i, const char *which,
                                int32_t v, float s, int32_t z) {
    const qat_q8_layer *L = &m->layers[i];
    if (v < -1 || v >= i)
        return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, 1,
                          "%s reads value %d, not produced before it (-1..%d)", which, v, i - 1);
    value_info p = value_of(m, v);
    if (p.h != L->in_h || p.w != L->in_w || p.c != L->in_c)
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                          "%s shape %dx%dx%d != shape %dx%dx%d of value %d", which, L->in_h,
                          L->in_w, L->in_c, p.h, p.w, p.c, v);
    /* an operand of the first kind reads f32 values, all others u8 codes */
    const int want_float = !strcmp(which, "input") && qat_q8_kinds[L->kind].float_input;
    if (p.is_float != want_float)
        return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, 1, "%s reads value %d, which is %s "
                                 "(a %s layer reads %s)", which, v, p.is_float ? "float" : "u8",
                                 qat_q8_kinds[L->kind].name, want_float ? "float" : "u8");
    if (p.is_float) {
        if (s != 0 || z != 0)
            return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, 1, "%s qparams (%g, %d) on a "
                                     "float value (must be 0, 0)", which, (double)s, z);
        return QAT_OK;
    }
    if (!qat_q8_is_u8(z) || !qat_q8_pos_finite(s))
        return qat_q8_layer_fail(QAT_ERR_NUMERIC, what, i, L, 1,
                          "%s scale %g / zero point %d (need finite > 0, 0..255)", which,
                          (double)s, z);
    if (s != p.scale || z != p.zp)
        return qat_q8_layer_fail(QAT_ERR_MISMATCH, what, i, L, 1,
                          "%s qparams (%g, %d) != value %d's output qparams (%g, %d)", which,
                          (double)s, z, v, (double)p.scale, p.zp);
    return QAT_OK;
}

qat_status qat_q8_check_output_qparams(const char *what, int i, const qat_q8_layer *L) {
    if (!qat_q8_pos_finite(L->sy))
        return qat_q8_layer_fail(QAT_ERR_NUMERIC, what, i, L, 1, "output scale %g is not finite and > 0",
                          (double)L->sy);
    if (!qat_q8_is_u8(L->zy) || !qat_q8_is_u8(L->lo) || !qat_q8_is_u8(L->hi) || L->lo > L->hi)
        return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, 1,
                          "output zero point %d / clamp [%d, %d] outside u8 or lo > hi", L->zy,
                          L->lo, L->hi);
    return QAT_OK;
}

qat_status qat_q8_check_wbits(const char *what, int i, const qat_q8_layer *L) {
    if (L->wbits < Q8_MIN_WBITS || L->wbits > Q8_MAX_WBITS)
        return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, 1, "weight bits %d outside %d..%d",
                          L->wbits, Q8_MIN_WBITS, Q8_MAX_WBITS);
    return QAT_OK;
}

/* Everything of layer i that does not look at its arrays. Earlier layers are valid. */
static qat_status check_layer_shape(const qat_q8_model *m, const char *what, int i) {
    const qat_q8_layer *L = &m->layers[i];
    if (!qat_q8_text_ok(L->name, sizeof L->name))
        return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, 0,
                          "name is not printable NUL-terminated text");
    if ((unsigned)L->kind >= QAT_Q8_KIND_COUNT)
        return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, 1, "unknown kind %d", (int)L->kind);
    if ((unsigned)L->act >= QAT_Q8_ACT_COUNT)
        return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, 1, "unknown activation %d", (int)L->act);
    const char *kind = qat_q8_kinds[L->kind].name;
    if (!qat_q8_dim_ok(L->in_h) || !qat_q8_dim_ok(L->in_w) || !qat_q8_dim_ok(L->in_c) || !qat_q8_dim_ok(L->out_h) ||
        !qat_q8_dim_ok(L->out_w) || !qat_q8_dim_ok(L->out_c))
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                          "shape %dx%dx%d -> %dx%dx%d (each dimension must be 1..%d)", L->in_h,
                          L->in_w, L->in_c, L->out_h, L->out_w, L->out_c, Q8_MAX_DIM);
    if ((int64_t)L->in_h * L->in_w * L->in_c > Q8_MAX_ELEMS ||
        (int64_t)L->out_h * L->out_w * L->out_c > Q8_MAX_ELEMS)
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                          "shape %dx%dx%d -> %dx%dx%d has more than 2^28 elements per image",
                          L->in_h, L->in_w, L->in_c, L->out_h, L->out_w, L->out_c);
    const qat_q8_kind_desc *k = &qat_q8_kinds[L->kind];
    if (k->float_output && i != m->nlayers - 1)
        return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, 1,
                                 "%s layer before the last (its float logits cannot be consumed)",
                                 kind);
    if (!k->second_input && L->skip != -1)
        return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, 1, "skip %d on a %s layer (must be -1)",
                          L->skip, kind);
    qat_status st = qat_q8_check_operand(m, what, i, "input", L->input, L->sx, L->zx);
    if (st) return st;
    return qat_q8_kinds[L->kind].check(m, what, i);
}

unsigned qat_q8_arrays_present(const qat_q8_layer *L) {
    unsigned mask = 0;
    for (int a = 0; a < QAT_Q8_ARR_COUNT; a++)
        if (qat_q8_array_get(L, a)) mask |= 1u << a;
    return mask;
}

qat_status qat_q8_check_array_set(const char *what, int i, const qat_q8_layer *L, unsigned have) {
    const qat_q8_kind_desc *k = &qat_q8_kinds[L->kind];
    for (int a = 0; a < QAT_Q8_ARR_COUNT; a++) {
        const unsigned bit = QAT_Q8_ARR_BIT(a), has = (have >> a) & 1;
        if (!has && (k->arrays_need & bit))
            return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, 1, "%s layer without %s array",
                                     k->name, qat_q8_arrays[a].name);
        if (has && !(k->arrays_allow & bit))
            return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, 1,
                                     "%s layer has a %s array (must not)", k->name,
                                     qat_q8_arrays[a].name);
    }
    return QAT_OK;
}

static qat_status check_floats(const char *what, int i, const qat_q8_layer *L, int a,
                               int positive) {
    const float *v = qat_q8_array_get(L, a);
    if (!v) return QAT_OK;
    for (int32_t c = 0; c < L->out_c; c++)
        if (positive ? !qat_q8_pos_finite(v[c]) : !isfinite(v[c]))
            return qat_q8_layer_fail(QAT_ERR_NUMERIC, what, i, L, 1, "%s[%d] = %g is not finite%s",
                              qat_q8_arrays[a].name, c, (double)v[c], positive ? " and > 0" : "");
    return QAT_OK;
}

/* Every element of array a finite (a float layer's weights). */
static qat_status check_all_floats(const char *what, int i, const qat_q8_layer *L, int a) {
    const float *v = qat_q8_array_get(L, a);
    const int64_t n = v ? qat_q8_array_count(L, a) : 0;
    for (int64_t k = 0; k < n; k++)
        if (!isfinite(v[k]))
            return qat_q8_layer_fail(QAT_ERR_NUMERIC, what, i, L, 1, "%s[%lld] = %g is not finite",
                                     qat_q8_arrays[a].name, (long long)k, (double)v[k]);
    return QAT_OK;
}

/* The int32 accumulator bound of kernels/int8.h: the pack functions would refuse otherwise. */
static qat_status check_accumulator(const char *what, int i, const qat_q8_layer *L) {
    const int64_t per = qat_q8_kinds[L->kind].weights_per_channel(L);
    for (int32_t c = 0; c < L->out_c; c++) {
        const int8_t *w = L->weight + (size_t)c * (size_t)per;
        int64_t mag = 0;
        for (int64_t t = 0; t < per; t++) mag += w[t] < 0 ? -w[t] : w[t];
        const int64_t b = L->bias ? L->bias[c] : 0;
        if ((b < 0 ? -b : b) + 255 * mag > INT32_MAX)
            return qat_q8_layer_fail(QAT_ERR_NUMERIC, what, i, L, 1,
                              "channel %d could overflow the int32 accumulator (|bias| %lld + "
                              "255 * sum|w| %lld > 2^31-1)", c, (long long)(b < 0 ? -b : b),
                              (long long)mag);
    }
    return QAT_OK;
}

static qat_status check_layer_arrays(const char *what, int i, const qat_q8_layer *L) {
    qat_status st = qat_q8_check_array_set(what, i, L, qat_q8_arrays_present(L));
    if (st || (st = check_floats(what, i, L, QAT_Q8_ARR_MULT, 1)) ||
        (st = check_floats(what, i, L, QAT_Q8_ARR_WSCALE, 1)) ||
        (st = check_floats(what, i, L, QAT_Q8_ARR_FBIAS, 0)))
        return st;
    if ((st = check_all_floats(what, i, L, QAT_Q8_ARR_FWEIGHT))) return st;
    return qat_q8_kinds[L->kind].weights_per_channel && L->weight ? check_accumulator(what, i, L) : QAT_OK;
}

qat_status qat_q8_check(const qat_q8_model *m, const char *what, int with_arrays) {
    qat_status st = check_header(m, what);
    for (int i = 0; i < m->nlayers && !st; i++) {
        st = check_layer_shape(m, what, i);
        if (!st && with_arrays) st = check_layer_arrays(what, i, &m->layers[i]);
    }
    if (st) return st;
    const qat_q8_layer *last = &m->layers[m->nlayers - 1];
    if (!qat_q8_kinds[last->kind].float_output)
        return qat_q8_layer_fail(QAT_ERR_FORMAT, what, m->nlayers - 1, last, 1,
                          "the last layer is a %s (must be linear: it produces the logits)",
                          qat_q8_kinds[last->kind].name);
    return QAT_OK;
}

qat_status qat_q8_validate(const qat_q8_model *m, const char *what) {
    if (!what) what = "model";
    if (!m) return qat_fail(QAT_ERR_ARG, "%s: no model", what);
    return qat_q8_check(m, what, 1);
}

int64_t qat_q8_layer_macs(const qat_q8_layer *L) {
    if (!L || (unsigned)L->kind >= QAT_Q8_KIND_COUNT || !qat_q8_kinds[L->kind].macs) return 0;
    return qat_q8_kinds[L->kind].macs(L);
}

int64_t qat_q8_layer_weights(const qat_q8_layer *L) {
    if (!L || (unsigned)L->kind >= QAT_Q8_KIND_COUNT || (!L->weight && !L->fweight)) return 0;
    const qat_q8_kind_desc *k = &qat_q8_kinds[L->kind];
    return k->weights_per_channel ? (int64_t)L->out_c * k->weights_per_channel(L) : 0;
}

qat_status qat_class_names_parse(const char *text, size_t len, int n, const char *what,
                                 char (**out)[QAT_Q8_CLASS_NAME_MAX]) {
    *out = NULL;
    if (!text) return QAT_OK;
    char (*names)[QAT_Q8_CLASS_NAME_MAX] = calloc((size_t)(n > 0 ? n : 1), sizeof *names);
    if (!names) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", what);
    size_t at = 0;
    int k = 0;
    while (at < len) {
        size_t e = at;
        while (e < len && text[e] != '\n') e++;
        const size_t l = e - at;
        int ok = e < len && l >= 1 && l < QAT_Q8_CLASS_NAME_MAX && k < n;
        for (size_t j = at; ok && j < e; j++) ok = (unsigned char)text[j] >= 0x20 && (unsigned char)text[j] <= 0x7e;
        if (!ok) {
            free(names);
            return qat_fail(QAT_ERR_FORMAT, "%s: class name %d is empty, too long, not printable or "
                            "unterminated, or there are more than %d (section 'classes')", what, k, n);
        }
        memcpy(names[k++], text + at, l);
        at = e + 1;
    }
    if (k != n) {
        free(names);
        return qat_fail(QAT_ERR_FORMAT, "%s: %d class names for %d classes (section 'classes')", what, k, n);
    }
    *out = names;
    return QAT_OK;
}

char *qat_class_names_join(char (*names)[QAT_Q8_CLASS_NAME_MAX], int n, size_t *len) {
    size_t total = 0;
    for (int k = 0; k < n; k++) total += strnlen(names[k], QAT_Q8_CLASS_NAME_MAX - 1) + 1;
    char *t = malloc(total + 1);
    if (!t) return NULL;
    size_t at = 0;
    for (int k = 0; k < n; k++) {
        const size_t l = strnlen(names[k], QAT_Q8_CLASS_NAME_MAX - 1);
        memcpy(t + at, names[k], l);
        t[at + l] = '\n';
        at += l + 1;
    }
    t[at] = 0;
    *len = at;
    return t;
}

void qat_q8_free(qat_q8_model *m) {
    if (!m) return;
    free(m->class_names);
    for (int i = 0; m->layers && i < m->nlayers; i++)
        for (int a = 0; a < QAT_Q8_ARR_COUNT; a++) free((void *)qat_q8_array_get(&m->layers[i], a));
    free(m->layers);
    free(m);
}

