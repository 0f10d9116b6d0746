/* qat eval --int8 / bench / infer: the INT8 runtime (include/qat_rt.h) on the command line. */
#include "cli.h"
#include "progress.h"
#include "dataset.h" /* qat infer: the PNG reader */
#include "qat.h"
#include "qat_rt.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory");
    return p;
}

static qat_rt *load_or_die(const char *cmd, const char *path, const char *backend, int threads,
                           int batch) {
    qat_rt_options o;
    qat_rt_options_default(&o);
    if (qat_rt_backend_parse(backend, &o.backend))
        usage_error(cmd, "unknown backend '%s' (auto, native, onednn, ref)", backend);
    o.threads = threads;
    o.batch = batch;
    qat_rt *rt;
    if (qat_rt_load(path, &o, &rt)) die(qat_rt_last_error());
    return rt;
}

/* What runs, which is not always what was asked: oneDNN's u8 x s8 kernels are exact only with
 * VNNI, so without it (or under ONEDNN_MAX_CPU_ISA) --backend onednn runs the native kernels;
 * auto picks per layer. Counts the layers of each backend into buf ("onednn", "native on 28
 * layers: ...", "auto: onednn on 12 layers, native on 16"). */
static void backend_summary(const qat_rt *rt, const char *asked, char *buf, size_t cap) {
    int n = qat_rt_num_layers(rt), dnnl = 0, other = 0;
    const char *other_name = "native";
    for (int i = 0; i < n; i++) {
        qat_rt_layer_info li;
        qat_rt_layer(rt, i, &li);
        if (!strcmp(li.backend, "onednn")) dnnl++;
        else other++, other_name = li.backend;
    }
    if (!strcmp(asked, "onednn") && !dnnl)
        snprintf(buf, cap, "onednn asked, native runs (oneDNN's int8 kernels are exact only with "
                           "VNNI, which this CPU or ONEDNN_MAX_CPU_ISA does not offer)");
    else if (!strcmp(asked, "auto"))
        snprintf(buf, cap, "auto: onednn on %d layer%s, %s on %d", dnnl, dnnl == 1 ? "" : "s",
                 other_name, other);
    else
        snprintf(buf, cap, "%s", asked);
}

/* ---- qat eval --int8 ---------------------------------------------------------------------------- */

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        putchar(*s);
    }
    putchar('"');
}

void cli_print_classes(const qat_class_report *cr) {
    printf("per class:");
    for (int k = 0; k < cr->nclasses; k++) {
        int64_t n = 0;
        for (int j = 0; j < cr->nclasses; j++) n += cr->confusion[(size_t)k * cr->nclasses + j];
        printf("%s %s %.1f%%", k ? "," : "", cr->names[k],
               n ? 100.0 * cr->confusion[(size_t)k * cr->nclasses + k] / n : 0.0);
    }
    printf("\n");
}

void cli_json_classes(const qat_class_report *cr) {
    printf(", \"classes\": [");
    for (int k = 0; k < cr->nclasses; k++) {
        if (k) printf(", ");
        json_string(cr->names[k]);
    }
    printf("], \"class_names_stored\": %d, \"per_class_accuracy\": [", cr->names_from_model);
    for (int k = 0; k < cr->nclasses; k++) {
        int64_t n = 0;
        for (int j = 0; j < cr->nclasses; j++) n += cr->confusion[(size_t)k * cr->nclasses + j];
        printf("%s%.4f", k ? ", " : "", n ? (double)cr->confusion[(size_t)k * cr->nclasses + k] / n : 0.0);
    }
    printf("], \"confusion\": [");
    for (int k = 0; k < cr->nclasses; k++) {
        printf("%s[", k ? ", " : "");
        for (int j = 0; j < cr->nclasses; j++)
            printf("%s%lld", j ? ", " : "", (long long)cr->confusion[(size_t)k * cr->nclasses + j]);
        printf("]");
    }
    printf("]");
}

