/* The .q8 file: the INT8 model of q8.h in the section container (export/container.h), and the
 * validation every loaded or saved model goes through. Layout in docs/formats.md ("INT8 model").
 *
 * Loading treats the bytes as hostile: the container checks CRCs and bounds; here every record
 * is decoded field by field from sections whose exact size was checked first, the geometry of
 * every layer is validated before any array size is derived from it, every array is checked to
 * fit in what remains of its section before it is allocated (so no allocation is larger than the
 * file), and the finished model is validated as a whole. Depends only on qat.h, the container
 * and header-only parts of kernels/int8.h, so the deploy-only runtime and the fuzzer carry it. */
#include "q8.h"
#include "container.h"
#include "int8.h"
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char Q8_MAGIC[8] = {'Q', 'A', 'T', 'I', 'N', 'T', '8', '\0'};
#define Q8_VERSION 1

/* Limits the runtime relies on (q8.h, kernels/int8.h). */
#define Q8_MAX_DIM 65536
#define Q8_MAX_ELEMS (INT64_C(1) << 28) /* elements per image of one value */
#define Q8_MAX_GEMM_K (1 << 24)          /* I8_MAX_K of kernels/int8_ref.c: qat_i8_gemm_pack */
#define Q8_MAX_POOL_HW (1 << 23)         /* qat_i8_global_avgpool: sum and HW*zx stay exact */
#define Q8_MIN_WBITS 2
#define Q8_MAX_WBITS 8

const char *const qat_q8_kind_names[QAT_Q8_KIND_COUNT] = {"conv", "add", "avgpool", "linear"};
_Static_assert(sizeof qat_q8_kind_names / sizeof qat_q8_kind_names[0] == QAT_Q8_KIND_COUNT,
               "a name per layer kind");

/* ---- the per-layer arrays, one descriptor each ----------------------------------------------- */

enum { ARR_WEIGHT, ARR_BIAS, ARR_MULT, ARR_FBIAS, ARR_WSCALE, ARR_COUNT };
typedef enum { ELEM_S8, ELEM_S32, ELEM_F32 } elem_type;
typedef struct {
    const char *name; /* also the name of the file section holding it */
    elem_type type;
    unsigned need;     /* bit per kind: the kind must have it */
    unsigned allow;    /* bit per kind: the kind may have it */
} array_desc;

#define KBIT(k) (1u << (k))
static const array_desc arrays[ARR_COUNT] = {
    [ARR_WEIGHT] = {"weight", ELEM_S8, KBIT(QAT_Q8_CONV) | KBIT(QAT_Q8_LINEAR),
                    KBIT(QAT_Q8_CONV) | KBIT(QAT_Q8_LINEAR)},
    [ARR_BIAS] = {"bias", ELEM_S32, KBIT(QAT_Q8_CONV), KBIT(QAT_Q8_CONV)},
    [ARR_MULT] = {"mult", ELEM_F32, KBIT(QAT_Q8_CONV) | KBIT(QAT_Q8_LINEAR),
                  KBIT(QAT_Q8_CONV) | KBIT(QAT_Q8_LINEAR)},
    /* optional: qat_i8_gemm_f32 accepts a classifier without bias */
    [ARR_FBIAS] = {"fbias", ELEM_F32, 0, KBIT(QAT_Q8_LINEAR)},
    [ARR_WSCALE] = {"wscale", ELEM_F32, KBIT(QAT_Q8_CONV) | KBIT(QAT_Q8_LINEAR),
                    KBIT(QAT_Q8_CONV) | KBIT(QAT_Q8_LINEAR)},
};
#define ARRAY_BITS ((1u << ARR_COUNT) - 1)

static const void *array_get(const qat_q8_layer *L, int a) {
    switch (a) {
    case ARR_WEIGHT: return L->weight;
    case ARR_BIAS: return L->bias;
    case ARR_MULT: return L->mult;
    case ARR_FBIAS: return L->fbias;
    default: return L->wscale;
    }
}

static void array_set(qat_q8_layer *L, int a, void *p) {
    switch (a) {
    case ARR_WEIGHT: L->weight = p; break;
    case ARR_BIAS: L->bias = p; break;
    case ARR_MULT: L->mult = p; break;
    case ARR_FBIAS: L->fbias = p; break;
    default: L->wscale = p; break;
    }
}

static size_t elem_bytes(elem_type t) { return t == ELEM_S8 ? 1 : 4; }

/* Weights per output channel of a CONV/LINEAR layer whose geometry has been validated. */
static int64_t weights_per_channel(const qat_q8_layer *L) {
    if (L->kind == QAT_Q8_LINEAR) return L->in_c;
    return (int64_t)L->k * L->k * (L->groups == 1 ? L->in_c : 1);
}

/* Elements of array a in layer L (geometry validated: every factor is small). */
static int64_t array_count(const qat_q8_layer *L, int a) {
    return a == ARR_WEIGHT ? (int64_t)L->out_c * weights_per_channel(L) : (int64_t)L->out_c;
}

