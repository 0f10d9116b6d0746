/* ONNX import, private to export/onnx_import.c (protobuf reading, tensors, the graph walk, the
 * spec and the model) and export/onnx_import_ops.c (what each ONNX op becomes): the state of one
 * import and the helpers both halves use. */
#ifndef QAT_ONNX_IMPORT_INTERNAL_H
#define QAT_ONNX_IMPORT_INTERNAL_H

#include "onnx_import.h"
#include "onnx/onnx.pb-c.h"
#include <stdint.h>

#define MAX_NUMEL (INT64_C(1) << 28)  /* elements of one tensor */
#define DYN INT64_MIN                 /* a shape entry only known at run time (the batch) */
#define OUR_BN_EPS 1e-5f              /* layers/conv_bn_act.c: PyTorch's default */

enum { V_NONE = 0, V_ACT, V_CONST };

/* What a tensor name holds while the graph is walked. */
typedef struct {
    const char *key;   /* the name (the unpacked model owns it) */
    int uses;          /* node inputs and graph outputs reading it */
    int kind;
    /* V_ACT: a feature map or vector produced by spec node `node` (-1: the model input) */
    int node, vec, c, h, w;
    int fusable;       /* only one reader between here and the node: an activation / BN / bias may join it */
    int pad;           /* zero padding a Pad node added on each side, still to fold into the Conv or
                        * AveragePool that reads it (h, w are the unpadded sizes) */
    /* V_CONST */
    int is_int, ndim;
    int64_t dims[8], numel;
    float *f;
    int64_t *i;
} value;

/* One layer line being built. */
typedef struct {
    char name[QAT_NODE_NAME_MAX];
    qat_node_op op;
    int nin, in[2];
    int c, k, s, pad, g, bn, in_c;
    qat_act act;
    float *w, *b, *gamma, *beta, *mean, *var;
    int bias_pending;  /* MatMul: an Add may give it its bias */
    int out_uses;      /* act: readers of the value it produced (a Mul may turn hardsigmoid into hardswish) */
} snode;

typedef struct {
    const char *what;
    Onnx__ModelProto *model;
    int opset;
    value *tab;        /* open addressing by name */
    size_t cap;
    snode *nodes;
    int nnodes, cap_nodes;
    void **allocs;     /* every buffer made here, freed at the end */
    size_t nallocs, cap_allocs;
    int in_h, in_w, in_c;
    const Onnx__NodeProto *cur; /* the node being imported, for messages */
} imp;

/* One line "<file>: node '<name>' (<Op>): <problem>" (or "<file>: <problem>" between nodes). */
qat_status oi_fail(imp *I, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A zeroed buffer freed when the import ends (NULL when out of memory). */
void *oi_track(imp *I, size_t bytes);
#define TRACK(p, I, bytes)                                                          \
    do {                                                                            \
        if (!((p) = oi_track((I), (bytes))))                                        \
            return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", (I)->what);         \
    } while (0)

/* The entry of a tensor name (created empty when absent) / the entry only when it holds a value. */
value *oi_slot(imp *I, const char *name);
value *oi_get(imp *I, const char *name);
/* A TensorProto (initializer or Constant) as a V_CONST value. */
qat_status oi_load_tensor(imp *I, const Onnx__TensorProto *t, value *v);
/* One node of the graph, its inputs all known (export/onnx_import_ops.c). */
qat_status oi_import_node(imp *I, const Onnx__NodeProto *n);

static inline void oi_set_act(value *o, int node, int vec, int c, int h, int w, int fusable) {
    o->kind = V_ACT, o->node = node, o->vec = vec, o->c = c, o->h = h, o->w = w, o->fusable = fusable;
}

#endif