int cli_eval_int8(const char *model, const char *data, float val_split, int batch, int threads,
                  const char *backend, int json, struct cli_report *progress) {
    if (batch <= 0) usage_error("eval", "%s", "--batch must be >= 1");
    qat_rt *rt = load_or_die("eval", model, backend, threads, batch);
    qat_eval_result r;
    qat_class_report cr;
    qat_status st = qat_evaluate_int8_classes(rt, model, data, val_split, batch, cli_report_event, progress, &r, &cr);
    if (st) die_run(st);
    int64_t seen = r.n;
    double secs = r.seconds, acc = r.accuracy;
    size_t peak = qat_rt_peak_activation_bytes(rt);
    char runs[256];
    backend_summary(rt, backend, runs, sizeof runs);
    if (json) {
        printf("{\"accuracy\": %.4f, \"images\": %lld, \"seconds\": %.3f, \"img_per_s\": %.1f, "
               "\"batch\": %d, \"backend\": \"%s\", \"backend_runs\": \"%s\", \"peak_activation_bytes\": %zu",
               acc, (long long)seen, secs, seen / secs, batch, backend, runs, peak);
        cli_json_classes(&cr);
        printf("}\n");
    } else {
        printf("%s: INT8 test accuracy %.2f%% (%lld images), %.0f img/s (backend %s; batch %d)\n"
               "peak activation memory %.1f KiB for batch %d (%.1f KiB per image; %.1f KiB if "
               "every activation had its own buffer)\n",
               model, 100.0 * acc, (long long)seen, seen / secs, runs, batch, peak / 1024.0,
               batch, peak / 1024.0 / batch, qat_rt_total_activation_bytes(rt) / 1024.0);
        cli_print_classes(&cr);
    }
    qat_class_report_free(&cr);
    qat_rt_free(rt);
    return 0;
}

