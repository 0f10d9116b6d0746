/* The integer-exact simulation of an INT8 model (runtime/q8.h) on the float engine, and the
 * evaluation of a PTQ/QAT model through it; see export.h. */
#include "export.h"
#include "int8.h"
#include "requant.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the integer-exact simulation ---------------------------------------------------------- */

/* Largest |partial sum| a float conv/linear can form on this layer's inputs (|x - zx| <= 255):
 * below 2^24 every float partial sum is an exact integer, in any summation order. */
static int float_exact(const qat_q8_layer *Y) {
    const int64_t R = qat_q8_kinds[Y->kind].weights_per_channel(Y);
    for (int c = 0; c < Y->out_c; c++) {
        int64_t s = 0;
        for (int64_t k = 0; k < R; k++) s += abs(Y->weight[c * R + k]);
        if (255 * s >= (1 << 24)) return 0;
    }
    return 1;
}

/* acc of one conv output element with integer arithmetic (layers beyond float_exact). */
static int32_t conv_acc_int(const qat_q8_layer *Y, const uint8_t *x, int n, int oh, int ow, int c) {
    int cpg = Y->in_c / Y->groups, g = c / (Y->out_c / Y->groups);
    int64_t acc = Y->bias[c];
    for (int i = 0; i < Y->k; i++)
        for (int j = 0; j < Y->k; j++) {
            int ih = oh * Y->stride - Y->pad + i, iw = ow * Y->stride - Y->pad + j;
            if (ih < 0 || ih >= Y->in_h || iw < 0 || iw >= Y->in_w) continue;
            const uint8_t *px = x + (((int64_t)n * Y->in_h + ih) * Y->in_w + iw) * Y->in_c + (int64_t)g * cpg;
            const int8_t *w = Y->weight + (((int64_t)c * Y->k + i) * Y->k + j) * cpg;
            for (int ci = 0; ci < cpg; ci++) acc += (int64_t)((int32_t)px[ci] - Y->zx) * w[ci];
        }
    return (int32_t)acc;
}

/* x - zx as a float tensor of the given shape. */
static qat_tensor *centered(qat_ctx *ctx, const uint8_t *x, int32_t zx, int ndim, const int *shape) {
    qat_tensor *t = qat_tensor_new(ctx, ndim, shape);
    float *d = t->data;
    const int64_t n = t->numel;
#pragma omp parallel for num_threads(qat_get_threads()) if (n > 65536) schedule(static)
    for (int64_t i = 0; i < n; i++) d[i] = (float)((int32_t)x[i] - zx);
    return t;
}

/* The integer weights of Y as floats of the given shape (OHWI, or (out, in)). */
static qat_tensor *weights_f(qat_ctx *ctx, const qat_q8_layer *Y, int ndim, const int *shape) {
    qat_tensor *t = qat_tensor_new(ctx, ndim, shape);
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = (float)Y->weight[i];
    return t;
}

/* ---- one simulation per INT8 layer kind: a (and b, the second operand) -> y, or logits ------- */

static void sim_conv(qat_ctx *ctx, const qat_q8_layer *Y, const uint8_t *x, const uint8_t *b,
                     int N, uint8_t *y, float *logits) {
    int64_t HWo = (int64_t)Y->out_h * Y->out_w;
    const int C = Y->out_c;
    if (!float_exact(Y)) {
        for (int n = 0; n < N; n++)
            for (int64_t p = 0; p < HWo; p++)
                for (int c = 0; c < C; c++)
                    y[((int64_t)n * HWo + p) * C + c] = (uint8_t)qat_requantize(
                        conv_acc_int(Y, x, n, (int)(p / Y->out_w), (int)(p % Y->out_w), c), Y->mult[c], Y->zy, Y->lo, Y->hi);
        return;
    }
    int xs[4] = {N, Y->in_h, Y->in_w, Y->in_c}, ws[4] = {Y->out_c, Y->k, Y->k, Y->in_c / Y->groups};
    qat_tensor *acc = qat_conv2d(ctx, centered(ctx, x, Y->zx, 4, xs), weights_f(ctx, Y, 4, ws), NULL, Y->stride, Y->pad, Y->groups);
    qat_requant_rows(y, acc->data, acc->numel / C, C, Y->bias, Y->mult, Y->zy, Y->lo, Y->hi);
}

