/* Seeds for the file-parser fuzz targets (`make fuzz`): fuzz_seeds OUT writes valid inputs of
 * each format into OUT/{ckpt,idx,png,cifar,spec}/ — small real files made by the library's own
 * writers (a two-step training run and its PTQ checkpoint for ckpt), framed as each target
 * expects (fuzz_idx.c and fuzz_cifar.c take a length prefix). The spec presets are copied by the
 * Makefile. */
#include "images.h"
#include "qat.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char out[1024];

static void die(const char *what) {
    fprintf(stderr, "fuzz_seeds: %s: %s\n", what, qat_last_error());
    exit(1);
}

static void put(const char *sub, const char *name, const void *a, size_t na, const void *b, size_t nb) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", out, sub);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/%s/%s", out, sub, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(a, 1, na, f) != na || (nb && fwrite(b, 1, nb, f) != nb) || fclose(f)) {
        perror(path);
        exit(1);
    }
}

static void be32(uint8_t *p, uint32_t v) { p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v; }

/* n images of s x s (a bar in band label*s/3) and their labels, as IDX files in dir/prefix-*. */
static size_t idx_pair(int n, int s, int classes, uint8_t *img, uint8_t *lab) {
    be32(img, 0x803), be32(img + 4, n), be32(img + 8, s), be32(img + 12, s);
    be32(lab, 0x801), be32(lab + 4, n);
    for (int i = 0; i < n; i++) {
        int k = i % classes;
        lab[8 + i] = (uint8_t)k;
        for (int p = 0; p < s * s; p++)
            img[16 + (size_t)i * s * s + p] = (uint8_t)((p / s) * classes / s == k ? 220 : (p * 37 + i) % 40);
    }
    return 16 + (size_t)n * s * s;
}

static void write_file(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n, f) != n || fclose(f)) {
        perror(path);
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
        return 2;
    }
    snprintf(out, sizeof out, "%s", argv[1]);
    mkdir(out, 0777);
    static uint8_t img[16 + 96 * 12 * 12], lab[8 + 96];

    /* idx: length prefix, images, labels */
    for (int v = 0; v < 3; v++) {
        int n = v == 2 ? 1 : 6 * (v + 1), s = v == 1 ? 28 : 12;
        static uint8_t big[16 + 12 * 28 * 28];
        size_t ni = idx_pair(n, s, 3, big, lab);
        uint8_t pre[4] = {ni & 255, ni >> 8 & 255, ni >> 16 & 255, ni >> 24 & 255};
        uint8_t *both = malloc(4 + ni);
        memcpy(both, pre, 4), memcpy(both + 4, big, ni);
        char name[32];
        snprintf(name, sizeof name, "seed-%d", v);
        put("idx", name, both, 4 + ni, lab, 8 + (size_t)n);
        free(both);
    }

    /* png: gray and RGB, odd sizes */
    for (int v = 0; v < 3; v++) {
        int w = v == 0 ? 28 : v == 1 ? 32 : 3, h = v == 0 ? 28 : v == 1 ? 32 : 5;
        uint8_t px[32 * 32 * 3];
        for (int i = 0; i < w * h * 3; i++) px[i] = (uint8_t)(i * 7);
        char dir[1200], path[1300];
        snprintf(dir, sizeof dir, "%s/png", out);
        mkdir(dir, 0777);
        snprintf(path, sizeof path, "%s/seed-%d.png", dir, v);
        if ((v == 1 ? qat_png_write_rgb(path, w, h, px) : qat_png_write_gray(path, w, h, px)))
            die(path);
    }

    /* cifar: length prefix, names, records of 1 label + 3 x 32 x 32 planes */
    for (int v = 0; v < 2; v++) {
        const char *names = v ? "airplane\nautomobile\nbird\n" : "";
        size_t nn = strlen(names), nrec = 3, rec = 1 + 3072;
        uint8_t *b = malloc(2 + nn + nrec * rec);
        b[0] = nn & 255, b[1] = nn >> 8;
        memcpy(b + 2, names, nn);
        for (size_t r = 0; r < nrec; r++) {
            uint8_t *p = b + 2 + nn + r * rec;
            p[0] = (uint8_t)r;
            for (int i = 1; i < (int)rec; i++) p[i] = (uint8_t)(i * 13 + r);
        }
        char name[32];
        snprintf(name, sizeof name, "seed-%d", v);
        put("cifar", name, b, 2 + nn + nrec * rec, NULL, 0);
        free(b);
    }

    /* ckpt: a tiny FP32 run of two steps, then its PTQ checkpoint */
    char data[1200], run[1200], fp[1300], ptq[1300], dst[1300], path[1300];
    snprintf(data, sizeof data, "%s/ckpt-data", out);
    mkdir(data, 0777);
    size_t ni = idx_pair(96, 12, 3, img, lab);
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", data), write_file(path, img, ni);
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte", data), write_file(path, lab, 8 + 96);
    ni = idx_pair(32, 12, 3, img, lab);
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte", data), write_file(path, img, ni);
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte", data), write_file(path, lab, 8 + 32);
    snprintf(path, sizeof path, "%s/tiny.spec", data);
    const char *spec = "name tiny\nstem conv k=3 c=8 s=1 act=relu6\nblock ir t=2 c=8 n=1 s=1\n"
                       "head conv k=1 c=16 act=relu6\npool avg\nclassifier\n";
    write_file(path, spec, strlen(spec));
    snprintf(run, sizeof run, "%s/ckpt-run", out);
    qat_train_opts o;
    qat_train_opts_default(&o);
    o.data = data, o.model = path, o.out_dir = run, o.epochs = 2, o.batch = 32, o.threads = 1;
    o.max_steps = 2;
    if (qat_train_run(&o)) die("train");
    snprintf(fp, sizeof fp, "%s/last.ckpt", run);
    qat_ptq_opts p;
    qat_ptq_opts_default(&p);
    snprintf(ptq, sizeof ptq, "%s/ptq.ckpt", run);
    p.ckpt = fp, p.data = data, p.out = ptq, p.calib_batches = 2, p.batch = 16, p.threads = 1;
    qat_eval_result a, b;
    if (qat_ptq_run(&p, &a, &b)) die("ptq");
    snprintf(dst, sizeof dst, "%s/ckpt", out);
    mkdir(dst, 0777);
    const char *srcs[2] = {fp, ptq};
    for (int v = 0; v < 2; v++) {
        FILE *f = fopen(srcs[v], "rb");
        static uint8_t buf[1 << 22];
        size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
        if (f) fclose(f);
        snprintf(path, sizeof path, "%s/seed-%d.ckpt", dst, v);
        write_file(path, buf, n);
    }
    return 0;
}
