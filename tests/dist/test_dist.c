/* Helper of tests/dist/test_dist.sh (the 2-rank case of make test):
 *   test_dist data DIR [N [T]]      writes a small 3-class IDX dataset (bars in 16x16 images),
 *                                   N training images [384], T test images [96]
 *   test_dist compare A B TOL       exit 0 when checkpoints A and B hold the same parameters and
 *                                   BN statistics within TOL (largest |a-b| / (1 + |b|)),
 *                                   1 when they differ more; prints the largest difference */
#include "base.h"
#include "train.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void put_be32(FILE *f, uint32_t v) {
    unsigned char b[4] = {v >> 24, v >> 16, v >> 8, v};
    fwrite(b, 1, 4, f);
}

static int write_split(const char *dir, const char *split, int n, int s, uint64_t seed) {
    char path[600];
    qat_rng r;
    qat_rng_seed(&r, seed);
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, split);
    FILE *fi = fopen(path, "wb");
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, split);
    FILE *fl = fopen(path, "wb");
    if (!fi || !fl) return 1;
    put_be32(fi, 2051), put_be32(fi, n), put_be32(fi, s), put_be32(fi, s);
    put_be32(fl, 2049), put_be32(fl, n);
    for (int i = 0; i < n; i++) {
        int k = (int)qat_rng_below(&r, 3);
        unsigned char lab = (unsigned char)k;
        for (int p = 0; p < s * s; p++) {
            unsigned char v = (unsigned char)((int)qat_rng_below(&r, 60) + ((p / s) * 3 / s == k ? 150 : 0));
            fputc(v, fi);
        }
        fputc(lab, fl);
    }
    return (fclose(fi) | fclose(fl)) != 0;
}

static double max_rel_diff(const float *a, const float *b, int64_t n, int64_t *where) {
    double worst = 0;
    *where = -1;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (1.0 + fabs((double)b[i]));
        if (!(d <= worst)) worst = d, *where = i; /* NaN counts as the worst */
    }
    return worst;
}

int main(int argc, char **argv) {
    if (argc >= 3 && argc <= 5 && !strcmp(argv[1], "data")) {
        mkdir(argv[2], 0777);
        if (write_split(argv[2], "train", argc >= 4 ? atoi(argv[3]) : 384, 16, 1) ||
            write_split(argv[2], "t10k", argc == 5 ? atoi(argv[4]) : 96, 16, 2)) {
            fprintf(stderr, "test_dist: cannot write %s\n", argv[2]);
            return 2;
        }
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "compare")) {
        qat_run a, b;
        if (qat_checkpoint_load(argv[2], &a) || qat_checkpoint_load(argv[3], &b)) {
            fprintf(stderr, "test_dist: %s\n", qat_last_error());
            return 2;
        }
        if (a.model->nparams != b.model->nparams || a.model->nbuffers != b.model->nbuffers ||
            a.step != b.step) {
            fprintf(stderr, "test_dist: %s and %s are not the same run\n", argv[2], argv[3]);
            return 2;
        }
        int64_t wp, wb;
        double dp = max_rel_diff(a.model->params, b.model->params, a.model->nparams, &wp);
        double db = max_rel_diff(a.model->buffers, b.model->buffers, a.model->nbuffers, &wb);
        double tol = atof(argv[4]);
        printf("step %lld: parameters differ by at most %.3g (index %lld), BN statistics by %.3g "
               "(index %lld); tolerance %.3g\n", (long long)a.step, dp, (long long)wp, db,
               (long long)wb, tol);
        qat_run_free(&a);
        qat_run_free(&b);
        return dp <= tol && db <= tol ? 0 : 1;
    }
    fprintf(stderr, "usage: test_dist data DIR [N] | compare A.ckpt B.ckpt TOL\n");
    return 2;
}
