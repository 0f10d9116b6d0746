/* Convert and the integer-exact simulation (export/convert.c, export/qsim.c): the simulation's codes equal the
 * INT8 kernels' on every layer, eval uses it, it stays close to the float fake-quant graph, and
 * models without an INT8 form are refused with a reason. */
#include "int8.h"
#include "int8_onednn.h"
#include "export.h"
#include "requant.h"
#include "rt_internal.h"
#include "test_util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *tiny_spec =
    "name tiny\n"
    "stem conv k=3 c=8 s=1 act=relu6\n"
    "block ir t=2 c=8 n=2 s=1\n"
    "block ir t=3 c=13 n=1 s=2\n"
    "head conv k=1 c=24 act=relu\n"
    "pool avg\n"
    "classifier\n";

/* MobileNetV3 pieces: hardswish after convs (LUT layers), squeeze-and-excite (pool, two fc on
 * the int8 GEMM, hardsigmoid LUT, channel mul), 5x5 depthwise, odd channel counts. */
static const char *v3_spec =
    "name v3\n"
    "stem conv k=3 c=8 s=1 act=hardswish\n"
    "block v3 e=8 c=8 k=3 s=1 se=1 act=relu\n"
    "block v3 e=20 c=13 k=5 s=2 se=1 act=hardswish\n"
    "block v3 e=36 c=13 k=5 s=1 se=0 act=hardswish\n"
    "head conv k=1 c=24 act=hardswish\n"
    "pool avg\n"
    "classifier\n";

/* The general form (layer lines): convs with a bias and no BN (bn=0, what an imported model
 * whose export folded BN has), a 5x5 conv with pad 1, a residual add reading an earlier layer. */
static const char *graph_spec =
    "name graph\n"
    "layer c0 conv in=input c=8 k=3 s=1 bn=0 act=relu6\n"
    "layer c1 conv c=8 k=3 g=8 bn=0 act=relu\n"
    "layer c2 conv c=8 k=1 bn=1\n"
    "layer sum add in=c2,c0\n"
    "layer c3 conv c=12 k=5 s=2 pad=1 bn=0 act=hardswish\n"
    "layer c4 conv c=16 k=1 bn=0\n"
    "layer gap avgpool\n"
    "layer fc linear c=3\n";

/* The general form's windowed pools (maxpool sharing its input's qparams, avgpool2d counting its
 * padding), sigmoid (a LUT, also after a conv), and squeeze-and-excite written out (avgpool, fc,
 * fc, act, mul): what `qat import` makes of MaxPool, AveragePool, Pad, Sigmoid and Mul. */
static const char *pool_spec =
    "name pools\n"
    "layer c0 conv in=input c=8 k=3 bn=0 act=relu\n"
    "layer mp maxpool k=3 s=2 pad=1\n"
    "layer c1 conv c=8 k=3 g=8 bn=1 act=relu6\n"
    "layer se.pool avgpool\n"
    "layer se.fc1 fc c=4 act=relu\n"
    "layer se.fc2 fc c=8\n"
    "layer se.gate act act=sigmoid\n"
    "layer se.mul mul in=c1,se.gate\n"
    "layer ap avgpool2d k=3 s=2 pad=1\n"
    "layer c2 conv c=12 k=1 bn=0 act=sigmoid\n"
    "layer mp2 maxpool k=2 s=1\n"
    "layer gap avgpool\n"
    "layer fc linear c=3\n";

/* A calibrated PTQ qmodel of a random tiny model, observers frozen; the layers matching the
 * comma-separated patterns of float_list (NULL: none) left in float. */
static qat_qmodel *calibrated_mixed(const char *spec_text, const char *qconfig, const char *float_list,
                                    qat_model **m, qat_spec **spec, qat_ctx *ctx, qat_tensor **x) {
    *m = test_random_model(spec_text, 11, spec, 7);
    qat_qconfig cfg;
    CU_ASSERT_FATAL(qat_qconfig_get(qconfig, &cfg) == QAT_OK);
    qat_qmodel *q;
    CU_ASSERT_FATAL(qat_qmodel_create(*m, &cfg, QAT_QMODEL_PTQ, QAT_OBS_MINMAX, &q) == QAT_OK);
    if (float_list) CU_ASSERT_FATAL(qat_qmodel_apply_float_list(q, float_list, "test") == QAT_OK);
    qat_ctx_init(ctx, 1 << 22);
    ctx->training = 0;
    ctx->grad_enabled = 0;
    qat_rng r;
    qat_rng_seed(&r, 3);
    *x = qat_tensor_4d(ctx, 5, 11, 11, 1);
    for (int64_t i = 0; i < (*x)->numel; i++) (*x)->data[i] = qat_rng_normal(&r);
    q->calibrating = 1;
    qat_quantized_forward(q, ctx, *x);
    q->calibrating = 0;
    CU_ASSERT_FATAL(qat_qmodel_freeze_observers(q) == QAT_OK);
    return q;
}

