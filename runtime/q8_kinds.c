/* What the .q8 format knows of each INT8 layer kind (qat_q8_kind_desc, runtime/q8.h): the
 * arrays it carries, its invariants beyond those every layer has, its weights and MACs. One row
 * per kind in qat_q8_kinds[]; the runtime's rows are in runtime/rt_kinds.c, the simulation's in
 * export/qsim.c. */
#include "q8_internal.h"

#define ARR(a) QAT_Q8_ARR_BIT(QAT_Q8_ARR_##a)

/* The product of n factors; 0 when one is out of range or the product overflows. */
static int64_t product(const int64_t *f, int n) {
    int64_t p = 1;
    for (int j = 0; j < n; j++)
        if (f[j] < 1 || __builtin_mul_overflow(p, f[j], &p)) return 0;
    return p;
}

/* ---- conv: dense KxK or depthwise, requantized to u8 ------------------------------------------ */

static qat_status check_conv_geometry(const qat_q8_model *m, const char *what, int i) {
    const qat_q8_layer *L = &m->layers[i];
    if (L->k < 1 || L->k > Q8_MAX_DIM || L->stride < 1 || L->stride > Q8_MAX_DIM)
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1, "kernel %d / stride %d (need 1..%d)",
                          L->k, L->stride, Q8_MAX_DIM);
    if (L->pad < 0 || L->pad >= L->k)
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1, "pad %d outside 0..k-1 (k %d)", L->pad,
                          L->k);
    const int64_t hh = (int64_t)L->in_h + 2 * (int64_t)L->pad - L->k;
    const int64_t ww = (int64_t)L->in_w + 2 * (int64_t)L->pad - L->k;
    if (hh < 0 || ww < 0)
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                          "kernel %d larger than padded input %lldx%lld", L->k,
                          (long long)(hh + L->k), (long long)(ww + L->k));
    if (hh / L->stride + 1 != L->out_h || ww / L->stride + 1 != L->out_w)
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                          "output %dx%d, but k %d stride %d pad %d on %dx%d give %lldx%lld",
                          L->out_h, L->out_w, L->k, L->stride, L->pad, L->in_h, L->in_w,
                          (long long)(hh / L->stride + 1), (long long)(ww / L->stride + 1));
    if (L->groups == 1) {
        if ((int64_t)L->k * L->k * L->in_c > Q8_MAX_GEMM_K)
            return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                              "k*k*in_c = %lld exceeds the GEMM limit %d",
                              (long long)L->k * L->k * L->in_c, Q8_MAX_GEMM_K);
    } else if (L->groups == L->in_c && L->out_c == L->in_c) {
        if ((int64_t)L->k * L->k > QAT_I8_DW_MAX_TAPS)
            return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                              "depthwise k*k = %lld exceeds %d taps", (long long)L->k * L->k,
                              QAT_I8_DW_MAX_TAPS);
    } else {
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                          "groups %d with in_c %d, out_c %d (need 1 or depthwise: groups == "
                          "in_c == out_c)", L->groups, L->in_c, L->out_c);
    }
    return QAT_OK;
}

static qat_status conv_check(const qat_q8_model *m, const char *what, int i) {
    const qat_q8_layer *L = &m->layers[i];
    qat_status st;
    if ((st = check_conv_geometry(m, what, i)) || (st = qat_q8_check_wbits(what, i, L))) return st;
    return qat_q8_check_output_qparams(what, i, L);
}

static int64_t conv_weights_per_channel(const qat_q8_layer *L) {
    return (int64_t)L->k * L->k * (L->groups == 1 ? L->in_c : 1);
}

static int64_t conv_macs(const qat_q8_layer *L) {
    if (L->groups != 1 && (L->groups != L->in_c || L->k < 1)) return 0;
    /* Exact for a validated layer; 0 when a factor is out of range or the product overflows. */
    const int64_t f[] = {L->out_h, L->out_w, L->out_c, L->k, L->k, L->groups != 1 ? 1 : L->in_c};
    return product(f, 6);
}

/* ---- add: the residual sum of two u8 values ----------------------------------------------------- */

