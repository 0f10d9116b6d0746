/* The qat command line. Every subcommand describes its options in a table (name, kind, target,
 * help) from which both parsing and --help are generated (cli/cli.c). Only the CLI files
 * (cli/) print and exit; they call the library through include/qat.h and include/qat_rt.h
 * (docs/architecture.md lists the few internals they use). */
#include "cli.h"
#include "onnx_import.h"
#include "plot.h" /* qat inspect --plot */
#include "progress.h"
#include "qat.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The QAT freeze options of `train` (with --qat-from-epoch) and `qat` (train/train.c explains
 * the default). */
#define FREEZE_BN_HELP                                                                             \
    "QAT: re-estimate and freeze BN statistics after N epochs of QAT, fractions allowed; auto = "  \
    "once the lr has decayed to 3% of its peak; never [auto]"
#define FREEZE_OBS_HELP "QAT: freeze observer ranges after N epochs of QAT; auto = halfway from the BN freeze to the end; never [auto]"
/* Data-parallel runs (mpirun -np N qat ...; docs/distributed.md). */
#define BATCH_HELP "global batch size: under mpirun -np N each rank trains on batch/N images of it, and the lr schedule is the global batch's [128]"
#define LOCAL_BN_HELP "under mpirun: BN batch statistics of each rank's own images, not of the global batch (SyncBN, the default)"
#define BN_REEST_HELP "QAT: batches that re-estimate BN statistics before they freeze, 0 = keep the moving averages [64]"

/* The augmentation options of train and qat, one table for both. Their defaults belong to the
 * dataset (qat_augment_default): crop_pad and hflip stay -1 unless given. */
#define AUGMENT_OPTS(o, flip, no_flip)                                                             \
    {"crop-pad", OPT_INT, &(o)->crop_pad,                                                          \
     "random-crop padding in pixels, 0 = off [2 for --data fashion-mnist, else 0]"},               \
    {"flip", OPT_FLAG, &(flip),                                                                    \
     "random horizontal flips [on for --data fashion-mnist, off for anything else]"},              \
    {"no-flip", OPT_FLAG, &(no_flip), "no random horizontal flips"}

static void augment_flags(const char *cmd, int flip, int no_flip, qat_train_opts *o) {
    if (flip && no_flip) usage_error(cmd, "%s", "--flip and --no-flip contradict each other");
    if (flip || no_flip) o->hflip = flip;
}

/* Options of train and qat that another option makes meaningless: an error before any work,
 * not a silent no-op (the checks the library can make itself are in train/train.c). */
static void check_train_combos(const char *cmd, int argc, char **argv, const qat_train_opts *o) {
    if (opt_given(argc, argv, "warmup-epochs") && o->sched != QAT_SCHED_COSINE)
        usage_error(cmd, "%s", "--warmup-epochs applies to --sched cosine only");
    if (opt_given(argc, argv, "momentum") && o->opt == QAT_OPT_ADAMW)
        usage_error(cmd, "%s", "--momentum applies to --opt sgd only (adamw has its own betas)");
    if (opt_given(argc, argv, "init") && opt_given(argc, argv, "resume"))
        usage_error(cmd, "%s", "--init starts a new run from a checkpoint, --resume continues one: give one of them");
    if (opt_given(argc, argv, "resume") && opt_given(argc, argv, "seed"))
        usage_error(cmd, "%s", "--resume continues with the checkpoint's seed: drop --seed");
}