static qat_qmodel *calibrated(const char *spec_text, const char *qconfig, qat_model **m,
                              qat_spec **spec, qat_ctx *ctx, qat_tensor **x) {
    return calibrated_mixed(spec_text, qconfig, NULL, m, spec, ctx, x);
}

/* Runs layer Y of the INT8 model with the int8 kernels (path p) on input codes a (and b for
 * ADD); compares with the simulation's output codes (or logits). Returns 1 when identical. */
static int kernel_matches(const qat_q8_layer *Y, int N, const uint8_t *a, const uint8_t *b,
                          const uint8_t *sim_codes, const float *sim_logits) {
    int64_t nout = (int64_t)N * Y->out_h * Y->out_w * Y->out_c;
    uint8_t *y = malloc((size_t)nout);
    float *yf = malloc((size_t)nout * sizeof(float));
    qat_i8_dims in = {N, Y->in_h, Y->in_w, Y->in_c};
    qat_i8_requant rq = {Y->mult, Y->zy, Y->lo, Y->hi};
    qat_status st = QAT_OK;
    void *pk = NULL, *buf = NULL;
    if (Y->kind == QAT_Q8_CONV && Y->groups == 1) {
        int K = Y->k * Y->k * Y->in_c;
        size_t sz = qat_i8_gemm_packed_size(Y->out_c, K);
        pk = aligned_alloc(64, (sz + 63) / 64 * 64);
        qat_i8_gemm_weights pw;
        st = qat_i8_gemm_pack(&pw, pk, sz, Y->weight, Y->bias, Y->out_c, K, Y->zx);
        qat_i8_conv_params p = {Y->k, Y->k, Y->stride, Y->pad};
        size_t bs = qat_i8_conv_get_buffer_size(&in, &p);
        buf = malloc(bs + 1);
        if (!st) st = qat_i8_conv(y, a, &in, &p, &pw, &rq, buf, bs);
    } else if (Y->kind == QAT_Q8_CONV) {
        size_t sz = qat_i8_dw_packed_size(Y->out_c, Y->k, Y->k);
        pk = aligned_alloc(64, (sz + 63) / 64 * 64);
        qat_i8_dw_weights pw;
        st = qat_i8_dw_pack(&pw, pk, sz, Y->weight, Y->bias, Y->out_c, Y->k, Y->k, Y->zx);
        qat_i8_conv_params p = {Y->k, Y->k, Y->stride, Y->pad};
        size_t bs = qat_i8_dwconv_get_buffer_size(&in, &p);
        buf = malloc(bs + 1);
        if (!st) st = qat_i8_dwconv(y, a, &in, &p, &pw, &rq, buf, bs);
    } else if (Y->kind == QAT_Q8_ADD) {
        qat_i8_add_params p = {Y->sx, Y->sb, 1.0f / Y->sy, Y->zx, Y->zb, Y->zy, Y->lo, Y->hi};
        st = qat_i8_add(y, a, b, nout, &p);
    } else if (Y->kind == QAT_Q8_LUT) {
        st = qat_i8_lut(y, a, nout, Y->table);
    } else if (Y->kind == QAT_Q8_MUL) {
        qat_i8_mul_params p = {Y->mult, Y->zx, Y->zb, Y->zy, Y->lo, Y->hi};
        st = qat_i8_channel_mul(y, a, b, &in, &p);
    } else if (Y->kind == QAT_Q8_AVGPOOL) {
        qat_i8_pool_params p = {Y->pool_mult, Y->zx, Y->zy, Y->lo, Y->hi};
        st = qat_i8_global_avgpool(y, a, &in, &p);
    } else if (Y->kind == QAT_Q8_MAXPOOL) {
        qat_i8_conv_params p = {Y->k, Y->k, Y->stride, Y->pad};
        st = qat_i8_maxpool(y, a, &in, &p, Y->lo, Y->hi);
    } else if (Y->kind == QAT_Q8_AVGPOOL2D) {
        qat_i8_conv_params p = {Y->k, Y->k, Y->stride, Y->pad};
        qat_i8_pool_params pp = {Y->pool_mult, Y->zx, Y->zy, Y->lo, Y->hi};
        st = qat_i8_avgpool(y, a, &in, &p, &pp);
    } else {
        size_t sz = qat_i8_gemm_packed_size(Y->out_c, Y->in_c);
        pk = aligned_alloc(64, (sz + 63) / 64 * 64);
        qat_i8_gemm_weights pw;
        st = qat_i8_gemm_pack(&pw, pk, sz, Y->weight, NULL, Y->out_c, Y->in_c, Y->zx);
        if (!st) st = qat_i8_gemm_f32(yf, Y->out_c, a, Y->in_c, N, &pw, Y->mult, Y->fbias);
    }
    CU_ASSERT(st == QAT_OK);
    int same = Y->kind == QAT_Q8_LINEAR ? !memcmp(yf, sim_logits, (size_t)nout * sizeof(float))
                                        : !memcmp(y, sim_codes, (size_t)nout);
    if (!same) printf("\n  layer %s (%s): kernel output differs from the simulation\n", Y->name,
                      qat_i8_path_name(qat_i8_active_path()));
    free(y), free(yf), free(pk), free(buf);
    return same;
}

