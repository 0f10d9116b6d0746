/* ONNX import (export/onnx_import.h): the file is unpacked with protobuf-c from ONNX's own schema
 * (the code the Makefile generates for the exporter), its nodes are walked in dependency order
 * and turned into the layer lines of the spec's general form (docs/model-spec.md), with the
 * weights moved to qat's layouts; then the spec text is parsed and the model built like any other,
 * and the weights are copied into its records by name.
 *
 * What folds away: BatchNormalization into the conv before it (its bias into the running mean),
 * Relu / Clip(0, 6) / HardSigmoid / HardSwish / Sigmoid into the conv before it when nothing else
 * reads the conv's output (Relu / Clip also into an fc), a zero Pad into the padding of the Conv or
 * AveragePool after it, MatMul + Add into one linear, Flatten / Reshape to (N, C) after pooling,
 * Identity, Dropout (inference), and Constant / Shape / Gather / Unsqueeze / Concat when they only
 * compute a constant shape. A 1x1 Conv on a pooled (N, C, 1, 1) tensor becomes an fc layer and a Mul
 * of a feature map by such a gate a mul layer (squeeze-and-excite); x * HardSigmoid(x) is hardswish.
 * Everything else is refused with the node's name and op. */
#include "onnx_import_internal.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE (INT64_C(1) << 30)   /* bytes of an ONNX file we read */
#define MAX_NODES 4096

qat_status oi_fail(imp *I, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char line[800];
    if (I->cur)
        snprintf(line, sizeof line, "node '%.60s' (%.40s): %s", I->cur->name && *I->cur->name ? I->cur->name : "(unnamed)",
                 I->cur->op_type ? I->cur->op_type : "?", msg);
    else
        snprintf(line, sizeof line, "%s", msg);
    /* a hostile node name, op type or tensor name must not break the one-line message */
    for (char *c = line; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f) *c = '?';
    return qat_fail(QAT_ERR_FORMAT, "%s: %s", I->what, line);
}

void *oi_track(imp *I, size_t bytes) {
    if (I->nallocs == I->cap_allocs) {
        size_t cap = I->cap_allocs ? 2 * I->cap_allocs : 256;
        void **a = realloc(I->allocs, cap * sizeof *a);
        if (!a) return NULL;
        I->allocs = a, I->cap_allocs = cap;
    }
    void *p = calloc(1, bytes ? bytes : 1);
    if (p) I->allocs[I->nallocs++] = p;
    return p;
}

/* ---- names --------------------------------------------------------------------------------- */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The entry of name (created empty when absent). Names come from the file: "" is no value. */
value *oi_slot(imp *I, const char *name) {
    size_t i = hash_str(name) & (I->cap - 1);
    while (I->tab[i].key && strcmp(I->tab[i].key, name)) i = (i + 1) & (I->cap - 1);
    if (!I->tab[i].key) I->tab[i].key = name;
    return &I->tab[i];
}

value *oi_get(imp *I, const char *name) {
    value *v = oi_slot(I, name);
    return v->kind ? v : NULL;
}

/* ---- tensors ------------------------------------------------------------------------------- */

