/* The INT8 runtime (runtime/rt.c) on small random models built here: every backend and kernel
 * variant against an independent scalar re-implementation of the arithmetic of runtime/q8.h
 * (written from its comment with the kernels/qmath.h functions), bit-exact; the buffer plan
 * (memory reuse, re-planning for larger batches); bad arguments. */
#include "int8.h"
#include "q8.h"
#include "qat_rt.h"
#include "rt_internal.h"
#include "test_util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng_state = 0x5eed;
static uint32_t rnd(void) { return test_splitmix32(&rng_state); }
static int rnd_int(int lo, int hi) { return lo + (int)(rnd() % (uint32_t)(hi - lo + 1)); }
static float rnd_unit(void) { return (float)(rnd() >> 8) / 16777216.0f; }
static float rnd_range(float lo, float hi) { return lo + (hi - lo) * rnd_unit(); }

static void *xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz);
    QAT_ASSERT(p);
    return p;
}

/* ---- model builder ---------------------------------------------------------------------------- */

typedef struct {
    qat_q8_model *m;
    int cap;
} builder;

static void b_init(builder *b, int h, int w, int c, int nclasses, int cap) {
    qat_q8_model *m = xcalloc(1, sizeof *m);
    m->in_h = h, m->in_w = w, m->in_c = c, m->nclasses = nclasses;
    m->in_scale = rnd_range(0.015f, 0.03f);
    m->in_zp = rnd_int(100, 150), m->in_qmin = 0, m->in_qmax = 255;
    for (int k = 0; k < c; k++) m->mean[k] = rnd_range(0.2f, 0.6f), m->std[k] = rnd_range(0.2f, 0.4f);
    snprintf(m->qconfig, sizeof m->qconfig, "x86");
    snprintf(m->arch, sizeof m->arch, "test");
    m->layers = xcalloc((size_t)cap, sizeof(qat_q8_layer));
    b->m = m, b->cap = cap;
}

/* Appends a layer reading value `input` with the producer's shape and output qparams. */
static qat_q8_layer *b_add(builder *b, qat_q8_kind kind, const char *name, int input) {
    qat_q8_model *m = b->m;
    QAT_ASSERT(m->nlayers < b->cap);
    qat_q8_layer *L = &m->layers[m->nlayers++];
    L->kind = kind;
    snprintf(L->name, sizeof L->name, "%s", name);
    L->input = input, L->skip = -1;
    if (input < 0) {
        L->in_h = m->in_h, L->in_w = m->in_w, L->in_c = m->in_c;
        L->sx = m->in_scale, L->zx = m->in_zp;
    } else {
        const qat_q8_layer *P = &m->layers[input];
        L->in_h = P->out_h, L->in_w = P->out_w, L->in_c = P->out_c;
        L->sx = P->sy, L->zx = P->zy;
    }
    L->sy = rnd_range(0.02f, 0.08f);
    L->zy = rnd_int(90, 140);
    return L;
}

/* Output clamp of the layer: ReLU6-like, ReLU-like or none, at random. */
static void b_clamp(qat_q8_layer *L) {
    int a = rnd_int(0, 2);
    L->act = (qat_q8_act)a;
    L->lo = a ? L->zy : 0;
    L->hi = a == 2 ? L->zy + rnd_int(40, 100) : 255;
    if (L->hi > 255) L->hi = 255;
}