/* Every layer of the simulation equals the int8 kernels (reference and the best SIMD path) fed
 * with the simulation's own input codes; the qmodel's eval forward is the simulation. */
static void check_mixed_against_kernels(const char *spec_text, const char *qconfig,
                                        const char *float_list, double min_sqnr) {
    qat_model *m;
    qat_spec *spec;
    qat_ctx ctx;
    qat_tensor *x;
    qat_qmodel *q = calibrated_mixed(spec_text, qconfig, float_list, &m, &spec, &ctx, &x);
    qat_q8_model *im;
    qat_status cs = qat_convert_qmodel(q, NULL, NULL, &im);
    if (cs != QAT_OK) printf("\n  convert: %s\n", qat_last_error());
    CU_ASSERT_FATAL(cs == QAT_OK);
    uint8_t **codes = malloc((size_t)im->nlayers * sizeof *codes);
    qat_tensor *logits = qat_qsim_forward(im, &ctx, x, codes);
    CU_ASSERT_FATAL(logits != NULL);
    /* input codes as the runtime quantizes them */
    uint8_t *in = malloc((size_t)x->numel);
    for (int64_t i = 0; i < x->numel; i++)
        in[i] = (uint8_t)qat_quantize(x->data[i], 1.0f / im->in_scale, im->in_zp, im->in_qmin, im->in_qmax);
    qat_i8_path paths[2] = {QAT_I8_REF, QAT_I8_AUTO};
    for (int pi = 0; pi < 2; pi++) {
        qat_i8_path saved = qat_i8_set_path(paths[pi]);
        for (int li = 0; li < im->nlayers; li++) {
            const qat_q8_layer *Y = &im->layers[li];
            /* float layers and their edges run the runtime's own functions in the simulation
             * too: they are compared through the runtime below */
            if (Y->kind >= QAT_Q8_DEQUANT && Y->kind <= QAT_Q8_FLINEAR) continue;
            const uint8_t *a = Y->input < 0 ? in : codes[Y->input];
            const uint8_t *b = qat_q8_kinds[Y->kind].second_input ? (Y->skip < 0 ? in : codes[Y->skip]) : NULL;
            CU_ASSERT(kernel_matches(Y, x->shape[0], a, b, codes[li], logits->data));
        }
        qat_i8_set_path(saved);
    }
    /* the runtime on the converted model: every native path this CPU has (ref, AVX2, AVX-512,
     * AVX-VNNI, AVX512-VNNI), oneDNN and auto give the simulation's logits bit for bit, with the
     * batch split between the threads (each runs its images through the whole network) */
    const int64_t keep_lanes = qat_rt_lane_min_work;
    qat_rt_lane_min_work = 0;
    float *yr = malloc((size_t)logits->numel * sizeof(float));
    for (int p = QAT_I8_REF; p < QAT_I8_PATH_COUNT; p++) {
        if (!qat_i8_path_available((qat_i8_path)p)) continue;
        qat_i8_path saved = qat_i8_set_path((qat_i8_path)p);
        qat_rt_options ro;
        qat_rt_options_default(&ro);
        ro.backend = QAT_RT_BACKEND_NATIVE;
        qat_rt *rt;
        CU_ASSERT_FATAL(qat_rt_from_model(im, &ro, &rt) == 0);
        CU_ASSERT(qat_rt_run(rt, x->data, x->shape[0], yr) == 0);
        if (memcmp(yr, logits->data, (size_t)logits->numel * sizeof(float)))
            printf("\n  runtime path %s differs from the simulation\n", qat_i8_path_name((qat_i8_path)p));
        CU_ASSERT(!memcmp(yr, logits->data, (size_t)logits->numel * sizeof(float)));
        qat_rt_free(rt);
        qat_i8_set_path(saved);
    }
    qat_rt_backend backends[3] = {QAT_RT_BACKEND_ONEDNN, QAT_RT_BACKEND_AUTO, QAT_RT_BACKEND_REF};
    for (int b = 0; b < 3; b++) {
        qat_rt_options ro;
        qat_rt_options_default(&ro);
        ro.backend = backends[b];
        qat_rt *rt;
        CU_ASSERT_FATAL(qat_rt_from_model(im, &ro, &rt) == 0);
        CU_ASSERT(qat_rt_run(rt, x->data, x->shape[0], yr) == 0);
        CU_ASSERT(!memcmp(yr, logits->data, (size_t)logits->numel * sizeof(float)));
        if (backends[b] == QAT_RT_BACKEND_ONEDNN && qat_i8_dnnl_available()) {
            int on = 0; /* oneDNN really ran some layers */
            for (int i = 0; i < qat_rt_num_layers(rt); i++) {
                qat_rt_layer_info li;
                qat_rt_layer(rt, i, &li);
                on += !strcmp(li.backend, "onednn");
            }
            CU_ASSERT(on > 0);
        }
        qat_rt_free(rt);
    }
    qat_rt_lane_min_work = keep_lanes;
    /* through a .q8 file: a model with LUT / MUL layers is format version 2 and loads back to the
     * same logits (tables and multipliers included) */
    char path[] = "/tmp/qat_test_qint_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    CU_ASSERT_FATAL(qat_q8_save(im, path) == QAT_OK);
    FILE *f = fopen(path, "rb");
    unsigned char hdr[12] = {0};
    CU_ASSERT(f && fread(hdr, 1, 12, f) == 12);
    if (f) fclose(f);
    int version = 1;
    for (int li = 0; li < im->nlayers; li++) {
        const int k = im->layers[li].kind;
        const int v = k >= QAT_Q8_MAXPOOL || im->layers[li].act == QAT_Q8_ACT_SIGMOID ? 5 /* windowed pools, sigmoid */
                    : im->layers[li].weight && im->layers[li].wbits <= 4 ? 4 /* packed weights */
                    : k >= QAT_Q8_DEQUANT ? 3 : k >= QAT_Q8_LUT ? 2 : 1;
        version = v > version ? v : version;
    }
    CU_ASSERT_EQUAL(hdr[8], version);
    qat_rt *rtf;
    CU_ASSERT_FATAL(qat_rt_load(path, NULL, &rtf) == 0);
    CU_ASSERT(qat_rt_run(rtf, x->data, x->shape[0], yr) == 0);
    CU_ASSERT(!memcmp(yr, logits->data, (size_t)logits->numel * sizeof(float)));
    qat_rt_free(rtf);
    remove(path);
    free(yr);
    /* eval forward = simulation, bit for bit; the float graph is close but not the same thing */
    qat_tensor *ye = qat_quantized_forward(q, &ctx, x);
    CU_ASSERT(ye && !memcmp(ye->data, logits->data, (size_t)logits->numel * sizeof(float)));
    q->exact_eval = 0;
    qat_tensor *yg = qat_quantized_forward(q, &ctx, x);
    double sig = 0, noise = 0;
    for (int64_t i = 0; i < yg->numel; i++) {
        double d = (double)yg->data[i] - logits->data[i];
        sig += (double)yg->data[i] * yg->data[i], noise += d * d;
    }
    /* with the bias fake-quantized as convert stores it, the graph differs from the INT8
     * arithmetic only at float rounding near ties */
    double sqnr = 10 * log10(sig / fmax(noise, 1e-30));
    if (!(sqnr > min_sqnr)) printf("\n  float graph vs simulation: SQNR %.1f dB\n", sqnr);
    CU_ASSERT(sqnr > min_sqnr); /* tiny: 137-139 dB x86/w4a8, 60 dB per-tensor; 40 dB without the bias fake-quant */
    free(in);
    free(codes);
    qat_q8_free(im);
    qat_ctx_free(&ctx);
    qat_qmodel_free(q);
    qat_model_free(m);
    qat_spec_free(spec);
}

