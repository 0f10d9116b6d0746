/* ONNX import (export/onnx_import.c): an FP32 ONNX classifier (opsets 11-17; a DAG of Conv,
 * BatchNormalization, Relu, Clip, HardSigmoid, HardSwish, Add, GlobalAveragePool, Flatten,
 * Reshape, Gemm, MatMul, ...) as a qat model in the spec's general form (docs/model-spec.md),
 * weights moved from ONNX's NCHW/OIHW to qat's NHWC/OHWI.
 *
 *   qat_model *m;
 *   if (qat_onnx_import("m.onnx", &m)) die(qat_last_error());   // one line: file, node, problem
 *   qat_spec_text(m->spec);                                        // the graph as layer lines
 */
#ifndef QAT_ONNX_IMPORT_H
#define QAT_ONNX_IMPORT_H

#include "model.h"
#include <stddef.h>

/* The ops the importer takes, for messages and docs. */
extern const char qat_onnx_import_ops[];

/* Parses the ONNX file at path into a model with its weights. Errors (QAT_ERR_FORMAT, ...) are
 * one line "<path>: node '<name>' (<Op>): <problem>" or "<path>: <problem>". */
qat_status qat_onnx_import(const char *path, qat_model **out);
/* The same from bytes in memory (`what` names them in messages): the fuzz target's entry. */
qat_status qat_onnx_import_bytes(const void *data, size_t len, const char *what, qat_model **out);

/* qat import (train/import.c): the model of `onnx` written as an FP32 checkpoint at ckpt with
 * the normalisation x = (pixel / 255 - mean) / std on every channel, its spec (general form) at
 * spec_out when not NULL; *model_out (optional) keeps the model. */
qat_status qat_import_onnx_ckpt(const char *onnx, const char *ckpt, const char *spec_out, float mean,
                                float std, qat_model **model_out);

/* Writes the predicted class of every test image of data (one byte each, dataset order) by the
 * checkpoint's network to out (train/import.c; `qat eval --pred-out`). */
qat_status qat_checkpoint_predict(const char *ckpt, const char *data, const char *out, int batch);

#endif