qat_status oi_load_tensor(imp *I, const Onnx__TensorProto *t, value *v) {
    const char *name = t->name ? t->name : "";
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return oi_fail(I, "tensor '%.60s': its data is in an external file (external data is not supported; "
                    "save the model with all tensors inside the .onnx file)", name);
    if (t->n_dims > 8) return oi_fail(I, "tensor '%.60s': %zu dimensions (at most 8)", name, t->n_dims);
    int64_t numel = 1;
    for (size_t d = 0; d < t->n_dims; d++) {
        if (t->dims[d] < 0 || t->dims[d] > MAX_NUMEL)
            return oi_fail(I, "tensor '%.60s': dimension %zu is %lld", name, d, (long long)t->dims[d]);
        numel *= t->dims[d];
        if (numel > MAX_NUMEL) return oi_fail(I, "tensor '%.60s': more than %lld elements", name, (long long)MAX_NUMEL);
        v->dims[d] = t->dims[d];
    }
    v->ndim = (int)t->n_dims, v->numel = numel, v->kind = V_CONST;
    int dt = t->has_data_type ? t->data_type : 0;
    size_t esize = dt == 1 ? 4 : dt == 7 ? 8 : dt == 6 ? 4 : 0;
    if (!esize)
        return oi_fail(I, "tensor '%.60s': data type %d is not supported (float, int64, int32)", name, dt);
    v->is_int = dt != 1;
    size_t typed = dt == 1 ? t->n_float_data : dt == 7 ? t->n_int64_data : t->n_int32_data;
    if (t->has_raw_data && t->raw_data.len != (uint64_t)numel * esize)
        return oi_fail(I, "tensor '%.60s': raw_data has %zu bytes, its shape needs %lld", name,
                    t->raw_data.len, (long long)(numel * (int64_t)esize));
    if (!t->has_raw_data && typed != (size_t)numel)
        return oi_fail(I, "tensor '%.60s': %zu values, its shape needs %lld", name, typed, (long long)numel);
    if (v->is_int) {
        TRACK(v->i, I, (size_t)numel * sizeof(int64_t));
        for (int64_t k = 0; k < numel; k++) {
            if (t->has_raw_data && dt == 7) memcpy(&v->i[k], t->raw_data.data + 8 * k, 8);
            else if (t->has_raw_data) {
                int32_t x;
                memcpy(&x, t->raw_data.data + 4 * k, 4);
                v->i[k] = x;
            } else v->i[k] = dt == 7 ? t->int64_data[k] : t->int32_data[k];
        }
    } else {
        /* no op takes an empty float tensor (weights, BN parameters, Clip bounds), and memcpy from
         * the NULL an empty field leaves is undefined (libFuzzer + UBSan found it: a Clip bound of
         * shape (0, 0, 8256)) */
        if (numel == 0) return oi_fail(I, "tensor '%.60s' is empty (a dimension is 0)", name);
        TRACK(v->f, I, (size_t)numel * sizeof(float));
        if (t->has_raw_data) memcpy(v->f, t->raw_data.data, (size_t)numel * 4);
        else memcpy(v->f, t->float_data, (size_t)numel * 4);
        for (int64_t k = 0; k < numel; k++)
            if (!isfinite(v->f[k])) return oi_fail(I, "tensor '%.60s': value %lld is not finite", name, (long long)k);
    }
    return QAT_OK;
}

/* ---- the graph --------------------------------------------------------------------------------- */

