/* The quantizer state of qat: how the parameters of the arithmetic in kernels/qmath.h are
 * chosen and kept — quantization schemes, qparams from a range, observers, the observer-driven
 * quantizer of one quantization point (qat_fq) and the learned one (qat_lsq, LSQ / LSQ+), and
 * the qconfig presets that say which a model uses where. Plain data and their lifecycle: the
 * ops that apply a quantizer to a tensor (fake-quant, LSQ, BN with a fused fake-quant) are in
 * autograd/ops.h. docs/quantization.md states every formula used here.
 *
 * Usage (QAT of one NHWC activation, u8 affine, moving-average observer):
 *
 *   qat_qscheme s = {.bits = 8, .is_signed = 0, .axis = -1};
 *   qat_fq fq;
 *   if (qat_fq_init(&fq, &s, QAT_OBS_MOVING_AVG, 1, "block3.out")) return qat_last_error();
 *   // every step: observe x, recompute scale/zero point, y = fake_quantize(x); STE backward
 *   qat_tensor *y = qat_fakequant(ctx, x, &fq);                   // autograd/ops.h
 *   // after some epochs freeze the ranges: fq.observer_enabled = 0;
 *   // convert: fq.scale[c], fq.zero_point[c] are exactly what the INT8 model must use
 *   qat_fq_free(&fq);
 *
 * Layouts: activations NHWC, channel axis last (axis = -1); weights OHWI or (out, in), channel
 * axis first (axis = 0). A tensor is seen as (outer, C, inner) around its channel axis.
 */
#ifndef QAT_QUANT_H
#define QAT_QUANT_H

#include "base.h"
#include "fq.h"
#include "qmath.h"
#include <stddef.h>
#include <stdint.h>

/* ---- schemes and qparams (fakequant/qparams.c) ---------------------------------------------- */

typedef struct {
    int bits;          /* 2..8 */
    int is_signed;     /* signed: [-2^(b-1), 2^(b-1)-1]; unsigned: [0, 2^b-1] */
    int symmetric;     /* zero point fixed (0 signed, (qmin+qmax+1)/2 unsigned), scale from max|x| */
    int narrow_range;  /* drop the lowest code: s8 [-127, 127], u8 [1, 255] */
    int per_channel;   /* one scale/zero point per slice along `axis` */
    int axis;          /* channel axis when per_channel; negative counts from the end (-1 = last) */
} qat_qscheme;

/* PyTorch's floor on the scale (float32 epsilon): a zero range (an observer that saw only
 * zeros) gives scale = eps and zero point qmin (affine) or the symmetric zero point, so every
 * value it saw is represented exactly. */
#define QAT_QPARAMS_EPS 1.1920929e-07f

/* QAT_ERR_ARG (with the reason) unless bits is 2..8 and the flags are 0/1. */
qat_status qat_qscheme_check(const qat_qscheme *s);
/* Integer range of a valid scheme. */
void qat_qscheme_range(const qat_qscheme *s, int32_t *qmin, int32_t *qmax);
/* The zero point of a symmetric scheme: 0 signed, (qmin + qmax + 1) / 2 unsigned (128 for u8).
 * Also the fixed zero point of LSQ (0 for any signed or affine scheme). */
int32_t qat_qscheme_symmetric_zp(const qat_qscheme *s);

/* THE function that turns an observed range into qparams (PTQ, QAT and convert all call it).
 * PyTorch semantics: the range is first extended to contain 0;
 *   affine:    scale = (max - min) / (qmax - qmin), zp = clamp(qmin - round(min / scale))
 *   symmetric: scale = max(-min, max) / ((qmax - qmin) / 2), zp = qat_qscheme_symmetric_zp
 * scale is floored at QAT_QPARAMS_EPS. Errors: bad scheme -> QAT_ERR_ARG; NaN/inf bound or an
 * infinite scale -> QAT_ERR_NUMERIC; min > max -> QAT_ERR_ARG. Outputs untouched on error. */
qat_status qat_qparams_from_range(const qat_qscheme *s, float min, float max, float *scale,
                                  int32_t *zero_point);
/* Per channel: the same function over n ranges (stops at the first failing channel). */
qat_status qat_qparams_from_ranges(const qat_qscheme *s, int n, const float *min,
                                   const float *max, float *scale, int32_t *zero_point);