/* ---- messages -------------------------------------------------------------------------------- */

/* "WHAT: layer I 'NAME': problem" (the name only once it is known to be a valid string). */
static qat_status __attribute__((format(printf, 6, 7)))
layer_fail(qat_status st, const char *what, int i, const qat_q8_layer *L, int name_ok,
           const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (name_ok) return qat_fail(st, "%s: layer %d '%s': %s", what, i, L->name, msg);
    return qat_fail(st, "%s: layer %d: %s", what, i, msg);
}

/* A fixed-size text field: NUL-terminated within its size, printable ASCII before the NUL. */
static int text_ok(const char *s, size_t cap) {
    for (size_t i = 0; i < cap; i++) {
        if (!s[i]) return 1;
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) return 0;
    }
    return 0;
}

/* What the writer leaves after a text field's NUL: zeros (a file is canonical: every byte of
 * it is either meaningful or zero, and loading then saving reproduces it). */
static int zero_tail(const char *s, size_t cap) {
    size_t n = strnlen(s, cap);
    for (size_t i = n; i < cap; i++)
        if (s[i]) return 0;
    return 1;
}

static int pos_finite(float x) { return isfinite(x) && x > 0.0f; }
static int is_u8(int32_t v) { return v >= 0 && v <= 255; }
static int dim_ok(int32_t d) { return d >= 1 && d <= Q8_MAX_DIM; }

/* ---- validation ------------------------------------------------------------------------------ */

static qat_status check_header(const qat_q8_model *m, const char *what) {
    if (m->nlayers < 1 || m->nlayers > QAT_Q8_MAX_LAYERS)
        return qat_fail(QAT_ERR_FORMAT, "%s: %d layers (must be 1..%d)", what, m->nlayers,
                        QAT_Q8_MAX_LAYERS);
    if (!m->layers) return qat_fail(QAT_ERR_ARG, "%s: no layer array", what);
    /* mean/std hold 4 channels: the runtime normalises each input channel with them */
    if (!dim_ok(m->in_h) || !dim_ok(m->in_w) || m->in_c < 1 || m->in_c > 4)
        return qat_fail(QAT_ERR_SHAPE, "%s: input shape %dx%dx%d (h, w in 1..%d, c in 1..4)",
                        what, m->in_h, m->in_w, m->in_c, Q8_MAX_DIM);
    if ((int64_t)m->in_h * m->in_w * m->in_c > Q8_MAX_ELEMS)
        return qat_fail(QAT_ERR_SHAPE, "%s: input %dx%dx%d has more than 2^28 elements", what,
                        m->in_h, m->in_w, m->in_c);
    if (!dim_ok(m->nclasses))
        return qat_fail(QAT_ERR_SHAPE, "%s: %d classes (must be 1..%d)", what, m->nclasses,
                        Q8_MAX_DIM);
    if (!pos_finite(m->in_scale))
        return qat_fail(QAT_ERR_NUMERIC, "%s: input scale %g is not finite and > 0", what,
                        (double)m->in_scale);
    if (!is_u8(m->in_zp) || !is_u8(m->in_qmin) || !is_u8(m->in_qmax) || m->in_qmin > m->in_qmax)
        return qat_fail(QAT_ERR_FORMAT,
                        "%s: input zero point %d / range [%d, %d] outside u8 or empty", what,
                        m->in_zp, m->in_qmin, m->in_qmax);
    for (int c = 0; c < m->in_c; c++)
        if (!isfinite(m->mean[c]) || !pos_finite(m->std[c]))
            return qat_fail(QAT_ERR_NUMERIC, "%s: input channel %d: mean %g / std %g (need "
                            "finite, std > 0)", what, c, (double)m->mean[c], (double)m->std[c]);
    if (!text_ok(m->qconfig, sizeof m->qconfig))
        return qat_fail(QAT_ERR_FORMAT, "%s: qconfig name is not printable NUL-terminated text",
                        what);
    if (!text_ok(m->arch, sizeof m->arch))
        return qat_fail(QAT_ERR_FORMAT, "%s: architecture name is not printable NUL-terminated "
                        "text", what);
    return QAT_OK;
}

/* Output shape and qparams of value v (-1: the quantized model input). */
typedef struct {
    int32_t h, w, c, zp;
    float scale;
} value_info;

static value_info value_of(const qat_q8_model *m, int32_t v) {
    if (v < 0) return (value_info){m->in_h, m->in_w, m->in_c, m->in_zp, m->in_scale};
    const qat_q8_layer *P = &m->layers[v];
    return (value_info){P->out_h, P->out_w, P->out_c, P->zy, P->sy};
}