static qat_status add_check(const qat_q8_model *m, const char *what, int i) {
    const qat_q8_layer *L = &m->layers[i];
    qat_status st;
    if ((st = qat_q8_check_operand(m, what, i, "skip", L->skip, L->sb, L->zb))) return st;
    if (L->out_h != L->in_h || L->out_w != L->in_w || L->out_c != L->in_c)
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                                 "add output %dx%dx%d != input %dx%dx%d", L->out_h, L->out_w,
                                 L->out_c, L->in_h, L->in_w, L->in_c);
    return qat_q8_check_output_qparams(what, i, L);
}

/* ---- avgpool: global average pool to 1x1xC ------------------------------------------------------ */

static qat_status avgpool_check(const qat_q8_model *m, const char *what, int i) {
    const qat_q8_layer *L = &m->layers[i];
    if (L->out_h != 1 || L->out_w != 1 || L->out_c != L->in_c)
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                                 "global average pool output %dx%dx%d (must be 1x1x%d)", L->out_h,
                                 L->out_w, L->out_c, L->in_c);
    if ((int64_t)L->in_h * L->in_w > Q8_MAX_POOL_HW)
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1, "pool over %dx%d > 2^23 pixels",
                                 L->in_h, L->in_w);
    if (!qat_q8_pos_finite(L->pool_mult))
        return qat_q8_layer_fail(QAT_ERR_NUMERIC, what, i, L, 1,
                                 "pool multiplier %g is not finite and > 0", (double)L->pool_mult);
    return qat_q8_check_output_qparams(what, i, L);
}

/* ---- linear: the classifier, dequantized to float logits ---------------------------------------- */

static qat_status linear_check(const qat_q8_model *m, const char *what, int i) {
    const qat_q8_layer *L = &m->layers[i];
    if (L->in_h != 1 || L->in_w != 1 || L->out_h != 1 || L->out_w != 1)
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                                 "linear shape %dx%dx%d -> %dx%dx%d (must be 1x1xC)", L->in_h,
                                 L->in_w, L->in_c, L->out_h, L->out_w, L->out_c);
    if (L->out_c != m->nclasses)
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1, "%d outputs for %d classes",
                                 L->out_c, m->nclasses);
    return qat_q8_check_wbits(what, i, L);
}

static int64_t linear_weights_per_channel(const qat_q8_layer *L) { return L->in_c; }

static int64_t linear_macs(const qat_q8_layer *L) {
    const int64_t f[] = {L->out_h, L->out_w, L->out_c, L->in_c};
    return product(f, 4);
}

/* ---- lut: an activation as a 256-entry table of output codes ----------------------------------- */

static qat_status lut_check(const qat_q8_model *m, const char *what, int i) {
    const qat_q8_layer *L = &m->layers[i];
    if (L->out_h != L->in_h || L->out_w != L->in_w || L->out_c != L->in_c)
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                                 "lut output %dx%dx%d != input %dx%dx%d", L->out_h, L->out_w,
                                 L->out_c, L->in_h, L->in_w, L->in_c);
    return qat_q8_check_output_qparams(what, i, L);
}

/* ---- mul: a feature map times a per-channel gate (squeeze-excite) ------------------------------- */

static qat_status mul_check(const qat_q8_model *m, const char *what, int i) {
    const qat_q8_layer *L = &m->layers[i];
    if (L->skip < -1 || L->skip >= i)
        return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, 1,
                                 "gate reads value %d, not produced before it (-1..%d)", L->skip, i - 1);
    const int32_t gh = L->skip < 0 ? m->in_h : m->layers[L->skip].out_h;
    const int32_t gw = L->skip < 0 ? m->in_w : m->layers[L->skip].out_w;
    const int32_t gc = L->skip < 0 ? m->in_c : m->layers[L->skip].out_c;
    const float gs = L->skip < 0 ? m->in_scale : m->layers[L->skip].sy;
    const int32_t gz = L->skip < 0 ? m->in_zp : m->layers[L->skip].zy;
    if (gh != 1 || gw != 1 || gc != L->in_c)
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                                 "gate shape %dx%dx%d (must be 1x1x%d)", gh, gw, gc, L->in_c);
    if (!qat_q8_is_u8(L->zb) || !qat_q8_pos_finite(L->sb) || L->sb != gs || L->zb != gz)
        return qat_q8_layer_fail(QAT_ERR_MISMATCH, what, i, L, 1,
                                 "gate qparams (%g, %d) != value %d's output qparams (%g, %d)",
                                 (double)L->sb, L->zb, L->skip, (double)gs, gz);
    if (L->out_h != L->in_h || L->out_w != L->in_w || L->out_c != L->in_c)
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                                 "mul output %dx%dx%d != input %dx%dx%d", L->out_h, L->out_w,
                                 L->out_c, L->in_h, L->in_w, L->in_c);
    return qat_q8_check_output_qparams(what, i, L);
}