/* ---- qat bench --int8 ----------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* q-quantile of v[0..n) (sorts v). */
static double quantile(double *v, int n, double q) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int i = (int)ceil(q * n) - 1;
    return v[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

typedef struct {
    const char *model, *backend;
    int threads, iters, json;
    double peak_gmacs;
    int above_peak;     /* layers whose GMAC/s came out above peak_gmacs */
} bench_cfg;

#define JSON_CAP ((size_t)1 << 22)

/* Times one batch size; prints the text report or appends a JSON object to js. Returns img/s. */
static double bench_batch(bench_cfg *cfg, int bs, char **js, size_t *jlen) {
    qat_rt *rt = load_or_die("bench", cfg->model, cfg->backend, cfg->threads, bs);
    int h, w, c, nc = qat_rt_nclasses(rt), nl = qat_rt_num_layers(rt);
    qat_rt_input_shape(rt, &h, &w, &c);
    size_t npx = (size_t)bs * h * w * c;
    uint8_t *px = xmalloc(npx);
    for (size_t i = 0; i < npx; i++) px[i] = (uint8_t)(i * 2654435761u >> 24);
    float *logits = xmalloc(sizeof(float) * (size_t)bs * nc);
    int iters = cfg->iters > 0 ? cfg->iters : (bs == 1 ? 2000 : 50 > 4000 / bs ? 50 : 4000 / bs);
    double *lat = xmalloc(sizeof(double) * (size_t)iters);
    double *lt = xmalloc(sizeof(double) * (size_t)iters * nl); /* [layer][iter] */
    for (int k = 0; k < 3; k++) /* warm-up: page faults, oneDNN primitives for this size */
        if (qat_rt_run_u8(rt, px, bs, logits)) die(qat_rt_last_error());
    double total = 0;
    for (int k = 0; k < iters; k++) {
        double t0 = omp_get_wtime();
        if (qat_rt_run_u8(rt, px, bs, logits)) die(qat_rt_last_error());
        lat[k] = (omp_get_wtime() - t0) * 1e3;
        total += lat[k];
        for (int i = 0; i < nl; i++) {
            qat_rt_layer_info li;
            qat_rt_layer(rt, i, &li);
            lt[(size_t)i * iters + k] = li.last_ms;
        }
    }
    double img_s = bs * iters / (total * 1e-3);
    double p50 = quantile(lat, iters, 0.5), p99 = quantile(lat, iters, 0.99);
    size_t peak = qat_rt_peak_activation_bytes(rt);
    if (!cfg->json) {
        printf("\nbatch %d: %.1f img/s, latency p50 %.3f ms, p99 %.3f ms (%d runs); peak "
               "activation memory %.1f KiB\n", bs, img_s, p50, p99, iters, peak / 1024.0);
        printf("  %-28s %-12s %-7s %10s %9s %8s %7s\n", "layer", "kind", "backend", "MACs/img",
               "ms", "GMAC/s", "%peak");
    } else {
        *jlen += (size_t)snprintf(*js + *jlen, JSON_CAP - *jlen,
                                  "%s{\"batch\": %d, \"img_s\": %.1f, \"p50_ms\": %.4f, "
                                  "\"p99_ms\": %.4f, \"iters\": %d, \"peak_activation_bytes\": "
                                  "%zu, \"layers\": [",
                                  *jlen > 1 ? ", " : "", bs, img_s, p50, p99, iters, peak);
    }
    for (int i = 0; i < nl; i++) {
        qat_rt_layer_info li;
        qat_rt_layer(rt, i, &li);
        double ms = quantile(lt + (size_t)i * iters, iters, 0.5);
        double gmacs = ms > 0 ? (double)li.macs * bs / (ms * 1e-3) * 1e-9 : 0;
        double pct = cfg->peak_gmacs > 0 ? 100.0 * gmacs / cfg->peak_gmacs : 0;
        int above = pct > 100.0; /* impossible unless the probe ran on a busier core */
        cfg->above_peak += above;
        if (!cfg->json)
            printf("  %-28s %-12s %-7s %10lld %9.4f %8.1f %6.1f%%%s\n", li.name, li.kind,
                   li.backend, (long long)li.macs, ms, gmacs, pct, above ? "*" : "");
        else
            *jlen += (size_t)snprintf(*js + *jlen, JSON_CAP - *jlen,
                                      "%s{\"name\": \"%s\", \"kind\": \"%s\", \"backend\": \"%s\", "
                                      "\"macs\": %lld, \"ms\": %.5f, \"gmac_s\": %.2f, "
                                      "\"pct_peak\": %.2f, \"above_peak\": %s}",
                                      i ? ", " : "", li.name, li.kind, li.backend,
                                      (long long)li.macs, ms, gmacs, pct, above ? "true" : "false");
    }
    if (cfg->json) *jlen += (size_t)snprintf(*js + *jlen, JSON_CAP - *jlen, "]}");
    free(px), free(logits), free(lat), free(lt);
    qat_rt_free(rt);
    return img_s;
}

/* FP32 inference img/s of a checkpoint's model at batch bs (eval mode, no tape): what INT8 is
 * compared with. Iterations as bench_batch, on the same pseudo-random pixels normalised. */
static double bench_fp32(const char *ckpt, int bs, int iters) {
    double img_s;
    if (qat_checkpoint_fp32_speed(ckpt, bs, iters, &img_s)) die(qat_last_error());
    return img_s;
}

/* "1,64" -> sizes, each in --batch's range (cli/cli_ranges.c); returns the count (usage error
 * on anything else). */
static int parse_batches(const char *s, int *out, int max) {
    int n = 0;
    char item[64];
    for (const char *p = s;; p++) {
        size_t len = strcspn(p, ",");
        if (n >= max || len >= sizeof item) usage_error("bench", "bad --batch list '%s' (e.g. 1,64)", s);
        memcpy(item, p, len), item[len] = 0;
        out[n++] = (int)cli_parse_int("bench", "batch", item);
        p += len;
        if (!*p) break;
    }
    return n;
}

/* The int8 peak: PEAK_PROBES short probes before the timed runs and as many after, so that a
 * stretch of the benchmark where this shared machine was busy does not set it alone; the best
 * is the peak, the rest its spread. */
#define PEAK_PROBES 15

typedef struct {
    double best, median, worst;
    int n;
} peak_stats;

static peak_stats peak_of(double *g, int n) {
    peak_stats p = {0, 0, 0, n};
    if (n <= 0) return p;
    p.best = quantile(g, n, 1.0), p.median = quantile(g, n, 0.5), p.worst = quantile(g, n, 0.0);
    return p;
}

int cmd_bench(int argc, char **argv) {
    bench_cfg cfg = {.backend = "auto"};
    const char *batches = "1,64", *ckpt = NULL;
    float given_peak = 0;
    const cli_opt opts[] = {
        {"int8", OPT_STR, &cfg.model, "INT8 model (.q8) to benchmark"},
        {"ckpt", OPT_STR, &ckpt, "also time this FP32 checkpoint's model and print the INT8/FP32 ratio"},
        {"batch", OPT_STR, &batches, "batch sizes, comma separated [1,64]"},
        {"threads", OPT_INT, &cfg.threads, "threads [all cores]"},
        {"backend", OPT_STR, &cfg.backend, "kernels: auto, native, onednn or ref [auto]"},
        {"iters", OPT_INT, &cfg.iters, "timed runs per batch size [2000 at batch 1, 4000/batch, >= 50]"},
        {"peak", OPT_FLOAT, &given_peak, "int8 peak in GMAC/s for the %peak column instead of probing it (e.g. measured on an idle machine)"},
        {"json", OPT_FLAG, &cfg.json, "print one JSON object"},
    };
    if (parse_opts("bench", "--int8 MODEL.q8 [--ckpt FP32.ckpt] [--batch 1,64] [--threads T] [--backend X] [--iters N] [--json]",
                   opts, NOPTS(opts), argc, argv))
        return 0;
    if (!cfg.model) usage_error("bench", "%s", "--int8 MODEL.q8 is required");
    int bs[16], nb = parse_batches(batches, bs, 16);
    if (cfg.threads > 0) qat_set_threads(cfg.threads);
    cfg.threads = qat_get_threads();
    if (given_peak < 0) usage_error("bench", "%s", "--peak must be > 0 GMAC/s");
    qat_rt *rt0 = load_or_die("bench", cfg.model, cfg.backend, 0, 1); /* errors before the report */
    char runs[256];
    backend_summary(rt0, cfg.backend, runs, sizeof runs);
    qat_rt_free(rt0);
    double probes[2 * PEAK_PROBES];
    int np = given_peak > 0 ? 0 : qat_rt_vnni_peak_probes(cfg.threads, PEAK_PROBES, probes);
    /* the %peak column needs the peak before the tables: the probes after them can only raise
     * it, which the footnote then says */
    cfg.peak_gmacs = given_peak > 0 ? given_peak : peak_of(probes, np).best;
    char *js = xmalloc(JSON_CAP);
    double img_s[16];
    size_t jlen = 0;
    js[jlen++] = '[';
    js[jlen] = 0;
    if (!cfg.json) {
        printf("%s: %d thread%s, backend %s\n", cfg.model, cfg.threads, cfg.threads == 1 ? "" : "s", runs);
        if (given_peak > 0) printf("int8 peak %.1f GMAC/s (--peak)\n", cfg.peak_gmacs);
        else if (np) {
            peak_stats ps = peak_of(probes, np);
            printf("int8 peak (vpdpbusd probe) %.1f GMAC/s: best of %d probes, median %.1f, lowest %.1f\n",
                   ps.best, np, ps.median, ps.worst);
        } else printf("int8 peak: not probed (no AVX512-VNNI on this CPU): no %%peak column\n");
    }
    double fp32[16] = {0};
    for (int i = 0; i < nb; i++) {
        img_s[i] = bench_batch(&cfg, bs[i], &js, &jlen);
        if (ckpt) fp32[i] = bench_fp32(ckpt, bs[i], cfg.iters);
    }
    peak_stats after = {0};
    if (np) { /* probed again after the timed runs: a peak that was low the first time shows */
        np += qat_rt_vnni_peak_probes(cfg.threads, PEAK_PROBES, probes + np);
        after = peak_of(probes, np);
    }
    if (!cfg.json && np && after.best > cfg.peak_gmacs * 1.05)
        printf("\nint8 peak probed again after the runs: %.1f GMAC/s (best of %d; median %.1f, lowest %.1f):"
               " %%peak above is %.0f%% too high (the machine was busy while the first probes ran)\n",
               after.best, np, after.median, after.worst, 100.0 * (after.best / cfg.peak_gmacs - 1));
    if (!cfg.json && cfg.above_peak)
        printf("\n* %d layer time%s above the peak, which no layer can beat: %s; read those as "
               "100%%\n", cfg.above_peak, cfg.above_peak == 1 ? " is" : "s are",
               given_peak > 0 ? "the --peak given is too low for this machine"
                              : "the peak was probed while this shared machine was busier than during those layers' runs "
                                "(see the probes' spread)");
    if (ckpt && !cfg.json) {
        printf("\n%-8s %14s %14s %8s\n", "batch", "FP32 img/s", "INT8 img/s", "INT8/FP32");
        for (int i = 0; i < nb; i++) printf("%-8d %14.1f %14.1f %7.2fx\n", bs[i], fp32[i], img_s[i], img_s[i] / fp32[i]);
    }
    if (cfg.json) {
        /* flat int8_infer_bN_img_s keys first: what bench/compare_int8.sh reads */
        printf("{\"model\": \"%s\", \"threads\": %d, \"backend\": \"%s\", \"backend_runs\": \"%s\", "
               "\"vnni_peak_gmac_s\": %.1f, \"vnni_peak_probes\": %d, \"vnni_peak_after_gmac_s\": %.1f, "
               "\"vnni_peak_median_gmac_s\": %.1f, \"vnni_peak_lowest_gmac_s\": %.1f, \"layers_above_peak\": %d",
               cfg.model, cfg.threads, cfg.backend, runs, cfg.peak_gmacs, np, after.best, after.median,
               after.worst, cfg.above_peak);
        for (int i = 0; i < nb; i++) printf(", \"int8_infer_b%d_img_s\": %.1f", bs[i], img_s[i]);
        for (int i = 0; ckpt && i < nb; i++) printf(", \"fp32_infer_b%d_img_s\": %.1f", bs[i], fp32[i]);
        printf(", \"batches\": %s]}\n", js);
    }
    free(js);
    return 0;
}

/* ---- qat infer ------------------------------------------------------------------------------------- */

/* Reads PNG `path` into dst (h, w, c) of the model's size and channels (gray <-> RGB
 * converted; a different size is an error naming the file). */
static void read_image(const char *path, int h, int w, int c, uint8_t *dst) {
    int ih, iw, ic;
    uint8_t *px;
    /* the header's size against the model's input before anything is decoded */
    if (qat_png_size(path, &ih, &iw)) die(qat_last_error());
    if (ih != h || iw != w) {
        fprintf(stderr, "qat infer: %s: image is %dx%d, the model takes %dx%d\n", path, iw, ih, w, h);
        exit(1);
    }
    if (qat_png_read(path, &ih, &iw, &ic, &px)) die(qat_last_error());
    if (ih != h || iw != w) {
        fprintf(stderr, "qat infer: %s: image is %dx%d, the model takes %dx%d\n", path, iw, ih, w, h);
        exit(1);
    }
    if (c != 1 && c != 3) {
        fprintf(stderr, "qat infer: %s: the model takes %d channels (PNG gives 1 or 3)\n", path, c);
        exit(1);
    }
    qat_image_convert(px, ic, dst, c, (int64_t)h * w);
    free(px);
}

int cmd_infer(int argc, char **argv) {
    const char *backend = "auto";
    int top = 5, threads = 0, json = 0;
    const cli_opt opts[] = {
        {"top", OPT_INT, &top, "classes to show per image [5]"},
        {"backend", OPT_STR, &backend, "kernels: auto, native, onednn or ref [auto]"},
        {"threads", OPT_INT, &threads, "threads [all cores]"},
        {"json", OPT_FLAG, &json, "one JSON object per image"},
    };
    enum { MAX_IMAGES = 4096 };
    static char *pos[MAX_IMAGES + 1];
    int npos = 0;
    if (parse_opts_pos("infer", "MODEL.q8 IMAGE.png... [--top K]", opts, NOPTS(opts), argc, argv,
                       pos, MAX_IMAGES + 1, &npos))
        return 0;
    if (npos < 2) usage_error("infer", "%s", "expected MODEL.q8 and at least one IMAGE.png");
    if (top < 1) usage_error("infer", "%s", "--top must be >= 1");
    int n = npos - 1;
    qat_rt *rt = load_or_die("infer", pos[0], backend, threads, n);
    int h, w, c, nc = qat_rt_nclasses(rt);
    qat_rt_input_shape(rt, &h, &w, &c);
    size_t per = (size_t)h * w * c;
    uint8_t *px = xmalloc(per * n);
    for (int i = 0; i < n; i++) read_image(pos[i + 1], h, w, c, px + per * i);
    float *logits = xmalloc(sizeof(float) * (size_t)n * nc);
    if (qat_rt_run_u8(rt, px, n, logits)) die(qat_rt_last_error());
    if (top > nc) top = nc;
    double *p = xmalloc(sizeof(double) * nc);
    int *idx = xmalloc(sizeof(int) * nc);
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * nc;
        double mx = z[0], sum = 0;
        for (int k = 1; k < nc; k++) mx = z[k] > mx ? z[k] : mx;
        for (int k = 0; k < nc; k++) sum += p[k] = exp((double)z[k] - mx);
        for (int k = 0; k < nc; k++) p[k] /= sum, idx[k] = k;
        for (int a = 0; a < top; a++) /* partial selection sort: top K by probability */
            for (int b = a + 1; b < nc; b++)
                if (p[idx[b]] > p[idx[a]]) {
                    int t = idx[a];
                    idx[a] = idx[b], idx[b] = t;
                }
        printf(json ? "{\"image\": \"%s\", \"top\": [" : "%s:", pos[i + 1]);
        for (int a = 0; a < top; a++) {
            /* a model trained on an ImageFolder knows its class names */
            const char *name = qat_rt_class_name(rt, idx[a]);
            if (json) {
                printf("%s{\"class\": %d, ", a ? ", " : "", idx[a]);
                if (name) printf("\"name\": "), json_string(name), printf(", ");
                printf("\"p\": %.5f}", p[idx[a]]);
            } else if (name) {
                printf("%s %s (class %d, %.2f%%)", a ? "," : "", name, idx[a], 100.0 * p[idx[a]]);
            } else {
                printf("%s class %d (%.2f%%)", a ? "," : "", idx[a], 100.0 * p[idx[a]]);
            }
        }
        printf(json ? "]}\n" : "\n");
    }
    free(px), free(logits), free(p), free(idx);
    qat_rt_free(rt);
    return 0;
}
