/* The INT8 model (stage 3) in memory: what `qat convert` produces from a PTQ/QAT model, what a
 * .q8 file stores, what the runtime executes and what the integer-exact simulation evaluates.
 * Plain data: every number the INT8 arithmetic needs is stored here once (nothing is recomputed
 * at load), so the simulation (export/qsim.c), the native kernels, the reference kernels and
 * oneDNN all start from the same bits.
 *
 * Each INT8 layer kind has one row in each of three tables, indexed by qat_q8_kind: its format
 * (qat_q8_kinds[], runtime/q8_kinds.c: which arrays, which invariants, its MACs), its
 * execution (runtime/rt_kinds.c: prepare once, run per batch) and its integer-exact simulation
 * (export/qsim.c). The tables are separate because the format part is all the fuzzer and the
 * loader need, and the simulation runs on the training engine, which the deploy-only runtime
 * library does not carry. docs/architecture.md says how to add a kind.
 *
 * Values: layer i produces value i; value -1 is the quantized model input. Activations are u8
 * codes, NHWC. Every layer reads values produced before it (input, skip < i).
 *
 * Arithmetic per layer kind (kernels/qmath.h and kernels/int8.h define every function named):
 *   input:    q = qat_quantize(x, 1.0f / in_scale, in_zp, in_qmin, in_qmax)
 *   CONV:     acc[c] = bias[c] + sum_taps (x - zx) * weight[c][tap]         (exact int32;
 *                      padded taps contribute 0, i.e. they read zx)
 *             y = qat_requantize(acc[c], mult[c], zy, lo, hi)
 *             groups == 1: dense OHWI (out_c, k, k, in_c); groups == in_c == out_c: depthwise
 *             (out_c, k, k, 1). ReLU / ReLU6 are already in lo / hi.
 *   ADD:      y = qat_i8_add_one(a, b, {sx, sb, 1.0f / sy, zx, zb, zy, lo, hi})
 *             a = value `input` (scale sx, zero point zx), b = value `skip` (sb, zb)
 *   AVGPOOL:  global average pool (N, H, W, C) -> (N, 1, 1, C):
 *             y = qat_requantize(sum_hw x - H*W*zx, pool_mult, zy, lo, hi)
 *   LINEAR:   acc[n] = sum_k (x[k] - zx) * weight[n][k]   (bias == NULL: no int32 bias)
 *             logit[n] = qat_i8_dequant_f32(acc[n], mult[n], fbias, n)  (float; must be last)
 *   LUT:      y = table[x] (256 u8 entries; convert fills entry q with
 *             qat_quantize(f(qat_dequantize(q, sx, zx)), 1.0f / sy, zy, lo, hi): what the
 *             fake-quant graph computes for that code, so the table is the simulation)
 *   MUL:      a = value `input` (N, H, W, C), g = value `skip` (N, 1, 1, C):
 *             y = qat_requantize((a - zx) * (g[c] - zb), mult[c], zy, lo, hi)
 *             mult[c] = qat_requant_mult(sx, sb, sy) (the same for every c)
 *   MAXPOOL:  y = clamp(max over the k x k window of x, lo, hi), padded taps skipped (-inf);
 *             sy, zy equal sx, zx (the max of codes is a code of the same grid); 2 pad <= k
 *   AVGPOOL2D: y = qat_requantize(sum over the k x k window of (x - zx), pool_mult, zy, lo, hi),
 *             padded taps adding 0 (counted in the divisor: pool_mult =
 *             qat_i8_avgpool_mult(sx, sy, k*k)); 2 pad <= k
 *
 * Float layers (a per-layer qconfig leaves a layer in float; format version 3). Their values
 * are f32 (NHWC, 4 bytes an element); an f32 value has no qparams (its producer's sy, zy, lo,
 * hi and its readers' sx, zx are 0). kernels/int8.h, section 8, computes all four, and the
 * simulation calls the same functions, so both give the same bits:
 *   DEQUANT:  u8 -> f32: y = qat_dequantize(x, sx, zx)          (a float layer's input edge)
 *   QUANT:    f32 -> u8: y = qat_quantize(x, 1.0f / sy, zy, lo, hi)   (its output edge)
 *   FCONV:    f32 -> f32: y = act(fbias[c] + sum_taps x * fweight[c][tap])  (BN folded in
 *             float; dense OHWI or depthwise as CONV; act in `act`: none, relu, relu6,
 *             hardswish, hardsigmoid; padded taps contribute 0)
 *   FLINEAR:  f32 -> float logits: logit[n] = fbias[n] + sum_k x[k] * fweight[n][k] (last)
 *
 * Scales (sx, sy, sb, in_scale) are stored for the arithmetic above and for reports; the
 * requantization multipliers were computed from them by convert (qat_requant_mult,
 * qat_i8_avgpool_mult) and are stored as such.
 */
#ifndef QAT_Q8_H
#define QAT_Q8_H