static int b_conv(builder *b, const char *name, int input, int cout, int k, int stride, int pad,
                  int depthwise) {
    qat_q8_layer *L = b_add(b, QAT_Q8_CONV, name, input);
    L->out_c = depthwise ? L->in_c : cout;
    L->k = k, L->stride = stride, L->pad = pad, L->groups = depthwise ? L->in_c : 1;
    L->out_h = (L->in_h + 2 * pad - k) / stride + 1;
    L->out_w = (L->in_w + 2 * pad - k) / stride + 1;
    L->wbits = 8;
    int per = k * k * (depthwise ? 1 : L->in_c);
    L->weight = xcalloc((size_t)L->out_c * per, 1);
    L->bias = xcalloc((size_t)L->out_c, sizeof(int32_t));
    L->mult = xcalloc((size_t)L->out_c, sizeof(float));
    L->wscale = xcalloc((size_t)L->out_c, sizeof(float));
    for (int i = 0; i < L->out_c * per; i++) L->weight[i] = (int8_t)rnd_int(-127, 127);
    for (int c = 0; c < L->out_c; c++) {
        L->bias[c] = rnd_int(-3000, 3000);
        /* spreads the accumulator (about sqrt(per) * 70 * 60) over a few dozen codes */
        L->mult[c] = rnd_range(0.5f, 2.0f) * 40.0f / (sqrtf((float)per) * 70.0f * 60.0f);
        L->wscale[c] = L->mult[c] * L->sy / L->sx;
    }
    b_clamp(L);
    return b->m->nlayers - 1;
}

static int b_addl(builder *b, const char *name, int a, int skip) {
    qat_q8_layer *L = b_add(b, QAT_Q8_ADD, name, a);
    const qat_q8_layer *S = &b->m->layers[skip];
    L->skip = skip, L->sb = S->sy, L->zb = S->zy;
    L->out_h = L->in_h, L->out_w = L->in_w, L->out_c = L->in_c;
    b_clamp(L);
    return b->m->nlayers - 1;
}

static int b_pool(builder *b, int input) {
    qat_q8_layer *L = b_add(b, QAT_Q8_AVGPOOL, "pool", input);
    L->out_h = L->out_w = 1, L->out_c = L->in_c;
    L->sy = L->sx * rnd_range(0.5f, 1.0f);
    L->pool_mult = qat_i8_avgpool_mult(L->sx, L->sy, L->in_h * L->in_w);
    L->lo = 0, L->hi = 255;
    return b->m->nlayers - 1;
}

static void b_linear(builder *b, int input, int with_fbias) {
    qat_q8_layer *L = b_add(b, QAT_Q8_LINEAR, "classifier", input);
    L->out_h = L->out_w = 1, L->out_c = b->m->nclasses;
    L->sy = 0, L->zy = 0;
    L->wbits = 8;
    L->weight = xcalloc((size_t)L->out_c * L->in_c, 1);
    L->mult = xcalloc((size_t)L->out_c, sizeof(float));
    L->wscale = xcalloc((size_t)L->out_c, sizeof(float));
    if (with_fbias) L->fbias = xcalloc((size_t)L->out_c, sizeof(float));
    for (int i = 0; i < L->out_c * L->in_c; i++) L->weight[i] = (int8_t)rnd_int(-127, 127);
    for (int c = 0; c < L->out_c; c++) {
        L->wscale[c] = rnd_range(0.002f, 0.01f);
        L->mult[c] = L->sx * L->wscale[c];
        if (with_fbias) L->fbias[c] = rnd_range(-1.0f, 1.0f);
    }
}

/* The shapes of an inverted-residual network, with odd sizes: dense 3x3 stem (3 -> 13),
 * 1x1 expand (13 -> 24), depthwise 3x3 stride 2, 1x1 project (24 -> 13), a second block with a
 * depthwise 5x5 and a residual add, a dense 3x3 stride-2 conv, avgpool, linear. */
static qat_q8_model *make_net(int c_in) {
    builder b;
    b_init(&b, 11, 9, c_in, 7, 16);
    int v = b_conv(&b, "stem", -1, 13, 3, 1, 1, 0);
    v = b_conv(&b, "b1.expand", v, 24, 1, 1, 0, 0);
    v = b_conv(&b, "b1.dw", v, 0, 3, 2, 1, 1);
    int proj = b_conv(&b, "b1.project", v, 13, 1, 1, 0, 0);
    v = b_conv(&b, "b2.expand", proj, 24, 1, 1, 0, 0);
    v = b_conv(&b, "b2.dw", v, 0, 5, 1, 2, 1);
    v = b_conv(&b, "b2.project", v, 13, 1, 1, 0, 0);
    v = b_addl(&b, "b2.add", v, proj);
    v = b_conv(&b, "head", v, 17, 3, 2, 1, 0);
    v = b_pool(&b, v);
    b_linear(&b, v, 1);
    return b.m;
}