static qat_status walk(imp *I) {
    const Onnx__GraphProto *g = I->model->graph;
    qat_status st;
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *t = g->initializer[i];
        if (!t->name || !*t->name) return oi_fail(I, "initializer %zu has no name", i);
        value *v = oi_slot(I, t->name);
        if (v->kind) return oi_fail(I, "tensor '%.60s' is defined twice", t->name);
        if ((st = oi_load_tensor(I, t, v))) return st;
    }
    /* the one graph input that is not an initializer: a fixed (N, C, H, W) float */
    int ninputs = 0;
    for (size_t i = 0; i < g->n_input; i++) {
        const Onnx__ValueInfoProto *vi = g->input[i];
        if (!vi->name || !*vi->name) return oi_fail(I, "graph input %zu has no name", i);
        value *v = oi_slot(I, vi->name);
        if (v->kind == V_CONST) continue;
        if (v->kind) return oi_fail(I, "graph input '%.60s' is listed twice", vi->name);
        if (ninputs++) return oi_fail(I, "more than one graph input ('%.60s'); a classifier takes one image tensor", vi->name);
        const Onnx__TypeProto *tp = vi->type;
        const Onnx__TensorShapeProto *sh = tp && tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && tp->tensor_type
                                               ? tp->tensor_type->shape : NULL;
        if (!sh || sh->n_dim != 4 || !tp->tensor_type->has_elem_type || tp->tensor_type->elem_type != 1)
            return oi_fail(I, "input '%.60s': needs a float (N, C, H, W) tensor type", vi->name);
        int64_t d[4];
        for (int k = 1; k < 4; k++) {
            const Onnx__TensorShapeProto__Dimension *dm = sh->dim[k];
            if (dm->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE || dm->dim_value < 1 ||
                dm->dim_value > 4096)
                return oi_fail(I, "input '%.60s': dimension %d is not a fixed size from 1 to 4096 (dynamic spatial "
                            "sizes and channels are not supported)", vi->name, k);
            d[k] = dm->dim_value;
        }
        if (d[1] > 4) return oi_fail(I, "input '%.60s': %lld channels (qat takes 1 to 4)", vi->name, (long long)d[1]);
        I->in_c = (int)d[1], I->in_h = (int)d[2], I->in_w = (int)d[3];
        oi_set_act(v, -1, 0, I->in_c, I->in_h, I->in_w, 0);
    }
    if (!ninputs) return oi_fail(I, "the graph has no input besides its initializers");
    if (g->n_output != 1) return oi_fail(I, "the graph has %zu outputs; a classifier has one (the logits)", g->n_output);
    /* nodes in dependency order: ONNX requires topological order, but take any order and report
     * what keeps a node from running */
    char *done = calloc(g->n_node ? g->n_node : 1, 1);
    if (!done) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", I->what);
    size_t left = g->n_node;
    st = QAT_OK;
    while (left && !st) {
        size_t progress = 0;
        for (size_t i = 0; i < g->n_node && !st; i++) {
            if (done[i]) continue;
            const Onnx__NodeProto *n = g->node[i];
            int ready = 1;
            for (size_t j = 0; j < n->n_input && ready; j++)
                ready = !*n->input[j] || oi_get(I, n->input[j]) != NULL;
            if (!ready) continue;
            I->cur = n;
            for (size_t j = 0; j < n->n_output && !st; j++)
                if (*n->output[j] && oi_slot(I, n->output[j])->kind)
                    st = oi_fail(I, "output '%.60s' is already defined", n->output[j]);
            if (!st) st = oi_import_node(I, n);
            I->cur = NULL;
            done[i] = 1, left--, progress++;
        }
        if (st || progress) continue;
        /* stuck: an input nothing produces (dangling), or one only a waiting node produces (cycle) */
        for (size_t i = 0; i < g->n_node && !st; i++) {
            if (done[i]) continue;
            const Onnx__NodeProto *n = g->node[i];
            for (size_t j = 0; j < n->n_input && !st; j++) {
                if (!*n->input[j] || oi_get(I, n->input[j])) continue;
                int produced = 0;
                for (size_t k = 0; k < g->n_node && !produced; k++)
                    for (size_t m = 0; !done[k] && m < g->node[k]->n_output && !produced; m++)
                        produced = !strcmp(g->node[k]->output[m], n->input[j]);
                I->cur = n;
                st = produced ? oi_fail(I, "input '%.60s' depends on this node's own output (the graph has a cycle)",
                                     n->input[j])
                              : oi_fail(I, "input '%.60s' is not produced by any node, initializer or graph input "
                                     "(a dangling input)", n->input[j]);
                I->cur = NULL;
            }
        }
        if (!st) st = oi_fail(I, "the graph cannot be ordered");
    }
    free(done);
    if (st) return st;
    const char *oname = g->output[0]->name ? g->output[0]->name : "";
    value *o = oi_get(I, oname);
    if (!o || o->kind != V_ACT || o->node < 0 || o->node != I->nnodes - 1 || I->nodes[o->node].op != QAT_NODE_LINEAR || !o->vec)
        return oi_fail(I, "graph output '%.60s' must be the logits of a final Gemm / MatMul, computed last", oname);
    if (I->nodes[o->node].c < 2) return oi_fail(I, "the classifier has %d output (at least 2 classes)", I->nodes[o->node].c);
    return QAT_OK;
}

