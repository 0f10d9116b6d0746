/* Stage 2 integration: qconfig presets, the fake-quant model (bitwise FP32 when disabled, BN
 * folding arithmetic), PTQ, the QAT freeze schedule, QAT checkpoints and bad inputs, on a tiny
 * synthetic IDX dataset in a temp directory. */
#include "test_util.h"
#include "train.h"
#include "kernels.h"
#include "quant.h"
#include "qmodel.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256], data_dir[300], small_dir[300], spec_path[300], fp32_dir[300];

/* Has a residual add (second ir block: stride 1, 8 -> 8) and project convs without activation. */
static const char *tiny_spec =
    "name tiny\n"
    "stem conv k=3 c=8 s=1 act=relu6\n"
    "block ir t=2 c=8 n=2 s=1\n"
    "block ir t=2 c=16 n=1 s=2\n"
    "head conv k=1 c=16 act=relu6\n"
    "pool avg\n"
    "classifier\n";

static void base_opts(qat_train_opts *o, const char *out) {
    qat_train_opts_default(o);
    o->data = data_dir;
    o->model = spec_path;
    o->out_dir = out;
    o->epochs = 4;
    o->batch = 32;
    o->threads = 1;
    o->lr = 0.05f;
    o->seed = 7;
}

static int setup(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qat_qat_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    snprintf(data_dir, sizeof data_dir, "%s/data", tmpdir);
    snprintf(small_dir, sizeof small_dir, "%s/small", tmpdir);
    mkdir(data_dir, 0777);
    mkdir(small_dir, 0777);
    test_write_bars_idx(data_dir, "train", 384, 12, 1);
    test_write_bars_idx(data_dir, "t10k", 96, 12, 2);
    test_write_bars_idx(small_dir, "train", 64, 8, 3);
    test_write_bars_idx(small_dir, "t10k", 32, 8, 4);
    snprintf(spec_path, sizeof spec_path, "%s/tiny.spec", tmpdir);
    FILE *f = fopen(spec_path, "w");
    if (!f) return 1;
    fputs(tiny_spec, f);
    fclose(f);
    /* One FP32 model that the PTQ/QAT tests start from. */
    snprintf(fp32_dir, sizeof fp32_dir, "%s/fp32", tmpdir);
    qat_train_opts o;
    base_opts(&o, fp32_dir);
    if (qat_train_run(&o)) {
        printf("\n  %s\n", qat_last_error());
        return 1;
    }
    return 0;
}

static int teardown(void) {
    return test_rm_tree(tmpdir);
}

static qat_run load(const char *path) {
    qat_run r;
    qat_status st = qat_checkpoint_load(path, &r);
    if (st) printf("\n  %s\n", qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);
    return r;
}

static void test_qconfig_presets(void) {
    qat_qconfig c;
    CU_ASSERT_FATAL(qat_qconfig_get("x86", &c) == QAT_OK);
    CU_ASSERT(c.act.bits == 8 && !c.act.is_signed && !c.act.symmetric && !c.act.per_channel);
    CU_ASSERT(c.weight.bits == 8 && c.weight.is_signed && c.weight.symmetric &&
              c.weight.per_channel && c.weight.axis == 0);
    CU_ASSERT(c.act_obs_qat == QAT_OBS_MOVING_AVG && c.act_obs_ptq == QAT_OBS_MINMAX);
    CU_ASSERT_FATAL(qat_qconfig_get("per-tensor", &c) == QAT_OK);
    CU_ASSERT(c.weight.bits == 8 && c.weight.symmetric && !c.weight.per_channel);
    CU_ASSERT_FATAL(qat_qconfig_get("w4a8", &c) == QAT_OK);
    CU_ASSERT(c.weight.bits == 4 && c.weight.per_channel && c.act.bits == 8);
    int32_t lo, hi;
    qat_qscheme_range(&c.weight, &lo, &hi);
    CU_ASSERT(lo == -7 && hi == 7);
    CU_ASSERT(!c.lsq);
    CU_ASSERT_FATAL(qat_qconfig_get("lsq", &c) == QAT_OK);
    CU_ASSERT(c.lsq && c.weight.bits == 8 && c.weight.per_channel);
    CU_ASSERT(qat_qconfig_get("x87", &c) == QAT_ERR_ARG);
    CU_ASSERT(strstr(qat_last_error(), "x87") && strstr(qat_last_error(), "w4a8"));
}

static qat_model *random_model(qat_spec **spec, uint64_t seed) {
    return test_random_model(tiny_spec, 12, spec, seed);
}

static qat_tensor *input(qat_ctx *ctx, int n, uint64_t seed) {
    qat_rng r;
    qat_rng_seed(&r, seed);
    qat_tensor *x = qat_tensor_4d(ctx, n, 12, 12, 1);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = qat_rng_normal(&r);
    return x;
}

/* Fake-quant off everywhere: logits, BN statistics and every gradient equal the FP32 model's
 * bit for bit, in training (batch statistics) and eval mode. */
static void test_disabled_is_fp32(void) {
    qat_spec *spec;
    qat_model *m = random_model(&spec, 3);
    qat_qconfig cfg;
    qat_qconfig_get("x86", &cfg);
    qat_qmodel *q;
    CU_ASSERT_FATAL(qat_qmodel_create(m, &cfg, QAT_QMODEL_QAT, 0, &q) == QAT_OK);
    qat_qmodel_enable_fake_quant(q, 0);
    size_t bbytes = (size_t)m->nbuffers * sizeof(float), pbytes = (size_t)m->nparams * sizeof(float);
    float *buf0 = malloc(bbytes), *buf1 = malloc(bbytes), *g1 = malloc(pbytes);
    memcpy(buf0, m->buffers, bbytes);
    for (int training = 1; training >= 0; training--) {
        float *out[2];
        int K = 0;
        for (int pass = 0; pass < 2; pass++) {
            memcpy(m->buffers, buf0, bbytes);
            qat_model_zero_grad(m);
            qat_ctx ctx;
            qat_ctx_init(&ctx, 1 << 20);
            ctx.training = training;
            ctx.grad_enabled = 1;
            qat_tensor *x = input(&ctx, 4, 9);
            qat_tensor *y = pass ? qat_quantized_forward(q, &ctx, x) : qat_model_forward(m, &ctx, x);
            CU_ASSERT_FATAL(y != NULL);
            int32_t labels[4] = {0, 1, 2, 1};
            qat_backward(&ctx, qat_softmax_cross_entropy(&ctx, y, labels, 0.0f));
            K = (int)y->numel;
            out[pass] = malloc((size_t)K * sizeof(float));
            memcpy(out[pass], y->data, (size_t)K * sizeof(float));
            if (!pass) memcpy(buf1, m->buffers, bbytes), memcpy(g1, m->grads, pbytes);
            qat_ctx_free(&ctx);
        }
        CU_ASSERT(memcmp(out[0], out[1], (size_t)K * sizeof(float)) == 0);
        CU_ASSERT(memcmp(buf1, m->buffers, bbytes) == 0);
        CU_ASSERT(memcmp(g1, m->grads, pbytes) == 0);
        free(out[0]), free(out[1]);
    }
    /* ... and the observers did watch (QAT mode, training) */
    CU_ASSERT(q->points[0].fq.obs.seen > 0);
    free(buf0), free(buf1), free(g1);
    qat_qmodel_free(q);
    qat_model_free(m);
    qat_spec_free(spec);
}

/* BN folded into the conv (y = conv(x, w*s)/s then BN with running stats) equals conv -> BN in
 * eval mode: the folding arithmetic is right. With fake-quant on the output moves. */