/* ---- float layers and their edges (format version 3) ------------------------------------------- */

/* A float value carries no qparams, and a float layer no weight bit width. */
static qat_status check_float_value(const char *what, int i, const qat_q8_layer *L) {
    if (L->sy != 0 || L->zy != 0 || L->lo != 0 || L->hi != 0)
        return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, 1,
                                 "float output with qparams (%g, %d) and clamp [%d, %d] (must be 0)",
                                 (double)L->sy, L->zy, L->lo, L->hi);
    return QAT_OK;
}

static qat_status check_same_shape(const char *what, int i, const qat_q8_layer *L) {
    if (L->out_h != L->in_h || L->out_w != L->in_w || L->out_c != L->in_c)
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1, "%s output %dx%dx%d != input %dx%dx%d",
                                 qat_q8_kinds[L->kind].name, L->out_h, L->out_w, L->out_c, L->in_h,
                                 L->in_w, L->in_c);
    return QAT_OK;
}

static qat_status check_no_wbits(const char *what, int i, const qat_q8_layer *L) {
    if (L->wbits != 0)
        return qat_q8_layer_fail(QAT_ERR_FORMAT, what, i, L, 1, "float layer with weight bits %d "
                                 "(must be 0)", L->wbits);
    return QAT_OK;
}

static qat_status dequant_check(const qat_q8_model *m, const char *what, int i) {
    const qat_q8_layer *L = &m->layers[i];
    qat_status st = check_same_shape(what, i, L);
    return st ? st : check_float_value(what, i, L);
}

static qat_status quant_check(const qat_q8_model *m, const char *what, int i) {
    const qat_q8_layer *L = &m->layers[i];
    qat_status st = check_same_shape(what, i, L);
    return st ? st : qat_q8_check_output_qparams(what, i, L);
}

static qat_status fconv_check(const qat_q8_model *m, const char *what, int i) {
    const qat_q8_layer *L = &m->layers[i];
    qat_status st;
    if ((st = check_conv_geometry(m, what, i)) || (st = check_no_wbits(what, i, L))) return st;
    return check_float_value(what, i, L);
}

static qat_status flinear_check(const qat_q8_model *m, const char *what, int i) {
    const qat_q8_layer *L = &m->layers[i];
    if (L->in_h != 1 || L->in_w != 1 || L->out_h != 1 || L->out_w != 1)
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                                 "flinear shape %dx%dx%d -> %dx%dx%d (must be 1x1xC)", L->in_h,
                                 L->in_w, L->in_c, L->out_h, L->out_w, L->out_c);
    if (L->out_c != m->nclasses)
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1, "%d outputs for %d classes",
                                 L->out_c, m->nclasses);
    return check_no_wbits(what, i, L);
}

/* ---- windowed pools (format version 5) ---------------------------------------------------------- */

/* k x k windows, 2 pad <= k (every window holds a real pixel), OH/OW as stated, C kept. */
static qat_status check_pool_geometry(const char *what, int i, const qat_q8_layer *L) {
    if (L->k < 1 || L->k > 64 || L->stride < 1 || L->stride > Q8_MAX_DIM || L->pad < 0 || 2 * L->pad > L->k)
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1, "window %d / stride %d / pad %d (need k 1..64, "
                                 "stride >= 1, 0 <= 2 pad <= k)", L->k, L->stride, L->pad);
    const int64_t hh = (int64_t)L->in_h + 2 * (int64_t)L->pad - L->k;
    const int64_t ww = (int64_t)L->in_w + 2 * (int64_t)L->pad - L->k;
    if (hh < 0 || ww < 0 || hh / L->stride + 1 != L->out_h || ww / L->stride + 1 != L->out_w ||
        L->out_c != L->in_c)
        return qat_q8_layer_fail(QAT_ERR_SHAPE, what, i, L, 1,
                                 "output %dx%dx%d does not follow from window %d stride %d pad %d on %dx%dx%d",
                                 L->out_h, L->out_w, L->out_c, L->k, L->stride, L->pad, L->in_h, L->in_w, L->in_c);
    return QAT_OK;
}

