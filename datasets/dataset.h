/* Datasets: IDX (MNIST / Fashion-MNIST), PNG ImageFolder and CIFAR-10 binary, all decoded up
 * front into one uint8 NHWC array, plus a deterministic batch loader (shuffle, random crop,
 * horizontal flip, normalisation, optional background prefetch).
 *
 *   qat_dataset *train, *test;
 *   if (qat_dataset_open("fashion-mnist", &(qat_data_opts){0}, &train, &test)) die(...);
 *   qat_loader *l;
 *   qat_loader_opts lo = {.batch = 128, .shuffle = 1, .seed = 42, .prefetch = 1};
 *   qat_dataset_stats(train, lo.mean, lo.std);
 *   qat_loader_create(train, &lo, &l);
 *   for (int b = 0; b < qat_loader_num_batches(l); b++) {
 *       int n = qat_loader_get(l, epoch, b, x, labels);   // x: (batch, h, w, c) floats
 *       ...
 *   }
 *   qat_loader_free(l); qat_dataset_free(train); qat_dataset_free(test);
 *
 * The images and the format readers are datasets/images.h (idx.c, cifar.c, png_folder.c read,
 * images.c holds). Conventions of the PNG decoder (same as PIL's convert('L') / convert('RGB')
 * that torchvision's ImageFolder applies):
 *   - every colour type and bit depth becomes 8-bit; 16-bit samples are scaled (v*255/65535,
 *     rounded), sub-byte gray is scaled to 0..255, palettes are expanded;
 *   - alpha (an alpha channel or palette/gray tRNS) is dropped, not composited: a transparent
 *     pixel keeps its colour;
 *   - RGB -> gray is 0.299 R + 0.587 G + 0.114 B (rounded); gray -> RGB repeats the value.
 * ImageFolder layout:
 *   - root/train/<class>/ and root/test/<class>/ (test/ may also be named val/); class names
 *     are the sorted train/ folder names; a class missing from test/ just has no test images;
 *     a class folder in test/ that train/ lacks is an error;
 *   - otherwise root/<class>/ (or root/train/ alone), split per class (stratified) by
 *     val_split with a shuffle seeded by `seed`; at least one image of a class stays in train;
 *   - files are searched recursively inside a class folder; names starting with '.' are
 *     skipped; any other file that is not a valid PNG is an error naming it; an empty class
 *     folder is an error;
 *   - native channel count: 3 if any image of the dataset has colour (RGB or palette), else 1;
 *   - mixed image sizes with height/width 0: every image is resized (bilinear, half-pixel
 *     centres) to the size of the first image (first class, first file in sorted order).
 * Loader augmentation follows torchvision: RandomCrop(padding=p) pads with black pixels (value
 * 0 before normalisation, so -mean/std after it); RandomHorizontalFlip has p = 0.5.
 */
#ifndef QAT_DATASET_H
#define QAT_DATASET_H

#include "images.h"

#ifdef __cplusplus
extern "C" {
#endif

/* path: "fashion-mnist" or "mnist" (= /usr/share/datasets/<name> unless ./<name> is a
 * directory), a directory of IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
 * t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]), an ImageFolder root, or a
 * CIFAR-10 binary directory (data_batch_1..5.bin, test_batch.bin, optionally batches.meta.txt
 * for names; a root holding cifar-10-batches-bin/ also works). o may be NULL (all defaults).
 * On failure *train and *test are NULL. */
qat_status qat_dataset_open(const char *path, const qat_data_opts *o, qat_dataset **train,
                            qat_dataset **test);
void qat_dataset_free(qat_dataset *d);

/* The augmentation that fits a dataset kind (qat_dataset.kind): the recipe belongs to the
 * built-in name, not to the files, so an IDX folder that holds Fashion-MNIST is a plain "idx".
 *   fashion-mnist   crop padding 2, random horizontal flips (clothes mirror into clothes)
 *   anything else   none, as torchvision: nothing is known about whether the data's mirror
 *   (mnist too)     images keep their class (digits, text, signs do not), and crop padding 2
 *                   did not help on both kinds of data (README: Fashion-MNIST without flips
 *                   lost 0.35-0.65 points with it in 4 and 8 epochs, digits gained 0-0.55)
 */
#define QAT_CROP_PAD_GENERIC 0
void qat_augment_default(const char *kind, int *crop_pad, int *hflip);
/* Per-channel mean and std (population, ddof 0) of pixels scaled to [0,1] (c values each). */
void qat_dataset_stats(const qat_dataset *d, float *mean, float *std);

typedef struct {
    int batch;
    int shuffle;          /* permutation of the epoch is a pure function of (seed, epoch) */
    int crop_pad;         /* random crop after zero padding by this many pixels (0 = off) */
    int hflip;            /* random horizontal flip */
    uint64_t seed;
    int drop_last;        /* skip the last incomplete batch */
    float mean[4], std[4];/* normalisation: x = (pixel/255 - mean[c]) / std[c]; std 0 means 1 */
    int prefetch;         /* decode next batch in a background thread. qat's own loops leave it
                           * off: a batch is assembled from decoded memory in ~0.3 ms, and a
                           * third thread next to OpenMP's spinning workers on a 2-core machine
                           * made evaluation 30x slower (52 s instead of 1.7 s, measured). */
} qat_loader_opts;
typedef struct qat_loader qat_loader;
/* The loader keeps a pointer to d: d must outlive it. Needs d->c <= 4. One caller thread at a
 * time (the prefetch thread is internal). */
qat_status qat_loader_create(const qat_dataset *d, const qat_loader_opts *o, qat_loader **out);
int qat_loader_num_batches(const qat_loader *l);
/* Fills x (B, h, w, c) normalised float NHWC and labels (B) for batch `index` of `epoch`;
 * returns the number of images (the last batch may be short; 0 for an index out of range).
 * Deterministic: the same (seed, epoch, index) always gives the same batch, augmentation
 * included (its random numbers come from seed, epoch and the position in the epoch), whatever
 * order batches are asked in. With prefetch, asking for index i starts preparing i+1 (or batch
 * 0 of epoch+1 after the last) in a background pthread; results are identical either way. */
int qat_loader_get(qat_loader *l, int epoch, int index, float *x, int32_t *labels);
void qat_loader_free(qat_loader *l);

#ifdef __cplusplus
}
#endif
#endif