static void test_fold_matches_eval(void) {
    qat_spec *spec;
    qat_model *m = random_model(&spec, 5);
    qat_qconfig cfg;
    qat_qconfig_get("x86", &cfg);
    qat_qmodel *q;
    CU_ASSERT_FATAL(qat_qmodel_create(m, &cfg, QAT_QMODEL_PTQ, QAT_OBS_MINMAX, &q) == QAT_OK);
    qat_ctx ctx;
    qat_ctx_init(&ctx, 1 << 20);
    ctx.training = 0;
    ctx.grad_enabled = 0;
    qat_tensor *x = input(&ctx, 4, 11);
    qat_tensor *ref = qat_model_forward(m, &ctx, x);
    qat_qmodel_enable_fake_quant(q, 0);
    q->fold_bn = 2;
    qat_tensor *y = qat_quantized_forward(q, &ctx, x);
    CU_ASSERT(test_compare("folded conv-bn", y->data, ref->data, y->numel, 1e-5) <= 1e-5);
    CU_ASSERT(memcmp(y->data, ref->data, (size_t)y->numel * sizeof(float)) != 0); /* it did fold */
    /* calibrate on this batch, freeze, quantize: close to FP32 but not equal */
    q->fold_bn = 1;
    q->calibrating = 1;
    qat_quantized_forward(q, &ctx, x);
    q->calibrating = 0;
    CU_ASSERT_FATAL(qat_qmodel_freeze_observers(q) == QAT_OK);
    qat_qmodel_enable_fake_quant(q, 1);
    q->exact_eval = 0; /* the float graph, whose trace qat_qmodel_sqnr compares below */
    qat_tensor *yq = qat_quantized_forward(q, &ctx, x);
    /* signal-to-quantization-noise ratio of the logits of a random 8-layer network */
    double sig = 0, noise = 0;
    for (int64_t i = 0; i < yq->numel; i++) {
        sig += (double)ref->data[i] * ref->data[i];
        noise += (double)(yq->data[i] - ref->data[i]) * (yq->data[i] - ref->data[i]);
    }
    double sqnr = 10 * log10(sig / fmax(noise, 1e-30));
    /* 8-bit: ~35-45 dB per layer. Calibration ran with fake-quant off, so this also checks
     * that the weight observers saw the folded weights then (about 10 dB when they did not). */
    CU_ASSERT(noise > 0 && sqnr > 25);
    double *ls = malloc((size_t)m->nlayers * sizeof(double));
    qat_qmodel_sqnr(q, &ctx, x, ls);
    for (int i = 0; i < m->nlayers; i++) {
        if (!(ls[i] > 25)) printf("\n  %s: SQNR %.1f dB\n", m->layers[i].name, ls[i]);
        CU_ASSERT(ls[i] > 25 && isfinite(ls[i]));
    }
    CU_ASSERT(fabs(ls[m->nlayers - 1] - sqnr) < 1e-6);
    free(ls);
    qat_ctx_free(&ctx);
    qat_qmodel_free(q);
    qat_model_free(m);
    qat_spec_free(spec);
}

/* Fold forced, fake-quant off. Batch statistics: BN(conv(x, w*s)/s) is conv -> BN
 * mathematically; running statistics (eval, or BN frozen during training): conv(x, w*s) +
 * beta - gamma*mean/std is conv -> BN in eval. Logits and every parameter gradient (w through
 * the fold, gamma through the fold and the folded bias in the running case) match the FP32
 * model to rounding; a frozen BN leaves its running statistics as they were. */
static void test_fold_gradients(void) {
    qat_spec *spec;
    qat_model *m = random_model(&spec, 8);
    qat_qconfig cfg;
    qat_qconfig_get("x86", &cfg);
    qat_qmodel *q;
    CU_ASSERT_FATAL(qat_qmodel_create(m, &cfg, QAT_QMODEL_QAT, 0, &q) == QAT_OK);
    qat_qmodel_enable_fake_quant(q, 0);
    q->fold_bn = 2;
    size_t bbytes = (size_t)m->nbuffers * sizeof(float), pbytes = (size_t)m->nparams * sizeof(float);
    float *buf0 = malloc(bbytes), *g0 = malloc(pbytes), *y0 = NULL;
    memcpy(buf0, m->buffers, bbytes);
    /* mode 0: batch statistics; 1: eval; 2: training with BN frozen (reference: eval) */
    for (int mode = 0; mode < 3; mode++) {
        for (int pass = 0; pass < 2; pass++) {
            memcpy(m->buffers, buf0, bbytes);
            qat_model_zero_grad(m);
            qat_ctx ctx;
            qat_ctx_init(&ctx, 1 << 20);
            ctx.training = mode == 0 || (mode == 2 && pass);
            ctx.grad_enabled = 1;
            if (mode == 2 && pass) qat_qmodel_freeze_bn(q);
            qat_tensor *x = input(&ctx, 6, 19);
            qat_tensor *y = pass ? qat_quantized_forward(q, &ctx, x) : qat_model_forward(m, &ctx, x);
            int32_t labels[6] = {0, 1, 2, 1, 0, 2};
            qat_backward(&ctx, qat_softmax_cross_entropy(&ctx, y, labels, 0.0f));
            if (!pass) {
                memcpy(g0, m->grads, pbytes);
                free(y0);
                y0 = malloc((size_t)y->numel * sizeof(float));
                memcpy(y0, y->data, (size_t)y->numel * sizeof(float));
            } else {
                CU_ASSERT(test_compare("fold logits", y->data, y0, y->numel, 1e-5) <= 1e-5);
                /* relative to the largest gradient: tiny gradients carry only rounding */
                double gmax = 0, worst = 0;
                for (int64_t i = 0; i < m->nparams; i++) gmax = fmax(gmax, fabs(g0[i]));
                for (int64_t i = 0; i < m->nparams; i++) worst = fmax(worst, fabs(m->grads[i] - g0[i]));
                if (!(worst <= 1e-3 * gmax))
                    printf("\n  mode %d: grad diff %g of max %g\n", mode, worst, gmax);
                CU_ASSERT(gmax > 0 && worst <= 1e-3 * gmax);
                if (mode == 2) CU_ASSERT(memcmp(m->buffers, buf0, bbytes) == 0);
            }
            qat_ctx_free(&ctx);
        }
    }
    free(buf0), free(g0), free(y0);
    qat_qmodel_free(q);
    qat_model_free(m);
    qat_spec_free(spec);
}

static void test_ptq_close_to_fp32(void) {
    char ckpt[400], out[400];
    snprintf(ckpt, sizeof ckpt, "%s/last.ckpt", fp32_dir);
    snprintf(out, sizeof out, "%s/ptq.ckpt", tmpdir);
    const char *observers[2] = {"minmax", "histogram"};
    for (int k = 0; k < 2; k++) {
        qat_ptq_opts o;
        qat_ptq_opts_default(&o);
        o.ckpt = ckpt, o.data = data_dir, o.out = out, o.observer = observers[k];
        o.calib_batches = 4, o.batch = 32, o.threads = 1;
        qat_eval_result fp, qr;
        qat_status st = qat_ptq_run(&o, &fp, &qr);
        if (st) printf("\n  %s\n", qat_last_error());
        CU_ASSERT_FATAL(st == QAT_OK);
        CU_ASSERT(fp.accuracy > 0.8f);
        CU_ASSERT(fabsf(qr.accuracy - fp.accuracy) <= 0.05f);
        /* `qat eval` of the PTQ checkpoint evaluates the fake-quant model */
        qat_eval_result ev;
        CU_ASSERT_FATAL(qat_checkpoint_evaluate(out, data_dir, &ev) == QAT_OK);
        CU_ASSERT(ev.accuracy == qr.accuracy && ev.loss == qr.loss);
        char *report = NULL;
        st = qat_inspect(out, data_dir, 0, 16, &report, NULL);
        CU_ASSERT_FATAL(st == QAT_OK && report);
        /* one row per layer with an SQNR: the head conv's row ends in a number */
        const char *row = strstr(report, "\nfeatures.4 ");
        CU_ASSERT(strstr(report, "SQNR") && row && strstr(report, "\nfc "));
        if (row) {
            const char *eol = strchr(row + 1, '\n'), *p = eol;
            while (p > row && p[-1] != ' ') p--;
            CU_ASSERT(eol && strtod(p, NULL) > 10);
        }
        qat_layer_sqnr ls;
        char *rep2 = NULL;
        CU_ASSERT_FATAL(qat_inspect(out, data_dir, 0, 16, &rep2, &ls) == QAT_OK);
        CU_ASSERT(ls.n > 0 && !strcmp(ls.names[ls.n - 1], "fc") && ls.sqnr_db[ls.n - 1] > 10);
        CU_ASSERT(rep2 && !strcmp(rep2, report));
        free(rep2);
        qat_layer_sqnr_free(&ls);
        free(report);
        qat_run r = load(out);
        CU_ASSERT(r.qmodel && r.qmodel->observers_frozen && !r.has_opt);
        CU_ASSERT(r.qmodel && r.qmodel->act_obs == (k ? QAT_OBS_HISTOGRAM : QAT_OBS_MINMAX));
        qat_run_free(&r);
    }
    qat_ptq_opts o;
    qat_ptq_opts_default(&o);
    o.ckpt = ckpt, o.data = data_dir, o.out = out, o.observer = "kl";
    qat_eval_result fp, qr;
    CU_ASSERT(qat_ptq_run(&o, &fp, &qr) == QAT_ERR_ARG);
    CU_ASSERT(strstr(qat_last_error(), "kl") != NULL);
    char *report = NULL;
    CU_ASSERT(qat_inspect(ckpt, data_dir, 0, 16, &report, NULL) == QAT_ERR_ARG && !report);
    CU_ASSERT(strstr(qat_last_error(), "FP32") != NULL);
}

