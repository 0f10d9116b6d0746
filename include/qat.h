/* qat — quantization-aware training of MobileNet-style CNNs in C.
 *
 * Usage (train mbv2-tiny on Fashion-MNIST, then evaluate the best checkpoint):
 *
 *   qat_train_opts o;
 *   qat_train_opts_default(&o);
 *   o.data = "fashion-mnist";
 *   o.out_dir = "runs/fp32";
 *   if (qat_train_run(&o)) { fprintf(stderr, "%s\n", qat_last_error()); return 1; }
 *   qat_eval_result r;
 *   if (qat_checkpoint_evaluate("runs/fp32/best.ckpt", "fashion-mnist", &r)) return 1;
 *   printf("accuracy %.4f\n", r.accuracy);
 *
 * Every function that can fail returns a qat_status; qat_last_error() then names the file and
 * the problem in one line. Nothing in the library prints or exits.
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

/* Caps the graph memory of one training or evaluation step (activations, gradients, tape) at
 * `bytes`; a step that needs more fails with QAT_ERR_NOMEM, as does one for which malloc
 * fails. 0 (the default) = no cap. Process-wide, like the thread count. */
void qat_set_memory_limit(size_t bytes);

/* ---- datasets, specs, models (details in datasets/dataset.h, layers/spec.h, models/model.h) ----------------- */
typedef struct qat_dataset qat_dataset;
typedef struct qat_data_opts qat_data_opts;
typedef struct qat_spec qat_spec;
typedef struct qat_model qat_model;

/* path: "fashion-mnist", an IDX or CIFAR-10 folder, or a PNG ImageFolder root. */
qat_status qat_dataset_open(const char *path, const qat_data_opts *o, qat_dataset **train,
                            qat_dataset **test);
void qat_dataset_free(qat_dataset *d);
/* A preset name (mbv2-tiny, mbv1-tiny) or a spec file; format in docs/model-spec.md. */
qat_status qat_spec_load(const char *name_or_path, qat_spec **out);
void qat_spec_free(qat_spec *s);

/* ---- training --------------------------------------------------------------------------- */
typedef enum { QAT_OPT_SGD, QAT_OPT_ADAMW, QAT_OPT_COUNT } qat_opt_kind;
typedef enum {
    QAT_SCHED_CONSTANT,
    QAT_SCHED_STEP,
    QAT_SCHED_COSINE,   /* linear warmup, then cosine */
    QAT_SCHED_ONECYCLE, /* PyTorch OneCycleLR */
    QAT_SCHED_COUNT
} qat_sched_kind;

typedef struct {
    const char *data;        /* dataset path or name */
    const char *model;       /* preset name or spec path */
    const char *out_dir;     /* checkpoints and metrics.jsonl */
    const char *resume;      /* checkpoint to continue from, or NULL */
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
    int quiet;               /* no progress output */
    int json;                /* final summary as one JSON object on stdout */
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
} qat_train_opts;

#define QAT_FREEZE_AUTO (-1.0f)
#define QAT_FREEZE_NEVER (-2.0f)
#define QAT_BN_REESTIMATE_BATCHES 64

/* Defaults that train mbv2-tiny on Fashion-MNIST to >92.5% test accuracy; the augmentation
 * follows the dataset (crop_pad, hflip -1). */
void qat_train_opts_default(qat_train_opts *o);
/* Trains (or resumes) and writes out_dir/{last,best}.ckpt and out_dir/metrics.jsonl. */
qat_status qat_train_run(const qat_train_opts *o);

typedef struct {
    float accuracy, loss;
    int n;
    double seconds;
} qat_eval_result;

/* Evaluates a model on the whole dataset (eval mode, no grad), normalising inputs with
 * mean/std (one value per channel). */
qat_status qat_evaluate(qat_model *m, const qat_dataset *d, const float *mean, const float *std,
                        int eval_batch, qat_eval_result *res);
/* Loads a checkpoint and evaluates it on the test split of `data`. */
qat_status qat_checkpoint_evaluate(const char *ckpt, const char *data, qat_eval_result *res);

#ifdef __cplusplus
}
#endif
#endif
