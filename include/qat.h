/* qat — quantization-aware training of MobileNet-style CNNs in C.
 *
 * Usage (train mbv2-tiny on Fashion-MNIST, quantize the best checkpoint to an INT8 model):
 *
 *   qat_train_opts o;
 *   qat_train_opts_default(&o);
 *   o.data = "fashion-mnist";
 *   o.out_dir = "runs/fp32";
 *   if (qat_train_run(&o)) { fprintf(stderr, "%s\n", qat_last_error()); return 1; }
 *   qat_quantize_opts q;
 *   qat_quantize_opts_default(&q);
 *   q.ckpt = "runs/fp32/best.ckpt", q.data = "fashion-mnist", q.out = "m.q8";
 *   qat_quantize_report r;
 *   if (qat_quantize_run(&q, &r)) return 1;      // m.q8 runs on include/qat_rt.h
 *
 * Every function that can fail returns a qat_status; qat_last_error() then names the file and
 * the problem in one line. Nothing in the library prints or exits: a run reports progress
 * through the callback in its options (qat_event_fn).
 */
#ifndef QAT_H
#define QAT_H

#include "qat_status.h"
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Records an error message for the calling thread and returns `s` (for `return qat_fail(...)`). */
qat_status qat_fail(qat_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- CPU feature dispatch ------------------------------------------------------------ */
typedef enum {
    QAT_ISA_SCALAR = 0,
    QAT_ISA_AVX2,        /* AVX2 + FMA */
    QAT_ISA_AVX512,      /* AVX-512 F/BW/VL/DQ */
    QAT_ISA_COUNT
} qat_isa;

/* Best ISA of this CPU, capped by the environment variable QAT_ISA=scalar|avx2|avx512. */
qat_isa qat_cpu_isa(void);
int qat_cpu_has_avx512_vnni(void);
int qat_cpu_has_avx_vnni(void);
const char *qat_isa_name(qat_isa isa);
/* Forces the ISA (tests use this to exercise every path); returns the previous value. */
qat_isa qat_set_isa(qat_isa isa);

/* Number of OpenMP threads our kernels use; OpenBLAS is kept single-threaded. */
void qat_set_threads(int n);
int qat_get_threads(void);

/* For a program's main(), before any OpenMP call: re-executes the program with a short OpenMP
 * spin (GOMP_SPINCOUNT=20000) unless the user set GOMP_SPINCOUNT or OMP_WAIT_POLICY (OpenMP's
 * default spin made the 2-core training step slower; see kernels/cpu.c). */
void qat_exec_with_omp_defaults(char **argv);

/* Caps the graph memory of one training or evaluation step (activations, gradients, tape) at
 * `bytes`; a step that needs more fails with QAT_ERR_NOMEM, as does one for which malloc
 * fails. 0 (the default) = no cap. Process-wide, like the thread count. */
void qat_set_memory_limit(size_t bytes);

/* ---- data-parallel runs on Open MPI (docs/distributed.md) ---------------------------------
 * `mpirun -np N qat train ...`: each process (rank) trains on its part of every global batch,
 * gradients are averaged, BN statistics and observer ranges are reduced across ranks, rank 0
 * alone reports and writes files. A program calls qat_dist_init before its runs and
 * qat_dist_finalize at the end; without mpirun (or in a qat built without MPI) it is one
 * process of rank 0 and nothing changes. */
/* Joins the mpirun job when the process was started by mpirun; a no-op otherwise. */
qat_status qat_dist_init(void);
void qat_dist_finalize(void);
/* Ends the whole job with this exit code (MPI_Abort when there are several ranks; exit else). */
void qat_dist_abort(int code) __attribute__((noreturn));
int qat_dist_rank(void);
int qat_dist_size(void);
/* "Open MPI v4.1.4" or "none (built without MPI)". */
const char *qat_dist_backend(void);
/* 1 when the last error was found by every rank together (ranks given different options, ranks
 * whose state drifted apart): the job can end cleanly (qat_dist_finalize, exit) and rank 0 alone
 * needs to say it. Any other error of a rank should end the job with qat_dist_abort, since the
 * others would wait for it in their next collective. */
int qat_dist_error_collective(void);

/* ---- datasets, specs, models (details in datasets/dataset.h, layers/spec.h, models/model.h) ---- */
typedef struct qat_dataset qat_dataset;
typedef struct qat_data_opts qat_data_opts;
typedef struct qat_spec qat_spec;
typedef struct qat_model qat_model;
typedef struct qat_rt qat_rt; /* include/qat_rt.h */

#define QAT_NAME_MAX 48 /* bytes of a layer name, NUL included ("features.3.body.1") */

/* path: "fashion-mnist", an IDX or CIFAR-10 folder, or a PNG ImageFolder root. */
qat_status qat_dataset_open(const char *path, const qat_data_opts *o, qat_dataset **train,
                            qat_dataset **test);
void qat_dataset_free(qat_dataset *d);
/* A preset name (mbv2-tiny, mbv1-tiny) or a spec file; format in docs/model-spec.md. */
qat_status qat_spec_load(const char *name_or_path, qat_spec **out);
void qat_spec_free(qat_spec *s);
/* The model of spec for (in_h, in_w, in_c) inputs and nclasses classes; width > 0 replaces the
 * spec's width. Parameters start at zero, BN at the identity: qat_model_init draws them. */
qat_status qat_model_create(const qat_spec *spec, float width, int in_h, int in_w, int in_c,
                            int nclasses, qat_model **out);
void qat_model_free(qat_model *m);
/* torchvision MobileNetV2's initialisation, drawn from a generator seeded with seed. */
void qat_model_init_seed(qat_model *m, uint64_t seed);
/* A table of layers (name, op, output shape, params, MACs) and totals, written like snprintf:
 * at most cap bytes including the NUL; returns the length the whole table needs. */
size_t qat_model_summary(const qat_model *m, char *buf, size_t cap);

/* ---- training --------------------------------------------------------------------------- */
typedef enum { QAT_OPT_SGD, QAT_OPT_ADAMW, QAT_OPT_COUNT } qat_opt_kind;
typedef enum {
    QAT_SCHED_CONSTANT,
    QAT_SCHED_STEP,
    QAT_SCHED_COSINE,   /* linear warmup, then cosine */
    QAT_SCHED_ONECYCLE, /* PyTorch OneCycleLR */
    QAT_SCHED_COUNT
} qat_sched_kind;

/* "sgd", "adamw" / "constant", "step", "cosine", "onecycle" -> *out: 0, nonzero when unknown. */
int qat_opt_parse(const char *s, qat_opt_kind *out);
int qat_sched_parse(const char *s, qat_sched_kind *out);

/* What a training run reports while it runs, through the callback of its options (the library
 * prints nothing; the qat command line prints these as it always has). */
typedef enum {
    QAT_EVENT_START, /* the run starts: text is the data pipeline in one line; warning, when
                      * not NULL, a line about a setting that misleads on this run */
    QAT_EVENT_NOTE,  /* QAT: text is the freeze plan, or a freeze that just happened */
    QAT_EVENT_STEP,  /* a step is done: epoch (0-based), batch (0-based) of batches, images of
                      * the step, loss and acc the running averages of the epoch */
    QAT_EVENT_EPOCH, /* an epoch is done and evaluated: text is its line; loss/acc of training,
                      * test_loss/test_acc of the evaluation, seconds and img_per_s of training */
    QAT_EVENT_STOP,  /* stop_at_accuracy reached: text says so */
    QAT_EVENT_PROGRESS, /* a long step outside training (calibration, evaluation) advanced: text
                      * names it ("calibrating", "evaluating INT8"), batch of batches done
                      * (1-based), images so far, seconds since it began */
    QAT_EVENT_DONE,  /* the run is over: test_loss/test_acc of the last evaluation, epoch
                      * its epoch (0-based; a --max-steps run's may be partial, -1: none),
                      * best_acc, epochs_done (complete epochs), steps, seconds and img_per_s of all training, params,
                      * checkpoint (last.ckpt) and out_dir */
} qat_event_kind;

typedef struct {
    qat_event_kind kind;
    const char *text, *warning;
    const char *phase;          /* STEP: "train" or "qat"; EPOCH: "fp32" or "qat" */
    int epoch, epochs;          /* epochs: of the whole schedule */
    int batch, batches, images; /* STEP */
    float loss, acc, test_loss, test_acc, best_acc;
    double seconds, img_per_s;
    int epochs_done;
    int64_t steps, params;
    const char *checkpoint, *out_dir;
} qat_event;

typedef void (*qat_event_fn)(const qat_event *e, void *user);

typedef struct {
    const char *data;        /* dataset path or name */
    const char *model;       /* preset name or spec path */
    const char *out_dir;     /* checkpoints and metrics.jsonl */
    const char *resume;      /* checkpoint to continue from, or NULL */
    const char *init;        /* FP32 fine-tuning from this checkpoint's weights, spec, normalisation
                              * and class names, with a fresh optimizer and schedule (an imported
                              * model has no optimizer state to resume); NULL: none */
    int epochs, batch, threads;
    int64_t max_steps;       /* stop after this many steps in this run (0 = no limit) */
    float lr, weight_decay, momentum, label_smoothing, width;
    float warmup_epochs;
    float val_split;         /* ImageFolder without train/ test/: fraction held out */
    qat_opt_kind opt;
    qat_sched_kind sched;
    uint64_t seed;
    int crop_pad, hflip;     /* augmentation: random-crop padding, horizontal flips (0/1); -1
                              * (the default) = what fits the dataset: crop padding 2 and flips
                              * for the built-in fashion-mnist, none for any other data
                              * (qat_augment_default in datasets/dataset.h) */
    int eval_batch;
    qat_event_fn on_event;   /* progress and results as they happen (NULL: none) */
    void *event_user;        /* passed to on_event */
    int qat_from_epoch;      /* > 0: from this epoch (1-based) on, train with fake-quant */
    const char *qconfig;     /* qconfig of that QAT phase (NULL: "x86") */
    /* The QAT phase (qat_from_epoch, or `qat qat`): BN statistics and observer ranges freeze
     * after this many epochs of QAT (fractions allowed), or QAT_FREEZE_AUTO: BN at the first
     * step after the learning-rate peak whose rate is at most 3% of the peak, observers
     * halfway from there to the end; QAT_FREEZE_NEVER. */
    float freeze_bn_epochs, freeze_observer_epochs;
    int bn_reestimate_batches; /* BN statistics re-estimated over this many batches before
                                * they freeze (0: keep the moving averages) */
    float stop_at_accuracy;  /* > 0: stop after the first epoch whose test accuracy reaches it */
    int local_bn;            /* data-parallel: BN batch statistics of each rank's own images
                              * (running statistics averaged over ranks at each epoch's end);
                              * 0 (the default): SyncBN, statistics of the global batch */
} qat_train_opts;

#define QAT_FREEZE_AUTO (-1.0f)
#define QAT_FREEZE_NEVER (-2.0f)
#define QAT_BN_REESTIMATE_BATCHES 64

/* Defaults that train mbv2-tiny on Fashion-MNIST to >92.5% test accuracy; the augmentation
 * follows the dataset (crop_pad, hflip -1). */
void qat_train_opts_default(qat_train_opts *o);
/* Trains (or resumes) and writes out_dir/{last,best}.ckpt and out_dir/metrics.jsonl. */
qat_status qat_train_run(const qat_train_opts *o);

/* ---- evaluation ------------------------------------------------------------------------- */

/* Default evaluation batch: every op output of a batch lives in the eval arena, so 128 images
 * keep evaluation under ~0.3 GB where 500 took ~1 GB, and run faster (measured: 1.7 s vs 2.3 s
 * for the 10,000 Fashion-MNIST test images, 2 threads). */
#define QAT_EVAL_BATCH 128

typedef struct {
    float accuracy, loss;
    int n;
    double seconds;
} qat_eval_result;

/* Evaluates a model on the whole dataset (eval mode, no grad), normalising inputs with
 * mean/std (one value per channel). */
qat_status qat_evaluate(qat_model *m, const qat_dataset *d, const float *mean, const float *std,
                        int eval_batch, qat_eval_result *res);
/* Loads a checkpoint and evaluates it on the test split of `data` (a PTQ/QAT checkpoint as its
 * INT8 model, by the integer-exact simulation). */
qat_status qat_checkpoint_evaluate(const char *ckpt, const char *data, qat_eval_result *res);
/* The same with the ImageFolder split and the batch size given. */
qat_status qat_checkpoint_evaluate_split(const char *ckpt, const char *data, float val_split,
                                         int eval_batch, qat_eval_result *res);
/* The same, reporting QAT_EVENT_PROGRESS events per batch to on_event (NULL: none). */
qat_status qat_checkpoint_evaluate_progress(const char *ckpt, const char *data, float val_split,
                                            int eval_batch, qat_event_fn on_event, void *user,
                                            qat_eval_result *res);
/* Per-class figures of an evaluation (qat eval): the confusion matrix and the class names. */
typedef struct qat_class_report {
    int nclasses;
    int64_t *confusion;          /* (nclasses, nclasses): row = true class, column = prediction */
    char (*names)[64];           /* the model's class names when it stores them, else the
                                  * dataset's ("0", "1", ... for IDX and CIFAR-10) */
    int names_from_model;
} qat_class_report;
void qat_class_report_free(qat_class_report *r);
/* qat_checkpoint_evaluate_progress with the per-class report (cr may be NULL). */
qat_status qat_checkpoint_evaluate_classes(const char *ckpt, const char *data, float val_split,
                                           int eval_batch, qat_event_fn on_event, void *user,
                                           qat_eval_result *res, qat_class_report *cr);

/* An INT8 runtime (include/qat_rt.h) on the test split of `data`, normalised as the model was
 * trained (an ImageFolder split with the training's default seed 1); name stands for the model
 * in messages. res->loss is not computed (0). */
qat_status qat_evaluate_int8(qat_rt *rt, const char *name, const char *data, float val_split,
                             int batch, qat_eval_result *res);
/* The same, reporting QAT_EVENT_PROGRESS events per batch to on_event (NULL: none). */
/* qat_evaluate_int8_progress with the per-class report (cr may be NULL). */
qat_status qat_evaluate_int8_classes(qat_rt *rt, const char *name, const char *data,
                                     float val_split, int batch, qat_event_fn on_event, void *user,
                                     qat_eval_result *res, qat_class_report *cr);
qat_status qat_evaluate_int8_progress(qat_rt *rt, const char *name, const char *data,
                                      float val_split, int batch, qat_event_fn on_event,
                                      void *user, qat_eval_result *res);
/* FP32 inference speed of a checkpoint's model at batch `batch` (eval mode, no tape; `iters`
 * timed runs, <= 0: 2000 at batch 1, else max(50, 4000 / batch)): what INT8 is compared with. */
qat_status qat_checkpoint_fp32_speed(const char *ckpt, int batch, int iters, double *img_per_s);
/* What a checkpoint holds, as `qat summary --ckpt` prints it: the model's summary table, a line
 * with its kind, epoch, step and best accuracy, and the data pipeline it was trained with.
 * *text is malloc'd (free it). */
qat_status qat_checkpoint_summary(const char *ckpt, char **text);

/* ---- quantization: PTQ, QAT, inspect, convert, quantize ------------------------------------ */

typedef struct {
    const char *ckpt;           /* FP32 checkpoint */
    const char *data;
    const char *qconfig;        /* preset name ["x86"]: x86, per-tensor, w4a8, lsq */
    const char *observer;       /* activation observer: minmax, moving-average, mse (=
                                 * histogram), percentile [minmax] */
    float percentile;           /* observer percentile: the kept range, in percent [99.99] */
    float averaging_constant;   /* observer moving-average: new = old + c (batch - old) [0.01] */
    const char *out;            /* PTQ checkpoint to write */
    int calib_batches;          /* [32] */
    int batch;                  /* calibration batch size [128] */
    int eval_batch;             /* [QAT_EVAL_BATCH] */
    float val_split;
    int threads;
    qat_event_fn on_event;      /* QAT_EVENT_PROGRESS of calibration and evaluations (NULL: none) */
    void *event_user;
    /* Mixed precision: layers left in float (they run in float between the INT8 ones, the
     * .q8 dequantizes into and quantizes out of them): a per-layer qconfig file of "PATTERN
     * float|int8" lines (NULL: none), then a comma-separated list of name patterns (NULL: none). */
    const char *layer_qconfig;
    const char *float_layers;
} qat_ptq_opts;

void qat_ptq_opts_default(qat_ptq_opts *o);
/* Loads, calibrates (train split, eval mode, no augmentation), freezes, evaluates FP32 and
 * fake-quant accuracy on the test split and writes o->out (FP32 params + "quant" section). */
qat_status qat_ptq_run(const qat_ptq_opts *o, qat_eval_result *fp32, qat_eval_result *quant);

typedef struct {
    qat_train_opts train;       /* data, out_dir, epochs, batch, lr, opt, sched, resume, ... */
    const char *ckpt;           /* FP32 checkpoint to start from (ignored with train.resume) */
    const char *qconfig;        /* ["x86"] (the freeze schedule: train.freeze_*_epochs) */
    float lsq_lr_mult;          /* qconfig lsq: quantizer lr = lr * this [0.01] */
    const char *layer_qconfig;  /* layers left in float, as qat_ptq_opts */
    const char *float_layers;
} qat_qat_opts;

/* QAT defaults: 3 epochs, lr 0.01 cosine without warmup, no label smoothing change. */
void qat_qat_opts_default(qat_qat_opts *o);
/* Quantization-aware fine-tuning with the training loop of qat_train_run; metrics.jsonl lines
 * have phase "qat", checkpoints carry the "quant" section. */
qat_status qat_qat_run(const qat_qat_opts *o);

/* Per layer (model order, the rows of the inspect report): module path and SQNR in dB, +inf
 * for a layer whose fake-quant output equals the FP32 one. */
typedef struct {
    int n;
    char (*names)[QAT_NAME_MAX];
    double *sqnr_db;
} qat_layer_sqnr;

/* `qat inspect`: per layer of a PTQ/QAT checkpoint the output qparams, the weight scales and
 * range, and the SQNR of the output with fake-quant against FP32 on the first `batch` test
 * images. *report is a malloc'd table (free it); *layers (when not NULL) gets the names and
 * SQNRs (free with qat_layer_sqnr_free). */
qat_status qat_inspect(const char *ckpt, const char *data, float val_split, int batch,
                       char **report, qat_layer_sqnr *layers);
void qat_layer_sqnr_free(qat_layer_sqnr *s);

/* `qat sensitivity`: per layer with a weight (conv, linear), the accuracy and mean logits KL
 * divergence against FP32 on the first `images` test images, with only that layer quantized
 * and with only that layer's weight left float (train/sensitivity.c says exactly what). */
typedef struct {
    const char *ckpt, *data;    /* FP32 (or PTQ/QAT: its FP32 weights) checkpoint */
    const char *qconfig;        /* [x86]; not lsq */
    const char *observer;       /* PTQ activation observer [histogram] */
    float percentile, averaging_constant;
    int calib_batches;          /* of 128 [32] */
    int images;                 /* test images compared [2000] */
    float val_split;
    int threads;
    qat_event_fn on_event;      /* QAT_EVENT_PROGRESS (NULL: none) */
    void *event_user;
} qat_sensitivity_opts;

typedef struct {
    int n, images;
    char (*names)[QAT_NAME_MAX];
    double *quant_acc, *quant_kl;  /* (n) only this layer quantized */
    double *float_acc, *float_kl;  /* (n) everything quantized but this layer's weight */
    double fp32_acc, quant_all_acc, quant_all_kl;
} qat_sensitivity;

void qat_sensitivity_opts_default(qat_sensitivity_opts *o);
qat_status qat_sensitivity_run(const qat_sensitivity_opts *o, qat_sensitivity *out);
void qat_sensitivity_free(qat_sensitivity *s);

/* What convert wrote. */
typedef struct {
    int layers;                 /* INT8 layers */
    int64_t weights, macs;      /* int8 weights; multiply-accumulates per image */
    char qconfig[16];
    int in_h, in_w, in_c;
    int float_layers;           /* layers left in float (FCONV, FLINEAR) */
    int64_t float_weights;      /* their weights (f32), part of `weights` */
} qat_convert_info;

/* The layers a PTQ/QAT checkpoint leaves in float, comma-separated into buf ("" for none, or
 * for an FP32 checkpoint). */
qat_status qat_checkpoint_float_layers(const char *ckpt, char *buf, size_t cap);

/* A PTQ/QAT checkpoint to an INT8 model file (.q8, atomically): BN folded, weights and biases
 * quantized as the checkpoint's evaluation computes them. An FP32 checkpoint gets QAT_ERR_ARG
 * saying to run ptq/qat first. info may be NULL. */
qat_status qat_convert(const char *ckpt, const char *out, qat_convert_info *info);

/* ONNX export (docs/formats.md, "ONNX"). Both graphs take the same input as `qat infer`: raw
 * pixel values 0..255 as float32, NCHW (N, C, H, W) with a dynamic batch N; the model divides by
 * 255 and normalises with the training mean/std itself (written in metadata_props and in
 * `input`/`normalisation` below). Output "logits" (N, classes) float32. */
typedef struct {
    int nodes, initializers, opset;
    int64_t bytes;              /* file size */
    char input[160];            /* "pixels: float32 NCHW (N, 1, 28, 28), raw pixel values 0..255" */
    char normalisation[256];    /* what happens to the pixels before the first layer */
    /* QDQ only: how much of the INT8 arithmetic ONNX's own definitions reproduce bit for bit
     * (the rest differs by at most one rounding, i.e. one code):
     * the input codes of the 256 pixel values per channel (QuantizeLinear divides by the scale,
     * qat multiplies by its reciprocal), the requantization multipliers an ONNX runtime derives
     * as s_in*s_w/s_out against the ones the .q8 stores, and the entries of the hardswish /
     * hardsigmoid tables against ONNX's HardSwish / HardSigmoid on the dequantized code. */
    int input_exact, input_values;
    int mult_exact, mults;
    int lut_exact, lut_entries;
} qat_onnx_info;

/* An INT8 model (.q8) as an ONNX QDQ graph: QuantizeLinear / DequantizeLinear around float Conv,
 * Add, GlobalAveragePool, Mul, HardSwish / HardSigmoid and Gemm; u8 activations with their scale
 * and zero point, s8 weights with per-channel scales (axis 0), s32 biases with scale s_in*s_w,
 * clamps (ReLU, ReLU6) as a Clip on the u8 codes where the u8 range does not already make them.
 * Written atomically; a .q8 that does not load gets the loader's error. info may be NULL. */
qat_status qat_export_onnx(const char *q8, const char *out, qat_onnx_info *info);
/* An FP32 checkpoint as a float ONNX graph, BatchNorm folded into the conv weights and biases. */
qat_status qat_export_onnx_fp32(const char *ckpt, const char *out, qat_onnx_info *info);

typedef struct {
    const char *ckpt;        /* FP32 checkpoint */
    const char *data;
    const char *out;         /* INT8 model file to write */
    const char *work_dir;    /* PTQ checkpoint and QAT run go here [<out>.work] */
    const char *qconfig;     /* [x86] */
    const char *observer;    /* PTQ activation observer [histogram]; its settings: */
    float percentile, averaging_constant; /* as qat_ptq_opts [99.99, 0.01] */
    const char *backend;     /* INT8 runtime backend of the verification [auto] */
    float max_drop;          /* accepted accuracy drop vs FP32, in points [0.5] */
    int qat_epochs;          /* most QAT epochs when PTQ falls short [3] */
    int calib_batches;       /* [32] */
    int threads;
    float val_split;
    qat_event_fn on_event;   /* the QAT fine-tuning's events and QAT_EVENT_PROGRESS of PTQ,
                              * the evaluations and the INT8 verification (NULL: none) */
    void *event_user;
    const char *layer_qconfig; /* layers left in float throughout, as qat_ptq_opts [NULL] */
    /* When PTQ misses the target: leave the allow_float layers that the sensitivity analysis
     * (qat_sensitivity_run, ranked by the KL with only that layer float) finds most sensitive
     * in float and calibrate again, before QAT (which then keeps them float too) [0: never]. */
    int allow_float;
    int sensitivity_images;  /* images the analysis compares logits on [1000] */
} qat_quantize_opts;

typedef struct {
    qat_eval_result fp32, ptq, qat, int8;
    int qat_ran;             /* PTQ fell short and QAT fine-tuning ran */
    int qat_epochs;          /* epochs it ran */
    const char *chosen;      /* "ptq" or "qat": what was converted */
    float sim_accuracy;      /* the chosen model's accuracy (integer-exact simulation) */
    int agree, same_logits;  /* images whose INT8-runtime prediction / logits (bitwise) equal the simulation's */
    int64_t fp32_bytes, int8_bytes; /* FP32 parameters + BN buffers; the .q8 file */
    float target;            /* accuracy needed: fp32 - max_drop */
    int met;                 /* INT8 runtime accuracy >= target */
    int float_ran;           /* PTQ with allow_float layers in float ran (ptq_float) */
    qat_eval_result ptq_float;
    char float_layers[512];  /* the layers it left in float, comma-separated, most sensitive first */
} qat_quantize_report;

void qat_quantize_opts_default(qat_quantize_opts *o);
/* PTQ; QAT when the PTQ accuracy is below FP32 - max_drop (stopping once within it); convert;
 * verify with the INT8 runtime on the test split. Returns QAT_OK also when the target was
 * missed (r->met says); errors only for failures. */
qat_status qat_quantize_run(const qat_quantize_opts *o, qat_quantize_report *r);

#ifdef __cplusplus
}
#endif
#endif