#include "qat.h"
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QAT_Q8_NAME_MAX 48
#define QAT_Q8_MAX_LAYERS 4096
#define QAT_Q8_CLASS_NAME_MAX 64         /* a class name: 1..63 printable characters */

/* Appended only: the number is the .q8 file's kind (LUT and MUL are format version 2, the
 * float layers' kinds version 3). */
typedef enum {
    QAT_Q8_CONV = 0,
    QAT_Q8_ADD,
    QAT_Q8_AVGPOOL,
    QAT_Q8_LINEAR,
    QAT_Q8_LUT,  /* y = table[x]: an activation (hardswish, hardsigmoid) as a u8 -> u8 table */
    QAT_Q8_MUL,  /* y[h,w,c] = requantize((x - zx) * (g[c] - zb)): squeeze-excite's rescale */
    QAT_Q8_DEQUANT, /* u8 -> f32: into a float layer */
    QAT_Q8_QUANT,   /* f32 -> u8: out of a float layer */
    QAT_Q8_FCONV,   /* a conv (dense or depthwise) in float, f32 -> f32 */
    QAT_Q8_FLINEAR, /* the classifier in float, f32 -> float logits */
    QAT_Q8_MAXPOOL,   /* max of the codes over k x k windows (format version 5) */
    QAT_Q8_AVGPOOL2D, /* mean over k x k windows, requantized (format version 5) */
    QAT_Q8_KIND_COUNT
} qat_q8_kind;

/* Informational: the activation whose clamp lo/hi implement (CONV), or the function a LUT's
 * table holds (reports, inspect). */
typedef enum {
    QAT_Q8_ACT_NONE = 0,
    QAT_Q8_ACT_RELU,
    QAT_Q8_ACT_RELU6,
    QAT_Q8_ACT_HARDSWISH,
    QAT_Q8_ACT_HARDSIGMOID,
    QAT_Q8_ACT_SIGMOID, /* a LUT's only (format version 5) */
    QAT_Q8_ACT_COUNT
} qat_q8_act;

typedef struct {
    qat_q8_kind kind;
    char name[QAT_Q8_NAME_MAX];      /* NUL-terminated, e.g. "features.3.body.1" */
    int32_t input, skip;             /* value indices (-1 = model input); skip: ADD only, else -1 */
    int32_t in_h, in_w, in_c;        /* per-image input shape (LINEAR: 1, 1, in) */
    int32_t out_h, out_w, out_c;     /* per-image output shape (AVGPOOL, LINEAR: 1, 1, C) */
    /* CONV */
    int32_t k, stride, pad, groups;  /* square kernel, OH = (H + 2 pad - k) / stride + 1 */
    qat_q8_act act;
    int8_t *weight;                  /* CONV (out_c, k, k, in_c / groups); LINEAR (out_c, in_c) */
    int32_t *bias;                   /* CONV (out_c) in accumulator units; LINEAR: NULL */
    float *mult;                     /* CONV (out_c) requant multiplier; LINEAR (out_c) deq scale */
    float *fbias;                    /* LINEAR, FCONV, FLINEAR (out_c) float bias; else NULL */
    int32_t wbits;                   /* CONV/LINEAR: bit width the weights were quantized to */
    float *wscale;                   /* CONV/LINEAR (out_c): weight scales (reports) */
    uint8_t *table;                  /* LUT (256): output code of each input code */
    float *fweight;                  /* FCONV (out_c, k, k, in_c / groups), FLINEAR (out_c, in_c) */
    /* input qparams (CONV, LINEAR, AVGPOOL, ADD's first operand) */
    float sx;
    int32_t zx;
    /* ADD's and MUL's second operand */
    float sb;
    int32_t zb;
    /* output qparams and clamp (CONV, ADD, AVGPOOL) */
    float sy;
    int32_t zy, lo, hi;
    float pool_mult;                 /* AVGPOOL */
} qat_q8_layer;

typedef struct {
    int32_t in_h, in_w, in_c, nclasses;
    float in_scale;                  /* input quantization (see above) */
    int32_t in_zp, in_qmin, in_qmax;
    float mean[4], std[4];           /* input normalisation: x = (pixel/255 - mean) / std */
    char qconfig[16];                /* the qconfig it was quantized with ("x86") */
    char arch[32];                   /* the spec's name ("mbv2-tiny") */
    int32_t nlayers;
    qat_q8_layer *layers;            /* every array in a layer is its own malloc block */
    /* The class names of an ImageFolder (its folder names), nclasses of them, or NULL: the
     * optional "classes" section, reports only. */
    char (*class_names)[QAT_Q8_CLASS_NAME_MAX];
} qat_q8_model;