static int cmd_train(int argc, char **argv) {
    qat_train_opts o;
    qat_train_opts_default(&o);
    o.data = NULL;
    int flip = 0, no_flip = 0, quiet = 0, json = 0;
    const cli_opt opts[] = {
        {"data", OPT_STR, &o.data, "dataset: fashion-mnist, an IDX/CIFAR-10 folder or a PNG ImageFolder"},
        {"val-split", OPT_FLOAT, &o.val_split, "ImageFolder without train/test: fraction held out [0.1]"},
        {"model", OPT_STR, &o.model, "preset name (mbv2-tiny, mbv1-tiny) or spec file [mbv2-tiny]"},
        {"width", OPT_FLOAT, &o.width, "width multiplier for the spec's channels [the spec's, 1]"},
        {"epochs", OPT_INT, &o.epochs, "epochs [15]"},
        {"batch", OPT_INT, &o.batch, BATCH_HELP},
        {"lr", OPT_FLOAT, &o.lr, "peak learning rate [0.1]"},
        {"wd", OPT_FLOAT, &o.weight_decay, "weight decay (not on BN params and biases) [5e-5]"},
        {"momentum", OPT_FLOAT, &o.momentum, "SGD momentum [0.9]"},
        {"opt", OPT_OPTIM, &o.opt, "optimizer: sgd (nesterov) or adamw [sgd]"},
        {"sched", OPT_SCHED, &o.sched, "lr schedule: onecycle, cosine (warmup), step, constant [onecycle]"},
        {"warmup-epochs", OPT_FLOAT, &o.warmup_epochs, "warmup of the cosine schedule [1]"},
        {"label-smoothing", OPT_FLOAT, &o.label_smoothing, "label smoothing of the loss [0.05]"},
        AUGMENT_OPTS(&o, flip, no_flip),
        {"seed", OPT_U64, &o.seed, "random seed [1]"},
        {"threads", OPT_INT, &o.threads, "threads [all cores]"},
        {"max-steps", OPT_I64, &o.max_steps, "stop after N optimizer steps (checkpoint kept for --resume)"},
        {"out", OPT_STR, &o.out_dir, "output directory for checkpoints and metrics.jsonl [runs/train]"},
        {"resume", OPT_STR, &o.resume, "continue exactly from a checkpoint (last.ckpt)"},
        {"init", OPT_STR, &o.init, "fine-tune from a checkpoint's weights (e.g. from qat import): its model, "
                                   "normalisation and class names; a fresh optimizer and schedule"},
        {"quiet", OPT_FLAG, &quiet, "no progress output"},
        {"json", OPT_FLAG, &json, "print the final summary as one JSON object"},
        {"qat-from-epoch", OPT_INT, &o.qat_from_epoch, "from epoch K (1-based) on, train with fake-quant (QAT) [off]"},
        {"qconfig", OPT_STR, &o.qconfig, "qconfig of the QAT phase: x86, per-tensor, w4a8 [x86]"},
        {"freeze-bn-epoch", OPT_FREEZE, &o.freeze_bn_epochs, FREEZE_BN_HELP},
        {"freeze-observer-epoch", OPT_FREEZE, &o.freeze_observer_epochs, FREEZE_OBS_HELP},
        {"bn-reestimate", OPT_INT, &o.bn_reestimate_batches, BN_REEST_HELP},
        {"local-bn", OPT_FLAG, &o.local_bn, LOCAL_BN_HELP},
    };
    if (parse_opts("train", "--data PATH [options]", opts, NOPTS(opts), argc, argv)) return 0;
    augment_flags("train", flip, no_flip, &o);
    if (!o.data) usage_error("train", "%s", "--data is required");
    check_train_combos("train", argc, argv, &o);
    cli_report report;
    cli_report_init(&report, quiet, json);
    o.on_event = cli_report_event, o.event_user = &report;
    cli_dist_watch("train", o.out_dir);
    qat_status st = qat_train_run(&o);
    if (st) die_run(st);
    return 0;
}

