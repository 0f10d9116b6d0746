/* How the INT8 runtime runs each layer kind (qat_rt_kind, runtime/rt_internal.h): prepare once
 * at load (pack the weights, copy the constants), run per batch on the kernels of
 * kernels/int8.h, optionally a oneDNN primitive (kernels/int8_onednn.h). One row per kind in
 * qat_rt_kinds[]; what the format knows of a kind is runtime/q8_kinds.c. */
#include "rt_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RT_ALIGN 64

enum { RT_CONV_GEMM = 0, RT_CONV_IM2COL, RT_CONV_DW };

static void *aligned_alloc_zero(size_t n) {
    const size_t sz = ((n ? n : 1) + RT_ALIGN - 1) / RT_ALIGN * RT_ALIGN;
    void *p = aligned_alloc(RT_ALIGN, sz);
    if (p) memset(p, 0, sz);
    return p;
}

static float *copy_floats(const float *src, int n) {
    float *p = malloc(sizeof(float) * (size_t)n);
    if (p) memcpy(p, src, sizeof(float) * (size_t)n);
    return p;
}

static qat_status prepare_gemm(qat_rt_node *l, const qat_q8_layer *L, int K) {
    size_t sz = qat_i8_gemm_packed_size(L->out_c, K);
    if (!sz) return qat_fail(QAT_ERR_SHAPE, "layer '%s': gemm %dx%d out of range", L->name, L->out_c, K);
    if (!(l->pack = aligned_alloc_zero(sz))) return qat_fail(QAT_ERR_NOMEM, "layer '%s': out of memory", L->name);
    return qat_i8_gemm_pack(&l->gw, l->pack, sz, L->weight, L->bias, L->out_c, K, L->zx);
}

/* ---- conv: 1x1 as one GEMM, KxK through im2col, depthwise ---------------------------------------- */

static qat_status conv_prepare(qat_rt_node *l, const qat_q8_layer *L) {
    if (!(l->mult = copy_floats(L->mult, L->out_c))) return qat_fail(QAT_ERR_NOMEM, "out of memory");
    l->rq = (qat_i8_requant){l->mult, L->zy, L->lo, L->hi};
    l->cp = (qat_i8_conv_params){L->k, L->k, L->stride, L->pad};
    if (L->groups > 1) {
        l->variant = RT_CONV_DW;
        snprintf(l->kind_text, sizeof l->kind_text, "dw%dx%d/s%d", L->k, L->k, L->stride);
        size_t sz = qat_i8_dw_packed_size(L->out_c, L->k, L->k);
        if (!sz) return qat_fail(QAT_ERR_SHAPE, "layer '%s': depthwise %d channels %dx%d out of range",
                                 L->name, L->out_c, L->k, L->k);
        if (!(l->pack = aligned_alloc_zero(sz))) return qat_fail(QAT_ERR_NOMEM, "layer '%s': out of memory", L->name);
        return qat_i8_dw_pack(&l->dw, l->pack, sz, L->weight, L->bias, L->out_c, L->k, L->k, L->zx);
    }
    l->variant = (L->k == 1 && L->stride == 1 && L->pad == 0) ? RT_CONV_GEMM : RT_CONV_IM2COL;
    if (l->variant == RT_CONV_GEMM)
        snprintf(l->kind_text, sizeof l->kind_text, "pw1x1");
    else
        snprintf(l->kind_text, sizeof l->kind_text, "conv%dx%d/s%d", L->k, L->k, L->stride);
    return prepare_gemm(l, L, L->k * L->k * L->in_c);
}

static void conv_prepare_onednn(qat_rt_node *l, const qat_q8_layer *L) {
    qat_i8_dnnl_conv_desc d = {.h = L->in_h, .w = L->in_w, .cin = L->in_c, .cout = L->out_c,
                               .k = L->k, .stride = L->stride, .pad = L->pad,
                               .groups = L->groups, .weight = L->weight, .bias = L->bias,
                               .mult = L->mult, .zx = L->zx, .zy = L->zy, .lo = L->lo,
                               .hi = L->hi};
    if (qat_i8_dnnl_conv_create(&l->dconv, &d)) l->dconv = NULL;
}