/* Operand `which` of layer i reads value v with qparams (s, z) and the layer's input shape. */
static qat_status check_operand(const qat_q8_model *m, const char *what, int i, const char *which,
                                int32_t v, float s, int32_t z) {
    const qat_q8_layer *L = &m->layers[i];
    if (v < -1 || v >= i)
        return layer_fail(QAT_ERR_FORMAT, what, i, L, 1,
                          "%s reads value %d, not produced before it (-1..%d)", which, v, i - 1);
    value_info p = value_of(m, v);
    if (p.h != L->in_h || p.w != L->in_w || p.c != L->in_c)
        return layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                          "%s shape %dx%dx%d != shape %dx%dx%d of value %d", which, L->in_h,
                          L->in_w, L->in_c, p.h, p.w, p.c, v);
    if (!is_u8(z) || !pos_finite(s))
        return layer_fail(QAT_ERR_NUMERIC, what, i, L, 1,
                          "%s scale %g / zero point %d (need finite > 0, 0..255)", which,
                          (double)s, z);
    if (s != p.scale || z != p.zp)
        return layer_fail(QAT_ERR_MISMATCH, what, i, L, 1,
                          "%s qparams (%g, %d) != value %d's output qparams (%g, %d)", which,
                          (double)s, z, v, (double)p.scale, p.zp);
    return QAT_OK;
}

static qat_status check_output_qparams(const char *what, int i, const qat_q8_layer *L) {
    if (!pos_finite(L->sy))
        return layer_fail(QAT_ERR_NUMERIC, what, i, L, 1, "output scale %g is not finite and > 0",
                          (double)L->sy);
    if (!is_u8(L->zy) || !is_u8(L->lo) || !is_u8(L->hi) || L->lo > L->hi)
        return layer_fail(QAT_ERR_FORMAT, what, i, L, 1,
                          "output zero point %d / clamp [%d, %d] outside u8 or lo > hi", L->zy,
                          L->lo, L->hi);
    return QAT_OK;
}

static qat_status check_conv_geometry(const qat_q8_model *m, const char *what, int i) {
    const qat_q8_layer *L = &m->layers[i];
    if (L->k < 1 || L->k > Q8_MAX_DIM || L->stride < 1 || L->stride > Q8_MAX_DIM)
        return layer_fail(QAT_ERR_SHAPE, what, i, L, 1, "kernel %d / stride %d (need 1..%d)",
                          L->k, L->stride, Q8_MAX_DIM);
    if (L->pad < 0 || L->pad >= L->k)
        return layer_fail(QAT_ERR_SHAPE, what, i, L, 1, "pad %d outside 0..k-1 (k %d)", L->pad,
                          L->k);
    const int64_t hh = (int64_t)L->in_h + 2 * (int64_t)L->pad - L->k;
    const int64_t ww = (int64_t)L->in_w + 2 * (int64_t)L->pad - L->k;
    if (hh < 0 || ww < 0)
        return layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                          "kernel %d larger than padded input %lldx%lld", L->k,
                          (long long)(hh + L->k), (long long)(ww + L->k));
    if (hh / L->stride + 1 != L->out_h || ww / L->stride + 1 != L->out_w)
        return layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                          "output %dx%d, but k %d stride %d pad %d on %dx%d give %lldx%lld",
                          L->out_h, L->out_w, L->k, L->stride, L->pad, L->in_h, L->in_w,
                          (long long)(hh / L->stride + 1), (long long)(ww / L->stride + 1));
    if (L->groups == 1) {
        if ((int64_t)L->k * L->k * L->in_c > Q8_MAX_GEMM_K)
            return layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                              "k*k*in_c = %lld exceeds the GEMM limit %d",
                              (long long)L->k * L->k * L->in_c, Q8_MAX_GEMM_K);
    } else if (L->groups == L->in_c && L->out_c == L->in_c) {
        if ((int64_t)L->k * L->k > QAT_I8_DW_MAX_TAPS)
            return layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                              "depthwise k*k = %lld exceeds %d taps", (long long)L->k * L->k,
                              QAT_I8_DW_MAX_TAPS);
    } else {
        return layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                          "groups %d with in_c %d, out_c %d (need 1 or depthwise: groups == "
                          "in_c == out_c)", L->groups, L->in_c, L->out_c);
    }
    return QAT_OK;
}

static qat_status check_wbits(const char *what, int i, const qat_q8_layer *L) {
    if (L->wbits < Q8_MIN_WBITS || L->wbits > Q8_MAX_WBITS)
        return layer_fail(QAT_ERR_FORMAT, what, i, L, 1, "weight bits %d outside %d..%d",
                          L->wbits, Q8_MIN_WBITS, Q8_MAX_WBITS);
    return QAT_OK;
}