/* Issue 16 point 4: the PTQ observers from the options. On the same calibration batches a
 * moving average with c = 1 (the last batch's range) and the 99th percentile keep a range
 * inside min-max's, so no activation scale is larger and some are smaller; "mse" is the
 * histogram observer; bad settings are refused before any work. */
static void ptq_scales(const char *obs, float pct, float avg, float *scales, int *n) {
    char ckpt[400], out[400];
    snprintf(ckpt, sizeof ckpt, "%s/last.ckpt", fp32_dir);
    snprintf(out, sizeof out, "%s/ptq-%s.ckpt", tmpdir, obs);
    qat_ptq_opts o;
    qat_ptq_opts_default(&o);
    o.ckpt = ckpt, o.data = data_dir, o.out = out, o.observer = obs;
    o.percentile = pct, o.averaging_constant = avg;
    o.calib_batches = 4, o.batch = 32, o.threads = 1;
    qat_eval_result fp, qr;
    qat_status st = qat_ptq_run(&o, &fp, &qr);
    if (st) printf("\n  %s: %s\n", obs, qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);
    CU_ASSERT(fabsf(qr.accuracy - fp.accuracy) <= 0.1f);
    qat_run r = load(out);
    CU_ASSERT_FATAL(r.qmodel != NULL);
    *n = 0;
    for (int i = 0; i < r.qmodel->npoints; i++)
        if (!r.qmodel->points[i].weight) scales[(*n)++] = r.qmodel->points[i].fq.scale[0];
    qat_run_free(&r);
}

static void test_ptq_observers(void) {
    float mm[256], ma[256], pc[256], mse[256], hist[256];
    int n, n2;
    ptq_scales("minmax", 99.99f, 0.01f, mm, &n);
    ptq_scales("moving-average", 99.99f, 1.0f, ma, &n2);
    CU_ASSERT_FATAL(n == n2 && n > 3);
    ptq_scales("percentile", 99.0f, 0.01f, pc, &n2);
    ptq_scales("mse", 99.99f, 0.01f, mse, &n2);
    ptq_scales("histogram", 99.99f, 0.01f, hist, &n2);
    int ma_smaller = 0, pc_smaller = 0;
    for (int i = 0; i < n; i++) {
        CU_ASSERT(ma[i] <= mm[i] && pc[i] <= mm[i]);
        ma_smaller += ma[i] < mm[i];
        pc_smaller += pc[i] < mm[i];
    }
    CU_ASSERT(ma_smaller > 0 && pc_smaller > 0);
    CU_ASSERT(memcmp(mse, hist, (size_t)n * sizeof(float)) == 0);
    CU_ASSERT(memcmp(pc, hist, (size_t)n * sizeof(float)) != 0);
    qat_ptq_opts o;
    qat_ptq_opts_default(&o);
    o.ckpt = "/nonexistent.ckpt", o.data = data_dir, o.out = "/nonexistent/out.ckpt";
    o.observer = "percentile", o.percentile = 40;
    qat_eval_result fp, qr;
    CU_ASSERT(qat_ptq_run(&o, &fp, &qr) == QAT_ERR_ARG && strstr(qat_last_error(), "--percentile 40"));
    o.observer = "moving-average", o.averaging_constant = 0;
    CU_ASSERT(qat_ptq_run(&o, &fp, &qr) == QAT_ERR_ARG && strstr(qat_last_error(), "--averaging-constant 0"));
}

/* Issue 16 point 2: per-layer sensitivity. One row per conv/linear in model order; the FP32
 * column is the FP32 checkpoint's own accuracy; 4-bit weights cost more than 8-bit; leaving
 * the most sensitive layer float brings the logits closer to FP32 than quantizing everything. */
static void test_sensitivity(void) {
    char ckpt[400];
    snprintf(ckpt, sizeof ckpt, "%s/last.ckpt", fp32_dir);
    qat_sensitivity s8, s4;
    qat_sensitivity_opts o;
    qat_sensitivity_opts_default(&o);
    o.ckpt = ckpt, o.data = data_dir, o.calib_batches = 4, o.images = 100000, o.threads = 1;
    o.qconfig = "x86";
    qat_status st = qat_sensitivity_run(&o, &s8);
    if (st) printf("\n  %s\n", qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);
    o.qconfig = "w4a8";
    CU_ASSERT_FATAL(qat_sensitivity_run(&o, &s4) == QAT_OK);
    qat_run r = load(ckpt);
    int k = 0, names_ok = 1;
    for (int i = 0; i < r.model->nlayers; i++) {
        qat_layer_kind kind = r.model->layers[i].kind;
        if (kind != QAT_LAYER_CONV_BN_ACT && kind != QAT_LAYER_LINEAR && kind != QAT_LAYER_FC) continue;
        names_ok &= k < s8.n && !strcmp(s8.names[k], r.model->layers[i].name);
        k++;
    }
    CU_ASSERT(names_ok && k == s8.n && s8.n == s4.n && s8.n > 3);
    qat_eval_result ev;
    CU_ASSERT_FATAL(qat_checkpoint_evaluate(ckpt, data_dir, &ev) == QAT_OK);
    CU_ASSERT(s8.images == ev.n && fabs(s8.fp32_acc - ev.accuracy) < 1e-6);
    CU_ASSERT(s4.quant_all_kl > s8.quant_all_kl && s8.quant_all_kl > 0);
    double best = 1e30;
    int finite = 1;
    for (int i = 0; i < s4.n; i++) {
        best = s4.float_kl[i] < best ? s4.float_kl[i] : best;
        finite &= isfinite(s4.float_kl[i]) && s4.float_kl[i] >= 0 && isfinite(s4.quant_kl[i]) && s4.quant_kl[i] >= 0;
        /* one layer quantized costs less than all of them */
        CU_ASSERT(s4.quant_kl[i] < s4.quant_all_kl);
    }
    CU_ASSERT(finite && best < s4.quant_all_kl);
    qat_run_free(&r);
    qat_sensitivity_free(&s8), qat_sensitivity_free(&s4);
    o.qconfig = "lsq";
    CU_ASSERT(qat_sensitivity_run(&o, &s4) == QAT_ERR_ARG);
}

/* Issue 16 points 1+2: qat quantize --allow-float K leaves the K layers the sensitivity
 * analysis ranks first (lowest KL with only that layer float) in float, calibrates again, says
 * which, and the converted model with its float layers runs on the INT8 runtime with the
 * simulation's logits on every test image; the checkpoint keeps the choice. */