static qat_status conv_run(qat_rt_node *l, int n, const uint8_t *x, const uint8_t *x2, uint8_t *y,
                           float *logits, void *scratch, size_t scratch_size) {
    qat_i8_dims d = {n, l->in_h, l->in_w, l->in_c};
    int64_t pix = (int64_t)n * l->in_h * l->in_w;
    switch (l->variant) {
    case RT_CONV_GEMM:
        if (pix > INT32_MAX) return qat_fail(QAT_ERR_ARG, "runtime: batch %d too large", n);
        return qat_i8_gemm_u8(y, l->out_c, x, l->in_c, (int)pix, &l->gw, &l->rq);
    case RT_CONV_IM2COL: return qat_i8_conv(y, x, &d, &l->cp, &l->gw, &l->rq, scratch, scratch_size);
    default: return qat_i8_dwconv(y, x, &d, &l->cp, &l->dw, &l->rq, scratch, scratch_size);
    }
}

static size_t conv_scratch(const qat_rt_node *l, int n) {
    qat_i8_dims d = {n, l->in_h, l->in_w, l->in_c};
    return l->variant == RT_CONV_IM2COL ? qat_i8_conv_get_buffer_size(&d, &l->cp)
           : l->variant == RT_CONV_DW   ? qat_i8_dwconv_get_buffer_size(&d, &l->cp)
                                        : 0;
}

/* ---- add ------------------------------------------------------------------------------------------ */

static qat_status add_prepare(qat_rt_node *l, const qat_q8_layer *L) {
    snprintf(l->kind_text, sizeof l->kind_text, "add");
    l->ap = (qat_i8_add_params){L->sx, L->sb, 1.0f / L->sy, L->zx, L->zb, L->zy, L->lo, L->hi};
    return QAT_OK;
}

static qat_status add_run(qat_rt_node *l, int n, const uint8_t *x, const uint8_t *x2, uint8_t *y,
                          float *logits, void *scratch, size_t scratch_size) {
    return qat_i8_add(y, x, x2, (int64_t)n * l->in_h * l->in_w * l->in_c, &l->ap);
}

/* ---- avgpool ------------------------------------------------------------------------------------- */

static qat_status avgpool_prepare(qat_rt_node *l, const qat_q8_layer *L) {
    snprintf(l->kind_text, sizeof l->kind_text, "avgpool");
    l->pp = (qat_i8_pool_params){L->pool_mult, L->zx, L->zy, L->lo, L->hi};
    return QAT_OK;
}

static qat_status avgpool_run(qat_rt_node *l, int n, const uint8_t *x, const uint8_t *x2,
                              uint8_t *y, float *logits, void *scratch, size_t scratch_size) {
    qat_i8_dims d = {n, l->in_h, l->in_w, l->in_c};
    return qat_i8_global_avgpool(y, x, &d, &l->pp);
}

/* ---- linear: the logits ------------------------------------------------------------------------- */

static qat_status linear_prepare(qat_rt_node *l, const qat_q8_layer *L) {
    snprintf(l->kind_text, sizeof l->kind_text, "linear");
    if (!(l->mult = copy_floats(L->mult, L->out_c)) ||
        (L->fbias && !(l->fbias = copy_floats(L->fbias, L->out_c))))
        return qat_fail(QAT_ERR_NOMEM, "out of memory");
    return prepare_gemm(l, L, L->in_h * L->in_w * L->in_c);
}

static void linear_prepare_onednn(qat_rt_node *l, const qat_q8_layer *L) {
    if (L->bias) return; /* the oneDNN linear takes no int32 bias */
    qat_i8_dnnl_linear_desc d = {.in = L->in_h * L->in_w * L->in_c, .out = L->out_c,
                                 .weight = L->weight, .deq_scale = L->mult,
                                 .fbias = L->fbias, .zx = L->zx};
    if (qat_i8_dnnl_linear_create(&l->dlin, &d)) l->dlin = NULL;
}

static qat_status linear_run(qat_rt_node *l, int n, const uint8_t *x, const uint8_t *x2, uint8_t *y,
                             float *logits, void *scratch, size_t scratch_size) {
    int64_t K = (int64_t)l->in_h * l->in_w * l->in_c;
    return qat_i8_gemm_f32(logits, l->out_c, x, K, n, &l->gw, l->mult, l->fbias);
}

/* ---- lut: an activation as a table (kernels/int8.h, section 7) ---------------------------------- */

static qat_status lut_prepare(qat_rt_node *l, const qat_q8_layer *L) {
    snprintf(l->kind_text, sizeof l->kind_text, "lut %s", L->act == QAT_Q8_ACT_HARDSWISH ? "hswish"
                                                        : L->act == QAT_Q8_ACT_HARDSIGMOID ? "hsigmoid"
                                                        : L->act == QAT_Q8_ACT_SIGMOID ? "sigmoid" : "");
    if (!(l->pack = aligned_alloc_zero(256))) return qat_fail(QAT_ERR_NOMEM, "layer '%s': out of memory", L->name);
    memcpy(l->pack, L->table, 256);
    return QAT_OK;
}