/* Everything of layer i that does not look at its arrays. Earlier layers are valid. */
static qat_status check_layer_shape(const qat_q8_model *m, const char *what, int i) {
    const qat_q8_layer *L = &m->layers[i];
    if (!text_ok(L->name, sizeof L->name))
        return layer_fail(QAT_ERR_FORMAT, what, i, L, 0,
                          "name is not printable NUL-terminated text");
    if ((unsigned)L->kind >= QAT_Q8_KIND_COUNT)
        return layer_fail(QAT_ERR_FORMAT, what, i, L, 1, "unknown kind %d", (int)L->kind);
    if ((unsigned)L->act > QAT_Q8_ACT_RELU6)
        return layer_fail(QAT_ERR_FORMAT, what, i, L, 1, "unknown activation %d", (int)L->act);
    const char *kind = qat_q8_kind_names[L->kind];
    if (!dim_ok(L->in_h) || !dim_ok(L->in_w) || !dim_ok(L->in_c) || !dim_ok(L->out_h) ||
        !dim_ok(L->out_w) || !dim_ok(L->out_c))
        return layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                          "shape %dx%dx%d -> %dx%dx%d (each dimension must be 1..%d)", L->in_h,
                          L->in_w, L->in_c, L->out_h, L->out_w, L->out_c, Q8_MAX_DIM);
    if ((int64_t)L->in_h * L->in_w * L->in_c > Q8_MAX_ELEMS ||
        (int64_t)L->out_h * L->out_w * L->out_c > Q8_MAX_ELEMS)
        return layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                          "shape %dx%dx%d -> %dx%dx%d has more than 2^28 elements per image",
                          L->in_h, L->in_w, L->in_c, L->out_h, L->out_w, L->out_c);
    if (L->kind == QAT_Q8_LINEAR && i != m->nlayers - 1)
        return layer_fail(QAT_ERR_FORMAT, what, i, L, 1,
                          "linear layer before the last (its float logits cannot be consumed)");
    if (L->kind != QAT_Q8_ADD && L->skip != -1)
        return layer_fail(QAT_ERR_FORMAT, what, i, L, 1, "skip %d on a %s layer (must be -1)",
                          L->skip, kind);
    qat_status st = check_operand(m, what, i, "input", L->input, L->sx, L->zx);
    if (st) return st;
    switch (L->kind) {
    case QAT_Q8_CONV:
        if ((st = check_conv_geometry(m, what, i)) || (st = check_wbits(what, i, L)))
            return st;
        return check_output_qparams(what, i, L);
    case QAT_Q8_ADD:
        if ((st = check_operand(m, what, i, "skip", L->skip, L->sb, L->zb))) return st;
        if (L->out_h != L->in_h || L->out_w != L->in_w || L->out_c != L->in_c)
            return layer_fail(QAT_ERR_SHAPE, what, i, L, 1, "add output %dx%dx%d != input %dx%dx%d",
                              L->out_h, L->out_w, L->out_c, L->in_h, L->in_w, L->in_c);
        return check_output_qparams(what, i, L);
    case QAT_Q8_AVGPOOL:
        if (L->out_h != 1 || L->out_w != 1 || L->out_c != L->in_c)
            return layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                              "global average pool output %dx%dx%d (must be 1x1x%d)", L->out_h,
                              L->out_w, L->out_c, L->in_c);
        if ((int64_t)L->in_h * L->in_w > Q8_MAX_POOL_HW)
            return layer_fail(QAT_ERR_SHAPE, what, i, L, 1, "pool over %dx%d > 2^23 pixels",
                              L->in_h, L->in_w);
        if (!pos_finite(L->pool_mult))
            return layer_fail(QAT_ERR_NUMERIC, what, i, L, 1,
                              "pool multiplier %g is not finite and > 0", (double)L->pool_mult);
        return check_output_qparams(what, i, L);
    default: /* LINEAR */
        if (L->in_h != 1 || L->in_w != 1 || L->out_h != 1 || L->out_w != 1)
            return layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                              "linear shape %dx%dx%d -> %dx%dx%d (must be 1x1xC)", L->in_h,
                              L->in_w, L->in_c, L->out_h, L->out_w, L->out_c);
        if (L->out_c != m->nclasses)
            return layer_fail(QAT_ERR_SHAPE, what, i, L, 1, "%d outputs for %d classes", L->out_c,
                              m->nclasses);
        return check_wbits(what, i, L);
    }
}

/* Which arrays are present, as a bit mask in array order. */
static unsigned arrays_present(const qat_q8_layer *L) {
    unsigned mask = 0;
    for (int a = 0; a < ARR_COUNT; a++)
        if (array_get(L, a)) mask |= 1u << a;
    return mask;
}

/* The arrays of mask `have` are exactly what the kind needs (plus what it may have). */
static qat_status check_array_set(const char *what, int i, const qat_q8_layer *L, unsigned have) {
    for (int a = 0; a < ARR_COUNT; a++) {
        const unsigned kb = KBIT(L->kind), has = (have >> a) & 1;
        if (!has && (arrays[a].need & kb))
            return layer_fail(QAT_ERR_FORMAT, what, i, L, 1, "%s layer without %s array",
                              qat_q8_kind_names[L->kind], arrays[a].name);
        if (has && !(arrays[a].allow & kb))
            return layer_fail(QAT_ERR_FORMAT, what, i, L, 1, "%s layer has a %s array (must not)",
                              qat_q8_kind_names[L->kind], arrays[a].name);
    }
    return QAT_OK;
}

