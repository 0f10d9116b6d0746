/* Stage 2 integration: a qat_model with fake-quant at every point the INT8 model quantizes.
 *
 *   qat_qconfig cfg;
 *   if (qat_qconfig_get("x86", &cfg)) die(qat_last_error());
 *   qat_qmodel *q;
 *   if (qat_qmodel_create(model, &cfg, QAT_QMODEL_QAT, &q)) die(qat_last_error());
 *   qat_tensor *logits = qat_qmodel_forward(q, &ctx, x);   // same records as qat_model_forward
 *   qat_qmodel_free(q);                                     // the model stays the caller's
 *
 * Quantization points (docs/quantization.md, "QAT model"): the model input, then per layer
 * the points its kind declares (qat_layer_desc.qpoints): each conv's weight (after simulated BN
 * folding) and its output (after the activation; the conv+BN output for project convs); each
 * residual add's output; the global pool's output (= the classifier's input); the classifier's
 * weight. The logits stay float (the INT8 model dequantizes them). One qat_qpoint per point
 * (fakequant/quant.h), and per layer the indices of its points.
 */
#ifndef QAT_QMODEL_H
#define QAT_QMODEL_H

#include "model.h"
#include "quant.h"

/* ---- the QAT / PTQ model (models/qmodel.c) ---------------------------------------------------- */

typedef enum {
    QAT_QMODEL_QAT = 0, /* activation observers: cfg.act_obs_qat */
    QAT_QMODEL_PTQ,     /* activation observers: the kind given to create (minmax / histogram) */
} qat_qmodel_mode;

/* A layer's quantization points: indices into qat_qmodel.points, -1 when it has none. */
typedef struct {
    int weight, out;
    int in;                       /* the point holding the value of the layer's input 0 */
    int is_float;                 /* left in float (spec quant=0, a per-layer qconfig) */
} qat_qlayer;

typedef struct {
    qat_model *model;             /* not owned */
    qat_qconfig cfg;
    qat_observer_kind act_obs;    /* the activation observer in use */
    int npoints;
    qat_qpoint *points;           /* every quantization point: [0] is the model input */
    qat_qlayer *layers;           /* (model->nlayers) */
    /* 1 (default): fold BN into the weight when the weight fake-quant is on, else plain conv+BN;
     * 2: always fold (tests); 0: never. */
    int fold_bn;
    int calibrating;              /* 1: observers also update when !ctx->training (PTQ) */
    int bn_frozen;                /* BN uses (and keeps) running statistics, even in training */
    int observers_frozen;         /* every range and qparam fixed */
    /* The freeze schedule in optimizer steps of the run (run->step before the step that first
     * runs frozen); -1 never. The training loop applies it (train/train.c, freeze_schedule). */
    int64_t freeze_bn_step, freeze_observer_step;
    /* Checkpoints of quant-state version 1 stored the schedule in epochs; the training loop
     * turns these into steps once it knows the steps per epoch (-1: none). */
    int legacy_freeze_bn_epoch, legacy_freeze_observer_epoch;
    int act_observers_paused;     /* 1: activation observers do not update (BN re-estimation);
                                   * weight observers still follow the weights */
    qat_tensor **trace;           /* non-NULL: forward stores each layer's output here (nlayers) */
    /* 1 (default): in eval mode (not calibrating, no trace) a convertible model is evaluated by
     * the integer-exact simulation of its INT8 model (export/export.h), so eval reports what the
     * INT8 runtime delivers; 0: the float fake-quant graph (training's arithmetic). */
    int exact_eval;
    /* cfg.lsq: a learned quantizer at every point (points[i].lsq), used once lsq_ready (before
     * that the observers calibrate, and qat_qmodel_lsq_start initialises the scales from them).
     * Scales and offsets live in one allocation like the model's params; lsq_segs for an
     * optimizer. */
    int lsq_ready;
    float lsq_lr_mult;            /* the quantizers' learning rate is the model's times this */
    float *lsq_params, *lsq_grads;
    int64_t nlsq;
    qat_param_seg *lsq_segs;
    int nlsq_segs;
} qat_qmodel;

/* act_obs is used in PTQ mode (QAT_OBS_MINMAX or QAT_OBS_HISTOGRAM); QAT mode ignores it. */
qat_status qat_qmodel_create(qat_model *m, const qat_qconfig *cfg, qat_qmodel_mode mode,
                             qat_observer_kind act_obs, qat_qmodel **out);
