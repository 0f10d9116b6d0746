/* Times the INT8 depthwise kernel alone (qat_i8_dwconv) on the depthwise layers of
 * MobileNetV2-1.0 and mbv3-tiny, on every SIMD path this CPU has, one thread by default: the
 * quick loop for kernel work, where `qat bench --int8` times whole networks per layer. Random
 * codes and weights (the kernels' time does not depend on the values). Prints per shape the
 * median and best ms per call over ROUNDS rounds, GMAC/s, and the totals per path.
 *
 *   bench_dw [--batch 64] [--threads 1] [--rounds 15] [--net mbv2|mbv3|all] [--layer NAME]
 *           [--path avx2,avx512,vnni512,onednn (any of them)]
 * The onednn column: the oneDNN primitive the runtime's onednn backend would run (qat_i8_dnnl_conv).
 */
#include "int8.h"
#include "int8_onednn.h"
#include "qat.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One thread: the process's CPU time, which a busy shared machine disturbs far less than the
 * wall clock (time spent descheduled does not count); more threads: the wall clock. */
static int use_cpu_clock;
static double now(void) {
    if (!use_cpu_clock) return omp_get_wtime();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const char *net, *name;
    int h, w, c, k, s;
} dw_shape;

/* H x W x C input, k x k kernel, stride s, pad k/2 (MobileNetV2-1.0 on 32x32x3, mbv3-tiny on
 * 28x28x1, as bench/compare_mbv2.sh and the presets build them). */
static const dw_shape shapes[] = {
    {"mbv2", "features.1", 32, 32, 32, 3, 1},   {"mbv2", "features.2", 32, 32, 96, 3, 2},
    {"mbv2", "features.3", 16, 16, 144, 3, 1},  {"mbv2", "features.4", 16, 16, 144, 3, 2},
    {"mbv2", "features.5-6", 8, 8, 192, 3, 1},  {"mbv2", "features.7", 8, 8, 192, 3, 2},
    {"mbv2", "features.8-11", 4, 4, 384, 3, 1}, {"mbv2", "features.12-13", 4, 4, 576, 3, 1},
    {"mbv2", "features.14", 4, 4, 576, 3, 2},   {"mbv2", "features.15-17", 2, 2, 960, 3, 1},
    {"mbv3", "features.1", 28, 28, 16, 3, 1},   {"mbv3", "features.2", 28, 28, 48, 3, 2},
    {"mbv3", "features.3", 14, 14, 72, 3, 1},   {"mbv3", "features.4", 14, 14, 96, 5, 2},
    {"mbv3", "features.5", 7, 7, 160, 5, 1},    {"mbv3", "features.6", 7, 7, 192, 5, 2},
    {"mbv3", "features.7", 4, 4, 256, 5, 1},
};
/* how many layers of that shape the network has (the totals weigh by it) */
static const int repeats[] = {1, 1, 1, 1, 2, 1, 4, 2, 1, 3, 1, 1, 1, 1, 1, 1, 1};

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* 1 if `name` is one of the comma-separated names in `list` (NULL: every name). */
static int listed(const char *list, const char *name) {
    if (!list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return 1;
    return 0;
}

static const char *col_name(int p) { return p < QAT_I8_PATH_COUNT ? qat_i8_path_name((qat_i8_path)p) : "onednn"; }

static void *xalloc(size_t n) {
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "bench_dw: out of memory\n");
        exit(1);
    }
    return p;
}

/* Median ms of one qat_i8_dwconv call on the active path (dnnl: of the oneDNN primitive the
 * runtime's onednn backend runs instead, same arithmetic). */
static double time_shape(const dw_shape *d, int batch, int rounds, double *best, int dnnl) {
    qat_i8_dims in = {batch, d->h, d->w, d->c}, out;
    qat_i8_conv_params p = {d->k, d->k, d->s, d->k / 2};
    if (qat_i8_conv_out_dims(&in, &p, d->c, &out)) return -1;
    size_t nx = (size_t)batch * d->h * d->w * d->c, ny = (size_t)out.n * out.h * out.w * d->c;
    uint8_t *x = xalloc(nx), *y = xalloc(ny);
    int8_t *w = xalloc((size_t)d->c * d->k * d->k);
    int32_t *bias = xalloc((size_t)d->c * 4);
    float *mult = xalloc((size_t)d->c * 4);
    unsigned r = 12345;
    for (size_t i = 0; i < nx; i++) x[i] = (uint8_t)((r = r * 1103515245u + 12345u) >> 16);
    for (int i = 0; i < d->c * d->k * d->k; i++) w[i] = (int8_t)((r = r * 1103515245u + 12345u) >> 16);
    for (int c = 0; c < d->c; c++) {
        bias[c] = (int)((r = r * 1103515245u + 12345u) >> 20) - 2048;
        mult[c] = 1.0f / 4096;
    }
    size_t psz = qat_i8_dw_packed_size(d->c, d->k, d->k);
    void *pbuf = xalloc(psz);
    qat_i8_dw_weights pw;
    size_t bsz = qat_i8_dwconv_get_buffer_size(&in, &p);
    void *buf = xalloc(bsz);
    qat_i8_requant rq = {mult, 3, 3, 200};
    double med = -1, *t = malloc(sizeof(double) * (size_t)rounds);
    qat_i8_dnnl_conv *dc = NULL;
    qat_i8_dnnl_conv_desc dd = {d->h, d->w, d->c, d->c, d->k, d->s, d->k / 2, d->c, w, bias, mult, 7, 3, 3, 200};
    if (dnnl && qat_i8_dnnl_conv_create(&dc, &dd)) dc = NULL;
    if (t && (!dnnl || dc) && !qat_i8_dw_pack(&pw, pbuf, psz, w, bias, d->c, d->k, d->k, 7)) {
#define CALL() (dc ? (void)qat_i8_dnnl_conv_run(dc, y, x, batch) : (void)qat_i8_dwconv(y, x, &in, &p, &pw, &rq, buf, bsz))
        /* each round: enough calls for ~2 ms, after one warm-up call */
        CALL();
        double t0 = now();
        CALL();
        double one = now() - t0;
        int calls = one > 2e-3 ? 1 : (int)(2e-3 / (one + 1e-9)) + 1;
        for (int i = 0; i < rounds; i++) {
            t0 = now();
            for (int c = 0; c < calls; c++) CALL();
            t[i] = (now() - t0) / calls * 1e3;
        }
        qsort(t, (size_t)rounds, sizeof *t, cmp_d);
        med = t[rounds / 2];
        *best = t[0];
    }
    if (dc) qat_i8_dnnl_conv_free(dc);
    free(t); free(x); free(y); free(w); free(bias); free(mult); free(pbuf); free(buf);
    return med;
}