/* A chain of `depth` 1x1 convs (and a pool, a linear): each value is read once, by the next. */
static qat_q8_model *make_chain(int depth) {
    builder b;
    b_init(&b, 6, 5, 3, 5, depth + 3);
    int v = b_conv(&b, "c0", -1, 16, 3, 1, 1, 0);
    for (int i = 1; i < depth; i++) {
        char name[16];
        snprintf(name, sizeof name, "c%d", i);
        v = b_conv(&b, name, v, 16 + (i % 3) * 8, 1, 1, 0, 0);
    }
    v = b_pool(&b, v);
    b_linear(&b, v, 0);
    return b.m;
}

/* ---- independent reference (the arithmetic of runtime/q8.h, one value at a time) ------------ */

static void ref_conv(const qat_q8_layer *L, const uint8_t *x, uint8_t *y, int n) {
    const int dw = L->groups > 1, cin_w = dw ? 1 : L->in_c;
    for (int b = 0; b < n; b++)
        for (int oh = 0; oh < L->out_h; oh++)
            for (int ow = 0; ow < L->out_w; ow++)
                for (int c = 0; c < L->out_c; c++) {
                    int32_t acc = L->bias[c];
                    for (int i = 0; i < L->k; i++)
                        for (int j = 0; j < L->k; j++) {
                            int ih = oh * L->stride - L->pad + i, iw = ow * L->stride - L->pad + j;
                            if (ih < 0 || ih >= L->in_h || iw < 0 || iw >= L->in_w) continue;
                            const uint8_t *px = x + (((size_t)b * L->in_h + ih) * L->in_w + iw) * L->in_c;
                            const int8_t *wt = L->weight + (((size_t)c * L->k + i) * L->k + j) * cin_w;
                            if (dw)
                                acc += ((int32_t)px[c] - L->zx) * wt[0];
                            else
                                for (int ci = 0; ci < L->in_c; ci++)
                                    acc += ((int32_t)px[ci] - L->zx) * wt[ci];
                        }
                    y[(((size_t)b * L->out_h + oh) * L->out_w + ow) * L->out_c + c] =
                        (uint8_t)qat_requantize(acc, L->mult[c], L->zy, L->lo, L->hi);
                }
}

/* logits (n, nclasses) of model m on float input x (n, h, w, c). */
static void ref_forward(const qat_q8_model *m, const float *x, int n, float *logits) {
    uint8_t **val = xcalloc((size_t)m->nlayers + 1, sizeof(uint8_t *));
    size_t in_n = (size_t)n * m->in_h * m->in_w * m->in_c;
    val[0] = xcalloc(in_n, 1);
    for (size_t i = 0; i < in_n; i++)
        val[0][i] = (uint8_t)qat_quantize(x[i], 1.0f / m->in_scale, m->in_zp, m->in_qmin, m->in_qmax);
    for (int li = 0; li < m->nlayers; li++) {
        const qat_q8_layer *L = &m->layers[li];
        const uint8_t *in = val[L->input + 1];
        size_t out_n = (size_t)n * L->out_h * L->out_w * L->out_c;
        uint8_t *y = val[li + 1] = xcalloc(out_n, 1);
        if (L->kind == QAT_Q8_CONV) {
            ref_conv(L, in, y, n);
        } else if (L->kind == QAT_Q8_ADD) {
            const uint8_t *sk = val[L->skip + 1];
            for (size_t i = 0; i < out_n; i++)
                y[i] = (uint8_t)qat_quantize(qat_dequantize(in[i], L->sx, L->zx) +
                                                 qat_dequantize(sk[i], L->sb, L->zb),
                                             1.0f / L->sy, L->zy, L->lo, L->hi);
        } else if (L->kind == QAT_Q8_AVGPOOL) {
            int hw = L->in_h * L->in_w;
            for (int b = 0; b < n; b++)
                for (int c = 0; c < L->in_c; c++) {
                    int32_t s = 0;
                    for (int p = 0; p < hw; p++) s += in[((size_t)b * hw + p) * L->in_c + c];
                    y[(size_t)b * L->in_c + c] =
                        (uint8_t)qat_requantize(s - hw * L->zx, L->pool_mult, L->zy, L->lo, L->hi);
                }
        } else {
            for (int b = 0; b < n; b++)
                for (int o = 0; o < L->out_c; o++) {
                    int32_t acc = 0;
                    for (int k = 0; k < L->in_c; k++)
                        acc += ((int32_t)in[(size_t)b * L->in_c + k] - L->zx) *
                               L->weight[(size_t)o * L->in_c + k];
                    volatile float p = (float)acc * L->mult[o]; /* rounded before the bias add */
                    logits[(size_t)b * L->out_c + o] = L->fbias ? p + L->fbias[o] : p;
                }
        }
    }
    for (int v = 0; v <= m->nlayers; v++) free(val[v]);
    free(val);
}

