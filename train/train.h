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
    /* An ImageFolder's class (folder) names, model->nclasses of them ("classes"), or NULL when
     * the dataset had only numbers ("0".."9" of IDX/CIFAR). */
    char (*class_names)[QAT_Q8_CLASS_NAME_MAX];
} qat_run;

/* The dataset's class names when they say more than the class numbers, copied into r (a run
 * that has names keeps them). */
qat_status qat_run_take_class_names(qat_run *r, const qat_dataset *d);

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
/* The run directory (train/run_dir.c). qat_run_dir_lock takes an exclusive flock on DIR/run.lock
 * (one line naming the holder's pid when another run has it) and writes our pid there;
 * qat_run_dir_unlock(fd) releases it (fd < 0: nothing). qat_run_dir_clean removes the
 * *.ckpt.tmp.* files a killed checkpoint write left; qat_metrics_truncate drops the epoch lines
 * of DIR/metrics.jsonl past step (and a line cut short). */
qat_status qat_run_dir_lock(const char *dir, int *fd);
void qat_run_dir_unlock(int fd);
qat_status qat_run_dir_clean(const char *dir, int *removed);
qat_status qat_metrics_truncate(const char *dir, int64_t step, int *dropped);
/* Every value of r finite, BN running variances >= 0, the input normalisation's std > 0
 * (QAT_ERR_NUMERIC / QAT_ERR_FORMAT naming path otherwise): what qat_checkpoint_save demands
 * before it writes and qat_checkpoint_load before it returns. */
qat_status qat_run_check_state(const qat_run *r, const char *path);
/* Loads a checkpoint into a new run: the model is rebuilt from the spec stored in the file. */
qat_status qat_checkpoint_load(const char *path, qat_run *r);
void qat_run_free(qat_run *r);

/* The network a run trains or evaluates: qat_qmodel_forward when r->qmodel, else the model. */
qat_tensor *qat_run_forward(qat_run *r, qat_ctx *ctx, qat_tensor *x);
/* The evaluation loop of every network kind: fwd(net, ctx, x) gives logits (NULL with the
 * error set on failure) for normalised test batches of d. logits_out (optional) gets the
 * logits of every image in dataset order (d->n * classes floats). */
typedef qat_tensor *(*qat_forward_fn)(void *net, qat_ctx *ctx, qat_tensor *x);
/* Where a long loop reports its batches (QAT_EVENT_PROGRESS with text `what`); a NULL
 * qat_progress, or one with no fn, reports nothing. */
typedef struct {
    qat_event_fn fn;
    void *user;
    const char *what;
} qat_progress;
/* Reports batch `done` (1-based) of `total`, images so far, since t0 (qat_now()). */
void qat_progress_report(const qat_progress *p, int done, int total, int64_t images, double t0);
qat_status qat_evaluate_net(qat_forward_fn fwd, void *net, const qat_dataset *d, const float *mean,
                            const float *std, int eval_batch, qat_eval_result *res, float *logits_out,
                            const qat_progress *p);
/* qat_evaluate of the run's network (fake-quant when r->qmodel); p may be NULL. Under mpirun
 * every rank must call it (each evaluates its share of the batches, the counts are summed). */
qat_status qat_run_evaluate(qat_run *r, const qat_dataset *d, int eval_batch, qat_eval_result *res,
                            const qat_progress *p);

/* ---- internals of the entry points of include/qat.h -------------------------------------------- */

/* Runs up to n shuffled batches of d through r->qmodel in eval mode with observers on and
 * fake-quant off (the calibration of PTQ, and of the LSQ scales before QAT). */
/* The PTQ observer of a name and its settings, checked (QAT_ERR_ARG names the bad one). */
qat_status qat_ptq_check_observer(const char *name, float percentile, float averaging_constant,
                                  qat_observer_kind *kind, qat_hist_method *method);
/* The layers left in float by a per-layer qconfig file and a list of patterns (either NULL). */
qat_status qat_apply_float_choices(qat_qmodel *q, const char *layer_qconfig, const char *float_layers,
                                   const char *what);
qat_status qat_calibrate(qat_run *r, const qat_dataset *d, int batch, int n, const qat_progress *p);

/* Loads a PTQ/QAT checkpoint and builds its INT8 model (export/export.h) with the run's input
 * normalisation; writes it to out (atomically, .q8 format) when out != NULL, and hands the
 * model over in *model when model != NULL (free with qat_q8_free). An FP32 checkpoint gets
 * QAT_ERR_ARG saying to run ptq/qat first. */
qat_status qat_convert_checkpoint(const char *ckpt, const char *out, qat_q8_model **model);

#endif
