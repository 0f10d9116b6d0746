/* The training loop, evaluation and checkpoints of `qat train` / `qat eval`. */
#ifndef QAT_TRAIN_H
#define QAT_TRAIN_H

#include "dataset.h"
#include "model.h"
#include "qmodel.h"
#include "optim.h"
#include "spec.h"
#include "ops.h"
#include "export.h"

/* Default evaluation batch: every op output of a batch lives in the eval arena, so 128 images
 * keep evaluation under ~0.3 GB where 500 took ~1 GB, and run faster (measured: 1.7 s vs 2.3 s
 * for the 10,000 Fashion-MNIST test images, 2 threads). */
#define QAT_EVAL_BATCH 128

/* What a training run feeds the network and how it steps, said once (train/pipeline.c): the
 * start-of-training line, the first line of metrics.jsonl ({"phase": "config", ...}) and the
 * checkpoint's "data" section, which stores this record as-is (little-endian, layout pinned:
 * fields are only ever appended; docs/formats.md). */
#define QAT_PIPELINE_CROP_GIVEN 1 /* augment_given: crop padding set by an option */
#define QAT_PIPELINE_FLIP_GIVEN 2 /* augment_given: flips set by an option */
typedef struct {
    char phase[8];            /* "fp32" or "qat" */
    char kind[16];            /* qat_dataset.kind: what picked the default augmentation */
    char data[256];           /* --data as given (truncated to 255 bytes) */
    int32_t train_n, test_n;  /* images */
    float val_split;          /* qat_dataset.val_split: > 0 the test split is held out of the folder */
    uint32_t pad0;
    uint64_t split_seed;      /* the seed of that split (--seed of this run) */
    int32_t h, w, c, nclasses;
    float mean[4], std[4];    /* normalisation, c values used */
    int32_t crop_pad, hflip;  /* augmentation in force */
    int32_t augment_given;    /* QAT_PIPELINE_*_GIVEN bits; the rest is the dataset kind's default */
    float label_smoothing;
    int32_t batch, steps_per_epoch;
    int64_t total_steps, start_step; /* of the schedule; the step this run (re)started at */
    int32_t opt, sched;       /* qat_opt_kind, qat_sched_kind */
    float lr;                 /* peak (base) learning rate */
    uint32_t pad1;
    int64_t warmup_steps;     /* cosine warmup (0 for the other schedules) */
} qat_pipeline;

/* Everything one training run holds; also what a checkpoint restores. */
typedef struct {
    qat_spec *spec;
    qat_model *model;
    qat_optimizer opt;
    qat_sched sched;
    int has_opt;
    qat_rng rng;              /* dropout and anything else random during a step */
    int64_t step;             /* optimizer steps taken */
    int epoch;                /* epochs completed */
    float best_acc;
    float mean[4], std[4];    /* input normalisation the model was trained with */
    uint64_t seed;
    qat_qmodel *qmodel;       /* PTQ / QAT runs: fake-quant state ("quant" section); else NULL */
    qat_optimizer qopt;       /* qconfig lsq: the learned quantizers' optimizer ("qoptim") */
    int has_qopt;
    qat_pipeline pipeline;    /* how the last training of these weights fed them ("data") */
    int has_pipeline;         /* 0: a checkpoint written before qat recorded it */
} qat_run;

/* Fills p for a run about to train on train/test: augmentation from o (crop_pad, hflip; -1 takes
 * qat_augment_default of the dataset kind), normalisation, optimizer and schedule from r.
 * QAT_ERR_ARG naming the option for values that do not fit (crop padding not smaller than the
 * image, label smoothing outside [0, 1)). */
qat_status qat_pipeline_init(qat_pipeline *p, const qat_train_opts *o, const char *phase,
                             const qat_dataset *train, const qat_dataset *test, const qat_run *r,
                             int steps_per_epoch);
/* One line, no newline: "data: imagefolder DIR, 540 train / 60 test (val-split 0.1, seed 1),
 * 28x28x1, 10 classes, normalise mean 0.286 std 0.353; augment: crop-pad 2, no flip
 * (imagefolder defaults); label smoothing 0.05; 4 epochs x 4 steps of 128 (sgd, lr onecycle
 * peak 0.1)". */
void qat_pipeline_describe(const qat_pipeline *p, char *buf, size_t size);
/* The same as one flat JSON object, no newline: {"phase": "config", "run": "fp32", ...}. */
void qat_pipeline_json(const qat_pipeline *p, char *buf, size_t size);
/* A setting that misleads on this run (see the function), as one line "warning: ...", or "". */
void qat_pipeline_warning(const qat_pipeline *p, char *buf, size_t size);

/* Checkpoints: spec text, shapes, params, BN buffers, optimizer, schedule, step/epoch, RNG. */
qat_status qat_checkpoint_save(const char *path, const qat_run *r);
/* Loads a checkpoint into a new run: the model is rebuilt from the spec stored in the file. */
qat_status qat_checkpoint_load(const char *path, qat_run *r);
void qat_run_free(qat_run *r);
/* qat_checkpoint_evaluate with the ImageFolder split and batch size given. */
qat_status qat_checkpoint_evaluate_split(const char *ckpt, const char *data, float val_split,
                                         int eval_batch, qat_eval_result *res);

/* The network a run trains or evaluates: qat_qmodel_forward when r->qmodel, else the model. */
qat_tensor *qat_run_forward(qat_run *r, qat_ctx *ctx, qat_tensor *x);
/* The evaluation loop of every network kind: fwd(net, ctx, x) gives logits (NULL with the
 * error set on failure) for normalised test batches of d. logits_out (optional) gets the
 * logits of every image in dataset order (d->n * classes floats). */