/* ---- the spec and the model ----------------------------------------------------------------- */

static char *spec_text(imp *I, const char *model_name) {
    size_t cap = 256 + (size_t)I->nnodes * 256;
    char *t = malloc(cap);
    if (!t) return NULL;
    size_t len = (size_t)snprintf(t, cap, "# imported from %.200s by qat import\nname %s\n", I->what, model_name);
    for (int i = 0; i < I->nnodes; i++) {
        const snode *s = &I->nodes[i];
        len += (size_t)snprintf(t + len, cap - len, "layer %s %s in=", s->name, qat_node_op_names[s->op]);
        for (int j = 0; j < s->nin; j++)
            len += (size_t)snprintf(t + len, cap - len, "%s%s", j ? "," : "", s->in[j] < 0 ? "input" : I->nodes[s->in[j]].name);
        if (s->op == QAT_NODE_CONV)
            len += (size_t)snprintf(t + len, cap - len, " c=%d k=%d s=%d pad=%d g=%d bn=%d act=%s", s->c, s->k, s->s,
                                    s->pad, s->g, s->bn, qat_act_names[s->act]);
        else if (s->op == QAT_NODE_ACT)
            len += (size_t)snprintf(t + len, cap - len, " act=%s", qat_act_names[s->act]);
        else if (s->op == QAT_NODE_LINEAR)
            len += (size_t)snprintf(t + len, cap - len, " c=%d", s->c);
        else if (s->op == QAT_NODE_FC)
            len += (size_t)snprintf(t + len, cap - len, " c=%d act=%s", s->c, qat_act_names[s->act]);
        else if (s->op == QAT_NODE_MAXPOOL || s->op == QAT_NODE_AVGPOOL2D)
            len += (size_t)snprintf(t + len, cap - len, " k=%d s=%d pad=%d", s->k, s->s, s->pad);
        len += (size_t)snprintf(t + len, cap - len, "\n");
    }
    return t;
}

static void copy_weights(imp *I, qat_model *m) {
    for (int i = 0; i < I->nnodes; i++) {
        const snode *s = &I->nodes[i];
        if (s->op != QAT_NODE_CONV && s->op != QAT_NODE_LINEAR && s->op != QAT_NODE_FC) continue;
        qat_layer *L = NULL;
        for (int j = 0; j < m->nlayers && !L; j++)
            if (!strcmp(m->layers[j].name, s->name)) L = &m->layers[j];
        QAT_ASSERT(L && L->weight.data);
        memcpy(L->weight.data, s->w, (size_t)L->weight.numel * sizeof(float));
        if (s->op != QAT_NODE_CONV || !s->bn) {
            memcpy(L->bias.data, s->b, (size_t)s->c * sizeof(float));
            continue;
        }
        memcpy(L->gamma.data, s->gamma, (size_t)s->c * sizeof(float));
        memcpy(L->beta.data, s->beta, (size_t)s->c * sizeof(float));
        memcpy(L->bn.running_mean, s->mean, (size_t)s->c * sizeof(float));
        memcpy(L->bn.running_var, s->var, (size_t)s->c * sizeof(float));
    }
}