/* ---- helpers ------------------------------------------------------------------------------------ */

static float *random_input(const qat_q8_model *m, int n) {
    size_t cnt = (size_t)n * m->in_h * m->in_w * m->in_c;
    float *x = xcalloc(cnt, sizeof(float));
    for (size_t i = 0; i < cnt; i++) x[i] = rnd_range(-2.5f, 2.5f);
    return x;
}

/* Bit-exact comparison; prints the first mismatch. */
static int same_logits(const char *what, const float *got, const float *exp, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &exp[i], sizeof(float))) {
            printf("\n  %s: first mismatch at logit %zu: got %.9g expected %.9g\n", what, i,
                   (double)got[i], (double)exp[i]);
            CU_FAIL("runtime logits differ from the reference");
            return 0;
        }
    return 1;
}

/* n random images through rt, against the reference's logits of m, bit for bit. */
static void check_run(qat_rt *rt, const qat_q8_model *m, int n, const char *label) {
    float *x = random_input(m, n);
    float *got = xcalloc((size_t)n * m->nclasses, sizeof(float));
    float *exp = xcalloc((size_t)n * m->nclasses, sizeof(float));
    ref_forward(m, x, n, exp);
    CU_ASSERT_EQUAL(qat_rt_run(rt, x, n, got), 0);
    same_logits(label, got, exp, (size_t)n * m->nclasses);
    free(x), free(got), free(exp);
}

/* Runs m through a runtime of backend `be` at batch sizes 1, 5, 3 (and 7, 2 once the runtime
 * exists), against the reference; with `lanes`, a batch is split between the threads, each
 * running its images through the whole network (runtime/rt.c), else inside each layer; lanes 2:
 * also cut into parts of one image, several per lane (one after the other on one thread). */
static void check_backend_mode(const qat_q8_model *m, qat_rt_backend be, const char *what, int lanes) {
    const int64_t keep = qat_rt_lane_min_work;
    const size_t keep_part = qat_rt_part_bytes;
    qat_rt_lane_min_work = lanes ? 0 : INT64_MAX;
    if (lanes == 2) qat_rt_part_bytes = 1; /* one image per part, several parts per lane */
    qat_rt_options o;
    qat_rt_options_default(&o);
    o.backend = be;
    o.batch = 5;
    qat_rt *rt;
    int st = qat_rt_from_model(m, &o, &rt);
    if (st) printf("\n  %s: %s\n", what, qat_rt_last_error());
    CU_ASSERT_EQUAL_FATAL(st, 0);
    const int sizes[] = {1, 5, 3, 7, 2};
    for (int s = 0; s < 5; s++) {
        char label[96];
        snprintf(label, sizeof label, "%s, batch %d%s", what, sizes[s],
                 lanes == 2 ? ", parts of 1 image" : lanes ? ", lanes" : "");
        check_run(rt, m, sizes[s], label);
    }
    if (be == QAT_RT_BACKEND_ONEDNN) { /* oneDNN took the conv/linear layers it accepts */
        int on = 0;
        for (int i = 0; i < qat_rt_num_layers(rt); i++) {
            qat_rt_layer_info li;
            qat_rt_layer(rt, i, &li);
            on += !strcmp(li.backend, "onednn");
        }
        CU_ASSERT(on >= 1);
    }
    qat_rt_free(rt);
    qat_rt_lane_min_work = keep;
    qat_rt_part_bytes = keep_part;
}

