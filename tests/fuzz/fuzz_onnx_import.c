/* libFuzzer entry point for the ONNX importer (export/onnx_import.c, through libqat.a built with
 * ASan + UBSan + coverage): `make fuzz-import`.
 *
 * An input either imports (a model whose spec text parses again to the same text) or fails with
 * one error line and *out left NULL; a crash, a sanitizer report, a leak or a multi-line message
 * is a finding. With QAT_FUZZ_SEEDS=DIR in the environment, LLVMFuzzerInitialize first writes
 * valid seed models into DIR (built with the exporter's writer, export/onnx.h). */
#include "model.h"
#include "onnx.h"
#include "onnx_import.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qat_model *m = (qat_model *)1;
    if (qat_onnx_import_bytes(data, size, "fuzz.onnx", &m)) {
        if (m != NULL || strchr(qat_last_error(), '\n') || strncmp(qat_last_error(), "fuzz.onnx: ", 11))
            __builtin_trap();
        return 0;
    }
    qat_spec *again;
    if (!m || qat_spec_parse(qat_spec_text(m->spec), "again", &again)) __builtin_trap();
    if (strcmp(qat_spec_text(again), qat_spec_text(m->spec))) __builtin_trap();
    qat_spec_free(again);
    qat_model_free(m);
    return 0;
}

static const float wts[64] = {0.1f, -0.2f, 0.3f, 0.05f, -0.4f, 0.2f, 0.1f, 0.7f, -0.1f, 0.3f, 0.2f, -0.6f,
                              0.4f, 0.1f, -0.3f, 0.2f, 0.5f, 0.1f, -0.2f, 0.3f, 0.25f, -0.15f, 0.05f, 0.6f,
                              0.1f, -0.2f, 0.3f, 0.05f, -0.4f, 0.2f, 0.1f, 0.7f, -0.1f, 0.3f, 0.2f, -0.6f,
                              0.4f, 0.1f, -0.3f, 0.2f, 0.5f, 0.1f, -0.2f, 0.3f, 0.25f, -0.15f, 0.05f, 0.6f,
                              0.1f, -0.2f, 0.3f, 0.05f, -0.4f, 0.2f, 0.1f, 0.7f, -0.1f, 0.3f, 0.2f, -0.6f,
                              0.9f, 0.8f, 0.7f, 0.6f};

/* Conv + BN + Clip, depthwise conv + Relu, residual Add, HardSwish, pool, Shape arithmetic,
 * Reshape, Gemm (opset 13 and 17) or MatMul + Add (opset 11). */
static void seed(const char *dir, int opset, int matmul) {
    char path[512];
    snprintf(path, sizeof path, "%s/seed_%d_%d.onnx", dir, opset, matmul);
    onnx_b *b = onnx_b_create();
    onnx_b_input(b, "x", ONNX_F32, 4, (int64_t[]){-1, 1, 5, 5});
    onnx_b_output(b, "y", ONNX_F32, 2, (int64_t[]){-1, 2});
    onnx_b_init(b, "w0", ONNX_F32, 4, (int64_t[]){4, 1, 3, 3}, wts);
    onnx_node *n = onnx_b_node(b, "Conv", "c0", 2, (const char *[]){"x", "w0"}, "a");
    onnx_b_attr_ints(b, n, "pads", 4, (int64_t[]){1, 1, 1, 1});
    onnx_b_init(b, "s", ONNX_F32, 1, (int64_t[]){4}, wts + 60);
    onnx_b_init(b, "bb", ONNX_F32, 1, (int64_t[]){4}, wts);
    onnx_b_init(b, "m", ONNX_F32, 1, (int64_t[]){4}, wts + 4);
    onnx_b_init(b, "v", ONNX_F32, 1, (int64_t[]){4}, wts + 60);
    onnx_b_node(b, "BatchNormalization", "bn", 5, (const char *[]){"a", "s", "bb", "m", "v"}, "b");
    float lo = 0, hi = 6;
    onnx_b_init(b, "lo", ONNX_F32, 0, NULL, &lo);
    onnx_b_init(b, "hi", ONNX_F32, 0, NULL, &hi);
    onnx_b_node(b, "Clip", "clip", 3, (const char *[]){"b", "lo", "hi"}, "c");
    onnx_b_init(b, "w1", ONNX_F32, 4, (int64_t[]){4, 1, 3, 3}, wts + 9);
    onnx_b_init(b, "b1", ONNX_F32, 1, (int64_t[]){4}, wts + 20);
    n = onnx_b_node(b, "Conv", "dw", 3, (const char *[]){"c", "w1", "b1"}, "d");
    onnx_b_attr_ints(b, n, "pads", 4, (int64_t[]){1, 1, 1, 1});
    onnx_b_attr_int(b, n, "group", 4);
    onnx_b_node(b, "Relu", "relu", 1, (const char *[]){"d"}, "e");
    onnx_b_node(b, "Add", "add", 2, (const char *[]){"e", "c"}, "f");
    if (opset >= 14) onnx_b_node(b, "HardSwish", "hs", 1, (const char *[]){"f"}, "f1");
    else onnx_b_node(b, "Identity", "id", 1, (const char *[]){"f"}, "f1");
    onnx_b_node(b, "GlobalAveragePool", "gap", 1, (const char *[]){"f1"}, "g");
    onnx_b_node(b, "Shape", "shape", 1, (const char *[]){"g"}, "sh");
    int64_t zero = 0, m1 = -1;
    onnx_b_init(b, "i0", ONNX_I64, 0, NULL, &zero);
    onnx_b_node(b, "Gather", "gather", 2, (const char *[]){"sh", "i0"}, "n0");
    onnx_b_init(b, "ax", ONNX_I64, 1, (int64_t[]){1}, &zero);
    onnx_b_node(b, "Unsqueeze", "unsq", 2, (const char *[]){"n0", "ax"}, "n1");
    onnx_b_init(b, "m1", ONNX_I64, 1, (int64_t[]){1}, &m1);
    n = onnx_b_node(b, "Concat", "cat", 2, (const char *[]){"n1", "m1"}, "ns");
    onnx_b_attr_int(b, n, "axis", 0);
    onnx_b_node(b, "Reshape", "reshape", 2, (const char *[]){"g", "ns"}, "h");
    onnx_b_init(b, "fw", ONNX_F32, 2, (int64_t[]){matmul ? 4 : 2, matmul ? 2 : 4}, wts + 30);
    onnx_b_init(b, "fb", ONNX_F32, 1, (int64_t[]){2}, wts + 40);
    if (matmul) {
        onnx_b_node(b, "MatMul", "mm", 2, (const char *[]){"h", "fw"}, "i");
        onnx_b_node(b, "Add", "bias", 2, (const char *[]){"i", "fb"}, "y");
    } else {
        n = onnx_b_node(b, "Gemm", "gemm", 3, (const char *[]){"h", "fw", "fb"}, "y");
        onnx_b_attr_int(b, n, "transB", 1);
    }
    if (onnx_b_write(b, "seed", opset, path, NULL)) fprintf(stderr, "seed %s: %s\n", path, qat_last_error());
    onnx_b_destroy(b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *dir = getenv("QAT_FUZZ_SEEDS");
    if (dir) {
        seed(dir, 11, 1);
        seed(dir, 13, 0);
        seed(dir, 17, 0);
    }
    return 0;
}
