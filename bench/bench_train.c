/* Times qat's FP32 training step (forward + backward + SGD update) and FP32 inference on the
 * reference network, the same measurements torch_peer.py makes for PyTorch. Prints a table and
 * a last line of JSON with the same keys as the peer, so bench/compare.sh can take ratios.
 *
 *   build/bench_train [--model mbv2-tiny] [--input 28x28x1] [--batch 64] [--threads 2] [--steps 30]
 *                     [--qat 0|1] [--infer 0|1]
 */
#include "kernels.h"
#include "qmodel.h"
#include "train.h"
#include "base.h" /* qat_now */
#include "host.h"
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static double per_step(double (*fn)(void *), void *arg, int steps) {
    for (int i = 0; i < 3; i++) fn(arg);
    double t = qat_now();
    for (int i = 0; i < steps; i++) fn(arg);
    return (qat_now() - t) / steps;
}

typedef struct {
    qat_model *m;
    qat_optimizer *opt;
    qat_ctx *ctx;
    float *x;
    int32_t *y;
    int batch, h, w, c;
    int training;
    qat_qmodel *q; /* non-NULL: the QAT step (fake-quant forward) */
} bench_state;

static double train_step(void *arg) {
    bench_state *s = arg;
    qat_ctx *ctx = s->ctx;
    qat_ctx_reset(ctx);
    ctx->training = 1;
    ctx->grad_enabled = 1;
    qat_tensor *x = qat_tensor_4d(ctx, s->batch, s->h, s->w, s->c);
    memcpy(x->data, s->x, (size_t)x->numel * sizeof(float));
    qat_tensor *logits = s->q ? qat_qmodel_forward(s->q, ctx, x) : qat_model_forward(s->m, ctx, x);
    qat_tensor *loss = qat_softmax_cross_entropy(ctx, logits, s->y, 0.0f);
    qat_model_zero_grad(s->m);
    qat_backward(ctx, loss);
    qat_optim_step(s->opt, s->m->params, s->m->grads, 0.01f);
    return loss->data[0];
}

static double infer_step(void *arg) {
    bench_state *s = arg;
    qat_ctx *ctx = s->ctx;
    qat_ctx_reset(ctx);
    ctx->training = 0;
    ctx->grad_enabled = 0;
    qat_tensor *x = qat_tensor_4d(ctx, s->batch, s->h, s->w, s->c);
    memcpy(x->data, s->x, (size_t)x->numel * sizeof(float));
    return qat_model_forward(s->m, ctx, x)->data[0];
}

