/* RGB through the whole flow, as a user runs it: a generated colour set whose classes differ only
 * in hue (a square of red, green or blue on grey noise, each of random size, place and a luma
 * drawn from the same range for every class, so a greyscale copy carries no class information),
 * written as a CIFAR-10 binary directory and as a PNG folder; ./qat trains a small MobileNetV3
 * (hardswish, squeeze-and-excite, 5x5 depthwise) on 32x32x3, quantizes it (the INT8 logits must
 * equal the simulation on every test image), and classifies colour PNGs with `qat infer`.
 * Skipped (with a note) when ./qat is not built. */
#include "dataset.h"
#include "test_util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SIDE 32
#define NCLASS 3

static const char *class_names[NCLASS] = {"red", "green", "blue"};
/* hue of each class; scaled so that the square's luma (ITU-R 601, qat_image_convert's) is drawn
 * from [60, 95] whatever the class */
static const float hues[NCLASS][3] = {{1.0f, 0.3f, 0.3f}, {0.3f, 1.0f, 0.3f}, {0.3f, 0.3f, 1.0f}};

static const char *v3_rgb_spec =
    "name v3rgb\n"
    "stem conv k=3 c=8 s=2 act=hardswish\n"
    "block v3 e=16 c=16 k=5 s=2 se=1 act=hardswish\n"
    "block v3 e=32 c=16 k=3 s=1 se=1 act=relu\n"
    "head conv k=1 c=32 act=hardswish\n"
    "pool avg\n"
    "classifier\n";

static char tmpdir[256];
static int have_cli;

/* One HWC image of class k. */
static void colour_image(uint8_t *img, int k, qat_rng *r) {
    for (int p = 0; p < SIDE * SIDE; p++) {
        int g = (int)qat_rng_below(r, 50);
        for (int c = 0; c < 3; c++) img[p * 3 + c] = (uint8_t)(g + (int)qat_rng_below(r, 8));
    }
    const float luma = 60.0f + 35.0f * qat_rng_uniform(r);
    const float y = 0.299f * hues[k][0] + 0.587f * hues[k][1] + 0.114f * hues[k][2];
    const int side = 8 + (int)qat_rng_below(r, 7);
    const int y0 = (int)qat_rng_below(r, SIDE - side + 1), x0 = (int)qat_rng_below(r, SIDE - side + 1);
    for (int i = y0; i < y0 + side; i++)
        for (int j = x0; j < x0 + side; j++)
            for (int c = 0; c < 3; c++) {
                float v = hues[k][c] * luma / y;
                img[(i * SIDE + j) * 3 + c] = (uint8_t)(v > 255 ? 255 : v);
            }
}

/* CIFAR-10 binary records: label, then the R, G and B planes. */
static void write_cifar(const char *path, int n, uint64_t seed) {
    FILE *f = fopen(path, "wb");
    QAT_ASSERT(f);
    qat_rng r;
    qat_rng_seed(&r, seed);
    uint8_t img[SIDE * SIDE * 3], rec[1 + SIDE * SIDE * 3];
    for (int i = 0; i < n; i++) {
        int k = i % NCLASS;
        colour_image(img, k, &r);
        rec[0] = (uint8_t)k;
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < SIDE * SIDE; p++) rec[1 + c * SIDE * SIDE + p] = img[p * 3 + c];
        fwrite(rec, 1, sizeof rec, f);
    }
    fclose(f);
}

static void write_folder(const char *root, const char *split, int n, uint64_t seed) {
    char path[600];
    qat_rng r;
    qat_rng_seed(&r, seed);
    uint8_t img[SIDE * SIDE * 3];
    snprintf(path, sizeof path, "%s/%s", root, split);
    QAT_ASSERT(mkdir(root, 0777) == 0 || errno == EEXIST);
    QAT_ASSERT(mkdir(path, 0777) == 0 || errno == EEXIST);
    for (int k = 0; k < NCLASS; k++) {
        snprintf(path, sizeof path, "%s/%s/%s", root, split, class_names[k]);
        QAT_ASSERT(mkdir(path, 0777) == 0 || errno == EEXIST);
    }
    for (int i = 0; i < n; i++) {
        int k = i % NCLASS;
        colour_image(img, k, &r);
        snprintf(path, sizeof path, "%s/%s/%s/%04d.png", root, split, class_names[k], i);
        QAT_ASSERT(qat_png_write_rgb(path, SIDE, SIDE, img) == QAT_OK);
    }
}