/* The per-layer arrays; in a .q8 file each is a section of that name ("weight", ...). */
typedef enum {
    QAT_Q8_ARR_WEIGHT = 0, /* s8: conv (out_c, k, k, in_c / groups), linear (out_c, in_c) */
    QAT_Q8_ARR_BIAS,       /* s32 (out_c), accumulator units */
    QAT_Q8_ARR_MULT,       /* f32 (out_c): requantization multipliers / dequantization scales */
    QAT_Q8_ARR_FBIAS,      /* f32 (out_c): float bias of the logits */
    QAT_Q8_ARR_WSCALE,     /* f32 (out_c): weight scales (reports) */
    QAT_Q8_ARR_TABLE,      /* u8 (256): a LUT's table (format version 2) */
    QAT_Q8_ARR_FWEIGHT,    /* f32: a float layer's weights (format version 3) */
    QAT_Q8_ARR_COUNT
} qat_q8_array;
#define QAT_Q8_ARR_BIT(a) (1u << (a))

/* What the format knows of one INT8 layer kind (runtime/q8_kinds.c). */
typedef struct {
    const char *name;        /* "conv", "add", "avgpool", "linear": messages, reports */
    unsigned arrays_need;    /* QAT_Q8_ARR_BIT of the arrays the kind must have */
    unsigned arrays_allow;   /* ... and of those it may have */
    int second_input;        /* reads value `skip` as a second operand (its qparams in sb, zb) */
    int float_output;        /* produces the float logits: only as the last layer, no sy..hi */
    /* Layer i's kind-specific invariants (its input operand, name and common shape limits are
     * checked already, earlier layers are valid), before any array is looked at. */
    qat_status (*check)(const qat_q8_model *m, const char *what, int i);
    /* Weights per output channel of a layer whose shape is valid (NULL: no weights). */
    int64_t (*weights_per_channel)(const qat_q8_layer *L);
    /* Multiply-accumulates per image (NULL: 0); 0 when a factor is out of range. */
    int64_t (*macs)(const qat_q8_layer *L);
    int float_input;         /* reads an f32 value (its sx, zx are 0) instead of u8 codes */
    int float_value;         /* produces an f32 value (its sy, zy, lo, hi are 0) */
} qat_q8_kind_desc;

extern const qat_q8_kind_desc qat_q8_kinds[QAT_Q8_KIND_COUNT];

/* Checks every invariant the runtime relies on: counts and shapes in range (each dimension
 * 1..65536, elements per image <= 2^28), values produced before use, shape chaining (a layer's
 * input shape equals its producer's output shape, and zx/sx equal the producer's zy/sy),
 * conv geometry (k, stride >= 1, 0 <= pad < k, OH/OW as stated), groups 1 or depthwise, arrays
 * present exactly where the kind needs them, zero points and clamps within [0, 255] with
 * lo <= hi, scales and multipliers finite and > 0, the int32 accumulator bound of
 * kernels/int8.h, and a LINEAR as the last layer with out_c == nclasses. `what` names the file
 * (or "model") in the message: "MODEL.q8: layer 3 'features.1.conv.0': ...". */
qat_status qat_q8_validate(const qat_q8_model *m, const char *what);

/* .q8 file (docs/formats.md): the container of base/container.h with magic "QATINT8\0".
 * Save validates first and writes atomically; load validates everything (any failure: one
 * error line naming the path, nothing allocated is leaked, *out = NULL). */
qat_status qat_q8_save(const qat_q8_model *m, const char *path);
qat_status qat_q8_load(const char *path, qat_q8_model **out);
/* The same from a buffer (fuzzing); `name` stands for the path in messages. */
qat_status qat_q8_load_memory(const void *buf, size_t size, const char *name, qat_q8_model **out);
/* Class names as stored ("NAME\n" per class, n classes) to names (malloc'd, *out); NULL text:
 * *out = NULL. QAT_ERR_FORMAT naming `what` for a wrong count or a bad name. */
qat_status qat_class_names_parse(const char *text, size_t len, int n, const char *what,
                                 char (**out)[QAT_Q8_CLASS_NAME_MAX]);
/* The inverse, malloc'd and NUL-terminated (*len without the NUL). */
char *qat_class_names_join(char (*names)[QAT_Q8_CLASS_NAME_MAX], int n, size_t *len);

/* Frees the model, its layers and every array they point to. NULL is a no-op. */
void qat_q8_free(qat_q8_model *m);

/* The float activation of a float layer's `act` (kernels/int8.h, section 8). */
static inline int qat_q8_f32_act(qat_q8_act a) {
    return a == QAT_Q8_ACT_RELU ? 1 : a == QAT_Q8_ACT_RELU6 ? 2 : a == QAT_Q8_ACT_HARDSWISH ? 3
         : a == QAT_Q8_ACT_HARDSIGMOID ? 4 : 0;
}

/* Value v's elements are f32 (a float layer's output), not u8 codes (-1, the input, is u8). */
int qat_q8_value_is_float(const qat_q8_model *m, int v);

/* Multiply-accumulates per image of a layer (0 for ADD/AVGPOOL). */
int64_t qat_q8_layer_macs(const qat_q8_layer *L);
/* Weights of a layer, int8 or float (0 for ADD/AVGPOOL). */
int64_t qat_q8_layer_weights(const qat_q8_layer *L);

#ifdef __cplusplus
}
#endif
#endif
