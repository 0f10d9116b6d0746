/* The training loop, evaluation and checkpoints of `qat train` / `qat eval`. */
#ifndef QAT_TRAIN_H
#define QAT_TRAIN_H

#include "dataset.h"
#include "model.h"
#include "qmodel.h"
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
    qat_qmodel *qmodel;       /* PTQ / QAT runs: fake-quant state ("quant" section); else NULL */
    qat_optimizer qopt;       /* qconfig lsq: the learned quantizers' optimizer ("qoptim") */
    int has_qopt;
} qat_run;

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

typedef struct {
    qat_train_opts train;       /* data, out_dir, epochs, batch, lr, opt, sched, resume, ... */
    const char *ckpt;           /* FP32 checkpoint to start from (ignored with train.resume) */
    const char *qconfig;        /* ["x86"] */
    int freeze_bn_epoch;        /* epochs after which BN stats freeze; -1 never [1] */
    int freeze_observer_epoch;  /* epochs after which ranges freeze; -1 never [2] */
    float lsq_lr_mult;          /* qconfig lsq: quantizer lr = lr * this [0.01] */
} qat_qat_opts;

/* QAT defaults: 3 epochs, lr 0.01 cosine without warmup, no label smoothing change. */
void qat_qat_opts_default(qat_qat_opts *o);
/* Quantization-aware fine-tuning with the training loop of qat_train_run; metrics.jsonl lines
 * have phase "qat", checkpoints carry the "quant" section. */
qat_status qat_qat_run(const qat_qat_opts *o);

#endif