int main(int argc, char **argv) {
    int batch = 64, threads = 1, rounds = 15;
    const char *net = "all", *layer = NULL, *path = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--net")) net = argv[i + 1];
        else if (!strcmp(argv[i], "--layer")) layer = argv[i + 1];
        else if (!strcmp(argv[i], "--path")) path = argv[i + 1];
        else {
            fprintf(stderr, "bench_dw: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (batch < 1 || threads < 1 || rounds < 1 || (strcmp(net, "all") && strcmp(net, "mbv2") && strcmp(net, "mbv3"))) {
        fprintf(stderr, "usage: bench_dw [--batch 64] [--threads 1] [--rounds 15] [--net mbv2|mbv3|all] [--layer NAME] [--path P]\n");
        return 2;
    }
    qat_set_threads(threads);
    use_cpu_clock = threads == 1;
    /* the native paths, then oneDNN as column QAT_I8_PATH_COUNT */
    int paths[QAT_I8_PATH_COUNT + 1];
    int np = 0;
    for (int p = QAT_I8_AVX2; p < QAT_I8_PATH_COUNT; p++)
        if (qat_i8_path_available((qat_i8_path)p) && p != QAT_I8_AVXVNNI &&
            listed(path, qat_i8_path_name((qat_i8_path)p)))
            paths[np++] = p;
    if (qat_i8_dnnl_available() && listed(path, "onednn")) paths[np++] = QAT_I8_PATH_COUNT;
    printf("batch %d, %d thread(s), %d rounds, ms per call: median, best (GMAC/s of the best); %s\n%-5s %-15s %-18s",
           batch, threads, rounds, threads == 1 ? "CPU time" : "wall clock", "net", "layer", "shape");
    for (int i = 0; i < np; i++) printf(" %23s", col_name(paths[i]));
    printf("\n");
    const int ns = (int)(sizeof shapes / sizeof *shapes);
    double total[2][QAT_I8_PATH_COUNT + 1] = {{0}}, totbest[2][QAT_I8_PATH_COUNT + 1] = {{0}};
    for (int s = 0; s < ns; s++) {
        const dw_shape *d = &shapes[s];
        if ((strcmp(net, "all") && strcmp(net, d->net)) || (layer && strcmp(layer, d->name))) continue;
        int oh = (d->h - 1) / d->s + 1, ow = (d->w - 1) / d->s + 1;
        double macs = (double)batch * oh * ow * d->c * d->k * d->k;
        char sh[32];
        snprintf(sh, sizeof sh, "%dx%dx%d k%d s%d", d->h, d->w, d->c, d->k, d->s);
        printf("%-5s %-15s %-18s", d->net, d->name, sh);
        for (int i = 0; i < np; i++) {
            qat_i8_set_path(paths[i] < QAT_I8_PATH_COUNT ? (qat_i8_path)paths[i] : QAT_I8_AUTO);
            double best = -1, ms = time_shape(d, batch, rounds, &best, paths[i] == QAT_I8_PATH_COUNT);
            total[d->net[3] == '3'][paths[i]] += ms * repeats[s];
            totbest[d->net[3] == '3'][paths[i]] += best * repeats[s];
            printf(" %7.4f %7.4f (%5.1f)", ms, best, macs / (best * 1e-3) * 1e-9);
        }
        printf("\n");
        fflush(stdout);
    }
    for (int n = 0; n < 2; n++) {
        if (strcmp(net, "all") && strcmp(net, n ? "mbv3" : "mbv2")) continue;
        printf("%-5s %-34s", n ? "mbv3" : "mbv2", "total (all dw layers)");
        for (int i = 0; i < np; i++) printf(" %7.4f %7.4f %7s", total[n][paths[i]], totbest[n][paths[i]], "");
        printf("\n");
    }
    qat_i8_set_path(QAT_I8_AUTO);
    return 0;
}
