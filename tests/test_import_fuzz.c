/* Regressions of what libFuzzer (make fuzz-import: ASan + UBSan on export/onnx_import*.c) found,
 * each rebuilt with the exporter's writer (export/onnx.h) in the shape of the crashing input
 * rather than committed as a binary: the import fails with one line naming the file and the
 * tensor or node, and nothing is read outside what the file holds. */
#include "model.h"
#include "onnx.h"
#include "onnx_import.h"
#include "test_util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[64];

static int setup(void) {
    snprintf(dir, sizeof dir, "/tmp/qat_impfuzz_XXXXXX");
    return mkdtemp(dir) ? 0 : 1;
}
static int teardown(void) {
    return test_rm_tree(dir);
}

static const float w[16] = {0.1f, -0.2f, 0.3f, 0.05f, -0.4f, 0.2f, 0.1f, 0.7f, -0.1f, 0.3f, 0.2f, -0.6f, 0.4f, 0.1f, -0.3f, 0.2f};

/* (N, 1, 4, 4) -> Conv 1x1 (2 channels, bias) -> Clip(lo, hi) -> GlobalAveragePool -> Flatten ->
 * Gemm (2 -> 2), with hi an initializer of the shape given. */
static void write_clip_graph(const char *path, int hi_ndim, const int64_t *hi_dims) {
    onnx_b *b = onnx_b_create();
    onnx_b_input(b, "x", ONNX_F32, 4, (int64_t[]){-1, 1, 4, 4});
    onnx_b_output(b, "y", ONNX_F32, 2, (int64_t[]){-1, 2});
    onnx_b_init(b, "cw", ONNX_F32, 4, (int64_t[]){2, 1, 1, 1}, w);
    onnx_b_init(b, "cb", ONNX_F32, 1, (int64_t[]){2}, w + 2);
    onnx_b_node(b, "Conv", "conv", 3, (const char *[]){"x", "cw", "cb"}, "c");
    float lo = 0, six[1] = {6};
    onnx_b_init(b, "lo", ONNX_F32, 0, NULL, &lo);
    onnx_b_init(b, "hi", ONNX_F32, hi_ndim, hi_dims, six); /* no value read when a dimension is 0 */
    onnx_b_node(b, "Clip", "clip", 3, (const char *[]){"c", "lo", "hi"}, "r");
    onnx_b_node(b, "GlobalAveragePool", "gap", 1, (const char *[]){"r"}, "p");
    onnx_b_node(b, "Flatten", "flat", 1, (const char *[]){"p"}, "f");
    onnx_b_init(b, "fw", ONNX_F32, 2, (int64_t[]){2, 2}, w + 4);
    onnx_b_init(b, "fb", ONNX_F32, 1, (int64_t[]){2}, w + 8);
    onnx_node *n = onnx_b_node(b, "Gemm", "gemm", 3, (const char *[]){"f", "fw", "fb"}, "y");
    onnx_b_attr_int(b, n, "transB", 1);
    CU_ASSERT_FATAL(onnx_b_write(b, "clip", 13, path, NULL) == QAT_OK);
    onnx_b_destroy(b);
}

static void expect_fail(const char *path, const char *want) {
    qat_model *m = NULL;
    qat_status st = qat_onnx_import(path, &m);
    const char *e = qat_last_error();
    int ok = st != QAT_OK && m == NULL && !strncmp(e, path, strlen(path)) && strstr(e, want) && !strchr(e, '\n');
    if (!ok) printf("\n  %s: status %d, '%s'; expected '%s'\n", path, st, st ? e : "(imported)", want);
    CU_ASSERT(ok);
    qat_model_free(m);
}

/* Finding 1: a float initializer with a 0 dimension (Clip's upper bound, shape (0, 0, 8256), no
 * data) was memcpy'd from the NULL its empty field leaves (UBSan), then read as a bound past its
 * 0-byte allocation. */
static void test_empty_tensor(void) {
    char ok_path[128], bad[128];
    snprintf(ok_path, sizeof ok_path, "%s/clip_ok.onnx", dir);
    snprintf(bad, sizeof bad, "%s/clip_empty.onnx", dir);
    write_clip_graph(ok_path, 0, NULL); /* the same graph with a scalar bound imports */
    qat_model *m = NULL;
    qat_status st = qat_onnx_import(ok_path, &m);
    if (st) printf("\n  %s\n", qat_last_error());
    CU_ASSERT(st == QAT_OK);
    qat_model_free(m);
    write_clip_graph(bad, 3, (int64_t[]){0, 0, 8256});
    expect_fail(bad, "tensor 'hi' is empty");
}

void register_import_fuzz_tests(void) {
    CU_pSuite s = CU_add_suite("import_fuzz", setup, teardown);
    CU_add_test(s, "finding 1: empty float initializer (Clip bound of shape 0x0x8256)", test_empty_tensor);
}