static void check_backend(const qat_q8_model *m, qat_rt_backend be, const char *what) {
    check_backend_mode(m, be, what, 0);
    check_backend_mode(m, be, what, 1);
}

/* ---- tests ---------------------------------------------------------------------------------------- */

/* Every backend and every native kernel variant this CPU runs gives the reference's logits. */
static void test_backends_match_reference(void) {
    for (int cin = 1; cin <= 3; cin += 2) {
        qat_q8_model *m = make_net(cin);
        CU_ASSERT_EQUAL_FATAL(qat_q8_validate(m, "test model"), QAT_OK);
        for (int p = QAT_I8_REF; p < QAT_I8_PATH_COUNT; p++) {
            if (!qat_i8_path_available((qat_i8_path)p)) continue;
            qat_i8_set_path((qat_i8_path)p);
            char what[64];
            snprintf(what, sizeof what, "native %s, %d input channels",
                     qat_i8_path_name((qat_i8_path)p), cin);
            check_backend(m, QAT_RT_BACKEND_NATIVE, what);
        }
        qat_i8_set_path(QAT_I8_AUTO);
        check_backend(m, QAT_RT_BACKEND_REF, "ref");
        CU_ASSERT_EQUAL(qat_i8_set_path(QAT_I8_AUTO), QAT_I8_AUTO); /* ref restored the setting */
        check_backend(m, QAT_RT_BACKEND_AUTO, "auto");
        check_backend(m, QAT_RT_BACKEND_ONEDNN, "onednn");
        qat_q8_free(m);
    }
}

/* The batch split between threads on 2, 3 and 5 threads (more lanes than cores, parts of 2 and 3
 * images, a lane per image), and cut into parts of one image (several per lane; on 1 thread one
 * after the other), every backend: the reference's logits. */
static void test_lanes_match_reference(void) {
    const int keep = qat_get_threads();
    qat_q8_model *m = make_net(3);
    const int threads[] = {2, 3, 5, 1};
    for (int t = 0; t < 4; t++) {
        qat_set_threads(threads[t]);
        for (int mode = 1; mode <= 2; mode++) {
            char what[64];
            snprintf(what, sizeof what, "%d threads, native", threads[t]);
            check_backend_mode(m, QAT_RT_BACKEND_NATIVE, what, mode);
            snprintf(what, sizeof what, "%d threads, onednn", threads[t]);
            check_backend_mode(m, QAT_RT_BACKEND_ONEDNN, what, mode);
            snprintf(what, sizeof what, "%d threads, auto", threads[t]);
            check_backend_mode(m, QAT_RT_BACKEND_AUTO, what, mode);
        }
    }
    qat_set_threads(keep);
    qat_q8_free(m);
}

/* Raw pixels through the model's mean/std give exactly what the normalised floats give. */
static void test_run_u8_matches_float(void) {
    qat_q8_model *m = make_net(3);
    qat_rt *rt;
    CU_ASSERT_EQUAL_FATAL(qat_rt_from_model(m, NULL, &rt), 0);
    const int n = 4, c = m->in_c;
    size_t npix = (size_t)n * m->in_h * m->in_w;
    uint8_t *px = xcalloc(npix * c, 1);
    float *x = xcalloc(npix * c, sizeof(float));
    for (size_t i = 0; i < npix * c; i++) {
        px[i] = (uint8_t)rnd();
        int k = (int)(i % c);
        x[i] = (px[i] / 255.0f - m->mean[k]) / m->std[k]; /* datasets/dataset.c's formula */
    }
    float *a = xcalloc((size_t)n * m->nclasses, sizeof(float));
    float *e = xcalloc((size_t)n * m->nclasses, sizeof(float));
    CU_ASSERT_EQUAL(qat_rt_run_u8(rt, px, n, a), 0);
    ref_forward(m, x, n, e);
    same_logits("run_u8", a, e, (size_t)n * m->nclasses);
    int h, w, cc;
    qat_rt_input_shape(rt, &h, &w, &cc);
    CU_ASSERT(h == m->in_h && w == m->in_w && cc == m->in_c);
    CU_ASSERT_EQUAL(qat_rt_nclasses(rt), m->nclasses);
    free(px), free(x), free(a), free(e);
    qat_rt_free(rt);
    qat_q8_free(m);
}

