/* Times INT8 inference of a .q8 model with the runtime (include/qat_rt.h) the way torch_peer.py
 * times its converted INT8 model: float NHWC input (quantized inside, as PyTorch's quantize stub
 * does), 3 warm-up calls, then the mean over `steps` calls (10x as many at batch 1). Prints a
 * table and a last line of JSON with the peer's keys (int8_infer_b1_img_s, ...), for
 * bench/compare_int8.sh.
 *
 *   bench_int8 --model MODEL.q8 [--batch 64] [--threads 2] [--steps 30] [--backend auto]
 */
#include "qat.h" /* qat_exec_with_omp_defaults */
#include "qat_rt.h"
#include <omp.h>
#include "host.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static double time_batch(qat_rt *rt, const float *x, int bs, float *logits, int steps) {
    for (int i = 0; i < 3; i++)
        if (qat_rt_run(rt, x, bs, logits)) return -1;
    double t = omp_get_wtime();
    for (int i = 0; i < steps; i++)
        if (qat_rt_run(rt, x, bs, logits)) return -1;
    return (omp_get_wtime() - t) / steps;
}

int main(int argc, char **argv) {
    qat_exec_with_omp_defaults(argv); /* the OpenMP spin policy bench_train runs with */
    const char *model = NULL, *backend = "auto";
    int batch = 64, threads = 2, steps = 30;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--backend")) backend = argv[i + 1];
        else {
            fprintf(stderr, "bench_int8: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    qat_rt_options o;
    qat_rt_options_default(&o);
    if (!model || batch < 1 || threads < 1 || steps < 1 || qat_rt_backend_parse(backend, &o.backend)) {
        fprintf(stderr, "usage: bench_int8 --model MODEL.q8 [--batch 64] [--threads 2] [--steps 30] "
                        "[--backend auto|native|onednn|ref]\n");
        return 2;
    }
    o.threads = threads;
    bench_host host; /* probed before the timed runs, while nothing of ours is running */
    bench_host_probe(&host, threads);
    bench_host_print(&host, stdout);
    char json[2048];
    int jl = snprintf(json, sizeof json, "{\"threads\": %d, \"batch\": %d, \"backend\": \"%s\"",
                      threads, batch, backend);
    printf("%-24s %10d\n%-24s %10d\n", "threads", threads, "batch", batch);
    int sizes[2] = {1, batch};
    for (int k = 0; k < (batch == 1 ? 1 : 2); k++) {
        int bs = sizes[k];
        o.batch = bs; /* the backend choice of `auto` is timed at this batch size */
        qat_rt *rt;
        if (qat_rt_load(model, &o, &rt)) {
            fprintf(stderr, "bench_int8: %s\n", qat_rt_last_error());
            return 1;
        }
        int h, w, c;
        qat_rt_input_shape(rt, &h, &w, &c);
        size_t nx = (size_t)bs * h * w * c;
        float *x = malloc(sizeof(float) * nx);
        float *logits = malloc(sizeof(float) * (size_t)bs * qat_rt_nclasses(rt));
        if (!x || !logits) return 1;
        uint64_t r = 42;
        for (size_t i = 0; i < nx; i++) { /* roughly normalised pixels in [-2, 2) */
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            x[i] = (float)(r >> 40) / (float)(1 << 22) - 2.0f;
        }
        double t = time_batch(rt, x, bs, logits, steps * (bs == 1 ? 10 : 1));
        if (t < 0) {
            fprintf(stderr, "bench_int8: %s\n", qat_rt_last_error());
            return 1;
        }
        printf("int8_infer_b%-12d %10.1f\n", bs, bs / t);
        jl += snprintf(json + jl, sizeof json - jl, ", \"int8_infer_b%d_img_s\": %.1f", bs, bs / t);
        /* the runtime's activation plan: what a batch needs beside the weights */
        size_t act = qat_rt_peak_activation_bytes(rt);
        printf("%-24s %10.1f   (%.1f KiB per image)\n", "int8_activation_kib", act / 1024.0,
               act / 1024.0 / bs);
        jl += snprintf(json + jl, sizeof json - jl, ", \"int8_activation_bytes_b%d\": %zu", bs, act);
        free(x);
        free(logits);
        qat_rt_free(rt);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%-24s %10ld\n", "peak_rss_kib", ru.ru_maxrss);
    jl += snprintf(json + jl, sizeof json - jl, ", \"peak_rss_kib\": %ld, ", ru.ru_maxrss);
    jl += bench_host_json(&host, json + jl, sizeof json - jl);
    snprintf(json + jl, sizeof json - jl, "}");
    puts(json);
    return 0;
}