static qat_status import_model(imp *I, qat_model **out) {
    Onnx__ModelProto *mp = I->model;
    if (!mp->graph) return oi_fail(I, "no graph");
    int64_t opset = -1;
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
        if (!o->domain || !*o->domain || !strcmp(o->domain, "ai.onnx")) opset = o->has_version ? o->version : -1;
    }
    if (opset < 0) return oi_fail(I, "no opset of the default ONNX domain");
    if (opset < 11 || opset > 17)
        return oi_fail(I, "opset %lld is not supported (11 to 17; re-export with e.g. opset_version=13)", (long long)opset);
    I->opset = (int)opset;
    const Onnx__GraphProto *g = mp->graph;
    if (g->n_node > MAX_NODES) return oi_fail(I, "%zu nodes (at most %d)", g->n_node, MAX_NODES);
    size_t names = g->n_initializer + g->n_input + g->n_output + 1;
    for (size_t i = 0; i < g->n_node; i++) names += g->node[i]->n_input + g->node[i]->n_output;
    I->cap = 64;
    while (I->cap < 2 * names) I->cap *= 2;
    TRACK(I->tab, I, I->cap * sizeof *I->tab);
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *n = g->node[i];
        for (size_t j = 0; j < n->n_input; j++)
            if (n->input[j] && *n->input[j]) oi_slot(I, n->input[j])->uses++;
        for (size_t j = 0; j < n->n_output; j++)
            if (!n->output[j]) return oi_fail(I, "node %zu has a missing output name", i);
        for (size_t j = 0; j < n->n_input; j++)
            if (!n->input[j]) return oi_fail(I, "node %zu has a missing input name", i);
    }
    for (size_t i = 0; i < g->n_output; i++)
        if (g->output[i]->name && *g->output[i]->name) oi_slot(I, g->output[i]->name)->uses++;
    qat_status st = walk(I);
    if (st) return st;
    /* the model's name: the file's base name in spec name characters */
    char name[QAT_SPEC_NAME_MAX];
    const char *base = strrchr(I->what, '/');
    base = base ? base + 1 : I->what;
    size_t n = 0;
    for (; *base && n + 1 < sizeof name && strcmp(base, ".onnx"); base++)
        name[n++] = isalnum((unsigned char)*base) || *base == '-' || *base == '_' || *base == '.' ? *base : '_';
    name[n] = 0;
    if (!n) snprintf(name, sizeof name, "imported");
    char *text = spec_text(I, name);
    if (!text) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", I->what);
    char source[600];
    snprintf(source, sizeof source, "%.500s (imported)", I->what);
    qat_spec *spec;
    st = qat_spec_parse(text, source, &spec);
    free(text);
    if (st) return st;
    st = qat_model_create(spec, 0, I->in_h, I->in_w, I->in_c, I->nodes[I->nnodes - 1].c, out);
    qat_spec_free(spec);
    if (st) return st;
    copy_weights(I, *out);
    return QAT_OK;
}

qat_status qat_onnx_import_bytes(const void *data, size_t len, const char *what, qat_model **out) {
    *out = NULL;
    imp I;
    memset(&I, 0, sizeof I);
    I.what = what ? what : "<onnx>";
    I.model = onnx__model_proto__unpack(NULL, len, data);
    if (!I.model)
        return qat_fail(QAT_ERR_FORMAT, "%s: not a valid ONNX model (the protobuf does not parse: truncated or "
                        "corrupt file?)", I.what);
    qat_status st = import_model(&I, out);
    for (size_t i = 0; i < I.nallocs; i++) free(I.allocs[i]);
    free(I.allocs);
    free(I.nodes);
    onnx__model_proto__free_unpacked(I.model, NULL);
    return st;
}

qat_status qat_onnx_import(const char *path, qat_model **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return qat_fail(QAT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    long size = -1;
    if (!fseek(f, 0, SEEK_END)) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET)) {
        fclose(f);
        return qat_fail(QAT_ERR_IO, "%s: cannot read (not a regular file?)", path);
    }
    if (size > MAX_FILE) {
        fclose(f);
        return qat_fail(QAT_ERR_FORMAT, "%s: %ld bytes (larger than %lld: not supported)", path, size, (long long)MAX_FILE);
    }
    void *buf = malloc((size_t)size + 1);
    if (!buf) {
        fclose(f);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    qat_status st = got != (size_t)size ? qat_fail(QAT_ERR_IO, "%s: read error", path)
                                        : qat_onnx_import_bytes(buf, (size_t)size, path, out);
    free(buf);
    return st;
}
