/* qat sensitivity: per-layer quantization sensitivity of an FP32 checkpoint (train/sensitivity.c)
 * as a table sorted by what leaving the layer float recovers, one JSON object, or a bar chart. */
#include "cli.h"
#include "plot.h"
#include "progress.h"
#include "qat.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const qat_sensitivity *sorting; /* qsort has no context argument */

/* Most sensitive first: the lowest KL divergence from FP32 with the layer left float (the
 * logits closest to FP32), then the higher accuracy. KL ranks before accuracy because on a
 * subset of a few thousand images accuracy moves in steps of 1/images and ties. */
static int by_recovery(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    const qat_sensitivity *s = sorting;
    if (s->float_kl[i] != s->float_kl[j]) return s->float_kl[i] < s->float_kl[j] ? -1 : 1;
    if (s->float_acc[i] != s->float_acc[j]) return s->float_acc[i] > s->float_acc[j] ? -1 : 1;
    return i - j;
}

int cmd_sensitivity(int argc, char **argv) {
    qat_sensitivity_opts o;
    qat_sensitivity_opts_default(&o);
    const char *plot = NULL;
    int json = 0, quiet = 0;
    const cli_opt opts[] = {
        {"ckpt", OPT_STR, &o.ckpt, "FP32 checkpoint"},
        {"data", OPT_STR, &o.data, "dataset: calibration on its train split, comparison on its test split"},
        {"qconfig", OPT_STR, &o.qconfig, "quantization preset: x86, per-tensor, w4a8 [x86]"},
        OBSERVER_OPTS(o.observer, o.percentile, o.averaging_constant, "histogram"),
        {"calib-batches", OPT_INT, &o.calib_batches, "PTQ calibration batches of 128 [32]"},
        {"images", OPT_INT, &o.images, "test images compared with FP32 [2000]"},
        {"val-split", OPT_FLOAT, &o.val_split, "ImageFolder without train/test: fraction held out [0.1]"},
        {"threads", OPT_INT, &o.threads, "threads [all cores]"},
        {"plot", OPT_STR, &plot, "also draw the accuracy each layer recovers when left float to this PNG"},
        {"quiet", OPT_FLAG, &quiet, "no progress output"},
        {"json", OPT_FLAG, &json, "print one JSON object"},
    };
    if (parse_opts("sensitivity", "--ckpt FP32.ckpt --data PATH [--qconfig w4a8] [--plot s.png] [options]", opts,
                   NOPTS(opts), argc, argv))
        return 0;
    if (!o.ckpt || !o.data) usage_error("sensitivity", "%s", "--ckpt and --data are required");
    check_observer_settings("sensitivity", argc, argv, o.observer);
    cli_report report;
    cli_report_init(&report, quiet || json, json);
    o.on_event = cli_report_event, o.event_user = &report;
    qat_sensitivity s;
    qat_status st = qat_sensitivity_run(&o, &s);
    if (st) die_run(st);
    int *order = malloc((size_t)(s.n > 0 ? s.n : 1) * sizeof(int));
    if (!order) die("out of memory");
    for (int i = 0; i < s.n; i++) order[i] = i;
    sorting = &s;
    qsort(order, (size_t)s.n, sizeof(int), by_recovery);
    if (json) {
        printf("{\"checkpoint\": \"%s\", \"qconfig\": \"%s\", \"observer\": \"%s\", \"images\": %d, "
               "\"fp32_accuracy\": %.4f, \"quantized_accuracy\": %.4f, \"quantized_kl\": %.6f, \"layers\": [",
               o.ckpt, o.qconfig, o.observer, s.images, s.fp32_acc, s.quant_all_acc, s.quant_all_kl);
        for (int r = 0; r < s.n; r++) {
            int i = order[r];
            printf("%s{\"rank\": %d, \"name\": \"%s\", \"only_quantized_accuracy\": %.4f, \"only_quantized_kl\": %.6f, "
                   "\"only_float_accuracy\": %.4f, \"only_float_kl\": %.6f}",
                   r ? ", " : "", r + 1, s.names[i], s.quant_acc[i], s.quant_kl[i], s.float_acc[i], s.float_kl[i]);
        }
        printf("]}\n");
    } else {
        printf("%s, qconfig %s, observer %s, %d test images: FP32 %.2f%%, all quantized %.2f%% (KL %.4f)\n",
               o.ckpt, o.qconfig, o.observer, s.images, 100 * s.fp32_acc, 100 * s.quant_all_acc, s.quant_all_kl);
        printf("%-4s %-28s %14s %9s %14s %9s\n", "rank", "layer", "only-quant acc", "KL", "only-float acc", "KL");
        for (int r = 0; r < s.n; r++) {
            int i = order[r];
            printf("%-4d %-28s %13.2f%% %9.5f %13.2f%% %9.5f\n", r + 1, s.names[i], 100 * s.quant_acc[i],
                   s.quant_kl[i], 100 * s.float_acc[i], s.float_kl[i]);
        }
        printf("(sorted by the KL divergence from FP32 with only that layer's weight left float: the first "
               "rows are the layers whose quantization costs most)\n");
    }
    fflush(stdout);
    if (plot) {
        const char **labels = malloc((size_t)(s.n > 0 ? s.n : 1) * sizeof *labels);
        double *gain = malloc((size_t)(s.n > 0 ? s.n : 1) * sizeof *gain);
        if (!labels || !gain) die("out of memory");
        for (int r = 0; r < s.n; r++)
            labels[r] = s.names[order[r]], gain[r] = 100 * (s.float_acc[order[r]] - s.quant_all_acc);
        char title[200];
        snprintf(title, sizeof title, "Accuracy recovered by leaving one layer float (%s, %d images)", o.qconfig, s.images);
        qat_plot_opts po = {title, "layer (most sensitive first)", "points vs all quantized", 0, 0, NULL, 1};
        st = qat_plot_bars(plot, labels, gain, s.n, &po, NULL);
        free(labels), free(gain);
        if (st) die_run(st);
        if (!json) fprintf(stderr, "wrote %s\n", plot);
    }
    free(order);
    qat_sensitivity_free(&s);
    return 0;
}