static qat_status check_floats(const char *what, int i, const qat_q8_layer *L, int a,
                               int positive) {
    const float *v = array_get(L, a);
    if (!v) return QAT_OK;
    for (int32_t c = 0; c < L->out_c; c++)
        if (positive ? !pos_finite(v[c]) : !isfinite(v[c]))
            return layer_fail(QAT_ERR_NUMERIC, what, i, L, 1, "%s[%d] = %g is not finite%s",
                              arrays[a].name, c, (double)v[c], positive ? " and > 0" : "");
    return QAT_OK;
}

/* The int32 accumulator bound of kernels/int8.h: the pack functions would refuse otherwise. */
static qat_status check_accumulator(const char *what, int i, const qat_q8_layer *L) {
    const int64_t per = weights_per_channel(L);
    for (int32_t c = 0; c < L->out_c; c++) {
        const int8_t *w = L->weight + (size_t)c * (size_t)per;
        int64_t mag = 0;
        for (int64_t t = 0; t < per; t++) mag += w[t] < 0 ? -w[t] : w[t];
        const int64_t b = L->bias ? L->bias[c] : 0;
        if ((b < 0 ? -b : b) + 255 * mag > INT32_MAX)
            return layer_fail(QAT_ERR_NUMERIC, what, i, L, 1,
                              "channel %d could overflow the int32 accumulator (|bias| %lld + "
                              "255 * sum|w| %lld > 2^31-1)", c, (long long)(b < 0 ? -b : b),
                              (long long)mag);
    }
    return QAT_OK;
}

static qat_status check_layer_arrays(const char *what, int i, const qat_q8_layer *L) {
    qat_status st = check_array_set(what, i, L, arrays_present(L));
    if (st || L->kind == QAT_Q8_ADD || L->kind == QAT_Q8_AVGPOOL) return st;
    if ((st = check_floats(what, i, L, ARR_MULT, 1)) ||
        (st = check_floats(what, i, L, ARR_WSCALE, 1)) ||
        (st = check_floats(what, i, L, ARR_FBIAS, 0)))
        return st;
    return check_accumulator(what, i, L);
}

/* with_arrays = 0: everything but the arrays (the loader's check before it sizes them). */
static qat_status validate(const qat_q8_model *m, const char *what, int with_arrays) {
    qat_status st = check_header(m, what);
    for (int i = 0; i < m->nlayers && !st; i++) {
        st = check_layer_shape(m, what, i);
        if (!st && with_arrays) st = check_layer_arrays(what, i, &m->layers[i]);
    }
    if (st) return st;
    const qat_q8_layer *last = &m->layers[m->nlayers - 1];
    if (last->kind != QAT_Q8_LINEAR)
        return layer_fail(QAT_ERR_FORMAT, what, m->nlayers - 1, last, 1,
                          "the last layer is a %s (must be linear: it produces the logits)",
                          qat_q8_kind_names[last->kind]);
    return QAT_OK;
}

qat_status qat_q8_validate(const qat_q8_model *m, const char *what) {
    if (!what) what = "model";
    if (!m) return qat_fail(QAT_ERR_ARG, "%s: no model", what);
    return validate(m, what, 1);
}

int64_t qat_q8_layer_macs(const qat_q8_layer *L) {
    if (!L || (L->kind != QAT_Q8_CONV && L->kind != QAT_Q8_LINEAR)) return 0;
    if (L->kind == QAT_Q8_CONV && L->groups != 1 && (L->groups != L->in_c || L->k < 1)) return 0;
    /* Exact for a validated layer; 0 when a factor is out of range or the product overflows. */
    const int64_t f[] = {L->out_h, L->out_w, L->out_c,
                         L->kind == QAT_Q8_CONV ? L->k : 1, L->kind == QAT_Q8_CONV ? L->k : 1,
                         L->kind == QAT_Q8_CONV && L->groups != 1 ? 1 : L->in_c};
    int64_t macs = 1;
    for (size_t j = 0; j < sizeof f / sizeof f[0]; j++)
        if (f[j] < 1 || __builtin_mul_overflow(macs, f[j], &macs)) return 0;
    return macs;
}

void qat_q8_free(qat_q8_model *m) {
    if (!m) return;
    for (int i = 0; m->layers && i < m->nlayers; i++)
        for (int a = 0; a < ARR_COUNT; a++) free((void *)array_get(&m->layers[i], a));
    free(m->layers);
    free(m);
}

/* ---- little-endian records, field by field ------------------------------------------------- */

typedef struct {
    unsigned char *p;
} writer;
typedef struct {
    const unsigned char *p;
} reader;

