/* Shared test helpers: a central-difference gradient check over autograd graphs and
 * comparisons that print the first mismatching index (CMSIS-NN habit). */
#ifndef QAT_TEST_UTIL_H
#define QAT_TEST_UTIL_H

#include <CUnit/CUnit.h>
#include "ops.h"

/* Builds the graph under test from `inputs` (leaf tensors) and returns its output. */
typedef qat_tensor *(*qat_test_build_fn)(qat_ctx *ctx, qat_tensor **inputs, void *user);

/* A leaf tensor with malloc'd data (filled N(0, scale)) and grad; free with test_leaf_free. */
qat_tensor *test_leaf(int ndim, const int *shape, float scale, uint64_t seed);
void test_leaf_free(qat_tensor *t);

/* Checks d(sum(out .* R))/d inputs[i] from backward against central differences in double-ish
 * precision for every input with requires_grad, R a fixed random weighting. `training` sets
 * ctx->training. Returns the worst relative error seen (and CU_ASSERTs it is below tol). */
double test_gradcheck(const char *what, qat_test_build_fn build, int ninputs, qat_tensor **inputs,
                      void *user, int training, float eps, double tol);

/* Backward over ctx's tape from `out` with its gradient seeded to w (out->numel floats). */
void test_backward_from(qat_ctx *ctx, qat_tensor *out, const float *w);

/* Builds the graph on `inputs` (their grads zeroed first), seeds the output gradient with w and
 * runs backward; copies the output to y and the inputs' grads, concatenated, to g (either may
 * be NULL). Returns the output's numel. */
int64_t test_run_backward(qat_test_build_fn build, int ninputs, qat_tensor **inputs, void *user,
                          int training, const float *w, float *y, float *g);

/* Max |a-b| / max(1, |b|) over n values; prints the first index beyond tol. */
double test_compare(const char *what, const float *a, const float *b, int64_t n, double tol);

/* Writes a 3-class IDX pair DIR/SPLIT-{images-idx3,labels-idx1}-ubyte of n s x s images: class k
 * is a bright bar in row band k plus noise, deterministic by seed (the tiny training sets). */
void test_write_bars_idx(const char *dir, const char *split, int n, int s, uint64_t seed);

/* The same three classes as an ImageFolder of PNGs: DIR/<0|1|2>/NNNN.png, n images in all
 * (classes in turn), no train/ test/ folders (qat holds out the val split). */
void test_write_bars_folder(const char *dir, int n, int s, uint64_t seed);

/* A model of spec_text for s x s x 1 inputs and 3 classes with random weights and non-trivial
 * BN statistics and affine parameters (deterministic by seed); *spec gets the parsed spec. */
struct qat_model;
struct qat_spec;
struct qat_model *test_random_model(const char *spec_text, int s, struct qat_spec **spec,
                                    uint64_t seed);
/* The same for s x s x c inputs (RGB: c = 3). */
struct qat_model *test_random_model_c(const char *spec_text, int s, int c, struct qat_spec **spec,
                                      uint64_t seed);

/* Whole file into a malloc'd buffer with a NUL after it; *len = its size, -1 when unreadable. */
unsigned char *test_slurp(const char *path, long *len);
/* Runs "ENV ./qat ARGS" (env may be "") with stdout and stderr into DIR/out.txt and DIR/err.txt,
 * read back into out and err (malloc'd, NUL-terminated); returns the exit status (-1: signal). */
int test_run_qat(const char *dir, const char *env, const char *args, char **out, char **err);
/* Number of '\n' in s. */
int test_count_lines(const char *s);
/* rm -rf DIR (a test's mkdtemp directory); 0 when it worked. */
int test_rm_tree(const char *dir);
/* The CLI tests' fixture: a mkdtemp directory from TEMPLATE ("/tmp/qat_x_XXXXXX") in tmpdir
 * (256 bytes), a 3-class bars IDX set (96 train, 32 test, 12x12) in data_dir and a tiny
 * mbv2-style spec file in spec_path (300 bytes each); 0 when it worked. */
int test_cli_fixture(const char *template_, char *tmpdir, char *data_dir, char *spec_path);
/* Writes len bytes to path (asserts it worked). */
void test_spit(const char *path, const void *b, size_t len);
/* splitmix64 step on *state, upper 32 bits: the tests' small deterministic generator. */
uint32_t test_splitmix32(uint64_t *state);

/* ONNX Runtime's logits (n * classes floats into out) of n NCHW float inputs x fed to model's
 * "pixels" (tests/onnx/ort_run.js, files in dir); 0 with a line printed when it did not run. */
int test_ort_logits(const char *dir, const char *model, const float *x, int n, int c, int h, int w, float *out,
                    int classes);

/* Registers a CUnit suite with the given tests (NULL-terminated pairs of name, fn). */
void test_add_suite(const char *name, ...);

#endif
