/* mkdata DIR: the fault harness's small inputs (tests/faults/faults.sh): an IDX set of 12x12
 * bars in three classes (DIR/idx, 96 training and 32 test images), the same as a CIFAR-10 binary
 * directory of 32x32x3 images (DIR/cifar), a 12x12 gray PNG (DIR/img.png) and a small spec
 * (DIR/tiny.spec). */
#include "images.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void put(const char *dir, const char *name, const void *b, size_t n) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n, f) != n || fclose(f)) {
        perror(path);
        exit(1);
    }
}

static void be32(uint8_t *p, uint32_t v) { p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v; }

static uint8_t pixel(int k, int i, int p, int s) {
    return (uint8_t)((p / s) * 3 / s == k ? 200 + (p * 7 + i) % 50 : (p * 37 + i * 11) % 60);
}

static void idx_split(const char *dir, const char *split, int n, int s) {
    uint8_t *img = malloc(16 + (size_t)n * s * s), *lab = malloc(8 + (size_t)n);
    be32(img, 0x803), be32(img + 4, n), be32(img + 8, s), be32(img + 12, s);
    be32(lab, 0x801), be32(lab + 4, n);
    for (int i = 0; i < n; i++) {
        lab[8 + i] = (uint8_t)(i % 3);
        for (int p = 0; p < s * s; p++) img[16 + (size_t)i * s * s + p] = pixel(i % 3, i, p, s);
    }
    char name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", split);
    put(dir, name, img, 16 + (size_t)n * s * s);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", split);
    put(dir, name, lab, 8 + (size_t)n);
    free(img), free(lab);
}

static void cifar_batch(const char *dir, const char *name, int n) {
    size_t rec = 1 + 3072;
    uint8_t *b = malloc(rec * n);
    for (int i = 0; i < n; i++) {
        b[rec * i] = (uint8_t)(i % 3);
        for (int p = 0; p < 3072; p++) b[rec * i + 1 + p] = pixel(i % 3, i, p % 1024, 32);
    }
    put(dir, name, b, rec * n);
    free(b);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: mkdata DIR\n");
        return 2;
    }
    char d[1024];
    mkdir(argv[1], 0777);
    snprintf(d, sizeof d, "%s/idx", argv[1]);
    mkdir(d, 0777);
    idx_split(d, "train", 96, 12);
    idx_split(d, "t10k", 32, 12);
    snprintf(d, sizeof d, "%s/cifar", argv[1]);
    mkdir(d, 0777);
    cifar_batch(d, "data_batch_1.bin", 48);
    cifar_batch(d, "test_batch.bin", 16);
    put(d, "batches.meta.txt", "bars0\nbars1\nbars2\n", 18);
    const char *spec = "name tiny\nstem conv k=3 c=8 s=1 act=relu6\nblock ir t=2 c=8 n=1 s=1\n"
                       "head conv k=1 c=16 act=relu6\npool avg\nclassifier\n";
    put(argv[1], "tiny.spec", spec, strlen(spec));
    uint8_t px[144];
    for (int p = 0; p < 144; p++) px[p] = pixel(1, 0, p, 12);
    snprintf(d, sizeof d, "%s/img.png", argv[1]);
    if (qat_png_write_gray(d, 12, 12, px)) {
        fprintf(stderr, "mkdata: %s\n", qat_last_error());
        return 1;
    }
    return 0;
}
