/* A dataset's images in memory and what the format readers share: the qat_dataset record
 * (datasets/images.c allocates and frees it, resizes and converts images), the readers' entry
 * points (datasets/idx.c, cifar.c, png_folder.c) and the PNG reader and writers. Opening a
 * dataset by name or path and loading batches from it is datasets/dataset.h. A new format is a
 * reader file that fills a qat_dataset_alloc'ed record, declared here, plus its detection in
 * qat_dataset_open (datasets/dataset.c). */
#ifndef QAT_IMAGES_H
#define QAT_IMAGES_H

#include "qat.h"
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qat_dataset {
    int n, h, w, c;          /* images (n, h, w, c), uint8, NHWC */
    int nclasses;
    uint8_t *images;
    int32_t *labels;         /* n, in [0, nclasses) */
    char source[512];        /* what was opened, for messages */
    char (*class_names)[64]; /* nclasses names (ImageFolder folder names; "0".."9" for IDX/CIFAR) */
    char kind[16];           /* what qat_dataset_open found: the built-in name ("fashion-mnist",
                              * "mnist") when opened by that name, else "idx", "cifar10" or
                              * "imagefolder"; it picks the augmentation (qat_augment_default) */
    float val_split;         /* > 0: an ImageFolder without train/ test/ whose test split is this
                              * fraction held out of its images; 0: the dataset's own test split */
} qat_dataset;

typedef struct qat_data_opts {
    float val_split;   /* ImageFolder without train/ test/ subfolders: fraction held out as test (default 0.1 when 0) */
    int channels;      /* 0 = native; else convert every image to 1 or 3 channels */
    int height, width; /* 0 = size of the first image; else resize (bilinear) every image to this */
    uint64_t seed;     /* split shuffle */
} qat_data_opts;

/* ---- PNG files (libpng) ------------------------------------------------------------- */
/* Decodes any PNG to 8-bit gray (*c = 1) or RGB (*c = 3) following the conventions above;
 * *pixels (h, w, c) is malloc'd. Errors name the file (not a PNG, truncated, bad CRC, ...). */
qat_status qat_png_read(const char *path, int *h, int *w, int *c, uint8_t **pixels);
/* The largest side qat_png_read decodes (models/model.c's largest input); checked on the header
 * before decoding (decompression bombs). */
#define QAT_PNG_MAX_SIDE 4096
/* A PNG's dimensions from its header alone (nothing decoded). */
qat_status qat_png_size(const char *path, int *h, int *w);
/* 8-bit RGB (h, w, 3) / gray (h, w) PNG writers, written to a temp file then renamed. */
qat_status qat_png_write_rgb(const char *path, int w, int h, const uint8_t *rgb);
qat_status qat_png_write_gray(const char *path, int w, int h, const uint8_t *gray);

/* ---- shared by the readers (datasets/images.c) --------------------------------------- */
/* A dataset with zeroed n*h*w*c images, n labels and nclasses names ("0", "1", ...). */
qat_dataset *qat_dataset_alloc(int n, int h, int w, int c, int nclasses, const char *source);
/* Bilinear resize with half-pixel centres (PIL / OpenCV without antialiasing):
 * src (sh, sw, c) -> dst (dh, dw, c). */
void qat_image_resize(const uint8_t *src, int sh, int sw, uint8_t *dst, int dh, int dw, int c);
/* Channel conversion between 1 and 3 channels (same count copies): src (npix, cs) -> dst (npix, cd). */
void qat_image_convert(const uint8_t *src, int cs, uint8_t *dst, int cd, int64_t npix);

/* Format loaders; dir is a directory path. They do not apply qat_data_opts channels/size. */
qat_status qat_idx_open(const char *dir, qat_dataset **train, qat_dataset **test);
/* One IDX file, raw or gzip: images (magic 2051, (n, h, w)) or labels (magic 2049, (n)). */
qat_status qat_idx_read_images(const char *path, int *n, int *h, int *w, uint8_t **pixels);
qat_status qat_idx_read_labels(const char *path, int *n, uint8_t **labels);
qat_status qat_cifar_open(const char *dir, qat_dataset **train, qat_dataset **test);
/* Applies opts channels / size itself (it must unify images of different sizes anyway). */
qat_status qat_imagefolder_open(const char *root, const qat_data_opts *o, qat_dataset **train,
                                qat_dataset **test);

#ifdef __cplusplus
}
#endif
#endif