static qat_status lut_run(qat_rt_node *l, int n, const uint8_t *x, const uint8_t *x2, uint8_t *y,
                          float *logits, void *scratch, size_t scratch_size) {
    return qat_i8_lut(y, x, (int64_t)n * l->in_h * l->in_w * l->in_c, l->pack);
}

/* ---- mul: squeeze-and-excite's rescale (kernels/int8.h, section 7) ------------------------------ */

static qat_status mul_prepare(qat_rt_node *l, const qat_q8_layer *L) {
    snprintf(l->kind_text, sizeof l->kind_text, "mul");
    if (!(l->mult = copy_floats(L->mult, L->out_c))) return qat_fail(QAT_ERR_NOMEM, "out of memory");
    l->mp = (qat_i8_mul_params){l->mult, L->zx, L->zb, L->zy, L->lo, L->hi};
    return QAT_OK;
}

static qat_status mul_run(qat_rt_node *l, int n, const uint8_t *x, const uint8_t *x2, uint8_t *y,
                          float *logits, void *scratch, size_t scratch_size) {
    qat_i8_dims d = {n, l->in_h, l->in_w, l->in_c};
    return qat_i8_channel_mul(y, x, x2, &d, &l->mp);
}

/* ---- float layers and their edges (kernels/int8.h, section 8) ---------------------------------- */

_Static_assert(QAT_F32_ACT_RELU == 1 && QAT_F32_ACT_RELU6 == 2 && QAT_F32_ACT_HARDSWISH == 3 &&
                   QAT_F32_ACT_HARDSIGMOID == 4, "qat_q8_f32_act's numbers (runtime/q8.h)");

static qat_status dequant_prepare(qat_rt_node *l, const qat_q8_layer *L) {
    snprintf(l->kind_text, sizeof l->kind_text, "dequant");
    l->qscale = L->sx, l->qzp = L->zx;
    return QAT_OK;
}

static qat_status dequant_run(qat_rt_node *l, int n, const uint8_t *x, const uint8_t *x2,
                              uint8_t *y, float *logits, void *scratch, size_t scratch_size) {
    qat_f32_dequant((float *)y, x, (int64_t)n * l->in_h * l->in_w * l->in_c, l->qscale, l->qzp);
    return QAT_OK;
}

static qat_status quant_prepare(qat_rt_node *l, const qat_q8_layer *L) {
    snprintf(l->kind_text, sizeof l->kind_text, "quant");
    l->qscale = 1.0f / L->sy; /* the float qat_quantize expects, as the simulation computes it */
    l->qzp = L->zy, l->qlo = L->lo, l->qhi = L->hi;
    return QAT_OK;
}

static qat_status quant_run(qat_rt_node *l, int n, const uint8_t *x, const uint8_t *x2, uint8_t *y,
                            float *logits, void *scratch, size_t scratch_size) {
    qat_f32_quant(y, (const float *)x, (int64_t)n * l->in_h * l->in_w * l->in_c, l->qscale, l->qzp,
                  l->qlo, l->qhi);
    return QAT_OK;
}

static qat_status prepare_float_weights(qat_rt_node *l, const qat_q8_layer *L, int k, int in_c,
                                        int groups) {
    const size_t nf = qat_f32_conv_packed_floats(L->out_c, k, in_c, groups);
    if (!(l->pack = aligned_alloc_zero(nf * sizeof(float))) ||
        (L->fbias && !(l->fbias = copy_floats(L->fbias, L->out_c))))
        return qat_fail(QAT_ERR_NOMEM, "layer '%s': out of memory", L->name);
    qat_f32_conv_pack(l->pack, L->fweight, L->out_c, k, in_c, groups);
    return QAT_OK;
}

static qat_status fconv_prepare(qat_rt_node *l, const qat_q8_layer *L) {
    snprintf(l->kind_text, sizeof l->kind_text, "f32 %s%dx%d/s%d", L->groups > 1 ? "dw" : "conv",
             L->k, L->k, L->stride);
    l->cp = (qat_i8_conv_params){L->k, L->k, L->stride, L->pad};
    l->variant = L->groups;
    l->fact = (qat_f32_act)qat_q8_f32_act(L->act);
    return prepare_float_weights(l, L, L->k, L->in_c, L->groups);
}

