/* Helpers of the ONNX import tests (tests/test_onnx_import.c), shared with the tests of the
 * pooling, Pad, Sigmoid and Mul ops (tests/test_onnx_import_ops.c). Graphs are built with the
 * exporter's writer (export/onnx.h); inputs are named "pixels", outputs "logits". */
#ifndef QAT_TEST_ONNX_IMPORT_H
#define QAT_TEST_ONNX_IMPORT_H

#include "onnx.h"
#include <stdint.h>

/* The suite's temporary directory (CUnit setup / teardown) and a path in it (8 rotating buffers). */
int it_setup(void);
int it_teardown(void);
const char *it_path(const char *name);
/* n values N(0, scale), deterministic by seed (malloc). */
float *it_randn(int64_t n, float scale, uint64_t seed);
/* A float initializer of N(0, scale) values / of n BN variances in 0.2 .. 1.2. */
void it_init_randn(onnx_b *b, const char *name, int ndim, const int64_t *dims, float scale, uint64_t seed);
void it_init_pos(onnx_b *b, const char *name, int n, uint64_t seed);
/* ONNX Runtime's logits of n NCHW inputs x (tests/onnx/ort_run.js), or 0 when it did not run. */
int it_ort_logits(const char *model, const float *x, int n, int c, int h, int w, float *out, int classes);
/* Imports path and runs 6 random images through qat (FP32) and ONNX Runtime: asserts
 * max |qat - ORT| <= tol * max(1, max |logit|) and returns that ratio. */
double it_check_against_ort(const char *path, int c, int h, int w, int classes, double tol);
/* Rewrites the model at path: node `node`'s attribute `attr` (present) becomes the string value. */
void test_onnx_set_string_attr(const char *path, const char *node, const char *attr, const char *value);
/* The import of path fails with one line starting with path and containing want. */
void it_expect_fail(const char *path, const char *want);

#endif