static void put_u32(writer *w, uint32_t v) {
    for (int i = 0; i < 4; i++) *w->p++ = (unsigned char)(v >> (8 * i));
}
static void put_i32(writer *w, int32_t v) { put_u32(w, (uint32_t)v); }
/* Floats as their IEEE-754 bits: NaN payloads and -0 survive a round trip. */
static void put_f32(writer *w, float v) {
    uint32_t b;
    memcpy(&b, &v, 4);
    put_u32(w, b);
}
static void put_text(writer *w, const char *s, size_t cap) {
    /* NUL-padded: the bytes after the terminator are zero, whatever memory held */
    size_t n = strnlen(s, cap);
    memcpy(w->p, s, n);
    memset(w->p + n, 0, cap - n);
    w->p += cap;
}

static uint32_t get_u32(reader *r) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)*r->p++ << (8 * i);
    return v;
}
static int32_t get_i32(reader *r) {
    uint32_t u = get_u32(r);
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}
static float get_f32(reader *r) {
    uint32_t b = get_u32(r);
    float v;
    memcpy(&v, &b, 4);
    return v;
}
static void get_text(reader *r, char *s, size_t cap) {
    memcpy(s, r->p, cap);
    r->p += cap;
}

/* "model": one record. */
#define MODEL_BYTES (4 * 4 + 4 + 3 * 4 + 4 * 4 + 4 * 4 + 16 + 32 + 4)
_Static_assert(MODEL_BYTES == 116, "model record layout is part of the file format");
_Static_assert(sizeof(((qat_q8_model *)0)->qconfig) == 16 &&
                   sizeof(((qat_q8_model *)0)->arch) == 32,
               "text field sizes are part of the file format");

static void write_model(writer *w, const qat_q8_model *m) {
    put_i32(w, m->in_h), put_i32(w, m->in_w), put_i32(w, m->in_c), put_i32(w, m->nclasses);
    put_f32(w, m->in_scale);
    put_i32(w, m->in_zp), put_i32(w, m->in_qmin), put_i32(w, m->in_qmax);
    for (int c = 0; c < 4; c++) put_f32(w, m->mean[c]);
    for (int c = 0; c < 4; c++) put_f32(w, m->std[c]);
    put_text(w, m->qconfig, sizeof m->qconfig);
    put_text(w, m->arch, sizeof m->arch);
    put_i32(w, m->nlayers);
}

static void read_model(reader *r, qat_q8_model *m) {
    m->in_h = get_i32(r), m->in_w = get_i32(r), m->in_c = get_i32(r), m->nclasses = get_i32(r);
    m->in_scale = get_f32(r);
    m->in_zp = get_i32(r), m->in_qmin = get_i32(r), m->in_qmax = get_i32(r);
    for (int c = 0; c < 4; c++) m->mean[c] = get_f32(r);
    for (int c = 0; c < 4; c++) m->std[c] = get_f32(r);
    get_text(r, m->qconfig, sizeof m->qconfig);
    get_text(r, m->arch, sizeof m->arch);
    m->nlayers = get_i32(r);
}

/* "layers": one record per layer. The int32/float fields after the header fields, in order. */
typedef enum { F_I32, F_F32 } field_type;
typedef struct {
    size_t offset;
    field_type type;
} field_desc;
#define FI(f) {offsetof(qat_q8_layer, f), F_I32}
#define FF(f) {offsetof(qat_q8_layer, f), F_F32}
static const field_desc layer_fields[] = {
    FI(input), FI(skip), FI(in_h), FI(in_w), FI(in_c), FI(out_h), FI(out_w), FI(out_c),
    FI(k), FI(stride), FI(pad), FI(groups), FI(wbits), FF(sx), FI(zx), FF(sb), FI(zb),
    FF(sy), FI(zy), FI(lo), FI(hi), FF(pool_mult),
};
#define NLAYER_FIELDS ((int)(sizeof layer_fields / sizeof layer_fields[0]))
/* kind, name, act, array mask, then the fields */
#define LAYER_BYTES (4 + QAT_Q8_NAME_MAX + 4 + 4 + 4 * NLAYER_FIELDS)
_Static_assert(LAYER_BYTES == 148, "layer record layout is part of the file format");

static void write_layer(writer *w, const qat_q8_layer *L) {
    put_u32(w, (uint32_t)L->kind);
    put_text(w, L->name, sizeof L->name);
    put_u32(w, (uint32_t)L->act);
    put_u32(w, arrays_present(L));
    for (int f = 0; f < NLAYER_FIELDS; f++) {
        const char *p = (const char *)L + layer_fields[f].offset;
        if (layer_fields[f].type == F_I32) {
            int32_t v;
            memcpy(&v, p, 4);
            put_i32(w, v);
        } else {
            float v;
            memcpy(&v, p, 4);
            put_f32(w, v);
        }
    }
}