static int cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *data = NULL, *int8 = NULL, *backend = "auto", *pred_out = NULL;
    int json = 0, quiet = 0, threads = 0, batch = QAT_EVAL_BATCH;
    float val_split = 0;
    const cli_opt opts[] = {
        {"ckpt", OPT_STR, &ckpt, "checkpoint to evaluate"},
        {"int8", OPT_STR, &int8, "INT8 model (.q8, from qat convert) to evaluate with the INT8 runtime"},
        {"backend", OPT_STR, &backend, "--int8: kernels auto, native, onednn or ref [auto]"},
        {"data", OPT_STR, &data, "dataset (its test split is evaluated)"},
        {"batch", OPT_INT, &batch, "evaluation batch size [128]"},
        {"val-split", OPT_FLOAT, &val_split, "ImageFolder without train/test: fraction held out [0.1]"},
        {"threads", OPT_INT, &threads, "threads [all cores]"},
        {"quiet", OPT_FLAG, &quiet, "no progress output"},
        {"json", OPT_FLAG, &json, "print one JSON object (no progress output)"},
        {"pred-out", OPT_STR, &pred_out, "--ckpt: also write each test image's predicted class (one byte each)"},
    };
    if (parse_opts("eval", "(--ckpt CKPT | --int8 MODEL.q8) --data PATH [--json]", opts, NOPTS(opts), argc, argv))
        return 0;
    if ((!ckpt == !int8) || !data) usage_error("eval", "%s", "--data and one of --ckpt, --int8 are required");
    if (int8 && pred_out) usage_error("eval", "%s", "--pred-out goes with --ckpt");
    if (!int8 && opt_given(argc, argv, "backend"))
        usage_error("eval", "%s", "--backend picks the INT8 runtime's kernels: it goes with --int8, not --ckpt");
    cli_report report;
    cli_report_init(&report, quiet || json, json);
    if (int8) return cli_eval_int8(int8, data, val_split, batch, threads, backend, json, &report);
    if (threads > 0) qat_set_threads(threads);
    qat_eval_result ev;
    qat_class_report cr;
    qat_status st = qat_checkpoint_evaluate_classes(ckpt, data, val_split, batch, cli_report_event, &report, &ev, &cr);
    if (st) die_run(st);
    if (pred_out && qat_checkpoint_predict(ckpt, data, pred_out, batch)) die(qat_last_error());
    if (json) {
        printf("{\"accuracy\": %.4f, \"loss\": %.4f, \"images\": %d, \"seconds\": %.3f, \"img_per_s\": %.1f",
               ev.accuracy, ev.loss, ev.n, ev.seconds, ev.n / ev.seconds);
        cli_json_classes(&cr);
        printf("}\n");
    } else {
        printf("%s: test accuracy %.2f%% (%d images), loss %.4f, %.0f img/s\n", ckpt,
               100.0 * ev.accuracy, ev.n, ev.loss, ev.n / ev.seconds);
        cli_print_classes(&cr);
    }
    qat_class_report_free(&cr);
    return 0;
}

static int cmd_ptq(int argc, char **argv) {
    qat_ptq_opts o;
    qat_ptq_opts_default(&o);
    int json = 0, quiet = 0;
    const cli_opt opts[] = {
        {"ckpt", OPT_STR, &o.ckpt, "FP32 checkpoint to quantize"},
        {"data", OPT_STR, &o.data, "dataset: calibration on its train split, accuracy on its test split"},
        {"qconfig", OPT_STR, &o.qconfig, "quantization preset: x86, per-tensor, w4a8, lsq [x86]"},
        OBSERVER_OPTS(o.observer, o.percentile, o.averaging_constant, "minmax"),
        {"calib-batches", OPT_INT, &o.calib_batches, "calibration batches [32]"},
        {"batch", OPT_INT, &o.batch, "calibration batch size [128]"},
        {"val-split", OPT_FLOAT, &o.val_split, "ImageFolder without train/test: fraction held out [0.1]"},
        {"threads", OPT_INT, &o.threads, "threads [all cores]"},
        {"out", OPT_STR, &o.out, "PTQ checkpoint to write (FP32 params + quantization state)"},
        {"layer-qconfig", OPT_STR, &o.layer_qconfig, LAYER_QCONFIG_HELP},
        {"float-layers", OPT_STR, &o.float_layers, FLOAT_LAYERS_HELP},
        {"quiet", OPT_FLAG, &quiet, "no progress output"},
        {"json", OPT_FLAG, &json, "print one JSON object (no progress output)"},
    };
    if (parse_opts("ptq", "--ckpt FP32.ckpt --data PATH --out PTQ.ckpt [options]", opts, NOPTS(opts),
                   argc, argv))
        return 0;
    if (!o.ckpt || !o.data || !o.out) usage_error("ptq", "%s", "--ckpt, --data and --out are required");
    check_observer_settings("ptq", argc, argv, o.observer);
    cli_report report;
    cli_report_init(&report, quiet || json, json);
    o.on_event = cli_report_event, o.event_user = &report;
    qat_eval_result fp, q;
    qat_status st = qat_ptq_run(&o, &fp, &q);
    if (st) die_run(st);
    char floats[1024] = "";
    qat_checkpoint_float_layers(o.out, floats, sizeof floats);
    if (json)
        printf("{\"fp32_accuracy\": %.4f, \"accuracy\": %.4f, \"fp32_loss\": %.4f, \"loss\": %.4f, "
               "\"qconfig\": \"%s\", \"observer\": \"%s\", \"float_layers\": \"%s\", \"checkpoint\": \"%s\"}\n",
               fp.accuracy, q.accuracy, fp.loss, q.loss, o.qconfig, o.observer, floats, o.out);
    else
        printf("FP32 accuracy %.2f%%, PTQ (%s, %s%s%s) accuracy %.2f%%; written %s\n", 100.0 * fp.accuracy,
               o.qconfig, o.observer, *floats ? ", float: " : "", floats, 100.0 * q.accuracy, o.out);
    return 0;
}