/* A tensor of `shape` seen as (outer, channels, inner) around the scheme's channel axis
 * (qat_qlayout, kernels/fq.h); per-tensor schemes give (1, 1, numel). QAT_ERR_SHAPE if the axis
 * is outside the shape. */
qat_status qat_qlayout_of(const qat_qscheme *s, int ndim, const int *shape, qat_qlayout *l);

/* ---- observers (fakequant/observer.c, fakequant/histogram.c) ------------------------------ */

typedef enum {
    QAT_OBS_MINMAX = 0,   /* running min/max over every batch */
    QAT_OBS_MOVING_AVG,   /* min/max moving average, first batch taken as is (PyTorch) */
    QAT_OBS_HISTOGRAM,    /* 2048-bin histogram + clipping search (per-tensor only) */
    QAT_OBS_KIND_COUNT
} qat_observer_kind;

typedef enum {
    QAT_HIST_MSE = 0,     /* range minimising the expected squared error (quantization + clip) */
    QAT_HIST_PERCENTILE,  /* [q(1-p), q(p)] quantiles of the histogram */
} qat_hist_method;

#define QAT_HIST_BINS 2048
#define QAT_OBS_AVERAGING_CONSTANT 0.01f

/* Plain data (no pointers into itself); checkpoints use qat_observer_pack/unpack. */
typedef struct {
    qat_observer_kind kind;
    const char *name;        /* for messages ("observer <name> saw no data") */
    int per_channel, axis;   /* from the scheme at init */
    int nchannels;           /* 1 per-tensor */
    int enabled;             /* 0: qat_observer_update is a no-op */
    int frozen;              /* 1: ranges fixed; update is a no-op whatever `enabled` says */
    int64_t seen;            /* batches observed (empty tensors do not count) */
    float averaging_constant;/* moving average c: new = old + c * (batch - old); 0.01 */
    float *min_val, *max_val;/* (nchannels) running range; valid when seen > 0 */
    /* histogram */
    qat_hist_method method;
    float percentile;        /* for QAT_HIST_PERCENTILE, in percent: 99.99 */
    double *hist;            /* (QAT_HIST_BINS) counts; bin k = [lo + k*width, lo + (k+1)*width) */
    double hist_lo, hist_width;
    double zeros;            /* exact zeros seen: they quantize without error (ReLU outputs) */
} qat_observer;

/* The PTQ observer named on the command line ("minmax", "histogram"), or QAT_ERR_ARG naming
 * it and listing the known ones. */
qat_status qat_observer_parse(const char *name, qat_observer_kind *kind);

/* nchannels must be 1 for per-tensor schemes; histogram observers are per-tensor only. */
qat_status qat_observer_init(qat_observer *o, qat_observer_kind kind, const qat_qscheme *s,
                             int nchannels, const char *name);
void qat_observer_free(qat_observer *o);
/* Forgets all statistics (flags are kept). */
void qat_observer_reset(qat_observer *o);
/* Observes one batch x of `shape`. NaN/inf in x -> QAT_ERR_NUMERIC and the batch is ignored;
 * channel count != nchannels -> QAT_ERR_SHAPE. No-op when disabled or frozen. */
qat_status qat_observer_update(qat_observer *o, const float *x, int ndim, const int *shape);
/* qat_observer_update of a batch whose per-channel min, max and NaN count the caller computed
 * as qat_minmax does (fused passes that never store the observed tensor); not for histograms. */
qat_status qat_observer_update_minmax(qat_observer *o, const float *bmin, const float *bmax,
                                      int64_t nan);
/* The chosen range per channel (min/max; histogram: the MSE or percentile search). An observer
 * that saw nothing -> QAT_ERR_ARG "observer <name> saw no data". */
qat_status qat_observer_range(const qat_observer *o, const qat_qscheme *s, float *lo, float *hi);
/* qat_qparams_from_range of that range, per channel (arrays of nchannels). */
qat_status qat_observer_qparams(const qat_observer *o, const qat_qscheme *s, float *scale,
                                int32_t *zero_point);
/* Checkpoint state as a flat byte array: a header (kind, channels, bins) checked on unpack
 * (QAT_ERR_MISMATCH for another observer, QAT_ERR_FORMAT for a bad size), then the flags,
 * counts, ranges and histogram. */
size_t qat_observer_state_bytes(const qat_observer *o);
void qat_observer_pack(const qat_observer *o, void *buf);
qat_status qat_observer_unpack(qat_observer *o, const void *buf, size_t bytes);

