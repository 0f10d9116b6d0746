/* libFuzzer entry point for the .q8 loader (runtime/q8_file.c, q8_model.c, q8_kinds.c + base/container.c): `make fuzz`.
 *
 * Each input is tried twice: as given (the container's own checks: magic, table, bounds, CRCs)
 * and with every section CRC and the header CRC recomputed, so that mutations reach the q8 record
 * parser and the validator behind the checksums. An accepted model must pass qat_q8_validate
 * again; anything else (a crash, a sanitizer report, a leak) is a finding.
 *
 * Built with -DQAT_FUZZ_SEEDGEN (no libFuzzer) the same file is the seed generator: it writes
 * valid .q8 files into the corpus directory given as argv[1]. */
#include "q8.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "container_crc.h"

static void try_load(const uint8_t *data, size_t size) {
    qat_q8_model *m = (qat_q8_model *)1;
    qat_status st = qat_q8_load_memory(data, size, "fuzz.q8", &m);
    if (st != QAT_OK) {
        if (m != NULL) __builtin_trap(); /* a failed load must leave *out = NULL */
        return;
    }
    if (!m || qat_q8_validate(m, "fuzz.q8") != QAT_OK) __builtin_trap();
    int64_t macs = 0;
    for (int i = 0; i < m->nlayers; i++) macs += qat_q8_layer_macs(&m->layers[i]);
    if (macs < 0) __builtin_trap();
    qat_q8_free(m);
}

#ifndef QAT_FUZZ_SEEDGEN

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    try_load(data, size);
    unsigned char *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    fix_crcs(copy, size);
    try_load(copy, size);
    free(copy);
    return 0;
}

#else /* the seed generator */

static uint64_t seed = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
}

static void fill_arrays(qat_q8_layer *L, int per, int int_bias) {
    L->weight = malloc((size_t)L->out_c * per);
    for (int j = 0; j < L->out_c * per; j++) L->weight[j] = (int8_t)((int)(next() % 255) - 127);
    if (int_bias) {
        L->bias = malloc((size_t)L->out_c * 4);
        for (int c = 0; c < L->out_c; c++) L->bias[c] = (int32_t)(next() % 20001) - 10000;
    }
    L->mult = malloc((size_t)L->out_c * 4);
    L->wscale = malloc((size_t)L->out_c * 4);
    for (int c = 0; c < L->out_c; c++) {
        L->mult[c] = 1e-3f * (float)(1 + next() % 100);
        L->wscale[c] = 1e-2f * (float)(1 + next() % 100);
    }
}

static void conv(qat_q8_layer *L, const char *name, int input, int h, int cin, int cout, int k,
                 int stride, int pad, int groups, float sx, int zx, float sy, int zy) {
    snprintf(L->name, sizeof L->name, "%s", name);
    L->kind = QAT_Q8_CONV, L->act = QAT_Q8_ACT_RELU;
    L->input = input, L->skip = -1;
    L->in_h = L->in_w = h, L->in_c = cin;
    L->out_h = L->out_w = (h + 2 * pad - k) / stride + 1, L->out_c = cout;
    L->k = k, L->stride = stride, L->pad = pad, L->groups = groups, L->wbits = 8;
    fill_arrays(L, k * k * (groups == 1 ? cin : 1), 1);
    L->sx = sx, L->zx = zx, L->sy = sy, L->zy = zy, L->lo = zy, L->hi = 255;
}

/* conv 3x3 -> depthwise 3x3 s2 -> 1x1 -> add -> avgpool -> linear (with_fbias: float bias) */
static qat_q8_model *seed_model(int with_fbias) {
    qat_q8_model *m = calloc(1, sizeof *m);
    m->in_h = m->in_w = 8, m->in_c = 3, m->nclasses = 10;
    m->in_scale = 1.0f / 64, m->in_zp = 128, m->in_qmin = 0, m->in_qmax = 255;
    for (int c = 0; c < 4; c++) m->mean[c] = 0.5f, m->std[c] = 0.25f;
    snprintf(m->qconfig, sizeof m->qconfig, "x86");
    snprintf(m->arch, sizeof m->arch, "fuzz-seed");
    m->nlayers = 6;
    m->layers = calloc(6, sizeof *m->layers);
    qat_q8_layer *L = m->layers;
    conv(&L[0], "features.0", -1, 8, 3, 8, 3, 1, 1, 1, m->in_scale, 128, 0.05f, 0);
    conv(&L[1], "features.1.dw", 0, 8, 8, 8, 3, 2, 1, 8, 0.05f, 0, 0.04f, 3);
    conv(&L[2], "features.1.pw", 1, 4, 8, 8, 1, 1, 0, 1, 0.04f, 3, 0.06f, 100);
    qat_q8_layer *A = &L[3];
    snprintf(A->name, sizeof A->name, "features.1.add");
    A->kind = QAT_Q8_ADD, A->input = 2, A->skip = 1;
    A->in_h = A->out_h = A->in_w = A->out_w = 4, A->in_c = A->out_c = 8;
    A->sx = 0.06f, A->zx = 100, A->sb = 0.04f, A->zb = 3, A->sy = 0.08f, A->zy = 90, A->hi = 255;
    qat_q8_layer *P = &L[4];
    snprintf(P->name, sizeof P->name, "pool");
    P->kind = QAT_Q8_AVGPOOL, P->input = 3, P->skip = -1;
    P->in_h = P->in_w = 4, P->in_c = P->out_c = 8, P->out_h = P->out_w = 1;
    P->sx = 0.08f, P->zx = 90, P->sy = 0.05f, P->zy = 80, P->hi = 255, P->pool_mult = 0.1f;
    qat_q8_layer *C = &L[5];
    snprintf(C->name, sizeof C->name, "classifier");
    C->kind = QAT_Q8_LINEAR, C->input = 4, C->skip = -1;
    C->in_h = C->in_w = C->out_h = C->out_w = 1, C->in_c = 8, C->out_c = 10, C->wbits = 8;
    fill_arrays(C, 8, 0);
    if (with_fbias) {
        C->fbias = malloc(10 * 4);
        for (int c = 0; c < 10; c++) C->fbias[c] = 0.01f * (float)c - 0.05f;
    }
    C->sx = 0.05f, C->zx = 80;
    return m;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    for (int v = 0; v < 2; v++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/seed-%d.q8", argv[1], v);
        qat_q8_model *m = seed_model(v == 0);
        qat_status st = qat_q8_save(m, path);
        qat_q8_free(m);
        if (st) {
            fprintf(stderr, "%s\n", qat_last_error());
            return 1;
        }
        /* A seed must load, and recomputing its CRCs must not change a byte (checks fix_crcs). */
        FILE *f = fopen(path, "rb");
        static unsigned char buf[1 << 16], copy[1 << 16];
        size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
        if (f) fclose(f);
        memcpy(copy, buf, n);
        fix_crcs(copy, n);
        if (!n || memcmp(copy, buf, n) || qat_q8_load_memory(buf, n, path, &m)) {
            fprintf(stderr, "%s: seed does not load back: %s\n", path, qat_last_error());
            return 1;
        }
        qat_q8_free(m);
        try_load(buf, n);
    }
    return 0;
}

#endif