static int cmd_qat(int argc, char **argv) {
    qat_qat_opts qo;
    qat_qat_opts_default(&qo);
    qat_train_opts *o = &qo.train;
    int flip = 0, no_flip = 0, quiet = 0, json = 0;
    const cli_opt opts[] = {
        {"ckpt", OPT_STR, &qo.ckpt, "FP32 (or PTQ) checkpoint to fine-tune"},
        {"data", OPT_STR, &o->data, "dataset: fashion-mnist, an IDX/CIFAR-10 folder or a PNG ImageFolder"},
        {"qconfig", OPT_STR, &qo.qconfig, "quantization preset: x86, per-tensor, w4a8, lsq [x86]"},
        {"freeze-bn-epoch", OPT_FREEZE, &o->freeze_bn_epochs, FREEZE_BN_HELP},
        {"freeze-observer-epoch", OPT_FREEZE, &o->freeze_observer_epochs, FREEZE_OBS_HELP},
        {"bn-reestimate", OPT_INT, &o->bn_reestimate_batches, BN_REEST_HELP},
        {"lsq-lr-mult", OPT_FLOAT, &qo.lsq_lr_mult, "qconfig lsq: learning rate of the scales relative to --lr [0.01]"},
        {"layer-qconfig", OPT_STR, &qo.layer_qconfig, LAYER_QCONFIG_HELP},
        {"float-layers", OPT_STR, &qo.float_layers, FLOAT_LAYERS_HELP},
        {"val-split", OPT_FLOAT, &o->val_split, "ImageFolder without train/test: fraction held out [0.1]"},
        {"epochs", OPT_INT, &o->epochs, "epochs [3]"},
        {"batch", OPT_INT, &o->batch, BATCH_HELP},
        {"lr", OPT_FLOAT, &o->lr, "peak learning rate [0.01]"},
        {"wd", OPT_FLOAT, &o->weight_decay, "weight decay (not on BN params and biases) [5e-5]"},
        {"momentum", OPT_FLOAT, &o->momentum, "SGD momentum [0.9]"},
        {"opt", OPT_OPTIM, &o->opt, "optimizer: sgd (nesterov) or adamw [sgd]"},
        {"sched", OPT_SCHED, &o->sched, "lr schedule: cosine, onecycle, step, constant [cosine]"},
        {"warmup-epochs", OPT_FLOAT, &o->warmup_epochs, "warmup of the cosine schedule [0]"},
        {"label-smoothing", OPT_FLOAT, &o->label_smoothing, "label smoothing of the loss [0.05]"},
        AUGMENT_OPTS(o, flip, no_flip),
        {"seed", OPT_U64, &o->seed, "random seed [1]"},
        {"threads", OPT_INT, &o->threads, "threads [all cores]"},
        {"max-steps", OPT_I64, &o->max_steps, "stop after N optimizer steps (checkpoint kept for --resume)"},
        {"out", OPT_STR, &o->out_dir, "output directory for checkpoints and metrics.jsonl [runs/qat]"},
        {"resume", OPT_STR, &o->resume, "continue exactly from a QAT checkpoint (last.ckpt)"},
        {"quiet", OPT_FLAG, &quiet, "no progress output"},
        {"json", OPT_FLAG, &json, "print the final summary as one JSON object"},
        {"local-bn", OPT_FLAG, &o->local_bn, LOCAL_BN_HELP},
    };
    if (parse_opts("qat", "--ckpt FP32.ckpt --data PATH [options]", opts, NOPTS(opts), argc, argv)) return 0;
    augment_flags("qat", flip, no_flip, o);
    if (!o->data) usage_error("qat", "%s", "--data is required");
    if (!qo.ckpt && !o->resume) usage_error("qat", "%s", "--ckpt (or --resume) is required");
    if (qo.ckpt && o->resume)
        usage_error("qat", "%s", "--ckpt starts a QAT run, --resume continues one: give one of them");
    if (opt_given(argc, argv, "lsq-lr-mult") && strcmp(qo.qconfig, "lsq"))
        usage_error("qat", "%s", "--lsq-lr-mult applies to --qconfig lsq only");
    check_train_combos("qat", argc, argv, o);
    cli_report report;
    cli_report_init(&report, quiet, json);
    o->on_event = cli_report_event, o->event_user = &report;
    cli_dist_watch("qat", o->out_dir);
    qat_status st = qat_qat_run(&qo);
    if (st) die_run(st);
    return 0;
}