typedef qat_tensor *(*qat_forward_fn)(void *net, qat_ctx *ctx, qat_tensor *x);
qat_status qat_evaluate_net(qat_forward_fn fwd, void *net, const qat_dataset *d, const float *mean,
                            const float *std, int eval_batch, qat_eval_result *res, float *logits_out);
/* qat_evaluate of the run's network (fake-quant when r->qmodel). */
qat_status qat_run_evaluate(qat_run *r, const qat_dataset *d, int eval_batch, qat_eval_result *res);

/* ---- stage 2: `qat ptq` and `qat qat` (train/ptq.c, train/train.c) ----------------------------- */

typedef struct {
    const char *ckpt;           /* FP32 checkpoint */
    const char *data;
    const char *qconfig;        /* preset name ["x86"] */
    const char *observer;       /* activation observer: "minmax" or "histogram" [minmax] */
    const char *out;            /* PTQ checkpoint to write */
    int calib_batches;          /* [32] */
    int batch;                  /* calibration batch size [128] */
    int eval_batch;             /* [500] */
    float val_split;
    int threads;
} qat_ptq_opts;

void qat_ptq_opts_default(qat_ptq_opts *o);
/* Runs up to n shuffled batches of d through r->qmodel in eval mode with observers on and
 * fake-quant off (the calibration of PTQ, and of the LSQ scales before QAT). */
qat_status qat_calibrate(qat_run *r, const qat_dataset *d, int batch, int n);
/* Loads, calibrates (train split, eval mode, no augmentation), freezes, evaluates FP32 and
 * fake-quant accuracy on the test split and writes o->out (FP32 params + "quant" section). */
qat_status qat_ptq_run(const qat_ptq_opts *o, qat_eval_result *fp32, qat_eval_result *quant);

/* `qat inspect`: per layer of a PTQ/QAT checkpoint the output qparams, the weight scales and
 * range, and the SQNR of the output with fake-quant against FP32 on the first `batch` test
 * images. *report is a malloc'd table (free it). */
qat_status qat_inspect(const char *ckpt, const char *data, float val_split, int batch,
                       char **report);
/* Per layer (model order, the rows of the report): module path and SQNR in dB, +inf for a
 * layer whose fake-quant output equals the FP32 one. */
typedef struct {
    int n;
    char (*names)[QAT_LAYER_NAME_MAX];
    double *sqnr_db;
} qat_layer_sqnr;
/* qat_inspect that also fills *layers (when not NULL; free with qat_layer_sqnr_free). */
qat_status qat_inspect_with_sqnr(const char *ckpt, const char *data, float val_split, int batch,
                                 char **report, qat_layer_sqnr *layers);
void qat_layer_sqnr_free(qat_layer_sqnr *s);
/* The SQNR of each layer as a bar chart PNG (layer names below, dB up; +inf bars capped and
 * marked "inf"); ckpt only names the chart. */
qat_status qat_plot_layer_sqnr(const char *path, const char *ckpt, const qat_layer_sqnr *s);

typedef struct {
    qat_train_opts train;       /* data, out_dir, epochs, batch, lr, opt, sched, resume, ... */
    const char *ckpt;           /* FP32 checkpoint to start from (ignored with train.resume) */
    const char *qconfig;        /* ["x86"] (the freeze schedule: train.freeze_*_epochs) */
    float lsq_lr_mult;          /* qconfig lsq: quantizer lr = lr * this [0.01] */
} qat_qat_opts;

/* QAT defaults: 3 epochs, lr 0.01 cosine without warmup, no label smoothing change. */
void qat_qat_opts_default(qat_qat_opts *o);
/* Quantization-aware fine-tuning with the training loop of qat_train_run; metrics.jsonl lines
 * have phase "qat", checkpoints carry the "quant" section. */
qat_status qat_qat_run(const qat_qat_opts *o);

/* ---- stage 3: `qat convert` (train/convert.c) -------------------------------------------------- */

/* Loads a PTQ/QAT checkpoint and builds its INT8 model (export/export.h) with the run's input
 * normalisation; writes it to out (atomically, .q8 format) when out != NULL, and hands the
 * model over in *model when model != NULL (free with qat_q8_free). An FP32 checkpoint gets
 * QAT_ERR_ARG saying to run ptq/qat first. */
qat_status qat_convert_checkpoint(const char *ckpt, const char *out, qat_q8_model **model);

/* ---- stage 4: `qat quantize` (train/quantize.c) --------------------------------------------------- */

typedef struct {
    const char *ckpt;        /* FP32 checkpoint */
    const char *data;
    const char *out;         /* INT8 model file to write */
    const char *work_dir;    /* PTQ checkpoint and QAT run go here [<out>.work] */
    const char *qconfig;     /* [x86] */
    const char *observer;    /* PTQ activation observer [histogram] */
    const char *backend;     /* INT8 runtime backend of the verification [auto] */
    float max_drop;          /* accepted accuracy drop vs FP32, in points [0.5] */
    int qat_epochs;          /* most QAT epochs when PTQ falls short [3] */
    int calib_batches;       /* [32] */
    int threads;
    float val_split;
    int quiet;
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
} qat_quantize_report;

void qat_quantize_opts_default(qat_quantize_opts *o);
/* PTQ; QAT when the PTQ accuracy is below FP32 - max_drop (stopping once within it); convert;
 * verify with the INT8 runtime on the test split. Returns QAT_OK also when the target was
 * missed (r->met says); errors only for failures. */
qat_status qat_quantize_run(const qat_quantize_opts *o, qat_quantize_report *r);

#endif
