/* ONNX export: an INT8 model (runtime/q8.h) as an ONNX QDQ graph (export/onnx_qdq.c) and a float
 * model with BN folded (export/onnx_fp32.c), written through protobuf-c from ONNX's own schema
 * (the Makefile generates onnx/onnx.pb-c.h from Debian's onnx.proto). docs/formats.md, "ONNX",
 * says what the graphs hold.
 *
 *   onnx_b *b = onnx_b_create();
 *   onnx_b_input(b, "pixels", ONNX_F32, 4, (int64_t[]){-1, 1, 28, 28});   // -1: the batch "N"
 *   onnx_b_init(b, "w", ONNX_S8, 4, dims, codes);                         // an initializer
 *   onnx_b_node(b, "Conv", "conv0", 3, (const char *[]){"x", "w", "b"}, "y");
 *   if (onnx_b_write(b, 13, "model.onnx")) ...;                          // temp file + rename
 *   onnx_b_destroy(b);
 *
 * The builder owns every string and array it is given (copied); a failed allocation marks the
 * builder failed and later calls do nothing, so callers check once, at onnx_b_write. */
#ifndef QAT_ONNX_H
#define QAT_ONNX_H

#include "q8.h"
#include "qat.h"
#include <stdint.h>

/* TensorProto.DataType numbers (onnx.proto). */
typedef enum { ONNX_F32 = 1, ONNX_U8 = 2, ONNX_S8 = 3, ONNX_S32 = 6, ONNX_I64 = 7 } onnx_dtype;

typedef struct onnx_b onnx_b;
typedef struct Onnx__NodeProto onnx_node; /* protobuf-c's, opaque outside onnx_write.c */

onnx_b *onnx_b_create(void); /* NULL: out of memory */
void onnx_b_destroy(onnx_b *b);

/* A string owned by the builder (printf-style); NULL once the builder failed. */
const char *onnx_b_str(onnx_b *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A graph input or output; a dimension of -1 is the dynamic batch "N". */
void onnx_b_input(onnx_b *b, const char *name, onnx_dtype t, int ndim, const int64_t *dims);
void onnx_b_output(onnx_b *b, const char *name, onnx_dtype t, int ndim, const int64_t *dims);
/* An initializer (raw little-endian data, copied); ndim 0 is a scalar. */
void onnx_b_init(onnx_b *b, const char *name, onnx_dtype t, int ndim, const int64_t *dims,
                 const void *data);
/* A node of the default domain with one output; NULL once the builder failed. An input name
 * "" is an omitted optional input. */
onnx_node *onnx_b_node(onnx_b *b, const char *op, const char *name, int nin,
                       const char *const *in, const char *out);
void onnx_b_attr_int(onnx_b *b, onnx_node *n, const char *name, int64_t v);
void onnx_b_attr_float(onnx_b *b, onnx_node *n, const char *name, float v);
void onnx_b_attr_ints(onnx_b *b, onnx_node *n, const char *name, int count, const int64_t *v);
/* model.metadata_props[key] = value. */
void onnx_b_meta(onnx_b *b, const char *key, const char *value);
int onnx_b_nodes(const onnx_b *b);
int onnx_b_initializers(const onnx_b *b);

/* Packs the model (IR version 8, default-domain opset `opset`, graph name `graph`) and writes
 * it to path atomically; *bytes (optional) gets the file size. QAT_ERR_NOMEM when an earlier
 * call failed to allocate. */
qat_status onnx_b_write(onnx_b *b, const char *graph, int opset, const char *path, int64_t *bytes);

/* ---- the two exporters (what include/qat.h's qat_export_onnx* call) -------------------------- */

/* The QDQ graph of an INT8 model (export/onnx_qdq.c); `what` names the source in messages. */
qat_status qat_onnx_from_q8(const qat_q8_model *m, const char *what, const char *out,
                            qat_onnx_info *info);

typedef struct qat_model qat_model; /* models/model.h */
/* The float graph of a model, BN folded into the conv weights (export/onnx_fp32.c). */
qat_status qat_onnx_from_model(const qat_model *m, const float mean[4], const float std[4],
                               const char *what, const char *out, qat_onnx_info *info);

/* The metadata both exporters write and `qat export` prints: the input's layout and what a
 * caller does to raw pixels (export/onnx_write.c). */
void qat_onnx_describe_input(onnx_b *b, int h, int w, int c, const float mean[4],
                             const float std[4], qat_onnx_info *info);

#endif