static int cmd_inspect(int argc, char **argv) {
    const char *ckpt = NULL, *data = NULL, *plot = NULL;
    int batch = 128, threads = 0;
    float val_split = 0;
    const cli_opt opts[] = {
        {"ckpt", OPT_STR, &ckpt, "PTQ or QAT checkpoint"},
        {"data", OPT_STR, &data, "dataset (the first test batch is used)"},
        {"batch", OPT_INT, &batch, "images for the SQNR column [128]"},
        {"val-split", OPT_FLOAT, &val_split, "ImageFolder without train/test: fraction held out [0.1]"},
        {"threads", OPT_INT, &threads, "threads [all cores]"},
        {"plot", OPT_STR, &plot, "also draw the per-layer SQNR as a bar chart to this PNG"},
    };
    if (parse_opts("inspect", "--ckpt X.ckpt --data PATH [--plot sqnr.png]", opts, NOPTS(opts), argc, argv)) return 0;
    if (!ckpt || !data) usage_error("inspect", "%s", "--ckpt and --data are required");
    if (threads > 0) qat_set_threads(threads);
    char *report;
    qat_layer_sqnr layers;
    if (qat_inspect(ckpt, data, val_split, batch, &report, plot ? &layers : NULL))
        die(qat_last_error());
    fputs(report, stdout);
    free(report);
    fflush(stdout);
    if (plot) {
        qat_status st = qat_plot_layer_sqnr(plot, ckpt, &layers);
        qat_layer_sqnr_free(&layers);
        if (st) die(qat_last_error());
        fprintf(stderr, "wrote %s\n", plot);
    }
    return 0;
}

/* `qat summary --ckpt CKPT`: the checkpoint's model and how it was trained. */
static int summary_ckpt(const char *ckpt) {
    char *text;
    if (qat_checkpoint_summary(ckpt, &text)) die(qat_last_error());
    fputs(text, stdout);
    free(text);
    return 0;
}