static qat_status fconv_run(qat_rt_node *l, int n, const uint8_t *x, const uint8_t *x2, uint8_t *y,
                            float *logits, void *scratch, size_t scratch_size) {
    qat_i8_dims d = {n, l->in_h, l->in_w, l->in_c};
    return qat_f32_conv((float *)y, (const float *)x, &d, &l->cp, l->out_c, l->variant, l->pack,
                        l->fbias, l->fact);
}

static qat_status flinear_prepare(qat_rt_node *l, const qat_q8_layer *L) {
    snprintf(l->kind_text, sizeof l->kind_text, "f32 linear");
    return prepare_float_weights(l, L, 1, L->in_c, 1);
}

static qat_status flinear_run(qat_rt_node *l, int n, const uint8_t *x, const uint8_t *x2,
                              uint8_t *y, float *logits, void *scratch, size_t scratch_size) {
    return qat_f32_linear(logits, (const float *)x, n, l->in_c, l->out_c, l->pack, l->fbias);
}

/* ---- windowed pools (kernels/int8.h, section 9) ----------------------------------------------- */

static qat_status maxpool_prepare(qat_rt_node *l, const qat_q8_layer *L) {
    snprintf(l->kind_text, sizeof l->kind_text, "maxpool%dx%d/s%d", L->k, L->k, L->stride);
    l->cp = (qat_i8_conv_params){L->k, L->k, L->stride, L->pad};
    l->qlo = L->lo, l->qhi = L->hi;
    return QAT_OK;
}

static qat_status maxpool_run(qat_rt_node *l, int n, const uint8_t *x, const uint8_t *x2, uint8_t *y,
                              float *logits, void *scratch, size_t scratch_size) {
    qat_i8_dims d = {n, l->in_h, l->in_w, l->in_c};
    return qat_i8_maxpool(y, x, &d, &l->cp, l->qlo, l->qhi);
}

static qat_status avgpool2d_prepare(qat_rt_node *l, const qat_q8_layer *L) {
    snprintf(l->kind_text, sizeof l->kind_text, "avgpool%dx%d/s%d", L->k, L->k, L->stride);
    l->cp = (qat_i8_conv_params){L->k, L->k, L->stride, L->pad};
    l->pp = (qat_i8_pool_params){L->pool_mult, L->zx, L->zy, L->lo, L->hi};
    return QAT_OK;
}

static qat_status avgpool2d_run(qat_rt_node *l, int n, const uint8_t *x, const uint8_t *x2,
                                uint8_t *y, float *logits, void *scratch, size_t scratch_size) {
    qat_i8_dims d = {n, l->in_h, l->in_w, l->in_c};
    return qat_i8_avgpool(y, x, &d, &l->cp, &l->pp);
}

/* ---- the table ---------------------------------------------------------------------------------- */

const qat_rt_kind qat_rt_kinds[QAT_Q8_KIND_COUNT] = {
    [QAT_Q8_CONV] = {conv_prepare, conv_prepare_onednn, conv_run, conv_scratch},
    [QAT_Q8_ADD] = {add_prepare, NULL, add_run, NULL},
    [QAT_Q8_AVGPOOL] = {avgpool_prepare, NULL, avgpool_run, NULL},
    [QAT_Q8_LINEAR] = {linear_prepare, linear_prepare_onednn, linear_run, NULL},
    /* oneDNN 2.6 has no u8 lookup-table or broadcast-multiply primitive with this requantization:
     * these two always run the native kernels (the report says "native" for them) */
    [QAT_Q8_LUT] = {lut_prepare, NULL, lut_run, NULL},
    [QAT_Q8_MUL] = {mul_prepare, NULL, mul_run, NULL},
    /* float layers run on kernels/int8_float.c on every backend (the report says "native") */
    [QAT_Q8_DEQUANT] = {dequant_prepare, NULL, dequant_run, NULL},
    [QAT_Q8_QUANT] = {quant_prepare, NULL, quant_run, NULL},
    [QAT_Q8_FCONV] = {fconv_prepare, NULL, fconv_run, NULL},
    [QAT_Q8_FLINEAR] = {flinear_prepare, NULL, flinear_run, NULL},
    /* windowed pools: scalar kernels on every backend (kernels/int8_pool.c) */
    [QAT_Q8_MAXPOOL] = {maxpool_prepare, NULL, maxpool_run, NULL},
    [QAT_Q8_AVGPOOL2D] = {avgpool2d_prepare, NULL, avgpool2d_run, NULL},
};