static int setup(void) {
    have_cli = access("./qat", X_OK) == 0;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qat_rgb_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    char path[400];
    snprintf(path, sizeof path, "%s/cifar", tmpdir);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/cifar/data_batch_1.bin", tmpdir);
    write_cifar(path, 480, 1);
    snprintf(path, sizeof path, "%s/cifar/test_batch.bin", tmpdir);
    write_cifar(path, 150, 2);
    snprintf(path, sizeof path, "%s/cifar/batches.meta.txt", tmpdir);
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fputs("red\ngreen\nblue\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/folder", tmpdir);
    write_folder(path, "train", 480, 3);
    write_folder(path, "test", 150, 4);
    /* one colour image per class to classify with `qat infer` */
    qat_rng r;
    qat_rng_seed(&r, 5);
    uint8_t img[SIDE * SIDE * 3];
    for (int k = 0; k < NCLASS; k++) {
        colour_image(img, k, &r);
        snprintf(path, sizeof path, "%s/%s.png", tmpdir, class_names[k]);
        if (qat_png_write_rgb(path, SIDE, SIDE, img)) return 1;
    }
    snprintf(path, sizeof path, "%s/v3rgb.spec", tmpdir);
    if (!(f = fopen(path, "w"))) return 1;
    fputs(v3_rgb_spec, f);
    fclose(f);
    return 0;
}

static int teardown(void) {
    return test_rm_tree(tmpdir);
}