int main(int argc, char **argv) {
    qat_exec_with_omp_defaults(argv);
    const char *model = "mbv2-tiny";
    int batch = 64, threads = 2, steps = 30, with_qat = 1, with_infer = 1, h = 28, w = 28, c = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--input")) {
            if (sscanf(argv[i + 1], "%dx%dx%d", &h, &w, &c) != 3 || h < 1 || w < 1 || c < 1) {
                fprintf(stderr, "bench_train: --input %s: expected HxWxC, e.g. 32x32x3\n", argv[i + 1]);
                return 2;
            }
        }
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--qat")) with_qat = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--infer")) with_infer = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "bench_train: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (batch < 1 || threads < 1 || steps < 1) {
        fprintf(stderr, "bench_train: --batch, --threads and --steps must be positive\n");
        return 2;
    }
    qat_set_threads(threads);
    bench_host host; /* probed before the timed runs, while nothing of ours is running */
    bench_host_probe(&host, threads);
    bench_host_print(&host, stdout);
    qat_spec *spec;
    qat_model *m;
    if (qat_spec_load(model, &spec) || qat_model_create(spec, 1.0f, h, w, c, 10, &m)) {
        fprintf(stderr, "bench_train: %s\n", qat_last_error());
        return 1;
    }
    qat_rng rng;
    qat_rng_seed(&rng, 0);
    qat_model_init(m, &rng);
    qat_optimizer opt;
    if (qat_optim_init(&opt, QAT_OPT_SGD, m->nparams, m->segs, m->nsegs)) {
        fprintf(stderr, "bench_train: %s\n", qat_last_error());
        return 1;
    }
    opt.nesterov = 0;
    opt.weight_decay = 0;
    qat_ctx ctx;
    qat_ctx_init(&ctx, 64u << 20);
    bench_state s = {m, &opt, &ctx, NULL, NULL, batch, h, w, c, 1, NULL};
    size_t nx = (size_t)batch * h * w * c;
    s.x = malloc(nx * sizeof(float));
    s.y = malloc((size_t)batch * sizeof(int32_t));
    if (!s.x || !s.y) {
        fprintf(stderr, "bench_train: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < nx; i++) s.x[i] = qat_rng_normal(&rng);
    for (int i = 0; i < batch; i++) s.y[i] = (int32_t)qat_rng_below(&rng, 10);

    double train_s = per_step(train_step, &s, steps);
    /* The arena's high-water mark over the FP32 steps: activations, tape and gradients of one
     * training step (the parameters, gradients and optimizer state live outside it). */
    size_t train_arena = ctx.arena.peak;
    /* QAT step with the default qconfig (x86: per-channel s8 weights with simulated BN folding,
     * u8 activations with moving-average observers): what `qat qat` runs. */
    qat_qconfig cfg;
    double qat_s = 0;
    if (with_qat) {
        if (qat_qconfig_get("x86", &cfg) ||
            qat_qmodel_create(m, &cfg, QAT_QMODEL_QAT, QAT_OBS_MINMAX, &s.q)) {
            fprintf(stderr, "bench_train: %s\n", qat_last_error());
            return 1;
        }
        qat_s = per_step(train_step, &s, steps);
        qat_qmodel_free(s.q);
        s.q = NULL;
    }
    printf("%-24s %10d\n%-24s %10d\n", "threads", threads, "batch", batch);
    printf("%-24s %10.1f\n", "fp32_train_img_s", batch / train_s);
    printf("%-24s %10.1f   (%.1f KiB per image)\n", "train_arena_mib", train_arena / 1048576.0,
           train_arena / 1024.0 / batch);
    char json[2048];
    int jl = snprintf(json, sizeof json, "{\"threads\": %d, \"batch\": %d, \"fp32_train_img_s\": %.1f",
                      threads, batch, batch / train_s);
    jl += snprintf(json + jl, sizeof json - jl, ", \"train_arena_bytes\": %zu", train_arena);
    if (with_qat) {
        printf("%-24s %10.1f   (%.2fx the FP32 step time)\n", "qat_train_img_s", batch / qat_s,
               qat_s / train_s);
        jl += snprintf(json + jl, sizeof json - jl, ", \"qat_train_img_s\": %.1f", batch / qat_s);
    }
    int sizes[2] = {1, batch};
    for (int k = 0; with_infer && k < (batch == 1 ? 1 : 2); k++) {
        s.batch = sizes[k];
        int n = steps * (sizes[k] == 1 ? 10 : 1);
        double t = per_step(infer_step, &s, n);
        printf("fp32_infer_b%-12d %10.1f\n", sizes[k], sizes[k] / t);
        jl += snprintf(json + jl, sizeof json - jl, ", \"fp32_infer_b%d_img_s\": %.1f", sizes[k],
                       sizes[k] / t);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%-24s %10ld\n", "peak_rss_kib", ru.ru_maxrss);
    jl += snprintf(json + jl, sizeof json - jl, ", \"peak_rss_kib\": %ld, ", ru.ru_maxrss);
    jl += bench_host_json(&host, json + jl, sizeof json - jl);
    snprintf(json + jl, sizeof json - jl, "}");
    puts(json);
    qat_ctx_free(&ctx);
    qat_optim_free(&opt);
    qat_model_free(m);
    qat_spec_free(spec);
    free(s.x);
    free(s.y);
    return 0;
}