static void test_allow_float(void) {
    char ckpt[400], out[400], work[400], ptqf[460];
    snprintf(ckpt, sizeof ckpt, "%s/last.ckpt", fp32_dir);
    snprintf(out, sizeof out, "%s/af.q8", tmpdir);
    snprintf(work, sizeof work, "%s/af.work", tmpdir);
    qat_quantize_opts o;
    qat_quantize_opts_default(&o);
    o.ckpt = ckpt, o.data = data_dir, o.out = out, o.work_dir = work;
    o.qconfig = "w4a8", o.max_drop = 0, o.qat_epochs = 0, o.calib_batches = 4, o.threads = 1;
    o.allow_float = 2, o.sensitivity_images = 96;
    o.observer = "percentile", o.percentile = 55; /* ranges clipped hard: PTQ misses the target */
    qat_quantize_report r;
    qat_status st = qat_quantize_run(&o, &r);
    if (st) printf("\n  %s\n", qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);
    CU_ASSERT(r.ptq.accuracy < r.target);
    CU_ASSERT_FATAL(r.float_ran);
    /* the same analysis, ranked by hand */
    qat_sensitivity_opts so;
    qat_sensitivity_opts_default(&so);
    so.ckpt = ckpt, so.data = data_dir, so.qconfig = "w4a8", so.observer = o.observer;
    so.calib_batches = 4, so.images = 96, so.threads = 1, so.percentile = o.percentile;
    qat_sensitivity s;
    CU_ASSERT_FATAL(qat_sensitivity_run(&so, &s) == QAT_OK);
    int first = 0, second = -1;
    for (int i = 1; i < s.n; i++) first = s.float_kl[i] < s.float_kl[first] ? i : first;
    for (int i = 0; i < s.n; i++)
        if (i != first && (second < 0 || s.float_kl[i] < s.float_kl[second])) second = i;
    char expect[200];
    snprintf(expect, sizeof expect, "%s,%s", s.names[first], s.names[second]);
    if (strcmp(r.float_layers, expect)) printf("\n  chose '%s', expected '%s'\n", r.float_layers, expect);
    CU_ASSERT_STRING_EQUAL(r.float_layers, expect);
    /* the float layers are in the checkpoint and the .q8; runtime == simulation */
    snprintf(ptqf, sizeof ptqf, "%s/ptq_float.ckpt", work);
    char names[200];
    CU_ASSERT(qat_checkpoint_float_layers(ptqf, names, sizeof names) == QAT_OK);
    CU_ASSERT(strstr(names, s.names[first]) && strstr(names, s.names[second]) && strchr(names, ',') &&
              !strchr(strchr(names, ',') + 1, ','));
    if (!strcmp(r.chosen, "ptq-float")) {
        qat_convert_info ci;
        CU_ASSERT(qat_convert(ptqf, out, &ci) == QAT_OK && ci.float_layers == 2);
    }
    CU_ASSERT(r.same_logits == r.int8.n && r.int8.n > 0);
    qat_sensitivity_free(&s);
    o.allow_float = -1;
    CU_ASSERT(qat_quantize_run(&o, &r) == QAT_ERR_ARG);
}

static void qat_opts(qat_qat_opts *qo, const char *out) {
    static char ckpt[400];
    snprintf(ckpt, sizeof ckpt, "%s/last.ckpt", fp32_dir);
    qat_qat_opts_default(qo);
    qat_train_opts *o = &qo->train;
    o->data = data_dir, o->out_dir = out, o->batch = 32, o->threads = 1, o->seed = 7;
    o->epochs = 3;
    o->lr = 0.005f;
    qo->ckpt = ckpt;
    o->freeze_bn_epochs = 1;
    o->freeze_observer_epochs = 2;
}

/* Activation observer ranges and qparams of every point. */
static int same_quant_state(const qat_qmodel *a, const qat_qmodel *b) {
    if (a->npoints != b->npoints) return 0;
    for (int i = 0; i < a->npoints; i++) {
        const qat_fq *x = &a->points[i].fq, *y = &b->points[i].fq;
        size_t c = (size_t)x->nchannels;
        if (memcmp(x->scale, y->scale, c * sizeof(float)) ||
            memcmp(x->zero_point, y->zero_point, c * sizeof(int32_t)) ||
            memcmp(x->obs.min_val, y->obs.min_val, c * sizeof(float)) ||
            memcmp(x->obs.max_val, y->obs.max_val, c * sizeof(float)))
            return 0;
    }
    return 1;
}

/* 3 epochs, BN frozen after 1, observers after 2, run one epoch at a time through --resume:
 * BN statistics change in epoch 1 and when they freeze, ranges in epochs 1-2 only. Then the last checkpoint
 * round-trips: evaluating it again after save/load gives the same logits. */
static void test_freeze_schedule_and_roundtrip(void) {
    char dirs[3][300], resume[3][400];
    const int spe = 384 / 32;
    for (int e = 0; e < 3; e++) {
        snprintf(dirs[e], sizeof dirs[e], "%s/qat%d", tmpdir, e);
        snprintf(resume[e], sizeof resume[e], "%s/qat%d/last.ckpt", tmpdir, e);
        qat_qat_opts qo;
        qat_opts(&qo, dirs[e]);
        qo.train.max_steps = spe;
        if (e) qo.train.resume = resume[e - 1];
        qat_status st = qat_qat_run(&qo);
        if (st) printf("\n  %s\n", qat_last_error());
        CU_ASSERT_FATAL(st == QAT_OK);
    }
    char fp32[400];
    snprintf(fp32, sizeof fp32, "%s/last.ckpt", fp32_dir);
    qat_run r0 = load(fp32), r[3];
    for (int e = 0; e < 3; e++) {
        r[e] = load(resume[e]);
        CU_ASSERT_FATAL(r[e].qmodel != NULL);
        CU_ASSERT(r[e].step == (e + 1) * spe && r[e].epoch == e + 1);
    }
    size_t bb = (size_t)r0.model->nbuffers * sizeof(float);
    CU_ASSERT(memcmp(r0.model->buffers, r[0].model->buffers, bb) != 0);
    /* re-estimated when they freeze (start of epoch 2), then fixed */
    CU_ASSERT(memcmp(r[0].model->buffers, r[1].model->buffers, bb) != 0);
    CU_ASSERT(memcmp(r[1].model->buffers, r[2].model->buffers, bb) == 0);
    CU_ASSERT(r[2].qmodel->freeze_bn_step == spe && r[2].qmodel->freeze_observer_step == 2 * spe);
    CU_ASSERT(!r[0].qmodel->bn_frozen && r[1].qmodel->bn_frozen);
    CU_ASSERT(!same_quant_state(r[0].qmodel, r[1].qmodel));
    CU_ASSERT(same_quant_state(r[1].qmodel, r[2].qmodel));
    CU_ASSERT(!r[1].qmodel->observers_frozen && r[2].qmodel->observers_frozen);
    /* weights still train after both freezes */
    CU_ASSERT(memcmp(r[1].model->params, r[2].model->params,
                     (size_t)r0.model->nparams * sizeof(float)) != 0);
    char path[600];
    snprintf(path, sizeof path, "%s/again.ckpt", tmpdir);
    CU_ASSERT_FATAL(qat_checkpoint_save(path, &r[2]) == QAT_OK);
    qat_run r2 = load(path);
    qat_ctx ctx;
    qat_ctx_init(&ctx, 1 << 20);
    ctx.training = 0;
    ctx.grad_enabled = 0;
    qat_tensor *x = input(&ctx, 8, 13);
    qat_tensor *a = qat_run_forward(&r[2], &ctx, x), *b = qat_run_forward(&r2, &ctx, x);
    CU_ASSERT(memcmp(a->data, b->data, (size_t)a->numel * sizeof(float)) == 0);
    qat_qmodel_enable_fake_quant(r2.qmodel, 0);
    qat_tensor *c = qat_run_forward(&r2, &ctx, x);
    CU_ASSERT(memcmp(a->data, c->data, (size_t)a->numel * sizeof(float)) != 0);
    qat_ctx_free(&ctx);
    qat_run_free(&r2);
    /* the metrics say phase "qat" */
    snprintf(path, sizeof path, "%s/metrics.jsonl", dirs[2]);
    FILE *f = fopen(path, "r");
    char line[4096] = "";
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT(fgets(line, sizeof line, f) != NULL);
    CU_ASSERT(strstr(line, "{\"phase\": \"config\", \"run\": \"qat\"") == line); /* the run's start */
    CU_ASSERT(fgets(line, sizeof line, f) != NULL);
    fclose(f);
    CU_ASSERT(strstr(line, "\"phase\": \"qat\"") != NULL);
    qat_run_free(&r0);
    for (int e = 0; e < 3; e++) qat_run_free(&r[e]);
}

