/* qat quantize: FP32 checkpoint -> INT8 model within an accuracy budget (train/quantize.c). */
#include "cli.h"
#include "progress.h"
#include "qat.h"
#include <stdio.h>
#include <string.h>

static void row(const char *name, const qat_eval_result *e, double fp32, const char *size, const char *note) {
    printf("  %-22s %8.2f%% %+8.2f   %10s   %8.0f   %s\n", name, 100.0 * e->accuracy, 100.0 * (e->accuracy - fp32), size,
           e->seconds > 0 ? e->n / e->seconds : 0.0, note);
}

int cmd_quantize(int argc, char **argv) {
    qat_quantize_opts o;
    qat_quantize_opts_default(&o);
    int json = 0, quiet = 0;
    const cli_opt opts[] = {
        {"ckpt", OPT_STR, &o.ckpt, "FP32 checkpoint"},
        {"data", OPT_STR, &o.data, "dataset: calibration/fine-tuning on its train split, accuracy on its test split"},
        {"out", OPT_STR, &o.out, "INT8 model file to write (also -o)"},
        {"max-drop", OPT_FLOAT, &o.max_drop, "accepted accuracy drop vs FP32, in points [0.5]"},
        {"qconfig", OPT_STR, &o.qconfig, "quantization preset: x86, per-tensor, w4a8, lsq [x86]"},
        OBSERVER_OPTS(o.observer, o.percentile, o.averaging_constant, "histogram"),
        {"qat-epochs", OPT_INT, &o.qat_epochs, "most QAT epochs when PTQ falls short (stops once within target) [3]"},
        {"calib-batches", OPT_INT, &o.calib_batches, "PTQ calibration batches of 128 [32]"},
        {"layer-qconfig", OPT_STR, &o.layer_qconfig, LAYER_QCONFIG_HELP},
        {"allow-float", OPT_INT, &o.allow_float,
         "when PTQ misses the target, leave the K layers the sensitivity analysis ranks most sensitive in float, before QAT [0]"},
        {"sensitivity-images", OPT_INT, &o.sensitivity_images, "--allow-float: test images the analysis compares [1000]"},
        {"work-dir", OPT_STR, &o.work_dir, "where the PTQ checkpoint and the QAT run go [OUT.work]"},
        {"backend", OPT_STR, &o.backend, "INT8 runtime backend of the verification: auto, native, onednn, ref [auto]"},
        {"val-split", OPT_FLOAT, &o.val_split, "ImageFolder without train/test: fraction held out [0.1]"},
        {"threads", OPT_INT, &o.threads, "threads [all cores]"},
        {"quiet", OPT_FLAG, &quiet, "no progress output"},
        {"json", OPT_FLAG, &json, "print one JSON object"},
    };
    for (int a = 0; a < argc; a++)
        if (!strcmp(argv[a], "-o")) argv[a] = "--out";
    if (parse_opts("quantize", "--ckpt FP32.ckpt --data PATH -o MODEL.q8 [--max-drop 0.5] [options]", opts,
                   NOPTS(opts), argc, argv))
        return 0;
    if (!o.ckpt || !o.data || !o.out) usage_error("quantize", "%s", "--ckpt, --data and -o are required");
    check_observer_settings("quantize", argc, argv, o.observer);
    if (json) quiet = 1; /* stdout carries the JSON object only */
    cli_report report; /* the QAT fine-tuning's progress and summary, as qat qat prints them */
    cli_report_init(&report, quiet, 0);
    o.on_event = cli_report_event, o.event_user = &report;
    qat_quantize_report r;
    cli_dist_watch("quantize", NULL);
    qat_status st = qat_quantize_run(&o, &r);
    if (st) die_run(st);
    if (qat_dist_rank() != 0) return 0; /* mpirun: rank 0 converts, verifies and reports */
    double fp = r.fp32.accuracy, short_by = 100.0 * (r.target - r.int8.accuracy);
    if (json) {
        char qat[32] = "null";
        if (r.qat_ran) snprintf(qat, sizeof qat, "%.4f", r.qat.accuracy);
        char ptqf[32] = "null";
        if (r.float_ran) snprintf(ptqf, sizeof ptqf, "%.4f", r.ptq_float.accuracy);
        printf("{\"fp32\": %.4f, \"ptq\": %.4f, \"ptq_float\": %s, \"float_layers\": \"%s\", \"qat\": %s, \"int8\": %.4f, \"sim\": %.4f, \"qat_ran\": %d, "
               "\"qat_epochs\": %d, \"chosen\": \"%s\", \"agree\": %d, \"same_logits\": %d, \"images\": %d, "
               "\"fp32_bytes\": %lld, \"int8_bytes\": %lld, \"fp32_img_s\": %.1f, \"int8_img_s\": %.1f, "
               "\"max_drop\": %.3f, \"met\": %d, \"model\": \"%s\"}\n",
               fp, r.ptq.accuracy, ptqf, r.float_layers, qat, r.int8.accuracy, r.sim_accuracy, r.qat_ran, r.qat_epochs, r.chosen, r.agree,
               r.same_logits, r.int8.n, (long long)r.fp32_bytes, (long long)r.int8_bytes, r.fp32.n / r.fp32.seconds,
               r.int8.n / r.int8.seconds, o.max_drop, r.met, o.out);
    } else {
        char fsz[32], isz[32];
        snprintf(fsz, sizeof fsz, "%.1f KiB", r.fp32_bytes / 1024.0);
        snprintf(isz, sizeof isz, "%.1f KiB", r.int8_bytes / 1024.0);
        printf("\nqat quantize %s (qconfig %s, max drop %.2f points)\n", o.ckpt, o.qconfig, o.max_drop);
        printf("  %-22s %9s %8s   %10s   %8s\n", "model", "accuracy", "vs FP32", "size", "img/s");
        row("FP32", &r.fp32, fp, fsz, "");
        const int below = r.ptq.accuracy < r.target;
        row("PTQ (fake-quant)", &r.ptq, fp, "",
            !below ? "within target" : r.float_ran ? "below target: layers to float" : r.qat_ran ? "below target: QAT fine-tuning" : "below target");
        if (r.float_ran) {
            char note[600];
            snprintf(note, sizeof note, "float: %s", r.float_layers);
            row("PTQ + float layers", &r.ptq_float, fp, "", note);
        }
        if (r.qat_ran) {
            char note[64];
            snprintf(note, sizeof note, "%d epoch(s)", r.qat_epochs);
            row("QAT (fake-quant)", &r.qat, fp, "", note);
        }
        char note[128];
        snprintf(note, sizeof note, "from %s; logits = simulation on %d/%d images", r.chosen, r.same_logits, r.int8.n);
        row("INT8 runtime", &r.int8, fp, isz, note);
        if (r.met)
            printf("within target: INT8 accuracy %.2f%% >= %.2f%%; written %s\n", 100.0 * r.int8.accuracy,
                   100.0 * r.target, o.out);
        else
            printf("target missed by %.2f points: INT8 accuracy %.2f%% < %.2f%% (written %s anyway)\n", short_by,
                   100.0 * r.int8.accuracy, 100.0 * r.target, o.out);
    }
    return r.met ? 0 : 3;
}