static void sim_linear(qat_ctx *ctx, const qat_q8_layer *Y, const uint8_t *x, const uint8_t *b,
                       int N, uint8_t *yc, float *y) {
    const int O = Y->out_c, I = Y->in_c;
    if (!float_exact(Y)) {
        for (int n = 0; n < N; n++)
            for (int o = 0; o < O; o++) {
                int64_t acc = 0;
                for (int k = 0; k < I; k++) acc += (int64_t)((int32_t)x[(int64_t)n * I + k] - Y->zx) * Y->weight[(int64_t)o * I + k];
                y[(int64_t)n * O + o] = qat_i8_dequant_f32((int32_t)acc, Y->mult[o], Y->fbias, o);
            }
        return;
    }
    int xs[2] = {N, I}, ws[2] = {O, I};
    qat_tensor *acc = qat_linear(ctx, centered(ctx, x, Y->zx, 2, xs), weights_f(ctx, Y, 2, ws), NULL);
    for (int64_t i = 0; i < acc->numel; i++)
        y[i] = qat_i8_dequant_f32((int32_t)acc->data[i], Y->mult[i % O], Y->fbias, (int)(i % O));
}

static void sim_add(qat_ctx *ctx, const qat_q8_layer *Y, const uint8_t *a, const uint8_t *b,
                    int N, uint8_t *y, float *logits) {
    const int64_t n = (int64_t)N * Y->out_h * Y->out_w * Y->out_c;
    qat_i8_add_params p = {Y->sx, Y->sb, 1.0f / Y->sy, Y->zx, Y->zb, Y->zy, Y->lo, Y->hi};
    for (int64_t i = 0; i < n; i++) y[i] = qat_i8_add_one(a[i], b[i], &p);
}

static void sim_avgpool(qat_ctx *ctx, const qat_q8_layer *Y, const uint8_t *x, const uint8_t *b,
                        int N, uint8_t *y, float *logits) {
    const int HW = Y->in_h * Y->in_w, C = Y->in_c;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            int32_t s = 0;
            for (int p = 0; p < HW; p++) s += x[((int64_t)n * HW + p) * C + c];
            y[(int64_t)n * C + c] = (uint8_t)qat_requantize(s - HW * Y->zx, Y->pool_mult, Y->zy, Y->lo, Y->hi);
        }
}

/* The table is the simulation: convert built it from the fake-quant arithmetic. */
static void sim_lut(qat_ctx *ctx, const qat_q8_layer *Y, const uint8_t *x, const uint8_t *b, int N,
                    uint8_t *y, float *logits) {
    const int64_t n = (int64_t)N * Y->out_h * Y->out_w * Y->out_c;
    for (int64_t i = 0; i < n; i++) y[i] = Y->table[x[i]];
}

static void sim_mul(qat_ctx *ctx, const qat_q8_layer *Y, const uint8_t *x, const uint8_t *g, int N,
                    uint8_t *y, float *logits) {
    const int64_t HW = (int64_t)Y->in_h * Y->in_w;
    const int C = Y->in_c;
    for (int n = 0; n < N; n++)
        for (int64_t p = 0; p < HW; p++)
            for (int c = 0; c < C; c++) {
                const int64_t i = ((int64_t)n * HW + p) * C + c;
                const int32_t acc = ((int32_t)x[i] - Y->zx) * ((int32_t)g[(int64_t)n * C + c] - Y->zb);
                y[i] = (uint8_t)qat_requantize(acc, Y->mult[c], Y->zy, Y->lo, Y->hi);
            }
}

