/* libFuzzer target for the IDX reader (datasets/idx.c), as `--data DIR` opens Fashion-MNIST-style
 * folders: `make fuzz`. The input is a 4-byte little-endian length, that many bytes of an images
 * file and the rest a labels file; both are read alone, then as the train and test pairs of a
 * dataset folder. */
#include "dataset.h"
#include "images.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4 || size > 1 << 20) return 0;
    size_t nimg = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 | (size_t)data[3] << 24;
    if (nimg > size - 4) nimg = size - 4;
    const uint8_t *img = data + 4, *lab = img + nimg;
    size_t nlab = size - 4 - nimg;
    int n, h, w;
    uint8_t *px = NULL, *labels = NULL;
    const char *ip = fuzz_put(0, "train-images-idx3-ubyte", img, nimg);
    const char *lp = fuzz_put(1, "train-labels-idx1-ubyte", lab, nlab);
    if (qat_idx_read_images(ip, &n, &h, &w, &px) == QAT_OK) {
        if (n < 0 || h < 1 || w < 1 || (n && !px)) __builtin_trap();
        free(px);
    }
    if (qat_idx_read_labels(lp, &n, &labels) == QAT_OK) free(labels);
    fuzz_put(2, "t10k-images-idx3-ubyte", img, nimg);
    fuzz_put(3, "t10k-labels-idx1-ubyte", lab, nlab);
    qat_dataset *train = NULL, *test = NULL;
    if (qat_idx_open(fuzz_dir(), &train, &test) == QAT_OK) {
        if (!train || !test || train->n < 1 || train->nclasses < 1) __builtin_trap();
        qat_dataset_free(train);
        qat_dataset_free(test);
    }
    return 0;
}
