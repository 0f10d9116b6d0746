/* libFuzzer target for the CIFAR-10 binary reader (datasets/cifar.c): `make fuzz`. The input
 * holds batches.meta.txt (class names) and one batch file
 * written as both data_batch_1.bin and test_batch.bin: a 2-byte little-endian length, that many
 * bytes of names, the rest the batch. */
#include "dataset.h"
#include "images.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 || size > 1 << 20) return 0;
    size_t nnames = (size_t)data[0] | (size_t)data[1] << 8;
    if (nnames > size - 2) nnames = size - 2;
    const uint8_t *batch = data + 2 + nnames;
    size_t nbatch = size - 2 - nnames;
    fuzz_put(0, "batches.meta.txt", data + 2, nnames);
    fuzz_put(1, "data_batch_1.bin", batch, nbatch);
    fuzz_put(2, "test_batch.bin", batch, nbatch);
    qat_dataset *train = NULL, *test = NULL;
    if (qat_cifar_open(fuzz_dir(), &train, &test) == QAT_OK) {
        if (!train || !test || train->n < 1 || train->nclasses < 1 || train->h != 32) __builtin_trap();
        qat_dataset_free(train);
        qat_dataset_free(test);
    }
    return 0;
}