/* Each epoch's train loss from DIR/metrics.jsonl (up to n); returns how many were read. */
static int read_epoch_losses(const char *dir, double *loss, int n) {
    char path[400], line[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    int k = 0;
    while (f && k < n && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"train_loss\": ");
        if (p) loss[k++] = atof(p + strlen("\"train_loss\": "));
    }
    if (f) fclose(f);
    return k;
}

/* Issue 10: the forward must not change when BN freezes. A model stopped while its learning
 * rate was high has running statistics that lag its weights (an exponential average over ~10
 * steps of weights that moved). QAT at a near-zero learning rate, BN frozen after one epoch:
 * with the statistics re-estimated at the freeze, the frozen epoch's train loss equals the
 * unfrozen one's within noise; keeping the moving averages (the old behaviour) the loss jumps,
 * which shows the check can fail. */
static void test_bn_freeze_continuity(void) {
    char lagging[300], dir[400];
    snprintf(lagging, sizeof lagging, "%s/lagging", tmpdir);
    qat_train_opts o;
    base_opts(&o, lagging);
    o.lr = 0.4f;
    o.max_steps = 12 * 3 / 2; /* stopped early in a 4-epoch one-cycle run: lr still high */
    CU_ASSERT_FATAL(qat_train_run(&o) == QAT_OK);
    double ratio[2];
    for (int reest = 1; reest >= 0; reest--) {
        snprintf(dir, sizeof dir, "%s/continuity%d", tmpdir, reest);
        qat_qat_opts qo;
        qat_opts(&qo, dir);
        static char ckpt[400];
        snprintf(ckpt, sizeof ckpt, "%s/last.ckpt", lagging);
        qo.ckpt = ckpt;
        qo.train.lr = 1e-7f;
        qo.train.epochs = 2;
        qo.train.freeze_bn_epochs = 1;
        qo.train.freeze_observer_epochs = QAT_FREEZE_NEVER;
        qo.train.bn_reestimate_batches = reest ? QAT_BN_REESTIMATE_BATCHES : 0;
        qat_status st = qat_qat_run(&qo);
        if (st) printf("\n  %s\n", qat_last_error());
        CU_ASSERT_FATAL(st == QAT_OK);
        double loss[2];
        CU_ASSERT_FATAL(read_epoch_losses(dir, loss, 2) == 2);
        ratio[reest] = loss[1] / loss[0];
    }
    if (getenv("QAT_TEST_VERBOSE") || !(ratio[1] < 1.1 && ratio[0] > 1.3))
        printf("\n  frozen/unfrozen epoch loss: %.3f re-estimated, %.3f moving averages\n", ratio[1], ratio[0]);
    CU_ASSERT(ratio[1] > 0.9 && ratio[1] < 1.1);
    CU_ASSERT(ratio[0] > 1.3);
}

/* The default freeze schedule of `qat train --qat-from-epoch`: BN freezes at the first step
 * after the learning-rate peak whose rate is at most 3% of the peak, observers halfway from
 * there to the end; the run does not collapse at the freeze (the frozen epoch's train loss is
 * not above the last unfrozen epoch's), where BN frozen at the start of the last epoch at a
 * higher rate (the old schedule) makes the loss jump. */
static void test_auto_freeze_schedule(void) {
    double ratio[2];
    for (int old = 0; old < 2; old++) {
        char dir[400], path[500];
        snprintf(dir, sizeof dir, "%s/autofreeze%d", tmpdir, old);
        qat_train_opts o;
        base_opts(&o, dir);
        o.lr = 0.4f;
        o.qat_from_epoch = 3;
        if (old) o.freeze_bn_epochs = 1, o.freeze_observer_epochs = 2, o.bn_reestimate_batches = 0;
        qat_status st = qat_train_run(&o);
        if (st) printf("\n  %s\n", qat_last_error());
        CU_ASSERT_FATAL(st == QAT_OK);
        double loss[4];
        CU_ASSERT_FATAL(read_epoch_losses(dir, loss, 4) == 4);
        ratio[old] = loss[3] / loss[2];
        snprintf(path, sizeof path, "%s/last.ckpt", dir);
        qat_run r = load(path);
        CU_ASSERT_FATAL(r.qmodel != NULL);
        const qat_qmodel *q = r.qmodel;
        int64_t bn = q->freeze_bn_step, ob = q->freeze_observer_step, end = r.sched.total_steps;
        CU_ASSERT(q->bn_frozen && q->observers_frozen == !old);
        if (!old) {
            float peak = 0;
            for (int64_t t = 0; t < end; t++) peak = fmaxf(peak, qat_sched_lr(&r.sched, t));
            CU_ASSERT(bn > 2 * 12 && bn < end);
            CU_ASSERT(qat_sched_lr(&r.sched, bn) <= 0.03f * peak);
            CU_ASSERT(qat_sched_lr(&r.sched, bn - 1) > 0.03f * peak);
            CU_ASSERT(ob == bn + (end - bn) / 2);
        } else {
            CU_ASSERT(bn == 3 * 12 && ob == 4 * 12);
        }
        qat_run_free(&r);
    }
    if (getenv("QAT_TEST_VERBOSE") || !(ratio[0] <= 1.0 && ratio[1] > 1.3))
        printf("\n  frozen/unfrozen epoch loss: %.3f auto schedule, %.3f old schedule\n", ratio[0], ratio[1]);
    CU_ASSERT(ratio[0] <= 1.0);
    CU_ASSERT(ratio[1] > 1.3);
}

/* LSQ: the learned quantizers start as the calibrated fake-quant (same logits), learn during
 * QAT, and a QAT run stopped after one epoch and resumed ends bit for bit where an
 * uninterrupted run does (scales, offsets and their optimizer state are checkpointed). */
static void test_lsq(void) {
    qat_spec *spec;
    qat_model *m = random_model(&spec, 21);
    qat_qconfig cfg;
    CU_ASSERT_FATAL(qat_qconfig_get("lsq", &cfg) == QAT_OK);
    qat_qmodel *q;
    CU_ASSERT_FATAL(qat_qmodel_create(m, &cfg, QAT_QMODEL_QAT, 0, &q) == QAT_OK);
    CU_ASSERT(qat_qmodel_lsq_start(q) == QAT_ERR_ARG); /* nothing observed yet */
    qat_ctx ctx;
    qat_ctx_init(&ctx, 1 << 20);
    ctx.training = 0;
    ctx.grad_enabled = 0;
    qat_tensor *x = input(&ctx, 4, 17);
    q->calibrating = 1;
    qat_quantized_forward(q, &ctx, x);
    q->calibrating = 0;
    CU_ASSERT_FATAL(qat_qmodel_freeze_observers(q) == QAT_OK);
    qat_tensor *a = qat_quantized_forward(q, &ctx, x);
    CU_ASSERT_FATAL(qat_qmodel_lsq_start(q) == QAT_OK);
    qat_tensor *b = qat_quantized_forward(q, &ctx, x);
    CU_ASSERT(memcmp(a->data, b->data, (size_t)a->numel * sizeof(float)) == 0);
    qat_ctx_free(&ctx);
    qat_qmodel_free(q);
    qat_model_free(m);
    qat_spec_free(spec);

    char full[400], part[400], res[400], ck[500];
    snprintf(full, sizeof full, "%s/lsq_full", tmpdir);
    snprintf(part, sizeof part, "%s/lsq_part", tmpdir);
    snprintf(res, sizeof res, "%s/lsq_res", tmpdir);
    qat_qat_opts qo;
    qat_opts(&qo, full);
    qo.qconfig = "lsq";
    qo.train.epochs = 2;
    qat_status st = qat_qat_run(&qo);
    if (st) printf("\n  %s\n", qat_last_error());
    CU_ASSERT_FATAL(st == QAT_OK);
    qat_opts(&qo, part);
    qo.qconfig = "lsq";
    qo.train.epochs = 2;
    qo.train.max_steps = 384 / 32;
    CU_ASSERT_FATAL(qat_qat_run(&qo) == QAT_OK);
    snprintf(ck, sizeof ck, "%s/last.ckpt", part);
    qat_opts(&qo, res);
    qo.train.resume = ck;
    CU_ASSERT_FATAL(qat_qat_run(&qo) == QAT_OK);
    snprintf(ck, sizeof ck, "%s/last.ckpt", full);
    qat_run rf = load(ck);
    snprintf(ck, sizeof ck, "%s/last.ckpt", part);
    qat_run rp = load(ck);
    snprintf(ck, sizeof ck, "%s/last.ckpt", res);
    qat_run rr = load(ck);
    CU_ASSERT_FATAL(rf.qmodel && rr.qmodel && rp.qmodel && rf.has_qopt && rr.has_qopt);
    CU_ASSERT(rf.qmodel->lsq_ready && rf.qmodel->nlsq > 0);
    size_t lb = (size_t)rf.qmodel->nlsq * sizeof(float);
    CU_ASSERT(memcmp(rf.qmodel->lsq_params, rr.qmodel->lsq_params, lb) == 0);
    CU_ASSERT(memcmp(rf.qmodel->lsq_params, rp.qmodel->lsq_params, lb) != 0); /* scales learn */
    CU_ASSERT(memcmp(rf.model->params, rr.model->params, (size_t)rf.model->nparams * sizeof(float)) == 0);
    CU_ASSERT(memcmp(rf.qopt.state, rr.qopt.state,
                     (size_t)qat_optim_state_floats(&rf.qopt) * sizeof(float)) == 0);
    qat_run_free(&rf), qat_run_free(&rp), qat_run_free(&rr);
}

