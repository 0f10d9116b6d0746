/* Internals of the INT8 runtime (runtime/rt.c, runtime/rt_kinds.c) shared with the tests and the
 * library's own users (qat quantize's verification); deploy code uses include/qat_rt.h only. */
#ifndef QAT_RT_INTERNAL_H
#define QAT_RT_INTERNAL_H

#include "int8.h"
#include "int8_onednn.h"
#include "q8.h"
#include "qat_rt.h"

/* Builds a runtime from a model in memory. The runtime keeps no pointer into m (weights are
 * packed, multipliers copied): m may be freed right after. */
qat_status qat_rt_from_model(const qat_q8_model *m, const qat_rt_options *opt, qat_rt **out);

/* One layer of a loaded model as the runtime runs it: shapes and value indices from the model
 * layer, and what its kind's prepare made of the rest (packed weights, constants, an optional
 * oneDNN primitive). */
typedef struct {
    qat_q8_kind kind;
    char name[QAT_Q8_NAME_MAX];
    char kind_text[24];           /* reports: "conv3x3/s1", "dw3x3/s2", "pw1x1", "add", ... */
    int input, skip;              /* value indices, -1 = quantized model input; skip -2: none */
    int in_h, in_w, in_c, out_h, out_w, out_c;
    size_t out_bytes;             /* per image (0 for the float logits; 4 per element for f32) */
    int64_t macs;                 /* per image */
    /* native: what prepare made (the kind's file says which it uses) */
    int variant;                  /* conv: RT_CONV_GEMM, RT_CONV_IM2COL or RT_CONV_DW */
    qat_i8_conv_params cp;
    void *pack;                   /* packed weights (64-byte aligned); LUT: its 256-byte table */
    qat_i8_gemm_weights gw;
    qat_i8_dw_weights dw;
    float *mult;                  /* (out_c): requant multipliers / logit deq scales */
    float *fbias;                 /* (out_c) logits only, may be NULL */
    qat_i8_requant rq;
    qat_i8_add_params ap;
    qat_i8_pool_params pp;
    qat_i8_mul_params mp;
    /* float layers: DEQUANT's (sx, zx), QUANT's (1 / sy, zy, lo, hi); FCONV's activation */
    float qscale;
    int32_t qzp, qlo, qhi;
    qat_f32_act fact;
    /* oneDNN (NULL when not created) */
    qat_i8_dnnl_conv *dconv;
    qat_i8_dnnl_linear *dlin;
    int use_dnnl;
    double last_ms;
} qat_rt_node;

/* How the runtime runs one INT8 layer kind: one row per qat_q8_kind in qat_rt_kinds[]
 * (runtime/rt_kinds.c), beside the format's row in qat_q8_kinds[]. */
typedef struct {
    /* Packs weights and copies the constants of a validated layer into l (shapes, values and
     * macs are filled already); sets l->kind_text. */
    qat_status (*prepare)(qat_rt_node *l, const qat_q8_layer *L);
    /* The oneDNN primitive of the layer in l->dconv / l->dlin; a configuration oneDNN refuses
     * leaves both NULL (the layer stays native). NULL: native only. */
    void (*prepare_onednn)(qat_rt_node *l, const qat_q8_layer *L);
    /* One batch of n images on the native kernels: x (and x2, the second operand) -> y, or
     * -> logits (n, out_c) for a float output. */
    qat_status (*run)(qat_rt_node *l, int n, const uint8_t *x, const uint8_t *x2, uint8_t *y,
                      float *logits, void *scratch, size_t scratch_size);
    /* Scratch bytes for a batch of n (NULL: none). */
    size_t (*scratch)(const qat_rt_node *l, int n);
} qat_rt_kind;

extern const qat_rt_kind qat_rt_kinds[QAT_Q8_KIND_COUNT];

/* Multiply-adds a batch needs before the runtime splits it between threads, each running its
 * share of the images through the whole network (runtime/rt.c). QAT_I8_PAR_MIN_WORK; tests set
 * 0 to run their small models that way, or INT64_MAX to keep the split inside each layer. */
extern int64_t qat_rt_lane_min_work;
/* Activation bytes (the plan's peak per image x images) one part of a batch may take: a larger
 * batch is cut into more parts, run one after the other by each lane in the same region. 8 MiB;
 * tests set 1 (one image per part). */
extern size_t qat_rt_part_bytes;

#endif