/* Histogram internals (histogram.c), called by observer.c. */
qat_status qat_hist_update(qat_observer *o, const float *x, int64_t n, float bmin, float bmax);
qat_status qat_hist_range(const qat_observer *o, const qat_qscheme *s, float *lo, float *hi);

/* qat_fq_consts_fill (kernels/fq.h) for the integer range of scheme s. */
void qat_fq_consts_of(qat_fq_consts *k, const qat_qscheme *s, int C, const float *scale,
                      const int32_t *zero_point, float *work);

/* ---- the observer-driven quantizer (fakequant/quantizer.c) ---------------------------------- */

typedef struct {
    const char *name;
    qat_qscheme scheme;
    qat_observer obs;
    int nchannels;            /* 1 per-tensor */
    float *scale;             /* (nchannels) current qparams; 1.0 until the observer saw data */
    int32_t *zero_point;      /* (nchannels); symmetric zero point (0 affine) until then */
    int fake_quant_enabled;   /* 0: the op returns its input itself (bitwise identity) */
    int observer_enabled;     /* 0: statistics and qparams stay fixed (obs.enabled/frozen too) */
    int qparams_dirty;        /* observer updated since scale/zero_point were computed */
    int64_t skipped;          /* batches the observer refused (NaN/inf); see qat_last_error() */
} qat_fq;

qat_status qat_fq_init(qat_fq *fq, const qat_qscheme *s, qat_observer_kind kind, int nchannels,
                       const char *name);
void qat_fq_free(qat_fq *fq);
/* scale/zero_point from the observer (end of PTQ calibration; the forward does it itself). */
qat_status qat_fq_compute_qparams(qat_fq *fq);
/* Sets qparams by hand (zero points must lie in [qmin, qmax], scales finite and > 0). */
qat_status qat_fq_set_qparams(qat_fq *fq, const float *scale, const int32_t *zero_point);
/* Checkpoint state: flags, qparams and the observer's state. */
size_t qat_fq_state_bytes(const qat_fq *fq);
void qat_fq_pack(const qat_fq *fq, void *buf);
qat_status qat_fq_unpack(qat_fq *fq, const void *buf, size_t bytes);

/* ---- LSQ / LSQ+ (fakequant/lsq.c) ---------------------------------------------------------------- */

/* Learnable step size (Esser et al. 2020) and, with plus = 1, learnable offset (Bhalgat et al.
 * 2020). The forward is qat_fake_quantize with scale s and zero point
 *   LSQ:  zp = qat_qscheme_symmetric_zp (0 for signed and affine schemes),
 *   LSQ+: zp = clamp(round(-beta / s), qmin, qmax), i.e. y = s * clamp(round((x - beta_q) / s))
 *         + beta_q with beta_q = -zp * s: the paper's offset snapped to the integer grid, so the
 *         simulated values are what the INT8 model computes.
 * Gradients (v = x / s, code q - zp; g the gradient scale):
 *   dx    = dy inside, 0 clipped
 *   ds    = g * sum dy * (round(v) - v inside; lo or hi clipped [LSQ], qmin or qmax [LSQ+])
 *   dbeta = g * sum dy * (0 inside; 1 clipped)
 * g = 1 / sqrt(N * qmax), N = elements per scale: numel / nchannels, divided further by the
 * batch size for activations (per_example = 1). */
typedef struct {
    const char *name;
    qat_qscheme scheme;
    int plus;                 /* 1: LSQ+ with the learnable offset */
    int nchannels;
    float *scale, *scale_grad;   /* (nchannels) learned scale and its gradient (NULL: none),
                                  * owned by the caller (a model keeps them in one allocation) */
    float *offset, *offset_grad; /* (nchannels) LSQ+ beta and its gradient; NULL for LSQ */
    int per_example;          /* 1 for activations (N counts one example), 0 for weights */
    float grad_scale;         /* > 0: use this g instead of 1 / sqrt(N * qmax) */
    float scale_floor;        /* the forward and qat_lsq_clamp_scale keep s >= this */
    int fake_quant_enabled;   /* 0: the op returns its input itself */
} qat_lsq;

/* scale (and offset for plus) have nchannels elements; nchannels == 1 unless per-channel. The
 * op accumulates into the gradient arrays. scale_floor defaults to QAT_QPARAMS_EPS. */