void qat_qmodel_free(qat_qmodel *q);

/* Same contract as qat_model_forward. In training mode observers (unless frozen) update; in
 * eval mode only while q->calibrating. */
qat_tensor *qat_qmodel_forward(qat_qmodel *q, qat_ctx *ctx, qat_tensor *x);

/* ---- float layers (a per-layer qconfig; models/layer_qconfig.c) -------------------------------
 * A float layer keeps its weight in float, and its output too when every reader of it is a float
 * layer; otherwise its output point stays quantized (PyTorch inserts the observer there likewise),
 * so INT8 neighbours always read u8 codes and convert can put a dequantize before the float layer
 * and a quantize after it. Only layers with a weight (conv, fc, linear) can be float. */

/* 1 when layer li runs in float. */
int qat_qmodel_layer_is_float(const qat_qmodel *q, int li);
/* Layer li in float (on = 1) or quantized (0); the points' keep_float follow. Set before
 * calibration or QAT (a point turned quantized starts with fake-quant on). QAT_ERR_ARG for a
 * layer without a weight. */
qat_status qat_qmodel_set_float(qat_qmodel *q, int li, int on);
/* Every weight layer whose name matches the glob `pattern` (fnmatch: *, ?, [...]) to `on`;
 * QAT_ERR_ARG naming `what` when nothing matches. *matched (optional): how many did. */
qat_status qat_qmodel_set_float_pattern(qat_qmodel *q, const char *pattern, int on,
                                        const char *what, int *matched);
/* The per-layer qconfig file (docs/quantization.md, "Mixed precision"): one rule a line,
 * "PATTERN float" or "PATTERN int8", '#' comments, later lines win. Errors name path:line. */
qat_status qat_qmodel_apply_layer_qconfig(qat_qmodel *q, const char *path);
/* A comma-separated list of patterns set to float (qat quantize --allow-float's choice). */
qat_status qat_qmodel_apply_float_list(qat_qmodel *q, const char *list, const char *what);
/* The float layers' names, comma-separated, into buf ("" when none). */
void qat_qmodel_float_names(const qat_qmodel *q, char *buf, size_t cap);

/* Turns every fake-quant on or off (off: the op returns its input, so with fold_bn == 1 the
 * forward equals qat_model_forward bit for bit). */
void qat_qmodel_enable_fake_quant(qat_qmodel *q, int on);
/* Fixes all ranges: qparams from the observers (which must have seen data), observers off. */
qat_status qat_qmodel_freeze_observers(qat_qmodel *q);
/* BN running statistics frozen and used instead of batch statistics (PyTorch freeze_bn_stats).
 * Freezing alone keeps the running statistics as they are: the training loop re-estimates them
 * first (qat_bn_reestimate_*), because an exponential average lags weights that still move. */
void qat_qmodel_freeze_bn(qat_qmodel *q);

/* cfg.lsq: initialises every learned quantizer from its observer's qparams (after a
 * calibration pass) and switches the forward to them. QAT_ERR_ARG for other qconfigs. */
qat_status qat_qmodel_lsq_start(qat_qmodel *q);
/* Zeroes the learned quantizers' gradients; after an optimizer step on lsq_params call
 * qat_qmodel_lsq_clamp (keeps every scale at or above its floor). */
void qat_qmodel_zero_grad(qat_qmodel *q);
void qat_qmodel_lsq_clamp(qat_qmodel *q);

/* Per layer, the SQNR in dB of its output with fake-quant against the same forward without
 * (eval mode, on x): 10 log10(sum y^2 / sum (yq - y)^2); +inf when equal. sqnr has nlayers
 * entries. Leaves fake-quant enabled. */
void qat_qmodel_sqnr(qat_qmodel *q, qat_ctx *ctx, qat_tensor *x, double *sqnr);

/* The "quant" checkpoint section: qconfig name, observer kind, flags, schedule, then every
 * point's fake-quant state in point order, then the learned scales and offsets. */
size_t qat_qmodel_state_bytes(const qat_qmodel *q);
void qat_qmodel_pack(const qat_qmodel *q, void *buf);
/* Builds a qmodel for m from a packed state (QAT_ERR_FORMAT / QAT_ERR_MISMATCH naming `path`
 * when it does not fit the model). */
qat_status qat_qmodel_unpack(qat_model *m, const void *buf, size_t bytes, const char *path,
                             qat_qmodel **out);

#endif
