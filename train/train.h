/* The training loop, evaluation and checkpoints of `qat train` / `qat eval`. */
#ifndef QAT_TRAIN_H
#define QAT_TRAIN_H

#include "dataset.h"
#include "model.h"
#include "optim.h"
#include "spec.h"
#include "ops.h"

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

/* Checkpoints: spec text, shapes, params, BN buffers, optimizer, schedule, step/epoch, RNG. */
qat_status qat_checkpoint_save(const char *path, const qat_run *r);
/* Loads a checkpoint into a new run: the model is rebuilt from the spec stored in the file. */
qat_status qat_checkpoint_load(const char *path, qat_run *r);
void qat_run_free(qat_run *r);
/* qat_checkpoint_evaluate with the ImageFolder split and batch size given. */
qat_status qat_checkpoint_evaluate_split(const char *ckpt, const char *data, float val_split,
                                         int eval_batch, qat_eval_result *res);

#endif