/* Decodes one record into L (arrays stay NULL); returns the array mask, or fails. */
static qat_status read_layer(reader *r, qat_q8_layer *L, int i, const char *what, unsigned *mask) {
    const uint32_t kind = get_u32(r);
    get_text(r, L->name, sizeof L->name);
    const uint32_t act = get_u32(r);
    *mask = get_u32(r);
    for (int f = 0; f < NLAYER_FIELDS; f++) {
        char *p = (char *)L + layer_fields[f].offset;
        if (layer_fields[f].type == F_I32) {
            int32_t v = get_i32(r);
            memcpy(p, &v, 4);
        } else {
            float v = get_f32(r);
            memcpy(p, &v, 4);
        }
    }
    /* Range-check the enums before storing them in enum-typed fields. */
    const int name_ok = text_ok(L->name, sizeof L->name);
    if (kind >= QAT_Q8_KIND_COUNT)
        return layer_fail(QAT_ERR_FORMAT, what, i, L, name_ok, "unknown kind %u", kind);
    if (act > QAT_Q8_ACT_RELU6)
        return layer_fail(QAT_ERR_FORMAT, what, i, L, name_ok, "unknown activation %u", act);
    if (name_ok && !zero_tail(L->name, sizeof L->name))
        return layer_fail(QAT_ERR_FORMAT, what, i, L, 1, "nonzero bytes after the name's NUL");
    if (*mask & ~ARRAY_BITS)
        return layer_fail(QAT_ERR_FORMAT, what, i, L, name_ok, "unknown array flags 0x%x", *mask);
    L->kind = (qat_q8_kind)kind;
    L->act = (qat_q8_act)act;
    return QAT_OK;
}

static void write_array(writer *w, const qat_q8_layer *L, int a) {
    const void *v = array_get(L, a);
    if (!v) return;
    const int64_t n = array_count(L, a);
    switch (arrays[a].type) {
    case ELEM_S8:
        memcpy(w->p, v, (size_t)n);
        w->p += n;
        break;
    case ELEM_S32:
        for (int64_t j = 0; j < n; j++) put_i32(w, ((const int32_t *)v)[j]);
        break;
    case ELEM_F32:
        for (int64_t j = 0; j < n; j++) put_f32(w, ((const float *)v)[j]);
        break;
    }
}

static void *read_array(reader *r, int a, int64_t n) {
    void *v = malloc(n ? (size_t)n * elem_bytes(arrays[a].type) : 1);
    if (!v) return NULL;
    switch (arrays[a].type) {
    case ELEM_S8:
        memcpy(v, r->p, (size_t)n);
        r->p += n;
        break;
    case ELEM_S32:
        for (int64_t j = 0; j < n; j++) ((int32_t *)v)[j] = get_i32(r);
        break;
    case ELEM_F32:
        for (int64_t j = 0; j < n; j++) ((float *)v)[j] = get_f32(r);
        break;
    }
    return v;
}

/* ---- save ------------------------------------------------------------------------------------ */

qat_status qat_q8_save(const qat_q8_model *m, const char *path) {
    if (!path || !*path) return qat_fail(QAT_ERR_ARG, "q8: empty output path");
    if (!m) return qat_fail(QAT_ERR_ARG, "%s: no model", path);
    qat_status st = validate(m, path, 1);
    if (st) return st; /* never write a model the loader would refuse */
    uint64_t bytes[ARR_COUNT] = {0};
    for (int i = 0; i < m->nlayers; i++)
        for (int a = 0; a < ARR_COUNT; a++)
            if (array_get(&m->layers[i], a))
                bytes[a] += (uint64_t)array_count(&m->layers[i], a) * elem_bytes(arrays[a].type);
    unsigned char *model = malloc(MODEL_BYTES);
    unsigned char *layers = malloc((size_t)m->nlayers * LAYER_BYTES);
    unsigned char *data[ARR_COUNT] = {0};
    int nomem = !model || !layers;
    for (int a = 0; a < ARR_COUNT && !nomem; a++)
        nomem = !(data[a] = malloc(bytes[a] ? (size_t)bytes[a] : 1));
    if (!nomem) {
        writer w = {model};
        write_model(&w, m);
        w.p = layers;
        for (int i = 0; i < m->nlayers; i++) write_layer(&w, &m->layers[i]);
        for (int a = 0; a < ARR_COUNT; a++) {
            w.p = data[a];
            for (int i = 0; i < m->nlayers; i++) write_array(&w, &m->layers[i], a);
        }
        qat_section secs[2 + ARR_COUNT] = {
            {"model", model, MODEL_BYTES},
            {"layers", layers, (uint64_t)m->nlayers * LAYER_BYTES},
        };
        for (int a = 0; a < ARR_COUNT; a++) {
            snprintf(secs[2 + a].name, sizeof secs[2 + a].name, "%s", arrays[a].name);
            secs[2 + a].data = data[a];
            secs[2 + a].size = bytes[a];
        }
        st = qat_container_write(path, Q8_MAGIC, Q8_VERSION, secs, 2 + ARR_COUNT);
    } else {
        st = qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path);
    }
    free(model);
    free(layers);
    for (int a = 0; a < ARR_COUNT; a++) free(data[a]);
    return st;
}