qat_status qat_lsq_init(qat_lsq *q, const qat_qscheme *s, int plus, int nchannels, float *scale,
                        float *scale_grad, float *offset, float *offset_grad, int per_example,
                        const char *name);
/* s = 2 * mean|x| / sqrt(qmax) per channel (the LSQ paper's init; meant for weights), beta = 0.
 * A channel of zeros gets the floor. */
qat_status qat_lsq_init_from_data(qat_lsq *q, const float *x, int ndim, const int *shape);
/* s = scale[c], beta = -zero_point[c] * s: start from an observer's qparams (activations). */
qat_status qat_lsq_init_from_qparams(qat_lsq *q, const float *scale, const int32_t *zero_point);
/* After each optimizer step: s = max(s, scale_floor) (NaN also becomes the floor). */
void qat_lsq_clamp_scale(qat_lsq *q);
/* The qparams the forward uses now (for convert): scale[c] = max(s, floor), zp as above. */
void qat_lsq_qparams(const qat_lsq *q, float *scale, int32_t *zero_point);
/* Channel c's of the same, with inv = 1.0f / scale (qmin/qmax: the scheme's range). */
void qat_lsq_channel(const qat_lsq *q, int c, int32_t qmin, int32_t qmax, float *scale,
                     float *inv, int32_t *zp);

/* ---- the quantization point (fakequant/qpoint.c) --------------------------------------------- */

#define QAT_QPOINT_NAME_MAX 64

/* One place of a model where values are quantized (the model input, a layer's weight, a layer's
 * output), with everything that quantizes there: one struct per point, so the quantizer, its
 * name and its flags cannot get out of step. */
typedef struct {
    char name[QAT_QPOINT_NAME_MAX]; /* "input", "features.3.body.1.weight_fq", "pool.out_fq", ... */
    int weight;                /* 1: weights, observed alone (observer reset before each update,
                                * so the range is that of the weights now); 0: activations */
    int keep_float;            /* the spec's quant=0: fake-quant stays off at this point */
    qat_fq fq;                 /* the observer-driven quantizer (calibration, fixed-qparams QAT) */
    qat_lsq lsq;               /* the learned quantizer (qconfig lsq), once the model has one */
} qat_qpoint;

/* The point's quantizer (qat_fq_init) under its name; lsq stays empty until qat_lsq_init. */
qat_status qat_qpoint_init(qat_qpoint *p, const char *name, int weight, const qat_qscheme *s,
                           qat_observer_kind kind, int nchannels);
void qat_qpoint_free(qat_qpoint *p);
/* Whether the quantizer in use (the learned one when lsq) fake-quantizes. */
int qat_qpoint_on(const qat_qpoint *p, int lsq);
/* Turns fake-quant on or off for both quantizers (never on at a keep_float point). */
void qat_qpoint_enable(qat_qpoint *p, int on);
/* The qparams the forward uses now: the learned quantizer's when lsq, else the observer's
 * (computed first when the observer has news). scale/zp have fq.nchannels entries. */
qat_status qat_qpoint_qparams(qat_qpoint *p, int lsq, float *scale, int32_t *zero_point);
/* Fixes the range: qparams from the observer (which must have seen data), observer off. */
qat_status qat_qpoint_freeze(qat_qpoint *p);

/* ---- qconfig presets (fakequant/qconfig.c) ------------------------------------------------------ */

#define QAT_QCONFIG_NAME_MAX 16

typedef struct {
    char name[QAT_QCONFIG_NAME_MAX];
    qat_qscheme act;              /* activations (and the model input), per-tensor */
    qat_qscheme weight;           /* conv and linear weights */
    qat_observer_kind act_obs_qat;/* activation observer during QAT */
    qat_observer_kind act_obs_ptq;/* default activation observer for PTQ calibration */
    qat_observer_kind weight_obs; /* weight observer (reset every forward: range of the weights now) */
    int lsq;                      /* 1: learned quantizers (LSQ weights, LSQ+ activations) */
} qat_qconfig;

/* Presets: "x86" (default), "per-tensor", "w4a8", "lsq". Unknown name -> QAT_ERR_ARG listing them. */
qat_status qat_qconfig_get(const char *name, qat_qconfig *out);
/* "x86, per-tensor, w4a8, lsq" */
const char *qat_qconfig_list(void);

#endif