/* Float layers: the runtime's own kernels (kernels/int8_float.c), so the two agree bit for bit.
 * Their values are f32 arrays behind the uint8_t pointers. */
static void sim_dequant(qat_ctx *ctx, const qat_q8_layer *Y, const uint8_t *x, const uint8_t *b,
                        int N, uint8_t *y, float *logits) {
    qat_f32_dequant((float *)y, x, (int64_t)N * Y->in_h * Y->in_w * Y->in_c, Y->sx, Y->zx);
}

static void sim_quant(qat_ctx *ctx, const qat_q8_layer *Y, const uint8_t *x, const uint8_t *b,
                      int N, uint8_t *y, float *logits) {
    qat_f32_quant(y, (const float *)x, (int64_t)N * Y->in_h * Y->in_w * Y->in_c, 1.0f / Y->sy,
                  Y->zy, Y->lo, Y->hi);
}

static float *packed_float_weights(qat_ctx *ctx, const qat_q8_layer *Y, int k, int groups) {
    float *p = qat_arena_floats(&ctx->arena, (int64_t)qat_f32_conv_packed_floats(Y->out_c, k, Y->in_c, groups));
    qat_f32_conv_pack(p, Y->fweight, Y->out_c, k, Y->in_c, groups);
    return p;
}

static void sim_fconv(qat_ctx *ctx, const qat_q8_layer *Y, const uint8_t *x, const uint8_t *b,
                      int N, uint8_t *y, float *logits) {
    qat_i8_dims d = {N, Y->in_h, Y->in_w, Y->in_c};
    qat_i8_conv_params p = {Y->k, Y->k, Y->stride, Y->pad};
    qat_f32_conv((float *)y, (const float *)x, &d, &p, Y->out_c, Y->groups,
                 packed_float_weights(ctx, Y, Y->k, Y->groups), Y->fbias,
                 (qat_f32_act)qat_q8_f32_act(Y->act));
}

static void sim_flinear(qat_ctx *ctx, const qat_q8_layer *Y, const uint8_t *x, const uint8_t *b,
                        int N, uint8_t *y, float *logits) {
    qat_f32_linear(logits, (const float *)x, N, Y->in_c, Y->out_c, packed_float_weights(ctx, Y, 1, 1),
                   Y->fbias);
}

/* Windowed pools: the runtime's kernels (kernels/int8_pool.c), integer arithmetic throughout. */
static void sim_maxpool(qat_ctx *ctx, const qat_q8_layer *Y, const uint8_t *x, const uint8_t *b,
                        int N, uint8_t *y, float *logits) {
    qat_i8_dims d = {N, Y->in_h, Y->in_w, Y->in_c};
    qat_i8_conv_params p = {Y->k, Y->k, Y->stride, Y->pad};
    for (int n = 0; n < N; n++) qat_i8_maxpool_ref(y, x, &d, &p, Y->lo, Y->hi, n);
}

static void sim_avgpool2d(qat_ctx *ctx, const qat_q8_layer *Y, const uint8_t *x, const uint8_t *b,
                          int N, uint8_t *y, float *logits) {
    qat_i8_dims d = {N, Y->in_h, Y->in_w, Y->in_c};
    qat_i8_conv_params p = {Y->k, Y->k, Y->stride, Y->pad};
    qat_i8_pool_params pp = {Y->pool_mult, Y->zx, Y->zy, Y->lo, Y->hi};
    for (int n = 0; n < N; n++) qat_i8_avgpool_ref(y, x, &d, &p, &pp, n);
}

typedef void (*sim_fn)(qat_ctx *ctx, const qat_q8_layer *Y, const uint8_t *a, const uint8_t *b,
                       int N, uint8_t *y, float *logits);