static qat_status maxpool_check(const qat_q8_model *m, const char *what, int i) {
    const qat_q8_layer *L = &m->layers[i];
    qat_status st = check_pool_geometry(what, i, L);
    if (st) return st;
    if (L->sy != L->sx || L->zy != L->zx)
        return qat_q8_layer_fail(QAT_ERR_MISMATCH, what, i, L, 1, "maxpool output qparams (%g, %d) != its input's "
                                 "(%g, %d)", (double)L->sy, L->zy, (double)L->sx, L->zx);
    return qat_q8_check_output_qparams(what, i, L);
}

static qat_status avgpool2d_check(const qat_q8_model *m, const char *what, int i) {
    const qat_q8_layer *L = &m->layers[i];
    qat_status st = check_pool_geometry(what, i, L);
    if (st) return st;
    if (!qat_q8_pos_finite(L->pool_mult))
        return qat_q8_layer_fail(QAT_ERR_NUMERIC, what, i, L, 1,
                                 "pool multiplier %g is not finite and > 0", (double)L->pool_mult);
    return qat_q8_check_output_qparams(what, i, L);
}

/* ---- the table ---------------------------------------------------------------------------------- */

const qat_q8_kind_desc qat_q8_kinds[QAT_Q8_KIND_COUNT] = {
    [QAT_Q8_CONV] = {"conv", ARR(WEIGHT) | ARR(BIAS) | ARR(MULT) | ARR(WSCALE),
                     ARR(WEIGHT) | ARR(BIAS) | ARR(MULT) | ARR(WSCALE), 0, 0, conv_check,
                     conv_weights_per_channel, conv_macs},
    [QAT_Q8_ADD] = {"add", 0, 0, 1, 0, add_check, NULL, NULL},
    [QAT_Q8_AVGPOOL] = {"avgpool", 0, 0, 0, 0, avgpool_check, NULL, NULL},
    /* fbias optional: qat_i8_gemm_f32 accepts a classifier without bias */
    [QAT_Q8_LINEAR] = {"linear", ARR(WEIGHT) | ARR(MULT) | ARR(WSCALE),
                       ARR(WEIGHT) | ARR(MULT) | ARR(FBIAS) | ARR(WSCALE), 0, 1, linear_check,
                       linear_weights_per_channel, linear_macs},
    [QAT_Q8_LUT] = {"lut", ARR(TABLE), ARR(TABLE), 0, 0, lut_check, NULL, NULL},
    [QAT_Q8_MUL] = {"mul", ARR(MULT), ARR(MULT), 1, 0, mul_check, NULL, NULL},
    [QAT_Q8_DEQUANT] = {.name = "dequant", .check = dequant_check, .float_value = 1},
    [QAT_Q8_QUANT] = {.name = "quant", .check = quant_check, .float_input = 1},
    [QAT_Q8_FCONV] = {.name = "fconv", .arrays_need = ARR(FWEIGHT) | ARR(FBIAS),
                      .arrays_allow = ARR(FWEIGHT) | ARR(FBIAS), .check = fconv_check,
                      .weights_per_channel = conv_weights_per_channel, .macs = conv_macs,
                      .float_input = 1, .float_value = 1},
    /* fbias optional, as LINEAR's */
    [QAT_Q8_FLINEAR] = {.name = "flinear", .arrays_need = ARR(FWEIGHT),
                        .arrays_allow = ARR(FWEIGHT) | ARR(FBIAS), .float_output = 1,
                        .check = flinear_check, .weights_per_channel = linear_weights_per_channel,
                        .macs = linear_macs, .float_input = 1},
    [QAT_Q8_MAXPOOL] = {.name = "maxpool", .check = maxpool_check},
    [QAT_Q8_AVGPOOL2D] = {.name = "avgpool2d", .check = avgpool2d_check},
};