static void check_model_against_kernels(const char *spec_text, const char *qconfig, double min_sqnr) {
    check_mixed_against_kernels(spec_text, qconfig, NULL, min_sqnr);
}

static void test_sim_equals_kernels(void) { check_model_against_kernels(tiny_spec, "x86", 50); }

static void test_pools_sigmoid_se(void) {
    check_model_against_kernels(pool_spec, "x86", 40);
    check_model_against_kernels(pool_spec, "w4a8", 40);
}

/* Float layers between INT8 ones (a per-layer qconfig): the stem (its input dequantized), a
 * whole block (f32 values inside it, its project quantized for the residual add), one
 * depthwise conv and the classifier. Simulation == kernels, every runtime path, oneDNN, auto,
 * ref, and a .q8 round trip (format version 3) bit for bit; MobileNetV3's hardswish stem, which
 * has no INT8 form, converts once float. */
static void test_float_layers(void) {
    const char *floats = "features.0,features.2.body.*,features.3.body.1,fc";
    check_mixed_against_kernels(tiny_spec, "x86", floats, 50);
    check_mixed_against_kernels(tiny_spec, "w4a8", floats, 50);
    check_mixed_against_kernels(v3_spec, "x86", "features.0,features.1.block.*", 35);
    qat_model *m;
    qat_spec *spec;
    qat_ctx ctx;
    qat_tensor *x;
    qat_qmodel *q = calibrated_mixed(tiny_spec, "x86", floats, &m, &spec, &ctx, &x);
    qat_q8_model *im;
    CU_ASSERT_FATAL(qat_convert_qmodel(q, NULL, NULL, &im) == QAT_OK);
    int nf = 0, ndq = 0, nq = 0;
    for (int li = 0; li < im->nlayers; li++) {
        const qat_q8_layer *Y = &im->layers[li];
        nf += Y->kind == QAT_Q8_FCONV || Y->kind == QAT_Q8_FLINEAR;
        ndq += Y->kind == QAT_Q8_DEQUANT, nq += Y->kind == QAT_Q8_QUANT;
    }
    /* 6 float layers; dequantize into the stem, block 2, features.3's dw and fc; quantize out
     * of the stem, block 2's project and features.3's dw (fc's logits are float) */
    CU_ASSERT_EQUAL(nf, 6);
    CU_ASSERT_EQUAL(ndq, 4);
    CU_ASSERT_EQUAL(nq, 3);
    CU_ASSERT(im->layers[im->nlayers - 1].kind == QAT_Q8_FLINEAR);
    char names[256];
    qat_qmodel_float_names(q, names, sizeof names);
    CU_ASSERT_STRING_EQUAL(names, "features.0,features.2.body.0,features.2.body.1,features.2.body.2,features.3.body.1,fc");
    /* the validator refuses an INT8 layer reading a float value */
    for (int li = 0; li < im->nlayers; li++)
        if (im->layers[li].kind == QAT_Q8_QUANT) {
            int reader = -1;
            for (int j = li + 1; j < im->nlayers && reader < 0; j++)
                if (im->layers[j].input == li) reader = j;
            CU_ASSERT_FATAL(reader > 0);
            im->layers[reader].input = li - 1; /* the float layer itself */
            CU_ASSERT(qat_q8_validate(im, "m") != QAT_OK && strstr(qat_last_error(), "float"));
            im->layers[reader].input = li;
            break;
        }
    CU_ASSERT(qat_q8_validate(im, "m") == QAT_OK);
    qat_q8_free(im);
    CU_ASSERT(qat_qmodel_apply_float_list(q, "features.9*", "t") == QAT_ERR_ARG &&
              strstr(qat_last_error(), "matches no"));
    CU_ASSERT(qat_qmodel_apply_float_list(q, "pool", "t") == QAT_ERR_ARG);
    qat_ctx_free(&ctx);
    qat_qmodel_free(q);
    qat_model_free(m);
    qat_spec_free(spec);
}
static void test_sim_equals_kernels_v3(void) {
    /* the SE pool and the channel mul requantize an exact integer in one step where the float
     * graph rounds the mean / the product first: they differ at near-ties, and the gate scales
     * whole feature maps, so the graph is further from the INT8 arithmetic here (eval uses the
     * simulation, which is exact) */
    check_model_against_kernels(v3_spec, "x86", 35);
    check_model_against_kernels(v3_spec, "per-tensor", 35);
}
static void test_sim_equals_kernels_graph(void) {
    check_model_against_kernels(graph_spec, "x86", 35);
    check_model_against_kernels(graph_spec, "w4a8", 25);
}
static void test_sim_equals_kernels_w4a8(void) { check_model_against_kernels(tiny_spec, "w4a8", 50); }
static void test_sim_equals_kernels_per_tensor(void) { check_model_against_kernels(tiny_spec, "per-tensor", 50); }

