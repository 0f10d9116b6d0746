/* The ONNX graph builder of export/onnx.h: protobuf-c messages of ONNX's schema, every block the
 * builder allocates kept in one list so destroy frees them all, packed once and written
 * atomically (base/container.h). */
#include "container.h"
#include "onnx.h"
#include "onnx/onnx.pb-c.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growable array of pointers (nodes, initializers, ...). */
typedef struct {
    void **p;
    size_t n, cap;
} ptr_list;

struct onnx_b {
    ptr_list blocks;                       /* every allocation, freed by destroy */
    ptr_list nodes, inits, inputs, outputs, meta;
    int failed;
};

static int list_push(ptr_list *l, void *x) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        void **p = realloc(l->p, cap * sizeof *p);
        if (!p) return -1;
        l->p = p, l->cap = cap;
    }
    l->p[l->n++] = x;
    return 0;
}

static void *balloc(onnx_b *b, size_t size) {
    if (b->failed) return NULL;
    void *p = calloc(1, size ? size : 1);
    if (!p || list_push(&b->blocks, p)) {
        free(p);
        b->failed = 1;
        return NULL;
    }
    return p;
}

static void push(onnx_b *b, ptr_list *l, void *x) {
    if (!b->failed && x && list_push(l, x)) b->failed = 1;
}

onnx_b *onnx_b_create(void) { return calloc(1, sizeof(onnx_b)); }

void onnx_b_destroy(onnx_b *b) {
    if (!b) return;
    for (size_t i = 0; i < b->blocks.n; i++) free(b->blocks.p[i]);
    free(b->blocks.p), free(b->nodes.p), free(b->inits.p);
    free(b->inputs.p), free(b->outputs.p), free(b->meta.p);
    free(b);
}