/* "./qat ARGS", stdout and stderr into *out and *err; the exit status. */
static int run(const char *args, char **out, char **err) {
    char cmd[2048], path[400];
    snprintf(cmd, sizeof cmd, "./qat %s >'%s/out.txt' 2>'%s/err.txt'", args, tmpdir, tmpdir);
    int st = system(cmd);
    long n;
    snprintf(path, sizeof path, "%s/out.txt", tmpdir);
    *out = (char *)test_slurp(path, &n);
    snprintf(path, sizeof path, "%s/err.txt", tmpdir);
    *err = (char *)test_slurp(path, &n);
    CU_ASSERT_FATAL(*out && *err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* train -> quantize (verified: INT8 == simulation on all 150 test images) -> infer on the three
 * colour PNGs, whose top class must be theirs. names[k]: how `qat infer` names class k;
 * eval_classes: the "classes" member eval --json prints (the folder names for an ImageFolder,
 * or CIFAR-10's batches.meta.txt names, stored in the checkpoint and the .q8). */
static void flow(const char *data, const char *tag, const char *const names[NCLASS],
                 const char *eval_classes) {
    char args[1500], *out, *err;
    snprintf(args, sizeof args, "train --data %s --model %s/v3rgb.spec --epochs 4 --batch 32 --threads 2 "
             "--quiet --out %s/%s", data, tmpdir, tmpdir, tag);
    int code = run(args, &out, &err);
    CU_ASSERT_FATAL(code == 0);
    free(out), free(err);
    snprintf(args, sizeof args, "quantize --ckpt %s/%s/best.ckpt --data %s --max-drop 100 "
             "--calib-batches 4 --threads 2 -o %s/%s.q8", tmpdir, tag, data, tmpdir, tag);
    code = run(args, &out, &err);
    CU_ASSERT(code == 0);
    int exact = strstr(out, "logits = simulation on 150/150 images") != NULL;
    CU_ASSERT(exact);
    /* the FP32 and INT8 accuracies on the colour test split: far above chance (33%) */
    const char *line = strstr(out, "INT8 runtime");
    double acc = line ? atof(line + strlen("INT8 runtime")) : 0;
    CU_ASSERT(acc > 90.0);
    if (code || !exact || !(acc > 90.0)) printf("\n  %s quantize: exit %d\n%s%s", tag, code, out, err);
    else if (line) { /* the figures of a passing run: accuracy, size, speed, logits checked */
        const char *fp = strstr(out, "  FP32");
        if (fp) fp += 2;
        printf("\n  rgb %s: %.*s\n  rgb %s: %.*s", tag, fp ? (int)strcspn(fp, "\n") : 0, fp ? fp : "", tag,
               (int)strcspn(line, "\n"), line);
    }
    free(out), free(err);
    for (int k = 0; k < NCLASS; k++) {
        snprintf(args, sizeof args, "infer %s/%s.q8 %s/%s.png --top 1", tmpdir, tag, tmpdir, class_names[k]);
        code = run(args, &out, &err);
        CU_ASSERT(code == 0);
        char want[64];
        snprintf(want, sizeof want, ": %s", names[k]);
        int hit = strstr(out, want) != NULL;
        CU_ASSERT(hit);
        if (code || !hit) printf("\n  %s infer %s: exit %d\n%s%s", tag, class_names[k], code, out, err);
        free(out), free(err);
    }
    /* eval: the per-class line, and the names and confusion matrix in --json, from the .q8 and
     * from the checkpoint */
    snprintf(args, sizeof args, "eval --int8 %s/%s.q8 --data %s --json", tmpdir, tag, data);
    CU_ASSERT(run(args, &out, &err) == 0);
    int ok = strstr(out, eval_classes) && strstr(out, "\"confusion\": [[") && strstr(out, "\"per_class_accuracy\"");
    CU_ASSERT(ok);
    if (!ok) printf("\n  %s eval --int8 --json:\n%s%s", tag, out, err);
    free(out), free(err);
    snprintf(args, sizeof args, "eval --ckpt %s/%s/best.ckpt --data %s", tmpdir, tag, data);
    CU_ASSERT(run(args, &out, &err) == 0);
    ok = strstr(out, "per class: ") != NULL;
    CU_ASSERT(ok);
    if (!ok) printf("\n  %s eval --ckpt:\n%s%s", tag, out, err);
    free(out), free(err);
}

static void test_rgb_cifar(void) {
    if (!have_cli) {
        printf("\n  note: ./qat not built, RGB flow skipped\n");
        return;
    }
    char data[300];
    snprintf(data, sizeof data, "%s/cifar", tmpdir);
    /* label byte order; the names from batches.meta.txt, kept from training to infer */
    const char *const names[NCLASS] = {"red (class 0,", "green (class 1,", "blue (class 2,"};
    flow(data, "cifar", names, "\"classes\": [\"red\", \"green\", \"blue\"], \"class_names_stored\": 1");
}

static void test_rgb_folder(void) {
    if (!have_cli) {
        printf("\n  note: ./qat not built, RGB flow skipped\n");
        return;
    }
    char data[300];
    snprintf(data, sizeof data, "%s/folder", tmpdir);
    /* folders sorted: blue green red; their names are kept from training to infer */
    const char *const names[NCLASS] = {"red (class 2,", "green (class 1,", "blue (class 0,"};
    flow(data, "folder", names, "\"classes\": [\"blue\", \"green\", \"red\"], \"class_names_stored\": 1");
}

void register_rgb_tests(void) {
    CU_pSuite s = CU_add_suite("rgb", setup, teardown);
    CU_add_test(s, "32x32x3 CIFAR-10 binary: train, quantize (INT8 == simulation), infer a colour PNG",
                test_rgb_cifar);
    CU_add_test(s, "32x32x3 PNG folder: train, quantize (INT8 == simulation), infer a colour PNG",
                test_rgb_folder);
}