/* A layer whose float partial sums could pass 2^24 (255 * 127 * 900 taps) takes the integer
 * loop: still identical, zero-point padding included. */
static void test_wide_layer_integer_path(void) {
    const int N = 2, H = 9, CIN = 4, K = 15, COUT = 5, CLS = 3; /* K*K*CIN = 900 taps */
    qat_q8_model m;
    memset(&m, 0, sizeof m);
    m.in_h = H, m.in_w = H, m.in_c = CIN, m.nclasses = CLS;
    m.in_scale = 0.02f, m.in_zp = 3, m.in_qmin = 0, m.in_qmax = 255;
    for (int i = 0; i < 4; i++) m.std[i] = 1.0f;
    qat_q8_layer L[3];
    memset(L, 0, sizeof L);
    int8_t *w = malloc((size_t)COUT * K * K * CIN), *wl = malloc((size_t)CLS * COUT);
    int32_t bias[5] = {100, -7, 0, 123456, -99999};
    float mult[5] = {1e-6f, 2e-6f, 5e-7f, 1e-6f, 3e-6f}, ws[5] = {0.01f, 0.01f, 0.01f, 0.01f, 0.01f};
    float lm[3] = {0.01f, 0.02f, 0.03f}, lb[3] = {0.5f, -0.25f, 0}, lws[3] = {0.1f, 0.1f, 0.1f};
    for (int i = 0; i < CLS * COUT; i++) wl[i] = (int8_t)(i * 37 % 255 - 127);
    L[0] = (qat_q8_layer){.kind = QAT_Q8_CONV, .name = "wide", .input = -1, .skip = -1, .in_h = H, .in_w = H,
                          .in_c = CIN, .out_h = H, .out_w = H, .out_c = COUT, .k = K, .stride = 1, .pad = 7, .groups = 1,
                          .weight = w, .bias = bias, .mult = mult, .wbits = 8, .wscale = ws, .sx = 0.02f,
                          .zx = 3, .sy = 0.05f, .zy = 10, .lo = 0, .hi = 255};
    L[1] = (qat_q8_layer){.kind = QAT_Q8_AVGPOOL, .name = "pool", .input = 0, .skip = -1, .in_h = H, .in_w = H,
                          .in_c = COUT, .out_h = 1, .out_w = 1, .out_c = COUT, .sx = 0.05f, .zx = 10,
                          .sy = 0.04f, .zy = 9, .lo = 0, .hi = 255, .pool_mult = qat_i8_avgpool_mult(0.05f, 0.04f, H * H)};
    L[2] = (qat_q8_layer){.kind = QAT_Q8_LINEAR, .name = "fc", .input = 1, .skip = -1, .in_h = 1, .in_w = 1,
                          .in_c = COUT, .out_h = 1, .out_w = 1, .out_c = CLS, .weight = wl, .mult = lm, .fbias = lb,
                          .wbits = 8, .wscale = lws, .sx = 0.04f, .zx = 9};
    m.nlayers = 3, m.layers = L;
    if (qat_q8_validate(&m, "wide")) printf("\n  %s\n", qat_last_error());
    CU_ASSERT_FATAL(qat_q8_validate(&m, "wide") == QAT_OK);
    qat_ctx ctx;
    qat_ctx_init(&ctx, 1 << 22);
    qat_tensor *x = qat_tensor_4d(&ctx, N, H, H, CIN);
    qat_rng r;
    qat_rng_seed(&r, 9);
    for (int i = 0; i < COUT * K * K * CIN; i++) w[i] = (int8_t)(qat_rng_uniform(&r) < 0.5f ? 127 : -128);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = 3.0f * qat_rng_uniform(&r);
    uint8_t *codes[3];
    qat_tensor *y = qat_qsim_forward(&m, &ctx, x, codes);
    CU_ASSERT_FATAL(y != NULL);
    uint8_t *in = malloc((size_t)x->numel);
    for (int64_t i = 0; i < x->numel; i++) in[i] = (uint8_t)qat_quantize(x->data[i], 1.0f / m.in_scale, 3, 0, 255);
    CU_ASSERT(kernel_matches(&L[0], N, in, NULL, codes[0], NULL));
    CU_ASSERT(kernel_matches(&L[1], N, codes[0], NULL, codes[1], NULL));
    CU_ASSERT(kernel_matches(&L[2], N, codes[1], NULL, NULL, y->data));
    /* not all codes saturated: the test exercises the arithmetic */
    int distinct = 0;
    for (int i = 1; i < N * H * H * COUT; i++) distinct += codes[0][i] != codes[0][0];
    CU_ASSERT(distinct > 0);
    free(in), free(w), free(wl);
    qat_ctx_free(&ctx);
}