/* On a chain, memory is reused (peak well below the sum of all activations: about two
 * values alive at a time), and results stay exact across batch sizes and re-planning. */
static void test_buffer_plan(void) {
    const int depth = 12;
    const int64_t keep_lanes = qat_rt_lane_min_work;
    qat_rt_lane_min_work = INT64_MAX; /* one region for the whole batch (lanes: below) */
    qat_q8_model *m = make_chain(depth);
    CU_ASSERT_EQUAL_FATAL(qat_q8_validate(m, "chain"), QAT_OK);
    qat_rt_options o;
    qat_rt_options_default(&o);
    o.backend = QAT_RT_BACKEND_NATIVE;
    o.batch = 2;
    qat_rt *rt;
    CU_ASSERT_EQUAL_FATAL(qat_rt_from_model(m, &o, &rt), 0);
    CU_ASSERT_EQUAL(qat_rt_planned_batch(rt), 2);
    size_t peak = qat_rt_peak_activation_bytes(rt), total = qat_rt_total_activation_bytes(rt);
    size_t largest = 0; /* on a chain, a few of the largest values bound the peak */
    for (int i = 0; i < m->nlayers; i++) {
        size_t s = (size_t)m->layers[i].out_h * m->layers[i].out_w * m->layers[i].out_c;
        if (s > largest) largest = s;
    }
    CU_ASSERT(peak < total / 3);
    CU_ASSERT(peak <= 2 * (3 * ((largest + 63) / 64 * 64) + 128));
    CU_ASSERT(peak >= 2 * 2 * (size_t)m->in_h * m->in_w * 16); /* two 6x5x16 maps at batch 2 */
    const int sizes[] = {2, 1, 7, 2};
    for (int s = 0; s < 4; s++) check_run(rt, m, sizes[s], "chain");
    CU_ASSERT_EQUAL(qat_rt_planned_batch(rt), 7);
    CU_ASSERT_EQUAL(qat_rt_peak_activation_bytes(rt), peak / 2 * 7);
    {   /* 3 lanes: a region of ceil(7 / 3) = 3 images each, 9 images' worth */
        const int keep_threads = qat_get_threads();
        qat_set_threads(3);
        qat_rt_lane_min_work = 0;
        qat_rt *r3;
        CU_ASSERT_EQUAL_FATAL(qat_rt_from_model(m, &o, &r3), 0);
        check_run(r3, m, 7, "chain, 3 lanes");
        CU_ASSERT_EQUAL(qat_rt_peak_activation_bytes(r3), peak / 2 * 9);
        qat_rt_free(r3);
        qat_set_threads(keep_threads);
        qat_rt_lane_min_work = INT64_MAX;
    }
    /* per-layer info */
    CU_ASSERT_EQUAL(qat_rt_num_layers(rt), m->nlayers);
    qat_rt_layer_info li;
    CU_ASSERT_EQUAL(qat_rt_layer(rt, 1, &li), 0);
    CU_ASSERT_STRING_EQUAL(li.name, "c1");
    CU_ASSERT_STRING_EQUAL(li.kind, "pw1x1");
    CU_ASSERT_STRING_EQUAL(li.backend, "native");
    CU_ASSERT_EQUAL(li.macs, qat_q8_layer_macs(&m->layers[1]));
    CU_ASSERT(li.last_ms >= 0);
    CU_ASSERT_NOT_EQUAL(qat_rt_layer(rt, m->nlayers, &li), 0);
    qat_rt_free(rt);
    qat_q8_free(m);
    qat_rt_lane_min_work = keep_lanes;
}