static void test_bad_inputs(void) {
    char out[400], ckpt[400];
    snprintf(out, sizeof out, "%s/bad", tmpdir);
    qat_qat_opts qo;
    qat_opts(&qo, out);
    snprintf(ckpt, sizeof ckpt, "%s/missing.ckpt", tmpdir);
    qo.ckpt = ckpt;
    CU_ASSERT(qat_qat_run(&qo) == QAT_ERR_IO);
    CU_ASSERT(strstr(qat_last_error(), "missing.ckpt") != NULL);
    /* a checkpoint for 12x12 images on an 8x8 dataset */
    qat_opts(&qo, out);
    qo.train.data = small_dir;
    CU_ASSERT(qat_qat_run(&qo) == QAT_ERR_MISMATCH);
    CU_ASSERT(strstr(qat_last_error(), "12x12x1") != NULL);
    qat_opts(&qo, out);
    qo.qconfig = "int3";
    CU_ASSERT(qat_qat_run(&qo) == QAT_ERR_ARG);
    CU_ASSERT(strstr(qat_last_error(), "int3") != NULL);
    /* --resume of an FP32 checkpoint through qat qat, and of a QAT one through qat train */
    qat_opts(&qo, out);
    qo.train.resume = qo.ckpt;
    CU_ASSERT(qat_qat_run(&qo) == QAT_ERR_ARG);
    CU_ASSERT(strstr(qat_last_error(), "not a QAT checkpoint") != NULL);
    char qckpt[400];
    snprintf(qckpt, sizeof qckpt, "%s/qat0/last.ckpt", tmpdir);
    qat_train_opts o;
    base_opts(&o, out);
    o.resume = qckpt;
    CU_ASSERT(qat_train_run(&o) == QAT_ERR_ARG);
    /* quant state of one architecture does not load into another */
    qat_run r = load(qckpt);
    size_t n = qat_qmodel_state_bytes(r.qmodel);
    void *state = malloc(n);
    qat_qmodel_pack(r.qmodel, state);
    qat_spec *other;
    CU_ASSERT_FATAL(qat_spec_load("mbv2-tiny", &other) == QAT_OK);
    qat_model *m;
    CU_ASSERT_FATAL(qat_model_create(other, 0, 12, 12, 1, 3, &m) == QAT_OK);
    qat_qmodel *q = NULL;
    CU_ASSERT(qat_qmodel_unpack(m, state, n, "x.ckpt", &q) == QAT_ERR_MISMATCH);
    CU_ASSERT(q == NULL && strstr(qat_last_error(), "x.ckpt") != NULL);
    q = NULL;
    /* truncated state */
    CU_ASSERT(qat_qmodel_unpack(r.model, state, n - 1, "x.ckpt", &q) != QAT_OK);
    CU_ASSERT(q == NULL);
    /* a version-1 state (64-byte header, schedule in epochs) still loads */
    unsigned char *v1 = malloc(n);
    memcpy(v1, state, 64);
    memcpy(v1 + 64, (unsigned char *)state + 80, n - 80);
    uint32_t one = 1;
    int32_t epochs[2] = {1, 2};
    memcpy(v1 + 4, &one, 4);
    memcpy(v1 + 40, epochs, sizeof epochs); /* freeze_bn_epoch, freeze_observer_epoch */
    CU_ASSERT(qat_qmodel_unpack(r.model, v1, n - 16, "v1.ckpt", &q) == QAT_OK);
    CU_ASSERT(q && q->legacy_freeze_bn_epoch == 1 && q->legacy_freeze_observer_epoch == 2 &&
              q->freeze_bn_step == -1 && q->freeze_observer_step == -1 && q->npoints == r.qmodel->npoints);
    qat_qmodel_free(q);
    q = NULL;
    memcpy(v1 + 4, &(uint32_t){3}, 4); /* a version from the future */
    CU_ASSERT(qat_qmodel_unpack(r.model, v1, n - 16, "v1.ckpt", &q) == QAT_ERR_FORMAT && q == NULL);
    free(v1);
    free(state);
    qat_model_free(m);
    qat_spec_free(other);
    qat_run_free(&r);
}

/* ---- qat_batchnorm2d_scaled_act (the / s of batch-statistics folding inside BN) ------------- */

typedef struct {
    float rm[32], rv[32], isc[32];
    qat_bn_state st;
    qat_bn_act act;
    int via_add; /* feed 2x (an op output without grad: BN's store path) instead of the leaf */
    int scaled;  /* 1: the fused op; 0: qat_mul by the broadcast scale, then the unscaled op */
} sbn_fixture;

static void sbn_init(sbn_fixture *f, int C, qat_bn_act act, int via_add, int scaled) {
    QAT_ASSERT(C <= 32);
    qat_rng r;
    qat_rng_seed(&r, 91);
    for (int c = 0; c < C; c++) {
        f->rm[c] = 0.3f * qat_rng_normal(&r);
        f->rv[c] = 0.5f + (float)qat_rng_below(&r, 100) / 50.0f;
        /* signed, some large and some small: s = gamma / std can be either */
        f->isc[c] = (c % 3 == 0 ? -1.0f : 1.0f) * (0.05f + (float)qat_rng_below(&r, 1000) / 100.0f);
    }
    f->st = (qat_bn_state){f->rm, f->rv, 0.1f, 1e-5f, 1};
    f->act = act, f->via_add = via_add, f->scaled = scaled;
}

static qat_tensor *build_sbn(qat_ctx *ctx, qat_tensor **in, void *user) {
    sbn_fixture *f = user;
    qat_tensor *x = f->via_add ? qat_add(ctx, in[0], in[0]) : in[0];
    int C = x->shape[x->ndim - 1];
    if (f->scaled) return qat_batchnorm2d_scaled_act(ctx, x, f->isc, in[1], in[2], &f->st, f->act);
    qat_tensor *k = qat_tensor_new(ctx, x->ndim, x->shape);
    k->requires_grad = 0;
    for (int64_t i = 0; i < k->numel; i++) k->data[i] = f->isc[i % C];
    return qat_batchnorm2d_act(ctx, qat_mul(ctx, x, k), in[1], in[2], &f->st, f->act);
}

/* Output, input grads (x, gamma, beta concatenated into g) and running stats of one run. */
static void sbn_run(sbn_fixture *f, qat_tensor **in, int training, const float *w, float *y,
                    float *g) {
    test_run_backward(build_sbn, 3, in, f, training, w, y, g);
}