/* The AVX2 requantization loop equals the scalar reference on odd widths, ties and extremes. */
static void test_requant_rows_simd(void) {
    if (qat_cpu_isa() < QAT_ISA_AVX2) return;
    const int C = 37, R = 9;
    float acc[37 * 9], mult[37];
    int32_t bias[37];
    qat_rng r;
    qat_rng_seed(&r, 4);
    for (int c = 0; c < C; c++) {
        mult[c] = c % 4 == 0 ? 0.5f : c % 4 == 1 ? 0.25f : 1e-3f + qat_rng_uniform(&r) * 0.05f;
        bias[c] = c % 5 == 0 ? 2000000000 : (int32_t)(qat_rng_normal(&r) * 5000);
    }
    for (int i = 0; i < C * R; i++)
        acc[i] = i % 11 == 0 ? -16777215.0f : (float)(int32_t)(qat_rng_normal(&r) * 3000);
    int32_t cfg[3][3] = {{0, 0, 255}, {128, 128, 255}, {255, 17, 200}};
    for (int k = 0; k < 3; k++) {
        uint8_t a[37 * 9], b[37 * 9];
        qat_requant_rows_ref(a, acc, R, C, bias, mult, cfg[k][0], cfg[k][1], cfg[k][2]);
        qat_requant_rows_avx2(b, acc, R, C, bias, mult, cfg[k][0], cfg[k][1], cfg[k][2]);
        CU_ASSERT(!memcmp(a, b, sizeof a));
    }
}

