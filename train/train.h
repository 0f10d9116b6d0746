/* The training loop, evaluation and checkpoints of `qat train` / `qat eval`. */
#ifndef QAT_TRAIN_H
#define QAT_TRAIN_H

#include "dataset.h"
#include "model.h"
#include "optim.h"
#include "spec.h"
#include "ops.h"

typedef struct {
    const char *data;        /* dataset path or name */
    const char *model;       /* preset name or spec path */
    const char *out_dir;     /* checkpoints and metrics.jsonl */
    const char *resume;      /* checkpoint to continue from, or NULL */
    int epochs, batch, threads;
    int64_t max_steps;       /* stop after this many steps in total (0 = no limit) */
    float lr, weight_decay, momentum, label_smoothing, width, dropout;
    float warmup_epochs;
    float val_split;         /* ImageFolder without train/ test/: fraction held out */
    qat_opt_kind opt;
    qat_sched_kind sched;
    uint64_t seed;
    int crop_pad, hflip;     /* augmentation */
    int eval_batch;
    int quiet;               /* no progress output */
    int json;                /* final summary as one JSON object on stdout */
} qat_train_opts;

void qat_train_opts_default(qat_train_opts *o);

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
} qat_run;

/* Summary of an evaluation pass. */
typedef struct {
    float accuracy, loss;
    int n;
    double seconds;
} qat_eval_result;

qat_status qat_train_run(const qat_train_opts *o);
/* Evaluates `model` on the whole dataset (no grad, eval mode, batches of eval_batch). */
qat_status qat_evaluate(qat_model *m, const qat_dataset *d, const float *mean, const float *std,
                        int eval_batch, qat_eval_result *res);

/* Checkpoints: spec text, shapes, params, BN buffers, optimizer, schedule, step/epoch, RNG. */
qat_status qat_checkpoint_save(const char *path, const qat_run *r);
/* Loads a checkpoint into a new run: the model is rebuilt from the spec stored in the file. */
qat_status qat_checkpoint_load(const char *path, qat_run *r);
void qat_run_free(qat_run *r);

#endif
