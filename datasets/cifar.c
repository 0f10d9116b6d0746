/* CIFAR-10 binary version: each record is 1 label byte + 32*32*3 pixel bytes stored as three
 * planes (R, G, B; CHW), which we transpose to the HWC layout the rest of qat uses. */
#include "images.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CIFAR_SIDE 32
#define CIFAR_PIXELS (CIFAR_SIDE * CIFAR_SIDE * 3)
#define CIFAR_RECORD (1 + CIFAR_PIXELS)
#define CIFAR_MAX_CLASSES 256

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Class names from batches.meta.txt (one per line, blank lines ignored), else "0".."9". */
static int read_names(const char *dir, char (*names)[64]) {
    char path[1024], line[256];
    snprintf(path, sizeof path, "%s/batches.meta.txt", dir);
    FILE *f = fopen(path, "r");
    int n = 0;
    if (f) {
        while (n < CIFAR_MAX_CLASSES && fgets(line, sizeof line, f)) {
            size_t len = strcspn(line, "\r\n");
            while (len && (line[len - 1] == ' ' || line[len - 1] == '\t')) len--;
            if (!len) continue;
            line[len] = 0;
            snprintf(names[n++], 64, "%.63s", line);
        }
        fclose(f);
    }
    if (n == 0)
        for (; n < 10; n++) snprintf(names[n], 64, "%d", n);
    return n;
}

/* Appends the records of one batch file to (*pix, *lab, *n). */
static qat_status read_batch(const char *path, int nclasses, uint8_t **pix, int32_t **lab,
                             int *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return qat_fail(QAT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size % CIFAR_RECORD != 0 || st.st_size == 0) {
        long long size = (long long)st.st_size;
        fclose(f);
        return qat_fail(QAT_ERR_FORMAT, "%s: size %lld bytes is not a positive multiple of the "
                        "%d-byte CIFAR-10 record (1 label byte + 3072 pixel bytes)", path, size,
                        CIFAR_RECORD);
    }
    int add = (int)(st.st_size / CIFAR_RECORD);
    uint8_t *np = realloc(*pix, (size_t)(*n + add) * CIFAR_PIXELS);
    if (np) *pix = np;
    int32_t *nl = realloc(*lab, (size_t)(*n + add) * sizeof(int32_t));
    if (nl) *lab = nl;
    if (!np || !nl) {
        fclose(f);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", path);
    }
    uint8_t rec[CIFAR_RECORD];
    for (int r = 0; r < add; r++) {
        if (fread(rec, 1, CIFAR_RECORD, f) != CIFAR_RECORD) {
            fclose(f);
            return qat_fail(QAT_ERR_IO, "%s: read error in record %d", path, r);
        }
        if (rec[0] >= nclasses) {
            fclose(f);
            return qat_fail(QAT_ERR_FORMAT, "%s: record %d has label %d, but there are %d "
                            "classes", path, r, rec[0], nclasses);
        }
        uint8_t *dst = *pix + (size_t)(*n + r) * CIFAR_PIXELS; /* (32, 32, 3) */
        const uint8_t *src = rec + 1;                            /* (3, 32, 32) */
        for (int p = 0; p < CIFAR_SIDE * CIFAR_SIDE; p++)
            for (int ch = 0; ch < 3; ch++) dst[p * 3 + ch] = src[ch * CIFAR_SIDE * CIFAR_SIDE + p];
        (*lab)[*n + r] = rec[0];
    }
    fclose(f);
    *n += add;
    return QAT_OK;
}

static qat_status make_split(const char *dir, const char *const *files, int nfiles,
                             char (*names)[64], int nclasses, const char *source,
                             qat_dataset **out) {
    uint8_t *pix = NULL;
    int32_t *lab = NULL;
    int n = 0;
    char path[1024];
    for (int i = 0; i < nfiles; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        qat_status s = read_batch(path, nclasses, &pix, &lab, &n);
        if (s) {
            free(pix);
            free(lab);
            return s;
        }
    }
    qat_dataset *d = qat_dataset_alloc(0, CIFAR_SIDE, CIFAR_SIDE, 3, nclasses, source);
    if (!d) {
        free(pix);
        free(lab);
        return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", dir);
    }
    free(d->images);
    free(d->labels);
    d->images = pix;
    d->labels = lab;
    d->n = n;
    memcpy(d->class_names, names, (size_t)nclasses * sizeof *names);
    *out = d;
    return QAT_OK;
}

qat_status qat_cifar_open(const char *dir, qat_dataset **train, qat_dataset **test) {
    static const char *const batch_names[5] = {"data_batch_1.bin", "data_batch_2.bin",
                                               "data_batch_3.bin", "data_batch_4.bin",
                                               "data_batch_5.bin"};
    const char *present[5];
    int npresent = 0;
    char path[1024];
    /* A partial download (only some training batches) is still usable, so take those present. */
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, batch_names[i]);
        if (is_file(path)) present[npresent++] = batch_names[i];
    }
    if (!npresent)
        return qat_fail(QAT_ERR_IO, "%s/data_batch_1.bin: missing (a CIFAR-10 directory holds "
                        "data_batch_1..5.bin and test_batch.bin)", dir);
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    if (!is_file(path))
        return qat_fail(QAT_ERR_IO, "%s: missing (a CIFAR-10 directory holds data_batch_1..5.bin "
                        "and test_batch.bin)", path);
    char (*names)[64] = calloc(CIFAR_MAX_CLASSES, sizeof *names);
    if (!names) return qat_fail(QAT_ERR_NOMEM, "%s: out of memory", dir);
    int nclasses = read_names(dir, names);
    char src[600];
    snprintf(src, sizeof src, "%s (CIFAR train)", dir);
    qat_dataset *tr = NULL, *te = NULL;
    qat_status s = make_split(dir, present, npresent, names, nclasses, src, &tr);
    if (!s) {
        static const char *const test_names[1] = {"test_batch.bin"};
        snprintf(src, sizeof src, "%s (CIFAR test)", dir);
        s = make_split(dir, test_names, 1, names, nclasses, src, &te);
    }
    free(names);
    if (s) {
        qat_dataset_free(tr);
        return s;
    }
    *train = tr;
    *test = te;
    return QAT_OK;
}