const char *onnx_b_str(onnx_b *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n < 0 ? NULL : balloc(b, (size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static char *dup_str(onnx_b *b, const char *s) { return (char *)onnx_b_str(b, "%s", s ? s : ""); }

static Onnx__ValueInfoProto *value_info(onnx_b *b, const char *name, onnx_dtype t, int ndim,
                                        const int64_t *dims) {
    Onnx__ValueInfoProto *v = balloc(b, sizeof *v);
    Onnx__TypeProto *tp = balloc(b, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = balloc(b, sizeof *tt);
    Onnx__TensorShapeProto *sh = balloc(b, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dv = balloc(b, (size_t)ndim * sizeof *dv);
    if (!v || !tp || !tt || !sh || !dv) return NULL;
    *v = (Onnx__ValueInfoProto)ONNX__VALUE_INFO_PROTO__INIT;
    *tp = (Onnx__TypeProto)ONNX__TYPE_PROTO__INIT;
    *tt = (Onnx__TypeProto__Tensor)ONNX__TYPE_PROTO__TENSOR__INIT;
    *sh = (Onnx__TensorShapeProto)ONNX__TENSOR_SHAPE_PROTO__INIT;
    for (int i = 0; i < ndim; i++) {
        Onnx__TensorShapeProto__Dimension *d = balloc(b, sizeof *d);
        if (!d) return NULL;
        *d = (Onnx__TensorShapeProto__Dimension)ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
        if (dims[i] < 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = dup_str(b, "N");
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        dv[i] = d;
    }
    sh->n_dim = (size_t)ndim, sh->dim = dv;
    tt->has_elem_type = 1, tt->elem_type = t, tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, tp->tensor_type = tt;
    v->name = dup_str(b, name), v->type = tp;
    return v->name ? v : NULL;
}

void onnx_b_input(onnx_b *b, const char *name, onnx_dtype t, int ndim, const int64_t *dims) {
    push(b, &b->inputs, value_info(b, name, t, ndim, dims));
}

void onnx_b_output(onnx_b *b, const char *name, onnx_dtype t, int ndim, const int64_t *dims) {
    push(b, &b->outputs, value_info(b, name, t, ndim, dims));
}

static size_t dtype_bytes(onnx_dtype t) {
    return t == ONNX_F32 || t == ONNX_S32 ? 4 : t == ONNX_I64 ? 8 : 1;
}

void onnx_b_init(onnx_b *b, const char *name, onnx_dtype t, int ndim, const int64_t *dims,
                 const void *data) {
    Onnx__TensorProto *tp = balloc(b, sizeof *tp);
    int64_t *dv = balloc(b, (size_t)ndim * sizeof *dv);
    if (!tp || !dv) return;
    *tp = (Onnx__TensorProto)ONNX__TENSOR_PROTO__INIT;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) dv[i] = dims[i], n *= (size_t)dims[i];
    size_t bytes = n * dtype_bytes(t);
    uint8_t *raw = balloc(b, bytes); /* x86 is little-endian, as raw_data is */
    if (!raw) return;
    memcpy(raw, data, bytes);
    tp->n_dims = (size_t)ndim, tp->dims = dv;
    tp->has_data_type = 1, tp->data_type = t;
    tp->name = dup_str(b, name);
    tp->has_raw_data = 1, tp->raw_data.len = bytes, tp->raw_data.data = raw;
    push(b, &b->inits, tp);
}

onnx_node *onnx_b_node(onnx_b *b, const char *op, const char *name, int nin,
                       const char *const *in, const char *out) {
    Onnx__NodeProto *n = balloc(b, sizeof *n);
    char **ins = balloc(b, (size_t)nin * sizeof *ins);
    char **outs = balloc(b, sizeof *outs);
    if (!n || !ins || !outs) return NULL;
    *n = (Onnx__NodeProto)ONNX__NODE_PROTO__INIT;
    for (int i = 0; i < nin; i++) ins[i] = dup_str(b, in[i]);
    outs[0] = dup_str(b, out);
    n->n_input = (size_t)nin, n->input = ins;
    n->n_output = 1, n->output = outs;
    n->op_type = dup_str(b, op);
    n->name = dup_str(b, name);
    push(b, &b->nodes, n);
    return b->failed ? NULL : n;
}

static Onnx__AttributeProto *attr(onnx_b *b, onnx_node *n, const char *name,
                                  Onnx__AttributeProto__AttributeType type) {
    if (!n || b->failed) return NULL;
    Onnx__AttributeProto *a = balloc(b, sizeof *a);
    Onnx__AttributeProto **as = balloc(b, (n->n_attribute + 1) * sizeof *as);
    if (!a || !as) return NULL;
    *a = (Onnx__AttributeProto)ONNX__ATTRIBUTE_PROTO__INIT;
    a->name = dup_str(b, name);
    a->has_type = 1, a->type = type;
    /* The old array stays in the block list; attributes per node are few. */
    if (n->n_attribute) memcpy(as, n->attribute, n->n_attribute * sizeof *as);
    as[n->n_attribute++] = a;
    n->attribute = as;
    return a;
}

void onnx_b_attr_int(onnx_b *b, onnx_node *n, const char *name, int64_t v) {
    Onnx__AttributeProto *a = attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) a->has_i = 1, a->i = v;
}

void onnx_b_attr_float(onnx_b *b, onnx_node *n, const char *name, float v) {
    Onnx__AttributeProto *a = attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) a->has_f = 1, a->f = v;
}

void onnx_b_attr_ints(onnx_b *b, onnx_node *n, const char *name, int count, const int64_t *v) {
    Onnx__AttributeProto *a = attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *p = a ? balloc(b, (size_t)count * sizeof *p) : NULL;
    if (!p) return;
    memcpy(p, v, (size_t)count * sizeof *p);
    a->n_ints = (size_t)count, a->ints = p;
}

void onnx_b_meta(onnx_b *b, const char *key, const char *value) {
    Onnx__StringStringEntryProto *e = balloc(b, sizeof *e);
    if (!e) return;
    *e = (Onnx__StringStringEntryProto)ONNX__STRING_STRING_ENTRY_PROTO__INIT;
    e->key = dup_str(b, key), e->value = dup_str(b, value);
    push(b, &b->meta, e);
}

int onnx_b_nodes(const onnx_b *b) { return (int)b->nodes.n; }
int onnx_b_initializers(const onnx_b *b) { return (int)b->inits.n; }

qat_status onnx_b_write(onnx_b *b, const char *graph_name, int opset, const char *path,
                        int64_t *bytes) {
    Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
    Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
    Onnx__OperatorSetIdProto ops = ONNX__OPERATOR_SET_ID_PROTO__INIT;
    Onnx__OperatorSetIdProto *opsp = &ops;
    ops.domain = "", ops.has_version = 1, ops.version = opset;
    graph.name = (char *)graph_name;
    graph.n_node = b->nodes.n, graph.node = (Onnx__NodeProto **)b->nodes.p;
    graph.n_initializer = b->inits.n, graph.initializer = (Onnx__TensorProto **)b->inits.p;
    graph.n_input = b->inputs.n, graph.input = (Onnx__ValueInfoProto **)b->inputs.p;
    graph.n_output = b->outputs.n, graph.output = (Onnx__ValueInfoProto **)b->outputs.p;
    model.has_ir_version = 1, model.ir_version = 8; /* onnx 1.10-1.12; every runtime since reads it */
    model.n_opset_import = 1, model.opset_import = &opsp;
    model.producer_name = "qat";
    model.graph = &graph;
    model.n_metadata_props = b->meta.n;
    model.metadata_props = (Onnx__StringStringEntryProto **)b->meta.p;
    if (b->failed) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory building the ONNX graph", path);
    size_t size = onnx__model_proto__get_packed_size(&model);
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory packing %zu bytes", path, size);
    size_t packed = onnx__model_proto__pack(&model, buf);
    qat_status st = packed == size ? qat_file_write_atomic(path, buf, size)
                                   : qat_fail(QAT_ERR_IO, "%s: protobuf-c packed %zu of %zu bytes",
                                              path, packed, size);
    free(buf);
    if (!st && bytes) *bytes = (int64_t)size;
    return st;
}

/* ---- what both exporters say about their input ------------------------------------------------- */

void qat_onnx_describe_input(onnx_b *b, int h, int w, int c, const float mean[4],
                             const float std[4], qat_onnx_info *info) {
    char ms[64] = "", ss[64] = "";
    for (int k = 0; k < c && k < 4; k++) {
        size_t lm = strlen(ms), ls = strlen(ss);
        snprintf(ms + lm, sizeof ms - lm, "%s%.9g", k ? ", " : "", mean[k]);
        snprintf(ss + ls, sizeof ss - ls, "%s%.9g", k ? ", " : "", std[k] != 0 ? std[k] : 1.0f);
    }
    snprintf(info->input, sizeof info->input,
             "pixels: float32 NCHW (N, %d, %d, %d), raw pixel values 0..255 (8-bit image cast to float, channels first)",
             c, h, w);
    snprintf(info->normalisation, sizeof info->normalisation,
             "inside the model: x = (pixel / 255 - mean[c]) / std[c], mean = [%s], std = [%s]; the caller does nothing else",
             ms, ss);
    onnx_b_meta(b, "qat.input", info->input);
    onnx_b_meta(b, "qat.normalisation", info->normalisation);
    onnx_b_meta(b, "qat.mean", ms);
    onnx_b_meta(b, "qat.std", ss);
    onnx_b_meta(b, "qat.output", "logits: float32 (N, classes), before softmax");
}