static void test_scaled_bn(void) {
    /* 8*16*16*24 = 49152 elements: above the parallel threshold, several stat chunks */
    const int N = 8, H = 16, W = 16, C = 24;
    int xs[4] = {N, H, W, C}, cs[1] = {C};
    qat_tensor *in[3] = {test_leaf(4, xs, 2.0f, 81), test_leaf(1, cs, 1.0f, 82), test_leaf(1, cs, 1.0f, 83)};
    for (int64_t i = 0; i < in[0]->numel; i++) in[0]->data[i] += 0.5f * (float)(i % C); /* |mean| > 0 */
    int64_t n = in[0]->numel, ng = n + 2 * C;
    float *w = malloc((size_t)n * sizeof(float)), *y1 = malloc((size_t)n * sizeof(float));
    float *y2 = malloc((size_t)n * sizeof(float)), *g1 = malloc((size_t)ng * sizeof(float));
    float *g2 = malloc((size_t)ng * sizeof(float));
    qat_rng r;
    qat_rng_seed(&r, 84);
    for (int64_t i = 0; i < n; i++) w[i] = qat_rng_normal(&r);
    int cases = 0, same = 0;
    for (int act = QAT_BN_ACT_NONE; act <= QAT_BN_ACT_RELU6; act++)
        for (int training = 0; training <= 1; training++)
            for (int via_add = 0; via_add <= 1; via_add++) {
                sbn_fixture f1, f2;
                sbn_init(&f1, C, (qat_bn_act)act, via_add, 1);
                sbn_init(&f2, C, (qat_bn_act)act, via_add, 0);
                sbn_run(&f1, in, training, w, y1, g1);
                sbn_run(&f2, in, training, w, y2, g2);
                /* bitwise: the fused op recomputes the same float product x * s */
                int ok = memcmp(y1, y2, (size_t)n * sizeof(float)) == 0 &&
                         memcmp(g1, g2, (size_t)ng * sizeof(float)) == 0 &&
                         memcmp(f1.rm, f2.rm, C * sizeof(float)) == 0 &&
                         memcmp(f1.rv, f2.rv, C * sizeof(float)) == 0;
                if (!ok) {
                    printf("\n  scaled BN act %d training %d via_add %d differs\n", act, training, via_add);
                    test_compare("scaled bn y", y1, y2, n, 0);
                    test_compare("scaled bn grads", g1, g2, ng, 0);
                }
                same += ok, cases++;
                /* the case is not trivial: outputs and grads are not all zero */
                double sy = 0, sg = 0;
                for (int64_t i = 0; i < n; i++) sy += fabs(y1[i]), sg += fabs(g1[i]);
                CU_ASSERT(sy > 0 && sg > 0);
                sbn_fixture f0; /* running stats move in training only */
                sbn_init(&f0, C, (qat_bn_act)act, via_add, 1);
                CU_ASSERT((memcmp(f1.rm, f0.rm, C * sizeof(float)) != 0) == training);
                CU_ASSERT((memcmp(f1.rv, f0.rv, C * sizeof(float)) != 0) == training);
            }
    CU_ASSERT_EQUAL(same, cases);
    /* forward against an independent double reference (training, ReLU6) */
    sbn_fixture f;
    sbn_init(&f, C, QAT_BN_ACT_RELU6, 0, 1);
    sbn_run(&f, in, 1, w, y1, g1);
    double worst = 0;
    for (int c = 0; c < C; c++) {
        double s = 0, ss = 0;
        for (int64_t m = 0; m < n / C; m++) s += (double)in[0]->data[m * C + c] * f.isc[c];
        double mean = s / (double)(n / C);
        for (int64_t m = 0; m < n / C; m++) {
            double d = (double)in[0]->data[m * C + c] * f.isc[c] - mean;
            ss += d * d;
        }
        double rstd = 1.0 / sqrt(ss / (double)(n / C) + 1e-5);
        for (int64_t m = 0; m < n / C; m++) {
            double v = ((double)in[0]->data[m * C + c] * f.isc[c] - mean) * rstd * in[1]->data[c] + in[2]->data[c];
            v = v < 0 ? 0 : (v > 6 ? 6 : v);
            double e = fabs(v - y1[m * C + c]);
            if (e > worst) worst = e;
        }
    }
    CU_ASSERT(worst < 1e-4);
    /* gradients against central differences, small shapes, every activation */
    int ss4[4] = {2, 3, 2, 5}, sc1[1] = {5};
    qat_tensor *small[3] = {test_leaf(4, ss4, 1.0f, 85), test_leaf(1, sc1, 1.0f, 86), test_leaf(1, sc1, 1.0f, 87)};
    for (int i = 0; i < 3; i++) small[i]->requires_grad = 1;
    for (int act = QAT_BN_ACT_NONE; act <= QAT_BN_ACT_RELU6; act++) {
        sbn_init(&f, 5, (qat_bn_act)act, 0, 1);
        f.st.update_stats = 0;
        test_gradcheck("scaled bn (train)", build_sbn, 3, small, &f, 1, 1e-3f, 2e-2);
        test_gradcheck("scaled bn (eval)", build_sbn, 3, small, &f, 0, 1e-3f, 2e-2);
    }
    for (int i = 0; i < 3; i++) test_leaf_free(in[i]), test_leaf_free(small[i]);
    free(w), free(y1), free(y2), free(g1), free(g2);
}

/* The fake-quant backward into a grad that does not exist yet stores instead of zero + add:
 * bitwise the old result (-0.0 dy becomes +0.0, clipped elements +0.0, NaN kept), every ISA,
 * sizes around the vector widths and above the threading threshold. */
static void test_ste_store(void) {
    qat_qconfig cfg;
    CU_ASSERT_FATAL(qat_qconfig_get("x86", &cfg) == QAT_OK);
    qat_fq fq;
    CU_ASSERT_FATAL(qat_fq_init(&fq, &cfg.act, QAT_OBS_MINMAX, 1, "ste") == QAT_OK);
    float sc = 0.05f;
    int32_t zp = 100;
    CU_ASSERT_FATAL(qat_fq_set_qparams(&fq, &sc, &zp) == QAT_OK);
    fq.observer_enabled = 0;
    qat_isa top = qat_cpu_isa_hw(), saved = qat_cpu_isa();
    const int sizes[4] = {1, 37, 301, 70001};
    int bad = 0, clipped = 0;
    for (int si = 0; si < 4; si++) {
        int n = sizes[si];
        float *ref = malloc((size_t)n * sizeof(float)), *dy = malloc((size_t)n * sizeof(float));
        qat_rng r;
        qat_rng_seed(&r, 61 + si);
        for (int isa = QAT_ISA_SCALAR; isa <= (int)top; isa++) {
            qat_set_isa((qat_isa)isa);
            qat_ctx ctx;
            qat_ctx_init(&ctx, 16 << 20);
            qat_tensor *h = qat_tensor_new(&ctx, 1, &n); /* an op output: no grad yet */
            h->requires_grad = 1;
            for (int i = 0; i < n; i++) {
                h->data[i] = 4.0f * qat_rng_normal(&r); /* [-5, 7.75] is inside: some clip */
                dy[i] = i % 5 == 0 ? -0.0f : (i % 11 == 3 ? NAN : qat_rng_normal(&r));
            }
            qat_tensor *y = qat_fakequant(&ctx, h, &fq);
            CU_ASSERT_FATAL(y != h && y->saved != NULL);
            /* the old path: zeroed grad plus the straight-through add */
            const qat_fq_saved *sv = y->saved;
            memset(ref, 0, (size_t)n * sizeof(float));
            qat_fq_ste_grad_ref(ref, dy, sv->code, n);
            for (int i = 0; i < n; i++) clipped += sv->code[i] != QAT_FQ_INSIDE;
            y->grad = dy;
            qat_backward_node(&ctx, y);
            CU_ASSERT_FATAL(h->grad != NULL);
            bad += memcmp(h->grad, ref, (size_t)n * sizeof(float)) != 0;
            /* and an existing grad is still accumulated into */
            for (int i = 0; i < n; i++) h->grad[i] = 1.0f;
            qat_backward_node(&ctx, y);
            for (int i = 0; i < n; i++) {
                float e = 1.0f;
                if (sv->code[i] == QAT_FQ_INSIDE) e += dy[i];
                if (memcmp(&e, &h->grad[i], sizeof e)) {
                    bad++;
                    break;
                }
            }
            qat_ctx_free(&ctx);
        }
        free(ref), free(dy);
    }
    qat_set_isa(saved);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(clipped > 0);
    qat_fq_free(&fq);
}

