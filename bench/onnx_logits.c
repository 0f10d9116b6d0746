/* qat's own logits on a dataset's test split, for comparing with ONNX Runtime's on the exported
 * model (bench/onnx_fidelity.sh): the INT8 runtime on raw pixels (qat_rt_run_u8, as `qat infer`
 * and `qat eval --int8` feed it) or the FP32 eval forward of a checkpoint on pixels normalised
 * as training did. Also writes the pixels as the ONNX graphs take them (float32 NCHW, 0..255)
 * and the labels.
 *
 *   onnx_logits --q8 M.q8 | --ckpt FP32.ckpt  --data fashion-mnist --out DIR [--threads T]
 *   -> DIR/int8.f32 | DIR/fp32.f32 (N, classes), DIR/pixels.f32 (N, C, H, W), DIR/labels.i32 (N)
 */
#include "dataset.h"
#include "model.h"
#include "qat.h"
#include "qat_rt.h"
#include "train.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *msg) {
    fprintf(stderr, "onnx_logits: %s\n", msg);
    exit(1);
}

static void spit(const char *dir, const char *name, const void *p, size_t bytes) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, bytes, f) != bytes || fclose(f)) die(path);
}

int main(int argc, char **argv) {
    const char *q8 = NULL, *ckpt = NULL, *data = "fashion-mnist", *out = NULL;
    int threads = 2;
    for (int a = 1; a + 1 < argc; a += 2) {
        if (!strcmp(argv[a], "--q8")) q8 = argv[a + 1];
        else if (!strcmp(argv[a], "--ckpt")) ckpt = argv[a + 1];
        else if (!strcmp(argv[a], "--data")) data = argv[a + 1];
        else if (!strcmp(argv[a], "--out")) out = argv[a + 1];
        else if (!strcmp(argv[a], "--threads")) threads = atoi(argv[a + 1]);
        else die("usage: onnx_logits --q8 M.q8 | --ckpt FP32.ckpt --data DATA --out DIR [--threads T]");
    }
    if (!out || !!q8 == !!ckpt) die("usage: onnx_logits --q8 M.q8 | --ckpt FP32.ckpt --data DATA --out DIR");
    qat_set_threads(threads);
    qat_dataset *train, *test;
    if (qat_dataset_open(data, &(qat_data_opts){0}, &train, &test)) die(qat_last_error());
    int n = test->n, H = test->h, W = test->w, C = test->c, per = H * W * C;
    float *px = malloc(sizeof(float) * (size_t)n * per);
    for (int i = 0; i < n; i++) /* NHWC u8 -> NCHW float */
        for (int c = 0; c < C; c++)
            for (int p = 0; p < H * W; p++) px[(size_t)i * per + c * H * W + p] = test->images[(size_t)i * per + p * C + c];
    spit(out, "pixels.f32", px, sizeof(float) * (size_t)n * per);
    spit(out, "labels.i32", test->labels, sizeof(int32_t) * (size_t)n);
    float *logits = NULL;
    int K = 0;
    if (q8) {
        qat_rt_options o;
        qat_rt_options_default(&o);
        o.threads = threads, o.batch = 100;
        qat_rt *rt;
        if (qat_rt_load(q8, &o, &rt)) die(qat_last_error());
        K = qat_rt_nclasses(rt);
        logits = malloc(sizeof(float) * (size_t)n * K);
        for (int i = 0; i < n; i += 100) {
            int b = n - i < 100 ? n - i : 100;
            if (qat_rt_run_u8(rt, test->images + (size_t)i * per, b, logits + (size_t)i * K)) die(qat_last_error());
        }
        qat_rt_free(rt);
        spit(out, "int8.f32", logits, sizeof(float) * (size_t)n * K);
    } else {
        qat_run r;
        memset(&r, 0, sizeof r);
        if (qat_checkpoint_load(ckpt, &r)) die(qat_last_error());
        K = r.model->nclasses;
        logits = malloc(sizeof(float) * (size_t)n * K);
        qat_ctx ctx;
        qat_ctx_init(&ctx, 1 << 26);
        ctx.training = 0, ctx.grad_enabled = 0;
        for (int i = 0; i < n; i += 100) {
            int b = n - i < 100 ? n - i : 100;
            qat_ctx_reset(&ctx);
            qat_tensor *x = qat_tensor_4d(&ctx, b, H, W, C);
            for (int64_t j = 0; j < x->numel; j++) {
                int c = (int)(j % C);
                float sd = r.std[c] != 0 ? r.std[c] : 1.0f;
                x->data[j] = (test->images[(size_t)i * per + j] / 255.0f - r.mean[c]) / sd;
            }
            qat_tensor *y = qat_model_forward(r.model, &ctx, x);
            if (!y) die(qat_last_error());
            memcpy(logits + (size_t)i * K, y->data, sizeof(float) * (size_t)b * K);
        }
        qat_ctx_free(&ctx);
        qat_run_free(&r);
        spit(out, "fp32.f32", logits, sizeof(float) * (size_t)n * K);
    }
    printf("{\"images\": %d, \"classes\": %d, \"c\": %d, \"h\": %d, \"w\": %d}\n", n, K, C, H, W);
    free(px), free(logits);
    qat_dataset_free(train), qat_dataset_free(test);
    return 0;
}