/* ---- load ------------------------------------------------------------------------------------ */

/* Reads array a of every layer (per the masks) from its section, which must be used exactly. */
static qat_status read_arrays(const qat_container *c, const char *what, qat_q8_model *m,
                              const unsigned *masks, int a) {
    const void *data;
    uint64_t size;
    qat_status st = qat_container_get(c, arrays[a].name, 0, &data, &size);
    if (st) return st;
    reader r = {data};
    uint64_t left = size;
    for (int i = 0; i < m->nlayers; i++) {
        qat_q8_layer *L = &m->layers[i];
        if (!((masks[i] >> a) & 1)) continue;
        /* geometry validated: count <= 2^16 * 2^24, no overflow in bytes */
        const int64_t n = array_count(L, a);
        const uint64_t need = (uint64_t)n * elem_bytes(arrays[a].type);
        if (need > left)
            return layer_fail(QAT_ERR_FORMAT, what, i, L, 1,
                              "%s array of %lld elements runs past the end of section '%s' "
                              "(%llu bytes left)", arrays[a].name, (long long)n, arrays[a].name,
                              (unsigned long long)left);
        void *v = read_array(&r, a, n);
        if (!v) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", what);
        array_set(L, a, v);
        left -= need;
    }
    if (left)
        return qat_fail(QAT_ERR_FORMAT, "%s: section '%s' has %llu bytes beyond its arrays "
                        "(file corrupt)", what, arrays[a].name, (unsigned long long)left);
    return QAT_OK;
}

static qat_status parse_model(const qat_container *c, const char *what, qat_q8_model *m) {
    const void *data;
    qat_status st = qat_container_get(c, "model", MODEL_BYTES, &data, NULL);
    if (st) return st;
    reader r = {data};
    read_model(&r, m);
    if (!zero_tail(m->qconfig, sizeof m->qconfig) || !zero_tail(m->arch, sizeof m->arch))
        return qat_fail(QAT_ERR_FORMAT, "%s: nonzero bytes after the NUL of the qconfig or "
                        "architecture name (file corrupt)", what);
    const int32_t n = m->nlayers;
    if (n < 1 || n > QAT_Q8_MAX_LAYERS) {
        m->nlayers = 0; /* nothing allocated yet: qat_q8_free must not walk layers */
        return qat_fail(QAT_ERR_FORMAT, "%s: %d layers (must be 1..%d)", what, n,
                        QAT_Q8_MAX_LAYERS);
    }
    if ((st = qat_container_get(c, "layers", (uint64_t)n * LAYER_BYTES, &data, NULL))) return st;
    unsigned *masks = calloc((size_t)n, sizeof *masks);
    m->layers = calloc((size_t)n, sizeof *m->layers);
    if (!masks || !m->layers) {
        free(masks);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory for %d layers", what, n);
    }
    r.p = data;
    for (int i = 0; i < n && !st; i++) st = read_layer(&r, &m->layers[i], i, what, &masks[i]);
    /* Shapes first: array sizes are derived from them. */
    if (!st) st = validate(m, what, 0);
    for (int i = 0; i < n && !st; i++) st = check_array_set(what, i, &m->layers[i], masks[i]);
    for (int a = 0; a < ARR_COUNT && !st; a++) st = read_arrays(c, what, m, masks, a);
    free(masks);
    if (!st && qat_container_count(c) != 2 + ARR_COUNT)
        st = qat_fail(QAT_ERR_FORMAT, "%s: %d sections, expected %d (unknown section)", what,
                      qat_container_count(c), 2 + ARR_COUNT);
    if (!st) st = validate(m, what, 1);
    return st;
}

static qat_status load_from(qat_container *c, const char *what, qat_q8_model **out) {
    qat_q8_model *m = calloc(1, sizeof *m);
    qat_status st =
        m ? parse_model(c, what, m) : qat_fail(QAT_ERR_NOMEM, "%s: out of memory", what);
    qat_container_free(c);
    if (st) {
        qat_q8_free(m);
        return st;
    }
    *out = m;
    return QAT_OK;
}

qat_status qat_q8_load(const char *path, qat_q8_model **out) {
    if (!out) return qat_fail(QAT_ERR_ARG, "q8: no output pointer");
    *out = NULL;
    if (!path) return qat_fail(QAT_ERR_ARG, "q8: no path");
    qat_container *c;
    qat_status st = qat_container_read(path, Q8_MAGIC, Q8_VERSION, &c);
    return st ? st : load_from(c, path, out);
}

qat_status qat_q8_load_memory(const void *buf, size_t size, const char *name, qat_q8_model **out) {
    if (!out) return qat_fail(QAT_ERR_ARG, "q8: no output pointer");
    *out = NULL;
    if (!name) name = "<memory>";
    qat_container *c;
    qat_status st = qat_container_read_memory(buf, size, name, Q8_MAGIC, Q8_VERSION, &c);
    return st ? st : load_from(c, name, out);
}