/* qat_batchnorm2d_act_fq == qat_fakequant(qat_batchnorm2d_scaled_act()) bit for bit: outputs,
 * observer state and qparams over two steps (the moving average moves), running statistics,
 * and the gradients of x, gamma and beta (the straight-through mask inside BN's backward). */
typedef struct {
    sbn_fixture bn;
    qat_fq fq;
    int fused;
} fbn_fixture;

static qat_tensor *build_fbn(qat_ctx *ctx, qat_tensor **in, void *user) {
    fbn_fixture *f = user;
    qat_tensor *x = f->bn.via_add ? qat_add(ctx, in[0], in[0]) : in[0];
    const float *isc = f->bn.scaled ? f->bn.isc : NULL;
    if (f->fused) return qat_batchnorm2d_act_fq(ctx, x, isc, in[1], in[2], &f->bn.st, f->bn.act, &f->fq);
    return qat_fakequant(ctx, qat_batchnorm2d_scaled_act(ctx, x, isc, in[1], in[2], &f->bn.st, f->bn.act), &f->fq);
}

static void fbn_run(fbn_fixture *f, qat_tensor **in, int training, const float *w, float *y,
                    float *g) {
    test_run_backward(build_fbn, 3, in, f, training, w, y, g);
}

static void test_bn_fq_fused(void) {
    const int N = 8, H = 16, W = 16, C = 24;
    int xs[4] = {N, H, W, C}, cs[1] = {C};
    qat_tensor *in[3] = {test_leaf(4, xs, 2.0f, 71), test_leaf(1, cs, 1.0f, 72), test_leaf(1, cs, 1.0f, 73)};
    for (int c = 0; c < C; c++) { /* ReLU6 outputs on both sides of 6 too */
        in[2]->data[c] += 1.0f;
        if (c % 4 == 0) in[1]->data[c] = 4.0f;
    }
    int64_t n = in[0]->numel, ng = n + 2 * C;
    float *w = malloc((size_t)n * sizeof(float)), *y1 = malloc((size_t)n * sizeof(float));
    float *y2 = malloc((size_t)n * sizeof(float)), *g1 = malloc((size_t)ng * sizeof(float));
    float *g2 = malloc((size_t)ng * sizeof(float));
    qat_rng r;
    qat_rng_seed(&r, 74);
    for (int64_t i = 0; i < n; i++) w[i] = qat_rng_normal(&r);
    qat_qconfig cfg;
    CU_ASSERT_FATAL(qat_qconfig_get("x86", &cfg) == QAT_OK);
    int cases = 0, same = 0, clipped_inside = 0;
    for (int act = QAT_BN_ACT_NONE; act <= QAT_BN_ACT_RELU6; act++)
        for (int training = 0; training <= 1; training++)
            for (int v = 0; v < 4; v++) {
                fbn_fixture f[2];
                for (int k = 0; k < 2; k++) {
                    sbn_init(&f[k].bn, C, (qat_bn_act)act, v & 1, v >> 1);
                    CU_ASSERT_FATAL(qat_fq_init(&f[k].fq, &cfg.act, cfg.act_obs_qat, 1, "bnfq") == QAT_OK);
                    f[k].fused = k == 0;
                }
                int ok = 1;
                for (int step = 0; step < 2; step++) {
                    fbn_run(&f[0], in, training, w, y1, g1);
                    fbn_run(&f[1], in, training, w, y2, g2);
                    ok &= memcmp(y1, y2, (size_t)n * sizeof(float)) == 0;
                    ok &= memcmp(g1, g2, (size_t)ng * sizeof(float)) == 0;
                    ok &= memcmp(f[0].bn.rm, f[1].bn.rm, C * sizeof(float)) == 0;
                    ok &= memcmp(f[0].bn.rv, f[1].bn.rv, C * sizeof(float)) == 0;
                    ok &= memcmp(f[0].fq.scale, f[1].fq.scale, sizeof(float)) == 0;
                    ok &= f[0].fq.zero_point[0] == f[1].fq.zero_point[0];
                    ok &= memcmp(f[0].fq.obs.min_val, f[1].fq.obs.min_val, sizeof(float)) == 0;
                    ok &= memcmp(f[0].fq.obs.max_val, f[1].fq.obs.max_val, sizeof(float)) == 0;
                    ok &= f[0].fq.obs.seen == step + 1 && f[1].fq.obs.seen == step + 1;
                    /* the second step's (moving-average) range clips part of the output */
                    if (step == 1) {
                        int64_t k = 0;
                        for (int64_t i = 0; i < n; i++) k += g1[i] == 0.0f;
                        clipped_inside += k > 0 && k < n;
                    }
                }
                if (act == QAT_BN_ACT_RELU6) { /* the y == 6 side of the mask is exercised */
                    qat_ctx c6;
                    qat_ctx_init(&c6, 8 << 20);
                    c6.training = training;
                    fbn_fixture f6;
                    sbn_init(&f6.bn, C, QAT_BN_ACT_RELU6, 0, v >> 1);
                    f6.bn.st.update_stats = 0;
                    qat_tensor *b6 = qat_batchnorm2d_scaled_act(&c6, in[0], f6.bn.scaled ? f6.bn.isc : NULL,
                                                                in[1], in[2], &f6.bn.st, QAT_BN_ACT_RELU6);
                    int64_t at6 = 0;
                    for (int64_t i = 0; i < n; i++) at6 += b6->data[i] == 6.0f;
                    CU_ASSERT(at6 > 0 && at6 < n);
                    qat_ctx_free(&c6);
                }
                if (!ok) printf("\n  fused BN+fq act %d training %d variant %d differs\n", act, training, v);
                same += ok, cases++;
                qat_fq_free(&f[0].fq), qat_fq_free(&f[1].fq);
            }
    CU_ASSERT_EQUAL(same, cases);
    CU_ASSERT(clipped_inside > 0);
    for (int i = 0; i < 3; i++) test_leaf_free(in[i]);
    free(w), free(y1), free(y2), free(g1), free(g2);
}

void register_qat_tests(void) {
    CU_pSuite s = CU_add_suite("qat", setup, teardown);
    CU_add_test(s, "qconfig presets parse; unknown name is an error", test_qconfig_presets);
    CU_add_test(s, "fake-quant disabled: qmodel == FP32 bitwise (logits, BN, grads)", test_disabled_is_fp32);
    CU_add_test(s, "folded ConvBn in eval == conv -> BN", test_fold_matches_eval);
    CU_add_test(s, "folded ConvBn (batch, running, frozen stats): FP32 logits and gradients", test_fold_gradients);
    CU_add_test(s, "PTQ accuracy close to FP32; eval of PTQ checkpoint", test_ptq_close_to_fp32);
    CU_add_test(s, "PTQ observers: moving-average, percentile, mse and their settings", test_ptq_observers);
    CU_add_test(s, "per-layer sensitivity: only-this-layer quantized / float", test_sensitivity);
    CU_add_test(s, "quantize --allow-float: the top-K sensitive layers float, runtime == simulation", test_allow_float);
    CU_add_test(s, "QAT freeze schedule, checkpoint round-trip", test_freeze_schedule_and_roundtrip);
    CU_add_test(s, "BN freeze: re-estimated statistics, no loss jump at lr ~0", test_bn_freeze_continuity);
    CU_add_test(s, "BN freeze: default schedule by lr, no collapse", test_auto_freeze_schedule);
    CU_add_test(s, "LSQ: starts as calibrated fake-quant, learns, resumes exactly", test_lsq);
    CU_add_test(s, "QAT bad inputs are reported", test_bad_inputs);
    CU_add_test(s, "fake-quant STE into a new grad == zeros + STE bitwise", test_ste_store);
    CU_add_test(s, "BN+act with fused output fake-quant == separate ops bitwise", test_bn_fq_fused);
    CU_add_test(s, "scaled BN (the / s of BN folding) == mul then BN bitwise; gradcheck", test_scaled_bn);
}