static void expect_refused(const char *spec_text, const char *qconfig, const char *needle, int fq_off) {
    qat_model *m;
    qat_spec *spec;
    qat_ctx ctx;
    qat_tensor *x;
    qat_qmodel *q = calibrated(spec_text, qconfig, &m, &spec, &ctx, &x);
    if (fq_off) q->points[2].fq.fake_quant_enabled = 0;
    qat_q8_model *im = (qat_q8_model *)1;
    char why[256];
    CU_ASSERT(!qat_convertible(q, why, sizeof why));
    CU_ASSERT(qat_convert_qmodel(q, NULL, NULL, &im) == QAT_ERR_ARG && im == NULL);
    if (!strstr(qat_last_error(), needle)) printf("\n  message: %s\n", qat_last_error());
    CU_ASSERT(strstr(qat_last_error(), needle) != NULL);
    /* eval falls back to the float graph instead of failing */
    CU_ASSERT(qat_quantized_forward(q, &ctx, x) != NULL);
    qat_ctx_free(&ctx);
    qat_qmodel_free(q);
    qat_model_free(m);
    qat_spec_free(spec);
}

static void test_refusals(void) {
    expect_refused(tiny_spec, "x86", "fake-quant is off", 1);
    /* no calibration at all */
    qat_spec *spec;
    qat_model *m = test_random_model(tiny_spec, 11, &spec, 1);
    qat_qconfig cfg;
    qat_qconfig_get("x86", &cfg);
    qat_qmodel *q;
    CU_ASSERT_FATAL(qat_qmodel_create(m, &cfg, QAT_QMODEL_PTQ, QAT_OBS_MINMAX, &q) == QAT_OK);
    qat_q8_model *im;
    CU_ASSERT(qat_convert_qmodel(q, NULL, NULL, &im) == QAT_ERR_ARG && strstr(qat_last_error(), "saw no data"));
    qat_qmodel_free(q);
    qat_model_free(m);
    qat_spec_free(spec);
}

/* Per-stage overrides of the spec: wbits=8 keeps the stem at 8 bits under w4a8 (and convert
 * stores it so), quant=0 leaves a block in float (fake-quant stays off there; convert makes float
 * layers of it). */