static int cmd_summary(int argc, char **argv) {
    const char *model = NULL, *ckpt = NULL;
    float width = 0.0f;
    int h = 0, w = 0, c = 0, classes = 0;
    const cli_opt opts[] = {
        {"ckpt", OPT_STR, &ckpt, "a checkpoint: its model and the data pipeline it was trained with"},
        {"model", OPT_STR, &model, "preset name or spec file [mbv2-tiny]"},
        {"width", OPT_FLOAT, &width, "width multiplier [1.0]"},
        {"height", OPT_INT, &h, "input height [28]"},
        {"in-width", OPT_INT, &w, "input width [28]"},
        {"channels", OPT_INT, &c, "input channels [1]"},
        {"classes", OPT_INT, &classes, "classes [10]"},
    };
    if (parse_opts("summary", "[--model NAME|SPEC] [options] | --ckpt CKPT", opts, NOPTS(opts),
                   argc, argv))
        return 0;
    if (ckpt) {
        if (model || width != 0 || h || w || c || classes)
            usage_error("summary", "%s", "--ckpt takes the model from the checkpoint: drop --model, "
                        "--width, --height, --in-width, --channels and --classes");
        return summary_ckpt(ckpt);
    }
    qat_spec *spec;
    qat_model *m;
    if (qat_spec_load(model ? model : "mbv2-tiny", &spec)) die(qat_last_error());
    if (qat_model_create(spec, width != 0 ? width : 1.0f, h ? h : 28, w ? w : 28, c ? c : 1,
                         classes ? classes : 10, &m))
        die(qat_last_error());
    char buf[1 << 16];
    qat_model_summary(m, buf, sizeof buf);
    fputs(buf, stdout);
    qat_model_free(m);
    qat_spec_free(spec);
    return 0;
}

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} cli_cmd;

static const cli_cmd commands[] = {
    {"train", cmd_train, "train a model in FP32 (see qat train --help)"},
    {"eval", cmd_eval, "evaluate a checkpoint on a dataset's test split (fake-quant for PTQ/QAT)"},
    {"ptq", cmd_ptq, "post-training quantization of an FP32 checkpoint (calibrate, evaluate)"},
    {"qat", cmd_qat, "quantization-aware fine-tuning of an FP32 checkpoint"},
    {"inspect", cmd_inspect, "per-layer quantization parameters and SQNR of a PTQ/QAT checkpoint"},
    {"sensitivity", cmd_sensitivity, "per-layer quantization sensitivity: only-this-layer quantized / float, sorted"},
    {"quantize", cmd_quantize, "FP32 checkpoint to INT8 model within an accuracy budget (PTQ, QAT if needed)"},
    {"convert", cmd_convert, "turn a PTQ/QAT checkpoint into an INT8 model file (.q8)"},
    {"export", cmd_export, "write an INT8 model (.q8) or FP32 checkpoint as ONNX (QDQ / float)"},
    {"import", cmd_import, "turn an FP32 ONNX model into a checkpoint (then eval, ptq, qat, quantize it)"},
    {"infer", cmd_infer, "classify PNG images with an INT8 model (top-k classes)"},
    {"bench", cmd_bench, "benchmark an INT8 model: img/s, latency, per-layer time and backend"},
    {"plot", cmd_plot, "draw a run's loss and accuracy curves to PNG"},
    {"summary", cmd_summary, "print a model's layers, shapes and parameter count (--ckpt: and its training data)"},
};

static void print_main_help(void) {
    printf("qat: quantization-aware training of MobileNet-style CNNs\n\nusage: qat COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf("  %-11s %s\n", commands[i].name, commands[i].help);
    printf("\n'qat COMMAND --help' lists a command's options, 'qat help options' the range of\n"
           "every numeric option. Example:\n"
           "  qat train --data fashion-mnist --out runs/fp32\n"
           "  qat eval --ckpt runs/fp32/best.ckpt --data fashion-mnist\n"
           "  qat ptq --ckpt runs/fp32/best.ckpt --data fashion-mnist --out runs/ptq.ckpt\n"
           "  qat qat --ckpt runs/fp32/best.ckpt --data fashion-mnist --out runs/qat\n");
}

static int run_command(int argc, char **argv);

int main(int argc, char **argv) {
    qat_exec_with_omp_defaults(argv);
    if (qat_dist_init()) die(qat_last_error()); /* joins the job under mpirun; else nothing */
    int rc = run_command(argc, argv);
    qat_dist_finalize();
    return rc;
}

static int run_command(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "help") && !strcmp(argv[2], "options")) {
        cli_print_ranges();
        return 0;
    }
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        print_main_help();
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            cli_command = commands[i].name;
            return commands[i].run(argc - 2, argv + 2);
        }
    fprintf(stderr, "qat: unknown command '%s' (see 'qat --help')\n", argv[1]);
    return 2;
}