/* Bad arguments and models are errors with a message, never a crash. */
static void test_bad_input(void) {
    qat_q8_model *m = make_net(3);
    qat_rt *rt = (qat_rt *)1;
    CU_ASSERT_NOT_EQUAL(qat_rt_from_model(NULL, NULL, &rt), 0);
    CU_ASSERT_PTR_NULL(rt);
    CU_ASSERT_NOT_EQUAL(qat_rt_from_model(m, NULL, NULL), 0);
    qat_rt_options o;
    qat_rt_options_default(&o);
    o.backend = (qat_rt_backend)99;
    CU_ASSERT_NOT_EQUAL(qat_rt_from_model(m, &o, &rt), 0);
    m->layers[3].input = 7; /* reads a value produced later */
    CU_ASSERT_EQUAL(qat_rt_from_model(m, NULL, &rt), QAT_ERR_FORMAT);
    CU_ASSERT_PTR_NULL(rt);
    m->layers[3].input = 2;
    CU_ASSERT_EQUAL_FATAL(qat_rt_from_model(m, NULL, &rt), 0);
    float x[11 * 9 * 3] = {0}, logits[7];
    CU_ASSERT_EQUAL(qat_rt_run(rt, x, 0, logits), QAT_ERR_ARG);
    CU_ASSERT_EQUAL(qat_rt_run(rt, x, -3, logits), QAT_ERR_ARG);
    CU_ASSERT_EQUAL(qat_rt_run(rt, NULL, 1, logits), QAT_ERR_ARG);
    CU_ASSERT_EQUAL(qat_rt_run(rt, x, 1, NULL), QAT_ERR_ARG);
    CU_ASSERT_EQUAL(qat_rt_run(NULL, x, 1, logits), QAT_ERR_ARG);
    CU_ASSERT_EQUAL(qat_rt_run_u8(rt, NULL, 1, logits), QAT_ERR_ARG);
    CU_ASSERT_EQUAL(qat_rt_run(rt, x, 1, logits), 0);
    qat_rt_free(rt);
    CU_ASSERT_NOT_EQUAL(qat_rt_load("/nonexistent/model.q8", NULL, &rt), 0);
    CU_ASSERT_PTR_NULL(rt);
    qat_rt_backend be;
    CU_ASSERT_EQUAL(qat_rt_backend_parse("onednn", &be), 0);
    CU_ASSERT_EQUAL(be, QAT_RT_BACKEND_ONEDNN);
    CU_ASSERT_NOT_EQUAL(qat_rt_backend_parse("fast", &be), 0);
    qat_rt_free(NULL);
    qat_q8_free(m);
}

/* A model saved to a .q8 file and loaded by path runs exactly like the one in memory. */
static void test_load_file(void) {
    qat_q8_model *m = make_net(1);
    char path[] = "/tmp/qat_test_rt_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    CU_ASSERT_EQUAL_FATAL(qat_q8_save(m, path), QAT_OK);
    qat_rt *rt;
    int st = qat_rt_load(path, NULL, &rt);
    if (st) printf("\n  load: %s\n", qat_rt_last_error());
    CU_ASSERT_EQUAL_FATAL(st, 0);
    check_run(rt, m, 3, "loaded from file");
    qat_rt_free(rt);
    qat_q8_free(m);
    unlink(path);
}

static void test_peak_probe(void) {
    double g = qat_rt_vnni_peak_gmacs(1);
    if (qat_cpu_has_avx512_vnni()) {
        CU_ASSERT(g > 1.0 && g < 1e5); /* GMAC/s of one core: tens to hundreds */
    } else {
        CU_ASSERT_EQUAL(g, 0.0);
    }
}

void register_runtime_tests(void) {
    test_add_suite("runtime", "backends and kernel variants match the reference",
                   test_backends_match_reference, "batch split between threads matches the reference",
                   test_lanes_match_reference, "run_u8 matches normalised floats",
                   test_run_u8_matches_float, "buffer plan reuses memory, re-plans",
                   test_buffer_plan, "bad arguments and models", test_bad_input,
                   "load a .q8 file", test_load_file, "vnni peak probe", test_peak_probe, NULL);
}