static void test_spec_overrides(void) {
    const char *mixed = "name mixed\n"
                        "stem conv k=3 c=8 s=1 act=relu6 wbits=8\n"
                        "block ir t=2 c=8 n=1 s=1\n"
                        "head conv k=1 c=16 act=relu\n"
                        "pool avg\n"
                        "classifier\n";
    qat_model *m;
    qat_spec *spec;
    qat_ctx ctx;
    qat_tensor *x;
    qat_qmodel *q = calibrated(mixed, "w4a8", &m, &spec, &ctx, &x);
    qat_q8_model *im;
    CU_ASSERT_FATAL(qat_convert_qmodel(q, NULL, NULL, &im) == QAT_OK);
    int wide = 0, narrow_ok = 1;
    for (int li = 0; li < im->nlayers; li++) {
        const qat_q8_layer *Y = &im->layers[li];
        if (Y->kind != QAT_Q8_CONV) continue;
        int64_t nw = (int64_t)Y->out_c * Y->k * Y->k * (Y->in_c / Y->groups);
        if (li == 0) {
            CU_ASSERT(Y->wbits == 8);
            for (int64_t i = 0; i < nw; i++) wide |= Y->weight[i] > 7 || Y->weight[i] < -8;
        } else {
            CU_ASSERT(Y->wbits == 4);
            for (int64_t i = 0; i < nw; i++) narrow_ok &= Y->weight[i] <= 7 && Y->weight[i] >= -8;
        }
    }
    CU_ASSERT(wide && narrow_ok);
    qat_q8_free(im);
    qat_ctx_free(&ctx);
    qat_qmodel_free(q);
    qat_model_free(m);
    qat_spec_free(spec);

    const char *floaty = "name floaty\n"
                         "stem conv k=3 c=8 s=1 act=relu6\n"
                         "block ir t=2 c=8 n=1 s=1 quant=0\n"
                         "pool avg\n"
                         "classifier\n";
    q = calibrated(floaty, "x86", &m, &spec, &ctx, &x);
    qat_qmodel_enable_fake_quant(q, 1);
    int off = 0;
    for (int i = 0; i < q->npoints; i++) off += !q->points[i].fq.fake_quant_enabled;
    /* expand, depthwise, project: a weight point each, and the outputs only float layers read
     * (the project's is quantized: the residual add reads it in INT8) */
    CU_ASSERT(off == 3 + 2);
    CU_ASSERT_FATAL(qat_convert_qmodel(q, NULL, NULL, &im) == QAT_OK);
    int nfloat = 0;
    for (int li = 0; li < im->nlayers; li++) nfloat += im->layers[li].kind == QAT_Q8_FCONV;
    CU_ASSERT(nfloat == 3);
    qat_tensor *ysim = qat_qsim_forward(im, &ctx, x, NULL);
    qat_tensor *yq = qat_quantized_forward(q, &ctx, x); /* eval = the simulation of the mixed model */
    CU_ASSERT(ysim && yq && !memcmp(ysim->data, yq->data, (size_t)yq->numel * sizeof(float)));
    qat_q8_free(im);
    qat_ctx_free(&ctx);
    qat_qmodel_free(q);
    qat_model_free(m);
    qat_spec_free(spec);

    qat_spec *bad = NULL;
    CU_ASSERT(qat_spec_parse("name b\nstem conv c=8 wbits=1\npool avg\nclassifier\n", "b.spec", &bad) == QAT_ERR_SPEC);
    CU_ASSERT(bad == NULL && strstr(qat_last_error(), "wbits=1") != NULL);
}

void register_qint_tests(void) {
    test_add_suite("qint", "simulation equals the int8 kernels on every layer (x86)", test_sim_equals_kernels,
                   "simulation equals the int8 kernels (w4a8)", test_sim_equals_kernels_w4a8,
                   "simulation equals the int8 kernels (general form, conv + bias)", test_sim_equals_kernels_graph,
                   "simulation equals the int8 kernels (per-tensor)", test_sim_equals_kernels_per_tensor,
                   "MobileNetV3 (hardswish, SE, 5x5 dw): simulation equals kernels, runtime, oneDNN",
                   test_sim_equals_kernels_v3,
                   "windowed pools, sigmoid, fc + mul (general form): simulation equals kernels, runtime, .q8 v5",
                   test_pools_sigmoid_se,
                   "wide layer takes the integer path", test_wide_layer_integer_path,
                   "AVX2 requantization equals the reference", test_requant_rows_simd,
                   "models without an INT8 form are refused", test_refusals,
                   "spec overrides: wbits= and quant=0", test_spec_overrides,
                   "float layers between INT8 ones: simulation == runtime on every path, .q8 v3",
                   test_float_layers, NULL);
}