static const sim_fn sim_kinds[QAT_Q8_KIND_COUNT] = {
    [QAT_Q8_CONV] = sim_conv,
    [QAT_Q8_ADD] = sim_add,
    [QAT_Q8_AVGPOOL] = sim_avgpool,
    [QAT_Q8_LINEAR] = sim_linear,
    [QAT_Q8_LUT] = sim_lut,
    [QAT_Q8_MUL] = sim_mul,
    [QAT_Q8_DEQUANT] = sim_dequant,
    [QAT_Q8_QUANT] = sim_quant,
    [QAT_Q8_FCONV] = sim_fconv,
    [QAT_Q8_FLINEAR] = sim_flinear,
    [QAT_Q8_MAXPOOL] = sim_maxpool,
    [QAT_Q8_AVGPOOL2D] = sim_avgpool2d,
};

qat_tensor *qat_qsim_forward(const qat_q8_model *m, qat_ctx *ctx, const qat_tensor *x,
                             uint8_t **codes) {
    if (!x || x->ndim != 4 || x->shape[0] < 1 || x->shape[1] != m->in_h || x->shape[2] != m->in_w ||
        x->shape[3] != m->in_c) {
        qat_fail(QAT_ERR_SHAPE, "INT8 simulation: input must be (N, %d, %d, %d)", (int)m->in_h,
                 (int)m->in_w, (int)m->in_c);
        return NULL;
    }
    const int N = x->shape[0];
    int grad = ctx->grad_enabled;
    ctx->grad_enabled = 0; /* nothing here is differentiated */
    uint8_t *in = qat_arena_alloc(&ctx->arena, (size_t)x->numel);
    const float inv = 1.0f / m->in_scale;
    for (int64_t i = 0; i < x->numel; i++)
        in[i] = (uint8_t)qat_quantize(x->data[i], inv, m->in_zp, m->in_qmin, m->in_qmax);
    uint8_t **val = qat_arena_alloc(&ctx->arena, (size_t)m->nlayers * sizeof *val);
    qat_tensor *logits = NULL;
    for (int li = 0; li < m->nlayers; li++) {
        const qat_q8_layer *Y = &m->layers[li];
        const uint8_t *a = Y->input < 0 ? in : val[Y->input];
        int64_t n_out = (int64_t)N * Y->out_h * Y->out_w * Y->out_c;
        const int float_out = qat_q8_kinds[Y->kind].float_output;
        const size_t elem = qat_q8_kinds[Y->kind].float_value ? sizeof(float) : 1;
        val[li] = float_out ? NULL : qat_arena_alloc(&ctx->arena, (size_t)n_out * elem);
        if (float_out) logits = qat_tensor_2d(ctx, N, Y->out_c);
        const uint8_t *b = qat_q8_kinds[Y->kind].second_input ? (Y->skip < 0 ? in : val[Y->skip]) : NULL;
        sim_kinds[Y->kind](ctx, Y, a, b, N, val[li], float_out ? logits->data : NULL);
        if (codes) codes[li] = val[li];
    }
    ctx->grad_enabled = grad;
    return logits;
}

qat_tensor *qat_quantized_forward(qat_qmodel *q, qat_ctx *ctx, qat_tensor *x) {
    const qat_model *m = q->model;
    const int shape_ok = x && x->ndim == 4 && x->shape[0] >= 1 && x->shape[1] == m->in_h &&
                         x->shape[2] == m->in_w && x->shape[3] == m->in_c;
    if (shape_ok && !ctx->training && q->exact_eval && !q->calibrating && !q->trace &&
        qat_convertible(q, NULL, 0)) {
        /* Rebuilt per call (folding ~1e5 weights costs little next to a batch's forward); a
         * model that fails to convert (say, an accumulator bound) is evaluated by the graph. */
        qat_q8_model *im;
        if (qat_convert_qmodel(q, NULL, NULL, &im) == QAT_OK) {
            qat_tensor *y = qat_qsim_forward(im, ctx, x, NULL);
            qat_q8_free(im);
            return y;
        }
    }
    return qat_qmodel_forward(q, ctx, x); /* also the shape error */
}
